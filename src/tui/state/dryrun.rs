//! The commissioning dry run screen: what to run, and what the run has seen so far.

use std::path::{Path, PathBuf};

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
    /// Where the report is written as soon as the run ends (chosen before or during the run).
    pub report_path: Option<PathBuf>,
    /// The TUI quits once the report has been written (quit was asked during the run).
    pub quit_pending: bool,
    /// Quit was asked once already: asking again quits at once, report or not.
    pub quit_armed: bool,
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
            report_path: None,
            quit_pending: false,
            quit_armed: false,
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

    /// A report exists that was never written to a file.
    pub fn unsaved_report(&self) -> bool {
        self.report.is_some() && self.saved.is_none()
    }
}

/// Where a report goes when nobody chose a file: `dir` (the data directory's `reports`), named
/// after the charge point and the start of the run, as Markdown.
pub fn default_report_path(dir: Option<&Path>, report: &crate::dryrun::Report) -> PathBuf {
    let id: String = report
        .charge_point_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = format!(
        "dry-run-{id}-{}.md",
        report.started_at.format("%Y%m%dT%H%M%SZ")
    );
    match dir {
        Some(d) => d.join(name),
        None => PathBuf::from(name),
    }
}
