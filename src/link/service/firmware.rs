//! Receiving firmware on the charger side. Protocol 1 accepts a chunk only at the next expected
//! offset and NAKs gaps (the tool goes back). Protocol 2 holds chunks that arrive ahead of a
//! gap (up to the window), writes them once the gap is filled, and reports in every ACK which
//! transmission arrived and which ranges it holds, so the tool resends only what was lost.

use super::super::codec::{self, Ack, Data, Nak, PROTO_SELECTIVE, nak};
use super::super::frame::{Frame, Kind, channel, flags};
use super::{Backend, Session};
use std::collections::BTreeMap;
use std::io::Read;

/// A gap already NAKed is NAKed again after this many more out-of-order chunks (protocol 1:
/// the retransmission itself was lost).
const REPEAT_NAK_AFTER: u32 = 4;

/// Largest uncompressed chunk the charger inflates.
pub const MAX_INFLATED_CHUNK: usize = 64 * 1024;

/// Held bytes handed to the backend in one write at most.
const WRITE_BATCH: usize = 64 * 1024;

/// Protocol 2: received ranges reported in one ACK besides those that took a chunk since the
/// previous ACK.
const OTHER_BLOCKS: usize = 3;
/// Protocol 2: chunks acknowledged together at most (fewer when one read of the line brought
/// fewer). Fewer ACKs cost less on a fast line; a lost one costs at most this many chunks
/// their acknowledgement, and the next ACK reports them again.
const ACK_EVERY: usize = 16;

/// Protocol 2: an acknowledgement owed for the chunks stored since the last one.
pub(super) struct AckDue {
    tid: u16,
    /// The last transmission stored or already held.
    echo: u32,
    /// Offsets of the chunks stored since the last ACK, oldest first.
    touched: Vec<u64>,
}

/// Offsets reported by the previous ACK, reported again (a lost ACK is covered by the next).
#[derive(Default)]
pub(super) struct LastAck {
    tid: u16,
    touched: Vec<u64>,
}

/// One transfer in progress.
pub(super) struct Transfer {
    pub id: u16,
    pub size: u64,
    /// Every byte below this offset is written.
    pub next: u64,
    nak_for: Option<u64>,
    gap_frames: u32,
    held: Held,
}

impl Transfer {
    pub fn new(id: u16, size: u64, next: u64) -> Transfer {
        Transfer {
            id,
            size,
            next,
            nak_for: None,
            gap_frames: 0,
            held: Held::default(),
        }
    }
}

/// Chunks received beyond a gap: non-overlapping ranges keyed by offset.
#[derive(Debug, Default)]
pub(crate) struct Held {
    map: BTreeMap<u64, Vec<u8>>,
    bytes: u64,
}

impl Held {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Keeps the parts of `data` (at `offset`) not held yet.
    pub fn insert(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let mut covered: Vec<(u64, u64)> = Vec::new();
        if let Some((&s, v)) = self.map.range(..=offset).next_back()
            && s + v.len() as u64 > offset
        {
            covered.push((s, s + v.len() as u64));
        }
        if offset + 1 < end {
            for (&s, v) in self.map.range(offset + 1..end) {
                covered.push((s, s + v.len() as u64));
            }
        }
        let mut cur = offset;
        let mut gaps = Vec::new();
        for (s, e) in covered {
            if s > cur {
                gaps.push((cur, s));
            }
            cur = cur.max(e);
        }
        if cur < end {
            gaps.push((cur, end));
        }
        for (a, b) in gaps {
            let piece = data[(a - offset) as usize..(b - offset) as usize].to_vec();
            self.bytes += piece.len() as u64;
            self.map.insert(a, piece);
        }
    }

    /// Removes and returns the held bytes that continue the image at `next`, joined, up to
    /// about `max` bytes (ranges below `next` are dropped).
    pub fn take_from(&mut self, mut next: u64, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some((&s, v)) = self.map.first_key_value() else {
                break;
            };
            let e = s + v.len() as u64;
            if s > next {
                break;
            }
            let Some(v) = self.map.remove(&s) else { break };
            self.bytes -= v.len() as u64;
            if e > next {
                out.extend_from_slice(&v[(next - s) as usize..]);
                next = e;
            }
        }
        out
    }

    /// Held ranges merged, at most `max` of them: first those holding one of `recent` (the
    /// latest first), then up to [`OTHER_BLOCKS`] others from the highest offset down.
    pub fn blocks(&self, recent: &[u64], max: usize) -> Vec<(u64, u64)> {
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (&s, v) in &self.map {
            let e = s + v.len() as u64;
            match merged.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => merged.push((s, e)),
            }
        }
        let mut picked = vec![false; merged.len()];
        let mut out = Vec::new();
        for &r in recent.iter().rev() {
            if out.len() >= max {
                break;
            }
            let i = merged.partition_point(|&(_, e)| e <= r);
            if i < merged.len() && merged[i].0 <= r && !picked[i] {
                picked[i] = true;
                out.push(merged[i]);
            }
        }
        let mut others = 0;
        for i in (0..merged.len()).rev() {
            if out.len() >= max || others >= OTHER_BLOCKS {
                break;
            }
            if !picked[i] {
                picked[i] = true;
                out.push(merged[i]);
                others += 1;
            }
        }
        out
    }
}

