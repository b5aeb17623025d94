//! CTI lookup, screen pop and agent sessions; the action pipeline.

use cti_e2e::{
    parts::{self, HOST, RECORDER},
    read_jsonl, run_cli, s, stderr, stdout, Host, Scratch,
};
use serde_json::Value;

const CONTACTS: &str = "\
id,name,phone,account
c1,Ada Lovelace,+1 (425) 555-0101,A-1
c2,Bob Shared,14255550303,B-2
c3,Carol Shared,+1 425 555 0303,C-3
";

/// Four inbound calls: a known number (formatted differently from the
/// directory), an unknown one, a number two contacts share, and a call
/// whose account is in the call data.
const CALLS: &str = r#"
[[step]]
at_ms = 0
action = "inbound"
call = "known"
ani = "14255550101"
dnis = "+18005550100"

[[step]]
at_ms = 50
action = "inbound"
call = "unknown"
ani = "+14255559999"
dnis = "+18005550100"

[[step]]
at_ms = 100
action = "inbound"
call = "shared"
ani = "425-555-0303"
dnis = "+18005550100"
"#;

fn desktop(extra_controls: &str, scenario: &str) -> Host {
    let scratch = Scratch::new();
    let csv = scratch.write("contacts.csv", CONTACTS);
    let db = scratch.path("contacts.db");
    let o = run_cli(&[
        "contacts",
        "import",
        csv.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    scratch.write("scenario.toml", scenario);
    let phone = parts::scenario_phone("");
    let manifest = format!(
        r#"
{HOST}
[directory]
path = "{{dir}}/contacts.db"
default_country_code = "1"

[[lookup]]
name = "caller"
channel = "voice"
direction = "inbound"
dnis = "+1800*"
field = "ani"
on_none = "new-contact"
on_one = "contact"
on_many = "pick-list"

{phone}

{RECORDER}{extra_controls}
"#
    );
    Host::start_in(scratch, &manifest)
}

fn resolved(host: &Host, call: &str) -> Value {
    host.wait_event(&format!("LookupResolved for {call}"), |e| {
        s(e, "event") == "LookupResolved" && s(e, "call_id") == call
    })
}

#[test]
fn lookup_outcomes_open_the_right_sessions() {
    let mut host = desktop("", CALLS);
    let known = resolved(&host, "scn-known");
    assert_eq!(s(&known, "cause"), "contact");
    assert_eq!(
        known["session"]["contact"]["name"], "Ada Lovelace",
        "{known}"
    );
    assert_eq!(known["session"]["contact"]["fields"]["account"], "A-1");
    let unknown = resolved(&host, "scn-unknown");
    assert_eq!(s(&unknown, "cause"), "new-contact");
    assert!(unknown["session"]["contact"].is_null());
    let shared = resolved(&host, "scn-shared");
    assert_eq!(s(&shared, "cause"), "pick-list");
    let names: Vec<&str> = shared["session"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Bob Shared", "Carol Shared"]);
    // The agent picks one.
    host.ctl_ok(&[
        "raw",
        r#"{"kind":"PickContact","call_id":"scn-shared","target":"c3"}"#,
    ]);
    let picked = host.wait_event("the pick", |e| {
        s(e, "event") == "LookupResolved"
            && s(e, "call_id") == "scn-shared"
            && s(e, "text") == "picked by the agent"
    });
    assert_eq!(picked["session"]["contact"]["name"], "Carol Shared");
    // Each lookup was requested before it was resolved, after the call rang.
    let events = host.events();
    for call in ["scn-known", "scn-unknown", "scn-shared"] {
        let order: Vec<&str> = events
            .iter()
            .filter(|e| s(e, "call_id") == call)
            .map(|e| s(e, "event"))
            .filter(|k| {
                matches!(
                    *k,
                    "Delivered" | "LookupRequested" | "LookupResolved" | "SessionOpened"
                )
            })
            .take(4)
            .collect();
        assert_eq!(
            order,
            [
                "Delivered",
                "LookupRequested",
                "LookupResolved",
                "SessionOpened"
            ],
            "{call}"
        );
    }
    assert!(host.stop().success());
}

#[test]
fn concurrent_calls_keep_their_own_sessions_and_focus_follows_the_agent() {
    let mut host = desktop("", CALLS);
    resolved(&host, "scn-shared");
    let snap: Value = serde_json::from_str(&host.ctl_ok(&["snapshot"])).unwrap();
    let sessions = snap["sessions"].as_array().unwrap();
    let calls: Vec<&str> = sessions.iter().map(|x| s(x, "call_id")).collect();
    assert_eq!(calls, ["scn-known", "scn-unknown", "scn-shared"]);
    assert_eq!(sessions.iter().filter(|x| x["focused"] == true).count(), 1);
    assert_eq!(
        sessions[0]["focused"], true,
        "the first session has the focus"
    );
    // Answering a call focuses its session.
    host.ctl_ok(&["answer", "scn-unknown"]);
    host.wait_event("focus on the answered call", |e| {
        s(e, "event") == "SessionFocused" && s(e, "call_id") == "scn-unknown"
    });
    // The agent switches focus.
    host.ctl_ok(&["raw", r#"{"kind":"FocusSession","call_id":"scn-known"}"#]);
    host.wait_event("focus switched", |e| {
        s(e, "event") == "SessionFocused" && s(e, "call_id") == "scn-known"
    });
    // A session closes when its work item completes.
    host.ctl_ok(&["hangup", "scn-unknown"]);
    let closed = host.wait_event("session closed", |e| {
        s(e, "event") == "SessionClosed" && s(e, "call_id") == "scn-unknown"
    });
    assert_eq!(closed["session"]["outcome"], "new-contact");
    let snap: Value = serde_json::from_str(&host.ctl_ok(&["snapshot"])).unwrap();
    assert_eq!(snap["sessions"].as_array().unwrap().len(), 2);
    assert!(host.stop().success());
}

const GUARD: &str = r#"
[[hosted_control]]
name = "Guard"
type = "control"
library = "fault_control"
[hosted_control.settings]
veto = { BlindTransfer = "Transfers need a supervisor's approval" }
replace = ["Answer"]
after_log = "{dir}/after.jsonl"
[[hosted_control.intercept]]
command = "BlindTransfer"
phase = "before"
priority = 10
[[hosted_control.intercept]]
command = "Answer"
phase = "replace"
priority = 0
[[hosted_control.intercept]]
command = "Hold"
phase = "after"
priority = 5
"#;

#[test]
fn interceptors_veto_replace_and_observe_commands() {
    let mut host = desktop(GUARD, CALLS);
    resolved(&host, "scn-known");
    // Replace: Guard handles Answer (and answers itself).
    let out = host.ctl_ok(&["answer", "scn-known"]);
    assert!(out.contains("handled by fault-control"), "{out}");
    host.wait_event("Established through Guard", |e| {
        s(e, "event") == "Established" && s(e, "call_id") == "scn-known"
    });
    // Before: Guard vetoes a transfer; the reason reaches the controls.
    let o = host.ctl(&["transfer", "scn-known", "+15550009999"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Refused: vetoed by Guard: Transfers need a supervisor's approval"),
        "{}",
        stderr(&o)
    );
    let failed = host.wait_event("the veto", |e| {
        s(e, "event") == "CommandFailed" && s(e, "cause") == "Refused"
    });
    assert_eq!(
        s(&failed, "text"),
        "vetoed by Guard: Transfers need a supervisor's approval"
    );
    let calls: Value = serde_json::from_str(&host.ctl_ok(&["calls", "--json"])).unwrap();
    assert_eq!(
        calls[0]["state"], "Connected",
        "the transfer never reached the phone"
    );
    // After: Guard sees the outcome of Hold.
    host.ctl_ok(&["hold", "scn-known"]);
    host.wait_event("Held", |e| s(e, "event") == "Held");
    let log = host.scratch.path("after.jsonl");
    host.wait_until(
        "the after-interceptor saw Hold",
        std::time::Duration::from_secs(10),
        || {
            read_jsonl(&log)
                .iter()
                .any(|l| s(l, "command") == "Hold" && l["ok"] == true)
        },
    );
    assert!(host.stop().success());

    // The recording replays identically: the veto and the replace owner's
    // answer come from the recording, the rest goes on to the connector.
    host.assert_replays_identically(&[("after.jsonl", "replay-after.jsonl")]);
    // The after-interceptor ran in the replay too and saw the same Hold.
    let again = read_jsonl(&host.scratch.path("replay-after.jsonl"));
    assert!(
        again
            .iter()
            .any(|l| s(l, "command") == "Hold" && l["ok"] == true),
        "{again:?}"
    );
}

#[test]
fn a_second_replace_owner_and_a_bad_lookup_field_are_refused_at_load() {
    let scratch = Scratch::new();
    let m = scratch.manifest(
        "m.toml",
        r#"
[host]
plugin_dir = "{bin}"

[[lookup]]
field = "colour"

[[hosted_control]]
name = "A"
type = "control"
library = "fault_control"
[[hosted_control.intercept]]
command = "Answer"
phase = "replace"
priority = 1

[[hosted_control]]
name = "B"
type = "control"
library = "fault_control"
[[hosted_control.intercept]]
command = "Answer"
phase = "replace"
priority = 2
"#,
    );
    let o = run_cli(&["check", m.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    let file = m.display().to_string();
    assert!(
        e.contains(&format!("{file}:6:9: lookup 1: unknown field \"colour\"")),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "{file}:22:11: hosted control \"B\": Answer is already replaced by hosted control \"A\" (line 13)"
        )),
        "{e}"
    );
}

#[test]
fn a_corrupt_directory_is_a_clear_startup_error() {
    let scratch = Scratch::new();
    scratch.write(
        "contacts.db",
        "this is not a database, just text that is long enough to look like a header....",
    );
    let m = scratch.manifest(
        "m.toml",
        r#"
[host]
plugin_dir = "{bin}"

[directory]
path = "contacts.db"
"#,
    );
    let o = run_cli(&["run", m.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let e = stderr(&o);
    assert!(
        e.contains("[directory]") && e.contains("contacts.db"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}
