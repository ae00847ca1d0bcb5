//! Checks the OCPP 1.6 message types against the official JSON schemas shipped by the Python
//! `ocpp` package (installed by `tests/interop/setup.sh` into `.venv`, or the venv named by
//! `CHARGECTL_VENV`).
//!
//! For every action: a full instance (every optional field set) and a minimal one of the request
//! and the response serialise to JSON the schema accepts and decode back to the same value.
//! Then, driven by the schema itself, each full instance is mutated: every enum value the schema
//! lists must decode, an unknown one must give PropertyConstraintViolation; a string of
//! `maxLength` must decode, one character more must give PropertyConstraintViolation; removing a
//! required field must give OccurenceConstraintViolation; an extra field FormationViolation; a
//! value of another JSON type TypeConstraintViolation; a malformed date-time
//! PropertyConstraintViolation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use chargectl::stack::messages::*;
use chargectl::stack::rpc::{ErrorCode, decode_payload, encode_payload};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};

fn schema_dir() -> PathBuf {
    let venv = std::env::var_os("CHARGECTL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let lib = venv.join("lib");
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&lib) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path().join("site-packages/ocpp/v16/schemas");
            if name.starts_with("python3") && dir.is_dir() {
                found.push(dir);
            }
        }
    }
    found.sort();
    match found.pop() {
        Some(dir) => dir,
        None => panic!(
            "the official OCPP 1.6 JSON schemas are missing: expected \
             {}/python3.*/site-packages/ocpp/v16/schemas/. Install them with \
             `bash tests/interop/setup.sh` or point CHARGECTL_VENV at a venv with the \
             Python `ocpp` package",
            lib.display()
        ),
    }
}

/// Every schema by file stem (`BootNotification`, `BootNotificationResponse`).
fn schemas() -> BTreeMap<String, Value> {
    let dir = schema_dir();
    let mut out = BTreeMap::new();
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let schema: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        out.insert(stem, schema);
    }
    assert!(!out.is_empty(), "no schema files in {}", dir.display());
    out
}

fn validate(schema_name: &str, schema: &Value, instance: &Value) {
    let validator = jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema {schema_name} does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{schema_name} rejects {instance}:\n  {}",
        errors.join("\n  ")
    );
}

/// One kind of mutation derived from the schema.
enum Probe {
    Enum(Vec<String>),
    MaxLength(usize),
    Required(String),
    Object,
    /// A value of another JSON type than the schema's `type`.
    WrongType(Value),
    /// A string with `format: date-time` that is not one.
    BadDateTime,
}

/// Collects the probes of `schema` at JSON pointer `at` in an instance that sets every field.
fn probes(schema: &Value, at: &str, out: &mut Vec<(String, Probe)>) {
    let wrong = match schema.get("type").and_then(Value::as_str) {
        Some("string") => Some(json!(12)),
        Some("integer") => Some(json!(1.5)),
        Some("number") | Some("boolean") => Some(json!("1")),
        Some("array") | Some("object") if !at.is_empty() => Some(json!("x")),
        _ => None,
    };
    if let Some(wrong) = wrong {
        out.push((at.to_string(), Probe::WrongType(wrong)));
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time") {
        out.push((at.to_string(), Probe::BadDateTime));
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            out.push((at.to_string(), Probe::Object));
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    out.push((at.to_string(), Probe::Required(name.to_string())));
                }
            }
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    probes(sub, &format!("{at}/{name}"), out);
                }
            }
        }
        Some("array") => {
            if let Some(items) = schema.get("items") {
                probes(items, &format!("{at}/0"), out);
            }
        }
        Some("string") => {
            if let Some(values) = schema.get("enum").and_then(Value::as_array) {
                let values = values
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
                out.push((at.to_string(), Probe::Enum(values)));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                out.push((at.to_string(), Probe::MaxLength(max as usize)));
            }
        }
        _ => {}
    }
}

fn expect_code<T: DeserializeOwned + Debug>(
    what: &str,
    payload: &Value,
    code: ErrorCode,
    field_hint: &str,
) {
    match decode_payload::<T>(payload) {
        Ok(v) => panic!("{what}: {payload} was accepted as {v:?}"),
        Err(e) => {
            assert_eq!(e.code, code, "{what}: {e}");
            assert!(
                e.description.contains(field_hint),
                "{what}: description should name {field_hint}: {e}"
            );
        }
    }
}

