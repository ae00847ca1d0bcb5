//! Firmware: the image's header and signature status, flash progress, the version after reboot.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Gauge, Paragraph};

use super::{human_bytes, human_duration, truncate};
use crate::tui::msg::SignatureStatus;
use crate::tui::state::{FlashPhase, State};

pub(super) fn render(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let fw = &state.firmware;
    let [running_area, image_area, flash_area] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(8),
        Constraint::Min(4),
    ])
    .areas(area);

    let running = match state.link.charger() {
        Some(id) => vec![
            Line::from(vec![
                Span::styled("Running  ", t.dim()),
                Span::styled(id.identity.firmware_version.clone(), t.title()),
                Span::raw(format!(" in slot {}", id.active_slot.as_str())),
            ]),
            Line::from(vec![
                Span::styled("Other    ", t.dim()),
                Span::raw(
                    id.inactive_version
                        .clone()
                        .unwrap_or_else(|| "empty".into()),
                ),
            ]),
        ],
        None => vec![Line::styled("Not connected.", t.dim())],
    };
    frame.render_widget(
        Paragraph::new(running)
            .block(Block::bordered().title(Span::styled(" Charger ", t.title()))),
        running_area,
    );

    let width = usize::from(image_area.width.saturating_sub(13));
    let image = match (&fw.image, fw.inspecting) {
        (_, true) => vec![Line::raw(format!(
            "Inspecting {}…",
            fw.image_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ))],
        (Some(img), false) => {
            let (sig, style) = match &img.signature {
                SignatureStatus::Valid { key_id } => (format!("✓ valid (key {key_id})"), t.ok()),
                SignatureStatus::UnknownKey { key_id } => {
                    (format!("✕ signed by untrusted key {key_id}"), t.error())
                }
                SignatureStatus::Invalid(r) => (format!("✕ invalid: {r}"), t.error()),
                SignatureStatus::Unchecked { key_id } => (
                    format!("? not checked here (key {key_id}); the charger checks it"),
                    t.warn(),
                ),
            };
            let row = |name: &'static str, v: String, s: Style| {
                Line::from(vec![
                    Span::styled(format!("{name:<11}"), t.dim()),
                    Span::styled(v, s),
                ])
            };
            vec![
                row(
                    "File",
                    truncate(&img.path.display().to_string(), width),
                    Style::new(),
                ),
                row("Version", img.version.clone(), t.title()),
                row(
                    "Size",
                    format!("{} ({} bytes)", human_bytes(img.size as f64), img.size),
                    Style::new(),
                ),
                row("SHA-256", truncate(&img.sha256, width), Style::new()),
                row(
                    "Built",
                    img.built
                        .map(|b| b.format("%Y-%m-%d %H:%M UTC").to_string())
                        .unwrap_or_else(|| "-".into()),
                    Style::new(),
                ),
                row("Signature", sig, style),
            ]
        }
        (None, false) => {
            let key = state
                .keymap
                .keys_for(
                    state.screen.context(),
                    crate::tui::action::Action::PickImage,
                )
                .unwrap_or_default();
            vec![Line::styled(
                format!("No image chosen; {key} picks one."),
                t.dim(),
            )]
        }
    };
    frame.render_widget(
        Paragraph::new(image).block(Block::bordered().title(Span::styled(" Image ", t.title()))),
        image_area,
    );

    let block = Block::bordered().title(Span::styled(" Flash ", t.title()));
    match &fw.phase {
        FlashPhase::Flashing(p) => {
            let inner = block.inner(flash_area);
            frame.render_widget(block, flash_area);
            let [gauge_area, info_area] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
            let ratio = if p.total == 0 {
                0.0
            } else {
                (p.done as f64 / p.total as f64).clamp(0.0, 1.0)
            };
            let label = format!(
                "{:.0}%  {} / {}",
                ratio * 100.0,
                human_bytes(p.done as f64),
                human_bytes(p.total as f64)
            );
            frame.render_widget(
                Gauge::default()
                    .ratio(ratio)
                    .label(label)
                    .gauge_style(t.ok()),
                gauge_area,
            );
            let eta = p.eta.map(human_duration).unwrap_or_else(|| "-".into());
            frame.render_widget(
                Paragraph::new(format!("{}/s   ETA {eta}", human_bytes(p.rate))),
                info_area,
            );
        }
        phase => {
            let line = match phase {
                FlashPhase::Idle => Line::styled("Idle.", t.dim()),
                FlashPhase::Flashed => Line::styled(
                    "Written and verified in the inactive slot; reboot to run it.",
                    t.ok(),
                ),
                FlashPhase::Rebooting => Line::styled("Rebooting…", t.warn()),
                FlashPhase::Failed(r) => Line::styled(format!("Failed: {r}"), t.error()),
                FlashPhase::Done { version } => Line::styled(
                    format!(
                        "Now running {version} (was {}).",
                        fw.previous_version.clone().unwrap_or_else(|| "?".into())
                    ),
                    t.ok(),
                ),
                FlashPhase::Flashing(_) => Line::raw(""),
            };
            frame.render_widget(Paragraph::new(line).block(block), flash_area);
        }
    }
}
