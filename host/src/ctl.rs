//! `cti-host ctl`: a command-line client for a running desktop, over a local
//! Unix socket (owner-only), as `asterisk -rx` or `fs_cli` are for theirs.
//!
//! Wire protocol: the client sends one JSON object on one line; the server
//! answers with one JSON line (or, for `events`, one line per event until
//! the client goes away).
//! - `{"op":"snapshot"}` → `{"ok":true,"snapshot":{…}}`
//! - `{"op":"restart","plugin":NAME}` → `{"ok":true,"detail":…}`: a new
//!   instance of a hosted control (a Faulted one gets a fresh restart budget)
//! - `{"op":"command","command":{"kind":"Answer","call_id":"…",…}}` →
//!   `{"ok":true,"request_id":N,"call_id":"…","detail":"…"}` or
//!   `{"ok":false,"error":"InvalidState","message":"…"}`
//! - `{"op":"events"}` → a `Snapshot` line, then one line per event (the
//!   recorder's format); events with a `seq` up to the snapshot's are in it

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use abi_stable::std_types::{ROption, RString};
use cti_plugin_api::{sdk::json, AgentState, Command, CommandKind};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::{desktop::DesktopHandle, loader::runtime_dir};

/// The socket path a desktop uses when the manifest names none.
pub fn default_socket() -> PathBuf {
    runtime_dir().join(format!("ctl-{}.sock", std::process::id()))
}

/// Finds the socket of the one running desktop.
///
/// # Errors
/// None or several desktops running.
pub fn discover() -> Result<PathBuf, String> {
    let dir = runtime_dir();
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("ctl-")
                .and_then(|r| r.strip_suffix(".sock"))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if Path::new(&format!("/proc/{pid}")).exists() || !cfg!(target_os = "linux") {
                found.push(e.path());
            }
        }
    }
    match found.len() {
        0 => Err(format!(
            "no running desktop found in {} (start one with `cti-host run MANIFEST`, or pass --socket)",
            dir.display()
        )),
        1 => Ok(found.remove(0)),
        _ => Err(format!(
            "several desktops are running; pick one with --socket: {}",
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Removes the socket file when dropped.
pub struct SocketGuard(PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds the socket (owner-only) and serves clients until the runtime ends.
///
/// # Errors
/// When the socket cannot be bound.
pub fn serve(path: &Path, desktop: DesktopHandle) -> std::io::Result<SocketGuard> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        // A socket nobody answers on is stale; a live one is an error.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by another desktop", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let desktop = desktop.clone();
            tokio::spawn(async move {
                let _ = serve_client(stream, desktop).await;
            });
        }
    });
    Ok(SocketGuard(path.to_path_buf()))
}

async fn serve_client(
    stream: tokio::net::UnixStream,
    desktop: DesktopHandle,
) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(rd).lines();
    let Some(line) = lines.next_line().await? else {
        return Ok(());
    };
    let reply = match serde_json::from_str::<Value>(&line) {
        Err(e) => json!({"ok": false, "error": "BadRequest", "message": format!("not JSON: {e}")}),
        Ok(req) => match req.get("op").and_then(Value::as_str) {
            Some("snapshot") => match desktop.snapshot().await {
                Ok(s) => {
                    let snap: Value =
                        serde_json::from_str(&json::snapshot_to_json(&s)).unwrap_or(Value::Null);
                    json!({"ok": true, "snapshot": snap})
                }
                Err(e) => error_json(&e),
            },
            Some("command") => match parse_command(req.get("command").unwrap_or(&Value::Null)) {
                Err(msg) => json!({"ok": false, "error": "BadRequest", "message": msg}),
                Ok(cmd) => match desktop.command("ctl", cmd).await {
                    Ok(o) => {
                        json!({"ok": true, "call_id": o.call_id.as_str(), "detail": o.detail.as_str()})
                    }
                    Err(e) => error_json(&e),
                },
            },
            Some("restart") => match req.get("plugin").and_then(Value::as_str) {
                None => {
                    json!({"ok": false, "error": "BadRequest", "message": "restart needs \"plugin\": the hosted control's name"})
                }
                Some(name) => match desktop.restart(name).await {
                    Ok(Ok(detail)) => json!({"ok": true, "detail": detail}),
                    Ok(Err(msg)) => json!({"ok": false, "error": "InvalidState", "message": msg}),
                    Err(e) => error_json(&e),
                },
            },
            Some("events") => {
                let mut rx = match desktop.subscribe(65_536).await {
                    Ok(rx) => rx,
                    Err(e) => {
                        let mut s = error_json(&e).to_string();
                        s.push('\n');
                        return wr.write_all(s.as_bytes()).await;
                    }
                };
                // First the state, then every change: events with a seq up
                // to the snapshot's are already in it.
                let mut buf = String::new();
                if let Ok(snap) = desktop.snapshot().await {
                    buf.push_str("{\"event\":\"Snapshot\",\"seq\":");
                    buf.push_str(&snap.seq.to_string());
                    buf.push_str(",\"snapshot\":");
                    buf.push_str(&json::snapshot_to_json(&snap));
                    buf.push_str("}\n");
                    wr.write_all(buf.as_bytes()).await?;
                }
                while let Some(ev) = rx.recv().await {
                    buf.clear();
                    json::write_event(&mut buf, &ev);
                    buf.push('\n');
                    while let Ok(more) = rx.try_recv() {
                        json::write_event(&mut buf, &more);
                        buf.push('\n');
                    }
                    wr.write_all(buf.as_bytes()).await?;
                }
                return Ok(());
            }
            _ => {
                json!({"ok": false, "error": "BadRequest", "message": "op must be snapshot, command, events or restart"})
            }
        },
    };
    let mut s = reply.to_string();
    s.push('\n');
    wr.write_all(s.as_bytes()).await
}

