//! The store over a vault laid out as entries, on the in-memory backend: moving in and out,
//! saves that write only what changed, readers that follow the log, entries not a member's.

use std::sync::atomic::Ordering;

use super::super::*;
use super::memory::{Memory, profile_names, stores_on};
use age::secrecy::{ExposeSecret as _, SecretString};

use super::{lock_ignoring_poison, named};
use crate::vault::backend::Entries as _;
use crate::vault::crypto::IdentityFile;

/// A memory vault of `n` profiles `p00`.., laid out as entries, with two stores on it.
fn entries_vault(dir: &Path, n: usize) -> (Memory, Store, Store) {
    let memory = Memory::default();
    let (one, two, _) = stores_on(dir, &memory);
    one.update(|d| (0..n).try_for_each(|i| d.insert(named(&format!("p{i:02}")))))
        .unwrap()
        .unwrap();
    assert!(one.arrange(Arrangement::Entries).unwrap());
    (memory, one, two)
}

fn versions(memory: &Memory) -> Vec<u64> {
    lock_ignoring_poison(&memory.shelf)
        .values()
        .map(|(_, v)| *v)
        .collect()
}

fn reads(memory: &Memory) -> usize {
    memory.entry_reads.load(Ordering::Relaxed)
}

#[test]
fn a_vault_moves_into_entries_and_back_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, one, two) = entries_vault(dir.path(), 3);
    assert_eq!(lock_ignoring_poison(&memory.shelf).len(), 3);
    assert!(lock_ignoring_poison(&memory.changes).is_some());
    assert_eq!(two.arrangement(), Arrangement::Single, "not read since");
    assert_eq!(profile_names(&two), ["p00", "p01", "p02"]);
    assert_eq!(two.arrangement(), Arrangement::Entries);
    // Asked again, nothing moves.
    assert!(!one.arrange(Arrangement::Entries).unwrap());

    assert!(two.arrange(Arrangement::Single).unwrap());
    assert!(lock_ignoring_poison(&memory.shelf).is_empty());
    assert!(lock_ignoring_poison(&memory.changes).is_none());
    assert_eq!(profile_names(&one), ["p00", "p01", "p02"]);
    assert_eq!(one.arrangement(), Arrangement::Single);
}

#[test]
fn a_change_to_one_profile_writes_its_entry_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, one, _) = entries_vault(dir.path(), 20);
    let before = versions(&memory);
    let edit = |p: &mut Profile| p.notes = "edited".into();
    one.update_profiles([("p03".to_string(), edit)]).unwrap();
    let after = versions(&memory);
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert_eq!(changed, 1, "{before:?} -> {after:?}");
    // A whole change that touches one profile writes one entry too.
    one.update(|d| {
        d.profile_mut("p04").unwrap().notes = "whole".into();
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap()
    .unwrap();
    let again = versions(&memory);
    let changed = after.iter().zip(&again).filter(|(a, b)| a != b).count();
    assert_eq!(changed, 1, "{after:?} -> {again:?}");
}

#[test]
fn one_profile_is_read_from_its_entry_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, _one, two) = entries_vault(dir.path(), 20);
    let before = reads(&memory);
    assert_eq!(two.profile("p07").unwrap().unwrap().name, "p07");
    assert!(two.profile("nobody").unwrap().is_none());
    assert_eq!(reads(&memory) - before, 2, "one entry each");
}

#[test]
fn another_store_follows_the_log_and_reads_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, one, two) = entries_vault(dir.path(), 20);
    assert_eq!(profile_names(&two).len(), 20);
    let before = reads(&memory);
    let edit = |p: &mut Profile| p.notes = "edited".into();
    one.update_profiles([("p03".to_string(), edit)]).unwrap();
    one.update(|d| d.insert(named("new"))).unwrap().unwrap();
    one.update(|d| d.remove("p05").map(|_| ()))
        .unwrap()
        .unwrap();
    let data = two.snapshot().unwrap();
    assert_eq!(data.profile("p03").unwrap().notes, "edited");
    assert!(data.profile("new").is_some());
    assert!(data.profile("p05").is_none());
    assert_eq!(data.profiles.len(), 20);
    // The edit was read under the lease and again by the other store; the new one once.
    let read = reads(&memory) - before;
    assert!(read <= 4, "{read} entries read");
}

#[test]
fn an_entry_moved_or_forged_by_a_writer_without_the_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, one, two) = entries_vault(dir.path(), 3);
    let secret = one.cache().content.members_secret().0.cloned();
    let id = |name: &str| super::super::record_key(secret.as_ref(), name);
    // `p00`'s ciphertext, a member's, copied over `p01`'s.
    let copied = memory.read(&id("p00")).unwrap().unwrap().ciphertext;
    memory.write(&id("p01"), &copied, None).unwrap();
    let e = two.profile("p01").unwrap_err();
    assert!(matches!(e, VaultError::Untrusted(_)), "{e}");
    // A whole read leaves it out, and keeps the rest.
    assert_eq!(profile_names(&two), ["p00", "p02"]);
}

