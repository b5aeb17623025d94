//! Plugin instances: the host context handed to each plugin, and the worker
//! thread each instance runs on.
//!
//! Every instance lives on its own OS thread with a bounded mailbox, so a
//! slow or stuck plugin never stalls the desktop: the desktop only ever
//! `try_send`s to a connector and waits a bounded time on a control.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RResult, RStr, RString, RVec},
};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use cti_plugin_api::{
    CallInfo, Command, ConnectionModel, ConnectorBox, ConnectorEvent, ControlBox, DesktopEvent,
    DesktopSnapshot, ErrorKind, HostApi, HostApi_TO, HostHandle, HostedInfo, LogLevel, Outcome,
    PluginError,
};

use crate::desktop::DesktopMsg;

/// Which plugin instance a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginId {
    /// Index into the desktop's connectors.
    Connector(usize),
    /// Index into the desktop's controls.
    Control(usize),
}

/// The host context: implements the ABI's `HostApi` for one instance.
#[derive(Clone)]
pub struct HostCtx {
    id: PluginId,
    hosted: HostedInfo,
    inbox: Sender<DesktopMsg>,
    request_ids: Arc<AtomicU64>,
}

impl HostCtx {
    /// A context for instance `id`.
    pub fn new(
        id: PluginId,
        hosted: HostedInfo,
        inbox: Sender<DesktopMsg>,
        request_ids: Arc<AtomicU64>,
    ) -> Self {
        Self {
            id,
            hosted,
            inbox,
            request_ids,
        }
    }

    /// The FFI handle.
    pub fn into_handle(self) -> HostHandle {
        HostApi_TO::from_ptr(RArc::new(self), TD_Opaque)
    }
}

fn host_gone() -> PluginError {
    PluginError::new(ErrorKind::UNAVAILABLE, "the desktop is shutting down")
}

impl HostApi for HostCtx {
    fn emit(&self, event: ConnectorEvent) -> RResult<(), PluginError> {
        let PluginId::Connector(idx) = self.id else {
            return RResult::RErr(PluginError::new(
                ErrorKind::REFUSED,
                "only connectors emit connector events",
            ));
        };
        self.inbox
            .send(DesktopMsg::Event {
                connector: idx,
                event,
            })
            .map_err(|_| host_gone())
            .into()
    }

    fn submit(&self, command: Command) -> RResult<u64, PluginError> {
        let request_id = self.request_ids.fetch_add(1, Ordering::Relaxed);
        self.inbox
            .send(DesktopMsg::Submit {
                source: self.hosted.name.to_string(),
                request_id,
                command,
                reply: None,
            })
            .map(|()| request_id)
            .map_err(|_| host_gone())
            .into()
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let plugin = self.hosted.name.as_str();
        // Plugins' log lines are masked like the host's (`[host] log_numbers`).
        let message = crate::privacy::text(message.as_str());
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn hosted(&self) -> HostedInfo {
        self.hosted.clone()
    }
}

/// Jobs for a connector's worker.
// Commands travel by value through the mailbox; boxing them would only add
// an allocation per command.
#[allow(clippy::large_enum_variant)]
pub enum ConnectorJob {
    /// Run a command; the outcome goes back to the desktop.
    Execute {
        /// The desktop's request id.
        request_id: u64,
        /// The command, with the connector's own call id.
        command: Command,
    },
    /// Stop the connector and end the thread.
    Stop,
}

/// Jobs for a control's worker.
pub enum ControlJob {
    /// Start with this snapshot.
    Start(Arc<DesktopSnapshot>),
    /// One event.
    Event(Arc<DesktopEvent>),
    /// Missed events: redraw.
    Resync(Arc<DesktopSnapshot>),
    /// A command to intercept; the verdict goes back with `token`.
    Intercept {
        /// The parked command's token (0: no answer awaited).
        token: u64,
        /// What the control sees.
        request: Box<cti_plugin_api::InterceptRequest>,
    },
    /// Stop the control and end the thread.
    Stop,
}

/// A running worker thread.
pub struct Worker<J> {
    /// Its mailbox.
    pub tx: Sender<J>,
    /// The mailbox's receiving side, so the desktop can empty it when it
    /// retires the instance.
    pub rx: Receiver<J>,
    /// The thread (taken when joined).
    pub thread: Option<JoinHandle<()>>,
    /// Signalled when the thread ends.
    pub done: Receiver<()>,
}

impl<J> Worker<J> {
    /// Drops every job still queued (the instance is being retired).
    pub fn drain(&self) -> usize {
        let mut n = 0;
        while self.rx.try_recv().is_ok() {
            n += 1;
        }
        n
    }

