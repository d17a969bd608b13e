//! A vault laid out as entries: a descriptor holding the vault's head (its recipients and
//! members' secret, encrypted as the vault is) and a short log of recent changes, and one
//! entry per profile under an id that does not name it. A change to one profile writes that
//! profile's entry and the descriptor, never the rest; a reader that saw the log at number N
//! reads again only what changed since.

use serde::{Deserialize, Serialize};

use super::{LeaseGuard, Version};
use crate::vault::error::VaultError;

/// How many changes the descriptor's log keeps: a reader further behind reads every entry.
pub const RECENT: usize = 32;

/// How the stored vault is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One ciphertext holding every profile.
    Single,
    /// A descriptor and an entry per profile; what [`super::Ciphertext`] holds is the head.
    Entries(Changes),
}

/// The descriptor's log: a number that grows with every commit, and the ids the last
/// commits changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    pub seq: u64,
    /// Oldest first; at most [`RECENT`].
    #[serde(default)]
    pub recent: Vec<Change>,
    /// How many status shards the vault keeps (a power of two; 0: none, and status reads
    /// every entry). Each holds what status needs of the profiles whose id falls in it.
    #[serde(default)]
    pub shards: u32,
}

/// The status shard of entry `id` among `shards` (a power of two).
pub fn shard_of(id: &str, shards: u32) -> u32 {
    let head = id.get(..8).and_then(|h| u32::from_str_radix(h, 16).ok());
    head.unwrap_or(0) & shards.saturating_sub(1)
}

/// How many status shards suit `profiles` profiles: sixteen to thirty-two in each, so a
/// shard stays a few KB (deflated) and status reads a twentieth as many secrets as there
/// are profiles.
pub fn shards_for(profiles: usize) -> u32 {
    let wanted = u32::try_from(profiles.div_ceil(32)).unwrap_or(u32::MAX);
    wanted.clamp(1, 4096).next_power_of_two()
}

/// The name a status shard is sealed for.
pub fn shard_name(number: u32) -> String {
    format!("status-{number:04x}")
}

/// One entry written (or removed) by the commit numbered `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub seq: u64,
    pub id: String,
}

impl Changes {
    /// The ids changed after commit `seen`; `None` when the log no longer reaches back that
    /// far (or never reached it: a descriptor put back), so the reader reads everything.
    pub fn since(&self, seen: u64) -> Option<Vec<&str>> {
        if seen == self.seq {
            return Some(Vec::new());
        }
        let reaches = self.recent.first().is_some_and(|c| c.seq <= seen + 1);
        if seen > self.seq || !reaches {
            return None;
        }
        Some(
            self.recent
                .iter()
                .filter(|c| c.seq > seen)
                .map(|c| c.id.as_str())
                .collect(),
        )
    }

    /// The log after one more commit, which changed `ids`.
    #[must_use]
    pub fn recording<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Self {
        let seq = self.seq + 1;
        let mut recent = self.recent.clone();
        recent.extend(ids.into_iter().map(|id| Change {
            seq,
            id: id.to_string(),
        }));
        let over = recent.len().saturating_sub(RECENT);
        let cut = over
            .checked_sub(1)
            .and_then(|last| recent.get(last))
            .map(|c| c.seq);
        recent.drain(..over);
        // A commit cut in two would make the log claim it reaches back further than it does.
        if let Some(cut) = cut {
            recent.retain(|c| c.seq != cut);
        }
        Self {
            seq,
            recent,
            shards: self.shards,
        }
    }
}

/// One entry or status shard as read: its ciphertext and the version check-and-set writes
/// it over.
pub struct EntryRead {
    pub ciphertext: Vec<u8>,
    pub version: u64,
}

/// One entry to write: its id, its ciphertext, and the version it goes over (`None`: over
/// whatever is there).
pub struct EntryWrite {
    pub id: String,
    pub ciphertext: Vec<u8>,
    pub expected: Option<u64>,
}

/// One status shard to write: its number, its ciphertext, and the version it goes over
/// (`None`: over whatever is there, for a writer that writes every shard).
pub struct ShardWrite {
    pub number: u32,
    pub ciphertext: Vec<u8>,
    pub expected: Option<u64>,
}

/// What one try at a lease came to: the vault's, or the lock of one profile's entry.
pub enum Tried {
    /// Held until dropped; its record of refresh tokens is the vault's, or that profile's.
    Held(LeaseGuard),
    /// Another holder's lease runs: who it is.
    Busy(String),
}

/// What the store needs of a backend that keeps a vault as entries.
pub trait Entries: Send + Sync {
    /// The ids of every entry.
    fn list(&self) -> Result<Vec<String>, VaultError>;

    /// Reads the entry `id`; `None` when there is none.
    fn read(&self, id: &str) -> Result<Option<EntryRead>, VaultError>;

