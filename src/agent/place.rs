//! Where the agent's socket lives, and whether that place can be trusted.
//!
//! Whoever can write in the socket's folder can put their own listener there, and every
//! client would then hand its requests to them and run what they answer. So the agent and its
//! clients check the whole way to the socket, as OpenSSH checks the files it trusts:
//! - the socket's own folder belongs to this user (or root) and nobody else may write in it;
//! - every folder above it belongs to this user or root, and one that others may write in
//!   (`/tmp`) has the sticky bit, so nobody can rename what is not theirs;
//! - a symbolic link on the way belongs to this user or root.
//!
//! With `XDG_RUNTIME_DIR` unset the socket goes to `tokdeck-UID` under the temp folder. That
//! name can be claimed by another user first: the check then refuses it (a denial of service,
//! never an impersonation) and says how to choose a private place.

use std::fs::Metadata;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Write bits for group and others.
const SHARED_WRITE: u32 = 0o022;
/// The sticky bit: in such a folder only an entry's owner may rename or remove it.
const STICKY: u32 = 0o1000;

/// Where the agent listens: `TOKDECK_AGENT_SOCK`, else `$XDG_RUNTIME_DIR/tokdeck/agent.sock`,
/// else `tokdeck-UID/agent.sock` under the temp folder.
pub fn socket_path() -> PathBuf {
    if let Some(path) = std::env::var_os("TOKDECK_AGENT_SOCK").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(
            || std::env::temp_dir().join(format!("tokdeck-{}", uid())),
            |d| PathBuf::from(d).join("tokdeck"),
        );
    base.join("agent.sock")
}

/// This process's user.
pub fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Whether a peer or an owner `owner` is trusted by this user: itself, or root.
pub fn trusted_owner(owner: u32) -> bool {
    owner == uid() || owner == 0
}

/// A place on the way to the socket that cannot be trusted, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}: {fix}")]
pub struct Untrusted {
    pub path: PathBuf,
    pub why: String,
    pub fix: &'static str,
}

const FIX: &str = "set XDG_RUNTIME_DIR, or TOKDECK_AGENT_SOCK to a path in a folder only you can write (mkdir -m 700)";

impl Untrusted {
    fn new(path: &Path, why: String) -> Self {
        Self {
            path: path.to_path_buf(),
            why,
            fix: FIX,
        }
    }
}

/// Why `meta`, found at a place on the way to the socket, cannot be trusted; `own_folder` is
/// true for the socket's own folder, where no sticky bit excuses others' write access.
pub fn judge(meta: &Metadata, own_folder: bool) -> Option<String> {
    judge_bits(
        meta.uid(),
        meta.mode(),
        meta.file_type().is_symlink(),
        own_folder,
    )
}

/// [`judge`] on the bits alone, so that every rule is tested without making files.
fn judge_bits(owner: u32, mode: u32, symlink: bool, own_folder: bool) -> Option<String> {
    if !trusted_owner(owner) {
        return Some(format!(
            "belongs to uid {owner}, not to you (uid {})",
            uid()
        ));
    }
    if symlink {
        return None;
    }
    let shared = mode & SHARED_WRITE != 0;
    if shared && (own_folder || mode & STICKY == 0) {
        return Some(format!("others may write in it (mode {:o})", mode & 0o7777));
    }
    None
}

/// Checks every place from the root to `folder`, as written and with links resolved.
pub fn check_folder(folder: &Path) -> Result<(), Untrusted> {
    let written = std::path::absolute(folder)
        .map_err(|e| Untrusted::new(folder, format!("cannot be resolved ({e})")))?;
    check_each(&written)?;
    let real = std::fs::canonicalize(&written)
        .map_err(|e| Untrusted::new(folder, format!("cannot be resolved ({e})")))?;
    if real != written {
        check_each(&real)?;
    }
    Ok(())
}

fn check_each(folder: &Path) -> Result<(), Untrusted> {
    for place in folder.ancestors() {
        let meta = std::fs::symlink_metadata(place)
            .map_err(|e| Untrusted::new(place, format!("cannot be read ({e})")))?;
        if let Some(why) = judge(&meta, place == folder) {
            return Err(Untrusted::new(place, why));
        }
    }
    Ok(())
}

/// The socket's folder, made private (0700) where missing, then checked all the way up.
pub fn prepare_folder(socket: &Path) -> anyhow::Result<PathBuf> {
    let folder = folder_of(socket);
    if std::fs::symlink_metadata(&folder).is_err() {
        // Each folder made on the way is 0700, so none of them lets anyone else in.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&folder)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", folder.display()))?;
    }
    check_folder(&folder)?;
    Ok(folder)
}

