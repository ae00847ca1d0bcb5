//! The actor: [`ChargePoint`] composes the features, runs the one loop, keeps the connection
//! and the registration (BootNotification, heartbeat, SecurityProfile changes), and dispatches
//! every CSMS CALL, decoded into a [`CsmsCall`], to the handler of the feature that owns it.
//! Answers are the typed responses of [`messages`], encoded once when the CALLRESULT is built.

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, sleep_until};

use super::authorization::Authorization;
use super::charging_profile::ChargingProfiles;
use super::connectors::Connectors;
use super::diagnostics::Diagnostics;
use super::firmware::FirmwareUpdate;
use super::metering::Metering;
use super::outbox::{Outbox, Purpose};
use super::registration::Link;
use super::reservations::Reservations;
use super::transactions::Transactions;
use super::{Command, Direction, Event, Exit, Options, RebootKind};
use super::{Registration, Snapshot};
use crate::stack::config::{Configuration, IntKey};
use crate::stack::connection::{self, ConnCtl, ConnEvent};
use crate::stack::hardware::{Hardware, HwEvent};
use crate::stack::logbook::LogBook;
use crate::stack::messages::{self, CsmsCall, Request};
use crate::stack::messages::{DiagnosticsStatus, FirmwareStatus};
use crate::stack::rpc::{self, CallError, Frame};

/// Results of background work, delivered to the actor's loop.
#[derive(Debug)]
pub(super) enum Internal {
    FirmwareStatus(FirmwareStatus),
    FirmwareDownloaded(Vec<u8>),
    /// The image was verified and written to the inactive slot (its version), or refused.
    FirmwareInstalled(Result<String, String>),
    DiagnosticsStatus(DiagnosticsStatus),
}

pub(super) struct ChargePoint {
    pub opts: Arc<Options>,
    pub config: Configuration,
    pub hw: Arc<dyn Hardware>,
    pub log: LogBook,
    events: broadcast::Sender<Event>,
    pub conn_ctl: mpsc::Sender<ConnCtl>,
    conn_out: mpsc::Sender<String>,
    conn_ev: mpsc::Receiver<ConnEvent>,
    conn_task: tokio::task::JoinHandle<()>,
    pub link: Link,
    pub outbox: Outbox,
    pub connectors: Connectors,
    pub metering: Metering,
    pub auth: Authorization,
    pub transactions: Transactions,
    pub reservations: Reservations,
    pub charging_profiles: ChargingProfiles,
    pub firmware: FirmwareUpdate,
    pub diagnostics: Diagnostics,
    /// The channel of background work, made when the first piece of it starts (most charge
    /// points of a fleet never start any).
    internal_tx: Option<mpsc::Sender<Internal>>,
    internal_rx: Option<mpsc::Receiver<Internal>>,
    pub exit: Option<Exit>,
}

