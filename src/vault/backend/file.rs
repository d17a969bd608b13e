//! The vault as one file: read through a handle (a writer replaces the file by rename, so what
//! the handle reads never changes), versions by inode, size and modification time, atomic
//! writes with a `.bak` of the previous version, and an advisory lock on `<vault>.lock`.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{
    Backend, Ciphertext, HeldLease, Intent, LeaseGuard, Newest, STAMP_BYTES, SpendRecord, Stamp,
    Stamping, Version,
};
use crate::vault::disk::{
    backup_path, io_err, lock_path, write_atomic, write_atomic_with, write_visible,
};
use crate::vault::error::VaultError;
use crate::vault::location::Location;

/// A vault kept in a file.
#[derive(Debug, Clone)]
pub struct FileBackend {
    location: Location,
    path: PathBuf,
}

impl FileBackend {
    pub fn new(path: &Path) -> Self {
        Self {
            location: Location::File(path.to_path_buf()),
            path: path.to_path_buf(),
        }
    }

    /// Removes temp files that killed writers left behind. Called when this process takes
    /// the lock, and every writer of this vault holds the lock while its temp file exists, so
    /// any temp file seen then belongs to a process that died mid-save; while the lock stays
    /// taken, no other process can leave one. They hold only ciphertext.
    fn sweep_dead_temp_files(&self) {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".tokdeck-") && name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// The held `flock`, and what is recorded beside the vault under it: refresh tokens on their
/// way (`<vault>.spending`) and each profile's newest refresh token (`<vault>.newest/KEY`),
/// each written by rename.
struct FileLease {
    /// Closing the file releases the advisory lock.
    _lock: File,
    intents: PathBuf,
    newest: PathBuf,
}

/// `<vault>.spending`
pub fn intents_path(path: &Path) -> PathBuf {
    beside(path, ".spending")
}

/// `<vault>.newest`: a folder of one small file per profile key.
pub fn newest_path(path: &Path) -> PathBuf {
    beside(path, ".newest")
}

fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl HeldLease for FileLease {
    fn intents(&self) -> Result<Vec<Intent>, VaultError> {
        let bytes = match fs::read(&self.intents) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &self.intents)(e)),
        };
        // Earlier builds wrote the list alone.
        serde_json::from_slice::<SpendRecord>(&bytes)
            .map(|record| record.spending)
            .or_else(|_| serde_json::from_slice::<Vec<Intent>>(&bytes))
            .map_err(|_| damaged(&self.intents))
    }

    fn newest(&self, keys: &[String]) -> Result<Vec<Option<Newest>>, VaultError> {
        keys.iter()
            .map(|key| {
                let path = self.newest.join(key);
                match fs::read(&path) {
                    Ok(bytes) => serde_json::from_slice(&bytes)
                        .map(Some)
                        .map_err(|_| damaged(&path)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io_err("read", &path)(e)),
                }
            })
            .collect()
    }

    fn write_record(
        &self,
        intents: Option<&[Intent]>,
        newest: &[(String, Newest)],
    ) -> Result<(), VaultError> {
        // No fsync: an intent matters only while its process runs, and one of a process that
        // is gone lapses anyway; a newest print lost in a crash only checks less.
        if !newest.is_empty() {
            crate::vault::disk::ensure_private_dir(&self.newest)?;
        }
        for (key, newest) in newest {
            let bytes =
                serde_json::to_vec(newest).map_err(|e| VaultError::Encrypt(e.to_string()))?;
            write_visible(&self.newest.join(key), &bytes)?;
        }
        match intents {
            None => Ok(()),
            Some([]) => match fs::remove_file(&self.intents) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(io_err("remove", &self.intents)(e))
                }
                _ => Ok(()),
            },
            Some(intents) => {
                let record = SpendRecord {
                    spending: intents.to_vec(),
                    ..SpendRecord::default()
                };
                let bytes =
                    serde_json::to_vec(&record).map_err(|e| VaultError::Encrypt(e.to_string()))?;
                write_visible(&self.intents, &bytes)
            }
        }
    }
}

