//! `update(&mut State, Msg) -> Vec<Effect>`: every behaviour of the TUI, with no I/O, no clock
//! and no channels.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::path::PathBuf;

use super::action::Action;
use super::keymap::{Key, Lookup};
use super::msg::{
    ApplyOutcome, ChangeValue, ConfigChange, ConfigEntry, CsmsTarget, Direction, Effect,
    HardwareAction, Msg, OcppFrame, SignatureStatus, ValueType,
};
use super::state::{
    ConnectItem, DryRunPhase, DryRunState, FlashPhase, Link, LogLine, NOTICE_TTL, Notice,
    NoticeKind, Pending, Prompt, PromptKind, Screen, State, Target,
};
use crate::dryrun::{ReportFormat, Update};
use crate::emulator::headless::fault_code_ignoring_case;
use crate::stack::config;
use crate::stack::logbook::Level;

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
        Msg::Connected(charger) => {
            let identity = &charger.identity;
            if state.firmware.phase == FlashPhase::Rebooting {
                state.firmware.phase = FlashPhase::Done {
                    version: identity.firmware_version.clone(),
                };
            }
            let target = state
                .link
                .target()
                .cloned()
                .unwrap_or_else(|| Target::Port(identity.serial_number.clone()));
            notice(
                state,
                NoticeKind::Success,
                format!(
                    "connected to {} {} {} (firmware {})",
                    identity.vendor,
                    identity.model,
                    identity.serial_number,
                    identity.firmware_version
                ),
            );
            state.link = Link::Connected {
                target,
                charger,
                since: state.now,
            };
            if state.screen == Screen::Connect {
                state.screen = Screen::Dashboard;
            }
            read_config(state)
        }
        Msg::LinkLost { reason } => {
            let rebooting = state.firmware.phase == FlashPhase::Rebooting;
            if let Some(target) = state.link.target().cloned() {
                state.link = Link::Lost {
                    target,
                    reason: reason.clone(),
                };
            } else {
                state.link = Link::Idle;
            }
            state.config.applying = false;
            state.config.reading = false;
            if rebooting {
                notice(
                    state,
                    NoticeKind::Info,
                    "charger rebooting, waiting for it…".into(),
                );
            } else {
                let hint = key_hint(state, Action::Reconnect);
                push_error(state, format!("link lost: {reason}"));
                notice(
                    state,
                    NoticeKind::Error,
                    format!(
                        "link lost: {reason}{}",
                        hint.map(|k| format!(" ({k} reconnects)"))
                            .unwrap_or_default()
                    ),
                );
            }
            vec![]
        }
        Msg::ConfigRead { request, entries } => {
            if request != state.config.request {
                tracing::debug!(
                    request,
                    current = state.config.request,
                    "stale config read dropped"
                );
                return vec![];
            }
            let mut entries = entries;
            entries.sort_by(|a, b| a.key.cmp(&b.key));
            state.config.entries = entries;
            state.config.loaded = true;
            state.config.reading = false;
            clamp_config_selection(state);
            vec![]
        }
        Msg::ConfigApplied(results) => {
            on_config_applied(state, results);
            vec![]
        }
        Msg::ProfileLoaded { path, changes } => {
            let mut count = 0;
            for c in changes {
                let same = matches!(&c.new, ChangeValue::Plain(v) if Some(v) == c.old.as_ref());
                if same {
                    continue;
                }
                count += 1;
                state.config.pending.insert(
                    c.key,
                    Pending {
                        value: c.new,
                        from_profile: true,
                        outcome: None,
                    },
                );
            }
            let hint = key_hint(state, Action::ApplyPending).unwrap_or_default();
            notice(
                state,
                NoticeKind::Info,
                format!(
                    "profile {} would change {count} key(s); review and apply with {hint}",
                    path.display()
                ),
            );
            state.config.profile = Some(path);
            state.screen = Screen::Config;
            vec![]
        }
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
        Msg::Fleet(summary) => {
            state
                .fleet
                .get_or_insert_with(Default::default)
                .update(summary);
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
        Msg::DryRunFinished { run, report } => {
            if run != state.dry_run.run {
                return vec![];
            }
            let d = &mut state.dry_run;
            d.phase = DryRunPhase::Finished;
            d.findings = report.findings.clone();
            d.selected = d.selected.min(d.findings.len().saturating_sub(1));
            let verdict = report.verdict_line();
            d.report = Some(*report);
            let hint = key_hint(state, Action::SaveReport)
                .map(|k| format!("; {k} saves the report"))
                .unwrap_or_default();
            notice(state, NoticeKind::Info, format!("dry run: {verdict}{hint}"));
            vec![]
        }
        Msg::DryRunFailed { run, message } => {
            if run != state.dry_run.run {
                return vec![];
            }
            state.dry_run.phase = DryRunPhase::Failed(message.clone());
            let text = format!("dry run: {message}");
            push_error(state, text.clone());
            notice(state, NoticeKind::Error, text);
            vec![]
        }
        Msg::ReportSaved { path } => {
            notice(
                state,
                NoticeKind::Success,
                format!("report written to {}", path.display()),
            );
            state.dry_run.saved = Some(path);
            vec![]
        }
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

fn read_config(state: &mut State) -> Vec<Effect> {
    state.config.request += 1;
    state.config.reading = true;
    vec![Effect::ReadConfig {
        request: state.config.request,
    }]
}

fn clamp_config_selection(state: &mut State) {
    let n = state.config.visible().len();
    state.config.selected = state.config.selected.min(n.saturating_sub(1));
}

fn on_config_applied(state: &mut State, results: Vec<(String, ApplyOutcome)>) {
    state.config.applying = false;
    let (mut ok, mut reboot, mut refused) = (0, 0, 0);
    for (key, outcome) in results {
        match outcome {
            ApplyOutcome::Accepted | ApplyOutcome::RebootRequired => {
                if let Some(p) = state.config.pending.remove(&key)
                    && let Some(e) = state.config.entries.iter_mut().find(|e| e.key == key)
                    && !e.write_only
                {
                    e.value = Some(p.value.expose().to_string());
                }
                if outcome == ApplyOutcome::RebootRequired {
                    reboot += 1;
                    if !state.config.reboot_needed.contains(&key) {
                        state.config.reboot_needed.push(key);
                    }
                } else {
                    ok += 1;
                }
            }
            ApplyOutcome::Rejected(_) | ApplyOutcome::NotSupported => {
                refused += 1;
                if let Some(p) = state.config.pending.get_mut(&key) {
                    p.outcome = Some(outcome);
                }
            }
        }
    }
    if state.config.pending.values().all(|p| !p.from_profile) {
        state.config.profile = None;
    }
    let mut text = format!("{ok} accepted");
    if reboot > 0 {
        text.push_str(&format!(", {reboot} need a reboot"));
    }
    if refused > 0 {
        text.push_str(&format!(", {refused} refused (still pending)"));
    }
    let kind = if refused > 0 {
        NoticeKind::Error
    } else {
        NoticeKind::Success
    };
    notice(state, kind, text);
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

fn quit(state: &mut State) -> Vec<Effect> {
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
        Action::StopDryRun => {
            let d = &mut state.dry_run;
            if matches!(d.phase, DryRunPhase::Starting | DryRunPhase::Running) {
                d.phase = DryRunPhase::Stopping;
                let run = d.run;
                notice(
                    state,
                    NoticeKind::Info,
                    "stopping the dry run; the report follows".into(),
                );
                vec![Effect::StopDryRun { run }]
            } else {
                notice(state, NoticeKind::Info, "no dry run is running".into());
                vec![]
            }
        }
        Action::SaveReport => {
            let Some(report) = &state.dry_run.report else {
                let hint = key_hint(state, Action::StartDryRun)
                    .map(|k| format!(" ({k} starts one)"))
                    .unwrap_or_default();
                notice(
                    state,
                    NoticeKind::Error,
                    format!("no report yet: a dry run makes one when it ends{hint}"),
                );
                return vec![];
            };
            let prefill = state
                .dry_run
                .saved
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| format!("dry-run-{}.md", report.charge_point_id));
            open_prompt(state, PromptKind::ReportPath, prefill);
            vec![]
        }
    }
}

