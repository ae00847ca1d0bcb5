//! Frame bodies: a small hand-written binary encoding (little-endian integers, LEB128 lengths,
//! UTF-8 strings) and the messages of the service protocol. Firmware DATA is raw bytes.

use super::error::{Error, Result};
use serde::Serialize;

mod transfer;
pub use transfer::*;

/// Longest string accepted in a body (OCPP values are at most 500 characters).
pub const MAX_STR: usize = 2048;
/// Most items accepted in one list.
pub const MAX_ITEMS: usize = 1024;

/// Body writer.
#[derive(Debug, Default)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    pub fn new() -> Enc {
        Enc(Vec::new())
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(v as u8)
    }
    pub fn len(&mut self, mut v: usize) -> &mut Self {
        loop {
            let byte = (v & 0x7F) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return self;
            }
            self.0.push(byte | 0x80);
        }
    }
    /// An unsigned LEB128 integer.
    pub fn varint(&mut self, mut v: u64) -> &mut Self {
        loop {
            let byte = (v & 0x7F) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return self;
            }
            self.0.push(byte | 0x80);
        }
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.len(v.len());
        self.0.extend_from_slice(v);
        self
    }
    /// A string, cut at [`MAX_STR`] bytes on a character boundary.
    pub fn str(&mut self, v: &str) -> &mut Self {
        let mut end = v.len().min(MAX_STR);
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes(&v.as_bytes()[..end])
    }
    pub fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(s) => self.u8(1).str(s),
            None => self.u8(0),
        }
    }
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Body reader; every failure names what was being read and the byte offset.
#[derive(Debug)]
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Dec<'a> {
        Dec { buf, pos: 0 }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(Error::Malformed {
                what,
                offset: self.pos,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub fn i64(&mut self, what: &'static str) -> Result<i64> {
        Ok(self.u64(what)? as i64)
    }
    pub fn bool(&mut self, what: &'static str) -> Result<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::Malformed {
                what,
                offset: self.pos - 1,
            }),
        }
    }
    pub fn len(&mut self, what: &'static str, max: usize) -> Result<usize> {
        let start = self.pos;
        let mut v: usize = 0;
        for shift in (0..35).step_by(7) {
            let b = self.u8(what)?;
            v |= ((b & 0x7F) as usize) << shift;
            if b & 0x80 == 0 {
                if v > max {
                    return Err(Error::Malformed {
                        what,
                        offset: start,
                    });
                }
                return Ok(v);
            }
        }
        Err(Error::Malformed {
            what,
            offset: start,
        })
    }
    /// An unsigned LEB128 integer of at most 64 bits.
    pub fn varint(&mut self, what: &'static str) -> Result<u64> {
        let start = self.pos;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8(what)?;
            let bits = (b & 0x7F) as u64;
            if shift == 63 && bits > 1 {
                break;
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::Malformed {
            what,
            offset: start,
        })
    }
    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8]> {
        let n = self.len(what, max)?;
        self.take(n, what)
    }
    pub fn str(&mut self, what: &'static str) -> Result<String> {
        let at = self.pos;
        let b = self.bytes(what, MAX_STR)?;
        String::from_utf8(b.to_vec()).map_err(|_| Error::Malformed { what, offset: at })
    }
    pub fn opt_str(&mut self, what: &'static str) -> Result<Option<String>> {
        if self.bool(what)? {
            Ok(Some(self.str(what)?))
        } else {
            Ok(None)
        }
    }
    pub fn strs(&mut self, what: &'static str) -> Result<Vec<String>> {
        let n = self.len(what, MAX_ITEMS)?;
        (0..n).map(|_| self.str(what)).collect()
    }
    pub fn array32(&mut self, what: &'static str) -> Result<[u8; 32]> {
        let b = self.take(32, what)?;
        let mut a = [0u8; 32];
        a.copy_from_slice(b);
        Ok(a)
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    pub fn position(&self) -> usize {
        self.pos
    }
}

fn enc_strs(e: &mut Enc, v: &[String]) {
    e.len(v.len());
    for s in v {
        e.str(s);
    }
}

