//! Wire framing: `0x00 COBS(header | body | crc32c_le) 0x00`.
//!
//! Every frame starts and ends with the `0x00` delimiter, so bytes that are not frames (a boot
//! banner, line noise) are isolated between delimiters, skipped, counted, and surfaced as console
//! text when they are printable. The decoder's buffer is capped at the largest valid encoded
//! frame; anything longer is dropped up to the next delimiter.

use crc::{CRC_32_ISCSI, Crc};

/// Framing version carried in every header. The service protocol on top is negotiated in
/// HELLO (see [`super::codec::PROTO_MAX`]).
pub const PROTO_VERSION: u8 = 1;
/// Header bytes: version, kind, channel, flags, id (u16 LE).
pub const HEADER_LEN: usize = 6;
/// CRC-32C trailer bytes.
pub const CRC_LEN: usize = 4;
/// Largest firmware payload in one DATA frame.
pub const MAX_CHUNK: usize = 4096;
/// Largest frame body: a full chunk plus the DATA fields.
pub const MAX_BODY: usize = MAX_CHUNK + 32;
/// Largest decoded frame (header, body, CRC).
pub const MAX_RAW: usize = HEADER_LEN + MAX_BODY + CRC_LEN;
/// Largest encoded frame without delimiters: COBS adds one byte per 254 plus one.
pub const MAX_ENCODED: usize = MAX_RAW + MAX_RAW / 254 + 2;

static CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// Frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Req = 1,
    Rsp = 2,
    Evt = 3,
    Data = 4,
    Ack = 5,
    Nak = 6,
    Hello = 7,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Req,
            2 => Kind::Rsp,
            3 => Kind::Evt,
            4 => Kind::Data,
            5 => Kind::Ack,
            6 => Kind::Nak,
            7 => Kind::Hello,
            _ => return None,
        })
    }
}

/// Logical channels multiplexed on one line.
pub mod channel {
    pub const CONTROL: u8 = 0;
    pub const LOG: u8 = 1;
    pub const FIRMWARE: u8 = 2;
}

/// Header flag bits.
pub mod flags {
    /// More response parts follow for this request id.
    pub const MORE: u8 = 0b0000_0001;
    /// The DATA payload is raw-deflate compressed.
    pub const DEFLATE: u8 = 0b0000_0010;
    /// Protocol 2: a REQ asking for parts of an answer again (body: [`crate::link::codec::Resend`]).
    pub const RESEND: u8 = 0b0000_0100;
}

/// True for the channels the protocol defines.
pub fn channel_defined(ch: u8) -> bool {
    matches!(ch, channel::CONTROL | channel::LOG | channel::FIRMWARE)
}

/// The name of a defined channel.
pub fn channel_name(ch: u8) -> Option<&'static str> {
    match ch {
        channel::CONTROL => Some("control"),
        channel::LOG => Some("log"),
        channel::FIRMWARE => Some("firmware"),
        _ => None,
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub channel: u8,
    pub flags: u8,
    pub id: u16,
    pub body: Vec<u8>,
}

impl Frame {
    pub fn new(kind: Kind, channel: u8, id: u16, body: Vec<u8>) -> Frame {
        Frame {
            kind,
            channel,
            flags: 0,
            id,
            body,
        }
    }

    pub fn with_flags(mut self, flags: u8) -> Frame {
        self.flags |= flags;
        self
    }

    /// Appends the frame's wire form (leading and trailing delimiter included) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut raw = Vec::with_capacity(HEADER_LEN + self.body.len() + CRC_LEN);
        raw.push(PROTO_VERSION);
        raw.push(self.kind as u8);
        raw.push(self.channel);
        raw.push(self.flags);
        raw.extend_from_slice(&self.id.to_le_bytes());
        raw.extend_from_slice(&self.body);
        let crc = CRC32C.checksum(&raw);
        raw.extend_from_slice(&crc.to_le_bytes());
        out.push(0);
        cobs_encode(&raw, out);
        out.push(0);
    }

    /// The frame's wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 24);
        self.encode_into(&mut out);
        out
    }
}

