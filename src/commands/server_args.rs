//! The server part of a profile from `add` and `edit` flags: a Factorial preset, a
//! Doorkeeper-shaped base URL, an issuer to discover, or endpoints given one by one; then the
//! client authentication, grant and PKCE that go with it.

use anyhow::bail;

use crate::cli::ServerArgs;
use crate::context::Context;
use crate::oauth::discovery::{self, Discovered};
use crate::vault::validate::{provider_and_base, validate_endpoint_url};
use crate::vault::{
    AuthMethod, Endpoints, GrantType, OwnerType, Profile, Provider, ServerMetadata,
};

/// Where a profile's server is and what it supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub provider: Provider,
    pub issuer: Option<String>,
    pub endpoints: Endpoints,
    pub metadata: Option<ServerMetadata>,
}

impl Server {
    /// A Factorial preset or a Doorkeeper-shaped base URL.
    fn at_base(provider: Provider, base_url: String) -> Self {
        Self {
            provider,
            issuer: None,
            endpoints: Endpoints::at(base_url),
            metadata: None,
        }
    }

    /// What discovery found.
    pub fn discovered(found: Discovered) -> Self {
        Self {
            provider: Provider::Custom,
            issuer: Some(found.issuer),
            endpoints: found.endpoints,
            metadata: Some(found.metadata),
        }
    }

    /// Puts this server on `profile`.
    pub fn apply(self, profile: &mut Profile) {
        profile.provider = self.provider;
        profile.issuer = self.issuer;
        profile.endpoints = self.endpoints;
        profile.server = self.metadata;
    }
}

/// The server the flags name (reading the issuer's metadata when `--issuer` is given), or the
/// Factorial preset when they name none.
pub async fn resolve(ctx: &Context, args: &ServerArgs) -> anyhow::Result<Server> {
    let mut server = if let Some(issuer) = &args.issuer {
        let client = ctx.client()?;
        Server::discovered(discovery::discover(&client, issuer).await?)
    } else if args.names_endpoints() {
        let Some(token) = &args.token_url else {
            bail!(
                "give the token endpoint with --token-url (or --issuer URL to read every endpoint from the server's metadata)"
            );
        };
        let token = validate_endpoint_url("token URL", token)?;
        let base = match &args.base_url {
            Some(base) => crate::vault::validate::validate_base_url(base)?,
            None => crate::http::origin_of(&token),
        };
        Server {
            provider: Provider::Custom,
            issuer: None,
            endpoints: Endpoints {
                explicit: true,
                token_url: Some(token),
                ..Endpoints::at(base)
            },
            metadata: None,
        }
    } else {
        let (provider, base) =
            provider_and_base(args.provider.map(Into::into), args.base_url.as_deref())?;
        return Ok(Server::at_base(provider, base));
    };
    override_endpoints(&mut server.endpoints, args)?;
    Ok(server)
}

/// Endpoint flags win over what discovery found.
fn override_endpoints(endpoints: &mut Endpoints, args: &ServerArgs) -> anyhow::Result<()> {
    let fields = [
        (
            "authorize URL",
            &args.authorize_url,
            &mut endpoints.authorize_url,
        ),
        ("token URL", &args.token_url, &mut endpoints.token_url),
        ("revoke URL", &args.revoke_url, &mut endpoints.revoke_url),
        (
            "introspect URL",
            &args.introspect_url,
            &mut endpoints.introspect_url,
        ),
        ("device URL", &args.device_url, &mut endpoints.device_url),
        (
            "userinfo URL",
            &args.userinfo_url,
            &mut endpoints.userinfo_url,
        ),
    ];
    for (what, given, slot) in fields {
        if let Some(url) = given {
            *slot = Some(validate_endpoint_url(what, url)?);
        }
    }
    Ok(())
}

