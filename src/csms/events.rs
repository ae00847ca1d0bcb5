//! What the sandbox saw: [`CsmsEvent`]s, broadcast to observers and kept in an in-memory log
//! that tests search with [`EventLog::wait_for`] (no sleeps).

use crate::stack::messages::Timestamp;
use crate::stack::rpc::{CallError, Frame};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// HTTP Basic credentials a charge point presented. The password itself is never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuthSeen {
    pub user: String,
    /// Whether the password matched the one expected for this charge point; `None` when the
    /// sandbox expects no particular password for it.
    pub password_ok: Option<bool>,
}

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the charge point to the sandbox.
    Received,
    /// From the sandbox to the charge point.
    Sent,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Received => "received",
            Direction::Sent => "sent",
        }
    }
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A charge point completed the WebSocket handshake.
    Connected {
        cp_id: String,
        /// The request path (the charge point id is its last segment).
        path: String,
        /// `ocpp1.6` when the charge point offered it; `None` when it offered nothing usable.
        subprotocol: Option<String>,
        /// Every subprotocol the charge point offered, in its order.
        offered_subprotocols: Vec<String>,
        basic_auth: Option<BasicAuthSeen>,
        tls: bool,
        peer: SocketAddr,
    },
    /// A handshake the sandbox turned away (HTTP status and why).
    Refused {
        cp_id: String,
        status: u16,
        reason: String,
        peer: SocketAddr,
    },
    /// A charge point's connection ended.
    Disconnected { cp_id: String, reason: String },
    /// A frame from the charge point. `action` is the CALL's action, or for a CALLRESULT or
    /// CALLERROR the action of the sandbox CALL it answers (when known).
    Received {
        cp_id: String,
        frame: Frame,
        action: Option<String>,
    },
    /// A frame to the charge point; `action` as for `Received`.
    Sent {
        cp_id: String,
        frame: Frame,
        action: Option<String>,
    },
    /// A text message from the charge point that is not a valid OCPP-J frame.
    Invalid {
        cp_id: String,
        text: String,
        error: CallError,
    },
}

/// An event with the time the sandbox saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct CsmsEvent {
    pub at: DateTime<Utc>,
    pub kind: EventKind,
}

impl CsmsEvent {
    pub fn cp_id(&self) -> &str {
        match &self.kind {
            EventKind::Connected { cp_id, .. }
            | EventKind::Refused { cp_id, .. }
            | EventKind::Disconnected { cp_id, .. }
            | EventKind::Received { cp_id, .. }
            | EventKind::Sent { cp_id, .. }
            | EventKind::Invalid { cp_id, .. } => cp_id,
        }
    }

    /// The frame and its direction, for `Received` and `Sent`.
    pub fn frame(&self) -> Option<(Direction, &Frame)> {
        match &self.kind {
            EventKind::Received { frame, .. } => Some((Direction::Received, frame)),
            EventKind::Sent { frame, .. } => Some((Direction::Sent, frame)),
            _ => None,
        }
    }

    /// The action the event is about (see [`EventKind::Received`]).
    pub fn action(&self) -> Option<&str> {
        match &self.kind {
            EventKind::Received { action, .. } | EventKind::Sent { action, .. } => {
                action.as_deref()
            }
            _ => None,
        }
    }

    /// True for a CALL from `cp_id` with this action.
    pub fn is_call_from(&self, cp_id: &str, action: &str) -> bool {
        matches!(&self.kind, EventKind::Received { cp_id: c, frame: Frame::Call { action: a, .. }, .. }
            if c == cp_id && a == action)
    }

    /// The event as the `{"type": ..., "data": {...}}` record `chargectl csms --json` prints.
    pub fn to_json(&self) -> Value {
        let time = Timestamp::new(self.at).to_string();
        match &self.kind {
            EventKind::Connected {
                cp_id,
                path,
                subprotocol,
                offered_subprotocols,
                basic_auth,
                tls,
                peer,
            } => json!({
                "type": "connected",
                "data": {
                    "time": time,
                    "cp_id": cp_id,
                    "path": path,
                    "subprotocol": subprotocol,
                    "offered_subprotocols": offered_subprotocols,
                    "basic_auth": basic_auth.as_ref().map(|b| json!({"user": b.user, "password_ok": b.password_ok})),
                    "tls": tls,
                    "peer": peer.to_string(),
                }
            }),
            EventKind::Refused {
                cp_id,
                status,
                reason,
                peer,
            } => json!({
                "type": "refused",
                "data": {"time": time, "cp_id": cp_id, "status": status, "reason": reason, "peer": peer.to_string()}
            }),
            EventKind::Disconnected { cp_id, reason } => json!({
                "type": "disconnected",
                "data": {"time": time, "cp_id": cp_id, "reason": reason}
            }),
            EventKind::Received {
                cp_id,
                frame,
                action,
            }
            | EventKind::Sent {
                cp_id,
                frame,
                action,
            } => {
                // Printed output never shows a secret a CSMS sends (AuthorizationKey).
                let frame = &crate::stack::rpc::redact(frame);
                let direction = if matches!(self.kind, EventKind::Received { .. }) {
                    Direction::Received
                } else {
                    Direction::Sent
                };
                let mut data = json!({
                    "time": time,
                    "cp_id": cp_id,
                    "direction": direction.as_str(),
                    "action": action,
                    "id": frame.id(),
                    "frame": frame.to_value(),
                });
                let (kind, payload) = match frame {
                    Frame::Call { payload, .. } => ("Call", payload.clone()),
                    Frame::CallResult { payload, .. } => ("CallResult", payload.clone()),
                    Frame::CallError { error, .. } => (
                        "CallError",
                        json!({"errorCode": error.code.as_str(), "errorDescription": error.description, "errorDetails": error.details}),
                    ),
                };
                data["message_type"] = json!(kind);
                data["payload"] = payload;
                json!({"type": "message", "data": data})
            }
            EventKind::Invalid { cp_id, text, error } => json!({
                "type": "message",
                "data": {
                    "time": time,
                    "cp_id": cp_id,
                    "direction": "received",
                    "message_type": "Invalid",
                    "action": null,
                    "text": text,
                    "error": {"errorCode": error.code.as_str(), "errorDescription": error.description},
                }
            }),
        }
    }
}

