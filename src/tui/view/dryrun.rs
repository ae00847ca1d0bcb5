//! Dry run: what runs (profile, CSMS) and how it goes, the findings as they arrive beside the
//! OCPP trace, and the detail of the selected finding (what the real charger does, the
//! release-note line, what the operator can do instead).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph, Wrap};

use super::truncate;
use crate::dryrun::{EndedBy, Progress, Severity, Verdict};
use crate::tui::action::Action;
use crate::tui::keymap::Context;
use crate::tui::msg::{Direction, OcppFrame};
use crate::tui::state::{DryRunPhase, State};
use crate::tui::theme::Theme;

pub(super) fn render(state: &State, frame: &mut Frame, area: Rect) {
    let [head, middle, detail] = Layout::vertical([
        Constraint::Length(6),
        Constraint::Min(5),
        Constraint::Length(8),
    ])
    .areas(area);
    let [findings_area, trace_area] =
        Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(middle);
    render_head(state, frame, head);
    render_findings(state, frame, findings_area);
    render_trace(state, frame, trace_area);
    render_detail(state, frame, detail);
}

fn severity_label(t: &Theme, s: Severity) -> Span<'static> {
    match s {
        Severity::Blocking => Span::styled("BLOCKING", t.error()),
        Severity::Warning => Span::styled("warning ", t.warn()),
        Severity::Info => Span::styled("info    ", t.dim()),
    }
}

/// `[00:35] step 5/9 csms_outage 10 s · connected · Accepted · 30 messages`
fn progress_line(p: &Progress) -> String {
    let s = p.elapsed_s.max(0.0) as u64;
    let mut line = format!("[{:02}:{:02}]", s / 60, s % 60);
    if let Some(step) = &p.step {
        line.push_str(&format!(" step {step} ·"));
    }
    line.push_str(&format!(
        " {} · {} · {} messages",
        p.connection,
        p.registration.as_deref().unwrap_or("not registered"),
        p.messages
    ));
    line
}

fn render_head(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let d = &state.dry_run;
    let key = |a| {
        state
            .keymap
            .keys_for(Context::DryRun, a)
            .unwrap_or_else(|| "-".into())
    };
    let field = |name: &'static str, value: String, style: Style| {
        Line::from(vec![
            Span::styled(format!("{name:<9}"), t.dim()),
            Span::styled(value, style),
        ])
    };
    let profile = match &d.profile {
        Some(p) => field("Profile", p.clone(), t.title()),
        None => field(
            "Profile",
            format!(
                "none (the emulator's defaults; {} picks one)",
                key(Action::ChooseProfile)
            ),
            t.dim(),
        ),
    };
    let csms = match (&d.csms_url, &d.profile) {
        (Some(url), _) => field("CSMS", url.clone(), Style::new()),
        (None, Some(_)) => field(
            "CSMS",
            format!(
                "the profile's CsmsUrl, else the sandbox ({} sets one)",
                key(Action::ChooseCsmsUrl)
            ),
            t.dim(),
        ),
        (None, None) => field(
            "CSMS",
            format!(
                "the sandbox CSMS ({} sets a URL)",
                key(Action::ChooseCsmsUrl)
            ),
            t.dim(),
        ),
    };
    let n = |sev: Severity| d.findings.iter().filter(|f| f.severity == sev).count();
    let (blocking, warnings, info) = (
        n(Severity::Blocking),
        n(Severity::Warning),
        n(Severity::Info),
    );
    let counts = field(
        "Found",
        format!("{blocking} blocking, {warnings} warnings, {info} info"),
        if blocking > 0 {
            t.error()
        } else if warnings > 0 {
            t.warn()
        } else {
            Style::new()
        },
    );
    let (run, found) = match &d.phase {
        DryRunPhase::Idle => (
            field(
                "Run",
                format!(
                    "not started: {} starts the default scenario (about six minutes)",
                    key(Action::StartDryRun)
                ),
                t.dim(),
            ),
            field("Found", "-".into(), t.dim()),
        ),
        DryRunPhase::Starting => (field("Run", "starting…".into(), t.warn()), counts),
        DryRunPhase::Running | DryRunPhase::Stopping => {
            let mut text = d
                .progress
                .as_ref()
                .map(progress_line)
                .unwrap_or_else(|| "running…".into());
            if d.phase == DryRunPhase::Stopping {
                text = format!("stopping… {text}");
            }
            (field("Run", text, Style::new()), counts)
        }
        DryRunPhase::Finished => match &d.report {
            Some(r) => {
                let how = match r.ended_by {
                    EndedBy::Completed => "completed",
                    EndedBy::Interrupted => "stopped early",
                    EndedBy::Unreachable => "the CSMS was never reached",
                };
                let run = field(
                    "Run",
                    format!(
                        "ended after {} ({how}), {} of {} steps",
                        super::human_duration(std::time::Duration::from_secs_f64(
                            r.duration_s.max(0.0)
                        )),
                        r.scenario.steps_done,
                        r.scenario.steps
                    ),
                    Style::new(),
                );
                let style = match r.verdict {
                    Verdict::Blocking => t.error(),
                    Verdict::Warning => t.warn(),
                    _ => t.ok(),
                };
                let saved = d
                    .saved
                    .as_ref()
                    .map(|p| format!(" · saved to {}", p.display()))
                    .unwrap_or_else(|| format!(" · {} saves the report", key(Action::SaveReport)));
                let verdict = Line::from(vec![
                    Span::styled(format!("{:<9}", "Verdict"), t.dim()),
                    Span::styled(r.verdict_line(), style),
                    Span::styled(saved, t.dim()),
                ]);
                (run, verdict)
            }
            None => (field("Run", "ended".into(), Style::new()), counts),
        },
        DryRunPhase::Failed(why) => (
            field("Run", format!("failed: {why}"), t.error()),
            field("Found", "-".into(), t.dim()),
        ),
    };
    // Where the report goes: the file chosen for it, or (quitting) the reports directory.
    let mut title = vec![Span::styled(" Commissioning dry run ", t.title())];
    let destination = match (&d.report_path, d.quit_pending) {
        (Some(p), _) => Some(p.display().to_string()),
        (None, true) => Some(match &state.report_dir {
            Some(dir) => format!("{}/", dir.display()),
            None => "the current directory".into(),
        }),
        (None, false) => None,
    };
    if let Some(dest) = destination {
        let room = usize::from(area.width).saturating_sub(36);
        let then = if d.quit_pending { ", then quit" } else { "" };
        title.push(Span::styled(
            format!("report → {}{then} ", super::truncate_start(&dest, room)),
            t.warn(),
        ));
    }
    frame.render_widget(
        Paragraph::new(vec![profile, csms, run, found])
            .block(Block::bordered().title(Line::from(title))),
        area,
    );
}

