//! Non-secret settings (`config.toml`) and where files live.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

/// Settings from `config.toml`; every one has a default, so the file is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Vault path when neither --vault nor `TOKDECK_VAULT` is given.
    pub vault: Option<PathBuf>,
    /// Identity file when neither --identity nor `TOKDECK_IDENTITY` is given.
    pub identity: Option<PathBuf>,
    /// Theme name (built-in or a file in `<config dir>/themes/`).
    pub theme: String,
    /// `status` warns when something ends within this.
    #[serde(with = "duration_text")]
    pub warn: Duration,
    /// `token` and auto-refresh refresh when the access token ends within this.
    #[serde(with = "duration_text")]
    pub refresh_margin: Duration,
    /// Version segment of the credentials endpoint.
    pub api_version: String,
    /// Per-request timeout for OAuth calls.
    #[serde(with = "duration_text")]
    pub http_timeout: Duration,
    /// The most requests sent to one server at once; below it, the number adapts to how fast
    /// the server answers.
    pub max_concurrent_jobs: usize,
    /// A PEM file of certificate authorities to trust besides the usual ones (a provider
    /// with a private CA).
    pub ca_file: Option<PathBuf>,
    /// How often the agent looks for tokens to keep alive.
    #[serde(with = "duration_text")]
    pub agent_interval: Duration,
    /// The agent refreshes a token this long before its refresh window ends.
    #[serde(with = "duration_text")]
    pub agent_horizon: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            vault: None,
            identity: None,
            theme: "default".into(),
            warn: Duration::from_secs(86_400),
            refresh_margin: Duration::from_secs(300),
            api_version: "2025-04-01".into(),
            http_timeout: Duration::from_secs(20),
            max_concurrent_jobs: 16,
            ca_file: None,
            agent_interval: Duration::from_secs(30),
            agent_horizon: Duration::from_secs(86_400),
        }
    }
}

/// The longest `http_timeout`: a lease follows from it, and others trust a lease only as long
/// as this allows ([`crate::vault::backend::openbao::lease`]).
pub const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(120);

mod duration_text {
    use super::{Deserialize, Duration};

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        crate::duration::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

impl Config {
    /// Reads `path`; a missing file at the default location means defaults.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => match Paths::config_dir() {
                Some(dir) => (dir.join("config.toml"), false),
                None => return Ok(Self::default()),
            },
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Self::default());
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read config {}", path.display()));
            }
        };
        let config: Self = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "config {} is invalid: {}",
                path.display(),
                e.message().trim()
            )
        })?;
        if config.http_timeout > MAX_HTTP_TIMEOUT || config.http_timeout.is_zero() {
            anyhow::bail!(
                "config {}: http_timeout must be between 1ms and {} (a shared vault's lease lasts 3 × http_timeout + 4s, which every member waits out when one dies)",
                path.display(),
                crate::duration::format_duration(MAX_HTTP_TIMEOUT)
            );
        }
        Ok(config)
    }
}

/// Standard locations (XDG on Linux).
pub struct Paths;

impl Paths {
    fn project() -> Option<directories::ProjectDirs> {
        directories::ProjectDirs::from("", "", "tokdeck")
    }

    /// `~/.config/tokdeck`
    pub fn config_dir() -> Option<PathBuf> {
        Self::project().map(|p| p.config_dir().to_path_buf())
    }

    /// `~/.local/share/tokdeck`
    pub fn data_dir() -> Option<PathBuf> {
        Self::project().map(|p| p.data_dir().to_path_buf())
    }

    /// `~/.local/state/tokdeck` (falls back to the data dir).
    pub fn state_dir() -> Option<PathBuf> {
        Self::project().map(|p| {
            p.state_dir()
                .map_or_else(|| p.data_dir().to_path_buf(), Path::to_path_buf)
        })
    }

    /// `~/.local/share/tokdeck/vault.age`
    pub fn default_vault() -> Option<PathBuf> {
        Self::data_dir().map(|d| d.join("vault.age"))
    }

    /// `~/.config/tokdeck/identity.txt`: the key `tokdeck init` creates when given none.
    pub fn default_identity() -> Option<PathBuf> {
        Self::config_dir().map(|d| d.join("identity.txt"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let c = Config::default();
        assert_eq!(c.warn, Duration::from_secs(86_400));
        assert_eq!(c.api_version, "2025-04-01");
    }

    #[test]
    fn reads_durations_and_names_bad_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "warn = \"12h\"\ntheme = \"light\"\n").unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(c.warn, Duration::from_secs(43_200));
        assert_eq!(c.theme, "light");
        std::fs::write(&p, "wran = \"12h\"\n").unwrap();
        let err = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("wran"), "{err}");
        std::fs::write(&p, "warn = \"soon\"\n").unwrap();
        let err = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("1d, 12h, 30m"), "{err}");
        assert!(Config::load(Some(&dir.path().join("missing.toml"))).is_err());
    }
}
