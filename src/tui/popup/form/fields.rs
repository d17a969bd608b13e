//! The form's fields: which there are, on which page, and what each holds.

use crate::vault::{AuthMethod, GrantType, OwnerType, Provider};

/// A field of the form, by what it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldId {
    Name,
    Provider,
    BaseUrl,
    Issuer,
    ClientId,
    Secret,
    Redirect,
    Scopes,
    Owner,
    Auth,
    Grant,
    Pkce,
    AutoRefresh,
    AuthorizeUrl,
    TokenUrl,
    RefreshWindow,
    EnvVar,
    Publish,
    AuthorizeParams,
    Group,
    Notes,
}

/// What kind of value a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Secret,
    Choice(&'static [&'static str]),
    Toggle,
}

/// The form's pages, each with its fields in order: what every profile needs first, then
/// what `add` can set beyond it.
pub const PAGES: [(&str, &[FieldId]); 2] = [
    (
        "the app",
        &[
            FieldId::Name,
            FieldId::Provider,
            FieldId::BaseUrl,
            FieldId::Issuer,
            FieldId::ClientId,
            FieldId::Secret,
            FieldId::Redirect,
            FieldId::Scopes,
            FieldId::Owner,
            FieldId::Auth,
            FieldId::Grant,
            FieldId::Pkce,
            FieldId::AutoRefresh,
        ],
    ),
    (
        "more",
        &[
            FieldId::AuthorizeUrl,
            FieldId::TokenUrl,
            FieldId::RefreshWindow,
            FieldId::EnvVar,
            FieldId::Publish,
            FieldId::AuthorizeParams,
            FieldId::Group,
            FieldId::Notes,
        ],
    ),
];

/// The choices, each the flag `add` takes for it.
pub const PROVIDERS: [Provider; 3] = [
    Provider::Factorial,
    Provider::FactorialDemo,
    Provider::Custom,
];
const PROVIDER_FLAGS: &[&str] = &["factorial", "factorial-demo", "custom"];
pub const OWNERS: [OwnerType; 2] = [OwnerType::User, OwnerType::Company];
const OWNER_FLAGS: &[&str] = &["user", "company"];
pub const AUTH_METHODS: [AuthMethod; 3] = [AuthMethod::Post, AuthMethod::Basic, AuthMethod::None];
const AUTH_FLAGS: &[&str] = &["post", "basic", "none"];
pub const GRANTS: [GrantType; 3] = [
    GrantType::Code,
    GrantType::Device,
    GrantType::ClientCredentials,
];
const GRANT_FLAGS: &[&str] = &["code", "device", "client-credentials"];

impl FieldId {
    pub fn label(self) -> &'static str {
        match self {
            Self::Name => "Name",
            Self::Provider => "Provider",
            Self::BaseUrl => "Base URL",
            Self::Issuer => "Issuer",
            Self::ClientId => "Client id",
            Self::Secret => "Client secret",
            Self::Redirect => "Redirect URI",
            Self::Scopes => "Scopes",
            Self::Owner => "Owner",
            Self::Auth => "Auth method",
            Self::Grant => "Grant",
            Self::Pkce => "PKCE",
            Self::AutoRefresh => "Auto-refresh",
            Self::AuthorizeUrl => "Authorize URL",
            Self::TokenUrl => "Token URL",
            Self::RefreshWindow => "Refresh window",
            Self::EnvVar => "Env var",
            Self::Publish => "Publish",
            Self::AuthorizeParams => "Extra params",
            Self::Group => "Group",
            Self::Notes => "Notes",
        }
    }

    pub fn kind(self) -> FieldKind {
        match self {
            Self::Secret => FieldKind::Secret,
            Self::Provider => FieldKind::Choice(PROVIDER_FLAGS),
            Self::Owner => FieldKind::Choice(OWNER_FLAGS),
            Self::Auth => FieldKind::Choice(AUTH_FLAGS),
            Self::Grant => FieldKind::Choice(GRANT_FLAGS),
            Self::Pkce | Self::AutoRefresh | Self::Publish => FieldKind::Toggle,
            _ => FieldKind::Text,
        }
    }

    /// The page this field is on.
    pub fn page(self) -> usize {
        PAGES
            .iter()
            .position(|(_, fields)| fields.contains(&self))
            .unwrap_or(0)
    }
}

/// Every field, page by page.
pub fn all() -> impl Iterator<Item = FieldId> {
    PAGES.iter().flat_map(|(_, fields)| fields.iter().copied())
}

/// The option of `options` whose flag is `value`; the first when none is.
pub fn pick<T: Copy>(options: &[T], flag: impl Fn(T) -> String, value: &str) -> T {
    options
        .iter()
        .copied()
        .find(|o| flag(*o) == value)
        .unwrap_or(options[0])
}

/// A toggle's text.
pub fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_choice_shows_the_flags_of_its_options() {
        let flags = |v: Vec<String>| v;
        assert_eq!(
            flags(PROVIDERS.map(|p| p.flag().to_string()).to_vec()),
            PROVIDER_FLAGS
        );
        assert_eq!(flags(OWNERS.map(|o| o.to_string()).to_vec()), OWNER_FLAGS);
        assert_eq!(
            flags(AUTH_METHODS.map(|a| a.flag().to_string()).to_vec()),
            AUTH_FLAGS
        );
        assert_eq!(
            flags(GRANTS.map(|g| g.flag().to_string()).to_vec()),
            GRANT_FLAGS
        );
        assert_eq!(all().count(), 21);
    }
}
