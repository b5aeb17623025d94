//! The event mapping and the resynchronisation rules, without baresip.

use std::collections::HashSet;

use super::*;
use crate::proto::CallStat;

const AOR: &str = "sip:1001@127.0.0.1:15070";

fn ev(kind: &str, id: &str, dir: &str, peer: &str, param: &str) -> Event {
    Event {
        kind: kind.into(),
        class: "call".into(),
        aor: AOR.into(),
        direction: dir.into(),
        peer_uri: peer.into(),
        peer_name: String::new(),
        id: id.into(),
        param: param.into(),
    }
}

fn incoming(id: &str) -> Event {
    let mut e = ev(
        "CALL_INCOMING",
        id,
        "incoming",
        "sip:+15551234567@127.0.0.1:5080",
        "sip:+15551234567@127.0.0.1:5080",
    );
    e.peer_name = "Caller".into();
    e
}

fn kinds(r: &Reaction) -> Vec<(String, String, String)> {
    r.events
        .iter()
        .map(|e| (e.kind.to_string(), e.state.to_string(), e.party.to_string()))
        .collect()
}

fn k(kind: &str, state: &str, party: &str) -> (String, String, String) {
    (kind.into(), state.into(), party.into())
}

fn ringing_core(id: &str) -> Core {
    let mut core = Core::new("", Vec::new());
    core.on_event(&incoming(id));
    core
}

fn connected_core(id: &str) -> Core {
    let mut core = ringing_core(id);
    core.on_event(&ev(
        "CALL_ESTABLISHED",
        id,
        "incoming",
        "sip:+15551234567@127.0.0.1:5080",
        "",
    ));
    core
}

#[test]
fn an_incoming_call_is_delivered_with_the_callers_number() {
    let mut core = Core::new("", Vec::new());
    let r = core.on_event(&incoming("c1@h"));
    assert_eq!(kinds(&r), [k("Delivered", "Alerting", "+15551234567")]);
    let e = &r.events[0];
    assert_eq!(e.call_id, "c1@h");
    let ROption::RSome(info) = &e.call else {
        panic!("Delivered carries the call")
    };
    assert_eq!(info.direction, Direction::Inbound);
    assert_eq!(info.ani, "+15551234567");
    assert_eq!(info.dnis, "1001");
    assert_eq!(info.state, ConnectionState::Alerting);
    assert_eq!(
        lookup(&info.data, "peer_uri"),
        Some("sip:+15551234567@127.0.0.1:5080")
    );
    assert_eq!(lookup(&info.data, "peer_name"), Some("Caller"));
    assert_eq!(lookup(&info.data, "sip_call_id"), Some("c1@h"));
    // A repeated CALL_INCOMING changes nothing.
    assert!(core.on_event(&incoming("c1@h")).events.is_empty());
    assert_eq!(core.infos().len(), 1);
}

#[test]
fn established_then_cleared_by_the_agent_or_the_far_end() {
    let mut core = ringing_core("a");
    let r = core.on_event(&ev(
        "CALL_ESTABLISHED",
        "a",
        "incoming",
        "sip:+15551234567@h",
        "",
    ));
    assert_eq!(kinds(&r), [k("Established", "Connected", "+15551234567")]);
    let r = core.on_event(&ev(
        "CALL_CLOSED",
        "a",
        "incoming",
        "",
        "Connection reset by user",
    ));
    assert_eq!(
        kinds(&r),
        [
            k("ConnectionCleared", "Null", "1001"),
            k("CallCleared", "Null", "")
        ]
    );
    assert_eq!(r.events[0].cause, "NormalClearing");
    assert!(core.is_empty() && core.was_closed("a"));
    // Late news of a closed call is ignored.
    assert!(core
        .on_event(&ev("CALL_ESTABLISHED", "a", "incoming", "", ""))
        .events
        .is_empty());

    let mut core = connected_core("b");
    let r = core.on_event(&ev(
        "CALL_CLOSED",
        "b",
        "incoming",
        "",
        "Connection reset by peer",
    ));
    assert_eq!(
        kinds(&r),
        [
            k("ConnectionCleared", "Null", "+15551234567"),
            k("CallCleared", "Null", "")
        ]
    );
    assert_eq!(r.events[0].cause, "NormalClearing");

    // The caller gave up while it rang.
    let mut core = ringing_core("c");
    let r = core.on_event(&ev(
        "CALL_CLOSED",
        "c",
        "incoming",
        "",
        "Connection reset by peer",
    ));
    assert_eq!(r.events[0].cause, "CallAbandoned");

    // The agent rejected it.
    let mut core = ringing_core("d");
    core.mark_rejecting("d");
    let r = core.on_event(&ev(
        "CALL_CLOSED",
        "d",
        "incoming",
        "",
        "Connection reset by user",
    ));
    assert_eq!(r.events[0].cause, "CallRejected");
}

