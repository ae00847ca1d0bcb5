//! Provisioning to online, end to end: real `chargectl emulate --serial-link PATH --headless`
//! chargers on pseudo-terminals, the real `chargectl provision` binary, the sandbox CSMS on
//! 127.0.0.1 with HTTP Basic authentication required. Each charger ends Accepted, refused with
//! HTTP 401 (a wrong AuthorizationKey), not reached (nothing listens), or, on a charger side
//! that cannot report its OCPP state, with the exit status that says so.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

#[path = "common/cli_run.rs"]
mod cli_run;

use chargectl::csms::{Sandbox, SandboxHandle, SandboxOptions};
use chargectl::link::codec::{ConfigEntry, ConfigRead, Identity, SetOutcome};
use chargectl::link::{Backend, BootState, Client, ClientOptions, ServiceOptions, serve};
use chargectl::stack::logbook::LogRecord;
use chargectl::stack::secret::Secret;
use cli_run::{Run, command};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::broadcast;

/// Bound on any wait for an emulator or a CLI run.
const WAIT: Duration = Duration::from_secs(90);
/// The AuthorizationKey: 16 printable bytes, so its HTTP Basic password is text.
const KEY_TEXT: &str = "GARAGE7-secret!!";

fn key_hex() -> String {
    KEY_TEXT.bytes().map(|b| format!("{b:02x}")).collect()
}

async fn cli(home: &Path, args: &[&str], vars: &[(&str, &str)]) -> Run {
    cli_run::run(home, args, vars, WAIT).await
}

/// A running `chargectl emulate --headless --json --serial-link` on its own sandbox CSMS
/// (provisioning points it elsewhere).
struct Charger {
    child: Child,
    port: PathBuf,
    serial: String,
}

impl Charger {
    async fn start(dir: &Path) -> Charger {
        std::fs::create_dir_all(dir).unwrap();
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
        // Keep reading, so the emulator never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let info = cli(
            dir,
            &["info", "--json", "--port", port.to_str().unwrap()],
            &[],
        )
        .await;
        assert_eq!(info.code, 0, "{info:#?}");
        let serial = info.json()["identity"]["serial_number"]
            .as_str()
            .unwrap()
            .to_string();
        Charger {
            child,
            port,
            serial,
        }
    }

    fn port(&self) -> &str {
        self.port.to_str().unwrap()
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
    }
}

/// The sandbox CSMS requiring HTTP Basic, with the password of each charge point id.
async fn csms(passwords: &[(&str, &str)]) -> SandboxHandle {
    Sandbox::start(SandboxOptions {
        require_basic_auth: true,
        passwords: passwords
            .iter()
            .map(|(id, p)| (id.to_string(), Secret::new(p.to_string())))
            .collect::<HashMap<_, _>>(),
        ..SandboxOptions::default()
    })
    .await
    .expect("the sandbox starts")
}

