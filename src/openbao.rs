//! The OpenBao / HashiCorp Vault conventions tokdeck follows, as their own CLIs do: the token
//! from `BAO_TOKEN`, else `VAULT_TOKEN`, else `~/.vault-token` (written by `bao login`), never
//! from an argument; the authorities to trust from `BAO_CACERT` or `VAULT_CACERT`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use age::secrecy::SecretString;
use anyhow::bail;
use zeroize::Zeroizing;

use crate::vault::backend::openbao::Connection;

/// How to reach OpenBao with `timeout` and the authorities of config `ca_file` (`roots`).
pub fn connection(
    timeout: Duration,
    mut roots: Vec<reqwest::Certificate>,
) -> anyhow::Result<Connection> {
    if let Some(ca) = first_env(&["BAO_CACERT", "VAULT_CACERT"]) {
        roots.extend(crate::http::load_roots(Path::new(&ca))?);
    }
    Ok(Connection {
        timeout,
        roots,
        token: token()?,
    })
}

/// The token: `BAO_TOKEN`, `VAULT_TOKEN`, or the file `bao login` writes.
fn token() -> anyhow::Result<SecretString> {
    if let Some(token) = first_env(&["BAO_TOKEN", "VAULT_TOKEN"]) {
        return Ok(SecretString::from(token.trim().to_string()));
    }
    let file = token_file();
    let read = file
        .as_deref()
        .map(|f| std::fs::read_to_string(f).map(Zeroizing::new));
    match read {
        Some(Ok(text)) if !text.trim().is_empty() => {
            Ok(SecretString::from(text.trim().to_string()))
        }
        Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => bail!(
            "cannot read the OpenBao token in {}: {e}",
            file.unwrap_or_default().display()
        ),
        _ => bail!(
            "no OpenBao token: set BAO_TOKEN (or VAULT_TOKEN), or log in with `bao login` (it writes ~/.vault-token)"
        ),
    }
}

fn token_file() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|dirs| dirs.home_dir().join(".vault-token"))
}

fn first_env(keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|key| std::env::var(key).ok().filter(|v| !v.trim().is_empty()))
}
