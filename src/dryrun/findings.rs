//! The catalogue of findings: every way a CSMS can trip the real charger that a dry run detects.
//!
//! Each [`Rule`] names what was seen; [`Finding`] is what the report shows: a severity, an area,
//! the request that hit it (time, message id, action, an excerpt with secrets redacted), what
//! the real charger does, the release-note line it comes from (quoted verbatim from the notes
//! embedded in this build), and what the operator can do instead. Findings are deduplicated by
//! rule and subject: one finding with a count and the first request, not 300 copies.
//!
//! Files: this one declares the rules and what a finding carries; `rules.rs` says what each
//! rule means and how the report words it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

mod rules;

pub use rules::{UNSUPPORTED_KEYS, WHITEPAPER_OPERATIONS};

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
