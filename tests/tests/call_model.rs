//! The complete desktop manager: every call operation, work items and
//! wrap-up, pending agent state, capability-gated actions, `cti-host ctl`.

use std::time::Duration;

use cti_e2e::{
    n,
    parts::{self, HOST, RECORDER},
    run_cli, s, stderr, stdout, Host, Scratch,
};
use serde_json::Value;

/// A desktop with the simulator running `scenario` (TOML steps), extra
/// `[desktop]` lines, and the recorder.
fn desktop(scenario: &str, desktop_extra: &str) -> Host {
    let scratch = Scratch::new();
    scratch.write("scenario.toml", scenario);
    let phone = parts::scenario_phone("outbound_ring_ms = 50\noutbound_answer_ms = 100");
    let manifest = format!(
        r#"
{HOST}
[desktop]
agent_id = "a1"
reason_codes = ["Break", "Lunch"]
dispositions = ["Resolved", "Callback"]
{desktop_extra}

{phone}

{RECORDER}"#
    );
    Host::start_in(scratch, &manifest)
}

const ONE_CALL: &str = r#"
[[step]]
at_ms = 0
action = "inbound"
call = "c1"
ani = "+14255550101"
dnis = "+18005550100"
"#;

const TWO_CALLS: &str = r#"
[[step]]
at_ms = 0
action = "inbound"
call = "c1"
ani = "+14255550101"
dnis = "+18005550100"

[[step]]
at_ms = 150
action = "inbound"
call = "c2"
ani = "+14255550102"
dnis = "+18005550100"
"#;

/// The call id in `ok call ID[: detail]`.
fn new_call_id(out: &str) -> String {
    out.trim()
        .strip_prefix("ok call ")
        .and_then(|rest| rest.split([':', ' ']).next())
        .unwrap_or_else(|| panic!("no new call id in {out:?}"))
        .to_owned()
}

fn is(ev: &Value, event: &str, call: &str) -> bool {
    s(ev, "event") == event && s(ev, "call_id") == call
}

