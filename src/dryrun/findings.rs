//! The catalogue of findings: every way a CSMS can trip the real charger that a dry run detects.
//!
//! Each [`Rule`] names what was seen; [`Finding`] is what the report shows: a severity, an area,
//! the request that hit it (time, message id, action, an excerpt with secrets redacted), what
//! the real charger does, the release-note line it comes from (quoted verbatim from the notes
//! embedded in this build), and what the operator can do instead. Findings are deduplicated by
//! rule and subject: one finding with a count and the first request, not 300 copies.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// The charger's release notes, verbatim. Every finding quotes one of their lines.
pub const RELEASE_NOTES: &str = include_str!("release-notes.txt");

/// Longest excerpt of a request kept in a finding (characters).
pub const EXCERPT_CHARS: usize = 400;

/// Switches between charging and suspended within one hour that make the known crash risk a
/// warning (release notes: "when SmartCharging profile requests the CP to change from/to
/// SuspendedEV very often").
pub const SUSPENDED_SWITCHES_PER_HOUR: usize = 4;

/// The saner range of heartbeat intervals, seconds.
pub const HEARTBEAT_RANGE: std::ops::RangeInclusive<u64> = 30..=86_400;

/// Meter value intervals below this many seconds are reported (the notes do not recommend them).
pub const SHORT_METER_INTERVAL: u64 = 10;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The site will not work as intended with the real charger: fix before going live.
    Blocking,
    /// Works, but with a risk or a loss the operator should know about.
    Warning,
    /// Worth knowing; nothing to fix.
    Info,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Blocking, Severity::Warning, Severity::Info];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Blocking => "blocking",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// What part of the site a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    Connection,
    Authorization,
    Transactions,
    SmartCharging,
    Firmware,
    Diagnostics,
    Configuration,
}

impl Area {
    pub const ALL: [Area; 7] = [
        Area::Connection,
        Area::Authorization,
        Area::Transactions,
        Area::SmartCharging,
        Area::Firmware,
        Area::Diagnostics,
        Area::Configuration,
    ];

    /// The JSON name (`smart_charging`).
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Connection => "connection",
            Area::Authorization => "authorization",
            Area::Transactions => "transactions",
            Area::SmartCharging => "smart_charging",
            Area::Firmware => "firmware",
            Area::Diagnostics => "diagnostics",
            Area::Configuration => "configuration",
        }
    }

    /// The heading a person reads (`Smart charging`).
    pub fn title(self) -> &'static str {
        match self {
            Area::Connection => "Connection",
            Area::Authorization => "Authorization",
            Area::Transactions => "Transactions",
            Area::SmartCharging => "Smart charging",
            Area::Firmware => "Firmware",
            Area::Diagnostics => "Diagnostics",
            Area::Configuration => "Configuration",
        }
    }

    /// The area an OCPP action belongs to.
    pub fn of_action(action: &str) -> Area {
        match action {
            "Authorize"
            | "SendLocalList"
            | "GetLocalListVersion"
            | "ReserveNow"
            | "CancelReservation"
            | "ClearCache" => Area::Authorization,
            "StartTransaction"
            | "StopTransaction"
            | "MeterValues"
            | "RemoteStartTransaction"
            | "RemoteStopTransaction" => Area::Transactions,
            "SetChargingProfile" | "ClearChargingProfile" | "GetCompositeSchedule" => {
                Area::SmartCharging
            }
            "UpdateFirmware"
            | "FirmwareStatusNotification"
            | "SignedUpdateFirmware"
            | "SignedFirmwareStatusNotification" => Area::Firmware,
            "GetDiagnostics"
            | "DiagnosticsStatusNotification"
            | "GetLog"
            | "LogStatusNotification" => Area::Diagnostics,
            "ChangeConfiguration"
            | "GetConfiguration"
            | "Reset"
            | "ChangeAvailability"
            | "TriggerMessage"
            | "ExtendedTriggerMessage"
            | "UnlockConnector"
            | "DataTransfer" => Area::Configuration,
            _ => Area::Connection,
        }
    }
}

/// Why the charger could not reach the CSMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConnectFailure {
    /// The host name does not resolve.
    Dns,
    /// Nothing listens on the port (TCP connection refused).
    TcpRefused,
    /// No answer in time (TCP or WebSocket handshake).
    Timeout,
    /// The TLS handshake failed.
    Tls,
    /// The CSMS refused the WebSocket upgrade with this HTTP status (401, 403, 404, ...).
    HttpStatus { status: u16 },
    /// The CSMS did not agree to the `ocpp1.6` subprotocol.
    NoSubprotocol,
    /// The URL cannot be used (scheme, host).
    BadUrl,
    /// Anything else.
    Other,
}

impl ConnectFailure {
    /// One line for a person.
    pub fn describe(&self) -> String {
        match self {
            ConnectFailure::Dns => "the host name does not resolve (DNS)".into(),
            ConnectFailure::TcpRefused => "nothing listens on that port (TCP refused)".into(),
            ConnectFailure::Timeout => "no answer in time (timeout)".into(),
            ConnectFailure::Tls => "the TLS handshake failed".into(),
            ConnectFailure::HttpStatus { status } => {
                format!("the CSMS refused the WebSocket upgrade with HTTP status {status}")
            }
            ConnectFailure::NoSubprotocol => {
                "the CSMS did not agree to the ocpp1.6 subprotocol".into()
            }
            ConnectFailure::BadUrl => "the CSMS URL cannot be used".into(),
            ConnectFailure::Other => "the connection failed".into(),
        }
    }
}

/// The request (or answer) that hit a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Seconds since the dry run started.
    pub elapsed_s: f64,
    /// UTC wall-clock time.
    pub time: DateTime<Utc>,
    /// OCPP-J unique id of the CALL (or of the CALL a result answers).
    pub message_id: Option<String>,
    /// OCPP action.
    pub action: Option<String>,
    /// `sent` (by the charger) or `received` (from the CSMS).
    pub direction: String,
    /// The frame as JSON text, secrets redacted, cut to [`EXCERPT_CHARS`].
    pub excerpt: String,
}

