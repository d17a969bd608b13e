//! Command-line definitions (clap derive). The surface is stable: scripts depend on it.

// The doc comments here are the help people read in a terminal, not rustdoc.
#![allow(clippy::doc_markdown)]

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::duration::parse_refresh_window;
use crate::vault::{AuthMethod, GrantType, OwnerType, Provider};

/// `--provider`: a server preset.
// Doc comments here are `--help` text, not Markdown.
#[allow(rustdoc::bare_urls)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderArg {
    /// Factorial production, https://api.factorialhr.com
    Factorial,
    /// Factorial's demo sandbox, https://api.eu2.demo.factorial.dev
    FactorialDemo,
    /// Any Doorkeeper-shaped server at --base-url
    Custom,
}

impl From<ProviderArg> for Provider {
    fn from(arg: ProviderArg) -> Self {
        match arg {
            ProviderArg::Factorial => Provider::Factorial,
            ProviderArg::FactorialDemo => Provider::FactorialDemo,
            ProviderArg::Custom => Provider::Custom,
        }
    }
}

/// `--auth-method`: how the client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMethodArg {
    /// client_secret_basic: HTTP Basic (every server supports it)
    Basic,
    /// client_secret_post: id and secret in the form body (Factorial)
    Post,
    /// A public client: no secret, always PKCE
    None,
}

impl From<AuthMethodArg> for AuthMethod {
    fn from(arg: AuthMethodArg) -> Self {
        match arg {
            AuthMethodArg::Basic => AuthMethod::Basic,
            AuthMethodArg::Post => AuthMethod::Post,
            AuthMethodArg::None => AuthMethod::None,
        }
    }
}

/// `--grant`: how the first token is had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GrantArg {
    /// Authorization code: a browser, then a pasted code or the loopback listener
    Code,
    /// Device login (RFC 8628): a code to enter on any device; for SSH sessions
    Device,
    /// The app's own token from its client credentials; no person involved
    ClientCredentials,
}

impl From<GrantArg> for GrantType {
    fn from(arg: GrantArg) -> Self {
        match arg {
            GrantArg::Code => GrantType::Code,
            GrantArg::Device => GrantType::Device,
            GrantArg::ClientCredentials => GrantType::ClientCredentials,
        }
    }
}

/// Which server a profile talks to and how; shared by `add` and `edit`.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Server")]
pub struct ServerArgs {
    /// Server preset [add's default: factorial, or custom with --base-url]
    #[arg(long, value_enum, conflicts_with = "issuer")]
    pub provider: Option<ProviderArg>,
    /// Base URL of any other Doorkeeper-shaped server (http:// only for loopback); implies
    /// --provider custom
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Any OAuth 2 / OpenID Connect provider: read its endpoints from its metadata
    /// (RFC 8414, then OpenID Connect Discovery)
    #[arg(long, value_name = "URL", conflicts_with = "base_url")]
    pub issuer: Option<String>,
    /// Authorization endpoint (for servers without metadata, or to override it)
    #[arg(long, value_name = "URL", conflicts_with = "provider")]
    pub authorize_url: Option<String>,
    /// Token endpoint
    #[arg(long, value_name = "URL", conflicts_with = "provider")]
    pub token_url: Option<String>,
    /// Revocation endpoint (RFC 7009)
    #[arg(long, value_name = "URL", conflicts_with = "provider")]
    pub revoke_url: Option<String>,
    /// Introspection endpoint (RFC 7662), for `check`
    #[arg(long, value_name = "URL", conflicts_with = "provider")]
    pub introspect_url: Option<String>,
    /// Device authorization endpoint (RFC 8628), for --grant device
    #[arg(long, value_name = "URL", conflicts_with = "provider")]
    pub device_url: Option<String>,
    /// OpenID Connect userinfo endpoint, for `check`
    #[arg(long, value_name = "URL", conflicts_with = "provider")]
    pub userinfo_url: Option<String>,
    /// Client authentication [default: post for Factorial, else basic unless the metadata
    /// lists only post]
    #[arg(long, value_enum, value_name = "METHOD")]
    pub auth_method: Option<AuthMethodArg>,
    /// How the first token is had [add's default: code]
    #[arg(long, value_enum)]
    pub grant: Option<GrantArg>,
    /// Use PKCE (S256) [default: on when the metadata lists S256, always for --auth-method none]
    #[arg(long, conflicts_with = "no_pkce")]
    pub pkce: bool,
    /// Do not use PKCE
    #[arg(long)]
    pub no_pkce: bool,
}

