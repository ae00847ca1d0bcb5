//! The tool side of the service link: an actor owns the port and serves a cloneable
//! [`Client`] handle. Requests are matched by id and retransmitted on silence; log records,
//! console text and connection changes flow as events; a lost port is reopened, by path or by
//! the charger's serial number when it re-enumerates elsewhere.

use super::codec::{
    self, ConfigRead, Dec, DeviceHello, FlashStart, HostHello, Identity, Request, SetOutcome, evt,
    nak, status,
};
use super::error::{Error, Result};
use super::frame::{self, Decoded, Decoder, Frame, Kind, Stats, channel, flags};
use super::ports::{self, PortLister, SystemPorts};
use super::transport::{self, BoxIo};
use crate::stack::logbook::{Level, LogRecord};
use futures_util::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};

/// Tool-side tuning.
#[derive(Clone)]
pub struct ClientOptions {
    /// Longest wait for one answer, retransmissions included.
    pub timeout: Duration,
    /// Silence after which a request is sent again (doubles each time, up to 2 s).
    pub retry: Duration,
    /// HELLO attempts before "does not answer".
    pub hello_attempts: u32,
    /// Wait for the first HELLO answer (grows with each attempt).
    pub hello_timeout: Duration,
    /// How long to look for the charger again after the port went away.
    pub reconnect_timeout: Duration,
    /// Where to look for the charger when its port path disappears.
    pub lister: Arc<dyn PortLister>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(5),
            retry: Duration::from_millis(300),
            hello_attempts: 7,
            hello_timeout: Duration::from_millis(200),
            reconnect_timeout: Duration::from_secs(15),
            lister: Arc::new(SystemPorts),
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("hello_attempts", &self.hello_attempts)
            .field("reconnect_timeout", &self.reconnect_timeout)
            .finish()
    }
}

/// Something that happened on the link, for a console pane or a status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Printable bytes that were not frames (boot banner, console output).
    Console(String),
    Disconnected {
        reason: String,
    },
    Reconnected {
        port: String,
    },
}

/// One item of a log stream.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    Record(LogRecord),
    /// This many lines were lost (on the charger or on the line) before the next record.
    Dropped(u64),
}

enum LogItem {
    Record(u32, LogRecord),
    Dropped(u32, u64),
    Reset,
}

/// Records of a log subscription, with losses reported as [`LogEvent::Dropped`].
pub struct LogStream {
    rx: mpsc::Receiver<LogItem>,
    follow: bool,
    history_last: u32,
    expected: u32,
    stash: Option<LogRecord>,
}

impl LogStream {
    /// The next record or loss marker; `None` at the end of the history (without follow) or
    /// when the link closed.
    pub async fn next(&mut self) -> Option<LogEvent> {
        if let Some(r) = self.stash.take() {
            return Some(LogEvent::Record(r));
        }
        loop {
            let item = if self.follow {
                self.rx.recv().await
            } else {
                self.rx.try_recv().ok()
            };
            match item {
                None => {
                    let missing = self
                        .history_last
                        .wrapping_add(1)
                        .wrapping_sub(self.expected);
                    if !self.follow && missing > 0 && missing < u32::MAX / 2 {
                        self.expected = self.history_last.wrapping_add(1);
                        return Some(LogEvent::Dropped(missing as u64));
                    }
                    return None;
                }
                Some(LogItem::Reset) => self.expected = 1,
                Some(LogItem::Record(seq, rec)) => {
                    let gap = seq.wrapping_sub(self.expected);
                    self.expected = seq.wrapping_add(1);
                    if gap > 0 && gap < u32::MAX / 2 {
                        self.stash = Some(rec);
                        return Some(LogEvent::Dropped(gap as u64));
                    }
                    return Some(LogEvent::Record(rec));
                }
                Some(LogItem::Dropped(seq, n)) => {
                    let gap = seq.wrapping_sub(self.expected);
                    self.expected = seq.wrapping_add(1);
                    let gap = if gap < u32::MAX / 2 { gap as u64 } else { 0 };
                    return Some(LogEvent::Dropped(gap + n));
                }
            }
        }
    }
}

/// Flash tuning.
#[derive(Debug, Clone)]
pub struct FlashOptions {
    /// Compress chunks with deflate when it makes them smaller.
    pub compress: bool,
    /// Chunk size to start with (bytes); it adapts to the error rate.
    pub initial_chunk: u32,
    pub min_chunk: u32,
    /// Chunks in flight at most (also bounded by the charger's window).
    pub window_chunks: u32,
    /// Give up when no byte was acknowledged for this long (reconnects included).
    pub stall_timeout: Duration,
}

