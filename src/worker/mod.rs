//! The async OAuth worker: `Command`s in, `Event`s out.
//!
//! Jobs for different profiles run concurrently (bounded); jobs for one profile run one at a
//! time. Every new token is saved to the vault before success is reported, because the server
//! has already revoked the refresh token it replaced. Every job is supervised (a panic becomes
//! a failure event, never a row that stays busy) and has a cancellation token; only jobs that
//! merely wait (the loopback listener) stop on it: a job that may already hold a rotated token
//! always runs to its save.

mod error;
mod held;
mod jobs;
mod lease;
mod recorder;
mod saver;
mod shared;
mod spool;

pub use spool::Spool;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use age::secrecy::SecretString;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::oauth::OAuthClient;
use crate::vault::{CheckResult, Profile, StoreHandle};

/// Identifies one job in its events.
pub type JobId = u64;

/// What to do for a profile.
#[derive(Debug)]
pub enum Job {
    /// Build and remember an authorize URL; with `listen` and a loopback redirect URI, catch
    /// the redirect and exchange the code.
    Authorize { listen: bool, timeout: Duration },
    /// Exchange a pasted code or redirect URL.
    Exchange { input: SecretString },
    /// Refresh, optionally only when the access token ends within the given time. A token
    /// that never expires (a company token) is renewed only when `force`d: a service may hold
    /// it because it never expires, and rotating it revokes that copy.
    Refresh {
        if_expiring_within: Option<Duration>,
        force: bool,
    },
    /// Refresh because the agent's schedule says the token is due, judged again under the
    /// lease against the token stored then: one that another machine renewed meanwhile is
    /// left alone, so machines keeping one vault alive do not repeat each other's refreshes.
    KeepAlive(Schedule),
    /// Revoke the tokens at the server and forget them.
    Revoke,
    /// Renew the refresh token whatever its state, and revoke the one it replaces with its
    /// access token: after a key that could read them left the recipients.
    Rotate,
    /// Ask the credentials endpoint who the token belongs to.
    Check,
    /// Read the endpoints again from the issuer's metadata.
    Rediscover,
}

/// When the agent renews a token: `health::keepalive_at` with this margin and horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Renew an auto-refresh profile's access token this long before it ends.
    pub margin: Duration,
    /// Renew every refreshable token this long before its refresh window ends.
    pub horizon: Duration,
}

/// The kind of a job, without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Authorize,
    Exchange,
    Refresh,
    Revoke,
    Rotate,
    Check,
    Rediscover,
}

impl JobKind {
    /// A short verb for logs and spinners.
    pub fn verb(self) -> &'static str {
        match self {
            JobKind::Authorize => "authorize",
            JobKind::Exchange => "exchange",
            JobKind::Refresh => "refresh",
            JobKind::Revoke => "revoke",
            JobKind::Rotate => "rotate",
            JobKind::Check => "check",
            JobKind::Rediscover => "rediscover",
        }
    }

    /// Whether the job may stop on cancellation: only one that waits and holds nothing. A
    /// job that talks to the token endpoint may already hold a rotated token and must reach
    /// its save.
    pub fn cancellable(self) -> bool {
        matches!(self, JobKind::Authorize)
    }
}

impl Job {
    /// The kind of this job.
    pub fn kind(&self) -> JobKind {
        match self {
            Job::Authorize { .. } => JobKind::Authorize,
            Job::Exchange { .. } => JobKind::Exchange,
            Job::Refresh { .. } | Job::KeepAlive(_) => JobKind::Refresh,
            Job::Revoke => JobKind::Revoke,
            Job::Rotate => JobKind::Rotate,
            Job::Check => JobKind::Check,
            Job::Rediscover => JobKind::Rediscover,
        }
    }
}

/// A job for one profile.
#[derive(Debug)]
pub struct Command {
    pub id: JobId,
    pub profile: String,
    pub job: Job,
}

/// What the server says of an access token just revoked, asked once more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// It refuses the token: the revocation took.
    Verified,
    /// It still accepts the token, until it expires (`None`: it never does).
    StillAccepted { until: Option<DateTime<Utc>> },
    /// It could not be asked; why.
    Unverified(String),
}

impl Revocation {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Revocation::Verified => "verified: the server refuses the access token now".into(),
            Revocation::StillAccepted { until: Some(at) } => format!(
                "but the server still accepts the access token until it expires at {}",
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Revocation::StillAccepted { until: None } => {
                "but the server still accepts the access token, which does not expire: revoke the grant in the provider's console".into()
            }
            Revocation::Unverified(why) => format!("not verified ({why})"),
        }
    }
}

