//! Chat benchmark: messages per second through the desktop, and the latency
//! from a customer's send to a control's receipt, against a real Prosody.
//!
//! ```sh
//! cargo build --release -p cti-host -p xmpp-connector -p cti-e2e --bin chat_bench
//! target/release/chat_bench [--customers 20] [--burst 500] [--paced 400]
//! ```
//!
//! Set-up: a fresh Prosody on loopback, `cti-host run` with the XMPP
//! connector, and one real XMPP client per customer. Each customer opens a
//! chat, the agent answers them all (`cti-host ctl answer`). The "control"
//! is a `cti-host ctl events` stream (a desktop subscriber fed like every
//! control): a message counts as received when its `MessageReceived` line
//! arrives there, timed in this process against the customer's send.
//!
//! - **paced**: one message every 5 ms, round-robin over the customers →
//!   latency percentiles at a light load;
//! - **burst**: every customer sends `--burst` messages at once →
//!   throughput (messages / time from the first send to the last receipt)
//!   and latency under load;
//! - **reply**: `ctl send` → the customer's client, 20 samples (includes
//!   starting the `cti-host ctl` process).
//!
//! Runs in well under a minute on 2 cores; needs `prosody` installed.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use cti_e2e::{
    xmpp::{Customer, Prosody},
    Host,
};
use serde_json::Value;

const AGENT: &str = "agent@cti.test";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn report(name: &str, mut lat: Vec<Duration>) {
    lat.sort();
    println!(
        "{name}: n={} p50={} p95={} p99={} max={}",
        lat.len(),
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.95)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
    );
}

/// Receipts of `MessageReceived` texts on the ctl event stream.
type Receipts = Arc<Mutex<HashMap<String, Instant>>>;

