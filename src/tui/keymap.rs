//! The keymap is data: a layer of bindings per mode. The same tables dispatch keys and
//! generate the footer, every popup's hint line and the `?` help, so they cannot drift.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

mod tables;

pub use tables::{AUTHORIZE, CONFIRM, DEVICE, FILTER, FORM, GLOBAL, HELP, LAYERS, NORMAL, PASTE};

/// What a key asks for. Popups share the context-free ones (submit, cancel, next field...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    // Anywhere.
    Quit,
    Suspend,
    // The main view.
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Filter,
    /// Show only the profiles in this state; again, all of them.
    OnlyState(crate::health::Health),
    CycleSort,
    DetailDown,
    DetailUp,
    Authorize,
    Exchange,
    Refresh,
    RefreshDue,
    Check,
    CopyToken,
    CopyUrl,
    CopyCode,
    Rediscover,
    New,
    Edit,
    Delete,
    Revoke,
    Reveal,
    ToggleLog,
    Help,
    // Popups and text fields.
    Submit,
    Cancel,
    Confirm,
    NextField,
    PrevField,
    ChoiceNext,
    ChoicePrev,
    DeleteChar,
    ScrollDown,
    ScrollUp,
    PasteCode,
}

/// One binding: its keys, how the footer and hints name the key and the action, the action,
/// and the sentence the help shows.
#[derive(Clone, Copy)]
pub struct Binding {
    pub keys: &'static [(KeyCode, KeyModifiers)],
    /// The key as shown: `r`, `Enter`, `Tab/↓`.
    pub key_label: &'static str,
    /// One or two words for the footer and popup hints: `refresh`, `cancel`.
    pub label: &'static str,
    pub action: Action,
    /// The help line.
    pub help: &'static str,
    /// Whether the main footer shows it (popups show all of theirs).
    pub footer: bool,
}

/// The bindings of one mode.
pub struct Layer {
    /// The help section title: where these keys work.
    pub name: &'static str,
    pub bindings: &'static [Binding],
    /// Whether unbound printable keys are typed into a text field in this mode.
    pub takes_text: bool,
}

pub(super) const fn bind(
    keys: &'static [(KeyCode, KeyModifiers)],
    key_label: &'static str,
    label: &'static str,
    action: Action,
    help: &'static str,
) -> Binding {
    Binding {
        keys,
        key_label,
        label,
        action,
        help,
        footer: false,
    }
}

pub(super) const fn shown(binding: Binding) -> Binding {
    Binding {
        footer: true,
        ..binding
    }
}

fn matches(binding: &Binding, key: &KeyEvent) -> bool {
    binding
        .keys
        .iter()
        .any(|(code, mods)| *code == key.code && *mods == key.modifiers)
}

/// The action `key` asks for in `layer`: the global keys first, then the layer's own.
pub fn action_for(layer: &Layer, key: &KeyEvent) -> Option<Action> {
    GLOBAL
        .bindings
        .iter()
        .chain(layer.bindings)
        .find(|b| matches(b, key))
        .map(|b| b.action)
}

/// The character `key` types, in a layer that takes text and when no binding claims it.
pub fn typed_char(layer: &Layer, key: &KeyEvent) -> Option<char> {
    match key.code {
        KeyCode::Char(c)
            if layer.takes_text
                && !key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
        {
            Some(c)
        }
        _ => None,
    }
}

/// A popup's hint line: `Enter exchange · Esc cancel`.
pub fn hint_line(layer: &Layer) -> String {
    layer
        .bindings
        .iter()
        .map(|b| format!("{} {}", b.key_label, b.label))
        .collect::<Vec<_>>()
        .join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: KeyModifiers = KeyModifiers::NONE;
    const SHIFT: KeyModifiers = KeyModifiers::SHIFT;
    const CTRL: KeyModifiers = KeyModifiers::CONTROL;

    fn key(c: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(c, m)
    }

    #[test]
    fn keys_map_to_actions_per_layer() {
        let r = key(KeyCode::Char('r'), NONE);
        assert_eq!(action_for(&NORMAL, &r), Some(Action::Refresh));
        assert_eq!(action_for(&PASTE, &r), None, "typed, not an action");
        assert_eq!(typed_char(&PASTE, &r), Some('r'));
        assert_eq!(typed_char(&NORMAL, &r), None);
        let ctrl_c = key(KeyCode::Char('c'), CTRL);
        for layer in LAYERS {
            assert_eq!(
                action_for(layer, &ctrl_c),
                Some(Action::Quit),
                "{}",
                layer.name
            );
        }
        assert_eq!(
            action_for(&NORMAL, &key(KeyCode::Char('R'), SHIFT)),
            Some(Action::RefreshDue)
        );
        assert_eq!(
            action_for(&CONFIRM, &key(KeyCode::Char('y'), NONE)),
            Some(Action::Confirm)
        );
        assert_eq!(hint_line(&PASTE), "Enter exchange · Esc cancel · ⌫ delete");
    }

    #[test]
    fn no_key_is_bound_twice_in_a_mode() {
        for layer in LAYERS {
            let mut seen = std::collections::HashSet::new();
            for b in GLOBAL.bindings.iter().chain(layer.bindings) {
                if std::ptr::eq(layer, &GLOBAL) && seen.contains(&b.keys[0]) {
                    continue;
                }
                for k in b.keys {
                    assert!(seen.insert(*k), "{k:?} bound twice in {}", layer.name);
                }
            }
        }
    }
}
