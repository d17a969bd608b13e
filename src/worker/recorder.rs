//! Group commit for the records of refresh tokens on their way: one task owns writing them.
//! It takes every request waiting in the queue and applies them in one write under the
//! store's lease, then answers each: under load many refreshes share one write, and no
//! refresh token leaves before its record is where every process and machine sees it.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::vault::backend::Intent;
use crate::vault::{SpendChanges, Store, VaultError};

/// One change to the records.
pub enum RecordRequest {
    /// A refresh token about to leave: `None` once recorded, or the other process's record
    /// that stands for it.
    Intend {
        print: String,
        reply: oneshot::Sender<Result<Option<Intent>, String>>,
    },
    /// Its answer is saved, or it never left.
    Settle {
        print: String,
        reply: oneshot::Sender<Result<(), String>>,
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
            let (intend, settle) = prints(&batch);
            let written = tokio::task::spawn_blocking(move || {
                let lease = store.lease()?;
                lease.record_spending(&SpendChanges {
                    intend: &intend,
                    settle: &settle,
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

fn prints(batch: &[RecordRequest]) -> (Vec<String>, Vec<String>) {
    let mut intend = Vec::new();
    let mut settle = Vec::new();
    for request in batch {
        match request {
            RecordRequest::Intend { print, .. } => intend.push(print.clone()),
            RecordRequest::Settle { print, .. } => settle.push(print.clone()),
        }
    }
    (intend, settle)
}

/// Answers each request of `batch` from what the write gave.
fn answer(batch: Vec<RecordRequest>, written: Result<Vec<Option<Intent>>, VaultError>) {
    let mut standing = match written {
        Ok(answers) => Ok(answers.into_iter()),
        Err(e) => Err(e.to_string()),
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
