//! The keymap is data: one table dispatches keys and generates the footer and help popup.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key in the main view asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Filter,
    CycleSort,
    Authorize,
    Exchange,
    Refresh,
    RefreshDue,
    Check,
    CopyToken,
    CopyUrl,
    New,
    Edit,
    Delete,
    Revoke,
    Reveal,
    ToggleLog,
    Help,
    Quit,
    Suspend,
}

/// One binding: keys, the action, a help text, and whether the footer shows it.
pub struct Binding {
    pub keys: &'static [(KeyCode, KeyModifiers)],
    pub label: &'static str,
    pub action: Action,
    pub help: &'static str,
    pub footer: bool,
}

const NONE: KeyModifiers = KeyModifiers::NONE;
const SHIFT: KeyModifiers = KeyModifiers::SHIFT;
const CTRL: KeyModifiers = KeyModifiers::CONTROL;

/// Every binding of the main view, in help order.
pub const BINDINGS: &[Binding] = &[
    Binding {
        keys: &[(KeyCode::Char('k'), NONE), (KeyCode::Up, NONE)],
        label: "k/↑",
        action: Action::Up,
        help: "move up",
        footer: false,
    },
    Binding {
        keys: &[(KeyCode::Char('j'), NONE), (KeyCode::Down, NONE)],
        label: "j/↓",
        action: Action::Down,
        help: "move down",
        footer: false,
    },
    Binding {
        keys: &[(KeyCode::PageUp, NONE)],
        label: "PgUp",
        action: Action::PageUp,
        help: "page up",
        footer: false,
    },
    Binding {
        keys: &[(KeyCode::PageDown, NONE)],
        label: "PgDn",
        action: Action::PageDown,
        help: "page down",
        footer: false,
    },
    Binding {
        keys: &[(KeyCode::Home, NONE), (KeyCode::Char('g'), NONE)],
        label: "Home/g",
        action: Action::Top,
        help: "first profile",
        footer: false,
    },
    Binding {
        keys: &[
            (KeyCode::End, NONE),
            (KeyCode::Char('G'), SHIFT),
            (KeyCode::Char('G'), NONE),
        ],
        label: "End/G",
        action: Action::Bottom,
        help: "last profile",
        footer: false,
    },
    Binding {
        keys: &[(KeyCode::Char('/'), NONE)],
        label: "/",
        action: Action::Filter,
        help: "filter by name",
        footer: true,
    },
    Binding {
        keys: &[(KeyCode::Char('s'), NONE)],
        label: "s",
        action: Action::CycleSort,
        help: "sort: urgency, name, expiry",
        footer: false,
    },
    Binding {
        keys: &[(KeyCode::Char('a'), NONE)],
        label: "a",
        action: Action::Authorize,
        help: "authorize: URL popup, copy, browser or listener",
        footer: true,
    },
    Binding {
        keys: &[(KeyCode::Char('e'), NONE)],
        label: "e",
        action: Action::Exchange,
        help: "exchange a pasted code or redirect URL",
        footer: true,
    },
    Binding {
        keys: &[(KeyCode::Char('r'), NONE)],
        label: "r",
        action: Action::Refresh,
        help: "refresh the selected profile",
        footer: true,
    },
    Binding {
        keys: &[(KeyCode::Char('R'), SHIFT), (KeyCode::Char('R'), NONE)],
        label: "R",
        action: Action::RefreshDue,
        help: "refresh all that end within the margin",
        footer: false,
    },
    Binding {
        keys: &[(KeyCode::Char('c'), NONE)],
        label: "c",
        action: Action::Check,
        help: "check who the token belongs to",
        footer: true,
    },
    Binding {
        keys: &[(KeyCode::Char('y'), NONE)],
        label: "y",
        action: Action::CopyToken,
        help: "copy the access token (OSC 52)",
        footer: true,
    },
    Binding {
        keys: &[(KeyCode::Char('u'), NONE)],
        label: "u",
        action: Action::CopyUrl,
        help: "copy the last authorize URL (OSC 52)",
        footer: false,
    },
    Binding {
        keys: &[(KeyCode::Char('n'), NONE)],
        label: "n",
        action: Action::New,
        help: "new profile",
        footer: false,
    },
    Binding {
        keys: &[(KeyCode::Char('E'), SHIFT), (KeyCode::Char('E'), NONE)],
        label: "E",
        action: Action::Edit,
        help: "edit the selected profile",
        footer: false,
    },
    Binding {
        keys: &[(KeyCode::Char('d'), NONE)],
        label: "d",
        action: Action::Delete,
        help: "delete the selected profile (confirm)",
        footer: false,
    },
    Binding {
        keys: &[(KeyCode::Char('x'), NONE)],
        label: "x",
        action: Action::Revoke,
        help: "revoke the tokens (confirm)",
        footer: false,
    },
    Binding {
        keys: &[(KeyCode::Char('v'), NONE)],
        label: "v",
        action: Action::Reveal,
        help: "reveal secrets for 10 s",
        footer: false,
    },
    Binding {
        keys: &[(KeyCode::Char('l'), NONE)],
        label: "l",
        action: Action::ToggleLog,
        help: "show or hide the event log",
        footer: false,
    },
    Binding {
        keys: &[(KeyCode::Char('?'), NONE), (KeyCode::Char('?'), SHIFT)],
        label: "?",
        action: Action::Help,
        help: "help",
        footer: true,
    },
    Binding {
        keys: &[(KeyCode::Char('q'), NONE), (KeyCode::Char('c'), CTRL)],
        label: "q",
        action: Action::Quit,
        help: "quit",
        footer: true,
    },
    Binding {
        keys: &[(KeyCode::Char('z'), CTRL)],
        label: "^Z",
        action: Action::Suspend,
        help: "suspend to the shell",
        footer: false,
    },
];

/// The action bound to `key` in the main view.
pub fn action_for(key: &KeyEvent) -> Option<Action> {
    BINDINGS
        .iter()
        .find(|b| {
            b.keys
                .iter()
                .any(|(code, mods)| *code == key.code && *mods == key.modifiers)
        })
        .map(|b| b.action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_actions_and_never_twice() {
        let key = |c, m| KeyEvent::new(c, m);
        assert_eq!(
            action_for(&key(KeyCode::Char('r'), NONE)),
            Some(Action::Refresh)
        );
        assert_eq!(
            action_for(&key(KeyCode::Char('R'), SHIFT)),
            Some(Action::RefreshDue)
        );
        assert_eq!(
            action_for(&key(KeyCode::Char('c'), CTRL)),
            Some(Action::Quit)
        );
        assert_eq!(
            action_for(&key(KeyCode::Char('c'), NONE)),
            Some(Action::Check)
        );
        assert_eq!(action_for(&key(KeyCode::Char('Q'), SHIFT)), None);
        let mut seen = std::collections::HashSet::new();
        for b in BINDINGS {
            for k in b.keys {
                assert!(seen.insert(*k), "{k:?} bound twice");
            }
        }
    }
}
