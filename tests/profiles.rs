//! Scenario tests of the remaining OCPP 1.6 feature profiles through the charge point: Local Auth
//! List Management, Reservation, Smart Charging, Remote Trigger and Firmware Management. The
//! emulated charger talks to the sandbox CSMS on 127.0.0.1, on tokio's paused clock; each test
//! asserts the charger's answers and the frames on the wire.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

#[path = "common/http_server.rs"]
mod http;
#[path = "common/sessions.rs"]
mod sessions_common;

use chargectl::csms::Policy;
use chargectl::stack::hardware::HwEvent;
use serde_json::{Value, json};
use sessions_common::*;
use std::time::Duration;
use tokio::time::sleep;

fn card(tag: &str) -> HwEvent {
    HwEvent::Card {
        id_tag: tag.to_string(),
    }
}

/// Sends a CALL from the sandbox and returns the charger's answer.
async fn call(rig: &Rig, action: &str, payload: Value) -> Value {
    rig.sandbox
        .call(CP, action, payload.clone())
        .await
        .unwrap_or_else(|e| panic!("{action} {payload} not answered: {e:?}"))
}

// ----- Local Auth List Management ----------------------------------------------------------

fn entry(tag: &str, status: &str) -> Value {
    json!({ "idTag": tag, "idTagInfo": { "status": status } })
}

async fn list_version(rig: &Rig) -> i64 {
    let answer = call(rig, "GetLocalListVersion", json!({})).await;
    answer["listVersion"]
        .as_i64()
        .unwrap_or_else(|| panic!("no listVersion in {answer}"))
}