/// The folder a socket path names (`.` for a bare file name).
pub fn folder_of(socket: &Path) -> PathBuf {
    socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// What sits at the socket path before the agent binds it.
#[derive(Debug, PartialEq, Eq)]
pub enum Occupant {
    Nothing,
    /// A socket of this user's: an agent's, running or left behind by a killed one.
    OwnSocket,
}

/// Looks at the socket path without following a link: only a socket of this user's may be
/// replaced; anything else (a file, a folder, a link, another user's socket) is refused.
pub fn occupant(socket: &Path) -> anyhow::Result<Occupant> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(socket) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Occupant::Nothing),
        Err(e) => anyhow::bail!("cannot look at {}: {e}", socket.display()),
    };
    if !meta.file_type().is_socket() {
        anyhow::bail!(
            "{} exists and is not a socket: tokdeck will not remove it; move it away or set TOKDECK_AGENT_SOCK to another path",
            socket.display()
        );
    }
    if meta.uid() != uid() {
        anyhow::bail!(
            "{} is a socket of uid {}, not yours: tokdeck will not replace it; {FIX}",
            socket.display(),
            meta.uid()
        );
    }
    Ok(Occupant::OwnSocket)
}

/// The identity of the socket file the agent made, so that it removes that one only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Made {
    dev: u64,
    ino: u64,
}

impl Made {
    /// The socket at `socket`, as just bound; it is made private (0600) here.
    pub fn record(socket: &Path) -> anyhow::Result<Self> {
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| anyhow::anyhow!("cannot make {} private: {e}", socket.display()))?;
        let meta = std::fs::symlink_metadata(socket)
            .map_err(|e| anyhow::anyhow!("cannot look at {}: {e}", socket.display()))?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Removes the socket if it is still the one made; one that replaced it stays. Returns
    /// whether it was removed.
    pub fn remove(self, socket: &Path) -> bool {
        let same = std::fs::symlink_metadata(socket)
            .is_ok_and(|meta| meta.dev() == self.dev && meta.ino() == self.ino);
        same && std::fs::remove_file(socket).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_other_than_the_user_and_root_are_refused() {
        let me = uid();
        let stranger = if me == 4242 { 4243 } else { 4242 };
        assert!(judge_bits(me, 0o40_700, false, true).is_none());
        assert!(judge_bits(0, 0o40_755, false, true).is_none());
        let why = judge_bits(stranger, 0o40_700, false, true).unwrap();
        assert!(
            why.contains("uid 4242") || why.contains("uid 4243"),
            "{why}"
        );
        assert!(judge_bits(stranger, 0o120_777, true, false).is_some());
        assert!(judge_bits(me, 0o120_777, true, false).is_none());
    }

    #[test]
    fn folders_others_may_write_in_are_refused_unless_sticky_and_above() {
        let me = uid();
        for mode in [0o40_777, 0o40_770, 0o40_702, 0o40_720] {
            assert!(judge_bits(me, mode, false, true).is_some(), "{mode:o}");
            assert!(judge_bits(me, mode, false, false).is_some(), "{mode:o}");
        }
        // /tmp: others may write, but not rename what is not theirs.
        assert!(judge_bits(0, 0o41_777, false, false).is_none());
        // ...which still does not make it a place for the socket itself.
        let why = judge_bits(0, 0o41_777, false, true).unwrap();
        assert!(why.contains("mode 1777"), "{why}");
    }

    #[test]
    fn a_private_folder_passes_and_a_shared_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .unwrap();
        check_folder(&private).unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_folder(&shared).unwrap_err().to_string();
        assert!(err.contains("shared") && err.contains("mode 777"), "{err}");
        // A private folder under the shared one: the shared one can swap it out.
        let under = shared.join("inner");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&under)
            .unwrap();
        let err = check_folder(&under).unwrap_err().to_string();
        assert!(err.contains("mode 777"), "{err}");
    }

    #[test]
    fn only_a_socket_of_ours_may_be_replaced_and_only_the_one_made_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "precious").unwrap();
        let err = occupant(&file).unwrap_err().to_string();
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(
            occupant(&dir.path().join("none")).unwrap(),
            Occupant::Nothing
        );
        let sock = dir.path().join("s.sock");
        let first = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(occupant(&sock).unwrap(), Occupant::OwnSocket);
        let made = Made::record(&sock).unwrap();
        // Another listener put in its place, as a replacement is made: bound, then renamed.
        let other = dir.path().join("other.sock");
        let _second = std::os::unix::net::UnixListener::bind(&other).unwrap();
        std::fs::rename(&other, &sock).unwrap();
        drop(first);
        assert!(
            !made.remove(&sock),
            "a socket that replaced ours was removed"
        );
        assert!(sock.exists());
        let made = Made::record(&sock).unwrap();
        assert!(made.remove(&sock));
        assert!(!sock.exists());
    }
}
