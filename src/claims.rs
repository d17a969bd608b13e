//! What a token says about itself, when it is a JWT: its header and its claims, decoded and
//! shown, never verified (tokdeck holds no key to verify them with, and says so) and never
//! its signature. An opaque token says nothing; an encrypted one (JWE) is for its audience.
//! Pure: decoding and describing, nothing else.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::display::untrusted_short;
use crate::duration::{format_ago, format_countdown};

/// The claims that hold times (seconds since the epoch), shown as dates and countdowns.
const TIME_CLAIMS: [&str; 4] = ["exp", "iat", "nbf", "auth_time"];

/// The longest value shown on one line; a longer one is cut with an ellipsis.
const MAX_VALUE: usize = 120;

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// A signed JWT (JWS compact form): its header and claims.
    Jwt {
        header: Map<String, Value>,
        claims: Map<String, Value>,
    },
    /// An encrypted JWT (JWE compact form, five parts): only its audience can read it.
    Encrypted { header: Map<String, Value> },
    /// Anything else: the server's own reference, which only the server can read.
    Opaque,
}

/// Reads `token`. The signature is never decoded.
pub fn read(token: &str) -> Reading {
    let parts: Vec<&str> = token.split('.').collect();
    let object = |part: &str| -> Option<Map<String, Value>> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .ok()?;
        match serde_json::from_slice(&bytes).ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        }
    };
    match parts.as_slice() {
        [header, claims, _signature] => match (object(header), object(claims)) {
            (Some(header), Some(claims)) => Reading::Jwt { header, claims },
            _ => Reading::Opaque,
        },
        [header, _, _, _, _] => {
            object(header).map_or(Reading::Opaque, |header| Reading::Encrypted { header })
        }
        _ => Reading::Opaque,
    }
}

/// `reading` as lines for a terminal, under the title `title`: every claim by name, times as
/// dates and countdowns from `now`, server text escaped.
pub fn describe(title: &str, reading: &Reading, now: DateTime<Utc>) -> Vec<String> {
    match reading {
        Reading::Opaque => vec![format!(
            "{title}: opaque token (not a JWT: only its server can say what it holds; `tokdeck check` asks it)"
        )],
        Reading::Encrypted { header } => vec![format!(
            "{title}: encrypted JWT ({}): only its audience can read its claims",
            algorithms(header)
        )],
        Reading::Jwt { header, claims } => {
            let mut lines = vec![format!(
                "{title}: JWT ({}; the signature is not checked here)",
                algorithms(header)
            )];
            let width = claims
                .keys()
                .map(|k| k.chars().count())
                .max()
                .unwrap_or(0)
                .min(24);
            for (name, value) in claims {
                let shown = match time_of(name, value) {
                    Some(at) => when(at, now),
                    None => value_text(value),
                };
                lines.push(format!("  {:<width$}  {shown}", untrusted_short(name, 24)));
            }
            lines
        }
    }
}

/// `alg` and `kid`, or `enc`, as the header names them.
fn algorithms(header: &Map<String, Value>) -> String {
    let field = |name: &str| {
        header
            .get(name)
            .and_then(Value::as_str)
            .map(|v| untrusted_short(v, 40))
    };
    let mut said: Vec<String> = Vec::new();
    if let Some(alg) = field("alg") {
        said.push(alg);
    }
    if let Some(enc) = field("enc") {
        said.push(format!("enc {enc}"));
    }
    if let Some(kid) = field("kid") {
        said.push(format!("key {kid}"));
    }
    if said.is_empty() {
        "no algorithm named".into()
    } else {
        said.join(", ")
    }
}

fn time_of(name: &str, value: &Value) -> Option<DateTime<Utc>> {
    if !TIME_CLAIMS.contains(&name) {
        return None;
    }
    // A fractional time (some servers send one) counts by its whole seconds.
    let secs = value.as_i64().or_else(|| {
        let text = value.as_f64()?.trunc().to_string();
        text.parse().ok()
    })?;
    DateTime::from_timestamp(secs, 0)
}

