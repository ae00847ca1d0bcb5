//! The CSMS's CALLs: what each one asks of the charger, whether this charger can do it (its
//! limitations, the keys the CSMS relies on), and what an accepted one changes in the state the
//! analyzer keeps (configuration, local list, installed charging profiles).

use serde_json::Value;
use std::collections::BTreeSet;

use super::{ASSUMED_KEYS, Analyzer, CLOCK_ALIGNED_EMULATED_MAX, MEASURAND_KEYS, Pending};
use crate::dryrun::findings::{HEARTBEAT_RANGE, Rule, SHORT_METER_INTERVAL, UNSUPPORTED_KEYS};

impl Analyzer {
    /// A CALL from the CSMS.
    pub(super) fn on_csms_call(&mut self, call: &Pending) {
        let p = &call.frame[3];
        let action = call.action.as_str();
        self.exercised
            .insert(crate::dryrun::findings::Area::of_action(action));
        let request = self.request(call.at, "received", Some(action), &call.frame);
        let req = || request.clone();
        match action {
            "SetChargingProfile" => {
                self.exercised
                    .insert(crate::dryrun::findings::Area::SmartCharging);
                self.last_smart_request = Some(req());
                self.check_profile(call, &p["csChargingProfiles"]);
                let profile = &p["csChargingProfiles"];
                if profile["stackLevel"].as_u64().is_some_and(|l| l > 0) {
                    self.assume(
                        call,
                        "ChargeProfileMaxStackLevel",
                        "it stacks profiles above level 0",
                    );
                }
                let periods = profile["chargingSchedule"]["chargingSchedulePeriod"]
                    .as_array()
                    .map_or(0, Vec::len);
                if periods > 1 {
                    self.assume(
                        call,
                        "ChargingScheduleMaxPeriods",
                        &format!("it sends schedules of {periods} periods"),
                    );
                }
            }
            "ClearChargingProfile" => self.last_smart_request = Some(req()),
            "RemoteStartTransaction" if p.get("chargingProfile").is_some() => {
                self.exercised
                    .insert(crate::dryrun::findings::Area::SmartCharging);
                self.last_smart_request = Some(req());
                self.check_profile(call, &p["chargingProfile"]);
            }
            "ChangeConfiguration" => self.on_change_configuration(call),
            "GetConfiguration" => {
                let keys: Vec<&str> = p["key"]
                    .as_array()
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for key in ASSUMED_KEYS {
                    if keys.contains(&key) {
                        self.assume(
                            call,
                            key,
                            "it reads the value and may size its requests by it",
                        );
                    }
                }
                let max = self.int("GetConfigurationMaxKeys").unwrap_or(64);
                if keys.len() as u64 > max {
                    self.assume(
                        call,
                        "GetConfigurationMaxKeys",
                        &format!("it asks for {} keys in one GetConfiguration", keys.len()),
                    );
                }
            }
            "UpdateFirmware" => {
                self.record(Rule::UpdateFirmwareRequested, Some(req()), None);
                self.check_location(call, &p["location"]);
            }
            "GetDiagnostics" => {
                self.record(Rule::DiagnosticsRequested, Some(req()), None);
                self.check_location(call, &p["location"]);
            }
            "SendLocalList" => self.on_send_local_list(call),
            "ReserveNow" => {
                if self.flag("FreeCharging") {
                    self.record(Rule::ReservationWhileFreeCharging, Some(req()), None);
                }
                if p["connectorId"].as_u64() == Some(0) {
                    self.assume(
                        call,
                        "ReserveConnectorZeroSupported",
                        "it reserves connector 0",
                    );
                }
            }
            "Reset" => {
                let kind = p["type"].as_str().unwrap_or("?");
                self.record(
                    Rule::ResetRequested,
                    Some(req()),
                    Some(format!("{kind} reset")),
                );
            }
            other
                if crate::dryrun::findings::WHITEPAPER_OPERATIONS
                    .iter()
                    .any(|(a, _)| *a == other) =>
            {
                self.record(
                    Rule::WhitepaperOperation {
                        action: other.to_string(),
                    },
                    Some(req()),
                    None,
                );
            }
            _ => {}
        }
    }

