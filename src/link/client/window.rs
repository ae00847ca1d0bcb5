//! The firmware sliding window: sends DATA frames ahead of the charger's acknowledgements, goes
//! back to the first missing byte on a NAK or a timeout, and adapts the chunk size to the line.

use super::super::codec::{self, Dec, FlashStart, nak};
use super::super::error::{Error, Result};
use super::super::frame::{self, Frame, Kind, channel, flags};
use super::super::service::MAX_INFLATED_CHUNK;
use super::Client;
use super::actor::Cmd;
use super::flash::{FlashOptions, FlashPhase, FlashProgress};
use std::collections::VecDeque;
use std::io::Write;
use tokio::sync::{mpsc, watch};
use tokio::time::{Duration, Instant};

/// Tuning of the sender, in one place.
pub(super) mod tuning {
    use tokio::time::Duration;

    /// Smallest chunk ever sent, whatever the options or the charger say.
    pub const CHUNK_FLOOR: u32 = 16;
    /// Clean acknowledgements in a row after which the chunk size doubles.
    pub const CLEAN_ACKS_TO_GROW: u32 = 32;
    /// Retransmission timeout before any round trip was measured.
    pub const RTO_INITIAL: Duration = Duration::from_secs(1);
    /// Bounds of the retransmission timeout computed from measured round trips.
    pub const RTO_MIN: Duration = Duration::from_millis(15);
    pub const RTO_MAX: Duration = Duration::from_secs(5);
    /// Added to every computed timeout: guards against timer granularity only (a
    /// pseudo-terminal answers in well under a millisecond; a real line's turnaround shows up
    /// in the samples).
    pub const RTO_SLACK: Duration = Duration::from_millis(5);
    /// Largest factor the timeout is multiplied by after expiries in a row.
    pub const BACKOFF_MAX: u32 = 64;
    /// Longest wait for an acknowledgement, backoff included.
    pub const TIMER_MAX: Duration = Duration::from_secs(3);
    /// First guess of the compression ratio: the raw bytes taken for one chunk, in chunks.
    pub const COMPRESS_MULT_INITIAL: u64 = 2;
    /// Most raw chunks packed into one compressed chunk.
    pub const COMPRESS_MULT_MAX: u64 = 16;
    /// A compressed chunk is sent only when it saves at least this many percent.
    pub const COMPRESS_MIN_SAVING_PERCENT: u64 = 3;
    /// Chunks in a row that did not shrink after which compression is turned off.
    pub const COMPRESS_GIVE_UP: u32 = 8;
    /// Encoded frames are handed to the writer in batches of about this many bytes.
    pub const SEND_BATCH: usize = 32 * 1024;
}

use tuning::*;

/// How a window run ended.
pub(super) enum WindowEnd {
    Done,
    /// The charger forgot the transfer (it restarted): begin again, it resumes.
    Restart,
}

struct InFlight {
    end: u64,
    wire: u64,
    sent_at: Instant,
    first_send: bool,
}

/// Sender state of one transfer.
pub(super) struct Window<'a> {
    image: &'a [u8],
    tid: u16,
    size: u64,
    max_chunk: u32,
    min_chunk: u32,
    /// Bytes the charger accepts in flight.
    window: u64,
    window_chunks: u64,
    chunk: u32,
    acked: u64,
    next: u64,
    high_water: u64,
    inflight: VecDeque<InFlight>,
    inflight_wire: u64,
    rtt: Rtt,
    clean: u32,
    last_rewind: Option<(u64, Instant)>,
    timer_base: Instant,
    last_progress: Instant,
    stall: Duration,
    packer: Packer,
    resumed_from: u64,
    started: Instant,
    pub wire_bytes: u64,
    pub retransmits: u64,
}

/// Round-trip estimate (smoothed RTT and deviation, RFC 6298 weights) and the resulting
/// retransmission timeout.
struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    backoff: u32,
}

impl Rtt {
    fn new() -> Rtt {
        Rtt {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: RTO_INITIAL,
            backoff: 1,
        }
    }

    fn sample(&mut self, sample: Duration) {
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
        self.rto = (s + self.rttvar * 4 + RTO_SLACK).clamp(RTO_MIN, RTO_MAX);
    }

    /// The wait before the oldest unacknowledged chunk counts as lost.
    fn timer(&self) -> Duration {
        (self.rto * self.backoff).min(TIMER_MAX)
    }
}

/// Per-chunk deflate, kept only while it pays.
struct Packer {
    on: bool,
    misses: u32,
    mult: u64,
}

