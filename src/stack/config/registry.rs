//! The registry of configuration keys: every key's name, value type, range, access, visibility,
//! reboot rule, feature profile, default and description, declared once. The typed handles
//! ([`IntKey`], [`BoolKey`], ...) and the [`Key`] enum are generated from the same list.

use super::{PHASE_ROTATIONS, SUPPORTED_MEASURANDS};

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
pub(super) enum Rule {
    /// Nothing beyond the value type.
    Plain,
    /// A boolean that only accepts `true` (StopTransactionOnEVSideDisconnect).
    OnlyTrue,
    /// A list of supported measurands, at most as many as the named MaxLength key.
    Measurands { max_length_key: IntKey },
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
    pub feature_profile: &'static str,
    pub description: &'static str,
    /// Value at first boot (empty for AuthorizationKey, which starts unset).
    pub default: &'static str,
    pub(super) rule: Rule,
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
    feature_profile: &'static str,
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
        feature_profile,
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
        feature_profile: "Service",
        description,
        default,
        rule,
    }
}

/// Declares the registry from one list: each entry names the key's typed handle (`IntKey`,
/// `BoolKey`, ...), its constant, its wire name and its [`KeySpec`]. From that one list come the
/// [`Key`] enum (same order as the registry, so a key is its own index), the name constants in
/// [`keys`] and the typed handles (`IntKey::MESSAGE_TIMEOUT`), so a misspelt key or a key read
/// with the wrong type does not compile.
macro_rules! registry {
    ($($kind:ident $konst:ident $variant:ident => $ctor:ident($($arg:expr),+ $(,)?)),+ $(,)?) => {
        /// Every configuration key, in registry order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Key {
            $($variant),+
        }

        /// Names of every key, as OCPP spells them.
        pub mod keys {
            $(pub const $konst: &str = stringify!($variant);)+
        }

        /// Every key, at its registry index.
        pub(super) const KEYS: &[Key] = &[$(Key::$variant),+];

        pub(super) static REGISTRY: &[KeySpec] = &[
            $($ctor(stringify!($variant), $($arg),+)),+
        ];

        $(
            impl $kind {
                pub const $konst: $kind = $kind(Key::$variant);
            }
        )+
    };
}

/// A boolean key, read with [`Configuration::bool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoolKey(pub(super) Key);
/// An integer key, read with [`Configuration::int`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntKey(pub(super) Key);
/// A list key, read with [`Configuration::list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListKey(pub(super) Key);
/// A text key, read with [`Configuration::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextKey(pub(super) Key);
/// A write-only key: its value is never read back (see [`Configuration::authorization_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretKey(pub(super) Key);

macro_rules! typed_key {
    ($($kind:ident),+) => {$(
        impl From<$kind> for Key {
            fn from(k: $kind) -> Key {
                k.0
            }
        }

        impl $kind {
            /// The key's name.
            pub fn name(self) -> &'static str {
                self.0.name()
            }
        }
    )+};
}

typed_key!(BoolKey, IntKey, ListKey, TextKey, SecretKey);

impl Key {
    /// The key's name as OCPP spells it.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The key's registry entry.
    pub fn spec(self) -> &'static KeySpec {
        &REGISTRY[self as usize]
    }

    /// The key named `name`, compared without regard to case (configuration key names are
    /// CiString50 in OCPP), so `heartbeatinterval` finds HeartbeatInterval.
    pub fn find(name: &str) -> Option<Key> {
        index_of(name).map(|i| KEYS[i])
    }
}

use Access::{ReadOnly as R, ReadWrite as RW, WriteOnly as W};
use ValueType::{Boolean as BOOL, List as LIST, Text as TEXT};

