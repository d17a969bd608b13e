//! Copy to the clipboard of the terminal the user sits at, even over SSH: OSC 52.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// The escape sequence that asks the terminal to put `text` on the clipboard. Inside tmux
/// it is wrapped in tmux's passthrough so it reaches the outer terminal.
pub fn sequence(text: &str, in_tmux: bool) -> Zeroizing<String> {
    let payload = Zeroizing::new(STANDARD.encode(text.as_bytes()));
    if in_tmux {
        Zeroizing::new(format!(
            "\x1bPtmux;\x1b\x1b]52;c;{}\x07\x1b\\",
            payload.as_str()
        ))
    } else {
        Zeroizing::new(format!("\x1b]52;c;{}\x07", payload.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_osc52() {
        assert_eq!(sequence("hi", false).as_str(), "\x1b]52;c;aGk=\x07");
        assert!(sequence("hi", true).starts_with("\x1bPtmux;"));
    }
}
