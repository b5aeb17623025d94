//! Scripted scenarios: a TOML file of timed steps the simulator plays
//! instead of (or on top of) its random calls, so a flow is reproducible.
//!
//! ```toml
//! description = "one caller who hangs up"   # optional, ignored
//! repeat = false                            # optional: loop the steps
//! # period_ms = 60000                       # with repeat: length of one pass
//!
//! [[step]]
//! at_ms = 0                  # milliseconds from start (of the pass)
//! action = "inbound"         # a call to the agent rings (Delivered)
//! call = "c1"                # the scenario's name for it; its id is "scn-c1"
//! ani = "+14255550100"       # optional: a random number after ani_prefix
//! dnis = "+18005550100"      # optional: the settings' dnis
//! data = { queue = "Sales" } # optional: the settings' call_data
//! talk_secs = 30             # optional: the far end hangs up 30 s after the
//!                            # answer (0 = never); default: talk_time_secs
//!
//! [[step]]
//! at_ms = 2000
//! action = "far_hangup"      # the far end of c1 hangs up, whatever the state
//! call = "c1"                # (ConnectionCleared with the far party's number)
//! # party = "+1555…"         # optional: another far party of the call (a
//!                            # conference), or "*" for all of them
//! ```
//!
//! The cause of a far end's `ConnectionCleared` says what it was doing:
//! `CallAbandoned` (an inbound call still ringing), `CallRejected` (an
//! outbound call still ringing), `NormalClearing` (connected or held).
//!
//! Actions and their keys (`at_ms` and `action` always):
//!
//! | action | keys | what happens |
//! |---|---|---|
//! | `inbound` | `call`, `ani`?, `dnis`?, `data`?, `talk_secs`? | `Delivered` (Alerting); abandons after `abandon_after_secs` if set |
//! | `outbound` | `call`, `dnis`, `data`?, `talk_secs`? | placed by the switch for the agent (preview dialling): `Originated`, `Delivered`, `Established` like `MakeCall` (and, like it, busy when `dnis` ends in `486`) |
//! | `busy` | `call`, `dnis`, `data`? | `Originated`, then `Failed` (cause `Busy`) + `CallCleared` |
//! | `no_answer` | `call`, `dnis`, `data`?, `ring_ms`? | `Originated`, `Delivered`, then after `ring_ms` (default 5000) of ringing `Failed` (cause `NoAnswer`) + `CallCleared` |
//! | `far_hangup` | `call`?, `party`? (one at least) | the far party leaves (see above); nothing when the call is already over |
//! | `agent_state` | `state` | the switch forces an agent state: `AgentStateChanged` (cause `switch`) |
//!
//! Steps run in `at_ms` order (file order on ties). A `far_hangup` names a
//! call an earlier step created; when that call was merged into a
//! conference, its party leaves the conference. With `repeat = true` the
//! steps start again every `period_ms` (default: the last `at_ms` + 1000);
//! calls of later passes get fresh ids (`scn-c1-2`, `scn-c1-3`, …), as does a
//! call whose id is still taken.
//!
//! Every mistake is refused when the connector is built, naming the file,
//! the step (its number in the file, from 1) and the problem:
//! `scenario.toml: step 3: unknown action "dance"`.

use std::{collections::BTreeMap, time::Duration};

use cti_plugin_api::sdk::prelude::*;

/// The default ringing time of a `no_answer` step.
pub const DEFAULT_NO_ANSWER_RING_MS: u64 = 5_000;

/// The pause between two passes of a repeated scenario without `period_ms`.
pub const DEFAULT_REPEAT_PAUSE_MS: u64 = 1_000;

/// How the called party of an outbound call behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dial {
    /// Answers, unless the number ends in `486` (busy), as `MakeCall`.
    Auto,
    /// Busy.
    Busy,
    /// Rings for this long, never answers.
    NoAnswer(Duration),
}

