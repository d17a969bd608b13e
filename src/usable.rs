//! Handing out a usable access token: the one sequence `token`, `exec`, `api` and the agent
//! share. A token inside its refresh margin is refreshed first; when that refresh fails but the
//! token still works, it is handed out with a warning, because only an unusable token is a
//! failure. How to refresh is the caller's (the CLI runs a worker, the agent has one).

use std::future::Future;
use std::time::Duration;

use age::secrecy::SecretString;
use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::health::{access_alive, access_usable, lasts_at_least, refresh_margin_for};
use crate::vault::{Interrupted, NoProfile, Profile, ProfileError, StoreHandle, Token, VaultError};
use crate::worker::{Job, JobFailure};

/// A token to use, what to tell the person about it, and what its users need from the
/// profile (taken from the same read as the token, so callers need not look it up again).
pub struct Issued {
    pub access_token: SecretString,
    /// `None`: it never expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Set when a due refresh failed and the still-valid token is handed out anyway.
    pub warning: Option<String>,
    /// The variable `exec` puts the token in, when the profile names one.
    pub env_var: Option<String>,
    /// The profile's server, for `api` (no secret), which checks it before sending there:
    /// from an agent it is as the agent said.
    pub api_base: String,
}

/// Why no token can be handed out.
#[derive(Debug, thiserror::Error)]
pub enum NoToken {
    #[error(transparent)]
    Unknown(#[from] ProfileError),
    #[error("'{0}' has no token: run `tokdeck authorize {0}`")]
    NeverAuthorized(String),
    #[error(
        "the access token of '{0}' has expired and there is no refresh token: run `tokdeck authorize {0}`"
    )]
    Dead(String),
    /// The refresh failed and the token has expired: the failure, as the worker said it.
    #[error("{0}")]
    RefreshFailed(JobFailure),
    /// Even a fresh token would not stay valid for as long as asked.
    #[error(
        "the access token of '{name}' is valid for {left} after a refresh, less than --min-valid {wanted}: the server issues shorter tokens; ask for less"
    )]
    TooShort {
        name: String,
        left: String,
        wanted: String,
    },
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Broken(#[from] crate::vault::validate::Broken),
}

impl From<NoProfile> for NoToken {
    fn from(e: NoProfile) -> Self {
        match e {
            NoProfile::Vault(e) => Self::Vault(e),
            NoProfile::Unknown(e) => Self::Unknown(e),
            NoProfile::Broken(e) => Self::Broken(e),
        }
    }
}

impl From<Interrupted> for NoToken {
    fn from(e: Interrupted) -> Self {
        Self::Vault(e.into())
    }
}

fn issued(profile: &Profile, token: &Token, warning: Option<String>) -> Issued {
    Issued {
        access_token: token.access_token.clone(),
        expires_at: token.expires_at,
        warning,
        env_var: profile.env_var.clone(),
        api_base: profile.endpoints.base_url.clone(),
    }
}

/// What the caller needs of the token.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    /// The configured refresh margin (see [`crate::health::refresh_margin_for`]).
    pub margin: Duration,
    /// At least this long left, or refresh first (`token --min-valid`).
    pub min_valid: Option<Duration>,
}

impl Wanted {
    /// Whether `token` has less than the minimum left at `now`.
    fn too_short(&self, token: &Token, now: DateTime<Utc>) -> bool {
        self.min_valid
            .is_some_and(|min| !lasts_at_least(token.expires_at, now, min))
    }
}

