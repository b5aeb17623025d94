//! The chat channel end to end: the real `cti-host` with the XMPP connector
//! against a real Prosody (one per test, loopback, free port), real XMPP
//! customer clients, and the listener connector over HTTP.
//!
//! Without `prosody` installed the XMPP tests print `skipped: install
//! prosody` — unless `CI` is set, where they fail.

use std::time::{Duration, Instant};

use cti_e2e::{
    n,
    parts::{self, HOST, RECORDER},
    s,
    xmpp::{prosody_or_skip, Customer, Prosody, DOMAIN},
    Host, Scratch,
};
use serde_json::Value;
use xmpp_connector::tokio_xmpp::parsers::chatstates::ChatState;

const AGENT: &str = "agent@cti.test";

/// A desktop with the XMPP connector (`settings`), extra `[desktop]` lines,
/// extra hosted controls, and the recorder.
fn desktop(settings: &str, desktop_extra: &str, more: &str) -> Host {
    let chat = parts::chat(settings);
    let manifest = format!(
        r#"
{HOST}
[desktop]
agent_id = "a1"
dispositions = ["Resolved"]
{desktop_extra}

{chat}

{more}

{RECORDER}"#
    );
    Host::start(&manifest)
}

fn is(ev: &Value, event: &str) -> bool {
    s(ev, "event") == event
}

fn on(ev: &Value, event: &str, call: &str) -> bool {
    is(ev, event) && s(ev, "call_id") == call
}

fn connected(host: &Host, source: &str) {
    host.wait_event(&format!("{source} connected"), |e| {
        is(e, "ConnectorStatus") && s(e, "source") == source && s(e, "text") == "Connected"
    });
}

/// Waits for the chat offered by `customer`; returns its call id.
fn offered(host: &Host, customer: &str) -> String {
    let d = host.wait_event(&format!("a chat from {customer}"), |e| {
        is(e, "Delivered") && s(&e["call"], "ani") == customer
    });
    assert_eq!(s(&d["call"], "channel"), "chat", "{d}");
    assert_eq!(s(&d["call"], "state"), "Alerting", "{d}");
    s(&d, "call_id").to_owned()
}

fn received(host: &Host, call: &str, text: &str) -> Value {
    host.wait_event(&format!("MessageReceived {text:?} on {call}"), |e| {
        on(e, "MessageReceived", call) && s(e, "text") == text
    })
}

fn answer(host: &Host, call: &str) {
    host.ctl_ok(&["answer", call]);
    host.wait_event(&format!("{call} established"), |e| {
        on(e, "Established", call)
    });
}

fn reply(host: &Host, call: &str, text: &str) {
    host.ctl_ok(&["send", call, text]);
    host.wait_event(&format!("MessageSent {text:?} on {call}"), |e| {
        on(e, "MessageSent", call) && s(e, "text") == text
    });
}

/// A server with the agent and `customers` (password = name + "pw").
fn server(customers: &[&str]) -> Prosody {
    let mut p = Prosody::new();
    p.register("agent", "agentpw");
    for c in customers {
        p.register(c, &format!("{c}pw"));
    }
    p.run();
    p
}

fn customer(p: &Prosody, name: &str) -> Customer {
    Customer::connect(p, name, &format!("{name}pw"), AGENT)
}

