//! Charging sessions end to end: the emulated charger against the sandbox CSMS on 127.0.0.1, on
//! tokio's paused clock (the CSMS stopped and restarted mid-session), and the real binary killed
//! with SIGKILL mid-outage. Every test asserts what crossed the wire.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

#[path = "common/sessions.rs"]
mod sessions_common;

use chargectl::csms::{AuthorizationStatus, IdTagInfo, Policy};
use chargectl::stack::hardware::HwEvent;
use chargectl::stack::rpc::ErrorCode;
use serde_json::{Value, json};
use sessions_common::*;
use std::time::Duration;
use tokio::time::{Instant, sleep};

fn card(tag: &str) -> HwEvent {
    HwEvent::Card { id_tag: tag.into() }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn tx_id(p: &Value) -> i64 {
    p["transactionId"]
        .as_i64()
        .unwrap_or_else(|| panic!("no transactionId in {p}"))
}

/// Asserts meterStop - meterStart equals the energy drawn at 16 A on 3 x 230 V for `charging`.
fn assert_energy(start: &Value, stop: &Value, charging: Duration) {
    let drawn = stop["meterStop"].as_i64().expect("meterStop") as f64
        - start["meterStart"].as_i64().expect("meterStart") as f64;
    let expected = WH_PER_SECOND_16A * secs(charging);
    assert!(
        (drawn - expected).abs() <= 1.0,
        "meterStop - meterStart = {drawn} Wh, the EV drew {expected:.2} Wh in {charging:?}"
    );
}

// ----- the CSMS goes away and comes back ------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn csms_outage_loses_nothing_and_an_offline_transaction_gets_its_id() {
    let mut rig = Rig::start(&[("MeterValueSampleInterval", "10")], Policy::default()).await;
    let c = rig.sandbox.cursor();
    rig.act(HwEvent::Plug).await;
    rig.wait_status_from(c, "Preparing").await;
    rig.act(card("TAG1")).await;
    let start_a = rig.wait_call_from(c, "StartTransaction", |_| true).await;
    let t_a = Instant::now();
    let id_a = rig
        .wait_call_from(c, "MeterValues", |p| p.get("transactionId").is_some())
        .await;
    let id_a = tx_id(&id_a.payload);
    assert_eq!(id_a, 1000, "the CSMS's first transaction id");

    sleep(Duration::from_secs(25)).await;
    rig.stop_csms().await;
    let t_off = Instant::now();

    // Offline: transaction A ends by unplug, transaction B starts with the cached card.
    sleep(Duration::from_secs(120)).await;
    rig.act(HwEvent::Unplug).await;
    let t_stop_a = Instant::now();
    sleep(Duration::from_secs(20)).await;
    rig.act(HwEvent::Plug).await;
    rig.act(card("TAG1")).await;
    let t_b = Instant::now();
    sleep(Duration::from_secs(200)).await;
    let outage_end = Instant::now();
    rig.restart_csms().await;
    let t_on = Instant::now();
    assert!(
        t_on - outage_end <= Duration::from_secs(80),
        "reconnects within the backoff"
    );

    // B goes on online, then ends by unplug.
    let c2 = rig.sandbox.cursor();
    let start_b = rig.wait_call_from(0, "StartTransaction", |_| true).await;
    let id_b = tx_id(&rig.sandbox_answer(&start_b.id));
    assert_eq!(id_b, 1001, "the restarted CSMS gave the next id");
    rig.wait_call_from(c2, "MeterValues", |p| p["transactionId"] == id_b)
        .await;
    sleep(Duration::from_secs(30)).await;
    rig.act(HwEvent::Unplug).await;
    let t_stop_b = Instant::now();
    let stop_b = rig
        .wait_call_from(0, "StopTransaction", |p| p["transactionId"] == id_b)
        .await;

    // Order and ids: A's messages, then B's, each exactly once.
    let tx = rig.tx_calls();
    let actions: Vec<&str> = tx.iter().map(|c| c.action.as_str()).collect();
    let stop_a_pos = actions
        .iter()
        .position(|a| *a == "StopTransaction")
        .expect("A stopped");
    let start_b_pos = actions
        .iter()
        .rposition(|a| *a == "StartTransaction")
        .expect("B started");
    assert_eq!(actions[0], "StartTransaction");
    assert!(actions[1..stop_a_pos].iter().all(|a| *a == "MeterValues"));
    assert_eq!(start_b_pos, stop_a_pos + 1, "{actions:?}");
    assert!(
        actions[start_b_pos + 1..actions.len() - 1]
            .iter()
            .all(|a| *a == "MeterValues")
    );
    assert_eq!(actions.last(), Some(&"StopTransaction"));
    assert_eq!(
        actions.iter().filter(|a| **a == "StartTransaction").count(),
        2
    );
    assert_eq!(
        actions.iter().filter(|a| **a == "StopTransaction").count(),
        2
    );
    for c in &tx[1..=stop_a_pos] {
        assert_eq!(tx_id(&c.payload), id_a, "{} {}", c.action, c.payload);
    }
    for c in &tx[start_b_pos + 1..] {
        assert_eq!(tx_id(&c.payload), id_b, "{} {}", c.action, c.payload);
    }

    // Sampled every 10 s from each start, stamped when sampled (not when sent).
    let t0_a = parse_time(&start_a.payload["timestamp"]);
    let mv_a: Vec<&Call> = tx[1..stop_a_pos].iter().collect();
    let n_a = (secs(t_stop_a - t_a) / 10.0).floor() as usize;
    assert_eq!(mv_a.len(), n_a, "one MeterValues per 10 s of A");
    for (k, c) in mv_a.iter().enumerate() {
        let at = parse_time(&c.payload["meterValue"][0]["timestamp"]);
        assert_eq!(
            at - t0_a,
            chrono::Duration::seconds(10 * (k as i64 + 1)),
            "MeterValues {k} of A stamped when it was taken"
        );
    }
    let stop_a = &tx[stop_a_pos].payload;
    assert_eq!(stop_a["reason"], "EVDisconnected");
    let stop_a_at = parse_time(&stop_a["timestamp"]);
    assert_eq!(
        (stop_a_at - t0_a).num_milliseconds(),
        (t_stop_a - t_a).as_millis() as i64,
        "the offline StopTransaction keeps the time of the unplug"
    );
    let start_b_at = parse_time(&start_b.payload["timestamp"]);
    assert_eq!(
        (start_b_at - t0_a).num_milliseconds(),
        (t_b - t_a).as_millis() as i64,
        "the offline StartTransaction keeps the time of the card"
    );
    let mv_b: Vec<&Call> = tx[start_b_pos + 1..tx.len() - 1].iter().collect();
    assert_eq!(mv_b.len(), (secs(t_stop_b - t_b) / 10.0).floor() as usize);
    for (k, c) in mv_b.iter().enumerate() {
        let at = parse_time(&c.payload["meterValue"][0]["timestamp"]);
        assert_eq!(
            at - start_b_at,
            chrono::Duration::seconds(10 * (k as i64 + 1))
        );
    }

    // Energy adds up and the register only grows.
    assert_energy(&start_a.payload, stop_a, t_stop_a - t_a);
    assert_energy(&start_b.payload, &stop_b.payload, t_stop_b - t_b);
    let mut registers = vec![start_a.payload["meterStart"].as_f64().unwrap_or(-1.0)];
    for c in &tx {
        match c.action.as_str() {
            "MeterValues" => registers.extend(energy_registers(&c.payload["meterValue"])),
            "StartTransaction" => registers.push(c.payload["meterStart"].as_f64().unwrap_or(-1.0)),
            _ => registers.push(c.payload["meterStop"].as_f64().unwrap_or(-1.0)),
        }
    }
    assert!(
        registers.windows(2).all(|w| w[0] <= w[1]),
        "Energy.Active.Import.Register is monotonic: {registers:?}"
    );

    // After the reconnect the queued transaction messages went before anything else.
    let after = calls_in(&rig.sandbox.frames(CP));
    let first_other = after
        .iter()
        .position(|c| !is_tx_message(&c.action, &c.payload))
        .unwrap_or(after.len());
    let offline_cutoff = t0_a
        + chrono::Duration::milliseconds((outage_end - t_a).as_millis() as i64)
        - chrono::Duration::seconds(1);
    let queued_offline = tx
        .iter()
        .filter(|c| {
            let at = match c.action.as_str() {
                "MeterValues" => parse_time(&c.payload["meterValue"][0]["timestamp"]),
                _ => parse_time(&c.payload["timestamp"]),
            };
            at > t0_a + chrono::Duration::milliseconds((t_off - t_a).as_millis() as i64)
                && at < offline_cutoff
        })
        .count();
    assert!(
        queued_offline >= 30,
        "{queued_offline} messages queued offline"
    );
    assert!(
        first_other >= queued_offline,
        "{queued_offline} queued transaction messages, but a {} went first at {first_other}",
        after[first_other].action
    );
    rig.shutdown().await;
}

