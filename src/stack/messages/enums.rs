//! The OCPP 1.6 enumerations, named and spelled as in the specification (including its
//! historic spellings such as `Celcius` and `SuspendedEVSE`).
//!
//! Each enum (de)serialises as its exact wire string only: another JSON type is a
//! TypeConstraintViolation, an unknown string a PropertyConstraintViolation.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A string that is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown variant `{value}` for {kind}, expected one of {expected}")]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
    pub expected: String,
}

macro_rules! ocpp_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in specification order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every wire spelling, in specification order.
            pub const WIRE_NAMES: &'static [&'static str] = &[$($wire),+];

            /// The exact wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }

            /// The value with exactly this wire spelling (case sensitive).
            pub fn from_wire(s: &str) -> Option<Self> {
                match s {
                    $($wire => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, UnknownVariant> {
                Self::from_wire(s).ok_or_else(|| UnknownVariant {
                    kind: stringify!($name),
                    value: s.chars().take(64).collect(),
                    expected: Self::WIRE_NAMES.join(", "),
                })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct EnumVisitor;
                impl Visitor<'_> for EnumVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " string"))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_wire(v).ok_or_else(|| E::unknown_variant(v, $name::WIRE_NAMES))
                    }
                }
                deserializer.deserialize_str(EnumVisitor)
            }
        }
    };
}

ocpp_enum!(
    /// Status in a response to an Authorize, StartTransaction or StopTransaction, and in the
    /// local authorization list.
    AuthorizationStatus {
        Accepted = "Accepted",
        Blocked = "Blocked",
        Expired = "Expired",
        Invalid = "Invalid",
        ConcurrentTx = "ConcurrentTx",
    }
);

ocpp_enum!(
    /// The central system's answer to a BootNotification.
    RegistrationStatus {
        Accepted = "Accepted",
        Pending = "Pending",
        Rejected = "Rejected",
    }
);

ocpp_enum!(
    /// Requested availability in a ChangeAvailability.
    AvailabilityType {
        Inoperative = "Inoperative",
        Operative = "Operative",
    }
);

ocpp_enum!(
    /// Result of a ChangeAvailability.
    AvailabilityStatus {
        Accepted = "Accepted",
        Rejected = "Rejected",
        Scheduled = "Scheduled",
    }
);

ocpp_enum!(
    /// Result of a CancelReservation.
    CancelReservationStatus {
        Accepted = "Accepted",
        Rejected = "Rejected",
    }
);

ocpp_enum!(
    /// Result of a ChangeConfiguration.
    ConfigurationStatus {
        Accepted = "Accepted",
        Rejected = "Rejected",
        RebootRequired = "RebootRequired",
        NotSupported = "NotSupported",
    }
);

ocpp_enum!(
    /// Result of a ClearCache.
    ClearCacheStatus {
        Accepted = "Accepted",
        Rejected = "Rejected",
    }
);

ocpp_enum!(
    /// Result of a ClearChargingProfile.
    ClearChargingProfileStatus {
        Accepted = "Accepted",
        Unknown = "Unknown",
    }
);

ocpp_enum!(
    /// Purpose of a charging profile.
    ChargingProfilePurposeType {
        ChargePointMaxProfile = "ChargePointMaxProfile",
        TxDefaultProfile = "TxDefaultProfile",
        TxProfile = "TxProfile",
    }
);

ocpp_enum!(
    /// Kind of a charging profile.
    ChargingProfileKindType {
        Absolute = "Absolute",
        Recurring = "Recurring",
        Relative = "Relative",
    }
);

ocpp_enum!(
    /// Recurrence of a `Recurring` charging profile.
    RecurrencyKindType {
        Daily = "Daily",
        Weekly = "Weekly",
    }
);

ocpp_enum!(
    /// Unit of a charging schedule: amperes or watts.
    ChargingRateUnitType {
        A = "A",
        W = "W",
    }
);

ocpp_enum!(
    /// Result of a SetChargingProfile.
    ChargingProfileStatus {
        Accepted = "Accepted",
        Rejected = "Rejected",
        NotSupported = "NotSupported",
    }
);

