//! The emulated charger against third-party OCPP 1.6J central systems that validate every message
//! against the official OCPP 1.6 JSON schemas: the Python `ocpp` package and npm `ocpp-rpc` in
//! strict mode (tests/interop, installed by tests/interop/setup.sh).
//!
//! Each test starts a peer with a scenario from tests/interop/scenarios, boots the emulated
//! charger in-process against it, performs the hardware actions the peer asks for (`act` steps,
//! printed on the peer's stdout), and checks the peer's report: every step met its expectation,
//! no message failed schema validation in either direction, and the exact answers the charger
//! gave.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chargectl::emulator::{BootSettings, Emulator, headless};
use chargectl::stack::chargepoint::{Direction, Event, RebootKind};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::broadcast::error::RecvError;

/// Everything one peer run may take, start to finish.
const RUN_LIMIT: Duration = Duration::from_secs(45);
const CHARGE_POINT_ID: &str = "INTEROP-1";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn interop_dir() -> PathBuf {
    root().join("tests/interop")
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Peer {
    PythonOcpp,
    OcppRpc,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::PythonOcpp => "python-ocpp",
            Peer::OcppRpc => "ocpp-rpc",
        }
    }

    /// The interpreter and script; panics with the setup command when the peer is not installed
    /// (the interop suite never skips silently).
    fn command(self) -> (PathBuf, PathBuf) {
        let setup = format!("run {}", interop_dir().join("setup.sh").display());
        match self {
            Peer::PythonOcpp => {
                let venv = std::env::var_os("CHARGECTL_VENV")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| root().join(".venv"));
                let python = venv.join("bin/python");
                assert!(
                    python.exists(),
                    "no Python venv with the `ocpp` package at {} ({setup}, or set CHARGECTL_VENV)",
                    venv.display()
                );
                (python, interop_dir().join("ocpp_csms.py"))
            }
            Peer::OcppRpc => {
                assert!(
                    interop_dir().join("node_modules/ocpp-rpc").exists(),
                    "npm package ocpp-rpc is not installed in {} ({setup})",
                    interop_dir().join("node_modules").display()
                );
                (
                    PathBuf::from("node"),
                    interop_dir().join("ocpp_rpc_csms.js"),
                )
            }
        }
    }
}

/// What a peer run left behind.
struct Run {
    peer: Peer,
    exit: Option<i32>,
    report: Value,
    /// Hardware actions performed, in order.
    acted: Vec<Value>,
    /// What the charger itself saw, in order: frames sent and received, connection changes.
    wire: Vec<Wire>,
}

/// One entry of the charger's own view of the connection.
#[derive(Debug)]
enum Wire {
    Sent(Value),
    Received(Value),
    /// The connection changed state: whatever was in flight is gone.
    Break,
    /// The charger reboots: likewise.
    Reboot(RebootKind),
    /// The test fell behind the charger's event stream.
    Lagged(u64),
}

impl Run {
    /// The peer's verdict: exit 0, report ok, every step ok, no validation error, no error.
    fn assert_clean(&self, scenario_len: usize) {
        let r = &self.report;
        let name = self.peer.name();
        assert_eq!(r["peer"], json!(name));
        for step in r["steps"].as_array().into_iter().flatten() {
            assert_eq!(step["ok"], json!(true), "{name}: step failed: {step:#}");
        }
        assert_eq!(
            r["validation_errors"],
            json!([]),
            "{name}: messages failed schema validation"
        );
        assert_eq!(r["errors"], json!([]), "{name}: the peer reported errors");
        assert_eq!(
            r["steps"].as_array().map(Vec::len),
            Some(scenario_len),
            "{name}: not every step ran"
        );
        assert_eq!(r["ok"], json!(true));
        assert_eq!(self.exit, Some(0), "{name} exit status");
        assert_eq!(r["charge_point"], json!(CHARGE_POINT_ID));
        assert_eq!(r["subprotocol"], json!("ocpp1.6"));
        self.assert_one_call_at_a_time();
    }

