//! Serial ports: listing them, opening a session on one, following link loss and recovery and
//! the charger's log, rebooting, and the conversions from the link client's types.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::LiveOptions;
use super::session::{Gate, Opened, Session};
use crate::link::ports::PortLister;
use crate::link::{self, Client, ClientOptions, LinkEvent, LogEvent};
use crate::stack::logbook::Level;
use crate::tui::backend::Events;
use crate::tui::msg::{
    ChargerInfo, ConfigEntry, Msg, OcppReport, PortInfo, Slot, UsbIds, ValueType,
};

/// How often a charger on a serial port is asked for its OCPP state.
pub(super) const OCPP_POLL_PERIOD: Duration = Duration::from_secs(3);

/// Lists ports off the runtime (the system lister blocks).
pub(super) async fn list_ports(lister: Arc<dyn PortLister>, events: Events) {
    let listed = tokio::task::spawn_blocking(move || lister.list()).await;
    let msg = match listed {
        Ok(Ok(ports)) => Msg::PortsListed(tui_ports(&ports)),
        Ok(Err(e)) => Msg::Error {
            context: "listing serial ports".into(),
            message: e.to_string(),
        },
        Err(e) => Msg::Error {
            context: "listing serial ports".into(),
            message: e.to_string(),
        },
    };
    events.send(msg).await;
}

pub(super) fn client_options(opts: &LiveOptions, lister: Arc<dyn PortLister>) -> ClientOptions {
    ClientOptions {
        timeout: opts.timeout,
        reconnect_timeout: opts.reconnect_timeout,
        lister,
        ..ClientOptions::default()
    }
}

/// Asks the charger who it is.
pub(super) async fn greet(client: &Client, emulated: bool) -> Result<ChargerInfo, String> {
    client
        .identify()
        .await
        .map(|id| tui_identity(id, emulated))
        .map_err(|e| e.to_string())
}

pub(super) async fn open_port(opts: &LiveOptions, port: &str) -> Result<Opened, String> {
    let client = Client::connect(port, opts.baud, client_options(opts, opts.lister.clone()))
        .await
        .map_err(|e| e.to_string())?;
    let identity = greet(&client, false).await?;
    Ok(Opened {
        session: Session::new(client, None),
        identity,
        pump: None,
    })
}

