//! Trust: `cti-host verify` on good and broken connectors, integrity
//! (sha256 pins) and permission checks on plugin files, and callers'
//! numbers kept out of the logs.

use std::{fs, os::unix::fs::PermissionsExt, path::Path, path::PathBuf};

use cti_e2e::{plugin, run_cli, s, stderr, stdout, Host, Scratch};
use serde_json::Value;

/// The simulator's settings for verify: one call at once, no far-end
/// hang-up, a second call right after it (so Reject is exercised too).
const SIM_VERIFY: &str = "first_call_after_ms = 0\nmax_calls = 2\ncalls_per_minute = 60000\ntalk_time_secs = [0.0, 0.0]\n";

/// Runs `cti-host verify --json`; returns the exit code and the report.
fn verify(library: &Path, settings: &str) -> (i32, Value) {
    let lib = library.display().to_string();
    let o = run_cli(&["verify", &lib, "--settings", settings, "--json"]);
    let report: Value = serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}):\n{}\n{}",
            stdout(&o),
            stderr(&o)
        )
    });
    (o.status.code().unwrap_or(-1), report)
}

fn row<'a>(report: &'a Value, check: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|r| s(r, "check") == check))
        .unwrap_or_else(|| panic!("no row {check:?} in {report:#}"))
}

fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| s(r, "status") == "fail")
                .map(|r| s(r, "check").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn verify_passes_on_the_simulator() {
    let (code, r) = verify(&plugin("sim_connector"), SIM_VERIFY);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["passed"], true);
    for check in [
        "plugin info complete",
        "Answer",
        "Reject",
        "Hold",
        "Retrieve",
        "SendDtmf",
        "Mute",
        "Unmute",
        "MakeCall",
        "SetAgentState",
        "Hangup",
        "undeclared commands refused (Unsupported)",
        "events in valid CSTA order",
        "no call forgotten",
        "stop within 2 s",
        "no panic",
    ] {
        assert_eq!(s(row(&r, check), "status"), "pass", "{check}: {r:#}");
    }
    // In the SDK's test mode the simulator needs no settings at all: its
    // demo defaults (random calls, callers hanging up after 20-60 s) and a
    // one-call setting alike become one call at once, a second once the
    // first no longer rings, and far ends that never hang up.
    let one = "first_call_after_ms = 0\nmax_calls = 1\ncalls_per_minute = 0\ntalk_time_secs = [0.0, 0.0]\n";
    for settings in ["", one] {
        let (code, r) = verify(&plugin("sim_connector"), settings);
        assert_eq!(code, 0, "{settings:?}: {r:#}");
        assert_eq!(r["test_mode"], true, "{r:#}");
        for check in [
            "Answer",
            "Reject",
            "Hangup",
            "MakeCall",
            "no call forgotten",
        ] {
            assert_eq!(
                s(row(&r, check), "status"),
                "pass",
                "{settings:?}, {check}: {r:#}"
            );
        }
    }
}

#[test]
fn verify_runs_the_polling_model_too() {
    for (lib, settings) in [
        (plugin("sim_connector"), SIM_VERIFY),
        (plugin("template_connector"), ""),
        (plugin("fault_connector"), ""),
    ] {
        let o = run_cli(&[
            "verify",
            &lib.display().to_string(),
            "--settings",
            settings,
            "--polling",
            "--json",
        ]);
        let r: Value = serde_json::from_str(stdout(&o).trim()).expect("json");
        assert_eq!(o.status.code(), Some(0), "{r:#}");
        assert_eq!(r["connection"], "polling");
        assert_eq!(s(row(&r, "poll"), "status"), "pass", "{r:#}");
    }
    // A connector whose poll panics fails, naming poll.
    let lib = plugin("fault_connector").display().to_string();
    let o = run_cli(&[
        "verify",
        &lib,
        "--settings",
        "panic_in = [\"poll\"]",
        "--polling",
        "--json",
    ]);
    let r: Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(o.status.code(), Some(1), "{r:#}");
    assert!(
        s(row(&r, "no panic"), "detail").starts_with("poll panicked"),
        "{r:#}"
    );
}

#[test]
fn verify_passes_on_the_template_and_prints_a_table() {
    let lib = plugin("template_connector");
    let (code, r) = verify(&lib, "");
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(s(row(&r, "Answer"), "status"), "pass");
    assert_eq!(s(row(&r, "Hangup"), "status"), "pass");
    let o = run_cli(&["verify", &lib.display().to_string()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("  pass  Answer "), "{out}");
    assert!(
        out.trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("result: PASS (")),
        "{out}"
    );
}

#[test]
fn verify_passes_on_the_fault_connector_in_test_mode() {
    // No setting at all: the test mode makes it offer a call.
    let (code, r) = verify(&plugin("fault_connector"), "");
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["test_mode"], true);
    assert_eq!(s(row(&r, "Hold"), "status"), "pass", "{r:#}");
}

