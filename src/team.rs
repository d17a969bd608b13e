//! Who keeps a shared vault alive: each agent on a vault in OpenBao announces itself beside
//! it (`PATH.agents/ID`) with a heartbeat, and the lease entry records which machine saved
//! each profile's newest token. From those, pure functions here tell for each profile the
//! machine and time of its last refresh, the agents that keep it, and whether none does.
//!
//! An announcement is plain JSON (a host name, a pid, times: nothing secret), tagged with an
//! HMAC keyed by the members' secret ([`crate::vault::trust`]): whoever may write the store
//! but cannot open the vault cannot plant an agent that seems to keep the team's tokens.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How often an agent announces itself.
pub const BEAT_EVERY: Duration = Duration::from_secs(20);

/// An announcement older than this, on the server's clock, is from an agent that stopped
/// answering: three beats missed, and a margin for a slow store.
pub const LAPSES_AFTER: Duration = Duration::from_secs(70);

/// An announcement lapsed this long is removed by the next agent that beats.
pub const FORGOTTEN_AFTER: Duration = Duration::from_secs(24 * 3600);

/// At most this many announcements are read: a store filled with entries must not make every
/// status a thousand requests.
pub const MAX_AGENTS: usize = 64;

/// What an agent announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    pub host: String,
    pub pid: u32,
    /// The tokdeck version it runs.
    pub version: String,
    pub started_at: DateTime<Utc>,
    /// How many auto-refresh profiles it keeps.
    pub keeps: usize,
    /// Why it cannot keep them now (the vault unreadable, say), when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// In a vault with groups, the [`reader_tag`]s of the readers whose keys it holds (the
    /// members', each group's): it keeps only their profiles. `None`: every profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<Vec<String>>,
}

/// The tag an announcement names a vault's readers by: the members (`None`) or a group,
/// keyed by the members' secret so that the store shows no group's name.
pub fn reader_tag(secret: &str, group: Option<&str>) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(b"tokdeck readers\0");
    if let Some(group) = group {
        mac.update(b"group\0");
        mac.update(group.as_bytes());
    }
    crate::display::hex(&mac.finalize().into_bytes()[..8])
}

/// An announcement as read from the store: its text, its tag, and how long ago it was
/// written on the server's clock.
#[derive(Debug, Clone)]
pub struct Announcement {
    pub id: String,
    pub text: String,
    pub tag: String,
    pub age: Option<Duration>,
}

/// The tag of `text` under the members' secret.
pub fn tag(secret: &str, text: &str) -> String {
    BASE64.encode(mac(secret, text).finalize().into_bytes())
}

fn mac(secret: &str, text: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(b"tokdeck agent announcement\0");
    mac.update(text.as_bytes());
    mac
}

/// Whether `tag` is `text`'s under the members' secret (in constant time).
pub fn verified(secret: &str, text: &str, tag: &str) -> bool {
    let Ok(bytes) = BASE64.decode(tag) else {
        return false;
    };
    mac(secret, text).verify_slice(&bytes).is_ok()
}

/// An agent as the team view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Agent {
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub keeps: usize,
    /// Seconds since its last beat, on the server's clock.
    pub beat_secs_ago: Option<u64>,
    /// It beats: its last announcement is recent.
    pub alive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The readers whose keys it holds ([`Beat::reads`]); `None`: all.
    #[serde(skip)]
    pub reads: Option<Vec<String>>,
}

impl Agent {
    /// Whether it keeps the vault's auto-refresh profiles now.
    pub fn keeping(&self) -> bool {
        self.alive && self.problem.is_none()
    }

    /// Whether it opens the profiles of the readers tagged `reader` (`None`: a vault
    /// without groups, whose agents open every profile).
    pub fn opens(&self, reader: Option<&str>) -> bool {
        match (reader, &self.reads) {
            (Some(reader), Some(reads)) => reads.iter().any(|r| r == reader),
            _ => true,
        }
    }

    /// `build-3 pid 412`.
    pub fn name(&self) -> String {
        format!("{} pid {}", self.host, self.pid)
    }
}

/// The last save of a profile's token, as the lease entry records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastRefresh {
    pub host: String,
    pub at: DateTime<Utc>,
}

