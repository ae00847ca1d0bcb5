//! `update(&mut State, Msg) -> Vec<Effect>`: every behaviour of the TUI, with no I/O, no clock
//! and no channels.
//!
//! This file routes messages and keys; each screen's behaviour lives beside it: [`connect`]
//! (the link and the emulator's hardware), [`config`], [`firmware`], [`dryrun`], [`fleet`], [`navigate`]
//! (lists, log following and search) and [`prompt`] (the one-line editor).

mod config;
mod connect;
mod dryrun;
mod firmware;
pub mod fleet;
mod navigate;
mod prompt;

pub use config::{validate_csms_url, validate_value};

use crossterm::event::KeyEvent;

use super::action::Action;
use super::keymap::{Key, Lookup};
use super::msg::{CsmsTarget, Effect, HardwareAction, Msg};
use super::state::{
    FlashPhase, LogLine, NOTICE_TTL, Notice, NoticeKind, Prompt, PromptKind, Screen, State, Target,
};
use crate::stack::logbook::Level;
use config::{
    apply_pending, clamp_config_selection, edit_value, on_config_applied, on_config_read,
    on_profile_loaded, read_config,
};
use connect::{
    connect_port, hardware, on_connected, on_link_lost, require_connected, require_emulator,
    select_connect_item, start_emulator,
};
use dryrun::{
    choose_report_path, on_dry_run_failed, on_dry_run_finished, on_dry_run_update,
    on_report_not_saved, on_report_saved, save_report, start_dry_run, stop_dry_run,
};
use firmware::{flash, reboot};
use navigate::{jump_to_match, navigate, pause_logs};
use prompt::on_prompt_key;

/// Most errors kept for the dashboard.
const ERRORS_KEPT: usize = 5;

/// Applies one message; returns what the runtime must do.
pub fn update(state: &mut State, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Key(ev) => on_key(state, ev),
        Msg::Resize(w, h) => {
            state.size = (w, h);
            vec![]
        }
        Msg::Tick(now) => {
            state.now = Some(now);
            if let Some(status) = &state.status {
                state.history.observe(status, now);
            }
            if let Some(n) = &mut state.notice {
                match n.until {
                    None => n.until = Some(now + NOTICE_TTL),
                    Some(t) if now >= t => state.notice = None,
                    Some(_) => {}
                }
            }
            vec![]
        }
        Msg::PortsListed(mut ports) => {
            ports.sort_by_key(|p| !p.likely_charger);
            state.connect.ports = ports;
            state.connect.listing = false;
            let n = state.connect.items().len();
            state.connect.selected = state.connect.selected.min(n.saturating_sub(1));
            vec![]
        }
        Msg::Connected(charger) => on_connected(state, charger),
        Msg::LinkLost { reason } => on_link_lost(state, reason),
        Msg::ConfigRead { request, entries } => on_config_read(state, request, entries),
        Msg::ConfigApplied(results) => {
            on_config_applied(state, results);
            vec![]
        }
        Msg::ProfileLoaded { path, changes } => on_profile_loaded(state, path, changes),
        Msg::Log(record) => {
            state.logs.buffer.push_record(record);
            vec![]
        }
        Msg::LinesDropped(n) => {
            if n > 0 {
                state.logs.buffer.push(LogLine::Dropped(n));
            }
            vec![]
        }
        Msg::FlashProgress(p) => {
            state.firmware.phase = FlashPhase::Flashing(p);
            vec![]
        }
        Msg::FlashFinished => {
            state.firmware.phase = FlashPhase::Flashed;
            let hint = key_hint(state, Action::Reboot).unwrap_or_default();
            notice(
                state,
                NoticeKind::Success,
                format!("image written and verified; {hint} reboots into it"),
            );
            vec![]
        }
        Msg::FlashFailed { reason } => {
            push_error(state, format!("flash failed: {reason}"));
            notice(state, NoticeKind::Error, format!("flash failed: {reason}"));
            state.firmware.phase = FlashPhase::Failed(reason);
            vec![]
        }
        Msg::ImageInspected { request, info } => {
            if request != state.firmware.request {
                return vec![];
            }
            state.firmware.inspecting = false;
            state.firmware.image = Some(info);
            if matches!(
                state.firmware.phase,
                FlashPhase::Failed(_) | FlashPhase::Done { .. }
            ) {
                state.firmware.phase = FlashPhase::Idle;
            }
            vec![]
        }
        Msg::Trace {
            direction,
            time,
            frame,
        } => {
            state.trace.push(direction, time, frame);
            vec![]
        }
        Msg::Status(s) => {
            state.status = Some(s);
            vec![]
        }
        Msg::Ocpp(report) => {
            state.ocpp = Some(report);
            vec![]
        }
        Msg::Fleet(summary) => {
            fleet::on_summary(state, summary);
            vec![]
        }
        Msg::FleetEnded { run, error } => {
            fleet::on_ended(state, run, error);
            vec![]
        }
        Msg::LogsExported { path, lines } => {
            notice(
                state,
                NoticeKind::Success,
                format!("{lines} lines written to {}", path.display()),
            );
            vec![]
        }
        Msg::DryRun { run, update } => {
            on_dry_run_update(state, run, update);
            vec![]
        }
        Msg::DryRunFinished { run, report } => on_dry_run_finished(state, run, report),
        Msg::DryRunFailed { run, message } => on_dry_run_failed(state, run, message),
        Msg::ReportSaved { path } => on_report_saved(state, path),
        Msg::ReportNotSaved { path, message } => on_report_not_saved(state, path, message),
        Msg::Error { context, message } => {
            if context.contains("config") {
                state.config.applying = false;
                state.config.reading = false;
            }
            if context.contains("image") {
                state.firmware.inspecting = false;
            }
            let text = format!("{context}: {message}");
            push_error(state, text.clone());
            notice(state, NoticeKind::Error, text);
            vec![]
        }
    }
}

