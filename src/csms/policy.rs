//! How the sandbox answers the charge point: a plain, cloneable [`Policy`] that tests and the
//! command line change at run time, and [`answer`], which turns one CALL into its CALLRESULT
//! payload or a CALLERROR.

use crate::stack::rpc::{CallError, ErrorCode};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// `BootNotification.conf` status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegistrationStatus {
    #[default]
    Accepted,
    Pending,
    Rejected,
}

impl RegistrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationStatus::Accepted => "Accepted",
            RegistrationStatus::Pending => "Pending",
            RegistrationStatus::Rejected => "Rejected",
        }
    }
}

/// `IdTagInfo.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthorizationStatus {
    #[default]
    Accepted,
    Blocked,
    Expired,
    Invalid,
    ConcurrentTx,
}

impl AuthorizationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationStatus::Accepted => "Accepted",
            AuthorizationStatus::Blocked => "Blocked",
            AuthorizationStatus::Expired => "Expired",
            AuthorizationStatus::Invalid => "Invalid",
            AuthorizationStatus::ConcurrentTx => "ConcurrentTx",
        }
    }
}

/// What the sandbox says about one idTag.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdTagInfo {
    pub status: AuthorizationStatus,
    pub expiry_date: Option<DateTime<Utc>>,
    pub parent_id_tag: Option<String>,
}

impl IdTagInfo {
    pub fn with_status(status: AuthorizationStatus) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    pub fn to_value(&self) -> Value {
        let mut info = Map::new();
        info.insert("status".into(), json!(self.status.as_str()));
        if let Some(expiry) = self.expiry_date {
            info.insert("expiryDate".into(), json!(format_time(expiry)));
        }
        if let Some(parent) = &self.parent_id_tag {
            info.insert("parentIdTag".into(), json!(parent));
        }
        Value::Object(info)
    }
}

/// The sandbox's scriptable behaviour. Shared behind the handle; every answer reads the policy in
/// force when the CALL arrives.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Status answered to BootNotification.
    pub boot_status: RegistrationStatus,
    /// Interval (seconds) answered to BootNotification: the heartbeat interval when Accepted, the
    /// retry delay when Pending or Rejected.
    pub heartbeat_interval: u32,
    /// idTag → what Authorize, StartTransaction and StopTransaction answer for it.
    pub id_tags: HashMap<String, IdTagInfo>,
    /// Answer for idTags not in `id_tags`.
    pub default_id_tag: IdTagInfo,
    /// Actions the sandbox receives but never answers (to exercise the charger's message timeout).
    pub unanswered: HashSet<String>,
    /// Actions answered with this CALLERROR instead of a result.
    pub call_errors: HashMap<String, (ErrorCode, String)>,
    /// Wait this long before answering any CALL.
    pub delay: Duration,
    /// Per-action wait before answering; replaces `delay` for that action.
    pub delays: HashMap<String, Duration>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            boot_status: RegistrationStatus::Accepted,
            heartbeat_interval: 300,
            id_tags: HashMap::new(),
            default_id_tag: IdTagInfo::default(),
            unanswered: HashSet::new(),
            call_errors: HashMap::new(),
            delay: Duration::ZERO,
            delays: HashMap::new(),
        }
    }
}

impl Policy {
    pub fn id_tag_info(&self, id_tag: &str) -> &IdTagInfo {
        self.id_tags.get(id_tag).unwrap_or(&self.default_id_tag)
    }

    /// The wait before answering `action`.
    pub fn delay_for(&self, action: &str) -> Duration {
        self.delays.get(action).copied().unwrap_or(self.delay)
    }
}

/// What the sandbox does with one CALL from the charge point.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Answer after `delay`.
    Answer {
        delay: Duration,
        result: Result<Value, CallError>,
    },
    /// Do not answer at all.
    Silence,
}

/// Source of StartTransaction ids.
pub trait TransactionIds {
    fn next_transaction_id(&self) -> i64;
}

/// Timestamps as OCPP 1.6 dateTime: RFC 3339, UTC, milliseconds.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Decides the reply to one CALL.
pub fn reply(
    policy: &Policy,
    ids: &dyn TransactionIds,
    now: DateTime<Utc>,
    action: &str,
    payload: &Value,
) -> Reply {
    if policy.unanswered.contains(action) {
        return Reply::Silence;
    }
    let delay = policy.delay_for(action);
    let result = match policy.call_errors.get(action) {
        Some((code, description)) => Err(CallError::new(*code, description.clone())),
        None => answer(policy, ids, now, action, payload),
    };
    Reply::Answer { delay, result }
}