impl Request {
    /// Builds the excerpt from a frame, redacting secrets with the stack's own rule.
    pub fn new(
        elapsed: Duration,
        time: DateTime<Utc>,
        direction: &str,
        action: Option<&str>,
        frame: &Value,
    ) -> Request {
        let redacted = crate::stack::rpc::redact_value(frame);
        let mut excerpt = scrub_userinfo(&redacted.to_string());
        if excerpt.chars().count() > EXCERPT_CHARS {
            excerpt = excerpt.chars().take(EXCERPT_CHARS - 1).collect();
            excerpt.push('…');
        }
        Request {
            elapsed_s: round_ms(elapsed),
            time,
            message_id: frame.get(1).and_then(Value::as_str).map(str::to_string),
            action: action.map(str::to_string),
            direction: direction.to_string(),
            excerpt,
        }
    }
}

/// Removes `user:password@` from every URL in `text` (a CSMS URL in an error, an FTP location
/// with credentials in a request).
pub fn scrub_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let authority_end = rest
            .find(|c: char| matches!(c, '/' | '"' | '\'' | '\\') || c.is_whitespace())
            .unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            out.push_str(crate::stack::secret::REDACTED);
            out.push('@');
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// Seconds with millisecond precision.
pub fn round_ms(d: Duration) -> f64 {
    (d.as_millis() as f64) / 1000.0
}

/// A line of the release notes, quoted verbatim (its list marker removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// 1-based line number in the release notes.
    pub line: usize,
    pub text: String,
}

impl Quote {
    /// The text of `line` without its indentation and list marker (`•`, `2.`).
    pub fn of_line(line: usize) -> Quote {
        let raw = RELEASE_NOTES
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or_default();
        Quote {
            line,
            text: strip_marker(raw).to_string(),
        }
    }
}

fn strip_marker(raw: &str) -> &str {
    let t = raw.trim();
    let t = if let Some(rest) = t.strip_prefix('•') {
        rest
    } else {
        let digits = t.chars().take_while(char::is_ascii_digit).count();
        match t[digits..].strip_prefix('.') {
            Some(rest) if digits > 0 => rest,
            _ => t,
        }
    };
    t.trim()
}

/// One finding in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable rule id (`charging_profile_in_watts`).
    pub rule: String,
    /// What the rule is about when it can fire for several things (a key, an action).
    pub subject: Option<String>,
    pub severity: Severity,
    pub area: Area,
    /// One line for a person.
    pub title: String,
    /// How many times it was seen.
    pub count: u64,
    /// The first request that hit it (none for findings about the whole run).
    pub request: Option<Request>,
    /// What was seen, in numbers (`6 switches within one hour`).
    pub detail: Option<String>,
    /// What the real charger does.
    pub charger: String,
    /// The release-note line the behaviour comes from.
    pub release_note: Quote,
    /// What the operator can do instead.
    pub advice: String,
}

/// What a dry run can see. Each variant is one rule of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// A charging profile with chargingRateUnit W.
    ChargingRateUnitW { action: String },
    /// A Recurring profile without startSchedule.
    RecurringWithoutStartSchedule { action: String },
    /// ChangeConfiguration of a key the charger lacks.
    UnsupportedKey { key: String },
    /// A measurand the charger does not have, in one of the meter value keys.
    UnsupportedMeasurand { key: String, measurand: String },
    /// SecurityProfile above 1.
    SecurityProfileAbove1 { value: String },
    /// A security-whitepaper operation.
    WhitepaperOperation { action: String },
    /// An ftp:// or ftps:// location.
    FtpLocation { action: String, scheme: String },
    /// More than 255 entries in one SendLocalList.
    SendLocalListTooLarge { entries: usize },
    /// A local list over 1024 entries in total.
    LocalListTooLarge { total: usize },
    /// ReserveNow while FreeCharging is on.
    ReservationWhileFreeCharging,
    /// A timestamp from the CSMS that is not UTC.
    NonUtcTimestamp { action: String, field: String },
    /// BootNotification never Accepted (Pending or Rejected at the end, or never answered).
    BootNotAccepted { status: String },
    /// BootNotification was Pending for a while before Accepted.
    BootPending { seconds: u64 },
    /// A charger CALL left unanswered past MessageTimeout.
    UnansweredCall { action: String, timeout_s: u64 },
    /// A heartbeat interval out of the sane range.
    HeartbeatInterval { value: u64, source: String },
    /// A very short meter value interval.
    ShortMeterValueInterval { key: String, value: u64 },
    /// A transaction message answered with a CALLERROR.
    TransactionMessageError { action: String, code: String },
    /// A non-Accepted idTagInfo; `expected` when the commissioning expects the card to work.
    IdTagNotAccepted {
        id_tag: String,
        status: String,
        expected: bool,
    },
    /// No RemoteStartTransaction while the scenario waited for one.
    NoRemoteStart { waited_s: u64, expected: bool },
    /// The CSMS closed the connection.
    CsmsClosedConnection,
    /// The CSMS closed the connection without acknowledging the charger's last message.
    CloseWithoutAck,
    /// GetDiagnostics.
    DiagnosticsRequested,
    /// Frequent switches between charging and suspended.
    SuspendedSwitching { per_hour: usize },
    /// Reset.
    ResetRequested,
    /// UpdateFirmware.
    UpdateFirmwareRequested,
    /// The CSMS relies on a value the release notes do not state; the emulated value is an
    /// assumption.
    Assumption {
        key: String,
        emulated: String,
        why: String,
    },
    /// ClockAlignedDataInterval above 4294967 s, where the two release notes disagree on the
    /// bound (0 to 4294967 in one, 0 to UINT32_T in the other): the emulated charger keeps to
    /// the lower one and rejects it, the real charger may accept it.
    ClockAlignedUpperBound { value: u64 },
    /// The CSMS changed the AuthorizationKey.
    AuthorizationKeyChanged,
    /// The charger never connected.
    Unreachable {
        failure: ConnectFailure,
        detail: String,
    },
}

