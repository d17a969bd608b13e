//! The lease across machines: a lock entry beside the vault (`PATH.lock`), taken and renewed
//! with check-and-set, holding who holds it and for how long, released when dropped, and
//! taken over by others only once it expired.
//!
//! Expiry is judged on the server's clock: a lock version's creation time against the `Date`
//! of the answer that read it. The holder counts its lease from the moment it sent the write
//! that took or renewed it, on its own monotonic clock, which is earlier than the creation
//! time the server records: the holder always believes its lease ends before any other
//! machine may take it over. Machines' wall clocks never enter into it.
//!
//! An OAuth server cannot check a fencing token, so the rule that keeps the rotation chain
//! whole is a time rule: a refresh token is only sent while the lease has more left than the
//! request and the save that follows it can take ([`LeaseTiming::needed_to_spend`]).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::api::{Api, Found, Secret, Written};
use crate::vault::backend::HeldLease;
use crate::vault::error::VaultError;
use crate::vault::location::KvPath;

/// How long a lease lasts, and how much of it a refresh needs. All follow from the HTTP
/// timeout `T`: a refresh request takes at most `T`, and so does the save of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a lease lasts after each renewal: `3T + 4s`.
    pub ttl: Duration,
    /// How often the holder renews it: `T/2`, at least half a second.
    pub renew_every: Duration,
    /// Lease left that a refresh token may be sent with: `2T + 2s` (the request, the save,
    /// and a margin for scheduling).
    pub needed_to_spend: Duration,
}

impl LeaseTiming {
    pub fn for_http_timeout(timeout: Duration) -> Self {
        let needed_to_spend = timeout * 2 + Duration::from_secs(2);
        Self {
            ttl: needed_to_spend + timeout + Duration::from_secs(2),
            renew_every: (timeout / 2).max(Duration::from_millis(500)),
            needed_to_spend,
        }
    }
}

/// Who this process is, as a lock entry names it.
#[derive(Debug, Clone)]
pub struct Holder {
    /// Host, pid and a random id: unique to one opened store.
    pub id: String,
}

impl Default for Holder {
    fn default() -> Self {
        let host = crate::platform::host_name();
        let id = format!(
            "{host} pid {} {:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        Self { id }
    }
}

/// What a lock entry says.
struct Record {
    holder: String,
    ttl: Duration,
    released: bool,
}

impl Record {
    fn of(secret: &Secret) -> Option<Self> {
        Some(Self {
            holder: secret.fields.get("holder")?.as_str()?.to_string(),
            ttl: Duration::from_millis(secret.fields.get("ttl_ms")?.as_u64()?),
            released: secret.fields.get("state").and_then(Value::as_str) == Some("released"),
        })
    }

