//! The charge point: one actor task that owns the charger's state and speaks OCPP 1.6J to the
//! CSMS through the connection task. This file is its public surface: [`spawn`], the [`Handle`],
//! the observer [`Event`]s and the [`Options`].
//!
//! Inside, `actor` runs the one loop (hardware events, CSMS frames, service-port commands,
//! timers, results of background work) and dispatches each CSMS CALL, decoded with
//! [`CsmsCall::decode`](crate::stack::messages::CsmsCall::decode), to the feature that owns it:
//! `registration` (connection, BootNotification, heartbeat), `outbox` (CP-initiated CALLs, ids,
//! timeouts, deferred reboot), `connectors` (availability and status notifications),
//! `metering`, `authorization`, `transactions`, `reservations`, `trigger`, `charging_profile`
//! (smart charging), `configuration`, `firmware` and `diagnostics`. One task means no locks around charger state and a deterministic order of
//! events, which the paused-clock tests rely on.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::clock::SharedClock;
use super::config::{ChangeOutcome, Channel, Entry};
use super::connection::Backoff;
use super::hardware::{Hardware, HwEvent};
use super::journal::Durability;
use super::logbook::LogBook;
use super::messages::{ChargePointErrorCode, ChargePointStatus};
use super::transport::ConnectFailure;

mod actor;
mod authorization;
mod charging_profile;
mod configuration;
mod connectors;
mod diagnostics;
mod firmware;
mod metering;
mod outbox;
mod registration;
mod reservations;
mod timestamps;
mod transactions;
mod trigger;

pub use connectors::ConnectorId;
pub use firmware::FirmwareTarget;

pub use crate::stack::identity::Identity;

/// How to build and run a charge point. Cloning is cheap: the shared parts are `Arc`s.
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
    /// Slots of the observer [`Event`] channel: [`EVENTS_SINGLE`] for one emulated charger
    /// whose every event is shown, [`EVENTS_FLEET`] for many charge points in one process.
    pub event_capacity: usize,
    /// How the transaction journal's records become durable: fsync per record for one
    /// charger, a committer shared by a fleet.
    pub journal: Durability,
    /// Told what happens as it happens, without events being built (a fleet's counters).
    pub probe: Option<Arc<dyn Probe>>,
    /// The charger's own record of its last OCPP frames (None: it keeps none, as in a fleet).
    pub trace: Option<FrameTrace>,
}

/// One OCPP frame in the charger's trace, secrets redacted.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRecord {
    /// When it went out or came in, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub direction: Direction,
    /// The frame as JSON text.
    pub frame: String,
}

/// The last frames the charger sent and received, kept from power-on by the charge point
/// itself (not through the event channel, so no slow observer can make it lose one), across
/// its reboots.
#[derive(Debug, Clone)]
pub struct FrameTrace {
    records: Arc<std::sync::Mutex<std::collections::VecDeque<TraceRecord>>>,
    capacity: usize,
}

impl FrameTrace {
    /// A trace of the last `capacity` frames.
    pub fn new(capacity: usize) -> FrameTrace {
        FrameTrace {
            records: Arc::new(std::sync::Mutex::new(
                std::collections::VecDeque::with_capacity(capacity),
            )),
            capacity: capacity.max(1),
        }
    }

    pub fn push(&self, record: TraceRecord) {
        let mut records = crate::sync::lock(&self.records);
        if records.len() == self.capacity {
            records.pop_front();
        }
        records.push_back(record);
    }

    /// The frames kept, oldest first.
    pub fn records(&self) -> Vec<TraceRecord> {
        crate::sync::lock(&self.records).iter().cloned().collect()
    }
}

/// How a CALL of the charge point ended, as [`Probe::call`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// Answered with a CALLRESULT.
    Result,
    /// Answered with a CALLERROR.
    Error,
    /// No answer within MessageTimeout.
    Timeout,
}

