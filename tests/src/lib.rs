//! Harness for end-to-end tests: runs the real `cti-host` binary with real
//! plugin libraries and a manifest written by the test, then reads what the
//! recorder control wrote and drives the desktop with `cti-host ctl`.
//!
//! Binaries come from the cargo profile the tests were built with
//! (`target/<profile>/`); `scripts/test.sh` builds the workspace first. Every
//! wait has a timeout and fails with what it was waiting for and what it saw.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod sip;
pub mod web;
pub mod xmpp;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The folder holding `cti-host` and the plugin libraries: the profile
/// directory of this test binary (`target/<profile>`), or `CTI_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CTI_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf();
    let host = dir.join("cti-host");
    assert!(
        host.exists(),
        "{} is missing: build the workspace first (`cargo build --release --workspace`; scripts/test.sh does it)",
        host.display()
    );
    dir
}

/// The `cti-host` binary.
pub fn cti_host() -> PathBuf {
    bin_dir().join("cti-host")
}

/// A plugin library in the bin dir, by base name (`sim_connector`).
pub fn plugin(base: &str) -> PathBuf {
    let p = bin_dir().join(format!("lib{base}.so"));
    assert!(
        p.exists(),
        "{} is missing: build the workspace first",
        p.display()
    );
    p
}

/// Runs `cti-host` with arguments and waits (≤ 60 s).
pub fn run_cli(args: &[&str]) -> Output {
    let mut child = Command::new(cti_host())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cti-host");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(_status) = child.try_wait().expect("wait") {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cti-host {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Text of a process's stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Text of a process's stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A temporary folder with a manifest in it.
pub struct Scratch {
    /// The folder (removed on drop).
    pub dir: tempfile::TempDir,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    /// A new folder.
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("cti-e2e-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    /// A path inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file inside it; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(&p, text).expect("write");
        p
    }

    /// Writes a manifest: `{bin}` becomes the plugin folder, `{dir}` this
    /// folder, `{recorder}` / `{recorder2}` recorder paths, `{socket}` the
    /// ctl socket.
    pub fn manifest(&self, name: &str, text: &str) -> PathBuf {
        let text = self.expand(text);
        self.write(name, &text)
    }

    /// Expands the placeholders of [`Scratch::manifest`].
    pub fn expand(&self, text: &str) -> String {
        text.replace("{bin}", &bin_dir().display().to_string())
            .replace("{dir}", &self.dir.path().display().to_string())
            .replace(
                "{recorder}",
                &self.path("events.jsonl").display().to_string(),
            )
            .replace(
                "{recorder2}",
                &self.path("events2.jsonl").display().to_string(),
            )
            .replace("{socket}", &self.path("ctl.sock").display().to_string())
    }
}

/// Manifest pieces most end-to-end tests share (placeholders as in
/// [`Scratch::manifest`]).
pub mod parts {
    /// `[host]` with the built plugins and the scratch folder's ctl socket.
    pub const HOST: &str = "[host]\nplugin_dir = \"{bin}\"\nctl_socket = \"{socket}\"\n";

    /// The recorder control writing to `{recorder}` (what [`crate::Host::events`]
    /// reads).
    pub const RECORDER: &str = "[[hosted_control]]\nname = \"Recorder\"\ntype = \"control\"\nlibrary = \"recorder_control\"\n[hosted_control.settings]\npath = \"{recorder}\"\n";

    /// The simulator as hosted control "Phone", playing
    /// `{dir}/scenario.toml` with far ends that never hang up, plus `extra`
    /// settings lines.
    pub fn scenario_phone(extra: &str) -> String {
        format!(
            "[[hosted_control]]\nname = \"Phone\"\ntype = \"connector\"\nlibrary = \"sim_connector\"\n[hosted_control.settings]\nscenario = \"{{dir}}/scenario.toml\"\ntalk_time_secs = [0.0, 0.0]\n{extra}\n"
        )
    }

    /// The XMPP connector as hosted control "Chat" (channel `chat`) with
    /// `settings` (see `xmpp::Prosody::connector_settings`).
    pub fn chat(settings: &str) -> String {
        format!(
            "[[hosted_control]]\nname = \"Chat\"\ntype = \"connector\"\nlibrary = \"xmpp_connector\"\nchannel = \"chat\"\n[hosted_control.settings]\n{settings}\n"
        )
    }

    /// The web control on `port` (0: any free one) with sign-in `token`.
    pub fn web(port: u16, token: &str) -> String {
        format!(
            "[[hosted_control]]\nname = \"Web\"\ntype = \"control\"\nlibrary = \"web_control\"\n[hosted_control.settings]\nport = {port}\ntoken = \"{token}\"\n"
        )
    }
}

/// A running `cti-host run`.
pub struct Host {
    child: Option<Child>,
    /// Its scratch folder (manifest, recordings, socket, logs).
    pub scratch: Scratch,
    /// The recorder's file.
    pub recorder: PathBuf,
    /// The ctl socket.
    pub socket: PathBuf,
    /// stdout and stderr of the host.
    pub log: PathBuf,
}

impl Host {
    /// Writes `manifest` (see [`Scratch::manifest`]) and starts the host;
    /// waits until its ctl socket answers.
    pub fn start(manifest: &str) -> Host {
        Self::start_in(Scratch::new(), manifest)
    }

    /// Like [`Host::start`], in an existing scratch folder.
    pub fn start_in(scratch: Scratch, manifest: &str) -> Host {
        let path = scratch.manifest("desktop.toml", manifest);
        let log = scratch.path("host.log");
        let out = fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(cti_host())
            .arg("run")
            .arg(&path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn cti-host run");
        let mut host = Host {
            child: Some(child),
            recorder: scratch.path("events.jsonl"),
            socket: scratch.path("ctl.sock"),
            log,
            scratch,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&host.socket).is_err() {
            if !host.is_running() {
                panic!("cti-host exited before it was ready:\n{}", host.log_text());
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after 20 s waiting for the ctl socket\n--- host log ---\n{}",
                    host.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        host
    }

    /// After the host stopped: `cti-host replay` of its recording through
    /// the same manifest (with every `(from, to)` of `renames` applied, so
    /// the replay's own recorder and other outputs go elsewhere) reproduces
    /// every recorded event in order.
    pub fn assert_replays_identically(&self, renames: &[(&str, &str)]) {
        let mut manifest =
            fs::read_to_string(self.scratch.path("desktop.toml")).expect("the manifest");
        for (from, to) in [("events.jsonl", "replay-events.jsonl")]
            .iter()
            .chain(renames)
        {
            manifest = manifest.replace(from, to);
        }
        let replay = self.scratch.write("replay.toml", &manifest);
        let o = run_cli(&[
            "replay",
            self.recorder.to_str().expect("utf-8 path"),
            "--manifest",
            replay.to_str().expect("utf-8 path"),
            "--compare",
        ]);
        assert!(
            o.status.success() && stdout(&o).contains("identical"),
            "the recording does not replay identically:\n{}{}",
            stdout(&o),
            stderr(&o)
        );
    }

    /// The host's combined stdout/stderr so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `cond` every 10 ms until it holds; panics after `timeout` with
    /// `what` and the host's log.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if cond() {
                return;
            }
            if let Some(child) = &self.child {
                // A host that died will never satisfy the condition.
                let _ = child;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- host log ---\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every event the recorder wrote so far.
    pub fn events(&self) -> Vec<Value> {
        read_jsonl(&self.recorder)
    }

    /// Waits for the first recorded event matching `pred`.
    pub fn wait_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_event_within(what, Duration::from_secs(15), pred)
    }

    /// Waits for the first recorded event matching `pred`, up to `timeout`.
    pub fn wait_event_within(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut tail = Tail::new(&self.recorder);
        let mut seen: Vec<Value> = Vec::new();
        let deadline = Instant::now() + timeout;
        loop {
            for v in tail.read() {
                if pred(&v) {
                    return v;
                }
                seen.push(v);
            }
            if Instant::now() > deadline {
                let last: Vec<String> = seen
                    .iter()
                    .rev()
                    .take(15)
                    .rev()
                    .map(Value::to_string)
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- last recorded events ---\n{}\n--- host log ---\n{}",
                    last.join("\n"),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Runs `cti-host ctl --socket <socket> ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut all = vec!["ctl", "--socket"];
        let sock = self.socket.display().to_string();
        all.push(&sock);
        all.extend_from_slice(args);
        run_cli(&all)
    }

    /// Runs a ctl command that must succeed.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        assert!(
            o.status.success(),
            "cti-host ctl {args:?} failed ({}): {}{}\n--- host log ---\n{}",
            o.status,
            stdout(&o),
            stderr(&o),
            self.log_text()
        );
        stdout(&o)
    }

    /// The host's resident memory (VmRSS) in KiB.
    pub fn rss_kib(&self) -> u64 {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return 0;
        };
        fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// True while the host process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Sends `signal` and waits (≤ 15 s) for the exit status.
    pub fn stop_with(&mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().expect("host already stopped");
        send_signal(child.id(), signal);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "cti-host did not exit within 15 s of signal {signal}\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGINT, and the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_with(libc::SIGINT)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends a signal to a process.
pub fn send_signal(pid: u32, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Reads a JSON-lines file (a missing file is empty; a torn last line is
/// left for later).
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let Ok(f) = fs::File::open(path) else {
        return Vec::new();
    };
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

/// Follows a JSON-lines file as it grows.
pub struct Tail {
    path: PathBuf,
    pos: u64,
    partial: String,
}

impl Tail {
    /// Follows `path` from its start.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            pos: 0,
            partial: String::new(),
        }
    }

    /// The complete lines written since the last call.
    pub fn read(&mut self) -> Vec<Value> {
        let Ok(mut f) = fs::File::open(&self.path) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return Vec::new();
        }
        let mut buf = String::new();
        let Ok(n) = f.read_to_string(&mut buf) else {
            return Vec::new();
        };
        self.pos += n as u64;
        self.partial.push_str(&buf);
        let mut out = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            if let Ok(v) = serde_json::from_str(line.trim()) {
                out.push(v);
            }
        }
        out
    }
}

/// A string field of an event.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A number field of an event.
pub fn n(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

static FIXTURE_LOCK: Mutex<()> = Mutex::new(());

/// Builds (once, cached in `target/fixtures`) a connector plugin against a
/// copy of `cti-plugin-api` whose version is `api_version`: a real plugin
/// of another plugin-api release. Returns the library path.
pub fn build_api_variant(api_version: &str) -> PathBuf {
    let _guard = FIXTURE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let ws = workspace();
    let tag = api_version.replace('.', "_");
    let root = ws
        .join("target")
        .join("fixtures")
        .join(format!("api-{tag}"));
    let lib = root
        .join("target")
        .join("debug")
        .join("libapi_variant_connector.so");
    let api = root.join("plugin-api");
    let plug = root.join("plugin");
    fs::create_dir_all(api.join("src")).expect("mkdir");
    fs::create_dir_all(plug.join("src")).expect("mkdir");
    copy_dir(&ws.join("plugin-api").join("src"), &api.join("src"));
    write_if_changed(
        &api.join("Cargo.toml"),
        &format!(
            "[package]\nname = \"cti-plugin-api\"\nversion = \"{api_version}\"\nedition = \"2021\"\n\n[dependencies]\nabi_stable = \"0.11.3\"\nserde = {{ version = \"1\", features = [\"derive\"] }}\ntoml = \"0.8\"\n"
        ),
    );
    write_if_changed(
        &plug.join("Cargo.toml"),
        "[package]\nname = \"api-variant-connector\"\nversion = \"0.1.0\"\nedition = \"2021\"\ndescription = \"test fixture built against another cti-plugin-api release\"\n\n[lib]\nname = \"api_variant_connector\"\ncrate-type = [\"cdylib\"]\n\n[dependencies]\ncti-plugin-api = { path = \"../plugin-api\" }\nabi_stable = \"0.11.3\"\nserde = { version = \"1\", features = [\"derive\"] }\n",
    );
    let src = fs::read_to_string(ws.join("plugins/template-connector/src/lib.rs"))
        .expect("template source");
    write_if_changed(&plug.join("src/lib.rs"), &src);
    write_if_changed(
        &root.join("Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"plugin-api\", \"plugin\"]\n",
    );
    if !root.join("Cargo.lock").exists() {
        fs::copy(ws.join("Cargo.lock"), root.join("Cargo.lock")).expect("copy Cargo.lock");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--offline", "-p", "api-variant-connector"])
        .current_dir(&root)
        .env_remove("CARGO_TARGET_DIR")
        .env("CARGO_TARGET_DIR", root.join("target"))
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building the plugin-api {api_version} fixture failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lib.exists(), "{} was not built", lib.display());
    lib
}

/// Builds (cached in `target/fixtures`) another build of a workspace plugin
/// with its version changed to `version`: the "rebuilt plugin" of hot-reload
/// tests. `crate_dir` is relative to the workspace (`plugins/sim-connector`),
/// `lib` the library's base name (`sim_connector`).
pub fn build_plugin_variant(crate_dir: &str, lib: &str, version: &str) -> PathBuf {
    let _guard = FIXTURE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let ws = workspace();
    let tag = format!("{lib}-{}", version.replace('.', "_"));
    let root = ws.join("target").join("fixtures").join(&tag);
    let krate = root.join("crate");
    copy_dir(&ws.join(crate_dir).join("src"), &krate.join("src"));
    let manifest =
        fs::read_to_string(ws.join(crate_dir).join("Cargo.toml")).expect("crate manifest");
    let manifest = manifest.replacen(
        "version = \"0.1.0\"",
        &format!("version = \"{version}\""),
        1,
    );
    write_if_changed(&krate.join("Cargo.toml"), &manifest);
    let root_toml = fs::read_to_string(ws.join("Cargo.toml")).expect("workspace manifest");
    let shared = root_toml
        .split("[workspace.package]")
        .nth(1)
        .and_then(|rest| rest.split("[profile").next())
        .expect("[workspace.package] in the root Cargo.toml");
    let shared = shared.replace(
        "path = \"plugin-api\"",
        &format!("path = \"{}\"", ws.join("plugin-api").display()),
    );
    write_if_changed(
        &root.join("Cargo.toml"),
        &format!(
            "[workspace]\nresolver = \"2\"\nmembers = [\"crate\"]\n\n[workspace.package]{shared}"
        ),
    );
    if !root.join("Cargo.lock").exists() {
        fs::copy(ws.join("Cargo.lock"), root.join("Cargo.lock")).expect("copy Cargo.lock");
    }
    let target = ws.join("target").join("fixtures").join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--offline", "--lib"])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building {crate_dir} {version} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = target.join("debug").join(format!("lib{lib}.so"));
    // Keep each variant's file apart: other variants build to the same name.
    let kept = root.join(format!("lib{lib}.so"));
    fs::copy(&built, &kept).expect("keep the variant");
    kept
}

/// Builds (cached in `target/fixtures`) `tests/fixtures/compat-plugin`, a
/// connector and control written against the frozen cti-plugin-api 1.0.0
/// in `tests/fixtures/plugin-api-1.0.0`: a plugin "built before" every later
/// plugin-api change. Returns the library path.
pub fn build_compat_plugin() -> PathBuf {
    let _guard = FIXTURE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let ws = workspace();
    let root = ws.join("target").join("fixtures").join("compat-1_0_0");
    for dir in ["plugin-api-1.0.0", "compat-plugin"] {
        let from = ws.join("tests").join("fixtures").join(dir);
        copy_dir(&from.join("src"), &root.join(dir).join("src"));
        let toml = fs::read_to_string(from.join("Cargo.toml")).expect("fixture manifest");
        write_if_changed(&root.join(dir).join("Cargo.toml"), &toml);
    }
    write_if_changed(
        &root.join("Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"plugin-api-1.0.0\", \"compat-plugin\"]\n",
    );
    if !root.join("Cargo.lock").exists() {
        fs::copy(ws.join("Cargo.lock"), root.join("Cargo.lock")).expect("copy Cargo.lock");
    }
    let target = ws.join("target").join("fixtures").join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--offline", "-p", "compat-plugin"])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building the plugin-api 1.0.0 compatibility fixture failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug").join("libcompat_plugin.so")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            let text = fs::read(e.path()).expect("read");
            if fs::read(&dst).ok().as_deref() != Some(&text[..]) {
                fs::write(&dst, text).expect("write");
            }
        }
    }
}

fn write_if_changed(path: &Path, text: &str) {
    if fs::read_to_string(path).ok().as_deref() != Some(text) {
        fs::write(path, text).expect("write");
    }
}
