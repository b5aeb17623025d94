//! sim-connector: a simulated phone system, the default desktop's connector.
//!
//! The first inbound call arrives soon after start, the next ones as a
//! Poisson process, and each far party hangs up after a random talk time.
//! The agent can answer, reject, hang up, hold, retrieve, dial out (a number
//! ending in `486` is busy), send DTMF, mute, set the agent state, transfer
//! (blind, or consult then complete or cancel), conference and alternate.
//! See [`SimSettings`] for the settings.
//!
//! Instead of random calls the simulator can play a **scenario** file
//! (`scenario = "path.toml"`): timed inbound and outbound calls, far-end
//! hang-ups, busy and unanswered numbers, agent states forced by the switch.
//! See [`scenario`] for its format; `config/scenarios/` has examples.
//!
//! # Call operations and their events
//! `state` is the agent's connection state after the event; `party` says
//! who; the agent's own party is `agent_extension`.
//!
//! | command | events |
//! |---|---|
//! | `BlindTransfer` (A Connected/Held, `target` T) | `Transferred` A (Null, party agent, text T, cause `SingleStepTransfer`), `ConnectionCleared` A (Null, agent, `Transferred`), `CallCleared` A |
//! | `Consult` (A Connected, `target` T) | `Held` A; `Originated` B (new call: outbound, ani agent, dnis T; `related_call_id` A, attr `consult_of`=A, party T); later `Delivered` B, `Established` B — or `Failed` B (`Busy`) + `CallCleared` B for a number ending in 486. The outcome's `call_id` is B. |
//! | `CompleteTransfer` (A Held, `other_call_id` B Connected or ringing) | `Transferred` A (Null, party agent, text = B's far party, related B, cause `Transfer`), `ConnectionCleared` + `CallCleared` A, `ConnectionCleared` B (Null, agent, `Transferred`) + `CallCleared` B |
//! | `CancelConsult` (A Held, B) | `ConnectionCleared` B (Null, agent, `ConsultCanceled`) + `CallCleared` B, `Retrieved` A (Connected) |
//! | `Conference` (A Held, B Connected) | `Conferenced` B (Connected, party = A's far party, related A, text = B's far parties, comma-separated, oldest first), `Conferenced` A (Null, related B, cause `Merged`), `ConnectionCleared` A (Null, agent, `Conferenced`) + `CallCleared` A |
//! | `Alternate` (A Held, B Connected) | `Held` B (related A), `Retrieved` A (related B) |
//!
//! For the two-call commands `call_id` names the held call; when only
//! `other_call_id` is held the two are taken the other way round. A command
//! on a call in the wrong state fails with `InvalidState` naming the call
//! and its state; an unknown call with `UnknownCall`; a missing `target` or
//! `other_call_id` with `BadArgument`.
//!
//! A far party hangs up on its own timer (`talk_time_secs`, drawn when it
//! connects, held or not). When one far party of a conference leaves, the
//! call gets `ConnectionCleared` (party = that number, state = the agent's,
//! still `Connected`); when the last one leaves, `ConnectionCleared` (party,
//! Null) + `CallCleared`.
//!
//! # Test hook: playing the far end
//! A `Hangup` command whose `attrs` hold `("sim.far_end", PARTY)` means "far
//! party PARTY hangs up", not the agent (`"*"`: every far party). The
//! desktop passes `attrs` through unchanged, so a test can send
//! `cti-host ctl raw '{"kind":"Hangup","call_id":"…","attrs":{"sim.far_end":"+1425…"}}'`.
//! This exists only in the simulator.
//!
//! # Connection models
//! Both connection models run the same [`SimCore`]:
//! - instance: a generator thread sleeps until the next due event and emits
//!   it; commands emit their events before `execute` returns;
//! - polling: `poll` advances the simulation to the wall clock and returns
//!   what happened, after the events of the commands since the last poll.
#![forbid(unsafe_code)]

pub mod scenario;
mod settings;
mod sim;

use std::{
    sync::{Arc, Mutex, MutexGuard},
    thread::{self, JoinHandle},
    time::Instant,
};

use crossbeam_channel::{RecvTimeoutError, Sender};
use cti_plugin_api::sdk::prelude::*;

pub use scenario::Scenario;
pub use settings::SimSettings;
pub use sim::{SimCore, FAR_END_ATTR};

/// The commands the simulated phone supports.
pub const CAPABILITIES: Capabilities = capabilities(&[
    CommandKind::ANSWER,
    CommandKind::REJECT,
    CommandKind::HANGUP,
    CommandKind::HOLD,
    CommandKind::RETRIEVE,
    CommandKind::MAKE_CALL,
    CommandKind::SEND_DTMF,
    CommandKind::MUTE,
    CommandKind::UNMUTE,
    CommandKind::BLIND_TRANSFER,
    CommandKind::CONSULT,
    CommandKind::COMPLETE_TRANSFER,
    CommandKind::CANCEL_CONSULT,
    CommandKind::CONFERENCE,
    CommandKind::ALTERNATE,
    CommandKind::SET_AGENT_STATE,
]);

