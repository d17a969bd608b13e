//! Publishing access tokens where services read them (`tokdeck agent --publish
//! openbao://HOST/MOUNT/PREFIX`): after a profile that opted in (`--publish`) gets a new access
//! token, it is written to KV version 2 at `PREFIX/PROFILE` with `access_token`, `token_type`,
//! `expires_at` and `scope`, and nothing else: never the refresh token, the client secret or
//! an id token. A publish that fails is logged, counted, and tried again later; it never fails
//! the refresh or holds up another profile.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::vault::backend::openbao::api::Api;
use crate::vault::location::KvPath;
use crate::vault::{Location, Profile, VaultError};

/// The least time between two tries for one profile after a failure.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// One profile's token, as published.
pub struct Item {
    pub profile: String,
    obtained_at: DateTime<Utc>,
    fields: serde_json::Map<String, Value>,
}

/// Where tokens go, and which are there already.
pub struct Publisher {
    api: Api,
    prefix: KvPath,
    /// Per profile: the token published last (by when it was obtained), and the last failure.
    state: Mutex<HashMap<String, Published>>,
}

/// A profile's token published last (by when it was obtained), and the last failure.
type Published = (Option<DateTime<Utc>>, Option<Instant>);

impl Publisher {
    /// Checks, before the agent starts, that `place` is a KV version 2 prefix this token may
    /// write: an unreachable or forbidden OpenBao is an error now, not a log line later.
    pub fn connect(prefix: &KvPath, api: Api) -> anyhow::Result<Self> {
        api.check_engine(prefix)?;
        let probe = prefix.sibling(format!("{}/any-profile", prefix.path));
        if !api.may_write(&probe)? {
            return Err(anyhow!(
                "the OpenBao token may not write under {0}: it needs create and update on {1}/data/{2}/*",
                prefix.kv_name(),
                prefix.mount,
                prefix.path
            ));
        }
        Ok(Self {
            api,
            prefix: prefix.clone(),
            state: Mutex::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HashMap<String, Published>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What `profile` would publish now, if it opted in, holds a token not yet published, and
    /// is not waiting to retry.
    pub fn wanted(&self, profile: &Profile) -> Option<Item> {
        let token = profile.token.as_ref().filter(|_| profile.publish)?;
        // The name becomes part of a KV path: one that is not a checked name (a hand edit,
        // `../team`) is never published, whatever let it into the vault.
        if let Err(e) = crate::vault::validate::validate_name(&profile.name) {
            tracing::warn!(error = %e, "a profile marked for publishing has a name that cannot be a path; not published");
            return None;
        }
        let state = self.state();
        if let Some((done, failed)) = state.get(&profile.name) {
            let waiting = failed.is_some_and(|at| at.elapsed() < RETRY_AFTER);
            if *done == Some(token.obtained_at) || waiting {
                return None;
            }
        }
        let mut fields = serde_json::Map::new();
        let mut put = |key: &str, value: String| fields.insert(key.into(), Value::String(value));
        put(
            "access_token",
            token.access_token.expose_secret().to_string(),
        );
        put("token_type", token.token_type.clone());
        put(
            "expires_at",
            token
                .expires_at
                .map(|at| at.to_rfc3339())
                .unwrap_or_default(),
        );
        put("scope", token.scope.clone().unwrap_or_default());
        Some(Item {
            profile: profile.name.clone(),
            obtained_at: token.obtained_at,
            fields,
        })
    }

    /// Writes `item` to `PREFIX/PROFILE`; remembers it, or when it failed.
    pub fn publish(&self, item: &Item) -> Result<(), VaultError> {
        let place = self
            .prefix
            .sibling(format!("{}/{}", self.prefix.path, item.profile));
        let written = self.api.put(&place, &item.fields);
        let mut state = self.state();
        let entry = state.entry(item.profile.clone()).or_default();
        match written {
            Ok(_) => {
                *entry = (Some(item.obtained_at), None);
                Ok(())
            }
            Err(e) => {
                entry.1 = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Where tokens go, as messages name it.
    pub fn place(&self) -> String {
        Location::OpenBao(Box::new(self.prefix.clone())).to_string()
    }
}
