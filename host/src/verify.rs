//! `cti-host verify LIBRARY`: the conformance suite for connector libraries.
//!
//! It loads the library exactly as the host does (private copy, ELF and ABI
//! checks, strict permissions, [`loader::load`]), builds a connector with a
//! [`HostCtx`] whose inbox it reads itself (so it sees every event the
//! connector raises), runs it on a worker thread (every call has a time
//! limit, so a hung plugin cannot hang the suite) and checks, each as one
//! row of the report:
//!
//! - **library loads** and **plugin info complete**: name, semver version,
//!   description, kinds with `connector`, a compatible plugin-api;
//! - **builds**, **start**;
//! - **each declared command works**, walked through in a sensible order on
//!   the calls the connector offers: `Answer` (or `Reject`) a ringing call;
//!   `Hold`, `Retrieve`, `SendDtmf "1"`, `Mute`, `Unmute`, `SendMessage`,
//!   `SendTyping` on the connected call; `Consult` + `Alternate` +
//!   `CancelConsult`, `Conference`, `CompleteTransfer`; `MakeCall
//!   +15550100`; `BlindTransfer`; `Reject` on a second ringing call;
//!   `SetAgentState`; `Hangup` last. Each waits for the event the command
//!   must cause. A command that needs a call nobody offered is reported
//!   *skipped*, not passed;
//! - **undeclared commands are refused**: every call-control code the
//!   connector does not declare must fail with `Unsupported` (an `Ok` names
//!   the command and fails the row);
//! - **events in a valid CSTA order** ([`CstaChecker`]): no event for a call
//!   never introduced by `Delivered`/`Originated` carrying the call, none
//!   after its `CallCleared`, each state consistent with its event;
//! - **no call forgotten**: a call introduced is cleared before the
//!   connector stops, or still listed by `calls()`;
//! - **stop within 2 s**, on a helper thread;
//! - **no panic**: any method that came back with a `Panic` error (the
//!   SDK's catch_unwind) fails the row, naming the method.
//!
//! The connector is built in the SDK's **test mode**:
//! [`cti_plugin_api::sdk::TEST_MODE_KEY`]` = true` is merged into the
//! settings (see its documentation for what a connector promises then). A
//! plugin built with an SDK that does not strip the key and refuses it as
//! unknown is built again without it.

use std::{
    collections::HashMap,
    fmt,
    path::Path,
    process::ExitCode,
    sync::{atomic::AtomicU64, Arc},
    time::{Duration, Instant},
};

use abi_stable::std_types::{ROption, RString};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use cti_plugin_api::{
    sdk::TEST_MODE_KEY, AgentState, CallInfo, Capabilities, Command, CommandKind, ConnectionModel,
    ConnectionState, ConnectorBox, ConnectorEvent, Direction, ErrorKind, EventKind, HostedInfo,
    Outcome, PluginError, PluginKinds,
};
use serde_json::json;

use crate::{
    app,
    desktop::DesktopMsg,
    loader::{self, Library},
    plugin::{HostCtx, PluginId},
};

/// The number `MakeCall` dials.
pub const DIAL_NUMBER: &str = "+15550100";
/// The target of transfers and consultations.
pub const TRANSFER_TARGET: &str = "+15550101";
/// The call-control codes a connector may declare (`Answer` … `SendTyping`).
pub const CALL_CONTROL_CODES: std::ops::Range<u16> = 0..18;

/// Time limits of the suite.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long to wait for the first inbound call after `start`.
    pub first_call: Duration,
    /// How long to wait for a second inbound call (for `Reject`).
    pub second_call: Duration,
    /// How long to wait for the event a command must cause.
    pub event: Duration,
    /// How long `start` or `execute` may take.
    pub call: Duration,
    /// How long `stop` may take.
    pub stop: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            first_call: Duration::from_secs(5),
            second_call: Duration::from_secs(2),
            event: Duration::from_secs(3),
            call: Duration::from_secs(5),
            stop: Duration::from_secs(2),
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// It held.
    Pass,
    /// It did not.
    Fail,
    /// It could not be exercised (the detail says why).
    Skip,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Row {
    /// The check's name (`Answer`, `events in valid CSTA order`…).
    pub check: String,
    /// Pass, fail or skip.
    pub status: Status,
    /// What was seen, or why it failed or was skipped.
    pub detail: String,
}

/// The whole report.
#[derive(Debug, Clone)]
pub struct Report {
    /// The library checked.
    pub library: String,
    /// `name version` of the plugin, when it loaded.
    pub plugin: Option<String>,
    /// SHA-256 of the library, when it loaded.
    pub sha256: Option<String>,
    /// Whether the connector accepted the test-mode key.
    pub test_mode: Option<bool>,
    /// The connection model it ran in.
    pub connection: ConnectionModel,
    /// The rows, in order.
    pub rows: Vec<Row>,
}

impl Default for Report {
    fn default() -> Self {
        Self {
            library: String::new(),
            plugin: None,
            sha256: None,
            test_mode: None,
            connection: ConnectionModel::Instance,
            rows: Vec::new(),
        }
    }
}

fn model_name(m: ConnectionModel) -> &'static str {
    match m {
        ConnectionModel::Instance => "instance",
        ConnectionModel::Polling => "polling",
    }
}

impl Report {
    fn row(&mut self, check: impl Into<String>, status: Status, detail: impl Into<String>) {
        self.rows.push(Row {
            check: check.into(),
            status,
            detail: detail.into(),
        });
    }

    fn pass(&mut self, check: impl Into<String>, detail: impl Into<String>) {
        self.row(check, Status::Pass, detail);
    }

    fn fail(&mut self, check: impl Into<String>, detail: impl Into<String>) {
        self.row(check, Status::Fail, detail);
    }

    fn skip(&mut self, check: impl Into<String>, detail: impl Into<String>) {
        self.row(check, Status::Skip, detail);
    }

    /// True when no row failed.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.status != Status::Fail)
    }

    /// The rows that failed.
    pub fn failures(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.status == Status::Fail)
            .collect()
    }

    /// The row named `check`, if any.
    pub fn get(&self, check: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.check == check)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let count = |s| self.rows.iter().filter(|r| r.status == s).count();
        json!({
            "library": self.library,
            "plugin": self.plugin,
            "sha256": self.sha256,
            "test_mode": self.test_mode,
            "connection": model_name(self.connection),
            "passed": self.passed(),
            "counts": {"pass": count(Status::Pass), "fail": count(Status::Fail), "skip": count(Status::Skip)},
            "checks": self.rows.iter().map(|r| json!({
                "check": r.check,
                "status": match r.status { Status::Pass => "pass", Status::Fail => "fail", Status::Skip => "skip" },
                "detail": r.detail,
            })).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "cti-host verify {}", self.library)?;
        if let Some(p) = &self.plugin {
            writeln!(f, "plugin:    {p}")?;
        }
        if let Some(h) = &self.sha256 {
            writeln!(f, "sha256:    {h}")?;
        }
        writeln!(f, "model:     {}", model_name(self.connection))?;
        if let Some(t) = self.test_mode {
            writeln!(
                f,
                "test mode: {}",
                if t {
                    "requested (cti_test_mode = true)"
                } else {
                    "refused by the plugin's settings; ran without it"
                }
            )?;
        }
        writeln!(f)?;
        let width = self
            .rows
            .iter()
            .map(|r| r.check.chars().count())
            .max()
            .unwrap_or(0);
        for r in &self.rows {
            writeln!(
                f,
                "  {:<4}  {:<width$}  {}",
                r.status.name(),
                r.check,
                r.detail
            )?;
        }
        let count = |s| self.rows.iter().filter(|r| r.status == s).count();
        let failed: Vec<&str> = self.failures().iter().map(|r| r.check.as_str()).collect();
        writeln!(f)?;
        if failed.is_empty() {
            write!(
                f,
                "result: PASS ({} checks passed, {} skipped)",
                count(Status::Pass),
                count(Status::Skip)
            )
        } else {
            write!(
                f,
                "result: FAIL ({} of {} checks failed: {})",
                failed.len(),
                self.rows.len(),
                failed.join(", ")
            )
        }
    }
}

