//! The ctrl_tcp protocol of baresip 1.0.0: JSON requests, responses and
//! events inside netstrings, and the text some commands print.
//!
//! Everything here parses defensively: a missing field is empty, a message
//! of an unknown shape is reported as such, nothing panics.

use serde_json::{json, Value};

/// A request to baresip.
pub fn request(command: &str, params: Option<&str>, token: &str) -> Vec<u8> {
    let mut o = json!({ "command": command, "token": token });
    if let Some(p) = params {
        o["params"] = Value::from(p);
    }
    o.to_string().into_bytes()
}

/// A reply to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// baresip's `ok` (the command handler returned no error; see the
    /// connector docs: it is true for many failures).
    pub ok: bool,
    /// What the command printed.
    pub data: String,
    /// The token of the request, if it had one.
    pub token: String,
}

/// An event (`{"event":true,"type":…}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// `CALL_INCOMING`, `REGISTER_OK`, ….
    pub kind: String,
    /// `call`, `register`, `application`, `other`, ….
    pub class: String,
    /// The account (`sip:1001@pbx`).
    pub aor: String,
    /// `incoming` or `outgoing` (call events).
    pub direction: String,
    /// The far end's URI (call events).
    pub peer_uri: String,
    /// The far end's display name, if any.
    pub peer_name: String,
    /// The SIP Call-ID (absent on an outgoing call's first event).
    pub id: String,
    /// The event's parameter (reason, digit, target…).
    pub param: String,
}

impl Event {
    /// True for an outgoing call's event.
    pub fn outgoing(&self) -> bool {
        self.direction == "outgoing"
    }
}

/// One message from baresip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A reply.
    Response(Response),
    /// An event.
    Event(Event),
    /// Valid JSON of another shape (logged and ignored).
    Other(String),
}

/// Parses one netstring payload.
///
/// # Errors
/// The payload is not a JSON object (the stream is garbage: reconnect).
pub fn parse_message(payload: &[u8]) -> Result<Message, String> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| {
        let shown = String::from_utf8_lossy(&payload[..payload.len().min(80)]).into_owned();
        format!("not JSON ({e}): {shown:?}")
    })?;
    let Some(o) = v.as_object() else {
        return Err(format!(
            "not a JSON object: {}",
            truncate(&v.to_string(), 80)
        ));
    };
    let s = |k: &str| -> String {
        match o.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    };
    let truthy = |k: &str| match o.get(k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    if truthy("response") {
        return Ok(Message::Response(Response {
            ok: truthy("ok"),
            data: s("data"),
            token: s("token"),
        }));
    }
    if truthy("event") {
        return Ok(Message::Event(Event {
            kind: s("type"),
            class: s("class"),
            aor: s("accountaor"),
            direction: s("direction"),
            peer_uri: s("peeruri"),
            peer_name: s("peerdisplayname"),
            id: s("id"),
            param: s("param"),
        }));
    }
    Ok(Message::Other(truncate(&v.to_string(), 200)))
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// One line of `listcalls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The line number (stable while the call lives).
    pub line: u32,
    /// `INCOMING`, `OUTGOING`, `RINGING`, `EARLY`, `ESTABLISHED`, ….
    pub state: String,
    /// `(on hold)` was shown.
    pub on_hold: bool,
    /// The far end's URI.
    pub peer_uri: String,
    /// The line is the current call (`>`).
    pub current: bool,
}

/// Parses `listcalls` output:
/// `> [line 1]  0:00:03  ESTABLISHED  (on hold)  sip:bob@host`.
pub fn parse_listcalls(data: &str) -> Vec<Listed> {
    data.lines()
        .filter_map(|l| {
            let at = l.find("[line ")?;
            let current = l[..at].trim() == ">";
            let rest = &l[at + 6..];
            let close = rest.find(']')?;
            let line: u32 = rest[..close].trim().parse().ok()?;
            let mut words = rest[close + 1..].split_whitespace().peekable();
            let _duration = words.next()?;
            let state = words.next()?.to_owned();
            let mut on_hold = false;
            if words.peek() == Some(&"(on") {
                words.next();
                if words.peek() == Some(&"hold)") {
                    words.next();
                    on_hold = true;
                }
            }
            let peer_uri = words.collect::<Vec<_>>().join(" ");
            Some(Listed {
                line,
                state,
                on_hold,
                peer_uri,
                current,
            })
        })
        .collect()
}

