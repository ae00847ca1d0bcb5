//! Rendering: `view(&State, &mut Frame)`, one file per screen. Nothing here mutates state.

mod config;
mod connect;
mod dashboard;
mod dryrun;
mod emulator;
mod firmware;
pub mod help;
mod logs;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::action::Action;
use super::state::{Link, NoticeKind, Screen, State};

/// Draws the whole screen.
pub fn view(state: &State, frame: &mut Frame) {
    let [tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_tabs(state, frame, tabs);
    match state.screen {
        Screen::Connect => connect::render(state, frame, body),
        Screen::Dashboard => dashboard::render(state, frame, body),
        Screen::Config => config::render(state, frame, body),
        Screen::Firmware => firmware::render(state, frame, body),
        Screen::Logs => logs::render(state, frame, body),
        Screen::Emulator => emulator::render(state, frame, body),
        Screen::DryRun => dryrun::render(state, frame, body),
    }
    render_status(state, frame, status);
    if let Some(scroll) = state.help {
        help::render(state, frame, frame.area(), scroll);
    }
}

/// The tab bar: every screen by number and title, and the link state on the right. When both do
/// not fit, screens other than the one shown keep only their number, from the right.
fn render_tabs(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let (mark, text, style) = match &state.link {
        Link::Idle => ("○", "offline".to_string(), t.dim()),
        Link::Connecting(_) => ("◌", "connecting".to_string(), t.warn()),
        Link::Connected { charger, .. } => ("●", charger.identity.serial_number.clone(), t.ok()),
        Link::Lost { .. } => ("✕", "link lost".to_string(), t.error()),
    };
    let right = Line::from(vec![Span::styled(format!("{mark} {text}"), style)]).right_aligned();
    let label = |i: usize, s: Screen, short: bool| {
        if short {
            format!(" {} ", i + 1)
        } else {
            format!(" {} {} ", i + 1, s.title())
        }
    };
    let mut short = [false; Screen::ALL.len()];
    let width = |short: &[bool]| -> usize {
        Screen::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| label(i, *s, short[i]).chars().count())
            .sum()
    };
    let room = usize::from(area.width).saturating_sub(right.width() + 1);
    for i in (0..Screen::ALL.len()).rev() {
        if width(&short) <= room {
            break;
        }
        short[i] = Screen::ALL[i] != state.screen;
    }
    let left = Line::from(
        Screen::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let text = label(i, *s, short[i]);
                if *s == state.screen {
                    Span::styled(text, t.tab_active())
                } else {
                    Span::raw(text)
                }
            })
            .collect::<Vec<_>>(),
    );
    let lw = left.width() as u16;
    frame.render_widget(Paragraph::new(left), area);
    if area.width > lw + 2 {
        let r = Rect {
            x: area.x + lw + 1,
            width: area.width - lw - 1,
            ..area
        };
        frame.render_widget(Paragraph::new(right), r);
    }
}

fn render_status(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    if let Some(p) = &state.prompt {
        let label = format!("{}: ", p.kind.label());
        let shown: String = if p.secret {
            "•".repeat(p.text.chars().count())
        } else {
            p.text.clone()
        };
        let mut spans = vec![Span::styled(label.clone(), t.key()), Span::raw(shown)];
        if let Some(e) = &p.error {
            spans.push(Span::raw("  "));
            spans.push(Span::styled(e.clone(), t.error()));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), area);
        let prefix: String = if p.secret {
            "•".repeat(p.cursor)
        } else {
            p.text.chars().take(p.cursor).collect()
        };
        let x = area.x + (Line::raw(label).width() + Line::raw(prefix).width()) as u16;
        frame.set_cursor_position((x.min(area.right().saturating_sub(1)), area.y));
        return;
    }
    if let Some(n) = &state.notice {
        let style = match n.kind {
            NoticeKind::Info => Style::new(),
            NoticeKind::Success => t.ok(),
            NoticeKind::Error => t.error(),
        };
        let mark = match n.kind {
            NoticeKind::Info => "· ",
            NoticeKind::Success => "✓ ",
            NoticeKind::Error => "✕ ",
        };
        frame.render_widget(
            Paragraph::new(Line::from(vec![Span::styled(
                format!("{mark}{}", n.text),
                style,
            )])),
            area,
        );
        return;
    }
    let ctx = state.screen.context();
    if !state.pending_keys.is_empty() {
        let keys = super::keymap::seq_to_string(&state.pending_keys);
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(format!("{keys} …"), t.key()),
                Span::raw("  (waiting for the next key of a sequence)"),
            ])),
            area,
        );
        return;
    }
    let mut hints: Vec<(Action, &str)> = vec![(Action::ToggleHelp, "help")];
    hints.extend(screen_hints(state.screen));
    hints.push((Action::NextScreen, "next"));
    hints.push((Action::Quit, "quit"));
    let mut spans = Vec::new();
    for (action, label) in hints {
        if let Some(k) = state.keymap.keys_for(ctx, action) {
            spans.push(Span::styled(k, t.key()));
            spans.push(Span::raw(format!(" {label}  ")));
        }
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn screen_hints(screen: Screen) -> Vec<(Action, &'static str)> {
    match screen {
        Screen::Connect => vec![
            (Action::Select, "connect"),
            (Action::StartSandbox, "sandbox"),
            (Action::RefreshPorts, "refresh"),
        ],
        Screen::Dashboard => vec![(Action::Reconnect, "reconnect"), (Action::Reboot, "reboot")],
        Screen::Config => vec![
            (Action::Filter, "filter"),
            (Action::EditValue, "edit"),
            (Action::ApplyPending, "apply"),
            (Action::LoadProfile, "profile"),
        ],
        Screen::Firmware => vec![
            (Action::PickImage, "image"),
            (Action::Flash, "flash"),
            (Action::Reboot, "reboot"),
        ],
        Screen::Logs => vec![
            (Action::TogglePause, "pause"),
            (Action::CycleLevel, "level"),
            (Action::Search, "search"),
            (Action::ExportLogs, "export"),
        ],
        Screen::Emulator => vec![
            (Action::Plug, "plug"),
            (Action::PresentCard, "card"),
            (Action::Filter, "filter"),
        ],
        Screen::DryRun => vec![
            (Action::ChooseProfile, "profile"),
            (Action::ChooseCsmsUrl, "CSMS"),
            (Action::StartDryRun, "start"),
            (Action::StopDryRun, "stop"),
            (Action::SaveReport, "save"),
        ],
    }
}

/// `1.5 KiB`, `2.3 MiB`.
pub(crate) fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `1:02:03` or `2:03`.
pub(crate) fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Keeps the last `width` columns of `s` (the file name end of a path), marking the cut with `…`.
pub(crate) fn truncate_start(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    let keep = width.saturating_sub(1);
    let mut out = String::from("…");
    out.extend(s.chars().skip(n - keep));
    out
}

/// Cuts `s` in the middle to `width` columns, marking the cut with `…`: both the start and the
/// end of a URL or a path stay readable.
pub(crate) fn elide_middle(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width || width < 3 {
        return s.to_string();
    }
    let tail = (width - 1) / 2;
    let head = width - 1 - tail;
    let mut out: String = s.chars().take(head).collect();
    out.push('…');
    out.extend(s.chars().skip(n - tail));
    out
}

/// Cuts `s` to `width` columns, marking the cut with `…`.
pub(crate) fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}
