//! The load harness: every figure of BENCHMARKS.md in one run.
//!
//! ```sh
//! cargo build --release -p cti-host -p bench-plugin -p sim-connector -p console-control
//! cargo run --release -p cti-benches --bin load                 # ~3 minutes on 2 cores
//! cargo run --release -p cti-benches --bin load -- --quick      # small sizes, seconds
//! ```
//!
//! Options: `--quick`, `--repeats N` (3), `--only event,latency,scale,startup`,
//! `--max-calls N` (100000), `--min-calls N` (10), `--scale-events N`
//! (200000; events per scale run), `--plots DIR` (docs/; `-` for none), `--json FILE`.
//! Each measurement is repeated and its median reported; the sides of each
//! comparison are interleaved in this one process.

use std::{path::PathBuf, time::Duration};

use cti_benches::{
    machine,
    measure::{self, median, percentile_sorted},
    paths, plot,
    rig::{Mode, Rig},
    startup,
};
use serde_json::{json, Value};

struct Options {
    quick: bool,
    repeats: usize,
    only: Vec<String>,
    max_calls: u64,
    min_calls: u64,
    scale_events: Option<u64>,
    plots: Option<PathBuf>,
    json: Option<PathBuf>,
}

fn options() -> Options {
    let mut o = Options {
        quick: false,
        repeats: 3,
        only: Vec::new(),
        max_calls: 100_000,
        min_calls: 10,
        scale_events: None,
        plots: Some(paths::workspace().join("docs")),
        json: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--repeats" => o.repeats = value().parse().unwrap_or_else(|_| usage("--repeats N")),
            "--only" => o.only = value().split(',').map(str::to_owned).collect(),
            "--max-calls" => {
                o.max_calls = value().parse().unwrap_or_else(|_| usage("--max-calls N"))
            }
            "--min-calls" => {
                o.min_calls = value().parse().unwrap_or_else(|_| usage("--min-calls N"))
            }
            "--scale-events" => {
                o.scale_events = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|_| usage("--scale-events N")),
                );
            }
            "--plots" => {
                let v = value();
                o.plots = (v != "-").then(|| PathBuf::from(v));
            }
            "--json" => o.json = Some(PathBuf::from(value())),
            "--bench" => {} // cargo bench passes it to every target
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if o.quick {
        o.max_calls = o.max_calls.min(1_000);
    }
    o
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("load: {problem}");
    }
    eprintln!(
        "usage: load [--quick] [--repeats N] [--only event,latency,scale,startup] [--min-calls N] [--max-calls N] [--scale-events N] [--plots DIR|-] [--json FILE]"
    );
    std::process::exit(2)
}

