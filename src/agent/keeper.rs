//! The agent's work: a worker whose final events wake the requests waiting for them, and a
//! schedule that keeps every profile alive through that same worker (so every refresh takes
//! the lock, reloads, and saves before it counts as done, as every other writer's does).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::publish::Item;
use super::supervisor::Supervisor;
use crate::clock::Clock;
use crate::health::keepalive_at;
use crate::pacing::AutoRefresh;
use crate::vault::Store;
use crate::worker::{Command, Event, Job, JobFailure, JobId, Schedule};

/// What the agent's tasks share.
pub struct Keeper {
    pub store: Arc<Store>,
    pub clock: Clock,
    pub refresh_margin: Duration,
    pub horizon: Duration,
    pub since: DateTime<Utc>,
    /// Jobs go to the worker here; `None` once the agent is stopping (see [`Self::close`]).
    commands: Mutex<Option<mpsc::UnboundedSender<Command>>>,
    next_id: AtomicU64,
    state: Mutex<State>,
    /// Wakes the keep-alive loop to plan again.
    wake: tokio::sync::Notify,
    /// How many times the keep-alive loop has woken.
    wakeups: AtomicU64,
    /// What `--metrics` serves.
    pub metrics: super::metrics::Metrics,
    /// Where opted-in access tokens are published (`--publish`).
    pub publisher: Option<Arc<super::publish::Publisher>>,
}

#[derive(Default)]
struct State {
    /// Requests waiting for a job's final event.
    waiters: HashMap<JobId, oneshot::Sender<Event>>,
    /// Profiles with a job in flight.
    busy: HashSet<String>,
    pacing: AutoRefresh,
    last: Option<String>,
    /// Since when the vault cannot be read, while it cannot.
    unreadable: Option<Unreadable>,
}

/// A vault the keeper cannot read: told once, then once a minute while it lasts, and tried
/// again with a growing pause (a file rewritten in a loop must not make the keeper spin).
#[derive(Debug, Clone, Copy)]
struct Unreadable {
    since: std::time::Instant,
    told_at: std::time::Instant,
    tries: u32,
}

impl Unreadable {
    /// How long to wait before the next try: 1 s after the first, doubling to a minute.
    fn pause(self) -> Duration {
        let doublings = self.tries.saturating_sub(1).min(6);
        (Duration::from_secs(1) * 2u32.pow(doublings)).min(UNREADABLE_PAUSE_MAX)
    }
}

impl Keeper {
    pub fn new(
        store: Arc<Store>,
        clock: Clock,
        config: &crate::config::Config,
        commands: mpsc::UnboundedSender<Command>,
    ) -> Self {
        Self {
            since: clock.now(),
            store,
            clock,
            refresh_margin: config.refresh_margin,
            horizon: config.agent_horizon,
            commands: Mutex::new(Some(commands)),
            next_id: AtomicU64::new(1),
            state: Mutex::new(State {
                pacing: AutoRefresh::by_deadline(),
                ..State::default()
            }),
            wake: tokio::sync::Notify::new(),
            wakeups: AtomicU64::new(0),
            metrics: super::metrics::Metrics::new(),
            publisher: None,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Why the agent cannot keep the vault now, when it cannot: for its announcement.
    pub fn problem(&self) -> Option<String> {
        let unreadable = self.state().unreadable?;
        let secs = unreadable.since.elapsed().as_secs();
        Some(format!(
            "cannot read the vault for {}",
            crate::duration::format_countdown(i64::try_from(secs).unwrap_or(i64::MAX))
        ))
    }

    /// Takes no more jobs: the worker ends once those in flight have (their new tokens saved),
    /// whoever still holds this keeper.
    pub fn close(&self) {
        self.commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// The last thing the agent did, for `agent status`.
    pub fn last(&self) -> Option<String> {
        self.state().last.clone()
    }

    /// Records what the agent did: in the log, on stderr (one line an action, as a service's
    /// journal shows them), and as the last action for `agent status`.
    fn note(&self, text: &str) {
        tracing::info!("{text}");
        let line = format!(
            "{} {text}",
            self.clock.now().format("%Y-%m-%d %H:%M:%S UTC")
        );
        crate::note!("tokdeck agent: {line}");
        self.state().last = Some(line);
    }

    /// Runs `job` for `profile` and waits for its final event.
    pub async fn run(&self, profile: &str, job: Job) -> Result<Event, JobFailure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.state();
            state.waiters.insert(id, tx);
            state.busy.insert(profile.to_string());
        }
        let command = Command {
            id,
            profile: profile.to_string(),
            job,
        };
        let sent = self
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|c| c.send(command).is_ok());
        if !sent {
            self.state().waiters.remove(&id);
            return Err(JobFailure::internal(
                "the agent is stopping: try again when it is back",
            ));
        }
        rx.await
            .map_err(|_| JobFailure::internal("the agent stopped before the job ended"))
    }

