//! The async OAuth worker: `Command`s in, `Event`s out.
//!
//! Jobs for different profiles run concurrently (bounded); jobs for one profile run one at a
//! time. Every new token is saved to the vault before success is reported, because the server
//! has already revoked the refresh token it replaced.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use age::secrecy::SecretString;
use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::clock::Clock;
use crate::oauth::listener::{Listener, loopback_target};
use crate::oauth::{OAuthClient, OAuthError, authorize, redirect};
use crate::vault::{CheckResult, Lease, PendingAuth, Profile, Store, VaultData, VaultError};

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
    /// Refresh, optionally only when the access token ends within the given time.
    Refresh {
        if_expiring_within: Option<Duration>,
    },
    /// Revoke the tokens at the server and forget them.
    Revoke,
    /// Ask the credentials endpoint who the token belongs to.
    Check,
}

impl Job {
    /// A short verb for logs and spinners.
    pub fn verb(&self) -> &'static str {
        match self {
            Job::Authorize { .. } => "authorize",
            Job::Exchange { .. } => "exchange",
            Job::Refresh { .. } => "refresh",
            Job::Revoke => "revoke",
            Job::Check => "check",
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

/// How a job ended well.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A new token was obtained and saved.
    NewToken,
    /// Nothing needed doing; the reason says why.
    Unchanged(String),
    /// The tokens were revoked and forgotten.
    Revoked,
    /// The token works and belongs to this owner.
    Checked(CheckResult),
}

impl Outcome {
    /// One line for people: the TUI's log and status line, and the log file.
    pub fn describe(&self) -> String {
        match self {
            Outcome::NewToken => "new token saved".into(),
            Outcome::Unchanged(why) => why.clone(),
            Outcome::Revoked => "tokens revoked".into(),
            Outcome::Checked(c) => format!("token belongs to {}", c.owner_line()),
        }
    }
}

/// What the worker reports.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        id: JobId,
        profile: String,
        verb: &'static str,
    },
    /// The authorize URL is ready; `listening_on` when the loopback listener waits for it.
    AuthorizeUrl {
        id: JobId,
        profile: String,
        url: String,
        listening_on: Option<SocketAddr>,
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
        saved: Option<Box<Profile>>,
    },
}

impl Event {
    /// The job this event belongs to.
    pub fn id(&self) -> JobId {
        match self {
            Event::Started { id, .. }
            | Event::AuthorizeUrl { id, .. }
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
    pub store: Arc<Store>,
    pub client: OAuthClient,
    pub clock: Clock,
    pub max_concurrent_jobs: usize,
}

/// The two ends the caller keeps.
pub struct WorkerHandle {
    pub commands: mpsc::UnboundedSender<Command>,
    pub events: mpsc::UnboundedReceiver<Event>,
}

/// Starts the worker on the current tokio runtime.
pub fn spawn(config: WorkerConfig) -> WorkerHandle {
    let (command_tx, mut command_rx) = mpsc::unbounded_channel::<Command>();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let saves = spawn_saver(config.store.clone());
    let worker = Arc::new(Worker {
        slots: Arc::new(Semaphore::new(config.max_concurrent_jobs.max(1))),
        saves,
        store: config.store,
        client: config.client,
        clock: config.clock,
        events: event_tx,
        profile_locks: Mutex::default(),
    });
    tokio::spawn(async move {
        while let Some(command) = command_rx.recv().await {
            let worker = worker.clone();
            tokio::spawn(async move { worker.run(command).await });
        }
    });
    WorkerHandle {
        commands: command_tx,
        events: event_rx,
    }
}

/// A change to one profile, applied by the saver.
type Change = Box<dyn FnOnce(&mut VaultData) -> Result<Profile, String> + Send>;

struct SaveRequest {
    change: Change,
    reply: oneshot::Sender<Result<Profile, String>>,
}

/// Most changes written in one save.
const MAX_BATCH: usize = 512;

/// Group commit: one task owns writing. It takes every change waiting in the queue, applies
/// them all, saves the vault once, and only then answers each job. Under load many tokens
/// share one write, and no job hears "saved" before its token is on disk.
fn spawn_saver(store: Arc<Store>) -> mpsc::UnboundedSender<SaveRequest> {
    let (tx, mut rx) = mpsc::unbounded_channel::<SaveRequest>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(more) => batch.push(more),
                    Err(_) => break,
                }
            }
            tracing::debug!(changes = batch.len(), "saving the vault");
            let (changes, replies): (Vec<Change>, Vec<_>) =
                batch.into_iter().map(|r| (r.change, r.reply)).unzip();
            let store = store.clone();
            let saved = tokio::task::spawn_blocking(move || {
                store.update(|data| {
                    Ok::<_, std::convert::Infallible>(
                        changes.into_iter().map(|c| c(data)).collect::<Vec<_>>(),
                    )
                })
            })
            .await;
            match saved {
                Ok(Ok(Ok(results))) => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                }
                Ok(Ok(Err(never))) => match never {},
                Ok(Err(e)) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(format!("internal error: {e}")));
                    }
                }
            }
        }
    });
    tx
}

