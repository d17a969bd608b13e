//! What the store last read or wrote, and how it tells whether the vault changed since: the
//! stored version and stamp, and the decrypted content, parsed as far as it was needed.

use std::collections::{BTreeMap, HashMap};

use age::secrecy::SecretString;

use std::io::Read as _;

use super::backend::{Changes, Ciphertext, Layout, Source, Stamp, Version};
use super::crypto::{self, Sealing, Unlock};
use super::error::VaultError;
use super::location::Location;
use super::model::{Profile, VaultData};
use super::parse::{self, Located, Parsed};
use super::text::Text;

/// Decrypts what `stored` holds: what the store then holds, and how to seal the next save. A
/// damaged vault's error says whether a previous version is there to restore.
pub(super) fn decrypt_snapshot(
    stored: Ciphertext,
    unlock: &Unlock,
    path: &Location,
    has_previous: bool,
) -> Result<(Snapshot, Sealing), VaultError> {
    let Ciphertext {
        stamp,
        version,
        source,
        layout,
    } = stored;
    let len = usize::try_from(stamp.len).unwrap_or(usize::MAX);
    let (source, entries) = match layout {
        Layout::Single => (source, None),
        Layout::Entries(changes) => {
            // The head is small, and written again as it is while only profiles change.
            let mut head = Vec::with_capacity(len);
            source
                .into_reader()
                .read_to_end(&mut head)
                .map_err(|source| VaultError::Unreadable {
                    path: path.clone(),
                    source,
                })?;
            let state = EntryState::new(changes, head.clone());
            (
                Source::Reader(Box::new(std::io::Cursor::new(head))),
                Some(state),
            )
        }
    };
    let decrypted = match source {
        Source::File(file) => crypto::decrypt_file(&file, len, unlock, path),
        Source::Reader(reader) => crypto::decrypt_from(
            std::io::BufReader::with_capacity(64 * 1024, reader),
            len,
            unlock,
            path,
        ),
    }
    .and_then(|plaintext| decode(plaintext, unlock, path));
    let (content, sealing) = decrypted.map_err(|e| e.with_backup(has_previous))?;
    let snapshot = Snapshot {
        stamp,
        content,
        version,
        entries,
    };
    Ok((snapshot, sealing))
}

/// What the store last read or wrote.
pub(super) struct Snapshot {
    pub(super) stamp: Stamp,
    pub(super) content: Content,
    /// The stored version when last read or written: while it is unchanged nobody replaced
    /// the vault, so it need not be read again.
    pub(super) version: Option<Version>,
    /// What was read of a vault laid out as entries; `None` for one in a single piece.
    pub(super) entries: Option<EntryState>,
}

/// What the store holds of a vault laid out as entries
/// ([`super::backend::entries`]): the content holds its head and the profiles loaded.
pub(super) struct EntryState {
    /// The descriptor's log, as last read or written.
    pub(super) changes: Changes,
    /// The head's ciphertext as stored: written again as it is while only profiles change,
    /// so other readers see the head unchanged.
    pub(super) head: Vec<u8>,
    /// The id and version of each profile loaded, by name.
    pub(super) slots: HashMap<String, Slot>,
    /// Whether every entry is loaded, so the content holds every profile this machine may
    /// read.
    pub(super) whole: bool,
    /// The ids of the entries a whole read found sealed to readers this machine holds no
    /// key of ([`crate::vault::groups`]): kept as they are by whoever writes every entry.
    pub(super) locked: std::collections::HashSet<String>,
}

/// Where a loaded profile's entry is, and the version read or written.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub(super) id: String,
    pub(super) version: u64,
}

impl EntryState {
    pub(super) fn new(changes: Changes, head: Vec<u8>) -> Self {
        Self {
            changes,
            head,
            slots: HashMap::new(),
            whole: false,
            locked: std::collections::HashSet::new(),
        }
    }
}

impl Snapshot {
    /// What this process just stored as `version`: `ciphertext`, sealing `data`.
    pub(super) fn written(version: Option<Version>, ciphertext: &[u8], data: VaultData) -> Self {
        Self {
            stamp: Stamp::of(ciphertext),
            content: Content::whole(data),
            version,
            entries: None,
        }
    }

    /// Records that this process just stored `ciphertext` as `version`, its content changed
    /// in place.
    pub(super) fn record_rewrite(&mut self, version: Option<Version>, ciphertext: &[u8]) {
        self.stamp = Stamp::of(ciphertext);
        self.version = version;
    }
}

/// The decrypted content, parsed as far as it was needed.
pub(super) enum Content {
    /// Profiles located but not parsed: reading one parses only it.
    Located(Located),
    Whole(Whole),
}