/// Runs the suite; prints a pass/fail table (or JSON); exit 0 only when
/// every check passed, 1 when one failed, 2 for unusable settings. With
/// `polling`, the connector runs in the polling model (the host calls
/// `poll` every 100 ms) instead of the instance model.
pub fn main(library: &Path, settings: &str, json: bool, polling: bool) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    if let Err(e) = settings.parse::<toml::Table>() {
        eprintln!("--settings is not a TOML table: {}", e.message().trim());
        return ExitCode::from(2);
    }
    let model = if polling {
        ConnectionModel::Polling
    } else {
        ConnectionModel::Instance
    };
    let report = run(library, settings, &Limits::default(), model);
    if json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The poll interval in the polling model.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Runs the whole suite against `library` with `settings` (TOML text), the
/// connector in connection model `model`.
pub fn run(library: &Path, settings: &str, limits: &Limits, model: ConnectionModel) -> Report {
    let mut report = Report {
        library: library.display().to_string(),
        connection: model,
        ..Report::default()
    };
    let shadow = match loader::ShadowDir::create() {
        Ok(s) => s,
        Err(e) => {
            report.fail(
                "library loads",
                format!("cannot create the runtime directory: {e}"),
            );
            return report;
        }
    };
    let lib = match loader::load(library, &shadow) {
        Ok(l) => l,
        Err(e) => {
            report.fail("library loads", e.reason);
            return report;
        }
    };
    report.plugin = Some(format!("{} {}", lib.meta.name, lib.meta.version));
    report.sha256 = lib.sha256().ok();
    report.pass(
        "library loads",
        format!(
            "ELF, ABI layout and plugin-api {} checked",
            lib.meta.api_version
        ),
    );
    if !check_info(&lib, &mut report) {
        return report;
    }
    Suite::run(&lib, settings, limits, model, &mut report);
    report
}

/// The info row; false when the library has no connector to go on with.
fn check_info(lib: &Library, report: &mut Report) -> bool {
    let m = &lib.meta;
    let mut problems = Vec::new();
    if m.name.trim().is_empty() {
        problems.push("name is empty".to_owned());
    }
    if m.description.trim().is_empty() {
        problems.push("description is empty".to_owned());
    }
    let connector = m.kinds.contains(PluginKinds::CONNECTOR);
    if !connector {
        problems.push(format!(
            "kinds is [{}], not a connector",
            m.kinds.names().join(", ")
        ));
    }
    let unknown: Vec<String> = m
        .capabilities
        .kinds()
        .filter(|k| !CALL_CONTROL_CODES.contains(&k.0))
        .map(|k| k.to_string())
        .collect();
    if !unknown.is_empty() {
        problems.push(format!(
            "declares capabilities that are no call-control command: {}",
            unknown.join(", ")
        ));
    }
    if problems.is_empty() {
        report.pass(
            "plugin info complete",
            format!(
                "{} {}, plugin-api {}, capabilities: {}",
                m.name,
                m.version,
                m.api_version,
                names(m.capabilities)
            ),
        );
    } else {
        report.fail("plugin info complete", problems.join("; "));
    }
    connector
}