fn notice(state: &mut State, kind: NoticeKind, text: String) {
    state.notice = Some(Notice {
        kind,
        text,
        until: state.now.map(|n| n + NOTICE_TTL),
    });
}

fn push_error(state: &mut State, text: String) {
    if state.errors.len() == ERRORS_KEPT {
        state.errors.pop_front();
    }
    state.errors.push_back(text);
}

fn key_hint(state: &State, action: Action) -> Option<String> {
    state.keymap.keys_for(state.screen.context(), action)
}

fn on_key(state: &mut State, ev: KeyEvent) -> Vec<Effect> {
    let Some(key) = Key::from_event(&ev) else {
        return vec![];
    };
    if key == Key::CTRL_C {
        return quit(state);
    }
    if state.prompt.is_some() {
        return on_prompt_key(state, ev);
    }
    let ctx = state.screen.context();
    let mut lookup = state.keymap.lookup(ctx, &state.pending_keys, key);
    if lookup == Lookup::Unbound && !state.pending_keys.is_empty() {
        state.pending_keys.clear();
        lookup = state.keymap.lookup(ctx, &[], key);
    }
    match lookup {
        Lookup::Pending => {
            state.pending_keys.push(key);
            vec![]
        }
        Lookup::Unbound => {
            state.pending_keys.clear();
            vec![]
        }
        Lookup::Action(action) => {
            state.pending_keys.clear();
            let confirming = state.confirm.take() == Some(action);
            if state.help.is_some() {
                return on_help_action(state, action);
            }
            dispatch(state, action, confirming)
        }
    }
}

/// Quit asked: a dry run in progress (or a report not yet saved) is finished first.
fn quit(state: &mut State) -> Vec<Effect> {
    if let Some(effects) = dryrun::quit_with_report(state) {
        return effects;
    }
    dryrun::note_unwritten_report(state);
    quit_now(state)
}

fn quit_now(state: &mut State) -> Vec<Effect> {
    state.quit = true;
    vec![Effect::Quit]
}

fn on_help_action(state: &mut State, action: Action) -> Vec<Effect> {
    let total = state.keymap.entries().len();
    let page = usize::from(state.size.1.saturating_sub(6)).max(1);
    let max = total.saturating_sub(page);
    let scroll = state.help.unwrap_or(0);
    state.help = match action {
        Action::ToggleHelp | Action::Back => None,
        Action::Quit => return quit(state),
        Action::Up => Some(scroll.saturating_sub(1)),
        Action::Down => Some((scroll + 1).min(max)),
        Action::PageUp => Some(scroll.saturating_sub(page)),
        Action::PageDown => Some((scroll + page).min(max)),
        Action::Top => Some(0),
        Action::Bottom => Some(max),
        _ => Some(scroll),
    };
    vec![]
}

fn open_prompt(state: &mut State, kind: PromptKind, text: impl Into<String>) {
    state.prompt = Some(Prompt::new(kind, text));
}

