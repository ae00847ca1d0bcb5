//! The charger's configuration keys: one registry of every key, typed values, validation and
//! atomic persistence.
//!
//! Both the OCPP `ChangeConfiguration` handler and the serial service port's `config set` call
//! [`Configuration::change`]; the [`Channel`] argument is the only difference between them.
//!
//! # What is in the registry
//!
//! Every OCPP 1.6 Core key (with the errata v4.0 additions `MessageTimeout` and
//! `StopTransactionMaxMeterValues`), the optional Core keys the release notes list as supported,
//! the keys of the Firmware Management, Local Auth List Management, Reservation and Smart
//! Charging profiles, the Security whitepaper keys `SecurityProfile` and `AuthorizationKey`, the
//! vendor keys `FreeCharging`, `FreeChargingIdTag` and `LockCablePermanently`, and three keys
//! only the service port sees (`CsmsUrl`, `ChargePointId`, `BasicAuthPassword`). Keys the
//! release notes name as not supported (`BlinkRepeat`, `MaxEnergyOnInvalidId`,
//! `ConnectorSwitch3to1PhaseSupported`, the OCMF signature keys, the certificate keys,
//! `CpoName`) are absent, so they answer `NotSupported` / `unknownKey`.
//!
//! # Defaults
//!
//! Each [`KeySpec::default`] is the value at first boot. The choices worth knowing:
//! HeartbeatInterval 86400 (BootNotification.conf's interval replaces it at once),
//! MeterValueSampleInterval 60, ClockAlignedDataInterval 0 (off), MessageTimeout 30,
//! ConnectionTimeOut 30, TransactionMessageAttempts 3, TransactionMessageRetryInterval 60,
//! WebSocketPingInterval 30, ResetRetries 2, LightIntensity 100, MinimumStatusDuration 0,
//! AuthorizeRemoteTxRequests false, LocalAuthorizeOffline true, LocalPreAuthorize false,
//! AuthorizationCacheEnabled true, LocalAuthListEnabled true, MeterValues*Data
//! `Energy.Active.Import.Register`, StopTxn*Data empty (no meter values in StopTransaction),
//! NumberOfConnectors 1, ConnectorPhaseRotation `0.RST,1.RST`, every *DataMaxLength 6 (the
//! number of supported measurands), ConnectorPhaseRotationMaxLength 2, GetConfigurationMaxKeys
//! 64, StopTransactionMaxMeterValues 100, ChargeProfileMaxStackLevel 8,
//! ChargingScheduleMaxPeriods 24, MaxChargingProfilesInstalled 10,
//! ReserveConnectorZeroSupported false (one connector: reserving connector 0 adds nothing),
//! FreeChargingIdTag `FreeCharging`, ChargePointId `ZAP000001`, CsmsUrl empty (not configured),
//! BasicAuthPassword `bytes`, SecurityProfile 0 with no AuthorizationKey.
//!
//! Integer ranges beyond the OCPP minimum: ClockAlignedDataInterval, MinimumStatusDuration and
//! WebSocketPingInterval 0..=86400, ConnectionTimeOut and MessageTimeout 1..=3600,
//! TransactionMessageRetryInterval 1..=86400, ResetRetries and TransactionMessageAttempts
//! 0..=100; HeartbeatInterval and MeterValueSampleInterval 0..=4294967 (release notes).
//!
//! # Reboot-required keys
//!
//! The stack reads every OCPP key when it needs it (the heartbeat timer, the meter sampler and
//! the authorization path consult the current value), so no OCPP key needs a reboot, including
//! `LocalAuthListEnabled` (the local list is kept whether enabled or not; the flag only decides
//! whether it is consulted). `SecurityProfile` is applied by reconnecting, not rebooting.
//! The three service-port keys `CsmsUrl`, `ChargePointId` and `BasicAuthPassword` define the
//! connection itself: the charger reads them when it boots, so changing them answers
//! `RebootRequired` and the installer reboots the charger (`chargectl reboot`).
//!
//! # Read-only keys
//!
//! Read-only keys are facts of this firmware build (list sizes, supported profiles, number of
//! connectors) and are not stored, so an upgraded build never runs with the limits of an older
//! one. A read-only key changed with [`Configuration::set_internal`] (an emulated charger with
//! two connectors) is stored under `overrides` and survives a restart.
//!
//! # Security rules
//!
//! `SecurityProfile` accepts 0 or 1 (the release notes). Over OCPP it only goes up (whitepaper
//! A05.FR.01) and 1 needs an `AuthorizationKey` (A05.FR.02). Over the service port an installer
//! with the charger in hand may also lower it (moving a charger to another CSMS); 1 still needs
//! a key. `AuthorizationKey` is write-only: 16 to 20 bytes written as 32 to 40 hex digits; it
//! never appears in [`Entry`], `Debug`, errors or logs, and lives in its own file with mode
//! 0600. Over the service port an empty value removes the key, allowed only at profile 0.
//!
//! # Persistence
//!
//! `<state_dir>/config.json`: `{"version": 1, "values": {"Key": "value", ...}, "overrides":
//! {...}}` (every writable key; read-only keys only where set_internal changed them) written with
//! [`storage::write_atomic`]. `<state_dir>/secrets.json`: `{"version": 1, "AuthorizationKey":
//! "..."}` written with [`storage::write_atomic_private`]. A value for a key this build does not
//! know is ignored; a key missing from the file gets its default; a stored value that fails
//! validation is an [`Error`] naming the file and key. A failed write leaves memory unchanged.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::stack::secret::{REDACTED, Secret};
use crate::storage;

/// Version of `config.json` and `secrets.json` this build writes and reads.
pub const FILE_VERSION: u32 = 1;
/// File name of the configuration document inside the state directory.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the secrets document (mode 0600) inside the state directory.
pub const SECRETS_FILE: &str = "secrets.json";

/// The measurands this charger can sample (release notes, OCPP Core limitations).
pub const SUPPORTED_MEASURANDS: [&str; 6] = [
    "Current.Import",
    "Current.Offered",
    "Energy.Active.Import.Register",
    "Energy.Active.Import.Interval",
    "Temperature",
    "Voltage",
];

/// Phase rotations allowed in `ConnectorPhaseRotation` (OCPP 1.6 §9.1.7).
pub const PHASE_ROTATIONS: [&str; 8] = [
    "NotApplicable",
    "Unknown",
    "RST",
    "RTS",
    "SRT",
    "STR",
    "TRS",
    "TSR",
];

