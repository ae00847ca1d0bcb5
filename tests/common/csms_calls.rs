//! What a charge point sent to the sandbox CSMS, for tests that include this file with
//! `#[path = "common/csms_calls.rs"] mod csms_calls;`.
#![allow(dead_code)]

use chargectl::csms::{EventKind, SandboxHandle};
use chargectl::stack::rpc::Frame;
use serde_json::Value;

/// The payloads of the `action` CALLs that `cp` sent, from event `cursor` on.
pub fn calls_from(csms: &SandboxHandle, cp: &str, cursor: usize, action: &str) -> Vec<Value> {
    csms.events()
        .into_iter()
        .skip(cursor)
        .filter_map(|e| match e.kind {
            EventKind::Received {
                cp_id,
                frame: Frame::Call {
                    action: a, payload, ..
                },
                ..
            } if cp_id == cp && a == action => Some(payload),
            _ => None,
        })
        .collect()
}
