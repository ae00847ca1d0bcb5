//! The serial service link end to end over a real pseudo-terminal, against an in-memory charger.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use chargectl::link::codec::{BootState, ConfigEntry, ConfigRead, Identity, SetOutcome};
use chargectl::link::frame::{Decoded, Decoder, Frame, Kind, channel};
use chargectl::link::pty::{self, LineShaper, PtyPort};
use chargectl::link::{
    Backend, Client, ClientOptions, Error, FlashOptions, FlashProgress, LogEvent, ServiceOptions,
    serve,
};
use chargectl::stack::logbook::{Level, LogRecord};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, watch};

const SIGNING_SALT: &[u8] = b"trusted-test-key";

fn test_key() -> chargectl::firmware::SigningKey {
    chargectl::firmware::SigningKey::from_bytes(&[7u8; 32])
}

/// A firmware image for the fake: "FW <version>\n" + payload + 32-byte tag.
fn image(version: &str, payload_len: usize, seed: u64) -> Vec<u8> {
    let mut img = format!("FW {version}\n").into_bytes();
    let mut s = seed | 1;
    for _ in 0..payload_len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        img.push(s as u8);
    }
    let tag: [u8; 32] = Sha256::new()
        .chain_update(SIGNING_SALT)
        .chain_update(&img)
        .finalize()
        .into();
    img.extend_from_slice(&tag);
    img
}

#[derive(Default)]
struct Flash {
    sha: [u8; 32],
    size: u64,
    staged: Vec<u8>,
    bootable: Option<String>,
}

struct Fake {
    config: Mutex<BTreeMap<String, (String, &'static str)>>,
    logs: Mutex<Vec<LogRecord>>,
    log_tx: broadcast::Sender<LogRecord>,
    flash: Mutex<Flash>,
    active: Mutex<(String, String)>, // (slot, version)
    reboots: Mutex<u32>,
}

impl Fake {
    fn new() -> Arc<Fake> {
        let mut config = BTreeMap::new();
        config.insert("HeartbeatInterval".into(), ("60".into(), "rw"));
        config.insert("ChargePointModel".into(), ("Go".into(), "ro"));
        config.insert("AuthorizationKey".into(), ("".into(), "wo"));
        config.insert("SecurityProfile".into(), ("0".into(), "reboot"));
        for i in 0..56 {
            config.insert(format!("Extra{i:02}"), (format!("value {i}"), "rw"));
        }
        let (log_tx, _) = broadcast::channel(16);
        Arc::new(Fake {
            config: Mutex::new(config),
            logs: Mutex::new(Vec::new()),
            log_tx,
            flash: Mutex::new(Flash::default()),
            active: Mutex::new(("A".into(), "1.0.0".into())),
            reboots: Mutex::new(0),
        })
    }

    fn log(&self, seq: u64, level: Level, message: &str) {
        let rec = LogRecord {
            seq,
            time: chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + seq as i64)
                .expect("time"),
            level,
            target: "test".into(),
            message: message.into(),
        };
        self.logs.lock().expect("lock").push(rec.clone());
        let _ = self.log_tx.send(rec);
    }

    fn entry(key: &str, value: &str, mode: &str) -> ConfigEntry {
        ConfigEntry {
            key: key.into(),
            value: (mode != "wo").then(|| value.to_string()),
            readonly: mode == "ro",
            write_only: mode == "wo",
            value_type: "string".into(),
            reboot_required: mode == "reboot",
        }
    }
}

impl Backend for Fake {
    fn identity(&self) -> Identity {
        let (slot, version) = self.active.lock().expect("lock").clone();
        let flash = self.flash.lock().expect("lock");
        Identity {
            vendor: "Zaptec".into(),
            model: "Go".into(),
            serial_number: "ZAP000042".into(),
            firmware_version: version,
            inactive_slot: if slot == "A" { "B".into() } else { "A".into() },
            active_slot: slot,
            inactive_version: flash.bootable.clone(),
            uptime_secs: 12,
            boot_state: BootState::Normal,
        }
    }

    async fn config_get(&self, keys: Vec<String>) -> ConfigRead {
        let config = self.config.lock().expect("lock");
        let mut read = ConfigRead::default();
        if keys.is_empty() {
            for (k, (v, m)) in config.iter() {
                read.entries.push(Fake::entry(k, v, m));
            }
        } else {
            for k in keys {
                match config.get(&k) {
                    Some((v, m)) => read.entries.push(Fake::entry(&k, v, m)),
                    None => read.unknown.push(k),
                }
            }
        }
        read
    }

