//! Every profile's state as rows, a table or JSON, and a monitoring exit code: pure functions
//! of the vault's content and the time, shared by `tokdeck status` and the agent.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::display::{MAX_ERROR_LINE, untrusted, untrusted_short};
use crate::health::{Assessment, Health};
use crate::vault::{CheckResult, Profile, Provider, Store, VaultData};

/// One profile as `status --json` prints it. Field names are a stable interface.
#[derive(Debug, Serialize)]
pub struct StatusRow {
    pub name: String,
    /// Its group; left out for a profile in none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub environment: String,
    pub owner: String,
    pub scopes: Vec<String>,
    pub state: Health,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub access_expires_in_secs: Option<i64>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub refresh_window_left_secs: Option<i64>,
    pub owner_identity: Option<String>,
    pub last_error: Option<String>,
    /// A new token of this profile waits to be saved ([`crate::worker::Spool`]): the refresh
    /// token in the vault is dead until it is.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unsaved: bool,
    /// For a vault a team shares: its last refresh, the agents keeping it, and whether none
    /// does though it renews by auto-refresh ([`crate::team`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<crate::team::ProfileTeam>,
    /// Its auto-refresh setting, which says whether an agent should keep it.
    #[serde(skip)]
    pub auto_refresh: bool,
    /// The countdowns the table shows.
    #[serde(skip)]
    pub assessment: Assessment,
}

impl StatusRow {
    fn of(profile: &Profile, now: DateTime<Utc>, warn: Duration, environment: String) -> Self {
        let a = Assessment::of(profile, now, warn);
        let token = profile.token.as_ref();
        Self {
            name: profile.name.clone(),
            group: profile.group.clone(),
            environment,
            owner: profile.owner.to_string(),
            scopes: profile.scopes.clone(),
            state: a.health,
            access_expires_at: token.and_then(|t| t.expires_at),
            access_expires_in_secs: a.access_left,
            refresh_expires_at: token.and_then(|t| t.refresh_expires_at),
            refresh_window_left_secs: a.refresh_left,
            owner_identity: profile.last_check.as_ref().map(CheckResult::owner_line),
            last_error: profile.last_error.clone(),
            unsaved: false,
            team: None,
            auto_refresh: profile.auto_refresh,
            assessment: a,
        }
    }
}

/// Rows sorted by urgency, then name.
pub fn rows(data: &VaultData, now: DateTime<Utc>, warn: Duration) -> Vec<StatusRow> {
    // Thousands of profiles share a few servers: each server's URL is parsed once.
    let mut environments: HashMap<&str, String> = HashMap::new();
    let mut rows: Vec<_> = data
        .profiles
        .iter()
        .map(|p| {
            let environment = match p.provider {
                Provider::Custom => environments
                    .entry(&p.endpoints.base_url)
                    .or_insert_with(|| p.environment())
                    .clone(),
                _ => p.environment(),
            };
            StatusRow::of(p, now, warn, environment)
        })
        .collect();
    rows.sort_by(|a, b| a.state.cmp(&b.state).then_with(|| a.name.cmp(&b.name)));
    rows
}

/// What `status` asks for.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub now: DateTime<Utc>,
    pub warn: Duration,
    pub filter: &'a crate::filter::Filter,
    pub json: bool,
}

/// What `status` shows: the text, the exit code, and the warnings about profile fields that
/// hold control characters (the CLI says them; the agent, answering a socket, does not).
pub struct Shown {
    pub text: String,
    pub code: i32,
    pub warnings: Vec<String>,
}

/// What `status` prints of `store` (a table or JSON, the team's part included for a vault a
/// team shares), and its exit code: the one answer the CLI and the agent give.
pub fn status_of(store: &Store, asked: Asked<'_>) -> anyhow::Result<Shown> {
    let (mut rows, warnings) = store.read_status(|data| {
        (
            rows(data, asked.now, asked.warn),
            crate::context::control_character_warnings(data),
        )
    })?;
    // The team's part is extra: a store that cannot tell it still gets the table.
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    let team = store.team_of(&names).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read the team beside the vault");
        None
    });
    if let Some(view) = &team {
        add_team(&mut rows, view);
    }
    keep_matching(&mut rows, asked.filter);
    if let Some(spool) = crate::worker::Spool::for_vault(store.location()) {
        mark_unsaved(&mut rows, &spool, store);
    }
    let code = exit_code(&rows);
    let text = if asked.json {
        json(&mut rows)? + "\n"
    } else {
        let mut text = table(&rows);
        if let Some(view) = &team {
            text.push_str(&team_lines(&rows, view));
        }
        text
    };
    Ok(Shown {
        text,
        code,
        warnings,
    })
}

/// Keeps the rows `filter` matches.
pub fn keep_matching(rows: &mut Vec<StatusRow>, filter: &crate::filter::Filter) {
    rows.retain(|r| {
        let machines = r.team.as_ref().map(|t| t.machines()).unwrap_or_default();
        filter.matches(&crate::filter::Row {
            name: &r.name,
            state: r.state,
            owner: &r.owner,
            environment: &r.environment,
            group: r.group.as_deref(),
            machines: &machines,
            unkept: r.team.as_ref().is_some_and(|t| t.unkept),
        })
    });
}

/// Adds what the team sharing the vault says of each row ([`crate::team`]).
pub fn add_team(rows: &mut [StatusRow], view: &crate::vault::TeamView) {
    for row in rows {
        row.team = Some(view.for_profile(&row.name, row.group.as_deref(), row.auto_refresh));
    }
}

