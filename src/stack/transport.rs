//! The charger's WebSocket to the CSMS (OCPP-J 1.6): `<csms-url>/<charge-point-id>` with
//! subprotocol `ocpp1.6`, ws:// or wss://, HTTP Basic authentication for SecurityProfile 1.
//!
//! Seed limitation reproduced: with wss:// the charger "will not check the CS(MS) identity via the
//! certificate. It will only use the protocol and send basic auth." The TLS handshake is real
//! (signatures of the handshake are checked) but the server certificate chain is not.

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use zeroize::Zeroizing;

use super::secret::{Secret, SecretBytes};

pub const SUBPROTOCOL: &str = "ocpp1.6";

/// The largest WebSocket message, and the largest single frame, the charger accepts: 1 MiB.
///
/// The largest OCPP 1.6 message a CSMS sends a charger is a SendLocalList of a few hundred
/// entries or a charging profile of a few dozen periods, some tens of kilobytes; 1 MiB leaves
/// ample room while keeping a hostile or broken peer from taking the memory of a charger. A
/// larger message closes the connection with status 1009 (message too big).
pub const MAX_MESSAGE_SIZE: usize = 1 << 20;

/// How long a closing side keeps reading (and discarding) after its close frame, waiting for
/// the peer's close, before it drops the connection.
pub const CLOSE_LINGER: Duration = Duration::from_secs(3);

/// Bytes tungstenite reads from the socket at a time. OCPP messages are a few hundred bytes;
/// a larger one is read in several chunks. tungstenite keeps (and zero-fills) a buffer of this
/// size per connection, so its 128 KiB default would cost 128 KiB per charge point of a fleet.
pub const READ_BUFFER_SIZE: usize = 4096;

/// Bytes a charge point's connection reads at a time: what a CSMS sends a charger is mostly a
/// CALLRESULT of some tens of bytes (a few hundred for a charging profile), so 1 KiB reads
/// nearly all in one go and costs a quarter of [`READ_BUFFER_SIZE`] per charge point of a fleet.
pub const CHARGE_POINT_READ_BUFFER_SIZE: usize = 1024;

/// [`websocket_config`] with the charge point's smaller read buffer.
pub fn charge_point_websocket_config() -> WebSocketConfig {
    websocket_config().read_buffer_size(CHARGE_POINT_READ_BUFFER_SIZE)
}