const fn capabilities(kinds: &[CommandKind]) -> Capabilities {
    let mut bits = 0;
    let mut i = 0;
    while i < kinds.len() {
        bits |= Capabilities::of(kinds[i]).0;
        i += 1;
    }
    Capabilities(bits)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn log_notes(host: &Host, notes: Vec<String>) {
    for note in notes {
        host.info(&format!("sim-connector: {note}"));
    }
}

/// The state shared with the generator thread.
struct Shared {
    core: Mutex<SimCore>,
    /// Taken before `core` is released and held while emitting, so events
    /// reach the host in the order the core produced them.
    emit_order: Mutex<()>,
}

impl Shared {
    /// Runs `f` on the core, then emits the events it returns, in order.
    fn run_and_emit<R>(
        &self,
        host: &Host,
        f: impl FnOnce(&mut SimCore) -> (R, Vec<ConnectorEvent>),
    ) -> R {
        let mut core = lock(&self.core);
        let (result, events) = f(&mut core);
        let notes = core.take_notes();
        let _order = lock(&self.emit_order);
        drop(core);
        for ev in events {
            if let Err(e) = host.emit(ev) {
                host.warn(&format!("sim-connector: event dropped: {e}"));
                break;
            }
        }
        log_notes(host, notes);
        result
    }
}

/// The generator thread of the instance model.
struct Worker {
    /// Wakes the thread to recompute its deadline; dropping it stops the thread.
    wake: Sender<()>,
    thread: JoinHandle<()>,
}

/// The simulated phone system connector.
pub struct SimConnector {
    host: Host,
    model: ConnectionModel,
    shared: Arc<Shared>,
    /// Polling model: events of commands, returned by the next poll.
    outbox: Vec<ConnectorEvent>,
    worker: Option<Worker>,
}

impl NewConnector for SimConnector {
    fn new(host: Host, settings: Settings) -> Result<Self, PluginError> {
        let cfg = SimSettings::from_settings(&settings)?;
        let model = host.hosted().connection;
        Ok(Self {
            host,
            model,
            shared: Arc::new(Shared {
                core: Mutex::new(SimCore::new(cfg)?),
                emit_order: Mutex::new(()),
            }),
            outbox: Vec::new(),
            worker: None,
        })
    }
}

impl SimConnector {
    fn spawn_worker(&mut self) -> Result<(), PluginError> {
        let (wake, woken) = crossbeam_channel::bounded::<()>(1);
        let shared = Arc::clone(&self.shared);
        let host = self.host.clone();
        let thread = thread::Builder::new()
            .name("sim-connector".to_owned())
            .spawn(move || loop {
                let next = shared.run_and_emit(&host, |core| {
                    let events = core.advance(Instant::now());
                    (core.next_due(), events)
                });
                let woke = match next {
                    Some(t) => woken.recv_timeout(t.saturating_duration_since(Instant::now())),
                    None => woken.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                if matches!(woke, Err(RecvTimeoutError::Disconnected)) {
                    break;
                }
            })
            .map_err(|e| {
                PluginError::new(
                    ErrorKind::INTERNAL,
                    format!("cannot start the generator thread: {e}"),
                )
            })?;
        self.worker = Some(Worker { wake, thread });
        Ok(())
    }

    fn stop_worker(&mut self) -> Result<(), PluginError> {
        let Some(Worker { wake, thread }) = self.worker.take() else {
            return Ok(());
        };
        drop(wake);
        thread
            .join()
            .map_err(|_| PluginError::new(ErrorKind::INTERNAL, "the generator thread panicked"))
    }
}

impl Connector for SimConnector {
    const CAPABILITIES: Capabilities = CAPABILITIES;

    fn start(&mut self, calls: Vec<CallInfo>) -> Result<(), PluginError> {
        self.stop_worker()?;
        let adopted = calls.len();
        let scenario = {
            let mut core = lock(&self.shared.core);
            core.start(Instant::now(), calls);
            core.scenario_source().map(str::to_owned)
        };
        let link_up = ConnectorEvent::new(EventKind::LINK_UP, "", ConnectionState::Null);
        match self.model {
            ConnectionModel::Instance => {
                self.host.emit(link_up)?;
                self.spawn_worker()?;
            }
            ConnectionModel::Polling => self.outbox.push(link_up),
        }
        let playing = scenario.map_or_else(String::new, |s| format!(", playing {s}"));
        self.host.info(&format!(
            "sim-connector started ({:?} model, {adopted} call(s) adopted{playing})",
            self.model
        ));
        Ok(())
    }

    fn poll(&mut self) -> Result<Vec<ConnectorEvent>, PluginError> {
        let mut events = std::mem::take(&mut self.outbox);
        let notes = {
            let mut core = lock(&self.shared.core);
            events.extend(core.advance(Instant::now()));
            core.take_notes()
        };
        log_notes(&self.host, notes);
        Ok(events)
    }

    fn execute(&mut self, command: &Command) -> Result<Outcome, PluginError> {
        let now = Instant::now();
        // Catch the simulation up first, so the command meets the calls as
        // they are now (a caller may have abandoned since the last event).
        let run = |core: &mut SimCore| {
            let mut events = core.advance(now);
            let result = core.execute(command, now).map(|(outcome, evs)| {
                events.extend(evs);
                outcome
            });
            (result, events)
        };
        match self.model {
            ConnectionModel::Instance => {
                let result = self.shared.run_and_emit(&self.host, run);
                if let Some(w) = &self.worker {
                    // Full means a wake-up is already pending: fine.
                    let _ = w.wake.try_send(());
                }
                result
            }
            ConnectionModel::Polling => {
                let (result, events, notes) = {
                    let mut core = lock(&self.shared.core);
                    let (result, events) = run(&mut core);
                    (result, events, core.take_notes())
                };
                self.outbox.extend(events);
                log_notes(&self.host, notes);
                result
            }
        }
    }

    fn calls(&self) -> Vec<CallInfo> {
        lock(&self.shared.core).calls()
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        self.stop_worker()
    }
}

impl Drop for SimConnector {
    fn drop(&mut self) {
        let _ = self.stop_worker();
    }
}

cti_plugin_api::export_plugin!(connector = SimConnector);

#[cfg(test)]
mod connector_tests;
