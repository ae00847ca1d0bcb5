//! Reservations (the Reservation feature profile): ReserveNow and CancelReservation, the one
//! reservation persisted in `reservation.json`, its expiry, which idTag may use it, and its
//! cancellation while FreeCharging is on.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

use super::actor::ChargePoint;
use super::connectors::ConnectorId;
use super::fmt_time;
use crate::stack::auth::TagInfo;
use crate::stack::config::BoolKey;
use crate::stack::messages::{self, ReservationStatus};
use crate::storage;

/// A reservation of the charger's connector, persisted in `reservation.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Reservation {
    pub reservation_id: i64,
    /// The connector id the CSMS named (0 = the charger as a whole).
    pub connector_id: u32,
    pub id_tag: String,
    pub parent_id_tag: Option<String>,
    pub expiry: DateTime<Utc>,
}

const RESERVATION_FILE: &str = "reservation.json";

#[derive(Debug)]
pub(super) struct Reservations {
    pub active: Option<Reservation>,
}

impl Reservations {
    pub fn open(dir: &Path) -> Reservations {
        Reservations {
            active: storage::read_optional(&dir.join(RESERVATION_FILE))
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice(&b).ok()),
        }
    }
}

impl ChargePoint {
    fn save_reservation(&mut self) {
        let path = self.opts.state_dir.join(RESERVATION_FILE);
        let result = match &self.reservations.active {
            Some(r) => serde_json::to_vec(r)
                .map_err(std::io::Error::other)
                .and_then(|b| storage::write_doc("reservation", &path, &b)),
            None => storage::remove_doc("reservation", &path),
        };
        self.stored("the reservation", result);
    }

    /// Instant at which the reservation expires (for the timer).
    pub fn reservation_deadline(&self) -> Option<Instant> {
        let r = self.reservations.active.as_ref()?;
        let left = (r.expiry - self.now()).to_std().unwrap_or(Duration::ZERO);
        Some(Instant::now() + left)
    }

    pub fn expire_reservation(&mut self) {
        let now = self.now();
        if let Some(r) = self.reservations.active.take_if(|r| r.expiry <= now) {
            self.log.info(
                "reservation",
                format!("reservation {} expired", r.reservation_id),
            );
            self.save_reservation();
            self.refresh_status();
        }
    }

    /// Seed: "If Authorization is set to not required, then active reservations will be
    /// cancelled and new reservations will be rejected until authorization is set to required."
    pub fn cancel_reservation_for_free_charging(&mut self) {
        if self.config.bool(BoolKey::FREE_CHARGING)
            && let Some(r) = self.reservations.active.take()
        {
            self.log.info(
                "reservation",
                format!(
                    "reservation {} cancelled: authorization is not required (FreeCharging)",
                    r.reservation_id
                ),
            );
            self.save_reservation();
            self.refresh_status();
        }
    }

    pub fn reserve_now(
        &mut self,
        req: messages::ReserveNowRequest,
    ) -> messages::ReserveNowResponse {
        let status = self.reserve(&req);
        messages::ReserveNowResponse { status }
    }

    fn reserve(&mut self, req: &messages::ReserveNowRequest) -> ReservationStatus {
        let Some(connector) = ConnectorId::new(req.connector_id) else {
            return ReservationStatus::Rejected;
        };
        if connector == ConnectorId::CHARGER
            && !self.config.bool(BoolKey::RESERVE_CONNECTOR_ZERO_SUPPORTED)
        {
            return ReservationStatus::Rejected;
        }
        if self.config.bool(BoolKey::FREE_CHARGING) {
            self.log.info(
                "reservation",
                "reservation rejected: authorization is not required (FreeCharging)",
            );
            return ReservationStatus::Rejected;
        }
        if self.connectors.fault.is_some() {
            return ReservationStatus::Faulted;
        }
        if !self.connectors.operative() {
            return ReservationStatus::Unavailable;
        }
        let id = i64::from(req.reservation_id);
        let other_reservation = self
            .reservations
            .active
            .as_ref()
            .is_some_and(|r| r.reservation_id != id);
        if self.transactions.active.is_some()
            || self.connectors.plugged
            || self.transactions.pending_start.is_some()
            || self.auth.authorizing.is_some()
            || other_reservation
        {
            return ReservationStatus::Occupied;
        }
        let expiry = req.expiry_date.as_datetime();
        if expiry <= self.now() {
            return ReservationStatus::Rejected;
        }
        self.reservations.active = Some(Reservation {
            reservation_id: id,
            connector_id: connector.get(),
            id_tag: req.id_tag.as_str().to_string(),
            parent_id_tag: req.parent_id_tag.as_ref().map(|p| p.as_str().to_string()),
            expiry,
        });
        self.save_reservation();
        self.log.info(
            "reservation",
            format!(
                "reservation {id} for {} until {}",
                req.id_tag.as_str(),
                fmt_time(expiry)
            ),
        );
        self.refresh_status();
        ReservationStatus::Accepted
    }

    pub fn cancel_reservation(
        &mut self,
        req: messages::CancelReservationRequest,
    ) -> messages::CancelReservationResponse {
        let id = i64::from(req.reservation_id);
        let status = match self.reservations.active.take_if(|r| r.reservation_id == id) {
            Some(_) => {
                self.save_reservation();
                self.log.info(
                    "reservation",
                    format!("reservation {id} cancelled by the CSMS"),
                );
                self.refresh_status();
                messages::CancelReservationStatus::Accepted
            }
            None => messages::CancelReservationStatus::Rejected,
        };
        messages::CancelReservationResponse { status }
    }

    /// Whether `id_tag` (with what is known of its parent) may use the reserved connector; the
    /// reservation id to send with StartTransaction when it does.
    pub fn reservation_check(&self, id_tag: &str, info: &TagInfo) -> Result<Option<i64>, String> {
        let Some(r) = &self.reservations.active else {
            return Ok(None);
        };
        let same = r.id_tag.eq_ignore_ascii_case(id_tag);
        let parent = r.parent_id_tag.is_some() && r.parent_id_tag == info.parent_id_tag;
        if same || parent {
            Ok(Some(r.reservation_id))
        } else {
            Err(format!(
                "the connector is reserved (reservation {}) for another id tag",
                r.reservation_id
            ))
        }
    }

    /// The reservation was used by a starting transaction.
    pub fn consume_reservation(&mut self, reservation_id: i64) {
        if self
            .reservations
            .active
            .take_if(|r| r.reservation_id == reservation_id)
            .is_some()
        {
            self.save_reservation();
        }
    }
}
