//! Real telephony: the baresip connector driving a real baresip, with real
//! SIP calls from SIPp through Kamailio, all on 127.0.0.1.
//!
//! Every test starts its own Kamailio / baresip / SIPp on free ports and
//! the real `cti-host` (with the recorder), and stops them all. Without
//! baresip, sipp or kamailio installed a test prints "skipped: …" and
//! passes — unless `CI` is set, then it fails.

use std::time::{Duration, Instant};

use cti_e2e::{
    s,
    sip::{self, Baresip, BaresipOpts, Kamailio, Lab, Sipp},
    stderr, stdout, Host,
};
use serde_json::Value;

const SIPP_TIMEOUT: Duration = Duration::from_secs(20);

/// A desktop with the baresip connector on `ctrl_port` and the recorder.
fn manifest(ctrl_port: u16, desktop: &str) -> String {
    format!(
        r#"
[host]
plugin_dir = "{{bin}}"
ctl_socket = "{{socket}}"
execute_timeout_ms = 5000

[desktop]
agent_id = "agent-1001"
{desktop}

[[hosted_control]]
name = "Phone"
type = "connector"
library = "baresip_connector"
connection = "instance"
channel = "voice"
[hosted_control.settings]
host = "127.0.0.1"
port = {ctrl_port}
reconnect_min_ms = 50
reconnect_max_ms = 400
command_timeout_ms = 3000

[[hosted_control]]
name = "Recorder"
type = "control"
library = "recorder_control"
[hosted_control.settings]
path = "{{recorder}}"
"#
    )
}

/// Starts the desktop and waits until the connector is Connected.
fn desktop(agent: &Baresip, desktop: &str) -> Host {
    let host = Host::start(&manifest(agent.ctrl_port, desktop));
    host.wait_event("the baresip connector Connected", |e| {
        s(e, "event") == "ConnectorStatus" && s(e, "text") == "Connected"
    });
    host
}

fn is(e: &Value, event: &str, call: &str) -> bool {
    s(e, "event") == event && s(e, "call_id") == call
}

/// Waits for a new ringing inbound call from `ani`; returns its id.
fn rings(host: &Host, ani: &str) -> String {
    let d = host.wait_event(&format!("a call from {ani} ringing"), |e| {
        s(e, "event") == "Delivered" && s(&e["call"], "ani") == ani
    });
    assert_eq!(s(&d, "state"), "Alerting", "{d}");
    assert_eq!(s(&d["call"], "direction"), "inbound", "{d}");
    s(&d, "call_id").to_owned()
}

