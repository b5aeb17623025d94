//! Transfers, consultation, conference, alternate and the far-end hook.

use std::time::Instant;

use cti_plugin_api::sdk::prelude::*;

use super::{cmd, err, kinds, ms, ok, ringing, secs, started, state_of, with_target, QUIET};
use crate::{sim::SimCore, CAPABILITIES, FAR_END_ATTR};

const NO_HANGUP: &str = "talk_time_secs = [0, 0]";
const T: &str = "+15550001111";

/// An answered inbound call; returns the core, the time, its id and its ANI.
fn connected(settings: &str) -> (SimCore, Instant, String, String) {
    let (mut core, now, id) = ringing(settings);
    let ani = core.calls()[0].ani.to_string();
    ok(&mut core, &cmd(CommandKind::ANSWER, &id), now);
    (core, now, id, ani)
}

fn two(kind: CommandKind, a: &str, b: &str) -> Command {
    let mut c = Command::new(kind, a);
    c.other_call_id = b.into();
    c
}

fn far_end(call_id: &str, party: &str) -> Command {
    let mut c = Command::new(CommandKind::HANGUP, call_id);
    c.attrs.push(KeyValue::new(FAR_END_ATTR, party));
    c
}

/// Consults `target` from the connected call `a` and lets it answer (the
/// default 300 ms ring + 700 ms answer); returns B's id and the time then.
fn consulted(core: &mut SimCore, now: Instant, a: &str, target: &str) -> (String, Instant) {
    let (outcome, _) = ok(core, &with_target(CommandKind::CONSULT, a, target), now);
    let b = outcome.call_id.to_string();
    let evs = core.advance(now + ms(1_000));
    assert_eq!(kinds(&evs), [EventKind::DELIVERED, EventKind::ESTABLISHED]);
    (b, now + ms(1_000))
}

fn error(core: &mut SimCore, c: &Command, now: Instant) -> PluginError {
    match core.execute(c, now) {
        Ok(r) => panic!("{:?} succeeded: {r:?}", c.kind),
        Err(e) => e,
    }
}

fn assert_event(
    ev: &ConnectorEvent,
    kind: EventKind,
    call: &str,
    state: ConnectionState,
    party: &str,
    cause: &str,
) {
    assert_eq!(
        (
            ev.kind,
            ev.call_id.as_str(),
            ev.state,
            ev.party.as_str(),
            ev.cause.as_str()
        ),
        (kind, call, state, party, cause),
        "{ev:?}"
    );
}

#[test]
fn every_operation_is_a_capability() {
    for kind in [
        CommandKind::BLIND_TRANSFER,
        CommandKind::CONSULT,
        CommandKind::COMPLETE_TRANSFER,
        CommandKind::CANCEL_CONSULT,
        CommandKind::CONFERENCE,
        CommandKind::ALTERNATE,
        CommandKind::ANSWER,
        CommandKind::SET_AGENT_STATE,
    ] {
        assert!(CAPABILITIES.contains(kind), "{kind}");
    }
    assert!(!CAPABILITIES.contains(CommandKind::SEND_MESSAGE));
}

#[test]
fn blind_transfer_of_a_connected_or_held_call() {
    use ConnectionState::Null;
    for hold_first in [false, true] {
        let (mut core, now, a, _) = connected(NO_HANGUP);
        if hold_first {
            ok(&mut core, &cmd(CommandKind::HOLD, &a), now);
        }
        let (outcome, evs) = ok(
            &mut core,
            &with_target(CommandKind::BLIND_TRANSFER, &a, &format!(" {T} ")),
            now,
        );
        assert_eq!(outcome.call_id, "");
        assert_eq!(
            kinds(&evs),
            [
                EventKind::TRANSFERRED,
                EventKind::CONNECTION_CLEARED,
                EventKind::CALL_CLEARED
            ]
        );
        assert_event(
            &evs[0],
            EventKind::TRANSFERRED,
            &a,
            Null,
            "1001",
            "SingleStepTransfer",
        );
        assert_eq!(evs[0].text, T);
        assert_event(
            &evs[1],
            EventKind::CONNECTION_CLEARED,
            &a,
            Null,
            "1001",
            "Transferred",
        );
        assert_event(&evs[2], EventKind::CALL_CLEARED, &a, Null, "", "");
        assert!(core.calls().is_empty());
    }
}

