//! Hostile serial peers. Part one: a hostile tool against the real emulated charger's service
//! port (`chargectl emulate --serial-link`) over a pseudo-terminal: random bytes, bad CRCs,
//! oversized and truncated frames, valid frames with garbage payloads, megabytes without a
//! delimiter, rapid open and close. The charger keeps serving (a plain `info` works afterwards)
//! with bounded memory. Part two: a hostile charger side against the tool: each misbehaviour
//! gives a clear error, and the same client recovers once the charger behaves.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use chargectl::link::codec::{
    BootState, ConfigEntry, ConfigRead, Dec, DeviceHello, Enc, HostHello, Identity, Request,
    SetOutcome, status,
};
use chargectl::link::frame::{self, Decoded, Decoder, Frame, Kind, channel, flags};
use chargectl::link::pty::{self, PtyPort};
use chargectl::link::transport::{self, BoxIo};
use chargectl::link::{Backend, Client, ClientOptions, Error, ServiceOptions, serve};
use chargectl::stack::logbook::LogRecord;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, watch};

/// Bound on any single wait.
const WAIT: Duration = Duration::from_secs(30);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
    /// Random bytes without a zero (no delimiter).
    fn nonzero(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next() as u8) | 1).collect()
    }
}

fn wire(f: &Frame) -> Vec<u8> {
    f.encode()
}

fn hello(session: u64) -> Frame {
    let body = HostHello {
        proto_min: 1,
        proto_max: 2,
        session,
    }
    .encode();
    Frame::new(Kind::Hello, channel::CONTROL, 0xFF01, body)
}

fn req(id: u16, r: &Request) -> Frame {
    Frame::new(Kind::Req, channel::CONTROL, id, r.encode())
}

/// (part, status, payload) of an RSP.
fn answer(f: &Frame) -> (u16, u8, Vec<u8>) {
    let mut d = Dec::new(&f.body);
    let part = d.u16("part").expect("part");
    let st = d.u8("status").expect("status");
    (part, st, d.rest().to_vec())
}

// ---------------------------------------------------------------------------------------------
// Part one: a hostile tool.

/// The tool side of the port, raw: bytes out, frames in.
struct Raw {
    port: BoxIo,
    dec: Decoder,
    frames: Vec<Frame>,
}

impl Raw {
    /// Opens the port as the tool does (exclusively, stale input discarded).
    async fn open(path: &Path) -> Raw {
        let port = transport::open(path.to_str().unwrap(), 115_200)
            .await
            .expect("open the service port");
        Raw {
            port,
            dec: Decoder::new(),
            frames: Vec::new(),
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        let done = tokio::time::timeout(WAIT, async {
            self.port.write_all(bytes).await?;
            self.port.flush().await
        })
        .await;
        assert!(
            matches!(done, Ok(Ok(()))),
            "the charger stopped taking bytes: {done:?}"
        );
    }

    /// Waits for a frame matching `pred`, keeping what else arrives out of the way.
    async fn wait(&mut self, pred: impl Fn(&Frame) -> bool) -> Option<Frame> {
        let until = tokio::time::Instant::now() + WAIT;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if let Some(i) = self.frames.iter().position(&pred) {
                return Some(self.frames.remove(i));
            }
            self.frames.clear();
            let n = match tokio::time::timeout_at(until, self.port.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => return None,
            };
            let mut out = Vec::new();
            self.dec.push(&buf[..n], &mut out);
            self.frames.extend(out.into_iter().filter_map(|d| match d {
                Decoded::Frame(f) => Some(f),
                Decoded::Text(_) => None,
            }));
        }
    }

    /// The answer to `f` (a REQ), sent after a delimiter that ends any partial frame.
    async fn ask(&mut self, f: Frame) -> Option<Frame> {
        let id = f.id;
        let mut bytes = vec![0u8, 0u8];
        f.encode_into(&mut bytes);
        self.write(&bytes).await;
        self.wait(|r| r.kind == Kind::Rsp && r.id == id).await
    }

