//! sim-connector: a simulated phone system, the default desktop's connector.
//!
//! The first inbound call arrives soon after start, the next ones as a
//! Poisson process, and the far end hangs up after a random talk time. The
//! agent can answer, reject, hang up, hold, retrieve, dial out (a number
//! ending in `486` is busy), send DTMF, mute and set the agent state. See
//! [`SimSettings`] for the settings.
//!
//! Both connection models run the same [`SimCore`]:
//! - instance: a generator thread sleeps until the next due event and emits
//!   it; commands emit their events before `execute` returns;
//! - polling: `poll` advances the simulation to the wall clock and returns
//!   what happened, after the events of the commands since the last poll.
#![forbid(unsafe_code)]

mod settings;
mod sim;

use std::{
    sync::{Arc, Mutex, MutexGuard},
    thread::{self, JoinHandle},
    time::Instant,
};

use crossbeam_channel::{RecvTimeoutError, Sender};
use cti_plugin_api::sdk::prelude::*;

pub use settings::SimSettings;
pub use sim::SimCore;

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
        let _order = lock(&self.emit_order);
        drop(core);
        for ev in events {
            if let Err(e) = host.emit(ev) {
                host.warn(&format!("sim-connector: event dropped: {e}"));
                break;
            }
        }
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
        lock(&self.shared.core).start(Instant::now(), calls);
        let link_up = ConnectorEvent::new(EventKind::LINK_UP, "", ConnectionState::Null);
        match self.model {
            ConnectionModel::Instance => {
                self.host.emit(link_up)?;
                self.spawn_worker()?;
            }
            ConnectionModel::Polling => self.outbox.push(link_up),
        }
        self.host.info(&format!(
            "sim-connector started ({:?} model, {adopted} call(s) adopted)",
            self.model
        ));
        Ok(())
    }

    fn poll(&mut self) -> Result<Vec<ConnectorEvent>, PluginError> {
        let mut events = std::mem::take(&mut self.outbox);
        events.extend(lock(&self.shared.core).advance(Instant::now()));
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
                let (result, events) = run(&mut lock(&self.shared.core));
                self.outbox.extend(events);
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
