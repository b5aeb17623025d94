//! The action pipeline: controls see commands before the connector (and
//! may veto them), one control may carry a command out instead of the
//! connector, and controls see the outcome after. The order within a phase
//! is the manifest's explicit `priority` (smaller first), never load order.
//!
//! Each step is a round trip to the control's own thread, so the desktop
//! never waits on a control: the command is parked with a token, the control
//! answers with a `Verdict` message, and a deadline refuses the command if it
//! does not (an interceptor that cannot answer must not let a command it may
//! have meant to block slip through).

use std::{cmp::Reverse, collections::HashMap, time::Instant};

use abi_stable::std_types::{ROption, RString};
use cti_plugin_api::{
    Command, CommandKind, ErrorKind, InterceptPhase, InterceptRequest, Outcome, PluginError,
    Verdict, VerdictKind,
};

use super::{DesktopActor, Timer};
use crate::plugin::{CommandResult, ControlJob};

/// The interceptors of one command, in order.
#[derive(Debug, Default, Clone)]
pub(super) struct Chain {
    before: Vec<usize>,
    replace: Option<usize>,
    after: Vec<usize>,
}

/// A command waiting for an interceptor's verdict.
pub(super) struct Interception {
    connector: usize,
    source: String,
    request_id: u64,
    command: Command,
    reply: Option<tokio::sync::oneshot::Sender<CommandResult>>,
    /// Position in `before`; `before.len()` means the Replace step.
    step: usize,
    /// The control asked now.
    asking: usize,
}

/// Builds each command's chain from the controls' manifest entries.
pub(super) fn chains(controls: &[super::ControlSlot]) -> HashMap<CommandKind, Chain> {
    let mut by_kind: HashMap<CommandKind, Vec<(InterceptPhase, i64, usize)>> = HashMap::new();
    for (idx, c) in controls.iter().enumerate() {
        for ic in &c.source.hc.intercepts {
            by_kind
                .entry(ic.command)
                .or_default()
                .push((ic.phase, ic.priority, idx));
        }
    }
    by_kind
        .into_iter()
        .map(|(kind, mut list)| {
            list.sort_by_key(|(_, prio, _)| *prio);
            let mut chain = Chain::default();
            for (phase, _, idx) in list {
                match phase {
                    InterceptPhase::BEFORE => chain.before.push(idx),
                    InterceptPhase::REPLACE => chain.replace = Some(idx),
                    _ => chain.after.push(idx),
                }
            }
            (kind, chain)
        })
        .collect()
}

impl DesktopActor {
    /// A command passed the desktop's checks: through the interceptors (if
    /// any) to the connector.
    pub(super) fn route(
        &mut self,
        connector: usize,
        request_id: u64,
        source: &str,
        command: Command,
        reply: Option<tokio::sync::oneshot::Sender<CommandResult>>,
    ) {
        let chain = self.interceptors.get(&command.kind);
        if chain.is_none_or(|c| c.before.is_empty() && c.replace.is_none()) {
            return self.send_to_connector(connector, request_id, source, command, reply);
        }
        self.next_token += 1;
        let token = self.next_token;
        let parked = Interception {
            connector,
            source: source.to_owned(),
            request_id,
            command,
            reply,
            step: 0,
            asking: usize::MAX,
        };
        self.interceptions.insert(token, parked);
        self.ask_next(token);
    }

    /// Asks the next interceptor, or hands the command on.
    fn ask_next(&mut self, token: u64) {
        let Some(ic) = self.interceptions.get(&token) else {
            return;
        };
        let chain = self
            .interceptors
            .get(&ic.command.kind)
            .cloned()
            .unwrap_or_default();
        // Skip interceptors that are not running (restarting, faulted).
        let mut step = ic.step;
        while step < chain.before.len() && self.controls[chain.before[step]].status != "Running" {
            tracing::warn!(
                control = self.controls[chain.before[step]].name,
                "interceptor not running; skipped"
            );
            step += 1;
        }
        let (phase, control) = if step < chain.before.len() {
            (InterceptPhase::BEFORE, Some(chain.before[step]))
        } else {
            // The replace owner may still perform the original command
            // itself: its own submissions go to the connector.
            (
                InterceptPhase::REPLACE,
                chain.replace.filter(|c| {
                    self.controls[*c].status == "Running" && self.controls[*c].name != ic.source
                }),
            )
        };
        let Some(control) = control else {
            // No (running) replace owner: the connector carries it out.
            let Some(ic) = self.interceptions.remove(&token) else {
                return;
            };
            return self.send_to_connector(
                ic.connector,
                ic.request_id,
                &ic.source,
                ic.command,
                ic.reply,
            );
        };
        let Some(ic) = self.interceptions.get_mut(&token) else {
            return;
        };
        ic.step = step;
        ic.asking = control;
        if self.replaying {
            // The recording says how it went: `replay_intercepted`.
            return;
        }
        let request = InterceptRequest {
            phase,
            request_id: ic.request_id,
            source: RString::from(ic.source.as_str()),
            command: ic.command.clone(),
            outcome: ROption::RNone,
            error: ROption::RNone,
        };
        let job = ControlJob::Intercept {
            token,
            request: Box::new(request),
        };
        if self.controls[control].worker.tx.try_send(job).is_err() {
            let name = self.controls[control].name.clone();
            return self.refuse_intercepted(
                token,
                ErrorKind::UNAVAILABLE,
                format!("interceptor \"{name}\" is busy"),
            );
        }
        let at = Instant::now() + self.settings.execute_timeout;
        self.timers
            .push(Reverse((at, Timer::InterceptDeadline(token))));
    }

