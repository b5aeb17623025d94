//! The simulation itself, shared by both connection models: a table of calls,
//! each with at most one pending far-end action, and the next inbound arrival.
//! Time is passed in, so tests drive it with made-up instants.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cti_plugin_api::sdk::prelude::*;
use rand::{rngs::SmallRng, Rng, SeedableRng};

use crate::settings::SimSettings;

/// The most events one [`SimCore::advance`] returns; what is still due is
/// returned by the next call.
pub const MAX_EVENTS_PER_ADVANCE: usize = 1_000;

/// What the far end of a call does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FarEnd {
    /// The caller gives up while the call is still ringing.
    Abandons,
    /// The far end hangs up an established call.
    HangsUp,
    /// The called party starts ringing (or is busy).
    Rings,
    /// The called party answers.
    Answers,
}

#[derive(Debug, Clone)]
struct SimCall {
    info: CallInfo,
    next: Option<(Instant, FarEnd)>,
}

impl SimCall {
    /// The far end's number.
    fn far_party(&self) -> RString {
        match self.info.direction {
            Direction::Inbound => self.info.ani.clone(),
            Direction::Outbound => self.info.dnis.clone(),
        }
    }
}

/// The simulated phone system.
#[derive(Debug)]
pub struct SimCore {
    cfg: SimSettings,
    rng: SmallRng,
    id_prefix: String,
    last_seq: u64,
    calls: Vec<SimCall>,
    next_arrival: Option<Instant>,
    inbound_generated: u64,
    agent_state: Option<AgentState>,
}

