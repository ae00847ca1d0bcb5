//! Charge point scenarios over real WebSockets on 127.0.0.1: the emulated charger against the
//! sandbox CSMS (or a raw server sending crafted frames), asserting the frames on the wire.
//! Timing scenarios run on tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod common;

use base64::Engine as _;
use chargectl::csms::{BasicAuthSeen, EventKind, Policy, RegistrationStatus, SandboxOptions};
use chargectl::emulator::{BootSettings, Emulator};
use chargectl::stack::chargepoint::{ConnectionState, Event};
use chargectl::stack::hardware::HwEvent;
use chargectl::stack::secret::Secret;
use common::rawcsms::{Handshake, RawCsms};
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

fn policy(boot_status: RegistrationStatus, interval: u32) -> SandboxOptions {
    SandboxOptions {
        policy: Policy {
            boot_status,
            heartbeat_interval: interval,
            ..Policy::default()
        },
        ..SandboxOptions::default()
    }
}

fn secs_between(a: Instant, b: Instant) -> f64 {
    b.duration_since(a).as_secs_f64()
}

fn assert_within(what: &str, got: f64, low: f64, high: f64) {
    assert!(
        (low..=high).contains(&got),
        "{what}: {got:.3} s, expected {low} to {high} s"
    );
}

/// Seconds from the OCPP timestamp `a` to `b`.
fn stamp_secs(a: &Value, b: &Value) -> f64 {
    let parse = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a timestamp string"))
            .expect("an RFC 3339 timestamp")
    };
    (parse(b) - parse(a)).num_milliseconds() as f64 / 1000.0
}

fn actions(calls: &[(String, Value)]) -> Vec<&str> {
    calls.iter().map(|(a, _)| a.as_str()).collect()
}

