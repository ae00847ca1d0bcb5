//! Charging sessions: authorization (local list, cache, Authorize.req, offline rules, free
//! charging), transactions (start, stop with every applicable reason, remote start/stop), meter
//! values (sampled, clock-aligned, stop transaction data) and the journaled delivery of
//! transaction messages.

use super::*;
use crate::stack::auth::{self, LocalDecision, LocalList, TagInfo};

/// The transaction in progress, persisted in `transaction.json` so that a restart after a power
/// loss can close it with the last known meter reading.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ActiveTx {
    pub local_tx: u64,
    pub id_tag: String,
    pub parent_id_tag: Option<String>,
    pub started_at: DateTime<Utc>,
    pub meter_start_wh: f64,
    pub last_meter_wh: f64,
    pub last_meter_at: DateTime<Utc>,
    /// Energy register at the previous sampled reading (Energy.Active.Import.Interval).
    pub last_sample_wh: f64,
    /// MeterValue objects kept for StopTransaction.transactionData.
    pub stop_data: Vec<Value>,
    /// StartTransaction.conf said the idTag is not valid and StopTransactionOnInvalidId is off:
    /// the session goes on without energy (SuspendedEVSE).
    pub deauthorized: bool,
    pub charging_profile: Option<Value>,
    pub reservation_id: Option<i64>,
    pub transaction_id: Option<i64>,
}

pub(super) const TX_FILE: &str = "transaction.json";

/// How an authorization was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AuthSource {
    Card,
    Remote,
}

/// An accepted authorization waiting for the EV to be plugged in (ConnectionTimeOut).
#[derive(Debug, Clone)]
pub(super) struct PendingStart {
    pub id_tag: String,
    pub parent_id_tag: Option<String>,
    pub expires: Instant,
    pub charging_profile: Option<Value>,
}

/// Maximum current the charger's hardware can offer, per phase.
pub(super) const HARDWARE_MAX_AMPS: f64 = 32.0;

/// The measurands this charger can report (seed: "Only a few measurands are supported").
pub const SUPPORTED_MEASURANDS: &[&str] = &[
    "Current.Import",
    "Current.Offered",
    "Energy.Active.Import.Register",
    "Energy.Active.Import.Interval",
    "Temperature",
    "Voltage",
];

impl Core {
    // ----- persistence ------------------------------------------------------------------

    pub(super) fn load_tx(dir: &std::path::Path) -> Option<ActiveTx> {
        storage::read_optional(&dir.join(TX_FILE))
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    pub(super) fn save_tx(&self) {
        let path = self.opts.state_dir.join(TX_FILE);
        let result = match &self.tx {
            Some(tx) => serde_json::to_vec(tx)
                .map_err(std::io::Error::other)
                .and_then(|b| storage::write_atomic(&path, &b)),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => storage::sync_dir(&self.opts.state_dir),
            },
        };
        if let Err(e) = result {
            self.log
                .error("tx", format!("cannot persist the transaction state: {e}"));
        }
    }

    /// At boot: a transaction left open by the previous run was cut by a power loss.
    pub(super) fn recover_transaction(&mut self) {
        let Some(tx) = self.tx.clone() else {
            return;
        };
        let meter = self.hw.meter().energy_wh.max(tx.last_meter_wh);
        self.log.warn(
            "tx",
            format!(
                "transaction {} was open at power loss; closing it with the last meter reading {:.0} Wh",
                tx.local_tx, meter
            ),
        );
        self.finish_tx(tx, "PowerLoss", None, meter, tx_time_of(&self.tx));
    }

    // ----- authorization ----------------------------------------------------------------

    fn local_list(&self) -> Option<&dyn auth::LocalList> {
        if self.config.bool("LocalAuthListEnabled") {
            Some(&self.local_list as &dyn auth::LocalList)
        } else {
            None
        }
    }

    fn cache(&self) -> Option<&auth::AuthCache> {
        self.config
            .bool("AuthorizationCacheEnabled")
            .then_some(&self.auth_cache)
    }

    pub(super) fn learn(&mut self, id_tag: &str, info: &TagInfo) {
        if !self.config.bool("AuthorizationCacheEnabled") {
            return;
        }
        // Tags in the local list are not cached (OCPP 1.6 §3.5.1 keeps the two apart).
        if self.local_list.lookup(id_tag).is_some() {
            return;
        }
        if let Err(e) = self.auth_cache.update(id_tag, info.clone()) {
            self.log.error(
                "auth",
                format!("cannot persist the authorization cache: {e}"),
            );
        }
    }

