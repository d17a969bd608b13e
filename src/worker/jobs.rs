//! The jobs themselves: authorize, exchange, refresh, revoke, check.

mod grants;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use age::secrecy::SecretString;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::saver::{SaveRequest, spawn_saver};
use super::{Event, FailureKind, Job, JobId, Outcome, WorkerConfig};
use crate::clock::Clock;
use crate::oauth::listener::{Listener, loopback_target};
use crate::oauth::{OAuthClient, OAuthError, authorize, redirect};
use crate::vault::{GrantType, Lease, PendingAuth, Profile, Store, VaultError};
use age::secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

type JobResult = Result<(Outcome, Option<Profile>), JobError>;

/// Whether `token` can still be used or renewed.
fn still_works(token: &crate::vault::Token, now: DateTime<Utc>) -> bool {
    let access = token.expires_at.is_none_or(|at| at > now);
    let renewable =
        token.refresh_token.is_some() && token.refresh_expires_at.is_none_or(|at| at > now);
    access || renewable
}

/// A failed job: the message for people, its kind, and the text to record on the profile
/// when the failure is the profile's condition.
struct JobError {
    message: String,
    kind: FailureKind,
    record: Option<String>,
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
    fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind,
            record: None,
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Internal, message)
    }

    fn cancelled() -> Self {
        Self::new(FailureKind::Cancelled, "cancelled")
    }
}

/// The worker's shared state; one per [`super::spawn`].
pub struct Worker {
    store: Arc<Store>,
    client: OAuthClient,
    clock: Clock,
    events: mpsc::UnboundedSender<Event>,
    profile_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    saves: mpsc::UnboundedSender<SaveRequest>,
    /// Fingerprints of refresh tokens the server has answered: never sent again, even when
    /// saving their successor failed (a server with strict rotation would take a second use
    /// for theft and revoke the whole grant).
    spent: Mutex<HashSet<[u8; 32]>>,
    /// New tokens the server issued whose save failed, by profile: kept while this process
    /// runs and saved before anything else is done with their profile (the refresh token
    /// they replace is dead).
    unsaved: Mutex<HashMap<String, crate::vault::Token>>,
}

impl Worker {
    pub fn new(config: WorkerConfig, events: mpsc::UnboundedSender<Event>) -> Self {
        Self {
            saves: spawn_saver(config.store.clone()),
            store: config.store,
            // Requests to each server are bounded by the client's adaptive windows.
            client: config
                .client
                .with_max_concurrent(config.max_concurrent_jobs),
            clock: config.clock,
            events,
            profile_locks: Mutex::default(),
            spent: Mutex::default(),
            unsaved: Mutex::default(),
        }
    }

    fn unsaved(&self) -> std::sync::MutexGuard<'_, HashMap<String, crate::vault::Token>> {
        self.unsaved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Saves the token of `name` whose save failed before, if there is one; until that works,
    /// no job of the profile runs (it would act on the dead token the file still holds).
    async fn save_unsaved(&self, name: &str) -> Result<(), JobError> {
        let Some(token) = self.unsaved().get(name).cloned() else {
            return Ok(());
        };
        let _lease = self.lease().await?;
        let saved = self
            .save(name, move |p| {
                p.token = Some(token);
                p.last_error = None;
                p.pending = None;
            })
            .await;
        match saved {
            Ok(_) => {
                self.unsaved().remove(name);
                tracing::info!(profile = %name, "a new token whose save had failed is saved now");
                Ok(())
            }
            Err(e) => Err(JobError::new(
                FailureKind::Storage,
                format!(
                    "a new token is still waiting to be saved ({}); this process keeps it and tries again at the next action: fix the problem (a full disk, a read-only folder)",
                    e.message
                ),
            )),
        }
    }

    fn spent(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.spent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn emit(&self, event: Event) {
        // The receiver going away only means nobody listens any more.
        let _ = self.events.send(event);
    }

    fn profile_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .profile_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(name.to_string()).or_default().clone()
    }