// ---------------------------------------------------------------------------------------------
// Plain types shared by the charger side and the tool side.

/// Boot state of the running firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BootState {
    /// Running a confirmed image.
    Normal,
    /// Running a newly flashed image on trial.
    Trial,
    /// Went back to the previous image after a failed boot.
    Reverted,
}

impl BootState {
    fn to_u8(self) -> u8 {
        match self {
            BootState::Normal => 0,
            BootState::Trial => 1,
            BootState::Reverted => 2,
        }
    }
    fn from_u8(v: u8, offset: usize) -> Result<BootState> {
        Ok(match v {
            0 => BootState::Normal,
            1 => BootState::Trial,
            2 => BootState::Reverted,
            _ => {
                return Err(Error::Malformed {
                    what: "boot state",
                    offset,
                });
            }
        })
    }
}

/// The service port's answer to "identify" on the wire: the charger's identity (field by field,
/// in the order the codec writes them), its firmware slots, uptime and boot state. Convert it to
/// the charger's [`crate::stack::identity::Identity`] with `From`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub vendor: String,
    pub model: String,
    pub serial_number: String,
    pub firmware_version: String,
    /// Slot the charger booted from, such as "A".
    pub active_slot: String,
    pub inactive_slot: String,
    /// Version staged in the inactive slot, if any.
    pub inactive_version: Option<String>,
    pub uptime_secs: u64,
    pub boot_state: BootState,
}

impl Identity {
    pub fn encode(&self, e: &mut Enc) {
        e.str(&self.vendor)
            .str(&self.model)
            .str(&self.serial_number)
            .str(&self.firmware_version)
            .str(&self.active_slot)
            .str(&self.inactive_slot)
            .opt_str(self.inactive_version.as_deref())
            .u64(self.uptime_secs)
            .u8(self.boot_state.to_u8());
    }
    pub fn decode(d: &mut Dec) -> Result<Identity> {
        Ok(Identity {
            vendor: d.str("vendor")?,
            model: d.str("model")?,
            serial_number: d.str("serial number")?,
            firmware_version: d.str("firmware version")?,
            active_slot: d.str("active slot")?,
            inactive_slot: d.str("inactive slot")?,
            inactive_version: d.opt_str("inactive version")?,
            uptime_secs: d.u64("uptime")?,
            boot_state: {
                let at = d.position();
                BootState::from_u8(d.u8("boot state")?, at)?
            },
        })
    }
}

impl From<&Identity> for crate::stack::identity::Identity {
    fn from(wire: &Identity) -> Self {
        Self {
            vendor: wire.vendor.clone(),
            model: wire.model.clone(),
            serial_number: wire.serial_number.clone(),
            firmware_version: wire.firmware_version.clone(),
        }
    }
}

/// One configuration key as the charger reports it. A write-only key never carries a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigEntry {
    pub key: String,
    pub value: Option<String>,
    pub readonly: bool,
    pub write_only: bool,
    /// "integer", "boolean", "string", "csl" (comma-separated list), ...
    pub value_type: String,
    pub reboot_required: bool,
}

impl ConfigEntry {
    fn encode(&self, e: &mut Enc) {
        let value = if self.write_only {
            None
        } else {
            self.value.as_deref()
        };
        e.str(&self.key)
            .opt_str(value)
            .u8(self.readonly as u8
                | (self.write_only as u8) << 1
                | (self.reboot_required as u8) << 2)
            .str(&self.value_type);
    }
    fn decode(d: &mut Dec) -> Result<ConfigEntry> {
        let key = d.str("config key")?;
        let value = d.opt_str("config value")?;
        let bits = d.u8("config flags")?;
        let value_type = d.str("config type")?;
        let write_only = bits & 2 != 0;
        Ok(ConfigEntry {
            key,
            value: if write_only { None } else { value },
            readonly: bits & 1 != 0,
            write_only,
            value_type,
            reboot_required: bits & 4 != 0,
        })
    }
}

/// Answer to a configuration read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConfigRead {
    pub entries: Vec<ConfigEntry>,
    pub unknown: Vec<String>,
}