/// Runs every schema-driven mutation of `full` (an instance with every field set).
fn mutate<T: DeserializeOwned + Debug>(schema_name: &str, schema: &Value, full: &Value) {
    let mut list = Vec::new();
    probes(schema, "", &mut list);
    for (at, probe) in list {
        let last = at.rsplit('/').next().unwrap_or_default().to_string();
        let set = |v: Value| {
            let mut m = full.clone();
            let slot = m
                .pointer_mut(&at)
                .unwrap_or_else(|| panic!("{schema_name}: the full instance lacks {at}"));
            *slot = v;
            m
        };
        match probe {
            Probe::Enum(values) => {
                for value in values {
                    let m = set(json!(value));
                    if let Err(e) = decode_payload::<T>(&m) {
                        panic!("{schema_name}{at}: schema value {value:?} is rejected: {e}");
                    }
                }
                let m = set(json!("NoSuchValue"));
                expect_code::<T>(
                    &format!("{schema_name}{at} unknown value"),
                    &m,
                    ErrorCode::PropertyConstraintViolation,
                    &last,
                );
            }
            Probe::MaxLength(max) => {
                let m = set(json!("a".repeat(max)));
                if let Err(e) = decode_payload::<T>(&m) {
                    panic!("{schema_name}{at}: {max} characters are rejected: {e}");
                }
                let m = set(json!("a".repeat(max + 1)));
                expect_code::<T>(
                    &format!("{schema_name}{at} {} characters", max + 1),
                    &m,
                    ErrorCode::PropertyConstraintViolation,
                    &last,
                );
            }
            Probe::Required(name) => {
                let mut m = full.clone();
                let object = m
                    .pointer_mut(&at)
                    .and_then(Value::as_object_mut)
                    .unwrap_or_else(|| panic!("{schema_name}: no object at {at:?}"));
                object.remove(&name);
                expect_code::<T>(
                    &format!("{schema_name}{at} without {name}"),
                    &m,
                    ErrorCode::OccurenceConstraintViolation,
                    &name,
                );
            }
            Probe::WrongType(wrong) => {
                let m = set(wrong.clone());
                expect_code::<T>(
                    &format!("{schema_name}{at} set to {wrong}"),
                    &m,
                    ErrorCode::TypeConstraintViolation,
                    &last,
                );
            }
            Probe::BadDateTime => {
                let m = set(json!("26.11.2026 08:00"));
                expect_code::<T>(
                    &format!("{schema_name}{at} not a date-time"),
                    &m,
                    ErrorCode::PropertyConstraintViolation,
                    &last,
                );
            }
            Probe::Object => {
                let mut m = full.clone();
                let object = m
                    .pointer_mut(&at)
                    .and_then(Value::as_object_mut)
                    .unwrap_or_else(|| panic!("{schema_name}: no object at {at:?}"));
                object.insert("extraProperty".into(), json!(1));
                expect_code::<T>(
                    &format!("{schema_name}{at} with an extra field"),
                    &m,
                    ErrorCode::FormationViolation,
                    "extraProperty",
                );
            }
        }
    }
}

/// Serialises `value`, validates it against `schema_name`, decodes it back and compares.
fn round_trip<T>(schemas: &BTreeMap<String, Value>, schema_name: &str, value: &T) -> Value
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let schema = schemas
        .get(schema_name)
        .unwrap_or_else(|| panic!("no schema {schema_name}.json"));
    let json = encode_payload(value);
    validate(schema_name, schema, &json);
    let back: T = decode_payload(&json)
        .unwrap_or_else(|e| panic!("{schema_name}: {json} does not decode: {e}"));
    assert_eq!(&back, value, "{schema_name} round trip");
    json
}

/// Checks one action: full and minimal request and response.
struct Checker {
    schemas: BTreeMap<String, Value>,
    checked: BTreeSet<String>,
}

