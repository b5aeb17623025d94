//! Hot reload of rebuilt plugins and fault isolation: the desktop never
//! loses a call to a plugin.

use std::{fs, path::PathBuf, time::Duration};

use cti_e2e::{n, plugin, read_jsonl, s, stderr, Host, Scratch};
use serde_json::Value;

/// A scratch folder whose `plugins/` holds private copies of libraries (so
/// the test can replace them as a rebuild would).
fn plugin_dir(scratch: &Scratch, libs: &[&str]) -> PathBuf {
    let dir = scratch.path("plugins");
    fs::create_dir_all(&dir).unwrap();
    for lib in libs {
        fs::copy(plugin(lib), dir.join(format!("lib{lib}.so"))).unwrap();
    }
    dir
}

fn reload_desktop(scratch: Scratch) -> Host {
    plugin_dir(&scratch, &["sim_connector", "recorder_control"]);
    let manifest = r#"
[host]
plugin_dir = "{dir}/plugins"
ctl_socket = "{socket}"
hot_reload = true
reload_debounce_ms = 150

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
name = "Recorder"
type = "control"
library = "recorder_control"
[hosted_control.settings]
path = "{recorder}"
append = true
"#;
    Host::start_in(scratch, manifest)
}

/// Replaces a library file in place, as `cp` or a build would.
fn replace(host: &Host, lib: &str, bytes: &[u8]) {
    let path = host.scratch.path("plugins").join(format!("lib{lib}.so"));
    fs::write(&path, bytes).unwrap();
}

fn assert_contiguous(events: &[Value]) {
    let seqs: Vec<u64> = events.iter().map(|e| n(e, "seq")).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "every event exactly once, in order");
}

fn plugin_version(host: &Host, name: &str) -> String {
    let snap: Value = serde_json::from_str(&host.ctl_ok(&["snapshot"])).unwrap();
    snap["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| s(p, "version").to_owned())
        .unwrap_or_default()
}

#[test]
fn a_rebuilt_connector_is_swapped_in_during_a_live_call() {
    let variant = cti_e2e::build_plugin_variant("plugins/sim-connector", "sim_connector", "0.2.0");
    let mut host = reload_desktop(Scratch::new());
    let d = host.wait_event("a call", |e| s(e, "event") == "Delivered");
    let id = s(&d, "call_id").to_owned();
    host.ctl_ok(&["answer", &id]);
    host.wait_event("Established", |e| s(e, "event") == "Established");
    assert_eq!(plugin_version(&host, "Phone"), "0.1.0");

    replace(&host, "sim_connector", &fs::read(&variant).unwrap());
    let r = host.wait_event("PluginReloaded", |e| s(e, "event") == "PluginReloaded");
    assert_eq!(s(&r, "source"), "Phone");
    assert_eq!(s(&r["attrs"], "old_version"), "0.1.0");
    assert_eq!(s(&r["attrs"], "new_version"), "0.2.0");
    let took: u64 = s(&r["attrs"], "took_ms").parse().unwrap();
    eprintln!("reload took {took} ms (file settled -> new version live)");
    assert_eq!(plugin_version(&host, "Phone"), "0.2.0");

    // The call lives on under the new version.
    host.ctl_ok(&["hold", &id]);
    host.wait_event("Held under 0.2.0", |e| {
        s(e, "event") == "Held" && s(e, "call_id") == id
    });
    host.ctl_ok(&["hangup", &id]);
    host.wait_event("cleared", |e| {
        s(e, "event") == "CallCleared" && s(e, "call_id") == id
    });
    assert!(host.stop().success());
    assert_contiguous(&host.events());
}

#[test]
fn a_broken_or_incompatible_rebuild_keeps_the_old_connector() {
    let api2 = cti_e2e::build_api_variant("2.0.0");
    let mut host = reload_desktop(Scratch::new());
    let d = host.wait_event("a call", |e| s(e, "event") == "Delivered");
    let id = s(&d, "call_id").to_owned();
    host.ctl_ok(&["answer", &id]);
    host.wait_event("Established", |e| s(e, "event") == "Established");

    let whole = fs::read(plugin("sim_connector")).unwrap();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("truncated", whole[..whole.len() / 3].to_vec(), "truncated"),
        (
            "not a plugin",
            fs::read(plugin("not_a_plugin")).unwrap(),
            "not a CTI Host plugin",
        ),
        (
            "plugin-api 2",
            fs::read(&api2).unwrap(),
            "cti-plugin-api 2.0.0",
        ),
    ];
    let mut seen = 0;
    for (what, bytes, reason) in cases {
        replace(&host, "sim_connector", &bytes);
        let f = host.wait_event(&format!("PluginReloadFailed ({what})"), |e| {
            s(e, "event") == "PluginReloadFailed" && {
                let k = host_count(e);
                k > seen
            }
        });
        seen = host_count(&f);
        assert!(s(&f, "cause").contains(reason), "{what}: {f}");
        assert_eq!(
            plugin_version(&host, "Phone"),
            "0.1.0",
            "{what}: the old version stays"
        );
        // The old instance still serves the call.
        host.ctl_ok(&["hold", &id]);
        host.ctl_ok(&["retrieve", &id]);
    }
    assert!(host.log_text().contains("reload refused"));
    assert!(host.stop().success());
    assert_contiguous(&host.events());
}

