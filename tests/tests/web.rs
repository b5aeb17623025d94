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
    n,
    parts::{self, HOST, RECORDER},
    run_cli, s, stderr,
    web::{free_port, http_raw, Browser, Driver},
    workspace,
    xmpp::{prosody_or_skip, Customer, Prosody},
    Host, Scratch,
};
use fantoccini::key::Key;
use serde_json::Value;
use xmpp_connector::tokio_xmpp::parsers::chatstates::ChatState;

const TOKEN: &str = "e2e-web-token-5f2c9a1b7d";

fn manifest() -> String {
    let web = parts::web(0, TOKEN);
    format!(
        r#"
{HOST}
[desktop]
agent_id = "agent-1001"
reason_codes = ["Break", "Lunch", "Meeting", "Training"]
dispositions = ["Resolved", "Callback", "Escalated"]
wrap_up_seconds = 120

[directory]
path = "{{dir}}/contacts.db"
default_country_code = "1"

[[lookup]]
name = "caller"
channel = "voice"
direction = "inbound"
field = "ani"
on_none = "new-contact"
on_one = "contact"
on_many = "pick-list"

[[hosted_control]]
name = "Phone"
type = "connector"
library = "sim_connector"
[hosted_control.settings]
calls_per_minute = 0
first_call_after_ms = 200
max_calls = 1
talk_time_secs = [0.0, 0.0]
seed = 20417 # the caller is then +14255558385, a contact in CONTACTS
call_data = {{ queue = "Support", language = "en" }}

{RECORDER}
{web}"#
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
        text.contains("HttpOnly")
            && text.contains("SameSite=Strict")
            && text.contains("Location: /\r\n")
            || text.to_ascii_lowercase().contains("location: /\r\n"),
        "an HttpOnly, SameSite=Strict cookie and a redirect to `/`:\n{text}"
    );

    let cookie = format!("Cookie: cti_web_{}={TOKEN}\r\n", addr.port());
    let (status, text) = http_raw(addr, &upgrade_request(addr, "http://evil.example", &cookie));
    assert_eq!(status, 403, "a WebSocket from a foreign origin:\n{text}");
    let (status, text) = http_raw(addr, &upgrade_request(addr, &format!("http://{addr}"), ""));
    assert_eq!(status, 401, "a WebSocket without the cookie:\n{text}");
    let (status, text) = http_raw(
        addr,
        &upgrade_request(addr, &format!("http://{addr}"), &cookie),
    );
    assert_eq!(status, 101, "the page's own upgrade is accepted:\n{text}");
}

