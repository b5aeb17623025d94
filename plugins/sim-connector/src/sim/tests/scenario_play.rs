//! Playing scenarios with a fake clock.

use std::time::Instant;

use cti_plugin_api::sdk::prelude::*;

use super::{cmd, kinds, ms, ok, secs, state_of, with_target};
use crate::{scenario::Scenario, settings::SimSettings, sim::SimCore};

/// Quiet far ends and the default outbound timings (ring 300, answer 700).
const SETTINGS: &str = "talk_time_secs = [0, 0]\nseed = 11\n";

fn playing(scenario: &str, settings: &str) -> (SimCore, Instant) {
    let cfg = SimSettings::from_settings(&Settings::from_toml(settings)).expect("settings");
    let scn = Scenario::parse("test.toml", scenario).expect("scenario");
    let mut core = SimCore::with_scenario(cfg, Some(scn)).expect("core");
    let t0 = Instant::now();
    core.start(t0, Vec::new());
    (core, t0)
}

/// Advances millisecond by millisecond up to `until_ms`: (ms, kind, call).
fn timeline(core: &mut SimCore, t0: Instant, until_ms: u64) -> Vec<(u64, EventKind, String)> {
    let mut seen = Vec::new();
    for t in 0..=until_ms {
        for ev in core.advance(t0 + ms(t)) {
            seen.push((t, ev.kind, ev.call_id.to_string()));
        }
    }
    seen
}

fn e(t: u64, kind: EventKind, call: &str) -> (u64, EventKind, String) {
    (t, kind, call.to_owned())
}

/// The example of the scenario format, steps out of time order.
const EXAMPLE: &str = r#"
[[step]]
at_ms = 0
action = "inbound"
call = "c1"
ani = "+14255550100"
dnis = "+18005550100"
data = { queue = "Sales" }
[[step]]
at_ms = 2000
action = "far_hangup"
call = "c1"
[[step]]
at_ms = 500
action = "agent_state"
state = "NotReady(Break)"
[[step]]
at_ms = 100
action = "outbound"
call = "o1"
dnis = "+15550001111"
[[step]]
action = "busy"
call = "o2"
dnis = "+15550002222"
at_ms = 300
[[step]]
action = "no_answer"
call = "o3"
dnis = "+15550003333"
at_ms = 400
"#;

#[test]
fn the_example_plays_in_time_order() {
    use EventKind as K;
    let (mut core, t0) = playing(EXAMPLE, SETTINGS);
    let seen = timeline(&mut core, t0, 7_000);
    assert_eq!(
        seen,
        [
            e(0, K::DELIVERED, "scn-c1"),
            e(100, K::ORIGINATED, "scn-o1"),
            e(300, K::ORIGINATED, "scn-o2"),
            // A step comes before a call's timer due at the same time.
            e(400, K::ORIGINATED, "scn-o3"),
            e(400, K::DELIVERED, "scn-o1"),
            e(500, K::AGENT_STATE_CHANGED, ""),
            e(600, K::FAILED, "scn-o2"),
            e(600, K::CALL_CLEARED, "scn-o2"),
            e(700, K::DELIVERED, "scn-o3"),
            e(1_100, K::ESTABLISHED, "scn-o1"),
            e(2_000, K::CONNECTION_CLEARED, "scn-c1"),
            e(2_000, K::CALL_CLEARED, "scn-c1"),
            e(5_700, K::FAILED, "scn-o3"),
            e(5_700, K::CALL_CLEARED, "scn-o3"),
        ]
    );
    assert!(core.advance(t0 + secs(3_600)).is_empty(), "no random calls");
    assert_eq!(core.next_due(), None);
    let ids: Vec<String> = core.calls().iter().map(|c| c.call_id.to_string()).collect();
    assert_eq!(ids, ["scn-o1"]);
}

