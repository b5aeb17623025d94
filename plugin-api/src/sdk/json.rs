//! Hand-written JSON rendering of desktop events, calls and snapshots.
//!
//! One event renders as one JSON object with no newline, so a control can
//! write a JSON-lines log (`recorder-control`) or push it to a browser. The
//! writers append to a caller-owned `String`, so a control that keeps one
//! buffer renders without allocating.
//!
//! # Event fields
//! Always `seq`, `event` (the [`EventKind`] name, `Unknown(N)` for a code
//! from a newer API) and `time_ms`. Then, when present:
//! - a call: `call_id`, `state`, `previous_state` and the whole `call`
//!   object (see [`write_call`]);
//! - the agent: `agent_state` (`"NotReady(Break)"`), `agent_reason`
//!   (string or `null`), `pending_state` (string or `null`), `agent_id`;
//! - a session: the `session` object (see [`write_session`]);
//! - `source`, `party`, `cause`, `text` when not empty, `request_id` when not
//!   zero, `attrs` (an object) when not empty.
//!
//! Key/value lists (`data`, `attrs`, contact `fields`) render as objects; a
//! repeated key is written twice (most JSON readers keep the last one).

use abi_stable::std_types::ROption;

use crate::ffi::{
    AgentState, AgentView, CallView, Capabilities, Contact, DesktopEvent, DesktopSnapshot,
    KeyValue, PluginStatusView, SessionView,
};

/// Renders one event as a JSON object (no trailing newline).
pub fn event_to_json(ev: &DesktopEvent) -> String {
    let mut out = String::with_capacity(256 + if ev.call.is_some() { 512 } else { 0 });
    write_event(&mut out, ev);
    out
}

/// Renders a snapshot as a JSON object.
pub fn snapshot_to_json(s: &DesktopSnapshot) -> String {
    let mut out = String::with_capacity(256 + 512 * s.calls.len());
    write_snapshot(&mut out, s);
    out
}

/// Renders a call as a JSON object.
pub fn call_to_json(c: &CallView) -> String {
    let mut out = String::with_capacity(512);
    write_call(&mut out, c);
    out
}

/// Appends one event as a JSON object (no trailing newline) to `out`.
pub fn write_event(out: &mut String, ev: &DesktopEvent) {
    let mut o = Obj::open(out);
    o.u64("seq", ev.seq);
    o.key("event");
    write_code(o.out, ev.kind.known_name(), u64::from(ev.kind.0));
    o.u64("time_ms", ev.time_ms);
    if let ROption::RSome(call) = &ev.call {
        o.str("call_id", &call.call_id);
        o.raw_str("state", call.state.name());
        o.raw_str("previous_state", ev.previous_state.name());
        o.key("call");
        write_call(o.out, call);
    }
    if let ROption::RSome(agent) = &ev.agent {
        o.key("agent_state");
        write_agent_state(o.out, &agent.state);
        o.opt_str("agent_reason", agent.state.reason());
        o.key("pending_state");
        match &agent.pending {
            ROption::RSome(p) => write_agent_state(o.out, p),
            ROption::RNone => o.out.push_str("null"),
        }
        o.str("agent_id", &agent.agent_id);
    }
    if let ROption::RSome(session) = &ev.session {
        o.key("session");
        write_session(o.out, session);
    }
    o.str_nonempty("source", &ev.source);
    o.str_nonempty("party", &ev.party);
    o.str_nonempty("cause", &ev.cause);
    o.str_nonempty("text", &ev.text);
    if ev.request_id != 0 {
        o.u64("request_id", ev.request_id);
    }
    if !ev.attrs.is_empty() {
        o.key("attrs");
        write_pairs(o.out, &ev.attrs);
    }
    o.close();
}

