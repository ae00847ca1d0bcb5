//! Checks of the values inside a CSMS payload: charging profiles against the charger's
//! limitations, firmware and diagnostics locations, and timestamps that must be UTC.

use serde_json::Value;

use super::{Analyzer, Pending, Stamp};
use crate::dryrun::findings::Rule;

impl Analyzer {
    pub(super) fn check_profile(&mut self, call: &Pending, profile: &Value) {
        let req = self.request(call.at, "received", Some(&call.action), &call.frame);
        let schedule = &profile["chargingSchedule"];
        if schedule["chargingRateUnit"].as_str() == Some("W") {
            self.record(
                Rule::ChargingRateUnitW {
                    action: call.action.clone(),
                },
                Some(req.clone()),
                None,
            );
        }
        if profile["chargingProfileKind"].as_str() == Some("Recurring")
            && schedule.get("startSchedule").is_none()
        {
            self.record(
                Rule::RecurringWithoutStartSchedule {
                    action: call.action.clone(),
                },
                Some(req),
                None,
            );
        }
    }

    pub(super) fn check_location(&mut self, call: &Pending, location: &Value) {
        let Some(loc) = location.as_str() else { return };
        let lower = loc.trim().to_ascii_lowercase();
        let scheme = if lower.starts_with("ftps://") {
            "ftps"
        } else if lower.starts_with("ftp://") {
            "ftp"
        } else {
            return;
        };
        let req = self.request(call.at, "received", Some(&call.action), &call.frame);
        self.record(
            Rule::FtpLocation {
                action: call.action.clone(),
                scheme: scheme.into(),
            },
            Some(req),
            None,
        );
    }

    /// Every timestamp in a CSMS payload must be UTC.
    pub(super) fn check_timestamps(
        &mut self,
        at: Stamp,
        action: &str,
        frame: &Value,
        payload: &Value,
        dir: &str,
    ) {
        let mut found = Vec::new();
        collect_timestamps(payload, "", &mut found);
        for (field, value) in found {
            if is_utc(&value) {
                continue;
            }
            let req = self.request(at, dir, Some(action), frame);
            self.record(
                Rule::NonUtcTimestamp {
                    action: action.to_string(),
                    field,
                },
                Some(req),
                Some(format!("value {value}")),
            );
        }
    }
}

/// (field name, value) of every string that looks like an RFC 3339 date-time.
fn collect_timestamps(v: &Value, field: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) if looks_like_datetime(s) => out.push((field.to_string(), s.clone())),
        Value::Array(items) => {
            for i in items {
                collect_timestamps(i, field, out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                collect_timestamps(v, k, out);
            }
        }
        _ => {}
    }
}

fn looks_like_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 19
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't')
        && b[13] == b':'
}

fn is_utc(s: &str) -> bool {
    let t = s.trim();
    t.ends_with('Z')
        || t.ends_with('z')
        || t.ends_with("+00:00")
        || t.ends_with("-00:00")
        || t.ends_with("+0000")
}