/// The chunk's image bytes: inflated when DEFLATE is set, checked against its length.
fn unpack(frame_flags: u8, payload: &[u8], raw_len: usize) -> Option<Vec<u8>> {
    if frame_flags & flags::DEFLATE != 0 {
        inflate(payload, raw_len)
    } else {
        (payload.len() == raw_len).then(|| payload.to_vec())
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

impl<B: Backend> Session<B> {
    async fn ack(&self, tid: u16, ack: Ack) {
        self.send(Frame::new(Kind::Ack, channel::FIRMWARE, tid, ack.encode(self.proto)).encode())
            .await;
    }

    async fn nak(&self, tid: u16, next: u64, reason: u8, detail: &str, echo: u32) {
        let body = Nak {
            next,
            reason,
            detail: detail.to_string(),
            echo,
        }
        .encode(self.proto);
        self.send(Frame::new(Kind::Nak, channel::FIRMWARE, tid, body).encode())
            .await;
    }

    pub(super) async fn data(&mut self, f: Frame) {
        if f.channel != channel::FIRMWARE {
            tracing::debug!(target: "link", channel = f.channel, "firmware data outside the firmware channel ignored");
            return;
        }
        let Ok(d) = Data::decode(&f.body, self.proto) else {
            tracing::debug!(target: "link", "malformed firmware chunk ignored");
            return;
        };
        let Some(t) = self.transfer.as_ref().filter(|t| t.id == f.id) else {
            self.nak(f.id, 0, nak::UNKNOWN_TRANSFER, "unknown transfer", d.tx)
                .await;
            return;
        };
        let (tid, next, size) = (t.id, t.next, t.size);
        let bytes = unpack(f.flags, d.payload, d.raw_len as usize).filter(|b| {
            !b.is_empty()
                && d.offset
                    .checked_add(b.len() as u64)
                    .is_some_and(|e| e <= size)
        });
        if self.proto >= PROTO_SELECTIVE {
            self.data_selective(tid, d.offset, d.tx, bytes).await;
        } else {
            self.data_in_order(tid, next, d.offset, bytes).await;
        }
    }

    /// Protocol 1: only the next expected chunk is written; a gap is NAKed.
    async fn data_in_order(&mut self, tid: u16, next: u64, offset: u64, bytes: Option<Vec<u8>>) {
        if offset < next {
            self.ack(
                tid,
                Ack {
                    next,
                    ..Ack::default()
                },
            )
            .await;
            return;
        }
        if offset > next {
            let Some(t) = self.transfer.as_mut() else {
                return;
            };
            if t.nak_for != Some(next) || t.gap_frames >= REPEAT_NAK_AFTER {
                t.nak_for = Some(next);
                t.gap_frames = 0;
                self.nak(tid, next, nak::GAP, "", 0).await;
            } else {
                t.gap_frames += 1;
            }
            return;
        }
        let Some(bytes) = bytes else {
            self.nak(tid, next, nak::BAD_CHUNK, "chunk length does not match", 0)
                .await;
            return;
        };
        if let Some(n) = self.write(tid, next, bytes, 0).await {
            if let Some(t) = self.transfer.as_mut() {
                t.nak_for = None;
                t.gap_frames = 0;
            }
            self.ack(
                tid,
                Ack {
                    next: n,
                    ..Ack::default()
                },
            )
            .await;
        }
    }

    /// Protocol 2: chunks ahead of a gap are held (within the window) and written once the gap
    /// is filled; every chunk is answered with what the charger holds.
    async fn data_selective(&mut self, tid: u16, offset: u64, tx: u32, bytes: Option<Vec<u8>>) {
        let Some(bytes) = bytes else {
            let next = self.transfer.as_ref().map_or(0, |t| t.next);
            self.nak(tid, next, nak::BAD_CHUNK, "chunk length does not match", tx)
                .await;
            return;
        };
        let window = self.opts.window as u64;
        let end = offset + bytes.len() as u64;
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        let mut echo = tx;
        if end > t.next + window {
            // Beyond what the charger keeps: not stored, the tool sends it again later.
            echo = 0;
        } else if end > t.next && offset > t.next {
            t.held.insert(offset, &bytes);
        } else if end > t.next {
            let next = t.next;
            let mut data = bytes[(next - offset) as usize..].to_vec();
            if t.held.bytes() > 0 {
                data.extend(t.held.take_from(end, WRITE_BATCH));
            }
            if self.write(tid, next, data, tx).await.is_none() {
                return;
            }
            // What is still held may continue the image further (batches are bounded).
            loop {
                let Some(t) = self.transfer.as_mut() else {
                    return;
                };
                let next = t.next;
                let more = t.held.take_from(next, WRITE_BATCH);
                if more.is_empty() {
                    break;
                }
                if self.write(tid, next, more, tx).await.is_none() {
                    return;
                }
            }
        }
        if echo == 0 {
            // Not kept: say so now, with nothing echoed.
            self.send_due_ack().await;
            let Some(t) = self.transfer.as_ref() else {
                return;
            };
            let ack = Ack {
                next: t.next,
                echo: 0,
                blocks: t.held.blocks(&[], codec::MAX_SACK_BLOCKS),
            };
            self.ack(tid, ack).await;
            return;
        }
        match &mut self.ack_due {
            Some(due) if due.tid == tid => {
                due.echo = echo;
                due.touched.push(offset);
                if due.touched.len() >= ACK_EVERY {
                    self.send_due_ack().await;
                }
            }
            _ => {
                self.send_due_ack().await;
                self.ack_due = Some(AckDue {
                    tid,
                    echo,
                    touched: vec![offset],
                });
            }
        }
    }

    /// Sends the acknowledgement owed for the chunks stored since the last one: one ACK for
    /// all that one read of the line brought (one per chunk on a slow line, far fewer on a
    /// fast one). Its blocks cover every range that took one of those chunks, so the tool
    /// counts none of them lost.
    pub(super) async fn send_due_ack(&mut self) {
        let Some(due) = self.ack_due.take() else {
            return;
        };
        let Some(t) = self.transfer.as_ref().filter(|t| t.id == due.tid) else {
            return;
        };
        let mut recent = std::mem::take(&mut self.last_ack.touched);
        if self.last_ack.tid != due.tid {
            recent.clear();
        }
        recent.extend_from_slice(&due.touched);
        let ack = Ack {
            next: t.next,
            echo: due.echo,
            blocks: t.held.blocks(&recent, codec::MAX_SACK_BLOCKS),
        };
        self.last_ack = LastAck {
            tid: due.tid,
            touched: due.touched,
        };
        self.ack(due.tid, ack).await;
    }

    /// Writes `data` at `at` through the backend; the new next offset, or `None` after a
    /// fatal NAK (the transfer is dropped).
    async fn write(&mut self, tid: u16, at: u64, data: Vec<u8>, tx: u32) -> Option<u64> {
        match self.backend.flash_write(at, data).await {
            Ok(n) => {
                let t = self.transfer.as_mut()?;
                t.next = n.min(t.size);
                Some(t.next)
            }
            Err(reason) => {
                self.transfer = None;
                self.nak(tid, at, nak::FATAL, &reason, tx).await;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(h: &Held) -> Vec<(u64, u64)> {
        h.map
            .iter()
            .map(|(&s, v)| (s, s + v.len() as u64))
            .collect()
    }

    #[test]
    fn held_keeps_only_new_bytes_and_joins_them_in_order() {
        let image: Vec<u8> = (0..100u8).collect();
        let mut h = Held::default();
        h.insert(40, &image[40..50]);
        h.insert(20, &image[20..30]);
        // Overlaps both ends of what is held and the gap between.
        h.insert(25, &image[25..45]);
        assert_eq!(ranges(&h), vec![(20, 30), (30, 40), (40, 50)]);
        assert_eq!(h.bytes(), 30);
        // A duplicate adds nothing.
        h.insert(22, &image[22..48]);
        assert_eq!(h.bytes(), 30);
        assert_eq!(h.blocks(&[45], 4), vec![(20, 50)]);
        h.insert(70, &image[70..80]);
        h.insert(60, &image[60..65]);
        assert_eq!(h.blocks(&[62], 4), vec![(60, 65), (70, 80), (20, 50)]);
        assert_eq!(h.blocks(&[62], 2), vec![(60, 65), (70, 80)]);
        // Every range that took a recent chunk comes first, the latest first.
        assert_eq!(
            h.blocks(&[21, 71, 61, 500], 8),
            vec![(60, 65), (70, 80), (20, 50)]
        );
        // Nothing continues the image at 10.
        assert!(h.take_from(10, 1024).is_empty());
        // From 25: the held range from 20 is cut to start at 25.
        let got = h.take_from(25, 1024);
        assert_eq!(got, image[25..50].to_vec());
        assert_eq!(ranges(&h), vec![(60, 65), (70, 80)]);
        assert_eq!(h.bytes(), 15);
    }

    #[test]
    fn held_batches_are_bounded() {
        let mut h = Held::default();
        for i in 0..10u64 {
            h.insert(i * 100, &[1u8; 100]);
        }
        let first = h.take_from(0, 250);
        assert_eq!(first.len(), 300);
        let rest = h.take_from(300, 10_000);
        assert_eq!(rest.len(), 700);
        assert_eq!(h.bytes(), 0);
    }
}