    async fn config_set(&self, key: String, value: String) -> SetOutcome {
        let mut config = self.config.lock().expect("lock");
        match config.get_mut(&key) {
            None => SetOutcome::NotSupported,
            Some((_, "ro")) => SetOutcome::Rejected("read-only key".into()),
            Some((v, m)) => {
                if key == "HeartbeatInterval" && value.parse::<u32>().is_err() {
                    return SetOutcome::Rejected(format!("'{value}' is not an integer"));
                }
                *v = value;
                if *m == "reboot" {
                    SetOutcome::RebootRequired
                } else {
                    SetOutcome::Accepted
                }
            }
        }
    }

    fn log_subscribe(&self) -> (Vec<LogRecord>, broadcast::Receiver<LogRecord>) {
        let logs = self.logs.lock().expect("lock");
        (logs.clone(), self.log_tx.subscribe())
    }

    async fn reboot(&self) {
        *self.reboots.lock().expect("lock") += 1;
        let mut flash = self.flash.lock().expect("lock");
        if let Some(v) = flash.bootable.take() {
            let mut active = self.active.lock().expect("lock");
            let slot = if active.0 == "A" { "B" } else { "A" };
            *active = (slot.into(), v);
        }
    }

    async fn flash_begin(
        &self,
        sha256: [u8; 32],
        size: u64,
        header: Vec<u8>,
    ) -> Result<u64, String> {
        if !header.starts_with(b"FW ") && !header.starts_with(&chargectl::firmware::MAGIC) {
            return Err("not a firmware image (bad header)".into());
        }
        let mut f = self.flash.lock().expect("lock");
        if f.sha == sha256 && f.size == size {
            return Ok(f.staged.len() as u64);
        }
        *f = Flash {
            sha: sha256,
            size,
            staged: Vec::new(),
            bootable: None,
        };
        Ok(0)
    }

    async fn flash_write(&self, offset: u64, data: Vec<u8>) -> Result<u64, String> {
        let mut f = self.flash.lock().expect("lock");
        if offset != f.staged.len() as u64 {
            return Err(format!("write at {offset}, expected {}", f.staged.len()));
        }
        f.staged.extend_from_slice(&data);
        Ok(f.staged.len() as u64)
    }

    async fn flash_finish(&self) -> Result<String, String> {
        let mut f = self.flash.lock().expect("lock");
        let digest: [u8; 32] = Sha256::digest(&f.staged).into();
        if digest != f.sha || f.staged.len() as u64 != f.size {
            f.staged.clear();
            return Err("image hash does not match".into());
        }
        if f.staged.starts_with(&chargectl::firmware::MAGIC) {
            let key = test_key().verifying_key();
            return match chargectl::firmware::verify(&f.staged, &[key]) {
                Ok(h) => {
                    f.bootable = Some(h.firmware_version.clone());
                    Ok(h.firmware_version)
                }
                Err(e) => Err(e.to_string()),
            };
        }
        let (body, tag) = f.staged.split_at(f.staged.len().saturating_sub(32));
        let want: [u8; 32] = Sha256::new()
            .chain_update(SIGNING_SALT)
            .chain_update(body)
            .finalize()
            .into();
        if tag != want {
            f.staged.clear();
            f.sha = [0; 32];
            return Err("image signed by an untrusted key".into());
        }
        let line = body.split(|b| *b == b'\n').next().unwrap_or_default();
        let version = String::from_utf8_lossy(&line[3..]).to_string();
        f.bootable = Some(version.clone());
        Ok(version)
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    port: Arc<Mutex<PtyPort>>,
    link: PathBuf,
    fake: Arc<Fake>,
    server: tokio::task::JoinHandle<()>,
    replug: tokio::sync::mpsc::Sender<()>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A fake charger serving on a pseudo-terminal behind `shaper`. A message on `replug` pulls the
/// cable and plugs it back in on a new pseudo-terminal.
fn rig(shaper: LineShaper) -> Rig {
    rig_with(shaper, ServiceOptions::default())
}

/// [`rig`] with the charger side's options.
fn rig_with(shaper: LineShaper, service: ServiceOptions) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("charger");
    let (port, master) = pty::open(&link).expect("pty");
    let port = Arc::new(Mutex::new(port));
    let fake = Fake::new();
    let (replug, mut replug_rx) = tokio::sync::mpsc::channel::<()>(1);
    let server = {
        let fake = fake.clone();
        let port = port.clone();
        tokio::spawn(async move {
            let mut master = Some(master);
            while let Some(m) = master.take() {
                let (line, pump) = shaper.wrap(m);
                tokio::select! {
                    r = serve(line, fake.clone(), service.clone()) => {
                        if let Err(e) = r { eprintln!("serve ended: {e}"); }
                        pump.abort();
                        return;
                    }
                    _ = replug_rx.recv() => {
                        pump.abort();
                        let next = port.lock().expect("lock").replug().expect("replug");
                        master = Some(next);
                    }
                }
            }
        })
    };
    Rig {
        _dir: dir,
        port,
        link,
        fake,
        server,
        replug,
    }
}

fn opts() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(10),
        retry: Duration::from_millis(150),
        ..ClientOptions::default()
    }
}

