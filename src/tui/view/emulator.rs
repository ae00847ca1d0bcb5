//! Emulator: hardware state and controls, the CSMS connection, the OCPP message trace with
//! CALL/answer pairing, latency and the pretty JSON of the selected message.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, TableState};

use super::truncate;
use crate::tui::action::Action;
use crate::tui::keymap::Context;
use crate::tui::msg::{Direction, OcppConnection, OcppFrame};
use crate::tui::state::{FleetPhase, FleetView, State, TraceEntry};

pub(super) fn render(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let status_height = if state.fleet.is_some() { 7 } else { 4 };
    let [status_area, rest] =
        Layout::vertical([Constraint::Length(status_height), Constraint::Min(4)]).areas(area);
    let [trace_area, detail_area] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(rest);

    // Hardware and CSMS state.
    let key = |a| {
        state
            .keymap
            .keys_for(Context::Emulator, a)
            .unwrap_or_else(|| "-".into())
    };
    let mut lines = Vec::new();
    if let Some(fleet) = &state.fleet {
        render_fleet(state, fleet, frame, status_area);
    } else if state.fleet_run.phase == FleetPhase::Starting {
        let count = state.fleet_run.spec.as_ref().map_or(0, |s| s.count);
        lines.push(Line::styled(
            format!("Starting a fleet of {count} charge points…"),
            t.warn(),
        ));
    } else if !state.is_emulated() {
        lines.push(Line::styled(
            format!(
                "Not an emulated charger: start one from the Connect screen, or {} starts a fleet.",
                key(Action::StartFleet)
            ),
            t.dim(),
        ));
        if let FleetPhase::Ended(Some(e)) = &state.fleet_run.phase {
            lines.push(Line::styled(
                format!("The fleet did not run: {e}"),
                t.error(),
            ));
        }
    } else if let Some(s) = &state.status {
        let (ocpp, style) = match &s.ocpp {
            OcppConnection::Connecting => ("connecting".to_string(), t.warn()),
            OcppConnection::Connected {
                boot_accepted: true,
            } => ("connected".to_string(), t.ok()),
            OcppConnection::Connected {
                boot_accepted: false,
            } => ("boot pending".to_string(), t.warn()),
            OcppConnection::Disconnected { reason } => (format!("down: {reason}"), t.error()),
        };
        lines.push(Line::from(vec![
            Span::styled("CSMS ", t.dim()),
            Span::styled(ocpp, style),
            Span::raw(format!(" {}", s.csms_url.clone().unwrap_or_default())),
        ]));
        let tx = s
            .transaction_id
            .map(|i| format!("tx {i}"))
            .unwrap_or_else(|| "no tx".into());
        lines.push(Line::from(vec![
            Span::styled("Connector ", t.dim()),
            Span::styled(s.connector.clone(), t.title()),
            Span::raw(format!(
                "  {tx}  offered {:.1} A  drawn {:.1} A  {:.3} kWh",
                s.offered_amps,
                s.drawn_amps,
                s.energy_wh / 1000.0
            )),
        ]));
    } else {
        lines.push(Line::styled("Waiting for the emulator…", t.dim()));
    }
    let controls = [
        (Action::Plug, "plug"),
        (Action::Unplug, "unplug"),
        (Action::PresentCard, "card"),
        (Action::SetEvDemand, "demand"),
        (Action::InjectFault, "fault"),
        (Action::ClearFault, "clear"),
    ];
    let mut spans = Vec::new();
    for (a, label) in controls {
        spans.push(Span::styled(key(a), t.key()));
        spans.push(Span::raw(format!(" {label} ")));
    }
    if state.fleet.is_none() {
        lines.push(Line::from(spans));
        frame.render_widget(
            Paragraph::new(lines)
                .block(Block::new().title(Span::styled(" Emulated hardware ", t.title()))),
            status_area,
        );
    }

    // Trace list: only the visible window is turned into rows.
    let tr = &state.trace;
    let shown = tr.shown_len();
    let block = Block::bordered().title(Line::from(vec![
        Span::styled(" OCPP trace ", t.title()),
        Span::raw(if tr.filter().is_empty() {
            format!("{} messages ", tr.entries.len())
        } else {
            format!(
                "action '{}': {} of {} ",
                tr.filter(),
                shown,
                tr.entries.len()
            )
        }),
    ]));
    let height = usize::from(block.inner(trace_area).height.saturating_sub(1)).max(1);
    let selected_pos = match tr.selected {
        Some(s) => tr.shown_position(s),
        None => shown.checked_sub(1),
    };
    let end = match selected_pos {
        Some(p) => (p + 1).max(height.min(shown)),
        None => 0,
    };
    let start = end.saturating_sub(height);
    let rows: Vec<Row> = (start..end)
        .filter_map(|i| tr.shown_abs(i))
        .filter_map(|abs| tr.get(abs))
        .map(|e| trace_row(e, t))
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(2),
            Constraint::Length(6),
            Constraint::Min(14),
            Constraint::Length(10),
            Constraint::Length(8),
        ],
    )
    .header(Row::new(vec!["Time", "", "Type", "Action", "Id", "Latency"]).style(t.dim()))
    .block(block)
    .row_highlight_style(t.focused())
    .highlight_symbol(t.focus_marker());
    let mut ts = TableState::default().with_selected(selected_pos.map(|p| p - start));
    frame.render_stateful_widget(table, trace_area, &mut ts);

    // Detail of the selected message and its pair.
    let sel = selected_pos
        .and_then(|p| tr.shown_abs(p))
        .and_then(|a| tr.get(a));
    let mut detail: Vec<Line> = Vec::new();
    if let Some(e) = sel {
        detail.extend(json_lines(e, t));
        if let Some(pair) = e.pair.and_then(|p| tr.get(p)) {
            detail.push(Line::raw(""));
            detail.extend(json_lines(pair, t));
        }
    } else {
        detail.push(Line::styled("No messages yet.", t.dim()));
    }
    frame.render_widget(
        Paragraph::new(detail).block(Block::bordered().title(Span::styled(" Message ", t.title()))),
        detail_area,
    );
}

