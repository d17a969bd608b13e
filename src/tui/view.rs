//! Rendering: a pure function of the app state. Only visible rows are formatted.

use age::secrecy::ExposeSecret;
use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, Wrap};

use super::app::{App, ConfirmKind, Mode};
use super::form::FieldKind;
use super::keymap::BINDINGS;
use super::theme::Theme;
use crate::display::{MAX_SERVER_TEXT, untrusted, untrusted_short};
use crate::health::{Assessment, Health};
use crate::vault::Profile;

const SPINNER: [&str; 8] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧"];
const MASK: &str = "••••••••";

/// Longest error line shown: our words around a server's text of at most 300 characters.
const MAX_ERROR_LINE: usize = MAX_SERVER_TEXT + 100;

/// Text from a server, a shared vault or a paste, made safe to draw (see [`crate::display`]).
fn safe(text: &str) -> String {
    untrusted(text).into_owned()
}

fn fg(c: Color) -> Style {
    Style::default().fg(c)
}

/// Below this size the screen shows only a request for a larger terminal.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 8;

/// Where each part of the main screen goes.
pub struct Areas {
    pub header: Rect,
    pub table: Rect,
    pub detail: Option<Rect>,
    pub log: Option<Rect>,
    pub footer: Rect,
}

/// The main screen's layout for a terminal of `area`: the detail pane goes beside the table
/// from 140 columns, below it when there is height to spare, and away on small screens.
pub fn areas(area: Rect, show_log: bool) -> Areas {
    let log_height = if show_log && area.height >= 20 { 7 } else { 0 };
    let [header, body, log, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(log_height),
        Constraint::Length(1),
    ])
    .areas(area);
    let log = (log_height > 0).then_some(log);
    if body.width >= 140 {
        let [t, d] = Layout::horizontal([Constraint::Min(60), Constraint::Length(56)]).areas(body);
        return Areas {
            header,
            table: t,
            detail: Some(d),
            log,
            footer,
        };
    }
    if body.height >= 16 {
        let detail = (body.height / 2).clamp(6, 12);
        let [t, d] = Layout::vertical([Constraint::Min(3), Constraint::Length(detail)]).areas(body);
        return Areas {
            header,
            table: t,
            detail: Some(d),
            log,
            footer,
        };
    }
    Areas {
        header,
        table: body,
        detail: None,
        log,
        footer,
    }
}