/// How a job ended well.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A new token was obtained and saved.
    NewToken,
    /// Nothing needed doing; the reason says why.
    Unchanged(String),
    /// The tokens were revoked and forgotten; what the server said of the revoked access
    /// token afterwards.
    Revoked(Revocation),
    /// The token works and belongs to this owner.
    Checked(CheckResult),
    /// The endpoints were read again from the issuer's metadata; `changed` when they differ
    /// from what the profile held.
    Rediscovered { changed: bool },
    /// The refresh token was renewed to rotate it ([`Job::Rotate`]).
    Rotated(Rotation),
}

/// What rotating a refresh token came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// A new refresh token is saved; the one it replaced and its access token were revoked
    /// at the server, or `unrevoked` says why not.
    Renewed { unrevoked: Option<String> },
    /// The server handed back the same refresh token: a refresh cannot rotate it.
    Kept,
}

impl Rotation {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Rotation::Renewed { unrevoked: None } => {
                "rotated: a new refresh token saved, the old one and its access token revoked".into()
            }
            Rotation::Renewed { unrevoked: Some(why) } => format!(
                "rotated: a new refresh token saved, but the old ones were not revoked ({why}): they stay valid until they expire"
            ),
            Rotation::Kept => "not rotated: the server keeps refresh tokens across refreshes, so the old one still works: revoke it (tokdeck revoke NAME) and authorize again".into(),
        }
    }
}

impl Outcome {
    /// One line for people: the TUI's log and status line, and the log file.
    pub fn describe(&self) -> String {
        match self {
            Outcome::NewToken => "new token saved".into(),
            Outcome::Unchanged(why) => why.clone(),
            Outcome::Revoked(r) => format!("tokens revoked; {}", r.describe()),
            Outcome::Checked(c) => format!("token belongs to {}", c.owner_line()),
            Outcome::Rediscovered { .. } => "endpoints read from the issuer's metadata".into(),
            Outcome::Rotated(r) => r.describe(),
        }
    }
}

/// A job that failed, as its last event said: the kind, for decisions, and the message, for
/// people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl JobFailure {
    /// A failure of this process rather than of the job (the agent stopping, say).
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Internal,
            message: message.into(),
        }
    }
}

/// Why a job failed, for decisions (retry later? record? say "cancelled"?); the message in
/// the event is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The server refused the profile's credentials or tokens; recorded on the profile.
    Refused,
    /// Network or server trouble that may pass: worth another try later.
    Transient,
    /// Something local is missing (no token yet, a mistyped code, a busy port).
    Precondition,
    /// The vault could not be read or written.
    Storage,
    /// Stopped on request.
    Cancelled,
    /// A bug: the job panicked or stopped unexpectedly.
    Internal,
}

impl FailureKind {
    /// What kind of failure it was, in words a person reads (the audit log shows it).
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused by the server",
            FailureKind::Transient => "may pass",
            FailureKind::Precondition => "not possible now",
            FailureKind::Storage => "storage",
            FailureKind::Cancelled => "cancelled",
            FailureKind::Internal => "internal error",
        }
    }
}

/// What the worker reports.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        id: JobId,
        profile: String,
        kind: JobKind,
    },
    /// The authorize URL is ready; `listening_on` when the loopback listener waits for it.
    AuthorizeUrl {
        id: JobId,
        profile: String,
        url: String,
        listening_on: Option<SocketAddr>,
    },
    /// A device login waits: show the code and where to enter it.
    DeviceCode {
        id: JobId,
        profile: String,
        user_code: String,
        verification_uri: String,
        /// `verification_uri_complete` when the server gave one, else `verification_uri`.
        uri_to_open: String,
        expires_at: chrono::DateTime<chrono::Utc>,
    },
    /// Something worth telling while the job goes on.
    Note {
        id: JobId,
        profile: String,
        message: String,
    },
    /// Done; `saved` is the profile as now stored, when the job changed it.
    Succeeded {
        id: JobId,
        profile: String,
        outcome: Outcome,
        saved: Option<Box<Profile>>,
    },
    Failed {
        id: JobId,
        profile: String,
        error: String,
        kind: FailureKind,
        saved: Option<Box<Profile>>,
    },
}

impl Event {
    /// The job this event belongs to.
    pub fn id(&self) -> JobId {
        match self {
            Event::Started { id, .. }
            | Event::AuthorizeUrl { id, .. }
            | Event::DeviceCode { id, .. }
            | Event::Note { id, .. }
            | Event::Succeeded { id, .. }
            | Event::Failed { id, .. } => *id,
        }
    }

    /// Whether this is the job's last event.
    pub fn is_final(&self) -> bool {
        matches!(self, Event::Succeeded { .. } | Event::Failed { .. })
    }
}

/// Everything the worker needs.
pub struct WorkerConfig {
    pub store: StoreHandle,
    pub client: OAuthClient,
    pub clock: Clock,
    /// The most requests to one server at once.
    pub max_concurrent_jobs: usize,
    /// Where every job's end is recorded, when anywhere.
    pub audit: Option<crate::audit::AuditLog>,
    /// A command that ends after its jobs: a token whose save failed cannot wait in it for
    /// a next action, and its errors say so.
    pub one_shot: bool,
    /// Where new tokens whose save failed wait for a later process ([`Spool`]).
    pub spool: Option<Spool>,
}

