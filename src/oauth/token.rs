//! A token endpoint's answer: parsed, checked as a standard says a token must be, and turned
//! into what the vault stores.

use std::time::Duration;

use age::secrecy::SecretString;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::OAuthError;
use crate::vault::Token;

/// A token endpoint answer (Doorkeeper shape; blank fields omitted).
#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default, deserialize_with = "seconds")]
    expires_in: Option<i64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

/// `expires_in` as a number, or as a string of digits (Azure AD v1 and others send one).
fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(i64),
        Text(String),
    }
    match Option::<Seconds>::deserialize(d)? {
        None => Ok(None),
        Some(Seconds::Number(n)) => Ok(Some(n)),
        Some(Seconds::Text(text))
            if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) =>
        {
            text.parse()
                .map(Some)
                .map_err(|_| serde::de::Error::custom("expires_in is too large"))
        }
        Some(Seconds::Text(_)) => Err(serde::de::Error::custom(
            "expires_in is neither a number nor a string of digits",
        )),
    }
}

/// A parsed token response, secrets already wrapped.
#[derive(Clone)]
pub struct TokenResponse {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub token_type: String,
    pub expires_in: Option<i64>,
    pub scope: Option<String>,
    /// OpenID Connect's ID token, when one came: kept to be inspected, never sent.
    pub id_token: Option<SecretString>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"***")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("id_token", &self.id_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Parses a token endpoint body.
pub fn parse_token_response(body: &[u8]) -> Result<TokenResponse, OAuthError> {
    let raw: RawTokenResponse = serde_json::from_slice(body).map_err(|e| {
        if serde_json::from_slice::<serde_json::Value>(body).is_ok() {
            OAuthError::BadResponse(format!("{e}"))
        } else {
            OAuthError::BadResponse("not JSON".into())
        }
    })?;
    if raw.access_token.trim().is_empty() {
        return Err(OAuthError::BadResponse("empty access_token".into()));
    }
    // RFC 6749 appendix A: tokens are visible ASCII (VSCHAR). Anything else cannot be a
    // token, and would reach a terminal raw through `tokdeck token`.
    for (field, value) in [
        ("access_token", Some(raw.access_token.as_str())),
        ("refresh_token", raw.refresh_token.as_deref()),
    ] {
        if value.is_some_and(|v| !v.chars().all(crate::vault::validate::is_vschar)) {
            return Err(OAuthError::BadResponse(format!(
                "{field} holds characters no token can have"
            )));
        }
    }
    Ok(TokenResponse {
        access_token: SecretString::from(raw.access_token),
        refresh_token: raw
            .refresh_token
            .filter(|r| !r.is_empty())
            .map(SecretString::from),
        token_type: raw.token_type.unwrap_or_else(|| "Bearer".into()),
        // As the server said it, below zero too (see `into_token`, and `import-token`, which
        // refuses one).
        expires_in: raw.expires_in,
        scope: raw.scope,
        // Only looked at, never sent: one that is no token's characters is left out.
        id_token: raw
            .id_token
            .filter(|t| !t.is_empty() && t.len() <= 64 * 1024)
            .filter(|t| t.chars().all(crate::vault::validate::is_vschar))
            .map(SecretString::from),
    })
}

/// Whether `a` and `b` are the same secret.
fn same_secret(a: &SecretString, b: &SecretString) -> bool {
    use age::secrecy::ExposeSecret;
    a.expose_secret() == b.expose_secret()
}

impl TokenResponse {
    /// Whether this answer to a refresh with `sent` replaced it: a new refresh token came
    /// back. A server that answers with the same one, or with none, keeps `sent` alive.
    pub fn rotates(&self, sent: &SecretString) -> bool {
        self.refresh_token
            .as_ref()
            .is_some_and(|new| !same_secret(sent, new))
    }

    /// The token to store: expiry counts from when the answer arrived (`expires_in` is the
    /// remaining lifetime; one too large to represent counts as no expiry, never a panic,
    /// because the server has already rotated the refresh token); a new refresh token opens a
    /// new refresh window. A refresh answer
    /// without a refresh token keeps the previous one and its window.
    pub fn into_token(
        self,
        received_at: DateTime<Utc>,
        refresh_window: Duration,
        previous: Option<&Token>,
    ) -> Token {
        let window = chrono::Duration::from_std(refresh_window).unwrap_or(chrono::Duration::MAX);
        let kept = |p: &Token| (p.refresh_token.clone(), p.refresh_expires_at);
        let (refresh_token, refresh_expires_at) = match (self.refresh_token, previous) {
            // The same refresh token handed back: it was not renewed, nor was its window.
            (Some(r), Some(p)) if p.refresh_token.as_ref().is_some_and(|h| same_secret(h, &r)) => {
                kept(p)
            }
            (Some(r), _) => (Some(r), received_at.checked_add_signed(window)),
            (None, Some(p)) => kept(p),
            (None, None) => (None, None),
        };
        Token {
            access_token: self.access_token,
            refresh_token,
            token_type: self.token_type,
            scope: self.scope,
            obtained_at: received_at,
            // Zero or less: the token is already expired, not one that never expires.
            expires_at: self
                .expires_in
                .map(|s| s.max(0))
                .and_then(chrono::Duration::try_seconds)
                .and_then(|d| received_at.checked_add_signed(d)),
            refresh_expires_at,
            // A refresh answer without one keeps the login's: it names the same person.
            id_token: self
                .id_token
                .or_else(|| previous.and_then(|p| p.id_token.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use age::secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn expires_in_of_zero_or_less_is_expired_and_digit_strings_count() {
        let now = Utc::now();
        for body in [
            &br#"{"access_token":"a","expires_in":0}"#[..],
            br#"{"access_token":"a","expires_in":-30}"#,
        ] {
            let token =
                parse_token_response(body)
                    .unwrap()
                    .into_token(now, Duration::from_secs(60), None);
            assert_eq!(
                token.expires_at,
                Some(now),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let text = parse_token_response(br#"{"access_token":"a","expires_in":"3600"}"#).unwrap();
        assert_eq!(text.expires_in, Some(3600));
        for bad in [
            &br#"{"access_token":"a","expires_in":"soon"}"#[..],
            br#"{"access_token":"a","expires_in":"-5"}"#,
            br#"{"access_token":"a","expires_in":""}"#,
        ] {
            assert!(
                parse_token_response(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let none = parse_token_response(br#"{"access_token":"a","expires_in":null}"#).unwrap();
        assert_eq!(none.expires_in, None);
    }

    #[test]
    fn parses_doorkeeper_user_and_company_answers() {
        let user = parse_token_response(br#"{"access_token":"a","token_type":"Bearer","expires_in":7200,"refresh_token":"r","scope":"read write","created_at":1680013957}"#).unwrap();
        assert_eq!(user.expires_in, Some(7200));
        assert!(user.refresh_token.is_some());
        let company = parse_token_response(
            br#"{"access_token":"a","token_type":"Bearer","scope":"read","created_at":1}"#,
        )
        .unwrap();
        assert!(company.expires_in.is_none() && company.refresh_token.is_none());
    }

    #[test]
    fn expiry_counts_from_receipt_not_created_at() {
        let now = DateTime::from_timestamp(2_000_000_000, 0).unwrap();
        let t = parse_token_response(
            br#"{"access_token":"a","expires_in":7200,"refresh_token":"r","created_at":1}"#,
        )
        .unwrap()
        .into_token(now, Duration::from_secs(604_800), None);
        assert_eq!(t.expires_at.unwrap().timestamp(), 2_000_007_200);
        assert_eq!(t.refresh_expires_at.unwrap().timestamp(), 2_000_604_800);
    }

    #[test]
    fn refresh_without_new_refresh_token_keeps_the_old_one() {
        let now = DateTime::from_timestamp(2_000_000_000, 0).unwrap();
        let first =
            parse_token_response(br#"{"access_token":"a","expires_in":60,"refresh_token":"r1"}"#)
                .unwrap()
                .into_token(now, Duration::from_secs(100), None);
        let later = now + chrono::Duration::seconds(50);
        let second = parse_token_response(br#"{"access_token":"b","expires_in":60}"#)
            .unwrap()
            .into_token(later, Duration::from_secs(100), Some(&first));
        assert_eq!(second.refresh_token.unwrap().expose_secret(), "r1");
        assert_eq!(second.refresh_expires_at, first.refresh_expires_at);
    }

    #[test]
    fn malformed_answers_are_bad_responses() {
        for body in [
            &b"<html>oops</html>"[..],
            b"{}",
            br#"{"access_token":""}"#,
            b"",
        ] {
            assert!(matches!(
                parse_token_response(body),
                Err(OAuthError::BadResponse(_))
            ));
        }
    }
}

#[cfg(test)]
mod hostile_answers {
    use super::*;

    #[test]
    fn fuzzer_crash_input_is_handled() {
        // Found by fuzz/token_response: serde reads a struct from a JSON array, positionally.
        let body = br#"["{","",222009350093523718,""]"#;
        let now = DateTime::from_timestamp(2_000_000_000, 0).unwrap();
        let token =
            parse_token_response(body)
                .unwrap()
                .into_token(now, Duration::from_secs(604_800), None);
        assert!(token.expires_at.is_none());
    }

    #[test]
    fn absurd_lifetimes_do_not_panic() {
        let now = DateTime::from_timestamp(2_000_000_000, 0).unwrap();
        for expires_in in ["9223372036854775807", "9000000000000000", "1"] {
            let body =
                format!(r#"{{"access_token":"a","expires_in":{expires_in},"refresh_token":"r"}}"#);
            let token = parse_token_response(body.as_bytes()).unwrap().into_token(
                now,
                Duration::from_secs(u64::MAX),
                None,
            );
            assert!(token.refresh_expires_at.is_none() || token.refresh_expires_at > Some(now));
        }
    }
}