async fn connect(rig: &Rig) -> Client {
    Client::connect(rig.link.to_str().expect("utf8"), 115_200, opts())
        .await
        .expect("connect")
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.into(), v.into())
}

#[tokio::test]
async fn identify_and_read_every_key_in_one_call() {
    let rig = rig(LineShaper::default());
    let c = connect(&rig).await;
    assert_eq!(c.hello().serial_number, "ZAP000042");
    let id = c.identify().await.expect("identify");
    assert_eq!(
        (id.vendor.as_str(), id.firmware_version.as_str()),
        ("Zaptec", "1.0.0")
    );
    let all = c.config_get(vec![]).await.expect("get all");
    assert_eq!(all.entries.len(), 60);
    let some = c
        .config_get(vec!["HeartbeatInterval".into(), "NoSuchKey".into()])
        .await
        .expect("get some");
    assert_eq!(some.entries[0].value.as_deref(), Some("60"));
    assert_eq!(some.unknown, vec!["NoSuchKey".to_string()]);
}

#[tokio::test]
async fn writes_apply_the_charger_rules_and_write_only_keys_never_read_back() {
    let rig = rig(LineShaper::default());
    let c = connect(&rig).await;
    let out = c
        .config_set(vec![
            kv("HeartbeatInterval", "300"),
            kv("ChargePointModel", "X"),
            kv("AuthorizationKey", "00112233445566778899aabbccddeeff"),
            kv("SecurityProfile", "1"),
            kv("Nope", "1"),
        ])
        .await
        .expect("set");
    assert_eq!(
        out[0],
        kv_outcome("HeartbeatInterval", SetOutcome::Accepted)
    );
    assert_eq!(
        out[1],
        kv_outcome(
            "ChargePointModel",
            SetOutcome::Rejected("read-only key".into())
        )
    );
    assert_eq!(out[2].1, SetOutcome::Accepted);
    assert_eq!(out[3].1, SetOutcome::RebootRequired);
    assert_eq!(out[4].1, SetOutcome::NotSupported);
    let read = c
        .config_get(vec!["HeartbeatInterval".into(), "AuthorizationKey".into()])
        .await
        .expect("get");
    assert_eq!(read.entries[0].value.as_deref(), Some("300"));
    assert!(read.entries[1].write_only);
    assert_eq!(read.entries[1].value, None);
    let dup = c
        .config_set(vec![kv("A", "1"), kv("A", "2")])
        .await
        .expect_err("duplicate key");
    assert!(dup.to_string().contains("key A is given twice"));
}

fn kv_outcome(k: &str, o: SetOutcome) -> (String, SetOutcome) {
    (k.into(), o)
}