/// A usable token for `name`. `refresh` runs a refresh job to its end and returns the profile
/// as the job saved it (`None` when it saved nothing, as when another process renewed the
/// token first), or its failure; it is called only when a refresh is due and possible, and at
/// most once.
pub async fn usable_token<F, Fut>(
    store: &StoreHandle,
    name: &str,
    clock: &Clock,
    wanted: Wanted,
    refresh: F,
) -> Result<Issued, NoToken>
where
    F: FnOnce(Job) -> Fut,
    Fut: Future<Output = Result<Option<Profile>, JobFailure>>,
{
    let margin = wanted.margin;
    let profile = match load(store, name).await {
        Err(NoToken::Vault(e)) => {
            let held = held_in_memory(store, name).await;
            return from_memory(held.as_ref(), clock.now(), wanted, e);
        }
        loaded => loaded?,
    };
    // An app token needs no authorize step: without one, the first is fetched below.
    let first_app_token = profile.renews_by_itself() && profile.token.is_none();
    if !first_app_token {
        let current = token_of(&profile)?;
        let short = wanted.too_short(current, clock.now());
        if access_usable(current, clock.now(), margin) && !short {
            return Ok(issued(&profile, current, None));
        }
        if current.refresh_token.is_none() && !profile.renews_by_itself() {
            return if access_alive(current, clock.now()) {
                Ok(issued(&profile, current, None))
            } else {
                Err(NoToken::Dead(name.to_string()))
            };
        }
    }
    let within = profile
        .token
        .as_ref()
        .and_then(|t| refresh_margin_for(t, margin));
    let job = Job::Refresh {
        if_expiring_within: match (within, wanted.min_valid) {
            (Some(m), Some(min)) => Some(m.max(min)),
            (m, min) => m.or(min),
        },
        force: false,
    };
    let (profile, failure) = refreshed(store, name, refresh(job)).await?;
    after_refresh(&profile, failure, clock.now(), wanted)
}

/// The profile after `refreshing` ran, and its failure: what it saved (checked as a stored
/// profile is: a hand edit may have come between), else read again, as another process may
/// have saved meanwhile.
async fn refreshed(
    store: &StoreHandle,
    name: &str,
    refreshing: impl Future<Output = Result<Option<Profile>, JobFailure>>,
) -> Result<(Profile, Option<JobFailure>), NoToken> {
    let (saved, failure) = match refreshing.await {
        Ok(saved) => (saved, None),
        Err(failure) => (None, Some(failure)),
    };
    let profile = match saved {
        Some(saved) => {
            crate::vault::validate::check_stored(&saved)?;
            saved
        }
        None => load(store, name).await?,
    };
    Ok((profile, failure))
}

/// What a refresh left: the new token, or the current one with a warning while it still
/// works and is long enough, or why there is none.
fn after_refresh(
    profile: &Profile,
    failure: Option<JobFailure>,
    now: DateTime<Utc>,
    wanted: Wanted,
) -> Result<Issued, NoToken> {
    let name = profile.name.as_str();
    match (failure, &profile.token) {
        (None, Some(latest)) if wanted.too_short(latest, now) => {
            Err(too_short(name, latest, now, wanted))
        }
        (None, Some(latest)) => Ok(issued(profile, latest, None)),
        (Some(why), Some(latest)) if wanted.too_short(latest, now) => {
            Err(NoToken::RefreshFailed(JobFailure {
                message: format!(
                    "{}; the current token ends sooner than --min-valid asks",
                    why.message
                ),
                ..why
            }))
        }
        (Some(why), Some(latest)) if access_alive(latest, now) => Ok(issued(
            profile,
            latest,
            Some(format!(
                "refresh failed ({why}); handing out the current token"
            )),
        )),
        (Some(why), _) => Err(NoToken::RefreshFailed(why)),
        (None, None) => Err(NoToken::NeverAuthorized(name.to_string())),
    }
}