/// Names of every key, so callers cannot misspell them.
pub mod keys {
    pub const ALLOW_OFFLINE_TX_FOR_UNKNOWN_ID: &str = "AllowOfflineTxForUnknownId";
    pub const AUTHORIZATION_CACHE_ENABLED: &str = "AuthorizationCacheEnabled";
    pub const AUTHORIZE_REMOTE_TX_REQUESTS: &str = "AuthorizeRemoteTxRequests";
    pub const CLOCK_ALIGNED_DATA_INTERVAL: &str = "ClockAlignedDataInterval";
    pub const CONNECTION_TIME_OUT: &str = "ConnectionTimeOut";
    pub const CONNECTOR_PHASE_ROTATION: &str = "ConnectorPhaseRotation";
    pub const CONNECTOR_PHASE_ROTATION_MAX_LENGTH: &str = "ConnectorPhaseRotationMaxLength";
    pub const GET_CONFIGURATION_MAX_KEYS: &str = "GetConfigurationMaxKeys";
    pub const HEARTBEAT_INTERVAL: &str = "HeartbeatInterval";
    pub const LIGHT_INTENSITY: &str = "LightIntensity";
    pub const LOCAL_AUTHORIZE_OFFLINE: &str = "LocalAuthorizeOffline";
    pub const LOCAL_PRE_AUTHORIZE: &str = "LocalPreAuthorize";
    pub const MESSAGE_TIMEOUT: &str = "MessageTimeout";
    pub const METER_VALUES_ALIGNED_DATA: &str = "MeterValuesAlignedData";
    pub const METER_VALUES_ALIGNED_DATA_MAX_LENGTH: &str = "MeterValuesAlignedDataMaxLength";
    pub const METER_VALUES_SAMPLED_DATA: &str = "MeterValuesSampledData";
    pub const METER_VALUES_SAMPLED_DATA_MAX_LENGTH: &str = "MeterValuesSampledDataMaxLength";
    pub const METER_VALUE_SAMPLE_INTERVAL: &str = "MeterValueSampleInterval";
    pub const MINIMUM_STATUS_DURATION: &str = "MinimumStatusDuration";
    pub const NUMBER_OF_CONNECTORS: &str = "NumberOfConnectors";
    pub const RESET_RETRIES: &str = "ResetRetries";
    pub const STOP_TRANSACTION_MAX_METER_VALUES: &str = "StopTransactionMaxMeterValues";
    pub const STOP_TRANSACTION_ON_EV_SIDE_DISCONNECT: &str = "StopTransactionOnEVSideDisconnect";
    pub const STOP_TRANSACTION_ON_INVALID_ID: &str = "StopTransactionOnInvalidId";
    pub const STOP_TXN_ALIGNED_DATA: &str = "StopTxnAlignedData";
    pub const STOP_TXN_ALIGNED_DATA_MAX_LENGTH: &str = "StopTxnAlignedDataMaxLength";
    pub const STOP_TXN_SAMPLED_DATA: &str = "StopTxnSampledData";
    pub const STOP_TXN_SAMPLED_DATA_MAX_LENGTH: &str = "StopTxnSampledDataMaxLength";
    pub const SUPPORTED_FEATURE_PROFILES: &str = "SupportedFeatureProfiles";
    pub const SUPPORTED_FEATURE_PROFILES_MAX_LENGTH: &str = "SupportedFeatureProfilesMaxLength";
    pub const TRANSACTION_MESSAGE_ATTEMPTS: &str = "TransactionMessageAttempts";
    pub const TRANSACTION_MESSAGE_RETRY_INTERVAL: &str = "TransactionMessageRetryInterval";
    pub const UNLOCK_CONNECTOR_ON_EV_SIDE_DISCONNECT: &str = "UnlockConnectorOnEVSideDisconnect";
    pub const WEB_SOCKET_PING_INTERVAL: &str = "WebSocketPingInterval";
    pub const LOCAL_AUTH_LIST_ENABLED: &str = "LocalAuthListEnabled";
    pub const LOCAL_AUTH_LIST_MAX_LENGTH: &str = "LocalAuthListMaxLength";
    pub const SEND_LOCAL_LIST_MAX_LENGTH: &str = "SendLocalListMaxLength";
    pub const RESERVE_CONNECTOR_ZERO_SUPPORTED: &str = "ReserveConnectorZeroSupported";
    pub const CHARGE_PROFILE_MAX_STACK_LEVEL: &str = "ChargeProfileMaxStackLevel";
    pub const CHARGING_SCHEDULE_ALLOWED_CHARGING_RATE_UNIT: &str =
        "ChargingScheduleAllowedChargingRateUnit";
    pub const CHARGING_SCHEDULE_MAX_PERIODS: &str = "ChargingScheduleMaxPeriods";
    pub const MAX_CHARGING_PROFILES_INSTALLED: &str = "MaxChargingProfilesInstalled";
    pub const SUPPORTED_FILE_TRANSFER_PROTOCOLS: &str = "SupportedFileTransferProtocols";
    pub const SECURITY_PROFILE: &str = "SecurityProfile";
    pub const AUTHORIZATION_KEY: &str = "AuthorizationKey";
    pub const FREE_CHARGING: &str = "FreeCharging";
    pub const FREE_CHARGING_ID_TAG: &str = "FreeChargingIdTag";
    pub const LOCK_CABLE_PERMANENTLY: &str = "LockCablePermanently";
    pub const CSMS_URL: &str = "CsmsUrl";
    pub const CHARGE_POINT_ID: &str = "ChargePointId";
    pub const BASIC_AUTH_PASSWORD: &str = "BasicAuthPassword";
}

use keys::*;

/// Errors of the configuration store. None of them ever carries the AuthorizationKey.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid configuration document: {problem}", .path.display())]
    Corrupt { path: PathBuf, problem: String },
    #[error("{} has version {found}; this build reads version {FILE_VERSION}", .path.display())]
    Version { path: PathBuf, found: u32 },
    #[error("{}: key {key}: {reason}", .path.display())]
    StoredValue {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("unknown configuration key {0}")]
    UnknownKey(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Who may read and write a key over OCPP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
    WriteOnly,
}

/// The type of a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `true` or `false`, accepted in any case, stored lower-case.
    Boolean,
    /// A decimal integer within `min..=max`.
    Integer { min: i64, max: i64 },
    /// A comma-separated list.
    List,
    /// Free text (further rules per key).
    Text,
}

impl ValueType {
    /// The name used in [`Entry::value_type`].
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Boolean => "boolean",
            ValueType::Integer { .. } => "integer",
            ValueType::List => "list",
            ValueType::Text => "string",
        }
    }
}

