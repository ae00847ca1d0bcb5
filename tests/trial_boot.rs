//! Trial boot, end to end: the real `chargectl emulate --headless --serial-link PATH` binary
//! installs a signed image (OCPP UpdateFirmware from a loopback HTTP server), boots it on trial
//! and confirms it only once it has registered with the CSMS or a host reached its service port.
//! `{"action":"fail_boots","count":N}` makes the next N boots of an image on trial crash; after
//! 3 failed trial boots the charger goes back to the previous image, says so over OCPP
//! (FirmwareStatusNotification InstallationFailed) and over its service port (`chargectl info`
//! on the pseudo-terminal reports the boot state `reverted`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

#[path = "common/charger_proc.rs"]
mod charger_proc;
#[path = "common/http_server.rs"]
mod http;

use chargectl::csms::{EventKind, Sandbox, SandboxHandle, SandboxOptions};
use chargectl::stack::rpc::Frame;
use charger_proc::{BIN, ChargerProc};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

struct Rig {
    _dir: tempfile::TempDir,
    link: PathBuf,
    csms: SandboxHandle,
    _http: http::Server,
    url: String,
    p: ChargerProc,
}

const CP: &str = "TRIAL-1";

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let key = chargectl::firmware::keys::generate();
    let name = dir.path().join("fw");
    chargectl::firmware::keys::write_keypair_from(&name, &key, false).unwrap();
    let key_file = chargectl::firmware::keys::public_path(&name);
    let image = chargectl::firmware::pack(&vec![0x77; 32 * 1024], "2.2.0", &key).unwrap();
    let server = http::Server::start(move |_, _| http::ok(&image)).await;
    let csms = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let link = dir.path().join("ttyCHARGER");
    let state = dir.path().join("state");
    let p = ChargerProc::spawn(
        &state,
        &csms.url(),
        CP,
        &[
            "--trust-key",
            key_file.to_str().unwrap(),
            "--serial-link",
            link.to_str().unwrap(),
        ],
        &[],
    );
    let rig = Rig {
        url: server.url("/fw/2.2.0.img"),
        _http: server,
        link,
        csms,
        p,
        _dir: dir,
    };
    wait_call(&rig.csms, 0, "StatusNotification", |_| true).await;
    rig
}

fn calls(csms: &SandboxHandle, from: usize, action: &str) -> Vec<Value> {
    csms.events()
        .into_iter()
        .skip(from)
        .filter_map(|e| match e.kind {
            EventKind::Received {
                cp_id,
                frame: Frame::Call {
                    action: a, payload, ..
                },
                ..
            } if cp_id == CP && a == action => Some(payload),
            _ => None,
        })
        .collect()
}

async fn wait_call(
    csms: &SandboxHandle,
    from: usize,
    action: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let found = async {
        loop {
            if let Some(v) = calls(csms, from, action).into_iter().find(|v| pred(v)) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, found)
        .await
        .unwrap_or_else(|_| panic!("{action} within {WAIT:?}"))
}

fn firmware_statuses(csms: &SandboxHandle) -> Vec<String> {
    calls(csms, 0, "FirmwareStatusNotification")
        .iter()
        .map(|p| p["status"].as_str().unwrap().to_string())
        .collect()
}

/// `chargectl info --json` against the emulator's pseudo-terminal.
async fn info(link: &Path) -> Value {
    let out = tokio::process::Command::new(BIN)
        .args(["info", "--json", "--port"])
        .arg(link)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "info: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["identity"].clone()
}

async fn update_firmware(rig: &Rig) {
    rig.csms
        .call(
            CP,
            "UpdateFirmware",
            json!({"location": rig.url, "retrieveDate": chrono::Utc::now().to_rfc3339()}),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_never_comes_up_is_rolled_back_and_reported() {
    let mut rig = rig().await;
    rig.p
        .act_taken(r#"{"action":"fail_boots","count":3}"#)
        .await;
    update_firmware(&rig).await;
    wait_call(&rig.csms, 0, "FirmwareStatusNotification", |p| {
        p["status"] == "InstallationFailed"
    })
    .await;
    assert_eq!(
        firmware_statuses(&rig.csms),
        [
            "Downloading",
            "Downloaded",
            "Installing",
            "InstallationFailed"
        ]
    );
    let boots = calls(&rig.csms, 0, "BootNotification");
    assert_eq!(
        boots.last().unwrap()["firmwareVersion"],
        "2.1.0",
        "back on the old image: {boots:?}"
    );
    assert!(
        boots.iter().all(|b| b["firmwareVersion"] == "2.1.0"),
        "the crashing image never reached the CSMS"
    );
    let id = info(&rig.link).await;
    assert_eq!(id["firmware_version"], "2.1.0", "{id}");
    assert_eq!(id["boot_state"], "reverted", "{id}");
    assert_eq!(id["inactive_version"], "2.2.0", "the failed image: {id}");
    let logs = rig.p.logs();
    let crashed = logs
        .iter()
        .filter(|r| {
            r["message"]
                .as_str()
                .unwrap()
                .contains("crashed during its trial boot")
        })
        .count();
    assert_eq!(crashed, 3, "three trial boots crashed");
    assert!(logs.iter().any(|r| {
        r["level"] == "error"
            && r["message"]
                .as_str()
                .unwrap()
                .contains("was not confirmed in 3 trial boots; back to 2.1.0")
    }));
    rig.p.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_comes_up_within_its_trial_boots_is_confirmed() {
    let mut rig = rig().await;
    // Two crashes, then the third trial boot registers with the CSMS and confirms.
    rig.p.act(r#"{"action":"fail_boots","count":2}"#).await;
    update_firmware(&rig).await;
    wait_call(&rig.csms, 0, "FirmwareStatusNotification", |p| {
        p["status"] == "Installed"
    })
    .await;
    let boot = calls(&rig.csms, 0, "BootNotification");
    assert_eq!(boot.last().unwrap()["firmwareVersion"], "2.2.0");
    let id = info(&rig.link).await;
    assert_eq!(id["firmware_version"], "2.2.0", "{id}");
    assert_eq!(id["boot_state"], "normal", "confirmed: {id}");
    assert!(rig.p.logs().iter().any(|r| {
        r["message"]
            .as_str()
            .unwrap()
            .contains("firmware 2.2.0 confirmed: its OCPP connection is up")
    }));
    // Confirmed means confirmed: a power cut now keeps the new image.
    rig.p.kill().await;
    let c = rig.csms.cursor();
    let dir = rig._dir.path().join("state");
    let mut q = ChargerProc::spawn(&dir, &rig.csms.url(), CP, &[], &[]);
    let boot = wait_call(&rig.csms, c, "BootNotification", |_| true).await;
    assert_eq!(boot["firmwareVersion"], "2.2.0");
    q.stop(Duration::from_secs(5)).await;
}