    /// Runs a refresh for `profile` and returns its failure, if any.
    pub async fn refresh(&self, profile: &str, job: Job) -> Result<(), JobFailure> {
        let started = std::time::Instant::now();
        let outcome = match self.run(profile, job).await? {
            Event::Failed { error, kind, .. } => Err(JobFailure {
                kind,
                message: error,
            }),
            _ => Ok(()),
        };
        self.metrics
            .refreshed(profile, outcome.is_ok(), started.elapsed());
        outcome
    }

    /// Takes the worker's events: logs them, and hands each final one to its waiter.
    pub async fn pump(&self, mut events: mpsc::UnboundedReceiver<Event>) {
        while let Some(event) = events.recv().await {
            let (id, profile) = match &event {
                Event::Succeeded {
                    id,
                    profile,
                    outcome,
                    ..
                } => {
                    self.note(&format!("{profile}: {}", outcome.describe()));
                    self.state().pacing.succeeded(profile);
                    (*id, profile.clone())
                }
                Event::Failed {
                    id, profile, error, ..
                } => {
                    self.note(&format!("{profile}: {error}"));
                    let now = self.clock.now();
                    self.state().pacing.failed(profile, now);
                    (*id, profile.clone())
                }
                _ => continue,
            };
            let waiter = {
                let mut state = self.state();
                state.busy.remove(&profile);
                state.waiters.remove(&id)
            };
            if let Some(waiter) = waiter {
                let _ = waiter.send(event);
            }
            // The profile's next deadline follows from its new token, or its backoff.
            self.wake();
        }
    }