/// The client authentication, grant and PKCE for `profile`, from the flags where given, else
/// from what suits its server; then the checks that the combination can work.
pub fn settle_auth(profile: &mut Profile, args: &ServerArgs, adding: bool) -> anyhow::Result<()> {
    let metadata = profile.server.clone().unwrap_or_default();
    if let Some(method) = args.auth_method {
        profile.auth_method = method.into();
    } else if adding {
        profile.auth_method = if profile.endpoints.explicit {
            metadata.default_auth_method()
        } else {
            AuthMethod::Post
        };
    }
    if let Some(grant) = args.grant {
        profile.grant = grant.into();
    }
    if let Some(pkce) = args.pkce_choice() {
        profile.pkce = pkce;
    } else if adding {
        profile.pkce = metadata.supports_s256();
    }
    if profile.grant == GrantType::ClientCredentials {
        profile.owner = OwnerType::App;
    } else if profile.owner == OwnerType::App {
        profile.owner = OwnerType::User;
    }
    check_combination(profile, &metadata)
}

fn check_combination(profile: &Profile, metadata: &ServerMetadata) -> anyhow::Result<()> {
    let e = &profile.endpoints;
    match profile.grant {
        GrantType::Device if e.device_url.is_none() => bail!(
            "the server has no device authorization endpoint{}: give it with --device-url, or use --grant code",
            if profile.issuer.is_some() {
                " (none in its metadata)"
            } else {
                ""
            }
        ),
        GrantType::Code if e.authorize().is_none() => bail!(
            "the server has no authorization endpoint: give it with --authorize-url, or use --grant device or client-credentials"
        ),
        GrantType::Code if profile.redirect_uri.is_empty() => bail!(
            "--grant code needs --redirect-uri: the one registered with the OAuth app (urn:ietf:wg:oauth:2.0:oob to paste the code)"
        ),
        GrantType::ClientCredentials if profile.auth_method == AuthMethod::None => bail!(
            "--grant client-credentials needs the client's secret: use --auth-method basic or post"
        ),
        _ => {}
    }
    if !metadata.allows_grant(profile.grant) {
        crate::note!(
            "warning: the server's metadata does not list the {} grant; it may refuse it",
            profile.grant.flag()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::SecretString;

    fn profile(explicit: bool) -> Profile {
        let mut endpoints = Endpoints::at("https://a.example");
        endpoints.explicit = explicit;
        endpoints.token_url = Some("https://a.example/token".into());
        endpoints.authorize_url = Some("https://a.example/authorize".into());
        Profile::new(
            "p".into(),
            Provider::Custom,
            endpoints,
            "c".into(),
            SecretString::from("s"),
            "http://127.0.0.1:1/cb".into(),
        )
    }

    #[test]
    fn defaults_follow_the_server() {
        let mut p = profile(false);
        settle_auth(&mut p, &ServerArgs::default(), true).unwrap();
        assert_eq!((p.auth_method, p.pkce), (AuthMethod::Post, false));
        let mut p = profile(true);
        p.server = Some(ServerMetadata {
            pkce_methods: vec!["S256".into()],
            ..ServerMetadata::default()
        });
        settle_auth(&mut p, &ServerArgs::default(), true).unwrap();
        assert_eq!((p.auth_method, p.pkce), (AuthMethod::Basic, true));
    }

    #[test]
    fn impossible_combinations_are_refused() {
        let mut p = profile(true);
        let device = ServerArgs {
            grant: Some(crate::cli::GrantArg::Device),
            ..ServerArgs::default()
        };
        let err = settle_auth(&mut p, &device, true).unwrap_err().to_string();
        assert!(err.contains("no device authorization endpoint"), "{err}");
        let mut p = profile(true);
        let app = ServerArgs {
            grant: Some(crate::cli::GrantArg::ClientCredentials),
            ..ServerArgs::default()
        };
        settle_auth(&mut p, &app, true).unwrap();
        assert_eq!(p.owner, OwnerType::App);
    }
}
