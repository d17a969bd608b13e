//! Which vault this machine trusts with its tokens. age gives confidentiality, not
//! authenticity: whoever may write the store (an OpenBao operator, a CI token, a removed
//! member whose policy stayed, a `git push`) and knows a member's public key, which is public
//! by design, can plant a vault that member opens. So each machine pins, in its state folder,
//! what it accepted of each vault: the recipients, and the mark (a SHA-256) of the members'
//! secret, a random value inside the vault that only those who can open it know.
//!
//! - A vault without the pinned secret was made by someone who could not open the real one:
//!   nothing of it is used (not its tokens, nor its endpoints or settings).
//! - A vault whose recipients grew since is refused until a person accepts the new ones
//!   (`tokdeck recipients accept`): saving into it would hand the next tokens to them.
//! - A member who removes a recipient draws a new secret and records the mark of the old one,
//!   so the removed key cannot plant a vault for machines that have seen the change.
//!
//! The first vault a machine opens at a location is trusted as found; so is the first secret
//! a vault gets, which an older vault receives at its first save.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret, SecretString};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::crypto::{Sealing, canonical_recipient};
use super::error::VaultError;
use super::location::Location;
use super::model::VaultData;
use super::snapshot::Content;

/// What a vault shows of its membership, as decrypted.
#[derive(Debug, Clone, Copy)]
pub struct Membership<'a> {
    /// The recipients it is sealed to (the opening key's when it lists none).
    pub recipients: &'a [String],
    /// Its operators and groups, who read its head too ([`super::groups`]).
    pub operators: &'a [String],
    pub groups: &'a [super::model::Group],
    pub secret: Option<&'a SecretString>,
    /// The mark of the secret `secret` replaced, when a member changed it.
    pub replaces: Option<&'a str>,
}

/// What this machine accepted of one vault.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    /// The vault's address, for a person reading the file.
    pub location: String,
    /// Canonical recipients.
    pub recipients: BTreeSet<String>,
    /// The mark of the members' secret; `None` while the vault had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_mark: Option<String>,
}

impl Accepted {
    /// What accepting `seen` at `location` pins.
    fn of(location: &str, seen: Membership<'_>) -> Self {
        Self {
            location: location.to_string(),
            recipients: seen.readers(),
            secret_mark: seen.secret.map(mark),
        }
    }
}

/// How a vault compares with what this machine accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Nothing to object to; `next` is what to pin from now on (the same when nothing moved).
    Trusted { next: Accepted },
    /// Its secret is not the one accepted, nor a member's replacement of it.
    Foreign,
    /// Sealed to recipients this machine never accepted.
    NewRecipients { added: Vec<String> },
}

/// The mark of a members' secret: what a pin holds, never the secret itself.
pub fn mark(secret: &SecretString) -> String {
    crate::display::hex(&Sha256::digest(secret.expose_secret().as_bytes()))
}

/// A new members' secret: 32 random bytes.
pub fn new_secret() -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::from(base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes))
}

fn canonical_set(recipients: &[String]) -> BTreeSet<String> {
    recipients
        .iter()
        .map(|r| canonical_recipient(r).unwrap_or_else(|_| r.trim().to_string()))
        .collect()
}

/// Judges `seen` at `location` against `accepted` (`None`: never opened here before).
pub fn judge(accepted: Option<&Accepted>, seen: Membership<'_>, location: &str) -> Judgement {
    let next = Accepted::of(location, seen);
    let Some(accepted) = accepted else {
        return Judgement::Trusted { next };
    };
    if let Some(pinned) = &accepted.secret_mark {
        let same = next.secret_mark.as_ref() == Some(pinned);
        let replaced_by_member = seen.secret.is_some() && seen.replaces == Some(pinned.as_str());
        if !same && !replaced_by_member {
            return Judgement::Foreign;
        }
    }
    let added: Vec<String> = next
        .recipients
        .difference(&accepted.recipients)
        .cloned()
        .collect();
    if !added.is_empty() {
        return Judgement::NewRecipients { added };
    }
    Judgement::Trusted { next }
}

/// What `content` shows of the vault's membership; `own` stands in for a recipient list it
/// lacks (a vault sealed by the age CLI is sealed to the key that opened it).
pub(super) fn membership<'a>(content: &'a Content, own: &'a [String]) -> Membership<'a> {
    let (secret, replaces) = content.members_secret();
    let (operators, groups) = content.divisions();
    Membership {
        operators,
        groups,
        ..Membership::listing(content.recipients(), own, secret, replaces)
    }
}

/// The same of `data`, as this process is about to write it.
pub(super) fn membership_of<'a>(data: &'a VaultData, own: &'a [String]) -> Membership<'a> {
    let (secret, replaces) = (
        data.members_secret.as_ref(),
        data.members_secret_replaces.as_deref(),
    );
    Membership {
        operators: &data.operators,
        groups: &data.groups,
        ..Membership::listing(&data.recipients, own, secret, replaces)
    }
}