    pub(super) fn on_card(&mut self, id_tag: String) {
        if let Some(tx) = &self.tx {
            let same = tx.id_tag == id_tag;
            let parent_match =
                !same && tx.parent_id_tag.is_some() && self.parent_of(&id_tag) == tx.parent_id_tag;
            if same || parent_match {
                self.log
                    .info("tx", format!("card {id_tag} ends the session"));
                self.stop_transaction("Local", Some(id_tag));
            } else {
                self.log.info(
                    "auth",
                    format!("card {id_tag} ignored: another session is running"),
                );
            }
            return;
        }
        if self.config.bool("FreeCharging") {
            self.log
                .info("auth", "free charging is on: no card needed, card ignored");
            return;
        }
        if self.authorizing.is_some() {
            self.log.info(
                "auth",
                format!("card {id_tag} ignored: authorization in progress"),
            );
            return;
        }
        if !self.connector_usable() {
            self.log.warn(
                "auth",
                format!("card {id_tag} ignored: the connector is not available"),
            );
            return;
        }
        self.authorize(id_tag, AuthSource::Card, None);
    }

    fn parent_of(&self, id_tag: &str) -> Option<String> {
        match auth::lookup_local(id_tag, Some(&self.local_list), Some(&self.auth_cache)) {
            LocalDecision::Known { info, .. } => info.parent_id_tag,
            LocalDecision::Unknown => None,
        }
    }

    pub(super) fn connector_usable(&self) -> bool {
        self.fault.is_none()
            && self.availability.connectors[0] == Availability::Operative
            && self.availability.connectors[1] == Availability::Operative
    }

    /// Decides locally or asks the CSMS, per LocalPreAuthorize / LocalAuthorizeOffline /
    /// AllowOfflineTxForUnknownId.
    pub(super) fn authorize(
        &mut self,
        id_tag: String,
        source: AuthSource,
        charging_profile: Option<Value>,
    ) {
        let now = self.now();
        let local = auth::lookup_local(&id_tag, self.local_list(), self.cache());
        let online = self.online && self.registration == Registration::Accepted;
        if online {
            if let LocalDecision::Known { source: from, info } = &local
                && self.config.bool("LocalPreAuthorize")
                && info.is_valid_at(now)
            {
                self.log.info(
                    "auth",
                    format!("{id_tag} accepted from the {from} (pre-authorize)"),
                );
                let info = info.clone();
                self.grant(id_tag, info, charging_profile);
                return;
            }
            self.authorizing = Some((id_tag.clone(), source, charging_profile));
            self.enqueue(
                "Authorize",
                json!({ "idTag": id_tag }),
                Purpose::Authorize(id_tag),
            );
            return;
        }
        self.decide_offline(id_tag, local, charging_profile);
    }

    fn decide_offline(&mut self, id_tag: String, local: LocalDecision, profile: Option<Value>) {
        let now = self.now();
        match local {
            LocalDecision::Known { source, info } => {
                if info.is_valid_at(now) && self.config.bool("LocalAuthorizeOffline") {
                    self.log.info(
                        "auth",
                        format!("{id_tag} accepted offline from the {source}"),
                    );
                    self.grant(id_tag, info, profile);
                } else if info.is_valid_at(now) {
                    self.log.warn(
                        "auth",
                        format!("{id_tag} refused offline: LocalAuthorizeOffline is off"),
                    );
                } else {
                    self.log.warn(
                        "auth",
                        format!(
                            "{id_tag} refused offline: {} in the {source}",
                            info.effective_status(now)
                        ),
                    );
                }
            }
            LocalDecision::Unknown => {
                if self.config.bool("AllowOfflineTxForUnknownId") {
                    self.log.info(
                        "auth",
                        format!("{id_tag} unknown, accepted offline (AllowOfflineTxForUnknownId)"),
                    );
                    self.grant(id_tag, TagInfo::accepted(), profile);
                } else {
                    self.log.warn(
                        "auth",
                        format!("{id_tag} unknown and the CSMS is unreachable: refused"),
                    );
                }
            }
        }
    }

