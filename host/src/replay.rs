//! `cti-host replay RECORDING --manifest MANIFEST`: drives the desktop
//! manager with what a recording says happened — connector events, agent
//! state reports, link changes, commands submitted by controls and `ctl`,
//! the connectors' answers, timers that fired — with no phone system, and
//! writes the desktop events it produces. Replaying a recording reproduces
//! the same desktop events in the same order (times aside), so a customer's
//! recording becomes a regression test: `--compare` exits 1 at the first
//! difference.
//!
//! The desktop runs synchronously here (one input at a time, no clock):
//! connectors are virtual (their answers come from the recording) and the
//! manifest's controls run as usual. Interceptors are not asked: a command
//! whose recorded outcome came from an interceptor (a veto, a replace
//! owner's answer) ends with that outcome at the point the recording shows
//! it, and any other intercepted command goes on to its connector at once.
//! Plugin restarts and reloads are reported, not reproduced.

use std::{
    collections::HashSet,
    fs,
    io::{BufRead, BufReader, Write},
    path::Path,
    process::ExitCode,
};

use abi_stable::std_types::{ROption, RVec};
use cti_plugin_api::{
    sdk::json, AgentState, CallInfo, Command, CommandKind, ConnectionState, ConnectorEvent,
    Direction, ErrorKind, EventKind, KeyValue, Outcome, PluginError,
};
use serde_json::Value;

use crate::{
    app,
    desktop::{DesktopMsg, ReplayTimer},
    plugin::CommandResult,
};

/// Requesters whose commands the desktop makes itself (not re-submitted).
const INTERNAL: [&str; 4] = ["auto-answer", "capacity", "ring-timeout", "desktop"];

/// Kinds that a replay cannot reproduce (left out of comparisons).
const NOT_REPLAYED: [&str; 4] = [
    "PluginStatus",
    "PluginReloaded",
    "PluginReloadFailed",
    "Resync",
];

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn attr<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get("attrs").map(|a| text(a, key)).unwrap_or("")
}

