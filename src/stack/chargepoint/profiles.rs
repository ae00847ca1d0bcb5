//! The Reservation and Remote Trigger profiles, and the status notifications of Firmware
//! Management and diagnostics.

use super::*;
use crate::stack::auth::TagInfo;

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

pub(super) const RESERVATION_FILE: &str = "reservation.json";

/// Firmware and diagnostics status as last reported (for TriggerMessage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct TransferStatus {
    pub firmware: Option<&'static str>,
    pub diagnostics: Option<&'static str>,
}

impl Core {
    pub(super) fn load_reservation(dir: &std::path::Path) -> Option<Reservation> {
        storage::read_optional(&dir.join(RESERVATION_FILE))
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    fn save_reservation(&self) {
        let path = self.opts.state_dir.join(RESERVATION_FILE);
        let result = match &self.reservation {
            Some(r) => serde_json::to_vec(r)
                .map_err(std::io::Error::other)
                .and_then(|b| storage::write_atomic(&path, &b)),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        };
        if let Err(e) = result {
            self.log.error(
                "reservation",
                format!("cannot persist the reservation: {e}"),
            );
        }
    }

    /// Instant at which the reservation expires (for the timer).
    pub(super) fn reservation_deadline(&self) -> Option<Instant> {
        let r = self.reservation.as_ref()?;
        let left = (r.expiry - self.now()).to_std().unwrap_or(Duration::ZERO);
        Some(Instant::now() + left)
    }

    pub(super) fn expire_reservation(&mut self) {
        let expired = self
            .reservation
            .as_ref()
            .is_some_and(|r| r.expiry <= self.now());
        if expired {
            if let Some(r) = self.reservation.take() {
                self.log.info(
                    "reservation",
                    format!("reservation {} expired", r.reservation_id),
                );
            }
            self.save_reservation();
            self.refresh_status();
        }
    }

    /// Seed: "If Authorization is set to not required, then active reservations will be
    /// cancelled and new reservations will be rejected until authorization is set to required."
    pub(super) fn cancel_reservation_for_free_charging(&mut self) {
        if self.config.bool("FreeCharging")
            && let Some(r) = self.reservation.take()
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

    pub(super) fn reserve_now(&mut self, req: &messages::ReserveNowRequest) -> &'static str {
        let connector = req.connector_id;
        if connector > 1 {
            return "Rejected";
        }
        if connector == 0 && !self.config.bool("ReserveConnectorZeroSupported") {
            return "Rejected";
        }
        if self.config.bool("FreeCharging") {
            self.log.info(
                "reservation",
                "reservation rejected: authorization is not required (FreeCharging)",
            );
            return "Rejected";
        }
        if self.fault.is_some() {
            return "Faulted";
        }
        if self.availability.connectors[0] == Availability::Inoperative
            || self.availability.connectors[1] == Availability::Inoperative
        {
            return "Unavailable";
        }
        let id = req.reservation_id as i64;
        let other_reservation = self
            .reservation
            .as_ref()
            .is_some_and(|r| r.reservation_id != id);
        if self.tx.is_some()
            || self.plugged
            || self.pending_start.is_some()
            || self.authorizing.is_some()
            || other_reservation
        {
            return "Occupied";
        }
        let expiry = req.expiry_date.as_datetime();
        if expiry <= self.now() {
            return "Rejected";
        }
        self.reservation = Some(Reservation {
            reservation_id: id,
            connector_id: connector,
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
        "Accepted"
    }

    pub(super) fn cancel_reservation(&mut self, reservation_id: i64) -> &'static str {
        if self
            .reservation
            .as_ref()
            .is_some_and(|r| r.reservation_id == reservation_id)
        {
            self.reservation = None;
            self.save_reservation();
            self.log.info(
                "reservation",
                format!("reservation {reservation_id} cancelled by the CSMS"),
            );
            self.refresh_status();
            "Accepted"
        } else {
            "Rejected"
        }
    }

    /// Whether `id_tag` (with what is known of its parent) may use the reserved connector; the
    /// reservation id to send with StartTransaction when it does.
    pub(super) fn reservation_check(
        &self,
        id_tag: &str,
        info: &TagInfo,
    ) -> Result<Option<i64>, String> {
        let Some(r) = &self.reservation else {
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
    pub(super) fn consume_reservation(&mut self, reservation_id: i64) {
        if self
            .reservation
            .as_ref()
            .is_some_and(|r| r.reservation_id == reservation_id)
        {
            self.reservation = None;
            self.save_reservation();
        }
    }

    // ----- Remote Trigger ------------------------------------------------------------------

    pub(super) fn trigger(&mut self, req: &messages::TriggerMessageRequest) -> &'static str {
        use messages::MessageTrigger as T;
        if req.connector_id.is_some_and(|c| c > 1) {
            return "Rejected";
        }
        match req.requested_message {
            T::BootNotification => {
                // Sent again with the registration it brings back.
                self.enqueue_boot_triggered();
            }
            T::Heartbeat => self.enqueue("Heartbeat", json!({}), Purpose::Heartbeat),
            T::StatusNotification => {
                let connectors: Vec<usize> = match req.connector_id {
                    Some(c) => vec![c as usize],
                    None => vec![0, 1],
                };
                for c in connectors {
                    self.status[c].changed_at = self.now();
                    self.queue_status(c);
                }
            }
            T::MeterValues => {
                let reading = self.hw.meter();
                let measurands = self.config.list("MeterValuesSampledData");
                let now = self.now();
                let base = self
                    .tx
                    .as_ref()
                    .map_or(reading.energy_wh, |t| t.last_sample_wh);
                let connector = req.connector_id.unwrap_or(1);
                if let Some(mv) = self.meter_value(&measurands, "Trigger", &reading, now, base) {
                    let mut payload = json!({ "connectorId": connector, "meterValue": [mv] });
                    if let Some(id) = self.tx.as_ref().and_then(|t| t.transaction_id)
                        && connector == 1
                    {
                        payload["transactionId"] = json!(id);
                    }
                    self.enqueue("MeterValues", payload, Purpose::Other);
                } else {
                    // No measurands configured: report the energy register at least.
                    let all = vec!["Energy.Active.Import.Register".to_string()];
                    if let Some(mv) = self.meter_value(&all, "Trigger", &reading, now, base) {
                        self.enqueue(
                            "MeterValues",
                            json!({ "connectorId": connector, "meterValue": [mv] }),
                            Purpose::Other,
                        );
                    }
                }
            }
            T::FirmwareStatusNotification => {
                let status = self.transfer_status.firmware.unwrap_or("Idle");
                self.enqueue(
                    "FirmwareStatusNotification",
                    json!({ "status": status }),
                    Purpose::Other,
                );
            }
            T::DiagnosticsStatusNotification => {
                let status = self.transfer_status.diagnostics.unwrap_or("Idle");
                self.enqueue(
                    "DiagnosticsStatusNotification",
                    json!({ "status": status }),
                    Purpose::Other,
                );
            }
        }
        "Accepted"
    }

    fn enqueue_boot_triggered(&mut self) {
        let id = &self.opts.identity;
        let payload = json!({
            "chargePointVendor": id.vendor,
            "chargePointModel": id.model,
            "chargePointSerialNumber": id.serial_number,
            "chargeBoxSerialNumber": id.serial_number,
            "firmwareVersion": id.firmware_version,
        });
        self.enqueue("BootNotification", payload, Purpose::Boot);
    }
}
