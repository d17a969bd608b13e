//! The lease a job holds while it runs, and how it lets go of it.

use crate::vault::Lease;

/// A lease a job holds ([`crate::vault::Store::lease_for`]). Releasing it is a request to
/// the store, which no runtime thread waits for: it is released on a blocking thread (the
/// runtime waits for those before it ends, so a process never exits holding it).
pub(in crate::worker) struct JobLease(pub(in crate::worker) Option<Lease>);

impl JobLease {
    /// Whether a refresh token may be sent under it now ([`Lease::may_spend`]).
    pub(in crate::worker) fn may_spend(&self) -> bool {
        self.0.as_ref().is_some_and(Lease::may_spend)
    }
}

impl Drop for JobLease {
    fn drop(&mut self) {
        let Some(lease) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || drop(lease));
            }
            Err(_) => drop(lease),
        }
    }
}
