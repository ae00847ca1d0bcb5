//! OCPP-J 1.6 RPC framing: CALL `[2, id, action, payload]`, CALLRESULT `[3, id, payload]`,
//! CALLERROR `[4, id, code, description, details]`, and the error codes of OCPP-J section 4.2.3.
//!
//! Files: this one parses and writes frames and redacts secrets from them; `payload.rs` decodes
//! a payload into its typed message and says which CALLERROR answers a bad one; `strict.rs` is
//! the deserializer that holds payloads to the OCPP schemas' JSON types.

use crate::stack::messages::Request;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt;

mod payload;
mod strict;

pub use payload::{decode_payload, encode_payload};

/// The CALLERROR codes OCPP-J 1.6 section 4.2.3 defines (spellings as in the specification,
/// including `OccurenceConstraintViolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The requested action is not known by the receiver.
    NotImplemented,
    /// The requested action is recognised but not supported by the receiver.
    NotSupported,
    /// An internal error occurred and the receiver could not process the action.
    InternalError,
    /// The payload for the action is incomplete.
    ProtocolError,
    /// A security issue stopped the receiver from completing the action.
    SecurityError,
    /// The payload is syntactically incorrect or does not conform to the PDU structure.
    FormationViolation,
    /// A field of a syntactically correct payload contains an invalid value.
    PropertyConstraintViolation,
    /// A field of a syntactically correct payload violates occurrence constraints.
    OccurenceConstraintViolation,
    /// A field of a syntactically correct payload violates data type constraints.
    TypeConstraintViolation,
    /// Any other error.
    GenericError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotImplemented => "NotImplemented",
            ErrorCode::NotSupported => "NotSupported",
            ErrorCode::InternalError => "InternalError",
            ErrorCode::ProtocolError => "ProtocolError",
            ErrorCode::SecurityError => "SecurityError",
            ErrorCode::FormationViolation => "FormationViolation",
            ErrorCode::PropertyConstraintViolation => "PropertyConstraintViolation",
            ErrorCode::OccurenceConstraintViolation => "OccurenceConstraintViolation",
            ErrorCode::TypeConstraintViolation => "TypeConstraintViolation",
            ErrorCode::GenericError => "GenericError",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorCode> {
        serde_json::from_value(Value::String(s.to_string())).ok()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CALLERROR's content.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    pub code: ErrorCode,
    pub description: String,
    pub details: Value,
}

impl CallError {
    /// A CALLERROR content; the description is cut to [`MAX_DESCRIPTION_LEN`] characters.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        let description = description.into();
        Self {
            code,
            description: if description.chars().nth(MAX_DESCRIPTION_LEN).is_some() {
                bounded(&description, MAX_DESCRIPTION_LEN)
            } else {
                description
            },
            details: json!({}),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.description.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {}", self.code, self.description)
        }
    }
}

impl std::error::Error for CallError {}

/// One OCPP-J message.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Call {
        id: String,
        action: String,
        payload: Value,
    },
    CallResult {
        id: String,
        payload: Value,
    },
    CallError {
        id: String,
        error: CallError,
    },
}

/// A frame that could not be parsed. `id` is set when the unique id could be read, so the
/// receiver can still answer with a CALLERROR.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub id: Option<String>,
    /// Whether the broken frame is answered with a CALLERROR: a CALL, a message of unknown type,
    /// or one whose type cannot be read (not JSON, not an array). A broken CALLRESULT or
    /// CALLERROR (message type 3 or 4) is never answered, whatever its unique id.
    pub is_call: bool,
    pub error: CallError,
}

