//! Transactions: starting one (an accepted idTag and a plugged cable, within ConnectionTimeOut),
//! stopping it with every applicable reason, RemoteStart/RemoteStopTransaction and
//! UnlockConnector, recovery after a power loss, and the journaled delivery of transaction
//! messages (StartTransaction, MeterValues, StopTransaction) with their retries. The journal's
//! payloads stay JSON: a charger carries its journal across firmware upgrades.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

use super::actor::{ChargePoint, secs};
use super::connectors::ConnectorId;
use super::fmt_time;
use super::metering::cap_meter_values;
use crate::stack::auth::TagInfo;
use crate::stack::config::{BoolKey, IntKey, TextKey};
use crate::stack::hardware::MeterReading;
use crate::stack::journal::{Durability, Entry, Journal};
use crate::stack::local_list;
use crate::stack::messages::{self, ChargingProfile, Reason};
use crate::stack::rpc::{self, CallError};
use crate::storage;

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

const TX_FILE: &str = "transaction.json";

/// An accepted authorization waiting for the EV to be plugged in (ConnectionTimeOut).
#[derive(Debug, Clone)]
pub(super) struct PendingStart {
    pub id_tag: String,
    pub parent_id_tag: Option<String>,
    pub expires: Instant,
    pub charging_profile: Option<ChargingProfile>,
}

pub(super) struct Transactions {
    pub journal: Journal,
    pub active: Option<ActiveTx>,
    pub pending_start: Option<PendingStart>,
    /// A transaction ended and the EV is still plugged in.
    pub finishing: bool,
    /// The front journal message waits until then before its next attempt.
    pub retry_at: Option<Instant>,
    /// While the journal holds changes the disk refused, the next try to write them.
    pub persist_retry_at: Option<Instant>,
}

/// How often a journal the disk refused is written again while nothing else writes it.
const PERSIST_RETRY: Duration = Duration::from_secs(5);

impl Transactions {
    pub fn open(dir: &Path, durability: Durability) -> anyhow::Result<Transactions> {
        let journal = Journal::open_with(dir, durability).map_err(|e| anyhow::anyhow!("{e}"))?;
        let active = storage::read_optional(&dir.join(TX_FILE))
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Ok(Transactions {
            journal,
            active,
            pending_start: None,
            finishing: false,
            retry_at: None,
            persist_retry_at: None,
        })
    }
}

impl ChargePoint {
    // ----- persistence --------------------------------------------------------------------

    pub fn save_tx(&mut self) {
        let path = self.opts.state_dir.join(TX_FILE);
        let result = match &self.transactions.active {
            Some(tx) => serde_json::to_vec(tx)
                .map_err(std::io::Error::other)
                .and_then(|b| storage::write_doc("transaction", &path, &b)),
            None => storage::remove_doc("transaction", &path),
        };
        self.stored("the transaction state", result);
    }

    /// Reports the outcome of a write to storage: an error goes to the log and becomes the
    /// charger's storage problem; a success ends one.
    pub fn stored<E: std::fmt::Display>(&mut self, what: &str, result: Result<(), E>) -> bool {
        match result {
            Ok(()) => {
                // The disk takes writes again: the journal catches up at once.
                if self.transactions.journal.unsaved() {
                    if let Err(e) = self.transactions.journal.compact() {
                        self.log.storage_failed("the transaction journal", &e);
                        return true;
                    }
                    self.transactions.persist_retry_at = None;
                }
                self.log.storage_ok();
                true
            }
            Err(e) => {
                self.log.storage_failed(what, &e);
                false
            }
        }
    }

    /// Appends a transaction message to the journal (fsynced before it returns). When the disk
    /// refuses the write the message is queued in memory and delivered all the same.
    pub fn journal_push(&mut self, action: &str, payload: Value, local_tx: u64) {
        let result = self.transactions.journal.push(action, payload, local_tx);
        if !self.stored("the transaction journal", result.map(|_| ())) {
            self.log.warn(
                "tx",
                format!("{action} is queued in memory only until the disk takes writes again"),
            );
        }
    }