#[test]
fn a_change_of_members_seals_every_entry_again() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, one, two) = entries_vault(dir.path(), 5);
    let before = versions(&memory);
    let other = crate::vault::crypto::IdentityFile::generate(&dir.path().join("other.txt"))
        .unwrap()
        .recipients;
    one.update(|d| {
        d.recipients.extend(other.clone());
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap()
    .unwrap();
    let after = versions(&memory);
    assert!(
        before.iter().zip(&after).all(|(a, b)| a < b),
        "{before:?} -> {after:?}"
    );
    assert_eq!(profile_names(&two).len(), 5);
    assert!(two.snapshot().unwrap().recipients.ends_with(&other));
}

/// What `status --json` prints of `data`.
fn status_json(data: &VaultData) -> String {
    let now = chrono::Utc::now();
    let mut rows = crate::report::rows(data, now, Duration::from_secs(86_400));
    crate::report::json(&mut rows).unwrap()
}

/// A profile with a token, so the shards have expiries to carry.
pub(super) fn with_token(name: &str, expires_in: i64) -> Profile {
    let mut p = named(name);
    let now = chrono::Utc::now();
    p.token = Some(crate::vault::Token::for_test(
        "access-secret",
        "refresh-secret",
        now,
        expires_in,
    ));
    p.client_secret = SecretString::from("client-secret");
    p
}

#[test]
fn status_reads_the_shards_alone_and_says_what_every_entry_says() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, one, _) = entries_vault(dir.path(), 70);
    one.update(|d| d.insert(with_token("live", 600)))
        .unwrap()
        .unwrap();
    let whole = one.read(status_json).unwrap();
    let fresh = || {
        let key = dir.path().join("key.txt");
        let unlock =
            Unlock::Identity(IdentityFile::load(&key, crate::vault::crypto::NoPrompt).unwrap());
        Store::open_in(Box::new(memory.clone()), unlock).unwrap()
    };
    let before = reads(&memory);
    let from_shards = fresh().read_status(status_json).unwrap();
    assert_eq!(reads(&memory), before, "no entry read");
    assert_eq!(from_shards, whole);
    // Nothing secret is in a shard.
    let shown = fresh()
        .read_status(|d| d.profile("live").cloned().unwrap())
        .unwrap();
    assert!(shown.client_secret.expose_secret().is_empty());
    let token = shown.token.unwrap();
    assert_eq!(token.access_token.expose_secret(), "-");

    // A refresh's save reaches the shard.
    let later = |p: &mut Profile| {
        if let Some(t) = &mut p.token {
            t.expires_at = Some(chrono::Utc::now() - chrono::Duration::seconds(5));
        }
    };
    one.update_profiles([("live".to_string(), later)]).unwrap();
    let whole = one.read(status_json).unwrap();
    assert_eq!(fresh().read_status(status_json).unwrap(), whole);
    assert!(whole.contains("\"access_expires_in_secs\": -"), "{whole}");

    // A shard written by someone without the key: status reads the entries instead.
    let forged = lock_ignoring_poison(&memory.shards)
        .get(&1)
        .cloned()
        .unwrap();
    lock_ignoring_poison(&memory.shards).insert(0, forged);
    let before = reads(&memory);
    assert_eq!(fresh().read_status(status_json).unwrap(), whole);
    assert!(reads(&memory) > before, "read the entries");
}

#[test]
fn a_shard_that_cannot_be_written_is_removed_and_the_save_stands() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, one, two) = entries_vault(dir.path(), 128);
    memory.refuse_shards.store(true, Ordering::Relaxed);
    let edit = |p: &mut Profile| p.notes = "saved".into();
    one.update_profiles([("p07".to_string(), edit)]).unwrap();
    let shards = lock_ignoring_poison(&memory.shards).len();
    assert_eq!(shards, 3, "one of four shards removed");
    assert_eq!(two.profile("p07").unwrap().unwrap().notes, "saved");
    // Status reads the entries where a shard is missing, and says the same.
    let whole = one.read(status_json).unwrap();
    assert_eq!(two.read_status(status_json).unwrap(), whole);
    // Once shards can be written again, the next save makes the missing one from the entries.
    memory.refuse_shards.store(false, Ordering::Relaxed);
    one.update_profiles([("p07".to_string(), edit)]).unwrap();
    assert_eq!(lock_ignoring_poison(&memory.shards).len(), 4);
}

#[test]
fn a_move_is_refused_while_another_writer_holds_the_lease_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::default();
    let (one, two, _) = stores_on(dir.path(), &memory);
    one.update(|d| d.insert(named("a"))).unwrap().unwrap();
    let two = two.with_lock_wait(Duration::from_millis(100));
    let held = one.lease().unwrap();
    let refused = two.arrange(Arrangement::Entries);
    assert!(matches!(refused, Err(VaultError::Locked(_))), "{refused:?}");
    assert!(lock_ignoring_poison(&memory.shelf).is_empty());
    assert!(lock_ignoring_poison(&memory.changes).is_none());
    drop(held);
    assert!(two.arrange(Arrangement::Entries).unwrap());
    assert_eq!(profile_names(&one), ["a"]);
}