    /// Waits up to `timeout` for the thread to end; detaches it otherwise.
    /// Returns true when it ended.
    pub fn join_within(&mut self, timeout: Duration) -> bool {
        let ended = matches!(
            self.done.recv_timeout(timeout),
            Ok(()) | Err(RecvTimeoutError::Disconnected)
        );
        if ended {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        ended
    }
}

/// Starts a connector instance on its own thread.
#[allow(clippy::too_many_arguments)]
pub fn spawn_connector(
    idx: usize,
    name: &str,
    mut connector: ConnectorBox,
    model: ConnectionModel,
    poll_interval: Duration,
    calls: Vec<CallInfo>,
    mailbox: usize,
    inbox: Sender<DesktopMsg>,
) -> std::io::Result<Worker<ConnectorJob>> {
    let (tx, rx) = crossbeam_channel::bounded::<ConnectorJob>(mailbox);
    let keep_rx = rx.clone();
    let (done_tx, done) = crossbeam_channel::bounded::<()>(1);
    let thread = std::thread::Builder::new()
        .name(format!("connector:{name}"))
        .spawn(move || {
            let _done = DoneGuard(done_tx);
            if let RResult::RErr(error) = connector.start(RVec::from(calls)) {
                let _ = inbox.send(DesktopMsg::PluginFault {
                    plugin: PluginId::Connector(idx),
                    during: "start",
                    error,
                });
                return;
            }
            let mut next_poll = Instant::now();
            loop {
                let job = match model {
                    ConnectionModel::Instance => {
                        rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
                    }
                    ConnectionModel::Polling => rx.recv_deadline(next_poll),
                };
                match job {
                    Ok(ConnectorJob::Execute {
                        request_id,
                        command,
                    }) => {
                        let result = connector.execute(&command).into_result();
                        if inbox
                            .send(DesktopMsg::Outcome {
                                connector: idx,
                                request_id,
                                result,
                            })
                            .is_err()
                        {
                            break;
                        }
                    }
                    Ok(ConnectorJob::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {
                        next_poll += poll_interval;
                        let now = Instant::now();
                        if next_poll < now {
                            next_poll = now + poll_interval;
                        }
                        let msg = match connector.poll() {
                            RResult::ROk(events) if events.is_empty() => continue,
                            RResult::ROk(events) => DesktopMsg::Events {
                                connector: idx,
                                events: events.into_vec(),
                            },
                            RResult::RErr(error) => DesktopMsg::PluginFault {
                                plugin: PluginId::Connector(idx),
                                during: "poll",
                                error,
                            },
                        };
                        if inbox.send(msg).is_err() {
                            break;
                        }
                    }
                }
            }
            if let RResult::RErr(error) = connector.stop() {
                tracing::warn!(
                    plugin = idx,
                    "connector stop failed: {}",
                    crate::privacy::text(&error.to_string())
                );
            }
        })?;
    Ok(Worker {
        tx,
        rx: keep_rx,
        thread: Some(thread),
        done,
    })
}

/// Starts a control instance on its own thread.
pub fn spawn_control(
    idx: usize,
    name: &str,
    mut control: ControlBox,
    mailbox: usize,
    inbox: Sender<DesktopMsg>,
) -> std::io::Result<Worker<ControlJob>> {
    let (tx, rx) = crossbeam_channel::bounded::<ControlJob>(mailbox);
    let keep_rx = rx.clone();
    let (done_tx, done) = crossbeam_channel::bounded::<()>(1);
    let thread = std::thread::Builder::new()
        .name(format!("control:{name}"))
        .spawn(move || {
            let _done = DoneGuard(done_tx);
            let fault = |during: &'static str, error: PluginError| {
                let _ = inbox.send(DesktopMsg::PluginFault {
                    plugin: PluginId::Control(idx),
                    during,
                    error,
                });
            };
            while let Ok(job) = rx.recv() {
                match job {
                    ControlJob::Event(ev) => {
                        if let RResult::RErr(e) = control.on_event(&ev) {
                            fault("on_event", e);
                        }
                    }
                    ControlJob::Start(snap) => {
                        if let RResult::RErr(e) = control.start(&snap) {
                            fault("start", e);
                        }
                    }
                    ControlJob::Resync(snap) => {
                        if let RResult::RErr(e) = control.resync(&snap) {
                            fault("resync", e);
                        }
                    }
                    ControlJob::Intercept { token, request } => {
                        let result = control.intercept(&request).into_result();
                        if token != 0 {
                            let _ = inbox.send(DesktopMsg::Verdict { token, result });
                        } else if let Err(e) = result {
                            fault("intercept", e);
                        }
                    }
                    ControlJob::Stop => break,
                }
            }
            if let RResult::RErr(e) = control.stop() {
                tracing::warn!(
                    plugin = idx,
                    "control stop failed: {}",
                    crate::privacy::text(&e.to_string())
                );
            }
        })?;
    Ok(Worker {
        tx,
        rx: keep_rx,
        thread: Some(thread),
        done,
    })
}

/// Signals "thread ended" when dropped, even on unwind.
struct DoneGuard(Sender<()>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.0.try_send(());
    }
}

/// Result of a command, as the desktop reports it.
pub type CommandResult = Result<Outcome, PluginError>;

/// Converts a host string for FFI.
pub fn rs(s: &str) -> RString {
    RString::from(s)
}

/// What a hosted control needs to build instances of itself: its manifest
/// entry and its current library (replaced by a hot reload).
#[derive(Clone, Debug)]
pub struct PluginSource {
    /// The manifest entry.
    pub hc: crate::manifest::HostedControl,
    /// The loaded library.
    pub lib: crate::loader::Library,
}

/// Builds plugin instances and their workers (first start, restarts,
/// reloads).
#[derive(Clone)]
pub struct Spawner {
    /// The desktop's inbox.
    pub inbox: Sender<DesktopMsg>,
    /// Request ids shared by every submitter.
    pub ids: Arc<AtomicU64>,
    /// `[desktop] agent_id`.
    pub agent_id: String,
    /// Each control's queue capacity.
    pub control_queue: usize,
    /// Each connector's mailbox capacity.
    pub connector_mailbox: usize,
}

impl Spawner {
    /// The manifest entry as the plugin sees it.
    pub fn hosted_info(&self, hc: &crate::manifest::HostedControl) -> HostedInfo {
        use crate::manifest::ControlType;
        HostedInfo {
            name: rs(&hc.name),
            channel: match hc.kind {
                ControlType::Connector => rs(&hc.channel),
                ControlType::Control => RString::new(),
            },
            connection: hc.connection,
            poll_interval_ms: hc.poll_interval_ms,
            agent_id: rs(&self.agent_id),
        }
    }