#[test]
fn an_outbound_call_is_correlated_with_its_dial_even_when_events_come_first() {
    let mut core = Core::new("", Vec::new());
    core.begin_dial("sip:bob@127.0.0.1:15090");
    // CALL_LOCAL_SDP has no id; CALL_RINGING arrives before `callstat`'s reply.
    let mut sdp = ev(
        "CALL_LOCAL_SDP",
        "",
        "outgoing",
        "sip:bob@127.0.0.1:15090",
        "offer",
    );
    sdp.class = "other".into();
    assert!(core.on_event(&sdp).events.is_empty());
    let ringing = ev(
        "CALL_RINGING",
        "x1",
        "outgoing",
        "sip:bob@127.0.0.1:15090",
        "",
    );
    assert!(core.on_event(&ringing).events.is_empty(), "held back");
    let stat = CallStat {
        state: "OUTGOING".into(),
        local_uri: AOR.into(),
        peer_uri: "sip:bob@127.0.0.1:15090".into(),
        peer_name: String::new(),
        id: "x1".into(),
        outgoing: true,
    };
    let (id, r) = core.finish_dial(Some(&stat));
    assert_eq!(id.as_deref(), Some("x1"));
    assert_eq!(
        kinds(&r),
        [
            k("Originated", "Initiated", "bob"),
            k("Delivered", "Initiated", "bob")
        ]
    );
    let ROption::RSome(info) = &r.events[0].call else {
        panic!("Originated carries the call")
    };
    assert_eq!((info.ani.as_str(), info.dnis.as_str()), ("1001", "bob"));
    assert_eq!(info.direction, Direction::Outbound);
    let r = core.on_event(&ev(
        "CALL_ESTABLISHED",
        "x1",
        "outgoing",
        "sip:bob@127.0.0.1:15090",
        "",
    ));
    assert_eq!(kinds(&r), [k("Established", "Connected", "bob")]);
}

#[test]
fn a_dial_that_fails_at_once_is_still_reported() {
    // baresip closed the call before `dial` replied; `callstat` shows nothing.
    let mut core = Core::new("", Vec::new());
    core.begin_dial("1234");
    let closed = ev(
        "CALL_CLOSED",
        "y1",
        "outgoing",
        "sip:1234@127.0.0.1",
        "486 Busy Here",
    );
    assert!(core.on_event(&closed).events.is_empty());
    let (id, r) = core.finish_dial(None);
    assert_eq!(id.as_deref(), Some("y1"));
    assert_eq!(
        kinds(&r),
        [
            k("Originated", "Initiated", "1234"),
            k("Failed", "Failed", "1234"),
            k("CallCleared", "Null", "")
        ]
    );
    assert_eq!(r.events[1].cause, "Busy");
    assert_eq!(r.events[1].text, "486 Busy Here");
    assert!(core.is_empty());
}

#[test]
fn a_blind_transfer_ends_with_transferred() {
    let mut core = connected_core("t");
    core.transfer_sent("t", "sip:carol@h");
    let r = core.on_event(&ev("CALL_CLOSED", "t", "incoming", "", "Call transfered"));
    assert_eq!(
        kinds(&r),
        [
            k("Transferred", "Null", "1001"),
            k("ConnectionCleared", "Null", "1001"),
            k("CallCleared", "Null", "")
        ]
    );
    assert_eq!(r.events[0].text, "sip:carol@h");
    assert_eq!(r.events[1].cause, "Transferred");

    // A refused transfer: baresip 1.0.0 drops the call without CALL_CLOSED.
    let mut core = connected_core("u");
    core.transfer_sent("u", "sip:nobody@h");
    let r = core.on_event(&ev("TRANSFER_FAILED", "u", "incoming", "", "404 Not Found"));
    assert_eq!(
        kinds(&r),
        [
            k("ConnectionCleared", "Null", "1001"),
            k("CallCleared", "Null", "")
        ]
    );
    assert_eq!(r.events[0].cause, "TransferFailed");
    assert!(core.is_empty());
}

#[test]
fn being_transferred_tags_the_new_call() {
    let mut core = connected_core("v");
    let r = core.on_event(&ev("TRANSFER", "v", "incoming", "", "sip:carol@h"));
    assert_eq!(kinds(&r), [k("Transferred", "Connected", "+15551234567")]);
    let r = core.on_event(&ev("CALL_RINGING", "w", "outgoing", "sip:carol@h", ""));
    assert_eq!(
        kinds(&r),
        [
            k("Originated", "Initiated", "carol"),
            k("Delivered", "Initiated", "carol")
        ]
    );
    let ROption::RSome(info) = &r.events[0].call else {
        panic!()
    };
    assert_eq!(lookup(&info.data, "referred_by_call"), Some("v"));
}

