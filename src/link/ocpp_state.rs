//! The charger's OCPP state over the service link (requests OCPP_STATUS and OCPP_TRACE): the
//! connection to its CSMS, its registration, the last failed connection attempt with its time,
//! and the recent OCPP frames it keeps. A charger side without them answers BAD_REQUEST
//! ("unknown request"), which the client reports as `None`.

use super::codec::{Dec, Enc, MAX_ITEMS};
use super::error::{Error, Result};
use serde::Serialize;

/// The connection to the CSMS as the charger reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Connection {
    /// No attempt yet since boot.
    Idle,
    Connecting,
    Connected,
    /// The last attempt failed; another follows after the backoff.
    Failed,
    Disconnected,
}

impl Connection {
    pub fn as_str(self) -> &'static str {
        match self {
            Connection::Idle => "idle",
            Connection::Connecting => "connecting",
            Connection::Connected => "connected",
            Connection::Failed => "failed",
            Connection::Disconnected => "disconnected",
        }
    }
    fn to_u8(self) -> u8 {
        match self {
            Connection::Idle => 0,
            Connection::Connecting => 1,
            Connection::Connected => 2,
            Connection::Failed => 3,
            Connection::Disconnected => 4,
        }
    }
    fn from_u8(v: u8, offset: usize) -> Result<Connection> {
        Ok(match v {
            0 => Connection::Idle,
            1 => Connection::Connecting,
            2 => Connection::Connected,
            3 => Connection::Failed,
            4 => Connection::Disconnected,
            _ => {
                return Err(Error::Malformed {
                    what: "connection state",
                    offset,
                });
            }
        })
    }
}

/// The registration at the CSMS (the answer to BootNotification in this boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// No answer yet.
    Unknown,
    Pending,
    Accepted,
    Rejected,
}

impl Registration {
    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Unknown => "unknown",
            Registration::Pending => "pending",
            Registration::Accepted => "accepted",
            Registration::Rejected => "rejected",
        }
    }
    fn to_u8(self) -> u8 {
        match self {
            Registration::Unknown => 0,
            Registration::Pending => 1,
            Registration::Accepted => 2,
            Registration::Rejected => 3,
        }
    }
    fn from_u8(v: u8, offset: usize) -> Result<Registration> {
        Ok(match v {
            0 => Registration::Unknown,
            1 => Registration::Pending,
            2 => Registration::Accepted,
            3 => Registration::Rejected,
            _ => {
                return Err(Error::Malformed {
                    what: "registration",
                    offset,
                });
            }
        })
    }
}

/// A failed connection attempt as the charger saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectError {
    /// The kind, as the stack names it: `dns`, `tcp_refused`, `tcp_timeout`, `network`, `tls`,
    /// `handshake_timeout`, `http_status`, `subprotocol`, `handshake`, `bad_url` (a newer
    /// charger may send others).
    pub failure: String,
    /// The HTTP status of a refused WebSocket upgrade.
    pub http_status: Option<u16>,
    pub detail: String,
    /// When it failed: milliseconds since the Unix epoch, the charger's clock.
    pub at_ms: i64,
}

/// OCPP_STATUS answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OcppStatus {
    pub connection: Connection,
    pub registration: Registration,
    pub csms_url: Option<String>,
    /// Attempts failed in a row since the last successful connection.
    pub failed_attempts: u32,
    /// The last failed attempt of this boot (kept after a later success).
    pub last_error: Option<ConnectError>,
    /// Since when the current connection is up (milliseconds since the Unix epoch).
    pub online_since_ms: Option<i64>,
}

impl OcppStatus {
    /// Connected and Accepted.
    pub fn is_online(&self) -> bool {
        self.connection == Connection::Connected && self.registration == Registration::Accepted
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.u8(self.connection.to_u8())
            .u8(self.registration.to_u8())
            .opt_str(self.csms_url.as_deref())
            .u32(self.failed_attempts);
        match &self.last_error {
            Some(err) => {
                e.u8(1)
                    .str(&err.failure)
                    .u16(err.http_status.unwrap_or(0))
                    .str(&err.detail)
                    .i64(err.at_ms);
            }
            None => {
                e.u8(0);
            }
        }
        match self.online_since_ms {
            Some(t) => e.u8(1).i64(t),
            None => e.u8(0),
        };
        e.finish()
    }

