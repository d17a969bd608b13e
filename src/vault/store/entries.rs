//! The store over a vault laid out as entries ([`crate::vault::backend::entries`]): profiles
//! loaded one at a time or all at once, a save that writes only the entries it changed and
//! the descriptor's log, and the moves between one piece and entries.

use std::collections::{HashMap, HashSet};

use age::secrecy::SecretString;

use super::cache::Cache;
use super::readers::Opened;
use super::sealed::Seals;
use super::{Store, record_key};
use crate::vault::backend::entries::shards_for;
use crate::vault::backend::{Changes, Entries, EntryRead, EntryWrite, Layout};
use crate::vault::crypto;
use crate::vault::entry;
use crate::vault::error::VaultError;
use crate::vault::model::{Profile, VaultData};
use crate::vault::parallel;
use crate::vault::snapshot::{Content, EntryState, Slot};
use crate::vault::text::Text;

/// Tries of a descriptor that other writers' saves keep changing first.
const LOG_TRIES: u32 = 8;

/// Records in `state` what each write of `writes` (sealed as `sealed`) came to: the new
/// version of each written, and, for one that failed, that it must be read again (another
/// writer's version may be there). The ids written, and the first failure.
fn settle_writes(
    state: &mut EntryState,
    writes: &[&Profile],
    sealed: Vec<EntryWrite>,
    outcomes: Vec<Result<u64, VaultError>>,
) -> (Vec<String>, Option<VaultError>) {
    let mut ids = Vec::with_capacity(writes.len());
    let mut failed = None;
    for ((profile, write), outcome) in writes.iter().zip(sealed).zip(outcomes) {
        match outcome {
            Ok(version) => {
                let slot = Slot {
                    id: write.id.clone(),
                    version,
                };
                state.slots.insert(profile.name.clone(), slot);
                ids.push(write.id);
            }
            Err(e) => {
                state.slots.remove(&profile.name);
                state.whole = false;
                failed.get_or_insert(e);
            }
        }
    }
    (ids, failed)
}

/// The head of `data`: everything but its profiles.
pub(super) fn head_of(data: &VaultData) -> VaultData {
    VaultData {
        version: data.version,
        recipients: data.recipients.clone(),
        members_secret: data.members_secret.clone(),
        members_secret_replaces: data.members_secret_replaces.clone(),
        operators: data.operators.clone(),
        groups: data.groups.clone(),
        profiles: Vec::new(),
    }
}

/// Whether `a` and `b` are sealed for the same members: the same recipients and secret.
fn same_membership(a: &VaultData, b: &VaultData) -> bool {
    use age::secrecy::ExposeSecret;
    fn secret(d: &VaultData) -> Option<&str> {
        d.members_secret.as_ref().map(ExposeSecret::expose_secret)
    }
    a.recipients == b.recipients
        && a.operators == b.operators
        && a.groups == b.groups
        && secret(a) == secret(b)
}

/// The refusal to lay out as entries a vault kept where only one piece fits (a file).
pub(super) fn in_one_piece(location: &crate::vault::location::Location) -> VaultError {
    VaultError::Remote(format!(
        "{location} is a file, which holds a vault in one piece: entries are for a team vault in OpenBao (move it there with `tokdeck vault copy openbao://... --entries`)"
    ))
}

impl Store {
    /// The backend's entries, when the vault as read is laid out as entries.
    fn entries_of(&self, snap: &Cache) -> Option<&dyn Entries> {
        snap.entries.as_ref()?;
        self.backend.entries()
    }

    /// The backend's entries, for a vault that must be laid out as entries.
    pub(super) fn entries_or_refuse(&self) -> Result<&dyn Entries, VaultError> {
        self.backend
            .entries()
            .ok_or_else(|| in_one_piece(self.location()))
    }

    /// The members' secret the entries are sealed under.
    pub(super) fn entry_secret(snap: &Cache) -> Result<SecretString, VaultError> {
        snap.content
            .members_secret()
            .0
            .cloned()
            .ok_or_else(|| VaultError::Untrusted("a vault laid out as entries has no members' secret: it was not written by tokdeck; restore its descriptor from KV's history".into()))
    }

