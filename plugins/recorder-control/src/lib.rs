//! `recorder-control`: writes every desktop event as one JSON line.
//!
//! Used by the end-to-end tests (they tail the file) and for replay. Each
//! line is [`cti_plugin_api::sdk::json::write_event`]'s rendering of one
//! event; after the host had to resynchronise the control, a line
//! `{"event":"Resync","seq":N,"snapshot":{…}}` tells the reader that events
//! before `N` may be missing.
//!
//! # Settings
//! - `path` (string, required): the file. A relative path is relative to
//!   the host's current directory; missing parent directories are created.
//! - `append` (bool, default `false`): keep what the file holds. When
//!   `false` the file is truncated the first time this process opens it; a
//!   restart of the control by the supervisor appends, so the recording of
//!   the run so far is kept.
//!
//! # Threads
//! `on_event` renders the line on the host's thread and hands it to a writer
//! thread over a bounded channel (back-pressure if the disk cannot keep up).
//! The writer thread writes through a `BufWriter` and flushes whenever its
//! channel is momentarily empty: a reader tailing the file sees each event
//! at once, while a flood is written in large blocks. Line buffers travel
//! back to `on_event` for reuse, so steady state allocates nothing.
#![deny(unsafe_code)]

use std::{
    fs::{self, File, OpenOptions},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    thread::JoinHandle,
};

use crossbeam_channel::{Receiver, Sender};
use cti_plugin_api::sdk::{json, prelude::*};
use serde::Deserialize;

/// Lines the channel holds before `on_event` blocks.
const QUEUE_LINES: usize = 8192;
/// Line buffers kept for reuse.
const RECYCLE_BUFFERS: usize = 256;
/// Line buffers larger than this are dropped rather than reused.
const RECYCLE_MAX_CAPACITY: usize = 64 * 1024;
/// The writer's buffer.
const WRITE_BUFFER: usize = 64 * 1024;

/// How the recorder logs (the host in production, a closure in tests).
pub type LogFn = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

/// The paths this process has already truncated (see `append`).
static TRUNCATED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The recorder's settings table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecorderSettings {
    /// The file to write.
    pub path: String,
    /// Keep the file's content instead of truncating it.
    pub append: bool,
}

impl RecorderSettings {
    /// Parses and checks the settings.
    ///
    /// # Errors
    /// `BadSettings` for an unknown key, a wrong type or a missing `path`.
    pub fn from_settings(settings: &Settings) -> Result<Self, PluginError> {
        let s: Self = settings.parse()?;
        if s.path.trim().is_empty() {
            return Err(PluginError::new(
                ErrorKind::BAD_SETTINGS,
                "settings: `path` is required (the file to record events to)",
            ));
        }
        Ok(s)
    }

    /// The file's path, made absolute against the current directory.
    pub fn resolved_path(&self) -> PathBuf {
        let p = Path::new(&self.path);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match std::env::current_dir() {
            Ok(dir) => dir.join(p),
            Err(_) => p.to_path_buf(),
        }
    }
}

/// What the writer thread reports back.
#[derive(Default)]
struct Failure {
    failed: AtomicBool,
    message: Mutex<String>,
}

impl Failure {
    fn set(&self, message: String, log: &LogFn) {
        log(LogLevel::Error, &message);
        *self.message.lock().unwrap_or_else(PoisonError::into_inner) = message;
        self.failed.store(true, Ordering::Release);
    }

    fn error(&self) -> Option<PluginError> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        let msg = self
            .message
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Some(PluginError::new(ErrorKind::INTERNAL, msg))
    }
}

/// The running writer thread and its channels.
struct Writer {
    lines: Sender<String>,
    spare: Receiver<String>,
    thread: JoinHandle<()>,
}

/// The recorder control.
pub struct Recorder {
    path: PathBuf,
    append: bool,
    log: LogFn,
    writer: Option<Writer>,
    failure: Arc<Failure>,
    /// True once `on_event` has returned the writer's failure.
    failure_returned: bool,
}

