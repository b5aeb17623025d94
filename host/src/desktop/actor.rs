//! The desktop actor: the only owner of calls, work items and agent state.

mod intercept;
mod sessions;
mod supervise;
mod tally;

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use abi_stable::std_types::{RArc, ROption, RString, RVec};
use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, TrySendError};
use cti_plugin_api::{
    AgentState, AgentView, CallView, Capabilities, Command, CommandKind, ConnectionState,
    ConnectorEvent, DesktopEvent, DesktopSnapshot, Direction, ErrorKind, EventKind, KeyValue,
    Outcome, Party, PluginError, PluginStatusView, WorkItemView, WorkState,
};

use super::{call, DesktopMsg};
use crate::{
    manifest::{DesktopSettings, OverCapacity},
    plugin::{CommandResult, ConnectorJob, ControlJob, PluginSource, Spawner, Worker},
};

/// A connector as the desktop sees it.
pub struct ConnectorSlot {
    /// Hosted control name.
    pub name: String,
    /// Its channel.
    pub channel: String,
    /// Its manifest entry and library.
    pub source: PluginSource,
    /// What it supports.
    pub caps: Capabilities,
    /// Its worker.
    pub worker: Worker<ConnectorJob>,
    /// `Connected`, `Disconnected`, `Reconnecting` or `Unknown`.
    pub link: &'static str,
    /// `Running`, `Restarting`, `Stopped`, `Faulted`.
    pub status: &'static str,
    /// Supervision history.
    pub health: Health,
}

impl ConnectorSlot {
    /// A running connector.
    pub fn new(source: PluginSource, worker: Worker<ConnectorJob>, caps: Capabilities) -> Self {
        Self {
            name: source.hc.name.clone(),
            channel: source.hc.channel.clone(),
            source,
            caps,
            worker,
            link: "Unknown",
            status: "Running",
            health: Health::default(),
        }
    }
}

/// A control as the desktop sees it.
pub struct ControlSlot {
    /// Hosted control name.
    pub name: String,
    /// Its manifest entry and library.
    pub source: PluginSource,
    /// Its worker.
    pub worker: Worker<ControlJob>,
    /// Its queue capacity.
    pub capacity: usize,
    /// True while it is behind: events are skipped until its queue drains,
    /// then it gets a snapshot.
    pub lagging: bool,
    /// Events skipped while lagging.
    pub skipped: u64,
    /// `Running`, `Restarting`, `Stopped`, `Faulted`.
    pub status: &'static str,
    /// Supervision history.
    pub health: Health,
}

impl ControlSlot {
    /// A running control.
    pub fn new(source: PluginSource, worker: Worker<ControlJob>, capacity: usize) -> Self {
        Self {
            name: source.hc.name.clone(),
            source,
            worker,
            capacity,
            lagging: false,
            skipped: 0,
            status: "Running",
            health: Health::default(),
        }
    }
}

/// A plugin instance's failures and restarts.
#[derive(Debug, Default)]
pub struct Health {
    /// Failures so far (errors and caught panics).
    pub faults: u64,
    /// Restarts so far.
    pub restarts: u64,
    /// When the restarts inside the current window happened.
    pub recent: std::collections::VecDeque<Instant>,
    /// The generation of the running instance (bumped by restarts and
    /// reloads), so late messages from a retired one are ignored.
    pub generation: u64,
}

/// One interaction.
struct CallEntry {
    view: RArc<CallView>,
    connector: usize,
    /// The connector's own id, when it differs from the desktop's (after a
    /// collision); see [`CallEntry::connector_id`].
    connector_call_id: Option<RString>,
    cleared: bool,
    rejected: bool,
    /// When wrap-up ends (None while not wrapping, or unlimited).
    wrap_deadline: Option<Instant>,
    /// The call this one consults for (no wrap-up of its own).
    consult_of: Option<RString>,
    /// Merged into another call by a conference (no wrap-up of its own).
    merged: bool,
    /// Creation order: every walk over several calls goes in this order, so
    /// the desktop's output is deterministic (replay depends on it).
    created: u64,
    /// What this call adds to the tallies (see `tally`).
    counted: tally::Tally,
    /// Its agent session (a consultation has none).
    session: Option<Box<sessions::Session>>,
}

impl CallEntry {
    /// The call's id as its connector knows it.
    fn connector_id(&self) -> &RString {
        self.connector_call_id
            .as_ref()
            .unwrap_or(&self.view.call_id)
    }
}

/// A hash map with foldhash's seeded hasher.
type FastMap<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

/// A command sent to a connector and not answered yet.
struct PendingRequest {
    source: String,
    kind: CommandKind,
    call_id: RString,
    connector: usize,
    reply: Option<tokio::sync::oneshot::Sender<CommandResult>>,
    agent_state: Option<AgentState>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Restart(PluginKey),
    InterceptDeadline(u64),
    CommandDeadline(u64),
    WrapUpEnd(RString),
    RingTimeout(RString),
}

/// A timer that fired in a recording, for `cti-host replay`.
#[derive(Debug, Clone)]
pub enum ReplayTimer {
    /// Wrap-up of this call ended by time.
    WrapUpEnd(RString),
    /// This call rang too long.
    RingTimeout(RString),
    /// This command's connector did not answer in time.
    CommandDeadline(u64),
}

/// A plugin instance, orderable for the timer heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PluginKey {
    Connector(usize),
    Control(usize),
}

/// Tunables the actor needs from `[host]`.
#[derive(Debug, Clone)]
pub struct ActorSettings {
    /// How long a connector's `execute` may take.
    pub execute_timeout: Duration,
    /// How long to wait on a full control queue before skipping it.
    pub lag_timeout: Duration,
    /// Restarts allowed within `restart_window` before Faulted.
    pub restart_limit: u32,
    /// The window of the restart limit.
    pub restart_window: Duration,
    /// The first restart's delay (doubled per restart in the window).
    pub restart_backoff: Duration,
}

/// The actor.
pub struct DesktopActor {
    cfg: DesktopSettings,
    settings: ActorSettings,
    seq: u64,
    agent_base: AgentState,
    agent_pending: Option<AgentState>,
    agent_shown: AgentState,
    /// A requested state sent to the connectors and not yet confirmed: the
    /// shown state holds until the switch confirms it.
    agent_awaiting: Option<AgentState>,
    /// The calls by the desktop's id. Hashed with foldhash (seeded per
    /// process): several lookups per event, and SipHash was a third of the
    /// desktop's time per event at 100,000 calls.
    calls: FastMap<RString, CallEntry>,
    aliases: FastMap<(usize, RString), RString>,
    connectors: Vec<ConnectorSlot>,
    controls: Vec<ControlSlot>,
    requests: HashMap<u64, PendingRequest>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    subscribers: Vec<tokio::sync::mpsc::Sender<Arc<DesktopEvent>>>,
    internal_ids: u64,
    /// Calls created so far (their `created` order).
    created_calls: u64,
    /// The command being submitted, while it is handled.
    current_kind: Option<CommandKind>,
    unknown_call_events: u64,
    spawner: Spawner,
    /// Each command's interceptors, in priority order.
    interceptors: HashMap<CommandKind, intercept::Chain>,
    /// Commands waiting for an interceptor's verdict, by token.
    interceptions: HashMap<u64, intercept::Interception>,
    next_token: u64,
    /// `cti-host replay`: interceptors are not asked; the recording says
    /// how each intercepted command went (see `replay_intercepted`).
    replaying: bool,
    /// Commands (desktop ids) whose outcome After interceptors want to see.
    after_commands: HashMap<u64, Command>,
    /// Agent sessions, one per interaction.
    sessions: sessions::Sessions,
    /// `[[lookup]]` rules.
    lookups: Vec<crate::manifest::LookupRule>,
    /// The contact directory, if the manifest has one.
    directory: Option<crate::directory::Directory>,
    /// Running counts of call states (O(1) `others`/`has_live_work`).
    tallies: tally::Tallies,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn rs(s: &str) -> RString {
    RString::from(s)
}

impl DesktopActor {
    /// Builds the actor around started plugin workers.
    pub fn new(
        cfg: DesktopSettings,
        settings: ActorSettings,
        spawner: Spawner,
        connectors: Vec<ConnectorSlot>,
        controls: Vec<ControlSlot>,
    ) -> Self {
        let agent_base = cfg.initial_agent_state.clone();
        let interceptors = intercept::chains(&controls);
        Self {
            agent_shown: agent_base.clone(),
            agent_base,
            agent_pending: None,
            agent_awaiting: None,
            cfg,
            settings,
            seq: 0,
            calls: FastMap::default(),
            aliases: FastMap::default(),
            connectors,
            controls,
            requests: HashMap::new(),
            timers: BinaryHeap::new(),
            subscribers: Vec::new(),
            internal_ids: 1 << 62,
            created_calls: 0,
            current_kind: None,
            unknown_call_events: 0,
            spawner,
            interceptors,
            interceptions: HashMap::new(),
            next_token: 0,
            replaying: false,
            after_commands: HashMap::new(),
            sessions: sessions::Sessions::default(),
            lookups: Vec::new(),
            directory: None,
            tallies: tally::Tallies::default(),
        }
    }