#[test]
fn verify_fails_a_connector_that_claims_a_capability_it_lacks() {
    let (code, r) = verify(
        &plugin("fault_connector"),
        "claim_extra_capabilities = [\"SendDtmf\"]",
    );
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(failed(&r), ["SendDtmf"], "{r:#}");
    assert!(
        s(row(&r, "SendDtmf"), "detail").contains("returned Ok but no DigitsGenerated"),
        "{r:#}"
    );
}

#[test]
fn verify_fails_a_connector_that_answers_an_undeclared_command() {
    let (code, r) = verify(&plugin("fault_connector"), "hide_capabilities = [\"Hold\"]");
    assert_eq!(code, 1, "{r:#}");
    let check = "undeclared commands refused (Unsupported)";
    assert_eq!(failed(&r), [check], "{r:#}");
    assert!(
        s(row(&r, check), "detail").contains("Hold answered Ok although it is not declared"),
        "{r:#}"
    );
}

#[test]
fn verify_fails_a_connector_that_raises_events_for_an_unknown_call() {
    let (code, r) = verify(&plugin("fault_connector"), "emit_unknown_call = true");
    assert_eq!(code, 1, "{r:#}");
    let check = "events in valid CSTA order";
    assert_eq!(failed(&r), [check], "{r:#}");
    assert!(
        s(row(&r, check), "detail").contains("Established for unknown call ghost-1"),
        "{r:#}"
    );
}

