//! bench-plugin: the plugin `cti-benches` measures the host with.
//!
//! - **Connector** (`BenchConnector`): at start it raises one inbound call,
//!   `bench-0`, and answers it (`Delivered`, `Established`). Then it runs
//!   *jobs*: `Flood` raises `DigitsGenerated` events on that established
//!   call as fast as it can or at a paced rate, each carrying its index in
//!   `text`; `Create` raises `Delivered` for that many new ringing calls
//!   (the scale benchmark).
//! - **Control** (`BenchControl`): counts what it receives and time-stamps
//!   the benchmark's events with `CLOCK_MONOTONIC` (shared by every thread
//!   and process). With `pipe` set it is a **proxy** instead: it serialises
//!   every event to JSON (`sdk::json::event_to_json`), writes it to a child
//!   process's stdin and waits for the child's acknowledgement, per event or
//!   per `batch` events (the model of sidecar and stdio plugins).
//!
//! # The scoreboard
//! The harness and the plugin meet on a [`Scoreboard`]: the harness leaks
//! one and passes its address as the `scoreboard` setting (a plain integer,
//! so it crosses the ABI like any other setting). The harness starts a job
//! by bumping [`Scoreboard::go`]; the connector and the controls write
//! their counters and time stamps there. The address is only meaningful in
//! the harness's own process: in a manifest for `cti-host run`, leave
//! `scoreboard` out (0) and the connector floods `events` events at `rate`
//! once after start.
//!
//! Settings of the connector: `scoreboard` (u64, 0), `events` (u64, 0),
//! `rate` (events/s, 0 = flat out). Settings of the control: `scoreboard`,
//! `slot` (0..[`MAX_CONTROLS`], this control's counters), `pipe` (path of
//! the child program; empty = count in-process), `batch` (events per
//! acknowledgement through the pipe, 1).

