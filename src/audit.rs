//! The token-lifecycle audit log: one JSON line per action on a token (authorize, exchange,
//! refresh, app token, device login, check, revoke) and per failure, from the app, the CLI and
//! the agent alike, with short fingerprints of the tokens before and after. A rotation shows
//! as `refresh RT 3f2a9c01.. -> 91bc4e7d..`, which lets an operator prove which machine used
//! which refresh token when a server reports reuse. Never a token, a secret or a code: only the
//! first hex digits of their SHA-256.
//!
//! The file is append-only in practice: opened with `O_APPEND` and mode 0600, one `write` a
//! line (lines from processes writing at once never interleave), and moved aside to `.1` when
//! it passes [`MAX_BYTES`].

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Past this size the log is moved to `audit.jsonl.1` (replacing the one before).
pub const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Hex digits of a token's SHA-256 kept: enough to tell tokens apart, useless to guess them.
const FINGERPRINT_DIGITS: usize = 12;

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Who {
    App,
    Cli,
    Agent,
}

/// Fingerprints of a token pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub host: String,
    pub pid: u32,
    pub who: Who,
    pub profile: String,
    pub action: String,
    /// `ok` or `failed`.
    pub result: String,
    /// For a failure, its class (`refused`, `transient`, `storage`, ...); for a success, what
    /// came of it.
    pub detail: String,
    pub before: Prints,
    pub after: Prints,
}

/// The first hex digits of the SHA-256 of `secret`.
pub fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    crate::display::hex(digest.get(..FINGERPRINT_DIGITS / 2).unwrap_or_default())
}

/// The fingerprints of a profile's tokens.
pub fn prints_of(profile: &crate::vault::Profile) -> Prints {
    use age::secrecy::ExposeSecret;
    let token = profile.token.as_ref();
    Prints {
        access: token.map(|t| fingerprint(t.access_token.expose_secret())),
        refresh: token
            .and_then(|t| t.refresh_token.as_ref())
            .map(|r| fingerprint(r.expose_secret())),
    }
}

/// What happened to a profile's tokens, as the one who acted tells it; the log adds when,
/// where and who.
#[derive(Debug, Clone)]
pub struct Action {
    pub profile: String,
    pub action: String,
    /// `ok` or `failed`.
    pub result: String,
    pub detail: String,
    pub before: Prints,
    pub after: Prints,
}

/// Where a process writes its audit lines, and as whom.
#[derive(Debug, Clone)]
pub struct AuditLog {
    pub path: PathBuf,
    pub who: Who,
}

impl AuditLog {
    /// `audit.jsonl` in `dir`.
    pub fn in_dir(dir: &Path, who: Who) -> Self {
        Self {
            path: dir.join("audit.jsonl"),
            who,
        }
    }

    /// Records `action`, done at `at` by this process.
    pub fn record(&self, at: DateTime<Utc>, action: Action) -> std::io::Result<()> {
        let Action {
            profile,
            action,
            result,
            detail,
            before,
            after,
        } = action;
        self.append(&Entry {
            at,
            host: crate::platform::host_name(),
            pid: std::process::id(),
            who: self.who,
            profile,
            action,
            result,
            detail,
            before,
            after,
        })
    }

    /// Appends `entry` as one line in one write; moves a full log aside first.
    pub fn append(&self, entry: &Entry) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            crate::vault::disk::ensure_private_dir(dir).map_err(std::io::Error::other)?;
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() > MAX_BYTES) {
            // Two processes may both move it: the second rename finds nothing, or moves the
            // fresh file with a line or two; nothing is ever cut in half.
            let _ = std::fs::rename(&self.path, rotated(&self.path));
        }
        // A server's text in `detail` may hold C1 controls or bidi marks: escaped as `\uXXXX`,
        // as every other output does, so `cat audit.jsonl` shows them rather than obeys them.
        let json = serde_json::to_string(entry).map_err(std::io::Error::other)?;
        let mut line = crate::display::json_for_terminal(json).into_bytes();
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        file.write_all(&line)
    }
}

fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// The entries of the log at `path` (and the one moved aside), newest first, for `profile`
/// when named, since `since` when given. Lines that do not parse are skipped.
pub fn read(path: &Path, profile: Option<&str>, since: Option<DateTime<Utc>>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = [rotated(path), path.to_path_buf()]
        .iter()
        .filter_map(|p| File::open(p).ok())
        .flat_map(|f| {
            BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        })
        .filter_map(|line| serde_json::from_str::<Entry>(&line).ok())
        .filter(|e| profile.is_none_or(|p| e.profile == p))
        .filter(|e| since.is_none_or(|s| e.at >= s))
        .collect();
    entries.reverse();
    entries
}

/// The entries in the last `max_bytes` of the log at `path`, newest first: what a screen
/// shows of recent history, without reading megabytes each time.
pub fn read_tail(path: &Path, max_bytes: u64) -> Vec<Entry> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(max_bytes);
    let mut tail = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut tail).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&tail);
    // A cut through the middle of a line leaves its end: skip it.
    let whole = if start > 0 {
        text.split_once('\n').map_or("", |(_, rest)| rest)
    } else {
        &text
    };
    let mut entries: Vec<Entry> = whole
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    entries.reverse();
    entries
}

/// One line for people: `2026-11-25 09:30:00 host agent acme refresh ok RT 3f2a.. -> 91bc..`.
pub fn describe(entry: &Entry) -> String {
    let head = format!(
        "{} {} {} {} {} {}",
        entry.at.format("%Y-%m-%d %H:%M:%S"),
        entry.host,
        who_label(entry.who),
        entry.profile,
        entry.action,
        entry.result
    );
    with_changes(head, entry)
}

/// One step of a profile's timeline, as the app's detail pane shows it: when, the outcome,
/// what, who on which machine, and what became of the refresh token or why it failed:
/// `12-03 09:30 ✓ refresh  agent on build-3: refresh token rotated`.
pub fn describe_step(entry: &Entry, offset: chrono::FixedOffset) -> String {
    let ok = entry.result == "ok";
    let mut line = format!(
        "{} {} {}  {} on {}",
        entry.at.with_timezone(&offset).format("%m-%d %H:%M"),
        if ok { '✓' } else { '✗' },
        entry.action,
        who_label(entry.who),
        crate::display::untrusted_short(&entry.host, 40),
    );
    let refresh = (&entry.before.refresh, &entry.after.refresh);
    let outcome = match refresh {
        _ if !ok => crate::display::untrusted_short(&entry.detail, 80),
        (Some(b), Some(a)) if a != b => "refresh token rotated".into(),
        (Some(_), Some(_)) => "refresh token kept".into(),
        (None, Some(_)) => "new refresh token".into(),
        (Some(_), None) => "refresh token gone".into(),
        (None, None) => String::new(),
    };
    if !outcome.is_empty() {
        let _ = write!(line, ": {outcome}");
    }
    line
}

fn who_label(who: Who) -> &'static str {
    match who {
        Who::App => "app",
        Who::Cli => "cli",
        Who::Agent => "agent",
    }
}

