//! How many requests go to one server at once: at most a fixed number (`max_concurrent_jobs`),
//! and none while the server asks for a pause (the Retry-After of a 429 or 5xx answer). One
//! semaphore per server (scheme, host and port), shared by every clone of the client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The places of every server, shared by every clone of the client.
#[derive(Clone)]
pub struct Limits {
    ceiling: usize,
    servers: Arc<Mutex<HashMap<String, Arc<Server>>>>,
}

struct Server {
    places: Arc<Semaphore>,
    /// Requests in flight or waiting for a place.
    wanted: AtomicUsize,
    /// No request starts before this, when the server asked for a pause.
    paused_until: Mutex<Option<Instant>>,
}

impl Server {
    fn paused_until(&self) -> MutexGuard<'_, Option<Instant>> {
        self.paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// When the pause the server asked for ends, while it lasts.
    fn pause_left(&self, now: Instant) -> Option<Instant> {
        self.paused_until().filter(|until| *until > now)
    }
}

/// Counts a request as wanted from the moment it asks for a place until it ends, however it
/// ends (an abandoned wait included).
struct Wanted(Arc<Server>);

impl Wanted {
    fn new(server: Arc<Server>) -> Self {
        server.wanted.fetch_add(1, Ordering::SeqCst);
        Self(server)
    }
}

impl Drop for Wanted {
    fn drop(&mut self) {
        self.0.wanted.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A place in a server's limit, freed when dropped or [finished](Permit::finish).
pub struct Permit {
    wanted: Wanted,
    _place: Option<OwnedSemaphorePermit>,
    /// No other request to the server was in flight or waiting when this one started.
    alone: bool,
}

impl Permit {
    /// Whether this request started while no other went to its server or waited to.
    pub fn alone(&self) -> bool {
        self.alone
    }

    /// Frees the place; `retry_after`, when the server asked for a pause, holds every request
    /// to it until the pause ends.
    pub fn finish(self, retry_after: Option<Duration>) {
        if let Some(after) = retry_after {
            let until = Instant::now() + after;
            let mut paused = self.wanted.0.paused_until();
            *paused = Some(paused.map_or(until, |u| u.max(until)));
        }
    }
}

impl Limits {
    /// At most `ceiling` requests at once to each server.
    pub fn new(ceiling: usize) -> Self {
        Self {
            ceiling: ceiling.max(1),
            servers: Arc::default(),
        }
    }

    /// Waits for a place at the server at `origin`, and for the end of any pause it asked for.
    pub async fn acquire(&self, origin: &str) -> Permit {
        let wanted = Wanted::new(self.server(origin));
        let server = wanted.0.clone();
        loop {
            if let Some(until) = server.pause_left(Instant::now()) {
                tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
            }
            // The semaphore is never closed; were it, the request would go without a limit.
            let place = server.places.clone().acquire_owned().await.ok();
            // A pause asked for while this one waited holds it too.
            if server.pause_left(Instant::now()).is_some() {
                continue;
            }
            let alone = server.wanted.load(Ordering::SeqCst) == 1;
            return Permit {
                wanted,
                _place: place,
                alone,
            };
        }
    }

    fn server(&self, origin: &str) -> Arc<Server> {
        let mut servers = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        servers
            .entry(origin.to_string())
            .or_insert_with(|| {
                Arc::new(Server {
                    places: Arc::new(Semaphore::new(self.ceiling)),
                    wanted: AtomicUsize::new(0),
                    paused_until: Mutex::new(None),
                })
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn retry_after_holds_every_request_to_that_server() {
        let limits = Limits::new(4);
        limits.acquire("http://a").await.finish(Some(200 * MS));
        let start = Instant::now();
        drop(limits.acquire("http://b").await);
        assert!(start.elapsed() < 100 * MS, "another server is not held");
        drop(limits.acquire("http://a").await);
        assert!(start.elapsed() >= 190 * MS, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn waiters_start_as_places_free() {
        let limits = Limits::new(1);
        let first = limits.acquire("http://a").await;
        assert!(first.alone());
        let other = limits.clone();
        let second = tokio::spawn(async move { other.acquire("http://a").await });
        // Another server has its own places.
        let elsewhere = limits.acquire("http://b").await;
        assert!(elsewhere.alone());
        drop(elsewhere);
        tokio::time::sleep(10 * MS).await;
        assert!(!second.is_finished(), "the one place is taken");
        first.finish(None);
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .unwrap()
            .unwrap();
        assert!(second.alone(), "the first had ended");
        second.finish(None);
    }

    #[tokio::test]
    async fn a_request_with_others_in_flight_is_not_alone() {
        let limits = Limits::new(4);
        let first = limits.acquire("http://a").await;
        let second = limits.acquire("http://a").await;
        assert!(first.alone());
        assert!(!second.alone());
        drop((first, second));
        // An abandoned wait leaves nothing counted.
        let full = Limits::new(1);
        let held = full.acquire("http://a").await;
        let waiting = tokio::time::timeout(10 * MS, full.acquire("http://a")).await;
        assert!(waiting.is_err(), "the place is held");
        drop(held);
        assert!(full.acquire("http://a").await.alone());
    }
}