impl ServerArgs {
    /// Whether any flag names a server (a preset, a base URL, an issuer or an endpoint).
    pub fn names_a_server(&self) -> bool {
        self.provider.is_some()
            || self.base_url.is_some()
            || self.issuer.is_some()
            || self.names_endpoints()
    }

    /// Whether any endpoint URL flag is given.
    pub fn names_endpoints(&self) -> bool {
        [
            &self.authorize_url,
            &self.token_url,
            &self.revoke_url,
            &self.introspect_url,
            &self.device_url,
            &self.userinfo_url,
        ]
        .iter()
        .any(|u| u.is_some())
    }

    /// `--pkce` / `--no-pkce`, if either was given.
    pub fn pkce_choice(&self) -> Option<bool> {
        (self.pkce || self.no_pkce).then_some(self.pkce)
    }
}

/// `--owner`: whose token it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OwnerArg {
    /// A user's token (expires, refreshable)
    User,
    /// A company token (admin-approved, never expires)
    Company,
}

impl From<OwnerArg> for OwnerType {
    fn from(arg: OwnerArg) -> Self {
        match arg {
            OwnerArg::User => OwnerType::User,
            OwnerArg::Company => OwnerType::Company,
        }
    }
}

/// Manage OAuth2 tokens for Factorial HR (and any OAuth 2 provider) from the terminal.
///
/// Run `tokdeck` with no command to open the full-screen app.
#[derive(Debug, Parser)]
#[command(
    name = "tokdeck",
    version,
    about,
    after_help = AFTER_HELP,
    subcommand_help_heading = "Commands (none: open the full-screen app)"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// Parses the command line. When its first word names a subcommand, only that
    /// subcommand is built: scripts call `token` in loops, and building every subcommand
    /// (with the global options copied into each) is most of what parsing costs. Anything
    /// that does not parse that way (help, errors, options before the subcommand) goes
    /// through the whole definition, so what people read is the same.
    pub fn parse_args(args: &[std::ffi::OsString]) -> Result<Self, clap::Error> {
        Self::parse_one(args).map_or_else(|| Self::try_parse_from(args), Ok)
    }

    fn parse_one(args: &[std::ffi::OsString]) -> Option<Self> {
        use clap::FromArgMatches;
        let first = args.get(1)?.to_str()?;
        if first.starts_with('-') {
            return None;
        }
        let matches = Self::matches_with(Self::subcommand(first)?, args)?;
        Self::from_arg_matches(&matches).ok()
    }

    /// `args` read against the global options and `subcommand` alone.
    fn matches_with(
        subcommand: clap::Command,
        args: &[std::ffi::OsString],
    ) -> Option<clap::ArgMatches> {
        let only = Global::augment_args(clap::Command::new("tokdeck")).subcommand(subcommand);
        only.try_get_matches_from(args).ok()
    }

    /// The command line when it is `token`, `exec` or `status` and parses as one, read
    /// without the rest of the definition: the small `tokdeck` executable (see
    /// [`crate::front`]) links none of it. `None` for anything else, help and mistakes
    /// included: the whole program reads those.
    pub fn parse_quick(args: &[std::ffi::OsString]) -> Option<Self> {
        use clap::FromArgMatches;
        let subcommand = Self::quick_subcommand(args.get(1)?.to_str()?)?;
        let matches = Self::matches_with(subcommand, args)?;
        let global = Global::from_arg_matches(&matches).ok()?;
        let command = match matches.subcommand()? {
            ("token", sub) => Command::Token(TokenArgs::from_arg_matches(sub).ok()?),
            ("exec", sub) => Command::Exec(ExecArgs::from_arg_matches(sub).ok()?),
            ("status", sub) => Command::Status(StatusArgs::from_arg_matches(sub).ok()?),
            _ => return None,
        };
        Some(Self {
            global,
            command: Some(command),
        })
    }

    /// The subcommand `name`, without the others.
    fn subcommand(name: &str) -> Option<clap::Command> {
        use clap::CommandFactory;
        Self::quick_subcommand(name).or_else(|| Self::command().find_subcommand(name).cloned())
    }

    /// `token`, `exec` or `status`, which scripts call in loops, made from their arguments
    /// alone: their variants add only the help's summary, which a shortcut never shows.
    fn quick_subcommand(name: &str) -> Option<clap::Command> {
        match name {
            "token" => Some(TokenArgs::augment_args(clap::Command::new("token"))),
            "exec" => Some(ExecArgs::augment_args(clap::Command::new("exec"))),
            "status" => Some(StatusArgs::augment_args(clap::Command::new("status"))),
            _ => None,
        }
    }
}

