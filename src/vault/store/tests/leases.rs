//! The store's one lock and the leases under it: a lease is taken, released and recorded
//! under with the lock let go, so readers never wait for the backend's answer to those, the
//! tasks of one process share one lease, and records under it are written one at a time.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use super::super::lease::{Try, Which};
use super::super::*;
use super::{new_store, vault_file};
use crate::vault::backend::{HeldLease, Tried};

/// Long enough for any step here on a loaded machine; only a deadlock reaches it.
const STUCK: Duration = Duration::from_secs(20);

fn locked(_: String) -> VaultError {
    VaultError::Locked("the test's lease".into())
}

/// A guard that holds nothing.
struct Nothing;

impl HeldLease for Nothing {}

/// What a try that takes a guard holding nothing brings.
#[expect(clippy::unnecessary_wraps, reason = "the shape of every try")]
fn nothing() -> Try {
    Ok(Tried::Held(Box::new(Nothing)))
}

/// A guard whose release says it began, then waits for `go` before it ends, and notes
/// that it did.
struct SlowRelease {
    began: mpsc::Sender<()>,
    go: std::sync::Mutex<mpsc::Receiver<()>>,
    ended: std::sync::Arc<AtomicBool>,
}

impl HeldLease for SlowRelease {}

impl Drop for SlowRelease {
    fn drop(&mut self) {
        let _ = self.began.send(());
        let go = self.go.get_mut().unwrap();
        let _ = go.recv_timeout(STUCK);
        self.ended.store(true, Ordering::SeqCst);
    }
}

#[test]
fn readers_and_sharers_never_wait_for_a_lease_being_taken_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    let (trying, tried) = mpsc::channel();
    let (go, gate) = mpsc::channel::<()>();
    let sharer_tries = AtomicUsize::new(0);
    let store = &store;
    std::thread::scope(|s| {
        let taker = s.spawn(move || {
            let until = Instant::now() + STUCK;
            store.take_lease(
                &Which::Vault,
                until,
                || {
                    trying.send(()).unwrap();
                    gate.recv_timeout(STUCK).unwrap();
                    nothing()
                },
                locked,
            )
        });
        tried.recv_timeout(STUCK).unwrap();
        // The backend has not answered the taker: the cache is read all the same.
        let (read, reads) = mpsc::channel();
        s.spawn(move || read.send(store.snapshot().map(|data| data.profiles.len())));
        assert_eq!(reads.recv_timeout(STUCK).unwrap().unwrap(), 0);
        // Another task wanting the lease waits for that answer and shares it.
        let sharer = s.spawn(|| {
            let until = Instant::now() + STUCK;
            let try_again = || {
                sharer_tries.fetch_add(1, Ordering::SeqCst);
                nothing()
            };
            store.take_lease(&Which::Vault, until, try_again, locked)
        });
        go.send(()).unwrap();
        let first = taker.join().unwrap().unwrap();
        let second = sharer.join().unwrap().unwrap();
        assert!(first.same_as(&second));
        assert!(first.is_vaults());
    });
    assert_eq!(
        sharer_tries.load(Ordering::SeqCst),
        0,
        "a share asks no backend"
    );
}

#[test]
fn the_last_share_releases_the_lease_and_a_new_taker_waits_for_the_release() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    let (began, releasing) = mpsc::channel();
    let (go, gate) = mpsc::channel::<()>();
    let ended = std::sync::Arc::new(AtomicBool::new(false));
    let mut slow = Some(SlowRelease {
        began,
        go: std::sync::Mutex::new(gate),
        ended: ended.clone(),
    });
    let until = Instant::now() + STUCK;
    let which = Which::Entry("k".into());
    let first = store
        .take_lease(
            &which,
            until,
            || Ok(Tried::Held(Box::new(slow.take().unwrap()))),
            locked,
        )
        .unwrap();
    let second = store
        .take_lease(&which, until, || panic!("a share asks no backend"), locked)
        .unwrap();
    assert!(first.same_as(&second) && !first.is_vaults());
    drop(first);
    assert!(
        releasing.try_recv().is_err(),
        "a share is left: nothing released"
    );
    assert!(store.cache().0.leases.hold_vault_or_entry("k"));
    std::thread::scope(|s| {
        s.spawn(move || drop(second));
        releasing.recv_timeout(STUCK).unwrap();
        // Being released: not held, the cache is read, and a new taker waits for the end.
        assert!(!store.cache().0.leases.hold_vault_or_entry("k"));
        assert!(store.snapshot().is_ok());
        let taker = s.spawn(|| {
            let after_release = || {
                assert!(ended.load(Ordering::SeqCst), "taken while being released");
                nothing()
            };
            store.take_lease(&which, Instant::now() + STUCK, after_release, locked)
        });
        go.send(()).unwrap();
        let again = taker.join().unwrap().unwrap();
        assert!(store.cache().0.leases.hold_vault_or_entry("k"));
        drop(again);
    });
    assert!(!store.cache().0.leases.hold_vault_or_entry("k"));
}

#[test]
fn records_under_one_lease_are_written_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    let record = |lease: &Lease, print: &str| {
        let intend = [KeyedPrint {
            key: format!("key of {print}"),
            print: print.to_string(),
            obtained_at: chrono::Utc::now(),
        }];
        let settle = [print.to_string()];
        // Settled and sent again: a read, a change and a write each time.
        lease.record_spending(&changes(&[], &settle)).unwrap();
        let answers = lease.record_spending(&changes(&intend, &[])).unwrap();
        assert_eq!(answers, [None]);
    };
    std::thread::scope(|s| {
        for print in ["one", "two", "three"] {
            let lease = store.lease().unwrap();
            s.spawn(move || (0..100).for_each(|_| record(&lease, print)));
        }
    });
    let lease = store.lease().unwrap();
    assert!(
        lease
            .record_spending(&changes(&[], &[]))
            .unwrap()
            .is_empty()
    );
    let intents = crate::vault::backend::file::intents_path(vault_file(&store));
    let written = std::fs::read_to_string(intents).unwrap();
    for print in ["one", "two", "three"] {
        assert!(written.contains(print), "{print} lost: {written}");
    }
}

fn changes<'a>(intend: &'a [KeyedPrint], settle: &'a [String]) -> SpendChanges<'a> {
    SpendChanges {
        intend,
        settle,
        saved: &[],
        host: "here",
        pid: std::process::id(),
        now: chrono::Utc::now(),
    }
}
