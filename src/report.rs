//! Every profile's state as rows, a table or JSON, and a monitoring exit code: pure functions
//! of the vault's content and the time, shared by `tokdeck status` and the agent.

use std::collections::HashMap;
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

/// Keeps the rows `filter` matches.
pub fn keep_matching(rows: &mut Vec<StatusRow>, filter: &crate::filter::Filter) {
    rows.retain(|r| {
        filter.matches(&crate::filter::Row {
            name: &r.name,
            state: r.state,
            owner: &r.owner,
            environment: &r.environment,
        })
    });
}

/// 0 all fine, 1 something needs attention soon, 2 something is broken now.
pub fn exit_code(rows: &[StatusRow]) -> i32 {
    rows.iter()
        .map(|r| {
            let code = r.state.exit_code();
            // Waiting to be saved needs a person's attention, at least.
            if r.unsaved { code.max(1) } else { code }
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

/// The plain-text table.
pub fn table(rows: &[StatusRow]) -> String {
    if rows.is_empty() {
        return "no profiles yet: add one with `tokdeck add NAME --client-id ID --redirect-uri URI`\n".into();
    }
    let header = [
        "NAME", "ENV", "OWNER", "SCOPES", "ACCESS", "REFRESH", "STATE",
    ];
    // Scopes and hosts come from a shared vault or a server: shown, never executed.
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                untrusted(&r.name).into_owned(),
                untrusted(&r.environment).into_owned(),
                r.owner.clone(),
                untrusted(&r.scopes.join(" ")).into_owned(),
                r.assessment.access_text(),
                r.assessment.refresh_text(),
                r.state.label().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push_row = |cols: &[String]| {
        let line: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    };
    push_row(&header.map(String::from));
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
