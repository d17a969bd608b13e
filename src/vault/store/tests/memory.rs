//! The store over a backend other than a file: an in-memory one that numbers its versions,
//! can be told to conflict, and counts the probes it answers.

use std::sync::Mutex;
use std::time::Duration;

use super::super::*;
use super::{lock_ignoring_poison, named};
use crate::vault::backend::{Backend, LeaseGuard, Version};
use crate::vault::crypto::IdentityFile;

/// Entries by id, each with its version.
type Shelf = std::collections::BTreeMap<String, (Vec<u8>, u64)>;

/// Status shards by number, each with its version.
type Shards = std::collections::BTreeMap<u32, (Vec<u8>, u64)>;

/// The ciphertext a [`Memory`] backend holds, and its revision.
type Revision = Option<(Vec<u8>, u64)>;

/// A vault kept in memory, numbering its versions: the seam for backends other than a file.
/// It can keep a vault as entries too: then what `stored` holds is the head.
#[derive(Clone, Default)]
pub(super) struct Memory {
    /// The descriptor's log, when the vault is laid out as entries.
    pub(super) changes: std::sync::Arc<Mutex<Option<crate::vault::backend::Changes>>>,
    /// The entries by id, each with its version.
    pub(super) shelf: std::sync::Arc<Mutex<Shelf>>,
    /// The status shards by number, each with its version.
    pub(super) shards: std::sync::Arc<Mutex<Shards>>,
    /// The entries' locks held, by id.
    pub(super) locks: std::sync::Arc<Mutex<std::collections::BTreeSet<String>>>,
    /// Whether writes of status shards are refused (a policy without the path, say).
    pub(super) refuse_shards: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Saves of the descriptor still to precede with another writer's save of it (the same
    /// head, its log one change longer), as a machine saving another profile would.
    pub(super) interleave: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// How many entries were read.
    pub(super) entry_reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stored: std::sync::Arc<Mutex<Revision>>,
    /// Another writer's ciphertext, stored just before the next commit looks.
    sneak: std::sync::Arc<Mutex<Option<Vec<u8>>>>,
    /// Commits still to refuse as if another writer always came first.
    storm: std::sync::Arc<Mutex<u32>>,
    leased: std::sync::Arc<Mutex<bool>>,
    /// How long reads may count as current ([`Backend::fresh_for`]).
    fresh_for: Duration,
    /// How many times the version was asked for.
    probes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// The id of the entry another writer changes ([`Memory::interleave`]).
pub(super) const OTHERS_ENTRY: &str = "ffffffffffffffffffffffffffffffff";

struct MemoryLease(std::sync::Arc<Mutex<bool>>);

/// The lock of entry `.1` in the set `.0`, released on drop.
struct MemoryLock(
    std::sync::Arc<Mutex<std::collections::BTreeSet<String>>>,
    String,
);

impl crate::vault::backend::HeldLease for MemoryLock {}

impl Drop for MemoryLock {
    fn drop(&mut self) {
        lock_ignoring_poison(&self.0).remove(&self.1);
    }
}

impl crate::vault::backend::HeldLease for MemoryLease {}

impl Drop for MemoryLease {
    fn drop(&mut self) {
        *lock_ignoring_poison(&self.0) = false;
    }
}

impl Backend for Memory {
    fn location(&self) -> &Location {
        static MEMORY: std::sync::LazyLock<Location> =
            std::sync::LazyLock::new(|| Location::File("memory-vault".into()));
        &MEMORY
    }

    fn fresh_for(&self) -> Duration {
        self.fresh_for
    }

    fn probe(&self) -> Option<Version> {
        self.probes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock_ignoring_poison(&self.stored)
            .as_ref()
            .map(|(_, n)| Version::Revision(*n))
    }

    fn open(&self) -> Result<crate::vault::backend::Ciphertext, VaultError> {
        let stored = lock_ignoring_poison(&self.stored).clone();
        let (bytes, n) = stored.ok_or(VaultError::NotFound(self.location().clone()))?;
        Ok(crate::vault::backend::Ciphertext {
            stamp: crate::vault::backend::Stamp::of(&bytes),
            version: Some(Version::Revision(n)),
            source: crate::vault::backend::Source::Reader(Box::new(std::io::Cursor::new(bytes))),
            layout: match lock_ignoring_poison(&self.changes).clone() {
                Some(changes) => crate::vault::backend::Layout::Entries(changes),
                None => crate::vault::backend::Layout::Single,
            },
        })
    }