fn error_json(e: &cti_plugin_api::PluginError) -> Value {
    json!({"ok": false, "error": e.kind.to_string(), "message": e.message.as_str()})
}

/// Builds a command from its JSON form.
///
/// # Errors
/// What is wrong with it.
pub fn parse_command(v: &Value) -> Result<Command, String> {
    let text = |k: &str| RString::from(v.get(k).and_then(Value::as_str).unwrap_or(""));
    let kind_name = v
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("command.kind is missing")?;
    let kind = CommandKind::parse(kind_name)
        .ok_or_else(|| format!("unknown command kind \"{kind_name}\""))?;
    let mut cmd = Command::new(kind, text("call_id"));
    cmd.other_call_id = text("other_call_id");
    cmd.target = text("target");
    cmd.text = text("text");
    cmd.connector = text("connector");
    if let Some(attrs) = v.get("attrs") {
        let obj = attrs.as_object().ok_or("command.attrs must be an object")?;
        for (k, val) in obj {
            let text = val.as_str().map_or_else(|| val.to_string(), str::to_owned);
            cmd.attrs
                .push(cti_plugin_api::KeyValue::new(k.as_str(), text));
        }
    }
    if let Some(s) = v.get("agent_state").and_then(Value::as_str) {
        let state = AgentState::parse(s).ok_or_else(|| format!("unknown agent state \"{s}\""))?;
        cmd.agent_state = ROption::RSome(state);
    }
    Ok(cmd)
}

/// A blocking client connection.
pub struct Client {
    path: PathBuf,
}

impl Client {
    /// A client for the socket at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    fn connect(&self) -> Result<std::os::unix::net::UnixStream, String> {
        let s = std::os::unix::net::UnixStream::connect(&self.path).map_err(|e| {
            format!(
                "{}: cannot connect to the desktop: {e}",
                self.path.display()
            )
        })?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        Ok(s)
    }

    /// Sends one request and reads one reply.
    ///
    /// # Errors
    /// Connection or protocol failures.
    pub fn request(&self, req: &Value) -> Result<Value, String> {
        let mut s = self.connect()?;
        let mut line = req.to_string();
        line.push('\n');
        s.write_all(line.as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut reply = String::new();
        BufReader::new(s)
            .read_line(&mut reply)
            .map_err(|e| format!("receive: {e}"))?;
        serde_json::from_str(&reply)
            .map_err(|e| format!("bad reply from the desktop ({e}): {reply}"))
    }

    /// Streams event lines to `out` until the desktop stops or `out` fails.
    ///
    /// # Errors
    /// Connection failures.
    pub fn events(&self, out: &mut dyn Write) -> Result<(), String> {
        let mut s = self.connect()?;
        let _ = s.set_read_timeout(None);
        s.write_all(b"{\"op\":\"events\"}\n")
            .map_err(|e| format!("send: {e}"))?;
        let rd = BufReader::new(s);
        for line in rd.lines() {
            let line = line.map_err(|e| format!("receive: {e}"))?;
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return Ok(()); // a closed pipe (`| head`) is success
            }
        }
        Ok(())
    }
}