    /// OCPP-J: the charger sends a CALL only once its previous one was answered (or the
    /// connection was lost), and answers every CALL it receives exactly once.
    fn assert_one_call_at_a_time(&self) {
        let name = self.peer.name();
        let mut in_flight: Option<&Value> = None;
        let mut unanswered: Vec<&Value> = Vec::new();
        let mut calls = 0;
        for entry in &self.wire {
            match entry {
                Wire::Sent(frame) if frame[0] == 2 => {
                    assert!(
                        in_flight.is_none(),
                        "{name}: {frame} sent while {} awaits its answer",
                        in_flight.map(Value::to_string).unwrap_or_default()
                    );
                    in_flight = Some(&frame[1]);
                    calls += 1;
                }
                Wire::Sent(frame) => {
                    let at = unanswered.iter().position(|id| **id == frame[1]);
                    let at = at.unwrap_or_else(|| panic!("{name}: {frame} answers no CALL"));
                    unanswered.remove(at);
                }
                Wire::Received(frame) if frame[0] == 2 => unanswered.push(&frame[1]),
                Wire::Received(frame) => {
                    if in_flight == Some(&frame[1]) {
                        in_flight = None;
                    }
                }
                Wire::Break | Wire::Reboot(_) => in_flight = None,
                Wire::Lagged(n) => panic!("{name}: missed {n} charger events"),
            }
        }
        assert!(calls > 0, "{name}: the charger sent no CALL");
        assert_eq!(
            unanswered,
            Vec::<&Value>::new(),
            "{name}: CALLs left unanswered"
        );
    }

    fn step(&self, index: usize) -> &Value {
        &self.report["steps"][index]
    }

    /// The CALLRESULT payload of step `index`.
    fn response(&self, index: usize) -> &Value {
        &self.step(index)["response"]
    }

    /// The charge point's CALLs with this action, in order.
    fn calls_from_charger(&self, action: &str) -> Vec<&Value> {
        self.messages()
            .filter(|m| {
                m["direction"] == "received" && m["message_type"] == "Call" && m["action"] == action
            })
            .map(|m| &m["payload"])
            .collect()
    }

    /// What the peer answered to the charge point's CALLs with this action.
    fn answers_to_charger(&self, action: &str) -> Vec<&Value> {
        self.messages()
            .filter(|m| {
                m["direction"] == "sent"
                    && m["message_type"] == "CallResult"
                    && m["action"] == action
            })
            .map(|m| &m["payload"])
            .collect()
    }

    fn messages(&self) -> impl Iterator<Item = &Value> {
        self.report["messages"].as_array().into_iter().flatten()
    }

    /// The charger's reboots, in order.
    fn reboots(&self) -> Vec<RebootKind> {
        self.wire
            .iter()
            .filter_map(|w| match w {
                Wire::Reboot(kind) => Some(*kind),
                _ => None,
            })
            .collect()
    }

    fn connections(&self) -> usize {
        self.report["connections"].as_array().map_or(0, Vec::len)
    }
}

fn scenario_path(scenario: &str) -> PathBuf {
    interop_dir().join("scenarios").join(scenario)
}

fn scenario_len(scenario: &str) -> usize {
    let text = std::fs::read_to_string(scenario_path(scenario))
        .unwrap_or_else(|e| panic!("reading scenario {scenario}: {e}"));
    let steps: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("scenario {scenario}: {e}"));
    steps.as_array().map_or(0, Vec::len)
}