/// The WebSocket limits of every OCPP-J connection in this crate (the charger's and the sandbox
/// CSMS's): messages and frames of at most [`MAX_MESSAGE_SIZE`], a [`READ_BUFFER_SIZE`] read
/// buffer, and each frame written at once (no write buffer kept between frames).
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE))
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a connection attempt failed, as a stable machine-readable kind (JSON: snake_case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectFailure {
    /// The CSMS URL (with the charge point id appended) is not a usable ws:// or wss:// URL.
    BadUrl,
    /// The CSMS host name could not be resolved.
    Dns,
    /// Nothing accepts connections on the CSMS port (TCP connection refused).
    TcpRefused,
    /// No TCP connection within the connect timeout.
    TcpTimeout,
    /// Another network error while connecting (network unreachable, connection reset).
    Network,
    /// The TLS handshake of a wss:// connection failed.
    Tls,
    /// Connected, but the CSMS did not complete the TLS or WebSocket handshake in time.
    HandshakeTimeout,
    /// The CSMS refused the WebSocket upgrade with an HTTP status (401, 403, 404, ...).
    HttpStatus,
    /// The CSMS accepted the upgrade without agreeing to subprotocol `ocpp1.6`.
    Subprotocol,
    /// The CSMS did not answer the upgrade as a WebSocket server does.
    Handshake,
}

impl ConnectFailure {
    /// The kind as in JSON (`tcp_refused`).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectFailure::BadUrl => "bad_url",
            ConnectFailure::Dns => "dns",
            ConnectFailure::TcpRefused => "tcp_refused",
            ConnectFailure::TcpTimeout => "tcp_timeout",
            ConnectFailure::Network => "network",
            ConnectFailure::Tls => "tls",
            ConnectFailure::HandshakeTimeout => "handshake_timeout",
            ConnectFailure::HttpStatus => "http_status",
            ConnectFailure::Subprotocol => "subprotocol",
            ConnectFailure::Handshake => "handshake",
        }
    }
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed connection attempt. `url` never carries credentials (user information in the URL
/// is replaced by `***`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid CSMS URL '{url}': {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot resolve the CSMS host {host}: {reason}")]
    Dns { host: String, reason: String },
    #[error("{url}: connection refused by {addr} (nothing listens on that port)")]
    TcpRefused { url: String, addr: SocketAddr },
    #[error("{url}: no TCP connection within {secs} s")]
    TcpTimeout { url: String, secs: u64 },
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: TLS handshake failed: {reason}")]
    Tls { url: String, reason: String },
    #[error("{url}: connected, but no answer to the {stage} handshake within {secs} s")]
    HandshakeTimeout {
        url: String,
        stage: &'static str,
        secs: u64,
    },
    #[error("the CSMS at {url} refused the connection with HTTP status {status}{}", status_hint(*.status))]
    Refused { url: String, status: u16 },
    #[error("the CSMS at {url} did not agree to subprotocol ocpp1.6")]
    Subprotocol { url: String },
    #[error("{url}: the WebSocket upgrade failed: {reason}")]
    Handshake { url: String, reason: String },
}

/// What an HTTP status of a refused upgrade usually means for a charger.
fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (wrong AuthorizationKey or charge point id)",
        404 => " (unknown charge point id or wrong CSMS path)",
        _ => "",
    }
}

impl Error {
    /// True when the CSMS rejected our credentials (HTTP 401 or 403).
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            Error::Refused {
                status: 401 | 403,
                ..
            }
        )
    }

    /// The kind of failure.
    pub fn kind(&self) -> ConnectFailure {
        match self {
            Error::BadUrl { .. } => ConnectFailure::BadUrl,
            Error::Dns { .. } => ConnectFailure::Dns,
            Error::TcpRefused { .. } => ConnectFailure::TcpRefused,
            Error::TcpTimeout { .. } => ConnectFailure::TcpTimeout,
            Error::Connect { .. } => ConnectFailure::Network,
            Error::Tls { .. } => ConnectFailure::Tls,
            Error::HandshakeTimeout { .. } => ConnectFailure::HandshakeTimeout,
            Error::Refused { .. } => ConnectFailure::HttpStatus,
            Error::Subprotocol { .. } => ConnectFailure::Subprotocol,
            Error::Handshake { .. } => ConnectFailure::Handshake,
        }
    }

    /// The HTTP status of a refused upgrade.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Everything needed to open the connection.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// CSMS base URL, such as `ws://127.0.0.1:9000/ocpp`.
    pub csms_url: String,
    pub charge_point_id: String,
    /// SecurityProfile 0 (no authentication) or 1 (HTTP Basic).
    pub security_profile: u8,
    /// The HTTP Basic password (derived from AuthorizationKey: its decoded bytes, or its hex
    /// text), for profile 1.
    pub basic_password_bytes: Option<SecretBytes>,
}

impl Endpoint {
    /// `<csms-url>/<charge-point-id>`, as OCPP-J prescribes.
    pub fn url(&self) -> Result<String, Error> {
        let base = self.csms_url.trim();
        let lower = base.to_ascii_lowercase();
        if !(lower.starts_with("ws://") || lower.starts_with("wss://")) {
            return Err(Error::BadUrl {
                url: shown_url(base),
                reason: "the scheme must be ws:// or wss://".into(),
            });
        }
        let rest = &base[base.find("://").map(|i| i + 3).unwrap_or(0)..];
        if rest.is_empty() || rest.starts_with('/') {
            return Err(Error::BadUrl {
                url: shown_url(base),
                reason: "no host".into(),
            });
        }
        if self.charge_point_id.is_empty() {
            return Err(Error::BadUrl {
                url: shown_url(base),
                reason: "the charge point id is empty".into(),
            });
        }
        let id: String = self
            .charge_point_id
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        Ok(format!("{}/{}", base.trim_end_matches('/'), id))
    }