    /// The answer to an Authorize.req (or its failure, which falls back to offline rules).
    pub(super) fn on_authorize_result(&mut self, id_tag: &str, result: Option<&Value>) {
        let Some((tag, _source, profile)) = self.authorizing.take() else {
            return;
        };
        if tag != id_tag {
            return;
        }
        match result
            .and_then(|v| v.get("idTagInfo"))
            .and_then(TagInfo::from_json)
        {
            Some(info) => {
                self.learn(&tag, &info);
                let now = self.now();
                if info.is_valid_at(now) {
                    self.log.info("auth", format!("{tag} accepted by the CSMS"));
                    self.grant(tag, info, profile);
                } else {
                    self.log.warn(
                        "auth",
                        format!("{tag} refused by the CSMS: {}", info.effective_status(now)),
                    );
                }
            }
            None => {
                self.log.warn(
                    "auth",
                    format!("no usable answer to Authorize for {tag}; deciding offline"),
                );
                let local = auth::lookup_local(&tag, self.local_list(), self.cache());
                self.decide_offline(tag, local, profile);
            }
        }
    }

    fn grant(&mut self, id_tag: String, info: TagInfo, charging_profile: Option<Value>) {
        if self.tx.is_some() {
            return;
        }
        let reservation_id = match self.reservation_check(&id_tag, &info) {
            Ok(r) => r,
            Err(why) => {
                self.log.warn("auth", format!("{id_tag} refused: {why}"));
                return;
            }
        };
        if self.plugged {
            self.start_transaction(id_tag, info.parent_id_tag, charging_profile, reservation_id);
        } else {
            let timeout = self.config.int("ConnectionTimeOut").max(1) as u64;
            self.log.info(
                "tx",
                format!("{id_tag} authorized; waiting {timeout} s for the EV to be plugged in"),
            );
            self.pending_start = Some(PendingStart {
                id_tag,
                parent_id_tag: info.parent_id_tag,
                expires: Instant::now() + Duration::from_secs(timeout),
                charging_profile,
            });
            self.refresh_status();
        }
    }

    // ----- plug and unplug ----------------------------------------------------------------

    pub(super) fn on_plug(&mut self) {
        self.plugged = true;
        self.finishing = false;
        if self.tx.is_some() {
            return;
        }
        if let Some(p) = self.pending_start.take() {
            let reservation_id = self.reservation.as_ref().map(|r| r.reservation_id);
            self.start_transaction(
                p.id_tag,
                p.parent_id_tag,
                p.charging_profile,
                reservation_id,
            );
            return;
        }
        if self.config.bool("FreeCharging") && self.connector_usable() {
            let tag = self.config.text("FreeChargingIdTag");
            self.log
                .info("tx", format!("free charging: starting with id tag {tag}"));
            self.start_transaction(tag, None, None, None);
        }
    }

    pub(super) fn on_unplug(&mut self) {
        self.plugged = false;
        self.finishing = false;
        if self.tx.is_some() {
            // StopTransactionOnEVSideDisconnect can only be true on this charger.
            self.stop_transaction("EVDisconnected", None);
        }
        if self.config.bool("UnlockConnectorOnEVSideDisconnect")
            && !self.config.bool("LockCablePermanently")
        {
            self.hw.set_cable_lock(false);
        }
    }

    // ----- transactions -----------------------------------------------------------------

    pub(super) fn start_transaction(
        &mut self,
        id_tag: String,
        parent_id_tag: Option<String>,
        charging_profile: Option<Value>,
        reservation_id: Option<i64>,
    ) {
        let local_tx = match self.journal.new_local_tx() {
            Ok(n) => n,
            Err(e) => {
                self.log
                    .error("tx", format!("cannot start a transaction: {e}"));
                return;
            }
        };
        let now = self.now();
        let meter = self.hw.meter();
        let meter_start = meter.energy_wh.floor();
        let mut payload = json!({
            "connectorId": 1,
            "idTag": id_tag,
            "meterStart": meter_start as i64,
            "timestamp": fmt_time(now),
        });
        if let Some(r) = reservation_id {
            payload["reservationId"] = json!(r);
        }
        if let Err(e) = self.journal.push("StartTransaction", payload, local_tx) {
            self.log
                .error("tx", format!("cannot queue StartTransaction: {e}"));
            return;
        }
        let mut tx = ActiveTx {
            local_tx,
            id_tag: id_tag.clone(),
            parent_id_tag,
            started_at: now,
            meter_start_wh: meter.energy_wh,
            last_meter_wh: meter.energy_wh,
            last_meter_at: now,
            last_sample_wh: meter.energy_wh,
            stop_data: Vec::new(),
            deauthorized: false,
            charging_profile,
            reservation_id,
            transaction_id: None,
        };
        let begin = self.sample_stop_measurands("Transaction.Begin", &meter, now, meter.energy_wh);
        if let Some(b) = begin {
            tx.stop_data.push(b);
        }
        self.tx = Some(tx);
        self.pending_start = None;
        if let Some(r) = reservation_id {
            self.consume_reservation(r);
        }
        self.save_tx();
        self.hw.set_cable_lock(true);
        self.install_remote_start_profile();
        self.apply_offered_current();
        self.schedule_sampling();
        self.log.info(
            "tx",
            format!("transaction {local_tx} started for {id_tag} at {meter_start:.0} Wh"),
        );
        self.refresh_status();
    }