/// COBS-encodes `input` (no delimiter) onto `out`.
pub fn cobs_encode(input: &[u8], out: &mut Vec<u8>) {
    let mut code_at = out.len();
    out.push(0);
    let mut code: u8 = 1;
    for &b in input {
        if b == 0 {
            out[code_at] = code;
            code_at = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
            if code == 0xFF {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[code_at] = code;
}

/// Decodes one COBS block (no delimiter). `None` when the block is not valid COBS.
pub fn cobs_decode(input: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut i = 0;
    while i < input.len() {
        let code = input[i] as usize;
        if code == 0 {
            return None;
        }
        i += 1;
        let end = i + code - 1;
        if end > input.len() {
            return None;
        }
        out.extend_from_slice(&input[i..end]);
        i = end;
        if code != 0xFF && i < input.len() {
            out.push(0);
        }
    }
    Some(())
}

/// Counters kept by a [`Decoder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub frames_ok: u64,
    pub crc_errors: u64,
    pub cobs_errors: u64,
    pub bad_header: u64,
    pub oversize: u64,
    pub garbage_bytes: u64,
}

/// What the decoder found between two delimiters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Frame(Frame),
    /// Printable bytes that were not a frame (a boot banner, console output).
    Text(String),
}

/// Streaming frame decoder with a capped buffer.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    cap: usize,
    skipping: bool,
    scratch: Vec<u8>,
    stats: Stats,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::with_cap(MAX_ENCODED)
    }

    /// A decoder whose buffer never grows beyond `cap` bytes.
    pub fn with_cap(cap: usize) -> Decoder {
        Decoder {
            buf: Vec::with_capacity(cap.min(MAX_ENCODED)),
            cap,
            skipping: false,
            scratch: Vec::new(),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Bytes currently held (never more than the cap).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds bytes; every frame or text block completed by them goes to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Decoded>) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == 0) {
                Some(pos) => {
                    self.absorb(&data[..pos], out);
                    self.finish_block(out);
                    data = &data[pos + 1..];
                }
                None => {
                    self.absorb(data, out);
                    data = &[];
                }
            }
        }
    }

    fn absorb(&mut self, bytes: &[u8], out: &mut Vec<Decoded>) {
        if self.skipping {
            self.stats.garbage_bytes += bytes.len() as u64;
            return;
        }
        if self.buf.len() + bytes.len() > self.cap {
            self.stats.oversize += 1;
            self.stats.garbage_bytes += (self.buf.len() + bytes.len()) as u64;
            let take = self.cap - self.buf.len();
            self.buf.extend_from_slice(&bytes[..take]);
            if let Some(text) = printable(&self.buf) {
                out.push(Decoded::Text(text));
            }
            self.buf.clear();
            self.skipping = true;
            return;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn finish_block(&mut self, out: &mut Vec<Decoded>) {
        if self.skipping {
            self.skipping = false;
            self.buf.clear();
            return;
        }
        if self.buf.is_empty() {
            return;
        }
        let block = std::mem::take(&mut self.buf);
        match self.decode_block(&block) {
            Ok(frame) => {
                self.stats.frames_ok += 1;
                out.push(Decoded::Frame(frame));
            }
            Err(()) => {
                self.stats.garbage_bytes += block.len() as u64;
                if let Some(text) = printable(&block) {
                    out.push(Decoded::Text(text));
                }
            }
        }
        self.buf = block;
        self.buf.clear();
    }

    fn decode_block(&mut self, block: &[u8]) -> Result<Frame, ()> {
        decode_block_into(block, &mut self.scratch).map_err(|e| {
            match e {
                BlockError::Cobs => self.stats.cobs_errors += 1,
                BlockError::Length | BlockError::Header => self.stats.bad_header += 1,
                BlockError::Crc => self.stats.crc_errors += 1,
            };
        })
    }
}

/// Why a block between two delimiters is not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("not valid COBS")]
    Cobs,
    #[error("shorter than a header and CRC, or longer than the largest frame")]
    Length,
    #[error("CRC mismatch")]
    Crc,
    #[error("unknown framing version or frame kind")]
    Header,
}

/// Decodes one block found between two delimiters (without them). Callable on any bytes: the
/// entry point for fuzzing the frame decoder.
pub fn decode_block(block: &[u8]) -> Result<Frame, BlockError> {
    decode_block_into(block, &mut Vec::new())
}

fn decode_block_into(block: &[u8], scratch: &mut Vec<u8>) -> Result<Frame, BlockError> {
    scratch.clear();
    if block.len() > MAX_ENCODED {
        return Err(BlockError::Length);
    }
    if cobs_decode(block, scratch).is_none() {
        return Err(BlockError::Cobs);
    }
    let raw = &scratch[..];
    if raw.len() < HEADER_LEN + CRC_LEN || raw.len() > MAX_RAW {
        return Err(BlockError::Length);
    }
    let (content, crc) = raw.split_at(raw.len() - CRC_LEN);
    let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if CRC32C.checksum(content) != want {
        return Err(BlockError::Crc);
    }
    let kind = match (content[0], Kind::from_u8(content[1])) {
        (PROTO_VERSION, Some(kind)) => kind,
        _ => return Err(BlockError::Header),
    };
    Ok(Frame {
        kind,
        channel: content[2],
        flags: content[3],
        id: u16::from_le_bytes([content[4], content[5]]),
        body: content[HEADER_LEN..].to_vec(),
    })
}