fn site_profile(dir: &Path, csms_url: &str) -> String {
    let path = dir.join("site.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"Garage 7\"\n\
             [ocpp]\n\
             csms_url = \"{csms_url}/ocpp\"\n\
             charge_point_id = \"GARAGE7-${{SERIAL}}\"\n\
             security_profile = 1\n\
             authorization_key = {{ env = \"SITE_KEY\" }}\n\
             [config]\n\
             HeartbeatInterval = 300\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

fn change<'a>(doc: &'a Value, key: &str) -> &'a Value {
    doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == key)
        .unwrap_or_else(|| panic!("no change of {key}: {doc}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisions_to_accepted_then_a_second_run_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let charger = Charger::start(&dir.join("a")).await;
    let id = format!("GARAGE7-{}", charger.serial);
    let csms = csms(&[(&id, KEY_TEXT)]).await;
    let profile = site_profile(dir, &csms.url());
    let key = key_hex();
    let vars = [("SITE_KEY", key.as_str())];

    let run = cli(
        dir,
        &["provision", &profile, "--port", charger.port(), "--json"],
        &vars,
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let doc = run.json();
    assert_eq!(doc["result"], "online", "{doc}");
    assert_eq!(doc["charger"]["serial_number"], charger.serial.as_str());
    assert_eq!(change(&doc, "ChargePointId")["new"], id.as_str());
    assert_eq!(change(&doc, "ChargePointId")["written"], true);
    assert_eq!(doc["rebooted"], true, "ChargePointId needs a reboot: {doc}");
    assert_eq!(doc["online"]["registration"], "accepted");
    assert_eq!(doc["online"]["connection"], "connected");
    assert_eq!(
        doc["online"]["csms_url"],
        format!("{}/ocpp/{id}", csms.url()).as_str()
    );
    assert!(!run.stdout.contains(&key) && !run.stderr.contains(&key));
    assert!(!run.stdout.contains(KEY_TEXT) && !run.stderr.contains(KEY_TEXT));

    // info shows the OCPP state the charger reports.
    let info = cli(dir, &["info", "--json", "--port", charger.port()], &[]).await;
    assert_eq!(info.code, 0, "{info:#?}");
    assert_eq!(info.json()["ocpp"]["registration"], "accepted");
    assert_eq!(info.json()["ocpp"]["connection"], "connected");
    let text = cli(dir, &["info", "--port", charger.port()], &[]).await;
    assert!(text.stdout.contains("online, Accepted"), "{text:#?}");

    // The same profile again: no plain key is written, no reboot, still online.
    let again = cli(
        dir,
        &["provision", &profile, "--port", charger.port(), "--json"],
        &vars,
    )
    .await;
    assert_eq!(again.code, 0, "{again:#?}");
    let doc = again.json();
    assert_eq!(doc["result"], "online", "{doc}");
    assert_eq!(doc["rebooted"], false, "{doc}");
    for c in doc["changes"].as_array().unwrap() {
        // The AuthorizationKey cannot be read back, so it is the one key written again.
        let expected = c["key"] == "AuthorizationKey";
        assert_eq!(c["written"], expected, "{c}");
    }
    charger.stop().await;
    csms.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_reported_as_http_401_and_an_unreachable_csms_as_tcp_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let charger = Charger::start(&dir.join("a")).await;
    let id = format!("GARAGE7-{}", charger.serial);
    let csms = csms(&[(&id, "another key text")]).await;
    let profile = site_profile(dir, &csms.url());
    let key = key_hex();

    let run = cli(
        dir,
        &["provision", &profile, "--port", charger.port(), "--json"],
        &[("SITE_KEY", key.as_str())],
    )
    .await;
    assert_eq!(run.code, 11, "{run:#?}");
    let doc = run.json();
    assert_eq!(doc["result"], "not_reached", "{doc}");
    assert_eq!(doc["online"]["failure"], "http_status", "{doc}");
    assert_eq!(doc["online"]["http_status"], 401, "{doc}");
    assert!(
        run.stderr
            .contains("HTTP 401: wrong AuthorizationKey or charge point id"),
        "{run:#?}"
    );
    // Ended by the charger's second refused attempt, not by the 120 s limit.
    assert!(doc["online"]["waited_s"].as_f64().unwrap() < 60.0, "{doc}");
    csms.shutdown().await;

    // Nothing listens at the CSMS URL now.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", closed.local_addr().unwrap());
    drop(closed);
    let profile = site_profile(dir, &url);
    let run = cli(
        dir,
        &[
            "provision",
            &profile,
            "--port",
            charger.port(),
            "--wait-online",
            "4",
        ],
        &[("SITE_KEY", key.as_str())],
    )
    .await;
    assert_eq!(run.code, 11, "{run:#?}");
    assert!(run.stderr.contains("TCP connection refused"), "{run:#?}");
    charger.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chargers_at_once_one_failing_never_stops_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let good = Charger::start(&dir.join("good")).await;
    let bad = Charger::start(&dir.join("bad")).await;
    let csms = csms(&[
        (&format!("GARAGE7-{}", good.serial), KEY_TEXT),
        (&format!("GARAGE7-{}", bad.serial), "not the site key"),
    ])
    .await;
    let profile = site_profile(dir, &csms.url());
    let key = key_hex();
    let run = cli(
        dir,
        &[
            "provision",
            &profile,
            "--port",
            good.port(),
            "--port",
            bad.port(),
            "--json",
        ],
        &[("SITE_KEY", key.as_str())],
    )
    .await;
    assert_eq!(run.code, 13, "{run:#?}");
    let lines = run.json_lines();
    let chargers: Vec<&Value> = lines.iter().filter(|l| l["type"] == "charger").collect();
    assert_eq!(chargers.len(), 2, "{lines:#?}");
    let of = |serial: &str| {
        chargers
            .iter()
            .find(|c| c["data"]["charger"]["serial_number"] == serial)
            .map(|c| &c["data"])
            .unwrap_or_else(|| panic!("no line for {serial}: {lines:#?}"))
    };
    assert_eq!(of(&good.serial)["result"], "online");
    assert_eq!(
        change(of(&good.serial), "ChargePointId")["new"],
        format!("GARAGE7-{}", good.serial).as_str()
    );
    assert_eq!(of(&bad.serial)["result"], "not_reached");
    assert_eq!(of(&bad.serial)["online"]["http_status"], 401);
    assert!(lines.iter().any(|l| l["type"] == "progress"), "{lines:#?}");
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["data"]["total"], 2);
    assert_eq!(summary["data"]["online"], 1);
    assert_eq!(summary["data"]["failed"][0]["port"], bad.port());
    assert_eq!(summary["data"]["failed"][0]["exit_code"], 11);
    good.stop().await;
    bad.stop().await;
    csms.shutdown().await;
}

/// A charger side from before OCPP_STATUS: the trait's default answers "unknown request".
struct OldFirmware {
    config: Mutex<HashMap<String, String>>,
    logs: broadcast::Sender<LogRecord>,
}

impl Backend for OldFirmware {
    fn identity(&self) -> Identity {
        Identity {
            vendor: "Zaptec".into(),
            model: "Go".into(),
            serial_number: "ZAP000777".into(),
            firmware_version: "1.0.0".into(),
            active_slot: "A".into(),
            inactive_slot: "B".into(),
            inactive_version: None,
            uptime_secs: 1,
            boot_state: BootState::Normal,
        }
    }
    async fn config_get(&self, _keys: Vec<String>) -> ConfigRead {
        let config = self.config.lock().unwrap();
        ConfigRead {
            entries: config
                .iter()
                .map(|(k, v)| ConfigEntry {
                    key: k.clone(),
                    value: Some(v.clone()),
                    readonly: false,
                    write_only: false,
                    value_type: "integer".into(),
                    reboot_required: false,
                })
                .collect(),
            unknown: Vec::new(),
        }
    }
    async fn config_set(&self, key: String, value: String) -> SetOutcome {
        self.config.lock().unwrap().insert(key, value);
        SetOutcome::Accepted
    }
    fn log_subscribe(&self) -> (Vec<LogRecord>, broadcast::Receiver<LogRecord>) {
        (Vec::new(), self.logs.subscribe())
    }
    async fn reboot(&self) {}
    async fn flash_begin(&self, _: [u8; 32], _: u64, _: Vec<u8>) -> Result<u64, String> {
        Err("no".into())
    }
    async fn flash_write(&self, _: u64, _: Vec<u8>) -> Result<u64, String> {
        Err("no".into())
    }
    async fn flash_finish(&self) -> Result<String, String> {
        Err("no".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_without_ocpp_status_is_written_and_says_it_cannot_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let link = dir.join("old");
    let (_port, master) = chargectl::link::pty::open(&link).expect("pty");
    let fake = Arc::new(OldFirmware {
        config: Mutex::new(HashMap::from([(
            "HeartbeatInterval".to_string(),
            "60".to_string(),
        )])),
        logs: broadcast::channel(8).0,
    });
    let server = tokio::spawn(serve(master, fake.clone(), ServiceOptions::default()));
    let client = Client::connect(link.to_str().unwrap(), 115_200, ClientOptions::default())
        .await
        .unwrap();
    assert_eq!(client.ocpp_status().await.unwrap(), None);
    assert_eq!(client.ocpp_trace().await.unwrap(), None);
    drop(client);

    let profile = dir.join("p.toml");
    std::fs::write(&profile, "[config]\nHeartbeatInterval = 300\n").unwrap();
    let run = cli(
        dir,
        &[
            "provision",
            profile.to_str().unwrap(),
            "--port",
            link.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 12, "{run:#?}");
    assert!(
        run.stderr.contains("cannot report its OCPP state"),
        "{run:#?}"
    );
    assert_eq!(
        fake.config
            .lock()
            .unwrap()
            .get("HeartbeatInterval")
            .map(String::as_str),
        Some("300")
    );
    server.abort();
}

/// A JSON value's shape: objects keep their keys, arrays the shape of their first item, leaves
/// become their type's name.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::String(_) => "string".into(),
        Value::Number(_) => "number".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => "null".into(),
    }
}

/// Every field name of a shape, for the man page check.
fn field_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                field_names(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| field_names(v, out)),
        _ => {}
    }
}

