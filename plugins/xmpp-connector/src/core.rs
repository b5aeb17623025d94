//! The conversations of one agent account: what a stanza or a command does
//! to them, as stanzas to send and CSTA events to raise. No I/O here, so
//! every rule is unit-tested without a server.
//!
//! One conversation per customer bare JID; its call id is `xmpp-<n>`.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use cti_plugin_api::sdk::prelude::*;
use tokio_xmpp::{
    jid::{BareJid, Jid},
    minidom::Element,
    parsers::{
        chatstates::ChatState,
        message::{Lang, Message, MessageType, Thread},
        presence::{Presence, Type as PresenceType},
    },
    Stanza,
};

/// The namespace of the hand-over element a transfer sends to the target
/// agent's account (see the crate docs).
pub const TRANSFER_NS: &str = "urn:x-cti-host:chat-transfer:0";

/// The longest line kept in a conversation's history (bytes).
const MAX_LINE: usize = 4096;

/// What the core needs from the settings.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Sent to the customer when the agent rejects an offered chat (empty: nothing).
    pub reject_message: String,
    /// Sent to the customer when the agent ends the chat (empty: nothing).
    pub closing_message: String,
    /// Sent to the customer on a transfer; `{target}` is replaced (empty: nothing).
    pub transfer_message: String,
    /// Accounts whose hand-over messages this agent accepts (`user@domain`,
    /// `*@domain`).
    pub transfer_peers: Vec<String>,
    /// Lines of history carried to the target of a transfer.
    pub history_lines: usize,
    /// How long messages and the departure of a transferred customer are
    /// still passed on to the transfer target.
    pub forward_for: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            reject_message: String::new(),
            closing_message: String::new(),
            transfer_message: String::new(),
            transfer_peers: Vec::new(),
            history_lines: 50,
            forward_for: Duration::from_secs(3600),
        }
    }
}

/// Stanzas to send, then events to raise.
#[derive(Debug, Default)]
pub struct Out {
    /// Sent first, in order.
    pub stanzas: Vec<Stanza>,
    /// Raised after the stanzas went out.
    pub events: Vec<ConnectorEvent>,
}

/// One customer conversation.
#[derive(Debug, Clone)]
struct Conv {
    call_id: String,
    customer: BareJid,
    /// Where replies go: the resource that wrote last (RFC 6121 §5.1), or
    /// the bare JID.
    reply_to: Jid,
    state: ConnectionState,
    thread: Option<String>,
    subject: Option<String>,
    data: Vec<KeyValue>,
    /// `(author bare JID, text)`, oldest first, at most `history_lines`.
    history: VecDeque<(String, String)>,
}

/// A customer handed to another agent: what still reaches this account is
/// passed on.
#[derive(Debug, Clone)]
struct Forward {
    target: BareJid,
    until: Instant,
}

/// The conversations of the agent's account.
#[derive(Debug)]
pub struct Core {
    me: BareJid,
    cfg: CoreConfig,
    convs: HashMap<BareJid, Conv>,
    ids: HashMap<String, BareJid>,
    /// Available resources of customers (from their presence).
    online: HashMap<BareJid, HashSet<String>>,
    forwards: HashMap<BareJid, Forward>,
    next: u64,
}

/// What a parsed hand-over element says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// `handover`, `message` or `left`.
    pub kind: String,
    /// The customer (full or bare JID).
    pub customer: String,
    /// The thread and subject of the conversation.
    pub thread: Option<String>,
    /// The subject.
    pub subject: Option<String>,
    /// `(author, text)` lines.
    pub lines: Vec<(String, String)>,
}

fn ev(kind: EventKind, call_id: &str, state: ConnectionState) -> ConnectorEvent {
    ConnectorEvent::new(kind, call_id, state)
}

fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The body of a message, whatever its language key (Prosody stamps
/// `xml:lang='en'` on the stream, so bodies are rarely under the empty key).
pub fn body_of(m: &Message) -> Option<&str> {
    m.get_best_body(vec![]).map(|(_, b)| b.as_str())
}

/// A chat message with a body under the default language.
pub fn chat_message(to: Jid, text: &str) -> Message {
    let mut m = Message::chat(Some(to));
    m.bodies.insert(Lang::default(), text.to_owned());
    m
}

fn state_name(s: &ChatState) -> &'static str {
    match s {
        ChatState::Active => "active",
        ChatState::Composing => "composing",
        ChatState::Gone => "gone",
        ChatState::Inactive => "inactive",
        ChatState::Paused => "paused",
    }
}

