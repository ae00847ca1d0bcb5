use super::*;
use crate::dryrun::findings::Area;
use serde_json::json;

/// An analyzer driven by synthetic frames on a synthetic clock.
struct Rig {
    a: Analyzer,
    now: Duration,
}

impl Rig {
    fn new(config: &[(&str, &str)], expectations: Expectations) -> Rig {
        let mut configuration: BTreeMap<String, String> = [
            ("MessageTimeout", "30"),
            ("GetConfigurationMaxKeys", "64"),
            ("ChargeProfileMaxStackLevel", "8"),
            ("ChargingScheduleMaxPeriods", "24"),
            ("MaxChargingProfilesInstalled", "10"),
            ("ReserveConnectorZeroSupported", "false"),
            ("FreeCharging", "false"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in config {
            configuration.insert(k.to_string(), v.to_string());
        }
        Rig {
            a: Analyzer::new(Context {
                configuration,
                expectations,
            }),
            now: Duration::ZERO,
        }
    }

    fn plain() -> Rig {
        Rig::new(&[], Expectations::default())
    }

    fn stamp(&self) -> Stamp {
        Stamp {
            elapsed: self.now,
            time: DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default()
                + chrono::Duration::from_std(self.now).unwrap_or_default(),
        }
    }

    fn wait(&mut self, secs: f64) {
        self.now += Duration::from_secs_f64(secs);
        let at = self.stamp();
        self.a.tick(at);
    }

    fn obs(&mut self, o: Observation) {
        let at = self.stamp();
        self.a.observe(at, o);
    }

    fn cp_call(&mut self, id: &str, action: &str, payload: Value) {
        self.obs(Observation::Sent(json!([2, id, action, payload])));
    }

    fn csms_result(&mut self, id: &str, payload: Value) {
        self.obs(Observation::Received(json!([3, id, payload])));
    }

    fn csms_error(&mut self, id: &str, code: &str) {
        self.obs(Observation::Received(json!([4, id, code, "", {}])));
    }

    fn csms_call(&mut self, id: &str, action: &str, payload: Value) {
        self.obs(Observation::Received(json!([2, id, action, payload])));
    }

    fn cp_result(&mut self, id: &str, payload: Value) {
        self.obs(Observation::Sent(json!([3, id, payload])));
    }

    /// Connected, BootNotification accepted with `interval`.
    fn boot(&mut self, interval: u64) {
        self.obs(Observation::Connected);
        self.cp_call(
            "b1",
            "BootNotification",
            json!({"chargePointVendor": "Zaptec", "chargePointModel": "Go"}),
        );
        self.csms_result(
            "b1",
            json!({"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": interval}),
        );
    }

    /// The CSMS calls; the charger answers `answer`.
    fn exchange(&mut self, id: &str, action: &str, payload: Value, answer: Value) {
        self.csms_call(id, action, payload);
        self.cp_result(id, answer);
    }

    fn end(&mut self) -> Vec<Finding> {
        let at = self.stamp();
        self.a.finish(at);
        self.a.findings().to_vec()
    }

    fn rules(&mut self) -> Vec<String> {
        self.end().into_iter().map(|f| f.rule).collect()
    }
}

fn one<'a>(findings: &'a [Finding], rule: &str) -> &'a Finding {
    let matching: Vec<&Finding> = findings.iter().filter(|f| f.rule == rule).collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one {rule}, got {:#?}",
        findings
            .iter()
            .map(|f| (&f.rule, &f.subject))
            .collect::<Vec<_>>()
    );
    matching[0]
}

fn expect(f: &Finding, severity: Severity, area: Area, note: &str) {
    assert_eq!(f.severity, severity, "{}", f.rule);
    assert_eq!(f.area, area, "{}", f.rule);
    assert_eq!(f.release_note.text, note, "{}", f.rule);
}

fn charging_profile(unit: &str, kind: &str, start: Option<&str>) -> Value {
    let mut schedule = json!({
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]
    });
    if let Some(s) = start {
        schedule["startSchedule"] = json!(s);
    }
    json!({
        "chargingProfileId": 1, "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": kind,
        "recurrencyKind": "Daily",
        "chargingSchedule": schedule
    })
}

#[test]
fn a_well_behaved_csms_gives_no_finding() {
    let mut r = Rig::plain();
    r.boot(300);
    r.cp_call(
        "s1",
        "StatusNotification",
        json!({"connectorId": 1, "status": "Available", "errorCode": "NoError"}),
    );
    r.csms_result("s1", json!({}));
    r.cp_call("a1", "Authorize", json!({"idTag": "T1"}));
    r.csms_result("a1", json!({"idTagInfo": {"status": "Accepted"}}));
    r.cp_call("t1", "StartTransaction", json!({"connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"}));
    r.csms_result("t1", json!({"transactionId": 5, "idTagInfo": {"status": "Accepted", "expiryDate": "2026-02-01T00:00:00.000Z"}}));
    r.exchange(
        "c1",
        "ChangeConfiguration",
        json!({"key": "HeartbeatInterval", "value": "600"}),
        json!({"status": "Accepted"}),
    );
    r.exchange(
        "p1",
        "SetChargingProfile",
        json!({"connectorId": 1, "csChargingProfiles": charging_profile("A", "Absolute", Some("2026-01-01T00:00:00Z"))}),
        json!({"status": "Accepted"}),
    );
    r.wait(600.0);
    assert_eq!(r.rules(), Vec::<String>::new());
    let s = r.a.stats();
    assert_eq!(s.registration.as_deref(), Some("Accepted"));
    assert_eq!((s.frames_sent, s.frames_received), (6, 6));
    assert!(r.a.exercised().contains(&Area::SmartCharging));
    assert!(!r.a.exercised().contains(&Area::Firmware));
}

