//! What a key means: one [`Action`] per thing the user can ask for.
//!
//! Keymap files name actions in kebab-case (`apply-pending`); the names come from serde, so the
//! code and the files cannot disagree. The doc line of each variant is its help text.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

macro_rules! actions {
    ($( $(#[doc = $doc:literal])+ $variant:ident ),* $(,)?) => {
        /// Something the user asked for through a key binding.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum Action {
            $( $(#[doc = $doc])+ $variant ),*
        }

        impl Action {
            /// Every action, in declaration order.
            pub const ALL: &'static [Action] = &[$(Action::$variant),*];

            /// One-line help text (the variant's doc comment).
            pub fn help(self) -> &'static str {
                match self {
                    $(Action::$variant => concat!($($doc),+).trim()),*
                }
            }
        }
    };
}

actions! {
    /// Quit chargectl
    Quit,
    /// Show or hide this help
    ToggleHelp,
    /// Go to the next screen
    NextScreen,
    /// Go to the previous screen
    PrevScreen,
    /// Show the connect screen
    ShowConnect,
    /// Show the dashboard
    ShowDashboard,
    /// Show the configuration screen
    ShowConfig,
    /// Show the firmware screen
    ShowFirmware,
    /// Show the charger log
    ShowLogs,
    /// Show the emulator and OCPP trace
    ShowEmulator,
    /// Show the commissioning dry run
    ShowDryRun,
    /// Move up one line
    Up,
    /// Move down one line
    Down,
    /// Move up one page
    PageUp,
    /// Move down one page
    PageDown,
    /// Go to the first line
    Top,
    /// Go to the last line (and follow new lines)
    Bottom,
    /// Open or confirm the selected item
    Select,
    /// Close the overlay or clear the current filter
    Back,
    /// List the serial ports again
    RefreshPorts,
    /// Start an emulated charger on the sandbox CSMS
    StartSandbox,
    /// Start an emulated charger on a CSMS URL you type
    StartCsmsUrl,
    /// Reconnect to the last charger
    Reconnect,
    /// Filter the list by text
    Filter,
    /// Edit the selected configuration value
    EditValue,
    /// Drop the pending change of the selected key
    RevertPending,
    /// Send all pending configuration changes to the charger
    ApplyPending,
    /// Load a provisioning profile and show what it would change
    LoadProfile,
    /// Read the configuration from the charger again
    ReloadConfig,
    /// Choose a firmware image file
    PickImage,
    /// Flash the inspected image to the inactive slot
    Flash,
    /// Reboot the charger
    Reboot,
    /// Search the log (matches are highlighted)
    Search,
    /// Pause or resume following new log lines
    TogglePause,
    /// Cycle the minimum log level shown
    CycleLevel,
    /// Jump to the next search match
    NextMatch,
    /// Jump to the previous search match
    PrevMatch,
    /// Write the log buffer to a file
    ExportLogs,
    /// Plug the EV cable in
    Plug,
    /// Unplug the EV cable
    Unplug,
    /// Present an RFID card
    PresentCard,
    /// Set the current the EV asks for
    SetEvDemand,
    /// Inject a hardware fault
    InjectFault,
    /// Clear the hardware fault
    ClearFault,
    /// Choose the provisioning profile of the dry run
    ChooseProfile,
    /// Choose the CSMS URL of the dry run
    ChooseCsmsUrl,
    /// Start a dry run against the chosen CSMS
    StartDryRun,
    /// Stop the dry run (its report is still made)
    StopDryRun,
    /// Save the dry run report (.md, .html or .json by extension)
    SaveReport,
    /// Choose the file the dry run's report is written to when the run ends
    ChooseReportPath,
    /// Start an emulated fleet (count, id template, ramp, sessions)
    StartFleet,
    /// Stop the emulated fleet
    StopFleet,
}

impl Action {
    /// The kebab-case name used in keymap files.
    pub fn name(self) -> &'static str {
        static NAMES: OnceLock<Vec<String>> = OnceLock::new();
        let names = NAMES.get_or_init(|| {
            Action::ALL
                .iter()
                .map(|a| match serde_json::to_value(a) {
                    Ok(serde_json::Value::String(s)) => s,
                    _ => format!("{a:?}"),
                })
                .collect()
        });
        names
            .get(self as usize)
            .map(String::as_str)
            .unwrap_or("unknown")
    }

    /// The action with this kebab-case name.
    pub fn from_name(name: &str) -> Option<Action> {
        use serde::de::IntoDeserializer;
        let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            name.into_deserializer();
        Action::deserialize(de).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_kebab_case() {
        for &a in Action::ALL {
            let name = a.name();
            assert_eq!(Action::from_name(name), Some(a), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{name}"
            );
            assert!(!a.help().is_empty());
        }
        assert_eq!(Action::ApplyPending.name(), "apply-pending");
        assert_eq!(Action::from_name("none"), None);
    }
}