fn names(caps: Capabilities) -> String {
    let v: Vec<String> = caps.kinds().map(|k| k.to_string()).collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

// ------------------------------------------------------------------ worker

type Job = Box<dyn FnOnce(&mut ConnectorBox) + Send>;

/// Runs the connector's methods on its own thread, each with a time limit;
/// in the polling model it also calls `poll` every [`POLL_INTERVAL`] and
/// hands the events (or the error) to the inbox, as the host's worker does.
struct Worker {
    tx: Option<Sender<Job>>,
    /// The call that never returned; nothing more is sent after it.
    hung: Option<String>,
    /// Cleared (on the worker thread) just before `stop`: no poll after it.
    polling: Arc<std::sync::atomic::AtomicBool>,
}

impl Worker {
    fn spawn(
        connector: ConnectorBox,
        poll_to: Option<Sender<DesktopMsg>>,
    ) -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let polling = Arc::new(AtomicBool::new(poll_to.is_some()));
        let on = Arc::clone(&polling);
        std::thread::Builder::new()
            .name("verify:connector".into())
            .spawn(move || {
                let mut c = connector;
                let mut next = Instant::now() + POLL_INTERVAL;
                loop {
                    let job = match &poll_to {
                        Some(inbox) if on.load(Ordering::Relaxed) => match rx.recv_deadline(next) {
                            Ok(job) => job,
                            Err(RecvTimeoutError::Disconnected) => break,
                            Err(RecvTimeoutError::Timeout) => {
                                next = (next + POLL_INTERVAL).max(Instant::now());
                                let msg = match c.poll() {
                                    abi_stable::std_types::RResult::ROk(evs) if evs.is_empty() => {
                                        continue
                                    }
                                    abi_stable::std_types::RResult::ROk(evs) => {
                                        DesktopMsg::Events {
                                            connector: 0,
                                            events: evs.into_vec(),
                                        }
                                    }
                                    abi_stable::std_types::RResult::RErr(error) => {
                                        DesktopMsg::PluginFault {
                                            plugin: PluginId::Connector(0),
                                            during: "poll",
                                            error,
                                        }
                                    }
                                };
                                let _ = inbox.send(msg);
                                continue;
                            }
                        },
                        _ => match rx.recv() {
                            Ok(job) => job,
                            Err(_) => break,
                        },
                    };
                    job(&mut c);
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            hung: None,
            polling,
        })
    }

    fn call<R: Send + 'static>(
        &mut self,
        what: &str,
        limit: Duration,
        f: impl FnOnce(&mut ConnectorBox) -> R + Send + 'static,
    ) -> Result<R, String> {
        if let Some(h) = &self.hung {
            return Err(format!("not called: {h} never returned"));
        }
        let Some(tx) = &self.tx else {
            return Err("not called: the connector is stopped".to_owned());
        };
        let (rtx, rrx) = crossbeam_channel::bounded(1);
        let job: Job = Box::new(move |c| {
            let _ = rtx.send(f(c));
        });
        if tx.send(job).is_err() {
            return Err("the connector's thread is gone".to_owned());
        }
        match rrx.recv_timeout(limit) {
            Ok(r) => Ok(r),
            Err(RecvTimeoutError::Timeout) => {
                self.hung = Some(what.to_owned());
                Err(format!("{what} did not return within {limit:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => Err("the connector's thread is gone".to_owned()),
        }
    }

    /// Ends the thread (dropping the connector) once the queue is empty.
    fn close(&mut self) {
        self.tx = None;
    }
}

// ------------------------------------------------------------------ CSTA order

#[derive(Debug, Clone)]
struct Track {
    state: ConnectionState,
    direction: Direction,
    cleared: bool,
}

/// Checks that connector events come in a valid CSTA order.
#[derive(Debug, Default)]
pub struct CstaChecker {
    calls: HashMap<String, Track>,
    order: Vec<String>,
    violations: Vec<String>,
}

fn allowed_states(kind: EventKind) -> Option<&'static [ConnectionState]> {
    use ConnectionState as S;
    const LIVE: &[ConnectionState] = &[S::Initiated, S::Alerting, S::Connected, S::Held, S::Queued];
    Some(match kind {
        EventKind::DELIVERED => &[S::Alerting, S::Initiated, S::Queued],
        EventKind::ORIGINATED => &[S::Initiated, S::Connected],
        EventKind::ESTABLISHED | EventKind::RETRIEVED => &[S::Connected],
        EventKind::HELD => &[S::Held],
        EventKind::CONNECTION_CLEARED => &[
            S::Null,
            S::Initiated,
            S::Alerting,
            S::Connected,
            S::Held,
            S::Queued,
        ],
        EventKind::CALL_CLEARED => &[S::Null],
        EventKind::FAILED => &[S::Failed, S::Null],
        EventKind::QUEUED => &[S::Queued, S::Alerting],
        EventKind::NETWORK_REACHED => &[S::Initiated, S::Connected, S::Alerting],
        // Null: the agent's connection to a call merged away ends.
        EventKind::CONFERENCED => &[S::Connected, S::Held, S::Null],
        EventKind::TRANSFERRED => return None,
        _ => LIVE,
    })
}

impl CstaChecker {
    /// Checks one event and records what it says.
    pub fn on_event(&mut self, ev: &ConnectorEvent) {
        let kind = ev.kind;
        if kind.known_name().is_none() {
            return; // a code from a newer plugin-api: not judged
        }
        if !kind.connector_may_raise() {
            self.violation(format!(
                "raised {kind}, an event only the desktop may raise"
            ));
            return;
        }
        if kind == EventKind::CALL_UPDATED && ev.call.is_none() {
            self.violation(format!(
                "CallUpdated for call {} carries no call (CallInfo) to update",
                ev.call_id
            ));
            return;
        }
        match kind {
            EventKind::LINK_UP | EventKind::LINK_DOWN | EventKind::LINK_RECONNECTING => return,
            EventKind::AGENT_STATE_CHANGED => {
                if ev.agent_state.is_none() {
                    self.violation("AgentStateChanged without agent_state".to_owned());
                }
                return;
            }
            _ => {}
        }
        let id = ev.call_id.as_str();
        if id.is_empty() {
            self.violation(format!("{kind} without a call id"));
            return;
        }
        let introduces = matches!(kind, EventKind::DELIVERED | EventKind::ORIGINATED);
        match self.calls.get(id) {
            None => {
                let ROption::RSome(info) = &ev.call else {
                    self.violation(if introduces {
                        format!("{kind} for call {id}, which is new, carries no call (CallInfo)")
                    } else {
                        format!(
                            "{kind} for unknown call {id} (never introduced by Delivered or Originated)"
                        )
                    });
                    return;
                };
                if !introduces && kind != EventKind::QUEUED {
                    self.violation(format!(
                        "{kind} for unknown call {id} (never introduced by Delivered or Originated)"
                    ));
                    return;
                }
                if info.call_id != ev.call_id {
                    self.violation(format!(
                        "{kind} for call {id} carries a call with another id ({})",
                        info.call_id
                    ));
                }
                self.calls.insert(
                    id.to_owned(),
                    Track {
                        state: ev.state,
                        direction: info.direction,
                        cleared: false,
                    },
                );
                self.order.push(id.to_owned());
            }
            Some(t) if t.cleared => {
                self.violation(format!("{kind} for call {id} after its CallCleared"));
                return;
            }
            Some(_) => {}
        }
        if let Some(states) = allowed_states(kind) {
            if !states.contains(&ev.state) {
                let want: Vec<&str> = states.iter().map(|s| s.name()).collect();
                self.violation(format!(
                    "{kind} on call {id} with state {} (expected {})",
                    ev.state,
                    want.join(" or ")
                ));
            }
        }
        if let Some(t) = self
            .calls
            .get_mut(id)
            .filter(|_| kind != EventKind::CALL_UPDATED)
        {
            t.state = ev.state;
            if kind == EventKind::CALL_CLEARED {
                t.cleared = true;
            }
        }
    }

    fn violation(&mut self, v: String) {
        if !self.violations.contains(&v) {
            self.violations.push(v);
        }
    }

    /// What was wrong so far.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// The calls introduced and not cleared, oldest first.
    pub fn open_calls(&self) -> Vec<String> {
        self.order
            .iter()
            .filter(|id| self.calls.get(*id).is_some_and(|t| !t.cleared))
            .cloned()
            .collect()
    }

    /// True when `id` was introduced.
    pub fn knows(&self, id: &str) -> bool {
        self.calls.contains_key(id)
    }

    fn state(&self, id: &str) -> Option<ConnectionState> {
        self.calls.get(id).filter(|t| !t.cleared).map(|t| t.state)
    }

    fn ringing_inbound(&self, except: &[&str]) -> Option<String> {
        self.order
            .iter()
            .find(|id| {
                !except.contains(&id.as_str())
                    && self.calls.get(*id).is_some_and(|t| {
                        !t.cleared
                            && t.direction == Direction::Inbound
                            && t.state == ConnectionState::Alerting
                    })
            })
            .cloned()
    }
}

// ------------------------------------------------------------------ events

/// Every event the connector raised, in order, checked as it arrives.
struct Events {
    rx: Receiver<DesktopMsg>,
    seen: Vec<ConnectorEvent>,
    csta: CstaChecker,
    submits: usize,
    /// Errors of `poll` (polling model): (method, error).
    faults: Vec<(String, PluginError)>,
}

impl Events {
    fn take(&mut self, msg: DesktopMsg) {
        match msg {
            DesktopMsg::Event { event, .. } => self.push(event),
            DesktopMsg::Events { events, .. } => events.into_iter().for_each(|e| self.push(e)),
            DesktopMsg::Submit { .. } => self.submits += 1,
            DesktopMsg::PluginFault { during, error, .. } => {
                self.faults.push((during.to_owned(), error));
            }
            _ => {}
        }
    }

    fn push(&mut self, ev: ConnectorEvent) {
        self.csta.on_event(&ev);
        self.seen.push(ev);
    }

    /// Takes what has arrived, waiting at most `d`.
    fn pump(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(msg) = self.rx.recv_deadline(deadline) {
            self.take(msg);
        }
    }

    fn drain(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            self.take(msg);
        }
    }

    /// The first event from index `from` on matching `pred`, waiting up to
    /// `limit` for it.
    fn wait(
        &mut self,
        from: usize,
        limit: Duration,
        pred: impl Fn(&ConnectorEvent) -> bool,
    ) -> Option<ConnectorEvent> {
        let deadline = Instant::now() + limit;
        let mut at = from;
        loop {
            self.drain();
            if let Some(e) = self.seen[at.min(self.seen.len())..]
                .iter()
                .find(|e| pred(e))
            {
                return Some(e.clone());
            }
            at = self.seen.len();
            match self.rx.recv_deadline(deadline) {
                Ok(msg) => self.take(msg),
                Err(_) => return None,
            }
        }
    }

    /// Waits until `cond` holds on the checker.
    fn wait_until(&mut self, limit: Duration, cond: impl Fn(&CstaChecker) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            self.drain();
            if cond(&self.csta) {
                return true;
            }
            match self.rx.recv_deadline(deadline) {
                Ok(msg) => self.take(msg),
                Err(_) => return false,
            }
        }
    }
}