    pub(super) fn on_change_configuration(&mut self, call: &Pending) {
        let p = &call.frame[3];
        let key = p["key"].as_str().unwrap_or_default();
        let value = p["value"].as_str().unwrap_or_default();
        let req = self.request(
            call.at,
            "received",
            Some("ChangeConfiguration"),
            &call.frame,
        );
        if let Some((name, _)) = UNSUPPORTED_KEYS
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
        {
            self.record(
                Rule::UnsupportedKey {
                    key: name.to_string(),
                },
                Some(req),
                None,
            );
            return;
        }
        let number = value.trim().parse::<u64>().ok();
        match key {
            k if MEASURAND_KEYS.contains(&k) => {
                for m in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                    if !crate::stack::config::SUPPORTED_MEASURANDS.contains(&m) {
                        self.record(
                            Rule::UnsupportedMeasurand {
                                key: key.to_string(),
                                measurand: m.to_string(),
                            },
                            Some(req.clone()),
                            None,
                        );
                    }
                }
            }
            "SecurityProfile" if number.is_none_or(|n| n > 1) => {
                self.record(
                    Rule::SecurityProfileAbove1 {
                        value: value.to_string(),
                    },
                    Some(req),
                    None,
                );
            }
            "HeartbeatInterval" => {
                if let Some(n) = number
                    && !HEARTBEAT_RANGE.contains(&n)
                {
                    self.record(
                        Rule::HeartbeatInterval {
                            value: n,
                            source: "ChangeConfiguration".into(),
                        },
                        Some(req),
                        None,
                    );
                }
            }
            "MeterValueSampleInterval" | "ClockAlignedDataInterval" => {
                if let Some(n) = number {
                    if n > 0 && n < SHORT_METER_INTERVAL {
                        self.record(
                            Rule::ShortMeterValueInterval {
                                key: key.to_string(),
                                value: n,
                            },
                            Some(req.clone()),
                            None,
                        );
                    }
                    // Where the two release notes disagree (0..=4294967 or 0..=UINT32_T).
                    if key == "ClockAlignedDataInterval" && n > CLOCK_ALIGNED_EMULATED_MAX {
                        self.record(Rule::ClockAlignedUpperBound { value: n }, Some(req), None);
                    }
                }
            }
            "AuthorizationKey" => self.record(Rule::AuthorizationKeyChanged, Some(req), None),
            _ => {}
        }
    }

    pub(super) fn on_send_local_list(&mut self, call: &Pending) {
        let p = &call.frame[3];
        let entries: Vec<&Value> = p["localAuthorizationList"]
            .as_array()
            .map(|l| l.iter().collect())
            .unwrap_or_default();
        let req = self.request(call.at, "received", Some("SendLocalList"), &call.frame);
        if entries.len() > 255 {
            self.record(
                Rule::SendLocalListTooLarge {
                    entries: entries.len(),
                },
                Some(req.clone()),
                None,
            );
        }
        let after = self.local_list_after(p);
        if after.len() > 1024 {
            self.record(
                Rule::LocalListTooLarge { total: after.len() },
                Some(req),
                None,
            );
        }
    }

    /// The local list as it would be after this SendLocalList.
    pub(super) fn local_list_after(&self, p: &Value) -> BTreeSet<String> {
        let mut list = if p["updateType"] == "Full" {
            BTreeSet::new()
        } else {
            self.local_list.clone()
        };
        for e in p["localAuthorizationList"].as_array().into_iter().flatten() {
            let Some(tag) = e["idTag"].as_str() else {
                continue;
            };
            if e.get("idTagInfo").is_some() {
                list.insert(tag.to_string());
            } else {
                list.remove(tag);
            }
        }
        list
    }

    /// The charger answered a CALL from the CSMS.
    pub(super) fn on_charger_answer(&mut self, call: &Pending, answer: &Value) {
        let accepted = answer[0] == 3
            && matches!(
                answer[2]["status"].as_str(),
                Some("Accepted") | Some("RebootRequired")
            );
        if !accepted {
            return;
        }
        let p = &call.frame[3];
        match call.action.as_str() {
            "ChangeConfiguration" => {
                if let (Some(k), Some(v)) = (p["key"].as_str(), p["value"].as_str())
                    && k != "AuthorizationKey"
                {
                    self.config.insert(k.to_string(), v.to_string());
                }
            }
            "SendLocalList" => self.local_list = self.local_list_after(p),
            "SetChargingProfile" => {
                if let Some(id) = p["csChargingProfiles"]["chargingProfileId"].as_i64() {
                    self.profiles_installed.insert(id);
                    if self.profiles_installed.len() > 1 {
                        let n = self.profiles_installed.len();
                        self.assume(
                            call,
                            "MaxChargingProfilesInstalled",
                            &format!("it installs {n} profiles at once"),
                        );
                    }
                }
            }
            "ClearChargingProfile" => self.profiles_installed.clear(),
            _ => {}
        }
    }
}