#[test]
fn received_digits_are_digits_received_and_call_data() {
    let mut core = connected_core("d");
    for digit in ["1", "2", "#"] {
        let r = core.on_event(&ev("CALL_DTMF_START", "d", "incoming", "", digit));
        assert_eq!(
            kinds(&r),
            [k("DigitsReceived", "Connected", "+15551234567")]
        );
        assert_eq!(r.events[0].text, digit);
        assert!(core
            .on_event(&ev("CALL_DTMF_END", "d", "incoming", "", ""))
            .events
            .is_empty());
    }
    let info = &core.infos()[0];
    assert_eq!(lookup(&info.data, "dtmf_received"), Some("12#"));
}

#[test]
fn sip_failures_map_to_causes() {
    assert_eq!(sip_cause("486 Busy Here"), "Busy");
    assert_eq!(sip_cause("404 Not Found"), "DestNotObtainable");
    assert_eq!(sip_cause("480 Temporarily Unavailable"), "CallNotAnswered");
    assert_eq!(sip_cause("603 Decline"), "CallRejected");
    assert_eq!(sip_cause("503 Service Unavailable"), "NetworkCongestion");
    assert_eq!(sip_cause("Connection timed out"), "NetworkNotObtainable");
    assert_eq!(sip_cause(""), "NetworkNotObtainable");
}

#[test]
fn answering_picks_the_previous_call_baresip_will_hold() {
    let mut core = connected_core("a");
    core.on_event(&incoming("b"));
    assert_eq!(core.choose_prev("b"), Some(("a".into(), Prev::Connected)));
    let r = core.answered_with_prev(core.choose_prev("b"));
    assert_eq!(kinds(&r), [k("Held", "Held", "+15551234567")]);
    // With a held call and a ringing one, the held one is the harmless choice.
    core.on_event(&incoming("c"));
    assert_eq!(core.choose_prev("c"), Some(("a".into(), Prev::Held)));
    // Two ringing calls: the other one gets marked held inside baresip; when
    // it is answered later it is resumed.
    let mut core = ringing_core("x");
    core.on_event(&incoming("y"));
    let prev = core.choose_prev("y");
    assert_eq!(prev, Some(("x".into(), Prev::Ringing)));
    core.answered_with_prev(prev);
    core.on_event(&ev("CALL_ESTABLISHED", "y", "incoming", "", ""));
    let r = core.on_event(&ev("CALL_ESTABLISHED", "x", "incoming", "", ""));
    assert_eq!(kinds(&r), [k("Established", "Connected", "+15551234567")]);
    assert_eq!(r.tasks, [Task::Resume("x".into())]);
}

#[test]
fn a_retry_prefers_a_call_baresip_already_holds() {
    let mut core = connected_core("a");
    core.on_event(&incoming("b"));
    core.on_event(&incoming("c"));
    assert_eq!(core.choose_held_prev("c"), None);
    core.answered_with_prev(Some(("b".into(), Prev::Ringing)));
    assert_eq!(
        core.choose_held_prev("c"),
        Some(("b".into(), Prev::Ringing))
    );
    core.set_held("a", true);
    assert_eq!(core.choose_held_prev("c"), Some(("a".into(), Prev::Held)));
}

#[test]
fn a_close_with_held_calls_left_asks_for_a_resync() {
    let mut core = connected_core("a");
    core.on_event(&incoming("b"));
    let r = core.answered_with_prev(Some(("a".into(), Prev::Connected)));
    assert_eq!(r.events.len(), 1);
    core.on_event(&ev("CALL_ESTABLISHED", "b", "incoming", "", ""));
    // baresip resumes a held call whenever another call closes.
    let r = core.on_event(&ev(
        "CALL_CLOSED",
        "b",
        "incoming",
        "",
        "Connection reset by peer",
    ));
    assert_eq!(r.tasks, [Task::Sync]);
    // Without held calls there is nothing to re-read.
    let mut core = connected_core("z");
    let r = core.on_event(&ev(
        "CALL_CLOSED",
        "z",
        "incoming",
        "",
        "Connection reset by peer",
    ));
    assert!(r.tasks.is_empty());
}

fn phone(line: u32, id: &str, state: &str, on_hold: bool, outgoing: bool) -> PhoneCall {
    PhoneCall {
        line,
        id: id.into(),
        state: state.into(),
        on_hold,
        outgoing,
        peer_uri: "sip:+15550000000@h".into(),
        peer_name: String::new(),
        local_uri: AOR.into(),
    }
}