/// Appends a call as a JSON object: `call_id`, `connector`, `channel`,
/// `direction` (`inbound`/`outbound`), `ani`, `dnis`, `state`, `parties`
/// (`[{id, state}]`), `allowed` (command names), `muted`, `data` (object),
/// `started_ms`, `answered_ms`, `work` (`{state, wrap_up_remaining_ms,
/// wrap_up_unlimited, disposition}`) and `attrs` (object).
pub fn write_call(out: &mut String, c: &CallView) {
    let mut o = Obj::open(out);
    o.str("call_id", &c.call_id);
    o.str("connector", &c.connector);
    o.str("channel", &c.channel);
    o.raw_str("direction", c.direction.name());
    o.str("ani", &c.ani);
    o.str("dnis", &c.dnis);
    o.raw_str("state", c.state.name());
    o.key("parties");
    o.out.push('[');
    for (i, p) in c.parties.iter().enumerate() {
        if i > 0 {
            o.out.push(',');
        }
        let mut po = Obj::open(o.out);
        po.str("id", &p.id);
        po.raw_str("state", p.state.name());
        po.close();
    }
    o.out.push(']');
    o.key("allowed");
    write_capabilities(o.out, c.allowed);
    o.bool("muted", c.muted);
    o.key("data");
    write_pairs(o.out, &c.data);
    o.u64("started_ms", c.started_ms);
    o.u64("answered_ms", c.answered_ms);
    o.key("work");
    {
        let mut wo = Obj::open(o.out);
        wo.key("state");
        write_code(wo.out, c.work.state.known_name(), u64::from(c.work.state.0));
        wo.u64("wrap_up_remaining_ms", c.work.wrap_up_remaining_ms);
        wo.bool("wrap_up_unlimited", c.work.wrap_up_unlimited);
        wo.str("disposition", &c.work.disposition);
        wo.close();
    }
    o.key("attrs");
    write_pairs(o.out, &c.attrs);
    o.close();
}

/// Appends a session as a JSON object: `session_id`, `call_id`, `outcome`,
/// `contact` (object or `null`), `candidates` (objects), `focused`,
/// `transcript` (strings). A contact is `{id, name, phone, fields}`.
pub fn write_session(out: &mut String, s: &SessionView) {
    let mut o = Obj::open(out);
    o.str("session_id", &s.session_id);
    o.str("call_id", &s.call_id);
    o.str("outcome", &s.outcome);
    o.key("contact");
    match &s.contact {
        ROption::RSome(c) => write_contact(o.out, c),
        ROption::RNone => o.out.push_str("null"),
    }
    o.key("candidates");
    o.out.push('[');
    for (i, c) in s.candidates.iter().enumerate() {
        if i > 0 {
            o.out.push(',');
        }
        write_contact(o.out, c);
    }
    o.out.push(']');
    o.bool("focused", s.focused);
    o.key("transcript");
    write_str_array(o.out, s.transcript.iter().map(|t| t.as_str()));
    o.close();
}

/// Appends a snapshot as a JSON object: `seq`, `agent` (`{agent_id, state,
/// pending}`), `calls`, `sessions`, `plugins` (`[{name, kind, version,
/// status, link, channel, capabilities}]`), `reason_codes`, `dispositions`.
pub fn write_snapshot(out: &mut String, s: &DesktopSnapshot) {
    let mut o = Obj::open(out);
    o.u64("seq", s.seq);
    o.key("agent");
    write_agent(o.out, &s.agent);
    o.key("calls");
    o.out.push('[');
    for (i, c) in s.calls.iter().enumerate() {
        if i > 0 {
            o.out.push(',');
        }
        write_call(o.out, c);
    }
    o.out.push(']');
    o.key("sessions");
    o.out.push('[');
    for (i, sv) in s.sessions.iter().enumerate() {
        if i > 0 {
            o.out.push(',');
        }
        write_session(o.out, sv);
    }
    o.out.push(']');
    o.key("plugins");
    o.out.push('[');
    for (i, p) in s.plugins.iter().enumerate() {
        if i > 0 {
            o.out.push(',');
        }
        write_plugin(o.out, p);
    }
    o.out.push(']');
    o.key("reason_codes");
    write_str_array(o.out, s.reason_codes.iter().map(|t| t.as_str()));
    o.key("dispositions");
    write_str_array(o.out, s.dispositions.iter().map(|t| t.as_str()));
    o.close();
}

