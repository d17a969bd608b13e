//! Group commit: one task owns writing the vault for the worker.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::vault::{Profile, Store, VaultData};

/// A change to one profile, applied by the saver.
pub type Change = Box<dyn FnOnce(&mut VaultData) -> Result<Profile, String> + Send>;

pub struct SaveRequest {
    /// The change; its result is the profile as saved.
    pub change: Change,
    pub reply: oneshot::Sender<Result<Profile, String>>,
}

/// Most changes written in one save.
const MAX_BATCH: usize = 512;

/// Group commit: one task owns writing. It takes every change waiting in the queue, applies
/// them all, saves the vault once, and only then answers each job. Under load many tokens
/// share one write, and no job hears "saved" before its token is on disk.
pub fn spawn_saver(store: Arc<Store>) -> mpsc::UnboundedSender<SaveRequest> {
    let (tx, mut rx) = mpsc::unbounded_channel::<SaveRequest>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(more) => batch.push(more),
                    Err(_) => break,
                }
            }
            tracing::debug!(changes = batch.len(), "saving the vault");
            let (changes, replies): (Vec<Change>, Vec<_>) =
                batch.into_iter().map(|r| (r.change, r.reply)).unzip();
            let store = store.clone();
            let saved = tokio::task::spawn_blocking(move || {
                store.update(|data| {
                    Ok::<_, std::convert::Infallible>(
                        changes.into_iter().map(|c| c(data)).collect::<Vec<_>>(),
                    )
                })
            })
            .await;
            match saved {
                Ok(Ok(Ok(results))) => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                }
                Ok(Ok(Err(never))) => match never {},
                Ok(Err(e)) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(format!("internal error: {e}")));
                    }
                }
            }
        }
    });
    tx
}
