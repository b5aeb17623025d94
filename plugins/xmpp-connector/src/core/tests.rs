use super::*;

const ME: &str = "agent@cti.test";
const CUST: &str = "alice@cti.test";

fn core() -> Core {
    let cfg = CoreConfig {
        reject_message: "sorry".into(),
        closing_message: "bye".into(),
        transfer_message: "moving you to {target}".into(),
        transfer_peers: vec!["agent1@cti.test".into(), "*@team.test".into()],
        history_lines: 3,
        forward_for: Duration::from_secs(60),
    };
    Core::new(BareJid::new(ME).unwrap(), cfg)
}

fn msg(from: &str, body: Option<&str>) -> Message {
    let mut m = Message::chat(Some(Jid::new(ME).unwrap()));
    m.from = Some(Jid::new(from).unwrap());
    if let Some(b) = body {
        // As Prosody delivers it: keyed by the stream's language.
        m.bodies.insert(Lang::from("en"), b.to_owned());
    }
    m
}

fn presence(from: &str, t: PresenceType) -> Presence {
    let mut p = Presence::new(t);
    p.from = Some(Jid::new(from).unwrap());
    p
}

fn kinds(out: &Out) -> Vec<String> {
    out.events.iter().map(|e| e.kind.to_string()).collect()
}

fn cmd(kind: CommandKind, call: &str) -> Command {
    Command::new(kind, call)
}

fn body(s: &Stanza) -> (String, String) {
    match s {
        Stanza::Message(m) => (
            m.to.as_ref().unwrap().to_string(),
            body_of(m).unwrap_or_default().to_owned(),
        ),
        other => panic!("not a message: {other:?}"),
    }
}

/// A customer chat, answered.
fn connected(c: &mut Core) -> String {
    let out = c.on_message(msg("alice@cti.test/phone", Some("hi")), Instant::now());
    let id = out.events[0].call_id.to_string();
    c.execute(&cmd(CommandKind::ANSWER, &id), true).unwrap();
    id
}

#[test]
fn first_message_offers_a_chat_and_keeps_the_text() {
    let mut c = core();
    let mut m = msg("alice@cti.test/phone", Some("Hello, I need help"));
    m.thread = Some(Thread {
        parent: None,
        id: "t-1".into(),
    });
    m.subjects.insert(Lang::from("en"), "Order 42".into());
    let out = c.on_message(m, Instant::now());
    assert_eq!(kinds(&out), ["Delivered", "MessageReceived"]);
    let d = &out.events[0];
    let ROption::RSome(info) = &d.call else {
        panic!("Delivered without the call")
    };
    assert_eq!(info.call_id.as_str(), "xmpp-1");
    assert_eq!(info.ani.as_str(), CUST);
    assert_eq!(info.dnis.as_str(), ME);
    assert_eq!(info.direction, Direction::Inbound);
    assert_eq!(info.state, ConnectionState::Alerting);
    assert_eq!(lookup(&info.data, "subject"), Some("Order 42"));
    assert_eq!(lookup(&info.data, "thread"), Some("t-1"));
    let r = &out.events[1];
    assert_eq!(r.text.as_str(), "Hello, I need help");
    assert_eq!(r.party.as_str(), CUST);
    assert_eq!(r.state, ConnectionState::Alerting);
    // A second message stays in the same chat.
    let out = c.on_message(msg("alice@cti.test/phone", Some("anyone?")), Instant::now());
    assert_eq!(kinds(&out), ["MessageReceived"]);
    assert_eq!(out.events[0].call_id.as_str(), "xmpp-1");
    assert_eq!(c.len(), 1);
}

#[test]
fn two_customers_get_two_chats() {
    let mut c = core();
    let a = c.on_message(msg("alice@cti.test/x", Some("a")), Instant::now());
    let b = c.on_message(msg("bob@cti.test/y", Some("b")), Instant::now());
    assert_eq!(a.events[0].call_id.as_str(), "xmpp-1");
    assert_eq!(b.events[0].call_id.as_str(), "xmpp-2");
    let a2 = c.on_message(msg("alice@cti.test/x", Some("a2")), Instant::now());
    assert_eq!(a2.events[0].call_id.as_str(), "xmpp-1");
    assert_eq!(c.calls().len(), 2);
}

