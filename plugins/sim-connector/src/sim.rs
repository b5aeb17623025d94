//! The simulation itself, shared by both connection models: a table of calls
//! (each with its far parties, at most one pending set-up action and one
//! hang-up time per far party), the next random arrival and the scenario's
//! next step. Time is passed in, so tests drive it with made-up instants.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use cti_plugin_api::sdk::prelude::*;
use rand::{rngs::SmallRng, Rng, SeedableRng};

use crate::{
    scenario::{Action, Dial, NewCall, Scenario, Step},
    settings::SimSettings,
};

/// The most events one [`SimCore::advance`] returns (give or take the events
/// of its last action); what is still due is returned by the next call.
pub const MAX_EVENTS_PER_ADVANCE: usize = 1_000;

/// **Simulator test hook.** A `Hangup` command whose `attrs` hold
/// `("sim.far_end", PARTY)` means "the far party PARTY hangs up", not the
/// agent: PARTY leaves the call (a conference goes on without it; a
/// two-party call clears). `("sim.far_end", "*")` makes every far party
/// hang up. The desktop passes `attrs` through to the connector unchanged,
/// so tests can play the far end through any control or `cti-host ctl raw`.
pub const FAR_END_ATTR: &str = "sim.far_end";

/// What happens next while a call is being set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// The caller gives up while the call is still ringing at the agent.
    Abandons,
    /// The called party starts ringing (or is busy).
    Rings,
    /// The called party answers.
    Answers,
    /// The caller (the switch) gives up on a called party that never answers.
    GivesUp,
}

/// One far party of a call.
#[derive(Debug, Clone)]
struct FarParty {
    number: RString,
    /// Order in which the parties reached the agent (conference order).
    joined: u64,
    /// When it hangs up, if ever.
    hangs_up: Option<Instant>,
}

#[derive(Debug, Clone)]
struct SimCall {
    info: CallInfo,
    /// The far parties (one; several once calls are conferenced), oldest first.
    parties: Vec<FarParty>,
    /// The next set-up action (ringing phase).
    setup: Option<(Instant, Setup)>,
    /// How the called party of an outbound call behaves.
    dial: Dial,
    /// Talk time of this call's far end (scenario), instead of the settings'.
    talk_secs: Option<f64>,
}

impl SimCall {
    /// The far parties, comma-separated.
    fn far_list(&self) -> String {
        let numbers: Vec<&str> = self.parties.iter().map(|p| p.number.as_str()).collect();
        numbers.join(",")
    }

    fn party(&self, number: &str) -> Option<usize> {
        self.parties.iter().position(|p| p.number == number)
    }

    /// The cause when the far end leaves now.
    fn far_cause(&self) -> &'static str {
        match (self.info.direction, self.info.state) {
            (Direction::Inbound, ConnectionState::Alerting | ConnectionState::Queued) => {
                "CallAbandoned"
            }
            (Direction::Outbound, ConnectionState::Initiated) => "CallRejected",
            _ => "NormalClearing",
        }
    }
}

/// What is due next.
#[derive(Debug, Clone, Copy)]
enum Due {
    Arrival,
    Step,
    Setup(usize, Setup),
    HangUp(usize, usize),
}

/// Where the scenario's playback is.
#[derive(Debug, Clone)]
struct Cursor {
    /// The pass (from 1).
    pass: u64,
    /// When the pass started (`None`: beyond the clock's range).
    pass_start: Option<Instant>,
    /// The next step.
    next: usize,
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
    joins: u64,
    scenario: Option<Scenario>,
    cursor: Option<Cursor>,
    /// Scenario call name → (its current call id, its far party).
    scenario_calls: HashMap<String, (RString, RString)>,
    /// Every id a scenario call or an adopted call had (never reused).
    used_ids: HashSet<RString>,
    /// Lines for the log (skipped scenario steps).
    notes: Vec<String>,
}

impl SimCore {
    /// Builds an idle simulation; nothing happens before [`start`](Self::start).
    /// Reads the settings' scenario file, if any.
    ///
    /// # Errors
    /// `BadSettings` when the settings do not validate or the scenario file
    /// cannot be read or is wrong.
    pub fn new(cfg: SimSettings) -> Result<Self, PluginError> {
        cfg.validate()?;
        let scenario = cfg.scenario.as_deref().map(Scenario::load).transpose()?;
        Self::with_scenario(cfg, scenario)
    }

