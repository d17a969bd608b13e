//! The status shards of a vault laid out as entries: what `status` reads instead of every
//! entry. Each shard holds what status needs of the profiles whose id falls in it
//! ([`crate::vault::entry::status_of`]: no secret), sealed and encrypted as an entry is. A
//! save writes the shards of the profiles it changed after their entries, so a shard is at
//! most a moment behind; a shard missing or not a member's sends status to the entries.

use std::collections::BTreeMap;

use age::secrecy::SecretString;

use super::entries::head_of;
use super::{Store, lock_ignoring_poison, record_key};
use crate::vault::backend::Entries;
use crate::vault::backend::entries::{shard_name, shard_of};
use crate::vault::crypto::{self, Sealing};
use crate::vault::entry;
use crate::vault::error::VaultError;
use crate::vault::model::{Profile, VaultData};
use crate::vault::snapshot::Snapshot;

/// The most a shard's text may inflate to: far past what thousands of profiles need, and a
/// bound on what a planted shard can make this process allocate.
const SHARD_TEXT_LIMIT: usize = 16 * 1024 * 1024;

/// The sealed ciphertext of shard `number`, holding `profiles`: the text deflated (its
/// tables repeat the same keys, so it shrinks about fivefold), then encrypted.
fn seal_shard(
    secret: &SecretString,
    number: u32,
    profiles: &[&Profile],
    sealing: &Sealing,
) -> Result<(u32, Vec<u8>), VaultError> {
    let text = entry::render_shard(secret, &shard_name(number), profiles)?;
    let deflated = miniz_oxide::deflate::compress_to_vec(text.as_bytes(), 6);
    Ok((number, crypto::encrypt(&deflated, sealing)?))
}

/// Every shard of `shards` for the profiles of `data`, empty ones too (so a missing shard
/// means damage, never "no profile there").
pub(super) fn all_shards(
    data: &VaultData,
    shards: u32,
    sealing: &Sealing,
) -> Result<Vec<(u32, Vec<u8>)>, VaultError> {
    let Some(secret) = &data.members_secret else {
        return Ok(Vec::new());
    };
    let mut by_shard: BTreeMap<u32, Vec<&Profile>> = (0..shards).map(|n| (n, Vec::new())).collect();
    for profile in &data.profiles {
        let number = shard_of(&record_key(Some(secret), &profile.name), shards);
        by_shard.entry(number).or_default().push(profile);
    }
    by_shard
        .into_iter()
        .map(|(number, profiles)| seal_shard(secret, number, &profiles, sealing))
        .collect()
}

/// The shards of the profiles `changed` and `removed` (by name), each once.
fn touched(
    secret: &SecretString,
    shards: u32,
    changed: &[&Profile],
    removed: &[String],
) -> Vec<u32> {
    let mut numbers: Vec<u32> = changed
        .iter()
        .map(|p| p.name.as_str())
        .chain(removed.iter().map(String::as_str))
        .map(|name| shard_of(&record_key(Some(secret), name), shards))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    numbers
}

impl Store {
    /// The profiles shard `number`'s ciphertext holds, checked under `secret`.
    fn open_shard(
        &self,
        secret: &SecretString,
        number: u32,
        ciphertext: &[u8],
    ) -> Result<Vec<Profile>, VaultError> {
        let deflated = crypto::decrypt(ciphertext, &self.unlock, self.location())?;
        let text = miniz_oxide::inflate::decompress_to_vec_with_limit(&deflated, SHARD_TEXT_LIMIT)
            .map_err(|e| {
                VaultError::Untrusted(format!(
                    "status shard {number} of {} does not inflate ({e}): it was not written by tokdeck",
                    self.location()
                ))
            })?;
        entry::open_shard(secret, &shard_name(number), &text, self.location())
    }