#[test]
fn blind_transfer_errors() {
    let (mut core, now, a) = ringing(NO_HANGUP);
    let e = error(
        &mut core,
        &with_target(CommandKind::BLIND_TRANSFER, &a, T),
        now,
    );
    assert_eq!(e.kind, ErrorKind::INVALID_STATE);
    assert!(
        e.message.contains(&a) && e.message.contains("Alerting"),
        "{e}"
    );
    ok(&mut core, &cmd(CommandKind::ANSWER, &a), now);
    assert_eq!(
        err(
            &mut core,
            &with_target(CommandKind::BLIND_TRANSFER, &a, " "),
            now
        ),
        ErrorKind::BAD_ARGUMENT
    );
    assert_eq!(
        err(
            &mut core,
            &with_target(CommandKind::BLIND_TRANSFER, "nope", T),
            now
        ),
        ErrorKind::UNKNOWN_CALL
    );
    assert_eq!(state_of(&core, &a), Some(ConnectionState::Connected));
}

#[test]
fn consult_holds_the_call_and_calls_the_target() {
    let (mut core, now, a, _) = connected(NO_HANGUP);
    let (outcome, evs) = ok(&mut core, &with_target(CommandKind::CONSULT, &a, T), now);
    let b = outcome.call_id.to_string();
    assert!(b.starts_with("sim-") && b != a, "{b}");
    assert_eq!(kinds(&evs), [EventKind::HELD, EventKind::ORIGINATED]);
    assert_event(
        &evs[0],
        EventKind::HELD,
        &a,
        ConnectionState::Held,
        "1001",
        "",
    );
    let o = &evs[1];
    assert_event(
        o,
        EventKind::ORIGINATED,
        &b,
        ConnectionState::Initiated,
        T,
        "",
    );
    assert_eq!(o.related_call_id, a);
    assert_eq!(lookup(&o.attrs, "consult_of"), Some(a.as_str()));
    let ROption::RSome(call) = &o.call else {
        panic!("Originated carries the new call");
    };
    assert_eq!(
        (
            call.call_id.as_str(),
            call.direction,
            call.ani.as_str(),
            call.dnis.as_str(),
            call.state
        ),
        (
            b.as_str(),
            Direction::Outbound,
            "1001",
            T,
            ConnectionState::Initiated
        )
    );
    assert_eq!(state_of(&core, &a), Some(ConnectionState::Held));

    assert!(core.advance(now + ms(299)).is_empty());
    let evs = core.advance(now + ms(300));
    assert_eq!(kinds(&evs), [EventKind::DELIVERED]);
    assert_event(
        &evs[0],
        EventKind::DELIVERED,
        &b,
        ConnectionState::Initiated,
        T,
        "",
    );
    assert_eq!(evs[0].call, ROption::RNone);
    assert!(core.advance(now + ms(999)).is_empty());
    let evs = core.advance(now + ms(1_000));
    assert_eq!(kinds(&evs), [EventKind::ESTABLISHED]);
    assert_event(
        &evs[0],
        EventKind::ESTABLISHED,
        &b,
        ConnectionState::Connected,
        T,
        "",
    );
    assert_eq!(state_of(&core, &b), Some(ConnectionState::Connected));
    assert_eq!(state_of(&core, &a), Some(ConnectionState::Held));
}

