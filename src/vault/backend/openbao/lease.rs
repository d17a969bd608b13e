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
use crate::vault::backend::{HeldLease, Intent, Newest, SpendRecord};
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

/// What a lock entry records of refresh tokens ([`SpendRecord`]), whoever held it: it
/// outlives the holder that wrote it, and passes to the next one.
fn record_of(secret: &Secret) -> SpendRecord {
    SpendRecord {
        spending: record_field(secret, "spending"),
        newest: record_field(secret, "newest"),
    }
    .without_lapsed(chrono::Utc::now())
}

/// A part of the record: JSON text in one string field (see [`fields`]), or, as entries
/// written before, the JSON itself.
fn record_field<T: serde::de::DeserializeOwned + Default>(secret: &Secret, name: &str) -> T {
    match secret.fields.get(name) {
        Some(Value::String(text)) => serde_json::from_str(text).ok(),
        Some(value) => serde_json::from_value(value.clone()).ok(),
        None => None,
    }
    .unwrap_or_default()
}

/// The longest lease another holder's entry is trusted with, whatever it says: the lease of
/// the longest HTTP timeout a member may set. An entry claiming more (a hand-written one, a
/// member's odd setting) would otherwise wedge every refresh of the team for as long.
fn longest_lease() -> Duration {
    LeaseTiming::for_http_timeout(crate::config::MAX_HTTP_TIMEOUT).ttl
}

impl Record {
    fn of(secret: &Secret) -> Option<Self> {
        let claimed = Duration::from_millis(secret.fields.get("ttl_ms")?.as_u64()?);
        Some(Self {
            holder: secret.fields.get("holder")?.as_str()?.to_string(),
            ttl: claimed.min(longest_lease()),
            released: secret.fields.get("state").and_then(Value::as_str) == Some("released"),
        })
    }

