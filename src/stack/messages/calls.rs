//! Incoming CALLs decoded by action: [`CsmsCall`] for what a charge point receives,
//! [`CpCall`] for what a central system receives. Decoding picks the CALLERROR OCPP-J asks for:
//! `NotSupported` for a recognised action the receiver does not support (the security
//! whitepaper actions), `NotImplemented` for an unknown action or one sent in the wrong
//! direction, and the payload codes of [`decode_payload`] otherwise.

use super::*;
use crate::stack::rpc::{CallError, ErrorCode, decode_payload, encode_payload};
use serde_json::Value;

fn unhandled(action: &str, ours: &[&str]) -> CallError {
    if is_security_whitepaper_action(action) {
        CallError::new(
            ErrorCode::NotSupported,
            format!("{action} is recognised but not supported"),
        )
    } else if ALL_ACTIONS.contains(&action) && !ours.contains(&action) {
        CallError::new(
            ErrorCode::NotImplemented,
            format!("{action} is not sent in this direction"),
        )
    } else {
        let shown: String = action.chars().take(64).collect();
        CallError::new(
            ErrorCode::NotImplemented,
            format!("unknown action {shown:?}"),
        )
    }
}

macro_rules! calls {
    ($(#[$meta:meta])* $name:ident, $list:ident { $($variant:ident($req:ident),)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $($variant($req),)+
        }

        impl $name {
            /// Decodes the payload of a CALL for `action`.
            pub fn decode(action: &str, payload: &Value) -> Result<Self, CallError> {
                match action {
                    $(<$req as Request>::ACTION => decode_payload::<$req>(payload).map($name::$variant),)+
                    _ => Err(unhandled(action, $list)),
                }
            }

            /// The action name.
            pub fn action(&self) -> &'static str {
                match self {
                    $($name::$variant(_) => <$req as Request>::ACTION,)+
                }
            }

            /// The payload as sent on the wire.
            pub fn payload(&self) -> Value {
                match self {
                    $($name::$variant(r) => encode_payload(r),)+
                }
            }
        }

        $(
            impl From<$req> for $name {
                fn from(r: $req) -> Self {
                    $name::$variant(r)
                }
            }
        )+
    };
}

calls!(
    /// A CALL from the central system to the charge point.
    CsmsCall, CSMS_INITIATED {
        CancelReservation(CancelReservationRequest),
        ChangeAvailability(ChangeAvailabilityRequest),
        ChangeConfiguration(ChangeConfigurationRequest),
        ClearCache(ClearCacheRequest),
        ClearChargingProfile(ClearChargingProfileRequest),
        DataTransfer(DataTransferRequest),
        GetCompositeSchedule(GetCompositeScheduleRequest),
        GetConfiguration(GetConfigurationRequest),
        GetDiagnostics(GetDiagnosticsRequest),
        GetLocalListVersion(GetLocalListVersionRequest),
        RemoteStartTransaction(RemoteStartTransactionRequest),
        RemoteStopTransaction(RemoteStopTransactionRequest),
        ReserveNow(ReserveNowRequest),
        Reset(ResetRequest),
        SendLocalList(SendLocalListRequest),
        SetChargingProfile(SetChargingProfileRequest),
        TriggerMessage(TriggerMessageRequest),
        UnlockConnector(UnlockConnectorRequest),
        UpdateFirmware(UpdateFirmwareRequest),
    }
);

calls!(
    /// A CALL from the charge point to the central system.
    CpCall, CP_INITIATED {
        Authorize(AuthorizeRequest),
        BootNotification(BootNotificationRequest),
        DataTransfer(DataTransferRequest),
        DiagnosticsStatusNotification(DiagnosticsStatusNotificationRequest),
        FirmwareStatusNotification(FirmwareStatusNotificationRequest),
        Heartbeat(HeartbeatRequest),
        MeterValues(MeterValuesRequest),
        StartTransaction(StartTransactionRequest),
        StatusNotification(StatusNotificationRequest),
        StopTransaction(StopTransactionRequest),
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_listed_action_decodes_to_its_variant() {
        for action in CSMS_INITIATED {
            // An empty payload reaches the right type: it fails for a field of that type
            // (or decodes, for actions without required fields).
            match CsmsCall::decode(action, &json!({})) {
                Ok(call) => assert_eq!(call.action(), *action),
                Err(e) => assert_eq!(e.code, ErrorCode::OccurenceConstraintViolation, "{action}"),
            }
        }
        for action in CP_INITIATED {
            match CpCall::decode(action, &json!({})) {
                Ok(call) => assert_eq!(call.action(), *action),
                Err(e) => assert_eq!(e.code, ErrorCode::OccurenceConstraintViolation, "{action}"),
            }
        }
        let call = CsmsCall::decode("Reset", &json!({"type": "Soft"})).unwrap();
        assert_eq!(
            call,
            CsmsCall::Reset(ResetRequest {
                kind: ResetType::Soft
            })
        );
        assert_eq!(call.payload(), json!({"type": "Soft"}));
    }

    #[test]
    fn unhandled_actions_get_not_supported_or_not_implemented() {
        for action in SECURITY_WHITEPAPER_ACTIONS {
            let e = CsmsCall::decode(action, &json!({})).unwrap_err();
            assert_eq!(e.code, ErrorCode::NotSupported, "{action}");
        }
        let e = CsmsCall::decode("BootNotification", &json!({})).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotImplemented);
        let e = CpCall::decode("Reset", &json!({"type": "Hard"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotImplemented);
        let e = CsmsCall::decode("FlyToTheMoon", &json!({})).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotImplemented);
        assert!(e.description.contains("FlyToTheMoon"), "{e}");
        // Action names are case sensitive.
        let e = CsmsCall::decode("reset", &json!({"type": "Hard"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotImplemented);
    }
}
