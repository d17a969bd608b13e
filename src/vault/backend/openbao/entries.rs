//! A vault laid out as entries in KV ([`crate::vault::backend::entries`]): the descriptor at
//! `PATH` (fields `head`, the armored head, and `changes`, the log), and each profile at
//! `PATH.entries/ID` (field `age`), where ID is a hash of the members' secret and the name;
//! status shards at `PATH.status/NNNN` (field `age`); the lock of each profile's entry, with
//! the record of its refresh tokens, at `PATH.locks/ID` (the lease's fields, [`super::lease`]).
//! KV's `list` is not filtered by policy, so nothing in a path names a profile.

use serde_json::Value;

use super::api::{Found, Written};
use super::lease::{self, Taken};
use super::{FIELD, HEAD, OpenBaoBackend, armor};
use crate::vault::backend::{Changes, Entries, EntryRead, EntryWrite, ShardWrite, Tried, Version};
use crate::vault::error::VaultError;
use crate::vault::location::KvPath;

/// The descriptor's field that holds the log of changes.
pub const CHANGES: &str = "changes";

/// How many entries are read at once: enough to hide a round trip, few enough that a
/// cluster serving a team is not flooded by one reader.
const READERS: usize = 8;

/// The folder of the entries beside the vault at `kv`.
pub fn folder(kv: &KvPath) -> KvPath {
    kv.sibling(format!("{}.entries", kv.path))
}

/// The folder of the entries' locks beside the vault at `kv`.
pub fn locks(kv: &KvPath) -> KvPath {
    kv.sibling(format!("{}.locks", kv.path))
}

/// Whether `id` is one tokdeck writes: 32 hex digits.
fn is_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl OpenBaoBackend {
    /// The folder of the status shards.
    fn shards(&self) -> KvPath {
        self.kv.sibling(format!("{}.status", self.kv.path))
    }

    /// Status shard `number`.
    fn shard(&self, number: u32) -> KvPath {
        let folder = self.shards();
        folder.sibling(format!("{}/{number:04x}", folder.path))
    }

    /// The entry `id`.
    fn entry(&self, id: &str) -> KvPath {
        self.entries.sibling(format!("{}/{id}", self.entries.path))
    }

    /// The lock of entry `id`.
    fn lock_of(&self, id: &str) -> KvPath {
        self.locks.sibling(format!("{}/{id}", self.locks.path))
    }

    /// Writes `ciphertext` at `at` over version `expected`, or over whatever is there.
    fn write_at(
        &self,
        at: &KvPath,
        ciphertext: &[u8],
        expected: Option<u64>,
    ) -> Result<u64, VaultError> {
        let fields = Self::armored(ciphertext)?;
        let Some(cas) = expected else {
            return self.api.put(at, &fields);
        };
        match self.api.write(at, &fields, cas)? {
            Written::Stored { version } => Ok(version),
            Written::Conflict => Err(VaultError::Conflict(self.location.clone())),
        }
    }
}

impl Entries for OpenBaoBackend {
    fn list(&self) -> Result<Vec<String>, VaultError> {
        let mut ids = self.api.list(&self.entries)?;
        ids.retain(|id| is_id(id));
        Ok(ids)
    }

    fn read(&self, id: &str) -> Result<Option<EntryRead>, VaultError> {
        match self.api.read(&self.entry(id))? {
            Found::Secret(secret) => Ok(Some(EntryRead {
                ciphertext: self.field(&secret.fields, FIELD)?,
                version: secret.version,
            })),
            Found::Nothing { .. } => Ok(None),
        }
    }

    fn read_many(&self, ids: &[String]) -> Result<Vec<Option<EntryRead>>, VaultError> {
        in_parallel(ids, |id| self.read(id)).into_iter().collect()
    }

    fn write_many(&self, writes: &[EntryWrite]) -> Vec<Result<u64, VaultError>> {
        in_parallel(writes, |w| self.write(&w.id, &w.ciphertext, w.expected))
    }

