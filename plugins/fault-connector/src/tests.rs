use std::sync::{Arc, Mutex};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr},
};
use cti_plugin_api::{
    sdk::{guard, prelude::*},
    HostApi, HostApi_TO,
};

use super::FaultConnector;

#[derive(Clone)]
struct FakeHost {
    model: ConnectionModel,
    events: Arc<Mutex<Vec<ConnectorEvent>>>,
}

impl HostApi for FakeHost {
    fn emit(&self, event: ConnectorEvent) -> RResult<(), PluginError> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
        RResult::ROk(())
    }
    fn submit(&self, _command: Command) -> RResult<u64, PluginError> {
        RResult::RErr(PluginError::new(ErrorKind::UNSUPPORTED, "no submit"))
    }
    fn log(&self, _level: LogLevel, _message: RStr<'_>) {}
    fn hosted(&self) -> HostedInfo {
        HostedInfo {
            name: "fault".into(),
            channel: "voice".into(),
            connection: self.model,
            poll_interval_ms: 50,
            agent_id: "agent".into(),
        }
    }
}

type Events = Arc<Mutex<Vec<ConnectorEvent>>>;

fn build(model: ConnectionModel, settings: &str) -> Result<(FaultConnector, Events), PluginError> {
    let events = Events::default();
    let fake = FakeHost {
        model,
        events: Arc::clone(&events),
    };
    let host = Host::from_handle(HostApi_TO::from_ptr(RArc::new(fake), TD_Opaque));
    let settings = Settings::from_toml(settings);
    guard(|| FaultConnector::new(host, settings))
        .into_result()
        .map(|c| (c, events))
}

