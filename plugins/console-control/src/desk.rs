//! The console's picture of the desktop: the numbered call list, the agent,
//! the lines it prints and the commands keys turn into. No I/O here.

use std::{collections::HashMap, fmt::Write as _};

use cti_plugin_api::{sdk::prelude::*, AgentView, WorkState};

use crate::keys::Key;

/// Requests remembered for their outcome line; older ones are forgotten.
const MAX_PENDING: usize = 256;

/// Width of the event-name column.
const NAME_WIDTH: usize = 17;

/// One call in the list.
struct Slot {
    call: RArc<CallView>,
    /// When it was first seen (larger = more recent).
    order: u64,
}

/// The console's state.
pub struct Desk {
    agent: AgentView,
    /// Index `i` holds call number `i + 1`.
    slots: Vec<Option<Slot>>,
    next_order: u64,
    reason_codes: Vec<String>,
    /// Request id → what was asked, for `CommandCompleted`/`CommandFailed`.
    pending: HashMap<u64, String>,
    color: bool,
}

/// A command the agent asked for, ready to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// What it does, for the console (`answer #1`).
    pub label: String,
}

impl Desk {
    /// An empty desk for `agent_id`.
    pub fn new(agent_id: &str, color: bool) -> Self {
        Self {
            agent: AgentView {
                agent_id: agent_id.into(),
                state: AgentState::LoggedOut,
                pending: ROption::RNone,
            },
            slots: Vec::new(),
            next_order: 0,
            reason_codes: Vec::new(),
            pending: HashMap::new(),
            color,
        }
    }

    /// Redraws from a snapshot; calls still alive keep their numbers.
    pub fn reset(&mut self, snapshot: &DesktopSnapshot) {
        self.agent = snapshot.agent.clone();
        self.reason_codes = snapshot
            .reason_codes
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect();
        for slot in &mut self.slots {
            let gone = slot
                .as_ref()
                .is_some_and(|s| !snapshot.calls.iter().any(|c| c.call_id == s.call.call_id));
            if gone {
                *slot = None;
            }
        }
        for call in snapshot.calls.iter() {
            self.track(call);
        }
        self.trim();
    }

