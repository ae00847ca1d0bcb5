//! The charger side of the service link: decodes frames from the line, answers requests through
//! a [`Backend`], streams log records, and receives firmware into the backend's inactive slot
//! (`firmware`).

mod firmware;

pub use firmware::MAX_INFLATED_CHUNK;

use super::codec::{
    self, ConfigRead, DeviceHello, Enc, HostHello, Identity, Request, Resend, SetOutcome, evt,
    status,
};
use super::error::{Error, Result};
use super::frame::{self, Decoded, Decoder, Frame, Kind, channel, flags};
use crate::stack::logbook::{Level, LogRecord};
use firmware::Transfer;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

/// What the charger exposes to the service port. The emulator adapts its configuration, log and
/// firmware slots to it; tests use an in-memory fake.
pub trait Backend: Send + Sync + 'static {
    fn identity(&self) -> Identity;
    /// Named keys, or every key when `keys` is empty. Write-only keys carry no value.
    fn config_get(&self, keys: Vec<String>) -> impl Future<Output = ConfigRead> + Send;
    /// Applies the same rules as OCPP ChangeConfiguration.
    fn config_set(&self, key: String, value: String) -> impl Future<Output = SetOutcome> + Send;
    /// History since boot plus a receiver for what follows, with no gap between them.
    fn log_subscribe(&self) -> (Vec<LogRecord>, broadcast::Receiver<LogRecord>);
    fn reboot(&self) -> impl Future<Output = ()> + Send;
    /// Starts (or resumes) staging an image into the inactive slot; returns the offset to
    /// continue from (0 for a new image, the persisted progress for the same SHA-256).
    fn flash_begin(
        &self,
        sha256: [u8; 32],
        size: u64,
        header: Vec<u8>,
    ) -> impl Future<Output = std::result::Result<u64, String>> + Send;
    /// Writes bytes at `offset` (always the next expected offset); returns the next offset.
    fn flash_write(
        &self,
        offset: u64,
        data: Vec<u8>,
    ) -> impl Future<Output = std::result::Result<u64, String>> + Send;
    /// Verifies the whole staged image (hash and signature) and marks the inactive slot
    /// bootable; returns the new version. The error text is shown to the user.
    fn flash_finish(&self) -> impl Future<Output = std::result::Result<String, String>> + Send;
}

/// Tuning of the charger side.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Largest firmware chunk accepted (bytes, at most [`frame::MAX_CHUNK`]).
    pub max_chunk: u32,
    /// Firmware bytes the tool may keep in flight (protocol 1), and how far beyond the next
    /// expected byte the charger holds chunks that arrive ahead of a gap (protocol 2).
    pub window: u32,
    /// Target size of one response part of a multi-part answer.
    pub part_budget: usize,
    /// Answers remembered for retransmitted requests.
    pub dedup_entries: usize,
    /// Newest service protocol offered in HELLO (at most [`codec::PROTO_MAX`]); 1 behaves as a
    /// charger from before selective repeat.
    pub proto_max: u8,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            max_chunk: frame::MAX_CHUNK as u32,
            window: 256 * 1024,
            part_budget: 480,
            dedup_entries: 32,
            proto_max: codec::PROTO_MAX,
        }
    }
}

enum Out {
    Bytes(Vec<u8>),
    Flush(oneshot::Sender<()>),
}

/// Encoded RSP frames of one answer, one per part.
type Answer = Vec<Vec<u8>>;

struct Session<B: Backend> {
    backend: Arc<B>,
    opts: ServiceOptions,
    out: mpsc::Sender<Out>,
    session: u64,
    /// Service protocol of this session (1 until a HELLO negotiates more).
    proto: u8,
    cache: HashMap<(u64, u16), Answer>,
    cache_order: VecDeque<(u64, u16)>,
    logs: Option<JoinHandle<()>>,
    transfer: Option<Transfer>,
    next_transfer: u16,
    /// Protocol 2: chunks stored since the last ACK, acknowledged together once everything
    /// read so far is handled.
    ack_due: Option<firmware::AckDue>,
    last_ack: firmware::LastAck,
}

impl<B: Backend> Drop for Session<B> {
    /// A connection dropped mid-way (its task aborted, as a simulated unplug does) lets go of
    /// the line: the log forwarder holds the writer's channel, and so the port, open.
    fn drop(&mut self) {
        if let Some(h) = self.logs.take() {
            h.abort();
        }
    }
}

