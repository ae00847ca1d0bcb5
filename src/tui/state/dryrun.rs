//! The commissioning dry run screen: what to run, and what the run has seen so far.

use std::path::PathBuf;

use super::TraceState;

/// Most OCPP messages the dry run's trace keeps.
pub const DRY_RUN_TRACE_CAPACITY: usize = 10_000;

/// Where the dry run is.
#[derive(Debug, Clone, PartialEq)]
pub enum DryRunPhase {
    /// Nothing started yet.
    Idle,
    /// Asked to start; nothing heard yet.
    Starting,
    Running,
    /// Asked to stop; the report follows.
    Stopping,
    /// Ended with a report.
    Finished,
    /// Could not run (a bad profile, ...).
    Failed(String),
}

/// The commissioning dry run screen: what to run, and what the run has seen so far.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRunState {
    /// A profile name (shipped or in the profiles directory) or a file; None: no profile.
    pub profile: Option<String>,
    /// None: the profile's CsmsUrl, else the sandbox CSMS.
    pub csms_url: Option<String>,
    /// Generation of the run: messages of an older one are dropped.
    pub run: u64,
    pub phase: DryRunPhase,
    pub progress: Option<crate::dryrun::Progress>,
    /// Findings as they arrived; replaced by the report's (sorted, counted) at the end.
    pub findings: Vec<crate::dryrun::Finding>,
    /// Index of the selected finding.
    pub selected: usize,
    pub trace: TraceState,
    pub report: Option<crate::dryrun::Report>,
    /// Where the report was last saved.
    pub saved: Option<PathBuf>,
}

impl Default for DryRunState {
    fn default() -> Self {
        DryRunState {
            profile: None,
            csms_url: None,
            run: 0,
            phase: DryRunPhase::Idle,
            progress: None,
            findings: Vec::new(),
            selected: 0,
            trace: TraceState::with_capacity(DRY_RUN_TRACE_CAPACITY),
            report: None,
            saved: None,
        }
    }
}

impl DryRunState {
    pub fn running(&self) -> bool {
        matches!(
            self.phase,
            DryRunPhase::Starting | DryRunPhase::Running | DryRunPhase::Stopping
        )
    }

    pub fn selected_finding(&self) -> Option<&crate::dryrun::Finding> {
        self.findings.get(self.selected)
    }
}
