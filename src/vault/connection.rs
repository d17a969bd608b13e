//! How a profile talks to its authorization server: endpoints, client authentication, grant,
//! and what the server said it supports (from its metadata document).

use serde::{Deserialize, Serialize};

/// Where the OAuth endpoints live. A profile made from a base URL (the Factorial presets and
/// `--base-url`) follows Doorkeeper's layout under it for any endpoint not set; an `explicit`
/// one (from discovery or endpoint flags) has only the endpoints it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    pub base_url: String,
    /// No Doorkeeper layout: an endpoint not named here does not exist.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub explicit: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspect_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_url: Option<String>,
}

impl Endpoints {
    /// Doorkeeper's layout under `base_url`, no overrides.
    pub fn at(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            explicit: false,
            authorize_url: None,
            token_url: None,
            revoke_url: None,
            introspect_url: None,
            device_url: None,
            userinfo_url: None,
        }
    }

    fn join(&self, path: &str) -> String {
        format!("{}{}", self.base_url.trim_end_matches('/'), path)
    }

    /// The named URL, else (Doorkeeper layout only) `path` under the base URL.
    fn or_layout(&self, url: Option<&String>, path: &str) -> Option<String> {
        match url {
            Some(u) => Some(u.clone()),
            None if self.explicit => None,
            None => Some(self.join(path)),
        }
    }

    /// The authorization endpoint, if the server has one.
    pub fn authorize(&self) -> Option<String> {
        self.or_layout(self.authorize_url.as_ref(), "/oauth/authorize")
    }

    /// The token endpoint (exchange and refresh). Every profile has one: an explicit profile
    /// is refused without it.
    pub fn token(&self) -> String {
        self.token_url
            .clone()
            .unwrap_or_else(|| self.join("/oauth/token"))
    }

    /// The revocation endpoint (RFC 7009), if the server has one.
    pub fn revoke(&self) -> Option<String> {
        self.or_layout(self.revoke_url.as_ref(), "/oauth/revoke")
    }

    /// The credentials endpoint that tells who a token belongs to (Factorial's API).
    pub fn credentials(&self, api_version: &str) -> String {
        self.join(&format!(
            "/api/{api_version}/resources/api_public/credentials"
        ))
    }

    /// Every URL the profile calls, for checks on shared vaults.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        [
            Some(&self.base_url),
            self.authorize_url.as_ref(),
            self.token_url.as_ref(),
            self.revoke_url.as_ref(),
            self.introspect_url.as_ref(),
            self.device_url.as_ref(),
            self.userinfo_url.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
    }
}

/// How the client proves who it is at the token endpoint (RFC 6749 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// `client_secret_basic`: HTTP Basic, the method every server must support.
    Basic,
    /// `client_secret_post`: id and secret in the form body (what Factorial expects).
    Post,
    /// A public client: the id alone, always with PKCE.
    None,
}

impl AuthMethod {
    /// The flag value and the label in tables.
    pub fn flag(self) -> &'static str {
        match self {
            AuthMethod::Basic => "basic",
            AuthMethod::Post => "post",
            AuthMethod::None => "none",
        }
    }

    /// The name metadata documents use (`token_endpoint_auth_methods_supported`).
    pub fn metadata_name(self) -> &'static str {
        match self {
            AuthMethod::Basic => "client_secret_basic",
            AuthMethod::Post => "client_secret_post",
            AuthMethod::None => "none",
        }
    }

    /// Whether the method sends a client secret.
    pub fn has_secret(self) -> bool {
        self != AuthMethod::None
    }
}

/// How the profile gets its first token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrantType {
    /// Authorization code (a browser, then a pasted code or the loopback listener).
    #[default]
    Code,
    /// Device authorization (RFC 8628): a code to type on any device.
    Device,
    /// Client credentials: the app's own token, no person involved.
    ClientCredentials,
}

impl GrantType {
    /// The flag value.
    pub fn flag(self) -> &'static str {
        match self {
            GrantType::Code => "code",
            GrantType::Device => "device",
            GrantType::ClientCredentials => "client-credentials",
        }
    }

    /// The name metadata documents use (`grant_types_supported`).
    pub fn metadata_name(self) -> &'static str {
        match self {
            GrantType::Code => "authorization_code",
            GrantType::Device => "urn:ietf:params:oauth:grant-type:device_code",
            GrantType::ClientCredentials => "client_credentials",
        }
    }

    pub fn is_code(&self) -> bool {
        *self == GrantType::Code
    }
}

/// What the server's metadata document said it supports; empty lists mean "not said".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerMetadata {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pkce_methods: Vec<String>,
    /// RFC 9207: every authorization response carries `iss`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub iss_parameter: bool,
}

impl ServerMetadata {
    /// The client authentication to use when none is asked for: basic when the server lists
    /// it or lists nothing (RFC 6749 says every server supports it), else post when listed,
    /// else basic anyway.
    pub fn default_auth_method(&self) -> AuthMethod {
        let listed = |m: AuthMethod| self.auth_methods.iter().any(|a| a == m.metadata_name());
        if self.auth_methods.is_empty() || listed(AuthMethod::Basic) {
            AuthMethod::Basic
        } else if listed(AuthMethod::Post) {
            AuthMethod::Post
        } else {
            AuthMethod::Basic
        }
    }

    /// Whether the server said it supports S256 PKCE.
    pub fn supports_s256(&self) -> bool {
        self.pkce_methods.iter().any(|m| m == "S256")
    }

    /// Whether the server lists `grant` (or lists no grants at all).
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.is_empty() || self.grant_types.iter().any(|g| g == grant.metadata_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doorkeeper_layout_fills_in_and_explicit_does_not() {
        let mut e = Endpoints::at("http://127.0.0.1:9/");
        assert_eq!(e.token(), "http://127.0.0.1:9/oauth/token");
        assert_eq!(e.revoke().unwrap(), "http://127.0.0.1:9/oauth/revoke");
        assert_eq!(
            e.credentials("2025-04-01"),
            "http://127.0.0.1:9/api/2025-04-01/resources/api_public/credentials"
        );
        e.token_url = Some("https://other/token".into());
        assert_eq!(e.token(), "https://other/token");
        e.explicit = true;
        assert_eq!(e.revoke(), None);
        assert_eq!(e.authorize(), None);
    }

    #[test]
    fn auth_method_default_follows_the_metadata() {
        let mut m = ServerMetadata::default();
        assert_eq!(m.default_auth_method(), AuthMethod::Basic);
        m.auth_methods = vec!["client_secret_post".into()];
        assert_eq!(m.default_auth_method(), AuthMethod::Post);
        m.auth_methods.push("client_secret_basic".into());
        assert_eq!(m.default_auth_method(), AuthMethod::Basic);
        assert!(m.allows_grant(GrantType::Device));
        m.grant_types = vec!["authorization_code".into()];
        assert!(!m.allows_grant(GrantType::Device));
    }
}