impl Packer {
    /// Compresses the raw range starting at `off` so that it fits `chunk` bytes; `None` when
    /// that does not save enough (the caller sends raw bytes).
    fn pack(&mut self, image: &[u8], off: u64, chunk: u64) -> Option<(u64, Vec<u8>)> {
        if !self.on {
            return None;
        }
        let remaining = image.len() as u64 - off;
        let raw_len = remaining
            .min(chunk * self.mult)
            .min(MAX_INFLATED_CHUNK as u64);
        let raw = &image[off as usize..(off + raw_len) as usize];
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        let packed = enc.write_all(raw).and_then(|_| enc.finish());
        if let Ok(c) = packed
            && (c.len() as u64) <= chunk
            && (c.len() as u64) * 100 < raw_len * (100 - COMPRESS_MIN_SAVING_PERCENT)
        {
            let ratio = raw_len / (c.len() as u64).max(1);
            self.mult = if c.len() as u64 * 2 < chunk {
                (self.mult * 2).min(COMPRESS_MULT_MAX)
            } else {
                ratio.clamp(1, COMPRESS_MULT_MAX)
            };
            self.misses = 0;
            return Some((raw_len, c));
        }
        self.mult = (self.mult / 2).max(1);
        self.misses += 1;
        if self.misses >= COMPRESS_GIVE_UP {
            self.on = false;
        }
        None
    }
}

impl<'a> Window<'a> {
    pub fn new(
        image: &'a [u8],
        start: &FlashStart,
        opts: &FlashOptions,
        resumed_from: u64,
        started: Instant,
    ) -> Self {
        let max_chunk = start.max_chunk.clamp(CHUNK_FLOOR, frame::MAX_CHUNK as u32);
        let min_chunk = opts.min_chunk.clamp(CHUNK_FLOOR, max_chunk);
        let now = Instant::now();
        let from = start.resume_offset.min(image.len() as u64);
        Window {
            image,
            tid: start.transfer,
            size: image.len() as u64,
            max_chunk,
            min_chunk,
            window: start.window.max(max_chunk) as u64,
            window_chunks: opts.window_chunks.max(1) as u64,
            chunk: opts.initial_chunk.clamp(min_chunk, max_chunk),
            acked: from,
            next: from,
            high_water: start.resume_offset,
            inflight: VecDeque::new(),
            inflight_wire: 0,
            rtt: Rtt::new(),
            clean: 0,
            last_rewind: None,
            timer_base: now,
            last_progress: now,
            stall: opts.stall_timeout,
            packer: Packer {
                on: opts.compress,
                misses: 0,
                mult: COMPRESS_MULT_INITIAL,
            },
            resumed_from,
            started,
            wire_bytes: 0,
            retransmits: 0,
        }
    }

    /// Encodes the chunk at `next` onto `out`: (raw bytes covered, wire bytes).
    fn build(&mut self, out: &mut Vec<u8>) -> (u64, u64) {
        let off = self.next;
        let chunk = self.chunk as u64;
        let before = out.len();
        if let Some((raw_len, packed)) = self.packer.pack(self.image, off, chunk) {
            Frame::new(
                Kind::Data,
                channel::FIRMWARE,
                self.tid,
                codec::encode_data(off, raw_len as u32, &packed),
            )
            .with_flags(flags::DEFLATE)
            .encode_into(out);
            return (raw_len, (out.len() - before) as u64);
        }
        let raw_len = (self.size - off).min(chunk);
        let raw = &self.image[off as usize..(off + raw_len) as usize];
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
            self.rtt.sample(now - f.sent_at);
        }
        self.acked = n;
        self.rtt.backoff = 1;
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
        if self.clean >= CLEAN_ACKS_TO_GROW {
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

    /// Sends until the charger acknowledged the whole image.
    pub async fn run(
        &mut self,
        client: &Client,
        rx: &mut mpsc::UnboundedReceiver<Frame>,
        progress: &watch::Sender<FlashProgress>,
    ) -> Result<WindowEnd> {
        self.publish(progress);
        let mut batch = Vec::with_capacity(SEND_BATCH * 2);
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
                if batch.len() >= SEND_BATCH {
                    client.cmd(Cmd::Send(std::mem::take(&mut batch))).await?;
                }
            }
            if !batch.is_empty() {
                client.cmd(Cmd::Send(std::mem::take(&mut batch))).await?;
            }
            let timer = self.timer_base + self.rtt.timer();
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
                                        Some((at, t)) => {
                                            at != n || now - t > self.rtt.srtt.unwrap_or(self.rtt.rto)
                                        }
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
                        self.rtt.backoff = (self.rtt.backoff * 2).min(BACKOFF_MAX);
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
