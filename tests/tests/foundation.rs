//! Foundation: a desktop that runs, driven through the real binary.

use std::{fs, path::Path, time::Duration};

use cti_e2e::{n, plugin, run_cli, s, stderr, stdout, Host, Scratch};
use serde_json::Value;

/// A manifest with one simulated phone (one inbound call, no far-end
/// hang-up) and the recorder.
fn sim_manifest(connection: &str) -> String {
    format!(
        r#"
[host]
plugin_dir = "{{bin}}"
ctl_socket = "{{socket}}"

[desktop]
agent_id = "a1"

[[hosted_control]]
name = "Phone"
type = "connector"
library = "sim_connector"
connection = "{connection}"
poll_interval_ms = 20
[hosted_control.settings]
calls_per_minute = 0
first_call_after_ms = 50
max_calls = 1
talk_time_secs = [0.0, 0.0]

[[hosted_control]]
name = "Recorder"
type = "control"
library = "recorder_control"
[hosted_control.settings]
path = "{{recorder}}"
"#
    )
}

fn call_events<'a>(events: &'a [Value], call_id: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| s(e, "call_id") == call_id)
        .collect()
}

#[test]
fn a_simulated_call_goes_through_hold_and_hangup_under_commands() {
    let mut host = Host::start(&sim_manifest("instance"));
    let delivered = host.wait_event("a Delivered call", |e| s(e, "event") == "Delivered");
    let id = s(&delivered, "call_id").to_owned();
    assert_eq!(s(&delivered, "state"), "Alerting");
    assert!(s(&delivered["call"], "ani").starts_with("+1425555"));

    host.ctl_ok(&["answer", &id]);
    host.wait_event("Established", |e| {
        s(e, "event") == "Established" && s(e, "call_id") == id
    });
    host.ctl_ok(&["hold", &id]);
    host.wait_event("Held", |e| s(e, "event") == "Held" && s(e, "call_id") == id);
    host.ctl_ok(&["retrieve", &id]);
    host.wait_event("Retrieved", |e| {
        s(e, "event") == "Retrieved" && s(e, "call_id") == id
    });
    host.ctl_ok(&["hangup", &id]);
    host.wait_event("CallCleared", |e| {
        s(e, "event") == "CallCleared" && s(e, "call_id") == id
    });

    let events = host.events();
    let flow: Vec<(&str, &str)> = call_events(&events, &id)
        .into_iter()
        .filter(|e| {
            matches!(
                s(e, "event"),
                "Delivered" | "Established" | "Held" | "Retrieved" | "ConnectionCleared"
            )
        })
        .map(|e| (s(e, "event"), s(e, "state")))
        .collect();
    assert_eq!(
        flow,
        [
            ("Delivered", "Alerting"),
            ("Established", "Connected"),
            ("Held", "Held"),
            ("Retrieved", "Connected"),
            ("ConnectionCleared", "Null"),
        ]
    );
    let seqs: Vec<u64> = events.iter().map(|e| n(e, "seq")).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq must increase: {seqs:?}"
    );
    // The agent went Busy with the call and back to Ready after it.
    let agent: Vec<&str> = events
        .iter()
        .filter(|e| s(e, "event") == "AgentStateChanged")
        .map(|e| s(e, "agent_state"))
        .collect();
    assert_eq!(agent, ["Busy", "Ready"], "agent states: {agent:?}");
    assert!(host.stop().success(), "{}", host.log_text());
}

