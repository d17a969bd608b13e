//! The agent's work: requests and the keep-alive schedule send jobs through one worker (so
//! every refresh takes the lock, reloads, and saves before it counts as done, as every other
//! writer's does), and the worker's final events wake whoever waits for them.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::jobs::Jobs;
use super::journal::Journal;
use super::publish::{Item, Publisher};
use super::schedule::{Due, Timetable, Unread};
use super::supervisor::Supervisor;
use crate::clock::Clock;
use crate::health::keepalive_at;
use crate::vault::{Profile, StoreHandle};
use crate::worker::{Command, Event, Job, JobFailure};

/// What the agent's tasks share.
pub struct Keeper {
    pub store: StoreHandle,
    pub clock: Clock,
    pub since: DateTime<Utc>,
    jobs: Jobs,
    pub timetable: Timetable,
    journal: Journal,
    /// What `--metrics` serves.
    pub metrics: super::metrics::Metrics,
    /// Where opted-in access tokens are published (`--publish`).
    pub publisher: Option<Arc<Publisher>>,
}

/// What one read of the vault asks of the keeper: profiles that will fall due, tokens to
/// publish.
#[derive(Default)]
struct Read {
    due: Vec<Due>,
    publish: Vec<Item>,
}

impl Keeper {
    pub fn new(
        store: StoreHandle,
        clock: Clock,
        config: &crate::config::Config,
        commands: mpsc::UnboundedSender<Command>,
    ) -> Self {
        Self {
            since: clock.now(),
            store,
            journal: Journal::new(clock.clone()),
            clock,
            jobs: Jobs::new(commands),
            timetable: Timetable::new(crate::worker::Schedule {
                margin: config.refresh_margin,
                horizon: config.agent_horizon,
            }),
            metrics: super::metrics::Metrics::new(),
            publisher: None,
        }
    }

    /// Why the agent cannot keep the vault now, when it cannot: for its announcement.
    pub fn problem(&self) -> Option<String> {
        let unreadable_for = self.timetable.unreadable_for()?;
        Some(format!(
            "cannot read the vault for {}",
            countdown(unreadable_for)
        ))
    }

    /// Takes no more jobs: the worker ends once those in flight have (their new tokens saved),
    /// whoever still holds this keeper.
    pub fn close(&self) {
        self.jobs.close();
    }

    /// The last thing the agent did, for `agent status`.
    pub fn last(&self) -> Option<String> {
        self.journal.last()
    }

