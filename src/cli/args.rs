//! The arguments of the commands that act on tokens, the agent and sharing.

// The doc comments here are the help people read in a terminal, not rustdoc.
#![allow(clippy::doc_markdown)]

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::duration::parse_duration_arg;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this profile's entries
    #[arg(add = super::complete::profile_names())]
    pub name: Option<String>,
    /// Only entries this recent (e.g. 7d, 12h)
    #[arg(long, value_parser = parse_duration_arg, value_name = "DUR")]
    pub since: Option<Duration>,
    /// One JSON object per line, as the log keeps them
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Profiles to export [default: all]
    #[arg(add = super::complete::profile_names())]
    pub names: Vec<String>,
    /// Include client secrets: the file is then encrypted to --recipient
    #[arg(long)]
    pub with_secrets: bool,
    /// Who may read an export with secrets (age1... or "ssh-ed25519 ..."); repeat for a team
    #[arg(long = "recipient", value_name = "R", requires = "with_secrets")]
    pub recipients: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A file made by `tokdeck export` (plain TOML, or encrypted to your key)
    pub file: PathBuf,
    /// Take the file's settings for profiles that exist already (their tokens stay)
    #[arg(long)]
    pub replace: bool,
    /// With --replace, let a profile move to other servers: its token and client secret are
    /// then dropped, never sent to them
    #[arg(long, requires = "replace")]
    pub new_origin: bool,
}

#[derive(Debug, Args)]
pub struct ImportTokenArgs {
    /// Profile name
    #[arg(add = super::complete::profile_names())]
    pub name: String,
    /// Read the answer from this file instead of stdin
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// When the server issued the token (RFC 3339) [default: now]
    #[arg(long, value_name = "TIME")]
    pub obtained_at: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Profile name
    #[arg(add = super::complete::profile_names())]
    pub name: String,
    /// Refresh first unless the token stays valid at least this long (e.g. 10m)
    #[arg(long, value_parser = parse_duration_arg, value_name = "DUR")]
    pub min_valid: Option<Duration>,
    /// Print `Authorization: Bearer TOKEN` (for curl -H @-)
    #[arg(long)]
    pub header: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Profile name
    #[arg(add = super::complete::profile_names())]
    pub name: String,
    /// Refresh first unless the token stays valid at least this long (e.g. 10m)
    #[arg(long, value_parser = parse_duration_arg, value_name = "DUR")]
    pub min_valid: Option<Duration>,
    /// The variable that holds the token [default: the profile's, else TOKDECK_ACCESS_TOKEN]
    #[arg(long = "env", value_name = "VAR", value_parser = parse_env_var)]
    pub env: Option<String>,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Profile name
    #[arg(add = super::complete::profile_names())]
    pub name: String,
    /// Path under the profile's API base, e.g. /api/2025-04-01/resources/employees/employees
    pub path: String,
    /// HTTP method [default: GET, or POST with --data]
    #[arg(short = 'X', long = "method", value_name = "METHOD")]
    pub method: Option<String>,
    /// Request body: text, @FILE, or - for stdin
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    pub data: Option<String>,
    /// An extra header, 'Name: value' (repeatable)
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Print the status line and headers before the body
    #[arg(short = 'i', long = "include")]
    pub include: bool,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub action: Option<AgentAction>,
    /// Print a systemd user unit that runs the agent, and exit
    #[arg(long)]
    pub systemd_unit: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics: a port (loopback) or IP:PORT
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Allow --metrics on an address other machines can reach
    #[arg(long, requires = "metrics")]
    pub metrics_public: bool,
    /// Publish the access tokens of profiles marked --publish to openbao://HOST/MOUNT/PREFIX
    #[arg(long, value_name = "LOCATION")]
    pub publish: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum AgentAction {
    /// Whether an agent runs, since when, for which vault, and what it did last
    Status,
    /// Stop the running agent (it finishes refreshes in flight first)
    Stop,
}

/// An authorize parameter, `KEY=VALUE`.
pub fn parse_authorize_param(text: &str) -> Result<(String, String), String> {
    crate::vault::validate::validate_authorize_param(text).map_err(|e| e.to_string())
}

/// A group's name (see [`crate::vault::validate::validate_group`]).
pub fn parse_group(text: &str) -> Result<String, String> {
    crate::vault::validate::validate_group(text).map_err(|e| e.to_string())
}

/// An environment variable name: letters, digits and `_`, not starting with a digit.
pub fn parse_env_var(text: &str) -> Result<String, String> {
    crate::vault::validate::validate_env_var(text).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print a JSON array instead of a table
    #[arg(long)]
    pub json: bool,
    /// Warn about anything ending within this [default: config `warn`, 1d]
    #[arg(long, value_parser = parse_duration_arg, value_name = "DUR")]
    pub warn: Option<Duration>,
    /// Only the profiles these words match: state:expiring, owner:company, env:production,
    /// machine:build-3, -state:ok (leave out), a part of a name; the exit code is theirs
    #[arg(
        long,
        value_parser = crate::filter::parse_filter_arg,
        value_name = "WORDS",
        allow_hyphen_values = true
    )]
    pub filter: Option<crate::filter::Filter>,
}

#[derive(Debug, Args)]
pub struct AuthorizeArgs {
    /// Profile name
    #[arg(add = super::complete::profile_names())]
    pub name: String,
    /// Wait for the redirect on the loopback redirect URI, check state, exchange the code
    #[arg(long)]
    pub listen: bool,
    /// Never try to open a browser
    #[arg(long)]
    pub no_browser: bool,
    /// How long --listen waits for the redirect
    #[arg(long, value_parser = parse_duration_arg, default_value = "5m", value_name = "DUR")]
    pub timeout: Duration,
    /// Device login: do not draw the login address as a QR code
    #[arg(long)]
    pub no_qr: bool,
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// Profile name
    #[arg(
        required_unless_present = "all",
        conflicts_with = "all",
        add = super::complete::profile_names()
    )]
    pub name: Option<String>,
    /// Refresh every profile that has a refresh token
    #[arg(long)]
    pub all: bool,
    /// Only refresh when the access token ends within this
    #[arg(long, value_parser = parse_duration_arg, value_name = "DUR")]
    pub if_expiring_within: Option<Duration>,
    /// Renew tokens that never expire too (company tokens): the server may then revoke the
    /// one in use
    #[arg(long)]
    pub force: bool,
}

// Doc comments here are `--help` text, not Markdown.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum VaultCommand {
    /// Copy the vault, still encrypted, to DEST (a file, or openbao://HOST/MOUNT/PATH), which must not exist; the ciphertext goes as it is, with no key, unless the copy is laid out otherwise (into entries, or out of them)
    Copy {
        /// Where to: a path, or openbao://HOST[:PORT]/MOUNT/PATH (openbao+http:// on this machine)
        #[arg(value_name = "DEST")]
        dest: PathBuf,
        /// Lay the copy out as entries, one secret per profile (DEST in OpenBao; needs the key)
        #[arg(long)]
        entries: bool,
    },
    /// Store a team vault in OpenBao as one entry per profile, or again as one secret; nothing is lost either way
    Layout {
        /// entries: a small descriptor and one secret per profile (any number of profiles, a save writes one); single: the whole vault in one secret (raft storage takes up to 1 MiB)
        #[arg(value_enum, value_name = "LAYOUT")]
        to: LayoutArg,
    },
}

/// `vault layout`: how a team vault is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutArg {
    /// A descriptor and one secret per profile
    Entries,
    /// The whole vault in one secret
    Single,
}