fn pairs(v: Option<&Value>, skip: &[&str]) -> RVec<KeyValue> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !skip.contains(&k.as_str()))
                .map(|(k, v)| KeyValue::new(k.as_str(), v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

fn state(s: &str) -> ConnectionState {
    ConnectionState::parse(s).unwrap_or(ConnectionState::Null)
}

/// One recorded line turned into what to do with it.
enum Input {
    Msg(Box<DesktopMsg>),
    Timer(ReplayTimer),
    /// A command an interceptor held: on to its connector (`None`), or
    /// ended with the recorded result.
    Intercepted(u64, Option<CommandResult>),
    Skip,
}

struct Reader<'a> {
    connectors: &'a [String],
    seen_calls: HashSet<String>,
    /// Requests whose outcome came from an interceptor (a veto, a failure,
    /// a replace owner): the rest went on to their connector.
    by_interceptor: HashSet<u64>,
    /// An input that follows the one just read.
    then: Option<Input>,
}

/// The recorded outcome `v` (`CommandCompleted` / `CommandFailed`) as a
/// command result.
fn recorded_result(v: &Value) -> CommandResult {
    if text(v, "event") == "CommandCompleted" {
        Ok(Outcome {
            call_id: attr(v, "new_call_id").into(),
            detail: text(v, "text").into(),
        })
    } else {
        Err(PluginError::new(
            ErrorKind::parse(text(v, "cause")).unwrap_or(ErrorKind::INTERNAL),
            text(v, "text"),
        ))
    }
}

impl Reader<'_> {
    fn connector(&self, name: &str) -> Option<usize> {
        self.connectors.iter().position(|c| c == name)
    }

    fn input(&mut self, v: &Value) -> Result<Input, String> {
        let event = text(v, "event");
        let source = text(v, "source");
        let request_id = v.get("request_id").and_then(Value::as_u64).unwrap_or(0);
        Ok(match event {
            "CommandRequested" => {
                let requester = attr(v, "requester");
                if INTERNAL.contains(&requester) {
                    return Ok(Input::Skip);
                }
                let kind = CommandKind::parse(attr(v, "command"))
                    .ok_or_else(|| format!("unknown command \"{}\"", attr(v, "command")))?;
                let mut command = Command::new(kind, attr(v, "call_id"));
                command.other_call_id = attr(v, "other_call_id").into();
                command.target = attr(v, "target").into();
                command.text = attr(v, "text").into();
                command.connector = attr(v, "connector").into();
                if !attr(v, "agent_state").is_empty() {
                    let s = AgentState::parse(attr(v, "agent_state"))
                        .ok_or_else(|| format!("bad agent_state \"{}\"", attr(v, "agent_state")))?;
                    command.agent_state = ROption::RSome(s);
                }
                if let Some(a) = v.get("attrs").and_then(Value::as_object) {
                    for (k, val) in a {
                        if let Some(k) = k.strip_prefix("attr.") {
                            command
                                .attrs
                                .push(KeyValue::new(k, val.as_str().unwrap_or_default()));
                        }
                    }
                }
                let submit = Input::Msg(Box::new(DesktopMsg::Submit {
                    source: requester.to_owned(),
                    request_id,
                    command,
                    reply: None,
                }));
                if !self.by_interceptor.contains(&request_id) {
                    // Let through by every interceptor (if any held it).
                    self.then = Some(Input::Intercepted(request_id, None));
                }
                submit
            }
            "CommandCompleted" | "CommandFailed" => match attr(v, "via") {
                "connector" => {
                    let Some(connector) = self.connector(source) else {
                        return Ok(Input::Skip);
                    };
                    Input::Msg(Box::new(DesktopMsg::Outcome {
                        connector,
                        request_id,
                        result: recorded_result(v),
                    }))
                }
                "interceptor" => Input::Intercepted(request_id, Some(recorded_result(v))),
                "timeout" => Input::Timer(ReplayTimer::CommandDeadline(request_id)),
                _ => Input::Skip,
            },
            "ConnectorStatus" => {
                let Some(connector) = self.connector(source) else {
                    return Ok(Input::Skip);
                };
                let kind = match text(v, "text") {
                    "Connected" => EventKind::LINK_UP,
                    "Disconnected" => EventKind::LINK_DOWN,
                    _ => EventKind::LINK_RECONNECTING,
                };
                let mut ev = ConnectorEvent::new(kind, "", ConnectionState::Null);
                ev.cause = text(v, "cause").into();
                Input::Msg(Box::new(DesktopMsg::Event {
                    connector,
                    event: ev,
                }))
            }
            "AgentStateChanged" => {
                let reported = attr(v, "reported");
                let (Some(connector), false) = (self.connector(source), reported.is_empty()) else {
                    return Ok(Input::Skip);
                };
                let mut ev =
                    ConnectorEvent::new(EventKind::AGENT_STATE_CHANGED, "", ConnectionState::Null);
                let s = AgentState::parse(reported)
                    .ok_or_else(|| format!("bad reported state \"{reported}\""))?;
                ev.agent_state = ROption::RSome(s);
                Input::Msg(Box::new(DesktopMsg::Event {
                    connector,
                    event: ev,
                }))
            }
            "WorkItem" => {
                let cause = text(v, "cause");
                let call = text(v, "call_id").into();
                if cause == "wrap-up time is over" {
                    Input::Timer(ReplayTimer::WrapUpEnd(call))
                } else if cause.starts_with("not answered within") {
                    Input::Timer(ReplayTimer::RingTimeout(call))
                } else {
                    Input::Skip
                }
            }
            "CallUpdated" if attr(v, "origin") == "connector" => {
                // A connector's data update: the call's data after it (the
                // desktop merges, so the whole set is the same input).
                let (Some(connector), Some(call)) = (self.connector(source), v.get("call")) else {
                    return Ok(Input::Skip);
                };
                let st = state(text(call, "state"));
                let mut ev = recorded_event(EventKind::CALL_UPDATED, v, call, st);
                ev.attrs = pairs(v.get("attrs"), &["related_call_id", "origin"]);
                ev.call = ROption::RSome(call_info(call, st));
                Input::Msg(Box::new(DesktopMsg::Event {
                    connector,
                    event: ev,
                }))
            }
            _ => {
                let Some(kind) = EventKind::parse(event) else {
                    return Ok(Input::Skip);
                };
                let (Some(connector), false, Some(call)) =
                    (self.connector(source), kind.is_desktop(), v.get("call"))
                else {
                    return Ok(Input::Skip);
                };
                let st = state(text(v, "state"));
                let mut ev = recorded_event(kind, v, call, st);
                ev.related_call_id = attr(v, "related_call_id").into();
                ev.attrs = pairs(v.get("attrs"), &["related_call_id"]);
                if self.seen_calls.insert(text(call, "call_id").to_owned()) {
                    ev.call = ROption::RSome(call_info(call, st));
                }
                Input::Msg(Box::new(DesktopMsg::Event {
                    connector,
                    event: ev,
                }))
            }
        })
    }
}

/// The connector event behind a recorded call event `v` (its `call`).
fn recorded_event(kind: EventKind, v: &Value, call: &Value, st: ConnectionState) -> ConnectorEvent {
    let mut ev = ConnectorEvent::new(kind, text(call, "call_id"), st);
    ev.party = text(v, "party").into();
    ev.cause = text(v, "cause").into();
    ev.text = text(v, "text").into();
    ev
}