    /// Runs a refresh for `profile` and returns its failure, if any.
    pub async fn refresh(&self, profile: &str, job: Job) -> Result<Option<Profile>, JobFailure> {
        let started = std::time::Instant::now();
        let outcome = match self.jobs.run(profile, job).await? {
            Event::Failed { error, kind, .. } => Err(JobFailure {
                kind,
                message: error,
            }),
            Event::Succeeded { saved, .. } => Ok(saved.map(|saved| *saved)),
            _ => Ok(None),
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
                    self.journal
                        .note(&format!("{profile}: {}", outcome.describe()));
                    self.timetable.record_success(profile);
                    (*id, profile.clone())
                }
                Event::Failed {
                    id, profile, error, ..
                } => {
                    self.journal.note(&format!("{profile}: {error}"));
                    self.timetable.record_failure(profile, self.clock.now());
                    (*id, profile.clone())
                }
                _ => continue,
            };
            self.jobs.finish(id, &profile, event);
            // The profile's next deadline follows from its new token, or its backoff.
            self.timetable.wake();
        }
    }

    /// Refreshes each profile when it falls due: plans, starts what is due now, then sleeps
    /// until the earliest next deadline, or until woken ([`Timetable::wake`]: a job ended, the
    /// vault file changed), or `fallback` at the latest (a vault elsewhere has no watch; a
    /// missed file event is caught there too). Profiles the server refused before are left
    /// to a person.
    pub async fn keep_alive(self: Arc<Self>, fallback: Duration, tasks: &Supervisor) {
        loop {
            self.timetable.count_wakeup();
            self.metrics.woke();
            let now = self.clock.now();
            let read = self.reload_and_find_due(now).await;
            let plan = self.timetable.plan(read.due, &self.jobs.busy(), now);
            for name in plan.due {
                let keeper = self.clone();
                tasks.spawn_until_stop(async move {
                    let job = Job::KeepAlive(keeper.timetable.schedule);
                    let _ = keeper.refresh(&name, job).await;
                });
            }
            for item in read.publish {
                let keeper = self.clone();
                tasks.spawn_until_stop(async move { keeper.publish(item).await });
            }
            let sleep = self
                .timetable
                .sleep_until(plan.next, self.clock.now(), fallback);
            self.timetable.sleep(sleep).await;
        }
    }

    /// Publishes one token; a failure is told and counted, and tried again at a later plan.
    async fn publish(&self, item: Item) {
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
            Err(e) => self.journal.note(&format!(
                "{profile}: cannot publish to {place} ({e}); will try again"
            )),
        }
    }

    /// Wakes the keep-alive loop to plan again.
    pub fn wake(&self) {
        self.timetable.wake();
    }

    /// How many times the keep-alive loop has woken.
    pub fn wakeups(&self) -> u64 {
        self.timetable.wakeups()
    }

    /// Reloads the vault when it changed and writes back newer tokens kept over an older
    /// one; then finds every profile that will fall due (with a token, and no error the
    /// server gave), and what to publish. The vault is judged where it lies (no copy of every
    /// profile each time). Nothing, when the vault cannot be read.
    async fn reload_and_find_due(&self, now: DateTime<Utc>) -> Read {
        let crate::worker::Schedule { margin, horizon } = self.timetable.schedule;
        let publisher = self.publisher.clone();
        let read = self.store.run(move |store| {
            let changed = store.reload_if_changed()?.is_some();
            let kept = store.write_back_kept();
            let read = store.read(|data| {
                let due = data
                    .profiles
                    .iter()
                    .filter(|p| p.last_error.is_none())
                    .filter_map(|p| p.token.as_ref().map(|t| (p, t)))
                    .filter_map(|(p, t)| {
                        Some(Due {
                            name: p.name.clone(),
                            obtained_at: t.obtained_at,
                            at: keepalive_at(p, t, now, margin, horizon)?,
                        })
                    })
                    .collect::<Vec<_>>();
                let publish = publisher.as_ref().map_or_else(Vec::new, |publisher| {
                    data.profiles
                        .iter()
                        .filter_map(|p| publisher.wanted(p))
                        .collect()
                });
                Read { due, publish }
            })?;
            Ok::<_, crate::vault::VaultError>((changed, kept, read))
        });
        match read.await.map_err(|e| e.to_string()) {
            Ok((changed, kept, read)) => {
                self.tell_readable(changed, kept);
                read
            }
            Err(e) => {
                self.tell_unreadable(&e);
                Read::default()
            }
        }
    }

    /// Tells that the vault cannot be read: at the first failure, then once a minute.
    fn tell_unreadable(&self, error: &str) {
        match self.timetable.record_unreadable() {
            Some(Unread::First) => self.journal.note(&format!(
                "cannot read the vault ({error}); serving the tokens already in memory, refreshing nothing, and trying again"
            )),
            Some(Unread::Still { lasted, tries }) => self.journal.note(&format!(
                "still cannot read the vault, for {} now ({tries} tries): {error}",
                countdown(lasted),
            )),
            None => {}
        }
    }

    /// Tells, once, that the vault is readable again; that it was reloaded; which newer
    /// tokens it kept over an older vault, or that it cannot save them yet.
    fn tell_readable(&self, changed: bool, kept: Result<Vec<String>, crate::vault::VaultError>) {
        if let Some(tries) = self.timetable.record_readable() {
            self.journal.note(&format!(
                "the vault is readable again (after {tries} tries)"
            ));
        }
        if changed {
            self.metrics.reloaded();
            self.journal.note("the vault changed elsewhere: reloaded");
        }
        match kept {
            Ok(kept) if !kept.is_empty() => self.journal.note(&format!(
                "the vault on disk held older tokens for {}: kept the newer ones and saved them",
                kept.join(", ")
            )),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot save the newer tokens kept over an older vault; will try again");
            }
        }
    }
}

/// How long something has lasted, as the agent's lines say it.
fn countdown(lasted: Duration) -> String {
    crate::duration::format_countdown(i64::try_from(lasted.as_secs()).unwrap_or(i64::MAX))
}
