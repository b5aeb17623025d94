//! Puts a desktop together from a manifest: load and check every library,
//! build every plugin instance, start the workers and the desktop actor.

use std::{
    path::{Path, PathBuf},
    sync::{atomic::AtomicU64, Arc},
    time::Duration,
};

use abi_stable::std_types::RStr;
use cti_plugin_api::{ConnectorBox, ControlBox, PluginError};

use crate::{
    desktop::{
        ConnectorSlot, ControlSlot, DesktopActor, DesktopHandle, DesktopMsg, RunningDesktop,
    },
    loader::{self, Library, LoadError, ShadowDir},
    manifest::{self, ControlType, HostedControl, Manifest},
    plugin::{HostCtx, PluginSource, Spawner},
};

/// A manifest whose libraries all loaded and passed every check.
pub struct Prepared {
    /// The manifest.
    pub manifest: Manifest,
    /// One library per hosted control, in manifest order.
    pub libraries: Vec<Library>,
    /// Where the private library copies live (kept while the host runs).
    pub shadow: Arc<ShadowDir>,
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
            .and_then(|path| loader::load_for(&path, &shadow, hc));
        match loaded {
            Ok(lib) => libraries.push(lib),
            Err(e) => errors.push(refusal(hc, &e)),
        }
    }
    if let Some(d) = &manifest.directory {
        if let Err(e) = crate::directory::Directory::open(&d.path, &d.default_country_code) {
            errors.push(format!("{}: [directory]: {e}", manifest.path.display()));
        }
    }
    if errors.is_empty() {
        Ok(Prepared {
            manifest,
            libraries,
            shadow: Arc::new(shadow),
        })
    } else {
        Err(SetupErrors(errors))
    }
}

fn refusal(hc: &HostedControl, e: &LoadError) -> String {
    format!("{}: hosted control \"{}\": {e}", hc.location, hc.name)
}

/// Builds a connector instance from a library with a given host context.
///
/// # Errors
/// What the plugin's constructor returned.
pub fn new_connector(
    lib: &Library,
    host: HostCtx,
    settings: &str,
) -> Result<ConnectorBox, PluginError> {
    (lib.module.new_connector())(host.into_handle(), RStr::from(settings)).into_result()
}

/// Builds a control instance from a library with a given host context.
///
/// # Errors
/// What the plugin's constructor returned.
pub fn new_control(
    lib: &Library,
    host: HostCtx,
    settings: &str,
) -> Result<ControlBox, PluginError> {
    (lib.module.new_control())(host.into_handle(), RStr::from(settings)).into_result()
}

fn settings_error(hc: &HostedControl, e: &PluginError) -> String {
    format!(
        "{}: hosted control \"{}\": {}",
        hc.location, hc.name, e.message
    )
}

fn spawner(p: &Prepared, inbox: crossbeam_channel::Sender<DesktopMsg>) -> Spawner {
    Spawner {
        inbox,
        ids: Arc::new(AtomicU64::new(1)),
        agent_id: p.manifest.desktop.agent_id.clone(),
        control_queue: p.manifest.host.control_queue,
        connector_mailbox: 1024,
    }
}

fn sources(p: &Prepared) -> Vec<PluginSource> {
    p.manifest
        .hosted_controls
        .iter()
        .zip(&p.libraries)
        .map(|(hc, lib)| PluginSource {
            hc: hc.clone(),
            lib: lib.clone(),
        })
        .collect()
}

