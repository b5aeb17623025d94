//! Unit and in-process tests: the desktop copy, outcome routing, and the
//! real server on loopback (HTTP checks with a raw socket, the WebSocket
//! with tokio-tungstenite) behind a fake host.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr},
};
use cti_plugin_api::{
    sdk::{guard, prelude::*},
    AgentView, HostApi, HostApi_TO, Party, PluginStatusView, SessionView,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, http::HeaderValue};

use super::*;

const TOKEN: &str = "test-token-0123456789";

#[derive(Clone, Default)]
struct FakeHost {
    submitted: Arc<Mutex<Vec<Command>>>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl HostApi for FakeHost {
    fn emit(&self, _event: ConnectorEvent) -> RResult<(), PluginError> {
        RResult::RErr(PluginError::new(ErrorKind::REFUSED, "controls do not emit"))
    }
    fn submit(&self, command: Command) -> RResult<u64, PluginError> {
        let mut s = self.submitted.lock().unwrap_or_else(|e| e.into_inner());
        s.push(command);
        RResult::ROk(100 + s.len() as u64)
    }
    fn log(&self, _level: LogLevel, message: RStr<'_>) {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message.to_string());
    }
    fn hosted(&self) -> HostedInfo {
        HostedInfo {
            name: "Web".into(),
            channel: "".into(),
            connection: ConnectionModel::Instance,
            poll_interval_ms: 0,
            agent_id: "a1".into(),
        }
    }
}

fn build(settings: &str) -> Result<(WebControl, FakeHost), PluginError> {
    let fake = FakeHost::default();
    let host = Host::from_handle(HostApi_TO::from_ptr(RArc::new(fake.clone()), TD_Opaque));
    guard(|| WebControl::new(host, Settings::from_toml(settings)))
        .into_result()
        .map(|c| (c, fake))
}

fn call(id: &str, state: ConnectionState, allowed: &[CommandKind]) -> CallView {
    CallView {
        call_id: id.into(),
        connector: "Phone".into(),
        channel: "voice".into(),
        direction: Direction::Inbound,
        ani: "+14255550123".into(),
        dnis: "+18005550100".into(),
        state,
        parties: RVec::from(vec![Party {
            id: "+14255550123".into(),
            state: ConnectionState::Connected,
        }]),
        allowed: Capabilities::from_kinds(allowed),
        muted: false,
        data: RVec::new(),
        started_ms: 1,
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

fn snapshot() -> DesktopSnapshot {
    DesktopSnapshot {
        seq: 3,
        agent: AgentView {
            agent_id: "a1".into(),
            state: AgentState::Ready,
            pending: ROption::RNone,
        },
        calls: RVec::new(),
        sessions: RVec::new(),
        plugins: RVec::from(vec![PluginStatusView {
            name: "Phone".into(),
            kind: "connector".into(),
            version: "0.1.0".into(),
            status: "Running".into(),
            link: "Unknown".into(),
            channel: "voice".into(),
            capabilities: Capabilities::NONE,
        }]),
        reason_codes: RVec::from(vec![RString::from("Break"), RString::from("Lunch")]),
        dispositions: RVec::new(),
    }
}

fn event(seq: u64, kind: EventKind) -> DesktopEvent {
    DesktopEvent {
        seq,
        kind,
        time_ms: 5,
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

fn call_event(seq: u64, kind: EventKind, c: CallView) -> DesktopEvent {
    let mut e = event(seq, kind);
    e.call = ROption::RSome(RArc::new(c));
    e
}

fn outcome_event(seq: u64, ok: bool, request_id: u64, requester: &str) -> DesktopEvent {
    let mut e = event(
        seq,
        if ok {
            EventKind::COMMAND_COMPLETED
        } else {
            EventKind::COMMAND_FAILED
        },
    );
    e.request_id = request_id;
    if !ok {
        e.cause = "InvalidState".into();
        e.text = "Answer is not allowed".into();
    }
    e.attrs = RVec::from(vec![
        KeyValue::new("requester", requester),
        KeyValue::new("command", "Answer"),
    ]);
    e
}

// ---------------------------------------------------------------- the desktop copy

#[test]
fn events_keep_the_copy_of_the_desktop_current() {
    let mut s = snapshot();
    use CommandKind as K;
    apply(
        &mut s,
        &call_event(
            4,
            EventKind::DELIVERED,
            call("c1", ConnectionState::Alerting, &[K::ANSWER]),
        ),
    );
    assert_eq!(s.seq, 4);
    assert_eq!(s.calls.len(), 1);
    apply(
        &mut s,
        &call_event(
            5,
            EventKind::ESTABLISHED,
            call("c1", ConnectionState::Connected, &[K::HANGUP]),
        ),
    );
    assert_eq!(s.calls.len(), 1);
    assert_eq!(s.calls[0].state, ConnectionState::Connected);
    assert!(s.calls[0].allowed.contains(K::HANGUP));

    let mut agent = event(6, EventKind::AGENT_STATE_PENDING);
    agent.agent = ROption::RSome(AgentView {
        agent_id: "a1".into(),
        state: AgentState::Busy,
        pending: ROption::RSome(AgentState::NotReady("Break".into())),
    });
    apply(&mut s, &agent);
    assert_eq!(s.agent.state, AgentState::Busy);
    assert!(s.agent.pending.is_some());

    let session = SessionView {
        session_id: "s1".into(),
        call_id: "c1".into(),
        outcome: "contact".into(),
        contact: ROption::RNone,
        candidates: RVec::new(),
        focused: true,
        transcript: RVec::new(),
    };
    let mut open = event(7, EventKind::SESSION_OPENED);
    open.session = ROption::RSome(session.clone());
    apply(&mut s, &open);
    assert_eq!(s.sessions.len(), 1);
    let mut closed = event(8, EventKind::SESSION_CLOSED);
    closed.session = ROption::RSome(session);
    apply(&mut s, &closed);
    assert!(s.sessions.is_empty());

    let mut link = event(9, EventKind::CONNECTOR_STATUS);
    link.source = "Phone".into();
    link.text = "Connected".into();
    apply(&mut s, &link);
    assert_eq!(s.plugins[0].link, "Connected");

    apply(
        &mut s,
        &call_event(
            10,
            EventKind::CALL_REMOVED,
            call("c1", ConnectionState::Null, &[]),
        ),
    );
    assert!(s.calls.is_empty());
    assert_eq!(s.seq, 10);
}

#[test]
fn chat_messages_extend_the_session_transcript_like_the_desktop() {
    use CommandKind as K;
    let mut s = snapshot();
    let mut c = call("x1", ConnectionState::Connected, &[K::SEND_MESSAGE]);
    c.channel = "chat".into();
    apply(&mut s, &call_event(4, EventKind::ESTABLISHED, c.clone()));
    let mut open = event(5, EventKind::SESSION_OPENED);
    open.session = ROption::RSome(SessionView {
        session_id: "s1".into(),
        call_id: "x1".into(),
        outcome: "new-contact".into(),
        contact: ROption::RNone,
        candidates: RVec::new(),
        focused: true,
        transcript: RVec::from(vec![RString::from("alice@x: first")]),
    });
    apply(&mut s, &open);
    let mut got = call_event(6, EventKind::MESSAGE_RECEIVED, c.clone());
    got.party = "alice@x".into();
    got.text = "where is my order?".into();
    apply(&mut s, &got);
    let mut sent = call_event(7, EventKind::MESSAGE_SENT, c.clone());
    sent.text = "on its way".into();
    apply(&mut s, &sent);
    let mut typing = call_event(8, EventKind::TYPING, c);
    typing.text = "composing".into();
    apply(&mut s, &typing);
    let lines: Vec<&str> = s.sessions[0]
        .transcript
        .iter()
        .map(RString::as_str)
        .collect();
    assert_eq!(
        lines,
        [
            "alice@x: first",
            "alice@x: where is my order?",
            "agent: on its way"
        ]
    );
    // A message on a call without a session changes nothing.
    let mut other = call("x2", ConnectionState::Connected, &[]);
    other.channel = "chat".into();
    let mut stray = call_event(9, EventKind::MESSAGE_RECEIVED, other);
    stray.text = "hi".into();
    apply(&mut s, &stray);
    assert_eq!(s.sessions.len(), 1);
    assert_eq!(s.sessions[0].transcript.len(), 3);
}

#[test]
fn commands_parse_like_ctl() {
    let v: Value = serde_json::from_str(
        r#"{"kind":"SetAgentState","agent_state":"NotReady(Lunch)","call_id":"x","target":"t","text":"y","other_call_id":"o"}"#,
    )
    .expect("json");
    let c = parse_command(&v).expect("command");
    assert_eq!(c.kind, CommandKind::SET_AGENT_STATE);
    assert_eq!(
        c.agent_state,
        ROption::RSome(AgentState::NotReady("Lunch".into()))
    );
    assert_eq!(
        (
            c.call_id.as_str(),
            c.target.as_str(),
            c.text.as_str(),
            c.other_call_id.as_str()
        ),
        ("x", "t", "y", "o")
    );
    for bad in [
        r#"{}"#,
        r#"{"kind":"Fly"}"#,
        r#"{"kind":"SetAgentState","agent_state":"Sleepy"}"#,
        r#"[1]"#,
    ] {
        let v: Value = serde_json::from_str(bad).expect("json");
        assert!(parse_command(&v).is_err(), "{bad}");
    }
}

#[test]
fn outcomes_go_to_the_tab_that_asked_even_when_they_overtake_submit() {
    let hub = Hub::new("Web");
    hub.reset(&snapshot());
    let mut a = hub.connect(4).expect("tab a");
    let mut b = hub.connect(4).expect("tab b");
    // Routed after the claim.
    hub.claim(a.id, 1, 500);
    hub.on_event(&outcome_event(4, false, 500, "Web"));
    let r: Value =
        serde_json::from_str(a.results.try_recv().expect("result for a").as_str()).expect("json");
    assert_eq!(r["ref"], 1);
    assert_eq!(r["ok"], false);
    assert_eq!(r["cause"], "InvalidState");
    assert!(b.results.try_recv().is_err(), "b did not ask");
    // The outcome arrives before `submit` returned: kept, then delivered on claim.
    hub.on_event(&outcome_event(5, true, 501, "Web"));
    hub.claim(b.id, 9, 501);
    let r: Value =
        serde_json::from_str(b.results.try_recv().expect("result for b").as_str()).expect("json");
    assert_eq!(
        (r["ref"].as_u64(), r["ok"].as_bool()),
        (Some(9), Some(true))
    );
    // Another requester's outcome is not kept.
    hub.on_event(&outcome_event(6, true, 502, "ctl"));
    hub.claim(a.id, 2, 502);
    assert!(a.results.try_recv().is_err());
    // Both tabs saw every event.
    let mut n = 0;
    while a.events.try_recv().is_ok() {
        n += 1;
    }
    assert_eq!(n, 3);
    // The tab limit holds.
    assert!(hub.connect(2).is_none());
    hub.disconnect(a.id);
    assert_eq!(hub.client_count(), 1);
}

#[test]
fn a_slow_tab_lags_instead_of_blocking_events() {
    let hub = Hub::new("Web");
    hub.reset(&snapshot());
    let mut tab = hub.connect(4).expect("tab");
    let t0 = Instant::now();
    for i in 0..(hub::BACKLOG as u64 * 3) {
        hub.on_event(&event(10 + i, EventKind::CALL_UPDATED));
    }
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        tab.events.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_))
    ));
    let (snap, _rx) = hub.resubscribe().expect("snapshot");
    let v: Value = serde_json::from_str(snap.as_str()).expect("json");
    assert_eq!(v["type"], "snapshot");
    assert_eq!(v["snapshot"]["seq"], 10 + hub::BACKLOG as u64 * 3 - 1);
    // The recent events ride along for the page's log, newest last.
    let recent = v["recent"].as_array().expect("recent");
    assert_eq!(recent.len(), hub::RECENT);
    assert_eq!(
        recent.last().expect("one")["event"]["seq"],
        10 + hub::BACKLOG as u64 * 3 - 1
    );
}

#[test]
fn bad_settings_are_refused_and_the_constructor_binds_nothing() {
    let e = build("port = \"x\"").err().expect("refused");
    assert_eq!(e.kind, ErrorKind::BAD_SETTINGS);
    let (c, _) = build("port = 1").expect("valid");
    // Port 1 would fail to bind as non-root; the constructor must not try.
    assert!(c.local_addr().is_none());
}

// ---------------------------------------------------------------- the real server

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

fn http(addr: SocketAddr, request: &str) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn get(addr: SocketAddr, path: &str, extra: &str) -> Reply {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n"),
    )
}