impl Recorder {
    /// A recorder for `path` that logs through `log`. Nothing is opened
    /// before [`Control::start`].
    pub fn with_logger(
        path: impl Into<PathBuf>,
        append: bool,
        log: impl Fn(LogLevel, &str) + Send + Sync + 'static,
    ) -> Self {
        Self {
            path: path.into(),
            append,
            log: Arc::new(log),
            writer: None,
            failure: Arc::new(Failure::default()),
            failure_returned: false,
        }
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self) -> Result<File, PluginError> {
        let io_err = |what: &str, e: std::io::Error| {
            PluginError::new(
                ErrorKind::INTERNAL,
                format!("{what} {}: {e}", self.path.display()),
            )
        };
        if let Some(parent) = self.path.parent() {
            if !parent.as_os_str().is_empty() {
                fs::create_dir_all(parent)
                    .map_err(|e| io_err("cannot create the directory of", e))?;
            }
        }
        let mut truncated = TRUNCATED.lock().unwrap_or_else(PoisonError::into_inner);
        let truncate = !self.append && !truncated.contains(&self.path);
        let mut opts = OpenOptions::new();
        opts.create(true);
        if truncate {
            opts.write(true).truncate(true);
        } else {
            opts.append(true);
        }
        let file = opts
            .open(&self.path)
            .map_err(|e| io_err("cannot open", e))?;
        if truncate {
            truncated.push(self.path.clone());
        }
        Ok(file)
    }

    /// Hands one rendered line to the writer thread.
    fn send(&mut self, render: impl FnOnce(&mut String)) -> Result<(), PluginError> {
        if let Some(err) = self.failure.error() {
            self.failure_returned = true;
            return Err(err);
        }
        let Some(writer) = &self.writer else {
            return Err(PluginError::new(
                ErrorKind::UNAVAILABLE,
                "the recorder is not started",
            ));
        };
        let mut line = writer
            .spare
            .try_recv()
            .unwrap_or_else(|_| String::with_capacity(1024));
        render(&mut line);
        line.push('\n');
        writer.lines.send(line).map_err(|_| {
            PluginError::new(ErrorKind::INTERNAL, "the recorder's writer thread is gone")
        })
    }

    /// Drains the channel, flushes and joins the writer thread.
    fn shut_down(&mut self) -> Result<(), PluginError> {
        let Some(Writer {
            lines,
            spare,
            thread,
        }) = self.writer.take()
        else {
            return Ok(());
        };
        drop(lines);
        drop(spare);
        let joined = thread.join();
        if joined.is_err() {
            return Err(PluginError::new(
                ErrorKind::PANIC,
                "the recorder's writer thread panicked",
            ));
        }
        match self.failure.error() {
            Some(err) if !self.failure_returned => {
                self.failure_returned = true;
                Err(err)
            }
            _ => Ok(()),
        }
    }
}

impl NewControl for Recorder {
    fn new(host: Host, settings: Settings) -> Result<Self, PluginError> {
        let s = RecorderSettings::from_settings(&settings)?;
        Ok(Self::with_logger(
            s.resolved_path(),
            s.append,
            move |level, msg| host.log(level, msg),
        ))
    }
}

impl Control for Recorder {
    fn start(&mut self, _snapshot: &DesktopSnapshot) -> Result<(), PluginError> {
        if self.writer.is_some() {
            return Ok(());
        }
        let file = self.open()?;
        let (lines, lines_rx) = crossbeam_channel::bounded::<String>(QUEUE_LINES);
        let (spare_tx, spare) = crossbeam_channel::bounded::<String>(RECYCLE_BUFFERS);
        let failure = Arc::clone(&self.failure);
        let log = Arc::clone(&self.log);
        let shown = self.path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("recorder-writer".into())
            .spawn(move || write_lines(file, &lines_rx, &spare_tx, &failure, &log, &shown))
            .map_err(|e| {
                PluginError::new(
                    ErrorKind::INTERNAL,
                    format!("cannot start the writer thread: {e}"),
                )
            })?;
        self.writer = Some(Writer {
            lines,
            spare,
            thread,
        });
        Ok(())
    }

    fn on_event(&mut self, event: &DesktopEvent) -> Result<(), PluginError> {
        self.send(|line| json::write_event(line, event))
    }