#[test]
fn charging_profiles_in_watts_or_recurring_without_start_are_blocking() {
    let mut r = Rig::plain();
    r.boot(300);
    for id in ["p1", "p2", "p3"] {
        r.exchange(
            id,
            "SetChargingProfile",
            json!({"connectorId": 1, "csChargingProfiles": charging_profile("W", "Absolute", Some("2026-01-01T00:00:00Z"))}),
            json!({"status": "Rejected"}),
        );
    }
    r.exchange(
        "p4",
        "SetChargingProfile",
        json!({"connectorId": 0, "csChargingProfiles": charging_profile("A", "Recurring", None)}),
        json!({"status": "Rejected"}),
    );
    r.exchange(
        "r1",
        "RemoteStartTransaction",
        json!({"idTag": "T1", "chargingProfile": charging_profile("W", "Relative", None)}),
        json!({"status": "Rejected"}),
    );
    let f = r.end();
    let w: Vec<&Finding> = f
        .iter()
        .filter(|f| f.rule == "charging_profile_in_watts")
        .collect();
    assert_eq!(w.len(), 1, "one finding for every W profile: {w:#?}");
    expect(
        w[0],
        Severity::Blocking,
        Area::SmartCharging,
        "Only 'A' is allowed as ChargingRateUnitType",
    );
    assert_eq!(
        w[0].count, 4,
        "three SetChargingProfile and one RemoteStart"
    );
    let first = w[0].request.as_ref().unwrap();
    assert_eq!(first.message_id.as_deref(), Some("p1"));
    assert_eq!(first.action.as_deref(), Some("SetChargingProfile"));
    assert!(first.excerpt.contains("\"W\""), "{}", first.excerpt);
    let rec = one(&f, "recurring_profile_without_start_schedule");
    expect(
        rec,
        Severity::Blocking,
        Area::SmartCharging,
        "startSchedule is required on recurring schedules",
    );
}

#[test]
fn configuration_the_charger_lacks_is_named_key_by_key() {
    let mut r = Rig::plain();
    r.boot(300);
    for (id, key) in [
        ("1", "BlinkRepeat"),
        ("2", "MaxEnergyOnInvalidId"),
        ("3", "ConnectorSwitch3to1PhaseSupported"),
        ("4", "CpoName"),
        ("5", "BlinkRepeat"),
    ] {
        r.exchange(
            id,
            "ChangeConfiguration",
            json!({"key": key, "value": "1"}),
            json!({"status": "NotSupported"}),
        );
    }
    r.exchange(
        "6",
        "ChangeConfiguration",
        json!({"key": "MeterValuesSampledData", "value": "Energy.Active.Import.Register,Power.Active.Import,SoC"}),
        json!({"status": "Rejected"}),
    );
    r.exchange(
        "7",
        "ChangeConfiguration",
        json!({"key": "SecurityProfile", "value": "2"}),
        json!({"status": "Rejected"}),
    );
    let f = r.end();
    let keys: Vec<(&str, u64)> = f
        .iter()
        .filter(|f| f.rule == "unsupported_configuration_key")
        .map(|f| (f.subject.as_deref().unwrap(), f.count))
        .collect();
    assert_eq!(
        keys,
        [
            ("BlinkRepeat", 2),
            ("MaxEnergyOnInvalidId", 1),
            ("ConnectorSwitch3to1PhaseSupported", 1),
            ("CpoName", 1)
        ]
    );
    let blink = f
        .iter()
        .find(|f| f.subject.as_deref() == Some("BlinkRepeat"))
        .unwrap();
    expect(
        blink,
        Severity::Warning,
        Area::Configuration,
        "Configuration for BlinkRepeat is not supported",
    );
    let switch = f
        .iter()
        .find(|f| f.subject.as_deref() == Some("ConnectorSwitch3to1PhaseSupported"))
        .unwrap();
    expect(
        switch,
        Severity::Warning,
        Area::SmartCharging,
        "Configuration for ConnectorSwitch3to1PhaseSupported is not supported",
    );
    let measurands: Vec<&str> = f
        .iter()
        .filter(|f| f.rule == "unsupported_measurand")
        .map(|f| f.subject.as_deref().unwrap())
        .collect();
    assert_eq!(measurands, ["Power.Active.Import", "SoC"]);
    let m = f
        .iter()
        .find(|f| f.rule == "unsupported_measurand")
        .unwrap();
    expect(
        m,
        Severity::Warning,
        Area::Transactions,
        "Only a few measurands are supported: Current.Import, Current.Offered, Energy.Active.Import.Register, Energy.Active.Import.Interval, Temperature, Voltage",
    );
    let sp = one(&f, "security_profile_above_1");
    expect(
        sp,
        Severity::Blocking,
        Area::Connection,
        "SecurityProfile can only be set to 0 or 1.",
    );
}

