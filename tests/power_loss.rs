//! Power loss at named points: the real `chargectl emulate --headless` binary runs a workload
//! against the sandbox CSMS that writes every kind of state the charger keeps (configuration,
//! the AuthorizationKey, the local list, a charging profile, a reservation, availability, a
//! transaction with its journal, a firmware image, the slot switch and the trial image's
//! confirmation), with
//! `CHARGECTL_FAILPOINT=NAME:HIT` aborting the process at one step of one write. It is started
//! again on the same state directory, and the suite checks:
//!
//! - the state loads: the charger boots and registers again;
//! - no transaction message is lost: everything the journal held at the cut reaches the CSMS,
//!   in order, and the transaction that ran is closed by exactly one StopTransaction;
//! - duplicates only where OCPP allows a resend of an unanswered message: the message in flight
//!   at the cut (or at the outage) may arrive again right after itself, nothing else; resends
//!   are counted;
//! - every document is old or new, never torn, and new when the CSMS had its answer;
//! - the charger boots a valid slot: the old one, or the new one when it was switched to.
//!
//! A census run (no failpoint, `CHARGECTL_FAILPOINT_LOG`) finds which points the workload
//! passes and how often; every point is then cut at each of its hits (at the first, the second,
//! the middle and the last of a point passed more than 16 times; `CHARGECTL_POWERLOSS_HITS=all`
//! cuts at every hit). Cases
//! run in parallel (`CHARGECTL_POWERLOSS_JOBS`, default 6); `CHARGECTL_POWERLOSS_HITS=none` runs
//! the census only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

#[path = "common/charger_proc.rs"]
mod charger_proc;
#[path = "common/csms_calls.rs"]
mod csms_calls;
#[path = "common/http_server.rs"]
mod http;

use chargectl::csms::{EventKind, Sandbox, SandboxHandle, SandboxOptions};
use chargectl::stack::config::{ChangeOutcome, Channel, Configuration};
use chargectl::stack::journal::Journal;
use chargectl::stack::rpc::Frame;
use charger_proc::ChargerProc;
use csms_calls::calls_from;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const OLD_VERSION: &str = "2.1.0";
const NEW_VERSION: &str = "2.2.0";
const AUTH_KEY: &str = "00112233445566778899aabbccddeeff";
const STEP: Duration = Duration::from_secs(30);
/// Seeded journal: delivered messages (obsolete records) so that the first open compacts, and
/// two MeterValues still to deliver.
const SEEDED_DONE: u64 = 140;
const SEEDED_TXID: i64 = 777;

/// Shared by every case: the signing key, the image and the HTTP server that serves it.
struct Fixture {
    _keys: tempfile::TempDir,
    key_file: PathBuf,
    image_url: String,
    _http: http::Server,
}

async fn fixture() -> Fixture {
    let keys = tempfile::tempdir().unwrap();
    let key = chargectl::firmware::keys::generate();
    let name = keys.path().join("fw");
    chargectl::firmware::keys::write_keypair_from(&name, &key, false).unwrap();
    let key_file = chargectl::firmware::keys::public_path(&name);
    let image = chargectl::firmware::pack(&vec![0x5a; 48 * 1024], NEW_VERSION, &key).unwrap();
    let server = http::Server::start(move |_, _| http::ok(&image)).await;
    Fixture {
        _keys: keys,
        key_file,
        image_url: server.url("/fw/2.2.0.img"),
        _http: server,
    }
}

