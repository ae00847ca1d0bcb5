//! The real `chargectl` binary: `chargectl emulate --headless --json` against `chargectl csms`
//! or an in-test sandbox, state surviving SIGKILL, bad input lines, SIGTERM, and secrets kept
//! out of every output and file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod common;

use base64::Engine as _;
use chargectl::csms::{Policy, SandboxHandle, SandboxOptions};
use chargectl::stack::secret::Secret;
use common::{booted, change_key, get_key, sandbox};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(30);
const KEY_TEXT: &str = "0123456789abcdefghij";

/// A running `chargectl` process whose stdout and stderr lines are collected.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    seen: watch::Receiver<usize>,
}

impl Proc {
    fn start(args: &[&str], home: &Path) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chargectl"))
            .args(args)
            .env("CHARGECTL_DATA_DIR", home.join("data"))
            .env("CHARGECTL_CONFIG_DIR", home.join("config"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chargectl starts");
        let (notify, seen) = watch::channel(0usize);
        let notify = Arc::new(notify);
        let collect = |stream: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let store = lines.clone();
            let notify = notify.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    store.lock().unwrap().push(line);
                    notify.send_modify(|n| *n += 1);
                }
            });
            lines
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        let stdin = child.stdin.take();
        Proc {
            child,
            stdin,
            stdout,
            stderr,
            seen,
        }
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for a JSON line on stdout matching `pred`.
    async fn wait_json(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(v) = self
                    .stdout()
                    .iter()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find(|v| pred(v))
                {
                    return v;
                }
                if self.seen.changed().await.is_err() {
                    // Both streams closed: nothing more will come.
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "no {what} on stdout within {WAIT:?}\nstdout: {:#?}\nstderr: {:#?}",
                self.stdout(),
                self.stderr()
            )
        })
    }

    async fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
        stdin.flush().await.unwrap();
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    async fn wait_exit(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("chargectl exits in time")
            .expect("wait")
    }
}

