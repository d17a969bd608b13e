//! What shows for a while: a message on the status line, a profile's secrets.

use chrono::{DateTime, Utc};

/// A message on the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub text: String,
    /// An error (shown as one), or news.
    pub error: bool,
    /// Until when it shows.
    pub until: DateTime<Utc>,
}

/// The profile whose secrets show, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reveal {
    pub profile: String,
    pub until: DateTime<Utc>,
}