/// Where a key can be seen and changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Over OCPP and over the service port.
    Ocpp,
    /// Over the service port only; OCPP answers `NotSupported` / `unknownKey`.
    ServiceOnly,
}

/// The channel a request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// GetConfiguration / ChangeConfiguration from the CSMS.
    Ocpp,
    /// `config get` / `config set` over the serial service port.
    Service,
}

/// Key-specific rules beyond the value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Nothing beyond the value type.
    Plain,
    /// A boolean that only accepts `true` (StopTransactionOnEVSideDisconnect).
    OnlyTrue,
    /// A list of supported measurands, at most as many as the named MaxLength key.
    Measurands { max_length_key: &'static str },
    /// `ConnectorPhaseRotation`.
    PhaseRotation,
    /// An OCPP IdToken (1 to 20 characters).
    IdToken,
    /// `SecurityProfile`.
    SecurityProfile,
    /// `AuthorizationKey`.
    AuthorizationKey,
    /// A ws:// or wss:// URL, or empty for "not configured".
    WebSocketUrl,
    /// `ChargePointId`.
    ChargePointId,
    /// One of a fixed set of words.
    OneOf(&'static [&'static str]),
}

/// One configuration key.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub name: &'static str,
    pub value_type: ValueType,
    pub access: Access,
    pub visibility: Visibility,
    pub reboot_required: bool,
    /// OCPP feature profile (`Core`, `SmartCharging`, ...), `Security`, `Vendor` or `Service`.
    pub profile: &'static str,
    pub description: &'static str,
    /// Value at first boot (empty for AuthorizationKey, which starts unset).
    pub default: &'static str,
    rule: Rule,
}

impl KeySpec {
    /// True for the AuthorizationKey-like keys kept in `secrets.json`.
    pub fn is_secret(&self) -> bool {
        self.access == Access::WriteOnly
    }

    /// The values (or list entries) this key accepts when they are a fixed set, for menus and
    /// completions: booleans, measurand lists, phase rotations, `BasicAuthPassword`.
    pub fn allowed_values(&self) -> Option<&'static [&'static str]> {
        match (self.rule, self.value_type) {
            (Rule::OnlyTrue, _) => Some(&["true"]),
            (_, ValueType::Boolean) => Some(&["true", "false"]),
            (Rule::Measurands { .. }, _) => Some(&SUPPORTED_MEASURANDS),
            (Rule::PhaseRotation, _) => Some(&PHASE_ROTATIONS),
            (Rule::OneOf(words), _) => Some(words),
            _ => None,
        }
    }
}

const U32_SECONDS_MAX: i64 = 4_294_967;
/// Longest value accepted for any key: ChangeConfiguration's `value` is a CiString500.
pub const MAX_VALUE_CHARS: usize = 500;
const ANY_INT: ValueType = ValueType::Integer {
    min: 0,
    max: i32::MAX as i64,
};

const fn int(min: i64, max: i64) -> ValueType {
    ValueType::Integer { min, max }
}

const fn key(
    name: &'static str,
    value_type: ValueType,
    access: Access,
    profile: &'static str,
    default: &'static str,
    rule: Rule,
    description: &'static str,
) -> KeySpec {
    KeySpec {
        name,
        value_type,
        access,
        visibility: Visibility::Ocpp,
        reboot_required: false,
        profile,
        description,
        default,
        rule,
    }
}

const fn service(
    name: &'static str,
    default: &'static str,
    rule: Rule,
    description: &'static str,
) -> KeySpec {
    KeySpec {
        name,
        value_type: ValueType::Text,
        access: Access::ReadWrite,
        visibility: Visibility::ServiceOnly,
        reboot_required: true,
        profile: "Service",
        description,
        default,
        rule,
    }
}

use Access::{ReadOnly as R, ReadWrite as RW, WriteOnly as W};
use ValueType::{Boolean as BOOL, List as LIST, Text as TEXT};

