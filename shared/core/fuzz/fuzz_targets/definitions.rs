//! Fuzzes pipeline definitions: arbitrary TOML text must give a Catalog or a one-line error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = csvflow_core::Catalog::from_toml(text) {
            assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
        }
    }
});
