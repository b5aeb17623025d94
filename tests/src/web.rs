//! Real headless Chromium for end-to-end tests (chromedriver + WebDriver).
//!
//! [`Driver::start`] spawns Debian's `chromedriver` on a free loopback port
//! in its own process group; [`Driver::browser`] opens a headless Chromium
//! session through `fantoccini` (no TLS: chromedriver is plain HTTP on
//! loopback). Dropping the driver kills the whole group, so a test that
//! panics mid-way leaves no browser behind (killing chromedriver alone would
//! leave Chromium running, reparented to PID 1).
//!
//! [`Browser`] wraps the async client in blocking calls, like the rest of
//! the harness, and every wait has a timeout and fails with what it waited
//! for and what the page showed (plus a screenshot in
//! `target/web-failure.png`).
//!
//! When Chromium or chromedriver is missing, [`Driver::start_or_skip`] fails
//! the test under `CI` and otherwise prints "skipped: install chromium
//! chromium-driver" and returns `None`.

use std::{
    fs,
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Map, Value};

/// The Chromium binaries Debian and others install.
const CHROMIUM: &[&str] = &[
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
];
const CHROMEDRIVER: &[&str] = &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];

fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

/// A binary named by the environment variable `var`, else the first of
/// `paths` that exists.
fn binary(var: &str, paths: &[&str]) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.exists()),
        None => first_existing(paths),
    }
}

/// The browser and driver binaries (`CHROMIUM` and `CHROMEDRIVER` name
/// others), or what is missing.
pub fn find_browser() -> Result<(PathBuf, PathBuf), String> {
    let chromium = binary("CHROMIUM", CHROMIUM);
    let driver = binary("CHROMEDRIVER", CHROMEDRIVER);
    match (chromium, driver) {
        (Some(c), Some(d)) => Ok((c, d)),
        (c, d) => Err(format!(
            "missing {}{}{} (apt-get install chromium chromium-driver; scripts/test.sh does it)",
            if c.is_none() { "chromium" } else { "" },
            if c.is_none() && d.is_none() {
                " and "
            } else {
                ""
            },
            if d.is_none() { "chromedriver" } else { "" },
        )),
    }
}

/// A free loopback port (bound and released: a tiny race, never hit).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running chromedriver (its own process group, killed on drop).
pub struct Driver {
    child: Child,
    port: u16,
    chromium: PathBuf,
    log: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Driver {
    /// Starts chromedriver, or explains why it cannot: under `CI` a missing
    /// browser fails the test; elsewhere the test is skipped (`None`).
    pub fn start_or_skip() -> Option<Driver> {
        match find_browser() {
            Ok(_) => Some(Self::start()),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("the web desktop test needs a real browser under CI: {why}")
            }
            Err(why) => {
                println!("skipped: install chromium chromium-driver ({why})");
                None
            }
        }
    }

    /// Starts chromedriver on a free port and waits (≤ 10 s) until it
    /// answers.
    pub fn start() -> Driver {
        let (chromium, driver) = find_browser().unwrap_or_else(|why| panic!("{why}"));
        let port = free_port();
        let log = std::env::temp_dir().join(format!("chromedriver-{port}.log"));
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let d = Driver {
            child,
            port,
            chromium,
            log,
            rt,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {addr} within 10 s; its log:\n{}",
                fs::read_to_string(&d.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// The capabilities that work as root without a display: headless,
    /// no sandbox (root), no /dev/shm reliance, a fixed window size.
    pub fn capabilities(&self, width: u32, height: u32) -> Map<String, Value> {
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium.display().to_string(),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--no-first-run",
                    "--lang=en-US",
                    "--force-device-scale-factor=1",
                    format!("--window-size={width},{height}"),
                ]
            }
        });
        match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    /// Opens a browser session (a window of `width`×`height`).
    pub fn browser(&self, width: u32, height: u32) -> Browser<'_> {
        let url = format!("http://127.0.0.1:{}", self.port);
        let caps = self.capabilities(width, height);
        let client = self
            .rt
            .block_on(async {
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(caps)
                    .connect(&url)
                    .await
            })
            .unwrap_or_else(|e| {
                panic!(
                    "no browser session from chromedriver: {e}\n--- chromedriver log (tail) ---\n{}",
                    tail(&self.log, 40)
                )
            });
        Browser {
            driver: self,
            client: Some(client),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver and every Chromium process it started share its group.
        let pgid = i32::try_from(self.child.id()).unwrap_or(0);
        if pgid > 0 {
            // SAFETY: kill(2) with a negative pid signals a process group;
            // no memory is involved.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log);
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A browser session, driven with blocking calls.
pub struct Browser<'d> {
    driver: &'d Driver,
    client: Option<Client>,
}

/// What a test waits on.
fn css(selector: &str) -> Locator<'_> {
    Locator::Css(selector)
}

impl Browser<'_> {
    fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.driver.rt.block_on(f)
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.block(self.client().goto(url))
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Reloads the page.
    pub fn refresh(&self) {
        self.block(self.client().refresh())
            .unwrap_or_else(|e| panic!("refresh: {e}"));
    }

