//! The Firmware screen: flashing the chosen image and rebooting, each confirmed by a second
//! press.

use crate::tui::action::Action;
use crate::tui::msg::{Effect, SignatureStatus};
use crate::tui::state::{FlashPhase, NoticeKind, State};

use super::connect::require_connected;
use super::{key_hint, notice};

pub(super) fn flash(state: &mut State, confirming: bool) -> Vec<Effect> {
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
    state.firmware.phase = FlashPhase::Flashing(crate::tui::msg::FlashProgress {
        done: 0,
        total: image.size,
        rate: 0.0,
        eta: None,
    });
    vec![Effect::StartFlash { path: image.path }]
}

pub(super) fn reboot(state: &mut State, confirming: bool) -> Vec<Effect> {
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
