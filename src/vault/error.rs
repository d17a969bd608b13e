//! Vault errors, each phrased as what happened and what to do.

use std::path::PathBuf;

/// Everything that can go wrong opening, reading or saving the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no vault at {0}: run `tokdeck init` first, or point --vault / TOKDECK_VAULT at it")]
    NotFound(PathBuf),
    #[error("a vault already exists at {0}: remove it first or choose another --vault")]
    AlreadyExists(PathBuf),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot decrypt {path}: {reason}: check --identity / --passphrase-file")]
    WrongKey { path: PathBuf, reason: String },
    #[error("{path} is not a readable age file ({reason}): restore it from {path}.bak")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{path} uses vault format {found}, newer than this tokdeck understands ({supported}): upgrade tokdeck"
    )]
    FutureVersion {
        path: PathBuf,
        found: i64,
        supported: u32,
    },
    #[error(
        "{path} decrypts but its content is invalid ({reason}): fix it with `age -d`, or restore {path}.bak"
    )]
    BadContent { path: PathBuf, reason: String },
    #[error(
        "{path} is passphrase-protected: pass --passphrase-file FILE or run in a terminal to be asked"
    )]
    NeedsPassphrase { path: PathBuf },
    #[error(
        "{path} is encrypted to age recipients: pass --identity FILE (or set TOKDECK_IDENTITY)"
    )]
    NeedsIdentity { path: PathBuf },
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
    #[error(
        "the vault is being written by another tokdeck process ({0} is locked): try again in a moment"
    )]
    Locked(PathBuf),
    #[error("{0}")]
    Rejected(String),
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
