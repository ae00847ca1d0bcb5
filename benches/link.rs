//! Link benchmarks: `cargo bench --bench link`. Prints figures; asserts nothing.
//!
//! - flash goodput over a shaped 115200-baud line, incompressible and compressible images, as a
//!   fraction of the line rate (10 bits a byte);
//! - flash goodput over the bare pseudo-terminal as a fraction of raw pseudo-terminal
//!   throughput measured in the same run;
//! - the same flashes over a noisy line (0.1 % of bytes dropped and 0.1 % flipped, each
//!   direction, fixed seed), with the default timeouts, as a fraction of the clean figure
//!   (unthrottled: of the bare pseudo-terminal, and of the same path through the line shaper
//!   with no faults);
//! - log lines per second delivered, and lines lost;
//! - time to read all (~60) configuration keys.
//!
//! `cargo bench --bench link -- WORD` runs only the figures whose name contains WORD
//! (`clean`, `noisy`, `115200`, `pty`, `logs`, `keys`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use chargectl::link::codec::{BootState, ConfigEntry, ConfigRead, Identity, SetOutcome};
use chargectl::link::pty::{self, LineShaper};
use chargectl::link::{
    Backend, Client, ClientOptions, FlashOptions, FlashProgress, LogEvent, ServiceOptions, serve,
};
use chargectl::stack::logbook::{Level, LogRecord};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, watch};
use tokio_serial::{SerialPort, SerialPortBuilderExt, SerialStream};

struct Bench {
    staged: Mutex<Vec<u8>>,
    log_tx: broadcast::Sender<LogRecord>,
}

