//! What the dashboard shows of an emulated charger, kept from the stack's events: the OCPP
//! connection and registration, the connector's status, the running transaction (from the
//! StartTransaction answer) and the last errors. Pure: events in, [`Msg::Trace`] out.

use crate::link::ocpp_state::{self, Connection, OcppStatus};
use crate::stack::chargepoint::{self, ConnectionState, Event, Registration, Snapshot};
use crate::stack::hardware::Hardware;
use crate::stack::messages::ChargePointErrorCode;
use crate::tui::msg::{ChargerStatus, Direction, Msg, OcppConnection, OcppFrame, OcppReport};

/// Errors kept in the dashboard status, newest last.
pub(super) const ERRORS_KEPT: usize = 5;

/// What the dashboard shows of an emulated charger, kept from its events.
#[derive(Debug, Clone, Default)]
pub(super) struct Tracker {
    connector: Option<String>,
    ocpp: Option<OcppConnection>,
    registration: Option<Registration>,
    csms_url: Option<String>,
    transaction: Option<i32>,
    /// Message id of a StartTransaction awaiting its answer.
    start_call: Option<String>,
    errors: Vec<String>,
    service_port: Option<String>,
    /// The OCPP state as the charger would report it over its service link.
    wire: Option<OcppStatus>,
}

impl Tracker {
    /// A charger connecting to `csms_url`, with its service port at `service_port`.
    pub(super) fn new(csms_url: String, service_port: String) -> Tracker {
        Tracker {
            csms_url: Some(csms_url),
            service_port: Some(service_port),
            ..Tracker::default()
        }
    }

    pub(super) fn error(&mut self, text: String) {
        if self.errors.len() == ERRORS_KEPT {
            self.errors.remove(0);
        }
        self.errors.push(text);
    }

    fn accepted(&self) -> bool {
        self.registration == Some(Registration::Accepted)
    }

    /// The OCPP state from a snapshot taken after a connection or registration event.
    pub(super) fn on_ocpp_snapshot(&mut self, snap: &Snapshot) {
        self.wire = Some(wire_status(snap));
    }

    /// The OCPP state for the dashboard, once known.
    pub(super) fn ocpp_report(&self) -> Option<OcppReport> {
        self.wire.clone().map(OcppReport::Reported)
    }

    /// Sums up the events before the subscription from a snapshot of the charger.
    pub(super) fn on_snapshot(&mut self, snap: &Snapshot) {
        self.on_ocpp_snapshot(snap);
        self.registration = Some(snap.registration);
        self.ocpp = Some(if snap.online {
            OcppConnection::Connected {
                boot_accepted: snap.registration == Registration::Accepted,
            }
        } else {
            OcppConnection::Connecting
        });
        for (id, status, _) in &snap.connector_status {
            if *id == 1 || self.connector.is_none() {
                self.connector = Some(status.to_string());
            }
        }
    }

    pub(super) fn on_event(&mut self, event: &Event) -> Option<Msg> {
        match event {
            Event::Connection {
                state, url, detail, ..
            } => {
                if let Some(u) = url {
                    self.csms_url = Some(u.clone());
                }
                self.ocpp = Some(match state {
                    ConnectionState::Connecting => OcppConnection::Connecting,
                    ConnectionState::Connected => OcppConnection::Connected {
                        boot_accepted: self.accepted(),
                    },
                    other => OcppConnection::Disconnected {
                        reason: detail.clone().unwrap_or_else(|| other.as_str().to_string()),
                    },
                });
                None
            }
            Event::Registration { status } => {
                self.registration = Some(*status);
                if let Some(OcppConnection::Connected { .. }) = self.ocpp {
                    self.ocpp = Some(OcppConnection::Connected {
                        boot_accepted: self.accepted(),
                    });
                }
                None
            }
            Event::Status {
                connector_id,
                status,
                error_code,
            } => {
                if *connector_id == 1 || self.connector.is_none() {
                    self.connector = Some(status.to_string());
                }
                if *error_code != ChargePointErrorCode::NoError {
                    self.error(format!("connector {connector_id}: {error_code}"));
                }
                None
            }
            Event::Rebooting { kind } => {
                self.registration = None;
                self.ocpp = Some(OcppConnection::Disconnected {
                    reason: format!("rebooting ({kind:?})"),
                });
                None
            }
            Event::Message { direction, frame } => {
                let direction = match direction {
                    chargepoint::Direction::Sent => Direction::Sent,
                    chargepoint::Direction::Received => Direction::Received,
                };
                let frame = OcppFrame::from_wire(frame)?;
                self.on_frame(direction, &frame);
                Some(Msg::Trace {
                    direction,
                    time: chrono::Utc::now(),
                    frame,
                })
            }
        }
    }

    fn on_frame(&mut self, direction: Direction, frame: &OcppFrame) {
        match (direction, frame) {
            (Direction::Sent, OcppFrame::Call { id, action, .. })
                if action == "StartTransaction" =>
            {
                self.start_call = Some(id.clone());
            }
            (Direction::Sent, OcppFrame::Call { action, .. }) if action == "StopTransaction" => {
                self.transaction = None;
            }
            (Direction::Received, OcppFrame::CallResult { id, payload })
                if self.start_call.as_deref() == Some(id) =>
            {
                self.start_call = None;
                self.transaction = payload
                    .get("transactionId")
                    .and_then(|v| v.as_i64())
                    .and_then(|v| i32::try_from(v).ok());
            }
            (
                _,
                OcppFrame::CallError {
                    code, description, ..
                },
            ) => self.error(format!("CALLERROR {code}: {description}")),
            _ => {}
        }
    }

