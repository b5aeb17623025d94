//! A real desktop built the way `cti-host run` builds it — a manifest
//! written to a temporary folder, `app::prepare`/`app::start` — with one
//! `bench-plugin` connector and N `bench-plugin` controls.
//!
//! The three [`Mode`]s differ only in where the plugin code comes from and
//! where the controls run; the desktop, its worker threads and its queues
//! are the same.

use std::{
    path::Path,
    sync::{atomic::Ordering, Arc, OnceLock},
    time::{Duration, Instant},
};

use bench_plugin::{now_ns, Scoreboard, JOB_CREATE, JOB_FLOOD, MAX_CONTROLS, SAMPLES};
use cti_host::{
    app::{self, Prepared},
    desktop::RunningDesktop,
    loader::{Library, PluginMeta, ShadowDir},
};
use cti_plugin_api::PluginModRef;

use crate::{measure, paths};

/// Where the plugin code comes from and where the controls run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The cdylibs, copied, checked and `dlopen`ed by the host's loader
    /// (one private copy per hosted control, as `cti-host run` does).
    Dlopen,
    /// The same plugin code linked into this binary from its rlib: the same
    /// `sabi_trait` objects built from the root module, no `dlopen`.
    Static,
    /// Statically linked, but each control is a proxy to a child process
    /// that parses every event as JSON and acknowledges every `batch`
    /// events.
    Pipe {
        /// Events per acknowledgement.
        batch: u64,
    },
}

impl Mode {
    /// A short label for tables and plots.
    pub fn label(self) -> String {
        match self {
            Mode::Dlopen => "ABI (dlopen cdylib)".to_owned(),
            Mode::Static => "static (rlib, no dlopen)".to_owned(),
            Mode::Pipe { batch: 1 } => "JSON pipe, ack per event".to_owned(),
            Mode::Pipe { batch } => format!("JSON pipe, ack per {batch}"),
        }
    }
}

/// The one scoreboard of this process (rigs run one at a time).
pub fn board() -> &'static Scoreboard {
    static BOARD: OnceLock<&'static Scoreboard> = OnceLock::new();
    BOARD.get_or_init(Scoreboard::leak)
}

/// The statically linked plugin's root module (built once).
pub fn static_module() -> PluginModRef {
    static MODULE: OnceLock<PluginModRef> = OnceLock::new();
    *MODULE.get_or_init(bench_plugin::__cti_plugin_root_module)
}

/// A `Library` for the statically linked plugin, as the loader would
/// describe the cdylib.
pub fn static_library(path: &Path) -> Result<Library, String> {
    let module = static_module();
    let info = (module.info())();
    let parse = |v: &str| semver::Version::parse(v).map_err(|e| format!("{v}: {e}"));
    Ok(Library {
        path: path.to_path_buf(),
        loaded_from: path.to_path_buf(),
        meta: PluginMeta {
            name: info.name.into_string(),
            version: parse(info.version.as_str())?,
            description: info.description.into_string(),
            kinds: info.kinds,
            api_version: parse(info.api_version.as_str())?,
            capabilities: info.capabilities,
        },
        module,
        pinned_sha256: None,
    })
}

/// The manifest of a rig.
pub fn manifest(plugin_dir: &Path, mode: Mode, controls: usize, pipe_child: &Path) -> String {
    let board = board().address();
    let mut m = format!(
        r#"[host]
plugin_dir = "{dir}"
hot_reload = false
execute_timeout_ms = 5000
control_queue = 65536
inbox_capacity = 65536
lag_timeout_ms = 60000

[desktop]
agent_id = "bench"
initial_agent_state = "Ready"
max_concurrent_calls = 0

[[hosted_control]]
name = "Bench"
type = "connector"
library = "bench_plugin"
version = "^0.1"
display_group = "HiddenPanel"
connection = "instance"
channel = "voice"
[hosted_control.settings]
scoreboard = {board}
"#,
        dir = plugin_dir.display()
    );
    for slot in 0..controls {
        let (pipe, batch) = match mode {
            Mode::Pipe { batch } => (pipe_child.display().to_string(), batch),
            _ => (String::new(), 1),
        };
        m.push_str(&format!(
            r#"
[[hosted_control]]
name = "Control-{slot}"
type = "control"
library = "bench_plugin"
version = "^0.1"
display_group = "MainPanel"
[hosted_control.settings]
scoreboard = {board}
slot = {slot}
pipe = "{pipe}"
batch = {batch}
"#
        ));
    }
    m
}

/// What one flood measured.
#[derive(Debug, Clone, Copy)]
pub struct Flood {
    /// Events raised.
    pub events: u64,
    /// From the connector's first emit to the last control's last receipt.
    pub elapsed_ns: u64,
    /// CPU time of the desktop actor's thread during the flood.
    pub desktop_cpu_ns: u64,
    /// CPU time of the whole process during the flood.
    pub process_cpu_ns: u64,
    /// Minor page faults of the process during the flood.
    pub page_faults: u64,
    /// Context switches of the process's threads during the flood.
    pub context_switches: u64,
}

impl Flood {
    /// Events per second, end to end.
    pub fn per_second(&self) -> f64 {
        self.events as f64 * 1e9 / self.elapsed_ns.max(1) as f64
    }

    /// Wall time per event, ns.
    pub fn ns_per_event(&self) -> f64 {
        self.elapsed_ns as f64 / self.events.max(1) as f64
    }

    /// Desktop-thread CPU per event, ns.
    pub fn desktop_ns_per_event(&self) -> f64 {
        self.desktop_cpu_ns as f64 / self.events.max(1) as f64
    }

    /// Whole-process CPU per event, ns.
    pub fn cpu_ns_per_event(&self) -> f64 {
        self.process_cpu_ns as f64 / self.events.max(1) as f64
    }
}

