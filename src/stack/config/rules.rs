//! Checks of values with rules of their own: lists, AuthorizationKey, the CSMS URL and the
//! charge point id. Reasons never quote a secret value.

use super::registry::MAX_VALUE_CHARS;

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
