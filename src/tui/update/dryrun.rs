//! The dry run screen: starting and stopping a run, its live updates, the report.

use std::path::PathBuf;

use crate::dryrun::{Report, ReportFormat, Update};
use crate::tui::action::Action;
use crate::tui::msg::{Direction, Effect, OcppFrame};
use crate::tui::state::{
    DryRunPhase, DryRunState, NoticeKind, PromptKind, State, default_report_path,
};

use super::{key_hint, notice, open_prompt, push_error};

pub(super) fn on_dry_run_finished(state: &mut State, run: u64, report: Box<Report>) -> Vec<Effect> {
    if run != state.dry_run.run {
        return vec![];
    }
    let d = &mut state.dry_run;
    d.phase = DryRunPhase::Finished;
    d.findings = report.findings.clone();
    d.selected = d.selected.min(d.findings.len().saturating_sub(1));
    let verdict = report.verdict_line();
    d.report = Some(*report.clone());
    if d.quit_pending || d.report_path.is_some() {
        let path = d
            .report_path
            .clone()
            .unwrap_or_else(|| default_report_path(state.report_dir.as_deref(), &report));
        let then = if state.dry_run.quit_pending {
            ", then quitting"
        } else {
            ""
        };
        notice(
            state,
            NoticeKind::Info,
            format!(
                "dry run: {verdict}; writing the report to {}{then}",
                path.display()
            ),
        );
        return vec![Effect::SaveReport { path, report }];
    }
    let hint = key_hint(state, Action::SaveReport)
        .map(|k| format!("; {k} saves the report"))
        .unwrap_or_default();
    notice(state, NoticeKind::Info, format!("dry run: {verdict}{hint}"));
    vec![]
}

/// A report was written; when quitting waited for it, the TUI quits now and says where it is.
pub(super) fn on_report_saved(state: &mut State, path: PathBuf) -> Vec<Effect> {
    notice(
        state,
        NoticeKind::Success,
        format!("report written to {}", path.display()),
    );
    let d = &mut state.dry_run;
    d.saved = Some(path.clone());
    if !d.quit_pending {
        return vec![];
    }
    if let Some(r) = &d.report {
        state
            .exit_lines
            .push(format!("dry run: {}", r.verdict_line()));
    }
    state
        .exit_lines
        .push(format!("dry run report written to {}", path.display()));
    super::quit_now(state)
}

/// A report could not be written. Quitting, if it waited, waits no more: the user may save it
/// elsewhere, and the next quit ends the TUI at once.
pub(super) fn on_report_not_saved(
    state: &mut State,
    path: PathBuf,
    message: String,
) -> Vec<Effect> {
    let text = format!("report not written to {}: {message}", path.display());
    push_error(state, text.clone());
    let d = &mut state.dry_run;
    let hint = if d.quit_pending {
        d.quit_pending = false;
        let save = key_hint(state, Action::SaveReport).unwrap_or_default();
        let quit = key_hint(state, Action::Quit).unwrap_or_default();
        format!("; {save} saves it elsewhere, {quit} quits without it")
    } else {
        String::new()
    };
    notice(state, NoticeKind::Error, format!("{text}{hint}"));
    vec![]
}