impl ChargePoint {
    pub fn boot(
        opts: Arc<Options>,
        hw: Arc<dyn Hardware>,
        events: broadcast::Sender<Event>,
    ) -> anyhow::Result<Box<ChargePoint>> {
        let dir = &opts.state_dir;
        let config = Configuration::open(dir)
            .map_err(|e| anyhow::anyhow!("configuration in {}: {e}", dir.display()))?;
        let transactions = Transactions::open(dir, opts.journal.clone())?;
        let (ctl_tx, ctl_rx) = mpsc::channel(8);
        let (out_tx, out_rx) = mpsc::channel(256);
        let (ev_tx, ev_rx) = mpsc::channel(256);
        let conn_task = tokio::spawn(connection::run(
            ctl_rx,
            ev_tx,
            out_rx,
            opts.backoff.clone(),
            opts.connect_timeout,
        ));
        let now = opts.clock.now();
        let log = opts.logbook.clone();
        let id = &opts.identity;
        log.info(
            "boot",
            format!(
                "{} {} serial {} firmware {} booting",
                id.vendor, id.model, id.serial_number, id.firmware_version
            ),
        );
        let mut cp = ChargePoint {
            config,
            connectors: Connectors::open(dir, hw.plugged(), now),
            hw,
            log,
            events,
            conn_ctl: ctl_tx,
            conn_out: out_tx,
            conn_ev: ev_rx,
            conn_task,
            link: Link {
                online: false,
                online_since: None,
                registration: Registration::Unknown,
                boot_retry_at: None,
                heartbeat_at: None,
                security_change: None,
                reconnect_after_reply: false,
                report: Default::default(),
            },
            outbox: Outbox::new(rand::random::<u32>() as u64),
            metering: Metering::default(),
            auth: Authorization::open(dir),
            transactions,
            reservations: Reservations::open(dir),
            charging_profiles: ChargingProfiles::open(dir),
            firmware: FirmwareUpdate::default(),
            diagnostics: Diagnostics::default(),
            internal_tx: None,
            internal_rx: None,
            exit: None,
            opts,
        };
        if cp.transactions.journal.recovered_torn_bytes > 0 {
            cp.log.warn(
                "tx",
                format!(
                    "transaction journal: a record torn by a power loss was discarded ({} bytes)",
                    cp.transactions.journal.recovered_torn_bytes
                ),
            );
        }
        cp.hw.set_offered_current(0.0);
        cp.recover_transaction();
        cp.expire_reservation();
        cp.cancel_reservation_for_free_charging();
        cp.schedule_aligned();
        cp.settle_status();
        Ok(Box::new(cp))
    }

