//! ABI evolution: a plugin built against cti-plugin-api 1.0.0 loads and
//! works in this host (1.1: new event/command codes, the Control::intercept
//! method, new SDK helpers).

use cti_e2e::{run_cli, s, stderr, stdout, Host, Scratch};
use serde_json::Value;

#[test]
fn a_plugin_built_against_plugin_api_1_0_loads_and_works() {
    let lib = cti_e2e::build_compat_plugin();
    let o = run_cli(&["inspect", "--json", lib.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(info["api_version"], "1.0.0");
    assert_eq!(info["kinds"], serde_json::json!(["connector", "control"]));

    let scratch = Scratch::new();
    let dir = scratch.path("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&lib, dir.join("libcompat_plugin.so")).unwrap();
    let manifest = r#"
[host]
plugin_dir = ["{dir}/plugins", "{bin}"]
ctl_socket = "{socket}"

[[hosted_control]]
name = "Old phone"
type = "connector"
library = "compat_plugin"
version = "=1.0.0"

[[hosted_control]]
name = "Old log"
type = "control"
library = "compat_plugin"
[hosted_control.settings]
path = "{dir}/old-log.txt"
# A 1.0 control has no intercept method: the host falls back to the
# default (let the command go on).
[[hosted_control.intercept]]
command = "Hangup"
phase = "before"
priority = 1

[[hosted_control]]
name = "Recorder"
type = "control"
library = "recorder_control"
[hosted_control.settings]
path = "{recorder}"
"#;
    let mut host = Host::start_in(scratch, manifest);
    host.wait_event("the old connector's call", |e| {
        s(e, "event") == "Delivered" && s(e, "call_id") == "compat-1"
    });
    host.ctl_ok(&["answer", "compat-1"]);
    host.wait_event("Established", |e| {
        s(e, "event") == "Established" && s(e, "call_id") == "compat-1"
    });
    host.ctl_ok(&["hangup", "compat-1"]);
    host.wait_event("cleared", |e| {
        s(e, "event") == "CallCleared" && s(e, "call_id") == "compat-1"
    });
    assert!(host.stop().success(), "{}", host.log_text());
    // The old control received every event, in order.
    let log = std::fs::read_to_string(host.scratch.path("old-log.txt")).unwrap();
    let seen: Vec<(u64, String)> = log
        .lines()
        .map(|l| {
            let (seq, kind) = l.split_once(' ').unwrap();
            (seq.parse().unwrap(), kind.to_owned())
        })
        .collect();
    let recorded: Vec<(u64, String)> = host
        .events()
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap(), s(e, "event").to_owned()))
        .collect();
    let seqs = |v: &[(u64, String)]| v.iter().map(|(n, _)| *n).collect::<Vec<_>>();
    assert_eq!(seqs(&seen), seqs(&recorded), "every event, in order");
    for ((_, old), (_, new)) in seen.iter().zip(&recorded) {
        // Kinds added after 1.0 reach the old control as their code.
        if old != new {
            assert_eq!(
                (old.as_str(), new.as_str()),
                ("Unknown(118)", "CommandRequested")
            );
        }
    }
    assert!(
        seen.iter().any(|(_, k)| k == "SessionOpened"),
        "1.1-era flows reached the 1.0 control"
    );
    assert!(seen.iter().any(|(_, k)| k == "Unknown(118)"));
}
