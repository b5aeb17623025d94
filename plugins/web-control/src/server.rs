//! The HTTP server: the page, its assets, sign-in, and the WebSocket.
//!
//! It runs on its own current-thread tokio runtime on its own thread, started
//! by the control's `start` and stopped (gracefully, joined, under a second)
//! by its `stop`.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /` | signed in | the desktop page |
//! | `GET /` | anyone else | 401 with a sign-in form (no desktop content) |
//! | `GET /?token=T` | anyone | right token: cookie + 303 to `/`; wrong: 401 |
//! | `POST /login` | same-origin form | `token=T`, as above |
//! | `POST /logout` | same origin | clears the cookie, 303 to `/` |
//! | `GET /app.js` | signed in | the page's script |
//! | `GET /app.css` | anyone | the style sheet (no data in it) |
//! | `GET /session` | anyone | 204 when signed in, else 401 (used after a failed reconnect) |
//! | `GET /ws` | signed in, same origin | the WebSocket (403 for a foreign `Origin`) |
//!
//! Every response carries `Content-Security-Policy` (no inline script or
//! style, nothing from elsewhere), `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY` and
//! `Cache-Control: no-store`; a request naming an unexpected `Host` gets 421.
//!
//! # WebSocket protocol
//! Server → page, one JSON object per text message:
//! - `{"type":"snapshot","now_ms","instance","version","snapshot":{…}}` —
//!   the whole desktop (first message; again after a resync or a lag);
//! - `{"type":"event","event":{…}}` — every desktop event, in order (the
//!   recorder's JSON form);
//! - `{"type":"result","ref","request_id","ok","command","cause","text","call_id"}`
//!   — the outcome of this page's command `ref`;
//! - `{"type":"tick","now_ms"}` — every 10 s (clock and liveness).
//!
//! Page → server: `{"op":"command","ref":N,"command":{"kind":"Answer","call_id":"…"}}`
//! (the command's JSON form is `cti-host ctl`'s), or `{"op":"snapshot"}`.

