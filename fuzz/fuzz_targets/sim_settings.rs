//! The simulator's settings through the SDK (`Settings::parse` with the
//! test-mode key stripped, then `SimSettings::validate`).
#![no_main]

use cti_plugin_api::sdk::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let settings = Settings::from_toml(text);
    let _ = settings.test_mode();
    if let Ok(s) = sim_connector::SimSettings::from_settings(&settings) {
        // What validates builds a simulation (unless it names a scenario
        // file, which the fuzzer must not read: it could be /dev/zero).
        if s.scenario.is_none() {
            assert!(sim_connector::SimCore::new(s).is_ok());
        }
    }
});