    fn commit(
        &self,
        ciphertext: &[u8],
        expected: Option<Version>,
    ) -> Result<Option<Version>, VaultError> {
        let mut stored = lock_ignoring_poison(&self.stored);
        let mut storm = lock_ignoring_poison(&self.storm);
        if *storm > 0 {
            *storm -= 1;
            return Err(VaultError::Conflict(self.location().clone()));
        }
        if let Some(other) = lock_ignoring_poison(&self.sneak).take() {
            let next = stored.as_ref().map_or(1, |(_, n)| n + 1);
            *stored = Some((other, next));
        }
        let current = stored.as_ref().map(|(_, n)| Version::Revision(*n));
        if current != expected {
            return Err(VaultError::Conflict(self.location().clone()));
        }
        let next = stored.as_ref().map_or(1, |(_, n)| n + 1);
        *stored = Some((ciphertext.to_vec(), next));
        *lock_ignoring_poison(&self.changes) = None;
        Ok(Some(Version::Revision(next)))
    }

    fn entries(&self) -> Option<&dyn crate::vault::backend::Entries> {
        Some(self)
    }

    fn create(&self, ciphertext: &[u8]) -> Result<Option<Version>, VaultError> {
        let mut stored = lock_ignoring_poison(&self.stored);
        if stored.is_some() {
            return Err(VaultError::AlreadyExists(self.location().clone()));
        }
        *stored = Some((ciphertext.to_vec(), 1));
        Ok(Some(Version::Revision(1)))
    }

    fn try_lease(&self) -> Result<Option<LeaseGuard>, VaultError> {
        let mut leased = lock_ignoring_poison(&self.leased);
        if *leased {
            return Ok(None);
        }
        *leased = true;
        Ok(Some(Box::new(MemoryLease(self.leased.clone()))))
    }

    fn lease_name(&self) -> String {
        "memory://vault.lock is locked".into()
    }

    fn has_previous(&self) -> bool {
        false
    }

    fn forget_history(&self) -> Result<String, VaultError> {
        Ok("it keeps no history".into())
    }
}

impl crate::vault::backend::Entries for Memory {
    fn list(&self) -> Result<Vec<String>, VaultError> {
        Ok(lock_ignoring_poison(&self.shelf).keys().cloned().collect())
    }

    fn read(&self, id: &str) -> Result<Option<crate::vault::backend::EntryRead>, VaultError> {
        self.entry_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(lock_ignoring_poison(&self.shelf)
            .get(id)
            .map(|(ciphertext, version)| crate::vault::backend::EntryRead {
                ciphertext: ciphertext.clone(),
                version: *version,
            }))
    }

    fn write(&self, id: &str, ciphertext: &[u8], expected: Option<u64>) -> Result<u64, VaultError> {
        let mut entries = lock_ignoring_poison(&self.shelf);
        let current = entries.get(id).map_or(0, |(_, v)| *v);
        if expected.is_some_and(|e| e != current) {
            return Err(VaultError::Conflict(self.location().clone()));
        }
        entries.insert(id.to_string(), (ciphertext.to_vec(), current + 1));
        Ok(current + 1)
    }

    fn remove(&self, id: &str) -> Result<(), VaultError> {
        lock_ignoring_poison(&self.shelf).remove(id);
        Ok(())
    }

    fn read_shards(
        &self,
        numbers: &[u32],
    ) -> Result<Vec<Option<crate::vault::backend::EntryRead>>, VaultError> {
        let shards = lock_ignoring_poison(&self.shards);
        Ok(numbers
            .iter()
            .map(|n| {
                shards
                    .get(n)
                    .map(|(ciphertext, version)| crate::vault::backend::EntryRead {
                        ciphertext: ciphertext.clone(),
                        version: *version,
                    })
            })
            .collect())
    }

