//! Disk trouble: the charger's state directory fills up or turns read-only while it runs. The
//! real `chargectl emulate --headless` binary is told `{"action":"storage_fault","error":...}`
//! (every write in the state directory then fails with ENOSPC, EROFS or EIO at the storage layer),
//! or, when the test does not run as root, its state directory loses its write permission.
//! The charger keeps charging and talking to the CSMS, reports the error in its log (which
//! GetDiagnostics uploads), answers a configuration change it cannot store with Rejected, and
//! loses nothing it had acknowledged: after the disk recovers and the power is cut, everything
//! durable before the trouble and after it is still there.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

#[path = "common/charger_proc.rs"]
mod charger_proc;
#[path = "common/csms_calls.rs"]
mod csms_calls;
#[path = "common/http_server.rs"]
mod http;

use chargectl::csms::{EventKind, Sandbox, SandboxHandle, SandboxOptions};
use chargectl::stack::config::{ChangeOutcome, Channel, Configuration};
use chargectl::stack::rpc::Frame;
use charger_proc::ChargerProc;
use csms_calls::calls_from;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn seed(dir: &Path) {
    let mut config = Configuration::open(dir).unwrap();
    for (key, value) in [
        ("MeterValueSampleInterval", "1"),
        ("ConnectionTimeOut", "30"),
    ] {
        let outcome = config.change(key, value, Channel::Service);
        assert!(
            matches!(
                outcome,
                ChangeOutcome::Accepted | ChangeOutcome::RebootRequired
            ),
            "{key}: {outcome:?}"
        );
    }
}

async fn wait_calls(csms: &SandboxHandle, cp: &str, from: usize, action: &str, n: usize) {
    let done = async {
        while calls_from(csms, cp, from, action).len() < n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, done)
        .await
        .unwrap_or_else(|_| panic!("{n} {action} from {cp} within {WAIT:?}"));
}