    /// Calls `f` with what status needs of every profile: from the status shards of a vault
    /// in entries not loaded whole (a secret per 16 to 32 profiles), else the whole content.
    /// What `f` sees of a profile from a shard holds no secret.
    pub fn read_status<T>(&self, f: impl FnOnce(&VaultData) -> T) -> Result<T, VaultError> {
        let mut snap = lock_ignoring_poison(&self.snapshot);
        self.refresh_snapshot(&mut snap)?;
        match self.status_from_shards(&mut snap) {
            Ok(Some(data)) => return Ok(f(&data)),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "read the entries instead of the status shards"),
        }
        self.load_whole(&mut snap)?;
        Ok(f(snap.content.data(self.location())?))
    }

    /// What the status shards hold, with the head; `None` where there are none to read (one
    /// piece, no shards, or every entry loaded already).
    fn status_from_shards(&self, snap: &mut Snapshot) -> Result<Option<VaultData>, VaultError> {
        let shards = match snap.entries.as_ref() {
            Some(state) if !state.whole && state.changes.shards > 0 => state.changes.shards,
            _ => return Ok(None),
        };
        let Some(entries) = self.backend.entries() else {
            return Ok(None);
        };
        let secret = Self::entry_secret(snap)?;
        let numbers: Vec<u32> = (0..shards).collect();
        let read = entries.read_shards(&numbers)?;
        let mut profiles = Vec::new();
        for (number, ciphertext) in numbers.iter().zip(read) {
            let ciphertext = ciphertext.ok_or_else(|| {
                VaultError::Remote(format!(
                    "status shard {number} of {} is missing",
                    self.location()
                ))
            })?;
            profiles.extend(self.open_shard(&secret, *number, &ciphertext)?);
        }
        profiles.sort_by(|a, b| a.name.cmp(&b.name));
        let mut data = head_of(snap.content.data(self.location())?);
        data.profiles = profiles;
        Ok(Some(data))
    }

    /// [`Store::patch_shards`]; when that fails, the shards it would have written are
    /// removed (status then reads the entries), as a shard that says an older state than its
    /// entries would mislead whoever reads status. The entries are saved already: a status
    /// that cannot be written fails no save.
    pub(super) fn patch_shards_or_drop(
        &self,
        snap: &mut Snapshot,
        entries: &dyn Entries,
        changed: &[&Profile],
        removed: &[String],
        sealing: &Sealing,
    ) {
        let Err(e) = self.patch_shards(snap, entries, changed, removed, sealing) else {
            return;
        };
        tracing::warn!(error = %e, "cannot write the status shards: removing them, so status reads the entries");
        let shards = snap.entries.as_ref().map_or(0, |s| s.changes.shards);
        let Ok(secret) = Self::entry_secret(snap) else {
            return;
        };
        for number in touched(&secret, shards, changed, removed) {
            if let Err(e) = entries.remove_shard(number) {
                tracing::warn!(error = %e, shard = number, "cannot remove a status shard");
            }
        }
    }

    /// Writes the status shards of the profiles `changed` and `removed` (by name) again: each
    /// shard as stored, with those profiles put in or taken out. A shard that cannot be read
    /// is made again from every entry.
    pub(super) fn patch_shards(
        &self,
        snap: &mut Snapshot,
        entries: &dyn Entries,
        changed: &[&Profile],
        removed: &[String],
        sealing: &Sealing,
    ) -> Result<(), VaultError> {
        let shards = snap.entries.as_ref().map_or(0, |s| s.changes.shards);
        if shards == 0 || (changed.is_empty() && removed.is_empty()) {
            return Ok(());
        }
        let secret = Self::entry_secret(snap)?;
        let number_of = |name: &str| shard_of(&record_key(Some(&secret), name), shards);
        let numbers = touched(&secret, shards, changed, removed);
        let read = entries.read_shards(&numbers)?;
        let mut written = Vec::with_capacity(numbers.len());
        for (number, ciphertext) in numbers.iter().zip(read) {
            let opened = ciphertext.ok_or(()).and_then(|ciphertext| {
                self.open_shard(&secret, *number, &ciphertext)
                    .map_err(|_| ())
            });
            let mut held: BTreeMap<String, Profile> = match opened {
                Ok(profiles) => profiles.into_iter().map(|p| (p.name.clone(), p)).collect(),
                Err(()) => self.shard_from_entries(snap, *number, &number_of)?,
            };
            for name in removed.iter().filter(|n| number_of(n) == *number) {
                held.remove(name);
            }
            for profile in changed.iter().filter(|p| number_of(&p.name) == *number) {
                held.insert(profile.name.clone(), (*profile).clone());
            }
            let profiles: Vec<&Profile> = held.values().collect();
            written.push(seal_shard(&secret, *number, &profiles, sealing)?);
        }
        entries.write_shards(&written)
    }

    /// The profiles of shard `number`, from every entry.
    fn shard_from_entries(
        &self,
        snap: &mut Snapshot,
        number: u32,
        number_of: &dyn Fn(&str) -> u32,
    ) -> Result<BTreeMap<String, Profile>, VaultError> {
        self.load_whole(snap)?;
        let data = snap.content.data(self.location())?;
        Ok(data
            .profiles
            .iter()
            .filter(|p| number_of(&p.name) == number)
            .map(|p| (p.name.clone(), p.clone()))
            .collect())
    }
}
