//! Scenario tests of the remaining OCPP 1.6 feature profiles through the charge point: Local Auth
//! List Management, Reservation, Smart Charging, Remote Trigger and Firmware Management. The
//! emulated charger talks to the sandbox CSMS on 127.0.0.1, on tokio's paused clock; each test
//! asserts the charger's answers and the frames on the wire.

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
