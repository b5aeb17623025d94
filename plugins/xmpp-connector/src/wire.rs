//! One XMPP client session on tokio-xmpp's low-level XML stream: TCP,
//! optional STARTTLS with a rustls configuration the caller builds (its own
//! root store: no process-wide state, no `SSL_CERT_FILE`), SASL, resource
//! binding. No hidden reconnects, queues or worker tasks: the owner of a
//! [`Link`] reads every stanza itself and decides what a lost connection
//! means. (tokio-xmpp's high-level `Client` reconnects silently, never
//! reports an authentication failure, and its receiver can stall when a
//! stanza arrives while a send holds its internal lock — the "lost
//! stanzas right after Online" of the recipe. Nothing of it is used here.)
//!
//! Also used by the end-to-end tests for their customer clients.

use std::{borrow::Cow, collections::VecDeque, fmt, io, sync::Arc, time::Duration};

use futures::{SinkExt, StreamExt};
use tokio::{io::BufStream, net::TcpStream};
use tokio_rustls::{rustls, TlsConnector};
use tokio_xmpp::{
    connect::AsyncReadAndWrite,
    jid::{BareJid, FullJid, Jid},
    parsers::{
        bind::{BindQuery, BindResponse},
        iq::Iq,
        ns,
        ping::Ping,
        starttls,
        stream_features::StreamFeatures,
    },
    xmlstream::{
        initiate_stream, FallibleStreamElement, ReadError, StreamHeader, Timeouts, XmlStream,
        XmppStreamElement,
    },
    Stanza,
};

/// The stream type of a session (plaintext or TLS, boxed).
type Stream = XmlStream<Box<dyn AsyncReadAndWrite + Send + 'static>, FallibleStreamElement>;

/// How a session is encrypted.
#[derive(Clone)]
pub enum Security {
    /// Plaintext TCP (loopback and lab use only).
    Plain,
    /// STARTTLS, verified against `config`'s roots for `server_name`.
    StartTls {
        /// The rustls client configuration (roots, provider).
        config: Arc<rustls::ClientConfig>,
        /// The name the server's certificate must carry.
        server_name: String,
    },
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain => f.write_str("Plain"),
            Self::StartTls { server_name, .. } => write!(f, "StartTls({server_name})"),
        }
    }
}

/// What a session needs.
#[derive(Clone)]
pub struct ConnectOptions {
    /// The account.
    pub jid: BareJid,
    /// Its password (never printed: `Debug` leaves it out).
    pub password: String,
    /// `host:port` to connect to (no SRV lookup).
    pub server: String,
    /// Plaintext or STARTTLS.
    pub security: Security,
    /// The resource to ask for (the server may pick another).
    pub resource: Option<String>,
    /// Time allowed for TCP + TLS + login + bind.
    pub connect_timeout: Duration,
    /// Silence before a keepalive is due, and the time a keepalive has to
    /// be answered.
    pub timeouts: Timeouts,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("jid", &self.jid.as_str())
            .field("server", &self.server)
            .field("security", &self.security)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

/// Why a session could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The server refused the credentials (SASL condition, e.g.
    /// `not-authorized`). Retrying with the same password will not help.
    Auth(String),
    /// A transient authentication problem (`temporary-auth-failure`).
    AuthTemporary(String),
    /// TLS could not be established (certificate, no STARTTLS offered…).
    Tls(String),
    /// Anything else (refused, reset, timeout, protocol).
    Other(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auth(c) => write!(f, "authentication failed ({c})"),
            Self::AuthTemporary(c) => write!(f, "temporary authentication failure ({c})"),
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::Other(e) => f.write_str(e),
        }
    }
}

fn other(e: impl fmt::Display) -> ConnectError {
    ConnectError::Other(e.to_string())
}

/// What [`Link::recv`] returns.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // Returned by value once per stanza; boxing buys nothing.
pub enum Recv {
    /// A stanza.
    Stanza(Stanza),
    /// Nothing arrived for `timeouts.read_timeout`: send a keepalive.
    Idle,
    /// The session is over (the reason, for the log).
    Closed(String),
}

/// An open, bound session.
pub struct Link {
    stream: Stream,
    /// The full JID the server bound.
    pub bound: FullJid,
    /// Stanzas that arrived while binding, handed out first.
    early: VecDeque<Stanza>,
    write_timeout: Duration,
    next_id: u64,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Link({})", self.bound)
    }
}

/// Opens a session: TCP, STARTTLS when asked, SASL, bind. The whole
/// handshake is bounded by `connect_timeout`.
///
/// # Errors
/// [`ConnectError`] says whether retrying can help.
pub async fn connect(opts: &ConnectOptions) -> Result<Link, ConnectError> {
    match tokio::time::timeout(opts.connect_timeout, handshake(opts)).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Other(format!(
            "no session within {} ms",
            opts.connect_timeout.as_millis()
        ))),
    }
}