    /// Stops the running transaction with `reason` (an OCPP Reason).
    pub(super) fn stop_transaction(&mut self, reason: &str, id_tag: Option<String>) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        let meter = self.hw.meter().energy_wh;
        let now = self.now();
        self.finish_tx(tx, reason, id_tag, meter, now);
    }

    fn finish_tx(
        &mut self,
        mut tx: ActiveTx,
        reason: &str,
        id_tag: Option<String>,
        meter_wh: f64,
        at: DateTime<Utc>,
    ) {
        self.tx = None;
        let reading = crate::stack::hardware::MeterReading {
            energy_wh: meter_wh,
            ..self.hw.meter()
        };
        if let Some(end) =
            self.sample_stop_measurands("Transaction.End", &reading, at, tx.last_sample_wh)
        {
            tx.stop_data.push(end);
        }
        let mut payload = json!({
            "meterStop": meter_wh.floor() as i64,
            "timestamp": fmt_time(at),
            "reason": reason,
            "transactionId": tx.transaction_id.unwrap_or(-1),
        });
        if let Some(tag) = &id_tag {
            payload["idTag"] = json!(tag);
        }
        let data = cap_meter_values(
            tx.stop_data,
            self.config.int("StopTransactionMaxMeterValues"),
        );
        if !data.is_empty() {
            payload["transactionData"] = Value::Array(data);
        }
        if let Err(e) = self.journal.push("StopTransaction", payload, tx.local_tx) {
            self.log
                .error("tx", format!("cannot queue StopTransaction: {e}"));
        }
        self.save_tx();
        self.hw.set_offered_current(0.0);
        self.limit_check_at = None;
        if let Err(e) = self.profiles.clear_tx_profiles(1) {
            self.log
                .error("smart", format!("cannot clear the TxProfile: {e}"));
        }
        self.sample_at = None;
        self.finishing = self.plugged;
        let keep_locked = self.config.bool("LockCablePermanently")
            || (reason == "EVDisconnected"
                && !self.config.bool("UnlockConnectorOnEVSideDisconnect"));
        if !keep_locked {
            self.hw.set_cable_lock(false);
        }
        self.log.info(
            "tx",
            format!(
                "transaction {} stopped ({reason}) at {:.0} Wh, {:.0} Wh delivered",
                tx.local_tx,
                meter_wh,
                meter_wh - tx.meter_start_wh
            ),
        );
        // A downloaded firmware image waits for the session to end.
        self.try_install();
        // A ChangeAvailability that waited for the session applies now.
        for c in 0..2 {
            if let Some(a) = self.scheduled_availability[c].take() {
                self.set_availability(c, a);
            }
        }
        self.refresh_status();
    }

    /// Transaction context for smart charging (Relative profiles start with the transaction).
    pub(super) fn smart_tx(&self) -> Option<crate::stack::smart_charging::TxContext> {
        self.tx
            .as_ref()
            .map(|t| crate::stack::smart_charging::TxContext {
                started: t.started_at,
            })
    }

    pub(super) fn smart_context(&self) -> crate::stack::smart_charging::SetContext {
        use crate::stack::smart_charging::{ActiveTransaction, Limits, SetContext};
        SetContext {
            limits: Limits {
                max_stack_level: self.config.int("ChargeProfileMaxStackLevel").max(0) as u32,
                max_periods: self.config.int("ChargingScheduleMaxPeriods").max(0) as usize,
                max_profiles: self.config.int("MaxChargingProfilesInstalled").max(0) as usize,
            },
            transaction: self.tx.as_ref().map(|t| ActiveTransaction {
                connector_id: 1,
                transaction_id: t.transaction_id,
                started: t.started_at,
            }),
            now: self.now(),
        }
    }

    /// The current the EV may draw now: the hardware maximum, limited by the composite
    /// charging schedule; 0 without a running (authorized) transaction.
    pub(super) fn offered_limit(&self) -> f64 {
        match &self.tx {
            Some(tx) if !tx.deauthorized => {
                let limit = self
                    .profiles
                    .limit_at(1, self.now(), self.smart_tx())
                    .map(|(amps, _phases)| amps);
                limit.map_or(HARDWARE_MAX_AMPS, |l| l.clamp(0.0, HARDWARE_MAX_AMPS))
            }
            _ => 0.0,
        }
    }

    pub(super) fn apply_offered_current(&mut self) {
        let amps = self.offered_limit();
        let before = self.hw.meter().offered_a;
        self.hw.set_offered_current(amps);
        if (before - amps).abs() > f64::EPSILON {
            self.log.info(
                "smart",
                format!("offered current {before:.1} A -> {amps:.1} A"),
            );
        }
        // Look again at the next period boundary of the schedule (at most an hour ahead).
        self.limit_check_at = None;
        if self.tx.is_some() {
            let now = self.now();
            if let Ok(c) = self.profiles.composite(1, now, 3600, self.smart_tx(), now) {
                if let Some(next) = c.periods.iter().map(|p| p.start_period).find(|s| *s > 0) {
                    self.limit_check_at = Some(Instant::now() + Duration::from_secs(next as u64));
                } else if c.is_limited() || !self.profiles.is_empty() {
                    self.limit_check_at = Some(Instant::now() + Duration::from_secs(3600));
                }
            }
        }
        self.refresh_status();
    }

    /// The chargingProfile of a RemoteStartTransaction becomes the transaction's TxProfile.
    fn install_remote_start_profile(&mut self) {
        let Some(profile) = self.tx.as_ref().and_then(|t| t.charging_profile.clone()) else {
            return;
        };
        let parsed: Result<messages::ChargingProfile, _> =
            crate::stack::rpc::decode_payload(&profile);
        match parsed {
            Ok(p) => {
                let ctx = self.smart_context();
                match self.profiles.set(1, p, &ctx) {
                    Ok(()) => self
                        .log
                        .info("smart", "TxProfile from RemoteStartTransaction installed"),
                    Err(e) => self.log.warn(
                        "smart",
                        format!("TxProfile from RemoteStartTransaction refused: {e}"),
                    ),
                }
            }
            Err(e) => self.log.warn(
                "smart",
                format!("RemoteStartTransaction chargingProfile: {e}"),
            ),
        }
    }

    pub(super) fn remote_start(&mut self, payload: &Value) -> &'static str {
        let connector = payload.get("connectorId").and_then(Value::as_i64);
        if connector.is_some_and(|c| c != 1) {
            return "Rejected";
        }
        let Some(id_tag) = payload.get("idTag").and_then(Value::as_str) else {
            return "Rejected";
        };
        if self.tx.is_some() || !self.connector_usable() || self.authorizing.is_some() {
            return "Rejected";
        }
        let profile = payload.get("chargingProfile").cloned();
        if let Some(p) = &profile {
            if p.get("chargingProfilePurpose").and_then(Value::as_str) != Some("TxProfile") {
                return "Rejected";
            }
            // The seed's rules for profiles apply here too (only A, ...): refuse up front.
            let parsed: Result<messages::ChargingProfile, _> = crate::stack::rpc::decode_payload(p);
            match parsed {
                Ok(cp)
                    if cp.charging_schedule.charging_rate_unit
                        != messages::ChargingRateUnitType::A =>
                {
                    return "Rejected";
                }
                Err(_) => return "Rejected",
                _ => {}
            }
        }
        let id_tag = id_tag.to_string();
        if self.config.bool("AuthorizeRemoteTxRequests") {
            self.authorize(id_tag, AuthSource::Remote, profile);
        } else {
            self.log.info(
                "tx",
                format!("remote start for {id_tag} accepted without Authorize"),
            );
            self.grant(id_tag, TagInfo::accepted(), profile);
        }
        "Accepted"
    }

    pub(super) fn remote_stop(&mut self, transaction_id: i64) -> &'static str {
        match &self.tx {
            Some(tx) if tx.transaction_id == Some(transaction_id) => {
                self.stop_transaction("Remote", None);
                "Accepted"
            }
            _ => "Rejected",
        }
    }

    pub(super) fn unlock_connector(&mut self, connector: i64) -> &'static str {
        if connector != 1 {
            return "NotSupported";
        }
        if self.config.bool("LockCablePermanently") {
            // A fixed cable cannot be released.
            return "NotSupported";
        }
        if self.tx.is_some() {
            self.stop_transaction("UnlockCommand", None);
        }
        self.hw.set_cable_lock(false);
        "Unlocked"
    }

    // ----- delivery of transaction messages ------------------------------------------------

    /// The next journaled message, ready to send (transactionId filled in), or None.
    pub(super) fn next_tx_message(&mut self) -> Option<(u64, String, Value)> {
        loop {
            let entry = self.journal.front()?.clone();
            if self.tx_retry_at.is_some_and(|t| t > Instant::now()) {
                return None;
            }
            let mut payload = entry.payload.clone();
            if entry.action != "StartTransaction" {
                match self.journal.transaction_id(entry.local_tx) {
                    Some(id) => payload["transactionId"] = json!(id),
                    None => {
                        self.log.error(
                            "tx",
                            format!(
                                "{} of transaction {} dropped: its StartTransaction was never confirmed",
                                entry.action, entry.local_tx
                            ),
                        );
                        if let Err(e) = self.journal.complete(entry.seq) {
                            self.log.error("tx", e.to_string());
                            return None;
                        }
                        continue;
                    }
                }
            }
            return Some((entry.seq, entry.action, payload));
        }
    }

    pub(super) fn on_tx_result(&mut self, seq: u64, result: Result<Value, CallError>) {
        let Some(entry) = self.journal.front().cloned() else {
            return;
        };
        if entry.seq != seq {
            return;
        }
        match result {
            Ok(payload) => {
                self.tx_retry_at = None;
                if entry.action == "StartTransaction" {
                    self.on_start_confirmed(&entry, &payload);
                } else if let Some(info) = payload.get("idTagInfo").and_then(TagInfo::from_json)
                    && let Some(tag) = entry.payload.get("idTag").and_then(Value::as_str)
                {
                    self.learn(tag, &info);
                }
                if let Err(e) = self.journal.complete(seq) {
                    self.log.error("tx", e.to_string());
                }
            }
            Err(error) => self.tx_attempt_failed(&entry, &error.to_string()),
        }
    }

    pub(super) fn tx_attempt_failed(&mut self, entry: &crate::stack::journal::Entry, why: &str) {
        let max = self.config.int("TransactionMessageAttempts").max(1) as u32;
        let attempts = {
            let Some(front) = self.journal.front_mut() else {
                return;
            };
            front.attempts += 1;
            front.attempts
        };
        if attempts >= max {
            self.log.error(
                "tx",
                format!(
                    "{} of transaction {} given up after {attempts} attempts: {why}",
                    entry.action, entry.local_tx
                ),
            );
            self.tx_retry_at = None;
            if entry.action == "StartTransaction" {
                // Without a transactionId nothing else of this transaction can be sent.
            }
            if let Err(e) = self.journal.complete(entry.seq) {
                self.log.error("tx", e.to_string());
            }
        } else {
            let interval = self.config.int("TransactionMessageRetryInterval").max(0) as u64;
            let wait = Duration::from_secs(interval * attempts as u64);
            self.log.warn(
                "tx",
                format!(
                    "{} attempt {attempts} of {max} failed ({why}); retrying in {} s",
                    entry.action,
                    wait.as_secs()
                ),
            );
            self.tx_retry_at = Some(Instant::now() + wait);
        }
    }

    fn on_start_confirmed(&mut self, entry: &crate::stack::journal::Entry, payload: &Value) {
        let transaction_id = payload.get("transactionId").and_then(Value::as_i64);
        let info = payload.get("idTagInfo").and_then(TagInfo::from_json);
        let Some(transaction_id) = transaction_id else {
            self.log
                .error("tx", "StartTransaction answer has no transactionId");
            return;
        };
        if let Err(e) = self
            .journal
            .set_transaction_id(entry.local_tx, transaction_id)
        {
            self.log.error("tx", e.to_string());
        }
        let id_tag = entry
            .payload
            .get("idTag")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(info) = &info {
            self.learn(&id_tag, info);
        }
        let current = self
            .tx
            .as_ref()
            .is_some_and(|t| t.local_tx == entry.local_tx);
        if current {
            if let Some(tx) = self.tx.as_mut() {
                tx.transaction_id = Some(transaction_id);
            }
            self.save_tx();
            self.log.info(
                "tx",
                format!(
                    "transaction {} has CSMS id {transaction_id}",
                    entry.local_tx
                ),
            );
            let now = self.now();
            if let Some(info) = info
                && !info.is_valid_at(now)
            {
                let status = info.effective_status(now);
                if self.config.bool("StopTransactionOnInvalidId") {
                    self.log.warn(
                        "tx",
                        format!("{id_tag} is {status}: stopping the transaction"),
                    );
                    self.stop_transaction("DeAuthorized", None);
                } else {
                    self.log.warn(
                        "tx",
                        format!("{id_tag} is {status}: energy stopped, transaction kept"),
                    );
                    if let Some(tx) = self.tx.as_mut() {
                        tx.deauthorized = true;
                    }
                    self.save_tx();
                    self.apply_offered_current();
                    self.refresh_status();
                }
            }
        }
    }

    // ----- meter values -----------------------------------------------------------------

    pub(super) fn schedule_sampling(&mut self) {
        let secs = self.config.int("MeterValueSampleInterval");
        self.sample_at = (secs > 0 && self.tx.is_some())
            .then(|| Instant::now() + Duration::from_secs(secs as u64));
    }

    pub(super) fn schedule_aligned(&mut self) {
        let secs = self.config.int("ClockAlignedDataInterval");
        if secs <= 0 {
            self.aligned_at = None;
            return;
        }
        let now = self.now();
        let since_midnight =
            now.timestamp().rem_euclid(86_400) as u64 * 1000 + now.timestamp_subsec_millis() as u64;
        let period = secs as u64 * 1000;
        let wait = period - since_midnight % period;
        self.aligned_at = Some(Instant::now() + Duration::from_millis(wait));
    }

    /// Builds an OCPP MeterValue with the given measurands.
    pub(super) fn meter_value(
        &self,
        measurands: &[String],
        context: &str,
        reading: &crate::stack::hardware::MeterReading,
        at: DateTime<Utc>,
        interval_base_wh: f64,
    ) -> Option<Value> {
        let mut values = Vec::new();
        let sv =
            |value: String, measurand: &str, unit: &str, phase: Option<&str>, location: &str| {
                let mut v = json!({
                    "value": value,
                    "context": context,
                    "format": "Raw",
                    "measurand": measurand,
                    "location": location,
                    "unit": unit,
                });
                if let Some(p) = phase {
                    v["phase"] = json!(p);
                }
                v
            };
        for m in measurands {
            match m.as_str() {
                "Energy.Active.Import.Register" => values.push(sv(
                    format!("{:.0}", reading.energy_wh.floor()),
                    m,
                    "Wh",
                    None,
                    "Outlet",
                )),
                "Energy.Active.Import.Interval" => values.push(sv(
                    format!(
                        "{:.0}",
                        (reading.energy_wh - interval_base_wh).max(0.0).floor()
                    ),
                    m,
                    "Wh",
                    None,
                    "Outlet",
                )),
                "Current.Import" => {
                    for (i, p) in ["L1", "L2", "L3"].iter().enumerate() {
                        values.push(sv(
                            format!("{:.1}", reading.current_a[i]),
                            m,
                            "A",
                            Some(p),
                            "Outlet",
                        ));
                    }
                }
                "Current.Offered" => values.push(sv(
                    format!("{:.1}", reading.offered_a),
                    m,
                    "A",
                    None,
                    "Outlet",
                )),
                "Voltage" => {
                    for (i, p) in ["L1-N", "L2-N", "L3-N"].iter().enumerate() {
                        values.push(sv(
                            format!("{:.1}", reading.voltage_v[i]),
                            m,
                            "V",
                            Some(p),
                            "Outlet",
                        ));
                    }
                }
                "Temperature" => values.push(sv(
                    format!("{:.1}", reading.temperature_c),
                    m,
                    "Celsius",
                    None,
                    "Body",
                )),
                _ => {}
            }
        }
        (!values.is_empty()).then(|| json!({ "timestamp": fmt_time(at), "sampledValue": values }))
    }

    fn sample_stop_measurands(
        &self,
        context: &str,
        reading: &crate::stack::hardware::MeterReading,
        at: DateTime<Utc>,
        base: f64,
    ) -> Option<Value> {
        let m = self.config.list("StopTxnSampledData");
        self.meter_value(&m, context, reading, at, base)
    }

    pub(super) fn on_sample_timer(&mut self) {
        self.sample_at = None;
        let Some(tx) = self.tx.clone() else {
            return;
        };
        let now = self.now();
        let reading = self.hw.meter();
        let measurands = self.config.list("MeterValuesSampledData");
        if let Some(mv) = self.meter_value(
            &measurands,
            "Sample.Periodic",
            &reading,
            now,
            tx.last_sample_wh,
        ) {
            let payload = json!({
                "connectorId": 1,
                "transactionId": tx.transaction_id.unwrap_or(-1),
                "meterValue": [mv],
            });
            if let Err(e) = self.journal.push("MeterValues", payload, tx.local_tx) {
                self.log
                    .error("tx", format!("cannot queue MeterValues: {e}"));
            }
        }
        let stop_sample =
            self.sample_stop_measurands("Sample.Periodic", &reading, now, tx.last_sample_wh);
        if let Some(t) = self.tx.as_mut() {
            t.last_meter_wh = reading.energy_wh;
            t.last_meter_at = now;
            t.last_sample_wh = reading.energy_wh;
            if let Some(s) = stop_sample {
                t.stop_data.push(s);
            }
        }
        self.save_tx();
        self.schedule_sampling();
    }

    pub(super) fn on_aligned_timer(&mut self) {
        self.aligned_at = None;
        let now = self.now();
        let reading = self.hw.meter();
        let base = self.last_aligned_wh.unwrap_or(reading.energy_wh);
        self.last_aligned_wh = Some(reading.energy_wh);
        let measurands = self.config.list("MeterValuesAlignedData");
        if let Some(mv) = self.meter_value(&measurands, "Sample.Clock", &reading, now, base) {
            match self.tx.clone() {
                Some(tx) => {
                    let payload = json!({
                        "connectorId": 1,
                        "transactionId": tx.transaction_id.unwrap_or(-1),
                        "meterValue": [mv],
                    });
                    if let Err(e) = self.journal.push("MeterValues", payload, tx.local_tx) {
                        self.log
                            .error("tx", format!("cannot queue MeterValues: {e}"));
                    }
                }
                None => {
                    if self.online && self.registration == Registration::Accepted {
                        self.enqueue(
                            "MeterValues",
                            json!({ "connectorId": 1, "meterValue": [mv] }),
                            Purpose::Other,
                        );
                    }
                }
            }
        }
        let stop_aligned = self.config.list("StopTxnAlignedData");
        let stop = self.meter_value(&stop_aligned, "Sample.Clock", &reading, now, base);
        if let (Some(t), Some(s)) = (self.tx.as_mut(), stop) {
            t.stop_data.push(s);
            t.last_meter_wh = reading.energy_wh;
            t.last_meter_at = now;
        }
        if self.tx.is_some() {
            self.save_tx();
        }
        self.schedule_aligned();
    }
}