#[rustfmt::skip]
static REGISTRY: &[KeySpec] = &[
    // Core profile (OCPP 1.6 §9.1 and errata v4.0).
    key(ALLOW_OFFLINE_TX_FOR_UNKNOWN_ID, BOOL, RW, "Core", "false", Rule::Plain,
        "Start a transaction offline for an idTag the charger cannot authorize locally"),
    key(AUTHORIZATION_CACHE_ENABLED, BOOL, RW, "Core", "true", Rule::Plain,
        "Remember idTags the CSMS accepted, for offline and faster authorization"),
    key(AUTHORIZE_REMOTE_TX_REQUESTS, BOOL, RW, "Core", "false", Rule::Plain,
        "Authorize the idTag of RemoteStartTransaction before starting"),
    key(CLOCK_ALIGNED_DATA_INTERVAL, int(0, 86_400), RW, "Core", "0", Rule::Plain,
        "Seconds between clock-aligned meter values, aligned to midnight; 0 disables"),
    key(CONNECTION_TIME_OUT, int(1, 3_600), RW, "Core", "30", Rule::Plain,
        "Seconds from Preparing until a session without a plugged cable or idTag is cancelled"),
    key(CONNECTOR_PHASE_ROTATION, LIST, RW, "Core", "0.RST,1.RST", Rule::PhaseRotation,
        "Phase rotation per connector, <connectorId>.<rotation>"),
    key(CONNECTOR_PHASE_ROTATION_MAX_LENGTH, ANY_INT, R, "Core", "2", Rule::Plain,
        "Most entries ConnectorPhaseRotation may hold"),
    key(GET_CONFIGURATION_MAX_KEYS, ANY_INT, R, "Core", "64", Rule::Plain,
        "Most keys one GetConfiguration request may name"),
    key(HEARTBEAT_INTERVAL, int(0, U32_SECONDS_MAX), RW, "Core", "86400", Rule::Plain,
        "Seconds between heartbeats when idle; BootNotification's interval overrides it"),
    key(LIGHT_INTENSITY, int(0, 100), RW, "Core", "100", Rule::Plain,
        "LED brightness in percent"),
    key(LOCAL_AUTHORIZE_OFFLINE, BOOL, RW, "Core", "true", Rule::Plain,
        "Start transactions offline for idTags valid in the cache or local list"),
    key(LOCAL_PRE_AUTHORIZE, BOOL, RW, "Core", "false", Rule::Plain,
        "Start at once for locally valid idTags without waiting for Authorize"),
    key(MESSAGE_TIMEOUT, int(1, 3_600), RW, "Core", "30", Rule::Plain,
        "Seconds to wait for a CSMS answer before a request counts as failed"),
    key(METER_VALUES_ALIGNED_DATA, LIST, RW, "Core", "Energy.Active.Import.Register",
        Rule::Measurands { max_length_key: METER_VALUES_ALIGNED_DATA_MAX_LENGTH },
        "Measurands sent in clock-aligned MeterValues"),
    key(METER_VALUES_ALIGNED_DATA_MAX_LENGTH, ANY_INT, R, "Core", "6", Rule::Plain,
        "Most measurands MeterValuesAlignedData may hold"),
    key(METER_VALUES_SAMPLED_DATA, LIST, RW, "Core", "Energy.Active.Import.Register",
        Rule::Measurands { max_length_key: METER_VALUES_SAMPLED_DATA_MAX_LENGTH },
        "Measurands sampled during a transaction"),
    key(METER_VALUES_SAMPLED_DATA_MAX_LENGTH, ANY_INT, R, "Core", "6", Rule::Plain,
        "Most measurands MeterValuesSampledData may hold"),
    key(METER_VALUE_SAMPLE_INTERVAL, int(0, U32_SECONDS_MAX), RW, "Core", "60", Rule::Plain,
        "Seconds between sampled meter values in a transaction; 0 disables"),
    key(MINIMUM_STATUS_DURATION, int(0, 86_400), RW, "Core", "0", Rule::Plain,
        "Seconds a status must hold before StatusNotification is sent"),
    key(NUMBER_OF_CONNECTORS, ANY_INT, R, "Core", "1", Rule::Plain,
        "Number of physical connectors"),
    key(RESET_RETRIES, int(0, 100), RW, "Core", "2", Rule::Plain,
        "Times to retry a failed reset"),
    key(STOP_TRANSACTION_MAX_METER_VALUES, ANY_INT, R, "Core", "100", Rule::Plain,
        "Most meter values in StopTransaction's transactionData"),
    key(STOP_TRANSACTION_ON_EV_SIDE_DISCONNECT, BOOL, RW, "Core", "true", Rule::OnlyTrue,
        "Stop the transaction when the cable is unplugged on the EV side (only true accepted)"),
    key(STOP_TRANSACTION_ON_INVALID_ID, BOOL, RW, "Core", "true", Rule::Plain,
        "Stop a transaction whose idTag the CSMS rejects in StartTransaction.conf"),
    key(STOP_TXN_ALIGNED_DATA, LIST, RW, "Core", "",
        Rule::Measurands { max_length_key: STOP_TXN_ALIGNED_DATA_MAX_LENGTH },
        "Clock-aligned measurands in StopTransaction; empty sends none"),
    key(STOP_TXN_ALIGNED_DATA_MAX_LENGTH, ANY_INT, R, "Core", "6", Rule::Plain,
        "Most measurands StopTxnAlignedData may hold"),
    key(STOP_TXN_SAMPLED_DATA, LIST, RW, "Core", "",
        Rule::Measurands { max_length_key: STOP_TXN_SAMPLED_DATA_MAX_LENGTH },
        "Sampled measurands in StopTransaction; empty sends none"),
    key(STOP_TXN_SAMPLED_DATA_MAX_LENGTH, ANY_INT, R, "Core", "6", Rule::Plain,
        "Most measurands StopTxnSampledData may hold"),
    key(SUPPORTED_FEATURE_PROFILES, LIST, R, "Core",
        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger",
        Rule::Plain, "Feature profiles this charger implements"),
    key(SUPPORTED_FEATURE_PROFILES_MAX_LENGTH, ANY_INT, R, "Core", "6", Rule::Plain,
        "Most entries SupportedFeatureProfiles may hold"),
    key(TRANSACTION_MESSAGE_ATTEMPTS, int(0, 100), RW, "Core", "3", Rule::Plain,
        "Times a transaction message is sent when the CSMS fails to process it"),
    key(TRANSACTION_MESSAGE_RETRY_INTERVAL, int(1, 86_400), RW, "Core", "60", Rule::Plain,
        "Seconds before the first retry of a transaction message, multiplied per attempt"),
    key(UNLOCK_CONNECTOR_ON_EV_SIDE_DISCONNECT, BOOL, RW, "Core", "true", Rule::Plain,
        "Unlock the cable when it is unplugged on the EV side"),
    key(WEB_SOCKET_PING_INTERVAL, int(0, 86_400), RW, "Core", "30", Rule::Plain,
        "Seconds between WebSocket pings; 0 disables"),
    // Local Auth List Management.
    key(LOCAL_AUTH_LIST_ENABLED, BOOL, RW, "LocalAuthListManagement", "true", Rule::Plain,
        "Consult the local authorization list"),
    key(LOCAL_AUTH_LIST_MAX_LENGTH, ANY_INT, R, "LocalAuthListManagement", "1024", Rule::Plain,
        "Most idTags the local authorization list holds"),
    key(SEND_LOCAL_LIST_MAX_LENGTH, ANY_INT, R, "LocalAuthListManagement", "255", Rule::Plain,
        "Most idTags one SendLocalList may carry"),
    // Reservation.
    key(RESERVE_CONNECTOR_ZERO_SUPPORTED, BOOL, R, "Reservation", "false", Rule::Plain,
        "Whether connector 0 (the whole charger) can be reserved"),
    // Smart Charging.
    key(CHARGE_PROFILE_MAX_STACK_LEVEL, ANY_INT, R, "SmartCharging", "8", Rule::Plain,
        "Highest stackLevel a charging profile may use"),
    key(CHARGING_SCHEDULE_ALLOWED_CHARGING_RATE_UNIT, LIST, R, "SmartCharging", "Current",
        Rule::Plain, "Charging rate units accepted in schedules (A only)"),
    key(CHARGING_SCHEDULE_MAX_PERIODS, ANY_INT, R, "SmartCharging", "24", Rule::Plain,
        "Most periods one charging schedule may hold"),
    key(MAX_CHARGING_PROFILES_INSTALLED, ANY_INT, R, "SmartCharging", "10", Rule::Plain,
        "Most charging profiles installed at once"),
    // Firmware Management.
    key(SUPPORTED_FILE_TRANSFER_PROTOCOLS, LIST, R, "FirmwareManagement", "HTTP,HTTPS",
        Rule::Plain, "Protocols for firmware download and diagnostics upload"),
    // Security whitepaper edition 3.
    key(SECURITY_PROFILE, int(0, 1), RW, "Security", "0", Rule::SecurityProfile,
        "0 = no authentication, 1 = HTTP Basic authentication; only raised over OCPP"),
    key(AUTHORIZATION_KEY, TEXT, W, "Security", "", Rule::AuthorizationKey,
        "HTTP Basic password, 16 to 20 bytes written as hex; write-only"),
    // Vendor keys (release notes).
    key(FREE_CHARGING, BOOL, RW, "Vendor", "false", Rule::Plain,
        "Charge without RFID or RemoteStartTransaction"),
    key(FREE_CHARGING_ID_TAG, TEXT, RW, "Vendor", "FreeCharging", Rule::IdToken,
        "idTag used for transactions while FreeCharging is true"),
    key(LOCK_CABLE_PERMANENTLY, BOOL, RW, "Vendor", "false", Rule::Plain,
        "Behave as a fixed-cable charger: keep the cable locked"),
    // Service port only.
    service(CSMS_URL, "", Rule::WebSocketUrl,
        "CSMS endpoint (ws:// or wss://); the charge point id is appended"),
    service(CHARGE_POINT_ID, "ZAP000001", Rule::ChargePointId,
        "Identity of this charger at the CSMS, last path segment of the URL"),
    service(BASIC_AUTH_PASSWORD, "bytes", Rule::OneOf(&["bytes", "hex"]),
        "HTTP Basic password from AuthorizationKey: bytes = decoded key, hex = the hex text"),
];