/// The team around one vault.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Team {
    /// Agents whose announcement carries the members' tag, alive or lapsed.
    pub agents: Vec<Agent>,
    /// Announcements without a valid tag: written by someone who cannot open the vault.
    pub unverified: usize,
    /// Who holds the lease now, and until when; `None` when nobody does.
    pub lease: Option<String>,
}

/// One profile as the team sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProfileTeam {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_refresh: Option<LastRefresh>,
    /// The hosts of the agents that keep it.
    pub kept_by: Vec<String>,
    /// Auto-refresh is on, but no agent keeps it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unkept: bool,
}

impl ProfileTeam {
    /// The hosts a `machine:` filter looks at: the last refresh's and the keepers'.
    pub fn machines(&self) -> Vec<&str> {
        self.last_refresh
            .iter()
            .map(|r| r.host.as_str())
            .chain(self.kept_by.iter().map(String::as_str))
            .collect()
    }
}

impl Team {
    /// The team that `announcements` make, checked against the members' secret (`None`: a
    /// vault without one, whose announcements cannot be told from planted ones).
    pub fn of(announcements: &[Announcement], secret: Option<&str>, lease: Option<String>) -> Self {
        let mut team = Team {
            lease,
            ..Team::default()
        };
        for a in announcements {
            let beat = secret
                .filter(|s| verified(s, &a.text, &a.tag))
                .and_then(|_| serde_json::from_str::<Beat>(&a.text).ok());
            let Some(beat) = beat else {
                team.unverified += 1;
                continue;
            };
            team.agents.push(Agent {
                alive: a.age.is_some_and(|age| age <= LAPSES_AFTER),
                beat_secs_ago: a.age.map(|age| age.as_secs()),
                host: crate::display::untrusted(&beat.host).into_owned(),
                pid: beat.pid,
                version: crate::display::untrusted(&beat.version).into_owned(),
                started_at: beat.started_at,
                keeps: beat.keeps,
                problem: beat
                    .problem
                    .map(|p| crate::display::untrusted_short(&p, 200)),
                reads: beat.reads,
            });
        }
        team.agents
            .sort_by(|a, b| b.alive.cmp(&a.alive).then_with(|| a.host.cmp(&b.host)));
        team
    }

    /// The hosts of the agents keeping the vault now, each once.
    pub fn keepers(&self) -> Vec<String> {
        self.keepers_of(None)
    }

