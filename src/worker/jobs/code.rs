//! The authorization code grant: the URL, a pasted code or the loopback listener, the exchange.

use std::time::Duration;

use age::secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::health::still_works;
use crate::oauth::authorize::{self, AuthorizeRequest};
use crate::oauth::listener::{Listener, loopback_target};
use crate::oauth::redirect;
use crate::vault::{GrantType, PendingAuth, Profile};
use crate::worker::error::{JobError, JobResult};
use crate::worker::held::Replacing;
use crate::worker::shared::Worker;
use crate::worker::{Event, FailureKind, JobId, Outcome};

impl Worker {
    pub(in crate::worker) async fn authorize(
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
                let _lease = self.lease_for(name).await?;
                self.app_token(&profile).await
            }
        }
    }

    /// The authorization code grant: the URL, then a pasted code or the loopback listener.
    pub(in crate::worker) async fn code_login(
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
            let _lease = self.lease_for(name).await?;
            self.save(name, move |p| p.pending = Some(pending.clone()))
                .await?
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
        self.catch_redirect(id, &profile, listener, &request, timeout, cancel)
            .await
    }

    /// Waits on the loopback listener for the browser's redirect, then exchanges its code.
    async fn catch_redirect(
        &self,
        id: JobId,
        profile: &Profile,
        listener: Listener,
        request: &AuthorizeRequest,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> JobResult {
        let name = profile.name.as_str();
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

    pub(in crate::worker) async fn exchange(&self, name: &str, input: &SecretString) -> JobResult {
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

    pub(in crate::worker) async fn exchange_code(
        &self,
        name: &str,
        code: &str,
        verifier: Option<&str>,
    ) -> JobResult {
        let _lease = self.lease_for(name).await?;
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
        let replacing = Replacing::grant(profile.token.as_ref());
        let saved = self.save_token(name, token, replacing).await?;
        Ok((Outcome::NewToken, Some(saved)))
    }
}
