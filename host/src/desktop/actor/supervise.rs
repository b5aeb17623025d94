//! Supervision and hot reload: the desktop restarts a failed plugin instance
//! with exponential backoff up to an intensity limit (then marks it
//! Faulted), and swaps a reloaded library in without losing a call, an event
//! or a command.
//!
//! Both work the same way: retire the running instance (empty its mailbox,
//! ask it to stop, wait a bounded time), build a new instance from the
//! hosted control's current library, and start it from the desktop's state —
//! a connector gets the live calls it owned, a control gets a snapshot.
//! While a swap is in progress the desktop serves no other message, so
//! commands for the plugin wait in the inbox and are delivered to the new
//! instance; events raised by the old one while it stops are still applied.

use std::time::{Duration, Instant};

use abi_stable::std_types::{ROption, RString, RVec};
use cti_plugin_api::{CallInfo, ErrorKind, EventKind, KeyValue, PluginError};

use super::{rs, DesktopActor, PluginKey, Timer};
use crate::{
    desktop::DesktopMsg,
    loader::Library,
    plugin::{ConnectorJob, ControlJob, PluginId, PluginSource},
};
use std::cmp::Reverse;

/// How long a retiring instance may take to stop.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(2);

impl DesktopActor {
    /// A plugin method failed. A caught panic (or a failed start) restarts
    /// the instance; other errors are counted and logged.
    pub(super) fn on_fault(&mut self, plugin: PluginId, during: &'static str, error: PluginError) {
        let key = key_of(plugin);
        let name = self.plugin_name(key).to_owned();
        let health = self.health_mut(key);
        health.faults += 1;
        let faults = health.faults;
        tracing::error!(
            plugin = name,
            during,
            faults,
            "plugin failed: {}",
            crate::privacy::text(&error.to_string())
        );
        if error.kind == ErrorKind::PANIC || during == "start" {
            self.schedule_restart(key, format!("{during}: {error}"));
        }
    }

    fn plugin_name(&self, key: PluginKey) -> &str {
        match key {
            PluginKey::Connector(i) => &self.connectors[i].name,
            PluginKey::Control(i) => &self.controls[i].name,
        }
    }

    fn health_mut(&mut self, key: PluginKey) -> &mut super::Health {
        match key {
            PluginKey::Connector(i) => &mut self.connectors[i].health,
            PluginKey::Control(i) => &mut self.controls[i].health,
        }
    }

    fn set_status(&mut self, key: PluginKey, status: &'static str) {
        match key {
            PluginKey::Connector(i) => self.connectors[i].status = status,
            PluginKey::Control(i) => self.controls[i].status = status,
        }
    }

