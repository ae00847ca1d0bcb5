//! Dashboard: identity, firmware and slot, OCPP connection, connector, transaction, currents,
//! energy, a chart of the charging session (offered and drawn current, energy), last errors.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph, Wrap};

use super::{elide_middle, human_duration};
use crate::link::ocpp_state::{Connection, OcppStatus, Registration};
use crate::tui::msg::{OcppConnection, OcppReport};
use crate::tui::state::{Link, State};
use crate::tui::theme::Theme;

fn field<'a>(t: &Theme, name: &'a str, value: String, style: Style) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{name:<12}"), t.dim()),
        Span::styled(value, style),
    ])
}

/// Rows of the error box at most (besides its border).
const ERROR_ROWS: usize = 4;
/// Rows of the charger and charging panels: six fields and the border.
const PANEL_ROWS: u16 = 8;
/// Rows the chart keeps at least (border, three rows of plot, the time axis and its labels), so
/// at 80x24 it stays readable beside everything else; the error box gives way first.
const CHART_MIN_ROWS: u16 = 7;

pub(super) fn render(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let errors = error_lines(state);
    let port = state.status.as_ref().and_then(|s| s.service_port.clone());
    let port_rows: u16 = if port.is_some() { 3 } else { 0 };
    // The error box shows what fits once the panels, the port and the chart have their rows;
    // the newest errors come first, the title says how many are left out.
    let room = area
        .height
        .saturating_sub(PANEL_ROWS + port_rows + CHART_MIN_ROWS + 2);
    // Rows each error takes once wrapped (a long one, such as a refused connection, takes two).
    let inner = usize::from(area.width.saturating_sub(2)).max(1);
    let rows_of: Vec<usize> = errors
        .iter()
        .map(|l| l.width().div_ceil(inner).max(1))
        .collect();
    let error_rows = rows_of
        .iter()
        .sum::<usize>()
        .clamp(1, ERROR_ROWS)
        .min(usize::from(room).max(1));
    // The errors shown whole (at least the newest, cut if it must be).
    let shown = rows_of
        .iter()
        .scan(0, |used, r| {
            *used += r;
            Some(*used)
        })
        .take_while(|used| *used <= error_rows)
        .count()
        .max(1);
    let [top, chart_area, port_area, errors_area] = Layout::vertical([
        Constraint::Length(PANEL_ROWS),
        Constraint::Min(CHART_MIN_ROWS),
        Constraint::Length(port_rows),
        Constraint::Length(error_rows as u16 + 2),
    ])
    .areas(area);
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
                field(
                    t,
                    "Model",
                    format!("{} {}", identity.vendor, identity.model),
                    Style::new(),
                ),
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

    // Columns left for a value beside its 12-column name inside the panel's border.
    let value_width = usize::from(right.width.saturating_sub(2 + 12));
    let mut charging = Vec::new();
    // The OCPP state as the charger reports it, else as the emulator's status tells it.
    let ocpp = match (&state.ocpp, &state.status) {
        (Some(report), _) => Some(ocpp_value(t, report, value_width)),
        (None, Some(s)) => Some(match &s.ocpp {
            OcppConnection::Connecting => ("connecting".to_string(), t.warn()),
            OcppConnection::Connected {
                boot_accepted: true,
            } => ("connected".to_string(), t.ok()),
            OcppConnection::Connected {
                boot_accepted: false,
            } => ("connected, boot pending".to_string(), t.warn()),
            OcppConnection::Disconnected { reason } => (format!("down: {reason}"), t.error()),
        }),
        (None, None) => None,
    };
    if let Some((value, style)) = ocpp {
        charging.push(field(t, "OCPP", value, style));
        let reported_url = match &state.ocpp {
            Some(OcppReport::Reported(r)) => r.csms_url.as_deref(),
            _ => None,
        };
        let url = reported_url.or(state.status.as_ref().and_then(|s| s.csms_url.as_deref()));
        charging.push(field(
            t,
            "CSMS",
            url.map(|u| elide_middle(u, value_width))
                .unwrap_or_else(|| "-".into()),
            Style::new(),
        ));
    }
    match &state.status {
        Some(s) => charging.extend([
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
                "Drawn",
                format!("{:.1} A of {:.1} A offered", s.drawn_amps, s.offered_amps),
                Style::new(),
            ),
            field(
                t,
                "Energy",
                format!("{:.3} kWh", s.energy_wh / 1000.0),
                Style::new(),
            ),
        ]),
        None => charging.push(Line::styled("No charging status yet.", t.dim())),
    }
    frame.render_widget(
        Paragraph::new(charging)
            .block(Block::bordered().title(Span::styled(" Charging ", t.title()))),
        right,
    );

    render_chart(state, frame, chart_area);
    if let Some(port) = port {
        frame.render_widget(
            Paragraph::new(Line::styled(port, t.title())).block(
                Block::bordered().title(Span::styled(" Service port (for --port) ", t.title())),
            ),
            port_area,
        );
    }
    let title = if errors.len() > shown {
        format!(" Last errors ({} of {}) ", shown, errors.len())
    } else {
        " Last errors ".to_string()
    };
    frame.render_widget(
        Paragraph::new(errors)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(Span::styled(title, t.title()))),
        errors_area,
    );
}

