//! OCPP-J 1.6 RPC framing: CALL `[2, id, action, payload]`, CALLRESULT `[3, id, payload]`,
//! CALLERROR `[4, id, code, description, details]`, and the error codes of OCPP-J section 4.2.3.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt;

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
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
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
    /// Whether the broken frame was a CALL (only CALLs are answered with a CALLERROR).
    pub is_call: bool,
    pub error: CallError,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)
    }
}

/// OCPP-J: the unique id is a string of at most 36 characters.
pub const MAX_ID_LEN: usize = 36;

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
        let value: Value = serde_json::from_str(text).map_err(|e| FrameError {
            id: None,
            is_call: false,
            error: CallError::new(
                ErrorCode::FormationViolation,
                format!("message is not valid JSON: {e}"),
            ),
        })?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Frame, FrameError> {
        let Value::Array(items) = value else {
            return Err(FrameError {
                id: None,
                is_call: false,
                error: CallError::new(ErrorCode::FormationViolation, "message is not a JSON array"),
            });
        };
        let type_id = items.first().and_then(Value::as_u64);
        let id = items.get(1).and_then(Value::as_str).map(str::to_string);
        let is_call = type_id == Some(2);
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

    pub fn to_value(&self) -> Value {
        match self {
            Frame::Call {
                id,
                action,
                payload,
            } => json!([2, id, action, payload]),
            Frame::CallResult { id, payload } => json!([3, id, payload]),
            Frame::CallError { id, error } => {
                json!([4, id, error.code.as_str(), error.description, error.details])
            }
        }
    }

    pub fn to_text(&self) -> String {
        self.to_value().to_string()
    }
}

#[cfg(test)]
mod tests {
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
        let e = Frame::parse(&format!(r#"[2,"{}","Reset",{{}}]"#, "x".repeat(37))).unwrap_err();
        assert_eq!(e.error.code, ErrorCode::FormationViolation);
    }
}