/// Runs `scenario` with `peer` against a freshly booted emulated charger.
async fn run(peer: Peer, scenario: &str) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let report_path = dir.path().join("report.json");
    let (program, script) = peer.command();
    let mut child = Command::new(&program)
        .arg(&script)
        .args(["--port", "0", "--timeout", "40", "--call-timeout", "10"])
        .args(["--interval", "300", "--scenario"])
        .arg(scenario_path(scenario))
        .arg("--report")
        .arg(&report_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{} did not start listening in 20 s", peer.name()));
    let first = match first {
        Ok(Some(line)) => line,
        other => {
            let _ = child.kill().await;
            let stderr = stderr_task.await.unwrap_or_default();
            panic!("{} printed no port ({other:?}): {stderr}", peer.name());
        }
    };
    let listening: Value = serde_json::from_str(&first).expect("peer prints JSON");
    let port = listening["listening"].as_u64().expect("listening port");

    let state = dir.path().join("state");
    let emulator = Emulator::start(
        &state,
        &BootSettings {
            csms_url: Some(format!("ws://127.0.0.1:{port}/ocpp")),
            charge_point_id: Some(CHARGE_POINT_ID.into()),
            ..BootSettings::default()
        },
    )
    .await
    .expect("emulator starts");
    // Subscribed before the charger's task first runs, so nothing is missed.
    let mut events = emulator.handle.subscribe();
    let mut wire = Vec::new();

    let mut acted = Vec::new();
    let deadline = tokio::time::Instant::now() + RUN_LIMIT;
    let mut stdout_open = true;
    let mut events_open = true;
    let exit = loop {
        tokio::select! {
            line = lines.next_line(), if stdout_open => match line {
                Ok(Some(line)) => {
                    let msg: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("{} printed {line:?}: {e}", peer.name()));
                    let act = &msg["act"];
                    let event = headless::parse_action(&act.to_string())
                        .unwrap_or_else(|e| panic!("scenario {scenario}: bad act {act}: {e}"));
                    emulator.act(event).await;
                    acted.push(act.clone());
                }
                _ => stdout_open = false,
            },
            event = events.recv(), if events_open => match event {
                Ok(Event::Message { direction: Direction::Sent, frame }) => wire.push(Wire::Sent(frame)),
                Ok(Event::Message { frame, .. }) => wire.push(Wire::Received(frame)),
                Ok(Event::Connection { .. }) => wire.push(Wire::Break),
                Ok(Event::Rebooting { kind }) => wire.push(Wire::Reboot(kind)),
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => wire.push(Wire::Lagged(n)),
                Err(RecvError::Closed) => events_open = false,
            },
            status = child.wait() => break status.ok().and_then(|s| s.code()),
            _ = tokio::time::sleep_until(deadline) => {
                let _ = child.kill().await;
                panic!("{} did not finish {scenario} within {RUN_LIMIT:?}", peer.name());
            }
        }
    };
    emulator.shutdown().await.expect("emulator shuts down");
    let stderr = stderr_task.await.unwrap_or_default();
    let text = std::fs::read_to_string(&report_path).unwrap_or_else(|e| {
        panic!(
            "{} wrote no report (exit {exit:?}): {e}\n{stderr}",
            peer.name()
        )
    });
    let report: Value = serde_json::from_str(&text).expect("report is JSON");
    // CHARGECTL_INTEROP_REPORTS=DIR keeps every report for a closer look.
    if let Some(keep) = std::env::var_os("CHARGECTL_INTEROP_REPORTS") {
        let name = format!("{}-{scenario}", peer.name());
        let kept = Path::new(&keep).join(name);
        if let Err(e) = std::fs::create_dir_all(&keep).and_then(|()| std::fs::write(&kept, &text)) {
            eprintln!("cannot keep the report at {}: {e}", kept.display());
        }
    }
    Run {
        peer,
        exit,
        report,
        acted,
        wire,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Foundation: boot, configuration, reset, availability, data transfer, cache, security actions.

async fn foundation(peer: Peer) {
    const SCENARIO: &str = "foundation.json";
    let run = run(peer, SCENARIO).await;
    run.assert_clean(scenario_len(SCENARIO));
    let boots = run.calls_from_charger("BootNotification");
    assert_eq!(boots.len(), 2, "one boot, one after the soft reset");
    for boot in &boots {
        assert_eq!(boot["chargePointVendor"], json!("Zaptec"));
        assert_eq!(boot["chargePointModel"], json!("Go"));
    }
    assert_eq!(run.connections(), 2, "the soft reset reconnects");
    assert_eq!(run.reboots(), [RebootKind::Soft]);
    // GetConfiguration without keys lists every readable key, each once, and no unknown key.
    let all = run.response(0);
    let keys: Vec<&str> = all["configurationKey"]
        .as_array()
        .expect("configurationKey list")
        .iter()
        .map(|k| k["key"].as_str().expect("key"))
        .collect();
    let mut unique = keys.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "duplicate keys: {keys:?}");
    for key in [
        "HeartbeatInterval",
        "NumberOfConnectors",
        "StopTransactionOnEVSideDisconnect",
        "LocalAuthListEnabled",
        "FreeCharging",
        "MeterValueSampleInterval",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    // The write-only AuthorizationKey never shows a value; service-only keys never show.
    for entry in all["configurationKey"].as_array().into_iter().flatten() {
        if entry["key"] == "AuthorizationKey" {
            assert!(entry.get("value").is_none(), "AuthorizationKey value shown");
        }
    }
    for hidden in ["BasicAuthPassword", "CsmsUrl", "ChargePointId"] {
        assert!(!keys.contains(&hidden), "service-only {hidden} listed");
    }
    assert!(all.get("unknownKey").is_none(), "{all}");
    assert_eq!(
        run.acted,
        vec![
            json!({"action": "fault", "error_code": "GroundFailure", "info": "RCD tripped"}),
            json!({"action": "clear_fault"}),
        ]
    );
    let faulted = run
        .calls_from_charger("StatusNotification")
        .into_iter()
        .find(|s| s["status"] == "Faulted")
        .expect("a Faulted StatusNotification");
    assert_eq!(faulted["info"], json!("RCD tripped"), "{faulted}");
}

#[tokio::test]
async fn python_ocpp_foundation() {
    foundation(Peer::PythonOcpp).await;
}

#[tokio::test]
async fn ocpp_rpc_foundation() {
    foundation(Peer::OcppRpc).await;
}

// ---------------------------------------------------------------------------------------------
// 2. A charging session: plug + card, meter values, remote stop; then a remote start.

async fn session(peer: Peer) {
    const SCENARIO: &str = "session.json";
    let run = run(peer, SCENARIO).await;
    run.assert_clean(scenario_len(SCENARIO));
    // The soft reset during the last transaction: its StopTransaction goes out (and is
    // answered) on the first connection, before the charger restarts.
    assert_eq!(run.connections(), 2);
    assert_eq!(run.reboots(), [RebootKind::Soft]);
    let order: Vec<&str> = run
        .messages()
        .filter(|m| m["direction"] == "received" && m["message_type"] == "Call")
        .filter_map(|m| match m["action"].as_str() {
            Some("BootNotification") => Some("boot"),
            Some("StopTransaction") if m["payload"]["reason"] == "SoftReset" => Some("stop"),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["boot", "stop", "boot"]);
    let card = |tag: &str| json!({"action": "card", "id_tag": tag});
    let (plug, unplug) = (json!({"action": "plug"}), json!({"action": "unplug"}));
    assert_eq!(
        run.acted,
        vec![
            plug.clone(),
            card("TAG1"),
            unplug.clone(),
            plug.clone(),
            unplug.clone(),
            plug.clone(),
            card("TAG3"),
            card("TAG3"),
            unplug.clone(),
            plug.clone(),
            card("TAG4"),
            unplug.clone(),
            plug.clone(),
            card("TAG5"),
            unplug.clone(),
            plug,
            card("TAG6"),
            unplug,
        ]
    );
    let ids: Vec<Option<i64>> = run
        .answers_to_charger("StartTransaction")
        .into_iter()
        .map(|a| a["transactionId"].as_i64())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6].map(Some));
    let starts = run.calls_from_charger("StartTransaction");
    let stops = run.calls_from_charger("StopTransaction");
    let samples = run.calls_from_charger("MeterValues");
    let tags: Vec<Option<&str>> = starts.iter().map(|s| s["idTag"].as_str()).collect();
    assert_eq!(
        tags,
        ["TAG1", "TAG2", "TAG3", "TAG4", "TAG5", "TAG6"].map(Some)
    );
    // Only the transaction started on the reservation names it.
    let reservations: Vec<Option<&Value>> = starts.iter().map(|s| s.get("reservationId")).collect();
    assert_eq!(
        reservations,
        vec![None, None, None, None, Some(&json!(9)), None]
    );
    // Remote stops carry no idTag (the CSMS stopped them), the card stop carries the card's.
    let expected_stops = [
        (1, "Remote", None),
        (2, "Remote", None),
        (3, "Local", Some("TAG3")),
        (4, "EVDisconnected", None),
        (5, "Remote", None),
        (6, "SoftReset", None),
    ];
    assert_eq!(stops.len(), expected_stops.len(), "{stops:#?}");
    for ((start, stop), (tx, reason, tag)) in starts.iter().zip(&stops).zip(expected_stops) {
        assert_eq!(stop["transactionId"], json!(tx), "{stop}");
        assert_eq!(stop["reason"], json!(reason), "{stop}");
        assert_eq!(stop.get("idTag"), tag.map(|t| json!(t)).as_ref(), "{stop}");
        let begin = start["meterStart"].as_i64().expect("meterStart");
        let end = stop["meterStop"].as_i64().expect("meterStop");
        assert!(end >= begin, "meterStop {end} < meterStart {begin}");
    }
    // The TxProfile's 8 A is what the charger offers and what the EV (asking 16 A) draws.
    let triggered: Vec<&Value> = samples
        .iter()
        .copied()
        .filter(|m| m["meterValue"][0]["sampledValue"][0]["context"] == "Trigger")
        .collect();
    assert_eq!(triggered.len(), 1, "{samples:#?}");
    assert_eq!(
        sampled(&triggered, "Trigger", "Current.Offered"),
        vec![&json!("8.0")]
    );
    assert_eq!(
        sampled(&triggered, "Trigger", "Current.Import"),
        vec![&json!("8.0"); 3]
    );
    // Periodic samples carry every configured measurand, clock-aligned ones the register.
    let periodic = sampled(&samples, "Sample.Periodic", "");
    assert!(!periodic.is_empty(), "no periodic samples: {samples:#?}");
    for measurand in [
        "Energy.Active.Import.Register",
        "Energy.Active.Import.Interval",
        "Current.Import",
        "Current.Offered",
        "Voltage",
        "Temperature",
    ] {
        assert!(
            !sampled(&samples, "Sample.Periodic", measurand).is_empty(),
            "no periodic {measurand}"
        );
    }
    assert!(!sampled(&samples, "Sample.Clock", "Energy.Active.Import.Register").is_empty());
    assert!(sampled(&samples, "Sample.Periodic", "Power.Active.Import").is_empty());
    // StopTxnSampledData: the transaction's begin and end readings in every StopTransaction.
    for stop in &stops {
        let data = |context| {
            readings(
                &[*stop],
                "transactionData",
                context,
                "Energy.Active.Import.Register",
            )
        };
        assert_eq!(data("Transaction.Begin").len(), 1, "{stop}");
        assert_eq!(data("Transaction.End").len(), 1, "{stop}");
    }
}

