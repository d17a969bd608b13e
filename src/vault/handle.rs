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
    /// panic in `work` goes on in the caller, as it would have without the pool.
    pub async fn run<T, E>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Interrupted> + Send + 'static,
    {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || work(&store)).await {
            Ok(done) => done,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(Interrupted.into()),
        }
    }

    /// Where the vault is: known since it was opened, so no work for the pool.
    pub fn location(&self) -> &Location {
        self.store.location()
    }
}
