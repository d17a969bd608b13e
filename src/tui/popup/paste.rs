//! Pasting an authorization code, or the whole redirect URL, to exchange it.

use age::secrecy::SecretString;
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::{Card, Reply, Request};
use crate::display::untrusted;
use crate::tui::keymap::{Action, PASTE};
use crate::tui::theme::Theme;

/// The paste popup.
#[derive(Debug, Clone)]
pub struct Paste {
    pub profile: String,
    pub input: String,
    /// Why Enter did nothing, shown until the next key.
    pub hint: Option<&'static str>,
}

/// What Enter on an empty field says.
const NOTHING_PASTED: &str =
    "nothing pasted yet: paste the code or the whole redirect URL, or Esc to cancel";

impl Paste {
    pub fn new(profile: String) -> Self {
        Self {
            profile,
            input: String::new(),
            hint: None,
        }
    }

    pub fn on_key(&mut self, action: Option<Action>, typed: Option<char>) -> Reply {
        self.hint = None;
        match (action, typed) {
            (Some(Action::Submit), _) if !self.input.trim().is_empty() => {
                Reply::Then(Request::Exchange {
                    profile: self.profile.clone(),
                    input: SecretString::from(self.input.trim().to_string()),
                })
            }
            (Some(Action::Submit), _) => {
                self.hint = Some(NOTHING_PASTED);
                Reply::Stay
            }
            (Some(Action::Cancel), _) => Reply::Close,
            (Some(Action::DeleteChar), _) => {
                self.input.pop();
                Reply::Stay
            }
            (None, Some(c)) => {
                self.input.push(c);
                Reply::Stay
            }
            _ => Reply::Stay,
        }
    }

    /// A bracketed paste: the whole text at once.
    pub fn paste(&mut self, text: &str) {
        self.hint = None;
        self.input.push_str(text.trim());
    }

    pub fn card(&self, theme: &Theme) -> Card {
        Card {
            title: "exchange".into(),
            lines: vec![
                Line::from(format!(
                    "Paste the code or the whole redirect URL for {}:",
                    untrusted(&self.profile)
                )),
                Line::from(""),
                Line::from(vec![
                    Span::styled(
                        untrusted(&self.input).into_owned(),
                        Style::default().fg(theme.accent),
                    ),
                    Span::raw("▏"),
                ]),
                Line::styled(
                    self.hint.unwrap_or_default(),
                    Style::default().fg(theme.warn),
                ),
            ],
            width: 70,
            scroll: 0,
            layer: &PASTE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_exchanges_only_something() {
        let mut p = Paste::new("p".into());
        assert!(matches!(p.on_key(Some(Action::Submit), None), Reply::Stay));
        assert_eq!(p.hint, Some(NOTHING_PASTED));
        p.paste("  code-1 \n");
        assert_eq!(p.hint, None);
        assert!(matches!(
            p.on_key(Some(Action::Submit), None),
            Reply::Then(Request::Exchange { profile, .. }) if profile == "p"
        ));
        assert!(matches!(p.on_key(Some(Action::Cancel), None), Reply::Close));
    }
}