    fn resync(&mut self, snapshot: &DesktopSnapshot) -> Result<(), PluginError> {
        if self.writer.is_none() {
            self.start(snapshot)?;
        }
        self.send(|line| {
            line.push_str("{\"event\":\"Resync\",\"seq\":");
            line.push_str(&snapshot.seq.to_string());
            line.push_str(",\"snapshot\":");
            json::write_snapshot(line, snapshot);
            line.push('}');
        })
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        self.shut_down()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

/// The writer thread: writes lines until every sender is gone, flushing
/// whenever the channel is momentarily empty. After the first error it
/// reports once and discards the rest (so `on_event` never blocks on it).
fn write_lines(
    file: File,
    lines: &Receiver<String>,
    spare: &Sender<String>,
    failure: &Failure,
    log: &LogFn,
    path: &str,
) {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut ok = true;
    // `recv` hands out every queued line before it reports the disconnect.
    while let Ok(mut line) = lines.recv() {
        loop {
            if ok {
                if let Err(e) = out.write_all(line.as_bytes()) {
                    ok = false;
                    failure.set(format!("cannot write to {path}: {e}"), log);
                }
            }
            if line.capacity() <= RECYCLE_MAX_CAPACITY {
                line.clear();
                let _ = spare.try_send(line);
            }
            match lines.try_recv() {
                Ok(next) => line = next,
                Err(_) => break,
            }
        }
        if ok {
            if let Err(e) = out.flush() {
                ok = false;
                failure.set(format!("cannot write to {path}: {e}"), log);
            }
        }
    }
    if ok {
        if let Err(e) = out.flush() {
            failure.set(format!("cannot write to {path}: {e}"), log);
        }
    } else {
        // Drop what is buffered rather than let `BufWriter` retry on drop.
        let _ = out.into_parts();
    }
}

cti_plugin_api::export_plugin!(control = Recorder);

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use cti_plugin_api::{AgentView, WorkItemView, WorkState};
    use serde_json::Value;

    use super::*;

    fn snapshot(seq: u64) -> DesktopSnapshot {
        DesktopSnapshot {
            seq,
            agent: AgentView {
                agent_id: "1001".into(),
                state: AgentState::Ready,
                pending: ROption::RNone,
            },
            calls: RVec::new(),
            sessions: RVec::new(),
            plugins: RVec::new(),
            reason_codes: RVec::from(vec![RString::from("Break")]),
            dispositions: RVec::new(),
        }
    }

    fn call_event(seq: u64, kind: EventKind, state: ConnectionState) -> DesktopEvent {
        let call = CallView {
            call_id: "c-1".into(),
            connector: "sim".into(),
            channel: "voice".into(),
            direction: Direction::Inbound,
            ani: "5551234".into(),
            dnis: "8000".into(),
            state,
            parties: RVec::new(),
            allowed: Capabilities::of(CommandKind::HANGUP),
            muted: false,
            data: RVec::new(),
            started_ms: 1,
            answered_ms: 0,
            work: WorkItemView {
                state: WorkState::ACTIVE,
                wrap_up_remaining_ms: 0,
                wrap_up_unlimited: false,
                disposition: RString::new(),
            },
            attrs: RVec::new(),
        };
        DesktopEvent {
            seq,
            kind,
            time_ms: 1000 + seq,
            call: ROption::RSome(RArc::new(call)),
            agent: ROption::RNone,
            session: ROption::RNone,
            previous_state: ConnectionState::Alerting,
            source: "sim".into(),
            party: RString::new(),
            cause: RString::new(),
            text: RString::new(),
            request_id: 0,
            attrs: RVec::new(),
        }
    }

    type Logged = Arc<Mutex<Vec<(LogLevel, String)>>>;

    fn recorder(path: &Path, append: bool) -> (Recorder, Logged) {
        let logged: Logged = Arc::default();
        let sink = Arc::clone(&logged);
        let r = Recorder::with_logger(path, append, move |level, msg| {
            sink.lock().unwrap().push((level, msg.to_owned()));
        });
        (r, logged)
    }

    fn read_lines(path: &Path) -> Vec<Value> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn records_events_and_resync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/events.jsonl");
        let (mut r, logged) = recorder(&path, false);
        r.start(&snapshot(0)).unwrap();
        r.on_event(&call_event(
            1,
            EventKind::ESTABLISHED,
            ConnectionState::Connected,
        ))
        .unwrap();
        r.resync(&snapshot(5)).unwrap();
        for seq in 6..2006 {
            r.on_event(&call_event(seq, EventKind::HELD, ConnectionState::Held))
                .unwrap();
        }
        r.stop().unwrap();
        // A second stop is harmless; events after stop are refused.
        r.stop().unwrap();
        assert!(r
            .on_event(&call_event(9999, EventKind::HELD, ConnectionState::Held))
            .is_err());

        let lines = read_lines(&path);
        assert_eq!(lines.len(), 2002);
        assert_eq!(lines[0]["event"], "Established");
        assert_eq!(lines[0]["seq"], 1);
        assert_eq!(lines[0]["state"], "Connected");
        assert_eq!(lines[0]["previous_state"], "Alerting");
        assert_eq!(lines[0]["call"]["allowed"], serde_json::json!(["Hangup"]));
        assert_eq!(lines[1]["event"], "Resync");
        assert_eq!(lines[1]["seq"], 5);
        assert_eq!(lines[1]["snapshot"]["seq"], 5);
        assert_eq!(lines[1]["snapshot"]["agent"]["state"], "Ready");
        for (i, l) in lines[2..].iter().enumerate() {
            assert_eq!(l["seq"], 6 + i as u64);
        }
        assert!(logged.lock().unwrap().is_empty());
    }