fn started() -> (WebControl, FakeHost, SocketAddr) {
    let (mut c, fake) = build(&format!("token = \"{TOKEN}\"")).expect("control");
    c.start(&snapshot()).expect("start");
    let addr = c.local_addr().expect("listening");
    (c, fake, addr)
}

fn cookie(addr: SocketAddr) -> String {
    format!("Cookie: cti_web_{}={TOKEN}\r\n", addr.port())
}

#[test]
fn the_page_needs_the_token_and_carries_security_headers() {
    let (mut c, fake, addr) = started();
    assert!(addr.ip().is_loopback());
    let logs = fake.logs.lock().expect("logs").join("\n");
    assert!(
        logs.contains(&format!("web desktop at http://{addr}/")),
        "{logs}"
    );
    assert!(
        !logs.contains(TOKEN),
        "a configured token is not logged: {logs}"
    );

    let anon = get(addr, "/", "");
    assert_eq!(anon.status, 401);
    assert!(anon.body.contains("<form"), "a sign-in form: {}", anon.body);
    assert!(!anon.body.contains("app.js") && !anon.body.contains("id=\"calls\""));
    assert_eq!(get(addr, "/app.js", "").status, 401);
    assert_eq!(get(addr, "/session", "").status, 401);
    assert_eq!(get(addr, "/?token=wrong-token-0123456789", "").status, 401);

    let ok = get(addr, &format!("/?token={TOKEN}"), "");
    assert_eq!(ok.status, 303);
    assert_eq!(ok.header("location").as_deref(), Some("/"));
    let set = ok.header("set-cookie").expect("cookie");
    assert!(set.starts_with(&format!("cti_web_{}={TOKEN};", addr.port())));
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));

    let page = get(addr, "/", &cookie(addr));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("src=\"/app.js\""));
    let csp = page.header("content-security-policy").expect("csp");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert_eq!(
        page.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        page.header("referrer-policy").as_deref(),
        Some("no-referrer")
    );
    assert_eq!(page.header("cache-control").as_deref(), Some("no-store"));
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    let js = get(addr, "/app.js", &cookie(addr));
    assert_eq!(js.status, 200);
    assert!(js
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/javascript")));
    assert_eq!(get(addr, "/app.css", "").status, 200);
    assert_eq!(get(addr, "/session", &cookie(addr)).status, 204);
    assert_eq!(get(addr, "/nope", &cookie(addr)).status, 404);

    // The sign-in form.
    let form = |origin: &str, site: &str, token: &str| {
        let body = format!("token={token}");
        http(
            addr,
            &format!(
                "POST /login HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nSec-Fetch-Site: {site}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let own = format!("http://{addr}");
    assert_eq!(form(&own, "same-origin", TOKEN).status, 303);
    assert_eq!(form(&own, "same-origin", "nope-nope-nope-nope").status, 401);
    assert_eq!(form("http://evil.example", "cross-site", TOKEN).status, 403);
    // `no-referrer` makes browsers send `Origin: null`: Fetch metadata decides.
    assert_eq!(form("null", "same-origin", TOKEN).status, 303);
    assert_eq!(form("null", "cross-site", TOKEN).status, 403);

    // DNS rebinding: a foreign host name is refused.
    let rebound = http(
        addr,
        &format!(
            "GET / HTTP/1.1\r\nHost: evil.example:{}\r\nConnection: close\r\n{}\r\n",
            addr.port(),
            cookie(addr)
        ),
    );
    assert_eq!(rebound.status, 421);
    c.stop().expect("stop");
}

fn upgrade(addr: SocketAddr, origin: &str, cookie: &str) -> Reply {
    get(
        addr,
        "/ws",
        &format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}\r\n{cookie}"
        ),
    )
}

#[test]
fn websocket_upgrades_need_the_cookie_and_the_page_origin() {
    let (mut c, _fake, addr) = started();
    let own = format!("http://{addr}");
    assert_eq!(
        upgrade(addr, "http://evil.example", &cookie(addr)).status,
        403
    );
    assert_eq!(
        upgrade(
            addr,
            &format!("http://localhost:{}", addr.port() + 1),
            &cookie(addr)
        )
        .status,
        403
    );
    assert_eq!(upgrade(addr, &own, "").status, 401);
    assert_eq!(upgrade(addr, &own, "Cookie: cti_web_1=x\r\n").status, 401);
    // `read_to_end` waits for the server to close: use a short timeout.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {own}\r\n{}\r\n",
            cookie(addr)
        )
        .as_bytes(),
    )
    .expect("write");
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    drop(s);
    c.stop().expect("stop");
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(addr: SocketAddr) -> Ws {
    let mut req = format!("ws://{addr}/ws")
        .into_client_request()
        .expect("request");
    let h = req.headers_mut();
    h.insert(
        "Origin",
        HeaderValue::from_str(&format!("http://{addr}")).expect("origin"),
    );
    h.insert(
        "Cookie",
        HeaderValue::from_str(&format!("cti_web_{}={TOKEN}", addr.port())).expect("cookie"),
    );
    tokio_tungstenite::connect_async(req).await.expect("ws").0
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("open")
            .expect("ok");
        match msg {
            tungstenite::Message::Text(t) => {
                return serde_json::from_str(t.as_str()).expect("json")
            }
            tungstenite::Message::Close(f) => {
                return serde_json::json!({"type": "close", "code": f.map(|f| u16::from(f.code))})
            }
            _ => {}
        }
    }
}

