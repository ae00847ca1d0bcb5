//! The embedded emulator as a session: started on its state directory (with the sandbox CSMS
//! when asked), its public service port for other tools, a second pseudo-terminal the TUI's
//! link client talks to, and a pump that owns the [`Tracker`], turns the stack's events into
//! status and trace messages, and carries out hardware actions.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use super::link::{client_options, greet};
use super::session::{Gate, Opened, Session};
use super::tracker::{Tracker, moves_ocpp_state};
use super::{LiveOptions, SERVICE_PORT_NAME, TUI_PORT_NAME};
use crate::csms::SandboxHandle;
use crate::emulator::service_port::{ChargerBackend, ServicePort};
use crate::emulator::{BootSettings, Emulator};
use crate::link::Client;
use crate::link::ports::FixedPorts;
use crate::stack::chargepoint::Event;
use crate::stack::hardware::HwEvent;
use crate::tui::msg::{ChargerStatus, CsmsTarget, HardwareAction, Msg, OcppReport};

/// How often the emulator's meter is sampled for the dashboard.
const METER_PERIOD: Duration = Duration::from_secs(1);
/// Hardware actions queued for the pump (one per key press).
const ACTIONS_QUEUED: usize = 16;

/// The emulator behind a session, and what it needs to stop cleanly.
pub(super) struct EmulatedCharger {
    pub(super) emulator: Arc<Emulator>,
    /// The pseudo-terminal the TUI's client talks to.
    pub(super) tui_port: ServicePort,
    sandbox: Option<SandboxHandle>,
    /// Hardware actions for the pump.
    pub(super) actions: mpsc::Sender<HwEvent>,
}

impl EmulatedCharger {
    /// Removes the TUI's port, shuts the emulator down with its state saved, stops the sandbox.
    pub(super) async fn close(self) {
        drop(self.tui_port);
        shutdown_emulator(self.emulator).await;
        if let Some(s) = &self.sandbox {
            s.shutdown().await;
        }
    }
}

async fn shutdown_emulator(emulator: Arc<Emulator>) {
    match Arc::try_unwrap(emulator) {
        Ok(e) => {
            if let Err(err) = e.shutdown().await {
                tracing::warn!("emulator shutdown: {err:#}");
            }
        }
        Err(shared) => {
            // Still shared (a hardware action in flight): stop the stack and save the meter.
            shared.handle.shutdown().await;
            shared.hardware.flush();
        }
    }
}

/// Starts the emulator and connects the TUI's client to it. Whatever was started is stopped
/// again when a later step fails.
pub(super) async fn open_emulator(opts: &LiveOptions, csms: &CsmsTarget) -> Result<Opened, String> {
    let state_dir = opts.paths.emulator_state_dir(super::EMULATOR_ID);
    let (url, sandbox) = match csms {
        CsmsTarget::Url(url) => (url.clone(), None),
        CsmsTarget::Sandbox => {
            let sandbox = crate::csms::Sandbox::start(crate::csms::SandboxOptions::default())
                .await
                .map_err(|e| format!("starting the sandbox CSMS: {e}"))?;
            (sandbox.url(), Some(sandbox))
        }
    };
    let settings = BootSettings {
        csms_url: Some(url.clone()),
        trusted_keys: opts.trusted_keys.clone(),
        ..BootSettings::default()
    };
    let emulator = match Emulator::start(&state_dir, &settings).await {
        Ok(e) => Arc::new(e),
        Err(e) => {
            if let Some(s) = &sandbox {
                s.shutdown().await;
            }
            return Err(format!("starting the emulator: {e:#}"));
        }
    };
    let undo = |emulator: Arc<Emulator>, sandbox: Option<SandboxHandle>| async move {
        shutdown_emulator(emulator).await;
        if let Some(s) = &sandbox {
            s.shutdown().await;
        }
    };
    // Subscribed before anything else so the trace starts with the BootNotification.
    let events = emulator.handle.subscribe();
    let service_port = state_dir.join(SERVICE_PORT_NAME);
    if let Err(e) =
        emulator.attach_service_port(&service_port, crate::link::pty::LineShaper::default())
    {
        undo(emulator, sandbox).await;
        return Err(format!("{e:#}"));
    }
    let tui_link = state_dir.join(TUI_PORT_NAME);
    let tui_port = match ServicePort::open(
        &tui_link,
        ChargerBackend::new(&emulator),
        crate::link::pty::LineShaper::default(),
    ) {
        Ok(p) => p,
        Err(e) => {
            undo(emulator, sandbox).await;
            return Err(format!("opening {}: {e}", tui_link.display()));
        }
    };
    let link_path = tui_link.display().to_string();
    let client_opts = client_options(opts, Arc::new(FixedPorts::default()));
    let client = match Client::connect(&link_path, opts.baud, client_opts).await {
        Ok(c) => c,
        Err(e) => {
            drop(tui_port);
            undo(emulator, sandbox).await;
            return Err(e.to_string());
        }
    };
    let identity = match greet(&client, true).await {
        Ok(i) => i,
        Err(e) => {
            drop(client);
            drop(tui_port);
            undo(emulator, sandbox).await;
            return Err(e);
        }
    };
    tracing::info!(port = %service_port.display(), "emulator service port");
    let (actions, actions_rx) = mpsc::channel(ACTIONS_QUEUED);
    let pump = Pump {
        emulator: emulator.clone(),
        events,
        actions: actions_rx,
        tracker: Tracker::new(url, service_port.display().to_string()),
    };
    let emulated = EmulatedCharger {
        emulator,
        tui_port,
        sandbox,
        actions,
    };
    Ok(Opened {
        session: Session::new(client, Some(emulated)),
        identity,
        pump: Some(pump),
    })
}

