//! The HTTP upgrade of a charge point connection: the charge point id from the path, the
//! subprotocol, and HTTP Basic credentials checked against the configured passwords. A refusal
//! is counted, logged as an event and answered with its HTTP status.

use base64::Engine as _;
use std::net::SocketAddr;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{self, HeaderValue, StatusCode};

use super::{Counters, SUBPROTOCOL, Shared};
use crate::csms::events::{BasicAuthSeen, EventKind};
use crate::stack::secret::Secret;

/// What the HTTP upgrade request carried.
pub(super) struct Handshake {
    pub(super) cp_id: String,
    pub(super) path: String,
    pub(super) subprotocol: Option<String>,
    pub(super) offered: Vec<String>,
    pub(super) basic_auth: Option<BasicAuthSeen>,
}

// The error type is tungstenite's handshake `Callback` contract.
#[allow(clippy::result_large_err)]
/// Decides the upgrade: answers the subprotocol, checks credentials. On refusal, records the
/// event and returns the HTTP error response.
pub(super) fn check_request(
    shared: &Shared,
    peer: SocketAddr,
    request: &Request,
    mut response: Response,
) -> Result<(Handshake, Response), ErrorResponse> {
    let path = request.uri().path().to_string();
    let cp_id = path
        .rsplit('/')
        .find(|s| !s.is_empty())
        .map(percent_decode)
        .unwrap_or_default();
    let refuse = |status: StatusCode, reason: String, cp_id: &str| {
        Counters::add(&shared.counters.refused);
        shared.log.push(EventKind::Refused {
            cp_id: cp_id.to_string(),
            status: status.as_u16(),
            reason: reason.clone(),
            peer,
        });
        tracing::info!(%peer, cp_id, status = status.as_u16(), reason, "handshake refused");
        let mut builder = http::Response::builder().status(status);
        if status == StatusCode::UNAUTHORIZED {
            builder = builder.header("WWW-Authenticate", "Basic realm=\"OCPP\"");
        }
        let mut fallback = ErrorResponse::new(Some(reason.clone()));
        *fallback.status_mut() = status;
        builder.body(Some(reason)).unwrap_or(fallback)
    };
    if cp_id.is_empty() {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("no charge point id in the path {path:?}"),
            "",
        ));
    }
    let offered: Vec<String> = request
        .headers()
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let subprotocol = offered
        .iter()
        .find(|p| p.eq_ignore_ascii_case(SUBPROTOCOL))
        .cloned();
    if let Some(p) = &subprotocol
        && let Ok(value) = HeaderValue::from_str(p)
    {
        response
            .headers_mut()
            .insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    let credentials = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_basic);
    let basic_auth = credentials.as_ref().map(|(user, password)| BasicAuthSeen {
        user: user.clone(),
        password_ok: shared.passwords.get(&cp_id).map(|expected| {
            constant_time_eq(expected.expose().as_bytes(), password.expose().as_bytes())
        }),
    });
    if shared.require_basic_auth {
        match &basic_auth {
            None => {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    "HTTP Basic credentials required".into(),
                    &cp_id,
                ));
            }
            Some(seen) if seen.password_ok == Some(false) => {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    format!("wrong password for user {:?}", seen.user),
                    &cp_id,
                ));
            }
            Some(_) => {}
        }
    }
    Ok((
        Handshake {
            cp_id,
            path,
            subprotocol,
            offered,
            basic_auth,
        },
        response,
    ))
}

/// `Basic base64(user:password)` → (user, password).
pub(super) fn parse_basic(header: &str) -> Option<(String, Secret)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    // The password may be arbitrary bytes (OCPP AuthorizationKey as bytes); compare it as text
    // after a lossless-enough conversion.
    let text = String::from_utf8_lossy(&decoded);
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), Secret::new(password)))
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = segment.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
