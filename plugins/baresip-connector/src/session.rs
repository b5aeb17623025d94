//! The I/O side: one session thread per connector instance owns the
//! connection to ctrl_tcp, the model ([`Core`]) and every request to
//! baresip; a reader thread per connection turns bytes into messages.
//!
//! ```text
//!  execute() ──Request──▶ session thread ──netstring JSON──▶ baresip ctrl_tcp
//!     ▲  reply channel        │   ▲                                │
//!     └───────────────────────┘   └──Incoming── reader thread ◀────┘
//!                             │
//!                             └── Host::emit (CSTA events, in baresip's order)
//! ```
//!
//! Requests are carried out one at a time. While the session waits for the
//! reply of a request it keeps handling every other message in arrival order,
//! so an event that baresip sends before the reply that caused it (it does:
//! `CALL_CLOSED` precedes the reply of `hangup`) is applied first, as it
//! happened. Replies are matched by token.

use std::{
    collections::VecDeque,
    io::{Read, Write},
    net::{Shutdown, TcpStream, ToSocketAddrs},
    sync::{Arc, Mutex, PoisonError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::{select, Receiver, Sender};
use cti_plugin_api::sdk::prelude::*;

use crate::{
    core::{Core, PhoneCall, Prev, Reaction, Task},
    netstring::{self, Decoder},
    proto::{self, Message, Response},
    sockopt,
};

/// The session's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// ctrl_tcp host.
    pub host: String,
    /// ctrl_tcp port.
    pub port: u16,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Budget of one desktop command (all its requests).
    pub command_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// The baresip account to use (empty: baresip's current one).
    pub account: String,
}

impl Config {
    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A command for the session, with where to send the result.
struct Request {
    command: Command,
    reply: Sender<Result<Outcome, PluginError>>,
    deadline: Instant,
}

/// The connector's handle on its session thread.
pub struct Handle {
    req_tx: Sender<Request>,
    stop_tx: Sender<()>,
    thread: Option<JoinHandle<()>>,
    snapshot: Arc<Mutex<Vec<CallInfo>>>,
    command_timeout: Duration,
}

impl Handle {
    /// Starts the session thread; it connects on its own.
    ///
    /// # Errors
    /// The thread cannot be created.
    pub fn spawn(host: Host, cfg: Config, adopted: Vec<CallInfo>) -> Result<Self, PluginError> {
        let (req_tx, req_rx) = crossbeam_channel::unbounded();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let core = Core::new(&cfg.account, adopted);
        let snapshot = Arc::new(Mutex::new(core.infos()));
        let command_timeout = cfg.command_timeout;
        let session = Session {
            host,
            backoff: cfg.reconnect_min,
            cfg,
            core,
            req_rx,
            stop_rx,
            conn: None,
            token: 0,
            link: Link::Unknown,
            tasks: VecDeque::new(),
            snapshot: Arc::clone(&snapshot),
            stopping: false,
            retry_at: Instant::now(),
            failures: 0,
            next_warning: 10,
        };
        let thread = std::thread::Builder::new()
            .name("baresip-session".to_owned())
            .spawn(move || session.run())
            .map_err(|e| {
                PluginError::new(
                    ErrorKind::INTERNAL,
                    format!("cannot start the baresip session thread: {e}"),
                )
            })?;
        Ok(Self {
            req_tx,
            stop_tx,
            thread: Some(thread),
            snapshot,
            command_timeout,
        })
    }

    /// Runs a command and waits for its result (bounded by the command
    /// timeout; a command still queued at its deadline is not carried out).
    ///
    /// # Errors
    /// What baresip or the connector's checks said, `LinkDown`, `Timeout`.
    pub fn execute(&self, command: &Command) -> Result<Outcome, PluginError> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        let deadline = Instant::now() + self.command_timeout;
        self.req_tx
            .send(Request {
                command: command.clone(),
                reply,
                deadline,
            })
            .map_err(|_| PluginError::new(ErrorKind::UNAVAILABLE, "the connector is stopped"))?;
        rx.recv_timeout(self.command_timeout + Duration::from_millis(200))
            .unwrap_or_else(|_| {
                Err(PluginError::new(
                    ErrorKind::TIMEOUT,
                    format!(
                        "{} did not complete within {} ms",
                        command.kind,
                        self.command_timeout.as_millis()
                    ),
                ))
            })
    }

    /// The calls as the connector knows them now.
    pub fn calls(&self) -> Vec<CallInfo> {
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the session: closes the socket and joins the threads.
    pub fn stop(&mut self) {
        let _ = self.stop_tx.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the reader thread passes on.
enum Incoming {
    Msg(Message),
    /// Bytes that are not ctrl_tcp's protocol.
    Garbage(String),
    /// The connection ended.
    Closed(String),
}

/// One connection to ctrl_tcp.
struct Conn {
    stream: TcpStream,
    rx: Receiver<Incoming>,
    reader: Option<JoinHandle<()>>,
    since: Instant,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(t) = self.reader.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Unknown,
    Up,
    Down,
    Reconnecting,
}

fn err(kind: ErrorKind, msg: impl Into<String>) -> PluginError {
    PluginError::new(kind, msg.into())
}

struct Session {
    host: Host,
    cfg: Config,
    core: Core,
    req_rx: Receiver<Request>,
    stop_rx: Receiver<()>,
    conn: Option<Conn>,
    token: u64,
    link: Link,
    tasks: VecDeque<Task>,
    snapshot: Arc<Mutex<Vec<CallInfo>>>,
    stopping: bool,
    backoff: Duration,
    retry_at: Instant,
    failures: u64,
    next_warning: u64,
}

impl Session {
    fn run(mut self) {
        while !self.stopping {
            if self.conn.is_none() {
                self.reconnect_step();
                continue;
            }
            self.serve_once();
            self.run_tasks();
        }
        self.conn = None;
        self.host
            .info(&format!("baresip connector stopped ({})", self.cfg.addr()));
    }

    // ------------------------------------------------------------ link

    fn log(&self, level: LogLevel, text: &str) {
        self.host.log(level, text);
    }

    fn set_link(&mut self, link: Link, cause: &str) {
        if self.link == link {
            return;
        }
        self.link = link;
        let kind = match link {
            Link::Up => EventKind::LINK_UP,
            Link::Down => EventKind::LINK_DOWN,
            Link::Reconnecting => EventKind::LINK_RECONNECTING,
            Link::Unknown => return,
        };
        self.emit(ConnectorEvent::new(kind, "", ConnectionState::Null).with_cause(cause));
    }

    fn emit(&self, ev: ConnectorEvent) {
        if let Err(e) = self.host.emit(ev) {
            self.log(LogLevel::Debug, &format!("event not delivered: {e}"));
        }
    }

    fn publish(&self) {
        *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) = self.core.infos();
    }

    fn apply(&mut self, r: Reaction) {
        for (level, text) in &r.logs {
            self.log(*level, text);
        }
        let changed = !r.events.is_empty();
        for ev in r.events {
            self.emit(ev);
        }
        for t in r.tasks {
            self.queue(t);
        }
        if changed {
            self.publish();
        }
    }

    /// Queues follow-up work once.
    fn queue(&mut self, task: Task) {
        if !self.tasks.contains(&task) {
            self.tasks.push_back(task);
        }
    }

    /// Not connected: connect when the back-off allows, else wait for it
    /// (refusing commands meanwhile).
    fn reconnect_step(&mut self) {
        let now = Instant::now();
        if now < self.retry_at {
            self.idle_until(self.retry_at);
            return;
        }
        match self.connect() {
            Ok(conn) => {
                self.conn = Some(conn);
                self.failures = 0;
                self.next_warning = 10;
                self.log(
                    LogLevel::Info,
                    &format!("connected to baresip ctrl_tcp at {}", self.cfg.addr()),
                );
                self.set_link(Link::Up, &format!("connected to {}", self.cfg.addr()));
                self.tasks.clear();
                self.core.forget_lines();
                self.sync();
                self.run_tasks();
            }
            Err(why) => {
                self.failures += 1;
                let delay = self.backoff;
                self.retry_at = Instant::now() + delay;
                self.backoff = (self.backoff * 2).min(self.cfg.reconnect_max);
                match self.link {
                    Link::Unknown | Link::Up => {
                        self.log(
                            LogLevel::Warn,
                            &format!(
                                "cannot connect to baresip ctrl_tcp: {why}; retrying (up to every {} ms)",
                                self.cfg.reconnect_max.as_millis()
                            ),
                        );
                        self.set_link(Link::Down, &why);
                    }
                    Link::Down | Link::Reconnecting => {
                        self.set_link(Link::Reconnecting, &why);
                        // Warn on the 10th, 100th, 1000th… failure.
                        let level = if self.failures == self.next_warning {
                            self.next_warning = self.next_warning.saturating_mul(10);
                            LogLevel::Warn
                        } else {
                            LogLevel::Debug
                        };
                        self.log(
                            level,
                            &format!(
                                "still cannot connect to baresip ({why}); {} attempts so far",
                                self.failures
                            ),
                        );
                    }
                }
            }
        }
    }

    fn connect(&mut self) -> Result<Conn, String> {
        let addr = self.cfg.addr();
        let addrs: Vec<_> = (self.cfg.host.as_str(), self.cfg.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {addr}: {e}"))?
            .collect();
        let mut last = format!("{addr} has no address");
        let mut stream = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, self.cfg.connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        let stream = stream.ok_or(last)?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("{addr}: TCP_NODELAY: {e}"))?;
        if let Err(e) = sockopt::quickack(&stream) {
            self.log(LogLevel::Debug, &format!("TCP_QUICKACK not available: {e}"));
        }
        stream
            .set_write_timeout(Some(self.cfg.command_timeout))
            .map_err(|e| format!("{addr}: {e}"))?;
        let read_half = stream.try_clone().map_err(|e| format!("{addr}: {e}"))?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let reader = std::thread::Builder::new()
            .name("baresip-reader".to_owned())
            .spawn(move || reader(read_half, &tx))
            .map_err(|e| format!("cannot start the reader thread: {e}"))?;
        Ok(Conn {
            stream,
            rx,
            reader: Some(reader),
            since: Instant::now(),
        })
    }

    fn drop_conn(&mut self, cause: &str) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let lived = conn.since.elapsed();
        drop(conn);
        // A connection that dropped at once (another ctrl_tcp client took
        // over: ctrl_tcp keeps only the newest) keeps the back-off growing.
        if lived >= Duration::from_secs(2) {
            self.backoff = self.cfg.reconnect_min;
        }
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.cfg.reconnect_max);
        self.log(
            LogLevel::Warn,
            &format!(
                "lost the connection to baresip at {}: {cause}; reconnecting",
                self.cfg.addr()
            ),
        );
        self.set_link(Link::Down, cause);
    }

    /// Waits until `at`, refusing commands and watching for stop.
    fn idle_until(&mut self, at: Instant) {
        let req_rx = self.req_rx.clone();
        let stop_rx = self.stop_rx.clone();
        let left = at.saturating_duration_since(Instant::now());
        select! {
            recv(req_rx) -> r => match r {
                Ok(req) => {
                    let why = format!("not connected to baresip at {}", self.cfg.addr());
                    let _ = req.reply.send(Err(err(ErrorKind::LINK_DOWN, why)));
                }
                Err(_) => self.stopping = true,
            },
            recv(stop_rx) -> _ => self.stopping = true,
            default(left) => {}
        }
    }

    // ------------------------------------------------------------ serving

    fn serve_once(&mut self) {
        let Some(conn) = &self.conn else { return };
        let rx = conn.rx.clone();
        let req_rx = self.req_rx.clone();
        let stop_rx = self.stop_rx.clone();
        select! {
            recv(rx) -> m => match m {
                Ok(m) => self.incoming(m),
                Err(_) => self.drop_conn("the reader thread ended"),
            },
            recv(req_rx) -> r => match r {
                Ok(req) => self.handle_request(req),
                Err(_) => self.stopping = true,
            },
            recv(stop_rx) -> _ => self.stopping = true,
        }
    }

    fn incoming(&mut self, m: Incoming) {
        match m {
            Incoming::Msg(Message::Event(e)) => {
                if matches!(e.kind.as_str(), "SHUTDOWN" | "EXIT") {
                    self.log(LogLevel::Warn, "baresip is shutting down");
                    self.set_link(Link::Down, "baresip is shutting down");
                    return;
                }
                let r = self.core.on_event(&e);
                self.apply(r);
            }
            Incoming::Msg(Message::Response(r)) => self.log(
                LogLevel::Debug,
                &format!(
                    "late reply from baresip (token {:?}): {}",
                    r.token,
                    r.data.trim()
                ),
            ),
            Incoming::Msg(Message::Other(text)) => self.log(
                LogLevel::Warn,
                &format!("unexpected message from baresip ignored: {text}"),
            ),
            Incoming::Garbage(why) => {
                self.log(
                    LogLevel::Error,
                    &format!("garbage from baresip ctrl_tcp ({why}); dropping the connection"),
                );
                self.drop_conn(&format!("protocol error: {why}"));
            }
            Incoming::Closed(why) => self.drop_conn(&why),
        }
    }

    /// Follow-up work, when no command is waiting (commands go first: an
    /// answer should not queue behind a resync).
    fn run_tasks(&mut self) {
        while self.conn.is_some()
            && self.link == Link::Up
            && !self.stopping
            && self.req_rx.is_empty()
        {
            let Some(task) = self.tasks.pop_front() else {
                return;
            };
            match task {
                Task::Sync => self.sync(),
                Task::Resume(id) => self.resume_answered(&id),
            }
        }
    }

    /// One request and its reply.
    fn request(
        &mut self,
        command: &str,
        params: Option<&str>,
        deadline: Instant,
    ) -> Result<Response, PluginError> {
        let mut r = self.batch(&[(command, params)], deadline)?;
        Ok(r.remove(0))
    }

    /// Sends requests in one write and returns their replies in order;
    /// every other message that arrives meanwhile is handled in order.
    ///
    /// baresip handles all the netstrings of one TCP segment in one go, with
    /// no SIP message in between — so `callfind X` + `accept` sent together
    /// cannot be split by a new call that would become baresip's "current
    /// call" (and be answered instead of X). Batches stay far below one
    /// segment.
    fn batch(
        &mut self,
        reqs: &[(&str, Option<&str>)],
        deadline: Instant,
    ) -> Result<Vec<Response>, PluginError> {
        let lost = || err(ErrorKind::LINK_DOWN, "the connection to baresip was lost");
        let Some(conn) = &mut self.conn else {
            return Err(err(ErrorKind::LINK_DOWN, "not connected to baresip"));
        };
        let mut frames = Vec::new();
        let mut tokens = Vec::with_capacity(reqs.len());
        for (command, params) in reqs {
            self.token += 1;
            let token = format!("cti-{}", self.token);
            frames.extend(netstring::encode(&proto::request(command, *params, &token)));
            tokens.push(token);
        }
        if let Err(e) = conn.stream.write_all(&frames) {
            self.drop_conn(&format!("write failed: {e}"));
            return Err(lost());
        }
        let rx = conn.rx.clone();
        let stop_rx = self.stop_rx.clone();
        let mut replies: Vec<Option<Response>> = vec![None; reqs.len()];
        let mut missing = reqs.len();
        while missing > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let which = reqs
                    .iter()
                    .zip(&replies)
                    .find(|(_, r)| r.is_none())
                    .map_or("", |((c, _), _)| *c);
                return Err(err(
                    ErrorKind::TIMEOUT,
                    format!("baresip did not answer `{which}` in time"),
                ));
            }
            select! {
                recv(rx) -> m => match m {
                    Ok(Incoming::Msg(Message::Response(r))) => {
                        match tokens.iter().position(|t| *t == r.token) {
                            Some(i) if replies[i].is_none() => {
                                replies[i] = Some(r);
                                missing -= 1;
                            }
                            _ => self.incoming(Incoming::Msg(Message::Response(r))),
                        }
                    }
                    Ok(m) => {
                        self.incoming(m);
                        if self.conn.is_none() {
                            return Err(lost());
                        }
                    }
                    Err(_) => {
                        self.drop_conn("the reader thread ended");
                        return Err(lost());
                    }
                },
                recv(stop_rx) -> _ => {
                    self.stopping = true;
                    return Err(err(ErrorKind::UNAVAILABLE, "the connector is stopping"));
                }
                default(left) => {}
            }
        }
        Ok(replies.into_iter().flatten().collect())
    }

    /// Handles messages until `done` holds or `deadline` passes.
    fn pump_until(&mut self, deadline: Instant, done: impl Fn(&Core) -> bool) -> bool {
        while !done(&self.core) {
            let Some(conn) = &self.conn else { return false };
            let rx = conn.rx.clone();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match rx.recv_timeout(left) {
                Ok(m) => self.incoming(m),
                Err(_) => return done(&self.core),
            }
        }
        true
    }

    fn handle_request(&mut self, req: Request) {
        let result = if Instant::now() >= req.deadline {
            Err(err(
                ErrorKind::TIMEOUT,
                format!("{} expired before baresip could take it", req.command.kind),
            ))
        } else if self.link != Link::Up {
            Err(err(
                ErrorKind::LINK_DOWN,
                format!("not connected to baresip at {}", self.cfg.addr()),
            ))
        } else {
            self.execute(&req.command, req.deadline)
        };
        if let Err(e) = &result {
            self.log(
                LogLevel::Info,
                &format!("{} {} failed: {e}", req.command.kind, req.command.call_id),
            );
        }
        self.publish();
        let _ = req.reply.send(result);
    }

    // ------------------------------------------------------------ commands

    fn execute(&mut self, cmd: &Command, deadline: Instant) -> Result<Outcome, PluginError> {
        let id = cmd.call_id.as_str();
        match cmd.kind {
            CommandKind::ANSWER => self.answer(id, deadline),
            CommandKind::REJECT => self.clear(id, true, deadline),
            CommandKind::HANGUP => self.clear(id, false, deadline),
            CommandKind::HOLD => self.hold(id, true, deadline),
            CommandKind::RETRIEVE => self.hold(id, false, deadline),
            CommandKind::MUTE => self.mute(id, true, deadline),
            CommandKind::UNMUTE => self.mute(id, false, deadline),
            CommandKind::SEND_DTMF => self.dtmf(id, cmd.target.as_str(), deadline),
            CommandKind::BLIND_TRANSFER => self.transfer(id, cmd.target.as_str(), deadline),
            CommandKind::MAKE_CALL => self.make_call(cmd.target.as_str(), deadline),
            _ => Err(unsupported(cmd)),
        }
    }

    fn known(&self, id: &str) -> Result<&crate::core::Call, PluginError> {
        self.core.get(id).ok_or_else(|| {
            let why = if self.core.was_closed(id) {
                "has ended"
            } else {
                "is not known to baresip"
            };
            err(ErrorKind::UNKNOWN_CALL, format!("call {id} {why}"))
        })
    }

    fn established(&self, id: &str, what: &str) -> Result<(), PluginError> {
        let c = self.known(id)?;
        if !c.established {
            return Err(err(
                ErrorKind::INVALID_STATE,
                format!("{what}: call {id} is {} (not answered yet)", c.state),
            ));
        }
        Ok(())
    }

    /// Runs `command` on call `id`: one batch of `uafind <account>` (when
    /// configured), `callfind <prev>` (to choose `accept`'s previous call),
    /// `callfind <id>` and the command. Returns the command's reply.
    ///
    /// # Errors
    /// `UnknownCall` when baresip does not have the call — then the command
    /// ran on baresip's current call, whatever it was (baresip 1.0.0 has no
    /// command addressed by call id); the connector logs it and re-reads
    /// baresip's calls.
    fn on_call(
        &mut self,
        id: &str,
        prev: Option<&str>,
        command: &str,
        params: Option<&str>,
        deadline: Instant,
    ) -> Result<Response, PluginError> {
        let account = self.cfg.account.clone();
        let mut reqs: Vec<(&str, Option<&str>)> = Vec::with_capacity(4);
        if !account.is_empty() {
            reqs.push(("uafind", Some(&account)));
        }
        if let Some(p) = prev {
            reqs.push(("callfind", Some(p)));
        }
        reqs.push(("callfind", Some(id)));
        reqs.push((command, params));
        let mut rs = self.batch(&reqs, deadline)?;
        let reply = rs.pop().unwrap_or_else(|| Response {
            ok: false,
            data: String::new(),
            token: String::new(),
        });
        let found = rs
            .pop()
            .is_some_and(|r| r.data.trim_start().starts_with("setting current call"));
        if !account.is_empty() && !rs.first().is_some_and(|r| r.ok) {
            self.log(
                LogLevel::Warn,
                &format!(
                    "baresip has no account {account}; `{command}` ran on its current account"
                ),
            );
        }
        if !found {
            self.queue(Task::Sync);
            self.log(
                LogLevel::Warn,
                &format!(
                    "baresip has no call {id}: `{command}` ran on its current call instead (if any); resynchronising"
                ),
            );
            return Err(err(
                ErrorKind::UNKNOWN_CALL,
                format!("baresip has no call {id}"),
            ));
        }
        Ok(reply)
    }

    /// Makes the configured account baresip's current one.
    fn use_account(&mut self, deadline: Instant) -> Result<(), PluginError> {
        if self.cfg.account.is_empty() {
            return Ok(());
        }
        let account = self.cfg.account.clone();
        let r = self.request("uafind", Some(&account), deadline)?;
        if r.ok {
            Ok(())
        } else {
            Err(err(
                ErrorKind::REMOTE,
                format!("baresip has no account {account}: {}", r.data.trim()),
            ))
        }
    }

    fn answer(&mut self, id: &str, deadline: Instant) -> Result<Outcome, PluginError> {
        let c = self.known(id)?;
        if !(c.direction == Direction::Inbound && c.state == ConnectionState::Alerting) {
            return Err(err(
                ErrorKind::INVALID_STATE,
                format!(
                    "only a ringing inbound call can be answered; call {id} is {} {}",
                    c.direction.name(),
                    c.state
                ),
            ));
        }
        // baresip's `accept` first holds its "previous call" (the one listed
        // before the current one): choose it by making it current just
        // before the call to answer, in the same batch. If that hold fails
        // (the previous call was not established — possibly a call that
        // arrived after the choice), baresip answers nothing but leaves that
        // call marked held, so a second attempt goes through.
        let before = self.core.get(id).map_or(0, |c| c.local_sdp);
        let answered = |core: &Core| {
            core.get(id)
                .is_some_and(|c| c.local_sdp > before || c.established)
        };
        let mut prev = self.core.choose_prev(id);
        let mut attempts = 0;
        while attempts < 6 && self.core.get(id).is_some() && !answered(&self.core) {
            if attempts > 0 {
                self.log(
                    LogLevel::Debug,
                    &format!("accept of {id} had no effect (previous call not holdable); retrying"),
                );
                // The failed hold left baresip's previous call — whichever it
                // really was — marked held. Re-read baresip's calls to learn
                // which ones it holds, then make one of those the previous
                // call: holding it again is a no-op.
                if let Some((p, Prev::Ringing | Prev::Dialling)) = &prev {
                    let marked = Some((p.clone(), Prev::Ringing));
                    let r = self.core.answered_with_prev(marked);
                    self.apply(r);
                }
                self.sync();
                prev = self
                    .core
                    .choose_held_prev(id)
                    .or_else(|| self.core.choose_prev(id));
            }
            attempts += 1;
            let pid = prev.as_ref().map(|(p, _)| p.clone());
            self.on_call(id, pid.as_deref(), "accept", None, deadline)?;
        }
        if !answered(&self.core) {
            if self.core.get(id).is_none() {
                return Err(err(
                    ErrorKind::INVALID_STATE,
                    format!("call {id} ended before it could be answered"),
                ));
            }
            // For the log: what baresip had when it would not answer.
            if let Ok(r) = self.request("listcalls", None, deadline) {
                self.log(
                    LogLevel::Warn,
                    &format!(
                        "accept of {id} had no effect {attempts} times (last previous call {:?}); baresip's calls:{}",
                        prev.as_ref().map(|(p, k)| (p, k)),
                        r.data.trim_end()
                    ),
                );
            }
            return Err(err(
                ErrorKind::REMOTE,
                format!(
                    "baresip did not answer call {id}: `accept` had no effect (see baresip's log; \
                     a common cause is an audio source that cannot start, e.g. ausine without \
                     ausrc_srate 48000 and ausrc_channels 2)"
                ),
            ));
        }
        let r = self.core.answered_with_prev(prev);
        self.apply(r);
        Ok(Outcome {
            call_id: id.into(),
            detail: "answered".into(),
        })
    }

    fn clear(&mut self, id: &str, reject: bool, deadline: Instant) -> Result<Outcome, PluginError> {
        let c = self.known(id)?;
        if reject && !(c.direction == Direction::Inbound && c.state == ConnectionState::Alerting) {
            return Err(err(
                ErrorKind::INVALID_STATE,
                format!(
                    "only a ringing inbound call can be rejected; call {id} is {}",
                    c.state
                ),
            ));
        }
        if reject {
            self.core.mark_rejecting(id);
        }
        self.on_call(id, None, "hangup", None, deadline)?;
        // baresip raises CALL_CLOSED before its reply; allow a little slack.
        let grace = deadline.min(Instant::now() + Duration::from_millis(500));
        if self.pump_until(grace, |core| core.get(id).is_none()) {
            Ok(Outcome {
                call_id: id.into(),
                detail: if reject { "rejected" } else { "cleared" }.into(),
            })
        } else {
            Err(err(
                ErrorKind::REMOTE,
                format!("baresip did not clear call {id}"),
            ))
        }
    }

    fn hold(&mut self, id: &str, hold: bool, deadline: Instant) -> Result<Outcome, PluginError> {
        let what = if hold { "hold" } else { "retrieve" };
        self.established(id, what)?;
        let state = self.known(id)?.state;
        let want_now = if hold {
            ConnectionState::Connected
        } else {
            ConnectionState::Held
        };
        if state != want_now {
            return Err(err(
                ErrorKind::INVALID_STATE,
                format!("{what}: call {id} is {state}"),
            ));
        }
        let command = if hold { "hold" } else { "resume" };
        let r = self.on_call(id, None, command, None, deadline)?;
        if !r.ok {
            return Err(err(
                ErrorKind::REMOTE,
                format!(
                    "baresip refused `{command}` on call {id}: {}",
                    r.data.trim()
                ),
            ));
        }
        // baresip 1.0.0 reports no hold event: the connector raises it.
        if let Some(ev) = self.core.set_held(id, hold) {
            self.emit(ev);
        }
        Ok(Outcome {
            call_id: id.into(),
            detail: if hold { "held" } else { "retrieved" }.into(),
        })
    }

    fn mute(&mut self, id: &str, mute: bool, deadline: Instant) -> Result<Outcome, PluginError> {
        self.established(id, if mute { "mute" } else { "unmute" })?;
        // `mute` toggles; its reply says which way. Toggle again when the
        // connector's picture was wrong.
        let mut now = None;
        for _ in 0..2 {
            let r = self.on_call(id, None, "mute", None, deadline)?;
            now = proto::parse_mute(&r.data);
            if now == Some(mute) || now.is_none() {
                break;
            }
        }
        match now {
            Some(m) if m == mute => {
                if let Some(ev) = self.core.set_muted(id, mute) {
                    self.emit(ev);
                }
                Ok(Outcome {
                    call_id: id.into(),
                    detail: if mute { "muted" } else { "unmuted" }.into(),
                })
            }
            _ => Err(err(
                ErrorKind::REMOTE,
                format!("baresip did not confirm the mute state of call {id}"),
            )),
        }
    }

    fn dtmf(&mut self, id: &str, digits: &str, deadline: Instant) -> Result<Outcome, PluginError> {
        self.established(id, "send DTMF")?;
        let r = self.on_call(id, None, "sndcode", Some(digits), deadline)?;
        if !r.ok {
            return Err(err(
                ErrorKind::REMOTE,
                format!(
                    "baresip could not send DTMF on call {id}: {}",
                    r.data.trim()
                ),
            ));
        }
        if let Some(ev) = self.core.digits_sent(id, digits) {
            self.emit(ev);
        }
        Ok(Outcome {
            call_id: id.into(),
            detail: format!("sent {digits}").into(),
        })
    }

    fn transfer(
        &mut self,
        id: &str,
        target: &str,
        deadline: Instant,
    ) -> Result<Outcome, PluginError> {
        self.established(id, "blind transfer")?;
        let r = self.on_call(id, None, "transfer", Some(target), deadline)?;
        if !r.ok {
            return Err(err(
                ErrorKind::REMOTE,
                format!(
                    "baresip could not transfer call {id} to {target}: {}",
                    r.data.trim()
                ),
            ));
        }
        self.core.transfer_sent(id, target);
        Ok(Outcome {
            call_id: id.into(),
            detail: format!(
                "REFER sent: the far end calls {target}; the call clears when it answers"
            )
            .into(),
        })
    }

    fn make_call(&mut self, target: &str, deadline: Instant) -> Result<Outcome, PluginError> {
        self.use_account(deadline)?;
        self.core.begin_dial(target);
        // The reply to `dial` has no call id. The new call is baresip's
        // current one right after it, so `callstat` in the same batch shows
        // it (events of it that come first are held back by the model).
        let rs = match self.batch(&[("dial", Some(target)), ("callstat", None)], deadline) {
            Ok(rs) => rs,
            Err(e) => {
                let r = self.core.abort_dial();
                self.apply(r);
                return Err(e);
            }
        };
        if !rs[0].ok {
            let r = self.core.abort_dial();
            self.apply(r);
            return Err(err(
                ErrorKind::REMOTE,
                format!("baresip refused to dial {target}: {}", rs[0].data.trim()),
            ));
        }
        let stat = proto::parse_callstat(&rs[1].data);
        let (id, r) = self.core.finish_dial(stat.as_ref());
        self.apply(r);
        match id {
            Some(id) => Ok(Outcome {
                call_id: id.into(),
                detail: format!("dialling {target}").into(),
            }),
            None => Err(err(
                ErrorKind::REMOTE,
                format!("baresip accepted the dial to {target} but placed no call"),
            )),
        }
    }

    /// An inbound call that baresip answered while marked held: resume it
    /// (the agent answered it to talk).
    fn resume_answered(&mut self, id: &str) {
        if !self.core.get(id).is_some_and(|c| c.established) {
            return;
        }
        let deadline = Instant::now() + self.cfg.command_timeout;
        match self.on_call(id, None, "resume", None, deadline) {
            Ok(r) if r.ok => self.log(
                LogLevel::Debug,
                &format!("call {id} was answered while marked held; resumed"),
            ),
            Ok(r) => self.log(
                LogLevel::Warn,
                &format!("could not resume call {id}: {}", r.data.trim()),
            ),
            Err(e) => self.log(LogLevel::Warn, &format!("could not resume call {id}: {e}")),
        }
    }

    // ------------------------------------------------------------ resync

    /// Reads baresip's calls and makes the model — and through its events
    /// the desktop — match them: `listcalls`, then in one batch `line N` +
    /// `callstat` for each line not identified yet and `listcalls` again
    /// (that batch is one consistent picture: baresip handles no SIP message
    /// in between).
    fn sync(&mut self) {
        let deadline = Instant::now() + self.cfg.command_timeout;
        if let Err(e) = self.use_account(deadline) {
            self.log(LogLevel::Warn, &format!("resync skipped: {e}"));
            return;
        }
        let before = self.core.ids();
        let first = match self.request("listcalls", None, deadline) {
            Ok(r) => proto::parse_listcalls(&r.data),
            Err(e) => {
                self.log(LogLevel::Warn, &format!("resync failed: {e}"));
                return;
            }
        };
        let unknown: Vec<String> = first
            .iter()
            .filter(|l| self.core.cached_line(l.line, &l.peer_uri).is_none())
            .map(|l| l.line.to_string())
            .collect();
        let (before, listed, mut resolved) = if unknown.is_empty() {
            // Every line is a call identified before: one listing suffices.
            (before, first, std::collections::HashMap::new())
        } else {
            let mut reqs: Vec<(&str, Option<&str>)> = Vec::with_capacity(unknown.len() * 2 + 1);
            for line in &unknown {
                reqs.push(("line", Some(line)));
                reqs.push(("callstat", None));
            }
            reqs.push(("listcalls", None));
            let before = self.core.ids();
            let rs = match self.batch(&reqs, deadline) {
                Ok(rs) => rs,
                Err(e) => {
                    self.log(LogLevel::Warn, &format!("resync failed: {e}"));
                    return;
                }
            };
            let mut resolved = std::collections::HashMap::new();
            for (i, line) in unknown.iter().enumerate() {
                if !rs[2 * i].data.contains("setting current call") {
                    continue; // ended meanwhile
                }
                if let (Ok(n), Some(cs)) = (
                    line.parse::<u32>(),
                    proto::parse_callstat(&rs[2 * i + 1].data),
                ) {
                    resolved.insert(n, cs);
                }
            }
            (
                before,
                proto::parse_listcalls(&rs[rs.len() - 1].data),
                resolved,
            )
        };
        let mut phone = Vec::with_capacity(listed.len());
        let mut complete = true;
        for l in listed {
            if let Some(cs) = resolved.remove(&l.line) {
                phone.push(PhoneCall {
                    line: l.line,
                    id: cs.id,
                    state: l.state,
                    on_hold: l.on_hold,
                    outgoing: cs.outgoing,
                    peer_uri: if cs.peer_uri.is_empty() {
                        l.peer_uri
                    } else {
                        cs.peer_uri
                    },
                    peer_name: cs.peer_name,
                    local_uri: cs.local_uri,
                });
            } else if let Some(c) = self.core.cached_line(l.line, &l.peer_uri) {
                phone.push(PhoneCall {
                    line: l.line,
                    id: c.id.clone(),
                    state: l.state,
                    on_hold: l.on_hold,
                    outgoing: c.direction == Direction::Outbound,
                    peer_uri: l.peer_uri,
                    peer_name: c.peer_name.clone(),
                    local_uri: String::new(),
                });
            } else {
                // A call that arrived after the first listing.
                complete = false;
            }
        }
        let r = self.core.reconcile(&before, &phone, complete);
        self.apply(r);
        self.publish();
    }
}

/// The reader thread: bytes → netstrings → messages. Re-arms quick-ACK
/// after every `recv`. Ends at EOF, on an error or on garbage.
fn reader(mut stream: TcpStream, tx: &Sender<Incoming>) {
    let mut dec = Decoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                let _ = tx.send(Incoming::Closed("baresip closed the connection".into()));
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.send(Incoming::Closed(format!("read failed: {e}")));
                return;
            }
        };
        let _ = sockopt::quickack(&stream);
        dec.push(&buf[..n]);
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => match proto::parse_message(&frame) {
                    Ok(m) => {
                        if tx.send(Incoming::Msg(m)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Incoming::Garbage(e));
                        return;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Incoming::Garbage(e.to_string()));
                    return;
                }
            }
        }
    }
}