/// Parses `composing`, `paused`, `active`, `inactive`, `gone`.
pub fn parse_chat_state(text: &str) -> Option<ChatState> {
    Some(match text.trim().to_ascii_lowercase().as_str() {
        "" | "composing" => ChatState::Composing,
        "paused" => ChatState::Paused,
        "active" => ChatState::Active,
        "inactive" => ChatState::Inactive,
        "gone" => ChatState::Gone,
        _ => return None,
    })
}

fn child_text(el: &Element, name: &str) -> Option<String> {
    el.children()
        .find(|c| c.is(name, TRANSFER_NS))
        .map(Element::text)
}

fn text_el(name: &str, text: &str) -> Element {
    Element::builder(name, TRANSFER_NS).append(text).build()
}

impl Handover {
    /// Reads a hand-over element.
    pub fn parse(el: &Element) -> Option<Self> {
        if !el.is("transfer", TRANSFER_NS) {
            return None;
        }
        let lines = el
            .children()
            .filter(|c| c.is("line", TRANSFER_NS))
            .map(|l| {
                (
                    child_text(l, "by").unwrap_or_default(),
                    child_text(l, "text").unwrap_or_default(),
                )
            })
            .collect();
        Some(Self {
            kind: child_text(el, "kind").unwrap_or_else(|| "handover".into()),
            customer: child_text(el, "customer")?,
            thread: child_text(el, "thread"),
            subject: child_text(el, "subject"),
            lines,
        })
    }

    /// Writes the element.
    pub fn to_element(&self) -> Element {
        let mut b = Element::builder("transfer", TRANSFER_NS)
            .append(text_el("kind", &self.kind))
            .append(text_el("customer", &self.customer));
        if let Some(t) = &self.thread {
            b = b.append(text_el("thread", t));
        }
        if let Some(s) = &self.subject {
            b = b.append(text_el("subject", s));
        }
        for (by, text) in &self.lines {
            b = b.append(
                Element::builder("line", TRANSFER_NS)
                    .append(text_el("by", by))
                    .append(text_el("text", text))
                    .build(),
            );
        }
        b.build()
    }
}

/// True when `jid` matches a `transfer_peers` entry (`user@domain` or
/// `*@domain`, ASCII case ignored).
pub fn peer_allowed(peers: &[String], jid: &BareJid) -> bool {
    let me = jid.as_str();
    peers.iter().any(|p| {
        let p = p.trim();
        match p.strip_prefix("*@") {
            Some(domain) => jid.domain().as_str().eq_ignore_ascii_case(domain),
            None => p.eq_ignore_ascii_case(me),
        }
    })
}

impl Core {
    /// The conversations of account `me`.
    pub fn new(me: BareJid, cfg: CoreConfig) -> Self {
        Self {
            me,
            cfg,
            convs: HashMap::new(),
            ids: HashMap::new(),
            online: HashMap::new(),
            forwards: HashMap::new(),
            next: 0,
        }
    }

    /// The agent's bare JID.
    pub fn me(&self) -> &BareJid {
        &self.me
    }

    /// Takes over the live chats the desktop knew before a restart.
    pub fn adopt(&mut self, calls: &[CallInfo]) {
        for c in calls {
            let Ok(customer) = BareJid::new(c.ani.as_str()) else {
                continue;
            };
            if let Some(n) = c
                .call_id
                .strip_prefix("xmpp-")
                .and_then(|n| n.parse::<u64>().ok())
            {
                self.next = self.next.max(n);
            }
            let conv = Conv {
                call_id: c.call_id.to_string(),
                reply_to: Jid::from(customer.clone()),
                customer: customer.clone(),
                state: c.state,
                thread: lookup(&c.data, "thread").map(str::to_owned),
                subject: lookup(&c.data, "subject").map(str::to_owned),
                data: c.data.to_vec(),
                history: VecDeque::new(),
            };
            self.ids.insert(conv.call_id.clone(), customer.clone());
            self.convs.insert(customer, conv);
        }
    }

    /// The live conversations, as calls.
    pub fn calls(&self) -> Vec<CallInfo> {
        let mut v: Vec<CallInfo> = self.convs.values().map(|c| self.info(c)).collect();
        v.sort_by(|a, b| a.call_id.cmp(&b.call_id));
        v
    }