    /// Adds the CTI lookup: rules and the contact directory.
    pub fn with_lookup(
        mut self,
        lookups: Vec<crate::manifest::LookupRule>,
        directory: Option<crate::directory::Directory>,
    ) -> Self {
        self.lookups = lookups;
        self.directory = directory;
        self
    }

    /// Replay: interceptors are not asked (their verdicts come from the
    /// recording through [`DesktopActor::replay_intercepted`]).
    pub fn replaying(mut self) -> Self {
        self.replaying = true;
        self
    }

    /// Runs until `Shutdown`: starts the controls with the first snapshot,
    /// then serves the inbox.
    pub fn run(mut self, inbox: Receiver<DesktopMsg>) {
        self.startup();
        loop {
            // Timers first: a busy inbox must not starve them.
            if self
                .timers
                .peek()
                .is_some_and(|Reverse((at, _))| *at <= Instant::now())
            {
                self.fire_timers();
            }
            let msg = match self.timers.peek() {
                Some(Reverse((at, _))) => inbox.recv_deadline(*at),
                None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(DesktopMsg::Shutdown) => break,
                Ok(DesktopMsg::Reload {
                    name,
                    library,
                    changed_at,
                }) => self.on_reload(&name, library, changed_at, &inbox),
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => self.fire_timers(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.shutdown(&inbox);
    }

    /// Starts the controls with the first snapshot and raises DesktopReady.
    pub fn startup(&mut self) {
        let snap = Arc::new(self.snapshot());
        for c in &mut self.controls {
            let _ = c.worker.tx.send(ControlJob::Start(snap.clone()));
        }
        // DESKTOP_READY carries the agent so controls can draw it at once.
        let view = self.agent_view();
        self.emit(EventKind::DESKTOP_READY, |e| e.agent = ROption::RSome(view));
    }

    /// Replay: one input, handled at once (no clock, no inbox).
    pub fn step(&mut self, msg: DesktopMsg) {
        self.handle(msg);
        for c in &self.connectors {
            // Virtual connectors: their commands were answered in the recording.
            c.worker.drain();
        }
    }

    /// Replay: how an intercepted command went, as recorded: on to its
    /// connector (`None`) or ended with `result`.
    pub fn step_intercepted(&mut self, request_id: u64, result: Option<CommandResult>) {
        self.replay_intercepted(request_id, result);
        for c in &self.connectors {
            c.worker.drain();
        }
    }

    /// Replay: a timer fires now because it fired at this point of the
    /// recording.
    pub fn fire(&mut self, timer: ReplayTimer) {
        match timer {
            ReplayTimer::WrapUpEnd(id) => self.end_wrap(&id, "wrap-up time is over"),
            ReplayTimer::RingTimeout(id) => self.ring_timeout(&id),
            ReplayTimer::CommandDeadline(request_id) => {
                self.fire_one(Timer::CommandDeadline(request_id), Instant::now());
            }
        }
    }

    /// Replay: the end of the recording; stops the controls.
    pub fn finish(mut self) {
        let (_tx, rx) = crossbeam_channel::bounded(1);
        self.shutdown(&rx);
    }

    fn handle(&mut self, msg: DesktopMsg) {
        match msg {
            DesktopMsg::Event { connector, event } => self.on_connector_event(connector, event),
            DesktopMsg::Events { connector, events } => {
                for e in events {
                    self.on_connector_event(connector, e);
                }
            }
            DesktopMsg::Submit {
                source,
                request_id,
                command,
                reply,
            } => self.on_submit(source, request_id, command, reply),
            DesktopMsg::Outcome {
                connector,
                request_id,
                result,
            } => self.on_outcome(connector, request_id, result),
            DesktopMsg::PluginFault {
                plugin,
                during,
                error,
            } => self.on_fault(plugin, during, error),
            DesktopMsg::Snapshot(tx) => {
                let _ = tx.send(self.snapshot());
            }
            DesktopMsg::Subscribe(tx) => self.subscribers.push(tx),
            DesktopMsg::ReloadFailed { name, reason } => self.emit_reload_failed(&name, &reason),
            DesktopMsg::Verdict { token, result } => self.on_verdict(token, result),
            DesktopMsg::Reload { name, .. } => {
                tracing::warn!(
                    plugin = name,
                    "a reload arrived during another; it will be retried on the next change"
                );
            }
            DesktopMsg::Restart { name, reply } => {
                let _ = reply.send(self.manual_restart(&name));
            }
            DesktopMsg::Shutdown => {}
        }
    }

    // ---------------------------------------------------------------- events out

    fn blank_event(&mut self, kind: EventKind) -> DesktopEvent {
        self.seq += 1;
        DesktopEvent {
            seq: self.seq,
            kind,
            time_ms: now_ms(),
            call: ROption::RNone,
            agent: ROption::RNone,
            session: ROption::RNone,
            previous_state: ConnectionState::Null,
            source: RString::new(),
            party: RString::new(),
            cause: RString::new(),
            text: RString::new(),
            request_id: 0,
            attrs: RVec::new(),
        }
    }

    fn emit(&mut self, kind: EventKind, fill: impl FnOnce(&mut DesktopEvent)) {
        let mut ev = self.blank_event(kind);
        fill(&mut ev);
        self.broadcast(Arc::new(ev));
    }

    fn broadcast(&mut self, ev: Arc<DesktopEvent>) {
        let mut need_snapshot = false;
        for c in &mut self.controls {
            if c.status != "Running" {
                continue;
            }
            if c.lagging {
                if c.worker.tx.len() <= c.capacity / 2 {
                    need_snapshot = true;
                } else {
                    c.skipped += 1;
                }
                continue;
            }
            match c.worker.tx.try_send(ControlJob::Event(ev.clone())) {
                Ok(()) => {}
                Err(TrySendError::Full(job)) => {
                    match c.worker.tx.send_timeout(job, self.settings.lag_timeout) {
                        Ok(()) => {}
                        Err(SendTimeoutError::Timeout(_)) => {
                            tracing::warn!(
                                control = c.name,
                                "control fell behind (queue of {} full for {:?}); skipping events until it catches up, then resynchronising it",
                                c.capacity,
                                self.settings.lag_timeout
                            );
                            c.lagging = true;
                            c.skipped += 1;
                        }
                        Err(SendTimeoutError::Disconnected(_)) => c.status = "Stopped",
                    }
                }
                Err(TrySendError::Disconnected(_)) => c.status = "Stopped",
            }
        }
        if need_snapshot {
            // The event itself is part of the snapshot taken now.
            let snap = Arc::new(self.snapshot());
            for c in &mut self.controls {
                if c.lagging
                    && c.worker.tx.len() <= c.capacity / 2
                    && c.worker
                        .tx
                        .try_send(ControlJob::Resync(snap.clone()))
                        .is_ok()
                {
                    tracing::info!(
                        control = c.name,
                        skipped = c.skipped,
                        "control caught up; resynchronised with a snapshot"
                    );
                    c.lagging = false;
                    c.skipped = 0;
                }
            }
        }
        if !self.subscribers.is_empty() {
            // A subscriber that cannot keep up is dropped: its stream ends.
            self.subscribers.retain(|s| s.try_send(ev.clone()).is_ok());
        }
    }

    fn emit_call(
        &mut self,
        kind: EventKind,
        call_id: &RString,
        previous: ConnectionState,
        src: &ConnectorEvent,
    ) {
        let Some(entry) = self.calls.get(call_id) else {
            return;
        };
        let view = entry.view.clone();
        let source = rs(&self.connectors[entry.connector].name);
        self.emit(kind, |e| {
            e.call = ROption::RSome(view);
            e.previous_state = previous;
            e.source = source;
            e.party = src.party.clone();
            e.cause = src.cause.clone();
            e.text = src.text.clone();
            e.attrs = src.attrs.clone();
            if !src.related_call_id.is_empty() {
                e.attrs.push(KeyValue::new(
                    "related_call_id",
                    src.related_call_id.clone(),
                ));
            }
        });
    }

    fn emit_call_simple(&mut self, kind: EventKind, call_id: &RString, cause: &str) {
        self.touch_wrap(call_id);
        let Some(entry) = self.calls.get(call_id) else {
            return;
        };
        let view = entry.view.clone();
        let prev = view.state;
        let source = rs(&self.connectors[entry.connector].name);
        self.emit(kind, |e| {
            e.call = ROption::RSome(view);
            e.previous_state = prev;
            e.source = source;
            e.cause = rs(cause);
        });
    }

    // ---------------------------------------------------------------- connector events

    fn resolve_call_id(&self, connector: usize, id: &RString) -> Option<RString> {
        // The key is built (an RString clone) only when there are aliases.
        if !self.aliases.is_empty() {
            if let Some(alias) = self.aliases.get(&(connector, id.clone())) {
                return Some(alias.clone());
            }
        }
        match self.calls.get(id) {
            Some(e) if e.connector == connector => Some(id.clone()),
            _ => None,
        }
    }

    fn on_connector_event(&mut self, connector: usize, ev: ConnectorEvent) {
        if connector >= self.connectors.len() {
            return;
        }
        match ev.kind {
            EventKind::LINK_UP | EventKind::LINK_DOWN | EventKind::LINK_RECONNECTING => {
                let link = match ev.kind {
                    EventKind::LINK_UP => "Connected",
                    EventKind::LINK_DOWN => "Disconnected",
                    _ => "Reconnecting",
                };
                let slot = &mut self.connectors[connector];
                if slot.link == link {
                    return;
                }
                slot.link = link;
                let name = rs(&slot.name);
                tracing::info!(connector = slot.name, link, cause = %crate::privacy::text(&ev.cause), "connector link");
                self.emit(EventKind::CONNECTOR_STATUS, |e| {
                    e.source = name;
                    e.text = rs(link);
                    e.cause = ev.cause.clone();
                });
            }
            EventKind::AGENT_STATE_CHANGED => {
                if let ROption::RSome(state) = ev.agent_state {
                    let asked = self.agent_awaiting.take();
                    self.agent_base = state;
                    let cause = if asked.is_some() {
                        "confirmed"
                    } else {
                        "switch"
                    };
                    let report = (
                        self.connectors[connector].name.clone(),
                        self.agent_base.to_string(),
                    );
                    self.refresh_agent_with(cause, Some(report));
                }
            }
            kind if !kind.connector_may_raise() => {
                tracing::warn!(
                    connector = self.connectors[connector].name,
                    "connector raised a desktop-only event {kind}; ignored"
                );
            }
            _ => self.on_call_event(connector, ev),
        }
    }

    fn on_call_event(&mut self, connector: usize, ev: ConnectorEvent) {
        let mut ev = ev;
        if matches!(
            ev.kind,
            EventKind::MESSAGE_RECEIVED | EventKind::MESSAGE_SENT
        ) && ev.text.len() > self.cfg.max_message_bytes
        {
            // Cut at a character boundary; the controls see that it was cut.
            let mut end = self.cfg.max_message_bytes;
            while !ev.text.is_char_boundary(end) {
                end -= 1;
            }
            ev.text = RString::from(&ev.text[..end]);
            ev.attrs.push(KeyValue::new("truncated", "true"));
        }
        let known = self.resolve_call_id(connector, &ev.call_id);
        if ev.kind == EventKind::CALL_UPDATED {
            // A connector's data update: never creates a call, never moves
            // its state.
            let current = known
                .as_ref()
                .and_then(|id| self.calls.get(id))
                .filter(|e| !e.cleared)
                .map(|e| e.view.state);
            match (current, ev.call.is_some()) {
                (Some(state), true) => {
                    ev.state = state;
                    ev.attrs.push(KeyValue::new("origin", "connector"));
                }
                _ => {
                    self.unknown_call_events += 1;
                    tracing::warn!(
                        connector = self.connectors[connector].name,
                        "CallUpdated without call data, or for a call the desktop does not know; ignored"
                    );
                    return;
                }
            }
        }
        let created = known.is_none();
        let id = match known {
            Some(id) => id,
            None => match &ev.call {
                ROption::RSome(info) => self.create_call(connector, &ev, info.clone()),
                ROption::RNone => {
                    self.unknown_call_events += 1;
                    tracing::warn!(
                        connector = self.connectors[connector].name,
                        kind = %ev.kind,
                        "event for a call the desktop does not know; ignored"
                    );
                    return;
                }
            },
        };
        let Some(entry) = self.calls.get_mut(&id) else {
            return;
        };
        if entry.cleared {
            tracing::debug!(kind = %ev.kind, "event for a cleared call; ignored");
            return;
        }
        let previous = entry.view.state;
        let is_clear = ev.kind == EventKind::CALL_CLEARED;
        // An event that moves nothing (DigitsGenerated, Typing, a message…
        // repeating the call's state) leaves the view alone: `make_mut` would
        // copy the whole view whenever a control still holds the last one.
        let quiet = ev.call.is_none()
            && ev.state == previous
            && !matches!(
                ev.kind,
                EventKind::DELIVERED
                    | EventKind::NETWORK_REACHED
                    | EventKind::ESTABLISHED
                    | EventKind::MUTED
                    | EventKind::UNMUTED
                    | EventKind::CONNECTION_CLEARED
                    | EventKind::CONFERENCED
                    | EventKind::CALL_CLEARED
                    | EventKind::FAILED
            );
        if !quiet {
            let view = RArc::make_mut(&mut entry.view);
            let far = if ev.party.is_empty() {
                match view.direction {
                    Direction::Inbound => view.ani.clone(),
                    Direction::Outbound => view.dnis.clone(),
                }
            } else {
                ev.party.clone()
            };
            match ev.kind {
                EventKind::DELIVERED | EventKind::NETWORK_REACHED
                    if view.direction == Direction::Outbound =>
                {
                    set_party(view, &far, ConnectionState::Alerting);
                }
                EventKind::ESTABLISHED => {
                    set_party(view, &far, ConnectionState::Connected);
                    if view.answered_ms == 0 {
                        view.answered_ms = now_ms();
                    }
                    view.work.state = WorkState::ACTIVE;
                }
                EventKind::MUTED => view.muted = true,
                EventKind::UNMUTED => view.muted = false,
                EventKind::CONNECTION_CLEARED => {
                    if ev.state == ConnectionState::Null {
                        view.muted = false;
                    }
                    // Only the other parties are listed; the agent's own
                    // connection is `state`.
                    if let Some(p) = view.parties.iter_mut().find(|p| p.id == ev.party) {
                        p.state = ConnectionState::Null;
                    }
                }
                EventKind::CONFERENCED => {
                    if ev.state.is_live() {
                        set_party(view, &far, ConnectionState::Connected);
                    } else {
                        // This call was merged into `related_call_id`.
                        entry.merged = true;
                    }
                }
                EventKind::CALL_CLEARED => {
                    for p in view.parties.iter_mut() {
                        p.state = ConnectionState::Null;
                    }
                }
                EventKind::FAILED => set_party(view, &far, ConnectionState::Failed),
                EventKind::CALL_UPDATED => {
                    if let ROption::RSome(info) = &ev.call {
                        if !info.dnis.is_empty() {
                            view.dnis = info.dnis.clone();
                        }
                    }
                }
                _ => {}
            }
            if let ROption::RSome(info) = &ev.call {
                merge_data(&mut view.data, &info.data);
            }
            view.state = if is_clear {
                ConnectionState::Null
            } else {
                ev.state
            };
            if is_clear {
                entry.cleared = true;
            }
        }
        let view = &*entry.view;
        let now_state = view.state;
        let new_offer = ev.kind == EventKind::DELIVERED
            && view.direction == Direction::Inbound
            && now_state == ConnectionState::Alerting
            && previous == ConnectionState::Null;
        let alerting_moved =
            (previous == ConnectionState::Alerting) != (now_state == ConnectionState::Alerting);
        // Only these need the channel (saves an allocation per event).
        let channel = if new_offer || is_clear || alerting_moved {
            view.channel.clone()
        } else {
            RString::new()
        };
        if !quiet {
            // A quiet event changed nothing the tallies or the allowed
            // actions depend on.
            self.recount(&id);
            self.refresh_allowed(connector, &id, previous);
        }
        self.emit_call(ev.kind, &id, previous, &ev);
        match ev.kind {
            _ if created => self.open_session(&id),
            EventKind::ESTABLISHED => self.focus_session(&id, "answered"),
            EventKind::RETRIEVED => self.focus_session(&id, "retrieved"),
            EventKind::MESSAGE_RECEIVED | EventKind::MESSAGE_SENT => self.add_transcript(&id, &ev),
            _ => {}
        }
        if is_clear {
            self.finish_call(&id);
        } else if new_offer {
            self.on_new_offer(&id, &channel);
        }
        if alerting_moved || is_clear {
            self.refresh_capacity(&channel);
        }
        self.refresh_agent("work");
    }

    /// A new inbound interaction rings: capacity, ring timeout, auto-answer.
    fn on_new_offer(&mut self, id: &RString, channel: &str) {
        let cap = self.cfg.capacity_of(channel);
        // Counting walks every call: only with a capacity.
        if cap > 0
            && self.count_live(channel, Some(id), true) >= cap as usize
            && self.cfg.over_capacity == OverCapacity::Reject
        {
            tracing::info!(call = %id, channel, capacity = cap, "over capacity; rejecting");
            self.internal_ids += 1;
            let request_id = self.internal_ids;
            let mut cmd = Command::new(CommandKind::REJECT, id.clone());
            cmd.text = rs("over capacity");
            self.on_submit("capacity".to_owned(), request_id, cmd, None);
            return;
        }
        if self.cfg.ring_timeout_seconds > 0 {
            let at = Instant::now() + Duration::from_secs(self.cfg.ring_timeout_seconds);
            self.timers
                .push(Reverse((at, Timer::RingTimeout(id.clone()))));
        }
        if self.cfg.auto_answer {
            self.auto_answer(id);
        }
    }

    /// Live interactions of a channel (ringing ones only if `ringing`).
    fn count_live(&self, channel: &str, except: Option<&RString>, ringing: bool) -> usize {
        self.calls
            .iter()
            .filter(|(k, e)| {
                Some(*k) != except
                    && !e.cleared
                    && e.view.channel == channel
                    && e.view.state.is_live()
                    && (ringing || e.view.state != ConnectionState::Alerting)
                    && e.view.work.state != WorkState::MISSED
            })
            .count()
    }

    /// Capacity changed on a channel: ringing calls may (not) be answered now.
    fn refresh_capacity(&mut self, channel: &str) {
        if self.cfg.capacity_of(channel) == 0 {
            return;
        }
        let mut ringing: Vec<(u64, RString, usize)> = self
            .calls
            .iter()
            .filter(|(_, e)| {
                !e.cleared && e.view.channel == channel && e.view.state == ConnectionState::Alerting
            })
            .map(|(k, e)| (e.created, k.clone(), e.connector))
            .collect();
        ringing.sort();
        for (_, id, connector) in ringing {
            let before = self.calls.get(&id).map(|e| e.view.allowed);
            self.refresh_allowed(connector, &id, ConnectionState::Alerting);
            let after = self.calls.get(&id).map(|e| e.view.allowed);
            if before != after {
                self.emit_call_simple(EventKind::CALL_UPDATED, &id, "capacity changed");
            }
        }
    }

    /// `[desktop] auto_answer`: answer a new alerting inbound call.
    fn auto_answer(&mut self, id: &RString) {
        let ringing = self.calls.get(id).is_some_and(|e| {
            e.view.direction == Direction::Inbound && e.view.allowed.contains(CommandKind::ANSWER)
        });
        if ringing {
            self.internal_ids += 1;
            let request_id = self.internal_ids;
            self.on_submit(
                "auto-answer".to_owned(),
                request_id,
                Command::new(CommandKind::ANSWER, id.clone()),
                None,
            );
        }
    }

    fn create_call(
        &mut self,
        connector: usize,
        ev: &ConnectorEvent,
        info: cti_plugin_api::CallInfo,
    ) -> RString {
        let slot = &self.connectors[connector];
        let mut id = info.call_id.clone();
        if self.calls.contains_key(&id) {
            id = RString::from(format!("{}:{}", slot.name, info.call_id));
            self.aliases
                .insert((connector, info.call_id.clone()), id.clone());
        }
        let work_state = match info.direction {
            Direction::Inbound => WorkState::OFFERED,
            Direction::Outbound => WorkState::ACTIVE,
        };
        let far = match info.direction {
            Direction::Inbound => info.ani.clone(),
            Direction::Outbound => info.dnis.clone(),
        };
        let view = CallView {
            call_id: id.clone(),
            connector: rs(&slot.name),
            channel: rs(&slot.channel),
            direction: info.direction,
            ani: info.ani.clone(),
            dnis: info.dnis.clone(),
            state: ConnectionState::Null,
            parties: RVec::from(vec![Party {
                id: far,
                state: match info.direction {
                    Direction::Inbound => ConnectionState::Connected,
                    Direction::Outbound => ConnectionState::Initiated,
                },
            }]),
            allowed: Capabilities::NONE,
            muted: false,
            data: info.data.clone(),
            started_ms: now_ms(),
            answered_ms: 0,
            work: WorkItemView {
                state: work_state,
                wrap_up_remaining_ms: 0,
                wrap_up_unlimited: false,
                disposition: RString::new(),
            },
            attrs: if ev.related_call_id.is_empty() {
                RVec::new()
            } else {
                RVec::from(vec![KeyValue::new(
                    "consult_of",
                    ev.related_call_id.clone(),
                )])
            },
        };
        tracing::info!(
            connector = slot.name,
            call = %id,
            kind = %ev.kind,
            direction = info.direction.name(),
            "new call"
        );
        self.calls.insert(
            id.clone(),
            CallEntry {
                view: RArc::new(view),
                connector,
                connector_call_id: (info.call_id != id).then_some(info.call_id),
                cleared: false,
                rejected: false,
                wrap_deadline: None,
                consult_of: (!ev.related_call_id.is_empty()).then(|| ev.related_call_id.clone()),
                merged: false,
                created: {
                    self.created_calls += 1;
                    self.created_calls
                },
                counted: tally::Tally::default(),
                session: None,
            },
        );
        self.recount(&id);
        id
    }

    /// After a call's state changed: recompute its allowed actions and, when
    /// the connector's "another call connected/held" picture changed, those
    /// of the connector's other calls.
    fn refresh_allowed(&mut self, connector: usize, id: &RString, previous: ConnectionState) {
        let caps = self.connectors[connector].caps;
        let others = self.others(connector, id);
        // Without any capacity configured there is nothing to look up.
        let capacities = self.cfg.max_concurrent_calls > 0 || !self.cfg.capacity.is_empty();
        let at_capacity = capacities
            && self.calls.get(id).is_some_and(|e| {
                let cap = self.cfg.capacity_of(&e.view.channel);
                cap > 0 && self.count_live(&e.view.channel, Some(id), false) >= cap as usize
            });
        let mut now = None;
        if let Some(entry) = self.calls.get_mut(id) {
            let v = &entry.view;
            let mut allowed = if entry.cleared || v.work.state == WorkState::MISSED {
                Capabilities::NONE
            } else {
                call::allowed(v.state, v.direction, v.muted, others, caps)
            };
            if allowed.contains(CommandKind::ANSWER) && at_capacity {
                allowed = Capabilities(allowed.0 & !Capabilities::of(CommandKind::ANSWER).0);
            }
            if allowed != v.allowed {
                RArc::make_mut(&mut entry.view).allowed = allowed;
            }
            now = Some(entry.view.state);
        }
        let relevant =
            |s: ConnectionState| matches!(s, ConnectionState::Connected | ConnectionState::Held);
        // The siblings' allowed actions depend on this call only through
        // its state: unchanged (an event that moves nothing, like
        // DigitsGenerated), they cannot change, and walking them made every
        // such event cost O(calls).
        if now != Some(previous) && (relevant(previous) || now.is_some_and(relevant)) {
            self.refresh_siblings(connector, id);
        }
    }

    fn refresh_siblings(&mut self, connector: usize, changed: &RString) {
        let mut ids: Vec<(u64, RString)> = self
            .calls
            .iter()
            .filter(|(k, e)| e.connector == connector && *k != changed && !e.cleared)
            .map(|(k, e)| (e.created, k.clone()))
            .collect();
        ids.sort();
        let ids = ids.into_iter().map(|(_, k)| k);
        let caps = self.connectors[connector].caps;
        for id in ids {
            let others = self.others(connector, &id);
            let Some(entry) = self.calls.get_mut(&id) else {
                continue;
            };
            let v = &entry.view;
            let allowed = call::allowed(v.state, v.direction, v.muted, others, caps);
            if allowed != v.allowed {
                RArc::make_mut(&mut entry.view).allowed = allowed;
                self.emit_call_simple(EventKind::CALL_UPDATED, &id, "allowed actions changed");
            }
        }
    }

    /// A call cleared: its work item moves on (wrap-up or done).
    fn finish_call(&mut self, id: &RString) {
        let Some(entry) = self.calls.get_mut(id) else {
            return;
        };
        let own_wrap_up = entry.consult_of.is_none() && !entry.merged;
        let rejected = entry.rejected;
        let view = RArc::make_mut(&mut entry.view);
        let answered = view.answered_ms != 0;
        let (next, cause) = match view.work.state {
            WorkState::MISSED => (WorkState::MISSED, "ring timeout"),
            _ if !answered && rejected => (WorkState::REJECTED, "rejected"),
            _ if !answered => (WorkState::CANCELED, "cleared before it was answered"),
            _ if own_wrap_up && self.cfg.wrap_up_seconds.is_some() => {
                (WorkState::WRAPPING, "wrap-up started")
            }
            _ => (WorkState::COMPLETED, ""),
        };
        view.work.state = next;
        if next == WorkState::WRAPPING {
            let secs = self.cfg.wrap_up_seconds.unwrap_or(0);
            if secs == 0 {
                view.work.wrap_up_unlimited = true;
                entry.wrap_deadline = None;
            } else {
                let at = Instant::now() + Duration::from_secs(secs);
                entry.wrap_deadline = Some(at);
                view.work.wrap_up_remaining_ms = secs * 1000;
                self.timers
                    .push(Reverse((at, Timer::WrapUpEnd(id.clone()))));
            }
            self.recount(id);
            self.emit_call_simple(EventKind::WORK_ITEM, id, cause);
            return;
        }
        self.recount(id);
        self.emit_call_simple(EventKind::WORK_ITEM, id, cause);
        self.remove_call(id);
    }

    /// Ends a wrap-up (timer or agent): the work item completes and the call
    /// is forgotten; a pending agent state applies now.
    /// The audit trail of commands (`CommandRequested`).
    fn emit_requested(&mut self, source: &str, request_id: u64, c: &Command) {
        let mut attrs = vec![
            KeyValue::new("requester", source),
            KeyValue::new("command", c.kind.to_string()),
        ];
        for (k, v) in [
            ("call_id", &c.call_id),
            ("other_call_id", &c.other_call_id),
            ("target", &c.target),
            ("text", &c.text),
            ("connector", &c.connector),
        ] {
            if !v.is_empty() {
                attrs.push(KeyValue::new(k, v.clone()));
            }
        }
        if let ROption::RSome(state) = &c.agent_state {
            attrs.push(KeyValue::new("agent_state", state.to_string()));
        }
        attrs.extend(
            c.attrs
                .iter()
                .map(|kv| KeyValue::new(format!("attr.{}", kv.key), kv.value.clone())),
        );
        self.emit(EventKind::COMMAND_REQUESTED, |e| {
            e.request_id = request_id;
            e.source = rs(source);
            e.attrs = RVec::from(attrs);
        });
    }

    fn end_wrap(&mut self, id: &RString, cause: &str) {
        let Some(entry) = self.calls.get_mut(id) else {
            return;
        };
        if entry.view.work.state != WorkState::WRAPPING {
            return;
        }
        entry.wrap_deadline = None;
        let v = RArc::make_mut(&mut entry.view);
        v.work.state = WorkState::COMPLETED;
        v.work.wrap_up_remaining_ms = 0;
        v.work.wrap_up_unlimited = false;
        self.recount(id);
        self.emit_call_simple(EventKind::WORK_ITEM, id, cause);
        self.remove_call(id);
        self.refresh_agent("work");
    }

    /// Brings a wrapping call's remaining time up to date before it is shown.
    fn touch_wrap(&mut self, id: &RString) {
        if let Some(e) = self.calls.get_mut(id) {
            if let Some(at) = e.wrap_deadline {
                let left = at.saturating_duration_since(Instant::now()).as_millis() as u64;
                if e.view.work.wrap_up_remaining_ms != left {
                    RArc::make_mut(&mut e.view).work.wrap_up_remaining_ms = left;
                }
            }
        }
    }

    fn remove_call(&mut self, id: &RString) {
        self.close_session(id);
        self.emit_call_simple(EventKind::CALL_REMOVED, id, "");
        if let Some(entry) = self.calls.remove(id) {
            self.uncount(&entry);
            if let Some(theirs) = entry.connector_call_id {
                self.aliases.remove(&(entry.connector, theirs));
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, timer))) = self.timers.pop() else {
                break;
            };
            self.fire_one(timer, now);
        }
    }

    fn fire_one(&mut self, timer: Timer, now: Instant) {
        {
            match timer {
                Timer::CommandDeadline(request_id) => {
                    if let Some(req) = self.requests.remove(&request_id) {
                        let name = self.connectors[req.connector].name.clone();
                        let err = PluginError::new(
                            ErrorKind::TIMEOUT,
                            format!(
                                "connector \"{name}\" did not answer {} within {} ms",
                                req.kind,
                                self.settings.execute_timeout.as_millis()
                            ),
                        );
                        tracing::warn!(
                            connector = name,
                            request_id,
                            "{}",
                            crate::privacy::text(&err.to_string())
                        );
                        let connector = req.connector;
                        self.complete(request_id, req, Err(err), "timeout");
                        self.connector_timed_out(connector);
                    }
                }
                Timer::WrapUpEnd(id) => {
                    // An extension moves the deadline: only the current one ends it.
                    let due = self
                        .calls
                        .get(&id)
                        .and_then(|e| e.wrap_deadline)
                        .is_some_and(|at| at <= now);
                    if due {
                        self.end_wrap(&id, "wrap-up time is over");
                    }
                }
                Timer::RingTimeout(id) => self.ring_timeout(&id),
                Timer::Restart(key) => self.restart(key),
                Timer::InterceptDeadline(token) => self.intercept_deadline(token),
            }
        }
    }

    /// An inbound call rang too long: it is taken back as Missed.
    fn ring_timeout(&mut self, id: &RString) {
        let Some(entry) = self.calls.get_mut(id) else {
            return;
        };
        if entry.cleared
            || entry.view.state != ConnectionState::Alerting
            || entry.view.work.state != WorkState::OFFERED
        {
            return;
        }
        let connector = entry.connector;
        RArc::make_mut(&mut entry.view).work.state = WorkState::MISSED;
        self.recount(id);
        self.refresh_allowed(connector, id, ConnectionState::Alerting);
        let secs = self.cfg.ring_timeout_seconds;
        self.emit_call_simple(
            EventKind::WORK_ITEM,
            id,
            &format!("not answered within {secs} s"),
        );
        if self.connectors[connector]
            .caps
            .contains(CommandKind::REJECT)
        {
            self.internal_ids += 1;
            let request_id = self.internal_ids;
            let mut cmd = Command::new(CommandKind::REJECT, self.calls[id].connector_id().clone());
            cmd.text = rs("ring timeout");
            let call_id = id.clone();
            self.dispatch(
                connector,
                request_id,
                "ring-timeout",
                cmd,
                call_id,
                None,
                None,
            );
        }
        let channel = self.calls[id].view.channel.clone();
        self.refresh_capacity(&channel);
    }

    // ---------------------------------------------------------------- agent

    fn effective_agent_state(&self) -> AgentState {
        match self.has_live_work() {
            (true, _) if self.agent_base != AgentState::LoggedOut => AgentState::Busy,
            (false, true) if self.agent_base != AgentState::LoggedOut => {
                AgentState::WorkingAfterCall
            }
            _ => self.agent_base.clone(),
        }
    }

    fn agent_view(&self) -> AgentView {
        AgentView {
            agent_id: rs(&self.cfg.agent_id),
            state: self.agent_shown.clone(),
            pending: self.agent_pending.clone().into(),
        }
    }

    /// Raises `AgentStateChanged` when the effective state moved, and applies
    /// a pending request once the work is over.
    fn refresh_agent(&mut self, cause: &str) {
        self.refresh_agent_with(cause, None);
    }

    /// Like `refresh_agent`; `report` = (connector, state) when a connector
    /// reported an agent state: that is always raised (with attrs
    /// `reported`), even when the shown state does not move (the agent is
    /// busy), so the report is in every recording.
    fn refresh_agent_with(&mut self, cause: &str, report: Option<(String, String)>) {
        let (live, wrapping) = self.has_live_work();
        if !live && !wrapping {
            if let Some(pending) = self.agent_pending.take() {
                self.request_agent_state("desktop", None, pending, true);
            }
        }
        let now = self.effective_agent_state();
        // While a requested state awaits the switch's confirmation the agent
        // keeps showing what it was (no flicker through Ready).
        if self.agent_awaiting.is_some() && now != AgentState::Busy && report.is_none() {
            return;
        }
        if now != self.agent_shown || report.is_some() {
            self.agent_shown = now;
            let view = self.agent_view();
            self.emit(EventKind::AGENT_STATE_CHANGED, |e| {
                e.agent = ROption::RSome(view);
                e.cause = rs(cause);
                if let Some((source, state)) = report {
                    e.source = RString::from(source);
                    e.attrs.push(KeyValue::new("reported", state));
                }
            });
        }
    }

    fn request_agent_state(
        &mut self,
        source: &str,
        request: Option<(u64, Option<tokio::sync::oneshot::Sender<CommandResult>>)>,
        state: AgentState,
        from_pending: bool,
    ) {
        let (request_id, reply) = match request {
            Some((id, r)) => (id, r),
            None => {
                self.internal_ids += 1;
                (self.internal_ids, None)
            }
        };
        let refuse = |this: &mut Self, reply, msg: String| {
            let view = this.agent_view();
            this.emit(EventKind::AGENT_STATE_REJECTED, |e| {
                e.agent = ROption::RSome(view);
                e.cause = rs("BadArgument");
                e.text = rs(&msg);
                e.request_id = request_id;
                e.source = rs(source);
            });
            this.reply_now(
                source,
                request_id,
                reply,
                Err(PluginError::new(ErrorKind::BAD_ARGUMENT, msg)),
            );
        };
        match &state {
            AgentState::Busy | AgentState::WorkingAfterCall => {
                let msg = format!(
                    "{} is derived from the agent's work and cannot be requested",
                    state.name()
                );
                return refuse(self, reply, msg);
            }
            AgentState::NotReady(reason) => {
                if !self.cfg.reason_codes.is_empty()
                    && !self.cfg.reason_codes.iter().any(|c| c == reason.as_str())
                {
                    let msg = if reason.is_empty() {
                        format!(
                            "NotReady needs a reason code ({})",
                            self.cfg.reason_codes.join(", ")
                        )
                    } else {
                        format!(
                            "unknown reason code \"{reason}\" (configured: {})",
                            self.cfg.reason_codes.join(", ")
                        )
                    };
                    return refuse(self, reply, msg);
                }
            }
            AgentState::Ready | AgentState::LoggedOut => {}
        }
        let (live, wrapping) = self.has_live_work();
        if (live || wrapping) && !from_pending {
            self.agent_pending = Some(state.clone());
            let view = self.agent_view();
            self.emit(EventKind::AGENT_STATE_PENDING, |e| {
                e.agent = ROption::RSome(view);
                e.request_id = request_id;
                e.source = rs(source);
                e.text = rs("applied when the current work ends");
            });
            return self.reply_now(
                source,
                request_id,
                reply,
                Ok(Outcome {
                    call_id: RString::new(),
                    detail: rs("pending until the current work ends"),
                }),
            );
        }
        let targets: Vec<usize> = (0..self.connectors.len())
            .filter(|i| {
                self.connectors[*i]
                    .caps
                    .contains(CommandKind::SET_AGENT_STATE)
            })
            .collect();
        if targets.is_empty() {
            self.agent_base = state;
            self.refresh_agent("local");
            return self.reply_now(source, request_id, reply, Ok(Outcome::default()));
        }
        let mut reply = reply;
        self.agent_awaiting = Some(state.clone());
        for (n, idx) in targets.into_iter().enumerate() {
            let mut cmd = Command::new(CommandKind::SET_AGENT_STATE, "");
            cmd.agent_state = ROption::RSome(state.clone());
            let rid = if n == 0 {
                request_id
            } else {
                self.internal_ids += 1;
                self.internal_ids
            };
            let r = if n == 0 { reply.take() } else { None };
            self.dispatch(
                idx,
                rid,
                source,
                cmd,
                RString::new(),
                r,
                Some(state.clone()),
            );
        }
    }

    // ---------------------------------------------------------------- commands

    fn on_submit(
        &mut self,
        source: String,
        request_id: u64,
        command: Command,
        reply: Option<tokio::sync::oneshot::Sender<CommandResult>>,
    ) {
        // Outcomes decided while handling this submission name its command.
        let outer = self.current_kind.replace(command.kind);
        self.submit_inner(source, request_id, command, reply);
        self.current_kind = outer;
    }

    fn submit_inner(
        &mut self,
        source: String,
        request_id: u64,
        command: Command,
        reply: Option<tokio::sync::oneshot::Sender<CommandResult>>,
    ) {
        let kind = command.kind;
        tracing::debug!(source, request_id, %kind, call = %command.call_id, "command");
        self.emit_requested(&source, request_id, &command);
        if kind == CommandKind::SET_AGENT_STATE {
            let ROption::RSome(state) = command.agent_state.clone() else {
                return self.reply_now(
                    &source,
                    request_id,
                    reply,
                    Err(PluginError::new(
                        ErrorKind::BAD_ARGUMENT,
                        "SetAgentState needs agent_state",
                    )),
                );
            };
            return self.request_agent_state(&source, Some((request_id, reply)), state, false);
        }
        if matches!(kind, CommandKind::FOCUS_SESSION | CommandKind::PICK_CONTACT) {
            let result = self.session_command(&command);
            return self.reply_now(&source, request_id, reply, result);
        }
        if kind == CommandKind::CLEAR_PENDING_STATE {
            let had = self.agent_pending.take().is_some();
            if had {
                let view = self.agent_view();
                self.emit(EventKind::AGENT_STATE_PENDING, |e| {
                    e.agent = ROption::RSome(view);
                    e.text = rs("pending state cleared");
                    e.request_id = request_id;
                });
            }
            return self.reply_now(&source, request_id, reply, Ok(Outcome::default()));
        }
        if matches!(
            kind,
            CommandKind::END_WRAP_UP | CommandKind::EXTEND_WRAP_UP | CommandKind::SET_DISPOSITION
        ) {
            return self.work_command(&source, request_id, &command, reply);
        }
        if kind.is_desktop() || kind.known_name().is_none() {
            return self.reply_now(
                &source,
                request_id,
                reply,
                Err(PluginError::new(
                    ErrorKind::UNSUPPORTED,
                    format!("{kind} is not supported by this desktop"),
                )),
            );
        }
        if kind == CommandKind::SEND_MESSAGE && command.text.len() > self.cfg.max_message_bytes {
            let err = PluginError::new(
                ErrorKind::BAD_ARGUMENT,
                format!(
                    "message of {} bytes is over the limit of {} bytes",
                    command.text.len(),
                    self.cfg.max_message_bytes
                ),
            );
            return self.reply_now(&source, request_id, reply, Err(err));
        }
        if kind == CommandKind::SEND_MESSAGE && command.text.trim().is_empty() {
            let err = PluginError::new(ErrorKind::BAD_ARGUMENT, "an empty message");
            return self.reply_now(&source, request_id, reply, Err(err));
        }
        if kind == CommandKind::MAKE_CALL {
            if command.target.trim().is_empty() {
                return self.reply_now(
                    &source,
                    request_id,
                    reply,
                    Err(PluginError::new(
                        ErrorKind::BAD_ARGUMENT,
                        "MakeCall needs a target number",
                    )),
                );
            }
            let target = match self.pick_connector(&command) {
                Ok(t) => t,
                Err(e) => return self.reply_now(&source, request_id, reply, Err(e)),
            };
            return self.route(target, request_id, &source, command, reply);
        }
        // A call command.
        let Some(entry) = self.find_call(&command) else {
            return self.reply_now(
                &source,
                request_id,
                reply,
                Err(PluginError::new(
                    ErrorKind::UNKNOWN_CALL,
                    format!("no call \"{}\"", command.call_id),
                )),
            );
        };
        let (connector, allowed, state, call_id, conn_call_id) = {
            let e = &self.calls[&entry];
            (
                e.connector,
                e.view.allowed,
                e.view.state,
                e.view.call_id.clone(),
                e.connector_id().clone(),
            )
        };
        let caps = self.connectors[connector].caps;
        if !caps.contains(kind) {
            let name = self.connectors[connector].name.clone();
            return self.reply_now(
                &source,
                request_id,
                reply,
                Err(PluginError::new(
                    ErrorKind::UNSUPPORTED,
                    format!("connector \"{name}\" does not support {kind}"),
                )),
            );
        }
        if !allowed.contains(kind) {
            return self.reply_now(
                &source,
                request_id,
                reply,
                Err(PluginError::new(
                    ErrorKind::INVALID_STATE,
                    format!("{kind} is not allowed on call \"{call_id}\" while it is {state}"),
                )),
            );
        }
        let mut cmd = command;
        cmd.call_id = call_id;
        let _ = conn_call_id;
        self.route(connector, request_id, &source, cmd, reply);
    }

    /// Sends a command (desktop call ids) to its connector: translates the
    /// ids, moves the work item, dispatches.
    pub(super) fn send_to_connector(
        &mut self,
        connector: usize,
        request_id: u64,
        source: &str,
        command: Command,
        reply: Option<tokio::sync::oneshot::Sender<CommandResult>>,
    ) {
        let kind = command.kind;
        let call_id = command.call_id.clone();
        let mut cmd = command;
        if let Some(e) = self.calls.get(&call_id) {
            cmd.call_id = e.connector_id().clone();
        }
        if !cmd.other_call_id.is_empty() {
            if let Some(other) = self.calls.get(&cmd.other_call_id) {
                cmd.other_call_id = other.connector_id().clone();
            }
        }
        if let Some(e) = self.calls.get_mut(&call_id) {
            match kind {
                CommandKind::ANSWER => {
                    let v = RArc::make_mut(&mut e.view);
                    if v.work.state == WorkState::OFFERED {
                        v.work.state = WorkState::ACCEPTED;
                    }
                }
                CommandKind::REJECT => e.rejected = true,
                _ => {}
            }
            self.recount(&call_id);
        }
        if self.has_after(kind) {
            let mut desktop_cmd = cmd.clone();
            desktop_cmd.call_id = call_id.clone();
            self.after_commands.insert(request_id, desktop_cmd);
        }
        self.dispatch(connector, request_id, source, cmd, call_id, reply, None);
    }

    /// Desktop commands on a call's work item: end or extend wrap-up, set
    /// the disposition.
    fn work_command(
        &mut self,
        source: &str,
        request_id: u64,
        command: &Command,
        reply: Option<tokio::sync::oneshot::Sender<CommandResult>>,
    ) {
        let Some(id) = self.find_call(command) else {
            let err = PluginError::new(
                ErrorKind::UNKNOWN_CALL,
                format!("no call \"{}\"", command.call_id),
            );
            return self.reply_now(source, request_id, reply, Err(err));
        };
        let work = self.calls[&id].view.work.state;
        let fail = |kind, msg: String| Err(PluginError::new(kind, msg));
        let result = match command.kind {
            CommandKind::END_WRAP_UP if work != WorkState::WRAPPING => fail(
                ErrorKind::INVALID_STATE,
                format!("call \"{id}\" is not in wrap-up (work item {work})"),
            ),
            CommandKind::END_WRAP_UP => {
                self.end_wrap(&id, "wrap-up ended by the agent");
                Ok(Outcome::default())
            }
            CommandKind::EXTEND_WRAP_UP if work != WorkState::WRAPPING => fail(
                ErrorKind::INVALID_STATE,
                format!("call \"{id}\" is not in wrap-up (work item {work})"),
            ),
            CommandKind::EXTEND_WRAP_UP => match command.target.trim().parse::<u64>() {
                Ok(secs) if secs > 0 && secs <= 3600 => {
                    let e = self.calls.get_mut(&id).expect("checked above");
                    if let Some(at) = e.wrap_deadline {
                        let at = at + Duration::from_secs(secs);
                        e.wrap_deadline = Some(at);
                        self.timers
                            .push(Reverse((at, Timer::WrapUpEnd(id.clone()))));
                    }
                    self.touch_wrap(&id);
                    self.emit_call_simple(
                        EventKind::WORK_ITEM,
                        &id,
                        &format!("wrap-up extended by {secs} s"),
                    );
                    Ok(Outcome::default())
                }
                _ => fail(
                    ErrorKind::BAD_ARGUMENT,
                    format!(
                        "ExtendWrapUp needs a number of seconds (1-3600) in target, not \"{}\"",
                        command.target
                    ),
                ),
            },
            CommandKind::SET_DISPOSITION => {
                let code = command.text.trim();
                if !self.cfg.dispositions.iter().any(|d| d == code) {
                    fail(
                        ErrorKind::BAD_ARGUMENT,
                        format!(
                            "unknown disposition \"{code}\" (configured: {})",
                            self.cfg.dispositions.join(", ")
                        ),
                    )
                } else if matches!(
                    work,
                    WorkState::COMPLETED
                        | WorkState::REJECTED
                        | WorkState::MISSED
                        | WorkState::CANCELED
                ) {
                    fail(
                        ErrorKind::INVALID_STATE,
                        format!("call \"{id}\" is already {work}"),
                    )
                } else {
                    let e = self.calls.get_mut(&id).expect("checked above");
                    RArc::make_mut(&mut e.view).work.disposition = rs(code);
                    self.emit_call_simple(EventKind::WORK_ITEM, &id, "disposition set");
                    Ok(Outcome::default())
                }
            }
            other => fail(
                ErrorKind::UNSUPPORTED,
                format!("{other} is not a work-item command"),
            ),
        };
        self.reply_now(source, request_id, reply, result);
    }

    fn find_call(&self, command: &Command) -> Option<RString> {
        if self.calls.contains_key(&command.call_id) {
            return Some(command.call_id.clone());
        }
        // A connector-qualified name or the connector's own id.
        self.connectors.iter().enumerate().find_map(|(i, c)| {
            if !command.connector.is_empty() && command.connector != c.name.as_str() {
                return None;
            }
            self.resolve_call_id(i, &command.call_id)
        })
    }

    fn pick_connector(&self, command: &Command) -> Result<usize, PluginError> {
        if !command.connector.is_empty() {
            return self
                .connectors
                .iter()
                .position(|c| c.name == command.connector.as_str())
                .ok_or_else(|| {
                    PluginError::new(
                        ErrorKind::BAD_ARGUMENT,
                        format!("no connector named \"{}\"", command.connector),
                    )
                });
        }
        self.connectors
            .iter()
            .position(|c| c.caps.contains(command.kind) && c.status == "Running")
            .ok_or_else(|| {
                PluginError::new(
                    ErrorKind::UNSUPPORTED,
                    format!("no connector supports {}", command.kind),
                )
            })
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        connector: usize,
        request_id: u64,
        source: &str,
        command: Command,
        call_id: RString,
        reply: Option<tokio::sync::oneshot::Sender<CommandResult>>,
        agent_state: Option<AgentState>,
    ) {
        let kind = command.kind;
        let slot = &self.connectors[connector];
        if slot.status != "Running" {
            let msg = format!(
                "connector \"{}\" is {}",
                slot.name,
                slot.status.to_lowercase()
            );
            return self.reply_now(
                source,
                request_id,
                reply,
                Err(PluginError::new(ErrorKind::UNAVAILABLE, msg)),
            );
        }
        match slot.worker.tx.try_send(ConnectorJob::Execute {
            request_id,
            command,
        }) {
            Ok(()) => {
                self.requests.insert(
                    request_id,
                    PendingRequest {
                        source: source.to_owned(),
                        kind,
                        call_id,
                        connector,
                        reply,
                        agent_state,
                    },
                );
                let at = Instant::now() + self.settings.execute_timeout;
                self.timers
                    .push(Reverse((at, Timer::CommandDeadline(request_id))));
            }
            Err(e) => {
                let why = match e {
                    TrySendError::Full(_) => "is busy (its mailbox is full)",
                    TrySendError::Disconnected(_) => "has stopped",
                };
                let msg = format!("connector \"{}\" {why}", self.connectors[connector].name);
                self.reply_now(
                    source,
                    request_id,
                    reply,
                    Err(PluginError::new(ErrorKind::UNAVAILABLE, msg)),
                );
            }
        }
    }

    fn on_outcome(&mut self, connector: usize, request_id: u64, result: CommandResult) {
        let Some(req) = self.requests.remove(&request_id) else {
            tracing::debug!(
                connector = self.connectors.get(connector).map(|c| c.name.as_str()),
                request_id,
                "late outcome of a timed-out command; ignored"
            );
            return;
        };
        if let Err(e) = &result {
            if e.kind == ErrorKind::PANIC {
                tracing::error!(
                    connector = self.connectors[connector].name,
                    "{}",
                    crate::privacy::text(&e.to_string())
                );
                self.connectors[connector].health.faults += 1;
            }
            if let Some(call) = self.calls.get_mut(&req.call_id) {
                // A failed answer or reject leaves the work item as it was.
                match req.kind {
                    CommandKind::ANSWER if call.view.work.state == WorkState::ACCEPTED => {
                        RArc::make_mut(&mut call.view).work.state = WorkState::OFFERED;
                    }
                    CommandKind::REJECT => call.rejected = false,
                    _ => {}
                }
                self.recount(&req.call_id);
            }
            if req.agent_state.is_some() {
                self.agent_awaiting = None;
                let view = self.agent_view();
                let err = e.clone();
                self.emit(EventKind::AGENT_STATE_REJECTED, |ev| {
                    ev.agent = ROption::RSome(view);
                    ev.cause = rs(&err.kind.to_string());
                    ev.text = err.message.clone();
                    ev.request_id = request_id;
                });
            }
        }
        let was_agent_request = req.agent_state.is_some() && result.is_err();
        self.complete(request_id, req, result, "connector");
        if was_agent_request {
            self.refresh_agent("rejected");
        }
    }

    fn complete(&mut self, request_id: u64, req: PendingRequest, result: CommandResult, via: &str) {
        if let Some(cmd) = self.after_commands.remove(&request_id) {
            self.notify_after(&req.source, request_id, &cmd, &result);
        }
        let source = req.source.clone();
        if let Err(e) = &result {
            if e.kind != ErrorKind::PANIC {
                tracing::info!(
                    source = source.as_str(),
                    request_id,
                    connector = self.connectors[req.connector].name,
                    kind = %req.kind,
                    "command failed: {}",
                    crate::privacy::text(&e.to_string())
                );
            }
        }
        let view = self.calls.get(&req.call_id).map(|e| e.view.clone());
        let connector = rs(&self.connectors[req.connector].name);
        self.emit_outcome(&source, request_id, req.kind, view, connector, &result, via);
        if let Some(tx) = req.reply {
            let _ = tx.send(result);
        }
    }

    pub(super) fn reply_now(
        &mut self,
        source: &str,
        request_id: u64,
        reply: Option<tokio::sync::oneshot::Sender<CommandResult>>,
        result: CommandResult,
    ) {
        if let Err(e) = &result {
            tracing::info!(
                source,
                request_id,
                "command refused: {}",
                crate::privacy::text(&e.to_string())
            );
        }
        let kind = self.current_kind.unwrap_or(CommandKind(u16::MAX));
        self.emit_outcome(
            source,
            request_id,
            kind,
            None,
            RString::new(),
            &result,
            "desktop",
        );
        if let Some(tx) = reply {
            let _ = tx.send(result);
        }
    }

    /// Raises `CommandCompleted`/`CommandFailed`; `via` says what answered
    /// (`connector`, `desktop`, `interceptor`, `timeout`, `restart`), which
    /// `cti-host replay` needs to tell the connector's answers apart.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit_outcome(
        &mut self,
        source: &str,
        request_id: u64,
        kind: CommandKind,
        view: Option<RArc<CallView>>,
        connector: RString,
        result: &CommandResult,
        via: &str,
    ) {
        let mut attrs = vec![
            KeyValue::new("requester", source),
            KeyValue::new("via", via),
        ];
        if kind.known_name().is_some() {
            attrs.push(KeyValue::new("command", kind.to_string()));
        }
        let (ek, cause, text) = match result {
            Ok(o) => {
                if !o.call_id.is_empty() {
                    attrs.push(KeyValue::new("new_call_id", o.call_id.clone()));
                }
                (
                    EventKind::COMMAND_COMPLETED,
                    RString::new(),
                    o.detail.clone(),
                )
            }
            Err(e) => (
                EventKind::COMMAND_FAILED,
                rs(&e.kind.to_string()),
                e.message.clone(),
            ),
        };
        self.emit(ek, |e| {
            e.request_id = request_id;
            e.call = view.into();
            e.source = connector;
            e.cause = cause;
            e.text = text;
            e.attrs = RVec::from(attrs);
        });
    }