/// Link loss and recovery: the client looks for the charger again by itself.
pub(super) async fn link_pump(
    client: Client,
    mut events: broadcast::Receiver<LinkEvent>,
    gate: Gate,
    emulated: bool,
) {
    loop {
        match events.recv().await {
            Ok(LinkEvent::Disconnected { reason }) => {
                gate.send(Msg::LinkLost {
                    reason: format!("{reason}; looking for the charger again"),
                })
                .await;
            }
            Ok(LinkEvent::Reconnected { port }) => {
                tracing::info!(%port, "link back");
                match greet(&client, emulated).await {
                    Ok(identity) => {
                        gate.send(Msg::Connected(identity)).await;
                    }
                    Err(reason) => {
                        gate.send(Msg::LinkLost { reason }).await;
                    }
                }
            }
            Ok(LinkEvent::Console(text)) => tracing::debug!(%text, "console"),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(n, "link events lagged");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The charger's log, history first, then as it happens (resubscribed after a reconnect).
pub(super) async fn log_pump(client: Client, gate: Gate) {
    let mut stream = match client.logs(Level::Trace, true).await {
        Ok(s) => s,
        Err(e) => {
            gate.send(Msg::Error {
                context: "subscribing to the charger log".into(),
                message: e.to_string(),
            })
            .await;
            return;
        }
    };
    while let Some(item) = stream.next().await {
        match item {
            LogEvent::Record(r) => gate.log(r),
            LogEvent::Dropped(n) => {
                gate.send(Msg::LinesDropped(n)).await;
            }
        }
    }
}

/// Asks the charger for its OCPP state right away, then every [`OCPP_POLL_PERIOD`]; sends it
/// when it changed. A failed request (the link is down, the charger busy) is skipped: the link
/// pump reports a lost link, and the next poll asks again.
pub(super) async fn ocpp_poll(client: Client, gate: Gate) {
    let mut tick = tokio::time::interval(OCPP_POLL_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<OcppReport> = None;
    loop {
        tick.tick().await;
        let report = match client.ocpp_status().await {
            Ok(Some(status)) => OcppReport::Reported(status),
            Ok(None) => OcppReport::NotReported,
            Err(e) => {
                tracing::debug!("asking for the OCPP state: {e}");
                continue;
            }
        };
        if last.as_ref() != Some(&report) {
            last = Some(report.clone());
            if !gate.send(Msg::Ocpp(report)).await && !gate.is_current() {
                return;
            }
        }
    }
}

/// Reboots the charger; the link pump announces it again once it answers.
pub(super) async fn reboot(client: Client, gate: Gate) {
    gate.send(Msg::LinkLost {
        reason: "charger rebooting".into(),
    })
    .await;
    if let Err(e) = client.reboot().await {
        gate.send(Msg::Error {
            context: "rebooting".into(),
            message: e.to_string(),
        })
        .await;
    }
    if let Err(e) = client.reconnect().await {
        gate.send(Msg::LinkLost {
            reason: format!("the charger did not come back after the reboot: {e}"),
        })
        .await;
    }
}

/// Likely chargers first, then USB bridges, then other USB ports, then the rest, by name.
pub(super) fn tui_ports(ports: &[link::PortInfo]) -> Vec<PortInfo> {
    let mut sorted: Vec<&link::PortInfo> = ports.iter().collect();
    sorted.sort_by_key(|p| {
        (
            !p.likely_charger,
            p.bridge.is_none(),
            p.kind != link::PortKind::Usb,
            p.name.clone(),
        )
    });
    sorted
        .into_iter()
        .map(|p| PortInfo {
            path: p.name.clone(),
            usb: match (p.vid, p.pid) {
                (Some(vid), Some(pid)) => Some(UsbIds { vid, pid }),
                _ => None,
            },
            manufacturer: p.manufacturer.clone(),
            product: p.product.clone().or_else(|| p.bridge.map(str::to_string)),
            likely_charger: p.likely_charger,
        })
        .collect()
}

pub(super) fn tui_identity(id: link::Identity, emulated: bool) -> ChargerInfo {
    ChargerInfo {
        identity: (&id).into(),
        active_slot: if id.active_slot.eq_ignore_ascii_case("B") {
            Slot::B
        } else {
            Slot::A
        },
        inactive_version: id.inactive_version,
        uptime: Duration::from_secs(id.uptime_secs),
        emulated,
    }
}

pub(super) fn tui_entry(e: link::ConfigEntry) -> ConfigEntry {
    let value_type = match e.value_type.as_str() {
        "integer" => ValueType::Integer,
        "boolean" => ValueType::Boolean,
        "list" | "csl" => ValueType::List,
        _ => ValueType::String,
    };
    ConfigEntry {
        key: e.key,
        value: if e.write_only { None } else { e.value },
        readonly: e.readonly,
        write_only: e.write_only,
        value_type,
        reboot_required: e.reboot_required,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_list_likely_chargers_then_bridges_then_usb() {
        let usb = |name: &str, vid: u16, pid: u16, product: Option<&str>| {
            link::PortInfo {
                kind: link::PortKind::Usb,
                vid: Some(vid),
                pid: Some(pid),
                product: product.map(str::to_string),
                ..link::PortInfo::plain(name)
            }
            .classify()
        };
        let ports = vec![
            link::PortInfo::plain("/dev/ttyS0").classify(),
            usb("/dev/ttyACM1", 0x1234, 0x0001, None),
            usb("/dev/ttyUSB0", 0x1a86, 0x7523, None),
            usb(
                "/dev/ttyACM0",
                0x0403,
                0x6015,
                Some("Zaptec Go service port"),
            ),
        ];
        let listed = tui_ports(&ports);
        let names: Vec<&str> = listed.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            names,
            vec!["/dev/ttyACM0", "/dev/ttyUSB0", "/dev/ttyACM1", "/dev/ttyS0"]
        );
        assert!(listed[0].likely_charger);
        assert_eq!(
            listed[1].usb,
            Some(UsbIds {
                vid: 0x1a86,
                pid: 0x7523
            })
        );
        assert_eq!(listed[1].product.as_deref(), Some("WCH CH340"));
        assert_eq!(listed[3].usb, None);
    }
}