#[test]
fn a_customer_message_offers_a_chat_and_the_reply_reaches_the_customer() {
    if !prosody_or_skip() {
        return;
    }
    let p = server(&["alice"]);
    let mut host = desktop(&p.connector_settings("agent", "agentpw"), "", "");
    connected(&host, "Chat");
    let mut alice = customer(&p, "alice");
    alice.say(AGENT, "Hello, I need help with my order");
    let call = offered(&host, "alice@cti.test");
    let d = host.wait_event("Delivered", |e| on(e, "Delivered", &call));
    assert_eq!(s(&d["call"], "dnis"), AGENT);
    let allowed: Vec<&str> = d["call"]["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(allowed, ["Answer", "Reject"], "{d}");
    // The first message is kept: it arrives with the offer.
    let first = received(&host, &call, "Hello, I need help with my order");
    assert_eq!(s(&first, "party"), "alice@cti.test");
    answer(&host, &call);
    let calls: Value = serde_json::from_str(&host.ctl_ok(&["calls", "--json"])).unwrap();
    let allowed: Vec<&str> = calls[0]["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // Exactly what the connector implements: no hold, no DTMF.
    assert_eq!(
        allowed,
        ["Hangup", "BlindTransfer", "SendMessage", "SendTyping"],
        "{calls}"
    );
    reply(&host, &call, "Hi Alice, let me look at it.");
    let got = alice.expect(AGENT, |b| b == "Hi Alice, let me look at it.");
    assert!(got.from.starts_with("agent@cti.test/"), "{got:?}");
    alice.typing(AGENT, ChatState::Composing);
    let t = host.wait_event("typing", |e| on(e, "Typing", &call));
    assert_eq!(s(&t, "text"), "composing");
    alice.say(AGENT, "Order 1234");
    received(&host, &call, "Order 1234");
    // Over the desktop's text limit: refused before it reaches the connector.
    let long = "x".repeat(5000);
    let o = host.ctl(&["send", &call, &long]);
    assert_eq!(o.status.code(), Some(1));
    host.ctl_ok(&["hangup", &call]);
    host.wait_event("cleared", |e| on(e, "CallCleared", &call));
    assert!(host.stop().success());
}

#[test]
fn two_chats_and_a_voice_call_at_once_keep_their_own_conversations() {
    if !prosody_or_skip() {
        return;
    }
    let p = server(&["alice", "bob"]);
    let scratch = Scratch::new();
    scratch.write(
        "voice.toml",
        "[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = \"v1\"\nani = \"+14255550101\"\ndnis = \"+18005550100\"\n",
    );
    let voice = format!(
        "[[hosted_control]]\nname = \"Phone\"\ntype = \"connector\"\nlibrary = \"sim_connector\"\nchannel = \"voice\"\n[hosted_control.settings]\nscenario = \"{}\"\ntalk_time_secs = [600.0, 600.0]\n",
        scratch.path("voice.toml").display()
    );
    let mut host = desktop(
        &p.connector_settings("agent", "agentpw"),
        "capacity = { voice = 1, chat = 3 }",
        &voice,
    );
    connected(&host, "Chat");
    host.wait_event("the voice call", |e| on(e, "Delivered", "scn-v1"));
    answer(&host, "scn-v1");
    let mut alice = customer(&p, "alice");
    let mut bob = customer(&p, "bob");
    alice.say(AGENT, "alice here");
    bob.say(AGENT, "bob here");
    let a = offered(&host, "alice@cti.test");
    let b = offered(&host, "bob@cti.test");
    assert_ne!(a, b);
    received(&host, &a, "alice here");
    received(&host, &b, "bob here");
    answer(&host, &a);
    answer(&host, &b);
    reply(&host, &a, "to alice");
    reply(&host, &b, "to bob");
    alice.expect(AGENT, |t| t == "to alice");
    bob.expect(AGENT, |t| t == "to bob");
    alice.say(AGENT, "alice again");
    bob.say(AGENT, "bob again");
    let ra = received(&host, &a, "alice again");
    let rb = received(&host, &b, "bob again");
    assert_eq!(s(&ra, "party"), "alice@cti.test");
    assert_eq!(s(&rb, "party"), "bob@cti.test");
    // Nobody got the other's reply.
    assert!(alice.drain().iter().all(|r| r.body != "to bob"));
    assert!(bob.drain().iter().all(|r| r.body != "to alice"));
    let calls: Value = serde_json::from_str(&host.ctl_ok(&["calls", "--json"])).unwrap();
    let mut live: Vec<(String, String, String)> = calls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                s(c, "channel").to_owned(),
                s(c, "ani").to_owned(),
                s(c, "state").to_owned(),
            )
        })
        .collect();
    live.sort();
    assert_eq!(
        live,
        [
            ("chat".into(), "alice@cti.test".into(), "Connected".into()),
            ("chat".into(), "bob@cti.test".into(), "Connected".into()),
            ("voice".into(), "+14255550101".into(), "Connected".into()),
        ]
    );
    assert!(host.stop().success());
}