use std::{
    net::SocketAddr,
    sync::{mpsc as std_mpsc, Arc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use axum::{
    extract::{
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
        Query, Request, State,
    },
    http::{
        header::{self, HeaderMap, HeaderName, HeaderValue},
        StatusCode,
    },
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Form, Router,
};
use cti_plugin_api::sdk::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast::error::RecvError, watch};

use crate::{
    auth::Gate,
    hub::{now_ms, parse_command, Hub, Outcome},
    settings::WebSettings,
};

/// The page.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");
/// Its script.
pub const APP_JS: &str = include_str!("../assets/app.js");
/// Its style sheet.
pub const APP_CSS: &str = include_str!("../assets/app.css");

/// The Content-Security-Policy of every response.
pub const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A wrong token waits this long before the answer (slows guessing).
const FAIL_DELAY: Duration = Duration::from_millis(300);
/// The largest message a page may send.
const MAX_MESSAGE: usize = 64 * 1024;
/// How often a tab is sent a `tick`.
const TICK: Duration = Duration::from_secs(10);

/// What every handler shares.
pub struct App {
    hub: Arc<Hub>,
    gate: Gate,
    host: Host,
    max_clients: usize,
    shutdown: watch::Receiver<bool>,
}

impl App {
    fn signed_in(&self, headers: &HeaderMap) -> bool {
        self.gate.session_ok(
            headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The running server.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    done: std_mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

fn internal(what: &str, e: &std::io::Error) -> PluginError {
    PluginError::new(ErrorKind::INTERNAL, format!("{what}: {e}"))
}

/// Binds the listener and starts the server thread.
///
/// # Errors
/// When the address cannot be bound or the runtime cannot start.
pub fn start(
    settings: &WebSettings,
    hub: Arc<Hub>,
    host: Host,
    token: String,
) -> Result<Running, PluginError> {
    let listener = std::net::TcpListener::bind((settings.bind, settings.port)).map_err(|e| {
        internal(
            &format!(
                "cannot listen on {}",
                crate::auth::host_port(settings.bind, settings.port)
            ),
            &e,
        )
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| internal("listener", &e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| internal("listener", &e))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("web-control-io")
        .build()
        .map_err(|e| internal("cannot start the web runtime", &e))?;
    let listener = {
        let _in_rt = rt.enter();
        tokio::net::TcpListener::from_std(listener).map_err(|e| internal("listener", &e))?
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let app = Arc::new(App {
        hub: Arc::clone(&hub),
        gate: Gate::new(settings, addr.port(), token),
        host,
        max_clients: settings.max_clients,
        shutdown: shutdown_rx.clone(),
    });
    let router = router(app);
    let (done_tx, done) = std_mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("web-control".into())
        .spawn(move || {
            rt.block_on(serve(listener, router, shutdown_rx, hub));
            rt.shutdown_timeout(Duration::from_millis(150));
            let _ = done_tx.send(());
        })
        .map_err(|e| internal("cannot start the web thread", &e))?;
    Ok(Running {
        addr,
        shutdown: shutdown_tx,
        done,
        thread: Some(thread),
    })
}

impl Running {
    /// Stops the server: tabs are closed with 1001 "going away", the thread
    /// is joined. Returns false when it did not end within `timeout` (it is
    /// then left to end on its own).
    pub fn stop(mut self, timeout: Duration) -> bool {
        let _ = self.shutdown.send(true);
        match self.done.recv_timeout(timeout) {
            Ok(()) | Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
                true
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => false,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: watch::Receiver<bool>,
    hub: Arc<Hub>,
) {
    let mut graceful_rx = shutdown.clone();
    let graceful = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = graceful_rx.wait_for(|stop| *stop).await;
    });
    let mut deadline_rx = shutdown;
    let deadline = async move {
        let _ = deadline_rx.wait_for(|stop| *stop).await;
        // Requests in flight get this long to finish.
        tokio::time::sleep(Duration::from_millis(400)).await;
    };
    tokio::select! {
        _ = graceful => {}
        () = deadline => {}
    }
    // Let the sockets send their close frames.
    let until = Instant::now() + Duration::from_millis(250);
    while hub.client_count() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The routes, behind the common checks and headers.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/app.js", get(app_js))
        .route("/app.css", get(app_css))
        .route("/session", get(session))
        .route("/ws", get(ws))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), common))
        .with_state(app)
}

/// The `Host` check and the security headers, for every request.
async fn common(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let mut resp = if app.gate.host_ok(header_str(req.headers(), &header::HOST)) {
        next.run(req).await
    } else {
        text(
            StatusCode::MISDIRECTED_REQUEST,
            "this desktop does not answer to that host name\n",
        )
    };
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::CACHE_CONTROL, "no-store");
    set(
        h,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    set(
        h,
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=(), payment=()",
    );
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn typed(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The sign-in form (401): no desktop content, no script.
fn login_page(status: StatusCode, error: Option<&'static str>) -> Response {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"login-error\" role=\"alert\">{e}</p>")
    });
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Agent desktop</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/app.css">
</head>
<body class="login">
<main class="login-box">
<h1>Agent desktop</h1>
<p>Enter the desktop token. The host prints it when it starts
(<code>web desktop at http://…/ (token …)</code>), or your administrator set it.</p>
{error}<form method="post" action="/login">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
"#
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Sets the session cookie and sends the browser to `/` (so the token does
/// not stay in the address bar).
fn signed_in(app: &App) -> Response {
    let cookie = app.gate.session_cookie();
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_owned()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response()
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn index(
    State(app): State<Arc<App>>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = q.token {
        if app.gate.token_ok(&token) {
            return signed_in(&app);
        }
        tokio::time::sleep(FAIL_DELAY).await;
        return login_page(StatusCode::UNAUTHORIZED, Some("That token is not valid."));
    }
    if app.signed_in(&headers) {
        typed("text/html; charset=utf-8", INDEX_HTML)
    } else {
        login_page(StatusCode::UNAUTHORIZED, None)
    }
}

/// A form post must come from the page itself. Browsers send `Origin` on a
/// POST, but as `null` under `Referrer-Policy: no-referrer`; then the Fetch
/// metadata (`Sec-Fetch-Site`, sent by current browsers) decides. A client
/// that sends neither (curl) is not a browser a foreign page could drive.
fn same_origin_post(app: &App, headers: &HeaderMap) -> bool {
    match header_str(headers, &header::ORIGIN) {
        Some(origin) if origin.trim() != "null" => app
            .gate
            .origin_ok(Some(origin), header_str(headers, &header::HOST)),
        _ => match header_str(headers, &HeaderName::from_static("sec-fetch-site")) {
            Some(site) => site.eq_ignore_ascii_case("same-origin"),
            None => true,
        },
    }
}

async fn login(State(app): State<Arc<App>>, headers: HeaderMap, form: Form<LoginForm>) -> Response {
    if !same_origin_post(&app, &headers) {
        return text(StatusCode::FORBIDDEN, "forbidden: foreign origin\n");
    }
    if app.gate.token_ok(form.token.trim()) {
        return signed_in(&app);
    }
    tokio::time::sleep(FAIL_DELAY).await;
    login_page(StatusCode::UNAUTHORIZED, Some("That token is not valid."))
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !same_origin_post(&app, &headers) {
        return text(StatusCode::FORBIDDEN, "forbidden: foreign origin\n");
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_owned()),
            (header::SET_COOKIE, app.gate.clear_cookie()),
        ],
    )
        .into_response()
}

async fn app_js(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if app.signed_in(&headers) {
        typed("text/javascript; charset=utf-8", APP_JS)
    } else {
        text(StatusCode::UNAUTHORIZED, "sign in first\n")
    }
}

async fn app_css() -> Response {
    typed("text/css; charset=utf-8", APP_CSS)
}

async fn session(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if app.signed_in(&headers) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        text(StatusCode::UNAUTHORIZED, "sign in first\n")
    }
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "not found\n")
}

async fn ws(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let host = header_str(&headers, &header::HOST);
    if !app
        .gate
        .origin_ok(header_str(&headers, &header::ORIGIN), host)
    {
        return text(StatusCode::FORBIDDEN, "forbidden: foreign origin\n");
    }
    if !app.signed_in(&headers) {
        return text(StatusCode::UNAUTHORIZED, "sign in first\n");
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    if app.hub.client_count() >= app.max_clients {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many browser tabs are connected\n",
        );
    }
    upgrade
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| run_socket(app, socket))
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// One tab: the snapshot, then events, results and ticks out; commands in.
async fn run_socket(app: Arc<App>, mut socket: WebSocket) {
    let Some(conn) = app.hub.connect(app.max_clients) else {
        let _ = socket
            .send(close(1013, "too many tabs, or the desktop is not ready"))
            .await;
        return;
    };
    let id = conn.id;
    app.host.log(
        LogLevel::Info,
        &format!("a browser tab connected ({} open)", app.hub.client_count()),
    );
    let why = socket_loop(&app, &mut socket, conn).await;
    app.hub.disconnect(id);
    app.host.log(
        LogLevel::Info,
        &format!(
            "a browser tab disconnected: {why} ({} open)",
            app.hub.client_count()
        ),
    );
}

async fn socket_loop(
    app: &Arc<App>,
    socket: &mut WebSocket,
    conn: crate::hub::Connection,
) -> &'static str {
    let crate::hub::Connection {
        id,
        first,
        mut events,
        mut results,
    } = conn;
    if socket.send(Message::Text(first)).await.is_err() {
        return "send failed";
    }
    let mut shutdown = app.shutdown.clone();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
    loop {
        let out: Message = tokio::select! {
            biased;
            () = stopped(&mut shutdown) => {
                let _ = socket.send(close(1001, "the desktop is stopping")).await;
                return "the desktop is stopping";
            }
            msg = socket.recv() => match msg {
                None | Some(Err(_)) => return "connection lost",
                Some(Ok(Message::Close(_))) => return "closed by the page",
                Some(Ok(Message::Text(t))) => match on_text(app, id, t.as_str()).await {
                    Reply::None => continue,
                    Reply::Send(m) => Message::Text(m),
                    Reply::Resubscribe => match app.hub.resubscribe() {
                        Some((snap, rx)) => {
                            events = rx;
                            Message::Text(snap)
                        }
                        None => continue,
                    },
                },
                Some(Ok(_)) => continue,
            },
            ev = events.recv() => match ev {
                Ok(m) => Message::Text(m),
                Err(RecvError::Lagged(missed)) => {
                    app.host.log(
                        LogLevel::Debug,
                        &format!("a browser tab fell {missed} messages behind; resynchronising it"),
                    );
                    match app.hub.resubscribe() {
                        Some((snap, rx)) => {
                            events = rx;
                            Message::Text(snap)
                        }
                        None => continue,
                    }
                }
                Err(RecvError::Closed) => return "the desktop is stopping",
            },
            Some(r) = results.recv() => Message::Text(r),
            _ = tick.tick() => Message::Text(Utf8Bytes::from(
                json!({"type": "tick", "now_ms": now_ms()}).to_string(),
            )),
        };
        if socket.send(out).await.is_err() {
            return "connection lost";
        }
    }
}

/// Resolves once the server is told to stop.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

enum Reply {
    None,
    Send(Utf8Bytes),
    Resubscribe,
}

/// One message from the page.
async fn on_text(app: &App, client: u64, text: &str) -> Reply {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Reply::Send(
                Outcome::refused("", "BadRequest", &format!("not JSON: {e}")).message(0),
            )
        }
    };
    let reference = v.get("ref").and_then(Value::as_u64).unwrap_or(0);
    match v.get("op").and_then(Value::as_str) {
        Some("command") => {
            let command = match parse_command(v.get("command").unwrap_or(&Value::Null)) {
                Ok(c) => c,
                Err(msg) => {
                    return Reply::Send(Outcome::refused("", "BadRequest", &msg).message(reference))
                }
            };
            let kind = command.kind.to_string();
            let host = app.host.clone();
            // `submit` may block briefly when the desktop's inbox is full.
            match tokio::task::spawn_blocking(move || host.submit(command)).await {
                Ok(Ok(request_id)) => {
                    app.hub.claim(client, reference, request_id);
                    Reply::None
                }
                Ok(Err(e)) => Reply::Send(
                    Outcome::refused(&kind, &e.kind.to_string(), &e.message).message(reference),
                ),
                Err(_) => Reply::Send(
                    Outcome::refused(&kind, "Internal", "submit failed").message(reference),
                ),
            }
        }
        Some("snapshot") => Reply::Resubscribe,
        _ => Reply::Send(
            Outcome::refused("", "BadRequest", "op must be \"command\" or \"snapshot\"")
                .message(reference),
        ),
    }
}
