//! baresip-connector: drives the [baresip](https://github.com/baresip/baresip)
//! SIP user agent through its `ctrl_tcp` module (netstring-framed JSON), as
//! packaged by Debian 12 (baresip 1.0.0).
//!
//! # Settings
//! | key | default | meaning |
//! |---|---|---|
//! | `host` | `"127.0.0.1"` | where ctrl_tcp listens (`ctrl_tcp_listen` in baresip's config) |
//! | `port` | `4444` | its port |
//! | `connect_timeout_ms` | `1000` | TCP connect timeout |
//! | `command_timeout_ms` | `2000` | budget of one desktop command at baresip (all its requests) |
//! | `reconnect_min_ms` | `200` | first delay before reconnecting; doubles after each failure |
//! | `reconnect_max_ms` | `5000` | the largest delay |
//! | `account` | `""` | the baresip account (AOR, e.g. `sip:1001@pbx`) the agent uses; empty: baresip's current account, every account's calls |
//!
//! # What it does
//! Connection model: **instance**. A session thread connects (with back-off)
//! and raises `LinkUp` / `LinkDown` (with the cause) / `LinkReconnecting`;
//! baresip's events become CSTA events keyed by the SIP Call-ID; after every
//! (re)connect — and after a restart or reload, with the calls the desktop
//! knew — it re-reads baresip's calls (`listcalls`) so the desktop's calls
//! match the phone's. See `docs/telephony.md` for the event mapping and the
//! baresip 1.0.0 quirks it works around.
//!
//! # Capabilities
//! Exactly what baresip 1.0.0's commands can do: Answer (`accept`), Reject
//! (`hangup` of a ringing inbound call), Hangup, MakeCall (`dial`), Hold
//! (`hold`) / Retrieve (`resume`), SendDtmf (`sndcode`), BlindTransfer
//! (`transfer`, a REFER), Mute / Unmute (`mute`, a toggle). Not: consultation,
//! attended transfer (no REFER with Replaces), conference (no mixing),
//! alternate, agent states (baresip has no ACD).
#![deny(unsafe_code)]

mod core;
mod netstring;
mod proto;
mod session;
mod sockopt;

use std::time::Duration;

use cti_plugin_api::sdk::prelude::*;
use serde::Deserialize;

pub use crate::core::{sip_cause, Call, Core, PhoneCall, Prev, Reaction, Task};
pub use crate::netstring::{encode as encode_netstring, Decoder, FrameError, MAX_FRAME};
pub use crate::proto::{
    parse_callstat, parse_listcalls, parse_message, parse_mute, user_of, CallStat, Event, Listed,
    Message, Response,
};

/// The commands baresip 1.0.0 can carry out.
pub const CAPABILITIES: Capabilities = Capabilities::from_kinds(&[
    CommandKind::ANSWER,
    CommandKind::REJECT,
    CommandKind::HANGUP,
    CommandKind::HOLD,
    CommandKind::RETRIEVE,
    CommandKind::MAKE_CALL,
    CommandKind::SEND_DTMF,
    CommandKind::MUTE,
    CommandKind::UNMUTE,
    CommandKind::BLIND_TRANSFER,
]);

/// The hosted control's `settings`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaresipSettings {
    /// ctrl_tcp host.
    pub host: String,
    /// ctrl_tcp port.
    pub port: u16,
    /// TCP connect timeout.
    pub connect_timeout_ms: u64,
    /// Budget of one command.
    pub command_timeout_ms: u64,
    /// First reconnect delay.
    pub reconnect_min_ms: u64,
    /// Largest reconnect delay.
    pub reconnect_max_ms: u64,
    /// The baresip account to use.
    pub account: String,
}

impl Default for BaresipSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 4444,
            connect_timeout_ms: 1000,
            command_timeout_ms: 2000,
            reconnect_min_ms: 200,
            reconnect_max_ms: 5000,
            account: String::new(),
        }
    }
}

impl BaresipSettings {
    /// Parses and checks the settings.
    ///
    /// # Errors
    /// `BadSettings` naming the key.
    pub fn from_settings(settings: &Settings) -> Result<Self, PluginError> {
        let s: Self = settings.parse()?;
        let bad = |m: String| Err(PluginError::new(ErrorKind::BAD_SETTINGS, m));
        if s.host.trim().is_empty() || s.host.chars().any(char::is_whitespace) {
            return bad(format!(
                "settings: `host` must be a host name or address, not {:?}",
                s.host
            ));
        }
        if s.port == 0 {
            return bad("settings: `port` must be 1-65535 (ctrl_tcp's port)".into());
        }
        for (k, v) in [
            ("connect_timeout_ms", s.connect_timeout_ms),
            ("command_timeout_ms", s.command_timeout_ms),
            ("reconnect_min_ms", s.reconnect_min_ms),
            ("reconnect_max_ms", s.reconnect_max_ms),
        ] {
            if v == 0 || v > 600_000 {
                return bad(format!(
                    "settings: `{k}` must be 1-600000 (milliseconds), not {v}"
                ));
            }
        }
        if s.reconnect_min_ms > s.reconnect_max_ms {
            return bad(format!(
                "settings: `reconnect_min_ms` ({}) must not exceed `reconnect_max_ms` ({})",
                s.reconnect_min_ms, s.reconnect_max_ms
            ));
        }
        if s.account.chars().any(char::is_whitespace) {
            return bad(format!(
                "settings: `account` must be an AOR like sip:1001@pbx, not {:?}",
                s.account
            ));
        }
        Ok(s)
    }

