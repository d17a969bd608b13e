//! Moving a vault between one piece and entries, and sealing every entry again when the
//! members change.

use std::collections::{HashMap, HashSet};

use super::cache::Cache;
use super::entries::{head_of, in_one_piece};
use super::sealed::{Seals, divided_stays_in_entries};
use super::shards::all_shards;
use super::{Store, seal};
use crate::vault::backend::entries::shards_for;
use crate::vault::backend::{Backend, Changes, Version};
use crate::vault::crypto::Sealing;
use crate::vault::error::VaultError;
use crate::vault::model::{Profile, VaultData};
use crate::vault::snapshot::{Content, EntryState, Slot, Snapshot};

/// How a vault is stored, for `vault layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrangement {
    /// One ciphertext.
    Single,
    /// A descriptor and one entry per profile.
    Entries,
}

fn arrangement_of(snap: &Cache) -> Arrangement {
    if snap.entries.is_some() {
        Arrangement::Entries
    } else {
        Arrangement::Single
    }
}

impl Store {
    /// Stores a copy of the vault at `target`, laid out as `to`; refuses to replace a vault
    /// there. For a copy that cannot be the ciphertext as it is: out of entries, or into them.
    pub fn copy_to(&self, target: &dyn Backend, to: Arrangement) -> Result<(), VaultError> {
        let mut data = self.snapshot()?;
        match to {
            Arrangement::Single if data.is_divided() => Err(divided_stays_in_entries()),
            Arrangement::Single => {
                let sealing = Self::sealing_for(&self.sealing(), &data);
                super::create_in(target, &mut data, &sealing).map(|_| ())
            }
            Arrangement::Entries => {
                let seals = Self::seals_for(&self.sealing(), &data);
                create_entries_in(target, &mut data, &seals)
            }
        }
    }

    /// How the vault is stored now.
    pub fn arrangement(&self) -> Arrangement {
        arrangement_of(&self.cache())
    }

    /// Writes every profile of `data` as an entry sealed for its members, the descriptor
    /// over the version `snap` read (one piece, or a descriptor), and then removes every
    /// entry no profile has: how a vault moves into entries, and how a change of members
    /// reaches every entry.
    pub(super) fn rewrite_entries(
        &self,
        snap: &mut Cache,
        mut data: VaultData,
        seals: &Seals,
    ) -> Result<(), VaultError> {
        let entries = self.entries_or_refuse()?;
        let secret = data
            .members_secret
            .clone()
            .ok_or_else(passphrase_stays_single)?;
        let listed: HashSet<String> = entries.list()?.into_iter().collect();
        let locked = self.keep_locked(snap, &secret)?;
        data.version = data.format_needed();
        let slots = self.write_every_entry_again(snap, &secret, &mut data, seals)?;
        let head = seal(&head_of(&data), &seals.readers)?;
        let mut changes = snap
            .entries
            .as_ref()
            .map(|s| s.changes.clone())
            .unwrap_or_default()
            .recording(slots.values().map(|s| s.id.as_str()));
        let was = changes.shards;
        let saved_by = self.saved_by_in(snap);
        let mut status = data.clone();
        status.profiles.extend(locked.statuses);
        changes.shards = shards_for(status.profiles.len());
        let every = all_shards(&status, changes.shards, &seals.readers, &saved_by)?;
        super::shards::write_over(entries, &every)?;
        let version = match entries.commit_head(&head, &changes, snap.version) {
            Err(conflict @ VaultError::Conflict(_)) => {
                self.reread_after_conflict(snap)?;
                return Err(conflict);
            }
            committed => committed?,
        };
        let current: HashSet<&String> = slots.values().map(|s| &s.id).collect();
        let stale = |id: &&String| !current.contains(id) && !locked.ids.contains(*id);
        for stale in listed.iter().filter(stale) {
            entries.remove(stale)?;
        }
        for stale in changes.shards..was {
            entries.remove_shard(stale)?;
        }
        data.profiles.sort_by(|a, b| a.name.cmp(&b.name));
        self.trust_own_write(&mut snap.trust, &data);
        snap.read = Snapshot {
            stamp: crate::vault::backend::Stamp::of(&head),
            content: Content::whole(data),
            version,
            entries: Some(EntryState {
                changes,
                head,
                slots,
                whole: true,
                locked: locked.ids,
            }),
        };
        Ok(())
    }

    /// Moves the vault into entries, or back into one piece, under the lease; says whether
    /// it moved (`false`: it was laid out so already). Nothing is removed before what
    /// replaces it is stored: a move cut short leaves the vault as it was, and entries no
    /// descriptor names, which the next move removes.
    pub fn arrange(&self, to: Arrangement) -> Result<bool, VaultError> {
        let _lease = self.lease()?;
        if to == Arrangement::Single {
            // Out of entries, no refresh may cross the move: each waits for the lease now.
            self.wait_out_locks()?;
        }
        let mut snap = self.cache();
        self.refresh_snapshot(&mut snap)?;
        if arrangement_of(&snap) == to {
            return Ok(false);
        }
        self.load_whole(&mut snap)?;
        let mut data = snap.content.data(self.location())?.clone();
        match to {
            Arrangement::Entries => {
                let seals = Self::seals_for(&snap.sealing, &data);
                crate::vault::trust::give_members_secret(&mut data, &seals.readers);
                self.rewrite_entries(&mut snap, data, &seals)?;
            }
            Arrangement::Single if data.is_divided() => return Err(divided_stays_in_entries()),
            Arrangement::Single => {
                let entries = self.entries_or_refuse()?;
                let shards = snap.entries.as_ref().map_or(0, |s| s.changes.shards);
                let ciphertext = seal(&data, &Self::sealing_for(&snap.sealing, &data))?;
                let version = self.commit_or_reread(&mut snap, &ciphertext)?;
                snap.read = Snapshot::written(version, &ciphertext, data);
                for id in entries.list()? {
                    entries.remove(&id)?;
                }
                for number in 0..shards {
                    entries.remove_shard(number)?;
                }
            }
        }
        Ok(true)
    }
}

