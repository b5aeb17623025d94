use std::time::Duration;

use cti_plugin_api::sdk::prelude::*;

use super::{Action, Dial, NewCall, Scenario, DEFAULT_NO_ANSWER_RING_MS};

fn parse(text: &str) -> Result<Scenario, PluginError> {
    Scenario::parse("scenario.toml", text)
}

/// The message of the refusal of `text`, which must be `BadSettings`.
fn refused(text: &str) -> String {
    match parse(text) {
        Ok(s) => panic!("accepted: {s:?}\n{text}"),
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::BAD_SETTINGS, "{e}");
            e.message.into_string()
        }
    }
}

fn step(body: &str) -> String {
    format!("[[step]]\n{body}\n")
}

const INBOUND: &str = "at_ms = 0\naction = \"inbound\"\ncall = \"c1\"";

#[test]
fn a_good_scenario_parses_into_steps_in_time_order() {
    let text = r#"
description = "every action"

[[step]]
at_ms = 2000
action = "far_hangup"
call = "c1"

[[step]]
at_ms = 0
action = "inbound"
call = "c1"
ani = "+14255550100"
dnis = "+18005550100"
data = { queue = "Sales", priority = 2, vip = true }
talk_secs = 30

[[step]]
at_ms = 500
action = "agent_state"
state = "NotReady(Break)"

[[step]]
at_ms = 100
action = "outbound"
call = "o1"
dnis = "+15550001111"

[[step]]
at_ms = 300
action = "busy"
call = "o2"
dnis = "+15550002222"

[[step]]
at_ms = 400
action = "no_answer"
call = "o3"
dnis = "+15550003333"

[[step]]
at_ms = 400
action = "no_answer"
call = "o4"
dnis = "+15550004444"
ring_ms = 100

[[step]]
at_ms = 2000
action = "far_hangup"
party = "+15550001111"
"#;
    let s = parse(text).expect("valid");
    assert_eq!(s.source, "scenario.toml");
    assert!(!s.repeat);
    let order: Vec<(u128, usize)> = s
        .steps
        .iter()
        .map(|st| (st.at.as_millis(), st.number))
        .collect();
    assert_eq!(
        order,
        [
            (0, 2),
            (100, 4),
            (300, 5),
            (400, 6),
            (400, 7),
            (500, 3),
            (2000, 1),
            (2000, 8)
        ],
        "time order; file order on ties"
    );
    assert_eq!(
        s.steps[0].action,
        Action::Inbound(NewCall {
            name: "c1".into(),
            ani: Some("+14255550100".into()),
            dnis: Some("+18005550100".into()),
            data: Some(vec![
                ("priority".into(), "2".into()),
                ("queue".into(), "Sales".into()),
                ("vip".into(), "true".into()),
            ]),
            talk_secs: Some(30.0),
        })
    );
    let Action::Outbound(o1, Dial::Auto) = &s.steps[1].action else {
        panic!("{:?}", s.steps[1]);
    };
    assert_eq!(
        (o1.name.as_str(), o1.dnis.as_deref()),
        ("o1", Some("+15550001111"))
    );
    assert!(matches!(s.steps[2].action, Action::Outbound(_, Dial::Busy)));
    assert_eq!(
        s.steps[3].action,
        Action::Outbound(
            NewCall {
                name: "o3".into(),
                ani: None,
                dnis: Some("+15550003333".into()),
                data: None,
                talk_secs: None,
            },
            Dial::NoAnswer(Duration::from_millis(DEFAULT_NO_ANSWER_RING_MS))
        )
    );
    assert!(matches!(
        s.steps[4].action,
        Action::Outbound(_, Dial::NoAnswer(d)) if d == Duration::from_millis(100)
    ));
    assert_eq!(
        s.steps[5].action,
        Action::AgentState(AgentState::NotReady("Break".into()))
    );
    assert_eq!(
        s.steps[6].action,
        Action::FarHangup {
            call: Some("c1".into()),
            party: None
        }
    );
    assert_eq!(
        s.steps[7].action,
        Action::FarHangup {
            call: None,
            party: Some("+15550001111".into())
        }
    );
}

#[test]
fn agent_states_a_switch_can_force() {
    for (text, want) in [
        ("Ready", AgentState::Ready),
        ("loggedout", AgentState::LoggedOut),
        ("NotReady( Lunch )", AgentState::NotReady("Lunch".into())),
    ] {
        let s = parse(&step(&format!(
            "at_ms = 1\naction = \"agent_state\"\nstate = \"{text}\""
        )))
        .expect(text);
        assert_eq!(s.steps[0].action, Action::AgentState(want));
    }
}

