//! The vault's content: profiles, their OAuth apps and their tokens.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use age::secrecy::{ExposeSecret, SecretString};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use super::connection::{AuthMethod, Endpoints, GrantType, ServerMetadata};
pub use super::names::ProfileError;

/// The vault format this build reads and writes: 2 added the members' secret, which earlier
/// builds would refuse as an unknown field (they refuse a newer format with a clearer word).
pub const FORMAT_VERSION: u32 = 2;

/// The format of a head with groups or operators ([`super::groups`]), which builds before
/// them would read as a vault whose entries they may all open.
pub const GROUPS_FORMAT_VERSION: u32 = 3;

/// The newest format this build reads.
pub const NEWEST_FORMAT_VERSION: u32 = GROUPS_FORMAT_VERSION;

/// Default length of the refresh-token window (Factorial: one week).
pub const DEFAULT_REFRESH_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Everything stored in the encrypted file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultData {
    pub version: u32,
    /// Public recipients the vault is encrypted to (age1..., ssh-ed25519 ..., ssh-rsa ...).
    /// Empty for passphrase vaults.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// A random value only those who can open the vault know: a vault without the one a
    /// machine accepted was written by someone who cannot open it ([`super::trust`]).
    #[serde(default, with = "secret_opt", skip_serializing_if = "Option::is_none")]
    pub members_secret: Option<SecretString>,
    /// The mark of the members' secret this one replaced, when a member changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_secret_replaces: Option<String>,
    /// Recipients who read the head and every profile's status, and no entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<String>,
    /// Groups whose profiles' entries are sealed to their own recipients.
    #[serde(default, rename = "group", skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    #[serde(default, rename = "profile")]
    pub profiles: Vec<Profile>,
}

/// A group of a team vault and the recipients its profiles' entries are sealed to
/// ([`super::groups`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    pub recipients: Vec<String>,
}

impl Default for VaultData {
    fn default() -> Self {
        Self {
            version: FORMAT_VERSION,
            recipients: Vec::new(),
            members_secret: None,
            members_secret_replaces: None,
            operators: Vec::new(),
            groups: Vec::new(),
            profiles: Vec::new(),
        }
    }
}

impl VaultData {
    /// The error for a name no profile has, with the closest one when there is one.
    pub fn missing(&self, name: &str) -> ProfileError {
        ProfileError::missing(name, self.profiles.iter().map(|p| p.name.as_str()))
    }

    /// The profile called `name`, if any.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// The profile called `name` for changing, if any.
    pub fn profile_mut(&mut self, name: &str) -> Option<&mut Profile> {
        self.profiles.iter_mut().find(|p| p.name == name)
    }

    /// The profile whose name equals `name` ignoring case, other than `except`: names that
    /// differ only in case (`acme`, `ACME`) would be told apart by nobody reading a table.
    pub fn name_clash(&self, name: &str, except: Option<&str>) -> Option<&Profile> {
        self.profiles
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name) && Some(p.name.as_str()) != except)
    }

    /// Adds a new profile; its name must be free, ignoring case.
    pub fn insert(&mut self, profile: Profile) -> Result<(), ProfileError> {
        if let Some(taken) = self.name_clash(&profile.name, None) {
            return Err(ProfileError::NameTaken(taken.name.clone()));
        }
        self.profiles.push(profile);
        Ok(())
    }

    /// Replaces the profile called `original` with `profile`, which may carry a new name
    /// (that name must be free).
    pub fn replace(&mut self, original: &str, profile: Profile) -> Result<(), ProfileError> {
        if let Some(taken) = self.name_clash(&profile.name, Some(original)) {
            return Err(ProfileError::NameTaken(taken.name.clone()));
        }
        let slot = self
            .profile_mut(original)
            .ok_or_else(|| ProfileError::NotFound(original.to_string()))?;
        *slot = profile;
        Ok(())
    }

    /// Removes the profile called `name`.
    pub fn remove(&mut self, name: &str) -> Result<Profile, ProfileError> {
        let at = self
            .profiles
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| self.missing(name))?;
        Ok(self.profiles.remove(at))
    }
}

impl VaultData {
    /// Fields holding control characters, as `(profile, field)`: a hand-edited or shared vault
    /// may carry them. The vault still opens (one teammate's bad note must not lock everyone
    /// out); the values are shown escaped and the caller warns about each.
    pub fn fields_with_control_characters(&self) -> Vec<(String, &'static str)> {
        self.profiles
            .iter()
            .flat_map(|p| {
                p.fields_with_control_characters()
                    .into_iter()
                    .map(|field| (p.name.clone(), field))
            })
            .collect()
    }
}

