//! The Config screen: reading the configuration, editing values, profiles, applying changes.

use std::path::PathBuf;

use crate::stack::config;
use crate::tui::action::Action;
use crate::tui::msg::{
    ApplyOutcome, ChangeValue, ConfigChange, ConfigEntry, Effect, ProvisioningChange, ValueType,
};
use crate::tui::state::{NoticeKind, Pending, Prompt, PromptKind, Screen, State};

use super::connect::require_connected;
use super::{key_hint, notice};

pub(super) fn on_config_read(
    state: &mut State,
    request: u64,
    entries: Vec<ConfigEntry>,
) -> Vec<Effect> {
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

pub(super) fn on_profile_loaded(
    state: &mut State,
    path: PathBuf,
    changes: Vec<ProvisioningChange>,
) -> Vec<Effect> {
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

pub(super) fn read_config(state: &mut State) -> Vec<Effect> {
    state.config.request += 1;
    state.config.reading = true;
    vec![Effect::ReadConfig {
        request: state.config.request,
    }]
}

pub(super) fn clamp_config_selection(state: &mut State) {
    let n = state.config.visible().len();
    state.config.selected = state.config.selected.min(n.saturating_sub(1));
}

pub(super) fn on_config_applied(state: &mut State, results: Vec<(String, ApplyOutcome)>) {
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

pub(super) fn edit_value(state: &mut State) -> Vec<Effect> {
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

pub(super) fn apply_pending(state: &mut State) -> Vec<Effect> {
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
