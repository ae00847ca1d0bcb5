//! Headless emulation: simulated hardware actions arrive as JSON Lines on an input stream
//! (`{"action":"plug"}`, `{"action":"card","id_tag":"ABC123"}`, ...) and the charger's events
//! leave as JSON Lines (`{"type": ..., "data": {...}}`) or human-readable lines.
//! A bad input line produces an error event and never stops the emulator.

use serde_json::{Value, json};
use std::io::Write;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::broadcast::error::RecvError;

use super::Emulator;
use crate::stack::hardware::HwEvent;
use crate::stack::messages::ChargePointErrorCode;

/// Parses one input line into a hardware action.
pub fn parse_action(line: &str) -> Result<HwEvent, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Some(action) = value.get("action").and_then(Value::as_str) else {
        return Err(
            "missing \"action\" (plug, unplug, card, ev_demand, fault, clear_fault, network_lost, network_restored)".into(),
        );
    };
    let ev: HwEvent = serde_json::from_value(value.clone()).map_err(|e| {
        format!("bad \"{action}\" action: {e} (expected plug, unplug, card {{id_tag}}, ev_demand {{amps}}, fault {{error_code}}, clear_fault, network_lost, network_restored)")
    })?;
    match &ev {
        HwEvent::EvDemand { amps } if !amps.is_finite() || *amps < 0.0 => {
            Err(format!("ev_demand amps must be 0 or more, got {amps}"))
        }
        HwEvent::Card { id_tag } if id_tag.is_empty() || id_tag.len() > 20 => {
            Err("card id_tag must be 1 to 20 characters".into())
        }
        HwEvent::Fault { error_code, .. } if !is_fault_code(error_code) => {
            Err(format!("unknown fault error_code '{error_code}'"))
        }
        _ => Ok(ev),
    }
}

/// `{"action":"storage_fault","error":"full"}`: the charger's storage starts refusing writes
/// (`full`, `read_only` or `io`) or works again (`none`).
pub fn parse_storage_fault(
    value: &Value,
) -> Result<Option<crate::storage::failpoint::DiskFault>, String> {
    match value.get("error").and_then(Value::as_str) {
        Some("none") => Ok(None),
        Some(e) => crate::storage::failpoint::DiskFault::parse(e)
            .map(Some)
            .ok_or_else(|| {
                format!("bad \"storage_fault\" action: unknown error '{e}' (expected full, read_only, io or none)")
            }),
        None => Err(
            "bad \"storage_fault\" action: missing \"error\" (full, read_only, io or none)".into(),
        ),
    }
}

/// The error codes a simulated fault can carry: every OCPP 1.6 `ChargePointErrorCode` except
/// `NoError`, in the specification's order.
pub fn fault_codes() -> impl Iterator<Item = ChargePointErrorCode> {
    ChargePointErrorCode::ALL
        .iter()
        .copied()
        .filter(|c| *c != ChargePointErrorCode::NoError)
}

/// Whether `code` is the exact wire spelling of a fault code.
pub fn is_fault_code(code: &str) -> bool {
    ChargePointErrorCode::from_wire(code).is_some_and(|c| c != ChargePointErrorCode::NoError)
}

/// The fault code spelled `text`, ignoring ASCII case (`groundfailure` is `GroundFailure`).
pub fn fault_code_ignoring_case(text: &str) -> Option<ChargePointErrorCode> {
    fault_codes().find(|c| c.as_str().eq_ignore_ascii_case(text.trim()))
}

