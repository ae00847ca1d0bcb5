//! The charger side of the service link: decodes frames from the line, answers requests through
//! a [`Backend`], streams log records, and receives firmware into the backend's inactive slot.

use super::codec::{
    self, ConfigRead, DeviceHello, Enc, HostHello, Identity, Request, SetOutcome, evt, nak, status,
};
use super::error::{Error, Result};
use super::frame::{self, Decoded, Decoder, Frame, Kind, channel, flags};
use crate::stack::logbook::{Level, LogRecord};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::Read;
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
    /// Firmware bytes the tool may keep in flight.
    pub window: u32,
    /// Target size of one response part of a multi-part answer.
    pub part_budget: usize,
    /// Answers remembered for retransmitted requests.
    pub dedup_entries: usize,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            max_chunk: frame::MAX_CHUNK as u32,
            window: 32 * 1024,
            part_budget: 480,
            dedup_entries: 32,
        }
    }
}

/// A gap already NAKed is NAKed again after this many more out-of-order chunks (the
/// retransmission itself was lost).
const REPEAT_NAK_AFTER: u32 = 4;

/// Largest uncompressed chunk the charger inflates.
pub const MAX_INFLATED_CHUNK: usize = 64 * 1024;

enum Out {
    Bytes(Vec<u8>),
    Flush(oneshot::Sender<()>),
}

struct Transfer {
    id: u16,
    size: u64,
    next: u64,
    nak_for: Option<u64>,
    gap_frames: u32,
}

struct Session<B: Backend> {
    backend: Arc<B>,
    opts: ServiceOptions,
    out: mpsc::Sender<Out>,
    session: u64,
    cache: HashMap<(u64, u16), Vec<u8>>,
    cache_order: VecDeque<(u64, u16)>,
    logs: Option<JoinHandle<()>>,
    transfer: Option<Transfer>,
    next_transfer: u16,
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
        cache: HashMap::new(),
        cache_order: VecDeque::new(),
        logs: None,
        transfer: None,
        next_transfer: rand::random::<u16>() | 1,
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

async fn write_loop(mut wr: impl AsyncWrite + Unpin, mut rx: mpsc::Receiver<Out>) -> Result<()> {
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Out::Bytes(b) => batch.extend_from_slice(&b),
                Out::Flush(tx) => flushes.push(tx),
            }
            if batch.len() < 64 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            wr.write_all(&batch)
                .await
                .map_err(|e| Error::io("writing the service port", e))?;
            wr.flush()
                .await
                .map_err(|e| Error::io("writing the service port", e))?;
            batch.clear();
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
    Ok(())
}

fn rsp_bytes(id: u16, parts: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (st, payload)) in parts.iter().enumerate() {
        let mut body = Vec::with_capacity(payload.len() + 3);
        body.extend_from_slice(&(i as u16).to_le_bytes());
        body.push(*st);
        body.extend_from_slice(payload);
        let mut f = Frame::new(Kind::Rsp, channel::CONTROL, id, body);
        if i + 1 < parts.len() {
            f = f.with_flags(flags::MORE);
        }
        f.encode_into(&mut out);
    }
    out
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
        let id = self.backend.identity();
        let body = DeviceHello {
            proto: frame::PROTO_VERSION,
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
        let key = (self.session, f.id);
        if let Some(cached) = self.cache.get(&key) {
            let bytes = cached.clone();
            self.send(bytes).await;
            return;
        }
        let parts = match Request::decode(&f.body) {
            Ok(req) => self.dispatch(f.id, req).await,
            Err(e) => vec![(status::BAD_REQUEST, text(&e.to_string()))],
        };
        // An empty answer means it was already sent (reboot answers before going down).
        let already_sent = parts.is_empty();
        let bytes = if already_sent {
            rsp_bytes(f.id, &[(status::OK, Vec::new())])
        } else {
            rsp_bytes(f.id, &parts)
        };
        if self.cache_order.len() >= self.opts.dedup_entries.max(1)
            && let Some(old) = self.cache_order.pop_front()
        {
            self.cache.remove(&old);
        }
        self.cache.insert(key, bytes.clone());
        self.cache_order.push_back(key);
        if !already_sent {
            self.send(bytes).await;
        }
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
                self.send(rsp_bytes(id, &[(status::OK, Vec::new())])).await;
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
                    self.transfer = Some(Transfer {
                        id: tid,
                        size,
                        next: resume,
                        nak_for: None,
                        gap_frames: 0,
                    });
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

    async fn ack(&self, tid: u16, next: u64) {
        let mut e = Enc::new();
        e.u64(next);
        self.send(Frame::new(Kind::Ack, channel::FIRMWARE, tid, e.finish()).encode())
            .await;
    }

    async fn nak(&self, tid: u16, next: u64, reason: u8, detail: &str) {
        let mut e = Enc::new();
        e.u64(next).u8(reason).str(detail);
        self.send(Frame::new(Kind::Nak, channel::FIRMWARE, tid, e.finish()).encode())
            .await;
    }

    async fn data(&mut self, f: Frame) {
        let mut d = codec::Dec::new(&f.body);
        let (offset, raw_len) = match (d.u64("chunk offset"), d.u32("chunk length")) {
            (Ok(o), Ok(l)) => (o, l as usize),
            _ => return,
        };
        let payload = d.rest();
        let Some(t) = self.transfer.as_mut().filter(|t| t.id == f.id) else {
            self.nak(f.id, 0, nak::UNKNOWN_TRANSFER, "unknown transfer")
                .await;
            return;
        };
        let (tid, next) = (t.id, t.next);
        if offset < next {
            self.ack(tid, next).await;
            return;
        }
        if offset > next {
            if t.nak_for != Some(next) || t.gap_frames >= REPEAT_NAK_AFTER {
                t.nak_for = Some(next);
                t.gap_frames = 0;
                self.nak(tid, next, nak::GAP, "").await;
            } else {
                t.gap_frames += 1;
            }
            return;
        }
        let size = t.size;
        let bytes = if f.flags & flags::DEFLATE != 0 {
            inflate(payload, raw_len)
        } else if payload.len() == raw_len {
            Some(payload.to_vec())
        } else {
            None
        };
        let Some(bytes) = bytes.filter(|b| !b.is_empty() && offset + b.len() as u64 <= size) else {
            self.nak(tid, next, nak::BAD_CHUNK, "chunk length does not match")
                .await;
            return;
        };
        match self.backend.flash_write(offset, bytes).await {
            Ok(n) => {
                if let Some(t) = self.transfer.as_mut() {
                    t.next = n.min(t.size);
                    t.nak_for = None;
                    t.gap_frames = 0;
                }
                self.ack(tid, n).await;
            }
            Err(reason) => {
                self.transfer = None;
                self.nak(tid, next, nak::FATAL, &reason).await;
            }
        }
    }
}

fn inflate(payload: &[u8], raw_len: usize) -> Option<Vec<u8>> {
    if raw_len > MAX_INFLATED_CHUNK {
        return None;
    }
    let mut out = Vec::with_capacity(raw_len);
    let mut dec = flate2::read::DeflateDecoder::new(payload).take(raw_len as u64 + 1);
    dec.read_to_end(&mut out).ok()?;
    (out.len() == raw_len).then_some(out)
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
