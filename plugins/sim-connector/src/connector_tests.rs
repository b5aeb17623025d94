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
