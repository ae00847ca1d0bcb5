//! Validation of a value for its key: the value type and range, then the rules of its own
//! (measurands, phase rotation, lists, AuthorizationKey, the CSMS URL, the charge point id).
//! Reasons never quote a secret value.

use super::registry::keys::CONNECTOR_PHASE_ROTATION_MAX_LENGTH;
use super::registry::{IntKey, KeySpec, MAX_VALUE_CHARS, Rule, ValueType};
use super::{Configuration, PHASE_ROTATIONS, SUPPORTED_MEASURANDS};

/// Splits a comma-separated list, trimming blanks around entries. Empty text is an empty list;
/// an empty entry (`a,,b`, trailing comma) is refused.
pub(super) fn split_list(value: &str) -> std::result::Result<Vec<&str>, String> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .enumerate()
        .map(|(n, item)| {
            let item = item.trim();
            if item.is_empty() {
                Err(format!("entry {} is empty", n + 1))
            } else {
                Ok(item)
            }
        })
        .collect()
}

/// AuthorizationKey: 16 to 20 bytes as 32 to 40 hex digits. Reasons never quote the value.
pub(super) fn check_authorization_key(value: &str) -> std::result::Result<(), String> {
    if let Some(pos) = value.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "must be hex digits; character {} is not a hex digit",
            pos + 1
        ));
    }
    let digits = value.len();
    if !digits.is_multiple_of(2) {
        return Err(format!(
            "has an odd number of hex digits ({digits}); each byte needs two"
        ));
    }
    if !(32..=40).contains(&digits) {
        return Err(format!(
            "is {} bytes; it must be 16 to 20 bytes (32 to 40 hex digits)",
            digits / 2
        ));
    }
    Ok(())
}

/// Checks a value's length against [`MAX_VALUE_CHARS`] (ChangeConfiguration's CiString500).
pub fn check_value_length(value: &str) -> std::result::Result<(), String> {
    let length = value.chars().count();
    if length > MAX_VALUE_CHARS {
        return Err(format!(
            "value is {length} characters, at most {MAX_VALUE_CHARS} allowed"
        ));
    }
    Ok(())
}

/// Checks a CSMS URL: `ws://` or `wss://`, a host, an optional port in 1..=65535, no blanks,
/// credentials, query or fragment; empty means "not configured".
pub fn check_ws_url(value: &str) -> std::result::Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    let rest = value
        .strip_prefix("ws://")
        .or_else(|| value.strip_prefix("wss://"))
        .ok_or_else(|| format!("{value:?} must start with ws:// or wss://"))?;
    if let Some(pos) = value
        .chars()
        .position(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "character {} is blank or a control character",
            pos + 1
        ));
    }
    if rest.contains(['?', '#']) {
        return Err("must not carry a query or fragment; the charge point id is appended".into());
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err("must not carry credentials; use AuthorizationKey".to_string());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| "IPv6 host is missing its closing ]".to_string())?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".to_string());
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("port {p:?} is not a port number (1 to 65535)")),
        }
    }
    Ok(())
}

pub(super) fn check_charge_point_id(value: &str) -> std::result::Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_string());
    }
    let len = value.chars().count();
    if len > 48 {
        return Err(format!("is {len} characters, at most 48 allowed"));
    }
    if let Some((pos, c)) = value
        .chars()
        .enumerate()
        .find(|(_, c)| *c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "character {} ({c:?}) is not allowed (no '/', blanks or control characters)",
            pos + 1
        ));
    }
    Ok(())
}

