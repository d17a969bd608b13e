//! Pacing for automatic refreshes (the app's auto-refresh, the agent's keep-alive): at most
//! one attempt per token, exponential backoff after failures.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

/// The first wait after a failed auto-refresh; it doubles with each further failure.
const FIRST_BACKOFF: Duration = Duration::seconds(30);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::minutes(30);
/// Never two attempts for one profile closer than this, whatever the token's lifetime.
const MIN_INTERVAL: Duration = Duration::seconds(10);

#[derive(Debug, Clone, Copy)]
struct Attempts {
    /// `obtained_at` of the token last tried: a token is refreshed once, then replaced.
    token: DateTime<Utc>,
    at: DateTime<Utc>,
    failures: u32,
    /// No attempt before this.
    not_before: DateTime<Utc>,
}

/// What the app remembers about its own auto-refresh attempts.
#[derive(Debug)]
pub struct AutoRefresh {
    attempts: HashMap<String, Attempts>,
    /// The least time between two attempts for one profile.
    min_interval: Duration,
}

/// The app's pacing: it looks every second, and never tries one profile twice within
/// `MIN_INTERVAL`.
impl Default for AutoRefresh {
    fn default() -> Self {
        Self {
            attempts: HashMap::new(),
            min_interval: MIN_INTERVAL,
        }
    }
}

impl AutoRefresh {
    /// The agent's pacing: it wakes at each token's deadline, so a token renewed successfully
    /// may be renewed again as soon as it is due; failures still back off.
    pub fn by_deadline() -> Self {
        Self {
            attempts: HashMap::new(),
            min_interval: Duration::zero(),
        }
    }

    /// When a profile that failed may be tried again, if it is waiting for that.
    pub fn retry_at(&self, name: &str) -> Option<DateTime<Utc>> {
        self.attempts
            .get(name)
            .filter(|a| a.failures > 0)
            .map(|a| a.not_before)
    }

    /// Whether the token obtained at `token` of profile `name` may be auto-refreshed now.
    pub fn may_try(&self, name: &str, token: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        match self.attempts.get(name) {
            None => true,
            Some(a) => {
                let new_token = a.token != token;
                let backed_off = now >= a.not_before && now - a.at >= self.min_interval;
                backed_off && (new_token || a.failures > 0)
            }
        }
    }

    /// Notes an attempt on the token obtained at `token`.
    pub fn tried(&mut self, name: &str, token: DateTime<Utc>, now: DateTime<Utc>) {
        let failures = self.attempts.get(name).map_or(0, |a| a.failures);
        self.attempts.insert(
            name.to_string(),
            Attempts {
                token,
                at: now,
                failures,
                not_before: now + self.min_interval,
            },
        );
    }

    /// A job for `name` failed: wait longer before the next attempt.
    pub fn failed(&mut self, name: &str, now: DateTime<Utc>) {
        if let Some(a) = self.attempts.get_mut(name) {
            a.failures += 1;
            let doublings = a.failures.saturating_sub(1).min(16);
            let wait = FIRST_BACKOFF
                .checked_mul(1 << doublings)
                .unwrap_or(MAX_BACKOFF)
                .min(MAX_BACKOFF);
            a.not_before = now + wait;
        }
    }

    /// A job for `name` succeeded: the backoff is over.
    pub fn succeeded(&mut self, name: &str) {
        if let Some(a) = self.attempts.get_mut(name) {
            a.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn one_attempt_per_token() {
        let mut a = AutoRefresh::default();
        assert!(a.may_try("p", at(0), at(100)));
        a.tried("p", at(0), at(100));
        a.succeeded("p");
        assert!(!a.may_try("p", at(0), at(200)), "same token again");
        assert!(a.may_try("p", at(150), at(200)), "a new token");
        assert!(
            !a.may_try("p", at(150), at(105)),
            "too soon after the last try"
        );
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_cap() {
        let mut a = AutoRefresh::default();
        a.tried("p", at(0), at(0));
        a.failed("p", at(0));
        assert!(!a.may_try("p", at(0), at(29)));
        assert!(a.may_try("p", at(0), at(30)));
        a.tried("p", at(0), at(30));
        a.failed("p", at(30));
        assert!(!a.may_try("p", at(0), at(89)));
        assert!(a.may_try("p", at(0), at(90)));
        for _ in 0..20 {
            a.tried("p", at(0), at(90));
            a.failed("p", at(90));
        }
        assert!(a.may_try("p", at(0), at(90 + 1_800)), "capped at 30 min");
    }
}
