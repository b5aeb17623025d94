//! A control for fault-injection tests and reliability runs.
//!
//! Settings:
//! - `panic_every` (u64, 0 = never): panic on every event whose `seq` is a
//!   multiple of it (deterministic, whatever restarts happened);
//! - `slow_ms` (u64): sleep this long in every `on_event` (a slow control);
//! - `hang_after` (u64, 0 = never): block forever once this many events arrived;
//! - `summary_path` (string): at `stop`, write one JSON line with what this
//!   instance saw: `{"instance":N,"events":N,"first_seq":N,"last_seq":N,
//!   "gaps":N,"resyncs":N,"snapshot_seq":N}` (appended, so every instance of
//!   a restarted control leaves a line); `gaps` counts places where `seq`
//!   did not follow the previous one by exactly 1 (resyncs excepted);
//! - `veto` (table command → reason): as a Before interceptor, veto those
//!   commands with that reason;
//! - `replace` (list of commands): as the Replace owner, report them handled
//!   and then submit the same command itself (it reaches the connector);
//! - `after_log` (string): as an After interceptor, append one JSON line per
//!   outcome: `{"command":"Hangup","request_id":N,"ok":true,"error":""}`.

use std::{
    io::Write,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use cti_plugin_api::sdk::prelude::*;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FaultSettings {
    panic_every: u64,
    slow_ms: u64,
    hang_after: u64,
    summary_path: Option<String>,
    veto: std::collections::BTreeMap<String, String>,
    replace: Vec<String>,
    after_log: Option<String>,
}

static INSTANCES: AtomicU64 = AtomicU64::new(0);

/// The control.
pub struct FaultControl {
    host: Host,
    cfg: FaultSettings,
    instance: u64,
    events: u64,
    first_seq: u64,
    last_seq: u64,
    gaps: u64,
    resyncs: u64,
    snapshot_seq: u64,
}

impl NewControl for FaultControl {
    fn new(host: Host, settings: Settings) -> Result<Self, PluginError> {
        Ok(Self {
            host,
            cfg: settings.parse()?,
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed) + 1,
            events: 0,
            first_seq: 0,
            last_seq: 0,
            gaps: 0,
            resyncs: 0,
            snapshot_seq: 0,
        })
    }
}

impl Control for FaultControl {
    fn start(&mut self, snapshot: &DesktopSnapshot) -> Result<(), PluginError> {
        self.snapshot_seq = snapshot.seq;
        self.last_seq = snapshot.seq;
        Ok(())
    }

    fn on_event(&mut self, event: &DesktopEvent) -> Result<(), PluginError> {
        if self.events == 0 {
            self.first_seq = event.seq;
        }
        if event.seq != self.last_seq + 1 {
            self.gaps += 1;
        }
        self.last_seq = event.seq;
        self.events += 1;
        if self.cfg.slow_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.cfg.slow_ms));
        }
        if self.cfg.hang_after > 0 && self.events >= self.cfg.hang_after {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        if self.cfg.panic_every > 0 && event.seq.is_multiple_of(self.cfg.panic_every) {
            panic!("fault-control: injected panic at event seq {}", event.seq);
        }
        Ok(())
    }

    fn resync(&mut self, snapshot: &DesktopSnapshot) -> Result<(), PluginError> {
        self.resyncs += 1;
        self.last_seq = snapshot.seq;
        Ok(())
    }

    fn intercept(&mut self, request: &InterceptRequest) -> Result<Verdict, PluginError> {
        let name = request.command.kind.to_string();
        match request.phase {
            InterceptPhase::BEFORE => Ok(match self.cfg.veto.get(&name) {
                Some(reason) => Verdict::veto(reason.as_str()),
                None => Verdict::proceed(),
            }),
            InterceptPhase::REPLACE if self.cfg.replace.contains(&name) => {
                self.host.submit(request.command.clone())?;
                Ok(Verdict::handled(Outcome {
                    call_id: RString::new(),
                    detail: "handled by fault-control".into(),
                }))
            }
            InterceptPhase::AFTER => {
                if let Some(path) = &self.cfg.after_log {
                    let (ok, error) = match &request.error {
                        ROption::RSome(e) => (false, e.to_string()),
                        ROption::RNone => (true, String::new()),
                    };
                    let line = format!(
                        "{{\"command\":\"{name}\",\"request_id\":{},\"ok\":{ok},\"error\":{:?}}}\n",
                        request.request_id, error
                    );
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .and_then(|mut f| f.write_all(line.as_bytes()))
                        .map_err(|e| {
                            PluginError::new(ErrorKind::INTERNAL, format!("{path}: {e}"))
                        })?;
                }
                Ok(Verdict::proceed())
            }
            _ => Ok(Verdict::proceed()),
        }
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        let Some(path) = &self.cfg.summary_path else {
            return Ok(());
        };
        let line = format!(
            "{{\"instance\":{},\"events\":{},\"first_seq\":{},\"last_seq\":{},\"gaps\":{},\"resyncs\":{},\"snapshot_seq\":{}}}\n",
            self.instance,
            self.events,
            self.first_seq,
            self.last_seq,
            self.gaps,
            self.resyncs,
            self.snapshot_seq
        );
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| PluginError::new(ErrorKind::INTERNAL, format!("{path}: {e}")))
    }
}

cti_plugin_api::export_plugin!(control = FaultControl);