fn dispatch(state: &mut State, action: Action, confirming: bool) -> Vec<Effect> {
    let screen = state.screen;
    match action {
        Action::Quit => quit(state),
        Action::ToggleHelp => {
            state.help = Some(0);
            vec![]
        }
        Action::NextScreen => {
            state.screen = Screen::ALL[(screen.index() + 1) % Screen::ALL.len()];
            vec![]
        }
        Action::PrevScreen => {
            state.screen =
                Screen::ALL[(screen.index() + Screen::ALL.len() - 1) % Screen::ALL.len()];
            vec![]
        }
        Action::ShowConnect => show(state, Screen::Connect),
        Action::ShowDashboard => show(state, Screen::Dashboard),
        Action::ShowConfig => show(state, Screen::Config),
        Action::ShowFirmware => show(state, Screen::Firmware),
        Action::ShowLogs => show(state, Screen::Logs),
        Action::ShowEmulator => show(state, Screen::Emulator),
        Action::ShowDryRun => show(state, Screen::DryRun),
        Action::Up
        | Action::Down
        | Action::PageUp
        | Action::PageDown
        | Action::Top
        | Action::Bottom => {
            navigate(state, action);
            vec![]
        }
        Action::Select => match screen {
            Screen::Connect => select_connect_item(state),
            Screen::Config => edit_value(state),
            _ => vec![],
        },
        Action::Back => {
            match screen {
                Screen::Config => {
                    state.config.filter.clear();
                    clamp_config_selection(state);
                }
                Screen::Logs => state.logs.search.clear(),
                Screen::Emulator => state.trace.set_filter(""),
                _ => {}
            }
            state.notice = None;
            vec![]
        }
        Action::RefreshPorts => {
            state.connect.listing = true;
            vec![Effect::ListPorts]
        }
        Action::StartSandbox => start_emulator(state, CsmsTarget::Sandbox),
        Action::StartCsmsUrl => {
            open_prompt(state, PromptKind::CsmsUrl, "ws://");
            vec![]
        }
        Action::Reconnect => match state.link.target().cloned() {
            Some(Target::Port(port)) => connect_port(state, port),
            Some(Target::Emulator(csms)) => start_emulator(state, csms),
            None => {
                notice(
                    state,
                    NoticeKind::Info,
                    "no charger to reconnect to yet".into(),
                );
                vec![]
            }
        },
        Action::Filter => {
            match screen {
                Screen::Config => {
                    let f = state.config.filter.clone();
                    open_prompt(state, PromptKind::ConfigFilter, f);
                }
                Screen::Emulator => {
                    let f = state.trace.filter().to_string();
                    open_prompt(state, PromptKind::TraceFilter, f);
                }
                _ => {}
            }
            vec![]
        }
        Action::EditValue => edit_value(state),
        Action::RevertPending => {
            if let Some(key) = state.config.selected_entry().map(|e| e.key.clone())
                && state.config.pending.remove(&key).is_some()
            {
                notice(state, NoticeKind::Info, format!("{key}: change dropped"));
            }
            vec![]
        }
        Action::ApplyPending => apply_pending(state),
        Action::LoadProfile => {
            let prefill = state
                .config
                .profile
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            open_prompt(state, PromptKind::ProfilePath, prefill);
            vec![]
        }
        Action::ReloadConfig => {
            if require_connected(state) {
                read_config(state)
            } else {
                vec![]
            }
        }
        Action::PickImage => {
            let prefill = state
                .firmware
                .image_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            open_prompt(state, PromptKind::ImagePath, prefill);
            vec![]
        }
        Action::Flash => flash(state, confirming),
        Action::Reboot => reboot(state, confirming),
        Action::Search => {
            let s = state.logs.search.clone();
            open_prompt(state, PromptKind::LogSearch, s);
            vec![]
        }
        Action::TogglePause => {
            if state.logs.follow {
                pause_logs(state);
            } else {
                state.logs.follow = true;
            }
            vec![]
        }
        Action::CycleLevel => {
            let next = match state.logs.buffer.min_level() {
                Level::Trace => Level::Debug,
                Level::Debug => Level::Info,
                Level::Info => Level::Warn,
                Level::Warn => Level::Error,
                Level::Error => Level::Trace,
            };
            state.logs.buffer.set_min_level(next);
            vec![]
        }
        Action::NextMatch => {
            jump_to_match(state, true);
            vec![]
        }
        Action::PrevMatch => {
            jump_to_match(state, false);
            vec![]
        }
        Action::ExportLogs => {
            let name = format!("chargectl-log-{}.txt", state.logs.buffer.len());
            open_prompt(state, PromptKind::ExportPath, name);
            vec![]
        }
        Action::Plug => hardware(state, HardwareAction::Plug),
        Action::Unplug => hardware(state, HardwareAction::Unplug),
        Action::ClearFault => hardware(state, HardwareAction::ClearFault),
        Action::PresentCard | Action::SetEvDemand | Action::InjectFault => {
            if require_emulator(state) {
                let (kind, prefill) = match action {
                    Action::PresentCard => (PromptKind::CardId, ""),
                    Action::SetEvDemand => (PromptKind::EvDemand, "16"),
                    _ => (PromptKind::FaultCode, "GroundFailure"),
                };
                open_prompt(state, kind, prefill);
            }
            vec![]
        }
        Action::ChooseProfile => {
            let prefill = state.dry_run.profile.clone().unwrap_or_default();
            open_prompt(state, PromptKind::DryRunProfile, prefill);
            vec![]
        }
        Action::ChooseCsmsUrl => {
            let prefill = state
                .dry_run
                .csms_url
                .clone()
                .unwrap_or_else(|| "ws://".into());
            open_prompt(state, PromptKind::DryRunCsmsUrl, prefill);
            vec![]
        }
        Action::StartDryRun => start_dry_run(state),
        Action::StopDryRun => stop_dry_run(state),
        Action::SaveReport => save_report(state),
        Action::ChooseReportPath => choose_report_path(state),
        Action::StartFleet => fleet::open_form(state),
        Action::StopFleet => fleet::stop(state),
    }
}

fn show(state: &mut State, screen: Screen) -> Vec<Effect> {
    state.screen = screen;
    vec![]
}