/// A new call placed by a step.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCall {
    /// The scenario's name for the call.
    pub name: String,
    /// Inbound: the caller (`None`: random). Outbound: unused.
    pub ani: Option<String>,
    /// Inbound: the called number (`None`: the settings'). Outbound: the
    /// number called.
    pub dnis: Option<String>,
    /// Attached data (`None`: inbound calls get the settings' `call_data`,
    /// outbound ones none).
    pub data: Option<Vec<(String, String)>>,
    /// Seconds from the answer until the far end hangs up (0: never;
    /// `None`: the settings' `talk_time_secs`).
    pub talk_secs: Option<f64>,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A call to the agent rings.
    Inbound(NewCall),
    /// A call placed by the switch for the agent.
    Outbound(NewCall, Dial),
    /// A far party hangs up.
    FarHangup {
        /// The scenario's call name.
        call: Option<String>,
        /// The party (`*` = all of them); `None` = the call's own far party.
        party: Option<String>,
    },
    /// The switch forces an agent state.
    AgentState(AgentState),
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// When, from the start of the pass.
    pub at: Duration,
    /// Its number in the file, from 1.
    pub number: usize,
    /// What it does.
    pub action: Action,
}

/// A parsed scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The file it came from (for messages).
    pub source: String,
    /// True when the steps loop.
    pub repeat: bool,
    /// The length of one pass (with `repeat`).
    pub period: Duration,
    /// The steps in time order (file order on ties).
    pub steps: Vec<Step>,
}

const ACTIONS: &str = "inbound, outbound, busy, no_answer, far_hangup, agent_state";
const TOP_KEYS: &str = "description, repeat, period_ms, step";
const STEP_KEYS: &[&str] = &[
    "at_ms",
    "action",
    "call",
    "ani",
    "dnis",
    "data",
    "talk_secs",
    "ring_ms",
    "party",
    "state",
];

fn bad_settings(message: String) -> PluginError {
    PluginError::new(ErrorKind::BAD_SETTINGS, message)
}

impl Scenario {
    /// Reads and parses a scenario file; a relative path starts at the
    /// current directory.
    ///
    /// # Errors
    /// `BadSettings` naming the file (and the step) and the problem.
    pub fn load(path: &str) -> Result<Self, PluginError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let cwd = std::env::current_dir()
                .map(|d| format!(" (relative paths start at {})", d.display()))
                .unwrap_or_default();
            bad_settings(format!("{path}: cannot read the scenario file: {e}{cwd}"))
        })?;
        Self::parse(path, &text)
    }

    /// Parses the text of a scenario; `source` names it in messages.
    ///
    /// # Errors
    /// `BadSettings` naming the source (and the step) and the problem.
    pub fn parse(source: &str, text: &str) -> Result<Self, PluginError> {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| bad_settings(format!("{source}:{}", syntax_error(text, &e))))?;
        parse(source, &table).map_err(|e| bad_settings(format!("{source}: {e}")))
    }

    /// True when there is nothing to play.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

fn parse(source: &str, table: &toml::Table) -> Result<Scenario, String> {
    let mut repeat = false;
    let mut period_ms = None;
    let mut raw_steps: &[toml::Value] = &[];
    for (key, value) in table {
        match key.as_str() {
            "description" => {
                if !value.is_str() {
                    return Err("description must be a string".to_owned());
                }
            }
            "repeat" => {
                repeat = value
                    .as_bool()
                    .ok_or_else(|| format!("repeat must be true or false, not {value}"))?;
            }
            "period_ms" => period_ms = Some(non_negative_ms("period_ms", value)?),
            "step" => {
                raw_steps = value
                    .as_array()
                    .map(Vec::as_slice)
                    .ok_or("step must be an array of tables: write each one as [[step]]")?;
            }
            other => return Err(format!("unknown key \"{other}\" (expected {TOP_KEYS})")),
        }
    }
    let mut steps = Vec::with_capacity(raw_steps.len());
    for (i, raw) in raw_steps.iter().enumerate() {
        let number = i + 1;
        let table = raw.as_table().ok_or_else(|| {
            format!("step {number}: must be a table: write each step as [[step]]")
        })?;
        steps.push(parse_step(number, table).map_err(|e| format!("step {number}: {e}"))?);
    }
    // A stable sort: steps at the same time keep their file order.
    steps.sort_by_key(|s| s.at);
    check_names(&steps)?;
    let last = steps.last().map_or(0, |s| s.at.as_millis());
    let period = match (repeat, period_ms) {
        (false, Some(_)) => return Err("period_ms needs repeat = true".to_owned()),
        (false, None) => Duration::ZERO,
        (true, Some(p)) if p == 0 || u128::from(p) < last => {
            return Err(format!(
                "period_ms ({p}) must be positive and at least the last step's at_ms ({last})"
            ))
        }
        (true, Some(p)) => Duration::from_millis(p),
        (true, None) => Duration::from_millis(
            u64::try_from(last)
                .unwrap_or(u64::MAX)
                .saturating_add(DEFAULT_REPEAT_PAUSE_MS),
        ),
    };
    Ok(Scenario {
        source: source.to_owned(),
        repeat,
        period,
        steps,
    })
}

