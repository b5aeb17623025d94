//! Command line: `run`, `check`, `inspect`, `ctl`. Exit codes: 0 ok,
//! 1 runtime failure, 2 configuration or usage error.

use std::{io::Write, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use crate::{app, ctl, loader, manifest::LogFormat};

/// CTI Host: loads connector and control plugins and runs the agent desktop.
#[derive(Debug, Parser)]
#[command(name = "cti-host", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the desktop described by a manifest until SIGINT/SIGTERM.
    Run {
        /// The manifest (TOML).
        manifest: PathBuf,
        /// Watch plugin files and hot-reload them (as `[host] hot_reload = true`).
        #[arg(long)]
        watch: bool,
    },
    /// Check a manifest and every library it names; start nothing.
    Check {
        /// The manifest (TOML).
        manifest: PathBuf,
    },
    /// Describe a plugin library.
    Inspect {
        /// The library file (.so/.dll/.dylib).
        library: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replay a recording (the recorder control's JSON lines) through the
    /// desktop manager, with no phone system.
    Replay {
        /// The recording.
        recording: PathBuf,
        /// The manifest (its connectors are replaced by the recording; its
        /// controls run).
        #[arg(long)]
        manifest: PathBuf,
        /// Write the desktop events of the replay here (JSON lines).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Exit 1 at the first event that differs from the recording.
        #[arg(long)]
        compare: bool,
    },
    /// Run the conformance suite against a connector library.
    Verify {
        /// The library file (.so/.dll/.dylib).
        library: PathBuf,
        /// Settings for the connector (TOML text, e.g. 'port = 4444').
        #[arg(long, default_value = "")]
        settings: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Run the connector in the polling model (default: instance).
        #[arg(long)]
        polling: bool,
    },
    /// Control a running desktop.
    Ctl {
        /// The desktop's socket (default: the one running desktop).
        #[arg(long, global = true)]
        socket: Option<PathBuf>,
        /// What to do.
        #[command(subcommand)]
        action: CtlCmd,
    },
    /// The contact directory: import a CSV, list, find.
    Contacts {
        /// What to do.
        #[command(subcommand)]
        action: ContactsCmd,
    },
}

/// `ctl` actions.
#[derive(Debug, Subcommand)]
pub enum CtlCmd {
    /// List the calls.
    Calls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the agent state, or change it: ready, not-ready --reason R, logout.
    Agent {
        /// `ready`, `not-ready`, `logout` (none: show).
        state: Option<String>,
        /// Reason code for not-ready.
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the whole desktop as JSON.
    Snapshot,
    /// Start a new instance of a hosted control (connector or control): a
    /// Faulted plugin comes back with a fresh restart budget; a running one
    /// is stopped and started again (a connector adopts its live calls).
    Restart {
        /// The hosted control's name in the manifest.
        name: String,
    },
    /// Stream every desktop event as JSON lines.
    Events,
    /// Answer a ringing call.
    Answer {
        /// Call id (or its number in `ctl calls`).
        call: String,
    },
    /// Reject a ringing call.
    Reject {
        /// Call id.
        call: String,
    },
    /// Hang up.
    Hangup {
        /// Call id.
        call: String,
    },
    /// Put a call on hold.
    Hold {
        /// Call id.
        call: String,
    },
    /// Take a call off hold.
    Retrieve {
        /// Call id.
        call: String,
    },
    /// Mute the agent on a call.
    Mute {
        /// Call id.
        call: String,
    },
    /// Unmute the agent on a call.
    Unmute {
        /// Call id.
        call: String,
    },
    /// Place a call.
    Dial {
        /// Number or address.
        number: String,
        /// The connector to use (default: the first that can).
        #[arg(long)]
        connector: Option<String>,
    },
    /// Send DTMF digits.
    Dtmf {
        /// Call id.
        call: String,
        /// Digits (0-9, *, #, A-D).
        digits: String,
    },
    /// Transfer a call (blind, or a consultation call with --consult).
    Transfer {
        /// Call id.
        call: String,
        /// Number or address.
        target: String,
        /// Place a consultation call instead of a blind transfer.
        #[arg(long)]
        consult: bool,
    },
    /// Complete a consult transfer: the held call joins the consultation.
    CompleteTransfer {
        /// The held (original) call.
        held: String,
        /// The consultation call.
        consult: String,
    },
    /// Cancel a consultation: clear it and retrieve the held call.
    CancelConsult {
        /// The held (original) call.
        held: String,
        /// The consultation call.
        consult: String,
    },
    /// Merge a held call and the active call.
    Conference {
        /// The held call.
        held: String,
        /// The active call.
        active: String,
    },
    /// Swap a held call and the active call.
    Alternate {
        /// The held call.
        held: String,
        /// The active call.
        active: String,
    },
    /// End the wrap-up of a call.
    EndWrapUp {
        /// Call id.
        call: String,
    },
    /// Extend the wrap-up of a call.
    ExtendWrapUp {
        /// Call id.
        call: String,
        /// Seconds to add.
        seconds: u64,
    },
    /// Set the disposition code of a call (from the manifest's list).
    Disposition {
        /// Call id.
        call: String,
        /// Disposition code.
        code: String,
    },
    /// Send a text message on a chat interaction.
    Send {
        /// Call (interaction) id.
        call: String,
        /// The text.
        text: String,
    },
    /// Send any command as JSON (`{"kind":"Hold","call_id":"…"}`).
    Raw {
        /// The command object.
        json: String,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run { manifest, watch } => run(&manifest, watch),
        Cmd::Replay {
            recording,
            manifest,
            out,
            compare,
        } => crate::replay::main(&recording, &manifest, out.as_deref(), compare),
        Cmd::Verify {
            library,
            settings,
            json,
            polling,
        } => crate::verify::main(&library, &settings, json, polling),
        Cmd::Check { manifest } => check(&manifest),
        Cmd::Inspect { library, json } => inspect(&library, json),
        Cmd::Ctl { socket, action } => ctl_main(socket, action),
        Cmd::Contacts { action } => contacts_main(action),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn run(manifest: &std::path::Path, watch: bool) -> ExitCode {
    // Log format comes from the manifest; errors before that go to stderr.
    let mut prepared = match app::prepare(manifest) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    prepared.manifest.host.hot_reload |= watch;
    crate::privacy::set_log_numbers(prepared.manifest.host.log_numbers);
    init_logging(prepared.manifest.host.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let running = match app::start(&prepared) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let socket = prepared
        .manifest
        .host
        .ctl_socket
        .clone()
        .unwrap_or_else(ctl::default_socket);
    let handle = running.handle.clone();
    let _watcher = if prepared.manifest.host.hot_reload {
        let files = prepared
            .manifest
            .hosted_controls
            .iter()
            .zip(&prepared.libraries)
            .map(|(hc, lib)| (lib.path.clone(), hc.clone()))
            .collect();
        match crate::reload::watch(
            files,
            prepared.shadow.clone(),
            handle.inbox(),
            std::time::Duration::from_millis(prepared.manifest.host.reload_debounce_ms),
        ) {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!("cannot watch plugin files for hot reload: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let code = runtime.block_on(async move {
        let _guard = match ctl::serve(&socket, handle.clone()) {
            Ok(g) => {
                tracing::info!(socket = %socket.display(), "desktop ready; ctl socket listening");
                Some(g)
            }
            Err(e) => {
                tracing::error!("ctl socket {}: {e}", socket.display());
                None
            }
        };
        wait_for_signal().await;
        tracing::info!("stopping");
        handle.shutdown();
        0u8
    });
    if running.thread.join().is_err() {
        eprintln!("the desktop thread panicked");
        return ExitCode::from(1);
    }
    drop(prepared);
    ExitCode::from(code)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

fn check(manifest: &std::path::Path) -> ExitCode {
    let prepared = match app::prepare(manifest) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = app::check_instances(&prepared) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let m = &prepared.manifest;
    println!("{}: ok", manifest.display());
    for (hc, lib) in m.hosted_controls.iter().zip(&prepared.libraries) {
        println!(
            "  {} ({}): {} {} from {}",
            hc.name,
            hc.kind.name(),
            lib.meta.name,
            lib.meta.version,
            lib.path.display()
        );
    }
    ExitCode::SUCCESS
}

fn inspect(library: &std::path::Path, as_json: bool) -> ExitCode {
    let shadow = match loader::ShadowDir::create() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot create the runtime directory: {e}");
            return ExitCode::from(1);
        }
    };
    let lib = match loader::load(library, &shadow) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let m = &lib.meta;
    let caps: Vec<String> = m.capabilities.kinds().map(|k| k.to_string()).collect();
    if as_json {
        let v = json!({
            "path": library.display().to_string(),
            "name": m.name,
            "version": m.version.to_string(),
            "description": m.description,
            "kinds": m.kinds.names(),
            "api_version": m.api_version.to_string(),
            "capabilities": caps,
            "sha256": lib.sha256().unwrap_or_default(),
        });
        println!("{v}");
    } else {
        println!("library:      {}", library.display());
        println!("name:         {}", m.name);
        println!("version:      {}", m.version);
        println!("description:  {}", m.description);
        println!("kinds:        {}", m.kinds.names().join(", "));
        println!(
            "plugin-api:   {} (host {})",
            m.api_version,
            loader::host_api_version()
        );
        println!(
            "capabilities: {}",
            if caps.is_empty() {
                "-".to_owned()
            } else {
                caps.join(", ")
            }
        );
        println!("sha256:       {}", lib.sha256().unwrap_or_default());
    }
    ExitCode::SUCCESS
}

fn ctl_main(socket: Option<PathBuf>, action: CtlCmd) -> ExitCode {
    let path = match socket.map_or_else(ctl::discover, Ok) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let client = ctl::Client::new(path);
    match ctl_action(&client, action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn snapshot(client: &ctl::Client) -> Result<Value, String> {
    let r = client.request(&json!({"op": "snapshot"}))?;
    r.get("snapshot").cloned().ok_or_else(|| reply_error(&r))
}

fn reply_error(r: &Value) -> String {
    format!(
        "{}: {}",
        r.get("error").and_then(Value::as_str).unwrap_or("Error"),
        r.get("message")
            .and_then(Value::as_str)
            .unwrap_or("unknown error")
    )
}

/// Accepts a call id, or its 1-based number in `ctl calls`.
fn call_id(client: &ctl::Client, call: &str) -> Result<String, String> {
    let Ok(n) = call.parse::<usize>() else {
        return Ok(call.to_owned());
    };
    let snap = snapshot(client)?;
    let calls = snap
        .get("calls")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if calls
        .iter()
        .any(|c| c.get("call_id").and_then(Value::as_str) == Some(call))
    {
        return Ok(call.to_owned());
    }
    calls
        .get(n.wrapping_sub(1))
        .and_then(|c| c.get("call_id").and_then(Value::as_str))
        .map(str::to_owned)
        .ok_or_else(|| format!("no call number {n} (there are {})", calls.len()))
}

fn send(client: &ctl::Client, cmd: Value) -> Result<(), String> {
    let r = client.request(&json!({"op": "command", "command": cmd}))?;
    if r.get("ok").and_then(Value::as_bool) == Some(true) {
        let detail = r.get("detail").and_then(Value::as_str).unwrap_or("");
        let new_call = r.get("call_id").and_then(Value::as_str).unwrap_or("");
        let mut out = String::from("ok");
        if !new_call.is_empty() {
            out.push_str(&format!(" call {new_call}"));
        }
        if !detail.is_empty() {
            out.push_str(&format!(": {detail}"));
        }
        println!("{out}");
        Ok(())
    } else {
        Err(reply_error(&r))
    }
}

fn ctl_action(client: &ctl::Client, action: CtlCmd) -> Result<(), String> {
    let one = |kind: &str, call: &str| -> Result<(), String> {
        send(
            client,
            json!({"kind": kind, "call_id": call_id(client, call)?}),
        )
    };
    let two = |kind: &str, a: &str, b: &str| -> Result<(), String> {
        send(
            client,
            json!({"kind": kind, "call_id": call_id(client, a)?, "other_call_id": call_id(client, b)?}),
        )
    };
    match action {
        CtlCmd::Calls { json: as_json } => {
            let snap = snapshot(client)?;
            let calls = snap.get("calls").cloned().unwrap_or(Value::Array(vec![]));
            if as_json {
                println!("{calls}");
            } else {
                print_calls(&calls);
            }
            Ok(())
        }
        CtlCmd::Agent {
            state: None,
            json: as_json,
            ..
        } => {
            let snap = snapshot(client)?;
            let agent = snap.get("agent").cloned().unwrap_or(Value::Null);
            if as_json {
                println!("{agent}");
            } else {
                let pending = agent.get("pending").and_then(Value::as_str);
                println!(
                    "{} {}{}",
                    agent.get("agent_id").and_then(Value::as_str).unwrap_or("?"),
                    agent.get("state").and_then(Value::as_str).unwrap_or("?"),
                    pending
                        .map(|p| format!(" (pending {p})"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        CtlCmd::Agent {
            state: Some(s),
            reason,
            ..
        } => {
            let state = match s.to_ascii_lowercase().replace('_', "-").as_str() {
                "ready" => "Ready".to_owned(),
                "not-ready" | "notready" => format!("NotReady({})", reason.unwrap_or_default()),
                "logout" | "logged-out" | "loggedout" => "LoggedOut".to_owned(),
                "clear-pending" => return send(client, json!({"kind": "ClearPendingState"})),
                other => {
                    return Err(format!(
                        "unknown agent state \"{other}\" (ready, not-ready, logout, clear-pending)"
                    ))
                }
            };
            send(
                client,
                json!({"kind": "SetAgentState", "agent_state": state}),
            )
        }
        CtlCmd::Snapshot => {
            println!("{}", snapshot(client)?);
            Ok(())
        }
        CtlCmd::Restart { name } => {
            let r = client.request(&json!({"op": "restart", "plugin": name}))?;
            if r.get("ok").and_then(Value::as_bool) == Some(true) {
                println!(
                    "ok: {}",
                    r.get("detail")
                        .and_then(Value::as_str)
                        .unwrap_or("restarted")
                );
                Ok(())
            } else {
                Err(reply_error(&r))
            }
        }
        CtlCmd::Events => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            client.events(&mut out)
        }
        CtlCmd::Answer { call } => one("Answer", &call),
        CtlCmd::Reject { call } => one("Reject", &call),
        CtlCmd::Hangup { call } => one("Hangup", &call),
        CtlCmd::Hold { call } => one("Hold", &call),
        CtlCmd::Retrieve { call } => one("Retrieve", &call),
        CtlCmd::Mute { call } => one("Mute", &call),
        CtlCmd::Unmute { call } => one("Unmute", &call),
        CtlCmd::EndWrapUp { call } => one("EndWrapUp", &call),
        CtlCmd::ExtendWrapUp { call, seconds } => send(
            client,
            json!({"kind": "ExtendWrapUp", "call_id": call_id(client, &call)?, "target": seconds.to_string()}),
        ),
        CtlCmd::Disposition { call, code } => send(
            client,
            json!({"kind": "SetDisposition", "call_id": call_id(client, &call)?, "text": code}),
        ),
        CtlCmd::Dial { number, connector } => send(
            client,
            json!({"kind": "MakeCall", "target": number, "connector": connector.unwrap_or_default()}),
        ),
        CtlCmd::Dtmf { call, digits } => send(
            client,
            json!({"kind": "SendDtmf", "call_id": call_id(client, &call)?, "target": digits}),
        ),
        CtlCmd::Transfer {
            call,
            target,
            consult,
        } => send(
            client,
            json!({"kind": if consult { "Consult" } else { "BlindTransfer" }, "call_id": call_id(client, &call)?, "target": target}),
        ),
        CtlCmd::CompleteTransfer { held, consult } => two("CompleteTransfer", &held, &consult),
        CtlCmd::CancelConsult { held, consult } => two("CancelConsult", &held, &consult),
        CtlCmd::Conference { held, active } => two("Conference", &held, &active),
        CtlCmd::Alternate { held, active } => two("Alternate", &held, &active),
        CtlCmd::Send { call, text } => send(
            client,
            json!({"kind": "SendMessage", "call_id": call_id(client, &call)?, "text": text}),
        ),
        CtlCmd::Raw { json: text } => {
            let v: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
            send(client, v)
        }
    }
}

fn print_calls(calls: &Value) {
    let list = calls.as_array().cloned().unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if list.is_empty() {
        let _ = writeln!(out, "no calls");
        return;
    }
    let s = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    for (i, c) in list.iter().enumerate() {
        let allowed: Vec<String> = c
            .get("allowed")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let work = c.get("work").map(|w| s(w, "state")).unwrap_or_default();
        let _ = writeln!(
            out,
            "{:>2}. {}  {}  {} {} -> {}  {}  work={}  [{}]",
            i + 1,
            s(c, "call_id"),
            s(c, "channel"),
            s(c, "direction"),
            s(c, "ani"),
            s(c, "dnis"),
            s(c, "state"),
            work,
            allowed.join(" ")
        );
    }
}

/// `contacts` actions.
#[derive(Debug, Subcommand)]
pub enum ContactsCmd {
    /// Import contacts from a CSV file (header row: id,name,phone and any
    /// other columns as fields); existing ids are updated. Bad rows are
    /// reported as FILE:LINE: reason and skipped.
    Import {
        /// The CSV file (RFC 4180, UTF-8).
        file: PathBuf,
        /// Where the directory is.
        #[command(flatten)]
        db: DbArgs,
    },
    /// List contacts, by id.
    List {
        /// Where the directory is.
        #[command(flatten)]
        db: DbArgs,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Find contacts by phone number or address (normalised first), or by a field.
    Find {
        /// The number or address (or the value of --field).
        number: String,
        /// Search this field (a CSV column, `id` or `name`) instead of the phone.
        #[arg(long, value_name = "KEY")]
        field: Option<String>,
        /// Where the directory is.
        #[command(flatten)]
        db: DbArgs,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where the contact directory is: `--db PATH` or `--manifest MANIFEST`.
#[derive(Debug, clap::Args)]
pub struct DbArgs {
    /// The directory file (SQLite; created on first use).
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "manifest",
        required_unless_present = "manifest"
    )]
    pub db: Option<PathBuf>,
    /// Use the manifest's `[directory]` (path and default_country_code).
    #[arg(long, value_name = "MANIFEST")]
    pub manifest: Option<PathBuf>,
    /// With --db: the default country code for national numbers (default:
    /// the one the file was last used with; none for a new file).
    #[arg(long, value_name = "CC", requires = "db")]
    pub country_code: Option<String>,
}

/// The directory file and default country code of a manifest's `[directory]`.
fn db_from_manifest(path: &std::path::Path) -> Result<(PathBuf, String), String> {
    let manifest = crate::manifest::load(path).map_err(|e| e.to_string())?;
    manifest
        .directory
        .map(|d| (d.path, d.default_country_code))
        .ok_or_else(|| {
            format!(
                "{}: no [directory] section (path = \"contacts.db\"): add one or give the file with --db PATH",
                path.display()
            )
        })
}

fn open_directory(args: &DbArgs) -> Result<crate::directory::Directory, String> {
    use crate::directory::Directory;
    match (&args.db, &args.manifest) {
        (Some(db), _) => match &args.country_code {
            Some(cc) => Directory::open(db, cc),
            None => Directory::open_stored(db),
        }
        .map_err(|e| e.to_string()),
        (None, Some(manifest)) => {
            let (db, cc) = db_from_manifest(manifest)?;
            Directory::open(&db, &cc).map_err(|e| e.to_string())
        }
        (None, None) => {
            Err("give the contact directory with --db PATH or --manifest MANIFEST".into())
        }
    }
}

fn contacts_main(action: ContactsCmd) -> ExitCode {
    let db = match &action {
        ContactsCmd::Import { db, .. }
        | ContactsCmd::List { db, .. }
        | ContactsCmd::Find { db, .. } => db,
    };
    if let ContactsCmd::Import { file, .. } = &action {
        // Before the directory is created: a mistyped file name leaves nothing behind.
        if let Err(e) = std::fs::File::open(file) {
            eprintln!("{}: cannot read: {e}", file.display());
            return ExitCode::from(2);
        }
    }
    let mut dir = match open_directory(db) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match action {
        ContactsCmd::Import { file, .. } => dir.import_csv(&file).map(|report| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "imported {} contacts; skipped {} rows",
                report.imported,
                report.skipped.len()
            );
            for (line, reason) in &report.skipped {
                let _ = writeln!(out, "{}:{line}: {reason}", file.display());
            }
        }),
        ContactsCmd::List {
            limit,
            json: as_json,
            ..
        } => dir.list(limit).and_then(|list| {
            if as_json {
                println!("{}", contacts_json(&list));
            } else {
                match dir.count()? {
                    0 => println!("no contacts in {}", dir.path().display()),
                    total => {
                        print_contacts(&list);
                        println!("{} of {total} contacts", list.len());
                    }
                }
            }
            Ok(())
        }),
        ContactsCmd::Find {
            number,
            field,
            limit,
            json: as_json,
            ..
        } => {
            let (what, found) = match &field {
                Some(key) => (
                    format!("{key} = {}", number.trim()),
                    dir.find_by_field(key, &number, limit),
                ),
                None => (dir.normalize(&number), dir.find_by_phone(&number, limit)),
            };
            found.map(|list| {
                if as_json {
                    println!("{}", contacts_json(&list));
                } else {
                    match list.len() {
                        0 => println!("{what}: no contact"),
                        1 => println!("{what}: 1 contact"),
                        n => println!("{what}: {n} contacts"),
                    }
                    print_contacts(&list);
                }
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn contacts_json(list: &[crate::directory::ContactRecord]) -> Value {
    Value::Array(
        list.iter()
            .map(|c| {
                let fields: serde_json::Map<String, Value> = c
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                json!({"id": c.id, "name": c.name, "phone": c.phone, "fields": fields})
            })
            .collect(),
    )
}

/// One contact a line: id, name, phone, fields, in aligned columns.
fn print_contacts(list: &[crate::directory::ContactRecord]) {
    let one_line = |s: &str| s.replace(['\r', '\n'], " ");
    let width = |f: &dyn Fn(&crate::directory::ContactRecord) -> usize| {
        list.iter().map(f).max().unwrap_or(0)
    };
    let wid = width(&|c| c.id.chars().count());
    let wname = width(&|c| c.name.chars().count());
    let wphone = width(&|c| c.phone.chars().count());
    let mut out = std::io::stdout().lock();
    for c in list {
        let fields: Vec<String> = c
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={}", one_line(v)))
            .collect();
        let line = format!(
            "{:<wid$}  {:<wname$}  {:<wphone$}  {}",
            c.id,
            one_line(&c.name),
            c.phone,
            fields.join(" ")
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
}