#[tokio::test]
async fn logs_stream_history_then_follow_and_count_dropped_lines() {
    let rig = rig(LineShaper::default());
    rig.fake.log(1, Level::Debug, "debug line");
    rig.fake.log(2, Level::Info, "booted");
    rig.fake.log(3, Level::Warn, "no CSMS yet");
    let c = connect(&rig).await;
    let mut history = c.logs(Level::Info, false).await.expect("logs");
    let mut got = Vec::new();
    while let Some(e) = history.next().await {
        got.push(e);
    }
    let msgs: Vec<_> = got
        .iter()
        .map(|e| match e {
            LogEvent::Record(r) => r.message.clone(),
            LogEvent::Dropped(n) => format!("dropped {n}"),
        })
        .collect();
    assert_eq!(msgs, vec!["booted", "no CSMS yet"]);

    let mut follow = c.logs(Level::Info, true).await.expect("follow");
    for _ in 0..2 {
        follow.next().await.expect("history record");
    }
    // The charger's log channel holds 16 records: 200 at once overflow it.
    for seq in 4..204 {
        rig.fake.log(seq, Level::Info, &format!("line {seq}"));
    }
    let (mut records, mut dropped) = (0u64, 0u64);
    while records + dropped < 200 {
        match tokio::time::timeout(Duration::from_secs(5), follow.next()).await {
            Ok(Some(LogEvent::Record(r))) => {
                assert!(r.seq >= 4);
                records += 1;
            }
            Ok(Some(LogEvent::Dropped(n))) => dropped += n,
            other => panic!("stream ended early: {other:?} after {records} + {dropped}"),
        }
    }
    assert_eq!(records + dropped, 200);
    assert!(dropped > 0, "expected the overflow to be reported");
    assert!(records >= 16);
}

async fn flash(c: &Client, img: &[u8]) -> Result<chargectl::link::FlashReport, Error> {
    let (tx, _rx) = watch::channel(FlashProgress::default());
    c.flash(img, &img[..16], &FlashOptions::default(), &tx)
        .await
}

#[tokio::test]
async fn flash_one_mebibyte_then_reboot_into_it() {
    let rig = rig(LineShaper::default());
    let c = connect(&rig).await;
    let img = image("2.0.0", 1 << 20, 1);
    let (tx, rx) = watch::channel(FlashProgress::default());
    let report = c
        .flash(&img, &img[..16], &FlashOptions::default(), &tx)
        .await
        .expect("flash");
    assert_eq!(report.version, "2.0.0");
    assert_eq!(report.resumed_from, 0);
    assert_eq!(rx.borrow().done, img.len() as u64);
    assert_eq!(rig.fake.flash.lock().expect("lock").staged, img);
    // Still on the old firmware until the reboot.
    assert_eq!(c.identify().await.expect("id").firmware_version, "1.0.0");
    c.reboot().await.expect("reboot");
    c.reconnect().await.expect("reconnect");
    let id = c.identify().await.expect("identify");
    assert_eq!(
        (id.firmware_version.as_str(), id.active_slot.as_str()),
        ("2.0.0", "B")
    );
}

#[tokio::test]
async fn a_corrupted_image_is_refused_and_the_old_slot_stays() {
    let rig = rig(LineShaper::default());
    let c = connect(&rig).await;
    let mut img = image("6.6.6", 100_000, 2);
    img[5000] ^= 0x01;
    let err = flash(&c, &img).await.expect_err("refused");
    assert!(matches!(err, Error::FlashRejected { .. }), "{err}");
    assert!(err.to_string().contains("untrusted key"), "{err}");
    c.reboot().await.expect("reboot");
    c.reconnect().await.expect("reconnect");
    let id = c.identify().await.expect("identify");
    assert_eq!(
        (id.firmware_version.as_str(), id.active_slot.as_str()),
        ("1.0.0", "A")
    );
    let bad = image("7.0.0", 10, 3);
    let err = {
        let (tx, _rx) = watch::channel(FlashProgress::default());
        c.flash(&bad, b"MZ not firmware", &FlashOptions::default(), &tx)
            .await
            .expect_err("bad header")
    };
    assert!(err.to_string().contains("bad header"), "{err}");
}

#[tokio::test]
async fn an_interrupted_flash_resumes_from_the_persisted_offset() {
    let rig = rig(LineShaper::default());
    let img = image("3.1.0", 1 << 20, 4);
    {
        let c = connect(&rig).await;
        let (tx, mut rx) = watch::channel(FlashProgress::default());
        let img2 = img.clone();
        let task = tokio::spawn(async move {
            let r = c
                .flash(&img2, &img2[..16], &FlashOptions::default(), &tx)
                .await;
            drop(c);
            r
        });
        while rx.borrow().done < 300_000 {
            rx.changed().await.expect("progress");
        }
        task.abort();
        let _ = task.await;
    }
    // The charger booted the old slot meanwhile.
    let staged = rig.fake.flash.lock().expect("lock").staged.len() as u64;
    assert!(staged >= 300_000 && staged < img.len() as u64, "{staged}");
    let c = connect(&rig).await;
    assert_eq!(c.identify().await.expect("id").firmware_version, "1.0.0");
    let report = flash(&c, &img).await.expect("resumed flash");
    assert!(report.resumed_from >= 300_000, "{}", report.resumed_from);
    assert_eq!(report.version, "3.1.0");
    assert_eq!(rig.fake.flash.lock().expect("lock").staged, img);
}

