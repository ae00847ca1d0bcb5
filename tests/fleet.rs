//! Fleets of complete charge points in one process against the sandbox CSMS on loopback: every
//! charge point boots and runs its session with every message exactly once (counted on the
//! CSMS side), and a fleet killed with SIGKILL loses no transaction message it had sent.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use chargectl::csms::{Direction, Sandbox, SandboxHandle, SandboxOptions};
use chargectl::emulator::fleet::{Fleet, FleetOptions, IdTemplate, SessionSpec, Summary};
use chargectl::stack::journal::Journal;
use chargectl::stack::rpc::Frame;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::{Instant, sleep};

/// Bound on each wait in these tests.
const WAIT: Duration = Duration::from_secs(120);

/// One CALL of a charge point and the CSMS's answer to it (`None`: not answered).
#[derive(Debug, Clone)]
struct Exchange {
    action: String,
    request: Value,
    answer: Option<Value>,
}

/// The CALLs each charge point sent, with their answers, from the CSMS's record.
fn exchanges(csms: &SandboxHandle, cp_id: &str) -> Vec<Exchange> {
    let mut out: Vec<Exchange> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for (direction, frame) in csms.frames(cp_id) {
        match (direction, frame) {
            (
                Direction::Received,
                Frame::Call {
                    id,
                    action,
                    payload,
                },
            ) => {
                by_id.insert(id, out.len());
                out.push(Exchange {
                    action,
                    request: payload,
                    answer: None,
                });
            }
            (Direction::Sent, Frame::CallResult { id, payload }) => {
                if let Some(&i) = by_id.get(&id) {
                    out[i].answer = Some(payload);
                }
            }
            _ => {}
        }
    }
    out
}

fn of<'a>(ex: &'a [Exchange], action: &str) -> Vec<&'a Exchange> {
    ex.iter().filter(|e| e.action == action).collect()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_charge_points_boot_and_run_one_session_each_with_every_message_once() {
    const N: usize = 200;
    let csms = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let template = IdTemplate::parse("SITE-{n:03}").unwrap();
    let fleet = Fleet::start(FleetOptions::new(
        dir.path(),
        &csms.url(),
        N as u64,
        template,
    ))
    .await
    .unwrap();
    assert_eq!(fleet.ids().len(), N);
    assert_eq!(fleet.ids()[0], "SITE-001");
    wait_until("every charge point booted", || {
        fleet.summary().booted == N as u64
    })
    .await;
    for i in 0..N {
        let spec = SessionSpec {
            id_tag: format!("TAG{i:03}"),
            amps: 16.0,
            length: Duration::from_millis(1500),
        };
        fleet.start_session(i, spec).await;
    }
    let ids: Vec<String> = fleet.ids().to_vec();
    let stopped = |csms: &SandboxHandle| {
        ids.iter().all(|id| {
            of(&exchanges(csms, id), "StopTransaction")
                .iter()
                .any(|e| e.answer.is_some())
        })
    };
    // The fleet's own count first: polling it costs nothing, while `stopped` reads the CSMS's
    // whole record for each charge point and would compete with the fleet for the CPU.
    wait_until("every session completed", || {
        fleet.summary().sessions.completed == N as u64
    })
    .await;
    wait_until("every transaction stopped and answered", || stopped(&csms)).await;
    let summary: Summary = fleet.summary();
    fleet.shutdown().await.unwrap();

    assert_eq!(summary.errors, 0, "{summary:?}");
    assert_eq!(summary.booted, N as u64);
    assert_eq!(summary.boot_ms.count, N as u64);
    let stats = csms.stats();
    assert_eq!(stats.boots_accepted, N as u64);
    assert_eq!(stats.call_errors_sent, 0);
    assert_eq!(stats.invalid, 0);
    let mut transaction_ids = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        let ex = exchanges(&csms, id);
        for action in [
            "BootNotification",
            "Authorize",
            "StartTransaction",
            "StopTransaction",
        ] {
            let calls = of(&ex, action);
            assert_eq!(calls.len(), 1, "{id}: {action} sent {} times", calls.len());
            assert!(calls[0].answer.is_some(), "{id}: {action} not answered");
        }
        let start = of(&ex, "StartTransaction")[0];
        assert_eq!(start.request["idTag"], format!("TAG{i:03}"));
        let tx = start.answer.as_ref().unwrap()["transactionId"].clone();
        assert!(transaction_ids.insert(tx.to_string()), "{id}: {tx} reused");
        let stop = of(&ex, "StopTransaction")[0];
        assert_eq!(stop.request["transactionId"], tx, "{id}");
        assert_eq!(stop.request["reason"], "EVDisconnected", "{id}");
        let statuses: Vec<&str> = of(&ex, "StatusNotification")
            .iter()
            .filter(|e| e.request["connectorId"] == 1)
            .filter_map(|e| e.request["status"].as_str())
            .collect();
        assert!(statuses.contains(&"Charging"), "{id}: {statuses:?}");
        assert!(
            ex.iter().all(|e| e.answer.is_some()),
            "{id}: a CALL unanswered"
        );
        // Delivered: nothing left in the charge point's journal.
        let journal = Journal::open(&dir.path().join(id)).unwrap();
        assert!(
            journal.is_empty(),
            "{id}: {} left in the journal",
            journal.len()
        );
    }
    csms.shutdown().await;
}

