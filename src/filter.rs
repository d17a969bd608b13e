//! The filter language the app's `/` and `status --filter` share: words such as
//! `state:expiring`, `owner:company`, `env:production`, `group:payroll` (`group:none` for
//! profiles in no group), `machine:build-3` (a machine that
//! refreshed the profile last or keeps it; `machine:none` for auto-refresh profiles no agent
//! keeps), a leading `-` to leave out what a word
//! matches, and bare words that match inside a profile's name. A key given more than once (or
//! with values joined by commas, `state:expired,error`) matches any of its values; different
//! keys and bare words must all match. Pure: parsing and matching, nothing else.

use std::fmt;

use crate::health::Health;

/// The keys a word may name, as typed.
const KEYS: [&str; 5] = ["state", "owner", "env", "group", "machine"];

/// What one word asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    State(Health),
    /// `user`, `company` or `app`, as the OWNER column says.
    Owner(String),
    /// Inside the ENV column, lower case.
    Env(String),
    /// The group, whole (groups are lower case); `none`: a profile in no group.
    Group(String),
    /// Inside the host of a machine that refreshed or keeps it, lower case; `none`: an
    /// auto-refresh profile no agent keeps.
    Machine(String),
    /// Inside the name, lower case.
    Name(String),
}

impl Test {
    fn key(&self) -> &'static str {
        match self {
            Test::State(_) => "state",
            Test::Owner(_) => "owner",
            Test::Env(_) => "env",
            Test::Group(_) => "group",
            Test::Machine(_) => "machine",
            Test::Name(_) => "name",
        }
    }

    fn holds(&self, row: &Row<'_>) -> bool {
        match self {
            Test::State(state) => row.state == *state,
            Test::Owner(owner) => row.owner.eq_ignore_ascii_case(owner),
            Test::Env(env) => row.environment.to_lowercase().contains(env.as_str()),
            Test::Group(none) if none == "none" => row.group.is_none(),
            // A hand edit may have written a group in capitals.
            Test::Group(group) => row.group.is_some_and(|g| g.eq_ignore_ascii_case(group)),
            Test::Machine(none) if none == "none" => row.unkept,
            Test::Machine(host) => row
                .machines
                .iter()
                .any(|m| m.to_lowercase().contains(host.as_str())),
            Test::Name(part) => row.name.to_lowercase().contains(part.as_str()),
        }
    }
}

/// What a filter looks at in a profile.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub name: &'a str,
    pub state: Health,
    pub owner: &'a str,
    pub environment: &'a str,
    pub group: Option<&'a str>,
    /// The machines that refreshed it last or keep it, for a vault a team shares.
    pub machines: &'a [&'a str],
    /// Auto-refresh is on but no agent keeps it.
    pub unkept: bool,
}

/// A parsed filter. The empty filter lets everything through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Tests that must hold, grouped by key: within a group any may hold.
    wanted: Vec<Vec<Test>>,
    /// Tests none of which may hold.
    unwanted: Vec<Test>,
}

/// A word the filter cannot read, with what would be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error(
        "unknown filter key '{0}:': use state:, owner:, env:, group: or machine:, or a part of a name"
    )]
    UnknownKey(String),
    #[error("unknown state '{0}': use ok, expiring, stale, expired, error or no-token")]
    UnknownState(String),
    #[error("unknown owner '{0}': use user, company or app")]
    UnknownOwner(String),
    #[error("'{0}:' needs a value, such as {0}:{1}")]
    NoValue(String, &'static str),
}

/// The state a word names: the labels `status` prints.
pub fn state_named(word: &str) -> Option<Health> {
    [
        Health::Ok,
        Health::Expiring,
        Health::Stale,
        Health::Expired,
        Health::Error,
        Health::NoToken,
    ]
    .into_iter()
    .find(|h| h.label() == word || (word == "notoken" && *h == Health::NoToken))
}

/// `--filter WORDS`, read at the command line.
pub fn parse_filter_arg(text: &str) -> Result<Filter, String> {
    Filter::parse(text).map_err(|e| e.to_string())
}

