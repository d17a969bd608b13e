//! Which failed requests are sent again, and after how long: capped exponential backoff with
//! jitter, a server's Retry-After, and never a second use of a single-use request whose
//! answer may have been lost.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

/// What the retry rules need to know of a failure.
pub trait Retryable: std::fmt::Display {
    /// Worth retrying with backoff: the same request may succeed in a moment.
    fn is_transient(&self) -> bool;
    /// How long the server asked to be left alone, when it said.
    fn retry_after(&self) -> Option<Duration>;
    /// Whether the server cannot have seen the request (it never left, or was refused
    /// before it was read), so that a single-use one may go again.
    fn may_resend_single_use(&self) -> bool;
}

/// How transient failures are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A Retry-After longer than this is not waited for; the error is reported instead.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_delay: Duration::from_millis(400),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (capped exponential with full jitter),
    /// or `None` when the error is permanent, attempts are used up, or the server asks
    /// for a longer pause than we wait.
    pub fn delay_after(&self, attempt: u32, error: &impl Retryable) -> Option<Duration> {
        if attempt + 1 >= self.attempts || !error.is_transient() {
            return None;
        }
        if let Some(after) = error.retry_after() {
            return (after <= self.max_retry_after).then_some(after);
        }
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.max_delay);
        let jittered = rand::rng().random_range(ceiling / 2..=ceiling);
        Some(jittered)
    }
}

/// Which failed requests may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Any transient failure (reads, polls, revocations: sending twice does no harm).
    Freely,
    /// Only when no answer can have been lost (see [`Retryable::may_resend_single_use`]):
    /// for codes and refresh tokens, which a second use may burn.
    OnlyUnsent,
}

/// Runs `attempt_once` until it succeeds or `policy` says stop; with [`Resend::OnlyUnsent`],
/// only while the server cannot have seen the request.
pub async fn with_retries<T, E, F, Fut>(
    policy: &RetryPolicy,
    resend: Resend,
    mut attempt_once: F,
) -> Result<T, E>
where
    E: Retryable,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        match attempt_once().await {
            Ok(v) => return Ok(v),
            Err(e) if resend == Resend::OnlyUnsent && !e.may_resend_single_use() => {
                return Err(e);
            }
            Err(e) => match policy.delay_after(attempt, &e) {
                Some(delay) => {
                    tracing::info!(attempt, ?delay, error = %e, "retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                None => return Err(e),
            },
        }
    }
}

/// How long a Retry-After header asks to wait: seconds, or an HTTP date.
pub fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
}