fn kinds(events: &[ConnectorEvent]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

#[test]
fn bad_settings_are_refused() {
    for text in ["panic_in = [\"bogus\"]", "panic_every = 0", "typo = 1"] {
        let err = build(ConnectionModel::Instance, text).err().map(|e| e.kind);
        assert_eq!(err, Some(ErrorKind::BAD_SETTINGS), "{text}");
    }
}

#[test]
fn panics_on_every_nth_call() {
    let err = build(ConnectionModel::Instance, "panic_in = [\"new\"]").err();
    assert_eq!(
        err.map(|e| (e.kind, e.message.to_string())),
        Some((
            ErrorKind::PANIC,
            "plugin panicked: fault-connector: injected panic in new (call 1)".to_owned()
        ))
    );
    let (mut c, _) = build(
        ConnectionModel::Instance,
        "panic_in = [\"execute\", \"stop\"]\npanic_every = 2",
    )
    .expect("new");
    let hangup = Command::new(CommandKind::HANGUP, "nope");
    let results: Vec<ErrorKind> = (0..4)
        .map(|_| {
            guard(|| c.execute(&hangup))
                .into_result()
                .err()
                .map(|e| e.kind)
        })
        .map(|k| k.unwrap_or(ErrorKind::INTERNAL))
        .collect();
    assert_eq!(
        results,
        [
            ErrorKind::UNKNOWN_CALL,
            ErrorKind::PANIC,
            ErrorKind::UNKNOWN_CALL,
            ErrorKind::PANIC
        ]
    );
    let stop = |c: &mut FaultConnector| guard(|| c.stop()).into_result().err().map(|e| e.message);
    assert_eq!(stop(&mut c), None);
    assert_eq!(
        stop(&mut c).map(|m| m.to_string()),
        Some("plugin panicked: fault-connector: injected panic in stop (call 2)".to_owned())
    );
}

#[test]
fn calls_at_start_and_the_phone_in_the_polling_model() {
    let (mut c, emitted) = build(ConnectionModel::Polling, "calls_at_start = 2").expect("new");
    c.start(Vec::new()).expect("start");
    let evs = c.poll().expect("poll");
    assert_eq!(
        kinds(&evs),
        [
            EventKind::LINK_UP,
            EventKind::DELIVERED,
            EventKind::DELIVERED
        ]
    );
    assert_eq!(evs[1].call_id, "fault-1");
    assert_eq!(evs[1].party, "+15550000001");
    assert_eq!(evs[2].call_id, "fault-2");
    assert_eq!(c.calls().len(), 2);

    for kind in [
        CommandKind::ANSWER,
        CommandKind::HOLD,
        CommandKind::RETRIEVE,
        CommandKind::HANGUP,
    ] {
        c.execute(&Command::new(kind, "fault-1")).expect("command");
    }
    assert_eq!(
        kinds(&c.poll().expect("poll")),
        [
            EventKind::ESTABLISHED,
            EventKind::HELD,
            EventKind::RETRIEVED,
            EventKind::CONNECTION_CLEARED,
            EventKind::CALL_CLEARED
        ]
    );
    let err = |c: &mut FaultConnector, kind, id: &str| {
        c.execute(&Command::new(kind, id)).err().map(|e| e.kind)
    };
    assert_eq!(
        err(&mut c, CommandKind::ANSWER, "fault-1"),
        Some(ErrorKind::UNKNOWN_CALL)
    );
    assert_eq!(
        err(&mut c, CommandKind::HOLD, "fault-2"),
        Some(ErrorKind::INVALID_STATE)
    );
    assert_eq!(
        err(&mut c, CommandKind::REJECT, "fault-2"),
        Some(ErrorKind::UNSUPPORTED)
    );

    let mut dial = Command::new(CommandKind::MAKE_CALL, "");
    dial.target = "+15557654321".into();
    let outcome = c.execute(&dial).expect("make call");
    assert_eq!(outcome.call_id, "fault-3");
    assert_eq!(
        kinds(&c.poll().expect("poll")),
        [EventKind::ORIGINATED, EventKind::ESTABLISHED]
    );
    c.stop().expect("stop");
    assert!(emitted.lock().unwrap_or_else(|e| e.into_inner()).is_empty());
}

#[test]
fn flood_raises_triples() {
    let (mut c, emitted) = build(ConnectionModel::Instance, "flood_events = 500").expect("new");
    c.start(Vec::new()).expect("start");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while emitted.lock().unwrap_or_else(|e| e.into_inner()).len() < 1 + 3 * 500 {
        assert!(std::time::Instant::now() < deadline, "flood too slow");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    c.stop().expect("stop");
    let evs = emitted.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(evs.len(), 1 + 3 * 500);
    assert_eq!(
        kinds(&evs[1..4]),
        [
            EventKind::DELIVERED,
            EventKind::CONNECTION_CLEARED,
            EventKind::CALL_CLEARED
        ]
    );
    assert!(c.calls().is_empty());
}

#[test]
fn capability_lies_and_test_mode() {
    let Ok((mut c, events)) = build(
        ConnectionModel::Instance,
        "claim_extra_capabilities = [\"SendDtmf\"]\nhide_capabilities = [\"Hold\"]\nemit_unknown_call = true\ncti_test_mode = true",
    ) else {
        panic!("valid settings refused");
    };
    let caps = c.capabilities();
    assert!(caps.contains(CommandKind::SEND_DTMF));
    assert!(!caps.contains(CommandKind::HOLD));
    assert!(caps.contains(CommandKind::ANSWER));
    guard(|| c.start(Vec::new())).into_result().expect("start");
    let evs = events.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(
        kinds(&evs),
        [
            EventKind::LINK_UP,
            EventKind::DELIVERED,
            EventKind::ESTABLISHED
        ]
    );
    assert_eq!(evs[2].call_id.as_str(), "ghost-1");
    let id = evs[1].call_id.to_string();
    c.execute(&Command::new(CommandKind::ANSWER, id.as_str()))
        .expect("answer");
    // The claimed command answers Ok and does nothing; the hidden one works.
    let before = events.lock().unwrap_or_else(|e| e.into_inner()).len();
    let mut dtmf = Command::new(CommandKind::SEND_DTMF, id.as_str());
    dtmf.target = "1".into();
    c.execute(&dtmf).expect("claimed dtmf");
    assert_eq!(
        events.lock().unwrap_or_else(|e| e.into_inner()).len(),
        before
    );
    c.execute(&Command::new(CommandKind::HOLD, id.as_str()))
        .expect("hidden hold still works");
    for bad in [
        "claim_extra_capabilities = [\"Nope\"]",
        "hide_capabilities = [\"EndWrapUp\"]",
    ] {
        let err = build(ConnectionModel::Instance, bad).err().map(|e| e.kind);
        assert_eq!(err, Some(ErrorKind::BAD_SETTINGS), "{bad}");
    }
}