#[test]
fn a_chat_over_capacity_is_rejected_politely() {
    if !prosody_or_skip() {
        return;
    }
    let p = server(&["alice", "bob"]);
    let mut host = desktop(
        &p.connector_settings("agent", "agentpw"),
        "capacity = { chat = 1 }\nover_capacity = \"reject\"",
        "",
    );
    connected(&host, "Chat");
    let alice = customer(&p, "alice");
    let mut bob = customer(&p, "bob");
    alice.say(AGENT, "first");
    let a = offered(&host, "alice@cti.test");
    bob.say(AGENT, "second");
    let b = offered(&host, "bob@cti.test");
    let w = host.wait_event("bob rejected", |e| on(e, "WorkItem", &b));
    assert_eq!(s(&w["call"]["work"], "state"), "Rejected", "{w}");
    host.wait_event("bob cleared", |e| on(e, "CallCleared", &b));
    let sorry = bob.expect(AGENT, |_| true);
    assert!(sorry.body.contains("try again"), "{sorry:?}");
    // Alice's chat is still offered and can be answered.
    answer(&host, &a);
    assert!(host.stop().success());
}

#[test]
fn the_customer_going_offline_clears_the_chat_and_starts_wrap_up() {
    if !prosody_or_skip() {
        return;
    }
    let p = server(&["alice"]);
    let mut host = desktop(
        &p.connector_settings("agent", "agentpw"),
        "wrap_up_seconds = 30",
        "",
    );
    connected(&host, "Chat");
    let alice = customer(&p, "alice");
    alice.say(AGENT, "quick question");
    let call = offered(&host, "alice@cti.test");
    answer(&host, &call);
    alice.quit();
    let left = host.wait_event("participant left", |e| on(e, "ParticipantLeft", &call));
    assert_eq!(s(&left, "party"), "alice@cti.test");
    let cc = host.wait_event("connection cleared", |e| on(e, "ConnectionCleared", &call));
    assert_eq!(s(&cc, "party"), "alice@cti.test");
    assert_eq!(s(&cc, "state"), "Null");
    host.wait_event("call cleared", |e| on(e, "CallCleared", &call));
    let w = host.wait_event("wrap-up", |e| on(e, "WorkItem", &call));
    assert_eq!(s(&w["call"]["work"], "state"), "Wrapping", "{w}");
    host.wait_event("agent in wrap-up", |e| {
        is(e, "AgentStateChanged") && s(e, "agent_state") == "WorkingAfterCall"
    });
    assert!(host.stop().success());
}

