//! The decrypted cache, under the store's one lock, and how it stays current: asked of the
//! backend again once its freshness ran out or a lease was taken, read again after a
//! conflict, and newer tokens this process saw kept over an older version read.

use std::collections::BTreeMap;
use std::time::Instant;

use super::Store;
use crate::vault::crypto::Sealing;
use crate::vault::error::VaultError;
use crate::vault::location::Location;
use crate::vault::snapshot::{Snapshot, decrypt_snapshot};
use crate::vault::trust::{Pinned, membership};

/// The decrypted cache: what the store last read or wrote of the vault ([`Snapshot`], which
/// it derefs to), and what it knows of it, changed together under the store's one lock.
pub(super) struct Cache {
    pub(super) read: Snapshot,
    /// How the vault read is sealed, for the next save.
    pub(super) sealing: Sealing,
    /// Until when `read` counts as current without asking the backend again (see
    /// [`crate::vault::backend::Backend::fresh_for`]); `None` once a lease was taken.
    pub(super) fresh: Option<Instant>,
    /// Who saved each profile's token last, as the status shards said at the descriptor's
    /// `seq` ([`super::shards`]).
    pub(super) saved_by: Option<(u64, BTreeMap<String, crate::vault::entry::SavedBy>)>,
    /// Profiles whose newer tokens were kept over an older file (see [`crate::vault::rollback`]) and
    /// are not yet written back.
    pub(super) kept: Vec<String>,
    /// What this machine accepted of the vault, which every version read must match
    /// ([`crate::vault::trust`]); `None` for a passphrase vault, or a store opened without pins.
    pub(super) trust: Option<Pinned>,
}

impl std::ops::Deref for Cache {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        &self.read
    }
}

impl std::ops::DerefMut for Cache {
    fn deref_mut(&mut self) -> &mut Snapshot {
        &mut self.read
    }
}

impl Store {
    /// Re-reads the file; returns whether it differed from what this store last saw.
    pub(super) fn refresh_snapshot(&self, snap: &mut Cache) -> Result<bool, VaultError> {
        let checked_at = Instant::now();
        if snap.fresh.is_some_and(|until| checked_at < until) {
            return Ok(false);
        }
        let changed = self.reread(snap)?;
        snap.fresh = Some(checked_at + self.backend.fresh_for());
        Ok(changed)
    }

    /// Reads the version another writer left, whatever was read a moment ago.
    pub(super) fn reread_after_conflict(&self, snap: &mut Cache) -> Result<bool, VaultError> {
        snap.fresh = None;
        self.refresh_snapshot(snap)
    }

    /// Asks the backend whether the vault changed, and reads it when it did.
    fn reread(&self, snap: &mut Cache) -> Result<bool, VaultError> {
        let now = self.backend.probe();
        if now.is_some() && now == snap.version {
            return Ok(false);
        }
        let stored = self.backend.open()?;
        if stored.stamp == snap.stamp {
            snap.version = stored.version;
            return match stored.layout {
                crate::vault::backend::Layout::Entries(changes) => self.catch_up(snap, changes),
                crate::vault::backend::Layout::Single => Ok(false),
            };
        }
        let path = self.location();
        let (mut snapshot, sealing) =
            decrypt_snapshot(stored, &self.unlock, path, self.backend.has_previous())?;
        if let Some(trust) = &mut snap.trust {
            let own = self.unlocking_recipients();
            trust.admit(membership(&snapshot.content, &own), path)?;
        }
        let kept = Self::keep_newer_tokens(snap, &mut snapshot, path)?;
        if !kept.is_empty() {
            tracing::warn!(profiles = ?kept, "the vault file holds older tokens than this process saw: kept the newer ones");
            snap.kept.extend(kept);
        }
        snap.sealing = sealing;
        snap.read = snapshot;
        Ok(true)
    }

    /// Keeps the tokens of `old` that are newer than those of `new` (see
    /// [`crate::vault::rollback`]); the file is parsed whole only when the two differ in tokens.
    fn keep_newer_tokens(
        old: &mut Snapshot,
        new: &mut Snapshot,
        path: &Location,
    ) -> Result<Vec<String>, VaultError> {
        let ours = old.content.data(path)?;
        let theirs = new.content.parsed_whole(path)?;
        let kept = crate::vault::rollback::keep_newer_tokens(ours, &mut theirs.data);
        if !kept.is_empty() {
            theirs.index = None;
            theirs.text = None;
        }
        Ok(kept)
    }
}