/// Appends `s` as a quoted JSON string, escaping `"`, `\` and control
/// characters (`\n`, `\r`, `\t`, `\b`, `\f`, others as `\u00XX`). Other
/// characters, non-ASCII included, pass through as UTF-8.
pub fn write_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    write_escaped(out, s);
    out.push('"');
}

/// Appends the escaped contents of a JSON string, without the quotes.
fn write_escaped(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every byte that needs escaping is ASCII, so `start..i` and `i + 1`
        // are char boundaries.
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// Appends a `u64` in decimal.
fn write_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        // `n % 10` < 10, so the cast cannot truncate.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &buf[i..] {
        out.push(char::from(d));
    }
}

/// Appends the name of an open code as a JSON string (`"Unknown(N)"` when
/// the code is not known to this API version).
fn write_code(out: &mut String, known: Option<&str>, code: u64) {
    match known {
        Some(name) => write_string(out, name),
        None => {
            out.push_str("\"Unknown(");
            write_u64(out, code);
            out.push_str(")\"");
        }
    }
}

/// Appends an agent state in its `Display` form (`"NotReady(Break)"`).
fn write_agent_state(out: &mut String, s: &AgentState) {
    match s {
        AgentState::NotReady(r) if !r.is_empty() => {
            out.push_str("\"NotReady(");
            write_escaped(out, r);
            out.push_str(")\"");
        }
        other => write_string(out, other.name()),
    }
}

fn write_agent(out: &mut String, a: &AgentView) {
    let mut o = Obj::open(out);
    o.str("agent_id", &a.agent_id);
    o.key("state");
    write_agent_state(o.out, &a.state);
    o.key("pending");
    match &a.pending {
        ROption::RSome(p) => write_agent_state(o.out, p),
        ROption::RNone => o.out.push_str("null"),
    }
    o.close();
}

fn write_plugin(out: &mut String, p: &PluginStatusView) {
    let mut o = Obj::open(out);
    o.str("name", &p.name);
    o.str("kind", &p.kind);
    o.str("version", &p.version);
    o.str("status", &p.status);
    o.str("link", &p.link);
    o.str("channel", &p.channel);
    o.key("capabilities");
    write_capabilities(o.out, p.capabilities);
    o.close();
}

fn write_contact(out: &mut String, c: &Contact) {
    let mut o = Obj::open(out);
    o.str("id", &c.id);
    o.str("name", &c.name);
    o.str("phone", &c.phone);
    o.key("fields");
    write_pairs(o.out, &c.fields);
    o.close();
}

fn write_capabilities(out: &mut String, caps: Capabilities) {
    out.push('[');
    for (i, k) in caps.kinds().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_code(out, k.known_name(), u64::from(k.0));
    }
    out.push(']');
}

fn write_pairs(out: &mut String, pairs: &[KeyValue]) {
    out.push('{');
    for (i, kv) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, &kv.key);
        out.push(':');
        write_string(out, &kv.value);
    }
    out.push('}');
}

fn write_str_array<'a>(out: &mut String, items: impl Iterator<Item = &'a str>) {
    out.push('[');
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, s);
    }
    out.push(']');
}

