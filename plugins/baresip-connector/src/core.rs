//! The connector's model of baresip's calls and the mapping of baresip
//! events to CSTA events. No I/O: the session feeds it messages and emits
//! what it returns, so every rule here is unit-tested without baresip.
//!
//! Calls are keyed by the SIP Call-ID (baresip's `id`).

use std::collections::{HashMap, HashSet, VecDeque};

use cti_plugin_api::sdk::prelude::*;

use crate::proto::{user_of, CallStat, Event};

/// How many closed call ids are remembered (to ignore late news of them).
const CLOSED_MEMORY: usize = 512;

/// One call as the connector knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// SIP Call-ID.
    pub id: String,
    /// Who placed it.
    pub direction: Direction,
    /// Calling number (inbound: the far end; outbound: us).
    pub ani: String,
    /// Called number (inbound: us; outbound: the far end).
    pub dnis: String,
    /// The far end's URI.
    pub peer_uri: String,
    /// The far end's display name.
    pub peer_name: String,
    /// The baresip account (AOR) the call is on.
    pub account: String,
    /// The agent's connection state.
    pub state: ConnectionState,
    /// The SIP dialog is established (200/ACK done).
    pub established: bool,
    /// Outbound: the far end's alerting was reported.
    pub ringing_far: bool,
    /// The agent's microphone is muted.
    pub muted: bool,
    /// baresip marked the call on hold before it was established (its
    /// `accept` holds the previous call, even a ringing one): when it
    /// connects, an inbound call is resumed, an outbound one reported held.
    pub hold_on_establish: bool,
    /// The agent asked to reject it (for the clearing cause).
    pub rejecting: bool,
    /// The blind-transfer target the agent sent, if any.
    pub transfer_target: Option<String>,
    /// Digits received from the far end (RFC 4733 / SIP INFO).
    pub dtmf_received: String,
    /// The call that asked us (REFER) to place this one.
    pub referred_by: Option<String>,
    /// `CALL_LOCAL_SDP` events seen (an `accept` that really answers
    /// produces one before its response).
    pub local_sdp: u32,
}

impl Call {
    /// The far end's number.
    pub fn far(&self) -> &str {
        match self.direction {
            Direction::Inbound => &self.ani,
            Direction::Outbound => &self.dnis,
        }
    }

    /// The agent's own number.
    pub fn me(&self) -> &str {
        match self.direction {
            Direction::Inbound => &self.dnis,
            Direction::Outbound => &self.ani,
        }
    }

    /// What the desktop sees.
    pub fn info(&self) -> CallInfo {
        let mut data = vec![KeyValue::new("sip_call_id", self.id.as_str())];
        if !self.peer_uri.is_empty() {
            data.push(KeyValue::new("peer_uri", self.peer_uri.as_str()));
        }
        if !self.peer_name.is_empty() {
            data.push(KeyValue::new("peer_name", self.peer_name.as_str()));
        }
        if !self.account.is_empty() {
            data.push(KeyValue::new("account", self.account.as_str()));
        }
        if !self.dtmf_received.is_empty() {
            data.push(KeyValue::new("dtmf_received", self.dtmf_received.as_str()));
        }
        if let Some(r) = &self.referred_by {
            data.push(KeyValue::new("referred_by_call", r.as_str()));
        }
        CallInfo {
            call_id: self.id.as_str().into(),
            direction: self.direction,
            ani: self.ani.as_str().into(),
            dnis: self.dnis.as_str().into(),
            state: self.state,
            data: RVec::from(data),
        }
    }

    fn event(&self, kind: EventKind) -> ConnectorEvent {
        ConnectorEvent::new(kind, self.id.as_str(), self.state)
    }
}

/// Follow-up work for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Re-read `listcalls`: baresip changed something it does not report
    /// (it resumes a held call whenever another call closes).
    Sync,
    /// Resume this call (it was answered while baresip had it marked held).
    Resume(String),
}

