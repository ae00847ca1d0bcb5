//! Dashboard: identity, firmware and slot, OCPP connection, connector, transaction, currents,
//! energy, last errors.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::human_duration;
use crate::tui::msg::OcppConnection;
use crate::tui::state::{Link, State};
use crate::tui::theme::Theme;

fn field<'a>(t: &Theme, name: &'a str, value: String, style: Style) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{name:<12}"), t.dim()),
        Span::styled(value, style),
    ])
}

pub(super) fn render(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let [top, errors_area] =
        Layout::vertical([Constraint::Length(10), Constraint::Min(3)]).areas(area);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);

    let charger = match &state.link {
        Link::Connected { charger, since, .. } => {
            let identity = &charger.identity;
            let extra = match (state.now, since) {
                (Some(now), Some(since)) => now.saturating_duration_since(*since),
                _ => std::time::Duration::ZERO,
            };
            let inactive = charger
                .inactive_version
                .clone()
                .unwrap_or_else(|| "empty".into());
            vec![
                field(t, "Vendor", identity.vendor.clone(), Style::new()),
                field(t, "Model", identity.model.clone(), Style::new()),
                field(t, "Serial", identity.serial_number.clone(), Style::new()),
                field(t, "Firmware", identity.firmware_version.clone(), t.title()),
                field(
                    t,
                    "Slot",
                    format!(
                        "{} active (other: {inactive})",
                        charger.active_slot.as_str()
                    ),
                    Style::new(),
                ),
                field(
                    t,
                    "Uptime",
                    human_duration(charger.uptime + extra),
                    Style::new(),
                ),
                field(
                    t,
                    "Kind",
                    if charger.emulated {
                        "emulated"
                    } else {
                        "hardware"
                    }
                    .into(),
                    Style::new(),
                ),
            ]
        }
        Link::Idle => vec![
            Line::raw("No charger connected."),
            Line::raw("Pick one on the Connect screen."),
        ],
        Link::Connecting(target) => {
            vec![Line::raw(format!("Connecting to {}…", target.describe()))]
        }
        Link::Lost { target, reason } => vec![
            Line::styled(format!("Link to {} lost", target.describe()), t.error()),
            Line::raw(reason.clone()),
        ],
    };
    frame.render_widget(
        Paragraph::new(charger)
            .block(Block::bordered().title(Span::styled(" Charger ", t.title()))),
        left,
    );

    let charging = match &state.status {
        Some(s) => {
            let (ocpp, style) = match &s.ocpp {
                OcppConnection::Connecting => ("connecting".to_string(), t.warn()),
                OcppConnection::Connected {
                    boot_accepted: true,
                } => ("connected".to_string(), t.ok()),
                OcppConnection::Connected {
                    boot_accepted: false,
                } => ("connected, boot pending".to_string(), t.warn()),
                OcppConnection::Disconnected { reason } => (format!("down: {reason}"), t.error()),
            };
            vec![
                field(t, "OCPP", ocpp, style),
                field(
                    t,
                    "CSMS",
                    s.csms_url.clone().unwrap_or_else(|| "-".into()),
                    Style::new(),
                ),
                field(t, "Connector", s.connector.clone(), t.title()),
                field(
                    t,
                    "Transaction",
                    s.transaction_id
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "none".into()),
                    Style::new(),
                ),
                field(
                    t,
                    "Offered",
                    format!("{:.1} A", s.offered_amps),
                    Style::new(),
                ),
                field(t, "Drawn", format!("{:.1} A", s.drawn_amps), Style::new()),
                field(
                    t,
                    "Energy",
                    format!("{:.3} kWh", s.energy_wh / 1000.0),
                    Style::new(),
                ),
            ]
        }
        None => vec![Line::styled("No status yet.", t.dim())],
    };
    frame.render_widget(
        Paragraph::new(charging)
            .block(Block::bordered().title(Span::styled(" Charging ", t.title()))),
        right,
    );

    let port = state.status.as_ref().and_then(|s| s.service_port.clone());
    let errors_area = match port {
        Some(port) => {
            let [port_area, rest] =
                Layout::vertical([Constraint::Length(3), Constraint::Min(3)]).areas(errors_area);
            frame.render_widget(
                Paragraph::new(Line::styled(port, t.title())).block(
                    Block::bordered().title(Span::styled(" Service port (for --port) ", t.title())),
                ),
                port_area,
            );
            rest
        }
        None => errors_area,
    };

    let mut errors: Vec<Line> = Vec::new();
    if let Some(s) = &state.status {
        errors.extend(
            s.last_errors
                .iter()
                .rev()
                .map(|e| Line::styled(format!("✕ {e}"), t.error())),
        );
    }
    errors.extend(
        state
            .errors
            .iter()
            .rev()
            .map(|e| Line::styled(format!("✕ {e}"), t.error())),
    );
    if !state.config.reboot_needed.is_empty() {
        errors.insert(
            0,
            Line::styled(
                format!(
                    "⟳ reboot needed for: {}",
                    state.config.reboot_needed.join(", ")
                ),
                t.warn(),
            ),
        );
    }
    if errors.is_empty() {
        errors.push(Line::styled("No errors.", t.dim()));
    }
    frame.render_widget(
        Paragraph::new(errors)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(Span::styled(" Last errors ", t.title()))),
        errors_area,
    );
}
