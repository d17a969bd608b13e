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
use crate::health::{Assessment, Health};
use crate::vault::Profile;

const SPINNER: [&str; 8] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧"];
const MASK: &str = "••••••••";

fn fg(c: Color) -> Style {
    Style::default().fg(c)
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App, theme: &Theme) {
    let area = frame.area();
    frame.render_widget(
        Block::default().style(Style::default().bg(theme.background).fg(theme.text)),
        area,
    );
    let log_height = if app.show_log { 7 } else { 0 };
    let [header, body, log, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(log_height),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, header, app, theme);
    let wide = body.width >= 120;
    let (table_area, detail_area) = if wide {
        let [t, d] = Layout::horizontal([Constraint::Min(60), Constraint::Length(56)]).areas(body);
        (t, d)
    } else {
        let detail = (body.height / 2).clamp(6, 12);
        let [t, d] = Layout::vertical([Constraint::Min(3), Constraint::Length(detail)]).areas(body);
        (t, d)
    };
    draw_table(frame, table_area, app, theme);
    draw_detail(frame, detail_area, app, theme);
    if app.show_log {
        draw_log(frame, log, app, theme);
    }
    draw_footer(frame, footer, app, theme);
    match &app.mode {
        Mode::Help => draw_help(frame, area, theme),
        Mode::Authorize(popup) => {
            let mut lines = vec![Line::from(format!("Authorize {}", popup.profile))];
            match &popup.url {
                None => lines.push(Line::styled("building the URL…", fg(theme.muted))),
                Some(url) => {
                    lines.push(Line::from(""));
                    lines.push(Line::styled(url.clone(), fg(theme.accent)));
                    lines.push(Line::from(""));
                    lines.push(Line::from("Copied to your clipboard (OSC 52); opened in a browser when one is available."));
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
                    "Paste the code or the whole redirect URL for {profile}:"
                )),
                Line::from(""),
                Line::from(vec![
                    Span::styled(input.clone(), fg(theme.accent)),
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
                    format!("Delete profile {profile} and its tokens from the vault?")
                }
                ConfirmKind::Revoke => format!("Revoke {profile}'s tokens at the server?"),
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
                    FieldKind::Text => f.value.clone(),
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

fn draw_header(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let s = app.summary();
    let mut spans = vec![
        Span::styled(" tokdeck ", fg(theme.accent).add_modifier(Modifier::BOLD)),
        Span::styled(format!(" {} ok", s.ok), fg(theme.ok)),
        Span::styled(format!(" · {} expiring", s.expiring), fg(theme.warn)),
        Span::styled(format!(" · {} expired", s.expired), fg(theme.expired)),
        Span::styled(format!(" · {} no token", s.no_token), fg(theme.muted)),
        Span::styled(format!("  sort: {}", app.sort.label()), fg(theme.muted)),
        Span::styled(format!("  {}", app.settings.vault_label), fg(theme.muted)),
    ];
    if !app.filter.is_empty() || matches!(app.mode, Mode::Filter) {
        spans.push(Span::styled(
            format!("  filter: {}", app.filter),
            fg(theme.accent),
        ));
        if matches!(app.mode, Mode::Filter) {
            spans.push(Span::raw("▏"));
        }
    }
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
            Paragraph::new(text).style(fg(theme.muted)).block(block),
            area,
        );
        return;
    }
    let offset = scroll_offset(app.cursor, inner_height);
    let warn = app.settings.warn.as_secs() as i64;
    // Narrow screens drop the scopes column (the detail pane shows them) to keep countdowns whole.
    let show_scopes = area.width >= 100;
    let rows = app
        .order
        .iter()
        .enumerate()
        .skip(offset)
        .take(inner_height)
        .map(|(pos, &i)| {
            let p = &app.profiles[i];
            let a = &app.assessments[i];
            let state = match app.busy.get(&p.name) {
                Some(b) => format!("{}… {}", b.verb, SPINNER[app.spinner % SPINNER.len()]),
                None => a.health.label().to_string(),
            };
            let mut cells = vec![
                Cell::from(p.name.clone()),
                Cell::from(p.environment()).style(fg(theme.muted)),
                Cell::from(p.owner.to_string()),
            ];
            if show_scopes {
                cells.push(Cell::from(p.scope_string()).style(fg(theme.muted)));
            }
            let access = countdown_color(a.access_left, a.has_token, warn, theme);
            let refresh = countdown_color(a.refresh_left, a.refresh_left.is_some(), warn, theme);
            cells.extend([
                Cell::from(a.access_text()).style(fg(access)),
                Cell::from(a.refresh_text()).style(fg(refresh)),
                Cell::from(state).style(fg(health_color(a.health, theme))),
            ]);
            let row = Row::new(cells);
            if pos == app.cursor {
                let style = if theme.monochrome {
                    Style::default().add_modifier(Modifier::REVERSED)
                } else {
                    Style::default()
                        .bg(theme.selected)
                        .add_modifier(Modifier::BOLD)
                };
                row.style(style)
            } else {
                row
            }
        });
    let mut titles = vec!["NAME", "ENV", "OWNER"];
    let mut widths = vec![
        Constraint::Min(10),
        Constraint::Length(11),
        Constraint::Length(7),
    ];
    if show_scopes {
        titles.push("SCOPES");
        widths.push(Constraint::Length(16));
    }
    titles.extend(["ACCESS", "REFRESH", "STATE"]);
    widths.extend([
        Constraint::Length(14),
        Constraint::Length(12),
        Constraint::Length(12),
    ]);
    let header = Row::new(titles).style(fg(theme.muted).add_modifier(Modifier::BOLD));
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
        value.to_string()
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
            Span::styled(e.clone(), fg(theme.danger)),
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
            format!("{} (checked {})", c.owner_line(), local(app, c.checked_at)),
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
            format!("{} ({} token)", p.scope_string(), p.owner),
        ),
        row("token URL", p.endpoints.token()),
        row("client id", p.client_id.clone()),
        row(
            "client secret",
            secret_text(shown, p.client_secret.expose_secret()),
        ),
        row("redirect", p.redirect_uri.clone()),
    ]);
    if !p.notes.is_empty() {
        lines.push(row("notes", p.notes.clone()));
    }
    lines
}

fn draw_detail(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let title = app
        .selected()
        .map(|p| format!(" {} ", p.name))
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
                    l.text.clone(),
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
            format!(" {text}"),
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

fn draw_help(frame: &mut Frame, area: Rect, theme: &Theme) {
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
    popup_text(frame, area, "keys (any key closes)", lines, theme, 66);
}

fn popup_text(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    lines: Vec<Line>,
    theme: &Theme,
    width: u16,
) {
    let width = width.min(area.width.saturating_sub(2)).max(20);
    let inner_width = width.saturating_sub(2).max(1) as usize;
    let wrapped: usize = lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(inner_width))
        .sum();
    let height = (wrapped as u16 + 2).min(area.height);
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
            .wrap(Wrap { trim: false }),
        rect,
    );
}
