//! Connectors and their status: checked connector ids, availability (ChangeAvailability,
//! persisted in `availability.json`, scheduled while a transaction runs), faults, the status each
//! connector is in, and its StatusNotifications (MinimumStatusDuration, changes while offline
//! reported with the time the charger came online).
//!
//! "Offline", for status notifications, is any time the charger may not send them: no
//! connection, or a connection without an Accepted registration (the CSMS unreachable at boot,
//! BootNotification Pending or Rejected). Release notes: a transition in that time is sent with
//! the time the charger came online (the reconnect, or the registration being Accepted); an error
//! status is not queued, even one whose MinimumStatusDuration ends while offline.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tokio::time::Instant;

use super::Event;
use super::actor::{ChargePoint, secs};
use super::outbox::Purpose;
use crate::stack::config::IntKey;
use crate::stack::logbook::LogBook;
use crate::stack::messages::{self, ChargePointErrorCode, ChargePointStatus, CiString50};
use crate::storage;

/// A connector id from the CSMS, checked before it indexes anything: 0 is the charger as a
/// whole, 1 its one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ConnectorId(u8);

impl ConnectorId {
    /// The charge point as a whole.
    pub const CHARGER: ConnectorId = ConnectorId(0);
    /// The socket.
    pub const SOCKET: ConnectorId = ConnectorId(1);
    /// Every id, the charger first.
    pub const ALL: [ConnectorId; 2] = [ConnectorId::CHARGER, ConnectorId::SOCKET];

    /// `id` when this charger has it; None for any other number.
    pub fn new(id: u32) -> Option<ConnectorId> {
        match id {
            0 => Some(ConnectorId::CHARGER),
            1 => Some(ConnectorId::SOCKET),
            _ => None,
        }
    }

    /// The id as OCPP numbers it.
    pub fn get(self) -> u32 {
        u32::from(self.0)
    }