/// The values sampled with this context and measurand (any measurand when empty) in these
/// MeterValues payloads.
fn sampled<'a>(samples: &[&'a Value], context: &str, measurand: &str) -> Vec<&'a Value> {
    readings(samples, "meterValue", context, measurand)
}

/// The values sampled with this context and measurand (any when empty) in the MeterValue lists
/// under `field` of these payloads.
fn readings<'a>(
    payloads: &[&'a Value],
    field: &str,
    context: &str,
    measurand: &str,
) -> Vec<&'a Value> {
    payloads
        .iter()
        .flat_map(|m| m[field].as_array().into_iter().flatten())
        .flat_map(|mv| mv["sampledValue"].as_array().into_iter().flatten())
        .filter(|s| {
            s["context"] == context && (measurand.is_empty() || s["measurand"] == measurand)
        })
        .map(|s| &s["value"])
        .collect()
}

#[tokio::test]
async fn python_ocpp_session() {
    session(Peer::PythonOcpp).await;
}

#[tokio::test]
async fn ocpp_rpc_session() {
    session(Peer::OcppRpc).await;
}

// ---------------------------------------------------------------------------------------------
// 3. Local list, reservation, smart charging, remote trigger.

async fn profiles(peer: Peer) {
    const SCENARIO: &str = "profiles.json";
    let run = run(peer, SCENARIO).await;
    run.assert_clean(scenario_len(SCENARIO));
    assert_eq!(run.connections(), 1);
    assert_eq!(run.reboots(), []);
    // The composite schedule of the TxDefaultProfile in amperes: 10 A, then 6 A after 600 s.
    let index = step_index(&run, "GetCompositeSchedule");
    let schedule = &run.response(index)["chargingSchedule"];
    assert_eq!(schedule["chargingRateUnit"], json!("A"), "{schedule}");
    assert_eq!(schedule["duration"], json!(1800), "{schedule}");
    let periods: Vec<(i64, f64)> = schedule["chargingSchedulePeriod"]
        .as_array()
        .expect("periods")
        .iter()
        .map(|p| {
            (
                p["startPeriod"].as_i64().expect("startPeriod"),
                p["limit"].as_f64().expect("limit"),
            )
        })
        .collect();
    assert_eq!(periods, vec![(0, 10.0), (600, 6.0)]);
}