/// Runs until `stop` resolves. Input EOF does not stop the emulator (scripts may close stdin).
pub async fn run<R, W, S>(
    emulator: &Emulator,
    input: R,
    mut output: W,
    json_output: bool,
    stop: S,
) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: Write,
    S: std::future::Future<Output = ()>,
{
    let mut events = emulator.handle.subscribe_from_start();
    let (history, mut logs) = emulator.logbook.subscribe();
    for r in history {
        if json_output {
            emit(
                &mut output,
                "log",
                serde_json::to_value(&r).unwrap_or(Value::Null),
            )?;
        } else {
            writeln!(
                output,
                "{} {:5} [{}] {}",
                r.time.format("%H:%M:%S%.3f"),
                r.level.as_str(),
                r.target,
                r.message
            )?;
        }
    }
    let mut lines = input.lines();
    let mut line_no: u64 = 0;
    let mut input_open = true;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            line = lines.next_line(), if input_open => match line {
                Ok(Some(line)) => {
                    line_no += 1;
                    if line.trim().is_empty() { continue; }
                    let parsed = serde_json::from_str::<Value>(&line).ok();
                    let action = parsed.as_ref().and_then(|v| v.get("action").and_then(Value::as_str));
                    if action == Some("storage_fault") {
                        match parse_storage_fault(parsed.as_ref().unwrap_or(&Value::Null)) {
                            Ok(fault) => {
                                emulator.set_storage_fault(fault);
                                if json_output {
                                    emit(&mut output, "action", json!({"action": "storage_fault", "error": fault.map_or("none", |f| f.as_str())}))?;
                                }
                            }
                            Err(message) => if json_output {
                                emit(&mut output, "error", json!({"line": line_no, "message": message}))?;
                            } else {
                                writeln!(output, "input line {line_no}: {message}")?;
                            },
                        }
                        continue;
                    }
                    if action == Some("fail_boots") {
                        match parsed.as_ref().and_then(|v| v.get("count")).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()) {
                            Some(count) => {
                                emulator.fail_boots(count);
                                if json_output {
                                    emit(&mut output, "action", json!({"action": "fail_boots", "count": count}))?;
                                }
                            }
                            None => {
                                let message = "bad \"fail_boots\" action: \"count\" must be a whole number from 0".to_string();
                                if json_output {
                                    emit(&mut output, "error", json!({"line": line_no, "message": message}))?;
                                } else {
                                    writeln!(output, "input line {line_no}: {message}")?;
                                }
                            }
                        }
                        continue;
                    }
                    if action == Some("usb_replug") {
                        match emulator.replug_service_port() {
                            Ok(device) => if json_output {
                                emit(&mut output, "usb_replug", json!({"device": device.display().to_string()}))?;
                            } else {
                                writeln!(output, "service port re-enumerated as {}", device.display())?;
                            },
                            Err(e) => if json_output {
                                emit(&mut output, "error", json!({"line": line_no, "message": format!("{e:#}")}))?;
                            } else {
                                writeln!(output, "input line {line_no}: {e:#}")?;
                            },
                        }
                        continue;
                    }
                    match parse_action(&line) {
                        Ok(ev) => {
                            if json_output {
                                emit(&mut output, "action", serde_json::to_value(&ev).unwrap_or(Value::Null))?;
                            }
                            emulator.act(ev).await;
                        }
                        Err(message) => {
                            if json_output {
                                emit(&mut output, "error", json!({"line": line_no, "message": message}))?;
                            } else {
                                writeln!(output, "input line {line_no}: {message}")?;
                            }
                        }
                    }
                }
                Ok(None) => input_open = false,
                Err(e) => {
                    input_open = false;
                    if json_output {
                        emit(&mut output, "error", json!({"line": line_no + 1, "message": format!("cannot read input: {e}")}))?;
                    }
                }
            },
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if json_output {
                        let v = serde_json::to_value(&ev).unwrap_or(Value::Null);
                        writeln!(output, "{v}")?;
                    } else {
                        writeln!(output, "{}", human_event(&v_of(&ev)))?;
                    }
                    output.flush()?;
                }
                Err(RecvError::Lagged(n)) => {
                    if json_output {
                        emit(&mut output, "events_dropped", json!({"count": n}))?;
                    }
                }
                Err(RecvError::Closed) => break,
            },
            rec = logs.recv() => match rec {
                Ok(r) => {
                    if json_output {
                        emit(&mut output, "log", serde_json::to_value(&r).unwrap_or(Value::Null))?;
                    } else {
                        writeln!(output, "{} {:5} [{}] {}", r.time.format("%H:%M:%S%.3f"), r.level.as_str(), r.target, r.message)?;
                    }
                    output.flush()?;
                }
                Err(RecvError::Lagged(n)) => {
                    if json_output {
                        emit(&mut output, "log_dropped", json!({"count": n}))?;
                    }
                }
                Err(RecvError::Closed) => {}
            },
        }
    }
    output.flush()
}