#[test]
fn polling_and_instance_models_both_deliver_calls() {
    let scratch = Scratch::new();
    let manifest = r#"
[host]
plugin_dir = "{bin}"
ctl_socket = "{socket}"

[[hosted_control]]
name = "Pushed"
type = "connector"
library = "sim_connector"
connection = "instance"
[hosted_control.settings]
calls_per_minute = 0
first_call_after_ms = 10
max_calls = 1
talk_time_secs = [0.0, 0.0]

[[hosted_control]]
name = "Polled"
type = "connector"
library = "sim_connector"
connection = "polling"
poll_interval_ms = 25
[hosted_control.settings]
calls_per_minute = 0
first_call_after_ms = 10
max_calls = 1
talk_time_secs = [0.0, 0.0]

[[hosted_control]]
name = "Recorder"
type = "control"
library = "recorder_control"
[hosted_control.settings]
path = "{recorder}"
"#;
    let mut host = Host::start_in(scratch, manifest);
    for source in ["Pushed", "Polled"] {
        let ev = host.wait_event(&format!("a call from {source}"), |e| {
            s(e, "event") == "Delivered" && s(e, "source") == source
        });
        let id = s(&ev, "call_id").to_owned();
        host.ctl_ok(&["answer", &id]);
        host.wait_event(&format!("{source}'s call Established"), |e| {
            s(e, "event") == "Established" && s(e, "call_id") == id
        });
    }
    assert!(host.stop().success());
}