impl Default for FlashOptions {
    fn default() -> Self {
        FlashOptions {
            compress: true,
            initial_chunk: 1024,
            min_chunk: 128,
            window_chunks: 8,
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// Stage of a flash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlashPhase {
    #[default]
    Starting,
    Sending,
    Verifying,
    Done,
}

/// Progress of a flash, published on a `watch` channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FlashProgress {
    pub phase: FlashPhase,
    /// Image bytes the charger has acknowledged (uncompressed).
    pub done: u64,
    pub total: u64,
    /// Where this flash resumed (0 for a fresh transfer).
    pub resumed_from: u64,
    /// Image bytes per second since the transfer started.
    pub rate: f64,
    pub eta_secs: Option<f64>,
    /// Current chunk size.
    pub chunk: u32,
    pub retransmits: u64,
}

/// What a finished flash did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlashReport {
    /// Version the charger reported after verifying the staged image.
    pub version: String,
    pub total: u64,
    pub resumed_from: u64,
    /// Bytes of DATA frames written to the line (compressed, retransmissions included).
    pub wire_bytes: u64,
    pub retransmits: u64,
    pub elapsed_secs: f64,
}

// ---------------------------------------------------------------------------------------------

/// Response parts in order: (status, payload).
type Parts = Vec<(u8, Vec<u8>)>;

enum Cmd {
    Request {
        body: Vec<u8>,
        timeout: Duration,
        reply: oneshot::Sender<Result<Parts>>,
    },
    Send(Vec<u8>),
    Transfer {
        id: u16,
        tx: Option<mpsc::UnboundedSender<Frame>>,
    },
    Logs {
        tx: mpsc::Sender<LogItem>,
        resubscribe: Vec<u8>,
    },
    Reconnect {
        reply: oneshot::Sender<Result<DeviceHello>>,
    },
    Stats {
        reply: oneshot::Sender<Stats>,
    },
}

/// Handle to the link actor. Cheap to clone; the actor stops when the last handle is dropped.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::Sender<Cmd>,
    hello: Arc<Mutex<DeviceHello>>,
    events: broadcast::Sender<LinkEvent>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("hello", &self.hello())
            .finish()
    }
}

enum Incoming {
    Frame(Frame),
    Text(String),
    Closed(String),
}

struct Conn {
    incoming: mpsc::Receiver<Incoming>,
    out: mpsc::Sender<Vec<u8>>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn start_conn(io: BoxIo, stats: Arc<Mutex<Stats>>) -> Conn {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (in_tx, in_rx) = mpsc::channel(4096);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(256);
    let in_tx2 = in_tx.clone();
    let reader = tokio::spawn(async move {
        let mut dec = Decoder::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut out = Vec::new();
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => {
                    let _ = in_tx.send(Incoming::Closed("end of file".into())).await;
                    return;
                }
                Ok(n) => {
                    dec.push(&buf[..n], &mut out);
                    if let Ok(mut s) = stats.lock() {
                        *s = dec.stats();
                    }
                    for d in out.drain(..) {
                        let item = match d {
                            Decoded::Frame(f) => Incoming::Frame(f),
                            Decoded::Text(t) => Incoming::Text(t),
                        };
                        if in_tx.send(item).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = in_tx.send(Incoming::Closed(e.to_string())).await;
                    return;
                }
            }
        }
    });
    let writer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(64 * 1024);
        while let Some(first) = out_rx.recv().await {
            batch.extend_from_slice(&first);
            while batch.len() < 64 * 1024 {
                match out_rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            let res = match wr.write_all(&batch).await {
                Ok(()) => wr.flush().await,
                Err(e) => Err(e),
            };
            batch.clear();
            if let Err(e) = res {
                let _ = in_tx2.send(Incoming::Closed(e.to_string())).await;
                return;
            }
        }
    });
    Conn {
        incoming: in_rx,
        out: out_tx,
        tasks: [reader, writer],
    }
}

struct Pending {
    frame: Vec<u8>,
    parts: BTreeMap<u16, (u8, Vec<u8>)>,
    last: Option<u16>,
    interval: Duration,
    retry_at: Instant,
    deadline: Instant,
    timeout: Duration,
    reply: Option<oneshot::Sender<Result<Parts>>>,
}

struct Actor {
    port: String,
    baud: u32,
    opts: ClientOptions,
    session: u64,
    conn: Option<Conn>,
    serial: String,
    next_id: u16,
    pending: HashMap<u16, Pending>,
    transfers: HashMap<u16, mpsc::UnboundedSender<Frame>>,
    logs: Option<(mpsc::Sender<LogItem>, Vec<u8>)>,
    events: broadcast::Sender<LinkEvent>,
    hello: Arc<Mutex<DeviceHello>>,
    stats: Arc<Mutex<Stats>>,
}

fn hello_frame(session: u64, id: u16) -> Vec<u8> {
    let body = HostHello {
        proto_min: frame::PROTO_VERSION,
        proto_max: frame::PROTO_VERSION,
        session,
    }
    .encode();
    let mut out = vec![0u8, 0u8];
    Frame::new(Kind::Hello, channel::CONTROL, id, body).encode_into(&mut out);
    out
}