#[test]
fn empty_and_repeated_scenarios() {
    let s = parse("").expect("an empty scenario is valid");
    assert!(s.is_empty());
    let s = parse(&format!(
        "repeat = true\n{}{}",
        step(INBOUND),
        step("at_ms = 2500\naction = \"far_hangup\"\ncall = \"c1\"")
    ))
    .expect("valid");
    assert!(s.repeat);
    assert_eq!(s.period, Duration::from_millis(3_500), "last at_ms + 1 s");
    let s = parse(&format!(
        "repeat = true\nperiod_ms = 60000\n{}",
        step(INBOUND)
    ))
    .expect("valid");
    assert_eq!(s.period, Duration::from_secs(60));
}

#[test]
fn each_kind_of_mistake_names_the_file_the_step_and_the_problem() {
    let cases: &[(&str, &str)] = &[
        // The file as a whole.
        ("repeat = \"yes\"", "scenario.toml: repeat must be true or false"),
        ("speed = 2", "scenario.toml: unknown key \"speed\""),
        ("step = 3", "scenario.toml: step must be an array of tables"),
        ("step = [1]", "scenario.toml: step 1: must be a table"),
        ("description = 1", "scenario.toml: description must be a string"),
        (
            "period_ms = 10\n[[step]]\nat_ms = 0\naction = \"agent_state\"\nstate = \"Ready\"",
            "scenario.toml: period_ms needs repeat = true",
        ),
        (
            "repeat = true\nperiod_ms = 10\n[[step]]\nat_ms = 20\naction = \"agent_state\"\nstate = \"Ready\"",
            "scenario.toml: period_ms (10) must be positive and at least the last step's at_ms (20)",
        ),
        ("repeat = true\nperiod_ms = 0", "scenario.toml: period_ms (0) must be positive"),
        ("repeat = true\nperiod_ms = -5", "scenario.toml: period_ms must be a non-negative"),
        // Actions and keys.
        (
            "[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = \"a\"\n[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = \"b\"\n[[step]]\nat_ms = 1\naction = \"dance\"",
            "scenario.toml: step 3: unknown action \"dance\"",
        ),
        ("[[step]]\nat_ms = 0", "scenario.toml: step 1: missing action"),
        ("[[step]]\nat_ms = 0\naction = 7", "scenario.toml: step 1: action must be a string"),
        (
            "[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = \"c\"\ncolour = \"red\"",
            "scenario.toml: step 1: unknown key \"colour\"",
        ),
        (
            "[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = \"c\"\nring_ms = 5",
            "scenario.toml: step 1: key \"ring_ms\" does not apply to action \"inbound\"",
        ),
        (
            "[[step]]\nat_ms = 0\naction = \"agent_state\"\nstate = \"Ready\"\ncall = \"c\"",
            "scenario.toml: step 1: key \"call\" does not apply to action \"agent_state\"",
        ),
        // Values.
        ("[[step]]\naction = \"inbound\"\ncall = \"c\"", "scenario.toml: step 1: missing at_ms"),
        (
            "[[step]]\nat_ms = -1\naction = \"inbound\"\ncall = \"c\"",
            "scenario.toml: step 1: at_ms must be a non-negative whole number of milliseconds, not -1",
        ),
        (
            "[[step]]\nat_ms = \"soon\"\naction = \"inbound\"\ncall = \"c\"",
            "scenario.toml: step 1: at_ms must be a non-negative whole number of milliseconds, not \"soon\"",
        ),
        ("[[step]]\nat_ms = 1.5\naction = \"inbound\"\ncall = \"c\"", "step 1: at_ms must be"),
        ("[[step]]\nat_ms = 0\naction = \"inbound\"", "scenario.toml: step 1: missing call"),
        (
            "[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = \"a b\"",
            "scenario.toml: step 1: call \"a b\" must be at most 64 letters",
        ),
        ("[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = \"\"", "step 1: call must not be empty"),
        ("[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = 5", "step 1: call must be a string, not 5"),
        (
            "[[step]]\nat_ms = 0\naction = \"outbound\"\ncall = \"o\"",
            "scenario.toml: step 1: missing dnis",
        ),
        ("[[step]]\nat_ms = 0\naction = \"busy\"\ncall = \"o\"", "step 1: missing dnis"),
        (
            "[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = \"c\"\nani = \"+1 425\"",
            "step 1: ani \"+1 425\" must be one number",
        ),
        (
            "[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = \"c\"\ndata = \"Sales\"",
            "step 1: data must be a table",
        ),
        (
            "[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = \"c\"\ndata = { q = [1] }",
            "step 1: data.q must be a string, number or boolean",
        ),
        (
            "[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = \"c\"\ntalk_secs = -3",
            "step 1: talk_secs must be a non-negative number of seconds",
        ),
        (
            "[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = \"c\"\ntalk_secs = \"long\"",
            "step 1: talk_secs must be a non-negative number of seconds",
        ),
        (
            "[[step]]\nat_ms = 0\naction = \"no_answer\"\ncall = \"o\"\ndnis = \"1\"\nring_ms = 2.5",
            "step 1: ring_ms must be a non-negative whole number",
        ),
        ("[[step]]\nat_ms = 0\naction = \"agent_state\"", "step 1: missing state"),
        (
            "[[step]]\nat_ms = 0\naction = \"agent_state\"\nstate = \"Sleepy\"",
            "step 1: unknown state \"Sleepy\"",
        ),
        (
            "[[step]]\nat_ms = 0\naction = \"agent_state\"\nstate = \"Busy\"",
            "step 1: state Busy is derived by the desktop",
        ),
        (
            "[[step]]\nat_ms = 0\naction = \"agent_state\"\nstate = \"NotReady\"",
            "step 1: state \"NotReady\" needs a reason code",
        ),
        ("[[step]]\nat_ms = 0\naction = \"far_hangup\"", "step 1: far_hangup needs call (or party)"),
        (
            "[[step]]\nat_ms = 0\naction = \"far_hangup\"\nparty = \"*\"",
            "step 1: party = \"*\" (every far party) needs call",
        ),
        // Across steps.
        (
            "[[step]]\nat_ms = 0\naction = \"inbound\"\ncall = \"c1\"\n[[step]]\nat_ms = 5\naction = \"busy\"\ncall = \"c1\"\ndnis = \"1\"",
            "scenario.toml: step 2: call \"c1\" is already created by step 1",
        ),
        (
            "[[step]]\nat_ms = 0\naction = \"far_hangup\"\ncall = \"c9\"",
            "scenario.toml: step 1: far_hangup of call \"c9\", which no earlier step creates",
        ),
        (
            "[[step]]\nat_ms = 100\naction = \"far_hangup\"\ncall = \"c1\"\n[[step]]\nat_ms = 200\naction = \"inbound\"\ncall = \"c1\"",
            "scenario.toml: step 1: far_hangup of call \"c1\", which no earlier step creates",
        ),
    ];
    for (text, want) in cases {
        let got = refused(text);
        assert!(got.contains(want), "\n{text}\n got: {got}\nwant: {want}");
        assert!(got.starts_with("scenario.toml: "), "{got}");
    }
}

