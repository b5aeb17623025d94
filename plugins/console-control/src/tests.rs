use std::io;

use cti_plugin_api::{AgentView, WorkItemView, WorkState};

use super::*;

/// An output that keeps what is printed.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *lock(&self.0))).unwrap()
    }
}

/// An output whose reader went away.
struct ClosedPipe;

impl Write for ClosedPipe {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
}

type Submitted = Arc<Mutex<Vec<Command>>>;

fn console(out: Output, fail_submit: bool) -> (Console, Submitted) {
    let submitted: Submitted = Arc::default();
    let sink = Arc::clone(&submitted);
    let next = AtomicU64::new(100);
    let submit: SubmitFn = Arc::new(move |c| {
        if fail_submit {
            return Err(PluginError::new(ErrorKind::UNAVAILABLE, "host stopping"));
        }
        lock(&sink).push(c);
        Ok(next.fetch_add(1, Ordering::Relaxed))
    });
    let c = Console::with_parts("1001", false, false, out, submit, Arc::new(|_, _| {}));
    (c, submitted)
}

fn snapshot() -> DesktopSnapshot {
    DesktopSnapshot {
        seq: 0,
        agent: AgentView {
            agent_id: "1001".into(),
            state: AgentState::NotReady("Break".into()),
            pending: ROption::RNone,
        },
        calls: RVec::new(),
        sessions: RVec::new(),
        plugins: RVec::new(),
        reason_codes: RVec::from(vec![RString::from("Break"), RString::from("Lunch")]),
        dispositions: RVec::new(),
    }
}

