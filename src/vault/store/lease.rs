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

/// Changes to the records of refresh tokens on their way ([`Intent`]), written together.
#[derive(Debug)]
pub struct SpendChanges<'a> {
    /// Prints of refresh tokens about to be sent by this process.
    pub intend: &'a [String],
    /// Prints whose answers are saved, or that never left.
    pub settle: &'a [String],
    /// This process: its machine and pid.
    pub host: &'a str,
    pub pid: u32,
    pub now: chrono::DateTime<chrono::Utc>,
}

impl Lease {
    /// Applies `spending` where every process and machine sharing the vault sees it, in one
    /// write: settled records go, and each refresh token to be sent is recorded, unless
    /// another process's record for it stands ([`Intent::stands_against`]), which is then
    /// returned in its place: that token must not be sent. Recording is also the check that
    /// the store takes writes now: when the write fails, nothing may be sent.
    pub fn record_spending(
        &self,
        spending: &SpendChanges<'_>,
    ) -> Result<Vec<Option<Intent>>, VaultError> {
        let SpendChanges {
            intend,
            settle,
            host,
            pid,
            now,
        } = *spending;
        let state = lock_ignoring_poison(&self.state);
        let Some(guard) = state.guard.as_ref() else {
            return Ok(vec![None; intend.len()]);
        };
        let mut intents = guard.intents()?;
        let before = intents.clone();
        // Records of gone processes of this machine, and old ones, are dropped.
        let own = |i: &Intent| i.host == host && i.pid == pid;
        intents.retain(|i| {
            now - i.since < INTENT_STANDS_FOR
                && (own(i) || i.stands_against(host, pid))
                && !(own(i) && settle.contains(&i.print))
        });
        let mut answers = Vec::with_capacity(intend.len());
        for print in intend {
            if let Some(standing) = intents
                .iter()
                .find(|i| &i.print == print && i.stands_against(host, pid))
            {
                answers.push(Some(standing.clone()));
                continue;
            }
            intents.retain(|i| &i.print != print);
            intents.push(Intent {
                print: print.clone(),
                host: host.to_string(),
                pid,
                since: now,
            });
            answers.push(None);
        }
        if intents != before {
            guard.record_intents(&intents)?;
        }
        Ok(answers)
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
