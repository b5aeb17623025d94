//! Puts a desktop together from a manifest: load and check every library,
//! build every plugin instance, start the workers and the desktop actor.

use std::{
    path::{Path, PathBuf},
    sync::{atomic::AtomicU64, Arc},
    time::Duration,
};

use abi_stable::std_types::{RResult, RStr, RString};
use cti_plugin_api::{ConnectorBox, ControlBox, HostedInfo, PluginError};

use crate::{
    desktop::{
        ConnectorSlot, ControlSlot, DesktopActor, DesktopHandle, DesktopMsg, RunningDesktop,
    },
    loader::{self, Library, LoadError, ShadowDir},
    manifest::{self, ControlType, HostedControl, Manifest},
    plugin::{self, HostCtx, PluginId},
};

/// A manifest whose libraries all loaded and passed every check.
pub struct Prepared {
    /// The manifest.
    pub manifest: Manifest,
    /// One library per hosted control, in manifest order.
    pub libraries: Vec<Library>,
    /// Where the private library copies live (kept while the host runs).
    pub shadow: ShadowDir,
}

/// Why a desktop could not be put together: every problem, one per line.
#[derive(Debug)]
pub struct SetupErrors(pub Vec<String>);

impl std::fmt::Display for SetupErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for SetupErrors {}

/// Reads the manifest and loads every library it names, collecting every
/// problem rather than stopping at the first.
///
/// # Errors
/// Every manifest problem, or every library refusal, each on one line.
pub fn prepare(manifest_path: &Path) -> Result<Prepared, SetupErrors> {
    let manifest = manifest::load(manifest_path)
        .map_err(|e| SetupErrors(e.0.iter().map(ToString::to_string).collect()))?;
    let shadow = ShadowDir::create()
        .map_err(|e| SetupErrors(vec![format!("cannot create the runtime directory: {e}")]))?;
    let manifest_dir = manifest_path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let mut errors = Vec::new();
    let mut libraries = Vec::new();
    for hc in &manifest.hosted_controls {
        let loaded = loader::resolve(hc, &manifest.host.plugin_dirs, &manifest_dir)
            .and_then(|path| loader::load(&path, &shadow))
            .and_then(|lib| loader::check_requirement(&lib, hc).map(|()| lib));
        match loaded {
            Ok(lib) => libraries.push(lib),
            Err(e) => errors.push(refusal(hc, &e)),
        }
    }
    if errors.is_empty() {
        Ok(Prepared {
            manifest,
            libraries,
            shadow,
        })
    } else {
        Err(SetupErrors(errors))
    }
}

fn refusal(hc: &HostedControl, e: &LoadError) -> String {
    format!("{}: hosted control \"{}\": {e}", hc.location, hc.name)
}

fn hosted_info(hc: &HostedControl, agent_id: &str) -> HostedInfo {
    HostedInfo {
        name: RString::from(hc.name.as_str()),
        channel: match hc.kind {
            ControlType::Connector => RString::from(hc.channel.as_str()),
            ControlType::Control => RString::new(),
        },
        connection: hc.connection,
        poll_interval_ms: hc.poll_interval_ms,
        agent_id: RString::from(agent_id),
    }
}

fn settings_error(hc: &HostedControl, e: &PluginError) -> String {
    format!(
        "{}: hosted control \"{}\": {}",
        hc.location, hc.name, e.message
    )
}

/// Builds a connector instance.
///
/// # Errors
/// What the plugin's constructor returned.
pub fn new_connector(
    lib: &Library,
    host: HostCtx,
    settings: &str,
) -> Result<ConnectorBox, PluginError> {
    match (lib.module.new_connector())(host.into_handle(), RStr::from(settings)) {
        RResult::ROk(c) => Ok(c),
        RResult::RErr(e) => Err(e),
    }
}

/// Builds a control instance.
///
/// # Errors
/// What the plugin's constructor returned.
pub fn new_control(
    lib: &Library,
    host: HostCtx,
    settings: &str,
) -> Result<ControlBox, PluginError> {
    match (lib.module.new_control())(host.into_handle(), RStr::from(settings)) {
        RResult::ROk(c) => Ok(c),
        RResult::RErr(e) => Err(e),
    }
}

