//! The one-line prompt: editing its text, live filters, and what Enter does for each kind.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::path::PathBuf;

use crate::dryrun::ReportFormat;
use crate::emulator::headless::fault_code_ignoring_case;
use crate::tui::msg::{ChangeValue, CsmsTarget, Effect, HardwareAction};
use crate::tui::state::{LogLine, Pending, PromptKind, State};

use super::config::{clamp_config_selection, validate_csms_url, validate_value};
use super::connect::{hardware, start_emulator};

pub(super) fn on_prompt_key(state: &mut State, ev: KeyEvent) -> Vec<Effect> {
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

pub(super) fn prompt_error(state: &mut State, message: String) -> Vec<Effect> {
    if let Some(p) = state.prompt.as_mut() {
        p.error = Some(message);
    }
    vec![]
}

pub(super) fn submit_prompt(state: &mut State) -> Vec<Effect> {
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
        PromptKind::FleetForm => match super::fleet::submit_form(state, &text) {
            Ok(effects) => {
                close(state);
                effects
            }
            Err(e) => prompt_error(state, e),
        },
        PromptKind::DryRunReportPath => match super::dryrun::set_report_path(state, &text) {
            Ok(effects) => {
                close(state);
                effects
            }
            Err(e) => prompt_error(state, e),
        },
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