// ------------------------------------------------------------------ the suite

/// What a command must cause: an event of `kind` on `call` (empty: any call).
struct Expect {
    kind: EventKind,
    call: String,
}

fn expect(kind: EventKind, call: &str) -> Expect {
    Expect {
        kind,
        call: call.to_owned(),
    }
}

fn cmd(kind: CommandKind, call: &str) -> Command {
    Command::new(kind, call)
}

fn with_target(mut c: Command, target: &str) -> Command {
    c.target = RString::from(target);
    c
}

fn with_other(mut c: Command, other: &str) -> Command {
    c.other_call_id = RString::from(other);
    c
}

fn cleared_for_agent(call: &str) -> impl Fn(&ConnectorEvent) -> bool + '_ {
    move |e| {
        e.call_id == call
            && (e.kind == EventKind::CALL_CLEARED
                || (e.kind == EventKind::CONNECTION_CLEARED && e.state == ConnectionState::Null)
                || (e.kind == EventKind::TRANSFERRED && e.state == ConnectionState::Null))
    }
}

struct Suite<'a> {
    worker: Worker,
    events: Events,
    limits: &'a Limits,
    declared: Capabilities,
    report: &'a mut Report,
    /// Methods that came back with a `Panic` error: (method, message).
    panics: Vec<(String, String)>,
    /// Declared commands already given a row.
    done: Capabilities,
}

impl<'a> Suite<'a> {
    fn run(
        lib: &Library,
        settings: &str,
        limits: &'a Limits,
        model: ConnectionModel,
        report: &'a mut Report,
    ) {
        let (tx, rx) = crossbeam_channel::unbounded::<DesktopMsg>();
        let hosted = HostedInfo {
            name: RString::from("verify"),
            channel: RString::from("voice"),
            connection: model,
            poll_interval_ms: POLL_INTERVAL.as_millis() as u64,
            agent_id: RString::from("verify-agent"),
        };
        let ctx = || {
            HostCtx::new(
                PluginId::Connector(0),
                hosted.clone(),
                tx.clone(),
                Arc::new(AtomicU64::new(1)),
            )
        };
        let mut panics = Vec::new();
        let with_mode = test_mode_settings(settings);
        let mut built = app::new_connector(lib, ctx(), &with_mode);
        report.test_mode = Some(true);
        if let Err(e) = &built {
            if e.kind == ErrorKind::BAD_SETTINGS && e.message.contains(TEST_MODE_KEY) {
                report.test_mode = Some(false);
                built = app::new_connector(lib, ctx(), settings);
            }
        }
        let poll_to = (model == ConnectionModel::Polling).then(|| tx.clone());
        drop(tx);
        let connector = match built {
            Ok(c) => {
                report.pass("connector builds", "the constructor accepted the settings");
                c
            }
            Err(e) => {
                if e.kind == ErrorKind::PANIC {
                    panics.push(("new".to_owned(), e.message.to_string()));
                }
                report.fail("connector builds", e.to_string());
                panic_row(report, &panics);
                return;
            }
        };
        let worker = match Worker::spawn(connector, poll_to) {
            Ok(w) => w,
            Err(e) => {
                report.fail("connector builds", format!("cannot start a thread: {e}"));
                return;
            }
        };
        let mut suite = Suite {
            worker,
            events: Events {
                rx,
                seen: Vec::new(),
                csta: CstaChecker::default(),
                submits: 0,
                faults: Vec::new(),
            },
            limits,
            declared: Capabilities::NONE,
            report,
            panics,
            done: Capabilities::NONE,
        };
        suite.exercise(lib);
    }

    fn exercise(&mut self, lib: &Library) {
        let limit = self.limits.call;
        let started = self.worker.call("start", limit, |c| {
            c.start(Default::default()).into_result()
        });
        let started = match started {
            Ok(Ok(())) => {
                self.report.pass("start", "returned Ok");
                true
            }
            Ok(Err(e)) => {
                self.note_panic("start", &e);
                self.report.fail("start", e.to_string());
                false
            }
            Err(hung) => {
                self.report.fail("start", hung);
                false
            }
        };
        self.declared = self
            .worker
            .call("capabilities", limit, |c| c.capabilities())
            .unwrap_or(Capabilities::NONE);
        if started {
            if self.declared != lib.meta.capabilities {
                tracing::info!(
                    "this instance declares {} (the library: {})",
                    names(self.declared),
                    names(lib.meta.capabilities)
                );
            }
            self.walk();
        } else {
            for k in self.declared.kinds() {
                self.report.skip(k.to_string(), "skipped (start failed)");
            }
        }
        self.finish(started);
    }

    fn note_panic(&mut self, method: &str, e: &PluginError) {
        if e.kind == ErrorKind::PANIC {
            self.panics.push((method.to_owned(), e.message.to_string()));
        }
    }

    fn declares(&self, k: CommandKind) -> bool {
        self.declared.contains(k)
    }

    /// Runs `command`; on `Ok`, waits for each expected event (in any
    /// order). Returns the outcome and what was seen, or why it failed.
    fn exec(&mut self, command: Command, expects: &[Expect]) -> Result<(Outcome, String), String> {
        let name = command.kind.to_string();
        let mark = self.events.seen.len();
        let t0 = Instant::now();
        let limit = self.limits.call;
        let what = format!("execute({name})");
        let outcome = match self
            .worker
            .call(&what, limit, move |c| c.execute(&command).into_result())
        {
            Err(hung) => return Err(hung),
            Ok(Err(e)) => {
                self.note_panic("execute", &e);
                return Err(format!("refused: {e}"));
            }
            Ok(Ok(o)) => o,
        };
        let mut seen = Vec::new();
        for x in expects {
            let (call, kind) = (x.call.clone(), x.kind);
            let found = self.events.wait(mark, self.limits.event, |e| {
                e.kind == kind && (call.is_empty() || e.call_id == call)
            });
            match found {
                Some(e) if e.call_id.is_empty() => seen.push(e.kind.to_string()),
                Some(e) => seen.push(format!("{} ({})", e.kind, e.state)),
                None => {
                    return Err(format!(
                        "returned Ok but no {kind}{} within {:?}",
                        if call.is_empty() {
                            String::new()
                        } else {
                            format!(" on call {call}")
                        },
                        self.limits.event
                    ))
                }
            }
        }
        let took = t0.elapsed().as_millis();
        let detail = if seen.is_empty() {
            format!("Ok in {took} ms")
        } else {
            format!("{} in {took} ms", seen.join(", "))
        };
        Ok((outcome, detail))
    }

    /// [`exec`](Self::exec), giving the row of `command.kind` when `row`.
    fn step(&mut self, command: Command, expects: &[Expect], row: bool) -> Option<Outcome> {
        let kind = command.kind;
        let r = self.exec(command, expects);
        if row {
            self.done |= Capabilities::of(kind);
            match &r {
                Ok((_, detail)) => self.report.pass(kind.to_string(), detail.clone()),
                Err(why) => self.report.fail(kind.to_string(), why.clone()),
            }
        }
        r.ok().map(|(o, _)| o)
    }