    fn status(&self, key: PluginKey) -> &'static str {
        match key {
            PluginKey::Connector(i) => self.connectors[i].status,
            PluginKey::Control(i) => self.controls[i].status,
        }
    }

    fn emit_status(&mut self, key: PluginKey, status: &str, cause: &str) {
        let name = rs(self.plugin_name(key));
        let restarts = self.health_mut(key).restarts;
        self.emit(EventKind::PLUGIN_STATUS, |e| {
            e.source = name;
            e.text = rs(status);
            e.cause = rs(cause);
            e.attrs = RVec::from(vec![KeyValue::new("restarts", restarts.to_string())]);
        });
    }

    /// Retires the instance and restarts it after a backoff, unless it has
    /// restarted too often within the window: then it is Faulted.
    pub(super) fn schedule_restart(&mut self, key: PluginKey, why: String) {
        if matches!(self.status(key), "Restarting" | "Faulted" | "Stopped") {
            return;
        }
        let now = Instant::now();
        let window = self.settings.restart_window;
        let limit = self.settings.restart_limit as usize;
        let backoff = self.settings.restart_backoff;
        let health = self.health_mut(key);
        while health
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            health.recent.pop_front();
        }
        self.retire(key);
        let health = self.health_mut(key);
        if health.recent.len() >= limit {
            let n = health.recent.len();
            self.set_status(key, "Faulted");
            let name = self.plugin_name(key).to_owned();
            tracing::error!(
                plugin = name,
                "restarted {n} times within {window:?}; marked Faulted: {}",
                crate::privacy::text(&why)
            );
            self.emit_status(
                key,
                "Faulted",
                &format!(
                    "restarted {n} times within {} s; last failure: {why}",
                    window.as_secs()
                ),
            );
            return;
        }
        let exp = health.recent.len().min(16) as u32;
        health.recent.push_back(now);
        let delay = backoff
            .saturating_mul(1 << exp)
            .min(Duration::from_secs(30));
        self.set_status(key, "Restarting");
        self.emit_status(key, "Restarting", &why);
        self.timers
            .push(Reverse((now + delay, Timer::Restart(key))));
    }

    /// Stops the running instance without waiting for a stuck one: empties
    /// its mailbox, asks it to stop, and fails the commands it still owed.
    fn retire(&mut self, key: PluginKey) {
        match key {
            PluginKey::Connector(i) => {
                let w = &mut self.connectors[i].worker;
                w.drain();
                let _ = w.tx.try_send(ConnectorJob::Stop);
                let owed: Vec<u64> = self
                    .requests
                    .iter()
                    .filter(|(_, r)| r.connector == i)
                    .map(|(id, _)| *id)
                    .collect();
                for id in owed {
                    if let Some(req) = self.requests.remove(&id) {
                        let name = self.connectors[i].name.clone();
                        let err = PluginError::new(
                            ErrorKind::UNAVAILABLE,
                            format!("connector \"{name}\" was restarted before it answered"),
                        );
                        self.complete(id, req, Err(err), "restart");
                    }
                }
            }
            PluginKey::Control(i) => {
                let w = &mut self.controls[i].worker;
                w.drain();
                let _ = w.tx.try_send(ControlJob::Stop);
                self.controls[i].lagging = false;
            }
        }
        self.health_mut(key).generation += 1;
    }

    /// The backoff is over: build and start a new instance.
    pub(super) fn restart(&mut self, key: PluginKey) {
        if self.status(key) != "Restarting" {
            return;
        }
        match self.start_instance(key, None) {
            Ok(()) => {
                self.health_mut(key).restarts += 1;
                let name = self.plugin_name(key).to_owned();
                tracing::info!(plugin = name, "restarted");
                self.set_status(key, "Running");
                self.emit_status(key, "Running", "restarted");
            }
            Err(e) => {
                self.set_status(key, "Running");
                self.schedule_restart(key, format!("restart failed: {e}"));
            }
        }
    }

    /// `cti-host ctl restart NAME`: a new instance now, whatever the state
    /// (Faulted, Restarting, Running), with the restart budget reset.
    pub(super) fn manual_restart(&mut self, name: &str) -> Result<String, String> {
        let Some(key) = self.key_by_name(name) else {
            let names: Vec<&str> = self
                .connectors
                .iter()
                .map(|c| c.name.as_str())
                .chain(self.controls.iter().map(|c| c.name.as_str()))
                .collect();
            return Err(format!(
                "no hosted control \"{name}\" (there are: {})",
                names.join(", ")
            ));
        };
        let was = self.status(key);
        if was == "Stopped" {
            return Err(format!(
                "\"{name}\" is stopped (the desktop is shutting down)"
            ));
        }
        if was == "Running" {
            self.retire(key);
            if let PluginKey::Control(i) = key {
                if !self.controls[i].worker.join_within(RETIRE_TIMEOUT) {
                    tracing::warn!(
                        control = name,
                        "old instance did not stop in time; abandoned"
                    );
                }
            }
        }
        // A pending backoff timer finds the status no longer Restarting.
        self.health_mut(key).recent.clear();
        tracing::info!(plugin = name, was, "restart requested by ctl");
        match self.start_instance(key, None) {
            Ok(()) => {
                self.health_mut(key).restarts += 1;
                self.set_status(key, "Running");
                self.emit_status(key, "Running", &format!("restarted by ctl (was {was})"));
                Ok(format!("{name} restarted (was {was})"))
            }
            Err(e) => {
                self.set_status(key, "Faulted");
                let why = format!("restart by ctl failed: {e}");
                self.emit_status(key, "Faulted", &why);
                Err(format!("{name}: {why}"))
            }
        }
    }

    /// The live calls a connector owns, as it should adopt them.
    fn owned_calls(&self, connector: usize) -> Vec<CallInfo> {
        let mut calls: Vec<_> = self
            .calls
            .values()
            .filter(|e| e.connector == connector && !e.cleared)
            .map(|e| CallInfo {
                call_id: e.connector_id().clone(),
                direction: e.view.direction,
                ani: e.view.ani.clone(),
                dnis: e.view.dnis.clone(),
                state: e.view.state,
                data: e.view.data.clone(),
            })
            .collect();
        calls.sort_by(|a, b| a.call_id.cmp(&b.call_id));
        calls
    }

    /// Builds an instance (from `lib` when given: a reload) and starts it.
    fn start_instance(&mut self, key: PluginKey, lib: Option<&Library>) -> Result<(), String> {
        match key {
            PluginKey::Connector(i) => {
                let mut src = self.connectors[i].source.clone();
                if let Some(lib) = lib {
                    src.lib = lib.clone();
                }
                let conn = self
                    .spawner
                    .new_connector(i, &src)
                    .map_err(|e| e.to_string())?;
                let caps = conn.capabilities();
                let calls = self.owned_calls(i);
                let worker = self
                    .spawner
                    .run_connector(i, &src, conn, calls)
                    .map_err(|e| format!("cannot start its thread: {e}"))?;
                let slot = &mut self.connectors[i];
                slot.worker = worker;
                slot.caps = caps;
                slot.source = src;
                let mut ids: Vec<(u64, RString)> = self
                    .calls
                    .iter()
                    .filter(|(_, e)| e.connector == i && !e.cleared)
                    .map(|(k, e)| (e.created, k.clone()))
                    .collect();
                ids.sort();
                for (_, id) in ids {
                    let prev = self.calls[&id].view.state;
                    self.refresh_allowed(i, &id, prev);
                }
            }
            PluginKey::Control(i) => {
                let mut src = self.controls[i].source.clone();
                if let Some(lib) = lib {
                    src.lib = lib.clone();
                }
                let ctl = self
                    .spawner
                    .new_control(i, &src)
                    .map_err(|e| e.to_string())?;
                let worker = self
                    .spawner
                    .run_control(i, &src, ctl)
                    .map_err(|e| format!("cannot start its thread: {e}"))?;
                let snap = std::sync::Arc::new(self.snapshot());
                let _ = worker.tx.send(ControlJob::Start(snap));
                let slot = &mut self.controls[i];
                slot.worker = worker;
                slot.source = src;
            }
        }
        Ok(())
    }

    /// A connector did not answer a command in time: it is presumed stuck.
    pub(super) fn connector_timed_out(&mut self, connector: usize) {
        if self.connectors[connector].status == "Running" {
            let t = self.settings.execute_timeout;
            self.schedule_restart(
                PluginKey::Connector(connector),
                format!("execute did not return within {} ms", t.as_millis()),
            );
        }
    }

    /// A hot reload: swap the instance for one built from `lib`.
    pub(super) fn on_reload(
        &mut self,
        name: &str,
        lib: Library,
        changed_at: Instant,
        inbox: &crossbeam_channel::Receiver<DesktopMsg>,
    ) {
        let Some(key) = self.key_by_name(name) else {
            return;
        };
        let old_version = match key {
            PluginKey::Connector(i) => self.connectors[i].source.lib.meta.version.to_string(),
            PluginKey::Control(i) => self.controls[i].source.lib.meta.version.to_string(),
        };
        let new_version = lib.meta.version.to_string();
        // Stop the old instance first, waiting for it: a control finishes
        // every event queued for it, a connector delivers its last events.
        let mut held = Vec::new();
        match key {
            PluginKey::Connector(i) => {
                let _ = self.connectors[i]
                    .worker
                    .tx
                    .send_timeout(ConnectorJob::Stop, RETIRE_TIMEOUT);
                let deadline = Instant::now() + RETIRE_TIMEOUT;
                loop {
                    while let Ok(m) = inbox.try_recv() {
                        match m {
                            // Commands wait for the new instance.
                            m @ (DesktopMsg::Submit { .. }
                            | DesktopMsg::Shutdown
                            | DesktopMsg::Reload { .. }) => held.push(m),
                            other => self.handle(other),
                        }
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if self.connectors[i]
                        .worker
                        .join_within(Duration::from_millis(5).min(left))
                        || left.is_zero()
                    {
                        break;
                    }
                }
            }
            PluginKey::Control(i) => {
                let _ = self.controls[i]
                    .worker
                    .tx
                    .send_timeout(ControlJob::Stop, RETIRE_TIMEOUT);
                if !self.controls[i].worker.join_within(RETIRE_TIMEOUT) {
                    tracing::warn!(
                        control = name,
                        "old instance did not stop in time; abandoned"
                    );
                }
            }
        }
        self.health_mut(key).generation += 1;
        let result = self.start_instance(key, Some(&lib));
        let took_ms = changed_at.elapsed().as_millis() as u64;
        match result {
            Ok(()) => {
                self.set_status(key, "Running");
                tracing::info!(
                    plugin = name,
                    old_version,
                    new_version,
                    took_ms,
                    "plugin reloaded"
                );
                let n = rs(name);
                self.emit(EventKind::PLUGIN_RELOADED, |e| {
                    e.source = n;
                    e.text = rs(&new_version);
                    e.attrs = RVec::from(vec![
                        KeyValue::new("name", name),
                        KeyValue::new("old_version", old_version.as_str()),
                        KeyValue::new("new_version", new_version.as_str()),
                        KeyValue::new("took_ms", took_ms.to_string()),
                    ]);
                });
            }
            Err(reason) => {
                // The new library loaded but its instance would not start:
                // bring the old library back.
                tracing::error!(
                    plugin = name,
                    "reloaded instance failed to start: {}; restoring the previous version",
                    crate::privacy::text(&reason)
                );
                let restored = self.start_instance(key, None);
                self.emit_reload_failed(
                    name,
                    &format!("the new instance failed to start: {reason}"),
                );
                if let Err(e) = restored {
                    self.schedule_restart(key, format!("restoring after a failed reload: {e}"));
                }
            }
        }
        for m in held {
            match m {
                DesktopMsg::Shutdown => {
                    // Re-queue: the main loop ends on it.
                    let _ = self.spawner.inbox.try_send(DesktopMsg::Shutdown);
                }
                other => self.handle(other),
            }
        }
    }

    pub(super) fn emit_reload_failed(&mut self, name: &str, reason: &str) {
        tracing::warn!(
            plugin = name,
            "reload refused; the running version stays: {}",
            crate::privacy::text(reason)
        );
        let n = rs(name);
        self.emit(EventKind::PLUGIN_RELOAD_FAILED, |e| {
            e.source = n;
            e.cause = rs(reason);
            e.attrs = RVec::from(vec![
                KeyValue::new("name", name),
                KeyValue::new("reason", reason),
            ]);
        });
        let _ = ROption::<()>::RNone;
    }

    fn key_by_name(&self, name: &str) -> Option<PluginKey> {
        if let Some(i) = self.connectors.iter().position(|c| c.name == name) {
            return Some(PluginKey::Connector(i));
        }
        self.controls
            .iter()
            .position(|c| c.name == name)
            .map(PluginKey::Control)
    }

    /// The hosted controls loaded from `path` (for the reload watcher).
    pub fn sources(&self) -> Vec<PluginSource> {
        self.connectors
            .iter()
            .map(|c| c.source.clone())
            .chain(self.controls.iter().map(|c| c.source.clone()))
            .collect()
    }
}

fn key_of(id: PluginId) -> PluginKey {
    match id {
        PluginId::Connector(i) => PluginKey::Connector(i),
        PluginId::Control(i) => PluginKey::Control(i),
    }
}