/// What handling one message produced.
#[derive(Debug, Default)]
pub struct Reaction {
    /// Events for the desktop, in order.
    pub events: Vec<ConnectorEvent>,
    /// Work for the session once the current command is done.
    pub tasks: Vec<Task>,
    /// Log lines (`level`, text).
    pub logs: Vec<(LogLevel, String)>,
}

impl Reaction {
    fn log(&mut self, level: LogLevel, text: String) {
        self.logs.push((level, text));
    }

    fn merge(&mut self, other: Reaction) {
        self.events.extend(other.events);
        self.tasks.extend(other.tasks);
        self.logs.extend(other.logs);
    }
}

/// The call that `accept` will try to hold first (baresip's "previous
/// call"), by what happens to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prev {
    /// Connected: baresip holds it (a re-INVITE) and the desktop hears Held.
    Connected,
    /// Already held: nothing happens.
    Held,
    /// Outbound, not answered yet: held once it connects.
    Dialling,
    /// Inbound, ringing: baresip's hold fails and `accept` does nothing the
    /// first time; a second `accept` answers (the ringing call stays marked
    /// held inside baresip).
    Ringing,
}

/// A call as `listcalls` + `callstat` show it, for resynchronisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneCall {
    /// Its line number.
    pub line: u32,
    /// SIP Call-ID.
    pub id: String,
    /// baresip's state name.
    pub state: String,
    /// `(on hold)`.
    pub on_hold: bool,
    /// Placed by us.
    pub outgoing: bool,
    /// Far end URI.
    pub peer_uri: String,
    /// Far end display name.
    pub peer_name: String,
    /// Our URI.
    pub local_uri: String,
}

struct PendingDial {
    target: String,
    /// Events of calls unknown yet, held back until the dial's call id is
    /// known (baresip's `dial` reply carries no id; its first event may
    /// precede the reply, and `CALL_LOCAL_SDP` has no id at all).
    deferred: Vec<Event>,
}

/// The model.
pub struct Core {
    calls: Vec<Call>,
    lines: HashMap<u32, String>,
    closed: VecDeque<String>,
    closed_set: HashSet<String>,
    account: String,
    me: String,
    dial: Option<PendingDial>,
    referral: Option<String>,
}

impl Core {
    /// A model holding the calls the desktop knew (after a restart or a
    /// reload); `account` limits the connector to one baresip account
    /// (empty: every account).
    pub fn new(account: &str, adopted: Vec<CallInfo>) -> Self {
        let mut core = Self {
            calls: Vec::new(),
            lines: HashMap::new(),
            closed: VecDeque::new(),
            closed_set: HashSet::new(),
            account: account.trim().to_owned(),
            me: user_of(account),
            dial: None,
            referral: None,
        };
        for info in adopted {
            if !info.state.is_live() || core.get(&info.call_id).is_some() {
                continue;
            }
            let data = |k: &str| lookup(&info.data, k).unwrap_or("").to_owned();
            core.calls.push(Call {
                id: info.call_id.to_string(),
                direction: info.direction,
                ani: info.ani.to_string(),
                dnis: info.dnis.to_string(),
                peer_uri: data("peer_uri"),
                peer_name: data("peer_name"),
                account: data("account"),
                state: info.state,
                established: matches!(
                    info.state,
                    ConnectionState::Connected | ConnectionState::Held
                ),
                ringing_far: false,
                muted: false,
                hold_on_establish: false,
                rejecting: false,
                transfer_target: None,
                dtmf_received: data("dtmf_received"),
                referred_by: None,
                local_sdp: 0,
            });
        }
        core
    }

