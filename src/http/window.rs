//! How many requests go to one server at once. The window grows while answers come about as
//! fast as the fastest one seen (the server has room), shrinks when they slow down (requests
//! queue inside the server), halves on 429 and 5xx answers and timeouts, and stops every
//! request to the server for as long as a Retry-After asks. `max_concurrent_jobs` is the
//! ceiling.
//!
//! [`Window`] is the pure state; [`Limits`] keeps one per server and makes requests wait.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Where a window starts: a server that has room is at the ceiling after a few answers.
const INITIAL: f64 = 2.0;
/// An answer within this factor of the fastest one (plus [`SLACK`]) means "the queue is
/// short": a server that does one thing at a time settles at a few requests, enough to keep
/// it busy while each answer travels back and the next request comes.
const TOLERANCE: f64 = 2.0;
/// Latency differences this small are noise, whatever the factor says.
const SLACK: Duration = Duration::from_millis(5);
/// How much a slowed answer shrinks the window.
const EASE: f64 = 0.875;
/// Slow answers never take the window below this while queueing explains them: with two
/// requests out, a server that does one thing at a time has the next one waiting while it
/// sends an answer back, instead of idling for a round trip. An answer slower than its queue
/// explains (the server does worse with several requests than with one: database writers
/// waiting on each other), a 429, a 5xx or a timeout go lower.
const FLOOR: f64 = 2.0;
/// After a cut, this many fast answers per place in the window come before it grows again: a
/// server that slows down whenever it gets a second request (database writers waiting on each
/// other, seen on Doorkeeper) is asked to take one only now and then.
const HOLD_PER_PLACE: u32 = 16;

/// What became of one request, as far as the window cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The server answered (2xx, or a 4xx other than 429): its latency is a sample.
    Answered,
    /// 429, 5xx or a timeout: the server has too much to do.
    Overloaded { retry_after: Option<Duration> },
    /// No answer for reasons that say nothing about load (refused, reset, bad TLS).
    Failed,
}

/// One server's window.
#[derive(Debug, Clone)]
pub struct Window {
    ceiling: f64,
    limit: f64,
    in_flight: usize,
    /// Fastest answer seen: the server's time for one request with no queue.
    best: Option<Duration>,
    /// Growing by one per answer (doubling per round trip) until the first cut.
    slow_start: bool,
    paused_until: Option<Instant>,
    last_cut: Option<Instant>,
    /// Fast answers still to come before the window may grow.
    hold: u32,
}

/// How long one request took, and how many were in flight when it started (itself included):
/// a server that does one thing at a time answers the `queue`th request after `queue` times
/// its time for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub latency: Duration,
    pub queue: usize,
}

/// Why a request may not start yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The server asked for a pause until then.
    Until(Instant),
    /// The window is full: wait for a request to finish.
    Full,
}

impl Window {
    pub fn new(ceiling: usize) -> Self {
        let ceiling = places(ceiling);
        Self {
            ceiling,
            limit: INITIAL.min(ceiling),
            in_flight: 0,
            best: None,
            slow_start: true,
            paused_until: None,
            last_cut: None,
            hold: 0,
        }
    }

    /// How many requests may be in flight now.
    pub fn limit(&self) -> usize {
        // `limit` stays within 1..=ceiling, so the conversion is exact.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "limit is clamped to 1..=ceiling"
        )]
        let whole = self.limit.floor() as usize;
        whole.max(1)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Takes a place for a request starting `now` (how many are in flight with it), or says
    /// why it must wait.
    pub fn try_start(&mut self, now: Instant) -> Result<usize, Wait> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Err(Wait::Until(until));
            }
            self.paused_until = None;
        }
        if self.in_flight >= self.limit() {
            return Err(Wait::Full);
        }
        self.in_flight += 1;
        Ok(self.in_flight)
    }

    /// Gives back the place of a request measured as `sample` that ended as `signal`.
    pub fn finish(&mut self, now: Instant, sample: Sample, signal: Signal) {
        let latency = sample.latency;
        // In use: at least half the window was taken (the answers of one full round come
        // back one by one, and each of them counts).
        let was_full = 2 * self.in_flight >= self.limit();
        self.in_flight = self.in_flight.saturating_sub(1);
        match signal {
            Signal::Answered => self.answered(sample, was_full),
            Signal::Overloaded { retry_after } => {
                // One cut per round trip: the answers of one burst report one overload.
                let round_trip = self.best.unwrap_or(latency).max(latency);
                if self.last_cut.is_none_or(|at| now >= at + round_trip) {
                    self.limit = (self.limit / 2.0).max(1.0);
                    self.last_cut = Some(now);
                }
                self.cooled();
                if let Some(after) = retry_after {
                    let until = now + after;
                    self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
                }
            }
            Signal::Failed => {}
        }
    }

    fn answered(&mut self, Sample { latency, queue }: Sample, was_full: bool) {
        let best = self.best.map_or(latency, |best| best.min(latency));
        self.best = Some(best);
        if explained(latency, best, 1) {
            if self.hold > 0 {
                self.hold -= 1;
            } else if was_full {
                // Only a window in use shows whether more would still be fast.
                self.limit += if self.slow_start {
                    1.0
                } else {
                    1.0 / self.limit
                };
            }
        } else {
            let floor = if explained(latency, best, queue) {
                FLOOR
            } else {
                1.0
            };
            self.limit = (self.limit * EASE).max(floor.min(self.limit));
            self.cooled();
        }
        self.limit = self.limit.clamp(1.0, self.ceiling);
    }

    /// After a cut: no more slow start, and a pause in growth.
    fn cooled(&mut self) {
        self.slow_start = false;
        self.hold = HOLD_PER_PLACE * u32::try_from(self.limit()).unwrap_or(u32::MAX);
    }
}

