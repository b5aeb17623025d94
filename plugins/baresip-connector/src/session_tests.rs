//! The connector against a scripted fake ctrl_tcp server: reply correlation
//! with events that come first, garbage, reconnects, resync, stop.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex, MutexGuard},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr},
};
use cti_plugin_api::{sdk::prelude::*, HostApi, HostApi_TO, HostHandle};
use serde_json::{json, Value};

use crate::{netstring, BaresipConnector};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Clone, Default)]
struct FakeHost {
    events: Arc<Mutex<Vec<ConnectorEvent>>>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl HostApi for FakeHost {
    fn emit(&self, event: ConnectorEvent) -> RResult<(), PluginError> {
        lock(&self.events).push(event);
        RResult::ROk(())
    }
    fn submit(&self, _command: Command) -> RResult<u64, PluginError> {
        RResult::RErr(PluginError::new(ErrorKind::UNSUPPORTED, "no submit"))
    }
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        lock(&self.logs).push(format!("{level:?}: {message}"));
    }
    fn hosted(&self) -> HostedInfo {
        HostedInfo {
            name: "Phone".into(),
            channel: "voice".into(),
            connection: ConnectionModel::Instance,
            poll_interval_ms: 0,
            agent_id: "a1".into(),
        }
    }
}

impl FakeHost {
    fn kinds(&self) -> Vec<String> {
        lock(&self.events)
            .iter()
            .map(|e| e.kind.to_string())
            .collect()
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&[ConnectorEvent]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pred(&lock(&self.events)) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; events: {:?}\nlogs: {:?}",
                self.kinds(),
                lock(&self.logs)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn count(&self, kind: EventKind) -> usize {
        lock(&self.events).iter().filter(|e| e.kind == kind).count()
    }
}

/// What the fake server answers to one request: messages to send, in order.
type Script = dyn Fn(&str, &str) -> Vec<Value> + Send + Sync;

/// A fake baresip ctrl_tcp: accepts connections one after another, runs the
/// script for every request, records the requests.
struct FakeBaresip {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    /// Sends raw bytes to the current connection.
    current: Arc<Mutex<Option<TcpStream>>>,
    connections: Arc<Mutex<usize>>,
    _thread: JoinHandle<()>,
}

fn response(data: &str) -> Value {
    json!({"response": true, "ok": true, "data": data})
}

fn call_event(kind: &str, id: &str, param: &str) -> Value {
    json!({"event": true, "type": kind, "class": "call", "accountaor": "sip:1001@127.0.0.1",
           "direction": "incoming", "peeruri": "sip:+15551234567@127.0.0.1:5080",
           "peerdisplayname": "Caller", "id": id, "param": param})
}

fn empty_listcalls() -> Value {
    response("\n--- Active calls (0) ---\n\n")
}

impl FakeBaresip {
    fn start(script: Box<Script>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let current = Arc::new(Mutex::new(None));
        let connections = Arc::new(Mutex::new(0));
        let (req, cur, conns) = (requests.clone(), current.clone(), connections.clone());
        let script: Arc<Script> = Arc::from(script);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                // The connection is usable by the test before it is counted.
                *lock(&cur) = stream.try_clone().ok();
                *lock(&conns) += 1;
                let (req, script) = (req.clone(), script.clone());
                std::thread::spawn(move || serve(stream, &req, &*script));
            }
        });
        Self {
            port,
            requests,
            current,
            connections,
            _thread: thread,
        }
    }

    fn send_raw(&self, bytes: &[u8]) {
        let mut cur = lock(&self.current);
        let s = cur.as_mut().expect("a connection");
        s.write_all(bytes).expect("write");
    }

    fn send(&self, v: &Value) {
        self.send_raw(&netstring::encode(v.to_string().as_bytes()));
    }

    fn drop_connection(&self) {
        if let Some(s) = lock(&self.current).take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Waits until the fake has accepted `n` connections.
    fn wait_connections(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while *lock(&self.connections) < n {
            assert!(Instant::now() < deadline, "no connection number {n}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn requests(&self) -> Vec<String> {
        lock(&self.requests).clone()
    }
}

fn serve(mut stream: TcpStream, requests: &Mutex<Vec<String>>, script: &Script) {
    let mut dec = netstring::Decoder::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        dec.push(&buf[..n]);
        while let Ok(Some(frame)) = dec.next_frame() {
            let v: Value = serde_json::from_slice(&frame).expect("json request");
            let command = v["command"].as_str().unwrap_or("").to_owned();
            let params = v["params"].as_str().unwrap_or("").to_owned();
            let token = v["token"].as_str().unwrap_or("").to_owned();
            lock(requests).push(if params.is_empty() {
                command.clone()
            } else {
                format!("{command} {params}")
            });
            // Everything for one request goes out in one write (coalesced
            // frames, events before the reply).
            let mut out = Vec::new();
            for mut m in script(&command, &params) {
                if m.get("response").is_some() {
                    m["token"] = Value::from(token.as_str());
                }
                out.extend(netstring::encode(m.to_string().as_bytes()));
            }
            if stream.write_all(&out).is_err() {
                return;
            }
        }
    }
}

fn settings(port: u16) -> Settings {
    Settings::from_toml(&format!(
        "port = {port}\nreconnect_min_ms = 20\nreconnect_max_ms = 100\ncommand_timeout_ms = 1000\n"
    ))
}

fn connector(port: u16) -> (BaresipConnector, FakeHost) {
    let fake = FakeHost::default();
    let handle: HostHandle = HostApi_TO::from_ptr(RArc::new(fake.clone()), TD_Opaque);
    let c = BaresipConnector::new(Host::from_handle(handle), settings(port)).expect("new");
    (c, fake)
}

/// A baresip with one ringing call `c1` that answers like 1.0.0 does:
/// CALL_LOCAL_SDP and CALL_ESTABLISHED *before* the reply of `accept`,
/// CALL_CLOSED before the reply of `hangup`.
fn one_call_script() -> Box<Script> {
    Box::new(|command, params| match command {
        "listcalls" => vec![empty_listcalls()],
        "callfind" if params == "c1" => vec![response("setting current call: c1\n")],
        "callfind" => vec![response(&format!("call not found (id={params})\n"))],
        "accept" => vec![
            call_event("CALL_LOCAL_SDP", "c1", "answer"),
            call_event("CALL_ESTABLISHED", "c1", "sip:+15551234567@127.0.0.1:5080"),
            response("sip:1001@127.0.0.1: Answering incoming call\n"),
        ],
        "hold" | "resume" => vec![response("")],
        "mute" => vec![response("\ncall muted\n")],
        "hangup" => vec![
            call_event("CALL_CLOSED", "c1", "Connection reset by user"),
            response(""),
        ],
        _ => vec![
            json!({"response": true, "ok": false, "data": format!("command not found ({command})\n")}),
        ],
    })
}

/// Returns once the session has finished what it was doing (the resync
/// after connecting): a command for an unknown call is answered by the
/// session thread itself, after its current work.
fn barrier(c: &mut BaresipConnector) {
    let e = c
        .execute(&cmd(CommandKind::HANGUP, "barrier"))
        .expect_err("no such call");
    assert_eq!(e.kind, ErrorKind::UNKNOWN_CALL, "{e}");
}

fn cmd(kind: CommandKind, id: &str) -> Command {
    Command::new(kind, id)
}

#[test]
fn replies_are_matched_and_events_that_come_first_are_applied_first() {
    let fake = FakeBaresip::start(one_call_script());
    let (mut c, host) = connector(fake.port);
    c.start(Vec::new()).expect("start");
    host.wait_for("LinkUp", |e| e.iter().any(|e| e.kind == EventKind::LINK_UP));
    // The resync on connect ran.
    host.wait_for("resync", |_| {
        fake.requests().contains(&"listcalls".to_owned())
    });
    fake.wait_connections(1);
    barrier(&mut c);
    fake.send(&call_event(
        "CALL_INCOMING",
        "c1",
        "sip:+15551234567@127.0.0.1:5080",
    ));
    host.wait_for("Delivered", |e| {
        e.iter().any(|e| e.kind == EventKind::DELIVERED)
    });

    let out = c.execute(&cmd(CommandKind::ANSWER, "c1")).expect("answer");
    assert_eq!(out.call_id, "c1");
    // Established (from the event that preceded the reply) was emitted
    // before execute returned.
    assert_eq!(host.count(EventKind::ESTABLISHED), 1, "{:?}", host.kinds());
    assert!(fake
        .requests()
        .ends_with(&["callfind c1".to_owned(), "accept".to_owned()]));

    // Hold: baresip reports nothing; the connector raises Held itself.
    c.execute(&cmd(CommandKind::HOLD, "c1")).expect("hold");
    assert_eq!(host.count(EventKind::HELD), 1);
    // Holding a held call is refused by the connector, before baresip.
    let n = fake.requests().len();
    let e = c
        .execute(&cmd(CommandKind::HOLD, "c1"))
        .expect_err("already held");
    assert_eq!(e.kind, ErrorKind::INVALID_STATE);
    assert_eq!(fake.requests().len(), n, "nothing sent");
    c.execute(&cmd(CommandKind::RETRIEVE, "c1"))
        .expect("retrieve");
    assert_eq!(host.count(EventKind::RETRIEVED), 1);
    c.execute(&cmd(CommandKind::MUTE, "c1")).expect("mute");
    assert_eq!(host.count(EventKind::MUTED), 1);

    // Accept on a call that is not ringing any more: refused locally.
    let e = c
        .execute(&cmd(CommandKind::ANSWER, "c1"))
        .expect_err("not ringing");
    assert_eq!(e.kind, ErrorKind::INVALID_STATE);
    let e = c
        .execute(&cmd(CommandKind::ANSWER, "nope"))
        .expect_err("unknown");
    assert_eq!(e.kind, ErrorKind::UNKNOWN_CALL);

    c.execute(&cmd(CommandKind::HANGUP, "c1")).expect("hangup");
    let kinds = host.kinds();
    let tail: Vec<&str> = kinds
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(tail, ["ConnectionCleared", "CallCleared"]);
    assert!(c.calls().is_empty());
    c.stop().expect("stop");
}

#[test]
fn an_accept_without_effect_is_an_error() {
    // baresip's `accept` says ok:true even when it answers nothing. This
    // baresip has one ringing call, c1.
    let fake = FakeBaresip::start(Box::new(|command, params| {
        match command {
        "listcalls" => vec![response(
            "\n--- Active calls (1) ---\n> [line 1]  0:00:00   INCOMING             sip:+15551234567@127.0.0.1:5080\n\n",
        )],
        "line" => vec![response("setting current call: line 1\n")],
        "callstat" => vec![response(
            "\n===== Call debug (INCOMING) =====\n local_uri:  <sip:1001@127.0.0.1>\n peer_uri:  Caller <sip:+15551234567@127.0.0.1:5080>\n af=AF_INET id=c1\n direction: Incoming\n",
        )],
        "callfind" => vec![response(&format!("setting current call: {params}\n"))],
        "accept" => vec![response("sip:1001@127.0.0.1: Answering incoming call\n")],
        _ => vec![response("")],
    }
    }));
    let (mut c, host) = connector(fake.port);
    c.start(Vec::new()).expect("start");
    host.wait_for("LinkUp", |e| e.iter().any(|e| e.kind == EventKind::LINK_UP));
    fake.wait_connections(1);
    barrier(&mut c);
    fake.send(&call_event("CALL_INCOMING", "c1", ""));
    host.wait_for("Delivered", |e| {
        e.iter().any(|e| e.kind == EventKind::DELIVERED)
    });
    let e = c
        .execute(&cmd(CommandKind::ANSWER, "c1"))
        .expect_err("no answer");
    assert_eq!(e.kind, ErrorKind::REMOTE);
    assert!(e.message.contains("did not answer"), "{e}");
    c.stop().expect("stop");
}

#[test]
fn garbage_drops_the_connection_and_the_connector_reconnects() {
    let fake = FakeBaresip::start(Box::new(|command, _| match command {
        "listcalls" => vec![empty_listcalls()],
        _ => vec![response("")],
    }));
    let (mut c, host) = connector(fake.port);
    c.start(Vec::new()).expect("start");
    host.wait_for("LinkUp", |e| e.iter().any(|e| e.kind == EventKind::LINK_UP));
    fake.wait_connections(1);
    fake.send_raw(b"12:not json at all,");
    host.wait_for("LinkDown", |e| {
        e.iter().any(|e| e.kind == EventKind::LINK_DOWN)
    });
    host.wait_for("LinkUp again", |e| {
        e.iter().filter(|e| e.kind == EventKind::LINK_UP).count() == 2
    });
    assert!(
        lock(&host.logs)
            .iter()
            .any(|l| l.starts_with("Error") && l.contains("garbage")),
        "{:?}",
        lock(&host.logs)
    );
    // A bad length too.
    fake.wait_connections(2);
    fake.send_raw(b"x1:{},");
    host.wait_for("third LinkUp", |e| {
        e.iter().filter(|e| e.kind == EventKind::LINK_UP).count() == 3
    });
    fake.wait_connections(3);
    c.stop().expect("stop");
}

#[test]
fn a_lost_connection_is_reported_and_resynchronised() {
    // After the reconnect baresip lists one call the desktop never heard of;
    // the call the desktop knew is gone.
    let fake = FakeBaresip::start(Box::new(|command, params| {
        match command {
        "listcalls" => vec![response(
            "\n--- Active calls (1) ---\n> [line 1]  0:00:07  ESTABLISHED  (on hold)  sip:+15550001111@127.0.0.1:5080\n\n",
        )],
        "line" if params == "1" => vec![response("setting current call: line 1\n")],
        "callstat" => vec![response(
            "\n===== Call debug (ESTABLISHED) =====\n local_uri:  <sip:1001@127.0.0.1>\n peer_uri:  Bob <sip:+15550001111@127.0.0.1:5080>\n af=AF_INET id=fresh\n direction: Incoming\n",
        )],
        _ => vec![response("")],
    }
    }));
    let (mut c, host) = connector(fake.port);
    let known = CallInfo::new(
        "stale",
        Direction::Inbound,
        "+1555",
        "1001",
        ConnectionState::Connected,
    );
    c.start(vec![known]).expect("start");
    host.wait_for("the stale call cleared", |e| {
        e.iter()
            .any(|e| e.kind == EventKind::CALL_CLEARED && e.call_id == "stale")
    });
    host.wait_for("the fresh call announced and held", |e| {
        e.iter()
            .any(|e| e.kind == EventKind::HELD && e.call_id == "fresh")
    });
    let fresh: Vec<String> = lock(&host.events)
        .iter()
        .filter(|e| e.call_id == "fresh")
        .map(|e| e.kind.to_string())
        .collect();
    assert_eq!(fresh, ["Delivered", "Established", "Held"]);
    assert_eq!(c.calls().len(), 1);
    assert_eq!(c.calls()[0].state, ConnectionState::Held);

    fake.wait_connections(1);
    fake.drop_connection();
    host.wait_for("LinkDown", |e| {
        e.iter().any(|e| e.kind == EventKind::LINK_DOWN)
    });
    host.wait_for("LinkUp again", |e| {
        e.iter().filter(|e| e.kind == EventKind::LINK_UP).count() == 2
    });
    // The second resync finds the same call: nothing new to say about it.
    std::thread::sleep(Duration::from_millis(50));
    let fresh_events = lock(&host.events)
        .iter()
        .filter(|e| e.call_id == "fresh")
        .count();
    assert_eq!(fresh_events, 3);
    c.stop().expect("stop");
}

#[test]
fn not_connected_commands_fail_fast_and_stop_is_prompt() {
    // Nobody listens on this port.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (mut c, host) = connector(port);
    c.start(Vec::new()).expect("start");
    host.wait_for("LinkDown then LinkReconnecting", |e| {
        e.iter().any(|e| e.kind == EventKind::LINK_RECONNECTING)
    });
    assert_eq!(host.kinds()[0], "LinkDown");
    let t = Instant::now();
    let mut mc = Command::new(CommandKind::MAKE_CALL, "");
    mc.target = "1002".into();
    let e = c.execute(&mc).expect_err("down");
    assert_eq!(e.kind, ErrorKind::LINK_DOWN);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    c.stop().expect("stop");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn make_call_returns_the_new_call_id() {
    let fake = FakeBaresip::start(Box::new(|command, _| {
        match command {
        "listcalls" => vec![empty_listcalls()],
        // The id-less CALL_LOCAL_SDP comes before the reply, CALL_RINGING
        // before the reply of `callstat`.
        "dial" => vec![
            json!({"event": true, "type": "CALL_LOCAL_SDP", "class": "other", "direction": "outgoing",
                   "peeruri": "sip:bob@127.0.0.1:5090", "param": "offer"}),
            response(""),
        ],
        "callstat" => vec![
            json!({"event": true, "type": "CALL_RINGING", "class": "call", "direction": "outgoing",
                   "accountaor": "sip:1001@127.0.0.1", "peeruri": "sip:bob@127.0.0.1:5090", "id": "out1"}),
            response("\n===== Call debug (OUTGOING) =====\n local_uri:  <sip:1001@127.0.0.1>\n peer_uri:   <sip:bob@127.0.0.1:5090>\n af=AF_INET id=out1\n direction: Outgoing\n"),
        ],
        _ => vec![response("")],
    }
    }));
    let (mut c, host) = connector(fake.port);
    c.start(Vec::new()).expect("start");
    host.wait_for("LinkUp", |e| e.iter().any(|e| e.kind == EventKind::LINK_UP));
    let mut mc = Command::new(CommandKind::MAKE_CALL, "");
    mc.target = " sip:bob@127.0.0.1:5090 ".into();
    let out = c.execute(&mc).expect("dial");
    assert_eq!(out.call_id, "out1");
    let flow: Vec<(String, String)> = lock(&host.events)
        .iter()
        .filter(|e| e.call_id == "out1")
        .map(|e| (e.kind.to_string(), e.party.to_string()))
        .collect();
    assert_eq!(
        flow,
        [
            ("Originated".to_owned(), "bob".to_owned()),
            ("Delivered".to_owned(), "bob".to_owned())
        ]
    );
    assert!(fake
        .requests()
        .contains(&"dial sip:bob@127.0.0.1:5090".to_owned()));
    c.stop().expect("stop");
}

#[test]
fn bad_arguments_and_unsupported_commands_never_reach_baresip() {
    let (mut c, _host) = connector(9);
    for (kind, target) in [
        (CommandKind::SEND_DTMF, "12x"),
        (CommandKind::SEND_DTMF, ""),
        (CommandKind::BLIND_TRANSFER, "sip:a b@h"),
        (CommandKind::BLIND_TRANSFER, ""),
    ] {
        let mut cmd = Command::new(kind, "c1");
        cmd.target = target.into();
        assert_eq!(
            c.execute(&cmd).expect_err("bad").kind,
            ErrorKind::BAD_ARGUMENT
        );
    }
    for kind in [
        CommandKind::CONSULT,
        CommandKind::CONFERENCE,
        CommandKind::SET_AGENT_STATE,
        CommandKind::ALTERNATE,
    ] {
        assert_eq!(
            c.execute(&Command::new(kind, "c1"))
                .expect_err("unsupported")
                .kind,
            ErrorKind::UNSUPPORTED
        );
    }
    // Settings are checked at construction.
    let fake = FakeHost::default();
    let handle: HostHandle = HostApi_TO::from_ptr(RArc::new(fake), TD_Opaque);
    for bad in [
        "port = 0",
        "colour = 1",
        "reconnect_min_ms = 10\nreconnect_max_ms = 5",
        "host = \"\"",
    ] {
        let e = BaresipConnector::new(Host::from_handle(handle.clone()), Settings::from_toml(bad))
            .err()
            .expect("refused");
        assert_eq!(e.kind, ErrorKind::BAD_SETTINGS, "{bad}: {e}");
    }
}