fn man_page(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("man")
        .join(format!("{name}.1"));
    std::fs::read_to_string(path).unwrap().replace("\\_", "_")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_shapes_of_paths_profile_provision_and_info_are_pinned_and_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let s = |v: &str| Value::String(v.into());
    let paths = cli(dir, &["paths", "--json"], &[]).await;
    assert_eq!(paths.code, 0, "{paths:#?}");
    let expected = serde_json::json!({"config_dir": "string", "profiles_dir": "string",
        "data_dir": "string", "sessions_dir": "string", "log_dir": "string", "cache_dir": "string"});
    assert_eq!(shape(&paths.json()), expected);
    assert_eq!(
        paths.json()["sessions_dir"],
        dir.join("data/sessions").to_str().unwrap()
    );

    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[variables]\nSITE = { default = \"G7\" }\n[ocpp]\ncharge_point_id = \"${SITE}-${SERIAL}\"\n\
         security_profile = 1\nauthorization_key = { env = \"SITE_KEY\" }\n[config]\nHeartbeatInterval = 300\n",
    )
    .unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[config]\nHeartbeatInterval = 300\nMeterValueSampleInterval = -1\n",
    )
    .unwrap();
    let check = cli(
        dir,
        &["profile", "check", good.to_str().unwrap(), "--json"],
        &[],
    )
    .await;
    assert_eq!(check.code, 0, "{check:#?}");
    assert_eq!(
        shape(&check.json()),
        serde_json::json!({"profile": "string", "valid": "bool", "errors": [], "name": "string",
            "file": "string", "keys": ["string"],
            "variables": [{"name": "string", "description": "null", "default": "string"}],
            "builtins": ["string"], "secrets": [{"key": "string", "env": "string"}]})
    );
    assert_eq!(check.json()["builtins"], serde_json::json!(["SERIAL"]));
    let checked = cli(
        dir,
        &["profile", "check", bad.to_str().unwrap(), "--json"],
        &[],
    )
    .await;
    assert_eq!(checked.code, 6, "{checked:#?}");
    let err = &checked.json()["errors"][0];
    assert_eq!(
        (err["line"].as_u64(), err["column"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(
        shape(err),
        serde_json::json!({"file": "string", "line": "number", "column": "number",
            "message": "string", "text": "string"})
    );
    let text = cli(dir, &["profile", "check", bad.to_str().unwrap()], &[]).await;
    assert_eq!(text.code, 6);
    assert!(
        text.stderr
            .starts_with(&format!("{}:3:1: MeterValueSampleInterval", bad.display())),
        "{text:#?}"
    );

    let show = cli(
        dir,
        &["profile", "show", good.to_str().unwrap(), "--json"],
        &[("SITE_KEY", &key_hex())],
    )
    .await;
    assert_eq!(show.code, 0, "{show:#?}");
    assert!(!show.stdout.contains(&key_hex()), "{show:#?}");
    let doc = show.json();
    assert_eq!(doc["keys"][0]["value"], s("G7-${SERIAL}"));
    assert_eq!(doc["keys"][0]["unresolved"], serde_json::json!(["SERIAL"]));
    let secret = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == "AuthorizationKey")
        .unwrap();
    assert_eq!(
        secret,
        &serde_json::json!({"key": "AuthorizationKey", "value": "<redacted>",
            "secret": {"env": "SITE_KEY", "present": true}, "unresolved": []})
    );
    assert_eq!(
        shape(&doc),
        serde_json::json!({"profile": "string", "file": "string", "description": "null",
            "keys": [{"key": "string", "value": "string", "unresolved": ["string"]}]})
    );

    // provision and info against a charger.
    let charger = Charger::start(&dir.join("c")).await;
    let run = cli(
        dir,
        &[
            "provision",
            good.to_str().unwrap(),
            "--port",
            charger.port(),
            "--json",
            "--wait-online",
            "30",
        ],
        &[("SITE_KEY", &key_hex())],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let provision_shape = serde_json::json!({"profile": "string", "port": "string",
        "dry_run": "bool",
        "charger": {"serial_number": "string", "model": "string", "firmware_version": "string"},
        "changes": [{"key": "string", "old": "string", "new": "string", "outcome": "string",
                     "written": "bool"}],
        "rebooted": "bool",
        "online": {"result": "string", "connection": "string", "registration": "string",
                   "csms_url": "string", "failure": "null", "http_status": "null",
                   "detail": "null", "failed_attempts": "number", "waited_s": "number"},
        "result": "string", "exit_code": "number", "error": "null"});
    assert_eq!(shape(&run.json()), provision_shape);
    let info = cli(dir, &["info", "--port", charger.port(), "--json"], &[]).await;
    let info_shape = serde_json::json!({"port": "string",
        "identity": {"vendor": "string", "model": "string", "serial_number": "string",
            "firmware_version": "string", "active_slot": "string", "inactive_slot": "string",
            "inactive_version": "null", "uptime_secs": "number", "boot_state": "string"},
        "ocpp": {"connection": "string", "registration": "string", "csms_url": "string",
            "failed_attempts": "number", "last_error": "null", "online_since_ms": "number"}});
    assert_eq!(shape(&info.json()), info_shape);
    charger.stop().await;

    // Every field is named in the command's man page.
    for (page, shapes) in [
        ("chargectl-paths", vec![expected]),
        ("chargectl-provision", vec![provision_shape]),
        ("chargectl-info", vec![info_shape]),
        (
            "chargectl-profile",
            vec![shape(&check.json()), shape(&doc), shape(err)],
        ),
    ] {
        let text = man_page(page);
        let mut names = Vec::new();
        shapes.iter().for_each(|v| field_names(v, &mut names));
        for name in names {
            assert!(text.contains(&name), "{page}(1) does not document {name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisions_to_accepted_at_the_python_ocpp_csms_with_security_profile_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = std::env::var_os("CHARGECTL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "no Python venv with the `ocpp` package at {} (run tests/interop/setup.sh)",
        venv.display()
    );
    let charger = Charger::start(&dir.join("c")).await;
    let scenario = dir.join("scenario.json");
    // Keep the connection open while provision watches; the report checks every message
    // against the OCPP 1.6 schemas.
    std::fs::write(&scenario, r#"[{"sleep": 8}]"#).unwrap();
    let report = dir.join("report.json");
    let key = key_hex();
    let mut csms = Command::new(&python)
        .arg(root.join("tests/interop/ocpp_csms.py"))
        .args([
            "--port",
            "0",
            "--timeout",
            "60",
            "--basic-auth-key-env",
            "CSMS_KEY",
        ])
        .arg("--scenario")
        .arg(&scenario)
        .arg("--report")
        .arg(&report)
        .env("CSMS_KEY", &key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    let mut lines = BufReader::new(csms.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the Python CSMS listens")
        .unwrap()
        .unwrap();
    let port = serde_json::from_str::<Value>(&first).unwrap()["listening"]
        .as_u64()
        .unwrap();
    let profile = site_profile(dir, &format!("ws://127.0.0.1:{port}"));
    let run = cli(
        dir,
        &[
            "provision",
            &profile,
            "--port",
            charger.port(),
            "--json",
            "--wait-online",
            "30",
        ],
        &[("SITE_KEY", key.as_str())],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let doc = run.json();
    assert_eq!(doc["result"], "online", "{doc}");
    assert_eq!(doc["online"]["registration"], "accepted", "{doc}");
    let status = tokio::time::timeout(WAIT, csms.wait())
        .await
        .expect("the Python CSMS ends")
        .unwrap();
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(status.success(), "{report:#}");
    assert_eq!(
        report["charge_point"],
        format!("GARAGE7-{}", charger.serial).as_str(),
        "{report:#}"
    );
    charger.stop().await;
}