/// Serves one connection until the line closes (EOF: `Ok`) or fails (`Err`).
pub async fn serve<B: Backend>(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    backend: Arc<B>,
    opts: ServiceOptions,
) -> Result<()> {
    let (mut rd, wr) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::channel::<Out>(256);
    let mut writer = tokio::spawn(write_loop(wr, out_rx));
    let mut s = Session {
        backend,
        opts,
        out: out_tx,
        session: 0,
        proto: codec::PROTO_MIN,
        cache: HashMap::new(),
        cache_order: VecDeque::new(),
        logs: None,
        transfer: None,
        next_transfer: rand::random::<u16>() | 1,
        ack_due: None,
        last_ack: firmware::LastAck::default(),
    };
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut decoded = Vec::new();
    let result = loop {
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    decoder.push(&buf[..n], &mut decoded);
                    for d in decoded.drain(..) {
                        match d {
                            Decoded::Frame(f) => s.handle(f).await,
                            Decoded::Text(t) => tracing::debug!(target: "link", text = %t, "non-frame bytes on the service port"),
                        }
                    }
                    s.send_due_ack().await;
                }
                Err(e) => break Err(Error::io("reading the service port", e)),
            },
            w = &mut writer => {
                break match w {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(Error::io("service port writer", std::io::Error::other(e.to_string()))),
                };
            }
        }
    };
    if let Some(h) = s.logs.take() {
        h.abort();
    }
    writer.abort();
    let stats = decoder.stats();
    tracing::debug!(target: "link", ?stats, "service connection ended");
    result
}

/// Output coalesced into one write at most.
const WRITE_BATCH: usize = 64 * 1024;
/// A line that takes no byte for this long has nobody listening: what is queued is dropped,
/// as a UART with nothing attached sends into the void, so the charger never stops serving
/// because a tool stopped reading. Until the line takes bytes again, output that cannot be
/// written at once is dropped at once.
const WRITE_STALL: std::time::Duration = std::time::Duration::from_secs(2);
const WRITE_WHILE_STALLED: std::time::Duration = std::time::Duration::from_millis(1);

fn patience(stalled: bool) -> std::time::Duration {
    if stalled {
        WRITE_WHILE_STALLED
    } else {
        WRITE_STALL
    }
}

