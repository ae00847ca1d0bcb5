//! A scripted charger for the runtime tests: answers every effect with plausible messages and
//! records what it was asked to do. Test code only; never part of the library.
#![allow(dead_code)] // each test binary uses a part

use chargectl::stack::logbook::{Level, LogRecord};
use chargectl::tui::msg::{
    ApplyOutcome, ChargerInfo, ChargerStatus, ConfigEntry, Effect, FlashProgress, HardwareAction,
    Identity, ImageInfo, Msg, OcppConnection, PortInfo, SignatureStatus, Slot, UsbIds, ValueType,
};
use chargectl::tui::{Backend, Events, Task};
use std::sync::{Arc, Mutex};
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
        self.performed.lock().unwrap().clone()
    }

    fn identity(&self, emulated: bool) -> ChargerInfo {
        let version = self.firmware.lock().unwrap().clone();
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

/// What the fake dry run finds: a profile in W (blocking, first seen in a SetChargingProfile)
/// and a short heartbeat interval (warning).
pub fn dry_run_findings() -> Vec<chargectl::dryrun::Finding> {
    use chargectl::dryrun::{Request, Rule};
    let t0 = chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(20_000);
    let frame = serde_json::json!([2, "peer-4", "SetChargingProfile", {"connectorId": 1}]);
    vec![
        Rule::ChargingRateUnitW {
            action: "SetChargingProfile".into(),
        }
        .finding(
            Some(Request::new(
                Duration::from_millis(5_093),
                t0,
                "received",
                Some("SetChargingProfile"),
                &frame,
            )),
            None,
        ),
        Rule::HeartbeatInterval {
            value: 15,
            source: "ChangeConfiguration".into(),
        }
        .finding(None, None),
    ]
}

/// The report of the fake dry run, for charge point `DRY-1`.
pub fn dry_run_report() -> chargectl::dryrun::Report {
    use chargectl::dryrun::report::{Inputs, ScenarioSummary};
    use chargectl::dryrun::{Area, EndedBy, Expectations};
    let findings = dry_run_findings();
    let exercised = [Area::Connection, Area::SmartCharging]
        .into_iter()
        .collect();
    chargectl::dryrun::Report::build(
        Inputs {
            charge_point_id: "DRY-1".into(),
            csms_url: "ws://127.0.0.1:9000/ocpp".into(),
            sandbox: false,
            profile: Some("site-a".into()),
            scenario: ScenarioSummary {
                name: "default".into(),
                source: "built-in default".into(),
                steps: 10,
                steps_done: 10,
            },
            expectations: Expectations::default(),
            started_at: chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(20_000),
            duration_s: 360.0,
            ended_by: EndedBy::Completed,
        },
        &chargectl::dryrun::analyzer::Stats {
            connected: true,
            ever_connected: true,
            registration: Some("Accepted".into()),
            connections: 1,
            frames_sent: 20,
            frames_received: 20,
            ..Default::default()
        },
        &findings,
        &exercised,
    )
}

impl Backend for FakeBackend {
    fn perform(&mut self, effect: Effect, events: &Events) -> Option<Task> {
        self.performed.lock().unwrap().push(effect.clone());
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
                        events.log(LogRecord {
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
                *this.firmware.lock().unwrap() = "2.2.0".into();
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
            Effect::StartDryRun { run, .. } => Some(Box::pin(async move {
                use chargectl::dryrun::{FrameSeen, Update};
                let frame = serde_json::json!([2, "1", "BootNotification", {}]);
                let updates = [
                    Update::Frame(FrameSeen {
                        direction: chargectl::stack::chargepoint::Direction::Sent,
                        frame,
                        time: chrono::DateTime::UNIX_EPOCH,
                    }),
                    Update::Finding(dry_run_findings().remove(0)),
                ];
                for update in updates {
                    events.send(Msg::DryRun { run, update }).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                events
                    .send(Msg::DryRunFinished {
                        run,
                        report: Box::new(dry_run_report()),
                    })
                    .await;
            })),
            Effect::Disconnect
            | Effect::ExportLogs { .. }
            | Effect::StopDryRun { .. }
            | Effect::StartFleet { .. }
            | Effect::StopFleet { .. }
            | Effect::SaveReport { .. }
            | Effect::Quit => None,
        }
    }
}