    /// A step after which the agent's connection to `call` must end.
    fn step_clears(&mut self, command: Command, call: &str, row: bool) -> bool {
        let kind = command.kind;
        let mark = self.events.seen.len();
        let t0 = Instant::now();
        let r = self.exec(command, &[]).and_then(|_| {
            self.events
                .wait(mark, self.limits.event, cleared_for_agent(call))
                .map(|_| {
                    format!(
                        "the agent's connection to {call} cleared in {} ms",
                        t0.elapsed().as_millis()
                    )
                })
                .ok_or_else(|| {
                    format!(
                        "returned Ok but call {call} was not cleared for the agent (ConnectionCleared Null, Transferred or CallCleared) within {:?}",
                        self.limits.event
                    )
                })
        });
        if row {
            self.done |= Capabilities::of(kind);
            match &r {
                Ok(detail) => self.report.pass(kind.to_string(), detail.clone()),
                Err(why) => self.report.fail(kind.to_string(), why.clone()),
            }
        }
        r.is_ok()
    }

    fn skip_rest(&mut self, kinds: &[CommandKind], why: &str) {
        for k in kinds {
            if self.declares(*k) && !self.done.contains(*k) {
                self.done |= Capabilities::of(*k);
                self.report.skip(k.to_string(), why);
            }
        }
    }

    fn live(&self, id: &str) -> bool {
        self.events
            .csta
            .state(id)
            .is_some_and(ConnectionState::is_live)
    }

    fn connected(&self, id: &str) -> bool {
        self.events.csta.state(id) == Some(ConnectionState::Connected)
    }

    /// The call a command created: the outcome's id, or the newest call
    /// introduced since `mark`.
    fn new_call(&mut self, outcome: &Outcome, mark: usize) -> Option<String> {
        if !outcome.call_id.is_empty() {
            let id = outcome.call_id.to_string();
            let known = self.events.wait_until(self.limits.event, |c| c.knows(&id));
            return known.then_some(id);
        }
        let found = self.events.wait(mark, self.limits.event, |e| {
            e.kind == EventKind::ORIGINATED && e.call.is_some()
        });
        found.map(|e| e.call_id.to_string())
    }

    /// Waits for the far end of `id` to answer.
    fn wait_connected(&mut self, id: &str) -> bool {
        let id = id.to_owned();
        self.events.wait_until(self.limits.event, |c| {
            c.state(&id) == Some(ConnectionState::Connected)
        })
    }

    fn walk(&mut self) {
        use CommandKind as K;
        let first = self.limits.first_call;
        let got = self
            .events
            .wait_until(first, |c| c.ringing_inbound(&[]).is_some());
        let a = got.then(|| self.events.csta.ringing_inbound(&[])).flatten();
        let mut a = match a {
            Some(a) => Some(a),
            None => {
                self.skip_rest(
                    &[
                        K::ANSWER,
                        K::REJECT,
                        K::HOLD,
                        K::RETRIEVE,
                        K::SEND_DTMF,
                        K::MUTE,
                        K::UNMUTE,
                        K::SEND_MESSAGE,
                        K::SEND_TYPING,
                        K::CONSULT,
                        K::ALTERNATE,
                        K::CANCEL_CONSULT,
                        K::CONFERENCE,
                        K::COMPLETE_TRANSFER,
                    ],
                    "skipped (no call offered)",
                );
                None
            }
        };

        // Answer (or Reject) the first ringing call.
        if let Some(id) = a.clone() {
            if self.declares(K::ANSWER) {
                let ok = self
                    .step(
                        cmd(K::ANSWER, &id),
                        &[expect(EventKind::ESTABLISHED, &id)],
                        true,
                    )
                    .is_some();
                if !ok || !self.connected(&id) {
                    self.skip_connected("skipped (the call was not answered)");
                }
            } else {
                self.skip_connected("skipped (Answer is not declared: no connected call)");
                if self.declares(K::REJECT) {
                    self.step_clears(cmd(K::REJECT, &id), &id, true);
                    a = None;
                }
            }
        }

        // On the connected call.
        if let Some(id) = a.clone().filter(|id| self.connected(id)) {
            self.on_connected(&id);
            // Consultation family may leave the agent with another call.
            a = self.consults(&id);
        }

        // A second ringing call for Reject.
        if self.declares(K::REJECT) && !self.done.contains(K::REJECT) {
            let skip: Vec<&str> = a.iter().map(String::as_str).collect();
            let second = self.limits.second_call;
            let skip_owned: Vec<String> = skip.iter().map(|s| (*s).to_owned()).collect();
            let found = self.events.wait_until(second, |c| {
                let s: Vec<&str> = skip_owned.iter().map(String::as_str).collect();
                c.ringing_inbound(&s).is_some()
            });
            let r = found
                .then(|| self.events.csta.ringing_inbound(&skip))
                .flatten();
            match r {
                Some(r) => {
                    self.step_clears(cmd(K::REJECT, &r), &r, true);
                }
                None => self.skip_rest(&[K::REJECT], "skipped (no second call offered)"),
            }
        }

        // MakeCall needs no call; its call serves BlindTransfer.
        let mut b = None;
        if self.declares(K::MAKE_CALL) {
            let mark = self.events.seen.len();
            let outcome = self.exec(
                with_target(cmd(K::MAKE_CALL, ""), DIAL_NUMBER),
                &[expect(EventKind::ORIGINATED, "")],
            );
            self.done |= Capabilities::of(K::MAKE_CALL);
            match outcome {
                Err(why) => self.report.fail("MakeCall", why),
                Ok((o, _)) => match self.new_call(&o, mark) {
                    None => self.report.fail(
                        "MakeCall",
                        "returned Ok but no Originated carrying the new call",
                    ),
                    Some(id) => {
                        let answered = self.wait_connected(&id);
                        self.report.pass(
                            "MakeCall",
                            format!(
                                "Originated call {id}{}",
                                if answered {
                                    ", far end answered (Established)"
                                } else {
                                    " (the far end did not answer within the limit)"
                                }
                            ),
                        );
                        b = Some(id);
                    }
                },
            }
        }

        // Undeclared commands, on a live call when there is one.
        let probe = a
            .clone()
            .filter(|id| self.live(id))
            .or_else(|| b.clone().filter(|id| self.live(id)));
        self.undeclared(probe.as_deref());

        // BlindTransfer: on the outbound call, else on the first.
        if self.declares(K::BLIND_TRANSFER) {
            let target = b
                .clone()
                .filter(|id| self.connected(id))
                .or_else(|| a.clone().filter(|id| self.connected(id)));
            match target {
                Some(id) => {
                    self.step_clears(
                        with_target(cmd(K::BLIND_TRANSFER, &id), TRANSFER_TARGET),
                        &id,
                        true,
                    );
                }
                None => self.skip_rest(&[K::BLIND_TRANSFER], "skipped (no connected call)"),
            }
        }

        // SetAgentState needs no call.
        if self.declares(K::SET_AGENT_STATE) {
            let mut c = cmd(K::SET_AGENT_STATE, "");
            c.agent_state = ROption::RSome(AgentState::NotReady("Break".into()));
            let not_ready = self.step(c, &[expect(EventKind::AGENT_STATE_CHANGED, "")], false);
            let mut c = cmd(K::SET_AGENT_STATE, "");
            c.agent_state = ROption::RSome(AgentState::Ready);
            let ready = not_ready
                .and_then(|_| self.step(c, &[expect(EventKind::AGENT_STATE_CHANGED, "")], true));
            if ready.is_some() {
                // Make the row say what was exercised.
                if let Some(r) = self.report.rows.last_mut() {
                    r.detail = format!("NotReady(Break) then Ready, each confirmed: {}", r.detail);
                }
            } else if !self.done.contains(K::SET_AGENT_STATE) {
                self.done |= Capabilities::of(K::SET_AGENT_STATE);
                self.report.fail(
                    "SetAgentState",
                    "NotReady(Break) was refused or not confirmed by AgentStateChanged",
                );
            }
        }

        // Hangup last, on whatever the agent still has (a new outbound
        // call when transfers took every call away).
        if self.declares(K::HANGUP) {
            let mut last = a
                .clone()
                .filter(|id| self.live(id))
                .or_else(|| b.clone().filter(|id| self.live(id)))
                .or_else(|| {
                    self.events
                        .csta
                        .open_calls()
                        .into_iter()
                        .find(|id| self.live(id))
                });
            if last.is_none() && self.declares(K::MAKE_CALL) {
                let mark = self.events.seen.len();
                if let Ok((o, _)) = self.exec(
                    with_target(cmd(K::MAKE_CALL, ""), DIAL_NUMBER),
                    &[expect(EventKind::ORIGINATED, "")],
                ) {
                    last = self.new_call(&o, mark);
                    if let Some(id) = &last {
                        self.wait_connected(id);
                    }
                }
            }
            match last {
                Some(id) => {
                    self.step_clears(cmd(K::HANGUP, &id), &id, true);
                }
                None => self.skip_rest(&[K::HANGUP], "skipped (no call left to hang up)"),
            }
            // Clean up the rest quietly.
            for id in self.events.csta.open_calls() {
                if self.live(&id) {
                    self.step_clears(cmd(K::HANGUP, &id), &id, false);
                }
            }
        }
    }

