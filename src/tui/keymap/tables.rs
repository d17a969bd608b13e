//! The bindings of every mode: what each key does, its footer label and its help line.

use crossterm::event::{KeyCode, KeyModifiers};

use super::{Action, Layer, bind, shown};
use crate::health::Health;

const NONE: KeyModifiers = KeyModifiers::NONE;
const SHIFT: KeyModifiers = KeyModifiers::SHIFT;
const CTRL: KeyModifiers = KeyModifiers::CONTROL;

/// Keys that work in every mode, before the mode's own layer.
pub const GLOBAL: Layer = Layer {
    name: "in any view",
    takes_text: false,
    bindings: &[
        bind(
            &[(KeyCode::Char('c'), CTRL)],
            "^C",
            "quit",
            Action::Quit,
            "quit",
        ),
        bind(
            &[(KeyCode::Char('z'), CTRL)],
            "^Z",
            "suspend",
            Action::Suspend,
            "suspend to the shell (fg resumes)",
        ),
    ],
};

/// The main view.
pub const NORMAL: Layer = Layer {
    name: "in the main view",
    takes_text: false,
    bindings: &[
        bind(
            &[(KeyCode::Char('k'), NONE), (KeyCode::Up, NONE)],
            "k/↑",
            "up",
            Action::Up,
            "move up",
        ),
        bind(
            &[(KeyCode::Char('j'), NONE), (KeyCode::Down, NONE)],
            "j/↓",
            "down",
            Action::Down,
            "move down",
        ),
        bind(
            &[(KeyCode::PageUp, NONE)],
            "PgUp",
            "page up",
            Action::PageUp,
            "page up",
        ),
        bind(
            &[(KeyCode::PageDown, NONE)],
            "PgDn",
            "page down",
            Action::PageDown,
            "page down",
        ),
        bind(
            &[(KeyCode::Home, NONE), (KeyCode::Char('g'), NONE)],
            "Home/g",
            "first",
            Action::Top,
            "first profile",
        ),
        bind(
            &[
                (KeyCode::End, NONE),
                (KeyCode::Char('G'), SHIFT),
                (KeyCode::Char('G'), NONE),
            ],
            "End/G",
            "last",
            Action::Bottom,
            "last profile",
        ),
        shown(bind(
            &[(KeyCode::Char('/'), NONE)],
            "/",
            "filter",
            Action::Filter,
            "filter: name part, state:X, owner:X, env:X, -word",
        )),
        bind(
            &[(KeyCode::Char('1'), NONE)],
            "1",
            "ok",
            Action::OnlyState(Health::Ok),
            "only ok profiles (again: all)",
        ),
        bind(
            &[(KeyCode::Char('2'), NONE)],
            "2",
            "expiring",
            Action::OnlyState(Health::Expiring),
            "only expiring ones (again: all)",
        ),
        bind(
            &[(KeyCode::Char('3'), NONE)],
            "3",
            "stale",
            Action::OnlyState(Health::Stale),
            "only stale ones (again: all)",
        ),
        bind(
            &[(KeyCode::Char('4'), NONE)],
            "4",
            "expired",
            Action::OnlyState(Health::Expired),
            "only expired ones (again: all)",
        ),
        bind(
            &[(KeyCode::Char('5'), NONE)],
            "5",
            "error",
            Action::OnlyState(Health::Error),
            "only ones in error (again: all)",
        ),
        bind(
            &[(KeyCode::Char('6'), NONE)],
            "6",
            "no token",
            Action::OnlyState(Health::NoToken),
            "only ones with no token (again: all)",
        ),
        bind(
            &[(KeyCode::Char('J'), SHIFT), (KeyCode::Char('J'), NONE)],
            "J",
            "details down",
            Action::DetailDown,
            "scroll the detail pane down",
        ),
        bind(
            &[(KeyCode::Char('K'), SHIFT), (KeyCode::Char('K'), NONE)],
            "K",
            "details up",
            Action::DetailUp,
            "scroll the detail pane up",
        ),
        bind(
            &[(KeyCode::Char('s'), NONE)],
            "s",
            "sort",
            Action::CycleSort,
            "sort: urgency, name, expiry",
        ),
        shown(bind(
            &[(KeyCode::Char('a'), NONE)],
            "a",
            "authorize",
            Action::Authorize,
            "authorize: URL popup, copy, browser or listener",
        )),
        shown(bind(
            &[(KeyCode::Char('e'), NONE)],
            "e",
            "exchange",
            Action::Exchange,
            "exchange a pasted code or redirect URL",
        )),
        shown(bind(
            &[(KeyCode::Char('r'), NONE)],
            "r",
            "refresh",
            Action::Refresh,
            "refresh the selected profile",
        )),
        bind(
            &[(KeyCode::Char('R'), SHIFT), (KeyCode::Char('R'), NONE)],
            "R",
            "refresh due",
            Action::RefreshDue,
            "refresh all that end within the margin",
        ),
        shown(bind(
            &[(KeyCode::Char('c'), NONE)],
            "c",
            "check",
            Action::Check,
            "check who the token belongs to",
        )),
        shown(bind(
            &[(KeyCode::Char('y'), NONE)],
            "y",
            "copy",
            Action::CopyToken,
            "send the access token to the clipboard (OSC 52)",
        )),
        bind(
            &[(KeyCode::Char('u'), NONE)],
            "u",
            "copy URL",
            Action::CopyUrl,
            "send the last authorize URL to the clipboard (OSC 52)",
        ),
        bind(
            &[(KeyCode::Char('n'), NONE)],
            "n",
            "new",
            Action::New,
            "new profile",
        ),
        bind(
            &[(KeyCode::Char('E'), SHIFT), (KeyCode::Char('E'), NONE)],
            "E",
            "edit",
            Action::Edit,
            "edit the selected profile",
        ),
        bind(
            &[(KeyCode::Char('d'), NONE)],
            "d",
            "delete",
            Action::Delete,
            "delete the selected profile (confirm)",
        ),
        bind(
            &[(KeyCode::Char('x'), NONE)],
            "x",
            "revoke",
            Action::Revoke,
            "revoke the tokens (confirm)",
        ),
        bind(
            &[(KeyCode::Char('v'), NONE)],
            "v",
            "reveal",
            Action::Reveal,
            "reveal secrets for 10 s",
        ),
        bind(
            &[(KeyCode::Char('l'), NONE)],
            "l",
            "log",
            Action::ToggleLog,
            "show or hide the event log",
        ),
        shown(bind(
            &[(KeyCode::Char('?'), NONE), (KeyCode::Char('?'), SHIFT)],
            "?",
            "help",
            Action::Help,
            "help",
        )),
        shown(bind(
            &[(KeyCode::Char('q'), NONE)],
            "q",
            "quit",
            Action::Quit,
            "quit",
        )),
    ],
};

