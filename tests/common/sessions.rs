//! Helpers for the charging-session scenario tests: an emulated charger wired to a sandbox CSMS on
//! 127.0.0.1 that the test can stop and restart on the same port, and views of what crossed the
//! wire (accumulated over every sandbox instance).

#![allow(dead_code)]

use chargectl::csms::{Direction, EventKind, Policy, Sandbox, SandboxHandle, SandboxOptions};
use chargectl::emulator::{BootSettings, Emulator};
use chargectl::stack::chargepoint::Event;
use chargectl::stack::config::{Channel, Configuration};
use chargectl::stack::hardware::HwEvent;
use chargectl::stack::rpc::Frame;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;

pub const CP: &str = "CP-SESSIONS";
/// Bound for every wait. On the paused clock this is simulated time, so it is generous.
pub const WAIT: Duration = Duration::from_secs(900);

/// Energy the simulated EV draws at 16 A on 3 phases of 230 V, in Wh per second.
pub const WH_PER_SECOND_16A: f64 = 16.0 * 3.0 * 230.0 / 3600.0;

/// The OCPP messages that belong to a transaction and go through the journal.
pub fn is_tx_message(action: &str, payload: &Value) -> bool {
    match action {
        "StartTransaction" | "StopTransaction" => true,
        "MeterValues" => payload.get("transactionId").is_some(),
        _ => false,
    }
}

pub fn parse_time(v: &Value) -> DateTime<Utc> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad timestamp {s}: {e}"))
        .with_timezone(&Utc)
}

/// The Energy.Active.Import.Register values in a MeterValues payload (or transactionData).
pub fn energy_registers(meter_values: &Value) -> Vec<f64> {
    meter_values
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|mv| mv["sampledValue"].as_array().cloned().unwrap_or_default())
        .filter(|sv| sv["measurand"] == "Energy.Active.Import.Register")
        .map(|sv| {
            sv["value"]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("bad register value in {sv}"))
        })
        .collect()
}

/// One received CALL.
#[derive(Debug, Clone)]
pub struct Call {
    pub id: String,
    pub action: String,
    pub payload: Value,
}