/// Quitting during a dry run ends the run the way Ctrl-C ends `chargectl dry-run`: the findings
/// so far are analysed, the report is written (to the file chosen for it, else to the reports
/// directory), then the TUI quits. A report made but never saved is written the same way.
/// Returns None when nothing holds the quit back (also when quit is asked a second time).
pub(super) fn quit_with_report(state: &mut State) -> Option<Vec<Effect>> {
    let d = &mut state.dry_run;
    if d.quit_armed || !(d.running() || d.unsaved_report()) {
        return None;
    }
    d.quit_armed = true;
    d.quit_pending = true;
    state.prompt = None;
    let again = key_hint(state, Action::Quit)
        .map(|k| format!(" ({k} again quits at once)"))
        .unwrap_or_default();
    let d = &mut state.dry_run;
    if let Some(report) = d.report.clone().filter(|_| !d.running()) {
        let path = d
            .report_path
            .clone()
            .unwrap_or_else(|| default_report_path(state.report_dir.as_deref(), &report));
        notice(
            state,
            NoticeKind::Info,
            format!(
                "writing the dry run report to {}, then quitting{again}",
                path.display()
            ),
        );
        return Some(vec![Effect::SaveReport {
            path,
            report: Box::new(report),
        }]);
    }
    let mut effects = vec![];
    if matches!(d.phase, DryRunPhase::Starting | DryRunPhase::Running) {
        d.phase = DryRunPhase::Stopping;
        effects.push(Effect::StopDryRun { run: d.run });
    }
    let destination = match (&d.report_path, &state.report_dir) {
        (Some(p), _) => p.display().to_string(),
        (None, Some(dir)) => dir.display().to_string(),
        (None, None) => "the current directory".to_string(),
    };
    notice(
        state,
        NoticeKind::Info,
        format!(
            "ending the dry run: its report goes to {destination}, then chargectl quits{again}"
        ),
    );
    Some(effects)
}

/// What the exit message says about a report that quitting did not wait for.
pub(super) fn note_unwritten_report(state: &mut State) {
    let d = &state.dry_run;
    if d.running() || d.unsaved_report() {
        state
            .exit_lines
            .push("the dry run's report was not written: chargectl quit before it was".into());
    }
}

/// Chooses (or, empty, forgets) the file the report goes to when the run ends; a report made
/// but not yet saved is written there now.
pub(super) fn choose_report_path(state: &mut State) -> Vec<Effect> {
    let prefill = state
        .dry_run
        .report_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    open_prompt(state, PromptKind::DryRunReportPath, prefill);
    vec![]
}

/// The answer of the [`PromptKind::DryRunReportPath`] prompt; Err keeps the prompt open.
pub(super) fn set_report_path(state: &mut State, text: &str) -> Result<Vec<Effect>, String> {
    if text.is_empty() {
        state.dry_run.report_path = None;
        notice(
            state,
            NoticeKind::Info,
            "no report file chosen: quitting during a run writes it to the reports directory"
                .into(),
        );
        return Ok(vec![]);
    }
    let path = PathBuf::from(text);
    if ReportFormat::for_path(&path).is_none() {
        return Err(ReportFormat::EXTENSIONS.into());
    }
    state.dry_run.report_path = Some(path.clone());
    let d = &state.dry_run;
    if let Some(report) = d.report.clone().filter(|_| d.unsaved_report()) {
        return Ok(vec![Effect::SaveReport {
            path,
            report: Box::new(report),
        }]);
    }
    notice(
        state,
        NoticeKind::Info,
        format!("the report goes to {} when the run ends", path.display()),
    );
    Ok(vec![])
}

pub(super) fn on_dry_run_failed(state: &mut State, run: u64, message: String) -> Vec<Effect> {
    if run != state.dry_run.run {
        return vec![];
    }
    state.dry_run.phase = DryRunPhase::Failed(message.clone());
    let text = format!("dry run: {message}");
    push_error(state, text.clone());
    notice(state, NoticeKind::Error, text.clone());
    if state.dry_run.quit_pending {
        state.exit_lines.push(text);
        return super::quit_now(state);
    }
    vec![]
}

pub(super) fn stop_dry_run(state: &mut State) -> Vec<Effect> {
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

pub(super) fn save_report(state: &mut State) -> Vec<Effect> {
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
        .or(state.dry_run.report_path.as_ref())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("dry-run-{}.md", report.charge_point_id));
    open_prompt(state, PromptKind::ReportPath, prefill);
    vec![]
}

/// Starts a new dry run, unless one is running; what the previous one showed is cleared.
pub(super) fn start_dry_run(state: &mut State) -> Vec<Effect> {
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
pub(super) fn on_dry_run_update(state: &mut State, run: u64, update: Update) {
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
