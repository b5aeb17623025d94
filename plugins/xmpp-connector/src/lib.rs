//! xmpp-connector: the chat channel over XMPP (instance model).
//!
//! The connector logs in to an XMPP server as the agent's account. A chat
//! message from a customer's address that has no open conversation offers a
//! new interaction; the agent accepts or rejects it, exchanges messages,
//! transfers it to another agent's account, or ends it. The customer going
//! offline ends it too. See `docs/channels.md` for the admin guide.
//!
//! # Events
//! `state` is the agent's connection state after the event; call ids are
//! `xmpp-<n>`; the customer is the bare JID (`ani`), the agent's account
//! is `dnis`.
//!
//! | what happens | events |
//! |---|---|
//! | first message from a customer | `Delivered` (new call, Alerting, data `subject`/`thread` when present), `MessageReceived` (text) |
//! | later message | `MessageReceived` (text, party = customer) |
//! | chat state (XEP-0085) | `Typing` (text = `composing`, `paused`, `active`, `inactive`, `gone`) |
//! | `Answer` | `Established` (Connected) |
//! | `Reject` | (`reject_message` to the customer) `ConnectionCleared` (Null, party = agent, cause `Rejected`), `CallCleared` |
//! | `SendMessage` (text) | the message goes out, then `MessageSent` (text, party = agent) |
//! | `SendTyping` (text, default `composing`) | a chat-state notification to the customer; no event |
//! | `Hangup` | (`closing_message`) `ConnectionCleared` (Null, party = agent, cause `Hangup`), `CallCleared` |
//! | `BlindTransfer` (target = agent JID) | hand-over to the target account, (`transfer_message` to the customer) `Transferred` (party = agent, text = target), `ConnectionCleared` (cause `Transferred`), `CallCleared` |
//! | customer goes offline (all resources unavailable) | `ParticipantLeft` (party = customer), `ConnectionCleared` (Null, party = customer, cause `CustomerLeft`), `CallCleared` |
//! | link | `LinkUp` (after login and a round trip), `LinkDown` (cause), `LinkReconnecting` |
//!
//! # Transfer
//! XMPP has no redirect: a blind transfer sends the *target agent's account*
//! a hand-over message — a readable transcript as its body, plus a
//! `<transfer xmlns='urn:x-cti-host:chat-transfer:0'>` element with the
//! customer's address, thread, subject and the transcript lines. A target
//! running this connector (with the sender in its `transfer_peers`) offers
//! the chat to its agent as a new interaction (`transferred_from` in the
//! call data, the transcript as `MessageReceived` events with attr
//! `history=true`); once answered, its replies go to the customer from the
//! target's account. A target on an ordinary XMPP client sees the
//! transcript and can write to the customer. For `forward_minutes` after the
//! transfer, the customer's messages that still reach this account, and
//! their going offline, are passed on to the target.
//!
//! # First messages are never lost
//! The connector reads its own XML stream (tokio-xmpp's low-level
//! `XmlStream`, see [`wire`]): there is no background client whose queue
//! could stall. After binding it sends available presence, then a ping,
//! and reports `LinkUp` only when the ping is answered — so the server has
//! processed the presence and routes customers' messages to it. Whatever
//! arrives before, during or after that is handled by the one loop.
#![deny(unsafe_code)]

pub mod core;
mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod settings;
pub mod wire;

use std::{
    sync::{mpsc as std_mpsc, Arc, Mutex, PoisonError},
    thread::JoinHandle,
    time::Duration,
};

use cti_plugin_api::sdk::prelude::*;
use tokio::sync::mpsc;

pub use engine::{EmitFn, Job, LogFn};
pub use settings::XmppSettings;
/// The XMPP library the connector is built on (for clients in tests).
pub use tokio_xmpp;

/// The commands the XMPP connector supports.
pub const CAPABILITIES: Capabilities = Capabilities::from_kinds(&[
    CommandKind::ANSWER,
    CommandKind::REJECT,
    CommandKind::HANGUP,
    CommandKind::SEND_MESSAGE,
    CommandKind::SEND_TYPING,
    CommandKind::BLIND_TRANSFER,
]);

/// How long `execute` waits for the session loop (below the host's
/// default `execute_timeout_ms` of 5 s).
const EXECUTE_WAIT: Duration = Duration::from_millis(4500);

struct Running {
    jobs: mpsc::UnboundedSender<Job>,
    done: std_mpsc::Receiver<()>,
    thread: JoinHandle<()>,
}