/// Whether a queue of `queue` requests explains `latency`: each waits for the ones before it,
/// so up to `queue` times [`TOLERANCE`] times the fastest answer (plus [`SLACK`]). A queue of
/// one is the "queue is short" test that lets a window grow.
fn explained(latency: Duration, best: Duration, queue: usize) -> bool {
    latency <= best.mul_f64(TOLERANCE * places(queue)) + SLACK
}

/// A count of requests as a window size, at least one. A count past 2^32 requests at once
/// would mean "no limit" anyway.
fn places(count: usize) -> f64 {
    f64::from(u32::try_from(count.max(1)).unwrap_or(u32::MAX))
}

/// One window per server (scheme, host and port), shared by every clone of the client.
#[derive(Clone)]
pub struct Limits {
    ceiling: usize,
    servers: Arc<Mutex<HashMap<String, Arc<Server>>>>,
}

struct Server {
    origin: String,
    window: Mutex<Window>,
    freed: tokio::sync::Notify,
    /// Requests waiting for a place.
    waiting: std::sync::atomic::AtomicUsize,
}

impl Server {
    fn window(&self) -> MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a place now: whether no other request was in flight or waiting, and how many
    /// are in flight with it.
    fn try_start(&self) -> Result<(bool, usize), Wait> {
        let mut window = self.window();
        let alone = window.in_flight() == 0 && self.waiting.load(Ordering::SeqCst) == 0;
        window.try_start(Instant::now()).map(|queue| (alone, queue))
    }
}

/// A place in a server's window; give it back with [`Permit::finish`] (dropping it counts as
/// a failure that says nothing about load).
pub struct Permit {
    server: Arc<Server>,
    started: Instant,
    /// No other request to the server was in flight when this one started.
    alone: bool,
    /// Requests in flight to the server when this one started, itself included.
    queue: usize,
    done: bool,
}

impl Permit {
    /// Whether this request started while no other went to its server or waited to.
    pub fn alone(&self) -> bool {
        self.alone
    }

    /// Records how the request ended and frees its place.
    pub fn finish(mut self, signal: Signal) {
        self.give_back(signal);
    }

    fn give_back(&mut self, signal: Signal) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let now = Instant::now();
        let latency = now - self.started;
        let mut window = self.server.window();
        let before = window.limit();
        let queue = self.queue;
        window.finish(now, Sample { latency, queue }, signal);
        let limit = window.limit();
        let free = limit.saturating_sub(window.in_flight());
        drop(window);
        if limit != before {
            tracing::debug!(
                server = %self.server.origin,
                from = before,
                to = limit,
                latency_ms = latency.as_millis(),
                ?signal,
                "request window changed"
            );
        }
        // Wake as many waiters as there are places now (a grown window frees several).
        for _ in 0..free {
            self.server.freed.notify_one();
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.give_back(Signal::Failed);
    }
}

impl Limits {
    /// Windows that never grow past `ceiling` requests at once.
    pub fn new(ceiling: usize) -> Self {
        Self {
            ceiling: ceiling.max(1),
            servers: Arc::default(),
        }
    }

    /// Waits for a place in the window of the server at `origin`.
    pub async fn acquire(&self, origin: &str) -> Permit {
        let server = self.server(origin);
        loop {
            let attempt = {
                let freed = server.freed.notified();
                tokio::pin!(freed);
                // Registered before looking, so a place freed meanwhile is not missed.
                freed.as_mut().enable();
                match server.try_start() {
                    Ok(started) => Ok(started),
                    Err(Wait::Until(until)) => Err(Some(until)),
                    Err(Wait::Full) => {
                        server.waiting.fetch_add(1, Ordering::SeqCst);
                        freed.await;
                        server.waiting.fetch_sub(1, Ordering::SeqCst);
                        Err(None)
                    }
                }
            };
            match attempt {
                Ok((alone, queue)) => {
                    return Permit {
                        server,
                        started: Instant::now(),
                        alone,
                        queue,
                        done: false,
                    };
                }
                Err(Some(until)) => {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
                }
                Err(None) => {}
            }
        }
    }

    /// The current window of the server at `origin` (for tests and diagnostics).
    pub fn limit(&self, origin: &str) -> usize {
        self.server(origin).window().limit()
    }