impl Options {
    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
    fn size(&self, full: u64, quick: u64) -> u64 {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

fn fail(e: String) -> ! {
    eprintln!("load: {e}");
    std::process::exit(1)
}

fn us(ns: f64) -> String {
    format!("{:.1}", ns / 1e3)
}

const CONTROLS: usize = 3;

/// 1. The event path: ABI vs static vs JSON pipe, interleaved.
fn event_path(o: &Options, out: &mut Value) -> Vec<(String, f64, Vec<f64>)> {
    let modes = [
        (Mode::Dlopen, o.size(1_000_000, 50_000)),
        (Mode::Static, o.size(1_000_000, 50_000)),
        (Mode::Pipe { batch: 1 }, o.size(20_000, 2_000)),
        (Mode::Pipe { batch: 64 }, o.size(200_000, 10_000)),
    ];
    let mut runs: Vec<Vec<cti_benches::rig::Flood>> = vec![Vec::new(); modes.len()];
    for r in 0..o.repeats {
        for (i, (mode, events)) in modes.iter().enumerate() {
            let rig = Rig::start(*mode, CONTROLS).unwrap_or_else(|e| fail(e));
            rig.flood((events / 10).max(1_000), 0, false)
                .unwrap_or_else(|e| fail(e));
            let f = rig.flood(*events, 0, false).unwrap_or_else(|e| fail(e));
            rig.stop();
            eprintln!(
                "  event path, repeat {}: {:<28} {:>12.0} events/s  ({:.0} ns/event, desktop CPU {:.0} ns/event, process CPU {:.0} ns/event)",
                r + 1,
                mode.label(),
                f.per_second(),
                f.ns_per_event(),
                f.desktop_ns_per_event(),
                f.cpu_ns_per_event()
            );
            runs[i].push(f);
        }
    }
    println!("\n## 1. Event path: connector → desktop → {CONTROLS} controls\n");
    println!("| path | events per run | events/s (median) | ns/event | desktop-thread CPU ns/event | process CPU ns/event | runs (events/s) |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    let mut bars = Vec::new();
    let mut rows = Vec::new();
    for ((mode, events), fl) in modes.iter().zip(&runs) {
        let eps: Vec<f64> = fl.iter().map(|f| f.per_second()).collect();
        let ns: Vec<f64> = fl.iter().map(|f| f.ns_per_event()).collect();
        let dns: Vec<f64> = fl.iter().map(|f| f.desktop_ns_per_event()).collect();
        let cns: Vec<f64> = fl.iter().map(|f| f.cpu_ns_per_event()).collect();
        println!(
            "| {} | {events} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            mode.label(),
            median(&eps),
            median(&ns),
            median(&dns),
            median(&cns),
            eps.iter()
                .map(|v| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        bars.push((mode.label(), median(&eps), eps.clone()));
        rows.push(json!({
            "path": mode.label(), "events": events, "events_per_s": eps,
            "median_events_per_s": median(&eps), "ns_per_event": median(&ns),
            "desktop_cpu_ns_per_event": median(&dns), "process_cpu_ns_per_event": median(&cns),
        }));
    }
    let m = |i: usize| median(&runs[i].iter().map(|f| f.ns_per_event()).collect::<Vec<_>>());
    let (abi, stat, pipe1, pipe64) = (m(0), m(1), m(2), m(3));
    println!();
    println!(
        "- ABI time / static time: **{:.2}×** (target ≤ 1.2×)",
        abi / stat
    );
    println!(
        "- ABI vs JSON pipe, ack per event: **{:.0}×** faster; ack per 64: **{:.1}×** faster (target ≥ 20×)",
        pipe1 / abi,
        pipe64 / abi
    );
    out["event_path"] = json!({
        "rows": rows, "abi_over_static": abi / stat,
        "abi_speedup_vs_pipe_ack1": pipe1 / abi, "abi_speedup_vs_pipe_ack64": pipe64 / abi,
    });
    bars
}

/// 2. Latency at a paced 10,000 events/s.
fn latency(o: &Options, out: &mut Value) -> Vec<(String, Vec<f64>)> {
    let rate = 10_000;
    let events = o.size(30_000, 5_000);
    let modes = [Mode::Dlopen, Mode::Static];
    let mut all: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut per_run: Vec<Vec<[f64; 4]>> = vec![Vec::new(); modes.len()];
    for r in 0..o.repeats {
        for (i, mode) in modes.iter().enumerate() {
            let rig = Rig::start(*mode, CONTROLS).unwrap_or_else(|e| fail(e));
            rig.flood(2_000, rate, false).unwrap_or_else(|e| fail(e));
            rig.flood(events, rate, true).unwrap_or_else(|e| fail(e));
            let mut lat = rig.latencies_ns(events);
            rig.stop();
            lat.sort_by(f64::total_cmp);
            let p = [50.0, 99.0, 99.9, 100.0].map(|q| percentile_sorted(&lat, q));
            eprintln!(
                "  latency, repeat {}: {:<28} p50 {} µs  p99 {} µs  p99.9 {} µs  max {} µs ({} samples)",
                r + 1,
                mode.label(),
                us(p[0]),
                us(p[1]),
                us(p[2]),
                us(p[3]),
                lat.len()
            );
            per_run[i].push(p);
            all[i].extend(lat);
        }
    }
    println!("\n## 2. Latency at a paced {rate} events/s ({events} events per run, {CONTROLS} controls)\n");
    println!("| path | p50 µs | p99 µs | p99.9 µs | max µs | runs (p99 µs) |");
    println!("|---|---:|---:|---:|---:|---|");
    let mut rows = Vec::new();
    let mut series = Vec::new();
    for (i, mode) in modes.iter().enumerate() {
        let col = |k: usize| median(&per_run[i].iter().map(|p| p[k]).collect::<Vec<_>>());
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            mode.label(),
            us(col(0)),
            us(col(1)),
            us(col(2)),
            us(col(3)),
            per_run[i]
                .iter()
                .map(|p| us(p[1]))
                .collect::<Vec<_>>()
                .join(", ")
        );
        rows.push(json!({
            "path": mode.label(), "p50_us": col(0) / 1e3, "p99_us": col(1) / 1e3,
            "p999_us": col(2) / 1e3, "max_us": col(3) / 1e3,
        }));
        series.push((mode.label(), std::mem::take(&mut all[i])));
    }
    out["latency"] = json!({ "rate": rate, "events": events, "rows": rows });
    series
}

/// 3. Scale: memory per call and per-event cost from 10 to `max_calls` calls.
fn scale(o: &Options, out: &mut Value) {
    let mut sizes = vec![o.min_calls.max(1)];
    while *sizes.last().expect("one") * 10 <= o.max_calls {
        sizes.push(sizes.last().expect("one") * 10);
    }
    let events = o.scale_events.unwrap_or(o.size(200_000, 20_000));
    let mut rows = Vec::new();
    println!("\n## 3. Scale: concurrent calls (ringing, on one connector), {CONTROLS} controls\n");
    println!("| calls | heap per call, bytes | RSS per call, bytes | creating them, µs per call | events/s on one call | ns/event | desktop-thread CPU ns/event | runs (ns/event) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut base_ns = f64::NAN;
    for &calls in &sizes {
        let mut mem = Vec::new();
        let mut heap = Vec::new();
        let mut create = Vec::new();
        let mut floods = Vec::new();
        for r in 0..o.repeats {
            let rig = Rig::start(Mode::Dlopen, CONTROLS).unwrap_or_else(|e| fail(e));
            rig.flood(events / 4, 0, false).unwrap_or_else(|e| fail(e));
            std::thread::sleep(Duration::from_millis(50));
            measure::trim_heap();
            let before = measure::rss_bytes();
            let heap_before = measure::heap_in_use().unwrap_or(0);
            let took = rig.create_calls(calls).unwrap_or_else(|e| fail(e));
            std::thread::sleep(Duration::from_millis(50));
            measure::trim_heap();
            let after = measure::rss_bytes();
            let heap_after = measure::heap_in_use().unwrap_or(0);
            let f = rig.flood(events, 0, false).unwrap_or_else(|e| fail(e));
            rig.stop();
            let per_call = after.saturating_sub(before) as f64 / calls as f64;
            let heap_per_call = heap_after.saturating_sub(heap_before) as f64 / calls as f64;
            eprintln!(
                "  scale, repeat {}: {calls:>7} calls: RSS {per_call:.0} B/call, heap {heap_per_call:.0} B/call, created in {:.2} s, {:.0} ns/event, desktop CPU {:.0} ns/event, {:.3} page faults/event, {:.3} context switches/event",
                r + 1,
                took.as_secs_f64(),
                f.ns_per_event(),
                f.desktop_ns_per_event(),
                f.page_faults as f64 / f.events as f64,
                f.context_switches as f64 / f.events as f64
            );
            mem.push(per_call);
            heap.push(heap_per_call);
            create.push(took.as_secs_f64() * 1e6 / calls as f64);
            floods.push(f);
        }
        let ns: Vec<f64> = floods.iter().map(|f| f.ns_per_event()).collect();
        let dns: Vec<f64> = floods.iter().map(|f| f.desktop_ns_per_event()).collect();
        let eps: Vec<f64> = floods.iter().map(|f| f.per_second()).collect();
        if base_ns.is_nan() {
            base_ns = median(&ns);
        }
        println!(
            "| {calls} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.0} | {} |",
            median(&heap),
            median(&mem),
            median(&create),
            median(&eps),
            median(&ns),
            median(&dns),
            ns.iter()
                .map(|v| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        rows.push(json!({
            "calls": calls, "rss_bytes_per_call": median(&mem), "heap_bytes_per_call": median(&heap), "create_us_per_call": median(&create),
            "events_per_s": median(&eps), "ns_per_event": median(&ns),
            "desktop_cpu_ns_per_event": median(&dns), "vs_smallest": median(&ns) / base_ns,
        }));
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        let ratio = last["ns_per_event"].as_f64().unwrap_or(f64::NAN)
            / first["ns_per_event"].as_f64().unwrap_or(f64::NAN);
        println!(
            "\n- per-event cost at {} calls / at {} calls: **{ratio:.2}×** (target ≤ 1.2×); memory per call at {} calls: heap **{:.0} B**, RSS **{:.0} B** (target ≤ 1024 B)",
            last["calls"],
            first["calls"],
            last["calls"],
            last["heap_bytes_per_call"].as_f64().unwrap_or(f64::NAN),
            last["rss_bytes_per_call"].as_f64().unwrap_or(f64::NAN)
        );
    }
    use cti_plugin_api::{CallView, Contact, KeyValue, Party, SessionView};
    use std::mem::size_of;
    println!(
        "- inline sizes (bytes) of what the desktop keeps per call: CallView {}, SessionView {} (Contact {}), RString {}, Party {}, KeyValue {}; each short string is one more heap block (32 B with glibc)",
        size_of::<CallView>(),
        size_of::<SessionView>(),
        size_of::<Contact>(),
        size_of::<abi_stable::std_types::RString>(),
        size_of::<Party>(),
        size_of::<KeyValue>()
    );
    out["scale"] = json!({ "events": events, "rows": rows });
}

/// 4. Start-up: one plugin load, and `cti-host run` until ready.
fn startup_part(o: &Options, out: &mut Value) {
    let loads = o.size(20, 5) as usize;
    println!("\n## 4. Start-up\n");
    println!("| library | loads | total ms (median) | copy ms | ELF check ms | dlopen ms | layout check ms | file size |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let shadow = cti_host::loader::ShadowDir::create().unwrap_or_else(|e| fail(e.to_string()));
    let mut rows = Vec::new();
    let stripped_dir = tempfile::tempdir().unwrap_or_else(|e| fail(e.to_string()));
    let mut libs = Vec::new();
    for base in ["bench_plugin", "sim_connector"] {
        let Ok(path) = paths::library(base) else {
            eprintln!("  startup: lib{base}.so not built; skipped");
            continue;
        };
        libs.push((format!("lib{base}.so"), path.clone()));
        // As shipped to customers: without the debug line tables of the
        // workspace's release profile (`strip`, when binutils is there).
        let stripped = stripped_dir.path().join(format!("lib{base}.so"));
        let ok = std::process::Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&stripped)
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            libs.push((format!("lib{base}.so, debug info stripped"), stripped));
        }
    }
    for (name, path) in libs {
        let steps: Vec<startup::LoadSteps> = (0..loads)
            .map(|_| startup::load_once(&path, &shadow).unwrap_or_else(|e| fail(e)))
            .collect();
        let col =
            |f: fn(&startup::LoadSteps) -> f64| median(&steps.iter().map(f).collect::<Vec<_>>());
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        println!(
            "| {name} | {loads} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} MiB |",
            col(|s| s.total_ms),
            col(|s| s.copy_ms),
            col(|s| s.elf_ms),
            col(|s| s.dlopen_ms),
            col(|s| s.layout_ms),
            size as f64 / 1048576.0
        );
        rows.push(json!({
            "library": name, "total_ms": col(|s| s.total_ms), "copy_ms": col(|s| s.copy_ms),
            "elf_ms": col(|s| s.elf_ms), "dlopen_ms": col(|s| s.dlopen_ms),
            "layout_ms": col(|s| s.layout_ms), "bytes": size,
        }));
    }
    out["load_plugin"] = json!(rows);
    let runs = o.size(10, 3) as usize;
    let manifest = paths::workspace().join("config/desktop.toml");
    match paths::binary("cti-host", "cti-host") {
        Ok(host) => {
            let mut times = Vec::new();
            for _ in 0..runs {
                match startup::run_to_ready(&host, &manifest) {
                    Ok(d) => times.push(d.as_secs_f64() * 1e3),
                    Err(e) => {
                        eprintln!("  startup: {e}");
                        break;
                    }
                }
            }
            if !times.is_empty() {
                println!(
                    "\n`cti-host run config/desktop.toml`, spawn → \"desktop ready; ctl socket listening\": **{:.1} ms** median of {} (runs: {})",
                    median(&times),
                    times.len(),
                    times.iter().map(|t| format!("{t:.1}")).collect::<Vec<_>>().join(", ")
                );
                out["run_to_ready_ms"] = json!({ "median": median(&times), "runs": times });
            }
        }
        Err(e) => eprintln!("  startup: {e}; skipped"),
    }
}

fn main() {
    let o = options();
    let m = machine::describe();
    println!("# CTI Host load harness\n");
    println!("Machine: {m}");
    let mut out = json!({ "machine": format!("{m}") });
    let mut bars = Vec::new();
    let mut lat = Vec::new();
    if o.wants("event") {
        bars = event_path(&o, &mut out);
    }
    if o.wants("latency") {
        lat = latency(&o, &mut out);
    }
    if o.wants("scale") {
        scale(&o, &mut out);
    }
    if o.wants("startup") {
        startup_part(&o, &mut out);
    }
    let after = machine::load();
    println!(
        "\nLoad average at the end: {:.2} {:.2} {:.2}",
        after[0], after[1], after[2]
    );
    out["load_at_end"] = json!(after);
    if let Some(dir) = &o.plots {
        let _ = std::fs::create_dir_all(dir);
        if !bars.is_empty() {
            let p = dir.join("bench-event-path.svg");
            plot::throughput(
                &p,
                &format!(
                    "Event path: connector → desktop → {CONTROLS} controls (median of {})",
                    o.repeats
                ),
                &bars,
            )
            .unwrap_or_else(|e| fail(e));
            println!("Plot: {}", p.display());
        }
        if !lat.is_empty() {
            let p = dir.join("bench-latency-10k.svg");
            plot::latency(
                &p,
                &format!(
                    "Latency at 10,000 events/s, {CONTROLS} controls ({} runs pooled)",
                    o.repeats
                ),
                &lat,
                50.0,
            )
            .unwrap_or_else(|e| fail(e));
            println!("Plot: {}", p.display());
        }
    }
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&out).unwrap_or_default())
            .unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
    }
}
