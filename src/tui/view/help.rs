//! Help overlay, generated from the active keymap in a stable order.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Clear, Row, Table};

use crate::tui::keymap::seq_to_string;
use crate::tui::state::State;

/// Rows of the help overlay: (context, keys, action, help text).
pub fn help_rows(state: &State) -> Vec<[String; 4]> {
    state
        .keymap
        .entries()
        .into_iter()
        .map(|(ctx, keys, action)| {
            [
                ctx.name().to_string(),
                seq_to_string(&keys),
                action.name().to_string(),
                action.help().to_string(),
            ]
        })
        .collect()
}

pub(super) fn render(state: &State, frame: &mut Frame, area: Rect, scroll: usize) {
    let t = &state.theme;
    let popup = area.centered(Constraint::Percentage(96), Constraint::Percentage(92));
    frame.render_widget(Clear, popup);
    let rows = help_rows(state);
    let total = rows.len();
    let height = usize::from(popup.height.saturating_sub(3));
    let start = scroll.min(total.saturating_sub(height));
    let body: Vec<Row> = rows
        .into_iter()
        .skip(start)
        .take(height)
        .map(|[c, k, _a, h]| Row::new(vec![c, k, h]))
        .collect();
    let title = format!(
        " Keys {}-{} of {total} (text fields: enter, esc, ←/→, backspace, ctrl-u) ",
        (start + 1).min(total),
        (start + height).min(total)
    );
    let table = Table::new(
        body,
        [
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Min(20),
        ],
    )
    .header(Row::new(vec!["Where", "Keys", "Does"]).style(t.dim()))
    .block(Block::bordered().title(Span::styled(title, t.title())));
    frame.render_widget(table, popup);
}