/// Starts a new dry run, unless one is running; what the previous one showed is cleared.
fn start_dry_run(state: &mut State) -> Vec<Effect> {
    if state.dry_run.running() {
        let hint = key_hint(state, Action::StopDryRun)
            .map(|k| format!("; {k} stops it"))
            .unwrap_or_default();
        notice(
            state,
            NoticeKind::Info,
            format!("a dry run is running{hint}"),
        );
        return vec![];
    }
    let d = &mut state.dry_run;
    let profile = d.profile.clone();
    let csms_url = d.csms_url.clone();
    *d = DryRunState {
        profile: profile.clone(),
        csms_url: csms_url.clone(),
        run: d.run + 1,
        phase: DryRunPhase::Starting,
        ..DryRunState::default()
    };
    let run = d.run;
    let against = csms_url.as_deref().unwrap_or(if profile.is_some() {
        "the profile's CSMS"
    } else {
        "the sandbox CSMS"
    });
    notice(
        state,
        NoticeKind::Info,
        format!("dry run against {against} starting…"),
    );
    vec![Effect::StartDryRun {
        run,
        profile,
        csms_url,
    }]
}

/// What the running dry run reports: progress, findings as they come, its OCPP trace.
fn on_dry_run_update(state: &mut State, run: u64, update: Update) {
    let d = &mut state.dry_run;
    if run != d.run || !d.running() {
        return;
    }
    if d.phase == DryRunPhase::Starting {
        d.phase = DryRunPhase::Running;
    }
    match update {
        Update::Progress(p) => d.progress = Some(p),
        Update::Step(_) => {}
        Update::Finding(f) => d.findings.push(f),
        Update::Frame(f) => {
            let direction = match f.direction {
                crate::stack::chargepoint::Direction::Sent => Direction::Sent,
                crate::stack::chargepoint::Direction::Received => Direction::Received,
            };
            if let Some(frame) = OcppFrame::from_wire(&f.frame) {
                d.trace.push(direction, f.time, frame);
            }
        }
    }
}

