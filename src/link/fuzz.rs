//! Entry points for coverage-guided fuzzing: each runs the decoders of one side of the link on
//! arbitrary bytes. None may panic, and none holds more than its cap, whatever the input; a
//! fuzz target is a one-line call to one of these.

use super::codec::{
    Ack, ConfigRead, Data, Dec, DeviceHello, HostHello, Identity, Nak, PROTO_MAX, PROTO_MIN,
    Request, Resend, SetOutcome,
};
use super::error::Result;
use super::frame::{self, BlockError, Decoded, Decoder, Frame};

/// Feeds `data` to a fresh frame decoder in three slices (so frames straddle reads) and
/// returns what it found; the decoder's buffer stays within its cap.
pub fn frame_stream(data: &[u8]) -> Vec<Decoded> {
    let mut dec = Decoder::new();
    let mut out = Vec::new();
    let (a, rest) = data.split_at(data.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    for part in [a, b, c] {
        dec.push(part, &mut out);
        debug_assert!(dec.buffered() <= frame::MAX_ENCODED);
    }
    out
}

/// Decodes one block found between two delimiters.
pub fn frame_block(block: &[u8]) -> std::result::Result<Frame, BlockError> {
    frame::decode_block(block)
}

/// Decodes a request body, as the charger does for every REQ.
pub fn request(body: &[u8]) -> Result<Request> {
    Request::decode(body)
}

/// Every decoder the charger runs on bytes from the tool: HELLO, requests, resends and
/// firmware chunks in each protocol.
pub fn charger_bodies(body: &[u8]) {
    let _ = HostHello::decode(body);
    let _ = Request::decode(body);
    if let Ok(r) = Resend::decode(body) {
        let _ = Request::decode(r.request);
    }
    for proto in PROTO_MIN..=PROTO_MAX {
        let _ = Data::decode(body, proto);
    }
}

/// Every decoder the tool runs on bytes from the charger: HELLO, answers, log events and
/// firmware acknowledgements in each protocol.
pub fn tool_bodies(body: &[u8]) {
    let _ = DeviceHello::decode(body);
    let _ = Identity::decode(&mut Dec::new(body));
    let _ = ConfigRead::default().decode_part(body);
    let _ = SetOutcome::decode(&mut Dec::new(body));
    let _ = super::client::decode_log_event(body).is_ok();
    for proto in PROTO_MIN..=PROTO_MAX {
        let _ = Ack::decode(body, proto);
        let _ = Nak::decode(body, proto);
    }
}
