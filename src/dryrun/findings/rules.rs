//! What each [`Rule`] of the catalogue means: its id, subject, severity and area, the line of
//! the release notes it rests on, and the texts the report shows (title, what the real charger
//! does, advice), with the tables of unsupported keys and operations they quote.

use super::{
    Area, ConnectFailure, Finding, HEARTBEAT_RANGE, Quote, Request, Rule,
    SUSPENDED_SWITCHES_PER_HOUR, Severity,
};

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
