//! The serial service port end to end: the real `chargectl emulate --serial-link` charger on a
//! pseudo-terminal, driven by the real CLI (`info`, `config`, `logs`, `flash`) and the link
//! client library, including a flash killed mid-transfer and resumed, a noisy line and a USB
//! re-enumeration.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

#[path = "common/cli_run.rs"]
mod cli_run;

use chargectl::link::{Client, ClientOptions, LogEvent, SetOutcome};
use chargectl::stack::logbook::Level;
use cli_run::{Run, command};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::watch;

/// Bound on any single wait for the emulator or a CLI run.
const WAIT: Duration = Duration::from_secs(30);
/// An AuthorizationKey (20 bytes as hex) that must never appear in any output.
const AUTH_KEY_HEX: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";

/// Runs `chargectl ARGS` to completion within `limit`.
async fn cli_within(home: &Path, args: &[&str], limit: Duration) -> Run {
    cli_run::run(home, args, &[], limit).await
}

async fn cli(home: &Path, args: &[&str]) -> Run {
    cli_within(home, args, WAIT).await
}

/// Lines of a child's output, collected as they come.
#[derive(Clone)]
struct Lines {
    lines: Arc<Mutex<Vec<String>>>,
    seen: watch::Receiver<usize>,
}

impl Lines {
    fn collect(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Lines {
        let (notify, seen) = watch::channel(0usize);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let store = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                store.lock().unwrap().push(line);
                notify.send_modify(|n| *n += 1);
            }
        });
        Lines { lines, seen }
    }

    fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn json(&self) -> Vec<Value> {
        self.all()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for a JSON line matching `pred`; None when `limit` passes or the stream ends.
    async fn wait_json(&mut self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        tokio::time::timeout(limit, async {
            loop {
                if let Some(v) = self.json().into_iter().find(|v| pred(v)) {
                    return Some(v);
                }
                if self.seen.changed().await.is_err() {
                    return self.json().into_iter().find(|v| pred(v));
                }
            }
        })
        .await
        .ok()
        .flatten()
    }
}

/// A running `chargectl emulate --headless --json --serial-link` with the sandbox CSMS.
struct Emulator {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines,
    stderr: Lines,
    port: PathBuf,
}

