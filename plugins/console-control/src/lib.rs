//! `console-control`: the agent's terminal toolbar.
//!
//! Prints one line per desktop event to stdout and reads keys from stdin
//! (type a key and Enter; several keys per line are fine):
//!
//! | key | does |
//! |-----|------|
//! | `a` / `aN` | answer the ringing call / call N |
//! | `x` / `xN` | reject |
//! | `h` / `hN` | hang up the current call |
//! | `o` / `oN` | hold or retrieve |
//! | `m` / `mN` | mute or unmute |
//! | `w` / `wN` | end wrap-up |
//! | `d <number>` | dial |
//! | `t <number>` / `tN <number>` | blind transfer |
//! | `s <text>` / `sN <text>` | reply on the current chat / chat N (the rest of the line is the message) |
//! | `r` / `n [reason]` / `l` | Ready / NotReady / LoggedOut |
//! | `?` | help |
//!
//! Chats show as a transcript: `#2 MessageReceived alice@example.com: Hi`,
//! `#2 MessageSent you: Hello`, `alice@example.com is composing`,
//! `alice@example.com left`.
//!
//! Calls are numbered from 1 in the order they appear; a number stays with
//! its call until the desktop removes it (`CallRemoved`), then is reused.
//! The *current* call is the most recent one in `Connected`/`Held`, else
//! the most recent one.
//!
//! # Settings
//! - `read_stdin` (bool, default `true`): read keys from stdin.
//! - `color` (`"auto"`, `"always"`, `"never"`; default `"auto"`): ANSI
//!   colours; `auto` colours only when stdout is a terminal (and neither
//!   `NO_COLOR` is set nor `TERM=dumb`).
//!
//! # Threads
//! Stdin is read by one thread per process, shared by every instance: a
//! control restarted by the supervisor takes the keyboard over without an
//! old reader swallowing the next line. `stop` never waits for that thread
//! (it may be blocked in `read`); it only detaches. End of input or a read
//! error ends the thread quietly; the console keeps printing. Write errors
//! on stdout (a closed pipe) are ignored.
#![deny(unsafe_code)]

mod desk;
mod keys;

use std::{
    io::{BufRead, IsTerminal, Write},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use cti_plugin_api::sdk::prelude::*;
use serde::Deserialize;

pub use desk::{clock, Desk, Request};
pub use keys::{parse_line, Key, KeyError};

/// Submits a command (the host in production, a closure in tests).
pub type SubmitFn = Arc<dyn Fn(Command) -> Result<u64, PluginError> + Send + Sync>;
/// Logs through the host.
pub type LogFn = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;
/// Where the console prints (stdout in production).
pub type Output = Box<dyn Write + Send>;

/// When to use ANSI colours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorMode {
    /// When stdout is a terminal.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorMode {
    /// Decides for stdout.
    pub fn resolve(self) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => {
                let no_color = matches!(std::env::var_os("NO_COLOR"), Some(v) if !v.is_empty());
                let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
                std::io::stdout().is_terminal() && !no_color && !dumb
            }
        }
    }
}

/// The console's settings table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Read keys from stdin.
    pub read_stdin: bool,
    /// ANSI colours.
    pub color: ColorMode,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            read_stdin: true,
            color: ColorMode::Auto,
        }
    }
}