ocpp_enum!(
    /// Result of a GetCompositeSchedule.
    GetCompositeScheduleStatus {
        Accepted = "Accepted",
        Rejected = "Rejected",
    }
);

ocpp_enum!(
    /// Result of a DataTransfer.
    DataTransferStatus {
        Accepted = "Accepted",
        Rejected = "Rejected",
        UnknownMessageId = "UnknownMessageId",
        UnknownVendorId = "UnknownVendorId",
    }
);

ocpp_enum!(
    /// Progress of a diagnostics upload.
    DiagnosticsStatus {
        Idle = "Idle",
        Uploaded = "Uploaded",
        UploadFailed = "UploadFailed",
        Uploading = "Uploading",
    }
);

ocpp_enum!(
    /// Progress of a firmware update.
    FirmwareStatus {
        Downloaded = "Downloaded",
        DownloadFailed = "DownloadFailed",
        Downloading = "Downloading",
        Idle = "Idle",
        InstallationFailed = "InstallationFailed",
        Installing = "Installing",
        Installed = "Installed",
    }
);

ocpp_enum!(
    /// Context of a sampled value.
    ReadingContext {
        InterruptionBegin = "Interruption.Begin",
        InterruptionEnd = "Interruption.End",
        SampleClock = "Sample.Clock",
        SamplePeriodic = "Sample.Periodic",
        TransactionBegin = "Transaction.Begin",
        TransactionEnd = "Transaction.End",
        Trigger = "Trigger",
        Other = "Other",
    }
);

ocpp_enum!(
    /// Format of a sampled value.
    ValueFormat {
        Raw = "Raw",
        SignedData = "SignedData",
    }
);

ocpp_enum!(
    /// What a sampled value measures.
    Measurand {
        EnergyActiveExportRegister = "Energy.Active.Export.Register",
        EnergyActiveImportRegister = "Energy.Active.Import.Register",
        EnergyReactiveExportRegister = "Energy.Reactive.Export.Register",
        EnergyReactiveImportRegister = "Energy.Reactive.Import.Register",
        EnergyActiveExportInterval = "Energy.Active.Export.Interval",
        EnergyActiveImportInterval = "Energy.Active.Import.Interval",
        EnergyReactiveExportInterval = "Energy.Reactive.Export.Interval",
        EnergyReactiveImportInterval = "Energy.Reactive.Import.Interval",
        PowerActiveExport = "Power.Active.Export",
        PowerActiveImport = "Power.Active.Import",
        PowerOffered = "Power.Offered",
        PowerReactiveExport = "Power.Reactive.Export",
        PowerReactiveImport = "Power.Reactive.Import",
        PowerFactor = "Power.Factor",
        CurrentImport = "Current.Import",
        CurrentExport = "Current.Export",
        CurrentOffered = "Current.Offered",
        Voltage = "Voltage",
        Frequency = "Frequency",
        Temperature = "Temperature",
        SoC = "SoC",
        Rpm = "RPM",
    }
);

ocpp_enum!(
    /// Phase a sampled value was measured on.
    Phase {
        L1 = "L1",
        L2 = "L2",
        L3 = "L3",
        N = "N",
        L1N = "L1-N",
        L2N = "L2-N",
        L3N = "L3-N",
        L1L2 = "L1-L2",
        L2L3 = "L2-L3",
        L3L1 = "L3-L1",
    }
);

ocpp_enum!(
    /// Where a sampled value was measured.
    Location {
        Cable = "Cable",
        Ev = "EV",
        Inlet = "Inlet",
        Outlet = "Outlet",
        Body = "Body",
    }
);

ocpp_enum!(
    /// Unit of a sampled value. Both `Celcius` (the 1.6 spelling) and `Celsius` (errata) exist.
    ///
    /// The official StopTransaction schema lacks `Hertz` (MeterValues has it): a charger must
    /// not put `Hertz` in `StopTransaction.transactionData`.
    UnitOfMeasure {
        Wh = "Wh",
        KWh = "kWh",
        Varh = "varh",
        Kvarh = "kvarh",
        W = "W",
        KW = "kW",
        Va = "VA",
        KVa = "kVA",
        Var = "var",
        Kvar = "kvar",
        A = "A",
        V = "V",
        K = "K",
        Celcius = "Celcius",
        Celsius = "Celsius",
        Fahrenheit = "Fahrenheit",
        Percent = "Percent",
        Hertz = "Hertz",
    }
);