    /// A control answered.
    pub(super) fn on_verdict(&mut self, token: u64, result: Result<Verdict, PluginError>) {
        let Some(ic) = self.interceptions.get_mut(&token) else {
            return; // after-phase notification, or a late answer
        };
        let control = ic.asking;
        let name = self.controls[control].name.clone();
        let replacing = self
            .interceptors
            .get(&ic.command.kind)
            .is_some_and(|c| ic.step >= c.before.len());
        match result {
            Ok(v) if v.kind == VerdictKind::CONTINUE => {
                ic.step += 1;
                if replacing {
                    // The owner declined: the connector carries it out.
                    let Some(ic) = self.interceptions.remove(&token) else {
                        return;
                    };
                    return self.send_to_connector(
                        ic.connector,
                        ic.request_id,
                        &ic.source,
                        ic.command,
                        ic.reply,
                    );
                }
                self.ask_next(token);
            }
            Ok(v) if v.kind == VerdictKind::HANDLED && replacing => {
                let Some(ic) = self.interceptions.remove(&token) else {
                    return;
                };
                tracing::info!(control = name, command = %ic.command.kind, "command carried out by its replace owner");
                let outcome = Outcome {
                    call_id: v.outcome.call_id,
                    detail: if v.outcome.detail.is_empty() {
                        RString::from(format!("handled by {name}"))
                    } else {
                        v.outcome.detail
                    },
                };
                self.finish_intercepted(ic, Ok(outcome));
            }
            Ok(v) => {
                let reason = if v.reason.is_empty() {
                    "no reason given".to_owned()
                } else {
                    v.reason.into_string()
                };
                self.refuse_intercepted(
                    token,
                    ErrorKind::REFUSED,
                    format!("vetoed by {name}: {reason}"),
                );
            }
            Err(e) => {
                self.refuse_intercepted(
                    token,
                    ErrorKind::REFUSED,
                    format!("interceptor {name} failed: {e}"),
                );
            }
        }
    }

    /// Replay: the parked command `request_id` went on to its connector
    /// (`None`: every interceptor let it through) or ended with the
    /// recorded result (a veto, a failure, a replace owner's outcome).
    pub(super) fn replay_intercepted(&mut self, request_id: u64, result: Option<CommandResult>) {
        let token = self
            .interceptions
            .iter()
            .find(|(_, ic)| ic.request_id == request_id)
            .map(|(t, _)| *t);
        let Some(ic) = token.and_then(|t| self.interceptions.remove(&t)) else {
            return; // never parked: no interceptor for it, or refused before
        };
        match result {
            None => self.send_to_connector(
                ic.connector,
                ic.request_id,
                &ic.source,
                ic.command,
                ic.reply,
            ),
            Some(result) => self.finish_intercepted(ic, result),
        }
    }

    /// The interceptor did not answer in time: the command is refused.
    pub(super) fn intercept_deadline(&mut self, token: u64) {
        let Some(ic) = self.interceptions.get(&token) else {
            return;
        };
        let name = self.controls[ic.asking].name.clone();
        let ms = self.settings.execute_timeout.as_millis();
        self.refuse_intercepted(
            token,
            ErrorKind::TIMEOUT,
            format!("interceptor {name} did not answer within {ms} ms"),
        );
    }

    fn refuse_intercepted(&mut self, token: u64, kind: ErrorKind, message: String) {
        let Some(ic) = self.interceptions.remove(&token) else {
            return;
        };
        tracing::info!(command = %ic.command.kind, "{}", crate::privacy::text(&message));
        self.finish_intercepted(ic, Err(PluginError::new(kind, message)));
    }

    fn finish_intercepted(&mut self, ic: Interception, result: CommandResult) {
        self.notify_after(&ic.source, ic.request_id, &ic.command, &result);
        let view = self.calls.get(&ic.command.call_id).map(|e| e.view.clone());
        let connector = RString::from(self.connectors[ic.connector].name.as_str());
        self.emit_outcome(
            &ic.source,
            ic.request_id,
            ic.command.kind,
            view,
            connector,
            &result,
            "interceptor",
        );
        if let Some(tx) = ic.reply {
            let _ = tx.send(result);
        }
    }

    /// Tells the After interceptors how a command ended (no answer awaited).
    pub(super) fn notify_after(
        &mut self,
        source: &str,
        request_id: u64,
        command: &Command,
        result: &CommandResult,
    ) {
        let Some(chain) = self.interceptors.get(&command.kind) else {
            return;
        };
        for &control in &chain.after {
            let c = &self.controls[control];
            if c.status != "Running" {
                continue;
            }
            let request = InterceptRequest {
                phase: InterceptPhase::AFTER,
                request_id,
                source: RString::from(source),
                command: command.clone(),
                outcome: result.as_ref().ok().cloned().into(),
                error: result.as_ref().err().cloned().into(),
            };
            if c.worker
                .tx
                .try_send(ControlJob::Intercept {
                    token: 0,
                    request: Box::new(request),
                })
                .is_err()
            {
                tracing::warn!(
                    control = c.name,
                    "after-interceptor queue full; notification dropped"
                );
            }
        }
    }

    /// True when After interceptors want to see this kind of command.
    pub(super) fn has_after(&self, kind: CommandKind) -> bool {
        self.interceptors
            .get(&kind)
            .is_some_and(|c| !c.after.is_empty())
    }
}
