//! The status shards of a vault laid out as entries: what `status` reads instead of every
//! entry. Each shard holds what status needs of the profiles whose id falls in it
//! ([`crate::vault::entry::status_of`]: no secret), sealed and encrypted as an entry is. A
//! save writes the shards of the profiles it changed after their entries, so a shard is at
//! most a moment behind; a shard missing or not a member's sends status to the entries.

use std::collections::BTreeMap;

use age::secrecy::SecretString;

use super::cache::Cache;
use super::entries::head_of;
use super::{Store, record_key};
use crate::vault::backend::entries::{shard_name, shard_of};
use crate::vault::backend::{Entries, EntryRead, ShardWrite};
use crate::vault::crypto::{self, Sealing};
use crate::vault::entry::{self, SavedBy, Shard};
use crate::vault::error::VaultError;
use crate::vault::model::{Profile, VaultData};

/// The most a shard's text may inflate to: far past what thousands of profiles need, and a
/// bound on what a planted shard can make this process allocate.
const SHARD_TEXT_LIMIT: usize = 16 * 1024 * 1024;

/// Tries of a patch whose shard another writer changed first: writers of different profiles
/// of one shard each read it again and put their profiles in.
const PATCH_TRIES: u32 = 8;

/// Shard `number`, holding `profiles`, sealed to be written over `expected`: the text
/// deflated (its tables repeat the same keys, so it shrinks about fivefold), then encrypted.
fn seal_shard(
    secret: &SecretString,
    (number, profiles, saved_by): (u32, &[&Profile], &BTreeMap<String, SavedBy>),
    sealing: &Sealing,
    expected: Option<u64>,
) -> Result<ShardWrite, VaultError> {
    let text = entry::render_shard(secret, &shard_name(number), profiles, saved_by)?;
    let deflated = miniz_oxide::deflate::compress_to_vec(text.as_bytes(), 6);
    Ok(ShardWrite {
        number,
        ciphertext: crypto::encrypt(&deflated, sealing)?,
        expected,
    })
}

/// Writes every shard of `written` over whatever is there; the first failure.
pub(super) fn write_over(entries: &dyn Entries, written: &[ShardWrite]) -> Result<(), VaultError> {
    entries
        .write_shards(written)
        .into_iter()
        .try_for_each(|outcome| outcome.map(|_| ()))
}

/// Every shard of `shards` for the profiles of `data`, empty ones too (so a missing shard
/// means damage, never "no profile there"), to be written over whatever is there; who saved
/// each token as `saved_by` says.
pub(super) fn all_shards(
    data: &VaultData,
    shards: u32,
    sealing: &Sealing,
    saved_by: &BTreeMap<String, SavedBy>,
) -> Result<Vec<ShardWrite>, VaultError> {
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
        .map(|(number, profiles)| {
            let saved: BTreeMap<String, SavedBy> = profiles
                .iter()
                .filter_map(|p| Some((p.name.clone(), saved_by.get(&p.name)?.clone())))
                .collect();
            seal_shard(secret, (number, &profiles, &saved), sealing, None)
        })
        .collect()
}