#[test]
fn the_example_events_carry_what_the_steps_say() {
    let (mut core, t0) = playing(EXAMPLE, SETTINGS);
    let evs = core.advance(t0);
    let ROption::RSome(call) = &evs[0].call else {
        panic!("Delivered carries the call");
    };
    assert_eq!(
        (
            call.direction,
            call.ani.as_str(),
            call.dnis.as_str(),
            call.state
        ),
        (
            Direction::Inbound,
            "+14255550100",
            "+18005550100",
            ConnectionState::Alerting
        )
    );
    assert_eq!(
        call.data.as_slice(),
        [KeyValue::new("queue", "Sales")],
        "the step's data replaces call_data"
    );
    assert_eq!(evs[0].party, "+14255550100");

    let evs = core.advance(t0 + ms(100));
    let o = &evs[0];
    assert_eq!(
        (o.kind, o.state, o.party.as_str()),
        (
            EventKind::ORIGINATED,
            ConnectionState::Initiated,
            "+15550001111"
        )
    );
    let ROption::RSome(call) = &o.call else {
        panic!("Originated carries the call");
    };
    assert_eq!(
        (call.direction, call.ani.as_str(), call.dnis.as_str()),
        (Direction::Outbound, "1001", "+15550001111")
    );
    assert!(call.data.is_empty());

    let evs = core.advance(t0 + ms(500));
    let forced = evs.last().expect("agent state");
    assert_eq!(forced.kind, EventKind::AGENT_STATE_CHANGED);
    assert_eq!(
        forced.agent_state,
        ROption::RSome(AgentState::NotReady("Break".into()))
    );
    assert_eq!(forced.cause, "switch");
    assert_eq!(
        core.agent_state(),
        Some(&AgentState::NotReady("Break".into()))
    );

    let evs = core.advance(t0 + ms(600));
    assert_eq!(
        (evs[0].cause.as_str(), evs[0].state, evs[0].party.as_str()),
        ("Busy", ConnectionState::Failed, "+15550002222")
    );

    let evs = core.advance(t0 + ms(2_000));
    let abandoned = evs
        .iter()
        .find(|e| e.call_id == "scn-c1")
        .expect("c1 clears");
    assert_eq!(
        (
            abandoned.kind,
            abandoned.state,
            abandoned.party.as_str(),
            abandoned.cause.as_str()
        ),
        (
            EventKind::CONNECTION_CLEARED,
            ConnectionState::Null,
            "+14255550100",
            "CallAbandoned"
        )
    );

    let evs = core.advance(t0 + ms(5_700));
    assert_eq!(kinds(&evs), [EventKind::FAILED, EventKind::CALL_CLEARED]);
    assert_eq!(
        (evs[0].cause.as_str(), evs[0].party.as_str()),
        ("NoAnswer", "+15550003333")
    );
}

#[test]
fn inbound_defaults_come_from_the_settings() {
    let (mut core, t0) = playing(
        "[[step]]\nat_ms = 10\naction = \"inbound\"\ncall = \"x\"\n",
        "ani_prefix = \"+4420\"\ndnis = \"+448000\"\ncall_data = { lang = \"en\" }\nseed = 1",
    );
    let evs = core.advance(t0 + ms(10));
    assert_eq!(kinds(&evs), [EventKind::DELIVERED]);
    let ROption::RSome(call) = &evs[0].call else {
        panic!("Delivered carries the call");
    };
    assert_eq!(call.call_id, "scn-x");
    assert!(
        call.ani.starts_with("+4420") && call.ani.len() == 9,
        "{}",
        call.ani
    );
    assert_eq!(call.dnis, "+448000");
    assert_eq!(lookup(&call.data, "lang"), Some("en"));
}

#[test]
fn talk_secs_and_far_hangup_of_a_connected_call() {
    let scenario = r#"
[[step]]
at_ms = 0
action = "inbound"
call = "short"
ani = "+1001"
talk_secs = 1.5
[[step]]
at_ms = 0
action = "inbound"
call = "long"
ani = "+1002"
talk_secs = 0
[[step]]
at_ms = 10000
action = "far_hangup"
call = "long"
"#;
    let (mut core, t0) = playing(scenario, "talk_time_secs = [100, 100]");
    core.advance(t0);
    ok(
        &mut core,
        &cmd(CommandKind::ANSWER, "scn-short"),
        t0 + secs(1),
    );
    ok(
        &mut core,
        &cmd(CommandKind::ANSWER, "scn-long"),
        t0 + secs(1),
    );
    assert!(core.advance(t0 + ms(2_499)).is_empty());
    let evs = core.advance(t0 + ms(2_500));
    assert_eq!(
        kinds(&evs),
        [EventKind::CONNECTION_CLEARED, EventKind::CALL_CLEARED]
    );
    assert_eq!(
        (evs[0].call_id.as_str(), evs[0].party.as_str()),
        ("scn-short", "+1001")
    );
    assert!(
        core.advance(t0 + ms(9_999)).is_empty(),
        "talk_secs = 0: never"
    );
    let evs = core.advance(t0 + secs(10));
    assert_eq!(
        kinds(&evs),
        [EventKind::CONNECTION_CLEARED, EventKind::CALL_CLEARED]
    );
    assert_eq!(
        (
            evs[0].call_id.as_str(),
            evs[0].party.as_str(),
            evs[0].cause.as_str()
        ),
        ("scn-long", "+1002", "NormalClearing")
    );
    assert!(core.calls().is_empty());
}