/// The block as text when it is mostly printable (console output, a boot banner).
fn printable(block: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(block);
    let mut good = 0usize;
    let mut total = 0usize;
    for c in text.chars() {
        total += 1;
        if (!c.is_control() || matches!(c, '\r' | '\n' | '\t')) && c != char::REPLACEMENT_CHARACTER
        {
            good += 1;
        }
    }
    let trimmed = text.trim();
    if total > 0 && good * 10 >= total * 9 && !trimmed.is_empty() {
        Some(trimmed.to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    fn frames(out: Vec<Decoded>) -> Vec<Frame> {
        out.into_iter()
            .filter_map(|d| match d {
                Decoded::Frame(f) => Some(f),
                Decoded::Text(_) => None,
            })
            .collect()
    }

    #[test]
    fn cobs_round_trips_edge_lengths() {
        let mut seed = 0x1234_5678_9abc_def0;
        for len in [0usize, 1, 253, 254, 255, 508, 509, 1000, 4200] {
            for zeros in [false, true] {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        let v = rng(&mut seed) as u8;
                        if zeros { v & 1 } else { v | 1 }
                    })
                    .collect();
                let mut enc = Vec::new();
                cobs_encode(&data, &mut enc);
                assert!(!enc.contains(&0), "len {len}");
                assert!(enc.len() <= len + len / 254 + 1);
                let mut dec = Vec::new();
                cobs_decode(&enc, &mut dec).expect("valid cobs");
                assert_eq!(dec, data, "len {len} zeros {zeros}");
            }
        }
    }

    #[test]
    fn encode_decode_round_trip_property() {
        let mut seed = 42u64;
        let mut dec = Decoder::new();
        for n in 0..500 {
            let len = (rng(&mut seed) % (MAX_BODY as u64 + 1)) as usize;
            let body: Vec<u8> = (0..len).map(|_| rng(&mut seed) as u8).collect();
            let f = Frame {
                kind: Kind::from_u8((n % 7 + 1) as u8).expect("kind"),
                channel: (n % 3) as u8,
                flags: (n % 4) as u8,
                id: rng(&mut seed) as u16,
                body,
            };
            let wire = f.encode();
            assert!(wire.len() <= MAX_ENCODED + 2);
            // Feed in random slices.
            let mut out = Vec::new();
            let mut rest = &wire[..];
            while !rest.is_empty() {
                let k = 1 + (rng(&mut seed) as usize % rest.len());
                dec.push(&rest[..k], &mut out);
                rest = &rest[k..];
            }
            assert_eq!(frames(out), vec![f]);
        }
        assert_eq!(dec.stats().frames_ok, 500);
        assert_eq!(dec.stats().crc_errors, 0);
    }

    #[test]
    fn random_bytes_never_panic_and_stay_under_the_cap() {
        let mut seed = 7u64;
        let mut dec = Decoder::new();
        let mut out = Vec::new();
        for _ in 0..2000 {
            let len = (rng(&mut seed) % 9000) as usize;
            let zero_every = 1 + rng(&mut seed) % 5000;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    let v = rng(&mut seed);
                    if v.is_multiple_of(zero_every) {
                        0
                    } else {
                        v as u8
                    }
                })
                .collect();
            dec.push(&data, &mut out);
            assert!(dec.buffered() <= MAX_ENCODED);
            assert!(
                dec.buf.capacity() <= 2 * MAX_ENCODED,
                "buffer grew to {}",
                dec.buf.capacity()
            );
            out.clear();
        }
        // Still decodes a good frame after all that noise.
        let f = Frame::new(Kind::Req, 0, 9, b"after noise".to_vec());
        dec.push(&f.encode(), &mut out);
        assert_eq!(frames(out), vec![f]);
    }

    #[test]
    fn garbage_between_frames_is_skipped_and_text_surfaced() {
        let a = Frame::new(Kind::Evt, 1, 1, vec![1, 2, 3]);
        let b = Frame::new(Kind::Rsp, 0, 2, vec![0, 0, 0]);
        let mut wire = b"Booting firmware 2.1.0...\r\n".to_vec();
        wire.extend(a.encode());
        wire.extend([0xFF, 0x13, 0x77, 0x00]);
        wire.extend(b.encode());
        let mut dec = Decoder::new();
        let mut out = Vec::new();
        dec.push(&wire, &mut out);
        assert_eq!(out[0], Decoded::Text("Booting firmware 2.1.0...".into()));
        assert_eq!(frames(out), vec![a, b]);
        assert_eq!(dec.stats().frames_ok, 2);
        assert!(dec.stats().garbage_bytes >= 3);
    }

    #[test]
    fn a_flipped_byte_costs_only_its_frame() {
        let a = Frame::new(Kind::Data, 2, 5, vec![0xAB; 300]);
        let b = Frame::new(Kind::Data, 2, 5, vec![0xCD; 300]);
        let mut wa = a.encode();
        wa[100] ^= 0x10;
        wa.extend(b.encode());
        let mut dec = Decoder::new();
        let mut out = Vec::new();
        dec.push(&wa, &mut out);
        assert_eq!(frames(out), vec![b]);
        assert_eq!(dec.stats().crc_errors + dec.stats().cobs_errors, 1);
    }

    #[test]
    fn oversize_block_is_dropped_to_the_next_delimiter() {
        let mut dec = Decoder::with_cap(64);
        let mut out = Vec::new();
        dec.push(&[0x41; 200], &mut out);
        assert!(dec.buffered() <= 64);
        let f = Frame::new(Kind::Ack, 2, 1, vec![1; 8]);
        dec.push(&f.encode(), &mut out);
        assert_eq!(dec.stats().oversize, 1);
        assert_eq!(frames(out), vec![f]);
    }
}
