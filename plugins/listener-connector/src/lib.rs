//! listener-connector: USD's generic listener. Any system — an IVR, a
//! legacy PBX, a CRM button, a test script — raises an interaction over
//! HTTP, later updates its call data or clears it; the agent answers,
//! rejects or ends it like any other.
//!
//! # HTTP API (every request needs `Authorization: Bearer <token>`)
//! | request | does | answers |
//! |---|---|---|
//! | `POST /interactions` (JSON `{"ani","dnis","type"/"channel","data":{k: v},"id"?}` or form fields; other form fields are call data) | offers a new interaction (`Delivered`) | 201 `{"id","state",…}` + `Location` |
//! | `GET /interactions`, `GET /interactions/{id}` | lists / shows | 200 |
//! | `PATCH /interactions/{id}` (`{"data":{…},"dnis"?,"type"?}` or form) | merges call data | 200 |
//! | `DELETE /interactions/{id}` | the source ends it (`ConnectionCleared` + `CallCleared`) | 200 |
//!
//! Refusals are JSON `{"error": "…"}`: 400 (malformed, missing `ani`,
//! limits), 401 (token), 404 (no such interaction or route), 405, 409 (an
//! `id` in use), 413 (body over `max_body_bytes`), 415 (not JSON or form),
//! 503 (`max_interactions` open). A refused request changes nothing.
//!
//! # Agent commands
//! `Answer` → `Established` (Connected); `Reject` → `ConnectionCleared`
//! (party = agent, `Rejected`) + `CallCleared`; `Hangup` → the same with
//! `Hangup`. The source system sees the state with `GET`.
//!
//! # Settings
//! - `token` or `token_file` (required): the bearer token (compared in
//!   constant time, never logged).
//! - `bind` (default `127.0.0.1`), `port` (default 0: a free port, logged).
//! - `max_body_bytes` (16384), `max_interactions` (1000).
#![deny(unsafe_code)]

pub mod store;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard, PoisonError},
    thread::JoinHandle,
    time::Duration,
};

use axum::{
    body::{to_bytes, Body},
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use cti_plugin_api::sdk::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub use store::{Fields, Limits, Refusal, Store};

/// The commands the listener supports.
pub const CAPABILITIES: Capabilities = Capabilities::from_kinds(&[
    CommandKind::ANSWER,
    CommandKind::REJECT,
    CommandKind::HANGUP,
]);

/// Raises an event; false when the host refused it.
pub type EmitFn = Arc<dyn Fn(ConnectorEvent) -> bool + Send + Sync>;
/// Logs.
pub type LogFn = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Raw {
    bind: Option<String>,
    port: Option<u16>,
    token: Option<String>,
    token_file: Option<String>,
    max_body_bytes: Option<usize>,
    max_interactions: Option<usize>,
}

/// The checked settings.
#[derive(Clone)]
pub struct ListenerSettings {
    /// Address to listen on.
    pub bind: IpAddr,
    /// Port (0: any free one).
    pub port: u16,
    /// The bearer token.
    pub token: String,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Limits on interactions and their data.
    pub limits: Limits,
}

impl std::fmt::Debug for ListenerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSettings")
            .field("bind", &self.bind)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

fn bad(msg: impl Into<String>) -> PluginError {
    PluginError::new(ErrorKind::BAD_SETTINGS, format!("settings: {}", msg.into()))
}

impl ListenerSettings {
    /// Parses and checks the settings.
    ///
    /// # Errors
    /// `BadSettings` naming the key (never the token).
    pub fn from_settings(settings: &Settings) -> Result<Self, PluginError> {
        let raw: Raw = settings.parse()?;
        let token = match (raw.token, raw.token_file) {
            (Some(_), Some(_)) => return Err(bad("give `token` or `token_file`, not both")),
            (Some(t), None) => t,
            (None, Some(f)) => std::fs::read_to_string(&f)
                .map_err(|e| bad(format!("`token_file` {f}: {e}")))?
                .trim()
                .to_owned(),
            (None, None) => {
                return Err(bad(
                    "`token` (or `token_file`) is required: callers send it as Authorization: Bearer <token>",
                ))
            }
        };
        if token.len() < 16 {
            return Err(bad("the token must have at least 16 characters"));
        }
        let bind_text = raw.bind.unwrap_or_else(|| "127.0.0.1".into());
        let bind: IpAddr = bind_text
            .parse()
            .map_err(|_| bad(format!("`bind` \"{bind_text}\" is not an IP address")))?;
        let max_body_bytes = raw.max_body_bytes.unwrap_or(16 * 1024);
        if !(256..=1 << 20).contains(&max_body_bytes) {
            return Err(bad("`max_body_bytes` must be between 256 and 1048576"));
        }
        let max_interactions = raw.max_interactions.unwrap_or(1000);
        if max_interactions == 0 {
            return Err(bad("`max_interactions` must be positive"));
        }
        Ok(Self {
            bind,
            port: raw.port.unwrap_or(0),
            token,
            max_body_bytes,
            limits: Limits {
                max_interactions,
                ..Limits::default()
            },
        })
    }
}

pub use cti_plugin_api::sdk::constant_time_eq;

/// What the HTTP handlers and `execute` share.
struct Shared {
    store: Mutex<Store>,
    emit: EmitFn,
    token: String,
    max_body: usize,
}

fn lock(m: &Mutex<Store>) -> MutexGuard<'_, Store> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Raises events in order; false when the host refused one.
    fn raise(&self, events: Vec<ConnectorEvent>) -> bool {
        events.into_iter().all(|e| (self.emit)(e))
    }
}

