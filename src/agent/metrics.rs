//! The agent's Prometheus metrics (`tokdeck agent --metrics ADDR`), with the official client
//! (`prometheus-client`): one series per profile that alerts can be written on, named in base
//! units. Labels carry the profile's name and nothing else of it: no secret, client id or
//! owner e-mail.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::health::Health;
use crate::vault::VaultData;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProfileLabel {
    profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    profile: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    profile: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentsLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

type Seconds = Gauge<f64, AtomicU64>;

/// Every state a profile can be in, for `tokdeck_profile_state`.
const STATES: [Health; 6] = [
    Health::Error,
    Health::Expired,
    Health::NoToken,
    Health::Stale,
    Health::Expiring,
    Health::Ok,
];

/// The agent's metrics: counters the keeper adds to, and per-profile series read from the
/// vault at each scrape.
pub struct Metrics {
    registry: Registry,
    access_expiry: Family<ProfileLabel, Seconds>,
    window_end: Family<ProfileLabel, Seconds>,
    obtained: Family<ProfileLabel, Seconds>,
    lifetime: Family<ProfileLabel, Seconds>,
    state: Family<StateLabels, Gauge>,
    refreshes: Family<ResultLabels, Counter>,
    publishes: Family<ResultLabels, Counter>,
    duration: Histogram,
    reloads: Counter,
    wakeups: Counter,
    team: Family<AgentsLabel, Gauge>,
    /// Serialises scrapes: each rebuilds the per-profile series.
    scraping: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let family = Family::<ProfileLabel, Seconds>::default;
        let mut metrics = Self {
            registry: Registry::default(),
            access_expiry: family(),
            window_end: family(),
            obtained: family(),
            lifetime: family(),
            state: Family::default(),
            refreshes: Family::default(),
            publishes: Family::default(),
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            reloads: Counter::default(),
            wakeups: Counter::default(),
            team: Family::default(),
            scraping: Mutex::default(),
        };
        metrics.register();
        metrics
    }

    /// Names each series, with its help line, in the registry.
    fn register(&mut self) {
        let r = &mut self.registry;
        for (name, help, family) in [
            (
                "tokdeck_access_token_expiry_timestamp_seconds",
                "When the stored access token expires (Unix time)",
                &self.access_expiry,
            ),
            (
                "tokdeck_refresh_window_end_timestamp_seconds",
                "When the refresh window ends: after it only a person can authorize again (Unix time)",
                &self.window_end,
            ),
            (
                "tokdeck_token_obtained_timestamp_seconds",
                "When the stored token was obtained: its last renewal (Unix time)",
                &self.obtained,
            ),
            (
                "tokdeck_access_token_lifetime_seconds",
                "How long the stored access token lives, for profiles the agent keeps renewing",
                &self.lifetime,
            ),
        ] {
            r.register(name, help, family.clone());
        }
        r.register("tokdeck_profile_state", "1 for the profile's current state (ok, expiring, stale, no-token, expired, error), 0 for the others", self.state.clone());
        for (name, help, family) in [
            (
                "tokdeck_refreshes",
                "Refreshes the agent ran, by result (success, failure)",
                &self.refreshes,
            ),
            (
                "tokdeck_publishes",
                "Access tokens the agent published (--publish), by result (success, failure)",
                &self.publishes,
            ),
        ] {
            r.register(name, help, family.clone());
        }
        r.register(
            "tokdeck_refresh_duration_seconds",
            "How long refreshes took, the save of the new token included",
            self.duration.clone(),
        );
        self.register_agent();
    }

    /// Names the series about the agent itself, and the team it is part of.
    fn register_agent(&mut self) {
        let r = &mut self.registry;
        r.register("tokdeck_agent_info", "The agent's version", version_info());
        for (name, help, counter) in [
            (
                "tokdeck_vault_reloads",
                "Times the agent read the vault again after another process or machine saved it",
                &self.reloads,
            ),
            (
                "tokdeck_agent_wakeups",
                "Times the agent's keep-alive loop woke",
                &self.wakeups,
            ),
        ] {
            r.register(name, help, counter.clone());
        }
        r.register(
            "tokdeck_team_agents",
            "Agents announced beside a shared vault, as this one last read them, by state (keeping, failing: alive but unable to keep it, lapsed: stopped answering, unverified: not signed by a member)",
            self.team.clone(),
        );
    }

    /// The team as the agent last read it.
    pub fn set_team(&self, team: &crate::team::Team) {
        let alive = |a: &&crate::team::Agent| a.alive;
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let keeping = team.agents.iter().filter(|a| a.keeping()).count();
        let failing = team.agents.iter().filter(alive).count() - keeping;
        let lapsed = team.agents.len() - keeping - failing;
        for (state, n) in [
            ("keeping", keeping),
            ("failing", failing),
            ("lapsed", lapsed),
            ("unverified", team.unverified),
        ] {
            self.team
                .get_or_create(&AgentsLabel {
                    state: state.to_string(),
                })
                .set(count(n));
        }
    }

    /// A publish of `profile`'s token ended.
    pub fn published(&self, profile: &str, succeeded: bool) {
        let result = if succeeded { "success" } else { "failure" };
        self.publishes
            .get_or_create(&ResultLabels {
                profile: profile.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// A refresh of `profile` ended, after `took`.
    pub fn refreshed(&self, profile: &str, succeeded: bool, took: Duration) {
        let result = if succeeded { "success" } else { "failure" };
        self.refreshes
            .get_or_create(&ResultLabels {
                profile: profile.to_string(),
                result: result.to_string(),
            })
            .inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub fn reloaded(&self) {
        self.reloads.inc();
    }

    pub fn woke(&self) {
        self.wakeups.inc();
    }

    /// The text a scrape gets: the per-profile series as `data` holds them at `now`.
    pub fn render(&self, data: &VaultData, now: DateTime<Utc>, warn: Duration) -> String {
        let _one_at_a_time = self
            .scraping
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for family in [
            &self.access_expiry,
            &self.window_end,
            &self.obtained,
            &self.lifetime,
        ] {
            family.clear();
        }
        self.state.clear();
        let unix = |at: DateTime<Utc>| seconds(at - DateTime::UNIX_EPOCH);
        for row in crate::report::rows(data, now, warn) {
            let label = ProfileLabel {
                profile: row.name.clone(),
            };
            if let Some(at) = row.access_expires_at {
                self.access_expiry.get_or_create(&label).set(unix(at));
            }
            if let Some(at) = row.refresh_expires_at {
                self.window_end.get_or_create(&label).set(unix(at));
            }
            for state in STATES {
                let labels = StateLabels {
                    profile: row.name.clone(),
                    state: state.label().to_string(),
                };
                self.state
                    .get_or_create(&labels)
                    .set(i64::from(state == row.state));
            }
        }
        for profile in &data.profiles {
            let Some(token) = &profile.token else {
                continue;
            };
            let label = ProfileLabel {
                profile: profile.name.clone(),
            };
            self.obtained
                .get_or_create(&label)
                .set(unix(token.obtained_at));
            let renewed = profile.auto_refresh || profile.renews_by_itself();
            if let (true, Some(expires)) = (renewed, token.expires_at) {
                let life = seconds(expires - token.obtained_at);
                self.lifetime.get_or_create(&label).set(life);
            }
        }
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            tracing::warn!("cannot encode the metrics");
        }
        sorted_series(&text)
    }
}

/// The encoded text with each family's series in the order of their labels (the library
/// writes them in hash order), so two scrapes list them alike. A series' own lines (a
/// histogram's buckets, sum and count) keep their order: the sort is stable and ignores `le`.
fn sorted_series(text: &str) -> String {
    fn key(line: &str) -> String {
        let labels = line
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map_or("", |(labels, _)| labels);
        labels
            .split(',')
            .filter(|label| !label.starts_with("le="))
            .collect::<Vec<_>>()
            .join(",")
    }
    let mut out = String::with_capacity(text.len());
    let mut family: Vec<&str> = Vec::new();
    let flush = |family: &mut Vec<&str>, out: &mut String| {
        family.sort_by_cached_key(|line| key(line));
        for line in family.drain(..) {
            out.push_str(line);
            out.push('\n');
        }
    };
    for line in text.lines() {
        if line.starts_with('#') {
            flush(&mut family, &mut out);
            out.push_str(line);
            out.push('\n');
        } else {
            family.push(line);
        }
    }
    flush(&mut family, &mut out);
    out
}

/// The same series in Prometheus's classic text format (version 0.0.4), for a scraper that
/// does not ask for OpenMetrics (`promtool check metrics`, older servers). The client library
/// writes OpenMetrics only; the formats differ in a counter's family name (OpenMetrics names
/// the family without `_total` and its samples with it) and the closing `# EOF`.
pub fn to_classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|kind| {
            let rest = line.strip_prefix(kind)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{kind}{name}_total {tail}"))
        });
        text.push_str(renamed.as_deref().unwrap_or(line));
        text.push('\n');
    }
    text
}

