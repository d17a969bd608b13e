//! The locks of profiles' entries, on the in-memory backend: a refresh of one profile never
//! waits for another's, a lock gives way to the vault's lease, a writer sealing every entry
//! again waits the locks out, and a save whose descriptor another save changed first puts its
//! change in that log.

use std::sync::atomic::Ordering;

use super::super::*;
use super::memory::{Memory, OTHERS_ENTRY, profile_names, stores_on};
use super::{lock_ignoring_poison, named};

/// A memory vault of profiles `a` and `b`, laid out as entries, with two stores on it, the
/// second waiting at most a tenth of a second for a lock.
fn entries_vault(dir: &Path) -> (Memory, Store, Store) {
    let memory = Memory::default();
    let (one, two, _) = stores_on(dir, &memory);
    one.update(|d| ["a", "b"].into_iter().try_for_each(|n| d.insert(named(n))))
        .unwrap()
        .unwrap();
    assert!(one.arrange(Arrangement::Entries).unwrap());
    assert_eq!(profile_names(&two), ["a", "b"]);
    (memory, one, two.with_lock_wait(Duration::from_millis(100)))
}

fn noted(text: &'static str) -> impl FnMut(&mut Profile) {
    move |p: &mut Profile| p.notes = text.into()
}

#[test]
fn a_refresh_of_one_profile_never_waits_for_another_profiles_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (_memory, one, two) = entries_vault(dir.path());
    let held = one.lease_for("a").unwrap();
    // `b` is another entry's lock: taken and saved at once.
    let other = two.lease_for("b").unwrap();
    two.update_profiles([("b".to_string(), noted("by two"))])
        .unwrap();
    drop(other);
    // `a` waits for its holder, and its save with it.
    let refused = two.lease_for("a").err();
    assert!(
        matches!(&refused, Some(VaultError::Locked(why)) if why.contains("profile 'a'")),
        "{refused:?}"
    );
    let refused = two.update_profiles([("a".to_string(), noted("never"))]);
    assert!(matches!(refused, Err(VaultError::Locked(_))), "{refused:?}");
    // Shares of one process's lock are one lock, held until the last goes.
    let share = one.lease_for("a").unwrap();
    assert!(share.same_as(&held));
    drop(held);
    assert!(two.lease_for("a").is_err(), "still held by its share");
    drop(share);
    two.update_profiles([("a".to_string(), noted("by two"))])
        .unwrap();
    assert_eq!(one.profile("a").unwrap().unwrap().notes, "by two");
    assert_eq!(one.profile("b").unwrap().unwrap().notes, "by two");
}

#[test]
fn a_profiles_lock_gives_way_to_the_vaults_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, one, two) = entries_vault(dir.path());
    let lease = one.lease().unwrap();
    let refused = two.lease_for("a").err();
    assert!(
        matches!(&refused, Some(VaultError::Locked(why)) if why.contains("the vault's lease")),
        "{refused:?}"
    );
    assert!(
        lock_ignoring_poison(&memory.locks).is_empty(),
        "a lock that gave way is released"
    );
    drop(lease);
    assert!(two.lease_for("a").is_ok());
}

#[test]
fn a_change_of_members_waits_until_no_profile_is_being_refreshed() {
    let dir = tempfile::tempdir().unwrap();
    let (_memory, one, two) = entries_vault(dir.path());
    let other = crate::vault::crypto::IdentityFile::generate(&dir.path().join("other.txt"))
        .unwrap()
        .recipients;
    let add_member = |d: &mut VaultData| {
        d.recipients.extend(other.clone());
        Ok::<(), std::convert::Infallible>(())
    };
    let held = one.lease_for("a").unwrap();
    let refused = two.update(add_member);
    assert!(
        matches!(&refused, Err(VaultError::Locked(why)) if why.contains("being refreshed")),
        "{refused:?}"
    );
    // The move out of entries waits the same way.
    let refused = two.arrange(Arrangement::Single);
    assert!(matches!(refused, Err(VaultError::Locked(_))), "{refused:?}");
    // The refresh saves; then the members change, and every entry is sealed for them.
    one.update_profiles([("a".to_string(), noted("refreshed"))])
        .unwrap();
    drop(held);
    two.update(add_member).unwrap().unwrap();
    assert_eq!(one.profile("a").unwrap().unwrap().notes, "refreshed");
    assert_eq!(one.snapshot().unwrap().recipients.len(), 2);
}

#[test]
fn a_save_whose_descriptor_another_save_changed_first_joins_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, one, two) = entries_vault(dir.path());
    let seq = || lock_ignoring_poison(&memory.changes).clone().unwrap().seq;
    let before = seq();
    // Another machine saves another profile between this save's entry and its descriptor.
    memory.interleave.store(3, Ordering::Relaxed);
    one.update_profiles([("a".to_string(), noted("ours"))])
        .unwrap();
    let after = lock_ignoring_poison(&memory.changes).clone().unwrap();
    assert_eq!(after.seq, before + 4, "three others' saves, then ours");
    let ids: Vec<&str> = after.recent.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids.iter().filter(|id| **id == OTHERS_ENTRY).count(),
        3,
        "{ids:?}"
    );
    assert_ne!(ids.last(), Some(&OTHERS_ENTRY), "ours is recorded last");
    // Every reader finds the change, this store at its next read too.
    assert_eq!(two.profile("a").unwrap().unwrap().notes, "ours");
    one.update_profiles([("b".to_string(), noted("next"))])
        .unwrap();
    assert_eq!(seq(), before + 5);
    assert_eq!(two.profile("b").unwrap().unwrap().notes, "next");
}

#[test]
fn the_status_shards_say_which_machine_saved_each_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_memory, one, two) = entries_vault(dir.path());
    assert!(two.saved_by().is_empty(), "no token saved yet");
    let token = super::entries::with_token("a", 600).token;
    let obtained = token.as_ref().unwrap().obtained_at;
    one.update_profiles([("a".to_string(), move |p: &mut Profile| {
        p.token.clone_from(&token);
    })])
    .unwrap();
    let saved = two.saved_by();
    let a = saved.get("a").expect("a's token saved");
    assert_eq!(a.host, crate::platform::host_name());
    assert_eq!(a.at, obtained);
    assert!(!saved.contains_key("b"), "{saved:?}");
    // A change that keeps the token keeps who saved it; a removal forgets it.
    one.update_profiles([("a".to_string(), noted("kept"))])
        .unwrap();
    assert_eq!(two.saved_by().get("a"), Some(a));
    one.update(|d| {
        d.profiles.retain(|p| p.name != "a");
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap()
    .unwrap();
    assert!(two.saved_by().is_empty());
}
