//! The seam between the TUI and its data sources: [`Msg`] says what happened, [`Effect`] says
//! what the runtime must do. Domain types here are plain data, independent of the link client
//! and the emulator, so either can feed the TUI.

use chrono::{DateTime, Utc};
use crossterm::event::KeyEvent;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use crate::stack::identity::Identity;
use crate::stack::logbook::LogRecord;
use crate::stack::secret::Secret;

/// A serial port as port discovery reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub path: String,
    /// USB vendor and product id, when the port is a USB device.
    pub usb: Option<UsbIds>,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    /// Discovery thinks a charger's service cable is on this port.
    pub likely_charger: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsbIds {
    pub vid: u16,
    pub pid: u16,
}

/// Firmware slot of the charger's A/B scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }
}

/// The connected charger: who it is, its firmware slots and uptime.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargerInfo {
    pub identity: Identity,
    pub active_slot: Slot,
    /// Version held by the inactive slot, if any.
    pub inactive_version: Option<String>,
    pub uptime: Duration,
    /// The charger is the embedded emulator (hardware controls available).
    pub emulated: bool,
}

/// How a configuration value is typed, for validation before sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Boolean,
    Integer,
    /// Comma-separated list.
    List,
    String,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Boolean => "bool",
            ValueType::Integer => "int",
            ValueType::List => "list",
            ValueType::String => "text",
        }
    }
}

/// One configuration key as read from the charger.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntry {
    pub key: String,
    /// `None` for write-only keys (AuthorizationKey) and keys without a value.
    pub value: Option<String>,
    pub readonly: bool,
    pub write_only: bool,
    pub value_type: ValueType,
    pub reboot_required: bool,
}

/// A value to send: write-only keys travel as [`Secret`].
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeValue {
    Plain(String),
    Secret(Secret),
}

impl ChangeValue {
    /// The value to send on the wire.
    pub fn expose(&self) -> &str {
        match self {
            ChangeValue::Plain(s) => s,
            ChangeValue::Secret(s) => s.expose(),
        }
    }

    /// What the screen shows.
    pub fn display(&self) -> String {
        match self {
            ChangeValue::Plain(s) => s.clone(),
            ChangeValue::Secret(_) => "•••••• (write-only)".to_string(),
        }
    }
}

/// One change to send.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigChange {
    pub key: String,
    pub value: ChangeValue,
}

/// The charger's answer to one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    Accepted,
    RebootRequired,
    Rejected(String),
    NotSupported,
}

/// What a provisioning profile would change for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisioningChange {
    pub key: String,
    pub old: Option<String>,
    pub new: ChangeValue,
}

/// Signature check of a firmware image against the charger's trusted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureStatus {
    /// Verified against the named trusted key.
    Valid { key_id: String },
    /// Signed by a key the charger does not trust.
    UnknownKey { key_id: String },
    /// The signature does not match the image.
    Invalid(String),
    /// No trusted keys are known here, so the signature was not checked; the charger checks
    /// it when the image arrives.
    Unchecked { key_id: String },
}

/// Header of a firmware image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub path: PathBuf,
    pub version: String,
    pub size: u64,
    pub sha256: String,
    pub built: Option<DateTime<Utc>>,
    pub signature: SignatureStatus,
}

/// Flash progress as the link client reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlashProgress {
    pub done: u64,
    pub total: u64,
    /// Bytes per second.
    pub rate: f64,
    pub eta: Option<Duration>,
}

/// Direction of an OCPP message relative to the charger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Charger to CSMS.
    Sent,
    /// CSMS to charger.
    Received,
}

/// An OCPP-J frame as the trace sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum OcppFrame {
    Call {
        id: String,
        action: String,
        payload: serde_json::Value,
    },
    CallResult {
        id: String,
        payload: serde_json::Value,
    },
    CallError {
        id: String,
        code: String,
        description: String,
        details: serde_json::Value,
    },
}

impl OcppFrame {
    pub fn id(&self) -> &str {
        match self {
            OcppFrame::Call { id, .. }
            | OcppFrame::CallResult { id, .. }
            | OcppFrame::CallError { id, .. } => id,
        }
    }

    /// The frame as it travels on the wire (`[2, id, action, payload]`, ...).
    pub fn to_wire(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            OcppFrame::Call {
                id,
                action,
                payload,
            } => json!([2, id, action, payload]),
            OcppFrame::CallResult { id, payload } => json!([3, id, payload]),
            OcppFrame::CallError {
                id,
                code,
                description,
                details,
            } => json!([4, id, code, description, details]),
        }
    }

    /// Parses a wire frame; `None` if it is not a well-formed OCPP-J frame.
    pub fn from_wire(v: &serde_json::Value) -> Option<OcppFrame> {
        let a = v.as_array()?;
        let id = a.get(1)?.as_str()?.to_string();
        match a.first()?.as_u64()? {
            2 if a.len() == 4 => Some(OcppFrame::Call {
                id,
                action: a[2].as_str()?.to_string(),
                payload: a[3].clone(),
            }),
            3 if a.len() == 3 => Some(OcppFrame::CallResult {
                id,
                payload: a[2].clone(),
            }),
            4 if a.len() == 5 => Some(OcppFrame::CallError {
                id,
                code: a[2].as_str()?.to_string(),
                description: a[3].as_str()?.to_string(),
                details: a[4].clone(),
            }),
            _ => None,
        }
    }
}

/// The charger's OCPP connection to its CSMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OcppConnection {
    Connecting,
    /// Connected; boot notification accepted or pending.
    Connected {
        boot_accepted: bool,
    },
    Disconnected {
        reason: String,
    },
}