/// Keys the release notes name as not supported, with the line that says so.
pub const UNSUPPORTED_KEYS: &[(&str, usize)] = &[
    ("BlinkRepeat", 41),
    ("MaxEnergyOnInvalidId", 42),
    ("MeterValuesSignatureContexts", 43),
    ("StopTransactionSignatureContexts", 43),
    ("StopTransactionSignatureFormat", 43),
    ("ConnectorSwitch3to1PhaseSupported", 90),
    ("AdditionalRootCertificateCheck", 107),
    ("CertificateSignedMaxChainSize", 108),
    ("CertificateStoreMaxLength", 109),
    ("CpoName", 110),
];

/// Security-whitepaper operations, with the line that says each is not supported.
pub const WHITEPAPER_OPERATIONS: &[(&str, usize)] = &[
    ("CertificateSigned", 111),
    ("DeleteCertificate", 112),
    ("ExtendedTriggerMessage", 113),
    ("GetInstalledCertificateIds", 114),
    ("GetLog", 115),
    ("InstallCertificate", 116),
    ("LogStatusNotification", 117),
    ("SecurityEventNotification", 118),
    ("SignCertificate", 119),
    ("SignedFirmwareStatusNotification", 120),
    ("SignedUpdateFirmware", 121),
];

/// Actions whose loss loses a session or the registration.
const CRITICAL_ACTIONS: &[&str] = &[
    "BootNotification",
    "StartTransaction",
    "StopTransaction",
    "MeterValues",
];

fn line_of(table: &[(&str, usize)], name: &str, fallback: usize) -> usize {
    table
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(fallback, |(_, l)| *l)
}