/// Typing a filter in the header.
pub const FILTER: Layer = Layer {
    name: "while filtering",
    takes_text: true,
    bindings: &[
        bind(
            &[(KeyCode::Enter, NONE)],
            "Enter",
            "keep",
            Action::Submit,
            "keep the filter",
        ),
        bind(
            &[(KeyCode::Esc, NONE)],
            "Esc",
            "clear",
            Action::Cancel,
            "clear the filter",
        ),
        bind(
            &[(KeyCode::Backspace, NONE)],
            "⌫",
            "delete",
            Action::DeleteChar,
            "delete a letter",
        ),
    ],
};

/// The key list.
pub const HELP: Layer = Layer {
    name: "in this help",
    takes_text: false,
    bindings: &[
        bind(
            &[(KeyCode::Char('j'), NONE), (KeyCode::Down, NONE)],
            "j/↓",
            "scroll",
            Action::ScrollDown,
            "scroll down",
        ),
        bind(
            &[(KeyCode::Char('k'), NONE), (KeyCode::Up, NONE)],
            "k/↑",
            "back",
            Action::ScrollUp,
            "scroll up",
        ),
        bind(
            &[(KeyCode::PageDown, NONE)],
            "PgDn",
            "page",
            Action::PageDown,
            "page down",
        ),
        bind(
            &[(KeyCode::PageUp, NONE)],
            "PgUp",
            "page back",
            Action::PageUp,
            "page up",
        ),
        bind(
            &[(KeyCode::Home, NONE), (KeyCode::Char('g'), NONE)],
            "Home/g",
            "top",
            Action::Top,
            "to the top",
        ),
        bind(
            &[
                (KeyCode::End, NONE),
                (KeyCode::Char('G'), SHIFT),
                (KeyCode::Char('G'), NONE),
            ],
            "End/G",
            "end",
            Action::Bottom,
            "to the end",
        ),
    ],
};