#[test]
fn whitepaper_operations_ftp_locations_reset_and_firmware_are_flagged() {
    let mut r = Rig::plain();
    r.boot(300);
    r.csms_call("1", "GetLog", json!({"logType": "DiagnosticsLog", "requestId": 1, "log": {"remoteLocation": "https://x"}}));
    r.obs(Observation::Sent(json!([
        4,
        "1",
        "NotSupported",
        "GetLog is not supported by this charger",
        {}
    ])));
    r.csms_call(
        "2",
        "InstallCertificate",
        json!({"certificateType": "ManufacturerRootCertificate", "certificate": "x"}),
    );
    r.exchange("3", "UpdateFirmware", json!({"location": "ftp://files.example.com/fw.bin", "retrieveDate": "2026-01-01T00:00:00Z"}), json!({}));
    r.exchange(
        "4",
        "GetDiagnostics",
        json!({"location": "ftps://files.example.com/up"}),
        json!({}),
    );
    r.exchange(
        "5",
        "Reset",
        json!({"type": "Soft"}),
        json!({"status": "Accepted"}),
    );
    let f = r.end();
    let getlog = f
        .iter()
        .find(|f| f.subject.as_deref() == Some("GetLog"))
        .unwrap();
    expect(
        getlog,
        Severity::Warning,
        Area::Diagnostics,
        "GetLog is not supported",
    );
    let install = f
        .iter()
        .find(|f| f.subject.as_deref() == Some("InstallCertificate"))
        .unwrap();
    expect(
        install,
        Severity::Warning,
        Area::Connection,
        "InstallCertificate is not supported",
    );
    let ftp: Vec<&Finding> = f.iter().filter(|f| f.rule == "ftp_location").collect();
    assert_eq!(ftp.len(), 2);
    expect(
        ftp[0],
        Severity::Warning,
        Area::Firmware,
        "FTP(s) is not supported",
    );
    expect(
        ftp[1],
        Severity::Warning,
        Area::Diagnostics,
        "FTP(s) is not supported",
    );
    expect(
        one(&f, "update_firmware_requested"),
        Severity::Warning,
        Area::Firmware,
        "We do not distribute firmware files; all firmware updates are provided by the Zaptec cloud",
    );
    expect(
        one(&f, "diagnostics_requested"),
        Severity::Warning,
        Area::Diagnostics,
        "DiagnosticsStatus may be incorrect and misleading if diagnostics log has not been enabled by Zaptec on the specific charger.",
    );
    expect(
        one(&f, "reset_requested"),
        Severity::Warning,
        Area::Configuration,
        "A rare issue may cause a reset to fail.",
    );
}

#[test]
fn local_lists_over_the_charger_limits() {
    let entries = |n: usize, prefix: &str| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"idTag": format!("{prefix}{i}"), "idTagInfo": {"status": "Accepted"}}))
            .collect()
    };
    let mut r = Rig::plain();
    r.boot(300);
    r.exchange("1", "SendLocalList", json!({"listVersion": 1, "updateType": "Full", "localAuthorizationList": entries(300, "A")}), json!({"status": "Failed"}));
    for (version, chunk) in (2..).zip(0..5) {
        let kind = if chunk == 0 { "Full" } else { "Differential" };
        r.exchange(
            &format!("d{chunk}"),
            "SendLocalList",
            json!({"listVersion": version, "updateType": kind, "localAuthorizationList": entries(250, &format!("C{chunk}-"))}),
            json!({"status": "Accepted"}),
        );
    }
    let f = r.end();
    let big = one(&f, "send_local_list_too_large");
    expect(
        big,
        Severity::Warning,
        Area::Authorization,
        "Authorization list is set to allow 1024 entries and allow 255 entries in a single SendLocalList operation",
    );
    assert!(big.title.contains("300 entries"), "{}", big.title);
    let total = one(&f, "local_list_too_large");
    assert!(total.title.contains("1250"), "{}", total.title);
    assert_eq!(
        total.request.as_ref().unwrap().message_id.as_deref(),
        Some("d4")
    );
}

#[test]
fn reservations_follow_free_charging_as_the_csms_changes_it() {
    let mut r = Rig::plain();
    r.boot(300);
    let reserve = json!({"connectorId": 1, "expiryDate": "2026-01-01T01:00:00Z", "idTag": "T1", "reservationId": 1});
    r.exchange(
        "1",
        "ReserveNow",
        reserve.clone(),
        json!({"status": "Accepted"}),
    );
    assert!(r.a.findings().is_empty());
    r.exchange(
        "2",
        "ChangeConfiguration",
        json!({"key": "FreeCharging", "value": "true"}),
        json!({"status": "Accepted"}),
    );
    r.exchange("3", "ReserveNow", reserve, json!({"status": "Rejected"}));
    r.exchange("4", "ReserveNow", json!({"connectorId": 0, "expiryDate": "2026-01-01T01:00:00Z", "idTag": "T1", "reservationId": 2}), json!({"status": "Rejected"}));
    let f = r.end();
    let res = one(&f, "reservation_while_free_charging");
    expect(
        res,
        Severity::Warning,
        Area::Authorization,
        "If Authorization is set to not required, then active reservations will be cancelled and new reservations will be rejected until authorization is set to required.",
    );
    assert_eq!(res.count, 2);
    let zero = one(&f, "assumed_value");
    expect(
        zero,
        Severity::Info,
        Area::Authorization,
        "All operations and configuration keys are supported",
    );
    assert!(zero.title.contains("ReserveConnectorZeroSupported"));
    assert!(zero.title.contains("false"), "{}", zero.title);
}