fn show(state: &mut State, screen: Screen) -> Vec<Effect> {
    state.screen = screen;
    vec![]
}

fn require_connected(state: &mut State) -> bool {
    if state.link.charger().is_some() {
        return true;
    }
    notice(
        state,
        NoticeKind::Error,
        "not connected to a charger".into(),
    );
    false
}

fn require_emulator(state: &mut State) -> bool {
    if state.is_emulated() && state.link.charger().is_some() {
        return true;
    }
    notice(
        state,
        NoticeKind::Error,
        "hardware controls need a running emulated charger".into(),
    );
    false
}

fn hardware(state: &mut State, action: HardwareAction) -> Vec<Effect> {
    if require_emulator(state) {
        vec![Effect::Hardware(action)]
    } else {
        vec![]
    }
}

/// Forgets what belonged to the previous charger.
fn reset_session(state: &mut State) {
    state.config = Default::default();
    state.status = None;
    state.history = Default::default();
    if matches!(
        state.firmware.phase,
        FlashPhase::Flashed | FlashPhase::Failed(_) | FlashPhase::Done { .. }
    ) {
        state.firmware.phase = FlashPhase::Idle;
    }
}

fn connect_port(state: &mut State, port: String) -> Vec<Effect> {
    let mut effects = vec![];
    if matches!(state.link, Link::Connected { .. } | Link::Connecting(_)) {
        effects.push(Effect::Disconnect);
    }
    reset_session(state);
    state.link = Link::Connecting(Target::Port(port.clone()));
    notice(state, NoticeKind::Info, format!("connecting to {port}…"));
    effects.push(Effect::Connect { port });
    effects
}

fn start_emulator(state: &mut State, csms: CsmsTarget) -> Vec<Effect> {
    let mut effects = vec![];
    if matches!(state.link, Link::Connected { .. } | Link::Connecting(_)) {
        effects.push(Effect::Disconnect);
    }
    reset_session(state);
    let target = Target::Emulator(csms.clone());
    notice(
        state,
        NoticeKind::Info,
        format!("starting {}…", target.describe()),
    );
    state.link = Link::Connecting(target);
    effects.push(Effect::StartEmulator { csms });
    effects
}

fn select_connect_item(state: &mut State) -> Vec<Effect> {
    match state.connect.items().get(state.connect.selected).cloned() {
        Some(ConnectItem::Port(i)) => match state.connect.ports.get(i) {
            Some(p) => {
                let path = p.path.clone();
                connect_port(state, path)
            }
            None => vec![],
        },
        Some(ConnectItem::Sandbox) => start_emulator(state, CsmsTarget::Sandbox),
        Some(ConnectItem::CsmsUrl) => {
            open_prompt(state, PromptKind::CsmsUrl, "ws://");
            vec![]
        }
        None => vec![],
    }
}

