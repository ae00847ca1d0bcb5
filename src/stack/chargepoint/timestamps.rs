//! Timestamps from the CSMS that are not in UTC. The charger expects UTC (release notes, Core
//! profile limitations); it still reads a time with another offset correctly (converted to UTC)
//! and one without an offset as UTC, and says so in its log as a warning, so the installer can
//! see why a reservation expiry or a startSchedule may not be what the operator meant.

use serde_json::Value;

use super::actor::ChargePoint;
use crate::stack::messages::{Timestamp, TimestampZone};

/// A timestamp in a payload whose text was not UTC.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NotUtc {
    /// Where it is: `csChargingProfiles.chargingSchedule.startSchedule`,
    /// `localAuthorizationList[2].idTagInfo.expiryDate`.
    pub path: String,
    /// The text as sent.
    pub text: String,
    /// The time as the charger reads it.
    pub read_as: Timestamp,
    pub zone: TimestampZone,
}

/// Every string in `payload` that is a timestamp not given in UTC.
pub(super) fn not_utc(payload: &Value) -> Vec<NotUtc> {
    let mut out = Vec::new();
    walk(payload, &mut String::new(), &mut out);
    out
}

fn walk(v: &Value, path: &mut String, out: &mut Vec<NotUtc>) {
    match v {
        // The shortest accepted form is `YYYY-MM-DD hh:mm:ss` (19 characters).
        Value::String(s) if s.len() >= 19 && s.as_bytes()[..4].iter().all(u8::is_ascii_digit) => {
            if let Ok((read_as, zone)) = Timestamp::parse_with_zone(s)
                && zone != TimestampZone::Utc
            {
                out.push(NotUtc {
                    path: path.clone(),
                    text: s.clone(),
                    read_as,
                    zone,
                });
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, out);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                walk(item, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

impl ChargePoint {
    /// Logs a warning for each timestamp in a CSMS payload (a CALL or the answer to one) that
    /// is not in UTC.
    pub fn warn_not_utc(&self, action: &str, payload: &Value) {
        for t in not_utc(payload) {
            let how = match t.zone {
                TimestampZone::Offset(offset) => format!("has offset {offset}"),
                _ => "has no offset".to_string(),
            };
            self.log.warn(
                "ocpp",
                format!(
                    "{action}: {} {} {how}, not UTC as the charger expects; read as {}",
                    t.path, t.text, t.read_as
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_offsets_and_missing_offsets_with_their_path() {
        let payload = json!({
            "connectorId": 1,
            "idTag": "2026-01-01T00:00:00+02:00-card",
            "expiryDate": "2030-01-01T12:00:00+02:00",
            "csChargingProfiles": {"chargingSchedule": {"startSchedule": "2030-01-01T06:00:00"}},
            "localAuthorizationList": [
                {"idTag": "A", "idTagInfo": {"expiryDate": "2030-01-01T00:00:00Z"}},
                {"idTag": "B", "idTagInfo": {"expiryDate": "2030-01-01T00:00:00-05:00"}}
            ],
            "retrieveDate": "2030-01-01T00:00:00+00:00"
        });
        let mut found = not_utc(&payload);
        found.sort_by(|a, b| a.path.cmp(&b.path));
        let paths: Vec<&str> = found.iter().map(|t| t.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "csChargingProfiles.chargingSchedule.startSchedule",
                "expiryDate",
                "localAuthorizationList[1].idTagInfo.expiryDate",
            ]
        );
        assert_eq!(found[1].read_as.to_string(), "2030-01-01T10:00:00.000Z");
        assert_eq!(found[0].zone, TimestampZone::Unspecified);
        assert_eq!(found[2].read_as.to_string(), "2030-01-01T05:00:00.000Z");
    }

    #[test]
    fn utc_and_other_values_give_nothing() {
        let payload = json!({
            "currentTime": "2030-01-01T00:00:00.000Z",
            "interval": 300,
            "status": "Accepted",
            "data": "2030-01-01 is a date"
        });
        assert!(not_utc(&payload).is_empty());
    }
}
