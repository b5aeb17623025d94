//! Replays the `xmpp_core` fuzz seeds (and any reproducers in
//! `fuzz/regressions/xmpp_core`) on the stable toolchain: the XMPP
//! connector's conversation logic, driven by each input, raises events in
//! valid CSTA order (the checker `cti-host verify` uses). See fuzz/README.md.

use cti_host::verify::CstaChecker;

#[test]
fn xmpp_core_seeds_keep_csta_order() {
    let fuzz = cti_e2e::workspace().join("fuzz");
    let mut seeds = 0;
    let mut raised = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join("xmpp_core")) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let data = std::fs::read(&p).expect("read seed");
            let mut checker = CstaChecker::default();
            xmpp_connector::fuzzing::drive(&data, |e| {
                raised += 1;
                checker.on_event(e);
            });
            assert!(
                checker.violations().is_empty(),
                "{}: {:?}",
                p.display(),
                checker.violations()
            );
            seeds += 1;
        }
    }
    println!("{seeds} inputs raised {raised} events");
    assert!(seeds >= 5, "fuzz/seeds/xmpp_core has {seeds} inputs");
    // The seeds open, answer, reply to, transfer and end real conversations.
    assert!(raised >= 20, "the seeds raised only {raised} events");
}