/// The line `status` ends its table with for a vault a team shares, and one for the
/// auto-refresh profiles no agent keeps.
pub fn team_lines(rows: &[StatusRow], view: &crate::vault::TeamView) -> String {
    let mut out = format!("team: {}\n", view.team.summary());
    let unkept = rows
        .iter()
        .filter(|r| r.team.as_ref().is_some_and(|t| t.unkept))
        .count();
    if unkept > 0 {
        let profiles = if unkept == 1 { "profile" } else { "profiles" };
        let _ = writeln!(
            out,
            "{unkept} {profiles} with auto-refresh but no agent keeping them: start one (tokdeck agent) on a machine of the team, or they expire"
        );
    }
    out
}

/// 0 all fine, 1 something needs attention soon, 2 something is broken now.
pub fn exit_code(rows: &[StatusRow]) -> i32 {
    rows.iter()
        .map(|r| {
            let code = r.state.exit_code();
            // Waiting to be saved, or kept by no agent, needs a person's attention, at least.
            let unkept = r.team.as_ref().is_some_and(|t| t.unkept);
            if r.unsaved || unkept {
                code.max(1)
            } else {
                code
            }
        })
        .max()
        .unwrap_or(0)
}

/// Marks the rows whose profile has a new token waiting in `spool` to be saved.
pub fn mark_unsaved(rows: &mut [StatusRow], spool: &crate::worker::Spool, store: &Store) {
    if spool.is_empty() {
        return;
    }
    for row in rows {
        row.unsaved = spool.path(store, &row.name).exists();
    }
}

/// The table's header and cells. A GROUP column only where some profile has a group: a vault
/// without groups reads as before. Scopes and hosts come from a shared vault or a server:
/// shown, never executed.
fn table_cells(rows: &[StatusRow]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let grouped = rows.iter().any(|r| r.group.is_some());
    let mut header = vec!["NAME"];
    if grouped {
        header.push("GROUP");
    }
    header.extend(["ENV", "OWNER", "SCOPES", "ACCESS", "REFRESH", "STATE"]);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![untrusted(&r.name).into_owned()];
            if grouped {
                cells.push(
                    r.group
                        .as_deref()
                        .map_or("-".into(), |g| untrusted(g).into_owned()),
                );
            }
            cells.extend([
                untrusted(&r.environment).into_owned(),
                r.owner.clone(),
                untrusted(&r.scopes.join(" ")).into_owned(),
                r.assessment.access_text(),
                r.assessment.refresh_text(),
                r.state.label().to_string(),
            ]);
            cells
        })
        .collect();
    (header, cells)
}

/// The plain-text table.
pub fn table(rows: &[StatusRow]) -> String {
    if rows.is_empty() {
        return "no profiles yet: add one with `tokdeck add NAME --client-id ID --redirect-uri URI`\n".into();
    }
    let (header, cells) = table_cells(rows);
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push_row = |cols: &[String]| {
        let line: Vec<String> = cols
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    };
    push_row(&header.iter().map(ToString::to_string).collect::<Vec<_>>());
    for row in &cells {
        push_row(row);
    }
    for r in rows.iter().filter(|r| r.unsaved) {
        out.push_str(&untrusted(&r.name));
        out.push_str(": a new token waits to be saved (the refresh token in the vault is dead until then): tokdeck saves it at the next action on it\n");
    }
    for r in rows.iter().filter(|r| r.last_error.is_some()) {
        let error = r.last_error.as_deref().unwrap_or_default();
        out.push_str(&untrusted(&r.name));
        out.push_str(": ");
        out.push_str(&untrusted_short(error, MAX_ERROR_LINE));
        out.push('\n');
    }
    out
}

/// JSON array sorted by name, so that successive runs diff cleanly.
pub fn json(rows: &mut [StatusRow]) -> anyhow::Result<String> {
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    // About 500 bytes a row: sized once rather than grown by copying at thousands of rows.
    let mut out = Vec::with_capacity(rows.len() * 512 + 2);
    serde_json::to_writer_pretty(&mut out, rows)?;
    Ok(crate::display::json_for_terminal(String::from_utf8(out)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::{Endpoints, Profile};

    fn vault(groups: &[Option<&str>]) -> VaultData {
        let mut data = VaultData::default();
        for (i, group) in groups.iter().enumerate() {
            let mut p = Profile::new(
                format!("p{i}"),
                Provider::Factorial,
                Endpoints::at("https://api.factorialhr.com"),
                "c".into(),
                age::secrecy::SecretString::from("s"),
                "urn:ietf:wg:oauth:2.0:oob".into(),
            );
            p.group = group.map(String::from);
            data.profiles.push(p);
        }
        data
    }

    fn header(groups: &[Option<&str>]) -> String {
        let rows = rows(&vault(groups), Utc::now(), Duration::from_secs(600));
        table(&rows).lines().next().unwrap_or_default().to_string()
    }

    #[test]
    fn the_group_column_shows_only_where_some_profile_has_a_group() {
        assert!(!header(&[None, None]).contains("GROUP"));
        assert!(header(&[None, Some("payroll")]).starts_with("NAME  GROUP    ENV"));
        let text = table(&rows(
            &vault(&[None, Some("payroll")]),
            Utc::now(),
            Duration::ZERO,
        ));
        assert!(text.contains("p0    -        "), "{text}");
        assert!(text.contains("p1    payroll  "), "{text}");
        let json = json(&mut rows(
            &vault(&[Some("payroll")]),
            Utc::now(),
            Duration::ZERO,
        ));
        assert!(json.unwrap().contains("\"group\": \"payroll\""));
    }
}