// ----- 1. boot, status, heartbeat ---------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn boot_accepted_reports_both_connectors_then_heartbeats_every_interval() {
    let csms = sandbox(policy(RegistrationStatus::Accepted, 60)).await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path(), &csms.url(), "CP1").await;
    let c = booted(&csms, "CP1", 0).await;
    let t0 = Instant::now();
    let (_, c1) = wait_call_from(&csms, "CP1", "Heartbeat", c, |_| true).await;
    let t1 = Instant::now();
    let (_, _) = wait_call_from(&csms, "CP1", "Heartbeat", c1, |_| true).await;
    let t2 = Instant::now();
    assert_within("boot to first heartbeat", secs_between(t0, t1), 59.0, 61.0);
    assert_within("heartbeat to heartbeat", secs_between(t1, t2), 59.5, 60.5);

    let wire = wire_from(&csms, "CP1", 0);
    assert_eq!(
        wire[..10],
        [
            "cp Call BootNotification",
            "cs Result BootNotification",
            "cp Call StatusNotification",
            "cs Result StatusNotification",
            "cp Call StatusNotification",
            "cs Result StatusNotification",
            "cp Call Heartbeat",
            "cs Result Heartbeat",
            "cp Call Heartbeat",
            "cs Result Heartbeat",
        ]
    );
    let calls = cp_calls_from(&csms, "CP1", 0);
    let boot = &calls[0].1;
    assert_eq!(boot["chargePointVendor"], "Zaptec");
    assert_eq!(boot["chargePointModel"], "Go");
    assert!(boot["chargePointSerialNumber"].is_string());
    for (i, connector) in [(1, 0), (2, 1)] {
        let status = &calls[i].1;
        assert_eq!(status["connectorId"], connector);
        assert_eq!(status["status"], "Available");
        assert_eq!(status["errorCode"], "NoError");
        assert!(
            status["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
    }
    assert_eq!(calls[3].1, json!({}));
    // The interval from BootNotification.conf replaced the default of 86400.
    assert_eq!(
        get_key(&csms, "CP1", "HeartbeatInterval").await.as_deref(),
        Some("60")
    );
    // A new HeartbeatInterval applies from the change on.
    let c = csms.cursor();
    assert_eq!(
        change_key(&csms, "CP1", "HeartbeatInterval", "15").await,
        "Accepted"
    );
    let changed = Instant::now();
    let (_, c) = wait_call_from(&csms, "CP1", "Heartbeat", c, |_| true).await;
    let t3 = Instant::now();
    wait_call_from(&csms, "CP1", "Heartbeat", c, |_| true).await;
    assert_within("after the change", secs_between(changed, t3), 14.5, 15.5);
    assert_within("new interval", secs_between(t3, Instant::now()), 14.5, 15.5);
    assert_one_call_in_flight(&csms, "CP1");
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

// ----- 2. Pending and Rejected ------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn boot_pending_is_retried_after_the_interval_and_csms_calls_are_answered_meanwhile() {
    let csms = sandbox(policy(RegistrationStatus::Pending, 20)).await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path(), &csms.url(), "CPP").await;
    let (_, c) = wait_call_from(&csms, "CPP", "BootNotification", 0, |_| true).await;
    let t0 = Instant::now();
    // While Pending the charger answers the CSMS, but sends nothing of its own.
    let answer = csms
        .call(
            "CPP",
            "GetConfiguration",
            json!({"key": ["MessageTimeout"]}),
        )
        .await
        .expect("answered while Pending");
    assert_eq!(answer["configurationKey"][0]["value"], "30");
    emu.act(HwEvent::Plug).await;
    csms.update_policy(|p| p.boot_status = RegistrationStatus::Accepted);
    let (_, c2) = wait_call_from(&csms, "CPP", "BootNotification", c, |_| true).await;
    assert_within(
        "Pending retry",
        secs_between(t0, Instant::now()),
        20.0,
        21.0,
    );
    assert_eq!(
        actions(&cp_calls_from(&csms, "CPP", 0)[..2]),
        ["BootNotification", "BootNotification"]
    );
    let wire = wire_from(&csms, "CPP", 0);
    assert_eq!(
        wire[..6],
        [
            "cp Call BootNotification",
            "cs Result BootNotification",
            "cs Call GetConfiguration",
            "cp Result GetConfiguration",
            "cp Call BootNotification",
            "cs Result BootNotification",
        ]
    );
    // Once accepted, the state reached while Pending is reported.
    let (status, _) = wait_call_from(&csms, "CPP", "StatusNotification", c2, |p| {
        p["connectorId"] == 1
    })
    .await;
    assert_eq!(status["status"], "Preparing");
    assert_one_call_in_flight(&csms, "CPP");
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn boot_rejected_is_retried_after_the_interval() {
    let csms = sandbox(policy(RegistrationStatus::Rejected, 15)).await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path(), &csms.url(), "CPR").await;
    let (_, c) = wait_call_from(&csms, "CPR", "BootNotification", 0, |_| true).await;
    let t0 = Instant::now();
    let (_, c2) = wait_call_from(&csms, "CPR", "BootNotification", c, |_| true).await;
    assert_within(
        "Rejected retry",
        secs_between(t0, Instant::now()),
        15.0,
        16.0,
    );
    csms.update_policy(|p| p.boot_status = RegistrationStatus::Accepted);
    let (_, c3) = wait_call_from(&csms, "CPR", "BootNotification", c2, |_| true).await;
    assert_within("second retry", secs_between(t0, Instant::now()), 30.0, 31.5);
    booted(&csms, "CPR", c3).await;
    let calls = cp_calls_from(&csms, "CPR", 0);
    assert_eq!(
        actions(&calls[..5]),
        [
            "BootNotification",
            "BootNotification",
            "BootNotification",
            "StatusNotification",
            "StatusNotification"
        ]
    );
    assert_one_call_in_flight(&csms, "CPR");
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

// ----- 3. one CALL in flight, MessageTimeout ----------------------------------------------

#[tokio::test(start_paused = true)]
async fn one_call_in_flight_bounded_by_message_timeout_while_csms_calls_are_answered() {
    let mut opts = policy(RegistrationStatus::Accepted, 3600);
    opts.policy.unanswered.insert("StatusNotification".into());
    let csms = sandbox(opts).await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path(), &csms.url(), "CPT").await;
    let (first, c) = wait_call_from(&csms, "CPT", "StatusNotification", 0, |_| true).await;
    let t0 = Instant::now();
    assert_eq!(first["connectorId"], 0);
    // The charger waits on its own CALL and still answers the CSMS.
    assert_eq!(
        get_key(&csms, "CPT", "MessageTimeout").await.as_deref(),
        Some("30")
    );
    let (second, c2) = wait_call_from(&csms, "CPT", "StatusNotification", c, |_| true).await;
    let t1 = Instant::now();
    assert_eq!(second["connectorId"], 1);
    assert_within("MessageTimeout 30", secs_between(t0, t1), 30.0, 30.5);
    assert_eq!(
        wire_from(&csms, "CPT", c - 1),
        [
            "cp Call StatusNotification",
            "cs Call GetConfiguration",
            "cp Result GetConfiguration",
            "cp Call StatusNotification",
        ]
    );
    // A shorter MessageTimeout applies to the next CALL.
    assert_eq!(
        change_key(&csms, "CPT", "MessageTimeout", "10").await,
        "Accepted"
    );
    emu.act(HwEvent::Plug).await;
    emu.act(HwEvent::Unplug).await;
    let (preparing, c3) = wait_call_from(&csms, "CPT", "StatusNotification", c2, |_| true).await;
    let t2 = Instant::now();
    assert_eq!(preparing["status"], "Preparing");
    assert_within(
        "old timeout still bounds the CALL in flight",
        secs_between(t1, t2),
        30.0,
        30.5,
    );
    let (available, _) = wait_call_from(&csms, "CPT", "StatusNotification", c3, |_| true).await;
    assert_eq!(available["status"], "Available");
    assert_within(
        "MessageTimeout 10",
        secs_between(t2, Instant::now()),
        10.0,
        10.5,
    );
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

// ----- 4. CALLERRORs from crafted frames --------------------------------------------------

#[tokio::test]
async fn every_callerror_code_from_crafted_frames_and_the_stack_keeps_working() {
    let raw = RawCsms::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path(), &raw.url(), "CPRAW").await;
    let mut conn = raw.accept().await;
    assert_eq!(conn.path, "/CPRAW");
    assert!(conn.authorization.is_none());
    conn.wait_call("BootNotification").await;
    conn.wait_call("StatusNotification").await;
    conn.wait_call("StatusNotification").await;

    let too_many: Vec<String> = (0..65).map(|i| format!("Key{i}")).collect();
    let too_many = json!([2, "oc-2", "GetConfiguration", {"key": too_many}]).to_string();
    let mut cases: Vec<(String, &str, &str)> = vec![
        // FormationViolation
        (
            r#"[2,"nj-1","GetConfiguration",{"key":["#.into(),
            "nj-1",
            "FormationViolation",
        ),
        ("this is not JSON".into(), "-1", "FormationViolation"),
        (
            r#"{"messageTypeId":2,"id":"x"}"#.into(),
            "-1",
            "FormationViolation",
        ),
        (
            r#"[2,"po-1","GetConfiguration",["HeartbeatInterval"]]"#.into(),
            "po-1",
            "FormationViolation",
        ),
        (
            r#"[2,"uf-1","GetConfiguration",{"keys":["HeartbeatInterval"]}]"#.into(),
            "uf-1",
            "FormationViolation",
        ),
        // ProtocolError
        (
            r#"[2,"ec-1","GetConfiguration"]"#.into(),
            "ec-1",
            "ProtocolError",
        ),
        (
            r#"[2,"ec-2","GetConfiguration",{},{}]"#.into(),
            "ec-2",
            "ProtocolError",
        ),
        (
            r#"[9,"mt-1","GetConfiguration",{}]"#.into(),
            "mt-1",
            "ProtocolError",
        ),
        // TypeConstraintViolation
        (
            r#"[2,"tc-1","ChangeConfiguration",{"key":"HeartbeatInterval","value":60}]"#.into(),
            "tc-1",
            "TypeConstraintViolation",
        ),
        // PropertyConstraintViolation
        (
            r#"[2,"pc-1","ChangeAvailability",{"connectorId":0,"type":"Sideways"}]"#.into(),
            "pc-1",
            "PropertyConstraintViolation",
        ),
        // OccurenceConstraintViolation
        (
            r#"[2,"oc-1","ChangeConfiguration",{"key":"HeartbeatInterval"}]"#.into(),
            "oc-1",
            "OccurenceConstraintViolation",
        ),
        (too_many, "oc-2", "OccurenceConstraintViolation"),
        // NotImplemented
        (
            r#"[2,"ni-1","OpenThePodBayDoors",{}]"#.into(),
            "ni-1",
            "NotImplemented",
        ),
    ];
    let security = [
        "CertificateSigned",
        "DeleteCertificate",
        "ExtendedTriggerMessage",
        "GetInstalledCertificateIds",
        "GetLog",
        "InstallCertificate",
        "LogStatusNotification",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
        "SignedUpdateFirmware",
    ];
    let ids: Vec<String> = (0..security.len()).map(|i| format!("ns-{i}")).collect();
    for (action, id) in security.iter().zip(&ids) {
        cases.push((
            json!([2, id, action, {}]).to_string(),
            id.as_str(),
            "NotSupported",
        ));
    }
    for (n, (text, id, code)) in cases.iter().enumerate() {
        let reply = conn.exchange(text).await;
        let items = reply
            .as_array()
            .unwrap_or_else(|| panic!("{text}: {reply}"));
        assert_eq!(items.len(), 5, "{text}: {reply}");
        assert_eq!(items[0], 4, "{text}: {reply}");
        assert_eq!(items[1], *id, "{text}: {reply}");
        assert_eq!(items[2], *code, "{text}: {reply}");
        assert!(
            items[3].is_string() && items[4].is_object(),
            "{text}: {reply}"
        );
        // The stack keeps working: a valid call is answered.
        let ok_id = format!("ok-{n}");
        let ok = conn
            .exchange(
                &json!([2, ok_id, "GetConfiguration", {"key": ["HeartbeatInterval"]}]).to_string(),
            )
            .await;
        assert_eq!(ok[0], 3, "after {text}: {ok}");
        assert_eq!(ok[1], ok_id.as_str());
        assert_eq!(ok[2]["configurationKey"][0]["key"], "HeartbeatInterval");
    }
    // Answers nobody asked for, and broken ones, are never answered: the next frame from the
    // charger is the answer to the following valid CALL.
    for stray in [
        r#"[3,"nobody-asked",{}]"#,
        r#"[4,"nobody-asked","GenericError","",{}]"#,
        r#"[3,"short"]"#,
        r#"[4,"short","GenericError"]"#,
        r#"[3,"cut",{"#,
    ] {
        conn.send_text(stray).await;
        let ok = conn
            .exchange(r#"[2,"after-stray","GetConfiguration",{"key":["HeartbeatInterval"]}]"#)
            .await;
        assert_eq!(
            (&ok[0], &ok[1]),
            (&json!(3), &json!("after-stray")),
            "after {stray}: {ok}"
        );
    }
    // The description names the field at fault.
    let reply = conn
        .exchange(r#"[2,"tc-2","ChangeConfiguration",{"key":"HeartbeatInterval","value":60}]"#)
        .await;
    assert!(
        reply[3].as_str().is_some_and(|d| d.contains("value")),
        "{reply}"
    );
    emu.shutdown().await.unwrap();
}

// ----- 5. GetConfiguration / ChangeConfiguration ------------------------------------------

#[tokio::test(start_paused = true)]
async fn get_and_change_configuration_follow_the_release_notes() {
    let csms = sandbox(policy(RegistrationStatus::Accepted, 300)).await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path(), &csms.url(), "CPC").await;
    booted(&csms, "CPC", 0).await;

    let all = csms
        .call("CPC", "GetConfiguration", json!({}))
        .await
        .unwrap();
    let keys = all["configurationKey"].as_array().unwrap();
    let names: Vec<&str> = keys.iter().filter_map(|k| k["key"].as_str()).collect();
    for expected in [
        "HeartbeatInterval",
        "MeterValuesSampledData",
        "SecurityProfile",
        "LockCablePermanently",
        "MinimumStatusDuration",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for hidden in [
        "CsmsUrl",
        "ChargePointId",
        "BasicAuthPassword",
        "BlinkRepeat",
    ] {
        assert!(!names.contains(&hidden), "{hidden} must not be listed");
    }
    assert!(all.get("unknownKey").is_none());
    for k in keys {
        if k["key"] == "AuthorizationKey" {
            assert!(k.get("value").is_none(), "{k}");
        } else {
            assert!(k["value"].is_string(), "{k}");
        }
        assert!(k["readonly"].is_boolean());
    }

    let named = csms
        .call(
            "CPC",
            "GetConfiguration",
            json!({"key": ["HeartbeatInterval", "NoSuchKey", "AuthorizationKey", "BlinkRepeat"]}),
        )
        .await
        .unwrap();
    assert_eq!(named["unknownKey"], json!(["NoSuchKey", "BlinkRepeat"]));
    let listed = named["configurationKey"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed[0],
        json!({"key": "HeartbeatInterval", "readonly": false, "value": "300"})
    );
    assert_eq!(
        listed[1],
        json!({"key": "AuthorizationKey", "readonly": false})
    );

    // Accepted, then visible.
    assert_eq!(
        change_key(&csms, "CPC", "HeartbeatInterval", "120").await,
        "Accepted"
    );
    assert_eq!(
        get_key(&csms, "CPC", "HeartbeatInterval").await.as_deref(),
        Some("120")
    );
    // Rejected values leave the key unchanged.
    assert_eq!(
        change_key(&csms, "CPC", "HeartbeatInterval", "abc").await,
        "Rejected"
    );
    assert_eq!(
        change_key(&csms, "CPC", "HeartbeatInterval", "-5").await,
        "Rejected"
    );
    assert_eq!(
        get_key(&csms, "CPC", "HeartbeatInterval").await.as_deref(),
        Some("120")
    );
    // Unknown and unsupported keys.
    assert_eq!(
        change_key(&csms, "CPC", "NoSuchKey", "1").await,
        "NotSupported"
    );
    assert_eq!(
        change_key(&csms, "CPC", "BlinkRepeat", "3").await,
        "NotSupported"
    );
    assert_eq!(
        change_key(&csms, "CPC", "CsmsUrl", "ws://elsewhere").await,
        "NotSupported"
    );
    // Read-only.
    assert_eq!(
        change_key(&csms, "CPC", "NumberOfConnectors", "2").await,
        "Rejected"
    );
    assert_eq!(
        get_key(&csms, "CPC", "NumberOfConnectors").await.as_deref(),
        Some("1")
    );
    // StopTransactionOnEVSideDisconnect can only be set to true.
    assert_eq!(
        change_key(&csms, "CPC", "StopTransactionOnEVSideDisconnect", "false").await,
        "Rejected"
    );
    assert_eq!(
        change_key(&csms, "CPC", "StopTransactionOnEVSideDisconnect", "true").await,
        "Accepted"
    );
    // Only the supported measurands.
    assert_eq!(
        change_key(
            &csms,
            "CPC",
            "MeterValuesSampledData",
            "Power.Active.Import"
        )
        .await,
        "Rejected"
    );
    assert_eq!(
        change_key(
            &csms,
            "CPC",
            "MeterValuesSampledData",
            "Voltage,Current.Import"
        )
        .await,
        "Accepted"
    );
    assert_eq!(
        get_key(&csms, "CPC", "MeterValuesSampledData")
            .await
            .as_deref(),
        Some("Voltage,Current.Import")
    );
    // The AuthorizationKey is write-only.
    assert_eq!(
        change_key(
            &csms,
            "CPC",
            "AuthorizationKey",
            "00112233445566778899aabbccddeeff"
        )
        .await,
        "Accepted"
    );
    assert_eq!(get_key(&csms, "CPC", "AuthorizationKey").await, None);
    assert_eq!(
        change_key(&csms, "CPC", "AuthorizationKey", "not-hex").await,
        "Rejected"
    );

    // LockCablePermanently hides UnlockConnectorOnEVSideDisconnect as false and read-only.
    let unlock = |v: &Value| v["configurationKey"][0].clone();
    let ask = json!({"key": ["UnlockConnectorOnEVSideDisconnect"]});
    assert_eq!(
        change_key(&csms, "CPC", "LockCablePermanently", "true").await,
        "Accepted"
    );
    let shown = csms
        .call("CPC", "GetConfiguration", ask.clone())
        .await
        .unwrap();
    assert_eq!(
        unlock(&shown),
        json!({"key": "UnlockConnectorOnEVSideDisconnect", "readonly": true, "value": "false"})
    );
    assert_eq!(
        change_key(&csms, "CPC", "UnlockConnectorOnEVSideDisconnect", "true").await,
        "Rejected"
    );
    assert_eq!(
        change_key(&csms, "CPC", "LockCablePermanently", "false").await,
        "Accepted"
    );
    let shown = csms
        .call("CPC", "GetConfiguration", ask.clone())
        .await
        .unwrap();
    assert_eq!(
        unlock(&shown),
        json!({"key": "UnlockConnectorOnEVSideDisconnect", "readonly": false, "value": "true"})
    );
    assert_eq!(
        change_key(&csms, "CPC", "UnlockConnectorOnEVSideDisconnect", "false").await,
        "Accepted"
    );
    assert_one_call_in_flight(&csms, "CPC");
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn configuration_keys_are_found_in_any_case_and_answered_with_their_name() {
    let csms = sandbox(policy(RegistrationStatus::Accepted, 300)).await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path(), &csms.url(), "CPK").await;
    booted(&csms, "CPK", 0).await;
    assert_eq!(
        change_key(&csms, "CPK", "meterVALUEsampleinterval", "120").await,
        "Accepted"
    );
    let named = csms
        .call(
            "CPK",
            "GetConfiguration",
            json!({"key": ["metervaluesampleinterval", "HEARTBEATINTERVAL", "csmsurl"]}),
        )
        .await
        .unwrap();
    assert_eq!(
        named,
        json!({
            "configurationKey": [
                {"key": "MeterValueSampleInterval", "readonly": false, "value": "120"},
                {"key": "HeartbeatInterval", "readonly": false, "value": "300"},
            ],
            "unknownKey": ["csmsurl"],
        })
    );
    assert_eq!(
        change_key(&csms, "CPK", "numberofconnectors", "2").await,
        "Rejected"
    );
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn connector_ids_the_charger_does_not_have_are_refused_as_each_operation_says() {
    let csms = sandbox(policy(RegistrationStatus::Accepted, 300)).await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path(), &csms.url(), "CPN").await;
    booted(&csms, "CPN", 0).await;
    let asked = [
        (
            "ChangeAvailability",
            json!({"connectorId": 2, "type": "Inoperative"}),
            json!({"status": "Rejected"}),
        ),
        (
            "UnlockConnector",
            json!({"connectorId": 0}),
            json!({"status": "NotSupported"}),
        ),
        (
            "UnlockConnector",
            json!({"connectorId": 7}),
            json!({"status": "NotSupported"}),
        ),
        (
            "RemoteStartTransaction",
            json!({"connectorId": 2, "idTag": "T1"}),
            json!({"status": "Rejected"}),
        ),
        (
            "RemoteStartTransaction",
            json!({"connectorId": 0, "idTag": "T1"}),
            json!({"status": "Rejected"}),
        ),
        (
            "ReserveNow",
            json!({"connectorId": 3, "expiryDate": "2099-01-01T00:00:00Z", "idTag": "T1", "reservationId": 1}),
            json!({"status": "Rejected"}),
        ),
        (
            "TriggerMessage",
            json!({"requestedMessage": "Heartbeat", "connectorId": 2147483647}),
            json!({"status": "Rejected"}),
        ),
    ];
    for (action, payload, expected) in asked {
        let answer = csms.call("CPN", action, payload.clone()).await.unwrap();
        assert_eq!(answer, expected, "{action} {payload}");
    }
    assert_one_call_in_flight(&csms, "CPN");
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

// ----- 6. Reset, ChangeAvailability, DataTransfer, ClearCache ------------------------------

#[tokio::test(start_paused = true)]
async fn reset_reboots_with_configuration_kept_and_availability_persists() {
    let csms = sandbox(policy(RegistrationStatus::Accepted, 300)).await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path(), &csms.url(), "CPX").await;
    let mut c = booted(&csms, "CPX", 0).await;
    assert_eq!(
        change_key(&csms, "CPX", "MeterValueSampleInterval", "120").await,
        "Accepted"
    );
    for kind in ["Soft", "Hard"] {
        let answer = csms
            .call("CPX", "Reset", json!({"type": kind}))
            .await
            .unwrap();
        assert_eq!(answer, json!({"status": "Accepted"}));
        let (_, after_boot) = wait_call_from(&csms, "CPX", "BootNotification", c, |_| true).await;
        c = booted(&csms, "CPX", after_boot).await;
        assert_eq!(
            get_key(&csms, "CPX", "MeterValueSampleInterval")
                .await
                .as_deref(),
            Some("120"),
            "after a {kind} reset"
        );
    }
    assert_eq!(
        actions(&cp_calls_from(&csms, "CPX", 0))
            .iter()
            .filter(|a| **a == "BootNotification")
            .count(),
        3
    );

    let change = |connector: u32, kind: &str| {
        let csms = csms.clone();
        let kind = kind.to_string();
        async move {
            csms.call(
                "CPX",
                "ChangeAvailability",
                json!({"connectorId": connector, "type": kind}),
            )
            .await
            .unwrap()["status"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    };
    assert_eq!(change(2, "Inoperative").await, "Rejected");
    let before = csms.cursor();
    assert_eq!(change(0, "Inoperative").await, "Accepted");
    for connector in [0, 1] {
        let (status, _) = wait_call_from(&csms, "CPX", "StatusNotification", before, |p| {
            p["connectorId"] == connector
        })
        .await;
        assert_eq!(status["status"], "Unavailable");
    }
    let answer = csms
        .call(
            "CPX",
            "DataTransfer",
            json!({"vendorId": "com.example", "messageId": "hello"}),
        )
        .await
        .unwrap();
    assert_eq!(answer["status"], "UnknownVendorId");
    let answer = csms
        .call(
            "CPX",
            "DataTransfer",
            json!({"vendorId": "Zaptec", "messageId": "nope"}),
        )
        .await
        .unwrap();
    assert_eq!(answer["status"], "UnknownMessageId");
    let answer = csms.call("CPX", "ClearCache", json!({})).await.unwrap();
    assert_eq!(answer, json!({"status": "Accepted"}));

    // Availability survives a restart of the stack.
    emu.shutdown().await.unwrap();
    let restart = csms.cursor();
    let emu = emulator(dir.path(), &csms.url(), "CPX").await;
    booted(&csms, "CPX", restart).await;
    let calls = cp_calls_from(&csms, "CPX", restart);
    let statuses: Vec<(&Value, &Value)> = calls
        .iter()
        .filter(|(a, _)| a == "StatusNotification")
        .map(|(_, p)| (&p["connectorId"], &p["status"]))
        .collect();
    assert_eq!(
        statuses,
        [
            (&json!(0), &json!("Unavailable")),
            (&json!(1), &json!("Unavailable"))
        ]
    );
    let before = csms.cursor();
    assert_eq!(change(0, "Operative").await, "Accepted");
    for connector in [0, 1] {
        let (status, _) = wait_call_from(&csms, "CPX", "StatusNotification", before, |p| {
            p["connectorId"] == connector
        })
        .await;
        assert_eq!(status["status"], "Available");
    }
    assert_one_call_in_flight(&csms, "CPX");
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

// ----- 7. MinimumStatusDuration ------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_status_that_changes_back_within_minimum_status_duration_is_not_reported() {
    let csms = sandbox(policy(RegistrationStatus::Accepted, 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let emu = emulator(dir.path(), &csms.url(), "CPM").await;
    booted(&csms, "CPM", 0).await;
    assert_eq!(
        change_key(&csms, "CPM", "MinimumStatusDuration", "10").await,
        "Accepted"
    );
    let c = csms.cursor();
    emu.act(HwEvent::Plug).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    emu.act(HwEvent::Unplug).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        cp_calls_from(&csms, "CPM", c).is_empty(),
        "a 5 s Preparing must not be reported: {:?}",
        wire_from(&csms, "CPM", c)
    );
    emu.act(HwEvent::Plug).await;
    let t0 = Instant::now();
    let (status, _) = wait_call_from(&csms, "CPM", "StatusNotification", c, |_| true).await;
    assert_eq!(status["connectorId"], 1);
    assert_eq!(status["status"], "Preparing");
    assert_within(
        "MinimumStatusDuration",
        secs_between(t0, Instant::now()),
        10.0,
        10.5,
    );
    // The report carries the time the status changed, not the time it was sent.
    let boot_status = &cp_calls_from(&csms, "CPM", 0)[1].1;
    assert_within(
        "timestamp of the debounced status",
        stamp_secs(&boot_status["timestamp"], &status["timestamp"]),
        secs_between(start, t0) - 1.0,
        secs_between(start, t0) + 1.0,
    );
    assert_eq!(
        actions(&cp_calls_from(&csms, "CPM", c)),
        ["StatusNotification"]
    );
    assert_one_call_in_flight(&csms, "CPM");
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

// ----- 8. Security profile 1 ---------------------------------------------------------------

const KEY_TEXT: &str = "0123456789abcdefghij";

fn key_hex() -> String {
    hex::encode(KEY_TEXT)
}

fn connected_auth(
    csms: &chargectl::csms::SandboxHandle,
    cp: &str,
    from: usize,
) -> Vec<(Option<BasicAuthSeen>, bool)> {
    csms.events()
        .iter()
        .skip(from)
        .filter_map(|e| match &e.kind {
            EventKind::Connected {
                cp_id,
                basic_auth,
                tls,
                ..
            } if cp_id == cp => Some((basic_auth.clone(), *tls)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn security_profile_1_set_over_ocpp_reconnects_with_basic_auth() {
    let mut opts = policy(RegistrationStatus::Accepted, 300);
    opts.passwords = HashMap::from([("CPS".to_string(), Secret::new(KEY_TEXT))]);
    let csms = sandbox(opts).await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path(), &csms.url(), "CPS").await;
    booted(&csms, "CPS", 0).await;
    assert_eq!(connected_auth(&csms, "CPS", 0), [(None, false)]);
    // Profile 1 needs a key first.
    assert_eq!(
        change_key(&csms, "CPS", "SecurityProfile", "1").await,
        "Rejected"
    );
    assert_eq!(
        change_key(&csms, "CPS", "AuthorizationKey", &key_hex()).await,
        "Accepted"
    );
    let c = csms.cursor();
    assert_eq!(
        change_key(&csms, "CPS", "SecurityProfile", "1").await,
        "Accepted"
    );
    let reconnect = csms
        .wait_for_from(
            c,
            |e| matches!(&e.kind, EventKind::Connected { cp_id, .. } if cp_id == "CPS"),
            WAIT,
        )
        .await
        .expect("the charger reconnects");
    let EventKind::Connected { basic_auth, .. } = reconnect.kind else {
        unreachable!()
    };
    assert_eq!(
        basic_auth,
        Some(BasicAuthSeen {
            user: "CPS".into(),
            password_ok: Some(true)
        })
    );
    assert_eq!(
        get_key(&csms, "CPS", "SecurityProfile").await.as_deref(),
        Some("1")
    );
    // Same boot: no new BootNotification, and the profile can no longer be lowered over OCPP.
    assert!(!actions(&cp_calls_from(&csms, "CPS", c)).contains(&"BootNotification"));
    assert_eq!(
        change_key(&csms, "CPS", "SecurityProfile", "0").await,
        "Rejected"
    );
    assert_one_call_in_flight(&csms, "CPS");
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

/// A change that makes the charger reconnect is answered first: the CSMS gets Accepted on the
/// old connection, then the charger reconnects (real threads, so the answer and the reconnect
/// race as they would on a charger).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_change_that_reconnects_is_answered_before_the_connection_closes() {
    let mut opts = policy(RegistrationStatus::Accepted, 300);
    opts.passwords = HashMap::from([("CPR".to_string(), Secret::new(KEY_TEXT))]);
    let csms = sandbox(opts).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = BootSettings {
        security_profile: Some(1),
        authorization_key: Some(Secret::new(key_hex())),
        ..settings(&csms.url(), "CPR")
    };
    let emu = Emulator::start(dir.path(), &settings).await.unwrap();
    booted(&csms, "CPR", 0).await;
    for round in 0..10 {
        let c = csms.cursor();
        let answer = csms
            .call(
                "CPR",
                "ChangeConfiguration",
                json!({"key": "AuthorizationKey", "value": key_hex()}),
            )
            .await;
        assert!(
            matches!(&answer, Ok(v) if v["status"] == "Accepted"),
            "round {round}: {answer:?}"
        );
        csms.wait_for_from(
            c,
            |e| matches!(&e.kind, EventKind::Connected { cp_id, .. } if cp_id == "CPR"),
            WAIT,
        )
        .await
        .unwrap_or_else(|_| panic!("round {round}: the charger reconnects"));
    }
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn basic_auth_password_hex_sends_the_hex_text() {
    let mut opts = policy(RegistrationStatus::Accepted, 300);
    opts.require_basic_auth = true;
    opts.passwords = HashMap::from([("CPH".to_string(), Secret::new(key_hex()))]);
    let csms = sandbox(opts).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = BootSettings {
        security_profile: Some(1),
        authorization_key: Some(Secret::new(key_hex())),
        basic_auth_password: Some("hex".into()),
        ..settings(&csms.url(), "CPH")
    };
    let emu = Emulator::start(dir.path(), &settings).await.unwrap();
    booted(&csms, "CPH", 0).await;
    assert_eq!(
        connected_auth(&csms, "CPH", 0),
        [(
            Some(BasicAuthSeen {
                user: "CPH".into(),
                password_ok: Some(true)
            }),
            false
        )]
    );
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

#[tokio::test]
async fn refused_credentials_fall_back_to_profile_0() {
    let raw = RawCsms::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path(), &raw.url(), "CPF").await;
    let mut conn = raw.accept().await;
    conn.wait_call("StatusNotification").await;
    conn.wait_call("StatusNotification").await;
    let set = |id: &str, key: &str, value: &str| {
        json!([2, id, "ChangeConfiguration", {"key": key, "value": value}]).to_string()
    };
    let reply = conn
        .exchange(&set("k1", "AuthorizationKey", &key_hex()))
        .await;
    assert_eq!(reply, json!([3, "k1", {"status": "Accepted"}]));
    let reply = conn.exchange(&set("k2", "SecurityProfile", "1")).await;
    assert_eq!(reply, json!([3, "k2", {"status": "Accepted"}]));
    drop(conn);
    // The CSMS refuses the new credentials (HTTP 401)...
    let Handshake::Refused { authorization } = raw.handshake(true).await else {
        panic!("the charger must try profile 1 first");
    };
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("CPF:{KEY_TEXT}"));
    assert_eq!(authorization, Some(format!("Basic {expected}")));
    // ...and the charger falls back to profile 0 (A05.FR.08) and reconnects without them.
    let Handshake::Accepted(mut conn) = raw.handshake(true).await else {
        panic!("the charger must fall back to profile 0 without credentials");
    };
    assert!(conn.authorization.is_none());
    let reply = conn
        .exchange(r#"[2,"g1","GetConfiguration",{"key":["SecurityProfile"]}]"#)
        .await;
    assert_eq!(reply[2]["configurationKey"][0]["value"], "0");
    assert!(
        !conn.cp_calls.iter().any(|(a, _)| a == "BootNotification"),
        "same boot: no BootNotification after the fallback"
    );
    emu.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn wss_with_a_self_signed_certificate_works_with_profile_1() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let key_der =
        rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key_der)
        .unwrap();
    let mut opts = policy(RegistrationStatus::Accepted, 300);
    opts.tls = Some(Arc::new(server));
    opts.require_basic_auth = true;
    opts.passwords = HashMap::from([("CPW".to_string(), Secret::new(KEY_TEXT))]);
    let csms = sandbox(opts).await;
    assert!(csms.url().starts_with("wss://"));
    let dir = tempfile::tempdir().unwrap();
    let settings = BootSettings {
        security_profile: Some(1),
        authorization_key: Some(Secret::new(key_hex())),
        ..settings(&csms.url(), "CPW")
    };
    let emu = Emulator::start(dir.path(), &settings).await.unwrap();
    booted(&csms, "CPW", 0).await;
    assert_eq!(
        connected_auth(&csms, "CPW", 0),
        [(
            Some(BasicAuthSeen {
                user: "CPW".into(),
                password_ok: Some(true)
            }),
            true
        )]
    );
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

// ----- 9. Reconnect --------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn reconnects_with_backoff_without_a_new_boot_and_sends_what_was_queued() {
    let csms = sandbox(policy(RegistrationStatus::Accepted, 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let emu = emulator(dir.path(), &csms.url(), "CPN").await;
    let mut events = emu.handle.subscribe();
    booted(&csms, "CPN", 0).await;
    let boot_stamp = cp_calls_from(&csms, "CPN", 0)[1].1["timestamp"].clone();
    let addr = csms.local_addr();
    csms.shutdown().await;
    let t0 = Instant::now();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(Event::Connection {
                state: ConnectionState::Disconnected,
                ..
            }) = events.recv().await
            {
                break;
            }
        }
    })
    .await
    .expect("the charger sees the disconnect");
    // A change while offline is queued.
    emu.act(HwEvent::Plug).await;
    // The CSMS stays away for 10 s: the charger retries with growing delays.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let csms = sandbox(SandboxOptions {
        listen: addr,
        ..policy(RegistrationStatus::Accepted, 3600)
    })
    .await;
    csms.wait_for_connection("CPN", WAIT)
        .await
        .expect("reconnected");
    let online = Instant::now();
    let back = secs_between(t0, online);
    // Attempts at about 1, 3, 7 and 15 s (1 s doubling, up to 25 % jitter each).
    assert_within("reconnect with backoff", back, 15.0, 18.8);
    let mut failed = 0;
    while let Ok(ev) = events.try_recv() {
        if matches!(
            ev,
            Event::Connection {
                state: ConnectionState::Failed,
                ..
            }
        ) {
            failed += 1;
        }
    }
    assert_eq!(failed, 3, "three failed attempts before the CSMS came back");
    let (status, _) = wait_call_from(&csms, "CPN", "StatusNotification", 0, |_| true).await;
    assert_eq!(status["connectorId"], 1);
    assert_eq!(status["status"], "Preparing");
    // Release notes: a transition while offline carries the time the charger came online.
    assert_within(
        "timestamp of the offline transition",
        stamp_secs(&boot_stamp, &status["timestamp"]),
        secs_between(start, online) - 1.0,
        secs_between(start, online) + 1.0,
    );
    assert!(!actions(&cp_calls_from(&csms, "CPN", 0)).contains(&"BootNotification"));
    assert_one_call_in_flight(&csms, "CPN");
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_transaction_started_offline_is_delivered_first_after_the_reconnect() {
    let csms = sandbox(policy(RegistrationStatus::Accepted, 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path(), &csms.url(), "CPQ").await;
    let mut events = emu.handle.subscribe();
    booted(&csms, "CPQ", 0).await;
    assert_eq!(
        change_key(&csms, "CPQ", "FreeCharging", "true").await,
        "Accepted"
    );
    let addr = csms.local_addr();
    let next_tx = csms.peek_transaction_id();
    csms.shutdown().await;
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(Event::Connection {
                state: ConnectionState::Disconnected,
                ..
            }) = events.recv().await
            {
                break;
            }
        }
    })
    .await
    .expect("the charger sees the disconnect");
    // Plugged in while offline: free charging starts a transaction that waits in the journal.
    emu.act(HwEvent::Plug).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let csms = sandbox(SandboxOptions {
        listen: addr,
        first_transaction_id: next_tx,
        ..policy(RegistrationStatus::Accepted, 3600)
    })
    .await;
    let (start, _) = wait_call_from(&csms, "CPQ", "StartTransaction", 0, |_| true).await;
    assert_eq!(start["connectorId"], 1);
    assert_eq!(start["idTag"], "FreeCharging");
    assert!(start["meterStart"].is_i64());
    let (status, _) = wait_call_from(&csms, "CPQ", "StatusNotification", 0, |p| {
        p["connectorId"] == 1
    })
    .await;
    assert_eq!(status["status"], "Charging");
    let calls = cp_calls_from(&csms, "CPQ", 0);
    assert_eq!(
        actions(&calls[..2]),
        ["StartTransaction", "StatusNotification"],
        "the transaction message goes first, no BootNotification"
    );
    assert_one_call_in_flight(&csms, "CPQ");
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

// ----- 10. Release-note fidelity -------------------------------------------------------------

/// The StatusNotification of each connector in `calls`, by connector id.
fn status_of(calls: &[(String, Value)], connector: u64) -> Value {
    calls
        .iter()
        .find(|(a, p)| a == "StatusNotification" && p["connectorId"] == connector)
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| panic!("no StatusNotification for connector {connector}: {calls:?}"))
}

#[tokio::test(start_paused = true)]
async fn a_status_changed_before_the_csms_was_reachable_carries_the_time_the_charger_came_online() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let emu = emulator(dir.path(), &format!("ws://{addr}"), "CPU").await;
    // Nothing listens: the charger boots offline and the cable goes in 5 s later.
    tokio::time::sleep(Duration::from_secs(5)).await;
    emu.act(HwEvent::Plug).await;
    tokio::time::sleep(Duration::from_secs(40)).await;
    let csms = sandbox(SandboxOptions {
        listen: addr,
        ..policy(RegistrationStatus::Accepted, 3600)
    })
    .await;
    csms.wait_for_connection("CPU", WAIT)
        .await
        .expect("connected");
    let online = Instant::now();
    wait_call_from(&csms, "CPU", "StatusNotification", 0, |p| {
        p["connectorId"] == 1
    })
    .await;
    let calls = cp_calls_from(&csms, "CPU", 0);
    let (charger, socket) = (status_of(&calls, 0), status_of(&calls, 1));
    assert_eq!(charger["status"], "Available");
    assert_eq!(socket["status"], "Preparing");
    // Connector 0 has been Available since the boot; the socket's change, made while the
    // charger had never been online, carries the time it came online, not the time of the plug.
    assert_within(
        "offline change stamped at the time the charger came online",
        stamp_secs(&charger["timestamp"], &socket["timestamp"]),
        secs_between(start, online) - 1.0,
        secs_between(start, online) + 1.0,
    );
    assert_one_call_in_flight(&csms, "CPU");
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_status_changed_while_pending_carries_the_time_the_registration_was_accepted() {
    let csms = sandbox(policy(RegistrationStatus::Pending, 30)).await;
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let emu = emulator(dir.path(), &csms.url(), "CPW").await;
    wait_call_from(&csms, "CPW", "BootNotification", 0, |_| true).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    emu.act(HwEvent::Plug).await;
    csms.update_policy(|p| p.boot_status = RegistrationStatus::Accepted);
    // Both connectors are reported once the second BootNotification is Accepted.
    booted(&csms, "CPW", 0).await;
    let accepted = Instant::now();
    assert!(
        secs_between(start, accepted) >= 30.0,
        "accepted at the second BootNotification"
    );
    let calls = cp_calls_from(&csms, "CPW", 0);
    let (charger, socket) = (status_of(&calls, 0), status_of(&calls, 1));
    assert_eq!(socket["status"], "Preparing");
    assert_within(
        "change while Pending stamped at the acceptance",
        stamp_secs(&charger["timestamp"], &socket["timestamp"]),
        secs_between(start, accepted) - 1.0,
        secs_between(start, accepted) + 1.0,
    );
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_error_status_held_for_minimum_status_duration_is_not_queued_when_it_ends_offline() {
    let csms = sandbox(policy(RegistrationStatus::Accepted, 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path(), &csms.url(), "CPE").await;
    let mut events = emu.handle.subscribe();
    booted(&csms, "CPE", 0).await;
    assert_eq!(
        change_key(&csms, "CPE", "MinimumStatusDuration", "10").await,
        "Accepted"
    );
    let c = csms.cursor();
    emu.act(HwEvent::Fault {
        error_code: "GroundFailure".into(),
        info: None,
    })
    .await;
    // The connection goes 2 s later, before the 10 s are up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    emu.act(HwEvent::NetworkLost).await;
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(Event::Connection {
                state: ConnectionState::Disconnected,
                ..
            }) = events.recv().await
            {
                break;
            }
        }
    })
    .await
    .expect("the charger sees the connection go");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let back = csms.cursor();
    emu.act(HwEvent::NetworkRestored).await;
    csms.wait_for_from(
        back,
        |e| matches!(&e.kind, EventKind::Connected { cp_id, .. } if cp_id == "CPE"),
        WAIT,
    )
    .await
    .expect("reconnected");
    // After the reconnect the charger is heard from again (a Heartbeat asked for by the CSMS
    // goes through the same queue), and no Faulted status was queued while offline.
    let answer = csms
        .call(
            "CPE",
            "TriggerMessage",
            json!({"requestedMessage": "Heartbeat"}),
        )
        .await
        .expect("answered after the reconnect");
    assert_eq!(answer["status"], "Accepted");
    wait_call_from(&csms, "CPE", "Heartbeat", back, |_| true).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let statuses: Vec<Value> = cp_calls_from(&csms, "CPE", c)
        .into_iter()
        .filter(|(a, _)| a == "StatusNotification")
        .map(|(_, p)| p)
        .collect();
    assert!(
        statuses.iter().all(|p| p["status"] != "Faulted"),
        "an error status whose MinimumStatusDuration ended offline was sent: {statuses:?}"
    );
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

/// A RemoteStartTransaction for CARD-R carrying `profile`, answered with this status.
async fn remote_start_with(
    csms: &chargectl::csms::SandboxHandle,
    cp: &str,
    profile: Value,
) -> String {
    let answer = csms
        .call(
            cp,
            "RemoteStartTransaction",
            json!({"connectorId": 1, "idTag": "CARD-R", "chargingProfile": profile}),
        )
        .await
        .expect("RemoteStartTransaction answered");
    answer["status"].as_str().unwrap_or_default().to_string()
}

fn tx_profile(unit: &str, kind: &str, start_schedule: Option<&str>) -> Value {
    let mut schedule = json!({
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}]
    });
    if let Some(s) = start_schedule {
        schedule["startSchedule"] = json!(s);
    }
    let mut p = json!({
        "chargingProfileId": 40,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": kind,
        "chargingSchedule": schedule
    });
    if kind == "Recurring" {
        p["recurrencyKind"] = json!("Daily");
    }
    p
}

#[tokio::test(start_paused = true)]
async fn a_remote_start_whose_profile_cannot_be_applied_is_rejected_and_starts_nothing() {
    let csms = sandbox(policy(RegistrationStatus::Accepted, 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path(), &csms.url(), "CPS").await;
    booted(&csms, "CPS", 0).await;
    emu.act(HwEvent::Plug).await;
    let mut default_profile = tx_profile("A", "Absolute", None);
    default_profile["chargingProfilePurpose"] = json!("TxDefaultProfile");
    let mut too_high = tx_profile("A", "Absolute", None);
    too_high["stackLevel"] = json!(9);
    for (why, profile) in [
        ("in W", tx_profile("W", "Absolute", None)),
        (
            "recurring without startSchedule",
            tx_profile("A", "Recurring", None),
        ),
        ("not a TxProfile", default_profile),
        ("above ChargeProfileMaxStackLevel", too_high),
    ] {
        assert_eq!(
            remote_start_with(&csms, "CPS", profile).await,
            "Rejected",
            "{why}"
        );
    }
    tokio::time::sleep(Duration::from_secs(40)).await;
    let calls = cp_calls_from(&csms, "CPS", 0);
    assert!(
        !actions(&calls).contains(&"StartTransaction"),
        "a rejected remote start started a session: {:?}",
        actions(&calls)
    );
    let log = emu.logbook.history();
    assert!(
        log.iter()
            .any(|r| r.message.contains("RemoteStartTransaction rejected")
                && r.message.contains("needs startSchedule")),
        "the refusal is in the charger's log"
    );
    // A profile the charger can apply starts the session and limits it.
    let now = emu.logbook.history().last().expect("a log line").time;
    let now = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let good = tx_profile("A", "Recurring", Some(&now));
    assert_eq!(remote_start_with(&csms, "CPS", good).await, "Accepted");
    let (start, _) = wait_call_from(&csms, "CPS", "StartTransaction", 0, |_| true).await;
    assert_eq!(start["idTag"], "CARD-R");
    let composite = csms
        .call(
            "CPS",
            "GetCompositeSchedule",
            json!({"connectorId": 1, "duration": 60}),
        )
        .await
        .expect("GetCompositeSchedule answered");
    assert_eq!(composite["status"], "Accepted");
    assert_eq!(
        composite["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"],
        10.0
    );
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_timestamp_with_another_offset_is_understood_and_logged_as_a_warning() {
    let csms = sandbox(policy(RegistrationStatus::Accepted, 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path(), &csms.url(), "CPT").await;
    booted(&csms, "CPT", 0).await;
    // The charger's own clock: the time of its latest log line.
    let now = emu.logbook.history().last().expect("a log line").time;
    let expiry = (now + chrono::Duration::seconds(60))
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    assert!(expiry.ends_with("+02:00"), "{expiry}");
    let c = csms.cursor();
    let answer = csms
        .call(
            "CPT",
            "ReserveNow",
            json!({"connectorId": 1, "expiryDate": expiry, "idTag": "CARD-1", "reservationId": 5}),
        )
        .await
        .expect("ReserveNow answered");
    assert_eq!(answer["status"], "Accepted");
    let (reserved, c) = wait_call_from(&csms, "CPT", "StatusNotification", c, |p| {
        p["connectorId"] == 1
    })
    .await;
    assert_eq!(reserved["status"], "Reserved");
    // Read as the UTC instant it names: the reservation ends 60 s later, not 2 h off.
    let t0 = Instant::now();
    let (available, _) = wait_call_from(&csms, "CPT", "StatusNotification", c, |p| {
        p["connectorId"] == 1
    })
    .await;
    assert_eq!(available["status"], "Available");
    assert_within(
        "reservation expiry",
        secs_between(t0, Instant::now()),
        58.0,
        62.0,
    );
    let warning = emu
        .logbook
        .history()
        .into_iter()
        .find(|r| r.message.contains("not UTC"))
        .expect("a warning in the charger's log");
    assert_eq!(warning.level, chargectl::stack::logbook::Level::Warn);
    assert!(
        warning.message.contains("ReserveNow: expiryDate"),
        "{}",
        warning.message
    );
    assert!(warning.message.contains("+02:00"), "{}", warning.message);
    emu.shutdown().await.unwrap();
    csms.shutdown().await;
}