    // ---------------------------------------------------------------- snapshot, shutdown

    /// The whole desktop, for a control's start or resync.
    pub fn snapshot(&self) -> DesktopSnapshot {
        let now = Instant::now();
        let mut entries: Vec<&CallEntry> = self.calls.values().collect();
        entries.sort_by_key(|e| e.created);
        let calls: Vec<RArc<CallView>> = entries
            .into_iter()
            .map(|e| match e.wrap_deadline {
                Some(at) => {
                    let mut v = (*e.view).clone();
                    v.work.wrap_up_remaining_ms =
                        at.saturating_duration_since(now).as_millis() as u64;
                    RArc::new(v)
                }
                None => e.view.clone(),
            })
            .collect();
        let mut plugins: Vec<PluginStatusView> = self
            .connectors
            .iter()
            .map(|c| PluginStatusView {
                name: rs(&c.name),
                kind: rs("connector"),
                version: rs(&c.source.lib.meta.version.to_string()),
                status: rs(c.status),
                link: rs(c.link),
                channel: rs(&c.channel),
                capabilities: c.caps,
            })
            .collect();
        plugins.extend(self.controls.iter().map(|c| PluginStatusView {
            name: rs(&c.name),
            kind: rs("control"),
            version: rs(&c.source.lib.meta.version.to_string()),
            status: rs(c.status),
            link: RString::new(),
            channel: RString::new(),
            capabilities: Capabilities::NONE,
        }));
        DesktopSnapshot {
            seq: self.seq,
            agent: self.agent_view(),
            calls: RVec::from(calls),
            sessions: self.session_list(),
            plugins: RVec::from(plugins),
            reason_codes: self.cfg.reason_codes.iter().map(|s| rs(s)).collect(),
            dispositions: self.cfg.dispositions.iter().map(|s| rs(s)).collect(),
        }
    }

