//! The seam to the data sources: the runtime hands each [`Effect`] to a [`Backend`], which
//! answers with [`Msg`]s through [`Events`]. [`super::live::LiveBackend`] plugs in the serial
//! link client and the emulator; [`fake::FakeBackend`] serves tests and demos.
//!
//! What the TUI expects back for each effect:
//!
//! | effect | messages |
//! | --- | --- |
//! | `ListPorts` | `PortsListed` (or `Error`) |
//! | `Connect` / `StartEmulator` | `Connected`, then a stream of `Log`, `LinesDropped`, `Status`, `Trace` (emulator); `LinkLost` when the session ends by itself |
//! | `Disconnect` | nothing; no message of the old session may follow |
//! | `ReadConfig { request }` | `ConfigRead { request, .. }` with the same `request` |
//! | `ApplyConfig` | one `ConfigApplied` with an outcome per key, in one go |
//! | `LoadProfile` | `ProfileLoaded` (keys, current and new values) or `Error` naming the line |
//! | `InspectImage { request }` | `ImageInspected { request, .. }` or `Error` (context mentions "image") |
//! | `StartFlash` | `FlashProgress`…, then `FlashFinished` or `FlashFailed` |
//! | `Reboot` | `LinkLost`, then `Connected` with the running version |
//! | `Hardware` | `Status` (and the resulting `Trace` frames) |
//!
//! `ExportLogs` and `Quit` are handled by the runtime itself. Charger log lines go through
//! [`Events::log`], which never blocks and turns lines it cannot queue into a dropped marker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

use super::msg::{Effect, Msg};
use crate::stack::logbook::LogRecord;