/// The XMPP chat connector.
pub struct XmppConnector {
    cfg: XmppSettings,
    emit: EmitFn,
    log: LogFn,
    calls: Arc<Mutex<Vec<CallInfo>>>,
    running: Option<Running>,
}

impl XmppConnector {
    /// A connector raising events through `emit` and logging through `log`.
    pub fn with_parts(cfg: XmppSettings, emit: EmitFn, log: LogFn) -> Self {
        Self {
            cfg,
            emit,
            log,
            calls: Arc::default(),
            running: None,
        }
    }

    fn stop_running(&mut self) {
        let Some(r) = self.running.take() else {
            return;
        };
        let _ = r.jobs.send(Job::Stop);
        // The loop closes the stream within 2 s; never hang the host.
        if r.done.recv_timeout(Duration::from_secs(4)).is_ok() {
            let _ = r.thread.join();
        } else {
            (self.log)(
                LogLevel::Warn,
                "xmpp-connector: the session thread did not stop in time; abandoned",
            );
        }
    }
}

impl NewConnector for XmppConnector {
    fn new(host: Host, settings: Settings) -> Result<Self, PluginError> {
        let cfg = XmppSettings::from_settings(&settings)?;
        let emit_host = host.clone();
        let emit: EmitFn = Arc::new(move |e| {
            if let Err(err) = emit_host.emit(e) {
                emit_host.warn(&format!("xmpp-connector: event dropped: {err}"));
            }
        });
        let log: LogFn = Arc::new(move |level, msg| host.log(level, msg));
        Ok(Self::with_parts(cfg, emit, log))
    }
}

impl Connector for XmppConnector {
    const CAPABILITIES: Capabilities = CAPABILITIES;

    fn start(&mut self, calls: Vec<CallInfo>) -> Result<(), PluginError> {
        self.stop_running();
        if self.cfg.plaintext_off_loopback() {
            (self.log)(
                LogLevel::Warn,
                &format!(
                    "xmpp-connector: tls = \"none\" to {}, which is not this machine: chats travel unencrypted",
                    self.cfg.connect.server
                ),
            );
        }
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = std_mpsc::channel();
        let engine = engine::Engine::new(
            self.cfg.clone(),
            &calls,
            Arc::clone(&self.emit),
            Arc::clone(&self.log),
            jobs_rx,
            Arc::clone(&self.calls),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                PluginError::new(ErrorKind::INTERNAL, format!("cannot build a runtime: {e}"))
            })?;
        let thread = std::thread::Builder::new()
            .name("xmpp-connector".into())
            .spawn(move || {
                runtime.block_on(engine.run());
                drop(runtime);
                let _ = done_tx.send(());
            })
            .map_err(|e| {
                PluginError::new(ErrorKind::INTERNAL, format!("cannot start a thread: {e}"))
            })?;
        self.running = Some(Running {
            jobs: jobs_tx,
            done: done_rx,
            thread,
        });
        (self.log)(
            LogLevel::Info,
            &format!(
                "xmpp-connector started: {} at {} ({:?}), {} chat(s) adopted",
                self.cfg.connect.jid,
                self.cfg.connect.server,
                self.cfg.connect.security,
                calls.len()
            ),
        );
        Ok(())
    }

    fn execute(&mut self, command: &Command) -> Result<Outcome, PluginError> {
        if !CAPABILITIES.contains(command.kind) {
            return Err(unsupported(command));
        }
        let Some(r) = &self.running else {
            return Err(PluginError::new(
                ErrorKind::UNAVAILABLE,
                "the XMPP connector is not started",
            ));
        };
        let (tx, rx) = std_mpsc::sync_channel(1);
        r.jobs
            .send(Job::Execute(Box::new(command.clone()), tx))
            .map_err(|_| {
                PluginError::new(ErrorKind::UNAVAILABLE, "the session loop has stopped")
            })?;
        rx.recv_timeout(EXECUTE_WAIT).unwrap_or_else(|_| {
            Err(PluginError::new(
                ErrorKind::TIMEOUT,
                format!("{} got no answer from the session loop", command.kind),
            ))
        })
    }

    fn calls(&self) -> Vec<CallInfo> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        self.stop_running();
        Ok(())
    }
}

impl Drop for XmppConnector {
    fn drop(&mut self) {
        self.stop_running();
    }
}

cti_plugin_api::export_plugin!(connector = XmppConnector);