/// Builds every instance once and drops it, so `check` proves the settings
/// are accepted. Plugins acquire nothing before `start`.
///
/// # Errors
/// Every refusal, one per line.
pub fn check_instances(p: &Prepared) -> Result<(), SetupErrors> {
    let (tx, _rx) = crossbeam_channel::bounded(16);
    let ids = Arc::new(AtomicU64::new(1));
    let mut errors = Vec::new();
    for (i, (hc, lib)) in p
        .manifest
        .hosted_controls
        .iter()
        .zip(&p.libraries)
        .enumerate()
    {
        let info = hosted_info(hc, &p.manifest.desktop.agent_id);
        let r = match hc.kind {
            ControlType::Connector => {
                let ctx = HostCtx::new(PluginId::Connector(i), info, tx.clone(), ids.clone());
                new_connector(lib, ctx, &hc.settings).map(drop)
            }
            ControlType::Control => {
                let ctx = HostCtx::new(PluginId::Control(i), info, tx.clone(), ids.clone());
                new_control(lib, ctx, &hc.settings).map(drop)
            }
        };
        if let Err(e) = r {
            errors.push(settings_error(hc, &e));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SetupErrors(errors))
    }
}

/// Builds every instance, starts their workers and the desktop actor.
///
/// # Errors
/// Every constructor refusal, one per line (nothing is left running).
pub fn start(p: &Prepared) -> Result<RunningDesktop, SetupErrors> {
    let m = &p.manifest;
    let (inbox_tx, inbox_rx) = crossbeam_channel::bounded::<DesktopMsg>(m.host.inbox_capacity);
    let ids = Arc::new(AtomicU64::new(1));
    let mut errors = Vec::new();
    let mut connectors = Vec::new();
    let mut controls = Vec::new();
    let mut built_connectors = Vec::new();
    for (hc, lib) in m.hosted_controls.iter().zip(&p.libraries) {
        let info = hosted_info(hc, &m.desktop.agent_id);
        match hc.kind {
            ControlType::Connector => {
                let idx = built_connectors.len();
                let ctx = HostCtx::new(
                    PluginId::Connector(idx),
                    info,
                    inbox_tx.clone(),
                    ids.clone(),
                );
                match new_connector(lib, ctx, &hc.settings) {
                    Ok(c) => built_connectors.push((hc, lib, c)),
                    Err(e) => errors.push(settings_error(hc, &e)),
                }
            }
            ControlType::Control => {
                let idx = controls.len();
                let ctx = HostCtx::new(PluginId::Control(idx), info, inbox_tx.clone(), ids.clone());
                match new_control(lib, ctx, &hc.settings) {
                    Ok(c) => match plugin::spawn_control(
                        idx,
                        &hc.name,
                        c,
                        m.host.control_queue,
                        inbox_tx.clone(),
                    ) {
                        Ok(worker) => controls.push(ControlSlot {
                            name: hc.name.clone(),
                            version: lib.meta.version.to_string(),
                            worker,
                            capacity: m.host.control_queue,
                            lagging: false,
                            skipped: 0,
                            status: "Running",
                            faults: 0,
                        }),
                        Err(e) => errors.push(format!(
                            "hosted control \"{}\": cannot start its thread: {e}",
                            hc.name
                        )),
                    },
                    Err(e) => errors.push(settings_error(hc, &e)),
                }
            }
        }
    }
    if !errors.is_empty() {
        for c in &mut controls {
            let _ = c.worker.tx.send(plugin::ControlJob::Stop);
            c.worker.join_within(Duration::from_secs(1));
        }
        return Err(SetupErrors(errors));
    }
    for (idx, (hc, lib, c)) in built_connectors.into_iter().enumerate() {
        let caps = c.capabilities();
        let worker = plugin::spawn_connector(
            idx,
            &hc.name,
            c,
            hc.connection,
            Duration::from_millis(hc.poll_interval_ms),
            Vec::new(),
            1024,
            inbox_tx.clone(),
        )
        .map_err(|e| {
            SetupErrors(vec![format!(
                "hosted control \"{}\": cannot start its thread: {e}",
                hc.name
            )])
        })?;
        connectors.push(ConnectorSlot {
            name: hc.name.clone(),
            channel: hc.channel.clone(),
            version: lib.meta.version.to_string(),
            caps,
            worker,
            link: "Unknown",
            status: "Running",
            faults: 0,
        });
    }
    let actor = DesktopActor::new(
        m.desktop.clone(),
        crate::desktop::ActorSettings {
            execute_timeout: Duration::from_millis(m.host.execute_timeout_ms),
            lag_timeout: Duration::from_millis(m.host.lag_timeout_ms),
        },
        connectors,
        controls,
    );
    let handle = DesktopHandle::new(inbox_tx, ids);
    let thread = std::thread::Builder::new()
        .name("desktop".into())
        .spawn(move || actor.run(inbox_rx))
        .map_err(|e| SetupErrors(vec![format!("cannot start the desktop thread: {e}")]))?;
    Ok(RunningDesktop { handle, thread })
}