    /// Runs one job to its final event. `cancel` stops only a job that may stop (see
    /// [`super::JobKind::cancellable`]).
    pub async fn run(
        self: Arc<Self>,
        id: JobId,
        profile: String,
        job: Job,
        cancel: CancellationToken,
    ) {
        let requested_at = self.clock.now();
        let kind = job.kind();
        let lock = self.profile_lock(&profile);
        let _serial = lock.lock().await;
        tracing::info!(profile = %profile, job = kind.verb(), "started");
        self.emit(Event::Started {
            id,
            profile: profile.clone(),
            kind,
        });
        if let Err(error) = self.save_unsaved(&profile).await {
            self.failed(id, profile, error).await;
            return;
        }
        let result = match job {
            Job::Authorize { listen, timeout } => {
                self.authorize(id, &profile, listen, timeout, &cancel).await
            }
            Job::Exchange { input } => self.exchange(&profile, &input).await,
            Job::Refresh { if_expiring_within } => {
                self.refresh(&profile, if_expiring_within, requested_at)
                    .await
            }
            Job::Revoke => self.revoke(&profile).await,
            Job::Check => self.check(&profile).await,
            Job::Rediscover => self.rediscover(&profile).await,
        };
        match result {
            Ok((outcome, saved)) => self.succeeded(id, profile, outcome, saved),
            Err(error) => self.failed(id, profile, error).await,
        }
    }

    fn succeeded(&self, id: JobId, profile: String, outcome: Outcome, saved: Option<Profile>) {
        tracing::info!(profile = %profile, outcome = %outcome.describe(), "succeeded");
        self.emit(Event::Succeeded {
            id,
            profile,
            outcome,
            saved: saved.map(Box::new),
        });
    }

