//! Request and response payloads of every OCPP 1.6 action the charger implements, with the
//! shared data types they carry. Field names and optionality follow the official JSON schemas;
//! unknown fields are rejected (the schemas say `additionalProperties: false`).

use super::enums::*;
use super::primitives::{
    CiString20, CiString25, CiString50, CiString255, CiString500, Decimal1, IdToken, Timestamp,
    non_empty,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Declares a payload struct with the serde attributes every OCPP payload shares.
macro_rules! payload {
    ($(#[$meta:meta])* $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name { $($body)* }
    };
}

/// Declares an empty payload (`{}`).
macro_rules! empty_payload {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {}
    };
}

// ---------------------------------------------------------------------------------------------
// Shared data types
// ---------------------------------------------------------------------------------------------

payload!(
    /// Authorization information about an identifier.
    #[derive(Debug)]
    IdTagInfo {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub expiry_date: Option<Timestamp>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub parent_id_tag: Option<IdToken>,
        pub status: AuthorizationStatus,
    }
);

impl IdTagInfo {
    /// Only a status, no expiry and no parent.
    pub fn with_status(status: AuthorizationStatus) -> Self {
        Self {
            expiry_date: None,
            parent_id_tag: None,
            status,
        }
    }
}

payload!(
    /// One period of a charging schedule.
    #[derive(Debug)]
    ChargingSchedulePeriod {
        /// Start of the period in seconds from the start of the schedule.
        pub start_period: u32,
        /// Limit in the schedule's unit (A or W), at most one decimal.
        pub limit: Decimal1,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub number_phases: Option<u32>,
    }
);

payload!(
    /// A charging schedule: limits over time.
    #[derive(Debug)]
    ChargingSchedule {
        /// Duration in seconds; absent means the last period lasts until the profile ends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub duration: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub start_schedule: Option<Timestamp>,
        pub charging_rate_unit: ChargingRateUnitType,
        /// At least one period, ordered by `start_period`.
        #[serde(deserialize_with = "non_empty")]
        pub charging_schedule_period: Vec<ChargingSchedulePeriod>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub min_charging_rate: Option<Decimal1>,
    }
);

payload!(
    /// A charging profile (`csChargingProfiles` in SetChargingProfile).
    #[derive(Debug)]
    ChargingProfile {
        pub charging_profile_id: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub transaction_id: Option<i32>,
        pub stack_level: u32,
        pub charging_profile_purpose: ChargingProfilePurposeType,
        pub charging_profile_kind: ChargingProfileKindType,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub recurrency_kind: Option<RecurrencyKindType>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub valid_from: Option<Timestamp>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub valid_to: Option<Timestamp>,
        pub charging_schedule: ChargingSchedule,
    }
);

payload!(
    /// One measured value.
    #[derive(Debug)]
    SampledValue {
        pub value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub context: Option<ReadingContext>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub format: Option<ValueFormat>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub measurand: Option<Measurand>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub phase: Option<Phase>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub location: Option<Location>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub unit: Option<UnitOfMeasure>,
    }
);

payload!(
    /// Values sampled at one moment.
    #[derive(Debug)]
    MeterValue {
        pub timestamp: Timestamp,
        /// At least one value.
        #[serde(deserialize_with = "non_empty")]
        pub sampled_value: Vec<SampledValue>,
    }
);

payload!(
    /// A configuration key and its value in a GetConfiguration response.
    #[derive(Debug)]
    KeyValue {
        pub key: CiString50,
        pub readonly: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub value: Option<CiString500>,
    }
);

payload!(
    /// One entry of a local authorization list.
    #[derive(Debug)]
    AuthorizationData {
        pub id_tag: IdToken,
        /// Absent in a differential update: remove the entry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub id_tag_info: Option<IdTagInfo>,
    }
);

// ---------------------------------------------------------------------------------------------
// Core
// ---------------------------------------------------------------------------------------------

payload!(
    #[derive(Debug)]
    AuthorizeRequest {
        pub id_tag: IdToken,
    }
);

payload!(
    #[derive(Debug)]
    AuthorizeResponse {
        pub id_tag_info: IdTagInfo,
    }
);

payload!(
    #[derive(Debug)]
    BootNotificationRequest {
        pub charge_point_vendor: CiString20,
        pub charge_point_model: CiString20,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub charge_point_serial_number: Option<CiString25>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub charge_box_serial_number: Option<CiString25>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub firmware_version: Option<CiString50>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub iccid: Option<CiString20>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub imsi: Option<CiString20>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub meter_type: Option<CiString25>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub meter_serial_number: Option<CiString25>,
    }
);

payload!(
    #[derive(Debug)]
    BootNotificationResponse {
        pub status: RegistrationStatus,
        pub current_time: Timestamp,
        /// Heartbeat interval (when Accepted) or retry delay (otherwise), in seconds.
        pub interval: u32,
    }
);

payload!(
    #[derive(Debug)]
    ChangeAvailabilityRequest {
        /// 0 addresses the whole charge point.
        pub connector_id: u32,
        #[serde(rename = "type")]
        pub kind: AvailabilityType,
    }
);

payload!(
    #[derive(Debug)]
    ChangeAvailabilityResponse {
        pub status: AvailabilityStatus,
    }
);

payload!(
    /// Its `Debug` output hides the value of write-only keys (AuthorizationKey).
    ChangeConfigurationRequest {
        pub key: CiString50,
        pub value: CiString500,
    }
);

/// Configuration keys whose value is write-only and never shown.
pub const WRITE_ONLY_KEYS: &[&str] = &["AuthorizationKey"];

impl fmt::Debug for ChangeConfigurationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = WRITE_ONLY_KEYS.iter().any(|k| self.key == *k);
        let mut s = f.debug_struct("ChangeConfigurationRequest");
        s.field("key", &self.key);
        if hidden {
            s.field("value", &crate::stack::secret::REDACTED);
        } else {
            s.field("value", &self.value);
        }
        s.finish()
    }
}