fn error(status: u16, reason: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = (code, Json(json!({ "error": reason }))).into_response();
    if status == 401 {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

fn refused(r: Refusal) -> Response {
    error(r.status, &r.reason)
}

/// The 401 response when the request lacks the right token.
fn unauthorized(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.trim().as_bytes(), s.token.as_bytes()) {
        None
    } else {
        Some(error(
            401,
            "missing or wrong token (Authorization: Bearer <token>)",
        ))
    }
}

/// Reads the body (within the limit) as JSON or form fields.
async fn fields(s: &Shared, headers: &HeaderMap, body: Body) -> Result<Fields, Refusal> {
    let too_big = || Refusal {
        status: 413,
        reason: format!("the body is over {} bytes", s.max_body),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > s.max_body) {
        return Err(too_big());
    }
    let bytes = to_bytes(body, s.max_body).await.map_err(|_| too_big())?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ctype.as_str() {
        "application/json" => Fields::from_json(&bytes),
        "application/x-www-form-urlencoded" => Fields::from_form(&bytes),
        "" if bytes.is_empty() => Err(Refusal {
            status: 400,
            reason: "an empty body".into(),
        }),
        other => Err(Refusal {
            status: 415,
            reason: format!(
                "content type \"{other}\" is not application/json or application/x-www-form-urlencoded"
            ),
        }),
    }
}

type St = State<Arc<Shared>>;

async fn create(State(s): St, headers: HeaderMap, body: Body) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let f = match fields(&s, &headers, body).await {
        Ok(f) => f,
        Err(r) => return refused(r),
    };
    let mut store = lock(&s.store);
    let (id, events) = match store.create(f) {
        Ok(x) => x,
        Err(r) => return refused(r),
    };
    // Raised under the lock, so events of one interaction stay in order.
    if !s.raise(events) {
        store.forget(&id);
        return error(503, "the desktop is not accepting interactions (stopping)");
    }
    let body = store.json(&id).unwrap_or(Value::Null);
    drop(store);
    let mut r = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/interactions/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn list(State(s): St, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    Json(lock(&s.store).list_json()).into_response()
}

async fn show(State(s): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    match lock(&s.store).json(&id) {
        Some(v) => Json(v).into_response(),
        None => error(404, &format!("no interaction \"{id}\"")),
    }
}

async fn update(State(s): St, headers: HeaderMap, Path(id): Path<String>, body: Body) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let f = match fields(&s, &headers, body).await {
        Ok(f) => f,
        Err(r) => return refused(r),
    };
    let mut store = lock(&s.store);
    match store.update(&id, f) {
        Ok(events) => {
            s.raise(events);
            Json(store.json(&id).unwrap_or(Value::Null)).into_response()
        }
        Err(r) => refused(r),
    }
}

async fn clear(State(s): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let mut store = lock(&s.store);
    let before = store.json(&id);
    match store.clear(&id) {
        Ok(events) => {
            s.raise(events);
            let mut v = before.unwrap_or(Value::Null);
            v["state"] = Value::String("Null".into());
            Json(v).into_response()
        }
        Err(r) => refused(r),
    }
}

async fn fallback(State(s): St, method: Method, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let _ = method;
    error(404, "no such resource (see /interactions)")
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/interactions", get(list).post(create))
        .route("/interactions/{id}", get(show).patch(update).delete(clear))
        .fallback(fallback)
        .method_not_allowed_fallback(|| async { error(405, "method not allowed here") })
        .with_state(shared)
}

struct Running {
    shutdown: oneshot::Sender<()>,
    done: std_mpsc::Receiver<()>,
    thread: JoinHandle<()>,
}

/// The listener connector.
pub struct Listener {
    cfg: ListenerSettings,
    shared: Arc<Shared>,
    log: LogFn,
    running: Option<Running>,
    /// Where it listens, once started.
    pub addr: Option<SocketAddr>,
}