#[test]
fn consulting_a_busy_number_fails_and_the_call_stays_held() {
    let (mut core, now, a, _) = connected(NO_HANGUP);
    let (outcome, _) = ok(
        &mut core,
        &with_target(CommandKind::CONSULT, &a, "+15550486"),
        now,
    );
    let b = outcome.call_id.to_string();
    let evs = core.advance(now + ms(300));
    assert_eq!(kinds(&evs), [EventKind::FAILED, EventKind::CALL_CLEARED]);
    assert_event(
        &evs[0],
        EventKind::FAILED,
        &b,
        ConnectionState::Failed,
        "+15550486",
        "Busy",
    );
    assert_eq!(evs[1].call_id, b);
    assert_eq!(state_of(&core, &a), Some(ConnectionState::Held));
    assert_eq!(core.calls().len(), 1);
}

#[test]
fn consult_errors() {
    let (mut core, now, a) = ringing(NO_HANGUP);
    let e = error(&mut core, &with_target(CommandKind::CONSULT, &a, T), now);
    assert_eq!(e.kind, ErrorKind::INVALID_STATE);
    assert!(
        e.message.contains(&a) && e.message.contains("Alerting"),
        "{e}"
    );
    ok(&mut core, &cmd(CommandKind::ANSWER, &a), now);
    assert_eq!(
        err(&mut core, &with_target(CommandKind::CONSULT, &a, ""), now),
        ErrorKind::BAD_ARGUMENT
    );
    assert_eq!(
        err(
            &mut core,
            &with_target(CommandKind::CONSULT, "nope", T),
            now
        ),
        ErrorKind::UNKNOWN_CALL
    );
    ok(&mut core, &cmd(CommandKind::HOLD, &a), now);
    let e = error(&mut core, &with_target(CommandKind::CONSULT, &a, T), now);
    assert_eq!(e.kind, ErrorKind::INVALID_STATE);
    assert!(e.message.contains("Held"), "{e}");
    assert_eq!(core.calls().len(), 1, "failed consults place no call");
}

#[test]
fn complete_transfer_takes_the_agent_out_of_both_calls() {
    use ConnectionState::Null;
    let (mut core, now, a, _) = connected(NO_HANGUP);
    let (b, now) = consulted(&mut core, now, &a, T);
    let (_, evs) = ok(&mut core, &two(CommandKind::COMPLETE_TRANSFER, &a, &b), now);
    assert_eq!(
        kinds(&evs),
        [
            EventKind::TRANSFERRED,
            EventKind::CONNECTION_CLEARED,
            EventKind::CALL_CLEARED,
            EventKind::CONNECTION_CLEARED,
            EventKind::CALL_CLEARED
        ]
    );
    assert_event(
        &evs[0],
        EventKind::TRANSFERRED,
        &a,
        Null,
        "1001",
        "Transfer",
    );
    assert_eq!(evs[0].text, T);
    assert_eq!(evs[0].related_call_id, b);
    assert_event(
        &evs[1],
        EventKind::CONNECTION_CLEARED,
        &a,
        Null,
        "1001",
        "Transferred",
    );
    assert_event(&evs[2], EventKind::CALL_CLEARED, &a, Null, "", "");
    assert_event(
        &evs[3],
        EventKind::CONNECTION_CLEARED,
        &b,
        Null,
        "1001",
        "Transferred",
    );
    assert_event(&evs[4], EventKind::CALL_CLEARED, &b, Null, "", "");
    assert!(core.calls().is_empty());
}

#[test]
fn complete_transfer_while_the_consulted_party_still_rings() {
    let (mut core, now, a, _) = connected(NO_HANGUP);
    let (outcome, _) = ok(&mut core, &with_target(CommandKind::CONSULT, &a, T), now);
    let b = outcome.call_id.to_string();
    core.advance(now + ms(300));
    assert_eq!(state_of(&core, &b), Some(ConnectionState::Initiated));
    let (_, evs) = ok(
        &mut core,
        &two(CommandKind::COMPLETE_TRANSFER, &a, &b),
        now + ms(300),
    );
    assert_eq!(evs.len(), 5);
    assert_eq!(evs[0].text, T);
    assert!(core.calls().is_empty());
    assert!(
        core.advance(now + secs(60)).is_empty(),
        "B's timers are gone"
    );
}

