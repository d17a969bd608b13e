//! Untrusted text on its way to a terminal.
//!
//! Servers, redirects and shared vaults put text in front of the user: error descriptions,
//! scopes, e-mail addresses, notes. A terminal executes control sequences in what it prints
//! (OSC 52 writes the clipboard, CSI clears the screen), so every human-readable output shows
//! such text through [`untrusted`] or [`untrusted_lines`]: control characters become visible
//! escapes, and printable text passes through unchanged. JSON output needs none of this: its
//! escaping already makes control characters inert, and it stays lossless.

use std::borrow::Cow;
use std::fmt::Write as _;

/// How many characters of a server's error description are shown; JSON keeps the rest.
pub const MAX_SERVER_TEXT: usize = 300;

/// Longest error line shown: our words around a server's text of at most
/// [`MAX_SERVER_TEXT`] characters.
pub const MAX_ERROR_LINE: usize = MAX_SERVER_TEXT + 100;

/// Text for one line: every control character (C0, DEL, C1), newlines included, becomes a
/// visible escape such as `\x1b` or `\u{9b}`; tabs stay.
pub fn untrusted(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// Text that may span lines: like [`untrusted`], but newlines stay.
pub fn untrusted_lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

/// [`untrusted`], cut to at most `max` characters with an ellipsis.
pub fn untrusted_short(text: &str, max: usize) -> String {
    let safe = untrusted(text);
    if safe.chars().count() <= max {
        return safe.into_owned();
    }
    let mut cut: String = safe.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `bytes` as lowercase hex: how digests are written (fingerprints, pins, spend records).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// JSON for a terminal: serde escapes only the C0 controls, so DEL, the C1 controls (U+0080
/// to U+009F, among them CSI and OSC) and the bidi and zero-width characters are escaped here
/// as `\uXXXX`. They can only
/// stand inside JSON strings, so the document stays valid and decodes to the same values.
pub fn json_for_terminal(json: String) -> String {
    let hidden = |c: char| ('\u{7f}'..='\u{9f}').contains(&c) || invisible(c);
    if !json.chars().any(hidden) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if hidden(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that change how text reads without showing: the bidirectional controls
/// (U+202E turns the rest of a line around) and the zero-width ones.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let allowed = |c: char| c == '\t' || (keep_newlines && c == '\n');
    let hidden = |c: char| (c.is_control() && !allowed(c)) || invisible(c);
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !hidden(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn control_sequences_become_visible() {
        let hostile = "invalid_grant\x1b]52;c;aGFja2Vk\x07\x1b[2J\u{9b}31m\x7f";
        assert_eq!(
            untrusted(hostile),
            "invalid_grant\\x1b]52;c;aGFja2Vk\\x07\\x1b[2J\\u{9b}31m\\x7f"
        );
        assert_eq!(untrusted("a\nb\tc"), "a\\x0ab\tc");
        assert_eq!(untrusted_lines("a\nb\x1b"), "a\nb\\x1b");
        assert!(matches!(untrusted("plain text é ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn bidi_and_zero_width_characters_become_visible() {
        assert_eq!(untrusted("ok\u{202e}txt.exe"), "ok\\u{202e}txt.exe");
        assert_eq!(untrusted("a\u{200b}b\u{feff}"), "a\\u{200b}b\\u{feff}");
        assert!(matches!(untrusted("naïve café"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_escapes_del_and_c1_and_stays_lossless() {
        let value = serde_json::json!({"e": "a\u{9b}2J\u{7f}\u{1b}\u{202e}\u{200b}"});
        let text = json_for_terminal(serde_json::to_string(&value).unwrap());
        assert!(
            !text.chars().any(|c| c.is_control() || invisible(c)),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        let long = "x".repeat(1_000);
        let short = untrusted_short(&long, MAX_SERVER_TEXT);
        assert_eq!(short.chars().count(), MAX_SERVER_TEXT);
        assert!(short.ends_with('…'));
        assert_eq!(untrusted_short("fits", 10), "fits");
    }

    proptest! {
        #[test]
        fn output_holds_no_control_character_but_allowed_whitespace(text in any::<String>()) {
            let one = untrusted(&text);
            prop_assert!(one.chars().all(|c| !c.is_control() || c == '\t'));
            let many = untrusted_lines(&text);
            prop_assert!(many.chars().all(|c| !c.is_control() || c == '\t' || c == '\n'));
        }

        #[test]
        fn printable_text_passes_unchanged(text in "[^\\p{Cc}\\p{Cf}]*") {
            prop_assert_eq!(untrusted(&text), text.as_str());
        }

        #[test]
        fn output_holds_no_bidi_or_zero_width_character(text in any::<String>()) {
            prop_assert!(!untrusted(&text).chars().any(invisible));
        }
    }
}