impl Rule {
    /// The stable id used in JSON and for deduplication.
    pub fn id(&self) -> &'static str {
        match self {
            Rule::ChargingRateUnitW { .. } => "charging_profile_in_watts",
            Rule::RecurringWithoutStartSchedule { .. } => {
                "recurring_profile_without_start_schedule"
            }
            Rule::UnsupportedKey { .. } => "unsupported_configuration_key",
            Rule::UnsupportedMeasurand { .. } => "unsupported_measurand",
            Rule::SecurityProfileAbove1 { .. } => "security_profile_above_1",
            Rule::WhitepaperOperation { .. } => "security_whitepaper_operation",
            Rule::FtpLocation { .. } => "ftp_location",
            Rule::SendLocalListTooLarge { .. } => "send_local_list_too_large",
            Rule::LocalListTooLarge { .. } => "local_list_too_large",
            Rule::ReservationWhileFreeCharging => "reservation_while_free_charging",
            Rule::NonUtcTimestamp { .. } => "non_utc_timestamp",
            Rule::BootNotAccepted { .. } => "boot_not_accepted",
            Rule::BootPending { .. } => "boot_pending",
            Rule::UnansweredCall { .. } => "unanswered_call",
            Rule::HeartbeatInterval { .. } => "heartbeat_interval_out_of_range",
            Rule::ShortMeterValueInterval { .. } => "short_meter_value_interval",
            Rule::TransactionMessageError { .. } => "transaction_message_error",
            Rule::IdTagNotAccepted { .. } => "id_tag_not_accepted",
            Rule::NoRemoteStart { .. } => "no_remote_start",
            Rule::CsmsClosedConnection => "csms_closed_connection",
            Rule::CloseWithoutAck => "close_without_acknowledgement",
            Rule::DiagnosticsRequested => "diagnostics_requested",
            Rule::SuspendedSwitching { .. } => "frequent_suspended_switching",
            Rule::ResetRequested => "reset_requested",
            Rule::UpdateFirmwareRequested => "update_firmware_requested",
            Rule::Assumption { .. } => "assumed_value",
            Rule::ClockAlignedUpperBound { .. } => "clock_aligned_interval_upper_bound",
            Rule::AuthorizationKeyChanged => "authorization_key_changed",
            Rule::Unreachable { .. } => "csms_unreachable",
        }
    }

    /// What the rule fired for, when it can fire for several things; findings are deduplicated
    /// by (id, subject).
    pub fn subject(&self) -> Option<String> {
        match self {
            Rule::UnsupportedKey { key } => Some(key.clone()),
            Rule::UnsupportedMeasurand { measurand, .. } => Some(measurand.clone()),
            Rule::WhitepaperOperation { action } => Some(action.clone()),
            Rule::FtpLocation { action, .. } => Some(action.clone()),
            Rule::NonUtcTimestamp { action, field } => Some(format!("{action}.{field}")),
            Rule::UnansweredCall { action, .. } => Some(action.clone()),
            Rule::TransactionMessageError { action, .. } => Some(action.clone()),
            Rule::IdTagNotAccepted { id_tag, .. } => Some(id_tag.clone()),
            Rule::Assumption { key, .. } => Some(key.clone()),
            Rule::HeartbeatInterval { source, .. } => Some(source.clone()),
            Rule::ShortMeterValueInterval { key, .. } => Some(key.clone()),
            _ => None,
        }
    }

    pub fn severity(&self) -> Severity {
        use Severity::*;
        match self {
            Rule::ChargingRateUnitW { .. }
            | Rule::RecurringWithoutStartSchedule { .. }
            | Rule::SecurityProfileAbove1 { .. }
            | Rule::BootNotAccepted { .. }
            | Rule::TransactionMessageError { .. }
            | Rule::Unreachable { .. } => Blocking,
            Rule::UnansweredCall { action, .. } => {
                if CRITICAL_ACTIONS.contains(&action.as_str()) {
                    Blocking
                } else {
                    Warning
                }
            }
            Rule::IdTagNotAccepted { expected, .. } | Rule::NoRemoteStart { expected, .. } => {
                if *expected {
                    Blocking
                } else {
                    Info
                }
            }
            Rule::SuspendedSwitching { per_hour } => {
                if *per_hour >= SUSPENDED_SWITCHES_PER_HOUR {
                    Warning
                } else {
                    Info
                }
            }
            Rule::UnsupportedKey { .. }
            | Rule::UnsupportedMeasurand { .. }
            | Rule::WhitepaperOperation { .. }
            | Rule::FtpLocation { .. }
            | Rule::SendLocalListTooLarge { .. }
            | Rule::LocalListTooLarge { .. }
            | Rule::ReservationWhileFreeCharging
            | Rule::NonUtcTimestamp { .. }
            | Rule::HeartbeatInterval { .. }
            | Rule::CloseWithoutAck
            | Rule::DiagnosticsRequested
            | Rule::ResetRequested
            | Rule::UpdateFirmwareRequested => Warning,
            Rule::BootPending { .. }
            | Rule::ShortMeterValueInterval { .. }
            | Rule::CsmsClosedConnection
            | Rule::Assumption { .. }
            | Rule::ClockAlignedUpperBound { .. }
            | Rule::AuthorizationKeyChanged => Info,
        }
    }

    pub fn area(&self) -> Area {
        match self {
            Rule::ChargingRateUnitW { .. }
            | Rule::RecurringWithoutStartSchedule { .. }
            | Rule::SuspendedSwitching { .. } => Area::SmartCharging,
            Rule::UnsupportedKey { key } => match key.as_str() {
                "ConnectorSwitch3to1PhaseSupported" => Area::SmartCharging,
                "MeterValuesSignatureContexts"
                | "StopTransactionSignatureContexts"
                | "StopTransactionSignatureFormat"
                | "MaxEnergyOnInvalidId" => Area::Transactions,
                "AdditionalRootCertificateCheck"
                | "CertificateSignedMaxChainSize"
                | "CertificateStoreMaxLength" => Area::Connection,
                _ => Area::Configuration,
            },
            Rule::UnsupportedMeasurand { .. }
            | Rule::ShortMeterValueInterval { .. }
            | Rule::ClockAlignedUpperBound { .. }
            | Rule::TransactionMessageError { .. }
            | Rule::NoRemoteStart { .. } => Area::Transactions,
            Rule::SecurityProfileAbove1 { .. }
            | Rule::BootNotAccepted { .. }
            | Rule::BootPending { .. }
            | Rule::HeartbeatInterval { .. }
            | Rule::CsmsClosedConnection
            | Rule::CloseWithoutAck
            | Rule::AuthorizationKeyChanged
            | Rule::Unreachable { .. } => Area::Connection,
            Rule::WhitepaperOperation { action } => match action.as_str() {
                "GetLog" | "LogStatusNotification" => Area::Diagnostics,
                "SignedUpdateFirmware" | "SignedFirmwareStatusNotification" => Area::Firmware,
                "ExtendedTriggerMessage" => Area::Configuration,
                _ => Area::Connection,
            },
            Rule::FtpLocation { action, .. } => Area::of_action(action),
            Rule::SendLocalListTooLarge { .. }
            | Rule::LocalListTooLarge { .. }
            | Rule::ReservationWhileFreeCharging
            | Rule::IdTagNotAccepted { .. } => Area::Authorization,
            Rule::NonUtcTimestamp { action, .. } => match Area::of_action(action) {
                Area::Configuration => Area::Connection,
                other => other,
            },
            Rule::UnansweredCall { action, .. } => Area::of_action(action),
            Rule::DiagnosticsRequested => Area::Diagnostics,
            Rule::ResetRequested => Area::Configuration,
            Rule::UpdateFirmwareRequested => Area::Firmware,
            Rule::Assumption { key, .. } => match key.as_str() {
                "ReserveConnectorZeroSupported" => Area::Authorization,
                "GetConfigurationMaxKeys" => Area::Configuration,
                _ => Area::SmartCharging,
            },
        }
    }

    /// The release-note line the behaviour comes from.
    pub fn note_line(&self) -> usize {
        match self {
            Rule::ChargingRateUnitW { .. } => 91,
            Rule::RecurringWithoutStartSchedule { .. } => 92,
            Rule::UnsupportedKey { key } => line_of(UNSUPPORTED_KEYS, key, 41),
            Rule::UnsupportedMeasurand { .. } => 51,
            Rule::SecurityProfileAbove1 { .. } => 105,
            Rule::WhitepaperOperation { action } => line_of(WHITEPAPER_OPERATIONS, action, 115),
            Rule::FtpLocation { .. } => 66,
            Rule::SendLocalListTooLarge { .. } | Rule::LocalListTooLarge { .. } => 72,
            Rule::ReservationWhileFreeCharging => 81,
            Rule::NonUtcTimestamp { .. } => 48,
            Rule::BootNotAccepted { .. } | Rule::BootPending { .. } => 49,
            Rule::UnansweredCall { .. } => 25,
            Rule::HeartbeatInterval { .. } | Rule::ShortMeterValueInterval { .. } => 45,
            Rule::TransactionMessageError { .. } => 55,
            Rule::IdTagNotAccepted { .. } => 24,
            Rule::NoRemoteStart { .. } => 16,
            Rule::CsmsClosedConnection => 139,
            Rule::CloseWithoutAck => 9,
            Rule::DiagnosticsRequested => 8,
            Rule::SuspendedSwitching { .. } => 138,
            Rule::ResetRequested => 135,
            Rule::UpdateFirmwareRequested => 185,
            Rule::Assumption { key, .. } => match key.as_str() {
                "ReserveConnectorZeroSupported" => 77,
                "GetConfigurationMaxKeys" => 23,
                _ => 86,
            },
            Rule::ClockAlignedUpperBound { .. } => 164,
            Rule::AuthorizationKeyChanged => 101,
            Rule::Unreachable { failure, .. } => match failure {
                ConnectFailure::HttpStatus { status: 401 | 403 } | ConnectFailure::Tls => 106,
                _ => 4,
            },
        }
    }

    pub fn title(&self) -> String {
        match self {
            Rule::ChargingRateUnitW { action } => {
                format!("{action} carries a charging profile in W")
            }
            Rule::RecurringWithoutStartSchedule { action } => {
                format!("{action} carries a recurring charging profile without startSchedule")
            }
            Rule::UnsupportedKey { key } => {
                format!("ChangeConfiguration of {key}, which this charger does not have")
            }
            Rule::UnsupportedMeasurand { key, measurand } => {
                format!("{key} asks for measurand {measurand}, which this charger does not have")
            }
            Rule::SecurityProfileAbove1 { value } => {
                format!("ChangeConfiguration SecurityProfile = {value}")
            }
            Rule::WhitepaperOperation { action } => {
                format!("{action} (security whitepaper) is not supported")
            }
            Rule::FtpLocation { action, scheme } => {
                format!("{action} with an {scheme}:// location")
            }
            Rule::SendLocalListTooLarge { entries } => {
                format!("SendLocalList with {entries} entries in one request")
            }
            Rule::LocalListTooLarge { total } => {
                format!("the local authorization list would hold {total} entries")
            }
            Rule::ReservationWhileFreeCharging => "ReserveNow while FreeCharging is on".into(),
            Rule::NonUtcTimestamp { action, field } => {
                format!("{action} carries {field} that is not in UTC")
            }
            Rule::BootNotAccepted { status } => {
                format!("BootNotification never accepted ({status})")
            }
            Rule::BootPending { seconds } => {
                format!("BootNotification was Pending for {seconds} s before it was accepted")
            }
            Rule::UnansweredCall { action, timeout_s } => {
                format!("{action} left unanswered for more than {timeout_s} s (MessageTimeout)")
            }
            Rule::HeartbeatInterval { value, source } => {
                format!("heartbeat interval {value} s from {source}")
            }
            Rule::ShortMeterValueInterval { key, value } => format!("{key} set to {value} s"),
            Rule::TransactionMessageError { action, code } => {
                format!("{action} answered with CALLERROR {code}")
            }
            Rule::IdTagNotAccepted { id_tag, status, .. } => {
                format!("card {id_tag} answered {status}")
            }
            Rule::NoRemoteStart { waited_s, .. } => {
                format!("no RemoteStartTransaction within {waited_s} s")
            }
            Rule::CsmsClosedConnection => "the CSMS closed the connection".into(),
            Rule::CloseWithoutAck => {
                "the CSMS closed the connection without acknowledging the charger's last message"
                    .into()
            }
            Rule::DiagnosticsRequested => "the CSMS asks for diagnostics (GetDiagnostics)".into(),
            Rule::SuspendedSwitching { per_hour } => format!(
                "smart charging switched the charger between charging and suspended {per_hour} times within an hour"
            ),
            Rule::ResetRequested => "the CSMS resets the charger (Reset)".into(),
            Rule::UpdateFirmwareRequested => "the CSMS sends UpdateFirmware".into(),
            Rule::Assumption { key, emulated, .. } => {
                format!("the CSMS relies on {key}; the emulated value {emulated} is an assumption")
            }
            Rule::ClockAlignedUpperBound { value } => {
                format!("ClockAlignedDataInterval set to {value} s, above 4294967 s")
            }
            Rule::AuthorizationKeyChanged => "the CSMS changes the AuthorizationKey".into(),
            Rule::Unreachable { failure, .. } => {
                format!("the charger never reached the CSMS: {}", failure.describe())
            }
        }
    }

    /// What the real charger does.
    pub fn charger(&self) -> String {
        match self {
            Rule::ChargingRateUnitW { .. } => "Accepts only A as chargingRateUnit: a profile in W is rejected (SetChargingProfile answers Rejected, a RemoteStartTransaction carrying it is rejected) and its limit is never applied.".into(),
            Rule::RecurringWithoutStartSchedule { .. } => "Requires startSchedule on recurring schedules: the profile is rejected and its limit is never applied.".into(),
            Rule::UnsupportedKey { key } => format!("Has no key {key}: ChangeConfiguration answers NotSupported and GetConfiguration lists it under unknownKey."),
            Rule::UnsupportedMeasurand { key, .. } => format!("Samples only Current.Import, Current.Offered, Energy.Active.Import.Register, Energy.Active.Import.Interval, Temperature and Voltage: the change of {key} is rejected and the previous value stays."),
            Rule::SecurityProfileAbove1 { .. } => "Accepts SecurityProfile 0 or 1 only: the change is rejected and the charger stays on its current profile (no TLS client certificates).".into(),
            Rule::WhitepaperOperation { action } => format!("Answers {action} with CALLERROR NotSupported."),
            Rule::FtpLocation { action, .. } => if action == "GetDiagnostics" {
                "Uploads diagnostics over http(s) as a form upload only: an FTP location fails (DiagnosticsStatusNotification UploadFailed).".into()
            } else {
                "Downloads over http(s) only: an FTP location fails (FirmwareStatusNotification DownloadFailed).".into()
            },
            Rule::SendLocalListTooLarge { .. } => "Accepts at most 255 entries in one SendLocalList: the request answers Failed and the list stays as it was.".into(),
            Rule::LocalListTooLarge { .. } => "Holds at most 1024 entries: the update answers Failed and the list stays as it was.".into(),
            Rule::ReservationWhileFreeCharging => "While authorization is not required (FreeCharging), cancels active reservations and rejects new ones.".into(),
            Rule::NonUtcTimestamp { .. } => "Expects every timestamp from the CSMS in UTC: a time with another offset is off by that offset (a reservation expiry or a startSchedule shifts by it).".into(),
            Rule::BootNotAccepted { .. } => "Keeps repeating BootNotification at the interval the CSMS gives and sends nothing else (no status, no transactions) until it is Accepted. It does not send meterSerialNumber or meterType.".into(),
            Rule::BootPending { .. } => "Repeats BootNotification at the interval the CSMS gives and sends nothing else until it is Accepted.".into(),
            Rule::UnansweredCall { action, timeout_s } => match action.as_str() {
                "BootNotification" => format!("Gives up waiting after MessageTimeout ({timeout_s} s) and sends BootNotification again; nothing else is sent until it is Accepted."),
                "StartTransaction" | "StopTransaction" | "MeterValues" => format!("Gives up waiting after MessageTimeout ({timeout_s} s) and sends the transaction message again after TransactionMessageRetryInterval, up to TransactionMessageAttempts times; after the last attempt it is dropped."),
                "Authorize" => format!("Gives up waiting after MessageTimeout ({timeout_s} s) and decides from its local list and cache as if offline."),
                _ => format!("Gives up waiting after MessageTimeout ({timeout_s} s); the message is not sent again."),
            },
            Rule::HeartbeatInterval { value, .. } => if *value == 0 {
                "Sends no heartbeats at all: the CSMS hears from the charger only when something happens.".into()
            } else if *value < *HEARTBEAT_RANGE.start() {
                format!("Sends a heartbeat every {value} s: more mobile data and CSMS load for no gain.")
            } else {
                format!("Sends a heartbeat every {value} s: the CSMS may take that long to notice a charger that went offline.")
            },
            Rule::ShortMeterValueInterval { .. } => "Accepts it; some measurands are sampled about once a second, so values may be a second old, and short intervals were not tested under load or poor connectivity.".into(),
            Rule::TransactionMessageError { .. } => "Counts the CALLERROR as a failed attempt and sends the message again after TransactionMessageRetryInterval, up to TransactionMessageAttempts times; after the last attempt the message is dropped and the CSMS never sees it.".into(),
            Rule::IdTagNotAccepted { status, .. } => format!("Does not charge for this card (status {status}) and keeps the answer in its authorization cache."),
            Rule::NoRemoteStart { .. } => "Waits for a card, a RemoteStartTransaction or FreeCharging before it starts a session.".into(),
            Rule::CsmsClosedConnection => "Reconnects with backoff; after some disconnect events it may not reconnect by itself (known issue).".into(),
            Rule::CloseWithoutAck => "May not reconnect by itself after this kind of disconnect (known issue): the charger can stay offline until it is restarted.".into(),
            Rule::DiagnosticsRequested => "Uploads diagnostics only where Zaptec has enabled the diagnostics log on that charger; otherwise DiagnosticsStatus may be misleading (it may even report Uploaded).".into(),
            Rule::SuspendedSwitching { .. } => "A rare crash at the hourly synchronization is linked to smart charging that switches the charger to and from SuspendedEV very often (known issue).".into(),
            Rule::ResetRequested => "Restarts, but a rare issue may make the reset fail (known issue).".into(),
            Rule::UpdateFirmwareRequested => "Gets its firmware from the Zaptec cloud only: firmware files are not distributed to operators, so a CSMS firmware update has nothing to install.".into(),
            Rule::Assumption { key, emulated, why } => format!("The release notes say the key is supported but not its value: the emulated charger uses {key} = {emulated}, which may differ on the real charger. {why}"),
            Rule::ClockAlignedUpperBound { .. } => "The two release notes disagree on the upper bound of meter value intervals (0 to 4294967 in one, 0 to UINT32_T in the other). The emulated charger keeps to the lower bound and rejects this value; the real charger may accept it, so what the CSMS sees here may differ from the site.".into(),
            Rule::AuthorizationKeyChanged => "Stores the new key and, at security profile 1, reconnects at once with the new credentials.".into(),
            Rule::Unreachable { detail, .. } => format!("Keeps retrying with backoff and never registers. Last error: {detail}"),
        }
    }

    /// What the operator can do instead.
    pub fn advice(&self) -> String {
        match self {
            Rule::ChargingRateUnitW { .. } => "Configure the CSMS to send charging schedules in amperes (chargingRateUnit A) for this charger; it reports ChargingScheduleAllowedChargingRateUnit = Current.".into(),
            Rule::RecurringWithoutStartSchedule { .. } => "Give every Recurring profile a startSchedule (in UTC), or send an Absolute profile.".into(),
            Rule::UnsupportedKey { key } => match key.as_str() {
                "ConnectorSwitch3to1PhaseSupported" => "Do not rely on 3-to-1 phase switching; limit the current in A instead.".into(),
                "AdditionalRootCertificateCheck" | "CertificateSignedMaxChainSize" | "CertificateStoreMaxLength" | "CpoName" => "Leave certificate management out of this charger's template; it connects with security profile 0 or 1.".into(),
                _ => format!("Remove {key} from the CSMS's configuration template for this charger model."),
            },
            Rule::UnsupportedMeasurand { .. } => "Ask only for Current.Import, Current.Offered, Energy.Active.Import.Register, Energy.Active.Import.Interval, Temperature or Voltage.".into(),
            Rule::SecurityProfileAbove1 { .. } => "Run this charger on security profile 1 (HTTP Basic authentication, over wss:// if wanted) and register its AuthorizationKey at the CSMS.".into(),
            Rule::WhitepaperOperation { action } => match action.as_str() {
                "GetLog" => "Use GetDiagnostics with an http(s) location instead.".into(),
                "SignedUpdateFirmware" => "Leave firmware updates to the Zaptec cloud.".into(),
                "ExtendedTriggerMessage" => "Use TriggerMessage (Remote Trigger profile) instead.".into(),
                _ => "Leave certificate management out for this charger; it connects with security profile 0 or 1.".into(),
            },
            Rule::FtpLocation { .. } => "Give an http:// or https:// location.".into(),
            Rule::SendLocalListTooLarge { .. } => "Send the list in parts of at most 255 entries (a Full update, then Differential updates).".into(),
            Rule::LocalListTooLarge { .. } => "Keep the local list at 1024 entries or fewer; the other cards are checked online with Authorize and cached.".into(),
            Rule::ReservationWhileFreeCharging => "Do not offer reservations on this charger while FreeCharging is on, or turn FreeCharging off first.".into(),
            Rule::NonUtcTimestamp { .. } => "Send every timestamp in UTC with a Z suffix, such as 2025-06-01T12:00:00Z.".into(),
            Rule::BootNotAccepted { .. } => "Register the charge point id at the CSMS (and its serial number, where the CSMS checks it) so that BootNotification is Accepted; the CSMS must not require meterSerialNumber or meterType.".into(),
            Rule::BootPending { .. } => "Accept the charger at once when it is registered, so that status and sessions are reported from the first minute.".into(),
            Rule::UnansweredCall { .. } => "The CSMS must answer every CALL within MessageTimeout; look up the message id in the CSMS's logs.".into(),
            Rule::HeartbeatInterval { .. } => "Use a heartbeat interval between 30 s and 24 h; 300 to 900 s is common.".into(),
            Rule::ShortMeterValueInterval { .. } => "Use meter value intervals of 10 s or more; 60 to 900 s is common.".into(),
            Rule::TransactionMessageError { .. } => "The CSMS must accept every schema-valid transaction message; check its logs for why it answered with an error.".into(),
            Rule::IdTagNotAccepted { id_tag, expected, .. } => if *expected {
                format!("Register card {id_tag} at the CSMS as valid for this charge point.")
            } else {
                format!("If card {id_tag} should work here, register it at the CSMS; list it under [commissioning] accepted_id_tags to make this check blocking.")
            },
            Rule::NoRemoteStart { expected, .. } => if *expected {
                "Check that the CSMS (or its app) starts sessions on this charge point id with RemoteStartTransaction, and that the charger is Accepted first.".into()
            } else {
                "If sessions here are started from an app, check the CSMS's RemoteStartTransaction; set remote_start = true under [commissioning] to make this check blocking.".into()
            },
            Rule::CsmsClosedConnection => "Keep the connection open; if the CSMS must close it, it should first answer every message the charger sent.".into(),
            Rule::CloseWithoutAck => "Have the CSMS answer the charger's last message before it closes the connection, or avoid closing it.".into(),
            Rule::DiagnosticsRequested => "Ask Zaptec to enable the diagnostics log on this charger before relying on GetDiagnostics.".into(),
            Rule::SuspendedSwitching { .. } => "Smooth the smart-charging schedule: fewer, longer periods, and a minimum current instead of 0 A where possible.".into(),
            Rule::ResetRequested => "Reset only when needed and check that the charger comes back (BootNotification) afterwards.".into(),
            Rule::UpdateFirmwareRequested => "Disable firmware management for this charger in the CSMS; Zaptec updates it from its cloud.".into(),
            Rule::Assumption { key, .. } => format!("Do not depend on the exact value of {key}; read it from the charger and stay well within it."),
            Rule::ClockAlignedUpperBound { .. } => "Keep ClockAlignedDataInterval at 4294967 s or less, which both release notes allow; a day (86400 s) or less is usual.".into(),
            Rule::AuthorizationKeyChanged => "Rotate the key only when the charger is online, and check that it reconnects with the new one.".into(),
            Rule::Unreachable { failure, .. } => match failure {
                ConnectFailure::Dns => "Check the host name in the CSMS URL.".into(),
                ConnectFailure::TcpRefused => "Check the host and port in the CSMS URL, and that the CSMS is running.".into(),
                ConnectFailure::Timeout => "Check that the CSMS is reachable from the site (firewall, APN, routing).".into(),
                ConnectFailure::Tls => "Check that the CSMS serves wss:// on that port.".into(),
                ConnectFailure::HttpStatus { status: 401 | 403 } => "Check the charge point id and the AuthorizationKey registered at the CSMS (security profile 1 sends HTTP Basic auth).".into(),
                ConnectFailure::HttpStatus { status: 404 } => "Check the path of the CSMS URL: the charger appends /<charge point id> to it.".into(),
                ConnectFailure::HttpStatus { .. } => "Check the CSMS URL and that the charge point id is registered.".into(),
                ConnectFailure::NoSubprotocol => "The CSMS must offer the ocpp1.6 WebSocket subprotocol on this URL (OCPP 1.6J).".into(),
                ConnectFailure::BadUrl => "Give a ws:// or wss:// URL with a host.".into(),
                ConnectFailure::Other => "Check the CSMS URL and the network.".into(),
            },
        }
    }

    /// A new finding for this rule, first seen in `request`.
    pub fn finding(&self, request: Option<Request>, detail: Option<String>) -> Finding {
        Finding {
            rule: self.id().to_string(),
            subject: self.subject(),
            severity: self.severity(),
            area: self.area(),
            title: self.title(),
            count: 1,
            request,
            detail,
            charger: self.charger(),
            release_note: Quote::of_line(self.note_line()),
            advice: self.advice(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_rule() -> Vec<Rule> {
        let mut rules = vec![
            Rule::ChargingRateUnitW {
                action: "SetChargingProfile".into(),
            },
            Rule::RecurringWithoutStartSchedule {
                action: "SetChargingProfile".into(),
            },
            Rule::UnsupportedMeasurand {
                key: "MeterValuesSampledData".into(),
                measurand: "Power.Active.Import".into(),
            },
            Rule::SecurityProfileAbove1 { value: "2".into() },
            Rule::FtpLocation {
                action: "GetDiagnostics".into(),
                scheme: "ftp".into(),
            },
            Rule::SendLocalListTooLarge { entries: 300 },
            Rule::LocalListTooLarge { total: 2000 },
            Rule::ReservationWhileFreeCharging,
            Rule::NonUtcTimestamp {
                action: "ReserveNow".into(),
                field: "expiryDate".into(),
            },
            Rule::BootNotAccepted {
                status: "Pending".into(),
            },
            Rule::BootPending { seconds: 40 },
            Rule::UnansweredCall {
                action: "StartTransaction".into(),
                timeout_s: 30,
            },
            Rule::HeartbeatInterval {
                value: 10,
                source: "BootNotification".into(),
            },
            Rule::ShortMeterValueInterval {
                key: "MeterValueSampleInterval".into(),
                value: 1,
            },
            Rule::TransactionMessageError {
                action: "StartTransaction".into(),
                code: "InternalError".into(),
            },
            Rule::IdTagNotAccepted {
                id_tag: "T1".into(),
                status: "Invalid".into(),
                expected: true,
            },
            Rule::NoRemoteStart {
                waited_s: 60,
                expected: true,
            },
            Rule::CsmsClosedConnection,
            Rule::CloseWithoutAck,
            Rule::DiagnosticsRequested,
            Rule::SuspendedSwitching { per_hour: 5 },
            Rule::ResetRequested,
            Rule::UpdateFirmwareRequested,
            Rule::ClockAlignedUpperBound { value: 5_000_000 },
            Rule::AuthorizationKeyChanged,
        ];
        for (key, _) in UNSUPPORTED_KEYS {
            rules.push(Rule::UnsupportedKey {
                key: key.to_string(),
            });
        }
        for (action, _) in WHITEPAPER_OPERATIONS {
            rules.push(Rule::WhitepaperOperation {
                action: action.to_string(),
            });
        }
        for key in [
            "GetConfigurationMaxKeys",
            "ChargeProfileMaxStackLevel",
            "ChargingScheduleMaxPeriods",
            "MaxChargingProfilesInstalled",
            "ReserveConnectorZeroSupported",
        ] {
            rules.push(Rule::Assumption {
                key: key.into(),
                emulated: "8".into(),
                why: String::new(),
            });
        }
        for failure in [
            ConnectFailure::Dns,
            ConnectFailure::TcpRefused,
            ConnectFailure::Timeout,
            ConnectFailure::Tls,
            ConnectFailure::HttpStatus { status: 401 },
            ConnectFailure::NoSubprotocol,
        ] {
            rules.push(Rule::Unreachable {
                failure,
                detail: "x".into(),
            });
        }
        rules
    }

    #[test]
    fn every_quote_is_a_verbatim_line_of_the_release_notes() {
        let lines: Vec<&str> = RELEASE_NOTES.lines().collect();
        for rule in every_rule() {
            let q = Quote::of_line(rule.note_line());
            assert!(q.text.len() > 10, "{}: empty quote", rule.id());
            let line = lines[q.line - 1];
            assert!(
                line.contains(&q.text),
                "{}: {:?} not on line {}",
                rule.id(),
                q.text,
                q.line
            );
        }
    }

    #[test]
    fn quotes_name_what_the_rule_is_about() {
        let cases = [
            (
                Rule::ChargingRateUnitW {
                    action: "SetChargingProfile".into(),
                },
                "Only 'A' is allowed as ChargingRateUnitType",
            ),
            (
                Rule::RecurringWithoutStartSchedule {
                    action: "SetChargingProfile".into(),
                },
                "startSchedule is required on recurring schedules",
            ),
            (
                Rule::UnsupportedKey {
                    key: "BlinkRepeat".into(),
                },
                "Configuration for BlinkRepeat is not supported",
            ),
            (
                Rule::UnsupportedKey {
                    key: "CpoName".into(),
                },
                "Configuration for CpoName is not supported",
            ),
            (
                Rule::WhitepaperOperation {
                    action: "GetLog".into(),
                },
                "GetLog is not supported",
            ),
            (
                Rule::SecurityProfileAbove1 { value: "2".into() },
                "SecurityProfile can only be set to 0 or 1.",
            ),
            (
                Rule::FtpLocation {
                    action: "UpdateFirmware".into(),
                    scheme: "ftp".into(),
                },
                "FTP(s) is not supported",
            ),
            (
                Rule::NonUtcTimestamp {
                    action: "ReserveNow".into(),
                    field: "expiryDate".into(),
                },
                "CP expects CS to use timestamp in UTC",
            ),
            (
                Rule::ResetRequested,
                "A rare issue may cause a reset to fail.",
            ),
            (
                Rule::UpdateFirmwareRequested,
                "We do not distribute firmware files; all firmware updates are provided by the Zaptec cloud",
            ),
        ];
        for (rule, text) in cases {
            assert_eq!(Quote::of_line(rule.note_line()).text, text, "{}", rule.id());
        }
    }

    #[test]
    fn ids_are_unique_per_variant_and_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for rule in every_rule() {
            let id = rule.id();
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{id}"
            );
            seen.insert((id, rule.subject()));
        }
        assert!(seen.len() > 30);
    }

    #[test]
    fn credentials_in_urls_are_scrubbed() {
        assert_eq!(
            scrub_userinfo("cannot connect to wss://cp:s3cret@csms.example.com/ocpp/CP1: refused"),
            "cannot connect to wss://<redacted>@csms.example.com/ocpp/CP1: refused"
        );
        assert_eq!(
            scrub_userinfo(r#"{"location":"ftp://u:p@h/x","b":"http://h/@x"}"#),
            r#"{"location":"ftp://<redacted>@h/x","b":"http://h/@x"}"#
        );
        assert_eq!(scrub_userinfo("no url here"), "no url here");
    }

    #[test]
    fn excerpts_redact_the_authorization_key_and_are_bounded() {
        let frame = serde_json::json!([2, "7", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "00112233445566778899aabbccddeeff"}]);
        let r = Request::new(
            Duration::from_millis(1500),
            Utc::now(),
            "received",
            Some("ChangeConfiguration"),
            &frame,
        );
        assert!(!r.excerpt.contains("0011223344"), "{}", r.excerpt);
        assert!(r.excerpt.contains(crate::stack::secret::REDACTED));
        assert_eq!(r.message_id.as_deref(), Some("7"));
        assert_eq!(r.elapsed_s, 1.5);
        let big = serde_json::json!([2, "8", "SendLocalList", {"x": "y".repeat(5000)}]);
        let r = Request::new(Duration::ZERO, Utc::now(), "received", None, &big);
        assert_eq!(r.excerpt.chars().count(), EXCERPT_CHARS);
    }
}
