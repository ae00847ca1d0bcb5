//! OCPP 1.6J message types: the request and response payload of every action of the profiles
//! the charger implements (Core, Firmware Management, Local Auth List Management, Reservation,
//! Smart Charging, Remote Trigger), the data types they carry, and the [`Request`] trait tying a
//! request to its action name and response.
//!
//! Decoding a payload received in a CALL or CALLRESULT is
//! [`crate::stack::rpc::decode_payload`], which turns a rejected payload into the CALLERROR code
//! OCPP-J prescribes; [`CsmsCall::decode`] and [`CpCall::decode`] decode an incoming CALL by
//! action, answering unknown and unsupported actions too.

mod calls;
mod enums;
mod payloads;
mod primitives;

pub use calls::{CpCall, CsmsCall};
pub use enums::*;
pub use payloads::*;
pub use primitives::{
    CiString20, CiString25, CiString50, CiString255, CiString500, CiStringError, Decimal1,
    Decimal1Error, IdToken, Timestamp, TimestampError, TimestampZone, is_absolute_uri,
};

pub(crate) use primitives::{BAD_TIMESTAMP, BAD_URI, EMPTY_LIST, OUT_OF_RANGE, TOO_LONG};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A request payload: its action name and the payload of the matching response.
pub trait Request: Serialize + DeserializeOwned + Send + 'static {
    /// The action name in the CALL (`"BootNotification"`).
    const ACTION: &'static str;
    /// The payload of the CALLRESULT answering this request.
    type Response: Serialize + DeserializeOwned + Send + 'static;
}

macro_rules! requests {
    ($($action:literal: $req:ident => $resp:ident;)+) => {
        $(
            impl Request for $req {
                const ACTION: &'static str = $action;
                type Response = $resp;
            }
        )+

        /// Every action of the implemented profiles, in alphabetical order.
        pub const ALL_ACTIONS: &[&str] = &[$($action),+];
    };
}

requests! {
    "Authorize": AuthorizeRequest => AuthorizeResponse;
    "BootNotification": BootNotificationRequest => BootNotificationResponse;
    "CancelReservation": CancelReservationRequest => CancelReservationResponse;
    "ChangeAvailability": ChangeAvailabilityRequest => ChangeAvailabilityResponse;
    "ChangeConfiguration": ChangeConfigurationRequest => ChangeConfigurationResponse;
    "ClearCache": ClearCacheRequest => ClearCacheResponse;
    "ClearChargingProfile": ClearChargingProfileRequest => ClearChargingProfileResponse;
    "DataTransfer": DataTransferRequest => DataTransferResponse;
    "DiagnosticsStatusNotification": DiagnosticsStatusNotificationRequest => DiagnosticsStatusNotificationResponse;
    "FirmwareStatusNotification": FirmwareStatusNotificationRequest => FirmwareStatusNotificationResponse;
    "GetCompositeSchedule": GetCompositeScheduleRequest => GetCompositeScheduleResponse;
    "GetConfiguration": GetConfigurationRequest => GetConfigurationResponse;
    "GetDiagnostics": GetDiagnosticsRequest => GetDiagnosticsResponse;
    "GetLocalListVersion": GetLocalListVersionRequest => GetLocalListVersionResponse;
    "Heartbeat": HeartbeatRequest => HeartbeatResponse;
    "MeterValues": MeterValuesRequest => MeterValuesResponse;
    "RemoteStartTransaction": RemoteStartTransactionRequest => RemoteStartTransactionResponse;
    "RemoteStopTransaction": RemoteStopTransactionRequest => RemoteStopTransactionResponse;
    "ReserveNow": ReserveNowRequest => ReserveNowResponse;
    "Reset": ResetRequest => ResetResponse;
    "SendLocalList": SendLocalListRequest => SendLocalListResponse;
    "SetChargingProfile": SetChargingProfileRequest => SetChargingProfileResponse;
    "StartTransaction": StartTransactionRequest => StartTransactionResponse;
    "StatusNotification": StatusNotificationRequest => StatusNotificationResponse;
    "StopTransaction": StopTransactionRequest => StopTransactionResponse;
    "TriggerMessage": TriggerMessageRequest => TriggerMessageResponse;
    "UnlockConnector": UnlockConnectorRequest => UnlockConnectorResponse;
    "UpdateFirmware": UpdateFirmwareRequest => UpdateFirmwareResponse;
}

/// Actions the charge point sends to the central system.
pub const CP_INITIATED: &[&str] = &[
    "Authorize",
    "BootNotification",
    "DataTransfer",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StartTransaction",
    "StatusNotification",
    "StopTransaction",
];

/// Actions the central system sends to the charge point.
pub const CSMS_INITIATED: &[&str] = &[
    "CancelReservation",
    "ChangeAvailability",
    "ChangeConfiguration",
    "ClearCache",
    "ClearChargingProfile",
    "DataTransfer",
    "GetCompositeSchedule",
    "GetConfiguration",
    "GetDiagnostics",
    "GetLocalListVersion",
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "ReserveNow",
    "Reset",
    "SendLocalList",
    "SetChargingProfile",
    "TriggerMessage",
    "UnlockConnector",
    "UpdateFirmware",
];

/// Actions of the OCPP 1.6 security whitepaper (edition 3) that the charger recognises but does
/// not support: a CALL for one is answered with a `NotSupported` CALLERROR, where an unknown
/// action gets `NotImplemented`.
pub const SECURITY_WHITEPAPER_ACTIONS: &[&str] = &[
    "CertificateSigned",
    "DeleteCertificate",
    "ExtendedTriggerMessage",
    "GetInstalledCertificateIds",
    "GetLog",
    "InstallCertificate",
    "LogStatusNotification",
    "SecurityEventNotification",
    "SignCertificate",
    "SignedFirmwareStatusNotification",
    "SignedUpdateFirmware",
];

/// Whether the central system may send `action` to the charge point.
pub fn is_csms_initiated(action: &str) -> bool {
    CSMS_INITIATED.contains(&action)
}

/// Whether the charge point may send `action` to the central system.
pub fn is_cp_initiated(action: &str) -> bool {
    CP_INITIATED.contains(&action)
}

/// Whether `action` is a security whitepaper action (recognised, not supported).
pub fn is_security_whitepaper_action(action: &str) -> bool {
    SECURITY_WHITEPAPER_ACTIONS.contains(&action)
}

#[cfg(test)]
mod tests;