    fn index(self) -> usize {
        usize::from(self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Availability {
    Operative,
    Inoperative,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AvailabilityFile {
    /// Index 0: the whole charger, 1: its connector.
    connectors: [Availability; 2],
}

const AVAILABILITY_FILE: &str = "availability.json";

/// A fault the hardware reported.
#[derive(Debug, Clone)]
pub(super) struct Fault {
    pub code: ChargePointErrorCode,
    pub info: Option<String>,
}

/// Status bookkeeping of one connector.
#[derive(Debug, Clone, Copy)]
struct StatusTracker {
    current: (ChargePointStatus, ChargePointErrorCode),
    changed_at: DateTime<Utc>,
    reported: Option<(ChargePointStatus, ChargePointErrorCode)>,
    report_at: Option<Instant>,
    /// The status changed while the charger could not report it (see the module doc).
    changed_offline: bool,
}

#[derive(Debug)]
pub(super) struct Connectors {
    availability: AvailabilityFile,
    /// An Inoperative asked for during a transaction, applied when it ends.
    scheduled: [Option<Availability>; 2],
    pub plugged: bool,
    pub fault: Option<Fault>,
    status: [StatusTracker; 2],
}

impl Connectors {
    pub fn open(dir: &Path, plugged: bool, now: DateTime<Utc>) -> Connectors {
        let availability = storage::read_optional(&dir.join(AVAILABILITY_FILE))
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(AvailabilityFile {
                connectors: [Availability::Operative, Availability::Operative],
            });
        let tracker = StatusTracker {
            current: (ChargePointStatus::Available, ChargePointErrorCode::NoError),
            changed_at: now,
            reported: None,
            report_at: None,
            changed_offline: false,
        };
        Connectors {
            availability,
            scheduled: [None, None],
            plugged,
            fault: None,
            status: [tracker; 2],
        }
    }

    /// Records a fault; a code that is not an OCPP ChargePointErrorCode is reported as
    /// OtherError with the code as its info.
    pub fn set_fault(&mut self, code: &str, info: Option<String>, log: &LogBook) {
        self.fault = Some(match ChargePointErrorCode::from_wire(code) {
            Some(code) => Fault { code, info },
            None => {
                log.warn(
                    "hw",
                    format!("{code} is not an OCPP error code; reported as OtherError"),
                );
                Fault {
                    code: ChargePointErrorCode::OtherError,
                    info: Some(info.unwrap_or_else(|| code.to_string())),
                }
            }
        });
    }

    /// Operative as a whole and at the socket.
    pub fn operative(&self) -> bool {
        self.availability
            .connectors
            .iter()
            .all(|a| *a == Availability::Operative)
    }

    /// Operative and not faulted.
    pub fn usable(&self) -> bool {
        self.fault.is_none() && self.operative()
    }

    /// Current status of every connector, for snapshots.
    pub fn statuses(&self) -> Vec<(u32, ChargePointStatus, ChargePointErrorCode)> {
        ConnectorId::ALL
            .iter()
            .map(|c| {
                let (status, error) = self.status[c.index()].current;
                (c.get(), status, error)
            })
            .collect()
    }

    /// When the next status held for MinimumStatusDuration is due.
    pub fn next_report(&self) -> Option<Instant> {
        self.status.iter().filter_map(|s| s.report_at).min()
    }
}

impl ChargePoint {
    /// Whether a session can start: operative and not faulted.
    pub fn connector_usable(&self) -> bool {
        self.connectors.usable()
    }

    fn derive_status(&self, connector: ConnectorId) -> (ChargePointStatus, ChargePointErrorCode) {
        use ChargePointStatus as S;
        let c = &self.connectors;
        if let Some(f) = &c.fault {
            return (S::Faulted, f.code);
        }
        let error = ChargePointErrorCode::NoError;
        let tx = self.transactions.active.as_ref();
        if (c.availability.connectors[connector.index()] == Availability::Inoperative
            || c.availability.connectors[0] == Availability::Inoperative)
            && !(connector == ConnectorId::SOCKET && tx.is_some())
        {
            return (S::Unavailable, error);
        }
        if connector == ConnectorId::SOCKET {
            if let Some(tx) = tx {
                let m = self.hw.meter();
                let status = if tx.deauthorized || m.offered_a <= 0.0 {
                    S::SuspendedEvse
                } else if m.current_a[0] <= 0.0 {
                    S::SuspendedEv
                } else {
                    S::Charging
                };
                return (status, error);
            }
            if self.transactions.finishing && c.plugged {
                return (S::Finishing, error);
            }
            if self.reservations.active.is_some() {
                return (S::Reserved, error);
            }
            if c.plugged
                || self.transactions.pending_start.is_some()
                || self.auth.authorizing.is_some()
            {
                return (S::Preparing, error);
            }
        }
        (S::Available, error)
    }

    /// At boot: the status each connector is in, not reported as a change.
    pub fn settle_status(&mut self) {
        for c in ConnectorId::ALL {
            self.connectors.status[c.index()].current = self.derive_status(c);
        }
    }

    /// Looks at every connector's status after a change and queues what must be reported.
    pub fn refresh_status(&mut self) {
        for c in ConnectorId::ALL {
            let new = self.derive_status(c);
            let i = c.index();
            if new == self.connectors.status[i].current {
                continue;
            }
            let now = self.now();
            let t = &mut self.connectors.status[i];
            t.current = new;
            t.changed_at = now;
            let reported_already = t.reported == Some(new);
            if reported_already {
                t.report_at = None;
            }
            self.emit(Event::Status {
                connector_id: c.get(),
                status: new.0,
                error_code: new.1,
            });
            if reported_already {
                continue;
            }
            if !self.link.accepted() {
                // Seed: a transition while offline is sent with the time the charger came
                // online; an error status is not queued while offline.
                let t = &mut self.connectors.status[i];
                t.changed_offline = true;
                t.report_at = None;
                continue;
            }
            let min = self.config.int(IntKey::MINIMUM_STATUS_DURATION);
            if min <= 0 {
                self.queue_status(c);
            } else {
                self.connectors.status[i].report_at = Some(Instant::now() + secs(min));
            }
        }
    }

    /// Queues a StatusNotification of the connector's current status.
    pub fn queue_status(&mut self, c: ConnectorId) {
        let t = &mut self.connectors.status[c.index()];
        let (status, error_code) = t.current;
        t.reported = Some(t.current);
        t.report_at = None;
        let info = match &self.connectors.fault {
            Some(Fault {
                info: Some(info), ..
            }) if error_code != ChargePointErrorCode::NoError => Some(CiString50::truncated(info)),
            _ => None,
        };
        let req = messages::StatusNotificationRequest {
            connector_id: c.get(),
            error_code,
            info,
            status,
            timestamp: Some(t.changed_at.into()),
            vendor_id: None,
            vendor_error_code: None,
        };
        self.outbox.push(req, Purpose::Status);
    }

    /// TriggerMessage: the connector's status now, as if it had just changed.
    pub fn queue_status_now(&mut self, c: ConnectorId) {
        self.connectors.status[c.index()].changed_at = self.now();
        self.queue_status(c);
    }

    /// After registration: every connector is reported once. A status reached while the
    /// charger was not registered (CSMS unreachable, BootNotification Pending) carries the time
    /// the registration was Accepted: that is when this charger came online, as after a
    /// reconnect. A status unchanged since boot keeps the time of the boot.
    pub fn report_all_connectors(&mut self) {
        let online_at = self.now();
        for c in ConnectorId::ALL {
            let t = &mut self.connectors.status[c.index()];
            if std::mem::take(&mut t.changed_offline) {
                t.changed_at = online_at;
            }
            t.reported = None;
            t.report_at = None;
            self.queue_status(c);
        }
    }

    /// After a reconnect: changes that happened offline, stamped with the time of the reconnect.
    /// An error status reached offline is not reported (it was never queued).
    pub fn report_offline_changes(&mut self) {
        let online_at = self.link.online_since.unwrap_or_else(|| self.now());
        for c in ConnectorId::ALL {
            let t = &mut self.connectors.status[c.index()];
            if std::mem::take(&mut t.changed_offline)
                && t.current.1 == ChargePointErrorCode::NoError
                && t.reported != Some(t.current)
            {
                t.changed_at = online_at;
                self.queue_status(c);
            }
        }
    }

    /// Statuses that held for MinimumStatusDuration go out. One whose duration ends while the
    /// charger is offline is handled as a change made offline: an error status is dropped, any
    /// other is reported after the reconnect with the time the charger came online.
    pub fn report_due_statuses(&mut self, now: Instant) {
        let accepted = self.link.accepted();
        for c in ConnectorId::ALL {
            let t = &mut self.connectors.status[c.index()];
            if t.report_at.is_none_or(|at| at > now) {
                continue;
            }
            if accepted {
                self.queue_status(c);
            } else {
                t.report_at = None;
                t.changed_offline = true;
            }
        }
    }

    pub fn change_availability(
        &mut self,
        req: messages::ChangeAvailabilityRequest,
    ) -> messages::ChangeAvailabilityResponse {
        use messages::AvailabilityStatus as A;
        let status = match ConnectorId::new(req.connector_id) {
            None => A::Rejected,
            Some(c) => {
                let wanted = match req.kind {
                    messages::AvailabilityType::Operative => Availability::Operative,
                    messages::AvailabilityType::Inoperative => Availability::Inoperative,
                };
                if self.transactions.active.is_some() && wanted == Availability::Inoperative {
                    self.connectors.scheduled[c.index()] = Some(wanted);
                    A::Scheduled
                } else {
                    self.connectors.scheduled[c.index()] = None;
                    if self.set_availability(c, wanted) {
                        A::Accepted
                    } else {
                        A::Rejected
                    }
                }
            }
        };
        messages::ChangeAvailabilityResponse { status }
    }

    /// Sets and persists the availability; false when it could not be stored.
    fn set_availability(&mut self, c: ConnectorId, wanted: Availability) -> bool {
        let file = &mut self.connectors.availability;
        if c == ConnectorId::CHARGER {
            file.connectors = [wanted, wanted];
        } else {
            file.connectors[c.index()] = wanted;
        }
        let saved = serde_json::to_vec_pretty(file)
            .map_err(std::io::Error::other)
            .and_then(|b| {
                storage::write_doc(
                    "availability",
                    &self.opts.state_dir.join(AVAILABILITY_FILE),
                    &b,
                )
            });
        if !self.stored("the availability", saved) {
            return false;
        }
        self.refresh_status();
        true
    }

    /// A ChangeAvailability that waited for the session applies now.
    pub fn apply_scheduled_availability(&mut self) {
        for c in ConnectorId::ALL {
            if let Some(a) = self.connectors.scheduled[c.index()].take() {
                self.set_availability(c, a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_ids_beyond_the_socket_are_refused() {
        assert_eq!(ConnectorId::new(0), Some(ConnectorId::CHARGER));
        assert_eq!(ConnectorId::new(1), Some(ConnectorId::SOCKET));
        for id in [2, 3, u32::MAX] {
            assert_eq!(ConnectorId::new(id), None, "{id}");
        }
        assert_eq!(ConnectorId::SOCKET.get(), 1);
    }
}