    /// The address bar.
    pub fn current_url(&self) -> String {
        self.block(self.client().current_url())
            .map(|u| u.to_string())
            .unwrap_or_else(|e| panic!("current_url: {e}"))
    }

    /// How many elements match `selector` now.
    pub fn count(&self, selector: &str) -> usize {
        self.block(self.client().find_all(css(selector)))
            .map(|v| v.len())
            .unwrap_or(0)
    }

    /// The text of the first element matching `selector`, if any.
    pub fn text(&self, selector: &str) -> Option<String> {
        self.block(async {
            let el = self.client().find(css(selector)).await.ok()?;
            el.text().await.ok()
        })
    }

    /// An attribute of the first element matching `selector`.
    pub fn attr(&self, selector: &str, name: &str) -> Option<String> {
        self.block(async {
            let el = self.client().find(css(selector)).await.ok()?;
            el.attr(name).await.ok().flatten()
        })
    }

    /// Runs a script in the page and returns its result.
    pub fn script(&self, js: &str) -> Value {
        self.block(self.client().execute(js, Vec::new()))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{js}"))
    }

    /// Polls every 50 ms until `cond` holds; panics after `timeout` naming
    /// `what`, with the page's text and a screenshot.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (≤ 10 s) until an element matches `selector`.
    pub fn wait_for(&self, selector: &str) {
        self.wait_until(
            &format!("an element matching `{selector}`"),
            Duration::from_secs(10),
            |b| b.count(selector) > 0,
        );
    }

    /// Waits (≤ 10 s) until nothing matches `selector`.
    pub fn wait_gone(&self, selector: &str) {
        self.wait_until(
            &format!("no element matching `{selector}`"),
            Duration::from_secs(10),
            |b| b.count(selector) == 0,
        );
    }

    /// Waits (≤ 10 s) until the text of `selector` contains `want`.
    pub fn wait_text(&self, selector: &str, want: &str) {
        self.wait_until(
            &format!("`{selector}` to show \"{want}\""),
            Duration::from_secs(10),
            |b| b.text(selector).is_some_and(|t| t.contains(want)),
        );
    }

    /// Clicks the first element matching `selector` (waiting ≤ 10 s for it).
    pub fn click(&self, selector: &str) {
        self.wait_for(selector);
        let r = self.block(async {
            let el = self.client().find(css(selector)).await?;
            el.click().await
        });
        if let Err(e) = r {
            self.fail(&format!("clicking `{selector}` failed: {e}"));
        }
    }

    /// Chooses the option `value` of the `<select>` matching `selector`.
    pub fn select(&self, selector: &str, value: &str) {
        self.wait_for(selector);
        let r = self.block(async {
            let el = self.client().find(css(selector)).await?;
            el.select_by_value(value).await
        });
        if let Err(e) = r {
            self.fail(&format!("choosing \"{value}\" in `{selector}` failed: {e}"));
        }
    }

    /// Types into the element matching `selector` (WebDriver key codes such
    /// as `fantoccini::key::Key::F2` included).
    pub fn type_into(&self, selector: &str, text: &str) {
        self.wait_for(selector);
        let r = self.block(async {
            let el = self.client().find(css(selector)).await?;
            el.send_keys(text).await
        });
        if let Err(e) = r {
            self.fail(&format!("typing into `{selector}` failed: {e}"));
        }
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let png = self
            .block(self.client().screenshot())
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        png
    }

    /// Saves a screenshot; returns its path.
    pub fn save_screenshot(&self, path: &Path) -> PathBuf {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).expect("screenshot folder");
        }
        fs::write(path, self.screenshot()).expect("write the screenshot");
        path.to_path_buf()
    }

    /// Panics with `msg`, the page's visible text and a screenshot path.
    pub fn fail(&self, msg: &str) -> ! {
        let text = self.text("body").unwrap_or_default();
        let shot = crate::workspace().join("target/web-failure.png");
        let saved = self
            .block(self.client().screenshot())
            .ok()
            .and_then(|png| fs::write(&shot, png).ok())
            .map_or("(no screenshot)".to_owned(), |()| {
                shot.display().to_string()
            });
        panic!("{msg}\n--- page text ---\n{text}\n--- screenshot: {saved}");
    }

    /// Ends the session (the browser exits).
    pub fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.driver.rt.block_on(c.close());
        }
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            // On a panic the driver's process-group kill is the backstop;
            // try a clean close first, briefly.
            let _ = self
                .driver
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(2), c.close()).await });
        }
    }
}

/// A raw HTTP/1.1 exchange with a loopback server: the status code and
/// the whole response text (headers and body).
pub fn http_raw(addr: SocketAddr, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("read timeout");
    s.write_all(request.as_bytes()).expect("send the request");
    let mut buf = Vec::new();
    // Read the head, then `Content-Length` bytes of body (a 101 has none and
    // keeps the connection open; so may a refused upgrade).
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let complete = match length {
                Some(n) => buf.len() >= end + 4 + n,
                None => head.starts_with("http/1.1 101"),
            };
            if complete {
                break;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}