#[tokio::test]
async fn a_cable_pull_mid_flash_reconnects_and_finishes() {
    let rig = rig(LineShaper::default());
    let c = connect(&rig).await;
    let img = image("4.0.0", 1 << 20, 5);
    let (tx, mut rx) = watch::channel(FlashProgress::default());
    let c2 = c.clone();
    let img2 = img.clone();
    let task = tokio::spawn(async move {
        c2.flash(&img2, &img2[..16], &FlashOptions::default(), &tx)
            .await
    });
    while rx.borrow().done < 200_000 {
        rx.changed().await.expect("progress");
    }
    rig.replug.send(()).await.expect("replug");
    let report = task.await.expect("join").expect("flash across replug");
    assert_eq!(report.version, "4.0.0");
    assert!(report.resumed_from < 200_000);
    assert_eq!(rig.fake.flash.lock().expect("lock").staged, img);
    let now = std::fs::read_link(&rig.link).expect("link");
    assert_eq!(now, rig.port.lock().expect("lock").slave_path());
}

#[tokio::test]
async fn noisy_line_config_writes_and_a_one_mebibyte_flash_still_complete() {
    let rig = rig(LineShaper {
        baud: None,
        drop_rate: 0.001,
        flip_rate: 0.001,
        seed: 77,
    });
    let c = connect(&rig).await;
    for i in 0..20 {
        let out = c
            .config_set(vec![kv("HeartbeatInterval", &format!("{}", 100 + i))])
            .await
            .expect("set under noise");
        assert_eq!(out[0].1, SetOutcome::Accepted);
    }
    let read = c
        .config_get(vec!["HeartbeatInterval".into()])
        .await
        .expect("get");
    assert_eq!(read.entries[0].value.as_deref(), Some("119"));
    let img = image("5.0.0", 1 << 20, 6);
    let report = flash(&c, &img).await.expect("flash under noise");
    assert_eq!(report.version, "5.0.0");
    assert!(report.retransmits > 0);
    assert_eq!(rig.fake.flash.lock().expect("lock").staged, img);
    let stats = c.stats().await.expect("stats");
    assert!(
        stats.crc_errors + stats.cobs_errors + stats.bad_header > 0,
        "{stats:?}"
    );
}

#[tokio::test]
async fn the_charger_skips_garbage_between_frames() {
    let (mut tool, charger) = tokio::io::duplex(1 << 16);
    let fake = Fake::new();
    let server = tokio::spawn(serve(charger, fake, ServiceOptions::default()));
    let hello = chargectl::link::codec::HostHello {
        proto_min: 1,
        proto_max: 1,
        session: 9,
    };
    let mut wire = b"\xff\xfeline noise\r\n".to_vec();
    wire.extend(Frame::new(Kind::Hello, channel::CONTROL, 1, hello.encode()).encode());
    wire.extend([0x13, 0x37, 0x42, 0x00, 0x00, 0x99]);
    wire.extend(
        Frame::new(
            Kind::Req,
            channel::CONTROL,
            2,
            chargectl::link::codec::Request::Identify.encode(),
        )
        .encode(),
    );
    tool.write_all(&wire).await.expect("write");
    let mut dec = Decoder::new();
    let mut frames = Vec::new();
    let mut buf = [0u8; 4096];
    while frames.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(5), tool.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        let mut out = Vec::new();
        dec.push(&buf[..n], &mut out);
        frames.extend(out.into_iter().filter_map(|d| match d {
            Decoded::Frame(f) => Some(f),
            Decoded::Text(_) => None,
        }));
    }
    assert_eq!((frames[0].kind, frames[0].id), (Kind::Hello, 1));
    assert_eq!((frames[1].kind, frames[1].id), (Kind::Rsp, 2));
    drop(tool);
    server.await.expect("join").expect("clean end");
}

#[tokio::test]
async fn console_text_and_garbage_over_tcp_do_not_break_the_session() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fake = Fake::new();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        s.write_all(b"Zaptec bootloader 1.2\r\n\x00\x07\x99garbage\x00")
            .await
            .expect("banner");
        let _ = serve(s, fake, ServiceOptions::default()).await;
    });
    let c = Client::connect(&format!("tcp://{addr}"), 115_200, opts())
        .await
        .expect("connect over tcp");
    assert_eq!(c.identify().await.expect("identify").model, "Go");
    let stats = c.stats().await.expect("stats");
    assert!(stats.garbage_bytes >= 20, "{stats:?}");
    server.abort();
}

