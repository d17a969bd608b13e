//! The few KV version 2 calls the backend makes (read a secret, read its version, write it
//! with check-and-set, tell the engine's version), over the shared HTTP layer, and what
//! OpenBao's answers mean, phrased as what to do.

use std::sync::Arc;
use std::time::Duration;

use age::secrecy::{ExposeSecret, SecretString};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::ha::{self, Answer, LastWrite, Replay, Sent, clean};
use crate::vault::error::VaultError;
use crate::vault::location::{KvPath, Location};

/// How to reach OpenBao: the HTTP timeout, authorities to trust, and the token.
pub struct Connection {
    pub timeout: Duration,
    pub roots: Vec<reqwest::Certificate>,
    pub token: SecretString,
}

/// A client of one OpenBao server.
#[derive(Clone)]
pub struct Api {
    http: reqwest::blocking::Client,
    token: Arc<SecretString>,
    timeout: Duration,
    last_write: LastWrite,
}

/// A secret as read: its fields, version and creation time, and the server's clock.
pub struct Secret {
    pub fields: serde_json::Map<String, Value>,
    pub version: u64,
    /// When this version was written, by the server's clock.
    pub created: Option<DateTime<Utc>>,
    /// The server's clock when it answered (its `Date` header).
    pub server_now: Option<DateTime<Utc>>,
}

/// What a read found.
pub enum Found {
    Secret(Secret),
    /// Nothing at the path; `version` is the number of the deleted version, if one was.
    Nothing {
        version: u64,
    },
}

/// How a check-and-set write went.
pub enum Written {
    Stored {
        version: u64,
    },
    /// Another writer's version is there.
    Conflict,
}

impl Api {
    pub fn new(connection: Connection) -> Result<Self, VaultError> {
        let http = crate::http::blocking_http_builder(connection.timeout, &connection.roots)
            // An answer from elsewhere is not OpenBao's; a redirect would carry the token.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| VaultError::Remote(format!("cannot set up HTTP for OpenBao: {e}")))?;
        Ok(Self {
            http,
            token: Arc::new(connection.token),
            timeout: connection.timeout,
            last_write: LastWrite::default(),
        })
    }

    /// The HTTP timeout every request has.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Reads the secret at `kv`.
    pub fn read(&self, kv: &KvPath) -> Result<Found, VaultError> {
        self.read_at(kv, kv.data_url())
    }

    /// Reads version `version` of the secret at `kv`.
    fn read_version(&self, kv: &KvPath, version: u64) -> Result<Found, VaultError> {
        self.read_at(kv, format!("{}?version={version}", kv.data_url()))
    }

    fn read_at(&self, kv: &KvPath, url: String) -> Result<Found, VaultError> {
        let answer = self.call(kv, reqwest::Method::GET, url, None, Replay::Safe)?;
        let mut json = body_json(&answer);
        let metadata = &json["data"]["metadata"];
        let version = metadata["version"].as_u64().unwrap_or(0);
        let created = metadata["created_time"].as_str().and_then(parse_time);
        match answer.status {
            200 => {
                // Taken, not copied: the field holds the whole vault.
                let fields = match json["data"]["data"].take() {
                    Value::Object(fields) => fields,
                    _ => serde_json::Map::new(),
                };
                Ok(Found::Secret(Secret {
                    fields,
                    version,
                    created,
                    server_now: answer.date,
                }))
            }
            404 => Ok(Found::Nothing { version }),
            _ => Err(refusal(kv, &answer)),
        }
    }

    /// The number of the secret's newest version, without reading it; `None` when there is
    /// no secret at `kv`.
    pub fn current_version(&self, kv: &KvPath) -> Result<Option<u64>, VaultError> {
        Ok(self
            .metadata(kv)?
            .and_then(|json| json["data"]["current_version"].as_u64()))
    }

    /// The secret's metadata (its versions, the current one); `None` when there is no
    /// secret at `kv`.
    fn metadata(&self, kv: &KvPath) -> Result<Option<Value>, VaultError> {
        let answer = self.call(
            kv,
            reqwest::Method::GET,
            kv.metadata_url(),
            None,
            Replay::Safe,
        )?;
        match answer.status {
            200 => Ok(Some(body_json(&answer))),
            404 => Ok(None),
            _ => Err(refusal(kv, &answer)),
        }
    }

    /// Writes `fields` at `kv` if its newest version is `cas` (0: no secret there yet).
    pub fn write(
        &self,
        kv: &KvPath,
        fields: &serde_json::Map<String, Value>,
        cas: u64,
    ) -> Result<Written, VaultError> {
        let answer = match self.send_cas(kv, fields, cas) {
            Sent::Unknown(what) => return self.written_after_all(kv, fields, cas, &what),
            sent => self.answered(kv, sent)?,
        };
        written(kv, &answer)
    }

