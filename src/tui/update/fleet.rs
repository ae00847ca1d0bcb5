//! The emulator screen's fleet: a one-line form (`count=200 template=SITE-{n:04} ramp=50
//! sessions=0.5`) that starts the same fleet as `chargectl emulate --count`, and its summaries.

use crate::emulator::fleet::IdTemplate;
use crate::tui::action::Action;
use crate::tui::msg::{CsmsTarget, Effect, FleetSpec};
use crate::tui::state::{FleetPhase, NoticeKind, PromptKind, State};

use super::config::validate_csms_url;
use super::{key_hint, notice, open_prompt};

/// Most charge points the form starts (the command line has no such cap).
pub const FORM_MAX_COUNT: u64 = 10_000;

/// The form's text for `spec`.
pub fn form_text(spec: &FleetSpec) -> String {
    let rate = |r: Option<f64>| r.map_or_else(|| "0".to_string(), |r| r.to_string());
    let mut text = format!(
        "count={} template={} ramp={} sessions={}",
        spec.count,
        spec.template,
        rate(spec.ramp),
        rate(spec.sessions)
    );
    if let Some(seed) = spec.seed {
        text.push_str(&format!(" seed={seed}"));
    }
    if let CsmsTarget::Url(url) = &spec.csms {
        text.push_str(&format!(" csms={url}"));
    }
    text
}

/// The form as offered the first time: ten charge points on the sandbox CSMS, all at once.
fn first_form() -> FleetSpec {
    FleetSpec {
        count: 10,
        template: "TUI-{n:04}".into(),
        ramp: None,
        sessions: Some(0.2),
        seed: None,
        csms: CsmsTarget::Sandbox,
    }
}

/// Reads the form: space-separated `key=value` fields in any order; errors name the column
/// (counted from 1) and the key.
pub fn parse_form(text: &str) -> Result<FleetSpec, String> {
    let mut spec = FleetSpec {
        count: 0,
        ..first_form()
    };
    let mut count = None;
    let mut col = 0;
    for field in text.split(' ') {
        let at = col + 1;
        col += field.chars().count() + 1;
        if field.is_empty() {
            continue;
        }
        let Some((key, value)) = field.split_once('=') else {
            return Err(format!(
                "column {at}: '{field}': expected key=value (count, template, ramp, sessions, seed, csms)"
            ));
        };
        let err = |what: &str| format!("column {at}: {key}: {what}, got '{value}'");
        match key {
            "count" => match value.parse::<u64>() {
                Ok(n) if (1..=FORM_MAX_COUNT).contains(&n) => count = Some(n),
                _ => return Err(err(&format!("expected 1 to {FORM_MAX_COUNT}"))),
            },
            "template" => {
                IdTemplate::parse(value).map_err(|e| format!("column {at}: template: {e}"))?;
                spec.template = value.to_string();
            }
            "ramp" | "sessions" => {
                let rate = match value.parse::<f64>() {
                    Ok(r) if r.is_finite() && r >= 0.0 => (r > 0.0).then_some(r),
                    _ => return Err(err("expected a rate per second (0: none)")),
                };
                if key == "ramp" {
                    spec.ramp = rate;
                } else {
                    spec.sessions = rate;
                }
            }
            "seed" => {
                spec.seed = Some(value.parse().map_err(|_| err("expected a whole number"))?);
            }
            "csms" => {
                spec.csms = if value.is_empty() || value == "sandbox" {
                    CsmsTarget::Sandbox
                } else {
                    CsmsTarget::Url(
                        validate_csms_url(value).map_err(|e| format!("column {at}: csms: {e}"))?,
                    )
                };
            }
            _ => {
                return Err(format!(
                    "column {at}: unknown field '{key}' (count, template, ramp, sessions, seed, csms)"
                ));
            }
        }
    }
    spec.count = count.ok_or("count=N is needed (1 to 10000)")?;
    Ok(spec)
}

/// Opens the form, unless a fleet runs.
pub(super) fn open_form(state: &mut State) -> Vec<Effect> {
    if state.fleet_run.active() {
        let hint = key_hint(state, Action::StopFleet)
            .map(|k| format!("; {k} stops it"))
            .unwrap_or_default();
        notice(state, NoticeKind::Info, format!("a fleet is running{hint}"));
        return vec![];
    }
    let text = form_text(state.fleet_run.spec.as_ref().unwrap_or(&first_form()));
    notice(
        state,
        NoticeKind::Info,
        "template: {n} is the number; ramp: charge points per second (0: all at once); \
         sessions: per second (0: none); csms=URL (default: the sandbox CSMS)"
            .into(),
    );
    open_prompt(state, PromptKind::FleetForm, text);
    vec![]
}

/// The form's answer: starts the fleet; Err keeps the form open with the message.
pub(super) fn submit_form(state: &mut State, text: &str) -> Result<Vec<Effect>, String> {
    let spec = parse_form(text)?;
    let f = &mut state.fleet_run;
    f.run += 1;
    f.phase = FleetPhase::Starting;
    f.spec = Some(spec.clone());
    let run = f.run;
    state.fleet = None;
    let on = match &spec.csms {
        CsmsTarget::Sandbox => "the sandbox CSMS".to_string(),
        CsmsTarget::Url(u) => u.clone(),
    };
    notice(
        state,
        NoticeKind::Info,
        format!("starting a fleet of {} on {on}…", spec.count),
    );
    Ok(vec![Effect::StartFleet { run, spec }])
}

pub(super) fn stop(state: &mut State) -> Vec<Effect> {
    let f = &mut state.fleet_run;
    if !matches!(f.phase, FleetPhase::Starting | FleetPhase::Running) {
        notice(state, NoticeKind::Info, "no fleet is running".into());
        return vec![];
    }
    f.phase = FleetPhase::Stopping;
    let run = f.run;
    notice(
        state,
        NoticeKind::Info,
        "stopping the fleet; each charge point saves its state".into(),
    );
    vec![Effect::StopFleet { run }]
}

pub(super) fn on_summary(state: &mut State, summary: crate::emulator::fleet::Summary) {
    if state.fleet_run.phase == FleetPhase::Starting {
        state.fleet_run.phase = FleetPhase::Running;
    }
    state
        .fleet
        .get_or_insert_with(Default::default)
        .update(summary);
}

pub(super) fn on_ended(state: &mut State, run: u64, error: Option<String>) {
    if run != state.fleet_run.run {
        return;
    }
    match &error {
        Some(e) => {
            let text = format!("fleet: {e}");
            super::push_error(state, text.clone());
            notice(state, NoticeKind::Error, text);
        }
        None => notice(state, NoticeKind::Info, "the fleet has stopped".into()),
    }
    state.fleet_run.phase = FleetPhase::Ended(error);
}