fn allowed(ev: &Value) -> Vec<String> {
    ev["call"]["allowed"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn wait(host: &Host, event: &str, call: &str) -> Value {
    host.wait_event(&format!("{event} on {call}"), |e| is(e, event, call))
}

/// Answers the ringing scenario call `call` and waits until it is connected.
fn answer(host: &Host, call: &str) -> Value {
    wait(host, "Delivered", call);
    host.ctl_ok(&["answer", call]);
    wait(host, "Established", call)
}

fn refused(host: &Host, args: &[&str]) -> String {
    let o = host.ctl(args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{args:?} should be refused: {}",
        stdout(&o)
    );
    stderr(&o)
}

#[test]
fn two_concurrent_calls_with_hold_and_alternate() {
    let mut host = desktop(TWO_CALLS, "");
    answer(&host, "scn-c1");
    host.ctl_ok(&["hold", "scn-c1"]);
    let held = wait(&host, "Held", "scn-c1");
    assert_eq!(s(&held, "state"), "Held");
    answer(&host, "scn-c2");
    // With c1 held and c2 connected, both offer Alternate and Conference.
    let calls: Value = serde_json::from_str(&host.ctl_ok(&["calls", "--json"])).unwrap();
    for c in calls.as_array().unwrap() {
        let a: Vec<&str> = c["allowed"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(a.contains(&"Alternate") && a.contains(&"Conference"), "{c}");
    }
    host.ctl_ok(&["alternate", "scn-c1", "scn-c2"]);
    let c2 = wait(&host, "Held", "scn-c2");
    let c1 = wait(&host, "Retrieved", "scn-c1");
    assert_eq!(s(&c2, "state"), "Held");
    assert_eq!(s(&c1, "state"), "Connected");
    assert!(n(&c1, "seq") > n(&c2, "seq"));
    // Two calls, two separate objects.
    let calls: Value = serde_json::from_str(&host.ctl_ok(&["calls", "--json"])).unwrap();
    let states: Vec<(&str, &str)> = calls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["call_id"].as_str().unwrap(), c["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("scn-c1", "Connected"), ("scn-c2", "Held")]);
    assert!(host.stop().success());
}

#[test]
fn consult_transfer_completed() {
    let mut host = desktop(ONE_CALL, "wrap_up_seconds = 0");
    answer(&host, "scn-c1");
    let out = host.ctl_ok(&["transfer", "scn-c1", "+15550001111", "--consult"]);
    let consult = new_call_id(&out);
    wait(&host, "Held", "scn-c1");
    let orig = wait(&host, "Originated", &consult);
    assert_eq!(s(&orig["call"], "dnis"), "+15550001111");
    wait(&host, "Established", &consult);
    host.ctl_ok(&["complete-transfer", "scn-c1", &consult]);
    let t = wait(&host, "Transferred", "scn-c1");
    assert_eq!(s(&t, "party"), "1001", "the transferring party: {t}");
    assert_eq!(s(&t, "text"), "+15550001111", "the target: {t}");
    wait(&host, "CallCleared", "scn-c1");
    wait(&host, "CallCleared", &consult);
    // The original call wraps up; the consultation call does not.
    let w = host.wait_event("c1 wrapping", |e| {
        is(e, "WorkItem", "scn-c1") && s(&e["call"]["work"], "state") == "Wrapping"
    });
    assert_eq!(w["call"]["work"]["wrap_up_unlimited"], true);
    let done = host.wait_event("consult completed", |e| is(e, "WorkItem", &consult));
    assert_eq!(s(&done["call"]["work"], "state"), "Completed");
    assert!(host.stop().success());
}

#[test]
fn consult_transfer_cancelled() {
    let mut host = desktop(ONE_CALL, "");
    answer(&host, "scn-c1");
    let out = host.ctl_ok(&["transfer", "scn-c1", "+15550001111", "--consult"]);
    let consult = new_call_id(&out);
    wait(&host, "Established", &consult);
    host.ctl_ok(&["cancel-consult", "scn-c1", &consult]);
    wait(&host, "CallCleared", &consult);
    let r = wait(&host, "Retrieved", "scn-c1");
    assert_eq!(s(&r, "state"), "Connected");
    assert!(host.stop().success());
}

#[test]
fn conference_of_three_parties_then_one_leaves() {
    let mut host = desktop(ONE_CALL, "");
    answer(&host, "scn-c1");
    let out = host.ctl_ok(&["transfer", "scn-c1", "+15550002222", "--consult"]);
    let b = new_call_id(&out);
    wait(&host, "Established", &b);
    host.ctl_ok(&["conference", "scn-c1", &b]);
    let conf = wait(&host, "Conferenced", &b);
    let parties: Vec<(&str, &str)> = conf["call"]["parties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["state"].as_str().unwrap()))
        .collect();
    assert!(
        parties.contains(&("+14255550101", "Connected")),
        "{parties:?}"
    );
    assert!(
        parties.contains(&("+15550002222", "Connected")),
        "{parties:?}"
    );
    wait(&host, "CallCleared", "scn-c1");
    // The customer leaves; the agent stays with the consulted party.
    let raw =
        format!(r#"{{"kind":"Hangup","call_id":"{b}","attrs":{{"sim.far_end":"+14255550101"}}}}"#);
    host.ctl_ok(&["raw", &raw]);
    let left = host.wait_event("the customer leaves", |e| {
        is(e, "ConnectionCleared", &b) && s(e, "party") == "+14255550101"
    });
    assert_eq!(s(&left, "state"), "Connected");
    let calls: Value = serde_json::from_str(&host.ctl_ok(&["calls", "--json"])).unwrap();
    let call = calls
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["call_id"] == b.as_str())
        .expect("call B lives");
    assert_eq!(call["state"], "Connected");
    assert!(host.stop().success());
}

#[test]
fn commands_are_refused_by_state_and_by_capability() {
    let manifest = r#"
[host]
plugin_dir = "{bin}"
ctl_socket = "{socket}"

[[hosted_control]]
name = "Vendor"
type = "connector"
library = "template_connector"

[[hosted_control]]
name = "Recorder"
type = "control"
library = "recorder_control"
[hosted_control.settings]
path = "{recorder}"
"#;
    let mut host = Host::start(manifest);
    let d = wait(&host, "Delivered", "tpl-1");
    assert_eq!(allowed(&d), ["Answer"], "the template supports no Reject");
    let e = refused(&host, &["hangup", "tpl-1"]);
    assert!(
        e.contains("InvalidState: Hangup is not allowed on call \"tpl-1\" while it is Alerting"),
        "{e}"
    );
    host.ctl_ok(&["answer", "tpl-1"]);
    let est = wait(&host, "Established", "tpl-1");
    assert_eq!(allowed(&est), ["Hangup"]);
    let e = refused(&host, &["hold", "tpl-1"]);
    assert!(
        e.contains("Unsupported: connector \"Vendor\" does not support Hold"),
        "{e}"
    );
    let f = host.wait_event("CommandFailed Unsupported", |e| {
        s(e, "event") == "CommandFailed" && s(e, "cause") == "Unsupported"
    });
    assert!(s(&f, "text").contains("does not support Hold"));
    let e = refused(&host, &["answer", "no-such-call"]);
    assert!(e.contains("UnknownCall"), "{e}");
    assert!(host.stop().success());
}

#[test]
fn pending_not_ready_is_applied_exactly_when_wrap_up_ends() {
    let mut host = desktop(ONE_CALL, "wrap_up_seconds = 1");
    answer(&host, "scn-c1");
    let out = host.ctl_ok(&["agent", "not-ready", "--reason", "Break"]);
    assert!(out.contains("pending"), "{out}");
    let p = host.wait_event("AgentStatePending", |e| {
        s(e, "event") == "AgentStatePending"
    });
    assert_eq!(s(&p, "pending_state"), "NotReady(Break)");
    let agent: Value = serde_json::from_str(&host.ctl_ok(&["agent", "--json"])).unwrap();
    assert_eq!(agent["state"], "Busy");
    assert_eq!(agent["pending"], "NotReady(Break)");
    host.ctl_ok(&["hangup", "scn-c1"]);
    let wrap = host.wait_event("wrap-up", |e| {
        is(e, "WorkItem", "scn-c1") && s(&e["call"]["work"], "state") == "Wrapping"
    });
    assert!(
        n(&wrap["call"]["work"], "wrap_up_remaining_ms") > 500,
        "{wrap}"
    );
    let done = host.wait_event_within("wrap-up ends", Duration::from_secs(5), |e| {
        is(e, "WorkItem", "scn-c1") && s(&e["call"]["work"], "state") == "Completed"
    });
    let nr = host.wait_event("NotReady(Break)", |e| {
        s(e, "event") == "AgentStateChanged" && s(e, "agent_state") == "NotReady(Break)"
    });
    assert!(n(&nr, "seq") > n(&done, "seq"));
    assert_eq!(
        s(&nr, "cause"),
        "confirmed",
        "{:#?}",
        host.events()
            .iter()
            .filter(|e| s(e, "event").starts_with("Agent") || s(e, "event") == "CommandCompleted")
            .collect::<Vec<_>>()
    );
    // Busy → WorkingAfterCall → NotReady(Break): never Ready in between.
    let states: Vec<String> = host
        .events()
        .iter()
        .filter(|e| s(e, "event") == "AgentStateChanged")
        .map(|e| s(e, "agent_state").to_owned())
        .collect();
    assert_eq!(states, ["Busy", "WorkingAfterCall", "NotReady(Break)"]);
    assert!(host.stop().success());
}

#[test]
fn a_call_not_answered_in_time_is_missed() {
    let mut host = desktop(ONE_CALL, "ring_timeout_seconds = 1");
    wait(&host, "Delivered", "scn-c1");
    let missed = host.wait_event_within("Missed", Duration::from_secs(5), |e| {
        is(e, "WorkItem", "scn-c1") && s(&e["call"]["work"], "state") == "Missed"
    });
    assert!(
        allowed(&missed).is_empty(),
        "a missed call offers nothing: {missed}"
    );
    wait(&host, "CallCleared", "scn-c1");
    let removed = wait(&host, "CallRemoved", "scn-c1");
    assert_eq!(s(&removed["call"]["work"], "state"), "Missed");
    assert!(host.stop().success());
}

#[test]
fn over_capacity_calls_are_rejected() {
    let mut host = desktop(TWO_CALLS, "max_concurrent_calls = 1");
    answer(&host, "scn-c1");
    wait(&host, "CallCleared", "scn-c2");
    let removed = wait(&host, "CallRemoved", "scn-c2");
    assert_eq!(s(&removed["call"]["work"], "state"), "Rejected");
    assert!(host.stop().success());
}

#[test]
fn over_capacity_calls_can_be_left_ringing() {
    let mut host = desktop(
        TWO_CALLS,
        "max_concurrent_calls = 1\nover_capacity = \"ring\"",
    );
    answer(&host, "scn-c1");
    let d = wait(&host, "Delivered", "scn-c2");
    assert!(!allowed(&d).contains(&"Answer".to_owned()), "{d}");
    assert!(refused(&host, &["answer", "scn-c2"]).contains("InvalidState"));
    host.ctl_ok(&["hangup", "scn-c1"]);
    let upd = host.wait_event("c2 may be answered", |e| {
        is(e, "CallUpdated", "scn-c2") && allowed(e).contains(&"Answer".to_owned())
    });
    assert_eq!(s(&upd, "state"), "Alerting");
    host.ctl_ok(&["answer", "scn-c2"]);
    wait(&host, "Established", "scn-c2");
    assert!(host.stop().success());
}

#[test]
fn wrap_up_with_disposition_extension_and_early_end() {
    let mut host = desktop(ONE_CALL, "wrap_up_seconds = 30");
    answer(&host, "scn-c1");
    host.ctl_ok(&["disposition", "scn-c1", "Resolved"]);
    let e = refused(&host, &["disposition", "scn-c1", "Nope"]);
    assert!(e.contains("unknown disposition \"Nope\""), "{e}");
    host.ctl_ok(&["hangup", "scn-c1"]);
    host.wait_event("wrapping", |e| {
        is(e, "WorkItem", "scn-c1") && s(&e["call"]["work"], "state") == "Wrapping"
    });
    host.ctl_ok(&["extend-wrap-up", "scn-c1", "60"]);
    let ext = host.wait_event("extended", |e| {
        is(e, "WorkItem", "scn-c1") && s(e, "cause").contains("extended")
    });
    assert!(
        n(&ext["call"]["work"], "wrap_up_remaining_ms") > 60_000,
        "{ext}"
    );
    let calls: Value = serde_json::from_str(&host.ctl_ok(&["calls", "--json"])).unwrap();
    assert_eq!(calls[0]["work"]["state"], "Wrapping");
    assert_eq!(calls[0]["work"]["disposition"], "Resolved");
    host.ctl_ok(&["end-wrap-up", "scn-c1"]);
    let done = host.wait_event("completed", |e| {
        is(e, "WorkItem", "scn-c1") && s(&e["call"]["work"], "state") == "Completed"
    });
    assert_eq!(s(&done["call"]["work"], "disposition"), "Resolved");
    wait(&host, "CallRemoved", "scn-c1");
    let agent: Value = serde_json::from_str(&host.ctl_ok(&["agent", "--json"])).unwrap();
    assert_eq!(agent["state"], "Ready");
    assert!(host.stop().success());
}

#[test]
fn outbound_call_dtmf_mute_and_blind_transfer() {
    let mut host = desktop("", "");
    let out = host.ctl_ok(&["dial", "+15550003333"]);
    let id = new_call_id(&out);
    let o = wait(&host, "Originated", &id);
    assert_eq!(s(&o, "state"), "Initiated");
    let d = wait(&host, "Delivered", &id);
    assert_eq!(d["call"]["parties"][0]["state"], "Alerting");
    let est = wait(&host, "Established", &id);
    assert_eq!(est["call"]["parties"][0]["state"], "Connected");
    host.ctl_ok(&["dtmf", &id, "12#"]);
    let dg = wait(&host, "DigitsGenerated", &id);
    assert_eq!(s(&dg, "text"), "12#");
    host.ctl_ok(&["mute", &id]);
    let m = wait(&host, "Muted", &id);
    assert!(
        allowed(&m).contains(&"Unmute".to_owned()) && !allowed(&m).contains(&"Mute".to_owned())
    );
    host.ctl_ok(&["unmute", &id]);
    wait(&host, "Unmuted", &id);
    host.ctl_ok(&["transfer", &id, "+15550004444"]);
    let t = wait(&host, "Transferred", &id);
    assert_eq!(s(&t, "party"), "1001");
    assert_eq!(s(&t, "text"), "+15550004444");
    wait(&host, "CallCleared", &id);
    assert!(host.stop().success());
}

#[test]
fn scenario_failures_and_switch_forced_agent_state() {
    let scenario = r#"
[[step]]
at_ms = 0
action = "agent_state"
state = "NotReady(Lunch)"

[[step]]
at_ms = 300
action = "busy"
call = "o1"
dnis = "+15550002222"

[[step]]
at_ms = 350
action = "no_answer"
call = "o2"
dnis = "+15550003333"
ring_ms = 300
"#;
    let mut host = desktop(scenario, "");
    let f = wait(&host, "Failed", "scn-o1");
    assert_eq!(s(&f, "cause"), "Busy");
    wait(&host, "CallCleared", "scn-o1");
    let f2 = wait(&host, "Failed", "scn-o2");
    assert_eq!(s(&f2, "cause"), "NoAnswer");
    let a = host.wait_event("forced NotReady(Lunch)", |e| {
        s(e, "event") == "AgentStateChanged" && s(e, "agent_state") == "NotReady(Lunch)"
    });
    assert_eq!(s(&a, "cause"), "switch");
    // Every call cleared before it was forgotten.
    let events = host.events();
    for id in ["scn-o1", "scn-o2"] {
        let kinds: Vec<&str> = events
            .iter()
            .filter(|e| s(e, "call_id") == id)
            .map(|e| s(e, "event"))
            .collect();
        let cleared = kinds
            .iter()
            .position(|k| *k == "CallCleared")
            .expect("cleared");
        let removed = kinds
            .iter()
            .position(|k| *k == "CallRemoved")
            .expect("removed");
        assert!(cleared < removed, "{id}: {kinds:?}");
    }
    assert!(host.stop().success());
}

#[test]
fn ctl_finds_the_one_running_desktop_and_streams_events() {
    let scratch = Scratch::new();
    let runtime = scratch.path("run");
    std::fs::create_dir_all(&runtime).unwrap();
    scratch.write("scenario.toml", ONE_CALL);
    let manifest = scratch.manifest(
        "m.toml",
        r#"
[host]
plugin_dir = "{bin}"

[[hosted_control]]
name = "Phone"
type = "connector"
library = "sim_connector"
[hosted_control.settings]
scenario = "{dir}/scenario.toml"
talk_time_secs = [0.0, 0.0]
"#,
    );
    let mut host = std::process::Command::new(cti_e2e::cti_host())
        .arg("run")
        .arg(&manifest)
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ctl = |args: &[&str]| {
        std::process::Command::new(cti_e2e::cti_host())
            .arg("ctl")
            .args(args)
            .env("XDG_RUNTIME_DIR", &runtime)
            .output()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let listed = loop {
        let o = ctl(&["calls"]);
        if o.status.success() && stdout(&o).contains("scn-c1") {
            break stdout(&o);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ctl calls never listed the call: {}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(listed.contains("+14255550101"), "{listed}");
    // `ctl events` streams JSON lines: answer and see Established.
    let mut events = std::process::Command::new(cti_e2e::cti_host())
        .args(["ctl", "events"])
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reader = std::io::BufReader::new(events.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in reader.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first: Value = serde_json::from_str(
        &rx.recv_timeout(Duration::from_secs(10))
            .expect("the first line"),
    )
    .unwrap();
    assert_eq!(s(&first, "event"), "Snapshot");
    assert_eq!(first["snapshot"]["calls"][0]["call_id"], "scn-c1");
    let o = ctl(&["answer", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("an event line from ctl events");
        let v: Value = serde_json::from_str(&line).expect("JSON line");
        if s(&v, "event") == "Established" {
            break v;
        }
    };
    assert_eq!(s(&got, "call_id"), "scn-c1");
    let _ = events.kill();
    let _ = events.wait();
    cti_e2e::send_signal(host.id(), libc::SIGINT);
    assert!(host.wait().unwrap().success());
    let o = run_cli(&["ctl", "--socket", "/nonexistent/ctl.sock", "calls"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot connect to the desktop"),
        "{}",
        stderr(&o)
    );
}