fn v_of(ev: &crate::stack::chargepoint::Event) -> Value {
    serde_json::to_value(ev).unwrap_or(Value::Null)
}

fn human_event(v: &Value) -> String {
    let kind = v["type"].as_str().unwrap_or("event");
    let data = &v["data"];
    match kind {
        "message" => format!(
            "{} {}",
            if data["direction"] == "sent" {
                "->"
            } else {
                "<-"
            },
            data["frame"]
        ),
        "connection" => format!(
            "connection {} {} {}",
            data["state"].as_str().unwrap_or(""),
            data["url"].as_str().unwrap_or(""),
            data["detail"].as_str().unwrap_or("")
        ),
        "status" => format!(
            "connector {} {} ({})",
            data["connector_id"],
            data["status"].as_str().unwrap_or(""),
            data["error_code"].as_str().unwrap_or("")
        ),
        _ => format!("{kind} {data}"),
    }
}

fn emit<W: Write>(out: &mut W, kind: &str, data: Value) -> std::io::Result<()> {
    writeln!(out, "{}", json!({"type": kind, "data": data}))?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_action_and_rejects_bad_lines() {
        assert_eq!(parse_action(r#"{"action":"plug"}"#), Ok(HwEvent::Plug));
        assert_eq!(parse_action(r#"{"action":"unplug"}"#), Ok(HwEvent::Unplug));
        assert_eq!(
            parse_action(r#"{"action":"card","id_tag":"ABC123"}"#),
            Ok(HwEvent::Card {
                id_tag: "ABC123".into()
            })
        );
        assert_eq!(
            parse_action(r#"{"action":"ev_demand","amps":16}"#),
            Ok(HwEvent::EvDemand { amps: 16.0 })
        );
        assert_eq!(
            parse_action(r#"{"action":"fault","error_code":"GroundFailure"}"#),
            Ok(HwEvent::Fault {
                error_code: "GroundFailure".into(),
                info: None
            })
        );
        assert_eq!(
            parse_action(r#"{"action":"clear_fault"}"#),
            Ok(HwEvent::ClearFault)
        );
        assert_eq!(
            parse_action(r#"{"action":"network_lost"}"#),
            Ok(HwEvent::NetworkLost)
        );
        assert_eq!(
            parse_action(r#"{"action":"network_restored"}"#),
            Ok(HwEvent::NetworkRestored)
        );
        assert!(parse_action("plug").unwrap_err().contains("not JSON"));
        use crate::storage::failpoint::DiskFault;
        let fault = |text: &str| parse_storage_fault(&serde_json::from_str(text).unwrap());
        assert_eq!(
            fault(r#"{"action":"storage_fault","error":"full"}"#),
            Ok(Some(DiskFault::Full))
        );
        assert_eq!(
            fault(r#"{"action":"storage_fault","error":"read_only"}"#),
            Ok(Some(DiskFault::ReadOnly))
        );
        assert_eq!(
            fault(r#"{"action":"storage_fault","error":"none"}"#),
            Ok(None)
        );
        assert!(
            fault(r#"{"action":"storage_fault","error":"wet"}"#)
                .unwrap_err()
                .contains("'wet'")
        );
        assert!(
            fault(r#"{"action":"storage_fault"}"#)
                .unwrap_err()
                .contains("missing")
        );
        assert!(
            parse_action(r#"{"action":"fly"}"#)
                .unwrap_err()
                .contains("fly")
        );
        assert!(
            parse_action(r#"{"action":"card"}"#)
                .unwrap_err()
                .contains("id_tag")
        );
        assert!(parse_action(r#"{"action":"ev_demand","amps":-1}"#).is_err());
        assert!(parse_action(r#"{"action":"fault","error_code":"Oops"}"#).is_err());
        assert!(
            parse_action(r#"{"nothing":1}"#)
                .unwrap_err()
                .contains("action")
        );
    }
}