    /// Records a call's latest view; returns its number.
    fn track(&mut self, call: &RArc<CallView>) -> usize {
        if let Some(n) = self.number_of(&call.call_id) {
            if let Some(Some(slot)) = self.slots.get_mut(n - 1) {
                slot.call = RArc::clone(call);
            }
            return n;
        }
        let slot = Slot {
            call: RArc::clone(call),
            order: self.next_order,
        };
        self.next_order += 1;
        match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = Some(slot);
                i + 1
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len()
            }
        }
    }

    fn remove(&mut self, call_id: &str) {
        if let Some(n) = self.number_of(call_id) {
            self.slots[n - 1] = None;
            self.trim();
        }
    }

    fn trim(&mut self) {
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
    }

    /// The number of a call in the list.
    pub fn number_of(&self, call_id: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.call.call_id == call_id))
            .map(|i| i + 1)
    }

    /// The call with number `n`.
    pub fn call(&self, n: usize) -> Option<&CallView> {
        self.slots
            .get(n.checked_sub(1)?)?
            .as_ref()
            .map(|s| &*s.call)
    }

    /// The calls, by number.
    fn calls(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i + 1, s)))
    }

    /// The most recent call matching `pred`.
    fn most_recent(&self, pred: impl Fn(&CallView) -> bool) -> Option<usize> {
        self.calls()
            .filter(|(_, s)| pred(&s.call))
            .max_by_key(|(_, s)| s.order)
            .map(|(n, _)| n)
    }

    /// The most recent ringing call.
    pub fn ringing(&self) -> Option<usize> {
        self.most_recent(|c| c.state == ConnectionState::Alerting)
    }

    /// The most recent call in `Connected`/`Held`, else the most recent one.
    pub fn current(&self) -> Option<usize> {
        self.most_recent(|c| matches!(c.state, ConnectionState::Connected | ConnectionState::Held))
            .or_else(|| self.most_recent(|_| true))
    }

    /// The most recent call that takes a message now, else the current one.
    pub fn chatting(&self) -> Option<usize> {
        self.most_recent(|c| c.allowed.contains(CommandKind::SEND_MESSAGE))
            .or_else(|| self.current())
    }

    /// The most recent call in wrap-up, else the current one.
    pub fn wrapping(&self) -> Option<usize> {
        self.most_recent(|c| c.work.state == WorkState::WRAPPING)
            .or_else(|| self.current())
    }

    /// The agent as last seen.
    pub fn agent(&self) -> &AgentView {
        &self.agent
    }

    /// Remembers what request `id` was, for its outcome line.
    pub fn remember(&mut self, id: u64, label: String) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.clear();
        }
        self.pending.insert(id, label);
    }

    /// Turns a key into a command. `Help` gives `Ok(None)`.
    ///
    /// # Errors
    /// A line for the agent when there is no call to act on.
    pub fn request(&self, key: &Key) -> Result<Option<Request>, String> {
        let req = match key {
            Key::Help => return Ok(None),
            Key::Answer(n) => {
                let n = self.pick(*n, self.ringing(), "no ringing call")?;
                self.on_call(CommandKind::ANSWER, n, "answer")?
            }
            Key::Reject(n) => {
                let n = self.pick(*n, self.ringing(), "no ringing call")?;
                self.on_call(CommandKind::REJECT, n, "reject")?
            }
            Key::Hangup(n) => {
                let n = self.pick(*n, self.current(), "no call")?;
                self.on_call(CommandKind::HANGUP, n, "hang up")?
            }
            Key::HoldToggle(n) => {
                let n = self.pick(*n, self.current(), "no call")?;
                if self
                    .call(n)
                    .is_some_and(|c| c.state == ConnectionState::Held)
                {
                    self.on_call(CommandKind::RETRIEVE, n, "retrieve")?
                } else {
                    self.on_call(CommandKind::HOLD, n, "hold")?
                }
            }
            Key::MuteToggle(n) => {
                let n = self.pick(*n, self.current(), "no call")?;
                if self.call(n).is_some_and(|c| c.muted) {
                    self.on_call(CommandKind::UNMUTE, n, "unmute")?
                } else {
                    self.on_call(CommandKind::MUTE, n, "mute")?
                }
            }
            Key::EndWrapUp(n) => {
                let n = self.pick(*n, self.wrapping(), "no call in wrap-up")?;
                self.on_call(CommandKind::END_WRAP_UP, n, "end wrap-up of")?
            }
            Key::Transfer(n, number) => {
                let n = self.pick(*n, self.current(), "no call to transfer")?;
                let mut req = self.on_call(CommandKind::BLIND_TRANSFER, n, "transfer")?;
                req.command.target = number.as_str().into();
                let _ = write!(req.label, " to {number}");
                req
            }
            Key::Send(n, text) => {
                let n = self.pick(*n, self.chatting(), "no chat to reply to")?;
                let mut req = self.on_call(CommandKind::SEND_MESSAGE, n, "send on")?;
                req.command.text = text.as_str().into();
                req
            }
            Key::Dial(number) => {
                let mut command = Command::new(CommandKind::MAKE_CALL, "");
                command.target = number.as_str().into();
                Request {
                    command,
                    label: format!("dial {number}"),
                }
            }
            Key::Ready => agent_request(AgentState::Ready),
            Key::LoggedOut => agent_request(AgentState::LoggedOut),
            Key::NotReady(reason) => {
                let reason = match reason {
                    // Use the configured spelling of a known code.
                    Some(r) => self
                        .reason_codes
                        .iter()
                        .find(|c| c.eq_ignore_ascii_case(r))
                        .unwrap_or(r)
                        .clone(),
                    None => self.reason_codes.first().cloned().unwrap_or_default(),
                };
                agent_request(AgentState::NotReady(reason.into()))
            }
        };
        Ok(Some(req))
    }

    fn pick(
        &self,
        asked: Option<usize>,
        default: Option<usize>,
        none: &str,
    ) -> Result<usize, String> {
        match asked {
            Some(n) if self.call(n).is_some() => Ok(n),
            Some(n) => Err(format!("no call #{n}")),
            None => default.ok_or_else(|| none.to_owned()),
        }
    }

    fn on_call(&self, kind: CommandKind, n: usize, verb: &str) -> Result<Request, String> {
        let call = self.call(n).ok_or_else(|| format!("no call #{n}"))?;
        Ok(Request {
            command: Command::new(kind, call.call_id.clone()),
            label: format!("{verb} #{n}"),
        })
    }

    /// Takes an event into account and returns the line to print.
    pub fn on_event(&mut self, ev: &DesktopEvent) -> String {
        if let ROption::RSome(agent) = &ev.agent {
            self.agent = agent.clone();
        }
        let number = match &ev.call {
            ROption::RSome(call) if ev.kind == EventKind::CALL_REMOVED => {
                let n = self.number_of(&call.call_id);
                self.remove(&call.call_id);
                n
            }
            ROption::RSome(call) => Some(self.track(call)),
            ROption::RNone => None,
        };
        let mut line = String::with_capacity(120);
        clock(&mut line, ev.time_ms);
        line.push(' ');
        number_column(&mut line, number);
        line.push(' ');
        let name = ev.kind.to_string();
        self.paint(&mut line, event_colour(ev.kind), &name);
        for _ in name.len()..NAME_WIDTH {
            line.push(' ');
        }

        if let (ROption::RSome(call), Some(text)) = (&ev.call, self.transcript_line(ev)) {
            // Chat transcript: who said what, without the call's state.
            let _ = call;
            let _ = write!(line, " {text}");
        } else if let ROption::RSome(call) = &ev.call {
            if matches!(ev.kind, EventKind::DELIVERED | EventKind::ORIGINATED) {
                let _ = write!(line, " {} -> {}", or_dash(&call.ani), or_dash(&call.dnis));
            }
            let _ = write!(line, " {}", call.state);
            push_field(&mut line, "party", &ev.party);
            if !ev.cause.is_empty() {
                let _ = write!(line, " ({})", ev.cause);
            }
            if !ev.text.is_empty() {
                let _ = write!(line, " {:?}", ev.text.as_str());
            }
            if call.muted {
                line.push_str(" muted");
            }
            if call.work.state == WorkState::WRAPPING {
                line.push_str(" wrap-up");
                if !call.work.wrap_up_unlimited && call.work.wrap_up_remaining_ms > 0 {
                    let _ = write!(line, " {}s", call.work.wrap_up_remaining_ms.div_ceil(1000));
                }
            }
            if let (Some(n), true) = (number, ev.kind != EventKind::CALL_REMOVED) {
                let keys = self.key_hints(n, call);
                if !keys.is_empty() {
                    line.push_str("  ");
                    line.push_str(&keys);
                }
            }
        } else if let ROption::RSome(agent) = &ev.agent {
            let _ = write!(line, " agent {}", agent.state);
            if let ROption::RSome(p) = &agent.pending {
                let _ = write!(line, " (pending {p})");
            }
            if !ev.cause.is_empty() {
                let _ = write!(line, " [{}]", ev.cause);
            }
        } else {
            match ev.kind {
                EventKind::COMMAND_FAILED | EventKind::COMMAND_COMPLETED => {
                    let label = self.pending.remove(&ev.request_id);
                    match label {
                        Some(l) => {
                            let _ = write!(line, " {l}");
                        }
                        None => {
                            let _ = write!(line, " request {}", ev.request_id);
                        }
                    }
                    if ev.kind == EventKind::COMMAND_FAILED {
                        let _ = write!(line, ": {}", or_dash(&ev.cause));
                        if !ev.text.is_empty() {
                            let _ = write!(line, ": {}", ev.text);
                        }
                    } else if !ev.text.is_empty() {
                        let _ = write!(line, ": {}", ev.text);
                    }
                }
                EventKind::AGENT_STATE_REJECTED => {
                    let _ = write!(line, " {}", or_dash(&ev.cause));
                    if !ev.text.is_empty() {
                        let _ = write!(line, ": {}", ev.text);
                    }
                }
                _ => {
                    push_field(&mut line, "", &ev.source);
                    push_field(&mut line, "", &ev.text);
                    push_field(&mut line, "party", &ev.party);
                    if !ev.cause.is_empty() {
                        let _ = write!(line, " ({})", ev.cause);
                    }
                }
            }
        }
        if let ROption::RSome(session) = &ev.session {
            let _ = write!(line, " session {}", session.session_id);
            push_field(&mut line, "", &session.outcome);
            if let ROption::RSome(contact) = &session.contact {
                push_field(&mut line, "", &contact.name);
            }
        }
        let trimmed = line.trim_end().len();
        line.truncate(trimmed);
        line
    }

    /// The transcript form of a chat event (`alice@x: text`, `you: text`,
    /// `alice@x is composing`, `alice@x left`), None for other events.
    fn transcript_line(&self, ev: &DesktopEvent) -> Option<String> {
        let who = or_dash(&ev.party);
        let text = ev.text.as_str();
        let cut = if lookup(&ev.attrs, "truncated") == Some("true") {
            " [cut]"
        } else {
            ""
        };
        let earlier = if lookup(&ev.attrs, "history") == Some("true") {
            "(earlier) "
        } else {
            ""
        };
        Some(match ev.kind {
            EventKind::MESSAGE_RECEIVED => format!("{earlier}{who}: {text}{cut}"),
            EventKind::MESSAGE_SENT => format!("you: {text}{cut}"),
            EventKind::TYPING => format!("{who} is {}", or_dash(text)),
            EventKind::PARTICIPANT_LEFT => format!("{who} left"),
            _ => return None,
        })
    }

    /// The keys the call's allowed actions permit (`[a]nswer [x]reject`).
    /// A key that would act on another call by default carries the call's
    /// number (`[a2]nswer`).
    pub fn key_hints(&self, n: usize, call: &CallView) -> String {
        let allowed = call.allowed;
        let key = |k: char, default: Option<usize>| {
            if default == Some(n) {
                k.to_string()
            } else {
                format!("{k}{n}")
            }
        };
        let ringing = self.ringing();
        let current = self.current();
        let mut hints: Vec<String> = Vec::new();
        if allowed.contains(CommandKind::ANSWER) {
            hints.push(format!("[{}]nswer", key('a', ringing)));
        }
        if allowed.contains(CommandKind::REJECT) {
            hints.push(format!("[{}]reject", key('x', ringing)));
        }
        if allowed.contains(CommandKind::HANGUP) {
            hints.push(format!("[{}]angup", key('h', current)));
        }
        if allowed.contains(CommandKind::HOLD) {
            hints.push(format!("h[{}]ld", key('o', current)));
        }
        if allowed.contains(CommandKind::RETRIEVE) {
            hints.push(format!("unh[{}]ld", key('o', current)));
        }
        if allowed.contains(CommandKind::BLIND_TRANSFER) {
            hints.push(format!("[{}]ransfer", key('t', current)));
        }
        if allowed.contains(CommandKind::SEND_MESSAGE) {
            hints.push(format!("[{}] <text> reply", key('s', self.chatting())));
        }
        if allowed.contains(CommandKind::MUTE) {
            hints.push(format!("[{}]ute", key('m', current)));
        }
        if allowed.contains(CommandKind::UNMUTE) {
            hints.push(format!("un[{}]ute", key('m', current)));
        }
        if call.work.state == WorkState::WRAPPING {
            hints.push(format!("end [{}]rap-up", key('w', self.wrapping())));
        }
        hints.join(" ")
    }

    /// The header printed at start.
    pub fn header(&self) -> String {
        format!(
            "CTI console | agent {} | {}{} | keys: a answer, x reject, h hang up, o hold/retrieve, \
             d <number> dial, t <number> transfer, s <text> reply, r ready, n [reason] not ready, l log out, ? help",
            or_dash(&self.agent.agent_id),
            self.agent.state,
            match &self.agent.pending {
                ROption::RSome(p) => format!(" (pending {p})"),
                ROption::RNone => String::new(),
            },
        )
    }

    /// One line per call in the list (for start, resync and help).
    pub fn call_lines(&self) -> Vec<String> {
        self.calls()
            .map(|(n, s)| {
                let c = &s.call;
                let mut line = String::new();
                line.push_str("         ");
                number_column(&mut line, Some(n));
                let _ = write!(
                    line,
                    " {} {} -> {} {}",
                    c.direction.name(),
                    or_dash(&c.ani),
                    or_dash(&c.dnis),
                    c.state
                );
                if c.work.state == WorkState::WRAPPING {
                    line.push_str(" wrap-up");
                }
                let keys = self.key_hints(n, c);
                if !keys.is_empty() {
                    line.push_str("  ");
                    line.push_str(&keys);
                }
                line
            })
            .collect()
    }

    /// The help text.
    pub fn help(&self) -> Vec<String> {
        let reasons = if self.reason_codes.is_empty() {
            "none configured".to_owned()
        } else {
            self.reason_codes.join(", ")
        };
        let mut lines: Vec<String> = [
            "keys (type, then Enter; several per line, e.g. \"a r\"):",
            "  a / aN        answer the ringing call / call N",
            "  x / xN        reject the ringing call / call N",
            "  h / hN        hang up the current call / call N",
            "  o / oN        hold or retrieve",
            "  m / mN        mute or unmute",
            "  w / wN        end wrap-up",
            "  d <number>    dial",
            "  t <number>    blind transfer the current call (tN <number>: call N)",
            "  s <text>      reply on the current chat (sN <text>: chat N)",
            "  r             ready",
            "  n [reason]    not ready",
            "  l             log out",
            "  ?             this help",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        lines.push(format!("reasons: {reasons}"));
        lines.push(format!("agent: {}", self.agent.state));
        lines.extend(self.call_lines());
        lines
    }

    fn paint(&self, line: &mut String, colour: Option<&str>, text: &str) {
        match colour {
            Some(code) if self.color => {
                let _ = write!(line, "\x1b[{code}m{text}\x1b[0m");
            }
            _ => line.push_str(text),
        }
    }
}