/// An observer called by the charge point's actor as things happen, for counters kept across
/// many charge points (a fleet's summary). Unlike [`Event`]s nothing is built or queued for it:
/// calls are made on the actor's task and must be cheap (atomics, no I/O, no locks held long).
pub trait Probe: Send + Sync {
    /// Every observer event except [`Event::Message`] (frames come through [`Probe::frame`]),
    /// also when nobody subscribed to events.
    fn event(&self, event: &Event);
    /// A frame went out or came in (the frame itself is not built for the probe).
    fn frame(&self, direction: Direction);
    /// A CALL of the charge point ended after `elapsed` (from sending it).
    fn call(&self, action: &str, elapsed: Duration, outcome: CallOutcome);
}

/// Observer channel size for a single charger watched event by event (the TUI, `--json`).
pub const EVENTS_SINGLE: usize = 4096;
/// Observer channel size for a charge point among many: a slow observer loses old events.
pub const EVENTS_FLEET: usize = 16;

/// Why the actor's loop ended.
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

/// State of the connection to the CSMS, as [`Event::Connection`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    Connecting,
    Connected,
    /// One connection attempt failed; another follows after the backoff.
    Failed,
    Disconnected,
}

impl ConnectionState {
    /// The name as events serialise it (`"connecting"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Failed => "failed",
            ConnectionState::Disconnected => "disconnected",
        }
    }
}

/// Which way an OCPP frame went, as [`Event::Message`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Sent,
    Received,
}

/// Events for observers (the headless JSON output, the TUI's trace, tests).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Event {
    Connection {
        state: ConnectionState,
        url: Option<String>,
        detail: Option<String>,
        /// Why a connection attempt failed (state `failed` only): `dns`, `tcp_refused`,
        /// `tcp_timeout`, `tls`, `http_status`, `subprotocol`, ... Absent from the JSON otherwise.
        #[serde(skip_serializing_if = "Option::is_none")]
        failure: Option<ConnectFailure>,
        /// The HTTP status of a refused WebSocket upgrade (failure `http_status` only).
        #[serde(skip_serializing_if = "Option::is_none")]
        http_status: Option<u16>,
    },
    Message {
        direction: Direction,
        frame: Value,
    },
    Registration {
        status: Registration,
    },
    Status {
        connector_id: u32,
        status: ChargePointStatus,
        error_code: ChargePointErrorCode,
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
    pub connector_status: Vec<(u32, ChargePointStatus, ChargePointErrorCode)>,
    /// The connection to the CSMS now; `None` before the first attempt of this boot.
    pub connection: Option<ConnectionState>,
    /// The URL of the current or last connection attempt (never with credentials).
    pub csms_url: Option<String>,
    /// When the current connection was made.
    pub online_since: Option<chrono::DateTime<chrono::Utc>>,
    /// Connection attempts failed in a row since the last successful one.
    pub failed_attempts: u32,
    /// The last failed connection attempt of this boot, kept after a later success.
    pub last_error: Option<ConnectError>,
}

/// A failed connection attempt, as the charger saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectError {
    pub failure: ConnectFailure,
    /// The HTTP status of a refused WebSocket upgrade (401: wrong AuthorizationKey or charge
    /// point id; 404: unknown charge point id or path).
    pub http_status: Option<u16>,
    /// The error text (never with credentials).
    pub detail: String,
    /// When the attempt failed (the charger's clock).
    pub at: chrono::DateTime<chrono::Utc>,
}

/// What a [`Handle`] asks of the actor. Large requests are boxed: the channel's slots, made up
/// front, are as large as its largest message.
enum Command {
    Hardware(Box<HwEvent>),
    ConfigGet(Box<ConfigGet>),
    ConfigSet(Box<ConfigSet>),
    Reboot(RebootKind),
    Shutdown(oneshot::Sender<()>),
    Snapshot(oneshot::Sender<Snapshot>),
}

struct ConfigGet {
    keys: Vec<String>,
    channel: Channel,
    reply: oneshot::Sender<(Vec<Entry>, Vec<String>)>,
}

