//! fault-connector: fault injection for host tests.
//!
//! A tiny in-memory phone (Answer, Hangup, Hold, Retrieve, MakeCall) that can
//! be told to misbehave. Settings (all optional):
//!
//! | key | default | effect |
//! | --- | --- | --- |
//! | `panic_in` | `[]` | methods that panic: any of `new`, `start`, `execute`, `poll`, `stop` |
//! | `panic_every` | `1` | panic on every Nth call of a listed method (counted per instance) |
//! | `hang_in_execute` | `false` | `execute` never returns (timeout tests) |
//! | `slow_execute_ms` | `0` | `execute` sleeps this long first |
//! | `calls_at_start` | `0` | inbound calls `fault-1`, `fault-2`… Delivered at start |
//! | `flood_events` | `0` | after start, a thread raises this many Delivered + ConnectionCleared + CallCleared triples as fast as it can |
//! | `claim_extra_capabilities` | `[]` | commands (`"SendDtmf"`, `"Mute"`…) added to `capabilities()` without being implemented: `execute` answers `Ok` and raises nothing (a connector that lies) |
//! | `hide_capabilities` | `[]` | commands left out of `capabilities()` but still carried out (a connector that answers `Ok` to an undeclared command) |
//! | `emit_unknown_call` | `false` | at start, raises `Established` for `ghost-1`, a call it never introduced |
//! | `stop_delay_ms` | `0` | `stop` sleeps this long first |
//!
//! In the SDK's test mode (`cti-host verify`) it offers one inbound call at
//! start (`calls_at_start` is at least 1).
//!
//! It works in both connection models: events go to the host (instance) or
//! to an outbox that `poll` drains (polling).
#![forbid(unsafe_code)]

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use cti_plugin_api::sdk::prelude::*;
use serde::Deserialize;

/// The agent's extension: the party of the agent's own connection.
const EXTENSION: &str = "1001";
const DNIS: &str = "+18005550100";

/// The commands the fault phone supports.
pub const CAPABILITIES: Capabilities = Capabilities(
    Capabilities::of(CommandKind::ANSWER).0
        | Capabilities::of(CommandKind::HANGUP).0
        | Capabilities::of(CommandKind::HOLD).0
        | Capabilities::of(CommandKind::RETRIEVE).0
        | Capabilities::of(CommandKind::MAKE_CALL).0,
);

/// The methods a panic can be injected into, in `counts` order.
const METHODS: [&str; 5] = ["new", "start", "execute", "poll", "stop"];
const NEW: usize = 0;
const START: usize = 1;
const EXECUTE: usize = 2;
const POLL: usize = 3;
const STOP: usize = 4;

/// The settings table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSettings {
    /// Methods that panic.
    pub panic_in: Vec<String>,
    /// Panic on every Nth call of a listed method.
    pub panic_every: u64,
    /// `execute` never returns.
    pub hang_in_execute: bool,
    /// `execute` sleeps this long first.
    pub slow_execute_ms: u64,
    /// Inbound calls Delivered at start.
    pub calls_at_start: u64,
    /// Triples of events a thread raises after start.
    pub flood_events: u64,
    /// Commands declared without being implemented.
    pub claim_extra_capabilities: Vec<String>,
    /// Commands implemented without being declared.
    pub hide_capabilities: Vec<String>,
    /// Raise `Established` for a call never introduced, at start.
    pub emit_unknown_call: bool,
    /// `stop` sleeps this long first.
    pub stop_delay_ms: u64,
}

impl Default for FaultSettings {
    fn default() -> Self {
        Self {
            panic_in: Vec::new(),
            panic_every: 1,
            hang_in_execute: false,
            slow_execute_ms: 0,
            calls_at_start: 0,
            flood_events: 0,
            claim_extra_capabilities: Vec::new(),
            hide_capabilities: Vec::new(),
            emit_unknown_call: false,
            stop_delay_ms: 0,
        }
    }
}