impl<'a> Membership<'a> {
    /// A vault listing `listed` as its recipients, or sealed to `own` when it lists none.
    fn listing(
        listed: &'a [String],
        own: &'a [String],
        secret: Option<&'a SecretString>,
        replaces: Option<&'a str>,
    ) -> Self {
        Self {
            recipients: if listed.is_empty() { own } else { listed },
            operators: &[],
            groups: &[],
            secret,
            replaces,
        }
    }

    /// Everyone the vault's head is sealed to, canonical.
    fn readers(&self) -> BTreeSet<String> {
        let mut all = canonical_set(self.recipients);
        all.extend(canonical_set(self.operators));
        for group in self.groups {
            all.extend(canonical_set(&group.recipients));
        }
        all
    }
}

/// Gives a vault sealed to recipients its members' secret when it has none yet; `true` when
/// it did.
pub(super) fn give_members_secret(data: &mut VaultData, sealing: &Sealing) -> bool {
    if data.members_secret.is_some() || !matches!(sealing, Sealing::Recipients(_)) {
        return false;
    }
    data.members_secret = Some(new_secret());
    data.version = data.version.max(super::model::FORMAT_VERSION);
    true
}

/// Where this machine keeps what it accepted, one small file per vault.
#[derive(Debug, Clone)]
pub struct Pins {
    dir: PathBuf,
}

impl Pins {
    /// Pins under `state_dir/trusted`.
    pub fn in_dir(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("trusted"),
        }
    }

    /// The file for the vault whose canonical address is `location`.
    fn file(&self, location: &str) -> PathBuf {
        let digest = Sha256::digest(location.as_bytes());
        let name = crate::display::hex(digest.get(..12).unwrap_or_default());
        self.dir.join(format!("{name}.toml"))
    }

    /// What was accepted of `location`, if anything. A pin that cannot be read is an error:
    /// treating it as absent would trust whatever the store holds now.
    pub fn accepted(&self, location: &str) -> Result<Option<Accepted>, VaultError> {
        let file = self.file(location);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(super::disk::io_err("read", &file)(e)),
        };
        toml::from_str(&text).map(Some).map_err(|_| {
            VaultError::Rejected(format!(
                "{} is damaged: delete it to trust the vault {location} as it is now",
                file.display()
            ))
        })
    }

    /// Records `accepted` (atomically, 0600).
    pub fn record(&self, accepted: &Accepted) -> Result<(), VaultError> {
        let file = self.file(&accepted.location);
        let text = toml::to_string(accepted).map_err(|e| VaultError::Encrypt(e.to_string()))?;
        super::disk::write_atomic(&file, text.as_bytes(), false)
    }
}

/// This machine's pin of one vault, as an open store holds it.
#[derive(Debug)]
pub struct Pinned {
    pins: Pins,
    name: String,
    accepted: Option<Accepted>,
}

impl Pinned {
    /// What this machine accepted of the vault at `location`.
    pub fn load(pins: Pins, location: &Location) -> Result<Self, VaultError> {
        let name = location.canonical();
        let accepted = pins.accepted(&name)?;
        Ok(Self {
            pins,
            name,
            accepted,
        })
    }

    /// Lets in a vault read from the store, or refuses it (nothing of it may be used);
    /// records what is trusted from now on.
    pub fn admit(&mut self, seen: Membership<'_>, location: &Location) -> Result<(), VaultError> {
        let judgement = judge(self.accepted.as_ref(), seen, &self.name);
        if let Some(refused) = refusal(location, &judgement) {
            tracing::error!(vault = %location, "refused a vault this machine does not trust");
            return Err(refused);
        }
        if let Judgement::Trusted { next } = judgement {
            self.keep(next);
        }
        Ok(())
    }

    /// Records what this machine wrote itself.
    pub fn record_own_write(&mut self, seen: Membership<'_>) {
        self.keep(Accepted::of(&self.name, seen));
    }

    /// Accepts whatever `seen` is, as `recipients accept` does after a person agreed.
    pub fn accept(&mut self, seen: Membership<'_>) -> Result<(), VaultError> {
        let next = Accepted::of(&self.name, seen);
        self.pins.record(&next)?;
        self.accepted = Some(next);
        Ok(())
    }

    /// What `seen` changes against what was accepted: recipients added and removed, and
    /// whether the secret is another one.
    pub fn changes(&self, seen: Membership<'_>) -> Changes {
        let now = seen.readers();
        let accepted = self.accepted.clone().unwrap_or_default();
        Changes {
            added: now.difference(&accepted.recipients).cloned().collect(),
            removed: accepted.recipients.difference(&now).cloned().collect(),
            foreign: matches!(judge(Some(&accepted), seen, &self.name), Judgement::Foreign),
        }
    }

