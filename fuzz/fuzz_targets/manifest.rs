//! The manifest parser and checker: any text must give a manifest or a list
//! of errors with valid positions, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match cti_host::manifest::parse(Path::new("fuzz/m.toml"), text) {
        Ok(m) => {
            for hc in &m.hosted_controls {
                // Every location points inside the text.
                assert!(hc.location.line >= 1 && hc.location.line <= text.lines().count().max(1));
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            for e in &errors.0 {
                assert!(e.line <= text.lines().count() + 1, "{e}");
                let _ = e.to_string();
            }
        }
    }
});