/// The (event, state) sequence of one call's CSTA events.
fn flow(host: &Host, call: &str) -> Vec<(String, String)> {
    host.events()
        .iter()
        .filter(|e| s(e, "call_id") == call)
        .filter(|e| {
            matches!(
                s(e, "event"),
                "Delivered"
                    | "Originated"
                    | "Established"
                    | "Held"
                    | "Retrieved"
                    | "Transferred"
                    | "ConnectionCleared"
                    | "CallCleared"
                    | "Failed"
            )
        })
        .map(|e| (s(e, "event").to_owned(), s(e, "state").to_owned()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// A caller (SIPp) that waits for the agent to hang up, answering re-INVITEs.
fn caller(lab: &Lab, name: &str, domain: &str, user: &str, number: &str) -> Sipp {
    Sipp::scenario(lab, name, "uac_agent_hangs_up.xml")
        .remote(domain)
        .service(user)
        .key("caller", number)
        .calls(1)
        .start()
}

/// The SDP direction attributes of the re-INVITEs SIPp received.
fn reinvite_directions(sipp: &Sipp) -> Vec<String> {
    sipp.received()
        .iter()
        .filter(|m| m.is_request("INVITE"))
        .map(|m| {
            ["sendonly", "recvonly", "inactive", "sendrecv"]
                .into_iter()
                .find(|d| m.text.contains(&format!("a={d}")))
                .unwrap_or("none")
                .to_owned()
        })
        .collect()
}

#[test]
fn an_inbound_call_rings_is_answered_held_retrieved_and_hung_up_by_the_agent() {
    if !sip::tools_present("inbound call") {
        return;
    }
    let t0 = Instant::now();
    let lab = Lab::new();
    let kam = Kamailio::start(&lab);
    let agent = Baresip::start(&lab, "agent", BaresipOpts::agent("1001", Some(&kam)));
    let mut host = desktop(&agent, "");
    let mut sipp = caller(&lab, "caller", &kam.domain(), "1001", "+15551230001");

    let id = rings(&host, "+15551230001");
    let d = host
        .events()
        .into_iter()
        .find(|e| is(e, "Delivered", &id))
        .expect("Delivered");
    assert_eq!(s(&d["call"], "dnis"), "1001", "{d}");
    assert!(
        s(&d["call"]["data"], "peer_uri").starts_with("sip:+15551230001@"),
        "{d}"
    );
    let allowed: Vec<&str> = d["call"]["allowed"]
        .as_array()
        .expect("allowed")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(allowed, ["Answer", "Reject"], "{d}");

    host.ctl_ok(&["answer", &id]);
    host.wait_event("Established", |e| is(e, "Established", &id));
    host.ctl_ok(&["hold", &id]);
    host.wait_event("Held", |e| is(e, "Held", &id));
    host.ctl_ok(&["retrieve", &id]);
    host.wait_event("Retrieved", |e| is(e, "Retrieved", &id));
    host.ctl_ok(&["hangup", &id]);
    let cleared = host.wait_event("ConnectionCleared", |e| is(e, "ConnectionCleared", &id));
    assert_eq!(s(&cleared, "party"), "1001", "the agent cleared: {cleared}");
    host.wait_event("CallCleared", |e| is(e, "CallCleared", &id));
    sipp.expect_success(SIPP_TIMEOUT);

    assert_eq!(
        flow(&host, &id),
        pairs(&[
            ("Delivered", "Alerting"),
            ("Established", "Connected"),
            ("Held", "Held"),
            ("Retrieved", "Connected"),
            ("ConnectionCleared", "Null"),
            ("CallCleared", "Null"),
        ])
    );
    // What the caller saw: the answer, a hold and a resume re-INVITE, the BYE.
    let rx = sipp.received();
    assert!(
        rx.iter()
            .any(|m| m.is_response(200) && m.cseq_method() == "INVITE"),
        "no 200 for the INVITE\n{}",
        sipp.report()
    );
    assert_eq!(
        reinvite_directions(&sipp),
        ["sendonly", "sendrecv"],
        "{}",
        sipp.report()
    );
    assert!(rx.iter().any(|m| m.is_request("BYE")), "{}", sipp.report());
    assert!(host.stop().success(), "{}", host.log_text());
    eprintln!("inbound call test: {:?}", t0.elapsed());
}

#[test]
fn a_caller_that_hangs_up_first_clears_the_call() {
    if !sip::tools_present("caller hangs up") {
        return;
    }
    let lab = Lab::new();
    let kam = Kamailio::start(&lab);
    let agent = Baresip::start(&lab, "agent", BaresipOpts::agent("1001", Some(&kam)));
    let mut host = desktop(&agent, "");

    // Answered, then the caller hangs up.
    let mut talker = Sipp::scenario_with(
        &lab,
        "talker",
        "uac_caller_hangs_up.xml",
        &[("HOLD_MS", "300")],
    )
    .remote(&kam.domain())
    .service("1001")
    .key("caller", "+15551230002")
    .calls(1)
    .start();
    let id = rings(&host, "+15551230002");
    host.ctl_ok(&["answer", &id]);
    host.wait_event("Established", |e| is(e, "Established", &id));
    let cc = host.wait_event("ConnectionCleared", |e| is(e, "ConnectionCleared", &id));
    assert_eq!(s(&cc, "party"), "+15551230002", "the caller cleared: {cc}");
    assert_eq!(s(&cc, "cause"), "NormalClearing", "{cc}");
    host.wait_event("CallCleared", |e| is(e, "CallCleared", &id));
    talker.expect_success(SIPP_TIMEOUT);

    // Ringing, then the caller gives up (CANCEL).
    let mut quitter = Sipp::scenario(&lab, "quitter", "uac_cancel.xml")
        .remote(&kam.domain())
        .service("1001")
        .key("caller", "+15551230003")
        .calls(1)
        .start();
    let id2 = rings(&host, "+15551230003");
    let cc = host.wait_event("ConnectionCleared", |e| is(e, "ConnectionCleared", &id2));
    assert_eq!(s(&cc, "cause"), "CallAbandoned", "{cc}");
    host.wait_event("CallCleared", |e| is(e, "CallCleared", &id2));
    let work = host.wait_event("the work item", |e| is(e, "WorkItem", &id2));
    assert_eq!(s(&work["call"]["work"], "state"), "Canceled", "{work}");
    quitter.expect_success(SIPP_TIMEOUT);
    assert_eq!(
        flow(&host, &id2),
        pairs(&[
            ("Delivered", "Alerting"),
            ("ConnectionCleared", "Null"),
            ("CallCleared", "Null"),
        ])
    );
    let calls = host.ctl_ok(&["calls"]);
    assert!(calls.contains("no calls"), "{calls}");
    assert!(host.stop().success());
}

#[test]
fn a_call_made_from_the_desktop_reaches_a_sipp_uas() {
    if !sip::tools_present("dial out") {
        return;
    }
    let lab = Lab::new();
    let agent = Baresip::start(&lab, "agent", BaresipOpts::agent("1001", None));
    let mut host = desktop(&agent, "");
    let mut uas = Sipp::builtin(&lab, "uas", "uas").calls(1).start();

    let target = uas.uri("bob");
    let out = host.ctl_ok(&["dial", &target]);
    // "ok call <id>: dialling …"
    let id = out
        .split_whitespace()
        .nth(2)
        .map(|w| w.trim_end_matches(':').to_owned())
        .unwrap_or_else(|| panic!("no call id in {out:?}"));
    let o = host.wait_event("Originated", |e| is(e, "Originated", &id));
    assert_eq!(s(&o["call"], "direction"), "outbound", "{o}");
    assert_eq!(s(&o["call"], "dnis"), "bob", "{o}");
    assert_eq!(s(&o["call"], "ani"), "1001", "{o}");
    host.wait_event("Established", |e| is(e, "Established", &id));
    host.ctl_ok(&["hangup", &id]);
    host.wait_event("CallCleared", |e| is(e, "CallCleared", &id));
    uas.expect_success(SIPP_TIMEOUT);
    assert_eq!(
        flow(&host, &id),
        pairs(&[
            ("Originated", "Initiated"),
            ("Delivered", "Initiated"),
            ("Established", "Connected"),
            ("ConnectionCleared", "Null"),
            ("CallCleared", "Null"),
        ])
    );
    let rx = uas.received();
    let invite = rx.iter().find(|m| m.is_request("INVITE")).expect("INVITE");
    assert!(
        invite.first_line.starts_with("INVITE sip:bob@127.0.0.1:"),
        "{}",
        invite.first_line
    );
    assert_eq!(
        invite.call_id(),
        id,
        "the desktop's call id is the SIP Call-ID"
    );
    assert!(rx.iter().any(|m| m.is_request("BYE")), "{}", uas.report());

    // A busy callee fails the call with cause Busy.
    let mut busy = Sipp::scenario(&lab, "busy", "uas_busy.xml")
        .calls(1)
        .start();
    let out = host.ctl_ok(&["dial", &busy.uri("carol")]);
    let id = out
        .split_whitespace()
        .nth(2)
        .unwrap_or("")
        .trim_end_matches(':')
        .to_owned();
    let f = host.wait_event("Failed", |e| is(e, "Failed", &id));
    assert_eq!(s(&f, "cause"), "Busy", "{f}");
    assert!(s(&f, "text").starts_with("486"), "{f}");
    host.wait_event("CallCleared", |e| is(e, "CallCleared", &id));
    busy.expect_success(SIPP_TIMEOUT);
    assert!(host.stop().success());
}

#[test]
fn a_blind_transfer_moves_the_caller_to_a_third_party() {
    if !sip::tools_present("blind transfer") {
        return;
    }
    let lab = Lab::new();
    let kam = Kamailio::start(&lab);
    let agent = Baresip::start(&lab, "agent", BaresipOpts::agent("1001", Some(&kam)));
    let customer = Baresip::start(&lab, "customer", BaresipOpts::agent("2002", Some(&kam)));
    let mut host = desktop(&agent, "");
    let mut third = Sipp::builtin(&lab, "third", "uas").calls(1).start();
    let mut cust = customer.ctrl();

    cust.cmd("dial", Some(&format!("sip:1001@{}", kam.domain())));
    let id = rings(&host, "2002");
    host.ctl_ok(&["answer", &id]);
    host.wait_event("Established", |e| is(e, "Established", &id));
    cust.wait_type("CALL_ESTABLISHED", Duration::from_secs(10));

    let target = third.uri("carol");
    host.ctl_ok(&["transfer", &id, &target]);
    // The customer is told to call the third party and does.
    let refer = cust.wait_type("TRANSFER", Duration::from_secs(10));
    assert_eq!(s(&refer, "param"), target, "{refer}");
    let moved = cust.wait_event(
        "the customer's call to the third party",
        Duration::from_secs(10),
        |v| v["type"] == "CALL_ESTABLISHED" && s(v, "peeruri") == target,
    );
    // The agent's call ends as transferred.
    let tr = host.wait_event("Transferred", |e| is(e, "Transferred", &id));
    assert_eq!(s(&tr, "text"), target, "{tr}");
    let cc = host.wait_event("CallCleared", |e| is(e, "CallCleared", &id));
    assert_eq!(s(&cc, "cause"), "Transferred", "{cc}");
    // The third party really talks to the customer: its INVITE came from 2002.
    cust.cmd("callfind", Some(s(&moved, "id")));
    cust.cmd("hangup", None);
    third.expect_success(SIPP_TIMEOUT);
    let invite = third
        .received()
        .into_iter()
        .find(|m| m.is_request("INVITE"))
        .expect("INVITE at the third party");
    assert!(invite.text.contains("sip:2002@"), "{}", invite.text);
    let calls = host.ctl_ok(&["calls"]);
    assert!(calls.contains("no calls"), "{calls}");
    assert!(host.stop().success());
}

#[test]
fn dtmf_digits_reach_the_far_end_and_digits_from_it_are_reported() {
    if !sip::tools_present("DTMF") {
        return;
    }
    let lab = Lab::new();
    let agent = Baresip::start(&lab, "agent", BaresipOpts::agent("1001", None));
    let customer = Baresip::start(&lab, "customer", BaresipOpts::agent("2002", None));
    let mut host = desktop(&agent, "");
    let mut cust = customer.ctrl();

    cust.cmd("dial", Some(&format!("sip:1001@{}", agent.direct())));
    let id = rings(&host, "2002");
    host.ctl_ok(&["answer", &id]);
    host.wait_event("Established", |e| is(e, "Established", &id));
    cust.wait_type("CALL_ESTABLISHED", Duration::from_secs(10));

    host.ctl_ok(&["dtmf", &id, "123#"]);
    let sent = host.wait_event("DigitsGenerated", |e| is(e, "DigitsGenerated", &id));
    assert_eq!(s(&sent, "text"), "123#");
    let mut got = String::new();
    while got.len() < 4 {
        let d = cust.wait_type("CALL_DTMF_START", Duration::from_secs(10));
        got.push_str(s(&d, "param"));
    }
    assert_eq!(got, "123#", "digits received by the far end");

    // The other way: the customer keys 5 and 9.
    cust.cmd("sndcode", Some("59"));
    host.wait_event("the second digit from the far end", |e| {
        is(e, "DigitsReceived", &id) && s(e, "text") == "9"
    });
    let digits: Vec<String> = host
        .events()
        .iter()
        .filter(|e| is(e, "DigitsReceived", &id))
        .map(|e| s(e, "text").to_owned())
        .collect();
    assert_eq!(digits, ["5", "9"]);
    assert!(
        !host.events().iter().any(|e| is(e, "MessageReceived", &id)),
        "digits are not chat messages"
    );
    let last = host
        .events()
        .into_iter()
        .rev()
        .find(|e| is(e, "DigitsReceived", &id))
        .expect("event");
    assert_eq!(s(&last["call"]["data"], "dtmf_received"), "59", "{last}");

    host.ctl_ok(&["hangup", &id]);
    host.wait_event("CallCleared", |e| is(e, "CallCleared", &id));
    assert!(host.stop().success());
}

#[test]
fn two_concurrent_calls_are_tracked_separately() {
    if !sip::tools_present("two calls") {
        return;
    }
    let lab = Lab::new();
    let kam = Kamailio::start(&lab);
    let agent = Baresip::start(&lab, "agent", BaresipOpts::agent("1001", Some(&kam)));
    let mut host = desktop(&agent, "max_concurrent_calls = 2");
    let mut first = caller(&lab, "first", &kam.domain(), "1001", "+15551230011");
    let a = rings(&host, "+15551230011");
    let mut second = caller(&lab, "second", &kam.domain(), "1001", "+15551230022");
    let b = rings(&host, "+15551230022");
    assert_ne!(a, b);

    // Both ring. Answer the second one first (baresip 1.0.0's `accept` trips
    // over the other ringing call; the connector works around it).
    host.ctl_ok(&["answer", &b]);
    host.wait_event("B Established", |e| is(e, "Established", &b));
    // Now answer the first: baresip puts B on hold.
    host.ctl_ok(&["answer", &a]);
    host.wait_event("A Established", |e| is(e, "Established", &a));
    host.wait_event("B Held", |e| is(e, "Held", &b));

    let calls: Value = serde_json::from_str(&host.ctl_ok(&["calls", "--json"])).expect("json");
    let mut seen: Vec<(String, String, String)> = calls
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| {
            (
                s(c, "call_id").to_owned(),
                s(c, "ani").to_owned(),
                s(c, "state").to_owned(),
            )
        })
        .collect();
    seen.sort();
    let mut want = vec![
        (a.clone(), "+15551230011".to_owned(), "Connected".to_owned()),
        (b.clone(), "+15551230022".to_owned(), "Held".to_owned()),
    ];
    want.sort();
    assert_eq!(seen, want);

    // A ends; baresip resumes B by itself and the desktop hears of it.
    host.ctl_ok(&["hangup", &a]);
    host.wait_event("A cleared", |e| is(e, "CallCleared", &a));
    host.wait_event("B Retrieved", |e| is(e, "Retrieved", &b));
    first.expect_success(SIPP_TIMEOUT);
    host.ctl_ok(&["hangup", &b]);
    host.wait_event("B cleared", |e| is(e, "CallCleared", &b));
    second.expect_success(SIPP_TIMEOUT);

    assert_eq!(
        flow(&host, &b),
        pairs(&[
            ("Delivered", "Alerting"),
            ("Established", "Connected"),
            ("Held", "Held"),
            ("Retrieved", "Connected"),
            ("ConnectionCleared", "Null"),
            ("CallCleared", "Null"),
        ])
    );
    assert_eq!(
        flow(&host, &a),
        pairs(&[
            ("Delivered", "Alerting"),
            ("Established", "Connected"),
            ("ConnectionCleared", "Null"),
            ("CallCleared", "Null"),
        ])
    );
    // On the wire: B was held and resumed; A — answered while baresip had it
    // marked held — was resumed right after it connected.
    assert_eq!(
        reinvite_directions(&second),
        ["sendonly", "sendrecv"],
        "{}",
        second.report()
    );
    assert_eq!(
        reinvite_directions(&first),
        ["sendrecv"],
        "{}",
        first.report()
    );
    assert!(host.stop().success());
}

#[test]
fn baresip_killed_mid_call_disconnects_then_reconnects_and_resyncs() {
    if !sip::tools_present("baresip restart") {
        return;
    }
    let lab = Lab::new();
    let mut agent = Baresip::start(&lab, "agent", BaresipOpts::agent("1001", None));
    let mut host = desktop(&agent, "");
    let _doomed = caller(&lab, "doomed", &agent.direct(), "1001", "+15551230031");
    let id = rings(&host, "+15551230031");
    host.ctl_ok(&["answer", &id]);
    host.wait_event("Established", |e| is(e, "Established", &id));

    agent.kill();
    let down = host.wait_event("ConnectorStatus Disconnected", |e| {
        s(e, "event") == "ConnectorStatus" && s(e, "text") == "Disconnected"
    });
    assert_eq!(s(&down, "source"), "Phone");
    // The desktop keeps running: it still shows the call, and commands for
    // it fail fast with the link down.
    assert!(host.is_running());
    let calls = host.ctl_ok(&["calls"]);
    assert!(calls.contains(&id), "{calls}");
    let o = host.ctl(&["hold", &id]);
    assert!(!o.status.success(), "hold must fail: {}", stdout(&o));
    assert!(stderr(&o).contains("LinkDown"), "{}", stderr(&o));

    agent.restart();
    let seq_down = down["seq"].as_u64().unwrap_or(0);
    host.wait_event("ConnectorStatus Connected again", |e| {
        s(e, "event") == "ConnectorStatus"
            && s(e, "text") == "Connected"
            && e["seq"].as_u64().unwrap_or(0) > seq_down
    });
    let cleared = host.wait_event("the dead call cleared by the resync", |e| {
        is(e, "CallCleared", &id)
    });
    assert_eq!(s(&cleared, "cause"), "Resync", "{cleared}");
    let calls = host.ctl_ok(&["calls"]);
    assert!(calls.contains("no calls"), "{calls}");

    // And the phone works again.
    let mut next = caller(&lab, "next", &agent.direct(), "1001", "+15551230032");
    let id2 = rings(&host, "+15551230032");
    host.ctl_ok(&["answer", &id2]);
    host.wait_event("Established", |e| is(e, "Established", &id2));
    host.ctl_ok(&["hangup", &id2]);
    next.expect_success(SIPP_TIMEOUT);
    let statuses: Vec<String> = host
        .events()
        .iter()
        .filter(|e| s(e, "event") == "ConnectorStatus")
        .map(|e| s(e, "text").to_owned())
        .collect();
    assert_eq!(statuses.first().map(String::as_str), Some("Connected"));
    assert!(
        statuses.windows(2).all(|w| w[0] != w[1]),
        "one status event per change: {statuses:?}"
    );
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("Connected"),
        "{statuses:?}"
    );
    assert!(host.stop().success());
}

#[test]
fn the_admin_config_for_baresip_is_valid() {
    let manifest = cti_e2e::workspace().join("config/baresip.toml");
    let o = cti_e2e::run_cli(&["check", manifest.to_str().expect("path")]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn a_call_beyond_max_concurrent_calls_is_rejected() {
    if !sip::tools_present("over capacity") {
        return;
    }
    let lab = Lab::new();
    let kam = Kamailio::start(&lab);
    let agent = Baresip::start(&lab, "agent", BaresipOpts::agent("1001", Some(&kam)));
    let mut host = desktop(
        &agent,
        "max_concurrent_calls = 1\nover_capacity = \"reject\"",
    );
    let mut first = caller(&lab, "first", &kam.domain(), "1001", "+15551230041");
    let a = rings(&host, "+15551230041");
    host.ctl_ok(&["answer", &a]);
    host.wait_event("Established", |e| is(e, "Established", &a));

    let mut extra = Sipp::scenario(&lab, "extra", "uac_expect_busy.xml")
        .remote(&kam.domain())
        .service("1001")
        .key("caller", "+15551230042")
        .calls(1)
        .start();
    let b = rings(&host, "+15551230042");
    let cc = host.wait_event("the extra call rejected", |e| {
        is(e, "ConnectionCleared", &b)
    });
    assert_eq!(s(&cc, "cause"), "CallRejected", "{cc}");
    host.wait_event("CallCleared", |e| is(e, "CallCleared", &b));
    let work = host.wait_event("the work item", |e| is(e, "WorkItem", &b));
    assert_eq!(s(&work["call"]["work"], "state"), "Rejected", "{work}");
    extra.expect_success(SIPP_TIMEOUT);
    // The first call was not disturbed.
    assert!(!host.events().iter().any(|e| is(e, "Held", &a)));
    host.ctl_ok(&["hangup", &a]);
    first.expect_success(SIPP_TIMEOUT);
    assert!(host.stop().success());
}

#[test]
fn a_call_beyond_max_concurrent_calls_rings_when_configured() {
    if !sip::tools_present("over capacity, ring") {
        return;
    }
    let lab = Lab::new();
    let agent = Baresip::start(&lab, "agent", BaresipOpts::agent("1001", None));
    let mut host = desktop(&agent, "max_concurrent_calls = 1\nover_capacity = \"ring\"");
    let mut first = caller(&lab, "first", &agent.direct(), "1001", "+15551230051");
    let a = rings(&host, "+15551230051");
    host.ctl_ok(&["answer", &a]);
    host.wait_event("Established", |e| is(e, "Established", &a));

    let mut waiting = caller(&lab, "waiting", &agent.direct(), "1001", "+15551230052");
    let b = rings(&host, "+15551230052");
    // It rings, but cannot be answered while the agent is at capacity.
    let o = host.ctl(&["answer", &b]);
    assert!(!o.status.success(), "answer over capacity: {}", stdout(&o));
    host.ctl_ok(&["hangup", &a]);
    host.wait_event("A cleared", |e| is(e, "CallCleared", &a));
    first.expect_success(SIPP_TIMEOUT);
    // Capacity is free again: B can be answered now.
    host.wait_until("B answerable", Duration::from_secs(10), || {
        let calls: Value =
            serde_json::from_str(&host.ctl_ok(&["calls", "--json"])).unwrap_or(Value::Null);
        calls.as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                s(c, "call_id") == b
                    && c["allowed"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == "Answer"))
            })
        })
    });
    host.ctl_ok(&["answer", &b]);
    host.wait_event("B Established", |e| is(e, "Established", &b));
    host.ctl_ok(&["hangup", &b]);
    waiting.expect_success(SIPP_TIMEOUT);
    assert!(host.stop().success());
}