payload!(
    #[derive(Debug)]
    ChangeConfigurationResponse {
        pub status: ConfigurationStatus,
    }
);

empty_payload!(ClearCacheRequest);

payload!(
    #[derive(Debug)]
    ClearCacheResponse {
        pub status: ClearCacheStatus,
    }
);

payload!(
    #[derive(Debug)]
    DataTransferRequest {
        pub vendor_id: CiString255,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub message_id: Option<CiString50>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub data: Option<String>,
    }
);

payload!(
    #[derive(Debug)]
    DataTransferResponse {
        pub status: DataTransferStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub data: Option<String>,
    }
);

payload!(
    #[derive(Debug, Default)]
    GetConfigurationRequest {
        /// Keys asked for; absent or empty means all keys.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub key: Option<Vec<CiString50>>,
    }
);

payload!(
    #[derive(Debug, Default)]
    GetConfigurationResponse {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub configuration_key: Option<Vec<KeyValue>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub unknown_key: Option<Vec<CiString50>>,
    }
);

empty_payload!(HeartbeatRequest);

payload!(
    #[derive(Debug)]
    HeartbeatResponse {
        pub current_time: Timestamp,
    }
);

payload!(
    #[derive(Debug)]
    MeterValuesRequest {
        pub connector_id: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub transaction_id: Option<i32>,
        /// At least one.
        #[serde(deserialize_with = "non_empty")]
        pub meter_value: Vec<MeterValue>,
    }
);

empty_payload!(MeterValuesResponse);

payload!(
    #[derive(Debug)]
    RemoteStartTransactionRequest {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub connector_id: Option<u32>,
        pub id_tag: IdToken,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub charging_profile: Option<ChargingProfile>,
    }
);

payload!(
    #[derive(Debug)]
    RemoteStartTransactionResponse {
        pub status: RemoteStartStopStatus,
    }
);

payload!(
    #[derive(Debug)]
    RemoteStopTransactionRequest {
        pub transaction_id: i32,
    }
);

payload!(
    #[derive(Debug)]
    RemoteStopTransactionResponse {
        pub status: RemoteStartStopStatus,
    }
);

payload!(
    #[derive(Debug)]
    ResetRequest {
        #[serde(rename = "type")]
        pub kind: ResetType,
    }
);

payload!(
    #[derive(Debug)]
    ResetResponse {
        pub status: ResetStatus,
    }
);

payload!(
    #[derive(Debug)]
    StartTransactionRequest {
        pub connector_id: u32,
        pub id_tag: IdToken,
        /// Meter reading in Wh at the start.
        pub meter_start: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub reservation_id: Option<i32>,
        pub timestamp: Timestamp,
    }
);

payload!(
    #[derive(Debug)]
    StartTransactionResponse {
        pub id_tag_info: IdTagInfo,
        pub transaction_id: i32,
    }
);

payload!(
    #[derive(Debug)]
    StatusNotificationRequest {
        pub connector_id: u32,
        pub error_code: ChargePointErrorCode,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub info: Option<CiString50>,
        pub status: ChargePointStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub timestamp: Option<Timestamp>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub vendor_id: Option<CiString255>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub vendor_error_code: Option<CiString50>,
    }
);

empty_payload!(StatusNotificationResponse);

payload!(
    #[derive(Debug)]
    StopTransactionRequest {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub id_tag: Option<IdToken>,
        /// Meter reading in Wh at the stop.
        pub meter_stop: i32,
        pub timestamp: Timestamp,
        pub transaction_id: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub reason: Option<Reason>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub transaction_data: Option<Vec<MeterValue>>,
    }
);

payload!(
    #[derive(Debug, Default)]
    StopTransactionResponse {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub id_tag_info: Option<IdTagInfo>,
    }
);

