//! Shared helpers for the charge point scenario tests: a sandbox CSMS on 127.0.0.1, an emulated
//! charger in a temporary state directory, and compact views of the frames on the wire.
#![allow(dead_code)]

pub mod rawcsms;

use chargectl::csms::{CsmsEvent, Direction, EventKind, Sandbox, SandboxHandle, SandboxOptions};
use chargectl::emulator::{BootSettings, Emulator};
use chargectl::stack::rpc::Frame;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Bound on every wait (virtual time in paused-clock tests).
pub const WAIT: Duration = Duration::from_secs(120);

pub async fn sandbox(opts: SandboxOptions) -> SandboxHandle {
    Sandbox::start(opts).await.expect("the sandbox starts")
}

pub fn settings(url: &str, id: &str) -> BootSettings {
    BootSettings {
        csms_url: Some(url.to_string()),
        charge_point_id: Some(id.to_string()),
        ..BootSettings::default()
    }
}

pub async fn emulator(dir: &Path, url: &str, id: &str) -> Emulator {
    Emulator::start(dir, &settings(url, id))
        .await
        .expect("the emulator starts")
}

/// One frame as `"<who sent it> <type> <action or error code>"`: `cp Call BootNotification`,
/// `cs Result BootNotification`, `cs Call GetConfiguration`, `cp Result GetConfiguration`,
/// `cp Error FormationViolation`.
pub fn describe(event: &CsmsEvent) -> Option<String> {
    let (direction, frame) = event.frame()?;
    let who = match direction {
        Direction::Received => "cp",
        Direction::Sent => "cs",
    };
    let action = event.action().unwrap_or("?");
    Some(match frame {
        Frame::Call { action, .. } => format!("{who} Call {action}"),
        Frame::CallResult { .. } => format!("{who} Result {action}"),
        Frame::CallError { error, .. } => format!("{who} Error {}", error.code.as_str()),
    })
}

/// Every frame exchanged with `cp_id` from `cursor` on, described.
pub fn wire_from(csms: &SandboxHandle, cp_id: &str, cursor: usize) -> Vec<String> {
    csms.events()
        .iter()
        .skip(cursor)
        .filter(|e| e.cp_id() == cp_id)
        .filter_map(describe)
        .collect()
}

/// The CALLs the charge point sent from `cursor` on: (action, payload).
pub fn cp_calls_from(csms: &SandboxHandle, cp_id: &str, cursor: usize) -> Vec<(String, Value)> {
    csms.events()
        .iter()
        .skip(cursor)
        .filter_map(|e| match &e.kind {
            EventKind::Received {
                cp_id: c,
                frame: Frame::Call {
                    action, payload, ..
                },
                ..
            } if c == cp_id => Some((action.clone(), payload.clone())),
            _ => None,
        })
        .collect()
}

/// Waits for a CALL from `cp_id` at or after `cursor` matching `pred`; returns its payload and
/// the cursor just after it.
pub async fn wait_call_from(
    csms: &SandboxHandle,
    cp_id: &str,
    action: &str,
    cursor: usize,
    pred: impl Fn(&Value) -> bool,
) -> (Value, usize) {
    let want = |e: &CsmsEvent| {
        matches!(&e.kind, EventKind::Received { cp_id: c, frame: Frame::Call { action: a, payload, .. }, .. }
            if c == cp_id && a == action && pred(payload))
    };
    let event = csms
        .wait_for_from(cursor, want, WAIT)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no {action} from {cp_id} in time; wire: {:#?}",
                wire_from(csms, cp_id, cursor)
            )
        });
    // Tests stay far below the sandbox's log capacity, so an index is a cursor.
    let after = csms
        .events()
        .iter()
        .enumerate()
        .position(|(i, e)| i >= cursor && e == &event)
        .map_or(csms.cursor(), |i| i + 1);
    (payload_of(&event), after)
}

fn payload_of(event: &CsmsEvent) -> Value {
    match &event.kind {
        EventKind::Received {
            frame: Frame::Call { payload, .. },
            ..
        } => payload.clone(),
        _ => Value::Null,
    }
}

/// Waits until `cp_id` is booted: BootNotification accepted and both connectors reported.
pub async fn booted(csms: &SandboxHandle, cp_id: &str, cursor: usize) -> usize {
    let (_, c) = wait_call_from(csms, cp_id, "StatusNotification", cursor, |p| {
        p["connectorId"] == 1
    })
    .await;
    c
}

/// The value of one configuration key over OCPP (None when unknown or without a value).
pub async fn get_key(csms: &SandboxHandle, cp_id: &str, key: &str) -> Option<String> {
    let answer = csms
        .call(
            cp_id,
            "GetConfiguration",
            serde_json::json!({ "key": [key] }),
        )
        .await
        .expect("GetConfiguration answered");
    answer["configurationKey"]
        .as_array()?
        .iter()
        .find(|k| k["key"] == key)?
        .get("value")?
        .as_str()
        .map(str::to_string)
}

pub async fn change_key(csms: &SandboxHandle, cp_id: &str, key: &str, value: &str) -> String {
    let answer = csms
        .call(
            cp_id,
            "ChangeConfiguration",
            serde_json::json!({ "key": key, "value": value }),
        )
        .await
        .expect("ChangeConfiguration answered");
    answer["status"].as_str().unwrap_or_default().to_string()
}

/// Asserts that `cp_id` never had two CALLs of its own awaiting an answer at once (a connection
/// that ends forgets the one in flight).
pub fn assert_one_call_in_flight(csms: &SandboxHandle, cp_id: &str) {
    let mut in_flight: Option<String> = None;
    for event in csms.events().iter().filter(|e| e.cp_id() == cp_id) {
        match &event.kind {
            EventKind::Received {
                frame: Frame::Call { id, action, .. },
                ..
            } => {
                if let Some(waiting) = &in_flight {
                    panic!(
                        "{cp_id} sent {action} ({id}) while {waiting} was unanswered: {:#?}",
                        wire_from(csms, cp_id, 0)
                    );
                }
                in_flight = Some(id.clone());
            }
            EventKind::Sent {
                frame: Frame::CallResult { id, .. } | Frame::CallError { id, .. },
                ..
            } if in_flight.as_ref() == Some(id) => in_flight = None,
            EventKind::Disconnected { .. } => in_flight = None,
            _ => {}
        }
    }
}