    /// Builds an idle simulation playing `scenario` (instead of the file the
    /// settings name).
    ///
    /// # Errors
    /// `BadSettings` when the settings do not validate.
    pub fn with_scenario(
        mut cfg: SimSettings,
        scenario: Option<Scenario>,
    ) -> Result<Self, PluginError> {
        cfg.validate()?;
        if let Some(s) = &scenario {
            // Random calls follow the settings' rule for scenarios.
            cfg.scenario.get_or_insert_with(|| s.source.clone());
        }
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
            joins: 0,
            scenario,
            cursor: None,
            scenario_calls: HashMap::new(),
            used_ids: HashSet::new(),
            notes: Vec::new(),
        })
    }

    /// Starts generating inbound calls and playing the scenario (from its
    /// first step), and adopts the calls the desktop knew (after a restart
    /// or a reload), so commands on them keep working.
    pub fn start(&mut self, now: Instant, adopted: Vec<CallInfo>) {
        // The first call comes whatever the rate, so a demo shows a call at
        // once; the Poisson arrivals (if any) follow it.
        self.next_arrival = if self.cfg.random_arrivals() && self.below_max_calls() {
            now.checked_add(Duration::from_millis(self.cfg.first_call_after_ms))
        } else {
            None
        };
        self.cursor = self
            .scenario
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|_| Cursor {
                pass: 1,
                pass_start: Some(now),
                next: 0,
            });
        for info in adopted {
            self.adopt(info, now);
        }
    }

    /// The live calls, oldest first.
    pub fn calls(&self) -> Vec<CallInfo> {
        self.calls.iter().map(|c| c.info.clone()).collect()
    }

    /// The far parties of a live call, oldest first (empty for an unknown call).
    pub fn far_parties(&self, call_id: &str) -> Vec<String> {
        self.calls
            .iter()
            .find(|c| c.info.call_id == call_id)
            .map(|c| c.parties.iter().map(|p| p.number.to_string()).collect())
            .unwrap_or_default()
    }

    /// The agent state the switch last confirmed or forced.
    pub fn agent_state(&self) -> Option<&AgentState> {
        self.agent_state.as_ref()
    }

    /// The file of the scenario being played, if any.
    pub fn scenario_source(&self) -> Option<&str> {
        self.scenario.as_ref().map(|s| s.source.as_str())
    }

    /// Lines for the log since the last call (scenario steps skipped).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// When something happens next, if ever.
    pub fn next_due(&self) -> Option<Instant> {
        self.next_action().map(|(t, _)| t)
    }

    /// Runs the simulation up to `now`, returning what happened in order.
    pub fn advance(&mut self, now: Instant) -> Vec<ConnectorEvent> {
        let mut out = Vec::new();
        let mut actions = 0;
        while out.len() < MAX_EVENTS_PER_ADVANCE && actions < MAX_EVENTS_PER_ADVANCE {
            let Some((at, due)) = self.next_action().filter(|(t, _)| *t <= now) else {
                break;
            };
            actions += 1;
            match due {
                Due::Arrival => self.arrive(at, &mut out),
                Due::Step => self.play_step(at, &mut out),
                Due::Setup(i, what) => self.set_up(i, at, what, &mut out),
                Due::HangUp(i, j) => self.party_leaves(i, j, "NormalClearing", &mut out),
            }
        }
        out
    }

    /// The earliest pending action; on a tie an arrival comes first, then a
    /// scenario step, then the calls' timers in call order.
    fn next_action(&self) -> Option<(Instant, Due)> {
        let mut best: Option<(Instant, Due)> = None;
        let mut offer = |t: Instant, due: Due| {
            if best.as_ref().is_none_or(|(b, _)| t < *b) {
                best = Some((t, due));
            }
        };
        if let Some(t) = self.next_arrival {
            offer(t, Due::Arrival);
        }
        if let Some(t) = self.step_due() {
            offer(t, Due::Step);
        }
        for (i, c) in self.calls.iter().enumerate() {
            if let Some((t, what)) = c.setup {
                offer(t, Due::Setup(i, what));
            }
            for (j, p) in c.parties.iter().enumerate() {
                if let Some(t) = p.hangs_up {
                    offer(t, Due::HangUp(i, j));
                }
            }
        }
        best
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
        let result = self.execute_now(cmd, now);
        self.test_mode_second_offer(now);
        result
    }

    /// Test mode: the second inbound call is offered once the first no
    /// longer rings (so `Answer` and `Reject` can both be exercised).
    fn test_mode_second_offer(&mut self, now: Instant) {
        if !self.cfg.test_mode {
            return;
        }
        let first_rings = self.calls.iter().any(|c| {
            c.info.direction == Direction::Inbound && c.info.state == ConnectionState::Alerting
        });
        if self.inbound_generated == 1 && self.next_arrival.is_none() && !first_rings {
            self.next_arrival = now.checked_add(Duration::from_millis(200));
        }
    }

    fn execute_now(
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
            CommandKind::HANGUP if lookup(&cmd.attrs, FAR_END_ATTR).is_some() => {
                self.far_end_hangs_up(cmd)
            }
            CommandKind::BLIND_TRANSFER => self.blind_transfer(cmd),
            CommandKind::CONSULT => self.consult(cmd, now),
            CommandKind::COMPLETE_TRANSFER
            | CommandKind::CANCEL_CONSULT
            | CommandKind::CONFERENCE
            | CommandKind::ALTERNATE => self.two_calls(cmd),
            _ => self
                .call_command(cmd, now)
                .map(|evs| (Outcome::default(), evs)),
        }
    }

    fn find(&self, call_id: &str) -> Result<usize, PluginError> {
        self.calls
            .iter()
            .position(|c| c.info.call_id == call_id)
            .ok_or_else(|| {
                PluginError::new(ErrorKind::UNKNOWN_CALL, format!("no call {call_id:?}"))
            })
    }

    /// `InvalidState` unless call `i` is in one of `states`.
    fn require(
        &self,
        kind: CommandKind,
        i: usize,
        states: &[ConnectionState],
    ) -> Result<(), PluginError> {
        let info = &self.calls[i].info;
        if states.contains(&info.state) {
            return Ok(());
        }
        let wanted: Vec<&str> = states.iter().map(|s| s.name()).collect();
        Err(PluginError::new(
            ErrorKind::INVALID_STATE,
            format!(
                "{kind} is not allowed on call {} while it is {} (it must be {})",
                info.call_id,
                info.state,
                wanted.join(" or ")
            ),
        ))
    }

    fn call_command(
        &mut self,
        cmd: &Command,
        now: Instant,
    ) -> Result<Vec<ConnectorEvent>, PluginError> {
        let i = self.find(&cmd.call_id)?;
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
                let party = self.calls[i].far_list();
                let talk = self.calls[i].talk_secs;
                for j in 0..self.calls[i].parties.len() {
                    let t = self.hang_up_time(now, talk);
                    self.calls[i].parties[j].hangs_up = t;
                }
                let call = &mut self.calls[i];
                call.info.state = ConnectionState::Connected;
                call.setup = None;
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
        let ev = self.originate(id.clone(), target, RVec::new(), Dial::Auto, None, now);
        // The new call's id only: `cti-host ctl dial` prints it for scripts.
        let outcome = Outcome {
            call_id: id,
            detail: RString::new(),
        };
        Ok((outcome, vec![ev]))
    }

    /// BlindTransfer (single step): the agent hands call A to `target` and
    /// leaves it.
    fn blind_transfer(
        &mut self,
        cmd: &Command,
    ) -> Result<(Outcome, Vec<ConnectorEvent>), PluginError> {
        let i = self.find(&cmd.call_id)?;
        let target = cmd.target.trim();
        if target.is_empty() {
            return Err(bad_argument(
                "BlindTransfer needs the destination number in target",
            ));
        }
        self.require(
            cmd.kind,
            i,
            &[ConnectionState::Connected, ConnectionState::Held],
        )?;
        let ext = self.cfg.agent_extension.clone();
        let id = self.calls.remove(i).info.call_id;
        let mut transferred = event(
            EventKind::TRANSFERRED,
            &id,
            ConnectionState::Null,
            &ext,
            "SingleStepTransfer",
        );
        transferred.text = target.into();
        let mut events = vec![transferred];
        events.extend(cleared(&id, &ext, "Transferred"));
        let outcome = Outcome {
            call_id: RString::new(),
            detail: format!("{id} transferred to {target}").into(),
        };
        Ok((outcome, events))
    }

    /// Consult: hold call A and call `target` (call B, the outcome's call).
    fn consult(
        &mut self,
        cmd: &Command,
        now: Instant,
    ) -> Result<(Outcome, Vec<ConnectorEvent>), PluginError> {
        let i = self.find(&cmd.call_id)?;
        let target = cmd.target.trim();
        if target.is_empty() {
            return Err(bad_argument(
                "Consult needs the number to consult in target",
            ));
        }
        self.require(cmd.kind, i, &[ConnectionState::Connected])?;
        let ext = self.cfg.agent_extension.clone();
        let a = self.calls[i].info.call_id.clone();
        self.calls[i].info.state = ConnectionState::Held;
        let held = event(EventKind::HELD, &a, ConnectionState::Held, &ext, "");
        let b = self.new_id();
        let mut originated = self.originate(b.clone(), target, RVec::new(), Dial::Auto, None, now);
        originated.related_call_id = a.clone();
        originated
            .attrs
            .push(KeyValue::new("consult_of", a.clone()));
        // The consultation's id only: `cti-host ctl transfer --consult`
        // prints it for scripts.
        let outcome = Outcome {
            call_id: b,
            detail: RString::new(),
        };
        Ok((outcome, vec![held, originated]))
    }

    /// CompleteTransfer, CancelConsult, Conference and Alternate: call A
    /// (`call_id`) is the held one, call B (`other_call_id`) the other. The
    /// two may come in either order: when only `other_call_id` is held, the
    /// roles swap.
    fn two_calls(&mut self, cmd: &Command) -> Result<(Outcome, Vec<ConnectorEvent>), PluginError> {
        use ConnectionState as S;
        let kind = cmd.kind;
        let mut a = self.find(&cmd.call_id)?;
        let other = cmd.other_call_id.trim();
        if other.is_empty() {
            return Err(bad_argument(&format!(
                "{kind} needs the second call in other_call_id"
            )));
        }
        let mut b = self.find(other)?;
        if a == b {
            return Err(bad_argument(&format!(
                "{kind} needs two different calls, not {other} twice"
            )));
        }
        if self.calls[a].info.state != S::Held && self.calls[b].info.state == S::Held {
            std::mem::swap(&mut a, &mut b);
        }
        if self.calls[a].info.state != S::Held {
            let info = &self.calls[a].info;
            return Err(PluginError::new(
                ErrorKind::INVALID_STATE,
                format!(
                    "{kind} is not allowed on call {} while it is {} (one of the two calls must be Held)",
                    info.call_id, info.state
                ),
            ));
        }
        let b_states: &[S] = match kind {
            CommandKind::COMPLETE_TRANSFER => &[S::Connected, S::Initiated],
            CommandKind::CANCEL_CONSULT => &[S::Initiated, S::Connected, S::Held],
            _ => &[S::Connected],
        };
        self.require(kind, b, b_states)?;
        let ext = self.cfg.agent_extension.clone();
        let a_id = self.calls[a].info.call_id.clone();
        let b_id = self.calls[b].info.call_id.clone();
        let mut events = Vec::new();
        let detail = match kind {
            CommandKind::COMPLETE_TRANSFER => {
                let target = self.calls[b].far_list();
                let mut t = event(EventKind::TRANSFERRED, &a_id, S::Null, &ext, "Transfer");
                t.text = target.as_str().into();
                t.related_call_id = b_id.clone();
                events.push(t);
                events.extend(cleared(&a_id, &ext, "Transferred"));
                events.extend(cleared(&b_id, &ext, "Transferred"));
                self.remove(&a_id);
                self.remove(&b_id);
                format!("{a_id} transferred to {target}")
            }
            CommandKind::CANCEL_CONSULT => {
                events.extend(cleared(&b_id, &ext, "ConsultCanceled"));
                self.remove(&b_id);
                events.push(event(EventKind::RETRIEVED, &a_id, S::Connected, &ext, ""));
                if let Ok(a) = self.find(&a_id) {
                    self.calls[a].info.state = S::Connected;
                }
                format!("consultation {b_id} canceled, {a_id} retrieved")
            }
            CommandKind::CONFERENCE => {
                let merged = self.calls[a].far_list();
                let moved = std::mem::take(&mut self.calls[a].parties);
                let a_data = self.calls[a].info.data.clone();
                let call_b = &mut self.calls[b];
                call_b.parties.extend(moved);
                call_b.parties.sort_by_key(|p| p.joined);
                for kv in a_data.iter() {
                    if lookup(&call_b.info.data, &kv.key).is_none() {
                        call_b.info.data.push(kv.clone());
                    }
                }
                let now_in_b = call_b.far_list();
                let b_state = call_b.info.state;
                let mut on_b = event(EventKind::CONFERENCED, &b_id, b_state, &merged, "");
                on_b.related_call_id = a_id.clone();
                on_b.text = now_in_b.as_str().into();
                let mut on_a = event(EventKind::CONFERENCED, &a_id, S::Null, &merged, "Merged");
                on_a.related_call_id = b_id.clone();
                on_a.text = now_in_b.as_str().into();
                events.push(on_b);
                events.push(on_a);
                events.extend(cleared(&a_id, &ext, "Conferenced"));
                self.remove(&a_id);
                format!("{a_id} merged into {b_id}: {now_in_b}")
            }
            _ => {
                // Alternate.
                self.calls[b].info.state = S::Held;
                self.calls[a].info.state = S::Connected;
                let mut held = event(EventKind::HELD, &b_id, S::Held, &ext, "");
                held.related_call_id = a_id.clone();
                let mut retrieved = event(EventKind::RETRIEVED, &a_id, S::Connected, &ext, "");
                retrieved.related_call_id = b_id.clone();
                events.push(held);
                events.push(retrieved);
                format!("{b_id} held, {a_id} retrieved")
            }
        };
        let outcome = Outcome {
            call_id: RString::new(),
            detail: detail.into(),
        };
        Ok((outcome, events))
    }

    /// The far-end test hook: far party `sim.far_end` (or `*`: all of them)
    /// of `call_id` hangs up.
    fn far_end_hangs_up(
        &mut self,
        cmd: &Command,
    ) -> Result<(Outcome, Vec<ConnectorEvent>), PluginError> {
        let i = self.find(&cmd.call_id)?;
        let party = lookup(&cmd.attrs, FAR_END_ATTR).unwrap_or_default().trim();
        if party.is_empty() {
            return Err(bad_argument(&format!(
                "{FAR_END_ATTR} needs the number of a far party of the call, or *"
            )));
        }
        let mut events = Vec::new();
        if party == "*" {
            self.all_far_parties_leave(i, &mut events);
        } else {
            let call = &self.calls[i];
            let j = call.party(party).ok_or_else(|| {
                bad_argument(&format!(
                    "call {} has no far party {party} (its far parties: {})",
                    call.info.call_id,
                    call.far_list()
                ))
            })?;
            let cause = call.far_cause();
            self.party_leaves(i, j, cause, &mut events);
        }
        let outcome = Outcome {
            call_id: RString::new(),
            detail: format!("far party {party} hung up").into(),
        };
        Ok((outcome, events))
    }

    fn remove(&mut self, call_id: &RString) {
        self.calls.retain(|c| c.info.call_id != *call_id);
    }

    fn new_party(&mut self, number: RString, hangs_up: Option<Instant>) -> FarParty {
        self.joins += 1;
        FarParty {
            number,
            joined: self.joins,
            hangs_up,
        }
    }

    /// A new call rings at the agent; returns its `Delivered`.
    fn deliver(
        &mut self,
        id: RString,
        ani: RString,
        dnis: RString,
        data: RVec<KeyValue>,
        talk_secs: Option<f64>,
        at: Instant,
    ) -> ConnectorEvent {
        let info = CallInfo {
            call_id: id.clone(),
            direction: Direction::Inbound,
            ani: ani.clone(),
            dnis,
            state: ConnectionState::Alerting,
            data,
        };
        let mut ev = event(
            EventKind::DELIVERED,
            &id,
            ConnectionState::Alerting,
            &ani,
            "",
        );
        ev.call = ROption::RSome(info.clone());
        let party = self.new_party(ani, None);
        let setup = self.abandon_time(at);
        self.calls.push(SimCall {
            info,
            parties: vec![party],
            setup,
            dial: Dial::Auto,
            talk_secs,
        });
        ev
    }

    /// The agent's device calls `dnis`; returns its `Originated`.
    fn originate(
        &mut self,
        id: RString,
        dnis: &str,
        data: RVec<KeyValue>,
        dial: Dial,
        talk_secs: Option<f64>,
        at: Instant,
    ) -> ConnectorEvent {
        let info = CallInfo {
            call_id: id.clone(),
            direction: Direction::Outbound,
            ani: self.cfg.agent_extension.as_str().into(),
            dnis: dnis.into(),
            state: ConnectionState::Initiated,
            data,
        };
        let mut ev = event(
            EventKind::ORIGINATED,
            &id,
            ConnectionState::Initiated,
            dnis,
            "",
        );
        ev.call = ROption::RSome(info.clone());
        let party = self.new_party(dnis.into(), None);
        let setup =
            after(at, Duration::from_millis(self.cfg.outbound_ring_ms)).map(|t| (t, Setup::Rings));
        self.calls.push(SimCall {
            info,
            parties: vec![party],
            setup,
            dial,
            talk_secs,
        });
        ev
    }

    /// A random inbound call arrives at `at`.
    fn arrive(&mut self, at: Instant, out: &mut Vec<ConnectorEvent>) {
        self.inbound_generated += 1;
        let id = self.new_id();
        let ani = self.random_ani();
        let data = self.default_call_data();
        let dnis = self.cfg.dnis.as_str().into();
        out.push(self.deliver(id, ani, dnis, data, None, at));
        let rate = self.cfg.arrival_rate();
        self.next_arrival = if rate > 0.0 && self.below_max_calls() {
            // Exponential inter-arrival times make a Poisson process.
            let u: f64 = self.rng.gen();
            let secs = -(1.0 - u).ln() * 60.0 / rate;
            secs_after(at, secs)
        } else {
            None
        };
    }

    /// The set-up action of call `i` happens at `at`.
    fn set_up(&mut self, i: usize, at: Instant, what: Setup, out: &mut Vec<ConnectorEvent>) {
        self.calls[i].setup = None;
        let call = &self.calls[i];
        let id = call.info.call_id.clone();
        let party = call.far_list();
        let failed = |cause: &str| {
            vec![
                event(
                    EventKind::FAILED,
                    &id,
                    ConnectionState::Failed,
                    &party,
                    cause,
                ),
                event(EventKind::CALL_CLEARED, &id, ConnectionState::Null, "", ""),
            ]
        };
        match what {
            Setup::Abandons => self.party_leaves(i, 0, "CallAbandoned", out),
            Setup::Rings => {
                let busy = match call.dial {
                    Dial::Busy => true,
                    Dial::Auto => party.ends_with("486"),
                    Dial::NoAnswer(_) => false,
                };
                if busy {
                    out.extend(failed("Busy"));
                    self.calls.remove(i);
                    return;
                }
                out.push(event(
                    EventKind::DELIVERED,
                    &id,
                    call.info.state,
                    &party,
                    "",
                ));
                let next = match call.dial {
                    Dial::NoAnswer(ring) => after(at, ring).map(|t| (t, Setup::GivesUp)),
                    _ => after(at, Duration::from_millis(self.cfg.outbound_answer_ms))
                        .map(|t| (t, Setup::Answers)),
                };
                self.calls[i].setup = next;
            }
            Setup::GivesUp => {
                out.extend(failed("NoAnswer"));
                self.calls.remove(i);
            }
            Setup::Answers => {
                out.push(event(
                    EventKind::ESTABLISHED,
                    &id,
                    ConnectionState::Connected,
                    &party,
                    "",
                ));
                let talk = call.talk_secs;
                for j in 0..self.calls[i].parties.len() {
                    let t = self.hang_up_time(at, talk);
                    self.calls[i].parties[j].hangs_up = t;
                }
                self.calls[i].info.state = ConnectionState::Connected;
            }
        }
    }

    /// Far party `j` of call `i` leaves: the call goes on without it, or
    /// clears when it was the last one.
    fn party_leaves(&mut self, i: usize, j: usize, cause: &str, out: &mut Vec<ConnectorEvent>) {
        let call = &mut self.calls[i];
        let party = call.parties.remove(j);
        let id = call.info.call_id.clone();
        if call.parties.is_empty() {
            out.extend(cleared(&id, &party.number, cause));
            self.calls.remove(i);
        } else {
            out.push(event(
                EventKind::CONNECTION_CLEARED,
                &id,
                call.info.state,
                &party.number,
                cause,
            ));
        }
    }

    /// Every far party of call `i` leaves, oldest first; the call clears.
    fn all_far_parties_leave(&mut self, i: usize, out: &mut Vec<ConnectorEvent>) {
        let cause = self.calls[i].far_cause();
        for _ in 0..self.calls[i].parties.len() {
            self.party_leaves(i, 0, cause, out);
        }
    }

    // ------------------------------------------------------------ scenario

    fn step_due(&self) -> Option<Instant> {
        let cursor = self.cursor.as_ref()?;
        let step = self.scenario.as_ref()?.steps.get(cursor.next)?;
        cursor.pass_start?.checked_add(step.at)
    }

    /// Plays the scenario's next step, due at `at`.
    fn play_step(&mut self, at: Instant, out: &mut Vec<ConnectorEvent>) {
        let (Some(scenario), Some(cursor)) = (self.scenario.as_ref(), self.cursor.as_mut()) else {
            return;
        };
        let Some(step) = scenario.steps.get(cursor.next).cloned() else {
            self.cursor = None;
            return;
        };
        cursor.next += 1;
        if cursor.next == scenario.steps.len() {
            if scenario.repeat {
                cursor.next = 0;
                cursor.pass += 1;
                cursor.pass_start = cursor
                    .pass_start
                    .and_then(|s| s.checked_add(scenario.period));
            } else {
                self.cursor = None;
            }
        }
        self.play(step, at, out);
    }

    fn play(&mut self, step: Step, at: Instant, out: &mut Vec<ConnectorEvent>) {
        match step.action {
            Action::Inbound(NewCall {
                name,
                ani,
                dnis,
                data,
                talk_secs,
            }) => {
                let id = self.scenario_call_id(&name);
                let ani = ani.map_or_else(|| self.random_ani(), RString::from);
                let dnis = dnis.map_or_else(|| self.cfg.dnis.as_str().into(), RString::from);
                let data = data.map_or_else(|| self.default_call_data(), pairs);
                out.push(self.deliver(id.clone(), ani.clone(), dnis, data, talk_secs, at));
                self.scenario_calls.insert(name, (id, ani));
            }
            Action::Outbound(call, dial) => {
                let id = self.scenario_call_id(&call.name);
                let dnis = call.dnis.unwrap_or_default();
                let data = call.data.map(pairs).unwrap_or_default();
                out.push(self.originate(id.clone(), &dnis, data, dial, call.talk_secs, at));
                self.scenario_calls.insert(call.name, (id, dnis.into()));
            }
            Action::FarHangup { call, party } => {
                self.scripted_hangup(step.number, call.as_deref(), party.as_deref(), out);
            }
            Action::AgentState(state) => {
                self.agent_state = Some(state.clone());
                let mut ev =
                    ConnectorEvent::new(EventKind::AGENT_STATE_CHANGED, "", ConnectionState::Null);
                ev.agent_state = ROption::RSome(state);
                ev.cause = "switch".into();
                out.push(ev);
            }
        }
    }

    /// A `far_hangup` step: the party (by default the far party of the named
    /// call) leaves the named call, or whichever call it is in now (a
    /// conference it was merged into).
    fn scripted_hangup(
        &mut self,
        number: usize,
        call: Option<&str>,
        party: Option<&str>,
        out: &mut Vec<ConnectorEvent>,
    ) {
        let named = call.and_then(|n| self.scenario_calls.get(n).cloned());
        let party: RString = match (party, &named) {
            (Some(p), _) => p.into(),
            (None, Some((_, far))) => far.clone(),
            (None, None) => return,
        };
        let named_index = named
            .as_ref()
            .and_then(|(id, _)| self.calls.iter().position(|c| c.info.call_id == *id));
        let source = self.scenario.as_ref().map_or("", |s| s.source.as_str());
        let what = call.map_or_else(|| format!("party {party}"), |c| format!("call \"{c}\""));
        if party == "*" {
            match named_index {
                Some(i) => self.all_far_parties_leave(i, out),
                None => self.notes.push(format!(
                    "{source}: step {number}: far_hangup skipped: {what} is over"
                )),
            }
            return;
        }
        let target = named_index
            .filter(|&i| self.calls[i].party(&party).is_some())
            .or_else(|| self.calls.iter().position(|c| c.party(&party).is_some()));
        match target {
            Some(i) => {
                let j = self.calls[i].party(&party).unwrap_or(0);
                let cause = self.calls[i].far_cause();
                self.party_leaves(i, j, cause, out);
            }
            None => self.notes.push(format!(
                "{source}: step {number}: far_hangup skipped: {what} is over (no live call has party {party})"
            )),
        }
    }

    /// `scn-NAME`, or `scn-NAME-2`, `-3`… when taken (later passes, a call
    /// adopted after a restart).
    fn scenario_call_id(&mut self, name: &str) -> RString {
        let base = format!("scn-{name}");
        let mut id = RString::from(base.as_str());
        let mut k = 1;
        while self.used_ids.contains(&id) || self.calls.iter().any(|c| c.info.call_id == id) {
            k += 1;
            id = format!("{base}-{k}").into();
        }
        self.used_ids.insert(id.clone());
        id
    }

    // ------------------------------------------------------------ helpers

    /// Takes over a call from before a restart, with fresh far-end timers.
    fn adopt(&mut self, mut info: CallInfo, now: Instant) {
        if !info.state.is_live() || self.calls.iter().any(|c| c.info.call_id == info.call_id) {
            return;
        }
        self.used_ids.insert(info.call_id.clone());
        let setup = match (info.direction, info.state) {
            (Direction::Inbound, ConnectionState::Alerting | ConnectionState::Queued) => {
                info.state = ConnectionState::Alerting;
                self.abandon_time(now)
            }
            (Direction::Outbound, ConnectionState::Initiated) => {
                after(now, Duration::from_millis(self.cfg.outbound_ring_ms))
                    .map(|t| (t, Setup::Rings))
            }
            _ => None,
        };
        let hangs_up = match info.state {
            ConnectionState::Connected | ConnectionState::Held => self.hang_up_time(now, None),
            _ => None,
        };
        let far = match info.direction {
            Direction::Inbound => info.ani.clone(),
            Direction::Outbound => info.dnis.clone(),
        };
        let party = self.new_party(far, hangs_up);
        self.calls.push(SimCall {
            info,
            parties: vec![party],
            setup,
            dial: Dial::Auto,
            talk_secs: None,
        });
    }

    fn below_max_calls(&self) -> bool {
        self.cfg.max_calls == 0 || self.inbound_generated < self.cfg.max_calls
    }

    fn random_ani(&mut self) -> RString {
        let digits = self.rng.gen_range(0..10_000u32);
        format!("{}{digits:04}", self.cfg.ani_prefix).into()
    }

    fn default_call_data(&self) -> RVec<KeyValue> {
        self.cfg
            .call_data
            .iter()
            .map(|(k, v)| KeyValue::new(k.as_str(), v.as_str()))
            .collect()
    }

    fn abandon_time(&self, from: Instant) -> Option<(Instant, Setup)> {
        let secs = self.cfg.abandon_after_secs;
        (secs > 0.0)
            .then(|| secs_after(from, secs))
            .flatten()
            .map(|t| (t, Setup::Abandons))
    }

    /// When a far party connected at `from` hangs up: after `talk_secs`
    /// (0: never) or a draw from the settings' `talk_time_secs`.
    fn hang_up_time(&mut self, from: Instant, talk_secs: Option<f64>) -> Option<Instant> {
        if let Some(secs) = talk_secs {
            return (secs > 0.0).then(|| secs_after(from, secs)).flatten();
        }
        let [min, max] = self.cfg.talk_time_secs;
        if max <= 0.0 {
            return None;
        }
        let secs = min + self.rng.gen::<f64>() * (max - min);
        secs_after(from, secs)
    }

    fn new_id(&mut self) -> RString {
        self.last_seq += 1;
        format!("{}-{}", self.id_prefix, self.last_seq).into()
    }
}

fn pairs(data: Vec<(String, String)>) -> RVec<KeyValue> {
    data.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect()
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