impl FrameError {
    /// The CALLERROR that answers the broken frame, or `None` when it must be ignored (a broken
    /// CALLRESULT or CALLERROR). A frame whose unique id cannot be read is answered with id
    /// `"-1"`; an id over [`MAX_ID_LEN`] characters is echoed as its first [`MAX_ECHO_ID_LEN`]
    /// characters at most.
    pub fn reply(&self) -> Option<Frame> {
        if !self.is_call {
            return None;
        }
        let id = match &self.id {
            Some(id) => prefix(id, MAX_ECHO_ID_LEN).to_string(),
            None => "-1".to_string(),
        };
        Some(Frame::CallError {
            id,
            error: self.error.clone(),
        })
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)
    }
}

/// OCPP-J: the unique id is a string of at most 36 characters.
pub const MAX_ID_LEN: usize = 36;

/// The most characters of an invalid unique id echoed back in a CALLERROR.
pub const MAX_ECHO_ID_LEN: usize = 64;

/// The most characters of a CALLERROR description sent or shown (a description may quote an
/// action or field name the peer chose, of any length).
pub const MAX_DESCRIPTION_LEN: usize = 255;

/// The first `max` characters of `text`.
fn prefix(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// `text` cut to `max` characters, with `...` when something was cut.
fn bounded(text: &str, max: usize) -> String {
    let cut = prefix(text, max);
    if cut.len() < text.len() {
        format!("{cut}...")
    } else {
        text.to_string()
    }
}

impl Frame {
    pub fn id(&self) -> &str {
        match self {
            Frame::Call { id, .. } | Frame::CallResult { id, .. } | Frame::CallError { id, .. } => {
                id
            }
        }
    }

    /// Parses a WebSocket text message.
    pub fn parse(text: &str) -> Result<Frame, FrameError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            // Recover the header of a CALL whose JSON is broken further on, so it can still be
            // answered with a CALLERROR carrying its own unique id.
            let (type_id, id) = recover_header(text);
            FrameError {
                is_call: !matches!(type_id, Some(3 | 4)),
                id,
                error: CallError::new(
                    ErrorCode::FormationViolation,
                    format!("message is not valid JSON: {e}"),
                ),
            }
        })?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Frame, FrameError> {
        let Value::Array(items) = value else {
            return Err(FrameError {
                id: None,
                is_call: true,
                error: CallError::new(ErrorCode::FormationViolation, "message is not a JSON array"),
            });
        };
        let type_id = items.first().and_then(Value::as_u64);
        let id = items.get(1).and_then(Value::as_str).map(str::to_string);
        let is_call = !matches!(type_id, Some(3 | 4));
        let fail = |code, msg: String| FrameError {
            id: id.clone(),
            is_call,
            error: CallError::new(code, msg),
        };
        let Some(type_id) = type_id else {
            return Err(fail(
                ErrorCode::FormationViolation,
                "the first element is not a message type number".into(),
            ));
        };
        let Some(id_str) = id.clone() else {
            return Err(fail(
                ErrorCode::FormationViolation,
                "the second element (unique id) is not a string".into(),
            ));
        };
        if id_str.is_empty() || id_str.len() > MAX_ID_LEN {
            return Err(fail(
                ErrorCode::FormationViolation,
                format!(
                    "unique id must be 1 to {MAX_ID_LEN} characters, got {}",
                    id_str.len()
                ),
            ));
        }
        match type_id {
            2 => {
                if items.len() != 4 {
                    return Err(fail(
                        ErrorCode::ProtocolError,
                        format!("a CALL has 4 elements, this one has {}", items.len()),
                    ));
                }
                let Some(action) = items[2].as_str() else {
                    return Err(fail(
                        ErrorCode::FormationViolation,
                        "the action of a CALL must be a string".into(),
                    ));
                };
                if !items[3].is_object() {
                    return Err(fail(
                        ErrorCode::FormationViolation,
                        "the payload of a CALL must be a JSON object".into(),
                    ));
                }
                Ok(Frame::Call {
                    id: id_str,
                    action: action.to_string(),
                    payload: items[3].clone(),
                })
            }
            3 => {
                if items.len() != 3 {
                    return Err(fail(
                        ErrorCode::ProtocolError,
                        format!("a CALLRESULT has 3 elements, this one has {}", items.len()),
                    ));
                }
                if !items[2].is_object() {
                    return Err(fail(
                        ErrorCode::FormationViolation,
                        "the payload of a CALLRESULT must be a JSON object".into(),
                    ));
                }
                Ok(Frame::CallResult {
                    id: id_str,
                    payload: items[2].clone(),
                })
            }
            4 => {
                if items.len() != 5 {
                    return Err(fail(
                        ErrorCode::ProtocolError,
                        format!("a CALLERROR has 5 elements, this one has {}", items.len()),
                    ));
                }
                let code = items[2]
                    .as_str()
                    .and_then(ErrorCode::parse)
                    .unwrap_or(ErrorCode::GenericError);
                let description = items[3].as_str().unwrap_or_default().to_string();
                Ok(Frame::CallError {
                    id: id_str,
                    error: CallError {
                        code,
                        description,
                        details: items[4].clone(),
                    },
                })
            }
            other => Err(fail(
                ErrorCode::ProtocolError,
                format!("unknown message type number {other} (expected 2, 3 or 4)"),
            )),
        }
    }

    /// A CALL carrying `request` under its action name.
    pub fn call<R: Request>(id: impl Into<String>, request: &R) -> Frame {
        Frame::Call {
            id: id.into(),
            action: R::ACTION.to_string(),
            payload: encode_payload(request),
        }
    }

    /// A CALLRESULT carrying `response`.
    pub fn result<T: Serialize>(id: impl Into<String>, response: &T) -> Frame {
        Frame::CallResult {
            id: id.into(),
            payload: encode_payload(response),
        }
    }

    /// A CALLERROR answering the CALL with unique id `id`.
    pub fn error(id: impl Into<String>, error: CallError) -> Frame {
        Frame::CallError {
            id: id.into(),
            error,
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Frame::Call {
                id,
                action,
                payload,
            } => json!([2, id, action, payload]),
            Frame::CallResult { id, payload } => json!([3, id, payload]),
            Frame::CallError { id, error } => json!([
                4,
                prefix(id, MAX_ECHO_ID_LEN),
                error.code.as_str(),
                bounded(&error.description, MAX_DESCRIPTION_LEN),
                error.details
            ]),
        }
    }

    pub fn to_text(&self) -> String {
        self.to_value().to_string()
    }
}

