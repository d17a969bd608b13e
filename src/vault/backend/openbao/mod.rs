//! The vault as a secret in OpenBao's (or HashiCorp Vault's) KV version 2 engine: the same age
//! ciphertext as the file, armored, in the secret's one field `age`; nothing else is stored,
//! so whoever can read the path sees no token, secret or client id. Every save is a
//! check-and-set write over the version read; KV's version history stands in for `.bak`; the
//! lease is a lock entry beside the secret ([`lease`]).

pub mod api;
mod entries;
mod ha;
pub mod lease;
mod team;

use std::io::{Read, Write};
use std::sync::Mutex;

use serde_json::Value;

pub use api::Connection;
use api::{Api, Found, Written};
use lease::{Holder, LeaseTiming, Taken};

use super::{Backend, Ciphertext, Entries, Layout, LeaseGuard, Stamp, TeamEntries, Version};
use crate::vault::error::VaultError;
use crate::vault::location::{KvPath, Location};

/// The one field a vault secret holds.
const FIELD: &str = "age";

/// The field of a descriptor ([`entries`]) that holds the vault's head.
const HEAD: &str = "head";

/// A vault kept in a KV version 2 secret.
pub struct OpenBaoBackend {
    location: Location,
    kv: KvPath,
    lock: KvPath,
    /// Where agents announce themselves ([`team`]).
    agents: KvPath,
    /// The folder of a vault laid out as entries ([`entries`]).
    entries: KvPath,
    /// The folder of their locks, one per entry that was ever refreshed.
    locks: KvPath,
    /// This process's announcement, once it announced itself.
    announcing: String,
    api: Api,
    holder: Holder,
    timing: LeaseTiming,
    /// Who held the lease when this process last found it taken.
    busy: Mutex<Option<String>>,
    /// The version read or written last, to say whether an older one is kept.
    last_version: Mutex<u64>,
}

impl OpenBaoBackend {
    pub fn new(kv: &KvPath, connection: Connection) -> Result<Self, VaultError> {
        let timing = LeaseTiming::for_http_timeout(connection.timeout);
        Ok(Self {
            location: Location::OpenBao(Box::new(kv.clone())),
            lock: kv.sibling(format!("{}.lock", kv.path)),
            agents: team::folder(kv),
            entries: entries::folder(kv),
            locks: entries::locks(kv),
            announcing: team::new_id(),
            kv: kv.clone(),
            api: Api::new(connection)?,
            holder: Holder::default(),
            timing,
            busy: Mutex::default(),
            last_version: Mutex::default(),
        })
    }

    /// The lease's timing, which follows from the HTTP timeout.
    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// The armored ciphertext of `ciphertext`, as the field holds it.
    fn armored(ciphertext: &[u8]) -> Result<serde_json::Map<String, Value>, VaultError> {
        let mut fields = serde_json::Map::new();
        fields.insert(FIELD.into(), Value::String(armor(ciphertext)?));
        Ok(fields)
    }

    /// The ciphertext a vault secret holds, and how the vault is laid out; a secret of
    /// another kind is refused by name.
    fn ciphertext(
        &self,
        fields: &serde_json::Map<String, Value>,
    ) -> Result<(Vec<u8>, Layout), VaultError> {
        if fields.contains_key(HEAD) {
            let changes = fields
                .get(entries::CHANGES)
                .cloned()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| {
                    VaultError::corrupt(&self.location, format!("a bad log of changes: {e}"))
                })?
                .unwrap_or_default();
            return Ok((self.field(fields, HEAD)?, Layout::Entries(changes)));
        }
        Ok((self.field(fields, FIELD)?, Layout::Single))
    }

    /// The ciphertext in the field `name`.
    fn field(
        &self,
        fields: &serde_json::Map<String, Value>,
        name: &str,
    ) -> Result<Vec<u8>, VaultError> {
        let not_ours = || {
            let names: Vec<&str> = fields.keys().map(String::as_str).take(8).collect();
            VaultError::Remote(format!(
                "{} holds a secret that is not a tokdeck vault (its fields: {}): choose another path, or move that secret",
                self.location,
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ))
        };
        let text = fields
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(not_ours)?;
        if !text
            .trim_start()
            .starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
        {
            return Err(not_ours());
        }
        let mut binary = Vec::with_capacity(text.len() * 3 / 4);
        age::armor::ArmoredReader::new(text.as_bytes())
            .read_to_end(&mut binary)
            .map_err(|e| VaultError::corrupt(&self.location, format!("bad armor: {e}")))?;
        Ok(binary)
    }

    fn remember(&self, version: u64) {
        *self
            .last_version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = version;
    }
}

