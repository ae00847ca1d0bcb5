//! The firmware sender. Chunks go out ahead of the charger's acknowledgements; what was lost is
//! found and sent again, and the chunk size follows the loss measured on the line.
//!
//! With protocol 2 (selective repeat) every ACK names the transmission that caused it and the
//! ranges the charger holds beyond its cumulative offset. A serial line delivers in order, so
//! when transmission N arrived, every earlier transmission not reported held was lost: only
//! those are sent again, split to the current chunk size. A retransmission timer covers the
//! tail and lost acknowledgements. With protocol 1 the charger drops chunks beyond a gap and
//! NAKs the gap, and the sender goes back to it (Go-Back-N).
//!
//! Chunk size: a frame of `L` payload bytes and `h` bytes of framing arrives whole with
//! probability `(1 - p)^(L + h)` at byte error rate `p`, so the goodput per line byte is
//! `L / (L + h) * (1 - p)^(L + h)`, largest at `L = (sqrt(h² + 4h/λ) - h) / 2` with
//! `λ = -ln(1 - p)`. `p` is estimated from the fraction of recent transmissions lost and their
//! mean size; `h` is measured on the frames sent.

use super::super::codec::{Ack, Data, FlashStart, Nak, PROTO_SELECTIVE, nak};
use super::super::error::{Error, Result};
use super::super::frame::{self, Frame, Kind, channel, flags};
use super::super::service::MAX_INFLATED_CHUNK;
use super::Client;
use super::actor::Cmd;
use super::flash::{FlashOptions, FlashPhase, FlashProgress};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use tokio::sync::{mpsc, watch};
use tokio::time::{Duration, Instant};

/// Tuning of the sender, in one place.
pub(super) mod tuning {
    use tokio::time::Duration;

    /// Smallest chunk ever sent, whatever the options or the charger say.
    pub const CHUNK_FLOOR: u32 = 16;
    /// Chunk sizes are rounded to a multiple of this.
    pub const CHUNK_STEP: u32 = 16;
    /// Transmissions the loss estimate remembers (older ones fade exponentially).
    pub const LOSS_MEMORY: f64 = 64.0;
    /// Transmissions seen without a loss before the estimate sets the chunk size (a loss
    /// sets it at once).
    pub const LOSS_WARMUP: u32 = 8;
    /// The lost fraction is capped here before the byte error rate is derived from it.
    pub const LOSS_FRACTION_MAX: f64 = 0.99;
    /// Framing bytes per DATA frame assumed before any was measured.
    pub const OVERHEAD_INITIAL: f64 = 24.0;
    /// Retransmission timeout before any round trip was measured (the round trip of the
    /// request that began the transfer is used when shorter).
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
    /// The wait is at least this many times the time the line needs for what is in flight
    /// (a serial line is a queue: the last chunk sent is answered after all before it).
    pub const DRAIN_MARGIN: f64 = 1.5;
    /// Send times kept for round trips measured on echoes.
    pub const SENT_REMEMBERED: usize = 8192;
    /// Protocol 2: line bytes in flight are about this much time at the best recent delivery
    /// rate (enough to keep the line busy and to fill the charger's window on a fast one), ...
    pub const INFLIGHT_TIME: Duration = Duration::from_millis(250);
    /// ... but at least this many bytes and this many chunks, and never more than the
    /// charger's window.
    pub const INFLIGHT_MIN: u64 = 4096;
    pub const INFLIGHT_MIN_CHUNKS: u64 = 2;
    /// The delivery rate is measured over intervals of at least this long; the best one fades
    /// by this factor per interval.
    pub const RATE_INTERVAL: Duration = Duration::from_millis(10);
    pub const RATE_FADE: f64 = 0.9;
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

/// A range of the image sent and not yet known to be held by the charger.
struct Seg {
    end: u64,
    /// Its latest transmission.
    tx: u32,
    sent_at: Instant,
    wire: u64,
    /// Sent once only (a round trip measured on it means something).
    first: bool,
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
        // A backed-off timeout holds until a round trip is measured again (Karn).
        self.backoff = 1;
    }