/// Opens `port` and says HELLO until the charger answers.
async fn handshake(
    port: &str,
    baud: u32,
    session: u64,
    opts: &ClientOptions,
    attempts: u32,
    stats: &Arc<Mutex<Stats>>,
    events: &broadcast::Sender<LinkEvent>,
) -> Result<(Conn, DeviceHello)> {
    let io = transport::open(port, baud).await?;
    let mut conn = start_conn(io, stats.clone());
    for attempt in 1..=attempts.max(1) {
        let id = 0xFF00 | attempt as u16;
        conn.out
            .send(hello_frame(session, id))
            .await
            .map_err(|_| Error::Disconnected {
                port: port.to_string(),
                reason: "writer stopped".into(),
            })?;
        let wait = opts.hello_timeout * attempt;
        let until = Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(until, conn.incoming.recv()).await {
                Err(_) => break,
                Ok(None) | Ok(Some(Incoming::Closed(_))) => {
                    return Err(Error::Disconnected {
                        port: port.to_string(),
                        reason: "the port closed during HELLO".into(),
                    });
                }
                Ok(Some(Incoming::Text(t))) => {
                    let _ = events.send(LinkEvent::Console(t));
                }
                Ok(Some(Incoming::Frame(f))) if f.kind == Kind::Hello => {
                    let hello = DeviceHello::decode(&f.body)?;
                    if hello.proto != frame::PROTO_VERSION {
                        return Err(Error::Incompatible {
                            port: port.to_string(),
                            device: hello.proto,
                            min: frame::PROTO_VERSION,
                            max: frame::PROTO_VERSION,
                        });
                    }
                    return Ok((conn, hello));
                }
                Ok(Some(Incoming::Frame(_))) => {}
            }
        }
    }
    Err(Error::NoAnswer {
        port: port.to_string(),
        attempts: attempts.max(1),
    })
}

impl Client {
    /// Opens `port` (device path or `tcp://HOST:PORT`) and greets the charger.
    pub async fn connect(port: &str, baud: u32, opts: ClientOptions) -> Result<Client> {
        let session = rand::random::<u64>() | 1;
        let stats = Arc::new(Mutex::new(Stats::default()));
        let (events, _) = broadcast::channel(256);
        let (conn, hello) = handshake(
            port,
            baud,
            session,
            &opts,
            opts.hello_attempts,
            &stats,
            &events,
        )
        .await?;
        tracing::debug!(target: "link", port, serial = %hello.serial_number, "connected");
        let hello = Arc::new(Mutex::new(hello));
        let (tx, rx) = mpsc::channel(256);
        let serial = hello
            .lock()
            .map(|h| h.serial_number.clone())
            .unwrap_or_default();
        let actor = Actor {
            port: port.to_string(),
            baud,
            session,
            conn: Some(conn),
            serial,
            next_id: rand::random::<u16>() & 0x7FFF,
            pending: HashMap::new(),
            transfers: HashMap::new(),
            logs: None,
            events: events.clone(),
            hello: hello.clone(),
            stats,
            opts: opts.clone(),
        };
        tokio::spawn(actor.run(rx));
        Ok(Client {
            tx,
            hello,
            events,
            timeout: opts.timeout,
        })
    }