impl ConfigRead {
    /// Splits the answer into parts of at most `budget` bytes each (one entry may exceed it).
    pub fn encode_parts(&self, budget: usize) -> Vec<Vec<u8>> {
        let mut parts = Vec::new();
        let mut cur = Enc::new();
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut size = 0;
        let flush = |batch: &mut Vec<Vec<u8>>, unknown: &[String], parts: &mut Vec<Vec<u8>>| {
            let mut e = Enc::new();
            e.len(batch.len());
            for b in batch.drain(..) {
                e.0.extend_from_slice(&b);
            }
            enc_strs(&mut e, unknown);
            parts.push(e.finish());
        };
        for entry in &self.entries {
            cur.0.clear();
            entry.encode(&mut cur);
            if size + cur.0.len() > budget && !batch.is_empty() {
                flush(&mut batch, &[], &mut parts);
                size = 0;
            }
            size += cur.0.len();
            batch.push(std::mem::take(&mut cur.0));
        }
        flush(&mut batch, &self.unknown, &mut parts);
        parts
    }

    /// Adds one part's entries and unknown keys.
    pub fn decode_part(&mut self, body: &[u8]) -> Result<()> {
        let mut d = Dec::new(body);
        let n = d.len("entry count", MAX_ITEMS)?;
        for _ in 0..n {
            self.entries.push(ConfigEntry::decode(&mut d)?);
        }
        self.unknown.extend(d.strs("unknown keys")?);
        Ok(())
    }
}

/// Result of writing one key, with the same meaning as OCPP ChangeConfiguration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum SetOutcome {
    Accepted,
    RebootRequired,
    Rejected(String),
    NotSupported,
}

impl SetOutcome {
    pub fn encode(&self, e: &mut Enc) {
        match self {
            SetOutcome::Accepted => e.u8(0),
            SetOutcome::RebootRequired => e.u8(1),
            SetOutcome::Rejected(r) => e.u8(2).str(r),
            SetOutcome::NotSupported => e.u8(3),
        };
    }
    pub fn decode(d: &mut Dec) -> Result<SetOutcome> {
        let at = d.position();
        Ok(match d.u8("set outcome")? {
            0 => SetOutcome::Accepted,
            1 => SetOutcome::RebootRequired,
            2 => SetOutcome::Rejected(d.str("reject reason")?),
            3 => SetOutcome::NotSupported,
            _ => {
                return Err(Error::Malformed {
                    what: "set outcome",
                    offset: at,
                });
            }
        })
    }
    /// True when the charger stored the value.
    pub fn is_applied(&self) -> bool {
        matches!(self, SetOutcome::Accepted | SetOutcome::RebootRequired)
    }
}

// ---------------------------------------------------------------------------------------------
// Requests.

/// Operation codes of REQ frames.
pub mod op {
    pub const IDENTIFY: u8 = 0x01;
    pub const CONFIG_GET: u8 = 0x02;
    pub const CONFIG_SET: u8 = 0x03;
    pub const LOG_SUBSCRIBE: u8 = 0x04;
    pub const LOG_UNSUBSCRIBE: u8 = 0x05;
    pub const REBOOT: u8 = 0x06;
    pub const PING: u8 = 0x07;
    /// The charger's OCPP state (connection, registration, last connection error).
    pub const OCPP_STATUS: u8 = 0x08;
    /// The recent OCPP frames the charger keeps.
    pub const OCPP_TRACE: u8 = 0x09;
    pub const FLASH_BEGIN: u8 = 0x10;
    pub const FLASH_FINISH: u8 = 0x11;
}