/// An emulator message event: the frame is a CALL with this action, in this direction.
fn is_call(v: &Value, direction: &str, action: &str) -> bool {
    v["type"] == "message"
        && v["data"]["direction"] == direction
        && v["data"]["frame"][0] == 2
        && v["data"]["frame"][2] == action
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn emulate_args<'a>(url: &'a str, id: &'a str, state: &'a str) -> Vec<&'a str> {
    vec![
        "emulate",
        "--csms",
        url,
        "--id",
        id,
        "--headless",
        "--json",
        "--state-dir",
        state,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_and_sandbox_processes_show_the_same_conversation() {
    let home = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut csms = Proc::start(&["csms", "--listen", &listen, "--json"], home.path());
    let listening = csms
        .wait_json("listening", |v| v["type"] == "listening")
        .await;
    assert_eq!(listening["data"]["url"], format!("ws://{listen}"));
    let url = format!("ws://{listen}");
    let state = home.path().join("state");
    let state_s = state.to_str().unwrap();
    let mut emu = Proc::start(&emulate_args(&url, "CP1", state_s), home.path());

    emu.wait_json("BootNotification sent", |v| {
        is_call(v, "sent", "BootNotification")
    })
    .await;
    emu.wait_json("registration accepted", |v| {
        v["type"] == "registration" && v["data"]["status"] == "Accepted"
    })
    .await;
    for connector in [0, 1] {
        let status = emu
            .wait_json("StatusNotification sent", |v| {
                is_call(v, "sent", "StatusNotification")
                    && v["data"]["frame"][3]["connectorId"] == connector
            })
            .await;
        assert_eq!(status["data"]["frame"][3]["status"], "Available");
    }
    let connected = csms
        .wait_json("connected", |v| {
            v["type"] == "connected" && v["data"]["cp_id"] == "CP1"
        })
        .await;
    assert_eq!(connected["data"]["subprotocol"], "ocpp1.6");
    assert_eq!(connected["data"]["path"], "/CP1");
    let boot = csms
        .wait_json("BootNotification received", |v| {
            v["type"] == "message"
                && v["data"]["direction"] == "received"
                && v["data"]["action"] == "BootNotification"
                && v["data"]["message_type"] == "Call"
        })
        .await;
    assert_eq!(boot["data"]["payload"]["chargePointVendor"], "Zaptec");
    let answer = csms
        .wait_json("BootNotification answered", |v| {
            v["type"] == "message"
                && v["data"]["direction"] == "sent"
                && v["data"]["action"] == "BootNotification"
                && v["data"]["message_type"] == "CallResult"
        })
        .await;
    assert_eq!(answer["data"]["payload"]["status"], "Accepted");
    for connector in [0, 1] {
        csms.wait_json("StatusNotification received", |v| {
            v["type"] == "message"
                && v["data"]["action"] == "StatusNotification"
                && v["data"]["message_type"] == "Call"
                && v["data"]["payload"]["connectorId"] == connector
        })
        .await;
    }
    // The same unique id on both sides.
    let emu_boot = emu
        .wait_json("boot", |v| is_call(v, "sent", "BootNotification"))
        .await;
    assert_eq!(emu_boot["data"]["frame"][1], boot["data"]["id"]);
    // Everything from the start is on stdout: the connection events and the charger's whole log
    // (sequence numbers from 1 without a gap).
    emu.wait_json("connected event", |v| {
        v["type"] == "connection" && v["data"]["state"] == "connected"
    })
    .await;
    let seqs: Vec<u64> = emu
        .stdout()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "log")
        .filter_map(|v| v["data"]["seq"].as_u64())
        .collect();
    assert!(!seqs.is_empty());
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "log lines from the start"
    );

    emu.signal("TERM");
    assert!(
        emu.wait_exit().await.success(),
        "SIGTERM stops the emulator with exit 0"
    );
    csms.wait_json("disconnected", |v| {
        v["type"] == "disconnected" && v["data"]["cp_id"] == "CP1"
    })
    .await;
    csms.signal("TERM");
    csms.wait_exit().await;
}