/// Where events go.
#[derive(Clone)]
enum Sink {
    /// Instance model: straight to the host.
    Host(Host),
    /// Polling model: to the outbox the next `poll` drains.
    Outbox(Arc<Mutex<Vec<ConnectorEvent>>>),
}

impl Sink {
    fn send(&self, ev: ConnectorEvent) -> Result<(), PluginError> {
        match self {
            Sink::Host(host) => host.emit(ev),
            Sink::Outbox(outbox) => {
                outbox.lock().unwrap_or_else(|e| e.into_inner()).push(ev);
                Ok(())
            }
        }
    }
}

/// The fault-injecting connector.
pub struct FaultConnector {
    settings: FaultSettings,
    panic_in: [bool; 5],
    counts: [u64; 5],
    sink: Sink,
    calls: Vec<CallInfo>,
    last_id: u64,
    flood: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// Declared but not implemented.
    claimed: Capabilities,
    /// Implemented but not declared.
    hidden: Capabilities,
}

/// Parses a list of call-control command names.
fn command_set(key: &str, names: &[String]) -> Result<Capabilities, PluginError> {
    let mut set = Capabilities::NONE;
    for name in names {
        match CommandKind::parse(name) {
            Some(k) if !k.is_desktop() => set |= Capabilities::of(k),
            _ => {
                return Err(PluginError::new(
                    ErrorKind::BAD_SETTINGS,
                    format!("settings: {key}: {name:?} is not a call-control command"),
                ))
            }
        }
    }
    Ok(set)
}

impl NewConnector for FaultConnector {
    fn new(host: Host, settings: Settings) -> Result<Self, PluginError> {
        let test_mode = settings.test_mode();
        let mut settings: FaultSettings = settings.parse()?;
        if test_mode {
            settings.calls_at_start = settings.calls_at_start.max(1);
        }
        let claimed = command_set(
            "claim_extra_capabilities",
            &settings.claim_extra_capabilities,
        )?;
        let hidden = command_set("hide_capabilities", &settings.hide_capabilities)?;
        let bad = |msg: String| PluginError::new(ErrorKind::BAD_SETTINGS, msg);
        let mut panic_in = [false; 5];
        for name in &settings.panic_in {
            let i = METHODS.iter().position(|m| m == name).ok_or_else(|| {
                bad(format!(
                    "settings: panic_in: unknown method {name:?} (expected one of {METHODS:?})"
                ))
            })?;
            panic_in[i] = true;
        }
        if settings.panic_every == 0 {
            return Err(bad("settings: panic_every must be at least 1".to_owned()));
        }
        let sink = match host.hosted().connection {
            ConnectionModel::Instance => Sink::Host(host),
            ConnectionModel::Polling => Sink::Outbox(Arc::default()),
        };
        let mut me = Self {
            settings,
            panic_in,
            counts: [0; 5],
            sink,
            calls: Vec::new(),
            last_id: 0,
            flood: None,
            claimed,
            hidden,
        };
        me.fault(NEW);
        Ok(me)
    }
}

impl FaultConnector {
    /// Counts a call of `METHODS[method]` and panics if told to.
    fn fault(&mut self, method: usize) {
        self.counts[method] += 1;
        let n = self.counts[method];
        if self.panic_in[method] && n.checked_rem(self.settings.panic_every) == Some(0) {
            panic!(
                "fault-connector: injected panic in {} (call {n})",
                METHODS[method]
            );
        }
    }

    fn new_id(&mut self) -> String {
        loop {
            self.last_id += 1;
            let id = format!("fault-{}", self.last_id);
            if !self.calls.iter().any(|c| c.call_id == id) {
                return id;
            }
        }
    }

    fn stop_flood(&mut self) {
        if let Some((stop, thread)) = self.flood.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }

