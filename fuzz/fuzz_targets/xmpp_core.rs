//! The XMPP connector's conversation logic fed what customers (and peers)
//! can send: arbitrary stanzas, parsed the way the wire does (an XML element
//! → `Message` / `Presence`), interleaved with the agent's commands
//! (`xmpp_connector::fuzzing::drive` describes the input). Whatever arrives,
//! the events the connector raises stay in valid CSTA order (the checker
//! `cti-host verify` uses) and nothing panics.
#![no_main]

use cti_host::verify::CstaChecker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut checker = CstaChecker::default();
    xmpp_connector::fuzzing::drive(data, |e| checker.on_event(e));
    assert!(
        checker.violations().is_empty(),
        "CSTA order broken: {:?}",
        checker.violations()
    );
});
