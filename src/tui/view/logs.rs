//! Logs: live stream with level colours, level filter, search highlighting, pause and scroll
//! back, dropped-line markers. A frame renders only the visible lines.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use crate::tui::state::{LogLine, State};
use crate::tui::theme::Theme;

/// Splits `text` into spans, highlighting case-insensitive matches of `needle_lower`.
fn highlighted<'a>(text: &'a str, needle_lower: &str, base: Style, hl: Style) -> Vec<Span<'a>> {
    if needle_lower.is_empty() || !text.is_ascii() || !needle_lower.is_ascii() {
        return vec![Span::styled(text, base)];
    }
    let lower = text.to_ascii_lowercase();
    let mut spans = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..].find(needle_lower) {
        let start = at + i;
        let end = start + needle_lower.len();
        if start > at {
            spans.push(Span::styled(&text[at..start], base));
        }
        spans.push(Span::styled(&text[start..end], hl));
        at = end;
    }
    if at < text.len() {
        spans.push(Span::styled(&text[at..], base));
    }
    spans
}

pub(crate) fn line<'a>(l: &'a LogLine, t: &Theme, needle_lower: &str) -> Line<'a> {
    match l {
        LogLine::Record(r) => {
            let mut spans = vec![
                Span::styled(r.time.format("%H:%M:%S%.3f ").to_string(), t.dim()),
                Span::styled(
                    format!("{:<5}", r.level.as_str().to_uppercase()),
                    t.level(r.level),
                ),
                Span::raw(" "),
            ];
            spans.extend(highlighted(&r.target, needle_lower, t.dim(), t.highlight()));
            spans.push(Span::raw(" "));
            spans.extend(highlighted(
                &r.message,
                needle_lower,
                Style::new(),
                t.highlight(),
            ));
            Line::from(spans)
        }
        LogLine::Dropped(n) => Line::styled(format!("─── {n} lines dropped ───"), t.warn()),
    }
}

pub(super) fn render(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let logs = &state.logs;
    let buf = &logs.buffer;
    let mode = if logs.follow {
        Span::styled("following", t.ok())
    } else {
        Span::styled("PAUSED", t.warn())
    };
    let mut title = vec![
        Span::styled(" Log ", t.title()),
        mode,
        Span::raw(format!("  level ≥ {}", buf.min_level().as_str())),
    ];
    if !logs.search.is_empty() {
        title.push(Span::raw("  search: "));
        title.push(Span::styled(logs.search.clone(), t.highlight()));
    }
    title.push(Span::raw(" "));
    let mut count = format!(" {}/{} lines", buf.shown_len(), buf.len());
    if buf.dropped_total > 0 {
        count.push_str(&format!(", {} dropped", buf.dropped_total));
    }
    count.push(' ');
    let block = Block::bordered()
        .title(Line::from(title))
        .title(Line::from(count).right_aligned());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let height = usize::from(inner.height);
    let Some(bottom) = logs.view_bottom() else {
        frame.render_widget(
            Paragraph::new(Line::styled("No log lines yet.", t.dim())),
            inner,
        );
        return;
    };
    let start = (bottom + 1).saturating_sub(height);
    let needle = logs.search.to_ascii_lowercase();
    let lines: Vec<Line> = (start..=bottom)
        .filter_map(|i| buf.shown(i))
        .map(|l| line(l, t, &needle))
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}