    /// What the charger said in its last HELLO.
    pub fn hello(&self) -> DeviceHello {
        self.hello
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Console text and connection changes.
    pub fn events(&self) -> broadcast::Receiver<LinkEvent> {
        self.events.subscribe()
    }

    /// Frame counters of the current connection.
    pub async fn stats(&self) -> Result<Stats> {
        let (reply, rx) = oneshot::channel();
        self.cmd(Cmd::Stats { reply }).await?;
        rx.await.map_err(|_| Error::Closed)
    }

    async fn cmd(&self, c: Cmd) -> Result<()> {
        self.tx.send(c).await.map_err(|_| Error::Closed)
    }

    async fn request_with(&self, req: &Request, timeout: Duration) -> Result<Vec<(u8, Vec<u8>)>> {
        let (reply, rx) = oneshot::channel();
        self.cmd(Cmd::Request {
            body: req.encode(),
            timeout,
            reply,
        })
        .await?;
        let parts = rx.await.map_err(|_| Error::Closed)??;
        match parts.first() {
            Some((status::OK, _)) => Ok(parts),
            Some((status::REFUSED, p)) => Err(Error::Refused {
                reason: Dec::new(p).str("reason").unwrap_or_default(),
            }),
            Some((other, p)) => Err(Error::Protocol {
                what: "request",
                detail: format!(
                    "status {other}: {}",
                    Dec::new(p).str("reason").unwrap_or_default()
                ),
            }),
            None => Err(Error::Protocol {
                what: "request",
                detail: "empty answer".into(),
            }),
        }
    }

    async fn request(&self, req: &Request) -> Result<Vec<(u8, Vec<u8>)>> {
        self.request_with(req, self.timeout).await
    }

    /// Identity, firmware, slots and uptime.
    pub async fn identify(&self) -> Result<Identity> {
        let parts = self.request(&Request::Identify).await?;
        Identity::decode(&mut Dec::new(&parts[0].1))
    }

    /// Every key (empty `keys`) or the named ones, in one round trip.
    pub async fn config_get(&self, keys: Vec<String>) -> Result<ConfigRead> {
        let parts = self.request(&Request::ConfigGet { keys }).await?;
        let mut read = ConfigRead::default();
        for (_, p) in &parts {
            read.decode_part(p)?;
        }
        Ok(read)
    }

    /// Writes keys (pipelined; each applied exactly once) and returns each outcome in order.
    pub async fn config_set(
        &self,
        pairs: Vec<(String, String)>,
    ) -> Result<Vec<(String, SetOutcome)>> {
        let mut seen = std::collections::HashSet::new();
        for (k, _) in &pairs {
            if !seen.insert(k.as_str()) {
                return Err(Error::InvalidInput(format!("key {k} is given twice")));
            }
        }
        let results: Vec<Result<(String, SetOutcome)>> = futures_util::stream::iter(pairs)
            .map(|(key, value)| async move {
                let parts = self
                    .request(&Request::ConfigSet {
                        key: key.clone(),
                        value,
                    })
                    .await?;
                let outcome = SetOutcome::decode(&mut Dec::new(&parts[0].1))?;
                Ok((key, outcome))
            })
            .buffered(8)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Log records at `min_level` or above: the history since boot, then (with `follow`) new
    /// ones as they come, across reconnects.
    pub async fn logs(&self, min_level: Level, follow: bool) -> Result<LogStream> {
        let (tx, rx) = mpsc::channel(8192);
        let resubscribe = Request::LogSubscribe {
            min_level: min_level.as_u8(),
            history: false,
            follow: true,
        }
        .encode();
        self.cmd(Cmd::Logs { tx, resubscribe }).await?;
        let parts = self
            .request(&Request::LogSubscribe {
                min_level: min_level.as_u8(),
                history: true,
                follow,
            })
            .await?;
        let history_last = Dec::new(&parts[0].1).u32("history count")?;
        Ok(LogStream {
            rx,
            follow,
            history_last,
            expected: 1,
            stash: None,
        })
    }

    /// Asks the charger to reboot (it answers before going down).
    pub async fn reboot(&self) -> Result<()> {
        self.request(&Request::Reboot).await.map(|_| ())
    }

    /// Closes the port and greets the charger again (after a reboot), by path or, when the
    /// path is gone, by serial number among the listed ports.
    pub async fn reconnect(&self) -> Result<DeviceHello> {
        let (reply, rx) = oneshot::channel();
        self.cmd(Cmd::Reconnect { reply }).await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Streams `image` into the charger's inactive slot and has the charger verify it.
    /// `header` goes with the start request so the charger can refuse early. Resumes where an
    /// interrupted flash of the same image stopped. Does not reboot.
    pub async fn flash(
        &self,
        image: &[u8],
        header: &[u8],
        opts: &FlashOptions,
        progress: &watch::Sender<FlashProgress>,
    ) -> Result<FlashReport> {
        let sha: [u8; 32] = Sha256::digest(image).into();
        let size = image.len() as u64;
        let started = Instant::now();
        let mut wire_bytes = 0u64;
        let mut retransmits = 0u64;
        let mut resumed_from = None;
        let mut restarts = 0;
        let transfer = loop {
            let parts = match self
                .request(&Request::FlashBegin {
                    sha256: sha,
                    size,
                    header: header.to_vec(),
                })
                .await
            {
                Ok(p) => p,
                Err(Error::Refused { reason }) => return Err(Error::FlashRejected { reason }),
                Err(e) => return Err(e),
            };
            let mut d = Dec::new(&parts[0].1);
            let start = FlashStart {
                transfer: d.u16("transfer id")?,
                resume_offset: d.u64("resume offset")?,
                window: d.u32("window")?,
                max_chunk: d.u32("max chunk")?,
            };
            let from = *resumed_from.get_or_insert(start.resume_offset);
            let (tx, mut rx) = mpsc::unbounded_channel();
            self.cmd(Cmd::Transfer {
                id: start.transfer,
                tx: Some(tx),
            })
            .await?;
            let mut w = Window::new(image, &start, opts, from, started);
            let outcome = w.run(self, &mut rx, progress).await;
            wire_bytes += w.wire_bytes;
            retransmits += w.retransmits;
            let _ = self
                .cmd(Cmd::Transfer {
                    id: start.transfer,
                    tx: None,
                })
                .await;
            match outcome? {
                WindowEnd::Done => break start.transfer,
                WindowEnd::Restart if restarts < 5 => restarts += 1,
                WindowEnd::Restart => {
                    return Err(Error::Protocol {
                        what: "firmware transfer",
                        detail: "the charger kept forgetting the transfer".into(),
                    });
                }
            }
        };
        progress.send_modify(|p| p.phase = FlashPhase::Verifying);
        // Verification reads the whole slot: allow time in proportion to the size.
        let verify_timeout = self.timeout + Duration::from_secs(10 + size / (1 << 20) * 8);
        let version = match self
            .request_with(&Request::FlashFinish { transfer }, verify_timeout)
            .await
        {
            Ok(parts) => Dec::new(&parts[0].1).str("version")?,
            Err(Error::Refused { reason }) => return Err(Error::FlashRejected { reason }),
            Err(e) => return Err(e),
        };
        progress.send_modify(|p| {
            p.phase = FlashPhase::Done;
            p.done = size;
            p.eta_secs = Some(0.0);
        });
        Ok(FlashReport {
            version,
            total: size,
            resumed_from: resumed_from.unwrap_or(0),
            wire_bytes,
            retransmits,
            elapsed_secs: started.elapsed().as_secs_f64(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Sliding window sender.

enum WindowEnd {
    Done,
    Restart,
}

struct InFlight {
    end: u64,
    wire: u64,
    sent_at: Instant,
    first_send: bool,
}

struct Window<'a> {
    image: &'a [u8],
    tid: u16,
    size: u64,
    max_chunk: u32,
    min_chunk: u32,
    window: u64,
    window_chunks: u64,
    chunk: u32,
    acked: u64,
    next: u64,
    high_water: u64,
    inflight: VecDeque<InFlight>,
    inflight_wire: u64,
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    backoff: u32,
    clean: u32,
    last_rewind: Option<(u64, Instant)>,
    timer_base: Instant,
    last_progress: Instant,
    stall: Duration,
    compress: bool,
    compress_misses: u32,
    compress_mult: u64,
    resumed_from: u64,
    started: Instant,
    wire_bytes: u64,
    retransmits: u64,
}

impl<'a> Window<'a> {
    fn new(
        image: &'a [u8],
        start: &FlashStart,
        opts: &FlashOptions,
        resumed_from: u64,
        started: Instant,
    ) -> Self {
        let max_chunk = start.max_chunk.clamp(16, frame::MAX_CHUNK as u32);
        let min_chunk = opts.min_chunk.clamp(16, max_chunk);
        let now = Instant::now();
        Window {
            image,
            tid: start.transfer,
            size: image.len() as u64,
            max_chunk,
            min_chunk,
            window: start.window.max(max_chunk) as u64,
            window_chunks: opts.window_chunks.max(1) as u64,
            chunk: opts.initial_chunk.clamp(min_chunk, max_chunk),
            acked: start.resume_offset.min(image.len() as u64),
            next: start.resume_offset.min(image.len() as u64),
            high_water: start.resume_offset,
            inflight: VecDeque::new(),
            inflight_wire: 0,
            srtt: None,
            rttvar: Duration::ZERO,
            rto: Duration::from_secs(1),
            backoff: 1,
            clean: 0,
            last_rewind: None,
            timer_base: now,
            last_progress: now,
            stall: opts.stall_timeout,
            compress: opts.compress,
            compress_misses: 0,
            compress_mult: 2,
            resumed_from,
            started,
            wire_bytes: 0,
            retransmits: 0,
        }
    }

    fn build(&mut self, out: &mut Vec<u8>) -> (u64, u64) {
        let off = self.next;
        let remaining = self.size - off;
        let chunk = self.chunk as u64;
        if self.compress {
            let raw_len = remaining
                .min(chunk * self.compress_mult)
                .min(super::service::MAX_INFLATED_CHUNK as u64);
            let raw = &self.image[off as usize..(off + raw_len) as usize];
            let mut enc =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            let packed = enc.write_all(raw).and_then(|_| enc.finish());
            if let Ok(c) = packed
                && (c.len() as u64) <= chunk
                && (c.len() as u64) * 100 < raw_len * 97
            {
                let ratio = raw_len / (c.len() as u64).max(1);
                self.compress_mult = if c.len() as u64 * 2 < chunk {
                    (self.compress_mult * 2).min(16)
                } else {
                    ratio.clamp(1, 16)
                };
                self.compress_misses = 0;
                let before = out.len();
                Frame::new(
                    Kind::Data,
                    channel::FIRMWARE,
                    self.tid,
                    codec::encode_data(off, raw_len as u32, &c),
                )
                .with_flags(flags::DEFLATE)
                .encode_into(out);
                return (raw_len, (out.len() - before) as u64);
            }
            self.compress_mult = (self.compress_mult / 2).max(1);
            self.compress_misses += 1;
            if self.compress_misses >= 8 {
                self.compress = false;
            }
        }
        let raw_len = remaining.min(chunk);
        let raw = &self.image[off as usize..(off + raw_len) as usize];
        let before = out.len();
        Frame::new(
            Kind::Data,
            channel::FIRMWARE,
            self.tid,
            codec::encode_data(off, raw_len as u32, raw),
        )
        .encode_into(out);
        (raw_len, (out.len() - before) as u64)
    }

    fn rewind(&mut self, to: u64, now: Instant) {
        self.retransmits += self.inflight.len() as u64;
        self.inflight.clear();
        self.inflight_wire = 0;
        self.next = to.max(self.acked);
        self.chunk = (self.chunk / 2).max(self.min_chunk);
        self.clean = 0;
        self.last_rewind = Some((to, now));
        self.timer_base = now;
    }

    fn on_ack(&mut self, n: u64, now: Instant) {
        if n <= self.acked || n > self.size {
            return;
        }
        if let Some(f) = self.inflight.iter().find(|f| f.end == n)
            && f.first_send
        {
            let sample = now - f.sent_at;
            match self.srtt {
                None => {
                    self.srtt = Some(sample);
                    self.rttvar = sample / 2;
                }
                Some(s) => {
                    let diff = s.abs_diff(sample);
                    self.rttvar = (self.rttvar * 3 + diff) / 4;
                    self.srtt = Some((s * 7 + sample) / 8);
                }
            }
            let s = self.srtt.unwrap_or(sample);
            // The floor only guards against timer granularity; a pseudo-terminal answers in
            // well under a millisecond and a real line's turnaround shows up in the samples.
            self.rto = (s + self.rttvar * 4 + Duration::from_millis(5))
                .clamp(Duration::from_millis(15), Duration::from_secs(5));
        }
        self.acked = n;
        self.backoff = 1;
        while self.inflight.front().is_some_and(|f| f.end <= n) {
            if let Some(f) = self.inflight.pop_front() {
                self.inflight_wire -= f.wire;
            }
        }
        if self.next < n {
            self.next = n;
        }
        self.timer_base = now;
        self.last_progress = now;
        self.clean += 1;
        if self.clean >= 32 {
            self.clean = 0;
            self.chunk = (self.chunk * 2).min(self.max_chunk);
        }
    }

    fn publish(&self, progress: &watch::Sender<FlashProgress>) {
        let secs = self.started.elapsed().as_secs_f64();
        let done_now = self.acked.saturating_sub(self.resumed_from);
        let rate = if secs > 0.0 {
            done_now as f64 / secs
        } else {
            0.0
        };
        let eta = (rate > 0.0).then(|| (self.size - self.acked) as f64 / rate);
        progress.send_replace(FlashProgress {
            phase: FlashPhase::Sending,
            done: self.acked,
            total: self.size,
            resumed_from: self.resumed_from,
            rate,
            eta_secs: eta,
            chunk: self.chunk,
            retransmits: self.retransmits,
        });
    }

    async fn run(
        &mut self,
        client: &Client,
        rx: &mut mpsc::UnboundedReceiver<Frame>,
        progress: &watch::Sender<FlashProgress>,
    ) -> Result<WindowEnd> {
        self.publish(progress);
        let mut batch = Vec::with_capacity(64 * 1024);
        while self.acked < self.size {
            let limit = (self.chunk as u64 * self.window_chunks).min(self.window);
            let now = Instant::now();
            if self.inflight.is_empty() {
                self.timer_base = now;
            }
            while self.next < self.size && self.inflight_wire < limit {
                let first_send = self.next >= self.high_water;
                let (raw, wire) = self.build(&mut batch);
                self.next += raw;
                self.high_water = self.high_water.max(self.next);
                if !first_send {
                    self.retransmits += 1;
                }
                self.inflight.push_back(InFlight {
                    end: self.next,
                    wire,
                    sent_at: now,
                    first_send,
                });
                self.inflight_wire += wire;
                self.wire_bytes += wire;
                if batch.len() >= 32 * 1024 {
                    client.cmd(Cmd::Send(std::mem::take(&mut batch))).await?;
                }
            }
            if !batch.is_empty() {
                client.cmd(Cmd::Send(std::mem::take(&mut batch))).await?;
            }
            let timer = self.timer_base + (self.rto * self.backoff).min(Duration::from_secs(3));
            tokio::select! {
                f = rx.recv() => {
                    let Some(f) = f else { return Err(Error::Closed) };
                    let now = Instant::now();
                    let mut d = Dec::new(&f.body);
                    let n = d.u64("acknowledged offset")?;
                    match f.kind {
                        Kind::Ack => self.on_ack(n, now),
                        Kind::Nak => {
                            let reason = d.u8("nak reason")?;
                            let detail = d.str("nak detail").unwrap_or_default();
                            match reason {
                                nak::UNKNOWN_TRANSFER => return Ok(WindowEnd::Restart),
                                nak::FATAL => return Err(Error::FlashRejected { reason: detail }),
                                _ => {
                                    self.on_ack(n, now);
                                    let fresh = match self.last_rewind {
                                        Some((at, t)) => at != n || now - t > self.srtt.unwrap_or(self.rto),
                                        None => true,
                                    };
                                    if fresh && n < self.next {
                                        self.rewind(n, now);
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
                _ = tokio::time::sleep_until(timer) => {
                    let now = Instant::now();
                    if !self.inflight.is_empty() {
                        self.backoff = (self.backoff * 2).min(64);
                        let to = self.acked;
                        self.rewind(to, now);
                    }
                    self.timer_base = now;
                }
            }
            if self.last_progress.elapsed() > self.stall {
                return Err(Error::Stalled {
                    offset: self.acked,
                    total: self.size,
                    secs: self.stall.as_secs_f64(),
                });
            }
            self.publish(progress);
        }
        Ok(WindowEnd::Done)
    }
}

// ---------------------------------------------------------------------------------------------
// The actor.

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        loop {
            let next_timer = self
                .pending
                .values()
                .map(|p| p.retry_at.min(p.deadline))
                .min();
            let incoming = async {
                match self.conn.as_mut() {
                    Some(c) => c.incoming.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(c) => self.command(c).await,
                },
                inc = incoming => match inc {
                    Some(Incoming::Frame(f)) => self.frame(f),
                    Some(Incoming::Text(t)) => { let _ = self.events.send(LinkEvent::Console(t)); }
                    Some(Incoming::Closed(reason)) => self.lost(reason).await,
                    None => self.lost("reader stopped".into()).await,
                },
                _ = sleep_opt(next_timer) => self.timers().await,
            }
        }
        if let Some(c) = &self.conn {
            // Best effort: stop a log subscription before going away.
            let mut out = Vec::new();
            Frame::new(
                Kind::Req,
                channel::CONTROL,
                self.next_id,
                Request::LogUnsubscribe.encode(),
            )
            .encode_into(&mut out);
            let _ = c.out.try_send(out);
        }
    }

    fn alloc_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.wrapping_add(1) & 0x7FFF;
            if !self.pending.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }

    async fn send(&mut self, bytes: Vec<u8>) {
        if let Some(c) = &self.conn {
            let _ = c.out.send(bytes).await;
        }
    }

    async fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Request {
                body,
                timeout,
                reply,
            } => {
                let id = self.alloc_id();
                let frame = Frame::new(Kind::Req, channel::CONTROL, id, body).encode();
                let now = Instant::now();
                self.pending.insert(
                    id,
                    Pending {
                        frame: frame.clone(),
                        parts: BTreeMap::new(),
                        last: None,
                        interval: self.opts.retry,
                        retry_at: now + self.opts.retry,
                        deadline: now + timeout,
                        timeout,
                        reply: Some(reply),
                    },
                );
                self.send(frame).await;
            }
            Cmd::Send(bytes) => self.send(bytes).await,
            Cmd::Transfer { id, tx } => match tx {
                Some(tx) => {
                    self.transfers.insert(id, tx);
                }
                None => {
                    self.transfers.remove(&id);
                }
            },
            Cmd::Logs { tx, resubscribe } => self.logs = Some((tx, resubscribe)),
            Cmd::Reconnect { reply } => {
                self.conn = None;
                let r = self.reconnect("reconnect requested").await;
                let _ = reply.send(r);
            }
            Cmd::Stats { reply } => {
                let s = self.stats.lock().map(|s| *s).unwrap_or_default();
                let _ = reply.send(s);
            }
        }
    }

    fn frame(&mut self, f: Frame) {
        match (f.kind, f.channel) {
            (Kind::Rsp, _) => self.response(f),
            (Kind::Evt, channel::LOG) => self.log_event(f),
            (Kind::Ack | Kind::Nak, _) => {
                if let Some(tx) = self.transfers.get(&f.id) {
                    let _ = tx.send(f);
                }
            }
            _ => {}
        }
    }

    fn response(&mut self, f: Frame) {
        let Some(p) = self.pending.get_mut(&f.id) else {
            return;
        };
        let mut d = Dec::new(&f.body);
        let (Ok(part), Ok(st)) = (d.u16("part"), d.u8("status")) else {
            return;
        };
        p.parts.insert(part, (st, d.rest().to_vec()));
        if f.flags & flags::MORE == 0 {
            p.last = Some(part);
        }
        let now = Instant::now();
        p.retry_at = now + p.interval;
        p.deadline = p.deadline.max(now + p.timeout / 2);
        if let Some(last) = p.last
            && p.parts.len() == last as usize + 1
            && let Some(mut p) = self.pending.remove(&f.id)
        {
            let parts = std::mem::take(&mut p.parts).into_values().collect();
            if let Some(reply) = p.reply.take() {
                let _ = reply.send(Ok(parts));
            }
        }
    }

    fn log_event(&mut self, f: Frame) {
        let Some((tx, _)) = &self.logs else { return };
        let mut d = Dec::new(&f.body);
        let item = (|| -> Result<LogItem> {
            match d.u8("event kind")? {
                evt::RECORD => {
                    let stream_seq = d.u32("stream sequence")?;
                    let seq = d.u64("log sequence")?;
                    let ms = d.i64("log time")?;
                    let at = d.position();
                    let level = Level::from_u8(d.u8("log level")?).ok_or(Error::Malformed {
                        what: "log level",
                        offset: at,
                    })?;
                    let target = d.str("log target")?;
                    let message = d.str("log message")?;
                    let time = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
                    Ok(LogItem::Record(
                        stream_seq,
                        LogRecord {
                            seq,
                            time,
                            level,
                            target,
                            message,
                        },
                    ))
                }
                evt::DROPPED => Ok(LogItem::Dropped(d.u32("stream sequence")?, d.u64("count")?)),
                _ => Err(Error::Malformed {
                    what: "event kind",
                    offset: 0,
                }),
            }
        })();
        match item {
            Ok(item) => match tx.try_send(item) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.logs = None;
                    let id = self.alloc_id();
                    let bytes = Frame::new(
                        Kind::Req,
                        channel::CONTROL,
                        id,
                        Request::LogUnsubscribe.encode(),
                    )
                    .encode();
                    if let Some(c) = &self.conn {
                        let _ = c.out.try_send(bytes);
                    }
                }
            },
            Err(e) => tracing::debug!(target: "link", error = %e, "bad log event"),
        }
    }

    async fn timers(&mut self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut resend = Vec::new();
        for (id, p) in self.pending.iter_mut() {
            if now >= p.deadline {
                expired.push(*id);
            } else if now >= p.retry_at {
                p.interval = (p.interval * 2).min(Duration::from_secs(2));
                p.retry_at = now + p.interval;
                resend.push(p.frame.clone());
            }
        }
        for id in expired {
            if let Some(mut p) = self.pending.remove(&id)
                && let Some(reply) = p.reply.take()
            {
                let _ = reply.send(Err(Error::Timeout {
                    what: "the charger".into(),
                    secs: p.timeout.as_secs_f64(),
                }));
            }
        }
        for f in resend {
            self.send(f).await;
        }
    }

    async fn lost(&mut self, reason: String) {
        tracing::debug!(target: "link", port = %self.port, %reason, "link lost");
        self.conn = None;
        let _ = self.events.send(LinkEvent::Disconnected {
            reason: reason.clone(),
        });
        if let Err(e) = self.reconnect(&reason).await {
            for (_, mut p) in self.pending.drain() {
                if let Some(reply) = p.reply.take() {
                    let _ = reply.send(Err(Error::Disconnected {
                        port: self.port.clone(),
                        reason: e.to_string(),
                    }));
                }
            }
            self.transfers.clear();
            self.logs = None;
        }
    }

    /// Finds the charger again: the same path first, then any listed port whose charger has
    /// the same serial number. Pending requests are sent again on success.
    async fn reconnect(&mut self, reason: &str) -> Result<DeviceHello> {
        let deadline = Instant::now() + self.opts.reconnect_timeout;
        let mut last_err = Error::Disconnected {
            port: self.port.clone(),
            reason: reason.to_string(),
        };
        loop {
            let mut tried = vec![self.port.clone()];
            let mut found = None;
            match self.try_port(&self.port.clone()).await {
                Ok(x) => found = Some((self.port.clone(), x)),
                Err(e) => last_err = e,
            }
            if found.is_none()
                && !self.port.starts_with("tcp://")
                && let Ok(list) = self.opts.lister.list()
            {
                for p in ports::candidates(&list) {
                    if tried.contains(&p.name) {
                        continue;
                    }
                    tried.push(p.name.clone());
                    if let Ok(x) = self.try_port(&p.name).await {
                        found = Some((p.name.clone(), x));
                        break;
                    }
                }
            }
            if let Some((port, (conn, hello))) = found {
                if port != self.port {
                    tracing::info!(target: "link", from = %self.port, to = %port, "charger re-enumerated");
                    self.port = port.clone();
                }
                self.conn = Some(conn);
                if let Ok(mut h) = self.hello.lock() {
                    *h = hello.clone();
                }
                let _ = self.events.send(LinkEvent::Reconnected { port });
                let frames: Vec<Vec<u8>> = self.pending.values().map(|p| p.frame.clone()).collect();
                for f in frames {
                    self.send(f).await;
                }
                if let Some((tx, body)) = &self.logs {
                    let _ = tx.try_send(LogItem::Reset);
                    let body = body.clone();
                    let id = self.alloc_id();
                    self.send(Frame::new(Kind::Req, channel::CONTROL, id, body).encode())
                        .await;
                }
                return Ok(hello);
            }
            if Instant::now() >= deadline {
                return Err(last_err);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn try_port(&self, port: &str) -> Result<(Conn, DeviceHello)> {
        let (conn, hello) = handshake(
            port,
            self.baud,
            self.session,
            &self.opts,
            3,
            &self.stats,
            &self.events,
        )
        .await?;
        if !self.serial.is_empty() && hello.serial_number != self.serial {
            return Err(Error::WrongCharger {
                port: port.to_string(),
                expected: self.serial.clone(),
                found: hello.serial_number,
            });
        }
        Ok((conn, hello))
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
