//! The opened vault: unlocking, the decrypted cache, updates under the cross-process lease.
//! Where the ciphertext lives is the backend's ([`super::backend`]).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use super::backend::file::read_head;
use super::backend::{Backend, Ciphertext, FileBackend, Tried};
use super::crypto::{self, Sealing, Unlock};
use super::error::VaultError;
use super::location::Location;
use super::model::{Profile, VaultData};
use super::snapshot::{Snapshot, decrypt_snapshot};
use super::text::Text;
mod arrange;
mod cache;
use cache::Cache;
mod entries;
mod lease;
mod locks;
mod readers;
mod sealed;
mod shards;
mod splice;
mod state;
mod team;

use super::trust::{Pinned, Pins, give_members_secret, membership, membership_of};
pub use arrange::Arrangement;
pub use lease::{KeyedPrint, Lease, Refusal, SpendChanges};
use lease::{Which, record_key};
#[cfg(test)]
use sealed::CONFLICT_TRIES;
pub use sealed::create_in;
use sealed::{retrying_conflicts, seal};
pub use team::TeamView;

/// Why the profile a command names cannot be had: the vault could not be read, no profile
/// has that name (with the closest one), or the stored profile breaks a rule about where its
/// secrets go ([`super::validate::check_stored`]).
#[derive(Debug, thiserror::Error)]
pub enum NoProfile {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Unknown(#[from] super::ProfileError),
    #[error(transparent)]
    Broken(#[from] super::validate::Broken),
}

impl From<super::Interrupted> for NoProfile {
    fn from(e: super::Interrupted) -> Self {
        Self::Vault(e.into())
    }
}

/// How long a writer waits for another process's lock before giving up.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);

/// The opened vault. Reads reload when another process changed the file; writes take the
/// lock, reload, apply the change, and save atomically.
pub struct Store {
    backend: Box<dyn Backend>,
    unlock: Unlock,
    /// What this process holds of the vault, the leases it holds and the turn to write
    /// kept tokens back, under one lock ([`state`]); shared with the leases.
    shared: Arc<state::Shared>,
    lock_wait: Duration,
}

impl super::snapshot::Whole {
    /// [`give_members_secret`], and the head rendered again when it did.
    fn give_members_secret(&mut self, sealing: &Sealing) -> bool {
        let given = give_members_secret(&mut self.data, sealing);
        if given {
            self.text = None;
        }
        given
    }
}

impl Store {
    /// Opens and decrypts the vault file at `path`.
    pub fn open(path: &Path, unlock: Unlock) -> Result<Self, VaultError> {
        Self::open_in(Box::new(FileBackend::new(path)), unlock)
    }

    /// Opens and decrypts the vault `backend` keeps.
    pub fn open_in(backend: Box<dyn Backend>, unlock: Unlock) -> Result<Self, VaultError> {
        let stored = backend.open()?;
        Self::open_stored(backend, stored, unlock)
    }

    /// Decrypts what `backend` returned from [`Backend::open`]: a caller that read the
    /// stored vault to tell how to unlock it need not read it again.
    pub fn open_stored(
        backend: Box<dyn Backend>,
        stored: Ciphertext,
        unlock: Unlock,
    ) -> Result<Self, VaultError> {
        let (snapshot, sealing) =
            decrypt_snapshot(stored, &unlock, backend.location(), backend.has_previous())?;
        Ok(Self::with_content(backend, unlock, sealing, snapshot))
    }

    /// A store whose backend holds what `snapshot` saw.
    fn with_content(
        backend: Box<dyn Backend>,
        unlock: Unlock,
        sealing: Sealing,
        snapshot: Snapshot,
    ) -> Self {
        let cache = Cache {
            read: snapshot,
            sealing,
            fresh: Some(Instant::now() + backend.fresh_for()),
            saved_by: None,
            kept: Vec::new(),
            trust: None,
        };
        Self {
            backend,
            unlock,
            shared: Arc::new(state::Shared::new(cache)),
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }

    /// Checks the vault against what this machine accepted of it (pinned in `pins`), and
    /// from then on every version read; refuses a vault it does not trust
    /// ([`VaultError::Untrusted`]). A passphrase vault needs no pin: only who knows the
    /// passphrase can make one.
    pub fn trusting(self, pins: Pins) -> Result<Self, VaultError> {
        if self.is_passphrase_vault() {
            return Ok(self);
        }
        let mut pinned = Pinned::load(pins, self.location())?;
        let own = self.unlocking_recipients();
        let mut snap = self.cache();
        pinned.admit(membership(&snap.content, &own), self.location())?;
        snap.trust = Some(pinned);
        drop(snap);
        Ok(self)
    }

    /// What the vault shows of its membership now, and what this machine accepted of it:
    /// for `recipients accept`.
    pub fn trust_changes(&self, pins: Pins) -> Result<super::trust::Changes, VaultError> {
        let pinned = Pinned::load(pins, self.location())?;
        let own = self.unlocking_recipients();
        let snap = self.cache();
        Ok(pinned.changes(membership(&snap.content, &own)))
    }

    /// Accepts the vault as it is now, after a person agreed.
    pub fn accept_membership(&self, pins: Pins) -> Result<(), VaultError> {
        let mut pinned = Pinned::load(pins, self.location())?;
        let own = self.unlocking_recipients();
        let snap = self.cache();
        pinned.accept(membership(&snap.content, &own))
    }

    /// Creates a new vault file; refuses to replace an existing one.
    pub fn create(
        path: &Path,
        data: VaultData,
        sealing: Sealing,
        unlock: Unlock,
    ) -> Result<Self, VaultError> {
        Self::create_in(Box::new(FileBackend::new(path)), data, sealing, unlock)
    }

    /// Creates a new vault in `backend`; refuses to replace an existing one.
    pub fn create_in(
        backend: Box<dyn Backend>,
        mut data: VaultData,
        sealing: Sealing,
        unlock: Unlock,
    ) -> Result<Self, VaultError> {
        let (ciphertext, version) = create_in(backend.as_ref(), &mut data, &sealing)?;
        let snapshot = Snapshot::written(version, &ciphertext, data);
        Ok(Self::with_content(backend, unlock, sealing, snapshot))
    }

    /// How long writers wait for another process's lock.
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// The public recipients of the key this store was opened with; empty for a passphrase.
    pub fn unlocking_recipients(&self) -> Vec<String> {
        match &self.unlock {
            Unlock::Identity(file) => file.recipients.clone(),
            Unlock::Passphrase(_) => Vec::new(),
        }
    }

    /// Whether the vault is sealed with a passphrase rather than to recipients.
    pub fn is_passphrase_vault(&self) -> bool {
        matches!(self.cache().sealing, Sealing::Passphrase(_))
    }

    /// Destroys every stored version of the vault but the current one (see
    /// [`Backend::forget_history`]); says what went.
    pub fn forget_history(&self) -> Result<String, VaultError> {
        self.backend.forget_history()
    }

    /// Where the vault is.
    pub fn location(&self) -> &Location {
        self.backend.location()
    }

    /// The current content, reloaded if another process changed the file.
    pub fn snapshot(&self) -> Result<VaultData, VaultError> {
        self.read(VaultData::clone)
    }

    /// Reads the freshest content without copying it.
    pub fn read<T>(&self, f: impl FnOnce(&VaultData) -> T) -> Result<T, VaultError> {
        let mut snap = self.cache();
        self.refresh_snapshot(&mut snap)?;
        self.load_whole(&mut snap)?;
        Ok(f(snap.content.data(self.location())?))
    }

    /// One profile from the freshest content, without cloning the rest.
    pub fn profile(&self, name: &str) -> Result<Option<Profile>, VaultError> {
        let mut snap = self.cache();
        self.refresh_snapshot(&mut snap)?;
        // Under the lease a profile is read for a refresh: only its entry is trusted.
        let key = record_key(snap.content.members_secret().0, name);
        let leased = snap.0.leases.hold_vault_or_entry(&key);
        self.load_one(&mut snap, name, leased)?;
        snap.content.profile(name, self.location())
    }

    /// The profile `name`, or why there is none: for a command that names one.
    pub fn named(&self, name: &str) -> Result<Profile, NoProfile> {
        match self.profile(name)? {
            Some(profile) => Ok(profile),
            None => Err(self.missing(name).into()),
        }
    }

    /// The profile `name` as [`Store::named`], checked against the rules `add` and `edit`
    /// enforce: for a use that sends its secrets (a hand edit or a planted value may break
    /// one).
    pub fn named_for_use(&self, name: &str) -> Result<Profile, NoProfile> {
        let profile = self.named(name)?;
        super::validate::check_stored(&profile)?;
        Ok(profile)
    }

    /// `plaintext` encrypted as the vault is (to its recipients, or its passphrase): for
    /// what this machine keeps of the vault's secrets outside it. In a vault with groups,
    /// to this machine's own keys: a group's token must reach no other reader's.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let sealing = {
            let snap = self.cache();
            sealing_for_recipients(&snap.sealing, &self.read_recipients(&snap))
        };
        crypto::encrypt(plaintext, &sealing)
    }

    /// What [`Store::seal`] encrypted, decrypted with the key that opened the vault.
    pub fn unseal(&self, ciphertext: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, VaultError> {
        crypto::decrypt(ciphertext, &self.unlock, self.location())
    }

    fn read_recipients(&self, snap: &Cache) -> Vec<String> {
        let (operators, groups) = snap.content.divisions();
        if operators.is_empty() && groups.is_empty() {
            snap.content.recipients().to_vec()
        } else {
            self.unlocking_recipients()
        }
    }

    /// The key the records beside the vault know profile `name` by
    /// ([`super::backend::SpendRecord`]): a hash of the members' secret and the name, so a
    /// reader of the record who cannot open the vault learns no name from it.
    pub fn record_key(&self, name: &str) -> String {
        let snap = self.cache();
        record_key(snap.content.members_secret().0, name)
    }

    /// The error for a name no profile has, with the closest one when there is one; the
    /// names are read without parsing the profiles.
    fn missing(&self, name: &str) -> super::ProfileError {
        let mut snap = self.cache();
        if let Err(e) = self.load_whole(&mut snap) {
            tracing::debug!(error = %e, "cannot read every name for the suggestion");
        }
        super::ProfileError::missing(name, snap.content.names())
    }

    /// One profile as this store last read or wrote it, without asking the backend: for a
    /// token handed out while the stored vault cannot be read (never for a refresh or a
    /// save, which need the stored vault).
    pub fn profile_in_memory(&self, name: &str) -> Result<Option<Profile>, VaultError> {
        let mut snap = self.cache();
        snap.content.profile(name, self.location())
    }

    /// The content, only when the file changed since this store last read or wrote it.
    pub fn reload_if_changed(&self) -> Result<Option<VaultData>, VaultError> {
        let mut snap = self.cache();
        let changed = self.refresh_snapshot(&mut snap)?;
        if !changed {
            return Ok(None);
        }
        self.load_whole(&mut snap)?;
        Ok(Some(snap.content.data(self.location())?.clone()))
    }

    /// Writes back the newer tokens kept over an older file, if any; returns their profiles.
    /// Whoever asks returns only once they are written, even when another thread took them
    /// first: one thread writes them back at a time.
    pub fn write_back_kept(&self) -> Result<Vec<String>, VaultError> {
        let until = Instant::now() + self.lock_wait;
        let Some(_turn) = self.shared.take_turn(state::Turn::WriteBack, until) else {
            return Err(VaultError::Locked(
                "the turn to write kept tokens back, which another task of this process keeps"
                    .into(),
            ));
        };
        let kept = std::mem::take(&mut self.cache().kept);
        if kept.is_empty() {
            return Ok(kept);
        }
        let written = if self.arrangement() == Arrangement::Entries {
            // Each entry read again keeps the newer token again: written as it is read.
            let names = kept.iter().map(|name| (name.clone(), |_: &mut Profile| ()));
            let written = self.update_profiles(names).map(|_| ());
            self.cache().kept.retain(|name| !kept.contains(name));
            written
        } else {
            self.update(|_| Ok::<(), std::convert::Infallible>(()))
                .map(|_| ())
        };
        match written {
            Ok(()) => Ok(kept),
            Err(e) => {
                self.cache().kept.extend(kept);
                Err(e)
            }
        }
    }

    /// Takes the cross-process write lease, waiting up to the store's lock wait. Tasks of one
    /// process share it.
    pub fn lease(&self) -> Result<Lease, VaultError> {
        let until = Instant::now() + self.lock_wait;
        let try_once = || {
            Ok(match self.backend.try_lease()? {
                Some(guard) => Tried::Held(guard),
                None => Tried::Busy(self.backend.lease_name()),
            })
        };
        self.take_lease(&Which::Vault, until, try_once, VaultError::Locked)
    }

    /// Applies `change` to the freshest content under the write lock and saves atomically.
    /// When `change` fails nothing is written. When another writer's version is found at the
    /// save (a backend with check-and-set tells), the store reads it and applies `change`
    /// again, a bounded number of times.
    pub fn update<T, E>(
        &self,
        mut change: impl FnMut(&mut VaultData) -> Result<T, E>,
    ) -> Result<Result<T, E>, VaultError> {
        retrying_conflicts(|| self.update_once(&mut change))
    }

    fn update_once<T, E>(
        &self,
        change: &mut impl FnMut(&mut VaultData) -> Result<T, E>,
    ) -> Result<Result<T, E>, VaultError> {
        let _lease = self.lease()?;
        let mut snap = self.cache();
        self.refresh_snapshot(&mut snap)?;
        self.load_whole(&mut snap)?;
        let mut data = snap.content.data(self.location())?.clone();
        let outcome = match change(&mut data) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if snap.entries.is_some() {
            self.commit_whole_entries(&mut snap, data)?;
            return Ok(Ok(outcome));
        }
        if data.is_divided() {
            return Err(sealed::divided_stays_in_entries());
        }
        let sealing = Self::sealing_for(&snap.sealing, &data);
        give_members_secret(&mut data, &sealing);
        let ciphertext = seal(&data, &sealing)?;
        let version = self.commit_or_reread(&mut snap, &ciphertext)?;
        self.trust_own_write(&mut snap.trust, &data);
        snap.read = Snapshot::written(version, &ciphertext, data);
        Ok(Ok(outcome))
    }

    /// Applies each change to the profile it names, under the write lock, and saves atomically;
    /// a change whose profile is gone gets `None`. Only the changed profiles are rendered
    /// again: the worker saves a token at a time, and rendering every profile for each would
    /// cost more than the rest of the save at a few hundred profiles. Nothing is written when
    /// no profile changed, and when the save fails the store keeps what it had. Another
    /// writer's version found at the save is read, and the changes applied to it again.
    pub fn update_profiles<T, F>(
        &self,
        changes: impl IntoIterator<Item = (String, F)>,
    ) -> Result<Vec<Option<T>>, VaultError>
    where
        F: FnMut(&mut Profile) -> T,
    {
        let mut changes: Vec<(String, F)> = changes.into_iter().collect();
        retrying_conflicts(|| self.update_profiles_once(&mut changes))
    }

    fn update_profiles_once<T, F>(
        &self,
        changes: &mut [(String, F)],
    ) -> Result<Vec<Option<T>>, VaultError>
    where
        F: FnMut(&mut Profile) -> T,
    {
        let names: Vec<&str> = changes.iter().map(|(name, _)| name.as_str()).collect();
        let leases = self.leases_for(&names)?;
        let mut snap = self.cache();
        self.refresh_snapshot(&mut snap)?;
        // Moved in or out of entries since it was read: the other kind of lease is wanted.
        let under_vaults_lease = leases.iter().any(Lease::is_vaults);
        if snap.entries.is_some() == under_vaults_lease {
            return Err(VaultError::Conflict(self.location().clone()));
        }
        if snap.entries.is_some() {
            return self.update_entries(&mut snap, changes);
        }
        match self.update_located(&mut snap, changes)? {
            Some(outcomes) => Ok(outcomes),
            None => self.update_parsed(&mut snap, changes),
        }
    }

    /// [`Store::update_profiles`] once, on content parsed whole (parsed here when it was not).
    fn update_parsed<T, F>(
        &self,
        snap: &mut Cache,
        changes: &mut [(String, F)],
    ) -> Result<Vec<Option<T>>, VaultError>
    where
        F: FnMut(&mut Profile) -> T,
    {
        let expected = snap.version;
        let base = snap.sealing.clone();
        let whole = snap.read.content.parsed_whole(self.backend.location())?;
        let (edited, outcomes) = whole.edited(changes);
        if edited.is_empty() {
            return Ok(outcomes);
        }
        let parts = edited
            .iter()
            .map(|(&at, profile)| Ok((at, Text::profile(profile)?)))
            .collect::<Result<Vec<_>, VaultError>>()?;
        if whole.data.is_divided() {
            return Err(sealed::divided_stays_in_entries());
        }
        let sealing = Self::sealing_for(&base, &whole.data);
        let secret_given = whole.give_members_secret(&sealing);
        let text = whole.text()?;
        let ciphertext = crypto::encrypt(text.join(&parts).as_bytes(), &sealing)?;
        let version = match self.backend.commit(&ciphertext, expected) {
            Err(conflict @ VaultError::Conflict(_)) => {
                // Another writer's version is there: read it, so the next try starts from it.
                self.reread_after_conflict(snap)?;
                return Err(conflict);
            }
            committed => committed?,
        };
        for (at, part) in parts {
            text.replace(at, part);
        }
        whole.put_edited(edited);
        if secret_given {
            self.trust_own_write(&mut snap.trust, &whole.data);
        }
        snap.record_rewrite(version, &ciphertext);
        Ok(outcomes)
    }

    /// Records the membership this process just wrote as trusted, in what this machine
    /// accepted of the vault (`trust`, the cache's).
    fn trust_own_write(&self, trust: &mut Option<Pinned>, data: &VaultData) {
        if let Some(trust) = trust {
            let own = self.unlocking_recipients();
            trust.record_own_write(membership_of(data, &own));
        }
    }

    /// Commits `ciphertext` over the version `snap` read. On a conflict nothing is
    /// overwritten: the store reads the other writer's version, so that the caller's next try
    /// applies its change to it.
    fn commit_or_reread(
        &self,
        snap: &mut Cache,
        ciphertext: &[u8],
    ) -> Result<Option<super::backend::Version>, VaultError> {
        let committed = self.backend.commit(ciphertext, snap.version);
        if matches!(committed, Err(VaultError::Conflict(_))) {
            self.reread_after_conflict(snap)?;
        }
        committed
    }

    /// How to seal `data` whole, or its head: the recipient lists inside the vault are the
    /// truth, as a change may add or remove some.
    fn sealing_for(base: &Sealing, data: &VaultData) -> Sealing {
        sealing_for_recipients(base, &data.all_readers())
    }

    /// How to seal each part of `data` laid out as entries.
    fn seals_for(base: &Sealing, data: &VaultData) -> sealed::Seals {
        sealed::Seals::of(data, |list| sealing_for_recipients(base, list))
    }

    /// The store's one lock, held for the cache.
    fn cache(&self) -> state::CacheGuard<'_> {
        state::CacheGuard(self.shared.lock())
    }

    /// How the vault read is sealed, for a save made without the cache held.
    fn sealing(&self) -> Sealing {
        self.cache().sealing.clone()
    }
}

/// How to seal content whose head lists `recipients`, in a vault read as sealed by `base`:
/// the recipient lists inside the vault are the truth, a passphrase stays a passphrase.
fn sealing_for_recipients(base: &Sealing, recipients: &[String]) -> Sealing {
    match base {
        Sealing::Recipients(_) if !recipients.is_empty() => {
            Sealing::Recipients(recipients.to_vec())
        }
        sealing => sealing.clone(),
    }
}

#[cfg(test)]
mod tests;
