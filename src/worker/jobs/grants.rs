//! The grants without a browser redirect: device login (RFC 8628) and client credentials.

use tokio_util::sync::CancellationToken;

use crate::oauth::OAuthError;
use crate::oauth::device::SLOW_DOWN_STEP;
use crate::vault::Profile;
use crate::worker::error::{JobError, JobResult};
use crate::worker::held::Replacing;
use crate::worker::shared::Worker;
use crate::worker::{Event, JobId, Outcome};

impl Worker {
    /// Starts a device login, shows its codes, and polls until someone approves it, it is
    /// denied or it expires. Only the waits between polls stop on cancel: a poll in flight may
    /// bring the token, which must reach the vault.
    pub(in crate::worker) async fn device_login(
        &self,
        id: JobId,
        profile: &Profile,
        cancel: &CancellationToken,
    ) -> JobResult {
        let name = profile.name.as_str();
        let login = self.client.device_authorize(profile).await?;
        let expires_at = self.clock.now()
            + chrono::Duration::from_std(login.expires_in).unwrap_or(chrono::Duration::MAX);
        self.emit(Event::DeviceCode {
            id,
            profile: name.to_string(),
            user_code: login.user_code.clone(),
            verification_uri: login.verification_uri.clone(),
            uri_to_open: login.uri_to_open().to_string(),
            expires_at,
        });
        let deadline = tokio::time::Instant::now() + login.expires_in;
        let mut interval = login.interval;
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = cancel.cancelled() => return Err(JobError::cancelled()),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(OAuthError::DeviceExpired.into());
            }
            let _lease = self.lease_for(name).await?;
            let polled = self.client.device_poll(profile, &login.device_code).await;
            match polled {
                Ok(response) => {
                    let token = response.into_token(self.clock.now(), profile.refresh_window, None);
                    let saved = self
                        .save_token(name, token, Replacing::grant(profile.token.as_ref()))
                        .await?;
                    return Ok((Outcome::NewToken, Some(saved)));
                }
                Err(OAuthError::AuthorizationPending) => {}
                Err(OAuthError::SlowDown) => interval += SLOW_DOWN_STEP,
                // A network hiccup does not end the login: the code stays good until it expires.
                Err(e) if e.is_transient() => {
                    tracing::info!(profile = %name, error = %e, "device poll failed; polling on");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A new token with the client's own credentials. The caller holds the lease.
    pub(in crate::worker) async fn app_token(&self, profile: &Profile) -> JobResult {
        let response = self.client.client_credentials(profile).await?;
        let token = response.into_token(self.clock.now(), profile.refresh_window, None);
        let replacing = Replacing::grant(profile.token.as_ref());
        let saved = self.save_token(&profile.name, token, replacing).await?;
        Ok((Outcome::NewToken, Some(saved)))
    }
}
