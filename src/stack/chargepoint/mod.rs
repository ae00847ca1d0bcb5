//! The charge point: one actor task that owns the charger's state (configuration, connectors,
//! registration, outgoing queue) and speaks OCPP 1.6J to the CSMS through the connection task.
//!
//! Everything the charger does is driven from [`Core::run`]'s single loop: hardware events,
//! frames from the CSMS, commands from the service port, and timers (heartbeat, boot retry,
//! message timeout, status debounce). One task means no locks around charger state and a
//! deterministic order of events, which the paused-clock tests rely on.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use super::clock::SharedClock;
use super::config::{self, ChangeOutcome, Channel, Configuration, Entry};
use super::connection::{self, Backoff, ConnCtl, ConnEvent};
use super::hardware::{Hardware, HwEvent};
use super::logbook::LogBook;
use super::messages;
use super::rpc::{CallError, ErrorCode, Frame};
use super::transport::Endpoint;
use crate::storage;

mod firmware_mgmt;
mod profiles;
mod session;

pub use firmware_mgmt::FirmwareTarget;

pub use session::SUPPORTED_MEASURANDS;
use session::{ActiveTx, AuthSource, PendingStart};

pub use crate::stack::identity::Identity;

/// How to build and run a charge point.
#[derive(Clone)]
pub struct Options {
    pub identity: Identity,
    pub state_dir: PathBuf,
    pub clock: SharedClock,
    pub logbook: LogBook,
    /// Bounds each WebSocket connection attempt.
    pub connect_timeout: Duration,
    pub backoff: Backoff,
    /// Where UpdateFirmware installs images (None: the charger refuses to install).
    pub firmware: Option<FirmwareTarget>,
}

/// Why the core's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// Restart the stack (Reset, or a reboot asked over the service port).
    Reboot(RebootKind),
    /// Stop for good (SIGINT/SIGTERM, end of emulation).
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RebootKind {
    Soft,
    Hard,
    /// Asked over the service port, or after a firmware install.
    Service,
}

/// Registration state from BootNotification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Registration {
    /// No answer yet in this boot.
    Unknown,
    Pending,
    Accepted,
    Rejected,
}

/// Events for observers (the headless JSON output, the TUI's trace, tests).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Event {
    Connection {
        state: &'static str,
        url: Option<String>,
        detail: Option<String>,
    },
    Message {
        direction: &'static str,
        frame: Value,
    },
    Registration {
        status: Registration,
    },
    Status {
        connector_id: u32,
        status: String,
        error_code: String,
    },
    Rebooting {
        kind: RebootKind,
    },
}

/// A snapshot of the charger for dashboards and `info`.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub online: bool,
    pub registration: Registration,
    pub connector_status: Vec<(u32, String, String)>,
}

enum Command {
    Hardware(HwEvent),
    ConfigGet {
        keys: Vec<String>,
        channel: Channel,
        reply: oneshot::Sender<(Vec<Entry>, Vec<String>)>,
    },
    ConfigSet {
        key: String,
        value: String,
        channel: Channel,
        reply: oneshot::Sender<ChangeOutcome>,
    },
    Reboot(RebootKind),
    Shutdown(oneshot::Sender<()>),
    Snapshot(oneshot::Sender<Snapshot>),
}

/// A cloneable handle to a running charge point.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    /// Subscribed before the charge point task started; see [`Handle::subscribe_from_start`].
    from_start: Arc<std::sync::Mutex<Option<broadcast::Receiver<Event>>>>,
}

impl Handle {
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The first call returns a receiver subscribed before the charge point started, so it sees
    /// every event from the first connection attempt on (a plain [`Handle::subscribe`] after
    /// [`spawn`] may miss the first events). Later calls are the same as `subscribe`.
    pub fn subscribe_from_start(&self) -> broadcast::Receiver<Event> {
        self.from_start
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| self.events.subscribe())
    }

    pub async fn hardware(&self, event: HwEvent) {
        let _ = self.tx.send(Command::Hardware(event)).await;
    }

    pub async fn config_get(
        &self,
        keys: Vec<String>,
        channel: Channel,
    ) -> (Vec<Entry>, Vec<String>) {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Command::ConfigGet {
                keys,
                channel,
                reply,
            })
            .await
            .is_err()
        {
            return (Vec::new(), Vec::new());
        }
        rx.await.unwrap_or_default()
    }

    pub async fn config_set(&self, key: String, value: String, channel: Channel) -> ChangeOutcome {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .tx
            .send(Command::ConfigSet {
                key,
                value,
                channel,
                reply,
            })
            .await;
        if sent.is_err() {
            return ChangeOutcome::Rejected("the charger is not running".into());
        }
        rx.await
            .unwrap_or_else(|_| ChangeOutcome::Rejected("the charger stopped".into()))
    }

    pub async fn reboot(&self, kind: RebootKind) {
        let _ = self.tx.send(Command::Reboot(kind)).await;
    }

    /// Stops the charge point cleanly (state persisted) and waits for it.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(reply)).await.is_ok() {
            let _ = rx.await;
        }
    }

    pub async fn snapshot(&self) -> Option<Snapshot> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Snapshot(reply)).await.ok()?;
        rx.await.ok()
    }
}

/// Starts the charge point: it boots, connects, and reboots itself on Reset until shut down.
/// `on_reboot` runs between two boots (the emulator switches firmware slots there) and returns
/// the identity for the next boot.
pub fn spawn<F>(
    opts: Options,
    hardware: Arc<dyn Hardware>,
    mut on_reboot: F,
) -> (Handle, tokio::task::JoinHandle<anyhow::Result<()>>)
where
    F: FnMut(RebootKind) -> Identity + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel(256);
    let (events, from_start) = broadcast::channel(4096);
    let handle = Handle {
        tx,
        events: events.clone(),
        from_start: Arc::new(std::sync::Mutex::new(Some(from_start))),
    };
    let task = tokio::spawn(async move {
        let mut opts = opts;
        loop {
            let core = Core::boot(opts.clone(), hardware.clone(), events.clone())?;
            match core.run(&mut rx).await {
                Exit::Shutdown => return Ok(()),
                Exit::Reboot(kind) => {
                    let _ = events.send(Event::Rebooting { kind });
                    opts.identity = on_reboot(kind);
                }
            }
        }
    });
    (handle, task)
}

