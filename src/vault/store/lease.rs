//! The lease on the vault as this process holds it: shared by every task, released when the
//! last share is dropped, and what it records of refresh tokens on their way.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard, Weak};
use std::time::Instant;

use super::Store;
use super::state::{Shared, State, Turn};
use crate::vault::backend::{INTENT_STANDS_FOR, Intent, LeaseGuard, Newest, SpendRecord, Tried};
use crate::vault::error::VaultError;

/// The leases of this process, under the store's one lock ([`super::state`]): the vault's,
/// and the lock of each profile's entry ([`super::locks`]), by what they are of. A lease is
/// taken, recorded under and released with the lock let go, its slot marked meanwhile, so
/// neither a reader of the cache nor a taker of another lease waits for the backend's answer;
/// each share holds the guard itself, so asking whether a token may be sent takes no lock.
#[derive(Default)]
pub(super) struct Leases {
    slots: HashMap<Which, Slot>,
}

/// What a lease is of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Which {
    /// The vault's lease.
    Vault,
    /// The lock of the entry with this record key.
    Entry(String),
}

/// A lease of this process, as its slot says; no slot while nobody holds it.
enum Slot {
    /// A thread is taking it from the backend; the others wait, to share it.
    Taking,
    /// Held by the shares that hold `guard`; once the last is gone (the guard is dead) it is
    /// being released in the backend, and taken again only after. `recording` while a share
    /// writes the record under it ([`Lease::record_spending`]), one at a time.
    Held {
        guard: Weak<LeaseGuard>,
        recording: bool,
    },
}

impl Slot {
    /// The held guard, unless it is being taken or released.
    fn live(&self) -> Option<Arc<LeaseGuard>> {
        match self {
            Self::Held { guard, .. } => guard.upgrade(),
            Self::Taking => None,
        }
    }
}

impl Leases {
    /// Whether a share writes the record under the lease `which`, as its flag; `None` while
    /// the lease is not held.
    pub(super) fn recording(&mut self, which: &Which) -> Option<&mut bool> {
        match self.slots.get_mut(which) {
            Some(Slot::Held { recording, .. }) => Some(recording),
            _ => None,
        }
    }

    /// Whether this process holds the vault's lease, or the lock of the entry `key`.
    pub(super) fn hold_vault_or_entry(&self, key: &str) -> bool {
        let held = |which: &Which| self.slots.get(which).and_then(Slot::live).is_some();
        held(&Which::Vault) || held(&Which::Entry(key.to_string()))
    }
}

/// One try at taking a lease from the backend: its guard, or who holds it.
pub(super) type Try = Result<Tried, VaultError>;

impl Store {
    /// Takes the lease `which`: a share of it when a task of this process holds it, else by
    /// `try_take` (one try with the backend, with the lock let go), again every
    /// [`crate::vault::backend::Backend::lease_retry_every`] until `until`; then the error
    /// `busy` makes of who holds it. Once taken, what was read counts as current no longer:
    /// another process may have saved until then.
    pub(super) fn take_lease(
        &self,
        which: &Which,
        until: Instant,
        mut try_take: impl FnMut() -> Try,
        busy: impl FnOnce(String) -> VaultError,
    ) -> Result<Lease, VaultError> {
        loop {
            let mut state = self.shared.lock();
            while let Some(slot) = state.leases.slots.get(which) {
                if let Some(guard) = slot.live() {
                    return Ok(self.share(which, guard));
                }
                if Instant::now() >= until {
                    return Err(busy("another task of this process".into()));
                }
                state = self.shared.wait(state, until);
            }
            state.leases.slots.insert(which.clone(), Slot::Taking);
            drop(state);
            let taking = Taking {
                shared: &self.shared,
                which,
                ended: false,
            };
            let tried = try_take();
            let mut state = taking.end();
            match tried? {
                Tried::Held(guard) => {
                    let guard = Arc::new(guard);
                    let held = Slot::Held {
                        guard: Arc::downgrade(&guard),
                        recording: false,
                    };
                    state.leases.slots.insert(which.clone(), held);
                    state.cache.fresh = None;
                    return Ok(self.share(which, guard));
                }
                Tried::Busy(holder) if Instant::now() >= until => return Err(busy(holder)),
                Tried::Busy(_) => {}
            }
            drop(state);
            std::thread::sleep(self.backend.lease_retry_every());
        }
    }

    fn share(&self, which: &Which, guard: Arc<LeaseGuard>) -> Lease {
        Lease {
            shared: self.shared.clone(),
            which: which.clone(),
            guard: Some(guard),
        }
    }
}

/// A slot marked [`Slot::Taking`]: cleared when the try ends, or panics.
struct Taking<'a> {
    shared: &'a Shared,
    which: &'a Which,
    ended: bool,
}