impl Backend for Bench {
    fn identity(&self) -> Identity {
        Identity {
            vendor: "Zaptec".into(),
            model: "Go".into(),
            serial_number: "BENCH1".into(),
            firmware_version: "1.0.0".into(),
            active_slot: "A".into(),
            inactive_slot: "B".into(),
            inactive_version: None,
            uptime_secs: 1,
            boot_state: BootState::Normal,
        }
    }
    async fn config_get(&self, _keys: Vec<String>) -> ConfigRead {
        ConfigRead {
            entries: (0..60)
                .map(|i| ConfigEntry {
                    key: format!("ConfigurationKeyNumber{i:02}"),
                    value: Some(format!("a typical value for key {i}")),
                    readonly: i % 3 == 0,
                    write_only: i == 7,
                    value_type: "string".into(),
                    reboot_required: false,
                })
                .collect(),
            unknown: vec![],
        }
    }
    async fn config_set(&self, _key: String, _value: String) -> SetOutcome {
        SetOutcome::Accepted
    }
    fn log_subscribe(&self) -> (Vec<LogRecord>, broadcast::Receiver<LogRecord>) {
        (Vec::new(), self.log_tx.subscribe())
    }
    async fn reboot(&self) {}
    async fn flash_begin(&self, _sha: [u8; 32], size: u64, _h: Vec<u8>) -> Result<u64, String> {
        let mut s = self.staged.lock().map_err(|e| e.to_string())?;
        s.clear();
        s.reserve(size as usize);
        Ok(0)
    }
    async fn flash_write(&self, offset: u64, data: Vec<u8>) -> Result<u64, String> {
        let mut s = self.staged.lock().map_err(|e| e.to_string())?;
        if offset != s.len() as u64 {
            return Err("out of order".into());
        }
        s.extend_from_slice(&data);
        Ok(s.len() as u64)
    }
    async fn flash_finish(&self) -> Result<String, String> {
        Ok("2.0.0".into())
    }
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

/// Firmware-like data: repeated instruction patterns, tables and strings with some entropy.
fn compressible(len: usize) -> Vec<u8> {
    let words = [
        "mov r0, r1",
        "ldr r2, [sp, #4]",
        "bl ocpp_send",
        "str r3, [r4]",
        "cmp r0, #0",
        "beq .L12",
        "push {r4-r7, lr}",
        "pop {r4-r7, pc}",
        "Heartbeat",
        "StatusNotification",
    ];
    let noise = random(len / 8 + 16, 99);
    let mut out = Vec::with_capacity(len);
    let mut i = 0;
    while out.len() < len {
        let n = noise[i % noise.len()];
        out.extend_from_slice(words[n as usize % words.len()].as_bytes());
        out.push(n);
        out.extend_from_slice(&(i as u32).to_le_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

struct Rig {
    _dir: tempfile::TempDir,
    _port: pty::PtyPort,
    path: String,
    backend: Arc<Bench>,
    server: tokio::task::JoinHandle<()>,
}

fn rig(shaper: LineShaper) -> Rig {
    rig_with(shaper, false)
}

/// `through_shaper`: the line goes through the shaper's pump even when it changes nothing
/// (the same path as a noisy line, for a like-for-like clean figure).
fn rig_with(shaper: LineShaper, through_shaper: bool) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("charger");
    let (port, master) = pty::open(&link).expect("pty");
    let (log_tx, _) = broadcast::channel(1 << 16);
    let backend = Arc::new(Bench {
        staged: Mutex::new(Vec::new()),
        log_tx,
    });
    let b = backend.clone();
    let server = tokio::spawn(async move {
        if shaper.is_transparent() && !through_shaper {
            let _ = serve(master, b, ServiceOptions::default()).await;
        } else {
            let (line, _pump) = shaper.wrap(master);
            let _ = serve(line, b, ServiceOptions::default()).await;
        }
    });
    Rig {
        path: link.to_string_lossy().into_owned(),
        _dir: dir,
        _port: port,
        backend,
        server,
    }
}

async fn client(rig: &Rig) -> Client {
    Client::connect(&rig.path, 115_200, ClientOptions::default())
        .await
        .expect("connect")
}

async fn flash_rate(shaper: LineShaper, image: &[u8], opts: FlashOptions) -> (f64, u64) {
    let (rate, wire, _) = flash_rate_with(shaper, false, image, opts).await;
    (rate, wire)
}

/// As [`flash_rate`], with the number of chunks sent again.
async fn flash_rate_resent(
    shaper: LineShaper,
    image: &[u8],
    opts: FlashOptions,
) -> (f64, u64, u64) {
    flash_rate_with(shaper, false, image, opts).await
}

async fn flash_rate_with(
    shaper: LineShaper,
    through_shaper: bool,
    image: &[u8],
    opts: FlashOptions,
) -> (f64, u64, u64) {
    let r = rig_with(shaper, through_shaper);
    let c = client(&r).await;
    let (tx, _rx) = watch::channel(FlashProgress::default());
    let start = Instant::now();
    let report = c
        .flash(image, &image[..16], &opts, &tx)
        .await
        .expect("flash");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        *r.backend.staged.lock().expect("lock") == image,
        "the staged image differs"
    );
    r.server.abort();
    (
        image.len() as f64 / secs,
        report.wire_bytes,
        report.retransmits,
    )
}

/// 0.1 % of bytes dropped and 0.1 % flipped, in each direction.
fn noisy(baud: Option<u32>) -> LineShaper {
    LineShaper {
        baud,
        drop_rate: 0.001,
        flip_rate: 0.001,
        seed: 0x0B5E_55ED,
    }
}

async fn raw_pty_rate(total: usize) -> f64 {
    let (mut master, slave) = SerialStream::pair().expect("pair");
    let name = slave.name().expect("slave name");
    let mut tool = tokio_serial::new(&name, 115_200)
        .open_native_async()
        .expect("open slave");
    let chunk = vec![0xA5u8; 64 * 1024];
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        while sent < total {
            master.write_all(&chunk).await.expect("write");
            sent += chunk.len();
        }
        master
    });
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < total {
        got += tool.read(&mut buf).await.expect("read");
    }
    let rate = got as f64 / start.elapsed().as_secs_f64();
    let _ = writer.await;
    drop(slave);
    rate
}

/// Lines per second the link delivers without loss: the producer never runs more than a bounded
/// number of lines ahead of the consumer, so the charger's log channel never overflows.
async fn log_rate(lines: u64) -> (f64, u64, u64) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let r = rig(LineShaper::default());
    let c = client(&r).await;
    let mut stream = c.logs(Level::Info, true).await.expect("logs");
    let tx = r.backend.log_tx.clone();
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = seen.clone();
    let producer = tokio::spawn(async move {
        for seq in 1..=lines {
            while seq > seen2.load(Ordering::Relaxed) + 4096 {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let _ = tx.send(LogRecord {
                seq,
                time: chrono::Utc::now(),
                level: Level::Info,
                target: "ocpp".into(),
                message: format!("Sent StatusNotification connector 1 Available seq {seq}"),
            });
        }
    });
    let start = Instant::now();
    let (mut got, mut dropped) = (0u64, 0u64);
    while got + dropped < lines {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(LogEvent::Record(_))) => got += 1,
            Ok(Some(LogEvent::Dropped(n))) => dropped += n,
            _ => break,
        }
        seen.store(got + dropped, Ordering::Relaxed);
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = producer.await;
    r.server.abort();
    (got as f64 / secs, got, dropped)
}

