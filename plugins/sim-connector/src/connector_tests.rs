//! The connector around the core, with a fake host: both models, stop time.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr},
};
use cti_plugin_api::{sdk::prelude::*, HostApi, HostApi_TO, HostHandle};

use super::{lock, SimConnector};

#[derive(Clone)]
struct FakeHost {
    model: ConnectionModel,
    events: Arc<Mutex<Vec<ConnectorEvent>>>,
}

impl HostApi for FakeHost {
    fn emit(&self, event: ConnectorEvent) -> RResult<(), PluginError> {
        lock(&self.events).push(event);
        RResult::ROk(())
    }
    fn submit(&self, _command: Command) -> RResult<u64, PluginError> {
        RResult::RErr(PluginError::new(ErrorKind::UNSUPPORTED, "no submit"))
    }
    fn log(&self, _level: LogLevel, _message: RStr<'_>) {}
    fn hosted(&self) -> HostedInfo {
        HostedInfo {
            name: "sim".into(),
            channel: "voice".into(),
            connection: self.model,
            poll_interval_ms: 50,
            agent_id: "agent".into(),
        }
    }
}

fn connector(
    model: ConnectionModel,
    settings: &str,
) -> (SimConnector, Arc<Mutex<Vec<ConnectorEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let fake = FakeHost {
        model,
        events: Arc::clone(&events),
    };
    let handle: HostHandle = HostApi_TO::from_ptr(RArc::new(fake), TD_Opaque);
    let host = Host::from_handle(handle);
    let sim = SimConnector::new(host, Settings::from_toml(settings)).expect("new");
    (sim, events)
}

fn wait_for(events: &Mutex<Vec<ConnectorEvent>>, kind: EventKind) -> ConnectorEvent {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(ev) = lock(events).iter().find(|e| e.kind == kind) {
            return ev.clone();
        }
        assert!(Instant::now() < deadline, "no {kind} event");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn instance_model_emits_and_stops_promptly() {
    let (mut sim, events) = connector(
        ConnectionModel::Instance,
        "first_call_after_ms = 20\nmax_calls = 1\ntalk_time_secs = [0, 0]",
    );
    sim.start(Vec::new()).expect("start");
    assert_eq!(lock(&events)[0].kind, EventKind::LINK_UP);
    let delivered = wait_for(&events, EventKind::DELIVERED);
    assert_eq!(sim.calls().len(), 1);

    // Command events are emitted before execute returns.
    sim.execute(&Command::new(
        CommandKind::ANSWER,
        delivered.call_id.clone(),
    ))
    .expect("answer");
    assert_eq!(
        lock(&events).last().map(|e| e.kind),
        Some(EventKind::ESTABLISHED)
    );

    // An outbound call wakes the thread for its earlier deadline.
    let mut dial = Command::new(CommandKind::MAKE_CALL, "");
    dial.target = "+15550486".into();
    let outcome = sim.execute(&dial).expect("make call");
    let failed = wait_for(&events, EventKind::FAILED);
    assert_eq!(failed.call_id, outcome.call_id);

    let t = Instant::now();
    sim.stop().expect("stop");
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        sim.execute(&Command::new(CommandKind::HOLD, "x"))
            .map_err(|e| e.kind),
        Err(ErrorKind::UNKNOWN_CALL)
    );
}

#[test]
fn stop_wakes_an_idle_thread_at_once() {
    // After its only call the generator has nothing due: it blocks in recv().
    let (mut sim, events) = connector(
        ConnectionModel::Instance,
        "first_call_after_ms = 1\nmax_calls = 1\ntalk_time_secs = [0, 0]",
    );
    sim.start(Vec::new()).expect("start");
    wait_for(&events, EventKind::DELIVERED);
    std::thread::sleep(Duration::from_millis(20));
    let t = Instant::now();
    sim.stop().expect("stop");
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn polling_model_returns_events_from_poll() {
    let (mut sim, events) = connector(
        ConnectionModel::Polling,
        "first_call_after_ms = 10\nmax_calls = 1",
    );
    sim.start(Vec::new()).expect("start");
    let first = sim.poll().expect("poll");
    assert_eq!(first.first().map(|e| e.kind), Some(EventKind::LINK_UP));
    std::thread::sleep(Duration::from_millis(20));
    let evs = sim.poll().expect("poll");
    assert_eq!(
        evs.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [EventKind::DELIVERED]
    );
    let id = evs[0].call_id.clone();
    sim.execute(&Command::new(CommandKind::REJECT, id))
        .expect("reject");
    let evs = sim.poll().expect("poll");
    assert_eq!(
        evs.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [EventKind::CONNECTION_CLEARED, EventKind::CALL_CLEARED]
    );
    assert!(sim.poll().expect("poll").is_empty());
    assert!(
        lock(&events).is_empty(),
        "nothing emitted in the polling model"
    );
    sim.stop().expect("stop");
}

/// A scenario file in a fresh temporary folder; returns its path.
fn scenario_file(tag: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("sim-connector-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).expect("write scenario");
    path.display().to_string()
}

#[test]
fn a_scenario_plays_through_both_models() {
    let path = scenario_file(
        "play",
        "[[step]]\nat_ms = 10\naction = \"inbound\"\ncall = \"c1\"\nani = \"+1001\"\n\
         [[step]]\nat_ms = 30\naction = \"agent_state\"\nstate = \"NotReady(Break)\"\n",
    );
    let settings = format!("scenario = {path:?}\ntalk_time_secs = [0, 0]");
    let (mut sim, events) = connector(ConnectionModel::Instance, &settings);
    sim.start(Vec::new()).expect("start");
    let delivered = wait_for(&events, EventKind::DELIVERED);
    assert_eq!(delivered.call_id, "scn-c1");
    let forced = wait_for(&events, EventKind::AGENT_STATE_CHANGED);
    assert_eq!(forced.cause, "switch");
    // The far-end hook through the connector.
    let mut hangup = Command::new(CommandKind::HANGUP, "scn-c1");
    hangup
        .attrs
        .push(KeyValue::new(crate::FAR_END_ATTR, "+1001"));
    sim.execute(&hangup).expect("far end hangs up");
    let cleared = wait_for(&events, EventKind::CONNECTION_CLEARED);
    assert_eq!(
        (cleared.party.as_str(), cleared.cause.as_str()),
        ("+1001", "CallAbandoned")
    );
    sim.stop().expect("stop");

    let (mut sim, _) = connector(ConnectionModel::Polling, &settings);
    // The file is read when the connector is built, not later.
    let _ = std::fs::remove_file(&path);
    sim.start(Vec::new()).expect("start");
    std::thread::sleep(Duration::from_millis(40));
    let kinds: Vec<EventKind> = sim.poll().expect("poll").iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::LINK_UP,
            EventKind::DELIVERED,
            EventKind::AGENT_STATE_CHANGED
        ]
    );
    sim.stop().expect("stop");
}

#[test]
fn a_bad_or_missing_scenario_refuses_the_connector() {
    let refused = |settings: &str| {
        let events = Arc::new(Mutex::new(Vec::new()));
        let fake = FakeHost {
            model: ConnectionModel::Instance,
            events,
        };
        let handle: HostHandle = HostApi_TO::from_ptr(RArc::new(fake), TD_Opaque);
        match SimConnector::new(Host::from_handle(handle), Settings::from_toml(settings)) {
            Ok(_) => panic!("accepted: {settings}"),
            Err(e) => e,
        }
    };
    let e = refused("scenario = \"/nonexistent/scenario.toml\"");
    assert_eq!(e.kind, ErrorKind::BAD_SETTINGS);
    assert!(
        e.message
            .starts_with("/nonexistent/scenario.toml: cannot read the scenario file"),
        "{e}"
    );
    let path = scenario_file("bad", "[[step]]\nat_ms = 0\naction = \"dance\"\n");
    let e = refused(&format!("scenario = {path:?}"));
    assert_eq!(e.kind, ErrorKind::BAD_SETTINGS);
    assert!(
        e.message
            .starts_with(&format!("{path}: step 1: unknown action \"dance\"")),
        "{e}"
    );
    let _ = std::fs::remove_file(&path);
}