#[test]
fn a_transfer_hands_the_chat_to_a_second_agent_account() {
    if !prosody_or_skip() {
        return;
    }
    let mut p = Prosody::new();
    p.register("agent", "agentpw")
        .register("agent2", "agent2pw")
        .register("alice", "alicepw");
    p.run();
    let mut one = desktop(
        &p.connector_settings("agent", "agentpw"),
        "wrap_up_seconds = 0",
        "",
    );
    let two_settings = format!(
        "{}transfer_peers = [\"agent@cti.test\"]\n",
        p.connector_settings("agent2", "agent2pw")
    );
    let mut two = desktop(&two_settings, "", "");
    connected(&one, "Chat");
    connected(&two, "Chat");
    let mut alice = customer(&p, "alice");
    alice.say(AGENT, "I want to change my plan");
    let call = offered(&one, "alice@cti.test");
    answer(&one, &call);
    reply(&one, &call, "Let me transfer you to sales.");
    one.ctl_ok(&["transfer", &call, "agent2@cti.test"]);
    let t = one.wait_event("transferred", |e| on(e, "Transferred", &call));
    assert_eq!(s(&t, "party"), AGENT);
    assert_eq!(s(&t, "text"), "agent2@cti.test");
    one.wait_event("cleared at agent 1", |e| on(e, "CallCleared", &call));
    let w = one.wait_event("wrap-up at agent 1", |e| on(e, "WorkItem", &call));
    assert_eq!(s(&w["call"]["work"], "state"), "Wrapping");
    let notice = alice.expect(AGENT, |b| b.contains("transferred"));
    assert!(notice.body.contains("agent2@cti.test"), "{notice:?}");
    // The second agent is offered the chat, with its history.
    let call2 = offered(&two, "alice@cti.test");
    let d = two.wait_event("Delivered", |e| on(e, "Delivered", &call2));
    let data = &d["call"]["data"];
    assert_eq!(s(data, "transferred_from"), AGENT, "{d}");
    let h = received(&two, &call2, "I want to change my plan");
    assert_eq!(h["attrs"]["history"], "true", "{h}");
    received(&two, &call2, "Let me transfer you to sales.");
    answer(&two, &call2);
    reply(&two, &call2, "Sales here, hello!");
    let from2 = alice.expect("agent2@cti.test", |b| b == "Sales here, hello!");
    assert!(from2.from.starts_with("agent2@cti.test/"));
    // The customer answers the new agent directly…
    alice.say("agent2@cti.test", "Great, thanks");
    received(&two, &call2, "Great, thanks");
    // …and a message still sent to the old address is passed on.
    alice.say(AGENT, "(sent to the old window)");
    received(&two, &call2, "(sent to the old window)");
    assert!(
        !one.events()
            .iter()
            .any(|e| is(e, "Delivered") && s(e, "call_id") != call),
        "agent 1 must not be offered the chat again"
    );
    // Leaving reaches the new agent too (alice's presence went to agent 1).
    alice.quit();
    two.wait_event("left at agent 2", |e| on(e, "ParticipantLeft", &call2));
    two.wait_event("cleared at agent 2", |e| on(e, "CallCleared", &call2));
    assert!(one.stop().success());
    assert!(two.stop().success());
}

#[test]
fn prosody_stopped_mid_chat_then_back() {
    if !prosody_or_skip() {
        return;
    }
    let mut p = server(&["alice"]);
    let mut host = desktop(&p.connector_settings("agent", "agentpw"), "", "");
    connected(&host, "Chat");
    let alice = customer(&p, "alice");
    alice.say(AGENT, "hello");
    let call = offered(&host, "alice@cti.test");
    answer(&host, &call);
    let stopped = Instant::now();
    let seq_before = host.events().last().map(|e| n(e, "seq")).unwrap_or(0);
    // A crash: no goodbye presence for anybody, the chat stays open.
    p.kill();
    drop(alice);
    let down = host.wait_event("disconnected", |e| {
        is(e, "ConnectorStatus") && n(e, "seq") > seq_before && s(e, "text") == "Disconnected"
    });
    assert!(s(&down, "cause").contains("lost"), "{down}");
    eprintln!("link down noticed after {:?}", stopped.elapsed());
    // The desktop keeps running; the chat is still there; sending is refused.
    assert!(host.is_running());
    let calls = host.ctl_ok(&["calls"]);
    assert!(calls.contains(&call), "{calls}");
    let o = host.ctl(&["send", &call, "are you there?"]);
    assert_eq!(o.status.code(), Some(1), "sending while down must fail");
    host.wait_event("reconnecting", |e| {
        is(e, "ConnectorStatus") && s(e, "text") == "Reconnecting"
    });
    let seq_down = n(&down, "seq");
    p.run();
    host.wait_event_within("connected again", Duration::from_secs(20), |e| {
        is(e, "ConnectorStatus") && n(e, "seq") > seq_down && s(e, "text") == "Connected"
    });
    // The conversation goes on after the server came back.
    let mut alice = customer(&p, "alice");
    reply(&host, &call, "sorry, we were cut off");
    alice.expect(AGENT, |b| b == "sorry, we were cut off");
    alice.say(AGENT, "no problem");
    received(&host, &call, "no problem");
    assert!(host.stop().success());
}