    /// A call by id.
    pub fn get(&self, id: &str) -> Option<&Call> {
        self.calls.iter().find(|c| c.id == id)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Call> {
        self.calls.iter_mut().find(|c| c.id == id)
    }

    /// The live calls, for `Connector::calls`.
    pub fn infos(&self) -> Vec<CallInfo> {
        self.calls.iter().map(Call::info).collect()
    }

    /// The ids of the calls known now.
    pub fn ids(&self) -> HashSet<String> {
        self.calls.iter().map(|c| c.id.clone()).collect()
    }

    /// Number of calls.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// True when no call is known.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// True when the call closed recently (and is not known any more).
    pub fn was_closed(&self, id: &str) -> bool {
        self.closed_set.contains(id) && self.get(id).is_none()
    }

    /// Forgets which line holds which call (after a reconnect).
    pub fn forget_lines(&mut self) {
        self.lines.clear();
    }

    /// The call id cached for a `listcalls` line, if the far end matches.
    pub fn cached_line(&self, line: u32, peer_uri: &str) -> Option<&Call> {
        let id = self.lines.get(&line)?;
        self.get(id)
            .filter(|c| c.peer_uri.is_empty() || c.peer_uri == peer_uri)
    }

    fn account_ok(&self, aor: &str) -> bool {
        self.account.is_empty()
            || aor.is_empty()
            || aor.eq_ignore_ascii_case(&self.account)
            || user_of(aor) == self.account
    }

    fn learn_me(&mut self, aor: &str) {
        if self.me.is_empty() && !aor.is_empty() {
            self.me = user_of(aor);
        }
    }

    fn remember_closed(&mut self, id: &str) {
        self.lines.retain(|_, v| v != id);
        if self.closed_set.insert(id.to_owned()) {
            self.closed.push_back(id.to_owned());
            if self.closed.len() > CLOSED_MEMORY {
                if let Some(old) = self.closed.pop_front() {
                    self.closed_set.remove(&old);
                }
            }
        }
    }

    fn remove(&mut self, id: &str) -> Option<Call> {
        let i = self.calls.iter().position(|c| c.id == id)?;
        let c = self.calls.remove(i);
        self.remember_closed(id);
        Some(c)
    }

    /// True when baresip may resume one of the remaining calls on its own
    /// (it does so whenever a call closes): then the session re-reads
    /// `listcalls`.
    fn may_auto_resume(&self) -> bool {
        self.calls
            .iter()
            .any(|c| c.state == ConnectionState::Held || c.hold_on_establish)
    }

    fn new_call(
        &self,
        id: &str,
        outgoing: bool,
        peer_uri: &str,
        peer_name: &str,
        aor: &str,
    ) -> Call {
        let me = if aor.is_empty() {
            self.me.clone()
        } else {
            user_of(aor)
        };
        let far = user_of(peer_uri);
        let (direction, ani, dnis, state) = if outgoing {
            (Direction::Outbound, me, far, ConnectionState::Initiated)
        } else {
            (Direction::Inbound, far, me, ConnectionState::Alerting)
        };
        Call {
            id: id.to_owned(),
            direction,
            ani,
            dnis,
            peer_uri: peer_uri.to_owned(),
            peer_name: peer_name.to_owned(),
            account: aor.to_owned(),
            state,
            established: false,
            ringing_far: false,
            muted: false,
            hold_on_establish: false,
            rejecting: false,
            transfer_target: None,
            dtmf_received: String::new(),
            referred_by: None,
            local_sdp: 0,
        }
    }

    /// Adds a call the desktop does not know and returns its first event
    /// (`Delivered` for inbound, `Originated` for outbound, with the call).
    fn add(&mut self, mut call: Call, r: &mut Reaction) {
        if call.direction == Direction::Outbound && call.referred_by.is_none() {
            call.referred_by = self.referral.take();
        }
        let kind = match call.direction {
            Direction::Inbound => EventKind::DELIVERED,
            Direction::Outbound => EventKind::ORIGINATED,
        };
        let ev = call
            .event(kind)
            .with_party(call.far())
            .with_call(call.info());
        r.events.push(ev);
        self.calls.push(call);
    }

    // ------------------------------------------------------------ events

    /// Handles one baresip event.
    pub fn on_event(&mut self, e: &Event) -> Reaction {
        let mut r = Reaction::default();
        if !self.account_ok(&e.aor) {
            r.log(
                LogLevel::Debug,
                format!(
                    "{} for account {} ignored (not {})",
                    e.kind, e.aor, self.account
                ),
            );
            return r;
        }
        self.learn_me(&e.aor);
        match e.kind.as_str() {
            "CALL_INCOMING" | "CALL_RINGING" | "CALL_PROGRESS" | "CALL_ESTABLISHED"
            | "CALL_CLOSED" | "CALL_DTMF_START" | "CALL_DTMF_END" | "TRANSFER"
            | "TRANSFER_FAILED" | "CALL_LOCAL_SDP" => self.call_event(e, &mut r),
            "REGISTER_OK" => r.log(
                LogLevel::Info,
                format!("baresip: {} registered ({})", e.aor, e.param),
            ),
            "REGISTER_FAIL" => r.log(
                LogLevel::Warn,
                format!(
                    "baresip: registration of {} failed ({}): inbound calls cannot reach this agent",
                    e.aor, e.param
                ),
            ),
            "REGISTERING" | "UNREGISTERING" => r.log(
                LogLevel::Debug,
                format!("baresip: {} {}", e.aor, e.kind.to_lowercase()),
            ),
            "AUDIO_ERROR" => r.log(
                LogLevel::Warn,
                format!("baresip: audio error on call {}: {}", e.id, e.param),
            ),
            "MWI_NOTIFY" => r.log(
                LogLevel::Info,
                format!("baresip: message waiting for {}: {}", e.aor, e.param),
            ),
            _ => {}
        }
        r
    }

    fn call_event(&mut self, e: &Event, r: &mut Reaction) {
        if e.id.is_empty() {
            // CALL_LOCAL_SDP of a call being dialled: no Call-ID yet.
            return;
        }
        let known = self.get(&e.id).is_some();
        if !known {
            if self.was_closed(&e.id) {
                r.log(
                    LogLevel::Debug,
                    format!("{} for closed call {}", e.kind, e.id),
                );
                return;
            }
            if e.outgoing() {
                if let Some(dial) = &mut self.dial {
                    dial.deferred.push(e.clone());
                    return;
                }
            }
            match e.kind.as_str() {
                "CALL_INCOMING" | "CALL_RINGING" | "CALL_PROGRESS" | "CALL_ESTABLISHED" => {
                    let call =
                        self.new_call(&e.id, e.outgoing(), &e.peer_uri, &e.peer_name, &e.aor);
                    self.add(call, r);
                }
                _ => {
                    r.log(
                        LogLevel::Debug,
                        format!("{} for unknown call {} ignored", e.kind, e.id),
                    );
                    return;
                }
            }
        }
        match e.kind.as_str() {
            "CALL_INCOMING" => {}
            "CALL_RINGING" | "CALL_PROGRESS" => {
                let Some(c) = self.get_mut(&e.id) else { return };
                if c.direction == Direction::Outbound && !c.established && !c.ringing_far {
                    c.ringing_far = true;
                    let mut ev = c.event(EventKind::DELIVERED).with_party(c.far());
                    if e.kind == "CALL_PROGRESS" {
                        ev.attrs.push(KeyValue::new("early_media", "true"));
                    }
                    r.events.push(ev);
                }
            }
            "CALL_ESTABLISHED" => self.established(&e.id, r),
            "CALL_CLOSED" => self.closed(&e.id, &e.param, r),
            "CALL_DTMF_START" => {
                let Some(c) = self.get_mut(&e.id) else { return };
                let digit: String = e.param.chars().take(1).collect();
                if digit.is_empty() {
                    return;
                }
                c.dtmf_received.push_str(&digit);
                // DigitsReceived (`text` = the digit); the digits so far are
                // kept in the call data (`dtmf_received`).
                let ev = c
                    .event(EventKind::DIGITS_RECEIVED)
                    .with_party(c.far())
                    .with_text(digit.as_str())
                    .with_call(c.info());
                r.events.push(ev);
            }
            "TRANSFER" => {
                // The far end asked us (REFER) to call someone else; baresip
                // places that call itself (it appears as a new outbound call).
                let Some(c) = self.get(&e.id) else { return };
                let mut ev = c
                    .event(EventKind::TRANSFERRED)
                    .with_party(c.far())
                    .with_text(e.param.as_str());
                ev.attrs.push(KeyValue::new("role", "transferee"));
                r.events.push(ev);
                self.referral = Some(e.id.clone());
            }
            "TRANSFER_FAILED" => {
                // baresip 1.0.0 frees the transferring call when the target
                // refuses (no CALL_CLOSED follows).
                let Some(c) = self.remove(&e.id) else { return };
                r.log(
                    LogLevel::Warn,
                    format!(
                        "blind transfer of call {} to {} failed ({}); baresip dropped the call",
                        c.id,
                        c.transfer_target.as_deref().unwrap_or("?"),
                        e.param
                    ),
                );
                let mut cc = c.clone();
                cc.state = ConnectionState::Null;
                r.events.push(
                    cc.event(EventKind::CONNECTION_CLEARED)
                        .with_party(c.me())
                        .with_cause("TransferFailed")
                        .with_text(e.param.as_str()),
                );
                r.events.push(
                    cc.event(EventKind::CALL_CLEARED)
                        .with_cause("TransferFailed")
                        .with_text(e.param.as_str()),
                );
                if self.may_auto_resume() {
                    r.tasks.push(Task::Sync);
                }
            }
            "CALL_LOCAL_SDP" => {
                if let Some(c) = self.get_mut(&e.id) {
                    c.local_sdp += 1;
                }
            }
            _ => {}
        }
    }

    fn established(&mut self, id: &str, r: &mut Reaction) {
        let Some(c) = self.get_mut(id) else { return };
        if c.established {
            return;
        }
        c.established = true;
        c.state = ConnectionState::Connected;
        r.events
            .push(c.event(EventKind::ESTABLISHED).with_party(c.far()));
        if c.hold_on_establish {
            c.hold_on_establish = false;
            match c.direction {
                Direction::Inbound => r.tasks.push(Task::Resume(c.id.clone())),
                Direction::Outbound => {
                    c.state = ConnectionState::Held;
                    let mut ev = c.event(EventKind::HELD).with_party(c.far());
                    ev.attrs
                        .push(KeyValue::new("reason", "another call was answered"));
                    r.events.push(ev);
                }
            }
        }
    }

    fn closed(&mut self, id: &str, param: &str, r: &mut Reaction) {
        let Some(mut c) = self.remove(id) else { return };
        let p = param.trim();
        let far = c.far().to_owned();
        let me = c.me().to_owned();
        c.state = ConnectionState::Null;
        let (cause, first) = if p.eq_ignore_ascii_case("Call transfered")
            || p.eq_ignore_ascii_case("Call transferred")
        {
            let target = c.transfer_target.clone().unwrap_or_default();
            let mut ev = c
                .event(EventKind::TRANSFERRED)
                .with_party(me.as_str())
                .with_text(target.as_str())
                .with_cause("Transferred");
            ev.attrs.push(KeyValue::new("role", "transferor"));
            r.events.push(ev);
            (
                "Transferred".to_owned(),
                c.event(EventKind::CONNECTION_CLEARED)
                    .with_party(me.as_str()),
            )
        } else if p == "Connection reset by user" || p == "Rejected by user" {
            let cause = if c.rejecting {
                "CallRejected"
            } else {
                "NormalClearing"
            };
            (
                cause.to_owned(),
                c.event(EventKind::CONNECTION_CLEARED)
                    .with_party(me.as_str()),
            )
        } else if p == "Connection reset by peer" {
            let cause = if c.established || c.direction == Direction::Outbound {
                "NormalClearing"
            } else {
                "CallAbandoned"
            };
            (
                cause.to_owned(),
                c.event(EventKind::CONNECTION_CLEARED)
                    .with_party(far.as_str()),
            )
        } else {
            let cause = sip_cause(p);
            if !c.established && c.direction == Direction::Outbound {
                let mut cf = c.clone();
                cf.state = ConnectionState::Failed;
                (
                    cause.to_owned(),
                    cf.event(EventKind::FAILED).with_party(far.as_str()),
                )
            } else {
                (
                    cause.to_owned(),
                    c.event(EventKind::CONNECTION_CLEARED)
                        .with_party(far.as_str()),
                )
            }
        };
        let mut first = first.with_cause(cause.as_str()).with_text(p);
        first.attrs.push(KeyValue::new("reason", p));
        r.events.push(first);
        r.events.push(
            c.event(EventKind::CALL_CLEARED)
                .with_cause(cause.as_str())
                .with_text(p),
        );
        if self.referral.as_deref() == Some(id) {
            // The REFER's new call did not show up before the old one closed.
            self.referral = None;
        }
        if self.may_auto_resume() {
            r.tasks.push(Task::Sync);
        }
    }

    // ------------------------------------------------------------ dialling

    /// A `dial` is about to be sent: hold back events of unknown outgoing
    /// calls until its call id is known.
    pub fn begin_dial(&mut self, target: &str) {
        self.dial = Some(PendingDial {
            target: target.to_owned(),
            deferred: Vec::new(),
        });
    }

    /// The `dial` failed: replay what was held back.
    pub fn abort_dial(&mut self) -> Reaction {
        let mut r = Reaction::default();
        if let Some(d) = self.dial.take() {
            for e in d.deferred {
                r.merge(self.on_event(&e));
            }
        }
        r
    }

    /// The `dial` succeeded; `callstat` (run right after it) showed the
    /// current call. Picks the new call's id (callstat's when it is a new
    /// outgoing call, else the first held-back event's), raises
    /// `Originated`, then replays the held-back events.
    pub fn finish_dial(&mut self, stat: Option<&CallStat>) -> (Option<String>, Reaction) {
        let mut r = Reaction::default();
        let Some(d) = self.dial.take() else {
            return (None, r);
        };
        let from_stat = stat
            .filter(|s| s.outgoing && self.get(&s.id).is_none() && !self.was_closed(&s.id))
            .map(|s| {
                (
                    s.id.clone(),
                    s.peer_uri.clone(),
                    s.peer_name.clone(),
                    s.local_uri.clone(),
                )
            });
        let from_events = d.deferred.iter().find(|e| !e.id.is_empty()).map(|e| {
            (
                e.id.clone(),
                e.peer_uri.clone(),
                e.peer_name.clone(),
                e.aor.clone(),
            )
        });
        let chosen = from_stat.or(from_events);
        if let Some((id, peer_uri, peer_name, aor)) = &chosen {
            self.learn_me(aor);
            let mut call = self.new_call(id, true, peer_uri, peer_name, aor);
            let dialled = user_of(&d.target);
            if !dialled.is_empty() {
                call.dnis = dialled;
            }
            if call.peer_uri.is_empty() {
                call.peer_uri = d.target.clone();
            }
            // A call the agent dialled is not the REFER's call.
            call.referred_by = None;
            let kind = EventKind::ORIGINATED;
            let ev = call
                .event(kind)
                .with_party(call.far())
                .with_call(call.info())
                .with_text(d.target.as_str());
            r.events.push(ev);
            self.calls.push(call);
        }
        for e in d.deferred {
            r.merge(self.on_event(&e));
        }
        (chosen.map(|c| c.0), r)
    }

    // ------------------------------------------------------------ commands

    /// The call `accept` will try to hold when answering `id`, and what
    /// will happen to it (the session makes it baresip's "previous call").
    pub fn choose_prev(&self, id: &str) -> Option<(String, Prev)> {
        let others = || self.calls.iter().filter(|c| c.id != id);
        let pick = |pred: &dyn Fn(&Call) -> bool, kind: Prev| {
            others().find(|c| pred(c)).map(|c| (c.id.clone(), kind))
        };
        pick(
            &|c| c.established && c.state == ConnectionState::Connected,
            Prev::Connected,
        )
        .or_else(|| pick(&|c| c.established, Prev::Held))
        .or_else(|| pick(&|c| c.direction == Direction::Outbound, Prev::Dialling))
        .or_else(|| pick(&|_| true, Prev::Ringing))
    }

    /// For a second `accept`: a call baresip already has marked held (its
    /// hold is then a no-op), if any.
    pub fn choose_held_prev(&self, id: &str) -> Option<(String, Prev)> {
        let others = || self.calls.iter().filter(|c| c.id != id);
        others()
            .find(|c| c.established && c.state == ConnectionState::Held)
            .map(|c| (c.id.clone(), Prev::Held))
            .or_else(|| {
                others()
                    .find(|c| !c.established && c.hold_on_establish)
                    .map(|c| (c.id.clone(), Prev::Ringing))
            })
    }

    /// After `accept` answered `id` with `prev` as baresip's previous call.
    pub fn answered_with_prev(&mut self, prev: Option<(String, Prev)>) -> Reaction {
        let mut r = Reaction::default();
        let Some((pid, kind)) = prev else { return r };
        match kind {
            Prev::Connected => {
                if let Some(ev) = self.set_held(&pid, true) {
                    let mut ev = ev;
                    ev.attrs
                        .push(KeyValue::new("reason", "another call was answered"));
                    r.events.push(ev);
                }
            }
            Prev::Held => {}
            Prev::Dialling | Prev::Ringing => {
                if let Some(c) = self.get_mut(&pid) {
                    c.hold_on_establish = true;
                }
            }
        }
        r
    }

    /// The call is now held (or retrieved): the event for the desktop.
    pub fn set_held(&mut self, id: &str, held: bool) -> Option<ConnectorEvent> {
        let c = self.get_mut(id)?;
        let (state, kind) = if held {
            (ConnectionState::Held, EventKind::HELD)
        } else {
            (ConnectionState::Connected, EventKind::RETRIEVED)
        };
        if c.state == state || !c.established {
            return None;
        }
        c.state = state;
        Some(c.event(kind).with_party(c.far()))
    }

    /// The microphone is now muted (or not): the event for the desktop.
    pub fn set_muted(&mut self, id: &str, muted: bool) -> Option<ConnectorEvent> {
        let c = self.get_mut(id)?;
        c.muted = muted;
        let kind = if muted {
            EventKind::MUTED
        } else {
            EventKind::UNMUTED
        };
        Some(c.event(kind).with_party(c.far()))
    }

    /// Digits the agent sent.
    pub fn digits_sent(&self, id: &str, digits: &str) -> Option<ConnectorEvent> {
        let c = self.get(id)?;
        Some(
            c.event(EventKind::DIGITS_GENERATED)
                .with_party(c.me())
                .with_text(digits),
        )
    }

    /// The agent asked to reject `id`.
    pub fn mark_rejecting(&mut self, id: &str) {
        if let Some(c) = self.get_mut(id) {
            c.rejecting = true;
        }
    }

    /// The agent sent a blind transfer of `id` to `target`.
    pub fn transfer_sent(&mut self, id: &str, target: &str) {
        if let Some(c) = self.get_mut(id) {
            c.transfer_target = Some(target.to_owned());
        }
    }

    // ------------------------------------------------------------ resync

    /// Makes the model match baresip's calls. `before` are the ids known
    /// when `listcalls` was sent (calls that arrived later are not in its
    /// output and must not be cleared); `complete` is false when some line
    /// could not be identified (then nothing is cleared).
    pub fn reconcile(
        &mut self,
        before: &HashSet<String>,
        phone: &[PhoneCall],
        complete: bool,
    ) -> Reaction {
        let mut r = Reaction::default();
        for pc in phone {
            if self.was_closed(&pc.id) || matches!(pc.state.as_str(), "TERMINATED" | "IDLE") {
                continue;
            }
            self.lines.insert(pc.line, pc.id.clone());
            let est = pc.state == "ESTABLISHED";
            let far_ringing = matches!(pc.state.as_str(), "RINGING" | "EARLY");
            if self.get(&pc.id).is_none() {
                let aor = if pc.local_uri.is_empty() {
                    String::new()
                } else {
                    pc.local_uri.clone()
                };
                let mut call =
                    self.new_call(&pc.id, pc.outgoing, &pc.peer_uri, &pc.peer_name, &aor);
                call.account = String::new();
                r.log(
                    LogLevel::Info,
                    format!(
                        "resync: baresip has call {} ({} {}) the desktop did not know",
                        pc.id, pc.state, pc.peer_uri
                    ),
                );
                self.add(call, &mut r);
            }
            let Some(c) = self.get_mut(&pc.id) else {
                continue;
            };
            if far_ringing && c.direction == Direction::Outbound && !c.ringing_far {
                c.ringing_far = true;
                r.events
                    .push(c.event(EventKind::DELIVERED).with_party(c.far()));
            }
            if est {
                if !c.established {
                    c.established = true;
                    c.hold_on_establish = false;
                    c.state = ConnectionState::Connected;
                    r.events
                        .push(c.event(EventKind::ESTABLISHED).with_party(c.far()));
                }
                if pc.on_hold != (c.state == ConnectionState::Held) {
                    let ev = self.set_held(&pc.id, pc.on_hold);
                    r.events.extend(ev);
                }
            } else {
                c.hold_on_establish = pc.on_hold;
            }
        }
        if complete {
            let present: HashSet<&str> = phone.iter().map(|p| p.id.as_str()).collect();
            let gone: Vec<String> = before
                .iter()
                .filter(|id| !present.contains(id.as_str()) && self.get(id).is_some())
                .cloned()
                .collect();
            for id in gone {
                let Some(mut c) = self.remove(&id) else {
                    continue;
                };
                r.log(
                    LogLevel::Info,
                    format!("resync: baresip no longer has call {id}; clearing it"),
                );
                c.state = ConnectionState::Null;
                let text = "baresip no longer has this call";
                r.events.push(
                    c.event(EventKind::CONNECTION_CLEARED)
                        .with_cause("Resync")
                        .with_text(text),
                );
                r.events.push(
                    c.event(EventKind::CALL_CLEARED)
                        .with_cause("Resync")
                        .with_text(text),
                );
            }
        }
        r
    }
}

/// The CSTA-style cause for a baresip close reason (`486 Busy Here`,
/// `Connection timed out`, …).
pub fn sip_cause(reason: &str) -> &'static str {
    let code: Option<u16> = reason
        .split_whitespace()
        .next()
        .filter(|w| w.len() == 3)
        .and_then(|w| w.parse().ok());
    match code {
        Some(486 | 600) => "Busy",
        Some(404 | 410 | 484 | 485 | 604) => "DestNotObtainable",
        Some(408 | 480) => "CallNotAnswered",
        Some(487) => "CallCancelled",
        Some(403 | 603) => "CallRejected",
        Some(500..=599) => "NetworkCongestion",
        Some(_) => "CallFailed",
        None => "NetworkNotObtainable",
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
