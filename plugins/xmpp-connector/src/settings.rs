//! The hosted control's `settings` table.

use std::{fmt, path::PathBuf, time::Duration};

use cti_plugin_api::sdk::prelude::*;
use serde::Deserialize;
use tokio_xmpp::{jid::BareJid, xmlstream::Timeouts};

use crate::{
    core::CoreConfig,
    wire::{self, ConnectOptions, Security},
};

/// The settings as written in the manifest.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Raw {
    jid: String,
    password: Option<String>,
    password_file: Option<String>,
    server: Option<String>,
    tls: Option<String>,
    ca_file: Option<String>,
    tls_server_name: Option<String>,
    resource: Option<String>,
    reconnect_min_ms: Option<u64>,
    reconnect_max_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    keepalive_secs: Option<u64>,
    reject_message: Option<String>,
    closing_message: Option<String>,
    transfer_message: Option<String>,
    transfer_peers: Vec<String>,
    history_lines: Option<usize>,
    forward_minutes: Option<u64>,
}

/// The checked settings.
#[derive(Clone)]
pub struct XmppSettings {
    /// How to open a session.
    pub connect: ConnectOptions,
    /// The first reconnect delay (doubled per failure up to `reconnect_max`).
    pub reconnect_min: Duration,
    /// The longest reconnect delay.
    pub reconnect_max: Duration,
    /// The conversation rules.
    pub core: CoreConfig,
}

impl fmt::Debug for XmppSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XmppSettings")
            .field("connect", &self.connect)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .finish_non_exhaustive()
    }
}

/// Default text sent to a customer whose chat the agent rejects.
pub const DEFAULT_REJECT: &str =
    "Sorry, no agent can take your chat right now. Please try again in a few minutes.";
/// Default text sent to a customer on a transfer.
pub const DEFAULT_TRANSFER: &str =
    "You are being transferred to another agent ({target}), who will continue this conversation.";

fn bad(msg: impl Into<String>) -> PluginError {
    PluginError::new(ErrorKind::BAD_SETTINGS, format!("settings: {}", msg.into()))
}