    fn skip_connected(&mut self, why: &str) {
        use CommandKind as K;
        self.skip_rest(
            &[
                K::HOLD,
                K::RETRIEVE,
                K::SEND_DTMF,
                K::MUTE,
                K::UNMUTE,
                K::SEND_MESSAGE,
                K::SEND_TYPING,
                K::CONSULT,
                K::ALTERNATE,
                K::CANCEL_CONSULT,
                K::CONFERENCE,
                K::COMPLETE_TRANSFER,
            ],
            why,
        );
    }

    fn on_connected(&mut self, id: &str) {
        use CommandKind as K;
        if self.declares(K::HOLD) {
            let held = self
                .step(cmd(K::HOLD, id), &[expect(EventKind::HELD, id)], true)
                .is_some();
            if self.declares(K::RETRIEVE) {
                if held {
                    self.step(
                        cmd(K::RETRIEVE, id),
                        &[expect(EventKind::RETRIEVED, id)],
                        true,
                    );
                } else {
                    self.skip_rest(&[K::RETRIEVE], "skipped (the call could not be held)");
                }
            }
        } else {
            self.skip_rest(
                &[K::RETRIEVE],
                "skipped (Hold is not declared: no held call)",
            );
        }
        if !self.connected(id) {
            self.skip_connected("skipped (the call is no longer connected)");
            return;
        }
        if self.declares(K::SEND_DTMF) {
            self.step(
                with_target(cmd(K::SEND_DTMF, id), "1"),
                &[expect(EventKind::DIGITS_GENERATED, id)],
                true,
            );
        }
        if self.declares(K::MUTE) {
            self.step(cmd(K::MUTE, id), &[expect(EventKind::MUTED, id)], true);
        }
        if self.declares(K::UNMUTE) {
            self.step(cmd(K::UNMUTE, id), &[expect(EventKind::UNMUTED, id)], true);
        }
        if self.declares(K::SEND_MESSAGE) {
            let mut c = cmd(K::SEND_MESSAGE, id);
            c.text = RString::from("verify");
            self.step(c, &[expect(EventKind::MESSAGE_SENT, id)], true);
        }
        if self.declares(K::SEND_TYPING) {
            let mut c = cmd(K::SEND_TYPING, id);
            c.text = RString::from("composing");
            self.step(c, &[], true);
        }
    }

    /// Consult, Alternate, CancelConsult, Conference, CompleteTransfer on
    /// the connected call `a`; returns the call the agent still has.
    fn consults(&mut self, a: &str) -> Option<String> {
        use CommandKind as K;
        let family = [
            K::CONSULT,
            K::ALTERNATE,
            K::CANCEL_CONSULT,
            K::CONFERENCE,
            K::COMPLETE_TRANSFER,
        ];
        if !self.declares(K::CONSULT) {
            self.skip_rest(
                &family[1..],
                "skipped (Consult is not declared: no consultation call)",
            );
            return Some(a.to_owned());
        }
        let Some(c) = self.consult(a, true) else {
            self.skip_rest(&family[1..], "skipped (no consultation call)");
            return Some(a.to_owned());
        };
        if self.declares(K::ALTERNATE) {
            // a held, c active → a active, c held → back.
            let there = self
                .step(
                    with_other(cmd(K::ALTERNATE, a), &c),
                    &[expect(EventKind::RETRIEVED, a), expect(EventKind::HELD, &c)],
                    true,
                )
                .is_some();
            if there {
                self.step(
                    with_other(cmd(K::ALTERNATE, &c), a),
                    &[expect(EventKind::RETRIEVED, &c), expect(EventKind::HELD, a)],
                    false,
                );
            }
        }
        let mut a = a.to_owned();
        let mut c = Some(c);
        if self.declares(K::CANCEL_CONSULT) {
            if let Some(cc) = c.take() {
                let mark = self.events.seen.len();
                let ok = self
                    .step(
                        with_other(cmd(K::CANCEL_CONSULT, &a), &cc),
                        &[expect(EventKind::RETRIEVED, &a)],
                        true,
                    )
                    .is_some();
                if ok
                    && self
                        .events
                        .wait(mark, self.limits.event, cleared_for_agent(&cc))
                        .is_none()
                {
                    if let Some(r) = self.report.rows.last_mut() {
                        r.status = Status::Fail;
                        r.detail =
                            format!("{a} retrieved but the consultation {cc} was not cleared");
                    }
                }
            }
        }
        if self.declares(K::CONFERENCE) {
            let cc = c.take().or_else(|| self.consult(&a, false));
            match cc {
                Some(cc) => {
                    let mark = self.events.seen.len();
                    if self
                        .step(with_other(cmd(K::CONFERENCE, &a), &cc), &[], true)
                        .is_some()
                    {
                        let conf = self.events.wait(mark, self.limits.event, |e| {
                            e.kind == EventKind::CONFERENCED
                                && e.state.is_live()
                                && (e.call_id == a.as_str() || e.call_id == cc.as_str())
                        });
                        match conf {
                            Some(e) => a = e.call_id.to_string(),
                            None => {
                                if let Some(r) = self.report.rows.last_mut() {
                                    r.status = Status::Fail;
                                    r.detail = format!(
                                        "returned Ok but no Conferenced on {a} or {cc} within {:?}",
                                        self.limits.event
                                    );
                                }
                            }
                        }
                    }
                }
                None => self.skip_rest(&[K::CONFERENCE], "skipped (no consultation call)"),
            }
        }
        if self.declares(K::COMPLETE_TRANSFER) {
            let cc = c.take().or_else(|| self.consult(&a, false));
            match cc {
                Some(cc) => {
                    let mark = self.events.seen.len();
                    if self
                        .step(with_other(cmd(K::COMPLETE_TRANSFER, &a), &cc), &[], true)
                        .is_some()
                    {
                        let gone_a = self
                            .events
                            .wait(mark, self.limits.event, cleared_for_agent(&a))
                            .is_some();
                        let gone_c = self
                            .events
                            .wait(mark, self.limits.event, cleared_for_agent(&cc))
                            .is_some();
                        if !(gone_a && gone_c) {
                            if let Some(r) = self.report.rows.last_mut() {
                                r.status = Status::Fail;
                                r.detail = format!(
                                    "returned Ok but the agent still has {}",
                                    [
                                        (!gone_a).then_some(a.as_str()),
                                        (!gone_c).then_some(cc.as_str())
                                    ]
                                    .into_iter()
                                    .flatten()
                                    .collect::<Vec<_>>()
                                    .join(" and ")
                                );
                            }
                        }
                    }
                    return None;
                }
                None => self.skip_rest(&[K::COMPLETE_TRANSFER], "skipped (no consultation call)"),
            }
        }
        if let Some(cc) = c {
            // Leave one call: drop the consultation.
            if self.declares(K::HANGUP) && self.live(&cc) {
                self.step_clears(cmd(K::HANGUP, &cc), &cc, false);
            }
        }
        Some(a)
    }