/// Every key of this charger, in the order GetConfiguration lists them.
pub fn registry() -> &'static [KeySpec] {
    REGISTRY
}

/// The key named exactly `name` (case-sensitive, as OCPP keys are).
pub fn spec(name: &str) -> Option<&'static KeySpec> {
    REGISTRY.iter().find(|s| s.name == name)
}

fn index_of(name: &str) -> Option<usize> {
    REGISTRY.iter().position(|s| s.name == name)
}

/// Answer to a change request, as ChangeConfiguration.conf reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    Accepted,
    RebootRequired,
    /// Why the change was refused; never contains a secret value.
    Rejected(String),
    NotSupported,
}

/// One key as GetConfiguration (or `config get`) reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub key: String,
    pub readonly: bool,
    /// `None` for write-only keys.
    pub value: Option<String>,
    pub value_type: String,
    pub reboot_required: bool,
    pub write_only: bool,
}

/// The HTTP Basic password derived from AuthorizationKey; prints as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicPassword(Vec<u8>);

impl BasicPassword {
    /// The password bytes, for the one place that builds the Authorization header.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for BasicPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[derive(Serialize, Deserialize)]
struct ConfigFile {
    version: u32,
    /// Every writable key (not AuthorizationKey, which lives in `secrets.json`).
    values: BTreeMap<String, String>,
    /// Read-only keys changed with `set_internal`, only where they differ from the firmware.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    overrides: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct SecretsFile {
    version: u32,
    #[serde(
        rename = "AuthorizationKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    authorization_key: Option<String>,
}

/// The charger's configuration: values of every key, and where they are stored.
#[derive(Clone)]
pub struct Configuration {
    /// Canonical value per registry entry (same index); empty for AuthorizationKey.
    values: Vec<String>,
    authorization_key: Option<Secret>,
    state_dir: Option<PathBuf>,
}

impl fmt::Debug for Configuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (spec, value) in REGISTRY.iter().zip(&self.values) {
            if spec.is_secret() {
                let shown = if self.authorization_key.is_some() {
                    REDACTED
                } else {
                    "<unset>"
                };
                map.entry(&spec.name, &shown);
            } else {
                map.entry(&spec.name, value);
            }
        }
        map.entry(&"state_dir", &self.state_dir);
        map.finish()
    }
}

impl Default for Configuration {
    fn default() -> Self {
        Self::in_memory()
    }
}

impl Configuration {
    /// Defaults only, never written anywhere (tests, one-shot tools).
    pub fn in_memory() -> Configuration {
        Configuration {
            values: REGISTRY
                .iter()
                .map(|s| {
                    if s.is_secret() {
                        String::new()
                    } else {
                        s.default.to_string()
                    }
                })
                .collect(),
            authorization_key: None,
            state_dir: None,
        }
    }

    /// Loads `config.json` and `secrets.json` from `state_dir`, or starts from defaults when
    /// they do not exist. Nothing is written until the first change.
    pub fn open(state_dir: &Path) -> Result<Configuration> {
        let mut cfg = Configuration::in_memory();
        let config_path = state_dir.join(CONFIG_FILE);
        if let Some(bytes) = storage::read_optional(&config_path).map_err(|source| Error::Read {
            path: config_path.clone(),
            source,
        })? {
            cfg.load_values(&config_path, &bytes)?;
        }
        let secrets_path = state_dir.join(SECRETS_FILE);
        if let Some(bytes) =
            storage::read_optional(&secrets_path).map_err(|source| Error::Read {
                path: secrets_path.clone(),
                source,
            })?
        {
            cfg.load_secrets(&secrets_path, &bytes)?;
        }
        if cfg.security_profile() >= 1 && cfg.authorization_key.is_none() {
            tracing::warn!(
                profile = cfg.security_profile(),
                "SecurityProfile needs an AuthorizationKey but none is stored"
            );
        }
        cfg.state_dir = Some(state_dir.to_path_buf());
        Ok(cfg)
    }

    fn load_values(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        let doc: ConfigFile = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
        if doc.version != FILE_VERSION {
            return Err(Error::Version {
                path: path.to_path_buf(),
                found: doc.version,
            });
        }
        // Lists are validated against read-only limits (MaxLength keys, NumberOfConnectors), so
        // the overrides of those are applied first.
        for (map, read_only) in [(&doc.overrides, true), (&doc.values, false)] {
            for (name, value) in map {
                let Some(i) = index_of(name) else {
                    tracing::debug!(key = %name, file = %path.display(), "ignoring stored value of a key this build does not have");
                    continue;
                };
                let spec = &REGISTRY[i];
                if spec.is_secret() || (spec.access == Access::ReadOnly) != read_only {
                    // Read-only keys under "values" were written by an older layout; the
                    // firmware's own value wins.
                    continue;
                }
                let canonical =
                    self.validate(spec, value)
                        .map_err(|reason| Error::StoredValue {
                            path: path.to_path_buf(),
                            key: name.clone(),
                            reason,
                        })?;
                self.values[i] = canonical;
            }
        }
        Ok(())
    }