    /// Whether the lease this entry grants is over, on the server's clock. Without a `Date`
    /// from the server, this machine's clock stands in with a margin for skew.
    fn expired(&self, secret: &Secret) -> bool {
        if self.released {
            return true;
        }
        let Some(created) = secret.created else {
            return false;
        };
        let (now, skew) = match secret.server_now {
            Some(server) => (server, Duration::from_secs(1)),
            None => (chrono::Utc::now(), Duration::from_secs(10)),
        };
        (now - created)
            .to_std()
            .is_ok_and(|held| held > self.ttl + skew)
    }
}

fn fields(holder: &str, ttl: Duration, state: &str) -> serde_json::Map<String, Value> {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    match json!({ "holder": holder, "ttl_ms": ttl_ms, "state": state }) {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// What stood in the way of taking the lease.
pub enum Taken {
    Held(Box<dyn HeldLease>),
    /// Another holder's lease is running: who it is.
    Busy(String),
}

/// Tries once to take the lease at `lock`.
pub fn try_take(
    api: &Api,
    lock: &KvPath,
    holder: &Holder,
    timing: LeaseTiming,
) -> Result<Taken, VaultError> {
    let cas = match api.read(lock)? {
        Found::Nothing { version } => version,
        Found::Secret(secret) => match Record::of(&secret) {
            Some(record) if record.holder != holder.id && !record.expired(&secret) => {
                return Ok(Taken::Busy(record.holder));
            }
            _ => secret.version,
        },
    };
    let sent = Instant::now();
    match api.write(lock, &fields(&holder.id, timing.ttl, "held"), cas)? {
        Written::Conflict => Ok(Taken::Busy("another process, just now".into())),
        Written::Stored { version } => Ok(Taken::Held(Box::new(Held::start(
            api.clone(),
            lock.clone(),
            holder.id.clone(),
            timing,
            Grant {
                version,
                until: sent + timing.ttl,
            },
        )))),
    }
}

/// The lock entry's version this holder wrote last, and until when the lease runs.
#[derive(Debug, Clone, Copy)]
struct Grant {
    version: u64,
    until: Instant,
}

/// A held lease: renewed on a thread of its own until dropped, then released.
struct Held {
    grant: Arc<Mutex<Grant>>,
    needed_to_spend: Duration,
    /// Tells the renewing thread to release the lease and end.
    stop: Option<mpsc::Sender<()>>,
    /// Closed by the renewing thread once it released the lease.
    released: mpsc::Receiver<()>,
    /// How long a release may take: one request.
    release_wait: Duration,
}

/// Dropping the lease releases it before going on, within one request's time: a process that
/// exits right after its save must not leave its lease for others to wait out.
impl Drop for Held {
    fn drop(&mut self) {
        self.stop.take();
        let _ = self.released.recv_timeout(self.release_wait);
    }
}

impl Held {
    fn start(api: Api, lock: KvPath, holder: String, timing: LeaseTiming, grant: Grant) -> Self {
        let shared = Arc::new(Mutex::new(grant));
        let (stop, stopped) = mpsc::channel::<()>();
        let (done, released) = mpsc::channel::<()>();
        let release_wait = api.timeout();
        let renewing = Renewal {
            api,
            lock,
            holder,
            timing,
            grant: shared.clone(),
        };
        let started = std::thread::Builder::new()
            .name("tokdeck-lease".into())
            .spawn(move || {
                renewing.run(&stopped);
                drop(done);
            });
        if let Err(e) = started {
            // Not renewed, the lease simply runs out: refreshes stop before it does.
            tracing::warn!(error = %e, "cannot start renewing the vault's lease");
        }
        Self {
            grant: shared,
            needed_to_spend: timing.needed_to_spend,
            stop: Some(stop),
            released,
            release_wait,
        }
    }
}

impl HeldLease for Held {
    fn may_spend(&self) -> bool {
        let until = lock_grant(&self.grant).until;
        until.saturating_duration_since(Instant::now()) >= self.needed_to_spend
    }
}

fn lock_grant(grant: &Mutex<Grant>) -> std::sync::MutexGuard<'_, Grant> {
    grant
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The renewing thread's part.
struct Renewal {
    api: Api,
    lock: KvPath,
    holder: String,
    timing: LeaseTiming,
    grant: Arc<Mutex<Grant>>,
}

impl Renewal {
    fn run(self, stopped: &mpsc::Receiver<()>) {
        loop {
            match stopped.recv_timeout(self.timing.renew_every) {
                Err(RecvTimeoutError::Timeout) => {
                    if !self.renew() {
                        return;
                    }
                }
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return self.release(),
            }
        }
    }

    /// Renews the lease; `false` once it is lost to another holder.
    fn renew(&self) -> bool {
        let version = lock_grant(&self.grant).version;
        let sent = Instant::now();
        match self.api.write(
            &self.lock,
            &fields(&self.holder, self.timing.ttl, "held"),
            version,
        ) {
            Ok(Written::Stored { version }) => {
                *lock_grant(&self.grant) = Grant {
                    version,
                    until: sent + self.timing.ttl,
                };
                true
            }
            Ok(Written::Conflict) => {
                tracing::warn!(lock = %self.lock.kv_name(), "the vault's lease was taken over: no more refreshes under it");
                lock_grant(&self.grant).until = Instant::now();
                false
            }
            Err(e) => {
                // Not renewed this time: the lease runs down, and refreshes stop before it ends.
                tracing::warn!(error = %e, "cannot renew the vault's lease");
                true
            }
        }
    }

    fn release(&self) {
        let version = lock_grant(&self.grant).version;
        let released = self.api.write(
            &self.lock,
            &fields(&self.holder, Duration::ZERO, "released"),
            version,
        );
        if let Err(e) = released {
            tracing::debug!(error = %e, "cannot release the vault's lease; it runs out by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_outlasts_a_refresh_and_its_save_between_renewals() {
        for secs in [1, 2, 5, 20, 60] {
            let t = Duration::from_secs(secs);
            let timing = LeaseTiming::for_http_timeout(t);
            // Just before a renewal, what is left still allows a refresh.
            let lowest_left = timing.ttl.checked_sub(timing.renew_every).unwrap();
            assert!(lowest_left > timing.needed_to_spend, "{secs}s: {timing:?}");
            // The refresh request and the save each take at most T.
            assert!(timing.needed_to_spend >= t * 2, "{secs}s");
        }
        assert_eq!(
            LeaseTiming::for_http_timeout(Duration::from_secs(2)).ttl,
            Duration::from_secs(10)
        );
    }
}