    /// Greets the charger and has it identify itself.
    async fn healthy(&mut self, id: u16) -> bool {
        let mut bytes = vec![0u8, 0u8];
        hello(0x1234_5678).encode_into(&mut bytes);
        self.write(&bytes).await;
        if self.wait(|f| f.kind == Kind::Hello).await.is_none() {
            return false;
        }
        match self.ask(req(id, &Request::Identify)).await {
            Some(f) => {
                let (_, st, payload) = answer(&f);
                st == status::OK
                    && Identity::decode(&mut Dec::new(&payload)).is_ok_and(|i| i.vendor == "Zaptec")
            }
            None => false,
        }
    }
}

/// The emulated charger: `chargectl emulate --headless --serial-link`.
struct Charger {
    child: Child,
    port: PathBuf,
    _dir: tempfile::TempDir,
}

impl Charger {
    async fn start() -> Charger {
        let dir = tempfile::tempdir().unwrap();
        let port = dir.path().join("port");
        let mut child = Command::new(env!("CARGO_BIN_EXE_chargectl"))
            .args([
                "emulate",
                "--headless",
                "--json",
                "--serial-link",
                port.to_str().unwrap(),
                "--state-dir",
                dir.path().join("state").to_str().unwrap(),
            ])
            .env("CHARGECTL_DATA_DIR", dir.path().join("data"))
            .env("CHARGECTL_CONFIG_DIR", dir.path().join("config"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
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
        // Keep draining the emulator's output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Charger {
            child,
            port,
            _dir: dir,
        }
    }

    /// (resident, peak resident) memory of the charger process in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// Counts hostile inputs and checks the charger after each group.
struct Suite {
    charger: Charger,
    cases: usize,
    next_id: u16,
}

impl Suite {
    fn id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1) & 0x7FFF;
        self.next_id
    }

    /// The charger still answers on a freshly opened port.
    async fn still_serving(&mut self, after: &str) {
        let id = self.id();
        let mut raw = Raw::open(&self.charger.port).await;
        assert!(
            raw.healthy(id).await,
            "the charger stopped serving after {after}"
        );
    }
}

