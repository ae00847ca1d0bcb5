//! The fleet started from the emulator screen: its generation, where it is, and the form's last
//! answer (offered again next time).

use crate::tui::msg::FleetSpec;

/// Where the fleet started from the TUI is.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum FleetPhase {
    /// None started yet.
    #[default]
    Idle,
    /// Asked to start; no summary yet.
    Starting,
    Running,
    /// Asked to stop; its charge points are shutting down.
    Stopping,
    /// Stopped, or could not start (the reason).
    Ended(Option<String>),
}

/// The fleet of the emulator screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetRun {
    /// Generation: messages of an older fleet are dropped.
    pub run: u64,
    pub phase: FleetPhase,
    /// What the form asked for last.
    pub spec: Option<FleetSpec>,
}

impl FleetRun {
    pub fn active(&self) -> bool {
        matches!(
            self.phase,
            FleetPhase::Starting | FleetPhase::Running | FleetPhase::Stopping
        )
    }
}