async fn ws_send(ws: &mut Ws, text: &str) {
    ws.send(tungstenite::Message::text(text.to_owned()))
        .await
        .expect("send");
}

#[test]
fn a_tab_gets_the_desktop_events_and_the_results_of_its_commands() {
    let (mut c, fake, addr) = started();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let mut ws = rt.block_on(ws_connect(addr));
    let first = rt.block_on(next_json(&mut ws));
    assert_eq!(first["type"], "snapshot");
    assert_eq!(first["instance"], "Web");
    assert_eq!(first["snapshot"]["agent"]["state"], "Ready");
    assert_eq!(first["snapshot"]["reason_codes"][1], "Lunch");

    c.on_event(&call_event(
        4,
        EventKind::DELIVERED,
        call("c1", ConnectionState::Alerting, &[CommandKind::ANSWER]),
    ))
    .expect("event");
    let ev = rt.block_on(next_json(&mut ws));
    assert_eq!(ev["type"], "event");
    assert_eq!(ev["event"]["event"], "Delivered");
    assert_eq!(ev["event"]["call"]["allowed"][0], "Answer");

    rt.block_on(ws_send(
        &mut ws,
        r#"{"op":"command","ref":7,"command":{"kind":"Answer","call_id":"c1"}}"#,
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.submitted.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "the command was not submitted");
        std::thread::sleep(Duration::from_millis(5));
    }
    let cmd = fake.submitted.lock().expect("lock")[0].clone();
    assert_eq!(cmd.kind, CommandKind::ANSWER);
    assert_eq!(cmd.call_id, "c1");
    c.on_event(&outcome_event(5, false, 101, "Web"))
        .expect("event");
    // The outcome event itself, then the result for ref 7 (either order).
    let a = rt.block_on(next_json(&mut ws));
    let b = rt.block_on(next_json(&mut ws));
    let result = [a, b]
        .into_iter()
        .find(|m| m["type"] == "result")
        .expect("a result");
    assert_eq!(result["ref"], 7);
    assert_eq!(result["request_id"], 101);
    assert_eq!(result["ok"], false);
    assert_eq!(result["text"], "Answer is not allowed");

    // A bad command is answered without reaching the desktop.
    rt.block_on(ws_send(
        &mut ws,
        r#"{"op":"command","ref":8,"command":{"kind":"Fly"}}"#,
    ));
    let bad = rt.block_on(next_json(&mut ws));
    assert_eq!(
        (bad["ref"].as_u64(), bad["cause"].as_str()),
        (Some(8), Some("BadRequest"))
    );
    assert_eq!(fake.submitted.lock().expect("lock").len(), 1);

    // A reconnecting tab (a page reload) gets the call from the snapshot.
    let mut again = rt.block_on(ws_connect(addr));
    let snap = rt.block_on(next_json(&mut again));
    assert_eq!(snap["snapshot"]["calls"][0]["call_id"], "c1");
    assert_eq!(snap["snapshot"]["seq"], 5);

    // Stop closes the tabs with 1001 and returns within a second.
    let t0 = Instant::now();
    c.stop().expect("stop");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    let closed = rt.block_on(next_json(&mut ws));
    assert_eq!(closed["type"], "close");
    assert_eq!(closed["code"], 1001);
    assert!(TcpStream::connect(addr).is_err(), "the port is released");
}

#[test]
fn port_zero_picks_a_free_port_and_a_random_token_is_logged() {
    let (mut c, fake) = build("").expect("control");
    c.start(&snapshot()).expect("start");
    let addr = c.local_addr().expect("addr");
    assert_ne!(addr.port(), 0);
    let logs = fake.logs.lock().expect("logs").join("\n");
    let token = logs
        .split("(token ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .expect("token in the log")
        .to_owned();
    assert_eq!(token.len(), 32);
    let ok = get(addr, &format!("/?token={token}"), "");
    assert_eq!(ok.status, 303);
    c.stop().expect("stop");
    // A second control cannot take a port in use: start fails cleanly.
    let (mut c2, _) = build(&format!("port = {}", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().expect("addr").port();
        std::mem::forget(l);
        p
    }))
    .expect("control");
    let e = c2.start(&snapshot()).expect_err("port in use");
    assert!(e.message.contains("cannot listen"), "{e}");
}
