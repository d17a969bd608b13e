//! Server metadata discovery: RFC 8414 first, then OpenID Connect Discovery, with the issuer
//! check both require.

use serde::Deserialize;
use url::Url;

use super::{OAuthClient, OAuthError};
use crate::vault::validate::{validate_base_url, validate_endpoint_url};
use crate::vault::{Endpoints, Profile, Provider, ServerMetadata};

/// What discovery found: the issuer as the document names it, the endpoints, and what the
/// server supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub issuer: String,
    pub endpoints: Endpoints,
    pub metadata: ServerMetadata,
}

/// Where the metadata of `issuer` may live, in the order they are tried: RFC 8414's
/// well-known URI (inserted between host and path, section 3.1), then OpenID Connect's
/// (appended to the issuer).
pub fn metadata_urls(issuer: &str) -> Result<Vec<String>, OAuthError> {
    let checked =
        validate_base_url(issuer).map_err(|e| OAuthError::Discovery(format!("issuer: {e}")))?;
    let url = Url::parse(&checked).map_err(|e| OAuthError::Discovery(e.to_string()))?;
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    Ok(vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}{path}/.well-known/openid-configuration"),
    ])
}

#[derive(Deserialize)]
struct Document {
    issuer: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    introspection_endpoint: Option<String>,
    device_authorization_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    grant_types_supported: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

/// Issuers compare as strings (RFC 8414 3.3); a trailing slash typed by a person is forgiven.
fn same_issuer(document: &str, given: &str) -> bool {
    document == given || document.trim_end_matches('/') == given.trim_end_matches('/')
}

/// Reads the document fetched from `url` for `issuer`.
pub fn parse(issuer: &str, url: &str, body: &[u8]) -> Result<Discovered, OAuthError> {
    let doc: Document = serde_json::from_slice(body).map_err(|e| {
        OAuthError::Discovery(format!(
            "the metadata at {url} is not a metadata document ({e}): check the issuer URL"
        ))
    })?;
    let named = doc.issuer.unwrap_or_default();
    if !same_issuer(&named, issuer) {
        return Err(OAuthError::Discovery(format!(
            "the metadata at {url} names issuer '{}', not '{issuer}': use the exact issuer the provider documents (a different one may be an impostor)",
            crate::display::untrusted_short(&named, 120)
        )));
    }
    let endpoint = |what: &str, value: Option<String>| -> Result<Option<String>, OAuthError> {
        value
            .map(|v| {
                validate_endpoint_url(what, &v)
                    .map_err(|e| OAuthError::Discovery(format!("the metadata at {url}: {e}")))
            })
            .transpose()
    };
    let token = endpoint("token endpoint", doc.token_endpoint)?.ok_or_else(|| {
        OAuthError::Discovery(format!(
            "the metadata at {url} names no token endpoint: give it with --token-url"
        ))
    })?;
    let endpoints = Endpoints {
        base_url: named.trim_end_matches('/').to_string(),
        explicit: true,
        authorize_url: endpoint("authorization endpoint", doc.authorization_endpoint)?,
        token_url: Some(token),
        revoke_url: endpoint("revocation endpoint", doc.revocation_endpoint)?,
        introspect_url: endpoint("introspection endpoint", doc.introspection_endpoint)?,
        device_url: endpoint(
            "device authorization endpoint",
            doc.device_authorization_endpoint,
        )?,
        userinfo_url: endpoint("userinfo endpoint", doc.userinfo_endpoint)?,
    };
    Ok(Discovered {
        issuer: named,
        endpoints,
        metadata: ServerMetadata {
            grant_types: doc.grant_types_supported,
            auth_methods: doc.token_endpoint_auth_methods_supported,
            pkce_methods: doc.code_challenge_methods_supported,
            iss_parameter: doc.authorization_response_iss_parameter_supported,
        },
    })
}

impl Discovered {
    /// Whether this differs from what `profile` holds.
    pub fn changes(&self, profile: &Profile) -> bool {
        profile.issuer.as_ref() != Some(&self.issuer)
            || profile.endpoints != self.endpoints
            || profile.server.as_ref() != Some(&self.metadata)
    }

