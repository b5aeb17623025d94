//! The plugin's copy of the desktop and the fan-out to browser tabs.
//!
//! The control's thread (`on_event`, `resync`) and the server's sockets meet
//! here, under one short-lived lock that is never held across I/O:
//! - the desktop as of the last event ([`DesktopSnapshot`], updated by
//!   [`apply`]), so a tab that connects (or reloads mid-call) is sent the
//!   whole desktop first and then every event after it, with no gap;
//! - a `broadcast` channel of pre-rendered messages: `on_event` never waits
//!   for a browser; a tab that falls more than [`BACKLOG`] messages behind
//!   is sent a fresh snapshot instead of what it missed;
//! - the routing of command outcomes: `CommandCompleted`/`CommandFailed`
//!   carry the request id `submit` returned; the tab that asked gets a
//!   `result` message. An outcome can overtake `submit`'s return (it comes
//!   through the desktop on another thread), so outcomes of this control's
//!   requests that nobody claimed yet are kept briefly.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::extract::ws::Utf8Bytes;
use cti_plugin_api::{
    lookup,
    sdk::{chat, json, prelude::*},
};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

/// Messages a tab may fall behind by before it is resynchronised.
pub const BACKLOG: usize = 512;
/// Results waiting to be sent to one tab.
const RESULTS_QUEUE: usize = 64;
/// Unclaimed outcomes kept for a `submit` that has not returned yet.
const ORPHANS: usize = 64;
/// Requests awaiting their outcome, all tabs together.
const MAX_PENDING: usize = 4096;
/// Recent events sent with every snapshot, for the page's event log.
pub const RECENT: usize = 100;

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Applies one event to a snapshot: the desktop after the event.
pub fn apply(snap: &mut DesktopSnapshot, ev: &DesktopEvent) {
    if ev.seq > snap.seq {
        snap.seq = ev.seq;
    }
    if let ROption::RSome(agent) = &ev.agent {
        snap.agent = agent.clone();
    }
    if let ROption::RSome(call) = &ev.call {
        let at = snap.calls.iter().position(|c| c.call_id == call.call_id);
        match (ev.kind == EventKind::CALL_REMOVED, at) {
            (true, Some(i)) => {
                snap.calls.remove(i);
            }
            (true, None) => {}
            (false, Some(i)) => snap.calls[i] = RArc::clone(call),
            (false, None) => snap.calls.push(RArc::clone(call)),
        }
    }
    if let ROption::RSome(session) = &ev.session {
        let at = snap
            .sessions
            .iter()
            .position(|s| s.session_id == session.session_id);
        if ev.kind == EventKind::SESSION_CLOSED {
            if let Some(i) = at {
                snap.sessions.remove(i);
            }
        } else {
            if session.focused {
                for s in snap.sessions.iter_mut() {
                    s.focused = false;
                }
            }
            match at {
                Some(i) => snap.sessions[i] = session.clone(),
                None => snap.sessions.push(session.clone()),
            }
        }
    }
    if matches!(
        ev.kind,
        EventKind::MESSAGE_RECEIVED | EventKind::MESSAGE_SENT
    ) {
        // The desktop adds the line to the session without sending the
        // session: do the same here, so a tab that connects later sees the
        // whole conversation.
        if let Some(id) = ev.call_id() {
            if let Some(s) = snap.sessions.iter_mut().find(|s| s.call_id == id) {
                chat::append_transcript(&mut s.transcript, ev.kind, &ev.party, &ev.text);
            }
        }
    }
    let plugin = snap.plugins.iter_mut().find(|p| p.name == ev.source);
    if let Some(p) = plugin {
        match ev.kind {
            EventKind::PLUGIN_STATUS => p.status = ev.text.clone(),
            EventKind::CONNECTOR_STATUS => p.link = ev.text.clone(),
            EventKind::PLUGIN_RELOADED => p.version = ev.text.clone(),
            _ => {}
        }
    }
}

/// `{"type":"snapshot",…}`: the whole desktop, and the `recent` event
/// messages (oldest first) for the page's event log.
pub fn snapshot_message<'a>(
    snap: &DesktopSnapshot,
    instance: &str,
    recent: impl Iterator<Item = &'a Utf8Bytes>,
) -> Utf8Bytes {
    let body = json::snapshot_to_json(snap);
    let mut out = String::with_capacity(body.len() + 96 + instance.len());
    out.push_str("{\"type\":\"snapshot\",\"now_ms\":");
    out.push_str(&now_ms().to_string());
    out.push_str(",\"instance\":");
    json::write_string(&mut out, instance);
    out.push_str(",\"version\":\"");
    out.push_str(env!("CARGO_PKG_VERSION"));
    out.push_str("\",\"recent\":[");
    for (i, m) in recent.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(m.as_str());
    }
    out.push_str("],\"snapshot\":");
    out.push_str(&body);
    out.push('}');
    Utf8Bytes::from(out)
}