    /// Runs the loop until the charge point reboots or stops. Boxed, so that the future of the
    /// task that runs it (a fleet holds thousands) keeps a pointer, not the charge point.
    pub async fn run(mut self: Box<Self>, commands: &mut mpsc::Receiver<Command>) -> Exit {
        Box::pin(self.connect_now()).await;
        loop {
            if let Some(kind) = self
                .outbox
                .deferred_reboot_due(&self.link, &self.transactions)
            {
                self.exit = Some(Exit::Reboot(kind));
            }
            if let Some(exit) = self.exit {
                // Deliver what is queued (a Reset answer), close with 1001 or 1012, and wait
                // for the CSMS's close before restarting.
                let closing = match exit {
                    Exit::Shutdown => connection::Closing::Shutdown,
                    Exit::Reboot(_) => connection::Closing::Reboot,
                };
                if let Err(e) = Box::pin(self.transactions.journal.sync()).await {
                    self.log
                        .error("tx", format!("transaction journal not durable: {e}"));
                }
                Box::pin(connection::shut_down(
                    self.conn_ctl,
                    self.conn_out,
                    &mut self.conn_ev,
                    &mut self.conn_task,
                    closing,
                ))
                .await;
                return exit;
            }
            // The handlers' futures are boxed: this loop's future lives as long as the charge
            // point, and would otherwise keep room for the deepest of them (a fleet holds
            // thousands of these futures; one allocation per event is cheap beside that).
            Box::pin(self.pump()).await;
            let deadline = self.next_deadline();
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => Box::pin(self.on_command(cmd)).await,
                    None => self.exit = Some(Exit::Shutdown),
                },
                ev = self.conn_ev.recv() => match ev {
                    Some(ev) => Box::pin(self.on_conn_event(ev)).await,
                    None => self.exit = Some(Exit::Shutdown),
                },
                Some(msg) = recv_opt(&mut self.internal_rx) => self.on_internal(msg),
                _ = sleep_until_opt(deadline) => Box::pin(self.on_timers()).await,
            }
        }
    }

    // ----- outgoing -----------------------------------------------------------------------

    /// Sends the next CALL when the line is free (one CP-initiated CALL in flight).
    async fn pump(&mut self) {
        if !self.link.online || self.outbox.in_flight.is_some() {
            return;
        }
        if self.link.registration == Registration::Accepted {
            // Seed: transaction messages are sent first, even when queued offline.
            if let Some((seq, action, payload)) = self.next_tx_message() {
                self.send_call(action, payload, Purpose::Tx(seq)).await;
                return;
            }
        }
        let Some(out) = self.outbox.take_next(&self.link) else {
            return;
        };
        self.send_call(out.action.to_string(), out.payload, out.purpose)
            .await;
    }

    async fn send_call(&mut self, action: String, payload: Value, purpose: Purpose) {
        let timeout = secs(self.config.int(IntKey::MESSAGE_TIMEOUT).clamp(1, 3600));
        let frame = self.outbox.start_call(action, payload, purpose, timeout);
        self.send_frame(frame).await;
    }

    async fn send_frame(&mut self, frame: Frame) {
        // Journaled before sent: with a group commit, wait for the flush covering what this
        // frame may depend on (a no-op when every record is durable already).
        if let Err(e) = self.transactions.journal.sync().await {
            self.log
                .error("tx", format!("transaction journal not durable: {e}"));
        }
        self.frame_seen(Direction::Sent, || rpc::redact(&frame).to_value());
        let _ = self.conn_out.send(frame.to_text()).await;
    }

    /// Reports a frame to the probe, and as an event when someone listens (the event's JSON is
    /// built only then).
    fn frame_seen(&self, direction: Direction, frame: impl FnOnce() -> Value) {
        if let Some(probe) = &self.opts.probe {
            probe.frame(direction);
        }
        let observed = self.events.receiver_count() > 0;
        if !observed && self.opts.trace.is_none() {
            return;
        }
        let frame = frame();
        if let Some(trace) = &self.opts.trace {
            trace.push(super::TraceRecord {
                at_ms: chrono::Utc::now().timestamp_millis(),
                direction,
                frame: frame.to_string(),
            });
        }
        if observed {
            self.emit(Event::Message { direction, frame });
        }
    }

    // ----- incoming -----------------------------------------------------------------------

    pub async fn on_text(&mut self, text: String) {
        let frame = match Frame::parse(&text) {
            Ok(f) => f,
            Err(e) => {
                self.frame_seen(Direction::Received, || {
                    serde_json::from_str(&text)
                        .map(|v| rpc::redact_value(&v))
                        .unwrap_or(Value::String(text.chars().take(2048).collect()))
                });
                self.log
                    .warn("ocpp", format!("malformed frame from the CSMS: {e}"));
                // A message whose unique id cannot be read is answered with id "-1"; a broken
                // CALLRESULT or CALLERROR is ignored.
                if let Some(reply) = e.reply() {
                    self.send_frame(reply).await;
                }
                return;
            }
        };
        self.frame_seen(Direction::Received, || rpc::redact(&frame).to_value());
        match frame {
            Frame::Call {
                id,
                action,
                payload,
            } => {
                self.warn_not_utc(&action, &payload);
                let reply = match CsmsCall::decode(&action, &payload) {
                    Ok(call) => match self.on_call(call).await {
                        Ok(payload) => Frame::CallResult { id, payload },
                        Err(error) => Frame::CallError { id, error },
                    },
                    Err(error) => Frame::CallError { id, error },
                };
                self.send_frame(reply).await;
                if std::mem::take(&mut self.link.reconnect_after_reply) {
                    self.connect_now().await;
                }
            }
            Frame::CallResult { id, payload } => self.on_result(&id, Ok(payload)).await,
            Frame::CallError { id, error } => self.on_result(&id, Err(error)).await,
        }
    }

    /// One handler per operation; each returns the typed response, encoded here.
    async fn on_call(&mut self, call: CsmsCall) -> Result<Value, CallError> {
        fn answer<R: Request>(resp: R::Response) -> Result<Value, CallError> {
            Ok(rpc::encode_payload(&resp))
        }
        use messages as m;
        match call {
            CsmsCall::GetConfiguration(req) => {
                answer::<m::GetConfigurationRequest>(self.get_configuration(req)?)
            }
            CsmsCall::ChangeConfiguration(req) => {
                answer::<m::ChangeConfigurationRequest>(self.change_configuration(req).await)
            }
            CsmsCall::Reset(req) => answer::<m::ResetRequest>(self.reset(req)),
            CsmsCall::ChangeAvailability(req) => {
                answer::<m::ChangeAvailabilityRequest>(self.change_availability(req))
            }
            CsmsCall::ClearCache(req) => answer::<m::ClearCacheRequest>(self.clear_cache(req)),
            CsmsCall::RemoteStartTransaction(req) => {
                answer::<m::RemoteStartTransactionRequest>(self.remote_start(req))
            }
            CsmsCall::RemoteStopTransaction(req) => {
                answer::<m::RemoteStopTransactionRequest>(self.remote_stop(req))
            }
            CsmsCall::ReserveNow(req) => answer::<m::ReserveNowRequest>(self.reserve_now(req)),
            CsmsCall::CancelReservation(req) => {
                answer::<m::CancelReservationRequest>(self.cancel_reservation(req))
            }
            CsmsCall::TriggerMessage(req) => {
                answer::<m::TriggerMessageRequest>(self.trigger_message(req))
            }
            CsmsCall::SendLocalList(req) => {
                answer::<m::SendLocalListRequest>(self.send_local_list(req))
            }
            CsmsCall::GetLocalListVersion(req) => {
                answer::<m::GetLocalListVersionRequest>(self.local_list_version(req))
            }
            CsmsCall::SetChargingProfile(req) => {
                answer::<m::SetChargingProfileRequest>(self.set_charging_profile(req))
            }
            CsmsCall::ClearChargingProfile(req) => {
                answer::<m::ClearChargingProfileRequest>(self.clear_charging_profile(req))
            }
            CsmsCall::GetCompositeSchedule(req) => {
                answer::<m::GetCompositeScheduleRequest>(self.composite_schedule(req))
            }
            CsmsCall::UpdateFirmware(req) => {
                answer::<m::UpdateFirmwareRequest>(self.update_firmware(req))
            }
            CsmsCall::GetDiagnostics(req) => {
                answer::<m::GetDiagnosticsRequest>(self.get_diagnostics(req))
            }
            CsmsCall::UnlockConnector(req) => {
                answer::<m::UnlockConnectorRequest>(self.unlock_connector(req))
            }
            CsmsCall::DataTransfer(req) => {
                answer::<m::DataTransferRequest>(self.data_transfer(req))
            }
        }
    }

    fn reset(&mut self, req: messages::ResetRequest) -> messages::ResetResponse {
        let kind = match req.kind {
            messages::ResetType::Soft => RebootKind::Soft,
            messages::ResetType::Hard => RebootKind::Hard,
        };
        self.log
            .info("ocpp", format!("{kind:?} reset requested by the CSMS"));
        let reason = match kind {
            RebootKind::Hard => messages::Reason::HardReset,
            _ => messages::Reason::SoftReset,
        };
        self.stop_transaction(reason, None);
        if kind == RebootKind::Soft && self.link.online && !self.transactions.journal.is_empty() {
            // OCPP 1.6 Reset: a soft reset stops transactions gracefully and sends their
            // StopTransaction.req before restarting (a hard reset sends it afterwards).
            self.defer_reboot(kind);
        } else {
            self.exit = Some(Exit::Reboot(kind));
        }
        messages::ResetResponse {
            status: messages::ResetStatus::Accepted,
        }
    }

    fn data_transfer(
        &mut self,
        req: messages::DataTransferRequest,
    ) -> messages::DataTransferResponse {
        let status = if req.vendor_id.as_str() == self.opts.identity.vendor {
            messages::DataTransferStatus::UnknownMessageId
        } else {
            messages::DataTransferStatus::UnknownVendorId
        };
        messages::DataTransferResponse { status, data: None }
    }

    /// Reboots once the transaction journal and the message queue are delivered (or nothing
    /// can be delivered: offline, not registered), at the latest after 3 x MessageTimeout.
    pub fn defer_reboot(&mut self, kind: RebootKind) {
        let wait = self.config.int(IntKey::MESSAGE_TIMEOUT).clamp(1, 3600) * 3;
        self.outbox.defer_reboot(kind, Instant::now() + secs(wait));
    }

    async fn on_result(&mut self, id: &str, result: Result<Value, CallError>) {
        let Some(f) = self.outbox.finish_call(id) else {
            self.log.warn(
                "ocpp",
                format!("answer to unknown or expired request id {id} ignored"),
            );
            return;
        };
        if let Some(probe) = &self.opts.probe {
            let outcome = match result {
                Ok(_) => super::CallOutcome::Result,
                Err(_) => super::CallOutcome::Error,
            };
            probe.call(&f.action, f.sent.elapsed(), outcome);
        }
        if let Ok(payload) = &result {
            self.warn_not_utc(&f.action, payload);
        }
        match (f.purpose, result) {
            (Purpose::Tx(seq), result) => self.on_tx_result(seq, result),
            (Purpose::Authorize(tag), Ok(payload)) => {
                let decoded = rpc::decode_payload::<messages::AuthorizeResponse>(&payload);
                if let Err(e) = &decoded {
                    self.log
                        .warn("auth", format!("invalid Authorize answer: {e}"));
                }
                self.on_authorize_result(&tag, decoded.ok());
            }
            (Purpose::Authorize(tag), Err(e)) => {
                self.log
                    .warn("auth", format!("Authorize answered with {e}"));
                self.on_authorize_result(&tag, None);
            }
            (Purpose::Boot, Ok(payload)) => self.on_boot_result(rpc::decode_payload(&payload)),
            (Purpose::InstallReport, Ok(_)) => self.install_report_delivered(),
            (Purpose::Boot, Err(e)) => {
                self.log
                    .warn("ocpp", format!("BootNotification failed: {e}"));
                self.retry_boot(None);
            }
            (_, Ok(_)) => {}
            (_, Err(e)) => self
                .log
                .warn("ocpp", format!("{} answered with {e}", f.action)),
        }
    }

    // ----- commands and hardware ----------------------------------------------------------

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Hardware(ev) => {
                let ev = *ev;
                if let HwEvent::NetworkLost | HwEvent::NetworkRestored = ev {
                    let up = ev == HwEvent::NetworkRestored;
                    let _ = self.conn_ctl.send(ConnCtl::Network { up }).await;
                }
                self.on_hardware(ev)
            }
            Command::ConfigGet(get) => {
                let _ = get.reply.send(self.config.get(&get.keys, get.channel));
            }
            Command::ConfigSet(set) => {
                let super::ConfigSet {
                    key,
                    value,
                    channel,
                    reply,
                } = *set;
                let outcome = self.change_config(&key, &value, channel).await;
                let _ = reply.send(outcome);
            }
            Command::Reboot(kind) => {
                self.log
                    .info("boot", format!("reboot requested ({kind:?})"));
                self.stop_transaction(messages::Reason::Reboot, None);
                self.exit = Some(Exit::Reboot(kind));
            }
            Command::Shutdown(reply) => {
                self.log.info("boot", "shutting down");
                self.exit = Some(Exit::Shutdown);
                let _ = reply.send(());
            }
            Command::Snapshot(reply) => {
                let report = &self.link.report;
                let _ = reply.send(Snapshot {
                    online: self.link.online,
                    registration: self.link.registration,
                    connector_status: self.connectors.statuses(),
                    connection: report.state,
                    csms_url: report.url.clone(),
                    online_since: self.link.online_since,
                    failed_attempts: report.failed_attempts,
                    last_error: report.last_error.clone(),
                });
            }
        }
    }

    fn on_hardware(&mut self, ev: HwEvent) {
        match ev {
            HwEvent::Plug => {
                self.log.info("hw", "EV cable plugged in");
                self.on_plug();
            }
            HwEvent::Unplug => {
                self.log.info("hw", "EV cable unplugged");
                self.on_unplug();
            }
            HwEvent::Card { id_tag } => {
                self.log.info("hw", format!("card presented: {id_tag}"));
                self.on_card(id_tag);
            }
            HwEvent::EvDemand { amps } => {
                self.log.debug("hw", format!("EV demand {amps} A"));
            }
            HwEvent::Fault { error_code, info } => {
                self.log.error("hw", format!("fault {error_code}"));
                self.connectors.set_fault(&error_code, info, &self.log);
            }
            HwEvent::ClearFault => {
                self.log.info("hw", "fault cleared");
                self.connectors.fault = None;
            }
            HwEvent::NetworkLost => self.log.warn("hw", "network lost"),
            HwEvent::NetworkRestored => self.log.info("hw", "network restored"),
        }
        self.refresh_status();
    }

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::FirmwareStatus(status) => self.report_firmware(status),
            Internal::FirmwareDownloaded(image) => self.firmware_downloaded(image),
            Internal::FirmwareInstalled(result) => self.firmware_installed(result),
            Internal::DiagnosticsStatus(status) => self.report_diagnostics(status),
        }
    }

    // ----- timers -------------------------------------------------------------------------

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.link.boot_retry_at,
            self.link.heartbeat_at,
            self.metering.sample_at,
            self.metering.aligned_at,
            self.transactions.retry_at,
            self.transactions.pending_start.as_ref().map(|p| p.expires),
            self.reservation_deadline(),
            self.charging_profiles.check_at,
            self.outbox.next_deadline(),
            self.connectors.next_report(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        if self.link.boot_retry_at.is_some_and(|t| t <= now) {
            self.link.boot_retry_at = None;
        }
        if let Some(f) = self.outbox.expire_call(now) {
            if let Some(probe) = &self.opts.probe {
                probe.call(&f.action, f.sent.elapsed(), super::CallOutcome::Timeout);
            }
            self.log.warn(
                "ocpp",
                format!("no answer to {} {} within MessageTimeout", f.action, f.id),
            );
            match f.purpose {
                Purpose::Boot => self.retry_boot(None),
                Purpose::Tx(seq) => self.tx_timed_out(seq),
                Purpose::Authorize(tag) => self.on_authorize_result(&tag, None),
                Purpose::Heartbeat | Purpose::Status | Purpose::InstallReport | Purpose::Other => {}
            }
        }
        if self.link.heartbeat_at.is_some_and(|t| t <= now) {
            self.link.heartbeat_at = None;
            if self.link.accepted() {
                if !self.outbox.is_queued(&Purpose::Heartbeat) {
                    self.outbox
                        .push(messages::HeartbeatRequest {}, Purpose::Heartbeat);
                }
                self.schedule_heartbeat();
            }
        }
        if self.transactions.retry_at.is_some_and(|t| t <= now) {
            self.transactions.retry_at = None;
        }
        self.expire_reservation();
        if self.charging_profiles.check_at.is_some_and(|t| t <= now) {
            self.charging_profiles.check_at = None;
            self.apply_offered_current();
        }
        if self.metering.sample_at.is_some_and(|t| t <= now) {
            self.on_sample_timer();
        }
        if self.metering.aligned_at.is_some_and(|t| t <= now) {
            self.on_aligned_timer();
        }
        self.expire_pending_start(now);
        self.refresh_status();
        self.report_due_statuses(now);
    }

    // ----- helpers ------------------------------------------------------------------------

    /// A sender for the results of background work (the channel is made on first use).
    pub fn internal_tx(&mut self) -> mpsc::Sender<Internal> {
        if let Some(tx) = &self.internal_tx {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(32);
        self.internal_tx = Some(tx.clone());
        self.internal_rx = Some(rx);
        tx
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.opts.clock.now()
    }

    pub fn emit(&self, ev: Event) {
        if let Some(probe) = &self.opts.probe
            && !matches!(ev, Event::Message { .. })
        {
            probe.event(&ev);
        }
        let _ = self.events.send(ev);
    }
}

/// A configuration integer as seconds (negative reads as 0).
pub(super) fn secs(value: i64) -> Duration {
    Duration::from_secs(value.max(0) as u64)
}

/// The next message of a channel that may not exist yet (pending while it does not).
async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}