impl SimCore {
    /// Builds an idle simulation; nothing happens before [`start`](Self::start).
    ///
    /// # Errors
    /// `BadSettings` when the settings do not validate.
    pub fn new(cfg: SimSettings) -> Result<Self, PluginError> {
        cfg.validate()?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let rng = match cfg.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_entropy(),
        };
        Ok(Self {
            cfg,
            rng,
            id_prefix: format!("sim-{nanos:x}"),
            last_seq: 0,
            calls: Vec::new(),
            next_arrival: None,
            inbound_generated: 0,
            agent_state: None,
        })
    }

    /// Starts generating inbound calls and adopts the calls the desktop knew
    /// (after a restart or a reload), so commands on them keep working.
    pub fn start(&mut self, now: Instant, adopted: Vec<CallInfo>) {
        // The first call comes whatever the rate, so a demo shows a call at
        // once; the Poisson arrivals (if any) follow it.
        self.next_arrival = if self.below_max_calls() {
            now.checked_add(Duration::from_millis(self.cfg.first_call_after_ms))
        } else {
            None
        };
        for info in adopted {
            self.adopt(info, now);
        }
    }

    /// The live calls, oldest first.
    pub fn calls(&self) -> Vec<CallInfo> {
        self.calls.iter().map(|c| c.info.clone()).collect()
    }

    /// The agent state the switch last confirmed.
    pub fn agent_state(&self) -> Option<&AgentState> {
        self.agent_state.as_ref()
    }

    /// When something happens next, if ever.
    pub fn next_due(&self) -> Option<Instant> {
        let timer = self
            .calls
            .iter()
            .filter_map(|c| c.next.map(|(t, _)| t))
            .min();
        match (self.next_arrival, timer) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }

    /// Runs the simulation up to `now`, returning what happened in order.
    pub fn advance(&mut self, now: Instant) -> Vec<ConnectorEvent> {
        let mut out = Vec::new();
        while out.len() < MAX_EVENTS_PER_ADVANCE {
            let timer = self
                .calls
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.next.map(|(t, what)| (t, i, what)))
                .min_by_key(|(t, _, _)| *t);
            match (self.next_arrival, timer) {
                (Some(a), t) if a <= now && !matches!(t, Some((t, _, _)) if t < a) => {
                    self.arrive(a, &mut out);
                }
                (_, Some((t, i, what))) if t <= now => self.far_end(i, t, what, &mut out),
                _ => break,
            }
        }
        out
    }

    /// Carries out a command at `now`; returns its outcome and the events it
    /// caused, in order.
    ///
    /// # Errors
    /// `Unsupported`, `UnknownCall`, `InvalidState` or `BadArgument`.
    pub fn execute(
        &mut self,
        cmd: &Command,
        now: Instant,
    ) -> Result<(Outcome, Vec<ConnectorEvent>), PluginError> {
        match cmd.kind {
            k if !crate::CAPABILITIES.contains(k) => Err(unsupported(cmd)),
            CommandKind::MAKE_CALL => self.make_call(cmd, now),
            CommandKind::SET_AGENT_STATE => {
                let ROption::RSome(state) = &cmd.agent_state else {
                    return Err(bad_argument("SetAgentState needs an agent state"));
                };
                self.agent_state = Some(state.clone());
                let mut ev =
                    ConnectorEvent::new(EventKind::AGENT_STATE_CHANGED, "", ConnectionState::Null);
                ev.agent_state = ROption::RSome(state.clone());
                Ok((Outcome::default(), vec![ev]))
            }
            _ => self
                .call_command(cmd, now)
                .map(|evs| (Outcome::default(), evs)),
        }
    }

    fn call_command(
        &mut self,
        cmd: &Command,
        now: Instant,
    ) -> Result<Vec<ConnectorEvent>, PluginError> {
        let i = self
            .calls
            .iter()
            .position(|c| c.info.call_id == cmd.call_id)
            .ok_or_else(|| {
                PluginError::new(
                    ErrorKind::UNKNOWN_CALL,
                    format!("no call {:?}", cmd.call_id.as_str()),
                )
            })?;
        let call = &self.calls[i];
        let (id, state) = (call.info.call_id.clone(), call.info.state);
        let ringing_inbound =
            call.info.direction == Direction::Inbound && state == ConnectionState::Alerting;
        let ext = self.cfg.agent_extension.as_str();
        let ev = |kind, state, party: &str| event(kind, &id, state, party, "");
        let allowed = match cmd.kind {
            CommandKind::ANSWER | CommandKind::REJECT => ringing_inbound,
            CommandKind::HANGUP => true,
            CommandKind::HOLD | CommandKind::SEND_DTMF => state == ConnectionState::Connected,
            CommandKind::RETRIEVE => state == ConnectionState::Held,
            CommandKind::MUTE | CommandKind::UNMUTE => matches!(
                state,
                ConnectionState::Initiated | ConnectionState::Connected | ConnectionState::Held
            ),
            _ => return Err(unsupported(cmd)),
        };
        if !allowed {
            return Err(PluginError::new(
                ErrorKind::INVALID_STATE,
                format!(
                    "{} is not allowed on call {id} while it is {state}",
                    cmd.kind
                ),
            ));
        }
        let events = match cmd.kind {
            CommandKind::ANSWER => {
                let party = self.calls[i].info.ani.clone();
                let next = self.hang_up_time(now);
                let call = &mut self.calls[i];
                call.info.state = ConnectionState::Connected;
                call.next = next;
                vec![ev(
                    EventKind::ESTABLISHED,
                    ConnectionState::Connected,
                    &party,
                )]
            }
            CommandKind::REJECT | CommandKind::HANGUP => {
                let cause = if cmd.kind == CommandKind::REJECT {
                    "CallRejected"
                } else {
                    "NormalClearing"
                };
                let evs = cleared(&id, ext, cause);
                self.calls.remove(i);
                evs
            }
            CommandKind::HOLD | CommandKind::RETRIEVE => {
                let (kind, new_state) = if cmd.kind == CommandKind::HOLD {
                    (EventKind::HELD, ConnectionState::Held)
                } else {
                    (EventKind::RETRIEVED, ConnectionState::Connected)
                };
                self.calls[i].info.state = new_state;
                vec![ev(kind, new_state, ext)]
            }
            CommandKind::SEND_DTMF => {
                let digits = cmd.target.trim();
                if digits.is_empty() || !digits.chars().all(is_dtmf) {
                    return Err(bad_argument(&format!(
                        "SendDtmf needs digits from 0-9, *, #, A-D in target, not {digits:?}"
                    )));
                }
                let mut e = ev(EventKind::DIGITS_GENERATED, state, ext);
                e.text = digits.into();
                vec![e]
            }
            CommandKind::MUTE => vec![ev(EventKind::MUTED, state, ext)],
            _ => vec![ev(EventKind::UNMUTED, state, ext)],
        };
        Ok(events)
    }

    fn make_call(
        &mut self,
        cmd: &Command,
        now: Instant,
    ) -> Result<(Outcome, Vec<ConnectorEvent>), PluginError> {
        let target = cmd.target.trim();
        if target.is_empty() {
            return Err(bad_argument("MakeCall needs a number in target"));
        }
        let id = self.new_id();
        let info = CallInfo {
            call_id: id.clone(),
            direction: Direction::Outbound,
            ani: self.cfg.agent_extension.as_str().into(),
            dnis: target.into(),
            state: ConnectionState::Initiated,
            data: RVec::new(),
        };
        let mut ev = event(
            EventKind::ORIGINATED,
            &id,
            ConnectionState::Initiated,
            target,
            "",
        );
        ev.call = ROption::RSome(info.clone());
        let next = after(now, Duration::from_millis(self.cfg.outbound_ring_ms));
        self.calls.push(SimCall {
            info,
            next: next.map(|t| (t, FarEnd::Rings)),
        });
        let outcome = Outcome {
            call_id: id,
            detail: format!("dialling {target}").into(),
        };
        Ok((outcome, vec![ev]))
    }

    /// An inbound call arrives at `at`.
    fn arrive(&mut self, at: Instant, out: &mut Vec<ConnectorEvent>) {
        self.inbound_generated += 1;
        let id = self.new_id();
        let digits = self.rng.gen_range(0..10_000u32);
        let ani = RString::from(format!("{}{digits:04}", self.cfg.ani_prefix));
        let info = CallInfo {
            call_id: id.clone(),
            direction: Direction::Inbound,
            ani: ani.clone(),
            dnis: self.cfg.dnis.as_str().into(),
            state: ConnectionState::Alerting,
            data: self
                .cfg
                .call_data
                .iter()
                .map(|(k, v)| KeyValue::new(k.as_str(), v.as_str()))
                .collect(),
        };
        let mut ev = event(
            EventKind::DELIVERED,
            &id,
            ConnectionState::Alerting,
            &ani,
            "",
        );
        ev.call = ROption::RSome(info.clone());
        out.push(ev);
        self.calls.push(SimCall {
            info,
            next: self.abandon_time(at),
        });
        self.next_arrival = if self.cfg.calls_per_minute > 0.0 && self.below_max_calls() {
            // Exponential inter-arrival times make a Poisson process.
            let u: f64 = self.rng.gen();
            let secs = -(1.0 - u).ln() * 60.0 / self.cfg.calls_per_minute;
            secs_after(at, secs)
        } else {
            None
        };
    }

    /// The far end of call `i` acts at `at`.
    fn far_end(&mut self, i: usize, at: Instant, what: FarEnd, out: &mut Vec<ConnectorEvent>) {
        let party = self.calls[i].far_party();
        let id = self.calls[i].info.call_id.clone();
        self.calls[i].next = None;
        match what {
            FarEnd::Abandons | FarEnd::HangsUp => {
                let cause = if what == FarEnd::Abandons {
                    "CallAbandoned"
                } else {
                    "NormalClearing"
                };
                out.extend(cleared(&id, &party, cause));
                self.calls.remove(i);
            }
            FarEnd::Rings if party.ends_with("486") => {
                out.push(event(
                    EventKind::FAILED,
                    &id,
                    ConnectionState::Failed,
                    &party,
                    "Busy",
                ));
                out.push(event(
                    EventKind::CALL_CLEARED,
                    &id,
                    ConnectionState::Null,
                    "",
                    "",
                ));
                self.calls.remove(i);
            }
            FarEnd::Rings => {
                out.push(event(
                    EventKind::DELIVERED,
                    &id,
                    ConnectionState::Initiated,
                    &party,
                    "",
                ));
                let next = after(at, Duration::from_millis(self.cfg.outbound_answer_ms));
                self.calls[i].next = next.map(|t| (t, FarEnd::Answers));
            }
            FarEnd::Answers => {
                out.push(event(
                    EventKind::ESTABLISHED,
                    &id,
                    ConnectionState::Connected,
                    &party,
                    "",
                ));
                let next = self.hang_up_time(at);
                let call = &mut self.calls[i];
                call.info.state = ConnectionState::Connected;
                call.next = next;
            }
        }
    }

    /// Takes over a call from before a restart, with a fresh far-end timer.
    fn adopt(&mut self, mut info: CallInfo, now: Instant) {
        if !info.state.is_live() || self.calls.iter().any(|c| c.info.call_id == info.call_id) {
            return;
        }
        let next = match (info.direction, info.state) {
            (Direction::Inbound, ConnectionState::Alerting | ConnectionState::Queued) => {
                info.state = ConnectionState::Alerting;
                self.abandon_time(now)
            }
            (Direction::Outbound, ConnectionState::Initiated) => {
                after(now, Duration::from_millis(self.cfg.outbound_ring_ms))
                    .map(|t| (t, FarEnd::Rings))
            }
            (_, ConnectionState::Connected | ConnectionState::Held) => self.hang_up_time(now),
            _ => None,
        };
        self.calls.push(SimCall { info, next });
    }

    fn below_max_calls(&self) -> bool {
        self.cfg.max_calls == 0 || self.inbound_generated < self.cfg.max_calls
    }

    fn abandon_time(&self, from: Instant) -> Option<(Instant, FarEnd)> {
        let secs = self.cfg.abandon_after_secs;
        (secs > 0.0)
            .then(|| secs_after(from, secs))
            .flatten()
            .map(|t| (t, FarEnd::Abandons))
    }

    fn hang_up_time(&mut self, from: Instant) -> Option<(Instant, FarEnd)> {
        let [min, max] = self.cfg.talk_time_secs;
        if max <= 0.0 {
            return None;
        }
        let secs = min + self.rng.gen::<f64>() * (max - min);
        secs_after(from, secs).map(|t| (t, FarEnd::HangsUp))
    }

    fn new_id(&mut self) -> RString {
        self.last_seq += 1;
        format!("{}-{}", self.id_prefix, self.last_seq).into()
    }
}

fn after(from: Instant, d: Duration) -> Option<Instant> {
    from.checked_add(d)
}

fn secs_after(from: Instant, secs: f64) -> Option<Instant> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| after(from, d))
}

fn is_dtmf(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D' | 'a'..='d')
}

fn bad_argument(msg: &str) -> PluginError {
    PluginError::new(ErrorKind::BAD_ARGUMENT, msg)
}

fn event(
    kind: EventKind,
    call_id: &RString,
    state: ConnectionState,
    party: &str,
    cause: &str,
) -> ConnectorEvent {
    let mut ev = ConnectorEvent::new(kind, call_id.clone(), state);
    ev.party = party.into();
    ev.cause = cause.into();
    ev
}

/// `party` left the call, which is over.
fn cleared(call_id: &RString, party: &str, cause: &str) -> Vec<ConnectorEvent> {
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

#[cfg(test)]
mod tests;