payload!(
    #[derive(Debug)]
    UnlockConnectorRequest {
        pub connector_id: u32,
    }
);

payload!(
    #[derive(Debug)]
    UnlockConnectorResponse {
        pub status: UnlockStatus,
    }
);

// ---------------------------------------------------------------------------------------------
// Firmware Management
// ---------------------------------------------------------------------------------------------

payload!(
    #[derive(Debug)]
    GetDiagnosticsRequest {
        /// URI to upload the diagnostics file to.
        pub location: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retries: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retry_interval: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub start_time: Option<Timestamp>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub stop_time: Option<Timestamp>,
    }
);

payload!(
    #[derive(Debug, Default)]
    GetDiagnosticsResponse {
        /// Absent when there is no diagnostics information.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub file_name: Option<CiString255>,
    }
);

payload!(
    #[derive(Debug)]
    DiagnosticsStatusNotificationRequest {
        pub status: DiagnosticsStatus,
    }
);

empty_payload!(DiagnosticsStatusNotificationResponse);

payload!(
    #[derive(Debug)]
    FirmwareStatusNotificationRequest {
        pub status: FirmwareStatus,
    }
);

empty_payload!(FirmwareStatusNotificationResponse);

payload!(
    #[derive(Debug)]
    UpdateFirmwareRequest {
        /// URI to download the firmware from.
        pub location: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retries: Option<u32>,
        pub retrieve_date: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retry_interval: Option<u32>,
    }
);

empty_payload!(UpdateFirmwareResponse);

// ---------------------------------------------------------------------------------------------
// Local Auth List Management
// ---------------------------------------------------------------------------------------------

empty_payload!(GetLocalListVersionRequest);

payload!(
    #[derive(Debug)]
    GetLocalListVersionResponse {
        /// 0: the list is empty; -1: local authorization lists are not supported.
        pub list_version: i32,
    }
);

payload!(
    #[derive(Debug)]
    SendLocalListRequest {
        pub list_version: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub local_authorization_list: Option<Vec<AuthorizationData>>,
        pub update_type: UpdateType,
    }
);

payload!(
    #[derive(Debug)]
    SendLocalListResponse {
        pub status: UpdateStatus,
    }
);

// ---------------------------------------------------------------------------------------------
// Reservation
// ---------------------------------------------------------------------------------------------

payload!(
    #[derive(Debug)]
    ReserveNowRequest {
        /// 0 reserves the charge point rather than one connector.
        pub connector_id: u32,
        pub expiry_date: Timestamp,
        pub id_tag: IdToken,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub parent_id_tag: Option<IdToken>,
        pub reservation_id: i32,
    }
);

payload!(
    #[derive(Debug)]
    ReserveNowResponse {
        pub status: ReservationStatus,
    }
);

payload!(
    #[derive(Debug)]
    CancelReservationRequest {
        pub reservation_id: i32,
    }
);

payload!(
    #[derive(Debug)]
    CancelReservationResponse {
        pub status: CancelReservationStatus,
    }
);

// ---------------------------------------------------------------------------------------------
// Smart Charging
// ---------------------------------------------------------------------------------------------

payload!(
    #[derive(Debug)]
    SetChargingProfileRequest {
        pub connector_id: u32,
        pub cs_charging_profiles: ChargingProfile,
    }
);

payload!(
    #[derive(Debug)]
    SetChargingProfileResponse {
        pub status: ChargingProfileStatus,
    }
);

payload!(
    /// Every field narrows which profiles are cleared; none set clears all.
    #[derive(Debug, Default)]
    ClearChargingProfileRequest {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub id: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub connector_id: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub charging_profile_purpose: Option<ChargingProfilePurposeType>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub stack_level: Option<u32>,
    }
);

payload!(
    #[derive(Debug)]
    ClearChargingProfileResponse {
        pub status: ClearChargingProfileStatus,
    }
);

payload!(
    #[derive(Debug)]
    GetCompositeScheduleRequest {
        pub connector_id: u32,
        /// Length of the requested schedule in seconds.
        pub duration: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub charging_rate_unit: Option<ChargingRateUnitType>,
    }
);

payload!(
    #[derive(Debug)]
    GetCompositeScheduleResponse {
        pub status: GetCompositeScheduleStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub connector_id: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub schedule_start: Option<Timestamp>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub charging_schedule: Option<ChargingSchedule>,
    }
);

// ---------------------------------------------------------------------------------------------
// Remote Trigger
// ---------------------------------------------------------------------------------------------

payload!(
    #[derive(Debug)]
    TriggerMessageRequest {
        pub requested_message: MessageTrigger,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub connector_id: Option<u32>,
    }
);

payload!(
    #[derive(Debug)]
    TriggerMessageResponse {
        pub status: TriggerMessageStatus,
    }
);