/// The charger's OCPP state as it reports it over the service link (for the emulator: as its
/// events tell it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OcppReport {
    /// The charger's firmware does not know the request.
    NotReported,
    Reported(crate::link::OcppStatus),
}

/// Live state of the charger (from the link, or from the emulator).
#[derive(Debug, Clone, PartialEq)]
pub struct ChargerStatus {
    /// OCPP connector status (`Available`, `Preparing`, `Charging`, ...).
    pub connector: String,
    pub ocpp: OcppConnection,
    pub csms_url: Option<String>,
    pub transaction_id: Option<i32>,
    pub offered_amps: f64,
    pub drawn_amps: f64,
    pub energy_wh: f64,
    /// Most recent errors (fault codes, CALLERRORs), newest last.
    pub last_errors: Vec<String>,
    /// Service port path other tools can open (the emulator's pseudo-terminal link).
    pub service_port: Option<String>,
}

/// Where an emulated charger connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsmsTarget {
    /// The embedded sandbox CSMS on loopback.
    Sandbox,
    /// A CSMS URL (`ws://` or `wss://`).
    Url(String),
}

/// A simulated hardware action on the emulated charger.
#[derive(Debug, Clone, PartialEq)]
pub enum HardwareAction {
    Plug,
    Unplug,
    PresentCard { id_tag: String },
    EvDemand { amps: f64 },
    Fault { code: String },
    ClearFault,
}

/// Everything that can happen.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Key(KeyEvent),
    Resize(u16, u16),
    /// Time passes (the only clock `update` sees).
    Tick(Instant),
    PortsListed(Vec<PortInfo>),
    Connected(ChargerInfo),
    LinkLost {
        reason: String,
    },
    /// Answer to [`Effect::ReadConfig`] with the same `request`.
    ConfigRead {
        request: u64,
        entries: Vec<ConfigEntry>,
    },
    ConfigApplied(Vec<(String, ApplyOutcome)>),
    ProfileLoaded {
        path: PathBuf,
        changes: Vec<ProvisioningChange>,
    },
    Log(LogRecord),
    /// The producer could not queue this many log lines.
    LinesDropped(u64),
    FlashProgress(FlashProgress),
    FlashFinished,
    FlashFailed {
        reason: String,
    },
    /// Answer to [`Effect::InspectImage`] with the same `request`.
    ImageInspected {
        request: u64,
        info: ImageInfo,
    },
    Trace {
        direction: Direction,
        time: DateTime<Utc>,
        frame: OcppFrame,
    },
    Status(ChargerStatus),
    /// The charger's connection to its CSMS, registration and last connection error.
    Ocpp(OcppReport),
    /// A fleet's counters, about once a second (emulated fleets only).
    Fleet(crate::emulator::fleet::Summary),
    /// Fleet `run` has stopped (asked to, or it could not start: `error`).
    FleetEnded {
        run: u64,
        error: Option<String>,
    },
    LogsExported {
        path: PathBuf,
        lines: usize,
    },
    /// Something failed; `context` says what was being done.
    Error {
        context: String,
        message: String,
    },
    /// What the dry run started with [`Effect::StartDryRun`] with the same `run` has seen.
    DryRun {
        run: u64,
        update: crate::dryrun::Update,
    },
    /// The dry run ended (completed, stopped, or the CSMS was never reached) with its report.
    DryRunFinished {
        run: u64,
        report: Box<crate::dryrun::Report>,
    },
    /// The dry run could not run (a bad profile, a missing secret, ...).
    DryRunFailed {
        run: u64,
        message: String,
    },
    /// Answer to [`Effect::SaveReport`].
    ReportSaved {
        path: PathBuf,
    },
    /// Answer to [`Effect::SaveReport`] when the file could not be written.
    ReportNotSaved {
        path: PathBuf,
        message: String,
    },
}

/// A fleet as the emulator screen's form asks for it (the options of `emulate --count`).
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSpec {
    pub count: u64,
    /// Charge point ids, `{n}` standing for the number (`SITE-{n:04}`).
    pub template: String,
    /// Charge points started per second; None: all at once.
    pub ramp: Option<f64>,
    /// Random charging sessions started per second across the fleet; None: none.
    pub sessions: Option<f64>,
    /// Seed of the sessions; None: a random one.
    pub seed: Option<u64>,
    pub csms: CsmsTarget,
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    ListPorts,
    Connect {
        port: String,
    },
    StartEmulator {
        csms: CsmsTarget,
    },
    Disconnect,
    ReadConfig {
        request: u64,
    },
    ApplyConfig {
        changes: Vec<ConfigChange>,
    },
    LoadProfile {
        path: PathBuf,
    },
    InspectImage {
        request: u64,
        path: PathBuf,
    },
    StartFlash {
        path: PathBuf,
    },
    Reboot,
    /// Handled by the runtime itself: write these lines to `path`.
    ExportLogs {
        path: PathBuf,
        lines: Vec<String>,
    },
    Hardware(HardwareAction),
    /// Run a dry run: `profile` names a provisioning profile (shipped, in the profiles
    /// directory, or a file); `csms_url` None takes the profile's, else the sandbox CSMS.
    StartDryRun {
        run: u64,
        profile: Option<String>,
        csms_url: Option<String>,
    },
    /// End the dry run `run` early; its report still comes.
    StopDryRun {
        run: u64,
    },
    /// Start an emulated fleet, as `chargectl emulate --count` does; its summaries follow.
    StartFleet {
        run: u64,
        spec: FleetSpec,
    },
    /// Stop fleet `run` (each charge point shuts down with its state saved).
    StopFleet {
        run: u64,
    },
    /// Handled by the runtime itself: write the report to `path`, in the format its extension
    /// names.
    SaveReport {
        path: PathBuf,
        report: Box<crate::dryrun::Report>,
    },
    Quit,
}