    pub fn decode(body: &[u8]) -> Result<OcppStatus> {
        let mut d = Dec::new(body);
        let at = d.position();
        let connection = Connection::from_u8(d.u8("connection state")?, at)?;
        let at = d.position();
        let registration = Registration::from_u8(d.u8("registration")?, at)?;
        let csms_url = d.opt_str("CSMS URL")?;
        let failed_attempts = d.u32("failed attempts")?;
        let last_error = if d.bool("last error")? {
            let failure = d.str("failure kind")?;
            let status = d.u16("HTTP status")?;
            Some(ConnectError {
                failure,
                http_status: (status != 0).then_some(status),
                detail: d.str("error detail")?,
                at_ms: d.i64("error time")?,
            })
        } else {
            None
        };
        let online_since_ms = if d.bool("online since")? {
            Some(d.i64("online since")?)
        } else {
            None
        };
        Ok(OcppStatus {
            connection,
            registration,
            csms_url,
            failed_attempts,
            last_error,
            online_since_ms,
        })
    }
}

/// One OCPP frame the charger keeps in its trace (secrets already redacted by the charger).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceEntry {
    /// Milliseconds since the Unix epoch, the charger's clock.
    pub at_ms: i64,
    /// `sent` or `received`.
    pub direction: TraceDirection,
    /// The frame's JSON text (cut at 2048 bytes).
    pub frame: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceDirection {
    Sent,
    Received,
}

/// Encodes a trace in parts of about `budget` bytes (an entry count, then the entries).
pub fn encode_trace(entries: &[TraceEntry], budget: usize) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut size = 0;
    let flush = |batch: &mut Vec<Vec<u8>>, parts: &mut Vec<Vec<u8>>| {
        let mut e = Enc::new();
        e.len(batch.len());
        for b in batch.drain(..) {
            e.0.extend_from_slice(&b);
        }
        parts.push(e.finish());
    };
    for entry in entries.iter().take(MAX_ITEMS * 8) {
        let mut e = Enc::new();
        e.i64(entry.at_ms)
            .u8(matches!(entry.direction, TraceDirection::Received) as u8)
            .str(&entry.frame);
        let b = e.finish();
        if size + b.len() > budget && !batch.is_empty() {
            flush(&mut batch, &mut parts);
            size = 0;
        }
        size += b.len();
        batch.push(b);
    }
    flush(&mut batch, &mut parts);
    parts
}

/// Adds one part's entries.
pub fn decode_trace_part(body: &[u8], out: &mut Vec<TraceEntry>) -> Result<()> {
    let mut d = Dec::new(body);
    let n = d.len("trace entry count", MAX_ITEMS)?;
    for _ in 0..n {
        let at_ms = d.i64("trace time")?;
        let direction = if d.bool("trace direction")? {
            TraceDirection::Received
        } else {
            TraceDirection::Sent
        };
        out.push(TraceEntry {
            at_ms,
            direction,
            frame: d.str("trace frame")?,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_and_truncations_fail_cleanly() {
        let s = OcppStatus {
            connection: Connection::Failed,
            registration: Registration::Unknown,
            csms_url: Some("ws://127.0.0.1:9/ocpp/CP1".into()),
            failed_attempts: 3,
            last_error: Some(ConnectError {
                failure: "http_status".into(),
                http_status: Some(401),
                detail: "refused with HTTP status 401".into(),
                at_ms: 1_700_000_000_123,
            }),
            online_since_ms: None,
        };
        let body = s.encode();
        assert_eq!(OcppStatus::decode(&body).unwrap(), s);
        for cut in 0..body.len() {
            assert!(OcppStatus::decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let online = OcppStatus {
            connection: Connection::Connected,
            registration: Registration::Accepted,
            last_error: None,
            online_since_ms: Some(5),
            ..s
        };
        assert!(online.is_online());
        assert_eq!(OcppStatus::decode(&online.encode()).unwrap(), online);
    }

    #[test]
    fn trace_parts_round_trip() {
        let entries: Vec<TraceEntry> = (0..50)
            .map(|i| TraceEntry {
                at_ms: i,
                direction: if i % 2 == 0 {
                    TraceDirection::Sent
                } else {
                    TraceDirection::Received
                },
                frame: format!("[2,\"{i}\",\"Heartbeat\",{{}}]"),
            })
            .collect();
        let parts = encode_trace(&entries, 200);
        assert!(parts.len() > 3);
        let mut back = Vec::new();
        for p in &parts {
            decode_trace_part(p, &mut back).unwrap();
        }
        assert_eq!(back, entries);
    }
}
