//! The commissioning dry run started from the TUI: the same [`crate::dryrun::run`] as
//! `chargectl dry-run`, configured from a provisioning profile (variables and secrets from the
//! environment, as the configuration screen loads profiles) and run with the default scenario in
//! a fresh state directory that is removed afterwards. Every update goes to the TUI in order; the
//! report ends the run, also when it is stopped early.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::LiveOptions;
use crate::dryrun::{Expectations, Plan, Scenario};
use crate::provision;
use crate::tui::backend::Events;
use crate::tui::msg::Msg;

/// A state directory of its own, removed when the run is over (or its task is dropped).
struct StateDir(PathBuf);

impl StateDir {
    fn fresh() -> std::io::Result<StateDir> {
        let dir = std::env::temp_dir().join(format!(
            "chargectl-tui-dry-run-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(StateDir(dir))
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), "cannot remove the dry run's state: {e}");
        }
    }
}

/// The plan for a profile (by name or file) and a CSMS URL, or why there is none.
fn plan(
    opts: &LiveOptions,
    profile: Option<String>,
    csms_url: Option<String>,
    state_dir: PathBuf,
) -> Result<Plan, String> {
    let scenario = Scenario::default_scenario();
    let (profile_name, assignments, expectations) = match profile {
        Some(name) => {
            let p = provision::ProvisioningProfile::find(
                &name,
                &opts.paths.config_dir.join("profiles"),
            )
            .map_err(|e| e.to_string())?;
            let assignments = p.resolve_from_env(&*opts.env).map_err(|e| e.to_string())?;
            let expectations = p
                .commissioning
                .as_ref()
                .map(Expectations::from)
                .unwrap_or_default();
            (Some(p.name.clone()), assignments, expectations)
        }
        None => (None, Vec::new(), Expectations::default()),
    };
    Ok(Plan {
        csms_url,
        charge_point_id: None,
        profile_name,
        profile: assignments,
        expectations: expectations.merged(&scenario.expectations),
        scenario,
        duration: None,
        meter_start_wh: None,
        state_dir,
    })
}

/// Runs dry run `run` until it ends or `stop` fires, sending [`Msg::DryRun`] updates and then
/// [`Msg::DryRunFinished`] (or [`Msg::DryRunFailed`]).
pub(super) async fn run(
    opts: Arc<LiveOptions>,
    events: Events,
    run: u64,
    profile: Option<String>,
    csms_url: Option<String>,
    stop: oneshot::Receiver<()>,
) {
    let dir = match StateDir::fresh() {
        Ok(d) => d,
        Err(e) => {
            let message = format!("cannot make a state directory: {e}");
            events.send(Msg::DryRunFailed { run, message }).await;
            return;
        }
    };
    let state_dir = dir.0.clone();
    let planned =
        tokio::task::spawn_blocking(move || plan(&opts, profile, csms_url, state_dir)).await;
    let plan = match planned {
        Ok(Ok(plan)) => plan,
        Ok(Err(message)) => {
            events.send(Msg::DryRunFailed { run, message }).await;
            return;
        }
        Err(e) => {
            let message = e.to_string();
            events.send(Msg::DryRunFailed { run, message }).await;
            return;
        }
    };
    // The run calls back synchronously; a forwarder keeps the order and waits for room.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let forward = async {
        while let Some(update) = rx.recv().await {
            if !events.send(Msg::DryRun { run, update }).await {
                break;
            }
        }
    };
    // Only an explicit stop ends the run early; a dropped sender does not.
    let stopped = async {
        if stop.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let dry_run = crate::dryrun::run(
        plan,
        move |update| {
            let _ = tx.send(update);
        },
        stopped,
    );
    let (result, ()) = tokio::join!(dry_run, forward);
    drop(dir);
    let msg = match result {
        Ok(report) => Msg::DryRunFinished {
            run,
            report: Box::new(report),
        },
        Err(e) => Msg::DryRunFailed {
            run,
            message: format!("{e:#}"),
        },
    };
    events.send(msg).await;
}