    fn write(&self, id: &str, ciphertext: &[u8], expected: Option<u64>) -> Result<u64, VaultError> {
        self.write_at(&self.entry(id), ciphertext, expected)
    }

    fn remove(&self, id: &str) -> Result<(), VaultError> {
        self.api.destroy(&self.entry(id))
    }

    fn read_shards(&self, numbers: &[u32]) -> Result<Vec<Option<EntryRead>>, VaultError> {
        in_parallel(numbers, |n| match self.api.read(&self.shard(*n))? {
            Found::Secret(secret) => Ok(Some(EntryRead {
                ciphertext: self.field(&secret.fields, FIELD)?,
                version: secret.version,
            })),
            Found::Nothing { .. } => Ok(None),
        })
        .into_iter()
        .collect()
    }

    fn write_shards(&self, shards: &[ShardWrite]) -> Vec<Result<u64, VaultError>> {
        in_parallel(shards, |w| {
            self.write_at(&self.shard(w.number), &w.ciphertext, w.expected)
        })
    }

    fn try_lock(&self, id: &str) -> Result<Tried, VaultError> {
        if !is_id(id) {
            return Err(VaultError::Remote(format!("{id} is not an entry's id")));
        }
        match lease::try_take(&self.api, &self.lock_of(id), &self.holder, self.timing)? {
            Taken::Held(held) => Ok(Tried::Held(held)),
            Taken::Busy(who) => Ok(Tried::Busy(who)),
        }
    }

    fn lock_holders(&self) -> Result<Vec<String>, VaultError> {
        let mut ids = self.api.list(&self.locks)?;
        ids.retain(|id| is_id(id));
        let holders = in_parallel(&ids, |id| {
            lease::other_holder(&self.api, &self.lock_of(id), &self.holder)
        });
        let mut busy = Vec::new();
        for holder in holders {
            busy.extend(holder?);
        }
        Ok(busy)
    }

    fn lease_holder(&self) -> Result<Option<String>, VaultError> {
        lease::other_holder(&self.api, &self.lock, &self.holder)
    }

    fn remove_shard(&self, number: u32) -> Result<(), VaultError> {
        self.api.destroy(&self.shard(number))
    }

    fn commit_head(
        &self,
        head: &[u8],
        changes: &Changes,
        expected: Option<Version>,
    ) -> Result<Option<Version>, VaultError> {
        let Some(Version::Revision(cas)) = expected else {
            return Err(VaultError::Conflict(self.location.clone()));
        };
        let mut fields = serde_json::Map::new();
        fields.insert(HEAD.into(), Value::String(armor(head)?));
        let log = serde_json::to_value(changes)
            .map_err(|e| VaultError::Encrypt(format!("cannot write the log of changes: {e}")))?;
        fields.insert(CHANGES.into(), log);
        match self.api.write(&self.kv, &fields, cas)? {
            Written::Stored { version } => {
                self.remember(version);
                Ok(Some(Version::Revision(version)))
            }
            Written::Conflict => Err(VaultError::Conflict(self.location.clone())),
        }
    }
}

/// `each` of `items`, [`READERS`] at once; the outcomes in the order of `items`.
fn in_parallel<I: Sync, T: Send>(
    items: &[I],
    each: impl Fn(&I) -> Result<T, VaultError> + Sync,
) -> Vec<Result<T, VaultError>> {
    crate::vault::parallel::on_threads(items, READERS, each)
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| {
                Err(VaultError::Remote(
                    "a thread of requests to OpenBao failed".into(),
                ))
            })
        })
        .collect()
}

/// Destroys the versions older than the current one of every entry; how many went.
pub fn forget_entries(backend: &OpenBaoBackend) -> Result<usize, VaultError> {
    let mut destroyed = 0;
    for id in backend.list()? {
        destroyed += backend.api.destroy_older(&backend.entry(&id))?;
    }
    for name in backend.api.list(&backend.shards())? {
        if let Ok(number) = u32::from_str_radix(&name, 16) {
            destroyed += backend.api.destroy_older(&backend.shard(number))?;
        }
    }
    Ok(destroyed)
}