/// An object being written: tracks the comma between members.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String) -> Self {
        out.push('{');
        Self { out, first: true }
    }

    /// Writes the separator and `"key":`. Keys are fixed ASCII identifiers.
    fn key(&mut self, key: &str) {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        write_string(self.out, value);
    }

    fn str_nonempty(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.str(key, value);
        }
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        self.key(key);
        match value {
            Some(v) => write_string(self.out, v),
            None => self.out.push_str("null"),
        }
    }

    /// A string value known to need no escaping (a fixed name).
    fn raw_str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.push('"');
        self.out.push_str(value);
        self.out.push('"');
    }

    fn u64(&mut self, key: &str, value: u64) {
        self.key(key);
        write_u64(self.out, value);
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn close(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::{RArc, RString, RVec};
    use serde_json::{json, Value};

    use super::*;
    use crate::ffi::{
        CommandKind, ConnectionState, Direction, EventKind, Party, WorkItemView, WorkState,
    };

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        write_string(&mut out, s);
        out
    }

    #[test]
    fn escapes_strings() {
        assert_eq!(escaped(""), r#""""#);
        assert_eq!(escaped("plain"), r#""plain""#);
        assert_eq!(escaped(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(escaped(r"C:\dir"), r#""C:\\dir""#);
        assert_eq!(escaped("a\nb\r\tc"), r#""a\nb\r\tc""#);
        assert_eq!(escaped("\u{1}\u{8}\u{c}\u{1f}"), r#""\u0001\b\f\u001f""#);
        assert_eq!(escaped("\u{7f}"), "\"\u{7f}\"");
        assert_eq!(escaped("Zoë → 日本 😀"), "\"Zoë → 日本 😀\"");
        // Everything parses back to the original.
        for s in ["a\"\\\n\u{0}\u{1}é😀", "\u{2028}x", "\\u0041"] {
            let back: String = serde_json::from_str(&escaped(s)).expect("valid JSON");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn writes_numbers() {
        for n in [0, 7, 10, 1_234_567, u64::MAX] {
            let mut out = String::new();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    fn call() -> CallView {
        CallView {
            call_id: "c-1".into(),
            connector: "sim".into(),
            channel: "voice".into(),
            direction: Direction::Inbound,
            ani: "+15551234".into(),
            dnis: "8000".into(),
            state: ConnectionState::Alerting,
            parties: RVec::from(vec![Party {
                id: "+15551234".into(),
                state: ConnectionState::Connected,
            }]),
            allowed: Capabilities::from_kinds(&[CommandKind::ANSWER, CommandKind::REJECT]),
            muted: false,
            data: RVec::from(vec![
                KeyValue::new("queue", "sales"),
                KeyValue::new("note", "line\n\"two\""),
            ]),
            started_ms: 1_700_000_000_000,
            answered_ms: 0,
            work: WorkItemView {
                state: WorkState::OFFERED,
                wrap_up_remaining_ms: 0,
                wrap_up_unlimited: false,
                disposition: RString::new(),
            },
            attrs: RVec::new(),
        }
    }

    fn event() -> DesktopEvent {
        DesktopEvent {
            seq: 42,
            kind: EventKind::DELIVERED,
            time_ms: 1_700_000_000_123,
            call: ROption::RSome(RArc::new(call())),
            agent: ROption::RSome(AgentView {
                agent_id: "1001".into(),
                state: AgentState::NotReady("Break".into()),
                pending: ROption::RSome(AgentState::Ready),
            }),
            session: ROption::RNone,
            previous_state: ConnectionState::Null,
            source: "sim".into(),
            party: RString::new(),
            cause: RString::new(),
            text: "tab\there".into(),
            request_id: 0,
            attrs: RVec::from(vec![KeyValue::new("x-trace", "abc")]),
        }
    }

    #[test]
    fn event_round_trips() {
        let text = event_to_json(&event());
        assert!(!text.contains('\n'));
        let v: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(
            v,
            json!({
                "seq": 42,
                "event": "Delivered",
                "time_ms": 1_700_000_000_123u64,
                "call_id": "c-1",
                "state": "Alerting",
                "previous_state": "Null",
                "call": {
                    "call_id": "c-1",
                    "connector": "sim",
                    "channel": "voice",
                    "direction": "inbound",
                    "ani": "+15551234",
                    "dnis": "8000",
                    "state": "Alerting",
                    "parties": [{"id": "+15551234", "state": "Connected"}],
                    "allowed": ["Answer", "Reject"],
                    "muted": false,
                    "data": {"queue": "sales", "note": "line\n\"two\""},
                    "started_ms": 1_700_000_000_000u64,
                    "answered_ms": 0,
                    "work": {
                        "state": "Offered",
                        "wrap_up_remaining_ms": 0,
                        "wrap_up_unlimited": false,
                        "disposition": ""
                    },
                    "attrs": {}
                },
                "agent_state": "NotReady(Break)",
                "agent_reason": "Break",
                "pending_state": "Ready",
                "agent_id": "1001",
                "source": "sim",
                "text": "tab\there",
                "attrs": {"x-trace": "abc"}
            })
        );
    }

    #[test]
    fn minimal_and_unknown_event() {
        let ev = DesktopEvent {
            seq: 1,
            kind: EventKind(999),
            time_ms: 5,
            call: ROption::RNone,
            agent: ROption::RSome(AgentView {
                agent_id: "a\"1".into(),
                state: AgentState::NotReady("Lun\"ch".into()),
                pending: ROption::RNone,
            }),
            session: ROption::RSome(SessionView {
                session_id: "s1".into(),
                call_id: "c-1".into(),
                outcome: "contact".into(),
                contact: ROption::RSome(Contact {
                    id: "42".into(),
                    name: "Zoë".into(),
                    phone: "+1555".into(),
                    fields: RVec::from(vec![KeyValue::new("tier", "gold")]),
                }),
                candidates: RVec::new(),
                focused: true,
                transcript: RVec::from(vec![RString::from("them: hi")]),
            }),
            previous_state: ConnectionState::Null,
            source: RString::new(),
            party: RString::new(),
            cause: RString::new(),
            text: RString::new(),
            request_id: 7,
            attrs: RVec::new(),
        };
        let v: Value = serde_json::from_str(&event_to_json(&ev)).expect("valid JSON");
        assert_eq!(
            v,
            json!({
                "seq": 1,
                "event": "Unknown(999)",
                "time_ms": 5,
                "agent_state": "NotReady(Lun\"ch)",
                "agent_reason": "Lun\"ch",
                "pending_state": null,
                "agent_id": "a\"1",
                "session": {
                    "session_id": "s1",
                    "call_id": "c-1",
                    "outcome": "contact",
                    "contact": {"id": "42", "name": "Zoë", "phone": "+1555", "fields": {"tier": "gold"}},
                    "candidates": [],
                    "focused": true,
                    "transcript": ["them: hi"]
                },
                "request_id": 7
            })
        );
    }

    #[test]
    fn snapshot_and_call() {
        let snap = DesktopSnapshot {
            seq: 9,
            agent: AgentView {
                agent_id: "1001".into(),
                state: AgentState::Ready,
                pending: ROption::RSome(AgentState::NotReady(RString::new())),
            },
            calls: RVec::from(vec![RArc::new(call())]),
            sessions: RVec::new(),
            plugins: RVec::from(vec![PluginStatusView {
                name: "sim".into(),
                kind: "connector".into(),
                version: "0.1.0".into(),
                status: "Running".into(),
                link: "Connected".into(),
                channel: "voice".into(),
                capabilities: Capabilities::from_kinds(&[CommandKind::ANSWER])
                    | Capabilities(1 << 40),
            }]),
            reason_codes: RVec::from(vec![RString::from("Break"), RString::from("Lunch")]),
            dispositions: RVec::new(),
        };
        let v: Value = serde_json::from_str(&snapshot_to_json(&snap)).expect("valid JSON");
        assert_eq!(v["seq"], 9);
        assert_eq!(
            v["agent"],
            json!({"agent_id": "1001", "state": "Ready", "pending": "NotReady"})
        );
        assert_eq!(v["calls"][0]["call_id"], "c-1");
        assert_eq!(v["sessions"], json!([]));
        assert_eq!(
            v["plugins"][0]["capabilities"],
            json!(["Answer", "Unknown(40)"])
        );
        assert_eq!(v["plugins"][0]["link"], "Connected");
        assert_eq!(v["reason_codes"], json!(["Break", "Lunch"]));
        assert_eq!(v["dispositions"], json!([]));

        let c: Value = serde_json::from_str(&call_to_json(&call())).expect("valid JSON");
        assert_eq!(c, v["calls"][0]);
    }
}