    /// Refreshes each profile when it falls due: plans, starts what is due now, then sleeps
    /// until the earliest next deadline, or until woken ([`Self::wake`]: a job ended, the
    /// vault file changed), or `fallback` at the latest (a vault elsewhere has no watch; a
    /// missed file event is caught there too).
    pub async fn keep_alive(self: Arc<Self>, fallback: Duration, tasks: &Supervisor) {
        loop {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            self.metrics.woke();
            let plan = self.plan().await;
            for name in plan.due {
                let keeper = self.clone();
                tasks.spawn_until_stop(async move {
                    let job = Job::KeepAlive(Schedule {
                        margin: keeper.refresh_margin,
                        horizon: keeper.horizon,
                    });
                    let _ = keeper.refresh(&name, job).await;
                });
            }
            for item in plan.publish {
                let keeper = self.clone();
                tasks.spawn_until_stop(async move { keeper.publish(item).await });
            }
            let now = self.clock.now();
            let until_next = plan
                .next
                .map_or(fallback, |at| (at - now).to_std().unwrap_or_default());
            // A floor, so that no deadline mistaken for "now" can spin the loop; while the
            // vault cannot be read, the floor is a second and the sleep grows.
            let unreadable = self.state().unreadable;
            let (sleep, floor) = match unreadable {
                Some(u) => (u.pause(), UNREADABLE_FLOOR),
                None => (
                    until_next.clamp(MIN_SLEEP, fallback.max(MIN_SLEEP)),
                    MIN_SLEEP,
                ),
            };
            let slept = std::time::Instant::now();
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.wake.notified() => {}
            }
            if let Some(rest) = floor.checked_sub(slept.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
    }

    /// Tells that the vault cannot be read: at the first failure, then once a minute.
    fn cannot_read(&self, error: &str) {
        let now = std::time::Instant::now();
        let told = {
            let mut state = self.state();
            let mut unreadable = state.unreadable.unwrap_or(Unreadable {
                since: now,
                told_at: now,
                tries: 0,
            });
            let first = unreadable.tries == 0;
            unreadable.tries = unreadable.tries.saturating_add(1);
            let due = first || now.duration_since(unreadable.told_at) >= UNREADABLE_RETELL;
            if due {
                unreadable.told_at = now;
            }
            state.unreadable = Some(unreadable);
            due.then_some((first, unreadable))
        };
        match told {
            Some((true, _)) => self.note(&format!(
                "cannot read the vault ({error}); serving the tokens already in memory, refreshing nothing, and trying again"
            )),
            Some((false, u)) => self.note(&format!(
                "still cannot read the vault, for {} now ({} tries): {error}",
                crate::duration::format_countdown(
                    i64::try_from(now.duration_since(u.since).as_secs()).unwrap_or(i64::MAX)
                ),
                u.tries
            )),
            None => {}
        }
    }

    /// Tells, once, that the vault is readable again.
    fn can_read(&self) {
        let was = self.state().unreadable.take();
        if let Some(u) = was {
            self.note(&format!(
                "the vault is readable again (after {} tries)",
                u.tries
            ));
        }
    }

    /// Publishes one token; a failure is told and counted, and tried again at a later plan.
    async fn publish(&self, item: super::publish::Item) {
        let Some(publisher) = self.publisher.clone() else {
            return;
        };
        let profile = item.profile.clone();
        let place = publisher.place();
        let done = tokio::task::spawn_blocking(move || publisher.publish(&item)).await;
        let outcome = done.unwrap_or_else(|e| {
            Err(crate::vault::VaultError::Remote(format!(
                "internal error: {e}"
            )))
        });
        self.metrics.published(&profile, outcome.is_ok());
        match outcome {
            Ok(()) => tracing::info!(%profile, %place, "access token published"),
            Err(e) => self.note(&format!(
                "{profile}: cannot publish to {place} ({e}); will try again"
            )),
        }
    }

    /// Wakes the keep-alive loop to plan again.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// How many times the keep-alive loop has woken.
    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    /// What to refresh now, and when the next profile falls due: by [`keepalive_at`], not
    /// busy (its end wakes the loop), not backing off (its retry time is a deadline), and not
    /// refused by the server before (a person has to look at those).
    async fn plan(&self) -> Plan {
        let now = self.clock.now();
        let Some((candidates, publish)) = self.judged(now).await else {
            return Plan::default();
        };
        let mut state = self.state();
        let mut plan = Plan {
            publish,
            ..Plan::default()
        };
        for (name, obtained_at, due_at) in candidates {
            let next = if due_at > now {
                Some(due_at)
            } else if state.busy.contains(&name) {
                None
            } else if state.pacing.may_try(&name, obtained_at, now) {
                state.pacing.tried(&name, obtained_at, now);
                plan.due.push(name);
                None
            } else {
                // Backing off after a failure; a token tried once waits for its successor.
                state.pacing.retry_at(&name).filter(|at| *at > now)
            };
            plan.next = match (plan.next, next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        plan
    }

    /// Reloads the vault when it changed and writes back newer tokens kept over an older
    /// one; then every profile that will fall due, with its token and when. The vault is
    /// judged where it lies (no copy of every profile each time).
    async fn judged(&self, now: DateTime<Utc>) -> Option<(Vec<Due>, Vec<Item>)> {
        let store = self.store.clone();
        let (margin, horizon) = (self.refresh_margin, self.horizon);
        let publisher = self.publisher.clone();
        let judged = tokio::task::spawn_blocking(move || {
            let changed = store.reload_if_changed()?.is_some();
            let kept = store.write_back_kept();
            let candidates = store.read(|data| {
                let due = data
                    .profiles
                    .iter()
                    .filter(|p| p.last_error.is_none())
                    .filter_map(|p| p.token.as_ref().map(|t| (p, t)))
                    .filter_map(|(p, t)| {
                        let at = keepalive_at(p, t, now, margin, horizon)?;
                        Some((p.name.clone(), t.obtained_at, at))
                    })
                    .collect::<Vec<_>>();
                let publish = publisher.as_ref().map_or_else(Vec::new, |publisher| {
                    data.profiles
                        .iter()
                        .filter_map(|p| publisher.wanted(p))
                        .collect()
                });
                (due, publish)
            })?;
            Ok::<_, crate::vault::VaultError>((changed, kept, candidates))
        })
        .await;
        let read = match judged {
            Ok(read) => read.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let (changed, kept, candidates) = match read {
            Ok(read) => read,
            Err(e) => {
                self.cannot_read(&e);
                return None;
            }
        };
        self.can_read();
        if changed {
            self.metrics.reloaded();
            self.note("the vault changed elsewhere: reloaded");
        }
        match kept {
            Ok(kept) if !kept.is_empty() => self.note(&format!(
                "the vault on disk held older tokens for {}: kept the newer ones and saved them",
                kept.join(", ")
            )),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot save the newer tokens kept over an older vault; will try again");
            }
        }
        Some(candidates)
    }
}

/// The least the keep-alive loop sleeps.
const MIN_SLEEP: Duration = Duration::from_millis(100);

/// The least it sleeps while the vault cannot be read, however often it is woken.
const UNREADABLE_FLOOR: Duration = Duration::from_secs(1);

/// The longest pause between two tries of an unreadable vault.
const UNREADABLE_PAUSE_MAX: Duration = Duration::from_secs(60);

/// How often a vault that stays unreadable is told of again.
const UNREADABLE_RETELL: Duration = Duration::from_secs(60);

/// A profile that will fall due: its name, its token (by when it was obtained), and when.
type Due = (String, DateTime<Utc>, DateTime<Utc>);

/// What the keep-alive loop does next.
#[derive(Default)]
struct Plan {
    /// Profiles to refresh now.
    due: Vec<String>,
    /// Tokens to publish now.
    publish: Vec<Item>,
    /// When the next one falls due.
    next: Option<DateTime<Utc>>,
}
