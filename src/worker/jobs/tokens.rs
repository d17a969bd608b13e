//! Jobs on the tokens a profile holds: refresh, revoke, rotate, check.

use std::time::Duration;

use age::secrecy::ExposeSecret;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::oauth::OAuthError;
use crate::vault::GrantType;
use crate::vault::{Profile, Token};
use crate::worker::error::{JobError, JobResult};
use crate::worker::held::{Replacing, Spending};
use crate::worker::lease::JobLease;
use crate::worker::shared::Worker;
use crate::worker::{FailureKind, Outcome, Revocation, Rotation, Schedule};

/// What a refresh job was asked to do.
#[derive(Debug, Clone, Copy)]
pub(in crate::worker) struct RefreshAsked {
    /// Only when the access token ends within this.
    pub if_expiring_within: Option<Duration>,
    /// Renew a token that never expires too.
    pub force: bool,
    /// When the job was queued: a token obtained later was renewed by someone else.
    pub requested_at: DateTime<Utc>,
    /// Only when the agent's schedule says the stored token is due.
    pub schedule: Option<Schedule>,
}

impl Worker {
    pub(in crate::worker) async fn refresh(&self, name: &str, asked: RefreshAsked) -> JobResult {
        let RefreshAsked {
            if_expiring_within,
            force,
            requested_at,
            schedule,
        } = asked;
        // The lease makes refreshes of this vault exclusive across processes; reading the
        // token only after taking it means we never use a refresh token someone rotated.
        let lease = self.lease_for(name).await?;
        let profile = self.current(name).await?;
        let Some(token) = &profile.token else {
            return match profile.grant {
                GrantType::ClientCredentials => self.app_token(&profile).await,
                _ => Err(OAuthError::NoToken(name.to_string()).into()),
            };
        };
        if crate::health::refresh_passes_by(token, force) {
            let why = if token.refresh_token.is_some() {
                "does not expire; --force renews it (and the server may revoke this one)"
            } else {
                "does not expire; nothing to refresh"
            };
            return Ok((Outcome::Unchanged(why.into()), None));
        }
        if token.obtained_at > requested_at {
            return Ok((
                Outcome::Unchanged("refreshed by another tokdeck process just now".into()),
                Some(profile),
            ));
        }
        if let Some(Schedule { margin, horizon }) = schedule {
            let now = self.clock.now();
            let next = crate::health::keepalive_at(&profile, token, now, margin, horizon);
            if next.is_none_or(|at| at > now) {
                return Ok((
                    Outcome::Unchanged("renewed elsewhere: not due any more".into()),
                    Some(profile),
                ));
            }
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
        self.spend_refresh_token(&profile, token, &lease).await
    }

    /// Sends `token`'s refresh token, under `lease`, and saves what comes back. A refresh
    /// token the server replaced is sent once: if its successor could not be saved, it is
    /// never sent again. One the server keeps (it answers with the same one, or none) stays
    /// usable.
    async fn spend_refresh_token(
        &self,
        profile: &Profile,
        token: &Token,
        lease: &JobLease,
    ) -> JobResult {
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
        let intent = Spending::of(&fingerprint, token);
        self.intend_to_spend(&profile.name, &intent).await?;
        let may_send = || lease.may_spend();
        let response = match self.client.refresh(profile, refresh_token, &may_send).await {
            Ok(response) => response,
            Err(e) => {
                // No new token reached this process, so none waits here to be saved: the
                // record has nothing left to protect.
                self.settle(&profile.name, Some(intent), None).await;
                return Err(e.into());
            }
        };
        // Spent only when the server rotated it: a server that hands back the same refresh
        // token, or none (keep the one we have), expects it again next time.
        if response.rotates(refresh_token) {
            self.spent().insert(fingerprint);
        }
        let new_token = response.into_token(self.clock.now(), profile.refresh_window, Some(token));
        let saved = self
            .save_token_spent(
                &profile.name,
                new_token,
                Replacing::rotation(token),
                Some(intent),
            )
            .await?;
        Ok((Outcome::NewToken, Some(saved)))
    }

    pub(in crate::worker) async fn revoke(&self, name: &str) -> JobResult {
        let _lease = self.lease_for(name).await?;
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
        let verdict = self.verify_revoked(&profile, token).await;
        let saved = self
            .save(name, |p| {
                p.token = None;
                p.last_check = None;
                p.last_error = None;
            })
            .await?;
        Ok((Outcome::Revoked(verdict), Some(saved)))
    }

    /// Renews the refresh token whatever its state, then revokes the one it replaced and its
    /// access token, which a removed member may have copied. A server that hands back the
    /// same refresh token cannot be rotated this way, and its token is left alone: revoking
    /// it would revoke the one still in use.
    pub(in crate::worker) async fn rotate(&self, name: &str) -> JobResult {
        let lease = self.lease_for(name).await?;
        let profile = self.current(name).await?;
        let Some(token) = &profile.token else {
            return Err(OAuthError::NoToken(name.to_string()).into());
        };
        let Some(old_refresh) = &token.refresh_token else {
            return Err(OAuthError::NoRefreshToken.into());
        };
        let (_, saved) = self.spend_refresh_token(&profile, token, &lease).await?;
        let renewed = saved
            .as_ref()
            .and_then(|p| p.token.as_ref())
            .and_then(|t| t.refresh_token.as_ref())
            .is_some_and(|new| new.expose_secret() != old_refresh.expose_secret());
        if !renewed {
            return Ok((Outcome::Rotated(Rotation::Kept), saved));
        }
        let revoked = async {
            self.client
                .revoke(&profile, old_refresh, "refresh_token")
                .await?;
            self.client
                .revoke(&profile, &token.access_token, "access_token")
                .await
        };
        let unrevoked = revoked.await.err().map(|e| e.to_string());
        Ok((Outcome::Rotated(Rotation::Renewed { unrevoked }), saved))
    }

    /// Asks the server about the access token just revoked: introspection or the check
    /// endpoint, as `check` would.
    async fn verify_revoked(&self, profile: &Profile, token: &Token) -> Revocation {
        match self
            .client
            .check(profile, &token.access_token, self.clock.now())
            .await
        {
            Err(OAuthError::TokenRejected) => Revocation::Verified,
            Ok(_) => Revocation::StillAccepted {
                until: token.expires_at,
            },
            Err(e) => Revocation::Unverified(e.to_string()),
        }
    }

    pub(in crate::worker) async fn check(&self, name: &str) -> JobResult {
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
                p.last_check = Some(stored.clone());
                p.last_error = None;
            })
            .await?;
        Ok((Outcome::Checked(result), Some(saved)))
    }
}
