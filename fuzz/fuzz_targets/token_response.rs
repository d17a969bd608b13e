#![no_main]
//! The token-endpoint parser on arbitrary bodies, and the conversion into a stored token.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = tokdeck::oauth::client::parse_token_response(data) {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let _ = response.into_token(now, std::time::Duration::from_secs(604_800), None);
    }
});