/// The state directory before the first boot: short sampling, the local list enabled, and a
/// journal whose first open compacts it.
fn seed(dir: &Path) {
    let mut config = Configuration::open(dir).unwrap();
    for (key, value) in [
        ("MeterValueSampleInterval", "1"),
        ("LocalAuthListEnabled", "true"),
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
    let mut j = Journal::open(dir).unwrap();
    let tx = j.new_local_tx().unwrap();
    j.set_transaction_id(tx, SEEDED_TXID).unwrap();
    for i in 0..SEEDED_DONE + 2 {
        let seq = j
            .push(
                "MeterValues",
                json!({"connectorId": 1, "transactionId": -1, "meterValue": [{
                    "timestamp": format!("2026-01-01T00:{:02}:{:02}.000Z", i / 60, i % 60),
                    "sampledValue": [{"value": format!("{}", 1000 + i)}]}]}),
                tx,
            )
            .unwrap();
        if i < SEEDED_DONE {
            j.complete(seq).unwrap();
        }
    }
}

fn in_secs(s: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(s))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What a case did and saw.
#[derive(Default)]
struct Outcome {
    /// The failpoint fired (the process aborted at it).
    killed: bool,
    /// The process died otherwise.
    crashed: Option<String>,
    /// CSMS calls whose answers came back before the cut: step name → answer.
    acks: BTreeMap<&'static str, Value>,
    /// Problems found by the checks.
    problems: Vec<String>,
    /// Messages that reached the CSMS twice (the one in flight at the cut).
    duplicates: usize,
}

/// The CSMS calls of the workload: (step, action, payload).
fn csms_steps() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "config",
            "ChangeConfiguration",
            json!({"key": "ConnectionTimeOut", "value": "45"}),
        ),
        (
            "secrets",
            "ChangeConfiguration",
            json!({"key": "AuthorizationKey", "value": AUTH_KEY}),
        ),
        (
            "local_list",
            "SendLocalList",
            json!({"listVersion": 5, "updateType": "Full", "localAuthorizationList": [
                {"idTag": "CARD1", "idTagInfo": {"status": "Accepted"}},
                {"idTag": "CARD2", "idTagInfo": {"status": "Accepted"}},
                {"idTag": "CARD3", "idTagInfo": {"status": "Blocked"}}]}),
        ),
        (
            "profile",
            "SetChargingProfile",
            json!({"connectorId": 1, "csChargingProfiles": {
                "chargingProfileId": 11, "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
                "chargingSchedule": {"chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]}}}),
        ),
        (
            "reserve",
            "ReserveNow",
            json!({"connectorId": 1, "expiryDate": in_secs(3600), "idTag": "CARD2",
                "reservationId": 3}),
        ),
        ("cancel", "CancelReservation", json!({"reservationId": 3})),
        (
            "inoperative",
            "ChangeAvailability",
            json!({"connectorId": 0, "type": "Inoperative"}),
        ),
        (
            "operative",
            "ChangeAvailability",
            json!({"connectorId": 0, "type": "Operative"}),
        ),
    ]
}

fn is_tx(action: &str, payload: &Value) -> bool {
    match action {
        "StartTransaction" | "StopTransaction" => true,
        "MeterValues" => payload.get("transactionId").is_some(),
        _ => false,
    }
}

/// A transaction message without its transactionId (filled in at sending, and changed by a
/// resent StartTransaction): what identifies it across a restart.
fn content(action: &str, payload: &Value) -> String {
    let mut p = payload.clone();
    if let Some(o) = p.as_object_mut() {
        o.remove("transactionId");
    }
    format!("{action} {p}")
}

/// Transaction messages the CSMS received from `cp` in events `[from, to)`.
fn tx_messages(csms: &SandboxHandle, cp: &str, from: usize, to: usize) -> Vec<String> {
    csms.events()
        .into_iter()
        .take(to)
        .skip(from)
        .filter_map(|e| match e.kind {
            EventKind::Received {
                cp_id,
                frame: Frame::Call {
                    action, payload, ..
                },
                ..
            } if cp_id == cp && is_tx(&action, &payload) => Some(content(&action, &payload)),
            _ => None,
        })
        .collect()
}

async fn wait_call(
    csms: &SandboxHandle,
    cp: &str,
    cursor: usize,
    action: &str,
    pred: impl Fn(&Value) -> bool,
) -> bool {
    csms.wait_for_from(
        cursor,
        |e| match &e.kind {
            EventKind::Received {
                cp_id,
                frame: Frame::Call {
                    action: a, payload, ..
                },
                ..
            } => cp_id == cp && a == action && pred(payload),
            _ => false,
        },
        STEP,
    )
    .await
    .is_ok()
}

/// A CSMS call failed: fine when the process died under it (the cut), an error otherwise.
async fn died_or(p: &mut ChargerProc, error: String) -> Result<(), String> {
    match p.wait_exit(Duration::from_secs(2)).await {
        Some(_) => Ok(()),
        None => Err(error),
    }
}

/// The workload, until it ends or the process dies. Returns false when a step did not happen
/// in time (with the process alive).
async fn workload(
    p: &mut ChargerProc,
    csms: &SandboxHandle,
    cp: &str,
    fix: &Fixture,
    acks: &mut BTreeMap<&'static str, Value>,
) -> Result<(), String> {
    macro_rules! step {
        ($fut:expr, $what:expr) => {
            match p.until($fut).await {
                None => return Ok(()),
                Some(false) => return Err(format!("step '{}' did not happen", $what)),
                Some(true) => {}
            }
        };
    }
    step!(
        wait_call(csms, cp, 0, "StatusNotification", |_| true),
        "registration"
    );
    for (name, action, payload) in csms_steps() {
        // "name?": asked (the answer may not come back).
        acks.insert(format!("{name}?").leak(), Value::Null);
        match p.until(csms.call(cp, action, payload)).await {
            None => return Ok(()),
            Some(Ok(answer)) => {
                acks.insert(name, answer);
            }
            Some(Err(e)) => return died_or(p, format!("{name}: {e}")).await,
        }
    }
    let c = csms.cursor();
    p.act(r#"{"action":"plug"}"#).await;
    p.act(r#"{"action":"card","id_tag":"CARD1"}"#).await;
    p.act(r#"{"action":"ev_demand","amps":16}"#).await;
    step!(
        wait_call(csms, cp, c, "StartTransaction", |_| true),
        "StartTransaction"
    );
    for n in 0..1 {
        let seen = async {
            loop {
                let mv = calls_from(csms, cp, c, "MeterValues")
                    .into_iter()
                    .filter(|v| v.get("transactionId").is_some())
                    .count();
                if mv > n {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        step!(
            async { tokio::time::timeout(STEP, seen).await.unwrap_or(false) },
            "MeterValues"
        );
    }
    // An outage while charging: samples and the stop wait in the journal alone.
    p.act(r#"{"action":"network_lost"}"#).await;
    step!(
        async {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            true
        },
        "outage"
    );
    p.act(r#"{"action":"ev_demand","amps":0}"#).await;
    p.act(r#"{"action":"unplug"}"#).await;
    step!(
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            true
        },
        "outage"
    );
    p.act(r#"{"action":"network_restored"}"#).await;
    step!(
        wait_call(csms, cp, c, "StopTransaction", |_| true),
        "StopTransaction"
    );
    let c = csms.cursor();
    match p
        .until(csms.call(
            cp,
            "UpdateFirmware",
            json!({"location": fix.image_url, "retrieveDate": in_secs(0)}),
        ))
        .await
    {
        None => return Ok(()),
        Some(Ok(answer)) => {
            acks.insert("update_firmware", answer);
        }
        Some(Err(e)) => return died_or(p, format!("UpdateFirmware: {e}")).await,
    }
    step!(
        wait_call(csms, cp, c, "FirmwareStatusNotification", |p| p["status"]
            == "Installed"),
        "firmware Installed"
    );
    acks.insert("installed", json!(true));
    Ok(())
}

/// The journal as the cut left it, read from a copy (opening cuts a torn tail, which is the
/// restarted charger's job): its queued messages.
fn journal_at_cut(dir: &Path) -> Result<Vec<String>, String> {
    let copy = tempfile::tempdir().unwrap();
    let from = dir.join(chargectl::stack::journal::FILE_NAME);
    if from.exists() {
        std::fs::copy(
            &from,
            copy.path().join(chargectl::stack::journal::FILE_NAME),
        )
        .unwrap();
    }
    let j = Journal::open(copy.path()).map_err(|e| format!("journal does not open: {e}"))?;
    Ok(j.entries()
        .map(|e| content(&e.action, &e.payload))
        .collect())
}

/// Cuts the journal's last record in half.
fn tear_last_record(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let body = &bytes[..bytes.len().saturating_sub(1)];
    let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let keep = start + (bytes.len() - start) / 2;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(keep as u64).unwrap();
}

fn read_json(path: &Path) -> Result<Option<Value>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{} is torn: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Each document is old or new, and new when the CSMS had its answer before the cut.
fn check_documents(dir: &Path, acks: &BTreeMap<&'static str, Value>, problems: &mut Vec<String>) {
    let mut check = |what: &str, r: Result<(), String>| {
        if let Err(e) = r {
            problems.push(format!("{what}: {e}"));
        }
    };
    check(
        "config",
        read_json(&dir.join("config.json")).and_then(|doc| {
            let doc = doc.ok_or("config.json is gone")?;
            let v = doc["values"]["ConnectionTimeOut"].as_str().unwrap_or("");
            match (v, acks.contains_key("config")) {
                ("45", _) | ("30", false) => Ok(()),
                _ => Err(format!(
                    "ConnectionTimeOut {v:?}, answered: {:?}",
                    acks.get("config")
                )),
            }
        }),
    );
    check(
        "secrets",
        read_json(&dir.join("secrets.json")).and_then(|doc| {
            let key = doc
                .as_ref()
                .and_then(|d| d["AuthorizationKey"].as_str().map(str::to_string));
            match (key.as_deref(), acks.contains_key("secrets")) {
                (Some(AUTH_KEY), _) | (None, false) => Ok(()),
                (k, answered) => Err(format!(
                    "AuthorizationKey {} after an answered change: {answered}",
                    if k.is_some() { "other" } else { "missing" }
                )),
            }
        }),
    );
    check(
        "local list",
        read_json(&dir.join("local_list.json")).and_then(|doc| {
            let version = doc
                .as_ref()
                .map_or(0, |d| d["version"].as_i64().unwrap_or(-1));
            let entries = doc
                .as_ref()
                .map_or(0, |d| d["entries"].as_array().map_or(0, Vec::len));
            match (version, entries, acks.contains_key("local_list")) {
                (5, 3, _) | (0, 0, false) => Ok(()),
                other => Err(format!("version, entries, answered: {other:?}")),
            }
        }),
    );
    check(
        "charging profiles",
        read_json(&dir.join("charging_profiles.json")).and_then(|doc| {
            let ids: Vec<i64> = doc
                .as_ref()
                .and_then(|d| d.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|p| {
                    p.pointer("/profile/chargingProfileId")
                        .or_else(|| p.get("chargingProfileId"))
                        .and_then(Value::as_i64)
                })
                .collect();
            let installed = doc
                .as_ref()
                .is_some_and(|d| d.to_string().contains("\"chargingProfileId\":11"));
            match (installed, acks.contains_key("profile")) {
                (true, _) | (false, false) => Ok(()),
                _ => Err(format!(
                    "profile 11 missing after an answered SetChargingProfile ({ids:?})"
                )),
            }
        }),
    );
    check(
        "reservation",
        read_json(&dir.join("reservation.json")).and_then(|doc| {
            match (
                doc.is_some(),
                acks.contains_key("reserve"),
                acks.contains_key("cancel"),
            ) {
                (false, _, true) | (true, true, false) | (_, false, false) => Ok(()),
                (false, true, false) => Ok(()), // a reservation may end by itself
                other => Err(format!("present, reserved, cancelled: {other:?}")),
            }
        }),
    );
    check(
        "availability",
        read_json(&dir.join("availability.json")).and_then(|doc| {
            let text = doc.map(|d| d.to_string()).unwrap_or_default();
            let inoperative = text.contains("Inoperative");
            match (
                inoperative,
                acks.contains_key("inoperative"),
                acks.contains_key("operative"),
            ) {
                // Answered Operative: operative. Answered Inoperative, Operative not yet asked:
                // inoperative. Otherwise the write in progress may or may not have landed.
                (true, _, true) => Err("Inoperative after an answered Operative".into()),
                (false, true, false) if !acks.contains_key("operative?") => {
                    Err("Operative after an answered Inoperative".into())
                }
                _ => Ok(()),
            }
        }),
    );
    for doc in [
        "transaction.json",
        "meter.json",
        "authcache.json",
        "firmware_update.json",
    ] {
        check(doc, read_json(&dir.join(doc)).map(|_| ()));
    }
}

/// The charger boots a valid slot: metadata loads, the active image (if not the factory one)
/// hashes to what is recorded, and after an Installed report it is the new version.
fn check_slots(dir: &Path, acks: &BTreeMap<&'static str, Value>, problems: &mut Vec<String>) {
    let slots_dir = dir.join("slots");
    let meta = match read_json(&slots_dir.join("slots.json")) {
        Ok(Some(m)) => m,
        Ok(None) => return problems.push("slots.json is gone".into()),
        Err(e) => return problems.push(e),
    };
    match chargectl::firmware::Slots::open(&slots_dir, OLD_VERSION) {
        Ok(slots) => {
            let v = slots.active_version();
            if v != OLD_VERSION && v != NEW_VERSION {
                problems.push(format!("active slot runs {v:?}"));
            }
            if acks.contains_key("installed") && v != NEW_VERSION {
                problems.push(format!("Installed was reported but {v} runs"));
            }
            let active = meta["active"].as_str().unwrap_or("A");
            if let Some(sha) = meta[active]["image_sha256"].as_str() {
                use sha2::Digest;
                let img =
                    std::fs::read(slots_dir.join(format!("{active}.img"))).unwrap_or_default();
                if hex::encode(sha2::Sha256::digest(&img)) != sha {
                    problems.push(format!("slot {active} does not hash to its record"));
                }
            }
        }
        Err(e) => problems.push(format!("slots do not open: {e}")),
    }
}

/// One case: the workload with `CHARGECTL_FAILPOINT=spec` (or the census with `log`), the
/// restart, the checks.
async fn run_case(
    fix: Arc<Fixture>,
    n: usize,
    spec: Option<String>,
    log: Option<PathBuf>,
) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let csms = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let cp = format!("PL-{n}");
    let key = fix.key_file.display().to_string();
    let mut env = Vec::new();
    if let Some(spec) = &spec {
        env.push(("CHARGECTL_FAILPOINT", spec.clone()));
    }
    if let Some(log) = &log {
        env.push(("CHARGECTL_FAILPOINT_LOG", log.display().to_string()));
    }
    let mut out = Outcome::default();
    let mut p = ChargerProc::spawn(dir.path(), &csms.url(), &cp, &["--trust-key", &key], &env);
    let result = tokio::time::timeout(
        Duration::from_secs(90),
        workload(&mut p, &csms, &cp, &fix, &mut out.acks),
    )
    .await
    .unwrap_or_else(|_| Err("the workload took over 90 s".into()));
    if let Err(e) = result {
        out.problems.push(format!("before the cut: {e}"));
    }
    // The cut: the failpoint's abort, or (for the census, or a point this run did not reach)
    // a SIGKILL at the end of the workload.
    p.wait_exit(Duration::from_millis(200)).await;
    p.kill().await;
    let stderr = p.stderr_text();
    // SIGABRT is the failpoint's abort (its message on stderr may still be in the pipe).
    let aborted = {
        use std::os::unix::process::ExitStatusExt;
        p.exit.and_then(|s| s.signal()) == Some(libc::SIGABRT)
    };
    out.killed = spec.is_some()
        && (aborted
            || spec
                .as_ref()
                .is_some_and(|s| stderr.contains(&format!("failpoint {s}: abort"))));
    if !out.killed && stderr.contains("panicked") {
        out.crashed = Some(stderr.clone());
    }
    if out.killed
        && spec
            .as_deref()
            .is_some_and(|s| s.starts_with("journal.append.after_write:"))
    {
        // Written but not fsynced: a real power cut may keep any prefix of the record.
        tear_last_record(&dir.path().join(chargectl::stack::journal::FILE_NAME));
    }
    let cut = csms.cursor();
    let pending = match journal_at_cut(dir.path()) {
        Ok(p) => p,
        Err(e) => {
            out.problems.push(e);
            Vec::new()
        }
    };
    let before = tx_messages(&csms, &cp, 0, cut);
    // The restart, without the failpoint.
    let mut q = ChargerProc::spawn(dir.path(), &csms.url(), &cp, &["--trust-key", &key], &[]);
    let booted = q
        .until(wait_call(&csms, &cp, cut, "BootNotification", |_| true))
        .await;
    if booted != Some(true) {
        out.problems.push(format!(
            "no boot after the restart (exit {:?}): {}",
            q.exit,
            q.stderr_text()
        ));
        return out;
    }
    // Drained: every message the journal held reaches the CSMS, and every transaction that
    // started has stopped.
    let drained = async {
        loop {
            let after = tx_messages(&csms, &cp, cut, usize::MAX);
            let all: Vec<String> = before.iter().chain(after.iter()).cloned().collect();
            let starts = all
                .iter()
                .filter(|m| m.starts_with("StartTransaction"))
                .collect::<BTreeSet<_>>()
                .len();
            let stops = all
                .iter()
                .filter(|m| m.starts_with("StopTransaction"))
                .collect::<BTreeSet<_>>()
                .len();
            if is_subsequence(&pending, &after) && starts == stops {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    if q.until(tokio::time::timeout(Duration::from_secs(30), drained))
        .await
        .is_none_or(|r| r.is_err())
    {
        let after = tx_messages(&csms, &cp, cut, usize::MAX);
        out.problems.push(format!(
            "transaction messages lost: the journal held {pending:#?}\nbefore the cut the CSMS got {before:#?}\nafter it {after:#?}"
        ));
    }
    // Let a resend of the message in flight, if any, arrive before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.stop(Duration::from_secs(5)).await;
    let after = tx_messages(&csms, &cp, cut, usize::MAX);
    let all: Vec<String> = before.iter().chain(after.iter()).cloned().collect();
    // Resends repeat the journal's front message (it was sent, its answer never reached the
    // charger: lost with the connection, or answered but not recorded before the cut), so a
    // repeat follows its original with nothing between. Any other repeat is a duplicate.
    let mut seen = BTreeSet::<&String>::new();
    for (i, m) in all.iter().enumerate() {
        if !seen.insert(m) {
            out.duplicates += 1;
            if i == 0 || all[i - 1] != *m {
                out.problems
                    .push(format!("{m} arrived again after other messages"));
            }
        }
    }
    check_continuity(&all, &mut out.problems);
    // A firmware install the CSMS saw begin ends in Installed or InstallationFailed.
    let statuses = |from: usize| -> Vec<String> {
        calls_from(&csms, &cp, from, "FirmwareStatusNotification")
            .iter()
            .map(|p| p["status"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let all_statuses = statuses(0);
    if all_statuses.iter().any(|s| s == "Installing")
        && !all_statuses
            .iter()
            .any(|s| s == "Installed" || s == "InstallationFailed")
    {
        out.problems.push(format!(
            "a firmware install began and was never concluded: {all_statuses:?}"
        ));
    }
    let starts: BTreeSet<_> = all
        .iter()
        .filter(|m| m.starts_with("StartTransaction"))
        .collect();
    if starts.len() > 1 {
        out.problems
            .push(format!("{} transactions started, 1 ran", starts.len()));
    }
    // The seeded undelivered MeterValues arrive exactly once (duplicates counted above).
    let seeded = all
        .iter()
        .filter(|m| m.contains("\"value\":\"1140\"") || m.contains("\"value\":\"1141\""))
        .collect::<BTreeSet<_>>();
    if seeded.len() != 2 {
        out.problems.push(format!(
            "seeded queued MeterValues delivered: {}",
            seeded.len()
        ));
    }
    check_documents(dir.path(), &out.acks, &mut out.problems);
    check_slots(dir.path(), &out.acks, &mut out.problems);
    csms.shutdown().await;
    out
}

/// The transaction's messages, duplicates removed, are in time order with no hole: one
/// MeterValues per second (MeterValueSampleInterval 1) from the StartTransaction to the
/// StopTransaction (after a cut, the recovered stop carries the time of the last sample).
fn check_continuity(all: &[String], problems: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    let mut times = Vec::new();
    for m in all {
        if !seen.insert(m) || m.contains("2026-01-01T00:") {
            continue; // a resend, or the seeded messages of an older transaction
        }
        let (action, json) = m.split_once(' ').unwrap();
        let v: Value = serde_json::from_str(json).unwrap();
        let t = match action {
            "MeterValues" => v["meterValue"][0]["timestamp"].clone(),
            _ => v["timestamp"].clone(),
        };
        let t = chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap_or_default()).unwrap();
        times.push((action.to_string(), t));
    }
    for w in times.windows(2) {
        let gap = (w[1].1 - w[0].1).num_milliseconds();
        if !(-1500..=1900).contains(&gap) {
            problems.push(format!(
                "{gap} ms between {} at {} and {} at {}: a message is missing or out of order",
                w[0].0, w[0].1, w[1].0, w[1].1
            ));
        }
    }
}

fn is_subsequence(needle: &[String], hay: &[String]) -> bool {
    let mut it = hay.iter();
    needle.iter().all(|n| it.any(|h| h == n))
}

/// Which hits of a point passed `count` times to cut at.
fn hits_to_cut(count: u64, all: bool) -> Vec<u64> {
    if all || count <= 16 {
        return (1..=count).collect();
    }
    let set: BTreeSet<u64> = [1, 2, count.div_ceil(2), count]
        .into_iter()
        .filter(|h| *h >= 1 && *h <= count)
        .collect();
    set.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_at_every_named_point_loses_nothing() {
    let fix = Arc::new(fixture().await);
    // The census: which points the workload passes, how often.
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("hits");
    let census = run_case(fix.clone(), 0, None, Some(log.clone())).await;
    assert!(
        census.problems.is_empty(),
        "the workload without a cut fails its own checks:\n{}",
        census.problems.join("\n")
    );
    let mut counts = BTreeMap::<String, u64>::new();
    for name in std::fs::read_to_string(&log).unwrap().lines() {
        *counts.entry(name.to_string()).or_default() += 1;
    }
    // Every kind of state is written by the workload.
    for doc in [
        "journal.append",
        "journal.compact.write",
        "config.write",
        "secrets.write",
        "local_list.write",
        "charging_profiles.write",
        "reservation.write",
        "reservation.remove",
        "availability.write",
        "transaction.write",
        "transaction.remove",
        "firmware.image.write",
        "firmware.switch.write",
        "firmware.switch.before",
        "firmware.confirm.write",
        "slots.write",
    ] {
        assert!(
            counts.keys().any(|k| k.starts_with(doc)),
            "the workload never passes {doc}: {counts:#?}"
        );
    }
    println!("census: {counts:#?}");
    if std::env::var("CHARGECTL_POWERLOSS_HITS").is_ok_and(|v| v == "none") {
        return;
    }
    let all = std::env::var("CHARGECTL_POWERLOSS_HITS").is_ok_and(|v| v == "all");
    let cases: Vec<String> = counts
        .iter()
        .flat_map(|(name, count)| {
            hits_to_cut(*count, all)
                .into_iter()
                .map(move |h| format!("{name}:{h}"))
        })
        .collect();
    let jobs: usize = std::env::var("CHARGECTL_POWERLOSS_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let gate = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, spec) in cases.iter().enumerate() {
        let (fix, gate, spec) = (fix.clone(), gate.clone(), spec.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let out = run_case(fix, i + 1, Some(spec.clone()), None).await;
            (spec, out)
        });
    }
    let mut killed = 0;
    let mut missed = Vec::new();
    let mut duplicates = 0;
    let mut failures = Vec::new();
    while let Some(r) = set.join_next().await {
        let (spec, out) = r.unwrap();
        if out.killed {
            killed += 1;
        } else {
            missed.push(spec.clone());
        }
        if let Some(c) = out.crashed {
            failures.push(format!("{spec}: crashed: {c}"));
        }
        duplicates += out.duplicates;
        for p in out.problems {
            failures.push(format!("{spec}: {p}"));
        }
    }
    println!(
        "power loss: {killed} kill points survived at {} named points ({} cases, {} not reached: {missed:?}); {duplicates} resends of the message in flight",
        counts.len(),
        cases.len(),
        missed.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(killed >= 100, "only {killed} kill points were reached");
}