    /// Puts what was found on `profile`; its own settings (client authentication, grant,
    /// PKCE) stay as chosen.
    pub fn apply(self, profile: &mut Profile) {
        profile.provider = Provider::Custom;
        profile.issuer = Some(self.issuer);
        profile.endpoints = self.endpoints;
        profile.server = Some(self.metadata);
    }

    /// Fills what this document leaves out from a second one for the same issuer (a server
    /// may name userinfo only in its OpenID Connect document, and introspection only in its
    /// RFC 8414 one).
    fn filled_from(mut self, other: Discovered) -> Self {
        let (e, o) = (&mut self.endpoints, other.endpoints);
        e.authorize_url = e.authorize_url.take().or(o.authorize_url);
        e.revoke_url = e.revoke_url.take().or(o.revoke_url);
        e.introspect_url = e.introspect_url.take().or(o.introspect_url);
        e.device_url = e.device_url.take().or(o.device_url);
        e.userinfo_url = e.userinfo_url.take().or(o.userinfo_url);
        let (m, n) = (&mut self.metadata, other.metadata);
        for (mine, theirs) in [
            (&mut m.grant_types, n.grant_types),
            (&mut m.auth_methods, n.auth_methods),
            (&mut m.pkce_methods, n.pkce_methods),
        ] {
            if mine.is_empty() {
                *mine = theirs;
            }
        }
        m.iss_parameter |= n.iss_parameter;
        self
    }
}

/// Fetches and checks the metadata of `issuer`: every document it publishes, the first one
/// found leading. A document that fails its checks fails discovery, whichever it is.
pub async fn discover(client: &OAuthClient, issuer: &str) -> Result<Discovered, OAuthError> {
    let urls = metadata_urls(issuer)?;
    let mut found: Option<Discovered> = None;
    for url in &urls {
        if let Some(body) = client.metadata(url).await? {
            let doc = parse(issuer, url, &body)?;
            found = Some(match found {
                None => doc,
                Some(first) => first.filled_from(doc),
            });
        }
    }
    found.ok_or_else(|| {
        OAuthError::Discovery(format!(
            "no metadata at {}: check the issuer URL, or give the endpoints with --token-url and --authorize-url",
            urls.join(" or ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_uris_follow_rfc8414_for_issuers_with_a_path() {
        assert_eq!(
            metadata_urls("https://auth.example.com").unwrap(),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            metadata_urls("https://h.example/tenant/1/").unwrap(),
            [
                "https://h.example/.well-known/oauth-authorization-server/tenant/1",
                "https://h.example/tenant/1/.well-known/openid-configuration"
            ]
        );
        assert!(metadata_urls("http://auth.example.com").is_err());
    }

    #[test]
    fn the_document_must_name_the_issuer_and_a_token_endpoint() {
        let good = br#"{"issuer":"https://a.example/o","token_endpoint":"https://a.example/o/token/","authorization_endpoint":"https://a.example/o/authorize/","code_challenge_methods_supported":["S256"],"authorization_response_iss_parameter_supported":true}"#;
        let d = parse("https://a.example/o/", "u", good).unwrap();
        assert_eq!(d.issuer, "https://a.example/o");
        assert_eq!(d.endpoints.token(), "https://a.example/o/token/");
        assert_eq!(d.endpoints.revoke(), None);
        assert!(d.metadata.supports_s256() && d.metadata.iss_parameter);
        let other =
            br#"{"issuer":"https://evil.example","token_endpoint":"https://evil.example/t"}"#;
        let err = parse("https://a.example/o", "u", other)
            .unwrap_err()
            .to_string();
        assert!(err.contains("names issuer 'https://evil.example'"), "{err}");
        let no_token = br#"{"issuer":"https://a.example"}"#;
        let err = parse("https://a.example", "https://a.example/m", no_token)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("https://a.example/m") && err.contains("no token endpoint"),
            "{err}"
        );
        let plain = br#"{"issuer":"https://a.example","token_endpoint":"http://a.example/t"}"#;
        assert!(parse("https://a.example", "u", plain).is_err());
        assert!(parse("https://a.example", "u", b"<html>").is_err());
    }
}
