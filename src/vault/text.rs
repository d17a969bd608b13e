//! The vault's plaintext kept in parts, the head and one `[[profile]]` table per profile, so a
//! save that changed a few profiles renders only those again. Joined, the parts are exactly
//! the text `toml::to_string` makes of the whole vault (a test holds them to it).

use age::secrecy::ExposeSecret;
use serde::Serialize;
use zeroize::Zeroizing;

use super::error::VaultError;
use super::model::{Profile, VaultData};

/// The rendered text of a vault, part by part, in the order of its profiles.
pub struct Text {
    /// `version` and `recipients`; the whole document when there are no profiles.
    head: Zeroizing<String>,
    profiles: Vec<Zeroizing<String>>,
}

/// The vault's keys before its profiles. Built by taking `VaultData` apart, so a new field
/// there does not compile until it is rendered here too.
#[derive(Serialize)]
struct Head<'a> {
    version: u32,
    recipients: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    members_secret: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members_secret_replaces: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    operators: &'a [String],
    #[serde(rename = "group", skip_serializing_if = "<[_]>::is_empty")]
    groups: &'a [super::model::Group],
}

/// One profile as the whole document writes it: a `[[profile]]` table and its sub-tables.
#[derive(Serialize)]
struct One<'a> {
    profile: [&'a Profile; 1],
}

fn render<T: Serialize>(value: &T) -> Result<Zeroizing<String>, VaultError> {
    toml::to_string(value)
        .map(Zeroizing::new)
        .map_err(|e| VaultError::Encrypt(e.to_string()))
}

impl Text {
    /// Renders every part of `data`.
    pub fn of(data: &VaultData) -> Result<Self, VaultError> {
        let VaultData {
            version,
            recipients,
            members_secret,
            members_secret_replaces,
            operators,
            groups,
            profiles,
        } = data;
        if profiles.is_empty() {
            return Ok(Self {
                head: render(data)?,
                profiles: Vec::new(),
            });
        }
        Ok(Self {
            head: render(&Head {
                version: *version,
                recipients,
                members_secret: members_secret.as_ref().map(ExposeSecret::expose_secret),
                members_secret_replaces: members_secret_replaces.as_deref(),
                operators,
                groups,
            })?,
            profiles: profiles
                .iter()
                .map(Self::profile)
                .collect::<Result<_, _>>()?,
        })
    }

    /// One profile's part.
    pub fn profile(profile: &Profile) -> Result<Zeroizing<String>, VaultError> {
        render(&One { profile: [profile] })
    }

    /// Replaces the part of the profile at `index` (one rendered by [`Text::profile`]).
    /// Returns `false`, changing nothing, when there is no profile there.
    pub fn replace(&mut self, index: usize, part: Zeroizing<String>) -> bool {
        match self.profiles.get_mut(index) {
            Some(slot) => {
                *slot = part;
                true
            }
            None => false,
        }
    }

    /// The whole document, with `replaced` (index, part), in ascending order of index,
    /// standing in for those profiles' parts.
    pub fn join(&self, replaced: &[(usize, Zeroizing<String>)]) -> Zeroizing<String> {
        let size = self.head.len()
            + self.profiles.iter().map(|p| p.len() + 1).sum::<usize>()
            + replaced.iter().map(|(_, p)| p.len()).sum::<usize>();
        let mut text = Zeroizing::new(String::with_capacity(size));
        text.push_str(&self.head);
        let mut replaced = replaced.iter().peekable();
        for (i, part) in self.profiles.iter().enumerate() {
            let part = match replaced.next_if(|(at, _)| *at == i) {
                Some((_, new)) => new,
                None => part,
            };
            text.push('\n');
            text.push_str(part);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::model::{CheckResult, Endpoints, PendingAuth, Provider, Token};
    use age::secrecy::SecretString;
    use chrono::DateTime;

    fn profile(name: &str) -> Profile {
        Profile::new(
            name.into(),
            Provider::Custom,
            Endpoints::at("https://id.example.com"),
            "cid".into(),
            SecretString::from("secret \"quoted\"\nline"),
            "http://127.0.0.1:8765/callback".into(),
        )
    }

    /// Profiles with every optional part: a token, a check, an error, a pending login, notes.
    fn rich() -> VaultData {
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        let mut full = profile("full");
        full.scopes = vec!["read".into(), "write".into()];
        full.notes = "two\nlines".into();
        full.env_var = Some("ACME_TOKEN".into());
        full.token = Some(Token {
            access_token: SecretString::from("access"),
            refresh_token: Some(SecretString::from("refresh")),
            token_type: "Bearer".into(),
            scope: Some("read write".into()),
            obtained_at: at(1_700_000_000),
            expires_at: Some(at(1_700_007_200)),
            refresh_expires_at: Some(at(1_700_604_800)),
            id_token: None,
        });
        full.last_check = Some(CheckResult {
            checked_at: at(1_700_000_100),
            ..CheckResult::default()
        });
        full.last_error = Some("refused: 'invalid_grant'".into());
        full.pending = Some(PendingAuth {
            state: "st".into(),
            pkce_verifier: Some(SecretString::from("verifier")),
            started_at: at(1_700_000_050),
        });
        VaultData {
            recipients: vec!["age1example".into()],
            profiles: vec![profile("bare"), full, profile("last")],
            ..VaultData::default()
        }
    }

    #[test]
    fn the_parts_joined_are_the_whole_document() {
        for data in [rich(), VaultData::default(), {
            let mut one = rich();
            one.profiles.truncate(1);
            one.recipients.clear();
            one
        }] {
            let whole = toml::to_string(&data).unwrap();
            assert_eq!(*Text::of(&data).unwrap().join(&[]), whole);
        }
    }

    #[test]
    fn a_replaced_part_reads_as_the_changed_vault() {
        let mut data = rich();
        let mut text = Text::of(&data).unwrap();
        data.profiles[1].token = None;
        data.profiles[2].notes = "changed".into();
        let replaced = [
            (1, Text::profile(&data.profiles[1]).unwrap()),
            (2, Text::profile(&data.profiles[2]).unwrap()),
        ];
        let whole = toml::to_string(&data).unwrap();
        assert_eq!(*text.join(&replaced), whole);
        for (i, part) in replaced {
            assert!(text.replace(i, part));
        }
        assert_eq!(*text.join(&[]), whole);
        assert!(!text.replace(3, Zeroizing::new(String::new())));
        assert_eq!(*text.join(&[]), whole);
    }
}