    /// The wait before an unacknowledged transmission counts as lost.
    fn timer(&self) -> Duration {
        (self.rto * self.backoff).min(TIMER_MAX)
    }
}

/// The delivery rate of the line: the best recent interval, fading.
struct Pipe {
    /// Line bytes per second.
    max_rate: f64,
    mark: Option<(Instant, u64)>,
}

impl Pipe {
    /// `nominal`: the line rate the port was opened at (bytes per second), the first guess; it
    /// fades when the line turns out slower.
    fn new(nominal: f64) -> Pipe {
        Pipe {
            max_rate: nominal,
            mark: None,
        }
    }

    /// `delivered` line bytes are known held, as of `now`.
    fn delivered(&mut self, delivered: u64, now: Instant) {
        let Some((at, before)) = self.mark else {
            self.mark = Some((now, delivered));
            return;
        };
        let dt = now - at;
        if dt >= RATE_INTERVAL {
            let rate = (delivered - before) as f64 / dt.as_secs_f64();
            self.max_rate = rate.max(self.max_rate * RATE_FADE);
            self.mark = Some((now, delivered));
        }
    }

    /// Line bytes worth keeping in flight (0 before anything was measured).
    fn inflight(&self) -> u64 {
        (INFLIGHT_TIME.as_secs_f64() * self.max_rate) as u64
    }
}

/// Recent transmissions and how many were lost, fading with age.
struct LossMeter {
    lost: f64,
    sent: f64,
    wire: f64,
    outcomes: u32,
}

impl LossMeter {
    fn new() -> LossMeter {
        LossMeter {
            lost: 0.0,
            sent: 0.0,
            wire: 0.0,
            outcomes: 0,
        }
    }

    fn record(&mut self, wire: u64, lost: bool) {
        let keep = 1.0 - 1.0 / LOSS_MEMORY;
        self.lost = self.lost * keep + if lost { 1.0 } else { 0.0 };
        self.sent = self.sent * keep + 1.0;
        self.wire = self.wire * keep + wire as f64;
        self.outcomes = self.outcomes.saturating_add(1);
    }

    /// Estimated probability that a byte on the line is lost or damaged.
    fn byte_error_rate(&self) -> f64 {
        if self.sent <= 0.0 || self.wire <= 0.0 {
            return 0.0;
        }
        let lost = (self.lost / self.sent).min(LOSS_FRACTION_MAX);
        let mean = self.wire / self.sent;
        1.0 - (1.0 - lost).powf(1.0 / mean)
    }
}

/// The payload size with the best expected goodput at byte error rate `p` with `h` framing
/// bytes per frame.
fn best_chunk(p: f64, h: f64) -> f64 {
    if p <= 0.0 {
        return f64::INFINITY;
    }
    let lambda = -(1.0 - p).ln();
    if lambda <= 0.0 || !lambda.is_finite() {
        return if lambda <= 0.0 { f64::INFINITY } else { 0.0 };
    }
    ((h * h + 4.0 * h / lambda).sqrt() - h) / 2.0
}

/// Per-chunk deflate, kept only while it pays.
struct Packer {
    on: bool,
    misses: u32,
    mult: u64,
}