    /// Who holds the lease and until when, on the server's clock.
    fn describe(&self, secret: &Secret) -> String {
        match secret.created.and_then(|at| {
            chrono::TimeDelta::from_std(self.ttl)
                .ok()
                .map(|ttl| at + ttl)
        }) {
            Some(until) => format!("{} until {} UTC", self.holder, until.format("%H:%M:%S")),
            None => self.holder.clone(),
        }
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

fn fields(
    holder: &str,
    ttl: Duration,
    state: &str,
    record: &SpendRecord,
) -> serde_json::Map<String, Value> {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let mut entry = serde_json::Map::new();
    // Each part of the record is JSON text in one string: OpenBao refuses a request body of
    // more than 1,000 JSON strings (`max_request_json_strings`), keys included, which the
    // record of a few hundred profiles would pass as objects.
    if !record.spending.is_empty() {
        entry.insert("spending".into(), json!(text_of(&record.spending)));
    }
    if !record.newest.is_empty() {
        entry.insert("newest".into(), json!(text_of(&record.newest)));
    }
    entry.insert("holder".into(), json!(holder));
    entry.insert("ttl_ms".into(), json!(ttl_ms));
    entry.insert("state".into(), json!(state));
    entry
}

fn text_of(part: &impl serde::Serialize) -> String {
    serde_json::to_string(part).unwrap_or_default()
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
    let (cas, record) = match api.read(lock)? {
        Found::Nothing { version } => (version, SpendRecord::default()),
        Found::Secret(secret) => match Record::of(&secret) {
            Some(record) if record.holder != holder.id && !record.expired(&secret) => {
                return Ok(Taken::Busy(record.describe(&secret)));
            }
            _ => (secret.version, record_of(&secret)),
        },
    };
    let sent = Instant::now();
    match api.write(lock, &fields(&holder.id, timing.ttl, "held", &record), cas)? {
        Written::Conflict => Ok(Taken::Busy("another process, just now".into())),
        Written::Stored { version } => Ok(Taken::Held(Box::new(Held::start(Shared {
            api: api.clone(),
            lock: lock.clone(),
            holder: holder.id.clone(),
            timing,
            grant: Mutex::new(Grant {
                version,
                until: sent + timing.ttl,
            }),
            record: Mutex::new(record),
        })))),
    }
}

/// What the lock entry at `lock` says without taking it: who holds the lease now (`None`
/// when nobody does), and the newest refresh token saved for each profile key.
pub fn peek(
    api: &Api,
    lock: &KvPath,
) -> Result<(Option<String>, std::collections::BTreeMap<String, Newest>), VaultError> {
    match api.read(lock)? {
        Found::Nothing { .. } => Ok((None, std::collections::BTreeMap::new())),
        Found::Secret(secret) => {
            let holder = Record::of(&secret)
                .filter(|record| !record.expired(&secret))
                .map(|record| record.describe(&secret));
            Ok((holder, record_of(&secret).newest))
        }
    }
}

/// Who holds the lease at `lock` now, when a holder other than `holder` does.
pub fn other_holder(
    api: &Api,
    lock: &KvPath,
    holder: &Holder,
) -> Result<Option<String>, VaultError> {
    match api.read(lock)? {
        Found::Nothing { .. } => Ok(None),
        Found::Secret(secret) => Ok(Record::of(&secret)
            .filter(|record| record.holder != holder.id && !record.expired(&secret))
            .map(|record| record.describe(&secret))),
    }
}

/// The lock entry's version this holder wrote last, and until when the lease runs.
#[derive(Debug, Clone, Copy)]
struct Grant {
    version: u64,
    until: Instant,
}

/// What the holder and its renewing thread share: every write of the lock entry goes through
/// [`Shared::write`], one at a time, so each carries the version the last one left.
struct Shared {
    api: Api,
    lock: KvPath,
    holder: String,
    timing: LeaseTiming,
    grant: Mutex<Grant>,
    record: Mutex<SpendRecord>,
}

impl Shared {
    fn grant(&self) -> std::sync::MutexGuard<'_, Grant> {
        lock_ignoring_poison(&self.grant)
    }

    /// Writes the lock entry over the version this holder wrote last, with `record` (or the
    /// one written last); extends the lease when `state` is "held". The record is locked
    /// throughout, so writes do not cross.
    fn write(&self, state: &str, record: Option<SpendRecord>) -> Result<bool, VaultError> {
        let mut current = lock_ignoring_poison(&self.record);
        let list = record.as_ref().unwrap_or(&current);
        let ttl = if state == "held" {
            self.timing.ttl
        } else {
            Duration::ZERO
        };
        let version = self.grant().version;
        let sent = Instant::now();
        match self
            .api
            .write(&self.lock, &fields(&self.holder, ttl, state, list), version)?
        {
            Written::Stored { version } => {
                *self.grant() = Grant {
                    version,
                    until: sent + ttl,
                };
                if let Some(list) = record {
                    *current = list;
                }
                Ok(true)
            }
            Written::Conflict => {
                tracing::warn!(lock = %self.lock.kv_name(), "the vault's lease was taken over: no more refreshes under it");
                self.grant().until = Instant::now();
                Ok(false)
            }
        }
    }
}

/// A held lease: renewed on a thread of its own until dropped, then released.
struct Held {
    shared: Arc<Shared>,
    /// Tells the renewing thread to release the lease and end.
    stop: Option<mpsc::Sender<()>>,
    /// Closed by the renewing thread once it released the lease (in a mutex only to be
    /// shared: it is read once, on drop, through `get_mut`).
    released: Mutex<mpsc::Receiver<()>>,
    /// How long a release may take: one request.
    release_wait: Duration,
}

/// Dropping the lease releases it before going on, within one request's time: a process that
/// exits right after its save must not leave its lease for others to wait out.
impl Drop for Held {
    fn drop(&mut self) {
        self.stop.take();
        let released = self
            .released
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = released.recv_timeout(self.release_wait);
    }
}

impl Held {
    fn start(shared: Shared) -> Self {
        let shared = Arc::new(shared);
        let (stop, stopped) = mpsc::channel::<()>();
        let (done, released) = mpsc::channel::<()>();
        let release_wait = shared.api.timeout();
        let renewing = shared.clone();
        let started = std::thread::Builder::new()
            .name("tokdeck-lease".into())
            .spawn(move || {
                renew_until_stopped(&renewing, &stopped);
                drop(done);
            });
        if let Err(e) = started {
            // Not renewed, the lease simply runs out: refreshes stop before it does.
            tracing::warn!(error = %e, "cannot start renewing the vault's lease");
        }
        Self {
            shared,
            stop: Some(stop),
            released: Mutex::new(released),
            release_wait,
        }
    }
}

impl HeldLease for Held {
    fn may_spend(&self) -> bool {
        let until = self.shared.grant().until;
        until.saturating_duration_since(Instant::now()) >= self.shared.timing.needed_to_spend
    }

    fn intents(&self) -> Result<Vec<Intent>, VaultError> {
        Ok(lock_ignoring_poison(&self.shared.record).spending.clone())
    }

    fn newest(&self, keys: &[String]) -> Result<Vec<Option<Newest>>, VaultError> {
        let record = lock_ignoring_poison(&self.shared.record);
        Ok(keys.iter().map(|k| record.newest.get(k).cloned()).collect())
    }