/// Follows an emulated charger for the dashboard and the trace, and carries out hardware
/// actions; the only owner of its [`Tracker`].
pub(super) struct Pump {
    emulator: Arc<Emulator>,
    /// The stack's events since boot.
    events: broadcast::Receiver<Event>,
    actions: mpsc::Receiver<HwEvent>,
    tracker: Tracker,
}

impl Pump {
    pub(super) async fn run(mut self, gate: Gate) {
        // Events before the subscription are summed up by a snapshot.
        if let Some(snap) = self.emulator.handle.snapshot().await {
            self.tracker.on_snapshot(&snap);
        }
        let mut meter = tokio::time::interval(METER_PERIOD);
        meter.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last: Option<ChargerStatus> = None;
        let mut last_ocpp: Option<OcppReport> = None;
        loop {
            let mut trace = None;
            let mut acted = false;
            let mut ocpp_moved = false;
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Ok(ev) => {
                        ocpp_moved = moves_ocpp_state(&ev);
                        trace = self.tracker.on_event(&ev);
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(n, "emulator events lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        gate.send(Msg::LinkLost {
                            reason: "the emulated charger stopped".into(),
                        })
                        .await;
                        return;
                    }
                },
                Some(action) = self.actions.recv() => {
                    self.emulator.act(action).await;
                    acted = true;
                }
                _ = meter.tick() => {}
            }
            if let Some(t) = trace
                && !gate.send(t).await
                && !gate.is_current()
            {
                return;
            }
            if ocpp_moved && let Some(snap) = self.emulator.handle.snapshot().await {
                self.tracker.on_ocpp_snapshot(&snap);
            }
            let ocpp = self.tracker.ocpp_report();
            if ocpp.is_some() && ocpp != last_ocpp {
                last_ocpp = ocpp.clone();
                if let Some(report) = ocpp {
                    gate.send(Msg::Ocpp(report)).await;
                }
            }
            let status = self.tracker.status(self.emulator.hardware.as_ref());
            // After a hardware action the status goes out even when unchanged: it answers it.
            if acted || last.as_ref() != Some(&status) {
                last = Some(status.clone());
                gate.send(Msg::Status(status)).await;
            }
        }
    }
}

/// A hardware action from the TUI, checked, then carried out by the session's pump.
pub(super) async fn hardware(
    actions: Option<mpsc::Sender<HwEvent>>,
    gate: Gate,
    action: HardwareAction,
) {
    let Some(actions) = actions else {
        gate.send(Msg::Error {
            context: "hardware action".into(),
            message: "hardware controls need an emulated charger".into(),
        })
        .await;
        return;
    };
    match hw_event(action) {
        Ok(event) => {
            // Fails only while the session closes.
            let _ = actions.send(event).await;
        }
        Err(message) => {
            gate.send(Msg::Error {
                context: "hardware action".into(),
                message,
            })
            .await;
        }
    }
}

/// The emulator's hardware event for a TUI action, checked like the headless input.
/// Feeds the emulator screen with a fleet's summary once a second, until the TUI stops
/// listening.
pub async fn feed_fleet(
    stats: Arc<crate::emulator::fleet::FleetStats>,
    events: crate::tui::backend::Events,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if !events.send(Msg::Fleet(stats.summary())).await {
            return;
        }
    }
}

fn hw_event(action: HardwareAction) -> Result<HwEvent, String> {
    match action {
        HardwareAction::Plug => Ok(HwEvent::Plug),
        HardwareAction::Unplug => Ok(HwEvent::Unplug),
        HardwareAction::PresentCard { id_tag } => {
            if id_tag.is_empty() || id_tag.len() > 20 {
                Err("a card id must be 1 to 20 characters".into())
            } else {
                Ok(HwEvent::Card { id_tag })
            }
        }
        HardwareAction::EvDemand { amps } => {
            if amps.is_finite() && amps >= 0.0 {
                Ok(HwEvent::EvDemand { amps })
            } else {
                Err(format!("EV demand must be 0 A or more, got {amps}"))
            }
        }
        HardwareAction::Fault { code } => {
            if crate::emulator::headless::is_fault_code(&code) {
                Ok(HwEvent::Fault {
                    error_code: code,
                    info: None,
                })
            } else {
                Err(format!(
                    "unknown fault code '{code}' (one of: {})",
                    crate::emulator::headless::fault_codes()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
        HardwareAction::ClearFault => Ok(HwEvent::ClearFault),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_actions_are_checked_before_the_emulator_sees_them() {
        assert_eq!(hw_event(HardwareAction::Plug), Ok(HwEvent::Plug));
        assert!(
            hw_event(HardwareAction::Fault {
                code: "GroundFailure".into()
            })
            .is_ok()
        );
        let err = hw_event(HardwareAction::Fault {
            code: "Melted".into(),
        })
        .unwrap_err();
        assert!(
            err.contains("Melted") && err.contains("GroundFailure"),
            "{err}"
        );
        assert!(
            hw_event(HardwareAction::Fault {
                code: "NoError".into()
            })
            .is_err()
        );
        assert!(hw_event(HardwareAction::EvDemand { amps: f64::NAN }).is_err());
        assert!(hw_event(HardwareAction::EvDemand { amps: -1.0 }).is_err());
        assert!(
            hw_event(HardwareAction::PresentCard {
                id_tag: "X".repeat(21)
            })
            .is_err()
        );
        assert_eq!(
            hw_event(HardwareAction::EvDemand { amps: 6.0 }),
            Ok(HwEvent::EvDemand { amps: 6.0 })
        );
    }
}