/// A request from the tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Identify,
    ConfigGet {
        keys: Vec<String>,
    },
    ConfigSet {
        key: String,
        value: String,
    },
    LogSubscribe {
        min_level: u8,
        history: bool,
        follow: bool,
    },
    LogUnsubscribe,
    Reboot,
    Ping,
    /// Answered with an [`super::ocpp_state::OcppStatus`].
    OcppStatus,
    /// Answered with the trace in parts ([`super::ocpp_state::decode_trace_part`]).
    OcppTrace,
    FlashBegin {
        sha256: [u8; 32],
        size: u64,
        header: Vec<u8>,
    },
    FlashFinish {
        transfer: u16,
    },
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        match self {
            Request::Identify => {
                e.u8(op::IDENTIFY);
            }
            Request::ConfigGet { keys } => {
                e.u8(op::CONFIG_GET);
                enc_strs(&mut e, keys);
            }
            Request::ConfigSet { key, value } => {
                e.u8(op::CONFIG_SET).str(key).str(value);
            }
            Request::LogSubscribe {
                min_level,
                history,
                follow,
            } => {
                e.u8(op::LOG_SUBSCRIBE)
                    .u8(*min_level)
                    .bool(*history)
                    .bool(*follow);
            }
            Request::LogUnsubscribe => {
                e.u8(op::LOG_UNSUBSCRIBE);
            }
            Request::Reboot => {
                e.u8(op::REBOOT);
            }
            Request::Ping => {
                e.u8(op::PING);
            }
            Request::OcppStatus => {
                e.u8(op::OCPP_STATUS);
            }
            Request::OcppTrace => {
                e.u8(op::OCPP_TRACE);
            }
            Request::FlashBegin {
                sha256,
                size,
                header,
            } => {
                e.u8(op::FLASH_BEGIN);
                e.0.extend_from_slice(sha256);
                e.u64(*size).bytes(header);
            }
            Request::FlashFinish { transfer } => {
                e.u8(op::FLASH_FINISH).u16(*transfer);
            }
        }
        e.finish()
    }

    pub fn decode(body: &[u8]) -> Result<Request> {
        let mut d = Dec::new(body);
        Ok(match d.u8("operation")? {
            op::IDENTIFY => Request::Identify,
            op::CONFIG_GET => Request::ConfigGet {
                keys: d.strs("config keys")?,
            },
            op::CONFIG_SET => Request::ConfigSet {
                key: d.str("config key")?,
                value: d.str("config value")?,
            },
            op::LOG_SUBSCRIBE => Request::LogSubscribe {
                min_level: d.u8("log level")?,
                history: d.bool("history flag")?,
                follow: d.bool("follow flag")?,
            },
            op::LOG_UNSUBSCRIBE => Request::LogUnsubscribe,
            op::REBOOT => Request::Reboot,
            op::PING => Request::Ping,
            op::OCPP_STATUS => Request::OcppStatus,
            op::OCPP_TRACE => Request::OcppTrace,
            op::FLASH_BEGIN => Request::FlashBegin {
                sha256: d.array32("image sha256")?,
                size: d.u64("image size")?,
                header: d.bytes("image header", super::frame::MAX_BODY)?.to_vec(),
            },
            op::FLASH_FINISH => Request::FlashFinish {
                transfer: d.u16("transfer id")?,
            },
            _ => {
                return Err(Error::Malformed {
                    what: "operation",
                    offset: 0,
                });
            }
        })
    }
}

/// Status byte leading a response part (after the part number).
pub mod status {
    pub const OK: u8 = 0;
    /// The charger refused; a reason string follows.
    pub const REFUSED: u8 = 1;
    /// The request could not be decoded; a reason string follows.
    pub const BAD_REQUEST: u8 = 2;
    /// The request came on a channel that carries no requests; a reason string follows.
    pub const BAD_CHANNEL: u8 = 3;
}

/// Oldest service protocol this build speaks. The version is negotiated in HELLO; the frame
/// header's version byte is the framing version, [`super::frame::PROTO_VERSION`], which has
/// not changed.
pub const PROTO_MIN: u8 = 1;
/// Newest service protocol this build speaks.
pub const PROTO_MAX: u8 = 2;
/// First protocol with selective repeat: chunks tagged with a transmission number, the charger
/// holding out-of-order chunks and reporting what it holds, and resends of single answer parts.
pub const PROTO_SELECTIVE: u8 = 2;

/// The protocol both sides speak, or `None` when their ranges do not overlap.
pub fn negotiate(own_min: u8, own_max: u8, peer_min: u8, peer_max: u8) -> Option<u8> {
    let v = own_max.min(peer_max);
    (v >= own_min.max(peer_min)).then_some(v)
}