/// How many profile rows the table shows on a terminal of `area`: what PgUp/PgDn move by.
pub fn table_rows(area: Rect, show_log: bool) -> usize {
    usize::from(areas(area, show_log).table.height.saturating_sub(3))
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App, theme: &Theme) {
    let area = frame.area();
    frame.render_widget(
        Block::default().style(Style::default().bg(theme.background).fg(theme.text)),
        area,
    );
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        draw_too_small(frame, area, theme);
        return;
    }
    let parts = areas(area, app.show_log);
    draw_header(frame, parts.header, app, theme);
    draw_table(frame, parts.table, app, theme);
    if let Some(detail) = parts.detail {
        draw_detail(frame, detail, app, theme);
    }
    if let Some(log) = parts.log {
        draw_log(frame, log, app, theme);
    }
    draw_footer(frame, parts.footer, app, theme);
    match &app.mode {
        Mode::Help { scroll } => draw_help(frame, area, theme, *scroll),
        Mode::Authorize(popup) => {
            let mut lines = vec![Line::from(format!("Authorize {}", safe(&popup.profile)))];
            match &popup.url {
                None => lines.push(Line::styled("building the URL…", fg(theme.muted))),
                Some(url) => {
                    lines.push(Line::from(""));
                    lines.push(Line::styled(url.clone(), fg(theme.accent)));
                    lines.push(Line::from(""));
                    lines.push(Line::from("Sent to the terminal's clipboard (OSC 52); opened in a browser when one is available."));
                    lines.push(Line::from(match popup.listening_on {
                        Some(addr) => format!("Waiting for the redirect on {addr}… Esc hides this, the listener keeps going."),
                        None => "Approve it, then press e (or Enter) to paste the code or redirect URL.".into(),
                    }));
                }
            }
            popup_text(frame, area, "authorize", lines, theme, 70);
        }
        Mode::Paste { profile, input } => {
            let lines = vec![
                Line::from(format!(
                    "Paste the code or the whole redirect URL for {}:",
                    safe(profile)
                )),
                Line::from(""),
                Line::from(vec![
                    Span::styled(safe(input), fg(theme.accent)),
                    Span::raw("▏"),
                ]),
                Line::from(""),
                Line::styled("Enter exchanges · Esc cancels", fg(theme.muted)),
            ];
            popup_text(frame, area, "exchange", lines, theme, 70);
        }
        Mode::Confirm { kind, profile } => {
            let question = match kind {
                ConfirmKind::Delete => {
                    format!(
                        "Delete profile {} and its tokens from the vault?",
                        safe(profile)
                    )
                }
                ConfirmKind::Revoke => format!("Revoke {}'s tokens at the server?", safe(profile)),
            };
            let lines = vec![
                Line::from(question),
                Line::from(""),
                Line::styled("y confirms · any other key cancels", fg(theme.muted)),
            ];
            popup_text(frame, area, "confirm", lines, theme, 60);
        }
        Mode::Form(form) => {
            let mut lines = Vec::new();
            for (i, f) in form.fields.iter().enumerate() {
                let value = match f.kind {
                    FieldKind::Secret if f.value.is_empty() && form.original.is_some() => {
                        "(unchanged)".to_string()
                    }
                    FieldKind::Secret => "•".repeat(f.value.chars().count()),
                    FieldKind::Choice(_) | FieldKind::Toggle => format!("‹ {} ›", f.value),
                    FieldKind::Text => safe(&f.value),
                };
                let focused = i == form.focus;
                let style = if focused {
                    fg(theme.accent).add_modifier(Modifier::BOLD)
                } else {
                    fg(theme.text)
                };
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("{}{:<14}", if focused { "▶ " } else { "  " }, f.label),
                        style,
                    ),
                    Span::styled(value, style),
                    Span::raw(
                        if focused && matches!(f.kind, FieldKind::Text | FieldKind::Secret) {
                            "▏"
                        } else {
                            ""
                        },
                    ),
                ]));
            }
            lines.push(Line::from(""));
            if let Some(e) = &form.error {
                lines.push(Line::styled(e.clone(), fg(theme.danger)));
            }
            lines.push(Line::styled(
                "Tab/↑↓ move · Space/←→ choose · Enter saves · Esc cancels",
                fg(theme.muted),
            ));
            let title = if form.original.is_some() {
                "edit profile"
            } else {
                "new profile"
            };
            popup_text(frame, area, title, lines, theme, 72);
        }
        Mode::Normal | Mode::Filter => {}
    }
}

fn draw_too_small(frame: &mut Frame, area: Rect, theme: &Theme) {
    let text = format!(
        "terminal too small ({}x{}): tokdeck needs at least {MIN_WIDTH}x{MIN_HEIGHT}; q quits",
        area.width, area.height
    );
    frame.render_widget(
        Paragraph::new(text)
            .style(fg(theme.warn))
            .wrap(Wrap { trim: true }),
        area,
    );
}

fn draw_header(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let s = app.summary();
    let mut spans = vec![Span::styled(
        " tokdeck ",
        fg(theme.accent).add_modifier(Modifier::BOLD),
    )];
    // The filter comes first, so it stays on screen however narrow the terminal is.
    if !app.filter.is_empty() || matches!(app.mode, Mode::Filter) {
        spans.push(Span::styled(
            format!(" filter: {}", safe(&app.filter)),
            fg(theme.accent),
        ));
        if matches!(app.mode, Mode::Filter) {
            spans.push(Span::raw("▏"));
        }
        spans.push(Span::raw(" "));
    }
    let counts = [
        (s.ok, "ok", theme.ok),
        (s.expiring, "expiring", theme.warn),
        (s.stale, "stale", theme.warn),
        (s.expired, "expired", theme.expired),
        (s.error, "error", theme.danger),
        (s.no_token, "no token", theme.muted),
    ];
    let mut first = true;
    for (n, label, colour) in counts {
        // Zero counts say nothing; "0 ok" does (everything needs attention).
        if n == 0 && label != "ok" {
            continue;
        }
        let sep = if first { " " } else { " · " };
        spans.push(Span::styled(format!("{sep}{n} {label}"), fg(colour)));
        first = false;
    }
    spans.push(Span::styled(
        format!("  sort: {}", app.sort.label()),
        fg(theme.muted),
    ));
    spans.push(Span::styled(
        format!("  {}", safe(&app.settings.vault_label)),
        fg(theme.muted),
    ));
    frame.render_widget(Line::from(spans), area);
}