#[test]
fn cancel_consult_clears_the_consultation_and_retrieves_the_call() {
    for answered in [true, false] {
        let (mut core, now, a, _) = connected(NO_HANGUP);
        let b = if answered {
            consulted(&mut core, now, &a, T).0
        } else {
            let (o, _) = ok(&mut core, &with_target(CommandKind::CONSULT, &a, T), now);
            o.call_id.to_string()
        };
        let (_, evs) = ok(
            &mut core,
            &two(CommandKind::CANCEL_CONSULT, &a, &b),
            now + secs(1),
        );
        assert_eq!(
            kinds(&evs),
            [
                EventKind::CONNECTION_CLEARED,
                EventKind::CALL_CLEARED,
                EventKind::RETRIEVED
            ]
        );
        assert_event(
            &evs[0],
            EventKind::CONNECTION_CLEARED,
            &b,
            ConnectionState::Null,
            "1001",
            "ConsultCanceled",
        );
        assert_event(
            &evs[1],
            EventKind::CALL_CLEARED,
            &b,
            ConnectionState::Null,
            "",
            "",
        );
        assert_event(
            &evs[2],
            EventKind::RETRIEVED,
            &a,
            ConnectionState::Connected,
            "1001",
            "",
        );
        assert_eq!(state_of(&core, &a), Some(ConnectionState::Connected));
        assert_eq!(core.calls().len(), 1);
        assert!(core.advance(now + secs(60)).is_empty());
    }
}

#[test]
fn conference_merges_the_held_call_and_parties_leave_one_by_one() {
    let (mut core, now, a, ani) = connected(NO_HANGUP);
    let (b, now) = consulted(&mut core, now, &a, T);
    let (_, evs) = ok(&mut core, &two(CommandKind::CONFERENCE, &a, &b), now);
    assert_eq!(
        kinds(&evs),
        [
            EventKind::CONFERENCED,
            EventKind::CONFERENCED,
            EventKind::CONNECTION_CLEARED,
            EventKind::CALL_CLEARED
        ]
    );
    let both = format!("{ani},{T}");
    assert_event(
        &evs[0],
        EventKind::CONFERENCED,
        &b,
        ConnectionState::Connected,
        &ani,
        "",
    );
    assert_eq!(evs[0].related_call_id, a);
    assert_eq!(evs[0].text, both.as_str(), "the oldest party first");
    assert_event(
        &evs[1],
        EventKind::CONFERENCED,
        &a,
        ConnectionState::Null,
        &ani,
        "Merged",
    );
    assert_eq!(evs[1].related_call_id, b);
    assert_event(
        &evs[2],
        EventKind::CONNECTION_CLEARED,
        &a,
        ConnectionState::Null,
        "1001",
        "Conferenced",
    );
    assert_event(
        &evs[3],
        EventKind::CALL_CLEARED,
        &a,
        ConnectionState::Null,
        "",
        "",
    );
    assert_eq!(core.far_parties(&b), [ani.as_str(), T]);
    assert_eq!(core.calls().len(), 1);
    // The merged call takes the original call's data along.
    assert_eq!(lookup(&core.calls()[0].data, "queue"), Some("Support"));

    // The customer leaves: the agent stays with the consulted party.
    let (_, evs) = ok(&mut core, &far_end(&b, &ani), now);
    assert_eq!(kinds(&evs), [EventKind::CONNECTION_CLEARED]);
    assert_event(
        &evs[0],
        EventKind::CONNECTION_CLEARED,
        &b,
        ConnectionState::Connected,
        &ani,
        "NormalClearing",
    );
    assert_eq!(core.far_parties(&b), [T]);
    assert_eq!(state_of(&core, &b), Some(ConnectionState::Connected));
    // The last far party leaves: the call is over.
    let (_, evs) = ok(&mut core, &far_end(&b, T), now);
    assert_eq!(
        kinds(&evs),
        [EventKind::CONNECTION_CLEARED, EventKind::CALL_CLEARED]
    );
    assert_event(
        &evs[0],
        EventKind::CONNECTION_CLEARED,
        &b,
        ConnectionState::Null,
        T,
        "NormalClearing",
    );
    assert!(core.calls().is_empty());
}