/// The message type number and unique id at the start of text that is not valid JSON as a
/// whole (`[2,"19223201","Heartbeat",{` cut short), as far as each can be read.
fn recover_header(text: &str) -> (Option<u64>, Option<String>) {
    let Some(rest) = text.trim_start().strip_prefix('[') else {
        return (None, None);
    };
    let rest = rest.trim_start();
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let Ok(type_id) = rest[..digits].parse::<u64>() else {
        return (None, None);
    };
    let id = (|| {
        let rest = rest[digits..].trim_start().strip_prefix(',')?.trim_start();
        let rest = rest.strip_prefix('"')?;
        let end = rest.find('"')?;
        let id = &rest[..end];
        if id.is_empty() || id.len() > MAX_ID_LEN || id.contains('\\') {
            return None;
        }
        Some(id.to_string())
    })();
    (Some(type_id), id)
}

/// A copy of `frame` safe to show or log: the value of a ChangeConfiguration of a write-only key
/// (AuthorizationKey) is replaced with a placeholder. Every trace, log and `--json` output of
/// frames goes through this.
pub fn redact(frame: &Frame) -> Frame {
    if let Frame::Call {
        id,
        action,
        payload,
    } = frame
    {
        let secret_key = payload.get("key").and_then(Value::as_str).is_some_and(|k| {
            super::messages::WRITE_ONLY_KEYS
                .iter()
                .any(|w| w.eq_ignore_ascii_case(k))
        });
        if action == "ChangeConfiguration" && secret_key && payload.get("value").is_some() {
            let mut payload = payload.clone();
            payload["value"] = Value::String(super::secret::REDACTED.to_string());
            return Frame::Call {
                id: id.clone(),
                action: action.clone(),
                payload,
            };
        }
    }
    frame.clone()
}

