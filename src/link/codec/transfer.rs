//! The firmware transfer's bodies: FLASH_BEGIN's answer, DATA chunks, their ACK (cumulative
//! with selective acknowledgement of the ranges held beyond it) and NAK, and the REQ body that
//! asks for answer parts again.

use super::{Dec, Enc, MAX_ITEMS, PROTO_SELECTIVE};
use crate::link::error::{Error, Result};

/// Answer to FLASH_BEGIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashStart {
    pub transfer: u16,
    pub resume_offset: u64,
    pub window: u32,
    pub max_chunk: u32,
}

/// DATA body header of protocol 1: offset of the chunk in the image, its uncompressed length,
/// then the bytes.
pub fn encode_data(offset: u64, raw_len: u32, payload: &[u8]) -> Vec<u8> {
    let mut e = Enc::new();
    e.u64(offset).u32(raw_len);
    e.0.extend_from_slice(payload);
    e.finish()
}

/// A firmware chunk (DATA body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data<'a> {
    /// Offset of the chunk in the image and its uncompressed length.
    pub offset: u64,
    pub raw_len: u32,
    /// Transmission number (protocol 2; 0 in protocol 1): the charger echoes it in its ACK, so
    /// the tool knows exactly which transmission arrived.
    pub tx: u32,
    pub payload: &'a [u8],
}

impl<'a> Data<'a> {
    /// Protocol 1: offset u64, length u32, payload. Protocol 2: offset, length and
    /// transmission as LEB128, payload.
    pub fn encode(&self, proto: u8) -> Vec<u8> {
        let mut e = Enc::new();
        if proto >= PROTO_SELECTIVE {
            e.varint(self.offset)
                .varint(self.raw_len as u64)
                .varint(self.tx as u64);
        } else {
            e.u64(self.offset).u32(self.raw_len);
        }
        e.0.extend_from_slice(self.payload);
        e.finish()
    }

    pub fn decode(body: &'a [u8], proto: u8) -> Result<Data<'a>> {
        let mut d = Dec::new(body);
        let (offset, raw_len, tx) = if proto >= PROTO_SELECTIVE {
            let offset = d.varint("chunk offset")?;
            let at = d.position();
            let raw_len =
                u32::try_from(d.varint("chunk length")?).map_err(|_| Error::Malformed {
                    what: "chunk length",
                    offset: at,
                })?;
            let at = d.position();
            let tx = u32::try_from(d.varint("transmission")?).map_err(|_| Error::Malformed {
                what: "transmission",
                offset: at,
            })?;
            (offset, raw_len, tx)
        } else {
            (d.u64("chunk offset")?, d.u32("chunk length")?, 0)
        };
        Ok(Data {
            offset,
            raw_len,
            tx,
            payload: d.rest(),
        })
    }
}

/// Most received ranges one ACK reports beyond the cumulative offset.
pub const MAX_SACK_BLOCKS: usize = 32;

/// A firmware acknowledgement (ACK body).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ack {
    /// Every image byte below this offset is stored (cumulative).
    pub next: u64,
    /// Protocol 2: the transmission that caused this ACK, stored or already held (0: none,
    /// the chunk was not kept).
    pub echo: u32,
    /// Protocol 2: ranges `[start, end)` beyond `next` the charger holds, the one with the
    /// most recent chunk first.
    pub blocks: Vec<(u64, u64)>,
}

impl Ack {
    /// Protocol 1: next u64. Protocol 2 adds echo (LEB128), a block count (u8) and per block
    /// its distance from the previous end (from `next` for the first listed) and its length,
    /// both LEB128.
    pub fn encode(&self, proto: u8) -> Vec<u8> {
        let mut e = Enc::new();
        e.u64(self.next);
        if proto >= PROTO_SELECTIVE {
            e.varint(self.echo as u64);
            let blocks = &self.blocks[..self.blocks.len().min(MAX_SACK_BLOCKS)];
            e.u8(blocks.len() as u8);
            for &(start, end) in blocks {
                e.varint(start.saturating_sub(self.next))
                    .varint(end.saturating_sub(start));
            }
        }
        e.finish()
    }

