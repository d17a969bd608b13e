//! The detail pane: the selected profile, most urgent facts first.

use age::secrecy::ExposeSecret;
use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::{fg, safe};
use crate::display::{MAX_ERROR_LINE, untrusted_short};
use crate::health::Assessment;
use crate::tui::app::App;
use crate::tui::theme::Theme;
use crate::vault::{Profile, Token};

const MASK: &str = "••••••••";

/// Audit lines the pane shows for the selected profile, newest first: its timeline (J
/// scrolls to it when the pane is short).
const HISTORY: usize = 8;

/// The most characters of one value the pane draws: more than any screen shows, and a bound on
/// the work of escaping and wrapping a value of megabytes (notes, a revealed token) at every
/// frame.
const MAX_SHOWN: usize = 4096;

/// `text` made safe to draw and cut to [`MAX_SHOWN`] characters, saying so when cut.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_SHOWN) {
        None => safe(text),
        Some((end, _)) => format!(
            "{}… (cut: {} KiB in all)",
            safe(&text[..end]),
            text.len().div_ceil(1024)
        ),
    }
}

fn local(app: &App, at: DateTime<Utc>) -> String {
    at.with_timezone(&app.settings.utc_offset)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn secret_text(revealed: bool, value: &str) -> String {
    if revealed {
        bounded(value)
    } else {
        format!("{MASK} (v reveals)")
    }
}

/// The width of the labels' column.
const LABEL: usize = 14;

/// A label and a value, in the pane's two columns.
fn row(theme: &Theme, name: &str, value: Span<'static>) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{name:<LABEL$}"), fg(theme.muted)),
        value,
    ])
}

/// `lines` wrapped at `width`: a value too long for its line goes on under the value, not
/// under the label, broken at a space when one is near.
fn aligned(lines: Vec<Line<'static>>, width: usize) -> Vec<Line<'static>> {
    let room = width.saturating_sub(LABEL);
    if room < 8 {
        // Too narrow for two columns: the paragraph wraps as it can.
        return lines;
    }
    lines
        .into_iter()
        .flat_map(|line| split_row(line, room))
        .collect()
}

fn split_row(line: Line<'static>, room: usize) -> Vec<Line<'static>> {
    let [label, value] = line.spans.as_slice() else {
        return vec![line];
    };
    let chars: Vec<char> = value.content.chars().collect();
    if chars.len() <= room {
        return vec![line];
    }
    let mut out = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let mut end = (start + room).min(chars.len());
        if end < chars.len() {
            // Break after the last space of the second half, if there is one.
            if let Some(space) = (start + room / 2..end).rev().find(|&i| chars[i] == ' ') {
                end = space + 1;
            }
        }
        let piece: String = chars[start..end].iter().collect();
        let head = if start == 0 {
            label.clone()
        } else {
            Span::raw(" ".repeat(LABEL))
        };
        out.push(Line::from(vec![head, Span::styled(piece, value.style)]));
        start = end;
    }
    out
}

fn detail_lines(app: &App, p: &Profile, a: &Assessment, theme: &Theme) -> Vec<Line<'static>> {
    let plain = |name: &str, value: String| row(theme, name, Span::raw(value));
    let shown = app.revealed(&p.name);
    // Most important first: a small screen shows only the top of this list.
    let mut lines = Vec::new();
    if let Some(e) = &p.last_error {
        let text = untrusted_short(e, MAX_ERROR_LINE);
        lines.push(row(
            theme,
            "last error",
            Span::styled(text, fg(theme.danger)),
        ));
    }
    match &p.token {
        None => lines.push(row(
            theme,
            "token",
            Span::styled("none: press a to authorize", fg(theme.warn)),
        )),
        Some(t) => lines.extend(token_lines(app, t, a, shown, theme)),
    }
    if let Some(c) = &p.last_check {
        let owner = format!(
            "{} (checked {})",
            safe(&c.owner_line()),
            local(app, c.checked_at)
        );
        lines.push(plain("owner", owner));
    }
    lines.extend(team_lines(app, p, theme));
    if p.pending.is_some() {
        let hint = "authorization started: press e to paste the code";
        lines.push(row(theme, "pending", Span::styled(hint, fg(theme.accent))));
    }
    lines.extend([
        plain(
            "scopes",
            format!("{} ({} token)", safe(&p.scope_string()), p.owner),
        ),
        plain("token URL", safe(&p.endpoints.token())),
        plain("client id", safe(&p.client_id)),
        plain(
            "client secret",
            secret_text(shown, p.client_secret.expose_secret()),
        ),
        plain("redirect", safe(&p.redirect_uri)),
    ]);
    if let Some(group) = &p.group {
        lines.push(plain("group", safe(group)));
    }
    if !p.notes.is_empty() {
        lines.push(plain("notes", bounded(&p.notes)));
    }
    lines.extend(history_lines(app, p, theme));
    lines
}