/// `line:column: message` of a TOML syntax error, on one line (a bare
/// ` message` without a position).
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{line}:{column}: {message}")
        }
        None => format!(" {message}"),
    }
}

/// The keys each action accepts besides `at_ms` and `action`.
fn keys_of(action: &str) -> &'static [&'static str] {
    match action {
        "inbound" => &["call", "ani", "dnis", "data", "talk_secs"],
        "outbound" => &["call", "dnis", "data", "talk_secs"],
        "busy" => &["call", "dnis", "data"],
        "no_answer" => &["call", "dnis", "data", "ring_ms"],
        "far_hangup" => &["call", "party"],
        "agent_state" => &["state"],
        _ => &[],
    }
}

fn parse_step(number: usize, t: &toml::Table) -> Result<Step, String> {
    let action = match t.get("action") {
        None => return Err(format!("missing action (one of {ACTIONS})")),
        Some(v) => v
            .as_str()
            .ok_or_else(|| format!("action must be a string (one of {ACTIONS}), not {v}"))?,
    };
    if keys_of(action).is_empty() {
        return Err(format!(
            "unknown action \"{action}\" (expected one of {ACTIONS})"
        ));
    }
    for key in t.keys() {
        let k = key.as_str();
        if k == "at_ms" || k == "action" || keys_of(action).contains(&k) {
            continue;
        }
        return Err(if STEP_KEYS.contains(&k) {
            format!("key \"{k}\" does not apply to action \"{action}\"")
        } else {
            format!("unknown key \"{k}\"")
        });
    }
    let at = match t.get("at_ms") {
        None => return Err("missing at_ms (milliseconds from the start)".to_owned()),
        Some(v) => Duration::from_millis(non_negative_ms("at_ms", v)?),
    };
    let new_call = |t: &toml::Table, dnis_required: bool| -> Result<NewCall, String> {
        let name = call_name(t)?.ok_or("missing call (the scenario's name for the call)")?;
        let dnis = number_of(t, "dnis")?;
        if dnis_required && dnis.is_none() {
            return Err("missing dnis (the number called)".to_owned());
        }
        Ok(NewCall {
            name,
            ani: number_of(t, "ani")?,
            dnis,
            data: data_of(t)?,
            talk_secs: match t.get("talk_secs") {
                None => None,
                Some(v) => Some(seconds("talk_secs", v)?),
            },
        })
    };
    let action = match action {
        "inbound" => Action::Inbound(new_call(t, false)?),
        "outbound" => Action::Outbound(new_call(t, true)?, Dial::Auto),
        "busy" => Action::Outbound(new_call(t, true)?, Dial::Busy),
        "no_answer" => {
            let ring = match t.get("ring_ms") {
                None => DEFAULT_NO_ANSWER_RING_MS,
                Some(v) => non_negative_ms("ring_ms", v)?,
            };
            Action::Outbound(
                new_call(t, true)?,
                Dial::NoAnswer(Duration::from_millis(ring)),
            )
        }
        "far_hangup" => {
            let call = call_name(t)?;
            let party = number_of(t, "party")?;
            if call.is_none() && party.is_none() {
                return Err("far_hangup needs call (or party)".to_owned());
            }
            if call.is_none() && party.as_deref() == Some("*") {
                return Err("party = \"*\" (every far party) needs call".to_owned());
            }
            Action::FarHangup { call, party }
        }
        _ => Action::AgentState(agent_state_of(t)?),
    };
    Ok(Step { at, number, action })
}

