//! File mechanics, below everything else in the vault: private folders, atomic writes with a
//! backup, and the names of the files kept beside a vault. Nothing here knows what a vault
//! holds.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::VaultError;

pub(crate) fn io_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> VaultError + use<> {
    let path = path.to_path_buf();
    move |source| VaultError::Io {
        action,
        path,
        source,
    }
}

/// Creates `dir` (and parents) with mode 0700 when missing.
pub fn ensure_private_dir(dir: &Path) -> Result<(), VaultError> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("create folder", dir))
}

/// Writes `bytes` to `path` so that readers see the old file or the new one, never a mix:
/// temp file in the same folder (0600), fsync, optional hard-link backup of the old file
/// to `<path>.bak`, rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8], keep_backup: bool) -> Result<(), VaultError> {
    write_atomic_with(path, keep_backup, &mut |out| {
        out.write_all(bytes).map_err(io_err("write", path))
    })
}

/// [`write_atomic`] of what `write` writes, as it writes it: the content is never held whole.
pub fn write_atomic_with(
    path: &Path,
    keep_backup: bool,
    write: &mut dyn FnMut(&mut dyn Write) -> Result<(), VaultError>,
) -> Result<(), VaultError> {
    let (dir, tmp) = temp_beside(path)?;
    {
        let mut early = EarlySync::new(tmp.as_file());
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, &mut early);
        let written = write(&mut out).and_then(|()| out.flush().map_err(io_err("write", path)));
        drop(out);
        // A failed write to the file is the disk's, whatever the writer (an encryptor) made
        // of it: the error says so (a full disk, not a failed encryption).
        if let Some(e) = early.failed.take() {
            return Err(io_err("write", path)(e));
        }
        written?;
        early.finish().map_err(io_err("write", tmp.path()))?;
    }
    // The backup is made while the disk takes the new file: it waits on the disk too.
    let (synced, backed_up) = std::thread::scope(|s| {
        let backed_up = keep_backup.then(|| s.spawn(|| back_up(path, &dir)));
        let synced = tmp.as_file().sync_all();
        (synced, backed_up.map(std::thread::ScopedJoinHandle::join))
    });
    synced.map_err(io_err("write", tmp.path()))?;
    match backed_up {
        Some(Ok(done)) => done?,
        Some(Err(_)) => {
            return Err(io_err("back up", path)(std::io::Error::other(
                "the backup stopped",
            )));
        }
        None => {}
    }
    tmp.persist(path).map_err(|e| VaultError::Io {
        action: "replace",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync folder", &dir))
}

/// Unsynced bytes past which a large file's writing starts them towards the disk.
const EARLY_SYNC_EVERY: u64 = 2 << 20;

/// A file being written whose data goes to the disk while the rest is still written: past
/// every [`EARLY_SYNC_EVERY`] bytes, a thread syncs what is there, so the last sync waits
/// only for the rest. A small file is synced once, at the end, as before.
struct EarlySync<'a> {
    file: &'a File,
    /// The first write to the file that failed, as it failed.
    failed: Option<std::io::Error>,
    unsynced: u64,
    syncing: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl<'a> EarlySync<'a> {
    fn new(file: &'a File) -> Self {
        Self {
            file,
            failed: None,
            unsynced: 0,
            syncing: None,
        }
    }

    /// Waits for the sync under way: its failure is the file's (the last sync need not
    /// report an error this one saw).
    fn finish(&mut self) -> std::io::Result<()> {
        match self.syncing.take().map(std::thread::JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(std::io::Error::other("a sync stopped")),
        }
    }
}

impl Write for EarlySync<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = match self.file.write(buf) {
            Ok(written) => written,
            Err(e) => {
                if self.failed.is_none() && e.kind() != std::io::ErrorKind::Interrupted {
                    self.failed = Some(std::io::Error::new(e.kind(), e.to_string()));
                }
                return Err(e);
            }
        };
        self.unsynced += written as u64;
        let idle = self
            .syncing
            .as_ref()
            .is_none_or(std::thread::JoinHandle::is_finished);
        if self.unsynced >= EARLY_SYNC_EVERY && idle {
            self.finish()?;
            let file = self.file.try_clone()?;
            self.syncing = Some(std::thread::spawn(move || file.sync_data()));
            self.unsynced = 0;
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Keeps the file at `path`, if any, as `<path>.bak` in `dir`, its folder.
fn back_up(path: &Path, dir: &Path) -> Result<(), VaultError> {
    if !path.exists() {
        return Ok(());
    }
    let backup = backup_path(path);
    let staged = dir.join(".tokdeck-backup.tmp");
    let _ = fs::remove_file(&staged);
    // A hard link keeps the old inode as the backup without copying; fall back to a copy.
    if fs::hard_link(path, &staged).is_err() {
        fs::copy(path, &staged).map_err(io_err("back up", path))?;
    }
    fs::rename(&staged, &backup).map_err(io_err("back up", path))?;
    // When the backup already was a hard link to the vault (a save killed between link
    // and rename leaves that), rename(2) sees one inode on both sides and does nothing,
    // leaving the staged name behind: remove it.
    if staged.exists() {
        let _ = fs::remove_file(&staged);
    }
    Ok(())
}

/// A new private temp file in the (private) folder of `path`, swept by the next lease holder
/// if this process dies before renaming it; and that folder.
fn temp_beside(path: &Path) -> Result<(PathBuf, tempfile::NamedTempFile), VaultError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    ensure_private_dir(&dir)?;
    let tmp = tempfile::Builder::new()
        .prefix(".tokdeck-")
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(&dir)
        .map_err(io_err("create a temporary file in", &dir))?;
    Ok((dir, tmp))
}

/// Replaces `path` with `bytes` by rename, so every reader sees the old or the new content
/// whole, without waiting for the disk: for what matters only while this machine runs (the
/// records of refresh tokens on their way, which lapse with their process). A full disk or a
/// read-only folder still fails it.
pub fn write_visible(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    let (_, mut tmp) = temp_beside(path)?;
    tmp.write_all(bytes).map_err(io_err("write", tmp.path()))?;
    tmp.persist(path).map_err(|e| VaultError::Io {
        action: "replace",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// `<vault>.bak`
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".bak");
    PathBuf::from(name)
}

/// `<vault>.lock`
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_file_synced_early_is_written_whole_with_its_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.age");
        write_atomic(&path, b"the version before", false).unwrap();
        // Three early syncs' worth, written in uneven pieces as an encryptor writes.
        let large: Vec<u8> = (0..3 * EARLY_SYNC_EVERY + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        write_atomic_with(&path, true, &mut |out| {
            for piece in large.chunks(64 * 1024 + 17) {
                out.write_all(piece).map_err(io_err("write", &path))?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(fs::read(&path).unwrap(), large);
        assert_eq!(fs::read(backup_path(&path)).unwrap(), b"the version before");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "vault.age" && n != "vault.age.bak")
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}
