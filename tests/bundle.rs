//! Support bundles end to end: a real `chargectl emulate --serial-link` charger provisioned with
//! an AuthorizationKey (so the key crossed the recorded serial session), its log read, then
//! `chargectl bundle --port` and, after the charger is gone, `--from-records`. Each archive is
//! unpacked, its manifest checked against the files, and every file searched for the key in
//! hex, in bytes and in base64: it is never there.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

#[path = "common/cli_run.rs"]
mod cli_run;

use base64::Engine;
use cli_run::{Run, command};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

const WAIT: Duration = Duration::from_secs(90);
/// 20 printable bytes, so its HTTP Basic password is text too.
const KEY_TEXT: &str = "bundle-test-secret-1";

fn key_hex() -> String {
    KEY_TEXT.bytes().map(|b| format!("{b:02x}")).collect()
}

async fn cli(home: &Path, args: &[&str], vars: &[(&str, &str)]) -> Run {
    cli_run::run(home, args, vars, WAIT).await
}

async fn start_charger(dir: &Path) -> (Child, PathBuf) {
    let port = dir.join("port");
    let mut child = command(dir)
        .args(["emulate", "--headless", "--json", "--serial-link"])
        .arg(&port)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chargectl emulate starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let up = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("service port on") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(up, Ok(true), "the service port never came up");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port)
}

/// Every file of a .tar.gz: path (without the top directory) to bytes.
fn unpack(archive: &Path) -> BTreeMap<String, Vec<u8>> {
    let file = std::fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = BTreeMap::new();
    let mut roots = std::collections::BTreeSet::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let (root, rest) = path.split_once('/').unwrap();
        roots.insert(root.to_string());
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.insert(rest.to_string(), bytes);
    }
    assert_eq!(roots.len(), 1, "one top directory: {roots:?}");
    out
}

/// The manifest lists every other file with its size and SHA-256; nothing else is packed.
fn check_manifest(files: &BTreeMap<String, Vec<u8>>) -> Value {
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(manifest["format_version"], 1);
    let listed = manifest["files"].as_array().unwrap();
    assert_eq!(listed.len(), files.len() - 1, "{manifest}");
    for f in listed {
        let bytes = &files[f["path"].as_str().unwrap()];
        assert_eq!(f["size"], bytes.len(), "{f}");
        let sha: String = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(f["sha256"], sha.as_str(), "{f}");
    }
    manifest
}

/// The AuthorizationKey in every spelling a leak could take.
fn key_spellings() -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let hex = key_hex();
    let mut out = vec![
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        KEY_TEXT.as_bytes().to_vec(),
        b64.encode(KEY_TEXT).into_bytes(),
        b64.encode(&hex).into_bytes(),
    ];
    // An HTTP Basic header carries base64("id:password"); its password part shows as the
    // base64 of the key at any of three alignments, so look for a middle slice of each.
    for prefix in ["", "x", "xy"] {
        let enc = b64.encode(format!("{prefix}{KEY_TEXT}"));
        out.push(enc.as_bytes()[4..enc.len() - 4].to_vec());
    }
    out
}

fn assert_no_key(files: &BTreeMap<String, Vec<u8>>) {
    for (path, bytes) in files {
        for spelling in key_spellings() {
            assert!(
                !bytes
                    .windows(spelling.len())
                    .any(|w| w == spelling.as_slice()),
                "{path} holds the key as {:?}",
                String::from_utf8_lossy(&spelling)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_from_the_port_and_from_the_records_never_hold_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut charger, port) = start_charger(&dir.join("charger")).await;
    let port = port.to_str().unwrap().to_string();
    let profile = dir.join("p.toml");
    std::fs::write(
        &profile,
        "[ocpp]\nsecurity_profile = 1\nauthorization_key = { env = \"K\" }\n\
         [config]\nHeartbeatInterval = 240\n",
    )
    .unwrap();
    let key = key_hex();
    let run = cli(
        dir,
        &["provision", profile.to_str().unwrap(), "--port", &port],
        &[("K", key.as_str())],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let logs = cli(dir, &["logs", "--port", &port], &[]).await;
    assert_eq!(logs.code, 0, "{logs:#?}");

    // The session records: the provisioning session has the change with old and new values.
    let sessions: Vec<PathBuf> = std::fs::read_dir(dir.join("data/sessions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(sessions.len() >= 2, "{sessions:?}");
    let all: String = sessions
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let change = all
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["type"] == "config" && v["key"] == "HeartbeatInterval")
        .expect("the change is recorded");
    assert_eq!(change["new"], "240");
    assert!(change["old"].is_string(), "{change}");
    assert!(
        all.contains("\"type\":\"log\""),
        "the log stream is recorded"
    );

    let out = dir.join("b.tar.gz");
    let run = cli(
        dir,
        &[
            "bundle",
            "--port",
            &port,
            "-o",
            out.to_str().unwrap(),
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let printed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(printed["output"], out.to_str().unwrap());
    let files = unpack(&out);
    let manifest = check_manifest(&files);
    assert_eq!(manifest["source"], "port");
    assert_eq!(printed["files"], manifest["files"]);
    for part in [
        "identity.json",
        "configuration.json",
        "ocpp.json",
        "ocpp-trace.jsonl",
        "charger-log.jsonl",
        "chargectl-log.txt",
    ] {
        assert!(
            files.contains_key(part),
            "{part} missing: {:?}",
            files.keys()
        );
    }
    assert!(files.keys().any(|k| k.starts_with("sessions/")));
    let config: Value = serde_json::from_slice(&files["configuration.json"]).unwrap();
    let auth = config["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "AuthorizationKey")
        .unwrap();
    assert_eq!(auth["value"], "<redacted>");
    let trace = String::from_utf8_lossy(&files["ocpp-trace.jsonl"]);
    assert!(trace.contains("BootNotification"), "{trace}");
    let ocpp: Value = serde_json::from_slice(&files["ocpp.json"]).unwrap();
    assert_eq!(ocpp["status"]["registration"], "accepted", "{ocpp}");
    assert_no_key(&files);

    // The charger is gone: the bundle comes from the records.
    let _ = charger.start_kill();
    let _ = charger.wait().await;
    let out = dir.join("r.tar.gz");
    let run = cli(
        dir,
        &["bundle", "--from-records", "-o", out.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let files = unpack(&out);
    let manifest = check_manifest(&files);
    assert_eq!(manifest["source"], "records");
    let config: Value = serde_json::from_slice(&files["configuration.json"]).unwrap();
    let hb = config["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "HeartbeatInterval")
        .unwrap();
    assert_eq!(hb["value"], "240", "{config}");
    assert_no_key(&files);

    // No records of a charger never seen: unreachable.
    let run = cli(
        dir,
        &[
            "bundle",
            "--from-records",
            "--serial",
            "NOPE",
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(
        run.stderr.contains("no recorded session of charger NOPE"),
        "{run:#?}"
    );
}