    /// The `Authorization` header value: `Basic base64(<id>:<password>)`.
    fn authorization(&self) -> Option<Secret> {
        if self.security_profile < 1 {
            return None;
        }
        let password = self.basic_password_bytes.as_ref()?;
        let mut raw = Zeroizing::new(self.charge_point_id.as_bytes().to_vec());
        raw.push(b':');
        raw.extend_from_slice(password.expose());
        Some(Secret::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw.as_slice())
        )))
    }
}

/// `url` safe to show: user information (`user:password@`) replaced by `***@`.
pub fn shown_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    match url[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..scheme_end], &url[scheme_end + at..]),
        None => url.to_string(),
    }
}

/// At most `max` characters of `text` (error texts from peers can be as long as a message).
fn bounded(text: impl std::fmt::Display, max: usize) -> String {
    let text = text.to_string();
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// Opens the WebSocket: resolves the host, connects TCP, does the TLS handshake for wss://,
/// then the WebSocket upgrade with subprotocol `ocpp1.6`. `timeout` bounds the whole attempt;
/// each stage fails with its own [`ConnectFailure`] kind.
pub async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Socket, Error> {
    let url = endpoint.url()?;
    let shown = shown_url(&url);
    let deadline = Instant::now() + timeout;
    let secs = timeout.as_secs().max(1);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::BadUrl {
            url: shown.clone(),
            reason: bounded(e, 200),
        })?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    if let Some(auth) = endpoint.authorization() {
        let mut value = HeaderValue::from_str(auth.expose()).map_err(|_| Error::BadUrl {
            url: shown.clone(),
            reason: "credentials cannot be sent in a header".into(),
        })?;
        value.set_sensitive(true);
        request.headers_mut().insert("Authorization", value);
    }
    let tls = request.uri().scheme_str() == Some("wss");
    let host = request
        .uri()
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Error::BadUrl {
            url: shown.clone(),
            reason: "no host".into(),
        })?;
    let authority = request.uri().authority().map_or("", |a| a.as_str());
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let port_text = match host_port.rsplit_once(':') {
        Some((host, port)) if !host.starts_with('[') || host.ends_with(']') => Some(port),
        _ => None,
    };
    let port = match port_text {
        None => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(text) => text.parse::<u16>().map_err(|_| Error::BadUrl {
            url: shown.clone(),
            reason: format!(
                "the port {:?} is not a number from 0 to 65535",
                bounded(text, 20)
            ),
        })?,
    };

    // DNS.
    let lookup = timeout_at(deadline, tokio::net::lookup_host((host.clone(), port))).await;
    let addrs: Vec<SocketAddr> = match lookup {
        Err(_) => {
            return Err(Error::Dns {
                host,
                reason: format!("no answer from the resolver within {secs} s"),
            });
        }
        Ok(Err(e)) => {
            return Err(Error::Dns {
                host,
                reason: bounded(e, 200),
            });
        }
        Ok(Ok(addrs)) => addrs.collect(),
    };
    if addrs.is_empty() {
        return Err(Error::Dns {
            host,
            reason: "the name has no address".into(),
        });
    }

    // TCP, each address in turn.
    let mut tcp = None;
    let mut last_error = None;
    for addr in &addrs {
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(Error::TcpTimeout { url: shown, secs }),
            Ok(Ok(stream)) => {
                tcp = Some(stream);
                break;
            }
            Ok(Err(e)) => last_error = Some((*addr, e)),
        }
    }
    let tcp = match (tcp, last_error) {
        (Some(tcp), _) => tcp,
        (None, Some((addr, e))) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(Error::TcpRefused { url: shown, addr });
        }
        (None, Some((addr, e))) => {
            return Err(Error::Connect {
                url: shown,
                reason: format!("{addr}: {}", bounded(e, 200)),
            });
        }
        (None, None) => {
            return Err(Error::Dns {
                host,
                reason: "the name has no address".into(),
            });
        }
    };
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }

    // TLS.
    let stream = if tls {
        let name =
            rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| Error::BadUrl {
                url: shown.clone(),
                reason: format!("host is not a valid TLS server name: {e}"),
            })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(&shown)?));
        match timeout_at(deadline, connector.connect(name, tcp)).await {
            Err(_) => {
                return Err(Error::HandshakeTimeout {
                    url: shown,
                    stage: "TLS",
                    secs,
                });
            }
            Ok(Err(e)) => {
                return Err(Error::Tls {
                    url: shown,
                    reason: bounded(e, 200),
                });
            }
            Ok(Ok(stream)) => MaybeTlsStream::Rustls(stream),
        }
    } else {
        MaybeTlsStream::Plain(tcp)
    };

    // WebSocket upgrade.
    let upgrade = tokio_tungstenite::client_async_with_config(
        request,
        stream,
        Some(charge_point_websocket_config()),
    );
    let (socket, response) = match timeout_at(deadline, upgrade).await {
        Err(_) => {
            return Err(Error::HandshakeTimeout {
                url: shown,
                stage: "WebSocket",
                secs,
            });
        }
        Ok(Ok(pair)) => pair,
        Ok(Err(tungstenite::Error::Http(resp))) => {
            return Err(Error::Refused {
                url: shown,
                status: resp.status().as_u16(),
            });
        }
        Ok(Err(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::SecWebSocketSubProtocolError(_),
        ))) => return Err(Error::Subprotocol { url: shown }),
        Ok(Err(e)) => {
            return Err(Error::Handshake {
                url: shown,
                reason: bounded(e, 200),
            });
        }
    };
    let agreed = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == SUBPROTOCOL));
    if !agreed {
        return Err(Error::Subprotocol { url: shown });
    }
    Ok(socket)
}

