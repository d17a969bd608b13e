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
use super::lease::{Leases, Which};

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

    /// Waits until `turn` is free, until `until` at most, and takes it until the returned
    /// guard is dropped; `None` when it stayed taken (or, for a lease's record, the lease was
    /// not held) until then.
    pub(super) fn take_turn<'a>(&'a self, turn: Turn<'a>, until: Instant) -> Option<TurnGuard<'a>> {
        let mut state = self.lock();
        loop {
            if let Some(taken) = state.flag(turn)
                && !*taken
            {
                *taken = true;
                return Some(TurnGuard { shared: self, turn });
            }
            if Instant::now() >= until {
                return None;
            }
            state = self.wait(state, until);
        }
    }
}

/// Work one thread of the process does at a time, the others waiting their turn.
#[derive(Clone, Copy)]
pub(super) enum Turn<'a> {
    /// Writing kept tokens back ([`super::Store::write_back_kept`]).
    WriteBack,
    /// Writing the record under the lease `which` ([`super::Lease::record_spending`]).
    Record(&'a Which),
}

impl State {
    /// Whether `turn` is taken, as its flag; `None` while it cannot be had (the lease whose
    /// record it is not held).
    fn flag(&mut self, turn: Turn<'_>) -> Option<&mut bool> {
        match turn {
            Turn::WriteBack => Some(&mut self.writing_back),
            Turn::Record(which) => self.leases.recording(which),
        }
    }
}

/// A turn taken ([`Shared::take_turn`]); given up on drop.
pub(super) struct TurnGuard<'a> {
    shared: &'a Shared,
    turn: Turn<'a>,
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        if let Some(taken) = self.shared.lock().flag(self.turn) {
            *taken = false;
        }
        self.shared.signal();
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
