//! The hosted control's `settings` table.

use std::net::IpAddr;

use cti_plugin_api::sdk::prelude::*;
use serde::Deserialize;

/// The shortest token accepted in the settings.
pub const MIN_TOKEN_LEN: usize = 16;

/// The settings as written in the manifest. Every key is optional.
///
/// ```toml
/// bind = "127.0.0.1"
/// port = 8480
/// token = "a-long-random-secret"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSettings {
    /// The address to listen on.
    pub bind: String,
    /// The TCP port; 0 = any free port (logged at start).
    pub port: u16,
    /// The sign-in token; empty = a random one per start (logged).
    pub token: String,
    /// Origins besides the page's own that may open the WebSocket
    /// (`https://desk.example.com` behind a TLS reverse proxy).
    pub allowed_origins: Vec<String>,
    /// Host names (with port) the server answers to besides the loopback
    /// names and the bind address (a reverse proxy's name).
    pub allowed_hosts: Vec<String>,
    /// Browser tabs connected at once.
    pub max_clients: usize,
}

impl Default for RawSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".to_owned(),
            port: 0,
            token: String::new(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_clients: 16,
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSettings {
    /// The address to listen on.
    pub bind: IpAddr,
    /// The port (0 = any).
    pub port: u16,
    /// The configured token, if any.
    pub token: Option<String>,
    /// Extra WebSocket origins, lower-case, without a trailing slash.
    pub allowed_origins: Vec<String>,
    /// Extra `Host` header values, lower-case.
    pub allowed_hosts: Vec<String>,
    /// Browser tabs connected at once.
    pub max_clients: usize,
}

fn bad(msg: impl Into<String>) -> PluginError {
    PluginError::new(ErrorKind::BAD_SETTINGS, format!("settings: {}", msg.into()))
}

impl WebSettings {
    /// Parses and validates the settings table.
    ///
    /// # Errors
    /// `BadSettings` naming the key and the problem.
    pub fn from_settings(settings: &Settings) -> Result<Self, PluginError> {
        Self::validate(settings.parse::<RawSettings>()?)
    }

    /// Validates parsed settings.
    ///
    /// # Errors
    /// `BadSettings` naming the key and the problem.
    pub fn validate(raw: RawSettings) -> Result<Self, PluginError> {
        let bind: IpAddr = raw.bind.trim().parse().map_err(|_| {
            bad(format!(
                "bind = \"{}\" is not an IP address (use \"127.0.0.1\", \"::1\" or an interface address)",
                raw.bind
            ))
        })?;
        let token = if raw.token.is_empty() {
            None
        } else {
            if raw.token.chars().count() < MIN_TOKEN_LEN {
                return Err(bad(format!(
                    "token must be at least {MIN_TOKEN_LEN} characters (or leave it out for a random one per start)"
                )));
            }
            if !raw.token.bytes().all(is_token_byte) {
                return Err(bad(
                    "token may only hold letters, digits and - . _ ~ + / = (no spaces, quotes, ; or ,)",
                ));
            }
            Some(raw.token)
        };
        let mut allowed_origins = Vec::new();
        for o in raw.allowed_origins {
            let o = o.trim().trim_end_matches('/').to_ascii_lowercase();
            let rest = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"));
            match rest {
                Some(host) if !host.is_empty() && !host.contains('/') => allowed_origins.push(o),
                _ => {
                    return Err(bad(format!(
                        "allowed_origins: \"{o}\" is not an origin like \"https://desk.example.com\" (scheme and host, no path)"
                    )))
                }
            }
        }
        let mut allowed_hosts = Vec::new();
        for h in raw.allowed_hosts {
            let h = h.trim().to_ascii_lowercase();
            if h.is_empty() || h.contains('/') || h.contains(char::is_whitespace) {
                return Err(bad(format!(
                    "allowed_hosts: \"{h}\" is not a host name like \"desk.example.com:443\""
                )));
            }
            allowed_hosts.push(h);
        }
        if raw.max_clients == 0 || raw.max_clients > 1024 {
            return Err(bad("max_clients must be between 1 and 1024"));
        }
        Ok(Self {
            bind,
            port: raw.port,
            token,
            allowed_origins,
            allowed_hosts,
            max_clients: raw.max_clients,
        })
    }
}

/// Bytes allowed in a token: they need no quoting in a cookie.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<WebSettings, PluginError> {
        WebSettings::from_settings(&Settings::from_toml(toml))
    }

    #[test]
    fn defaults_are_loopback_any_port_random_token() {
        let s = parse("").expect("defaults");
        assert_eq!(s.bind, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(s.port, 0);
        assert_eq!(s.token, None);
        assert_eq!(s.max_clients, 16);
    }

    #[test]
    fn full_settings() {
        let s = parse(
            r#"
bind = "::1"
port = 8480
token = "0123456789abcdef-XYZ"
allowed_origins = ["https://Desk.example.com/"]
allowed_hosts = ["desk.example.com"]
max_clients = 4
"#,
        )
        .expect("valid");
        assert_eq!(s.bind, "::1".parse::<IpAddr>().expect("ip"));
        assert_eq!(s.port, 8480);
        assert_eq!(s.token.as_deref(), Some("0123456789abcdef-XYZ"));
        assert_eq!(s.allowed_origins, ["https://desk.example.com"]);
        assert_eq!(s.allowed_hosts, ["desk.example.com"]);
        assert_eq!(s.max_clients, 4);
    }

    #[test]
    fn refusals_name_the_key() {
        for (toml, needle) in [
            ("bind = \"localhost\"", "bind"),
            ("port = 70000", "70000"),
            ("token = \"short\"", "at least 16"),
            ("token = \"has space in the token\"", "token may only"),
            ("token = \"semi;colon-0123456789\"", "token may only"),
            (
                "allowed_origins = [\"desk.example.com\"]",
                "allowed_origins",
            ),
            ("allowed_origins = [\"https://x/path\"]", "allowed_origins"),
            ("allowed_hosts = [\"a b\"]", "allowed_hosts"),
            ("max_clients = 0", "max_clients"),
            ("colour = 1", "colour"),
        ] {
            let e = parse(toml).expect_err(toml);
            assert_eq!(e.kind, ErrorKind::BAD_SETTINGS, "{toml}");
            assert!(e.message.contains(needle), "{toml}: {}", e.message);
        }
    }
}
