//! OAuth failures, each mapped to advice a person can act on.

use std::time::Duration;

use crate::display::MAX_SERVER_TEXT;

/// Which grant a token request was for; the same server error means different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Code,
    Refresh,
    /// Polling with a device code (RFC 8628).
    Device,
    /// The client's own credentials.
    ClientCredentials,
}

/// Everything that can go wrong talking to the OAuth server or reading a redirect.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    #[error("{}", invalid_grant_advice(*.grant))]
    InvalidGrant { grant: Grant },
    #[error(
        "client id or secret wrong (invalid_client): check the profile's OAuth app credentials"
    )]
    InvalidClient,
    #[error("the server refused: {code}{}: check the profile's scopes and redirect URI", describe(.description.as_ref()))]
    Refused {
        code: String,
        description: Option<String>,
    },
    #[error("rate limited by the server (HTTP 429){}: try again later", retry_text(.retry_after.as_ref()))]
    RateLimited { retry_after: Option<Duration> },
    #[error("server error HTTP {status} from {host}: try again later")]
    Server { status: u16, host: String },
    #[error("unexpected HTTP {status} from {host}: check the endpoint URLs")]
    UnexpectedStatus { status: u16, host: String },
    #[error(
        "no answer from {host} within {secs}s: check the network, or raise http_timeout in the config"
    )]
    Timeout { host: String, secs: u64 },
    #[error("cannot reach {host}: {reason}: check the base URL and the network")]
    Connect { host: String, reason: String },
    #[error(
        "the connection to {host} broke before the answer came ({reason}): check the network, then try again"
    )]
    Interrupted { host: String, reason: String },
    #[error("the server's answer is not a valid token response ({0}): check the endpoint URLs")]
    BadResponse(String),
    #[error("the server does not accept the access token: refresh it, or authorize again")]
    TokenRejected,
    #[error("authorization denied: {}", cut(.0, MAX_SERVER_TEXT))]
    Denied(String),
    #[error("the redirect's state does not match the one sent: start `authorize` again")]
    StateMismatch,
    #[error(
        "the pasted redirect URL carries no state, but the authorization tokdeck started sent one: paste the whole URL the browser ended on, or only the code"
    )]
    StateMissing,
    #[error("no authorization code found in '{0}': paste the code or the whole redirect URL")]
    NoCode(String),
    #[error(
        "the vault's lease has too little time left to send a refresh token safely (OpenBao slow to answer, or this process was paused): nothing was sent; try again"
    )]
    LeaseEnding,
    #[error("no refresh token stored: authorize again")]
    NoRefreshToken,
    #[error("'{0}' has no token: run `tokdeck authorize {0}`")]
    NoToken(String),
    #[error("no redirect arrived within {0}s: run authorize again, or exchange the code by hand")]
    ListenTimeout(u64),
    #[error("cannot listen on {addr}: {reason}: free the port or change the redirect URI")]
    Listen { addr: String, reason: String },
    #[error(
        "the redirect names issuer '{got}', not this profile's '{want}' (RFC 9207: another server's answer, or the wrong profile): nothing was exchanged; start authorize again from the right profile"
    )]
    IssuerMismatch { got: String, want: String },
    #[error(
        "the server names itself in every redirect (RFC 9207) but this one carries no 'iss': paste the whole redirect URL, or start authorize again"
    )]
    IssuerMissing,
    /// Device flow: nobody has approved yet; poll again.
    #[error("authorization pending")]
    AuthorizationPending,
    /// Device flow: poll more slowly.
    #[error("polling too fast")]
    SlowDown,
    #[error("the login was denied on the device page: run authorize again to start over")]
    DeviceDenied,
    #[error(
        "the device code expired before the login was approved: run authorize again for a new code"
    )]
    DeviceExpired,
    /// The provider lacks an endpoint the action needs; the text says what to do instead.
    #[error("{0}")]
    Unsupported(String),
    /// Discovery failed; the text names the URL.
    #[error("{0}")]
    Discovery(String),
    #[error("{0}")]
    Invalid(String),
}

fn invalid_grant_advice(grant: Grant) -> &'static str {
    match grant {
        Grant::Refresh => "refresh token expired or already used: authorize again",
        Grant::Code => {
            "authorization code invalid, expired or already used: authorize again for a new code"
        }
        Grant::Device => "device code invalid or already used: authorize again",
        Grant::ClientCredentials => {
            "the server refused the client credentials grant (invalid_grant): check that the app may use it"
        }
    }
}