use std::{
    io::{BufRead, BufReader, BufWriter, Write},
    process::{Child, ChildStdin, ChildStdout, Command as Process, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use cti_plugin_api::sdk::prelude::*;
use serde::Deserialize;

/// Controls that can share one scoreboard.
pub const MAX_CONTROLS: usize = 4;
/// Events time-stamped per job (the first ones).
pub const SAMPLES: usize = 1 << 16;
/// The established call every `Flood` event concerns.
pub const BENCH_CALL: &str = "bench-0";

/// Job: raise `count` `DigitsGenerated` events on [`BENCH_CALL`].
pub const JOB_FLOOD: u64 = 1;
/// Job: raise `Delivered` for `count` new ringing calls.
pub const JOB_CREATE: u64 = 2;

/// `CLOCK_MONOTONIC` in nanoseconds: comparable across threads, and across
/// the host and its plugins (each image has its own `Instant` origin).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One control's counters, on its own cache lines (no false sharing
/// between the control threads).
#[repr(C, align(128))]
pub struct ControlBoard {
    /// `DigitsGenerated` events seen (the benchmark's events).
    pub received: AtomicU64,
    /// `Delivered` events seen.
    pub delivered: AtomicU64,
    /// Every other event.
    pub other: AtomicU64,
    /// Receipt time of the latest benchmark event.
    pub last_ns: AtomicU64,
}

/// A counter on its own cache lines.
#[repr(C, align(128))]
pub struct Padded(pub AtomicU64);

/// Where the harness and the plugin instances meet (see the crate docs).
#[repr(C)]
pub struct Scoreboard {
    /// Bumped by the harness to start a job (after setting the fields below).
    pub go: Padded,
    /// `JOB_FLOOD` or `JOB_CREATE`.
    pub job: AtomicU64,
    /// Events (flood) or calls (create) of the job.
    pub count: AtomicU64,
    /// Events per second (flood); 0 = as fast as possible.
    pub rate: AtomicU64,
    /// 1: time-stamp the first [`SAMPLES`] events of the job.
    pub record: AtomicU64,
    /// Set to `go` by the connector once the job's last event was emitted.
    pub done: Padded,
    /// Bumped by each connector once it is ready for jobs.
    pub ready: Padded,
    /// When the connector started and ended the job (monotonic ns).
    pub emit_start_ns: AtomicU64,
    /// See `emit_start_ns`.
    pub emit_end_ns: AtomicU64,
    /// Per control slot.
    pub controls: [ControlBoard; MAX_CONTROLS],
    /// Emit time of event `i` of the job.
    pub emit_ns: [AtomicU64; SAMPLES],
    /// Receipt time of event `i` of the job, per control slot.
    pub recv_ns: [[AtomicU64; SAMPLES]; MAX_CONTROLS],
}

impl Scoreboard {
    /// A zeroed scoreboard that lives as long as the process.
    pub fn leak() -> &'static Scoreboard {
        let layout = std::alloc::Layout::new::<Scoreboard>();
        // SAFETY: the layout is not zero-sized; an all-zero bit pattern is a
        // valid `Scoreboard` (only atomics); the allocation is never freed,
        // so the reference is valid for 'static.
        unsafe {
            let p = std::alloc::alloc_zeroed(layout).cast::<Scoreboard>();
            if p.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            &*p
        }
    }

    /// The value of the `scoreboard` setting that points at this one.
    pub fn address(&'static self) -> u64 {
        self as *const Scoreboard as u64
    }

    /// Clears the counters and time stamps before a job.
    pub fn reset(&self) {
        for c in &self.controls {
            c.received.store(0, Ordering::Relaxed);
            c.delivered.store(0, Ordering::Relaxed);
            c.other.store(0, Ordering::Relaxed);
            c.last_ns.store(0, Ordering::Relaxed);
        }
        if self.record.load(Ordering::Relaxed) != 0 {
            for a in self.emit_ns.iter().chain(self.recv_ns.iter().flatten()) {
                a.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Starts a job; returns its number (what `done` becomes).
    pub fn start(&self, job: u64, count: u64, rate: u64, record: bool) -> u64 {
        self.job.store(job, Ordering::Relaxed);
        self.count.store(count, Ordering::Relaxed);
        self.rate.store(rate, Ordering::Relaxed);
        self.record.store(u64::from(record), Ordering::Relaxed);
        self.reset();
        self.go.0.fetch_add(1, Ordering::Release) + 1
    }
}

/// The scoreboard a setting points at.
fn board(address: u64) -> Option<&'static Scoreboard> {
    if address == 0 {
        return None;
    }
    // SAFETY: a non-zero address is only ever written by the harness, which
    // passes `Scoreboard::address()` of a leaked scoreboard in this very
    // process (this library's `Scoreboard` is compiled from the same source,
    // so the layout is the same); see the crate docs.
    Some(unsafe { &*(address as *const Scoreboard) })
}

// ------------------------------------------------------------------ connector

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConnectorSettings {
    scoreboard: u64,
    events: u64,
    rate: u64,
}

/// The benchmark connector (see the crate docs).
pub struct BenchConnector {
    host: Host,
    settings: ConnectorSettings,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NewConnector for BenchConnector {
    fn new(host: Host, settings: Settings) -> Result<Self, PluginError> {
        Ok(Self {
            host,
            settings: settings.parse()?,
            stop: Arc::default(),
            thread: None,
        })
    }
}

fn call_info(id: &str, ani: &str) -> CallInfo {
    CallInfo {
        call_id: id.into(),
        direction: Direction::Inbound,
        ani: ani.into(),
        dnis: "+18005550100".into(),
        state: ConnectionState::Alerting,
        data: RVec::new(),
    }
}

fn delivered(id: &str, ani: &str) -> ConnectorEvent {
    let mut ev = ConnectorEvent::new(EventKind::DELIVERED, id, ConnectionState::Alerting);
    ev.call = ROption::RSome(call_info(id, ani));
    ev
}

/// Raises `count` benchmark events, paced at `rate` per second (0: flat out).
fn flood(
    host: &Host,
    board: Option<&Scoreboard>,
    count: u64,
    rate: u64,
    stop: &AtomicBool,
) -> Result<(), PluginError> {
    let record = board.filter(|b| b.record.load(Ordering::Relaxed) != 0);
    let start = now_ns();
    if let Some(b) = board {
        b.emit_start_ns.store(start, Ordering::Relaxed);
    }
    let period = 1_000_000_000u64.checked_div(rate).unwrap_or(0);
    for i in 0..count {
        if period > 0 {
            // Absolute deadlines: a late wake-up is caught up, so the
            // average rate holds.
            let due = start + i * period;
            let now = now_ns();
            if due > now {
                thread::sleep(Duration::from_nanos(due - now));
            }
            if i % 1024 == 0 && stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let mut ev = ConnectorEvent::new(
            EventKind::DIGITS_GENERATED,
            BENCH_CALL,
            ConnectionState::Connected,
        );
        ev.text = RString::from(i.to_string());
        if let Some(b) = record {
            if let Some(slot) = b.emit_ns.get(i as usize) {
                slot.store(now_ns(), Ordering::Relaxed);
            }
        }
        host.emit(ev)?;
    }
    if let Some(b) = board {
        b.emit_end_ns.store(now_ns(), Ordering::Relaxed);
    }
    Ok(())
}

fn create(host: &Host, job: u64, count: u64) -> Result<(), PluginError> {
    for j in 1..=count {
        let id = format!("c{job}-{j}");
        let ani = format!("+1555{:07}", j % 10_000_000);
        host.emit(delivered(&id, &ani))?;
    }
    Ok(())
}

/// The connector's thread: runs the harness's jobs until stopped.
fn serve(host: Host, board: &'static Scoreboard, stop: Arc<AtomicBool>) {
    // Paced jobs sleep for ~100 µs at a time: ask for precise wake-ups
    // (the default timer slack is 50 µs).
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long and touches only
    // this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let mut seen = board.go.0.load(Ordering::Acquire);
    board.ready.0.fetch_add(1, Ordering::Release);
    while !stop.load(Ordering::Relaxed) {
        let go = board.go.0.load(Ordering::Acquire);
        if go == seen {
            thread::sleep(Duration::from_micros(200));
            continue;
        }
        seen = go;
        let count = board.count.load(Ordering::Relaxed);
        let result = match board.job.load(Ordering::Relaxed) {
            JOB_FLOOD => flood(
                &host,
                Some(board),
                count,
                board.rate.load(Ordering::Relaxed),
                &stop,
            ),
            JOB_CREATE => create(&host, go, count),
            _ => Ok(()),
        };
        if result.is_err() {
            return; // the host is stopping
        }
        board.done.0.store(go, Ordering::Release);
    }
}

impl Connector for BenchConnector {
    const CAPABILITIES: Capabilities = Capabilities::NONE;

    fn start(&mut self, _calls: Vec<CallInfo>) -> Result<(), PluginError> {
        self.host.emit(delivered(BENCH_CALL, "+15550100"))?;
        self.host.emit(ConnectorEvent::new(
            EventKind::ESTABLISHED,
            BENCH_CALL,
            ConnectionState::Connected,
        ))?;
        let host = self.host.clone();
        let stop = self.stop.clone();
        let (events, rate) = (self.settings.events, self.settings.rate);
        let thread = match board(self.settings.scoreboard) {
            Some(b) => thread::spawn(move || serve(host, b, stop)),
            None => thread::spawn(move || {
                let _ = flood(&host, None, events, rate, &stop);
            }),
        };
        self.thread = Some(thread);
        Ok(())
    }

    fn execute(&mut self, command: &Command) -> Result<Outcome, PluginError> {
        Err(unsupported(command))
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ control

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ControlSettings {
    scoreboard: u64,
    slot: usize,
    pipe: String,
    batch: u64,
}

/// A child process speaking the JSON-lines protocol: one event per line; an
/// empty line asks for an acknowledgement (`ok`).
struct Pipe {
    child: Child,
    /// Taken (closed) when the pipe is dropped.
    input: Option<BufWriter<ChildStdin>>,
    output: BufReader<ChildStdout>,
    batch: u64,
    /// Lines written since the last acknowledgement.
    pending: u64,
    /// Benchmark events among them.
    pending_bench: u64,
    ack: String,
}

impl Pipe {
    fn spawn(program: &str, batch: u64) -> Result<Self, PluginError> {
        let fail = |e: std::io::Error| {
            PluginError::new(ErrorKind::INTERNAL, format!("pipe {program}: {e}"))
        };
        let mut child = Process::new(program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(fail)?;
        let input = child
            .stdin
            .take()
            .map(|i| BufWriter::with_capacity(1 << 16, i));
        let Some(output) = child.stdout.take().map(BufReader::new) else {
            return Err(fail(std::io::ErrorKind::BrokenPipe.into()));
        };
        Ok(Self {
            child,
            input,
            output,
            batch: batch.max(1),
            pending: 0,
            pending_bench: 0,
            ack: String::new(),
        })
    }

    /// Writes one event; returns the benchmark events acknowledged now.
    fn send(&mut self, event: &DesktopEvent, bench: bool, last: bool) -> std::io::Result<u64> {
        let input = self.input.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
        let line = cti_plugin_api::sdk::json::event_to_json(event);
        input.write_all(line.as_bytes())?;
        input.write_all(b"\n")?;
        self.pending += 1;
        self.pending_bench += u64::from(bench);
        if self.pending < self.batch && !last {
            return Ok(0);
        }
        input.write_all(b"\n")?;
        input.flush()?;
        self.ack.clear();
        if self.output.read_line(&mut self.ack)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.pending = 0;
        Ok(std::mem::take(&mut self.pending_bench))
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // Closing its stdin ends the child.
        if let Some(mut input) = self.input.take() {
            let _ = input.flush();
        }
        let _ = self.child.wait();
    }
}

/// The benchmark control (see the crate docs).
pub struct BenchControl {
    board: Option<&'static Scoreboard>,
    slot: usize,
    settings: ControlSettings,
    pipe: Option<Pipe>,
}

impl NewControl for BenchControl {
    fn new(_host: Host, settings: Settings) -> Result<Self, PluginError> {
        let settings: ControlSettings = settings.parse()?;
        if settings.slot >= MAX_CONTROLS {
            return Err(PluginError::new(
                ErrorKind::BAD_SETTINGS,
                format!("settings: slot must be below {MAX_CONTROLS}"),
            ));
        }
        Ok(Self {
            board: board(settings.scoreboard),
            slot: settings.slot,
            settings,
            pipe: None,
        })
    }
}

impl BenchControl {
    fn counters(&self) -> Option<&'static ControlBoard> {
        self.board.map(|b| &b.controls[self.slot])
    }
}

/// Bumps a counter only this thread writes (no read-modify-write needed).
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Release);
}

impl Control for BenchControl {
    fn start(&mut self, _snapshot: &DesktopSnapshot) -> Result<(), PluginError> {
        if !self.settings.pipe.is_empty() && self.pipe.is_none() {
            self.pipe = Some(Pipe::spawn(&self.settings.pipe, self.settings.batch)?);
        }
        Ok(())
    }

    fn on_event(&mut self, event: &DesktopEvent) -> Result<(), PluginError> {
        let bench = event.kind == EventKind::DIGITS_GENERATED;
        let index = if bench {
            event.text.parse::<u64>().unwrap_or(u64::MAX)
        } else {
            u64::MAX
        };
        if let Some(pipe) = &mut self.pipe {
            let last = self
                .board
                .is_some_and(|b| index.wrapping_add(1) == b.count.load(Ordering::Relaxed));
            let acked = pipe
                .send(event, bench, last)
                .map_err(|e| PluginError::new(ErrorKind::INTERNAL, format!("pipe: {e}")))?;
            if let Some(c) = self.counters() {
                if acked > 0 {
                    c.last_ns.store(now_ns(), Ordering::Relaxed);
                    bump(&c.received, acked);
                }
                if !bench {
                    bump(&c.other, 1);
                }
            }
            return Ok(());
        }
        let (Some(b), Some(c)) = (self.board, self.counters()) else {
            return Ok(());
        };
        match event.kind {
            EventKind::DIGITS_GENERATED => {
                let now = now_ns();
                if b.record.load(Ordering::Relaxed) != 0 {
                    if let Some(slot) = b.recv_ns[self.slot].get(index as usize) {
                        slot.store(now, Ordering::Relaxed);
                    }
                }
                c.last_ns.store(now, Ordering::Relaxed);
                bump(&c.received, 1);
            }
            EventKind::DELIVERED => bump(&c.delivered, 1),
            _ => bump(&c.other, 1),
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        self.pipe = None;
        Ok(())
    }
}

cti_plugin_api::export_plugin!(connector = BenchConnector, control = BenchControl);