/// The colour of a countdown: never, fine, within warn, within an hour, over.
fn countdown_color(left: Option<i64>, has: bool, warn_secs: i64, theme: &Theme) -> Color {
    match left {
        _ if !has => theme.muted,
        None => theme.never,
        Some(s) if s <= 0 => theme.expired,
        Some(s) if s <= 3_600 => theme.danger,
        Some(s) if s <= warn_secs => theme.warn,
        Some(_) => theme.ok,
    }
}

fn health_color(h: Health, theme: &Theme) -> Color {
    match h {
        Health::Error => theme.danger,
        Health::Expired => theme.expired,
        Health::NoToken => theme.muted,
        Health::Stale | Health::Expiring => theme.warn,
        Health::Ok => theme.ok,
    }
}

/// First visible row so that the cursor is on screen.
pub fn scroll_offset(cursor: usize, height: usize) -> usize {
    if height == 0 {
        0
    } else {
        cursor.saturating_sub(height - 1)
    }
}

/// A table column: its title, how wide its content may grow, and its place in the order in
/// which columns give way on narrow screens (lower gives way first; `None` never does).
struct Column {
    title: &'static str,
    max: usize,
    drop_rank: Option<u8>,
}

const COLUMNS: [Column; 7] = [
    Column {
        title: "NAME",
        max: 32,
        drop_rank: None,
    },
    Column {
        title: "ENV",
        max: 24,
        drop_rank: Some(2),
    },
    Column {
        title: "OWNER",
        max: 7,
        drop_rank: Some(1),
    },
    Column {
        title: "SCOPES",
        max: 24,
        drop_rank: Some(0),
    },
    Column {
        title: "ACCESS",
        max: 16,
        drop_rank: None,
    },
    Column {
        title: "REFRESH",
        max: 14,
        drop_rank: Some(3),
    },
    Column {
        title: "STATE",
        max: 14,
        drop_rank: None,
    },
];
const NAME_COL: usize = 0;
const MIN_NAME: usize = 6;

/// Column widths from the content of the visible rows, capped; columns that do not fit give
/// way in rank order, then NAME shrinks. Returns the shown columns' indices and widths.
fn column_widths(cells: &[[String; 7]], available: usize) -> Vec<(usize, usize)> {
    let mut widths: Vec<(usize, usize)> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, col)| {
            let content = cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0);
            (i, content.max(col.title.len()).min(col.max))
        })
        .collect();
    let total = |w: &[(usize, usize)]| -> usize {
        w.iter().map(|(_, n)| n).sum::<usize>() + w.len().saturating_sub(1)
    };
    for rank in 0..4u8 {
        if total(&widths) <= available {
            break;
        }
        widths.retain(|(i, _)| COLUMNS[*i].drop_rank != Some(rank));
    }
    let excess = total(&widths).saturating_sub(available);
    if let Some((_, name)) = widths.iter_mut().find(|(i, _)| *i == NAME_COL) {
        *name = name.saturating_sub(excess).max(MIN_NAME);
    }
    widths
}

fn table_cells(app: &App, i: usize) -> [String; 7] {
    let p = &app.profiles[i];
    let a = &app.assessments[i];
    let state = match app.busy.get(&p.name) {
        Some(b) => format!("{}… {}", b.verb, SPINNER[app.spinner % SPINNER.len()]),
        None => a.health.label().to_string(),
    };
    [
        safe(&p.name),
        safe(&p.environment()),
        p.owner.to_string(),
        safe(&p.scope_string()),
        a.access_text(),
        a.refresh_text(),
        state,
    ]
}

