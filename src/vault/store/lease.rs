//! The lease on the vault as this process holds it: shared by every task, released when the
//! last share is dropped, and what it records of refresh tokens on their way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::lock_ignoring_poison;
use crate::vault::backend::{INTENT_STANDS_FOR, Intent, LeaseGuard, Newest, SpendRecord};
use crate::vault::error::VaultError;

/// The leases of this process, in one home: the vault's, and the lock of each profile's
/// entry it holds or held, by record key ([`super::locks`]). Each has its own state, shared
/// by the process's tasks and held across the backend's I/O (a refresh, a save), so taking
/// one never waits for another, nor for a reader of the cache.
#[derive(Default)]
pub(super) struct Leases {
    vault: Arc<Mutex<LeaseState>>,
    entries: Mutex<HashMap<String, Arc<Mutex<LeaseState>>>>,
    /// How many times one was taken: what was read before counts as current no longer, as
    /// another process may have saved until then.
    taken: AtomicU64,
}

impl Leases {
    /// The state of the vault's lease.
    pub(super) fn vault(&self) -> &Arc<Mutex<LeaseState>> {
        &self.vault
    }

    /// The state of the lock of the entry with key `key`, new when never taken.
    pub(super) fn entry(&self, key: &str) -> Arc<Mutex<LeaseState>> {
        lock_ignoring_poison(&self.entries)
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// Whether this process holds the vault's lease, or the lock of the entry `key`.
    pub(super) fn holds_vault_or_entry(&self, key: &str) -> bool {
        let held = |state: &Mutex<LeaseState>| lock_ignoring_poison(state).holders > 0;
        held(&self.vault)
            || lock_ignoring_poison(&self.entries)
                .get(key)
                .is_some_and(|state| held(state))
    }

    /// Whether `lease` is a share of the vault's lease (not an entry's lock).
    pub(super) fn is_vaults(&self, lease: &Lease) -> bool {
        Arc::ptr_eq(&lease.state, &self.vault)
    }

    /// Counts a lease or lock just taken (see [`Leases::taken`]).
    pub(super) fn count_taken(&self) {
        self.taken.fetch_add(1, Ordering::SeqCst);
    }

    /// How many leases and locks were taken so far.
    pub(super) fn taken(&self) -> u64 {
        self.taken.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
pub(super) struct LeaseState {
    pub(super) holders: usize,
    pub(super) guard: Option<LeaseGuard>,
}

/// A held write lock on the vault; shared by every task of this process, released on drop.
pub struct Lease {
    pub(super) state: Arc<Mutex<LeaseState>>,
}

impl Lease {
    /// Whether a single-use secret (a refresh token) may be sent under this lease now: it
    /// will outlast the request and the save of its answer (see
    /// `HeldLease::may_spend` in `vault/backend`).
    pub fn may_spend(&self) -> bool {
        lock_ignoring_poison(&self.state)
            .guard
            .as_ref()
            .is_none_or(|guard| guard.may_spend())
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
        let state = lock_ignoring_poison(&self.state);
        let Some(guard) = state.guard.as_ref() else {
            return Ok(vec![None; changes.intend.len()]);
        };
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

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = lock_ignoring_poison(&self.state);
        state.holders = state.holders.saturating_sub(1);
        if state.holders == 0 {
            state.guard = None;
        }
    }
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