fn header(domain: &str) -> StreamHeader<'_> {
    StreamHeader {
        to: Some(Cow::Borrowed(domain)),
        from: None,
        id: None,
    }
}

async fn handshake(opts: &ConnectOptions) -> Result<Link, ConnectError> {
    let domain = opts.jid.domain().as_str().to_owned();
    let tcp = TcpStream::connect(&opts.server)
        .await
        .map_err(|e| other(format!("cannot connect to {}: {e}", opts.server)))?;
    // Chat is small messages both ways: never wait for Nagle.
    let _ = tcp.set_nodelay(true);
    let pending = initiate_stream(
        BufStream::new(tcp),
        ns::JABBER_CLIENT,
        header(&domain),
        opts.timeouts,
    )
    .await
    .map_err(other)?;
    let (features, stream): (
        StreamFeatures,
        XmlStream<BufStream<TcpStream>, FallibleStreamElement>,
    ) = pending
        .recv_features()
        .await
        .map_err(|e| other(format!("{e:?}")))?;
    let (features, stream) = match &opts.security {
        Security::Plain => (features, stream.box_stream()),
        Security::StartTls {
            config,
            server_name,
        } => {
            if !features.can_starttls() {
                return Err(ConnectError::Tls(format!(
                    "{} does not offer STARTTLS",
                    opts.server
                )));
            }
            let tcp = starttls_proceed(stream).await?;
            let name = rustls::pki_types::ServerName::try_from(server_name.clone())
                .map_err(|e| ConnectError::Tls(format!("bad server name {server_name}: {e}")))?;
            let tls = TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
                .map_err(|e| ConnectError::Tls(e.to_string()))?;
            let io: Box<dyn AsyncReadAndWrite + Send> = Box::new(BufStream::new(tls));
            let pending = initiate_stream(io, ns::JABBER_CLIENT, header(&domain), opts.timeouts)
                .await
                .map_err(other)?;
            pending
                .recv_features()
                .await
                .map_err(|e| other(format!("{e:?}")))?
        }
    };
    let node = opts
        .jid
        .node()
        .ok_or_else(|| other("the account JID has no user part"))?;
    let creds = sasl::common::Credentials::default()
        .with_username(node.as_str())
        .with_password(opts.password.clone())
        .with_channel_binding(sasl::common::ChannelBinding::None);
    let initiating = tokio_xmpp::client_login(stream, features.sasl_mechanisms, creds)
        .await
        .map_err(|e| match e {
            tokio_xmpp::Error::Auth(tokio_xmpp::error::AuthError::Fail(cond)) => {
                let name = sasl_condition(&cond);
                if name == "temporary-auth-failure" {
                    ConnectError::AuthTemporary(name)
                } else {
                    ConnectError::Auth(name)
                }
            }
            tokio_xmpp::Error::Auth(a) => ConnectError::Auth(a.to_string()),
            other => ConnectError::Other(format!("during login: {other}")),
        })?;
    let pending = initiating
        .send_header(header(&domain))
        .await
        .map_err(other)?;
    let (features, mut stream): (StreamFeatures, Stream) = pending
        .recv_features()
        .await
        .map_err(|e| other(format!("{e:?}")))?;
    if !features.can_bind() {
        return Err(other("the server offers no resource binding"));
    }
    let bind = Iq::from_set("bind-1", BindQuery::new(opts.resource.clone()));
    send_element(&mut stream, &Stanza::Iq(bind), opts.connect_timeout)
        .await
        .map_err(other)?;
    let mut early = VecDeque::new();
    let bound = loop {
        match read(&mut stream).await {
            Recv::Stanza(Stanza::Iq(iq)) if iq.id() == "bind-1" => match iq {
                Iq::Result {
                    payload: Some(p), ..
                } => {
                    let r = BindResponse::try_from(p).map_err(|e| other(format!("bind: {e}")))?;
                    break r.jid;
                }
                Iq::Error { error, .. } => {
                    return Err(other(format!(
                        "bind refused: {:?}",
                        error.defined_condition
                    )))
                }
                _ => return Err(other("unexpected bind response")),
            },
            Recv::Stanza(s) => early.push_back(s),
            Recv::Idle => {}
            Recv::Closed(why) => return Err(other(format!("closed while binding: {why}"))),
        }
    };
    Ok(Link {
        stream,
        bound,
        early,
        write_timeout: opts.connect_timeout.max(Duration::from_secs(5)),
        next_id: 0,
    })
}

/// Sends `<starttls/>`, waits for `<proceed/>`, and hands the TCP stream back.
async fn starttls_proceed(
    mut stream: XmlStream<BufStream<TcpStream>, FallibleStreamElement>,
) -> Result<TcpStream, ConnectError> {
    stream
        .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
            starttls::Request,
        )))
        .await
        .map_err(other)?;
    loop {
        match stream.next().await {
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Starttls(
                starttls::Nonza::Proceed(_),
            )))) => break,
            Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(e)) => return Err(ConnectError::Tls(format!("STARTTLS refused: {e}"))),
            None => return Err(ConnectError::Tls("closed during STARTTLS".into())),
        }
    }
    Ok(stream.into_inner().into_inner())
}

