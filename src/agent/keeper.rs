//! The agent's work: a worker whose final events wake the requests waiting for them, and a
//! schedule that keeps every profile alive through that same worker (so every refresh takes
//! the lock, reloads, and saves before it counts as done, as every other writer's does).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::supervisor::Supervisor;
use crate::clock::Clock;
use crate::health::keepalive_due;
use crate::pacing::AutoRefresh;
use crate::vault::Store;
use crate::worker::{Command, Event, Job, JobId};

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
}

#[derive(Default)]
struct State {
    /// Requests waiting for a job's final event.
    waiters: HashMap<JobId, oneshot::Sender<Event>>,
    /// Profiles with a job in flight.
    busy: HashSet<String>,
    pacing: AutoRefresh,
    last: Option<String>,
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
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
    pub async fn run(&self, profile: &str, job: Job) -> Result<Event, String> {
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
            return Err("the agent is stopping: try again when it is back".to_string());
        }
        rx.await
            .map_err(|_| "the agent stopped before the job ended".to_string())
    }

    /// Runs a refresh for `profile` and returns its failure message, if any.
    pub async fn refresh(&self, profile: &str, job: Job) -> Result<(), String> {
        match self.run(profile, job).await? {
            Event::Failed { error, .. } => Err(error),
            _ => Ok(()),
        }
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
        }
    }

    /// Every `interval`: reload when the vault changed, then refresh what is due.
    pub async fn keep_alive(self: Arc<Self>, interval: Duration, tasks: &Supervisor) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for name in self.due().await {
                let keeper = self.clone();
                tasks.spawn_until_stop(async move {
                    let job = Job::Refresh {
                        if_expiring_within: None,
                    };
                    let _ = keeper.refresh(&name, job).await;
                });
            }
        }
    }

    /// Profiles to refresh now: due by [`keepalive_due`], not busy, not backing off, and not
    /// refused by the server before (a person has to look at those).
    async fn due(&self) -> Vec<String> {
        let store = self.store.clone();
        let now = self.clock.now();
        let (margin, horizon) = (self.refresh_margin, self.horizon);
        // The vault is judged where it lies (no copy of every profile each interval); only the
        // candidates come out, with the token they would refresh.
        let judged = tokio::task::spawn_blocking(move || {
            let changed = store.reload_if_changed()?.is_some();
            let kept = store.write_back_kept();
            let candidates = store.read(|data| {
                data.profiles
                    .iter()
                    .filter(|p| p.last_error.is_none())
                    .filter_map(|p| p.token.as_ref().map(|t| (p, t)))
                    .filter(|(p, t)| keepalive_due(p, t, now, margin, horizon))
                    .map(|(p, t)| (p.name.clone(), t.obtained_at))
                    .collect::<Vec<_>>()
            })?;
            Ok::<_, crate::vault::VaultError>((changed, kept, candidates))
        })
        .await;
        let Ok(Ok((changed, kept, candidates))) = judged else {
            tracing::warn!("cannot read the vault; will try again");
            return Vec::new();
        };
        if changed {
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
        let mut state = self.state();
        let mut due = Vec::new();
        for (name, obtained_at) in candidates {
            if !state.busy.contains(&name) && state.pacing.may_try(&name, obtained_at, now) {
                state.pacing.tried(&name, obtained_at, now);
                due.push(name);
            }
        }
        due
    }
}