    fn write_shards(
        &self,
        written: &[crate::vault::backend::ShardWrite],
    ) -> Vec<Result<u64, VaultError>> {
        let refused = self
            .refuse_shards
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut shards = lock_ignoring_poison(&self.shards);
        written
            .iter()
            .map(|w| {
                if refused {
                    return Err(VaultError::Remote("shards refused".into()));
                }
                let current = shards.get(&w.number).map_or(0, |(_, v)| *v);
                if w.expected.is_some_and(|e| e != current) {
                    return Err(VaultError::Conflict(self.location().clone()));
                }
                shards.insert(w.number, (w.ciphertext.clone(), current + 1));
                Ok(current + 1)
            })
            .collect()
    }

    fn try_lock(&self, id: &str) -> Result<crate::vault::backend::Tried, VaultError> {
        use crate::vault::backend::Tried;
        if !lock_ignoring_poison(&self.locks).insert(id.to_string()) {
            return Ok(Tried::Busy(format!("memory lock {id}")));
        }
        Ok(Tried::Held(Box::new(MemoryLock(
            self.locks.clone(),
            id.to_string(),
        ))))
    }

    fn lock_holders(&self) -> Result<Vec<String>, VaultError> {
        Ok(lock_ignoring_poison(&self.locks).iter().cloned().collect())
    }

    fn lease_holder(&self) -> Result<Option<String>, VaultError> {
        Ok(lock_ignoring_poison(&self.leased).then(|| "memory lease".to_string()))
    }

    fn remove_shard(&self, number: u32) -> Result<(), VaultError> {
        lock_ignoring_poison(&self.shards).remove(&number);
        Ok(())
    }

    fn commit_head(
        &self,
        head: &[u8],
        changes: &crate::vault::backend::Changes,
        expected: Option<Version>,
    ) -> Result<Option<Version>, VaultError> {
        let others = self
            .interleave
            .fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |n| n.checked_sub(1),
            )
            .is_ok();
        let log = lock_ignoring_poison(&self.changes).clone();
        if others && let Some(theirs) = log {
            let current = self.probe();
            self.commit(head, current)?;
            let theirs = theirs.recording([OTHERS_ENTRY]);
            *lock_ignoring_poison(&self.changes) = Some(theirs);
        }
        let version = self.commit(head, expected)?;
        *lock_ignoring_poison(&self.changes) = Some(changes.clone());
        Ok(version)
    }
}

#[test]
fn a_backend_other_than_a_file_serves_the_store_through_the_seam() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.txt");
    let id = IdentityFile::generate(&key).unwrap();
    let memory = Memory::default();
    let mut data = VaultData::default();
    let sealing = Sealing::Recipients(id.recipients.clone());
    let (_, version) = create_in(&memory, &mut data, &sealing).unwrap();
    assert_eq!(version, Some(Version::Revision(1)));
    assert!(matches!(
        create_in(&memory, &mut VaultData::default(), &sealing),
        Err(VaultError::AlreadyExists(_))
    ));
    let unlock =
        || Unlock::Identity(IdentityFile::load(&key, crate::vault::crypto::NoPrompt).unwrap());
    let one = Store::open_in(Box::new(memory.clone()), unlock()).unwrap();
    let two = Store::open_in(Box::new(memory.clone()), unlock())
        .unwrap()
        .with_lock_wait(Duration::from_millis(100));
    one.update(|d| d.insert(named("a"))).unwrap().unwrap();
    // The other handle sees the new revision, and its own change lands on top of it.
    assert!(two.profile("a").unwrap().is_some());
    two.update(|d| d.insert(named("b"))).unwrap().unwrap();
    assert_eq!(memory.probe(), Some(Version::Revision(3)));
    assert_eq!(one.snapshot().unwrap().profiles.len(), 2);
    // The lease excludes the other handle while it is held.
    let held = one.lease().unwrap();
    assert!(matches!(two.lease(), Err(VaultError::Locked(_))));
    drop(held);
    assert!(two.lease().is_ok());
}

/// A new vault in `memory`, sealed to a new key in `dir`: two stores on it, and the sealing.
pub(super) fn stores_on(dir: &Path, memory: &Memory) -> (Store, Store, Sealing) {
    let key = dir.join("key.txt");
    let id = IdentityFile::generate(&key).unwrap();
    let sealing = Sealing::Recipients(id.recipients.clone());
    create_in(memory, &mut VaultData::default(), &sealing).unwrap();
    let unlock =
        || Unlock::Identity(IdentityFile::load(&key, crate::vault::crypto::NoPrompt).unwrap());
    let one = Store::open_in(Box::new(memory.clone()), unlock()).unwrap();
    let two = Store::open_in(Box::new(memory.clone()), unlock()).unwrap();
    (one, two, sealing)
}