    pub(super) fn status(&self, hw: &dyn Hardware) -> ChargerStatus {
        let meter = hw.meter();
        ChargerStatus {
            connector: self.connector.clone().unwrap_or_else(|| "Unknown".into()),
            ocpp: self.ocpp.clone().unwrap_or(OcppConnection::Connecting),
            csms_url: self.csms_url.clone(),
            transaction_id: self.transaction,
            offered_amps: meter.offered_a,
            drawn_amps: meter.current_a[0],
            energy_wh: meter.energy_wh,
            last_errors: self.errors.clone(),
            service_port: self.service_port.clone(),
        }
    }
}

/// Whether the charger's OCPP state may have changed with `event` (a new snapshot tells how).
pub(super) fn moves_ocpp_state(event: &Event) -> bool {
    matches!(
        event,
        Event::Connection { .. } | Event::Registration { .. } | Event::Rebooting { .. }
    )
}

/// The snapshot as the charger's service link reports it (OCPP_STATUS).
fn wire_status(snap: &Snapshot) -> OcppStatus {
    OcppStatus {
        connection: match snap.connection {
            None => Connection::Idle,
            Some(ConnectionState::Connecting) => Connection::Connecting,
            Some(ConnectionState::Connected) => Connection::Connected,
            Some(ConnectionState::Failed) => Connection::Failed,
            Some(ConnectionState::Disconnected) => Connection::Disconnected,
        },
        registration: match snap.registration {
            Registration::Unknown => ocpp_state::Registration::Unknown,
            Registration::Pending => ocpp_state::Registration::Pending,
            Registration::Accepted => ocpp_state::Registration::Accepted,
            Registration::Rejected => ocpp_state::Registration::Rejected,
        },
        csms_url: snap.csms_url.clone(),
        failed_attempts: snap.failed_attempts,
        last_error: snap.last_error.as_ref().map(|e| ocpp_state::ConnectError {
            failure: e.failure.as_str().to_string(),
            http_status: e.http_status,
            detail: e.detail.clone(),
            at_ms: e.at.timestamp_millis(),
        }),
        online_since_ms: snap.online_since.map(|t| t.timestamp_millis()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::messages::ChargePointStatus;
    use serde_json::json;

    fn message(direction: &'static str, frame: serde_json::Value) -> Event {
        let direction = if direction == "sent" {
            chargepoint::Direction::Sent
        } else {
            chargepoint::Direction::Received
        };
        Event::Message { direction, frame }
    }

    #[test]
    fn tracker_follows_registration_transactions_and_errors() {
        let mut t = Tracker::default();
        t.on_event(&Event::Connection {
            state: ConnectionState::Connecting,
            url: Some("ws://127.0.0.1:9/CP1".into()),
            detail: None,
            failure: None,
            http_status: None,
        });
        assert_eq!(t.ocpp, Some(OcppConnection::Connecting));
        t.on_event(&Event::Connection {
            state: ConnectionState::Connected,
            url: None,
            detail: None,
            failure: None,
            http_status: None,
        });
        assert_eq!(
            t.ocpp,
            Some(OcppConnection::Connected {
                boot_accepted: false
            })
        );
        t.on_event(&Event::Registration {
            status: Registration::Accepted,
        });
        assert_eq!(
            t.ocpp,
            Some(OcppConnection::Connected {
                boot_accepted: true
            })
        );
        assert_eq!(t.csms_url.as_deref(), Some("ws://127.0.0.1:9/CP1"));

        let trace = t.on_event(&message(
            "sent",
            json!([2, "7", "StartTransaction", {"connectorId": 1}]),
        ));
        assert!(matches!(
            trace,
            Some(Msg::Trace {
                direction: Direction::Sent,
                ..
            })
        ));
        // An unrelated answer does not set the transaction.
        t.on_event(&message("received", json!([3, "6", {"transactionId": 1}])));
        assert_eq!(t.transaction, None);
        let trace = t.on_event(&message("received", json!([3, "7", {"transactionId": 42}])));
        assert!(matches!(
            trace,
            Some(Msg::Trace {
                direction: Direction::Received,
                ..
            })
        ));
        assert_eq!(t.transaction, Some(42));

        t.on_event(&Event::Status {
            connector_id: 1,
            status: ChargePointStatus::Faulted,
            error_code: ChargePointErrorCode::GroundFailure,
        });
        assert_eq!(t.connector.as_deref(), Some("Faulted"));
        t.on_event(&message(
            "received",
            json!([4, "8", "NotImplemented", "no such action", {}]),
        ));
        assert_eq!(
            t.errors,
            vec![
                "connector 1: GroundFailure".to_string(),
                "CALLERROR NotImplemented: no such action".to_string()
            ]
        );
        t.on_event(&message(
            "sent",
            json!([2, "9", "StopTransaction", {"transactionId": 42}]),
        ));
        assert_eq!(t.transaction, None);
        // Not an OCPP frame: no trace message.
        assert_eq!(t.on_event(&message("sent", json!({"x": 1}))), None);
        for i in 0..10 {
            t.error(format!("e{i}"));
        }
        assert_eq!(t.errors.len(), ERRORS_KEPT);
        assert_eq!(t.errors.last().map(String::as_str), Some("e9"));
    }
}
