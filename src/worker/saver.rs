//! Group commit: one task owns writing the vault for the worker.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::vault::{Profile, StoreHandle, VaultError};

/// Why a change was not saved. One failed write fails every change it carried, so the
/// store's error is shared.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SaveError {
    #[error("profile '{0}' was removed meanwhile")]
    Removed(String),
    #[error(transparent)]
    Store(Arc<VaultError>),
}

/// A change to one profile, applied by the saver.
pub type Change = Box<dyn FnMut(&mut Profile) + Send>;

pub struct SaveRequest {
    /// The profile the change is to.
    pub profile: String,
    pub change: Change,
    /// The profile as saved, or why it was not.
    pub reply: oneshot::Sender<Result<Profile, SaveError>>,
}

/// Most changes written in one save.
const MAX_BATCH: usize = 512;

/// `first` and whatever else waits in `rx` already, up to `max` in all: what one write takes.
pub fn batch_from<T>(first: T, rx: &mut mpsc::UnboundedReceiver<T>, max: usize) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(more) => batch.push(more),
            Err(_) => break,
        }
    }
    batch
}

/// Group commit: one task owns writing. It takes every change waiting in the queue, applies
/// them all, saves the vault once, and only then answers each job. Under load many tokens
/// share one write, and no job hears "saved" before its token is on disk.
pub fn spawn_saver(store: StoreHandle) -> mpsc::UnboundedSender<SaveRequest> {
    let (tx, mut rx) = mpsc::unbounded_channel::<SaveRequest>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let batch = batch_from(first, &mut rx, MAX_BATCH);
            tracing::debug!(changes = batch.len(), "saving the vault");
            let (changes, replies): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .map(|r| ((r.profile.clone(), r.change), (r.profile, r.reply)))
                .unzip();
            let saved = store
                .run(move |store| {
                    store.update_profiles(changes.into_iter().map(|(name, mut change)| {
                        (name, move |p: &mut Profile| {
                            change(p);
                            p.clone()
                        })
                    }))
                })
                .await;
            let failed = match saved {
                Ok(outcomes) => {
                    for ((name, reply), outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome.ok_or(SaveError::Removed(name)));
                    }
                    continue;
                }
                Err(e) => SaveError::Store(Arc::new(e)),
            };
            for (_, reply) in replies {
                let _ = reply.send(Err(failed.clone()));
            }
        }
    });
    tx
}