#[test]
fn a_wrong_password_is_one_clear_error() {
    if !prosody_or_skip() {
        return;
    }
    let p = server(&[]);
    let mut host = desktop(&p.connector_settings("agent", "Wr0ngPassw0rd"), "", "");
    let down = host.wait_event("auth failure", |e| {
        is(e, "ConnectorStatus") && s(e, "text") == "Disconnected"
    });
    let cause = s(&down, "cause");
    assert!(
        cause.contains("authentication failed for agent@cti.test"),
        "{cause}"
    );
    assert!(!cause.contains("Wr0ngPassw0rd"), "{cause}");
    // No reconnect loop: one failure in the server's log, one in ours.
    std::thread::sleep(Duration::from_millis(1500));
    let log = host.log_text();
    let errors = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("authentication failed for agent@cti.test"))
        .count();
    assert_eq!(errors, 1, "{log}");
    assert!(!log.contains("Wr0ngPassw0rd"), "{log}");
    let attempts = p.log().matches("Authentication failed").count()
        + p.log().matches("authentication failure").count()
        + p.log().matches("Failed authentication").count();
    assert!(attempts <= 1, "the connector retried:\n{}", p.log());
    assert!(!host
        .events()
        .iter()
        .any(|e| is(e, "ConnectorStatus") && s(e, "text") == "Reconnecting"));
    // The desktop itself is fine.
    host.ctl_ok(&["calls"]);
    assert!(host.stop().success());
}

#[test]
fn starttls_with_a_ca_the_admin_names() {
    if !prosody_or_skip() {
        return;
    }
    let mut p = Prosody::with_tls();
    p.register("agent", "agentpw").register("alice", "alicepw");
    p.run();
    let settings = p.connector_settings("agent", "agentpw");
    assert!(settings.contains("starttls"), "{settings}");
    let mut host = desktop(&settings, "", "");
    connected(&host, "Chat");
    let mut alice = customer(&p, "alice");
    alice.say(AGENT, "over TLS?");
    let call = offered(&host, "alice@cti.test");
    answer(&host, &call);
    reply(&host, &call, "yes, encrypted");
    alice.expect(AGENT, |b| b == "yes, encrypted");
    assert!(
        p.log().contains("encrypted"),
        "prosody did not log an encrypted stream:\n{}",
        p.log()
    );
    assert!(host.stop().success());

    // Without the test CA the certificate is refused, and said so.
    let mut other = Prosody::with_tls();
    other.register("agent", "agentpw");
    other.run();
    let untrusted = other.connector_settings("agent", "agentpw").replace(
        &format!(
            "ca_file = \"{}\"",
            other.ca_file.as_ref().unwrap().display()
        ),
        &format!("ca_file = \"{}\"", p.ca_file.as_ref().unwrap().display()),
    );
    let mut host = desktop(&untrusted, "", "");
    let down = host.wait_event("TLS refused", |e| {
        is(e, "ConnectorStatus") && s(e, "text") == "Disconnected"
    });
    assert!(s(&down, "cause").contains("TLS"), "{down}");
    assert!(host.stop().success());
    let _ = DOMAIN;
}

// ---------------------------------------------------------------- listener

const TOKEN: &str = "test-token-0123456789";

/// One HTTP/1.1 request over a fresh connection: (status, JSON body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    ctype: &str,
    body: &str,
) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the listener");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

