//! Provisioning one charger from start to online: read its identity (which fills `${SERIAL}`,
//! `${MODEL}`, `${FIRMWARE}`), apply the profile ([`super::apply`]), reboot it when a written
//! key needs it, then wait until it reports being connected to its CSMS and Accepted
//! ([`super::wait_online`]). Progress goes to a callback; nothing is printed, so the command
//! line's live table and JSON Lines and the TUI all run this.

use std::time::Duration;

use super::online::{self, OnlineReport};
use super::{Assignment, Builtins, Mode, Report, Step};
use crate::link::{self, OcppStatus};

/// How far to go.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub mode: Mode,
    /// Reboot when a written key takes effect only after a reboot.
    pub reboot: bool,
    /// Longest wait for online; zero skips the wait.
    pub wait_online: Duration,
    /// How often the charger's OCPP state is read while waiting.
    pub poll: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Write,
            reboot: true,
            wait_online: Duration::from_secs(120),
            poll: Duration::from_millis(500),
        }
    }
}

/// What is happening to one charger, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// The charger said who it is.
    Identified(&'a link::Identity),
    /// A step of applying the profile.
    Apply(Step<'a>),
    /// A written key needs a reboot: the charger is rebooting.
    Rebooting,
    /// The charger answers again after the reboot.
    Rebooted,
    /// What the charger reports while the wait for online runs.
    Waiting(&'a OcppStatus),
}

/// What happened to one charger.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub identity: link::Identity,
    pub report: Report,
    pub rebooted: bool,
    /// Why the charger was not rebooted although a written key needs it (`--no-reboot`).
    pub reboot_skipped: bool,
    /// The wait for online, when it ran.
    pub online: Option<OnlineReport>,
}

/// Why provisioning one charger stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Link(#[from] link::Error),
    #[error(transparent)]
    Profile(#[from] super::Error),
}

/// Provisions the charger behind `client`. `resolve` turns the profile into keys for this
/// charger's built-in variables. Keys the charger refuses end the run after the report (no
/// reboot, no wait): the outcome says which.
pub async fn provision(
    client: &link::Client,
    resolve: impl FnOnce(&Builtins) -> super::Result<Vec<Assignment>>,
    opts: Options,
    mut progress: impl FnMut(Progress<'_>) + Send,
) -> Result<Outcome, Error> {
    let identity = client.identify().await?;
    progress(Progress::Identified(&identity));
    let builtins = Builtins::of(
        &identity.serial_number,
        &identity.model,
        &identity.firmware_version,
    );
    let assignments = resolve(&builtins)?;
    let report = super::apply(client, assignments, opts.mode, |s| {
        progress(Progress::Apply(s))
    })
    .await?;
    let mut outcome = Outcome {
        identity,
        rebooted: false,
        reboot_skipped: false,
        online: None,
        report,
    };
    if opts.mode == Mode::DryRun || outcome.report.refused().next().is_some() {
        return Ok(outcome);
    }
    if outcome.report.needs_reboot() {
        if !opts.reboot {
            outcome.reboot_skipped = true;
            return Ok(outcome);
        }
        progress(Progress::Rebooting);
        client.reboot().await?;
        client.reconnect().await?;
        outcome.rebooted = true;
        progress(Progress::Rebooted);
    }
    if !opts.wait_online.is_zero() {
        let report = online::wait_online(client, opts.wait_online, opts.poll, |s| {
            progress(Progress::Waiting(s))
        })
        .await?;
        outcome.online = Some(report);
    }
    Ok(outcome)
}
