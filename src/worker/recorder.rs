//! Group commit for the records of refresh tokens on their way: one task owns writing them.
//! It takes every request waiting in the queue and applies them in one write per lease they
//! live under (the vault's lease, or in a vault laid out as entries each profile's lock),
//! then answers each: under load many refreshes share one write, and no refresh token leaves
//! before its record is where every process and machine sees it.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::vault::{
    Interrupted, KeyedPrint, Lease, Refusal, SpendChanges, Store, StoreHandle, VaultError,
};

/// A refresh token of profile `profile`, by its print, of a token obtained at `obtained_at`.
#[derive(Debug, Clone)]
pub struct Printed {
    pub profile: String,
    pub print: String,
    pub obtained_at: chrono::DateTime<chrono::Utc>,
}

/// One change to the records.
pub enum RecordRequest {
    /// A refresh token about to leave: `None` once recorded, or why it must not.
    Intend {
        spend: Printed,
        reply: oneshot::Sender<Result<Option<Refusal>, Arc<VaultError>>>,
    },
    /// The answer to `print` is saved, or it never left; `saved` is the token now stored,
    /// when one was.
    Settle {
        profile: String,
        print: Option<String>,
        saved: Option<Printed>,
        reply: oneshot::Sender<Result<(), Arc<VaultError>>>,
    },
}

/// Most requests written in one go.
const MAX_BATCH: usize = 512;

/// Starts the task that writes the records for `store`, as this process of `host`.
pub fn spawn_recorder(
    store: StoreHandle,
    host: String,
    clock: Clock,
) -> mpsc::UnboundedSender<RecordRequest> {
    let (tx, mut rx) = mpsc::unbounded_channel::<RecordRequest>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let batch = super::saver::batch_from(first, &mut rx, MAX_BATCH);
            let (host, now) = (host.clone(), clock.now());
            let asked = asked_of(&batch);
            let written = store
                .run(move |store| {
                    let changed = Changed { host: &host, now };
                    Ok::<_, Interrupted>(record_each_lease(store, &asked, &changed))
                })
                .await
                .unwrap_or_else(|e| vec![Err(Arc::new(VaultError::from(e))); batch.len()]);
            answer(batch, written);
        }
    });
    tx
}

/// This process, as the records name it, and the time of a batch.
struct Changed<'a> {
    host: &'a str,
    now: chrono::DateTime<chrono::Utc>,
}

/// What each request of `asked` came to: the requests grouped by the lease their profile's
/// record lives under, each group applied in one write.
fn record_each_lease(store: &Store, asked: &[Asked], changed: &Changed<'_>) -> Vec<Answer> {
    let mut groups: Vec<(Lease, Vec<usize>)> = Vec::new();
    let mut answers: Vec<Answer> = vec![Ok(None); asked.len()];
    for (at, one) in asked.iter().enumerate() {
        match store.lease_for(one.profile()) {
            Ok(lease) => match groups.iter_mut().find(|(held, _)| held.same_as(&lease)) {
                Some((_, members)) => members.push(at),
                None => groups.push((lease, vec![at])),
            },
            Err(e) => answers[at] = Err(Arc::new(e)),
        }
    }
    // Each lease is a write of its own (a profile's lock in a vault laid out as entries):
    // several at once, as entries are read.
    let written = crate::vault::parallel::on_threads(&groups, GROUP_WRITERS, |group| {
        write_group(store, asked, changed, group)
    });
    for outcome in written.into_iter().flatten().flatten() {
        if let Some(slot) = answers.get_mut(outcome.0) {
            *slot = outcome.1;
        }
    }
    answers
}

/// How many leases' records are written at once.
const GROUP_WRITERS: usize = 8;

/// Applies the requests `members` of `asked` to the record under `lease`, in one write;
/// what each came to, by its place in `asked`.
fn write_group(
    store: &Store,
    asked: &[Asked],
    changed: &Changed<'_>,
    (lease, members): &(Lease, Vec<usize>),
) -> Vec<(usize, Answer)> {
    let group: Vec<&Asked> = members.iter().filter_map(|&at| asked.get(at)).collect();
    let (intend, settle, saved) = changes(store, &group);
    let written = lease.record_spending(&SpendChanges {
        intend: &intend,
        settle: &settle,
        saved: &saved,
        host: changed.host,
        pid: std::process::id(),
        now: changed.now,
    });
    let mut refusals = match written {
        Ok(refusals) => Ok(refusals.into_iter()),
        Err(e) => Err(Arc::new(e)),
    };
    members
        .iter()
        .zip(&group)
        .map(|(&at, one)| {
            let outcome = match (&mut refusals, one) {
                (Ok(each), Asked::Intend(_)) => Ok(each.next().flatten()),
                (Ok(_), Asked::Settle(..)) => Ok(None),
                (Err(e), _) => Err(e.clone()),
            };
            (at, outcome)
        })
        .collect()
}

/// What one request came to: for an intent, `None` once recorded, or why it must not leave.
type Answer = Result<Option<Refusal>, Arc<VaultError>>;

/// What each request of a batch asks, without its reply.
enum Asked {
    Intend(Printed),
    Settle(String, Option<String>, Option<Printed>),
}

impl Asked {
    /// The profile whose record it changes.
    fn profile(&self) -> &str {
        match self {
            Asked::Intend(spend) => &spend.profile,
            Asked::Settle(profile, ..) => profile,
        }
    }
}

fn asked_of(batch: &[RecordRequest]) -> Vec<Asked> {
    batch
        .iter()
        .map(|request| match request {
            RecordRequest::Intend { spend, .. } => Asked::Intend(spend.clone()),
            RecordRequest::Settle {
                profile,
                print,
                saved,
                ..
            } => Asked::Settle(profile.clone(), print.clone(), saved.clone()),
        })
        .collect()
}

/// The changes `asked` makes to the records, with each profile by its key.
fn changes(store: &Store, asked: &[&Asked]) -> (Vec<KeyedPrint>, Vec<String>, Vec<KeyedPrint>) {
    let keyed = |p: &Printed| KeyedPrint {
        key: store.record_key(&p.profile),
        print: p.print.clone(),
        obtained_at: p.obtained_at,
    };
    let mut intend = Vec::new();
    let mut settle = Vec::new();
    let mut saved = Vec::new();
    for asked in asked {
        match asked {
            Asked::Intend(spend) => intend.push(keyed(spend)),
            Asked::Settle(_, print, stored) => {
                settle.extend(print.clone());
                saved.extend(stored.as_ref().map(keyed));
            }
        }
    }
    (intend, settle, saved)
}

/// Answers each request of `batch` from what its write gave.
fn answer(batch: Vec<RecordRequest>, written: Vec<Answer>) {
    for (request, outcome) in batch.into_iter().zip(written) {
        match request {
            RecordRequest::Intend { reply, .. } => {
                let _ = reply.send(outcome);
            }
            RecordRequest::Settle { reply, .. } => {
                let _ = reply.send(outcome.map(|_| ()));
            }
        }
    }
}
