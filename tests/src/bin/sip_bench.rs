//! sip_bench — how many calls per second the desktop answers through the
//! baresip connector with zero failures, and how much answer latency the
//! CTI path adds over baresip answering by itself.
//!
//! ```sh
//! cargo build --release -p cti-host -p baresip-connector -p recorder-control
//! cargo run --release -p cti-e2e --bin sip_bench -- [--rates 10,25,50,100,125,150,200,250] [--seconds 4] [--hold-ms 100] [--max-added-p95-ms 50]
//! ```
//!
//! Two baresips run side by side on 127.0.0.1 with the same configuration:
//! `auto` answers by itself (`answermode=auto`, nobody on its ctrl_tcp) —
//! the baseline; `cti` rings (`answermode=manual`) and the real `cti-host`
//! (baresip connector + recorder, `[desktop] auto_answer = true`) answers
//! every call. At each rate SIPp places `rate × seconds` calls to the
//! baseline, then to the CTI agent; each caller hangs up `hold-ms` after the
//! last re-INVITE it got (baresip's `accept` holds the previous call, so
//! overlapping CTI calls see hold re-INVITEs). Answer latency is INVITE sent
//! → 200 received, per call, from SIPp's message trace (µs timestamps). The
//! run stops at the first rate with a failed call or after the last rate.
//! This is a benchmark, not a test: it prints figures and exits 0 unless it
//! could not run.

use std::{
    collections::HashMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use cti_e2e::{
    s,
    sip::{self, Baresip, BaresipOpts, Lab, Sipp},
    Host,
};

struct Args {
    rates: Vec<f64>,
    seconds: f64,
    hold_ms: u64,
    max_added_p95_ms: f64,
}

fn args() -> Args {
    let mut a = Args {
        rates: vec![10.0, 25.0, 50.0, 100.0, 125.0, 150.0, 200.0, 250.0],
        seconds: 4.0,
        hold_ms: 100,
        max_added_p95_ms: 50.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--rates" => {
                a.rates = v
                    .split(',')
                    .map(|r| r.trim().parse().expect("--rates: numbers, comma-separated"))
                    .collect();
            }
            "--seconds" => a.seconds = v.parse().expect("--seconds: a number"),
            "--hold-ms" => a.hold_ms = v.parse().expect("--hold-ms: milliseconds"),
            "--max-added-p95-ms" => {
                a.max_added_p95_ms = v.parse().expect("--max-added-p95-ms: milliseconds");
            }
            _ => {
                eprintln!(
                    "usage: sip_bench [--rates 10,25,50,100,125,150,200,250] [--seconds 4] [--hold-ms 100] [--max-added-p95-ms 50]"
                );
                std::process::exit(2);
            }
        }
    }
    a
}

/// One SIPp run.
struct Run {
    calls: u32,
    ok: u32,
    failed: u32,
    /// Achieved call rate (INVITEs sent per second).
    rate: f64,
    /// INVITE → 200, ms, sorted.
    latency: Vec<f64>,
}

impl Run {
    fn pct(&self, p: f64) -> f64 {
        if self.latency.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latency.len() - 1) as f64 * p).round() as usize;
        self.latency[i]
    }
}

