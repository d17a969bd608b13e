//! Rendering: a pure function of the app state. Only visible rows are formatted.

mod detail;
mod table;

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::app::{App, Mode};
use super::keymap::{FILTER, NORMAL, hint_line};
use super::popup::Card;
use super::theme::Theme;
use crate::display::{MAX_ERROR_LINE, untrusted, untrusted_short};
use crate::health::Health;

pub(super) const SPINNER: [&str; 8] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧"];

/// Text from a server, a shared vault or a paste, made safe to draw (see [`crate::display`]).
pub(super) fn safe(text: &str) -> String {
    untrusted(text).into_owned()
}

pub(super) fn fg(c: Color) -> Style {
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

/// How far the detail pane can scroll on a terminal of `area` (0 when it shows no pane or
/// everything fits): what J moves it down to.
pub fn detail_overflow(area: Rect, app: &App, theme: &Theme) -> u16 {
    areas(area, app.show_log)
        .detail
        .map_or(0, |pane| detail::detail_overflow(app, pane, theme))
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
    table::draw_table(frame, parts.table, app, theme);
    if let Some(detail) = parts.detail {
        detail::draw_detail(frame, detail, app, theme);
    }
    if let Some(log) = parts.log {
        draw_log(frame, log, app, theme);
    }
    draw_footer(frame, parts.footer, app, theme);
    if let Some(card) = app.mode.card(theme, app.now, (area.width, area.height)) {
        draw_card(frame, area, card, theme);
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
        if let Some(error) = app.filter_error() {
            spans.push(Span::styled(format!(" {error}"), fg(theme.danger)));
        }
        spans.push(Span::raw(" "));
    }
    let counts = [
        (s.ok, Health::Ok, theme.ok),
        (s.expiring, Health::Expiring, theme.warn),
        (s.stale, Health::Stale, theme.warn),
        (s.expired, Health::Expired, theme.expired),
        (s.error, Health::Error, theme.danger),
        (s.no_token, Health::NoToken, theme.muted),
    ];
    // The count the number keys picked shows reversed: the table holds only those.
    let only = app.parsed_filter().only_state();
    let mut first = true;
    for (n, state, colour) in counts {
        // Zero counts say nothing; "0 ok" does (everything needs attention).
        if n == 0 && state != Health::Ok && only != Some(state) {
            continue;
        }
        let sep = if first { " " } else { " · " };
        spans.push(Span::styled(sep, fg(colour)));
        let label = state.label().replace('-', " ");
        let style = if only == Some(state) {
            fg(colour).add_modifier(Modifier::REVERSED)
        } else {
            fg(colour)
        };
        spans.push(Span::styled(format!("{n} {label}"), style));
        first = false;
    }
    spans.extend(team_spans(app, theme));
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

/// The header's word on the team sharing the vault: how many agents keep it, and how many
/// auto-refresh profiles none keeps.
fn team_spans(app: &App, theme: &Theme) -> Vec<Span<'static>> {
    let view = match &app.team {
        None => return Vec::new(),
        Some(Err(_)) => return vec![Span::styled("  team: unreadable", fg(theme.danger))],
        Some(Ok(view)) => view,
    };
    let keepers = view.team.keepers().len();
    let mut spans = vec![match keepers {
        0 => Span::styled("  team: no agent", fg(theme.warn)),
        1 => Span::styled("  team: 1 agent", fg(theme.muted)),
        n => Span::styled(format!("  team: {n} agents"), fg(theme.muted)),
    }];
    let unkept = app.unkept();
    if unkept > 0 {
        spans.push(Span::styled(format!(" · {unkept} unkept"), fg(theme.warn)));
    }
    if view.sealed_away > 0 {
        let text = format!(" · {} sealed to other groups", view.sealed_away);
        spans.push(Span::styled(text, fg(theme.muted)));
    }
    spans
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
    let line = if let Some(flash) = &app.flash {
        Line::styled(
            format!(" {}", untrusted_short(&flash.text, MAX_ERROR_LINE)),
            fg(if flash.error { theme.danger } else { theme.ok }),
        )
    } else {
        let key = fg(theme.accent).add_modifier(Modifier::BOLD);
        // While a filter is typed, its own keys: the main ones would type letters.
        let bindings: Vec<_> = match app.mode {
            Mode::Filter => FILTER.bindings.iter().collect(),
            _ => NORMAL.bindings.iter().filter(|b| b.footer).collect(),
        };
        let spans = bindings.into_iter().flat_map(|b| {
            [
                Span::styled(format!(" {}", b.key_label), key),
                Span::styled(format!(" {}", b.label), fg(theme.muted)),
            ]
        });
        Line::from(spans.collect::<Vec<_>>())
    };
    frame.render_widget(line, area);
}

/// A popup centred over `area`: its lines (scrolled when they do not fit), then the hint
/// line generated from its keymap layer.
fn draw_card(frame: &mut Frame, area: Rect, card: Card, theme: &Theme) {
    let Card {
        title,
        mut lines,
        width,
        scroll,
        layer,
    } = card;
    let width = width
        .min(area.width.saturating_sub(2))
        .max(20)
        .min(area.width);
    let inner_width = usize::from(width.saturating_sub(2).max(1));
    lines.push(Line::styled(hint_line(layer), fg(theme.muted)));
    let wrapped: usize = lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(inner_width))
        .sum();
    let wrapped = u16::try_from(wrapped).unwrap_or(u16::MAX);
    let height = wrapped.saturating_add(2).min(area.height);
    let max_scroll = wrapped.saturating_sub(height.saturating_sub(2));
    let title = if max_scroll > 0 {
        let top = scroll.min(max_scroll);
        format!(
            " {title}, lines {}-{} of {wrapped} ",
            top + 1,
            top + height.saturating_sub(2)
        )
    } else {
        format!(" {title} ")
    };
    let rect = centred(area, width, height);
    frame.render_widget(Clear, rect);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(fg(theme.accent))
        .title(title)
        .style(Style::default().bg(theme.background).fg(theme.text));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((scroll.min(max_scroll), 0)),
        rect,
    );
}

/// A `width` x `height` rectangle in the middle of `area`.
fn centred(area: Rect, width: u16, height: u16) -> Rect {
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
    rect
}

pub use detail::detail_text;
pub use table::scroll_offset;
