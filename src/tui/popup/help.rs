//! The key list, generated from the keymap's layers; it scrolls when it does not fit.

use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

use super::{Card, Reply};
use crate::tui::keymap::{Action, HELP, LAYERS};
use crate::tui::theme::Theme;

/// Lines a page key moves.
const PAGE: u16 = 10;

/// The help popup: how far it is scrolled.
#[derive(Debug, Clone, Default)]
pub struct Help {
    pub scroll: u16,
}

/// Every line of the key list: each layer's title, then its bindings.
fn all_lines(theme: &Theme) -> Vec<Line<'static>> {
    let key = Style::default()
        .fg(theme.accent)
        .add_modifier(Modifier::BOLD);
    let title = Style::default()
        .fg(theme.muted)
        .add_modifier(Modifier::BOLD);
    let mut lines = Vec::new();
    for (i, layer) in LAYERS.iter().enumerate() {
        if i > 0 {
            lines.push(Line::from(""));
            lines.push(Line::styled(format!("{}:", layer.name), title));
        }
        for b in layer.bindings {
            lines.push(Line::from(vec![
                Span::styled(format!("{:>8}  ", b.key_label), key),
                Span::raw(b.help),
            ]));
        }
    }
    lines
}

impl Help {
    /// Scrolls; any key without a meaning here closes the list.
    pub fn on_action(&mut self, action: Option<Action>) -> Reply {
        let limit = u16::try_from(all_lines(&Theme::monochrome()).len()).unwrap_or(u16::MAX);
        self.scroll = match action {
            Some(Action::ScrollDown) => self.scroll.saturating_add(1),
            Some(Action::ScrollUp) => self.scroll.saturating_sub(1),
            Some(Action::PageDown) => self.scroll.saturating_add(PAGE),
            Some(Action::PageUp) => self.scroll.saturating_sub(PAGE),
            Some(Action::Top) => 0,
            Some(Action::Bottom) => limit,
            _ => return Reply::Close,
        }
        .min(limit);
        Reply::Stay
    }

    pub fn card(&self, theme: &Theme) -> Card {
        Card {
            title: "keys (scroll j/k g/G; other keys close)".into(),
            lines: all_lines(theme),
            width: 66,
            scroll: self.scroll,
            layer: &HELP,
        }
    }
}
