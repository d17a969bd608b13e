//! The form's values, checked as `add` and `edit` check them, into a `Profile`; a refusal
//! names the field it is about, so the form can move there.

use age::secrecy::SecretString;

use super::Form;
use super::fields::{AUTH_METHODS, FieldId, GRANTS, OWNERS, PROVIDERS, pick};
use crate::http::origin_of;
use crate::vault::model::DEFAULT_REFRESH_WINDOW;
use crate::vault::validate::{
    validate_base_url, validate_client_id, validate_endpoint_url, validate_env_var, validate_group,
    validate_name, validate_notes, validate_redirect_uri, validate_scopes,
};
use crate::vault::{AuthMethod, Endpoints, GrantType, OwnerType, Profile, Provider};

/// Why the form's values were refused, and which field to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: FieldId,
    pub message: String,
}

/// `Err` of `result`, as a refusal of `field`.
fn at<T, E: std::fmt::Display>(field: FieldId, result: Result<T, E>) -> Result<T, Invalid> {
    result.map_err(|e| Invalid {
        field,
        message: e.to_string(),
    })
}

fn refuse<T>(field: FieldId, message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid {
        field,
        message: message.into(),
    })
}

/// Where the profile's server is: its provider, issuer and endpoints.
struct Server {
    provider: Provider,
    issuer: Option<String>,
    endpoints: Endpoints,
}

impl Form {
    /// The preset chosen, or the one a base URL typed as the preset's own names.
    pub(super) fn preset(&self) -> Provider {
        pick(
            &PROVIDERS,
            |p| p.flag().to_string(),
            self.value(FieldId::Provider),
        )
    }

    pub(super) fn auth_method(&self) -> AuthMethod {
        pick(
            &AUTH_METHODS,
            |a| a.flag().to_string(),
            self.value(FieldId::Auth),
        )
    }

    fn grant(&self) -> GrantType {
        pick(
            &GRANTS,
            |g| g.flag().to_string(),
            self.value(FieldId::Grant),
        )
    }

    fn toggle(&self, field: FieldId) -> bool {
        self.value(field) == super::fields::yes_no(true)
    }

    /// The secret typed, or the edited profile's when the field stays empty.
    fn secret(&self, previous: Option<&Profile>) -> Result<SecretString, Invalid> {
        if self.auth_method() == AuthMethod::None {
            return Ok(SecretString::from(String::new()));
        }
        match (self.value(FieldId::Secret), previous) {
            ("", Some(p)) => Ok(p.client_secret.clone()),
            ("", None) => refuse(
                FieldId::Secret,
                "client secret is empty: paste it from the OAuth application page (or choose auth method none for a public client)",
            ),
            (s, _) => Ok(SecretString::from(s.to_string())),
        }
    }

    /// The server: an issuer (its endpoints are read after the save), named endpoints, the
    /// preset, or the custom server's checked base URL; named endpoints win over the rest.
    fn server(&self, previous: Option<&Profile>) -> Result<Server, Invalid> {
        let issuer = self.value(FieldId::Issuer);
        let token = self.value(FieldId::TokenUrl);
        let mut server = if !issuer.is_empty() {
            Self::by_issuer(issuer, previous)?
        } else if !token.is_empty() {
            self.by_token_url(token)?
        } else if !self.value(FieldId::AuthorizeUrl).is_empty() {
            return refuse(
                FieldId::TokenUrl,
                "an authorize URL needs the token URL too (or an issuer to read both from)",
            );
        } else {
            let (provider, base) = self.base_server()?;
            Server {
                provider,
                issuer: None,
                endpoints: Endpoints::at(base),
            }
        };
        for (field, what, slot) in [
            (
                FieldId::AuthorizeUrl,
                "authorize URL",
                &mut server.endpoints.authorize_url,
            ),
            (
                FieldId::TokenUrl,
                "token URL",
                &mut server.endpoints.token_url,
            ),
        ] {
            let typed = self.value(field);
            if !typed.is_empty() {
                *slot = Some(at(field, validate_endpoint_url(what, typed))?);
            }
        }
        Ok(server)
    }

    /// A server whose endpoints its issuer's metadata names: the edited profile's, when the
    /// issuer stays, are kept until they are read again.
    fn by_issuer(issuer: &str, previous: Option<&Profile>) -> Result<Server, Invalid> {
        let url = validate_base_url(issuer).map_err(|e| format!("issuer: {e}"));
        let url = at(FieldId::Issuer, url)?;
        let kept = previous
            .filter(|p| p.issuer.as_deref() == Some(url.as_str()))
            .map(|p| p.endpoints.clone());
        let endpoints = kept.unwrap_or_else(|| Endpoints {
            explicit: true,
            ..Endpoints::at(url.clone())
        });
        Ok(Server {
            provider: Provider::Custom,
            issuer: Some(url),
            endpoints,
        })
    }

