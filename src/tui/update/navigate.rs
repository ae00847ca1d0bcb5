//! Moving through lists: the connect items, configuration keys, log lines (following or
//! paused), the OCPP trace and the dry run's findings; and the log search.

use crate::tui::action::Action;
use crate::tui::state::{NoticeKind, Screen, State};

use super::{key_hint, notice};

pub(super) fn pause_logs(state: &mut State) {
    let logs = &mut state.logs;
    if let Some(pos) = logs.view_bottom() {
        logs.bottom = logs.buffer.shown_abs(pos).unwrap_or(0);
    }
    logs.follow = false;
}

pub(super) fn log_page(state: &State) -> usize {
    usize::from(state.size.1.saturating_sub(4)).max(1)
}

pub(super) fn trace_page(state: &State) -> usize {
    (usize::from(state.size.1.saturating_sub(4)) / 2).max(1)
}

pub(super) fn navigate(state: &mut State, action: Action) {
    match state.screen {
        Screen::Connect => {
            let n = state.connect.items().len();
            state.connect.selected = move_index(state.connect.selected, n, action, 10);
        }
        Screen::Config => {
            let n = state.config.visible().len();
            let page = usize::from(state.size.1.saturating_sub(6)).max(1);
            state.config.selected = move_index(state.config.selected, n, action, page);
        }
        Screen::Logs => {
            let page = log_page(state);
            let n = state.logs.buffer.shown_len();
            let Some(pos) = state.logs.view_bottom() else {
                return;
            };
            let target = match action {
                Action::Bottom => {
                    state.logs.follow = true;
                    return;
                }
                Action::Top => (page - 1).min(n - 1),
                _ => move_index(pos, n, action, page),
            };
            if (action == Action::Down || action == Action::PageDown) && target + 1 >= n {
                state.logs.follow = true;
                return;
            }
            state.logs.follow = false;
            state.logs.bottom = state.logs.buffer.shown_abs(target).unwrap_or(0);
        }
        Screen::Emulator => {
            let n = state.trace.shown_len();
            if n == 0 {
                return;
            }
            let pos = state
                .trace
                .selected
                .and_then(|s| state.trace.shown_position(s))
                .unwrap_or(n - 1);
            let page = trace_page(state);
            if action == Action::Bottom {
                state.trace.selected = None;
                return;
            }
            let new = move_index(pos, n, action, page);
            state.trace.selected = state.trace.shown_abs(new);
        }
        Screen::DryRun => {
            let n = state.dry_run.findings.len();
            let page = usize::from(state.size.1.saturating_sub(12)).max(1);
            state.dry_run.selected = move_index(state.dry_run.selected, n, action, page);
        }
        Screen::Dashboard | Screen::Firmware => {}
    }
}

pub(super) fn move_index(pos: usize, n: usize, action: Action, page: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let last = n - 1;
    match action {
        Action::Up => pos.saturating_sub(1),
        Action::Down => (pos + 1).min(last),
        Action::PageUp => pos.saturating_sub(page),
        Action::PageDown => (pos + page).min(last),
        Action::Top => 0,
        Action::Bottom => last,
        _ => pos.min(last),
    }
}

pub(super) fn jump_to_match(state: &mut State, older: bool) {
    let needle = state.logs.search.to_lowercase();
    if needle.is_empty() {
        let hint = key_hint(state, Action::Search).unwrap_or_default();
        notice(
            state,
            NoticeKind::Info,
            format!("no search; {hint} starts one"),
        );
        return;
    }
    let Some(pos) = state.logs.view_bottom() else {
        return;
    };
    let buf = &state.logs.buffer;
    let found = if older {
        (0..pos)
            .rev()
            .find(|i| buf.shown(*i).is_some_and(|l| l.contains(&needle)))
    } else {
        (pos + 1..buf.shown_len()).find(|i| buf.shown(*i).is_some_and(|l| l.contains(&needle)))
    };
    match found {
        Some(i) => {
            state.logs.follow = false;
            state.logs.bottom = buf.shown_abs(i).unwrap_or(0);
        }
        None => {
            let dir = if older { "older" } else { "newer" };
            notice(
                state,
                NoticeKind::Info,
                format!("no {dir} line matches '{}'", state.logs.search),
            );
        }
    }
}