fn is_loopback(server: &str) -> bool {
    let host = server.rsplit_once(':').map_or(server, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl XmppSettings {
    /// Parses and checks the settings (reads `password_file` and `ca_file`
    /// so that `cti-host check` reports a bad one).
    ///
    /// # Errors
    /// `BadSettings` naming the key; never the password.
    pub fn from_settings(settings: &Settings) -> Result<Self, PluginError> {
        let raw: Raw = settings.parse()?;
        if raw.jid.trim().is_empty() {
            return Err(bad("`jid` is required (the agent's account, user@domain)"));
        }
        let jid = BareJid::new(raw.jid.trim())
            .map_err(|e| bad(format!("`jid` \"{}\" is not a JID: {e}", raw.jid)))?;
        if jid.node().is_none() {
            return Err(bad(format!(
                "`jid` \"{jid}\" needs a user part (user@domain)"
            )));
        }
        let password = match (raw.password, raw.password_file) {
            (Some(_), Some(_)) => {
                return Err(bad("give `password` or `password_file`, not both"));
            }
            (Some(p), None) => p,
            (None, Some(file)) => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| bad(format!("`password_file` {file}: {e}")))?;
                text.trim_end_matches(['\r', '\n']).to_owned()
            }
            (None, None) => return Err(bad("`password` or `password_file` is required")),
        };
        if password.is_empty() {
            return Err(bad(format!("the password of {jid} is empty")));
        }
        let server = raw
            .server
            .unwrap_or_else(|| format!("{}:5222", jid.domain()));
        if !server.contains(':') {
            return Err(bad(format!("`server` \"{server}\" must be host:port")));
        }
        let security = match raw.tls.as_deref().unwrap_or("starttls") {
            "none" => {
                if raw.ca_file.is_some() {
                    return Err(bad("`ca_file` needs tls = \"starttls\""));
                }
                Security::Plain
            }
            "starttls" => {
                let ca = raw.ca_file.as_ref().map(PathBuf::from);
                let config = wire::tls_config(ca.as_deref()).map_err(bad)?;
                Security::StartTls {
                    config,
                    server_name: raw
                        .tls_server_name
                        .clone()
                        .unwrap_or_else(|| jid.domain().to_string()),
                }
            }
            other => {
                return Err(bad(format!(
                    "`tls` must be \"starttls\" or \"none\", not \"{other}\""
                )))
            }
        };
        let ms = |v: Option<u64>, default: u64, key: &str| -> Result<Duration, PluginError> {
            match v.unwrap_or(default) {
                0 => Err(bad(format!("`{key}` must be positive"))),
                n => Ok(Duration::from_millis(n)),
            }
        };
        let reconnect_min = ms(raw.reconnect_min_ms, 500, "reconnect_min_ms")?;
        let reconnect_max = ms(raw.reconnect_max_ms, 30_000, "reconnect_max_ms")?;
        if reconnect_max < reconnect_min {
            return Err(bad("`reconnect_max_ms` is below `reconnect_min_ms`"));
        }
        let keepalive = Duration::from_secs(raw.keepalive_secs.unwrap_or(60).max(1));
        let resource = raw.resource.unwrap_or_else(|| "cti-host".into());
        let connect = ConnectOptions {
            jid: jid.clone(),
            password,
            server,
            security,
            resource: (!resource.trim().is_empty()).then_some(resource),
            connect_timeout: ms(raw.connect_timeout_ms, 10_000, "connect_timeout_ms")?,
            timeouts: Timeouts {
                read_timeout: keepalive,
                response_timeout: Duration::from_secs(20),
            },
        };
        let core = CoreConfig {
            reject_message: raw.reject_message.unwrap_or_else(|| DEFAULT_REJECT.into()),
            closing_message: raw.closing_message.unwrap_or_default(),
            transfer_message: raw
                .transfer_message
                .unwrap_or_else(|| DEFAULT_TRANSFER.into()),
            transfer_peers: raw.transfer_peers,
            history_lines: raw.history_lines.unwrap_or(50).min(1000),
            forward_for: Duration::from_secs(60 * raw.forward_minutes.unwrap_or(60)),
        };
        Ok(Self {
            connect,
            reconnect_min,
            reconnect_max,
            core,
        })
    }

    /// True when plaintext goes to a server off this machine.
    pub fn plaintext_off_loopback(&self) -> bool {
        matches!(self.connect.security, Security::Plain) && !is_loopback(&self.connect.server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<XmppSettings, PluginError> {
        XmppSettings::from_settings(&Settings::from_toml(text))
    }

    #[test]
    fn minimal_plaintext() {
        let s = parse("jid = \"agent@cti.test\"\npassword = \"pw\"\ntls = \"none\"\nserver = \"127.0.0.1:5222\"").unwrap();
        assert_eq!(s.connect.jid.as_str(), "agent@cti.test");
        assert_eq!(s.connect.resource.as_deref(), Some("cti-host"));
        assert!(!s.plaintext_off_loopback());
        assert_eq!(s.reconnect_min, Duration::from_millis(500));
        assert_eq!(s.core.reject_message, DEFAULT_REJECT);
    }

    #[test]
    fn server_defaults_to_the_domain() {
        let s = parse("jid = \"a@example.org\"\npassword = \"pw\"\ntls = \"none\"").unwrap();
        assert_eq!(s.connect.server, "example.org:5222");
        assert!(s.plaintext_off_loopback());
    }

    #[test]
    fn errors_name_the_key_and_never_the_password() {
        let cases = [
            ("password = \"x\"", "`jid` is required"),
            ("jid = \"nodomain@\"\npassword = \"x\"", "is not a JID"),
            ("jid = \"cti.test\"\npassword = \"x\"", "needs a user part"),
            ("jid = \"a@b\"", "`password` or `password_file` is required"),
            (
                "jid = \"a@b\"\npassword = \"hunter2\"\npassword_file = \"/x\"",
                "not both",
            ),
            (
                "jid = \"a@b\"\npassword_file = \"/nonexistent/pw\"",
                "/nonexistent/pw",
            ),
            (
                "jid = \"a@b\"\npassword = \"hunter2\"\ntls = \"ssl\"",
                "`tls` must be",
            ),
            (
                "jid = \"a@b\"\npassword = \"hunter2\"\nserver = \"host\"",
                "host:port",
            ),
            (
                "jid = \"a@b\"\npassword = \"hunter2\"\ntls = \"none\"\nca_file = \"/x\"",
                "needs tls",
            ),
            (
                "jid = \"a@b\"\npassword = \"hunter2\"\nca_file = \"/nonexistent/ca.pem\"",
                "/nonexistent/ca.pem",
            ),
            (
                "jid = \"a@b\"\npassword = \"hunter2\"\ntls = \"none\"\nreconnect_min_ms = 0",
                "reconnect_min_ms",
            ),
            ("jid = \"a@b\"\npassword = \"hunter2\"\nbogus = 1", "bogus"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BAD_SETTINGS, "{text}");
            assert!(e.message.contains(want), "{text}: {e}");
            assert!(!e.message.contains("hunter2"), "{text}: {e}");
        }
    }

    #[test]
    fn password_file_is_read_without_its_newline() {
        let dir = std::env::temp_dir().join(format!("xmpp-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        let s = parse(&format!(
            "jid = \"a@b\"\npassword_file = \"{}\"\ntls = \"none\"",
            f.display()
        ))
        .unwrap();
        assert_eq!(s.connect.password, "s3cret");
        assert!(!format!("{s:?}").contains("s3cret"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