/// The charging session as two charts: offered (dots) and drawn (fine line) current, and the
/// energy delivered, both over the time since the session started.
fn render_chart(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let h = &state.history;
    let Some(last) = h.samples.last() else {
        frame.render_widget(
            Paragraph::new(Line::styled(
                "No charging session yet: offered and drawn current and energy are charted from the next one.",
                t.dim(),
            ))
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(Span::styled(" Session ", t.title()))),
            area,
        );
        return;
    };
    let [current_area, energy_area] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
    let span = h.span_s().max(1.0);
    let elapsed = human_duration(std::time::Duration::from_secs_f64(h.span_s()));
    let offered: Vec<(f64, f64)> = h.samples.iter().map(|s| (s.at_s, s.offered_a)).collect();
    let drawn: Vec<(f64, f64)> = h.samples.iter().map(|s| (s.at_s, s.drawn_a)).collect();
    let energy: Vec<(f64, f64)> = h
        .samples
        .iter()
        .map(|s| (s.at_s, s.energy_wh / 1000.0))
        .collect();
    let peak_a = h
        .samples
        .iter()
        .map(|s| s.offered_a.max(s.drawn_a))
        .fold(0.0_f64, f64::max);
    // The amp scale in steps of 8 A with room above the highest line, so a profile's limit
    // sits at a readable height.
    let top_a = ((peak_a * 1.1 / 8.0).ceil() * 8.0).max(8.0);
    let state_word = if h.active { "" } else { " (ended)" };
    // Offered on top: where the EV draws all it is offered, the limit is what matters.
    let current = Chart::new(vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.ok())
            .data(&drawn),
        Dataset::default()
            .marker(Marker::Dot)
            .graph_type(GraphType::Line)
            .style(t.warn())
            .data(&offered),
    ])
    .block(Block::bordered().title(Line::from(vec![
        Span::styled(" Current ", t.title()),
        Span::styled(format!("• offered {:.1} A", last.offered_a), t.warn()),
        Span::raw("  "),
        Span::styled(format!("⠤ drawn {:.1} A ", last.drawn_a), t.ok()),
    ])))
    .x_axis(time_axis(t, span, &elapsed))
    .y_axis(
        Axis::default()
            .bounds([0.0, top_a])
            .labels([Span::raw("0 A"), Span::raw(format!("{top_a:.0} A"))])
            .style(t.dim()),
    )
    .legend_position(None);
    frame.render_widget(current, current_area);
    let top_kwh = energy
        .iter()
        .map(|p| p.1)
        .fold(0.0_f64, f64::max)
        .max(0.001)
        * 1.1;
    let energy_chart = Chart::new(vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.title())
            .data(&energy),
    ])
    .block(Block::bordered().title(Line::from(vec![
        Span::styled(" Energy ", t.title()),
        Span::raw(format!(
            "{:.3} kWh in {elapsed}{state_word} ",
            last.energy_wh / 1000.0
        )),
    ])))
    .x_axis(time_axis(t, span, &elapsed))
    .y_axis(
        Axis::default()
            .bounds([0.0, top_kwh])
            .labels([Span::raw("0"), Span::raw(format!("{top_kwh:.2}"))])
            .style(t.dim()),
    )
    .legend_position(None);
    frame.render_widget(energy_chart, energy_area);
}

