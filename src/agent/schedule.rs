//! The keep-alive schedule: which profiles are due now, when the next one falls due, how long
//! to sleep, and how to tell of a vault that cannot be read. Decisions only: the keeper reads
//! the vault and starts the jobs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::pacing::AutoRefresh;
use crate::worker::Schedule;

/// The least the keep-alive loop sleeps.
const MIN_SLEEP: Duration = Duration::from_millis(100);

/// The least it sleeps while the vault cannot be read, however often it is woken.
const UNREADABLE_FLOOR: Duration = Duration::from_secs(1);

/// The longest pause between two tries of an unreadable vault.
const UNREADABLE_PAUSE_MAX: Duration = Duration::from_secs(60);

/// How often a vault that stays unreadable is told of again.
const UNREADABLE_RETELL: Duration = Duration::from_secs(60);

/// When each profile is kept alive, and what the loop knows between two plans.
pub struct Timetable {
    /// When a token is renewed.
    pub schedule: Schedule,
    state: Mutex<State>,
    /// Wakes the keep-alive loop to plan again.
    wake: tokio::sync::Notify,
    /// How many times the keep-alive loop has woken.
    wakeups: AtomicU64,
}

struct State {
    pacing: AutoRefresh,
    /// Since when the vault cannot be read, while it cannot.
    unreadable: Option<Unreadable>,
}

/// A profile that will fall due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub name: String,
    /// Its token, by when it was obtained.
    pub obtained_at: DateTime<Utc>,
    /// When it falls due.
    pub at: DateTime<Utc>,
}

/// What the keep-alive loop refreshes now, and when it plans again at the latest.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Profiles to refresh now.
    pub due: Vec<String>,
    /// When the next one falls due.
    pub next: Option<DateTime<Utc>>,
}

/// How long the loop sleeps: `sleep` unless woken, and never less than `floor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sleep {
    pub sleep: Duration,
    pub floor: Duration,
}

/// A vault the keeper cannot read: told once, then once a minute while it lasts, and tried
/// again with a growing pause (a file rewritten in a loop must not make the keeper spin).
#[derive(Debug, Clone, Copy)]
struct Unreadable {
    since: Instant,
    told_at: Instant,
    tries: u32,
}

impl Unreadable {
    /// How long to wait before the next try: 1 s after the first, doubling to a minute.
    fn pause(self) -> Duration {
        let doublings = self.tries.saturating_sub(1).min(6);
        (Duration::from_secs(1) * 2u32.pow(doublings)).min(UNREADABLE_PAUSE_MAX)
    }
}

/// What to tell of a vault that cannot be read, when it is time to tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// The first failure.
    First,
    /// Still failing: for how long, after how many tries.
    Still { lasted: Duration, tries: u32 },
}