    /// The hosts of the agents keeping the profiles of the readers tagged `reader` now,
    /// each once.
    fn keepers_of(&self, reader: Option<&str>) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .agents
            .iter()
            .filter(|a| a.keeping() && a.opens(reader))
            .map(|a| a.host.clone())
            .collect();
        hosts.dedup();
        hosts
    }

    /// What the team means for a profile whose entry the readers tagged `reader` open:
    /// agents keep every auto-refresh profile they open, so its keepers are those of the
    /// team that open it, when it renews by itself.
    pub fn for_profile(
        &self,
        auto_refresh: bool,
        reader: Option<&str>,
        last: Option<LastRefresh>,
    ) -> ProfileTeam {
        let kept_by = if auto_refresh {
            self.keepers_of(reader)
        } else {
            Vec::new()
        };
        ProfileTeam {
            unkept: auto_refresh && kept_by.is_empty(),
            last_refresh: last,
            kept_by,
        }
    }

    /// One line for a header or a table's foot: `2 agents keep this vault (build-3, build-4);
    /// lease free`.
    pub fn summary(&self) -> String {
        let keepers = self.keepers();
        let mut parts = vec![match keepers.len() {
            0 => "no agent keeps this vault".to_string(),
            1 => format!("1 agent keeps this vault ({})", keepers[0]),
            n => format!("{n} agents keep this vault ({})", keepers.join(", ")),
        }];
        let lapsed = self.agents.iter().filter(|a| !a.alive).count();
        if lapsed > 0 {
            parts.push(format!("{lapsed} stopped answering"));
        }
        for agent in self.agents.iter().filter(|a| a.alive) {
            if let Some(problem) = &agent.problem {
                parts.push(format!("{} cannot keep it: {problem}", agent.host));
            }
        }
        if self.unverified > 0 {
            parts.push(format!(
                "{} announcement(s) not signed by a member, ignored",
                self.unverified
            ));
        }
        parts.push(match &self.lease {
            Some(holder) => format!("lease held by {holder}"),
            None => "lease free".to_string(),
        });
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(host: &str) -> Beat {
        Beat {
            host: host.into(),
            pid: 7,
            version: "1.0.0".into(),
            started_at: DateTime::UNIX_EPOCH,
            keeps: 3,
            problem: None,
            reads: None,
        }
    }

    fn announced(secret: &str, beat: &Beat, age_secs: u64) -> Announcement {
        let text = serde_json::to_string(beat).unwrap();
        Announcement {
            id: beat.host.clone(),
            tag: tag(secret, &text),
            text,
            age: Some(Duration::from_secs(age_secs)),
        }
    }

    #[test]
    fn a_tag_holds_only_for_its_text_and_secret() {
        let t = tag("s", "hello");
        assert!(verified("s", "hello", &t));
        assert!(!verified("s", "hellO", &t));
        assert!(!verified("other", "hello", &t));
        assert!(!verified("s", "hello", "not base64!"));
    }

    #[test]
    fn live_signed_agents_keep_auto_refresh_profiles_and_others_do_not() {
        let mut sick = beat("b-sick");
        sick.problem = Some("cannot read the vault".into());
        let forged = Announcement {
            tag: tag("guess", "{}"),
            ..announced("secret", &beat("evil"), 1)
        };
        let team = Team::of(
            &[
                announced("secret", &beat("b-2"), 5),
                announced("secret", &beat("b-1"), 65),
                announced("secret", &beat("b-gone"), 300),
                announced("secret", &sick, 3),
                forged,
            ],
            Some("secret"),
            None,
        );
        assert_eq!(team.keepers(), ["b-1", "b-2"]);
        assert_eq!(team.unverified, 1);
        let last = LastRefresh {
            host: "b-1".into(),
            at: DateTime::UNIX_EPOCH,
        };
        let kept = team.for_profile(true, None, Some(last.clone()));
        assert_eq!(kept.kept_by, ["b-1", "b-2"]);
        assert!(!kept.unkept);
        assert_eq!(kept.machines(), ["b-1", "b-1", "b-2"]);
        let manual = team.for_profile(false, None, None);
        assert!(manual.kept_by.is_empty() && !manual.unkept);
        assert_eq!(
            team.summary(),
            "2 agents keep this vault (b-1, b-2); 1 stopped answering; b-sick cannot keep it: cannot read the vault; 1 announcement(s) not signed by a member, ignored; lease free"
        );
    }

    #[test]
    fn in_a_vault_with_groups_a_profile_is_kept_by_the_agents_that_open_it() {
        let tag = |group| reader_tag("secret", group);
        let mut payroll = beat("payroll-box");
        payroll.reads = Some(vec![tag(Some("payroll"))]);
        let mut members = beat("admin-box");
        members.reads = Some(vec![tag(None)]);
        let older = beat("old-box");
        let team = Team::of(
            &[
                announced("secret", &payroll, 1),
                announced("secret", &members, 1),
                announced("secret", &older, 1),
            ],
            Some("secret"),
            None,
        );
        let pay = team.for_profile(true, Some(&tag(Some("payroll"))), None);
        assert_eq!(pay.kept_by, ["old-box", "payroll-box"]);
        let shared = team.for_profile(true, Some(&tag(None)), None);
        assert_eq!(shared.kept_by, ["admin-box", "old-box"]);
        assert_ne!(tag(Some("payroll")), tag(None));
        assert_ne!(tag(Some("payroll")), reader_tag("other", Some("payroll")));
        assert_eq!(team.keepers().len(), 3);
    }

    #[test]
    fn without_agents_or_a_secret_an_auto_refresh_profile_is_unkept() {
        let lone = Team::of(
            &[announced("secret", &beat("b-1"), 1)],
            None,
            Some("b-1 pid 7 until 10:00:00 UTC".into()),
        );
        assert_eq!(lone.unverified, 1);
        assert!(lone.for_profile(true, None, None).unkept);
        assert_eq!(
            lone.summary(),
            "no agent keeps this vault; 1 announcement(s) not signed by a member, ignored; lease held by b-1 pid 7 until 10:00:00 UTC"
        );
    }
}
