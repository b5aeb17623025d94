//! Start-up: loading one plugin, and `cti-host run` until it is ready.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use cti_host::loader::{self, ShadowDir};
use cti_plugin_api::PluginModRef;

/// One plugin load, split into its steps (ms).
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadSteps {
    /// `loader::load`: everything below plus the permission and semver checks.
    pub total_ms: f64,
    /// Copying the file to the private runtime folder.
    pub copy_ms: f64,
    /// Reading the copy's headers and checking its ELF header and segments.
    pub elf_ms: f64,
    /// `dlopen` (abi_stable's `lib_header_from_path`).
    pub dlopen_ms: f64,
    /// abi_stable's version and layout check (`init_root_module`).
    pub layout_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Loads `path` once the way the host does (`loader::load`), then once more
/// step by step to split the time.
///
/// # Errors
/// What the loader refused.
pub fn load_once(path: &Path, shadow: &ShadowDir) -> Result<LoadSteps, String> {
    let t = Instant::now();
    loader::load(path, shadow).map_err(|e| e.to_string())?;
    let total_ms = ms(t.elapsed());

    let copy = shadow.path().join(format!(
        "steps-{}-{}",
        std::process::id(),
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("lib.so")
    ));
    let copy = {
        // A fresh name each time: dlopen of an open path returns the old image.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        copy.with_extension(format!("{n}.so"))
    };
    let t = Instant::now();
    std::fs::copy(path, &copy).map_err(|e| e.to_string())?;
    let copy_ms = ms(t.elapsed());
    let t = Instant::now();
    let headers = loader::read_headers(&copy).map_err(|e| e.to_string())?;
    loader::check_headers(&headers.prefix, headers.len)?;
    drop(headers);
    let elf_ms = ms(t.elapsed());
    let t = Instant::now();
    let header = abi_stable::library::lib_header_from_path(&copy).map_err(|e| e.to_string())?;
    let dlopen_ms = ms(t.elapsed());
    let t = Instant::now();
    header
        .init_root_module::<PluginModRef>()
        .map_err(|e| e.to_string())?;
    let layout_ms = ms(t.elapsed());
    Ok(LoadSteps {
        total_ms,
        copy_ms,
        elf_ms,
        dlopen_ms,
        layout_ms,
    })
}

/// Spawns `cti-host run MANIFEST` and waits for its "desktop ready; ctl
/// socket listening" log line; returns the time from spawn to that line,
/// then stops it with SIGINT.
///
/// # Errors
/// When it exits or does not get ready within 30 s.
pub fn run_to_ready(host: &Path, manifest: &Path) -> Result<Duration, String> {
    let runtime = tempfile::tempdir().map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let mut child = Command::new(host)
        .arg("run")
        .arg(manifest)
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", host.display()))?;
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if line.contains("desktop ready") {
                let _ = tx.send(Ok(Instant::now()));
                // Keep draining so the child never blocks on a full pipe.
                for _ in lines.by_ref() {}
                return;
            }
            seen.push(line);
        }
        let _ = tx.send(Err(seen.join("\n")));
    });
    let result = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(at)) => Ok(at.duration_since(t0)),
        Ok(Err(log)) => Err(format!("cti-host exited before it was ready:\n{log}")),
        Err(_) => Err("cti-host was not ready within 30 s".to_owned()),
    };
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
        }
    }
    let _ = reader.join();
    result
}
