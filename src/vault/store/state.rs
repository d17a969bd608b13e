//! What the store keeps in memory, under its one lock: the decrypted cache, the leases this
//! process holds ([`super::lease`]), and whose turn it is to write kept tokens back.
//!
//! The lock is held while the cache is read or changed, which may ask the backend (a read,
//! a save). It is never held while waiting for another process: a lease is taken, recorded
//! under and released with the lock let go, its slot marked meanwhile, and a thread that
//! needs the slot or the turn waits on the one condition, which every change of them signals.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::cache::Cache;
use super::lease::Leases;

/// The store's one lock and the condition its waiters sleep on.
pub(super) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// Everything under the lock.
pub(super) struct State {
    pub(super) cache: Cache,
    pub(super) leases: Leases,
    /// Whether a thread is writing kept tokens back ([`super::Store::write_back_kept`]).
    writing_back: bool,
}

impl Shared {
    pub(super) fn new(cache: Cache) -> Self {
        Self {
            state: Mutex::new(State {
                cache,
                leases: Leases::default(),
                writing_back: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// Takes the lock. A thread that panicked under it left the state whole: every change
    /// under the lock is made in one step, after the backend answered.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets the lock go until a slot or the turn changes, or `until` passed.
    pub(super) fn wait<'a>(
        &self,
        state: MutexGuard<'a, State>,
        until: Instant,
    ) -> MutexGuard<'a, State> {
        let left = until.saturating_duration_since(Instant::now());
        self.changed
            .wait_timeout(state, left)
            .map_or_else(|e| e.into_inner().0, |(state, _)| state)
    }

    /// Wakes every waiter: a slot or the turn changed.
    pub(super) fn signal(&self) {
        self.changed.notify_all();
    }

    /// Waits for the turn to write kept tokens back, until `until` at most, and takes it
    /// until the turn is dropped; `None` when another thread kept it until then.
    pub(super) fn write_back_turn(&self, until: Instant) -> Option<WriteBackTurn<'_>> {
        let mut state = self.lock();
        while state.writing_back {
            if Instant::now() >= until {
                return None;
            }
            state = self.wait(state, until);
        }
        state.writing_back = true;
        Some(WriteBackTurn(self))
    }
}

/// The turn to write kept tokens back; given up on drop.
pub(super) struct WriteBackTurn<'a>(&'a Shared);

impl Drop for WriteBackTurn<'_> {
    fn drop(&mut self) {
        self.0.lock().writing_back = false;
        self.0.signal();
    }
}

/// The lock held for the cache: what most of the store reads and changes.
pub(super) struct CacheGuard<'a>(pub(super) MutexGuard<'a, State>);

impl std::ops::Deref for CacheGuard<'_> {
    type Target = Cache;

    fn deref(&self) -> &Cache {
        &self.0.cache
    }
}

impl std::ops::DerefMut for CacheGuard<'_> {
    fn deref_mut(&mut self) -> &mut Cache {
        &mut self.0.cache
    }
}