    /// Consult from the connected `a`: a held, a new call answered.
    fn consult(&mut self, a: &str, row: bool) -> Option<String> {
        use CommandKind as K;
        let mark = self.events.seen.len();
        let outcome = self.step(
            with_target(cmd(K::CONSULT, a), TRANSFER_TARGET),
            &[expect(EventKind::HELD, a)],
            row,
        )?;
        let c = self.new_call(&outcome, mark);
        let fail = |s: &mut Self, why: String| {
            if row {
                if let Some(r) = s.report.rows.last_mut() {
                    r.status = Status::Fail;
                    r.detail = why;
                }
            }
        };
        match c {
            None => {
                fail(
                    self,
                    format!("{a} held but no consultation call was originated"),
                );
                None
            }
            Some(c) => {
                if !self.wait_connected(&c) {
                    fail(self, format!("consultation call {c} was not answered within the limit (test mode promises it)"));
                    return None;
                }
                Some(c)
            }
        }
    }

    fn undeclared(&mut self, call: Option<&str>) {
        let call = call.unwrap_or("verify-no-call");
        let mut bad = Vec::new();
        let mut wrong: Vec<(String, Vec<String>)> = Vec::new();
        let mut checked = Vec::new();
        for code in CALL_CONTROL_CODES {
            let kind = CommandKind(code);
            if self.declared.contains(kind) {
                continue;
            }
            let mut c = cmd(kind, call);
            c.target = RString::from(match kind {
                CommandKind::SEND_DTMF => "1",
                CommandKind::MAKE_CALL => DIAL_NUMBER,
                _ => TRANSFER_TARGET,
            });
            c.other_call_id = RString::from("verify-other");
            c.text = RString::from("verify");
            c.agent_state = ROption::RSome(AgentState::Ready);
            let what = format!("execute({kind})");
            let r = self.worker.call(&what, self.limits.call, move |con| {
                con.execute(&c).into_result()
            });
            checked.push(kind.to_string());
            match r {
                Err(hung) => {
                    bad.push(format!("{kind}: {hung}"));
                    break;
                }
                Ok(Ok(_)) => bad.push(format!("{kind} answered Ok although it is not declared")),
                Ok(Err(e)) if e.kind == ErrorKind::UNSUPPORTED => {}
                Ok(Err(e)) => {
                    self.note_panic("execute", &e);
                    let head = format!("refused with {} instead of Unsupported:", e.kind);
                    match wrong.iter_mut().find(|(h, _)| *h == head) {
                        Some((_, kinds)) => kinds.push(kind.to_string()),
                        None => wrong.push((head, vec![kind.to_string()])),
                    }
                }
            }
        }
        bad.extend(
            wrong
                .into_iter()
                .map(|(h, k)| format!("{h} {}", k.join(", "))),
        );
        let row = "undeclared commands refused (Unsupported)";
        if checked.is_empty() {
            self.report
                .pass(row, "every call-control command is declared");
        } else if bad.is_empty() {
            self.report.pass(
                row,
                format!("{} refused with Unsupported", checked.join(", ")),
            );
        } else {
            self.report.fail(row, bad.join("; "));
        }
        // What an Ok caused stays in the event log and is judged there.
        self.events.pump(Duration::from_millis(50));
    }

    fn finish(&mut self, started: bool) {
        // Declared commands no step reached.
        for k in self.declared.kinds() {
            if !self.done.contains(k) && CALL_CONTROL_CODES.contains(&k.0) {
                self.report.skip(k.to_string(), "skipped (not reached)");
            }
        }
        self.events.pump(Duration::from_millis(200));
        let limit = self.limits.call;
        if started {
            let listed = self
                .worker
                .call("calls", limit, |c| c.calls().into_vec())
                .unwrap_or_default();
            self.events.pump(Duration::from_millis(100));
            self.forgotten(&listed);
        } else {
            self.report
                .skip("no call forgotten", "skipped (start failed)");
        }
        // stop, on the worker thread, within its limit.
        let t0 = Instant::now();
        let stop_limit = self.limits.stop;
        let polling = Arc::clone(&self.worker.polling);
        match self.worker.call("stop", stop_limit, move |c| {
            polling.store(false, std::sync::atomic::Ordering::Relaxed);
            c.stop().into_result()
        }) {
            Ok(Ok(())) => self.report.pass(
                "stop within 2 s",
                format!("returned in {} ms", t0.elapsed().as_millis()),
            ),
            Ok(Err(e)) => {
                self.note_panic("stop", &e);
                self.report.fail("stop within 2 s", format!("returned {e}"));
            }
            Err(hung) => self.report.fail("stop within 2 s", hung),
        }
        self.worker.close();
        self.events.pump(Duration::from_millis(100));
        let v = self.events.csta.violations();
        if v.is_empty() {
            self.report.pass(
                "events in valid CSTA order",
                format!("{} events checked", self.events.seen.len()),
            );
        } else {
            let mut d: Vec<String> = v.iter().take(5).cloned().collect();
            if v.len() > 5 {
                d.push(format!("and {} more", v.len() - 5));
            }
            self.report.fail("events in valid CSTA order", d.join("; "));
        }
        if self.report.connection == ConnectionModel::Polling {
            let faults = std::mem::take(&mut self.events.faults);
            for (method, e) in &faults {
                self.note_panic(method, e);
            }
            if faults.is_empty() {
                self.report.pass("poll", "every poll returned Ok");
            } else {
                let first = &faults[0];
                self.report.fail(
                    "poll",
                    format!("{} poll(s) failed; first: {}", faults.len(), first.1),
                );
            }
        }
        panic_row(self.report, &self.panics);
    }

