//! HTTP calls to the OAuth server: token (code, refresh), revoke, credentials check.

use std::time::Duration;

use age::secrecy::{ExposeSecret, SecretString};
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Deserialize;

use super::limit::{Limits, Signal};
use super::{Grant, OAuthError};
use crate::vault::{AuthMethod, CheckResult, Profile, Token};

/// Requests to one server at once unless the caller says otherwise (config
/// `max_concurrent_jobs`).
pub const DEFAULT_MAX_CONCURRENT: usize = 16;

/// Largest response body read; anything bigger is refused, not buffered.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How transient failures are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A Retry-After longer than this is not waited for; the error is reported instead.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_delay: Duration::from_millis(400),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (capped exponential with full jitter),
    /// or `None` when the error is permanent, attempts are used up, or the server asks
    /// for a longer pause than we wait.
    pub fn delay_after(&self, attempt: u32, error: &OAuthError) -> Option<Duration> {
        if attempt + 1 >= self.attempts || !error.is_transient() {
            return None;
        }
        if let OAuthError::RateLimited {
            retry_after: Some(after),
        } = error
        {
            return (*after <= self.max_retry_after).then_some(*after);
        }
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.max_delay);
        let jittered = rand::rng().random_range(ceiling / 2..=ceiling);
        Some(jittered)
    }
}

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
pub struct TokenResponse {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub token_type: String,
    pub expires_in: Option<i64>,
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"***")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
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
        // Zero or less: the token is already expired, not one that never expires.
        expires_in: raw.expires_in.map(|s| s.max(0)),
        scope: raw.scope,
    })
}

impl TokenResponse {
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
        let (refresh_token, refresh_expires_at) = match self.refresh_token {
            Some(r) => (Some(r), received_at.checked_add_signed(window)),
            None => match previous {
                Some(p) => (p.refresh_token.clone(), p.refresh_expires_at),
                None => (None, None),
            },
        };
        Token {
            access_token: self.access_token,
            refresh_token,
            token_type: self.token_type,
            scope: self.scope,
            obtained_at: received_at,
            expires_at: self
                .expires_in
                .and_then(chrono::Duration::try_seconds)
                .and_then(|d| received_at.checked_add_signed(d)),
            refresh_expires_at,
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Which failed requests may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Any transient failure (reads, polls, revocations: sending twice does no harm).
    Freely,
    /// Only when no answer can have been lost (see [`OAuthError::may_resend_single_use`]):
    /// for codes and refresh tokens, which a second use may burn.
    OnlyUnsent,
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

/// Every HTTP client of tokdeck's starts here: its timeouts, its name and its proxy policy
/// (see [`proxy_policy`]). Callers choose the redirect policy.
pub fn http_builder(timeout: Duration, roots: &[reqwest::Certificate]) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .user_agent(concat!("tokdeck/", env!("CARGO_PKG_VERSION")))
        .no_proxy();
    let builder = match proxy_policy() {
        Some(proxy) => builder.proxy(proxy),
        None => builder,
    };
    roots.iter().fold(builder, |builder, root| {
        builder.add_root_certificate(root.clone())
    })
}

/// The proxy the environment names (`https_proxy`, `HTTPS_PROXY`, `all_proxy`, `ALL_PROXY`,
/// with `NO_PROXY` honoured), used for `https://` requests off loopback only. A proxy never
/// sees a request to this machine, and never one in plain HTTP: tokdeck's plain-HTTP
/// requests carry secrets, and only loopback servers get them. Through the proxy, TLS runs
/// end to end (CONNECT), so the proxy sees the host name and nothing more.
fn proxy_policy() -> Option<reqwest::Proxy> {
    let named = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|v| !v.trim().is_empty()))?;
    let proxy = match url::Url::parse(named.trim()) {
        Ok(proxy) => proxy,
        Err(e) => {
            tracing::warn!(error = %e, "the proxy the environment names is not a URL; going direct");
            return None;
        }
    };
    let policy = reqwest::Proxy::custom(move |target| proxied(target).then(|| proxy.clone()));
    Some(policy.no_proxy(reqwest::NoProxy::from_env()))
}

/// Whether a request to `target` may go through a proxy: HTTPS, and not to this machine.
fn proxied(target: &url::Url) -> bool {
    target.scheme() == "https"
        && target
            .host()
            .is_some_and(|host| !crate::vault::validate::is_loopback_host(&host))
}