    /// Stops connectors first (their last events are still delivered), then
    /// the controls.
    fn shutdown(&mut self, inbox: &Receiver<DesktopMsg>) {
        self.emit(EventKind::DESKTOP_STOPPING, |_| {});
        for c in &self.connectors {
            let _ = c.worker.tx.try_send(ConnectorJob::Stop);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for i in 0..self.connectors.len() {
            loop {
                // Keep serving events while waiting, so a connector blocked in
                // `emit` can finish.
                while let Ok(m) = inbox.try_recv() {
                    self.handle_during_shutdown(m);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if self.connectors[i]
                    .worker
                    .join_within(Duration::from_millis(20).min(left))
                    || left.is_zero()
                {
                    break;
                }
            }
            if self.connectors[i].worker.thread.is_some() {
                tracing::warn!(
                    connector = self.connectors[i].name,
                    "connector did not stop in time; abandoned"
                );
            }
            self.connectors[i].status = "Stopped";
        }
        while let Ok(m) = inbox.try_recv() {
            self.handle_during_shutdown(m);
        }
        for c in &self.controls {
            let _ = c
                .worker
                .tx
                .send_timeout(ControlJob::Stop, Duration::from_secs(1));
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for c in &mut self.controls {
            let left = deadline.saturating_duration_since(Instant::now());
            if !c.worker.join_within(left) {
                tracing::warn!(control = c.name, "control did not stop in time; abandoned");
            }
        }
        for (_, req) in self.requests.drain() {
            if let Some(tx) = req.reply {
                let _ = tx.send(Err(PluginError::new(
                    ErrorKind::UNAVAILABLE,
                    "the desktop stopped",
                )));
            }
        }
    }

    fn handle_during_shutdown(&mut self, m: DesktopMsg) {
        match m {
            DesktopMsg::Submit {
                source,
                request_id,
                reply,
                ..
            } => self.reply_now(
                &source,
                request_id,
                reply,
                Err(PluginError::new(
                    ErrorKind::UNAVAILABLE,
                    "the desktop is stopping",
                )),
            ),
            DesktopMsg::Shutdown => {}
            other => self.handle(other),
        }
    }
}

fn set_party(view: &mut CallView, id: &RString, state: ConnectionState) {
    if id.is_empty() {
        return;
    }
    if let Some(p) = view.parties.iter_mut().find(|p| p.id == *id) {
        p.state = state;
    } else {
        view.parties.push(Party {
            id: id.clone(),
            state,
        });
    }
}

fn merge_data(into: &mut RVec<KeyValue>, from: &RVec<KeyValue>) {
    for kv in from.iter() {
        if let Some(existing) = into.iter_mut().find(|e| e.key == kv.key) {
            existing.value = kv.value.clone();
        } else {
            into.push(kv.clone());
        }
    }
}