#[test]
fn far_hangup_follows_a_party_into_a_conference() {
    let scenario = r#"
[[step]]
at_ms = 0
action = "inbound"
call = "c1"
ani = "+14255550101"
[[step]]
at_ms = 5000
action = "far_hangup"
call = "c1"
"#;
    let (mut core, t0) = playing(scenario, SETTINGS);
    core.advance(t0);
    ok(&mut core, &cmd(CommandKind::ANSWER, "scn-c1"), t0);
    let (o, _) = ok(
        &mut core,
        &with_target(CommandKind::CONSULT, "scn-c1", "+15550002222"),
        t0,
    );
    let b = o.call_id.to_string();
    core.advance(t0 + ms(1_000));
    let mut conf = Command::new(CommandKind::CONFERENCE, "scn-c1");
    conf.other_call_id = b.as_str().into();
    ok(&mut core, &conf, t0 + ms(1_000));
    let evs = core.advance(t0 + secs(5));
    assert_eq!(kinds(&evs), [EventKind::CONNECTION_CLEARED]);
    assert_eq!(
        (evs[0].call_id.as_str(), evs[0].party.as_str(), evs[0].state),
        (b.as_str(), "+14255550101", ConnectionState::Connected)
    );
    assert_eq!(core.far_parties(&b), ["+15550002222"]);
    assert!(core.take_notes().is_empty());
}

#[test]
fn far_hangup_by_party_or_all_and_of_a_finished_call() {
    let scenario = r#"
[[step]]
at_ms = 0
action = "outbound"
call = "o1"
dnis = "+15550001111"
[[step]]
at_ms = 2000
action = "far_hangup"
party = "+15550001111"
[[step]]
at_ms = 3000
action = "far_hangup"
call = "o1"
[[step]]
at_ms = 3000
action = "far_hangup"
call = "o1"
party = "*"
"#;
    let (mut core, t0) = playing(scenario, SETTINGS);
    core.advance(t0 + ms(1_000));
    assert_eq!(state_of(&core, "scn-o1"), Some(ConnectionState::Connected));
    let evs = core.advance(t0 + ms(2_000));
    assert_eq!(
        kinds(&evs),
        [EventKind::CONNECTION_CLEARED, EventKind::CALL_CLEARED]
    );
    assert_eq!(evs[0].party, "+15550001111");
    // The later steps find no call: nothing happens, and the log says why.
    assert!(core.advance(t0 + secs(10)).is_empty());
    let notes = core.take_notes();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].starts_with("test.toml: step 3: far_hangup skipped"),
        "{notes:?}"
    );
    assert!(
        notes[1].starts_with("test.toml: step 4: far_hangup skipped"),
        "{notes:?}"
    );
    assert!(core.take_notes().is_empty());
}

#[test]
fn a_ringing_outbound_call_can_be_hung_up_by_the_far_end() {
    let scenario = r#"
[[step]]
at_ms = 0
action = "no_answer"
call = "o"
dnis = "+1555"
[[step]]
at_ms = 1000
action = "far_hangup"
call = "o"
"#;
    let (mut core, t0) = playing(scenario, SETTINGS);
    core.advance(t0 + ms(999));
    let evs = core.advance(t0 + ms(1_000));
    assert_eq!(
        kinds(&evs),
        [EventKind::CONNECTION_CLEARED, EventKind::CALL_CLEARED]
    );
    assert_eq!(evs[0].cause, "CallRejected");
    assert!(core.advance(t0 + secs(60)).is_empty());
}

#[test]
fn a_scenario_turns_random_calls_off_unless_a_rate_is_given() {
    let one = "[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = \"c1\"\n";
    let (mut core, t0) = playing(one, "first_call_after_ms = 10\nseed = 2");
    let evs = core.advance(t0 + secs(3_600));
    assert_eq!(kinds(&evs), [EventKind::DELIVERED]);
    let (mut core, t0) = playing(
        one,
        "first_call_after_ms = 10\ncalls_per_minute = 60\nseed = 2\ntalk_time_secs = [0, 0]",
    );
    let evs = core.advance(t0 + secs(60));
    let ids: Vec<&str> = evs.iter().map(|e| e.call_id.as_str()).collect();
    assert_eq!(ids[0], "scn-c1");
    assert!(ids[1..].iter().all(|id| id.starts_with("sim-")));
    assert!(ids.len() > 20, "{}", ids.len());
}