    /// Number of open conversations.
    pub fn len(&self) -> usize {
        self.convs.len()
    }

    /// True when no conversation is open.
    pub fn is_empty(&self) -> bool {
        self.convs.is_empty()
    }

    fn info(&self, c: &Conv) -> CallInfo {
        let mut info = CallInfo::new(
            c.call_id.as_str(),
            Direction::Inbound,
            c.customer.as_str(),
            self.me.as_str(),
            c.state,
        );
        info.data = RVec::from(c.data.clone());
        info
    }

    fn push_history(&mut self, customer: &BareJid, by: &str, text: &str) {
        let max = self.cfg.history_lines;
        if let Some(c) = self.convs.get_mut(customer) {
            if max == 0 {
                return;
            }
            while c.history.len() >= max {
                c.history.pop_front();
            }
            c.history.push_back((by.to_owned(), clip(text, MAX_LINE)));
        }
    }

    fn open(
        &mut self,
        customer: &BareJid,
        reply_to: Jid,
        thread: Option<String>,
        subject: Option<String>,
        extra: Vec<KeyValue>,
    ) -> (String, ConnectorEvent) {
        self.next += 1;
        let call_id = format!("xmpp-{}", self.next);
        let mut data = Vec::new();
        if let Some(s) = &subject {
            data.push(KeyValue::new("subject", s.as_str()));
        }
        if let Some(t) = &thread {
            data.push(KeyValue::new("thread", t.as_str()));
        }
        data.extend(extra);
        let conv = Conv {
            call_id: call_id.clone(),
            customer: customer.clone(),
            reply_to,
            state: ConnectionState::Alerting,
            thread,
            subject,
            data,
            history: VecDeque::new(),
        };
        let info = self.info(&conv);
        self.ids.insert(call_id.clone(), customer.clone());
        self.convs.insert(customer.clone(), conv);
        let delivered = ev(EventKind::DELIVERED, &call_id, ConnectionState::Alerting)
            .with_party(customer.as_str())
            .with_call(info);
        (call_id, delivered)
    }

    fn close(&mut self, customer: &BareJid) -> Option<Conv> {
        let c = self.convs.remove(customer)?;
        self.ids.remove(&c.call_id);
        Some(c)
    }

    fn expire_forwards(&mut self, now: Instant) {
        self.forwards.retain(|_, f| f.until > now);
    }

    /// A message stanza arrived.
    pub fn on_message(&mut self, m: Message, now: Instant) -> Out {
        let mut out = Out::default();
        let Some(from) = m.from.clone() else {
            return out;
        };
        let bare = from.to_bare();
        if bare == self.me || bare.node().is_none() {
            // Our own other resources, carbons, the server's notices.
            return out;
        }
        match m.type_ {
            MessageType::Chat | MessageType::Normal => {}
            // Errors (a bounced reply), group chat and headlines are not
            // customer conversations.
            _ => return out,
        }
        if let Some(h) = m.payloads.iter().find_map(Handover::parse) {
            if peer_allowed(&self.cfg.transfer_peers, &bare) {
                return self.on_handover(&bare, h);
            }
            // Not a trusted peer: treat it as an ordinary message.
        }
        let chat_state = m
            .payloads
            .iter()
            .find_map(|p| ChatState::try_from(p.clone()).ok());
        let body = body_of(&m).map(str::to_owned);
        self.expire_forwards(now);
        if let Some(f) = self.forwards.get(&bare) {
            if !self.convs.contains_key(&bare) {
                // Handed over: pass it on instead of offering a new chat.
                if let Some(text) = body {
                    let h = Handover {
                        kind: "message".into(),
                        customer: from.to_string(),
                        thread: m.thread.as_ref().map(|t| t.id.clone()),
                        subject: None,
                        lines: vec![(bare.to_string(), text.clone())],
                    };
                    out.stanzas
                        .push(self.handover_stanza(&f.target.clone(), &h, &text));
                }
                return out;
            }
        }
        let Some(text) = body.filter(|b| !b.trim().is_empty()) else {
            // A chat state alone.
            if let (Some(state), Some(c)) = (chat_state, self.convs.get(&bare)) {
                out.events.push(
                    ev(EventKind::TYPING, &c.call_id, c.state)
                        .with_party(bare.as_str())
                        .with_text(state_name(&state)),
                );
            }
            return out;
        };
        if !self.convs.contains_key(&bare) {
            let subject = m.get_best_subject(vec![]).map(|(_, s)| s.clone());
            let thread = m.thread.as_ref().map(|t| t.id.clone());
            let (_, delivered) = self.open(&bare, from.clone(), thread, subject, Vec::new());
            out.events.push(delivered);
        }
        let c = self.convs.get_mut(&bare).expect("opened above");
        c.reply_to = from;
        if c.thread.is_none() {
            c.thread = m.thread.as_ref().map(|t| t.id.clone());
        }
        let (call_id, state) = (c.call_id.clone(), c.state);
        self.push_history(&bare, bare.as_str(), &text);
        out.events.push(
            ev(EventKind::MESSAGE_RECEIVED, &call_id, state)
                .with_party(bare.as_str())
                .with_text(text),
        );
        out
    }