/// Creating steps name each call once per pass; a `far_hangup` names a call
/// created by an earlier step.
fn check_names(steps: &[Step]) -> Result<(), String> {
    let mut created: BTreeMap<&str, usize> = BTreeMap::new();
    for step in steps {
        match &step.action {
            Action::Inbound(c) | Action::Outbound(c, _) => {
                if let Some(first) = created.insert(&c.name, step.number) {
                    return Err(format!(
                        "step {}: call \"{}\" is already created by step {first}",
                        step.number, c.name
                    ));
                }
            }
            Action::FarHangup {
                call: Some(name), ..
            } if !created.contains_key(name.as_str()) => {
                return Err(format!(
                    "step {}: far_hangup of call \"{name}\", which no earlier step creates",
                    step.number
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn non_negative_ms(key: &str, v: &toml::Value) -> Result<u64, String> {
    v.as_integer()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| {
            format!("{key} must be a non-negative whole number of milliseconds, not {v}")
        })
}

fn seconds(key: &str, v: &toml::Value) -> Result<f64, String> {
    let secs = match v {
        toml::Value::Integer(n) => *n as f64,
        toml::Value::Float(f) => *f,
        _ => f64::NAN,
    };
    if secs.is_finite() && secs >= 0.0 && Duration::try_from_secs_f64(secs).is_ok() {
        Ok(secs)
    } else {
        Err(format!(
            "{key} must be a non-negative number of seconds, not {v}"
        ))
    }
}

fn string_of(t: &toml::Table, key: &str) -> Result<Option<String>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
        Some(toml::Value::String(_)) => Err(format!("{key} must not be empty")),
        Some(v) => Err(format!("{key} must be a string, not {v}")),
    }
}

fn number_of(t: &toml::Table, key: &str) -> Result<Option<String>, String> {
    let n = string_of(t, key)?;
    if let Some(n) = &n {
        if n.chars().any(|c| c.is_whitespace() || c == ',') {
            return Err(format!(
                "{key} \"{n}\" must be one number or address (no spaces or commas)"
            ));
        }
    }
    Ok(n)
}

fn call_name(t: &toml::Table) -> Result<Option<String>, String> {
    let name = string_of(t, "call")?;
    if let Some(n) = &name {
        let ok = n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            return Err(format!(
                "call \"{n}\" must be at most 64 letters, digits, '_', '-' or '.'"
            ));
        }
    }
    Ok(name)
}

fn data_of(t: &toml::Table) -> Result<Option<Vec<(String, String)>>, String> {
    let Some(v) = t.get("data") else {
        return Ok(None);
    };
    let table = v
        .as_table()
        .ok_or_else(|| format!("data must be a table such as {{ queue = \"Sales\" }}, not {v}"))?;
    table
        .iter()
        .map(|(k, v)| {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                    v.to_string()
                }
                _ => {
                    return Err(format!(
                        "data.{k} must be a string, number or boolean, not {v}"
                    ))
                }
            };
            Ok((k.clone(), text))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn agent_state_of(t: &toml::Table) -> Result<AgentState, String> {
    let text =
        string_of(t, "state")?.ok_or("missing state (Ready, LoggedOut or NotReady(Reason))")?;
    match AgentState::parse(&text) {
        Some(s @ (AgentState::Ready | AgentState::LoggedOut)) => Ok(s),
        Some(AgentState::NotReady(reason)) if !reason.is_empty() => {
            Ok(AgentState::NotReady(reason))
        }
        Some(AgentState::NotReady(_)) => Err(format!(
            "state \"{text}\" needs a reason code, as in NotReady(Break)"
        )),
        Some(s @ (AgentState::Busy | AgentState::WorkingAfterCall)) => Err(format!(
            "state {} is derived by the desktop from the agent's work; a switch forces Ready, LoggedOut or NotReady(Reason)",
            s.name()
        )),
        None => Err(format!(
            "unknown state \"{text}\" (expected Ready, LoggedOut or NotReady(Reason))"
        )),
    }
}

#[cfg(test)]
mod tests;