#[test]
fn ignored_messages() {
    let mut c = core();
    // Own resources, the server, errors, group chat, empty bodies.
    assert!(c
        .on_message(msg("agent@cti.test/other", Some("x")), Instant::now())
        .events
        .is_empty());
    assert!(c
        .on_message(msg("cti.test", Some("motd")), Instant::now())
        .events
        .is_empty());
    let mut e = msg("alice@cti.test/x", Some("x"));
    e.type_ = MessageType::Error;
    assert!(c.on_message(e, Instant::now()).events.is_empty());
    let mut g = msg("room@muc.cti.test/bob", Some("x"));
    g.type_ = MessageType::Groupchat;
    assert!(c.on_message(g, Instant::now()).events.is_empty());
    assert!(c
        .on_message(msg("alice@cti.test/x", Some("  ")), Instant::now())
        .events
        .is_empty());
    assert!(c.is_empty());
}

#[test]
fn typing_passes_through_for_open_chats_only() {
    let mut c = core();
    let mut t = msg("alice@cti.test/x", None);
    t.payloads.push(ChatState::Composing.into());
    assert!(c.on_message(t.clone(), Instant::now()).events.is_empty());
    c.on_message(msg("alice@cti.test/x", Some("hi")), Instant::now());
    let out = c.on_message(t, Instant::now());
    assert_eq!(kinds(&out), ["Typing"]);
    assert_eq!(out.events[0].text.as_str(), "composing");
}

#[test]
fn answer_reply_hangup() {
    let mut c = core();
    let out = c.on_message(msg("alice@cti.test/phone", Some("hi")), Instant::now());
    let id = out.events[0].call_id.to_string();
    // Not before it is answered.
    let mut send = cmd(CommandKind::SEND_MESSAGE, &id);
    send.text = "hello".into();
    assert_eq!(
        c.prepare_send(&send).unwrap_err().kind,
        ErrorKind::INVALID_STATE
    );
    let out = c.execute(&cmd(CommandKind::ANSWER, &id), true).unwrap();
    assert_eq!(kinds(&out), ["Established"]);
    assert_eq!(out.events[0].state, ConnectionState::Connected);
    assert_eq!(
        c.execute(&cmd(CommandKind::ANSWER, &id), true)
            .unwrap_err()
            .kind,
        ErrorKind::INVALID_STATE
    );
    // The reply goes to the resource that wrote, with the default language.
    let stanza = c.prepare_send(&send).unwrap();
    assert_eq!(
        body(&stanza),
        ("alice@cti.test/phone".into(), "hello".into())
    );
    let Stanza::Message(m) = &stanza else {
        unreachable!()
    };
    assert!(m.bodies.contains_key(&Lang::default()));
    let sent = c.sent(&id, "hello").unwrap();
    assert_eq!(sent.kind, EventKind::MESSAGE_SENT);
    assert_eq!(sent.text.as_str(), "hello");
    assert_eq!(sent.state, ConnectionState::Connected);
    let out = c.execute(&cmd(CommandKind::HANGUP, &id), true).unwrap();
    assert_eq!(kinds(&out), ["ConnectionCleared", "CallCleared"]);
    assert_eq!(out.events[0].party.as_str(), ME);
    assert_eq!(out.events[0].state, ConnectionState::Null);
    assert_eq!(body(&out.stanzas[0]).1, "bye");
    assert!(c.is_empty());
    assert_eq!(
        c.execute(&cmd(CommandKind::HANGUP, &id), true)
            .unwrap_err()
            .kind,
        ErrorKind::UNKNOWN_CALL
    );
    // The customer's next message is a new chat.
    let out = c.on_message(
        msg("alice@cti.test/phone", Some("one more thing")),
        Instant::now(),
    );
    assert_eq!(out.events[0].call_id.as_str(), "xmpp-2");
}

#[test]
fn reject_tells_the_customer_unless_offline() {
    let mut c = core();
    let out = c.on_message(msg("alice@cti.test/x", Some("hi")), Instant::now());
    let id = out.events[0].call_id.to_string();
    let out = c.execute(&cmd(CommandKind::REJECT, &id), true).unwrap();
    assert_eq!(kinds(&out), ["ConnectionCleared", "CallCleared"]);
    assert_eq!(out.events[0].cause.as_str(), "Rejected");
    assert_eq!(body(&out.stanzas[0]).1, "sorry");
    let out = c.on_message(msg("bob@cti.test/x", Some("hi")), Instant::now());
    let id = out.events[0].call_id.to_string();
    let out = c.execute(&cmd(CommandKind::REJECT, &id), false).unwrap();
    assert!(out.stanzas.is_empty());
    assert_eq!(kinds(&out), ["ConnectionCleared", "CallCleared"]);
}