    /// Opens entry `id` as read.
    pub(super) fn open_entry(
        &self,
        secret: &SecretString,
        id: &str,
        read: &EntryRead,
    ) -> Result<Profile, VaultError> {
        let text = crypto::decrypt(&read.ciphertext, &self.unlock, self.location())?;
        entry::open(secret, id, &text, self.location(), |name| {
            record_key(Some(secret), name)
        })
    }

    /// Loads every entry, once: the content then holds every profile. An entry that is not
    /// a member's is left out, and said in the log.
    pub(super) fn load_whole(&self, snap: &mut Cache) -> Result<(), VaultError> {
        let Some(entries) = self.entries_of(snap) else {
            return Ok(());
        };
        if snap.entries.as_ref().is_some_and(|s| s.whole) {
            return Ok(());
        }
        let secret = Self::entry_secret(snap)?;
        let ids = entries.list()?;
        let read = entries.read_many(&ids)?;
        let Opened { opened, locked } = self.open_all(&secret, &ids, &read);
        let mut slots = HashMap::with_capacity(opened.len());
        let mut profiles = Vec::with_capacity(opened.len());
        for (id, version, profile) in opened {
            slots.insert(profile.name.clone(), Slot { id, version });
            profiles.push(profile);
        }
        profiles.sort_by(|a, b| a.name.cmp(&b.name));
        let whole = snap.content.parsed_whole(self.backend.location())?;
        whole.data.profiles = profiles;
        whole.index = None;
        whole.text = None;
        if let Some(state) = snap.entries.as_mut() {
            state.slots = slots;
            state.whole = true;
            state.locked = locked;
        }
        Ok(())
    }

    /// Loads the profile `name` when it is not loaded, or again when `fresh` (under the
    /// lease, before its refresh token is spent, nothing but the entry itself is trusted).
    pub(super) fn load_one(
        &self,
        snap: &mut Cache,
        name: &str,
        fresh: bool,
    ) -> Result<(), VaultError> {
        let Some(entries) = self.entries_of(snap) else {
            return Ok(());
        };
        let known = snap
            .entries
            .as_ref()
            .is_some_and(|s| s.whole || s.slots.contains_key(name));
        let secret = Self::entry_secret(snap)?;
        let id = record_key(Some(&secret), name);
        if snap
            .entries
            .as_ref()
            .is_some_and(|s| s.locked.contains(&id))
            && !fresh
        {
            return Err(self.not_reader(snap, name));
        }
        if known && !fresh {
            return Ok(());
        }
        let found = match entries.read(&id)? {
            Some(read) => match self.open_entry(&secret, &id, &read) {
                Ok(profile) => Some((read.version, profile)),
                Err(VaultError::WrongKey { .. }) => return Err(self.not_reader(snap, name)),
                Err(e) => return Err(e),
            },
            None => None,
        };
        self.put_loaded(snap, name, id, found)
    }

    /// Puts what was read of profile `name`'s entry `id` in the content (or takes the
    /// profile out, when there is no entry), keeping a newer token this process saw.
    fn put_loaded(
        &self,
        snap: &mut Cache,
        name: &str,
        id: String,
        found: Option<(u64, Profile)>,
    ) -> Result<(), VaultError> {
        let Cache { read, kept, .. } = snap;
        let whole = read.content.parsed_whole(self.backend.location())?;
        let at = whole.data.profiles.iter().position(|p| p.name == name);
        let state = read.entries.as_mut();
        match (found, at) {
            (Some((version, mut profile)), at) => {
                if let Some(ours) = at.and_then(|i| whole.data.profiles.get(i))
                    && crate::vault::rollback::keep_newer_token(ours, &mut profile)
                {
                    tracing::warn!(
                        profile = name,
                        "the entry holds an older token than this process saw: kept the newer one"
                    );
                    kept.push(name.to_string());
                }
                if let Some(slot) = at.and_then(|i| whole.data.profiles.get_mut(i)) {
                    *slot = profile;
                } else {
                    whole.data.profiles.push(profile);
                    whole.index = None;
                }
                if let Some(state) = state {
                    state.slots.insert(name.to_string(), Slot { id, version });
                }
            }
            (None, Some(i)) => {
                whole.data.profiles.remove(i);
                whole.index = None;
                if let Some(state) = state {
                    state.slots.remove(name);
                }
            }
            (None, None) => {}
        }
        whole.text = None;
        Ok(())
    }