/// The CALLRESULT payload (or CALLERROR) for one CALL, ignoring the scripted silences and errors.
pub fn answer(
    policy: &Policy,
    ids: &dyn TransactionIds,
    now: DateTime<Utc>,
    action: &str,
    payload: &Value,
) -> Result<Value, CallError> {
    let p = Fields { action, payload };
    match action {
        "BootNotification" => {
            p.string("chargePointVendor", true, 20)?;
            p.string("chargePointModel", true, 20)?;
            for (key, max) in [
                ("chargePointSerialNumber", 25),
                ("chargeBoxSerialNumber", 25),
                ("firmwareVersion", 50),
                ("iccid", 20),
                ("imsi", 20),
                ("meterType", 25),
                ("meterSerialNumber", 25),
            ] {
                p.string(key, false, max)?;
            }
            Ok(json!({
                "status": policy.boot_status.as_str(),
                "currentTime": format_time(now),
                "interval": policy.heartbeat_interval,
            }))
        }
        "Heartbeat" => Ok(json!({ "currentTime": format_time(now) })),
        "StatusNotification" => {
            p.integer("connectorId", true)?;
            p.string("errorCode", true, 50)?;
            p.string("status", true, 50)?;
            p.string("info", false, 50)?;
            p.string("vendorId", false, 255)?;
            p.string("vendorErrorCode", false, 50)?;
            Ok(json!({}))
        }
        "Authorize" => {
            let id_tag = p.string("idTag", true, 20)?.unwrap_or_default();
            Ok(json!({ "idTagInfo": policy.id_tag_info(id_tag).to_value() }))
        }
        "StartTransaction" => {
            p.integer("connectorId", true)?;
            let id_tag = p.string("idTag", true, 20)?.unwrap_or_default();
            p.integer("meterStart", true)?;
            p.string("timestamp", true, 64)?;
            p.integer("reservationId", false)?;
            Ok(json!({
                "transactionId": ids.next_transaction_id(),
                "idTagInfo": policy.id_tag_info(id_tag).to_value(),
            }))
        }
        "StopTransaction" => {
            p.integer("meterStop", true)?;
            p.string("timestamp", true, 64)?;
            p.integer("transactionId", true)?;
            p.string("reason", false, 64)?;
            p.array("transactionData", false)?;
            match p.string("idTag", false, 20)? {
                Some(id_tag) => Ok(json!({ "idTagInfo": policy.id_tag_info(id_tag).to_value() })),
                None => Ok(json!({})),
            }
        }
        "MeterValues" => {
            p.integer("connectorId", true)?;
            p.integer("transactionId", false)?;
            p.array("meterValue", true)?;
            Ok(json!({}))
        }
        "DataTransfer" => {
            p.string("vendorId", true, 255)?;
            p.string("messageId", false, 50)?;
            Ok(json!({ "status": "UnknownVendorId" }))
        }
        "FirmwareStatusNotification" | "DiagnosticsStatusNotification" => {
            p.string("status", true, 64)?;
            Ok(json!({}))
        }
        other => Err(CallError::new(
            ErrorCode::NotImplemented,
            format!("the sandbox CSMS does not handle action {other:?}"),
        )),
    }
}

/// Field checks for one request payload; errors name the action and the field.
struct Fields<'a> {
    action: &'a str,
    payload: &'a Value,
}