#[test]
fn conference_parties_hang_up_on_their_own_timers() {
    // Each far party talks 2 s from when it connected: the customer at 0,
    // the consulted party at 1 s.
    let (mut core, t0, a, ani) = connected("talk_time_secs = [2, 2]");
    let (b, _) = consulted(&mut core, t0, &a, T);
    ok(
        &mut core,
        &two(CommandKind::CONFERENCE, &a, &b),
        t0 + ms(1_000),
    );
    assert!(core.advance(t0 + ms(1_999)).is_empty());
    let evs = core.advance(t0 + ms(2_000));
    assert_eq!(kinds(&evs), [EventKind::CONNECTION_CLEARED]);
    assert_event(
        &evs[0],
        EventKind::CONNECTION_CLEARED,
        &b,
        ConnectionState::Connected,
        &ani,
        "NormalClearing",
    );
    assert!(core.advance(t0 + ms(2_999)).is_empty());
    let evs = core.advance(t0 + ms(3_000));
    assert_eq!(
        kinds(&evs),
        [EventKind::CONNECTION_CLEARED, EventKind::CALL_CLEARED]
    );
    assert_event(
        &evs[0],
        EventKind::CONNECTION_CLEARED,
        &b,
        ConnectionState::Null,
        T,
        "NormalClearing",
    );
    assert!(core.calls().is_empty());
}

#[test]
fn a_held_party_hangs_up_on_its_timer_too() {
    let (mut core, t0, a, ani) = connected("talk_time_secs = [5, 5]");
    let (b, _) = consulted(&mut core, t0, &a, T);
    let evs = core.advance(t0 + secs(5));
    assert_eq!(
        kinds(&evs),
        [EventKind::CONNECTION_CLEARED, EventKind::CALL_CLEARED]
    );
    assert_event(
        &evs[0],
        EventKind::CONNECTION_CLEARED,
        &a,
        ConnectionState::Null,
        &ani,
        "NormalClearing",
    );
    assert_eq!(state_of(&core, &b), Some(ConnectionState::Connected));
}

#[test]
fn alternate_swaps_the_held_and_the_active_call() {
    let (mut core, now, a, _) = connected(NO_HANGUP);
    let (b, now) = consulted(&mut core, now, &a, T);
    let (_, evs) = ok(&mut core, &two(CommandKind::ALTERNATE, &a, &b), now);
    assert_eq!(kinds(&evs), [EventKind::HELD, EventKind::RETRIEVED]);
    assert_event(
        &evs[0],
        EventKind::HELD,
        &b,
        ConnectionState::Held,
        "1001",
        "",
    );
    assert_eq!(evs[0].related_call_id, a);
    assert_event(
        &evs[1],
        EventKind::RETRIEVED,
        &a,
        ConnectionState::Connected,
        "1001",
        "",
    );
    assert_eq!(evs[1].related_call_id, b);
    assert_eq!(state_of(&core, &a), Some(ConnectionState::Connected));
    assert_eq!(state_of(&core, &b), Some(ConnectionState::Held));
    // Either order: named from the active call, the held one is still retrieved.
    let (_, evs) = ok(&mut core, &two(CommandKind::ALTERNATE, &a, &b), now);
    assert_eq!(kinds(&evs), [EventKind::HELD, EventKind::RETRIEVED]);
    assert_eq!(
        (evs[0].call_id.as_str(), evs[1].call_id.as_str()),
        (a.as_str(), b.as_str())
    );
    assert_eq!(state_of(&core, &a), Some(ConnectionState::Held));
    assert_eq!(state_of(&core, &b), Some(ConnectionState::Connected));
}