fn edit_value(state: &mut State) -> Vec<Effect> {
    let Some(entry) = state.config.selected_entry().cloned() else {
        return vec![];
    };
    if entry.readonly {
        notice(
            state,
            NoticeKind::Error,
            format!("{} is read-only", entry.key),
        );
        return vec![];
    }
    let current = match state.config.pending.get(&entry.key) {
        Some(p) if !entry.write_only => p.value.expose().to_string(),
        Some(_) => String::new(),
        None => entry.value.clone().unwrap_or_default(),
    };
    let mut prompt = Prompt::new(
        PromptKind::EditValue {
            key: entry.key.clone(),
        },
        current,
    );
    prompt.secret = entry.write_only;
    state.prompt = Some(prompt);
    vec![]
}

/// Checks a value against the key's type before it is sent; returns the normalised value.
/// The charger still has the final word.
pub fn validate_value(entry: &ConfigEntry, text: &str) -> Result<String, String> {
    let t = text.trim();
    match entry.value_type {
        ValueType::Boolean => match t.to_ascii_lowercase().as_str() {
            "true" => Ok("true".into()),
            "false" => Ok("false".into()),
            _ => Err(format!("{}: expected true or false, got '{t}'", entry.key)),
        },
        ValueType::Integer => t
            .parse::<i64>()
            .map(|n| n.to_string())
            .map_err(|_| format!("{}: expected a whole number, got '{t}'", entry.key)),
        ValueType::List => {
            let items: Vec<&str> = t.split(',').map(str::trim).collect();
            if let Some(pos) = items.iter().position(|i| i.is_empty()) {
                if t.is_empty() {
                    return Ok(String::new());
                }
                return Err(format!(
                    "{}: item {} of the comma-separated list is empty",
                    entry.key,
                    pos + 1
                ));
            }
            Ok(items.join(","))
        }
        ValueType::String => {
            config::check_value_length(text).map_err(|e| format!("{}: {e}", entry.key))?;
            Ok(text.to_string())
        }
    }
}

/// Checks a CSMS URL typed by the user with the configuration's own rule for `CsmsUrl`.
pub fn validate_csms_url(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("enter a ws:// or wss:// URL".to_string());
    }
    config::check_ws_url(t).map_err(|e| format!("'{t}': {e}"))?;
    Ok(t.to_string())
}

fn apply_pending(state: &mut State) -> Vec<Effect> {
    if state.config.pending.is_empty() {
        notice(state, NoticeKind::Info, "no pending changes".into());
        return vec![];
    }
    if !require_connected(state) {
        return vec![];
    }
    if state.config.applying {
        notice(state, NoticeKind::Info, "already applying changes".into());
        return vec![];
    }
    state.config.applying = true;
    let changes = state
        .config
        .pending
        .iter_mut()
        .map(|(k, p)| {
            p.outcome = None;
            ConfigChange {
                key: k.clone(),
                value: p.value.clone(),
            }
        })
        .collect();
    vec![Effect::ApplyConfig { changes }]
}

fn flash(state: &mut State, confirming: bool) -> Vec<Effect> {
    if matches!(state.firmware.phase, FlashPhase::Flashing(_)) {
        notice(state, NoticeKind::Info, "a flash is already running".into());
        return vec![];
    }
    let Some(image) = state.firmware.image.clone() else {
        let hint = key_hint(state, Action::PickImage).unwrap_or_default();
        notice(
            state,
            NoticeKind::Error,
            format!("choose an image first ({hint})"),
        );
        return vec![];
    };
    if !matches!(
        image.signature,
        SignatureStatus::Valid { .. } | SignatureStatus::Unchecked { .. }
    ) {
        notice(
            state,
            NoticeKind::Error,
            "the charger would refuse this image: its signature does not verify".into(),
        );
        return vec![];
    }
    if !require_connected(state) {
        return vec![];
    }
    if !confirming {
        state.confirm = Some(Action::Flash);
        let hint = key_hint(state, Action::Flash).unwrap_or_default();
        notice(
            state,
            NoticeKind::Info,
            format!(
                "flash {} to the inactive slot? press {hint} again",
                image.version
            ),
        );
        return vec![];
    }
    state.firmware.previous_version = state
        .link
        .charger()
        .map(|c| c.identity.firmware_version.clone());
    state.firmware.phase = FlashPhase::Flashing(super::msg::FlashProgress {
        done: 0,
        total: image.size,
        rate: 0.0,
        eta: None,
    });
    vec![Effect::StartFlash { path: image.path }]
}

