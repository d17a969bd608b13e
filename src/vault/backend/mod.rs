//! Where the ciphertext lives, behind what the store needs of it: read it with its version,
//! probe cheaply whether it changed, commit a new one over the version read, create a new
//! vault, take a lease that excludes other processes' writers, and say whether a previous
//! version is kept. The store keeps everything else: unlocking, the decrypted cache, updates.
//!
//! Two backends: a file ([`file::FileBackend`]), and a secret in OpenBao's KV version 2 engine
//! with check-and-set writes and a lease across machines ([`openbao::OpenBaoBackend`]).

pub mod entries;
pub mod file;
pub mod openbao;

use std::io::Read;
use std::time::Duration;

use super::error::VaultError;
use super::location::Location;

pub use entries::{Changes, Entries, EntryRead, EntryWrite, Layout, ShardWrite, Tried};
pub use file::FileBackend;

/// How many of the stored ciphertext's first bytes tell one encryption from another.
pub const STAMP_BYTES: usize = 16 * 1024;

/// What tells one stored version of the vault from another without reading its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// A file's inode, size and modification time (seconds, nanoseconds).
    File {
        inode: u64,
        size: u64,
        mtime: i64,
        mtime_nsec: i64,
    },
    /// A store that numbers its versions (a KV engine's version, say).
    Revision(u64),
}

/// What tells one encryption of the vault from another: its length and its first bytes, which
/// hold the age header. Every encryption draws a new random file key (and an ephemeral key or
/// salt for each recipient), so two ciphertexts with the same header hold the same content:
/// comparing stamps tells a save from a touch without keeping or reading megabytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Stamp {
    pub len: u64,
    pub head: Vec<u8>,
}

impl Stamp {
    /// The stamp of a whole ciphertext.
    pub fn of(ciphertext: &[u8]) -> Self {
        let end = ciphertext.len().min(STAMP_BYTES);
        Self {
            len: ciphertext.len() as u64,
            head: ciphertext.get(..end).unwrap_or_default().to_vec(),
        }
    }
}

/// Passes writes on, keeping what a [`Stamp`] needs of them: their length and first bytes.
pub struct Stamping<'a> {
    inner: &'a mut dyn std::io::Write,
    stamp: Stamp,
}

impl<'a> Stamping<'a> {
    pub fn new(inner: &'a mut dyn std::io::Write) -> Self {
        Self {
            inner,
            stamp: Stamp::of(&[]),
        }
    }

    /// The stamp of everything written.
    pub fn stamp(self) -> Stamp {
        self.stamp
    }
}

impl std::io::Write for Stamping<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        let taken = &buf[..written];
        let room = STAMP_BYTES.saturating_sub(self.stamp.head.len());
        self.stamp
            .head
            .extend_from_slice(taken.get(..room.min(written)).unwrap_or_default());
        self.stamp.len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The stored ciphertext, opened: its stamp and version, and where to read all of it (from
/// its first byte). What it yields is the version stamped, even if a writer replaces the
/// stored vault meanwhile.
pub struct Ciphertext {
    pub stamp: Stamp,
    pub version: Option<Version>,
    pub source: Source,
    /// Whether that is the whole vault, or the head of one laid out as entries.
    pub layout: Layout,
}

/// Where a stored vault's ciphertext is read from.
pub enum Source {
    /// An open file, which two threads can read at once, each at its own offset: a large
    /// vault is decrypted in halves ([`crate::vault::crypto::decrypt_file`]).
    File(std::fs::File),
    /// Anything else, read from start to end.
    Reader(Box<dyn Read + Send>),
}

impl Source {
    /// The ciphertext as one reader from its first byte.
    pub fn into_reader(self) -> Box<dyn Read + Send> {
        match self {
            Self::File(file) => Box::new(file),
            Self::Reader(reader) => reader,
        }
    }
}

/// A held lease, released when dropped.
pub type LeaseGuard = Box<dyn HeldLease>;

/// A refresh token on its way to the server whose answer is not saved yet, recorded where
/// every process and machine sharing the vault sees it before the token leaves: while it
/// stands, nobody sends that token again (a server that rotates would take a second use for
/// theft and revoke the grant). The holder clears it by saving the answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Intent {
    /// The SHA-256 of the refresh token, in hex: never the token.
    pub print: String,
    /// The machine and process that sent it.
    pub host: String,
    pub pid: u32,
    pub since: chrono::DateTime<chrono::Utc>,
}