/// Mean time to read every key, and how many reads failed.
async fn config_time(shaper: LineShaper, runs: u32) -> (Duration, u32) {
    let r = rig(shaper);
    let c = client(&r).await;
    let start = Instant::now();
    let mut failed = 0;
    for _ in 0..runs {
        match c.config_get(vec![]).await {
            Ok(read) => assert_eq!(read.entries.len(), 60),
            Err(e) => {
                eprintln!("reading every key failed: {e}");
                failed += 1;
            }
        }
    }
    r.server.abort();
    (start.elapsed() / runs, failed)
}

fn wanted(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let line = 115_200.0 / 10.0;
        let shaped = LineShaper {
            baud: Some(115_200),
            ..LineShaper::default()
        };
        let unthrottled = FlashOptions {
            compress: false,
            initial_chunk: 4096,
            ..FlashOptions::default()
        };

        let small = random(128 * 1024, 1);
        let mut clean_line = None;
        if wanted("clean flash random 115200") {
            let (rate, wire) = flash_rate(shaped, &small, FlashOptions::default()).await;
            clean_line = Some(rate);
            println!(
                "flash 128 KiB random @115200:      {:8.0} B/s = {:5.1} % of line rate ({} B on the wire)",
                rate,
                100.0 * rate / line,
                wire
            );
        }
        if wanted("noisy flash random 115200") {
            let (rate, wire, resent) =
                flash_rate_resent(noisy(Some(115_200)), &small, FlashOptions::default()).await;
            println!(
                "flash 128 KiB random @115200, noisy: {:6.0} B/s = {:5.1} % of line rate ({} B on the wire, {} chunks resent){}",
                rate,
                100.0 * rate / line,
                wire,
                resent,
                clean_line
                    .map(|c| format!(", {:.1} % of clean", 100.0 * rate / c))
                    .unwrap_or_default()
            );
        }

        if wanted("clean flash compressible 115200") {
            let img = compressible(256 * 1024);
            let (rate, wire) = flash_rate(shaped, &img, FlashOptions::default()).await;
            println!(
                "flash 256 KiB compressible @115200: {:8.0} B/s = {:5.1} % of line rate ({} B on the wire)",
                rate,
                100.0 * rate / line,
                wire
            );
        }

        let mut clean_pty = None;
        if wanted("clean flash random pty") {
            let raw = raw_pty_rate(64 << 20).await;
            let img = random(16 << 20, 2);
            let (rate, _) = flash_rate(LineShaper::default(), &img, unthrottled.clone()).await;
            clean_pty = Some(rate);
            println!(
                "raw pseudo-terminal:               {:8.1} MB/s",
                raw / 1e6
            );
            println!(
                "flash 16 MiB random, bare PTY:     {:8.1} MB/s = {:5.1} % of raw",
                rate / 1e6,
                100.0 * rate / raw
            );
        }
        let img = random(4 << 20, 3);
        let mut clean_shaped = None;
        if wanted("clean flash random pty shaper") {
            let (rate, _, _) =
                flash_rate_with(LineShaper::default(), true, &img, unthrottled.clone()).await;
            clean_shaped = Some(rate);
            println!(
                "flash 4 MiB random, PTY through the shaper, no faults: {:6.1} MB/s",
                rate / 1e6
            );
        }
        if wanted("noisy flash random pty") {
            let (rate, wire, resent) =
                flash_rate_resent(noisy(None), &img, unthrottled.clone()).await;
            println!(
                "flash 4 MiB random, PTY, noisy:    {:8.2} MB/s ({} B on the wire, {} chunks resent){}{}",
                rate / 1e6,
                wire,
                resent,
                clean_pty
                    .map(|c| format!(", {:.1} % of the bare PTY", 100.0 * rate / c))
                    .unwrap_or_default(),
                clean_shaped
                    .map(|c| format!(", {:.1} % of the shaped clean line", 100.0 * rate / c))
                    .unwrap_or_default()
            );
        }

        if wanted("clean logs pty") {
            let (lps, got, dropped) = log_rate(200_000).await;
            println!(
                "log lines, bare PTY:               {lps:8.0} lines/s ({got} delivered, {dropped} dropped)"
            );
        }

        if wanted("clean keys pty") {
            let (t, _) = config_time(LineShaper::default(), 50).await;
            println!("read 60 keys, bare PTY:            {:8.2} ms", t.as_secs_f64() * 1e3);
        }
        if wanted("clean keys 115200") {
            let (t, _) = config_time(shaped, 5).await;
            println!("read 60 keys @115200:              {:8.2} ms", t.as_secs_f64() * 1e3);
        }
        if wanted("noisy keys 115200") {
            let (t, failed) = config_time(noisy(Some(115_200)), 20).await;
            println!(
                "read 60 keys @115200, noisy:       {:8.2} ms ({failed} of 20 reads failed)",
                t.as_secs_f64() * 1e3
            );
        }
    });
}
