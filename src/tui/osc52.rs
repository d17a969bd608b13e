//! Copy to the clipboard of the terminal the user sits at, even over SSH: OSC 52.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// The escape sequence that asks the terminal to put `text` on the clipboard.
///
/// It is sent plain, also inside tmux: tmux takes a plain OSC 52 into its own paste buffer
/// and forwards it to the outer terminal with its default `set-clipboard external`, while a
/// passthrough-wrapped one is dropped under tmux 3.3's default `allow-passthrough off`.
/// Whether the terminal honours it cannot be known, so the app says "sent", not "copied".
pub fn sequence(text: &str) -> Zeroizing<String> {
    let payload = Zeroizing::new(STANDARD.encode(text.as_bytes()));
    Zeroizing::new(format!("\x1b]52;c;{}\x07", payload.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_plain_osc52() {
        assert_eq!(sequence("hi").as_str(), "\x1b]52;c;aGk=\x07");
    }
}