#[test]
fn two_call_commands_check_their_arguments_and_states() {
    let (mut core, now, a, _) = connected(NO_HANGUP);
    for kind in [
        CommandKind::COMPLETE_TRANSFER,
        CommandKind::CANCEL_CONSULT,
        CommandKind::CONFERENCE,
        CommandKind::ALTERNATE,
    ] {
        assert_eq!(
            err(&mut core, &two(kind, &a, " "), now),
            ErrorKind::BAD_ARGUMENT,
            "{kind}"
        );
        assert_eq!(
            err(&mut core, &two(kind, &a, &a), now),
            ErrorKind::BAD_ARGUMENT,
            "{kind}"
        );
        assert_eq!(
            err(&mut core, &two(kind, "nope", &a), now),
            ErrorKind::UNKNOWN_CALL,
            "{kind}"
        );
        assert_eq!(
            err(&mut core, &two(kind, &a, "nope"), now),
            ErrorKind::UNKNOWN_CALL,
            "{kind}"
        );
    }
    // A second connected call: neither is held.
    let (o, _) = ok(&mut core, &with_target(CommandKind::MAKE_CALL, "", T), now);
    let b = o.call_id.to_string();
    core.advance(now + ms(300));
    // B still rings: only a transfer or a cancel may use it.
    ok(&mut core, &cmd(CommandKind::HOLD, &a), now);
    for kind in [CommandKind::CONFERENCE, CommandKind::ALTERNATE] {
        let e = error(&mut core, &two(kind, &a, &b), now);
        assert_eq!(e.kind, ErrorKind::INVALID_STATE, "{kind}");
        assert!(
            e.message.contains(&b) && e.message.contains("Initiated"),
            "{e}"
        );
    }
    core.advance(now + ms(1_000));
    ok(&mut core, &cmd(CommandKind::RETRIEVE, &a), now);
    for kind in [
        CommandKind::COMPLETE_TRANSFER,
        CommandKind::CANCEL_CONSULT,
        CommandKind::CONFERENCE,
        CommandKind::ALTERNATE,
    ] {
        let e = error(&mut core, &two(kind, &a, &b), now);
        assert_eq!(e.kind, ErrorKind::INVALID_STATE, "{kind}");
        assert!(
            e.message.contains(&a) && e.message.contains("Connected") && e.message.contains("Held"),
            "{e}"
        );
    }
    // Both held.
    ok(&mut core, &cmd(CommandKind::HOLD, &a), now);
    ok(&mut core, &cmd(CommandKind::HOLD, &b), now);
    for kind in [
        CommandKind::CONFERENCE,
        CommandKind::ALTERNATE,
        CommandKind::COMPLETE_TRANSFER,
    ] {
        assert_eq!(
            err(&mut core, &two(kind, &a, &b), now),
            ErrorKind::INVALID_STATE,
            "{kind}"
        );
    }
    // A ringing inbound call cannot be the transfer target.
    let (mut core, now, c) = ringing(NO_HANGUP);
    let (o, _) = ok(&mut core, &with_target(CommandKind::MAKE_CALL, "", T), now);
    let d = o.call_id.to_string();
    core.advance(now + ms(1_000));
    ok(&mut core, &cmd(CommandKind::HOLD, &d), now);
    let e = error(&mut core, &two(CommandKind::COMPLETE_TRANSFER, &d, &c), now);
    assert_eq!(e.kind, ErrorKind::INVALID_STATE);
    assert!(
        e.message.contains(&c) && e.message.contains("Alerting"),
        "{e}"
    );
    // Failed commands changed nothing.
    assert_eq!(state_of(&core, &c), Some(ConnectionState::Alerting));
    assert_eq!(state_of(&core, &d), Some(ConnectionState::Held));
}