/// True when `e` came after `earlier` (by sequence number).
fn n_after(e: &Value, earlier: &Value) -> bool {
    n(e, "seq") > n(earlier, "seq")
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
    let mut host = Host::start_in(with_contacts(), &manifest());
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
    browser.save_screenshot(&workspace().join("target/web-signin.png"));
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
    // The screen pop: the caller's session (the seeded number is a contact).
    browser.wait_for(&format!("article.session[data-call-id='{id}'] h3"));
    assert_eq!(
        browser.count(&format!("{card} button[data-action='Answer']")),
        1
    );
    assert_eq!(
        browser.count(&format!("{card} button[data-action='Hangup']")),
        0
    );
    browser.save_screenshot(&workspace().join("target/web-ringing.png"));

    // Answer: the call connects; Answer goes away.
    browser.click(&format!("{card} button[data-action='Answer']"));
    host.wait_event("Established", |e| is(e, "Established", &id));
    browser.wait_for(&format!("{card}[data-state='Connected']"));
    browser.wait_gone(&format!("{card} button[data-action='Answer']"));
    assert_eq!(
        browser.count(&format!("{card} button[data-action='Hangup']")),
        1
    );

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
    assert_eq!(
        browser.count(&format!("{card} button[data-action='Hold']")),
        0
    );
    assert_eq!(
        browser.count(&format!("{card} button[data-action='Retrieve']")),
        1
    );

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

    // Consult a colleague: two calls, the two-call buttons on the active
    // one; swap twice, then cancel the consultation.
    let mark = host.events().last().map_or(0, |e| n(e, "seq"));
    let after = |e: &Value| n(e, "seq") > mark;
    browser.type_into(&format!("{card} form.transfer input"), "+15550142");
    browser.click(&format!("{card} button[data-action='Consult']"));
    let originated = host.wait_event("the consultation call", |e| {
        s(e, "event") == "Originated" && s(e, "call_id") != id
    });
    let consult = format!("article.call[data-call-id='{}']", s(&originated, "call_id"));
    host.wait_event("the customer held", |e| is(e, "Held", &id) && after(e));
    browser.wait_for(&format!("{consult}[data-state='Connected']"));
    browser.wait_for(&format!("{card}[data-state='Held']"));
    assert_eq!(browser.count("article.call"), 2);
    for action in [
        "Alternate",
        "Conference",
        "CompleteTransfer",
        "CancelConsult",
    ] {
        browser.wait_for(&format!("{consult} button[data-action='{action}']"));
        assert_eq!(
            browser.count(&format!("{card} button[data-action='{action}']")),
            0,
            "{action} is offered on the active call only"
        );
    }
    browser.click(&format!("{consult} button[data-action='Alternate']"));
    host.wait_event("back to the customer", |e| {
        is(e, "Retrieved", &id) && after(e)
    });
    let swapped = host.wait_event("the colleague held", |e| {
        s(e, "event") == "Held" && s(e, "call_id") != id && after(e)
    });
    browser.wait_for(&format!("{card}[data-state='Connected']"));
    browser.wait_for(&format!("{card} button[data-action='Alternate']"));
    browser.click(&format!("{card} button[data-action='Alternate']"));
    let back = host.wait_event("back to the colleague", |e| {
        is(e, "Held", &id) && n_after(e, &swapped)
    });
    browser.wait_for(&format!("{consult}[data-state='Connected']"));
    browser.click(&format!("{consult} button[data-action='CancelConsult']"));
    host.wait_event("the consultation cleared", |e| {
        s(e, "event") == "ConnectionCleared" && s(e, "call_id") != id && n_after(e, &back)
    });
    host.wait_event("the customer retrieved", |e| {
        is(e, "Retrieved", &id) && n_after(e, &back)
    });
    browser.wait_gone(&consult);
    browser.wait_for(&format!("{card}[data-state='Connected']"));

    // A command the desktop refuses is shown to the agent (a reason code
    // the manifest does not list).
    browser.script(
        "document.querySelector('#reason').append(new Option('Nap', 'Nap')); \
         document.querySelector('#reason').value = 'Nap'; return null;",
    );
    browser.click("#not-ready");
    browser.wait_text(".notice.error", "Nap");

    // Hang up: the call clears and goes to wrap-up, with a disposition
    // picker and the time left.
    browser.click(&format!("{card} button[data-action='Hangup']"));
    let cleared = host.wait_event("ConnectionCleared", |e| is(e, "ConnectionCleared", &id));
    assert_eq!(s(&cleared, "state"), "Null");
    host.wait_event("wrap-up", |e| {
        s(e, "call_id") == id && s(&e["call"]["work"], "state") == "Wrapping"
    });
    browser.wait_for(&format!("{card}[data-work='Wrapping']"));
    browser.wait_gone(&format!("{card} button[data-action='Hangup']"));
    browser.wait_until("the wrap-up countdown", Duration::from_secs(5), |b| {
        b.text(&format!("{card} .wrap-left .timer"))
            .is_some_and(|t| t.starts_with("1:") || t.starts_with("2:"))
    });
    browser.select(&format!("{card} .wrapup select"), "Resolved");
    browser.click(&format!("{card} button[data-action='SetDisposition']"));
    host.wait_event("the disposition", |e| {
        s(e, "call_id") == id && s(&e["call"]["work"], "disposition") == "Resolved"
    });
    browser.wait_text(&format!("{card} .call-meta"), "Resolved");
    browser.save_screenshot(&workspace().join("target/web-wrapup.png"));

    // Finishing wrap-up removes the call; the pending NotReady applies.
    browser.click(&format!("{card} button[data-action='EndWrapUp']"));
    host.wait_event("the call removed", |e| is(e, "CallRemoved", &id));
    browser.wait_gone(&card);
    host.wait_event("the agent NotReady(Lunch)", |e| {
        s(e, "event") == "AgentStateChanged" && s(e, "agent_state") == "NotReady(Lunch)"
    });
    browser.wait_for("#agent-state[data-value='NotReady(Lunch)']");
    browser.wait_text("#agent-state", "Not ready: Lunch");
    browser.wait_gone("#agent-pending:not([hidden])");
    assert_eq!(
        browser.current_url(),
        base,
        "no number or secret in the URL"
    );

    // The host goes away: a clear banner, and the page keeps trying.
    assert!(host.stop().success(), "{}", host.log_text());
    browser.wait_for("#banner:not([hidden])");
    browser.wait_text("#banner-text", "Reconnecting");
    browser.wait_for("#conn-state[data-state='offline']");
    browser.save_screenshot(&workspace().join("target/web-offline.png"));
    browser.close();
    println!(
        "[timing] host up after {t_host:?}; browser session ready after {t_browser:?}; whole test {:?}",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------- screen pops and two calls

const CONTACTS: &str = "\
id,name,phone,account,tier
c1,Dana Whitfield,+1 (425) 555-8385,A-20417,Gold
c2,Sam Ortega,14255550303,B-31002,Silver
c3,Sam Ortega Jr.,+1 425 555 0303,B-31003,Bronze
c4,Priya Raman,+1 (425) 555-0101,A-18820,Platinum
";

/// A scratch folder with the contacts imported into `contacts.db` (what
/// the manifests' `[directory]` reads).
fn with_contacts() -> Scratch {
    let scratch = Scratch::new();
    let csv = scratch.write("contacts.csv", CONTACTS);
    let db = scratch.path("contacts.db");
    let o = run_cli(&[
        "contacts",
        "import",
        &csv.display().to_string(),
        "--db",
        &db.display().to_string(),
    ]);
    assert!(o.status.success(), "contacts import: {}", stderr(&o));
    scratch
}

/// A known caller, then one whose number two contacts share.
const SCENARIO: &str = r#"
[[step]]
at_ms = 0
action = "inbound"
call = "known"
ani = "14255550101"
dnis = "+18005550100"
data = { queue = "Billing" }

[[step]]
at_ms = 100
action = "inbound"
call = "shared"
ani = "425-555-0303"
dnis = "+18005550100"
data = { queue = "Billing" }
"#;

fn sessions_manifest(port: u16) -> String {
    let web = parts::web(port, TOKEN);
    let phone = parts::scenario_phone("");
    format!(
        r#"
{HOST}
[desktop]
agent_id = "agent-2002"

[directory]
path = "{{dir}}/contacts.db"
default_country_code = "1"

[[lookup]]
name = "caller"
channel = "voice"
direction = "inbound"
field = "ani"
on_none = "new-contact"
on_one = "contact"
on_many = "pick-list"

{phone}

{RECORDER}
{web}"#
    )
}

#[test]
fn the_page_shows_screen_pops_pick_lists_and_two_calls() {
    let Some(driver) = Driver::start_or_skip() else {
        return;
    };
    let scratch = with_contacts();
    scratch.write("scenario.toml", SCENARIO);
    // A fixed port, so the page can find the desktop again after a restart.
    let port = free_port();
    let mut host = Host::start_in(scratch, &sessions_manifest(port));
    let addr = SocketAddr::from(([127, 0, 0, 1], web_port(&host)));
    let base = format!("http://{addr}/");

    let browser = driver.browser(1360, 900);
    browser.goto(&format!("{base}?token={TOKEN}"));
    assert_eq!(browser.current_url(), base);
    browser.wait_for("#conn-state[data-state='live']");

    // The screen pop: the known caller's record; the pick list for the other.
    host.wait_event("the known caller's lookup", |e| {
        s(e, "event") == "LookupResolved" && s(e, "call_id") == "scn-known"
    });
    host.wait_event("the shared number's lookup", |e| {
        s(e, "event") == "LookupResolved" && s(e, "call_id") == "scn-shared"
    });
    let known_session = "article.session[data-call-id='scn-known']";
    let shared_session = "article.session[data-call-id='scn-shared']";
    browser.wait_text(&format!("{known_session} h3"), "Priya Raman");
    browser.wait_text(&format!("{known_session} .contact"), "A-18820");
    browser.wait_text(&format!("{shared_session} .candidates"), "Sam Ortega Jr.");
    browser.click(&format!(
        "{shared_session} .candidates li:nth-child(2) button"
    ));
    host.wait_event("the agent's pick", |e| {
        s(e, "event") == "LookupResolved"
            && s(e, "call_id") == "scn-shared"
            && e["session"]["contact"]["name"] == "Sam Ortega Jr."
    });
    browser.wait_text(&format!("{shared_session} h3"), "Sam Ortega Jr.");
    assert_eq!(browser.count(&format!("{shared_session} .candidates")), 0);

    // Answer the known caller by button and hold; answer the other with F2.
    let known = "article.call[data-call-id='scn-known']";
    let shared = "article.call[data-call-id='scn-shared']";
    browser.click(&format!("{known} button[data-action='Answer']"));
    host.wait_event("the known caller answered", |e| {
        is(e, "Established", "scn-known")
    });
    browser.click(&format!("{known} button[data-action='Hold']"));
    host.wait_event("the known caller held", |e| is(e, "Held", "scn-known"));
    browser.wait_for(&format!("{known}[data-state='Held']"));
    browser.type_into("body", &Key::F2);
    host.wait_event("F2 answered the ringing call", |e| {
        is(e, "Established", "scn-shared")
    });
    browser.wait_for(&format!("{shared}[data-state='Connected']"));

    // Two calls on one line: the two-call actions on the active call only.
    for action in ["Alternate", "Conference"] {
        browser.wait_for(&format!("{shared} button[data-action='{action}']"));
        assert_eq!(
            browser.count(&format!("{known} button[data-action='{action}']")),
            0
        );
    }
    browser.click(&format!("{shared} button[data-action='Alternate']"));
    host.wait_event("the swap", |e| is(e, "Retrieved", "scn-known"));
    browser.wait_for(&format!("{known}[data-state='Connected']"));
    browser.wait_for(&format!("{shared}[data-state='Held']"));
    browser.wait_until("one focused session", Duration::from_secs(5), |b| {
        b.count("article.session[aria-current='true']") == 1
    });
    browser.script("document.activeElement.blur(); return null;");
    browser.click("#calls-heading");
    browser.save_screenshot(&workspace().join("target/web-sessions.png"));

    // F4 hangs up the current call (the one the agent talks to).
    browser.type_into("body", &Key::F4);
    host.wait_event("F4 hung up", |e| is(e, "ConnectionCleared", "scn-known"));
    browser.wait_gone(&format!("{known} button[data-action='Hangup']"));
    assert_eq!(browser.count(&format!("{shared}[data-state='Held']")), 1);

    // Click-to-dial.
    browser.type_into("#dial-number", "+15550177");
    browser.click("#dial-button");
    let dialled = host.wait_event("the outbound call", |e| {
        s(e, "event") == "Originated" && s(&e["call"], "dnis") == "+15550177"
    });
    browser.wait_for(&format!(
        "article.call[data-call-id='{}']",
        s(&dialled, "call_id")
    ));
    assert_eq!(browser.current_url(), base, "the number is not in the URL");

    // The desktop restarts: the banner, then an automatic reconnect and a
    // full resynchronisation with the new desktop (whose scenario rings
    // again), with no action from the agent.
    assert!(host.stop().success(), "{}", host.log_text());
    browser.wait_for("#banner:not([hidden])");
    browser.wait_for("#conn-state[data-state='offline']");
    let scratch = with_contacts();
    scratch.write("scenario.toml", SCENARIO);
    let mut again = Host::start_in(scratch, &sessions_manifest(port));
    browser.wait_until("the page to reconnect", Duration::from_secs(20), |b| {
        b.count("#conn-state[data-state='live']") == 1
    });
    browser.wait_for("#banner[hidden]");
    again.wait_event("the new desktop's call", |e| {
        is(e, "Delivered", "scn-known")
    });
    browser.wait_for(&format!("{known}[data-state='Alerting']"));
    browser.wait_gone(&format!(
        "article.call[data-call-id='{}']",
        s(&dialled, "call_id")
    ));

    browser.close();
    assert!(again.stop().success(), "{}", again.log_text());
}

// ---------------------------------------------------------------- chats

const AGENT_JID: &str = "agent@cti.test";
/// The desktop's message limit in the chat test: small, so the test can
/// try one over it.
const CHAT_LIMIT: usize = 200;

fn chat_manifest(xmpp_settings: &str) -> String {
    let web = parts::web(0, TOKEN);
    let chat = parts::chat(xmpp_settings);
    format!(
        r#"
{HOST}
[desktop]
agent_id = "agent-1001"
dispositions = ["Resolved", "Callback"]
wrap_up_seconds = 120
max_message_bytes = {CHAT_LIMIT}

{chat}

{RECORDER}
{web}"#
    )
}

/// The texts of a chat card's transcript, as `who|said`.
fn transcript(browser: &Browser<'_>, card: &str) -> Vec<String> {
    let v = browser.script(&format!(
        "return Array.from(document.querySelectorAll(\"{card} .chat-log li\"))\
         .map((li) => li.querySelector('.who').textContent + '|' + li.querySelector('.said').textContent);"
    ));
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_transcript(browser: &Browser<'_>, card: &str, want: &[&str]) {
    browser.wait_until(
        &format!("the transcript of {card} to be {want:?}"),
        Duration::from_secs(10),
        |b| transcript(b, card) == want,
    );
}

#[test]
fn an_agent_chats_with_a_customer_in_the_web_desktop() {
    if !prosody_or_skip() {
        return;
    }
    let Some(driver) = Driver::start_or_skip() else {
        return;
    };
    let mut p = Prosody::new();
    p.register("agent", "agentpw").register("alice", "alicepw");
    p.run();
    let mut host = Host::start(&chat_manifest(&p.connector_settings("agent", "agentpw")));
    host.wait_event("the chat connector online", |e| {
        s(e, "event") == "ConnectorStatus" && s(e, "text") == "Connected"
    });
    let port = web_port(&host);
    let base = format!("http://127.0.0.1:{port}/");
    let browser = driver.browser(1360, 900);
    browser.goto(&format!("{base}?token={TOKEN}"));
    browser.wait_for("#conn-state[data-state='live']");

    // A customer's first message offers a chat: the card shows it, with
    // Accept and Decline, no keypad and no reply box yet.
    let mut alice = Customer::connect(&p, "alice", "alicepw", AGENT_JID);
    alice.say(AGENT_JID, "Hello, where is my order?");
    let offered = host.wait_event("the chat offer", |e| {
        s(e, "event") == "Delivered" && s(&e["call"], "ani") == "alice@cti.test"
    });
    let id = s(&offered, "call_id").to_owned();
    let card = format!("article.call[data-call-id='{id}']");
    browser.wait_for(&format!("{card}[data-state='Alerting']"));
    wait_transcript(
        &browser,
        &card,
        &["alice@cti.test|Hello, where is my order?"],
    );
    browser.wait_text(&format!("{card} button[data-action='Answer']"), "Accept");
    browser.wait_text(&format!("{card} button[data-action='Reject']"), "Decline");
    assert_eq!(
        browser.count(&format!("{card} form.reply:not([hidden])")),
        0
    );
    assert_eq!(
        browser.count(&format!("{card} details.dtmf:not([hidden])")),
        0
    );

    // Accept: the reply box appears and takes the focus.
    browser.click(&format!("{card} button[data-action='Answer']"));
    host.wait_event("Established", |e| is(e, "Established", &id));
    browser.wait_for(&format!(
        "{card}[data-state='Connected'] form.reply:not([hidden])"
    ));
    browser.wait_until(
        "the reply box to have the focus",
        Duration::from_secs(10),
        |b| {
            b.script("return document.activeElement && document.activeElement.className;")
                == "reply-text"
        },
    );
    // Mark the first line: new lines are appended, not the log redrawn.
    browser.script(&format!(
        "document.querySelector(\"{card} .chat-log li\").dataset.mark = 'first'; return 0;"
    ));
    browser.wait_text(&format!("{card} button[data-action='Hangup']"), "End chat");

    // The customer types: the card says so.
    alice.typing(AGENT_JID, ChatState::Composing);
    browser.wait_text(&format!("{card} .typing"), "alice@cti.test is typing");

    // The agent types a reply and presses Enter: the customer sees the
    // agent typing, then receives the reply; the box empties and the
    // transcript shows it as the agent's.
    let reply = format!("{card} textarea.reply-text");
    browser.type_into(&reply, "It ships today.");
    alice.expect_state(AGENT_JID, ChatState::Composing);
    browser.type_into(&reply, &Key::Enter.to_string());
    let got = alice.expect(AGENT_JID, |b| b == "It ships today.");
    assert!(got.from.starts_with(AGENT_JID), "{got:?}");
    host.wait_event("MessageSent", |e| {
        is(e, "MessageSent", &id) && s(e, "text") == "It ships today."
    });
    wait_transcript(
        &browser,
        &card,
        &[
            "alice@cti.test|Hello, where is my order?",
            "You|It ships today.",
        ],
    );
    assert_eq!(
        browser.count(&format!("{card} .chat-log li[data-mark='first']")),
        1,
        "the first line's element survived the new one"
    );
    browser.wait_until("the reply box to empty", Duration::from_secs(10), |b| {
        b.script(&format!(
            "return document.querySelector(\"{reply}\").value;"
        )) == ""
    });

    // Over the desktop's limit: refused with the reason, and the text stays
    // in the box for the agent to shorten.
    let long = "x".repeat(CHAT_LIMIT + 1);
    browser.type_into(&reply, &long);
    browser.click(&format!(
        "{card} form.reply button[data-action='SendMessage']"
    ));
    browser.wait_text("#notices", "over the limit");
    let kept = browser.script(&format!(
        "return document.querySelector(\"{reply}\").value;"
    ));
    assert_eq!(
        kept.as_str(),
        Some(long.as_str()),
        "a refused message stays in the box"
    );
    browser.script(&format!(
        "document.querySelector(\"{reply}\").value = ''; return 0;"
    ));

    // The customer answers; a multi-line reply keeps its lines (Shift+Enter).
    alice.say(AGENT_JID, "Thanks! <b>great</b>");
    // A received message ends the typing notice.
    browser.wait_gone(&format!("{card} .typing:not([hidden])"));
    let two_lines = format!("Line one{}{}{}Line two", Key::Shift, Key::Enter, Key::Null);
    browser.type_into(&reply, &two_lines);
    browser.click(&format!(
        "{card} form.reply button[data-action='SendMessage']"
    ));
    alice.expect(AGENT_JID, |b| b == "Line one\nLine two");
    let want = [
        "alice@cti.test|Hello, where is my order?",
        "You|It ships today.",
        "alice@cti.test|Thanks! <b>great</b>",
        "You|Line one\nLine two",
    ];
    wait_transcript(&browser, &card, &want);
    assert_eq!(
        browser.count(&format!("{card} .chat-log b")),
        0,
        "message text is shown as text, never as HTML"
    );

    // A reload shows the whole conversation (the control's copy of the
    // desktop keeps the transcript).
    browser.refresh();
    browser.wait_for("#conn-state[data-state='live']");
    wait_transcript(&browser, &card, &want);
    browser.save_screenshot(&workspace().join("target/web-chat-live.png"));

    // The customer goes offline: the chat ends and wraps up; the transcript
    // stays for the wrap-up, the reply box goes.
    alice.quit();
    host.wait_event("the chat cleared", |e| is(e, "ConnectionCleared", &id));
    browser.wait_for(&format!("{card}[data-work='Wrapping']"));
    browser.wait_gone(&format!("{card} form.reply:not([hidden])"));
    wait_transcript(&browser, &card, &want);
    browser.save_screenshot(&workspace().join("target/web-chat.png"));
    browser.close();
    assert!(host.stop().success(), "{}", host.log_text());
}