/// The cumulative number on a SIPp statistics line (`  Successful call | 0 | 500`).
fn stat(screen: &str, label: &str) -> u32 {
    screen
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.rsplit('|').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn place_calls(
    lab: &Lab,
    name: &str,
    target: &Baresip,
    rate: f64,
    calls: u32,
    hold_ms: u64,
) -> Run {
    let hold = hold_ms.to_string();
    let mut sipp = Sipp::scenario_with(lab, name, "uac_caller_hangs_up.xml", &[("HOLD_MS", &hold)])
        .remote(&target.direct())
        .service(&target.opts.user)
        .key("caller", "+15550000000")
        .calls(calls)
        .rate(rate)
        .arg("-l")
        .arg("4000")
        .start();
    let budget = Duration::from_secs_f64(f64::from(calls) / rate + 60.0);
    let rc = match sipp.proc.wait(budget) {
        Some(st) => st.code().unwrap_or(-1),
        None => {
            eprintln!("  {name}: SIPp still had calls open after {budget:?}; stopped it");
            sipp.proc.stop();
            -2
        }
    };
    let screen = std::fs::read_to_string(&sipp.proc.log).unwrap_or_default();
    let mut ok = stat(&screen, "Successful call");
    let mut failed = stat(&screen, "Failed call");
    if rc != 0 && failed == 0 {
        failed = calls.saturating_sub(ok).max(1);
    }
    if rc == 0 && ok == 0 {
        ok = calls;
    }
    // INVITE sent → 200 (to the INVITE) received, per Call-ID.
    let mut sent: HashMap<String, f64> = HashMap::new();
    let mut latency = Vec::new();
    let mut first_last = (f64::MAX, 0.0f64);
    for m in sipp.messages() {
        if !m.received && m.is_request("INVITE") && m.cseq_method() == "INVITE" {
            if m.text.contains("CSeq: 1 INVITE") {
                sent.entry(m.call_id().to_owned()).or_insert(m.at);
                first_last = (first_last.0.min(m.at), first_last.1.max(m.at));
            }
        } else if m.received && m.is_response(200) && m.text.contains("CSeq: 1 INVITE") {
            if let Some(t0) = sent.remove(m.call_id()) {
                let mut d = m.at - t0;
                if d < 0.0 {
                    d += 86_400.0;
                }
                latency.push(d * 1000.0);
            }
        }
    }
    latency.sort_by(f64::total_cmp);
    let span = first_last.1 - first_last.0;
    let achieved = if span > 0.0 {
        f64::from(calls.saturating_sub(1)) / span
    } else {
        rate
    };
    if rc != 0 {
        eprintln!(
            "  {name}: SIPp exit code {rc}; logs in {}",
            sipp.dir.display()
        );
    }
    Run {
        calls,
        ok,
        failed,
        rate: achieved,
        latency,
    }
}

fn manifest(ctrl_port: u16) -> String {
    format!(
        r#"
[host]
plugin_dir = "{{bin}}"
ctl_socket = "{{socket}}"
execute_timeout_ms = 5000
control_queue = 65536

[desktop]
agent_id = "bench"
auto_answer = true
max_concurrent_calls = 0

[[hosted_control]]
name = "Phone"
type = "connector"
library = "baresip_connector"
connection = "instance"
channel = "voice"
[hosted_control.settings]
port = {ctrl_port}
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

fn main() {
    let a = args();
    if std::env::var_os("CTI_BIN_DIR").is_none() {
        // target/<profile>/sip_bench → target/<profile>
        let exe = std::env::current_exe().expect("current_exe");
        let dir = exe.parent().expect("exe dir").to_path_buf();
        std::env::set_var("CTI_BIN_DIR", &dir);
    }
    if std::env::var_os("RUST_LOG").is_none() {
        // The connector's own lines (failed commands, resyncs), not every call.
        std::env::set_var("RUST_LOG", "warn,cti_host::plugin=info");
    }
    if !sip::tools_present("sip_bench") {
        std::process::exit(2);
    }
    let bin = cti_e2e::bin_dir();
    for f in [
        "cti-host",
        "libbaresip_connector.so",
        "librecorder_control.so",
    ] {
        if !bin.join(f).exists() {
            eprintln!(
                "{} is missing: cargo build --release -p cti-host -p baresip-connector -p recorder-control",
                bin.join(f).display()
            );
            std::process::exit(2);
        }
    }
    let lab = Lab::new();
    let opts = |mode: &str| BaresipOpts {
        user: "1001".into(),
        registrar: None,
        answermode: mode.into(),
        max_calls: 4096,
        // SIP_BENCH_VERBOSE=1: baresip logs every ctrl_tcp command (slower).
        verbose: std::env::var_os("SIP_BENCH_VERBOSE").is_some(),
    };
    let auto = Baresip::start(&lab, "auto", opts("auto"));
    let cti = Baresip::start(&lab, "cti", opts("manual"));
    let host = Host::start(&manifest(cti.ctrl_port));
    host.wait_event("the connector Connected", |e| {
        s(e, "event") == "ConnectorStatus" && s(e, "text") == "Connected"
    });
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "sip_bench: {} CPU(s), bin {}, {} s per rate, callers hang up {} ms after the last re-INVITE",
        cpus,
        bin.display(),
        a.seconds,
        a.hold_ms
    );
    println!(
        "{:>6} {:>6} | {:>8} {:>6} {:>7} {:>7} | {:>8} {:>6} {:>7} {:>7} | {:>8} {:>8}",
        "rate",
        "calls",
        "auto cps",
        "fail",
        "p50 ms",
        "p95 ms",
        "cti cps",
        "fail",
        "p50 ms",
        "p95 ms",
        "+p50 ms",
        "+p95 ms"
    );
    let mut best: Option<(f64, f64, f64, f64)> = None;
    let mut failed_at = None;
    let mut report = String::new();
    let started = Instant::now();
    for &rate in &a.rates {
        let calls = ((rate * a.seconds).round() as u32).max(20);
        let base = place_calls(&lab, &format!("auto-{rate}"), &auto, rate, calls, a.hold_ms);
        let before = host.events().len();
        let real = place_calls(&lab, &format!("cti-{rate}"), &cti, rate, calls, a.hold_ms);
        let events = host.events();
        let answered = events[before.min(events.len())..]
            .iter()
            .filter(|e| s(e, "event") == "Established")
            .count();
        let line = format!(
            "{:>6} {:>6} | {:>8.1} {:>6} {:>7.2} {:>7.2} | {:>8.1} {:>6} {:>7.2} {:>7.2} | {:>+8.2} {:>+8.2}",
            rate,
            calls,
            base.rate,
            base.failed,
            base.pct(0.5),
            base.pct(0.95),
            real.rate,
            real.failed,
            real.pct(0.5),
            real.pct(0.95),
            real.pct(0.5) - base.pct(0.5),
            real.pct(0.95) - base.pct(0.95),
        );
        println!("{line}");
        let _ = writeln!(report, "{line}");
        let clean = real.failed == 0 && real.ok == real.calls && answered >= calls as usize;
        if !clean {
            println!(
                "  cti at {rate}/s: {} ok, {} failed, {answered} answered by the desktop — stopping",
                real.ok, real.failed
            );
            let kept = lab.file("host.log");
            if std::fs::copy(&host.log, &kept).is_ok() {
                println!("  the desktop's log: {}", kept.display());
            }
            failed_at = Some(rate);
            break;
        }
        let added_p95 = real.pct(0.95) - base.pct(0.95);
        if added_p95 > a.max_added_p95_ms {
            // No failure yet, but answers queue up: not sustainable.
            println!(
                "  cti at {rate}/s: p95 answer latency {added_p95:+.1} ms over the baseline \
                 (limit {:+.0} ms): answers are queueing — stopping",
                a.max_added_p95_ms
            );
            break;
        }
        best = Some((real.rate, real.pct(0.5) - base.pct(0.5), added_p95, rate));
        if base.failed > 0 {
            println!("  baseline failed at {rate}/s: baresip itself is the limit — stopping");
            break;
        }
    }
    match best {
        Some((achieved, d50, d95, target)) => println!(
            "\nsustained: {target} calls/s offered ({achieved:.1} achieved) with 0 failures and \
             p95 added latency within {:.0} ms; answer latency added by the CTI path over \
             baresip's answermode=auto at that rate: {d50:+.2} ms median, {d95:+.2} ms p95 \
             ({:.0} s)",
            a.max_added_p95_ms,
            started.elapsed().as_secs_f64()
        ),
        None => println!("\nno rate was sustained"),
    }
    if let Some(rate) = failed_at {
        // Keep the lab (SIPp traces, baresip logs, the desktop's log).
        let kept = lab.keep();
        println!(
            "first failing rate {rate}/s; logs kept in {}",
            kept.display()
        );
    }
}