#[test]
fn customer_offline_clears_only_when_every_resource_left() {
    let mut c = core();
    c.on_presence(presence("alice@cti.test/phone", PresenceType::None));
    c.on_presence(presence("alice@cti.test/laptop", PresenceType::None));
    let id = connected(&mut c);
    let out = c.on_presence(presence("alice@cti.test/laptop", PresenceType::Unavailable));
    assert!(out.events.is_empty());
    let out = c.on_presence(presence("alice@cti.test/phone", PresenceType::Unavailable));
    assert_eq!(
        kinds(&out),
        ["ParticipantLeft", "ConnectionCleared", "CallCleared"]
    );
    assert_eq!(out.events[0].party.as_str(), CUST);
    assert_eq!(out.events[1].party.as_str(), CUST);
    assert_eq!(out.events[1].state, ConnectionState::Null);
    assert_eq!(out.events[2].call_id.as_str(), id);
    assert!(c.is_empty());
}

#[test]
fn customer_without_presence_leaves_on_first_unavailable() {
    let mut c = core();
    connected(&mut c);
    let out = c.on_presence(presence("alice@cti.test/phone", PresenceType::Unavailable));
    assert_eq!(
        kinds(&out),
        ["ParticipantLeft", "ConnectionCleared", "CallCleared"]
    );
}

#[test]
fn typing_command_and_bad_state() {
    let mut c = core();
    let id = connected(&mut c);
    let mut t = cmd(CommandKind::SEND_TYPING, &id);
    let out = c.execute(&t, true).unwrap();
    assert_eq!(out.stanzas.len(), 1);
    assert!(out.events.is_empty());
    t.text = "dancing".into();
    assert_eq!(
        c.execute(&t, true).unwrap_err().kind,
        ErrorKind::BAD_ARGUMENT
    );
    t.text = "paused".into();
    assert_eq!(c.execute(&t, false).unwrap_err().kind, ErrorKind::LINK_DOWN);
    assert_eq!(
        c.execute(&cmd(CommandKind::HOLD, &id), true)
            .unwrap_err()
            .kind,
        ErrorKind::UNSUPPORTED
    );
}