    /// Follows the descriptor's log from what this store saw: the entries changed since are
    /// read again (those loaded; every one when all are), or everything is forgotten when
    /// the log no longer reaches back. Returns whether anything changed.
    pub(super) fn catch_up(&self, snap: &mut Cache, changes: Changes) -> Result<bool, VaultError> {
        let Some(state) = snap.entries.as_mut() else {
            return Ok(false);
        };
        let Some(ids) = changes.since(state.changes.seq) else {
            let was_whole = state.whole;
            *state = EntryState::new(changes, std::mem::take(&mut state.head));
            let whole = snap.content.parsed_whole(self.backend.location())?;
            whole.data.profiles.clear();
            whole.index = None;
            whole.text = None;
            if was_whole {
                self.load_whole(snap)?;
            }
            return Ok(true);
        };
        let touched: HashSet<String> = ids.into_iter().map(String::from).collect();
        let names: Vec<String> = state
            .slots
            .iter()
            .filter(|(_, slot)| touched.contains(&slot.id))
            .map(|(name, _)| name.clone())
            .collect();
        let unknown: Vec<String> = if state.whole {
            let known: HashSet<&String> = state.slots.values().map(|s| &s.id).collect();
            touched
                .iter()
                .filter(|id| !known.contains(id))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        state.changes = changes;
        let any = !names.is_empty() || !unknown.is_empty();
        for name in names {
            self.load_one(snap, &name, true)?;
        }
        self.load_new(snap, &unknown)?;
        Ok(any)
    }

    /// Loads the entries `ids` this store does not know yet (profiles added elsewhere).
    fn load_new(&self, snap: &mut Cache, ids: &[String]) -> Result<(), VaultError> {
        let Some(entries) = self.entries_of(snap).filter(|_| !ids.is_empty()) else {
            return Ok(());
        };
        let secret = Self::entry_secret(snap)?;
        let read = entries.read_many(ids)?;
        let Opened { opened, locked } = self.open_all(&secret, ids, &read);
        if let Some(state) = snap.entries.as_mut() {
            state.locked.extend(locked);
        }
        for (id, version, profile) in opened {
            let name = profile.name.clone();
            self.put_loaded(snap, &name, id, Some((version, profile)))?;
        }
        Ok(())
    }

    /// Writes the entries of `writes` and removes those of `removed` (by name), then the
    /// descriptor with its log; the content is the caller's to change. The status shards of
    /// the profiles changed are written in between, unless `patch` is off (the caller writes
    /// every shard). A conflict at an entry forgets it, so the next try reads it again.
    pub(super) fn commit_entries(
        &self,
        snap: &mut Cache,
        writes: &[&Profile],
        removed: &[String],
        seals: &Seals,
        patch: bool,
    ) -> Result<(), VaultError> {
        let entries = self.entries_or_refuse()?;
        let secret = Self::entry_secret(snap)?;
        let read = &mut snap.read;
        let Some(state) = read.entries.as_mut() else {
            return Err(VaultError::Conflict(self.location().clone()));
        };
        let expected = |p: &Profile| Some(state.slots.get(&p.name).map_or(0, |s| s.version));
        let sealed = Self::seal_entries(&secret, writes, seals, expected)?;
        let outcomes = entries.write_many(&sealed);
        let (mut ids, failed) = settle_writes(state, writes, sealed, outcomes);
        if let Some(e) = failed {
            // What was written is recorded, so other readers find it; the error is the
            // caller's.
            let changes = state.changes.recording(ids.iter().map(String::as_str));
            if entries
                .commit_head(&state.head, &changes, read.version)
                .is_ok()
            {
                state.changes = changes;
            }
            if let Err(unread) = self.reread_after_conflict(snap) {
                tracing::debug!(error = %unread, "cannot read the vault again after a failed save");
            }
            return Err(e);
        }
        for name in removed {
            let id = record_key(Some(&secret), name);
            entries.remove(&id)?;
            state.slots.remove(name);
            ids.push(id);
        }
        if patch {
            self.patch_shards_or_drop(snap, entries, writes, removed, &seals.readers);
        }
        self.commit_log(snap, entries, &ids)
    }

    /// Writes the descriptor with `ids` recorded in its log, over the version `snap` read.
    /// Another writer's descriptor found there with the same head and shards (a save of
    /// other profiles: their entries are theirs, these are this one's) gets `ids` recorded
    /// in its log instead, a bounded number of times; this store reads what that writer
    /// changed at its next read. Another head is the caller's to try again on.
    fn commit_log(
        &self,
        snap: &mut Cache,
        entries: &dyn Entries,
        ids: &[String],
    ) -> Result<(), VaultError> {
        let conflict = || VaultError::Conflict(self.location().clone());
        let Some(state) = snap.entries.as_ref() else {
            return Err(conflict());
        };
        let (head, shards) = (state.head.clone(), state.changes.shards);
        let mut base = state.changes.clone();
        let mut expected = snap.version;
        for tried in 0..LOG_TRIES {
            let changes = base.recording(ids.iter().map(String::as_str));
            match entries.commit_head(&head, &changes, expected) {
                Ok(version) if tried == 0 => {
                    if let Some(state) = snap.entries.as_mut() {
                        state.changes = changes;
                    }
                    snap.version = version;
                    return Ok(());
                }
                Ok(_) => {
                    // The log holds others' changes this store has not read: the next
                    // read follows it from what this store saw.
                    snap.version = None;
                    snap.fresh = None;
                    return Ok(());
                }
                Err(VaultError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
            let stored = self.backend.open()?;
            match stored.layout {
                Layout::Entries(theirs)
                    if stored.stamp == snap.stamp && theirs.shards == shards =>
                {
                    base = theirs;
                    expected = stored.version;
                }
                _ => break,
            }
        }
        self.reread_after_conflict(snap)?;
        Err(conflict())
    }

    /// The entries of `profiles`, each sealed for its readers under `secret` on every core,
    /// each to be written over `expected` of it.
    pub(super) fn seal_entries(
        secret: &SecretString,
        profiles: &[&Profile],
        seals: &Seals,
        expected: impl Fn(&Profile) -> Option<u64> + Sync,
    ) -> Result<Vec<EntryWrite>, VaultError> {
        let seal_one = |profile: &&Profile| {
            let id = record_key(Some(secret), &profile.name);
            let text = entry::render(secret, &id, profile)?;
            Ok(EntryWrite {
                ciphertext: crypto::encrypt(text.as_bytes(), seals.entry(profile))?,
                expected: expected(profile),
                id,
            })
        };
        parallel::on_threads(profiles, parallel::cores(), seal_one)
            .into_iter()
            .map(|sealed| {
                sealed.unwrap_or_else(|| {
                    Err(VaultError::Encrypt(
                        "a thread sealing entries failed".into(),
                    ))
                })
            })
            .collect()
    }

    /// Saves `data`, whose members changed, sealing every entry again once no refresh holds
    /// a lock; when a refresh saved while this waited, the caller applies its change again.
    fn reseal_for_members(
        &self,
        snap: &mut Cache,
        data: VaultData,
        seals: &Seals,
    ) -> Result<(), VaultError> {
        self.wait_out_locks()?;
        if self.reread_after_conflict(snap)? {
            return Err(VaultError::Conflict(self.location().clone()));
        }
        self.rewrite_entries(snap, data, seals)
    }

    /// Saves `data`, a change of the whole content (all loaded), as entries: only the
    /// profiles that differ, unless the members changed, which seals every entry again.
    pub(super) fn commit_whole_entries(
        &self,
        snap: &mut Cache,
        data: VaultData,
    ) -> Result<(), VaultError> {
        let seals = Self::seals_for(&snap.sealing, &data);
        let old = snap.content.data(self.backend.location())?;
        if !same_membership(old, &data) {
            return self.reseal_for_members(snap, data, &seals);
        }
        let rendered = |p: &Profile| Text::profile(p).ok();
        let before: HashMap<&str, &Profile> =
            old.profiles.iter().map(|p| (p.name.as_str(), p)).collect();
        let writes: Vec<&Profile> = data
            .profiles
            .iter()
            .filter(|p| {
                before
                    .get(p.name.as_str())
                    .is_none_or(|was| rendered(was) != rendered(p))
            })
            .collect();
        let kept: HashSet<&str> = data.profiles.iter().map(|p| p.name.as_str()).collect();
        let removed: Vec<String> = before
            .keys()
            .filter(|name| !kept.contains(*name))
            .map(|name| (*name).to_string())
            .collect();
        let was = snap.entries.as_ref().map_or(0, |s| s.changes.shards);
        let wanted = shards_for(data.profiles.len());
        // Many changes, or a vault grown or shrunk fourfold: every shard is written again.
        let many = usize::try_from(was / 4).unwrap_or(usize::MAX);
        // Shards written from what this machine reads would leave out what it cannot.
        let all_read = snap.entries.as_ref().is_none_or(|s| s.locked.is_empty());
        let every_shard = was > 0
            && all_read
            && (wanted > was * 4 || wanted * 4 < was || writes.len() + removed.len() > many);
        if every_shard {
            let entries = self.entries_or_refuse()?;
            let saved_by = self.saved_by_in(snap);
            let every = super::shards::all_shards(&data, wanted, &seals.readers, &saved_by)?;
            super::shards::write_over(entries, &every)?;
            if let Some(state) = snap.entries.as_mut() {
                state.changes.shards = wanted;
            }
        }
        if !writes.is_empty() || !removed.is_empty() || every_shard {
            self.commit_entries(snap, &writes, &removed, &seals, !every_shard)?;
        }
        if every_shard {
            let entries = self.entries_or_refuse()?;
            for stale in wanted..was {
                entries.remove_shard(stale)?;
            }
        }
        snap.content = Content::whole(data);
        Ok(())
    }

    /// [`Store::update_profiles`] once, for a vault laid out as entries: each named profile
    /// read again from its entry (under the lease, nothing else is trusted), the changes
    /// applied, and only the changed entries written.
    pub(super) fn update_entries<T, F>(
        &self,
        snap: &mut Cache,
        changes: &mut [(String, F)],
    ) -> Result<Vec<Option<T>>, VaultError>
    where
        F: FnMut(&mut Profile) -> T,
    {
        for (name, _) in changes.iter() {
            self.load_one(snap, name, true)?;
        }
        let base = snap.sealing.clone();
        let whole = snap.content.parsed_whole(self.backend.location())?;
        let (edited, outcomes) = whole.edited(changes);
        if edited.is_empty() {
            return Ok(outcomes);
        }
        let seals = Self::seals_for(&base, &whole.data);
        let renamed: Vec<String> = edited
            .iter()
            .filter_map(|(&at, p)| whole.data.profiles.get(at).filter(|s| s.name != p.name))
            .map(|p| p.name.clone())
            .collect();
        let writes: Vec<&Profile> = edited.values().collect();
        self.commit_entries(snap, &writes, &renamed, &seals, true)?;
        let whole = snap.content.parsed_whole(self.backend.location())?;
        whole.put_edited(edited);
        whole.text = None;
        Ok(outcomes)
    }
}