impl Checker {
    fn check<R>(&mut self, full: R, minimal: R, full_resp: R::Response, minimal_resp: R::Response)
    where
        R: Request + PartialEq + Debug,
        R::Response: PartialEq + Debug,
    {
        let req_name = R::ACTION.to_string();
        let resp_name = format!("{}Response", R::ACTION);
        let json = round_trip(&self.schemas, &req_name, &full);
        let mut directions = 0;
        if is_csms_initiated(R::ACTION) {
            let call = CsmsCall::decode(R::ACTION, &json)
                .unwrap_or_else(|e| panic!("CsmsCall::decode({req_name}): {e}"));
            assert_eq!((call.action(), call.payload()), (R::ACTION, json.clone()));
            directions += 1;
        }
        if is_cp_initiated(R::ACTION) {
            let call = CpCall::decode(R::ACTION, &json)
                .unwrap_or_else(|e| panic!("CpCall::decode({req_name}): {e}"));
            assert_eq!((call.action(), call.payload()), (R::ACTION, json.clone()));
            directions += 1;
        }
        assert!(directions > 0, "{req_name} is in neither direction list");
        round_trip(&self.schemas, &req_name, &minimal);
        mutate::<R>(&req_name, &self.schemas[&req_name], &json);
        let json = round_trip(&self.schemas, &resp_name, &full_resp);
        round_trip(&self.schemas, &resp_name, &minimal_resp);
        mutate::<R::Response>(&resp_name, &self.schemas[&resp_name], &json);
        assert!(
            self.checked.insert(R::ACTION.to_string()),
            "{} checked twice",
            R::ACTION
        );
    }
}

fn ci20(s: &str) -> CiString20 {
    CiString20::new(s).unwrap()
}
fn ci25(s: &str) -> CiString25 {
    CiString25::new(s).unwrap()
}
fn ci50(s: &str) -> CiString50 {
    CiString50::new(s).unwrap()
}
fn ci255(s: &str) -> CiString255 {
    CiString255::new(s).unwrap()
}
fn ci500(s: &str) -> CiString500 {
    CiString500::new(s).unwrap()
}
fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}
fn d1(v: f64) -> Decimal1 {
    Decimal1::new(v).unwrap()
}

fn full_id_tag_info() -> IdTagInfo {
    IdTagInfo {
        expiry_date: Some(ts("2026-12-31T23:59:59.000Z")),
        parent_id_tag: Some(ci20("PARENT-01")),
        status: AuthorizationStatus::Accepted,
    }
}

fn full_schedule() -> ChargingSchedule {
    ChargingSchedule {
        duration: Some(3600),
        start_schedule: Some(ts("2026-11-26T08:00:00.000Z")),
        charging_rate_unit: ChargingRateUnitType::A,
        charging_schedule_period: vec![
            ChargingSchedulePeriod {
                start_period: 0,
                limit: d1(16.0),
                number_phases: Some(3),
            },
            ChargingSchedulePeriod {
                start_period: 1800,
                limit: d1(6.3),
                number_phases: None,
            },
        ],
        min_charging_rate: Some(d1(4.2)),
    }
}

fn minimal_schedule() -> ChargingSchedule {
    ChargingSchedule {
        duration: None,
        start_schedule: None,
        charging_rate_unit: ChargingRateUnitType::W,
        charging_schedule_period: vec![ChargingSchedulePeriod {
            start_period: 0,
            limit: d1(11000.0),
            number_phases: None,
        }],
        min_charging_rate: None,
    }
}

fn full_profile() -> ChargingProfile {
    ChargingProfile {
        charging_profile_id: 12,
        transaction_id: Some(77),
        stack_level: 2,
        charging_profile_purpose: ChargingProfilePurposeType::TxProfile,
        charging_profile_kind: ChargingProfileKindType::Recurring,
        recurrency_kind: Some(RecurrencyKindType::Daily),
        valid_from: Some(ts("2026-11-01T00:00:00.000Z")),
        valid_to: Some(ts("2027-11-01T00:00:00.000Z")),
        charging_schedule: full_schedule(),
    }
}

fn minimal_profile() -> ChargingProfile {
    ChargingProfile {
        charging_profile_id: 1,
        transaction_id: None,
        stack_level: 0,
        charging_profile_purpose: ChargingProfilePurposeType::TxDefaultProfile,
        charging_profile_kind: ChargingProfileKindType::Absolute,
        recurrency_kind: None,
        valid_from: None,
        valid_to: None,
        charging_schedule: minimal_schedule(),
    }
}

fn full_meter_value() -> MeterValue {
    MeterValue {
        timestamp: ts("2026-11-26T08:15:00.000Z"),
        sampled_value: vec![SampledValue {
            value: "12345".into(),
            context: Some(ReadingContext::SamplePeriodic),
            format: Some(ValueFormat::Raw),
            measurand: Some(Measurand::EnergyActiveImportRegister),
            phase: Some(Phase::L1N),
            location: Some(Location::Outlet),
            unit: Some(UnitOfMeasure::Wh),
        }],
    }
}