fn view(id: &str, state: ConnectionState, allowed: &[CommandKind]) -> CallView {
    CallView {
        call_id: id.into(),
        connector: "sim".into(),
        channel: "voice".into(),
        direction: Direction::Inbound,
        ani: "5551234".into(),
        dnis: "8000".into(),
        state,
        parties: RVec::new(),
        allowed: Capabilities::from_kinds(allowed),
        muted: false,
        data: RVec::new(),
        started_ms: 0,
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

fn event(seq: u64, kind: EventKind) -> DesktopEvent {
    DesktopEvent {
        seq,
        kind,
        time_ms: 3_600_000 * 25 + 61_000 + seq * 1000, // 01:01:01 + seq s
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

fn call_event(seq: u64, kind: EventKind, call: CallView) -> DesktopEvent {
    DesktopEvent {
        call: ROption::RSome(RArc::new(call)),
        ..event(seq, kind)
    }
}

use CommandKind as K;
use ConnectionState as S;

#[test]
fn clock_is_utc_time_of_day() {
    let mut s = String::new();
    clock(&mut s, 3_661_001);
    assert_eq!(s, "01:01:01");
    s.clear();
    clock(&mut s, 86_400_000 + 59_999);
    assert_eq!(s, "00:00:59");
}

#[test]
fn formats_call_events() {
    let mut desk = Desk::new("1001", false);
    desk.reset(&snapshot());
    let line = desk.on_event(&call_event(
        1,
        EventKind::DELIVERED,
        view("c-1", S::Alerting, &[K::ANSWER, K::REJECT]),
    ));
    assert_eq!(
        line,
        "01:01:02 #1  Delivered         5551234 -> 8000 Alerting  [a]nswer [x]reject"
    );

    // A second ringing call: the bare keys now target it, call 1 needs `a1`.
    let line = desk.on_event(&call_event(
        2,
        EventKind::DELIVERED,
        view("c-2", S::Alerting, &[K::ANSWER, K::REJECT]),
    ));
    assert!(line.ends_with("Alerting  [a]nswer [x]reject"), "{line}");
    assert!(line.contains(" #2 "), "{line}");
    assert_eq!(
        desk.key_hints(1, desk.call(1).unwrap()),
        "[a1]nswer [x1]reject"
    );

    let mut established = view(
        "c-1",
        S::Connected,
        &[K::HANGUP, K::HOLD, K::BLIND_TRANSFER],
    );
    established.muted = true;
    let line = desk.on_event(&call_event(3, EventKind::ESTABLISHED, established));
    assert_eq!(
        line,
        "01:01:04 #1  Established       Connected muted  [h]angup h[o]ld [t]ransfer"
    );

    let mut cleared = view("c-1", S::Null, &[]);
    cleared.work.state = WorkState::WRAPPING;
    cleared.work.wrap_up_remaining_ms = 29_001;
    let mut ev = call_event(4, EventKind::CONNECTION_CLEARED, cleared);
    ev.party = "5551234".into();
    ev.cause = "normalClearing".into();
    assert_eq!(
        desk.on_event(&ev),
        "01:01:05 #1  ConnectionCleared Null party 5551234 (normalClearing) wrap-up 30s  end [w]rap-up"
    );

    // Removal frees number 1; the next call takes it, call 2 keeps 2.
    let line = desk.on_event(&call_event(
        5,
        EventKind::CALL_REMOVED,
        view("c-1", S::Null, &[]),
    ));
    assert_eq!(line, "01:01:06 #1  CallRemoved       Null");
    assert_eq!(desk.number_of("c-1"), None);
    desk.on_event(&call_event(
        6,
        EventKind::ORIGINATED,
        view("c-3", S::Initiated, &[]),
    ));
    assert_eq!(desk.number_of("c-3"), Some(1));
    assert_eq!(desk.number_of("c-2"), Some(2));
}

#[test]
fn formats_agent_and_command_events() {
    let mut desk = Desk::new("1001", false);
    desk.reset(&snapshot());
    let mut ev = event(1, EventKind::AGENT_STATE_CHANGED);
    ev.agent = ROption::RSome(AgentView {
        agent_id: "1001".into(),
        state: AgentState::Busy,
        pending: ROption::RSome(AgentState::NotReady("Lunch".into())),
    });
    ev.cause = "work".into();
    assert_eq!(
        desk.on_event(&ev),
        "01:01:02     AgentStateChanged agent Busy (pending NotReady(Lunch)) [work]"
    );
    assert_eq!(desk.agent().state, AgentState::Busy);

    desk.remember(7, "answer #1".into());
    let mut ev = event(2, EventKind::COMMAND_FAILED);
    ev.request_id = 7;
    ev.cause = "InvalidState".into();
    ev.text = "the call is not alerting".into();
    assert_eq!(
        desk.on_event(&ev),
        "01:01:03     CommandFailed     answer #1: InvalidState: the call is not alerting"
    );
    // Unknown request ids still show.
    ev.request_id = 8;
    assert!(desk.on_event(&ev).contains("request 8: InvalidState"));

    let mut ev = event(3, EventKind::PLUGIN_STATUS);
    ev.source = "sim".into();
    ev.text = "Running".into();
    assert_eq!(
        desk.on_event(&ev),
        "01:01:04     PluginStatus      sim Running"
    );

    assert_eq!(
        desk.on_event(&event(4, EventKind(999))),
        "01:01:05     Unknown(999)"
    );
}

#[test]
fn colour_only_when_asked() {
    let mut desk = Desk::new("1001", true);
    let line = desk.on_event(&call_event(1, EventKind::HELD, view("c", S::Held, &[])));
    assert!(line.contains(" \x1b[36mHeld\x1b[0m "), "{line:?}");
    let mut desk = Desk::new("1001", false);
    let line = desk.on_event(&call_event(1, EventKind::HELD, view("c", S::Held, &[])));
    assert!(!line.contains('\x1b'));
}

#[test]
fn keys_become_commands() {
    let out = Captured::default();
    let (mut c, submitted) = console(Box::new(out.clone()), false);
    c.start(&snapshot()).unwrap();
    let header = out.take();
    assert!(header.starts_with("CTI console | agent 1001 | NotReady(Break) | keys: a answer"));
    assert_eq!(header.lines().count(), 1);

    // Nothing to answer yet: nothing submitted, the agent is told.
    c.handle_line("a\n");
    assert!(lock(&submitted).is_empty());
    assert!(out.take().contains("! no ringing call"));

    c.on_event(&call_event(
        1,
        EventKind::DELIVERED,
        view("c-1", S::Alerting, &[K::ANSWER]),
    ))
    .unwrap();
    c.handle_line("a");
    c.on_event(&call_event(
        2,
        EventKind::ESTABLISHED,
        view("c-1", S::Connected, &[K::HOLD]),
    ))
    .unwrap();
    c.handle_line("o");
    c.on_event(&call_event(
        3,
        EventKind::HELD,
        view("c-1", S::Held, &[K::RETRIEVE]),
    ))
    .unwrap();
    c.handle_line("o1 t 2002");
    c.handle_line("d 5550000 h");
    c.handle_line("r n");
    c.handle_line("n lunch l");
    c.handle_line("x");

    let got: Vec<(CommandKind, String, String, Option<AgentState>)> = lock(&submitted)
        .iter()
        .map(|c| {
            (
                c.kind,
                c.call_id.to_string(),
                c.target.to_string(),
                c.agent_state.clone().into_option(),
            )
        })
        .collect();
    let none = || String::new();
    assert_eq!(
        got,
        vec![
            (K::ANSWER, "c-1".into(), none(), None),
            (K::HOLD, "c-1".into(), none(), None),
            (K::RETRIEVE, "c-1".into(), none(), None),
            (K::BLIND_TRANSFER, "c-1".into(), "2002".into(), None),
            (K::MAKE_CALL, none(), "5550000".into(), None),
            (K::HANGUP, "c-1".into(), none(), None),
            (K::SET_AGENT_STATE, none(), none(), Some(AgentState::Ready)),
            (
                K::SET_AGENT_STATE,
                none(),
                none(),
                Some(AgentState::NotReady("Break".into()))
            ),
            // The configured spelling of the reason is used.
            (
                K::SET_AGENT_STATE,
                none(),
                none(),
                Some(AgentState::NotReady("Lunch".into()))
            ),
            (
                K::SET_AGENT_STATE,
                none(),
                none(),
                Some(AgentState::LoggedOut)
            ),
        ]
    );
    let printed = out.take();
    assert!(printed.contains("> answer #1 (request 100)"), "{printed}");
    assert!(
        printed.contains("> transfer #1 to 2002 (request 103)"),
        "{printed}"
    );
    assert!(printed.contains("! no ringing call"), "{printed}");

    // The outcome line names the request.
    let mut ev = event(4, EventKind::COMMAND_FAILED);
    ev.request_id = 103;
    ev.cause = "Refused".into();
    c.on_event(&ev).unwrap();
    assert!(out
        .take()
        .contains("CommandFailed     transfer #1 to 2002: Refused"));

    // Help, bad keys, unknown call numbers.
    c.handle_line("?");
    let help = out.take();
    assert!(help.contains("reasons: Break, Lunch"), "{help}");
    assert!(
        help.contains("#1  inbound 5551234 -> 8000 Held  unh[o]ld"),
        "{help}"
    );
    c.handle_line("q");
    assert!(out.take().contains("! unknown key 'q'"));
    c.handle_line("h9 r");
    assert!(out.take().contains("! no call #9"));
    assert_eq!(lock(&submitted).len(), 10, "nothing after a refused key");

    // After stop, typed lines submit nothing.
    c.stop().unwrap();
    c.handle_line("r");
    assert_eq!(lock(&submitted).len(), 10);
}

#[test]
fn submit_errors_are_shown() {
    let out = Captured::default();
    let (mut c, _) = console(Box::new(out.clone()), true);
    c.start(&snapshot()).unwrap();
    c.handle_line("r");
    assert!(out
        .take()
        .contains("! set agent Ready: Unavailable: host stopping"));
}

#[test]
fn resync_redraws_and_keeps_numbers() {
    let out = Captured::default();
    let (mut c, _) = console(Box::new(out.clone()), false);
    c.start(&snapshot()).unwrap();
    for (seq, id) in [(1, "c-1"), (2, "c-2")] {
        c.on_event(&call_event(
            seq,
            EventKind::DELIVERED,
            view(id, S::Alerting, &[]),
        ))
        .unwrap();
    }
    out.take();
    let mut snap = snapshot();
    snap.seq = 50;
    snap.agent.state = AgentState::Busy;
    snap.calls = RVec::from(vec![
        RArc::new(view("c-2", S::Connected, &[K::HANGUP])),
        RArc::new(view("c-9", S::Alerting, &[K::ANSWER])),
    ]);
    c.resync(&snap).unwrap();
    let printed = out.take();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines[0],
        "-- resynchronised at seq 50 (events were missed) | agent Busy"
    );
    assert!(
        lines[1].contains("#1  inbound 5551234 -> 8000 Alerting  [a]nswer"),
        "{printed}"
    );
    assert!(
        lines[2].contains("#2  inbound 5551234 -> 8000 Connected  [h]angup"),
        "{printed}"
    );
    assert_eq!(lines.len(), 3);
}

#[test]
fn closed_stdout_never_panics() {
    let (mut c, _) = console(Box::new(ClosedPipe), false);
    c.start(&snapshot()).unwrap();
    c.on_event(&call_event(
        1,
        EventKind::DELIVERED,
        view("c-1", S::Alerting, &[]),
    ))
    .unwrap();
    c.handle_line("a ?");
    c.resync(&snapshot()).unwrap();
    c.stop().unwrap();
}

#[test]
fn settings() {
    let s: ConsoleSettings = Settings::from_toml("").parse().unwrap();
    assert!(s.read_stdin);
    assert_eq!(s.color, ColorMode::Auto);
    let s: ConsoleSettings = Settings::from_toml("read_stdin = false\ncolor = \"never\"")
        .parse()
        .unwrap();
    assert!(!s.read_stdin);
    assert_eq!(s.color, ColorMode::Never);
    assert!(!ColorMode::Never.resolve());
    assert!(ColorMode::Always.resolve());
    for bad in [
        "color = \"sometimes\"",
        "read_stdin = 1",
        "colour = \"never\"",
    ] {
        let err = Settings::from_toml(bad)
            .parse::<ConsoleSettings>()
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BAD_SETTINGS, "{bad}");
    }
}

fn chat(id: &str, state: ConnectionState, allowed: &[CommandKind]) -> CallView {
    let mut v = view(id, state, allowed);
    v.channel = "chat".into();
    v.ani = "alice@example.com".into();
    v.dnis = "agent@example.com".into();
    v
}

#[test]
fn chats_show_as_a_transcript() {
    let mut desk = Desk::new("1001", false);
    desk.reset(&snapshot());
    let line = desk.on_event(&call_event(
        1,
        EventKind::DELIVERED,
        chat("xmpp-1", S::Alerting, &[K::ANSWER, K::REJECT]),
    ));
    assert!(
        line.contains("alice@example.com -> agent@example.com Alerting"),
        "{line}"
    );
    let mut ev = call_event(
        2,
        EventKind::MESSAGE_RECEIVED,
        chat("xmpp-1", S::Alerting, &[K::ANSWER, K::REJECT]),
    );
    ev.party = "alice@example.com".into();
    ev.text = "Hello, I need help".into();
    assert_eq!(
        desk.on_event(&ev),
        "01:01:03 #1  MessageReceived   alice@example.com: Hello, I need help"
    );
    let connected = chat("xmpp-1", S::Connected, &[K::HANGUP, K::SEND_MESSAGE]);
    let line = desk.on_event(&call_event(3, EventKind::ESTABLISHED, connected.clone()));
    assert!(line.ends_with("[h]angup [s] <text> reply"), "{line}");
    let mut ev = call_event(4, EventKind::MESSAGE_SENT, connected.clone());
    ev.party = "agent@example.com".into();
    ev.text = "Hi, how can I help?".into();
    ev.attrs.push(KeyValue::new("truncated", "true"));
    assert_eq!(
        desk.on_event(&ev),
        "01:01:05 #1  MessageSent       you: Hi, how can I help? [cut]"
    );
    let mut ev = call_event(5, EventKind::TYPING, connected.clone());
    ev.party = "alice@example.com".into();
    ev.text = "composing".into();
    assert_eq!(
        desk.on_event(&ev),
        "01:01:06 #1  Typing            alice@example.com is composing"
    );
    let mut ev = call_event(6, EventKind::PARTICIPANT_LEFT, connected);
    ev.party = "alice@example.com".into();
    assert!(desk.on_event(&ev).contains("alice@example.com left"));
}

#[test]
fn s_sends_the_message_to_the_current_chat() {
    let out = Captured::default();
    let (c, submitted) = console(Box::new(out.clone()), false);
    let mut desk_snapshot = snapshot();
    desk_snapshot.calls = RVec::from(vec![
        RArc::new(view("v-1", S::Connected, &[K::HANGUP, K::HOLD])),
        RArc::new(chat("xmpp-1", S::Connected, &[K::HANGUP, K::SEND_MESSAGE])),
        RArc::new(chat("xmpp-2", S::Alerting, &[K::ANSWER])),
    ]);
    lock(&c.shared.desk).reset(&desk_snapshot);
    c.handle_line("s Hello there, Alice");
    c.handle_line("s2   second  line ");
    c.handle_line("s1 not a chat");
    let cmds = lock(&submitted).clone();
    assert_eq!(cmds.len(), 3);
    assert_eq!(cmds[0].kind, K::SEND_MESSAGE);
    assert_eq!(cmds[0].call_id.as_str(), "xmpp-1");
    assert_eq!(cmds[0].text.as_str(), "Hello there, Alice");
    assert_eq!(cmds[1].call_id.as_str(), "xmpp-1");
    assert_eq!(cmds[1].text.as_str(), "second  line");
    // Call 1 is the voice call: the desktop refuses it, the console sends it as asked.
    assert_eq!(cmds[2].call_id.as_str(), "v-1");
    let printed = out.take();
    assert!(printed.contains("send on #2"), "{printed}");
    c.handle_line("s");
    assert!(out.take().contains("s needs a message"));
}