/// The authorize popup.
pub const AUTHORIZE: Layer = Layer {
    name: "in the authorize popup",
    takes_text: false,
    bindings: &[
        bind(
            &[(KeyCode::Char('e'), NONE), (KeyCode::Enter, NONE)],
            "e/Enter",
            "paste code",
            Action::PasteCode,
            "paste the code or redirect URL",
        ),
        bind(
            &[(KeyCode::Char('u'), NONE), (KeyCode::Char('y'), NONE)],
            "u",
            "copy URL",
            Action::CopyUrl,
            "send the URL to the clipboard again",
        ),
        bind(
            &[(KeyCode::Esc, NONE), (KeyCode::Char('q'), NONE)],
            "Esc",
            "cancel",
            Action::Cancel,
            "close; stops the loopback listener",
        ),
    ],
};

/// The device login popup.
pub const DEVICE: Layer = Layer {
    name: "in the device login popup",
    takes_text: false,
    bindings: &[
        bind(
            &[(KeyCode::Char('u'), NONE), (KeyCode::Char('y'), NONE)],
            "u",
            "copy address",
            Action::CopyUrl,
            "send the login address to the clipboard",
        ),
        bind(
            &[(KeyCode::Char('c'), NONE)],
            "c",
            "copy code",
            Action::CopyCode,
            "send the login code to the clipboard",
        ),
        bind(
            &[(KeyCode::Esc, NONE), (KeyCode::Char('q'), NONE)],
            "Esc",
            "stop",
            Action::Cancel,
            "close and stop waiting for the approval",
        ),
    ],
};

/// Pasting a code.
pub const PASTE: Layer = Layer {
    name: "in the paste popup",
    takes_text: true,
    bindings: &[
        bind(
            &[(KeyCode::Enter, NONE)],
            "Enter",
            "exchange",
            Action::Submit,
            "exchange the code",
        ),
        bind(
            &[(KeyCode::Esc, NONE)],
            "Esc",
            "cancel",
            Action::Cancel,
            "close without exchanging",
        ),
        bind(
            &[(KeyCode::Backspace, NONE)],
            "⌫",
            "delete",
            Action::DeleteChar,
            "delete a letter",
        ),
    ],
};

/// A yes/no question.
pub const CONFIRM: Layer = Layer {
    name: "in a confirmation",
    takes_text: false,
    bindings: &[
        bind(
            &[
                (KeyCode::Char('y'), NONE),
                (KeyCode::Char('Y'), SHIFT),
                (KeyCode::Char('Y'), NONE),
            ],
            "y",
            "yes",
            Action::Confirm,
            "yes, do it",
        ),
        bind(
            &[(KeyCode::Char('n'), NONE), (KeyCode::Esc, NONE)],
            "n/Esc",
            "no",
            Action::Cancel,
            "no (any other key too)",
        ),
    ],
};

/// The profile form.
pub const FORM: Layer = Layer {
    name: "in the profile form",
    takes_text: true,
    bindings: &[
        bind(
            &[(KeyCode::Tab, NONE), (KeyCode::Down, NONE)],
            "Tab/↓",
            "next",
            Action::NextField,
            "next field",
        ),
        bind(
            &[
                (KeyCode::BackTab, SHIFT),
                (KeyCode::BackTab, NONE),
                (KeyCode::Up, NONE),
            ],
            "⇧Tab/↑",
            "previous",
            Action::PrevField,
            "previous field",
        ),
        bind(
            &[(KeyCode::PageDown, NONE), (KeyCode::PageUp, NONE)],
            "PgDn",
            "page",
            Action::PageDown,
            "the other page of settings",
        ),
        bind(
            &[(KeyCode::Right, NONE), (KeyCode::Char(' '), NONE)],
            "Space/→",
            "choose",
            Action::ChoiceNext,
            "next choice",
        ),
        bind(
            &[(KeyCode::Left, NONE)],
            "←",
            "back",
            Action::ChoicePrev,
            "previous choice",
        ),
        bind(
            &[(KeyCode::Backspace, NONE)],
            "⌫",
            "delete",
            Action::DeleteChar,
            "delete a letter",
        ),
        bind(
            &[(KeyCode::Enter, NONE)],
            "Enter",
            "save",
            Action::Submit,
            "save the profile",
        ),
        bind(
            &[(KeyCode::Char('r'), CTRL)],
            "^R",
            "rediscover",
            Action::Rediscover,
            "read the endpoints again from the issuer's metadata",
        ),
        bind(
            &[(KeyCode::Esc, NONE)],
            "Esc",
            "cancel",
            Action::Cancel,
            "close without saving",
        ),
    ],
};

/// Every layer, in help order.
pub const LAYERS: [&Layer; 9] = [
    &NORMAL, &GLOBAL, &FILTER, &HELP, &AUTHORIZE, &DEVICE, &PASTE, &CONFIRM, &FORM,
];