#[test]
fn a_repeated_scenario_loops_with_fresh_ids() {
    let scenario = r#"
repeat = true
[[step]]
at_ms = 0
action = "inbound"
call = "c1"
ani = "+1001"
[[step]]
at_ms = 500
action = "far_hangup"
call = "c1"
"#;
    use EventKind as K;
    let (mut core, t0) = playing(scenario, SETTINGS);
    // Default period: the last at_ms + 1 s.
    let seen = timeline(&mut core, t0, 3_100);
    assert_eq!(
        seen,
        [
            e(0, K::DELIVERED, "scn-c1"),
            e(500, K::CONNECTION_CLEARED, "scn-c1"),
            e(500, K::CALL_CLEARED, "scn-c1"),
            e(1_500, K::DELIVERED, "scn-c1-2"),
            e(2_000, K::CONNECTION_CLEARED, "scn-c1-2"),
            e(2_000, K::CALL_CLEARED, "scn-c1-2"),
            e(3_000, K::DELIVERED, "scn-c1-3"),
        ]
    );
    let with_period = format!("period_ms = 10000\n{scenario}");
    let (mut core, t0) = playing(&with_period, SETTINGS);
    assert_eq!(core.advance(t0 + ms(9_999)).len(), 3);
    let evs = core.advance(t0 + ms(10_000));
    assert_eq!(evs[0].call_id, "scn-c1-2");
}

#[test]
fn a_restart_replays_the_scenario_without_reusing_ids() {
    let one = "[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = \"c1\"\n";
    let (mut core, t0) = playing(one, SETTINGS);
    core.advance(t0);
    ok(&mut core, &cmd(CommandKind::ANSWER, "scn-c1"), t0);
    let live = core.calls();
    // A new instance (a reload) adopts the live call and plays from the top.
    let cfg = SimSettings::from_settings(&Settings::from_toml(SETTINGS)).expect("settings");
    let scn = Scenario::parse("test.toml", one).expect("scenario");
    let mut fresh = SimCore::with_scenario(cfg, Some(scn)).expect("core");
    let t1 = t0 + secs(5);
    fresh.start(t1, live);
    let evs = fresh.advance(t1);
    assert_eq!(kinds(&evs), [EventKind::DELIVERED]);
    assert_eq!(evs[0].call_id, "scn-c1-2");
    assert_eq!(state_of(&fresh, "scn-c1"), Some(ConnectionState::Connected));
    // The same instance started again also plays from the top.
    core.start(t1, Vec::new());
    assert_eq!(core.advance(t1)[0].call_id, "scn-c1-2");
}

#[test]
fn an_empty_scenario_is_silence() {
    let (mut core, t0) = playing("", SETTINGS);
    assert!(core.advance(t0 + secs(3_600)).is_empty());
    assert_eq!(core.next_due(), None);
    let (mut core, t0) = playing("repeat = true", SETTINGS);
    assert!(core.advance(t0 + secs(3_600)).is_empty());
}

#[test]
fn the_example_scenarios_in_config_play() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/scenarios");
    let mut played = 0;
    for entry in std::fs::read_dir(&dir).expect("config/scenarios") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let cfg = SimSettings::from_settings(&Settings::from_toml(&format!(
            "scenario = {:?}\nseed = 5",
            path.display().to_string()
        )))
        .expect("settings");
        let mut core = SimCore::new(cfg).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let t0 = Instant::now();
        core.start(t0, Vec::new());
        let mut events = 0;
        for s in 0..=600 {
            let now = t0 + secs(s);
            for ev in core.advance(now) {
                events += 1;
                // An agent who answers everything.
                if ev.kind == EventKind::DELIVERED && ev.state == ConnectionState::Alerting {
                    ok(&mut core, &cmd(CommandKind::ANSWER, &ev.call_id), now);
                }
            }
        }
        assert!(events > 0, "{}", path.display());
        played += 1;
    }
    assert!(played >= 2, "{played} scenarios in {}", dir.display());
}