fn reboot(state: &mut State, confirming: bool) -> Vec<Effect> {
    if !require_connected(state) {
        return vec![];
    }
    if matches!(state.firmware.phase, FlashPhase::Flashing(_)) {
        notice(
            state,
            NoticeKind::Error,
            "wait for the flash to finish".into(),
        );
        return vec![];
    }
    if !confirming {
        state.confirm = Some(Action::Reboot);
        let hint = key_hint(state, Action::Reboot).unwrap_or_default();
        notice(
            state,
            NoticeKind::Info,
            format!("reboot the charger? press {hint} again"),
        );
        return vec![];
    }
    if state.firmware.phase == FlashPhase::Flashed {
        state.firmware.phase = FlashPhase::Rebooting;
    }
    state.config.reboot_needed.clear();
    notice(state, NoticeKind::Info, "rebooting…".into());
    vec![Effect::Reboot]
}

fn pause_logs(state: &mut State) {
    let logs = &mut state.logs;
    if let Some(pos) = logs.view_bottom() {
        logs.bottom = logs.buffer.shown_abs(pos).unwrap_or(0);
    }
    logs.follow = false;
}

fn log_page(state: &State) -> usize {
    usize::from(state.size.1.saturating_sub(4)).max(1)
}

fn trace_page(state: &State) -> usize {
    (usize::from(state.size.1.saturating_sub(4)) / 2).max(1)
}