/// `line` with the token changes and the detail after it.
fn with_changes(mut line: String, entry: &Entry) -> String {
    for (label, before, after) in [
        ("RT", &entry.before.refresh, &entry.after.refresh),
        ("AT", &entry.before.access, &entry.after.access),
    ] {
        match (before, after) {
            (Some(b), Some(a)) if a != b => {
                let _ = write!(line, " {label} {b}.. -> {a}..");
            }
            (None, Some(a)) => {
                let _ = write!(line, " {label} -> {a}..");
            }
            (Some(b), None) if entry.result == "ok" => {
                let _ = write!(line, " {label} {b}.. -> (none)");
            }
            _ => {}
        }
    }
    if !entry.detail.is_empty() {
        line.push_str(" (");
        line.push_str(&crate::display::untrusted_short(&entry.detail, 120));
        line.push(')');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(profile: &str, n: u32) -> Entry {
        Entry {
            at: Utc::now(),
            host: "h".into(),
            pid: n,
            who: Who::Cli,
            profile: profile.into(),
            action: "refresh".into(),
            result: "ok".into(),
            detail: "new token saved".into(),
            before: Prints {
                access: Some(fingerprint("old-at")),
                refresh: Some(fingerprint("old-rt")),
            },
            after: Prints {
                access: Some(fingerprint("new-at")),
                refresh: Some(fingerprint("new-rt")),
            },
        }
    }

    #[test]
    fn a_timeline_step_says_who_on_which_machine_and_what_became_of_the_token() {
        let utc = chrono::FixedOffset::east_opt(0).unwrap();
        let mut e = entry("p", 1);
        e.host = "build-3".into();
        e.who = Who::Agent;
        let step = describe_step(&e, utc);
        assert!(
            step.ends_with("✓ refresh  agent on build-3: refresh token rotated"),
            "{step}"
        );
        e.after.refresh = e.before.refresh.clone();
        assert!(describe_step(&e, utc).ends_with("refresh token kept"));
        e.result = "failed".into();
        e.detail = "refused: invalid_grant\u{1b}[2J".into();
        let step = describe_step(&e, utc);
        assert!(
            step.contains("✗ refresh  agent on build-3: refused: invalid_grant"),
            "{step}"
        );
        assert!(!step.contains('\u{1b}'), "{step}");
    }

    #[test]
    fn a_servers_hidden_characters_are_escaped_in_the_log_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::in_dir(dir.path(), Who::Cli);
        let mut hostile = entry("p", 1);
        hostile.detail = "refused: \u{9b}2J \u{202e}gnp.exe \u{200b}".into();
        log.append(&hostile).unwrap();
        let text = std::fs::read_to_string(&log.path).unwrap();
        assert!(!text.contains(['\u{9b}', '\u{202e}', '\u{200b}']), "{text}");
        assert!(
            text.contains("\\u009b") && text.contains("\\u202e"),
            "{text}"
        );
        let back = read(&log.path, None, None);
        assert_eq!(back[0].detail, hostile.detail);
    }

    #[test]
    fn fingerprints_are_short_stable_and_hide_the_token() {
        // The first hex digits of the SHA-256 (FIPS 180-2's "abc" example).
        assert_eq!(fingerprint("abc"), "ba7816bf8f01");
        let print = fingerprint("secret-token");
        assert_eq!(print.len(), FINGERPRINT_DIGITS);
        assert_eq!(print, fingerprint("secret-token"));
        assert_ne!(print, fingerprint("secret-tokem"));
        assert!(!print.contains("secret"));
        let line = describe(&entry("acme", 1));
        assert!(
            line.contains(&format!(
                "RT {}.. -> {}..",
                fingerprint("old-rt"),
                fingerprint("new-rt")
            )),
            "{line}"
        );
    }

    #[test]
    fn lines_from_writers_at_once_never_interleave_and_are_read_newest_first() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::in_dir(&dir.path().join("state"), Who::Agent);
        std::thread::scope(|s| {
            for t in 0..8 {
                let log = log.clone();
                s.spawn(move || {
                    for n in 0..200 {
                        let mut e = entry(&format!("p{t}"), n);
                        e.detail = "x".repeat(300 + n as usize);
                        log.append(&e).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&log.path).unwrap();
        assert_eq!(text.lines().count(), 1600);
        for line in text.lines() {
            serde_json::from_str::<Entry>(line).unwrap();
        }
        let mode = std::fs::metadata(&log.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let p3 = read(&log.path, Some("p3"), None);
        assert_eq!(p3.len(), 200);
        assert_eq!(p3[0].pid, 199, "newest first");
        // The tail: only whole lines, newest first, fewer of them.
        let tail = read_tail(&log.path, 16 * 1024);
        assert!(!tail.is_empty() && tail.len() < 1600, "{}", tail.len());
        assert_eq!(tail[0], read(&log.path, None, None)[0]);
    }
}