fn kind(frame: &OcppFrame) -> &'static str {
    match frame {
        OcppFrame::Call { .. } => "CALL",
        OcppFrame::CallResult { .. } => "RESULT",
        OcppFrame::CallError { .. } => "ERROR",
    }
}

fn trace_row<'a>(e: &'a TraceEntry, t: &crate::tui::theme::Theme) -> Row<'a> {
    let arrow = match e.direction {
        Direction::Sent => "→",
        Direction::Received => "←",
    };
    let style = match e.frame {
        OcppFrame::CallError { .. } => t.error(),
        _ => Style::new(),
    };
    let latency = e
        .latency
        .map(|d| format!("{} ms", d.as_millis()))
        .unwrap_or_else(|| {
            if matches!(e.frame, OcppFrame::Call { .. }) {
                "…".into()
            } else {
                String::new()
            }
        });
    Row::new(vec![
        e.time.format("%H:%M:%S%.3f").to_string(),
        arrow.to_string(),
        kind(&e.frame).to_string(),
        e.action.clone(),
        truncate(e.frame.id(), 10),
        latency,
    ])
    .style(style)
}

fn json_lines<'a>(e: &TraceEntry, t: &crate::tui::theme::Theme) -> Vec<Line<'a>> {
    let dir = match e.direction {
        Direction::Sent => "charger → CSMS",
        Direction::Received => "CSMS → charger",
    };
    let mut out = vec![Line::from(vec![
        Span::styled(format!("{} {} ", kind(&e.frame), e.action), t.title()),
        Span::styled(format!("{dir} id {}", e.frame.id()), t.dim()),
    ])];
    let body = match &e.frame {
        OcppFrame::Call { payload, .. } | OcppFrame::CallResult { payload, .. } => payload.clone(),
        OcppFrame::CallError {
            code,
            description,
            details,
            ..
        } => {
            serde_json::json!({"errorCode": code, "errorDescription": description, "errorDetails": details})
        }
    };
    let text = serde_json::to_string_pretty(&body).unwrap_or_else(|e| e.to_string());
    out.extend(text.lines().map(|l| Line::raw(l.to_string())));
    out
}

/// The fleet's summary in place of one charger's hardware: gauges, messages, errors, latency.
fn render_fleet(state: &State, fleet: &FleetView, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let s = &fleet.summary;
    let pct = |p: &crate::emulator::fleet::Percentiles| {
        if p.count == 0 {
            "-".to_string()
        } else {
            format!(
                "p50 {:.1} ms  p90 {:.1}  p99 {:.1}  max {:.1}",
                p.p50, p.p90, p.p99, p.max
            )
        }
    };
    let errors_style = if s.errors > 0 { t.error() } else { t.ok() };
    let e = &s.error_kinds;
    let label = |text: &'static str| Span::styled(text, t.dim());
    let lines = vec![
        Line::from(vec![
            label("Charge points "),
            Span::styled(format!("{} booted", s.booted), t.title()),
            Span::raw(format!(
                " of {}  {} connected  {} charging  {} started",
                s.count, s.connected, s.charging, s.started
            )),
        ]),
        Line::from(vec![
            label("Messages      "),
            Span::raw(format!(
                "{} sent  {} received  {:.0}/s",
                s.messages.sent, s.messages.received, fleet.messages_per_s
            )),
        ]),
        Line::from(vec![
            label("Sessions      "),
            Span::raw(format!(
                "{} started  {} completed",
                s.sessions.started, s.sessions.completed
            )),
        ]),
        Line::from(vec![
            label("Errors        "),
            Span::styled(s.errors.to_string(), errors_style),
            Span::raw(format!(
                "  connect {}  disconnect {}  CALLERROR {}  timeout {}  rejected {}",
                e.connect, e.disconnect, e.call_error, e.timeout, e.rejected
            )),
        ]),
        Line::from(vec![label("Boot latency  "), Span::raw(pct(&s.boot_ms))]),
        Line::from(vec![label("Call latency  "), Span::raw(pct(&s.call_ms))]),
    ];
    let mut title = vec![Span::styled(
        match s.all_booted_s {
            Some(secs) => format!(
                " Emulated fleet, {:.0} s, all booted in {secs:.2} s ",
                s.elapsed_s
            ),
            None => format!(" Emulated fleet, {:.0} s ", s.elapsed_s),
        },
        t.title(),
    )];
    // The fleet started here says how to stop it, and when it is stopping or has stopped.
    let stop_key = state
        .keymap
        .keys_for(Context::Emulator, Action::StopFleet)
        .unwrap_or_else(|| "-".into());
    match &state.fleet_run.phase {
        FleetPhase::Running => title.push(Span::styled(format!("{stop_key} stops it "), t.dim())),
        FleetPhase::Stopping => title.push(Span::styled("stopping… ", t.warn())),
        FleetPhase::Ended(None) => title.push(Span::styled("stopped ", t.dim())),
        FleetPhase::Ended(Some(_)) => title.push(Span::styled("failed ", t.error())),
        FleetPhase::Idle | FleetPhase::Starting => {}
    }
    frame.render_widget(
        Paragraph::new(lines).block(Block::new().title(Line::from(title))),
        area,
    );
}
