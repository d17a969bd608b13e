//! Vault errors, each phrased as what happened and what to do.

use std::path::PathBuf;

use super::location::Location;

/// Everything that can go wrong opening, reading or saving the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no vault at {0}: run `tokdeck init` first, or point --vault / TOKDECK_VAULT at it")]
    NotFound(Location),
    #[error(
        "cannot read {path}: {source}: check the permissions of the file and its folder (ls -ld {})",
        path.folder().unwrap_or(std::path::Path::new(".")).display()
    )]
    Unreadable {
        path: Location,
        #[source]
        source: std::io::Error,
    },
    #[error("a vault already exists at {0}: remove it first or choose another --vault")]
    AlreadyExists(Location),
    #[error("{0} changed while this save was under way: nothing was overwritten; try again")]
    Conflict(Location),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot decrypt {path}: {reason}: check --identity / --passphrase-file")]
    WrongKey { path: Location, reason: String },
    #[error("{path} is not a readable age file ({reason}): {}", restore_advice(path, *.backup))]
    Corrupt {
        path: Location,
        reason: String,
        /// Whether `<path>.bak` exists, so the advice can name it or say there is none.
        backup: bool,
    },
    #[error(
        "{path} uses vault format {found}, newer than this tokdeck understands ({supported}): upgrade tokdeck"
    )]
    FutureVersion {
        path: Location,
        found: i64,
        supported: u32,
    },
    #[error(
        "{path} decrypts but its content is invalid ({reason}): fix it by hand (age -d, edit, age -e), or {}",
        restore_advice(path, *.backup)
    )]
    BadContent {
        path: Location,
        reason: String,
        backup: bool,
    },
    #[error(
        "{path} is passphrase-protected: pass --passphrase-file FILE or run in a terminal to be asked"
    )]
    NeedsPassphrase { path: Location },
    #[error(
        "{path} is encrypted to age recipients: pass --identity FILE (or set TOKDECK_IDENTITY)"
    )]
    NeedsIdentity { path: Location },
    #[error("cannot read identity {path}: {reason}")]
    BadIdentity { path: PathBuf, reason: String },
    #[error("invalid recipient '{0}': use an age1... key or an ssh-ed25519 / ssh-rsa public key")]
    BadRecipient(String),
    #[error(
        "the vault names no recipients and none can be derived from the identity: add recipients"
    )]
    NoRecipients,
    #[error("cannot encrypt the vault: {0}")]
    Encrypt(String),
    #[error("the vault is being written by another tokdeck process ({0}): try again in a moment")]
    Locked(String),
    /// A secret store's refusal or failure, phrased as what to do.
    #[error("{0}")]
    Remote(String),
    #[error("{0}")]
    Rejected(String),
    /// A profile whose entry is sealed to readers this machine holds no key of
    /// ([`super::groups`]): `group` when it is a group's.
    #[error("{}", not_reader_advice(profile, path, group.as_deref()))]
    NotReader {
        path: Location,
        profile: String,
        group: Option<String>,
    },
    /// A vault this machine does not trust with its tokens ([`super::trust`]).
    #[error("{0}")]
    Untrusted(String),
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

/// The blocking pool did not run a piece of vault work to its end (through a
/// `StoreHandle`).
#[derive(Debug, thiserror::Error)]
pub enum Interrupted {
    /// The runtime is shutting down.
    #[error("the vault work was cut short: tokdeck is stopping")]
    Stopping,
    /// The work panicked: a defect, told as an error rather than taking its caller down.
    #[error(
        "the vault work ended unexpectedly (an internal error, in the log): check `tokdeck status`, then try again"
    )]
    Failed,
}

impl VaultError {
    /// A vault that should exist but cannot be seen: missing, or hidden by permissions
    /// (`Path::exists` says "no" for both, which sent people to `init`).
    /// A vault elsewhere than in a file is looked for when it is opened.
    pub fn check_exists(path: &Location) -> Result<(), Self> {
        match path.file() {
            Some(file) => std::fs::metadata(file)
                .map(|_| ())
                .map_err(Self::reading(path)),
            None => Ok(()),
        }
    }

    /// What a failure to read the vault at `path` means: missing, or unreadable.
    pub fn reading(path: &Location) -> impl Fn(std::io::Error) -> Self + use<> {
        let path = path.clone();
        move |source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Self::NotFound(path.clone())
            } else {
                Self::Unreadable {
                    path: path.clone(),
                    source,
                }
            }
        }
    }

    /// The file at `path` is no age file, or a damaged one. Whether a backup exists is for
    /// the caller that knows the files to say ([`Self::with_backup`]).
    pub(crate) fn corrupt(path: &Location, reason: String) -> Self {
        Self::Corrupt {
            path: path.clone(),
            reason,
            backup: false,
        }
    }

    /// The file at `path` decrypts, but not to a vault this build reads.
    pub(crate) fn bad_content(path: &Location, reason: String) -> Self {
        Self::BadContent {
            path: path.clone(),
            reason,
            backup: false,
        }
    }

    /// A damaged vault's error, told whether a backup exists to restore.
    pub(crate) fn with_backup(self, exists: bool) -> Self {
        match self {
            Self::Corrupt { path, reason, .. } => Self::Corrupt {
                path,
                reason,
                backup: exists,
            },
            Self::BadContent { path, reason, .. } => Self::BadContent {
                path,
                reason,
                backup: exists,
            },
            other => other,
        }
    }
}

/// What to do about a damaged vault: restore the backup tokdeck kept, or say there is none.
fn not_reader_advice(profile: &str, path: &Location, group: Option<&str>) -> String {
    match group {
        Some(group) => format!(
            "profile {profile} of {path} is sealed to group {group}, and no key here is one of its: ask a member of {group} to run `tokdeck recipients add --group {group} YOUR-KEY`"
        ),
        None => format!(
            "profile {profile} of {path} is sealed to the vault's members, and no key here is one of theirs (an operator's reads status only): ask a member to run `tokdeck recipients add YOUR-KEY`"
        ),
    }
}

fn restore_advice(path: &Location, backup: bool) -> String {
    if backup {
        match path {
            Location::File(file) => format!(
                "restore the previous version with `cp {0}.bak {0}`",
                file.display()
            ),
            Location::OpenBao(kv) => format!(
                "restore an earlier version: `bao kv metadata get {0}` lists them, `bao kv rollback -version=N {0}` restores one",
                kv.kv_name()
            ),
        }
    } else {
        "restore it from your own copy (git, backups; tokdeck kept no backup)".into()
    }
}

/// age's messages wrap names in Unicode isolation marks; people and snapshots want plain text.
pub(crate) fn clean_age_message(message: impl std::fmt::Display) -> String {
    message
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '\u{2068}' | '\u{2069}'))
        .collect::<String>()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_string()
}