/// Work the runtime spawns and supervises (a panic in it ends the TUI cleanly).
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where a backend sends what happened. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl Events {
    /// A bounded channel of `capacity` messages.
    pub fn channel(capacity: usize) -> (Events, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Events {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            rx,
        )
    }

    /// Sends a message in order, waiting for room. Returns false once the TUI has gone.
    pub async fn send(&self, msg: Msg) -> bool {
        self.tx.send(msg).await.is_ok()
    }

    /// Sends without waiting; false if the queue is full or the TUI has gone.
    pub fn try_send(&self, msg: Msg) -> bool {
        self.tx.try_send(msg).is_ok()
    }

    /// Queues a charger log line without ever blocking the producer. Lines that do not fit are
    /// counted and reported as one [`Msg::LinesDropped`] ahead of the next line that fits.
    pub fn log(&self, record: LogRecord) {
        let lost = self.dropped.swap(0, Ordering::AcqRel);
        if lost > 0 && !self.try_send(Msg::LinesDropped(lost)) {
            self.dropped.fetch_add(lost + 1, Ordering::AcqRel);
            return;
        }
        if !self.try_send(Msg::Log(record)) {
            self.dropped.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Log lines lost and not yet reported.
    pub fn pending_drops(&self) -> u64 {
        self.dropped.load(Ordering::Acquire)
    }
}

/// Carries out effects for the runtime.
pub trait Backend: Send + 'static {
    /// Starts one effect. Quick work may send its messages right away; long work is returned as
    /// a [`Task`] for the runtime to spawn. Failures are reported as [`Msg::Error`] or
    /// [`Msg::LinkLost`], never by panicking.
    fn perform(&mut self, effect: Effect, events: &Events) -> Option<Task>;
}

pub mod fake {
    //! A scripted charger for tests and demos: answers every effect with plausible messages
    //! and records what it was asked to do.

    use super::*;
    use crate::stack::logbook::Level;
    use crate::tui::msg::{
        ApplyOutcome, ChargerInfo, ChargerStatus, ConfigEntry, FlashProgress, HardwareAction,
        Identity, ImageInfo, OcppConnection, PortInfo, SignatureStatus, Slot, UsbIds, ValueType,
    };
    use std::sync::Mutex;
    use std::time::Duration;

    /// Records effects; answers like a small charger.
    #[derive(Debug, Clone, Default)]
    pub struct FakeBackend {
        performed: Arc<Mutex<Vec<Effect>>>,
        firmware: Arc<Mutex<String>>,
    }

    impl FakeBackend {
        pub fn new() -> FakeBackend {
            FakeBackend {
                performed: Arc::default(),
                firmware: Arc::new(Mutex::new("2.1.0".to_string())),
            }
        }

        /// Every effect performed so far, in order (shared with clones).
        pub fn performed(&self) -> Vec<Effect> {
            self.performed
                .lock()
                .map(|v| v.clone())
                .unwrap_or_else(|e| e.into_inner().clone())
        }

        fn identity(&self, emulated: bool) -> ChargerInfo {
            let version = self
                .firmware
                .lock()
                .map(|v| v.clone())
                .unwrap_or_else(|e| e.into_inner().clone());
            ChargerInfo {
                identity: Identity {
                    vendor: "Zaptec".into(),
                    model: "Go".into(),
                    serial_number: "ZAP000123".into(),
                    firmware_version: version,
                },
                active_slot: Slot::A,
                inactive_version: Some("2.0.4".into()),
                uptime: Duration::from_secs(3_725),
                emulated,
            }
        }

        pub fn ports() -> Vec<PortInfo> {
            vec![
                PortInfo {
                    path: "/dev/ttyS0".into(),
                    usb: None,
                    manufacturer: None,
                    product: None,
                    likely_charger: false,
                },
                PortInfo {
                    path: "/dev/ttyUSB0".into(),
                    usb: Some(UsbIds {
                        vid: 0x0403,
                        pid: 0x6015,
                    }),
                    manufacturer: Some("FTDI".into()),
                    product: Some("Zaptec service cable".into()),
                    likely_charger: true,
                },
            ]
        }

        pub fn config() -> Vec<ConfigEntry> {
            let e = |key: &str, value: Option<&str>, t: ValueType, ro: bool, wo: bool, rb: bool| {
                ConfigEntry {
                    key: key.into(),
                    value: value.map(str::to_string),
                    readonly: ro,
                    write_only: wo,
                    value_type: t,
                    reboot_required: rb,
                }
            };
            vec![
                e(
                    "AuthorizationKey",
                    None,
                    ValueType::String,
                    false,
                    true,
                    false,
                ),
                e(
                    "AuthorizationCacheEnabled",
                    Some("true"),
                    ValueType::Boolean,
                    false,
                    false,
                    false,
                ),
                e(
                    "ConnectionTimeOut",
                    Some("60"),
                    ValueType::Integer,
                    false,
                    false,
                    false,
                ),
                e(
                    "FreeCharging",
                    Some("false"),
                    ValueType::Boolean,
                    false,
                    false,
                    false,
                ),
                e(
                    "HeartbeatInterval",
                    Some("3600"),
                    ValueType::Integer,
                    false,
                    false,
                    false,
                ),
                e(
                    "MeterValuesSampledData",
                    Some("Energy.Active.Import.Register"),
                    ValueType::List,
                    false,
                    false,
                    false,
                ),
                e(
                    "NumberOfConnectors",
                    Some("1"),
                    ValueType::Integer,
                    true,
                    false,
                    false,
                ),
                e(
                    "SecurityProfile",
                    Some("0"),
                    ValueType::Integer,
                    false,
                    false,
                    true,
                ),
                e(
                    "SupportedFeatureProfiles",
                    Some(
                        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger",
                    ),
                    ValueType::List,
                    true,
                    false,
                    false,
                ),
            ]
        }

        pub fn status(connector: &str, tx: Option<i32>, drawn: f64) -> ChargerStatus {
            ChargerStatus {
                connector: connector.into(),
                ocpp: OcppConnection::Connected {
                    boot_accepted: true,
                },
                csms_url: Some("ws://127.0.0.1:9000/ocpp/ZAP000123".into()),
                transaction_id: tx,
                offered_amps: 16.0,
                drawn_amps: drawn,
                energy_wh: 1234.0,
                last_errors: vec![],
                service_port: None,
            }
        }
    }

    impl Backend for FakeBackend {
        fn perform(&mut self, effect: Effect, events: &Events) -> Option<Task> {
            if let Ok(mut v) = self.performed.lock() {
                v.push(effect.clone());
            }
            let events = events.clone();
            let this = self.clone();
            match effect {
                Effect::ListPorts => Some(Box::pin(async move {
                    events.send(Msg::PortsListed(FakeBackend::ports())).await;
                })),
                Effect::Connect { .. } | Effect::StartEmulator { .. } => {
                    let emulated = matches!(effect, Effect::StartEmulator { .. });
                    Some(Box::pin(async move {
                        events.send(Msg::Connected(this.identity(emulated))).await;
                        events
                            .send(Msg::Status(FakeBackend::status("Available", None, 0.0)))
                            .await;
                        for seq in 1..=3 {
                            events.log(crate::stack::logbook::LogRecord {
                                seq,
                                time: chrono::DateTime::UNIX_EPOCH,
                                level: Level::Info,
                                target: "ocpp".into(),
                                message: format!("boot step {seq}"),
                            });
                        }
                    }))
                }
                Effect::ReadConfig { request } => Some(Box::pin(async move {
                    events
                        .send(Msg::ConfigRead {
                            request,
                            entries: FakeBackend::config(),
                        })
                        .await;
                })),
                Effect::ApplyConfig { changes } => Some(Box::pin(async move {
                    let results = changes
                        .into_iter()
                        .map(|c| {
                            let outcome = match c.key.as_str() {
                                "SecurityProfile" => ApplyOutcome::RebootRequired,
                                k if FakeBackend::config().iter().any(|e| e.key == k) => {
                                    ApplyOutcome::Accepted
                                }
                                _ => ApplyOutcome::NotSupported,
                            };
                            (c.key, outcome)
                        })
                        .collect();
                    events.send(Msg::ConfigApplied(results)).await;
                })),
                Effect::InspectImage { request, path } => Some(Box::pin(async move {
                    events
                        .send(Msg::ImageInspected {
                            request,
                            info: ImageInfo {
                                path,
                                version: "2.2.0".into(),
                                size: 4096,
                                sha256: "ab".repeat(32),
                                built: None,
                                signature: SignatureStatus::Valid {
                                    key_id: "zaptec-release-1".into(),
                                },
                            },
                        })
                        .await;
                })),
                Effect::StartFlash { .. } => Some(Box::pin(async move {
                    for i in 1..=4u64 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        events
                            .send(Msg::FlashProgress(FlashProgress {
                                done: i * 1024,
                                total: 4096,
                                rate: 10_240.0,
                                eta: Some(Duration::from_millis(100 * (4 - i))),
                            }))
                            .await;
                    }
                    if let Ok(mut v) = this.firmware.lock() {
                        *v = "2.2.0".into();
                    }
                    events.send(Msg::FlashFinished).await;
                })),
                Effect::Reboot => Some(Box::pin(async move {
                    events
                        .send(Msg::LinkLost {
                            reason: "charger rebooting".into(),
                        })
                        .await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    events.send(Msg::Connected(this.identity(false))).await;
                })),
                Effect::Hardware(action) => Some(Box::pin(async move {
                    let status = match action {
                        HardwareAction::Plug => FakeBackend::status("Preparing", None, 0.0),
                        HardwareAction::PresentCard { .. } => {
                            FakeBackend::status("Charging", Some(42), 15.8)
                        }
                        _ => FakeBackend::status("Available", None, 0.0),
                    };
                    events.send(Msg::Status(status)).await;
                })),
                Effect::LoadProfile { path } => Some(Box::pin(async move {
                    events
                        .send(Msg::Error {
                            context: format!("loading profile {}", path.display()),
                            message: "profiles are not available in the fake backend".into(),
                        })
                        .await;
                })),
                Effect::Disconnect | Effect::ExportLogs { .. } | Effect::Quit => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> LogRecord {
        LogRecord {
            seq,
            time: chrono::DateTime::UNIX_EPOCH,
            level: crate::stack::logbook::Level::Info,
            target: "t".into(),
            message: "m".into(),
        }
    }

    #[tokio::test]
    async fn full_queue_turns_log_lines_into_a_dropped_count() {
        let (events, mut rx) = Events::channel(2);
        for seq in 1..=5 {
            events.log(record(seq));
        }
        assert_eq!(events.pending_drops(), 3);
        assert!(matches!(rx.recv().await, Some(Msg::Log(r)) if r.seq == 1));
        assert!(matches!(rx.recv().await, Some(Msg::Log(r)) if r.seq == 2));
        events.log(record(6));
        assert_eq!(rx.recv().await, Some(Msg::LinesDropped(3)));
        assert!(matches!(rx.recv().await, Some(Msg::Log(r)) if r.seq == 6));
        assert_eq!(events.pending_drops(), 0);
    }
}