async fn sandbox_with(opts: SandboxOptions) -> SandboxHandle {
    sandbox(SandboxOptions {
        policy: Policy {
            heartbeat_interval: 300,
            ..Policy::default()
        },
        ..opts
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_sigkill() {
    let csms = sandbox_with(SandboxOptions::default()).await;
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let state_s = state.to_str().unwrap();
    let url = csms.url();
    let mut emu = Proc::start(&emulate_args(&url, "CPK", state_s), home.path());
    booted(&csms, "CPK", 0).await;
    assert_eq!(
        change_key(&csms, "CPK", "MeterValueSampleInterval", "1234").await,
        "Accepted"
    );
    emu.child.kill().await.expect("SIGKILL");
    let cursor = csms.cursor();
    let _emu = Proc::start(&emulate_args(&url, "CPK", state_s), home.path());
    booted(&csms, "CPK", cursor).await;
    assert_eq!(
        get_key(&csms, "CPK", "MeterValueSampleInterval")
            .await
            .as_deref(),
        Some("1234")
    );
    csms.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_lines_are_reported_and_sigterm_stops_cleanly_with_state_kept() {
    let csms = sandbox_with(SandboxOptions::default()).await;
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let state_s = state.to_str().unwrap();
    let url = csms.url();
    let mut emu = Proc::start(&emulate_args(&url, "CPI", state_s), home.path());
    let cursor = booted(&csms, "CPI", 0).await;
    emu.send_line(r#"{"action":"fly"}"#).await;
    emu.send_line("not json at all").await;
    let first = emu
        .wait_json("error event", |v| {
            v["type"] == "error" && v["data"]["line"] == 1
        })
        .await;
    assert!(
        first["data"]["message"].as_str().unwrap().contains("fly"),
        "{first}"
    );
    emu.wait_json("second error event", |v| {
        v["type"] == "error" && v["data"]["line"] == 2
    })
    .await;
    // Still running: a good action goes through to the CSMS.
    emu.send_line(r#"{"action":"plug"}"#).await;
    let (status, _) = common::wait_call_from(&csms, "CPI", "StatusNotification", cursor, |p| {
        p["status"] == "Preparing"
    })
    .await;
    assert_eq!(status["connectorId"], 1);
    assert_eq!(
        change_key(&csms, "CPI", "MeterValueSampleInterval", "777").await,
        "Accepted"
    );

    emu.signal("TERM");
    assert!(emu.wait_exit().await.success(), "exit 0 on SIGTERM");
    let config: Value =
        serde_json::from_slice(&std::fs::read(state.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["values"]["MeterValueSampleInterval"], "777");
    // The simulated hardware was saved too: restarted, the charger still has the EV plugged in.
    let cursor = csms.cursor();
    let mut again = Proc::start(&emulate_args(&url, "CPI", state_s), home.path());
    let (status, _) = common::wait_call_from(&csms, "CPI", "StatusNotification", cursor, |p| {
        p["connectorId"] == 1
    })
    .await;
    assert_eq!(status["status"], "Preparing");
    assert_eq!(
        get_key(&csms, "CPI", "MeterValueSampleInterval")
            .await
            .as_deref(),
        Some("777")
    );
    again.signal("TERM");
    assert!(again.wait_exit().await.success());
    csms.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meter_start_wh_sets_the_register_and_a_restart_without_it_keeps_counting() {
    let csms = sandbox_with(SandboxOptions::default()).await;
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let state_s = state.to_str().unwrap();
    let url = csms.url();
    let mut args = emulate_args(&url, "CPW", state_s);
    args.extend(["--meter-start-wh", "5000000"]);
    let mut emu = Proc::start(&args, home.path());
    let cursor = booted(&csms, "CPW", 0).await;
    emu.send_line(r#"{"action":"plug"}"#).await;
    emu.send_line(r#"{"action":"card","id_tag":"CARD-W"}"#)
        .await;
    let (start, _) =
        common::wait_call_from(&csms, "CPW", "StartTransaction", cursor, |_| true).await;
    let meter_start = start["meterStart"].as_i64().unwrap();
    assert!(
        (5_000_000..5_001_000).contains(&meter_start),
        "meterStart {meter_start} from --meter-start-wh 5000000"
    );
    emu.send_line(r#"{"action":"unplug"}"#).await;
    let (stop, _) = common::wait_call_from(&csms, "CPW", "StopTransaction", cursor, |_| true).await;
    let meter_stop = stop["meterStop"].as_i64().unwrap();
    assert!(meter_stop >= meter_start, "{stop}");
    emu.signal("TERM");
    assert!(emu.wait_exit().await.success(), "exit 0 on SIGTERM");

    // Restarted without the flag: the register was kept in the state directory.
    let cursor = csms.cursor();
    let mut again = Proc::start(&emulate_args(&url, "CPW", state_s), home.path());
    let cursor = booted(&csms, "CPW", cursor).await;
    again.send_line(r#"{"action":"plug"}"#).await;
    again
        .send_line(r#"{"action":"card","id_tag":"CARD-W"}"#)
        .await;
    let (start, _) =
        common::wait_call_from(&csms, "CPW", "StartTransaction", cursor, |_| true).await;
    let restarted = start["meterStart"].as_i64().unwrap();
    assert!(
        restarted >= meter_stop && restarted < 5_001_000,
        "meterStart {restarted} after a restart, the register stood at {meter_stop}"
    );
    again.signal("TERM");
    assert!(again.wait_exit().await.success());
    csms.shutdown().await;
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_output_or_file() {
    let key_hex = hex::encode(KEY_TEXT);
    let b64 = base64::engine::general_purpose::STANDARD;
    let forbidden = [
        key_hex.clone(),
        key_hex.to_uppercase(),
        b64.encode(KEY_TEXT),
        b64.encode(&key_hex),
        KEY_TEXT.to_string(),
        b64.encode(format!("CPSEC:{KEY_TEXT}")),
    ];
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let state_s = state.to_str().unwrap();

    // 1. An in-test sandbox requiring the password; the key is also sent over OCPP.
    let csms = sandbox_with(SandboxOptions {
        require_basic_auth: true,
        passwords: HashMap::from([("CPSEC".to_string(), Secret::new(KEY_TEXT))]),
        ..SandboxOptions::default()
    })
    .await;
    let url = csms.url();
    let mut args = emulate_args(&url, "CPSEC", state_s);
    args.extend(["--security-profile", "1", "--authorization-key", &key_hex]);
    let mut emu = Proc::start(&args, home.path());
    booted(&csms, "CPSEC", 0).await;
    // The charger reconnects with the (same) new key; wait until it is back.
    let cursor = csms.cursor();
    assert_eq!(
        change_key(&csms, "CPSEC", "AuthorizationKey", &key_hex).await,
        "Accepted"
    );
    csms.wait_for_from(
        cursor,
        |e| matches!(&e.kind, chargectl::csms::EventKind::Connected { cp_id, .. } if cp_id == "CPSEC"),
        WAIT,
    )
    .await
    .expect("reconnected with the key");
    assert_eq!(
        get_key(&csms, "CPSEC", "SecurityProfile").await.as_deref(),
        Some("1")
    );
    emu.wait_json("key change logged", |v| {
        v["type"] == "log" && v.to_string().contains("AuthorizationKey")
    })
    .await;
    emu.signal("TERM");
    assert!(emu.wait_exit().await.success());
    let sandbox_json: Vec<String> = csms
        .events()
        .iter()
        .map(|e| e.to_json().to_string())
        .collect();
    csms.shutdown().await;

    // 2. The `chargectl csms --json` process sees the Basic credentials of the same charger.
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cli_csms = Proc::start(&["csms", "--listen", &listen, "--json"], home.path());
    cli_csms
        .wait_json("listening", |v| v["type"] == "listening")
        .await;
    let url2 = format!("ws://{listen}");
    let mut emu2 = Proc::start(&emulate_args(&url2, "CPSEC", state_s), home.path());
    let connected = cli_csms
        .wait_json("connected", |v| v["type"] == "connected")
        .await;
    assert_eq!(connected["data"]["basic_auth"]["user"], "CPSEC");
    cli_csms
        .wait_json("status", |v| {
            v["data"]["action"] == "StatusNotification" && v["data"]["payload"]["connectorId"] == 1
        })
        .await;
    emu2.signal("TERM");
    assert!(emu2.wait_exit().await.success());
    cli_csms.signal("TERM");
    cli_csms.wait_exit().await;

    let mut texts: Vec<(String, String)> = vec![
        ("emulator stdout".into(), emu.stdout().join("\n")),
        ("emulator stderr".into(), emu.stderr().join("\n")),
        ("second emulator stdout".into(), emu2.stdout().join("\n")),
        ("second emulator stderr".into(), emu2.stderr().join("\n")),
        ("sandbox events as printed".into(), sandbox_json.join("\n")),
        ("chargectl csms stdout".into(), cli_csms.stdout().join("\n")),
        ("chargectl csms stderr".into(), cli_csms.stderr().join("\n")),
    ];
    assert!(
        texts[0].1.contains("AuthorizationKey"),
        "the outputs were captured"
    );
    let mut files = Vec::new();
    files_under(home.path(), &mut files);
    let mut secrets_files = 0;
    for file in files {
        if file.file_name().is_some_and(|n| n == "secrets.json") {
            secrets_files += 1;
            continue;
        }
        let bytes = std::fs::read(&file).unwrap_or_default();
        texts.push((
            file.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    assert_eq!(secrets_files, 1, "the key is stored, in secrets.json only");
    for (name, text) in &texts {
        for secret in &forbidden {
            assert!(
                !text.contains(secret.as_str()),
                "a form of the key appears in {name}"
            );
        }
    }
}
