//! Reading who a token belongs to: Factorial's credentials endpoint, OpenID Connect userinfo,
//! or RFC 7662 introspection.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::OAuthError;
use crate::vault::CheckResult;

#[derive(Deserialize)]
struct CredentialsBody {
    data: Vec<Credential>,
}

#[derive(Deserialize)]
struct Credential {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    company_id: Option<i64>,
    #[serde(default)]
    employee_id: Option<i64>,
}

/// Factorial's `/resources/api_public/credentials` answer.
pub fn credentials(body: &[u8], checked_at: DateTime<Utc>) -> Result<CheckResult, OAuthError> {
    let parsed: CredentialsBody = serde_json::from_slice(body)
        .map_err(|e| OAuthError::BadResponse(format!("credentials: {e}")))?;
    let first = parsed.data.into_iter().next();
    Ok(CheckResult {
        checked_at,
        email: first.as_ref().and_then(|c| c.email.clone()),
        company_id: first.as_ref().and_then(|c| c.company_id),
        employee_id: first.as_ref().and_then(|c| c.employee_id),
        ..CheckResult::default()
    })
}

/// A claim that should be a string; numbers (some servers send numeric subjects) are spelled.
fn text(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn object(
    body: &[u8],
    what: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, OAuthError> {
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(OAuthError::BadResponse(format!(
            "{what}: not a JSON object"
        ))),
    }
}

/// An OpenID Connect userinfo answer.
pub fn userinfo(body: &[u8], checked_at: DateTime<Utc>) -> Result<CheckResult, OAuthError> {
    let claims = object(body, "userinfo")?;
    Ok(CheckResult {
        checked_at,
        email: text(claims.get("email")),
        subject: text(claims.get("sub")),
        username: text(claims.get("preferred_username")).or_else(|| text(claims.get("name"))),
        ..CheckResult::default()
    })
}

/// An RFC 7662 introspection answer; an inactive token is refused.
pub fn introspection(body: &[u8], checked_at: DateTime<Utc>) -> Result<CheckResult, OAuthError> {
    let claims = object(body, "introspection")?;
    if claims.get("active") != Some(&serde_json::Value::Bool(true)) {
        return Err(OAuthError::TokenRejected);
    }
    Ok(CheckResult {
        checked_at,
        active: Some(true),
        subject: text(claims.get("sub")),
        username: text(claims.get("username")),
        client_id: text(claims.get("client_id")),
        expires_at: claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .and_then(|t| DateTime::from_timestamp(t, 0)),
        ..CheckResult::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).unwrap()
    }

    #[test]
    fn introspection_reads_the_claims_and_refuses_inactive_tokens() {
        let body = br#"{"active":true,"sub":"42","client_id":"cli","username":"ann","exp":1900003600,"scope":"read"}"#;
        let c = introspection(body, now()).unwrap();
        assert_eq!(c.active, Some(true));
        assert_eq!(c.expires_at.unwrap().timestamp(), 1_900_003_600);
        assert_eq!(c.owner_line(), "ann, sub 42, client cli");
        assert!(matches!(
            introspection(br#"{"active":false}"#, now()),
            Err(OAuthError::TokenRejected)
        ));
        assert!(introspection(b"[]", now()).is_err());
    }

    #[test]
    fn userinfo_reads_subject_email_and_name() {
        let c = userinfo(br#"{"sub":7,"email":"a@b.c","name":"Ann"}"#, now()).unwrap();
        assert_eq!(c.owner_line(), "a@b.c, Ann, sub 7");
    }
}