impl Profile {
    /// The fields of this profile that hold control characters (newlines are fine in notes).
    pub fn fields_with_control_characters(&self) -> Vec<&'static str> {
        let bad = |text: &str, newlines_ok: bool| {
            text.chars()
                .any(|c| c.is_control() && !(newlines_ok && c == '\n'))
        };
        let fields: [(&'static str, bool); 6] = [
            ("name", bad(&self.name, false)),
            ("client_id", bad(&self.client_id, false)),
            ("redirect_uri", bad(&self.redirect_uri, false)),
            ("endpoints", self.endpoints.all().any(|u| bad(u, false))),
            ("scopes", self.scopes.iter().any(|s| bad(s, false))),
            ("notes", bad(&self.notes, true)),
        ];
        fields
            .into_iter()
            .filter_map(|(field, is_bad)| is_bad.then_some(field))
            .collect()
    }
}

/// Which server a profile talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// Factorial production, <https://api.factorialhr.com>
    Factorial,
    /// Factorial's demo sandbox, <https://api.eu2.demo.factorial.dev>
    FactorialDemo,
    /// Any other server: Doorkeeper-shaped at a base URL, or any provider's endpoints.
    Custom,
}

impl Provider {
    /// The preset base URL, or `None` for custom servers.
    pub fn base_url(self) -> Option<&'static str> {
        match self {
            Provider::Factorial => Some("https://api.factorialhr.com"),
            Provider::FactorialDemo => Some("https://api.eu2.demo.factorial.dev"),
            Provider::Custom => None,
        }
    }

    /// The value `--provider` takes for this preset.
    pub fn flag(self) -> &'static str {
        match self {
            Provider::Factorial => "factorial",
            Provider::FactorialDemo => "factorial-demo",
            Provider::Custom => "custom",
        }
    }

    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Provider::Factorial => "production",
            Provider::FactorialDemo => "demo",
            Provider::Custom => "custom",
        }
    }
}

/// Whose token this is: a user's, a company's (admin-approved, never expires), or the app's
/// own (client credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OwnerType {
    User,
    Company,
    App,
}

impl fmt::Display for OwnerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OwnerType::User => "user",
            OwnerType::Company => "company",
            OwnerType::App => "app",
        })
    }
}

/// One OAuth integration: an app, a scope, an owner type, and its current token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// The group it belongs to, for filters and views (`group:payroll`); `None`: no group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub provider: Provider,
    /// The issuer the server's metadata named (discovery); redirects must carry it back when
    /// they carry `iss` (RFC 9207).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    pub endpoints: Endpoints,
    pub client_id: String,
    /// How the client authenticates; vaults from before this setting used the form body.
    #[serde(default = "legacy_auth_method")]
    pub auth_method: AuthMethod,
    #[serde(default, skip_serializing_if = "GrantType::is_code")]
    pub grant: GrantType,
    #[serde(with = "secret")]
    pub client_secret: SecretString,
    pub redirect_uri: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub owner: OwnerType,
    #[serde(default)]
    pub pkce: bool,
    #[serde(default = "default_refresh_window", with = "duration_text")]
    pub refresh_window: Duration,
    #[serde(default)]
    pub auto_refresh: bool,
    /// Whether the agent publishes its access token where services read it (`agent --publish`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
    /// Extra parameters of the authorize request (`prompt`, `audience`, `resource`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorize_params: BTreeMap<String, String>,
    /// The variable `exec` puts the access token in; `None`: `TOKDECK_ACCESS_TOKEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_var: Option<String>,
    /// What the server's metadata said it supports, from the last discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Token>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<CheckResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// An authorization started but not yet exchanged: its state and PKCE verifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingAuth>,
}

/// What must survive between printing an authorize URL and exchanging its code.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingAuth {
    pub state: String,
    #[serde(default, with = "secret_opt", skip_serializing_if = "Option::is_none")]
    pub pkce_verifier: Option<SecretString>,
    pub started_at: DateTime<Utc>,
}

fn default_refresh_window() -> Duration {
    DEFAULT_REFRESH_WINDOW
}

fn legacy_auth_method() -> AuthMethod {
    AuthMethod::Post
}

impl Profile {
    /// A new profile without a token.
    pub fn new(
        name: String,
        provider: Provider,
        endpoints: Endpoints,
        client_id: String,
        client_secret: SecretString,
        redirect_uri: String,
    ) -> Self {
        Self {
            name,
            group: None,
            provider,
            issuer: None,
            endpoints,
            client_id,
            auth_method: AuthMethod::Post,
            grant: GrantType::Code,
            client_secret,
            redirect_uri,
            scopes: Vec::new(),
            owner: OwnerType::User,
            pkce: false,
            refresh_window: DEFAULT_REFRESH_WINDOW,
            auto_refresh: false,
            publish: false,
            notes: String::new(),
            authorize_params: BTreeMap::new(),
            env_var: None,
            server: None,
            token: None,
            last_check: None,
            last_error: None,
            pending: None,
        }
    }

    /// Scopes as the wire wants them: space-separated.
    pub fn scope_string(&self) -> String {
        self.scopes.join(" ")
    }