/// The certificate authorities in the PEM file at `path`, to trust besides the usual ones.
pub fn load_roots(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, OAuthError> {
    let shown = path.display();
    let pem = std::fs::read(path)
        .map_err(|e| OAuthError::Invalid(format!("cannot read ca_file {shown}: {e}")))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(roots) if !roots.is_empty() => Ok(roots),
        _ => Err(OAuthError::Invalid(format!(
            "ca_file {shown} holds no PEM certificate: point it at the provider's CA certificate (-----BEGIN CERTIFICATE-----)"
        ))),
    }
}

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

    /// Never more than `ceiling` requests to one server at once (the window adapts below it).
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
        self.token_request(profile, &form, Grant::Code).await
    }

    /// Refreshes with `refresh_token`; the answer usually carries a new (rotated) one.
    pub async fn refresh(
        &self,
        profile: &Profile,
        refresh_token: &SecretString,
    ) -> Result<TokenResponse, OAuthError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        self.token_request(profile, &form, Grant::Refresh).await
    }

    /// A token for the app itself (the client credentials grant).
    pub async fn client_credentials(&self, profile: &Profile) -> Result<TokenResponse, OAuthError> {
        let scope = profile.scope_string();
        let mut form = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            form.push(("scope", scope.as_str()));
        }
        self.token_request(profile, &form, Grant::ClientCredentials)
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
        self.with_retries(Resend::Freely, || async {
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
        self.token_request(profile, &form, Grant::Device).await
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
        self.with_retries(Resend::Freely, || async {
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
        let openid = profile.scopes.iter().any(|s| s == "openid");
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
        self.with_retries(Resend::Freely, || async {
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
        self.with_retries(Resend::Freely, || async {
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
        self.with_retries(Resend::Freely, || async {
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
    ) -> Result<TokenResponse, OAuthError> {
        let url = profile.endpoints.token();
        // A code and a refresh token are good for one use: the server may answer a second
        // one by revoking what the first one got (RFC 6749 4.1.2, strict rotation).
        let resend = match grant {
            Grant::Code | Grant::Refresh => Resend::OnlyUnsent,
            Grant::Device | Grant::ClientCredentials => Resend::Freely,
        };
        self.with_retries(resend, || async {
            let request = client_post(&self.http, profile, &url, form)
                .header(reqwest::header::ACCEPT, "application/json");
            let (status, body) = self.send(request, &url).await?;
            match status {
                200..=299 => parse_token_response(&body),
                _ => Err(map_error_status(status, &body, &url, grant)),
            }
        })
        .await
    }

    /// Runs `attempt_once` until it succeeds or [`RetryPolicy`] says stop; with
    /// [`Resend::OnlyUnsent`], only while the server cannot have seen the request.
    async fn with_retries<T, F, Fut>(
        &self,
        resend: Resend,
        mut attempt_once: F,
    ) -> Result<T, OAuthError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, OAuthError>>,
    {
        let mut attempt = 0;
        loop {
            match attempt_once().await {
                Ok(v) => return Ok(v),
                Err(e) if resend == Resend::OnlyUnsent && !e.may_resend_single_use() => {
                    return Err(e);
                }
                Err(e) => match self.retry.delay_after(attempt, &e) {
                    Some(delay) => {
                        tracing::info!(attempt, ?delay, error = %e, "retrying");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
            }
        }
    }

    /// Sends a request within its server's window and reads at most [`MAX_BODY_BYTES`] of the
    /// answer; how it went adjusts the window.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<(u16, Vec<u8>), OAuthError> {
        let permit = self.limits.acquire(&origin_of(url)).await;
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
        permit.finish(match &result {
            Ok((status, _, retry_after)) if *status >= 500 => Signal::Overloaded {
                retry_after: *retry_after,
            },
            // An answer too big or not JSON still came back as fast as the server could.
            Ok(_) | Err(OAuthError::BadResponse(_)) => Signal::Answered,
            Err(OAuthError::RateLimited { retry_after }) => Signal::Overloaded {
                retry_after: *retry_after,
            },
            Err(OAuthError::Timeout { .. }) => Signal::Overloaded { retry_after: None },
            Err(_) => Signal::Failed,
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
        let pause = retry_after(response.headers());
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

/// How long a Retry-After header asks to wait: seconds, or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
}

/// Scheme, host and port: what one concurrency window covers.
fn origin_of(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| url.to_string(), |u| u.origin().ascii_serialization())
}

fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_else(|| url.to_string())
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
    fn only_https_off_loopback_goes_through_a_proxy() {
        let url = |u: &str| url::Url::parse(u).unwrap();
        assert!(proxied(&url("https://api.factorialhr.com/oauth/token")));
        for direct in [
            "http://127.0.0.1:8080/oauth/token",
            "http://localhost:1/x",
            "http://[::1]:1/x",
            "https://127.0.0.1:8443/x",
            "https://localhost/x",
            "http://api.example.com/x",
        ] {
            assert!(!proxied(&url(direct)), "{direct}");
        }
    }

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