/// A running desktop with the benchmark plugins.
pub struct Rig {
    /// How it was built.
    pub mode: Mode,
    /// Its controls.
    pub controls: usize,
    desktop: Option<RunningDesktop>,
    _prepared: Prepared,
    _dir: tempfile::TempDir,
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(())
}

impl Rig {
    /// Builds and starts a desktop: one connector and `controls` controls.
    ///
    /// # Errors
    /// A missing library or binary, or what the host refused.
    pub fn start(mode: Mode, controls: usize) -> Result<Rig, String> {
        assert!(controls <= MAX_CONTROLS, "at most {MAX_CONTROLS} controls");
        let lib = paths::library("bench_plugin")?;
        let plugin_dir = lib.parent().expect("a library has a folder").to_path_buf();
        let child = match mode {
            Mode::Pipe { .. } => paths::pipe_child()?,
            _ => Default::default(),
        };
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("bench.toml");
        std::fs::write(&path, manifest(&plugin_dir, mode, controls, &child))
            .map_err(|e| e.to_string())?;
        let prepared = match mode {
            Mode::Dlopen => app::prepare(&path).map_err(|e| e.to_string())?,
            Mode::Static | Mode::Pipe { .. } => {
                let manifest = cti_host::manifest::load(&path).map_err(|e| {
                    e.0.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                })?;
                let library = static_library(&lib)?;
                Prepared {
                    libraries: vec![library; manifest.hosted_controls.len()],
                    manifest,
                    shadow: Arc::new(ShadowDir::create().map_err(|e| e.to_string())?),
                }
            }
        };
        let b = board();
        let ready = b.ready.0.load(Ordering::Acquire);
        let desktop = app::start(&prepared).map_err(|e| e.to_string())?;
        wait_for(
            "the connector's job thread",
            Duration::from_secs(30),
            || b.ready.0.load(Ordering::Acquire) != ready,
        )?;
        Ok(Rig {
            mode,
            controls,
            desktop: Some(desktop),
            _prepared: prepared,
            _dir: dir,
        })
    }

    fn received(&self) -> Vec<u64> {
        board().controls[..self.controls]
            .iter()
            .map(|c| c.received.load(Ordering::Acquire))
            .collect()
    }

    /// Raises `events` events on the established call (paced at `rate`/s;
    /// 0 = flat out) and waits until every control has them. With `record`,
    /// the first [`SAMPLES`] are time-stamped (see [`Rig::latencies_ns`]).
    ///
    /// # Errors
    /// When the controls do not get every event in time.
    pub fn flood(&self, events: u64, rate: u64, record: bool) -> Result<Flood, String> {
        let b = board();
        let desktop0 = measure::thread_cpu_ns("desktop").unwrap_or(0);
        let cpu0 = measure::process_cpu_ns();
        let (faults0, switches0) = measure::faults_and_switches();
        b.start(JOB_FLOOD, events, rate, record);
        let paced = events.saturating_mul(1_000_000_000).checked_div(rate);
        let timeout = Duration::from_secs(120) + Duration::from_nanos(paced.unwrap_or(0));
        wait_for("every control to get every event", timeout, || {
            self.received().iter().all(|&n| n >= events)
        })
        .map_err(|e| format!("{e} (received {:?} of {events})", self.received()))?;
        let cpu1 = measure::process_cpu_ns();
        let (faults1, switches1) = measure::faults_and_switches();
        let desktop1 = measure::thread_cpu_ns("desktop").unwrap_or(0);
        let last = b.controls[..self.controls]
            .iter()
            .map(|c| c.last_ns.load(Ordering::Acquire))
            .max()
            .unwrap_or(0);
        let start = b.emit_start_ns.load(Ordering::Acquire);
        Ok(Flood {
            events,
            elapsed_ns: last.saturating_sub(start),
            desktop_cpu_ns: desktop1.saturating_sub(desktop0),
            process_cpu_ns: cpu1.saturating_sub(cpu0),
            page_faults: faults1.saturating_sub(faults0),
            context_switches: switches1.saturating_sub(switches0),
        })
    }

    /// Emit → last control's receipt, ns, of the recorded events of the
    /// last flood.
    pub fn latencies_ns(&self, events: u64) -> Vec<f64> {
        let b = board();
        (0..(events as usize).min(SAMPLES))
            .filter_map(|i| {
                let emitted = b.emit_ns[i].load(Ordering::Acquire);
                let last = b.recv_ns[..self.controls]
                    .iter()
                    .map(|r| r[i].load(Ordering::Acquire))
                    .max()?;
                (emitted > 0 && last >= emitted).then(|| (last - emitted) as f64)
            })
            .collect()
    }

    /// Raises `Delivered` for `calls` new ringing calls and waits until
    /// every control saw them; returns the time it took.
    ///
    /// # Errors
    /// When the controls do not see them in time.
    pub fn create_calls(&self, calls: u64) -> Result<Duration, String> {
        let b = board();
        let t0 = Instant::now();
        b.start(JOB_CREATE, calls, 0, false);
        let delivered = || {
            b.controls[..self.controls]
                .iter()
                .map(|c| c.delivered.load(Ordering::Acquire))
                .collect::<Vec<_>>()
        };
        wait_for("every new call", Duration::from_secs(600), || {
            delivered().iter().all(|&n| n >= calls)
        })
        .map_err(|e| format!("{e} (delivered {:?} of {calls})", delivered()))?;
        Ok(t0.elapsed())
    }

    /// Stops the desktop (connector, then controls) and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(d) = self.desktop.take() {
            d.handle.shutdown();
            let _ = d.thread.join();
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Monotonic now, ns (the clock the plugin stamps events with).
pub fn now() -> u64 {
    now_ns()
}
