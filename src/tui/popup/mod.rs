//! One module per popup, each owning its state, its keys (a layer of the keymap) and its
//! lines. A popup answers a key with a [`Reply`]; the app carries out what it asks for.

pub mod authorize;
pub mod confirm;
pub mod device;
pub mod filter;
pub mod form;
pub mod help;
pub mod paste;

use age::secrecy::SecretString;
use ratatui::text::Line;

use super::keymap::Layer;
use crate::vault::Profile;
use crate::worker::JobId;

/// What a popup wants after a key.
#[derive(Debug)]
pub enum Reply {
    /// Keep the popup open.
    Stay,
    /// Close it; nothing else.
    Close,
    /// Close it and have the app do this.
    Then(Request),
}

/// What a popup asks the app to do.
#[derive(Debug)]
pub enum Request {
    /// Exchange a pasted code for `profile`'s tokens.
    Exchange {
        profile: String,
        input: SecretString,
    },
    /// Send the authorize URL to the clipboard again (the popup stays).
    CopyUrl(String),
    /// Send `text` to the clipboard (the popup stays); `what` names it in the log.
    Copy { text: String, what: String },
    /// Open the paste popup for `profile`.
    Paste { profile: String },
    /// Stop the authorize job (its loopback listener) and free the profile.
    StopListener { profile: String, job: JobId },
    /// Read the profile's endpoints again from its issuer.
    Rediscover(String),
    /// Delete the profile from the vault.
    Delete(String),
    /// Revoke the profile's tokens at the server.
    Revoke(String),
    /// Save a new or edited profile.
    Save {
        original: Option<String>,
        profile: Box<Profile>,
    },
}

/// What the view needs to draw a popup.
pub struct Card {
    pub title: String,
    pub lines: Vec<Line<'static>>,
    /// Columns wide, borders included (narrowed to the screen).
    pub width: u16,
    /// The first line shown when the lines do not fit.
    pub scroll: u16,
    /// Its keys, shown as the hint line.
    pub layer: &'static Layer,
}