fn listener_desktop() -> (Host, u16) {
    let port = cti_e2e::xmpp::free_port();
    let manifest = format!(
        r#"
{HOST}
[desktop]
agent_id = "a1"

[[hosted_control]]
name = "Listener"
type = "connector"
library = "listener_connector"
channel = "voice"
[hosted_control.settings]
port = {port}
token = "{TOKEN}"
max_body_bytes = 2048

{RECORDER}"#
    );
    let host = Host::start(&manifest);
    connected(&host, "Listener");
    (host, port)
}

fn data_of(host: &Host, id: &str) -> Value {
    let calls: Value = serde_json::from_str(&host.ctl_ok(&["calls", "--json"])).unwrap();
    calls
        .as_array()
        .unwrap()
        .iter()
        .find(|c| s(c, "call_id") == id)
        .map(|c| c["data"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn listener_create_update_answer_clear_over_http() {
    let (mut host, port) = listener_desktop();
    let json = "application/json";
    let (st, created) = http(
        port,
        "POST",
        "/interactions",
        Some(TOKEN),
        json,
        r#"{"ani":"+14255550123","dnis":"8000","type":"ivr","data":{"account":"A-42","intent":"billing","vip":true}}"#,
    );
    assert_eq!(st, 201, "{created}");
    let id = s(&created, "id").to_owned();
    assert_eq!(s(&created, "state"), "Alerting");
    let d = host.wait_event("Delivered", |e| on(e, "Delivered", &id));
    assert_eq!(s(&d["call"], "ani"), "+14255550123");
    assert_eq!(s(&d["call"]["data"], "account"), "A-42");
    assert_eq!(s(&d["call"]["data"], "type"), "ivr");
    assert_eq!(s(&d["call"]["data"], "vip"), "true");
    // Update: merged into the desktop's call data (and a new DNIS), raised
    // as CallUpdated from the connector; the call still rings.
    let (st, v) = http(
        port,
        "PATCH",
        &format!("/interactions/{id}"),
        Some(TOKEN),
        json,
        r#"{"dnis":"8001","data":{"intent":"upgrade","queue":"sales"}}"#,
    );
    assert_eq!(st, 200, "{v}");
    let u = host.wait_event("the CallUpdated of the PATCH", |e| {
        on(e, "CallUpdated", &id) && s(e, "cause") == "DataUpdated"
    });
    assert_eq!(s(&u["attrs"], "origin"), "connector", "{u}");
    assert_eq!(s(&u["call"], "state"), "Alerting", "{u}");
    assert_eq!(s(&u["call"], "dnis"), "8001", "{u}");
    let d = &u["call"]["data"];
    assert_eq!(
        (s(d, "intent"), s(d, "queue"), s(d, "account")),
        ("upgrade", "sales", "A-42"),
        "{u}"
    );
    let d = data_of(&host, &id);
    assert_eq!(
        s(&d, "intent"),
        "upgrade",
        "ctl calls shows the update: {d}"
    );
    assert_eq!(
        host.events()
            .iter()
            .filter(|e| on(e, "Delivered", &id))
            .count(),
        1,
        "an update is not a second offer"
    );
    // A form post works too, every other field is call data.
    let (st, v) = http(
        port,
        "POST",
        "/interactions",
        Some(TOKEN),
        "application/x-www-form-urlencoded",
        "ani=5551234&channel=crm&ticket=T-9",
    );
    assert_eq!(st, 201, "{v}");
    let id2 = s(&v, "id").to_owned();
    let d2 = host.wait_event("form Delivered", |e| on(e, "Delivered", &id2));
    assert_eq!(s(&d2["call"]["data"], "ticket"), "T-9");
    // The agent answers the first; the source sees it.
    answer(&host, &id);
    let (_, v) = http(
        port,
        "GET",
        &format!("/interactions/{id}"),
        Some(TOKEN),
        json,
        "",
    );
    assert_eq!(s(&v, "state"), "Connected", "{v}");
    // The source clears both.
    for i in [&id, &id2] {
        let (st, v) = http(
            port,
            "DELETE",
            &format!("/interactions/{i}"),
            Some(TOKEN),
            json,
            "",
        );
        assert_eq!(st, 200, "{v}");
        host.wait_event("cleared", |e| on(e, "CallCleared", i));
    }
    let (st, _) = http(
        port,
        "GET",
        &format!("/interactions/{id}"),
        Some(TOKEN),
        json,
        "",
    );
    assert_eq!(st, 404);
    assert!(host.stop().success());

    // The recording replays identically, the data update included (the
    // replay feeds the connector's CallUpdated back in).
    host.assert_replays_identically(&[]);
}

#[test]
fn listener_refuses_malformed_requests_and_creates_nothing() {
    let (mut host, port) = listener_desktop();
    let json = "application/json";
    let ok_body = r#"{"ani":"1"}"#;
    let big = format!(r#"{{"ani":"1","data":{{"x":"{}"}}}}"#, "y".repeat(4000));
    // (method, path, token, content type, body, status, reason)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        &'a str,
        &'a str,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        ("POST", "/interactions", None, json, ok_body, 401, "token"),
        (
            "POST",
            "/interactions",
            Some("wrong-token-0123456789"),
            json,
            ok_body,
            401,
            "token",
        ),
        ("GET", "/interactions", None, json, "", 401, "token"),
        (
            "POST",
            "/interactions",
            Some(TOKEN),
            json,
            "{not json",
            400,
            "not JSON",
        ),
        (
            "POST",
            "/interactions",
            Some(TOKEN),
            json,
            r#"{"dnis":"1"}"#,
            400,
            "ani",
        ),
        (
            "POST",
            "/interactions",
            Some(TOKEN),
            json,
            r#"{"ani":"1","data":[1]}"#,
            400,
            "data",
        ),
        (
            "POST",
            "/interactions",
            Some(TOKEN),
            "text/plain",
            "ani=1",
            415,
            "content type",
        ),
        (
            "POST",
            "/interactions",
            Some(TOKEN),
            json,
            &big,
            413,
            "over 2048 bytes",
        ),
        (
            "PATCH",
            "/interactions/nope",
            Some(TOKEN),
            json,
            r#"{"data":{"a":"b"}}"#,
            404,
            "nope",
        ),
        (
            "DELETE",
            "/interactions/nope",
            Some(TOKEN),
            json,
            "",
            404,
            "nope",
        ),
        (
            "GET",
            "/elsewhere",
            Some(TOKEN),
            json,
            "",
            404,
            "no such resource",
        ),
        (
            "PUT",
            "/interactions",
            Some(TOKEN),
            json,
            ok_body,
            405,
            "not allowed",
        ),
    ];
    for (method, path, token, ctype, body, want, reason) in cases {
        let (st, v) = http(port, method, path, token, ctype, body);
        assert_eq!(st, want, "{method} {path}: {v}");
        assert!(s(&v, "error").contains(reason), "{method} {path}: {v}");
    }
    // Nothing reached the desktop.
    assert!(!host.events().iter().any(|e| is(e, "Delivered")));
    let (_, list) = http(port, "GET", "/interactions", Some(TOKEN), json, "");
    assert_eq!(list, Value::Array(vec![]));
    assert!(host.stop().success());
}

/// The channel manifests shipped in `config/` load every library and pass
/// their settings checks (`cti-host check`), as an admin would run them.
#[test]
fn the_shipped_chat_and_multichannel_manifests_check_clean() {
    for (file, want) in [
        ("config/chat.toml", &["xmpp-connector"][..]),
        (
            "config/multichannel.toml",
            &[
                "sim-connector",
                "xmpp-connector",
                "listener-connector",
                "web-control",
            ][..],
        ),
    ] {
        let path = cti_e2e::workspace().join(file);
        let o = cti_e2e::run_cli(&["check", path.to_str().unwrap()]);
        let out = cti_e2e::stdout(&o);
        assert!(o.status.success(), "{file}: {out}{}", cti_e2e::stderr(&o));
        for lib in want {
            assert!(out.contains(lib), "{file} loads {lib}: {out}");
        }
    }
}
