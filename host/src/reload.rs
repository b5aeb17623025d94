//! Hot reload: watches every loaded plugin file; when one changes and stays
//! unchanged for the debounce time, loads a fresh copy (a new path, so
//! `dlopen` maps a new image) with exactly the checks of a first load, and
//! hands the result to the desktop, which swaps instances (see
//! `desktop::actor::supervise`). A refused file (half-written, wrong ABI,
//! wrong version…) leaves the running version in place and is reported as
//! `PluginReloadFailed`.
//!
//! Directories are watched rather than files: builds replace files by
//! rename as often as they rewrite them in place.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use crossbeam_channel::Sender;
use notify::{RecursiveMode, Watcher};

use crate::{
    desktop::DesktopMsg,
    loader::{self, ShadowDir},
    manifest::HostedControl,
};

/// A watched plugin file and the hosted controls loaded from it.
struct Watched {
    controls: Vec<HostedControl>,
}

/// Keeps the watcher alive; dropping it stops watching.
pub struct ReloadWatcher {
    _watcher: notify::RecommendedWatcher,
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Starts watching `files` (library path → the hosted controls using it).
///
/// # Errors
/// When the OS watcher cannot be set up.
pub fn watch(
    files: Vec<(PathBuf, HostedControl)>,
    shadow: Arc<ShadowDir>,
    inbox: Sender<DesktopMsg>,
    debounce: Duration,
) -> notify::Result<ReloadWatcher> {
    let mut table: HashMap<PathBuf, Watched> = HashMap::new();
    for (path, hc) in files {
        table
            .entry(canonical(&path))
            .or_insert_with(|| Watched {
                controls: Vec::new(),
            })
            .controls
            .push(hc);
    }
    let (tx, rx) = mpsc::channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if matches!(
                ev.kind,
                notify::EventKind::Create(_)
                    | notify::EventKind::Modify(_)
                    | notify::EventKind::Any
            ) {
                for p in ev.paths {
                    let _ = tx.send(p);
                }
            }
        }
    })?;
    let dirs: HashSet<PathBuf> = table
        .keys()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    for d in &dirs {
        watcher.watch(d, RecursiveMode::NonRecursive)?;
    }
    tracing::info!(files = table.len(), "watching plugin files for hot reload");
    std::thread::Builder::new()
        .name("reload-watcher".into())
        .spawn(move || debounce_loop(rx, table, shadow, inbox, debounce))
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(ReloadWatcher { _watcher: watcher })
}

fn debounce_loop(
    rx: mpsc::Receiver<PathBuf>,
    table: HashMap<PathBuf, Watched>,
    shadow: Arc<ShadowDir>,
    inbox: Sender<DesktopMsg>,
    debounce: Duration,
) {
    // Path → when it last changed.
    let mut dirty: HashMap<PathBuf, Instant> = HashMap::new();
    loop {
        let timeout = dirty
            .values()
            .map(|t| (*t + debounce).saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        match rx.recv_timeout(timeout) {
            Ok(p) => {
                let p = canonical(&p);
                if table.contains_key(&p) {
                    dirty.insert(p, Instant::now());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let settled: Vec<PathBuf> = dirty
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= debounce)
            .map(|(p, _)| p.clone())
            .collect();
        for path in settled {
            dirty.remove(&path);
            let Some(w) = table.get(&path) else { continue };
            if !path.exists() {
                // Removed (or mid-rename): wait for it to come back.
                continue;
            }
            let settled_at = Instant::now();
            for hc in &w.controls {
                // Every first-load check again: sha256 pin, permissions, ABI, versions.
                let msg = match loader::load_for(&path, &shadow, hc) {
                    Ok(library) => {
                        tracing::info!(plugin = hc.name, version = %library.meta.version, "changed library accepted; swapping it in");
                        DesktopMsg::Reload {
                            name: hc.name.clone(),
                            library,
                            changed_at: settled_at,
                        }
                    }
                    Err(e) => DesktopMsg::ReloadFailed {
                        name: hc.name.clone(),
                        reason: e.to_string(),
                    },
                };
                if inbox.send(msg).is_err() {
                    return;
                }
            }
        }
    }
}