/// Sends one text message.
pub async fn send_text(socket: &mut Socket, text: String) -> Result<(), tungstenite::Error> {
    socket.send(Message::text(text)).await
}

/// What the reader half of the socket yields to the connection task.
#[derive(Debug)]
pub enum Incoming {
    Text(String),
    /// Something else was heard from the CSMS (a pong, a ping, a binary frame: OCPP-J uses
    /// text frames only, so a binary frame is ignored like noise). Proof the connection lives.
    Heard,
    /// The socket is closed or failed.
    Closed(String),
    /// The CSMS broke a WebSocket rule or limit: the charger closes the connection with `code`
    /// (1009 message too big, 1007 invalid UTF-8, 1002 protocol error) and then drops it.
    Violation {
        code: u16,
        reason: String,
    },
}

/// Reads the next message (answers pings itself through tungstenite).
pub async fn next_incoming(socket: &mut Socket) -> Incoming {
    loop {
        return match socket.next().await {
            Some(Ok(Message::Text(t))) => Incoming::Text(t.as_str().to_string()),
            Some(Ok(Message::Close(frame))) => Incoming::Closed(
                frame
                    .map(|f| {
                        format!(
                            "closed by the CSMS ({} {})",
                            u16::from(f.code),
                            bounded(&f.reason, 123)
                        )
                    })
                    .unwrap_or_else(|| "closed by the CSMS".into()),
            ),
            Some(Ok(Message::Frame(_))) => continue,
            Some(Ok(_)) => Incoming::Heard,
            Some(Err(e)) => match violation_code(&e) {
                Some(code) => Incoming::Violation {
                    code,
                    reason: bounded(&e, 200),
                },
                None => Incoming::Closed(bounded(&e, 200)),
            },
            None => Incoming::Closed("connection ended".into()),
        };
    }
}

