//! The web desktop (`web-control`) in a real headless Chromium: the real
//! `cti-host` with the simulated phone, the recorder and the web control;
//! the page driven through chromedriver; every action confirmed by what the
//! recorder wrote.
//!
//! Without Chromium and chromedriver the test prints "skipped: install
//! chromium chromium-driver" and passes, except under `CI`, where it fails.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use cti_e2e::{
    s,
    web::{http_raw, Driver},
    workspace, Host,
};
use fantoccini::key::Key;
use serde_json::Value;

const TOKEN: &str = "e2e-web-token-5f2c9a1b7d";

fn manifest() -> String {
    format!(
        r#"
[host]
plugin_dir = "{{bin}}"
ctl_socket = "{{socket}}"

[desktop]
agent_id = "agent-1001"
reason_codes = ["Break", "Lunch", "Meeting", "Training"]
dispositions = ["Resolved", "Callback", "Escalated"]

[[hosted_control]]
name = "Phone"
type = "connector"
library = "sim_connector"
[hosted_control.settings]
calls_per_minute = 0
first_call_after_ms = 200
max_calls = 1
talk_time_secs = [0.0, 0.0]
call_data = {{ queue = "Support", language = "en", account = "A-20417" }}

[[hosted_control]]
name = "Recorder"
type = "control"
library = "recorder_control"
[hosted_control.settings]
path = "{{recorder}}"

[[hosted_control]]
name = "Web"
type = "control"
library = "web_control"
[hosted_control.settings]
port = 0
token = "{TOKEN}"
"#
    )
}

/// The port from the control's start-up line
/// (`web desktop at http://127.0.0.1:PORT/ (…)`).
fn web_port(host: &Host) -> u16 {
    let mut port = 0;
    host.wait_until(
        "the web desktop's URL in the host log",
        Duration::from_secs(15),
        || {
            let log = host.log_text();
            port = log
                .split("web desktop at http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            port != 0
        },
    );
    port
}

fn upgrade_request(addr: SocketAddr, origin: &str, cookie: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Origin: {origin}\r\n{cookie}\r\n"
    )
}

