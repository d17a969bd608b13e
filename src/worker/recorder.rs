//! Group commit for the records of refresh tokens on their way: one task owns writing them.
//! It takes every request waiting in the queue and applies them in one write under the
//! store's lease, then answers each: under load many refreshes share one write, and no
//! refresh token leaves before its record is where every process and machine sees it.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::vault::{KeyedPrint, Refusal, SpendChanges, Store, VaultError};

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
        print: Option<String>,
        saved: Option<Printed>,
        reply: oneshot::Sender<Result<(), Arc<VaultError>>>,
    },
}

/// Most requests written in one go.
const MAX_BATCH: usize = 512;

/// Starts the task that writes the records for `store`, as this process of `host`.
pub fn spawn_recorder(
    store: Arc<Store>,
    host: String,
    clock: Clock,
) -> mpsc::UnboundedSender<RecordRequest> {
    let (tx, mut rx) = mpsc::unbounded_channel::<RecordRequest>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let batch = super::saver::batch_from(first, &mut rx, MAX_BATCH);
            let (store, host, now) = (store.clone(), host.clone(), clock.now());
            let asked = asked_of(&batch);
            let written = tokio::task::spawn_blocking(move || {
                let (intend, settle, saved) = changes(&store, &asked);
                let lease = store.lease()?;
                lease.record_spending(&SpendChanges {
                    intend: &intend,
                    settle: &settle,
                    saved: &saved,
                    host: &host,
                    pid: std::process::id(),
                    now,
                })
            })
            .await
            .unwrap_or_else(|e| Err(VaultError::Encrypt(format!("internal error: {e}"))));
            answer(batch, written);
        }
    });
    tx
}

/// What each request of a batch asks, without its reply.
enum Asked {
    Intend(Printed),
    Settle(Option<String>, Option<Printed>),
}

fn asked_of(batch: &[RecordRequest]) -> Vec<Asked> {
    batch
        .iter()
        .map(|request| match request {
            RecordRequest::Intend { spend, .. } => Asked::Intend(spend.clone()),
            RecordRequest::Settle { print, saved, .. } => {
                Asked::Settle(print.clone(), saved.clone())
            }
        })
        .collect()
}

/// The changes `asked` makes to the records, with each profile by its key.
fn changes(store: &Store, asked: &[Asked]) -> (Vec<KeyedPrint>, Vec<String>, Vec<KeyedPrint>) {
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
            Asked::Settle(print, stored) => {
                settle.extend(print.clone());
                saved.extend(stored.as_ref().map(keyed));
            }
        }
    }
    (intend, settle, saved)
}

/// Answers each request of `batch` from what the write gave.
fn answer(batch: Vec<RecordRequest>, written: Result<Vec<Option<Refusal>>, VaultError>) {
    let mut standing = match written {
        Ok(answers) => Ok(answers.into_iter()),
        Err(e) => Err(Arc::new(e)),
    };
    for request in batch {
        match request {
            RecordRequest::Intend { reply, .. } => {
                let one = match &mut standing {
                    Ok(answers) => Ok(answers.next().flatten()),
                    Err(e) => Err(e.clone()),
                };
                let _ = reply.send(one);
            }
            RecordRequest::Settle { reply, .. } => {
                let _ = reply.send(standing.as_ref().map(|_| ()).map_err(Clone::clone));
            }
        }
    }
}