#[rustfmt::skip]
registry! {
    // Core profile (OCPP 1.6 §9.1 and errata v4.0).
    BoolKey ALLOW_OFFLINE_TX_FOR_UNKNOWN_ID AllowOfflineTxForUnknownId => key(BOOL, RW, "Core", "false", Rule::Plain,
        "Start a transaction offline for an idTag the charger cannot authorize locally"),
    BoolKey AUTHORIZATION_CACHE_ENABLED AuthorizationCacheEnabled => key(BOOL, RW, "Core", "true", Rule::Plain,
        "Remember idTags the CSMS accepted, for offline and faster authorization"),
    BoolKey AUTHORIZE_REMOTE_TX_REQUESTS AuthorizeRemoteTxRequests => key(BOOL, RW, "Core", "false", Rule::Plain,
        "Authorize the idTag of RemoteStartTransaction before starting"),
    IntKey CLOCK_ALIGNED_DATA_INTERVAL ClockAlignedDataInterval => key(int(0, U32_SECONDS_MAX), RW, "Core", "0", Rule::Plain,
        "Seconds between clock-aligned meter values, aligned to midnight; 0 disables"),
    IntKey CONNECTION_TIME_OUT ConnectionTimeOut => key(int(1, 3_600), RW, "Core", "30", Rule::Plain,
        "Seconds from Preparing until a session without a plugged cable or idTag is cancelled"),
    ListKey CONNECTOR_PHASE_ROTATION ConnectorPhaseRotation => key(LIST, RW, "Core", "0.RST,1.RST", Rule::PhaseRotation,
        "Phase rotation per connector, <connectorId>.<rotation>"),
    IntKey CONNECTOR_PHASE_ROTATION_MAX_LENGTH ConnectorPhaseRotationMaxLength => key(ANY_INT, R, "Core", "2", Rule::Plain,
        "Most entries ConnectorPhaseRotation may hold"),
    IntKey GET_CONFIGURATION_MAX_KEYS GetConfigurationMaxKeys => key(ANY_INT, R, "Core", "64", Rule::Plain,
        "Most keys one GetConfiguration request may name"),
    IntKey HEARTBEAT_INTERVAL HeartbeatInterval => key(int(0, U32_SECONDS_MAX), RW, "Core", "86400", Rule::Plain,
        "Seconds between heartbeats when idle; BootNotification's interval overrides it"),
    IntKey LIGHT_INTENSITY LightIntensity => key(int(0, 100), RW, "Core", "100", Rule::Plain,
        "LED brightness in percent"),
    BoolKey LOCAL_AUTHORIZE_OFFLINE LocalAuthorizeOffline => key(BOOL, RW, "Core", "true", Rule::Plain,
        "Start transactions offline for idTags valid in the cache or local list"),
    BoolKey LOCAL_PRE_AUTHORIZE LocalPreAuthorize => key(BOOL, RW, "Core", "false", Rule::Plain,
        "Start at once for locally valid idTags without waiting for Authorize"),
    IntKey MESSAGE_TIMEOUT MessageTimeout => key(int(1, 3_600), RW, "Core", "30", Rule::Plain,
        "Seconds to wait for a CSMS answer before a request counts as failed"),
    ListKey METER_VALUES_ALIGNED_DATA MeterValuesAlignedData => key(LIST, RW, "Core", "Energy.Active.Import.Register",
        Rule::Measurands { max_length_key: IntKey::METER_VALUES_ALIGNED_DATA_MAX_LENGTH },
        "Measurands sent in clock-aligned MeterValues"),
    IntKey METER_VALUES_ALIGNED_DATA_MAX_LENGTH MeterValuesAlignedDataMaxLength => key(ANY_INT, R, "Core", "6", Rule::Plain,
        "Most measurands MeterValuesAlignedData may hold"),
    ListKey METER_VALUES_SAMPLED_DATA MeterValuesSampledData => key(LIST, RW, "Core", "Energy.Active.Import.Register",
        Rule::Measurands { max_length_key: IntKey::METER_VALUES_SAMPLED_DATA_MAX_LENGTH },
        "Measurands sampled during a transaction"),
    IntKey METER_VALUES_SAMPLED_DATA_MAX_LENGTH MeterValuesSampledDataMaxLength => key(ANY_INT, R, "Core", "6", Rule::Plain,
        "Most measurands MeterValuesSampledData may hold"),
    IntKey METER_VALUE_SAMPLE_INTERVAL MeterValueSampleInterval => key(int(0, U32_SECONDS_MAX), RW, "Core", "60", Rule::Plain,
        "Seconds between sampled meter values in a transaction; 0 disables"),
    IntKey MINIMUM_STATUS_DURATION MinimumStatusDuration => key(int(0, 86_400), RW, "Core", "0", Rule::Plain,
        "Seconds a status must hold before StatusNotification is sent"),
    IntKey NUMBER_OF_CONNECTORS NumberOfConnectors => key(ANY_INT, R, "Core", "1", Rule::Plain,
        "Number of physical connectors"),
    IntKey RESET_RETRIES ResetRetries => key(int(0, 100), RW, "Core", "2", Rule::Plain,
        "Times to retry a failed reset"),
    IntKey STOP_TRANSACTION_MAX_METER_VALUES StopTransactionMaxMeterValues => key(ANY_INT, R, "Core", "100", Rule::Plain,
        "Most meter values in StopTransaction's transactionData"),
    BoolKey STOP_TRANSACTION_ON_EV_SIDE_DISCONNECT StopTransactionOnEVSideDisconnect => key(BOOL, RW, "Core", "true", Rule::OnlyTrue,
        "Stop the transaction when the cable is unplugged on the EV side (only true accepted)"),
    BoolKey STOP_TRANSACTION_ON_INVALID_ID StopTransactionOnInvalidId => key(BOOL, RW, "Core", "true", Rule::Plain,
        "Stop a transaction whose idTag the CSMS rejects in StartTransaction.conf"),
    ListKey STOP_TXN_ALIGNED_DATA StopTxnAlignedData => key(LIST, RW, "Core", "",
        Rule::Measurands { max_length_key: IntKey::STOP_TXN_ALIGNED_DATA_MAX_LENGTH },
        "Clock-aligned measurands in StopTransaction; empty sends none"),
    IntKey STOP_TXN_ALIGNED_DATA_MAX_LENGTH StopTxnAlignedDataMaxLength => key(ANY_INT, R, "Core", "6", Rule::Plain,
        "Most measurands StopTxnAlignedData may hold"),
    ListKey STOP_TXN_SAMPLED_DATA StopTxnSampledData => key(LIST, RW, "Core", "",
        Rule::Measurands { max_length_key: IntKey::STOP_TXN_SAMPLED_DATA_MAX_LENGTH },
        "Sampled measurands in StopTransaction; empty sends none"),
    IntKey STOP_TXN_SAMPLED_DATA_MAX_LENGTH StopTxnSampledDataMaxLength => key(ANY_INT, R, "Core", "6", Rule::Plain,
        "Most measurands StopTxnSampledData may hold"),
    ListKey SUPPORTED_FEATURE_PROFILES SupportedFeatureProfiles => key(LIST, R, "Core",
        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger",
        Rule::Plain, "Feature profiles this charger implements"),
    IntKey SUPPORTED_FEATURE_PROFILES_MAX_LENGTH SupportedFeatureProfilesMaxLength => key(ANY_INT, R, "Core", "6", Rule::Plain,
        "Most entries SupportedFeatureProfiles may hold"),
    IntKey TRANSACTION_MESSAGE_ATTEMPTS TransactionMessageAttempts => key(int(0, 100), RW, "Core", "3", Rule::Plain,
        "Times a transaction message is sent when the CSMS fails to process it"),
    IntKey TRANSACTION_MESSAGE_RETRY_INTERVAL TransactionMessageRetryInterval => key(int(1, 86_400), RW, "Core", "60", Rule::Plain,
        "Seconds before the first retry of a transaction message, multiplied per attempt"),
    BoolKey UNLOCK_CONNECTOR_ON_EV_SIDE_DISCONNECT UnlockConnectorOnEVSideDisconnect => key(BOOL, RW, "Core", "true", Rule::Plain,
        "Unlock the cable when it is unplugged on the EV side"),
    IntKey WEB_SOCKET_PING_INTERVAL WebSocketPingInterval => key(int(0, 86_400), RW, "Core", "30", Rule::Plain,
        "Seconds between WebSocket pings; 0 disables"),
    // Local Auth List Management.
    BoolKey LOCAL_AUTH_LIST_ENABLED LocalAuthListEnabled => key(BOOL, RW, "LocalAuthListManagement", "true", Rule::Plain,
        "Consult the local authorization list"),
    IntKey LOCAL_AUTH_LIST_MAX_LENGTH LocalAuthListMaxLength => key(ANY_INT, R, "LocalAuthListManagement", "1024", Rule::Plain,
        "Most idTags the local authorization list holds"),
    IntKey SEND_LOCAL_LIST_MAX_LENGTH SendLocalListMaxLength => key(ANY_INT, R, "LocalAuthListManagement", "255", Rule::Plain,
        "Most idTags one SendLocalList may carry"),
    // Reservation.
    BoolKey RESERVE_CONNECTOR_ZERO_SUPPORTED ReserveConnectorZeroSupported => key(BOOL, R, "Reservation", "false", Rule::Plain,
        "Whether connector 0 (the whole charger) can be reserved"),
    // Smart Charging.
    IntKey CHARGE_PROFILE_MAX_STACK_LEVEL ChargeProfileMaxStackLevel => key(ANY_INT, R, "SmartCharging", "8", Rule::Plain,
        "Highest stackLevel a charging profile may use"),
    ListKey CHARGING_SCHEDULE_ALLOWED_CHARGING_RATE_UNIT ChargingScheduleAllowedChargingRateUnit => key(LIST, R, "SmartCharging", "Current",
        Rule::Plain, "Charging rate units accepted in schedules (A only)"),
    IntKey CHARGING_SCHEDULE_MAX_PERIODS ChargingScheduleMaxPeriods => key(ANY_INT, R, "SmartCharging", "24", Rule::Plain,
        "Most periods one charging schedule may hold"),
    IntKey MAX_CHARGING_PROFILES_INSTALLED MaxChargingProfilesInstalled => key(ANY_INT, R, "SmartCharging", "10", Rule::Plain,
        "Most charging profiles installed at once"),
    // Firmware Management.
    ListKey SUPPORTED_FILE_TRANSFER_PROTOCOLS SupportedFileTransferProtocols => key(LIST, R, "FirmwareManagement", "HTTP,HTTPS",
        Rule::Plain, "Protocols for firmware download and diagnostics upload"),
    // Security whitepaper edition 3.
    IntKey SECURITY_PROFILE SecurityProfile => key(int(0, 1), RW, "Security", "0", Rule::SecurityProfile,
        "0 = no authentication, 1 = HTTP Basic authentication; only raised over OCPP"),
    SecretKey AUTHORIZATION_KEY AuthorizationKey => key(TEXT, W, "Security", "", Rule::AuthorizationKey,
        "HTTP Basic password, 16 to 20 bytes written as hex; write-only"),
    // Vendor keys (release notes).
    BoolKey FREE_CHARGING FreeCharging => key(BOOL, RW, "Vendor", "false", Rule::Plain,
        "Charge without RFID or RemoteStartTransaction"),
    TextKey FREE_CHARGING_ID_TAG FreeChargingIdTag => key(TEXT, RW, "Vendor", "FreeCharging", Rule::IdToken,
        "idTag used for transactions while FreeCharging is true"),
    BoolKey LOCK_CABLE_PERMANENTLY LockCablePermanently => key(BOOL, RW, "Vendor", "false", Rule::Plain,
        "Behave as a fixed-cable charger: keep the cable locked"),
    // Service port only.
    TextKey CSMS_URL CsmsUrl => service("", Rule::WebSocketUrl,
        "CSMS endpoint (ws:// or wss://); the charge point id is appended"),
    TextKey CHARGE_POINT_ID ChargePointId => service("ZAP000001", Rule::ChargePointId,
        "Identity of this charger at the CSMS, last path segment of the URL"),
    TextKey BASIC_AUTH_PASSWORD BasicAuthPassword => service("bytes", Rule::OneOf(&["bytes", "hex"]),
        "HTTP Basic password from AuthorizationKey: bytes = decoded key, hex = the hex text"),
}

/// Every key of this charger, in the order GetConfiguration lists them.
pub fn registry() -> &'static [KeySpec] {
    REGISTRY
}

/// The key spelt exactly `name`. Requests from the CSMS or the service port find keys without
/// regard to case ([`Key::find`]); this exact lookup is for names the program itself holds.
pub fn spec(name: &str) -> Option<&'static KeySpec> {
    REGISTRY.iter().find(|s| s.name == name)
}

/// Registry index of the key named `name`, compared without regard to case.
pub(super) fn index_of(name: &str) -> Option<usize> {
    REGISTRY
        .iter()
        .position(|s| s.name.eq_ignore_ascii_case(name))
}