    /// Whether the profile asks for `scope` (`openid`, `offline_access`).
    pub fn asks_for(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether a new access token comes from the client's own credentials, not a refresh
    /// token (the client-credentials grant).
    pub fn renews_by_itself(&self) -> bool {
        self.grant == GrantType::ClientCredentials
    }

    /// Whether the authorization carries PKCE: when asked for, and always for public clients.
    pub fn uses_pkce(&self) -> bool {
        self.pkce || self.auth_method == AuthMethod::None
    }

    /// Whether the profile talks to Factorial (its credentials endpoint, its presets).
    pub fn is_factorial(&self) -> bool {
        self.provider != Provider::Custom
    }

    /// Whether the server is to send `iss` back with the code (RFC 9207 metadata).
    pub fn expects_iss(&self) -> bool {
        self.server.as_ref().is_some_and(|s| s.iss_parameter)
    }

    /// The environment label shown in tables: the preset name, or the custom host.
    pub fn environment(&self) -> String {
        match self.provider {
            Provider::Custom => url::Url::parse(&self.endpoints.base_url)
                .ok()
                .and_then(|u| {
                    u.host_str().map(|h| match u.port() {
                        Some(p) => format!("{h}:{p}"),
                        None => h.to_string(),
                    })
                })
                .unwrap_or_else(|| "custom".into()),
            p => p.label().into(),
        }
    }
}

/// A token set as returned by the token endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    #[serde(with = "secret")]
    pub access_token: SecretString,
    #[serde(default, with = "secret_opt", skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<SecretString>,
    #[serde(default = "default_token_type")]
    pub token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub obtained_at: DateTime<Utc>,
    /// `None`: the access token never expires (company tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// End of the refresh window; `None` when there is no refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// The OpenID Connect ID token that came with it, kept for `tokdeck inspect`; never sent.
    #[serde(default, with = "secret_opt", skip_serializing_if = "Option::is_none")]
    pub id_token: Option<SecretString>,
}

fn default_token_type() -> String {
    "Bearer".into()
}

/// Who a token belongs to, as the credentials endpoint reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckResult {
    pub checked_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_id: Option<i64>,
    /// The subject (`sub`) from userinfo or introspection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The user name or name the provider gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The client the token was issued to (introspection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Whether the token is active (introspection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// When the token expires, as the server sees it (introspection `exp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl CheckResult {
    /// One-line description of the owner.
    pub fn owner_line(&self) -> String {
        let mut parts = Vec::new();
        if let Some(e) = &self.email {
            parts.push(e.clone());
        }
        if let Some(c) = self.company_id {
            parts.push(format!("company {c}"));
        }
        if let Some(e) = self.employee_id {
            parts.push(format!("employee {e}"));
        }
        if let Some(u) = &self.username {
            parts.push(u.clone());
        }
        if let Some(s) = &self.subject {
            parts.push(format!("sub {s}"));
        }
        if let Some(c) = &self.client_id {
            parts.push(format!("client {c}"));
        }
        if parts.is_empty() {
            "token valid (no owner details)".into()
        } else {
            parts.join(", ")
        }
    }
}

mod secret {
    use super::{Deserialize, Deserializer, ExposeSecret, SecretString, Serializer};

    pub fn serialize<S: Serializer>(value: &SecretString, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.expose_secret())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        String::deserialize(d).map(SecretString::from)
    }
}

mod secret_opt {
    use super::{Deserialize, Deserializer, ExposeSecret, SecretString, Serializer};

    // serde's `with` calls this with a reference to the field, which is an `Option`.
    #[allow(clippy::ref_option)]
    pub fn serialize<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_some(v.expose_secret()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
        Option::<String>::deserialize(d).map(|o| o.map(SecretString::from))
    }
}

mod duration_text {
    use super::{Deserialize, Deserializer, Duration, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::duration::format_duration(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        crate::duration::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Fixtures for the crate's unit tests.
#[cfg(test)]
impl Profile {
    /// A Factorial user profile `name` without a token.
    pub(crate) fn factorial_for_test(name: &str) -> Self {
        Self::new(
            name.into(),
            Provider::Factorial,
            Endpoints::at("https://api.factorialhr.com"),
            "c".into(),
            SecretString::from("s"),
            "urn:ietf:wg:oauth:2.0:oob".into(),
        )
    }
}

#[cfg(test)]
impl Token {
    /// A bearer token obtained at `now` that expires `expires_in` seconds later, with a
    /// refresh token.
    pub(crate) fn for_test(
        access: &str,
        refresh: &str,
        now: DateTime<Utc>,
        expires_in: i64,
    ) -> Self {
        Self {
            access_token: SecretString::from(access.to_string()),
            refresh_token: Some(SecretString::from(refresh.to_string())),
            token_type: "Bearer".into(),
            scope: None,
            obtained_at: now,
            expires_at: Some(now + chrono::Duration::seconds(expires_in)),
            refresh_expires_at: None,
            id_token: None,
        }
    }
}

#[cfg(test)]
mod tests;