    fn on_handover(&mut self, peer: &BareJid, h: Handover) -> Out {
        let mut out = Out::default();
        let Ok(customer_jid) = Jid::new(&h.customer) else {
            return out;
        };
        let customer = customer_jid.to_bare();
        if customer == self.me {
            return out;
        }
        match h.kind.as_str() {
            "left" => {
                if self.convs.contains_key(&customer) {
                    out.events = self.customer_left(&customer, "CustomerLeft");
                }
            }
            "message" if self.convs.contains_key(&customer) => {
                let (call_id, state) = {
                    let c = &self.convs[&customer];
                    (c.call_id.clone(), c.state)
                };
                for (by, text) in h.lines {
                    self.push_history(&customer, &by, &text);
                    out.events.push(
                        ev(EventKind::MESSAGE_RECEIVED, &call_id, state)
                            .with_party(customer.as_str())
                            .with_text(text),
                    );
                }
            }
            _ => {
                if self.convs.contains_key(&customer) {
                    // Already talking to this customer: just add the lines.
                    let h = Handover {
                        kind: "message".into(),
                        ..h
                    };
                    return self.on_handover(peer, h);
                }
                let extra = vec![KeyValue::new("transferred_from", peer.as_str())];
                let (call_id, delivered) =
                    self.open(&customer, customer_jid, h.thread, h.subject, extra);
                out.events.push(delivered);
                for (by, text) in h.lines {
                    self.push_history(&customer, &by, &text);
                    let mut e = ev(
                        EventKind::MESSAGE_RECEIVED,
                        &call_id,
                        ConnectionState::Alerting,
                    )
                    .with_party(by.as_str())
                    .with_text(text);
                    e.attrs.push(KeyValue::new("history", "true"));
                    out.events.push(e);
                }
            }
        }
        out
    }

    fn handover_stanza(&self, target: &BareJid, h: &Handover, summary: &str) -> Stanza {
        let mut m = Message::normal(Some(Jid::from(target.clone())));
        m.bodies.insert(Lang::default(), summary.to_owned());
        m.payloads.push(h.to_element());
        Stanza::Message(m)
    }

    /// A presence stanza arrived.
    pub fn on_presence(&mut self, p: Presence) -> Out {
        let mut out = Out::default();
        let Some(from) = p.from else {
            return out;
        };
        let bare = from.to_bare();
        if bare == self.me {
            return out;
        }
        let resource = from
            .resource()
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default();
        match p.type_ {
            PresenceType::None => {
                self.online.entry(bare).or_default().insert(resource);
            }
            PresenceType::Unavailable => {
                let gone = match self.online.get_mut(&bare) {
                    Some(set) => {
                        set.remove(&resource);
                        // A bare-JID unavailable means every resource.
                        set.is_empty() || resource.is_empty()
                    }
                    None => true,
                };
                if !gone {
                    return out;
                }
                self.online.remove(&bare);
                if self.convs.contains_key(&bare) {
                    out.events = self.customer_left(&bare, "CustomerLeft");
                } else if let Some(f) = self.forwards.remove(&bare) {
                    let h = Handover {
                        kind: "left".into(),
                        customer: bare.to_string(),
                        thread: None,
                        subject: None,
                        lines: Vec::new(),
                    };
                    let summary = format!("{bare} went offline.");
                    out.stanzas
                        .push(self.handover_stanza(&f.target, &h, &summary));
                }
            }
            _ => {}
        }
        out
    }