// ----- authorization --------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn free_charging_starts_on_plug_without_card_or_authorize() {
    let rig = Rig::start(
        &[("FreeCharging", "true"), ("FreeChargingIdTag", "FREEBIE")],
        Policy::default(),
    )
    .await;
    let c = rig.sandbox.cursor();
    rig.act(HwEvent::Plug).await;
    let start = rig.wait_call_from(c, "StartTransaction", |_| true).await;
    let t0 = Instant::now();
    assert_eq!(start.payload["idTag"], "FREEBIE");
    rig.wait_status_from(c, "Charging").await;
    sleep(Duration::from_secs(60)).await;
    rig.act(HwEvent::Unplug).await;
    let charged = t0.elapsed();
    let stop = rig.wait_call_from(c, "StopTransaction", |_| true).await;
    assert_eq!(stop.payload["reason"], "EVDisconnected");
    assert_energy(&start.payload, &stop.payload, charged);
    assert!(
        rig.calls_of("Authorize").is_empty(),
        "no Authorize with FreeCharging"
    );
    rig.shutdown().await;
}

async fn offline_unknown_id(allow: bool) {
    let setting = if allow { "true" } else { "false" };
    let mut rig = Rig::start(
        &[("AllowOfflineTxForUnknownId", setting)],
        Policy::default(),
    )
    .await;
    rig.stop_csms().await;
    rig.act(HwEvent::Plug).await;
    rig.act(card("STRANGER")).await;
    let t_card = Instant::now();
    sleep(Duration::from_secs(90)).await;
    rig.restart_csms().await;
    // After the reconnect the charger reports the status it reached offline.
    let expected = if allow { "Charging" } else { "Preparing" };
    let status = rig.wait_status_from(0, expected).await;
    let starts = rig.calls_of("StartTransaction");
    if allow {
        assert_eq!(starts.len(), 1, "{starts:?}");
        assert_eq!(starts[0]["idTag"], "STRANGER");
        let calls = calls_in(&rig.sandbox.frames(CP));
        let start_pos = calls.iter().position(|c| c.action == "StartTransaction");
        let status_pos = calls.iter().position(|c| c.id == status.id);
        assert!(start_pos < status_pos, "the transaction message goes first");
        let boot_at = parse_time(&status.payload["timestamp"]);
        let started = parse_time(&starts[0]["timestamp"]);
        assert!(
            (boot_at - started).num_seconds() as f64 >= secs(t_card.elapsed()) - 80.0 - 1.0,
            "StartTransaction stamped at the card, not at the reconnect"
        );
    } else {
        assert!(
            starts.is_empty(),
            "an unknown id is refused offline: {starts:?}"
        );
    }
    assert!(
        rig.calls_of("Authorize").is_empty(),
        "nothing asked offline"
    );
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn offline_unknown_id_starts_when_allowed() {
    offline_unknown_id(true).await;
}

#[tokio::test(start_paused = true)]
async fn offline_unknown_id_is_refused_when_not_allowed() {
    offline_unknown_id(false).await;
}

/// One online session for `tag` (card, plug, card to stop) so the cache learns it.
async fn session_by_card(rig: &Rig, tag: &str) {
    let c = rig.sandbox.cursor();
    rig.act(card(tag)).await;
    rig.act(HwEvent::Plug).await;
    rig.wait_call_from(c, "StartTransaction", |p| p["idTag"] == tag)
        .await;
    rig.act(card(tag)).await;
    let stop = rig.wait_call_from(c, "StopTransaction", |_| true).await;
    assert_eq!(stop.payload["reason"], "Local");
    assert_eq!(stop.payload["idTag"], tag);
    rig.act(HwEvent::Unplug).await;
    rig.wait_status_from(c, "Available").await;
}

async fn local_authorize_offline(enabled: bool) {
    let setting = if enabled { "true" } else { "false" };
    let mut rig = Rig::start(&[("LocalAuthorizeOffline", setting)], Policy::default()).await;
    session_by_card(&rig, "CACHED1").await;
    assert_eq!(rig.calls_of("Authorize").len(), 1);
    rig.stop_csms().await;
    rig.act(HwEvent::Plug).await;
    rig.act(card("CACHED1")).await;
    sleep(Duration::from_secs(30)).await;
    rig.restart_csms().await;
    let expected = if enabled { "Charging" } else { "Preparing" };
    rig.wait_status_from(0, expected).await;
    let starts = calls_in(&rig.sandbox.frames(CP))
        .into_iter()
        .filter(|c| c.action == "StartTransaction")
        .count();
    assert_eq!(starts, usize::from(enabled));
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn local_authorize_offline_uses_the_cache() {
    local_authorize_offline(true).await;
}

#[tokio::test(start_paused = true)]
async fn local_authorize_offline_off_refuses_cached_ids() {
    local_authorize_offline(false).await;
}

#[tokio::test(start_paused = true)]
async fn local_pre_authorize_starts_without_waiting_for_authorize() {
    let rig = Rig::start(&[("LocalPreAuthorize", "true")], Policy::default()).await;
    session_by_card(&rig, "PRE1").await;
    assert_eq!(
        rig.calls_of("Authorize").len(),
        1,
        "unknown at first: asked"
    );
    session_by_card(&rig, "PRE1").await;
    assert_eq!(
        rig.calls_of("Authorize").len(),
        1,
        "cached and valid: started at once without Authorize"
    );
    assert_eq!(rig.calls_of("StartTransaction").len(), 2);
    rig.shutdown().await;
}

fn policy_with(tag: &str, status: AuthorizationStatus) -> Policy {
    let mut p = Policy::default();
    p.id_tags
        .insert(tag.to_string(), IdTagInfo::with_status(status));
    p
}

#[tokio::test(start_paused = true)]
async fn invalid_id_in_start_conf_stops_with_deauthorized() {
    let rig = Rig::start(
        &[("StopTransactionOnInvalidId", "true")],
        policy_with("BAD", AuthorizationStatus::Invalid),
    )
    .await;
    let c = rig.sandbox.cursor();
    rig.act(HwEvent::Plug).await;
    let answer = rig
        .sandbox
        .call(
            CP,
            "RemoteStartTransaction",
            json!({"idTag": "BAD", "connectorId": 1}),
        )
        .await
        .expect("RemoteStart answered");
    assert_eq!(answer["status"], "Accepted");
    let start = rig.wait_call_from(c, "StartTransaction", |_| true).await;
    let id = tx_id(&rig.sandbox_answer(&start.id));
    let stop = rig.wait_call_from(c, "StopTransaction", |_| true).await;
    assert_eq!(stop.payload["reason"], "DeAuthorized");
    assert_eq!(tx_id(&stop.payload), id);
    rig.wait_status_from(c, "Finishing").await;
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn blocked_id_in_start_conf_keeps_the_transaction_suspended() {
    let rig = Rig::start(
        &[("StopTransactionOnInvalidId", "false")],
        policy_with("BLOCKED", AuthorizationStatus::Blocked),
    )
    .await;
    let c = rig.sandbox.cursor();
    rig.act(HwEvent::Plug).await;
    rig.sandbox
        .call(CP, "RemoteStartTransaction", json!({"idTag": "BLOCKED"}))
        .await
        .expect("RemoteStart answered");
    let start = rig.wait_call_from(c, "StartTransaction", |_| true).await;
    rig.wait_status_from(c, "SuspendedEVSE").await;
    sleep(Duration::from_secs(600)).await;
    assert!(
        rig.calls_of("StopTransaction").is_empty(),
        "transaction kept"
    );
    rig.act(HwEvent::Unplug).await;
    let stop = rig.wait_call_from(c, "StopTransaction", |_| true).await;
    assert_eq!(stop.payload["reason"], "EVDisconnected");
    let drawn = stop.payload["meterStop"].as_i64().unwrap_or(-1)
        - start.payload["meterStart"].as_i64().unwrap_or(-1);
    assert!(
        drawn <= 1,
        "no energy while suspended by the EVSE: {drawn} Wh"
    );
    rig.shutdown().await;
}

// ----- remote control and stop reasons --------------------------------------------------------

async fn remote_start_and_stop(authorize_remote: bool) {
    let setting = if authorize_remote { "true" } else { "false" };
    let rig = Rig::start(&[("AuthorizeRemoteTxRequests", setting)], Policy::default()).await;
    let c = rig.sandbox.cursor();
    rig.act(HwEvent::Plug).await;
    let answer = rig
        .sandbox
        .call(CP, "RemoteStartTransaction", json!({"idTag": "REMOTE1"}))
        .await
        .expect("RemoteStart answered");
    assert_eq!(answer["status"], "Accepted");
    let start = rig.wait_call_from(c, "StartTransaction", |_| true).await;
    assert_eq!(start.payload["idTag"], "REMOTE1");
    let authorize = calls_in(&rig.sandbox.frames(CP))
        .into_iter()
        .filter(|c| c.action == "Authorize")
        .count();
    assert_eq!(authorize, usize::from(authorize_remote));
    let id = tx_id(&rig.sandbox_answer(&start.id));
    let wrong = rig
        .sandbox
        .call(
            CP,
            "RemoteStopTransaction",
            json!({"transactionId": id + 7}),
        )
        .await
        .expect("answered");
    assert_eq!(wrong["status"], "Rejected", "unknown transaction id");
    let ok = rig
        .sandbox
        .call(CP, "RemoteStopTransaction", json!({"transactionId": id}))
        .await
        .expect("answered");
    assert_eq!(ok["status"], "Accepted");
    let stop = rig.wait_call_from(c, "StopTransaction", |_| true).await;
    assert_eq!(stop.payload["reason"], "Remote");
    assert_eq!(tx_id(&stop.payload), id);
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn remote_start_without_authorize_and_remote_stop() {
    remote_start_and_stop(false).await;
}

#[tokio::test(start_paused = true)]
async fn remote_start_with_authorize_and_remote_stop() {
    remote_start_and_stop(true).await;
}

#[tokio::test(start_paused = true)]
async fn status_sequence_through_a_session() {
    let rig = Rig::start(&[], Policy::default()).await;
    let c = rig.sandbox.cursor();
    rig.act(HwEvent::Plug).await;
    rig.wait_status_from(c, "Preparing").await;
    rig.act(card("SEQ1")).await;
    rig.wait_status_from(c, "Charging").await;
    sleep(Duration::from_secs(30)).await;
    rig.act(HwEvent::EvDemand { amps: 0.0 }).await;
    rig.wait_status_from(c, "SuspendedEV").await;
    sleep(Duration::from_secs(30)).await;
    let c2 = rig.sandbox.cursor();
    rig.act(HwEvent::EvDemand { amps: 16.0 }).await;
    rig.wait_status_from(c2, "Charging").await;
    sleep(Duration::from_secs(30)).await;
    rig.act(card("SEQ1")).await;
    let stop = rig.wait_call_from(c, "StopTransaction", |_| true).await;
    assert_eq!(stop.payload["reason"], "Local");
    rig.wait_status_from(c, "Finishing").await;
    rig.act(HwEvent::Unplug).await;
    rig.wait_status_from(c, "Available").await;
    let statuses = rig.statuses();
    let from = statuses
        .iter()
        .position(|s| s == "Preparing")
        .expect("Preparing");
    assert_eq!(
        statuses[from - 1..],
        [
            "Available",
            "Preparing",
            "Charging",
            "SuspendedEV",
            "Charging",
            "Finishing",
            "Available"
        ]
    );
    let start = &rig.calls_of("StartTransaction")[0];
    // 30 s + 30 s at 16 A, 30 s at 0 A.
    let drawn = stop.payload["meterStop"].as_i64().unwrap_or(-1)
        - start["meterStart"].as_i64().unwrap_or(-1);
    assert!(
        (drawn as f64 - 60.0 * WH_PER_SECOND_16A).abs() <= 1.0,
        "{drawn} Wh"
    );
    rig.shutdown().await;
}

async fn reset_during_transaction(kind: &str, reason: &str) {
    let rig = Rig::start(&[], Policy::default()).await;
    let c = rig.sandbox.cursor();
    rig.act(HwEvent::Plug).await;
    rig.act(card("RST1")).await;
    let start = rig.wait_call_from(c, "StartTransaction", |_| true).await;
    let id = tx_id(&rig.sandbox_answer(&start.id));
    sleep(Duration::from_secs(20)).await;
    let answer = rig
        .sandbox
        .call(CP, "Reset", json!({"type": kind}))
        .await
        .expect("Reset answered");
    assert_eq!(answer["status"], "Accepted");
    let stop = rig.wait_call_from(c, "StopTransaction", |_| true).await;
    assert_eq!(stop.payload["reason"], reason);
    assert_eq!(tx_id(&stop.payload), id);
    // The charger boots again afterwards and reports the plugged connector; the stop is not
    // sent twice.
    rig.wait_call_from(c, "BootNotification", |_| true).await;
    let boots = rig.calls_of("BootNotification").len();
    assert_eq!(boots, 2, "booted once more after the reset");
    rig.wait_status_from(c, "Preparing").await;
    assert_eq!(rig.calls_of("StopTransaction").len(), 1);
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn soft_reset_stops_the_transaction() {
    reset_during_transaction("Soft", "SoftReset").await;
}

#[tokio::test(start_paused = true)]
async fn hard_reset_stops_the_transaction() {
    reset_during_transaction("Hard", "HardReset").await;
}

#[tokio::test(start_paused = true)]
async fn connection_timeout_cancels_a_card_without_plug() {
    let rig = Rig::start(&[("ConnectionTimeOut", "45")], Policy::default()).await;
    let c = rig.sandbox.cursor();
    rig.act(card("EARLY")).await;
    rig.wait_status_from(c, "Preparing").await;
    let t = Instant::now();
    rig.wait_status_from(c, "Available").await;
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(45) && waited <= Duration::from_secs(46),
        "Preparing for {waited:?}"
    );
    rig.act(HwEvent::Plug).await;
    rig.wait_status_from(rig.sandbox.cursor(), "Preparing")
        .await;
    sleep(Duration::from_secs(60)).await;
    assert!(
        rig.calls_of("StartTransaction").is_empty(),
        "the expired authorization does not start a transaction"
    );
    rig.shutdown().await;
}

// ----- delivery rules and meter values ---------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn transaction_message_attempts_with_call_errors() {
    let rig = Rig::start(
        &[
            ("TransactionMessageAttempts", "3"),
            ("TransactionMessageRetryInterval", "10"),
            ("MeterValueSampleInterval", "0"),
        ],
        Policy::default(),
    )
    .await;
    let c = rig.sandbox.cursor();
    rig.act(HwEvent::Plug).await;
    rig.act(card("RETRY1")).await;
    rig.wait_call_from(c, "StartTransaction", |_| true).await;
    rig.sandbox.update_policy(|p| {
        p.call_errors.insert(
            "StopTransaction".into(),
            (ErrorCode::InternalError, "database down".into()),
        );
    });
    rig.act(HwEvent::Unplug).await;
    let mut at = Vec::new();
    for _ in 0..3 {
        rig.next_call("StopTransaction", |_| true).await;
        at.push(Instant::now());
    }
    assert_eq!(at[1] - at[0], Duration::from_secs(10), "RetryInterval x 1");
    assert_eq!(at[2] - at[1], Duration::from_secs(20), "RetryInterval x 2");
    // Given up after 3 attempts: the queue moves on.
    rig.sandbox.update_policy(|p| p.call_errors.clear());
    sleep(Duration::from_secs(120)).await;
    assert_eq!(rig.calls_of("StopTransaction").len(), 3);
    let c = rig.sandbox.cursor();
    rig.act(HwEvent::Plug).await;
    rig.act(card("RETRY1")).await;
    rig.wait_call_from(c, "StartTransaction", |_| true).await;
    rig.act(HwEvent::Unplug).await;
    let stop = rig.wait_call_from(c, "StopTransaction", |_| true).await;
    assert_eq!(stop.payload["transactionId"], 1001);
    assert_eq!(rig.calls_of("StopTransaction").len(), 4);
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn clock_aligned_meter_values() {
    let rig = Rig::start(
        &[
            ("ClockAlignedDataInterval", "900"),
            ("MeterValueSampleInterval", "0"),
        ],
        Policy::default(),
    )
    .await;
    let c = rig.sandbox.cursor();
    rig.act(HwEvent::Plug).await;
    rig.act(card("ALIGN1")).await;
    let start = rig.wait_call_from(c, "StartTransaction", |_| true).await;
    let id = tx_id(&rig.sandbox_answer(&start.id));
    sleep(Duration::from_secs(3600)).await;
    rig.act(HwEvent::Unplug).await;
    rig.wait_call_from(c, "StopTransaction", |_| true).await;
    let aligned: Vec<Value> = rig
        .calls_of("MeterValues")
        .into_iter()
        .filter(|p| p["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock")
        .collect();
    let in_tx: Vec<&Value> = aligned
        .iter()
        .filter(|p| p.get("transactionId").is_some())
        .collect();
    assert_eq!(
        in_tx.len(),
        4,
        "one per 15 minutes for an hour: {aligned:?}"
    );
    let mut last = 0.0;
    for p in &in_tx {
        assert_eq!(tx_id(p), id);
        let at = parse_time(&p["meterValue"][0]["timestamp"]);
        assert_eq!(at.timestamp() % 900, 0, "aligned to the quarter hour: {at}");
        assert_eq!(at.timestamp_subsec_millis(), 0, "{at}");
        let reg = energy_registers(&p["meterValue"])[0];
        assert!(reg > last);
        last = reg;
    }
    // Outside a transaction aligned values go without transactionId.
    sleep(Duration::from_secs(900)).await;
    let idle = rig
        .calls_of("MeterValues")
        .into_iter()
        .filter(|p| p.get("transactionId").is_none())
        .count();
    assert!(idle >= 1, "aligned MeterValues when idle");
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn stop_transaction_data_is_capped() {
    let rig = Rig::start(
        &[
            ("StopTxnSampledData", "Energy.Active.Import.Register"),
            ("StopTransactionMaxMeterValues", "5"),
            ("MeterValueSampleInterval", "10"),
        ],
        Policy::default(),
    )
    .await;
    let c = rig.sandbox.cursor();
    rig.act(HwEvent::Plug).await;
    rig.act(card("CAP1")).await;
    let start = rig.wait_call_from(c, "StartTransaction", |_| true).await;
    sleep(Duration::from_secs(200)).await;
    rig.act(HwEvent::Unplug).await;
    let stop = rig.wait_call_from(c, "StopTransaction", |_| true).await;
    let data = stop.payload["transactionData"]
        .as_array()
        .expect("transactionData");
    assert_eq!(data.len(), 5, "{data:?}");
    assert_eq!(data[0]["sampledValue"][0]["context"], "Transaction.Begin");
    assert_eq!(data[4]["sampledValue"][0]["context"], "Transaction.End");
    let regs = energy_registers(&stop.payload["transactionData"]);
    assert!(regs.windows(2).all(|w| w[0] < w[1]), "{regs:?}");
    assert_eq!(
        regs[0],
        start.payload["meterStart"].as_f64().unwrap_or(-1.0)
    );
    assert_eq!(regs[4], stop.payload["meterStop"].as_f64().unwrap_or(-1.0));
    rig.shutdown().await;
}

// ----- crash windows ---------------------------------------------------------------------------

/// The state a power loss leaves when it strikes after StopTransaction was journaled but before
/// the transaction's state file was removed.
fn crash_after_stop_journaled(dir: &std::path::Path) {
    use chargectl::stack::journal::Journal;
    let mut j = Journal::open(dir).expect("journal");
    let local = j.new_local_tx().expect("local tx");
    let t0 = "2026-11-26T08:00:00.000Z";
    let t1 = "2026-11-26T08:10:00.000Z";
    j.push(
        "StartTransaction",
        json!({"connectorId": 1, "idTag": "CRASH1", "meterStart": 100, "timestamp": t0}),
        local,
    )
    .expect("push start");
    j.push(
        "StopTransaction",
        json!({"meterStop": 1940, "timestamp": t1, "reason": "EVDisconnected", "transactionId": -1}),
        local,
    )
    .expect("push stop");
    let tx = json!({
        "local_tx": local, "id_tag": "CRASH1", "parent_id_tag": null,
        "started_at": t0, "meter_start_wh": 100.0, "last_meter_wh": 1900.0,
        "last_meter_at": "2026-11-26T08:09:50.000Z", "last_sample_wh": 1900.0,
        "stop_data": [], "deauthorized": false, "charging_profile": null,
        "reservation_id": null, "transaction_id": null
    });
    std::fs::write(dir.join("transaction.json"), tx.to_string()).expect("transaction.json");
}

#[tokio::test(start_paused = true)]
async fn power_loss_after_the_stop_was_journaled_sends_one_stop() {
    let rig = Rig::start_with(&[], Policy::default(), crash_after_stop_journaled).await;
    let stops = rig.calls_of("StopTransaction");
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(stops[0]["reason"], "EVDisconnected");
    assert_eq!(stops[0]["meterStop"], 1940);
    assert_eq!(stops[0]["transactionId"], 1000);
    assert!(
        !rig.dir.path().join("transaction.json").exists(),
        "the closed transaction is forgotten"
    );
    rig.shutdown().await;
}

/// The state a power loss leaves when it strikes after the transaction's state file was written but
/// before its StartTransaction was journaled.
fn crash_before_start_journaled(dir: &std::path::Path) {
    use chargectl::stack::journal::Journal;
    let mut j = Journal::open(dir).expect("journal");
    let local = j.new_local_tx().expect("local tx");
    let t0 = "2026-11-26T08:00:00.000Z";
    let tx = json!({
        "local_tx": local, "id_tag": "CRASH2", "parent_id_tag": null,
        "started_at": t0, "meter_start_wh": 100.0, "last_meter_wh": 100.0,
        "last_meter_at": t0, "last_sample_wh": 100.0,
        "stop_data": [], "deauthorized": false, "charging_profile": null,
        "reservation_id": null, "transaction_id": null
    });
    std::fs::write(dir.join("transaction.json"), tx.to_string()).expect("transaction.json");
}

#[tokio::test(start_paused = true)]
async fn power_loss_before_the_start_was_journaled_sends_nothing_for_it() {
    let rig = Rig::start_with(&[], Policy::default(), crash_before_start_journaled).await;
    assert!(rig.calls_of("StartTransaction").is_empty());
    assert!(
        rig.calls_of("StopTransaction").is_empty(),
        "no stop for a transaction the CSMS never heard of"
    );
    assert!(!rig.dir.path().join("transaction.json").exists());
    rig.shutdown().await;
}

// ----- power loss: the real binary killed with SIGKILL in the middle of an outage ----------------

mod power_loss {
    use super::*;
    use chargectl::csms::{Sandbox, SandboxHandle, SandboxOptions};
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    use tokio::process::{Child, ChildStdin, Command};

    /// Real-time bound for each wait in these tests.
    const REAL_WAIT: Duration = Duration::from_secs(30);

    struct Charger {
        child: Child,
        stdin: ChildStdin,
    }

    async fn spawn_charger(sandbox: &SandboxHandle, dir: &std::path::Path) -> Charger {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chargectl"))
            .args(["emulate", "--headless", "--json", "--id", CP, "--csms"])
            .arg(sandbox.url())
            .arg("--state-dir")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chargectl starts");
        let stdin = child.stdin.take().expect("stdin");
        // Drain the event stream so the charger never blocks on a full pipe.
        let mut stdout = child.stdout.take().expect("stdout");
        tokio::spawn(async move {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut stdout, &mut sink).await;
        });
        Charger { child, stdin }
    }

    impl Charger {
        async fn act(&mut self, line: &str) {
            self.stdin
                .write_all(format!("{line}\n").as_bytes())
                .await
                .expect("write an action");
            self.stdin.flush().await.expect("flush");
        }

        async fn kill9(mut self) {
            self.child.start_kill().expect("SIGKILL");
            let status = tokio::time::timeout(REAL_WAIT, self.child.wait())
                .await
                .expect("the charger dies")
                .expect("wait");
            assert!(!status.success());
        }

        async fn stop(mut self) {
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(REAL_WAIT, self.child.wait()).await;
        }
    }

    async fn sandbox_on(listen: Option<&SandboxHandle>) -> SandboxHandle {
        Sandbox::start(SandboxOptions {
            listen: listen
                .map(|s| s.local_addr())
                .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            first_transaction_id: listen.map(|s| s.peek_transaction_id()).unwrap_or(500),
            ..SandboxOptions::default()
        })
        .await
        .expect("sandbox starts")
    }

    async fn wait_call(
        s: &SandboxHandle,
        from: usize,
        action: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let ev = s
            .wait_for_from(
                from,
                |e| {
                    e.is_call_from(CP, action)
                        && matches!(e.frame(), Some((_, chargectl::stack::rpc::Frame::Call { payload, .. })) if pred(payload))
                },
                REAL_WAIT,
            )
            .await
            .unwrap_or_else(|_| panic!("no {action} within {REAL_WAIT:?}: {:?}", calls_in(&s.frames(CP)).iter().map(|c| format!("{} {}", c.action, c.payload)).collect::<Vec<_>>()));
        match ev.frame() {
            Some((_, chargectl::stack::rpc::Frame::Call { payload, .. })) => payload.clone(),
            _ => unreachable!(),
        }
    }

    /// Checks the transaction messages over both sandboxes: each exactly once, ids right,
    /// timestamps and registers in order. Returns them.
    fn check_tx_messages(all: &[Call], id: i64) -> Vec<Call> {
        let tx: Vec<Call> = all
            .iter()
            .filter(|c| is_tx_message(&c.action, &c.payload))
            .cloned()
            .collect();
        assert_eq!(
            tx.first().map(|c| c.action.as_str()),
            Some("StartTransaction")
        );
        assert_eq!(
            tx.last().map(|c| c.action.as_str()),
            Some("StopTransaction")
        );
        assert_eq!(
            tx.iter().filter(|c| c.action == "StopTransaction").count(),
            1,
            "stopped once"
        );
        let mut last_at = None;
        let mut last_reg = tx[0].payload["meterStart"].as_f64().unwrap_or(-1.0);
        for c in &tx[1..] {
            assert_eq!(tx_id(&c.payload), id, "{} {}", c.action, c.payload);
            let (at, regs) = match c.action.as_str() {
                "MeterValues" => (
                    parse_time(&c.payload["meterValue"][0]["timestamp"]),
                    energy_registers(&c.payload["meterValue"]),
                ),
                _ => (
                    parse_time(&c.payload["timestamp"]),
                    vec![c.payload["meterStop"].as_f64().unwrap_or(-1.0)],
                ),
            };
            if let Some(prev) = last_at {
                // A transaction closed after a power loss is stamped with its last reading.
                if c.payload["reason"] == "PowerLoss" {
                    assert!(at >= prev, "stop in order: {at} after {prev}");
                } else {
                    assert!(at > prev, "each message once, in order: {at} after {prev}");
                }
            }
            last_at = Some(at);
            for r in regs {
                assert!(r >= last_reg, "register monotonic: {r} after {last_reg}");
                last_reg = r;
            }
        }
        tx
    }

    async fn scenario(unplug_before_kill: bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        preconfigure(
            dir.path(),
            &[
                ("MeterValueSampleInterval", "1"),
                ("HeartbeatInterval", "3600"),
            ],
        );
        let first = sandbox_on(None).await;
        let mut charger = spawn_charger(&first, dir.path()).await;
        wait_call(&first, 0, "StatusNotification", |p| p["connectorId"] == 1).await;
        charger.act(r#"{"action":"plug"}"#).await;
        charger.act(r#"{"action":"card","id_tag":"KILL1"}"#).await;
        wait_call(&first, 0, "StartTransaction", |_| true).await;
        wait_call(&first, 0, "MeterValues", |p| {
            p.get("transactionId").is_some()
        })
        .await;
        first.shutdown().await;
        // The outage: meter values pile up in the journal.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        if unplug_before_kill {
            charger.act(r#"{"action":"unplug"}"#).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        charger.kill9().await;
        let journal =
            std::fs::read_to_string(dir.path().join("txqueue.journal")).unwrap_or_default();
        let queued_mv = journal.matches("\"MeterValues\"").count();
        assert!(queued_mv >= 2, "meter values journaled: {journal}");

        let second = sandbox_on(Some(&first)).await;
        let charger = spawn_charger(&second, dir.path()).await;
        let stop = wait_call(&second, 0, "StopTransaction", |_| true).await;
        let before = calls_in(&first.frames(CP));
        let after = calls_in(&second.frames(CP));
        let id = before
            .iter()
            .find(|c| c.action == "StartTransaction")
            .and_then(|c| answer_in(&first.frames(CP), &c.id))
            .map(|a| tx_id(&a))
            .expect("StartTransaction answered");
        assert_eq!(id, 500);
        let mut all = before.clone();
        all.extend(after.clone());
        let tx = check_tx_messages(&all, id);
        let offline_mv = after
            .iter()
            .filter(|c| c.action == "MeterValues" && c.payload.get("transactionId").is_some())
            .count();
        assert!(
            offline_mv >= 1,
            "meter values queued before the kill are delivered"
        );
        let wire_mv = all
            .iter()
            .filter(|c| c.action == "MeterValues" && c.payload.get("transactionId").is_some())
            .count();
        assert_eq!(
            wire_mv, queued_mv,
            "every journaled MeterValues delivered exactly once"
        );
        let last_reg = tx
            .iter()
            .filter(|c| c.action == "MeterValues")
            .flat_map(|c| energy_registers(&c.payload["meterValue"]))
            .fold(0.0, f64::max);
        let meter_stop = stop["meterStop"].as_f64().unwrap_or(-1.0);
        if unplug_before_kill {
            assert_eq!(stop["reason"], "EVDisconnected", "the journaled stop, once");
        } else {
            assert_eq!(stop["reason"], "PowerLoss");
            assert!(
                meter_stop >= last_reg && meter_stop <= last_reg + 10.0 + 2.0 * WH_PER_SECOND_16A,
                "closed with the last known reading: meterStop {meter_stop}, last sample {last_reg}"
            );
        }
        // Nothing else for this transaction turns up afterwards (no second stop).
        // Transaction messages go before status reports, so once connector 1 is reported the
        // journal is empty.
        wait_call(&second, 0, "StatusNotification", |p| p["connectorId"] == 1).await;
        let stops = calls_in(&second.frames(CP))
            .into_iter()
            .filter(|c| c.action == "StopTransaction")
            .count();
        assert_eq!(stops, 1);
        charger.stop().await;
        second.shutdown().await;
    }

    #[tokio::test]
    async fn kill_during_outage_closes_the_open_transaction_with_power_loss() {
        scenario(false).await;
    }

    #[tokio::test]
    async fn kill_during_outage_keeps_the_journaled_stop() {
        scenario(true).await;
    }
}