#[tokio::test(start_paused = true)]
async fn local_list_full_then_differential_and_an_oversized_list_is_refused() {
    let rig = Rig::start(&[], Policy::default()).await;
    assert_eq!(list_version(&rig).await, 0, "a fresh charger has no list");

    let full = call(
        &rig,
        "SendLocalList",
        json!({
            "listVersion": 1,
            "updateType": "Full",
            "localAuthorizationList": [entry("TAG-A", "Accepted"), entry("TAG-B", "Blocked")],
        }),
    )
    .await;
    assert_eq!(full, json!({ "status": "Accepted" }));
    assert_eq!(list_version(&rig).await, 1);

    let diff = call(
        &rig,
        "SendLocalList",
        json!({
            "listVersion": 2,
            "updateType": "Differential",
            "localAuthorizationList": [entry("TAG-C", "Accepted"), { "idTag": "TAG-A" }],
        }),
    )
    .await;
    assert_eq!(diff, json!({ "status": "Accepted" }));
    assert_eq!(list_version(&rig).await, 2);

    // SendLocalListMaxLength is 255: one more is refused and the list stays as it was.
    let many: Vec<Value> = (0..256)
        .map(|i| entry(&format!("BULK{i:03}"), "Accepted"))
        .collect();
    let refused = call(
        &rig,
        "SendLocalList",
        json!({ "listVersion": 3, "updateType": "Full", "localAuthorizationList": many }),
    )
    .await;
    assert_eq!(refused, json!({ "status": "Failed" }));
    assert_eq!(list_version(&rig).await, 2, "the list is unchanged");

    // The list in force is version 2: TAG-C starts without asking; TAG-A (removed) and a tag
    // of the refused list are asked.
    rig.set("LocalPreAuthorize", "true").await;
    let c = rig.sandbox.cursor();
    rig.act(card("TAG-C")).await;
    rig.act(HwEvent::Plug).await;
    let start = rig.wait_call_from(c, "StartTransaction", |_| true).await;
    assert_eq!(start.payload["idTag"], "TAG-C");
    rig.act(card("TAG-C")).await;
    rig.wait_call_from(c, "StopTransaction", |_| true).await;
    rig.act(HwEvent::Unplug).await;
    rig.wait_status_from(c, "Available").await;
    let c = rig.sandbox.cursor();
    rig.act(card("TAG-A")).await;
    rig.wait_call_from(c, "Authorize", |p| p["idTag"] == "TAG-A")
        .await;
    // Not plugged in: the authorization lapses after ConnectionTimeOut.
    rig.wait_status_from(c, "Preparing").await;
    rig.wait_status_from(c, "Available").await;
    rig.act(card("BULK001")).await;
    rig.wait_call_from(c, "Authorize", |p| p["idTag"] == "BULK001")
        .await;
    let authorize_tags: Vec<Value> = rig
        .calls_of("Authorize")
        .into_iter()
        .map(|p| p["idTag"].clone())
        .collect();
    assert_eq!(authorize_tags, [json!("TAG-A"), json!("BULK001")]);
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn local_list_pre_authorizes_a_listed_tag_without_authorize() {
    let rig = Rig::start(&[("LocalPreAuthorize", "true")], Policy::default()).await;
    let answer = call(
        &rig,
        "SendLocalList",
        json!({
            "listVersion": 5,
            "updateType": "Full",
            "localAuthorizationList": [entry("LISTED", "Accepted")],
        }),
    )
    .await;
    assert_eq!(answer["status"], "Accepted");
    let c = rig.sandbox.cursor();
    rig.act(card("LISTED")).await;
    rig.act(HwEvent::Plug).await;
    let start = rig.wait_call_from(c, "StartTransaction", |_| true).await;
    assert_eq!(start.payload["idTag"], "LISTED");
    rig.wait_status_from(c, "Charging").await;
    assert!(
        rig.calls_of("Authorize").is_empty(),
        "a listed tag starts without Authorize.req: {:?}",
        rig.calls_of("Authorize")
    );
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn local_list_authorizes_offline_and_refuses_a_blocked_tag() {
    let mut rig = Rig::start(&[("LocalAuthorizeOffline", "true")], Policy::default()).await;
    let answer = call(
        &rig,
        "SendLocalList",
        json!({
            "listVersion": 1,
            "updateType": "Full",
            "localAuthorizationList": [entry("GOOD", "Accepted"), entry("STOLEN", "Blocked")],
        }),
    )
    .await;
    assert_eq!(answer["status"], "Accepted");
    rig.stop_csms().await;
    rig.act(HwEvent::Plug).await;
    rig.act(card("STOLEN")).await;
    sleep(Duration::from_secs(5)).await;
    rig.act(card("GOOD")).await;
    sleep(Duration::from_secs(30)).await;
    rig.restart_csms().await;
    rig.wait_status_from(0, "Charging").await;
    let starts = rig.calls_of("StartTransaction");
    assert_eq!(
        starts.len(),
        1,
        "only the listed, valid tag starts: {starts:?}"
    );
    assert_eq!(starts[0]["idTag"], "GOOD");
    assert!(
        rig.calls_of("Authorize").is_empty(),
        "nothing asked offline"
    );
    rig.shutdown().await;
}

// ----- Remote Trigger ----------------------------------------------------------------------

/// Position in the sandbox's frames of the CALL (`want_call`) or CALLRESULT with this id.
fn frame_position(rig: &Rig, call_id: &str, want_call: bool) -> usize {
    use chargectl::stack::rpc::Frame;
    rig.sandbox
        .frames(CP)
        .iter()
        .position(|(_, f)| match f {
            Frame::Call { id, .. } => want_call && id == call_id,
            Frame::CallResult { id, .. } => !want_call && id == call_id,
            Frame::CallError { .. } => false,
        })
        .unwrap_or_else(|| panic!("no frame with id {call_id}"))
}

/// The id of the last TriggerMessage CALL the sandbox sent.
fn last_trigger_id(rig: &Rig) -> String {
    use chargectl::csms::Direction;
    use chargectl::stack::rpc::Frame;
    rig.sandbox
        .frames(CP)
        .iter()
        .rev()
        .find_map(|(d, f)| match f {
            Frame::Call { id, action, .. }
                if *d == Direction::Sent && action == "TriggerMessage" =>
            {
                Some(id.clone())
            }
            _ => None,
        })
        .expect("a TriggerMessage on the wire")
}

/// Sends TriggerMessage, asserts Accepted, waits for the triggered CALL (matching `pred`) and
/// asserts that it came after the answer. Returns the triggered payload.
async fn trigger(
    rig: &Rig,
    message: &str,
    connector: Option<u32>,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let c = rig.sandbox.cursor();
    let mut req = json!({ "requestedMessage": message });
    if let Some(id) = connector {
        req["connectorId"] = json!(id);
    }
    let answer = call(rig, "TriggerMessage", req).await;
    assert_eq!(answer, json!({ "status": "Accepted" }), "{message}");
    let triggered = rig.wait_call_from(c, message, pred).await;
    let answered_at = frame_position(rig, &last_trigger_id(rig), false);
    let sent_at = frame_position(rig, &triggered.id, true);
    assert!(
        answered_at < sent_at,
        "{message} must follow the TriggerMessage answer"
    );
    triggered.payload
}

#[tokio::test(start_paused = true)]
async fn trigger_message_sends_each_message_after_its_answer() {
    let rig = Rig::start(&[], Policy::default()).await;

    let boot = trigger(&rig, "BootNotification", None, |_| true).await;
    assert_eq!(boot["chargePointVendor"], "Zaptec");
    assert_eq!(boot["chargePointModel"], "Go");
    assert_eq!(boot["firmwareVersion"], "2.1.0");

    let diag = trigger(&rig, "DiagnosticsStatusNotification", None, |_| true).await;
    assert_eq!(diag, json!({ "status": "Idle" }));
    let diag = trigger(&rig, "DiagnosticsStatusNotification", Some(1), |_| true).await;
    assert_eq!(diag, json!({ "status": "Idle" }));

    let fw = trigger(&rig, "FirmwareStatusNotification", None, |_| true).await;
    assert_eq!(fw, json!({ "status": "Idle" }));
    let fw = trigger(&rig, "FirmwareStatusNotification", Some(0), |_| true).await;
    assert_eq!(fw, json!({ "status": "Idle" }));

    let hb = trigger(&rig, "Heartbeat", None, |_| true).await;
    assert_eq!(hb, json!({}));
    let hb = trigger(&rig, "Heartbeat", Some(1), |_| true).await;
    assert_eq!(hb, json!({}));

    let mv = trigger(&rig, "MeterValues", Some(1), |_| true).await;
    assert_eq!(mv["connectorId"], 1);
    assert!(mv.get("transactionId").is_none(), "no transaction: {mv}");
    let sampled = &mv["meterValue"][0]["sampledValue"];
    assert_eq!(sampled[0]["context"], "Trigger", "{mv}");
    assert_eq!(sampled[0]["measurand"], "Energy.Active.Import.Register");
    let mv = trigger(&rig, "MeterValues", None, |_| true).await;
    assert_eq!(mv["meterValue"][0]["sampledValue"][0]["context"], "Trigger");

    // Without connectorId: the charger and its connector; with connectorId 1: that one only.
    let c = rig.sandbox.cursor();
    let zero = trigger(&rig, "StatusNotification", None, |p| p["connectorId"] == 0).await;
    assert_eq!(zero["status"], "Available");
    let one = rig
        .wait_call_from(c, "StatusNotification", |p| p["connectorId"] == 1)
        .await;
    assert_eq!(one.payload["status"], "Available");
    let one = trigger(&rig, "StatusNotification", Some(1), |_| true).await;
    assert_eq!(one["connectorId"], 1);
    assert_eq!(one["errorCode"], "NoError");

    // The Zaptec Go has one connector: connector 2 is refused and nothing follows.
    let before = calls_in(&rig.sandbox.frames(CP)[..]).len();
    let rejected = call(
        &rig,
        "TriggerMessage",
        json!({ "requestedMessage": "StatusNotification", "connectorId": 2 }),
    )
    .await;
    assert_eq!(rejected, json!({ "status": "Rejected" }));
    sleep(Duration::from_secs(10)).await;
    let after: Vec<String> = calls_in(&rig.sandbox.frames(CP)[..])
        .into_iter()
        .skip(before)
        .map(|c| c.action)
        .collect();
    assert!(after.is_empty(), "nothing sent after Rejected: {after:?}");
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn triggered_meter_values_carry_the_running_transaction() {
    let rig = Rig::start(&[], Policy::default()).await;
    let c = rig.sandbox.cursor();
    rig.act(card("TRIG")).await;
    rig.act(HwEvent::Plug).await;
    let start = rig.wait_call_from(c, "StartTransaction", |_| true).await;
    let tx_id = rig.sandbox_answer(&start.id)["transactionId"].clone();
    rig.wait_status_from(c, "Charging").await;
    sleep(Duration::from_secs(10)).await;
    let mv = trigger(&rig, "MeterValues", Some(1), |_| true).await;
    assert_eq!(mv["transactionId"], tx_id);
    let status = trigger(&rig, "StatusNotification", Some(1), |_| true).await;
    assert_eq!(status["status"], "Charging");
    rig.shutdown().await;
}

// ----- Reservation -------------------------------------------------------------------------

/// An OCPP timestamp `secs` from the charger's present (the charger's clock follows tokio time
/// from the wall clock at start; the paused clock keeps the two within the test's real run time).
fn in_secs(secs: i64) -> String {
    let at = chrono::Utc::now() + chrono::Duration::seconds(secs);
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn reserve(rig: &Rig, id: i64, connector: u32, tag: &str, secs: i64) -> Value {
    let answer = call(
        rig,
        "ReserveNow",
        json!({
            "connectorId": connector,
            "expiryDate": in_secs(secs),
            "idTag": tag,
            "reservationId": id,
        }),
    )
    .await;
    answer["status"].clone()
}

async fn cancel(rig: &Rig, id: i64) -> Value {
    call(rig, "CancelReservation", json!({ "reservationId": id })).await["status"].clone()
}

#[tokio::test(start_paused = true)]
async fn reservation_holds_the_connector_for_its_id_tag() {
    let rig = Rig::start(&[], Policy::default()).await;
    let c = rig.sandbox.cursor();
    assert_eq!(reserve(&rig, 11, 1, "RES-A", 3600).await, "Accepted");
    rig.wait_status_from(c, "Reserved").await;

    // Another card is authorized by the CSMS but may not use the reserved connector.
    rig.act(card("OTHER")).await;
    rig.wait_call_from(c, "Authorize", |p| p["idTag"] == "OTHER")
        .await;
    rig.act(HwEvent::Plug).await;
    sleep(Duration::from_secs(5)).await;
    assert!(rig.calls_of("StartTransaction").is_empty());

    rig.act(card("RES-A")).await;
    let start = rig.wait_call_from(c, "StartTransaction", |_| true).await;
    assert_eq!(start.payload["idTag"], "RES-A");
    assert_eq!(start.payload["reservationId"], 11);
    rig.wait_status_from(c, "Charging").await;
    assert_eq!(
        rig.calls_of("StartTransaction").len(),
        1,
        "only the reserved tag started"
    );
    // The reservation is used up.
    assert_eq!(cancel(&rig, 11).await, "Rejected");
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reservation_expires_and_can_be_cancelled() {
    let rig = Rig::start(&[], Policy::default()).await;
    let c = rig.sandbox.cursor();
    assert_eq!(reserve(&rig, 21, 1, "RES-B", 120).await, "Accepted");
    let reserved = rig.wait_status_from(c, "Reserved").await;
    let available = rig.wait_status_from(c, "Available").await;
    let held = (parse_time(&available.payload["timestamp"])
        - parse_time(&reserved.payload["timestamp"]))
    .num_milliseconds() as f64
        / 1000.0;
    assert!(
        (115.0..=125.0).contains(&held),
        "the reservation ends at its expiry, held {held} s"
    );
    assert_eq!(cancel(&rig, 21).await, "Rejected", "an expired reservation");

    let c = rig.sandbox.cursor();
    assert_eq!(reserve(&rig, 22, 1, "RES-B", 3600).await, "Accepted");
    rig.wait_status_from(c, "Reserved").await;
    assert_eq!(cancel(&rig, 99).await, "Rejected", "an unknown reservation");
    assert_eq!(cancel(&rig, 22).await, "Accepted");
    rig.wait_status_from(c, "Available").await;
    assert_eq!(cancel(&rig, 22).await, "Rejected", "already cancelled");
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reservation_refusals_occupied_faulted_unavailable_and_connector_zero() {
    let rig = Rig::start(&[], Policy::default()).await;
    let c = rig.sandbox.cursor();
    rig.act(HwEvent::Plug).await;
    rig.wait_status_from(c, "Preparing").await;
    assert_eq!(reserve(&rig, 31, 1, "RES-C", 3600).await, "Occupied");
    rig.act(HwEvent::Unplug).await;
    rig.wait_status_from(c, "Available").await;

    let c = rig.sandbox.cursor();
    rig.act(HwEvent::Fault {
        error_code: "GroundFailure".into(),
        info: None,
    })
    .await;
    rig.wait_status_from(c, "Faulted").await;
    assert_eq!(reserve(&rig, 32, 1, "RES-C", 3600).await, "Faulted");
    rig.act(HwEvent::ClearFault).await;
    rig.wait_status_from(c, "Available").await;

    let c = rig.sandbox.cursor();
    let answer = call(
        &rig,
        "ChangeAvailability",
        json!({ "connectorId": 0, "type": "Inoperative" }),
    )
    .await;
    assert_eq!(answer["status"], "Accepted");
    rig.wait_status_from(c, "Unavailable").await;
    assert_eq!(reserve(&rig, 33, 1, "RES-C", 3600).await, "Unavailable");
    let answer = call(
        &rig,
        "ChangeAvailability",
        json!({ "connectorId": 0, "type": "Operative" }),
    )
    .await;
    assert_eq!(answer["status"], "Accepted");
    rig.wait_status_from(c, "Available").await;

    // ReserveConnectorZeroSupported is false; connector 2 does not exist.
    assert_eq!(reserve(&rig, 34, 0, "RES-C", 3600).await, "Rejected");
    assert_eq!(reserve(&rig, 35, 2, "RES-C", 3600).await, "Rejected");
    // An expiry in the past.
    assert_eq!(reserve(&rig, 36, 1, "RES-C", -60).await, "Rejected");
    assert!(
        !rig.statuses().iter().any(|s| s == "Reserved"),
        "no refusal reserved the connector: {:?}",
        rig.statuses()
    );
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn free_charging_cancels_the_reservation_and_refuses_new_ones() {
    let rig = Rig::start(&[], Policy::default()).await;
    let c = rig.sandbox.cursor();
    assert_eq!(reserve(&rig, 41, 1, "RES-D", 3600).await, "Accepted");
    rig.wait_status_from(c, "Reserved").await;
    let c = rig.sandbox.cursor();
    let answer = call(
        &rig,
        "ChangeConfiguration",
        json!({ "key": "FreeCharging", "value": "true" }),
    )
    .await;
    assert_eq!(answer["status"], "Accepted");
    rig.wait_status_from(c, "Available").await;
    assert_eq!(cancel(&rig, 41).await, "Rejected", "already cancelled");
    assert_eq!(reserve(&rig, 42, 1, "RES-D", 3600).await, "Rejected");

    // Authorization required again: reservations are accepted again.
    let answer = call(
        &rig,
        "ChangeConfiguration",
        json!({ "key": "FreeCharging", "value": "false" }),
    )
    .await;
    assert_eq!(answer["status"], "Accepted");
    assert_eq!(reserve(&rig, 43, 1, "RES-D", 3600).await, "Accepted");
    rig.shutdown().await;
}

// ----- Smart Charging ----------------------------------------------------------------------

fn tx_default(id: i64, stack_level: u32, limit: f64) -> Value {
    json!({
        "chargingProfileId": id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "startSchedule": in_secs(-60),
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": limit }],
        },
    })
}

async fn set_profile(rig: &Rig, connector: u32, profile: Value) -> Value {
    call(
        rig,
        "SetChargingProfile",
        json!({ "connectorId": connector, "csChargingProfiles": profile }),
    )
    .await["status"]
        .clone()
}

/// The sampled value of `measurand` (phase L1 when phased) in a MeterValues payload.
fn sampled(payload: &Value, measurand: &str) -> Option<String> {
    payload["meterValue"][0]["sampledValue"]
        .as_array()?
        .iter()
        .find(|sv| {
            sv["measurand"] == measurand && (sv.get("phase").is_none() || sv["phase"] == "L1")
        })
        .and_then(|sv| sv["value"].as_str())
        .map(str::to_string)
}

const SAMPLED: &str = "Energy.Active.Import.Register,Current.Offered,Current.Import";

/// Waits for the next periodic MeterValues of the transaction from `cursor`.
async fn next_sample(rig: &Rig, cursor: usize) -> Value {
    rig.wait_call_from(cursor, "MeterValues", |p| {
        p.get("transactionId").is_some()
            && p["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Periodic"
    })
    .await
    .payload
}

async fn composite(rig: &Rig, duration: u32) -> Value {
    call(
        rig,
        "GetCompositeSchedule",
        json!({ "connectorId": 1, "duration": duration, "chargingRateUnit": "A" }),
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn smart_charging_refuses_watts_and_a_recurring_profile_without_start() {
    let rig = Rig::start(&[], Policy::default()).await;
    let mut watts = tx_default(1, 0, 7000.0);
    watts["chargingSchedule"]["chargingRateUnit"] = json!("W");
    assert_eq!(set_profile(&rig, 1, watts).await, "Rejected");
    let mut recurring = tx_default(2, 0, 10.0);
    recurring["chargingProfileKind"] = json!("Recurring");
    recurring["recurrencyKind"] = json!("Daily");
    recurring["chargingSchedule"]
        .as_object_mut()
        .expect("a schedule object")
        .remove("startSchedule");
    assert_eq!(set_profile(&rig, 1, recurring).await, "Rejected");
    // Nothing was installed: the composite schedule is the charger's own maximum.
    let answer = composite(&rig, 600).await;
    assert_eq!(answer["status"], "Accepted", "{answer}");
    let periods = &answer["chargingSchedule"]["chargingSchedulePeriod"];
    assert_eq!(periods.as_array().map(Vec::len), Some(1), "{answer}");
    assert_eq!(periods[0]["limit"], json!(32.0), "{answer}");
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn tx_default_profile_limits_the_ev_and_zero_suspends_it() {
    let rig = Rig::start(
        &[
            ("MeterValuesSampledData", SAMPLED),
            ("MeterValueSampleInterval", "60"),
        ],
        Policy::default(),
    )
    .await;
    assert_eq!(
        set_profile(&rig, 1, tx_default(1, 0, 10.0)).await,
        "Accepted"
    );
    let c = rig.sandbox.cursor();
    rig.act(card("SMART")).await;
    rig.act(HwEvent::Plug).await;
    rig.wait_call_from(c, "StartTransaction", |_| true).await;
    rig.wait_status_from(c, "Charging").await;

    let first = next_sample(&rig, c).await;
    let c1 = rig.sandbox.cursor();
    let second = next_sample(&rig, c1).await;
    assert_eq!(sampled(&second, "Current.Offered").as_deref(), Some("10.0"));
    let drawn: f64 = sampled(&second, "Current.Import")
        .and_then(|v| v.parse().ok())
        .expect("Current.Import sampled");
    assert!(
        (drawn - 10.0).abs() < 0.05,
        "the EV draws 10 A, drew {drawn}"
    );
    let energy = |p: &Value| energy_registers(&p["meterValue"])[0];
    let per_minute = energy(&second) - energy(&first);
    let expected = 10.0 * 3.0 * 230.0 / 60.0;
    assert!(
        (per_minute - expected).abs() <= 1.5,
        "{per_minute} Wh in a minute at 10 A, expected {expected}"
    );

    let answer = composite(&rig, 600).await;
    assert_eq!(answer["status"], "Accepted");
    assert_eq!(answer["connectorId"], 1);
    let schedule = &answer["chargingSchedule"];
    assert_eq!(schedule["chargingRateUnit"], "A");
    let period = &schedule["chargingSchedulePeriod"][0];
    assert_eq!(period["startPeriod"], 0);
    assert!(period["limit"].is_f64(), "a decimal limit: {period}");
    assert_eq!(period["limit"], json!(10.0));

    // A higher stack level with limit 0 suspends the EV.
    let c = rig.sandbox.cursor();
    assert_eq!(
        set_profile(&rig, 1, tx_default(2, 1, 0.0)).await,
        "Accepted"
    );
    rig.wait_status_from(c, "SuspendedEVSE").await;
    let suspended = next_sample(&rig, c).await;
    assert_eq!(
        sampled(&suspended, "Current.Offered").as_deref(),
        Some("0.0")
    );
    let period = &composite(&rig, 600).await["chargingSchedule"]["chargingSchedulePeriod"][0];
    assert_eq!(period["limit"], json!(0.0));

    // Clearing it gives the 10 A back; clearing everything gives the hardware maximum.
    let c = rig.sandbox.cursor();
    let cleared = call(&rig, "ClearChargingProfile", json!({ "id": 2 })).await;
    assert_eq!(cleared, json!({ "status": "Accepted" }));
    rig.wait_status_from(c, "Charging").await;
    let sample = next_sample(&rig, c).await;
    assert_eq!(sampled(&sample, "Current.Offered").as_deref(), Some("10.0"));
    let cleared = call(
        &rig,
        "ClearChargingProfile",
        json!({ "chargingProfilePurpose": "TxDefaultProfile" }),
    )
    .await;
    assert_eq!(cleared, json!({ "status": "Accepted" }));
    let unknown = call(&rig, "ClearChargingProfile", json!({ "id": 77 })).await;
    assert_eq!(unknown, json!({ "status": "Unknown" }));
    let c = rig.sandbox.cursor();
    let sample = next_sample(&rig, c).await;
    assert_eq!(sampled(&sample, "Current.Offered").as_deref(), Some("32.0"));
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn remote_start_tx_profile_applies_to_the_started_transaction() {
    let rig = Rig::start(
        &[
            ("MeterValuesSampledData", SAMPLED),
            ("MeterValueSampleInterval", "60"),
        ],
        Policy::default(),
    )
    .await;
    let c = rig.sandbox.cursor();
    rig.act(HwEvent::Plug).await;
    rig.wait_status_from(c, "Preparing").await;
    let answer = call(
        &rig,
        "RemoteStartTransaction",
        json!({
            "connectorId": 1,
            "idTag": "REMOTE",
            "chargingProfile": {
                "chargingProfileId": 7,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": 6.0 }],
                },
            },
        }),
    )
    .await;
    assert_eq!(answer, json!({ "status": "Accepted" }));
    let start = rig.wait_call_from(c, "StartTransaction", |_| true).await;
    assert_eq!(start.payload["idTag"], "REMOTE");
    rig.wait_status_from(c, "Charging").await;
    let sample = next_sample(&rig, c).await;
    assert_eq!(sampled(&sample, "Current.Offered").as_deref(), Some("6.0"));
    let period = &composite(&rig, 600).await["chargingSchedule"]["chargingSchedulePeriod"][0];
    assert_eq!(period["limit"], json!(6.0));

    // The TxProfile ends with its transaction.
    rig.act(HwEvent::Unplug).await;
    rig.wait_call_from(c, "StopTransaction", |_| true).await;
    let cleared = call(&rig, "ClearChargingProfile", json!({ "id": 7 })).await;
    assert_eq!(cleared, json!({ "status": "Unknown" }));
    rig.shutdown().await;
}

// ----- Firmware Management -----------------------------------------------------------------

/// A charger that trusts `trusted` for firmware images, registered with a fresh sandbox.
async fn rig_trusting(trusted: Vec<chargectl::firmware::VerifyingKey>) -> Rig {
    let sandbox = chargectl::csms::Sandbox::start(chargectl::csms::SandboxOptions {
        first_transaction_id: 1000,
        ..Default::default()
    })
    .await
    .expect("sandbox starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = chargectl::emulator::Emulator::start(
        dir.path(),
        &chargectl::emulator::BootSettings {
            csms_url: Some(sandbox.url()),
            charge_point_id: Some(CP.into()),
            trusted_keys: trusted,
            ..Default::default()
        },
    )
    .await
    .expect("emulator starts");
    let rig = Rig {
        dir,
        sandbox,
        emu: Some(emu),
        past: Vec::new(),
    };
    rig.wait_status_from(0, "Available").await;
    rig
}

/// The FirmwareStatusNotification statuses on the wire, in order.
fn firmware_statuses(rig: &Rig) -> Vec<String> {
    rig.calls_of("FirmwareStatusNotification")
        .into_iter()
        .map(|p| p["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn update_firmware(location: &str) -> Value {
    json!({
        "location": location,
        "retrieveDate": in_secs(0),
        "retries": 2,
        "retryInterval": 30,
    })
}

fn active_version(rig: &Rig) -> String {
    rig.emu()
        .slots
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .active_version()
}

#[tokio::test(start_paused = true)]
async fn firmware_update_downloads_with_a_retry_installs_and_reboots_into_it() {
    let key = chargectl::firmware::keys::generate();
    let image =
        chargectl::firmware::pack(&vec![0x5a; 64 * 1024], "2.2.0", &key).expect("an image packs");
    let served = image.clone();
    let server = http::Server::start(move |i, _| {
        if i == 0 {
            http::Reply::Cut {
                body: served.clone(),
                send: served.len() / 2,
            }
        } else {
            http::Reply::Full {
                status: 200,
                body: served.clone(),
            }
        }
    })
    .await;
    let rig = rig_trusting(vec![key.verifying_key()]).await;
    let c = rig.sandbox.cursor();
    let answer = call(
        &rig,
        "UpdateFirmware",
        update_firmware(&server.url("/fw/2.2.0.img")),
    )
    .await;
    assert_eq!(answer, json!({}));
    let boot = rig
        .wait_call_from(c, "BootNotification", |p| p["firmwareVersion"] == "2.2.0")
        .await;
    assert_eq!(boot.payload["chargePointModel"], "Go");
    rig.wait_call_from(c, "FirmwareStatusNotification", |p| {
        p["status"] == "Installed"
    })
    .await;
    assert_eq!(
        firmware_statuses(&rig),
        ["Downloading", "Downloaded", "Installing", "Installed"]
    );
    // The Installed report comes after the BootNotification of the new firmware.
    let calls = calls_in(&rig.sandbox.frames(CP)[..]);
    let boot_at = calls.iter().position(|c| c.id == boot.id);
    let installed_at = calls.iter().position(|c| {
        c.action == "FirmwareStatusNotification" && c.payload["status"] == "Installed"
    });
    assert!(boot_at < installed_at, "Installed after the reboot");
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "one interrupted try, one whole");
    assert!(
        requests
            .iter()
            .all(|r| r.method == "GET" && r.path == "/fw/2.2.0.img")
    );
    assert_eq!(active_version(&rig), "2.2.0");
    let fw = trigger(&rig, "FirmwareStatusNotification", None, |_| true).await;
    assert_eq!(fw, json!({ "status": "Idle" }), "idle after Installed");
    rig.shutdown().await;
}

/// Verifying and writing an image runs off the charge point's task: while the slot writer is
/// held up (here by holding the slots' lock), the charger still answers the CSMS.
#[tokio::test(start_paused = true)]
#[allow(clippy::await_holding_lock)] // holding the lock across awaits is what this test does
async fn firmware_install_runs_off_the_charge_point_and_calls_are_answered_meanwhile() {
    let key = chargectl::firmware::keys::generate();
    let image =
        chargectl::firmware::pack(&vec![0x3c; 64 * 1024], "2.3.0", &key).expect("an image packs");
    let server = http::Server::start(move |_, _| http::Reply::Full {
        status: 200,
        body: image.clone(),
    })
    .await;
    let rig = rig_trusting(vec![key.verifying_key()]).await;
    let slots = rig.emu().slots.clone();
    let held = slots.lock().unwrap_or_else(|e| e.into_inner());
    let c = rig.sandbox.cursor();
    call(
        &rig,
        "UpdateFirmware",
        update_firmware(&server.url("/fw.img")),
    )
    .await;
    rig.wait_call_from(c, "FirmwareStatusNotification", |p| {
        p["status"] == "Installing"
    })
    .await;
    // The install waits for the slots; the charger answers meanwhile.
    let answer = call(
        &rig,
        "GetConfiguration",
        json!({ "key": ["HeartbeatInterval"] }),
    )
    .await;
    assert_eq!(answer["configurationKey"][0]["key"], "HeartbeatInterval");
    let answer = call(&rig, "DataTransfer", json!({ "vendorId": "nobody" })).await;
    assert_eq!(answer, json!({ "status": "UnknownVendorId" }));
    assert_eq!(
        rig.calls_of("BootNotification").len(),
        1,
        "not rebooted yet"
    );
    drop(held);
    rig.wait_call_from(c, "BootNotification", |p| p["firmwareVersion"] == "2.3.0")
        .await;
    rig.wait_call_from(c, "FirmwareStatusNotification", |p| {
        p["status"] == "Installed"
    })
    .await;
    assert_eq!(active_version(&rig), "2.3.0");
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn firmware_signed_by_an_untrusted_key_is_not_installed() {
    let trusted = chargectl::firmware::keys::generate();
    let stranger = chargectl::firmware::keys::generate();
    let image = chargectl::firmware::pack(&vec![0xa5; 16 * 1024], "9.9.9", &stranger)
        .expect("an image packs");
    let server = http::Server::start(move |_, _| http::Reply::Full {
        status: 200,
        body: image.clone(),
    })
    .await;
    let rig = rig_trusting(vec![trusted.verifying_key()]).await;
    let c = rig.sandbox.cursor();
    call(
        &rig,
        "UpdateFirmware",
        update_firmware(&server.url("/evil.img")),
    )
    .await;
    rig.wait_call_from(c, "FirmwareStatusNotification", |p| {
        p["status"] == "InstallationFailed"
    })
    .await;
    assert_eq!(
        firmware_statuses(&rig),
        [
            "Downloading",
            "Downloaded",
            "Installing",
            "InstallationFailed"
        ]
    );
    assert_eq!(active_version(&rig), "2.1.0");
    let boot = trigger(&rig, "BootNotification", None, |_| true).await;
    assert_eq!(boot["firmwareVersion"], "2.1.0");
    assert_eq!(
        rig.calls_of("BootNotification").len(),
        2,
        "no reboot: the first boot and the triggered one"
    );
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn firmware_installation_waits_for_the_transaction_to_stop() {
    let key = chargectl::firmware::keys::generate();
    let image =
        chargectl::firmware::pack(&vec![1; 8 * 1024], "2.3.0", &key).expect("an image packs");
    let server = http::Server::start(move |_, _| http::Reply::Full {
        status: 200,
        body: image.clone(),
    })
    .await;
    let rig = rig_trusting(vec![key.verifying_key()]).await;
    let c = rig.sandbox.cursor();
    rig.act(card("BUSY")).await;
    rig.act(HwEvent::Plug).await;
    rig.wait_call_from(c, "StartTransaction", |_| true).await;
    rig.wait_status_from(c, "Charging").await;
    call(
        &rig,
        "UpdateFirmware",
        update_firmware(&server.url("/fw.img")),
    )
    .await;
    rig.wait_call_from(c, "FirmwareStatusNotification", |p| {
        p["status"] == "Downloaded"
    })
    .await;
    sleep(Duration::from_secs(600)).await;
    assert_eq!(firmware_statuses(&rig), ["Downloading", "Downloaded"]);
    assert_eq!(active_version(&rig), "2.1.0");
    assert!(rig.calls_of("StopTransaction").is_empty());

    let stop_cursor = rig.sandbox.cursor();
    rig.act(HwEvent::Unplug).await;
    let stop = rig
        .wait_call_from(stop_cursor, "StopTransaction", |_| true)
        .await;
    rig.wait_call_from(stop_cursor, "BootNotification", |p| {
        p["firmwareVersion"] == "2.3.0"
    })
    .await;
    rig.wait_call_from(stop_cursor, "FirmwareStatusNotification", |p| {
        p["status"] == "Installed"
    })
    .await;
    let calls = calls_in(&rig.sandbox.frames(CP)[..]);
    let stop_at = calls.iter().position(|c| c.id == stop.id);
    let installing_at = calls.iter().position(|c| {
        c.action == "FirmwareStatusNotification" && c.payload["status"] == "Installing"
    });
    assert!(stop_at < installing_at, "installed only after the stop");
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn get_diagnostics_uploads_the_log_as_a_form_and_ftp_fails() {
    let server = http::Server::start(|_, _| http::Reply::Full {
        status: 200,
        body: b"ok".to_vec(),
    })
    .await;
    let rig = Rig::start(&[], Policy::default()).await;
    let c = rig.sandbox.cursor();
    let answer = call(
        &rig,
        "GetDiagnostics",
        json!({ "location": server.url("/diagnostics") }),
    )
    .await;
    let file_name = answer["fileName"]
        .as_str()
        .unwrap_or_else(|| panic!("no fileName in {answer}"))
        .to_string();
    assert!(!file_name.is_empty());
    rig.wait_call_from(c, "DiagnosticsStatusNotification", |p| {
        p["status"] == "Uploaded"
    })
    .await;
    let statuses: Vec<Value> = rig
        .calls_of("DiagnosticsStatusNotification")
        .into_iter()
        .map(|p| p["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("Uploading"), json!("Uploaded")]);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/diagnostics");
    let parts = http::parse_multipart(&requests[0]);
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!(parts[0].name.as_deref(), Some("file"));
    assert_eq!(parts[0].filename.as_deref(), Some(file_name.as_str()));
    let log = String::from_utf8_lossy(&parts[0].data);
    assert!(log.contains("firmware slots"), "the charger's log: {log}");
    assert!(log.lines().count() >= 2, "log lines: {log}");

    // FTP is not supported (release notes): the upload fails.
    let c = rig.sandbox.cursor();
    let answer = call(
        &rig,
        "GetDiagnostics",
        json!({ "location": "ftp://127.0.0.1:21/diagnostics" }),
    )
    .await;
    assert!(answer["fileName"].is_string(), "{answer}");
    let failed = rig
        .wait_call_from(c, "DiagnosticsStatusNotification", |_| true)
        .await;
    assert_eq!(failed.payload, json!({ "status": "UploadFailed" }));
    assert_eq!(server.requests().len(), 1);
    rig.shutdown().await;
}