/// The seq of an event (strictly increasing: "a later one than I saw").
fn host_count(e: &Value) -> u64 {
    n(e, "seq")
}

#[test]
fn a_replaced_control_keeps_receiving_every_event() {
    let variant =
        cti_e2e::build_plugin_variant("plugins/recorder-control", "recorder_control", "0.2.0");
    let scratch = Scratch::new();
    plugin_dir(&scratch, &["sim_connector", "recorder_control"]);
    let manifest = r#"
[host]
plugin_dir = "{dir}/plugins"
ctl_socket = "{socket}"
hot_reload = true
reload_debounce_ms = 150

[[hosted_control]]
name = "Phone"
type = "connector"
library = "sim_connector"
[hosted_control.settings]
calls_per_minute = 3000
first_call_after_ms = 10
abandon_after_secs = 0.05

[[hosted_control]]
name = "Recorder"
type = "control"
library = "recorder_control"
[hosted_control.settings]
path = "{recorder}"
append = true
"#;
    let mut host = Host::start_in(scratch, manifest);
    host.wait_event("calls flowing", |e| s(e, "event") == "CallRemoved");
    let path = host.scratch.path("plugins/librecorder_control.so");
    fs::write(&path, fs::read(&variant).unwrap()).unwrap();
    let r = host.wait_event("Recorder reloaded", |e| {
        s(e, "event") == "PluginReloaded" && s(e, "source") == "Recorder"
    });
    let after = n(&r, "seq");
    host.wait_event("events after the reload", |e| n(e, "seq") > after + 50);
    assert!(host.stop().success());
    let events = host.events();
    assert_contiguous(&events);
    assert!(events.len() as u64 > after + 50);
}

#[test]
fn a_hung_connector_times_out_while_another_keeps_serving() {
    let manifest = r#"
[host]
plugin_dir = "{bin}"
ctl_socket = "{socket}"
execute_timeout_ms = 500
restart_backoff_ms = 50

[[hosted_control]]
name = "Stuck"
type = "connector"
library = "fault_connector"
[hosted_control.settings]
hang_in_execute = true
calls_at_start = 1

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
name = "Recorder"
type = "control"
library = "recorder_control"
[hosted_control.settings]
path = "{recorder}"
"#;
    let mut host = Host::start(manifest);
    let stuck = host.wait_event("the stuck connector's call", |e| {
        s(e, "event") == "Delivered" && s(e, "source") == "Stuck"
    });
    let good = host.wait_event("the simulator's call", |e| {
        s(e, "event") == "Delivered" && s(e, "source") == "Phone"
    });
    let started = std::time::Instant::now();
    let o = host.ctl(&["answer", s(&stuck, "call_id")]);
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Timeout"), "{}", stderr(&o));
    assert!(stderr(&o).contains("within 500 ms"), "{}", stderr(&o));
    assert!(
        took >= Duration::from_millis(450),
        "the timeout fired early: {took:?}"
    );
    // The other connector carries on.
    host.ctl_ok(&["answer", s(&good, "call_id")]);
    host.wait_event("the simulator's call Established", |e| {
        s(e, "event") == "Established" && s(e, "source") == "Phone"
    });
    // The stuck connector is restarted.
    host.wait_event("Stuck restarting", |e| {
        s(e, "event") == "PluginStatus" && s(e, "source") == "Stuck" && s(e, "text") == "Restarting"
    });
    host.wait_event("Stuck running again", |e| {
        s(e, "event") == "PluginStatus" && s(e, "source") == "Stuck" && s(e, "text") == "Running"
    });
    assert!(host.stop().success());
}