fn render_findings(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let d = &state.dry_run;
    let block = Block::bordered().title(Line::from(vec![
        Span::styled(" Findings ", t.title()),
        Span::raw(format!("{} ", d.findings.len())),
    ]));
    if d.findings.is_empty() {
        let text = match d.phase {
            DryRunPhase::Finished => "None: nothing in this run needs the operator's attention.",
            DryRunPhase::Idle | DryRunPhase::Failed(_) => "No dry run yet.",
            _ => "None yet.",
        };
        frame.render_widget(
            Paragraph::new(Line::styled(text, t.dim())).block(block),
            area,
        );
        return;
    }
    let width = usize::from(block.inner(area).width).saturating_sub(11);
    let items: Vec<ListItem> = d
        .findings
        .iter()
        .map(|f| {
            let count = if f.count > 1 {
                format!(" (×{})", f.count)
            } else {
                String::new()
            };
            let text = format!("{}: {}{count}", f.area.title(), f.title);
            ListItem::new(Line::from(vec![
                severity_label(t, f.severity),
                Span::raw(" "),
                Span::raw(truncate(&text, width)),
            ]))
        })
        .collect();
    let list = List::new(items)
        .block(block)
        .highlight_style(t.focused())
        .highlight_symbol(t.focus_marker());
    let mut ls = ListState::default().with_selected(Some(d.selected));
    frame.render_stateful_widget(list, area, &mut ls);
}

fn render_trace(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let tr = &state.dry_run.trace;
    let block = Block::bordered().title(Line::from(vec![
        Span::styled(" OCPP trace ", t.title()),
        Span::raw(format!("{} ", tr.entries.len())),
    ]));
    let inner = block.inner(area);
    let height = usize::from(inner.height);
    let width = usize::from(inner.width);
    let lines: Vec<Line> = tr
        .entries
        .iter()
        .skip(tr.entries.len().saturating_sub(height))
        .map(|e| {
            let arrow = match e.direction {
                Direction::Sent => "→",
                Direction::Received => "←",
            };
            let (kind, style) = match &e.frame {
                OcppFrame::Call { .. } => ("", Style::new()),
                OcppFrame::CallResult { .. } => (" ok", t.dim()),
                OcppFrame::CallError { .. } => (" ERROR", t.error()),
            };
            let text = format!("{} {arrow} {}{kind}", e.time.format("%H:%M:%S"), e.action);
            Line::styled(truncate(&text, width), style)
        })
        .collect();
    let body = if lines.is_empty() {
        vec![Line::styled("No messages yet.", t.dim())]
    } else {
        lines
    };
    frame.render_widget(Paragraph::new(body).block(block), area);
}

fn render_detail(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let Some(f) = state.dry_run.selected_finding() else {
        frame.render_widget(
            Paragraph::new(Line::styled(
                "The selected finding's detail shows here: what the real charger does, the release-note line, what to do instead.",
                t.dim(),
            ))
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(Span::styled(" Finding ", t.title()))),
            area,
        );
        return;
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled("The real charger: ", t.dim()),
            Span::raw(f.charger.clone()),
        ]),
        Line::from(vec![
            Span::styled(
                format!("Release notes (line {}): ", f.release_note.line),
                t.dim(),
            ),
            Span::raw(format!("“{}”", f.release_note.text)),
        ]),
        Line::from(vec![
            Span::styled("Instead: ", t.dim()),
            Span::raw(f.advice.clone()),
        ]),
    ];
    if let Some(r) = &f.request {
        lines.push(Line::from(vec![
            Span::styled("First seen: ", t.dim()),
            Span::raw(format!(
                "{:.1} s into the run, {} {}{}",
                r.elapsed_s,
                r.action.as_deref().unwrap_or("a message"),
                r.direction,
                r.message_id
                    .as_deref()
                    .map(|id| format!(", message id {id}"))
                    .unwrap_or_default()
            )),
        ]));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(Line::from(vec![
                Span::styled(" Finding ", t.title()),
                severity_label(t, f.severity),
                Span::raw(format!(" {} ", f.area.title())),
            ]))),
        area,
    );
}