fn sasl_condition(c: &tokio_xmpp::parsers::sasl::DefinedCondition) -> String {
    // "NotAuthorized" → "not-authorized"
    let debug = format!("{c:?}");
    let mut out = String::with_capacity(debug.len() + 4);
    for (i, ch) in debug.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

async fn send_element(stream: &mut Stream, stanza: &Stanza, within: Duration) -> io::Result<()> {
    match tokio::time::timeout(within, stream.send(stanza)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("write blocked for {} ms", within.as_millis()),
        )),
    }
}

/// Reads the next stanza; unparsable stanzas are skipped (logged by the
/// caller through `Closed` only when the stream itself fails).
async fn read(stream: &mut Stream) -> Recv {
    loop {
        return match stream.next().await {
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Stanza(s)))) => Recv::Stanza(s),
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                Recv::Closed(format!("stream error from the server: {e}"))
            }
            // Other nonzas (stream management we never enabled…): ignore.
            Some(Ok(FallibleStreamElement::Ok(_))) => continue,
            // A stanza this library cannot parse (a customer's odd client):
            // skip it, the stream is fine.
            Some(Ok(FallibleStreamElement::Err(_))) | Some(Err(ReadError::ParseError(_))) => {
                continue
            }
            Some(Err(ReadError::SoftTimeout)) => Recv::Idle,
            Some(Err(ReadError::HardError(e))) => Recv::Closed(e.to_string()),
            Some(Err(ReadError::StreamFooterReceived)) => {
                Recv::Closed("the server closed the stream".into())
            }
            None => Recv::Closed("connection closed".into()),
        };
    }
}

impl Link {
    /// The bound JID's bare part.
    pub fn bare(&self) -> BareJid {
        self.bound.to_bare()
    }

    /// Sends a stanza (bounded in time: a blocked write is an error).
    ///
    /// # Errors
    /// The connection is broken; drop the link.
    pub async fn send(&mut self, stanza: impl Into<Stanza>) -> io::Result<()> {
        let stanza = stanza.into();
        send_element(&mut self.stream, &stanza, self.write_timeout).await
    }

    /// The next stanza, an idle notice, or the end of the session. Cancel
    /// safe: dropping the future loses nothing.
    pub async fn recv(&mut self) -> Recv {
        if let Some(s) = self.early.pop_front() {
            return Recv::Stanza(s);
        }
        read(&mut self.stream).await
    }

    /// A fresh stanza id with `prefix`.
    pub fn next_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    /// Sends a ping to the server (keepalive, readiness round trip).
    ///
    /// # Errors
    /// The connection is broken.
    pub async fn ping(&mut self, id: &str) -> io::Result<()> {
        let domain = Jid::from(BareJid::from_parts(None, self.bound.domain()));
        let iq = Iq::from_get(id.to_owned(), Ping).with_to(domain);
        self.send(Stanza::Iq(iq)).await
    }

    /// Closes the stream politely (`</stream:stream>`), within `within`.
    pub async fn close(mut self, within: Duration) {
        let _ = tokio::time::timeout(
            within,
            <Stream as SinkExt<&Stanza>>::close(&mut self.stream),
        )
        .await;
    }
}

/// Builds the rustls configuration for STARTTLS: the roots of `ca_file`
/// (PEM, one or more certificates), or the system's roots when `None`.
/// Uses the `ring` provider explicitly (no process default is installed).
///
/// # Errors
/// A line naming the file and the problem.
pub fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            let mut n = 0;
            for cert in certs {
                let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                n += 1;
            }
            if n == 0 {
                return Err(format!(
                    "ca_file {}: no PEM certificate in it",
                    path.display()
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("no system CA certificates found; set ca_file".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_conditions_are_spelled_like_the_rfc() {
        use tokio_xmpp::parsers::sasl::DefinedCondition as C;
        assert_eq!(sasl_condition(&C::NotAuthorized), "not-authorized");
        assert_eq!(
            sasl_condition(&C::TemporaryAuthFailure),
            "temporary-auth-failure"
        );
    }

    #[test]
    fn options_never_print_the_password() {
        let o = ConnectOptions {
            jid: BareJid::new("agent@cti.test").unwrap(),
            password: "s3cret-pw".into(),
            server: "127.0.0.1:5222".into(),
            security: Security::Plain,
            resource: None,
            connect_timeout: Duration::from_secs(1),
            timeouts: Timeouts::tight(),
        };
        let text = format!("{o:?}");
        assert!(
            text.contains("agent@cti.test") && !text.contains("s3cret"),
            "{text}"
        );
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("xmpp-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = tls_config(Some(&empty)).unwrap_err();
        assert!(e.contains("empty.pem"), "{e}");
        let e = tls_config(Some(&dir.join("missing.pem"))).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