/// `{"type":"event","event":{…}}`: one desktop event.
pub fn event_message(ev: &DesktopEvent) -> Utf8Bytes {
    let mut out = String::with_capacity(if ev.call.is_some() { 900 } else { 300 });
    out.push_str("{\"type\":\"event\",\"event\":");
    json::write_event(&mut out, ev);
    out.push('}');
    Utf8Bytes::from(out)
}

/// How a command ended, as a tab is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The desktop's request id (0 when the command never reached it).
    pub request_id: u64,
    /// True on `CommandCompleted`.
    pub ok: bool,
    /// The command's name, when known.
    pub command: String,
    /// The error kind (`InvalidState`…), on failure.
    pub cause: String,
    /// The reason or the detail.
    pub text: String,
    /// The call the command concerned or created.
    pub call_id: String,
}

impl Outcome {
    /// The outcome an event reports, if it is `CommandCompleted`/`CommandFailed`.
    pub fn of_event(ev: &DesktopEvent) -> Option<Self> {
        let ok = match ev.kind {
            EventKind::COMMAND_COMPLETED => true,
            EventKind::COMMAND_FAILED => false,
            _ => return None,
        };
        let new_call = lookup(&ev.attrs, "new_call_id").unwrap_or("");
        let call_id = if new_call.is_empty() {
            ev.call_id().unwrap_or("")
        } else {
            new_call
        };
        Some(Self {
            request_id: ev.request_id,
            ok,
            command: lookup(&ev.attrs, "command").unwrap_or("").to_owned(),
            cause: ev.cause.to_string(),
            text: ev.text.to_string(),
            call_id: call_id.to_owned(),
        })
    }

    /// A command refused before it reached the desktop.
    pub fn refused(command: &str, cause: &str, text: &str) -> Self {
        Self {
            request_id: 0,
            ok: false,
            command: command.to_owned(),
            cause: cause.to_owned(),
            text: text.to_owned(),
            call_id: String::new(),
        }
    }

    /// `{"type":"result",…}` for the tab's request `reference`.
    pub fn message(&self, reference: u64) -> Utf8Bytes {
        Utf8Bytes::from(
            json!({
                "type": "result",
                "ref": reference,
                "request_id": self.request_id,
                "ok": self.ok,
                "command": self.command,
                "cause": self.cause,
                "text": self.text,
                "call_id": self.call_id,
            })
            .to_string(),
        )
    }
}

/// A connected tab's side of the hub.
pub struct Connection {
    /// Its id.
    pub id: u64,
    /// The snapshot to send first.
    pub first: Utf8Bytes,
    /// Every message after the snapshot.
    pub events: broadcast::Receiver<Utf8Bytes>,
    /// Results of its own commands.
    pub results: mpsc::Receiver<Utf8Bytes>,
}

struct Inner {
    snap: Option<DesktopSnapshot>,
    tx: broadcast::Sender<Utf8Bytes>,
    clients: HashMap<u64, mpsc::Sender<Utf8Bytes>>,
    next_client: u64,
    /// request id → (tab, the tab's reference).
    pending: HashMap<u64, (u64, u64)>,
    orphans: VecDeque<Outcome>,
    recent: VecDeque<Utf8Bytes>,
}

impl Inner {
    fn snapshot_message(&self, instance: &str) -> Option<Utf8Bytes> {
        Some(snapshot_message(
            self.snap.as_ref()?,
            instance,
            self.recent.iter(),
        ))
    }
}

/// See the module documentation.
pub struct Hub {
    inner: Mutex<Inner>,
    instance: String,
}