#[test]
fn a_control_that_keeps_panicking_is_faulted_after_the_limit_and_ctl_restart_brings_it_back() {
    let manifest = r#"
[host]
plugin_dir = "{bin}"
ctl_socket = "{socket}"
restart_limit = 3
restart_window_secs = 60
restart_backoff_ms = 10

[[hosted_control]]
name = "Phone"
type = "connector"
library = "sim_connector"
[hosted_control.settings]
calls_per_minute = 6000
first_call_after_ms = 10
abandon_after_secs = 0.01

[[hosted_control]]
name = "Flaky"
type = "control"
library = "fault_control"
[hosted_control.settings]
panic_every = 7

[[hosted_control]]
name = "Recorder"
type = "control"
library = "recorder_control"
[hosted_control.settings]
path = "{recorder}"
"#;
    let mut host = Host::start(manifest);
    let f = host.wait_event("Flaky faulted", |e| {
        s(e, "event") == "PluginStatus" && s(e, "source") == "Flaky" && s(e, "text") == "Faulted"
    });
    assert!(s(&f, "cause").contains("restarted 3 times"), "{f}");
    let restarts = host
        .events()
        .iter()
        .filter(|e| {
            s(e, "event") == "PluginStatus"
                && s(e, "source") == "Flaky"
                && s(e, "text") == "Running"
        })
        .count();
    assert_eq!(restarts, 3);
    // The desktop carries on without it.
    let seq = n(&f, "seq");
    host.wait_event("more events", |e| n(e, "seq") > seq + 20);
    assert!(host.is_running());

    // The administrator brings it back: a new instance with a fresh
    // restart budget (3 more restarts before it is Faulted again; without
    // the reset, its next panic would fault it at once).
    let out = host.ctl_ok(&["restart", "Flaky"]);
    assert!(out.contains("Flaky restarted (was Faulted)"), "{out}");
    let back = host.wait_event("Flaky running again", |e| {
        s(e, "event") == "PluginStatus"
            && s(e, "source") == "Flaky"
            && s(e, "cause") == "restarted by ctl (was Faulted)"
    });
    assert_eq!(s(&back, "text"), "Running", "{back}");
    let again = host.wait_event("Flaky faulted again", |e| {
        n(e, "seq") > n(&back, "seq")
            && s(e, "event") == "PluginStatus"
            && s(e, "source") == "Flaky"
            && s(e, "text") == "Faulted"
    });
    let budget = host
        .events()
        .iter()
        .filter(|e| {
            n(e, "seq") > n(&back, "seq")
                && n(e, "seq") < n(&again, "seq")
                && s(e, "event") == "PluginStatus"
                && s(e, "source") == "Flaky"
                && s(e, "text") == "Running"
        })
        .count();
    assert_eq!(budget, 3, "a fresh budget of 3 restarts");

    // A running connector restarted by hand: the desktop keeps offering calls.
    let out = host.ctl_ok(&["restart", "Phone"]);
    assert!(out.contains("Phone restarted (was Running)"), "{out}");
    let restarted = host.wait_event("Phone restarted", |e| {
        s(e, "event") == "PluginStatus" && s(e, "source") == "Phone" && s(e, "text") == "Running"
    });
    host.wait_event("a call from the new Phone instance", |e| {
        n(e, "seq") > n(&restarted, "seq") && s(e, "event") == "Delivered"
    });
    // An unknown name is refused, naming the hosted controls.
    let o = host.ctl(&["restart", "Nope"]);
    assert!(!o.status.success());
    let err = cti_e2e::stderr(&o);
    assert!(
        err.contains("no hosted control \"Nope\"") && err.contains("Phone, Flaky, Recorder"),
        "{err}"
    );
    assert!(host.stop().success());
}