fn main() {
    // The harness finds cti-host and the plugins next to this binary.
    if std::env::var_os("CTI_BIN_DIR").is_none() {
        let exe = std::env::current_exe().expect("current_exe");
        std::env::set_var("CTI_BIN_DIR", exe.parent().expect("bin dir"));
    }
    if !cti_e2e::xmpp::prosody_or_skip() {
        std::process::exit(2);
    }
    let customers = arg("--customers", 20).max(1);
    let burst = arg("--burst", 500);
    let paced = arg("--paced", 400);
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };

    let mut p = Prosody::new();
    p.register("agent", "agentpw");
    for i in 0..customers {
        p.register(&format!("c{i}"), "custpw");
    }
    p.run();
    let manifest = format!(
        r#"
[host]
plugin_dir = "{{bin}}"
ctl_socket = "{{socket}}"
control_queue = 65536

[desktop]
agent_id = "bench"
capacity = {{ chat = 0 }}
max_concurrent_calls = 0

{chat}
"#,
        chat = cti_e2e::parts::chat(&p.connector_settings("agent", "agentpw"))
    );
    let host = Host::start(&manifest);

    // The control: a ctl event stream, read on its own thread.
    let receipts: Receipts = Arc::default();
    let (offers_tx, offers_rx) = mpsc::channel::<(String, String)>();
    let (link_tx, link_rx) = mpsc::channel::<()>();
    let mut events = Command::new(cti_e2e::cti_host())
        .args(["ctl", "--socket"])
        .arg(&host.socket)
        .arg("events")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cti-host ctl events");
    let stdout = events.stdout.take().expect("stdout");
    let r2 = Arc::clone(&receipts);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let now = Instant::now();
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            match s("event").as_str() {
                "MessageReceived" => {
                    r2.lock().unwrap().insert(s("text"), now);
                }
                "Delivered" => {
                    let ani = v["call"]["ani"].as_str().unwrap_or("").to_owned();
                    let _ = offers_tx.send((ani, s("call_id")));
                }
                "ConnectorStatus" if s("text") == "Connected" => {
                    let _ = link_tx.send(());
                }
                "Snapshot" => {
                    let up = v["snapshot"]["plugins"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|p| p["link"] == "Connected"));
                    if up {
                        let _ = link_tx.send(());
                    }
                }
                _ => {}
            }
        }
    });
    link_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the connector did not connect within 20 s");

    // Every customer opens a chat; the agent answers them all.
    let mut clients: Vec<Customer> = (0..customers)
        .map(|i| Customer::connect(&p, &format!("c{i}"), "custpw", AGENT))
        .collect();
    for (i, c) in clients.iter().enumerate() {
        c.say(AGENT, &format!("open {i}"));
    }
    let mut calls: HashMap<String, String> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls.len() < customers {
        let left = deadline.saturating_duration_since(Instant::now());
        let (ani, id) = offers_rx.recv_timeout(left).expect("all chats offered");
        calls.insert(ani, id);
    }
    for id in calls.values() {
        host.ctl_ok(&["answer", id]);
    }

    let wait_all = |texts: &[(String, Instant)], within: Duration| -> Vec<Duration> {
        let deadline = Instant::now() + within;
        loop {
            let got = receipts.lock().unwrap();
            if texts.iter().all(|(t, _)| got.contains_key(t)) || Instant::now() > deadline {
                return texts
                    .iter()
                    .filter_map(|(t, sent)| got.get(t).map(|r| r.duration_since(*sent)))
                    .collect();
            }
            drop(got);
            std::thread::sleep(Duration::from_millis(2));
        }
    };

    println!(
        "chat_bench ({profile} build): {customers} customers, Prosody {} on loopback, xmpp-connector → desktop → `ctl events`",
        p.server()
    );

    // Paced: light load latency.
    let mut sent = Vec::with_capacity(paced);
    let start = Instant::now();
    for k in 0..paced {
        let text = format!("paced {k}");
        let at = Instant::now();
        clients[k % customers].say(AGENT, &text);
        sent.push((text, at));
        let next = start + Duration::from_millis(5 * (k as u64 + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let lat = wait_all(&sent, Duration::from_secs(30));
    let lost = sent.len() - lat.len();
    report(
        "paced (200 msg/s offered) customer send → control receipt",
        lat,
    );
    if lost > 0 {
        println!("  LOST: {lost} messages not received");
    }

    // Burst: throughput.
    let mut sent = Vec::with_capacity(burst * customers);
    let first = Instant::now();
    for k in 0..burst {
        for (i, c) in clients.iter().enumerate() {
            let text = format!("burst {i} {k}");
            sent.push((text.clone(), Instant::now()));
            c.say(AGENT, &text);
        }
    }
    let lat = wait_all(&sent, Duration::from_secs(60));
    let last = {
        let got = receipts.lock().unwrap();
        sent.iter().filter_map(|(t, _)| got.get(t)).max().copied()
    };
    let total = lat.len();
    let elapsed = last.map_or(Duration::ZERO, |l| l.duration_since(first));
    println!(
        "burst: {total} of {} messages in {:.3} s = {:.0} messages/s through the desktop",
        sent.len(),
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    report("burst customer send → control receipt", lat);

    // Agent replies: ctl send → the customer's client.
    let mut lat = Vec::new();
    let (first_ani, first_call) = calls
        .iter()
        .next()
        .map(|(a, c)| (a.clone(), c.clone()))
        .unwrap();
    let idx: usize = first_ani
        .trim_start_matches('c')
        .split('@')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    for k in 0..20 {
        let text = format!("reply {k}");
        let at = Instant::now();
        host.ctl_ok(&["send", &first_call, &text]);
        let r = clients[idx].expect(AGENT, |b| b == text);
        lat.push(r.at.duration_since(at));
    }
    report(
        "reply: `cti-host ctl send` (incl. process start) → customer's client",
        lat,
    );

    let _ = events.kill();
    let _ = events.wait();
    drop(clients);
    drop(host);
    p.stop();
}
