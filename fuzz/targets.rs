//! The fuzz targets: every decoder of bytes chargectl takes from someone else, each as a function
//! of one byte slice that must never panic (and, where a decoder has an encoder, must round-trip
//! what it accepts). The AFL binaries in `fuzz/src/bin/` call these; `tests/fuzz_corpus.rs` in
//! the main test suite replays the corpus and every crash found so far through the same
//! functions, without AFL.

use chargectl::stack::messages::{ALL_ACTIONS, CpCall, CsmsCall};
use chargectl::stack::rpc::Frame;
use serde_json::Value;
use std::path::Path;

/// A target: one input, no panic.
pub type Target = fn(&[u8]);

/// Name and function of every target.
pub const TARGETS: &[(&str, Target)] = &[
    ("ocpp_frame", ocpp_frame),
    ("ocpp_call", ocpp_call),
    ("link_frame", link_frame),
    ("link_request", link_request),
    ("firmware_header", firmware_header),
    ("profile", profile),
    ("keymap", keymap),
    ("scenario", scenario),
];

/// A WebSocket text message from a CSMS: `Frame::parse`, the CALLERROR a broken frame gets,
/// and for a good frame, encode and parse again to the same frame.
pub fn ocpp_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // a WebSocket text message is UTF-8 (1007 otherwise)
    };
    match Frame::parse(text) {
        Ok(frame) => {
            let again = Frame::parse(&frame.to_text());
            assert_eq!(again.as_ref().ok(), Some(&frame), "{text:?} round trip");
            if let Frame::Call {
                action, payload, ..
            } = &frame
            {
                let _ = CsmsCall::decode(action, payload);
            }
        }
        Err(e) => {
            if let Some(reply) = e.reply() {
                let _ = reply.to_text();
            }
        }
    }
}

/// A CALL's payload for one action (the first byte picks one of `ALL_ACTIONS`): `CsmsCall::decode` and
/// `CpCall::decode`; what decodes encodes back to a payload that decodes to the same call.
pub fn ocpp_call(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let action = ALL_ACTIONS[pick as usize % ALL_ACTIONS.len()];
    let Ok(payload) = serde_json::from_slice::<Value>(rest) else {
        return;
    };
    if let Ok(call) = CsmsCall::decode(action, &payload) {
        let again = CsmsCall::decode(call.action(), &call.payload());
        assert_eq!(again.as_ref().ok(), Some(&call), "{action} round trip");
    }
    if let Ok(call) = CpCall::decode(action, &payload) {
        let again = CpCall::decode(call.action(), &call.payload());
        assert_eq!(again.as_ref().ok(), Some(&call), "{action} round trip");
    }
}

/// Bytes on the serial line: the streaming frame decoder, fed in pieces (the first byte sets
/// the piece length), never holds more than its cap; each decoded frame encodes and decodes
/// back to itself.
pub fn link_frame(data: &[u8]) {
    use chargectl::link::frame::{Decoded, Decoder, MAX_ENCODED};
    let Some((&piece, rest)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    for chunk in rest.chunks(piece) {
        decoder.push(chunk, &mut out);
        assert!(decoder.buffered() <= MAX_ENCODED);
    }
    // One block as found between two delimiters, and the stream cut in three reads.
    let _ = chargectl::link::fuzz::frame_block(rest);
    let _ = chargectl::link::fuzz::frame_stream(rest);
    for d in out {
        if let Decoded::Frame(frame) = d {
            let mut again = Vec::new();
            Decoder::new().push(&frame.encode(), &mut again);
            assert!(
                matches!(again.as_slice(), [Decoded::Frame(f)] if *f == frame),
                "frame round trip"
            );
        }
    }
}

/// A frame body on the serial line: the charger's request decoder and both HELLOs, then every
/// decoder each side runs on a body (resends, firmware chunks, acknowledgements and gap reports
/// in each protocol, identities, configuration answers, log events).
pub fn link_request(data: &[u8]) {
    use chargectl::link::codec::{DeviceHello, HostHello, Request};
    let _ = Request::decode(data);
    let _ = HostHello::decode(data);
    let _ = DeviceHello::decode(data);
    chargectl::link::fuzz::charger_bodies(data);
    chargectl::link::fuzz::tool_bodies(data);
}

/// A firmware image from anyone: the header parser, the inspection and the verification
/// against a fixed trusted key.
pub fn firmware_header(data: &[u8]) {
    use chargectl::firmware::{SigningKey, inspect, parse_header, verify};
    let key = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    let header = parse_header(data);
    let inspection = inspect(data, &[key]);
    let verified = verify(data, &[key]);
    assert!(
        verified.is_err() || header.is_ok(),
        "an image that verifies has a header"
    );
    if let (Ok(i), Ok(_)) = (&inspection, &verified) {
        assert!(i.verified(), "verify and inspect agree");
    }
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A provisioning profile (TOML).
pub fn profile(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ =
            chargectl::provision::profile::ProvisioningProfile::parse(Path::new("fuzz.toml"), t);
    }
}

/// A user keymap layered over the default preset (TOML).
pub fn keymap(data: &[u8]) {
    if let Some(t) = text(data) {
        let mut map = chargectl::tui::keymap::Keymap::default_preset();
        let _ = map.apply_layer(Path::new("keymap.toml"), t);
    }
}

/// A dry-run scenario (TOML).
pub fn scenario(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = chargectl::dryrun::scenario::Scenario::parse("fuzz.toml", t);
    }
}