#[tokio::test]
async fn port_errors_are_clear() {
    let err = Client::connect("/dev/ttyUSB9-missing", 115_200, opts())
        .await
        .expect_err("missing");
    assert_eq!(err.to_string(), "no such port /dev/ttyUSB9-missing");
    // A pseudo-terminal with nobody serving on it: opened, but no HELLO answer.
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("silent");
    let (_port, _master) = pty::open(&link).expect("pty");
    let quiet = ClientOptions {
        hello_attempts: 2,
        hello_timeout: Duration::from_millis(50),
        ..opts()
    };
    let err = Client::connect(link.to_str().expect("utf8"), 115_200, quiet)
        .await
        .expect_err("silent");
    assert!(matches!(err, Error::NoAnswer { attempts: 2, .. }), "{err}");
    assert!(err.is_unreachable());
}

async fn cli(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chargectl"))
        .args(args)
        .env("CHARGECTL_CONFIG_DIR", dir.join("config"))
        .env("CHARGECTL_DATA_DIR", dir.join("data"))
        .env_remove("CHARGECTL_PORT")
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("run chargectl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_commands_talk_to_the_charger_and_exit_by_failure_class() {
    let rig = rig(LineShaper::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let port = rig.link.to_str().expect("utf8").to_string();

    let (code, out, err) = cli(dir.path(), &["info", "--port", &port, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(v["identity"]["serial_number"], "ZAP000042");

    let (code, out, err) = cli(
        dir.path(),
        &[
            "config",
            "set",
            "HeartbeatInterval=90",
            "ChargePointModel=X",
            "AuthorizationKey=00112233445566778899aabbccddeeff",
            "--port",
            &port,
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("ChargePointModel (rejected: read-only key)"),
        "{err}"
    );
    assert!(
        !out.contains("00112233445566778899"),
        "secret echoed: {out}"
    );
    assert!(
        !err.contains("00112233445566778899"),
        "secret echoed: {err}"
    );
    let first: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("line")).expect("json");
    assert_eq!(first["results"][0]["outcome"]["status"], "accepted");

    let (code, out, _) = cli(
        dir.path(),
        &[
            "config",
            "get",
            "HeartbeatInterval",
            "AuthorizationKey",
            "--port",
            &port,
        ],
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("HeartbeatInterval = 90\n"), "{out}");
    assert!(out.contains("AuthorizationKey = <write-only>"), "{out}");

    let payload = image("0.0.0", 200_000, 11);
    let packed = chargectl::firmware::pack(&payload, "2.5.0", &test_key()).expect("pack");
    let img = dir.path().join("fw.bin");
    std::fs::write(&img, &packed).expect("write image");
    let img_s = img.to_str().expect("utf8");
    let (code, out, err) = cli(dir.path(), &["flash", img_s, "--port", &port, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let last: serde_json::Value =
        serde_json::from_str(out.lines().last().expect("line")).expect("json");
    assert_eq!(last["type"], "result");
    assert_eq!(last["data"]["after"]["firmware_version"], "2.5.0");
    assert!(out.lines().any(|l| l.contains("\"type\":\"progress\"")));

    let mut damaged = packed.clone();
    let n = damaged.len();
    damaged[n - 10] ^= 0xFF;
    std::fs::write(&img, &damaged).expect("write image");
    let (code, _, err) = cli(dir.path(), &["flash", img_s, "--port", &port]).await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("SHA-256"), "{err}");

    let (code, _, err) = cli(dir.path(), &["info", "--port", "/dev/ttyUSB9-missing"]).await;
    assert_eq!(code, 3);
    assert!(err.contains("no such port /dev/ttyUSB9-missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_reconnecting_commands_are_served_queued_or_refused_with_a_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("charger");
    let (mut port, master) = pty::open(&link).expect("pty");
    let fake = Fake::new();
    let server = tokio::spawn(serve(master, fake.clone(), ServiceOptions::default()));
    let c = Client::connect(
        link.to_str().expect("utf8"),
        115_200,
        ClientOptions {
            hello_timeout: Duration::from_millis(50),
            reconnect_timeout: Duration::from_secs(60),
            ..opts()
        },
    )
    .await
    .expect("connect");
    let mut events = c.events();
    // Unplugged: the charger side goes away and nobody answers on the port any more.
    server.abort();
    let _ = server.await;
    let reason = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Ok(chargectl::link::LinkEvent::Disconnected { reason })) => break reason,
            Ok(Ok(_)) => continue,
            other => panic!("no Disconnected event: {other:?}"),
        }
    };
    assert!(!reason.is_empty());
    // The actor keeps serving while it looks for the charger (the search may take a minute).
    let stats = tokio::time::timeout(Duration::from_secs(5), c.stats()).await;
    assert!(matches!(stats, Ok(Ok(_))), "{stats:?}");
    // Requests are queued up to a bound; beyond it they are refused with a clear error.
    let mut queued = Vec::new();
    for _ in 0..70 {
        let c = c.clone();
        queued.push(tokio::spawn(async move { c.identify().await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut refused = 0;
    let mut waiting = Vec::new();
    for t in queued {
        if t.is_finished() {
            let err = t
                .await
                .expect("join")
                .expect_err("refused while reconnecting");
            assert!(matches!(err, Error::Reconnecting { .. }), "{err}");
            assert!(err.to_string().contains("reconnecting"), "{err}");
            refused += 1;
        } else {
            waiting.push(t);
        }
    }
    assert_eq!(refused, 6, "64 requests are queued, the other 6 refused");
    // Plugged back in: the queued requests are answered.
    let master = port.replug().expect("replug");
    let server = tokio::spawn(serve(master, fake.clone(), ServiceOptions::default()));
    for t in waiting {
        let id = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("answered after the reconnect")
            .expect("join")
            .expect("identify");
        assert_eq!(id.serial_number, "ZAP000042");
    }
    server.abort();
}

/// 0.1 % of bytes dropped and 0.1 % flipped, each direction, at a fixed seed.
fn noisy(seed: u64) -> LineShaper {
    LineShaper {
        baud: None,
        drop_rate: 0.001,
        flip_rate: 0.001,
        seed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_image_survives_a_noisy_line_with_the_default_timeouts() {
    let rig = rig(noisy(0x5EED_0013));
    let c = Client::connect(
        rig.link.to_str().expect("utf8"),
        115_200,
        ClientOptions::default(),
    )
    .await
    .expect("connect");
    assert_eq!(c.hello().proto, chargectl::link::codec::PROTO_MAX);
    // Every key, several times: multi-part answers complete with the default timeout.
    for _ in 0..10 {
        let all = c.config_get(vec![]).await.expect("every key under noise");
        assert_eq!(all.entries.len(), 60);
    }
    let packed = chargectl::firmware::pack(&image("0.0.0", 1 << 20, 13), "6.1.0", &test_key())
        .expect("pack");
    let (tx, _rx) = watch::channel(FlashProgress::default());
    let report = c
        .flash(
            &packed,
            &packed[..chargectl::firmware::HEADER_LEN],
            &FlashOptions::default(),
            &tx,
        )
        .await
        .expect("flash with the default timeouts");
    assert_eq!(report.version, "6.1.0");
    assert!(report.retransmits > 0, "the line lost nothing?");
    assert!(
        rig.fake.flash.lock().expect("lock").staged == packed,
        "the staged image differs from the one sent"
    );
    let stats = c.stats().await.expect("stats");
    assert!(stats.crc_errors + stats.cobs_errors > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charger_without_selective_repeat_still_takes_a_flash_on_a_noisy_line() {
    let rig = rig_with(
        noisy(0xB0B),
        ServiceOptions {
            proto_max: 1,
            ..ServiceOptions::default()
        },
    );
    let c = Client::connect(
        rig.link.to_str().expect("utf8"),
        115_200,
        ClientOptions::default(),
    )
    .await
    .expect("connect");
    assert_eq!(c.hello().proto, 1);
    let all = c.config_get(vec![]).await.expect("every key");
    assert_eq!(all.entries.len(), 60);
    let img = image("5.5.0", 256 * 1024, 21);
    let report = flash(&c, &img).await.expect("flash with go-back-N");
    assert_eq!(report.version, "5.5.0");
    assert_eq!(rig.fake.flash.lock().expect("lock").staged, img);
}

/// Writes `frames` to a charger served on an in-memory line and collects `want` answers.
async fn exchange(opts: ServiceOptions, frames: Vec<Frame>, want: usize) -> Vec<Frame> {
    let (mut tool, charger) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(serve(charger, Fake::new(), opts));
    let mut wire = Vec::new();
    for f in frames {
        f.encode_into(&mut wire);
    }
    tool.write_all(&wire).await.expect("write");
    let mut dec = Decoder::new();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < want {
        let n = tokio::time::timeout(Duration::from_secs(5), tool.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        let mut out = Vec::new();
        dec.push(&buf[..n], &mut out);
        got.extend(out.into_iter().filter_map(|d| match d {
            Decoded::Frame(f) => Some(f),
            Decoded::Text(_) => None,
        }));
    }
    drop(tool);
    server.await.expect("join").expect("clean end");
    got
}

fn host_hello(min: u8, max: u8) -> Frame {
    let hello = chargectl::link::codec::HostHello {
        proto_min: min,
        proto_max: max,
        session: 77,
    };
    Frame::new(Kind::Hello, channel::CONTROL, 1, hello.encode())
}

#[tokio::test]
async fn the_protocol_version_is_negotiated_in_hello() {
    use chargectl::link::codec::DeviceHello;
    // A tool from before selective repeat gets protocol 1.
    let got = exchange(ServiceOptions::default(), vec![host_hello(1, 1)], 1).await;
    assert_eq!(DeviceHello::decode(&got[0].body).expect("hello").proto, 1);
    // A current tool gets the newest both speak.
    let got = exchange(ServiceOptions::default(), vec![host_hello(1, 2)], 1).await;
    assert_eq!(DeviceHello::decode(&got[0].body).expect("hello").proto, 2);
    let older = ServiceOptions {
        proto_max: 1,
        ..ServiceOptions::default()
    };
    let got = exchange(older, vec![host_hello(1, 2)], 1).await;
    assert_eq!(DeviceHello::decode(&got[0].body).expect("hello").proto, 1);
}

#[tokio::test]
async fn requests_on_a_channel_the_protocol_does_not_define_are_refused() {
    use chargectl::link::codec::{Dec, Request, status};
    let identify = Request::Identify.encode();
    let got = exchange(
        ServiceOptions::default(),
        vec![
            host_hello(1, 2),
            Frame::new(Kind::Req, 9, 10, identify.clone()),
            Frame::new(Kind::Req, channel::FIRMWARE, 11, identify.clone()),
            Frame::new(Kind::Req, channel::CONTROL, 12, identify),
        ],
        4,
    )
    .await;
    let answer = |id: u16| {
        let f = got.iter().find(|f| f.id == id).expect("an answer");
        assert_eq!((f.kind, f.channel), (Kind::Rsp, channel::CONTROL));
        let mut d = Dec::new(&f.body);
        let _part = d.u16("part").expect("part");
        let st = d.u8("status").expect("status");
        (st, d.rest().to_vec())
    };
    let (st, reason) = answer(10);
    assert_eq!(st, status::BAD_CHANNEL);
    let reason = Dec::new(&reason).str("reason").expect("reason");
    assert_eq!(
        reason,
        "channel 9 is not defined by the service protocol (0 control, 1 log, 2 firmware)"
    );
    let (st, reason) = answer(11);
    assert_eq!(st, status::BAD_CHANNEL);
    let reason = Dec::new(&reason).str("reason").expect("reason");
    assert!(reason.contains("not on channel 2 (firmware)"), "{reason}");
    // The same request on the control channel is answered.
    assert_eq!(answer(12).0, status::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_interrupted_on_a_throttled_line_resumes() {
    let rig = rig(LineShaper {
        baud: Some(2_000_000),
        ..LineShaper::default()
    });
    let img = image("3.2.0", 512 * 1024, 8);
    {
        let c = connect(&rig).await;
        let (tx, mut rx) = watch::channel(FlashProgress::default());
        let img2 = img.clone();
        let task = tokio::spawn(async move {
            let r = c
                .flash(&img2, &img2[..16], &FlashOptions::default(), &tx)
                .await;
            drop(c);
            r
        });
        while rx.borrow().done < 150_000 {
            rx.changed().await.expect("progress");
        }
        task.abort();
        let _ = task.await;
    }
    let c = connect(&rig).await;
    let report = tokio::time::timeout(Duration::from_secs(60), flash(&c, &img))
        .await
        .expect("the resumed flash finishes")
        .expect("resumed flash");
    assert!(report.resumed_from >= 150_000, "{}", report.resumed_from);
    assert_eq!(rig.fake.flash.lock().expect("lock").staged, img);
}
