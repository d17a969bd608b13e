//! The authorize URL: state, scopes, owner type, PKCE.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use url::Url;

use super::OAuthError;
use crate::vault::{OwnerType, Profile};

/// An authorize URL and what must be remembered to finish the flow.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub url: String,
    pub state: String,
    /// PKCE code verifier; kept secret until the exchange.
    pub pkce_verifier: Option<String>,
}

/// 32 random bytes, base64url: for `state` and PKCE verifiers.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 challenge for a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Builds the authorize URL for `profile` with a fresh state (and verifier when PKCE is on).
pub fn build(profile: &Profile) -> Result<AuthorizeRequest, OAuthError> {
    let endpoint = profile.endpoints.authorize().ok_or_else(|| {
        OAuthError::Unsupported(format!(
            "'{}' has no authorization endpoint: give one with `tokdeck edit {} --authorize-url URL`, or use --grant device or client-credentials",
            profile.name, profile.name
        ))
    })?;
    let mut url = Url::parse(&endpoint)
        .map_err(|e| OAuthError::Invalid(format!("authorize URL '{endpoint}' is invalid: {e}")))?;
    let state = random_token();
    let pkce_verifier = profile.uses_pkce().then(random_token);
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("client_id", &profile.client_id)
            .append_pair("redirect_uri", &profile.redirect_uri)
            .append_pair("response_type", "code");
        if !profile.scopes.is_empty() {
            q.append_pair("scope", &profile.scope_string());
        }
        q.append_pair("state", &state);
        if profile.owner == OwnerType::Company {
            q.append_pair("resource_owner_type", "company");
        }
        if let Some(v) = &pkce_verifier {
            q.append_pair("code_challenge", &pkce_challenge(v))
                .append_pair("code_challenge_method", "S256");
        }
        // OpenID Connect Core 11: `offline_access` must come with `prompt=consent`, or a
        // strict server issues no refresh token. The profile's own `prompt` wins.
        if profile.asks_for("offline_access") && !profile.authorize_params.contains_key("prompt") {
            q.append_pair("prompt", "consent");
        }
        for (key, value) in &profile.authorize_params {
            q.append_pair(key, value);
        }
    }
    Ok(AuthorizeRequest {
        // Spaces as %20, as the scope examples in Factorial's docs show.
        url: url.as_str().replace('+', "%20"),
        state,
        pkce_verifier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::{Endpoints, Provider};
    use age::secrecy::SecretString;

    fn profile() -> Profile {
        let mut p = Profile::new(
            "p".into(),
            Provider::Factorial,
            Endpoints::at("https://api.factorialhr.com"),
            "my client".into(),
            SecretString::from("s"),
            "urn:ietf:wg:oauth:2.0:oob".into(),
        );
        p.scopes = vec!["read".into(), "write".into()];
        p
    }

    fn query(url: &str) -> Vec<(String, String)> {
        Url::parse(url)
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn offline_access_asks_for_consent_unless_the_profile_says_otherwise() {
        let mut p = profile();
        p.scopes = vec!["openid".into(), "offline_access".into()];
        let q = query(&build(&p).unwrap().url);
        assert!(q.contains(&("prompt".into(), "consent".into())), "{q:?}");
        p.authorize_params
            .insert("prompt".into(), "login consent".into());
        p.authorize_params
            .insert("audience".into(), "https://api.example".into());
        let q = query(&build(&p).unwrap().url);
        let prompts: Vec<_> = q.iter().filter(|(k, _)| k == "prompt").collect();
        assert_eq!(
            prompts,
            [&("prompt".to_string(), "login consent".to_string())]
        );
        assert!(q.contains(&("audience".into(), "https://api.example".into())));
        p.scopes = vec!["read".into()];
        p.authorize_params.clear();
        assert!(!build(&p).unwrap().url.contains("prompt="));
    }

    #[test]
    fn user_url_has_the_doorkeeper_parameters() {
        let req = build(&profile()).unwrap();
        assert!(
            req.url
                .starts_with("https://api.factorialhr.com/oauth/authorize?")
        );
        assert!(req.url.contains("scope=read%20write"), "{}", req.url);
        let q = query(&req.url);
        assert!(q.contains(&("client_id".into(), "my client".into())));
        assert!(q.contains(&("response_type".into(), "code".into())));
        assert!(q.contains(&("redirect_uri".into(), "urn:ietf:wg:oauth:2.0:oob".into())));
        assert!(q.contains(&("state".into(), req.state.clone())));
        assert!(!req.url.contains("resource_owner_type"));
        assert!(!req.url.contains("code_challenge"));
    }

    #[test]
    fn company_and_pkce_add_their_parameters_and_state_is_fresh() {
        let mut p = profile();
        p.owner = OwnerType::Company;
        p.pkce = true;
        let a = build(&p).unwrap();
        let b = build(&p).unwrap();
        assert_ne!(a.state, b.state);
        let q = query(&a.url);
        assert!(q.contains(&("resource_owner_type".into(), "company".into())));
        let verifier = a.pkce_verifier.unwrap();
        assert!(q.contains(&("code_challenge".into(), pkce_challenge(&verifier))));
        assert!(q.contains(&("code_challenge_method".into(), "S256".into())));
    }

    #[test]
    fn pkce_challenge_matches_rfc7636_example() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