/// [`redact`] for a raw JSON frame (one that may not even parse as a frame).
pub fn redact_value(value: &Value) -> Value {
    match Frame::from_value(value.clone()) {
        Ok(f) => redact(&f).to_value(),
        Err(_) => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_the_authorization_key_only() {
        let f = Frame::parse(r#"[2,"1","ChangeConfiguration",{"key":"authorizationkey","value":"00112233445566778899aabbccddeeff"}]"#).unwrap();
        let text = redact(&f).to_text();
        assert!(!text.contains("0011223344"), "{text}");
        assert!(text.contains(crate::stack::secret::REDACTED));
        let f = Frame::parse(
            r#"[2,"1","ChangeConfiguration",{"key":"HeartbeatInterval","value":"60"}]"#,
        )
        .unwrap();
        assert_eq!(redact(&f), f);
    }

    use super::*;

    #[test]
    fn round_trips_each_kind() {
        for text in [
            r#"[2,"a1","Heartbeat",{}]"#,
            r#"[3,"a1",{"currentTime":"2026-01-01T00:00:00Z"}]"#,
            r#"[4,"a1","NotSupported","nope",{}]"#,
        ] {
            let f = Frame::parse(text).unwrap();
            assert_eq!(f.to_text(), text);
        }
    }

    #[test]
    fn malformed_frames_name_the_code() {
        let e = Frame::parse("not json").unwrap_err();
        assert_eq!(e.error.code, ErrorCode::FormationViolation);
        assert_eq!(e.id, None);
        let e = Frame::parse(r#"[2,"x","Reset"]"#).unwrap_err();
        assert_eq!(
            (e.error.code, e.id.as_deref()),
            (ErrorCode::ProtocolError, Some("x"))
        );
        let e = Frame::parse(r#"[2,"x","Reset",[]]"#).unwrap_err();
        assert_eq!(e.error.code, ErrorCode::FormationViolation);
        assert!(e.is_call);
        let e = Frame::parse(r#"[7,"x",{}]"#).unwrap_err();
        assert_eq!(e.error.code, ErrorCode::ProtocolError);
        assert!(e.is_call, "a message of unknown type is answered");
        let e = Frame::parse(r#"[3,"x",{}, 1]"#).unwrap_err();
        assert!(!e.is_call, "a broken CALLRESULT is not answered");
        let e = Frame::parse(r#" [ 2 , "cut-1", "Heartbeat", {"#).unwrap_err();
        assert_eq!(
            (e.error.code, e.id.as_deref(), e.is_call),
            (ErrorCode::FormationViolation, Some("cut-1"), true)
        );
        let e = Frame::parse(r#"[3,"cut-2",{"#).unwrap_err();
        assert_eq!((e.id.as_deref(), e.is_call), (Some("cut-2"), false));
        let e = Frame::parse(&format!(r#"[2,"{}","Reset",{{}}]"#, "x".repeat(37))).unwrap_err();
        assert_eq!(e.error.code, ErrorCode::FormationViolation);
    }

    #[test]
    fn broken_answers_are_ignored_whatever_their_id() {
        for text in [
            r#"[3,null,{}]"#,
            r#"[3,123,{}]"#,
            "[3]",
            "[4]",
            r#"[4,1,"GenericError","",{}]"#,
            r#"[3,"x"]"#,
            r#"[3, null, {"#,
            r#"[4,"#,
        ] {
            let e = Frame::parse(text).unwrap_err();
            assert!(!e.is_call, "{text}");
            assert_eq!(e.reply(), None, "{text}");
        }
        // Whatever cannot be read as an answer is answered, with id "-1" when it has none.
        for text in ["nope", "{}", "[]", "[", r#"[2,null,"Heartbeat",{}]"#] {
            let reply = Frame::parse(text).unwrap_err().reply();
            assert_eq!(reply.as_ref().map(Frame::id), Some("-1"), "{text}");
        }
        let reply = Frame::parse(r#"[2,"c1","Heartbeat"]"#).unwrap_err().reply();
        assert_eq!(reply.as_ref().map(Frame::id), Some("c1"));
    }

    #[test]
    fn an_overlong_id_or_description_is_echoed_only_in_part() {
        let id = "i".repeat(100_000);
        let e = Frame::parse(&format!(r#"[2,"{id}","Heartbeat",{{}}]"#)).unwrap_err();
        let reply = e.reply().unwrap().to_value();
        assert_eq!(reply[1], json!("i".repeat(MAX_ECHO_ID_LEN)));
        assert!(reply.to_string().len() < 400, "{reply}");
        let err = CallError::new(
            ErrorCode::NotImplemented,
            format!("unknown action {}", "A".repeat(1_000_000)),
        );
        assert_eq!(err.description.chars().count(), MAX_DESCRIPTION_LEN + 3);
        // Built by hand: bounded on the wire all the same.
        let f = Frame::CallError {
            id: "x".repeat(1000),
            error: CallError {
                code: ErrorCode::GenericError,
                description: "é".repeat(10_000),
                details: json!({}),
            },
        };
        let v = f.to_value();
        assert_eq!(v[1].as_str().unwrap().len(), MAX_ECHO_ID_LEN);
        assert_eq!(
            v[3].as_str().unwrap().chars().count(),
            MAX_DESCRIPTION_LEN + 3
        );
        // A short description is untouched.
        assert_eq!(
            CallError::new(ErrorCode::GenericError, "short").description,
            "short"
        );
    }

    mod decode {
        use super::super::*;
        use crate::stack::messages::*;
        use serde::de::DeserializeOwned;

        fn set_profile(limit: Value) -> Value {
            json!({
                "connectorId": 1,
                "csChargingProfiles": {
                    "chargingProfileId": 7,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "TxDefaultProfile",
                    "chargingProfileKind": "Absolute",
                    "chargingSchedule": {
                        "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [
                            {"startPeriod": 0, "limit": 16.0},
                            {"startPeriod": 60, "limit": limit}
                        ]
                    }
                }
            })
        }

        fn fail<T: DeserializeOwned + std::fmt::Debug>(payload: Value) -> CallError {
            match decode_payload::<T>(&payload) {
                Ok(v) => panic!("{payload} was accepted as {v:?}"),
                Err(e) => e,
            }
        }

        fn assert_error(e: &CallError, code: ErrorCode, field: &str) {
            assert_eq!(e.code, code, "{e}");
            assert!(
                e.description.starts_with(&format!("{field}: ")),
                "description should name {field}: {e}"
            );
            assert_eq!(e.details, json!({ "field": field }));
        }

        #[test]
        fn a_valid_payload_decodes() {
            let req: SetChargingProfileRequest =
                decode_payload(&set_profile(json!(10.05))).unwrap();
            let periods = &req
                .cs_charging_profiles
                .charging_schedule
                .charging_schedule_period;
            assert_eq!(periods[1].limit.tenths(), 101);
            assert_eq!(req.connector_id, 1);
        }

        #[test]
        fn payload_that_is_not_an_object_is_a_formation_violation() {
            for payload in [json!([]), json!("x"), json!(null), json!(3)] {
                let e = decode_payload::<HeartbeatRequest>(&payload).unwrap_err();
                assert_eq!(e.code, ErrorCode::FormationViolation, "{payload}");
            }
        }

        #[test]
        fn missing_field_is_an_occurrence_violation_naming_it() {
            let e = fail::<AuthorizeRequest>(json!({}));
            assert_error(&e, ErrorCode::OccurenceConstraintViolation, "idTag");
            let mut p = set_profile(json!(8));
            p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][1]
                .as_object_mut()
                .unwrap()
                .remove("limit");
            let e = fail::<SetChargingProfileRequest>(p);
            assert_error(
                &e,
                ErrorCode::OccurenceConstraintViolation,
                "csChargingProfiles.chargingSchedule.chargingSchedulePeriod[1].limit",
            );
        }

        #[test]
        fn empty_required_list_is_an_occurrence_violation() {
            let e = fail::<MeterValuesRequest>(json!({"connectorId": 1, "meterValue": []}));
            assert_error(&e, ErrorCode::OccurenceConstraintViolation, "meterValue");
        }

        #[test]
        fn wrong_json_type_is_a_type_violation_naming_the_path() {
            let e = fail::<SetChargingProfileRequest>(set_profile(json!("16")));
            assert_error(
                &e,
                ErrorCode::TypeConstraintViolation,
                "csChargingProfiles.chargingSchedule.chargingSchedulePeriod[1].limit",
            );
            let e = fail::<AuthorizeRequest>(json!({"idTag": 12}));
            assert_error(&e, ErrorCode::TypeConstraintViolation, "idTag");
            let e = fail::<StartTransactionRequest>(json!({
                "connectorId": 1, "idTag": "A", "meterStart": 1.5,
                "timestamp": "2026-11-26T08:00:00Z"
            }));
            assert_error(&e, ErrorCode::TypeConstraintViolation, "meterStart");
            let e = fail::<AuthorizeResponse>(json!({"idTagInfo": "Accepted"}));
            assert_error(&e, ErrorCode::TypeConstraintViolation, "idTagInfo");
            let e = fail::<ResetRequest>(json!({"type": ["Hard"]}));
            assert_error(&e, ErrorCode::TypeConstraintViolation, "type");
        }

        #[test]
        fn array_in_place_of_an_object_is_a_type_violation() {
            let e = fail::<AuthorizeResponse>(json!({"idTagInfo": ["Accepted"]}));
            assert_error(&e, ErrorCode::TypeConstraintViolation, "idTagInfo");
            let mut p = set_profile(json!(8));
            p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][1] =
                json!([60, 8.0]);
            let e = fail::<SetChargingProfileRequest>(p);
            assert_error(
                &e,
                ErrorCode::TypeConstraintViolation,
                "csChargingProfiles.chargingSchedule.chargingSchedulePeriod[1]",
            );
            let e = fail::<AuthorizeResponse>(json!({"idTagInfo": []}));
            assert_eq!(e.code, ErrorCode::TypeConstraintViolation, "{e}");
        }

        #[test]
        fn value_outside_the_allowed_set_is_a_property_violation() {
            // Unknown enum value.
            let e = fail::<ResetRequest>(json!({"type": "Warm"}));
            assert_error(&e, ErrorCode::PropertyConstraintViolation, "type");
            // String too long.
            let e = fail::<AuthorizeRequest>(json!({"idTag": "X".repeat(21)}));
            assert_error(&e, ErrorCode::PropertyConstraintViolation, "idTag");
            // Bad timestamp format.
            let e = fail::<HeartbeatResponse>(json!({"currentTime": "26.11.2026 08:00"}));
            assert_error(&e, ErrorCode::PropertyConstraintViolation, "currentTime");
            // Not a URI.
            let e = fail::<UpdateFirmwareRequest>(json!({
                "location": "firmware.bin", "retrieveDate": "2026-11-26T08:00:00Z"
            }));
            assert_error(&e, ErrorCode::PropertyConstraintViolation, "location");
            // Negative where the spec says integer >= 0.
            let e = fail::<UnlockConnectorRequest>(json!({"connectorId": -1}));
            assert_error(&e, ErrorCode::PropertyConstraintViolation, "connectorId");
            // Integer beyond 32 bits.
            let e = fail::<RemoteStopTransactionRequest>(json!({"transactionId": 4294967296u64}));
            assert_error(&e, ErrorCode::PropertyConstraintViolation, "transactionId");
            // Nested enum value in a list.
            let mut p = set_profile(json!(8));
            p["csChargingProfiles"]["chargingSchedule"]["chargingRateUnit"] = json!("kW");
            let e = fail::<SetChargingProfileRequest>(p);
            assert_error(
                &e,
                ErrorCode::PropertyConstraintViolation,
                "csChargingProfiles.chargingSchedule.chargingRateUnit",
            );
        }

        fn parse(text: &str) -> Value {
            serde_json::from_str(text).unwrap()
        }

        #[test]
        fn minus_zero_is_an_integer() {
            let r: GetCompositeScheduleRequest =
                decode_payload(&parse(r#"{"connectorId":-0,"duration":-0}"#)).unwrap();
            assert_eq!((r.connector_id, r.duration), (0, 0));
            let r: RemoteStopTransactionRequest =
                decode_payload(&parse(r#"{"transactionId":-0}"#)).unwrap();
            assert_eq!(r.transaction_id, 0);
            // Other floating point spellings of integers stay type violations.
            for text in [r#"{"transactionId":1.0}"#, r#"{"transactionId":-0.5}"#] {
                let e = decode_payload::<RemoteStopTransactionRequest>(&parse(text)).unwrap_err();
                assert_error(&e, ErrorCode::TypeConstraintViolation, "transactionId");
            }
        }

        #[test]
        fn integers_beyond_32_bits_are_out_of_range_never_clamped() {
            let e = fail::<GetCompositeScheduleRequest>(
                json!({"connectorId": 1, "duration": 2_147_483_648u64}),
            );
            assert_error(&e, ErrorCode::PropertyConstraintViolation, "duration");
            let ok: GetCompositeScheduleRequest =
                decode_payload(&json!({"connectorId": 1, "duration": 2_147_483_647u64})).unwrap();
            assert_eq!(ok.duration, 2_147_483_647);
            for number in [
                "4294967296",
                "18446744073709551615",
                "18446744073709551616",
                "1e20",
                "-9223372036854775809",
            ] {
                let text = format!(r#"{{"connectorId":{number},"duration":60}}"#);
                let e = decode_payload::<GetCompositeScheduleRequest>(&parse(&text)).unwrap_err();
                assert_error(&e, ErrorCode::PropertyConstraintViolation, "connectorId");
                let text = format!(r#"{{"transactionId":{number}}}"#);
                let e = decode_payload::<RemoteStopTransactionRequest>(&parse(&text)).unwrap_err();
                assert_error(&e, ErrorCode::PropertyConstraintViolation, "transactionId");
            }
            let e =
                fail::<RemoteStopTransactionRequest>(json!({"transactionId": -2_147_483_649i64}));
            assert_error(&e, ErrorCode::PropertyConstraintViolation, "transactionId");
            let e = fail::<ChargingSchedulePeriod>(
                json!({"startPeriod": 3_000_000_000u64, "limit": 6}),
            );
            assert_error(&e, ErrorCode::PropertyConstraintViolation, "startPeriod");
        }

        #[test]
        fn an_unknown_enum_value_is_not_repeated() {
            let e = fail::<ResetRequest>(json!({"type": "Warm".repeat(1000)}));
            assert_error(&e, ErrorCode::PropertyConstraintViolation, "type");
            assert!(!e.description.contains("WarmWarm"), "{e}");
            assert!(e.description.contains("Hard"), "{e}");
        }

        #[test]
        fn an_overlong_field_name_is_quoted_only_in_part() {
            let name = "f".repeat(10_000);
            let e = fail::<HeartbeatRequest>(json!({ name: 1 }));
            assert_eq!(e.code, ErrorCode::FormationViolation);
            assert!(e.description.len() < 300, "{e}");
            assert!(e.details.to_string().len() < 300, "{}", e.details);
        }

        #[test]
        fn unknown_field_is_a_formation_violation_naming_it() {
            let e = fail::<HeartbeatRequest>(json!({"foo": 1}));
            assert_error(&e, ErrorCode::FormationViolation, "foo");
            let mut p = set_profile(json!(8));
            p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["bogus"] =
                json!(true);
            let e = fail::<SetChargingProfileRequest>(p);
            assert_error(
                &e,
                ErrorCode::FormationViolation,
                "csChargingProfiles.chargingSchedule.chargingSchedulePeriod[0].bogus",
            );
        }

        #[test]
        fn null_is_absent_for_optional_fields_only() {
            let r: StopTransactionResponse = decode_payload(&json!({"idTagInfo": null})).unwrap();
            assert_eq!(r.id_tag_info, None);
            let e = fail::<AuthorizeRequest>(json!({"idTag": null}));
            assert_error(&e, ErrorCode::TypeConstraintViolation, "idTag");
        }

        #[test]
        fn errors_never_repeat_a_string_value() {
            let secret = "S3cr3tS3cr3tS3cr3t";
            let e = fail::<ChangeConfigurationRequest>(json!({
                "key": "AuthorizationKey", "value": secret.repeat(40)
            }));
            assert_error(&e, ErrorCode::PropertyConstraintViolation, "value");
            assert!(!e.description.contains(secret), "{e}");
            let e = fail::<ChangeConfigurationRequest>(json!({
                "key": "AuthorizationKey", "value": 1234567890123u64
            }));
            assert_error(&e, ErrorCode::TypeConstraintViolation, "value");
            assert!(!e.description.contains("1234567890123"), "{e}");
            let e = fail::<GetConfigurationRequest>(json!({"key": "say \"hi\" S3cr3t"}));
            assert_error(&e, ErrorCode::TypeConstraintViolation, "key");
            assert!(!e.description.contains("S3cr3t"), "{e}");
            assert!(e.description.ends_with("expected a sequence"), "{e}");
        }

        #[test]
        fn frames_built_from_messages_decode_back() {
            let req = RemoteStopTransactionRequest { transaction_id: 9 };
            let text = Frame::call("m1", &req).to_text();
            assert_eq!(
                text,
                r#"[2,"m1","RemoteStopTransaction",{"transactionId":9}]"#
            );
            let Frame::Call {
                action, payload, ..
            } = Frame::parse(&text).unwrap()
            else {
                panic!("not a CALL: {text}");
            };
            assert_eq!(action, RemoteStopTransactionRequest::ACTION);
            assert_eq!(
                decode_payload::<RemoteStopTransactionRequest>(&payload),
                Ok(req)
            );
            let resp = RemoteStopTransactionResponse {
                status: RemoteStartStopStatus::Accepted,
            };
            assert_eq!(
                Frame::result("m1", &resp).to_text(),
                r#"[3,"m1",{"status":"Accepted"}]"#
            );
            let err = CallError::new(ErrorCode::NotSupported, "GetLog is not supported");
            assert_eq!(
                Frame::error("m2", err).to_text(),
                r#"[4,"m2","NotSupported","GetLog is not supported",{}]"#
            );
        }

        #[test]
        fn encode_payload_gives_the_wire_object() {
            let req = BootNotificationRequest {
                charge_point_vendor: CiString20::new("Zaptec").unwrap(),
                charge_point_model: CiString20::new("Go").unwrap(),
                charge_point_serial_number: None,
                charge_box_serial_number: None,
                firmware_version: Some(CiString50::new("2.3.1").unwrap()),
                iccid: None,
                imsi: None,
                meter_type: None,
                meter_serial_number: None,
            };
            assert_eq!(
                encode_payload(&req),
                json!({"chargePointVendor": "Zaptec", "chargePointModel": "Go",
                       "firmwareVersion": "2.3.1"})
            );
        }
    }
}