    fn load_secrets(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        // serde_json's messages may quote the offending text, so only its position is reported.
        let doc: SecretsFile = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            problem: format!(
                "malformed or unexpected content at line {} column {}",
                e.line(),
                e.column()
            ),
        })?;
        if doc.version != FILE_VERSION {
            return Err(Error::Version {
                path: path.to_path_buf(),
                found: doc.version,
            });
        }
        if let Some(k) = doc.authorization_key {
            check_authorization_key(&k).map_err(|reason| Error::StoredValue {
                path: path.to_path_buf(),
                key: AUTHORIZATION_KEY.to_string(),
                reason,
            })?;
            self.authorization_key = Some(Secret::new(k));
        }
        Ok(())
    }

    /// GetConfiguration: the named keys (all visible keys in registry order when `keys` is
    /// empty) and the names this channel does not know. Duplicate names are answered once.
    pub fn get(&self, keys: &[String], channel: Channel) -> (Vec<Entry>, Vec<String>) {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        if keys.is_empty() {
            for (i, spec) in REGISTRY.iter().enumerate() {
                if visible(spec, channel) {
                    known.push(self.entry(i));
                }
            }
            return (known, unknown);
        }
        for (n, name) in keys.iter().enumerate() {
            if keys[..n].contains(name) {
                continue;
            }
            match index_of(name) {
                Some(i) if visible(&REGISTRY[i], channel) => known.push(self.entry(i)),
                _ => unknown.push(name.clone()),
            }
        }
        (known, unknown)
    }

    fn entry(&self, i: usize) -> Entry {
        let spec = &REGISTRY[i];
        let (readonly, value) = if spec.is_secret() {
            (false, None)
        } else if spec.name == UNLOCK_CONNECTOR_ON_EV_SIDE_DISCONNECT && self.cable_locked() {
            // Release notes / errata v4.0: a fixed-cable charger reports false, read-only.
            (true, Some("false".to_string()))
        } else {
            (
                spec.access == Access::ReadOnly,
                Some(self.values[i].clone()),
            )
        };
        Entry {
            key: spec.name.to_string(),
            readonly,
            value,
            value_type: spec.value_type.as_str().to_string(),
            reboot_required: spec.reboot_required,
            write_only: spec.access == Access::WriteOnly,
        }
    }

    fn cable_locked(&self) -> bool {
        self.raw(LOCK_CABLE_PERMANENTLY) == "true"
    }

    fn raw(&self, key: &str) -> &str {
        match index_of(key) {
            Some(i) => &self.values[i],
            None => {
                debug_assert!(false, "no configuration key {key}");
                tracing::error!(key, "lookup of a configuration key that does not exist");
                ""
            }
        }
    }

    /// ChangeConfiguration / `config set`: validates `value`, stores it atomically and answers.
    /// A failed write answers `Rejected` with the reason and leaves the value unchanged.
    pub fn change(&mut self, key: &str, value: &str, channel: Channel) -> ChangeOutcome {
        let planned = match self.plan(key, value, channel) {
            Ok(planned) => planned,
            Err(outcome) => {
                if let ChangeOutcome::Rejected(reason) = &outcome {
                    tracing::info!(key, ?channel, reason = %reason, "configuration change rejected");
                }
                return outcome;
            }
        };
        let (spec, result) = match planned {
            Planned::Value(i, canonical) => (&REGISTRY[i], self.commit(i, canonical)),
            Planned::Secret(i, secret) => (&REGISTRY[i], self.commit_secret(secret)),
        };
        match result {
            Ok(()) => {
                if spec.is_secret() {
                    tracing::info!(key, ?channel, "configuration key changed (value withheld)");
                } else {
                    tracing::info!(key, value = %self.raw(key), ?channel, "configuration key changed");
                }
                outcome_for(spec)
            }
            Err(e) => {
                tracing::warn!(key, ?channel, error = %e, "configuration change not stored");
                ChangeOutcome::Rejected(e.to_string())
            }
        }
    }

    /// What [`Self::change`] would answer, without changing or writing anything (provisioning
    /// dry runs, form validation). A write failure cannot be predicted and is not reported.
    pub fn check_change(&self, key: &str, value: &str, channel: Channel) -> ChangeOutcome {
        match self.plan(key, value, channel) {
            Ok(Planned::Value(i, _) | Planned::Secret(i, _)) => outcome_for(&REGISTRY[i]),
            Err(outcome) => outcome,
        }
    }

    /// Every rule of a change, applied to the current values: the one place that decides.
    fn plan(
        &self,
        key: &str,
        value: &str,
        channel: Channel,
    ) -> std::result::Result<Planned, ChangeOutcome> {
        let Some(i) = index_of(key) else {
            return Err(ChangeOutcome::NotSupported);
        };
        let spec = &REGISTRY[i];
        if !visible(spec, channel) {
            return Err(ChangeOutcome::NotSupported);
        }
        let reject = |reason: String| ChangeOutcome::Rejected(format!("{key}: {reason}"));
        if spec.access == Access::ReadOnly {
            return Err(reject("read-only".to_string()));
        }
        if spec.name == UNLOCK_CONNECTOR_ON_EV_SIDE_DISCONNECT && self.cable_locked() {
            return Err(reject(format!(
                "read-only while {LOCK_CABLE_PERMANENTLY} is true"
            )));
        }
        check_value_length(value).map_err(reject)?;
        match spec.rule {
            Rule::AuthorizationKey => {
                if value.is_empty() && channel == Channel::Service {
                    let profile = self.security_profile();
                    if profile != 0 {
                        return Err(reject(format!(
                            "cannot be removed while {SECURITY_PROFILE} is {profile}"
                        )));
                    }
                    return Ok(Planned::Secret(i, None));
                }
                check_authorization_key(value).map_err(reject)?;
                Ok(Planned::Secret(i, Some(Secret::new(value))))
            }
            Rule::SecurityProfile => {
                let canonical = self.validate(spec, value).map_err(reject)?;
                let new: i64 = canonical.parse().unwrap_or(0);
                let current = i64::from(self.security_profile());
                if channel == Channel::Ocpp && new <= current {
                    return Err(reject(format!(
                        "can only be raised over OCPP (current {current}, requested {new})"
                    )));
                }
                if new >= 1 && self.authorization_key.is_none() {
                    return Err(reject(format!(
                        "profile {new} needs an {AUTHORIZATION_KEY}; set one first"
                    )));
                }
                Ok(Planned::Value(i, canonical))
            }
            _ => {
                let canonical = self.validate(spec, value).map_err(reject)?;
                Ok(Planned::Value(i, canonical))
            }
        }
    }

    /// Sets a key bypassing access and channel rules (boot-time values, the interval from
    /// BootNotification.conf, emulator settings). The value must still be valid for the key.
    pub fn set_internal(&mut self, key: &str, value: &str) -> Result<()> {
        let i = index_of(key).ok_or_else(|| Error::UnknownKey(key.to_string()))?;
        let spec = &REGISTRY[i];
        if spec.is_secret() {
            check_authorization_key(value).map_err(|reason| Error::Invalid {
                key: key.to_string(),
                reason,
            })?;
            return self.commit_secret(Some(Secret::new(value)));
        }
        let canonical = self
            .validate(spec, value)
            .map_err(|reason| Error::Invalid {
                key: key.to_string(),
                reason,
            })?;
        self.commit(i, canonical)
    }

    /// Falls back to the previous SecurityProfile after a failed reconnect with the new one
    /// (whitepaper A05.FR.08). Bypasses the only-upward rule.
    pub fn revert_security_profile(&mut self, old: u8) -> Result<()> {
        let i =
            index_of(SECURITY_PROFILE).ok_or_else(|| Error::UnknownKey(SECURITY_PROFILE.into()))?;
        let canonical = self
            .validate(&REGISTRY[i], &old.to_string())
            .map_err(|reason| Error::Invalid {
                key: SECURITY_PROFILE.to_string(),
                reason,
            })?;
        tracing::warn!(profile = old, "security profile reverted");
        self.commit(i, canonical)
    }

    /// Stores `canonical` at registry index `i`: file first, memory only when the write worked.
    fn commit(&mut self, i: usize, canonical: String) -> Result<()> {
        if self.values[i] == canonical {
            return Ok(());
        }
        if let Some(dir) = &self.state_dir {
            let mut next = self.values.clone();
            next[i] = canonical.clone();
            let mut doc = ConfigFile {
                version: FILE_VERSION,
                values: BTreeMap::new(),
                overrides: BTreeMap::new(),
            };
            for (spec, value) in REGISTRY.iter().zip(next) {
                if spec.is_secret() {
                    continue;
                }
                if spec.access != Access::ReadOnly {
                    doc.values.insert(spec.name.to_string(), value);
                } else if value != spec.default {
                    doc.overrides.insert(spec.name.to_string(), value);
                }
            }
            let path = dir.join(CONFIG_FILE);
            let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| Error::Write {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
            storage::write_atomic(&path, &bytes).map_err(|source| Error::Write { path, source })?;
        }
        self.values[i] = canonical;
        Ok(())
    }

    fn commit_secret(&mut self, key: Option<Secret>) -> Result<()> {
        if let Some(dir) = &self.state_dir {
            let doc = SecretsFile {
                version: FILE_VERSION,
                authorization_key: key.as_ref().map(|k| k.expose().to_string()),
            };
            let path = dir.join(SECRETS_FILE);
            // Serialising a struct of strings cannot fail; map it anyway, without the content.
            let bytes = serde_json::to_vec_pretty(&doc).map_err(|_| Error::Write {
                path: path.clone(),
                source: std::io::Error::other("cannot encode secrets document"),
            })?;
            storage::write_atomic_private(&path, &bytes)
                .map_err(|source| Error::Write { path, source })?;
        }
        self.authorization_key = key;
        Ok(())
    }

    /// Checks `value` against the key's type and rules; returns the canonical form to store.
    /// The reason never contains the value of a secret key.
    fn validate(&self, spec: &KeySpec, value: &str) -> std::result::Result<String, String> {
        let canonical = match spec.value_type {
            ValueType::Boolean => {
                if value.eq_ignore_ascii_case("true") {
                    "true".to_string()
                } else if value.eq_ignore_ascii_case("false") {
                    "false".to_string()
                } else {
                    return Err(format!("{value:?} is not a boolean (true or false)"));
                }
            }
            ValueType::Integer { min, max } => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| format!("{value:?} is not an integer in {min}..={max}"))?;
                if n < min || n > max {
                    return Err(format!("{n} is outside {min}..={max}"));
                }
                n.to_string()
            }
            ValueType::List => {
                let items = split_list(value)?;
                items.join(",")
            }
            ValueType::Text => value.to_string(),
        };
        match spec.rule {
            Rule::Plain | Rule::SecurityProfile => {}
            Rule::OnlyTrue => {
                if canonical != "true" {
                    return Err("only true is accepted".to_string());
                }
            }
            Rule::Measurands { max_length_key } => {
                let items = split_list(&canonical)?;
                for (n, m) in items.iter().enumerate() {
                    if !SUPPORTED_MEASURANDS.contains(m) {
                        return Err(format!(
                            "entry {} {m:?} is not a supported measurand ({})",
                            n + 1,
                            SUPPORTED_MEASURANDS.join(", ")
                        ));
                    }
                    if items[..n].contains(m) {
                        return Err(format!("entry {} {m:?} is listed twice", n + 1));
                    }
                }
                let max = self.int(max_length_key);
                if items.len() as i64 > max {
                    return Err(format!(
                        "{} entries, at most {max} allowed ({max_length_key})",
                        items.len()
                    ));
                }
            }
            Rule::PhaseRotation => self.check_phase_rotation(&canonical)?,
            Rule::IdToken => {
                if canonical.is_empty() || canonical.chars().count() > 20 {
                    return Err("must be 1 to 20 characters (an OCPP IdToken)".to_string());
                }
            }
            Rule::AuthorizationKey => check_authorization_key(&canonical)?,
            Rule::WebSocketUrl => check_ws_url(&canonical)?,
            Rule::ChargePointId => check_charge_point_id(&canonical)?,
            Rule::OneOf(words) => {
                if !words.contains(&canonical.as_str()) {
                    return Err(format!("{canonical:?} is not one of {}", words.join(", ")));
                }
            }
        }
        Ok(canonical)
    }

    fn check_phase_rotation(&self, value: &str) -> std::result::Result<(), String> {
        let items = split_list(value)?;
        if items.is_empty() {
            return Err("needs at least one <connectorId>.<rotation> entry".to_string());
        }
        let connectors = self.int(NUMBER_OF_CONNECTORS);
        let max = self.int(CONNECTOR_PHASE_ROTATION_MAX_LENGTH);
        if items.len() as i64 > max {
            return Err(format!(
                "{} entries, at most {max} allowed ({CONNECTOR_PHASE_ROTATION_MAX_LENGTH})",
                items.len()
            ));
        }
        let mut seen = Vec::new();
        for (n, item) in items.iter().enumerate() {
            let entry = n + 1;
            let Some((id, rotation)) = item.split_once('.') else {
                return Err(format!(
                    "entry {entry} {item:?} is not <connectorId>.<rotation>"
                ));
            };
            let id: i64 = id
                .parse()
                .map_err(|_| format!("entry {entry} {item:?}: connector id is not a number"))?;
            if id < 0 || id > connectors {
                return Err(format!(
                    "entry {entry} {item:?}: connector id outside 0..={connectors}"
                ));
            }
            if !PHASE_ROTATIONS.contains(&rotation) {
                return Err(format!(
                    "entry {entry} {item:?}: rotation must be one of {}",
                    PHASE_ROTATIONS.join(", ")
                ));
            }
            if seen.contains(&id) {
                return Err(format!("entry {entry}: connector {id} is listed twice"));
            }
            seen.push(id);
        }
        Ok(())
    }

    /// Value of a boolean key. UnlockConnectorOnEVSideDisconnect reads false while
    /// LockCablePermanently is true.
    pub fn bool(&self, key: &str) -> bool {
        if key == UNLOCK_CONNECTOR_ON_EV_SIDE_DISCONNECT && self.cable_locked() {
            return false;
        }
        self.raw(key) == "true"
    }

    /// Value of an integer key (0 for a key that is not an integer).
    pub fn int(&self, key: &str) -> i64 {
        let raw = self.raw(key);
        match raw.parse() {
            Ok(n) => n,
            Err(_) => {
                debug_assert!(false, "configuration key {key} is not an integer");
                0
            }
        }
    }

    /// Entries of a list key (empty for an empty value).
    pub fn list(&self, key: &str) -> Vec<String> {
        let raw = self.raw(key);
        if raw.is_empty() {
            Vec::new()
        } else {
            raw.split(',').map(str::to_string).collect()
        }
    }

    /// Value of a text key; empty for AuthorizationKey (use [`Self::authorization_key`]).
    pub fn text(&self, key: &str) -> String {
        self.raw(key).to_string()
    }

    /// The AuthorizationKey as the hex text it was set with.
    pub fn authorization_key(&self) -> Option<Secret> {
        self.authorization_key.clone()
    }

    /// The HTTP Basic password per `BasicAuthPassword`: `bytes` gives the key's decoded bytes
    /// (what the OCPP compliance test expects), `hex` the bytes of its hex text.
    pub fn basic_auth_password(&self) -> Option<BasicPassword> {
        let key = self.authorization_key.as_ref()?;
        if self.raw(BASIC_AUTH_PASSWORD) == "hex" {
            return Some(BasicPassword(key.expose().as_bytes().to_vec()));
        }
        // The key was validated as hex when stored; a decode failure cannot happen, but is
        // answered with "no password" rather than a panic.
        hex::decode(key.expose()).ok().map(BasicPassword)
    }

    /// The current SecurityProfile (0 or 1).
    pub fn security_profile(&self) -> u8 {
        u8::try_from(self.int(SECURITY_PROFILE)).unwrap_or(0)
    }

    /// The state directory this configuration is stored in, if any.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }
}