#[test]
fn a_syntax_error_names_line_and_column() {
    let got = refused("[[step]]\nat_ms = 0\naction = \"inbound\ncall = \"c\"\n");
    assert!(got.starts_with("scenario.toml:3:"), "{got}");
    assert!(!got.contains('\n'), "one line: {got}");
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let e = Scenario::load("/nonexistent/dir/morning.toml").expect_err("missing");
    assert_eq!(e.kind, ErrorKind::BAD_SETTINGS);
    assert!(
        e.message
            .starts_with("/nonexistent/dir/morning.toml: cannot read the scenario file: "),
        "{e}"
    );
    let e = Scenario::load("no/such/relative.toml").expect_err("missing");
    assert!(e.message.contains("relative paths start at "), "{e}");
}

#[test]
fn a_file_is_loaded_and_its_path_names_it() {
    let dir = std::env::temp_dir().join(format!("sim-scenario-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bad.toml");
    std::fs::write(&path, step("at_ms = 0\naction = \"dance\"")).expect("write");
    let name = path.display().to_string();
    let e = Scenario::load(&name).expect_err("bad");
    assert!(
        e.message
            .starts_with(&format!("{name}: step 1: unknown action \"dance\"")),
        "{e}"
    );
    std::fs::write(&path, step(INBOUND)).expect("write");
    let s = Scenario::load(&name).expect("good");
    assert_eq!((s.source.as_str(), s.steps.len()), (name.as_str(), 1));
    let _ = std::fs::remove_dir_all(&dir);
}