    fn customer_left(&mut self, customer: &BareJid, cause: &str) -> Vec<ConnectorEvent> {
        let Some(c) = self.close(customer) else {
            return Vec::new();
        };
        vec![
            ev(EventKind::PARTICIPANT_LEFT, &c.call_id, c.state).with_party(customer.as_str()),
            ev(
                EventKind::CONNECTION_CLEARED,
                &c.call_id,
                ConnectionState::Null,
            )
            .with_party(customer.as_str())
            .with_cause(cause),
            ev(EventKind::CALL_CLEARED, &c.call_id, ConnectionState::Null).with_cause(cause),
        ]
    }

    fn conv_of(&self, command: &Command) -> Result<&Conv, PluginError> {
        self.ids
            .get(command.call_id.as_str())
            .and_then(|j| self.convs.get(j))
            .ok_or_else(|| {
                PluginError::new(
                    ErrorKind::UNKNOWN_CALL,
                    format!("no chat \"{}\"", command.call_id),
                )
            })
    }

    fn reply(&self, c: &Conv, text: &str) -> Stanza {
        let mut m = chat_message(c.reply_to.clone(), text);
        if let Some(t) = &c.thread {
            m.thread = Some(Thread {
                parent: None,
                id: t.clone(),
            });
        }
        m.payloads.push(ChatState::Active.into());
        Stanza::Message(m)
    }

    fn agent_cleared(&mut self, call_id: &str, cause: &str) -> Vec<ConnectorEvent> {
        let Some(customer) = self.ids.get(call_id).cloned() else {
            return Vec::new();
        };
        self.close(&customer);
        vec![
            ev(
                EventKind::CONNECTION_CLEARED,
                call_id,
                ConnectionState::Null,
            )
            .with_party(self.me.as_str())
            .with_cause(cause),
            ev(EventKind::CALL_CLEARED, call_id, ConnectionState::Null).with_cause(cause),
        ]
    }

    /// Answer, Reject, Hangup and SendTyping. `online` says whether the
    /// link is up (polite messages are skipped while it is down).
    ///
    /// # Errors
    /// `UnknownCall`, `InvalidState`, `BadArgument`, `LinkDown`, `Unsupported`.
    pub fn execute(&mut self, command: &Command, online: bool) -> Result<Out, PluginError> {
        let c = self.conv_of(command)?.clone();
        let mut out = Out::default();
        let wrong_state = |verb: &str| {
            PluginError::new(
                ErrorKind::INVALID_STATE,
                format!(
                    "cannot {verb} chat \"{}\" while it is {}",
                    c.call_id, c.state
                ),
            )
        };
        match command.kind {
            CommandKind::ANSWER => {
                if c.state != ConnectionState::Alerting {
                    return Err(wrong_state("answer"));
                }
                if let Some(conv) = self.convs.get_mut(&c.customer) {
                    conv.state = ConnectionState::Connected;
                }
                out.events.push(
                    ev(
                        EventKind::ESTABLISHED,
                        &c.call_id,
                        ConnectionState::Connected,
                    )
                    .with_party(c.customer.as_str()),
                );
            }
            CommandKind::REJECT => {
                if c.state != ConnectionState::Alerting {
                    return Err(wrong_state("reject"));
                }
                if online && !self.cfg.reject_message.trim().is_empty() {
                    out.stanzas.push(self.reply(&c, &self.cfg.reject_message));
                }
                out.events = self.agent_cleared(&c.call_id, "Rejected");
            }
            CommandKind::HANGUP => {
                if online
                    && c.state == ConnectionState::Connected
                    && !self.cfg.closing_message.trim().is_empty()
                {
                    out.stanzas.push(self.reply(&c, &self.cfg.closing_message));
                }
                out.events = self.agent_cleared(&c.call_id, "Hangup");
            }
            CommandKind::SEND_TYPING => {
                if !online {
                    return Err(link_down());
                }
                let state = parse_chat_state(&command.text).ok_or_else(|| {
                    PluginError::new(
                        ErrorKind::BAD_ARGUMENT,
                        format!(
                            "typing state \"{}\" is not composing, paused, active, inactive or gone",
                            command.text
                        ),
                    )
                })?;
                let mut m = Message::chat(Some(c.reply_to.clone()));
                m.payloads.push(state.into());
                out.stanzas.push(Stanza::Message(m));
            }
            other => {
                return Err(PluginError::new(
                    ErrorKind::UNSUPPORTED,
                    format!("{other} is not supported by the XMPP connector"),
                ))
            }
        }
        Ok(out)
    }