/// For a vault a team shares: the agents keeping the profile, its last refresh, the lease.
fn team_lines(app: &App, p: &Profile, theme: &Theme) -> Vec<Line<'static>> {
    let view = match &app.team {
        None => return Vec::new(),
        Some(Err(e)) => {
            let said = e.to_string();
            let text = format!("cannot read it: {}", untrusted_short(&said, MAX_ERROR_LINE));
            return vec![row(theme, "team", Span::styled(text, fg(theme.danger)))];
        }
        Some(Ok(view)) => view,
    };
    let team = view.for_profile(&p.name, p.group.as_deref(), p.auto_refresh);
    let kept = if team.unkept {
        let text =
            "no agent, though auto-refresh is on: start `tokdeck agent` on a machine of the team";
        Span::styled(text, fg(theme.warn))
    } else if !p.auto_refresh {
        Span::styled("no agent: auto-refresh is off", fg(theme.muted))
    } else {
        Span::raw(format!("agents on {}", team.kept_by.join(", ")))
    };
    let mut lines = vec![row(theme, "kept by", kept)];
    if let Some(last) = &team.last_refresh {
        let text = format!("{} on {}", local(app, last.at), safe(&last.host));
        lines.push(row(theme, "last saved", Span::raw(text)));
    }
    let lease = view.team.lease.as_deref().map_or("free".into(), safe);
    lines.push(row(theme, "lease", Span::raw(lease)));
    lines
}

/// The profile's last audit entries, newest first: time, outcome, action, machine.
fn history_lines(app: &App, p: &Profile, theme: &Theme) -> Vec<Line<'static>> {
    app.audit
        .iter()
        .filter(|e| e.profile == p.name)
        .take(HISTORY)
        .enumerate()
        .map(|(i, entry)| {
            let label = if i == 0 { "history" } else { "" };
            let text = crate::audit::describe_step(entry, app.settings.utc_offset);
            let style = if entry.result == "ok" {
                Style::default()
            } else {
                fg(theme.danger)
            };
            row(theme, label, Span::styled(bounded(&text), style))
        })
        .collect()
}

/// Expiry, refresh window, when obtained, and the (masked) tokens.
fn token_lines(
    app: &App,
    t: &Token,
    a: &Assessment,
    shown: bool,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let plain = |name: &str, value: String| row(theme, name, Span::raw(value));
    let expires = match t.expires_at {
        Some(at) => format!("{} ({})", local(app, at), a.access_text()),
        None => "never (company token)".into(),
    };
    let mut lines = vec![plain("expires", expires)];
    if let Some(end) = t.refresh_expires_at {
        lines.push(plain(
            "refresh until",
            format!("{} ({})", local(app, end), a.refresh_text()),
        ));
    }
    lines.push(plain("obtained", local(app, t.obtained_at)));
    lines.push(plain(
        "access token",
        secret_text(shown, t.access_token.expose_secret()),
    ));
    if let Some(r) = &t.refresh_token {
        lines.push(plain(
            "refresh token",
            secret_text(shown, r.expose_secret()),
        ));
    }
    lines
}

/// The pane's text for the selected profile, line by line, as it goes to be wrapped.
pub fn detail_text(app: &App, theme: &Theme) -> Option<String> {
    let (p, a) = (app.selected()?, app.selected_assessment()?);
    let lines = detail_lines(app, p, a, theme);
    Some(
        lines
            .iter()
            .map(|line| {
                line.spans
                    .iter()
                    .map(|s| s.content.as_ref())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The pane's lines for the selected profile, wrapped for a pane of `area`.
fn pane_lines(app: &App, area: Rect, theme: &Theme) -> Vec<Line<'static>> {
    let lines = match (app.selected(), app.selected_assessment()) {
        (Some(p), Some(a)) => detail_lines(app, p, a, theme),
        _ => vec![Line::styled("nothing selected", fg(theme.muted))],
    };
    aligned(lines, usize::from(area.width.saturating_sub(2)))
}

/// How many lines the pane in `area` can scroll by: its lines beyond what it shows.
pub fn detail_overflow(app: &App, area: Rect, theme: &Theme) -> u16 {
    let shown = usize::from(area.height.saturating_sub(2));
    let lines = pane_lines(app, area, theme).len();
    u16::try_from(lines.saturating_sub(shown)).unwrap_or(u16::MAX)
}

pub fn draw_detail(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let overflow = detail_overflow(app, area, theme);
    let scroll = app.detail_scroll().min(overflow);
    let more = match (scroll > 0, scroll < overflow) {
        (false, false) => "",
        (false, true) => " (J more)",
        (true, true) => " (J/K more)",
        (true, false) => " (K back)",
    };
    let title = app.selected().map_or_else(
        || " details ".into(),
        |p| format!(" {}{more} ", safe(&p.name)),
    );
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(fg(theme.border))
        .title(title);
    frame.render_widget(
        Paragraph::new(pane_lines(app, area, theme))
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0)),
        area,
    );
}