fn damaged(path: &Path) -> VaultError {
    VaultError::Rejected(format!(
        "{} is damaged: if no tokdeck is refreshing now, delete it",
        path.display()
    ))
}

/// The version of a file, from its metadata.
fn version_of(meta: &fs::Metadata) -> Version {
    Version::File {
        inode: meta.ino(),
        size: meta.size(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
    }
}

/// The first bytes of the vault file at `path`: enough to read its age header.
pub fn read_head(path: &Path) -> Result<Vec<u8>, VaultError> {
    Ok(FileBackend::new(path).open()?.stamp.head)
}

impl Backend for FileBackend {
    fn location(&self) -> &Location {
        &self.location
    }

    fn probe(&self) -> Option<Version> {
        fs::metadata(&self.path).ok().map(|m| version_of(&m))
    }

    fn open(&self) -> Result<Ciphertext, VaultError> {
        let failed = VaultError::reading(&self.location);
        let mut file = File::open(&self.path).map_err(&failed)?;
        let meta = file.metadata().map_err(&failed)?;
        let mut head = Vec::new();
        Read::by_ref(&mut file)
            .take(STAMP_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(&failed)?;
        std::io::Seek::rewind(&mut file).map_err(&failed)?;
        Ok(Ciphertext {
            stamp: Stamp {
                len: meta.len(),
                head,
            },
            version: Some(version_of(&meta)),
            source: super::Source::File(file),
            layout: super::Layout::Single,
        })
    }

    /// Under the lease no other tokdeck writes this file, and a hand edit made without it
    /// cannot be told from a touch by the version alone: the file backend writes over
    /// whatever is there, as it always has.
    fn commit(
        &self,
        ciphertext: &[u8],
        _expected: Option<Version>,
    ) -> Result<Option<Version>, VaultError> {
        write_atomic(&self.path, ciphertext, true)?;
        Ok(self.probe())
    }

    fn commit_sealed(
        &self,
        seal: &mut dyn FnMut(&mut dyn std::io::Write) -> Result<(), VaultError>,
        _expected: Option<Version>,
    ) -> Result<(Option<Version>, Stamp), VaultError> {
        let mut stamp = None;
        write_atomic_with(&self.path, true, &mut |out| {
            let mut stamping = Stamping::new(out);
            seal(&mut stamping)?;
            stamp = Some(stamping.stamp());
            Ok(())
        })?;
        let stamp = stamp.ok_or_else(|| VaultError::Encrypt("nothing was sealed".into()))?;
        Ok((self.probe(), stamp))
    }

    fn create(&self, ciphertext: &[u8]) -> Result<Option<Version>, VaultError> {
        if self.path.exists() {
            return Err(VaultError::AlreadyExists(self.location.clone()));
        }
        write_atomic(&self.path, ciphertext, false)?;
        Ok(self.probe())
    }

    fn try_lease(&self) -> Result<Option<LeaseGuard>, VaultError> {
        let lock_file = lock_path(&self.path);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_file)
            .map_err(io_err("open lock file", &lock_file))?;
        match file.try_lock() {
            Ok(()) => {
                self.sweep_dead_temp_files();
                Ok(Some(Box::new(FileLease {
                    _lock: file,
                    intents: intents_path(&self.path),
                    newest: newest_path(&self.path),
                })))
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io_err("lock", &lock_file)(e)),
        }
    }

    fn lease_name(&self) -> String {
        format!("{} is locked", lock_path(&self.path).display())
    }

    fn has_previous(&self) -> bool {
        backup_path(&self.path).exists()
    }

    fn forget_history(&self) -> Result<String, VaultError> {
        let backup = backup_path(&self.path);
        match std::fs::remove_file(&backup) {
            Ok(()) => Ok("its backup deleted".into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("it had no backup".into()),
            Err(e) => Err(VaultError::Io {
                action: "delete the backup",
                path: backup,
                source: e,
            }),
        }
    }
}