    /// SendMessage, step 1: the stanza to send.
    ///
    /// # Errors
    /// `UnknownCall`, `InvalidState`, `BadArgument`.
    pub fn prepare_send(&self, command: &Command) -> Result<Stanza, PluginError> {
        let c = self.conv_of(command)?;
        if c.state != ConnectionState::Connected {
            return Err(PluginError::new(
                ErrorKind::INVALID_STATE,
                format!(
                    "chat \"{}\" is {}: answer it before replying",
                    c.call_id, c.state
                ),
            ));
        }
        if command.text.trim().is_empty() {
            return Err(PluginError::new(
                ErrorKind::BAD_ARGUMENT,
                "an empty message",
            ));
        }
        Ok(self.reply(c, &command.text))
    }

    /// SendMessage, step 2 (the stanza went out): history and `MessageSent`.
    pub fn sent(&mut self, call_id: &str, text: &str) -> Option<ConnectorEvent> {
        let customer = self.ids.get(call_id)?.clone();
        let me = self.me.to_string();
        self.push_history(&customer, &me, text);
        let c = self.convs.get(&customer)?;
        Some(
            ev(EventKind::MESSAGE_SENT, call_id, c.state)
                .with_party(me.as_str())
                .with_text(text),
        )
    }

    /// BlindTransfer, step 1: the hand-over to the target account and the
    /// notice to the customer.
    ///
    /// # Errors
    /// `UnknownCall`, `InvalidState`, `BadArgument` (not an account JID).
    pub fn prepare_transfer(
        &self,
        command: &Command,
    ) -> Result<(BareJid, Vec<Stanza>), PluginError> {
        let c = self.conv_of(command)?;
        if c.state != ConnectionState::Connected {
            return Err(PluginError::new(
                ErrorKind::INVALID_STATE,
                format!(
                    "chat \"{}\" is {}: only a connected chat can be transferred",
                    c.call_id, c.state
                ),
            ));
        }
        let raw = command.target.trim().trim_start_matches("xmpp:");
        let target = BareJid::new(raw)
            .ok()
            .filter(|j| j.node().is_some())
            .ok_or_else(|| {
                PluginError::new(
                    ErrorKind::BAD_ARGUMENT,
                    format!(
                        "transfer target \"{}\" is not an account address (user@domain)",
                        command.target
                    ),
                )
            })?;
        if target == self.me || target == c.customer {
            return Err(PluginError::new(
                ErrorKind::BAD_ARGUMENT,
                format!("cannot transfer chat \"{}\" to {target}", c.call_id),
            ));
        }
        let h = Handover {
            kind: "handover".into(),
            customer: c.reply_to.to_string(),
            thread: c.thread.clone(),
            subject: c.subject.clone(),
            lines: c.history.iter().cloned().collect(),
        };
        let mut summary = format!(
            "Chat with {} transferred to you by {}. Transcript:",
            c.customer, self.me
        );
        for (by, text) in &c.history {
            summary.push_str(&format!("\n{by}: {text}"));
        }
        let mut stanzas = vec![self.handover_stanza(&target, &h, &summary)];
        if !self.cfg.transfer_message.trim().is_empty() {
            let notice = self
                .cfg
                .transfer_message
                .replace("{target}", target.as_str());
            stanzas.push(self.reply(c, &notice));
        }
        Ok((target, stanzas))
    }

    /// BlindTransfer, step 2 (the hand-over went out): the chat leaves this
    /// desktop; later messages and the customer's departure are passed on.
    pub fn transferred(
        &mut self,
        call_id: &str,
        target: &BareJid,
        now: Instant,
    ) -> Vec<ConnectorEvent> {
        let Some(customer) = self.ids.get(call_id).cloned() else {
            return Vec::new();
        };
        self.forwards.insert(
            customer,
            Forward {
                target: target.clone(),
                until: now + self.cfg.forward_for,
            },
        );
        let mut events = vec![ev(EventKind::TRANSFERRED, call_id, ConnectionState::Null)
            .with_party(self.me.as_str())
            .with_text(target.as_str())
            .with_cause("SingleStepTransfer")];
        events.extend(self.agent_cleared(call_id, "Transferred"));
        events
    }
}

/// The error for a command that needs the server while the link is down.
pub fn link_down() -> PluginError {
    PluginError::new(ErrorKind::LINK_DOWN, "not connected to the XMPP server")
}

#[cfg(test)]
mod tests;
