//! The store against real files: saves, backups, locks, changes by other handles.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use age::secrecy::SecretString;

use super::*;
use crate::vault::crypto::IdentityFile;
use crate::vault::disk::backup_path;

fn lock_ignoring_poison<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

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

/// The file `store` keeps its vault in.
fn vault_file(store: &Store) -> &Path {
    store.location().file().unwrap()
}

/// A save that changes the content (the first recipient listed twice).
fn save_again(store: &Store) {
    store
        .update(|d| {
            d.recipients.push(d.recipients[0].clone());
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
}

/// Another handle on the vault of `store`, as another process would open it.
fn second_handle(store: &Store, key: &Path) -> Store {
    Store::open(
        vault_file(store),
        Unlock::Identity(IdentityFile::load(key, crate::vault::crypto::NoPrompt).unwrap()),
    )
    .unwrap()
}

#[test]
fn saves_are_private_and_keep_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    let before = fs::read(vault_file(&store)).unwrap();
    save_again(&store);
    let mode = fs::metadata(vault_file(&store))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = fs::metadata(vault_file(&store).parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    assert_eq!(fs::read(backup_path(vault_file(&store))).unwrap(), before);
    let leftovers: Vec<_> = fs::read_dir(vault_file(&store).parent().unwrap())
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
    let backup = backup_path(vault_file(&store));
    fs::hard_link(vault_file(&store), &backup).unwrap();
    let before = fs::read(vault_file(&store)).unwrap();
    save_again(&store);
    let names: Vec<String> = fs::read_dir(vault_file(&store).parent().unwrap())
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
    assert_ne!(fs::read(vault_file(&store)).unwrap(), before);
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
    let before = fs::read(vault_file(&store)).unwrap();
    let outcome = store
        .update(|d| {
            d.recipients.clear();
            Err::<(), _>("nope")
        })
        .unwrap();
    assert_eq!(outcome, Err("nope"));
    assert_eq!(fs::read(vault_file(&store)).unwrap(), before);
    assert!(!backup_path(vault_file(&store)).exists());
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
    save_again(&store);
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
    fs::copy(vault_file(&store), &copy).unwrap();
    fs::rename(&copy, vault_file(&store)).unwrap();
    assert!(store.reload_if_changed().unwrap().is_none(), "same stamp");
    // The same content encrypted again is another file: it is read.
    let other = second_handle(&store, &key);
    other.update(|_| Ok::<_, ()>(())).unwrap().unwrap();
    assert!(store.reload_if_changed().unwrap().is_some());
    assert!(
        read_head(vault_file(&store))
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
        parse_vault(b"version = 4\n", p),
        Err(VaultError::FutureVersion { found: 4, .. })
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
    Profile::factorial_for_test(name)
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
    let bytes = fs::read(vault_file(store)).unwrap();
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
fn profile_changes_on_a_handle_that_read_one_profile_save_the_same_text() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = new_store(dir.path());
    store
        .update(|d| {
            ["a", "b", "c", "d"]
                .into_iter()
                .try_for_each(|n| d.insert(named(n)))
        })
        .unwrap()
        .unwrap();
    // A command's handle: it reads one profile, and the others stay located, not parsed.
    let command = second_handle(&store, &key);
    assert_eq!(command.profile("b").unwrap().unwrap().name, "b");
    let outcomes = command
        .update_profiles([
            ("d".to_string(), edit(|p| p.notes = "last".into())),
            ("a".to_string(), edit(|p| p.notes = "first".into())),
            ("a".to_string(), edit(|p| p.notes.push_str(" again"))),
            ("c".to_string(), edit(|p| p.name = "z".into())),
            ("gone".to_string(), edit(|_| {})),
        ])
        .unwrap();
    assert_eq!(
        outcomes,
        [
            Some("last".into()),
            Some("first".into()),
            Some("first again".into()),
            Some(String::new()),
            None
        ]
    );
    let data = store.snapshot().unwrap();
    let notes: Vec<&str> = data.profiles.iter().map(|p| p.notes.as_str()).collect();
    assert_eq!(notes, ["first again", "", "", "last"]);
    assert_eq!(plaintext(&store), toml::to_string(&data).unwrap());
    // The handle reads its own save: the rename, and the next change on top.
    assert!(command.profile("c").unwrap().is_none());
    command
        .update_profiles([("z".to_string(), edit(|p| p.notes = "renamed".into()))])
        .unwrap();
    assert_eq!(store.profile("z").unwrap().unwrap().notes, "renamed");
    saves_on_top_of_saves_land_whole(&store, &command);
}

/// Saves on top of saves by `command`, a handle that reads profiles one at a time, move the
/// tables after the changed ones: each lands whole, as `store` reads it.
fn saves_on_top_of_saves_land_whole(store: &Store, command: &Store) {
    for round in 0..3 {
        let long = "x".repeat(round * 40);
        command
            .update_profiles([
                ("a".to_string(), edit(move |p| p.notes = format!("{round}"))),
                ("b".to_string(), edit(move |p| p.client_id = long.clone())),
            ])
            .unwrap();
        command
            .update_profiles([(
                "d".to_string(),
                edit(move |p| p.notes = format!("d{round}")),
            )])
            .unwrap();
        let data = store.snapshot().unwrap();
        assert_eq!(plaintext(store), toml::to_string(&data).unwrap());
        assert_eq!(
            command.profile("d").unwrap().unwrap().notes,
            format!("d{round}")
        );
        assert_eq!(command.profile("z").unwrap().unwrap().notes, "renamed");
    }
}

#[test]
fn profile_changes_to_no_profile_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = three_profiles(dir.path());
    let before = fs::read(vault_file(&store)).unwrap();
    let outcomes = store
        .update_profiles([("gone".to_string(), edit(|_| {}))])
        .unwrap();
    assert_eq!(outcomes, [None]);
    assert_eq!(fs::read(vault_file(&store)).unwrap(), before);
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
        id_token: None,
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
    fs::copy(vault_file(&store), &backup).unwrap();
    give(&store, token("new", 1));
    // The backup restored over the live vault, as cp or git would: a new inode.
    let staged = dir.path().join("v/staged");
    fs::copy(&backup, &staged).unwrap();
    fs::rename(&staged, vault_file(&store)).unwrap();
    let seen = store.profile("a").unwrap().unwrap();
    assert_eq!(seen.token.unwrap().access_token.expose_secret(), "new");
    assert_eq!(store.write_back_kept().unwrap(), vec!["a".to_string()]);
    assert!(store.write_back_kept().unwrap().is_empty());
    let on_disk = other.profile("a").unwrap().unwrap();
    assert_eq!(on_disk.token.unwrap().access_token.expose_secret(), "new");
}

mod entries;
mod leases;
mod locks;
mod memory;