#[test]
fn timestamps_that_are_not_utc_are_found_in_calls_and_answers() {
    let mut r = Rig::plain();
    r.obs(Observation::Connected);
    r.cp_call("b1", "BootNotification", json!({}));
    r.csms_result(
        "b1",
        json!({"status": "Accepted", "currentTime": "2026-01-01T01:00:00+01:00", "interval": 300}),
    );
    r.exchange("1", "ReserveNow", json!({"connectorId": 1, "expiryDate": "2026-01-01T12:00:00+02:00", "idTag": "T1", "reservationId": 1}), json!({"status": "Accepted"}));
    r.exchange("2", "ReserveNow", json!({"connectorId": 1, "expiryDate": "2026-01-01T12:00:00", "idTag": "T1", "reservationId": 2}), json!({"status": "Accepted"}));
    r.exchange("3", "ReserveNow", json!({"connectorId": 1, "expiryDate": "2026-01-01T12:00:00.000Z", "idTag": "T1", "reservationId": 3}), json!({"status": "Accepted"}));
    let f = r.end();
    let subjects: Vec<(&str, Area, u64)> = f
        .iter()
        .filter(|f| f.rule == "non_utc_timestamp")
        .map(|f| (f.subject.as_deref().unwrap(), f.area, f.count))
        .collect();
    assert_eq!(
        subjects,
        [
            ("BootNotification.currentTime", Area::Connection, 1),
            ("ReserveNow.expiryDate", Area::Authorization, 2)
        ]
    );
    let res = f
        .iter()
        .find(|f| f.subject.as_deref() == Some("ReserveNow.expiryDate"))
        .unwrap();
    expect(
        res,
        Severity::Warning,
        Area::Authorization,
        "CP expects CS to use timestamp in UTC",
    );
    assert_eq!(
        res.detail.as_deref(),
        Some("value 2026-01-01T12:00:00+02:00")
    );
}