fn minimal_meter_value() -> MeterValue {
    MeterValue {
        timestamp: ts("2026-11-26T08:15:00.000Z"),
        sampled_value: vec![SampledValue {
            value: "0".into(),
            context: None,
            format: None,
            measurand: None,
            phase: None,
            location: None,
            unit: None,
        }],
    }
}

#[test]
fn every_action_matches_the_official_schemas() {
    let mut c = Checker {
        schemas: schemas(),
        checked: BTreeSet::new(),
    };

    // Core
    c.check(
        AuthorizeRequest {
            id_tag: ci20("04A1B2C3D4E5F6"),
        },
        AuthorizeRequest { id_tag: ci20("x") },
        AuthorizeResponse {
            id_tag_info: full_id_tag_info(),
        },
        AuthorizeResponse {
            id_tag_info: IdTagInfo::with_status(AuthorizationStatus::Invalid),
        },
    );
    c.check(
        BootNotificationRequest {
            charge_point_vendor: ci20("Zaptec"),
            charge_point_model: ci20("Go"),
            charge_point_serial_number: Some(ci25("ZAP000001")),
            charge_box_serial_number: Some(ci25("ZAP000001")),
            firmware_version: Some(ci50("2.3.1.0")),
            iccid: Some(ci20("8947000000000000001")),
            imsi: Some(ci20("242010000000001")),
            meter_type: Some(ci25("internal")),
            meter_serial_number: Some(ci25("M-0001")),
        },
        BootNotificationRequest {
            charge_point_vendor: ci20("Zaptec"),
            charge_point_model: ci20("Go"),
            charge_point_serial_number: None,
            charge_box_serial_number: None,
            firmware_version: None,
            iccid: None,
            imsi: None,
            meter_type: None,
            meter_serial_number: None,
        },
        BootNotificationResponse {
            status: RegistrationStatus::Accepted,
            current_time: ts("2026-11-26T08:00:00.000Z"),
            interval: 300,
        },
        BootNotificationResponse {
            status: RegistrationStatus::Pending,
            current_time: ts("2026-11-26T08:00:00.500Z"),
            interval: 0,
        },
    );
    c.check(
        ChangeAvailabilityRequest {
            connector_id: 1,
            kind: AvailabilityType::Inoperative,
        },
        ChangeAvailabilityRequest {
            connector_id: 0,
            kind: AvailabilityType::Operative,
        },
        ChangeAvailabilityResponse {
            status: AvailabilityStatus::Scheduled,
        },
        ChangeAvailabilityResponse {
            status: AvailabilityStatus::Accepted,
        },
    );
    c.check(
        ChangeConfigurationRequest {
            key: ci50("HeartbeatInterval"),
            value: ci500("300"),
        },
        ChangeConfigurationRequest {
            key: ci50("k"),
            value: ci500(""),
        },
        ChangeConfigurationResponse {
            status: ConfigurationStatus::RebootRequired,
        },
        ChangeConfigurationResponse {
            status: ConfigurationStatus::NotSupported,
        },
    );
    c.check(
        ClearCacheRequest {},
        ClearCacheRequest {},
        ClearCacheResponse {
            status: ClearCacheStatus::Accepted,
        },
        ClearCacheResponse {
            status: ClearCacheStatus::Rejected,
        },
    );
    c.check(
        DataTransferRequest {
            vendor_id: ci255("com.zaptec"),
            message_id: Some(ci50("Diag")),
            data: Some("{\"a\":1}".into()),
        },
        DataTransferRequest {
            vendor_id: ci255("v"),
            message_id: None,
            data: None,
        },
        DataTransferResponse {
            status: DataTransferStatus::Accepted,
            data: Some("ok".into()),
        },
        DataTransferResponse {
            status: DataTransferStatus::UnknownVendorId,
            data: None,
        },
    );
    c.check(
        GetConfigurationRequest {
            key: Some(vec![
                ci50("HeartbeatInterval"),
                ci50("MeterValueSampleInterval"),
            ]),
        },
        GetConfigurationRequest { key: None },
        GetConfigurationResponse {
            configuration_key: Some(vec![KeyValue {
                key: ci50("HeartbeatInterval"),
                readonly: false,
                value: Some(ci500("300")),
            }]),
            unknown_key: Some(vec![ci50("NoSuchKey")]),
        },
        GetConfigurationResponse {
            configuration_key: None,
            unknown_key: None,
        },
    );
    c.check(
        HeartbeatRequest {},
        HeartbeatRequest {},
        HeartbeatResponse {
            current_time: ts("2026-11-26T08:00:00.000Z"),
        },
        HeartbeatResponse {
            current_time: ts("2026-11-26T08:00:01.001Z"),
        },
    );
    c.check(
        MeterValuesRequest {
            connector_id: 1,
            transaction_id: Some(42),
            meter_value: vec![full_meter_value()],
        },
        MeterValuesRequest {
            connector_id: 0,
            transaction_id: None,
            meter_value: vec![minimal_meter_value()],
        },
        MeterValuesResponse {},
        MeterValuesResponse {},
    );
    c.check(
        RemoteStartTransactionRequest {
            connector_id: Some(1),
            id_tag: ci20("TAG-1"),
            charging_profile: Some(full_profile()),
        },
        RemoteStartTransactionRequest {
            connector_id: None,
            id_tag: ci20("TAG-1"),
            charging_profile: None,
        },
        RemoteStartTransactionResponse {
            status: RemoteStartStopStatus::Accepted,
        },
        RemoteStartTransactionResponse {
            status: RemoteStartStopStatus::Rejected,
        },
    );
    c.check(
        RemoteStopTransactionRequest { transaction_id: 42 },
        RemoteStopTransactionRequest { transaction_id: -1 },
        RemoteStopTransactionResponse {
            status: RemoteStartStopStatus::Accepted,
        },
        RemoteStopTransactionResponse {
            status: RemoteStartStopStatus::Rejected,
        },
    );
    c.check(
        ResetRequest {
            kind: ResetType::Hard,
        },
        ResetRequest {
            kind: ResetType::Soft,
        },
        ResetResponse {
            status: ResetStatus::Accepted,
        },
        ResetResponse {
            status: ResetStatus::Rejected,
        },
    );
    c.check(
        StartTransactionRequest {
            connector_id: 1,
            id_tag: ci20("TAG-1"),
            meter_start: 1000,
            reservation_id: Some(5),
            timestamp: ts("2026-11-26T08:00:00.000Z"),
        },
        StartTransactionRequest {
            connector_id: 1,
            id_tag: ci20("TAG-1"),
            meter_start: 0,
            reservation_id: None,
            timestamp: ts("2026-11-26T08:00:00.000Z"),
        },
        StartTransactionResponse {
            id_tag_info: full_id_tag_info(),
            transaction_id: 42,
        },
        StartTransactionResponse {
            id_tag_info: IdTagInfo::with_status(AuthorizationStatus::ConcurrentTx),
            transaction_id: 0,
        },
    );
    c.check(
        StatusNotificationRequest {
            connector_id: 1,
            error_code: ChargePointErrorCode::EvCommunicationError,
            info: Some(ci50("pilot signal lost")),
            status: ChargePointStatus::SuspendedEvse,
            timestamp: Some(ts("2026-11-26T08:00:00.000Z")),
            vendor_id: Some(ci255("com.zaptec")),
            vendor_error_code: Some(ci50("E42")),
        },
        StatusNotificationRequest {
            connector_id: 0,
            error_code: ChargePointErrorCode::NoError,
            info: None,
            status: ChargePointStatus::Available,
            timestamp: None,
            vendor_id: None,
            vendor_error_code: None,
        },
        StatusNotificationResponse {},
        StatusNotificationResponse {},
    );
    c.check(
        StopTransactionRequest {
            id_tag: Some(ci20("TAG-1")),
            meter_stop: 8000,
            timestamp: ts("2026-11-26T09:00:00.000Z"),
            transaction_id: 42,
            reason: Some(Reason::DeAuthorized),
            transaction_data: Some(vec![full_meter_value(), minimal_meter_value()]),
        },
        StopTransactionRequest {
            id_tag: None,
            meter_stop: 8000,
            timestamp: ts("2026-11-26T09:00:00.000Z"),
            transaction_id: 42,
            reason: None,
            transaction_data: None,
        },
        StopTransactionResponse {
            id_tag_info: Some(full_id_tag_info()),
        },
        StopTransactionResponse { id_tag_info: None },
    );
    c.check(
        UnlockConnectorRequest { connector_id: 1 },
        UnlockConnectorRequest { connector_id: 0 },
        UnlockConnectorResponse {
            status: UnlockStatus::Unlocked,
        },
        UnlockConnectorResponse {
            status: UnlockStatus::NotSupported,
        },
    );

    // Firmware Management
    c.check(
        GetDiagnosticsRequest {
            location: "ftp://user@example.com/diag/".into(),
            retries: Some(3),
            retry_interval: Some(60),
            start_time: Some(ts("2026-11-25T00:00:00.000Z")),
            stop_time: Some(ts("2026-11-26T00:00:00.000Z")),
        },
        GetDiagnosticsRequest {
            location: "https://example.com/upload".into(),
            retries: None,
            retry_interval: None,
            start_time: None,
            stop_time: None,
        },
        GetDiagnosticsResponse {
            file_name: Some(ci255("diagnostics-20261126.tar.gz")),
        },
        GetDiagnosticsResponse { file_name: None },
    );
    c.check(
        DiagnosticsStatusNotificationRequest {
            status: DiagnosticsStatus::UploadFailed,
        },
        DiagnosticsStatusNotificationRequest {
            status: DiagnosticsStatus::Idle,
        },
        DiagnosticsStatusNotificationResponse {},
        DiagnosticsStatusNotificationResponse {},
    );
    c.check(
        FirmwareStatusNotificationRequest {
            status: FirmwareStatus::InstallationFailed,
        },
        FirmwareStatusNotificationRequest {
            status: FirmwareStatus::Idle,
        },
        FirmwareStatusNotificationResponse {},
        FirmwareStatusNotificationResponse {},
    );
    c.check(
        UpdateFirmwareRequest {
            location: "https://example.com/fw/go-2.4.0.bin".into(),
            retries: Some(2),
            retrieve_date: ts("2026-11-26T10:00:00.000Z"),
            retry_interval: Some(120),
        },
        UpdateFirmwareRequest {
            location: "https://example.com/fw".into(),
            retries: None,
            retrieve_date: ts("2026-11-26T10:00:00.000Z"),
            retry_interval: None,
        },
        UpdateFirmwareResponse {},
        UpdateFirmwareResponse {},
    );

    // Local Auth List Management
    c.check(
        GetLocalListVersionRequest {},
        GetLocalListVersionRequest {},
        GetLocalListVersionResponse { list_version: 7 },
        GetLocalListVersionResponse { list_version: -1 },
    );
    c.check(
        SendLocalListRequest {
            list_version: 8,
            local_authorization_list: Some(vec![
                AuthorizationData {
                    id_tag: ci20("TAG-1"),
                    id_tag_info: Some(full_id_tag_info()),
                },
                AuthorizationData {
                    id_tag: ci20("TAG-2"),
                    id_tag_info: None,
                },
            ]),
            update_type: UpdateType::Differential,
        },
        SendLocalListRequest {
            list_version: 1,
            local_authorization_list: None,
            update_type: UpdateType::Full,
        },
        SendLocalListResponse {
            status: UpdateStatus::VersionMismatch,
        },
        SendLocalListResponse {
            status: UpdateStatus::Accepted,
        },
    );

    // Reservation
    c.check(
        ReserveNowRequest {
            connector_id: 1,
            expiry_date: ts("2026-11-26T09:00:00.000Z"),
            id_tag: ci20("TAG-1"),
            parent_id_tag: Some(ci20("PARENT-01")),
            reservation_id: 3,
        },
        ReserveNowRequest {
            connector_id: 0,
            expiry_date: ts("2026-11-26T09:00:00.000Z"),
            id_tag: ci20("TAG-1"),
            parent_id_tag: None,
            reservation_id: 4,
        },
        ReserveNowResponse {
            status: ReservationStatus::Occupied,
        },
        ReserveNowResponse {
            status: ReservationStatus::Accepted,
        },
    );
    c.check(
        CancelReservationRequest { reservation_id: 3 },
        CancelReservationRequest { reservation_id: 0 },
        CancelReservationResponse {
            status: CancelReservationStatus::Accepted,
        },
        CancelReservationResponse {
            status: CancelReservationStatus::Rejected,
        },
    );

    // Smart Charging
    c.check(
        SetChargingProfileRequest {
            connector_id: 1,
            cs_charging_profiles: full_profile(),
        },
        SetChargingProfileRequest {
            connector_id: 0,
            cs_charging_profiles: minimal_profile(),
        },
        SetChargingProfileResponse {
            status: ChargingProfileStatus::Accepted,
        },
        SetChargingProfileResponse {
            status: ChargingProfileStatus::NotSupported,
        },
    );
    c.check(
        ClearChargingProfileRequest {
            id: Some(12),
            connector_id: Some(1),
            charging_profile_purpose: Some(ChargingProfilePurposeType::ChargePointMaxProfile),
            stack_level: Some(2),
        },
        ClearChargingProfileRequest::default(),
        ClearChargingProfileResponse {
            status: ClearChargingProfileStatus::Accepted,
        },
        ClearChargingProfileResponse {
            status: ClearChargingProfileStatus::Unknown,
        },
    );
    c.check(
        GetCompositeScheduleRequest {
            connector_id: 1,
            duration: 86400,
            charging_rate_unit: Some(ChargingRateUnitType::A),
        },
        GetCompositeScheduleRequest {
            connector_id: 0,
            duration: 0,
            charging_rate_unit: None,
        },
        GetCompositeScheduleResponse {
            status: GetCompositeScheduleStatus::Accepted,
            connector_id: Some(1),
            schedule_start: Some(ts("2026-11-26T08:00:00.000Z")),
            charging_schedule: Some(full_schedule()),
        },
        GetCompositeScheduleResponse {
            status: GetCompositeScheduleStatus::Rejected,
            connector_id: None,
            schedule_start: None,
            charging_schedule: None,
        },
    );

    // Remote Trigger
    c.check(
        TriggerMessageRequest {
            requested_message: MessageTrigger::StatusNotification,
            connector_id: Some(1),
        },
        TriggerMessageRequest {
            requested_message: MessageTrigger::BootNotification,
            connector_id: None,
        },
        TriggerMessageResponse {
            status: TriggerMessageStatus::NotImplemented,
        },
        TriggerMessageResponse {
            status: TriggerMessageStatus::Accepted,
        },
    );

    let expected: BTreeSet<String> = ALL_ACTIONS.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        c.checked, expected,
        "every action is checked against its schemas"
    );
}