fn draw_table(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(fg(theme.border))
        .title(Span::styled(
            format!(" profiles {}/{} ", app.order.len(), app.profiles.len()),
            fg(theme.text),
        ));
    let inner_height = area.height.saturating_sub(3) as usize;
    if app.order.is_empty() {
        let text = if app.profiles.is_empty() {
            "No profiles yet. Press n to add one (or run `tokdeck add`)."
        } else {
            "No profile matches the filter. Esc clears it."
        };
        frame.render_widget(
            Paragraph::new(text)
                .style(fg(theme.muted))
                .wrap(Wrap { trim: true })
                .block(block),
            area,
        );
        return;
    }
    let offset = scroll_offset(app.cursor, inner_height);
    let warn = app.settings.warn.as_secs() as i64;
    let visible: Vec<(usize, usize)> = app
        .order
        .iter()
        .copied()
        .enumerate()
        .skip(offset)
        .take(inner_height)
        .collect();
    let cells: Vec<[String; 7]> = visible.iter().map(|&(_, i)| table_cells(app, i)).collect();
    let shown = column_widths(&cells, usize::from(area.width.saturating_sub(2)));
    let rows = visible.iter().zip(cells).map(|(&(pos, i), texts)| {
        let a = &app.assessments[i];
        let style_of = |col: usize| match col {
            1 | 3 => fg(theme.muted),
            4 => fg(countdown_color(a.access_left, a.has_token, warn, theme)),
            5 => fg(countdown_color(
                a.refresh_left,
                a.refresh_left.is_some(),
                warn,
                theme,
            )),
            6 => fg(health_color(a.health, theme)),
            _ => Style::default(),
        };
        let row = Row::new(
            shown
                .iter()
                .map(|&(col, _)| Cell::from(texts[col].clone()).style(style_of(col))),
        );
        if pos != app.cursor {
            return row;
        }
        row.style(if theme.monochrome {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
                .bg(theme.selected)
                .add_modifier(Modifier::BOLD)
        })
    });
    let header = Row::new(shown.iter().map(|&(col, _)| COLUMNS[col].title))
        .style(fg(theme.muted).add_modifier(Modifier::BOLD));
    let widths = shown.iter().map(|&(_, w)| Constraint::Length(w as u16));
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(block)
            .column_spacing(1),
        area,
    );
}

fn local(app: &App, at: DateTime<Utc>) -> String {
    at.with_timezone(&app.settings.utc_offset)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn secret_text(revealed: bool, value: &str) -> String {
    if revealed {
        safe(value)
    } else {
        format!("{MASK} (v reveals)")
    }
}

fn detail_lines(app: &App, p: &Profile, a: &Assessment, theme: &Theme) -> Vec<Line<'static>> {
    let label = |s: &str| Span::styled(format!("{s:<14}"), fg(theme.muted));
    let row = |name: &str, value: String| Line::from(vec![label(name), Span::raw(value)]);
    let shown = app.revealed(&p.name);
    // Most important first: a small screen shows only the top of this list.
    let mut lines = Vec::new();
    if let Some(e) = &p.last_error {
        lines.push(Line::from(vec![
            label("last error"),
            Span::styled(untrusted_short(e, MAX_ERROR_LINE), fg(theme.danger)),
        ]));
    }
    match &p.token {
        None => lines.push(Line::from(vec![
            label("token"),
            Span::styled("none: press a to authorize", fg(theme.warn)),
        ])),
        Some(t) => {
            let expires = match t.expires_at {
                Some(at) => format!("{} ({})", local(app, at), a.access_text()),
                None => "never (company token)".into(),
            };
            lines.push(row("expires", expires));
            if let Some(end) = t.refresh_expires_at {
                lines.push(row(
                    "refresh until",
                    format!("{} ({})", local(app, end), a.refresh_text()),
                ));
            }
            lines.push(row("obtained", local(app, t.obtained_at)));
            lines.push(row(
                "access token",
                secret_text(shown, t.access_token.expose_secret()),
            ));
            if let Some(r) = &t.refresh_token {
                lines.push(row("refresh token", secret_text(shown, r.expose_secret())));
            }
        }
    }
    if let Some(c) = &p.last_check {
        lines.push(row(
            "owner",
            format!(
                "{} (checked {})",
                safe(&c.owner_line()),
                local(app, c.checked_at)
            ),
        ));
    }
    if p.pending.is_some() {
        lines.push(Line::from(vec![
            label("pending"),
            Span::styled(
                "authorization started: press e to paste the code",
                fg(theme.accent),
            ),
        ]));
    }
    lines.extend([
        row(
            "scopes",
            format!("{} ({} token)", safe(&p.scope_string()), p.owner),
        ),
        row("token URL", safe(&p.endpoints.token())),
        row("client id", safe(&p.client_id)),
        row(
            "client secret",
            secret_text(shown, p.client_secret.expose_secret()),
        ),
        row("redirect", safe(&p.redirect_uri)),
    ]);
    if !p.notes.is_empty() {
        lines.push(row("notes", safe(&p.notes)));
    }
    lines
}