/// A server's description in a message for people: at most [`MAX_SERVER_TEXT`] characters.
/// The whole text is kept where it is recorded (see [`OAuthError::recorded_text`]).
fn describe(description: Option<&String>) -> String {
    description
        .map(|d| format!(" ({})", cut(d, MAX_SERVER_TEXT)))
        .unwrap_or_default()
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

fn retry_text(after: Option<&Duration>) -> String {
    after
        .map(|d| format!(", retry after {}s", d.as_secs()))
        .unwrap_or_default()
}

impl OAuthError {
    /// The message as the profile records it: like the one people see, but with the server's
    /// description whole (JSON output shows it; tables and the app cut it when they show it).
    pub fn recorded_text(&self) -> String {
        match self {
            OAuthError::Refused { code, description } => format!(
                "the server refused: {code}{}: check the profile's scopes and redirect URI",
                description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            OAuthError::Denied(why) => format!("authorization denied: {why}"),
            other => other.to_string(),
        }
    }

    /// Whether this failure says something about the profile itself (its credentials or
    /// tokens were refused), so `status` should show it until a success clears it. Network
    /// trouble and local preconditions (no token yet, a mistyped code) are the caller's to
    /// report, not the profile's condition.
    pub fn belongs_on_profile(&self) -> bool {
        matches!(
            self,
            OAuthError::InvalidGrant { .. }
                | OAuthError::InvalidClient
                | OAuthError::Refused { .. }
                | OAuthError::UnexpectedStatus { .. }
                | OAuthError::BadResponse(_)
                | OAuthError::TokenRejected
        )
    }

    /// Worth retrying with backoff: the same request may succeed in a moment.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OAuthError::RateLimited { .. }
                | OAuthError::Server { .. }
                | OAuthError::Timeout { .. }
                | OAuthError::Connect { .. }
                | OAuthError::Interrupted { .. }
                | OAuthError::LeaseEnding
        )
    }

    /// Whether a single-use code or refresh token may be sent again after this failure: no
    /// connection was made, or the server answered with an error (429, 5xx), so it issued
    /// nothing for it. After a timeout or a connection broken before the answer, the server
    /// may have issued new tokens that never arrived; sending the old one again would be a
    /// second use, which a server with strict rotation takes for theft.
    pub fn may_resend_single_use(&self) -> bool {
        matches!(
            self,
            OAuthError::Connect { .. }
                | OAuthError::RateLimited { .. }
                | OAuthError::Server { .. }
                | OAuthError::LeaseEnding
        )
    }
}

impl crate::http::Retryable for OAuthError {
    fn is_transient(&self) -> bool {
        OAuthError::is_transient(self)
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            OAuthError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    fn may_resend_single_use(&self) -> bool {
        OAuthError::may_resend_single_use(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_grant_advice_depends_on_grant() {
        let refresh = OAuthError::InvalidGrant {
            grant: Grant::Refresh,
        }
        .to_string();
        assert_eq!(
            refresh,
            "refresh token expired or already used: authorize again"
        );
        let code = OAuthError::InvalidGrant { grant: Grant::Code }.to_string();
        assert!(code.contains("already used"), "{code}");
    }

    #[test]
    fn only_network_and_server_trouble_is_transient() {
        assert!(
            OAuthError::Server {
                status: 502,
                host: "h".into()
            }
            .is_transient()
        );
        assert!(OAuthError::RateLimited { retry_after: None }.is_transient());
        assert!(!OAuthError::InvalidClient.is_transient());
        assert!(!OAuthError::BadResponse("x".into()).is_transient());
    }

    #[test]
    fn long_server_text_is_cut_for_people_and_kept_whole_when_recorded() {
        let long = "d".repeat(1_000);
        let e = OAuthError::Refused {
            code: "invalid_scope".into(),
            description: Some(long.clone()),
        };
        let shown = e.to_string();
        assert!(
            shown.chars().count() < 400 && shown.contains('…'),
            "{shown}"
        );
        assert!(e.recorded_text().contains(&long));
    }

    #[test]
    fn only_server_verdicts_are_recorded_on_the_profile() {
        assert!(OAuthError::InvalidClient.belongs_on_profile());
        assert!(
            OAuthError::InvalidGrant {
                grant: Grant::Refresh
            }
            .belongs_on_profile()
        );
        for local in [
            OAuthError::NoToken("p".into()),
            OAuthError::NoRefreshToken,
            OAuthError::StateMismatch,
            OAuthError::NoCode("x".into()),
            OAuthError::Timeout {
                host: "h".into(),
                secs: 1,
            },
            OAuthError::Server {
                status: 503,
                host: "h".into(),
            },
        ] {
            assert!(!local.belongs_on_profile(), "{local}");
        }
    }
}
