//! New tokens whose save failed, kept on this machine until they are saved: encrypted as the
//! vault is, one file per profile under `$XDG_STATE_HOME/tokdeck/unsaved/VAULT/`, written with
//! an fsync before the failure is reported. The refresh token they replace is dead, so they
//! must outlive the process that got them: a command that ends, an agent that is restarted.
//! Any later process of this machine saves a spooled token before anything else is done with
//! its profile, and only over the token it replaced ([`super::held`]).

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::held::HeldToken;
use crate::vault::{Location, Store, VaultError};

/// Where the new tokens of one vault wait.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// The spool of the vault at `location`, in this user's state folder (none without one).
    pub fn for_vault(location: &Location) -> Option<Self> {
        let state_dir = crate::config::Paths::state_dir()?;
        let digest = Sha256::digest(location.canonical().as_bytes());
        let id = crate::display::hex(digest.get(..12).unwrap_or_default());
        Some(Self {
            dir: state_dir.join("unsaved").join(id),
        })
    }

    /// Whether no token waits at all (one read of a folder).
    pub fn is_empty(&self) -> bool {
        std::fs::read_dir(&self.dir).map_or(true, |mut entries| entries.next().is_none())
    }

    /// Where the token of profile `name` waits: named by the profile's key, not its name.
    pub fn path(&self, store: &Store, name: &str) -> PathBuf {
        self.dir.join(format!("{}.age", store.record_key(name)))
    }

    /// Keeps `held` for profile `name`, on disk before this returns.
    pub fn put(&self, store: &Store, name: &str, held: &HeldToken) -> Result<PathBuf, VaultError> {
        let plaintext = zeroize::Zeroizing::new(
            serde_json::to_vec(held).map_err(|e| VaultError::Encrypt(e.to_string()))?,
        );
        let sealed = store.seal(&plaintext)?;
        crate::vault::disk::ensure_private_dir(&self.dir)?;
        let path = self.path(store, name);
        crate::vault::disk::write_atomic(&path, &sealed, false)?;
        Ok(path)
    }

    /// The token waiting for profile `name`, if one does. One that cannot be read (another
    /// key, a damaged file) is left where it is, and said so in the log.
    pub fn get(&self, store: &Store, name: &str) -> Option<HeldToken> {
        // Asked before every job: an empty spool costs no look at the vault's key.
        if self.is_empty() {
            return None;
        }
        let path = self.path(store, name);
        let sealed = std::fs::read(&path).ok()?;
        let read = store
            .unseal(&sealed)
            .map_err(|e| e.to_string())
            .and_then(|plain| serde_json::from_slice(&plain).map_err(|e| e.to_string()));
        match read {
            Ok(held) => Some(held),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read a new token waiting to be saved");
                None
            }
        }
    }

    /// Forgets the token of profile `name`: it is saved, or the vault holds a newer one.
    pub fn remove(&self, store: &Store, name: &str) {
        let path = self.path(store, name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a saved token from the spool");
            }
            _ => {}
        }
    }
}