/// The index of the first step calling `action`.
fn step_index(run: &Run, action: &str) -> usize {
    run.report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .position(|s| s["step"]["call"] == action)
        .unwrap_or_else(|| panic!("no {action} step"))
}

#[tokio::test]
async fn python_ocpp_profiles() {
    profiles(Peer::PythonOcpp).await;
}

#[tokio::test]
async fn ocpp_rpc_profiles() {
    profiles(Peer::OcppRpc).await;
}

// ---------------------------------------------------------------------------------------------
// The harness itself: a wrong expectation fails the run, step by step.

async fn wrong_expectations(peer: Peer) {
    let run = run(peer, "wrong_expectations.json").await;
    assert_eq!(run.exit, Some(1), "{:#}", run.report);
    assert_eq!(run.report["ok"], json!(false));
    let oks: Vec<&Value> = (0..4).map(|i| &run.step(i)["ok"]).collect();
    assert_eq!(
        oks,
        vec![&json!(false), &json!(false), &json!(false), &json!(true)]
    );
    assert_eq!(run.response(0), &json!({"status": "NotSupported"}));
    assert_eq!(run.response(1), &json!({"status": "Accepted"}));
    // The Reset was accepted and done; the charger's messages were all valid: only the
    // expectations were wrong.
    assert_eq!(run.reboots(), [RebootKind::Hard]);
    assert_eq!(run.report["validation_errors"], json!([]));
}