/// The time axis of both charts: from the start of the session to its length so far.
fn time_axis<'a>(t: &Theme, span: f64, elapsed: &str) -> Axis<'a> {
    Axis::default()
        .bounds([0.0, span])
        .labels([Span::raw("0:00"), Span::raw(elapsed.to_string())])
        .style(t.dim())
}

/// The OCPP row: the connection and the registration at the CSMS, in `width` columns.
fn ocpp_value(t: &Theme, report: &OcppReport, width: usize) -> (String, Style) {
    let s = match report {
        OcppReport::Reported(s) => s,
        OcppReport::NotReported => {
            let long = "firmware does not report its OCPP state";
            let text = if long.chars().count() <= width {
                long
            } else {
                "not reported by firmware"
            };
            return (text.to_string(), t.dim());
        }
    };
    match (s.connection, s.registration) {
        (Connection::Connected, Registration::Accepted) => ("connected, Accepted".into(), t.ok()),
        (Connection::Connected, Registration::Pending) => ("connected, Pending".into(), t.warn()),
        (Connection::Connected, Registration::Rejected) => {
            ("connected, Rejected".into(), t.error())
        }
        (Connection::Connected, Registration::Unknown) => {
            ("connected, awaiting boot".into(), t.warn())
        }
        (Connection::Connecting, _) if s.failed_attempts > 0 => (
            format!("connecting ({} failed)", s.failed_attempts),
            t.warn(),
        ),
        (Connection::Connecting, _) => ("connecting".into(), t.warn()),
        (Connection::Failed, _) => (
            format!("failed ({} in a row)", s.failed_attempts.max(1)),
            t.error(),
        ),
        (Connection::Disconnected, _) => ("disconnected".into(), t.error()),
        (Connection::Idle, _) => ("not started".into(), t.dim()),
    }
}

/// The charger's last failed connection to its CSMS with its time (the charger's clock, UTC);
/// once connected again it stays, dimmed, as what happened before.
fn connection_error_line(t: &Theme, s: &OcppStatus) -> Option<Line<'static>> {
    let e = s.last_error.as_ref()?;
    let at = chrono::DateTime::from_timestamp_millis(e.at_ms)
        .map(|t| t.format("%H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "an unknown time".into());
    let reason = crate::provision::online::reason(e);
    Some(if s.connection == Connection::Connected {
        Line::styled(
            format!("• earlier, CSMS connection failed at {at}: {reason}"),
            t.dim(),
        )
    } else {
        Line::styled(
            format!("✕ CSMS connection failed at {at}: {reason}"),
            t.error(),
        )
    })
}

/// The errors box: a reboot still needed, the last failed connection to the CSMS, the
/// charger's last errors, then the TUI's.
fn error_lines(state: &State) -> Vec<Line<'static>> {
    let t = &state.theme;
    let mut errors: Vec<Line> = Vec::new();
    if let Some(OcppReport::Reported(s)) = &state.ocpp
        && let Some(line) = connection_error_line(t, s)
    {
        errors.push(line);
    }
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
    errors
}