impl<'a> Fields<'a> {
    fn get(&self, key: &str, required: bool) -> Result<Option<&'a Value>, CallError> {
        match self.payload.get(key) {
            Some(v) => Ok(Some(v)),
            None if required => Err(CallError::new(
                ErrorCode::OccurenceConstraintViolation,
                format!("{}: required field {key:?} is missing", self.action),
            )),
            None => Ok(None),
        }
    }

    fn type_error(&self, key: &str, want: &str) -> CallError {
        CallError::new(
            ErrorCode::TypeConstraintViolation,
            format!("{}: field {key:?} must be {want}", self.action),
        )
    }

    fn string(&self, key: &str, required: bool, max: usize) -> Result<Option<&'a str>, CallError> {
        let Some(v) = self.get(key, required)? else {
            return Ok(None);
        };
        let s = v.as_str().ok_or_else(|| self.type_error(key, "a string"))?;
        if s.chars().count() > max {
            return Err(CallError::new(
                ErrorCode::PropertyConstraintViolation,
                format!(
                    "{}: field {key:?} is {} characters, at most {max} allowed",
                    self.action,
                    s.chars().count()
                ),
            ));
        }
        Ok(Some(s))
    }

    fn integer(&self, key: &str, required: bool) -> Result<Option<i64>, CallError> {
        let Some(v) = self.get(key, required)? else {
            return Ok(None);
        };
        v.as_i64()
            .map(Some)
            .ok_or_else(|| self.type_error(key, "an integer"))
    }

    fn array(&self, key: &str, required: bool) -> Result<(), CallError> {
        match self.get(key, required)? {
            Some(v) if !v.is_array() => Err(self.type_error(key, "an array")),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    struct Counter(AtomicI64);
    impl TransactionIds for Counter {
        fn next_transaction_id(&self) -> i64 {
            self.0.fetch_add(1, Ordering::SeqCst)
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn boot_answers_status_time_and_interval() {
        let mut policy = Policy::default();
        let ids = Counter(AtomicI64::new(1));
        let boot = json!({"chargePointVendor": "Zaptec", "chargePointModel": "Go"});
        let r = answer(&policy, &ids, now(), "BootNotification", &boot);
        assert_eq!(
            r,
            Ok(
                json!({"status": "Accepted", "currentTime": "2026-03-01T10:00:00.000Z", "interval": 300})
            )
        );
        policy.boot_status = RegistrationStatus::Pending;
        policy.heartbeat_interval = 7;
        let r = answer(&policy, &ids, now(), "BootNotification", &boot).unwrap_or_default();
        assert_eq!(
            (r["status"].as_str(), r["interval"].as_u64()),
            (Some("Pending"), Some(7))
        );
    }

    #[test]
    fn invalid_requests_name_the_field() {
        let policy = Policy::default();
        let ids = Counter(AtomicI64::new(1));
        let e = answer(
            &policy,
            &ids,
            now(),
            "BootNotification",
            &json!({"chargePointVendor": "Z"}),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::OccurenceConstraintViolation);
        assert!(e.description.contains("chargePointModel"), "{e}");
        let e = answer(&policy, &ids, now(), "Authorize", &json!({"idTag": 5})).unwrap_err();
        assert_eq!(e.code, ErrorCode::TypeConstraintViolation);
        let e = answer(
            &policy,
            &ids,
            now(),
            "Authorize",
            &json!({"idTag": "x".repeat(21)}),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::PropertyConstraintViolation);
        let e = answer(&policy, &ids, now(), "Reset", &json!({})).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotImplemented);
    }

    #[test]
    fn id_tags_and_transactions() {
        let mut policy = Policy::default();
        policy.id_tags.insert(
            "BLOCKED1".into(),
            IdTagInfo {
                status: AuthorizationStatus::Blocked,
                expiry_date: Some(now()),
                parent_id_tag: Some("GROUP".into()),
            },
        );
        let ids = Counter(AtomicI64::new(41));
        let r = answer(
            &policy,
            &ids,
            now(),
            "Authorize",
            &json!({"idTag": "BLOCKED1"}),
        );
        assert_eq!(
            r,
            Ok(
                json!({"idTagInfo": {"status": "Blocked", "expiryDate": "2026-03-01T10:00:00.000Z", "parentIdTag": "GROUP"}})
            )
        );
        let start = json!({"connectorId": 1, "idTag": "ANY", "meterStart": 0, "timestamp": "2026-03-01T10:00:00Z"});
        let a = answer(&policy, &ids, now(), "StartTransaction", &start).unwrap_or_default();
        let b = answer(&policy, &ids, now(), "StartTransaction", &start).unwrap_or_default();
        assert_eq!(a["transactionId"], json!(41));
        assert_eq!(b["transactionId"], json!(42));
        assert_eq!(a["idTagInfo"]["status"], json!("Accepted"));
        let stop =
            json!({"meterStop": 10, "timestamp": "2026-03-01T11:00:00Z", "transactionId": 41});
        assert_eq!(
            answer(&policy, &ids, now(), "StopTransaction", &stop),
            Ok(json!({}))
        );
        let dt = answer(
            &policy,
            &ids,
            now(),
            "DataTransfer",
            &json!({"vendorId": "x"}),
        );
        assert_eq!(dt, Ok(json!({"status": "UnknownVendorId"})));
    }

    #[test]
    fn scripted_silence_errors_and_delays() {
        let mut policy = Policy::default();
        let ids = Counter(AtomicI64::new(1));
        policy.unanswered.insert("Heartbeat".into());
        policy.call_errors.insert(
            "Authorize".into(),
            (ErrorCode::InternalError, "down".into()),
        );
        policy.delay = Duration::from_secs(1);
        policy
            .delays
            .insert("StatusNotification".into(), Duration::from_secs(5));
        assert_eq!(
            reply(&policy, &ids, now(), "Heartbeat", &json!({})),
            Reply::Silence
        );
        match reply(&policy, &ids, now(), "Authorize", &json!({"idTag": "A"})) {
            Reply::Answer {
                delay,
                result: Err(e),
            } => {
                assert_eq!(
                    (delay, e.code),
                    (Duration::from_secs(1), ErrorCode::InternalError)
                )
            }
            other => panic!("unexpected {other:?}"),
        }
        let status = json!({"connectorId": 0, "errorCode": "NoError", "status": "Available"});
        match reply(&policy, &ids, now(), "StatusNotification", &status) {
            Reply::Answer {
                delay,
                result: Ok(_),
            } => assert_eq!(delay, Duration::from_secs(5)),
            other => panic!("unexpected {other:?}"),
        }
    }
}
