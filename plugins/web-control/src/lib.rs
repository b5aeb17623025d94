//! `web-control`: the agent desktop in a browser.
//!
//! A control that serves a page (plain HTML, CSS and JavaScript shipped inside
//! the library: no CDN, works offline) and a WebSocket on `bind:port`
//! (loopback by default). The WebSocket pushes the whole desktop, then every
//! desktop event; the page sends commands back, which the control submits
//! with [`Host::submit`] and whose outcome it routes back to the tab that
//! asked. The state lives in the host: a page reload, or a reconnect after
//! the connection dropped, draws the same calls from a fresh snapshot.
//!
//! # Settings
//! - `bind` (IP address, default `"127.0.0.1"`): where to listen.
//! - `port` (default `0`): the TCP port; 0 picks a free one. The URL is
//!   logged at start: `web desktop at http://127.0.0.1:PORT/ (token …)`.
//! - `token` (string, at least 16 characters): the sign-in secret; left out,
//!   a random one is made at each start and logged with the URL.
//! - `allowed_origins` (list): origins besides the page's own that may open
//!   the WebSocket (a TLS reverse proxy's `https://desk.example.com`).
//! - `allowed_hosts` (list): `Host` names besides the loopback names and the
//!   bind address (the reverse proxy's name).
//! - `max_clients` (default 16): browser tabs connected at once.
//!
//! See `docs/web-desktop.md` for the security model and the page.
//!
//! # Threads
//! The constructor validates the settings and acquires nothing. `start`
//! binds the port and starts one thread running a current-thread tokio
//! runtime (plus tokio's blocking pool for `submit`); `stop` closes the tabs
//! (1001 "going away") and joins it within a second. `on_event` only renders
//! the event once and hands it to a broadcast channel: it never waits for a
//! browser.
#![deny(unsafe_code)]

pub mod auth;
pub mod hub;
pub mod server;
pub mod settings;

use std::{sync::Arc, time::Duration};

use cti_plugin_api::sdk::prelude::*;

pub use hub::{apply, parse_command, Hub};
pub use settings::WebSettings;

/// How long `stop` waits for the server thread.
const STOP_TIMEOUT: Duration = Duration::from_millis(900);

/// The web desktop control.
pub struct WebControl {
    host: Host,
    settings: WebSettings,
    hub: Arc<Hub>,
    server: Option<server::Running>,
}

impl WebControl {
    /// The address the server listens on, once started.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().map(|s| s.addr)
    }

    /// The URL to print for the agent.
    fn url(&self, addr: std::net::SocketAddr) -> String {
        let ip = addr.ip();
        let shown = if ip.is_unspecified() {
            // Every interface: loopback works on this machine.
            if ip.is_ipv4() {
                format!("127.0.0.1:{}", addr.port())
            } else {
                format!("[::1]:{}", addr.port())
            }
        } else {
            auth::host_port(ip, addr.port())
        };
        format!("http://{shown}/")
    }
}

impl NewControl for WebControl {
    fn new(host: Host, settings: Settings) -> Result<Self, PluginError> {
        let settings = WebSettings::from_settings(&settings)?;
        let hub = Arc::new(Hub::new(&host.instance_name()));
        Ok(Self {
            host,
            settings,
            hub,
            server: None,
        })
    }
}

impl Control for WebControl {
    fn start(&mut self, snapshot: &DesktopSnapshot) -> Result<(), PluginError> {
        self.hub.reset(snapshot);
        if self.server.is_some() {
            return Ok(());
        }
        let configured = self.settings.token.clone();
        let token = configured.clone().unwrap_or_else(auth::random_token);
        let running = server::start(
            &self.settings,
            Arc::clone(&self.hub),
            self.host.clone(),
            token.clone(),
        )?;
        let url = self.url(running.addr);
        let line = match configured {
            Some(_) => format!("web desktop at {url} (token from the settings)"),
            None => format!("web desktop at {url} (token {token}; or open {url}?token={token})"),
        };
        self.host.log(LogLevel::Info, &line);
        if !self.settings.bind.is_loopback() {
            self.host.warn(&format!(
                "web desktop listens on {} without TLS: the token, call data and caller numbers cross the network in clear; put a TLS reverse proxy in front (allowed_origins, allowed_hosts)",
                self.settings.bind
            ));
        }
        self.server = Some(running);
        Ok(())
    }

    fn on_event(&mut self, event: &DesktopEvent) -> Result<(), PluginError> {
        self.hub.on_event(event);
        Ok(())
    }

    fn resync(&mut self, snapshot: &DesktopSnapshot) -> Result<(), PluginError> {
        self.hub.reset(snapshot);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        if let Some(server) = self.server.take() {
            if !server.stop(STOP_TIMEOUT) {
                self.host.warn(&format!(
                    "the web server did not stop within {} ms; left to end on its own",
                    STOP_TIMEOUT.as_millis()
                ));
            }
        }
        Ok(())
    }
}

cti_plugin_api::export_plugin!(control = WebControl);

#[cfg(test)]
mod tests;