/// What `callstat` prints about the current call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallStat {
    /// `INCOMING`, `ESTABLISHED`, ….
    pub state: String,
    /// Our URI.
    pub local_uri: String,
    /// The far end's URI.
    pub peer_uri: String,
    /// The far end's display name.
    pub peer_name: String,
    /// The SIP Call-ID.
    pub id: String,
    /// The call is outgoing.
    pub outgoing: bool,
}

/// Parses `callstat` output (`===== Call debug (STATE) =====`, `local_uri:`,
/// `peer_uri:`, `af=… id=…`, `direction:`). `None` when there is no call.
pub fn parse_callstat(data: &str) -> Option<CallStat> {
    let mut cs = CallStat::default();
    for line in data.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("===== Call debug (") {
            cs.state = rest.split(')').next().unwrap_or("").to_owned();
        } else if let Some(rest) = t.strip_prefix("local_uri:") {
            cs.local_uri = angle(rest).1;
        } else if let Some(rest) = t.strip_prefix("peer_uri:") {
            (cs.peer_name, cs.peer_uri) = angle(rest);
        } else if t.starts_with("af=") {
            if let Some(i) = t.find(" id=") {
                cs.id = t[i + 4..].trim().to_owned();
            }
        } else if let Some(rest) = t.strip_prefix("direction:") {
            cs.outgoing = rest.trim().eq_ignore_ascii_case("outgoing");
        }
    }
    (!cs.id.is_empty() && !cs.state.is_empty()).then_some(cs)
}

/// `name <uri>` → (name, uri).
fn angle(text: &str) -> (String, String) {
    let text = text.trim();
    match (text.rfind('<'), text.rfind('>')) {
        (Some(a), Some(b)) if a < b => (text[..a].trim().to_owned(), text[a + 1..b].to_owned()),
        _ => (String::new(), text.to_owned()),
    }
}

/// The state `mute` toggled to: `Some(true)` for "call muted".
pub fn parse_mute(data: &str) -> Option<bool> {
    let t = data.trim();
    if t.contains("un-muted") {
        Some(false)
    } else if t.contains("muted") {
        Some(true)
    } else {
        None
    }
}

