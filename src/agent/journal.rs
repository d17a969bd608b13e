//! What the agent did, one line an action: in the log, on stderr (as a service's journal
//! shows them), and the last one for `agent status`.

use std::sync::{Mutex, PoisonError};

use crate::clock::Clock;

pub struct Journal {
    clock: Clock,
    last: Mutex<Option<String>>,
}

impl Journal {
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            last: Mutex::new(None),
        }
    }

    /// Records one action.
    pub fn note(&self, text: &str) {
        tracing::info!("{text}");
        let line = format!(
            "{} {text}",
            self.clock.now().format("%Y-%m-%d %H:%M:%S UTC")
        );
        crate::note!("tokdeck agent: {line}");
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(line);
    }

    /// The last action recorded.
    pub fn last(&self) -> Option<String> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
