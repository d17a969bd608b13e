//! A yes/no question before something that cannot be undone.

use ratatui::text::Line;

use super::{Card, Reply, Request};
use crate::display::untrusted;
use crate::tui::keymap::{Action, CONFIRM};
use crate::tui::theme::Theme;

/// What needs a yes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmKind {
    Delete,
    Revoke,
}

/// The confirmation popup.
#[derive(Debug, Clone)]
pub struct Confirm {
    pub kind: ConfirmKind,
    pub profile: String,
}

impl Confirm {
    /// `y` does it; every other key says no.
    pub fn on_action(&self, action: Option<Action>) -> Reply {
        match (action, self.kind) {
            (Some(Action::Confirm), ConfirmKind::Delete) => {
                Reply::Then(Request::Delete(self.profile.clone()))
            }
            (Some(Action::Confirm), ConfirmKind::Revoke) => {
                Reply::Then(Request::Revoke(self.profile.clone()))
            }
            _ => Reply::Close,
        }
    }

    pub fn card(&self, _theme: &Theme) -> Card {
        let name = untrusted(&self.profile);
        let question = match self.kind {
            ConfirmKind::Delete => format!("Delete profile {name} and its tokens from the vault?"),
            ConfirmKind::Revoke => format!("Revoke {name}'s tokens at the server?"),
        };
        Card {
            title: "confirm".into(),
            lines: vec![Line::from(question)],
            width: 60,
            scroll: 0,
            layer: &CONFIRM,
        }
    }
}