async fn wait_log(p: &ChargerProc, what: &str) -> Value {
    let found = async {
        loop {
            if let Some(r) = p
                .logs()
                .into_iter()
                .find(|r| r["message"].as_str().unwrap_or_default().contains(what))
            {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, found).await.unwrap_or_else(|_| {
        panic!(
            "log line containing {what:?} within {WAIT:?}; logs: {:#?}",
            p.logs()
        )
    })
}

/// One charging session: plug, card, charge until `samples` MeterValues arrived, unplug, and
/// the StopTransaction arrives.
async fn session(p: &mut ChargerProc, csms: &SandboxHandle, cp: &str, card: &str, samples: usize) {
    let c = csms.cursor();
    p.act(r#"{"action":"plug"}"#).await;
    p.act(&format!(r#"{{"action":"card","id_tag":"{card}"}}"#))
        .await;
    p.act(r#"{"action":"ev_demand","amps":16}"#).await;
    wait_calls(csms, cp, c, "StartTransaction", 1).await;
    let metered = async {
        while calls_from(csms, cp, c, "MeterValues")
            .iter()
            .filter(|v| v.get("transactionId").is_some())
            .count()
            < samples
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, metered)
        .await
        .expect("the session is metered");
    p.act(r#"{"action":"ev_demand","amps":0}"#).await;
    p.act(r#"{"action":"unplug"}"#).await;
    wait_calls(csms, cp, c, "StopTransaction", 1).await;
}

async fn change(csms: &SandboxHandle, cp: &str, key: &str, value: &str) -> String {
    let answer = csms
        .call(
            cp,
            "ChangeConfiguration",
            json!({"key": key, "value": value}),
        )
        .await
        .unwrap();
    answer["status"].as_str().unwrap().to_string()
}

/// Every transaction message the CSMS got, in order, consecutive resends collapsed.
fn tx_story(csms: &SandboxHandle, cp: &str) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::new();
    for e in csms.events() {
        if let EventKind::Received {
            cp_id,
            frame: Frame::Call {
                action, payload, ..
            },
            ..
        } = e.kind
            && cp_id == cp
            && (action != "MeterValues" || payload.get("transactionId").is_some())
            && matches!(
                action.as_str(),
                "StartTransaction" | "StopTransaction" | "MeterValues"
            )
            && out.last() != Some(&(action.clone(), payload.clone()))
        {
            out.push((action, payload));
        }
    }
    out
}

fn count(story: &[(String, Value)], action: &str) -> usize {
    story.iter().filter(|(a, _)| a == action).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_keeps_charging_and_talking_reports_it_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let csms = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let upload = http::Server::start(|_, _| http::ok(b"")).await;
    let cp = "DISK-1";
    let mut p = ChargerProc::spawn(dir.path(), &csms.url(), cp, &[], &[]);
    wait_calls(&csms, cp, 0, "StatusNotification", 1).await;
    // Before the trouble: a session and a configuration change, both durable.
    session(&mut p, &csms, cp, "CARD1", 1).await;
    assert_eq!(
        change(&csms, cp, "ConnectionTimeOut", "45").await,
        "Accepted"
    );

    p.act_taken(r#"{"action":"storage_fault","error":"full"}"#)
        .await;
    // Nothing it cannot store is acknowledged.
    assert_eq!(
        change(&csms, cp, "ConnectionTimeOut", "50").await,
        "Rejected"
    );
    // It charges and delivers all the same, from memory.
    session(&mut p, &csms, cp, "CARD2", 2).await;
    let error = wait_log(&p, "cannot write the transaction journal").await;
    assert_eq!(error["level"], "error");
    assert_eq!(error["target"], "storage");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{error}"
    );
    // The charger's log, as GetDiagnostics uploads it, says so.
    csms.call(
        cp,
        "GetDiagnostics",
        json!({"location": upload.url("/diag")}),
    )
    .await
    .unwrap();
    let uploaded = async {
        loop {
            if let Some(r) = upload.requests().into_iter().find(|r| r.method != "GET") {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let r = tokio::time::timeout(WAIT, uploaded)
        .await
        .expect("diagnostics upload");
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.contains("cannot write the transaction journal")
            && body.contains("No space left on device"),
        "the uploaded log names the storage error"
    );

    // The disk recovers: the journal is written again as a whole, and a change is stored.
    p.act_taken(r#"{"action":"storage_fault","error":"none"}"#)
        .await;
    assert_eq!(
        change(&csms, cp, "ConnectionTimeOut", "55").await,
        "Accepted"
    );
    wait_log(&p, "storage writes succeed again").await;
    let story = tx_story(&csms, cp);
    assert_eq!(count(&story, "StartTransaction"), 2, "{story:#?}");
    assert_eq!(count(&story, "StopTransaction"), 2, "{story:#?}");

    // Power cut, restart: nothing acknowledged is lost, nothing delivered comes back.
    p.kill().await;
    let before = csms.cursor();
    let mut q = ChargerProc::spawn(dir.path(), &csms.url(), cp, &[], &[]);
    wait_calls(&csms, cp, before, "StatusNotification", 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        tx_story(&csms, cp),
        story,
        "after the restart no transaction message is resent or lost"
    );
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["values"]["ConnectionTimeOut"], "55");
    q.stop(Duration::from_secs(5)).await;
    csms.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cut_while_the_disk_is_full_keeps_what_was_durable() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let csms = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let cp = "DISK-2";
    let mut p = ChargerProc::spawn(dir.path(), &csms.url(), cp, &[], &[]);
    wait_calls(&csms, cp, 0, "StatusNotification", 1).await;
    let c = csms.cursor();
    p.act(r#"{"action":"plug"}"#).await;
    p.act(r#"{"action":"card","id_tag":"CARD1"}"#).await;
    p.act(r#"{"action":"ev_demand","amps":16}"#).await;
    wait_calls(&csms, cp, c, "StartTransaction", 1).await;
    // The start is answered and its answer recorded.
    wait_log(&p, "has CSMS id 1").await;
    // Offline, then the disk fills: samples now live in memory only.
    p.act(r#"{"action":"network_lost"}"#).await;
    p.act_taken(r#"{"action":"storage_fault","error":"read_only"}"#)
        .await;
    wait_log(&p, "Read-only file system").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.kill().await;
    // The disk is fine after the power comes back.
    let before = csms.cursor();
    let mut q = ChargerProc::spawn(dir.path(), &csms.url(), cp, &[], &[]);
    wait_calls(&csms, cp, before, "StopTransaction", 1).await;
    let story = tx_story(&csms, cp);
    assert_eq!(count(&story, "StartTransaction"), 1, "{story:#?}");
    assert_eq!(count(&story, "StopTransaction"), 1, "{story:#?}");
    let stop = &story.last().unwrap().1;
    assert_eq!(stop["reason"], "PowerLoss", "{stop}");
    assert_eq!(
        stop["transactionId"], 1,
        "the acknowledged start's id: {stop}"
    );
    q.stop(Duration::from_secs(5)).await;
    csms.shutdown().await;
}

/// A real read-only directory: its write permission removed while the charger runs. Root
/// ignores permissions, so as root the charger runs as user 65534 (nobody).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_state_directory_keeps_charging_and_reports_it() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    let uid = (unsafe { libc::geteuid() } == 0).then_some(65534u32);
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    if let Some(uid) = uid {
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            std::os::unix::fs::chown(entry.unwrap().path(), Some(uid), Some(uid)).unwrap();
        }
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).unwrap();
    }
    let csms = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let cp = "DISK-3";
    let mut p = ChargerProc::spawn_as(dir.path(), &csms.url(), cp, &[], &[], uid);
    wait_calls(&csms, cp, 0, "StatusNotification", 1).await;
    let set_mode =
        |mode| std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    set_mode(0o555);
    session(&mut p, &csms, cp, "CARD1", 2).await;
    let error = wait_log(&p, "Permission denied").await;
    assert_eq!(error["target"], "storage", "{error}");
    assert_eq!(
        change(&csms, cp, "ConnectionTimeOut", "45").await,
        "Rejected"
    );
    set_mode(0o755);
    assert_eq!(
        change(&csms, cp, "ConnectionTimeOut", "45").await,
        "Accepted"
    );
    wait_log(&p, "storage writes succeed again").await;
    let story = tx_story(&csms, cp);
    assert_eq!(count(&story, "StartTransaction"), 1, "{story:#?}");
    assert_eq!(count(&story, "StopTransaction"), 1, "{story:#?}");
    p.stop(Duration::from_secs(5)).await;
    csms.shutdown().await;
}