impl Timetable {
    pub fn new(schedule: Schedule) -> Self {
        Self {
            schedule,
            state: Mutex::new(State {
                pacing: AutoRefresh::by_deadline(),
                unreadable: None,
            }),
            wake: tokio::sync::Notify::new(),
            wakeups: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the keep-alive loop to plan again.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Sleeps as `sleep` says, or until [`Self::wake`], and then at least to its floor.
    pub async fn sleep(&self, sleep: Sleep) {
        let slept = Instant::now();
        tokio::select! {
            () = tokio::time::sleep(sleep.sleep) => {}
            () = self.wake.notified() => {}
        }
        if let Some(rest) = sleep.floor.checked_sub(slept.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }

    /// Counts one wake-up of the loop.
    pub fn count_wakeup(&self) {
        self.wakeups.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times the keep-alive loop has woken.
    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    /// Records a job's success, which ends any backoff of its profile.
    pub fn record_success(&self, profile: &str) {
        self.state().pacing.succeeded(profile);
    }

    /// Records a job's failure, which backs its profile off.
    pub fn record_failure(&self, profile: &str, now: DateTime<Utc>) {
        self.state().pacing.failed(profile, now);
    }

    /// Decides what to refresh now: by each profile's deadline, not busy (its end wakes the
    /// loop), not backing off (its retry time is a deadline). Each profile chosen is counted
    /// as tried.
    pub fn plan(&self, candidates: Vec<Due>, busy: &HashSet<String>, now: DateTime<Utc>) -> Plan {
        plan(&mut self.state().pacing, candidates, busy, now)
    }

    /// How long to sleep when the next profile falls due at `next`: until then, within
    /// `fallback`; while the vault cannot be read, a growing pause.
    pub fn sleep_until(
        &self,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        fallback: Duration,
    ) -> Sleep {
        let until_next = next.map_or(fallback, |at| (at - now).to_std().unwrap_or_default());
        // A floor, so that no deadline mistaken for "now" can spin the loop.
        match self.state().unreadable {
            Some(u) => Sleep {
                sleep: u.pause(),
                floor: UNREADABLE_FLOOR,
            },
            None => Sleep {
                sleep: until_next.clamp(MIN_SLEEP, fallback.max(MIN_SLEEP)),
                floor: MIN_SLEEP,
            },
        }
    }

    /// Records a failed read of the vault; says what to tell, at the first failure and then
    /// once a minute.
    pub fn record_unreadable(&self) -> Option<Unread> {
        let now = Instant::now();
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
        match (due, first) {
            (false, _) => None,
            (true, true) => Some(Unread::First),
            (true, false) => Some(Unread::Still {
                lasted: now.duration_since(unreadable.since),
                tries: unreadable.tries,
            }),
        }
    }

    /// Records a good read of the vault; after how many failed tries, when it had failed.
    pub fn record_readable(&self) -> Option<u32> {
        self.state().unreadable.take().map(|u| u.tries)
    }

    /// For how long the vault has not been readable, while it is not.
    pub fn unreadable_for(&self) -> Option<Duration> {
        self.state().unreadable.map(|u| u.since.elapsed())
    }
}

/// [`Timetable::plan`] on the pacing it keeps.
fn plan(
    pacing: &mut AutoRefresh,
    candidates: Vec<Due>,
    busy: &HashSet<String>,
    now: DateTime<Utc>,
) -> Plan {
    let mut plan = Plan::default();
    for Due {
        name,
        obtained_at,
        at,
    } in candidates
    {
        let next = if at > now {
            Some(at)
        } else if busy.contains(&name) {
            None
        } else if pacing.may_try(&name, obtained_at, now) {
            pacing.tried(&name, obtained_at, now);
            plan.due.push(name);
            None
        } else {
            // Backing off after a failure; a token tried once waits for its successor.
            pacing.retry_at(&name).filter(|at| *at > now)
        };
        plan.next = match (plan.next, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timetable() -> Timetable {
        Timetable::new(Schedule {
            margin: Duration::from_secs(60),
            horizon: Duration::from_secs(3600),
        })
    }

    fn due(name: &str, obtained_at: DateTime<Utc>, at: DateTime<Utc>) -> Due {
        Due {
            name: name.to_string(),
            obtained_at,
            at,
        }
    }

    #[test]
    fn a_plan_refreshes_what_is_due_and_wakes_for_the_earliest_of_the_rest() {
        let now = Utc::now();
        let timetable = timetable();
        let later = now + chrono::Duration::minutes(5);
        let soon = now + chrono::Duration::minutes(2);
        let candidates = vec![
            due("later", now, later),
            due("now", now, now),
            due("soon", now, soon),
            due("busy", now, now),
        ];
        let busy = HashSet::from(["busy".to_string()]);
        let plan = timetable.plan(candidates, &busy, now);
        assert_eq!(
            plan,
            Plan {
                due: vec!["now".to_string()],
                next: Some(soon),
            }
        );
    }

    #[test]
    fn a_token_tried_once_is_not_tried_again_until_it_changes() {
        let now = Utc::now();
        let timetable = timetable();
        let first = timetable.plan(vec![due("p", now, now)], &HashSet::new(), now);
        assert_eq!(first.due, vec!["p".to_string()]);
        let again = timetable.plan(vec![due("p", now, now)], &HashSet::new(), now);
        assert!(again.due.is_empty(), "tried twice: {again:?}");
        let renewed = now + chrono::Duration::seconds(1);
        let next = timetable.plan(vec![due("p", renewed, renewed)], &HashSet::new(), renewed);
        assert_eq!(next.due, vec!["p".to_string()]);
    }

    #[test]
    fn an_unreadable_vault_is_told_once_then_slept_on_longer_and_longer() {
        let now = Utc::now();
        let timetable = timetable();
        let fallback = Duration::from_secs(30);
        assert_eq!(timetable.record_unreadable(), Some(Unread::First));
        assert_eq!(timetable.record_unreadable(), None);
        let slept = timetable.sleep_until(Some(now), now, fallback);
        assert_eq!(
            slept,
            Sleep {
                sleep: Duration::from_secs(2),
                floor: UNREADABLE_FLOOR
            }
        );
        assert!(timetable.unreadable_for().is_some());
        assert_eq!(timetable.record_readable(), Some(2));
        assert_eq!(timetable.record_readable(), None);
        let readable = timetable.sleep_until(None, now, fallback);
        assert_eq!(readable.sleep, fallback);
        assert_eq!(readable.floor, MIN_SLEEP);
    }
}