/// While the stored vault cannot be read (a damaged file, OpenBao sealed or out of reach), the
/// access token this process last saw, if it still works and lasts long enough: nothing is
/// refreshed or written without the stored vault.
fn from_memory(
    held: Option<&Profile>,
    now: DateTime<Utc>,
    wanted: Wanted,
    unreadable: VaultError,
) -> Result<Issued, NoToken> {
    let Some((profile, token)) = held.and_then(|p| Some((p, p.token.as_ref()?))) else {
        return Err(unreadable.into());
    };
    if !access_alive(token, now) || wanted.too_short(token, now) {
        return Err(unreadable.into());
    }
    let warning = format!(
        "the vault cannot be read ({unreadable}); handing out the token held in memory, and refreshing nothing until it can"
    );
    Ok(issued(profile, token, Some(warning)))
}

fn too_short(name: &str, token: &Token, now: DateTime<Utc>, wanted: Wanted) -> NoToken {
    let left = token
        .expires_at
        .map(|at| (at - now).to_std().unwrap_or_default())
        .unwrap_or_default();
    NoToken::TooShort {
        name: name.to_string(),
        left: crate::duration::format_duration(left),
        wanted: crate::duration::format_duration(wanted.min_valid.unwrap_or_default()),
    }
}

/// The stored profile `name`, checked against the rules `add` and `edit` enforce.
async fn load(store: &StoreHandle, name: &str) -> Result<Profile, NoToken> {
    let wanted = name.to_string();
    Ok(store.run(move |store| store.named_for_use(&wanted)).await?)
}

/// The profile `name` as this process last read it, without asking the store again.
async fn held_in_memory(store: &StoreHandle, name: &str) -> Option<Profile> {
    let wanted = name.to_string();
    store
        .run(move |store| store.profile_in_memory(&wanted))
        .await
        .ok()
        .flatten()
}

fn token_of(profile: &Profile) -> Result<&Token, NoToken> {
    profile
        .token
        .as_ref()
        .ok_or_else(|| NoToken::NeverAuthorized(profile.name.clone()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use age::secrecy::ExposeSecret;

    use super::*;
    use crate::vault::crypto::{IdentityFile, Sealing, Unlock};
    use crate::vault::{Endpoints, Store, VaultData};

    fn token(access: &str, expires_in: i64, now: DateTime<Utc>) -> Token {
        Token::for_test(access, &format!("r-{access}"), now, expires_in)
    }

    #[test]
    fn a_refresh_hands_out_the_profile_it_saved_and_a_refresh_that_saved_none_reads_again() {
        let now = Utc::now();
        let dir = tempfile::tempdir().unwrap();
        let id = IdentityFile::generate(&dir.path().join("key.txt")).unwrap();
        let mut stored = Profile::factorial_for_test("p");
        stored.token = Some(token("old", -10, now));
        let data = VaultData {
            profiles: vec![stored.clone()],
            ..VaultData::default()
        };
        let sealing = Sealing::Recipients(id.recipients.clone());
        let vault = dir.path().join("vault.age");
        let store = Store::create(&vault, data, sealing, Unlock::Identity(id)).unwrap();
        let store = StoreHandle::new(Arc::new(store));
        let clock = Clock::fixed(now);
        let wanted = Wanted {
            margin: Duration::from_secs(60),
            min_valid: None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let issue = |saved: Option<Profile>| {
            let refresh = |_: Job| async move { Ok(saved) };
            runtime.block_on(usable_token(&store, "p", &clock, wanted, refresh))
        };

        // The refresh's own save is what is handed out (the store still holds "old").
        let mut saved = stored.clone();
        saved.token = Some(token("new", 3600, now));
        let issued = issue(Some(saved.clone())).unwrap();
        assert_eq!(issued.access_token.expose_secret(), "new");
        assert!(issued.warning.is_none());

        // Nothing saved (another process renewed it): the store is read again.
        let issued = issue(None).unwrap();
        assert_eq!(issued.access_token.expose_secret(), "old");

        // What was saved is checked as a stored profile is.
        saved.endpoints = Endpoints::at("http://api.example.com");
        let refused = issue(Some(saved));
        assert!(
            matches!(refused, Err(NoToken::Broken(_))),
            "{:?}",
            refused.err()
        );
    }
}
