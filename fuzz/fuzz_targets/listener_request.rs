//! The generic listener's request bodies (untrusted: whatever reaches its
//! HTTP port with the token): JSON or form fields, then what a POST and a
//! PATCH do with them. A refusal is a 4xx with a reason and changes
//! nothing; an accepted request leaves every value within the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use listener_connector::store::{Fields, Limits, Store};

fuzz_target!(|data: &[u8]| {
    // First byte: the content type and the first request's verb.
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let parsed = if mode & 1 == 0 {
        Fields::from_json(body)
    } else {
        Fields::from_form(body)
    };
    let fields = match parsed {
        Ok(f) => f,
        Err(r) => {
            assert!((400..500).contains(&r.status), "{r:?}");
            assert!(!r.reason.is_empty());
            return;
        }
    };
    let limits = Limits {
        max_interactions: 4,
        max_data: 8,
        max_key: 16,
        max_value: 64,
    };
    let mut store = Store::new(limits, "agent");
    // A POST with these fields, then a PATCH of what it made (or of a
    // standing interaction) with the same fields.
    let base = Fields {
        ani: Some("+15550100".into()),
        ..Fields::default()
    };
    let (standing, _) = store.create(base).expect("a plain create");
    let before = store.calls().len();
    let target = match store.create(fields.clone()) {
        Ok((id, events)) => {
            assert!(!events.is_empty());
            assert_eq!(store.calls().len(), before + 1);
            id
        }
        Err(r) => {
            assert!((400..500).contains(&r.status), "{r:?}");
            assert_eq!(store.calls().len(), before, "nothing half-created");
            standing
        }
    };
    let snapshot = store.json(&target);
    match store.update(&target, fields) {
        Ok(events) => assert!(!events.is_empty()),
        Err(r) => {
            assert!((400..500).contains(&r.status), "{r:?}");
            assert_eq!(store.json(&target), snapshot, "a refused update changes nothing");
        }
    }
    for info in store.calls() {
        assert!(info.data.len() <= limits.max_data, "{info:?}");
        for kv in info.data.iter() {
            assert!(kv.key.len() <= limits.max_key && kv.value.len() <= limits.max_value);
        }
        assert!(info.ani.len() <= limits.max_value && info.dnis.len() <= limits.max_value);
    }
});