    fn write_record(
        &self,
        intents: Option<&[Intent]>,
        newest: &[(String, Newest)],
    ) -> Result<(), VaultError> {
        let mut record = lock_ignoring_poison(&self.shared.record).clone();
        if let Some(intents) = intents {
            record.spending = intents.to_vec();
        }
        record.newest.extend(newest.iter().cloned());
        keep_most_recent(&mut record, MOST_NEWEST);
        if self.shared.write("held", Some(record))? {
            Ok(())
        } else {
            Err(VaultError::Locked(
                "its lease was taken over by another machine".into(),
            ))
        }
    }
}

/// Most profiles whose newest refresh token the lease entry records, so that the entry stays
/// far below the 1 MiB a raft-backed OpenBao allows (about 170 bytes each); past it, those
/// refreshed longest ago go. A vault in one secret holds fewer profiles than that on raft.
const MOST_NEWEST: usize = 2_048;

/// Keeps the newest prints of at most `most` profiles in `record`: the oldest go.
fn keep_most_recent(record: &mut SpendRecord, most: usize) {
    let Some(excess) = record.newest.len().checked_sub(most) else {
        return;
    };
    let mut by_age: Vec<_> = record
        .newest
        .iter()
        .map(|(key, n)| (n.obtained_at, key.clone()))
        .collect();
    by_age.sort();
    for (_, key) in by_age.into_iter().take(excess) {
        record.newest.remove(&key);
    }
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The renewing thread: renews every `renew_every` until told to stop or the lease is lost,
/// then releases it (keeping the refresh tokens still on their way in the entry).
fn renew_until_stopped(shared: &Shared, stopped: &mpsc::Receiver<()>) {
    loop {
        match stopped.recv_timeout(shared.timing.renew_every) {
            Err(RecvTimeoutError::Timeout) => match shared.write("held", None) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    // Not renewed this time: the lease runs down, and refreshes stop before
                    // it ends.
                    tracing::warn!(error = %e, "cannot renew the vault's lease");
                }
            },
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                if let Err(e) = shared.write("released", None) {
                    tracing::debug!(error = %e, "cannot release the vault's lease; it runs out by itself");
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_prints_are_bounded_and_the_oldest_go_first() {
        let newest = |age_secs: i64| Newest {
            print: "p".into(),
            obtained_at: chrono::Utc::now() - chrono::TimeDelta::seconds(age_secs),
            host: "h".into(),
        };
        let mut record = SpendRecord::default();
        for i in 0..10 {
            record.newest.insert(format!("k{i}"), newest(100 + i));
        }
        record.newest.insert("old".into(), newest(86_400));
        keep_most_recent(&mut record, 10);
        assert_eq!(record.newest.len(), 10);
        assert!(!record.newest.contains_key("old"));
        keep_most_recent(&mut record, 4);
        let kept: Vec<&str> = record.newest.keys().map(String::as_str).collect();
        assert_eq!(kept, ["k0", "k1", "k2", "k3"]);
    }

    /// The JSON strings in `v`, keys included, as OpenBao counts them.
    fn count(v: &Value, n: &mut usize) {
        match v {
            Value::String(_) => *n += 1,
            Value::Array(items) => items.iter().for_each(|i| count(i, n)),
            Value::Object(map) => map.iter().for_each(|(_, v)| {
                *n += 1;
                count(v, n);
            }),
            _ => {}
        }
    }

    /// OpenBao refuses a request body of more than 1,000 JSON strings: the record of every
    /// profile it may hold is a handful of strings, and reads back whole, as does an entry
    /// written with the record as JSON objects.
    #[test]
    fn the_record_of_thousands_of_profiles_is_a_handful_of_json_strings() {
        let mut record = SpendRecord::default();
        for i in 0..MOST_NEWEST {
            let newest = Newest {
                print: format!("{i:064x}"),
                obtained_at: chrono::Utc::now(),
                host: "build-3".into(),
            };
            record.newest.insert(format!("{i:032x}"), newest);
        }
        let entry = fields("h pid 1", Duration::from_secs(10), "held", &record);
        let body = serde_json::json!({ "options": { "cas": 1 }, "data": entry }).to_string();
        let mut strings = 0;
        let mut stream = serde_json::Deserializer::from_str(&body).into_iter::<Value>();
        let Some(Ok(value)) = stream.next() else {
            panic!("{body}")
        };
        count(&value, &mut strings);
        assert!(strings < 20, "{strings} strings");
        let secret = |fields| Secret {
            fields,
            version: 1,
            created: None,
            server_now: None,
        };
        assert_eq!(record_of(&secret(entry)).newest, record.newest);
        let mut older = serde_json::Map::new();
        older.insert("newest".into(), serde_json::json!(record.newest));
        assert_eq!(record_of(&secret(older)).newest, record.newest);
    }

    #[test]
    fn a_lease_entry_is_trusted_only_as_long_as_the_longest_timeout_allows() {
        let secret = Secret {
            fields: fields(
                "far away pid 1",
                Duration::from_secs(3 * 86_400),
                "held",
                &SpendRecord::default(),
            ),
            version: 1,
            created: Some(chrono::Utc::now()),
            server_now: Some(chrono::Utc::now()),
        };
        let record = Record::of(&secret).unwrap();
        assert_eq!(record.ttl, longest_lease());
        assert!(longest_lease() <= Duration::from_secs(400));
        assert!(
            record
                .describe(&secret)
                .starts_with("far away pid 1 until ")
        );
    }

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