fn agent_request(state: AgentState) -> Request {
    let label = format!("set agent {state}");
    let mut command = Command::new(CommandKind::SET_AGENT_STATE, "");
    command.agent_state = ROption::RSome(state);
    Request { command, label }
}

fn event_colour(kind: EventKind) -> Option<&'static str> {
    Some(match kind {
        EventKind::DELIVERED
        | EventKind::ORIGINATED
        | EventKind::QUEUED
        | EventKind::NETWORK_REACHED => "1;33",
        EventKind::ESTABLISHED
        | EventKind::RETRIEVED
        | EventKind::COMMAND_COMPLETED
        | EventKind::LINK_UP
        | EventKind::DESKTOP_READY => "32",
        EventKind::HELD => "36",
        EventKind::MESSAGE_RECEIVED => "1",
        EventKind::TYPING | EventKind::PARTICIPANT_LEFT => "2",
        EventKind::FAILED
        | EventKind::COMMAND_FAILED
        | EventKind::AGENT_STATE_REJECTED
        | EventKind::LINK_DOWN
        | EventKind::PLUGIN_RELOAD_FAILED => "1;31",
        EventKind::CONNECTION_CLEARED | EventKind::CALL_CLEARED | EventKind::CALL_REMOVED => "2",
        EventKind::AGENT_STATE_CHANGED | EventKind::AGENT_STATE_PENDING => "35",
        _ => return None,
    })
}

/// `HH:MM:SS` (UTC) of a Unix-milliseconds time.
pub fn clock(out: &mut String, time_ms: u64) {
    let secs = (time_ms / 1000) % 86_400;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
}

fn number_column(out: &mut String, n: Option<usize>) {
    match n {
        Some(n) => {
            let _ = write!(out, "{:<3}", format!("#{n}"));
        }
        None => out.push_str("   "),
    }
}

fn push_field(line: &mut String, label: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    line.push(' ');
    if !label.is_empty() {
        line.push_str(label);
        line.push(' ');
    }
    line.push_str(value);
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}
