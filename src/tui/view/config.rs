//! Configuration: every key with value, type, read-only and reboot marks; pending changes.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};

use super::truncate;
use crate::tui::msg::ApplyOutcome;
use crate::tui::state::State;

fn outcome_text(o: &ApplyOutcome) -> String {
    match o {
        ApplyOutcome::Accepted => "accepted".into(),
        ApplyOutcome::RebootRequired => "reboot required".into(),
        ApplyOutcome::Rejected(r) if r.is_empty() => "rejected".into(),
        ApplyOutcome::Rejected(r) => format!("rejected: {r}"),
        ApplyOutcome::NotSupported => "not supported".into(),
    }
}

pub(super) fn render(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let cfg = &state.config;
    let pending_h = if cfg.pending.is_empty() {
        0
    } else {
        (cfg.pending.len() as u16 + 2).min(7)
    };
    let [table_area, pending_area] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(pending_h)]).areas(area);

    let visible = cfg.visible();
    let value_width = usize::from(table_area.width.saturating_sub(2 + 2 + 28 + 5 + 9 + 3)).max(8);
    let rows: Vec<Row> = visible
        .iter()
        .filter_map(|i| cfg.entries.get(*i))
        .map(|e| {
            let current = if e.write_only {
                "(write-only)".to_string()
            } else {
                e.value.clone().unwrap_or_else(|| "-".into())
            };
            let (value, style) = match cfg.pending.get(&e.key) {
                Some(p) => {
                    let mut s = format!("{current} → {}", p.value.display());
                    if let Some(o) = &p.outcome {
                        s.push_str(&format!(" ✕ {}", outcome_text(o)));
                    }
                    let style = if p.outcome.is_some() {
                        t.error()
                    } else {
                        t.pending()
                    };
                    (s, style)
                }
                None if e.write_only => (current, t.dim()),
                None => (current, Style::new()),
            };
            let mut flags = String::new();
            flags.push_str(if e.readonly { "ro " } else { "   " });
            flags.push_str(if e.reboot_required { "⟳" } else { " " });
            let mark = if cfg.pending.contains_key(&e.key) {
                "*"
            } else {
                " "
            };
            Row::new(vec![
                Cell::from(Span::styled(mark, t.pending())),
                Cell::from(truncate(&e.key, 28)),
                Cell::from(Span::styled(truncate(&value, value_width), style)),
                Cell::from(Span::styled(e.value_type.as_str(), t.dim())),
                Cell::from(flags),
            ])
        })
        .collect();
    let mut title = vec![Span::styled(" Configuration ", t.title())];
    if cfg.reading {
        title.push(Span::raw("(reading…) "));
    } else if cfg.applying {
        title.push(Span::raw("(applying…) "));
    }
    let count = if cfg.filter.is_empty() {
        format!(" {} keys ", cfg.entries.len())
    } else {
        format!(
            " filter '{}': {} of {} ",
            cfg.filter,
            visible.len(),
            cfg.entries.len()
        )
    };
    let block = Block::bordered()
        .title(Line::from(title))
        .title(Line::from(count).right_aligned());
    if !cfg.loaded {
        let text = if state.link.charger().is_some() {
            "Reading configuration…"
        } else {
            "Connect to a charger to read its configuration."
        };
        frame.render_widget(Paragraph::new(text).block(block), table_area);
    } else {
        let table = Table::new(
            rows,
            [
                Constraint::Length(1),
                Constraint::Length(28),
                Constraint::Min(8),
                Constraint::Length(4),
                Constraint::Length(4),
            ],
        )
        .header(Row::new(vec!["", "Key", "Value", "Type", "Flag"]).style(t.dim()))
        .block(block)
        .row_highlight_style(t.focused())
        .highlight_symbol(t.focus_marker());
        let mut ts = TableState::default().with_selected(if visible.is_empty() {
            None
        } else {
            Some(cfg.selected)
        });
        frame.render_stateful_widget(table, table_area, &mut ts);
    }

    if pending_h > 0 {
        let lines: Vec<Line> = cfg
            .pending
            .iter()
            .map(|(k, p)| {
                let old = cfg
                    .entries
                    .iter()
                    .find(|e| &e.key == k)
                    .map(|e| {
                        if e.write_only {
                            "(write-only)".to_string()
                        } else {
                            e.value.clone().unwrap_or_else(|| "-".into())
                        }
                    })
                    .unwrap_or_else(|| "(unknown key)".into());
                let mut spans = vec![
                    Span::styled(format!("{k}: "), Style::new()),
                    Span::raw(old),
                    Span::raw(" → "),
                    Span::styled(p.value.display(), t.pending()),
                ];
                if p.from_profile {
                    spans.push(Span::styled(" (profile)", t.dim()));
                }
                if let Some(o) = &p.outcome {
                    spans.push(Span::styled(format!("  ✕ {}", outcome_text(o)), t.error()));
                }
                Line::from(spans)
            })
            .collect();
        let mut title = format!(" Pending changes ({}) ", cfg.pending.len());
        if let Some(p) = &cfg.profile {
            title.push_str(&format!("from {} ", p.display()));
        }
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(Span::styled(title, t.pending()))),
            pending_area,
        );
    }
}
