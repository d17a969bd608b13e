//! HTTP calls to the OAuth server: token (code, refresh), revoke, credentials check.

use std::time::Duration;

use age::secrecy::{ExposeSecret, SecretString};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Grant, OAuthError};
use crate::http::limits::Limits;
use crate::http::retry::retry_after_header;
use crate::http::{Resend, RetryPolicy, host_of, http_builder, origin_of, with_retries};
use crate::vault::{AuthMethod, CheckResult, Profile};

/// Requests to one server at once unless the caller says otherwise (config
/// `max_concurrent_jobs`).
pub const DEFAULT_MAX_CONCURRENT: usize = 16;

pub use super::token::{TokenResponse, parse_token_response};
pub use crate::http::MAX_BODY_BYTES;

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// A form POST to `url` with the client's credentials, the profile's way (RFC 6749 2.3.1):
/// HTTP Basic with both parts form-encoded first, both in the form body, or the id alone.
fn client_post(
    http: &reqwest::Client,
    profile: &Profile,
    url: &str,
    form: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    let id = profile.client_id.as_str();
    let secret = profile.client_secret.expose_secret();
    let request = http.post(url);
    match profile.auth_method {
        AuthMethod::Basic => {
            let mut value = reqwest::header::HeaderValue::from_str(&basic_credentials(id, secret))
                .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("Basic"));
            value.set_sensitive(true);
            request
                .header(reqwest::header::AUTHORIZATION, value)
                .form(form)
        }
        AuthMethod::Post => {
            let mut form = form.to_vec();
            form.extend([("client_id", id), ("client_secret", secret)]);
            request.form(&form)
        }
        AuthMethod::None => {
            let mut form = form.to_vec();
            form.push(("client_id", id));
            request.form(&form)
        }
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`, RFC 6749 2.3.1.
fn basic_credentials(id: &str, secret: &str) -> String {
    use base64::Engine;
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = zeroize::Zeroizing::new(format!("{}:{}", encode(id), encode(secret)));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
    )
}

/// Whether a single-use request may leave now.
pub type MaySend<'a> = dyn Fn() -> bool + Send + Sync + 'a;

/// Talks to OAuth servers. Cheap to clone.
#[derive(Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    timeout: Duration,
    retry: RetryPolicy,
    api_version: String,
    /// How many requests go to each server at once.
    limits: Limits,
}

impl OAuthClient {
    /// A client with the given per-request timeout and credentials API version.
    pub fn new(timeout: Duration, api_version: &str) -> Result<Self, OAuthError> {
        Self::trusting(timeout, api_version, &[])
    }

    /// Like [`OAuthClient::new`], also trusting the certificate authorities `roots` (a
    /// provider with a private CA; config `ca_file`).
    pub fn trusting(
        timeout: Duration,
        api_version: &str,
        roots: &[reqwest::Certificate],
    ) -> Result<Self, OAuthError> {
        let http = http_builder(timeout, roots)
            // Token endpoints must answer themselves; a redirect could carry secrets elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OAuthError::Invalid(format!("cannot set up HTTP: {e}")))?;
        Ok(Self {
            http,
            timeout,
            retry: RetryPolicy::default(),
            api_version: api_version.to_string(),
            limits: Limits::new(DEFAULT_MAX_CONCURRENT),
        })
    }

    /// Never more than `ceiling` requests to one server at once.
    pub fn with_max_concurrent(mut self, ceiling: usize) -> Self {
        self.limits = Limits::new(ceiling);
        self
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Exchanges an authorization code.
    pub async fn exchange(
        &self,
        profile: &Profile,
        code: &str,
        pkce_verifier: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", profile.redirect_uri.as_str()),
        ];
        if let Some(v) = pkce_verifier {
            form.push(("code_verifier", v));
        }
        self.token_request(profile, &form, Grant::Code, None).await
    }

    /// Refreshes with `refresh_token`; the answer usually carries a new (rotated) one.
    /// Spends `refresh_token`; each attempt goes only while `may_send` says yes at the moment
    /// it would leave (a lease across machines that may be running out: see
    /// [`crate::vault::Lease::may_spend`]).
    pub async fn refresh(
        &self,
        profile: &Profile,
        refresh_token: &SecretString,
        may_send: &MaySend<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        self.token_request(profile, &form, Grant::Refresh, Some(may_send))
            .await
    }

    /// A token for the app itself (the client credentials grant).
    pub async fn client_credentials(&self, profile: &Profile) -> Result<TokenResponse, OAuthError> {
        let scope = profile.scope_string();
        let mut form = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            form.push(("scope", scope.as_str()));
        }
        self.token_request(profile, &form, Grant::ClientCredentials, None)
            .await
    }

    /// Starts a device login (RFC 8628 3.1): the codes to show and to poll with.
    pub async fn device_authorize(
        &self,
        profile: &Profile,
    ) -> Result<super::device::DeviceAuthorization, OAuthError> {
        let url = profile.endpoints.device_url.clone().ok_or_else(|| {
            OAuthError::Unsupported(format!(
                "'{}' has no device authorization endpoint: rediscover it, add --device-url, or use --grant code",
                profile.name
            ))
        })?;
        let scope = profile.scope_string();
        let mut form = Vec::new();
        if !scope.is_empty() {
            form.push(("scope", scope.as_str()));
        }
        // The id travels in the body whatever the authentication: some servers (seen on
        // django-oauth-toolkit) read it from there even when HTTP Basic names the client.
        if profile.auth_method == AuthMethod::Basic {
            form.push(("client_id", profile.client_id.as_str()));
        }
        with_retries(&self.retry, Resend::Freely, || async {
            let request = client_post(&self.http, profile, &url, &form)
                .header(reqwest::header::ACCEPT, "application/json");
            let (status, body) = self.send(request, &url).await?;
            match status {
                200..=299 => super::device::parse_authorization(&body),
                _ => Err(map_error_status(status, &body, &url, Grant::Device)),
            }
        })
        .await
    }

    /// One poll of the token endpoint with a device code; `AuthorizationPending` and
    /// `SlowDown` mean "not yet".
    pub async fn device_poll(
        &self,
        profile: &Profile,
        device_code: &SecretString,
    ) -> Result<TokenResponse, OAuthError> {
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code.expose_secret()),
        ];
        self.token_request(profile, &form, Grant::Device, None)
            .await
    }

    /// Revokes one token (RFC 7009), saying which kind it is.
    pub async fn revoke(
        &self,
        profile: &Profile,
        token: &SecretString,
        hint: &str,
    ) -> Result<(), OAuthError> {
        let url = profile.endpoints.revoke().ok_or_else(|| {
            OAuthError::Unsupported(format!(
                "'{}' has no revocation endpoint, so its tokens cannot be ended early: they stay valid until they expire (`tokdeck remove {}` forgets them here)",
                profile.name, profile.name
            ))
        })?;
        let form = vec![("token", token.expose_secret()), ("token_type_hint", hint)];
        with_retries(&self.retry, Resend::Freely, || async {
            let request = client_post(&self.http, profile, &url, &form);
            let (status, body) = self.send(request, &url).await?;
            match status {
                200..=299 => Ok(()),
                _ => Err(map_error_status(status, &body, &url, Grant::Refresh)),
            }
        })
        .await
    }

    /// Asks the server who the token belongs to: Factorial's credentials endpoint for
    /// base-URL profiles; otherwise userinfo when the scope has `openid`, else introspection.
    pub async fn check(
        &self,
        profile: &Profile,
        access_token: &SecretString,
        checked_at: DateTime<Utc>,
    ) -> Result<CheckResult, OAuthError> {
        let e = &profile.endpoints;
        let openid = profile.asks_for("openid");
        if !e.explicit {
            let url = e.credentials(&self.api_version);
            return self
                .bearer_get(&url, access_token)
                .await
                .and_then(|body| super::check::credentials(&body, checked_at));
        }
        match (&e.userinfo_url, &e.introspect_url) {
            (Some(url), _) if openid => self
                .bearer_get(url, access_token)
                .await
                .and_then(|body| super::check::userinfo(&body, checked_at)),
            (_, Some(url)) => {
                self.introspect(profile, url, access_token, checked_at)
                    .await
            }
            (Some(_), None) => Err(OAuthError::Unsupported(format!(
                "'{}' can be checked through userinfo only with the openid scope, and the provider offers no introspection: add openid to its scopes",
                profile.name
            ))),
            (None, None) => Err(OAuthError::Unsupported(format!(
                "the provider of '{}' offers neither userinfo nor introspection, so nothing can say who the token belongs to; `tokdeck token {}` still hands it out",
                profile.name, profile.name
            ))),
        }
    }

    /// A GET with the access token; the body of a 2xx answer.
    async fn bearer_get(
        &self,
        url: &str,
        access_token: &SecretString,
    ) -> Result<Vec<u8>, OAuthError> {
        with_retries(&self.retry, Resend::Freely, || async {
            let request = self
                .http
                .get(url)
                .bearer_auth(access_token.expose_secret())
                .header(reqwest::header::ACCEPT, "application/json");
            let (status, body) = self.send(request, url).await?;
            match status {
                200..=299 => Ok(body),
                401 => Err(OAuthError::TokenRejected),
                _ => Err(map_error_status(status, &body, url, Grant::Refresh)),
            }
        })
        .await
    }

    /// RFC 7662 introspection of the access token, with the client's credentials.
    async fn introspect(
        &self,
        profile: &Profile,
        url: &str,
        access_token: &SecretString,
        checked_at: DateTime<Utc>,
    ) -> Result<CheckResult, OAuthError> {
        let form = vec![
            ("token", access_token.expose_secret()),
            ("token_type_hint", "access_token"),
        ];
        with_retries(&self.retry, Resend::Freely, || async {
            let request = client_post(&self.http, profile, url, &form)
                .header(reqwest::header::ACCEPT, "application/json");
            let (status, body) = self.send(request, url).await?;
            match status {
                200..=299 => super::check::introspection(&body, checked_at),
                _ => Err(map_error_status(status, &body, url, Grant::Refresh)),
            }
        })
        .await
    }

    /// Reads a metadata document: `None` when the server has none at `url` (404 and kin).
    pub async fn metadata(&self, url: &str) -> Result<Option<Vec<u8>>, OAuthError> {
        with_retries(&self.retry, Resend::Freely, || async {
            let request = self
                .http
                .get(url)
                .header(reqwest::header::ACCEPT, "application/json");
            let (status, body) = self.send(request, url).await?;
            match status {
                200..=299 => Ok(Some(body)),
                400 | 404 | 405 | 410 => Ok(None),
                _ => Err(map_error_status(status, &body, url, Grant::Refresh)),
            }
        })
        .await
    }

    async fn token_request(
        &self,
        profile: &Profile,
        form: &[(&str, &str)],
        grant: Grant,
        may_send: Option<&MaySend<'_>>,
    ) -> Result<TokenResponse, OAuthError> {
        let url = profile.endpoints.token();
        // A code and a refresh token are good for one use: the server may answer a second
        // one by revoking what the first one got (RFC 6749 4.1.2, strict rotation).
        let resend = match grant {
            Grant::Code | Grant::Refresh => Resend::OnlyUnsent,
            Grant::Device | Grant::ClientCredentials => Resend::Freely,
        };
        with_retries(&self.retry, resend, || async {
            let request = client_post(&self.http, profile, &url, form)
                .header(reqwest::header::ACCEPT, "application/json");
            let (status, body) = self.send_gated(request, &url, may_send).await?;
            match status {
                200..=299 => parse_token_response(&body),
                _ => Err(map_error_status(status, &body, &url, grant)),
            }
        })
        .await
    }

    /// Sends a request within its server's limit and reads at most [`MAX_BODY_BYTES`] of the
    /// answer; a pause the server asks for holds every request to it.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<(u16, Vec<u8>), OAuthError> {
        self.send_gated(request, url, None).await
    }

    /// Like [`Self::send`], and only if `may_send` still says yes once the request's turn in
    /// the limit came: the wait for it can be long.
    async fn send_gated(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
        may_send: Option<&MaySend<'_>>,
    ) -> Result<(u16, Vec<u8>), OAuthError> {
        let permit = self.limits.acquire(&origin_of(url)).await;
        if may_send.is_some_and(|may| !may()) {
            permit.finish(None);
            return Err(OAuthError::LeaseEnding);
        }
        // While several requests go to one server (in flight or waiting), each has a
        // connection of its own that closes after the answer. A kept-alive connection the
        // next request does not take at once can hold a server thread idle while the others
        // queue (puma waits 200 ms on one, and serves keep-alive connections unfairly:
        // measured 5x slower, and some requests timed out). A request that goes alone keeps
        // its connection for whatever comes next.
        // Plain HTTP only ever goes to loopback, where a connection costs about 0.1 ms: it is
        // never kept.
        let request = if permit.alone() && !url.starts_with("http://") {
            request
        } else {
            request.header(reqwest::header::CONNECTION, "close")
        };
        let result = self.send_now(request, url).await;
        // A server that asks for a pause (429, or a 5xx with Retry-After) gets it from every
        // request to it.
        permit.finish(match &result {
            Ok((status, _, retry_after)) if *status >= 500 => *retry_after,
            Err(OAuthError::RateLimited { retry_after }) => *retry_after,
            _ => None,
        });
        result.map(|(status, body, _)| (status, body))
    }

    /// The status, the body and (for 5xx) how long the server asks to be left alone.
    async fn send_now(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<(u16, Vec<u8>, Option<Duration>), OAuthError> {
        let host = host_of(url);
        let mut response = request
            .send()
            .await
            .map_err(|e| self.transport_error(&e, &host))?;
        let status = response.status().as_u16();
        let pause = retry_after_header(response.headers());
        if status == 429 {
            return Err(OAuthError::RateLimited { retry_after: pause });
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(OAuthError::BadResponse(format!(
                "answer larger than {} KiB",
                MAX_BODY_BYTES / 1024
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e, &host))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(OAuthError::BadResponse(format!(
                    "answer larger than {} KiB",
                    MAX_BODY_BYTES / 1024
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body, pause.filter(|_| status >= 500)))
    }

    fn transport_error(&self, e: &reqwest::Error, host: &str) -> OAuthError {
        if e.is_timeout() {
            OAuthError::Timeout {
                host: host.to_string(),
                secs: self.timeout.as_secs().max(1),
            }
        } else {
            // reqwest's Display names the URL; keep only the innermost cause.
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason = s.to_string();
                source = s.source();
            }
            if e.is_connect() {
                OAuthError::Connect {
                    host: host.to_string(),
                    reason,
                }
            } else {
                OAuthError::Interrupted {
                    host: host.to_string(),
                    reason,
                }
            }
        }
    }
}

/// Maps a non-2xx answer to an error, reading a Doorkeeper error body when there is one.
fn map_error_status(status: u16, body: &[u8], url: &str, grant: Grant) -> OAuthError {
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(body) {
        return match e.error.as_str() {
            "authorization_pending" if grant == Grant::Device => OAuthError::AuthorizationPending,
            "slow_down" if grant == Grant::Device => OAuthError::SlowDown,
            "access_denied" if grant == Grant::Device => OAuthError::DeviceDenied,
            "expired_token" if grant == Grant::Device => OAuthError::DeviceExpired,
            "invalid_grant" => OAuthError::InvalidGrant { grant },
            "invalid_client" | "unauthorized_client"
                if status == 401 || e.error == "invalid_client" =>
            {
                OAuthError::InvalidClient
            }
            _ if status >= 500 => OAuthError::Server {
                status,
                host: host_of(url),
            },
            _ => OAuthError::Refused {
                code: e.error,
                description: e.error_description,
            },
        };
    }
    match status {
        500..=599 => OAuthError::Server {
            status,
            host: host_of(url),
        },
        401 => OAuthError::InvalidClient,
        _ => OAuthError::UnexpectedStatus {
            status,
            host: host_of(url),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_map_to_advice() {
        let grant = map_error_status(
            400,
            br#"{"error":"invalid_grant","error_description":"x"}"#,
            "http://h/oauth/token",
            Grant::Refresh,
        );
        assert!(matches!(
            grant,
            OAuthError::InvalidGrant {
                grant: Grant::Refresh
            }
        ));
        let client = map_error_status(
            401,
            br#"{"error":"invalid_client"}"#,
            "http://h",
            Grant::Code,
        );
        assert!(matches!(client, OAuthError::InvalidClient));
        let server = map_error_status(503, b"busy", "http://h:1/x", Grant::Code);
        assert_eq!(
            server.to_string(),
            "server error HTTP 503 from h:1: try again later"
        );
        let scope = map_error_status(
            400,
            br#"{"error":"invalid_scope"}"#,
            "http://h",
            Grant::Code,
        );
        assert!(matches!(scope, OAuthError::Refused { .. }));
    }

    #[test]
    fn retry_policy_is_bounded_and_honours_retry_after() {
        let p = RetryPolicy::default();
        let server = OAuthError::Server {
            status: 500,
            host: "h".into(),
        };
        assert!(p.delay_after(0, &server).is_some());
        assert!(p.delay_after(2, &server).is_none());
        assert!(p.delay_after(0, &OAuthError::InvalidClient).is_none());
        let limited = OAuthError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(p.delay_after(0, &limited), Some(Duration::from_secs(2)));
        let long = OAuthError::RateLimited {
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(p.delay_after(0, &long), None);
        for attempt in 0..2 {
            let d = p.delay_after(attempt, &server).unwrap();
            assert!(d <= p.max_delay);
        }
    }
}