/// A validated change, ready to be stored.
enum Planned {
    Value(usize, String),
    Secret(usize, Option<Secret>),
}

fn outcome_for(spec: &KeySpec) -> ChangeOutcome {
    if spec.reboot_required {
        ChangeOutcome::RebootRequired
    } else {
        ChangeOutcome::Accepted
    }
}

fn visible(spec: &KeySpec, channel: Channel) -> bool {
    channel == Channel::Service || spec.visibility == Visibility::Ocpp
}

/// Splits a comma-separated list, trimming blanks around entries. Empty text is an empty list;
/// an empty entry (`a,,b`, trailing comma) is refused.
fn split_list(value: &str) -> std::result::Result<Vec<&str>, String> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .enumerate()
        .map(|(n, item)| {
            let item = item.trim();
            if item.is_empty() {
                Err(format!("entry {} is empty", n + 1))
            } else {
                Ok(item)
            }
        })
        .collect()
}

/// AuthorizationKey: 16 to 20 bytes as 32 to 40 hex digits. Reasons never quote the value.
fn check_authorization_key(value: &str) -> std::result::Result<(), String> {
    if let Some(pos) = value.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "must be hex digits; character {} is not a hex digit",
            pos + 1
        ));
    }
    let digits = value.len();
    if !digits.is_multiple_of(2) {
        return Err(format!(
            "has an odd number of hex digits ({digits}); each byte needs two"
        ));
    }
    if !(32..=40).contains(&digits) {
        return Err(format!(
            "is {} bytes; it must be 16 to 20 bytes (32 to 40 hex digits)",
            digits / 2
        ));
    }
    Ok(())
}

