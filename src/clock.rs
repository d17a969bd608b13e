//! A time source that tests can set.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// Where "now" comes from.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// A fixed instant (unix seconds) that tests move by hand.
    Fixed(Arc<AtomicI64>),
}

impl Clock {
    /// A clock frozen at `at`.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Clock::Fixed(Arc::new(AtomicI64::new(at.timestamp())))
    }

    /// The current instant.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(secs) => {
                DateTime::from_timestamp(secs.load(Ordering::Relaxed), 0).unwrap_or_default()
            }
        }
    }

    /// The offset of local time, for showing times to people: the system's, or UTC for a
    /// fixed clock (so tests read the same everywhere).
    pub fn utc_offset(&self) -> chrono::FixedOffset {
        use chrono::Offset;
        match self {
            Clock::System => chrono::Local::now().offset().fix(),
            Clock::Fixed(_) => Utc.fix(),
        }
    }

    /// Moves a fixed clock forward; the system clock ignores it.
    pub fn advance(&self, secs: i64) {
        if let Clock::Fixed(at) = self {
            at.fetch_add(secs, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let start = DateTime::from_timestamp(1_000, 0).unwrap();
        let clock = Clock::fixed(start);
        assert_eq!(clock.now(), start);
        clock.advance(61);
        assert_eq!(clock.now().timestamp(), 1_061);
    }
}