/// The user part of a SIP URI (`sip:+1555@host;x=y` → `+1555`), or the URI
/// without its scheme when it has no user.
pub fn user_of(uri: &str) -> String {
    let mut u = uri.trim();
    if let (Some(a), Some(b)) = (u.find('<'), u.rfind('>')) {
        if a < b {
            u = &u[a + 1..b];
        }
    }
    for scheme in ["sip:", "sips:", "tel:"] {
        // `get`: the prefix may end inside a multi-byte character.
        if u.get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
        {
            u = &u[scheme.len()..];
            break;
        }
    }
    let end = u.find(['@', ';', '?', '>']).unwrap_or(u.len());
    let user = &u[..end];
    if user.is_empty() {
        u.to_owned()
    } else {
        user.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_json_objects() {
        let r = request("dial", Some("sip:bob@h"), "t1");
        let v: Value = serde_json::from_slice(&r).expect("json");
        assert_eq!(v["command"], "dial");
        assert_eq!(v["params"], "sip:bob@h");
        assert_eq!(v["token"], "t1");
        let v: Value = serde_json::from_slice(&request("accept", None, "t2")).expect("json");
        assert!(v.get("params").is_none());
    }

    #[test]
    fn responses_and_events_parse() {
        let r = parse_message(br#"{"response":true,"ok":true,"data":"x\n","token":"t1"}"#);
        assert_eq!(
            r,
            Ok(Message::Response(Response {
                ok: true,
                data: "x\n".into(),
                token: "t1".into()
            }))
        );
        let e = parse_message(
            br#"{"event":true,"type":"CALL_INCOMING","class":"call","accountaor":"sip:alice@127.0.0.1:15060","direction":"incoming","peeruri":"sip:sipp@127.0.0.1:15080","peerdisplayname":"sipp","id":"1-7107@127.0.0.1","param":"sip:sipp@127.0.0.1:15080"}"#,
        )
        .expect("event");
        let Message::Event(e) = e else {
            panic!("not an event: {e:?}")
        };
        assert_eq!(e.kind, "CALL_INCOMING");
        assert_eq!(e.id, "1-7107@127.0.0.1");
        assert_eq!(e.peer_name, "sipp");
        assert!(!e.outgoing());
        // The module's own documentation writes "event":"true".
        let e = parse_message(br#"{"event":"true","type":"SHUTDOWN"}"#).expect("event");
        assert!(matches!(e, Message::Event(Event { ref kind, .. }) if kind == "SHUTDOWN"));
        // Missing fields are empty, odd types are tolerated.
        let e = parse_message(br#"{"event":true,"type":"CALL_CLOSED","id":12}"#).expect("event");
        assert!(
            matches!(e, Message::Event(Event { ref id, ref param, .. }) if id == "12" && param.is_empty())
        );
        assert!(matches!(
            parse_message(br#"{"hello":1}"#),
            Ok(Message::Other(_))
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"not json"[..],
            b"[1,2]",
            b"\"text\"",
            b"{\"a\":",
            b"\xff\xfe",
        ] {
            assert!(
                parse_message(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn listcalls_lines_parse() {
        let data = "\n--- Active calls (3) ---\n  [line 1]  0:00:00   INCOMING  (on hold)  sip:sipp@127.0.0.1:35080\n> [line 2]  0:00:01  ESTABLISHED             sip:bob@127.0.0.1:35090\n  [line 12]  1:02:03   OUTGOING             sip:x@h;transport=tcp\n\n";
        let l = parse_listcalls(data);
        assert_eq!(l.len(), 3);
        assert_eq!(
            l[0],
            Listed {
                line: 1,
                state: "INCOMING".into(),
                on_hold: true,
                peer_uri: "sip:sipp@127.0.0.1:35080".into(),
                current: false
            }
        );
        assert!(l[1].current && !l[1].on_hold && l[1].state == "ESTABLISHED");
        assert_eq!(l[2].line, 12);
        assert_eq!(l[2].peer_uri, "sip:x@h;transport=tcp");
        assert!(parse_listcalls("\n--- Active calls (0) ---\n\n").is_empty());
        assert!(parse_listcalls("[line x] junk").is_empty());
    }

    #[test]
    fn callstat_parses() {
        let data = "\n===== Call debug (INCOMING) =====\n local_uri:  <sip:alice@127.0.0.1:35060>\n peer_uri:  sipp <sip:sipp@127.0.0.1:35080>\n af=AF_INET id=1-26312@127.0.0.1\n direction: Incoming\nSDP session\n  local attributes:\n    tool='baresip 1.0.0'\n";
        let cs = parse_callstat(data).expect("callstat");
        assert_eq!(cs.state, "INCOMING");
        assert_eq!(cs.local_uri, "sip:alice@127.0.0.1:35060");
        assert_eq!(cs.peer_uri, "sip:sipp@127.0.0.1:35080");
        assert_eq!(cs.peer_name, "sipp");
        assert_eq!(cs.id, "1-26312@127.0.0.1");
        assert!(!cs.outgoing);
        let out = "\n===== Call debug (OUTGOING) =====\n local_uri:  <sip:alice@127.0.0.1:35060>\n peer_uri:   <sip:bob@127.0.0.1:35090>\n af=AF_INET id=00ec4b91e60f74f7\n direction: Outgoing\n";
        let cs = parse_callstat(out).expect("callstat");
        assert!(cs.outgoing);
        assert_eq!(cs.peer_name, "");
        assert_eq!(cs.id, "00ec4b91e60f74f7");
        assert_eq!(parse_callstat("\n(no active calls)\n"), None);
    }

    #[test]
    fn mute_and_uris() {
        assert_eq!(parse_mute("\ncall muted\n"), Some(true));
        assert_eq!(parse_mute("\ncall un-muted\n"), Some(false));
        assert_eq!(parse_mute(""), None);
        assert_eq!(user_of("sip:+15551234567@127.0.0.1:5060"), "+15551234567");
        assert_eq!(user_of("<sip:1001@pbx;transport=udp>"), "1001");
        assert_eq!(user_of("sips:bob@h"), "bob");
        assert_eq!(user_of("tel:+4930123;phone-context=x"), "+4930123");
        assert_eq!(user_of("sip:pbx.example.com"), "pbx.example.com");
        assert_eq!(user_of("1002"), "1002");
        assert_eq!(user_of(""), "");
        // Found by fuzzing: a multi-byte character across the scheme's length.
        assert_eq!(user_of("245\u{304}x@h"), "245\u{304}x");
        assert_eq!(user_of("q\u{10d59b}e"), "q\u{10d59b}e");
        assert_eq!(user_of("sip:\u{e9}t\u{e9}@h"), "\u{e9}t\u{e9}");
    }
}