#[test]
fn resync_clears_vanished_calls_and_announces_unknown_ones() {
    // The desktop knew two calls (after a restart); baresip has one of them
    // held, and one the desktop never heard of.
    let known = vec![
        CallInfo::new(
            "k1",
            Direction::Inbound,
            "+1",
            "1001",
            ConnectionState::Connected,
        ),
        CallInfo::new(
            "k2",
            Direction::Inbound,
            "+2",
            "1001",
            ConnectionState::Connected,
        ),
    ];
    let mut core = Core::new("", known);
    let before: HashSet<String> = core.ids();
    let r = core.reconcile(
        &before,
        &[
            phone(1, "k1", "ESTABLISHED", true, false),
            phone(2, "n1", "ESTABLISHED", false, true),
            phone(3, "n2", "INCOMING", false, false),
        ],
        true,
    );
    assert_eq!(
        kinds(&r),
        [
            k("Held", "Held", "+1"),
            k("Originated", "Initiated", "+15550000000"),
            k("Established", "Connected", "+15550000000"),
            k("Delivered", "Alerting", "+15550000000"),
            k("ConnectionCleared", "Null", ""),
            k("CallCleared", "Null", ""),
        ]
    );
    assert_eq!(r.events[4].call_id, "k2");
    assert!(r.events[1].call.is_some() && r.events[3].call.is_some());
    let ids = core.ids();
    assert_eq!(
        ids,
        ["k1", "n1", "n2"].into_iter().map(String::from).collect()
    );
    // Lines are remembered for the next resync.
    assert_eq!(
        core.cached_line(3, "sip:+15550000000@h")
            .map(|c| c.id.as_str()),
        Some("n2")
    );
    // Again: nothing changed, nothing to say.
    let before = core.ids();
    let r = core.reconcile(
        &before,
        &[
            phone(1, "k1", "ESTABLISHED", true, false),
            phone(2, "n1", "ESTABLISHED", false, true),
            phone(3, "n2", "INCOMING", false, false),
        ],
        true,
    );
    assert!(r.events.is_empty(), "{:?}", kinds(&r));
    // baresip resumed k1 on its own.
    let r = core.reconcile(
        &before,
        &[phone(1, "k1", "ESTABLISHED", false, false)],
        false,
    );
    assert_eq!(kinds(&r), [k("Retrieved", "Connected", "+1")]);
    assert_eq!(core.len(), 3, "an incomplete listing clears nothing");
}

#[test]
fn resync_does_not_clear_calls_that_arrived_after_listcalls() {
    let mut core = Core::new("", Vec::new());
    let before = core.ids();
    core.on_event(&incoming("late"));
    let r = core.reconcile(&before, &[], true);
    assert!(r.events.is_empty());
    assert_eq!(core.len(), 1);
}

#[test]
fn another_accounts_events_are_ignored_when_an_account_is_set() {
    let mut core = Core::new("sip:1002@127.0.0.1:15070", Vec::new());
    assert!(core.on_event(&incoming("x")).events.is_empty());
    let mut e = incoming("y");
    e.aor = "sip:1002@127.0.0.1:15070".into();
    let r = core.on_event(&e);
    assert_eq!(kinds(&r), [k("Delivered", "Alerting", "+15551234567")]);
    let ROption::RSome(info) = &r.events[0].call else {
        panic!()
    };
    assert_eq!(info.dnis, "1002");
}

#[test]
fn an_auto_answered_call_is_delivered_then_established() {
    // With answermode=auto baresip sends no CALL_INCOMING.
    let mut core = Core::new("", Vec::new());
    let r = core.on_event(&ev("CALL_ESTABLISHED", "auto", "incoming", "sip:9@h", ""));
    assert_eq!(
        kinds(&r),
        [
            k("Delivered", "Alerting", "9"),
            k("Established", "Connected", "9")
        ]
    );
}

#[test]
fn mute_and_hold_events() {
    let mut core = connected_core("m");
    assert_eq!(
        core.set_muted("m", true).map(|e| e.kind),
        Some(EventKind::MUTED)
    );
    assert_eq!(
        core.set_held("m", true).map(|e| (e.kind, e.state)),
        Some((EventKind::HELD, ConnectionState::Held))
    );
    assert!(core.set_held("m", true).is_none(), "already held");
    assert_eq!(
        core.set_held("m", false).map(|e| (e.kind, e.state)),
        Some((EventKind::RETRIEVED, ConnectionState::Connected))
    );
    assert_eq!(
        core.digits_sent("m", "12#")
            .map(|e| (e.kind, e.text.to_string())),
        Some((EventKind::DIGITS_GENERATED, "12#".to_owned()))
    );
}