type JobResult = Result<(Outcome, Option<Profile>), JobError>;

/// A failed job: the message for people, and the text to record on the profile when the
/// failure is the profile's condition.
struct JobError {
    message: String,
    record: Option<String>,
}

impl From<OAuthError> for JobError {
    fn from(e: OAuthError) -> Self {
        Self {
            record: e.belongs_on_profile().then(|| e.recorded_text()),
            message: e.to_string(),
        }
    }
}

impl From<VaultError> for JobError {
    fn from(e: VaultError) -> Self {
        Self {
            message: e.to_string(),
            record: None,
        }
    }
}

impl JobError {
    fn plain(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            record: None,
        }
    }
}

struct Worker {
    store: Arc<Store>,
    client: OAuthClient,
    clock: Clock,
    events: mpsc::UnboundedSender<Event>,
    profile_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    slots: Arc<Semaphore>,
    saves: mpsc::UnboundedSender<SaveRequest>,
}

impl Worker {
    fn emit(&self, event: Event) {
        // The receiver going away only means nobody listens any more.
        let _ = self.events.send(event);
    }

    fn profile_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.profile_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(name.to_string()).or_default().clone()
    }

    async fn run(self: Arc<Self>, command: Command) {
        let requested_at = self.clock.now();
        let Command { id, profile, job } = command;
        let lock = self.profile_lock(&profile);
        let _serial = lock.lock().await;
        tracing::info!(profile = %profile, job = job.verb(), "started");
        self.emit(Event::Started {
            id,
            profile: profile.clone(),
            verb: job.verb(),
        });
        let result = match job {
            Job::Authorize { listen, timeout } => {
                self.authorize(id, &profile, listen, timeout).await
            }
            Job::Exchange { input } => self.exchange(&profile, &input).await,
            Job::Refresh { if_expiring_within } => {
                self.refresh(&profile, if_expiring_within, requested_at)
                    .await
            }
            Job::Revoke => self.revoke(&profile).await,
            Job::Check => self.check(&profile).await,
        };
        match result {
            Ok((outcome, saved)) => {
                tracing::info!(profile = %profile, outcome = %outcome.describe(), "succeeded");
                self.emit(Event::Succeeded {
                    id,
                    profile,
                    outcome,
                    saved: saved.map(Box::new),
                })
            }
            Err(error) => {
                let saved = match error.record {
                    Some(text) => self
                        .save(&profile, move |p| p.last_error = Some(text))
                        .await
                        .ok(),
                    None => None,
                };
                tracing::warn!(profile = %profile, error = %error.message, "job failed");
                self.emit(Event::Failed {
                    id,
                    profile,
                    error: error.message,
                    saved: saved.map(Box::new),
                });
            }
        }
    }

    /// Runs one network call inside the concurrency bound. Only requests hold a slot: a job
    /// waiting for its save does not keep the next request from starting.
    async fn network<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        let _slot = self.slots.acquire().await;
        call.await
    }

    /// Runs blocking vault I/O (decryption, file locks) off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, VaultError> + Send + 'static,
    ) -> Result<T, JobError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| JobError::plain(format!("internal error: {e}")))?
            .map_err(JobError::from)
    }

    async fn lease(&self) -> Result<Lease, JobError> {
        self.blocking(Store::lease).await
    }

    async fn current(&self, name: &str) -> Result<Profile, JobError> {
        let wanted = name.to_string();
        self.blocking(move |store| store.profile(&wanted))
            .await?
            .ok_or_else(|| {
                JobError::plain(format!("no profile named '{name}': see `tokdeck status`"))
            })
    }

    /// Applies `change` to the stored profile and saves atomically (possibly in one write
    /// with other jobs' changes); returns the profile as saved.
    async fn save(
        &self,
        name: &str,
        change: impl FnOnce(&mut Profile) + Send + 'static,
    ) -> Result<Profile, JobError> {
        let name = name.to_string();
        let (reply, answer) = oneshot::channel();
        let request = SaveRequest {
            change: Box::new(move |data: &mut VaultData| match data.profile_mut(&name) {
                Some(p) => {
                    change(p);
                    Ok(p.clone())
                }
                None => Err(format!("profile '{name}' was removed meanwhile")),
            }),
            reply,
        };
        self.saves
            .send(request)
            .map_err(|_| JobError::plain("internal error: the saver stopped"))?;
        answer
            .await
            .map_err(|_| JobError::plain("internal error: the saver stopped"))?
            .map_err(JobError::plain)
    }

    /// Saves a freshly issued token; retried, because losing it loses the integration.
    async fn save_token(
        &self,
        name: &str,
        token: crate::vault::Token,
    ) -> Result<Profile, JobError> {
        let mut last = None;
        for attempt in 0..3 {
            let token = token.clone();
            match self
                .save(name, move |p| {
                    p.token = Some(token);
                    p.last_error = None;
                    p.pending = None;
                })
                .await
            {
                Ok(p) => return Ok(p),
                Err(e) => {
                    tracing::error!(attempt, error = %e.message, "saving a new token failed");
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let cause = last.map(|e| e.message).unwrap_or_default();
        Err(JobError::plain(format!(
            "the server issued new tokens but saving them failed ({cause}); the old refresh token may be dead: fix the problem, then authorize again"
        )))
    }

    async fn authorize(&self, id: JobId, name: &str, listen: bool, timeout: Duration) -> JobResult {
        let profile = self.current(name).await?;
        let request = authorize::build(&profile)?;
        let pending = PendingAuth {
            state: request.state.clone(),
            pkce_verifier: request.pkce_verifier.clone().map(SecretString::from),
            started_at: self.clock.now(),
        };
        let target = loopback_target(&profile.redirect_uri).filter(|_| listen);
        // Bind before showing the URL, so a fast browser cannot beat the listener.
        let listener = match &target {
            Some(t) => Some(Listener::bind(t).await?),
            None => None,
        };
        let saved = {
            let _lease = self.lease().await?;
            self.save(name, move |p| p.pending = Some(pending)).await?
        };
        self.emit(Event::AuthorizeUrl {
            id,
            profile: name.to_string(),
            url: request.url.clone(),
            listening_on: listener.as_ref().and_then(Listener::local_addr),
        });
        let Some(listener) = listener else {
            return Ok((
                Outcome::Unchanged("waiting for the code to be pasted".into()),
                Some(saved),
            ));
        };
        let events = self.events.clone();
        let profile_name = name.to_string();
        let code = listener
            .wait_for_code(&request.state, timeout, |why| {
                let _ = events.send(Event::Note {
                    id,
                    profile: profile_name.clone(),
                    message: why.to_string(),
                });
            })
            .await?;
        self.emit(Event::Note {
            id,
            profile: name.to_string(),
            message: "redirect received: exchanging the code".into(),
        });
        self.exchange_code(name, &code, request.pkce_verifier.as_deref())
            .await
    }

    async fn exchange(&self, name: &str, input: &SecretString) -> JobResult {
        use age::secrecy::ExposeSecret;
        let profile = self.current(name).await?;
        let pending = profile.pending.as_ref();
        let code =
            redirect::parse_pasted(input.expose_secret(), pending.map(|p| p.state.as_str()))?;
        let verifier = pending
            .and_then(|p| p.pkce_verifier.as_ref())
            .map(|v| v.expose_secret().to_string());
        if profile.pkce && verifier.is_none() {
            return Err(JobError::plain(
                "this profile uses PKCE but no authorization is pending: run authorize first",
            ));
        }
        self.exchange_code(name, &code, verifier.as_deref()).await
    }

    async fn exchange_code(&self, name: &str, code: &str, verifier: Option<&str>) -> JobResult {
        let _lease = self.lease().await?;
        let profile = self.current(name).await?;
        let response = self
            .network(self.client.exchange(&profile, code, verifier))
            .await?;
        let token = response.into_token(self.clock.now(), profile.refresh_window, None);
        let saved = self.save_token(name, token).await?;
        Ok((Outcome::NewToken, Some(saved)))
    }

    async fn refresh(
        &self,
        name: &str,
        if_expiring_within: Option<Duration>,
        requested_at: DateTime<Utc>,
    ) -> JobResult {
        // The lease makes refreshes of this vault exclusive across processes; reading the
        // token only after taking it means we never use a refresh token someone rotated.
        let _lease = self.lease().await?;
        let profile = self.current(name).await?;
        let Some(token) = &profile.token else {
            return Err(OAuthError::NoToken.into());
        };
        if crate::health::never_expires(token) && token.refresh_token.is_none() {
            return Ok((
                Outcome::Unchanged("does not expire; nothing to refresh".into()),
                None,
            ));
        }
        if token.obtained_at > requested_at {
            return Ok((
                Outcome::Unchanged("refreshed by another tokdeck process just now".into()),
                Some(profile),
            ));
        }
        if let Some(margin) = if_expiring_within {
            let now = self.clock.now();
            let fresh = match token.expires_at {
                None => true,
                Some(at) => (at - now).num_seconds() > margin.as_secs() as i64,
            };
            if fresh {
                return Ok((
                    Outcome::Unchanged("still valid beyond the margin".into()),
                    Some(profile),
                ));
            }
        }
        let Some(refresh_token) = &token.refresh_token else {
            return Err(OAuthError::NoRefreshToken.into());
        };
        let response = self
            .network(self.client.refresh(&profile, refresh_token))
            .await?;
        let new_token = response.into_token(self.clock.now(), profile.refresh_window, Some(token));
        let saved = self.save_token(name, new_token).await?;
        Ok((Outcome::NewToken, Some(saved)))
    }

    async fn revoke(&self, name: &str) -> JobResult {
        let _lease = self.lease().await?;
        let profile = self.current(name).await?;
        let Some(token) = &profile.token else {
            return Err(OAuthError::NoToken.into());
        };
        if let Some(refresh) = &token.refresh_token {
            self.network(self.client.revoke(&profile, refresh)).await?;
        }
        self.network(self.client.revoke(&profile, &token.access_token))
            .await?;
        let saved = self
            .save(name, |p| {
                p.token = None;
                p.last_check = None;
                p.last_error = None;
            })
            .await?;
        Ok((Outcome::Revoked, Some(saved)))
    }

    async fn check(&self, name: &str) -> JobResult {
        let profile = self.current(name).await?;
        let Some(token) = &profile.token else {
            return Err(OAuthError::NoToken.into());
        };
        let result = self
            .network(
                self.client
                    .check(&profile, &token.access_token, self.clock.now()),
            )
            .await?;
        let stored = result.clone();
        let saved = self
            .save(name, move |p| {
                p.last_check = Some(stored);
                p.last_error = None;
            })
            .await?;
        Ok((Outcome::Checked(result), Some(saved)))
    }
}