    async fn failed(&self, id: JobId, profile: String, error: JobError) {
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
            kind: error.kind,
            saved: saved.map(Box::new),
        });
    }

    /// Runs blocking vault I/O (decryption, file locks) off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, VaultError> + Send + 'static,
    ) -> Result<T, JobError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| JobError::internal(format!("internal error: {e}")))?
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
                let missing = crate::vault::ProfileError::NotFound(name.to_string());
                JobError::new(FailureKind::Precondition, missing.to_string())
            })
    }

    /// Applies `change` to the stored profile and saves atomically (possibly in one write
    /// with other jobs' changes); returns the profile as saved.
    async fn save(
        &self,
        name: &str,
        change: impl FnOnce(&mut Profile) + Send + 'static,
    ) -> Result<Profile, JobError> {
        let (reply, answer) = oneshot::channel();
        let request = SaveRequest {
            profile: name.to_string(),
            change: Box::new(change),
            reply,
        };
        self.saves
            .send(request)
            .map_err(|_| JobError::internal("internal error: the saver stopped"))?;
        answer
            .await
            .map_err(|_| JobError::internal("internal error: the saver stopped"))?
            .map_err(|e| JobError::new(FailureKind::Storage, e))
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
        self.unsaved().insert(name.to_string(), token);
        Err(JobError::new(
            FailureKind::Storage,
            format!(
                "the server issued new tokens but saving them failed ({cause}); this process keeps them and saves them at its next action on '{name}': fix the problem (a full disk, a read-only folder); should it end first, authorize again"
            ),
        ))
    }

    async fn authorize(
        &self,
        id: JobId,
        name: &str,
        listen: bool,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> JobResult {
        let profile = self.current(name).await?;
        match profile.grant {
            GrantType::Code => self.code_login(id, profile, listen, timeout, cancel).await,
            GrantType::Device => self.device_login(id, &profile, cancel).await,
            GrantType::ClientCredentials => {
                let _lease = self.lease().await?;
                self.app_token(&profile).await
            }
        }
    }

    /// The authorization code grant: the URL, then a pasted code or the loopback listener.
    async fn code_login(
        &self,
        id: JobId,
        profile: Profile,
        listen: bool,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> JobResult {
        let name = profile.name.as_str();
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
        let waiting = listener.wait_for_code(&request.state, timeout, |why| {
            let _ = events.send(Event::Note {
                id,
                profile: profile_name.clone(),
                message: why.to_string(),
            });
        });
        // Waiting for a browser holds nothing: a cancel closes the listener at once, and the
        // port and the profile are free again.
        let callback = tokio::select! {
            callback = waiting => callback?,
            () = cancel.cancelled() => return Err(JobError::cancelled()),
        };
        redirect::check_issuer(
            callback.iss.as_deref(),
            profile.issuer.as_deref(),
            profile.expects_iss(),
        )?;
        self.emit(Event::Note {
            id,
            profile: name.to_string(),
            message: "redirect received: exchanging the code".into(),
        });
        self.exchange_code(name, &callback.code, request.pkce_verifier.as_deref())
            .await
    }

    async fn exchange(&self, name: &str, input: &SecretString) -> JobResult {
        let profile = self.current(name).await?;
        let pending = profile.pending.as_ref();
        let pasted =
            redirect::parse_pasted(input.expose_secret(), pending.map(|p| p.state.as_str()))?;
        if let Some(iss) = &pasted.iss {
            redirect::check_issuer(
                iss.as_deref(),
                profile.issuer.as_deref(),
                profile.expects_iss(),
            )?;
        }
        let verifier = pending
            .and_then(|p| p.pkce_verifier.as_ref())
            .map(|v| v.expose_secret().to_string());
        if profile.uses_pkce() && verifier.is_none() {
            return Err(JobError::new(
                FailureKind::Precondition,
                "this profile uses PKCE but no authorization is pending: run authorize first",
            ));
        }
        self.exchange_code(name, &pasted.code, verifier.as_deref())
            .await
    }

    async fn exchange_code(&self, name: &str, code: &str, verifier: Option<&str>) -> JobResult {
        let _lease = self.lease().await?;
        let profile = self.current(name).await?;
        let now = self.clock.now();
        let response = self
            .client
            .exchange(&profile, code, verifier)
            .await
            .map_err(|e| {
                let mut error = JobError::from(e);
                // A code that failed says nothing about a token that still works: the profile
                // is not in error because a pasted code was stale.
                if profile.token.as_ref().is_some_and(|t| still_works(t, now)) {
                    error.record = None;
                }
                error
            })?;
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
            return match profile.grant {
                GrantType::ClientCredentials => self.app_token(&profile).await,
                _ => Err(OAuthError::NoToken(name.to_string()).into()),
            };
        };
        if crate::health::nothing_to_refresh(token) {
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
                Some(at) => (at - now).num_seconds() > crate::duration::secs_i64(margin),
            };
            if fresh {
                return Ok((
                    Outcome::Unchanged("still valid beyond the margin".into()),
                    Some(profile),
                ));
            }
        }
        if profile.renews_by_itself() {
            return self.app_token(&profile).await;
        }
        let Some(refresh_token) = &token.refresh_token else {
            return Err(OAuthError::NoRefreshToken.into());
        };
        let fingerprint: [u8; 32] = Sha256::digest(refresh_token.expose_secret().as_bytes()).into();
        if self.spent().contains(&fingerprint) {
            return Err(JobError::new(
                FailureKind::Refused,
                "this refresh token was used already and its successor could not be saved: authorize again",
            ));
        }
        let response = self.client.refresh(&profile, refresh_token).await?;
        self.spent().insert(fingerprint);
        let new_token = response.into_token(self.clock.now(), profile.refresh_window, Some(token));
        let saved = self.save_token(name, new_token).await?;
        Ok((Outcome::NewToken, Some(saved)))
    }

    async fn revoke(&self, name: &str) -> JobResult {
        let _lease = self.lease().await?;
        let profile = self.current(name).await?;
        let Some(token) = &profile.token else {
            return Err(OAuthError::NoToken(name.to_string()).into());
        };
        if let Some(refresh) = &token.refresh_token {
            self.client
                .revoke(&profile, refresh, "refresh_token")
                .await?;
        }
        self.client
            .revoke(&profile, &token.access_token, "access_token")
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
            return Err(OAuthError::NoToken(name.to_string()).into());
        };
        let result = self
            .client
            .check(&profile, &token.access_token, self.clock.now())
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