impl Listener {
    /// A listener raising events through `emit`.
    pub fn with_parts(cfg: ListenerSettings, agent: &str, emit: EmitFn, log: LogFn) -> Self {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(cfg.limits, agent)),
            emit,
            token: cfg.token.clone(),
            max_body: cfg.max_body_bytes,
        });
        Self {
            cfg,
            shared,
            log,
            running: None,
            addr: None,
        }
    }

    fn stop_server(&mut self) {
        let Some(r) = self.running.take() else {
            return;
        };
        let _ = r.shutdown.send(());
        if r.done.recv_timeout(Duration::from_secs(3)).is_ok() {
            let _ = r.thread.join();
        } else {
            (self.log)(
                LogLevel::Warn,
                "listener-connector: the HTTP server did not stop in time; abandoned",
            );
        }
    }
}

impl NewConnector for Listener {
    fn new(host: Host, settings: Settings) -> Result<Self, PluginError> {
        let cfg = ListenerSettings::from_settings(&settings)?;
        let agent = host.hosted().agent_id.into_string();
        let emit_host = host.clone();
        let emit: EmitFn = Arc::new(move |e| match emit_host.emit(e) {
            Ok(()) => true,
            Err(err) => {
                emit_host.warn(&format!("listener-connector: event dropped: {err}"));
                false
            }
        });
        let log: LogFn = Arc::new(move |level, msg| host.log(level, msg));
        Ok(Self::with_parts(cfg, &agent, emit, log))
    }
}

impl Connector for Listener {
    const CAPABILITIES: Capabilities = CAPABILITIES;

    fn start(&mut self, calls: Vec<CallInfo>) -> Result<(), PluginError> {
        self.stop_server();
        lock(&self.shared.store).adopt(&calls);
        let listener =
            std::net::TcpListener::bind((self.cfg.bind, self.cfg.port)).map_err(|e| {
                PluginError::new(
                    ErrorKind::INTERNAL,
                    format!("cannot listen on {}:{}: {e}", self.cfg.bind, self.cfg.port),
                )
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| PluginError::new(ErrorKind::INTERNAL, e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| PluginError::new(ErrorKind::INTERNAL, e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PluginError::new(ErrorKind::INTERNAL, format!("runtime: {e}")))?;
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = std_mpsc::channel();
        let app = router(Arc::clone(&self.shared));
        let log = Arc::clone(&self.log);
        let thread = std::thread::Builder::new()
            .name("listener-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            log(LogLevel::Error, &format!("listener-connector: {e}"));
                            return;
                        }
                    };
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = shutdown_rx.await;
                        })
                        .await;
                    if let Err(e) = served {
                        log(LogLevel::Error, &format!("listener-connector: {e}"));
                    }
                });
                drop(runtime);
                let _ = done_tx.send(());
            })
            .map_err(|e| PluginError::new(ErrorKind::INTERNAL, format!("thread: {e}")))?;
        self.running = Some(Running {
            shutdown: shutdown_tx,
            done: done_rx,
            thread,
        });
        self.addr = Some(addr);
        (self.log)(
            LogLevel::Info,
            &format!("listener-connector listening on http://{addr}/interactions"),
        );
        if !(self.shared.emit)(
            ConnectorEvent::new(EventKind::LINK_UP, "", ConnectionState::Null)
                .with_cause(format!("listening on {addr}")),
        ) {
            return Err(PluginError::new(
                ErrorKind::UNAVAILABLE,
                "the host is stopping",
            ));
        }
        Ok(())
    }

    fn execute(&mut self, command: &Command) -> Result<Outcome, PluginError> {
        let mut store = lock(&self.shared.store);
        let events = store.execute(command)?;
        self.shared.raise(events);
        Ok(Outcome::default())
    }

    fn calls(&self) -> Vec<CallInfo> {
        lock(&self.shared.store).calls()
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        self.stop_server();
        Ok(())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop_server();
    }
}

cti_plugin_api::export_plugin!(connector = Listener);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let ok = ListenerSettings::from_settings(&Settings::from_toml(
            "token = \"0123456789abcdef\"\nport = 8089",
        ))
        .unwrap();
        assert_eq!(ok.port, 8089);
        assert_eq!(ok.bind.to_string(), "127.0.0.1");
        assert!(!format!("{ok:?}").contains("0123456789abcdef"));
        for (text, want) in [
            ("", "`token`"),
            ("token = \"short\"", "at least 16"),
            (
                "token = \"0123456789abcdef\"\nbind = \"localhost\"",
                "not an IP",
            ),
            (
                "token = \"0123456789abcdef\"\nmax_body_bytes = 1",
                "max_body_bytes",
            ),
            ("token = \"0123456789abcdef\"\nport = 70000", "u16"),
            ("token = \"0123456789abcdef\"\nextra = 1", "extra"),
        ] {
            let e = ListenerSettings::from_settings(&Settings::from_toml(text)).unwrap_err();
            assert!(e.message.contains(want), "{text}: {e}");
            assert!(!e.message.contains("0123456789abcdef"));
        }
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