ocpp_enum!(
    /// Result of a RemoteStartTransaction or RemoteStopTransaction.
    RemoteStartStopStatus {
        Accepted = "Accepted",
        Rejected = "Rejected",
    }
);

ocpp_enum!(
    /// Result of a ReserveNow.
    ReservationStatus {
        Accepted = "Accepted",
        Faulted = "Faulted",
        Occupied = "Occupied",
        Rejected = "Rejected",
        Unavailable = "Unavailable",
    }
);

ocpp_enum!(
    /// Kind of a Reset.
    ResetType {
        Hard = "Hard",
        Soft = "Soft",
    }
);

ocpp_enum!(
    /// Result of a Reset.
    ResetStatus {
        Accepted = "Accepted",
        Rejected = "Rejected",
    }
);

ocpp_enum!(
    /// Kind of a SendLocalList.
    UpdateType {
        Differential = "Differential",
        Full = "Full",
    }
);

ocpp_enum!(
    /// Result of a SendLocalList.
    UpdateStatus {
        Accepted = "Accepted",
        Failed = "Failed",
        NotSupported = "NotSupported",
        VersionMismatch = "VersionMismatch",
    }
);

ocpp_enum!(
    /// Error code in a StatusNotification.
    ChargePointErrorCode {
        ConnectorLockFailure = "ConnectorLockFailure",
        EvCommunicationError = "EVCommunicationError",
        GroundFailure = "GroundFailure",
        HighTemperature = "HighTemperature",
        InternalError = "InternalError",
        LocalListConflict = "LocalListConflict",
        NoError = "NoError",
        OtherError = "OtherError",
        OverCurrentFailure = "OverCurrentFailure",
        PowerMeterFailure = "PowerMeterFailure",
        PowerSwitchFailure = "PowerSwitchFailure",
        ReaderFailure = "ReaderFailure",
        ResetFailure = "ResetFailure",
        UnderVoltage = "UnderVoltage",
        OverVoltage = "OverVoltage",
        WeakSignal = "WeakSignal",
    }
);

ocpp_enum!(
    /// Status of the charge point (connector 0) or a connector in a StatusNotification.
    ChargePointStatus {
        Available = "Available",
        Preparing = "Preparing",
        Charging = "Charging",
        SuspendedEvse = "SuspendedEVSE",
        SuspendedEv = "SuspendedEV",
        Finishing = "Finishing",
        Reserved = "Reserved",
        Unavailable = "Unavailable",
        Faulted = "Faulted",
    }
);

ocpp_enum!(
    /// Why a transaction stopped.
    Reason {
        EmergencyStop = "EmergencyStop",
        EvDisconnected = "EVDisconnected",
        HardReset = "HardReset",
        Local = "Local",
        Other = "Other",
        PowerLoss = "PowerLoss",
        Reboot = "Reboot",
        Remote = "Remote",
        SoftReset = "SoftReset",
        UnlockCommand = "UnlockCommand",
        DeAuthorized = "DeAuthorized",
    }
);

ocpp_enum!(
    /// Message a TriggerMessage asks for.
    MessageTrigger {
        BootNotification = "BootNotification",
        DiagnosticsStatusNotification = "DiagnosticsStatusNotification",
        FirmwareStatusNotification = "FirmwareStatusNotification",
        Heartbeat = "Heartbeat",
        MeterValues = "MeterValues",
        StatusNotification = "StatusNotification",
    }
);

ocpp_enum!(
    /// Result of a TriggerMessage.
    TriggerMessageStatus {
        Accepted = "Accepted",
        Rejected = "Rejected",
        NotImplemented = "NotImplemented",
    }
);

ocpp_enum!(
    /// Result of an UnlockConnector.
    UnlockStatus {
        Unlocked = "Unlocked",
        UnlockFailed = "UnlockFailed",
        NotSupported = "NotSupported",
    }
);