/// Shown under every command's help: the two things people look for.
const AFTER_HELP: &str = "Durations (DUR) read 30s, 30m, 12h, 1d or 1d 12h.\n`tokdeck` with no command opens the full-screen app.";

/// Options every command takes.
// Doc comments here are `--help` text, not Markdown.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Debug, Args, Clone, Default)]
pub struct Global {
    /// The vault file [default: <data dir>/tokdeck/vault.age]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "TOKDECK_VAULT",
        value_name = "PATH"
    )]
    pub vault: Option<PathBuf>,
    /// age identity file (X25519 key or SSH private key) that opens the vault
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "TOKDECK_IDENTITY",
        value_name = "PATH"
    )]
    pub identity: Option<PathBuf>,
    /// Read the vault passphrase from this file (first line) instead of asking
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "TOKDECK_PASSPHRASE_FILE",
        value_name = "PATH"
    )]
    pub passphrase_file: Option<PathBuf>,
    /// Settings file [default: <config dir>/tokdeck/config.toml]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "TOKDECK_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,
    /// Open the vault here even when an agent runs (TOKDECK_AGENT=off does the same)
    #[arg(long, global = true, help_heading = "Global options")]
    pub no_agent: bool,
    /// Colour theme for the TUI (default, light, high-contrast, or a file name)
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "TOKDECK_THEME",
        value_name = "NAME"
    )]
    pub theme: Option<String>,
}

