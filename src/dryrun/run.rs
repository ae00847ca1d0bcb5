//! Running a dry run: the emulated charger is configured exactly as `provision` would configure
//! the real one, boots against the CSMS (or the sandbox CSMS in-process), plays the scenario, and
//! everything it sees goes through the [`Analyzer`] until the scenario and the duration are
//! over, or `stop` resolves (Ctrl-C). The report is returned in every case.

use anyhow::Context as _;
use chrono::Utc;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, sleep_until};

use super::analyzer::{Analyzer, Context, Mark, Observation, Stamp};
use super::findings::Finding;
use super::report::{EndedBy, Inputs, Report, ScenarioSummary};
use super::scenario::{Action, DEFAULT_ID_TAG, Expectations, Scenario};
use crate::emulator::{BootSettings, Emulator};
use crate::stack::chargepoint::{Direction, Event, RebootKind};
use crate::stack::config::Channel;
use crate::stack::hardware::HwEvent;

/// The charge point id a dry run uses when neither the command line nor the profile gives one.
pub const DEFAULT_CHARGE_POINT_ID: &str = "CHARGECTL-DRYRUN-1";

/// Everything a dry run needs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The CSMS; `None` with no CsmsUrl in the profile: the sandbox CSMS in-process.
    pub csms_url: Option<String>,
    pub charge_point_id: Option<String>,
    /// Name of the provisioning profile (for the report).
    pub profile_name: Option<String>,
    /// The profile's keys, resolved and in order, as `provision` would write them.
    pub profile: Vec<crate::provision::Assignment>,
    /// What the site expects (profile and scenario merged).
    pub expectations: Expectations,
    pub scenario: Scenario,
    /// Watch at least this long.
    pub duration: Option<Duration>,
    pub meter_start_wh: Option<f64>,
    /// A fresh directory for the emulated charger's state.
    pub state_dir: PathBuf,
}

/// What a running dry run reports as it goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Update {
    /// Once a second.
    Progress(Progress),
    /// A scenario step starts.
    Step(StepStarted),
    /// A new finding (repeats only raise its count in the report).
    Finding(Finding),
    /// An OCPP frame the charger sent or received, secrets redacted by the stack (for a live
    /// trace; `chargectl dry-run` does not print these).
    Frame(FrameSeen),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub elapsed_s: f64,
    /// `connected`, `connecting`, `unreachable`, `offline (outage)`, `power cut`.
    pub connection: String,
    pub registration: Option<String>,
    pub messages: u64,
    pub blocking: usize,
    pub warning: usize,
    pub info: usize,
    /// The step running or waited for (`4/10 ev_demand 16 A`).
    pub step: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepStarted {
    /// 1-based.
    pub index: usize,
    pub total: usize,
    pub action: String,
    pub elapsed_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameSeen {
    pub direction: Direction,
    /// The OCPP-J frame as on the wire (`[2, id, action, payload]`, ...).
    pub frame: serde_json::Value,
    /// UTC wall-clock time.
    pub time: chrono::DateTime<Utc>,
}

/// Where the scenario is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Waiting `after` before step `index`.
    Delay {
        index: usize,
        until: Instant,
    },
    /// Step `index` runs until `until` (or its condition).
    Running {
        index: usize,
        until: Instant,
        started: Instant,
    },
    Done,
}

/// Runs a dry run. `on_update` sees progress, steps and findings as they happen; `stop` ends
/// the run early.
pub async fn run<F, S>(plan: Plan, mut on_update: F, stop: S) -> anyhow::Result<Report>
where
    F: FnMut(Update),
    S: std::future::Future<Output = ()>,
{
    let profile_url = plan
        .profile
        .iter()
        .find(|a| a.key == "CsmsUrl")
        .map(|a| a.value.expose().to_string());
    let mut sandbox = None;
    let csms_url = match plan.csms_url.clone().or(profile_url) {
        Some(url) => url,
        None => {
            let handle = crate::csms::Sandbox::start(crate::csms::SandboxOptions::default())
                .await
                .context("starting the sandbox CSMS")?;
            let url = handle.url();
            sandbox = Some(handle);
            url
        }
    };
    let profile_id = plan.profile.iter().any(|a| a.key == "ChargePointId");
    let settings = BootSettings {
        csms_url: Some(csms_url.clone()),
        charge_point_id: plan
            .charge_point_id
            .clone()
            .or_else(|| (!profile_id).then(|| DEFAULT_CHARGE_POINT_ID.to_string())),
        profile: plan.profile.clone(),
        meter_start_wh: plan.meter_start_wh,
        ..BootSettings::default()
    };
    let result = play(&plan, settings, &mut on_update, stop, sandbox.is_some()).await;
    if let Some(s) = sandbox {
        s.shutdown().await;
    }
    result
}