#[test]
fn verify_fails_a_connector_that_panics_in_execute() {
    let (code, r) = verify(&plugin("fault_connector"), "panic_in = [\"execute\"]");
    assert_eq!(code, 1, "{r:#}");
    let panic = row(&r, "no panic");
    assert_eq!(s(panic, "status"), "fail", "{r:#}");
    assert!(s(panic, "detail").starts_with("execute panicked"), "{r:#}");
    assert!(s(panic, "detail").contains("reported as Panic"), "{r:#}");
    assert_eq!(s(row(&r, "Answer"), "status"), "fail");
    // The table names it too.
    let lib = plugin("fault_connector").display().to_string();
    let o = run_cli(&["verify", &lib, "--settings", "panic_in = [\"execute\"]"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("  FAIL  no panic"), "{}", stdout(&o));
}

#[test]
fn verify_fails_a_connector_whose_stop_is_too_slow() {
    let (code, r) = verify(&plugin("fault_connector"), "stop_delay_ms = 3000");
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(failed(&r), ["stop within 2 s"], "{r:#}");
}

#[test]
fn verify_refuses_something_that_is_not_a_connector() {
    let (code, r) = verify(&plugin("recorder_control"), "");
    assert_eq!(code, 1, "{r:#}");
    assert!(
        s(row(&r, "plugin info complete"), "detail").contains("not a connector"),
        "{r:#}"
    );
}

// ------------------------------------------------------------------ integrity, permissions

/// A plugin folder in the scratch dir holding a copy of the template.
fn plugin_copy(scratch: &Scratch) -> (PathBuf, PathBuf) {
    let dir = scratch.path("plugins");
    fs::create_dir_all(&dir).expect("mkdir");
    let lib = dir.join("libtemplate_connector.so");
    fs::copy(plugin("template_connector"), &lib).expect("copy");
    fs::set_permissions(&lib, fs::Permissions::from_mode(0o755)).expect("chmod");
    (dir, lib)
}

fn manifest(scratch: &Scratch, lib: &Path, host_extra: &str, hc_extra: &str) -> PathBuf {
    scratch.write(
        "m.toml",
        &format!(
            "[host]\n{host_extra}\n[[hosted_control]]\nname = \"Phone\"\ntype = \"connector\"\nlibrary = \"{}\"\n{hc_extra}\n",
            lib.display()
        ),
    )
}

fn check(m: &Path) -> (i32, String) {
    let o = run_cli(&["check", &m.display().to_string()]);
    (o.status.code().unwrap_or(-1), stderr(&o) + &stdout(&o))
}

fn sha256_of(lib: &Path) -> String {
    let o = run_cli(&["inspect", &lib.display().to_string(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    let h = s(&v, "sha256").to_owned();
    assert_eq!(h.len(), 64, "{v}");
    h
}

#[test]
fn a_sha256_pin_is_checked_before_loading() {
    let scratch = Scratch::new();
    let (_dir, lib) = plugin_copy(&scratch);
    let good = sha256_of(&lib);
    let m = manifest(&scratch, &lib, "", &format!("sha256 = \"{good}\""));
    let (code, out) = check(&m);
    assert_eq!(code, 0, "{out}");

    let wrong = format!(
        "{}{}",
        &good[..63],
        if good.ends_with('0') { '1' } else { '0' }
    );
    let m = manifest(&scratch, &lib, "", &format!("sha256 = \"{wrong}\""));
    let (code, out) = check(&m);
    assert_eq!(code, 2, "{out}");
    let line = out.lines().next().unwrap_or("");
    assert!(line.contains("hosted control \"Phone\""), "{out}");
    assert!(line.contains(&lib.display().to_string()), "{out}");
    assert!(
        line.contains(&format!(
            "sha256 mismatch: the manifest pins {wrong} but the file's is {good}"
        )),
        "{out}"
    );
    // The pin holds even with insecure permissions allowed.
    let m = manifest(
        &scratch,
        &lib,
        "allow_insecure_permissions = true",
        &format!("sha256 = \"{wrong}\""),
    );
    assert_eq!(check(&m).0, 2);
    // And a running host refuses it too.
    let o = run_cli(&["run", &m.display().to_string()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("sha256 mismatch"), "{}", stderr(&o));
}

#[test]
fn a_world_writable_plugin_file_is_refused() {
    let scratch = Scratch::new();
    let (_dir, lib) = plugin_copy(&scratch);
    fs::set_permissions(&lib, fs::Permissions::from_mode(0o666)).expect("chmod");
    let m = manifest(&scratch, &lib, "", "");
    let (code, out) = check(&m);
    assert_eq!(code, 2, "{out}");
    let real = fs::canonicalize(&lib).expect("canonicalize");
    assert!(
        out.contains(&format!(
            "{}: file is writable by others (mode 0666); fix with chmod go-w",
            real.display()
        )),
        "{out}"
    );
    assert!(out.contains("allow_insecure_permissions"), "{out}");
    // inspect and verify load libraries the same way.
    let o = run_cli(&["inspect", &lib.display().to_string()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("writable by others"), "{}", stderr(&o));

    let m = manifest(&scratch, &lib, "allow_insecure_permissions = true", "");
    let (code, out) = check(&m);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_plugin_in_a_world_writable_directory_is_refused() {
    let scratch = Scratch::new();
    let (dir, lib) = plugin_copy(&scratch);
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod");
    let m = manifest(&scratch, &lib, "", "");
    let (code, out) = check(&m);
    assert_eq!(code, 2, "{out}");
    let real = fs::canonicalize(&dir).expect("canonicalize");
    assert!(
        out.contains(&format!(
            "{}: directory is writable by others (mode 0777); fix with chmod go-w {}",
            real.display(),
            real.display()
        )),
        "{out}"
    );
    // Found through plugin_dir rather than a path: the same refusal.
    let m = scratch.write(
        "m2.toml",
        &format!(
            "[host]\nplugin_dir = \"{}\"\n[[hosted_control]]\nname = \"Phone\"\ntype = \"connector\"\nlibrary = \"template_connector\"\n",
            dir.display()
        ),
    );
    let (code, out) = check(&m);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("directory is writable by others (mode 0777)"),
        "{out}"
    );
    // A group-writable parent is refused as well.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o775)).expect("chmod");
    let (code, out) = check(&m);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("directory is writable by group (mode 0775)"),
        "{out}"
    );

    let m = manifest(&scratch, &lib, "allow_insecure_permissions = true", "");
    let (code, out) = check(&m);
    assert_eq!(code, 0, "{out}");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
}

// ------------------------------------------------------------------ privacy

#[test]
fn logs_of_a_call_do_not_contain_the_callers_number() {
    // Debug level shows every line info shows and more (Host::start passes
    // RUST_LOG on); no other test here depends on it.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "debug");
    }
    let mut host = Host::start(
        r#"
[host]
plugin_dir = "{bin}"
ctl_socket = "{socket}"

[[hosted_control]]
name = "Phone"
type = "connector"
library = "sim_connector"
[hosted_control.settings]
calls_per_minute = 0
first_call_after_ms = 50
max_calls = 1
talk_time_secs = [0.0, 0.0]
ani_prefix = "+1206867"

[[hosted_control]]
name = "Recorder"
type = "control"
library = "recorder_control"
[hosted_control.settings]
path = "{recorder}"
"#,
    );
    let delivered = host.wait_event("a Delivered call", |e| s(e, "event") == "Delivered");
    let id = s(&delivered, "call_id").to_owned();
    let ani = s(&delivered["call"], "ani").to_owned();
    assert!(ani.starts_with("+1206867") && ani.len() == 12, "{ani}");
    host.ctl_ok(&["answer", &id]);
    host.ctl_ok(&["dial", "+12068675309"]);
    // A refused command whose reason quotes the number: logged, masked.
    let refused = host.ctl(&["dtmf", &id, "+12068675309"]);
    assert!(!refused.status.success(), "a number is not DTMF digits");
    host.ctl_ok(&["hangup", &id]);
    host.wait_event("CallCleared", |e| {
        s(e, "event") == "CallCleared" && s(e, "call_id") == id
    });
    // Stopping flushes every log line.
    assert!(host.stop().success());
    let log = host.log_text();
    // The log does cover the call (its id), just not the numbers.
    assert!(log.contains("new call") && log.contains(&id), "{log}");
    assert!(
        log.lines()
            .any(|l| (l.contains("refused") || l.contains("failed")) && l.contains("***5309")),
        "the refusal is logged with the number masked:\n{log}"
    );
    for number in [ani.as_str(), "+12068675309", &ani[1..], "12068675309"] {
        assert!(
            !log.contains(number),
            "the log shows {number} in full:\n{log}"
        );
    }
}