impl Filter {
    /// Reads `text`, word by word.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let mut filter = Self::default();
        for word in text.split_whitespace() {
            let (negated, word) = match word.strip_prefix('-') {
                Some(rest) if !rest.is_empty() => (true, rest),
                _ => (false, word),
            };
            for test in tests_of(word)? {
                if negated {
                    filter.unwanted.push(test);
                } else {
                    filter.want(test);
                }
            }
        }
        Ok(filter)
    }

    /// Only profiles in `state`: what the app's number keys ask for.
    pub fn only(state: Health) -> Self {
        let mut filter = Self::default();
        filter.want(Test::State(state));
        filter
    }

    fn want(&mut self, test: Test) {
        match self
            .wanted
            .iter_mut()
            .find(|group| group[0].key() == test.key() && test.key() != "name")
        {
            Some(group) => group.push(test),
            None => self.wanted.push(vec![test]),
        }
    }

    /// Whether `row` passes.
    pub fn matches(&self, row: &Row<'_>) -> bool {
        self.wanted
            .iter()
            .all(|group| group.iter().any(|t| t.holds(row)))
            && !self.unwanted.iter().any(|t| t.holds(row))
    }

    /// Whether some word asks about the environment: finding a profile's means parsing its
    /// server's URL, which a filter that never looks need not pay for every row.
    pub fn asks_about_environment(&self) -> bool {
        self.wanted
            .iter()
            .flatten()
            .chain(&self.unwanted)
            .any(|t| matches!(t, Test::Env(_)))
    }

    /// Whether everything passes.
    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty() && self.unwanted.is_empty()
    }

    /// The single state this filter asks for, if that is all it asks: the app marks that
    /// count in its header.
    pub fn only_state(&self) -> Option<Health> {
        match (self.wanted.as_slice(), self.unwanted.is_empty()) {
            ([group], true) => match group.as_slice() {
                [Test::State(state)] => Some(*state),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The tests one word (without its `-`) stands for.
fn tests_of(word: &str) -> Result<Vec<Test>, FilterError> {
    let Some((key, values)) = word.split_once(':') else {
        return Ok(vec![Test::Name(word.to_lowercase())]);
    };
    let key = key.to_lowercase();
    if !KEYS.contains(&key.as_str()) {
        return Err(FilterError::UnknownKey(key));
    }
    let values: Vec<String> = values
        .split(',')
        .filter(|v| !v.is_empty())
        .map(str::to_lowercase)
        .collect();
    if values.is_empty() {
        let example = match key.as_str() {
            "state" => "expiring",
            "owner" => "company",
            "machine" => "build-3",
            "group" => "payroll",
            _ => "production",
        };
        return Err(FilterError::NoValue(key, example));
    }
    values
        .into_iter()
        .map(|value| match key.as_str() {
            "state" => state_named(&value)
                .map(Test::State)
                .ok_or(FilterError::UnknownState(value)),
            "owner" if ["user", "company", "app"].contains(&value.as_str()) => {
                Ok(Test::Owner(value))
            }
            "owner" => Err(FilterError::UnknownOwner(value)),
            "machine" => Ok(Test::Machine(value)),
            "group" => Ok(Test::Group(value)),
            _ => Ok(Test::Env(value)),
        })
        .collect()
}

impl fmt::Display for Filter {
    /// The filter as words, in a normal form (for the app's title).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |t: &Test| match t {
            Test::State(s) => format!("state:{}", s.label()),
            Test::Owner(o) => format!("owner:{o}"),
            Test::Env(e) => format!("env:{e}"),
            Test::Group(g) => format!("group:{g}"),
            Test::Machine(m) => format!("machine:{m}"),
            Test::Name(n) => n.clone(),
        };
        let mut words: Vec<String> = self.wanted.iter().flatten().map(word).collect();
        words.extend(self.unwanted.iter().map(|t| format!("-{}", word(t))));
        f.write_str(&words.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(name: &'a str, state: Health, owner: &'a str, environment: &'a str) -> Row<'a> {
        Row {
            name,
            state,
            owner,
            environment,
            group: None,
            machines: &[],
            unkept: false,
        }
    }

    fn passing<'a>(filter: &str, rows: &[Row<'a>]) -> Vec<&'a str> {
        let filter = Filter::parse(filter).unwrap();
        rows.iter()
            .filter(|r| filter.matches(r))
            .map(|r| r.name)
            .collect()
    }

    #[test]
    fn words_combine_keys_with_and_and_values_of_one_key_with_or() {
        let rows = [
            row("payroll", Health::Expiring, "user", "production"),
            row("payroll-demo", Health::Ok, "user", "demo"),
            row("hub", Health::Ok, "company", "production"),
            row("old", Health::Expired, "user", "production"),
        ];
        assert_eq!(
            passing("", &rows),
            ["payroll", "payroll-demo", "hub", "old"]
        );
        assert_eq!(passing("state:expiring", &rows), ["payroll"]);
        assert_eq!(
            passing("state:expiring state:expired", &rows),
            ["payroll", "old"]
        );
        assert_eq!(passing("state:expiring,expired", &rows), ["payroll", "old"]);
        assert_eq!(passing("owner:company", &rows), ["hub"]);
        assert_eq!(passing("env:prod -state:ok", &rows), ["payroll", "old"]);
        assert_eq!(passing("PAY -env:demo", &rows), ["payroll"]);
        assert_eq!(passing("pay roll", &rows), ["payroll", "payroll-demo"]);
        assert_eq!(passing("-owner:user", &rows), ["hub"]);
    }

    #[test]
    fn machine_words_match_the_hosts_around_a_profile_and_none_the_unkept() {
        let kept = ["build-3", "ops-1"];
        let rows = [
            Row {
                machines: &kept,
                ..row("kept", Health::Ok, "user", "production")
            },
            Row {
                unkept: true,
                ..row("lost", Health::Ok, "user", "production")
            },
            row("manual", Health::Ok, "user", "production"),
        ];
        assert_eq!(passing("machine:BUILD", &rows), ["kept"]);
        assert_eq!(passing("machine:ops-1,nowhere", &rows), ["kept"]);
        assert_eq!(passing("machine:none", &rows), ["lost"]);
        assert_eq!(passing("-machine:none -machine:build", &rows), ["manual"]);
        assert_eq!(
            Filter::parse("machine:").unwrap_err().to_string(),
            "'machine:' needs a value, such as machine:build-3"
        );
    }

    #[test]
    fn group_words_match_a_whole_group_and_none_the_profiles_in_none() {
        let rows = [
            Row {
                group: Some("payroll"),
                ..row("a", Health::Ok, "user", "production")
            },
            Row {
                group: Some("Payroll-EU"),
                ..row("b", Health::Ok, "user", "production")
            },
            row("c", Health::Ok, "user", "production"),
        ];
        assert_eq!(passing("group:PAYROLL", &rows), ["a"]);
        assert_eq!(passing("group:payroll,payroll-eu", &rows), ["a", "b"]);
        assert_eq!(passing("group:none", &rows), ["c"]);
        assert_eq!(passing("-group:none -group:payroll", &rows), ["b"]);
        let filter = Filter::parse("group:payroll -group:none").unwrap();
        assert_eq!(filter.to_string(), "group:payroll -group:none");
        assert_eq!(
            Filter::parse("group:").unwrap_err().to_string(),
            "'group:' needs a value, such as group:payroll"
        );
    }

    #[test]
    fn a_word_it_cannot_read_says_what_would_be_right() {
        assert_eq!(
            Filter::parse("colour:red"),
            Err(FilterError::UnknownKey("colour".into()))
        );
        assert_eq!(
            Filter::parse("state:dying"),
            Err(FilterError::UnknownState("dying".into()))
        );
        assert_eq!(
            Filter::parse("owner:robot"),
            Err(FilterError::UnknownOwner("robot".into()))
        );
        let e = Filter::parse("state:").unwrap_err();
        assert_eq!(
            e.to_string(),
            "'state:' needs a value, such as state:expiring"
        );
        // A lone dash is a name part, not a negation of nothing.
        assert!(
            Filter::parse("-")
                .unwrap()
                .matches(&row("a-b", Health::Ok, "user", "x"))
        );
    }

    #[test]
    fn the_normal_form_reads_back_the_same() {
        let filter = Filter::parse("Pay state:EXPIRING -owner:company").unwrap();
        assert_eq!(filter.to_string(), "pay state:expiring -owner:company");
        assert_eq!(Filter::parse(&filter.to_string()).unwrap(), filter);
        assert_eq!(
            Filter::only(Health::Stale).only_state(),
            Some(Health::Stale)
        );
        assert!(!filter.asks_about_environment());
        assert!(Filter::parse("-env:demo").unwrap().asks_about_environment());
        assert_eq!(filter.only_state(), None);
    }
}