/// Valid frames of every kind a tool might send, for truncation and CRC damage.
fn sample_frames() -> Vec<Frame> {
    vec![
        hello(99),
        req(1, &Request::Identify),
        req(2, &Request::Ping),
        req(
            3,
            &Request::ConfigGet {
                keys: vec![
                    "HeartbeatInterval".into(),
                    "MeterValueSampleInterval".into(),
                ],
            },
        ),
        req(
            4,
            &Request::ConfigSet {
                key: "NoSuchKey".into(),
                value: "1".into(),
            },
        ),
        req(
            5,
            &Request::LogSubscribe {
                min_level: 2,
                history: true,
                follow: false,
            },
        ),
        req(6, &Request::FlashFinish { transfer: 7 }),
        Frame::new(Kind::Data, channel::FIRMWARE, 9, vec![0x41; 300]),
        Frame::new(Kind::Ack, channel::FIRMWARE, 9, 5u64.to_le_bytes().to_vec()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tool_cannot_stop_the_emulated_charger_serving() {
    let charger = Charger::start().await;
    let mut s = Suite {
        charger,
        cases: 0,
        next_id: 100,
    };
    let mut rng = Rng(0xC0FF_EE00_5EED_0001);
    s.still_serving("starting").await;
    let (rss_start, _) = s.charger.memory_kib();

    eprintln!("phase 1");
    // 1. Random bytes, with and without zeros (delimiters), in blocks of up to 8 KiB.
    let mut raw = Raw::open(&s.charger.port).await;
    for i in 0..200 {
        let len = 1 + rng.below(8192) as usize;
        let block = if i % 2 == 0 {
            rng.bytes(len)
        } else {
            rng.nonzero(len)
        };
        raw.write(&block).await;
        s.cases += 1;
        if i % 50 == 49 {
            let id = s.id();
            assert!(raw.healthy(id).await, "not serving after random block {i}");
        }
    }
    drop(raw);
    s.still_serving("random bytes").await;

    eprintln!("phase 2");
    // 2. Bad CRCs: every sample frame with one byte of its CRC or body damaged (re-encoded so
    // the COBS layer is intact and only the check fails).
    let mut raw = Raw::open(&s.charger.port).await;
    for f in sample_frames() {
        for k in 0..6 {
            let mut rawf = vec![frame::PROTO_VERSION, f.kind as u8, f.channel, f.flags];
            rawf.extend_from_slice(&f.id.to_le_bytes());
            rawf.extend_from_slice(&f.body);
            let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&rawf);
            rawf.extend_from_slice(&crc.to_le_bytes());
            let at = rawf.len() - 1 - (k * 7) % rawf.len();
            rawf[at] ^= 1 << (k % 8);
            let mut bytes = vec![0u8];
            frame::cobs_encode(&rawf, &mut bytes);
            bytes.push(0);
            raw.write(&bytes).await;
            s.cases += 1;
        }
    }
    let id = s.id();
    assert!(raw.healthy(id).await, "not serving after bad CRCs");
    drop(raw);

    eprintln!("phase 3");
    // 3. Oversized frames: well-formed COBS blocks longer than the largest frame.
    let mut raw = Raw::open(&s.charger.port).await;
    for len in [
        frame::MAX_ENCODED + 1,
        frame::MAX_ENCODED + 254,
        2 * frame::MAX_ENCODED,
        16 * 1024,
        64 * 1024,
        256 * 1024,
        1 << 20,
    ] {
        let body = rng.bytes(len);
        let mut bytes = vec![0u8];
        frame::cobs_encode(&body, &mut bytes);
        bytes.push(0);
        raw.write(&bytes).await;
        s.cases += 1;
    }
    let id = s.id();
    assert!(raw.healthy(id).await, "not serving after oversized frames");
    drop(raw);

    eprintln!("phase 4");
    // 4. Truncated frames: every sample frame cut at every length, then a delimiter.
    let mut raw = Raw::open(&s.charger.port).await;
    for f in sample_frames() {
        let full = wire(&f);
        let step = (full.len() / 40).max(1);
        for cut in (1..full.len() - 1).step_by(step) {
            let mut bytes = full[..cut].to_vec();
            bytes.push(0);
            raw.write(&bytes).await;
            s.cases += 1;
        }
    }
    let id = s.id();
    assert!(raw.healthy(id).await, "not serving after truncated frames");
    drop(raw);

    eprintln!("phase 5");
    // 5. Valid frames with garbage payloads. Requests are each answered (what does not decode
    // gets BAD_REQUEST naming the field and byte); requests on other channels get BAD_CHANNEL.
    let mut raw = Raw::open(&s.charger.port).await;
    let id = s.id();
    assert!(raw.healthy(id).await);
    let mut bad_request = 0;
    for _ in 0..150 {
        let len = rng.below(200) as usize;
        let mut body = rng.bytes(len);
        // A random reboot would be obeyed (it is a valid request); it is not what this tests.
        if body.first() == Some(&0x06) {
            body[0] = 0x66;
        }
        let id = s.id();
        let f = raw
            .ask(Frame::new(Kind::Req, channel::CONTROL, id, body))
            .await
            .expect("every request is answered");
        let (_, st, payload) = answer(&f);
        if st == status::BAD_REQUEST {
            let reason = Dec::new(&payload).str("reason").expect("reason");
            assert!(reason.starts_with("malformed "), "{reason}");
            assert!(reason.contains(" at byte "), "{reason}");
            bad_request += 1;
        }
        s.cases += 1;
    }
    assert!(
        bad_request > 100,
        "only {bad_request} garbage requests were refused"
    );
    for ch in (3..=255u8)
        .step_by(5)
        .chain([channel::LOG, channel::FIRMWARE])
    {
        let id = s.id();
        let f = raw
            .ask(Frame::new(Kind::Req, ch, id, Request::Identify.encode()))
            .await
            .expect("refused with an answer");
        let (_, st, payload) = answer(&f);
        assert_eq!(st, status::BAD_CHANNEL, "channel {ch}");
        let reason = Dec::new(&payload).str("reason").expect("reason");
        assert!(reason.contains(&format!("channel {ch}")), "{reason}");
        s.cases += 1;
    }
    // Garbage HELLO, DATA, ACK, NAK, EVT and RSP bodies, and undefined kinds.
    let mut bytes = Vec::new();
    for i in 0..120 {
        let len = rng.below(600) as usize;
        let kind = [
            Kind::Hello,
            Kind::Data,
            Kind::Ack,
            Kind::Nak,
            Kind::Evt,
            Kind::Rsp,
        ][i % 6];
        let ch = [channel::CONTROL, channel::LOG, channel::FIRMWARE, 200][i % 4];
        let mut f = Frame::new(kind, ch, rng.next() as u16, rng.bytes(len));
        if i % 3 == 0 {
            f = f.with_flags(flags::DEFLATE | flags::RESEND);
        }
        f.encode_into(&mut bytes);
        s.cases += 1;
    }
    for kind in 8..=40u8 {
        let mut rawf = vec![frame::PROTO_VERSION, kind, 0, 0, 1, 0];
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&rawf);
        rawf.extend_from_slice(&crc.to_le_bytes());
        bytes.push(0);
        frame::cobs_encode(&rawf, &mut bytes);
        bytes.push(0);
        s.cases += 1;
    }
    raw.write(&bytes).await;
    let id = s.id();
    assert!(raw.healthy(id).await, "not serving after garbage payloads");
    drop(raw);

    eprintln!("phase 6");
    // 6. No delimiter for megabytes: 1, 8 and 32 MiB, then a request.
    let (_, hwm_before) = s.charger.memory_kib();
    let mut raw = Raw::open(&s.charger.port).await;
    let mut sent = 0usize;
    for mib in [1usize, 8, 32] {
        let block = rng.nonzero(1 << 20);
        for _ in 0..mib {
            raw.write(&block).await;
        }
        sent += mib << 20;
        let id = s.id();
        assert!(
            raw.healthy(id).await,
            "not serving after {mib} MiB without a delimiter"
        );
        s.cases += 1;
    }
    drop(raw);
    let (_, hwm_after) = s.charger.memory_kib();
    let grew = hwm_after.saturating_sub(hwm_before);
    assert!(
        grew < 16 * 1024,
        "peak memory grew by {grew} KiB while {} MiB without a delimiter arrived",
        sent >> 20
    );

    eprintln!("phase 7");
    // 7. Rapid open and close: bare, with half a frame, and with a flood of requests whose
    // answers nobody reads.
    for i in 0..150 {
        let mut raw = Raw::open(&s.charger.port).await;
        match i % 3 {
            0 => {}
            1 => {
                let w = wire(&req(7, &Request::Identify));
                raw.write(&w[..w.len() / 2]).await;
            }
            _ => {
                let mut bytes = Vec::new();
                for k in 0..200u16 {
                    req(k, &Request::Ping).encode_into(&mut bytes);
                }
                raw.write(&bytes).await;
            }
        }
        drop(raw);
        s.cases += 1;
    }
    s.still_serving("rapid open and close").await;

    eprintln!("phase 8");
    // 8. A tool that floods requests and never reads the answers: the charger drops output
    // nobody takes and keeps reading.
    let mut raw = Raw::open(&s.charger.port).await;
    let mut bytes = Vec::new();
    for k in 0..5000u16 {
        req(k, &Request::Ping).encode_into(&mut bytes);
    }
    raw.write(&bytes).await;
    s.cases += 1;
    let id = s.id();
    assert!(
        raw.healthy(id).await,
        "not serving after a flood nobody read"
    );
    drop(raw);

    // Bounded memory over the whole run, and the real CLI still works.
    let (rss_end, hwm_end) = s.charger.memory_kib();
    assert!(
        rss_end < rss_start + 64 * 1024,
        "resident memory went from {rss_start} to {rss_end} KiB (peak {hwm_end})"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chargectl"))
        .args(["info", "--port", s.charger.port.to_str().unwrap(), "--json"])
        .env("CHARGECTL_DATA_DIR", dir.path().join("data"))
        .env("CHARGECTL_CONFIG_DIR", dir.path().join("config"))
        .env_remove("CHARGECTL_PORT")
        .output()
        .await
        .expect("chargectl info runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["identity"]["vendor"], "Zaptec");
    eprintln!(
        "hostile tool: {} inputs; charger memory {rss_start} -> {rss_end} KiB (peak {hwm_end})",
        s.cases
    );
    assert!(s.cases >= 900, "{} cases", s.cases);
}

// ---------------------------------------------------------------------------------------------
// Part two: a hostile charger side.

/// A well-behaved charger for the middle to distort.
struct Plain {
    log_tx: broadcast::Sender<LogRecord>,
}

impl Backend for Plain {
    fn identity(&self) -> Identity {
        Identity {
            vendor: "Zaptec".into(),
            model: "Go".into(),
            serial_number: "ZAP000099".into(),
            firmware_version: "1.0.0".into(),
            active_slot: "A".into(),
            inactive_slot: "B".into(),
            inactive_version: None,
            uptime_secs: 5,
            boot_state: BootState::Normal,
        }
    }
    async fn config_get(&self, _keys: Vec<String>) -> ConfigRead {
        ConfigRead {
            entries: (0..60)
                .map(|i| ConfigEntry {
                    key: format!("Key{i:02}"),
                    value: Some(format!("value {i}")),
                    readonly: false,
                    write_only: false,
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
    async fn flash_begin(&self, _s: [u8; 32], _n: u64, _h: Vec<u8>) -> Result<u64, String> {
        Err("not in this test".into())
    }
    async fn flash_write(&self, _o: u64, _d: Vec<u8>) -> Result<u64, String> {
        Err("not in this test".into())
    }
    async fn flash_finish(&self) -> Result<String, String> {
        Err("not in this test".into())
    }
}

/// How the middle distorts what the charger sends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Pass,
    /// Nothing reaches the tool.
    Silent,
    /// Answers keep their id and status, with a random payload.
    GarbageBodies,
    /// Every frame fails its CRC.
    BadCrc,
    /// 256 KiB of random bytes (with zeros) before every frame.
    NoiseBetween,
    /// 100 KiB without a delimiter before every frame.
    Oversize,
    /// Answers carry ids never used.
    WrongIds,
    /// Answers carry an undefined status.
    BadStatus,
    /// Every frame is cut in half.
    Truncated,
    /// HELLO answers name this protocol.
    HelloProto(u8),
    /// HELLO answers carry a random body.
    HelloGarbage,
    /// Answers come as endless parts, each saying more follow.
    EndlessParts,
}

fn distort(f: Frame, mode: Mode, rng: &mut Rng) -> Vec<u8> {
    let mut f = f;
    match mode {
        Mode::Pass => wire(&f),
        Mode::Silent => Vec::new(),
        Mode::GarbageBodies if f.kind == Kind::Rsp => {
            // An overlong length first, so no garbage happens to decode.
            let len = rng.below(64) as usize;
            f.body.truncate(3);
            f.body.extend([0xFF, 0xFF, 0xFF]);
            f.body.extend(rng.bytes(len));
            wire(&f)
        }
        Mode::BadCrc => {
            let mut rawf = vec![frame::PROTO_VERSION, f.kind as u8, f.channel, f.flags];
            rawf.extend_from_slice(&f.id.to_le_bytes());
            rawf.extend_from_slice(&f.body);
            rawf.extend_from_slice(&[1, 2, 3, 4]);
            let mut bytes = vec![0u8];
            frame::cobs_encode(&rawf, &mut bytes);
            bytes.push(0);
            bytes
        }
        Mode::NoiseBetween => {
            let mut bytes = rng.bytes(256 * 1024);
            bytes.extend(wire(&f));
            bytes
        }
        Mode::Oversize => {
            let mut bytes = rng.nonzero(100 * 1024);
            bytes.extend(wire(&f));
            bytes
        }
        Mode::WrongIds if f.kind == Kind::Rsp => {
            f.id ^= 0x4000;
            wire(&f)
        }
        Mode::BadStatus if f.kind == Kind::Rsp && f.body.len() >= 3 => {
            f.body[2] = 9;
            wire(&f)
        }
        Mode::Truncated => {
            let w = wire(&f);
            let mut bytes = w[..w.len() / 2].to_vec();
            bytes.push(0);
            bytes
        }
        Mode::HelloProto(p) if f.kind == Kind::Hello => {
            if let Ok(mut h) = DeviceHello::decode(&f.body) {
                h.proto = p;
                f.body = h.encode();
            }
            wire(&f)
        }
        Mode::HelloGarbage if f.kind == Kind::Hello => {
            f.body = rng.bytes(5);
            wire(&f)
        }
        Mode::EndlessParts if f.kind == Kind::Rsp => {
            let mut bytes = Vec::new();
            for part in 0..5000u16 {
                let mut body = part.to_le_bytes().to_vec();
                body.push(status::OK);
                body.extend_from_slice(&[0u8; 16]);
                Frame::new(Kind::Rsp, channel::CONTROL, f.id, body)
                    .with_flags(flags::MORE)
                    .encode_into(&mut bytes);
            }
            bytes
        }
        _ => wire(&f),
    }
}

/// A charger behind a distorting middle, on a pseudo-terminal.
struct Hostile {
    _dir: tempfile::TempDir,
    _port: PtyPort,
    link: PathBuf,
    mode: watch::Sender<Mode>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn hostile() -> Hostile {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("charger");
    let (port, master) = pty::open(&link).unwrap();
    let (charger_end, middle_end): (DuplexStream, DuplexStream) = tokio::io::duplex(1 << 20);
    let (log_tx, _) = broadcast::channel(16);
    let server = tokio::spawn(async move {
        let _ = serve(
            charger_end,
            Arc::new(Plain { log_tx }),
            ServiceOptions::default(),
        )
        .await;
    });
    let (mode, mode_rx) = watch::channel(Mode::Pass);
    let (mut line_rd, mut line_wr) = tokio::io::split(master);
    let (mut mid_rd, mut mid_wr) = tokio::io::split(middle_end);
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut line_rd, &mut mid_wr).await;
    });
    let down = tokio::spawn(async move {
        let mut dec = Decoder::new();
        let mut rng = Rng(0xBAD_C0DE);
        let mut buf = vec![0u8; 16 * 1024];
        let mut out = Vec::new();
        loop {
            let n = match mid_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            dec.push(&buf[..n], &mut out);
            let mode = *mode_rx.borrow();
            let mut bytes = Vec::new();
            for d in out.drain(..) {
                if let Decoded::Frame(f) = d {
                    bytes.extend(distort(f, mode, &mut rng));
                }
            }
            if !bytes.is_empty() && line_wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    Hostile {
        _dir: dir,
        _port: port,
        link,
        mode,
        tasks: vec![server, up, down],
    }
}

fn quick() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_millis(500),
        retry: Duration::from_millis(50),
        hello_attempts: 2,
        hello_timeout: Duration::from_millis(100),
        ..ClientOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_charger_gets_a_clear_error_and_the_tool_recovers() {
    let h = hostile();
    let path = h.link.to_str().unwrap().to_string();
    let mut cases = 0;

    // At the handshake: silence, a protocol nobody speaks, a garbage HELLO.
    h.mode.send_replace(Mode::Silent);
    let err = Client::connect(&path, 115_200, quick())
        .await
        .expect_err("silent");
    assert!(matches!(err, Error::NoAnswer { .. }), "{err}");
    assert!(err.to_string().contains("does not answer"), "{err}");
    cases += 1;
    h.mode.send_replace(Mode::HelloProto(9));
    let err = Client::connect(&path, 115_200, quick())
        .await
        .expect_err("proto 9");
    assert_eq!(
        err.to_string(),
        format!("the charger on {path} speaks service protocol 9 but this tool speaks 1..=2")
    );
    cases += 1;
    h.mode.send_replace(Mode::HelloGarbage);
    let err = Client::connect(&path, 115_200, quick())
        .await
        .expect_err("garbage hello");
    assert!(err.to_string().starts_with("malformed "), "{err}");
    assert!(err.to_string().contains(" at byte "), "{err}");
    cases += 1;

    h.mode.send_replace(Mode::Pass);
    let c = Client::connect(&path, 115_200, quick())
        .await
        .expect("connect");
    assert_eq!(c.identify().await.expect("identify").vendor, "Zaptec");

    // Each misbehaviour: the error it must give (None: the request still succeeds).
    let script: Vec<(Mode, Option<&str>)> = vec![
        (Mode::GarbageBodies, Some("malformed ")),
        (Mode::BadCrc, Some("no answer to the charger within")),
        (Mode::NoiseBetween, None),
        (Mode::Oversize, None),
        (Mode::WrongIds, Some("no answer to the charger within")),
        (
            Mode::BadStatus,
            Some("unexpected answer to request: status 9"),
        ),
        (Mode::Truncated, Some("no answer to the charger within")),
        (Mode::Silent, Some("no answer to the charger within")),
        (
            Mode::EndlessParts,
            Some("unexpected answer to request: more than"),
        ),
    ];
    for (mode, want) in script {
        h.mode.send_replace(mode);
        for attempt in 0..3 {
            let got = if attempt == 1 {
                c.config_get(vec![])
                    .await
                    .map(|r| r.entries.len().to_string())
            } else {
                c.identify().await.map(|i| i.vendor)
            };
            match (want, got) {
                (None, Ok(_)) => {}
                (Some(text), Err(e)) => {
                    assert!(e.to_string().contains(text), "{mode:?}: {e}");
                }
                (want, got) => panic!("{mode:?}: expected {want:?}, got {got:?}"),
            }
            cases += 1;
        }
        // Back to a charger that behaves: the same client works again.
        h.mode.send_replace(Mode::Pass);
        let id = c
            .identify()
            .await
            .unwrap_or_else(|e| panic!("after {mode:?}: {e}"));
        assert_eq!(id.serial_number, "ZAP000099");
        let all = c.config_get(vec![]).await.expect("every key");
        assert_eq!(all.entries.len(), 60);
    }
    let stats = c.stats().await.expect("stats");
    assert!(stats.crc_errors > 0, "{stats:?}");
    assert!(stats.oversize > 0, "{stats:?}");
    assert!(stats.garbage_bytes > 256 * 1024, "{stats:?}");
    eprintln!("hostile charger: {cases} cases, decoder {stats:?}");
    assert!(cases >= 30);
}

/// The decoders of untrusted bytes are callable on any byte slice (fuzzing entry points) and
/// never panic.
#[test]
fn decoders_take_any_bytes() {
    let mut rng = Rng(0xF022);
    for i in 0..20_000 {
        let len = rng.below(if i % 100 == 0 { 9000 } else { 300 }) as usize;
        let data = rng.bytes(len);
        let _ = chargectl::link::fuzz::frame_stream(&data);
        let _ = chargectl::link::fuzz::frame_block(&data);
        let _ = chargectl::link::fuzz::request(&data);
        chargectl::link::fuzz::charger_bodies(&data);
        chargectl::link::fuzz::tool_bodies(&data);
    }
    // A valid frame goes through the block decoder.
    let f = req(3, &Request::Ping);
    let w = wire(&f);
    assert_eq!(
        chargectl::link::fuzz::frame_block(&w[1..w.len() - 1]).expect("frame"),
        f
    );
    let _ = Enc::new();
}