/// Tries of [`Store::write_every_entry_again`] at entries another writer changed meanwhile.
const REWRITE_TRIES: u32 = 3;

impl Store {
    /// Writes every profile of `data` as its entry, each over the version `snap` read of it
    /// (one it never read, or under a new id, over whatever is there); where each is. An entry another writer
    /// changed meanwhile (one that saved it and died before its log) is read again, and its
    /// profile as stored sealed in its place: a token saved there is never written over.
    fn write_every_entry_again(
        &self,
        snap: &mut Cache,
        secret: &age::secrecy::SecretString,
        data: &mut VaultData,
        seals: &Seals,
    ) -> Result<HashMap<String, Slot>, VaultError> {
        let entries = self.entries_or_refuse()?;
        let mut slots = HashMap::with_capacity(data.profiles.len());
        let mut pending: Vec<usize> = (0..data.profiles.len()).collect();
        for _ in 0..REWRITE_TRIES {
            let known = snap.entries.as_ref().map(|s| &s.slots);
            // A new members' secret gives new ids: those go over whatever is there.
            let expected = |p: &Profile| {
                let id = super::record_key(Some(secret), &p.name);
                known
                    .and_then(|k| k.get(&p.name))
                    .filter(|slot| slot.id == id)
                    .map(|slot| slot.version)
            };
            let profiles: Vec<&Profile> = pending
                .iter()
                .filter_map(|&i| data.profiles.get(i))
                .collect();
            let sealed = Self::seal_entries(secret, &profiles, seals, expected)?;
            let outcomes = entries.write_many(&sealed);
            let mut again = Vec::new();
            for ((&at, write), outcome) in pending.iter().zip(sealed).zip(outcomes) {
                let Some(name) = data.profiles.get(at).map(|p| p.name.clone()) else {
                    continue;
                };
                match outcome {
                    Ok(version) => {
                        slots.insert(
                            name,
                            Slot {
                                id: write.id,
                                version,
                            },
                        );
                    }
                    Err(VaultError::Conflict(_)) => {
                        self.load_one(snap, &name, true)?;
                        if let Some(stored) = snap.content.profile(&name, self.location())?
                            && let Some(slot) = data.profiles.get_mut(at)
                        {
                            *slot = stored;
                        }
                        again.push(at);
                    }
                    Err(e) => return Err(e),
                }
            }
            if again.is_empty() {
                return Ok(slots);
            }
            pending = again;
        }
        Err(VaultError::Conflict(self.location().clone()))
    }
}

/// Writes every profile of `data` as its entry, over whatever is there; where each is.
fn write_every_entry(
    entries: &dyn crate::vault::backend::Entries,
    secret: &age::secrecy::SecretString,
    data: &VaultData,
    seals: &Seals,
) -> Result<HashMap<String, Slot>, VaultError> {
    let profiles: Vec<&Profile> = data.profiles.iter().collect();
    let sealed = Store::seal_entries(secret, &profiles, seals, |_| None)?;
    let outcomes = entries.write_many(&sealed);
    let mut slots = HashMap::with_capacity(data.profiles.len());
    for ((profile, write), outcome) in profiles.iter().zip(sealed).zip(outcomes) {
        let slot = Slot {
            id: write.id,
            version: outcome?,
        };
        slots.insert(profile.name.clone(), slot);
    }
    Ok(slots)
}

/// Stores a new vault holding `data` in `backend`, laid out as entries, each part sealed
/// as `seals` says; refuses to replace one. The entries go first and the descriptor last, so a
/// copy cut short leaves no vault, only entries the next try writes over.
pub fn create_entries_in(
    backend: &dyn Backend,
    data: &mut VaultData,
    seals: &Seals,
) -> Result<(), VaultError> {
    let taken = || VaultError::AlreadyExists(backend.location().clone());
    if backend.probe().is_some() {
        return Err(taken());
    }
    let entries = backend
        .entries()
        .ok_or_else(|| in_one_piece(backend.location()))?;
    // A vault that names no recipient (made by the age CLI) is sealed to the opening key.
    if let (true, Sealing::Recipients(list)) = (data.recipients.is_empty(), seals.members()) {
        data.recipients.clone_from(list);
    }
    crate::vault::trust::give_members_secret(data, &seals.readers);
    let secret = data
        .members_secret
        .clone()
        .ok_or_else(passphrase_stays_single)?;
    let slots = write_every_entry(entries, &secret, data, seals)?;
    let mut changes = Changes::default().recording(slots.values().map(|s| s.id.as_str()));
    changes.shards = shards_for(data.profiles.len());
    let every = all_shards(
        data,
        changes.shards,
        &seals.readers,
        &std::collections::BTreeMap::new(),
    )?;
    super::shards::write_over(entries, &every)?;
    let head = seal(&head_of(data), &seals.readers)?;
    match entries.commit_head(&head, &changes, Some(Version::Revision(0))) {
        Err(VaultError::Conflict(_)) => Err(taken()),
        done => done.map(|_| ()),
    }
}

/// Why a vault sealed with a passphrase cannot be laid out as entries.
pub(super) fn passphrase_stays_single() -> VaultError {
    VaultError::Remote(
        "a vault sealed with a passphrase stays in one piece: entries are for a team vault sealed to recipients".into(),
    )
}
