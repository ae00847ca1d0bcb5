//! The charger's WebSocket to the CSMS (OCPP-J 1.6): `<csms-url>/<charge-point-id>` with
//! subprotocol `ocpp1.6`, ws:// or wss://, HTTP Basic authentication for SecurityProfile 1.
//!
//! Seed limitation reproduced: with wss:// the charger "will not check the CS(MS) identity via the
//! certificate. It will only use the protocol and send basic auth." The TLS handshake is real
//! (signatures of the handshake are checked) but the server certificate chain is not.

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::secret::Secret;

pub const SUBPROTOCOL: &str = "ocpp1.6";

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid CSMS URL '{url}': {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the CSMS at {url} refused the connection with HTTP status {status}")]
    Refused { url: String, status: u16 },
    #[error("the CSMS at {url} did not agree to subprotocol ocpp1.6")]
    Subprotocol { url: String },
    #[error("TLS setup failed: {0}")]
    Tls(String),
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
}

/// Everything needed to open the connection.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// CSMS base URL, such as `ws://127.0.0.1:9000/ocpp`.
    pub csms_url: String,
    pub charge_point_id: String,
    /// SecurityProfile 0 (no authentication) or 1 (HTTP Basic).
    pub security_profile: u8,
    /// The HTTP Basic password (already derived from AuthorizationKey), for profile 1.
    pub basic_password: Option<Secret>,
    /// The password as raw bytes when it is not valid UTF-8 text (decoded key bytes).
    pub basic_password_bytes: Option<Vec<u8>>,
}

impl Endpoint {
    /// `<csms-url>/<charge-point-id>`, as OCPP-J prescribes.
    pub fn url(&self) -> Result<String, Error> {
        let base = self.csms_url.trim();
        let lower = base.to_ascii_lowercase();
        if !(lower.starts_with("ws://") || lower.starts_with("wss://")) {
            return Err(Error::BadUrl {
                url: base.to_string(),
                reason: "the scheme must be ws:// or wss://".into(),
            });
        }
        let rest = &base[base.find("://").map(|i| i + 3).unwrap_or(0)..];
        if rest.is_empty() || rest.starts_with('/') {
            return Err(Error::BadUrl {
                url: base.to_string(),
                reason: "no host".into(),
            });
        }
        if self.charge_point_id.is_empty() {
            return Err(Error::BadUrl {
                url: base.to_string(),
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
        let mut raw = self.charge_point_id.as_bytes().to_vec();
        raw.push(b':');
        if let Some(bytes) = &self.basic_password_bytes {
            raw.extend_from_slice(bytes);
        } else if let Some(p) = &self.basic_password {
            raw.extend_from_slice(p.expose().as_bytes());
        } else {
            return None;
        }
        Some(Secret::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )))
    }
}

/// Opens the WebSocket. `tcp_timeout` bounds the whole handshake.
pub async fn connect(endpoint: &Endpoint, timeout: std::time::Duration) -> Result<Socket, Error> {
    let url = endpoint.url()?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::BadUrl {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    if let Some(auth) = endpoint.authorization() {
        let mut value = HeaderValue::from_str(auth.expose()).map_err(|_| Error::BadUrl {
            url: url.clone(),
            reason: "credentials cannot be sent in a header".into(),
        })?;
        value.set_sensitive(true);
        request.headers_mut().insert("Authorization", value);
    }
    let connector = if url.to_ascii_lowercase().starts_with("wss://") {
        Some(Connector::Rustls(Arc::new(tls_config()?)))
    } else {
        None
    };
    let fut = tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector);
    let result = tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| Error::Connect {
            url: url.clone(),
            reason: format!("no answer within {} s", timeout.as_secs()),
        })?;
    let (socket, response) = result.map_err(|e| match e {
        tungstenite::Error::Http(resp) => Error::Refused {
            url: url.clone(),
            status: resp.status().as_u16(),
        },
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::SecWebSocketSubProtocolError(_),
        ) => Error::Subprotocol { url: url.clone() },
        other => Error::Connect {
            url: url.clone(),
            reason: other.to_string(),
        },
    })?;
    let agreed = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == SUBPROTOCOL));
    if !agreed {
        return Err(Error::Subprotocol { url });
    }
    Ok(socket)
}

/// Sends one text message.
pub async fn send_text(socket: &mut Socket, text: String) -> Result<(), tungstenite::Error> {
    socket.send(Message::text(text)).await
}

/// What the reader half of the socket yields to the charge point.
#[derive(Debug)]
pub enum Incoming {
    Text(String),
    /// The socket is closed or failed.
    Closed(String),
}

/// Reads the next meaningful message (answers pings itself through tungstenite).
pub async fn next_incoming(socket: &mut Socket) -> Incoming {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(t))) => return Incoming::Text(t.as_str().to_string()),
            Some(Ok(Message::Binary(_))) => {
                // OCPP-J uses text frames only; a binary frame is ignored like noise.
                continue;
            }
            Some(Ok(Message::Close(frame))) => {
                return Incoming::Closed(
                    frame
                        .map(|f| format!("closed by the CSMS ({} {})", u16::from(f.code), f.reason))
                        .unwrap_or_else(|| "closed by the CSMS".into()),
                );
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Incoming::Closed(e.to_string()),
            None => return Incoming::Closed("connection ended".into()),
        }
    }
}

fn tls_config() -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
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
            basic_password: None,
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
        e.basic_password_bytes = Some(vec![0x00, 0xff]);
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
}