/// A memory vault holding profiles `a` and `b`, with two stores on it, and how it is sealed.
fn memory_vault(dir: &Path) -> (Memory, Store, Store, Sealing) {
    let memory = Memory::default();
    let (one, two, sealing) = stores_on(dir, &memory);
    one.update(|d| ["a", "b"].into_iter().try_for_each(|n| d.insert(named(n))))
        .unwrap()
        .unwrap();
    (memory, one, two, sealing)
}

#[test]
fn a_conflicting_commit_overwrites_nothing_and_the_change_lands_on_top() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, one, two, sealing) = memory_vault(dir.path());
    // Another writer saves between this store's read and its commit: nothing is
    // overwritten; the store reads that version and applies the change to it.
    let mut theirs = one.snapshot().unwrap();
    theirs.insert(named("theirs")).unwrap();
    *lock_ignoring_poison(&memory.sneak) = Some(seal(&theirs, &sealing).unwrap());
    one.update(|d| d.insert(named("ours"))).unwrap().unwrap();
    assert_eq!(profile_names(&two), ["a", "b", "theirs", "ours"]);
    // The same for a save of single profiles.
    let mut again = one.snapshot().unwrap();
    again.insert(named("later")).unwrap();
    *lock_ignoring_poison(&memory.sneak) = Some(seal(&again, &sealing).unwrap());
    let edit = |p: &mut Profile| p.notes = "edited".into();
    one.update_profiles([("ours".to_string(), edit)]).unwrap();
    assert_eq!(profile_names(&two), ["a", "b", "theirs", "ours", "later"]);
    assert_eq!(two.profile("ours").unwrap().unwrap().notes, "edited");
    // A commit over a version that is no longer the stored one is refused, not written.
    assert!(matches!(
        memory.commit(b"x", Some(Version::Revision(1))),
        Err(VaultError::Conflict(_))
    ));
}

#[test]
fn a_storm_of_conflicts_ends_in_an_error_after_bounded_tries_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, one, two, _) = memory_vault(dir.path());
    let before = memory.probe();
    *lock_ignoring_poison(&memory.storm) = 100;
    let outcome = one.update(|d| d.insert(named("never")));
    assert!(
        matches!(outcome, Err(VaultError::Conflict(_))),
        "{outcome:?}"
    );
    assert_eq!(
        100 - *lock_ignoring_poison(&memory.storm),
        super::CONFLICT_TRIES
    );
    assert_eq!(memory.probe(), before, "nothing written");
    assert!(two.profile("never").unwrap().is_none());
}

#[test]
fn a_backend_asked_by_round_trip_is_asked_once_a_moment_for_reads_and_always_under_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory {
        fresh_for: Duration::from_secs(60),
        ..Memory::default()
    };
    let (one, two, _) = stores_on(dir.path(), &memory);
    let probes = || memory.probes.load(std::sync::atomic::Ordering::Relaxed);
    let before = probes();
    // Reads right after the open ask nothing more.
    assert!(one.profile("a").unwrap().is_none());
    one.snapshot().unwrap();
    assert_eq!(probes(), before);
    // Another writer saves; a write here takes the lease, so it reads that save first.
    two.update(|d| d.insert(named("theirs"))).unwrap().unwrap();
    one.update(|d| d.insert(named("ours"))).unwrap().unwrap();
    let names = profile_names(&two);
    assert_eq!(names, ["theirs"], "two still counts its read as current");
    let lease = two.lease().unwrap();
    let names = profile_names(&two);
    assert_eq!(
        names,
        ["theirs", "ours"],
        "under the lease, reads ask again"
    );
    drop(lease);
}

/// The names of the profiles `store` reads now.
pub(super) fn profile_names(store: &Store) -> Vec<String> {
    let data = store.snapshot().unwrap();
    data.profiles.into_iter().map(|p| p.name).collect()
}