    pub fn decode(body: &[u8], proto: u8) -> Result<Ack> {
        let mut d = Dec::new(body);
        let next = d.u64("acknowledged offset")?;
        if proto < PROTO_SELECTIVE {
            return Ok(Ack {
                next,
                ..Ack::default()
            });
        }
        let at = d.position();
        let echo =
            u32::try_from(d.varint("echoed transmission")?).map_err(|_| Error::Malformed {
                what: "echoed transmission",
                offset: at,
            })?;
        let at = d.position();
        let n = d.u8("block count")? as usize;
        if n > MAX_SACK_BLOCKS {
            return Err(Error::Malformed {
                what: "block count",
                offset: at,
            });
        }
        let mut blocks = Vec::with_capacity(n);
        for _ in 0..n {
            let at = d.position();
            let start = next.checked_add(d.varint("block start")?);
            let len = d.varint("block length")?;
            match start.and_then(|s| s.checked_add(len).map(|e| (s, e))) {
                Some((s, e)) if len > 0 => blocks.push((s, e)),
                _ => {
                    return Err(Error::Malformed {
                        what: "received block",
                        offset: at,
                    });
                }
            }
        }
        Ok(Ack { next, echo, blocks })
    }
}

/// A firmware refusal (NAK body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nak {
    pub next: u64,
    /// One of [`nak`].
    pub reason: u8,
    pub detail: String,
    /// Protocol 2: the transmission refused (0 when none).
    pub echo: u32,
}

impl Nak {
    /// next u64, reason u8, detail str; protocol 2 appends echo (LEB128).
    pub fn encode(&self, proto: u8) -> Vec<u8> {
        let mut e = Enc::new();
        e.u64(self.next).u8(self.reason).str(&self.detail);
        if proto >= PROTO_SELECTIVE {
            e.varint(self.echo as u64);
        }
        e.finish()
    }

    pub fn decode(body: &[u8], proto: u8) -> Result<Nak> {
        let mut d = Dec::new(body);
        let next = d.u64("acknowledged offset")?;
        let reason = d.u8("nak reason")?;
        let detail = d.str("nak detail")?;
        let echo = if proto >= PROTO_SELECTIVE {
            let at = d.position();
            u32::try_from(d.varint("echoed transmission")?).map_err(|_| Error::Malformed {
                what: "echoed transmission",
                offset: at,
            })?
        } else {
            0
        };
        Ok(Nak {
            next,
            reason,
            detail,
            echo,
        })
    }
}

/// Body of a REQ with the [`super::frame::flags::RESEND`] flag: which parts of an answer
/// to send again, followed by the original request (executed when the charger no longer
/// holds the answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resend<'a> {
    /// Parts missing below the highest one received.
    pub parts: Vec<u16>,
    /// Every part from this number on is missing too (the last part was never seen).
    pub from: Option<u16>,
    pub request: &'a [u8],
}

impl<'a> Resend<'a> {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        let parts = &self.parts[..self.parts.len().min(MAX_ITEMS)];
        e.len(parts.len());
        for p in parts {
            e.u16(*p);
        }
        e.u16(self.from.unwrap_or(u16::MAX));
        e.0.extend_from_slice(self.request);
        e.finish()
    }

    pub fn decode(body: &'a [u8]) -> Result<Resend<'a>> {
        let mut d = Dec::new(body);
        let n = d.len("part count", MAX_ITEMS)?;
        let parts = (0..n)
            .map(|_| d.u16("part number"))
            .collect::<Result<Vec<_>>>()?;
        let from = Some(d.u16("open part")?).filter(|p| *p != u16::MAX);
        Ok(Resend {
            parts,
            from,
            request: d.rest(),
        })
    }

    /// True when part `n` is asked for.
    pub fn wants(&self, n: u16) -> bool {
        self.from.is_some_and(|f| n >= f) || self.parts.contains(&n)
    }
}

/// NAK reasons.
pub mod nak {
    /// A chunk arrived beyond the next expected offset (one was lost): go back.
    pub const GAP: u8 = 1;
    /// A chunk could not be decompressed or had the wrong length.
    pub const BAD_CHUNK: u8 = 2;
    /// The transfer id is unknown (the charger restarted): begin again, it resumes.
    pub const UNKNOWN_TRANSFER: u8 = 3;
    /// The charger cannot store the image; the reason text is final.
    pub const FATAL: u8 = 4;
}
