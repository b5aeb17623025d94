//! The connector's session loop, on its own single-threaded tokio runtime:
//! connect, serve stanzas and commands, report the link, reconnect with
//! backoff.

use std::{
    sync::{mpsc as std_mpsc, Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use cti_plugin_api::sdk::prelude::*;
use tokio::sync::mpsc;
use tokio_xmpp::{
    parsers::{
        iq::Iq,
        presence::{Presence, Type as PresenceType},
        stanza_error::{DefinedCondition, ErrorType, StanzaError},
    },
    Stanza,
};

use crate::{
    core::{link_down, Core, Out},
    settings::XmppSettings,
    wire::{self, ConnectError, Link, Recv},
};

/// Raises an event (the host in production, a closure in tests).
pub type EmitFn = Arc<dyn Fn(ConnectorEvent) + Send + Sync>;
/// Logs (the host in production).
pub type LogFn = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

/// A request from the connector's `execute`/`stop`.
pub enum Job {
    /// Carry out a command and reply.
    Execute(
        Box<Command>,
        std_mpsc::SyncSender<Result<Outcome, PluginError>>,
    ),
    /// Close the session and end the loop.
    Stop,
}

/// How a session ended.
enum End {
    Stop,
    Lost(String),
}

/// The loop's state.
pub struct Engine {
    cfg: XmppSettings,
    core: Core,
    emit: EmitFn,
    log: LogFn,
    jobs: mpsc::UnboundedReceiver<Job>,
    calls: Arc<Mutex<Vec<CallInfo>>>,
    /// The last link status raised (so a repeated one is not raised again).
    link: Option<EventKind>,
}

impl Engine {
    /// A loop for `cfg`, adopting `adopted` live chats.
    pub fn new(
        cfg: XmppSettings,
        adopted: &[CallInfo],
        emit: EmitFn,
        log: LogFn,
        jobs: mpsc::UnboundedReceiver<Job>,
        calls: Arc<Mutex<Vec<CallInfo>>>,
    ) -> Self {
        let mut core = Core::new(cfg.connect.jid.clone(), cfg.core.clone());
        core.adopt(adopted);
        let engine = Self {
            cfg,
            core,
            emit,
            log,
            jobs,
            calls,
            link: None,
        };
        engine.publish();
        engine
    }

    fn publish(&self) {
        *self.calls.lock().unwrap_or_else(PoisonError::into_inner) = self.core.calls();
    }

    fn raise(&mut self, events: Vec<ConnectorEvent>) {
        if events.is_empty() {
            return;
        }
        for e in events {
            (self.emit)(e);
        }
        self.publish();
    }

    fn link_event(&mut self, kind: EventKind, cause: &str) {
        if self.link == Some(kind) && kind != EventKind::LINK_DOWN {
            return;
        }
        self.link = Some(kind);
        (self.emit)(ConnectorEvent::new(kind, "", ConnectionState::Null).with_cause(cause));
    }

    fn account(&self) -> String {
        self.cfg.connect.jid.to_string()
    }

    /// Runs until `Stop`.
    pub async fn run(mut self) {
        let mut delay = self.cfg.reconnect_min;
        let mut attempt: u64 = 0;
        let mut last_error = String::new();
        loop {
            attempt += 1;
            if attempt > 1 {
                let cause = format!("attempt {attempt}");
                self.link_event(EventKind::LINK_RECONNECTING, &cause);
            }
            let opts = self.cfg.connect.clone();
            let connecting = wire::connect(&opts);
            tokio::pin!(connecting);
            let result = loop {
                tokio::select! {
                    r = &mut connecting => break Some(r),
                    job = self.jobs.recv() => {
                        if !self.offline_job(job) {
                            break None;
                        }
                    }
                }
            };
            let Some(result) = result else { return };
            match result {
                Ok(link) => {
                    delay = self.cfg.reconnect_min;
                    last_error.clear();
                    (self.log)(
                        LogLevel::Info,
                        &format!("xmpp-connector: logged in as {}", link.bound),
                    );
                    match self.session(link).await {
                        End::Stop => return,
                        End::Lost(why) => {
                            let cause =
                                format!("connection to {} lost: {why}", self.cfg.connect.server);
                            (self.log)(LogLevel::Warn, &format!("xmpp-connector: {cause}"));
                            self.link_event(EventKind::LINK_DOWN, &cause);
                            // Reconnect at once the first time (reported as
                            // Reconnecting: attempt 2 of this outage).
                            attempt = 1;
                            continue;
                        }
                    }
                }
                Err(ConnectError::Auth(cond)) => {
                    let cause = format!(
                        "authentication failed for {} ({cond}): check the account's password; not retrying until the connector is restarted",
                        self.account()
                    );
                    (self.log)(LogLevel::Error, &format!("xmpp-connector: {cause}"));
                    self.link_event(EventKind::LINK_DOWN, &cause);
                    // Wait for stop only: hammering the server with a wrong
                    // password can lock the account.
                    while let Some(job) = self.jobs.recv().await {
                        if !self.offline_job(Some(job)) {
                            return;
                        }
                    }
                    return;
                }
                Err(e) => {
                    let cause = format!(
                        "cannot log in as {} at {}: {e}",
                        self.account(),
                        self.cfg.connect.server
                    );
                    if cause != last_error {
                        (self.log)(
                            LogLevel::Warn,
                            &format!("xmpp-connector: {cause} (retrying with backoff)"),
                        );
                        last_error.clone_from(&cause);
                    }
                    self.link_event(EventKind::LINK_DOWN, &cause);
                }
            }
            let wake = tokio::time::Instant::now() + delay;
            delay = (delay * 2).min(self.cfg.reconnect_max);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => break,
                    job = self.jobs.recv() => {
                        if !self.offline_job(job) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// A job while there is no session. False: stop.
    fn offline_job(&mut self, job: Option<Job>) -> bool {
        match job {
            None | Some(Job::Stop) => false,
            Some(Job::Execute(cmd, reply)) => {
                let r = match cmd.kind {
                    CommandKind::SEND_MESSAGE
                    | CommandKind::SEND_TYPING
                    | CommandKind::BLIND_TRANSFER => Err(link_down()),
                    _ => self.core.execute(&cmd, false).map(|out| {
                        self.raise(out.events);
                        Outcome::default()
                    }),
                };
                let _ = reply.send(r);
                true
            }
        }
    }

    async fn session(&mut self, mut link: Link) -> End {
        // Available presence first (the server routes messages to the
        // bare JID only to available resources; offline messages are
        // delivered after it), then a ping: its answer proves the server
        // has processed the presence, so "Connected" means customers'
        // messages reach us. Everything that arrives meanwhile is handled
        // by the same loop below: nothing is read anywhere else.
        if let Err(e) = link.send(Presence::new(PresenceType::None)).await {
            return End::Lost(e.to_string());
        }
        let ready_id = link.next_id("ready");
        if let Err(e) = link.ping(&ready_id).await {
            return End::Lost(e.to_string());
        }
        let mut ready = false;
        loop {
            tokio::select! {
                job = self.jobs.recv() => match job {
                    None | Some(Job::Stop) => {
                        link.close(Duration::from_secs(2)).await;
                        return End::Stop;
                    }
                    Some(Job::Execute(cmd, reply)) => {
                        let (result, broken) = self.execute(&mut link, &cmd).await;
                        let _ = reply.send(result);
                        if let Some(why) = broken {
                            return End::Lost(why);
                        }
                    }
                },
                r = link.recv() => match r {
                    Recv::Stanza(Stanza::Message(m)) => {
                        let out = self.core.on_message(m, Instant::now());
                        if let Some(why) = self.apply(&mut link, out).await {
                            return End::Lost(why);
                        }
                    }
                    Recv::Stanza(Stanza::Presence(p)) => {
                        let out = self.core.on_presence(p);
                        if let Some(why) = self.apply(&mut link, out).await {
                            return End::Lost(why);
                        }
                    }
                    Recv::Stanza(Stanza::Iq(iq)) => {
                        if !ready && iq.id() == ready_id {
                            ready = true;
                            let cause = format!("logged in as {}", link.bound);
                            self.link_event(EventKind::LINK_UP, &cause);
                        } else if let Some(reply) = answer_iq(iq) {
                            if let Err(e) = link.send(reply).await {
                                return End::Lost(e.to_string());
                            }
                        }
                    }
                    Recv::Idle => {
                        let id = link.next_id("keepalive");
                        if let Err(e) = link.ping(&id).await {
                            return End::Lost(e.to_string());
                        }
                    }
                    Recv::Closed(why) => return End::Lost(why),
                },
            }
        }
    }

    /// Sends `out`'s stanzas, then raises its events. Some(reason) when the
    /// connection broke.
    async fn apply(&mut self, link: &mut Link, out: Out) -> Option<String> {
        let mut broken = None;
        for s in out.stanzas {
            if let Err(e) = link.send(s).await {
                broken = Some(e.to_string());
                break;
            }
        }
        self.raise(out.events);
        broken
    }

    /// A command with a session. Returns the result and, when the
    /// connection broke, why.
    async fn execute(
        &mut self,
        link: &mut Link,
        cmd: &Command,
    ) -> (Result<Outcome, PluginError>, Option<String>) {
        let failed = |e: &std::io::Error| {
            PluginError::new(
                ErrorKind::LINK_DOWN,
                format!("the XMPP server connection broke while sending: {e}"),
            )
        };
        match cmd.kind {
            CommandKind::SEND_MESSAGE => {
                let stanza = match self.core.prepare_send(cmd) {
                    Ok(s) => s,
                    Err(e) => return (Err(e), None),
                };
                if let Err(e) = link.send(stanza).await {
                    return (Err(failed(&e)), Some(e.to_string()));
                }
                let events = self
                    .core
                    .sent(cmd.call_id.as_str(), cmd.text.as_str())
                    .into_iter()
                    .collect();
                self.raise(events);
                (Ok(Outcome::default()), None)
            }
            CommandKind::BLIND_TRANSFER => {
                let (target, stanzas) = match self.core.prepare_transfer(cmd) {
                    Ok(t) => t,
                    Err(e) => return (Err(e), None),
                };
                let mut stanzas = stanzas.into_iter();
                // The hand-over must go out; the notice to the customer is
                // a courtesy.
                if let Some(handover) = stanzas.next() {
                    if let Err(e) = link.send(handover).await {
                        return (Err(failed(&e)), Some(e.to_string()));
                    }
                }
                let mut broken = None;
                for s in stanzas {
                    if let Err(e) = link.send(s).await {
                        broken = Some(e.to_string());
                    }
                }
                let events = self
                    .core
                    .transferred(cmd.call_id.as_str(), &target, Instant::now());
                self.raise(events);
                let outcome = Outcome {
                    call_id: RString::new(),
                    detail: format!("handed over to {target}").into(),
                };
                (Ok(outcome), broken)
            }
            _ => match self.core.execute(cmd, true) {
                Ok(out) => {
                    let broken = self.apply(link, out).await;
                    (Ok(Outcome::default()), broken)
                }
                Err(e) => (Err(e), None),
            },
        }
    }
}

/// The reply an IQ get/set needs (RFC 6120 §8.2.3): pong for pings,
/// `service-unavailable` for the rest. Results and errors need none.
fn answer_iq(iq: Iq) -> Option<Stanza> {
    match iq {
        Iq::Get {
            from, id, payload, ..
        } if payload.is("ping", tokio_xmpp::parsers::ns::PING) => Some(Stanza::Iq(Iq::Result {
            from: None,
            to: from,
            id,
            payload: None,
        })),
        Iq::Get { from, id, .. } | Iq::Set { from, id, .. } => {
            let error = StanzaError::new(
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "en",
                "",
            );
            let mut r = Iq::from_error(id, error);
            *r.to_mut() = from;
            Some(Stanza::Iq(r))
        }
        _ => None,
    }
}