/// HELLO from the tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostHello {
    pub proto_min: u8,
    pub proto_max: u8,
    pub session: u64,
}

impl HostHello {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.u8(self.proto_min).u8(self.proto_max).u64(self.session);
        e.finish()
    }
    pub fn decode(body: &[u8]) -> Result<HostHello> {
        let mut d = Dec::new(body);
        Ok(HostHello {
            proto_min: d.u8("protocol min")?,
            proto_max: d.u8("protocol max")?,
            session: d.u64("session")?,
        })
    }
}

/// HELLO from the charger: the negotiated parameters and who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceHello {
    pub proto: u8,
    pub max_body: u32,
    pub max_chunk: u32,
    /// Firmware bytes the charger accepts in flight.
    pub window: u32,
    pub serial_number: String,
    pub firmware_version: String,
}

impl DeviceHello {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.u8(self.proto)
            .u32(self.max_body)
            .u32(self.max_chunk)
            .u32(self.window)
            .str(&self.serial_number)
            .str(&self.firmware_version);
        e.finish()
    }
    pub fn decode(body: &[u8]) -> Result<DeviceHello> {
        let mut d = Dec::new(body);
        Ok(DeviceHello {
            proto: d.u8("protocol")?,
            max_body: d.u32("max body")?,
            max_chunk: d.u32("max chunk")?,
            window: d.u32("window")?,
            serial_number: d.str("serial number")?,
            firmware_version: d.str("firmware version")?,
        })
    }
}