#[tokio::test]
async fn python_ocpp_reports_wrong_expectations() {
    wrong_expectations(Peer::PythonOcpp).await;
}

#[tokio::test]
async fn ocpp_rpc_reports_wrong_expectations() {
    wrong_expectations(Peer::OcppRpc).await;
}

// ---------------------------------------------------------------------------------------------
// 4. Firmware management with locations the charger cannot reach.

async fn firmware(peer: Peer) {
    const SCENARIO: &str = "firmware.json";
    let run = run(peer, SCENARIO).await;
    run.assert_clean(scenario_len(SCENARIO));
    assert_eq!(run.connections(), 1);
    assert_eq!(run.reboots(), []);
    let statuses = |action| -> Vec<String> {
        run.calls_from_charger(action)
            .iter()
            .filter_map(|p| p["status"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        statuses("FirmwareStatusNotification"),
        ["Downloading", "DownloadFailed", "Idle"]
    );
    assert_eq!(
        statuses("DiagnosticsStatusNotification"),
        ["UploadFailed", "Uploading", "UploadFailed", "Idle"]
    );
    // FTP fails at once (the release notes: FTP(s) is not supported); HTTP is tried. Both
    // uploads name the file they would have sent.
    for index in [6, 8] {
        let name = run.response(index)["fileName"].as_str().unwrap_or_default();
        assert!(!name.is_empty(), "{}", run.response(index));
    }
}

#[tokio::test]
async fn python_ocpp_firmware() {
    firmware(Peer::PythonOcpp).await;
}

#[tokio::test]
async fn ocpp_rpc_firmware() {
    firmware(Peer::OcppRpc).await;
}
