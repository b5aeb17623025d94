//! Who may use the desktop: the token, the session cookie, and the checks
//! on `Host` and `Origin`.
//!
//! - The token is a shared secret (the `token` setting, or 128 random bits
//!   per start, logged by the host). It is compared in constant time.
//! - Signing in (`GET /?token=…` or the form's `POST /login`) sets an
//!   `HttpOnly; SameSite=Strict` cookie named after the port (two desktops on
//!   one machine do not overwrite each other's) and redirects to `/`, so the
//!   token never stays in the address bar or the history of the page.
//! - Every request must name an expected `Host` (defeats DNS rebinding: a
//!   foreign name that resolves to 127.0.0.1 gets 421).
//! - The WebSocket upgrade and the sign-in form need an `Origin` equal to the
//!   page's own (`http://<Host>`) or one listed in `allowed_origins`.

use std::net::IpAddr;

use rand::RngCore;

use crate::settings::WebSettings;

/// A new random token: 128 bits from the OS, as 32 hex digits with at
/// least one letter (a token of digits only would look like a phone number
/// to the host's log redaction and be masked in the start-up line).
pub fn random_token() -> String {
    loop {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let mut s = String::with_capacity(32);
        for b in bytes {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        if s.bytes().any(|c| c.is_ascii_alphabetic()) {
            return s;
        }
    }
}

pub use cti_plugin_api::sdk::constant_time_eq;

/// The value of cookie `name` in one or more `Cookie` header values.
pub fn cookie_value<'a>(headers: impl Iterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// The running server's idea of who it is and who may come in.
#[derive(Debug, Clone)]
pub struct Gate {
    token: String,
    /// The session cookie's name.
    pub cookie_name: String,
    hosts: Vec<String>,
    any_host: bool,
    origins: Vec<String>,
}

impl Gate {
    /// The gate of a server listening on `bind:port` with `token`.
    pub fn new(settings: &WebSettings, port: u16, token: String) -> Self {
        let mut hosts: Vec<String> = settings.allowed_hosts.clone();
        let bind = settings.bind;
        if bind.is_loopback() || bind.is_unspecified() {
            hosts.push(format!("127.0.0.1:{port}"));
            hosts.push(format!("localhost:{port}"));
            hosts.push(format!("[::1]:{port}"));
        }
        if !bind.is_unspecified() {
            hosts.push(host_port(bind, port));
        }
        Self {
            token,
            cookie_name: format!("cti_web_{port}"),
            hosts,
            // Listening on every interface: the names the machine is reached
            // by are unknown unless listed.
            any_host: bind.is_unspecified() && settings.allowed_hosts.is_empty(),
            origins: settings.allowed_origins.clone(),
        }
    }

    /// The token (for the start-up log line).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// True when `presented` is the token.
    pub fn token_ok(&self, presented: &str) -> bool {
        constant_time_eq(presented.as_bytes(), self.token.as_bytes())
    }

    /// True when the cookie headers carry a valid session.
    pub fn session_ok<'a>(&self, cookies: impl Iterator<Item = &'a str>) -> bool {
        cookie_value(cookies, &self.cookie_name).is_some_and(|v| self.token_ok(v))
    }

    /// The `Set-Cookie` value that signs a browser in.
    pub fn session_cookie(&self) -> String {
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie_name, self.token
        )
    }

    /// The `Set-Cookie` value that signs a browser out.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
            self.cookie_name
        )
    }

    /// True when the `Host` header names this server.
    pub fn host_ok(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return false;
        };
        let host = host.trim().to_ascii_lowercase();
        self.any_host || self.hosts.contains(&host)
    }

    /// True when `origin` is the page's own (`http://<host>`) or allowed.
    pub fn origin_ok(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let (Some(origin), Some(host)) = (origin, host) else {
            return false;
        };
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        let own = format!("http://{}", host.trim().to_ascii_lowercase());
        origin == own || self.origins.contains(&origin)
    }
}

/// `ip:port`, with brackets around an IPv6 address.
pub fn host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::RawSettings;

    fn gate(bind: &str, hosts: &[&str], origins: &[&str]) -> Gate {
        let s = WebSettings::validate(RawSettings {
            bind: bind.into(),
            allowed_hosts: hosts.iter().map(|s| (*s).to_owned()).collect(),
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            ..RawSettings::default()
        })
        .expect("settings");
        Gate::new(&s, 8480, "0123456789abcdef0123".into())
    }

    #[test]
    fn tokens_are_random_hex() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(a.bytes().any(|c| c.is_ascii_alphabetic()));
        assert_ne!(a, b);
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokem"));
        assert!(!constant_time_eq(b"secret-token", b"secret-token2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
        // A shorter prefix padded with what would match a 0xff byte.
        assert!(!constant_time_eq(b"ab", b"ab\xff"));
    }

    #[test]
    fn cookies() {
        let hs = ["a=1; cti_web_8480=tok; b=2", "c=3"];
        assert_eq!(
            cookie_value(hs.iter().copied(), "cti_web_8480"),
            Some("tok")
        );
        assert_eq!(cookie_value(hs.iter().copied(), "c"), Some("3"));
        assert_eq!(cookie_value(hs.iter().copied(), "cti_web"), None);
        let g = gate("127.0.0.1", &[], &[]);
        assert!(g.session_ok(["cti_web_8480=0123456789abcdef0123"].into_iter()));
        assert!(!g.session_ok(["cti_web_8480=0123456789abcdef0124"].into_iter()));
        assert!(!g.session_ok(["cti_web_8481=0123456789abcdef0123"].into_iter()));
        assert!(g.session_cookie().contains("HttpOnly"));
        assert!(g.session_cookie().contains("SameSite=Strict"));
    }

    #[test]
    fn hosts_defeat_dns_rebinding() {
        let g = gate("127.0.0.1", &[], &[]);
        assert!(g.host_ok(Some("127.0.0.1:8480")));
        assert!(g.host_ok(Some("LOCALHOST:8480")));
        assert!(g.host_ok(Some("[::1]:8480")));
        assert!(!g.host_ok(Some("evil.example:8480")));
        assert!(!g.host_ok(Some("127.0.0.1:8481")));
        assert!(!g.host_ok(None));
        let lan = gate("192.168.1.5", &["desk.example.com"], &[]);
        assert!(lan.host_ok(Some("192.168.1.5:8480")));
        assert!(lan.host_ok(Some("desk.example.com")));
        assert!(!lan.host_ok(Some("127.0.0.1:8480")));
        let all = gate("0.0.0.0", &[], &[]);
        assert!(all.host_ok(Some("anything:8480")));
    }

    #[test]
    fn origins() {
        let g = gate("127.0.0.1", &[], &["https://desk.example.com"]);
        let host = Some("127.0.0.1:8480");
        assert!(g.origin_ok(Some("http://127.0.0.1:8480"), host));
        assert!(g.origin_ok(Some("https://desk.example.com"), host));
        assert!(!g.origin_ok(Some("http://evil.example"), host));
        assert!(!g.origin_ok(Some("http://127.0.0.1:8481"), host));
        assert!(!g.origin_ok(Some("null"), host));
        assert!(!g.origin_ok(None, host));
    }
}
