//! Payloads of CALL and CALLRESULT: typed decoding with the CALLERROR that answers a bad
//! payload (the codes of OCPP-J 1.6 section 4.2.3, a path to the field at fault, never a string
//! value), and encoding.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::strict;
use super::{CallError, ErrorCode, bounded};

/// Decodes the payload of a CALL or CALLRESULT into `T`, or gives the CALLERROR that answers it.
///
/// The code follows OCPP-J 1.6 section 4.2.3:
///
/// | what is wrong | code |
/// | --- | --- |
/// | the payload is not a JSON object | `FormationViolation` |
/// | a field the schema does not define (additional property) | `FormationViolation` |
/// | a required field is missing, or a list that needs an element is empty | `OccurenceConstraintViolation` |
/// | a field has the wrong JSON type (`"idTag": 12`, a string for a number, a fraction for an integer, an array for an object) | `TypeConstraintViolation` |
/// | a value of the right type outside the allowed set: an unknown enum value, a string longer than its CiString type, a timestamp that is not RFC 3339, a `location` that is not an absolute URI, an integer out of range (a negative connectorId) | `PropertyConstraintViolation` |
///
/// The description names the field at fault by its path in the payload
/// (`chargingProfile.chargingSchedule.chargingSchedulePeriod[0].limit`) and never repeats a
/// string value (it could be a secret such as an AuthorizationKey); `details` carries the path as
/// `{"field": path}`.
///
/// One leniency: `null` for an optional field is read as absent (some central systems serialise
/// unset fields that way); `null` for a required field is a TypeConstraintViolation.
///
/// ```
/// use chargectl::stack::messages::AuthorizeRequest;
/// use chargectl::stack::rpc::{ErrorCode, decode_payload};
/// use serde_json::json;
///
/// let e = decode_payload::<AuthorizeRequest>(&json!({"idTag": "X".repeat(21)})).unwrap_err();
/// assert_eq!(e.code, ErrorCode::PropertyConstraintViolation);
/// assert!(e.description.starts_with("idTag: "));
/// ```
pub fn decode_payload<T: DeserializeOwned>(payload: &Value) -> Result<T, CallError> {
    if !payload.is_object() {
        return Err(CallError::new(
            ErrorCode::FormationViolation,
            format!("payload must be a JSON object, got {}", json_kind(payload)),
        ));
    }
    serde_path_to_error::deserialize(strict::Strict(payload)).map_err(|e| {
        let path = e.path().to_string();
        classify(&path, &e.inner().to_string())
    })
}

/// Encodes a payload for a CALL or CALLRESULT.
///
/// Every message type of [`crate::stack::messages`] serialises to a JSON object; a type that
/// cannot be serialised (a map with non-string keys) gives an empty object and an error trace.
pub fn encode_payload<T: Serialize>(payload: &T) -> Value {
    match serde_json::to_value(payload) {
        Ok(value) => value,
        Err(e) => {
            tracing::error!(error = %e, "payload cannot be encoded as JSON");
            json!({})
        }
    }
}

/// The most characters of a field path quoted in a CALLERROR (a path ends with a field name the
/// peer chose, of any length).
const MAX_FIELD_PATH_LEN: usize = 128;

/// The OCPP-J error code for a serde message about the field at `path`.
fn classify(path: &str, message: &str) -> CallError {
    use crate::stack::messages::{BAD_TIMESTAMP, BAD_URI, EMPTY_LIST, OUT_OF_RANGE, TOO_LONG};
    let parent = if path == "." { "" } else { path };
    let (code, field, text) = if let Some(name) = message.strip_prefix("missing field ") {
        (
            ErrorCode::OccurenceConstraintViolation,
            join_path(parent, &backticked(name)),
            "required field is missing".to_string(),
        )
    } else if let Some(name) = message.strip_prefix("unknown field ") {
        (
            ErrorCode::FormationViolation,
            join_path(parent, &backticked(name)),
            "field is not defined for this message (additional property)".to_string(),
        )
    } else if message.starts_with(EMPTY_LIST) {
        (
            ErrorCode::OccurenceConstraintViolation,
            parent.to_string(),
            message.to_string(),
        )
    } else if message.starts_with("invalid type") {
        (
            ErrorCode::TypeConstraintViolation,
            parent.to_string(),
            without_values(message),
        )
    } else if message.starts_with("invalid length") {
        // A JSON array where an object is expected.
        (
            ErrorCode::TypeConstraintViolation,
            parent.to_string(),
            "expected a JSON object".to_string(),
        )
    } else if message.starts_with("invalid value") {
        (
            ErrorCode::PropertyConstraintViolation,
            parent.to_string(),
            without_values(message),
        )
    } else if let Some(rest) = message.strip_prefix("unknown variant `") {
        // The rejected value is not repeated (it may be long); the allowed ones are.
        let expected = rest.find("`, expected").map_or("", |i| &rest[i + 1..]);
        (
            ErrorCode::PropertyConstraintViolation,
            parent.to_string(),
            format!("unknown variant{expected}"),
        )
    } else if message.starts_with("unknown variant")
        || message.starts_with(TOO_LONG)
        || message.starts_with(BAD_TIMESTAMP)
        || message.starts_with(BAD_URI)
        || message.starts_with(OUT_OF_RANGE)
    {
        (
            ErrorCode::PropertyConstraintViolation,
            parent.to_string(),
            message.to_string(),
        )
    } else {
        (
            ErrorCode::FormationViolation,
            parent.to_string(),
            without_values(message),
        )
    };
    let field = if field.is_empty() {
        "payload".to_string()
    } else {
        bounded(&field, MAX_FIELD_PATH_LEN)
    };
    CallError {
        code,
        description: format!("{field}: {text}"),
        details: json!({ "field": field }),
    }
}

/// The name between the first pair of backticks (serde quotes field names that way), at most
/// 64 characters.
fn backticked(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .unwrap_or(message)
        .chars()
        .take(64)
        .collect()
}

/// `parent.name`, unless `parent` already ends with `name` (the path of an unknown field
/// includes it, that of a missing one does not).
fn join_path(parent: &str, name: &str) -> String {
    if parent == name || parent.ends_with(&format!(".{name}")) {
        parent.to_string()
    } else if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// `message` without the values serde quotes: between backticks ("invalid type: integer `12`,
/// expected a string" becomes "invalid type: integer, expected a string") or as a Rust string
/// literal ("invalid type: string \"abc\", expected u32" becomes "invalid type: string,
/// expected u32").
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        let quote = match (c, chars.peek()) {
            (' ', Some('`')) => '`',
            (' ', Some('"')) => '"',
            _ => {
                out.push(c);
                continue;
            }
        };
        chars.next();
        let mut escaped = false;
        for c in chars.by_ref() {
            match c {
                '\\' if quote == '"' && !escaped => escaped = true,
                c if c == quote && !escaped => break,
                _ => escaped = false,
            }
        }
    }
    out
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