impl Packer {
    /// Compresses raw bytes from `off` (at most up to `end`) so that they fit `chunk` bytes:
    /// (raw bytes covered, compressed bytes), or `None` when that does not save enough (the
    /// caller sends raw bytes).
    fn pack(&mut self, image: &[u8], off: u64, end: u64, chunk: u64) -> Option<(u64, Vec<u8>)> {
        if !self.on {
            return None;
        }
        let raw_len = (end - off)
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

/// Sender state of one transfer.
pub(super) struct Window<'a> {
    image: &'a [u8],
    tid: u16,
    size: u64,
    proto: u8,
    max_chunk: u32,
    min_chunk: u32,
    /// Bytes the charger accepts in flight (protocol 2: holds beyond a gap).
    window: u64,
    /// Protocol 1: chunks in flight at most.
    window_chunks: u64,
    chunk: u32,
    /// Every byte below is acknowledged.
    acked: u64,
    /// First byte never sent.
    fresh: u64,
    /// Ranges sent and not known held, by start.
    segs: BTreeMap<u64, Seg>,
    /// Starts of the ranges to send again.
    lost: BTreeSet<u64>,
    /// Transmissions in flight (tx → range start), oldest first.
    awaiting: BTreeMap<u32, u64>,
    /// When each transmission not yet echoed left (for round trips measured on the echo).
    sent: BTreeMap<u32, Instant>,
    inflight_wire: u64,
    next_tx: u32,
    rtt: Rtt,
    loss: LossMeter,
    /// Framing bytes per DATA frame, measured.
    overhead: f64,
    /// Line bytes of chunks known held, for the delivery rate.
    delivered_wire: u64,
    pipe: Pipe,
    last_rewind: Option<(u64, Instant)>,
    last_progress: Instant,
    stall: Duration,
    packer: Packer,
    resumed_from: u64,
    started: Instant,
    pub wire_bytes: u64,
    pub retransmits: u64,
}

impl<'a> Window<'a> {
    /// `begin_rtt`: the round trip of the request that began the transfer, a first estimate;
    /// `baud`: the rate the port was opened at.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        image: &'a [u8],
        start: &FlashStart,
        proto: u8,
        begin_rtt: Duration,
        baud: u32,
        opts: &FlashOptions,
        resumed_from: u64,
        started: Instant,
    ) -> Self {
        let max_chunk = start.max_chunk.clamp(CHUNK_FLOOR, frame::MAX_CHUNK as u32);
        let min_chunk = opts.min_chunk.clamp(CHUNK_FLOOR, max_chunk);
        let from = start.resume_offset.min(image.len() as u64);
        Window {
            image,
            tid: start.transfer,
            size: image.len() as u64,
            proto,
            max_chunk,
            min_chunk,
            window: start.window.max(max_chunk) as u64,
            window_chunks: opts.window_chunks.max(1) as u64,
            chunk: opts.initial_chunk.clamp(min_chunk, max_chunk),
            acked: from,
            fresh: from,
            segs: BTreeMap::new(),
            lost: BTreeSet::new(),
            awaiting: BTreeMap::new(),
            sent: BTreeMap::new(),
            inflight_wire: 0,
            next_tx: 0,
            rtt: {
                let mut rtt = Rtt::new();
                if begin_rtt < RTO_INITIAL {
                    rtt.sample(begin_rtt);
                }
                rtt
            },
            loss: LossMeter::new(),
            overhead: OVERHEAD_INITIAL,
            delivered_wire: 0,
            pipe: Pipe::new(baud as f64 / 10.0),
            last_rewind: None,
            last_progress: Instant::now(),
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

    fn selective(&self) -> bool {
        self.proto >= PROTO_SELECTIVE
    }

    /// Line bytes allowed in flight now.
    fn inflight_limit(&self) -> u64 {
        let chunk = self.chunk as u64;
        if !self.selective() {
            return (chunk * self.window_chunks).min(self.window);
        }
        let floor = INFLIGHT_MIN.max(chunk * INFLIGHT_MIN_CHUNKS);
        self.pipe.inflight().max(floor).min(self.window)
    }

    /// The next range to send: a lost one first, else fresh bytes (within the charger's window
    /// in protocol 2). (start, end it may extend to, retransmission?)
    fn next_range(&self) -> Option<(u64, u64, bool)> {
        if let Some(&start) = self.lost.first()
            && let Some(seg) = self.segs.get(&start)
        {
            return Some((start, seg.end, true));
        }
        if self.fresh >= self.size {
            return None;
        }
        let end = if self.selective() {
            self.size.min(self.acked + self.window)
        } else {
            self.size
        };
        (self.fresh < end).then_some((self.fresh, end, false))
    }

    /// Encodes one chunk starting at `off` (ending at `end` at most) onto `out` and records it.
    fn send_chunk(
        &mut self,
        off: u64,
        end: u64,
        retransmit: bool,
        now: Instant,
        out: &mut Vec<u8>,
    ) {
        let chunk = self.chunk as u64;
        self.next_tx = self.next_tx.wrapping_add(1).max(1);
        let tx = self.next_tx;
        let before = out.len();
        let packed = self.packer.pack(self.image, off, end, chunk);
        let (raw_len, payload_len) = match packed {
            Some((raw_len, packed)) => {
                let data = Data {
                    offset: off,
                    raw_len: raw_len as u32,
                    tx,
                    payload: &packed,
                };
                Frame::new(
                    Kind::Data,
                    channel::FIRMWARE,
                    self.tid,
                    data.encode(self.proto),
                )
                .with_flags(flags::DEFLATE)
                .encode_into(out);
                (raw_len, packed.len())
            }
            None => {
                let raw_len = (end - off).min(chunk);
                let data = Data {
                    offset: off,
                    raw_len: raw_len as u32,
                    tx,
                    payload: &self.image[off as usize..(off + raw_len) as usize],
                };
                Frame::new(
                    Kind::Data,
                    channel::FIRMWARE,
                    self.tid,
                    data.encode(self.proto),
                )
                .encode_into(out);
                (raw_len, raw_len as usize)
            }
        };
        let wire = (out.len() - before) as u64;
        self.overhead = self.overhead * 0.9 + (wire as f64 - payload_len as f64) * 0.1;
        let piece_end = off + raw_len;
        if retransmit {
            self.retransmits += 1;
            self.lost.remove(&off);
            if let Some(rest) = self.segs.remove(&off)
                && rest.end > piece_end
            {
                // The rest of the lost range waits for its own turn.
                self.segs.insert(
                    piece_end,
                    Seg {
                        end: rest.end,
                        ..rest
                    },
                );
                self.lost.insert(piece_end);
            }
        } else {
            self.fresh = piece_end;
        }
        self.segs.insert(
            off,
            Seg {
                end: piece_end,
                tx,
                sent_at: now,
                wire,
                first: !retransmit,
            },
        );
        self.awaiting.insert(tx, off);
        self.sent.insert(tx, now);
        if self.sent.len() > SENT_REMEMBERED {
            self.sent.pop_first();
        }
        self.inflight_wire += wire;
        self.wire_bytes += wire;
    }

    /// The charger holds the range starting at `start`.
    fn held(&mut self, start: u64, now: Instant) {
        let Some(seg) = self.segs.remove(&start) else {
            return;
        };
        self.lost.remove(&start);
        if self.awaiting.remove(&seg.tx).is_some() {
            self.inflight_wire -= seg.wire;
            self.loss.record(seg.wire, false);
        }
        self.delivered_wire += seg.wire;
        self.pipe.delivered(self.delivered_wire, now);
        self.last_progress = now;
    }

    /// The transmission `tx` (of the range at `start`) is lost.
    fn lose(&mut self, tx: u32, start: u64) {
        if self.awaiting.remove(&tx).is_none() {
            return;
        }
        if let Some(seg) = self.segs.get(&start) {
            self.inflight_wire -= seg.wire;
            self.loss.record(seg.wire, true);
            self.lost.insert(start);
        }
    }

    /// Everything below `next` is held.
    fn cumulative(&mut self, next: u64, now: Instant) {
        if next > self.size {
            return;
        }
        if next > self.acked {
            self.acked = next;
            self.last_progress = now;
        }
        let below: Vec<u64> = self
            .segs
            .range(..self.acked)
            .filter(|(_, s)| s.end <= self.acked)
            .map(|(k, _)| *k)
            .collect();
        for k in below {
            self.held(k, now);
        }
        if self.fresh < self.acked {
            self.fresh = self.acked;
        }
    }

    /// Protocol 2 acknowledgement: cumulative offset, held ranges, the transmission that
    /// caused it; every older transmission still in flight was lost.
    fn on_ack(&mut self, ack: &Ack, now: Instant) {
        if !self.selective() {
            self.on_cumulative_v1(ack.next, now);
            return;
        }
        self.cumulative(ack.next, now);
        for &(s, e) in &ack.blocks {
            let e = e.min(self.size);
            if s >= e {
                continue;
            }
            let inside: Vec<u64> = self
                .segs
                .range(s..e)
                .filter(|(_, seg)| seg.end <= e)
                .map(|(k, _)| *k)
                .collect();
            for k in inside {
                self.held(k, now);
            }
        }
        if ack.echo == 0 {
            return;
        }
        // The echo names one transmission exactly, even one given up for lost meanwhile: a
        // true round trip.
        if let Some(&sent) = self.sent.get(&ack.echo) {
            self.rtt.sample(now - sent);
        }
        self.sent = self.sent.split_off(&ack.echo.saturating_add(1));
        if let Some(&start) = self.awaiting.get(&ack.echo) {
            self.held(start, now);
        }
        let older: Vec<(u32, u64)> = self
            .awaiting
            .range(..ack.echo)
            .map(|(t, s)| (*t, *s))
            .collect();
        for (tx, start) in older {
            self.lose(tx, start);
        }
    }

    /// Protocol 1 acknowledgement: cumulative only; a round trip is measured on the range it
    /// completes if that range was sent once.
    fn on_cumulative_v1(&mut self, n: u64, now: Instant) {
        if n > self.acked
            && let Some((_, seg)) = self.segs.range(..n).next_back()
            && seg.end == n
            && seg.first
            && self.awaiting.contains_key(&seg.tx)
        {
            self.rtt.sample(now - seg.sent_at);
        }
        self.cumulative(n, now);
    }

    /// Protocol 1 NAK of a gap at `n`: the charger dropped everything sent after it.
    fn go_back(&mut self, n: u64, now: Instant) {
        self.on_cumulative_v1(n, now);
        let fresh = match self.last_rewind {
            Some((at, t)) => at != n || now - t > self.rtt.srtt.unwrap_or(self.rtt.rto),
            None => true,
        };
        if !fresh {
            return;
        }
        let after: Vec<(u32, u64)> = self
            .awaiting
            .iter()
            .filter(|(_, s)| **s >= n)
            .map(|(t, s)| (*t, *s))
            .collect();
        for (tx, start) in after {
            self.lose(tx, start);
        }
        self.last_rewind = Some((n, now));
    }

    /// No acknowledgement for a while: what has been in flight longer than the timeout is
    /// lost.
    fn on_timeout(&mut self, now: Instant) {
        let wait = self.wait();
        let old: Vec<(u32, u64)> = self
            .awaiting
            .iter()
            .filter(|(_, s)| self.segs.get(s).is_none_or(|seg| seg.sent_at + wait <= now))
            .map(|(t, s)| (*t, *s))
            .collect();
        if !old.is_empty() {
            self.rtt.backoff = (self.rtt.backoff * 2).min(BACKOFF_MAX);
        }
        for (tx, start) in old {
            self.lose(tx, start);
        }
        if self.awaiting.is_empty() && self.lost.is_empty() && self.fresh >= self.size {
            // Nothing left to wait for, yet the charger has not acknowledged everything (it
            // dropped what it held): send again from the acknowledged offset.
            self.segs.clear();
            self.inflight_wire = 0;
            self.fresh = self.acked;
        }
    }

    /// When the oldest transmission in flight counts as lost (transmissions are numbered in
    /// the order they were sent).
    fn timer(&self, now: Instant) -> Instant {
        let oldest = self
            .awaiting
            .first_key_value()
            .and_then(|(_, s)| self.segs.get(s))
            .map_or(now, |s| s.sent_at);
        oldest + self.wait()
    }

    /// How long a transmission may go unanswered: the retransmission timeout, but at least
    /// the time the line needs to carry what is in flight.
    fn wait(&self) -> Duration {
        let base = self.rtt.timer();
        if self.pipe.max_rate <= 0.0 {
            return base;
        }
        let drain = DRAIN_MARGIN * self.inflight_wire as f64 / self.pipe.max_rate;
        base.max(Duration::from_secs_f64(drain.min(TIMER_MAX.as_secs_f64())))
    }

    /// Sets the chunk size from the measured loss.
    fn resize(&mut self) {
        // A loss says something at once; a clean start only after a few chunks.
        if self.loss.outcomes < LOSS_WARMUP && self.loss.lost <= 0.0 {
            return;
        }
        let best = best_chunk(self.loss.byte_error_rate(), self.overhead.max(1.0));
        let step = CHUNK_STEP as f64;
        let best = (best / step).round() * step;
        self.chunk = if best.is_finite() {
            (best.max(0.0) as u64).clamp(self.min_chunk as u64, self.max_chunk as u64) as u32
        } else {
            self.max_chunk
        };
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

    /// Handles one ACK or NAK; `Some` ends the run.
    fn on_frame(&mut self, f: &Frame, now: Instant) -> Result<Option<WindowEnd>> {
        match f.kind {
            Kind::Ack => {
                let ack = Ack::decode(&f.body, self.proto)?;
                self.on_ack(&ack, now);
            }
            Kind::Nak => {
                let n = Nak::decode(&f.body, self.proto)?;
                match n.reason {
                    nak::UNKNOWN_TRANSFER => return Ok(Some(WindowEnd::Restart)),
                    nak::FATAL => return Err(Error::FlashRejected { reason: n.detail }),
                    _ if !self.selective() => self.go_back(n.next, now),
                    _ => {
                        // A chunk the charger could not unpack: send it again, uncompressed.
                        self.cumulative(n.next, now);
                        if let Some(&start) = self.awaiting.get(&n.echo) {
                            self.lose(n.echo, start);
                        }
                        self.packer.on = false;
                    }
                }
            }
            _ => {}
        }
        Ok(None)
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
            let now = Instant::now();
            let limit = self.inflight_limit();
            while self.inflight_wire < limit
                && let Some((off, end, again)) = self.next_range()
            {
                self.send_chunk(off, end, again, now, &mut batch);
                if batch.len() >= SEND_BATCH {
                    client.cmd(Cmd::Send(std::mem::take(&mut batch))).await?;
                }
            }
            if !batch.is_empty() {
                client.cmd(Cmd::Send(std::mem::take(&mut batch))).await?;
            }
            let timer = self.timer(now);
            tokio::select! {
                f = rx.recv() => {
                    let Some(f) = f else { return Err(Error::Closed) };
                    let now = Instant::now();
                    if let Some(end) = self.on_frame(&f, now)? {
                        return Ok(end);
                    }
                    // Take every acknowledgement that is already here before sending more.
                    while let Ok(f) = rx.try_recv() {
                        if let Some(end) = self.on_frame(&f, now)? {
                            return Ok(end);
                        }
                    }
                }
                _ = tokio::time::sleep_until(timer) => self.on_timeout(Instant::now()),
            }
            if self.last_progress.elapsed() > self.stall {
                return Err(Error::Stalled {
                    offset: self.acked,
                    total: self.size,
                    secs: self.stall.as_secs_f64(),
                });
            }
            self.resize();
            self.publish(progress);
        }
        Ok(WindowEnd::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(image: &[u8], proto: u8) -> Window<'_> {
        let start = FlashStart {
            transfer: 1,
            resume_offset: 0,
            window: 32 * 1024,
            max_chunk: 4096,
        };
        Window::new(
            image,
            &start,
            proto,
            Duration::from_millis(1),
            115_200,
            &FlashOptions::default(),
            0,
            Instant::now(),
        )
    }

    /// Sends what the window allows, as `run` does.
    fn fill(w: &mut Window<'_>, out: &mut Vec<u8>) -> usize {
        let now = Instant::now();
        let limit = w.inflight_limit();
        let mut n = 0;
        while w.inflight_wire < limit
            && let Some((off, end, again)) = w.next_range()
        {
            w.send_chunk(off, end, again, now, out);
            n += 1;
        }
        n
    }

    fn consistent(w: &Window<'_>) {
        let wire: u64 = w
            .awaiting
            .values()
            .map(|s| w.segs.get(s).expect("awaiting range is known").wire)
            .sum();
        assert_eq!(wire, w.inflight_wire);
        assert!(w.lost.iter().all(|s| w.segs.contains_key(s)));
        assert!(w.acked <= w.size && w.fresh <= w.size);
    }

    #[test]
    fn only_the_lost_transmission_is_sent_again() {
        let image: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = window(&image, 2);
        w.packer.on = false;
        let mut out = Vec::new();
        assert!(fill(&mut w, &mut out) >= 2);
        let first: Vec<(u32, u64)> = w.awaiting.iter().map(|(t, s)| (*t, *s)).collect();
        // The second transmission arrived, the first did not.
        let (tx2, s2) = first[1];
        let end2 = w.segs[&s2].end;
        w.on_ack(
            &Ack {
                next: 0,
                echo: tx2,
                blocks: vec![(s2, end2)],
            },
            Instant::now(),
        );
        consistent(&w);
        assert_eq!(w.lost.iter().copied().collect::<Vec<_>>(), vec![first[0].1]);
        assert_eq!(w.next_range(), Some((first[0].1, s2, true)));
        // Once it is held, the cumulative offset passes both.
        w.on_ack(
            &Ack {
                next: end2,
                echo: 0,
                blocks: vec![],
            },
            Instant::now(),
        );
        consistent(&w);
        assert!(w.lost.is_empty());
        assert_eq!(w.acked, end2);
    }

    #[test]
    fn hostile_acknowledgements_never_break_the_sender() {
        let image = vec![0x5Au8; 200_000];
        for proto in [1u8, 2] {
            let mut w = window(&image, proto);
            let mut seed = 0x1234_5678u64 + proto as u64;
            let mut next = || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            let mut out = Vec::new();
            for round in 0..3000 {
                fill(&mut w, &mut out);
                out.clear();
                let r = next();
                let near = |v: u64| v % (image.len() as u64 + 5000);
                let body = match r % 5 {
                    0 => Ack {
                        next: near(next()),
                        echo: (next() % 4000) as u32,
                        blocks: (0..next() % 5)
                            .map(|_| {
                                let s = near(next());
                                (s, s + 1 + next() % 9000)
                            })
                            .collect(),
                    }
                    .encode(proto),
                    1 => Nak {
                        next: near(next()),
                        reason: (next() % 6) as u8,
                        detail: "x".into(),
                        echo: (next() % 4000) as u32,
                    }
                    .encode(proto),
                    _ => (0..next() % 40).map(|_| next() as u8).collect(),
                };
                let kind = if r % 5 == 1 { Kind::Nak } else { Kind::Ack };
                let f = Frame::new(kind, channel::FIRMWARE, 1, body);
                match w.on_frame(&f, Instant::now()) {
                    Ok(Some(WindowEnd::Restart)) | Err(_) | Ok(None) => {}
                    Ok(Some(WindowEnd::Done)) => unreachable!(),
                }
                if round % 7 == 0 {
                    w.on_timeout(Instant::now() + Duration::from_secs(10));
                }
                w.resize();
                consistent(&w);
            }
        }
    }

    #[test]
    fn best_chunk_follows_the_error_rate() {
        // A clean line: as large as allowed.
        assert!(best_chunk(0.0, 24.0).is_infinite());
        // 0.2 % of bytes bad with 24 framing bytes: about a hundred bytes.
        let l = best_chunk(0.002, 24.0);
        assert!((80.0..130.0).contains(&l), "{l}");
        // Rarer errors, larger chunks.
        assert!(best_chunk(0.0001, 24.0) > 400.0);
        assert!(best_chunk(0.0001, 24.0) > best_chunk(0.001, 24.0));
    }

    #[test]
    fn loss_meter_recovers_the_byte_error_rate() {
        let mut m = LossMeter::new();
        // Frames of 500 bytes at a byte error rate of 0.002 arrive whole 36.7 % of the time.
        let whole = 0.998f64.powi(500);
        let mut credit = 0.0;
        for _ in 0..2000 {
            credit += whole;
            let ok = credit >= 1.0;
            if ok {
                credit -= 1.0;
            }
            m.record(500, !ok);
        }
        let p = m.byte_error_rate();
        assert!((0.0015..0.0027).contains(&p), "{p}");
        // A clean stretch brings it down again.
        for _ in 0..600 {
            m.record(4096, false);
        }
        assert!(m.byte_error_rate() < 0.00001, "{}", m.byte_error_rate());
    }
}