/// Requests without the token, and WebSocket upgrades from a foreign
/// origin, are refused.
fn check_refusals(addr: SocketAddr) {
    let (status, text) = http_raw(
        addr,
        &format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 401, "GET / without the token:\n{text}");
    assert!(
        !text.contains("app.js") && !text.contains("id=\"calls\""),
        "a refused request shows no desktop:\n{text}"
    );
    let (status, _) = http_raw(
        addr,
        &format!("GET /app.js HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 401, "the script needs the token too");
    let (status, _) = http_raw(
        addr,
        &format!(
            "GET /?token=not-the-token-000000 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 401, "a wrong token");
    let (status, text) = http_raw(
        addr,
        &format!("GET /?token={TOKEN} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 303, "the token signs in and redirects:\n{text}");
    assert!(
        text.contains("HttpOnly") && text.contains("SameSite=Strict") && text.contains("Location: /\r\n")
            || text.to_ascii_lowercase().contains("location: /\r\n"),
        "an HttpOnly, SameSite=Strict cookie and a redirect to `/`:\n{text}"
    );

    let cookie = format!("Cookie: cti_web_{}={TOKEN}\r\n", addr.port());
    let (status, text) = http_raw(
        addr,
        &upgrade_request(addr, "http://evil.example", &cookie),
    );
    assert_eq!(status, 403, "a WebSocket from a foreign origin:\n{text}");
    let (status, text) = http_raw(addr, &upgrade_request(addr, &format!("http://{addr}"), ""));
    assert_eq!(status, 401, "a WebSocket without the cookie:\n{text}");
    let (status, text) = http_raw(
        addr,
        &upgrade_request(addr, &format!("http://{addr}"), &cookie),
    );
    assert_eq!(status, 101, "the page's own upgrade is accepted:\n{text}");
}

fn is(e: &Value, event: &str, call: &str) -> bool {
    s(e, "event") == event && s(e, "call_id") == call
}

#[test]
fn an_agent_handles_a_call_in_the_web_desktop_in_real_chromium() {
    let t0 = Instant::now();
    let Some(driver) = Driver::start_or_skip() else {
        return;
    };
    let mut host = Host::start(&manifest());
    let port = web_port(&host);
    let t_host = t0.elapsed();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let base = format!("http://{addr}/");
    check_refusals(addr);

    let browser = driver.browser(1360, 900);
    let t_browser = t0.elapsed();

    // Without the token: the sign-in form, no desktop. Signing in lands on
    // `/` (the token is never in the URL).
    browser.goto(&base);
    browser.wait_for("form[action='/login'] input#token");
    assert_eq!(browser.count("#calls"), 0);
    browser.type_into("#token", TOKEN);
    browser.click("form[action='/login'] button[type='submit']");
    browser.wait_for("#calls");
    assert_eq!(browser.current_url(), base);
    browser.wait_for("#conn-state[data-state='live']");
    let cookies = browser.script("return document.cookie;");
    assert!(
        !cookies.as_str().unwrap_or("").contains(TOKEN),
        "the session cookie is HttpOnly: {cookies}"
    );
    browser.wait_text("#agent-id", "agent-1001");

    // A call appears, ringing, with Answer (and no Hang up).
    let delivered = host.wait_event("the simulated call", |e| s(e, "event") == "Delivered");
    let id = s(&delivered, "call_id").to_owned();
    let ani = s(&delivered["call"], "ani").to_owned();
    let card = format!("article.call[data-call-id='{id}']");
    browser.wait_for(&format!("{card}[data-state='Alerting']"));
    browser.wait_text(&format!("{card} .call-title"), &ani);
    assert_eq!(browser.count(&format!("{card} button[data-action='Answer']")), 1);
    assert_eq!(browser.count(&format!("{card} button[data-action='Hangup']")), 0);

    // Answer: the call connects; Answer goes away.
    browser.click(&format!("{card} button[data-action='Answer']"));
    host.wait_event("Established", |e| is(e, "Established", &id));
    browser.wait_for(&format!("{card}[data-state='Connected']"));
    browser.wait_gone(&format!("{card} button[data-action='Answer']"));
    assert_eq!(browser.count(&format!("{card} button[data-action='Hangup']")), 1);

    // NotReady with a reason, through the picker: pending while on the call.
    browser.select("#reason", "Lunch");
    browser.click("#not-ready");
    let asked = host.wait_event("the NotReady(Lunch) request", |e| {
        (s(e, "event") == "AgentStatePending" && s(e, "pending_state") == "NotReady(Lunch)")
            || (s(e, "event") == "AgentStateChanged" && s(e, "agent_state") == "NotReady(Lunch)")
    });
    if s(&asked, "event") == "AgentStatePending" {
        browser.wait_for("#agent-pending-state[data-value='NotReady(Lunch)']");
        browser.wait_text("#agent-pending-state", "Not ready: Lunch");
    } else {
        browser.wait_for("#agent-state[data-value='NotReady(Lunch)']");
    }

    // Hold and Retrieve.
    browser.click(&format!("{card} button[data-action='Hold']"));
    host.wait_event("Held", |e| is(e, "Held", &id));
    browser.wait_for(&format!("{card}[data-state='Held']"));
    assert_eq!(browser.count(&format!("{card} button[data-action='Hold']")), 0);
    assert_eq!(browser.count(&format!("{card} button[data-action='Retrieve']")), 1);

    // A reload mid-call shows the same call, still held (the state lives in
    // the host; the page resynchronises from a snapshot).
    browser.refresh();
    browser.wait_for("#conn-state[data-state='live']");
    browser.wait_for(&format!("{card}[data-state='Held']"));
    browser.wait_text(&format!("{card} .call-title"), &ani);
    assert_eq!(browser.count("article.call"), 1);
    assert_eq!(browser.current_url(), base);

    browser.click(&format!("{card} button[data-action='Retrieve']"));
    host.wait_event("Retrieved", |e| is(e, "Retrieved", &id));
    browser.wait_for(&format!("{card}[data-state='Connected']"));

    // The mute shortcut (F9), then Unmute by button.
    browser.type_into("body", &Key::F9);
    host.wait_event("Muted", |e| is(e, "Muted", &id));
    browser.wait_for(&format!("{card} button[data-action='Unmute']"));
    browser.click(&format!("{card} button[data-action='Unmute']"));
    host.wait_event("Unmuted", |e| is(e, "Unmuted", &id));
    browser.wait_for(&format!("{card} button[data-action='Mute']"));

    // The desktop with a live call, for the docs.
    browser.wait_until("the call timer to run", Duration::from_secs(8), |b| {
        b.text(&format!("{card} .timer"))
            .is_some_and(|t| !matches!(t.as_str(), "" | "0:00" | "0:01" | "0:02"))
    });
    // The event log survived the reload: the host sends recent events with
    // the snapshot.
    browser.wait_text("#log", "Delivered");
    browser.script(
        "for (const n of document.querySelectorAll('.notice')) n.remove();          document.activeElement.blur(); return null;",
    );
    browser.click("#calls-heading"); // the pointer off the buttons
    let shot = browser.save_screenshot(&workspace().join("target/web-desktop.png"));
    println!("screenshot: {}", shot.display());

    // A command the desktop refuses is shown to the agent (a reason code
    // the manifest does not list).
    browser.script(
        "document.querySelector('#reason').append(new Option('Nap', 'Nap')); \
         document.querySelector('#reason').value = 'Nap'; return null;",
    );
    browser.click("#not-ready");
    browser.wait_text(".notice.error", "Nap");

    // Hang up: the call clears and leaves the page; the pending NotReady applies.
    browser.click(&format!("{card} button[data-action='Hangup']"));
    let cleared = host.wait_event("ConnectionCleared", |e| is(e, "ConnectionCleared", &id));
    assert_eq!(s(&cleared, "state"), "Null");
    browser.wait_gone(&card);
    host.wait_event("the agent NotReady(Lunch)", |e| {
        s(e, "event") == "AgentStateChanged" && s(e, "agent_state") == "NotReady(Lunch)"
    });
    browser.wait_for("#agent-state[data-value='NotReady(Lunch)']");
    browser.wait_text("#agent-state", "Not ready: Lunch");
    browser.wait_gone("#agent-pending:not([hidden])");
    assert_eq!(browser.current_url(), base, "no number or secret in the URL");

    // The host goes away: a clear banner, and the page keeps trying.
    assert!(host.stop().success(), "{}", host.log_text());
    browser.wait_for("#banner:not([hidden])");
    browser.wait_text("#banner-text", "Reconnecting");
    browser.wait_for("#conn-state[data-state='offline']");
    browser.close();
    println!(
        "[timing] host up after {t_host:?}; browser session ready after {t_browser:?}; whole test {:?}",
        t0.elapsed()
    );
}