    fn keep(&mut self, next: Accepted) {
        if self.accepted.as_ref() == Some(&next) {
            return;
        }
        if let Err(e) = self.pins.record(&next) {
            tracing::warn!(error = %e, "cannot record which vault this machine trusts");
        }
        self.accepted = Some(next);
    }
}

/// What a vault changed against what this machine accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Its members' secret is not the one accepted.
    pub foreign: bool,
}

/// The refusal of a vault judged `judgement`.
pub fn refusal(location: &Location, judgement: &Judgement) -> Option<VaultError> {
    let why = match judgement {
        Judgement::Trusted { .. } => return None,
        Judgement::Foreign => format!(
            "{location} was not written by a member: it lacks the members' secret this machine accepted, so someone who can write the store but not open the vault replaced it; nothing of it is used: restore the vault, or run `tokdeck recipients accept` if your team made a new one"
        ),
        Judgement::NewRecipients { added } => format!(
            "{location} is now sealed to {} this machine never accepted ({}); nothing is read or saved until a person checks: `tokdeck recipients accept` shows the change",
            if added.len() == 1 {
                "a recipient"
            } else {
                "recipients"
            },
            added.join(", ")
        ),
    };
    Some(VaultError::Untrusted(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq";

    fn seen<'a>(
        recipients: &'a [String],
        secret: Option<&'a SecretString>,
        replaces: Option<&'a str>,
    ) -> Membership<'a> {
        Membership {
            recipients,
            operators: &[],
            groups: &[],
            secret,
            replaces,
        }
    }

    fn trusted(j: Judgement) -> Accepted {
        match j {
            Judgement::Trusted { next } => next,
            other => panic!("not trusted: {other:?}"),
        }
    }

    #[test]
    fn a_vault_without_the_accepted_secret_is_foreign() {
        let members = vec!["r1".to_string()];
        let secret = new_secret();
        let pin = trusted(judge(None, seen(&members, Some(&secret), None), "v"));
        assert_eq!(pin.secret_mark, Some(mark(&secret)));
        // The same vault again.
        assert_eq!(
            trusted(judge(Some(&pin), seen(&members, Some(&secret), None), "v")),
            pin
        );
        // A planted one: another secret, or none.
        let other = new_secret();
        let planted = judge(Some(&pin), seen(&members, Some(&other), None), "v");
        assert_eq!(planted, Judgement::Foreign);
        assert_eq!(
            judge(Some(&pin), seen(&members, None, None), "v"),
            Judgement::Foreign
        );
        // A member's replacement names the mark of the one it replaced.
        let old_mark = mark(&secret);
        let rotated = seen(&members, Some(&other), Some(&old_mark));
        assert_eq!(
            trusted(judge(Some(&pin), rotated, "v")).secret_mark,
            Some(mark(&other))
        );
        // Naming a replaced mark without a secret proves nothing.
        assert_eq!(
            judge(Some(&pin), seen(&members, None, Some(&old_mark)), "v"),
            Judgement::Foreign
        );
    }

    #[test]
    fn new_recipients_wait_for_a_person_and_removed_ones_do_not() {
        let secret = new_secret();
        let two = vec!["r1".to_string(), A.to_string()];
        let pin = trusted(judge(None, seen(&two, Some(&secret), None), "v"));
        let one = vec!["r1".to_string()];
        let shrunk = trusted(judge(Some(&pin), seen(&one, Some(&secret), None), "v"));
        assert_eq!(shrunk.recipients.len(), 1);
        let three = vec!["r1".to_string(), A.to_string(), "r3".to_string()];
        assert_eq!(
            judge(Some(&pin), seen(&three, Some(&secret), None), "v"),
            Judgement::NewRecipients {
                added: vec!["r3".into()]
            }
        );
        // Written differently, the same key is no new recipient.
        let spaced = vec!["r1".to_string(), format!(" {A} ")];
        trusted(judge(Some(&pin), seen(&spaced, Some(&secret), None), "v"));
    }

    #[test]
    fn a_vault_that_never_had_a_secret_may_get_its_first() {
        let members = vec!["r1".to_string()];
        let pin = trusted(judge(None, seen(&members, None, None), "v"));
        assert_eq!(pin.secret_mark, None);
        let secret = new_secret();
        let next = trusted(judge(Some(&pin), seen(&members, Some(&secret), None), "v"));
        assert_eq!(next.secret_mark, Some(mark(&secret)));
    }

    #[test]
    fn pins_are_kept_per_vault_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let pins = Pins::in_dir(dir.path());
        assert_eq!(pins.accepted("v1").unwrap(), None);
        let secret = new_secret();
        let accepted = trusted(judge(None, seen(&["r1".into()], Some(&secret), None), "v1"));
        pins.record(&accepted).unwrap();
        assert_eq!(pins.accepted("v1").unwrap(), Some(accepted));
        assert_eq!(pins.accepted("v2").unwrap(), None);
        let text = std::fs::read_to_string(pins.file("v1")).unwrap();
        assert!(!text.contains(secret.expose_secret()), "{text}");
    }
}