impl Configuration {
    /// Checks `value` against the key's type and rules; returns the canonical form to store.
    /// The reason never contains the value of a secret key.
    pub(super) fn validate(
        &self,
        spec: &KeySpec,
        value: &str,
    ) -> std::result::Result<String, String> {
        let canonical = match spec.value_type {
            ValueType::Boolean => {
                if value.eq_ignore_ascii_case("true") {
                    "true".to_string()
                } else if value.eq_ignore_ascii_case("false") {
                    "false".to_string()
                } else {
                    return Err(format!("{value:?} is not a boolean (true or false)"));
                }
            }
            ValueType::Integer { min, max } => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| format!("{value:?} is not an integer in {min}..={max}"))?;
                if n < min || n > max {
                    return Err(format!("{n} is outside {min}..={max}"));
                }
                n.to_string()
            }
            ValueType::List => {
                let items = split_list(value)?;
                items.join(",")
            }
            ValueType::Text => value.to_string(),
        };
        match spec.rule {
            Rule::Plain | Rule::SecurityProfile => {}
            Rule::OnlyTrue => {
                if canonical != "true" {
                    return Err("only true is accepted".to_string());
                }
            }
            Rule::Measurands { max_length_key } => {
                let items = split_list(&canonical)?;
                for (n, m) in items.iter().enumerate() {
                    if !SUPPORTED_MEASURANDS.contains(m) {
                        return Err(format!(
                            "entry {} {m:?} is not a supported measurand ({})",
                            n + 1,
                            SUPPORTED_MEASURANDS.join(", ")
                        ));
                    }
                    if items[..n].contains(m) {
                        return Err(format!("entry {} {m:?} is listed twice", n + 1));
                    }
                }
                let max = self.int(max_length_key);
                if items.len() as i64 > max {
                    return Err(format!(
                        "{} entries, at most {max} allowed ({})",
                        items.len(),
                        max_length_key.name()
                    ));
                }
            }
            Rule::PhaseRotation => self.check_phase_rotation(&canonical)?,
            Rule::IdToken => {
                if canonical.is_empty() || canonical.chars().count() > 20 {
                    return Err("must be 1 to 20 characters (an OCPP IdToken)".to_string());
                }
            }
            Rule::AuthorizationKey => check_authorization_key(&canonical)?,
            Rule::WebSocketUrl => check_ws_url(&canonical)?,
            Rule::ChargePointId => check_charge_point_id(&canonical)?,
            Rule::OneOf(words) => {
                if !words.contains(&canonical.as_str()) {
                    return Err(format!("{canonical:?} is not one of {}", words.join(", ")));
                }
            }
        }
        Ok(canonical)
    }

    pub(super) fn check_phase_rotation(&self, value: &str) -> std::result::Result<(), String> {
        let items = split_list(value)?;
        if items.is_empty() {
            return Err("needs at least one <connectorId>.<rotation> entry".to_string());
        }
        let connectors = self.int(IntKey::NUMBER_OF_CONNECTORS);
        let max = self.int(IntKey::CONNECTOR_PHASE_ROTATION_MAX_LENGTH);
        if items.len() as i64 > max {
            return Err(format!(
                "{} entries, at most {max} allowed ({CONNECTOR_PHASE_ROTATION_MAX_LENGTH})",
                items.len()
            ));
        }
        let mut seen = Vec::new();
        for (n, item) in items.iter().enumerate() {
            let entry = n + 1;
            let Some((id, rotation)) = item.split_once('.') else {
                return Err(format!(
                    "entry {entry} {item:?} is not <connectorId>.<rotation>"
                ));
            };
            let id: i64 = id
                .parse()
                .map_err(|_| format!("entry {entry} {item:?}: connector id is not a number"))?;
            if id < 0 || id > connectors {
                return Err(format!(
                    "entry {entry} {item:?}: connector id outside 0..={connectors}"
                ));
            }
            if !PHASE_ROTATIONS.contains(&rotation) {
                return Err(format!(
                    "entry {entry} {item:?}: rotation must be one of {}",
                    PHASE_ROTATIONS.join(", ")
                ));
            }
            if seen.contains(&id) {
                return Err(format!("entry {entry}: connector {id} is listed twice"));
            }
            seen.push(id);
        }
        Ok(())
    }
}