/// The close code answering a read error the connection survives long enough to close.
fn violation_code(e: &tungstenite::Error) -> Option<u16> {
    match e {
        tungstenite::Error::Capacity(_) => Some(1009),
        tungstenite::Error::Utf8(_) => Some(1007),
        tungstenite::Error::Protocol(p) => match p {
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
            | tungstenite::error::ProtocolError::SendAfterClosing
            | tungstenite::error::ProtocolError::ReceivedAfterClosing => None,
            _ => Some(1002),
        },
        _ => None,
    }
}

/// How a close ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The peer answered with its close frame (or ended the connection) in time.
    Acknowledged,
    /// The peer did not finish the close within the linger time; the connection was dropped.
    TimedOut,
    /// The connection was already gone.
    Gone,
}

/// Closes the WebSocket cleanly: sends a close frame with `code` and `reason`, then keeps reading
/// (and discarding) what the peer still sends until its close frame, the end of the connection,
/// or `linger`, so that nothing unread is left in the socket when it is dropped (the kernel
/// would then reset the connection and discard what it had not yet delivered to the peer).
///
/// After a violation that left a frame half read (an oversized frame), pass `raw = true`: the
/// rest is then discarded as bytes, never buffered as a frame.
pub async fn close(
    socket: &mut Socket,
    code: u16,
    reason: &str,
    linger: Duration,
    raw: bool,
) -> CloseOutcome {
    let deadline = Instant::now() + linger;
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: bounded(reason, 120).into(),
    };
    match timeout_at(deadline, socket.close(Some(frame))).await {
        Err(_) => return CloseOutcome::TimedOut,
        Ok(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {
            return CloseOutcome::Gone;
        }
        // The peer closed first (tungstenite already answered its close) or the socket failed:
        // read what is left all the same.
        Ok(_) => {}
    }
    if raw {
        return drain_raw(socket, deadline).await;
    }
    loop {
        match timeout_at(deadline, socket.next()).await {
            Err(_) => return CloseOutcome::TimedOut,
            Ok(None) => return CloseOutcome::Acknowledged,
            Ok(Some(Ok(Message::Close(_)))) => {
                // The close handshake is complete; the peer (the server) ends the connection
                // next. Read until it does, within the same bound.
                continue;
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(tungstenite::Error::Capacity(_)))) => {
                return drain_raw(socket, deadline).await;
            }
            Ok(Some(Err(tungstenite::Error::ConnectionClosed))) => {
                return CloseOutcome::Acknowledged;
            }
            Ok(Some(Err(_))) => return CloseOutcome::Gone,
        }
    }
}

/// Reads and discards bytes until the peer ends the connection or `deadline`.
async fn drain_raw(socket: &mut Socket, deadline: Instant) -> CloseOutcome {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match timeout_at(deadline, socket.get_mut().read(&mut buf)).await {
            Err(_) => return CloseOutcome::TimedOut,
            Ok(Ok(0)) => return CloseOutcome::Acknowledged,
            Ok(Ok(_)) => continue,
            Ok(Err(_)) => return CloseOutcome::Gone,
        }
    }
}

fn tls_config(url: &str) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls {
            url: url.to_string(),
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoIdentityCheck(provider)))
        .with_no_client_auth();
    Ok(config)
}