fn draw_detail(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let title = app
        .selected()
        .map(|p| format!(" {} ", safe(&p.name)))
        .unwrap_or_else(|| " details ".into());
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(fg(theme.border))
        .title(title);
    let lines = match (app.selected(), app.selected_assessment()) {
        (Some(p), Some(a)) => detail_lines(app, p, a, theme),
        _ => vec![Line::styled("nothing selected", fg(theme.muted))],
    };
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn draw_log(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(fg(theme.border))
        .title(" log ");
    let visible = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = app
        .log
        .iter()
        .skip(app.log.len().saturating_sub(visible))
        .map(|l| {
            Line::from(vec![
                Span::styled(
                    format!(
                        "{} ",
                        l.at.with_timezone(&app.settings.utc_offset)
                            .format("%H:%M:%S")
                    ),
                    fg(theme.muted),
                ),
                Span::styled(
                    untrusted_short(&l.text, MAX_ERROR_LINE),
                    fg(if l.error { theme.danger } else { theme.text }),
                ),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_footer(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let line = match &app.flash {
        Some((text, error, _)) => Line::styled(
            format!(" {}", untrusted_short(text, MAX_ERROR_LINE)),
            fg(if *error { theme.danger } else { theme.ok }),
        ),
        None => {
            let mut spans = Vec::new();
            for b in BINDINGS.iter().filter(|b| b.footer) {
                spans.push(Span::styled(
                    format!(" {}", b.label),
                    fg(theme.accent).add_modifier(Modifier::BOLD),
                ));
                spans.push(Span::styled(
                    format!(
                        " {}",
                        b.help.split([' ', '(', ':']).next().unwrap_or(b.help)
                    ),
                    fg(theme.muted),
                ));
            }
            Line::from(spans)
        }
    };
    frame.render_widget(line, area);
}

fn draw_help(frame: &mut Frame, area: Rect, theme: &Theme, scroll: u16) {
    let lines: Vec<Line> = BINDINGS
        .iter()
        .map(|b| {
            Line::from(vec![
                Span::styled(
                    format!("{:>8}  ", b.label),
                    fg(theme.accent).add_modifier(Modifier::BOLD),
                ),
                Span::raw(b.help),
            ])
        })
        .collect();
    let total = lines.len() as u16;
    let room = area.height.saturating_sub(2);
    let title = if total > room {
        let top = scroll.min(total - room);
        format!(
            "keys {}-{} of {total} (j/k scroll, other keys close)",
            top + 1,
            top + room
        )
    } else {
        "keys (any key closes)".to_string()
    };
    popup_scrolled(frame, area, &title, lines, theme, 66, scroll);
}

fn popup_text(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    lines: Vec<Line>,
    theme: &Theme,
    width: u16,
) {
    popup_scrolled(frame, area, title, lines, theme, width, 0);
}

/// A centred popup; when its lines are more than fit, it shows them from line `scroll`.
fn popup_scrolled(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    lines: Vec<Line>,
    theme: &Theme,
    width: u16,
    scroll: u16,
) {
    let width = width
        .min(area.width.saturating_sub(2))
        .max(20)
        .min(area.width);
    let inner_width = width.saturating_sub(2).max(1) as usize;
    let wrapped: usize = lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(inner_width))
        .sum();
    let height = (wrapped as u16).saturating_add(2).min(area.height);
    let max_scroll = (wrapped as u16).saturating_sub(height.saturating_sub(2));
    let [_, v, _] = Layout::new(
        Direction::Vertical,
        [
            Constraint::Fill(1),
            Constraint::Length(height),
            Constraint::Fill(1),
        ],
    )
    .areas(area);
    let [_, rect, _] = Layout::new(
        Direction::Horizontal,
        [
            Constraint::Fill(1),
            Constraint::Length(width),
            Constraint::Fill(1),
        ],
    )
    .areas(v);
    frame.render_widget(Clear, rect);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(fg(theme.accent))
        .title(format!(" {title} "))
        .style(Style::default().bg(theme.background).fg(theme.text));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((scroll.min(max_scroll), 0)),
        rect,
    );
}