    /// Sends a write of `fields` at `kv` over version `cas`, once.
    fn send_cas(&self, kv: &KvPath, fields: &serde_json::Map<String, Value>, cas: u64) -> Sent {
        let body = serde_json::json!({ "options": { "cas": cas }, "data": fields });
        self.send(
            reqwest::Method::POST,
            kv.data_url(),
            Some(body),
            Replay::Never,
        )
    }

    /// Writes `fields` at `kv` over whatever is there (no check-and-set: for secrets tokdeck
    /// only ever replaces whole, such as published tokens).
    pub fn put(
        &self,
        kv: &KvPath,
        fields: &serde_json::Map<String, Value>,
    ) -> Result<u64, VaultError> {
        let body = serde_json::json!({ "data": fields });
        let answer = self.call(
            kv,
            reqwest::Method::POST,
            kv.data_url(),
            Some(body),
            Replay::Safe,
        )?;
        match answer.status {
            200 | 204 => Ok(body_json(&answer)["data"]["version"].as_u64().unwrap_or(0)),
            _ => Err(refusal(kv, &answer)),
        }
    }

    /// The names of the secrets under the folder `dir` (a KV `LIST`); none when it is empty.
    pub fn list(&self, dir: &KvPath) -> Result<Vec<String>, VaultError> {
        // With the slash, as `bao kv list` asks: a policy on `PATH/*` allows it.
        let url = format!("{}/?list=true", dir.metadata_url());
        let answer = self.call(dir, reqwest::Method::GET, url, None, Replay::Safe)?;
        match answer.status {
            200 => Ok(body_json(&answer)["data"]["keys"]
                .as_array()
                .map(|keys| {
                    keys.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()),
            404 => Ok(Vec::new()),
            _ => Err(refusal(dir, &answer)),
        }
    }

    /// Destroys every version of the secret at `kv` older than its current one (KV's
    /// `destroy`: the data is gone, the version numbers stay); how many there were.
    pub fn destroy_older(&self, kv: &KvPath) -> Result<usize, VaultError> {
        let Some(json) = self.metadata(kv)? else {
            return Ok(0);
        };
        let current = json["data"]["current_version"].as_u64().unwrap_or(0);
        let older: Vec<u64> = json["data"]["versions"]
            .as_object()
            .map(|versions| {
                versions
                    .iter()
                    .filter(|(_, v)| !v["destroyed"].as_bool().unwrap_or(false))
                    .filter_map(|(n, _)| n.parse::<u64>().ok())
                    .filter(|&n| n < current)
                    .collect()
            })
            .unwrap_or_default();
        if older.is_empty() {
            return Ok(0);
        }
        let url = kv.api(&format!("{}/destroy/{}", kv.mount, kv.path));
        let body = serde_json::json!({ "versions": older });
        let answer = self.call(kv, reqwest::Method::POST, url, Some(body), Replay::Safe)?;
        match answer.status {
            200 | 204 => Ok(older.len()),
            403 => Err(VaultError::Remote(format!(
                "OpenBao at {} refused to destroy the earlier versions of {}: the token needs update on {}/destroy/{} (an admin's, or add it to the policy); until then the removed key opens them: `bao kv destroy -versions=... {}`",
                kv.host(),
                kv.kv_name(),
                kv.mount,
                kv.path,
                kv.kv_name()
            ))),
            _ => Err(refusal(kv, &answer)),
        }
    }

    /// Removes the secret at `kv` with every version of it (its metadata).
    pub fn destroy(&self, kv: &KvPath) -> Result<(), VaultError> {
        let answer = self.call(
            kv,
            reqwest::Method::DELETE,
            kv.metadata_url(),
            None,
            Replay::Safe,
        )?;
        match answer.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(refusal(kv, &answer)),
        }
    }

    /// Whether this token may create and update secrets at `kv` (`sys/capabilities-self`).
    pub fn may_write(&self, kv: &KvPath) -> Result<bool, VaultError> {
        let path = format!("{}/data/{}", kv.mount, kv.path);
        let body = serde_json::json!({ "paths": [path] });
        let url = kv.api("sys/capabilities-self");
        let answer = self.call(kv, reqwest::Method::POST, url, Some(body), Replay::Safe)?;
        if answer.status != 200 {
            return Err(refusal(kv, &answer));
        }
        let json = body_json(&answer);
        let granted: Vec<&str> = json[&path]
            .as_array()
            .or_else(|| json["capabilities"].as_array())
            .map(|caps| caps.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let all = |cap: &str| granted.contains(&cap) || granted.contains(&"root");
        Ok(all("create") && all("update"))
    }

    /// Checks that `kv`'s mount is a KV engine of version 2: check-and-set needs it. A
    /// token that may not ask passes: the reads and writes then say what is wrong.
    pub fn check_engine(&self, kv: &KvPath) -> Result<(), VaultError> {
        let url = kv.api(&format!("sys/internal/ui/mounts/{}", kv.kv_name()));
        let answer = self.call(kv, reqwest::Method::GET, url, None, Replay::Safe)?;
        if answer.status != 200 {
            return Ok(());
        }
        let json = body_json(&answer);
        let engine = json["data"]["type"].as_str().unwrap_or_default();
        let version = json["data"]["options"]["version"].as_str().unwrap_or("1");
        match (engine, version) {
            ("kv", "2") | ("", _) => Ok(()),
            ("kv", _) => Err(VaultError::Remote(format!(
                "{0} on {1} is a KV version 1 engine: tokdeck needs version 2 for check-and-set writes; upgrade it with `bao kv enable-versioning {0}` or mount a version 2 engine (`bao secrets enable -version=2 -path=NAME kv`)",
                kv.mount,
                kv.host()
            ))),
            (other, _) => Err(VaultError::Remote(format!(
                "{} on {} is a '{}' engine, not KV: keep the vault in a KV version 2 engine (e.g. openbao://HOST/secret/PATH)",
                kv.mount,
                kv.host(),
                clean(other)
            ))),
        }
    }

    /// What a write whose answer was lost came to, read back: stored when version `cas + 1`
    /// holds `fields`, another writer's when it holds something else; when nothing landed
    /// it is sent once more, under the same check-and-set. Never sent blindly.
    fn written_after_all(
        &self,
        kv: &KvPath,
        fields: &serde_json::Map<String, Value>,
        cas: u64,
        what: &str,
    ) -> Result<Written, VaultError> {
        let unconfirmed = |e: VaultError| {
            VaultError::Remote(format!(
                "OpenBao at {} lost its answer to the write of {} ({what}), and reading back could not tell whether it landed ({e}): tokdeck did not send it again; check the cluster (bao operator raft list-peers), then try again",
                kv.host(),
                kv.kv_name()
            ))
        };
        let newest = match self.read(kv).map_err(unconfirmed)? {
            Found::Secret(secret) => secret.version,
            Found::Nothing { version } => version,
        };
        if newest == cas {
            return match self.send_cas(kv, fields, cas) {
                Sent::Unknown(again) => Err(unconfirmed(VaultError::Remote(again))),
                sent => written(kv, &self.answered(kv, sent)?),
            };
        }
        match self.read_version(kv, cas + 1).map_err(unconfirmed)? {
            Found::Secret(secret) if secret.fields == *fields => {
                Ok(Written::Stored { version: cas + 1 })
            }
            _ => Ok(Written::Conflict),
        }
    }

    /// Sends one request, through an election if one is under way.
    fn call(
        &self,
        kv: &KvPath,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
        replay: Replay,
    ) -> Result<Answer, VaultError> {
        let sent = self.send(method, url, body, replay);
        self.answered(kv, sent)
    }

    fn send(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
        replay: Replay,
    ) -> Sent {
        let write = method != reqwest::Method::GET;
        let build = move || {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("X-Vault-Token", self.token.expose_secret())
                .header("X-Vault-Request", "true");
            if let Some(body) = &body {
                request = request.json(body);
            }
            request
        };
        let patience = ha::patience(self.timeout);
        ha::send(build, replay, write, patience, &self.last_write)
    }

    /// The answer, or what its absence means.
    fn answered(&self, kv: &KvPath, sent: Sent) -> Result<Answer, VaultError> {
        match sent {
            Sent::Answered(answer) => Ok(answer),
            Sent::Unanswered(e) => Err(unreachable(kv, &e, self.timeout)),
            Sent::Unknown(what) => Err(VaultError::Remote(format!(
                "OpenBao at {} did not answer the request for {} ({what}): try again in a moment",
                kv.host(),
                kv.kv_name()
            ))),
        }
    }
}

/// The path of the vault a secret at `path` belongs to: the vault's own, its lease's, an
/// entry's, a status shard's or an announcement's.
fn vault_path(path: &str) -> &str {
    [".entries/", ".status/", ".agents/", ".locks/"]
        .iter()
        .find_map(|folder| path.rfind(folder).and_then(|at| path.get(..at)))
        .unwrap_or_else(|| path.strip_suffix(".lock").unwrap_or(path))
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn body_json(answer: &Answer) -> Value {
    serde_json::from_slice(&answer.body).unwrap_or(Value::Null)
}

/// What the answer to a check-and-set write says: stored, as which version, or another
/// writer's version is there.
fn written(kv: &KvPath, answer: &Answer) -> Result<Written, VaultError> {
    match answer.status {
        200 | 204 => match body_json(answer)["data"]["version"].as_u64() {
            Some(version) => Ok(Written::Stored { version }),
            None => Err(VaultError::Remote(format!(
                "OpenBao at {} answered a write of {} without a version: is {} a KV version 2 engine?",
                kv.host(),
                kv.kv_name(),
                kv.mount
            ))),
        },
        400 if first_error(answer).contains("check-and-set") => Ok(Written::Conflict),
        _ => Err(refusal(kv, answer)),
    }
}

/// The first error OpenBao gave, cleaned for a terminal.
fn first_error(answer: &Answer) -> String {
    ha::first_error(&answer.body)
}

/// OpenBao could not be reached, or did not answer in time. There is no fallback to a
/// local file: a copy would fork the rotation chain.
fn unreachable(kv: &KvPath, e: &reqwest::Error, timeout: Duration) -> VaultError {
    let host = kv.host();
    let location = Location::OpenBao(Box::new(kv.clone()));
    if e.is_timeout() {
        return VaultError::Remote(format!(
            "OpenBao at {host} did not answer within {}s ({location}): check that it runs, or raise http_timeout in the config",
            timeout.as_secs()
        ));
    }
    VaultError::Remote(format!(
        "cannot reach OpenBao at {host} ({}): check that it runs and that the vault location names it; tokdeck never falls back to a local copy",
        ha::cause_of(e)
    ))
}

/// What a refusal means, and what to do about it.
fn refusal(kv: &KvPath, answer: &Answer) -> VaultError {
    let host = kv.host();
    let said = first_error(answer);
    let text = match answer.status {
        0 => format!(
            "OpenBao at {host} sent an answer over {} bytes for {}: is the location right?",
            ha::MAX_ANSWER_BYTES,
            kv.kv_name()
        ),
        403 => format!(
            "OpenBao at {host} refused the token for {0}: it is missing, expired, or lacks a capability; log in again (bao login, or set BAO_TOKEN), and make sure its policy allows read, create and update on {1}/data/{2} and {1}/data/{2}.lock (and, for a vault in entries, {1}/data/{2}.entries/*, {1}/data/{2}.status/* and {1}/data/{2}.locks/*), and read on {1}/metadata/{2} (see the README's Teams section)",
            kv.kv_name(),
            kv.mount,
            vault_path(&kv.path)
        ),
        503 if said.to_lowercase().contains("sealed") => {
            format!("OpenBao at {host} is sealed: unseal it (bao operator unseal), then try again")
        }
        429 => format!("OpenBao at {host} is rate-limiting requests: try again in a moment"),
        // Raft storage refuses an entry over its `max_entry_size` (1 MiB by default).
        status @ 400..=599 if said.contains("too large") => format!(
            "the vault is too large for one entry of OpenBao at {host}'s storage ({status}: {said}): this will not succeed when tried again; remove profiles you no longer use (tokdeck remove), keep the vault in a file (tokdeck vault copy FILE), or have the operator raise raft's max_entry_size"
        ),
        status @ 500..=599 if answer.sends > 1 => format!(
            "OpenBao at {host} could not serve the request for {} ({status}: {said}), sent {} times: a cluster electing a leader or without quorum answers so; check it (bao operator raft list-peers), then try again",
            kv.kv_name(),
            answer.sends
        ),
        status @ 500..=599 => {
            format!("OpenBao at {host} failed ({status}: {said}): try again in a moment")
        }
        status => format!(
            "OpenBao at {host} refused the request for {} ({status}: {said})",
            kv.kv_name()
        ),
    };
    VaultError::Remote(text)
}

#[cfg(test)]
mod tests {
    use super::vault_path;

    #[test]
    fn the_advice_for_a_refused_secret_names_its_vault() {
        assert_eq!(vault_path("teams/payroll"), "teams/payroll");
        assert_eq!(vault_path("teams/payroll.lock"), "teams/payroll");
        assert_eq!(vault_path("teams/payroll.entries/0a1b"), "teams/payroll");
        assert_eq!(vault_path("teams/payroll.status/0003"), "teams/payroll");
        assert_eq!(vault_path("teams/pay.roll.agents/x"), "teams/pay.roll");
    }
}
