//! Commissioning dry runs against CSMSs on 127.0.0.1 that misbehave in each way the release
//! notes make costly, and against well-behaved ones (the sandbox CSMS, the Python `ocpp` CSMS
//! of the interop tests). Library-level runs use tokio's paused clock, so a scenario of many
//! minutes runs in moments; the real binary runs short scenarios.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod common;
#[path = "common/scripted_csms.rs"]
mod scripted_csms;

use chargectl::csms::{
    AuthorizationStatus, EventKind, IdTagInfo, Policy, RegistrationStatus, SandboxHandle,
    SandboxOptions,
};
use chargectl::dryrun::{
    Area, ConnectFailure, EndedBy, Finding, Plan, Report, Scenario, Severity, Update, Verdict,
};
use chargectl::stack::rpc::ErrorCode;
use scripted_csms::{ScriptedCsms, Upgrade, plain_answer};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const CP: &str = "DRY-1";

fn scenario(text: &str) -> Scenario {
    Scenario::parse("test.toml", text).unwrap_or_else(|e| panic!("{e}"))
}

fn plan(url: Option<String>, scenario: Scenario, dir: &Path) -> Plan {
    Plan {
        csms_url: url,
        charge_point_id: Some(CP.into()),
        profile_name: None,
        profile: Vec::new(),
        expectations: scenario.expectations.clone(),
        scenario,
        duration: None,
        meter_start_wh: None,
        state_dir: dir.join("state"),
    }
}

async fn dry_run(plan: Plan) -> (Report, Vec<Update>) {
    let mut updates = Vec::new();
    let report = chargectl::dryrun::run(plan, |u| updates.push(u), std::future::pending())
        .await
        .expect("the dry run runs");
    (report, updates)
}

/// Runs the dry run while `script` plays the CSMS's part; a panic in the script fails the test.
async fn with_script<F>(plan: Plan, script: F) -> Report
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let task = tokio::spawn(script);
    let (report, _) = dry_run(plan).await;
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("the CSMS script failed: {e}"),
        Err(_) => panic!("the CSMS script was still running when the dry run ended"),
    }
    report
}

async fn sandbox(policy: Policy) -> SandboxHandle {
    common::sandbox(SandboxOptions {
        policy,
        ..SandboxOptions::default()
    })
    .await
}

fn summary(r: &Report) -> Vec<(String, Option<String>, Severity)> {
    r.findings
        .iter()
        .map(|f| (f.rule.clone(), f.subject.clone(), f.severity))
        .collect()
}

fn finding<'a>(r: &'a Report, rule: &str, subject: Option<&str>) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.rule == rule && (subject.is_none() || f.subject.as_deref() == subject))
        .unwrap_or_else(|| panic!("no {rule} {subject:?} in {:#?}", summary(r)))
}

/// Asserts a finding's severity, area and the release-note line it quotes.
fn assert_finding(
    r: &Report,
    rule: &str,
    subject: Option<&str>,
    severity: Severity,
    area: Area,
    note: &str,
) -> Finding {
    let f = finding(r, rule, subject);
    assert_eq!(
        (f.severity, f.area),
        (severity, area),
        "{rule} {subject:?}: {f:#?}"
    );
    assert_eq!(f.release_note.text, note, "{rule} {subject:?}");
    assert!(!f.charger.is_empty() && !f.advice.is_empty());
    f.clone()
}

fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn charging_profile(unit: &str, kind: &str, limit: f64, with_start: bool) -> Value {
    let mut schedule = json!({
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]
    });
    if with_start {
        schedule["startSchedule"] = json!(now_utc());
    }
    let mut p = json!({
        "chargingProfileId": 7,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": kind,
        "chargingSchedule": schedule
    });
    if kind == "Recurring" {
        p["recurrencyKind"] = json!("Daily");
    }
    p
}