    /// Carries out a command on the in-memory phone.
    fn phone(&mut self, cmd: &Command) -> Result<(Outcome, Vec<ConnectorEvent>), PluginError> {
        if !CAPABILITIES.contains(cmd.kind) {
            return Err(unsupported(cmd));
        }
        if cmd.kind == CommandKind::MAKE_CALL {
            let target = cmd.target.trim();
            if target.is_empty() {
                return Err(PluginError::new(
                    ErrorKind::BAD_ARGUMENT,
                    "MakeCall needs a number in target",
                ));
            }
            // The far end answers at once.
            let id = self.new_id();
            let mut info = call(&id, Direction::Outbound, EXTENSION, target);
            info.state = ConnectionState::Initiated;
            let mut originated = event(EventKind::ORIGINATED, &id, info.state, target, "");
            originated.call = ROption::RSome(info.clone());
            info.state = ConnectionState::Connected;
            let established = event(EventKind::ESTABLISHED, &id, info.state, target, "");
            self.calls.push(info);
            let outcome = Outcome {
                call_id: id.into(),
                detail: RString::new(),
            };
            return Ok((outcome, vec![originated, established]));
        }
        let i = self
            .calls
            .iter()
            .position(|c| c.call_id == cmd.call_id)
            .ok_or_else(|| {
                PluginError::new(
                    ErrorKind::UNKNOWN_CALL,
                    format!("no call {:?}", cmd.call_id.as_str()),
                )
            })?;
        let id = self.calls[i].call_id.to_string();
        let state = self.calls[i].state;
        let (needs, kind, next, party) = match cmd.kind {
            CommandKind::ANSWER => (
                Some(ConnectionState::Alerting),
                EventKind::ESTABLISHED,
                ConnectionState::Connected,
                self.calls[i].ani.to_string(),
            ),
            CommandKind::HOLD => (
                Some(ConnectionState::Connected),
                EventKind::HELD,
                ConnectionState::Held,
                EXTENSION.to_owned(),
            ),
            CommandKind::RETRIEVE => (
                Some(ConnectionState::Held),
                EventKind::RETRIEVED,
                ConnectionState::Connected,
                EXTENSION.to_owned(),
            ),
            _ => {
                self.calls.remove(i);
                return Ok((
                    Outcome::default(),
                    cleared(&id, EXTENSION, "NormalClearing"),
                ));
            }
        };
        if needs.is_some_and(|s| s != state) {
            return Err(PluginError::new(
                ErrorKind::INVALID_STATE,
                format!(
                    "{} is not allowed on call {id} while it is {state}",
                    cmd.kind
                ),
            ));
        }
        self.calls[i].state = next;
        Ok((Outcome::default(), vec![event(kind, &id, next, &party, "")]))
    }
}

impl Connector for FaultConnector {
    const CAPABILITIES: Capabilities = CAPABILITIES;

    fn start(&mut self, calls: Vec<CallInfo>) -> Result<(), PluginError> {
        self.fault(START);
        for c in calls {
            if c.state.is_live() && !self.calls.iter().any(|k| k.call_id == c.call_id) {
                self.calls.push(c);
            }
        }
        self.sink.send(ConnectorEvent::new(
            EventKind::LINK_UP,
            "",
            ConnectionState::Null,
        ))?;
        for n in 1..=self.settings.calls_at_start {
            let id = self.new_id();
            let info = call(&id, Direction::Inbound, &format!("+1555{n:07}"), DNIS);
            let mut ev = event(EventKind::DELIVERED, &id, info.state, &info.ani, "");
            ev.call = ROption::RSome(info.clone());
            self.calls.push(info);
            self.sink.send(ev)?;
        }
        if self.settings.emit_unknown_call {
            self.sink.send(event(
                EventKind::ESTABLISHED,
                "ghost-1",
                ConnectionState::Connected,
                "",
                "",
            ))?;
        }
        self.stop_flood();
        if self.settings.flood_events > 0 {
            let stop = Arc::new(AtomicBool::new(false));
            let (flag, sink, count) = (
                Arc::clone(&stop),
                self.sink.clone(),
                self.settings.flood_events,
            );
            let thread = thread::Builder::new()
                .name("fault-flood".to_owned())
                .spawn(move || flood(&sink, count, &flag))
                .map_err(|e| PluginError::new(ErrorKind::INTERNAL, format!("flood thread: {e}")))?;
            self.flood = Some((stop, thread));
        }
        Ok(())
    }