#[test]
fn a_slow_control_is_resynchronised_instead_of_growing_memory() {
    let manifest = r#"
[host]
plugin_dir = "{bin}"
ctl_socket = "{socket}"
control_queue = 8
lag_timeout_ms = 20

[[hosted_control]]
name = "Phone"
type = "connector"
library = "sim_connector"
[hosted_control.settings]
calls_per_minute = 12000
first_call_after_ms = 10
abandon_after_secs = 0.01

[[hosted_control]]
name = "Slow"
type = "control"
library = "fault_control"
[hosted_control.settings]
slow_ms = 30
summary_path = "{dir}/slow.jsonl"

[[hosted_control]]
name = "Checker"
type = "control"
library = "fault_control"
[hosted_control.settings]
summary_path = "{dir}/checker.jsonl"
"#;
    let mut host = Host::start(manifest);
    host.wait_until(
        "the slow control is resynchronised",
        Duration::from_secs(20),
        || host.log_text().contains("resynchronised with a snapshot"),
    );
    assert!(host.stop().success(), "{}", host.log_text());
    let slow = read_jsonl(&host.scratch.path("slow.jsonl"));
    let checker = read_jsonl(&host.scratch.path("checker.jsonl"));
    assert_eq!(slow.len(), 1);
    assert!(n(&slow[0], "resyncs") >= 1, "{slow:?}");
    assert_eq!(checker.len(), 1);
    assert_eq!(
        n(&checker[0], "gaps"),
        0,
        "the other control saw every event: {checker:?}"
    );
    assert_eq!(n(&checker[0], "resyncs"), 0);
}