// ----- well-behaved CSMSs ------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_sandbox_csms_comes_out_of_the_default_scenario_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (report, updates) = dry_run(plan(None, Scenario::default_scenario(), dir.path())).await;
    assert_eq!(report.counts.blocking, 0, "{:#?}", summary(&report));
    assert_eq!(report.counts.warning, 0, "{:#?}", summary(&report));
    assert_eq!(report.verdict, Verdict::Ok);
    assert!(report.sandbox);
    assert_eq!(report.ended_by, EndedBy::Completed);
    assert_eq!(report.scenario.steps_done, report.scenario.steps);
    assert_eq!(report.connection.registration.as_deref(), Some("Accepted"));
    assert!(
        report.connection.connections >= 2,
        "the outage made the charger reconnect"
    );
    assert_eq!(report.connection.disconnections_by_csms, 0);
    assert!(report.messages.sent >= 12, "{:?}", report.messages);
    // The sandbox does not start sessions remotely; nobody said it must.
    let remote = finding(&report, "no_remote_start", None);
    assert_eq!(remote.severity, Severity::Info);
    let steps: Vec<String> = updates
        .iter()
        .filter_map(|u| match u {
            Update::Step(s) => Some(s.action.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(steps.len(), report.scenario.steps);
    assert!(steps.iter().any(|s| s.starts_with("csms_outage")));
    assert!(updates.iter().any(|u| matches!(u, Update::Progress(_))));
    // Every frame goes to the live trace as it happens, the BootNotification first.
    let frames: Vec<&Value> = updates
        .iter()
        .filter_map(|u| match u {
            Update::Frame(f) => Some(&f.frame),
            _ => None,
        })
        .collect();
    assert_eq!(frames[0][2], "BootNotification", "{:?}", frames[0]);
    assert_eq!(
        frames.len() as u64,
        report.messages.sent + report.messages.received
    );
    let area = |a: Area| {
        report
            .verdicts
            .iter()
            .find(|v| v.area == a)
            .unwrap()
            .verdict
    };
    assert_eq!(area(Area::Transactions), Verdict::Ok);
    assert_eq!(area(Area::Firmware), Verdict::NotExercised);
}

#[tokio::test(start_paused = true)]
async fn an_outage_and_a_power_cut_lose_nothing_and_start_from_the_given_meter_value() {
    let csms = sandbox(Policy::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = plan(
        Some(csms.url()),
        scenario(
            r#"
[[step]]
action = "boot"
[[step]]
action = "plug"
[[step]]
after = "2s"
action = "card"
id_tag = "CARD-1"
[[step]]
after = "30s"
action = "csms_outage"
duration = "45s"
[[step]]
after = "30s"
action = "power_cut"
duration = "20s"
[[step]]
action = "boot"
[[step]]
after = "60s"
action = "unplug"
[[step]]
action = "wait"
duration = "30s"
"#,
        ),
        dir.path(),
    );
    p.meter_start_wh = Some(1_234_000.0);
    let (report, _) = dry_run(p).await;
    assert_eq!(
        (report.counts.blocking, report.counts.warning),
        (0, 0),
        "{:#?}",
        summary(&report)
    );
    assert_eq!(report.scenario.steps_done, 8);
    let starts = csms.calls_from(CP, "StartTransaction");
    let stops = csms.calls_from(CP, "StopTransaction");
    assert_eq!(starts.len(), 1, "one StartTransaction: {starts:#?}");
    assert_eq!(stops.len(), 1, "one StopTransaction: {stops:#?}");
    assert!(starts[0]["meterStart"].as_i64().unwrap() >= 1_234_000);
    // Neither the outage nor the power cut closed the WebSocket cleanly.
    let reasons: Vec<String> = csms
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Disconnected { cp_id, reason } if cp_id == CP => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert!(reasons.len() >= 2, "{reasons:?}");
    for reason in &reasons[..2] {
        assert!(
            !reason.contains("closed by the charge point"),
            "a close frame reached the CSMS: {reasons:?}"
        );
    }
    assert_eq!(report.connection.disconnections_by_csms, 0);
    csms.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_ocpp_csms_gets_no_blocking_finding() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = std::env::var_os("CHARGECTL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "no Python venv with the `ocpp` package at {} (run tests/interop/setup.sh, or set CHARGECTL_VENV)",
        venv.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(&python)
        .arg(root.join("tests/interop/ocpp_csms.py"))
        .args([
            "--port",
            "0",
            "--timeout",
            "40",
            "--interval",
            "300",
            "--scenario",
        ])
        .arg(root.join("tests/fixtures/dry_run/python_csms.json"))
        .arg("--report")
        .arg(dir.path().join("peer.json"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the Python CSMS listens within 20 s")
        .unwrap()
        .expect("a first line");
    let port = serde_json::from_str::<Value>(&first).unwrap()["listening"]
        .as_u64()
        .unwrap();
    let (report, _) = dry_run(plan(
        Some(format!("ws://127.0.0.1:{port}/ocpp")),
        scenario(
            r#"
[[step]]
action = "boot"
timeout = "20s"
[[step]]
after = "1s"
action = "plug"
[[step]]
after = "1s"
action = "card"
[[step]]
action = "ev_demand"
amps = 16
[[step]]
after = "4s"
action = "unplug"
[[step]]
action = "wait"
duration = "3s"
"#,
        ),
        dir.path(),
    ))
    .await;
    let _ = child.kill().await;
    assert_eq!(report.counts.blocking, 0, "{:#?}", summary(&report));
    assert_eq!(report.connection.registration.as_deref(), Some("Accepted"));
    // The peer's scenario changes HeartbeatInterval and reads it back.
    assert!(
        report.messages.received >= 8,
        "the peer answered and called: {:?}",
        report.messages
    );
}

// ----- requests the real charger refuses ---------------------------------------------------

#[tokio::test(start_paused = true)]
async fn every_request_the_real_charger_refuses_is_a_finding_with_its_release_note() {
    let csms = sandbox(Policy::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let s = csms.clone();
    let script = async move {
        common::booted(&s, CP, 0).await;
        let call = |action: &'static str, payload: Value| {
            let s = s.clone();
            async move {
                let _ = s.call(CP, action, payload).await;
            }
        };
        call(
            "SetChargingProfile",
            json!({"connectorId": 1, "csChargingProfiles": charging_profile("W", "Absolute", 11000.0, true)}),
        )
        .await;
        call(
            "SetChargingProfile",
            json!({"connectorId": 0, "csChargingProfiles": charging_profile("A", "Recurring", 16.0, false)}),
        )
        .await;
        for (key, value) in [
            ("BlinkRepeat", "3"),
            ("CpoName", "Example CPO"),
            (
                "MeterValuesSampledData",
                "Energy.Active.Import.Register,Power.Active.Import",
            ),
            ("SecurityProfile", "2"),
            ("ClockAlignedDataInterval", "5000000"),
            ("HeartbeatInterval", "5"),
            ("AuthorizationKey", "00112233445566778899aabbccddeeff"),
        ] {
            call("ChangeConfiguration", json!({"key": key, "value": value})).await;
        }
        call(
            "GetLog",
            json!({"logType": "DiagnosticsLog", "requestId": 1, "log": {"remoteLocation": "https://logs.example.com/up"}}),
        )
        .await;
        call(
            "InstallCertificate",
            json!({"certificateType": "CentralSystemRootCertificate", "certificate": "-----BEGIN CERTIFICATE-----"}),
        )
        .await;
        call(
            "UpdateFirmware",
            json!({"location": "ftp://files.example.com/fw.bin", "retrieveDate": now_utc()}),
        )
        .await;
        call(
            "GetDiagnostics",
            json!({"location": "ftps://files.example.com/diagnostics"}),
        )
        .await;
        let entries: Vec<Value> = (0..300)
            .map(|i| json!({"idTag": format!("TAG{i}"), "idTagInfo": {"status": "Accepted"}}))
            .collect();
        call(
            "SendLocalList",
            json!({"listVersion": 1, "updateType": "Full", "localAuthorizationList": entries}),
        )
        .await;
        call(
            "ChangeConfiguration",
            json!({"key": "FreeCharging", "value": "true"}),
        )
        .await;
        call(
            "ReserveNow",
            json!({"connectorId": 1, "expiryDate": "2030-01-01T12:00:00+02:00", "idTag": "CARD-1", "reservationId": 1}),
        )
        .await;
        call(
            "ReserveNow",
            json!({"connectorId": 0, "expiryDate": "2030-01-01T12:00:00Z", "idTag": "CARD-1", "reservationId": 2}),
        )
        .await;
        call(
            "GetConfiguration",
            json!({"key": ["ChargeProfileMaxStackLevel"]}),
        )
        .await;
        call("Reset", json!({"type": "Soft"})).await;
    };
    let report = with_script(
        plan(
            Some(csms.url()),
            scenario(
                "[[step]]\naction = \"boot\"\n[[step]]\naction = \"wait\"\nduration = \"10m\"\n",
            ),
            dir.path(),
        ),
        script,
    )
    .await;
    csms.shutdown().await;

    assert_finding(
        &report,
        "charging_profile_in_watts",
        None,
        Severity::Blocking,
        Area::SmartCharging,
        "Only 'A' is allowed as ChargingRateUnitType",
    );
    assert_finding(
        &report,
        "recurring_profile_without_start_schedule",
        None,
        Severity::Blocking,
        Area::SmartCharging,
        "startSchedule is required on recurring schedules",
    );
    assert_finding(
        &report,
        "unsupported_configuration_key",
        Some("BlinkRepeat"),
        Severity::Warning,
        Area::Configuration,
        "Configuration for BlinkRepeat is not supported",
    );
    assert_finding(
        &report,
        "unsupported_configuration_key",
        Some("CpoName"),
        Severity::Warning,
        Area::Configuration,
        "Configuration for CpoName is not supported",
    );
    assert_finding(
        &report,
        "unsupported_measurand",
        Some("Power.Active.Import"),
        Severity::Warning,
        Area::Transactions,
        "Only a few measurands are supported: Current.Import, Current.Offered, Energy.Active.Import.Register, Energy.Active.Import.Interval, Temperature, Voltage",
    );
    assert_finding(
        &report,
        "security_profile_above_1",
        None,
        Severity::Blocking,
        Area::Connection,
        "SecurityProfile can only be set to 0 or 1.",
    );
    assert_finding(
        &report,
        "security_whitepaper_operation",
        Some("GetLog"),
        Severity::Warning,
        Area::Diagnostics,
        "GetLog is not supported",
    );
    assert_finding(
        &report,
        "security_whitepaper_operation",
        Some("InstallCertificate"),
        Severity::Warning,
        Area::Connection,
        "InstallCertificate is not supported",
    );
    assert_finding(
        &report,
        "ftp_location",
        Some("UpdateFirmware"),
        Severity::Warning,
        Area::Firmware,
        "FTP(s) is not supported",
    );
    assert_finding(
        &report,
        "ftp_location",
        Some("GetDiagnostics"),
        Severity::Warning,
        Area::Diagnostics,
        "FTP(s) is not supported",
    );
    assert_finding(
        &report,
        "send_local_list_too_large",
        None,
        Severity::Warning,
        Area::Authorization,
        "Authorization list is set to allow 1024 entries and allow 255 entries in a single SendLocalList operation",
    );
    let res = assert_finding(
        &report,
        "reservation_while_free_charging",
        None,
        Severity::Warning,
        Area::Authorization,
        "If Authorization is set to not required, then active reservations will be cancelled and new reservations will be rejected until authorization is set to required.",
    );
    assert_eq!(res.count, 2);
    assert_finding(
        &report,
        "non_utc_timestamp",
        Some("ReserveNow.expiryDate"),
        Severity::Warning,
        Area::Authorization,
        "CP expects CS to use timestamp in UTC",
    );
    assert_finding(
        &report,
        "heartbeat_interval_out_of_range",
        Some("ChangeConfiguration"),
        Severity::Warning,
        Area::Connection,
        "Sampled meter value and heartbeat intervals can be set to any number between 0 and 4294967 It has been tested with short intervals and no issue has been observed with 1 second intervals, but this has not been tested with high load or poor network connectivity. Some measurands are sampled at close to 1 second interval and the meter value may therefore be up to approximately 1 second old when sent with OCPP. We do not recommend short meter value intervals.",
    );
    assert_finding(
        &report,
        "clock_aligned_interval_upper_bound",
        None,
        Severity::Info,
        Area::Transactions,
        "Meter value intervals can be set to any number between 0 and UINT32_T. It has been tested with short intervals and no issue has been observed with 1-second intervals, but this has not been tested with high load or poor network connectivity. Some measurands are sampled at close to 1-second intervals and the meter value may therefore be up to approximately 1 second old when sent with OCPP.",
    );
    assert_finding(
        &report,
        "update_firmware_requested",
        None,
        Severity::Warning,
        Area::Firmware,
        "We do not distribute firmware files; all firmware updates are provided by the Zaptec cloud",
    );
    assert_finding(
        &report,
        "diagnostics_requested",
        None,
        Severity::Warning,
        Area::Diagnostics,
        "DiagnosticsStatus may be incorrect and misleading if diagnostics log has not been enabled by Zaptec on the specific charger.",
    );
    assert_finding(
        &report,
        "reset_requested",
        None,
        Severity::Warning,
        Area::Configuration,
        "A rare issue may cause a reset to fail.",
    );
    assert_finding(
        &report,
        "assumed_value",
        Some("ChargeProfileMaxStackLevel"),
        Severity::Info,
        Area::SmartCharging,
        "All required operations and configuration keys are supported",
    );
    assert_finding(
        &report,
        "assumed_value",
        Some("ReserveConnectorZeroSupported"),
        Severity::Info,
        Area::Authorization,
        "All operations and configuration keys are supported",
    );
    assert_finding(
        &report,
        "authorization_key_changed",
        None,
        Severity::Info,
        Area::Connection,
        "Added configuration key for AuthorizationKey",
    );
    // The request that hit a rule is quoted, secrets redacted.
    let w = finding(&report, "charging_profile_in_watts", None);
    let req = w.request.as_ref().unwrap();
    assert_eq!(req.action.as_deref(), Some("SetChargingProfile"));
    assert_eq!(req.direction, "received");
    assert!(req.message_id.is_some());
    assert!(req.excerpt.contains("\"W\""), "{}", req.excerpt);
    let everything =
        serde_json::to_string(&report).unwrap() + &report.to_markdown() + &report.to_html();
    assert!(
        !everything.contains("0011223344"),
        "the AuthorizationKey leaked"
    );
    assert_eq!(report.verdict, Verdict::Blocking);
}

// ----- CSMS behaviour that hurts in production ----------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_boot_never_accepted_is_blocking() {
    for status in [RegistrationStatus::Pending, RegistrationStatus::Rejected] {
        let csms = sandbox(Policy {
            boot_status: status,
            heartbeat_interval: 60,
            ..Policy::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (report, _) = dry_run(plan(
            Some(csms.url()),
            scenario("[[step]]\naction = \"boot\"\ntimeout = \"2m\"\n[[step]]\naction = \"plug\"\n[[step]]\naction = \"wait\"\nduration = \"3m\"\n"),
            dir.path(),
        ))
        .await;
        csms.shutdown().await;
        let f = assert_finding(
            &report,
            "boot_not_accepted",
            None,
            Severity::Blocking,
            Area::Connection,
            "Some optional parameters for BootNotification.req (meterSerialNumber, meterType) is not sent and others (iccid, imsi) may only be sent when LTE has been used prior to bootnotification and after last reset",
        );
        assert!(f.title.contains(status.as_str()), "{}", f.title);
        assert_eq!(
            report.ended_by,
            EndedBy::Completed,
            "connected, so the run goes on"
        );
        assert_eq!(report.counts.blocking, 1, "{:#?}", summary(&report));
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeat_intervals_out_of_range_and_unanswered_calls() {
    let mut policy = Policy {
        heartbeat_interval: 10,
        ..Policy::default()
    };
    policy.unanswered.insert("Heartbeat".into());
    let csms = sandbox(policy).await;
    let dir = tempfile::tempdir().unwrap();
    let (report, _) = dry_run(plan(
        Some(csms.url()),
        scenario("[[step]]\naction = \"boot\"\n[[step]]\naction = \"wait\"\nduration = \"5m\"\n"),
        dir.path(),
    ))
    .await;
    csms.shutdown().await;
    let hb = assert_finding(
        &report,
        "heartbeat_interval_out_of_range",
        Some("BootNotification"),
        Severity::Warning,
        Area::Connection,
        "Sampled meter value and heartbeat intervals can be set to any number between 0 and 4294967 It has been tested with short intervals and no issue has been observed with 1 second intervals, but this has not been tested with high load or poor network connectivity. Some measurands are sampled at close to 1 second interval and the meter value may therefore be up to approximately 1 second old when sent with OCPP. We do not recommend short meter value intervals.",
    );
    assert!(hb.title.contains("10 s"));
    let late = assert_finding(
        &report,
        "unanswered_call",
        Some("Heartbeat"),
        Severity::Warning,
        Area::Connection,
        "Configuration key MessageTimeout specified in errata v4.0 is supported",
    );
    assert!(
        late.count >= 2,
        "every unanswered heartbeat counts: {late:#?}"
    );
    assert_eq!(late.request.as_ref().unwrap().direction, "sent");
}

#[tokio::test(start_paused = true)]
async fn transaction_errors_and_a_refused_expected_card_are_blocking() {
    let mut policy = Policy::default();
    policy.id_tags.insert(
        "CARD-1".into(),
        IdTagInfo::with_status(AuthorizationStatus::Invalid),
    );
    policy.call_errors.insert(
        "StartTransaction".into(),
        (ErrorCode::InternalError, "database down".into()),
    );
    let csms = sandbox(policy).await;
    let dir = tempfile::tempdir().unwrap();
    let (report, _) = dry_run(plan(
        Some(csms.url()),
        scenario(
            r#"
[commissioning]
accepted_id_tags = ["CARD-1", "CARD-2"]

[[step]]
action = "boot"
[[step]]
action = "plug"
[[step]]
after = "2s"
action = "card"
id_tag = "CARD-1"
[[step]]
after = "5s"
action = "card"
id_tag = "CARD-2"
[[step]]
action = "wait"
duration = "2m"
"#,
        ),
        dir.path(),
    ))
    .await;
    csms.shutdown().await;
    let card = assert_finding(
        &report,
        "id_tag_not_accepted",
        Some("CARD-1"),
        Severity::Blocking,
        Area::Authorization,
        "Authorization cache is supported",
    );
    assert!(card.title.contains("Invalid"));
    let tx = assert_finding(
        &report,
        "transaction_message_error",
        Some("StartTransaction"),
        Severity::Blocking,
        Area::Transactions,
        "Transaction related messages are prioritised if they can be sent, even if they were queued when offline. This may cause other messages to be delayed after a re-connect with many queued transaction related messages.",
    );
    assert!(tx.title.contains("InternalError"));
    assert_eq!(report.verdict, Verdict::Blocking);
}

#[tokio::test(start_paused = true)]
async fn a_remote_start_is_blocking_only_when_expected_and_missing() {
    let text = r#"
[commissioning]
remote_start = true

[[step]]
action = "boot"
[[step]]
action = "plug"
[[step]]
action = "wait_remote_start"
timeout = "60s"
[[step]]
action = "wait"
duration = "30s"
"#;
    // Missing.
    let csms = sandbox(Policy::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (report, _) = dry_run(plan(Some(csms.url()), scenario(text), dir.path())).await;
    csms.shutdown().await;
    assert_finding(
        &report,
        "no_remote_start",
        None,
        Severity::Blocking,
        Area::Transactions,
        "Added configuration key “FreeCharging”\u{a0} to allow charging without presenting RFID-Token or remoteStartTransaction.",
    );

    // Sent by the CSMS once the EV is plugged in: no finding, and the session starts.
    let csms = sandbox(Policy::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let s = csms.clone();
    let report = with_script(
        plan(Some(csms.url()), scenario(text), dir.path()),
        async move {
            common::wait_call_from(&s, CP, "StatusNotification", 0, |p| {
                p["status"] == "Preparing"
            })
            .await;
            s.call(
                CP,
                "RemoteStartTransaction",
                json!({"connectorId": 1, "idTag": "APP-1"}),
            )
            .await
            .unwrap();
        },
    )
    .await;
    assert!(
        report.findings.iter().all(|f| f.rule != "no_remote_start"),
        "{:#?}",
        summary(&report)
    );
    assert_eq!(report.counts.blocking, 0, "{:#?}", summary(&report));
    assert_eq!(csms.calls_from(CP, "StartTransaction").len(), 1);
    csms.shutdown().await;

    // Sent while the step before the wait still ran: it counts too.
    let early = text.replace(
        "action = \"wait_remote_start\"",
        "after = \"30s\"\naction = \"wait_remote_start\"",
    );
    let csms = sandbox(Policy::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let s = csms.clone();
    let report = with_script(
        plan(Some(csms.url()), scenario(&early), dir.path()),
        async move {
            common::wait_call_from(&s, CP, "StatusNotification", 0, |p| {
                p["status"] == "Preparing"
            })
            .await;
            s.call(
                CP,
                "RemoteStartTransaction",
                json!({"connectorId": 1, "idTag": "APP-1"}),
            )
            .await
            .unwrap();
        },
    )
    .await;
    csms.shutdown().await;
    assert_eq!(report.counts.blocking, 0, "{:#?}", summary(&report));
}

#[tokio::test(start_paused = true)]
async fn timestamps_in_answers_that_are_not_utc_are_found() {
    let answer: Arc<scripted_csms::Answer> = Arc::new(
        |action: &str, payload: &Value| match action {
            "BootNotification" => Some(
                json!({"status": "Accepted", "currentTime": "2026-03-01T13:00:00+01:00", "interval": 300}),
            ),
            "Authorize" => Some(
                json!({"idTagInfo": {"status": "Accepted", "expiryDate": "2026-12-31T23:59:59"}}),
            ),
            _ => plain_answer(action, payload),
        },
    );
    let csms = ScriptedCsms::start(Upgrade::Ocpp16, answer).await;
    let dir = tempfile::tempdir().unwrap();
    let (report, _) = dry_run(plan(
        Some(csms.url()),
        scenario("[[step]]\naction = \"boot\"\n[[step]]\naction = \"card\"\nid_tag = \"CARD-9\"\n[[step]]\naction = \"wait\"\nduration = \"30s\"\n"),
        dir.path(),
    ))
    .await;
    let boot = assert_finding(
        &report,
        "non_utc_timestamp",
        Some("BootNotification.currentTime"),
        Severity::Warning,
        Area::Connection,
        "CP expects CS to use timestamp in UTC",
    );
    assert_eq!(
        boot.detail.as_deref(),
        Some("value 2026-03-01T13:00:00+01:00")
    );
    assert_finding(
        &report,
        "non_utc_timestamp",
        Some("Authorize.expiryDate"),
        Severity::Warning,
        Area::Authorization,
        "CP expects CS to use timestamp in UTC",
    );
}

// ----- known-issue risks ---------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_close_without_acknowledging_the_chargers_message_is_the_reconnect_risk() {
    let mut policy = Policy {
        heartbeat_interval: 60,
        ..Policy::default()
    };
    policy.unanswered.insert("Heartbeat".into());
    let csms = sandbox(policy).await;
    let dir = tempfile::tempdir().unwrap();
    let s = csms.clone();
    let report = with_script(
        plan(
            Some(csms.url()),
            scenario(
                "[[step]]\naction = \"boot\"\n[[step]]\naction = \"wait\"\nduration = \"3m\"\n",
            ),
            dir.path(),
        ),
        async move {
            s.wait_for_call(CP, "Heartbeat", common::WAIT)
                .await
                .unwrap();
            assert!(s.disconnect(CP).await);
        },
    )
    .await;
    csms.shutdown().await;
    let f = assert_finding(
        &report,
        "close_without_acknowledgement",
        None,
        Severity::Warning,
        Area::Connection,
        "CP may not reconnect automatically after CS(MS) sends a specific disconnect event without acknowledging chargers' response within 1 second.",
    );
    assert_eq!(
        f.request.as_ref().unwrap().action.as_deref(),
        Some("Heartbeat")
    );
    assert_finding(
        &report,
        "csms_closed_connection",
        None,
        Severity::Info,
        Area::Connection,
        "CP may not reconnect automatically after CS(MS) sends specific disconnect event.",
    );
    assert_eq!(report.connection.disconnections_by_csms, 1);
}

#[tokio::test(start_paused = true)]
async fn smart_charging_that_toggles_suspended_often_is_the_crash_risk() {
    let csms = sandbox(Policy::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let s = csms.clone();
    let report = with_script(
        plan(
            Some(csms.url()),
            scenario(
                r#"
[[step]]
action = "boot"
[[step]]
action = "plug"
[[step]]
after = "1s"
action = "card"
[[step]]
action = "ev_demand"
amps = 16
[[step]]
action = "wait"
duration = "50m"
"#,
            ),
            dir.path(),
        ),
        async move {
            common::wait_call_from(&s, CP, "StatusNotification", 0, |p| p["status"] == "Charging").await;
            for i in 0..8 {
                tokio::time::sleep(Duration::from_secs(240)).await;
                let limit = if i % 2 == 0 { 0.0 } else { 16.0 };
                s.call(
                    CP,
                    "SetChargingProfile",
                    json!({"connectorId": 1, "csChargingProfiles": charging_profile("A", "Absolute", limit, true)}),
                )
                .await
                .unwrap();
            }
        },
    )
    .await;
    csms.shutdown().await;
    let f = assert_finding(
        &report,
        "frequent_suspended_switching",
        None,
        Severity::Warning,
        Area::SmartCharging,
        "A rare issue may cause a crash at an hourly synchronization event under specific circumstances. It is believed to only happen when SmartCharging profile requests the CP to change from/to SuspendedEV very often.",
    );
    assert!(f.count >= 8, "{f:#?}");
    assert_eq!(
        f.request.as_ref().unwrap().action.as_deref(),
        Some("SetChargingProfile")
    );
}

// ----- the CSMS cannot be reached -------------------------------------------------------------

const BOOT_BRIEFLY: &str = "[[step]]\naction = \"boot\"\ntimeout = \"5s\"\n[[step]]\naction = \"wait\"\nduration = \"10m\"\n";

async fn unreachable(url: String) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let (report, _) = dry_run(plan(Some(url), scenario(BOOT_BRIEFLY), dir.path())).await;
    assert_eq!(report.ended_by, EndedBy::Unreachable, "{report:#?}");
    assert!(
        report.duration_s < 60.0,
        "the run stops after the boot step"
    );
    assert!(!report.connection.connected);
    assert_eq!(
        summary(&report),
        [("csms_unreachable".to_string(), None, Severity::Blocking)]
    );
    report
}

#[tokio::test(start_paused = true)]
async fn a_csms_that_cannot_be_reached_names_the_reason() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = unreachable(format!("ws://127.0.0.1:{port}/ocpp")).await;
    assert_eq!(r.connection.failure, Some(ConnectFailure::TcpRefused));

    let csms = common::sandbox(SandboxOptions {
        require_basic_auth: true,
        ..SandboxOptions::default()
    })
    .await;
    let r = unreachable(csms.url()).await;
    assert_eq!(
        r.connection.failure,
        Some(ConnectFailure::HttpStatus { status: 401 })
    );
    assert!(
        r.findings[0]
            .release_note
            .text
            .starts_with("SecurityProfile 1 may connect to wss://")
    );
    csms.shutdown().await;

    let not_found = ScriptedCsms::start(Upgrade::Refuse(404), Arc::new(plain_answer)).await;
    let r = unreachable(not_found.url()).await;
    assert_eq!(
        r.connection.failure,
        Some(ConnectFailure::HttpStatus { status: 404 })
    );
    assert!(
        r.findings[0].advice.contains("path"),
        "{}",
        r.findings[0].advice
    );

    let no_protocol = ScriptedCsms::start(Upgrade::NoSubprotocol, Arc::new(plain_answer)).await;
    let r = unreachable(no_protocol.url()).await;
    assert_eq!(r.connection.failure, Some(ConnectFailure::NoSubprotocol));
}

// ----- the real binary -----------------------------------------------------------------------

const SHORT: &str = r#"
[commissioning]
accepted_id_tags = ["CARD-1"]
remote_start = false

[[step]]
action = "boot"
timeout = "20s"
[[step]]
action = "plug"
[[step]]
after = "1s"
action = "card"
[[step]]
action = "wait"
duration = "2s"
"#;

struct Bin {
    dir: tempfile::TempDir,
}

impl Bin {
    fn new() -> Bin {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("short.toml"), SHORT).unwrap();
        Bin { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn run(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_chargectl"));
        cmd.arg("dry-run")
            .args(args)
            .current_dir(self.dir.path())
            .env("CHARGECTL_CONFIG_DIR", self.path("config"))
            .env("CHARGECTL_DATA_DIR", self.path("data"))
            .env_remove("CHARGECTL_AUTHORIZATION_KEY")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        tokio::time::timeout(Duration::from_secs(90), cmd.output())
            .await
            .expect("the dry run ends by itself")
            .expect("chargectl runs")
    }
}

/// A small HTML checker: every tag is closed in order (void elements aside), no scripts,
/// no external references, and "http" only in the text of findings.
fn check_html(html: &str) {
    const VOID: [&str; 5] = ["meta", "br", "hr", "img", "input"];
    assert!(html.starts_with("<!DOCTYPE html>"));
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    let mut in_finding = 0usize;
    let mut text_outside = String::new();
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        if in_finding == 0 {
            text_outside.push_str(text);
        }
        let close = rest[open..].find('>').expect("a tag ends") + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        assert!(!tag.contains('<'), "a tag inside a tag: {tag}");
        let lower = tag.to_ascii_lowercase();
        for forbidden in ["http", "src=", "href=", "url(", "@import", "javascript"] {
            assert!(!lower.contains(forbidden), "external reference in <{tag}>");
        }
        if tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack
                .pop()
                .unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(top, name, "</{name}> closes <{top}>");
            if name == "section" {
                in_finding -= 1;
            }
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        assert!(
            name != "script" && name != "link" && name != "iframe",
            "<{name}>"
        );
        if name == "style" {
            let end = rest.find("</style>").expect("style ends");
            let css = &rest[..end];
            for forbidden in ["http", "url(", "@import", "@font-face"] {
                assert!(
                    !css.contains(forbidden),
                    "external reference in the style sheet"
                );
            }
        }
        if !VOID.contains(&name.as_str()) {
            if name == "section" {
                in_finding += 1;
            }
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert!(
        !text_outside.contains("http"),
        "http outside the findings: {text_outside}"
    );
}

/// The JSON shape: objects keep their keys, arrays the shape of their first item, scalars
/// their type.
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(items) => json!([items.first().map_or(json!("empty"), shape)]),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_against_the_sandbox_exits_0_with_three_reports_and_json_lines() {
    let bin = Bin::new();
    let out = bin
        .run(&[
            "--id",
            "BIN-1",
            "--scenario",
            "short.toml",
            "--duration",
            "4",
            "--report",
            "r.md",
            "--report",
            "r.html",
            "--report",
            "r.json",
            "--json",
        ])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"progress"), "{types:?}");
    assert_eq!(types.iter().filter(|t| **t == "step").count(), 4);
    assert_eq!(types.last(), Some(&"report"));
    let report = &lines.last().unwrap()["data"];
    assert_eq!(report["verdict"], "ok");
    assert_eq!(report["sandbox"], true);
    assert_eq!(report["charge_point_id"], "BIN-1");
    assert!(report["duration_s"].as_f64().unwrap() >= 4.0);
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(bin.path("r.json")).unwrap()).unwrap();
    assert_eq!(file["format_version"], 1);
    assert_eq!(file["charge_point_id"], "BIN-1");
    let md = std::fs::read_to_string(bin.path("r.md")).unwrap();
    assert!(md.starts_with("# Commissioning dry run: BIN-1"), "{md}");
    assert!(md.contains("READY"));
    check_html(&std::fs::read_to_string(bin.path("r.html")).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_findings_exit_7_and_the_json_report_keeps_its_shape() {
    let mut policy = Policy::default();
    policy.call_errors.insert(
        "StartTransaction".into(),
        (
            ErrorCode::InternalError,
            "no <script> here & \"http://x\"".into(),
        ),
    );
    let csms = sandbox(policy).await;
    let bin = Bin::new();
    let out = bin
        .run(&[
            "--csms",
            &csms.url(),
            "--id",
            "BIN-7",
            "--scenario",
            "short.toml",
            "--report",
            "r.json",
            "--report",
            "r.html",
            "--report",
            "r.md",
        ])
        .await;
    csms.shutdown().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "stderr: {stderr}");
    assert!(stderr.contains("NOT READY"), "{stderr}");
    assert!(
        stderr.contains("StartTransaction answered with CALLERROR InternalError"),
        "{stderr}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(bin.path("r.json")).unwrap()).unwrap();
    let expected = json!({
        "format_version": "number",
        "tool": {"name": "string", "version": "string"},
        "charge_point_id": "string",
        "csms_url": "string",
        "sandbox": "bool",
        "profile": "null",
        "scenario": {"name": "string", "source": "string", "steps": "number", "steps_done": "number"},
        "expectations": {"accepted_id_tags": ["string"], "remote_start": "bool"},
        "started_at": "string",
        "duration_s": "number",
        "ended_by": "string",
        "connection": {
            "connected": "bool", "connections": "number", "disconnections_by_csms": "number",
            "registration": "string", "failure": "null", "failure_detail": "null"
        },
        "messages": {"sent": "number", "received": "number"},
        "counts": {"blocking": "number", "warning": "number", "info": "number"},
        "findings": [{
            "rule": "string", "subject": "string", "severity": "string", "area": "string",
            "title": "string", "count": "number",
            "request": {
                "elapsed_s": "number", "time": "string", "message_id": "string",
                "action": "string", "direction": "string", "excerpt": "string"
            },
            "detail": "null", "charger": "string",
            "release_note": {"line": "number", "text": "string"},
            "advice": "string"
        }],
        "verdicts": [{"area": "string", "verdict": "string", "summary": "string"}],
        "verdict": "string"
    });
    assert_eq!(shape(&report), expected, "{report:#}");
    assert_eq!(report["findings"][0]["rule"], "transaction_message_error");
    assert_eq!(report["findings"][0]["release_note"]["line"], 55);
    assert_eq!(report["verdicts"].as_array().unwrap().len(), 7);
    let html = std::fs::read_to_string(bin.path("r.html")).unwrap();
    check_html(&html);
    assert!(html.contains("StartTransaction"));
    let md = std::fs::read_to_string(bin.path("r.md")).unwrap();
    assert!(md.contains("## Blocking (1)"), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_csms_exits_3_with_the_reason() {
    let bin = Bin::new();
    std::fs::write(
        bin.path("brief.toml"),
        "[[step]]\naction = \"boot\"\ntimeout = \"3s\"\n[[step]]\naction = \"wait\"\nduration = \"60s\"\n",
    )
    .unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("ws://127.0.0.1:{port}");
    let out = bin
        .run(&[
            "--csms",
            &url,
            "--scenario",
            "brief.toml",
            "--report",
            "u.json",
            "--json",
        ])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("TCP refused"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "error");
    assert_eq!(last["data"]["kind"], "unreachable");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(bin.path("u.json")).unwrap()).unwrap();
    assert_eq!(report["ended_by"], "unreachable");
    assert_eq!(report["connection"]["failure"]["kind"], "tcp_refused");

    let csms = common::sandbox(SandboxOptions {
        require_basic_auth: true,
        ..SandboxOptions::default()
    })
    .await;
    let out = bin
        .run(&["--csms", &csms.url(), "--scenario", "brief.toml"])
        .await;
    csms.shutdown().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("HTTP status 401"), "{stderr}");
}

#[tokio::test]
async fn bad_scenarios_and_report_names_fail_before_the_run() {
    let bin = Bin::new();
    std::fs::write(
        bin.path("bad.toml"),
        "[[step]]\naction = \"boot\"\n\n[[step]]\naction = \"fly\"\n",
    )
    .unwrap();
    let out = bin.run(&["--scenario", "bad.toml"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("bad.toml:5:10: unknown action \"fly\""),
        "{stderr}"
    );
    let out = bin.run(&["--report", "report.pdf"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(".md, .html or .json"), "{stderr}");
    assert!(!bin.path("report.pdf").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_ends_the_run_early_and_the_report_is_still_written() {
    let bin = Bin::new();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chargectl"))
        .args([
            "dry-run", "--id", "BIN-INT", "--report", "r.json", "--report", "r.md", "--json",
        ])
        .current_dir(bin.dir.path())
        .env("CHARGECTL_CONFIG_DIR", bin.path("config"))
        .env("CHARGECTL_DATA_DIR", bin.path("data"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("chargectl runs");
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Once the charger is registered (the default scenario's first step is over), interrupt.
    let registered = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["type"] == "step" && v["data"]["index"] == 2 {
                return;
            }
        }
        panic!("chargectl ended before its second step");
    };
    tokio::time::timeout(Duration::from_secs(60), registered)
        .await
        .expect("the first step ends within 60 s");
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("chargectl stops within 30 s of Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(130));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(bin.path("r.json")).unwrap()).unwrap();
    assert_eq!(report["ended_by"], "interrupted");
    assert_eq!(report["connection"]["registration"], "Accepted");
    assert!(
        report["scenario"]["steps_done"].as_u64().unwrap()
            < report["scenario"]["steps"].as_u64().unwrap()
    );
    assert!(
        std::fs::read_to_string(bin.path("r.md"))
            .unwrap()
            .contains("interrupted")
    );
}

/// Starts `chargectl dry-run ARGS` on a pseudo-terminal; the receiver gets everything it
/// printed once the verdict is out (or the terminal closed).
fn dry_run_on_a_pty(
    bin: &Bin,
    args: &[&str],
) -> (
    Box<dyn portable_pty::Child + Send + Sync>,
    std::sync::mpsc::Receiver<Vec<u8>>,
) {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    use std::io::Read;
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 40,
            cols: 200,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("openpty");
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_chargectl"));
    cmd.arg("dry-run");
    cmd.args(args);
    cmd.env("CHARGECTL_DATA_DIR", bin.path("data"));
    cmd.env("CHARGECTL_CONFIG_DIR", bin.path("config"));
    cmd.env("NO_COLOR", "1");
    cmd.env_remove("CHARGECTL_LOG");
    cmd.cwd(bin.dir.path());
    let child = pair.slave.spawn_command(cmd).expect("spawn chargectl");
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().expect("pty reader");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _master = pair.master;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&out).contains("READY") {
                // The verdict is out; give the last lines a moment, then stop reading.
                std::thread::sleep(Duration::from_millis(300));
                if let Ok(n) = reader.read(&mut buf) {
                    out.extend_from_slice(&buf[..n]);
                }
                break;
            }
        }
        let _ = tx.send(out);
    });
    (child, rx)
}

#[test]
fn on_a_terminal_a_status_line_is_redrawn_and_the_verdict_stays() {
    let bin = Bin::new();
    let (mut child, rx) = dry_run_on_a_pty(
        &bin,
        &[
            "--id",
            "PTY-1",
            "--scenario",
            "short.toml",
            "--duration",
            "3",
        ],
    );
    let out = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the dry run ends within 60 s");
    let status = child.wait().expect("chargectl exits");
    assert!(status.success(), "{status:?}");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("\r\x1b[2K[00:0"),
        "no redrawn status line: {text:?}"
    );
    assert!(text.contains("connected · Accepted ·"), "{text:?}");
    assert!(
        text.contains("messages · 0 blocking, 0 warnings, 0 info"),
        "{text:?}"
    );
    assert!(text.contains("READY: nothing blocking"), "{text:?}");
    assert!(text.contains("Connection: ok"), "{text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_chargectls_own_warnings_go_to_the_log_file_not_between_the_lines() {
    let csms = sandbox(Policy::default()).await;
    let bin = Bin::new();
    let url = csms.url();
    let (mut child, rx) = dry_run_on_a_pty(
        &bin,
        &[
            "--csms",
            &url,
            "--id",
            "PTY-2",
            "--scenario",
            "short.toml",
            "--duration",
            "4",
        ],
    );
    common::booted(&csms, "PTY-2", 0).await;
    // Refused by the charger: the stack logs a warning of its own as it answers Rejected.
    let answer = csms
        .call(
            "PTY-2",
            "SetChargingProfile",
            json!({"connectorId": 1, "csChargingProfiles": charging_profile("W", "Absolute", 11000.0, true)}),
        )
        .await
        .expect("answered");
    assert_eq!(answer["status"], "Rejected");
    let out = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("the dry run ends within 60 s");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .expect("chargectl exits");
    assert_eq!(status.exit_code(), 7, "a profile in W is blocking");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains(
            "BLOCKING Smart charging: SetChargingProfile carries a charging profile in W"
        ),
        "{text:?}"
    );
    assert!(
        !text.contains("WARN") && !text.contains("SetChargingProfile rejected"),
        "a tracing line reached the terminal: {text:?}"
    );
    let mut logged = String::new();
    for entry in std::fs::read_dir(bin.path("data").join("log")).expect("a log directory") {
        logged.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    assert!(
        logged.contains("SetChargingProfile rejected"),
        "the warning is in the log file: {logged:?}"
    );
    csms.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_configures_the_charger_and_says_what_the_site_expects() {
    let mut policy = Policy::default();
    policy.id_tags.insert(
        "CARD-7".into(),
        IdTagInfo::with_status(AuthorizationStatus::Blocked),
    );
    let csms = sandbox(policy).await;
    let bin = Bin::new();
    std::fs::write(
        bin.path("site-b.toml"),
        format!(
            r#"name = "site-b"
[variables]
CHARGE_POINT_ID = {{ description = "Charge point id" }}
[ocpp]
csms_url = "{}/ocpp"
charge_point_id = "${{CHARGE_POINT_ID}}"
[config]
MeterValueSampleInterval = 120
[commissioning]
accepted_id_tags = ["CARD-7"]
"#,
            csms.url()
        ),
    )
    .unwrap();
    std::fs::write(
        bin.path("card.toml"),
        "[[step]]\naction = \"boot\"\ntimeout = \"20s\"\n[[step]]\naction = \"plug\"\n[[step]]\naction = \"card\"\n[[step]]\naction = \"wait\"\nduration = \"2s\"\n",
    )
    .unwrap();
    let out = bin
        .run(&[
            "--profile",
            "site-b.toml",
            "--set",
            "CHARGE_POINT_ID=SITE-B-1",
            "--scenario",
            "card.toml",
            "--report",
            "b.json",
        ])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(bin.path("b.json")).unwrap()).unwrap();
    assert_eq!(report["profile"], "site-b");
    assert_eq!(report["charge_point_id"], "SITE-B-1");
    assert_eq!(
        report["expectations"]["accepted_id_tags"],
        json!(["CARD-7"])
    );
    let f = &report["findings"][0];
    assert_eq!(
        (&f["rule"], &f["subject"], &f["severity"]),
        (
            &json!("id_tag_not_accepted"),
            &json!("CARD-7"),
            &json!("blocking")
        )
    );
    assert!(!csms.calls_from("SITE-B-1", "Authorize").is_empty());

    // A value the charger refuses fails like provision would, before any connection.
    std::fs::write(
        bin.path("bad-value.toml"),
        "[config]\nHeartbeatInterval = \"soon\"\n",
    )
    .unwrap();
    let out = bin
        .run(&["--profile", "bad-value.toml", "--scenario", "card.toml"])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("HeartbeatInterval"), "{stderr}");
    csms.shutdown().await;
}