    /// Reads the entries `ids`, as many at once as the backend serves well; in the order
    /// asked.
    fn read_many(&self, ids: &[String]) -> Result<Vec<Option<EntryRead>>, VaultError> {
        ids.iter().map(|id| self.read(id)).collect()
    }

    /// Writes the entry `id` over version `expected` (0: there is none yet), or over whatever
    /// is there (`None`: a writer rewriting every entry under the lease); the new version.
    /// Another writer's version found there is [`VaultError::Conflict`].
    fn write(&self, id: &str, ciphertext: &[u8], expected: Option<u64>) -> Result<u64, VaultError>;

    /// [`Entries::write`] of each of `writes` (id, ciphertext, expected version), as many at
    /// once as the backend serves well; each one's outcome, in the order given.
    fn write_many(&self, writes: &[EntryWrite]) -> Vec<Result<u64, VaultError>> {
        writes
            .iter()
            .map(|w| self.write(&w.id, &w.ciphertext, w.expected))
            .collect()
    }

    /// Removes the entry `id` with all its versions.
    fn remove(&self, id: &str) -> Result<(), VaultError>;

    /// Reads the status shards `numbers`; `None` for one there is not.
    fn read_shards(&self, numbers: &[u32]) -> Result<Vec<Option<EntryRead>>, VaultError>;

    /// Writes each status shard over the version it names; each one's outcome, in the order
    /// given. Another writer's version found there is [`VaultError::Conflict`].
    fn write_shards(&self, shards: &[ShardWrite]) -> Vec<Result<u64, VaultError>>;

    /// Removes status shard `number` with all its versions.
    fn remove_shard(&self, number: u32) -> Result<(), VaultError>;

    /// Tries once to take the lock of entry `id`, which keeps other processes from spending
    /// that profile's refresh token, and holds the record of its refresh tokens.
    fn try_lock(&self, id: &str) -> Result<Tried, VaultError>;

    /// Who holds the lock of an entry now, other than this process: a writer that seals
    /// every entry again waits them out.
    fn lock_holders(&self) -> Result<Vec<String>, VaultError>;

    /// Who holds the vault's lease now, when a process other than this one does: a holder
    /// of an entry's lock gives way to it.
    fn lease_holder(&self) -> Result<Option<String>, VaultError>;

    /// Writes the descriptor, `head` and `changes`, over version `expected` of what is there
    /// (a descriptor, or a vault in one piece being moved into entries).
    fn commit_head(
        &self,
        head: &[u8],
        changes: &Changes,
        expected: Option<Version>,
    ) -> Result<Option<Version>, VaultError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(changes: &Changes, seen: u64) -> Option<Vec<String>> {
        changes
            .since(seen)
            .map(|ids| ids.into_iter().map(String::from).collect())
    }

    #[test]
    fn a_reader_gets_what_changed_since_it_looked() {
        let log = Changes::default()
            .recording(["a"])
            .recording(["b", "c"])
            .recording(["a"]);
        assert_eq!(log.seq, 3);
        assert_eq!(ids(&log, 3), Some(vec![]));
        assert_eq!(ids(&log, 2), Some(vec!["a".to_string()]));
        assert_eq!(ids(&log, 1), Some(vec!["b".into(), "c".into(), "a".into()]));
        assert_eq!(
            ids(&log, 0),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        // A reader from a future the descriptor no longer has reads everything.
        assert_eq!(ids(&log, 4), None);
    }

    #[test]
    fn a_reader_behind_the_log_reads_everything() {
        let mut log = Changes::default();
        for i in 0..(RECENT as u64 + 10) {
            log = log.recording([format!("id{i}").as_str()]);
        }
        assert_eq!(log.recent.len(), RECENT);
        assert_eq!(ids(&log, 0), None);
        assert_eq!(ids(&log, 9), None);
        assert_eq!(ids(&log, 10).map(|v| v.len()), Some(RECENT));
    }

    #[test]
    fn a_commit_cut_by_the_limit_is_dropped_whole() {
        let log = Changes::default()
            .recording(["x", "y"])
            .recording((0..RECENT - 1).map(|_| "m"));
        assert!(log.recent.iter().all(|c| c.seq == 2), "{log:?}");
        assert_eq!(ids(&log, 0), None);
        assert_eq!(ids(&log, 1).map(|v| v.len()), Some(RECENT - 1));
    }

    #[test]
    fn a_commit_that_fills_the_log_alone_keeps_it() {
        let mut log = Changes::default().recording(["x"]);
        let many: Vec<String> = (0..RECENT).map(|i| format!("m{i}")).collect();
        log = log.recording(many.iter().map(String::as_str));
        // Commit 2 fills the log alone: commit 1 is gone, and a reader at 0 reads all.
        assert!(log.recent.iter().all(|c| c.seq == 2));
        assert_eq!(ids(&log, 0), None);
        assert_eq!(ids(&log, 1).map(|v| v.len()), Some(RECENT));
    }
}
