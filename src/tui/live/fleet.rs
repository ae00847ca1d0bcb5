//! The fleet started from the emulator screen: the same [`Fleet`] as `chargectl emulate
//! --count` (with the sandbox CSMS in-process unless a URL is given), its summary sent to the
//! TUI once a second until it is asked to stop; then every charge point shuts down with its
//! state saved and [`Msg::FleetEnded`] follows.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::LiveOptions;
use crate::emulator::fleet::{Fleet, FleetOptions, IdTemplate, SessionPlan};
use crate::tui::backend::Events;
use crate::tui::msg::{CsmsTarget, FleetSpec, Msg};

/// Runs fleet `run` until `stop` fires (or the TUI stops listening).
pub(super) async fn run(
    opts: Arc<LiveOptions>,
    events: Events,
    run: u64,
    spec: FleetSpec,
    stop: oneshot::Receiver<()>,
) {
    let error = serve(&opts, &events, run, spec, stop).await.err();
    events.send(Msg::FleetEnded { run, error }).await;
}

async fn serve(
    opts: &LiveOptions,
    events: &Events,
    run: u64,
    spec: FleetSpec,
    mut stop: oneshot::Receiver<()>,
) -> Result<(), String> {
    let template = IdTemplate::parse(&spec.template).map_err(|e| e.to_string())?;
    let state_dir = opts.paths.emulator_state_dir("tui-fleet");
    let mut fleet_opts = FleetOptions::new(&state_dir, "", spec.count, template);
    fleet_opts.ramp = spec.ramp;
    fleet_opts.sessions = spec
        .sessions
        .map(|rate| SessionPlan::new(rate, spec.seed.unwrap_or_else(rand::random)));
    let with_sandbox = spec.csms == CsmsTarget::Sandbox;
    if let Some(limit) = crate::rlimit::raise_open_file_limit() {
        let what = format!("a fleet of {} charge points", spec.count);
        limit
            .check(fleet_opts.open_files_needed(with_sandbox), &what)
            .map_err(|e| e.to_string())?;
    }
    let sandbox = match &spec.csms {
        CsmsTarget::Sandbox => Some(
            crate::csms::Sandbox::start(crate::csms::SandboxOptions::default())
                .await
                .map_err(|e| format!("starting the sandbox CSMS: {e}"))?,
        ),
        CsmsTarget::Url(_) => None,
    };
    let url = match (&spec.csms, &sandbox) {
        (CsmsTarget::Url(u), _) => u.clone(),
        (CsmsTarget::Sandbox, Some(s)) => s.url(),
        (CsmsTarget::Sandbox, None) => String::new(),
    };
    fleet_opts.csms_url = url.clone();
    fleet_opts.settings.csms_url = Some(url);
    let result = match Fleet::start(fleet_opts).await {
        Ok(fleet) => {
            let stats = fleet.stats();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tick.tick() => {
                        if !events.send(Msg::Fleet(stats.summary())).await {
                            break;
                        }
                    }
                }
            }
            let stopped = fleet.shutdown().await.map_err(|e| format!("{e:#}"));
            let _ = events.send(Msg::Fleet(stats.summary())).await;
            tracing::info!(run, "fleet stopped");
            stopped
        }
        Err(e) => Err(format!("{e:#}")),
    };
    if let Some(s) = sandbox {
        s.shutdown().await;
    }
    result
}
