//! The profile table: columns sized from their content, coloured by urgency.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};

use super::{SPINNER, fg, safe};
use crate::health::Health;
use crate::tui::app::App;
use crate::tui::theme::Theme;

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
        Some(b) => format!(
            "{}… {}",
            b.kind.verb(),
            SPINNER[app.spinner % SPINNER.len()]
        ),
        // An auto-refresh profile no agent of the team keeps will expire unattended.
        None if app.team_of(p).is_some_and(|t| t.unkept) => {
            format!("{} ⚠ no agent", a.health.label())
        }
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

/// `text` in `width` columns: whole when it fits, else cut with an ellipsis, so a cut name or
/// scope list never reads as a whole one.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// One row: the shown columns of `texts`, coloured by urgency; the cursor's row highlighted.
fn table_row(
    app: &App,
    i: usize,
    selected: bool,
    texts: &[String; 7],
    shown: &[(usize, usize)],
    theme: &Theme,
) -> Row<'static> {
    let a = &app.assessments[i];
    let warn = crate::duration::secs_i64(app.settings.warn);
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
            .map(|&(col, width)| Cell::from(fit(&texts[col], width)).style(style_of(col))),
    );
    if !selected {
        return row;
    }
    row.style(if theme.monochrome {
        Style::default().add_modifier(Modifier::REVERSED)
    } else {
        Style::default()
            .bg(theme.selected)
            .add_modifier(Modifier::BOLD)
    })
}

pub fn draw_table(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
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
    let rows = visible
        .iter()
        .zip(cells)
        .map(|(&(pos, i), texts)| table_row(app, i, pos == app.cursor, &texts, &shown, theme));
    let header = Row::new(shown.iter().map(|&(col, _)| COLUMNS[col].title))
        .style(fg(theme.muted).add_modifier(Modifier::BOLD));
    let widths = shown
        .iter()
        .map(|&(_, w)| Constraint::Length(u16::try_from(w).unwrap_or(u16::MAX)));
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(block)
            .column_spacing(1),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn a_cell_too_long_for_its_column_ends_in_an_ellipsis() {
        assert_eq!(fit("read write", 10), "read write");
        assert_eq!(fit("read write admin", 10), "read writ…");
        assert_eq!(fit("é", 1), "é");
        assert_eq!(fit("ab", 0), "…");
    }
}
