//! The vault on disk: load, atomic save with backup, and the cross-process write lock.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use age::secrecy::SecretString;

use super::crypto::{self, Sealing, Unlock};
use super::error::VaultError;
use super::model::{Profile, VaultData};
use super::parse::{self, Located, Parsed};
use super::text::Text;

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VaultError + use<> {
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
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    ensure_private_dir(&dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tokdeck-")
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(&dir)
        .map_err(io_err("create a temporary file in", &dir))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
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

/// How many of the file's first bytes tell one encryption of it from another.
const STAMP_BYTES: u64 = 16 * 1024;

/// What tells one encryption of the vault from another: the file's length and its first bytes,
/// which hold the age header. Every encryption draws a new random file key (and an ephemeral
/// key or salt for each recipient), so two files with the same header hold the same content:
/// comparing stamps tells a save from a touch without keeping or reading megabytes.
#[derive(PartialEq, Eq)]
struct Stamp {
    len: u64,
    head: Vec<u8>,
}

impl Stamp {
    fn of(ciphertext: &[u8]) -> Self {
        let end = ciphertext
            .len()
            .min(usize::try_from(STAMP_BYTES).unwrap_or(usize::MAX));
        Self {
            len: ciphertext.len() as u64,
            head: ciphertext.get(..end).unwrap_or_default().to_vec(),
        }
    }
}

/// The vault file opened for reading, its stamp and its fingerprint (both of this very file:
/// a writer replaces the file by rename, so what the handle reads never changes).
struct Opened {
    file: File,
    stamp: Stamp,
    fingerprint: Option<(u64, u64, i64, i64)>,
}

impl Opened {
    fn at(path: &Path) -> Result<Self, VaultError> {
        let failed = VaultError::reading(path);
        let mut file = File::open(path).map_err(&failed)?;
        let meta = file.metadata().map_err(&failed)?;
        let mut head = Vec::new();
        Read::by_ref(&mut file)
            .take(STAMP_BYTES)
            .read_to_end(&mut head)
            .map_err(&failed)?;
        Ok(Self {
            file,
            stamp: Stamp {
                len: meta.len(),
                head,
            },
            fingerprint: Some(fingerprint_of(&meta)),
        })
    }

    /// Decrypts the whole file: what the store then holds, and how to seal the next save.
    fn read(mut self, unlock: &Unlock, path: &Path) -> Result<(Snapshot, Sealing), VaultError> {
        std::io::Seek::rewind(&mut self.file).map_err(VaultError::reading(path))?;
        let len = usize::try_from(self.stamp.len).unwrap_or(usize::MAX);
        let reader = std::io::BufReader::with_capacity(64 * 1024, &mut self.file);
        let plaintext = crypto::decrypt_from(reader, len, unlock, path)?;
        let (content, sealing) = decode(plaintext, unlock, path)?;
        let snapshot = Snapshot {
            stamp: self.stamp,
            content,
            fingerprint: self.fingerprint,
        };
        Ok((snapshot, sealing))
    }
}

/// The first bytes of the vault file: enough to read its age header.
pub fn read_head(path: &Path) -> Result<Vec<u8>, VaultError> {
    Ok(Opened::at(path)?.stamp.head)
}

/// What the store last read or wrote.
struct Snapshot {
    stamp: Stamp,
    content: Content,
    /// (inode, size, mtime) of the file when last read or written: an unchanged fingerprint
    /// means nobody replaced the file, so it need not be read again.
    fingerprint: Option<(u64, u64, i64, i64)>,
}

impl Snapshot {
    /// What this process just wrote to `path`: `ciphertext`, sealing `data`.
    fn written(path: &Path, ciphertext: &[u8], data: VaultData) -> Self {
        Self {
            stamp: Stamp::of(ciphertext),
            content: Content::parsed(data),
            fingerprint: fingerprint(path),
        }
    }

    /// Records that this process just wrote `ciphertext` to `path`, its content changed in
    /// place.
    fn rewritten(&mut self, path: &Path, ciphertext: &[u8]) {
        self.stamp = Stamp::of(ciphertext);
        self.fingerprint = fingerprint(path);
    }
}

/// The decrypted content, parsed as far as it was needed.
enum Content {
    /// Profiles located but not parsed: reading one parses only it.
    Located(Located),
    Parsed(Loaded),
}

/// Every profile parsed, and what the store built from them when first needed.
struct Loaded {
    data: VaultData,
    /// Profile name -> position in `data.profiles`, built by the first one-profile read
    /// after a change (the agent's `token` stays constant-time at thousands of profiles).
    index: Option<HashMap<String, usize>>,
    /// The text of each part as last saved, built by the first save of single profiles
    /// after a read or a whole save: the next ones render only the profiles they change.
    text: Option<Text>,
}

impl Loaded {
    fn index(&mut self) -> &HashMap<String, usize> {
        let profiles = &self.data.profiles;
        self.index.get_or_insert_with(|| {
            profiles
                .iter()
                .enumerate()
                .map(|(i, p)| (p.name.clone(), i))
                .collect()
        })
    }

    /// The text as last saved, rendered whole when there is none yet.
    fn text(&mut self) -> Result<&mut Text, VaultError> {
        let text = match self.text.take() {
            Some(text) => text,
            None => Text::of(&self.data)?,
        };
        Ok(self.text.insert(text))
    }
}

impl Content {
    fn parsed(data: VaultData) -> Self {
        Self::Parsed(Loaded {
            data,
            index: None,
            text: None,
        })
    }

    /// Every profile, parsed now when they were only located.
    fn loaded(&mut self, path: &Path) -> Result<&mut Loaded, VaultError> {
        match self {
            Self::Located(located) => {
                *self = Self::parsed(located.parse_all(path)?);
                self.loaded(path)
            }
            Self::Parsed(loaded) => Ok(loaded),
        }
    }

    fn data(&mut self, path: &Path) -> Result<&VaultData, VaultError> {
        Ok(&self.loaded(path)?.data)
    }

    /// The profile called `name`, through the index (built here when missing).
    fn profile(&mut self, name: &str, path: &Path) -> Result<Option<Profile>, VaultError> {
        match self {
            Self::Located(located) => located.profile(name, path),
            Self::Parsed(loaded) => {
                let at = loaded.index().get(name).copied();
                Ok(at.and_then(|i| loaded.data.profiles.get(i)).cloned())
            }
        }
    }

    fn recipients(&self) -> &[String] {
        match self {
            Self::Located(located) => located.recipients(),
            Self::Parsed(loaded) => &loaded.data.recipients,
        }
    }
}

impl From<Parsed> for Content {
    fn from(parsed: Parsed) -> Self {
        match parsed {
            Parsed::Whole(data) => Self::parsed(data),
            Parsed::Located(located) => Self::Located(located),
        }
    }
}

fn fingerprint(path: &Path) -> Option<(u64, u64, i64, i64)> {
    fs::metadata(path).ok().map(|m| fingerprint_of(&m))
}

/// (inode, size, mtime) of a file.
fn fingerprint_of(meta: &fs::Metadata) -> (u64, u64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec())
}

#[derive(Default)]
struct LeaseState {
    holders: usize,
    file: Option<File>,
}

/// A held write lock on the vault; shared by every task of this process, released on drop.
pub struct Lease {
    state: Arc<Mutex<LeaseState>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = lock_ignoring_poison(&self.state);
        state.holders = state.holders.saturating_sub(1);
        if state.holders == 0 {
            // Closing the file releases the advisory lock.
            state.file = None;
        }
    }
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long a writer waits for another process's lock before giving up.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);

/// The opened vault. Reads reload when another process changed the file; writes take the
/// lock, reload, apply the change, and save atomically.
pub struct Store {
    path: PathBuf,
    unlock: Unlock,
    sealing: Mutex<Sealing>,
    snapshot: Mutex<Snapshot>,
    lease: Arc<Mutex<LeaseState>>,
    lock_wait: Duration,
    /// Profiles whose newer tokens were kept over an older file (see [`super::rollback`]) and
    /// are not yet written back.
    kept: Mutex<Vec<String>>,
}

impl Store {
    /// Opens and decrypts the vault at `path`.
    pub fn open(path: &Path, unlock: Unlock) -> Result<Self, VaultError> {
        let (snapshot, sealing) = Opened::at(path)?.read(&unlock, path)?;
        Ok(Self::with_content(path, unlock, sealing, snapshot))
    }

    /// A store whose file at `path` is what `snapshot` saw.
    fn with_content(path: &Path, unlock: Unlock, sealing: Sealing, snapshot: Snapshot) -> Self {
        Self {
            path: path.to_path_buf(),
            unlock,
            sealing: Mutex::new(sealing),
            snapshot: Mutex::new(snapshot),
            lease: Arc::default(),
            lock_wait: DEFAULT_LOCK_WAIT,
            kept: Mutex::default(),
        }
    }

    /// Creates a new vault; refuses to replace an existing one.
    pub fn create(
        path: &Path,
        mut data: VaultData,
        sealing: Sealing,
        unlock: Unlock,
    ) -> Result<Self, VaultError> {
        let ciphertext = write_new(path, &mut data, &sealing)?;
        let snapshot = Snapshot::written(path, &ciphertext, data);
        Ok(Self::with_content(path, unlock, sealing, snapshot))
    }

    /// How long writers wait for another process's lock.
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// The public recipients of the key this store was opened with; empty for a passphrase.
    pub fn unlocking_recipients(&self) -> Vec<String> {
        match &self.unlock {
            Unlock::Identity(file) => file.recipients.clone(),
            Unlock::Passphrase(_) => Vec::new(),
        }
    }

    /// Whether the vault is sealed with a passphrase rather than to recipients.
    pub fn is_passphrase_vault(&self) -> bool {
        matches!(*lock_ignoring_poison(&self.sealing), Sealing::Passphrase(_))
    }

    /// The vault file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current content, reloaded if another process changed the file.
    pub fn snapshot(&self) -> Result<VaultData, VaultError> {
        self.read(VaultData::clone)
    }

    /// Reads the freshest content without copying it.
    pub fn read<T>(&self, f: impl FnOnce(&VaultData) -> T) -> Result<T, VaultError> {
        let mut snap = lock_ignoring_poison(&self.snapshot);
        self.refresh_snapshot(&mut snap)?;
        Ok(f(snap.content.data(&self.path)?))
    }

    /// One profile from the freshest content, without cloning the rest.
    pub fn profile(&self, name: &str) -> Result<Option<Profile>, VaultError> {
        let mut snap = lock_ignoring_poison(&self.snapshot);
        self.refresh_snapshot(&mut snap)?;
        snap.content.profile(name, &self.path)
    }

    /// The content, only when the file changed since this store last read or wrote it.
    pub fn reload_if_changed(&self) -> Result<Option<VaultData>, VaultError> {
        let mut snap = lock_ignoring_poison(&self.snapshot);
        let changed = self.refresh_snapshot(&mut snap)?;
        if !changed {
            return Ok(None);
        }
        Ok(Some(snap.content.data(&self.path)?.clone()))
    }

    /// Re-reads the file; returns whether it differed from what this store last saw.
    fn refresh_snapshot(&self, snap: &mut Snapshot) -> Result<bool, VaultError> {
        let now = fingerprint(&self.path);
        if now.is_some() && now == snap.fingerprint {
            return Ok(false);
        }
        let opened = Opened::at(&self.path)?;
        if opened.stamp == snap.stamp {
            snap.fingerprint = opened.fingerprint;
            return Ok(false);
        }
        let (mut snapshot, sealing) = opened.read(&self.unlock, &self.path)?;
        let kept = Self::keep_newer_tokens(snap, &mut snapshot, &self.path)?;
        if !kept.is_empty() {
            tracing::warn!(profiles = ?kept, "the vault file holds older tokens than this process saw: kept the newer ones");
            lock_ignoring_poison(&self.kept).extend(kept);
        }
        *lock_ignoring_poison(&self.sealing) = sealing;
        *snap = snapshot;
        Ok(true)
    }

    /// Keeps the tokens of `old` that are newer than those of `new` (see
    /// [`super::rollback`]); the file is parsed whole only when the two differ in tokens.
    fn keep_newer_tokens(
        old: &mut Snapshot,
        new: &mut Snapshot,
        path: &Path,
    ) -> Result<Vec<String>, VaultError> {
        let ours = old.content.data(path)?;
        let theirs = new.content.loaded(path)?;
        let kept = super::rollback::keep_newer_tokens(ours, &mut theirs.data);
        if !kept.is_empty() {
            theirs.index = None;
            theirs.text = None;
        }
        Ok(kept)
    }

    /// Writes back the newer tokens kept over an older file, if any; returns their profiles.
    pub fn write_back_kept(&self) -> Result<Vec<String>, VaultError> {
        let kept = std::mem::take(&mut *lock_ignoring_poison(&self.kept));
        if kept.is_empty() {
            return Ok(kept);
        }
        match self.update(|_| Ok::<(), std::convert::Infallible>(())) {
            Ok(_) => Ok(kept),
            Err(e) => {
                lock_ignoring_poison(&self.kept).extend(kept);
                Err(e)
            }
        }
    }

    /// Takes the cross-process write lock, waiting up to the store's lock wait.
    /// Tasks of one process share it; the process that takes it first sweeps dead writers' temp
    /// files.
    pub fn lease(&self) -> Result<Lease, VaultError> {
        let lock_file = lock_path(&self.path);
        let deadline = Instant::now() + self.lock_wait;
        loop {
            {
                let mut state = lock_ignoring_poison(&self.lease);
                if state.holders > 0 {
                    state.holders += 1;
                    return Ok(Lease {
                        state: self.lease.clone(),
                    });
                }
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .mode(0o600)
                    .open(&lock_file)
                    .map_err(io_err("open lock file", &lock_file))?;
                match file.try_lock() {
                    Ok(()) => {
                        state.holders = 1;
                        state.file = Some(file);
                        self.sweep_dead_temp_files();
                        return Ok(Lease {
                            state: self.lease.clone(),
                        });
                    }
                    Err(std::fs::TryLockError::WouldBlock) => {}
                    Err(std::fs::TryLockError::Error(e)) => {
                        return Err(io_err("lock", &lock_file)(e));
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(VaultError::Locked(lock_file));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Removes temp files that killed writers left behind. Called when this process takes the
    /// lock, and every writer of this vault holds the lock while its temp file exists, so any
    /// temp file seen then belongs to a process that died mid-save; while the lock stays
    /// taken, no other process can leave one. They hold only ciphertext.
    fn sweep_dead_temp_files(&self) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
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

    /// Applies `change` to the freshest content under the write lock and saves atomically.
    /// When `change` fails nothing is written.
    pub fn update<T, E>(
        &self,
        change: impl FnOnce(&mut VaultData) -> Result<T, E>,
    ) -> Result<Result<T, E>, VaultError> {
        let _lease = self.lease()?;
        let mut snap = lock_ignoring_poison(&self.snapshot);
        self.refresh_snapshot(&mut snap)?;
        let mut data = snap.content.data(&self.path)?.clone();
        let outcome = match change(&mut data) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let ciphertext = seal(&data, &self.sealing_for(&data))?;
        write_atomic(&self.path, &ciphertext, true)?;
        *snap = Snapshot::written(&self.path, &ciphertext, data);
        Ok(Ok(outcome))
    }

    /// Applies each change to the profile it names, under the write lock, and saves atomically;
    /// a change whose profile is gone gets `None`. Only the changed profiles are rendered
    /// again: the worker saves a token at a time, and rendering every profile for each would
    /// cost more than the rest of the save at a few hundred profiles. Nothing is written when
    /// no profile changed, and when the save fails the store keeps what it had.
    pub fn update_profiles<T, F>(
        &self,
        changes: impl IntoIterator<Item = (String, F)>,
    ) -> Result<Vec<Option<T>>, VaultError>
    where
        F: FnOnce(&mut Profile) -> T,
    {
        let _lease = self.lease()?;
        let mut snap = lock_ignoring_poison(&self.snapshot);
        self.refresh_snapshot(&mut snap)?;
        let loaded = snap.content.loaded(&self.path)?;
        let mut edited = BTreeMap::new();
        let mut outcomes = Vec::new();
        for (name, change) in changes {
            let found = loaded.index().get(&name).copied();
            let Some((at, stored)) = found.and_then(|at| Some((at, loaded.data.profiles.get(at)?)))
            else {
                outcomes.push(None);
                continue;
            };
            let profile = edited.entry(at).or_insert_with(|| stored.clone());
            outcomes.push(Some(change(profile)));
        }
        if edited.is_empty() {
            return Ok(outcomes);
        }
        let parts = edited
            .iter()
            .map(|(&at, profile)| Ok((at, Text::profile(profile)?)))
            .collect::<Result<Vec<_>, VaultError>>()?;
        let sealing = self.sealing_for(&loaded.data);
        let text = loaded.text()?;
        let ciphertext = crypto::encrypt(text.join(&parts).as_bytes(), &sealing)?;
        write_atomic(&self.path, &ciphertext, true)?;
        for (at, part) in parts {
            text.replace(at, part);
        }
        for (at, profile) in edited {
            if let Some(slot) = loaded.data.profiles.get_mut(at) {
                if slot.name != profile.name {
                    loaded.index = None;
                }
                *slot = profile;
            }
        }
        snap.rewritten(&self.path, &ciphertext);
        Ok(outcomes)
    }

    /// How to seal `data`: the recipient list inside the vault is the truth, as a change may
    /// add or remove some.
    fn sealing_for(&self, data: &VaultData) -> Sealing {
        match lock_ignoring_poison(&self.sealing).clone() {
            Sealing::Recipients(_) if !data.recipients.is_empty() => {
                Sealing::Recipients(data.recipients.clone())
            }
            sealing => sealing,
        }
    }
}

/// Writes a new vault file holding `data`, sealed as `sealing` (whose recipients it records);
/// refuses to replace an existing one. Returns the ciphertext written. `init` uses it directly:
/// a vault for a team need not be openable by the one who creates it.
pub fn write_new(
    path: &Path,
    data: &mut VaultData,
    sealing: &Sealing,
) -> Result<Vec<u8>, VaultError> {
    if path.exists() {
        return Err(VaultError::AlreadyExists(path.to_path_buf()));
    }
    if let Sealing::Recipients(list) = sealing {
        data.recipients.clone_from(list);
    }
    let ciphertext = seal(data, sealing)?;
    write_atomic(path, &ciphertext, false)?;
    Ok(ciphertext)
}

/// Parses decrypted text, and works out how to seal the next save.
fn decode(
    plaintext: zeroize::Zeroizing<Vec<u8>>,
    unlock: &Unlock,
    path: &Path,
) -> Result<(Content, Sealing), VaultError> {
    let content = Content::from(parse::read(plaintext, path)?);
    let sealing = match unlock {
        Unlock::Passphrase(p) => Sealing::Passphrase(SecretString::clone(p)),
        Unlock::Identity(file) => {
            if content.recipients().is_empty() {
                // A file encrypted elsewhere (e.g. by the age CLI) without a recipient list:
                // seal it again to the key that opened it.
                Sealing::Recipients(file.recipients.clone())
            } else {
                Sealing::Recipients(content.recipients().to_vec())
            }
        }
    };
    Ok((content, sealing))
}

/// Renders `data` whole and encrypts it. Rendering the document in one piece is faster than
/// in parts ([`Text`]), which only pay when later saves change a few profiles.
fn seal(data: &VaultData, sealing: &Sealing) -> Result<Vec<u8>, VaultError> {
    let text = zeroize::Zeroizing::new(
        toml::to_string(data).map_err(|e| VaultError::Encrypt(e.to_string()))?,
    );
    crypto::encrypt(text.as_bytes(), sealing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::crypto::IdentityFile;

    fn new_store(dir: &Path) -> (Store, PathBuf) {
        let key = dir.join("key.txt");
        let id = IdentityFile::generate(&key).unwrap();
        let recipients = id.recipients.clone();
        let path = dir.join("v/vault.age");
        let store = Store::create(
            &path,
            VaultData::default(),
            Sealing::Recipients(recipients),
            Unlock::Identity(id),
        )
        .unwrap();
        (store, key)
    }

    /// Another handle on the vault of `store`, as another process would open it.
    fn second_handle(store: &Store, key: &Path) -> Store {
        Store::open(
            store.path(),
            Unlock::Identity(IdentityFile::load(key).unwrap()),
        )
        .unwrap()
    }

    #[test]
    fn saves_are_private_and_keep_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = new_store(dir.path());
        let before = fs::read(store.path()).unwrap();
        store
            .update(|d| {
                d.recipients.push(d.recipients[0].clone());
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
        let mode = fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(store.path().parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(fs::read(backup_path(store.path())).unwrap(), before);
        let leftovers: Vec<_> = fs::read_dir(store.path().parent().unwrap())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_backup_hard_linked_to_the_vault_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = new_store(dir.path());
        let backup = backup_path(store.path());
        fs::hard_link(store.path(), &backup).unwrap();
        let before = fs::read(store.path()).unwrap();
        store
            .update(|d| {
                d.recipients.push(d.recipients[0].clone());
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
        let names: Vec<String> = fs::read_dir(store.path().parent().unwrap())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e == "tmp")),
            "temp file left: {names:?}"
        );
        assert_eq!(
            fs::read(&backup).unwrap(),
            before,
            "backup is the old vault"
        );
        assert_ne!(fs::read(store.path()).unwrap(), before);
    }

    #[test]
    fn one_profile_reads_follow_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let (store, key) = new_store(dir.path());
        assert!(store.profile("a").unwrap().is_none());
        store
            .update(|d| d.insert(named("a")).and_then(|()| d.insert(named("b"))))
            .unwrap()
            .unwrap();
        assert_eq!(store.profile("b").unwrap().unwrap().name, "b");
        store
            .update(|d| d.remove("a").map(|_| ()))
            .unwrap()
            .unwrap();
        assert!(store.profile("a").unwrap().is_none());
        assert_eq!(
            store.profile("b").unwrap().unwrap().name,
            "b",
            "b moved to 0"
        );
        // A change made by another process is seen too.
        let other = second_handle(&store, &key);
        other.update(|d| d.insert(named("c"))).unwrap().unwrap();
        assert_eq!(store.profile("c").unwrap().unwrap().name, "c");
    }

    #[test]
    fn failed_change_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = new_store(dir.path());
        let before = fs::read(store.path()).unwrap();
        let outcome = store
            .update(|d| {
                d.recipients.clear();
                Err::<(), _>("nope")
            })
            .unwrap();
        assert_eq!(outcome, Err("nope"));
        assert_eq!(fs::read(store.path()).unwrap(), before);
        assert!(!backup_path(store.path()).exists());
    }

    #[test]
    fn sees_changes_made_by_another_handle() {
        let dir = tempfile::tempdir().unwrap();
        let (store, key) = new_store(dir.path());
        let other = second_handle(&store, &key);
        other
            .update(|d| {
                d.recipients.push("age1extra".into());
                Ok::<_, ()>(())
            })
            .ok();
        // The bad recipient makes sealing fail: nothing changed on disk.
        assert_eq!(store.snapshot().unwrap().recipients.len(), 1);
        other
            .update(|d| {
                let first = d.recipients[0].clone();
                d.recipients.push(first);
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(store.snapshot().unwrap().recipients.len(), 2);
    }

    #[test]
    fn reload_reports_only_changes_made_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let (store, key) = new_store(dir.path());
        assert!(store.reload_if_changed().unwrap().is_none());
        store
            .update(|d| {
                d.recipients.push(d.recipients[0].clone());
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
        assert!(
            store.reload_if_changed().unwrap().is_none(),
            "own saves are known"
        );
        let other = second_handle(&store, &key);
        other
            .update(|d| {
                d.recipients.pop();
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(
            store.reload_if_changed().unwrap().unwrap().recipients.len(),
            1
        );
        assert!(store.reload_if_changed().unwrap().is_none());
    }

    #[test]
    fn the_same_encryption_under_a_new_inode_is_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let (store, key) = new_store(dir.path());
        let copy = dir.path().join("copy");
        fs::copy(store.path(), &copy).unwrap();
        fs::rename(&copy, store.path()).unwrap();
        assert!(store.reload_if_changed().unwrap().is_none(), "same stamp");
        // The same content encrypted again is another file: it is read.
        let other = second_handle(&store, &key);
        other.update(|_| Ok::<_, ()>(())).unwrap().unwrap();
        assert!(store.reload_if_changed().unwrap().is_some());
        assert!(
            read_head(store.path())
                .unwrap()
                .starts_with(b"age-encryption.org/v1")
        );
    }

    #[test]
    fn lock_is_shared_in_process_and_exclusive_across_handles() {
        let dir = tempfile::tempdir().unwrap();
        let (store, key) = new_store(dir.path());
        let first = store.lease().unwrap();
        let second = store.lease().unwrap();
        let other = second_handle(&store, &key).with_lock_wait(Duration::from_millis(100));
        assert!(matches!(other.lease(), Err(VaultError::Locked(_))));
        drop(first);
        assert!(matches!(other.lease(), Err(VaultError::Locked(_))));
        drop(second);
        assert!(other.lease().is_ok());
    }

    #[test]
    fn future_versions_and_bad_content_are_refused() {
        use super::parse::parse_vault;
        let p = Path::new("v.age");
        assert!(matches!(
            parse_vault(b"version = 2\n", p),
            Err(VaultError::FutureVersion { found: 2, .. })
        ));
        assert!(matches!(
            parse_vault(b"profile = 3\n", p),
            Err(VaultError::BadContent { .. })
        ));
        assert!(matches!(
            parse_vault(b"version = 1\n[[profile]]\nname = 5\n", p),
            Err(VaultError::BadContent { .. })
        ));
        assert!(parse_vault(b"version = 1\n", p).is_ok());
    }

    fn named(name: &str) -> Profile {
        use crate::vault::{Endpoints, Provider};
        Profile::new(
            name.into(),
            Provider::Factorial,
            Endpoints::at("https://api.factorialhr.com"),
            "c".into(),
            SecretString::from("s"),
            "urn:ietf:wg:oauth:2.0:oob".into(),
        )
    }

    /// A store holding profiles `a`, `b` and `c`, and a second handle on its file.
    fn three_profiles(dir: &Path) -> (Store, Store) {
        let (store, key) = new_store(dir);
        store
            .update(|d| {
                ["a", "b", "c"]
                    .into_iter()
                    .try_for_each(|n| d.insert(named(n)))
            })
            .unwrap()
            .unwrap();
        let other = second_handle(&store, &key);
        (store, other)
    }

    type Edit = Box<dyn FnOnce(&mut Profile) -> String>;

    fn edit(f: impl FnOnce(&mut Profile) + 'static) -> Edit {
        Box::new(move |p: &mut Profile| {
            f(p);
            p.notes.clone()
        })
    }

    /// The file decrypted, as text.
    fn plaintext(store: &Store) -> String {
        let bytes = fs::read(store.path()).unwrap();
        let text = crypto::decrypt(&bytes, &store.unlock, store.path()).unwrap();
        String::from_utf8(text.to_vec()).unwrap()
    }

    #[test]
    fn profile_changes_save_the_same_text_as_a_whole_save() {
        let dir = tempfile::tempdir().unwrap();
        let (store, other) = three_profiles(dir.path());
        let outcomes = store
            .update_profiles([
                ("b".to_string(), edit(|p| p.notes = "one".into())),
                ("gone".to_string(), edit(|_| {})),
                ("b".to_string(), edit(|p| p.notes.push_str(" two"))),
                ("c".to_string(), edit(|p| p.name = "z".into())),
            ])
            .unwrap();
        assert_eq!(
            outcomes,
            [
                Some("one".into()),
                None,
                Some("one two".into()),
                Some(String::new())
            ]
        );
        let held = store.snapshot().unwrap();
        assert_eq!(plaintext(&store), toml::to_string(&held).unwrap());
        // The rename reached the name index.
        assert!(store.profile("c").unwrap().is_none());
        assert_eq!(store.profile("z").unwrap().unwrap().name, "z");
        // Saved for every other reader too.
        assert_eq!(other.profile("b").unwrap().unwrap().notes, "one two");
        assert_eq!(other.snapshot().unwrap().profiles.len(), 3);
    }

    #[test]
    fn profile_changes_to_no_profile_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = three_profiles(dir.path());
        let before = fs::read(store.path()).unwrap();
        let outcomes = store
            .update_profiles([("gone".to_string(), edit(|_| {}))])
            .unwrap();
        assert_eq!(outcomes, [None]);
        assert_eq!(fs::read(store.path()).unwrap(), before);
    }

    #[test]
    fn profile_changes_keep_what_another_handle_saved_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let (store, other) = three_profiles(dir.path());
        store
            .update_profiles([("a".to_string(), edit(|p| p.notes = "mine".into()))])
            .unwrap();
        other
            .update_profiles([("b".to_string(), edit(|p| p.notes = "theirs".into()))])
            .unwrap();
        store
            .update_profiles([("a".to_string(), edit(|p| p.notes.push_str(" again")))])
            .unwrap();
        let data = other.snapshot().unwrap();
        let notes: Vec<&str> = data.profiles.iter().map(|p| p.notes.as_str()).collect();
        assert_eq!(notes, ["mine again", "theirs", ""]);
        assert_eq!(plaintext(&other), toml::to_string(&data).unwrap());
    }

    #[test]
    fn an_older_file_put_in_place_never_takes_back_newer_tokens() {
        use crate::vault::Token;
        use age::secrecy::ExposeSecret;
        let dir = tempfile::tempdir().unwrap();
        let (store, other) = three_profiles(dir.path());
        let token = |secret: &str, age: i64| Token {
            access_token: SecretString::from(secret.to_string()),
            refresh_token: Some(SecretString::from(format!("r-{secret}"))),
            token_type: "Bearer".into(),
            scope: None,
            obtained_at: chrono::Utc::now() - chrono::Duration::seconds(age),
            expires_at: None,
            refresh_expires_at: None,
        };
        let give = |store: &Store, t: Token| {
            store
                .update_profiles([("a".to_string(), move |p: &mut Profile| p.token = Some(t))])
                .unwrap();
        };
        give(&store, token("old", 60));
        let backup = dir.path().join("backup.age");
        fs::copy(store.path(), &backup).unwrap();
        give(&store, token("new", 1));
        // The backup restored over the live vault, as cp or git would: a new inode.
        let staged = dir.path().join("v/staged");
        fs::copy(&backup, &staged).unwrap();
        fs::rename(&staged, store.path()).unwrap();
        let seen = store.profile("a").unwrap().unwrap();
        assert_eq!(seen.token.unwrap().access_token.expose_secret(), "new");
        assert_eq!(store.write_back_kept().unwrap(), vec!["a".to_string()]);
        assert!(store.write_back_kept().unwrap().is_empty());
        let on_disk = other.profile("a").unwrap().unwrap();
        assert_eq!(on_disk.token.unwrap().access_token.expose_secret(), "new");
    }
}
