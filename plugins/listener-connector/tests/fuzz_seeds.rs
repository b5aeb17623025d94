//! Replays the `listener_request` fuzz seeds (and any crash reproducers in
//! `fuzz/regressions/listener_request`) on the stable toolchain: the first
//! byte picks JSON (even) or a form (odd), the rest is the request body.
//! A refusal is a 4xx with a reason and creates nothing; an accepted body
//! creates exactly one interaction. See fuzz/README.md.

use std::path::Path;

use listener_connector::store::{Fields, Limits, Store};

#[test]
fn listener_request_seeds() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join("listener_request")) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let data = std::fs::read(&p).expect("read seed");
            let Some((&mode, body)) = data.split_first() else {
                continue;
            };
            n += 1;
            let parsed = if mode & 1 == 0 {
                Fields::from_json(body)
            } else {
                Fields::from_form(body)
            };
            let mut store = Store::new(Limits::default(), "agent");
            match parsed.map_err(|r| (r.status, r.reason)).and_then(|f| {
                store
                    .create(f)
                    .map(|_| ())
                    .map_err(|r| (r.status, r.reason))
            }) {
                Ok(()) => assert_eq!(store.calls().len(), 1, "{}", p.display()),
                Err((status, reason)) => {
                    assert!((400..500).contains(&status), "{}: {status}", p.display());
                    assert!(!reason.is_empty(), "{}", p.display());
                    assert!(store.calls().is_empty(), "{}: half-created", p.display());
                }
            }
        }
    }
    assert!(n >= 3, "fuzz/seeds/listener_request has {n} seeds");
}