/// Stops jobs: one, or all of them at shutdown.
#[derive(Clone, Default)]
pub struct Canceller {
    /// The token of every job still running, by id.
    tokens: Arc<Mutex<HashMap<JobId, CancellationToken>>>,
    /// Parent of every job's token: cancelling it cancels them all.
    all: CancellationToken,
}

impl Canceller {
    /// Stops job `id` if it is one that may stop (see [`JobKind::cancellable`]).
    pub fn cancel(&self, id: JobId) {
        if let Some(token) = self.lock().get(&id) {
            token.cancel();
        }
    }

    /// Stops every job that may stop; the others run to their end.
    pub fn cancel_all(&self) {
        self.all.cancel();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, CancellationToken>> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn register(&self, id: JobId) -> CancellationToken {
        let token = self.all.child_token();
        self.lock().insert(id, token.clone());
        token
    }

    fn forget(&self, id: JobId) {
        self.lock().remove(&id);
    }
}

/// Resolves when the worker has ended: every job task and the dispatcher hold a sender of
/// this channel and never send, so it closes when the last of them is gone (mini-redis's
/// shutdown pattern).
pub struct Finished(mpsc::Receiver<()>);

impl Finished {
    /// Waits until the worker has no job left and takes no more (its command sender is gone).
    pub async fn wait(&mut self) {
        while self.0.recv().await.is_some() {}
    }
}

/// The ends the caller keeps. To shut the worker down without losing a rotated token:
/// [`Canceller::cancel_all`] (listeners stop), drop `commands` (no new jobs), and keep taking
/// `events` until [`Finished::wait`] returns (the jobs that may hold a token have saved it).
/// The app's runtime and the agent both do this.
pub struct WorkerHandle {
    pub commands: mpsc::UnboundedSender<Command>,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub canceller: Canceller,
    pub finished: Finished,
}

/// Starts the worker on the current tokio runtime.
pub fn spawn(config: WorkerConfig) -> WorkerHandle {
    let (command_tx, mut command_rx) = mpsc::unbounded_channel::<Command>();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let (done, finished) = mpsc::channel::<()>(1);
    let canceller = Canceller::default();
    let worker = Arc::new(shared::Worker::new(config, event_tx.clone()));
    let dispatcher_canceller = canceller.clone();
    tokio::spawn(async move {
        while let Some(command) = command_rx.recv().await {
            let token = dispatcher_canceller.register(command.id);
            let job = worker
                .clone()
                .run(command.id, command.profile.clone(), command.job, token);
            let supervised = supervise(command.id, command.profile, job, event_tx.clone());
            let canceller = dispatcher_canceller.clone();
            let done = done.clone();
            tokio::spawn(async move {
                supervised.await;
                canceller.forget(command.id);
                drop(done);
            });
        }
        drop(done);
    });
    WorkerHandle {
        commands: command_tx,
        events: event_rx,
        canceller,
        finished: Finished(finished),
    }
}

/// Runs `job` in its own task; if it panics or is aborted, reports that as the job's failure,
/// so a broken job never leaves its profile busy forever.
pub async fn supervise(
    id: JobId,
    profile: String,
    job: impl std::future::Future<Output = ()> + Send + 'static,
    events: mpsc::UnboundedSender<Event>,
) {
    if let Err(e) = tokio::spawn(job).await {
        let why = if e.is_panic() {
            "panicked"
        } else {
            "was stopped"
        };
        tracing::error!(profile = %profile, id, "job {why}");
        let _ = events.send(Event::Failed {
            id,
            profile,
            error: format!("internal error: the job {why}; the vault is unchanged unless the log says otherwise: please report it"),
            kind: FailureKind::Internal,
            saved: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_job_becomes_a_failure_event() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        supervise(7, "p".into(), async { panic!("boom") }, tx).await;
        match rx.recv().await {
            Some(Event::Failed {
                id, kind, error, ..
            }) => {
                assert_eq!((id, kind), (7, FailureKind::Internal));
                assert!(error.contains("panicked"), "{error}");
            }
            other => panic!("no failure event: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_job_that_ends_normally_adds_nothing() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        supervise(7, "p".into(), async {}, tx).await;
        assert!(rx.recv().await.is_none());
    }

    #[test]
    fn only_waiting_jobs_may_be_cancelled() {
        assert!(JobKind::Authorize.cancellable());
        for kind in [
            JobKind::Exchange,
            JobKind::Refresh,
            JobKind::Revoke,
            JobKind::Rotate,
            JobKind::Check,
        ] {
            assert!(!kind.cancellable(), "{kind:?}");
        }
    }
}