    /// Builds a connector instance (its constructor only).
    ///
    /// # Errors
    /// What the plugin's constructor returned.
    pub fn new_connector(
        &self,
        idx: usize,
        src: &PluginSource,
    ) -> Result<ConnectorBox, PluginError> {
        let ctx = HostCtx::new(
            PluginId::Connector(idx),
            self.hosted_info(&src.hc),
            self.inbox.clone(),
            self.ids.clone(),
        );
        (src.lib.module.new_connector())(ctx.into_handle(), RStr::from(src.hc.settings.as_str()))
            .into_result()
    }

    /// Builds a control instance (its constructor only).
    ///
    /// # Errors
    /// What the plugin's constructor returned.
    pub fn new_control(&self, idx: usize, src: &PluginSource) -> Result<ControlBox, PluginError> {
        let ctx = HostCtx::new(
            PluginId::Control(idx),
            self.hosted_info(&src.hc),
            self.inbox.clone(),
            self.ids.clone(),
        );
        (src.lib.module.new_control())(ctx.into_handle(), RStr::from(src.hc.settings.as_str()))
            .into_result()
    }

    /// Starts a built connector on its own thread; `calls` are the live
    /// calls it owned (restart, reload).
    ///
    /// # Errors
    /// When the thread cannot start.
    pub fn run_connector(
        &self,
        idx: usize,
        src: &PluginSource,
        connector: ConnectorBox,
        calls: Vec<CallInfo>,
    ) -> std::io::Result<Worker<ConnectorJob>> {
        spawn_connector(
            idx,
            &src.hc.name,
            connector,
            src.hc.connection,
            Duration::from_millis(src.hc.poll_interval_ms),
            calls,
            self.connector_mailbox,
            self.inbox.clone(),
        )
    }

    /// Starts a built control on its own thread (send it `Start` next).
    ///
    /// # Errors
    /// When the thread cannot start.
    pub fn run_control(
        &self,
        idx: usize,
        src: &PluginSource,
        control: ControlBox,
    ) -> std::io::Result<Worker<ControlJob>> {
        spawn_control(
            idx,
            &src.hc.name,
            control,
            self.control_queue,
            self.inbox.clone(),
        )
    }
}