    #[test]
    fn flushes_when_idle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tail.jsonl");
        let (mut r, _) = recorder(&path, false);
        r.start(&snapshot(0)).unwrap();
        for seq in 1..=3 {
            r.on_event(&call_event(seq, EventKind::HELD, ConnectionState::Held))
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let text = fs::read_to_string(&path).unwrap();
                if text.lines().count() == seq as usize && text.ends_with('\n') {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "event {seq} never reached the file"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        r.stop().unwrap();
    }

    #[test]
    fn truncates_once_then_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        fs::write(&path, "old line\n").unwrap();

        let (mut r, _) = recorder(&path, false);
        r.start(&snapshot(0)).unwrap();
        r.on_event(&call_event(1, EventKind::HELD, ConnectionState::Held))
            .unwrap();
        r.stop().unwrap();
        assert_eq!(read_lines(&path).len(), 1);

        // A restarted instance in the same process keeps the recording.
        let (mut r, _) = recorder(&path, false);
        r.start(&snapshot(1)).unwrap();
        r.on_event(&call_event(
            2,
            EventKind::RETRIEVED,
            ConnectionState::Connected,
        ))
        .unwrap();
        drop(r); // Drop drains like stop.
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["event"], "Retrieved");
    }

    #[test]
    fn append_keeps_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        fs::write(&path, "{\"old\":true}\n").unwrap();
        let (mut r, _) = recorder(&path, true);
        r.start(&snapshot(0)).unwrap();
        r.on_event(&call_event(1, EventKind::HELD, ConnectionState::Held))
            .unwrap();
        r.stop().unwrap();
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["old"], true);
    }

    #[test]
    fn write_error_is_logged_once_and_returned() {
        let path = Path::new("/dev/full");
        if !path.exists() {
            return;
        }
        let (mut r, logged) = recorder(path, true);
        r.start(&snapshot(0)).unwrap();
        let ev = call_event(1, EventKind::HELD, ConnectionState::Held);
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = loop {
            match r.on_event(&ev) {
                Ok(()) => {
                    assert!(Instant::now() < deadline, "the write error never surfaced");
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind, ErrorKind::INTERNAL);
        assert!(err.message.contains("/dev/full"), "{err}");
        assert!(r.on_event(&ev).is_err());
        // Already returned: stop itself succeeds.
        r.stop().unwrap();
        let logged = logged.lock().unwrap();
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!(logged[0].0, LogLevel::Error);
    }

    #[test]
    fn not_started() {
        let dir = tempfile::tempdir().unwrap();
        let (mut r, _) = recorder(&dir.path().join("x.jsonl"), false);
        let err = r
            .on_event(&call_event(1, EventKind::HELD, ConnectionState::Held))
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::UNAVAILABLE);
        r.stop().unwrap();
    }

    #[test]
    fn settings() {
        let s = RecorderSettings::from_settings(&Settings::from_toml(
            "path = \"out/events.jsonl\"\nappend = true\n",
        ))
        .unwrap();
        assert!(s.append);
        assert!(s.resolved_path().is_absolute());
        assert!(s.resolved_path().ends_with("out/events.jsonl"));

        let s = RecorderSettings::from_settings(&Settings::from_toml("path = \"/tmp/x\"")).unwrap();
        assert!(!s.append);
        assert_eq!(s.resolved_path(), PathBuf::from("/tmp/x"));

        for bad in ["", "append = true", "path = 3", "path = \"x\"\npth = 1"] {
            let err = RecorderSettings::from_settings(&Settings::from_toml(bad)).unwrap_err();
            assert_eq!(err.kind, ErrorKind::BAD_SETTINGS, "{bad}: {err}");
        }
    }
}