impl Intent {
    /// Who sent it, for a person.
    pub fn holder(&self) -> String {
        format!("{} pid {}", self.host, self.pid)
    }

    /// Whether it still stands for a process other than (`host`, `pid`). A process of this
    /// machine that is gone holds no unsaved answer: if it got one, it died with it, and the
    /// refresh token is the best left (still good at a server that keeps it until the new
    /// access token is used). Another machine's process cannot be asked, and stands.
    pub fn stands_against(&self, host: &str, pid: u32) -> bool {
        if self.host != host {
            return true;
        }
        self.pid != pid && process_alive(self.pid)
    }
}

/// Whether process `pid` of this machine runs.
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(errno) => errno == nix::errno::Errno::EPERM,
    }
}

/// How long an intent stands at most: past the longest refresh window anyone uses, the token
/// it names is dead anyway.
pub const INTENT_STANDS_FOR: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// The newest refresh token saved for one profile, as every process and machine sharing the
/// vault sees it: a vault put back to an older version (`bao kv rollback`, a restored file, an
/// old commit) holds one the server has retired, and must not send it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Newest {
    /// The SHA-256 of the refresh token, in hex: never the token.
    pub print: String,
    /// When its token was obtained, as stored with it.
    pub obtained_at: chrono::DateTime<chrono::Utc>,
    /// The machine that saved it.
    pub host: String,
}

impl Newest {
    /// Whether a refresh token with `print`, of a token obtained at `obtained_at`, is one
    /// this record has seen replaced: another print, of an older token. A token obtained
    /// later (a new login, a save whose record was lost) is newer than the record.
    pub fn retires(&self, print: &str, obtained_at: chrono::DateTime<chrono::Utc>) -> bool {
        self.print != print && obtained_at < self.obtained_at
    }
}

/// What a lease entry records, holder to holder: refresh tokens on their way, and the
/// newest refresh token saved for each profile, by a key that does not name it
/// ([`crate::vault::Store::record_key`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpendRecord {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spending: Vec<Intent>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub newest: std::collections::BTreeMap<String, Newest>,
}

impl SpendRecord {
    /// Drops intents past [`INTENT_STANDS_FOR`] at `now`.
    pub fn without_lapsed(mut self, now: chrono::DateTime<chrono::Utc>) -> Self {
        self.spending.retain(|i| now - i.since < INTENT_STANDS_FOR);
        self
    }
}

/// What a held lease tells its holder; every share of the lease in a process asks it.
pub trait HeldLease: Send + Sync {
    /// Whether a single-use secret (a refresh token) may be sent now: the lease will outlast
    /// the request and the save of its answer. A lease that cannot run out always may.
    fn may_spend(&self) -> bool {
        true
    }

    /// The refresh tokens on their way ([`Intent`]), as recorded beside the vault.
    fn intents(&self) -> Result<Vec<Intent>, VaultError> {
        Ok(Vec::new())
    }

    /// The newest refresh token recorded for each profile key of `keys` ([`Newest`]).
    fn newest(&self, keys: &[String]) -> Result<Vec<Option<Newest>>, VaultError> {
        Ok(vec![None; keys.len()])
    }

    /// Replaces the intents (when `intents` is given) and records `newest` over what the
    /// same keys had; on disk or on the server before this returns.
    fn write_record(
        &self,
        _intents: Option<&[Intent]>,
        _newest: &[(String, Newest)],
    ) -> Result<(), VaultError> {
        Ok(())
    }
}