#[test]
fn boot_never_accepted_is_blocking_and_pending_then_accepted_is_info() {
    for (status, note) in [("Pending", "Pending"), ("Rejected", "Rejected")] {
        let mut r = Rig::plain();
        r.obs(Observation::Connected);
        for i in 0..3 {
            let id = format!("b{i}");
            r.cp_call(&id, "BootNotification", json!({}));
            r.csms_result(
                &id,
                json!({"status": status, "currentTime": "2026-01-01T00:00:00Z", "interval": 60}),
            );
            r.wait(60.0);
        }
        let f = r.end();
        let b = one(&f, "boot_not_accepted");
        expect(
            b,
            Severity::Blocking,
            Area::Connection,
            "Some optional parameters for BootNotification.req (meterSerialNumber, meterType) is not sent and others (iccid, imsi) may only be sent when LTE has been used prior to bootnotification and after last reset",
        );
        assert!(b.title.contains(note), "{}", b.title);
    }
    let mut r = Rig::plain();
    r.obs(Observation::Connected);
    r.cp_call("b0", "BootNotification", json!({}));
    r.csms_result(
        "b0",
        json!({"status": "Pending", "currentTime": "2026-01-01T00:00:00Z", "interval": 30}),
    );
    r.wait(45.0);
    r.cp_call("b1", "BootNotification", json!({}));
    r.csms_result(
        "b1",
        json!({"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 300}),
    );
    let f = r.end();
    assert!(f.iter().all(|f| f.rule != "boot_not_accepted"));
    let p = one(&f, "boot_pending");
    assert_eq!(p.severity, Severity::Info);
    assert!(p.title.contains("45 s"), "{}", p.title);
}

#[test]
fn calls_unanswered_past_message_timeout_count_once_each_and_not_across_a_disconnect() {
    let mut r = Rig::new(&[("MessageTimeout", "20")], Expectations::default());
    r.boot(300);
    r.cp_call("h1", "Heartbeat", json!({}));
    r.wait(19.0);
    assert!(r.a.findings().is_empty(), "not late yet");
    r.wait(2.0);
    let f = r.a.findings().to_vec();
    let h = one(&f, "unanswered_call");
    expect(
        h,
        Severity::Warning,
        Area::Connection,
        "Configuration key MessageTimeout specified in errata v4.0 is supported",
    );
    assert_eq!(h.subject.as_deref(), Some("Heartbeat"));
    r.wait(100.0);
    assert_eq!(r.a.findings()[0].count, 1, "one late call counts once");
    // A call lost with the connection is not the CSMS's silence.
    r.cp_call("t1", "StartTransaction", json!({"connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"}));
    r.wait(5.0);
    r.obs(Observation::Scenario(Mark::OutageStarted));
    r.obs(Observation::Disconnected {
        reason: "network lost".into(),
    });
    r.wait(60.0);
    r.obs(Observation::Connected);
    r.cp_call("t2", "StartTransaction", json!({"connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"}));
    r.wait(25.0);
    let f = r.end();
    let tx = f
        .iter()
        .find(|f| f.subject.as_deref() == Some("StartTransaction"))
        .unwrap();
    expect(
        tx,
        Severity::Blocking,
        Area::Transactions,
        "Configuration key MessageTimeout specified in errata v4.0 is supported",
    );
    assert_eq!(tx.count, 1);
    assert_eq!(
        tx.request.as_ref().unwrap().message_id.as_deref(),
        Some("t2")
    );
    assert!(
        f.iter().all(|f| f.rule != "csms_closed_connection"),
        "the outage was the run's own"
    );
}

#[test]
fn heartbeat_intervals_out_of_range_from_boot_or_configuration() {
    let mut r = Rig::plain();
    r.boot(10);
    r.exchange(
        "1",
        "ChangeConfiguration",
        json!({"key": "HeartbeatInterval", "value": "172800"}),
        json!({"status": "Accepted"}),
    );
    r.exchange(
        "2",
        "ChangeConfiguration",
        json!({"key": "MeterValueSampleInterval", "value": "2"}),
        json!({"status": "Accepted"}),
    );
    r.exchange(
        "3",
        "ChangeConfiguration",
        json!({"key": "ClockAlignedDataInterval", "value": "172800"}),
        json!({"status": "Accepted"}),
    );
    // Only above 4294967 s do the two release notes disagree.
    r.exchange(
        "4",
        "ChangeConfiguration",
        json!({"key": "ClockAlignedDataInterval", "value": "5000000"}),
        json!({"status": "Rejected"}),
    );
    let f = r.end();
    let hb: Vec<&Finding> = f
        .iter()
        .filter(|f| f.rule == "heartbeat_interval_out_of_range")
        .collect();
    assert_eq!(hb.len(), 2);
    expect(
        hb[0],
        Severity::Warning,
        Area::Connection,
        "Sampled meter value and heartbeat intervals can be set to any number between 0 and 4294967 It has been tested with short intervals and no issue has been observed with 1 second intervals, but this has not been tested with high load or poor network connectivity. Some measurands are sampled at close to 1 second interval and the meter value may therefore be up to approximately 1 second old when sent with OCPP. We do not recommend short meter value intervals.",
    );
    assert!(
        hb[0].title.contains("10 s from BootNotification"),
        "{}",
        hb[0].title
    );
    assert!(hb[1].title.contains("172800 s from ChangeConfiguration"));
    assert_eq!(
        one(&f, "short_meter_value_interval").severity,
        Severity::Info
    );
    let clock = one(&f, "clock_aligned_interval_upper_bound");
    expect(
        clock,
        Severity::Info,
        Area::Transactions,
        "Meter value intervals can be set to any number between 0 and UINT32_T. It has been tested with short intervals and no issue has been observed with 1-second intervals, but this has not been tested with high load or poor network connectivity. Some measurands are sampled at close to 1-second intervals and the meter value may therefore be up to approximately 1 second old when sent with OCPP.",
    );
    assert!(clock.charger.contains("disagree"));
    assert!(clock.title.contains("5000000 s"), "{}", clock.title);
}

#[test]
fn transaction_errors_and_refused_cards_depend_on_what_the_site_expects() {
    let expect_tags = Expectations {
        accepted_id_tags: vec!["GOOD1".into()],
        remote_start: None,
    };
    let mut r = Rig::new(&[], expect_tags);
    r.boot(300);
    r.cp_call("a1", "Authorize", json!({"idTag": "GOOD1"}));
    r.csms_result("a1", json!({"idTagInfo": {"status": "Invalid"}}));
    r.cp_call("a2", "Authorize", json!({"idTag": "OTHER"}));
    r.csms_result("a2", json!({"idTagInfo": {"status": "Blocked"}}));
    r.cp_call("t1", "StartTransaction", json!({"connectorId": 1, "idTag": "GOOD1", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"}));
    r.csms_error("t1", "InternalError");
    r.cp_call(
        "m1",
        "MeterValues",
        json!({"connectorId": 1, "meterValue": []}),
    );
    r.csms_error("m1", "FormationViolation");
    let f = r.end();
    let good = f
        .iter()
        .find(|f| f.subject.as_deref() == Some("GOOD1"))
        .unwrap();
    expect(
        good,
        Severity::Blocking,
        Area::Authorization,
        "Authorization cache is supported",
    );
    assert!(good.title.contains("Invalid"));
    let other = f
        .iter()
        .find(|f| f.subject.as_deref() == Some("OTHER"))
        .unwrap();
    assert_eq!(other.severity, Severity::Info);
    let errors: Vec<(&str, Severity)> = f
        .iter()
        .filter(|f| f.rule == "transaction_message_error")
        .map(|f| (f.subject.as_deref().unwrap(), f.severity))
        .collect();
    assert_eq!(
        errors,
        [
            ("StartTransaction", Severity::Blocking),
            ("MeterValues", Severity::Blocking)
        ]
    );
    expect(
        f.iter()
            .find(|f| f.rule == "transaction_message_error")
            .unwrap(),
        Severity::Blocking,
        Area::Transactions,
        "Transaction related messages are prioritised if they can be sent, even if they were queued when offline. This may cause other messages to be delayed after a re-connect with many queued transaction related messages.",
    );
}

#[test]
fn a_missing_remote_start_is_blocking_only_when_expected() {
    let waited = Mark::RemoteStartWait {
        received: false,
        waited: Duration::from_secs(90),
    };
    for (expected, severity) in [
        (Some(true), Some(Severity::Blocking)),
        (None, Some(Severity::Info)),
        (Some(false), None),
    ] {
        let mut r = Rig::new(
            &[],
            Expectations {
                accepted_id_tags: vec![],
                remote_start: expected,
            },
        );
        r.boot(300);
        r.obs(Observation::Scenario(waited.clone()));
        let f = r.end();
        let got = f
            .iter()
            .find(|f| f.rule == "no_remote_start")
            .map(|f| f.severity);
        assert_eq!(got, severity, "remote_start = {expected:?}");
        if let Some(f) = f.iter().find(|f| f.rule == "no_remote_start") {
            assert_eq!(f.area, Area::Transactions);
            assert!(f.release_note.text.contains("remoteStartTransaction"));
        }
    }
    let mut r = Rig::new(
        &[],
        Expectations {
            accepted_id_tags: vec![],
            remote_start: Some(true),
        },
    );
    r.boot(300);
    r.obs(Observation::Scenario(Mark::RemoteStartWait {
        received: true,
        waited: Duration::from_secs(3),
    }));
    assert!(r.rules().is_empty());
}

#[test]
fn a_close_right_after_the_chargers_message_is_the_known_reconnect_risk() {
    // The CSMS closes while the charger's Heartbeat awaits its answer.
    let mut r = Rig::plain();
    r.boot(300);
    r.cp_call("h1", "Heartbeat", json!({}));
    r.wait(0.4);
    r.obs(Observation::Disconnected {
        reason: "closed by the CSMS (1000 )".into(),
    });
    let f = r.end();
    let c = one(&f, "close_without_acknowledgement");
    expect(
        c,
        Severity::Warning,
        Area::Connection,
        "CP may not reconnect automatically after CS(MS) sends a specific disconnect event without acknowledging chargers' response within 1 second.",
    );
    assert_eq!(
        c.request.as_ref().unwrap().action.as_deref(),
        Some("Heartbeat")
    );
    let closed = one(&f, "csms_closed_connection");
    expect(
        closed,
        Severity::Info,
        Area::Connection,
        "CP may not reconnect automatically after CS(MS) sends specific disconnect event.",
    );

    // The CSMS asks, the charger answers, the CSMS closes within a second.
    let mut r = Rig::plain();
    r.boot(300);
    r.wait(10.0);
    r.exchange(
        "g1",
        "GetConfiguration",
        json!({}),
        json!({"configurationKey": []}),
    );
    r.wait(0.5);
    r.obs(Observation::Disconnected {
        reason: "connection ended".into(),
    });
    let f = r.end();
    assert_eq!(
        one(&f, "close_without_acknowledgement")
            .request
            .as_ref()
            .unwrap()
            .action
            .as_deref(),
        Some("GetConfiguration")
    );

    // A close long after the last exchange, and the run's own disconnects, are not the risk.
    let mut r = Rig::plain();
    r.boot(300);
    r.wait(10.0);
    r.obs(Observation::Disconnected {
        reason: "closed by the CSMS (1001 )".into(),
    });
    r.wait(5.0);
    r.obs(Observation::Connected);
    r.obs(Observation::Scenario(Mark::PowerCutStarted));
    r.obs(Observation::Disconnected {
        reason: "network lost".into(),
    });
    r.boot(300);
    r.obs(Observation::Scenario(Mark::Finishing));
    r.obs(Observation::Disconnected {
        reason: "connection ended".into(),
    });
    let rules = r.rules();
    assert_eq!(rules, ["csms_closed_connection"]);
    assert_eq!(r.a.stats().disconnections_by_csms, 1);
}

#[test]
fn smart_charging_that_toggles_suspended_often_is_the_known_crash_risk() {
    let mut r = Rig::plain();
    r.boot(300);
    let status = |s: &str| Observation::Status {
        connector_id: 1,
        status: s.into(),
        error_code: "NoError".into(),
    };
    r.obs(status("Charging"));
    // The EV's own pause is not smart charging.
    r.obs(Observation::Scenario(Mark::EvDemand));
    r.obs(status("SuspendedEV"));
    r.wait(60.0);
    r.obs(Observation::Scenario(Mark::EvDemand));
    r.obs(status("Charging"));
    for i in 0..6 {
        r.wait(300.0);
        let limit = if i % 2 == 0 { 0.0 } else { 16.0 };
        let mut p = charging_profile("A", "Absolute", Some("2026-01-01T00:00:00Z"));
        p["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] = json!(limit);
        r.exchange(
            &format!("p{i}"),
            "SetChargingProfile",
            json!({"connectorId": 1, "csChargingProfiles": p}),
            json!({"status": "Accepted"}),
        );
        r.obs(status(if limit == 0.0 {
            "SuspendedEVSE"
        } else {
            "Charging"
        }));
    }
    let f = r.end();
    let s = one(&f, "frequent_suspended_switching");
    expect(
        s,
        Severity::Warning,
        Area::SmartCharging,
        "A rare issue may cause a crash at an hourly synchronization event under specific circumstances. It is believed to only happen when SmartCharging profile requests the CP to change from/to SuspendedEV very often.",
    );
    assert_eq!(s.count, 6);
    assert!(s.title.contains("6 times within an hour"), "{}", s.title);
    assert_eq!(
        s.request.as_ref().unwrap().message_id.as_deref(),
        Some("p3")
    );
}

#[test]
fn values_the_notes_do_not_state_are_assumptions() {
    let mut r = Rig::plain();
    r.boot(300);
    r.exchange(
        "1",
        "GetConfiguration",
        json!({"key": ["ChargeProfileMaxStackLevel", "HeartbeatInterval"]}),
        json!({}),
    );
    let mut p = charging_profile("A", "Absolute", Some("2026-01-01T00:00:00Z"));
    p["stackLevel"] = json!(3);
    p["chargingSchedule"]["chargingSchedulePeriod"] =
        json!([{"startPeriod": 0, "limit": 16.0}, {"startPeriod": 600, "limit": 10.0}]);
    r.exchange(
        "2",
        "SetChargingProfile",
        json!({"connectorId": 1, "csChargingProfiles": p}),
        json!({"status": "Accepted"}),
    );
    p["chargingProfileId"] = json!(2);
    r.exchange(
        "3",
        "SetChargingProfile",
        json!({"connectorId": 1, "csChargingProfiles": p}),
        json!({"status": "Accepted"}),
    );
    let many: Vec<String> = (0..70).map(|i| format!("K{i}")).collect();
    r.exchange("4", "GetConfiguration", json!({"key": many}), json!({}));
    let f = r.end();
    let keys: Vec<(&str, Area)> = f
        .iter()
        .filter(|f| f.rule == "assumed_value")
        .map(|f| (f.subject.as_deref().unwrap(), f.area))
        .collect();
    assert_eq!(
        keys,
        [
            ("ChargeProfileMaxStackLevel", Area::SmartCharging),
            ("ChargingScheduleMaxPeriods", Area::SmartCharging),
            ("MaxChargingProfilesInstalled", Area::SmartCharging),
            ("GetConfigurationMaxKeys", Area::Configuration),
        ]
    );
    let stack = &f[0];
    expect(
        stack,
        Severity::Info,
        Area::SmartCharging,
        "All required operations and configuration keys are supported",
    );
    assert!(stack.title.contains("emulated value 8"), "{}", stack.title);
    assert!(f.iter().all(|f| f.severity == Severity::Info));
}

#[test]
fn an_authorization_key_change_is_reported_without_the_key() {
    let mut r = Rig::plain();
    r.boot(300);
    r.exchange(
        "1",
        "ChangeConfiguration",
        json!({"key": "AuthorizationKey", "value": "00112233445566778899aabbccddeeff"}),
        json!({"status": "Accepted"}),
    );
    let f = r.end();
    let k = one(&f, "authorization_key_changed");
    assert!(!serde_json::to_string(k).unwrap().contains("0011223344"));
}

#[test]
fn a_charger_that_never_connects_gets_the_reason() {
    let cases = [
        (
            "cannot connect to ws://127.0.0.1:1/CP1: IO error: Connection refused (os error 111)",
            ("tcp_refused", None),
            ConnectFailure::TcpRefused,
            "These release notes",
        ),
        (
            "the CSMS at ws://127.0.0.1:9/CP1 refused the connection with HTTP status 401",
            ("http_status", Some(401)),
            ConnectFailure::HttpStatus { status: 401 },
            "SecurityProfile 1 may connect to wss://",
        ),
        (
            "the CSMS at ws://x/CP1 refused the connection with HTTP status 404",
            ("http_status", Some(404)),
            ConnectFailure::HttpStatus { status: 404 },
            "These release notes",
        ),
        (
            "the CSMS at ws://x/CP1 did not agree to subprotocol ocpp1.6",
            ("subprotocol", None),
            ConnectFailure::NoSubprotocol,
            "These release notes",
        ),
        (
            "cannot connect to ws://nowhere.invalid/CP1: IO error: failed to lookup address information: Name or service not known",
            ("dns", None),
            ConnectFailure::Dns,
            "These release notes",
        ),
        (
            "cannot connect to ws://10.255.255.1/CP1: no answer within 10 s",
            ("tcp_timeout", None),
            ConnectFailure::Timeout,
            "These release notes",
        ),
        (
            "cannot connect to wss://x/CP1: TLS error: received corrupt message",
            ("tls", None),
            ConnectFailure::Tls,
            "SecurityProfile 1 may connect to wss://",
        ),
    ];
    for (detail, (stack_kind, status), kind, note) in cases {
        let failure = connect_failure(&json!(stack_kind), &json!(status));
        assert_eq!(failure, kind, "{detail}");
        let mut r = Rig::plain();
        r.obs(Observation::Connecting);
        r.obs(Observation::ConnectFailed {
            failure,
            detail: detail.into(),
        });
        r.wait(30.0);
        let f = r.end();
        let u = one(&f, "csms_unreachable");
        assert_eq!((u.severity, u.area), (Severity::Blocking, Area::Connection));
        assert!(
            u.release_note.text.starts_with(note),
            "{detail}: {}",
            u.release_note.text
        );
        assert!(u.charger.contains(detail));
        assert_eq!(
            f.len(),
            1,
            "nothing else is claimed about a CSMS never reached"
        );
    }
}

#[test]
fn events_are_read_through_their_json_form() {
    let ev = crate::stack::chargepoint::Event::Connection {
        state: crate::stack::chargepoint::ConnectionState::Failed,
        url: None,
        detail: Some("the CSMS at ws://x/A refused the connection with HTTP status 401".into()),
        failure: Some(crate::stack::transport::ConnectFailure::HttpStatus),
        http_status: Some(401),
    };
    assert_eq!(
        Observation::from_event(&ev),
        Some(Observation::ConnectFailed {
            failure: ConnectFailure::HttpStatus { status: 401 },
            detail: "the CSMS at ws://x/A refused the connection with HTTP status 401".into()
        })
    );
    let ev = crate::stack::chargepoint::Event::Message {
        direction: crate::stack::chargepoint::Direction::Received,
        frame: json!([2, "1", "Reset", {"type": "Hard"}]),
    };
    assert_eq!(
        Observation::from_event(&ev),
        Some(Observation::Received(
            json!([2, "1", "Reset", {"type": "Hard"}])
        ))
    );
    assert_eq!(
        Observation::from_event_json(&json!({"type": "something_new", "data": {}})),
        None
    );
    // The kind comes from the event's typed fields, never from the text of the error.
    let read = |data: Value| match Observation::from_event_json(
        &json!({"type": "connection", "data": data}),
    ) {
        Some(Observation::ConnectFailed { failure, .. }) => failure,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        read(
            json!({"state": "failed", "detail": "HTTP status 401 in the text", "failure": "tcp_refused"})
        ),
        ConnectFailure::TcpRefused
    );
    assert_eq!(
        read(json!({"state": "failed", "failure": "handshake_timeout"})),
        ConnectFailure::Timeout
    );
    assert_eq!(
        read(json!({"state": "failed", "failure": "http_status", "http_status": 403})),
        ConnectFailure::HttpStatus { status: 403 }
    );
    assert_eq!(
        read(json!({"state": "failed", "detail": "connection refused"})),
        ConnectFailure::Other,
        "no kind, no guess"
    );
}

#[test]
fn take_new_hands_out_each_finding_once() {
    let mut r = Rig::plain();
    r.boot(300);
    r.exchange(
        "1",
        "Reset",
        json!({"type": "Hard"}),
        json!({"status": "Accepted"}),
    );
    assert_eq!(r.a.take_new().len(), 1);
    r.exchange(
        "2",
        "Reset",
        json!({"type": "Hard"}),
        json!({"status": "Accepted"}),
    );
    assert!(r.a.take_new().is_empty(), "a repeat only counts");
    assert_eq!(r.a.findings()[0].count, 2);
    assert_eq!(r.a.stats().warnings, 1);
}

#[test]
fn a_restart_forgets_the_registration_until_the_next_boot() {
    for mark in [Mark::RebootStarted, Mark::PowerCutStarted] {
        let mut r = Rig::plain();
        r.boot(300);
        assert_eq!(r.a.stats().registration.as_deref(), Some("Accepted"));
        r.obs(Observation::Scenario(mark.clone()));
        assert_eq!(r.a.stats().registration, None, "{mark:?}");
        r.obs(Observation::Disconnected {
            reason: "network lost".into(),
        });
        r.wait(10.0);
        r.boot(300);
        assert_eq!(r.a.stats().registration.as_deref(), Some("Accepted"));
        assert_eq!(r.rules(), Vec::<String>::new(), "{mark:?}");
    }
}

#[test]
fn a_restart_still_under_way_at_the_end_is_not_a_refused_boot() {
    let mut r = Rig::plain();
    r.boot(300);
    r.csms_call("1", "Reset", json!({"type": "Hard"}));
    r.cp_result("1", json!({"status": "Accepted"}));
    r.obs(Observation::Rebooting);
    assert_eq!(r.rules(), ["reset_requested"]);
    // Pending after the restart is still a refusal.
    let mut r = Rig::plain();
    r.boot(300);
    r.obs(Observation::Rebooting);
    r.obs(Observation::Connected);
    r.cp_call("b2", "BootNotification", json!({}));
    r.csms_result(
        "b2",
        json!({"status": "Pending", "currentTime": "2026-01-01T00:00:00Z", "interval": 60}),
    );
    assert_eq!(r.rules(), ["boot_not_accepted"]);
}