/// The call a recorded event carried, as its connector described it.
fn call_info(call: &Value, st: ConnectionState) -> CallInfo {
    CallInfo {
        call_id: text(call, "call_id").into(),
        direction: if text(call, "direction") == "outbound" {
            Direction::Outbound
        } else {
            Direction::Inbound
        },
        ani: text(call, "ani").into(),
        dnis: text(call, "dnis").into(),
        state: st,
        data: pairs(call.get("data"), &[]),
    }
}

/// An event without what differs from run to run (times, countdowns).
fn normalised(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("time_ms");
        o.remove("seq");
        if let Some(c) = o.get_mut("call").and_then(Value::as_object_mut) {
            c.remove("started_ms");
            c.remove("answered_ms");
            if let Some(w) = c.get_mut("work").and_then(Value::as_object_mut) {
                w.remove("wrap_up_remaining_ms");
            }
        }
    }
    v
}

fn read_recording(path: &Path) -> Result<Vec<Value>, String> {
    let f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| format!("{}:{}: not a recorded event: {e}", path.display(), i + 1))?;
        if text(&v, "event").is_empty() {
            return Err(format!(
                "{}:{}: not a recorded event: no \"event\"",
                path.display(),
                i + 1
            ));
        }
        out.push(v);
    }
    Ok(out)
}

/// Runs the replay; see the module docs.
pub fn main(recording: &Path, manifest: &Path, out: Option<&Path>, compare: bool) -> ExitCode {
    let events = match read_recording(recording) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let prepared = match app::prepare(manifest) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let (mut actor, connectors) = match app::replay_actor(&prepared) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 20);
    actor.step(DesktopMsg::Subscribe(tx));
    actor.startup();
    let mut reader = Reader {
        connectors: &connectors,
        seen_calls: HashSet::new(),
        by_interceptor: events
            .iter()
            .filter(|v| {
                matches!(text(v, "event"), "CommandCompleted" | "CommandFailed")
                    && attr(v, "via") == "interceptor"
            })
            .filter_map(|v| v.get("request_id").and_then(Value::as_u64))
            .collect(),
        then: None,
    };
    let mut produced: Vec<String> = Vec::new();
    let mut drain =
        |rx: &mut tokio::sync::mpsc::Receiver<std::sync::Arc<cti_plugin_api::DesktopEvent>>| {
            while let Ok(ev) = rx.try_recv() {
                produced.push(json::event_to_json(&ev));
            }
        };
    for (i, v) in events.iter().enumerate() {
        let input = match reader.input(v) {
            Ok(input) => input,
            Err(e) => {
                eprintln!("{}:{}: {e}", recording.display(), i + 1);
                return ExitCode::from(2);
            }
        };
        for input in std::iter::once(input).chain(reader.then.take()) {
            match input {
                Input::Msg(m) => actor.step(*m),
                Input::Timer(t) => actor.fire(t),
                Input::Intercepted(request_id, result) => {
                    actor.step_intercepted(request_id, result)
                }
                Input::Skip => {}
            }
        }
        drain(&mut rx);
    }
    actor.finish();
    drain(&mut rx);
    if let Some(out) = out {
        let mut text = produced.join("\n");
        text.push('\n');
        if let Err(e) = fs::File::create(out).and_then(|mut f| f.write_all(text.as_bytes())) {
            eprintln!("{}: {e}", out.display());
            return ExitCode::from(1);
        }
    }
    println!(
        "replayed {} recorded events; the desktop raised {}",
        events.len(),
        produced.len()
    );
    if !compare {
        return ExitCode::SUCCESS;
    }
    let want: Vec<Value> = events
        .iter()
        .filter(|v| !NOT_REPLAYED.contains(&text(v, "event")))
        .cloned()
        .map(normalised)
        .collect();
    let got: Vec<Value> = produced
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v| !NOT_REPLAYED.contains(&text(v, "event")))
        .map(normalised)
        .collect();
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        if w != g {
            eprintln!(
                "replay differs at event {} of {}:\n  recorded: {w}\n  replayed: {g}",
                i + 1,
                want.len()
            );
            return ExitCode::from(1);
        }
    }
    if want.len() != got.len() {
        eprintln!(
            "replay differs: {} events recorded, {} replayed (first extra: {})",
            want.len(),
            got.len(),
            want.get(got.len())
                .or(got.get(want.len()))
                .map(Value::to_string)
                .unwrap_or_default()
        );
        return ExitCode::from(1);
    }
    println!("identical: {} events in the same order", want.len());
    ExitCode::SUCCESS
}
