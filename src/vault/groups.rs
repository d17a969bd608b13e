//! Who reads what in a team vault laid out as entries. The head lists the vault's members
//! (`recipients`), its groups (`[[group]]`, each with recipients of its own) and its
//! operators. A profile whose `group` names a group has its entry sealed to that group's
//! recipients alone; any other profile's entry is sealed to the members. The head and the
//! status shards are sealed to every reader: members, every group's recipients, operators.
//! So an operator sees the status of every profile and no secret, and a group's tokens stay
//! with the group.
//!
//! Everyone who reads the head knows the members' secret, which tags entries: readers are
//! trusted not to plant entries, as every member of a vault without groups is.

use super::crypto::canonical_recipient;
pub use super::model::Group;
use super::model::{Profile, VaultData};

/// Who may read one profile's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers<'a> {
    /// The vault's members.
    Members,
    /// The recipients of this group.
    Group(&'a Group),
}

impl VaultData {
    /// Whether the head gives some recipients less than everything: groups or operators.
    pub fn is_divided(&self) -> bool {
        !self.groups.is_empty() || !self.operators.is_empty()
    }

    /// The group called `name`, if the head defines it.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Who reads the entry of `profile`: its group's recipients when its group is defined.
    pub fn readers_of(&self, profile: &Profile) -> Readers<'_> {
        profile
            .group
            .as_deref()
            .and_then(|name| self.group(name))
            .map_or(Readers::Members, Readers::Group)
    }

    /// The recipients the entry of `profile` is sealed to.
    pub fn entry_recipients(&self, profile: &Profile) -> &[String] {
        match self.readers_of(profile) {
            Readers::Members => &self.recipients,
            Readers::Group(group) => &group.recipients,
        }
    }

    /// Everyone the head and the status are sealed to: members, every group's recipients
    /// and operators, each once, in that order.
    pub fn all_readers(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let every = self
            .recipients
            .iter()
            .chain(self.groups.iter().flat_map(|g| &g.recipients))
            .chain(&self.operators);
        every
            .filter(|r| seen.insert(canonical_recipient(r).unwrap_or_else(|_| (*r).clone())))
            .cloned()
            .collect()
    }

    /// The format the head is written in: groups and operators need a build that knows
    /// them, or it would take every entry for the members'; without them, the format every
    /// build since the members' secret reads.
    pub fn format_needed(&self) -> u32 {
        if self.is_divided() {
            super::model::GROUPS_FORMAT_VERSION
        } else {
            self.version.min(super::model::FORMAT_VERSION)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::model::{Endpoints, Provider};
    use age::secrecy::SecretString;

    fn profile(name: &str, group: Option<&str>) -> Profile {
        let mut p = Profile::new(
            name.into(),
            Provider::Factorial,
            Endpoints::at("https://api.factorialhr.com"),
            "cid".into(),
            SecretString::from("s"),
            "urn:ietf:wg:oauth:2.0:oob".into(),
        );
        p.group = group.map(String::from);
        p
    }

    fn vault() -> VaultData {
        VaultData {
            recipients: vec!["m1".into(), "g1".into()],
            operators: vec!["o1".into(), "m1".into()],
            groups: vec![Group {
                name: "payroll".into(),
                recipients: vec!["g1".into(), "g2".into()],
            }],
            ..VaultData::default()
        }
    }

    #[test]
    fn a_profile_of_a_defined_group_is_sealed_to_that_group_alone() {
        let data = vault();
        assert_eq!(
            data.entry_recipients(&profile("a", Some("payroll"))),
            ["g1", "g2"]
        );
        // A group only used for filters, and no group: the members.
        assert_eq!(
            data.entry_recipients(&profile("b", Some("ops"))),
            ["m1", "g1"]
        );
        assert_eq!(data.entry_recipients(&profile("c", None)), ["m1", "g1"]);
    }

    #[test]
    fn every_reader_is_listed_once_in_order() {
        assert_eq!(vault().all_readers(), ["m1", "g1", "g2", "o1"]);
        assert!(vault().is_divided());
        assert!(!VaultData::default().is_divided());
        assert_eq!(vault().format_needed(), 3);
        assert_eq!(VaultData::default().format_needed(), 2);
        let undivided = VaultData {
            version: 3,
            ..VaultData::default()
        };
        assert_eq!(undivided.format_needed(), 2);
    }
}