/// What the event thread and the stdin thread share.
struct Shared {
    desk: Mutex<Desk>,
    out: Mutex<Output>,
    /// Cleared by `stop`: a line read afterwards submits nothing.
    active: AtomicBool,
    submit: SubmitFn,
    log: LogFn,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Shared {
    /// Prints lines; write errors (closed pipe…) are ignored.
    fn print<S: AsRef<str>>(&self, lines: &[S]) {
        let mut out = lock(&self.out);
        for line in lines {
            let _ = out.write_all(line.as_ref().as_bytes());
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }

    /// Prints a line of the console's own (`>` request sent, `!` problem).
    fn note(&self, mark: char, text: &str) {
        let mut line = String::with_capacity(16 + text.len());
        clock(&mut line, now_ms());
        line.push_str("     ");
        line.push(mark);
        line.push(' ');
        line.push_str(text);
        self.print(&[line]);
    }

    /// Carries out one line the agent typed.
    fn handle_line(&self, line: &str) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let keys = match parse_line(line) {
            Ok(keys) => keys,
            Err(e) => {
                self.note('!', &e.0);
                return;
            }
        };
        for key in keys {
            let req = lock(&self.desk).request(&key);
            let req = match req {
                Ok(Some(req)) => req,
                Ok(None) => {
                    let help = lock(&self.desk).help();
                    self.print(&help);
                    continue;
                }
                Err(msg) => {
                    self.note('!', &msg);
                    return; // Skip the rest of the line: it may depend on this key.
                }
            };
            if !self.active.load(Ordering::Acquire) {
                return;
            }
            match (self.submit)(req.command) {
                Ok(id) => {
                    self.note('>', &format!("{} (request {id})", req.label));
                    lock(&self.desk).remember(id, req.label);
                }
                Err(e) => {
                    self.note('!', &format!("{}: {e}", req.label));
                    return;
                }
            }
        }
    }
}

/// The process's stdin reader and the console instance it feeds.
struct Hub {
    sink: Option<(u64, Arc<Shared>)>,
    reader: Reader,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reader {
    Idle,
    Running,
    Closed,
}

static HUB: Mutex<Hub> = Mutex::new(Hub {
    sink: None,
    reader: Reader::Idle,
});
static NEXT_SINK: AtomicU64 = AtomicU64::new(1);

/// Makes `shared` the receiver of stdin lines, starting the reader thread
/// if needed. Returns the id to detach with.
fn attach(shared: &Arc<Shared>) -> u64 {
    let id = NEXT_SINK.fetch_add(1, Ordering::Relaxed);
    let mut hub = lock(&HUB);
    hub.sink = Some((id, Arc::clone(shared)));
    match hub.reader {
        Reader::Running => {}
        Reader::Closed => (shared.log)(LogLevel::Debug, "stdin is closed: keyboard input is off"),
        Reader::Idle => {
            let spawned = std::thread::Builder::new()
                .name("console-stdin".into())
                .spawn(read_stdin);
            match spawned {
                // Detached: it may block in `read` for the life of the process.
                Ok(_) => hub.reader = Reader::Running,
                Err(e) => (shared.log)(
                    LogLevel::Warn,
                    &format!("cannot start the stdin reader ({e}): keyboard input is off"),
                ),
            }
        }
    }
    id
}

fn detach(id: u64) {
    let mut hub = lock(&HUB);
    if hub.sink.as_ref().is_some_and(|(i, _)| *i == id) {
        hub.sink = None;
    }
}

fn current_sink() -> Option<Arc<Shared>> {
    lock(&HUB).sink.as_ref().map(|(_, s)| Arc::clone(s))
}

/// The stdin reader thread.
fn read_stdin() {
    let stdin = std::io::stdin();
    let mut buf = Vec::with_capacity(256);
    let why = loop {
        buf.clear();
        match stdin.lock().read_until(b'\n', &mut buf) {
            Ok(0) => break "end of input".to_owned(),
            Ok(_) => {}
            Err(e) => break format!("read error: {e}"),
        }
        if let Some(sink) = current_sink() {
            sink.handle_line(&String::from_utf8_lossy(&buf));
        }
    };
    let sink = {
        let mut hub = lock(&HUB);
        hub.reader = Reader::Closed;
        hub.sink.as_ref().map(|(_, s)| Arc::clone(s))
    };
    if let Some(sink) = sink {
        (sink.log)(
            LogLevel::Info,
            &format!("stdin closed ({why}): keyboard input is off"),
        );
    }
}

/// The console control.
pub struct Console {
    shared: Arc<Shared>,
    read_stdin: bool,
    input: Option<u64>,
}

impl Console {
    /// A console printing to `out`, submitting through `submit`. With
    /// `read_stdin`, `start` attaches it to the process's stdin reader.
    pub fn with_parts(
        agent_id: &str,
        read_stdin: bool,
        color: bool,
        out: Output,
        submit: SubmitFn,
        log: LogFn,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                desk: Mutex::new(Desk::new(agent_id, color)),
                out: Mutex::new(out),
                active: AtomicBool::new(true),
                submit,
                log,
            }),
            read_stdin,
            input: None,
        }
    }

    /// Carries out a line of keys as if typed on stdin.
    pub fn handle_line(&self, line: &str) {
        self.shared.handle_line(line);
    }

    fn detach_input(&mut self) {
        if let Some(id) = self.input.take() {
            detach(id);
        }
    }
}

impl NewControl for Console {
    fn new(host: Host, settings: Settings) -> Result<Self, PluginError> {
        let s: ConsoleSettings = settings.parse()?;
        let agent_id = host.hosted().agent_id.into_string();
        let submit_host = host.clone();
        Ok(Self::with_parts(
            &agent_id,
            s.read_stdin,
            s.color.resolve(),
            Box::new(std::io::stdout()),
            Arc::new(move |command| submit_host.submit(command)),
            Arc::new(move |level, msg| host.log(level, msg)),
        ))
    }
}

impl Control for Console {
    fn start(&mut self, snapshot: &DesktopSnapshot) -> Result<(), PluginError> {
        let lines = {
            let mut desk = lock(&self.shared.desk);
            desk.reset(snapshot);
            let mut lines = vec![desk.header()];
            lines.extend(desk.call_lines());
            lines
        };
        self.shared.active.store(true, Ordering::Release);
        self.shared.print(&lines);
        if self.read_stdin && self.input.is_none() {
            self.input = Some(attach(&self.shared));
        }
        Ok(())
    }

    fn on_event(&mut self, event: &DesktopEvent) -> Result<(), PluginError> {
        let line = lock(&self.shared.desk).on_event(event);
        self.shared.print(&[line]);
        Ok(())
    }

    fn resync(&mut self, snapshot: &DesktopSnapshot) -> Result<(), PluginError> {
        let lines = {
            let mut desk = lock(&self.shared.desk);
            desk.reset(snapshot);
            let mut lines = vec![format!(
                "-- resynchronised at seq {} (events were missed) | agent {}",
                snapshot.seq,
                desk.agent().state
            )];
            lines.extend(desk.call_lines());
            lines
        };
        self.shared.print(&lines);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        self.shared.active.store(false, Ordering::Release);
        self.detach_input();
        Ok(())
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.shared.active.store(false, Ordering::Release);
        self.detach_input();
    }
}

cti_plugin_api::export_plugin!(control = Console);

#[cfg(test)]
mod tests;