    fn forgotten(&mut self, listed: &[CallInfo]) {
        let listed_ids: Vec<&str> = listed.iter().map(|c| c.call_id.as_str()).collect();
        let mut problems = Vec::new();
        for id in self.events.csta.open_calls() {
            if !listed_ids.contains(&id.as_str()) {
                problems.push(format!(
                    "call {id} was introduced but neither cleared (CallCleared) nor listed by calls()"
                ));
            }
        }
        for id in &listed_ids {
            if !self.events.csta.knows(id) {
                problems.push(format!(
                    "calls() lists {id}, which no Delivered or Originated introduced"
                ));
            }
        }
        if problems.is_empty() {
            let open = self.events.csta.open_calls().len();
            self.report.pass(
                "no call forgotten",
                if open == 0 {
                    "every call introduced was cleared".to_owned()
                } else {
                    format!("{open} call(s) still live, all listed by calls()")
                },
            );
        } else {
            self.report.fail("no call forgotten", problems.join("; "));
        }
    }
}

fn panic_row(report: &mut Report, panics: &[(String, String)]) {
    if panics.is_empty() {
        report.pass("no panic", "no method panicked during the run");
    } else {
        // One entry per method: how often, and the first message.
        let mut by_method: Vec<(&str, usize, &str)> = Vec::new();
        for (method, msg) in panics {
            match by_method.iter_mut().find(|(m, _, _)| m == method) {
                Some(e) => e.1 += 1,
                None => by_method.push((method, 1, msg)),
            }
        }
        let parts: Vec<String> = by_method
            .iter()
            .map(|(m, n, msg)| {
                let times = if *n == 1 {
                    String::new()
                } else {
                    format!("{n} times; ")
                };
                format!("{m} panicked ({times}reported as Panic: {msg})")
            })
            .collect();
        report.fail("no panic", parts.join("; "));
    }
}

/// The settings with the test-mode key set (unless they set it already).
fn test_mode_settings(settings: &str) -> String {
    let mut table = settings.parse::<toml::Table>().unwrap_or_default();
    table
        .entry(TEST_MODE_KEY)
        .or_insert(toml::Value::Boolean(true));
    toml::to_string(&table).unwrap_or_else(|_| settings.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, id: &str, state: ConnectionState) -> ConnectorEvent {
        ConnectorEvent::new(kind, id, state)
    }

    fn delivered(id: &str) -> ConnectorEvent {
        ev(EventKind::DELIVERED, id, ConnectionState::Alerting).with_call(CallInfo::new(
            id,
            Direction::Inbound,
            "+14255550100",
            "1001",
            ConnectionState::Alerting,
        ))
    }

    #[test]
    fn a_normal_call_is_in_order() {
        use ConnectionState as S;
        let mut c = CstaChecker::default();
        for e in [
            ev(EventKind::LINK_UP, "", S::Null),
            delivered("c1"),
            ev(EventKind::ESTABLISHED, "c1", S::Connected),
            ev(EventKind::HELD, "c1", S::Held),
            ev(EventKind::RETRIEVED, "c1", S::Connected),
            ev(EventKind::DIGITS_GENERATED, "c1", S::Connected),
            ev(EventKind::CONNECTION_CLEARED, "c1", S::Connected),
            ev(EventKind::CONNECTION_CLEARED, "c1", S::Null),
            ev(EventKind::CALL_CLEARED, "c1", S::Null),
        ] {
            c.on_event(&e);
        }
        assert!(c.violations().is_empty(), "{:?}", c.violations());
        assert!(c.open_calls().is_empty());
    }

    #[test]
    fn unknown_calls_bad_states_and_late_events_are_named() {
        use ConnectionState as S;
        let mut c = CstaChecker::default();
        c.on_event(&ev(EventKind::ESTABLISHED, "ghost-1", S::Connected));
        c.on_event(&ev(EventKind::DELIVERED, "nocall", S::Alerting));
        c.on_event(&delivered("c1"));
        c.on_event(&ev(EventKind::ESTABLISHED, "c1", S::Held));
        c.on_event(&ev(EventKind::CALL_CLEARED, "c1", S::Null));
        c.on_event(&ev(EventKind::HELD, "c1", S::Held));
        c.on_event(&ev(EventKind::CALL_REMOVED, "c1", S::Null));
        let v = c.violations().join("\n");
        assert!(
            v.contains("Established for unknown call ghost-1 (never introduced"),
            "{v}"
        );
        assert!(
            v.contains("Delivered for call nocall, which is new, carries no call"),
            "{v}"
        );
        assert!(
            v.contains("Established on call c1 with state Held (expected Connected)"),
            "{v}"
        );
        assert!(v.contains("Held for call c1 after its CallCleared"), "{v}");
        assert!(v.contains("raised CallRemoved"), "{v}");
    }

    #[test]
    fn a_data_update_and_far_end_digits_are_in_order() {
        use ConnectionState as S;
        let mut c = CstaChecker::default();
        c.on_event(&delivered("c1"));
        c.on_event(&ev(EventKind::ESTABLISHED, "c1", S::Connected));
        c.on_event(&ev(EventKind::DIGITS_RECEIVED, "c1", S::Connected));
        let mut update = delivered("c1");
        update.kind = EventKind::CALL_UPDATED;
        c.on_event(&update);
        assert!(c.violations().is_empty(), "{:?}", c.violations());
        // The update does not move the call's state.
        c.on_event(&ev(EventKind::HELD, "c1", S::Held));
        assert!(c.violations().is_empty(), "{:?}", c.violations());
        // Without the call's data, or for a call never introduced: named.
        c.on_event(&ev(EventKind::CALL_UPDATED, "c1", S::Held));
        let mut ghost = delivered("ghost");
        ghost.kind = EventKind::CALL_UPDATED;
        c.on_event(&ghost);
        let v = c.violations().join("\n");
        assert!(v.contains("CallUpdated for call c1 carries no call"), "{v}");
        assert!(v.contains("CallUpdated for unknown call ghost"), "{v}");
    }

    #[test]
    fn open_calls_and_ringing() {
        let mut c = CstaChecker::default();
        c.on_event(&delivered("a"));
        c.on_event(&delivered("b"));
        assert_eq!(c.ringing_inbound(&[]).as_deref(), Some("a"));
        assert_eq!(c.ringing_inbound(&["a"]).as_deref(), Some("b"));
        assert_eq!(c.open_calls(), ["a", "b"]);
    }

    #[test]
    fn test_mode_is_merged_into_the_settings() {
        let s = test_mode_settings("port = 4\n[t]\nx = 1\n");
        let t: toml::Table = s.parse().unwrap();
        assert_eq!(
            t.get(TEST_MODE_KEY).and_then(toml::Value::as_bool),
            Some(true)
        );
        assert_eq!(t.get("port").and_then(toml::Value::as_integer), Some(4));
        let kept: toml::Table = test_mode_settings("cti_test_mode = false").parse().unwrap();
        assert_eq!(
            kept.get(TEST_MODE_KEY).and_then(toml::Value::as_bool),
            Some(false)
        );
    }

    #[test]
    fn the_report_names_failures() {
        let mut r = Report {
            library: "x.so".into(),
            ..Report::default()
        };
        r.pass("start", "ok");
        r.skip("Reject", "skipped (no second call offered)");
        assert!(r.passed());
        assert!(r
            .to_string()
            .ends_with("result: PASS (1 checks passed, 1 skipped)"));
        r.fail("no panic", "execute panicked");
        assert!(!r.passed());
        assert!(r
            .to_string()
            .contains("result: FAIL (1 of 3 checks failed: no panic)"));
        assert_eq!(r.to_json()["passed"], false);
        assert_eq!(r.to_json()["checks"][2]["status"], "fail");
    }
}