/// Everything that changes while the scenario plays.
struct Runner<'a, F: FnMut(Update)> {
    plan: &'a Plan,
    on_update: &'a mut F,
    analyzer: Analyzer,
    start: Instant,
    start_wall: chrono::DateTime<Utc>,
    emulator: Option<Emulator>,
    events: Option<broadcast::Receiver<Event>>,
    phase: Phase,
    steps_done: usize,
    /// When the first RemoteStartTransaction not yet waited for arrived.
    remote_start_at: Option<Instant>,
    /// When the current step began.
    step_started: Instant,
    outage: bool,
    power_cut: bool,
    lagged: u64,
    /// A `boot` step timed out and the charger never connected: the run stops.
    unreachable: bool,
}

async fn play<F, S>(
    plan: &Plan,
    settings: BootSettings,
    on_update: &mut F,
    stop: S,
    sandbox: bool,
) -> anyhow::Result<Report>
where
    F: FnMut(Update),
    S: std::future::Future<Output = ()>,
{
    let emulator = Emulator::start(&plan.state_dir, &settings).await?;
    let events = emulator.handle.subscribe_from_start();
    let (entries, _) = emulator
        .handle
        .config_get(Vec::new(), Channel::Service)
        .await;
    let configuration = entries
        .into_iter()
        .filter_map(|e| e.value.map(|v| (e.key, v)))
        .collect::<std::collections::BTreeMap<_, _>>();
    let charge_point_id = configuration
        .get("ChargePointId")
        .cloned()
        .unwrap_or_default();
    let csms_url = configuration.get("CsmsUrl").cloned().unwrap_or_default();
    let start = Instant::now();
    let start_wall = Utc::now();
    let first = match plan.scenario.steps.first() {
        Some(step) => Phase::Delay {
            index: 0,
            until: start + step.after,
        },
        None => Phase::Done,
    };
    let mut r = Runner {
        plan,
        on_update,
        analyzer: Analyzer::new(Context {
            configuration,
            expectations: plan.expectations.clone(),
        }),
        start,
        start_wall,
        emulator: Some(emulator),
        events: Some(events),
        phase: first,
        steps_done: 0,
        remote_start_at: None,
        step_started: start,
        outage: false,
        power_cut: false,
        lagged: 0,
        unreachable: false,
    };
    let watch_until = plan.duration.map(|d| start + d);
    let mut next_tick = start + Duration::from_secs(1);
    tokio::pin!(stop);
    let ended_by = loop {
        if r.phase == Phase::Done && watch_until.is_none_or(|t| Instant::now() >= t) {
            break EndedBy::Completed;
        }
        if r.check_conditions() {
            break EndedBy::Unreachable;
        }
        let step_deadline = match r.phase {
            Phase::Delay { until, .. } | Phase::Running { until, .. } => Some(until),
            Phase::Done => watch_until,
        };
        tokio::select! {
            biased;
            _ = &mut stop => break EndedBy::Interrupted,
            ev = recv_opt(&mut r.events) => r.on_event(ev),
            _ = sleep_until(next_tick) => {
                next_tick += Duration::from_secs(1);
                let now = r.stamp();
                r.analyzer.tick(now);
                r.forward_findings();
                let progress = r.progress();
                (r.on_update)(Update::Progress(progress));
            }
            _ = sleep_until_opt(step_deadline) => {
                if let Err(e) = r.on_deadline().await {
                    tracing::error!("dry run: {e:#}");
                    r.phase = Phase::Done;
                }
            }
        }
    };
    // What the charger reported before the end is still the CSMS's doing.
    while let Some(rx) = r.events.as_mut() {
        match rx.try_recv() {
            Ok(ev) => r.observe_event(&ev),
            Err(broadcast::error::TryRecvError::Lagged(n)) => r.lagged += n,
            Err(_) => break,
        }
    }
    let now = r.stamp();
    r.analyzer
        .observe(now, Observation::Scenario(Mark::Finishing));
    r.analyzer.finish(now);
    r.forward_findings();
    if r.lagged > 0 {
        tracing::warn!("the dry run missed {} charger events", r.lagged);
    }
    if let Some(emulator) = r.emulator.take()
        && let Err(e) = emulator.shutdown().await
    {
        tracing::warn!("stopping the emulated charger: {e:#}");
    }
    let stats = r.analyzer.stats();
    Ok(Report::build(
        Inputs {
            charge_point_id,
            csms_url,
            sandbox,
            profile: plan.profile_name.clone(),
            scenario: ScenarioSummary {
                name: plan.scenario.name.clone(),
                source: plan.scenario.source.clone(),
                steps: plan.scenario.steps.len(),
                steps_done: r.steps_done,
            },
            expectations: plan.expectations.clone(),
            started_at: start_wall,
            duration_s: super::findings::round_ms(start.elapsed()),
            ended_by,
        },
        &stats,
        r.analyzer.findings(),
        r.analyzer.exercised(),
    ))
}