    fn server(&self, origin: &str) -> Arc<Server> {
        let mut servers = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        servers
            .entry(origin.to_string())
            .or_insert_with(|| {
                Arc::new(Server {
                    origin: origin.to_string(),
                    window: Mutex::new(Window::new(self.ceiling)),
                    freed: tokio::sync::Notify::new(),
                    waiting: std::sync::atomic::AtomicUsize::new(0),
                })
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Runs `rounds` rounds of a full window against a server whose latency for `n` requests
    /// at once is `latency(n)`; returns the limits seen.
    fn drive(
        window: &mut Window,
        rounds: usize,
        latency: impl Fn(usize) -> Duration,
    ) -> Vec<usize> {
        let mut now = Instant::now();
        let mut seen = Vec::new();
        for _ in 0..rounds {
            while window.try_start(now).is_ok() {}
            let n = window.in_flight();
            now += latency(n);
            for _ in 0..n {
                let sample = Sample {
                    latency: latency(n),
                    queue: n,
                };
                window.finish(now, sample, Signal::Answered);
            }
            seen.push(window.limit());
        }
        seen
    }

    #[test]
    fn grows_to_the_ceiling_while_latency_holds() {
        let mut window = Window::new(16);
        let seen = drive(&mut window, 8, |_| 20 * MS);
        assert_eq!(seen.last(), Some(&16), "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    }

    #[test]
    fn settles_low_on_a_server_that_does_one_thing_at_a_time() {
        let mut window = Window::new(16);
        // Each request waits for the ones before it: latency grows with the window.
        let seen = drive(&mut window, 40, |n| 11 * MS * u32::try_from(n).unwrap());
        let settled = &seen[20..];
        assert!(settled.iter().all(|&l| (2..=5).contains(&l)), "{seen:?}");
    }

    /// A request that waited behind `queue` others took `latency`.
    fn sample(latency: Duration, queue: usize) -> Sample {
        Sample { latency, queue }
    }

    #[test]
    fn a_queue_of_two_stays_while_queueing_explains_the_wait() {
        // One at a time: n requests in flight answer after n times the time for one.
        let mut window = Window::new(16);
        let serial = drive(&mut window, 100, |n| 11 * MS * u32::try_from(n).unwrap());
        assert!(serial.iter().all(|&l| l >= 2), "{serial:?}");
        // Two at once take far longer than two one after the other: contention.
        let mut window = Window::new(16);
        let now = Instant::now();
        window.try_start(now).unwrap();
        window.finish(now, sample(10 * MS, 1), Signal::Answered);
        let contended = drive(
            &mut window,
            100,
            |n| if n == 1 { 10 * MS } else { 300 * MS },
        );
        let ones = contended.iter().filter(|&&l| l == 1).count();
        assert!(ones > 80, "worse with two than with one: {contended:?}");
        let mut one = Window::new(1);
        one.try_start(now).unwrap();
        one.finish(now, sample(500 * MS, 1), Signal::Answered);
        assert_eq!(one.limit(), 1, "the ceiling is kept");
    }

    #[test]
    fn overload_halves_once_per_round_trip_and_retry_after_pauses() {
        let mut window = Window::new(16);
        drive(&mut window, 6, |_| 10 * MS);
        assert_eq!(window.limit(), 16);
        let now = Instant::now() + Duration::from_secs(1);
        for _ in 0..8 {
            window.try_start(now).unwrap();
        }
        for _ in 0..8 {
            window.finish(
                now,
                sample(10 * MS, 8),
                Signal::Overloaded { retry_after: None },
            );
        }
        assert_eq!(window.limit(), 8, "one burst, one cut");
        window.finish(
            now + 20 * MS,
            sample(10 * MS, 1),
            Signal::Overloaded {
                retry_after: Some(Duration::from_secs(2)),
            },
        );
        assert_eq!(window.limit(), 4);
        let later = now + Duration::from_secs(1);
        assert_eq!(
            window.try_start(later),
            Err(Wait::Until(now + 20 * MS + Duration::from_secs(2)))
        );
        assert!(window.try_start(later + Duration::from_secs(2)).is_ok());
    }

    #[test]
    fn never_below_one_nor_above_the_ceiling() {
        let mut window = Window::new(3);
        let now = Instant::now();
        for i in 0..20 {
            window.try_start(now).ok();
            let at = now + Duration::from_secs(i);
            window.finish(at, sample(MS, 1), Signal::Overloaded { retry_after: None });
        }
        assert_eq!(window.limit(), 1);
        drive(&mut window, 20, |_| MS);
        assert_eq!(window.limit(), 3);
        assert_eq!(Window::new(0).limit(), 1);
    }

    #[tokio::test]
    async fn retry_after_holds_every_request_to_that_server() {
        let limits = Limits::new(4);
        limits.acquire("http://a").await.finish(Signal::Overloaded {
            retry_after: Some(200 * MS),
        });
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
        let other = limits.clone();
        let second = tokio::spawn(async move { other.acquire("http://a").await });
        // Another server has its own window.
        drop(limits.acquire("http://b").await);
        tokio::time::sleep(10 * MS).await;
        assert!(!second.is_finished(), "the window of one is full");
        first.finish(Signal::Answered);
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .unwrap()
            .unwrap();
        second.finish(Signal::Answered);
        assert_eq!(limits.limit("http://a"), 1);
    }
}