impl Backend for OpenBaoBackend {
    fn location(&self) -> &Location {
        &self.location
    }

    fn probe(&self) -> Option<Version> {
        match self.api.current_version(&self.kv) {
            Ok(version) => version.map(Version::Revision),
            Err(e) => {
                tracing::debug!(error = %e, "cannot probe the vault's version");
                None
            }
        }
    }

    fn open(&self) -> Result<Ciphertext, VaultError> {
        let secret = match self.api.read(&self.kv)? {
            Found::Secret(secret) => secret,
            Found::Nothing { .. } => {
                self.api.check_engine(&self.kv)?;
                return Err(VaultError::NotFound(self.location.clone()));
            }
        };
        let (binary, layout) = self.ciphertext(&secret.fields)?;
        self.remember(secret.version);
        Ok(Ciphertext {
            stamp: Stamp::of(&binary),
            version: Some(Version::Revision(secret.version)),
            source: super::Source::Reader(Box::new(std::io::Cursor::new(binary))),
            layout,
        })
    }

    fn commit(
        &self,
        ciphertext: &[u8],
        expected: Option<Version>,
    ) -> Result<Option<Version>, VaultError> {
        let Some(Version::Revision(cas)) = expected else {
            return Err(VaultError::Conflict(self.location.clone()));
        };
        match self.api.write(&self.kv, &Self::armored(ciphertext)?, cas)? {
            Written::Stored { version } => {
                self.remember(version);
                Ok(Some(Version::Revision(version)))
            }
            Written::Conflict => Err(VaultError::Conflict(self.location.clone())),
        }
    }

    fn entries(&self) -> Option<&dyn Entries> {
        Some(self)
    }

    fn create(&self, ciphertext: &[u8]) -> Result<Option<Version>, VaultError> {
        self.api.check_engine(&self.kv)?;
        let cas = match self.api.read(&self.kv)? {
            Found::Secret(_) => return Err(VaultError::AlreadyExists(self.location.clone())),
            Found::Nothing { version } => version,
        };
        match self.api.write(&self.kv, &Self::armored(ciphertext)?, cas)? {
            Written::Stored { version } => {
                self.remember(version);
                Ok(Some(Version::Revision(version)))
            }
            Written::Conflict => Err(VaultError::AlreadyExists(self.location.clone())),
        }
    }

    fn try_lease(&self) -> Result<Option<LeaseGuard>, VaultError> {
        match lease::try_take(&self.api, &self.lock, &self.holder, self.timing)? {
            Taken::Held(held) => Ok(Some(held)),
            Taken::Busy(who) => {
                *self
                    .busy
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(who);
                Ok(None)
            }
        }
    }

    fn lease_name(&self) -> String {
        let who = self
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| "another process".into());
        format!(
            "its lease {} is held by {who} (a holder that dies loses it when its lease runs out)",
            self.lock.kv_name()
        )
    }

    /// A command that reads the vault and then one profile asks once, not twice.
    fn fresh_for(&self) -> std::time::Duration {
        std::time::Duration::from_millis(500)
    }

    fn lease_retry_every(&self) -> std::time::Duration {
        std::time::Duration::from_millis(250)
    }

    fn forget_history(&self) -> Result<String, VaultError> {
        let destroyed = self.api.destroy_older(&self.kv)? + entries::forget_entries(self)?;
        Ok(match destroyed {
            0 => "OpenBao kept no earlier version of it".into(),
            1 => "its earlier version destroyed in OpenBao".into(),
            n => format!("its {n} earlier versions destroyed in OpenBao"),
        })
    }

    fn team(&self) -> Result<Option<TeamEntries>, VaultError> {
        team::read(&self.api, &self.agents, &self.lock).map(Some)
    }

    fn announce(&self, text: &str, tag: &str) -> Result<(), VaultError> {
        team::announce(&self.api, &self.agents, &self.announcing, text, tag)
    }

    fn withdraw(&self, id: Option<&str>) -> Result<(), VaultError> {
        team::withdraw(&self.api, &self.agents, id.unwrap_or(&self.announcing))
    }

    fn has_previous(&self) -> bool {
        *self
            .last_version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            > 1
    }
}

/// `ciphertext` in age's ASCII armor, as a secret's field holds it.
fn armor(ciphertext: &[u8]) -> Result<String, VaultError> {
    let encode = || -> std::io::Result<Vec<u8>> {
        let mut out = age::armor::ArmoredWriter::wrap_output(
            Vec::with_capacity(ciphertext.len() * 4 / 3 + 128),
            age::armor::Format::AsciiArmor,
        )?;
        out.write_all(ciphertext)?;
        out.finish()
    };
    encode()
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| VaultError::Encrypt("cannot armor the ciphertext".into()))
}