/// Where a vault's ciphertext lives.
pub trait Backend: Send + Sync {
    /// Where the vault is.
    fn location(&self) -> &Location;

    /// The stored version, without reading the content; `None` when it cannot be told.
    fn probe(&self) -> Option<Version>;

    /// Opens the stored ciphertext.
    fn open(&self) -> Result<Ciphertext, VaultError>;

    /// Stores `ciphertext` in place of `expected`, the version this process read, keeping the
    /// previous one; returns the new version. A backend that can tell another writer's version
    /// refuses to overwrite it ([`VaultError::Conflict`]): the caller reads again.
    fn commit(
        &self,
        ciphertext: &[u8],
        expected: Option<Version>,
    ) -> Result<Option<Version>, VaultError>;

    /// [`Backend::commit`] of the ciphertext `seal` writes; returns its stamp too. A backend
    /// that can store it as it comes (a file) never holds it whole.
    fn commit_sealed(
        &self,
        seal: &mut dyn FnMut(&mut dyn std::io::Write) -> Result<(), VaultError>,
        expected: Option<Version>,
    ) -> Result<(Option<Version>, Stamp), VaultError> {
        let mut ciphertext = Vec::new();
        seal(&mut ciphertext)?;
        let version = self.commit(&ciphertext, expected)?;
        Ok((version, Stamp::of(&ciphertext)))
    }

    /// The entries of a vault laid out as entries ([`entries`]); `None` for a backend that
    /// keeps a vault only in one piece (a file).
    fn entries(&self) -> Option<&dyn Entries> {
        None
    }

    /// Stores a new vault; refuses to replace one.
    fn create(&self, ciphertext: &[u8]) -> Result<Option<Version>, VaultError>;

    /// Tries once to take the lease that excludes other processes' writers; `None` while
    /// another holds it.
    fn try_lease(&self) -> Result<Option<LeaseGuard>, VaultError>;

    /// What holds the lease, for the error when it stays taken.
    fn lease_name(&self) -> String;

    /// How long a read may count what was read as current without asking again. Writes always
    /// ask: taking the lease clears it. A file is asked every time (a `stat`); a server,
    /// where asking is a round trip, not within a moment of the last answer.
    fn fresh_for(&self) -> Duration {
        Duration::ZERO
    }

    /// How often a waiting writer tries the lease again.
    fn lease_retry_every(&self) -> Duration {
        Duration::from_millis(25)
    }

    /// Whether a previous version is kept to restore after damage.
    fn has_previous(&self) -> bool;

    /// Destroys every stored version but the current one (a file's backup, a KV secret's
    /// history), so a key removed from the recipients opens none of them; says what went.
    fn forget_history(&self) -> Result<String, VaultError>;

    /// What the store holds beside the vault about the team sharing it: the agents'
    /// announcements and the lease ([`crate::team`]); `None` for a store without a team (a
    /// file, which one machine's agent keeps).
    fn team(&self) -> Result<Option<TeamEntries>, VaultError> {
        Ok(None)
    }

    /// Announces this process beside the vault as an agent: `text` tagged with `tag`,
    /// replacing its previous announcement.
    fn announce(&self, _text: &str, _tag: &str) -> Result<(), VaultError> {
        Ok(())
    }

    /// Removes an announcement: this process's (`None`), or the one named.
    fn withdraw(&self, _id: Option<&str>) -> Result<(), VaultError> {
        Ok(())
    }
}

/// What a store holds beside a shared vault about its team, as read.
#[derive(Debug, Clone, Default)]
pub struct TeamEntries {
    pub announcements: Vec<crate::team::Announcement>,
    /// Who holds the lease now and until when, if anyone.
    pub lease: Option<String>,
    /// The newest refresh token saved for each profile key ([`Newest`]).
    pub newest: std::collections::BTreeMap<String, Newest>,
}