impl<'a> Taking<'a> {
    /// The lock again, the slot cleared for what the try brought.
    fn end(mut self) -> MutexGuard<'a, State> {
        self.ended = true;
        let mut state = self.shared.lock();
        state.leases.slots.remove(self.which);
        self.shared.signal();
        state
    }
}

impl Drop for Taking<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.shared.lock().leases.slots.remove(self.which);
            self.shared.signal();
        }
    }
}

/// A held write lock on the vault, or on one profile's entry; shared by every task of this
/// process, released when the last share is dropped. Never dropped under the store's lock.
pub struct Lease {
    shared: Arc<Shared>,
    which: Which,
    /// `None` only while dropped.
    guard: Option<Arc<LeaseGuard>>,
}

impl Lease {
    /// Whether a single-use secret (a refresh token) may be sent under this lease now: it
    /// will outlast the request and the save of its answer (see
    /// `HeldLease::may_spend` in `vault/backend`).
    pub fn may_spend(&self) -> bool {
        self.guard.as_ref().is_some_and(|guard| guard.may_spend())
    }

    /// Whether `self` and `other` are shares of one lease.
    pub fn same_as(&self, other: &Lease) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared) && self.which == other.which
    }

    /// Whether this is a share of the vault's lease (not an entry's lock).
    pub(super) fn is_vaults(&self) -> bool {
        self.which == Which::Vault
    }
}

/// How long a share waits for another to finish writing the record under their lease: the
/// record is one write, within a request's time.
const RECORDING_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take().and_then(Arc::into_inner) else {
            return;
        };
        // The last share: released in the backend (a request, for a server) with the lock
        // let go, while the slot's guard is dead and a taker waits.
        drop(guard);
        let mut state = self.shared.lock();
        let slots = &mut state.leases.slots;
        if slots
            .get(&self.which)
            .is_some_and(|slot| slot.live().is_none())
        {
            slots.remove(&self.which);
        }
        drop(state);
        self.shared.signal();
    }
}

/// A refresh token of the profile of `key` ([`super::Store::record_key`]): its print, and
/// when the token it belongs to was obtained.
#[derive(Debug, Clone)]
pub struct KeyedPrint {
    pub key: String,
    pub print: String,
    pub obtained_at: chrono::DateTime<chrono::Utc>,
}

/// Why a refresh token must not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Another process sent it and has not saved the answer.
    InFlight(Intent),
    /// A newer refresh token of the profile was saved: the vault was put back to an older
    /// version, and this one is retired.
    Retired(Newest),
}

/// Changes to the records of refresh tokens ([`crate::vault::backend::SpendRecord`]),
/// written together.
#[derive(Debug)]
pub struct SpendChanges<'a> {
    /// Refresh tokens about to be sent by this process.
    pub intend: &'a [KeyedPrint],
    /// Prints whose answers are saved, or that never left.
    pub settle: &'a [String],
    /// The refresh tokens of tokens saved: the newest of their profiles now.
    pub saved: &'a [KeyedPrint],
    /// This process: its machine and pid.
    pub host: &'a str,
    pub pid: u32,
    pub now: chrono::DateTime<chrono::Utc>,
}

impl Lease {
    /// Applies `changes` where every process and machine sharing the vault sees it, in one
    /// write: settled records go, saved tokens become their profiles' newest, and each
    /// refresh token to be sent is recorded, unless it must not be sent ([`Refusal`]), which
    /// is then returned in its place. Recording is also the check that the store takes
    /// writes now: when the write fails, nothing may be sent.
    pub fn record_spending(
        &self,
        changes: &SpendChanges<'_>,
    ) -> Result<Vec<Option<Refusal>>, VaultError> {
        let Some(guard) = &self.guard else {
            return Ok(vec![None; changes.intend.len()]);
        };
        let turn = Turn::Record(&self.which);
        let Some(_turn) = self.shared.take_turn(turn, Instant::now() + RECORDING_WAIT) else {
            return Err(VaultError::Locked(
                "its lease, whose record another task of this process keeps writing".into(),
            ));
        };
        record_under(guard, changes)
    }
}

/// [`Lease::record_spending`] under `guard`.
fn record_under(
    guard: &LeaseGuard,
    changes: &SpendChanges<'_>,
) -> Result<Vec<Option<Refusal>>, VaultError> {
    let intents = guard.intents()?;
    let keys: Vec<String> = changes.intend.iter().map(|s| s.key.clone()).collect();
    let known = guard.newest(&keys)?;
    let mut record = SpendRecord {
        spending: intents.clone(),
        newest: keys
            .into_iter()
            .zip(known)
            .filter_map(|(key, newest)| Some((key, newest?)))
            .collect(),
    };
    let answers = apply(&mut record, changes);
    let saved: Vec<(String, Newest)> = changes
        .saved
        .iter()
        .filter_map(|s| Some((s.key.clone(), record.newest.get(&s.key)?.clone())))
        .collect();
    let new_intents = (record.spending != intents).then_some(&record.spending[..]);
    if new_intents.is_some() || !saved.is_empty() {
        guard.write_record(new_intents, &saved)?;
    }
    Ok(answers)
}