/// A reboot waiting for queued messages to be delivered.
#[derive(Debug, Clone, Copy)]
struct DeferredReboot {
    kind: RebootKind,
    /// Reboot anyway at this instant.
    deadline: Instant,
}

/// What a CP-initiated CALL is for, so its answer can be handled.
#[derive(Debug, Clone, PartialEq)]
enum Purpose {
    Boot,
    Heartbeat,
    Status,
    Authorize(String),
    /// A journaled transaction message with this sequence number.
    Tx(u64),
    Other,
}

#[derive(Debug)]
struct Outgoing {
    action: String,
    payload: Value,
    purpose: Purpose,
}

#[derive(Debug)]
struct InFlight {
    id: String,
    action: String,
    purpose: Purpose,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Availability {
    Operative,
    Inoperative,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AvailabilityFile {
    /// Index 0: the whole charger, 1: its connector.
    connectors: [Availability; 2],
}

/// Status bookkeeping per connector (0 = the charger, 1 = the socket).
#[derive(Debug, Clone)]
struct StatusTracker {
    current: (String, String),
    changed_at: DateTime<Utc>,
    reported: Option<(String, String)>,
    report_at: Option<Instant>,
    changed_offline: bool,
}

struct Core {
    opts: Options,
    config: Configuration,
    hw: Arc<dyn Hardware>,
    log: LogBook,
    events: broadcast::Sender<Event>,
    conn_ctl: mpsc::Sender<ConnCtl>,
    conn_out: mpsc::Sender<String>,
    conn_ev: mpsc::Receiver<ConnEvent>,
    conn_task: tokio::task::JoinHandle<()>,
    online: bool,
    online_since: Option<DateTime<Utc>>,
    registration: Registration,
    boot_retry_at: Option<Instant>,
    heartbeat_at: Option<Instant>,
    in_flight: Option<InFlight>,
    queue: VecDeque<Outgoing>,
    next_id: u64,
    availability: AvailabilityFile,
    scheduled_availability: [Option<Availability>; 2],
    plugged: bool,
    fault: Option<(String, Option<String>)>,
    status: [StatusTracker; 2],
    /// SecurityProfile change waiting for the first successful connection (A05.FR.06-08).
    security_change: Option<(u8, u8)>,
    exit: Option<Exit>,
    /// A reboot that first lets what is queued go out (a soft reset's StopTransaction, the
    /// firmware status before an install reboot), until a deadline.
    deferred_reboot: Option<DeferredReboot>,
    boot_nonce: u64,
    journal: super::journal::Journal,
    tx: Option<ActiveTx>,
    pending_start: Option<PendingStart>,
    authorizing: Option<(String, AuthSource, Option<Value>)>,
    auth_cache: super::auth::AuthCache,
    local_list: super::local_list::LocalAuthList,
    profiles: super::smart_charging::ProfileStore,
    /// When the charging limit must be looked at again (next schedule period boundary).
    limit_check_at: Option<Instant>,
    /// A transaction ended and the EV is still plugged in.
    finishing: bool,
    sample_at: Option<Instant>,
    aligned_at: Option<Instant>,
    last_aligned_wh: Option<f64>,
    tx_retry_at: Option<Instant>,
    reservation: Option<profiles::Reservation>,
    transfer_status: profiles::TransferStatus,
    internal_tx: mpsc::Sender<firmware_mgmt::Internal>,
    internal_rx: mpsc::Receiver<firmware_mgmt::Internal>,
    firmware_task: Option<tokio::task::JoinHandle<()>>,
    diagnostics_task: Option<tokio::task::JoinHandle<()>>,
    downloaded_image: Option<Vec<u8>>,
    /// Whether this boot already reported a firmware install that completed with it.
    install_reported: bool,
}

const AVAILABILITY_FILE: &str = "availability.json";

impl Core {
    fn boot(
        opts: Options,
        hw: Arc<dyn Hardware>,
        events: broadcast::Sender<Event>,
    ) -> anyhow::Result<Core> {
        let config = Configuration::open(&opts.state_dir)
            .map_err(|e| anyhow::anyhow!("configuration in {}: {e}", opts.state_dir.display()))?;
        let availability = load_availability(&opts.state_dir);
        let journal =
            super::journal::Journal::open(&opts.state_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        let auth_cache = super::auth::AuthCache::open(&opts.state_dir);
        let leftover_tx = Core::load_tx(&opts.state_dir);
        let reservation = Core::load_reservation(&opts.state_dir);
        let (internal_tx, internal_rx) = mpsc::channel(32);
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
        let tracker = |s: &str| StatusTracker {
            current: (s.to_string(), "NoError".to_string()),
            changed_at: now,
            reported: None,
            report_at: None,
            changed_offline: false,
        };
        let plugged = hw.plugged();
        let log = opts.logbook.clone();
        log.info(
            "boot",
            format!(
                "{} {} serial {} firmware {} booting",
                opts.identity.vendor,
                opts.identity.model,
                opts.identity.serial_number,
                opts.identity.firmware_version
            ),
        );
        let mut core = Core {
            config,
            hw,
            log,
            events,
            conn_ctl: ctl_tx,
            conn_out: out_tx,
            conn_ev: ev_rx,
            conn_task,
            online: false,
            online_since: None,
            registration: Registration::Unknown,
            boot_retry_at: None,
            heartbeat_at: None,
            in_flight: None,
            queue: VecDeque::new(),
            next_id: 0,
            availability,
            scheduled_availability: [None, None],
            plugged,
            fault: None,
            status: [tracker("Available"), tracker("Available")],
            security_change: None,
            exit: None,
            deferred_reboot: None,
            boot_nonce: rand::random::<u32>() as u64,
            journal,
            tx: leftover_tx,
            pending_start: None,
            authorizing: None,
            auth_cache,
            local_list: super::local_list::LocalAuthList::open_or_empty(
                &opts.state_dir,
                super::local_list::ListLimits::default(),
            ),
            profiles: super::smart_charging::ProfileStore::open_or_empty(&opts.state_dir),
            limit_check_at: None,
            finishing: false,
            sample_at: None,
            aligned_at: None,
            last_aligned_wh: None,
            tx_retry_at: None,
            reservation,
            transfer_status: profiles::TransferStatus::default(),
            internal_tx,
            internal_rx,
            firmware_task: None,
            diagnostics_task: None,
            downloaded_image: None,
            install_reported: false,
            opts,
        };
        if core.journal.recovered_torn_bytes > 0 {
            core.log.warn(
                "tx",
                format!(
                    "transaction journal: a record torn by a power loss was discarded ({} bytes)",
                    core.journal.recovered_torn_bytes
                ),
            );
        }
        core.hw.set_offered_current(0.0);
        core.recover_transaction();
        core.expire_reservation();
        core.cancel_reservation_for_free_charging();
        core.schedule_aligned();
        let s0 = core.derive_status(0);
        let s1 = core.derive_status(1);
        core.status[0].current = s0;
        core.status[1].current = s1;
        Ok(core)
    }

    async fn run(mut self, commands: &mut mpsc::Receiver<Command>) -> Exit {
        self.connect_now().await;
        loop {
            if let Some(d) = self.deferred_reboot
                && self.deferred_reboot_due(d)
            {
                self.deferred_reboot = None;
                self.exit = Some(Exit::Reboot(d.kind));
            }
            if let Some(exit) = self.exit {
                // Deliver what is queued (a Reset answer), close with 1001 or 1012, and wait
                // for the CSMS's close before restarting.
                let closing = match exit {
                    Exit::Shutdown => connection::Closing::Shutdown,
                    Exit::Reboot(_) => connection::Closing::Reboot,
                };
                connection::shut_down(
                    self.conn_ctl,
                    self.conn_out,
                    &mut self.conn_ev,
                    &mut self.conn_task,
                    closing,
                )
                .await;
                return exit;
            }
            self.pump().await;
            let deadline = self.next_deadline();
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => self.exit = Some(Exit::Shutdown),
                },
                ev = self.conn_ev.recv() => match ev {
                    Some(ev) => self.on_conn_event(ev).await,
                    None => self.exit = Some(Exit::Shutdown),
                },
                Some(msg) = self.internal_rx.recv() => self.on_internal(msg),
                _ = sleep_until_opt(deadline) => self.on_timers().await,
            }
        }
    }

    /// Reboots once the transaction journal and the message queue are delivered (or nothing
    /// can be delivered: offline, not registered), at the latest after 3 x MessageTimeout.
    fn defer_reboot(&mut self, kind: RebootKind) {
        let wait = self.config.int("MessageTimeout").clamp(1, 3600) as u64 * 3;
        self.deferred_reboot = Some(DeferredReboot {
            kind,
            deadline: Instant::now() + Duration::from_secs(wait),
        });
    }

    fn deferred_reboot_due(&self, d: DeferredReboot) -> bool {
        !self.online
            || self.registration != Registration::Accepted
            || Instant::now() >= d.deadline
            || (self.journal.is_empty() && self.queue.is_empty() && self.in_flight.is_none())
    }

    // ----- connection ---------------------------------------------------------------------

    fn endpoint(&self) -> Endpoint {
        let profile = self.config.security_profile();
        let password_bytes = self
            .config
            .basic_auth_password()
            .map(|p| super::secret::SecretBytes::new(p.expose()));
        Endpoint {
            csms_url: self.config.text("CsmsUrl"),
            charge_point_id: self.config.text("ChargePointId"),
            security_profile: profile,
            basic_password_bytes: password_bytes,
        }
    }

    fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.config.int("WebSocketPingInterval").max(0) as u64)
    }

    async fn connect_now(&mut self) {
        let endpoint = self.endpoint();
        let url = endpoint.url().ok();
        self.emit(Event::Connection {
            state: "connecting",
            url: url.clone(),
            detail: Some(format!("security profile {}", endpoint.security_profile)),
        });
        self.log.info(
            "ocpp",
            format!(
                "connecting to {} (security profile {})",
                url.as_deref().unwrap_or("<invalid URL>"),
                endpoint.security_profile
            ),
        );
        let _ = self
            .conn_ctl
            .send(ConnCtl::Connect {
                endpoint,
                ping_interval: self.ping_interval(),
            })
            .await;
    }

    async fn on_conn_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Connected { url } => {
                self.online = true;
                self.online_since = Some(self.now());
                self.log.info("ocpp", format!("connected to {url}"));
                self.emit(Event::Connection {
                    state: "connected",
                    url: Some(url),
                    detail: None,
                });
                if let Some((old, new)) = self.security_change.take() {
                    self.log.info(
                        "security",
                        format!("connected with security profile {new} (was {old})"),
                    );
                }
                match self.registration {
                    Registration::Accepted => {
                        self.report_offline_changes();
                        self.schedule_heartbeat();
                    }
                    _ => {
                        self.boot_retry_at = None;
                        self.enqueue_boot();
                    }
                }
            }
            ConnEvent::ConnectFailed {
                error,
                auth_failure,
                retry_in,
                attempt,
                ..
            } => {
                self.log.warn(
                    "ocpp",
                    format!(
                        "connection attempt {attempt} failed: {error}; retrying in {:.1} s",
                        retry_in.as_secs_f64()
                    ),
                );
                self.emit(Event::Connection {
                    state: "failed",
                    url: None,
                    detail: Some(error),
                });
                if let Some((old, new)) = self.security_change {
                    // A05.FR.08: fall back to the previous profile when the new one fails.
                    if auth_failure || attempt >= 3 {
                        self.security_change = None;
                        match self.config.revert_security_profile(old) {
                            Ok(()) => {
                                self.log.warn(
                                    "security",
                                    format!(
                                        "security profile {new} failed to connect; falling back to {old}"
                                    ),
                                );
                                self.connect_now().await;
                            }
                            Err(e) => self.log.error(
                                "security",
                                format!("cannot restore security profile {old}: {e}"),
                            ),
                        }
                    }
                }
            }
            ConnEvent::Text(text) => self.on_text(text).await,
            ConnEvent::Disconnected { reason } => {
                self.online = false;
                self.online_since = None;
                self.heartbeat_at = None;
                if let Some(f) = self.in_flight.take() {
                    self.log.debug(
                        "ocpp",
                        format!("{} {} lost with the connection", f.action, f.id),
                    );
                    // A transaction message stays first in the journal and goes again after the
                    // reconnect; a BootNotification is queued again on connect.
                    if let Purpose::Authorize(tag) = f.purpose {
                        self.on_authorize_result(&tag, None);
                    }
                }
                self.queue
                    .retain(|o| !matches!(o.purpose, Purpose::Authorize(_)));
                self.queue
                    .retain(|o| o.purpose != Purpose::Heartbeat && o.purpose != Purpose::Boot);
                self.log.warn("ocpp", format!("disconnected: {reason}"));
                self.emit(Event::Connection {
                    state: "disconnected",
                    url: None,
                    detail: Some(reason),
                });
            }
        }
    }

    // ----- outgoing ---------------------------------------------------------------------

    fn enqueue(&mut self, action: &str, payload: Value, purpose: Purpose) {
        self.queue.push_back(Outgoing {
            action: action.to_string(),
            payload,
            purpose,
        });
    }

    fn enqueue_boot(&mut self) {
        if self.queue.iter().any(|o| o.purpose == Purpose::Boot)
            || self
                .in_flight
                .as_ref()
                .is_some_and(|f| f.purpose == Purpose::Boot)
        {
            return;
        }
        let id = &self.opts.identity;
        let payload = json!({
            "chargePointVendor": id.vendor,
            "chargePointModel": id.model,
            "chargePointSerialNumber": id.serial_number,
            "chargeBoxSerialNumber": id.serial_number,
            "firmwareVersion": id.firmware_version,
        });
        // BootNotification goes before anything else.
        self.queue.push_front(Outgoing {
            action: "BootNotification".into(),
            payload,
            purpose: Purpose::Boot,
        });
    }

    /// Sends the next queued CALL when the line is free (one CP-initiated CALL in flight).
    async fn pump(&mut self) {
        if !self.online || self.in_flight.is_some() {
            return;
        }
        if self.registration == Registration::Accepted {
            // Seed: transaction messages are sent first, even when queued offline.
            if let Some((seq, action, payload)) = self.next_tx_message() {
                self.send_call(action, payload, Purpose::Tx(seq)).await;
                return;
            }
        }
        let index = if self.registration == Registration::Accepted {
            if self.queue.is_empty() {
                return;
            }
            0
        } else {
            // Until accepted only BootNotification may go out.
            match self.queue.iter().position(|o| o.purpose == Purpose::Boot) {
                Some(i) if self.boot_retry_at.is_none() => i,
                _ => return,
            }
        };
        let Some(out) = self.queue.remove(index) else {
            return;
        };
        self.send_call(out.action, out.payload, out.purpose).await;
    }

    async fn send_call(&mut self, action: String, payload: Value, purpose: Purpose) {
        self.next_id += 1;
        let id = format!("{:x}-{}", self.boot_nonce, self.next_id);
        let frame = Frame::Call {
            id: id.clone(),
            action: action.clone(),
            payload,
        };
        let timeout = Duration::from_secs(self.config.int("MessageTimeout").clamp(1, 3600) as u64);
        self.in_flight = Some(InFlight {
            id,
            action,
            purpose,
            deadline: Instant::now() + timeout,
        });
        self.send_frame(frame).await;
    }

    async fn send_frame(&mut self, frame: Frame) {
        self.emit(Event::Message {
            direction: "sent",
            frame: super::rpc::redact(&frame).to_value(),
        });
        let _ = self.conn_out.send(frame.to_text()).await;
    }

    // ----- incoming -----------------------------------------------------------------------

    async fn on_text(&mut self, text: String) {
        let frame = match Frame::parse(&text) {
            Ok(f) => f,
            Err(e) => {
                self.emit(Event::Message {
                    direction: "received",
                    frame: serde_json::from_str(&text)
                        .map(|v| super::rpc::redact_value(&v))
                        .unwrap_or(Value::String(text.chars().take(2048).collect())),
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
        self.emit(Event::Message {
            direction: "received",
            frame: super::rpc::redact(&frame).to_value(),
        });
        match frame {
            Frame::Call {
                id,
                action,
                payload,
            } => {
                let answer = self.on_call(&action, &payload).await;
                let reply = match answer {
                    Ok(payload) => Frame::CallResult { id, payload },
                    Err(error) => Frame::CallError { id, error },
                };
                self.send_frame(reply).await;
                self.after_call(&action).await;
            }
            Frame::CallResult { id, payload } => self.on_result(&id, Ok(payload)).await,
            Frame::CallError { id, error } => self.on_result(&id, Err(error)).await,
        }
    }

    async fn on_result(&mut self, id: &str, result: Result<Value, CallError>) {
        let Some(f) = self.in_flight.take_if(|f| f.id == id) else {
            self.log.warn(
                "ocpp",
                format!("answer to unknown or expired request id {id} ignored"),
            );
            return;
        };
        match (&f.purpose, result) {
            (Purpose::Tx(seq), result) => self.on_tx_result(*seq, result),
            (Purpose::Authorize(tag), Ok(payload)) => self.on_authorize_result(tag, Some(&payload)),
            (Purpose::Authorize(tag), Err(e)) => {
                self.log
                    .warn("auth", format!("Authorize answered with {e}"));
                self.on_authorize_result(tag, None);
            }
            (Purpose::Boot, Ok(payload)) => self.on_boot_result(&payload),
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

    fn on_boot_result(&mut self, payload: &Value) {
        let decoded: Result<messages::BootNotificationResponse, _> =
            super::rpc::decode_payload(payload);
        let resp = match decoded {
            Ok(r) => r,
            Err(e) => {
                self.log
                    .warn("ocpp", format!("invalid BootNotification answer: {e}"));
                self.retry_boot(None);
                return;
            }
        };
        let interval = resp.interval;
        match resp.status {
            messages::RegistrationStatus::Accepted => {
                self.registration = Registration::Accepted;
                self.boot_retry_at = None;
                if interval > 0 {
                    let _ = self
                        .config
                        .set_internal("HeartbeatInterval", &interval.to_string());
                }
                self.log.info(
                    "ocpp",
                    format!("BootNotification accepted, heartbeat every {interval} s"),
                );
                self.emit(Event::Registration {
                    status: Registration::Accepted,
                });
                // Report every connector once after registration.
                for c in 0..2 {
                    self.status[c].reported = None;
                    self.status[c].changed_offline = false;
                    self.status[c].report_at = None;
                    self.queue_status(c);
                }
                self.schedule_heartbeat();
                if !self.install_reported {
                    self.install_reported = true;
                    self.report_pending_install();
                }
            }
            messages::RegistrationStatus::Pending => {
                self.registration = Registration::Pending;
                self.log.info("ocpp", "BootNotification pending");
                self.emit(Event::Registration {
                    status: Registration::Pending,
                });
                self.retry_boot(Some(interval as i64));
            }
            messages::RegistrationStatus::Rejected => {
                self.registration = Registration::Rejected;
                self.log.warn("ocpp", "BootNotification rejected");
                self.emit(Event::Registration {
                    status: Registration::Rejected,
                });
                self.retry_boot(Some(interval as i64));
            }
        }
    }

    fn retry_boot(&mut self, interval: Option<i64>) {
        let secs = match interval {
            Some(i) if i > 0 => i as u64,
            _ => 30,
        };
        self.boot_retry_at = Some(Instant::now() + Duration::from_secs(secs));
        self.enqueue_boot();
    }

    fn schedule_heartbeat(&mut self) {
        let secs = self.config.int("HeartbeatInterval");
        self.heartbeat_at =
            (secs > 0 && self.online).then(|| Instant::now() + Duration::from_secs(secs as u64));
    }

    /// Handles a CALL from the CSMS and returns its CALLRESULT payload or CALLERROR.
    async fn on_call(&mut self, action: &str, payload: &Value) -> Result<Value, CallError> {
        use super::rpc::decode_payload as decode;
        match action {
            "GetConfiguration" => {
                let req: messages::GetConfigurationRequest = decode(payload)?;
                let keys: Vec<String> = req
                    .key
                    .unwrap_or_default()
                    .into_iter()
                    .map(|k| k.as_str().to_string())
                    .collect();
                let max = self.config.int("GetConfigurationMaxKeys").max(1) as usize;
                if keys.len() > max {
                    return Err(CallError::new(
                        ErrorCode::OccurenceConstraintViolation,
                        format!("at most {max} keys per request (GetConfigurationMaxKeys)"),
                    ));
                }
                let (entries, unknown) = self.config.get(&keys, Channel::Ocpp);
                let mut out = serde_json::Map::new();
                if !entries.is_empty() {
                    let list: Vec<Value> = entries
                        .iter()
                        .map(|e| {
                            let mut kv = json!({"key": e.key, "readonly": e.readonly});
                            if let Some(v) = &e.value {
                                kv["value"] = Value::String(v.clone());
                            }
                            kv
                        })
                        .collect();
                    out.insert("configurationKey".into(), Value::Array(list));
                }
                if !unknown.is_empty() {
                    out.insert("unknownKey".into(), json!(unknown));
                }
                Ok(Value::Object(out))
            }
            "ChangeConfiguration" => {
                let req: messages::ChangeConfigurationRequest = decode(payload)?;
                let key = req.key.as_str().to_string();
                let outcome = self
                    .change_config(&key, req.value.as_str(), Channel::Ocpp)
                    .await;
                let status = match outcome {
                    ChangeOutcome::Accepted => "Accepted",
                    ChangeOutcome::RebootRequired => "RebootRequired",
                    ChangeOutcome::Rejected(_) => "Rejected",
                    ChangeOutcome::NotSupported => "NotSupported",
                };
                Ok(json!({ "status": status }))
            }
            "Reset" => {
                let req: messages::ResetRequest = decode(payload)?;
                let kind = match req.kind {
                    messages::ResetType::Soft => RebootKind::Soft,
                    messages::ResetType::Hard => RebootKind::Hard,
                };
                self.log
                    .info("ocpp", format!("{kind:?} reset requested by the CSMS"));
                self.stop_transaction(
                    if kind == RebootKind::Hard {
                        "HardReset"
                    } else {
                        "SoftReset"
                    },
                    None,
                );
                if kind == RebootKind::Soft && self.online && !self.journal.is_empty() {
                    // OCPP 1.6 Reset: a soft reset stops transactions gracefully and sends their
                    // StopTransaction.req before restarting (a hard reset sends it afterwards).
                    self.defer_reboot(kind);
                } else {
                    self.exit = Some(Exit::Reboot(kind));
                }
                Ok(json!({ "status": "Accepted" }))
            }
            "ChangeAvailability" => {
                let req: messages::ChangeAvailabilityRequest = decode(payload)?;
                let connector = req.connector_id as usize;
                if connector > 1 {
                    return Ok(json!({ "status": "Rejected" }));
                }
                let wanted = match req.kind {
                    messages::AvailabilityType::Operative => Availability::Operative,
                    messages::AvailabilityType::Inoperative => Availability::Inoperative,
                };
                let status = self.change_availability(connector, wanted);
                Ok(json!({ "status": status }))
            }
            "ClearCache" => {
                let _req: messages::ClearCacheRequest = decode(payload)?;
                match self.auth_cache.clear() {
                    Ok(()) => {
                        self.log.info("auth", "authorization cache cleared");
                        Ok(json!({ "status": "Accepted" }))
                    }
                    Err(e) => {
                        self.log
                            .error("auth", format!("cannot clear the cache: {e}"));
                        Ok(json!({ "status": "Rejected" }))
                    }
                }
            }
            "RemoteStartTransaction" => {
                let _req: messages::RemoteStartTransactionRequest = decode(payload)?;
                let status = self.remote_start(payload);
                Ok(json!({ "status": status }))
            }
            "RemoteStopTransaction" => {
                let req: messages::RemoteStopTransactionRequest = decode(payload)?;
                let status = self.remote_stop(req.transaction_id as i64);
                Ok(json!({ "status": status }))
            }
            "ReserveNow" => {
                let req: messages::ReserveNowRequest = decode(payload)?;
                let status = self.reserve_now(&req);
                Ok(json!({ "status": status }))
            }
            "CancelReservation" => {
                let req: messages::CancelReservationRequest = decode(payload)?;
                let status = self.cancel_reservation(req.reservation_id as i64);
                Ok(json!({ "status": status }))
            }
            "TriggerMessage" => {
                let req: messages::TriggerMessageRequest = decode(payload)?;
                let status = self.trigger(&req);
                Ok(json!({ "status": status }))
            }
            "SendLocalList" => {
                let req: messages::SendLocalListRequest = decode(payload)?;
                let enabled = self.config.bool("LocalAuthListEnabled");
                let resp = self.local_list.handle(&req, enabled);
                self.log.info(
                    "auth",
                    format!(
                        "SendLocalList {:?} version {}: {}",
                        req.update_type, req.list_version, resp.status
                    ),
                );
                Ok(super::rpc::encode_payload(&resp))
            }
            "GetLocalListVersion" => {
                let _req: messages::GetLocalListVersionRequest = decode(payload)?;
                let enabled = self.config.bool("LocalAuthListEnabled");
                Ok(super::rpc::encode_payload(
                    &self.local_list.version_response(enabled),
                ))
            }
            "SetChargingProfile" => {
                let req: messages::SetChargingProfileRequest = decode(payload)?;
                let ctx = self.smart_context();
                let resp = self.profiles.handle_set(&req, &ctx);
                self.log.info(
                    "smart",
                    format!(
                        "SetChargingProfile {} on connector {}: {}",
                        req.cs_charging_profiles.charging_profile_id, req.connector_id, resp.status
                    ),
                );
                self.apply_offered_current();
                Ok(super::rpc::encode_payload(&resp))
            }
            "ClearChargingProfile" => {
                let req: messages::ClearChargingProfileRequest = decode(payload)?;
                let resp = self.profiles.handle_clear(&req);
                self.apply_offered_current();
                Ok(super::rpc::encode_payload(&resp))
            }
            "GetCompositeSchedule" => {
                let req: messages::GetCompositeScheduleRequest = decode(payload)?;
                let tx = self.smart_tx();
                let unlimited = messages::Decimal1::new(session::HARDWARE_MAX_AMPS)
                    .unwrap_or_else(|_| messages::Decimal1::from_tenths(320));
                let resp = self
                    .profiles
                    .handle_composite(&req, tx, self.now(), unlimited);
                Ok(super::rpc::encode_payload(&resp))
            }
            "UpdateFirmware" => {
                let req: messages::UpdateFirmwareRequest = decode(payload)?;
                self.update_firmware(&req);
                Ok(json!({}))
            }
            "GetDiagnostics" => {
                let req: messages::GetDiagnosticsRequest = decode(payload)?;
                match self.get_diagnostics(&req) {
                    Some(name) => Ok(json!({ "fileName": name })),
                    None => Ok(json!({})),
                }
            }
            "UnlockConnector" => {
                let req: messages::UnlockConnectorRequest = decode(payload)?;
                let status = self.unlock_connector(req.connector_id as i64);
                Ok(json!({ "status": status }))
            }
            "DataTransfer" => {
                let req: messages::DataTransferRequest = decode(payload)?;
                let status = if req.vendor_id.as_str() == self.opts.identity.vendor {
                    "UnknownMessageId"
                } else {
                    "UnknownVendorId"
                };
                Ok(json!({ "status": status }))
            }
            other if messages::SECURITY_WHITEPAPER_ACTIONS.contains(&other) => Err(CallError::new(
                ErrorCode::NotSupported,
                format!("{other} is not supported by this charger"),
            )),
            other if messages::CSMS_INITIATED.contains(&other) => Err(CallError::new(
                ErrorCode::NotSupported,
                format!("{other} is not supported yet"),
            )),
            other => Err(CallError::new(
                ErrorCode::NotImplemented,
                format!("unknown action {other}"),
            )),
        }
    }

    /// Work that must happen after the answer to a CALL was sent.
    async fn after_call(&mut self, _action: &str) {}

    async fn change_config(&mut self, key: &str, value: &str, channel: Channel) -> ChangeOutcome {
        let old_profile = self.config.security_profile();
        let outcome = self.config.change(key, value, channel);
        let shown =
            if config::spec(key).is_some_and(|s| matches!(s.access, config::Access::WriteOnly)) {
                crate::stack::secret::REDACTED.to_string()
            } else {
                value.to_string()
            };
        self.log.info(
            "config",
            format!("{key} = {shown}: {}", describe_outcome(&outcome)),
        );
        if matches!(
            outcome,
            ChangeOutcome::Accepted | ChangeOutcome::RebootRequired
        ) {
            self.apply_config_change(key, old_profile).await;
        }
        outcome
    }

    async fn apply_config_change(&mut self, key: &str, old_profile: u8) {
        match key {
            "HeartbeatInterval" => self.schedule_heartbeat(),
            "MeterValueSampleInterval" => self.schedule_sampling(),
            "FreeCharging" => self.cancel_reservation_for_free_charging(),
            "ClockAlignedDataInterval" => self.schedule_aligned(),
            "WebSocketPingInterval" => {
                let _ = self
                    .conn_ctl
                    .send(ConnCtl::SetPingInterval(self.ping_interval()))
                    .await;
            }
            "SecurityProfile" => {
                let new = self.config.security_profile();
                if new != old_profile {
                    self.security_change = Some((old_profile, new));
                    self.log.info(
                        "security",
                        format!("security profile {old_profile} -> {new}: reconnecting"),
                    );
                    self.connect_now().await;
                }
            }
            // CsmsUrl, ChargePointId and BasicAuthPassword answer RebootRequired: they take
            // effect at the next boot, so a provisioning run does not reconnect per key.
            "AuthorizationKey" if self.config.security_profile() >= 1 => {
                self.connect_now().await;
            }
            _ => {}
        }
    }

    fn change_availability(&mut self, connector: usize, wanted: Availability) -> &'static str {
        if self.tx.is_some() && wanted == Availability::Inoperative {
            self.scheduled_availability[connector] = Some(wanted);
            return "Scheduled";
        }
        self.scheduled_availability[connector] = None;
        self.set_availability(connector, wanted)
    }

    fn set_availability(&mut self, connector: usize, wanted: Availability) -> &'static str {
        if connector == 0 {
            self.availability.connectors = [wanted, wanted];
        } else {
            self.availability.connectors[connector] = wanted;
        }
        if let Err(e) = save_availability(&self.opts.state_dir, &self.availability) {
            self.log
                .error("ocpp", format!("cannot persist availability: {e}"));
            return "Rejected";
        }
        self.refresh_status();
        "Accepted"
    }

    // ----- commands and hardware ----------------------------------------------------------

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Hardware(ev) => self.on_hardware(ev),
            Command::ConfigGet {
                keys,
                channel,
                reply,
            } => {
                let _ = reply.send(self.config.get(&keys, channel));
            }
            Command::ConfigSet {
                key,
                value,
                channel,
                reply,
            } => {
                let outcome = self.change_config(&key, &value, channel).await;
                let _ = reply.send(outcome);
            }
            Command::Reboot(kind) => {
                self.log
                    .info("boot", format!("reboot requested ({kind:?})"));
                self.stop_transaction("Reboot", None);
                self.exit = Some(Exit::Reboot(kind));
            }
            Command::Shutdown(reply) => {
                self.log.info("boot", "shutting down");
                self.exit = Some(Exit::Shutdown);
                let _ = reply.send(());
            }
            Command::Snapshot(reply) => {
                let _ = reply.send(Snapshot {
                    online: self.online,
                    registration: self.registration,
                    connector_status: (0..2)
                        .map(|c| {
                            (
                                c as u32,
                                self.status[c].current.0.clone(),
                                self.status[c].current.1.clone(),
                            )
                        })
                        .collect(),
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
                self.fault = Some((error_code, info));
            }
            HwEvent::ClearFault => {
                self.log.info("hw", "fault cleared");
                self.fault = None;
            }
        }
        self.refresh_status();
    }

    // ----- status notifications ---------------------------------------------------------

    fn derive_status(&self, connector: usize) -> (String, String) {
        let error = self
            .fault
            .as_ref()
            .map(|f| f.0.clone())
            .unwrap_or_else(|| "NoError".to_string());
        if self.fault.is_some() {
            return ("Faulted".into(), error);
        }
        if (self.availability.connectors[connector] == Availability::Inoperative
            || self.availability.connectors[0] == Availability::Inoperative)
            && !(connector == 1 && self.tx.is_some())
        {
            return ("Unavailable".into(), error);
        }
        if connector == 1 {
            if let Some(tx) = &self.tx {
                let m = self.hw.meter();
                let status = if tx.deauthorized || m.offered_a <= 0.0 {
                    "SuspendedEVSE"
                } else if m.current_a[0] <= 0.0 {
                    "SuspendedEV"
                } else {
                    "Charging"
                };
                return (status.into(), error);
            }
            if self.finishing && self.plugged {
                return ("Finishing".into(), error);
            }
            if self.reservation.is_some() {
                return ("Reserved".into(), error);
            }
            if self.plugged || self.pending_start.is_some() || self.authorizing.is_some() {
                return ("Preparing".into(), error);
            }
        }
        ("Available".into(), error)
    }

    fn refresh_status(&mut self) {
        for c in 0..2 {
            let new = self.derive_status(c);
            if new == self.status[c].current {
                continue;
            }
            self.status[c].current = new.clone();
            self.status[c].changed_at = self.now();
            self.emit(Event::Status {
                connector_id: c as u32,
                status: new.0.clone(),
                error_code: new.1.clone(),
            });
            if self.status[c].reported.as_ref() == Some(&new) {
                self.status[c].report_at = None;
                continue;
            }
            if !self.online || self.registration != Registration::Accepted {
                // Seed: a transition while offline is sent with the time the charger came
                // online; an error status is not queued while offline.
                self.status[c].changed_offline = new.1 == "NoError";
                self.status[c].report_at = None;
                continue;
            }
            let min = self.config.int("MinimumStatusDuration").max(0) as u64;
            if min == 0 {
                self.queue_status(c);
            } else {
                self.status[c].report_at = Some(Instant::now() + Duration::from_secs(min));
            }
        }
    }

    fn queue_status(&mut self, c: usize) {
        let (status, error) = self.status[c].current.clone();
        let timestamp = self.status[c].changed_at;
        self.status[c].reported = Some((status.clone(), error.clone()));
        self.status[c].report_at = None;
        let mut payload = json!({
            "connectorId": c,
            "status": status,
            "errorCode": error,
            "timestamp": fmt_time(timestamp),
        });
        if let Some((_, Some(info))) = &self.fault
            && error != "NoError"
        {
            payload["info"] = Value::String(info.chars().take(50).collect());
        }
        self.enqueue("StatusNotification", payload, Purpose::Status);
    }

    fn report_offline_changes(&mut self) {
        let online_at = self.online_since.unwrap_or_else(|| self.now());
        for c in 0..2 {
            if std::mem::take(&mut self.status[c].changed_offline)
                && self.status[c].reported.as_ref() != Some(&self.status[c].current)
            {
                self.status[c].changed_at = online_at;
                self.queue_status(c);
            }
        }
    }

    // ----- timers -----------------------------------------------------------------------

    fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |d| d.min(t)));
            }
        };
        consider(self.boot_retry_at);
        consider(self.sample_at);
        consider(self.aligned_at);
        consider(self.tx_retry_at);
        consider(self.pending_start.as_ref().map(|p| p.expires));
        consider(self.reservation_deadline());
        consider(self.limit_check_at);
        consider(self.heartbeat_at);
        consider(self.in_flight.as_ref().map(|f| f.deadline));
        consider(self.deferred_reboot.map(|d| d.deadline));
        for s in &self.status {
            consider(s.report_at);
        }
        d
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        if self.boot_retry_at.is_some_and(|t| t <= now) {
            self.boot_retry_at = None;
        }
        if self.in_flight.as_ref().is_some_and(|f| f.deadline <= now)
            && let Some(f) = self.in_flight.take()
        {
            self.log.warn(
                "ocpp",
                format!("no answer to {} {} within MessageTimeout", f.action, f.id),
            );
            match f.purpose {
                Purpose::Boot => self.retry_boot(None),
                Purpose::Tx(seq) => {
                    if let Some(entry) = self.journal.front().cloned()
                        && entry.seq == seq
                    {
                        self.tx_attempt_failed(&entry, "no answer within MessageTimeout");
                    }
                }
                Purpose::Authorize(tag) => self.on_authorize_result(&tag, None),
                _ => {}
            }
        }
        if self.heartbeat_at.is_some_and(|t| t <= now) {
            self.heartbeat_at = None;
            if self.online && self.registration == Registration::Accepted {
                if !self.queue.iter().any(|o| o.purpose == Purpose::Heartbeat) {
                    self.enqueue("Heartbeat", json!({}), Purpose::Heartbeat);
                }
                self.schedule_heartbeat();
            }
        }
        if self.tx_retry_at.is_some_and(|t| t <= now) {
            self.tx_retry_at = None;
        }
        self.expire_reservation();
        if self.limit_check_at.is_some_and(|t| t <= now) {
            self.limit_check_at = None;
            self.apply_offered_current();
        }
        if self.sample_at.is_some_and(|t| t <= now) {
            self.on_sample_timer();
        }
        if self.aligned_at.is_some_and(|t| t <= now) {
            self.on_aligned_timer();
        }
        if self
            .pending_start
            .as_ref()
            .is_some_and(|p| p.expires <= now)
            && let Some(p) = self.pending_start.take()
        {
            self.log.info(
                "tx",
                format!(
                    "{}: no EV plugged in within ConnectionTimeOut, cancelled",
                    p.id_tag
                ),
            );
        }
        self.refresh_status();
        for c in 0..2 {
            if self.status[c].report_at.is_some_and(|t| t <= now) {
                self.queue_status(c);
            }
        }
    }

    // ----- helpers ------------------------------------------------------------------------

    fn now(&self) -> DateTime<Utc> {
        self.opts.clock.now()
    }

    fn emit(&self, ev: Event) {
        let _ = self.events.send(ev);
    }
}

fn describe_outcome(o: &ChangeOutcome) -> String {
    match o {
        ChangeOutcome::Accepted => "accepted".into(),
        ChangeOutcome::RebootRequired => "accepted, reboot required".into(),
        ChangeOutcome::Rejected(why) => format!("rejected ({why})"),
        ChangeOutcome::NotSupported => "not supported".into(),
    }
}

/// OCPP timestamps: RFC 3339 UTC with milliseconds and `Z`.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn load_availability(dir: &std::path::Path) -> AvailabilityFile {
    storage::read_optional(&dir.join(AVAILABILITY_FILE))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(AvailabilityFile {
            connectors: [Availability::Operative, Availability::Operative],
        })
}

fn save_availability(dir: &std::path::Path, a: &AvailabilityFile) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(a).map_err(std::io::Error::other)?;
    storage::write_atomic(&dir.join(AVAILABILITY_FILE), &bytes)
}