/// Builds every instance once and drops it, so `check` proves the settings
/// are accepted. Plugins acquire nothing before `start`.
///
/// # Errors
/// Every refusal, one per line.
pub fn check_instances(p: &Prepared) -> Result<(), SetupErrors> {
    let (tx, _rx) = crossbeam_channel::bounded(16);
    let sp = spawner(p, tx);
    let mut errors = Vec::new();
    for (i, src) in sources(p).iter().enumerate() {
        let r = match src.hc.kind {
            ControlType::Connector => sp.new_connector(i, src).map(drop),
            ControlType::Control => sp.new_control(i, src).map(drop),
        };
        if let Err(e) = r {
            errors.push(settings_error(&src.hc, &e));
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
    let sp = spawner(p, inbox_tx.clone());
    let mut errors = Vec::new();
    let mut built_connectors = Vec::new();
    let mut built_controls = Vec::new();
    for src in sources(p) {
        match src.hc.kind {
            ControlType::Connector => match sp.new_connector(built_connectors.len(), &src) {
                Ok(c) => built_connectors.push((src, c)),
                Err(e) => errors.push(settings_error(&src.hc, &e)),
            },
            ControlType::Control => match sp.new_control(built_controls.len(), &src) {
                Ok(c) => built_controls.push((src, c)),
                Err(e) => errors.push(settings_error(&src.hc, &e)),
            },
        }
    }
    if !errors.is_empty() {
        return Err(SetupErrors(errors));
    }
    let thread_error = |hc: &HostedControl, e: std::io::Error| {
        SetupErrors(vec![format!(
            "hosted control \"{}\": cannot start its thread: {e}",
            hc.name
        )])
    };
    let mut controls = Vec::new();
    for (idx, (src, c)) in built_controls.into_iter().enumerate() {
        let worker = sp
            .run_control(idx, &src, c)
            .map_err(|e| thread_error(&src.hc, e))?;
        controls.push(ControlSlot::new(src, worker, m.host.control_queue));
    }
    let mut connectors = Vec::new();
    for (idx, (src, c)) in built_connectors.into_iter().enumerate() {
        let caps = c.capabilities();
        let worker = sp
            .run_connector(idx, &src, c, Vec::new())
            .map_err(|e| thread_error(&src.hc, e))?;
        connectors.push(ConnectorSlot::new(src, worker, caps));
    }
    let actor = DesktopActor::new(
        m.desktop.clone(),
        actor_settings(m),
        sp.clone(),
        connectors,
        controls,
    );
    let directory = open_directory(m)?;
    let actor = actor.with_lookup(m.lookups.clone(), directory);
    let handle = DesktopHandle::new(inbox_tx, sp.ids.clone());
    let thread = std::thread::Builder::new()
        .name("desktop".into())
        .spawn(move || actor.run(inbox_rx))
        .map_err(|e| SetupErrors(vec![format!("cannot start the desktop thread: {e}")]))?;
    Ok(RunningDesktop { handle, thread })
}

/// The desktop actor's settings from the manifest's `[host]` (a run and a
/// replay alike).
fn actor_settings(m: &crate::manifest::Manifest) -> crate::desktop::ActorSettings {
    crate::desktop::ActorSettings {
        execute_timeout: Duration::from_millis(m.host.execute_timeout_ms),
        lag_timeout: Duration::from_millis(m.host.lag_timeout_ms),
        restart_limit: m.host.restart_limit,
        restart_window: Duration::from_secs(m.host.restart_window_secs),
        restart_backoff: Duration::from_millis(m.host.restart_backoff_ms),
    }
}

/// The `[directory]` the manifest names, opened.
fn open_directory(
    m: &crate::manifest::Manifest,
) -> Result<Option<crate::directory::Directory>, SetupErrors> {
    m.directory
        .as_ref()
        .map(|d| {
            crate::directory::Directory::open(&d.path, &d.default_country_code)
                .map_err(|e| SetupErrors(vec![format!("{}: [directory]: {e}", m.path.display())]))
        })
        .transpose()
}

/// A desktop for `cti-host replay`: the manifest's controls run as usual,
/// its connectors are virtual (their answers come from the recording).
/// Returns the actor and the connectors' names, in order.
///
/// # Errors
/// Every constructor refusal, one per line.
pub fn replay_actor(p: &Prepared) -> Result<(DesktopActor, Vec<String>), SetupErrors> {
    let m = &p.manifest;
    let (inbox_tx, _inbox_rx) = crossbeam_channel::bounded::<DesktopMsg>(m.host.inbox_capacity);
    let sp = spawner(p, inbox_tx);
    let mut connectors = Vec::new();
    let mut controls = Vec::new();
    let mut names = Vec::new();
    for src in sources(p) {
        match src.hc.kind {
            ControlType::Connector => {
                let (tx, rx) = crossbeam_channel::bounded(1024);
                let (_done_tx, done) = crossbeam_channel::bounded(1);
                let worker = crate::plugin::Worker {
                    tx,
                    rx,
                    thread: None,
                    done,
                };
                names.push(src.hc.name.clone());
                let caps = src.lib.meta.capabilities;
                connectors.push(ConnectorSlot::new(src, worker, caps));
            }
            ControlType::Control => {
                let idx = controls.len();
                let c = sp
                    .new_control(idx, &src)
                    .map_err(|e| SetupErrors(vec![settings_error(&src.hc, &e)]))?;
                let worker = sp.run_control(idx, &src, c).map_err(|e| {
                    SetupErrors(vec![format!("hosted control \"{}\": {e}", src.hc.name)])
                })?;
                controls.push(ControlSlot::new(src, worker, m.host.control_queue));
            }
        }
    }
    let directory = open_directory(m)?;
    let actor = DesktopActor::new(
        m.desktop.clone(),
        actor_settings(m),
        sp,
        connectors,
        controls,
    )
    .with_lookup(m.lookups.clone(), directory)
    .replaying();
    Ok((actor, names))
}
