//! Record and replay: a recording fed back through the desktop manager
//! reproduces the same desktop events in the same order.

use cti_e2e::{
    parts::{self, HOST},
    run_cli, s, stderr, stdout, Host, Scratch,
};

const SCENARIO: &str = r#"
[[step]]
at_ms = 0
action = "inbound"
call = "c1"
ani = "+14255550101"
dnis = "+18005550100"

[[step]]
at_ms = 100
action = "inbound"
call = "c2"
ani = "+14255550102"
dnis = "+18005550100"

[[step]]
at_ms = 200
action = "agent_state"
state = "NotReady(Lunch)"
"#;

fn manifest(recorder: &str) -> String {
    let phone = parts::scenario_phone("outbound_ring_ms = 30\noutbound_answer_ms = 60");
    format!(
        r#"
{HOST}
[desktop]
reason_codes = ["Break", "Lunch"]
wrap_up_seconds = 1

{phone}

[[hosted_control]]
name = "Recorder"
type = "control"
library = "recorder_control"
[hosted_control.settings]
path = "{recorder}"
"#
    )
}

#[test]
fn a_recording_replays_to_the_identical_event_sequence() {
    let scratch = Scratch::new();
    scratch.write("scenario.toml", SCENARIO);
    let replay_manifest = scratch.manifest("replay.toml", &manifest("{dir}/replay-recorder.jsonl"));
    let mut host = Host::start_in(scratch, &manifest("{recorder}"));
    let is = |e: &serde_json::Value, ev: &str, call: &str| {
        s(e, "event") == ev && s(e, "call_id") == call
    };
    host.wait_event("c2 rings", |e| is(e, "Delivered", "scn-c2"));
    host.ctl_ok(&["answer", "scn-c1"]);
    host.wait_event("c1 up", |e| is(e, "Established", "scn-c1"));
    host.ctl_ok(&["hold", "scn-c1"]);
    host.ctl_ok(&["answer", "scn-c2"]);
    host.wait_event("c2 up", |e| is(e, "Established", "scn-c2"));
    host.ctl_ok(&["alternate", "scn-c1", "scn-c2"]);
    host.wait_event("c1 back", |e| is(e, "Retrieved", "scn-c1"));
    assert!(
        !host.ctl(&["hold", "scn-c2"]).status.success(),
        "refused: c2 is already held"
    );
    host.ctl_ok(&["dtmf", "scn-c1", "42"]);
    let out = host.ctl_ok(&["transfer", "scn-c1", "+15550001111", "--consult"]);
    let consult = out
        .trim()
        .trim_start_matches("ok call ")
        .split([':', ' '])
        .next()
        .unwrap()
        .to_owned();
    host.wait_event("consult up", |e| is(e, "Established", &consult));
    host.ctl_ok(&["complete-transfer", "scn-c1", &consult]);
    host.ctl_ok(&["agent", "not-ready", "--reason", "Break"]);
    host.ctl_ok(&["retrieve", "scn-c2"]);
    host.ctl_ok(&["hangup", "scn-c2"]);
    host.wait_event_within(
        "both wrap-ups over",
        std::time::Duration::from_secs(10),
        |e| s(e, "event") == "AgentStateChanged" && s(e, "agent_state") == "NotReady(Break)",
    );
    assert!(host.stop().success());
    let recording = host.recorder.clone();
    let count = host.events().len();
    assert!(count > 60, "a rich recording: {count} events");

    let out = host.scratch.path("replayed.jsonl");
    let o = run_cli(&[
        "replay",
        recording.to_str().unwrap(),
        "--manifest",
        replay_manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--compare",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("identical"), "{}", stdout(&o));
    // The manifest's recorder ran during the replay too.
    let again = cti_e2e::read_jsonl(&host.scratch.path("replay-recorder.jsonl"));
    assert_eq!(again.len(), count);

    // A recording with one event removed no longer matches.
    let text = std::fs::read_to_string(&recording).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let established = lines
        .iter()
        .position(|l| l.contains("\"event\":\"Retrieved\""))
        .unwrap();
    lines.remove(established);
    let edited = host
        .scratch
        .write("edited.jsonl", &(lines.join("\n") + "\n"));
    let o = run_cli(&[
        "replay",
        edited.to_str().unwrap(),
        "--manifest",
        replay_manifest.to_str().unwrap(),
        "--compare",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("replay differs"), "{}", stderr(&o));
}

#[test]
fn a_corrupt_recording_is_refused_at_the_bad_line() {
    let scratch = Scratch::new();
    scratch.write("scenario.toml", "");
    let m = scratch.manifest("m.toml", &manifest("{dir}/r.jsonl"));
    let bad = scratch.write(
        "bad.jsonl",
        "{\"seq\":1,\"event\":\"DesktopReady\"}\n{\"seq\":2,\"event\":\"Delivered\"}\n{\"seq\":3,\"event\":\"Establ",
    );
    let o = run_cli(&[
        "replay",
        bad.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with(&format!("{}:3: not a recorded event", bad.display())),
        "{}",
        stderr(&o)
    );
}
