//! How the sandbox answers the charge point: a plain, cloneable [`Policy`] that tests and the
//! command line change at run time, and [`answer`], which turns one CALL into its CALLRESULT
//! payload or a CALLERROR. Requests are decoded with the stack's [`CpCall::decode`] and answered
//! with the stack's typed responses, so the sandbox checks and writes exactly what the charge
//! point does.

use crate::stack::messages::{
    AuthorizeResponse, BootNotificationResponse, CpCall, DataTransferResponse, DataTransferStatus,
    DiagnosticsStatusNotificationResponse, FirmwareStatusNotificationResponse, HeartbeatResponse,
    MeterValuesResponse, StartTransactionResponse, StatusNotificationResponse,
    StopTransactionResponse, Timestamp,
};
use crate::stack::rpc::{CallError, ErrorCode, encode_payload};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

pub use crate::stack::messages::{AuthorizationStatus, IdTagInfo, RegistrationStatus};

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
    /// Answer for idTags not in `id_tags` (Accepted unless changed).
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
            default_id_tag: IdTagInfo::with_status(AuthorizationStatus::Accepted),
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

/// Decides the reply to one CALL: scripted silence first, then a scripted CALLERROR, then the
/// answer.
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
/// A payload the schema rejects, an unknown action or one the charge point does not send gets
/// the CALLERROR [`CpCall::decode`] gives.
pub fn answer(
    policy: &Policy,
    ids: &dyn TransactionIds,
    now: DateTime<Utc>,
    action: &str,
    payload: &Value,
) -> Result<Value, CallError> {
    let now = Timestamp::new(now);
    let id_tag_info = |id_tag: &str| policy.id_tag_info(id_tag).clone();
    Ok(match CpCall::decode(action, payload)? {
        CpCall::BootNotification(_) => encode_payload(&BootNotificationResponse {
            status: policy.boot_status,
            current_time: now,
            interval: policy.heartbeat_interval,
        }),
        CpCall::Heartbeat(_) => encode_payload(&HeartbeatResponse { current_time: now }),
        CpCall::StatusNotification(_) => encode_payload(&StatusNotificationResponse {}),
        CpCall::Authorize(req) => encode_payload(&AuthorizeResponse {
            id_tag_info: id_tag_info(req.id_tag.as_str()),
        }),
        CpCall::StartTransaction(req) => {
            let next = ids.next_transaction_id();
            let transaction_id = i32::try_from(next).map_err(|_| {
                CallError::new(
                    ErrorCode::InternalError,
                    format!("transaction id {next} is beyond the OCPP integer range"),
                )
            })?;
            encode_payload(&StartTransactionResponse {
                id_tag_info: id_tag_info(req.id_tag.as_str()),
                transaction_id,
            })
        }
        CpCall::StopTransaction(req) => encode_payload(&StopTransactionResponse {
            id_tag_info: req.id_tag.as_ref().map(|tag| id_tag_info(tag.as_str())),
        }),
        CpCall::MeterValues(_) => encode_payload(&MeterValuesResponse {}),
        CpCall::DataTransfer(_) => encode_payload(&DataTransferResponse {
            status: DataTransferStatus::UnknownVendorId,
            data: None,
        }),
        CpCall::FirmwareStatusNotification(_) => {
            encode_payload(&FirmwareStatusNotificationResponse {})
        }
        CpCall::DiagnosticsStatusNotification(_) => {
            encode_payload(&DiagnosticsStatusNotificationResponse {})
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::messages::IdToken;
    use serde_json::json;
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
                expiry_date: Some(Timestamp::new(now())),
                parent_id_tag: Some(IdToken::new("GROUP").unwrap()),
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