    fn poll(&mut self) -> Result<Vec<ConnectorEvent>, PluginError> {
        self.fault(POLL);
        Ok(match &self.sink {
            Sink::Outbox(outbox) => {
                std::mem::take(&mut *outbox.lock().unwrap_or_else(|e| e.into_inner()))
            }
            Sink::Host(_) => Vec::new(),
        })
    }

    fn execute(&mut self, command: &Command) -> Result<Outcome, PluginError> {
        self.fault(EXECUTE);
        if self.settings.hang_in_execute {
            loop {
                thread::sleep(Duration::from_secs(1));
            }
        }
        thread::sleep(Duration::from_millis(self.settings.slow_execute_ms));
        if self.claimed.contains(command.kind) && !CAPABILITIES.contains(command.kind) {
            // Claimed, not implemented: a lie that verify must catch.
            return Ok(Outcome::default());
        }
        let (outcome, events) = self.phone(command)?;
        for ev in events {
            self.sink.send(ev)?;
        }
        Ok(outcome)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities((CAPABILITIES.0 | self.claimed.0) & !self.hidden.0)
    }

    fn calls(&self) -> Vec<CallInfo> {
        self.calls.clone()
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        thread::sleep(Duration::from_millis(self.settings.stop_delay_ms));
        // Stop the thread first, so a panicking stop leaves nothing running.
        self.stop_flood();
        self.fault(STOP);
        Ok(())
    }
}

impl Drop for FaultConnector {
    fn drop(&mut self) {
        self.stop_flood();
    }
}

/// Raises `count` short calls as fast as the sink takes them.
fn flood(sink: &Sink, count: u64, stop: &AtomicBool) {
    for n in 1..=count {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let id = format!("flood-{n}");
        let info = call(&id, Direction::Inbound, &format!("+1666{n:07}"), DNIS);
        let mut delivered = event(EventKind::DELIVERED, &id, info.state, &info.ani, "");
        delivered.call = ROption::RSome(info.clone());
        let mut events = vec![delivered];
        events.extend(cleared(&id, &info.ani, "CallAbandoned"));
        if events.into_iter().any(|ev| sink.send(ev).is_err()) {
            return;
        }
    }
}

/// A new call, ringing.
fn call(id: &str, direction: Direction, ani: &str, dnis: &str) -> CallInfo {
    CallInfo {
        call_id: id.into(),
        direction,
        ani: ani.into(),
        dnis: dnis.into(),
        state: ConnectionState::Alerting,
        data: RVec::new(),
    }
}

fn event(
    kind: EventKind,
    call_id: &str,
    state: ConnectionState,
    party: &str,
    cause: &str,
) -> ConnectorEvent {
    let mut ev = ConnectorEvent::new(kind, call_id, state);
    ev.party = party.into();
    ev.cause = cause.into();
    ev
}

/// `party` left the call, which is over.
fn cleared(call_id: &str, party: &str, cause: &str) -> Vec<ConnectorEvent> {
    vec![
        event(
            EventKind::CONNECTION_CLEARED,
            call_id,
            ConnectionState::Null,
            party,
            cause,
        ),
        event(
            EventKind::CALL_CLEARED,
            call_id,
            ConnectionState::Null,
            "",
            "",
        ),
    ]
}

cti_plugin_api::export_plugin!(connector = FaultConnector);

#[cfg(test)]
mod tests;