#[test]
fn transfer_hands_over_with_the_transcript() {
    let mut a = core();
    let id = connected(&mut a);
    a.sent(&id, "how can I help?");
    a.on_message(
        msg("alice@cti.test/phone", Some("my order")),
        Instant::now(),
    );
    let mut t = cmd(CommandKind::BLIND_TRANSFER, &id);
    t.target = "bob-agent".into();
    assert_eq!(
        a.prepare_transfer(&t).unwrap_err().kind,
        ErrorKind::BAD_ARGUMENT
    );
    t.target = ME.into();
    assert_eq!(
        a.prepare_transfer(&t).unwrap_err().kind,
        ErrorKind::BAD_ARGUMENT
    );
    t.target = "agent2@cti.test".into();
    let (target, stanzas) = a.prepare_transfer(&t).unwrap();
    assert_eq!(target.as_str(), "agent2@cti.test");
    assert_eq!(stanzas.len(), 2);
    let (to, summary) = body(&stanzas[0]);
    assert_eq!(to, "agent2@cti.test");
    assert!(summary.contains("my order"), "{summary}");
    assert_eq!(
        body(&stanzas[1]),
        (
            "alice@cti.test/phone".into(),
            "moving you to agent2@cti.test".into()
        )
    );
    let now = Instant::now();
    let events = a.transferred(&id, &target, now);
    let names: Vec<String> = events.iter().map(|e| e.kind.to_string()).collect();
    assert_eq!(names, ["Transferred", "ConnectionCleared", "CallCleared"]);
    assert_eq!(events[0].party.as_str(), ME);
    assert_eq!(events[0].text.as_str(), "agent2@cti.test");
    assert!(a.is_empty());

    // The target (trusting agent@cti.test) offers the chat.
    let cfg = CoreConfig {
        transfer_peers: vec![ME.into()],
        ..CoreConfig::default()
    };
    let mut b = Core::new(BareJid::new("agent2@cti.test").unwrap(), cfg);
    let Stanza::Message(handover) = &stanzas[0] else {
        unreachable!()
    };
    let mut handover = handover.clone();
    handover.from = Some(Jid::new("agent@cti.test/cti-host").unwrap());
    let out = b.on_message(handover.clone(), now);
    assert_eq!(
        kinds(&out),
        [
            "Delivered",
            "MessageReceived",
            "MessageReceived",
            "MessageReceived"
        ]
    );
    let ROption::RSome(info) = &out.events[0].call else {
        panic!()
    };
    assert_eq!(info.ani.as_str(), CUST);
    assert_eq!(lookup(&info.data, "transferred_from"), Some(ME));
    assert_eq!(out.events[1].text.as_str(), "hi");
    assert_eq!(out.events[2].party.as_str(), ME);
    assert_eq!(lookup(&out.events[3].attrs, "history"), Some("true"));
    let bid = out.events[0].call_id.to_string();
    b.execute(&cmd(CommandKind::ANSWER, &bid), true).unwrap();
    let mut s = cmd(CommandKind::SEND_MESSAGE, &bid);
    s.text = "agent2 here".into();
    assert_eq!(body(&b.prepare_send(&s).unwrap()).0, "alice@cti.test/phone");

    // A late message to the old agent is passed on, not offered again.
    let out = a.on_message(msg("alice@cti.test/phone", Some("still there?")), now);
    assert!(out.events.is_empty());
    let Stanza::Message(fwd) = &out.stanzas[0] else {
        panic!()
    };
    let mut fwd = fwd.clone();
    assert_eq!(fwd.to.as_ref().unwrap().to_string(), "agent2@cti.test");
    fwd.from = Some(Jid::new("agent@cti.test/cti-host").unwrap());
    let out = b.on_message(fwd, now);
    assert_eq!(kinds(&out), ["MessageReceived"]);
    assert_eq!(out.events[0].text.as_str(), "still there?");
    // The customer's departure, seen by the old agent, reaches the new one.
    let out = a.on_presence(presence("alice@cti.test/phone", PresenceType::Unavailable));
    let Stanza::Message(left) = &out.stanzas[0] else {
        panic!()
    };
    let mut left = left.clone();
    left.from = Some(Jid::new("agent@cti.test/cti-host").unwrap());
    let out = b.on_message(left, now);
    assert_eq!(
        kinds(&out),
        ["ParticipantLeft", "ConnectionCleared", "CallCleared"]
    );

    // An untrusted sender's hand-over is just a message from that sender.
    let mut c = core();
    handover.from = Some(Jid::new("mallory@evil.test/x").unwrap());
    let out = c.on_message(handover, now);
    let ROption::RSome(info) = &out.events[0].call else {
        panic!()
    };
    assert_eq!(info.ani.as_str(), "mallory@evil.test");
}

#[test]
fn history_is_bounded() {
    let mut c = core();
    let id = connected(&mut c);
    for i in 0..10 {
        c.sent(&id, &format!("line {i}"));
    }
    let mut t = cmd(CommandKind::BLIND_TRANSFER, &id);
    t.target = "agent2@cti.test".into();
    let (_, stanzas) = c.prepare_transfer(&t).unwrap();
    let Stanza::Message(m) = &stanzas[0] else {
        panic!()
    };
    let h = m.payloads.iter().find_map(Handover::parse).unwrap();
    assert_eq!(h.lines.len(), 3);
    assert_eq!(h.lines[2].1, "line 9");
}

#[test]
fn adopted_chats_keep_their_ids() {
    let mut c = core();
    let mut info = CallInfo::new(
        "xmpp-7",
        Direction::Inbound,
        CUST,
        ME,
        ConnectionState::Connected,
    );
    info.data.push(KeyValue::new("thread", "t9"));
    c.adopt(&[info]);
    let out = c.on_message(msg("alice@cti.test/x", Some("back")), Instant::now());
    assert_eq!(kinds(&out), ["MessageReceived"]);
    assert_eq!(out.events[0].call_id.as_str(), "xmpp-7");
    assert_eq!(out.events[0].state, ConnectionState::Connected);
    let out = c.on_message(msg("bob@cti.test/x", Some("new")), Instant::now());
    assert_eq!(out.events[0].call_id.as_str(), "xmpp-8");
}

#[test]
fn peers_match_accounts_and_domains() {
    let peers = vec!["agent1@cti.test".to_owned(), "*@team.test".to_owned()];
    assert!(peer_allowed(
        &peers,
        &BareJid::new("agent1@cti.test").unwrap()
    ));
    assert!(peer_allowed(&peers, &BareJid::new("x@team.test").unwrap()));
    assert!(!peer_allowed(
        &peers,
        &BareJid::new("agent2@cti.test").unwrap()
    ));
    assert!(!peer_allowed(
        &[],
        &BareJid::new("agent1@cti.test").unwrap()
    ));
}