/// A child process running a fleet; killed when dropped.
struct FleetProcess(Child);

impl FleetProcess {
    fn start(url: &str, dir: &std::path::Path, extra: &[&str]) -> FleetProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_chargectl"))
            .args(["emulate", "--count", "12", "--id-template", "K-{n:02}"])
            .args(["--csms", url, "--json", "--state-dir"])
            .arg(dir)
            .args(extra)
            .env("CHARGECTL_DATA_DIR", dir)
            .env("CHARGECTL_CONFIG_DIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        FleetProcess(child)
    }

    fn terminate(&mut self) {
        // SAFETY: kill sends a signal to the child we started.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
    }
}

impl Drop for FleetProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_killed_mid_session_loses_no_transaction_message_it_sent() {
    let csms = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (1..=12).map(|n| format!("K-{n:02}")).collect();
    let starts = |csms: &SandboxHandle| {
        ids.iter()
            .map(|id| of(&exchanges(csms, id), "StartTransaction").len())
            .sum::<usize>()
    };
    let mut child = FleetProcess::start(
        &csms.url(),
        dir.path(),
        &["--sessions", "40", "--seed", "7"],
    );
    wait_until("transactions started", || starts(&csms) >= 8).await;
    // Power cut for the whole fleet: no clean shutdown, nothing flushed by the process.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let sent_before: BTreeMap<String, Vec<Exchange>> = ids
        .iter()
        .map(|id| (id.clone(), exchanges(&csms, id)))
        .collect();

    // The same fleet again, without sessions: each charger closes the transaction the power
    // cut left open and delivers its journal.
    let mut again = FleetProcess::start(&csms.url(), dir.path(), &[]);
    // Every transaction the CSMS saw start is stopped: a StopTransaction for one of the ids the
    // CSMS gave its StartTransaction (sent again after the restart when its answer was lost).
    let all_stopped = |csms: &SandboxHandle| {
        ids.iter().all(|id| {
            let ex = exchanges(csms, id);
            let stops: BTreeSet<String> = of(&ex, "StopTransaction")
                .iter()
                .filter(|e| e.answer.is_some())
                .map(|e| e.request["transactionId"].to_string())
                .collect();
            let mut by_start: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for s in of(&ex, "StartTransaction") {
                if let Some(a) = &s.answer {
                    by_start
                        .entry(s.request.to_string())
                        .or_default()
                        .push(a["transactionId"].to_string());
                }
            }
            by_start
                .values()
                .all(|txs| txs.iter().any(|t| stops.contains(t)))
        })
    };
    wait_until("every started transaction stopped", || all_stopped(&csms)).await;
    again.terminate();
    let status = again.0.wait().unwrap();
    assert!(status.success(), "{status:?}");

    let mut started = 0;
    for id in &ids {
        let ex = exchanges(&csms, id);
        // What the CSMS had received before the kill is all still there, and nothing was
        // started twice except a StartTransaction whose answer the kill cut off.
        let before = &sent_before[id];
        let start_payloads: Vec<String> = of(&ex, "StartTransaction")
            .iter()
            .map(|e| e.request.to_string())
            .collect();
        let distinct: BTreeSet<&String> = start_payloads.iter().collect();
        assert!(
            start_payloads.len() <= distinct.len() + 1,
            "{id}: {start_payloads:?}"
        );
        started += distinct.len();
        for e in of(before, "StartTransaction") {
            assert!(
                start_payloads.contains(&e.request.to_string()),
                "{id}: lost {e:?}"
            );
        }
        // No StopTransaction for a transaction the CSMS never started.
        let known: BTreeSet<String> = of(&ex, "StartTransaction")
            .iter()
            .filter_map(|e| e.answer.as_ref())
            .map(|a| a["transactionId"].to_string())
            .collect();
        for stop in of(&ex, "StopTransaction") {
            let tx = stop.request["transactionId"].to_string();
            assert!(
                known.contains(&tx),
                "{id}: stop of unknown transaction {tx}"
            );
        }
        let journal = Journal::open(&dir.path().join(id)).unwrap();
        assert!(
            journal.is_empty(),
            "{id}: {} left in the journal",
            journal.len()
        );
    }
    assert!(started >= 8, "{started}");
    csms.shutdown().await;
}
