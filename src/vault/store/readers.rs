//! Entries some keys cannot open ([`crate::vault::groups`]): a whole read that records them,
//! the refusal that names the group a profile needs, and a writer of every entry that keeps
//! them as they are.

use std::collections::HashSet;

use age::secrecy::SecretString;

use super::Store;
use super::cache::Cache;
use crate::vault::backend::EntryRead;
use crate::vault::error::VaultError;
use crate::vault::model::Profile;
use crate::vault::parallel;

/// What a read of many entries opened: (id, version, profile) of each, and the ids of those
/// sealed to readers this machine holds no key of.
#[derive(Default)]
pub(super) struct Opened {
    pub(super) opened: Vec<(String, u64, Profile)>,
    pub(super) locked: HashSet<String>,
}

/// The entries a writer of every entry cannot open, kept as they are: their ids, and their
/// profiles' status from the shards, for the shards written again.
pub(super) struct Locked {
    pub(super) ids: HashSet<String>,
    pub(super) statuses: Vec<Profile>,
}

impl Store {
    /// Opens the entries read, on every core: decryption is most of a whole read's work.
    pub(super) fn open_all(
        &self,
        secret: &SecretString,
        ids: &[String],
        read: &[Option<EntryRead>],
    ) -> Opened {
        let pairs: Vec<(&String, &EntryRead)> = ids
            .iter()
            .zip(read)
            .filter_map(|(id, read)| Some((id, read.as_ref()?)))
            .collect();
        let opened = parallel::on_threads(&pairs, parallel::cores(), |(id, read)| {
            match self.open_entry(secret, id, read) {
                Ok(profile) => Ok(((*id).clone(), read.version, profile)),
                Err(VaultError::WrongKey { .. }) => Err(Some((*id).clone())),
                Err(e) => {
                    tracing::warn!(error = %e, "left out an entry");
                    Err(None)
                }
            }
        });
        let mut all = Opened::default();
        for outcome in opened.into_iter().flatten() {
            match outcome {
                Ok(one) => all.opened.push(one),
                Err(Some(id)) => {
                    all.locked.insert(id);
                }
                Err(None) => {}
            }
        }
        if !all.locked.is_empty() {
            tracing::info!(
                entries = all.locked.len(),
                "left out the entries sealed to groups this machine holds no key of"
            );
        }
        all
    }

    /// The refusal of profile `name`, whose entry no key here opens, naming its group as
    /// the status shards say.
    pub(super) fn not_reader(&self, snap: &mut Cache, name: &str) -> VaultError {
        let group = match self.every_shard(snap) {
            Ok(Some(shard)) => shard
                .profiles
                .into_iter()
                .find(|p| p.name == name)
                .and_then(|p| p.group),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the status shards for the profile's group");
                None
            }
        };
        let defined = snap
            .content
            .data(self.location())
            .ok()
            .zip(group.as_deref())
            .is_some_and(|(data, g)| data.group(g).is_some());
        VaultError::NotReader {
            path: self.location().clone(),
            profile: name.to_string(),
            group: group.filter(|_| defined),
        }
    }

    /// What `snap` found locked (sealed to groups this machine holds no key of), to keep
    /// while every other entry is sealed again. Refused when the members' secret changes:
    /// the ids and tags of those entries change with it, and only their readers can seal
    /// them again.
    pub(super) fn keep_locked(
        &self,
        snap: &mut Cache,
        secret: &age::secrecy::SecretString,
    ) -> Result<Locked, VaultError> {
        use age::secrecy::ExposeSecret;
        let ids = snap
            .entries
            .as_ref()
            .map(|s| s.locked.clone())
            .unwrap_or_default();
        if ids.is_empty() {
            return Ok(Locked {
                ids,
                statuses: Vec::new(),
            });
        }
        let same_secret =
            Self::entry_secret(snap).is_ok_and(|old| old.expose_secret() == secret.expose_secret());
        let statuses = match self.every_shard(snap)? {
            Some(shard) if same_secret => shard.profiles,
            _ => {
                return Err(VaultError::Remote(format!(
                    "{} entries of {} are sealed to groups this machine holds no key of, and this change seals every entry again under a new members' secret: run it where a key of every group is",
                    ids.len(),
                    self.location()
                )));
            }
        };
        let loaded: HashSet<&str> = snap
            .content
            .data(self.location())
            .map(|d| d.profiles.iter().map(|p| p.name.as_str()).collect())
            .unwrap_or_default();
        let statuses = statuses
            .into_iter()
            .filter(|p| !loaded.contains(p.name.as_str()))
            .collect();
        Ok(Locked { ids, statuses })
    }
}