struct ConfigSet {
    key: String,
    value: String,
    channel: Channel,
    reply: oneshot::Sender<ChangeOutcome>,
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
        crate::sync::lock(&self.from_start)
            .take()
            .unwrap_or_else(|| self.events.subscribe())
    }

    pub async fn hardware(&self, event: HwEvent) {
        let _ = self.tx.send(Command::Hardware(Box::new(event))).await;
    }

    pub async fn config_get(
        &self,
        keys: Vec<String>,
        channel: Channel,
    ) -> (Vec<Entry>, Vec<String>) {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Command::ConfigGet(Box::new(ConfigGet {
                keys,
                channel,
                reply,
            })))
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
            .send(Command::ConfigSet(Box::new(ConfigSet {
                key,
                value,
                channel,
                reply,
            })))
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
    let (events, from_start) = broadcast::channel(opts.event_capacity.max(1));
    let handle = Handle {
        tx,
        events: events.clone(),
        from_start: Arc::new(std::sync::Mutex::new(Some(from_start))),
    };
    // With a group commit the other state documents join it too (see `storage::Batch`).
    let documents = match &opts.journal {
        Durability::Group(committer) => Some(committer.documents()),
        Durability::PerRecord => None,
    };
    let run = async move {
        let mut opts = Arc::new(opts);
        loop {
            let charge_point =
                actor::ChargePoint::boot(opts.clone(), hardware.clone(), events.clone())?;
            match charge_point.run(&mut rx).await {
                Exit::Shutdown => return Ok(()),
                Exit::Reboot(kind) => {
                    let event = Event::Rebooting { kind };
                    if let Some(probe) = &opts.probe {
                        probe.event(&event);
                    }
                    let _ = events.send(event);
                    // The previous boot's state is gone, so this changes the one copy.
                    Arc::make_mut(&mut opts).identity = on_reboot(kind);
                }
            }
        }
    };
    let task = match documents {
        Some(batch) => tokio::spawn(crate::storage::batched(batch, run)),
        None => tokio::spawn(run),
    };
    (handle, task)
}

/// OCPP timestamps: RFC 3339 UTC with milliseconds and `Z`.
pub fn fmt_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_messages_stay_small() {
        // tokio's mpsc channels allocate a block of 32 slots up front, each as large as the
        // message type: a fleet holds several such channels per charge point.
        use crate::stack::connection::{ConnCtl, ConnEvent};
        assert!(
            std::mem::size_of::<Command>() <= 16,
            "{}",
            std::mem::size_of::<Command>()
        );
        assert!(
            std::mem::size_of::<ConnCtl>() <= 32,
            "{}",
            std::mem::size_of::<ConnCtl>()
        );
        assert!(
            std::mem::size_of::<ConnEvent>() <= 32,
            "{}",
            std::mem::size_of::<ConnEvent>()
        );
    }

    #[test]
    fn events_serialise_states_and_directions_as_before() {
        for state in [
            ConnectionState::Connecting,
            ConnectionState::Connected,
            ConnectionState::Failed,
            ConnectionState::Disconnected,
        ] {
            let v = serde_json::to_value(Event::Connection {
                state,
                url: None,
                detail: None,
                failure: None,
                http_status: None,
            })
            .unwrap();
            assert_eq!(v["data"]["state"], state.as_str());
            assert_eq!(
                v["data"].as_object().map(|o| o.len()),
                Some(3),
                "no failure fields unless an attempt failed: {v}"
            );
        }
        let v = serde_json::to_value(Event::Connection {
            state: ConnectionState::Failed,
            url: None,
            detail: Some("refused with HTTP status 401".into()),
            failure: Some(ConnectFailure::HttpStatus),
            http_status: Some(401),
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "connection", "data": {"state": "failed", "url": null,
                "detail": "refused with HTTP status 401", "failure": "http_status", "http_status": 401}})
        );
        let v = serde_json::to_value(Event::Message {
            direction: Direction::Sent,
            frame: Value::Null,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "message", "data": {"direction": "sent", "frame": null}})
        );
        let v = serde_json::to_value(Event::Status {
            connector_id: 1,
            status: ChargePointStatus::SuspendedEvse,
            error_code: ChargePointErrorCode::NoError,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "status", "data":
                {"connector_id": 1, "status": "SuspendedEVSE", "error_code": "NoError"}})
        );
    }
}