#[test]
fn two_connector_libraries_and_two_controls_in_one_process() {
    let manifest = r#"
[host]
plugin_dir = "{bin}"
ctl_socket = "{socket}"

[[hosted_control]]
name = "Phone"
type = "connector"
library = "sim_connector"
[hosted_control.settings]
calls_per_minute = 0
first_call_after_ms = 10
max_calls = 1
talk_time_secs = [0.0, 0.0]

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

[[hosted_control]]
name = "Toolbar"
type = "control"
library = "console_control"
[hosted_control.settings]
read_stdin = false
color = "never"
"#;
    let mut host = Host::start(manifest);
    let sim = host.wait_event("the simulator's call", |e| {
        s(e, "event") == "Delivered" && s(e, "source") == "Phone"
    });
    let tpl = host.wait_event("the template connector's call", |e| {
        s(e, "event") == "Delivered" && s(e, "source") == "Vendor"
    });
    let tpl_id = s(&tpl, "call_id").to_owned();
    host.ctl_ok(&["answer", &tpl_id]);
    host.wait_event("the template call Established", |e| {
        s(e, "event") == "Established" && s(e, "call_id") == tpl_id
    });
    // The console control (the second control library) drew both calls.
    let sim_ani = s(&sim["call"], "ani").to_owned();
    host.wait_until(
        "the console shows both calls",
        Duration::from_secs(10),
        || {
            let log = host.log_text();
            log.contains(&sim_ani) && log.contains("+15551230000") && log.contains("Established")
        },
    );
    let snapshot: Value = serde_json::from_str(&host.ctl_ok(&["snapshot"])).expect("snapshot JSON");
    let plugins: Vec<(String, String)> = snapshot["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|p| (s(p, "name").to_owned(), s(p, "status").to_owned()))
        .collect();
    assert_eq!(plugins.len(), 4, "{plugins:?}");
    assert!(plugins.iter().all(|(_, st)| st == "Running"), "{plugins:?}");
    assert!(host.stop().success());
}

#[test]
fn a_panicking_plugin_returns_an_error_and_the_host_keeps_running() {
    let manifest = r#"
[host]
plugin_dir = "{bin}"
ctl_socket = "{socket}"

[[hosted_control]]
name = "Faulty"
type = "connector"
library = "fault_connector"
[hosted_control.settings]
panic_in = ["execute"]
calls_at_start = 1

[[hosted_control]]
name = "Recorder"
type = "control"
library = "recorder_control"
[hosted_control.settings]
path = "{recorder}"
"#;
    let mut host = Host::start(manifest);
    let ev = host.wait_event("the fault connector's call", |e| {
        s(e, "event") == "Delivered"
    });
    let id = s(&ev, "call_id").to_owned();
    let o = host.ctl(&["answer", &id]);
    assert!(!o.status.success(), "answer should fail: {}", stdout(&o));
    assert!(stderr(&o).contains("Panic"), "{}", stderr(&o));
    let failed = host.wait_event("CommandFailed", |e| s(e, "event") == "CommandFailed");
    assert_eq!(s(&failed, "cause"), "Panic");
    assert!(s(&failed, "text").contains("injected panic"), "{failed}");
    // Still serving: the call is still there, still ringing.
    let calls: Value =
        serde_json::from_str(&host.ctl_ok(&["calls", "--json"])).expect("calls JSON");
    assert_eq!(calls[0]["state"], "Alerting", "{calls}");
    assert!(host.is_running());
    assert!(
        host.log_text().contains("plugin panicked"),
        "{}",
        host.log_text()
    );
    assert!(host.stop().success());
}

#[test]
fn sigterm_stops_the_desktop_cleanly() {
    let mut host = Host::start(&sim_manifest("instance"));
    host.wait_event("a call", |e| s(e, "event") == "Delivered");
    let status = host.stop_with(libc::SIGTERM);
    assert!(status.success(), "exit {status}: {}", host.log_text());
    let events = host.events();
    assert_eq!(
        s(events.last().expect("events"), "event"),
        "DesktopStopping"
    );
    assert!(!host.socket.exists(), "the ctl socket is removed at exit");
}

#[test]
fn the_default_desktop_runs_and_shows_a_call() {
    // The README's run command, with a bounded run: SIGINT after the console
    // shows a call; the host must exit 0.
    let manifest = cti_e2e::workspace().join("config/desktop.toml");
    let scratch = Scratch::new();
    let log = scratch.path("out.log");
    let out = fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(cti_e2e::cti_host())
        .arg("run")
        .arg(&manifest)
        .env("XDG_RUNTIME_DIR", scratch.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let shown = loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Delivered") {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    cti_e2e::send_signal(child.id(), libc::SIGINT);
    let status = child.wait().unwrap();
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(shown, "no call shown within 2 s:\n{text}");
    assert!(status.success(), "exit {status}:\n{text}");
}

// ------------------------------------------------------------------ bad input

fn refused(manifest_text: &str) -> (String, Scratch) {
    let scratch = Scratch::new();
    let path = scratch.manifest("bad.toml", manifest_text);
    let o = run_cli(&["check", path.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "check must refuse: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line per problem: {err}");
    // `run` refuses the same way.
    let o = run_cli(&["run", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "run must refuse: {}", stderr(&o));
    assert_eq!(stderr(&o), err);
    (lines[0].to_owned(), scratch)
}

fn connector(library: &str, extra: &str) -> String {
    format!(
        "[host]\nplugin_dir = \"{{bin}}\"\n\n[[hosted_control]]\nname = \"Phone\"\ntype = \"connector\"\nlibrary = \"{library}\"\n{extra}"
    )
}

#[test]
fn a_manifest_with_a_syntax_error_is_refused_with_line_and_column() {
    let (e, sc) = refused("[desktop]\nagent_id = \"a\n");
    let file = sc.path("bad.toml").display().to_string();
    assert!(e.starts_with(&format!("{file}:2:")), "{e}");
}

#[test]
fn an_unknown_key_is_refused() {
    let (e, sc) = refused(&connector("sim_connector", "colour = \"red\"\n"));
    let file = sc.path("bad.toml").display().to_string();
    assert!(e.starts_with(&format!("{file}:8:1:")), "{e}");
    assert!(e.contains("unknown field `colour`"), "{e}");
}

#[test]
fn a_missing_required_key_is_refused() {
    let (e, sc) = refused("[[hosted_control]]\nname = \"Phone\"\ntype = \"connector\"\n");
    let file = sc.path("bad.toml").display().to_string();
    assert!(e.starts_with(&format!("{file}:1:")), "{e}");
    assert!(e.contains("missing field `library`"), "{e}");
}

#[test]
fn a_duplicate_hosted_control_name_is_refused() {
    let text = format!(
        "{}\n[[hosted_control]]\nname = \"Phone\"\ntype = \"control\"\nlibrary = \"recorder_control\"\n",
        connector("sim_connector", "")
    );
    let (e, sc) = refused(&text);
    let file = sc.path("bad.toml").display().to_string();
    assert!(
        e.starts_with(&format!(
            "{file}:10:8: duplicate hosted control name \"Phone\""
        )),
        "{e}"
    );
}

#[test]
fn a_bad_semver_requirement_is_refused() {
    let (e, sc) = refused(&connector("sim_connector", "version = \"one point oh\"\n"));
    let file = sc.path("bad.toml").display().to_string();
    assert!(e.starts_with(&format!("{file}:8:11:")), "{e}");
    assert!(
        e.contains("bad version requirement \"one point oh\""),
        "{e}"
    );
}

#[test]
fn a_library_that_does_not_exist_is_refused() {
    let (e, _) = refused(&connector("no_such_connector", ""));
    assert!(
        e.contains("libno_such_connector.so: not found in the plugin directories"),
        "{e}"
    );
    assert!(e.contains(":7:11: hosted control \"Phone\""), "{e}");
}

fn plugin_dir_with(scratch: &Scratch, file: &str, bytes: &[u8]) -> String {
    let dir = scratch.path("plugins");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(file), bytes).unwrap();
    dir.display().to_string()
}

fn refused_library(file: &str, bytes: &[u8], library: &str) -> String {
    let scratch = Scratch::new();
    let dir = plugin_dir_with(&scratch, file, bytes);
    let text = format!(
        "[host]\nplugin_dir = \"{dir}\"\n\n[[hosted_control]]\nname = \"Phone\"\ntype = \"connector\"\nlibrary = \"{library}\"\n"
    );
    let path = scratch.write("m.toml", &text);
    let o = run_cli(&["check", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("{dir}/{file}")),
        "names the path: {err}"
    );
    err
}

#[test]
fn a_file_that_is_not_a_shared_library_is_refused() {
    let e = refused_library("libjunk.so", b"#!/bin/sh\necho not a library\n", "junk");
    assert!(e.contains("not a shared library"), "{e}");
}

#[test]
fn a_truncated_shared_library_is_refused_not_a_crash() {
    let whole = fs::read(plugin("sim_connector")).unwrap();
    let e = refused_library("libhalf.so", &whole[..whole.len() / 2], "half");
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn a_shared_library_that_is_not_a_plugin_is_refused() {
    let bytes = fs::read(plugin("not_a_plugin")).unwrap();
    let e = refused_library("libnot_a_plugin.so", &bytes, "not_a_plugin");
    assert!(e.contains("not a CTI Host plugin"), "{e}");
}

#[test]
fn a_plugin_version_that_misses_the_requirement_is_refused() {
    let (e, _) = refused(&connector("sim_connector", "version = \">=9\"\n"));
    assert!(
        e.contains("does not meet the version requirement \">=9\""),
        "{e}"
    );
    assert!(e.contains("sim-connector 0."), "{e}");
}

#[test]
fn a_plugin_built_against_another_plugin_api_major_is_refused() {
    let lib = cti_e2e::build_api_variant("2.0.0");
    let bytes = fs::read(&lib).unwrap();
    let e = refused_library("libapi2.so", &bytes, "api2");
    assert!(e.contains("cti-plugin-api 2.0.0"), "{e}");
    assert!(e.contains("incompatible"), "{e}");
}

#[test]
fn inspect_describes_a_plugin() {
    let o = run_cli(&[
        "inspect",
        "--json",
        plugin("sim_connector").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["name"], "sim-connector");
    assert_eq!(v["kinds"], serde_json::json!(["connector"]));
    assert_eq!(v["api_version"], "1.2.0");
    let caps: Vec<&str> = v["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for c in ["Answer", "Hangup", "Hold", "Retrieve"] {
        assert!(caps.contains(&c), "{caps:?}");
    }
    let o = run_cli(&["inspect", "/nonexistent/libx.so"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("/nonexistent/libx.so: cannot read"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_accepts_the_shipped_manifest() {
    let m = cti_e2e::workspace().join("config/desktop.toml");
    let o = run_cli(&["check", m.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Phone (connector): sim-connector"),
        "{}",
        stdout(&o)
    );
    assert!(Path::new(&m).exists());
}