/// Received CALLs in the order the sandbox saw them.
pub fn calls_in(frames: &[(Direction, Frame)]) -> Vec<Call> {
    frames
        .iter()
        .filter_map(|(d, f)| match f {
            Frame::Call {
                id,
                action,
                payload,
            } if *d == Direction::Received => Some(Call {
                id: id.clone(),
                action: action.clone(),
                payload: payload.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The sandbox's answer (CALLRESULT payload) to the CALL with this id.
pub fn answer_in(frames: &[(Direction, Frame)], call_id: &str) -> Option<Value> {
    frames.iter().find_map(|(d, f)| match f {
        Frame::CallResult { id, payload } if *d == Direction::Sent && id == call_id => {
            Some(payload.clone())
        }
        _ => None,
    })
}

/// An emulated charger and the sandbox it talks to.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub sandbox: SandboxHandle,
    pub emu: Option<Emulator>,
    /// Frames seen by sandbox instances that were stopped.
    pub past: Vec<(Direction, Frame)>,
}

/// Writes configuration keys into a state directory before the charger boots.
pub fn preconfigure(dir: &std::path::Path, config: &[(&str, &str)]) {
    let mut c = Configuration::open(dir).expect("open configuration");
    for (k, v) in config {
        c.set_internal(k, v)
            .unwrap_or_else(|e| panic!("setting {k}={v}: {e}"));
    }
}

impl Rig {
    /// Starts a sandbox with `policy`, configures a fresh charger with `config` and boots it; returns
    /// once the charger is registered and has reported its connector.
    pub async fn start(config: &[(&str, &str)], policy: Policy) -> Rig {
        Self::start_with(config, policy, |_| {}).await
    }

    /// As [`Rig::start`], with `prepare` run on the state directory before the charger boots
    /// (to leave the state a crash would have left).
    pub async fn start_with(
        config: &[(&str, &str)],
        policy: Policy,
        prepare: impl FnOnce(&std::path::Path),
    ) -> Rig {
        let sandbox = Sandbox::start(SandboxOptions {
            policy,
            first_transaction_id: 1000,
            ..SandboxOptions::default()
        })
        .await
        .expect("sandbox starts");
        let dir = tempfile::tempdir().expect("tempdir");
        preconfigure(dir.path(), config);
        prepare(dir.path());
        let mut rig = Rig {
            dir,
            sandbox,
            emu: None,
            past: Vec::new(),
        };
        rig.boot_charger().await;
        rig
    }

    /// Starts the charger on the rig's state directory and waits for its registration and the
    /// StatusNotification of connector 1 that follows it.
    pub async fn boot_charger(&mut self) {
        let cursor = self.sandbox.cursor();
        let emu = Emulator::start(
            self.dir.path(),
            &BootSettings {
                csms_url: Some(self.sandbox.url()),
                charge_point_id: Some(CP.into()),
                ..BootSettings::default()
            },
        )
        .await
        .expect("emulator starts");
        self.emu = Some(emu);
        self.wait_call_from(cursor, "StatusNotification", |p| p["connectorId"] == 1)
            .await;
    }

    pub fn emu(&self) -> &Emulator {
        self.emu.as_ref().expect("the charger is running")
    }

    pub async fn act(&self, ev: HwEvent) {
        self.emu().act(ev).await;
    }

    pub async fn set(&self, key: &str, value: &str) {
        let outcome = self
            .emu()
            .handle
            .config_set(key.into(), value.into(), Channel::Service)
            .await;
        assert!(
            matches!(
                outcome,
                chargectl::stack::config::ChangeOutcome::Accepted
                    | chargectl::stack::config::ChangeOutcome::RebootRequired
            ),
            "{key}={value}: {outcome:?}"
        );
    }

    /// Every frame of every sandbox instance so far, in order.
    pub fn wire(&self) -> Vec<(Direction, Frame)> {
        let mut all = self.past.clone();
        all.extend(self.sandbox.frames(CP));
        all
    }

    /// The answer (CALLRESULT payload) any sandbox instance gave to the CALL with this id.
    pub fn sandbox_answer(&self, call_id: &str) -> Value {
        answer_in(&self.wire(), call_id)
            .unwrap_or_else(|| panic!("no CALLRESULT for CALL {call_id}"))
    }

    pub fn calls(&self) -> Vec<Call> {
        calls_in(&self.wire())
    }

    pub fn calls_of(&self, action: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.action == action)
            .map(|c| c.payload)
            .collect()
    }

    /// Transaction messages in wire order.
    pub fn tx_calls(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| is_tx_message(&c.action, &c.payload))
            .collect()
    }

    /// Connector 1's reported statuses in order.
    pub fn statuses(&self) -> Vec<String> {
        self.calls_of("StatusNotification")
            .into_iter()
            .filter(|p| p["connectorId"] == 1)
            .map(|p| p["status"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Waits for a CALL with `action` matching `pred` at or after `cursor` of the current sandbox,
    /// and for the sandbox's answer to it (when it answers). Returns the CALL.
    pub async fn wait_call_from(
        &self,
        cursor: usize,
        action: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Call {
        let ev = self
            .sandbox
            .wait_for_from(
                cursor,
                |e| match &e.kind {
                    EventKind::Received {
                        cp_id,
                        frame:
                            Frame::Call {
                                action: a, payload, ..
                            },
                        ..
                    } => cp_id == CP && a == action && pred(payload),
                    _ => false,
                },
                WAIT,
            )
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {action} within {WAIT:?}; wire: {:#?}",
                    self.calls()
                        .iter()
                        .map(|c| format!("{} {}", c.action, c.payload))
                        .collect::<Vec<_>>()
                )
            });
        let Some((
            _,
            Frame::Call {
                id,
                action,
                payload,
            },
        )) = ev.frame().map(|(d, f)| (d, f.clone()))
        else {
            unreachable!("the predicate matched a CALL")
        };
        // Wait for the sandbox's answer, so the charger has it in flight when this returns.
        let answered = self
            .sandbox
            .wait_for_from(
                cursor,
                |e| match &e.kind {
                    EventKind::Sent {
                        frame: Frame::CallResult { id: i, .. } | Frame::CallError { id: i, .. },
                        ..
                    } => *i == id,
                    _ => false,
                },
                Duration::from_secs(5),
            )
            .await;
        let _ = answered;
        Call {
            id,
            action,
            payload,
        }
    }

    /// Waits for the next CALL with `action` matching `pred` (from now on).
    pub async fn next_call(&self, action: &str, pred: impl Fn(&Value) -> bool) -> Call {
        self.wait_call_from(self.sandbox.cursor(), action, pred)
            .await
    }

    /// Waits for a StatusNotification of connector 1 with this status, at or after `cursor`.
    pub async fn wait_status_from(&self, cursor: usize, status: &str) -> Call {
        self.wait_call_from(cursor, "StatusNotification", |p| {
            p["connectorId"] == 1 && p["status"] == status
        })
        .await
    }

    /// Waits until the charger reports a connection event with this state.
    pub async fn wait_connection(
        events: &mut tokio::sync::broadcast::Receiver<Event>,
        state: &str,
    ) {
        tokio::time::timeout(WAIT, async {
            loop {
                match events.recv().await {
                    Ok(Event::Connection { state: s, .. }) if s.as_str() == state => return,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("charger events ended: {e}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the charger was not {state} within {WAIT:?}"));
    }

    /// Stops the sandbox and waits until the charger knows it is offline.
    pub async fn stop_csms(&mut self) {
        let mut events = self.emu().handle.subscribe();
        self.sandbox.shutdown().await;
        self.past.extend(self.sandbox.frames(CP));
        Self::wait_connection(&mut events, "disconnected").await;
    }

    /// Starts a new sandbox on the same port, continuing the transaction ids and the policy, and
    /// waits for the charger to connect to it.
    pub async fn restart_csms(&mut self) {
        let old = &self.sandbox;
        let sandbox = Sandbox::start(SandboxOptions {
            listen: old.local_addr(),
            policy: old.policy(),
            first_transaction_id: old.peek_transaction_id(),
            ..SandboxOptions::default()
        })
        .await
        .expect("sandbox restarts on the same port");
        self.sandbox = sandbox;
        self.sandbox
            .wait_for_connection(CP, WAIT)
            .await
            .expect("the charger reconnects");
    }

    /// Stops the charger cleanly.
    pub async fn shutdown(mut self) {
        if let Some(emu) = self.emu.take() {
            emu.shutdown().await.expect("the charger stops cleanly");
        }
        self.sandbox.shutdown().await;
    }
}
