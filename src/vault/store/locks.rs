//! The lock of one profile's entry, in a vault laid out as entries: what a refresh or an
//! exchange of that profile runs under, so a machine refreshing X never waits for one
//! refreshing Y. Each lock holds the record of its profile's refresh tokens (the intent
//! "print F, holder H" and the newest saved), as the vault's lease does for a vault in one
//! piece.
//!
//! A writer that seals every entry again (a change of members, a move out of entries) holds
//! the vault's lease, and then waits until no lock of an entry is held. A lock's taker checks
//! the vault's lease after taking the lock, and gives way when it is held: whichever writes
//! first, the other sees it.

use std::time::Instant;

use super::Store;
use super::arrange::Arrangement;
use super::lease::{Lease, Which};
use crate::vault::backend::Tried;
use crate::vault::error::VaultError;

impl Store {
    /// The lease a refresh, exchange or save of profile `name` runs under: in a vault laid
    /// out as entries the lock of its entry, else the vault's lease. Tasks of one process
    /// share it; waits up to the store's lock wait.
    pub fn lease_for(&self, name: &str) -> Result<Lease, VaultError> {
        if self.backend.entries().is_none() {
            // A file holds a vault in one piece only: nothing to read again.
            return self.lease();
        }
        if self.arrangement() == Arrangement::Single {
            let lease = self.lease()?;
            // Another machine may have moved the vault into entries since it was read.
            if self.layout_now()? == Arrangement::Single {
                return Ok(lease);
            }
        }
        self.entry_lock(name)
    }

    /// [`Store::lease_for`] of each of `names`, in one order for every process (by key), so
    /// two savers of the same profiles never hold one lock each while waiting for the other.
    pub(super) fn leases_for(&self, names: &[&str]) -> Result<Vec<Lease>, VaultError> {
        if self.arrangement() == Arrangement::Single {
            return Ok(vec![self.lease()?]);
        }
        let mut keyed: Vec<(String, &str)> = names
            .iter()
            .map(|name| (self.record_key(name), *name))
            .collect();
        keyed.sort_unstable();
        keyed.dedup();
        keyed
            .iter()
            .map(|(_, name)| self.entry_lock(name))
            .collect()
    }

    /// How the vault is laid out as stored now, read again.
    fn layout_now(&self) -> Result<Arrangement, VaultError> {
        let mut snap = self.cache();
        self.refresh_snapshot(&mut snap)?;
        drop(snap);
        Ok(self.arrangement())
    }

    /// Takes the lock of profile `name`'s entry, waiting up to the lock wait.
    fn entry_lock(&self, name: &str) -> Result<Lease, VaultError> {
        let entries = self.entries_or_refuse()?;
        let key = self.record_key(name);
        let until = Instant::now() + self.lock_wait;
        let try_once = || match entries.try_lock(&key)? {
            Tried::Held(guard) => Ok(match entries.lease_holder()? {
                None => Tried::Held(guard),
                // Released on drop: the vault's holder may be waiting for it.
                Some(who) => Tried::Busy(format!("the vault's lease, held by {who}")),
            }),
            busy @ Tried::Busy(_) => Ok(busy),
        };
        self.take_lease(&Which::Entry(key.clone()), until, try_once, |busy| {
            VaultError::Locked(format!(
                "the lock of profile '{name}' waits for {busy}; a holder that dies loses it when its lease runs out"
            ))
        })
    }

    /// Waits, holding the vault's lease, until no other process holds the lock of an entry:
    /// for a writer about to seal every entry again, which must not cross a refresh.
    /// Refuses after the lock wait, naming a holder.
    pub(super) fn wait_out_locks(&self) -> Result<(), VaultError> {
        let Some(entries) = self.backend.entries() else {
            return Ok(());
        };
        let deadline = Instant::now() + self.lock_wait;
        loop {
            let holders = entries.lock_holders()?;
            let Some(first) = holders.first() else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(VaultError::Locked(format!(
                    "{} profile(s) are being refreshed, by {first} among others: every entry is sealed again only once none is",
                    holders.len()
                )));
            }
            std::thread::sleep(self.backend.lease_retry_every());
        }
    }
}