/// No matching event arrived in time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no matching CSMS event within {0:?}")]
pub struct WaitTimeout(pub Duration);

/// The in-memory log: at most `capacity` events (oldest dropped first), addressed by absolute
/// index so a cursor stays valid while old events are dropped.
pub struct EventLog {
    inner: Mutex<LogInner>,
    len_tx: watch::Sender<usize>,
    events_tx: broadcast::Sender<CsmsEvent>,
}

struct LogInner {
    first: usize,
    events: VecDeque<CsmsEvent>,
    capacity: usize,
}

impl EventLog {
    pub fn new(capacity: usize, broadcast_capacity: usize) -> Self {
        let (len_tx, _) = watch::channel(0);
        let (events_tx, _) = broadcast::channel(broadcast_capacity.max(1));
        Self {
            inner: Mutex::new(LogInner {
                first: 0,
                events: VecDeque::new(),
                capacity: capacity.max(1),
            }),
            len_tx,
            events_tx,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        // A panic while holding the lock leaves the log consistent (push/pop only), so a
        // poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, kind: EventKind) {
        let event = CsmsEvent {
            at: Utc::now(),
            kind,
        };
        let end = {
            let mut log = self.lock();
            log.events.push_back(event.clone());
            while log.events.len() > log.capacity {
                log.events.pop_front();
                log.first += 1;
            }
            log.first + log.events.len()
        };
        // No receivers is normal.
        let _ = self.events_tx.send(event);
        self.len_tx.send_replace(end);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CsmsEvent> {
        self.events_tx.subscribe()
    }

    /// Index of the next event to come: pass it to [`EventLog::wait_for_from`] to see only
    /// what happens from now on.
    pub fn cursor(&self) -> usize {
        let log = self.lock();
        log.first + log.events.len()
    }

    /// Every event still held, oldest first.
    pub fn events(&self) -> Vec<CsmsEvent> {
        self.lock().events.iter().cloned().collect()
    }

    fn find_from(
        &self,
        from: usize,
        pred: &dyn Fn(&CsmsEvent) -> bool,
    ) -> (Option<CsmsEvent>, usize) {
        let log = self.lock();
        let skip = from.saturating_sub(log.first);
        let found = log.events.iter().skip(skip).find(|e| pred(e)).cloned();
        (found, log.first + log.events.len())
    }

    /// The first event at or after `from` that matches, waiting up to `timeout` for it.
    pub async fn wait_for_from(
        &self,
        from: usize,
        pred: impl Fn(&CsmsEvent) -> bool,
        timeout: Duration,
    ) -> Result<CsmsEvent, WaitTimeout> {
        let mut len_rx = self.len_tx.subscribe();
        let search = async {
            let mut from = from;
            loop {
                len_rx.borrow_and_update();
                let (found, end) = self.find_from(from, &pred);
                if let Some(event) = found {
                    return Some(event);
                }
                from = end;
                if len_rx.changed().await.is_err() {
                    return None;
                }
            }
        };
        match tokio::time::timeout(timeout, search).await {
            Ok(Some(event)) => Ok(event),
            _ => Err(WaitTimeout(timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disconnected(n: usize) -> EventKind {
        EventKind::Disconnected {
            cp_id: format!("CP{n}"),
            reason: String::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_log_drops_the_oldest_and_cursors_stay_valid() {
        let log = EventLog::new(3, 16);
        for n in 0..5 {
            log.push(disconnected(n));
        }
        let ids: Vec<String> = log.events().iter().map(|e| e.cp_id().to_string()).collect();
        assert_eq!(ids, ["CP2", "CP3", "CP4"]);
        assert_eq!(log.cursor(), 5);
        // A cursor before the oldest kept event starts at the oldest.
        let first = log
            .wait_for_from(0, |_| true, Duration::from_secs(1))
            .await
            .map(|e| e.cp_id().to_string());
        assert_eq!(first.as_deref().ok(), Some("CP2"));
        // From the cursor on, only new events count; a later push wakes the waiter.
        let cursor = log.cursor();
        let waiting = log.wait_for_from(cursor, |e| e.cp_id() == "CP3", Duration::from_secs(60));
        let pushing = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            log.push(disconnected(9));
            log.push(disconnected(3));
        };
        let started = tokio::time::Instant::now();
        let (found, ()) = tokio::join!(waiting, pushing);
        assert!(found.is_ok());
        // Found the new CP3, not the old one before the cursor.
        assert!(started.elapsed() >= Duration::from_secs(5));
        assert_eq!(log.cursor(), 7);
        let none = log
            .wait_for_from(log.cursor(), |_| true, Duration::from_secs(60))
            .await;
        assert!(none.is_err());
    }
}
