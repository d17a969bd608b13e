//! A failed job: what people read, what kind of failure it is, and what the profile records.

use super::{FailureKind, Outcome};
use crate::oauth::OAuthError;
use crate::vault::{Profile, VaultError};

pub(crate) type JobResult = Result<(Outcome, Option<Profile>), JobError>;

/// A failed job: the message for people, its kind, and the text to record on the profile
/// when the failure is the profile's condition.
pub(crate) struct JobError {
    pub(crate) message: String,
    pub(crate) kind: FailureKind,
    pub(crate) record: Option<String>,
}

impl From<OAuthError> for JobError {
    fn from(e: OAuthError) -> Self {
        let kind = if e.belongs_on_profile() {
            FailureKind::Refused
        } else if e.is_transient() {
            FailureKind::Transient
        } else {
            FailureKind::Precondition
        };
        Self {
            record: e.belongs_on_profile().then(|| e.recorded_text()),
            message: e.to_string(),
            kind,
        }
    }
}

impl From<VaultError> for JobError {
    fn from(e: VaultError) -> Self {
        Self::new(FailureKind::Storage, e.to_string())
    }
}

impl JobError {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind,
            record: None,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Internal, message)
    }

    pub(crate) fn cancelled() -> Self {
        Self::new(FailureKind::Cancelled, "cancelled")
    }
}