async fn write_loop(mut wr: impl AsyncWrite + Unpin, mut rx: mpsc::Receiver<Out>) -> Result<()> {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut dropped = 0u64;
    let mut stalled = false;
    while let Some(first) = rx.recv().await {
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Out::Bytes(b) => batch.extend_from_slice(&b),
                Out::Flush(tx) => flushes.push(tx),
            }
            if batch.len() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let mut rest = &batch[..];
        while !rest.is_empty() {
            match tokio::time::timeout(patience(stalled), wr.write(rest)).await {
                Ok(Ok(0)) => {
                    return Err(Error::io(
                        "writing the service port",
                        std::io::ErrorKind::WriteZero.into(),
                    ));
                }
                Ok(Ok(n)) => {
                    rest = &rest[n..];
                    stalled = false;
                }
                Ok(Err(e)) => return Err(Error::io("writing the service port", e)),
                Err(_) => {
                    stalled = true;
                    dropped += rest.len() as u64;
                    tracing::debug!(target: "link", dropped, "nobody reads the service port: output dropped");
                    rest = &[];
                }
            }
        }
        if !batch.is_empty() {
            if let Ok(Err(e)) = tokio::time::timeout(patience(stalled), wr.flush()).await {
                return Err(Error::io("writing the service port", e));
            }
            batch.clear();
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
    Ok(())
}

/// The RSP frames of an answer, one per part.
fn rsp_frames(id: u16, parts: &[(u8, Vec<u8>)]) -> Answer {
    parts
        .iter()
        .enumerate()
        .map(|(i, (st, payload))| {
            let mut body = Vec::with_capacity(payload.len() + 3);
            body.extend_from_slice(&(i as u16).to_le_bytes());
            body.push(*st);
            body.extend_from_slice(payload);
            let mut f = Frame::new(Kind::Rsp, channel::CONTROL, id, body);
            if i + 1 < parts.len() {
                f = f.with_flags(flags::MORE);
            }
            f.encode()
        })
        .collect()
}

fn text(s: &str) -> Vec<u8> {
    let mut e = Enc::new();
    e.str(s);
    e.finish()
}

fn log_evt(stream_seq: u32, r: &LogRecord) -> Vec<u8> {
    let mut e = Enc::new();
    e.u8(evt::RECORD)
        .u32(stream_seq)
        .u64(r.seq)
        .i64(r.time.timestamp_millis())
        .u8(r.level.as_u8())
        .str(&r.target)
        .str(&r.message);
    Frame::new(Kind::Evt, channel::LOG, stream_seq as u16, e.finish()).encode()
}

fn dropped_evt(stream_seq: u32, count: u64) -> Vec<u8> {
    let mut e = Enc::new();
    e.u8(evt::DROPPED).u32(stream_seq).u64(count);
    Frame::new(Kind::Evt, channel::LOG, stream_seq as u16, e.finish()).encode()
}

impl<B: Backend> Session<B> {
    async fn send(&self, bytes: Vec<u8>) {
        let _ = self.out.send(Out::Bytes(bytes)).await;
    }

    async fn handle(&mut self, f: Frame) {
        match f.kind {
            Kind::Hello => self.hello(f).await,
            Kind::Req => self.request(f).await,
            Kind::Data => self.data(f).await,
            other => {
                tracing::debug!(target: "link", kind = ?other, "ignoring frame the charger does not expect")
            }
        }
    }

    async fn hello(&mut self, f: Frame) {
        let hello = match HostHello::decode(&f.body) {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(target: "link", error = %e, "bad HELLO");
                return;
            }
        };
        if hello.session != self.session {
            if let Some(h) = self.logs.take() {
                h.abort();
            }
            self.session = hello.session;
        }
        let own_max = self
            .opts
            .proto_max
            .clamp(codec::PROTO_MIN, codec::PROTO_MAX);
        // With no common version the charger names its own; the tool reports the mismatch.
        let proto = codec::negotiate(codec::PROTO_MIN, own_max, hello.proto_min, hello.proto_max)
            .unwrap_or(own_max);
        if proto != self.proto {
            // Firmware frames of the old version mean nothing in the new one.
            self.transfer = None;
            self.proto = proto;
        }
        let id = self.backend.identity();
        let body = DeviceHello {
            proto,
            max_body: frame::MAX_BODY as u32,
            max_chunk: self.opts.max_chunk.min(frame::MAX_CHUNK as u32),
            window: self.opts.window,
            serial_number: id.serial_number,
            firmware_version: id.firmware_version,
        }
        .encode();
        self.send(Frame::new(Kind::Hello, channel::CONTROL, f.id, body).encode())
            .await;
    }

    async fn request(&mut self, f: Frame) {
        if f.channel != channel::CONTROL {
            let reason = match frame::channel_name(f.channel) {
                Some(name) => format!(
                    "requests go on channel 0 (control), not on channel {} ({name})",
                    f.channel
                ),
                None => format!(
                    "channel {} is not defined by the service protocol (0 control, 1 log, 2 firmware)",
                    f.channel
                ),
            };
            tracing::debug!(target: "link", channel = f.channel, "request refused: {reason}");
            for part in rsp_frames(f.id, &[(status::BAD_CHANNEL, text(&reason))]) {
                self.send(part).await;
            }
            return;
        }
        let key = (self.session, f.id);
        let mut body = &f.body[..];
        let mut wanted: Option<Resend> = None;
        if f.flags & flags::RESEND != 0 && self.proto >= codec::PROTO_SELECTIVE {
            match Resend::decode(&f.body) {
                Ok(r) => {
                    body = r.request;
                    wanted = Some(r);
                }
                Err(e) => {
                    for part in rsp_frames(f.id, &[(status::BAD_REQUEST, text(&e.to_string()))]) {
                        self.send(part).await;
                    }
                    return;
                }
            }
        }
        if let Some(cached) = self.cache.get(&key) {
            let parts: Vec<Vec<u8>> = cached
                .iter()
                .enumerate()
                .filter(|(i, _)| wanted.as_ref().is_none_or(|w| w.wants(*i as u16)))
                .map(|(_, p)| p.clone())
                .collect();
            for part in parts {
                self.send(part).await;
            }
            return;
        }
        let parts = match Request::decode(body) {
            Ok(req) => self.dispatch(f.id, req).await,
            Err(e) => vec![(status::BAD_REQUEST, text(&e.to_string()))],
        };
        // An empty answer means it was already sent (reboot answers before going down).
        let already_sent = parts.is_empty();
        let answer = if already_sent {
            rsp_frames(f.id, &[(status::OK, Vec::new())])
        } else {
            rsp_frames(f.id, &parts)
        };
        if self.cache_order.len() >= self.opts.dedup_entries.max(1)
            && let Some(old) = self.cache_order.pop_front()
        {
            self.cache.remove(&old);
        }
        if !already_sent {
            for part in &answer {
                self.send(part.clone()).await;
            }
        }
        self.cache.insert(key, answer);
        self.cache_order.push_back(key);
    }

    async fn dispatch(&mut self, id: u16, req: Request) -> Vec<(u8, Vec<u8>)> {
        match req {
            Request::Identify => {
                let mut e = Enc::new();
                self.backend.identity().encode(&mut e);
                vec![(status::OK, e.finish())]
            }
            Request::Ping => vec![(status::OK, Vec::new())],
            Request::ConfigGet { keys } => {
                let read = self.backend.config_get(keys).await;
                read.encode_parts(self.opts.part_budget)
                    .into_iter()
                    .map(|p| (status::OK, p))
                    .collect()
            }
            Request::ConfigSet { key, value } => {
                let outcome = self.backend.config_set(key, value).await;
                let mut e = Enc::new();
                outcome.encode(&mut e);
                vec![(status::OK, e.finish())]
            }
            Request::LogSubscribe {
                min_level,
                history,
                follow,
            } => {
                if let Some(h) = self.logs.take() {
                    h.abort();
                }
                let min = Level::from_u8(min_level).unwrap_or(Level::Trace);
                let (hist, rx) = self.backend.log_subscribe();
                let mut stream_seq: u32 = 0;
                if history {
                    for r in hist.iter().filter(|r| r.level >= min) {
                        stream_seq = stream_seq.wrapping_add(1);
                        self.send(log_evt(stream_seq, r)).await;
                    }
                }
                if follow {
                    let out = self.out.clone();
                    self.logs = Some(tokio::spawn(forward_logs(rx, out, min, stream_seq)));
                }
                let mut e = Enc::new();
                e.u32(stream_seq);
                vec![(status::OK, e.finish())]
            }
            Request::LogUnsubscribe => {
                if let Some(h) = self.logs.take() {
                    h.abort();
                }
                vec![(status::OK, Vec::new())]
            }
            Request::Reboot => {
                // Answer first and make sure the answer left before the charger goes down.
                for part in rsp_frames(id, &[(status::OK, Vec::new())]) {
                    self.send(part).await;
                }
                let (tx, rx) = oneshot::channel();
                let _ = self.out.send(Out::Flush(tx)).await;
                let _ = rx.await;
                if let Some(h) = self.logs.take() {
                    h.abort();
                }
                self.backend.reboot().await;
                Vec::new()
            }
            Request::FlashBegin {
                sha256,
                size,
                header,
            } => match self.backend.flash_begin(sha256, size, header).await {
                Ok(resume) => {
                    let tid = self.next_transfer;
                    self.next_transfer = self.next_transfer.wrapping_add(1).max(1);
                    let resume = resume.min(size);
                    self.transfer = Some(Transfer::new(tid, size, resume));
                    let mut e = Enc::new();
                    e.u16(tid)
                        .u64(resume)
                        .u32(self.opts.window)
                        .u32(self.opts.max_chunk.min(frame::MAX_CHUNK as u32));
                    vec![(status::OK, e.finish())]
                }
                Err(reason) => vec![(status::REFUSED, text(&reason))],
            },
            Request::FlashFinish { transfer } => {
                let t = match &self.transfer {
                    Some(t) if t.id == transfer => t,
                    _ => {
                        return vec![(
                            status::REFUSED,
                            text(&format!("unknown firmware transfer {transfer}")),
                        )];
                    }
                };
                if t.next != t.size {
                    return vec![(
                        status::REFUSED,
                        text(&format!(
                            "incomplete image: {} of {} bytes received",
                            t.next, t.size
                        )),
                    )];
                }
                self.transfer = None;
                match self.backend.flash_finish().await {
                    Ok(version) => vec![(status::OK, text(&version))],
                    Err(reason) => vec![(status::REFUSED, text(&reason))],
                }
            }
        }
    }
}

async fn forward_logs(
    mut rx: broadcast::Receiver<LogRecord>,
    out: mpsc::Sender<Out>,
    min: Level,
    mut stream_seq: u32,
) {
    loop {
        let bytes = match rx.recv().await {
            Ok(r) if r.level >= min => {
                stream_seq = stream_seq.wrapping_add(1);
                log_evt(stream_seq, &r)
            }
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                stream_seq = stream_seq.wrapping_add(1);
                dropped_evt(stream_seq, n)
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if out.send(Out::Bytes(bytes)).await.is_err() {
            return;
        }
    }
}
