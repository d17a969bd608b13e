#![no_main]
//! The pasted code / redirect URL parser and the callback query parser on arbitrary input.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tokdeck::oauth::redirect::parse_pasted(text, Some("expected-state"));
        let _ = tokdeck::oauth::redirect::parse_pasted(text, None);
        let _ = tokdeck::oauth::redirect::parse_query(text);
    }
});
