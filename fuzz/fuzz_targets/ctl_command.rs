//! The JSON command parser of the ctl socket (`{"op":"command","command":…}`):
//! any JSON value must give a command or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(cmd) = cti_host::ctl::parse_command(&v) {
        let _ = cmd.kind.to_string();
    }
    if let Some(inner) = v.get("command") {
        let _ = cti_host::ctl::parse_command(inner);
    }
});
