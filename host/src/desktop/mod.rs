//! The desktop manager: one actor that owns every call, work item and the
//! agent state, fed by one bounded inbox.
//!
//! Connector events, control commands, command outcomes and queries all
//! arrive as [`DesktopMsg`]s on a crossbeam channel; the actor runs on its
//! own thread, so any plugin thread (including one inside a plugin's own
//! tokio runtime) can send with plain blocking back-pressure, and no lock
//! guards desktop state. [`DesktopHandle`] is the cheap, cloneable way in.

mod actor;
pub mod call;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

use crossbeam_channel::Sender;
use cti_plugin_api::{
    Command, ConnectorEvent, DesktopEvent, DesktopSnapshot, ErrorKind, PluginError,
};

pub use actor::{ActorSettings, ConnectorSlot, ControlSlot, DesktopActor, ReplayTimer};

use crate::plugin::{CommandResult, PluginId};

/// Everything the desktop actor receives.
pub enum DesktopMsg {
    /// One event from a connector (instance model).
    Event {
        /// Index of the connector.
        connector: usize,
        /// The event.
        event: ConnectorEvent,
    },
    /// Events from one poll (polling model).
    Events {
        /// Index of the connector.
        connector: usize,
        /// The events, in order.
        events: Vec<ConnectorEvent>,
    },
    /// A command from a control or from `cti-host ctl`.
    Submit {
        /// Who sent it (hosted control name, or `ctl`).
        source: String,
        /// The request id given to the sender.
        request_id: u64,
        /// The command.
        command: Command,
        /// Where to send the outcome, besides the controls.
        reply: Option<tokio::sync::oneshot::Sender<CommandResult>>,
    },
    /// A connector finished a command.
    Outcome {
        /// Index of the connector.
        connector: usize,
        /// The request id.
        request_id: u64,
        /// What it returned.
        result: CommandResult,
    },
    /// A plugin method failed (error or caught panic).
    PluginFault {
        /// Which instance.
        plugin: PluginId,
        /// The method.
        during: &'static str,
        /// The error.
        error: PluginError,
    },
    /// A snapshot of the desktop.
    Snapshot(tokio::sync::oneshot::Sender<DesktopSnapshot>),
    /// Stream every event from now on (for `ctl events`).
    Subscribe(tokio::sync::mpsc::Sender<Arc<DesktopEvent>>),
    /// A changed plugin file loaded and passed every check: swap it in.
    Reload {
        /// The hosted control.
        name: String,
        /// The new library.
        library: crate::loader::Library,
        /// When the file was seen to change (for `took_ms`).
        changed_at: std::time::Instant,
    },
    /// A changed plugin file was refused; the running version stays.
    ReloadFailed {
        /// The hosted control.
        name: String,
        /// Why.
        reason: String,
    },
    /// An interceptor's answer (`token` 0: an After notification's).
    Verdict {
        /// The parked command's token.
        token: u64,
        /// What the control said.
        result: Result<cti_plugin_api::Verdict, PluginError>,
    },
    /// An administrator restarts a plugin instance (`cti-host ctl restart`):
    /// a Faulted one comes back with a fresh restart budget, a running one
    /// is stopped and started again (a connector adopts its live calls).
    Restart {
        /// The hosted control.
        name: String,
        /// What happened, or why not.
        reply: tokio::sync::oneshot::Sender<Result<String, String>>,
    },
    /// Stop every plugin and end the actor.
    Shutdown,
}

/// A cheap handle to the running desktop.
#[derive(Clone)]
pub struct DesktopHandle {
    inbox: Sender<DesktopMsg>,
    request_ids: Arc<AtomicU64>,
}

fn stopped() -> PluginError {
    PluginError::new(ErrorKind::UNAVAILABLE, "the desktop has stopped")
}

impl DesktopHandle {
    /// A handle on `inbox`, sharing request ids with the plugins.
    pub fn new(inbox: Sender<DesktopMsg>, request_ids: Arc<AtomicU64>) -> Self {
        Self { inbox, request_ids }
    }

    /// Runs a command and waits for its outcome.
    ///
    /// # Errors
    /// The typed refusal or failure.
    pub async fn command(&self, source: &str, command: Command) -> CommandResult {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let request_id = self.request_ids.fetch_add(1, Ordering::Relaxed);
        let inbox = self.inbox.clone();
        let msg = DesktopMsg::Submit {
            source: source.to_owned(),
            request_id,
            command,
            reply: Some(tx),
        };
        send_blocking(inbox, msg).await?;
        rx.await.map_err(|_| stopped())?
    }

    /// Restarts the plugin instance `name` (see [`DesktopMsg::Restart`]):
    /// the inner result says what happened, or why not.
    ///
    /// # Errors
    /// When the desktop has stopped.
    pub async fn restart(&self, name: &str) -> Result<Result<String, String>, PluginError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let msg = DesktopMsg::Restart {
            name: name.to_owned(),
            reply: tx,
        };
        send_blocking(self.inbox.clone(), msg).await?;
        rx.await.map_err(|_| stopped())
    }

    /// The desktop's current state.
    ///
    /// # Errors
    /// When the desktop has stopped.
    pub async fn snapshot(&self) -> Result<DesktopSnapshot, PluginError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        send_blocking(self.inbox.clone(), DesktopMsg::Snapshot(tx)).await?;
        rx.await.map_err(|_| stopped())
    }

    /// Every event from now on.
    ///
    /// # Errors
    /// When the desktop has stopped.
    pub async fn subscribe(
        &self,
        capacity: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<Arc<DesktopEvent>>, PluginError> {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        send_blocking(self.inbox.clone(), DesktopMsg::Subscribe(tx)).await?;
        Ok(rx)
    }

    /// The desktop's inbox, for host components (the reload watcher).
    pub fn inbox(&self) -> Sender<DesktopMsg> {
        self.inbox.clone()
    }

    /// Asks the desktop to stop (returns at once).
    pub fn shutdown(&self) {
        let _ = self.inbox.try_send(DesktopMsg::Shutdown).or_else(|e| {
            // The inbox is full: hand the (blocking) send to a thread.
            let inbox = self.inbox.clone();
            let msg = e.into_inner();
            std::thread::spawn(move || {
                let _ = inbox.send(msg);
            });
            Ok::<(), ()>(())
        });
    }
}

/// Sends on the crossbeam inbox without blocking the async runtime.
async fn send_blocking(inbox: Sender<DesktopMsg>, msg: DesktopMsg) -> Result<(), PluginError> {
    match inbox.try_send(msg) {
        Ok(()) => Ok(()),
        Err(crossbeam_channel::TrySendError::Disconnected(_)) => Err(stopped()),
        Err(crossbeam_channel::TrySendError::Full(msg)) => {
            tokio::task::spawn_blocking(move || inbox.send(msg).map_err(|_| stopped()))
                .await
                .map_err(|_| stopped())?
        }
    }
}

/// The running desktop: its handle and its thread.
pub struct RunningDesktop {
    /// The handle.
    pub handle: DesktopHandle,
    /// The actor's thread; ends after `Shutdown`.
    pub thread: JoinHandle<()>,
}