impl Hub {
    /// A hub for the hosted control named `instance` (its requests carry
    /// that name as `requester`).
    pub fn new(instance: &str) -> Self {
        let (tx, _) = broadcast::channel(BACKLOG);
        Self {
            inner: Mutex::new(Inner {
                snap: None,
                tx,
                clients: HashMap::new(),
                next_client: 1,
                pending: HashMap::new(),
                orphans: VecDeque::new(),
                recent: VecDeque::with_capacity(RECENT),
            }),
            instance: instance.to_owned(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The hosted control's name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Replaces the desktop (start, resync) and sends it to every tab.
    pub fn reset(&self, snap: &DesktopSnapshot) {
        let mut g = self.lock();
        g.snap = Some(snap.clone());
        if let Some(msg) = g.snapshot_message(&self.instance) {
            let _ = g.tx.send(msg);
        }
    }

    /// One desktop event: update the copy, fan out, route an outcome.
    pub fn on_event(&self, ev: &DesktopEvent) {
        let msg = event_message(ev);
        let outcome = Outcome::of_event(ev);
        let mine = outcome.is_some() && lookup(&ev.attrs, "requester") == Some(&self.instance);
        let mut g = self.lock();
        if let Some(snap) = g.snap.as_mut() {
            apply(snap, ev);
        }
        if g.recent.len() >= RECENT {
            g.recent.pop_front();
        }
        g.recent.push_back(msg.clone());
        let _ = g.tx.send(msg);
        if let Some(outcome) = outcome {
            match g.pending.remove(&outcome.request_id) {
                Some((client, reference)) => {
                    if let Some(tx) = g.clients.get(&client) {
                        let _ = tx.try_send(outcome.message(reference));
                    }
                }
                None if mine => {
                    if g.orphans.len() >= ORPHANS {
                        g.orphans.pop_front();
                    }
                    g.orphans.push_back(outcome);
                }
                None => {}
            }
        }
    }

    /// A new tab, unless `max` are connected (or the desktop has not
    /// started yet).
    pub fn connect(&self, max: usize) -> Option<Connection> {
        let mut g = self.lock();
        if g.clients.len() >= max {
            return None;
        }
        let first = g.snapshot_message(&self.instance)?;
        let events = g.tx.subscribe();
        let (rtx, results) = mpsc::channel(RESULTS_QUEUE);
        let id = g.next_client;
        g.next_client += 1;
        g.clients.insert(id, rtx);
        Some(Connection {
            id,
            first,
            events,
            results,
        })
    }

    /// A fresh snapshot and a new subscription, for a tab that fell behind
    /// or asked for one.
    pub fn resubscribe(&self) -> Option<(Utf8Bytes, broadcast::Receiver<Utf8Bytes>)> {
        let g = self.lock();
        let first = g.snapshot_message(&self.instance)?;
        Some((first, g.tx.subscribe()))
    }

    /// A tab went away.
    pub fn disconnect(&self, client: u64) {
        let mut g = self.lock();
        g.clients.remove(&client);
        g.pending.retain(|_, (c, _)| *c != client);
    }

    /// Tabs connected now.
    pub fn client_count(&self) -> usize {
        self.lock().clients.len()
    }

    /// `submit` returned `request_id` for the tab's `reference`: route the
    /// outcome there (at once, when it already arrived).
    pub fn claim(&self, client: u64, reference: u64, request_id: u64) {
        let mut g = self.lock();
        let early = g.orphans.iter().position(|o| o.request_id == request_id);
        if let Some(outcome) = early.and_then(|i| g.orphans.remove(i)) {
            if let Some(tx) = g.clients.get(&client) {
                let _ = tx.try_send(outcome.message(reference));
            }
            return;
        }
        if g.pending.len() >= MAX_PENDING {
            // Outcomes always come (the desktop times commands out), so this
            // only trims requests of tabs that vanished mid-flight.
            g.pending.clear();
        }
        g.pending.insert(request_id, (client, reference));
    }
}

/// Builds a command from its JSON form (the shape `cti-host ctl` uses:
/// `kind`, `call_id`, `other_call_id`, `target`, `text`, `connector`,
/// `agent_state` such as `"NotReady(Break)"`).
///
/// # Errors
/// What is wrong with it.
pub fn parse_command(v: &Value) -> Result<Command, String> {
    if !v.is_object() {
        return Err("command must be an object".to_owned());
    }
    let text = |k: &str| RString::from(v.get(k).and_then(Value::as_str).unwrap_or(""));
    let kind_name = v
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("command.kind is missing")?;
    let kind = CommandKind::parse(kind_name)
        .ok_or_else(|| format!("unknown command kind \"{kind_name}\""))?;
    let mut cmd = Command::new(kind, text("call_id"));
    cmd.other_call_id = text("other_call_id");
    cmd.target = text("target");
    cmd.text = text("text");
    cmd.connector = text("connector");
    if let Some(s) = v.get("agent_state").and_then(Value::as_str) {
        let state = AgentState::parse(s).ok_or_else(|| format!("unknown agent state \"{s}\""))?;
        cmd.agent_state = ROption::RSome(state);
    }
    Ok(cmd)
}