impl<F: FnMut(Update)> Runner<'_, F> {
    fn stamp(&self) -> Stamp {
        let elapsed = self.start.elapsed();
        Stamp {
            elapsed,
            time: self.start_wall + chrono::Duration::from_std(elapsed).unwrap_or_default(),
        }
    }

    fn forward_findings(&mut self) {
        for f in self.analyzer.take_new() {
            (self.on_update)(Update::Finding(f));
        }
    }

    fn observe(&mut self, obs: Observation) {
        let now = self.stamp();
        self.analyzer.observe(now, obs);
        self.forward_findings();
    }

    fn observe_event(&mut self, ev: &Event) {
        if let Event::Message { direction, frame } = ev {
            let time = self.stamp().time;
            (self.on_update)(Update::Frame(FrameSeen {
                direction: *direction,
                frame: frame.clone(),
                time,
            }));
        }
        let Some(obs) = Observation::from_event(ev) else {
            return;
        };
        if let Observation::Received(frame) = &obs
            && frame[0] == 2
            && frame[2] == "RemoteStartTransaction"
        {
            self.remote_start_at.get_or_insert_with(Instant::now);
        }
        self.observe(obs);
    }

    fn on_event(&mut self, ev: Result<Event, RecvError>) {
        match ev {
            Ok(ev) => self.observe_event(&ev),
            Err(RecvError::Lagged(n)) => self.lagged += n,
            Err(RecvError::Closed) => self.events = None,
        }
    }

    /// Ends waits whose condition is met; true when the run must stop because the charger
    /// never reached the CSMS within a `boot` step.
    fn check_conditions(&mut self) -> bool {
        if self.unreachable {
            return true;
        }
        let Phase::Running { index, started, .. } = self.phase else {
            return false;
        };
        match &self.plan.scenario.steps[index].action {
            Action::Boot { .. } => {
                let s = self.analyzer.stats();
                if s.connected && s.registration.as_deref() == Some("Accepted") {
                    self.next_step(index);
                }
            }
            Action::WaitRemoteStart { .. } if self.remote_start_at.is_some() => {
                self.remote_start_at = None;
                let waited = started.elapsed();
                self.observe(Observation::Scenario(Mark::RemoteStartWait {
                    received: true,
                    waited,
                }));
                self.next_step(index);
            }
            _ => {}
        }
        false
    }

    fn next_step(&mut self, index: usize) {
        self.steps_done = self.steps_done.max(index + 1);
        self.phase = match self.plan.scenario.steps.get(index + 1) {
            Some(step) => Phase::Delay {
                index: index + 1,
                until: Instant::now() + step.after,
            },
            None => Phase::Done,
        };
    }

    async fn on_deadline(&mut self) -> anyhow::Result<()> {
        match self.phase {
            Phase::Delay { index, .. } => self.begin(index).await,
            Phase::Running { index, started, .. } => {
                self.end_wait(index, started).await?;
                if !self.unreachable_after(index) {
                    self.next_step(index);
                }
                Ok(())
            }
            Phase::Done => Ok(()),
        }
    }

    /// A `boot` step that timed out without a single connection ends the run.
    fn unreachable_after(&mut self, index: usize) -> bool {
        if matches!(self.plan.scenario.steps[index].action, Action::Boot { .. })
            && !self.analyzer.stats().ever_connected
        {
            self.steps_done = self.steps_done.max(index + 1);
            self.unreachable = true;
            return true;
        }
        false
    }

    async fn begin(&mut self, index: usize) -> anyhow::Result<()> {
        let step = &self.plan.scenario.steps[index];
        let now = Instant::now();
        let previous_step = std::mem::replace(&mut self.step_started, now);
        let total = self.plan.scenario.steps.len();
        (self.on_update)(Update::Step(StepStarted {
            index: index + 1,
            total,
            action: step.action.describe(),
            elapsed_s: super::findings::round_ms(self.start.elapsed()),
        }));
        let wait = |d: Duration| Phase::Running {
            index,
            until: now + d,
            started: now,
        };
        match step.action.clone() {
            Action::Boot { timeout } => {
                self.phase = wait(timeout);
                return Ok(());
            }
            Action::WaitRemoteStart { timeout } => {
                // A RemoteStartTransaction the CSMS sent during the previous step (while the EV
                // was plugged in, say) counts; an older one does not.
                if self.remote_start_at.is_some_and(|t| t < previous_step) {
                    self.remote_start_at = None;
                }
                self.phase = wait(timeout);
                return Ok(());
            }
            Action::Wait { duration } => {
                self.phase = wait(duration);
                return Ok(());
            }
            Action::CsmsOutage { duration } => {
                self.observe(Observation::Scenario(Mark::OutageStarted));
                self.outage = true;
                self.act(HwEvent::NetworkLost).await;
                self.phase = wait(duration);
                return Ok(());
            }
            Action::PowerCut { duration } => {
                self.observe(Observation::Scenario(Mark::PowerCutStarted));
                self.power_cut = true;
                if let Some(emulator) = self.emulator.take() {
                    emulator.power_cut().await;
                }
                // Events already sent by the stopped charger are still read.
                self.phase = wait(duration);
                return Ok(());
            }
            Action::Plug => self.act(HwEvent::Plug).await,
            Action::Unplug => self.act(HwEvent::Unplug).await,
            Action::Card { id_tag } => {
                let id_tag = id_tag
                    .or_else(|| self.plan.expectations.accepted_id_tags.first().cloned())
                    .unwrap_or_else(|| DEFAULT_ID_TAG.to_string());
                self.act(HwEvent::Card { id_tag }).await;
            }
            Action::EvDemand { amps } => {
                self.observe(Observation::Scenario(Mark::EvDemand));
                self.act(HwEvent::EvDemand { amps }).await;
            }
            Action::Fault { error_code, info } => {
                self.act(HwEvent::Fault { error_code, info }).await;
            }
            Action::ClearFault => self.act(HwEvent::ClearFault).await,
            Action::Reboot => {
                self.observe(Observation::Scenario(Mark::RebootStarted));
                if let Some(e) = &self.emulator {
                    e.handle.reboot(RebootKind::Service).await;
                }
            }
        }
        self.next_step(index);
        Ok(())
    }

    /// The wait of step `index` is over (timeout or duration).
    async fn end_wait(&mut self, index: usize, started: Instant) -> anyhow::Result<()> {
        match &self.plan.scenario.steps[index].action {
            Action::WaitRemoteStart { .. } => {
                let waited = started.elapsed();
                self.observe(Observation::Scenario(Mark::RemoteStartWait {
                    received: false,
                    waited,
                }));
            }
            Action::CsmsOutage { .. } => {
                self.act(HwEvent::NetworkRestored).await;
                self.outage = false;
                self.observe(Observation::Scenario(Mark::OutageEnded));
            }
            Action::PowerCut { .. } => {
                // Drain what the charger said before it lost power.
                while let Some(rx) = self.events.as_mut() {
                    match rx.try_recv() {
                        Ok(ev) => self.observe_event(&ev),
                        Err(broadcast::error::TryRecvError::Lagged(n)) => self.lagged += n,
                        Err(_) => break,
                    }
                }
                let settings = BootSettings::default();
                let emulator = Emulator::start(&self.plan.state_dir, &settings)
                    .await
                    .context("booting the emulated charger after the power cut")?;
                self.events = Some(emulator.handle.subscribe_from_start());
                self.emulator = Some(emulator);
                self.power_cut = false;
                self.observe(Observation::Scenario(Mark::PowerCutEnded));
            }
            _ => {}
        }
        Ok(())
    }

    async fn act(&self, event: HwEvent) {
        if let Some(e) = &self.emulator {
            e.act(event).await;
        }
    }

    fn progress(&self) -> Progress {
        let s = self.analyzer.stats();
        let connection = if self.power_cut {
            "power cut".to_string()
        } else if self.outage {
            "offline (outage)".to_string()
        } else if s.connected {
            "connected".to_string()
        } else if let Some(f) = &s.last_failure {
            format!("connecting ({})", f.describe())
        } else {
            "connecting".to_string()
        };
        let step = match self.phase {
            Phase::Delay { index, .. } | Phase::Running { index, .. } => Some(format!(
                "{}/{} {}",
                index + 1,
                self.plan.scenario.steps.len(),
                self.plan.scenario.steps[index].action.describe()
            )),
            Phase::Done => None,
        };
        Progress {
            elapsed_s: self.start.elapsed().as_secs() as f64,
            connection,
            registration: s.registration.clone(),
            messages: s.frames_sent + s.frames_received,
            blocking: s.blocking,
            warning: s.warnings,
            info: s.info,
            step,
        }
    }
}

async fn recv_opt(rx: &mut Option<broadcast::Receiver<Event>>) -> Result<Event, RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}