fn navigate(state: &mut State, action: Action) {
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

fn move_index(pos: usize, n: usize, action: Action, page: usize) -> usize {
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

fn jump_to_match(state: &mut State, older: bool) {
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

fn on_prompt_key(state: &mut State, ev: KeyEvent) -> Vec<Effect> {
    let Some(prompt) = state.prompt.as_mut() else {
        return vec![];
    };
    let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
    match ev.code {
        KeyCode::Esc => {
            let kind = prompt.kind.clone();
            state.prompt = None;
            // Escaping a live filter clears it.
            match kind {
                PromptKind::ConfigFilter => {
                    state.config.filter.clear();
                    clamp_config_selection(state);
                }
                PromptKind::LogSearch => state.logs.search.clear(),
                PromptKind::TraceFilter => state.trace.set_filter(""),
                _ => {}
            }
            return vec![];
        }
        KeyCode::Enter => return submit_prompt(state),
        KeyCode::Backspace => prompt.backspace(),
        KeyCode::Delete => prompt.delete(),
        KeyCode::Left => prompt.left(),
        KeyCode::Right => prompt.right(),
        KeyCode::Home => prompt.cursor = 0,
        KeyCode::End => prompt.cursor = prompt.text.chars().count(),
        KeyCode::Char('u') if ctrl => {
            prompt.text.clear();
            prompt.cursor = 0;
        }
        KeyCode::Char(c) if !ctrl => prompt.insert(c),
        _ => return vec![],
    }
    prompt.error = None;
    if prompt.kind.is_live() {
        let text = prompt.text.clone();
        match prompt.kind {
            PromptKind::ConfigFilter => {
                state.config.filter = text;
                state.config.selected = 0;
            }
            PromptKind::LogSearch => state.logs.search = text,
            PromptKind::TraceFilter => {
                state.trace.set_filter(&text);
                state.trace.selected = None;
            }
            _ => {}
        }
    }
    vec![]
}

fn prompt_error(state: &mut State, message: String) -> Vec<Effect> {
    if let Some(p) = state.prompt.as_mut() {
        p.error = Some(message);
    }
    vec![]
}

fn submit_prompt(state: &mut State) -> Vec<Effect> {
    let Some(prompt) = state.prompt.clone() else {
        return vec![];
    };
    let text = prompt.text.trim().to_string();
    let close = |state: &mut State| state.prompt = None;
    match prompt.kind {
        PromptKind::ConfigFilter | PromptKind::LogSearch | PromptKind::TraceFilter => {
            close(state);
            vec![]
        }
        PromptKind::CsmsUrl => match validate_csms_url(&text) {
            Ok(url) => {
                close(state);
                start_emulator(state, CsmsTarget::Url(url))
            }
            Err(e) => prompt_error(state, e),
        },
        PromptKind::EditValue { key } => {
            let Some(entry) = state.config.entries.iter().find(|e| e.key == key).cloned() else {
                close(state);
                return vec![];
            };
            let raw = if entry.write_only {
                prompt.text.clone()
            } else {
                text
            };
            match validate_value(&entry, &raw) {
                Ok(value) => {
                    close(state);
                    if !entry.write_only && entry.value.as_deref() == Some(value.as_str()) {
                        state.config.pending.remove(&key);
                    } else {
                        let value = if entry.write_only {
                            ChangeValue::Secret(crate::stack::secret::Secret::new(value))
                        } else {
                            ChangeValue::Plain(value)
                        };
                        state.config.pending.insert(
                            key,
                            Pending {
                                value,
                                from_profile: false,
                                outcome: None,
                            },
                        );
                    }
                    vec![]
                }
                Err(e) => prompt_error(state, e),
            }
        }
        PromptKind::ProfilePath => {
            if text.is_empty() {
                return prompt_error(state, "type the path of a profile file".into());
            }
            close(state);
            vec![Effect::LoadProfile {
                path: PathBuf::from(text),
            }]
        }
        PromptKind::ImagePath => {
            if text.is_empty() {
                return prompt_error(state, "type the path of an image file".into());
            }
            close(state);
            let path = PathBuf::from(text);
            state.firmware.request += 1;
            state.firmware.inspecting = true;
            state.firmware.image = None;
            state.firmware.image_path = Some(path.clone());
            vec![Effect::InspectImage {
                request: state.firmware.request,
                path,
            }]
        }
        PromptKind::ExportPath => {
            if text.is_empty() {
                return prompt_error(state, "type a file name".into());
            }
            close(state);
            let lines = state.logs.buffer.iter().map(LogLine::to_text).collect();
            vec![Effect::ExportLogs {
                path: PathBuf::from(text),
                lines,
            }]
        }
        PromptKind::CardId => {
            let n = text.chars().count();
            if n == 0 || n > 20 {
                return prompt_error(state, "a card id has 1 to 20 characters".into());
            }
            close(state);
            hardware(state, HardwareAction::PresentCard { id_tag: text })
        }
        PromptKind::EvDemand => match text.parse::<f64>() {
            Ok(a) if (0.0..=80.0).contains(&a) => {
                close(state);
                hardware(state, HardwareAction::EvDemand { amps: a })
            }
            _ => prompt_error(state, format!("'{text}': expected amps between 0 and 80")),
        },
        PromptKind::DryRunProfile => {
            close(state);
            state.dry_run.profile = (!text.is_empty()).then_some(text);
            vec![]
        }
        PromptKind::DryRunCsmsUrl => {
            if text.is_empty() || text == "ws://" || text == "wss://" {
                close(state);
                state.dry_run.csms_url = None;
                return vec![];
            }
            match validate_csms_url(&text) {
                Ok(url) => {
                    close(state);
                    state.dry_run.csms_url = Some(url);
                    vec![]
                }
                Err(e) => prompt_error(state, e),
            }
        }
        PromptKind::ReportPath => {
            if text.is_empty() {
                return prompt_error(state, "type a file name".into());
            }
            let path = PathBuf::from(text);
            if ReportFormat::for_path(&path).is_none() {
                return prompt_error(state, ReportFormat::EXTENSIONS.into());
            }
            let Some(report) = state.dry_run.report.clone() else {
                close(state);
                return vec![];
            };
            close(state);
            vec![Effect::SaveReport {
                path,
                report: Box::new(report),
            }]
        }
        PromptKind::FaultCode => match fault_code_ignoring_case(&text) {
            Some(code) => {
                close(state);
                hardware(
                    state,
                    HardwareAction::Fault {
                        code: code.as_str().to_string(),
                    },
                )
            }
            None => prompt_error(
                state,
                format!("'{text}' is not an OCPP error code (e.g. GroundFailure, OverVoltage)"),
            ),
        },
    }
}
