//! The one way async code reaches the store. [`Store`] is synchronous: it reads files, takes
//! locks and asks OpenBao with a blocking client, none of which may run on a runtime's
//! threads. A [`StoreHandle`] runs each piece of store work on tokio's blocking pool and
//! awaits it, so an async caller holds a handle, never the store itself.

use std::sync::Arc;

use super::error::Interrupted;
use super::location::Location;
use super::store::Store;

/// The store, for async code: every call runs on the blocking pool.
#[derive(Clone)]
pub struct StoreHandle {
    store: Arc<Store>,
}

impl StoreHandle {
    /// Hands `store`, opened on a blocking thread, to async code.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Runs `work` on the store, on the blocking pool, and waits for what it returns. A
    /// panic in `work` is logged and returned as [`Interrupted::Failed`]: a job whose save
    /// panicked still ends with an answer.
    pub async fn run<T, E>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Interrupted> + Send + 'static,
    {
        let store = self.store.clone();
        match on_the_pool(move || work(&store)).await {
            Ok(done) => done,
            Err(e) => Err(e.into()),
        }
    }

    /// Where the vault is: known since it was opened, so no work for the pool.
    pub fn location(&self) -> &Location {
        self.store.location()
    }
}

/// Runs blocking `work` (the store's, the setup of a blocking client, the agent's lock file)
/// on the blocking pool and waits for it; a panic in it is logged and told as
/// [`Interrupted::Failed`].
pub async fn on_the_pool<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Interrupted> {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => Ok(done),
        Err(e) if e.is_panic() => {
            tracing::error!(error = %e, "blocking work panicked");
            Err(Interrupted::Failed)
        }
        Err(_) => Err(Interrupted::Stopping),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::crypto::{IdentityFile, Sealing, Unlock};
    use crate::vault::{VaultData, VaultError};

    #[test]
    fn work_runs_off_the_runtime_thread_and_a_panic_comes_back_as_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let id = IdentityFile::generate(&dir.path().join("key.txt")).unwrap();
        let sealing = Sealing::Recipients(id.recipients.clone());
        let vault = dir.path().join("vault.age");
        let store = Store::create(&vault, VaultData::default(), sealing, Unlock::Identity(id));
        let handle = StoreHandle::new(Arc::new(store.unwrap()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let caller = std::thread::current().id();
        let (profiles, ran_on) = runtime
            .block_on(handle.run(|store| {
                let profiles = store.read(|data| data.profiles.len())?;
                Ok::<_, VaultError>((profiles, std::thread::current().id()))
            }))
            .unwrap();
        assert_eq!(profiles, 0);
        assert_ne!(ran_on, caller, "the work ran on the runtime's thread");
        let failed = runtime.block_on(
            handle.run(|_| -> Result<(), VaultError> { panic!("a defect in vault work") }),
        );
        assert!(
            matches!(failed, Err(VaultError::Interrupted(Interrupted::Failed))),
            "{failed:?}"
        );
        assert_eq!(handle.location().file(), Some(vault.as_path()));
    }
}
