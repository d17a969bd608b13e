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
    let (dir, mut tmp) = temp_beside(path)?;
    {
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, tmp.as_file_mut());
        write(&mut out)?;
        out.flush().map_err(io_err("write", path))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(io_err("write", tmp.path()))?;
    if keep_backup && path.exists() {
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