impl Emulator {
    async fn start(dir: &Path, trust_key: &Path, extra: &[&str]) -> Emulator {
        let port = dir.join("port");
        let state = dir.join("state");
        let mut args: Vec<String> = [
            "emulate",
            "--headless",
            "--json",
            "--serial-link",
            port.to_str().unwrap(),
            "--trust-key",
            trust_key.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = command(dir)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chargectl emulate starts");
        let stdout = Lines::collect(child.stdout.take().unwrap());
        let stderr = Lines::collect(child.stderr.take().unwrap());
        let stdin = child.stdin.take().unwrap();
        let mut emu = Emulator {
            child,
            stdin,
            stdout,
            stderr,
            port,
        };
        let up = emu
            .stdout
            .wait_json(WAIT, |v| {
                v["type"] == "log"
                    && v["data"]["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("service port on"))
            })
            .await;
        assert!(
            up.is_some(),
            "the service port never came up: {}",
            emu.dump()
        );
        assert!(emu.port.exists(), "no link at {}", emu.port.display());
        emu
    }

    fn port(&self) -> &str {
        self.port.to_str().unwrap()
    }

    fn dump(&self) -> String {
        format!(
            "emulator stdout:\n{}\nemulator stderr:\n{}",
            self.stdout.all().join("\n"),
            self.stderr.all().join("\n")
        )
    }

    async fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.write_all(b"\n").await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Waits for the OCPP BootNotification the charger sends with this firmware version.
    async fn wait_boot_notification(&mut self, version: &str) -> Option<Value> {
        self.stdout
            .wait_json(WAIT, |v| {
                v["type"] == "message"
                    && v["data"]["direction"] == "sent"
                    && v["data"]["frame"][2] == "BootNotification"
                    && v["data"]["frame"][3]["firmwareVersion"] == version
            })
            .await
    }

    async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
        self.dump()
    }
}

/// Makes a key pair with `chargectl firmware keygen`; returns (secret, public).
async fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let run = cli(
        dir,
        &[
            "firmware",
            "keygen",
            "--output",
            dir.join(name).to_str().unwrap(),
            "--json",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let v = run.json();
    (
        PathBuf::from(v["secret_key"].as_str().unwrap()),
        PathBuf::from(v["public_key"].as_str().unwrap()),
    )
}

/// Incompressible bytes, reproducible from `seed`.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Packs a payload with `chargectl firmware pack`; returns the image path.
async fn pack(dir: &Path, key: &Path, version: &str, payload: &[u8]) -> PathBuf {
    let payload_path = dir.join(format!("payload-{version}-{}.bin", payload.len()));
    std::fs::write(&payload_path, payload).unwrap();
    let image = dir.join(format!("fw-{version}-{}.img", key_name(key)));
    let run = cli(
        dir,
        &[
            "firmware",
            "pack",
            "--key",
            key.to_str().unwrap(),
            "--version",
            version,
            payload_path.to_str().unwrap(),
            "--output",
            image.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    image
}

fn key_name(key: &Path) -> String {
    key.file_name().unwrap().to_string_lossy().into_owned()
}

async fn firmware_version(dir: &Path, port: &str) -> String {
    let run = cli(dir, &["info", "--port", port, "--json"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    run.json()["identity"]["firmware_version"]
        .as_str()
        .expect("a firmware version")
        .to_string()
}

fn progress_lines(run: &Run) -> Vec<Value> {
    run.json_lines()
        .into_iter()
        .filter(|v| v["type"] == "progress")
        .map(|v| v["data"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_config_and_logs_over_the_service_port() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, public) = keygen(dir, "k").await;
    let mut emu = Emulator::start(dir, &public, &[]).await;
    let port = emu.port().to_string();

    // info: the charger's identity.
    let run = cli(dir, &["info", "--port", &port, "--json"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let id = &run.json()["identity"];
    assert_eq!(id["vendor"], "Zaptec", "{id}");
    assert_eq!(id["model"], "Go", "{id}");
    assert!(
        id["firmware_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{id}"
    );
    let text = cli(dir, &["info", "--port", &port]).await;
    assert_eq!(text.code, 0, "{text:#?}");
    assert!(text.stdout.contains("Zaptec"), "{text:#?}");

    // config get: everything, then named keys.
    let all = cli(dir, &["config", "get", "--port", &port, "--json"]).await;
    assert_eq!(all.code, 0, "{all:#?}");
    let entries = all.json()["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let keys: Vec<&str> = entries.iter().filter_map(|e| e["key"].as_str()).collect();
    for key in [
        "HeartbeatInterval",
        "NumberOfConnectors",
        "AuthorizationKey",
        "CsmsUrl",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    let connectors = entries
        .iter()
        .find(|e| e["key"] == "NumberOfConnectors")
        .unwrap();
    assert_eq!(connectors["readonly"], true, "{connectors}");
    assert_eq!(connectors["value"], "1", "{connectors}");
    let named = cli(
        dir,
        &[
            "config",
            "get",
            "HeartbeatInterval",
            "MeterValueSampleInterval",
            "--port",
            &port,
            "--json",
        ],
    )
    .await;
    assert_eq!(named.code, 0, "{named:#?}");
    let named_keys: Vec<Value> = named.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].clone())
        .collect();
    assert_eq!(
        named_keys,
        vec!["HeartbeatInterval", "MeterValueSampleInterval"]
    );
    let unknown = cli(dir, &["config", "get", "NoSuchKey", "--port", &port]).await;
    assert_eq!(unknown.code, 4, "{unknown:#?}");
    assert!(unknown.stderr.contains("NoSuchKey"), "{unknown:#?}");

    // logs: the history since boot, JSON Lines with gapless sequence numbers from 1.
    let logs = cli(dir, &["logs", "--port", &port, "--json"]).await;
    assert_eq!(logs.code, 0, "{logs:#?}");
    let records: Vec<Value> = logs
        .json_lines()
        .into_iter()
        .filter(|v| v["type"] == "log")
        .map(|v| v["data"].clone())
        .collect();
    let seqs: Vec<u64> = records.iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert_eq!(seqs.len(), records.len(), "{records:#?}");
    assert_eq!(seqs.first(), Some(&1), "history starts at boot: {seqs:?}");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "sequence numbers have gaps: {seqs:?}"
    );
    assert!(
        records.iter().any(|r| r["message"]
            .as_str()
            .is_some_and(|m| m.contains("firmware slots"))),
        "no boot line: {records:#?}"
    );

    // logs --follow (the CLI holds the port): history, then live lines as the charger works.
    let mut follow = command(dir)
        .args(["logs", "--follow", "--port", &port, "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut follow_out = Lines::collect(follow.stdout.take().unwrap());
    let follow_err = Lines::collect(follow.stderr.take().unwrap());
    let history = follow_out
        .wait_json(WAIT, |v| v["type"] == "log" && v["data"]["seq"] == 1)
        .await;
    assert!(
        history.is_some(),
        "logs --follow printed no history: {:?} {:?}",
        follow_out.all(),
        follow_err.all()
    );
    let last_history_seq = *seqs.last().unwrap();
    emu.send(r#"{"action":"plug"}"#).await;
    let live = follow_out
        .wait_json(WAIT, |v| {
            v["type"] == "log" && v["data"]["seq"].as_u64().unwrap_or(0) > last_history_seq
        })
        .await;
    assert!(
        live.is_some(),
        "logs --follow showed nothing new: {:?} {:?}",
        follow_out.all(),
        follow_err.all()
    );
    let followed: Vec<u64> = follow_out
        .json()
        .iter()
        .filter(|v| v["type"] == "log")
        .filter_map(|v| v["data"]["seq"].as_u64())
        .collect();
    assert!(
        followed.windows(2).all(|w| w[1] == w[0] + 1),
        "{followed:?}"
    );
    assert!(
        follow.try_wait().unwrap().is_none(),
        "logs --follow stopped by itself"
    );
    let _ = follow.start_kill();
    let _ = tokio::time::timeout(WAIT, follow.wait()).await;

    // The port takes one program at a time, so a config change seen by a following log
    // stream goes through one library client: the change's line arrives on the stream.
    let client = Client::connect(&port, 115_200, ClientOptions::default())
        .await
        .unwrap();
    let mut stream = client.logs(Level::Info, true).await.unwrap();
    let outcome = client
        .config_set(vec![("MeterValueSampleInterval".into(), "30".into())])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        vec![("MeterValueSampleInterval".to_string(), SetOutcome::Accepted)]
    );
    let seen = tokio::time::timeout(WAIT, async {
        while let Some(event) = stream.next().await {
            if let LogEvent::Record(r) = event
                && r.message.starts_with("MeterValueSampleInterval = 30")
            {
                return Some(r);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("the config change shows on the log stream");
    assert!(seen.seq > last_history_seq, "{seen:?}");
    drop(stream);
    drop(client);

    // config set of a normal key, read back.
    let set = cli(
        dir,
        &[
            "config",
            "set",
            "HeartbeatInterval=123",
            "--port",
            &port,
            "--json",
        ],
    )
    .await;
    assert_eq!(set.code, 0, "{set:#?}");
    assert_eq!(set.json()["results"][0]["key"], "HeartbeatInterval");
    let back = cli(
        dir,
        &[
            "config",
            "get",
            "HeartbeatInterval",
            "--port",
            &port,
            "--json",
        ],
    )
    .await;
    assert_eq!(back.json()["entries"][0]["value"], "123", "{back:#?}");

    // A read-only key: refused (exit 4) with the reason; the value is unchanged.
    let ro = cli(
        dir,
        &["config", "set", "NumberOfConnectors=2", "--port", &port],
    )
    .await;
    assert_eq!(ro.code, 4, "{ro:#?}");
    assert!(ro.all_output().contains("NumberOfConnectors"), "{ro:#?}");
    assert!(
        ro.all_output().to_lowercase().contains("read-only")
            || ro.all_output().to_lowercase().contains("read only")
            || ro.all_output().to_lowercase().contains("readonly"),
        "no reason given: {ro:#?}"
    );
    let still = cli(
        dir,
        &[
            "config",
            "get",
            "NumberOfConnectors",
            "--port",
            &port,
            "--json",
        ],
    )
    .await;
    assert_eq!(still.json()["entries"][0]["value"], "1", "{still:#?}");

    // An invalid value: exit 4 naming the key; the old value stays.
    let bad = cli(
        dir,
        &["config", "set", "HeartbeatInterval=often", "--port", &port],
    )
    .await;
    assert_eq!(bad.code, 4, "{bad:#?}");
    assert!(bad.stderr.contains("HeartbeatInterval"), "{bad:#?}");
    let back = cli(
        dir,
        &[
            "config",
            "get",
            "HeartbeatInterval",
            "--port",
            &port,
            "--json",
        ],
    )
    .await;
    assert_eq!(back.json()["entries"][0]["value"], "123", "{back:#?}");

    // AuthorizationKey: accepted, never read back, the hex never shown anywhere.
    let auth_arg = format!("AuthorizationKey={AUTH_KEY_HEX}");
    let auth = cli(dir, &["config", "set", &auth_arg, "--port", &port]).await;
    assert_eq!(auth.code, 0, "{auth:#?}");
    assert!(auth.stdout.contains("AuthorizationKey"), "{auth:#?}");
    let auth_json = cli(
        dir,
        &["config", "set", &auth_arg, "--port", &port, "--json"],
    )
    .await;
    assert_eq!(auth_json.code, 0, "{auth_json:#?}");
    let read = cli(
        dir,
        &[
            "config",
            "get",
            "AuthorizationKey",
            "--port",
            &port,
            "--json",
        ],
    )
    .await;
    assert_eq!(read.code, 0, "{read:#?}");
    let entry = &read.json()["entries"][0];
    assert_eq!(entry["key"], "AuthorizationKey");
    assert_eq!(entry["write_only"], true, "{entry}");
    assert!(entry["value"].is_null(), "{entry}");
    let read_text = cli(dir, &["config", "get", "AuthorizationKey", "--port", &port]).await;
    assert!(read_text.stdout.contains("<write-only>"), "{read_text:#?}");
    let all_after = cli(dir, &["config", "get", "--port", &port]).await;
    let logs_after = cli(
        dir,
        &["logs", "--port", &port, "--json", "--level", "trace"],
    )
    .await;
    assert!(
        logs_after.stdout.contains("AuthorizationKey"),
        "the change is logged (redacted): {logs_after:#?}"
    );
    let emulator_output = emu.dump();
    for (what, text) in [
        ("set", auth.all_output()),
        ("set --json", auth_json.all_output()),
        ("get", read.all_output()),
        ("get text", read_text.all_output()),
        ("get all", all_after.all_output()),
        ("logs", logs_after.all_output()),
        ("emulator", emulator_output.clone()),
    ] {
        assert!(
            !text.to_lowercase().contains(AUTH_KEY_HEX),
            "the AuthorizationKey shows in {what}: {text}"
        );
    }

    // The emulator is still answering at the end.
    emu.send(r#"{"action":"plug"}"#).await;
    assert_eq!(cli(dir, &["info", "--port", &port]).await.code, 0);
    let out = emu.stop().await;
    assert!(!out.to_lowercase().contains(AUTH_KEY_HEX));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_reboots_into_the_new_version_refuses_bad_images_and_resumes_after_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (secret, public) = keygen(dir, "k").await;
    let (other_secret, _) = keygen(dir, "other").await;
    // A throttled line (about 200 kB/s) so the transfer can be caught mid-way.
    let mut emu = Emulator::start(dir, &public, &["--serial-baud", "2000000"]).await;
    let port = emu.port().to_string();
    let factory = firmware_version(dir, &port).await;

    // A good image: progress lines, a reboot, the new version in `info` and in BootNotification.
    let image = pack(dir, &secret, "2.0.0", &noise(64 * 1024, 1)).await;
    let run = cli(
        dir,
        &["flash", image.to_str().unwrap(), "--port", &port, "--json"],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}\n{}", emu.dump());
    let progress = progress_lines(&run);
    assert!(!progress.is_empty(), "no progress lines: {run:#?}");
    let last = progress.last().unwrap();
    assert_eq!(last["total"], last["done"], "{progress:#?}");
    let result = run
        .json_lines()
        .into_iter()
        .find(|v| v["type"] == "result")
        .expect("a result line");
    assert_eq!(
        result["data"]["before"]["firmware_version"],
        factory.as_str()
    );
    assert_eq!(result["data"]["flash"]["version"], "2.0.0");
    assert_eq!(result["data"]["after"]["firmware_version"], "2.0.0");
    assert_eq!(firmware_version(dir, &port).await, "2.0.0");
    assert!(
        emu.wait_boot_notification("2.0.0").await.is_some(),
        "no BootNotification with 2.0.0: {}",
        emu.dump()
    );

    // Signed by a key the charger does not trust: refused by the charger, version unchanged.
    let foreign = pack(dir, &other_secret, "6.6.6", &noise(16 * 1024, 2)).await;
    let run = cli(dir, &["flash", foreign.to_str().unwrap(), "--port", &port]).await;
    assert_eq!(run.code, 5, "{run:#?}");
    assert!(run.stderr.contains("refused"), "{run:#?}");
    assert_eq!(firmware_version(dir, &port).await, "2.0.0");

    // A payload corrupted after signing: refused before the charger is touched.
    let good = pack(dir, &secret, "4.0.0", &noise(16 * 1024, 3)).await;
    let mut bytes = std::fs::read(&good).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x40;
    let corrupt = dir.join("corrupt-payload.img");
    std::fs::write(&corrupt, &bytes).unwrap();
    let run = cli(dir, &["flash", corrupt.to_str().unwrap(), "--port", &port]).await;
    assert_eq!(run.code, 5, "{run:#?}");
    // A damaged signature (hash intact): only the charger can tell, and it refuses.
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[200] ^= 0x01;
    let bad_sig = dir.join("corrupt-signature.img");
    std::fs::write(&bad_sig, &bytes).unwrap();
    let run = cli(dir, &["flash", bad_sig.to_str().unwrap(), "--port", &port]).await;
    assert_eq!(run.code, 5, "{run:#?}");
    assert_eq!(firmware_version(dir, &port).await, "2.0.0");

    // A flash killed once past ~30 %: the charger keeps the old version; a new flash resumes.
    let big = pack(dir, &secret, "3.0.0", &noise(512 * 1024, 4)).await;
    let mut flash = command(dir)
        .args(["flash", big.to_str().unwrap(), "--port", &port, "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut flash_out = Lines::collect(flash.stdout.take().unwrap());
    let flash_err = Lines::collect(flash.stderr.take().unwrap());
    let past = flash_out
        .wait_json(WAIT, |v| {
            v["type"] == "progress"
                && v["data"]["phase"] == "sending"
                && v["data"]["done"].as_f64().unwrap_or(0.0)
                    >= 0.3 * v["data"]["total"].as_f64().unwrap_or(f64::MAX)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "flash never passed 30 %: {:?} {:?}",
                flash_out.all(),
                flash_err.all()
            )
        });
    flash.start_kill().unwrap(); // SIGKILL
    let status = tokio::time::timeout(WAIT, flash.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success());
    let killed_at = past["data"]["done"].as_u64().unwrap();
    let total = past["data"]["total"].as_u64().unwrap();
    assert!(
        killed_at < total,
        "the transfer was already complete when killed: {past}"
    );
    assert_eq!(firmware_version(dir, &port).await, "2.0.0");

    let run = cli(
        dir,
        &["flash", big.to_str().unwrap(), "--port", &port, "--json"],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}\n{}", emu.dump());
    let progress = progress_lines(&run);
    let first = progress.first().expect("progress lines");
    assert!(
        first["done"].as_u64().unwrap() > 0 && first["resumed_from"].as_u64().unwrap() > 0,
        "the second flash started from 0: {first}"
    );
    let result = run
        .json_lines()
        .into_iter()
        .find(|v| v["type"] == "result")
        .expect("a result line");
    let resumed = result["data"]["flash"]["resumed_from"].as_u64().unwrap();
    assert!(resumed > 0 && resumed <= total, "{result}");
    assert_eq!(result["data"]["after"]["firmware_version"], "3.0.0");
    assert_eq!(firmware_version(dir, &port).await, "3.0.0");
    assert!(
        emu.wait_boot_notification("3.0.0").await.is_some(),
        "no BootNotification with 3.0.0: {}",
        emu.dump()
    );
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_line_still_gives_right_config_and_firmware() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (secret, public) = keygen(dir, "k").await;
    let emu = Emulator::start(
        dir,
        &public,
        &["--serial-drop-rate", "0.001", "--serial-flip-rate", "0.001"],
    )
    .await;
    let port = emu.port().to_string();
    let before = firmware_version(dir, &port).await;

    for value in ["45", "600", "3600"] {
        let arg = format!("HeartbeatInterval={value}");
        let set = cli(dir, &["config", "set", &arg, "--port", &port]).await;
        assert_eq!(set.code, 0, "{set:#?}");
        let back = cli(
            dir,
            &[
                "config",
                "get",
                "HeartbeatInterval",
                "--port",
                &port,
                "--json",
            ],
        )
        .await;
        assert_eq!(back.code, 0, "{back:#?}");
        assert_eq!(back.json()["entries"][0]["value"], value, "{back:#?}");
    }

    let image = pack(dir, &secret, "5.1.0", &noise(1024 * 1024, 5)).await;
    let started = Instant::now();
    let run = cli_within(
        dir,
        &["flash", image.to_str().unwrap(), "--port", &port, "--json"],
        Duration::from_secs(180),
    )
    .await;
    let took = started.elapsed();
    let now = firmware_version(dir, &port).await;
    if run.code == 0 {
        let result = run
            .json_lines()
            .into_iter()
            .find(|v| v["type"] == "result")
            .expect("a result line");
        assert_eq!(result["data"]["after"]["firmware_version"], "5.1.0");
        assert_eq!(now, "5.1.0");
        eprintln!(
            "1 MiB flash over a noisy line took {took:?}: {}",
            result["data"]["flash"]
        );
    } else {
        // A failure must say so clearly and leave the charger on a version it had.
        assert!(
            run.all_output().contains("error") || run.all_output().contains("chargectl:"),
            "{run:#?}"
        );
        assert!(now == before || now == "5.1.0", "charger runs {now}");
        panic!("the flash failed on a noisy line after {took:?}: {run:#?}");
    }
    emu.stop().await;
}

fn result_line(run: &Run) -> Value {
    run.json_lines()
        .into_iter()
        .find(|v| v["type"] == "result")
        .unwrap_or_else(|| panic!("a result line: {run:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_waits_for_the_trial_boot_and_reports_a_rollback_or_a_confirmation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (secret, public) = keygen(dir, "k").await;
    let mut emu = Emulator::start(dir, &public, &[]).await;
    let port = emu.port().to_string();
    let factory = firmware_version(dir, &port).await;

    // An image that crashes on each of its trial boots: the charger goes back to the factory
    // image, and flash says so with its own status, naming the version that runs again.
    emu.send(r#"{"action":"fail_boots","count":3}"#).await;
    let image = pack(dir, &secret, "3.0.0", &noise(32 * 1024, 31)).await;
    let run = cli(
        dir,
        &["flash", image.to_str().unwrap(), "--port", &port, "--json"],
    )
    .await;
    assert_eq!(run.code, 8, "rolled_back: {run:#?}\n{}", emu.dump());
    let boot = &result_line(&run)["data"]["boot"];
    assert_eq!(boot["outcome"], "rolled_back", "{boot}");
    assert_eq!(boot["running"], factory.as_str(), "{boot}");
    assert_eq!(boot["boot_state"], "reverted", "{boot}");
    let error = run
        .json_lines()
        .into_iter()
        .find(|v| v["type"] == "error")
        .expect("an error line");
    assert_eq!(error["data"]["kind"], "rolled_back", "{error}");
    let message = error["data"]["message"].as_str().unwrap();
    assert!(
        message.contains("firmware 3.0.0 did not come up")
            && message.contains(&format!("went back to {factory}")),
        "{message}"
    );
    assert_eq!(firmware_version(dir, &port).await, factory);
    // An image that crashes twice and comes up on its third trial boot: confirmed.
    emu.send(r#"{"action":"fail_boots","count":2}"#).await;
    let image = pack(dir, &secret, "3.1.0", &noise(32 * 1024, 32)).await;
    let run = cli(
        dir,
        &["flash", image.to_str().unwrap(), "--port", &port, "--json"],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}\n{}", emu.dump());
    let result = result_line(&run);
    let boot = &result["data"]["boot"];
    assert_eq!(boot["outcome"], "confirmed", "{boot}");
    assert_eq!(boot["running"], "3.1.0", "{boot}");
    assert_eq!(boot["boot_state"], "normal", "{boot}");
    assert_eq!(result["data"]["after"]["firmware_version"], "3.1.0");
    assert!(
        emu.wait_boot_notification("3.1.0").await.is_some(),
        "no BootNotification with 3.1.0: {}",
        emu.dump()
    );

    // A failure the installer can see without --json: the rollback message on stderr.
    emu.send(r#"{"action":"fail_boots","count":3}"#).await;
    let image = pack(dir, &secret, "3.2.0", &noise(32 * 1024, 33)).await;
    let run = cli(dir, &["flash", image.to_str().unwrap(), "--port", &port]).await;
    assert_eq!(run.code, 8, "{run:#?}");
    assert!(
        run.stderr.contains("firmware 3.2.0 did not come up")
            && run.stderr.contains("went back to 3.1.0"),
        "{run:#?}"
    );
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usb_replug_re_enumerates_the_port_behind_the_same_link() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, public) = keygen(dir, "k").await;
    let mut emu = Emulator::start(dir, &public, &[]).await;
    let port = emu.port().to_string();
    assert_eq!(cli(dir, &["info", "--port", &port]).await.code, 0);
    let before = std::fs::read_link(&emu.port).unwrap();

    emu.send(r#"{"action":"usb_replug"}"#).await;
    let event = emu
        .stdout
        .wait_json(WAIT, |v| v["type"] == "usb_replug")
        .await
        .unwrap_or_else(|| panic!("no usb_replug event: {}", emu.dump()));
    let device = PathBuf::from(event["data"]["device"].as_str().unwrap());
    assert_ne!(device, before, "the port did not re-enumerate");
    assert!(device.starts_with("/dev/pts"), "{}", device.display());
    assert_eq!(std::fs::read_link(&emu.port).unwrap(), device);

    let run = cli(dir, &["info", "--port", &port, "--json"]).await;
    assert_eq!(run.code, 0, "{run:#?}\n{}", emu.dump());
    assert_eq!(run.json()["identity"]["vendor"], "Zaptec");
    let set = cli(
        dir,
        &["config", "set", "HeartbeatInterval=99", "--port", &port],
    )
    .await;
    assert_eq!(set.code, 0, "{set:#?}");
    emu.stop().await;
}

/// A provision document as its first version had it: profile, dry_run and each change's key,
/// old, new and outcome (later versions add fields).
fn shape(doc: &Value) -> Value {
    let changes: Vec<Value> = doc["changes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    serde_json::json!({"key": c["key"], "old": c["old"], "new": c["new"],
                                       "outcome": c["outcome"]})
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({"profile": doc["profile"], "dry_run": doc["dry_run"], "changes": changes})
}

/// Runs `chargectl ARGS` with extra environment variables.
async fn cli_env(home: &Path, args: &[&str], vars: &[(&str, &str)]) -> Run {
    cli_run::run(home, args, vars, WAIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_shows_the_changes_writes_them_in_order_and_never_prints_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, public) = keygen(dir, "k").await;
    let emu = Emulator::start(dir, &public, &[]).await;
    let port = emu.port().to_string();
    let profile = dir.join("site.toml");
    std::fs::write(
        &profile,
        "name = \"Garage\"\n\
         [variables]\n\
         CP = { description = \"charge point id\" }\n\
         [ocpp]\n\
         charge_point_id = \"GARAGE-${CP}\"\n\
         security_profile = 1\n\
         authorization_key = { env = \"SITE_AUTH_KEY\" }\n\
         [config]\n\
         HeartbeatInterval = 300\n\
         ConnectionTimeOut = 60\n\
         MeterValuesSampledData = [\"Energy.Active.Import.Register\", \"Current.Import\"]\n",
    )
    .unwrap();
    let profile = profile.to_str().unwrap();
    let provision = |extra: &'static [&'static str]| {
        let mut args = vec!["provision", profile, "--port", &port, "--set", "CP=7"];
        args.extend_from_slice(extra);
        async move { cli_env(dir, &args, &[("SITE_AUTH_KEY", AUTH_KEY_HEX)]).await }
    };

    // A dry run: the diff and the charger's rules, nothing written.
    let dry = provision(&["--dry-run"]).await;
    assert_eq!(dry.code, 0, "{dry:#?}");
    assert_eq!(
        dry.stdout,
        "would apply profile Garage (dry run: nothing written)\n\
         \x20 ChargePointId: ZAP000001 -> GARAGE-7  [ok, takes effect after a reboot]\n\
         \x20 ConnectionTimeOut: 30 -> 60  [ok]\n\
         \x20 HeartbeatInterval: 300 (unchanged)  [ok]\n\
         \x20 MeterValuesSampledData: Energy.Active.Import.Register -> \
         Energy.Active.Import.Register,Current.Import  [ok]\n\
         \x20 AuthorizationKey: <write-only> -> <redacted>  [ok]\n\
         \x20 SecurityProfile: 0 -> 1  [ok]\n"
    );
    let dry_json = provision(&["--dry-run", "--json"]).await;
    assert_eq!(dry_json.code, 0, "{dry_json:#?}");
    let change = |key: &str, old: &str, new: &str, outcome: &str| serde_json::json!({"key": key, "old": old, "new": new, "outcome": outcome});
    let new_meter = "Energy.Active.Import.Register,Current.Import";
    assert_eq!(
        shape(&dry_json.json()),
        serde_json::json!({
            "profile": "Garage",
            "dry_run": true,
            "changes": [
                change("ChargePointId", "ZAP000001", "GARAGE-7", "ok, takes effect after a reboot"),
                change("ConnectionTimeOut", "30", "60", "ok"),
                change("HeartbeatInterval", "300", "300", "ok"),
                change("MeterValuesSampledData", "Energy.Active.Import.Register", new_meter, "ok"),
                change("AuthorizationKey", "<write-only>", "<redacted>", "ok"),
                change("SecurityProfile", "0", "1", "ok"),
            ],
        })
    );

    // Written, SecurityProfile last; a second run finds every plain key in place.
    let applied = provision(&[]).await;
    assert_eq!(applied.code, 0, "{applied:#?}");
    // The key list, then the result of the wait for online (ChargePointId needed a reboot).
    let (keys, online) = applied
        .stdout
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or_default();
    assert!(online.starts_with("online: connected to "), "{applied:#?}");
    assert_eq!(
        format!("{keys}\n"),
        "applied profile Garage\n\
         \x20 ChargePointId: ZAP000001 -> GARAGE-7  [accepted, takes effect after a reboot]\n\
         \x20 ConnectionTimeOut: 30 -> 60  [accepted]\n\
         \x20 HeartbeatInterval: 300 (unchanged)  [not written]\n\
         \x20 MeterValuesSampledData: Energy.Active.Import.Register -> \
         Energy.Active.Import.Register,Current.Import  [accepted]\n\
         \x20 AuthorizationKey: <write-only> -> <redacted>  [accepted]\n\
         \x20 SecurityProfile: 0 -> 1  [accepted]\n"
    );
    let again = provision(&["--json"]).await;
    assert_eq!(again.code, 0, "{again:#?}");
    // Keys the charger holds already are not written again; the AuthorizationKey cannot be
    // read back, so it is.
    let accepted_after_reboot = "unchanged, not written";
    assert_eq!(
        shape(&again.json()),
        serde_json::json!({
            "profile": "Garage",
            "dry_run": false,
            "changes": [
                change("ChargePointId", "GARAGE-7", "GARAGE-7", accepted_after_reboot),
                change("ConnectionTimeOut", "60", "60", "unchanged, not written"),
                change("HeartbeatInterval", "300", "300", "unchanged, not written"),
                change("MeterValuesSampledData", new_meter, new_meter, "unchanged, not written"),
                change("AuthorizationKey", "<write-only>", "<redacted>", "accepted"),
                change("SecurityProfile", "1", "1", "unchanged, not written"),
            ],
        })
    );
    let refusing = dir.join("refusing.toml");
    std::fs::write(
        &refusing,
        "name = \"Refusing\"\n[config]\nHeartbeatInterval = \"soon\"\nConnectionTimeOut = 45\n",
    )
    .unwrap();
    let refusing = refusing.to_str().unwrap();
    // A value the charger refuses: exit 4 naming the key and the charger's reason.
    let rule = "HeartbeatInterval: \"soon\" is not an integer in 0..=4294967";
    let refused_dry = cli(dir, &["provision", refusing, "--port", &port, "--dry-run"]).await;
    assert_eq!(refused_dry.code, 4, "{refused_dry:#?}");
    assert_eq!(
        refused_dry.stdout,
        format!(
            "would apply profile Refusing (dry run: nothing written)\n\
             \x20 ConnectionTimeOut: 60 -> 45  [ok]\n\
             \x20 HeartbeatInterval: 300 -> soon  [would be rejected: {rule}]\n"
        )
    );
    assert_eq!(
        refused_dry.stderr,
        format!(
            "chargectl: the charger would refuse HeartbeatInterval (would be rejected: {rule})\n"
        )
    );
    let refused = cli(dir, &["provision", refusing, "--port", &port, "--json"]).await;
    assert_eq!(refused.code, 4, "{refused:#?}");
    let lines = refused.json_lines();
    assert_eq!(
        shape(&lines[0]),
        serde_json::json!({
            "profile": "Refusing",
            "dry_run": false,
            "changes": [
                change("ConnectionTimeOut", "60", "45", "accepted"),
                change("HeartbeatInterval", "300", "soon", &format!("rejected: {rule}")),
            ],
        })
    );
    assert_eq!(lines[1]["type"], "error", "{refused:#?}");
    assert_eq!(lines[1]["data"]["kind"], "refused", "{refused:#?}");

    // Missing inputs name the flag or the variable to set; the charger is not touched.
    let no_var = cli_env(
        dir,
        &["provision", profile, "--port", &port],
        &[("SITE_AUTH_KEY", AUTH_KEY_HEX)],
    )
    .await;
    assert_eq!(no_var.code, 2, "{no_var:#?}");
    assert!(no_var.stderr.contains("pass --set CP=VALUE"), "{no_var:#?}");
    let no_key = cli(
        dir,
        &["provision", profile, "--port", &port, "--set", "CP=7"],
    )
    .await;
    assert_eq!(no_key.code, 2, "{no_key:#?}");
    assert!(
        no_key
            .stderr
            .contains("export SITE_AUTH_KEY (no prompt without a terminal)"),
        "{no_key:#?}"
    );

    let config = cli(dir, &["config", "get", "--port", &port, "--json"]).await;
    let value = |key: &str| {
        config.json()["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == key)
            .map(|e| e["value"].clone())
            .unwrap()
    };
    assert_eq!(value("ChargePointId"), "GARAGE-7");
    assert_eq!(value("SecurityProfile"), "1");
    assert_eq!(value("HeartbeatInterval"), "300", "refused key unchanged");
    for run in [
        &dry,
        &dry_json,
        &applied,
        &again,
        &refused_dry,
        &refused,
        &no_var,
        &no_key,
        &config,
    ] {
        assert!(
            !run.all_output().contains(AUTH_KEY_HEX),
            "the AuthorizationKey was printed: {run:#?}"
        );
    }
    drop(emu);
}
