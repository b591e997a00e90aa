//! Any text as an auditor configuration: an error naming a field, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = mint_audit::Config::from_json(text, std::path::Path::new("/nonexistent")) {
            let _ = e.to_string();
        }
    }
});