/// A patch of the status shards: the profiles a save changed, and those it removed (by
/// name), sealed as `sealing`.
struct Patch<'a> {
    changed: &'a [&'a Profile],
    removed: &'a [String],
    sealing: &'a Sealing,
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
    /// What shard `number`'s ciphertext holds, checked under `secret`.
    fn open_shard(
        &self,
        secret: &SecretString,
        number: u32,
        ciphertext: &[u8],
    ) -> Result<Shard, VaultError> {
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
        let mut snap = self.cache();
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
    fn status_from_shards(&self, snap: &mut Cache) -> Result<Option<VaultData>, VaultError> {
        // Loaded whole, the content holds every profile, unless some are sealed to groups
        // this machine holds no key of: the shards hold theirs too.
        if snap
            .entries
            .as_ref()
            .is_none_or(|state| state.whole && state.locked.is_empty())
        {
            return Ok(None);
        }
        let Some(mut shard) = self.every_shard(snap)? else {
            return Ok(None);
        };
        shard.profiles.sort_by(|a, b| a.name.cmp(&b.name));
        let mut data = head_of(snap.content.data(self.location())?);
        data.profiles = shard.profiles;
        Ok(Some(data))
    }

    /// Every status shard, read and joined (and who saved each token remembered for
    /// [`Store::saved_by`]); `None` for a vault without them.
    pub(super) fn every_shard(&self, snap: &mut Cache) -> Result<Option<Shard>, VaultError> {
        let shards = match snap.entries.as_ref() {
            Some(state) if state.changes.shards > 0 => state.changes.shards,
            _ => return Ok(None),
        };
        let Some(entries) = self.backend.entries() else {
            return Ok(None);
        };
        let secret = Self::entry_secret(snap)?;
        let numbers: Vec<u32> = (0..shards).collect();
        let read = entries.read_shards(&numbers)?;
        let mut joined = Shard::default();
        for (number, ciphertext) in numbers.iter().zip(read) {
            let ciphertext = ciphertext.ok_or_else(|| {
                VaultError::Remote(format!(
                    "status shard {number} of {} is missing",
                    self.location()
                ))
            })?;
            let shard = self.open_shard(&secret, *number, &ciphertext.ciphertext)?;
            joined.profiles.extend(shard.profiles);
            joined.saved_by.extend(shard.saved_by);
        }
        let seq = snap.entries.as_ref().map_or(0, |s| s.changes.seq);
        snap.saved_by = Some((seq, joined.saved_by.clone()));
        Ok(Some(joined))
    }

    /// Who saved each profile's token last, as the shards of `snap` say now (empty when
    /// they cannot be read): for a writer that writes every shard again.
    pub(super) fn saved_by_in(&self, snap: &mut Cache) -> BTreeMap<String, SavedBy> {
        match self.every_shard(snap) {
            Ok(shard) => shard.map(|s| s.saved_by).unwrap_or_default(),
            Err(e) => {
                tracing::debug!(error = %e, "the status shards say nobody saved a token");
                BTreeMap::new()
            }
        }
    }

    /// Who saved each profile's token last, as the status shards say: read again when the
    /// vault changed since they were read last. Empty for a vault without shards.
    pub(super) fn saved_by(&self) -> BTreeMap<String, SavedBy> {
        let mut snap = self.cache();
        if let Err(e) = self.refresh_snapshot(&mut snap) {
            tracing::debug!(error = %e, "cannot ask whether the vault changed");
        }
        let seq = snap.entries.as_ref().map(|s| s.changes.seq);
        if let Some((read_at, saved)) = snap.saved_by.as_ref()
            && Some(*read_at) == seq
        {
            return saved.clone();
        }
        self.saved_by_in(&mut snap)
    }

    /// [`Store::patch_shards`]; when that fails, the shards it would have written are
    /// removed (status then reads the entries), as a shard that says an older state than its
    /// entries would mislead whoever reads status. The entries are saved already: a status
    /// that cannot be written fails no save.
    pub(super) fn patch_shards_or_drop(
        &self,
        snap: &mut Cache,
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
    /// shard as stored, with those profiles put in or taken out, over the version read. A
    /// shard another writer changed meanwhile is read and patched again, a bounded number of
    /// times; one that cannot be read is made again from every entry.
    pub(super) fn patch_shards(
        &self,
        snap: &mut Cache,
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
        let patch = Patch {
            changed,
            removed,
            sealing,
        };
        let mut numbers = touched(&secret, shards, changed, removed);
        for _ in 0..PATCH_TRIES {
            let read = entries.read_shards(&numbers)?;
            let written = self.patched(snap, &secret, (&numbers, read), &patch)?;
            let outcomes = entries.write_shards(&written);
            let mut again = Vec::new();
            for (write, outcome) in written.iter().zip(outcomes) {
                match outcome {
                    Ok(_) => {}
                    Err(VaultError::Conflict(_)) => again.push(write.number),
                    Err(e) => return Err(e),
                }
            }
            if again.is_empty() {
                return Ok(());
            }
            numbers = again;
        }
        Err(VaultError::Conflict(self.location().clone()))
    }

    /// The shards `numbers` as `read`, with `patch` applied, each sealed to go over the
    /// version read.
    fn patched(
        &self,
        snap: &mut Cache,
        secret: &SecretString,
        (numbers, read): (&[u32], Vec<Option<EntryRead>>),
        patch: &Patch<'_>,
    ) -> Result<Vec<ShardWrite>, VaultError> {
        let shards = snap.entries.as_ref().map_or(0, |s| s.changes.shards);
        let number_of = |name: &str| shard_of(&record_key(Some(secret), name), shards);
        let Patch {
            changed,
            removed,
            sealing,
        } = *patch;
        let mut written = Vec::with_capacity(numbers.len());
        for (number, stored) in numbers.iter().zip(read) {
            let expected = stored.as_ref().map_or(0, |s| s.version);
            let opened = stored.ok_or(()).and_then(|stored| {
                self.open_shard(secret, *number, &stored.ciphertext)
                    .map_err(|_| ())
            });
            let (mut held, mut saved): (BTreeMap<String, Profile>, _) = match opened {
                Ok(shard) => (
                    shard
                        .profiles
                        .into_iter()
                        .map(|p| (p.name.clone(), p))
                        .collect(),
                    shard.saved_by,
                ),
                Err(()) => (
                    self.shard_from_entries(snap, *number, &number_of)?,
                    BTreeMap::new(),
                ),
            };
            for name in removed.iter().filter(|n| number_of(n) == *number) {
                held.remove(name);
                saved.remove(name);
            }
            for profile in changed.iter().filter(|p| number_of(&p.name) == *number) {
                let obtained = |p: &Profile| p.token.as_ref().map(|t| t.obtained_at);
                let new_token = obtained(profile);
                if let Some(at) = new_token
                    && held.get(&profile.name).and_then(obtained) != new_token
                {
                    let host = crate::platform::host_name();
                    saved.insert(profile.name.clone(), SavedBy { host, at });
                }
                held.insert(profile.name.clone(), (*profile).clone());
            }
            let profiles: Vec<&Profile> = held.values().collect();
            let shard = (*number, profiles.as_slice(), &saved);
            written.push(seal_shard(secret, shard, sealing, Some(expected))?);
        }
        Ok(written)
    }

    /// The profiles of shard `number`, from every entry.
    fn shard_from_entries(
        &self,
        snap: &mut Cache,
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
