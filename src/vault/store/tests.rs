//! The store against real files: saves, backups, locks, changes by other handles.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use age::secrecy::SecretString;

use super::*;
use crate::vault::backend::{Backend, LeaseGuard, Version};
use crate::vault::crypto::IdentityFile;
use crate::vault::file::backup_path;

fn new_store(dir: &Path) -> (Store, PathBuf) {
    let key = dir.join("key.txt");
    let id = IdentityFile::generate(&key).unwrap();
    let recipients = id.recipients.clone();
    let path = dir.join("v/vault.age");
    let store = Store::create(
        &path,
        VaultData::default(),
        Sealing::Recipients(recipients),
        Unlock::Identity(id),
    )
    .unwrap();
    (store, key)
}

/// Another handle on the vault of `store`, as another process would open it.
fn second_handle(store: &Store, key: &Path) -> Store {
    Store::open(
        store.location().file().unwrap(),
        Unlock::Identity(IdentityFile::load(key, crate::vault::crypto::NoPrompt).unwrap()),
    )
    .unwrap()
}

#[test]
fn saves_are_private_and_keep_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    let before = fs::read(store.location().file().unwrap()).unwrap();
    store
        .update(|d| {
            d.recipients.push(d.recipients[0].clone());
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
    let mode = fs::metadata(store.location().file().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = fs::metadata(store.location().file().unwrap().parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    assert_eq!(
        fs::read(backup_path(store.location().file().unwrap())).unwrap(),
        before
    );
    let leftovers: Vec<_> = fs::read_dir(store.location().file().unwrap().parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn a_backup_hard_linked_to_the_vault_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    let backup = backup_path(store.location().file().unwrap());
    fs::hard_link(store.location().file().unwrap(), &backup).unwrap();
    let before = fs::read(store.location().file().unwrap()).unwrap();
    store
        .update(|d| {
            d.recipients.push(d.recipients[0].clone());
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
    let names: Vec<String> = fs::read_dir(store.location().file().unwrap().parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| std::path::Path::new(n)
            .extension()
            .is_some_and(|e| e == "tmp")),
        "temp file left: {names:?}"
    );
    assert_eq!(
        fs::read(&backup).unwrap(),
        before,
        "backup is the old vault"
    );
    assert_ne!(fs::read(store.location().file().unwrap()).unwrap(), before);
}

#[test]
fn one_profile_reads_follow_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = new_store(dir.path());
    assert!(store.profile("a").unwrap().is_none());
    store
        .update(|d| d.insert(named("a")).and_then(|()| d.insert(named("b"))))
        .unwrap()
        .unwrap();
    assert_eq!(store.profile("b").unwrap().unwrap().name, "b");
    store
        .update(|d| d.remove("a").map(|_| ()))
        .unwrap()
        .unwrap();
    assert!(store.profile("a").unwrap().is_none());
    assert_eq!(
        store.profile("b").unwrap().unwrap().name,
        "b",
        "b moved to 0"
    );
    // A change made by another process is seen too.
    let other = second_handle(&store, &key);
    other.update(|d| d.insert(named("c"))).unwrap().unwrap();
    assert_eq!(store.profile("c").unwrap().unwrap().name, "c");
}

#[test]
fn failed_change_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    let before = fs::read(store.location().file().unwrap()).unwrap();
    let outcome = store
        .update(|d| {
            d.recipients.clear();
            Err::<(), _>("nope")
        })
        .unwrap();
    assert_eq!(outcome, Err("nope"));
    assert_eq!(fs::read(store.location().file().unwrap()).unwrap(), before);
    assert!(!backup_path(store.location().file().unwrap()).exists());
}

#[test]
fn sees_changes_made_by_another_handle() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = new_store(dir.path());
    let other = second_handle(&store, &key);
    other
        .update(|d| {
            d.recipients.push("age1extra".into());
            Ok::<_, ()>(())
        })
        .ok();
    // The bad recipient makes sealing fail: nothing changed on disk.
    assert_eq!(store.snapshot().unwrap().recipients.len(), 1);
    other
        .update(|d| {
            let first = d.recipients[0].clone();
            d.recipients.push(first);
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
    assert_eq!(store.snapshot().unwrap().recipients.len(), 2);
}

#[test]
fn reload_reports_only_changes_made_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = new_store(dir.path());
    assert!(store.reload_if_changed().unwrap().is_none());
    store
        .update(|d| {
            d.recipients.push(d.recipients[0].clone());
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
    assert!(
        store.reload_if_changed().unwrap().is_none(),
        "own saves are known"
    );
    let other = second_handle(&store, &key);
    other
        .update(|d| {
            d.recipients.pop();
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        store.reload_if_changed().unwrap().unwrap().recipients.len(),
        1
    );
    assert!(store.reload_if_changed().unwrap().is_none());
}

#[test]
fn the_same_encryption_under_a_new_inode_is_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = new_store(dir.path());
    let copy = dir.path().join("copy");
    fs::copy(store.location().file().unwrap(), &copy).unwrap();
    fs::rename(&copy, store.location().file().unwrap()).unwrap();
    assert!(store.reload_if_changed().unwrap().is_none(), "same stamp");
    // The same content encrypted again is another file: it is read.
    let other = second_handle(&store, &key);
    other.update(|_| Ok::<_, ()>(())).unwrap().unwrap();
    assert!(store.reload_if_changed().unwrap().is_some());
    assert!(
        read_head(store.location().file().unwrap())
            .unwrap()
            .starts_with(b"age-encryption.org/v1")
    );
}

#[test]
fn lock_is_shared_in_process_and_exclusive_across_handles() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = new_store(dir.path());
    let first = store.lease().unwrap();
    let second = store.lease().unwrap();
    let other = second_handle(&store, &key).with_lock_wait(Duration::from_millis(100));
    assert!(matches!(other.lease(), Err(VaultError::Locked(_))));
    drop(first);
    assert!(matches!(other.lease(), Err(VaultError::Locked(_))));
    drop(second);
    assert!(other.lease().is_ok());
}

#[test]
fn future_versions_and_bad_content_are_refused() {
    use crate::vault::parse::parse_vault;
    let p = &Location::File("v.age".into());
    assert!(matches!(
        parse_vault(b"version = 2\n", p),
        Err(VaultError::FutureVersion { found: 2, .. })
    ));
    assert!(matches!(
        parse_vault(b"profile = 3\n", p),
        Err(VaultError::BadContent { .. })
    ));
    assert!(matches!(
        parse_vault(b"version = 1\n[[profile]]\nname = 5\n", p),
        Err(VaultError::BadContent { .. })
    ));
    assert!(parse_vault(b"version = 1\n", p).is_ok());
}

fn named(name: &str) -> Profile {
    use crate::vault::{Endpoints, Provider};
    Profile::new(
        name.into(),
        Provider::Factorial,
        Endpoints::at("https://api.factorialhr.com"),
        "c".into(),
        SecretString::from("s"),
        "urn:ietf:wg:oauth:2.0:oob".into(),
    )
}

/// A store holding profiles `a`, `b` and `c`, and a second handle on its file.
fn three_profiles(dir: &Path) -> (Store, Store) {
    let (store, key) = new_store(dir);
    store
        .update(|d| {
            ["a", "b", "c"]
                .into_iter()
                .try_for_each(|n| d.insert(named(n)))
        })
        .unwrap()
        .unwrap();
    let other = second_handle(&store, &key);
    (store, other)
}

type Edit = Box<dyn FnMut(&mut Profile) -> String>;

fn edit(mut f: impl FnMut(&mut Profile) + 'static) -> Edit {
    Box::new(move |p: &mut Profile| {
        f(p);
        p.notes.clone()
    })
}

/// The file decrypted, as text.
fn plaintext(store: &Store) -> String {
    let bytes = fs::read(store.location().file().unwrap()).unwrap();
    let text = crypto::decrypt(&bytes, &store.unlock, store.location()).unwrap();
    String::from_utf8(text.to_vec()).unwrap()
}

#[test]
fn profile_changes_save_the_same_text_as_a_whole_save() {
    let dir = tempfile::tempdir().unwrap();
    let (store, other) = three_profiles(dir.path());
    let outcomes = store
        .update_profiles([
            ("b".to_string(), edit(|p| p.notes = "one".into())),
            ("gone".to_string(), edit(|_| {})),
            ("b".to_string(), edit(|p| p.notes.push_str(" two"))),
            ("c".to_string(), edit(|p| p.name = "z".into())),
        ])
        .unwrap();
    assert_eq!(
        outcomes,
        [
            Some("one".into()),
            None,
            Some("one two".into()),
            Some(String::new())
        ]
    );
    let held = store.snapshot().unwrap();
    assert_eq!(plaintext(&store), toml::to_string(&held).unwrap());
    // The rename reached the name index.
    assert!(store.profile("c").unwrap().is_none());
    assert_eq!(store.profile("z").unwrap().unwrap().name, "z");
    // Saved for every other reader too.
    assert_eq!(other.profile("b").unwrap().unwrap().notes, "one two");
    assert_eq!(other.snapshot().unwrap().profiles.len(), 3);
}

#[test]
fn profile_changes_to_no_profile_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = three_profiles(dir.path());
    let before = fs::read(store.location().file().unwrap()).unwrap();
    let outcomes = store
        .update_profiles([("gone".to_string(), edit(|_| {}))])
        .unwrap();
    assert_eq!(outcomes, [None]);
    assert_eq!(fs::read(store.location().file().unwrap()).unwrap(), before);
}

#[test]
fn profile_changes_keep_what_another_handle_saved_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let (store, other) = three_profiles(dir.path());
    store
        .update_profiles([("a".to_string(), edit(|p| p.notes = "mine".into()))])
        .unwrap();
    other
        .update_profiles([("b".to_string(), edit(|p| p.notes = "theirs".into()))])
        .unwrap();
    store
        .update_profiles([("a".to_string(), edit(|p| p.notes.push_str(" again")))])
        .unwrap();
    let data = other.snapshot().unwrap();
    let notes: Vec<&str> = data.profiles.iter().map(|p| p.notes.as_str()).collect();
    assert_eq!(notes, ["mine again", "theirs", ""]);
    assert_eq!(plaintext(&other), toml::to_string(&data).unwrap());
}

#[test]
fn an_older_file_put_in_place_never_takes_back_newer_tokens() {
    use crate::vault::Token;
    use age::secrecy::ExposeSecret;
    let dir = tempfile::tempdir().unwrap();
    let (store, other) = three_profiles(dir.path());
    let token = |secret: &str, age: i64| Token {
        access_token: SecretString::from(secret.to_string()),
        refresh_token: Some(SecretString::from(format!("r-{secret}"))),
        token_type: "Bearer".into(),
        scope: None,
        obtained_at: chrono::Utc::now() - chrono::Duration::seconds(age),
        expires_at: None,
        refresh_expires_at: None,
    };
    let give = |store: &Store, t: Token| {
        store
            .update_profiles([("a".to_string(), move |p: &mut Profile| {
                p.token = Some(t.clone());
            })])
            .unwrap();
    };
    give(&store, token("old", 60));
    let backup = dir.path().join("backup.age");
    fs::copy(store.location().file().unwrap(), &backup).unwrap();
    give(&store, token("new", 1));
    // The backup restored over the live vault, as cp or git would: a new inode.
    let staged = dir.path().join("v/staged");
    fs::copy(&backup, &staged).unwrap();
    fs::rename(&staged, store.location().file().unwrap()).unwrap();
    let seen = store.profile("a").unwrap().unwrap();
    assert_eq!(seen.token.unwrap().access_token.expose_secret(), "new");
    assert_eq!(store.write_back_kept().unwrap(), vec!["a".to_string()]);
    assert!(store.write_back_kept().unwrap().is_empty());
    let on_disk = other.profile("a").unwrap().unwrap();
    assert_eq!(on_disk.token.unwrap().access_token.expose_secret(), "new");
}

/// The ciphertext a [`Memory`] backend holds, and its revision.
type Revision = Option<(Vec<u8>, u64)>;

/// A vault kept in memory, numbering its versions: the seam for backends other than a file.
#[derive(Clone, Default)]
struct Memory {
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

struct MemoryLease(std::sync::Arc<Mutex<bool>>);

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

    fn open(&self) -> Result<super::super::backend::Stored, VaultError> {
        let stored = lock_ignoring_poison(&self.stored).clone();
        let (bytes, n) = stored.ok_or(VaultError::NotFound(self.location().clone()))?;
        Ok(super::super::backend::Stored {
            stamp: super::super::backend::Stamp::of(&bytes),
            version: Some(Version::Revision(n)),
            reader: Box::new(std::io::Cursor::new(bytes)),
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
        Ok(Some(Version::Revision(next)))
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

/// A memory vault, created, with two stores on it, and how it is sealed.
fn memory_vault(dir: &Path) -> (Memory, Store, Store, Sealing) {
    let key = dir.join("key.txt");
    let id = IdentityFile::generate(&key).unwrap();
    let memory = Memory::default();
    let sealing = Sealing::Recipients(id.recipients.clone());
    create_in(&memory, &mut VaultData::default(), &sealing).unwrap();
    let unlock =
        || Unlock::Identity(IdentityFile::load(&key, crate::vault::crypto::NoPrompt).unwrap());
    let one = Store::open_in(Box::new(memory.clone()), unlock()).unwrap();
    let two = Store::open_in(Box::new(memory.clone()), unlock()).unwrap();
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
    let names = |store: &Store| -> Vec<String> {
        let data = store.snapshot().unwrap();
        data.profiles.into_iter().map(|p| p.name).collect()
    };
    assert_eq!(names(&two), ["a", "b", "theirs", "ours"]);
    // The same for a save of single profiles.
    let mut again = one.snapshot().unwrap();
    again.insert(named("later")).unwrap();
    *lock_ignoring_poison(&memory.sneak) = Some(seal(&again, &sealing).unwrap());
    let edit = |p: &mut Profile| p.notes = "edited".into();
    one.update_profiles([("ours".to_string(), edit)]).unwrap();
    assert_eq!(names(&two), ["a", "b", "theirs", "ours", "later"]);
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
    let key = dir.path().join("key.txt");
    let id = IdentityFile::generate(&key).unwrap();
    let memory = Memory {
        fresh_for: Duration::from_secs(60),
        ..Memory::default()
    };
    let sealing = Sealing::Recipients(id.recipients.clone());
    create_in(&memory, &mut VaultData::default(), &sealing).unwrap();
    let unlock =
        || Unlock::Identity(IdentityFile::load(&key, crate::vault::crypto::NoPrompt).unwrap());
    let one = Store::open_in(Box::new(memory.clone()), unlock()).unwrap();
    let two = Store::open_in(Box::new(memory.clone()), unlock()).unwrap();
    let probes = || memory.probes.load(std::sync::atomic::Ordering::Relaxed);
    let before = probes();
    // Reads right after the open ask nothing more.
    assert!(one.profile("a").unwrap().is_none());
    one.snapshot().unwrap();
    assert_eq!(probes(), before);
    // Another writer saves; a write here takes the lease, so it reads that save first.
    two.update(|d| d.insert(named("theirs"))).unwrap().unwrap();
    one.update(|d| d.insert(named("ours"))).unwrap().unwrap();
    let names: Vec<String> = two
        .snapshot()
        .unwrap()
        .profiles
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["theirs"], "two still counts its read as current");
    let lease = two.lease().unwrap();
    let names: Vec<String> = two
        .snapshot()
        .unwrap()
        .profiles
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        names,
        ["theirs", "ours"],
        "under the lease, reads ask again"
    );
    drop(lease);
}