/// Accepts any server certificate (the charger does not check the CSMS identity) while still
/// checking the handshake signatures, so the session keys are bound to the presented key.
#[derive(Debug)]
struct NoIdentityCheck(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoIdentityCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(url: &str, id: &str) -> Endpoint {
        Endpoint {
            csms_url: url.into(),
            charge_point_id: id.into(),
            security_profile: 0,
            basic_password_bytes: None,
        }
    }

    #[test]
    fn url_appends_the_charge_point_id() {
        assert_eq!(
            ep("ws://h:9000/ocpp", "CP1").url().unwrap(),
            "ws://h:9000/ocpp/CP1"
        );
        assert_eq!(
            ep("ws://h:9000/ocpp/", "CP 1").url().unwrap(),
            "ws://h:9000/ocpp/CP%201"
        );
        assert!(ep("http://h", "CP1").url().is_err());
        assert!(ep("ws://", "CP1").url().is_err());
    }

    #[test]
    fn basic_auth_uses_id_and_password_bytes() {
        let mut e = ep("ws://h", "CP1");
        e.security_profile = 1;
        e.basic_password_bytes = Some(SecretBytes::new(vec![0x00, 0xff]));
        let auth = e.authorization().unwrap();
        let b64 = auth.expose().strip_prefix("Basic ").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(raw, b"CP1:\x00\xff");
        assert_eq!(format!("{auth:?}"), crate::stack::secret::REDACTED);
        e.security_profile = 0;
        assert!(e.authorization().is_none());
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let mut e = ep("ws://h", "CP1");
        e.security_profile = 1;
        e.basic_password_bytes = Some(SecretBytes::new(b"pa55w0rd-pa55w0rd".to_vec()));
        let shown = format!("{e:?} {e:#?}");
        assert!(!shown.contains("pa55w0rd"), "{shown}");
        assert!(!shown.contains("112, 97"), "no byte list either: {shown}");
        assert!(shown.contains(crate::stack::secret::REDACTED), "{shown}");
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            shown_url("wss://user:secret@csms.example.com:443/ocpp/CP1"),
            "wss://***@csms.example.com:443/ocpp/CP1"
        );
        assert_eq!(shown_url("ws://h:9000/a@b"), "ws://h:9000/a@b");
        assert_eq!(shown_url("ws://h"), "ws://h");
        let e = ep("http://user:secret@h", "CP1").url().unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn failure_kinds_serialise_in_snake_case() {
        for kind in [
            ConnectFailure::BadUrl,
            ConnectFailure::Dns,
            ConnectFailure::TcpRefused,
            ConnectFailure::TcpTimeout,
            ConnectFailure::Network,
            ConnectFailure::Tls,
            ConnectFailure::HandshakeTimeout,
            ConnectFailure::HttpStatus,
            ConnectFailure::Subprotocol,
            ConnectFailure::Handshake,
        ] {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::json!(kind.as_str()));
            assert_eq!(
                serde_json::from_value::<ConnectFailure>(json).unwrap(),
                kind
            );
        }
        let e = Error::Refused {
            url: "ws://h/CP1".into(),
            status: 401,
        };
        assert_eq!(e.kind(), ConnectFailure::HttpStatus);
        assert_eq!(e.http_status(), Some(401));
        assert!(e.is_auth_failure());
        assert!(e.to_string().contains("wrong AuthorizationKey"), "{e}");
    }

    #[test]
    fn bounded_keeps_short_text_and_cuts_long_text() {
        assert_eq!(bounded("abc", 5), "abc");
        assert_eq!(bounded("abcdef", 3), "abc...");
        assert_eq!(bounded("ééé", 2), "éé...");
    }

    #[test]
    fn the_shared_config_caps_messages_and_frames() {
        let c = websocket_config();
        assert_eq!(c.read_buffer_size, READ_BUFFER_SIZE);
        assert_eq!(c.write_buffer_size, 0);
        assert_eq!(c.max_message_size, Some(MAX_MESSAGE_SIZE));
        assert_eq!(c.max_frame_size, Some(MAX_MESSAGE_SIZE));
        let c = charge_point_websocket_config();
        assert_eq!(c.read_buffer_size, CHARGE_POINT_READ_BUFFER_SIZE);
        assert_eq!(c.max_message_size, Some(MAX_MESSAGE_SIZE));
    }
}
