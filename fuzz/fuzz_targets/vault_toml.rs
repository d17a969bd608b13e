#![no_main]
//! The vault loader on arbitrary decrypted text: errors, never panics.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(vault) = tokdeck::vault::parse::parse_vault(data, std::path::Path::new("fuzz.age")) {
        // Whatever loads must serialize again, as every save does.
        let _ = toml::to_string(&vault);
    }
});
