//! The lease on the vault as this process holds it: shared by every task, released when the
//! last share is dropped, and what it records of refresh tokens on their way.

use std::sync::{Arc, Mutex};

use super::lock_ignoring_poison;
use crate::vault::backend::{INTENT_STANDS_FOR, Intent, LeaseGuard};
use crate::vault::error::VaultError;

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
    /// [`super::backend::HeldLease::may_spend`]).
    pub fn may_spend(&self) -> bool {
        lock_ignoring_poison(&self.state)
            .guard
            .as_ref()
            .is_none_or(|guard| guard.may_spend())
    }
}

/// Another share of the same lease (held until every share is dropped): for blocking work
/// under it on another thread.
impl Clone for Lease {
    fn clone(&self) -> Self {
        lock_ignoring_poison(&self.state).holders += 1;
        Self {
            state: self.state.clone(),
        }
    }
}

impl Lease {
    /// Records, where every process and machine sharing the vault sees it, that process `pid`
    /// of `host` is about to send the refresh token printed `print` ([`Intent`]). When another
    /// process's record for it stands ([`Intent::stands_against`]), nothing is recorded and
    /// that record is returned: the token must not be sent. Recording is also the check that
    /// the store takes writes now.
    pub fn intend_to_spend(
        &self,
        print: &str,
        (host, pid): (&str, u32),
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Intent>, VaultError> {
        let state = lock_ignoring_poison(&self.state);
        let Some(guard) = state.guard.as_ref() else {
            return Ok(None);
        };
        let mut intents = guard.intents()?;
        // Records of gone processes of this machine, and old ones, are dropped.
        let own = |i: &Intent| i.host == host && i.pid == pid;
        intents.retain(|i| {
            now - i.since < INTENT_STANDS_FOR && (own(i) || i.stands_against(host, pid))
        });
        if let Some(standing) = intents
            .iter()
            .find(|i| i.print == print && i.stands_against(host, pid))
        {
            return Ok(Some(standing.clone()));
        }
        intents.retain(|i| i.print != print);
        intents.push(Intent {
            print: print.to_string(),
            host: host.to_string(),
            pid,
            since: now,
        });
        guard.record_intents(&intents).map(|()| None)
    }

    /// Clears the record of the refresh token printed `print`: its answer is saved, or it
    /// never left.
    pub fn settle(&self, print: &str) -> Result<(), VaultError> {
        let state = lock_ignoring_poison(&self.state);
        let Some(guard) = state.guard.as_ref() else {
            return Ok(());
        };
        let mut intents = guard.intents()?;
        let before = intents.len();
        intents.retain(|i| i.print != print);
        if intents.len() == before {
            return Ok(());
        }
        guard.record_intents(&intents)
    }
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
