//! Commissioning dry runs: the emulated charger, configured exactly as `provision` would
//! configure the real one, runs a scenario against the operator's CSMS, and everything the CSMS
//! does is checked against the charger's release notes. The result is a [`Report`] of
//! findings: what would not work on the real charger, why (the release-note line), and what the
//! operator can do instead.
//!
//! | file | concern |
//! | --- | --- |
//! | [`scenario`] | the TOML timeline of hardware and network events, and the default scenario |
//! | [`findings`] | the catalogue: severities, areas, rules, release-note quotes |
//! | [`analyzer`] | the pure state machine from observations to findings |
//! | [`report`] | the report and its Markdown, HTML and JSON renderings |
//! | [`run`] | booting the emulated charger, playing the scenario, watching |

pub mod analyzer;
pub mod findings;
pub mod report;
pub mod run;
pub mod scenario;

pub use analyzer::{Analyzer, Context, Mark, Observation, Stamp};
pub use findings::{Area, ConnectFailure, Finding, Quote, Request, Rule, Severity};
pub use report::{EndedBy, Report, ReportFormat, Verdict};
pub use run::{FrameSeen, Plan, Progress, StepStarted, Update, run};
pub use scenario::{Action, Expectations, Scenario, Step};