#[test]
fn the_far_end_hook_clears_a_two_party_call() {
    let (mut core, now, a, ani) = connected(NO_HANGUP);
    ok(&mut core, &cmd(CommandKind::HOLD, &a), now);
    let (outcome, evs) = ok(&mut core, &far_end(&a, &ani), now);
    assert!(outcome.detail.contains(&ani), "{outcome:?}");
    assert_eq!(
        kinds(&evs),
        [EventKind::CONNECTION_CLEARED, EventKind::CALL_CLEARED]
    );
    assert_event(
        &evs[0],
        EventKind::CONNECTION_CLEARED,
        &a,
        ConnectionState::Null,
        &ani,
        "NormalClearing",
    );
    assert!(core.calls().is_empty());
}

#[test]
fn the_far_end_hook_on_ringing_calls() {
    // A caller who hangs up before the answer abandons.
    let (mut core, now, a) = ringing(NO_HANGUP);
    let ani = core.calls()[0].ani.to_string();
    let (_, evs) = ok(&mut core, &far_end(&a, "*"), now);
    assert_event(
        &evs[0],
        EventKind::CONNECTION_CLEARED,
        &a,
        ConnectionState::Null,
        &ani,
        "CallAbandoned",
    );
    assert_eq!(evs.len(), 2);
    // A called party who declines before answering rejects.
    let (mut core, t0) = started(QUIET);
    let (o, _) = ok(&mut core, &with_target(CommandKind::MAKE_CALL, "", T), t0);
    let (_, evs) = ok(&mut core, &far_end(&o.call_id, T), t0);
    assert_event(
        &evs[0],
        EventKind::CONNECTION_CLEARED,
        &o.call_id,
        ConnectionState::Null,
        T,
        "CallRejected",
    );
    assert!(core.advance(t0 + secs(60)).is_empty());
}

#[test]
fn the_far_end_hook_all_parties_of_a_conference() {
    let (mut core, now, a, ani) = connected(NO_HANGUP);
    let (b, now) = consulted(&mut core, now, &a, T);
    ok(&mut core, &two(CommandKind::CONFERENCE, &a, &b), now);
    let (_, evs) = ok(&mut core, &far_end(&b, "*"), now);
    assert_eq!(
        kinds(&evs),
        [
            EventKind::CONNECTION_CLEARED,
            EventKind::CONNECTION_CLEARED,
            EventKind::CALL_CLEARED
        ]
    );
    assert_event(
        &evs[0],
        EventKind::CONNECTION_CLEARED,
        &b,
        ConnectionState::Connected,
        &ani,
        "NormalClearing",
    );
    assert_event(
        &evs[1],
        EventKind::CONNECTION_CLEARED,
        &b,
        ConnectionState::Null,
        T,
        "NormalClearing",
    );
    assert!(core.calls().is_empty());
}

#[test]
fn the_far_end_hook_errors() {
    let (mut core, now, a, ani) = connected(NO_HANGUP);
    let e = error(&mut core, &far_end(&a, "+19999"), now);
    assert_eq!(e.kind, ErrorKind::BAD_ARGUMENT);
    assert!(
        e.message.contains("+19999") && e.message.contains(&ani),
        "{e}"
    );
    assert_eq!(
        err(&mut core, &far_end(&a, " "), now),
        ErrorKind::BAD_ARGUMENT
    );
    assert_eq!(
        err(&mut core, &far_end("nope", &ani), now),
        ErrorKind::UNKNOWN_CALL
    );
    assert_eq!(state_of(&core, &a), Some(ConnectionState::Connected));
    // Other attributes leave Hangup as the agent's.
    let mut c = cmd(CommandKind::HANGUP, &a);
    c.attrs.push(KeyValue::new("note", "x"));
    let (_, evs) = ok(&mut core, &c, now);
    assert_eq!(evs[0].party, "1001");
}