fn tx_time_of(tx: &Option<ActiveTx>) -> DateTime<Utc> {
    tx.as_ref()
        .map(|t| t.last_meter_at)
        .unwrap_or_else(Utc::now)
}

/// StopTransactionMaxMeterValues (errata v4.0): keep the first and the last readings and drop
/// intermediate ones evenly when there are more than `max`. 0 or less means no limit.
pub(super) fn cap_meter_values(values: Vec<Value>, max: i64) -> Vec<Value> {
    if max <= 0 || values.len() as i64 <= max {
        return values;
    }
    let max = max as usize;
    if max == 1 {
        return values.into_iter().last().into_iter().collect();
    }
    let n = values.len();
    let mut out = Vec::with_capacity(max);
    for i in 0..max {
        let idx = i * (n - 1) / (max - 1);
        out.push(values[idx].clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_value_cap_keeps_first_and_last() {
        let v: Vec<Value> = (0..10).map(|i| json!(i)).collect();
        let c = cap_meter_values(v.clone(), 4);
        assert_eq!(c, vec![json!(0), json!(3), json!(6), json!(9)]);
        assert_eq!(cap_meter_values(v.clone(), 0).len(), 10);
        assert_eq!(cap_meter_values(v.clone(), 20).len(), 10);
        assert_eq!(cap_meter_values(v, 1), vec![json!(9)]);
    }
}