/// Log EVT kinds.
pub mod evt {
    pub const RECORD: u8 = 1;
    pub const DROPPED: u8 = 2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let all = vec![
            Request::Identify,
            Request::ConfigGet {
                keys: vec!["A".into(), "ÄÖ".into()],
            },
            Request::ConfigSet {
                key: "HeartbeatInterval".into(),
                value: "300".into(),
            },
            Request::LogSubscribe {
                min_level: 2,
                history: true,
                follow: false,
            },
            Request::LogUnsubscribe,
            Request::Reboot,
            Request::Ping,
            Request::FlashBegin {
                sha256: [7; 32],
                size: 1 << 20,
                header: vec![1, 2, 3],
            },
            Request::FlashFinish { transfer: 513 },
        ];
        for r in all {
            assert_eq!(Request::decode(&r.encode()).expect("decodes"), r);
        }
    }

    #[test]
    fn truncated_bodies_name_the_field_and_offset() {
        let body = Request::ConfigSet {
            key: "K".into(),
            value: "long value".into(),
        }
        .encode();
        for cut in 0..body.len() {
            assert!(Request::decode(&body[..cut]).is_err());
        }
        let err = Request::decode(&body[..4]).expect_err("truncated");
        assert_eq!(err.to_string(), "malformed config value at byte 4");
    }

    #[test]
    fn config_parts_round_trip_and_hide_write_only_values() {
        let read = ConfigRead {
            entries: (0..60)
                .map(|i| ConfigEntry {
                    key: format!("Key{i}"),
                    value: Some(format!("value number {i}")),
                    readonly: i % 2 == 0,
                    write_only: i == 7,
                    value_type: "string".into(),
                    reboot_required: i % 5 == 0,
                })
                .collect(),
            unknown: vec!["Nope".into()],
        };
        let parts = read.encode_parts(256);
        assert!(parts.len() > 4);
        let mut back = ConfigRead::default();
        for p in &parts {
            assert!(p.len() <= 256 + 64);
            back.decode_part(p).expect("part decodes");
        }
        assert_eq!(back.entries.len(), 60);
        assert_eq!(back.entries[7].value, None);
        assert_eq!(back.entries[8].value.as_deref(), Some("value number 8"));
        assert_eq!(back.unknown, vec!["Nope".to_string()]);
    }

    #[test]
    fn random_bodies_never_panic() {
        let mut seed = 99u64;
        for _ in 0..20000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 64) as usize;
            let body: Vec<u8> = (0..len).map(|i| (seed >> (i % 8 * 8)) as u8).collect();
            let _ = Request::decode(&body);
            let _ = DeviceHello::decode(&body);
            let mut c = ConfigRead::default();
            let _ = c.decode_part(&body);
            let _ = Identity::decode(&mut Dec::new(&body));
            for proto in [1, 2] {
                let _ = Data::decode(&body, proto);
                let _ = Ack::decode(&body, proto);
                let _ = Nak::decode(&body, proto);
            }
            let _ = Resend::decode(&body);
        }
    }

    #[test]
    fn firmware_bodies_round_trip_in_both_protocols() {
        let payload = [9u8; 40];
        for proto in [1, 2] {
            let d = Data {
                offset: 5_000_000_000,
                raw_len: 4096,
                tx: if proto == 1 { 0 } else { 70_000 },
                payload: &payload,
            };
            assert_eq!(Data::decode(&d.encode(proto), proto).expect("data"), d);
            let a = Ack {
                next: 1 << 33,
                echo: if proto == 1 { 0 } else { 3 },
                blocks: if proto == 1 {
                    vec![]
                } else {
                    vec![
                        ((1 << 33) + 100, (1 << 33) + 200),
                        ((1 << 33) + 10, (1 << 33) + 20),
                    ]
                },
            };
            assert_eq!(Ack::decode(&a.encode(proto), proto).expect("ack"), a);
            let n = Nak {
                next: 7,
                reason: nak::BAD_CHUNK,
                detail: "bad".into(),
                echo: if proto == 1 { 0 } else { 9 },
            };
            assert_eq!(Nak::decode(&n.encode(proto), proto).expect("nak"), n);
        }
        // Protocol 2 DATA headers are small: offset, length and transmission as LEB128.
        let d = Data {
            offset: 300_000,
            raw_len: 128,
            tx: 5000,
            payload: &[],
        };
        assert_eq!(d.encode(2).len(), 3 + 2 + 2);
        // A protocol 1 tool ignores what protocol 2 adds to an ACK.
        let a = Ack {
            next: 42,
            echo: 1,
            blocks: vec![(50, 60)],
        };
        assert_eq!(Ack::decode(&a.encode(2), 1).expect("ack").next, 42);
        // A block that is empty or overflows is refused with its offset.
        let mut e = Enc::new();
        e.u64(u64::MAX - 1).varint(1).u8(1).varint(5).varint(5);
        assert_eq!(
            Ack::decode(&e.finish(), 2)
                .expect_err("overflow")
                .to_string(),
            "malformed received block at byte 10"
        );
    }

    #[test]
    fn resend_lists_the_missing_parts_then_carries_the_request() {
        let req = Request::ConfigGet { keys: vec![] }.encode();
        let r = Resend {
            parts: vec![1, 4],
            from: Some(7),
            request: &req,
        };
        let body = r.encode();
        let back = Resend::decode(&body).expect("resend");
        assert_eq!(back, r);
        assert!(back.wants(1) && back.wants(4) && back.wants(7) && back.wants(300));
        assert!(!back.wants(0) && !back.wants(5));
        assert_eq!(
            Request::decode(back.request).expect("request"),
            Request::ConfigGet { keys: vec![] }
        );
    }

    #[test]
    fn varints_round_trip_and_reject_overlong_input() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut e = Enc::new();
            e.varint(v);
            let body = e.finish();
            let mut d = Dec::new(&body);
            assert_eq!(d.varint("v").expect("varint"), v);
            assert!(d.is_empty());
        }
        let eleven = [0xFFu8; 11];
        assert!(Dec::new(&eleven).varint("v").is_err());
        assert!(Dec::new(&[0x80, 0x80]).varint("v").is_err());
    }

    #[test]
    fn versions_are_negotiated_to_the_newest_common_one() {
        assert_eq!(negotiate(1, 2, 1, 2), Some(2));
        assert_eq!(negotiate(1, 2, 1, 1), Some(1));
        assert_eq!(negotiate(1, 1, 1, 2), Some(1));
        assert_eq!(negotiate(1, 2, 3, 4), None);
    }
}
