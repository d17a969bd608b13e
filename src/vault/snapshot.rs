//! What the store last read or wrote, and how it tells whether the file changed since: the
//! file's stamp and fingerprint, and the decrypted content, parsed as far as it was needed.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use age::secrecy::SecretString;

use super::crypto::{self, Sealing, Unlock};
use super::error::VaultError;
use super::file::backup_path;
use super::model::{Profile, VaultData};
use super::parse::{self, Located, Parsed};
use super::text::Text;

/// How many of the file's first bytes tell one encryption of it from another.
const STAMP_BYTES: u64 = 16 * 1024;

/// What tells one encryption of the vault from another: the file's length and its first bytes,
/// which hold the age header. Every encryption draws a new random file key (and an ephemeral
/// key or salt for each recipient), so two files with the same header hold the same content:
/// comparing stamps tells a save from a touch without keeping or reading megabytes.
#[derive(PartialEq, Eq)]
pub(super) struct Stamp {
    pub(super) len: u64,
    pub(super) head: Vec<u8>,
}

impl Stamp {
    pub(super) fn of(ciphertext: &[u8]) -> Self {
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
pub(super) struct Opened {
    pub(super) file: File,
    pub(super) stamp: Stamp,
    pub(super) fingerprint: Option<(u64, u64, i64, i64)>,
}

impl Opened {
    pub(super) fn at(path: &Path) -> Result<Self, VaultError> {
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

    /// Decrypts the whole file: what the store then holds, and how to seal the next save. A
    /// damaged file's error says whether a backup is there to restore.
    pub(super) fn read(
        self,
        unlock: &Unlock,
        path: &Path,
    ) -> Result<(Snapshot, Sealing), VaultError> {
        self.decrypt(unlock, path)
            .map_err(|e| e.with_backup(backup_path(path).exists()))
    }

    pub(super) fn decrypt(
        mut self,
        unlock: &Unlock,
        path: &Path,
    ) -> Result<(Snapshot, Sealing), VaultError> {
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
pub(super) struct Snapshot {
    pub(super) stamp: Stamp,
    pub(super) content: Content,
    /// (inode, size, mtime) of the file when last read or written: an unchanged fingerprint
    /// means nobody replaced the file, so it need not be read again.
    pub(super) fingerprint: Option<(u64, u64, i64, i64)>,
}

impl Snapshot {
    /// What this process just wrote to `path`: `ciphertext`, sealing `data`.
    pub(super) fn written(path: &Path, ciphertext: &[u8], data: VaultData) -> Self {
        Self {
            stamp: Stamp::of(ciphertext),
            content: Content::parsed(data),
            fingerprint: fingerprint(path),
        }
    }

    /// Records that this process just wrote `ciphertext` to `path`, its content changed in
    /// place.
    pub(super) fn rewritten(&mut self, path: &Path, ciphertext: &[u8]) {
        self.stamp = Stamp::of(ciphertext);
        self.fingerprint = fingerprint(path);
    }
}

/// The decrypted content, parsed as far as it was needed.
pub(super) enum Content {
    /// Profiles located but not parsed: reading one parses only it.
    Located(Located),
    Parsed(Loaded),
}

/// Every profile parsed, and what the store built from them when first needed.
pub(super) struct Loaded {
    pub(super) data: VaultData,
    /// Profile name -> position in `data.profiles`, built by the first one-profile read
    /// after a change (the agent's `token` stays constant-time at thousands of profiles).
    pub(super) index: Option<HashMap<String, usize>>,
    /// The text of each part as last saved, built by the first save of single profiles
    /// after a read or a whole save: the next ones render only the profiles they change.
    pub(super) text: Option<Text>,
}

impl Loaded {
    pub(super) fn index(&mut self) -> &HashMap<String, usize> {
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
    pub(super) fn text(&mut self) -> Result<&mut Text, VaultError> {
        let text = match self.text.take() {
            Some(text) => text,
            None => Text::of(&self.data)?,
        };
        Ok(self.text.insert(text))
    }
}

impl Content {
    pub(super) fn parsed(data: VaultData) -> Self {
        Self::Parsed(Loaded {
            data,
            index: None,
            text: None,
        })
    }

    /// Every profile, parsed now when they were only located.
    pub(super) fn loaded(&mut self, path: &Path) -> Result<&mut Loaded, VaultError> {
        match self {
            Self::Located(located) => {
                *self = Self::parsed(located.parse_all(path)?);
                self.loaded(path)
            }
            Self::Parsed(loaded) => Ok(loaded),
        }
    }

    pub(super) fn data(&mut self, path: &Path) -> Result<&VaultData, VaultError> {
        Ok(&self.loaded(path)?.data)
    }

    /// The profile called `name`, through the index (built here when missing).
    pub(super) fn profile(
        &mut self,
        name: &str,
        path: &Path,
    ) -> Result<Option<Profile>, VaultError> {
        match self {
            Self::Located(located) => located.profile(name, path),
            Self::Parsed(loaded) => {
                let at = loaded.index().get(name).copied();
                Ok(at.and_then(|i| loaded.data.profiles.get(i)).cloned())
            }
        }
    }

    pub(super) fn recipients(&self) -> &[String] {
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

pub(super) fn fingerprint(path: &Path) -> Option<(u64, u64, i64, i64)> {
    fs::metadata(path).ok().map(|m| fingerprint_of(&m))
}

/// (inode, size, mtime) of a file.
pub(super) fn fingerprint_of(meta: &fs::Metadata) -> (u64, u64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec())
}

/// Parses decrypted text, and works out how to seal the next save.
pub(super) fn decode(
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
