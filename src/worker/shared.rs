//! The worker's shared state and what every job shares: the profile's turn, the lease, the
//! current profile, saves (and new tokens kept when a save fails), and the final event.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::error::JobError;
use super::held::{HeldToken, Placement, Replacing, Spending, refresh_print};
use super::lease::JobLease;
use super::recorder::{Printed, RecordRequest, spawn_recorder};
use super::saver::{SaveRequest, spawn_saver};
use super::{Event, FailureKind, Job, JobId, Outcome, WorkerConfig};
use crate::audit::{Action, Prints, prints_of};
use crate::clock::Clock;
use crate::oauth::OAuthClient;
use crate::vault::{NoProfile, Profile, Refusal, Store, StoreHandle, VaultError};

/// The worker's shared state; one per [`super::spawn`].
pub struct Worker {
    pub(in crate::worker) store: StoreHandle,
    pub(in crate::worker) client: OAuthClient,
    pub(in crate::worker) clock: Clock,
    pub(in crate::worker) events: mpsc::UnboundedSender<Event>,
    profile_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    saves: mpsc::UnboundedSender<SaveRequest>,
    /// Fingerprints of refresh tokens the server has answered: never sent again, even when
    /// saving their successor failed (a server with strict rotation would take a second use
    /// for theft and revoke the whole grant).
    spent: Mutex<HashSet<[u8; 32]>>,
    /// New tokens the server issued whose save failed, by profile: kept while this process
    /// runs and saved before anything else is done with their profile (the refresh token
    /// they replace is dead), but only over the token they replaced.
    unsaved: Mutex<HashMap<String, HeldToken>>,
    /// Where each job's end is recorded, when anywhere.
    audit: Option<crate::audit::AuditLog>,
    /// Writes the records of refresh tokens on their way ([`super::recorder`]).
    records: mpsc::UnboundedSender<RecordRequest>,
    /// See [`WorkerConfig::one_shot`].
    one_shot: bool,
    /// See [`WorkerConfig::spool`].
    spool: Option<super::Spool>,
}

impl Worker {
    pub fn new(config: WorkerConfig, events: mpsc::UnboundedSender<Event>) -> Self {
        let records = spawn_recorder(
            config.store.clone(),
            crate::platform::host_name(),
            config.clock.clone(),
        );
        Self {
            saves: spawn_saver(config.store.clone()),
            records,
            store: config.store,
            // Requests to each server are bounded by the client's limit per server.
            client: config
                .client
                .with_max_concurrent(config.max_concurrent_jobs),
            clock: config.clock,
            events,
            profile_locks: Mutex::default(),
            spent: Mutex::default(),
            unsaved: Mutex::default(),
            audit: config.audit,
            one_shot: config.one_shot,
            spool: config.spool,
        }
    }

    /// Records, beside the vault, that the refresh token `spending` names leaves now;
    /// refuses when another process sent it and has not saved its answer, and when the record
    /// cannot be written (a store that takes no writes could not keep the answer either).
    /// Written by the recorder, with other jobs' records ([`super::recorder`]).
    pub(in crate::worker) async fn intend_to_spend(
        &self,
        name: &str,
        spending: &Spending,
    ) -> Result<(), JobError> {
        let (reply, answer) = oneshot::channel();
        let request = RecordRequest::Intend {
            spend: Printed {
                profile: name.to_string(),
                print: spending.print.clone(),
                obtained_at: spending.obtained_at,
            },
            reply,
        };
        let stopped = || JobError::internal("internal error: the recorder stopped");
        self.records.send(request).map_err(|_| stopped())?;
        let refusal = answer.await.map_err(|_| stopped())?.map_err(|e| {
            JobError::new(
                FailureKind::Storage,
                format!(
                    "nothing was sent: the refresh of '{name}' cannot be recorded before it leaves ({e}), and its answer could not be saved either: fix what the store says (a full disk, a read-only folder, OpenBao refusing the write), then try again"
                ),
            )
        })?;
        match refusal {
            None => Ok(()),
            Some(refusal) => Err(JobError::new(FailureKind::Refused, refused(name, &refusal))),
        }
    }