/// Every profile parsed, and what the store built from them when first needed.
pub(super) struct Whole {
    pub(super) data: VaultData,
    /// Profile name -> position in `data.profiles`, built by the first one-profile read
    /// after a change (the agent's `token` stays constant-time at thousands of profiles).
    pub(super) index: Option<HashMap<String, usize>>,
    /// The text of each part as last saved, built by the first save of single profiles
    /// after a read or a whole save: the next ones render only the profiles they change.
    pub(super) text: Option<Text>,
}

impl Whole {
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

    /// Applies each change to a copy of the profile it names: the copies changed, by
    /// position, and each change's outcome (`None` where no profile has the name).
    pub(super) fn edited<T, F>(
        &mut self,
        changes: &mut [(String, F)],
    ) -> (BTreeMap<usize, Profile>, Vec<Option<T>>)
    where
        F: FnMut(&mut Profile) -> T,
    {
        let mut edited = BTreeMap::new();
        let mut outcomes = Vec::with_capacity(changes.len());
        for (name, change) in changes.iter_mut() {
            let found = self.index().get(name.as_str()).copied();
            let Some((at, stored)) = found.and_then(|at| Some((at, self.data.profiles.get(at)?)))
            else {
                outcomes.push(None);
                continue;
            };
            let profile = edited.entry(at).or_insert_with(|| stored.clone());
            outcomes.push(Some(change(profile)));
        }
        (edited, outcomes)
    }

    /// Puts the profiles [`Whole::edited`] changed in their places, once saved.
    pub(super) fn put_edited(&mut self, edited: BTreeMap<usize, Profile>) {
        for (at, profile) in edited {
            if let Some(slot) = self.data.profiles.get_mut(at) {
                if slot.name != profile.name {
                    self.index = None;
                }
                *slot = profile;
            }
        }
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
    pub(super) fn whole(data: VaultData) -> Self {
        Self::Whole(Whole {
            data,
            index: None,
            text: None,
        })
    }

    /// Every profile, parsed now when they were only located.
    pub(super) fn parsed_whole(&mut self, path: &Location) -> Result<&mut Whole, VaultError> {
        match self {
            Self::Located(located) => {
                *self = Self::whole(located.parse_all(path)?);
                self.parsed_whole(path)
            }
            Self::Whole(whole) => Ok(whole),
        }
    }

    pub(super) fn data(&mut self, path: &Location) -> Result<&VaultData, VaultError> {
        Ok(&self.parsed_whole(path)?.data)
    }

    /// The profile called `name`, through the index (built here when missing).
    pub(super) fn profile(
        &mut self,
        name: &str,
        path: &Location,
    ) -> Result<Option<Profile>, VaultError> {
        match self {
            Self::Located(located) => located.profile(name, path),
            Self::Whole(whole) => {
                let at = whole.index().get(name).copied();
                Ok(at.and_then(|i| whole.data.profiles.get(i)).cloned())
            }
        }
    }

    /// The profiles' names.
    pub(super) fn names(&self) -> Vec<&str> {
        match self {
            Self::Located(located) => located.names().collect(),
            Self::Whole(whole) => whole
                .data
                .profiles
                .iter()
                .map(|p| p.name.as_str())
                .collect(),
        }
    }

    /// The members' secret, and the mark of the one it replaced.
    pub(super) fn members_secret(&self) -> (Option<&SecretString>, Option<&str>) {
        match self {
            Self::Located(located) => located.members_secret(),
            Self::Whole(whole) => (
                whole.data.members_secret.as_ref(),
                whole.data.members_secret_replaces.as_deref(),
            ),
        }
    }

    pub(super) fn recipients(&self) -> &[String] {
        match self {
            Self::Located(located) => located.recipients(),
            Self::Whole(whole) => &whole.data.recipients,
        }
    }

    /// The head's operators and groups (a located text has neither: its head is plain).
    pub(super) fn divisions(&self) -> (&[String], &[crate::vault::model::Group]) {
        match self {
            Self::Located(_) => (&[], &[]),
            Self::Whole(whole) => (&whole.data.operators, &whole.data.groups),
        }
    }
}

impl From<Parsed> for Content {
    fn from(parsed: Parsed) -> Self {
        match parsed {
            Parsed::Whole(data) => Self::whole(data),
            Parsed::Located(located) => Self::Located(located),
        }
    }
}

/// Parses decrypted text, and works out how to seal the next save.
pub(super) fn decode(
    plaintext: zeroize::Zeroizing<Vec<u8>>,
    unlock: &Unlock,
    path: &Location,
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