    fn config(&self) -> session::Config {
        session::Config {
            host: self.host.trim().to_owned(),
            port: self.port,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            command_timeout: Duration::from_millis(self.command_timeout_ms),
            reconnect_min: Duration::from_millis(self.reconnect_min_ms),
            reconnect_max: Duration::from_millis(self.reconnect_max_ms),
            account: self.account.trim().to_owned(),
        }
    }
}

/// The connector.
pub struct BaresipConnector {
    host: Host,
    settings: BaresipSettings,
    session: Option<session::Handle>,
}

impl NewConnector for BaresipConnector {
    fn new(host: Host, settings: Settings) -> Result<Self, PluginError> {
        let settings = BaresipSettings::from_settings(&settings)?;
        Ok(Self {
            host,
            settings,
            session: None,
        })
    }
}

fn bad_argument(msg: String) -> PluginError {
    PluginError::new(ErrorKind::BAD_ARGUMENT, msg)
}

/// Checks a command's arguments before it reaches baresip; returns the
/// command as sent (DTMF digits upper-cased, targets trimmed).
///
/// # Errors
/// `Unsupported` outside [`CAPABILITIES`], `BadArgument` for a missing call
/// id, a target with spaces or control characters (baresip would take them
/// as part of the URI), or digits other than `0-9 * # A-D`.
pub fn check_command(command: &Command) -> Result<Command, PluginError> {
    if !CAPABILITIES.contains(command.kind) {
        return Err(unsupported(command));
    }
    let mut cmd = command.clone();
    if command.kind != CommandKind::MAKE_CALL && command.call_id.trim().is_empty() {
        return Err(bad_argument(format!("{} needs a call id", command.kind)));
    }
    match command.kind {
        CommandKind::MAKE_CALL | CommandKind::BLIND_TRANSFER => {
            let t = command.target.trim();
            if t.is_empty() {
                return Err(bad_argument(format!(
                    "{} needs a target (a number or a SIP URI)",
                    command.kind
                )));
            }
            if t.len() > 900 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad_argument(format!(
                    "bad target {t:?}: a number or SIP URI without spaces, at most 900 bytes"
                )));
            }
            cmd.target = t.into();
        }
        CommandKind::SEND_DTMF => {
            let d = command.target.trim().to_ascii_uppercase();
            if d.is_empty()
                || d.len() > 64
                || !d
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D'))
            {
                return Err(bad_argument(format!(
                    "bad DTMF digits {:?}: 1-64 of 0-9 * # A-D",
                    command.target
                )));
            }
            cmd.target = d.into();
        }
        _ => {}
    }
    Ok(cmd)
}

impl Connector for BaresipConnector {
    const CAPABILITIES: Capabilities = CAPABILITIES;

    fn start(&mut self, calls: Vec<CallInfo>) -> Result<(), PluginError> {
        if let Some(mut old) = self.session.take() {
            old.stop();
        }
        let n = calls.len();
        self.session = Some(session::Handle::spawn(
            self.host.clone(),
            self.settings.config(),
            calls,
        )?);
        self.host.info(&format!(
            "baresip connector started for ctrl_tcp at {}:{} ({n} call(s) from the desktop to resynchronise)",
            self.settings.host, self.settings.port
        ));
        Ok(())
    }

    fn execute(&mut self, command: &Command) -> Result<Outcome, PluginError> {
        let cmd = check_command(command)?;
        let session = self.session.as_ref().ok_or_else(|| {
            PluginError::new(ErrorKind::UNAVAILABLE, "the connector is not started")
        })?;
        session.execute(&cmd)
    }

    fn calls(&self) -> Vec<CallInfo> {
        self.session
            .as_ref()
            .map(session::Handle::calls)
            .unwrap_or_default()
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        if let Some(mut s) = self.session.take() {
            s.stop();
        }
        Ok(())
    }
}

impl Drop for BaresipConnector {
    fn drop(&mut self) {
        if let Some(mut s) = self.session.take() {
            s.stop();
        }
    }
}

cti_plugin_api::export_plugin!(connector = BaresipConnector);

#[cfg(test)]
mod session_tests;
