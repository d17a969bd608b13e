//! The device authorization grant (RFC 8628): the codes a server hands out, and the polling
//! schedule.

use std::time::Duration;

use age::secrecy::SecretString;
use serde::Deserialize;

use super::OAuthError;

/// RFC 8628 3.5: without an interval the client waits 5 seconds between polls.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// What `slow_down` adds to the interval (RFC 8628 3.5).
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// A device login in progress.
pub struct DeviceAuthorization {
    pub device_code: SecretString,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: Duration,
    pub interval: Duration,
}

impl std::fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("device_code", &"***")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .finish_non_exhaustive()
    }
}

impl DeviceAuthorization {
    /// The address to open: the one with the code filled in, when the server gave one.
    pub fn uri_to_open(&self) -> &str {
        self.verification_uri_complete
            .as_deref()
            .unwrap_or(&self.verification_uri)
    }
}

#[derive(Deserialize)]
struct Raw {
    device_code: String,
    user_code: String,
    // Some servers (Google's, older drafts) spell it verification_url.
    #[serde(alias = "verification_url")]
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
}

/// The address as the URL parser writes it (control characters percent-encoded, so it is
/// safe to print), when it is a web address.
fn web_address(text: &str) -> Option<String> {
    url::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http"))
        .map(String::from)
}

/// Parses a device authorization answer (RFC 8628 3.2).
pub fn parse_authorization(body: &[u8]) -> Result<DeviceAuthorization, OAuthError> {
    let raw: Raw = serde_json::from_slice(body)
        .map_err(|e| OAuthError::BadResponse(format!("device authorization: {e}")))?;
    let printable = |s: &str| !s.is_empty() && s.chars().all(crate::vault::validate::is_vschar);
    if !printable(&raw.user_code) || !printable(&raw.device_code) {
        return Err(OAuthError::BadResponse(
            "device authorization: a code holds characters no code can have".into(),
        ));
    }
    let not_web = || {
        OAuthError::BadResponse(
            "device authorization: the verification URI is not a web address".into(),
        )
    };
    let verification_uri = web_address(&raw.verification_uri).ok_or_else(not_web)?;
    let verification_uri_complete = match raw.verification_uri_complete.as_deref() {
        Some(u) => Some(web_address(u).ok_or_else(not_web)?),
        None => None,
    };
    Ok(DeviceAuthorization {
        device_code: SecretString::from(raw.device_code),
        user_code: raw.user_code,
        verification_uri,
        verification_uri_complete,
        expires_in: Duration::from_secs(raw.expires_in.clamp(1, 24 * 3600)),
        interval: raw
            .interval
            .map_or(DEFAULT_INTERVAL, |s| Duration::from_secs(s.clamp(1, 600))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_codes_and_defaults_the_interval() {
        let a = parse_authorization(br#"{"device_code":"d","user_code":"WDJB-MJHT","verification_uri":"https://ex/device","expires_in":1800}"#).unwrap();
        assert_eq!(a.interval, DEFAULT_INTERVAL);
        assert_eq!(a.uri_to_open(), "https://ex/device");
        let odd = parse_authorization(br#"{"device_code":"d","user_code":"U","verification_uri":"https://ex/\u001b[2J","expires_in":9}"#).unwrap();
        assert!(
            !odd.verification_uri.contains('\u{1b}'),
            "{}",
            odd.verification_uri
        );
        assert!(!format!("{a:?}").contains("\"d\""));
        let b = parse_authorization(br#"{"device_code":"d","user_code":"U","verification_url":"https://ex/d","verification_uri_complete":"https://ex/d?c=U","expires_in":60,"interval":2}"#).unwrap();
        assert_eq!(b.uri_to_open(), "https://ex/d?c=U");
        assert_eq!(b.interval, Duration::from_secs(2));
    }

    #[test]
    fn hostile_answers_are_refused() {
        for body in [
            &br#"{"device_code":"d","user_code":"\u001b[2J","verification_uri":"https://ex","expires_in":1}"#[..],
            br#"{"device_code":"d","user_code":"U","verification_uri":"javascript:alert(1)","expires_in":1}"#,
            br#"{"user_code":"U"}"#,
        ] {
            assert!(parse_authorization(body).is_err());
        }
    }
}