    /// Marks the journal's message `seq` delivered or abandoned.
    fn journal_complete(&mut self, seq: u64) {
        let result = self.transactions.journal.complete(seq);
        self.stored("the transaction journal", result);
    }

    /// At boot: a transaction left open by the previous run was cut by a power loss.
    pub fn recover_transaction(&mut self) {
        let Some(tx) = self.transactions.active.clone() else {
            return;
        };
        // Power lost after StopTransaction was journaled but before the state file was removed:
        // the transaction is already closed, and a second stop would duplicate it.
        if self
            .transactions
            .journal
            .entries()
            .any(|e| e.local_tx == tx.local_tx && e.action == "StopTransaction")
        {
            self.log.info(
                "tx",
                format!(
                    "transaction {} was already stopped before the power loss",
                    tx.local_tx
                ),
            );
            self.transactions.active = None;
            self.save_tx();
            return;
        }
        let meter = self.hw.meter().energy_wh.max(tx.last_meter_wh);
        self.log.warn(
            "tx",
            format!(
                "transaction {} was open at power loss; closing it with the last meter reading {:.0} Wh",
                tx.local_tx, meter
            ),
        );
        let at = tx.last_meter_at;
        self.finish_tx(tx, Reason::PowerLoss, None, meter, at);
    }

    // ----- authorized, plugged ------------------------------------------------------------

    /// An accepted idTag: start now when plugged in, else wait ConnectionTimeOut for the EV.
    pub fn grant(
        &mut self,
        id_tag: String,
        info: TagInfo,
        charging_profile: Option<ChargingProfile>,
    ) {
        if self.transactions.active.is_some() {
            return;
        }
        let reservation_id = match self.reservation_check(&id_tag, &info) {
            Ok(r) => r,
            Err(why) => {
                self.log.warn("auth", format!("{id_tag} refused: {why}"));
                return;
            }
        };
        if self.connectors.plugged {
            self.start_transaction(id_tag, info.parent_id_tag, charging_profile, reservation_id);
        } else {
            let timeout = self.config.int(IntKey::CONNECTION_TIME_OUT).max(1);
            self.log.info(
                "tx",
                format!("{id_tag} authorized; waiting {timeout} s for the EV to be plugged in"),
            );
            self.transactions.pending_start = Some(PendingStart {
                id_tag,
                parent_id_tag: info.parent_id_tag,
                expires: Instant::now() + secs(timeout),
                charging_profile,
            });
            self.refresh_status();
        }
    }

    /// ConnectionTimeOut passed without a plugged cable.
    pub fn expire_pending_start(&mut self, now: Instant) {
        if let Some(p) = self
            .transactions
            .pending_start
            .take_if(|p| p.expires <= now)
        {
            self.log.info(
                "tx",
                format!(
                    "{}: no EV plugged in within ConnectionTimeOut, cancelled",
                    p.id_tag
                ),
            );
        }
    }

    pub fn on_plug(&mut self) {
        self.connectors.plugged = true;
        self.transactions.finishing = false;
        if self.transactions.active.is_some() {
            return;
        }
        if let Some(p) = self.transactions.pending_start.take() {
            let reservation_id = self.reservations.active.as_ref().map(|r| r.reservation_id);
            self.start_transaction(
                p.id_tag,
                p.parent_id_tag,
                p.charging_profile,
                reservation_id,
            );
            return;
        }
        if self.config.bool(BoolKey::FREE_CHARGING) && self.connector_usable() {
            let tag = self.config.text(TextKey::FREE_CHARGING_ID_TAG);
            self.log
                .info("tx", format!("free charging: starting with id tag {tag}"));
            self.start_transaction(tag, None, None, None);
        }
    }

    pub fn on_unplug(&mut self) {
        self.connectors.plugged = false;
        self.transactions.finishing = false;
        if self.transactions.active.is_some() {
            // StopTransactionOnEVSideDisconnect can only be true on this charger.
            self.stop_transaction(Reason::EvDisconnected, None);
        }
        if self
            .config
            .bool(BoolKey::UNLOCK_CONNECTOR_ON_EV_SIDE_DISCONNECT)
            && !self.config.bool(BoolKey::LOCK_CABLE_PERMANENTLY)
        {
            self.hw.set_cable_lock(false);
        }
    }