    /// Clears the record of `spending`: its answer is saved, or it never left. `saved` is
    /// the token now stored for `name`, when one was: the newest of the profile, which every
    /// process and machine then refuses to send an older refresh token over.
    pub(in crate::worker) async fn settle(
        &self,
        name: &str,
        spending: Option<Spending>,
        saved: Option<&crate::vault::Token>,
    ) {
        let saved = saved.and_then(|token| {
            Some(Printed {
                profile: name.to_string(),
                print: refresh_print(token)?,
                obtained_at: token.obtained_at,
            })
        });
        if spending.is_none() && saved.is_none() {
            return;
        }
        let (reply, answer) = oneshot::channel();
        let request = RecordRequest::Settle {
            profile: name.to_string(),
            print: spending.map(|s| s.print),
            saved,
            reply,
        };
        if self.records.send(request).is_err() {
            return;
        }
        if let Ok(Err(e)) = answer.await {
            tracing::warn!(error = %e, "cannot update the record of a refresh whose answer is saved");
        }
    }

    pub(in crate::worker) fn unsaved(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, HeldToken>> {
        self.unsaved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Saves the token of `name` whose save failed before, if there is one; until that works,
    /// no job of the profile runs (it would act on the dead token the file still holds). A
    /// held token goes only over the token it replaced: when the vault holds another one by
    /// now (another process's rotation, a new login), the held token is dropped, and said so.
    pub(in crate::worker) async fn save_unsaved(&self, name: &str) -> Result<(), JobError> {
        let in_memory = self.unsaved().get(name).cloned();
        let Some(held) = (match in_memory {
            Some(held) => Some(held),
            None => self.spooled(name).await,
        }) else {
            return Ok(());
        };
        let _lease = self.lease_for(name).await?;
        let landed = match self
            .save_over(name, &held.token, held.replacing.retry())
            .await
        {
            Ok(Ok(_)) => {
                tracing::info!(profile = %name, "a new token whose save had failed is saved now");
                Some(&held.token)
            }
            Ok(Err(_)) => {
                tracing::warn!(profile = %name, "dropped a new token whose save had failed: the vault holds a newer one, saved meanwhile by another process or a new login");
                None
            }
            Err(e) => {
                return Err(JobError::new(
                    FailureKind::Storage,
                    format!(
                        "a new token of '{name}' is still waiting to be saved ({}), and nothing was sent: it stays kept until a save works, at the next action: fix the problem (a full disk, a read-only folder, the store refusing the write)",
                        e.message
                    ),
                ));
            }
        };
        self.settle(name, held.spending.clone(), landed).await;
        self.unsaved().remove(name);
        self.unspool(name).await;
        Ok(())
    }

    /// The new token of `name` that an earlier process could not save, kept in the spool.
    async fn spooled(&self, name: &str) -> Option<HeldToken> {
        let spool = self.spool.clone()?;
        let name = name.to_string();
        self.blocking(move |store| Ok(spool.get(store, &name)))
            .await
            .ok()
            .flatten()
    }

    async fn unspool(&self, name: &str) {
        if let Some(spool) = self.spool.clone() {
            let name = name.to_string();
            let _ = self
                .blocking(move |store| {
                    spool.remove(store, &name);
                    Ok(())
                })
                .await;
        }
    }

    /// Keeps `held` in the spool, on disk; where it went, or why it could not.
    async fn spool(&self, name: &str, held: &HeldToken) -> Result<std::path::PathBuf, JobError> {
        let Some(spool) = self.spool.clone() else {
            return Err(JobError::new(FailureKind::Storage, "no state folder"));
        };
        let (name, held) = (name.to_string(), held.clone());
        self.blocking(move |store| spool.put(store, &name, &held))
            .await
    }

    /// Writes `token` to `name` where `replacing` allows it ([`Replacing::placement`]);
    /// `Ok(Err(profile))` when the vault held a newer token, which it keeps.
    async fn save_over(
        &self,
        name: &str,
        token: &crate::vault::Token,
        replacing: Replacing,
    ) -> Result<Result<Profile, Profile>, JobError> {
        let new = token.clone();
        let saved = self
            .save(name, move |p| {
                if replacing.placement(p.token.as_ref(), &new) == Placement::Write {
                    p.token = Some(new.clone());
                    p.last_error = None;
                    p.pending = None;
                }
            })
            .await?;
        let landed = replacing.retry().placement(saved.token.as_ref(), token);
        Ok(if landed == Placement::AlreadyThere {
            Ok(saved)
        } else {
            Err(saved)
        })
    }

    pub(in crate::worker) fn spent(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.spent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(in crate::worker) fn emit(&self, event: Event) {
        // The receiver going away only means nobody listens any more.
        let _ = self.events.send(event);
    }

    pub(in crate::worker) fn profile_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
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
        let before = self.prints_now(&profile).await;
        let result = match job {
            Job::Authorize { listen, timeout } => {
                self.authorize(id, &profile, listen, timeout, &cancel).await
            }
            Job::Exchange { input } => self.exchange(&profile, &input).await,
            Job::Refresh {
                if_expiring_within,
                force,
            } => {
                let asked = super::jobs::RefreshAsked {
                    if_expiring_within,
                    force,
                    requested_at,
                    schedule: None,
                };
                self.refresh(&profile, asked).await
            }
            Job::KeepAlive(schedule) => {
                let asked = super::jobs::RefreshAsked {
                    if_expiring_within: None,
                    force: false,
                    requested_at,
                    schedule: Some(schedule),
                };
                self.refresh(&profile, asked).await
            }
            Job::Revoke => self.revoke(&profile).await,
            Job::Rotate => self.rotate(&profile).await,
            Job::Check => self.check(&profile).await,
            Job::Rediscover => self.rediscover(&profile).await,
        };
        self.record(&profile, kind, &result, before).await;
        match result {
            Ok((outcome, saved)) => self.succeeded(id, profile, outcome, saved),
            Err(error) => self.failed(id, profile, error).await,
        }
    }

    /// The fingerprints of `name`'s tokens now, when the audit log is kept.
    async fn prints_now(&self, name: &str) -> Prints {
        if self.audit.is_none() {
            return Prints::default();
        }
        let wanted = name.to_string();
        self.blocking(move |store| store.profile(&wanted))
            .await
            .ok()
            .flatten()
            .map_or_else(Prints::default, |p| prints_of(&p))
    }

    /// Appends the job's end to the audit log, if one is kept; a log that cannot be written
    /// is warned about and fails nothing.
    async fn record(
        &self,
        profile: &str,
        kind: super::JobKind,
        result: &Result<(Outcome, Option<Profile>), JobError>,
        before: Prints,
    ) {
        let Some(log) = self.audit.clone() else {
            return;
        };
        let (outcome, detail, after) = match result {
            Ok((outcome, saved)) => (
                "ok",
                outcome.describe(),
                match saved {
                    Some(p) => prints_of(p),
                    None => self.prints_now(profile).await,
                },
            ),
            Err(e) => (
                "failed",
                format!("{} ({})", e.message, e.kind.label()),
                before.clone(),
            ),
        };
        let action = Action {
            profile: profile.to_string(),
            action: kind.verb().to_string(),
            result: outcome.to_string(),
            detail,
            before,
            after,
        };
        let at = self.clock.now();
        let written = tokio::task::spawn_blocking(move || log.record(at, action)).await;
        if let Ok(Err(e)) = written {
            tracing::warn!(error = %e, "cannot write the audit log");
        }
    }

    pub(in crate::worker) fn succeeded(
        &self,
        id: JobId,
        profile: String,
        outcome: Outcome,
        saved: Option<Profile>,
    ) {
        tracing::info!(profile = %profile, outcome = %outcome.describe(), "succeeded");
        self.emit(Event::Succeeded {
            id,
            profile,
            outcome,
            saved: saved.map(Box::new),
        });
    }

    pub(in crate::worker) async fn failed(&self, id: JobId, profile: String, error: JobError) {
        let saved = match error.record {
            Some(text) => self
                .save(&profile, move |p| p.last_error = Some(text.clone()))
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
    pub(in crate::worker) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, VaultError> + Send + 'static,
    ) -> Result<T, JobError> {
        self.store.run(work).await.map_err(JobError::from)
    }

    /// The lease a job on profile `name` runs under ([`Store::lease_for`]).
    pub(in crate::worker) async fn lease_for(&self, name: &str) -> Result<JobLease, JobError> {
        let name = name.to_string();
        let lease = self.blocking(move |store| store.lease_for(&name)).await?;
        Ok(JobLease(Some(lease)))
    }

    /// The stored profile `name`, checked against the rules `add` and `edit` enforce: a job
    /// never sends a secret for a profile that breaks one (a hand edit, a planted value).
    pub(in crate::worker) async fn current(&self, name: &str) -> Result<Profile, JobError> {
        let wanted = name.to_string();
        let named = self.store.run(move |store| store.named_for_use(&wanted));
        named.await.map_err(|e| match e {
            NoProfile::Vault(e) => JobError::from(e),
            e => JobError::new(FailureKind::Precondition, e.to_string()),
        })
    }

    /// Applies `change` to the stored profile and saves atomically (possibly in one write
    /// with other jobs' changes); returns the profile as saved.
    pub(in crate::worker) async fn save(
        &self,
        name: &str,
        change: impl FnMut(&mut Profile) + Send + 'static,
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
            .map_err(|e| JobError::new(FailureKind::Storage, e.to_string()))
    }

    /// Saves a freshly issued token over the one it replaces; retried, because losing it
    /// loses the integration. One that still cannot be saved is held ([`Self::save_unsaved`]).
    pub(in crate::worker) async fn save_token(
        &self,
        name: &str,
        token: crate::vault::Token,
        replacing: Replacing,
    ) -> Result<Profile, JobError> {
        self.save_token_spent(name, token, replacing, None).await
    }

    /// [`Self::save_token`] for a token that came from the refresh token `spending` names.
    /// The record is cleared once no new token waits in this process to be saved (it landed,
    /// or the vault holds a newer one); a held token keeps it until it is saved or dropped.
    pub(in crate::worker) async fn save_token_spent(
        &self,
        name: &str,
        token: crate::vault::Token,
        replacing: Replacing,
        spending: Option<Spending>,
    ) -> Result<Profile, JobError> {
        let mut last = None;
        for attempt in 0..3 {
            // A first try whose answer was lost may have landed: the retries see it there.
            let replacing = if attempt == 0 {
                replacing
            } else {
                replacing.retry()
            };
            let placed = self.save_over(name, &token, replacing).await;
            if let Ok(outcome) = &placed {
                let landed = outcome.as_ref().ok().and_then(|p| p.token.as_ref());
                self.settle(name, spending.clone(), landed).await;
            }
            match placed {
                Ok(Ok(p)) => return Ok(p),
                Ok(Err(_)) => {
                    return Err(JobError::new(
                        FailureKind::Storage,
                        format!(
                            "'{name}' got a newer token from another process while this one was on its way; kept that one, dropped this one"
                        ),
                    ));
                }
                Err(e) => {
                    tracing::error!(attempt, error = %e.message, "saving a new token failed");
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let cause = last.map(|e| e.message).unwrap_or_default();
        let held = HeldToken {
            token,
            replacing,
            spending,
        };
        let spooled = self.spool(name, &held).await;
        self.unsaved().insert(name.to_string(), held);
        Err(JobError::new(
            FailureKind::Storage,
            unsaved_message(name, &cause, spooled, self.one_shot),
        ))
    }
}

/// What to say of a new token of `name` whose save failed with `cause`, kept where
/// `spooled` says (or not, and why), by a process that ends after its jobs or not.
fn unsaved_message(
    name: &str,
    cause: &str,
    spooled: Result<std::path::PathBuf, JobError>,
    one_shot: bool,
) -> String {
    match (spooled, one_shot) {
        (Ok(path), _) => format!(
            "the server issued new tokens but saving them failed ({cause}); tokdeck keeps them, encrypted, in {}, and saves them first at the next action on '{name}': fix the problem (a full disk, a read-only folder, the store refusing the write)",
            path.display()
        ),
        (Err(e), true) => format!(
            "the server issued new tokens but saving them failed ({cause}), and this command ends with them (they could not be kept aside either: {}): fix the problem (a full disk, a read-only folder), then authorize '{name}' again",
            e.message
        ),
        (Err(_), false) => format!(
            "the server issued new tokens but saving them failed ({cause}); this process keeps them and saves them at its next action on '{name}': fix the problem (a full disk, a read-only folder); should it end first, authorize again"
        ),
    }
}

/// Why the refresh token of `name` was not sent, and what to do.
fn refused(name: &str, refusal: &Refusal) -> String {
    let at = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    match refusal {
        Refusal::InFlight(other) => format!(
            "the refresh token of '{name}' was sent by {} at {} and its answer is not saved yet; sending it again would revoke the grant: let that process save it (a full disk, a store out of reach), or authorize again if it is gone",
            other.holder(),
            at(&other.since)
        ),
        Refusal::Retired(newest) => format!(
            "the vault holds an older refresh token of '{name}' than the one {} saved (a token obtained {}): it was put back to an older version, and sending it would revoke the grant: restore the newest version, or authorize '{name}' again",
            newest.host,
            at(&newest.obtained_at)
        ),
    }
}
