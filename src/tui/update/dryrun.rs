//! The dry run screen: starting and stopping a run, its live updates, the report.

use crate::dryrun::{Report, Update};
use crate::tui::action::Action;
use crate::tui::msg::{Direction, Effect, OcppFrame};
use crate::tui::state::{DryRunPhase, DryRunState, NoticeKind, PromptKind, State};

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
    d.report = Some(*report);
    let hint = key_hint(state, Action::SaveReport)
        .map(|k| format!("; {k} saves the report"))
        .unwrap_or_default();
    notice(state, NoticeKind::Info, format!("dry run: {verdict}{hint}"));
    vec![]
}

pub(super) fn on_dry_run_failed(state: &mut State, run: u64, message: String) -> Vec<Effect> {
    if run != state.dry_run.run {
        return vec![];
    }
    state.dry_run.phase = DryRunPhase::Failed(message.clone());
    let text = format!("dry run: {message}");
    push_error(state, text.clone());
    notice(state, NoticeKind::Error, text);
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
