//! The team beside the vault, as the store reads and writes it: announcements checked
//! against the members' secret, each profile's last save found by its record key.

use std::collections::BTreeMap;

use age::secrecy::ExposeSecret;

use super::Store;
use super::lease::record_key;
use crate::team::{Beat, FORGOTTEN_AFTER, LastRefresh, Team, reader_tag, tag};
use crate::vault::error::VaultError;

/// The team around a vault, with what the store knows per profile.
#[derive(Debug, Clone, Default)]
pub struct TeamView {
    pub team: Team,
    /// The last save of each profile's token, by profile name.
    pub last_refresh: BTreeMap<String, LastRefresh>,
    /// Announcements lapsed past [`FORGOTTEN_AFTER`], which an agent removes.
    pub forgotten: Vec<String>,
    /// In a vault with groups, the [`reader_tag`] of the members (key `None`) and of each
    /// group the head defines; empty otherwise.
    pub reader_tags: BTreeMap<Option<String>, String>,
    /// How many profiles are sealed to groups this machine holds no key of (read whole,
    /// their entries left out): the app says so, as it cannot show them.
    pub sealed_away: usize,
}

impl TeamView {
    /// What the team means for the profile `name` of group `group`, which renews by itself
    /// or not.
    pub fn for_profile(
        &self,
        name: &str,
        group: Option<&str>,
        auto_refresh: bool,
    ) -> crate::team::ProfileTeam {
        let reader = (!self.reader_tags.is_empty()).then(|| {
            let own = group.map(String::from);
            let own = own.filter(|g| self.reader_tags.contains_key(&Some(g.clone())));
            self.reader_tags.get(&own).map(String::as_str)
        });
        self.team.for_profile(
            auto_refresh,
            reader.flatten(),
            self.last_refresh.get(name).cloned(),
        )
    }
}

impl Store {
    /// The team sharing this vault; `None` for a vault without one (a file).
    pub fn team(&self) -> Result<Option<TeamView>, VaultError> {
        // Current names and secret: a reload when the stored vault changed.
        let names: Vec<String> =
            self.read(|data| data.profiles.iter().map(|p| p.name.clone()).collect())?;
        self.team_of(&names)
    }

    /// [`Store::team`], for the profiles `names` (the rows a caller read already: status,
    /// which read a vault in entries from its shards, need not read every entry).
    pub fn team_of(&self, names: &[String]) -> Result<Option<TeamView>, VaultError> {
        let Some(entries) = self.backend.team()? else {
            return Ok(None);
        };
        // In a vault laid out as entries each profile's record is in its own lock: who saved
        // each token is in the status shards instead.
        let in_entries = self.arrangement() == super::Arrangement::Entries;
        let saved_by = if in_entries {
            self.saved_by()
        } else {
            std::collections::BTreeMap::new()
        };
        let reader_tags = self.reader_tags();
        let snap = self.cache();
        let sealed_away = snap.entries.as_ref().map_or(0, |s| s.locked.len());
        let secret = snap.content.members_secret().0;
        let team = Team::of(
            &entries.announcements,
            secret.map(ExposeSecret::expose_secret),
            entries.lease,
        );
        let last_refresh = names
            .iter()
            .filter_map(|name| {
                let (host, at) = if in_entries {
                    let saved = saved_by.get(name)?;
                    (saved.host.as_str(), saved.at)
                } else {
                    let newest = entries.newest.get(&record_key(secret, name))?;
                    (newest.host.as_str(), newest.obtained_at)
                };
                let last = LastRefresh {
                    host: crate::display::untrusted(host).into_owned(),
                    at,
                };
                Some((name.clone(), last))
            })
            .collect();
        let forgotten = entries
            .announcements
            .iter()
            .filter(|a| a.age.is_some_and(|age| age > FORGOTTEN_AFTER))
            .map(|a| a.id.clone())
            .collect();
        Ok(Some(TeamView {
            team,
            last_refresh,
            forgotten,
            reader_tags,
            sealed_away,
        }))
    }

    /// The [`reader_tag`]s of the members and of each group, in a vault with groups.
    fn reader_tags(&self) -> BTreeMap<Option<String>, String> {
        let snap = self.cache();
        let (operators, groups) = snap.content.divisions();
        let secret = snap.content.members_secret().0;
        let Some(secret) = secret.filter(|_| !operators.is_empty() || !groups.is_empty()) else {
            return BTreeMap::new();
        };
        let secret = secret.expose_secret();
        let names = groups.iter().map(|g| Some(g.name.clone()));
        std::iter::once(None)
            .chain(names)
            .map(|g| {
                let tag = reader_tag(secret, g.as_deref());
                (g, tag)
            })
            .collect()
    }

    /// The [`reader_tag`]s of the readers whose keys this machine holds, for an agent's
    /// announcement; `None` in a vault without groups, whose agents open every profile.
    pub fn readers_held(&self) -> Option<Vec<String>> {
        use crate::vault::crypto::canonical_recipient;
        let own: Vec<String> = self
            .unlocking_recipients()
            .iter()
            .filter_map(|r| canonical_recipient(r).ok())
            .collect();
        let holds = |list: &[String]| {
            list.iter()
                .any(|r| canonical_recipient(r).is_ok_and(|c| own.contains(&c)))
        };
        let snap = self.cache();
        let (operators, groups) = snap.content.divisions();
        let secret = snap.content.members_secret().0;
        let secret = secret.filter(|_| !operators.is_empty() || !groups.is_empty())?;
        let secret = secret.expose_secret();
        let members = holds(snap.content.recipients()).then(|| reader_tag(secret, None));
        let held = groups
            .iter()
            .filter(|g| holds(&g.recipients))
            .map(|g| reader_tag(secret, Some(&g.name)));
        Some(members.into_iter().chain(held).collect())
    }

    /// Announces this process as an agent keeping the vault, tagged with the members'
    /// secret; a vault without one cannot be announced (readers could not tell it from a
    /// planted announcement), and is not.
    pub fn announce(&self, beat: &Beat) -> Result<(), VaultError> {
        let text = serde_json::to_string(beat)
            .map_err(|e| VaultError::Remote(format!("cannot write the announcement: {e}")))?;
        let tagged = {
            let snap = self.cache();
            snap.content
                .members_secret()
                .0
                .map(|secret| tag(secret.expose_secret(), &text))
        };
        match tagged {
            Some(tagged) => self.backend.announce(&text, &tagged),
            None => Ok(()),
        }
    }

    /// Removes this process's announcement (`None`) or the one named.
    pub fn withdraw(&self, id: Option<&str>) -> Result<(), VaultError> {
        self.backend.withdraw(id)
    }
}
