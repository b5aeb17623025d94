use std::time::{Duration, Instant};

use cti_plugin_api::sdk::prelude::*;

use super::SimCore;
use crate::settings::SimSettings;

mod operations;
mod scenario_play;

/// A started core, quiet unless the settings ask for calls.
fn started(toml: &str) -> (SimCore, Instant) {
    let settings = SimSettings::from_settings(&Settings::from_toml(toml)).expect("settings");
    let mut core = SimCore::new(settings).expect("core");
    let t0 = Instant::now();
    core.start(t0, Vec::new());
    (core, t0)
}

/// No inbound calls within any test's horizon (the first one is days away).
const QUIET: &str = "calls_per_minute = 0\nfirst_call_after_ms = 1000000000\nseed = 1\n";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn cmd(kind: CommandKind, call_id: &str) -> Command {
    Command::new(kind, call_id)
}

fn with_target(kind: CommandKind, call_id: &str, target: &str) -> Command {
    let mut c = Command::new(kind, call_id);
    c.target = target.into();
    c
}

fn kinds(events: &[ConnectorEvent]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

fn ok(core: &mut SimCore, c: &Command, now: Instant) -> (Outcome, Vec<ConnectorEvent>) {
    match core.execute(c, now) {
        Ok(r) => r,
        Err(e) => panic!("{:?} failed: {e}", c.kind),
    }
}

fn err(core: &mut SimCore, c: &Command, now: Instant) -> ErrorKind {
    match core.execute(c, now) {
        Ok(r) => panic!("{:?} succeeded: {r:?}", c.kind),
        Err(e) => e.kind,
    }
}

/// One inbound call delivered at t0 + 10 ms; returns its id.
fn ringing(extra: &str) -> (SimCore, Instant, String) {
    let toml =
        format!("calls_per_minute = 1\nmax_calls = 1\nfirst_call_after_ms = 10\nseed = 3\n{extra}");
    let (mut core, t0) = started(&toml);
    let events = core.advance(t0 + ms(10));
    assert_eq!(kinds(&events), [EventKind::DELIVERED]);
    let id = events[0].call_id.to_string();
    (core, t0 + ms(10), id)
}

fn state_of(core: &SimCore, id: &str) -> Option<ConnectionState> {
    core.calls()
        .into_iter()
        .find(|c| c.call_id == id)
        .map(|c| c.state)
}

#[test]
fn first_call_arrives_after_first_call_after_ms() {
    let (mut core, t0) = started("first_call_after_ms = 300\nseed = 9\ntalk_time_secs = [0, 0]");
    assert!(core.advance(t0 + ms(299)).is_empty());
    let events = core.advance(t0 + ms(300));
    assert_eq!(kinds(&events), [EventKind::DELIVERED]);
    let ev = &events[0];
    assert_eq!(ev.state, ConnectionState::Alerting);
    let ROption::RSome(call) = &ev.call else {
        panic!("Delivered of a new call carries it");
    };
    assert_eq!(call.call_id, ev.call_id);
    assert_eq!(call.direction, Direction::Inbound);
    assert_eq!(call.state, ConnectionState::Alerting);
    assert_eq!(call.dnis, "+18005550100");
    assert!(
        call.ani.starts_with("+1425555") && call.ani.len() == 12,
        "{}",
        call.ani
    );
    assert!(call.ani[1..].chars().all(|c| c.is_ascii_digit()));
    assert_eq!(ev.party, call.ani);
    assert_eq!(lookup(&call.data, "queue"), Some("Support"));
    assert_eq!(core.calls(), vec![call.clone()]);
}

#[test]
fn arrivals_follow_the_rate() {
    let (mut core, t0) = started("calls_per_minute = 60\nseed = 42\ntalk_time_secs = [0, 0]");
    let mut delivered = 0;
    for s in 1..=600 {
        delivered += core
            .advance(t0 + secs(s))
            .iter()
            .filter(|e| e.kind == EventKind::DELIVERED)
            .count();
    }
    // 600 expected over 10 minutes; a Poisson count stays well within ±25 %.
    assert!((450..=750).contains(&delivered), "{delivered} calls");
    assert_eq!(core.calls().len(), delivered);
}

#[test]
fn max_calls_stops_arrivals() {
    let (mut core, t0) =
        started("calls_per_minute = 600\nmax_calls = 3\nseed = 5\ntalk_time_secs = [0, 0]");
    let events = core.advance(t0 + secs(3600));
    assert_eq!(kinds(&events), [EventKind::DELIVERED; 3]);
    assert_eq!(core.next_due(), None);
}

#[test]
fn zero_rate_means_only_the_first_call() {
    let (mut core, t0) = started("calls_per_minute = 0\nfirst_call_after_ms = 50");
    assert!(core.advance(t0 + ms(49)).is_empty());
    let events = core.advance(t0 + secs(3600));
    assert_eq!(kinds(&events), [EventKind::DELIVERED]);
    assert_eq!(core.next_due(), None);
}

#[test]
fn quiet_settings_raise_no_call() {
    let (mut core, t0) = started(QUIET);
    assert!(core.advance(t0 + secs(3600)).is_empty());
}

#[test]
fn a_seed_reproduces_numbers_and_timings() {
    let run = || {
        let (mut core, t0) = started("calls_per_minute = 120\nseed = 77\ntalk_time_secs = [1, 5]");
        let mut seen = Vec::new();
        for step in 1..=120 {
            let now = t0 + ms(step * 500);
            for ev in core.advance(now) {
                if ev.kind == EventKind::DELIVERED {
                    let _ = core.execute(&cmd(CommandKind::ANSWER, &ev.call_id), now);
                }
                seen.push((step, ev.kind, ev.party.to_string()));
            }
        }
        seen
    };
    let first = run();
    assert!(first.len() > 20);
    assert_eq!(first, run());
}

#[test]
fn call_ids_are_unique() {
    let (mut core, t0) = started("calls_per_minute = 600\nmax_calls = 50\nseed = 1");
    let mut ids: Vec<String> = core
        .advance(t0 + secs(600))
        .iter()
        .filter(|e| e.kind == EventKind::DELIVERED)
        .map(|e| e.call_id.to_string())
        .collect();
    assert_eq!(ids.len(), 50);
    assert!(ids.iter().all(|id| id.starts_with("sim-")));
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    // Another instance (a restart) never reuses an id.
    let (mut other, t1) = started(QUIET);
    let (outcome, _) = ok(
        &mut other,
        &with_target(CommandKind::MAKE_CALL, "", "2"),
        t1,
    );
    assert!(!ids.contains(&outcome.call_id.to_string()));
}

#[test]
fn answer_hold_retrieve_hangup() {
    let (mut core, now, id) = ringing("talk_time_secs = [0, 0]");

    let (_, evs) = ok(&mut core, &cmd(CommandKind::ANSWER, &id), now);
    assert_eq!(kinds(&evs), [EventKind::ESTABLISHED]);
    assert_eq!(evs[0].state, ConnectionState::Connected);
    assert!(evs[0].party.starts_with("+1425555"));
    assert_eq!(state_of(&core, &id), Some(ConnectionState::Connected));

    let (_, evs) = ok(&mut core, &cmd(CommandKind::HOLD, &id), now);
    assert_eq!(kinds(&evs), [EventKind::HELD]);
    assert_eq!(evs[0].state, ConnectionState::Held);
    assert_eq!(state_of(&core, &id), Some(ConnectionState::Held));

    let (_, evs) = ok(&mut core, &cmd(CommandKind::RETRIEVE, &id), now);
    assert_eq!(kinds(&evs), [EventKind::RETRIEVED]);
    assert_eq!(evs[0].state, ConnectionState::Connected);

    let (_, evs) = ok(&mut core, &cmd(CommandKind::HANGUP, &id), now);
    assert_eq!(
        kinds(&evs),
        [EventKind::CONNECTION_CLEARED, EventKind::CALL_CLEARED]
    );
    assert!(evs.iter().all(|e| e.state == ConnectionState::Null));
    assert_eq!(evs[0].party, "1001");
    assert_eq!(evs[0].cause, "NormalClearing");
    assert!(core.calls().is_empty());
    assert_eq!(
        err(&mut core, &cmd(CommandKind::HOLD, &id), now),
        ErrorKind::UNKNOWN_CALL
    );
}

#[test]
fn reject_clears_the_call() {
    let (mut core, now, id) = ringing("");
    let (_, evs) = ok(&mut core, &cmd(CommandKind::REJECT, &id), now);
    assert_eq!(
        kinds(&evs),
        [EventKind::CONNECTION_CLEARED, EventKind::CALL_CLEARED]
    );
    assert_eq!(evs[0].cause, "CallRejected");
    assert_eq!(evs[0].party, "1001");
    assert!(evs.iter().all(|e| e.state == ConnectionState::Null));
    assert!(core.calls().is_empty());
}

#[test]
fn far_end_hangs_up_after_talk_time() {
    let (mut core, now, id) = ringing("talk_time_secs = [2, 2]");
    let ani = core.calls()[0].ani.clone();
    ok(&mut core, &cmd(CommandKind::ANSWER, &id), now);
    ok(&mut core, &cmd(CommandKind::HOLD, &id), now);
    assert!(core.advance(now + ms(1_999)).is_empty());
    let evs = core.advance(now + secs(2));
    assert_eq!(
        kinds(&evs),
        [EventKind::CONNECTION_CLEARED, EventKind::CALL_CLEARED]
    );
    assert_eq!(evs[0].party, ani);
    assert_eq!(evs[0].cause, "NormalClearing");
    assert!(evs.iter().all(|e| e.state == ConnectionState::Null));
    assert!(core.calls().is_empty());
}

#[test]
fn caller_abandons_a_ringing_call() {
    let (mut core, now, id) = ringing("abandon_after_secs = 5");
    let ani = core.calls()[0].ani.clone();
    assert!(core.advance(now + ms(4_999)).is_empty());
    let evs = core.advance(now + secs(5));
    assert_eq!(
        kinds(&evs),
        [EventKind::CONNECTION_CLEARED, EventKind::CALL_CLEARED]
    );
    assert_eq!(evs[0].party, ani);
    assert_eq!(evs[0].cause, "CallAbandoned");
    assert_eq!(
        err(&mut core, &cmd(CommandKind::ANSWER, &id), now + secs(5)),
        ErrorKind::UNKNOWN_CALL
    );
}

#[test]
fn answering_cancels_the_abandon() {
    let (mut core, now, id) = ringing("abandon_after_secs = 5\ntalk_time_secs = [0, 0]");
    ok(&mut core, &cmd(CommandKind::ANSWER, &id), now + secs(1));
    assert!(core.advance(now + secs(3600)).is_empty());
    assert_eq!(state_of(&core, &id), Some(ConnectionState::Connected));
}

#[test]
fn errors_for_unknown_calls_wrong_states_and_bad_commands() {
    let (mut core, now, id) = ringing("");
    for kind in [
        CommandKind::ANSWER,
        CommandKind::HANGUP,
        CommandKind::HOLD,
        CommandKind::SEND_DTMF,
    ] {
        assert_eq!(
            err(&mut core, &cmd(kind, "nope"), now),
            ErrorKind::UNKNOWN_CALL
        );
    }
    // Ringing: only answer, reject and hangup.
    for kind in [
        CommandKind::HOLD,
        CommandKind::RETRIEVE,
        CommandKind::MUTE,
        CommandKind::UNMUTE,
    ] {
        assert_eq!(
            err(&mut core, &cmd(kind, &id), now),
            ErrorKind::INVALID_STATE
        );
    }
    assert_eq!(
        err(
            &mut core,
            &with_target(CommandKind::SEND_DTMF, &id, "1"),
            now
        ),
        ErrorKind::INVALID_STATE
    );
    ok(&mut core, &cmd(CommandKind::ANSWER, &id), now);
    for kind in [
        CommandKind::ANSWER,
        CommandKind::REJECT,
        CommandKind::RETRIEVE,
    ] {
        assert_eq!(
            err(&mut core, &cmd(kind, &id), now),
            ErrorKind::INVALID_STATE
        );
    }
    ok(&mut core, &cmd(CommandKind::HOLD, &id), now);
    assert_eq!(
        err(&mut core, &cmd(CommandKind::HOLD, &id), now),
        ErrorKind::INVALID_STATE
    );
    assert_eq!(
        err(
            &mut core,
            &with_target(CommandKind::SEND_DTMF, &id, "1"),
            now
        ),
        ErrorKind::INVALID_STATE
    );
    ok(&mut core, &cmd(CommandKind::RETRIEVE, &id), now);
    for digits in ["", "12x", "  "] {
        assert_eq!(
            err(
                &mut core,
                &with_target(CommandKind::SEND_DTMF, &id, digits),
                now
            ),
            ErrorKind::BAD_ARGUMENT
        );
    }
    for kind in [
        CommandKind::SEND_MESSAGE,
        CommandKind::SEND_TYPING,
        CommandKind::END_WRAP_UP,
        CommandKind(63),
    ] {
        assert_eq!(err(&mut core, &cmd(kind, &id), now), ErrorKind::UNSUPPORTED);
    }
    assert_eq!(
        err(&mut core, &cmd(CommandKind::MAKE_CALL, ""), now),
        ErrorKind::BAD_ARGUMENT
    );
    assert_eq!(
        err(&mut core, &cmd(CommandKind::SET_AGENT_STATE, ""), now),
        ErrorKind::BAD_ARGUMENT
    );
    // Failed commands change nothing.
    assert_eq!(state_of(&core, &id), Some(ConnectionState::Connected));
}

#[test]
fn dtmf_and_mute() {
    let (mut core, now, id) = ringing("");
    ok(&mut core, &cmd(CommandKind::ANSWER, &id), now);
    let (_, evs) = ok(
        &mut core,
        &with_target(CommandKind::SEND_DTMF, &id, "12#*A"),
        now,
    );
    assert_eq!(kinds(&evs), [EventKind::DIGITS_GENERATED]);
    assert_eq!(evs[0].text, "12#*A");
    assert_eq!(evs[0].state, ConnectionState::Connected);

    let (_, evs) = ok(&mut core, &cmd(CommandKind::MUTE, &id), now);
    assert_eq!(kinds(&evs), [EventKind::MUTED]);
    assert_eq!(evs[0].state, ConnectionState::Connected);
    ok(&mut core, &cmd(CommandKind::HOLD, &id), now);
    let (_, evs) = ok(&mut core, &cmd(CommandKind::UNMUTE, &id), now);
    assert_eq!(kinds(&evs), [EventKind::UNMUTED]);
    assert_eq!(evs[0].state, ConnectionState::Held);
}

#[test]
fn set_agent_state_is_confirmed() {
    let (mut core, now) = started(QUIET);
    let mut c = cmd(CommandKind::SET_AGENT_STATE, "");
    c.agent_state = ROption::RSome(AgentState::NotReady("Lunch".into()));
    let (_, evs) = ok(&mut core, &c, now);
    assert_eq!(kinds(&evs), [EventKind::AGENT_STATE_CHANGED]);
    assert_eq!(evs[0].call_id, "");
    assert_eq!(evs[0].state, ConnectionState::Null);
    assert_eq!(evs[0].agent_state, c.agent_state);
    assert_eq!(
        core.agent_state(),
        Some(&AgentState::NotReady("Lunch".into()))
    );
}

#[test]
fn outbound_call_rings_then_is_answered() {
    let (mut core, t0) = started(&format!("{QUIET}talk_time_secs = [3, 3]"));
    let (outcome, evs) = ok(
        &mut core,
        &with_target(CommandKind::MAKE_CALL, "", " +15550001 "),
        t0,
    );
    let id = outcome.call_id.to_string();
    assert!(id.starts_with("sim-"));
    assert_eq!(kinds(&evs), [EventKind::ORIGINATED]);
    let ev = &evs[0];
    assert_eq!(ev.call_id, id);
    assert_eq!(ev.state, ConnectionState::Initiated);
    assert_eq!(ev.party, "+15550001");
    let ROption::RSome(call) = &ev.call else {
        panic!("Originated carries the call");
    };
    assert_eq!(call.direction, Direction::Outbound);
    assert_eq!(call.ani, "1001");
    assert_eq!(call.dnis, "+15550001");
    assert_eq!(call.state, ConnectionState::Initiated);
    assert_eq!(
        err(&mut core, &cmd(CommandKind::ANSWER, &id), t0),
        ErrorKind::INVALID_STATE
    );

    assert!(core.advance(t0 + ms(299)).is_empty());
    let evs = core.advance(t0 + ms(300));
    assert_eq!(kinds(&evs), [EventKind::DELIVERED]);
    assert_eq!(evs[0].call, ROption::RNone);
    assert_eq!(evs[0].state, ConnectionState::Initiated);
    assert_eq!(evs[0].party, "+15550001");

    assert!(core.advance(t0 + ms(999)).is_empty());
    let evs = core.advance(t0 + ms(1_000));
    assert_eq!(kinds(&evs), [EventKind::ESTABLISHED]);
    assert_eq!(evs[0].state, ConnectionState::Connected);
    assert_eq!(evs[0].party, "+15550001");
    assert_eq!(state_of(&core, &id), Some(ConnectionState::Connected));

    // The far end hangs up after the talk time.
    let evs = core.advance(t0 + ms(4_000));
    assert_eq!(
        kinds(&evs),
        [EventKind::CONNECTION_CLEARED, EventKind::CALL_CLEARED]
    );
    assert_eq!(evs[0].party, "+15550001");
}

#[test]
fn a_late_advance_replays_the_whole_outbound_flow_in_order() {
    let (mut core, t0) = started(&format!("{QUIET}talk_time_secs = [1, 1]"));
    ok(
        &mut core,
        &with_target(CommandKind::MAKE_CALL, "", "200"),
        t0,
    );
    let evs = core.advance(t0 + secs(60));
    assert_eq!(
        kinds(&evs),
        [
            EventKind::DELIVERED,
            EventKind::ESTABLISHED,
            EventKind::CONNECTION_CLEARED,
            EventKind::CALL_CLEARED
        ]
    );
}

#[test]
fn outbound_call_can_be_abandoned_by_the_agent() {
    let (mut core, t0) = started(QUIET);
    let (outcome, _) = ok(
        &mut core,
        &with_target(CommandKind::MAKE_CALL, "", "200"),
        t0,
    );
    let (_, evs) = ok(&mut core, &cmd(CommandKind::HANGUP, &outcome.call_id), t0);
    assert_eq!(
        kinds(&evs),
        [EventKind::CONNECTION_CLEARED, EventKind::CALL_CLEARED]
    );
    assert_eq!(evs[0].party, "1001");
    assert!(core.advance(t0 + secs(60)).is_empty());
}

#[test]
fn busy_number_fails() {
    let (mut core, t0) = started(QUIET);
    let (outcome, _) = ok(
        &mut core,
        &with_target(CommandKind::MAKE_CALL, "", "+15550486"),
        t0,
    );
    let evs = core.advance(t0 + ms(300));
    assert_eq!(kinds(&evs), [EventKind::FAILED, EventKind::CALL_CLEARED]);
    assert_eq!(evs[0].state, ConnectionState::Failed);
    assert_eq!(evs[0].cause, "Busy");
    assert_eq!(evs[0].party, "+15550486");
    assert_eq!(evs[1].state, ConnectionState::Null);
    assert!(evs.iter().all(|e| e.call_id == outcome.call_id));
    assert!(core.calls().is_empty());
}

#[test]
fn events_of_several_calls_come_in_time_order() {
    let (mut core, t0) = started(&format!(
        "{QUIET}outbound_ring_ms = 100\noutbound_answer_ms = 100"
    ));
    let (a, _) = ok(&mut core, &with_target(CommandKind::MAKE_CALL, "", "1"), t0);
    let (b, _) = ok(
        &mut core,
        &with_target(CommandKind::MAKE_CALL, "", "2"),
        t0 + ms(50),
    );
    let order: Vec<(EventKind, String)> = core
        .advance(t0 + secs(1))
        .into_iter()
        .map(|e| (e.kind, e.call_id.to_string()))
        .collect();
    let (a, b) = (a.call_id.to_string(), b.call_id.to_string());
    assert_eq!(
        order,
        [
            (EventKind::DELIVERED, a.clone()),
            (EventKind::DELIVERED, b.clone()),
            (EventKind::ESTABLISHED, a),
            (EventKind::ESTABLISHED, b),
        ]
    );
}

#[test]
fn adopted_calls_keep_working() {
    let settings = SimSettings::from_settings(&Settings::from_toml(
        "calls_per_minute = 0\ntalk_time_secs = [0, 0]",
    ))
    .expect("settings");
    let mut core = SimCore::new(settings).expect("core");
    let call = |id: &str, state| CallInfo {
        call_id: id.into(),
        direction: Direction::Inbound,
        ani: "+15551112222".into(),
        dnis: "+18005550100".into(),
        state,
        data: RVec::new(),
    };
    let t0 = Instant::now();
    core.start(
        t0,
        vec![
            call("old-1", ConnectionState::Connected),
            call("old-2", ConnectionState::Alerting),
            call("old-3", ConnectionState::Null),
            call("old-1", ConnectionState::Held),
        ],
    );
    let ids: Vec<String> = core.calls().iter().map(|c| c.call_id.to_string()).collect();
    assert_eq!(ids, ["old-1", "old-2"]);
    ok(&mut core, &cmd(CommandKind::HOLD, "old-1"), t0);
    ok(&mut core, &cmd(CommandKind::ANSWER, "old-2"), t0);
    assert_eq!(state_of(&core, "old-1"), Some(ConnectionState::Held));
    assert_eq!(state_of(&core, "old-2"), Some(ConnectionState::Connected));
}

#[test]
fn test_mode_offers_one_call_then_a_second_once_it_no_longer_rings() {
    // Demo settings (random calls, callers hanging up) are overridden.
    let (mut core, t0) =
        started("calls_per_minute = 600\ntalk_time_secs = [1.0, 2.0]\ncti_test_mode = true\n");
    let first = core.advance(t0 + ms(200));
    assert_eq!(kinds(&first), [EventKind::DELIVERED]);
    let id = first[0].call_id.to_string();
    // Nothing else while it rings, however long.
    assert!(core.advance(t0 + secs(600)).is_empty());
    ok(&mut core, &cmd(CommandKind::ANSWER, &id), t0 + secs(600));
    // The far end never hangs up; the second call comes once the first is
    // answered.
    let second = core.advance(t0 + secs(600) + ms(200));
    assert_eq!(kinds(&second), [EventKind::DELIVERED], "{second:?}");
    let id2 = second[0].call_id.to_string();
    assert_ne!(id, id2);
    ok(&mut core, &cmd(CommandKind::REJECT, &id2), t0 + secs(601));
    // No third, and the first call is still up an hour later.
    assert!(core.advance(t0 + secs(4200)).is_empty());
    let calls = core.calls();
    assert!(calls
        .iter()
        .any(|c| c.call_id == id.as_str() && c.state == ConnectionState::Connected));
}
