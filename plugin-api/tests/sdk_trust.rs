//! The SDK's test mode, and what a panic tells the host.

use cti_plugin_api::sdk::{guard, panic_error, Settings, TEST_MODE_KEY};
use cti_plugin_api::ErrorKind;
use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct Strict {
    port: u16,
    name: String,
}

impl Default for Strict {
    fn default() -> Self {
        Self {
            port: 1,
            name: "x".to_owned(),
        }
    }
}

#[test]
fn the_test_mode_key_is_read_and_hidden_from_strict_settings() {
    let plain = Settings::from_toml("port = 7\n");
    assert!(!plain.test_mode());
    assert_eq!(plain.parse::<Strict>().map(|s| s.port).ok(), Some(7));

    let verify = Settings::from_toml(&format!("{TEST_MODE_KEY} = true\nport = 7\n"));
    assert!(verify.test_mode());
    assert_eq!(verify.parse::<Strict>().map(|s| s.port).ok(), Some(7));
    // Still strict about every other key.
    let text = format!("{TEST_MODE_KEY} = true\nport = 7\ncolour = 3\n");
    let err = Settings::from_toml(&text).parse::<Strict>().err();
    assert_eq!(err.map(|e| e.kind), Some(ErrorKind::BAD_SETTINGS));

    assert!(!Settings::from_toml(&format!("{TEST_MODE_KEY} = false")).test_mode());
    assert!(!Settings::from_toml(&format!("{TEST_MODE_KEY} = \"yes\"")).test_mode());
    assert!(!Settings::from_toml("name = \"cti_test_mode\"").test_mode());
    assert_eq!(
        Settings::from_toml("name = \"cti_test_mode\"")
            .parse::<Strict>()
            .map(|s| s.name)
            .ok()
            .as_deref(),
        Some("cti_test_mode")
    );
}

#[test]
fn panic_messages_carry_no_caller_number_and_stay_short() {
    let e = panic_error(Box::new(
        "bad state for call from +14255550100 to +18005550199\nsecond line".to_owned(),
    ));
    assert_eq!(e.kind, ErrorKind::PANIC);
    assert_eq!(
        e.message.as_str(),
        "plugin panicked: bad state for call from +***0100 to +***0199"
    );
    let e = panic_error(Box::new("x".repeat(5000)));
    assert!(e.message.chars().count() < 250, "{}", e.message.len());
    let e = guard::<()>(|| panic!("plain text 42"))
        .into_result()
        .unwrap_err();
    assert_eq!(e.message.as_str(), "plugin panicked: plain text 42");
    let e = panic_error(Box::new(17u8));
    assert_eq!(
        e.message.as_str(),
        "plugin panicked: panic with a non-string payload"
    );
}

#[test]
fn privacy_fuzz_seeds_never_leak_a_number() {
    use cti_plugin_api::sdk::privacy::{mask_number, redact_numbers};
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join("privacy")) else {
            continue;
        };
        for e in entries.flatten() {
            let bytes = std::fs::read(e.path()).expect("read seed");
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            n += 1;
            let _ = mask_number(text);
            let red = redact_numbers(text);
            assert!(!red.contains("4255550100"), "{text:?} -> {red:?}");
        }
    }
    assert!(n > 0, "fuzz/seeds/privacy is empty");
}