    // ----- start and stop -----------------------------------------------------------------

    fn start_transaction(
        &mut self,
        id_tag: String,
        parent_id_tag: Option<String>,
        charging_profile: Option<ChargingProfile>,
        reservation_id: Option<i64>,
    ) {
        // A disk that refuses the write does not stop the session: the number is taken in
        // memory and the journal catches up once the disk takes writes again.
        let allocated = self.transactions.journal.new_local_tx();
        let local_tx = self.transactions.journal.newest_local_tx();
        self.stored("the transaction journal", allocated.map(|_| ()));
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
            charging_profile: charging_profile.as_ref().map(rpc::encode_payload),
            reservation_id,
            transaction_id: None,
        };
        if let Some(b) =
            self.sample_stop_measurands("Transaction.Begin", &meter, now, meter.energy_wh)
        {
            tx.stop_data.push(b);
        }
        // The state file first: a power loss between the two leaves a transaction that recovery
        // closes and whose stop is dropped for want of a start, instead of a StartTransaction
        // that nothing would ever stop.
        self.transactions.active = Some(tx);
        self.save_tx();
        self.journal_push("StartTransaction", payload, local_tx);
        self.transactions.pending_start = None;
        if let Some(r) = reservation_id {
            self.consume_reservation(r);
        }
        self.hw.set_cable_lock(true);
        if let Some(profile) = charging_profile {
            self.install_remote_start_profile(profile);
        }
        self.apply_offered_current();
        self.schedule_sampling();
        self.log.info(
            "tx",
            format!("transaction {local_tx} started for {id_tag} at {meter_start:.0} Wh"),
        );
        self.refresh_status();
    }

    /// Stops the running transaction with `reason`.
    pub fn stop_transaction(&mut self, reason: Reason, id_tag: Option<String>) {
        let Some(tx) = self.transactions.active.take() else {
            return;
        };
        let meter = self.hw.meter().energy_wh;
        let now = self.now();
        self.finish_tx(tx, reason, id_tag, meter, now);
    }

    fn finish_tx(
        &mut self,
        mut tx: ActiveTx,
        reason: Reason,
        id_tag: Option<String>,
        meter_wh: f64,
        at: DateTime<Utc>,
    ) {
        self.transactions.active = None;
        let reading = MeterReading {
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
            "reason": reason.as_str(),
            "transactionId": tx.transaction_id.unwrap_or(-1),
        });
        if let Some(tag) = &id_tag {
            payload["idTag"] = json!(tag);
        }
        let data = cap_meter_values(
            tx.stop_data,
            self.config.int(IntKey::STOP_TRANSACTION_MAX_METER_VALUES),
        );
        if !data.is_empty() {
            payload["transactionData"] = Value::Array(data);
        }
        self.journal_push("StopTransaction", payload, tx.local_tx);
        self.save_tx();
        self.end_charging();
        self.metering.sample_at = None;
        self.transactions.finishing = self.connectors.plugged;
        let keep_locked = self.config.bool(BoolKey::LOCK_CABLE_PERMANENTLY)
            || (reason == Reason::EvDisconnected
                && !self
                    .config
                    .bool(BoolKey::UNLOCK_CONNECTOR_ON_EV_SIDE_DISCONNECT));
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
        self.apply_scheduled_availability();
        self.refresh_status();
    }

    // ----- remote control -----------------------------------------------------------------

    pub fn remote_start(
        &mut self,
        req: messages::RemoteStartTransactionRequest,
    ) -> messages::RemoteStartTransactionResponse {
        use messages::RemoteStartStopStatus as S;
        let status = match req.connector_id.map(ConnectorId::new) {
            Some(Some(ConnectorId::SOCKET)) | None => self.remote_start_on_socket(req),
            Some(_) => S::Rejected,
        };
        messages::RemoteStartTransactionResponse { status }
    }

    fn remote_start_on_socket(
        &mut self,
        req: messages::RemoteStartTransactionRequest,
    ) -> messages::RemoteStartStopStatus {
        use messages::RemoteStartStopStatus as S;
        if self.transactions.active.is_some()
            || !self.connector_usable()
            || self.auth.authorizing.is_some()
        {
            return S::Rejected;
        }
        // The seed's rules for profiles apply here too (only A, startSchedule on recurring
        // schedules): a profile the charger could not apply is refused up front, never
        // accepted and then dropped.
        if let Some(p) = &req.charging_profile
            && let Err(why) = self.check_remote_start_profile(p)
        {
            self.log.warn(
                "smart",
                format!(
                    "RemoteStartTransaction rejected: its charging profile cannot be applied: {why}"
                ),
            );
            return S::Rejected;
        }
        let id_tag = req.id_tag.into_string();
        if self.config.bool(BoolKey::AUTHORIZE_REMOTE_TX_REQUESTS) {
            self.authorize(id_tag, req.charging_profile);
        } else {
            self.log.info(
                "tx",
                format!("remote start for {id_tag} accepted without Authorize"),
            );
            self.grant(id_tag, TagInfo::accepted(), req.charging_profile);
        }
        S::Accepted
    }

    pub fn remote_stop(
        &mut self,
        req: messages::RemoteStopTransactionRequest,
    ) -> messages::RemoteStopTransactionResponse {
        let wanted = Some(i64::from(req.transaction_id));
        let status = match &self.transactions.active {
            Some(tx) if tx.transaction_id == wanted => {
                self.stop_transaction(Reason::Remote, None);
                messages::RemoteStartStopStatus::Accepted
            }
            _ => messages::RemoteStartStopStatus::Rejected,
        };
        messages::RemoteStopTransactionResponse { status }
    }

    pub fn unlock_connector(
        &mut self,
        req: messages::UnlockConnectorRequest,
    ) -> messages::UnlockConnectorResponse {
        let status = if ConnectorId::new(req.connector_id) != Some(ConnectorId::SOCKET)
            // A fixed cable cannot be released.
            || self.config.bool(BoolKey::LOCK_CABLE_PERMANENTLY)
        {
            messages::UnlockStatus::NotSupported
        } else {
            if self.transactions.active.is_some() {
                self.stop_transaction(Reason::UnlockCommand, None);
            }
            self.hw.set_cable_lock(false);
            messages::UnlockStatus::Unlocked
        };
        messages::UnlockConnectorResponse { status }
    }

    // ----- delivery of transaction messages -----------------------------------------------

    /// The next journaled message, ready to send (transactionId filled in), or None.
    pub fn next_tx_message(&mut self) -> Option<(u64, String, Value)> {
        let now = Instant::now();
        if self.transactions.journal.unsaved()
            && self.transactions.persist_retry_at.is_none_or(|t| t <= now)
        {
            self.transactions.persist_retry_at = Some(now + PERSIST_RETRY);
            let result = self.transactions.journal.compact();
            self.stored("the transaction journal", result);
        }

        loop {
            let entry = self.transactions.journal.front()?.clone();
            if self
                .transactions
                .retry_at
                .is_some_and(|t| t > Instant::now())
            {
                return None;
            }
            let mut payload = entry.payload.clone();
            if entry.action != "StartTransaction" {
                match self.transactions.journal.transaction_id(entry.local_tx) {
                    Some(id) => payload["transactionId"] = json!(id),
                    None => {
                        self.log.error(
                            "tx",
                            format!(
                                "{} of transaction {} dropped: its StartTransaction was never confirmed",
                                entry.action, entry.local_tx
                            ),
                        );
                        self.journal_complete(entry.seq);
                        continue;
                    }
                }
            }
            return Some((entry.seq, entry.action, payload));
        }
    }

    pub fn on_tx_result(&mut self, seq: u64, result: Result<Value, CallError>) {
        let Some(entry) = self.transactions.journal.front().cloned() else {
            return;
        };
        if entry.seq != seq {
            return;
        }
        match result {
            Ok(payload) => {
                self.transactions.retry_at = None;
                if entry.action == "StartTransaction" {
                    self.on_start_confirmed(&entry, rpc::decode_payload(&payload));
                } else if entry.action == "StopTransaction" {
                    let answer = rpc::decode_payload::<messages::StopTransactionResponse>(&payload);
                    if let Ok(messages::StopTransactionResponse {
                        id_tag_info: Some(info),
                    }) = answer
                        && let Some(tag) = entry.payload.get("idTag").and_then(Value::as_str)
                    {
                        self.learn(tag, &local_list::tag_info(&info));
                    }
                }
                self.journal_complete(seq);
            }
            Err(error) => self.tx_attempt_failed(&entry, &error.to_string()),
        }
    }

    /// The front message got no answer within MessageTimeout.
    pub fn tx_timed_out(&mut self, seq: u64) {
        if let Some(entry) = self.transactions.journal.front().cloned()
            && entry.seq == seq
        {
            self.tx_attempt_failed(&entry, "no answer within MessageTimeout");
        }
    }

    fn tx_attempt_failed(&mut self, entry: &Entry, why: &str) {
        let max = self.config.int(IntKey::TRANSACTION_MESSAGE_ATTEMPTS).max(1) as u32;
        let attempts = {
            let Some(front) = self.transactions.journal.front_mut() else {
                return;
            };
            front.attempts += 1;
            front.attempts
        };
        if attempts >= max {
            // A StartTransaction given up leaves its transaction without a transactionId, so
            // nothing else of it can be sent either (see next_tx_message).
            self.log.error(
                "tx",
                format!(
                    "{} of transaction {} given up after {attempts} attempts: {why}",
                    entry.action, entry.local_tx
                ),
            );
            self.transactions.retry_at = None;
            self.journal_complete(entry.seq);
        } else {
            let interval = self
                .config
                .int(IntKey::TRANSACTION_MESSAGE_RETRY_INTERVAL)
                .max(0) as u64;
            let wait = Duration::from_secs(interval * attempts as u64);
            self.log.warn(
                "tx",
                format!(
                    "{} attempt {attempts} of {max} failed ({why}); retrying in {} s",
                    entry.action,
                    wait.as_secs()
                ),
            );
            self.transactions.retry_at = Some(Instant::now() + wait);
        }
    }

    fn on_start_confirmed(
        &mut self,
        entry: &Entry,
        answer: Result<messages::StartTransactionResponse, CallError>,
    ) {
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                self.log
                    .error("tx", format!("invalid StartTransaction answer: {e}"));
                return;
            }
        };
        let transaction_id = i64::from(answer.transaction_id);
        let info = local_list::tag_info(&answer.id_tag_info);
        let recorded = self
            .transactions
            .journal
            .set_transaction_id(entry.local_tx, transaction_id);
        self.stored("the transaction journal", recorded);
        let id_tag = entry
            .payload
            .get("idTag")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.learn(&id_tag, &info);
        let Some(tx) = self
            .transactions
            .active
            .as_mut()
            .filter(|t| t.local_tx == entry.local_tx)
        else {
            return;
        };
        tx.transaction_id = Some(transaction_id);
        self.save_tx();
        self.log.info(
            "tx",
            format!(
                "transaction {} has CSMS id {transaction_id}",
                entry.local_tx
            ),
        );
        let now = self.now();
        if info.is_valid_at(now) {
            return;
        }
        let status = info.effective_status(now);
        if self.config.bool(BoolKey::STOP_TRANSACTION_ON_INVALID_ID) {
            self.log.warn(
                "tx",
                format!("{id_tag} is {status}: stopping the transaction"),
            );
            self.stop_transaction(Reason::DeAuthorized, None);
        } else {
            self.log.warn(
                "tx",
                format!("{id_tag} is {status}: energy stopped, transaction kept"),
            );
            if let Some(tx) = self.transactions.active.as_mut() {
                tx.deauthorized = true;
            }
            self.save_tx();
            self.apply_offered_current();
            self.refresh_status();
        }
    }
}