/// [`Lease::record_spending`] on the record itself.
fn apply(record: &mut SpendRecord, changes: &SpendChanges<'_>) -> Vec<Option<Refusal>> {
    let SpendChanges {
        intend,
        settle,
        saved,
        host,
        pid,
        now,
    } = *changes;
    // Records of gone processes of this machine, and old ones, are dropped.
    let own = |i: &Intent| i.host == host && i.pid == pid;
    record.spending.retain(|i| {
        now - i.since < INTENT_STANDS_FOR
            && (own(i) || i.stands_against(host, pid))
            && !(own(i) && settle.contains(&i.print))
    });
    for saved in saved {
        let newest = Newest {
            print: saved.print.clone(),
            obtained_at: saved.obtained_at,
            host: host.to_string(),
        };
        record.newest.insert(saved.key.clone(), newest);
    }
    intend
        .iter()
        .map(|spend| intend_one(record, spend, host, pid, now))
        .collect()
}

/// Records `spend` as leaving, unless it must not ([`Refusal`]).
fn intend_one(
    record: &mut SpendRecord,
    spend: &KeyedPrint,
    host: &str,
    pid: u32,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Refusal> {
    if let Some(newest) = record.newest.get(&spend.key)
        && newest.retires(&spend.print, spend.obtained_at)
    {
        return Some(Refusal::Retired(newest.clone()));
    }
    if let Some(standing) = record
        .spending
        .iter()
        .find(|i| i.print == spend.print && i.stands_against(host, pid))
    {
        return Some(Refusal::InFlight(standing.clone()));
    }
    record.spending.retain(|i| i.print != spend.print);
    record.spending.push(Intent {
        print: spend.print.clone(),
        host: host.to_string(),
        pid,
        since: now,
    });
    None
}

/// [`super::Store::record_key`], under the members' secret `secret`.
pub(super) fn record_key(secret: Option<&age::secrecy::SecretString>, name: &str) -> String {
    use age::secrecy::ExposeSecret;
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(b"tokdeck record key\0");
    if let Some(secret) = secret {
        hash.update(secret.expose_secret().as_bytes());
    }
    hash.update(b"\0");
    hash.update(name.as_bytes());
    crate::display::hex(hash.finalize().get(..16).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, Utc};

    use super::*;

    fn changes<'a>(intend: &'a [KeyedPrint], saved: &'a [KeyedPrint]) -> SpendChanges<'a> {
        SpendChanges {
            intend,
            settle: &[],
            saved,
            host: "here",
            pid: std::process::id(),
            now: Utc::now(),
        }
    }

    fn spend(print: &str, age_secs: i64) -> KeyedPrint {
        KeyedPrint {
            key: "k".into(),
            print: print.into(),
            obtained_at: Utc::now() - TimeDelta::seconds(age_secs),
        }
    }

    /// The same, of a token saved.
    fn saved(print: &str, age_secs: i64) -> KeyedPrint {
        spend(print, age_secs)
    }

    #[test]
    fn an_older_refresh_token_than_the_newest_saved_is_refused() {
        let mut record = SpendRecord::default();
        assert_eq!(
            apply(&mut record, &changes(&[], &[saved("new", 10)])),
            vec![]
        );
        let answers = apply(&mut record, &changes(&[spend("old", 100)], &[]));
        assert!(
            matches!(&answers[..], [Some(Refusal::Retired(n))] if n.print == "new" && n.host == "here"),
            "{answers:?}"
        );
        assert!(
            record.spending.is_empty(),
            "a refused token is not recorded as leaving"
        );
    }

    #[test]
    fn the_same_refresh_token_or_a_newer_token_may_be_sent() {
        let mut record = SpendRecord::default();
        apply(&mut record, &changes(&[], &[saved("kept", 10)]));
        // A server that keeps its refresh token: an older copy of the vault holds the same.
        let same = apply(&mut record, &changes(&[spend("kept", 100)], &[]));
        assert_eq!(same, vec![None]);
        record.spending.clear();
        // A new login after the record (by a build that records nothing, say).
        let newer = apply(&mut record, &changes(&[spend("login", 1)], &[]));
        assert_eq!(newer, vec![None]);
        assert_eq!(record.spending.len(), 1);
    }

    #[test]
    fn a_refresh_token_on_its_way_elsewhere_is_refused() {
        let mut record = SpendRecord {
            spending: vec![Intent {
                print: "p".into(),
                host: "another machine".into(),
                pid: 1,
                since: Utc::now(),
            }],
            ..SpendRecord::default()
        };
        let answers = apply(&mut record, &changes(&[spend("p", 5)], &[]));
        assert!(
            matches!(&answers[..], [Some(Refusal::InFlight(i))] if i.host == "another machine")
        );
    }
}