/// The `tokdeck_agent_info{version}` series: 1, with this build's version.
fn version_info() -> Family<VersionLabel, Gauge> {
    let info = Family::<VersionLabel, Gauge>::default();
    info.get_or_create(&VersionLabel {
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
    .set(1);
    info
}

/// A span in seconds, as Prometheus takes them (0 for a negative one).
fn seconds(span: chrono::Duration) -> f64 {
    span.to_std().map_or(0.0, |d| d.as_secs_f64())
}

/// Where `--metrics` serves: `PORT` (loopback), or `IP:PORT`. Another machine may reach a
/// non-loopback address, and the series name every profile, so one needs `--metrics-public`;
/// a host name is refused, since what it resolves to is not what the person typed.
pub fn parse_address(text: &str, public: bool) -> Result<SocketAddr, String> {
    let text = text.trim();
    let address = match text.parse::<u16>() {
        Ok(port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        Err(_) => text.parse::<SocketAddr>().map_err(|_| {
            format!(
                "--metrics {text}: give a port (9184) or an IP address and port (127.0.0.1:9184)"
            )
        })?,
    };
    if !address.ip().is_loopback() && !public {
        return Err(format!(
            "--metrics {address} is reachable from other machines, and the metrics name every profile: add --metrics-public to serve there, or use 127.0.0.1:{}",
            address.port()
        ));
    }
    Ok(address)
}

#[cfg(test)]
mod sort_tests {
    #[test]
    fn series_are_sorted_by_label_and_a_histogram_keeps_its_buckets_in_order() {
        let text = "# TYPE a gauge\na{profile=\"z\"} 1\na{profile=\"b\"} 2\n\
                    # TYPE h histogram\nh_sum{profile=\"y\"} 1\nh_bucket{profile=\"y\",le=\"1\"} 1\n\
                    h_bucket{profile=\"x\",le=\"1\"} 1\nh_bucket{profile=\"x\",le=\"+Inf\"} 1\n# EOF\n";
        assert_eq!(
            super::sorted_series(text),
            "# TYPE a gauge\na{profile=\"b\"} 2\na{profile=\"z\"} 1\n\
             # TYPE h histogram\nh_bucket{profile=\"x\",le=\"1\"} 1\nh_bucket{profile=\"x\",le=\"+Inf\"} 1\n\
             h_sum{profile=\"y\"} 1\nh_bucket{profile=\"y\",le=\"1\"} 1\n# EOF\n"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_names_counters_by_their_samples() {
        let metrics = Metrics::new();
        metrics.refreshed("p", true, Duration::from_millis(20));
        let open = metrics.render(&VaultData::default(), Utc::now(), Duration::from_secs(60));
        assert!(open.contains("# TYPE tokdeck_refreshes counter") && open.ends_with("# EOF\n"));
        let classic = to_classic(&open);
        assert!(
            classic.contains("# TYPE tokdeck_refreshes_total counter\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# HELP tokdeck_refreshes_total Refreshes"),
            "{classic}"
        );
        assert!(classic.contains("tokdeck_refreshes_total{profile=\"p\",result=\"success\"} 1"));
        assert!(classic.contains("# TYPE tokdeck_refresh_duration_seconds histogram"));
        assert!(!classic.contains("# EOF"));
    }

    #[test]
    fn addresses_default_to_loopback_and_others_must_be_asked_for() {
        assert_eq!(
            parse_address("9184", false).unwrap().to_string(),
            "127.0.0.1:9184"
        );
        assert_eq!(
            parse_address("[::1]:9184", false).unwrap().to_string(),
            "[::1]:9184"
        );
        let err = parse_address("0.0.0.0:9184", false).unwrap_err();
        assert!(err.contains("--metrics-public"), "{err}");
        assert!(parse_address("0.0.0.0:9184", true).is_ok());
        assert!(
            parse_address("metrics.example.com:9184", true)
                .unwrap_err()
                .contains("IP address")
        );
    }
}