impl Global {
    /// The options as the layers below the command line take them.
    pub fn options(&self) -> crate::context::Options {
        crate::context::Options {
            vault: self.vault.clone(),
            identity: self.identity.clone(),
            passphrase_file: self.passphrase_file.clone(),
            config: self.config.clone(),
            no_agent: self.no_agent,
            theme: self.theme.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Create an empty vault
    Init(InitArgs),
    /// Add a profile (OAuth app, scopes, owner type)
    Add(AddArgs),
    /// Change a profile's settings (what the app's edit form does, from scripts)
    Edit(EditArgs),
    /// Remove a profile and its tokens
    Remove {
        /// Profile name
        #[arg(add = complete::profile_names())]
        name: String,
    },
    /// Show every profile's token state; exit 0 fine, 1 attention soon, 2 broken, 3 unknown (the vault or the command failed)
    Status(StatusArgs),
    /// Print the authorize URL; with --listen, catch the redirect and exchange the code
    Authorize(AuthorizeArgs),
    /// Exchange an authorization code (or the whole redirect URL) for tokens
    Exchange {
        /// Profile name
        #[arg(add = complete::profile_names())]
        name: String,
        /// The code, or the full redirect URL it came back on; `-` reads it from stdin
        // Codes are URL-safe base64 and may begin with '-' (seen on Doorkeeper).
        #[arg(allow_hyphen_values = true)]
        code: String,
    },
    /// Refresh one profile's tokens, or all of them
    Refresh(RefreshArgs),
    /// Print a valid access token (refreshing first when needed) and nothing else
    Token(TokenArgs),
    /// Run CMD with a valid access token in its environment (never in its arguments)
    Exec(ExecArgs),
    /// Call the profile's API with its token; on 401 refresh once and retry
    Api(ApiArgs),
    /// Keep every token alive in the background and serve tokens without unlocking again
    Agent(AgentArgs),
    /// Keep a token obtained elsewhere: its token endpoint answer (JSON) on stdin or --file
    ImportToken(ImportTokenArgs),
    /// Show the token-lifecycle audit log, newest first
    Audit(AuditArgs),
    /// Write profiles to share, without tokens (and without secrets unless --with-secrets)
    Export(ExportArgs),
    /// Add the profiles of a file made by export; tokens stay personal
    Import(ImportArgs),
    /// Read the profile's endpoints again from its issuer's metadata
    Rediscover {
        /// Profile name
        #[arg(add = complete::profile_names())]
        name: String,
    },
    /// Show the claims of the access and ID tokens when they are JWTs (never a signature)
    Inspect {
        /// Profile name
        #[arg(add = complete::profile_names())]
        name: String,
        /// Print JSON: each token's kind, header and claims
        #[arg(long)]
        json: bool,
    },
    /// Ask the server who the token belongs to
    Check {
        /// Profile name
        #[arg(add = complete::profile_names())]
        name: String,
    },
    /// Revoke the profile's tokens at the server and forget them
    Revoke {
        /// Profile name
        #[arg(add = complete::profile_names())]
        name: String,
    },
    /// List, add or remove who can open the vault (re-encrypts it)
    Recipients {
        #[command(subcommand)]
        action: Option<RecipientsCommand>,
    },
    /// Copy the vault, still encrypted, to another place: a file or a secret in OpenBao
    Vault {
        #[command(subcommand)]
        action: VaultCommand,
    },
    /// Print a shell's completion script (profile names come from a running agent)
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the manual page (tokdeck man > ~/.local/share/man/man1/tokdeck.1)
    Man,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum RecipientsCommand {
    /// List the recipients (the default)
    List,
    /// Encrypt the vault to more recipients (age1... or "ssh-ed25519 ...")
    Add {
        #[arg(required = true, value_name = "R")]
        recipients: Vec<String>,
        #[command(flatten)]
        to: ReadersArgs,
    },
    /// Stop encrypting the vault to these recipients
    Remove {
        #[arg(required = true, value_name = "R")]
        recipients: Vec<String>,
        #[command(flatten)]
        to: ReadersArgs,
        /// Also remove the last recipient or the key you are opening the vault with
        #[arg(long)]
        force: bool,
        /// Then renew every refresh token the removed keys could read, and revoke the ones
        /// they replace with their access tokens
        #[arg(long)]
        rotate: bool,
    },
    /// Trust the vault as it is now, after its recipients changed or it was replaced
    Accept {
        /// Accept without asking (for scripts; check the change first)
        #[arg(long)]
        yes: bool,
    },
}

/// Whose recipients a change is to: the members' (the default), a group's or the operators'.
#[derive(Debug, Args, Clone, Default)]
pub struct ReadersArgs {
    /// A group's recipients, who alone read the entries of its profiles (a team vault
    /// laid out as entries; the group is made when it does not exist)
    #[arg(long, value_name = "GROUP", conflicts_with = "operator", value_parser = parse_group)]
    pub group: Option<String>,
    /// Operators, who read every profile's status and no secret (a vault in entries)
    #[arg(long)]
    pub operator: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Encrypt to this recipient (age1... or "ssh-ed25519 ..."); repeat for a team
    #[arg(long = "recipient", value_name = "R")]
    pub recipients: Vec<String>,
    /// Protect the vault with a passphrase instead of keys
    #[arg(long, conflicts_with = "recipients")]
    pub passphrase: bool,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Unique profile name
    pub name: String,
    /// OAuth application client id
    // Client ids may begin with '-' (Doorkeeper's are URL-safe base64).
    #[arg(long, allow_hyphen_values = true)]
    pub client_id: String,
    /// Redirect URI registered with the app (urn:ietf:wg:oauth:2.0:oob for copy-paste);
    /// needed for --grant code
    #[arg(long)]
    pub redirect_uri: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Space-separated scopes
    #[arg(long, default_value = "read write")]
    pub scope: String,
    /// user token, or company token (admin-approved, never expires)
    #[arg(long, value_enum, default_value_t = OwnerArg::User)]
    pub owner: OwnerArg,
    /// Length of the refresh-token window, 1m to 366d [default: 7d]
    #[arg(long, value_parser = parse_refresh_window, value_name = "DUR")]
    pub refresh_window: Option<Duration>,
    /// Refresh automatically while the TUI runs
    #[arg(long)]
    pub auto_refresh: bool,
    /// Let `agent --publish` publish this profile's access token where services read it
    #[arg(long)]
    pub publish: bool,
    /// Read the client secret from this file (else a hidden prompt, or stdin when piped)
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// The group it belongs to, for filters and views (group:NAME)
    #[arg(long, value_name = "NAME", value_parser = parse_group)]
    pub group: Option<String>,
    /// Free-text notes
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub notes: String,
    /// The variable `exec` puts the token in [default: TOKDECK_ACCESS_TOKEN]
    #[arg(long, value_name = "VAR", value_parser = parse_env_var)]
    pub env_var: Option<String>,
    /// An extra parameter of the authorize request, e.g. prompt=consent or audience=URL
    /// (repeatable)
    #[arg(long = "authorize-param", value_name = "KEY=VALUE", value_parser = parse_authorize_param)]
    pub authorize_params: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    /// The profile to change
    #[arg(add = complete::profile_names())]
    pub name: String,
    /// Give the profile a new name
    #[arg(long, value_name = "NEW")]
    pub rename: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// New OAuth application client id
    #[arg(long, allow_hyphen_values = true)]
    pub client_id: Option<String>,
    /// Read a new client secret from this file
    #[arg(long, value_name = "FILE", conflicts_with = "new_client_secret")]
    pub client_secret_file: Option<PathBuf>,
    /// Ask for a new client secret (hidden prompt, or stdin when piped)
    #[arg(long)]
    pub new_client_secret: bool,
    /// New redirect URI
    #[arg(long)]
    pub redirect_uri: Option<String>,
    /// New space-separated scopes
    #[arg(long)]
    pub scope: Option<String>,
    /// user or company token
    #[arg(long, value_enum)]
    pub owner: Option<OwnerArg>,
    /// Refresh automatically while the app runs
    #[arg(long, conflicts_with = "no_auto_refresh")]
    pub auto_refresh: bool,
    /// Stop refreshing automatically
    #[arg(long)]
    pub no_auto_refresh: bool,
    /// Let `agent --publish` publish this profile's access token
    #[arg(long, conflicts_with = "no_publish")]
    pub publish: bool,
    /// Stop publishing this profile's access token
    #[arg(long)]
    pub no_publish: bool,
    /// New length of the refresh-token window, 1m to 366d
    #[arg(long, value_parser = parse_refresh_window, value_name = "DUR")]
    pub refresh_window: Option<Duration>,
    /// Move it to another group ("" for none)
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Replace the notes ("" clears them)
    #[arg(long, allow_hyphen_values = true)]
    pub notes: Option<String>,
    /// The variable `exec` puts the token in ("" for the default)
    #[arg(long, value_name = "VAR")]
    pub env_var: Option<String>,
    /// Set an extra authorize parameter, e.g. prompt=consent; KEY= removes it (repeatable)
    #[arg(long = "authorize-param", value_name = "KEY=VALUE", value_parser = parse_authorize_param)]
    pub authorize_params: Vec<(String, String)>,
}

mod args;
pub use args::*;
pub mod complete;

#[cfg(test)]
mod tests;