/// Every schema file has a type (or is a security whitepaper action the charger does not
/// support), and the security actions are exactly the security schemas present.
#[test]
fn every_schema_has_a_type_and_security_actions_match() {
    let schemas = schemas();
    let mut actions = BTreeSet::new();
    for name in schemas.keys() {
        let action = name.strip_suffix("Response").unwrap_or(name);
        actions.insert(action.to_string());
        let partner = if name.ends_with("Response") {
            action.to_string()
        } else {
            format!("{name}Response")
        };
        assert!(
            schemas.contains_key(&partner),
            "{name}.json has no {partner}.json"
        );
    }
    let ours: BTreeSet<String> = ALL_ACTIONS.iter().map(|a| a.to_string()).collect();
    let missing: Vec<&String> = actions.difference(&ours).collect();
    let security: BTreeSet<String> = SECURITY_WHITEPAPER_ACTIONS
        .iter()
        .map(|a| a.to_string())
        .collect();
    let untyped: BTreeSet<String> = missing.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        untyped, security,
        "schemas without a message type must be exactly the security whitepaper actions"
    );
    let unknown: Vec<&String> = ours.difference(&actions).collect();
    assert!(unknown.is_empty(), "types without a schema: {unknown:?}");
}

/// Timestamps as we send them satisfy `format: date-time`; a limit with one decimal satisfies
/// `multipleOf: 0.1` even where binary floating point makes that delicate.
#[test]
fn wire_forms_satisfy_schema_formats() {
    let schemas = schemas();
    for tenths in [1, 3, 7, 41, 63, 99, 101, 333, 1599, 2219, 3201] {
        let mut schedule = minimal_schedule();
        schedule.charging_schedule_period[0].limit = Decimal1::from_tenths(tenths);
        schedule.min_charging_rate = Some(Decimal1::from_tenths(tenths));
        let resp = GetCompositeScheduleResponse {
            status: GetCompositeScheduleStatus::Accepted,
            connector_id: Some(1),
            schedule_start: Some(ts("2026-11-26T08:00:00.123Z")),
            charging_schedule: Some(schedule),
        };
        round_trip(&schemas, "GetCompositeScheduleResponse", &resp);
    }
}