/// A time, and how far from now.
fn when(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (at - now).num_seconds();
    let relative = match secs.cmp(&0) {
        std::cmp::Ordering::Equal => "now".to_string(),
        std::cmp::Ordering::Greater => format!("in {}", format_countdown(secs)),
        std::cmp::Ordering::Less => format!("{} ago", format_ago(-secs)),
    };
    format!("{} ({relative})", at.format("%Y-%m-%d %H:%M:%S UTC"))
}

/// A claim's value on one line: strings as they are, lists joined, anything else as JSON;
/// escaped for a terminal and cut to [`MAX_VALUE`].
fn value_text(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    untrusted_short(&text, MAX_VALUE)
}

/// `reading` as JSON: kind, header and claims (times as numbers, as in the token).
pub fn json(reading: &Reading) -> Value {
    match reading {
        Reading::Opaque => serde_json::json!({ "kind": "opaque" }),
        Reading::Encrypted { header } => {
            serde_json::json!({ "kind": "encrypted", "header": header })
        }
        Reading::Jwt { header, claims } => {
            serde_json::json!({ "kind": "jwt", "header": header, "claims": claims })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(header: &Value, claims: &Value) -> String {
        let part =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.c2lnbmF0dXJl", part(header), part(claims))
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn a_jwt_shows_its_claims_with_times_as_dates_and_countdowns() {
        let token = jwt(
            &serde_json::json!({"alg": "RS256", "kid": "k1"}),
            &serde_json::json!({
                "sub": "alice", "aud": ["api", "web"], "scope": "read write",
                "exp": 1_800_003_600, "iat": 1_799_999_940, "extra": {"n": 1},
                "nbf": 1_800_000_000.75
            }),
        );
        let reading = read(&token);
        let lines = describe("access token", &reading, now());
        assert_eq!(
            lines[0],
            "access token: JWT (RS256, key k1; the signature is not checked here)"
        );
        let text = lines.join("\n");
        assert!(
            text.contains("exp    2027-01-15 09:00:00 UTC (in 1h 0m)"),
            "{text}"
        );
        assert!(
            text.contains("iat    2027-01-15 07:59:00 UTC (1m ago)"),
            "{text}"
        );
        assert!(text.contains("aud    api web"), "{text}");
        assert!(
            text.contains("nbf    2027-01-15 08:00:00 UTC (now)"),
            "{text}"
        );
        assert!(text.contains(r#"extra  {"n":1}"#), "{text}");
        assert!(
            !text.contains("c2lnbmF0dXJl") && !text.contains("signature\n"),
            "{text}"
        );
        assert_eq!(json(&reading)["claims"]["sub"], "alice");
        assert!(json(&reading).get("signature").is_none());
    }

    #[test]
    fn opaque_encrypted_and_broken_tokens_say_what_they_are() {
        assert_eq!(read("2YotnFZFEjr1zCsicMWpAA"), Reading::Opaque);
        assert_eq!(read("a.b.c"), Reading::Opaque);
        assert_eq!(read(""), Reading::Opaque);
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#);
        let jwe = format!("{header}.key.iv.text.tag");
        let lines = describe("id token", &read(&jwe), now());
        assert_eq!(
            lines,
            [
                "id token: encrypted JWT (RSA-OAEP, enc A256GCM): only its audience can read its claims"
            ]
        );
        let lines = describe("access token", &Reading::Opaque, now());
        assert!(
            lines[0].starts_with("access token: opaque token"),
            "{lines:?}"
        );
    }

    #[test]
    fn claims_from_a_hostile_server_cannot_reach_the_terminal_raw() {
        let token = jwt(
            &serde_json::json!({"alg": "none"}),
            &serde_json::json!({"name": "\u{1b}]52;c;evil\u{7}", "\u{1b}[2J": "x"}),
        );
        let text = describe("access token", &read(&token), now()).join("\n");
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
    }
}