/// The reliability run of the issue: many events with a control that panics
/// on every 1000th; the host stays up, the other control gets every event in
/// order, no call state is lost, and the restart count matches the panics.
/// `CTI_RELIABILITY_TRIPLES` (default 333 334, i.e. > 1 000 000 connector
/// events) sets the size.
#[test]
fn reliability_run_with_a_control_that_panics_every_thousandth_event() {
    let triples: u64 = std::env::var("CTI_RELIABILITY_TRIPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            20_000
        } else {
            333_334
        });
    let manifest = format!(
        r#"
[host]
plugin_dir = "{{bin}}"
ctl_socket = "{{socket}}"
restart_limit = 100000000
restart_backoff_ms = 0

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
name = "Flood"
type = "connector"
library = "fault_connector"
[hosted_control.settings]
flood_events = {triples}

[[hosted_control]]
name = "Panicky"
type = "control"
library = "fault_control"
[hosted_control.settings]
panic_every = 1000
summary_path = "{{dir}}/panicky.jsonl"

[[hosted_control]]
name = "Checker"
type = "control"
library = "fault_control"
[hosted_control.settings]
summary_path = "{{dir}}/checker.jsonl"
"#
    );
    let started = std::time::Instant::now();
    let mut host = Host::start(&manifest);
    // The simulated call, answered before and checked after the flood.
    let call = loop {
        let calls: Value = serde_json::from_str(&host.ctl_ok(&["calls", "--json"])).unwrap();
        if let Some(c) = calls
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["connector"] == "Phone")
        {
            break c["call_id"].as_str().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no simulated call"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    host.ctl_ok(&["answer", &call]);
    // Wait for the flood to be fully processed: no flood call left and the
    // sequence number stable.
    let mut last_seq = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        let snap: Value = serde_json::from_str(&host.ctl_ok(&["snapshot"])).unwrap();
        let seq = n(&snap, "seq");
        let calls = snap["calls"].as_array().unwrap();
        if calls.len() == 1 && seq > triples * 5 && seq == last_seq {
            assert_eq!(calls[0]["call_id"], call.as_str());
            assert_eq!(
                calls[0]["state"], "Connected",
                "the live call kept its state"
            );
            break;
        }
        last_seq = seq;
        assert!(
            std::time::Instant::now() < deadline,
            "the flood did not finish: seq {seq}, {} calls",
            calls.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(host.is_running());
    assert!(host.stop().success(), "{}", host.log_text());
    let elapsed = started.elapsed();
    let checker = read_jsonl(&host.scratch.path("checker.jsonl"));
    assert_eq!(checker.len(), 1, "the checker never restarted: {checker:?}");
    let c = &checker[0];
    assert_eq!(n(c, "gaps"), 0, "{c}");
    assert_eq!(n(c, "resyncs"), 0, "{c}");
    assert_eq!(
        n(c, "events"),
        n(c, "last_seq") - n(c, "snapshot_seq"),
        "{c}"
    );
    let panicky = read_jsonl(&host.scratch.path("panicky.jsonl"));
    let restarts = panicky.len() as u64 - 1;
    let panics = host
        .log_text()
        .matches("fault-control: injected panic")
        .count() as u64;
    let status_restarts = host.log_text().matches("restarted").count() as u64;
    eprintln!(
        "reliability: {} connector events, {} desktop events, {restarts} restarts, {panics} panics, {:.1} s",
        triples * 3,
        n(c, "last_seq"),
        elapsed.as_secs_f64()
    );
    assert!(restarts > 0);
    assert_eq!(
        restarts, status_restarts,
        "one restart per retired instance"
    );
    assert!(panics >= restarts, "every restart follows a panic");
    // Every panic is answered by a restart of that instance; events that
    // arrive while it restarts are skipped for it (it restarts from a
    // snapshot), so at high rates fewer than every 1000th event reach it.
    let expected = n(c, "last_seq") / 1000;
    assert!(
        restarts * 2 >= expected / 10,
        "restarts {restarts}, about {expected} multiples of 1000"
    );
}

/// Reload cost: swaps the connector ten times (alternating two builds)
/// during a live call, and reports the time from "file settled" to "new
/// version live" and the resident memory each reload adds (libraries are
/// never unloaded). Run with `--nocapture` to see the figures.
#[test]
fn repeated_reloads_keep_the_call_and_report_their_cost() {
    let v2 = cti_e2e::build_plugin_variant("plugins/sim-connector", "sim_connector", "0.2.0");
    let v1 = plugin("sim_connector");
    let builds = [fs::read(&v2).unwrap(), fs::read(&v1).unwrap()];
    let mut host = reload_desktop(Scratch::new());
    let d = host.wait_event("a call", |e| s(e, "event") == "Delivered");
    let id = s(&d, "call_id").to_owned();
    host.ctl_ok(&["answer", &id]);
    host.wait_event("Established", |e| s(e, "event") == "Established");
    let rss_before = host.rss_kib();
    let mut took = Vec::new();
    let mut last_seq = 0;
    for i in 0..10 {
        replace(&host, "sim_connector", &builds[i % 2]);
        let r = host.wait_event(&format!("reload {}", i + 1), |e| {
            s(e, "event") == "PluginReloaded" && n(e, "seq") > last_seq
        });
        last_seq = n(&r, "seq");
        took.push(s(&r["attrs"], "took_ms").parse::<u64>().unwrap());
    }
    let rss_after = host.rss_kib();
    host.ctl_ok(&["hold", &id]);
    host.wait_event("Held after ten reloads", |e| {
        s(e, "event") == "Held" && s(e, "call_id") == id
    });
    took.sort_unstable();
    eprintln!(
        "reload: median {} ms, max {} ms (file settled -> new version live); memory +{} KiB per reload (RSS {} -> {} KiB over 10 reloads)",
        took[took.len() / 2],
        took[took.len() - 1],
        rss_after.saturating_sub(rss_before) / 10,
        rss_before,
        rss_after
    );
    assert!(host.stop().success());
    assert_contiguous(&host.events());
}