/// Checks a value's length against [`MAX_VALUE_CHARS`] (ChangeConfiguration's CiString500).
pub fn check_value_length(value: &str) -> std::result::Result<(), String> {
    let length = value.chars().count();
    if length > MAX_VALUE_CHARS {
        return Err(format!(
            "value is {length} characters, at most {MAX_VALUE_CHARS} allowed"
        ));
    }
    Ok(())
}

/// Checks a CSMS URL: `ws://` or `wss://`, a host, an optional port in 1..=65535, no blanks,
/// credentials, query or fragment; empty means "not configured".
pub fn check_ws_url(value: &str) -> std::result::Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    let rest = value
        .strip_prefix("ws://")
        .or_else(|| value.strip_prefix("wss://"))
        .ok_or_else(|| format!("{value:?} must start with ws:// or wss://"))?;
    if let Some(pos) = value
        .chars()
        .position(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "character {} is blank or a control character",
            pos + 1
        ));
    }
    if rest.contains(['?', '#']) {
        return Err("must not carry a query or fragment; the charge point id is appended".into());
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err("must not carry credentials; use AuthorizationKey".to_string());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| "IPv6 host is missing its closing ]".to_string())?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".to_string());
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("port {p:?} is not a port number (1 to 65535)")),
        }
    }
    Ok(())
}

fn check_charge_point_id(value: &str) -> std::result::Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_string());
    }
    let len = value.chars().count();
    if len > 48 {
        return Err(format!("is {len} characters, at most 48 allowed"));
    }
    if let Some((pos, c)) = value
        .chars()
        .enumerate()
        .find(|(_, c)| *c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "character {} ({c:?}) is not allowed (no '/', blanks or control characters)",
            pos + 1
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