    /// A server known by its token endpoint, as `add --token-url` makes one: no Doorkeeper
    /// layout, its base the base URL typed or the token endpoint's origin.
    fn by_token_url(&self, token: &str) -> Result<Server, Invalid> {
        let token = at(FieldId::TokenUrl, validate_endpoint_url("token URL", token))?;
        let base = match self.value(FieldId::BaseUrl) {
            "" => origin_of(&token),
            base => at(FieldId::BaseUrl, validate_base_url(base))?,
        };
        Ok(Server {
            provider: Provider::Custom,
            issuer: None,
            endpoints: Endpoints {
                explicit: true,
                token_url: Some(token),
                ..Endpoints::at(base)
            },
        })
    }

    /// The preset, or the custom server's checked base URL. A base URL typed while a preset
    /// is chosen makes the server custom, as `--base-url` alone does in the CLI: what was
    /// typed is never dropped.
    fn base_server(&self) -> Result<(Provider, String), Invalid> {
        let typed = self.value(FieldId::BaseUrl);
        let preset = self.preset();
        match preset.base_url() {
            Some(url) if typed.is_empty() => Ok((preset, url.to_string())),
            preset_url => {
                let url = at(FieldId::BaseUrl, validate_base_url(typed))?;
                match preset_url {
                    Some(preset_url) if url == preset_url => Ok((preset, url)),
                    _ => Ok((Provider::Custom, url)),
                }
            }
        }
    }

    fn checked_name(&self, existing: &[Profile]) -> Result<String, Invalid> {
        let name = self.value(FieldId::Name).to_string();
        at(FieldId::Name, validate_name(&name))?;
        let clash = existing.iter().find(|p| {
            p.name.eq_ignore_ascii_case(&name) && Some(&p.name) != self.original.as_ref()
        });
        match clash {
            Some(taken) => refuse(
                FieldId::Name,
                format!(
                    "a profile named '{}' already exists (names are compared ignoring case): choose another name",
                    taken.name
                ),
            ),
            None => Ok(name),
        }
    }

    pub(super) fn build(&self, existing: &[Profile]) -> Result<Profile, Invalid> {
        let name = self.checked_name(existing)?;
        let previous = self.saved(existing);
        let server = self.server(previous)?;
        let grant = self.grant();
        let redirect = match self.value(FieldId::Redirect) {
            "" if grant != GrantType::Code => String::new(),
            uri => at(FieldId::Redirect, validate_redirect_uri(uri))?,
        };
        let client_id = at(
            FieldId::ClientId,
            validate_client_id(self.value(FieldId::ClientId)),
        )?;
        let secret = self.secret(previous)?;
        let mut profile = match previous {
            Some(p) => {
                let mut p = p.clone();
                p.name = name;
                p.provider = server.provider;
                if p.issuer != server.issuer || server.issuer.is_none() {
                    p.server = None;
                }
                p.endpoints = server.endpoints;
                p.client_id = client_id;
                p.client_secret = secret;
                p.redirect_uri = redirect;
                p
            }
            None => Profile::new(
                name,
                server.provider,
                server.endpoints,
                client_id,
                secret,
                redirect,
            ),
        };
        profile.scopes = at(
            FieldId::Scopes,
            validate_scopes(self.value(FieldId::Scopes)),
        )?;
        profile.issuer = server.issuer;
        profile.grant = grant;
        profile.auth_method = self.auth_method();
        let owner = pick(&OWNERS, |o| o.to_string(), self.value(FieldId::Owner));
        profile.owner = match grant {
            GrantType::ClientCredentials => OwnerType::App,
            _ => owner,
        };
        profile.pkce = self.toggle(FieldId::Pkce);
        profile.auto_refresh = self.toggle(FieldId::AutoRefresh);
        profile.publish = self.toggle(FieldId::Publish);
        self.set_extras(&mut profile)?;
        Ok(profile)
    }

    /// The second page's settings beyond the server: window, variable, params, group, notes.
    fn set_extras(&self, profile: &mut Profile) -> Result<(), Invalid> {
        profile.refresh_window = match self.value(FieldId::RefreshWindow) {
            "" => DEFAULT_REFRESH_WINDOW,
            text => at(
                FieldId::RefreshWindow,
                crate::duration::parse_refresh_window(text),
            )?,
        };
        profile.env_var = match self.value(FieldId::EnvVar) {
            "" => None,
            text => Some(at(FieldId::EnvVar, validate_env_var(text))?),
        };
        profile.authorize_params = at(
            FieldId::AuthorizeParams,
            authorize_params(self.value(FieldId::AuthorizeParams)),
        )?;
        profile.group = match self.value(FieldId::Group) {
            "" => None,
            text => Some(at(FieldId::Group, validate_group(text))?),
        };
        // Notes keep their newlines (the field shows them escaped); only the ends are trimmed.
        profile.notes = at(
            FieldId::Notes,
            validate_notes(self.raw(FieldId::Notes).trim()),
        )?;
        Ok(())
    }
}

/// The form's "Extra params": `KEY=VALUE` pairs separated by spaces, each checked as
/// `--authorize-param` is; `KEY=` leaves the key out.
pub(super) fn authorize_params(
    text: &str,
) -> Result<std::collections::BTreeMap<String, String>, crate::vault::validate::Invalid> {
    text.split_whitespace()
        .map(crate::vault::validate::validate_authorize_param)
        .filter(|p| p.as_ref().map_or(true, |(_, v)| !v.is_empty()))
        .collect()
}
