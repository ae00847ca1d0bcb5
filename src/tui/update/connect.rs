//! The Connect screen and the link: connecting to a port or starting the emulated charger,
//! what arrives when it connects or is lost, and the hardware controls of the emulator.

use crate::tui::action::Action;
use crate::tui::msg::{ChargerInfo, CsmsTarget, Effect, HardwareAction};
use crate::tui::state::{
    ConnectItem, FlashPhase, Link, NoticeKind, PromptKind, Screen, State, Target,
};

use super::config::read_config;
use super::{key_hint, notice, open_prompt, push_error};

pub(super) fn on_connected(state: &mut State, charger: ChargerInfo) -> Vec<Effect> {
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
            identity.vendor, identity.model, identity.serial_number, identity.firmware_version
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

pub(super) fn on_link_lost(state: &mut State, reason: String) -> Vec<Effect> {
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

pub(super) fn require_connected(state: &mut State) -> bool {
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

pub(super) fn require_emulator(state: &mut State) -> bool {
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

pub(super) fn hardware(state: &mut State, action: HardwareAction) -> Vec<Effect> {
    if require_emulator(state) {
        vec![Effect::Hardware(action)]
    } else {
        vec![]
    }
}

/// Forgets what belonged to the previous charger.
pub(super) fn reset_session(state: &mut State) {
    state.config = Default::default();
    state.status = None;
    state.ocpp = None;
    state.history = Default::default();
    if matches!(
        state.firmware.phase,
        FlashPhase::Flashed | FlashPhase::Failed(_) | FlashPhase::Done { .. }
    ) {
        state.firmware.phase = FlashPhase::Idle;
    }
}

pub(super) fn connect_port(state: &mut State, port: String) -> Vec<Effect> {
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

pub(super) fn start_emulator(state: &mut State, csms: CsmsTarget) -> Vec<Effect> {
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

pub(super) fn select_connect_item(state: &mut State) -> Vec<Effect> {
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
