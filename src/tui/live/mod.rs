//! The live [`Backend`]: real serial ports through the link client, and the embedded emulator
//! with its service port on a pseudo-terminal, driven exactly like hardware.
//!
//! A session is one connected charger (a port, or an emulator with its CSMS). One manager task
//! owns the current session by value and serves commands from a bounded channel in the order
//! the TUI asked ([`session`]); a session keeps its tasks in its own `JoinSet` and closes with
//! `async fn close(self)`, which aborts and awaits them before the port, the emulator and its
//! CSMS are released. Every session carries the generation it was asked for: [`LiveBackend`]
//! bumps the generation when the TUI switches charger or disconnects and publishes it on a
//! `watch` channel, and a session's messages are dropped once it is no longer current, so results
//! of an old charger never reach the screen. A panicked task closes the session and ends the TUI
//! through the runtime's normal error path ([`Backend::start`]).
//!
//! | file | concern |
//! | --- | --- |
//! | `session.rs` | commands, the manager task, a session's lifecycle and its gate |
//! | `link.rs` | serial ports: opening, link loss and recovery, the charger's log |
//! | `emulator.rs` | the embedded emulator: start, status and trace pump, hardware actions |
//! | `tracker.rs` | what the dashboard shows of an emulated charger, kept from its events |
//! | `apply.rs` | configuration writes and provisioning profiles, through [`crate::provision`] |
//! | `flash.rs` | the image check and flashing, through [`crate::firmware::preflight`] |
//! | `dryrun.rs` | the commissioning dry run, through [`crate::dryrun::run`] |
//!
//! A dry run is independent of the session: it runs its own emulated charger, as a task the
//! runtime supervises, and is stopped through the sender kept here.

mod apply;
mod dryrun;
mod emulator;
pub use emulator::feed_fleet;
mod flash;
mod fleet;
mod link;
mod session;
mod tracker;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};

use super::backend::{Backend, Events, Task};
use super::msg::{Effect, Msg};
use crate::firmware::VerifyingKey;
use crate::link::ports::PortLister;
use crate::paths::Paths;
use session::{Command, Health, Op, Target};

/// Charge point id of the emulator the TUI starts.
pub const EMULATOR_ID: &str = "CHARGECTL-EMU-1";
/// File name of the emulator's public service port link in its state directory.
pub const SERVICE_PORT_NAME: &str = "service-port";
/// File name of the pseudo-terminal the TUI itself talks to (the public one stays free for
/// other tools: a terminal delivers each byte to one reader only).
pub const TUI_PORT_NAME: &str = "tui-link";
/// Commands queued for the session manager before [`LiveBackend`] falls back to a task that
/// waits for room (keys arrive far slower than the manager takes them).
const COMMANDS_QUEUED: usize = 64;

/// Looks up an environment variable (provisioning profile variables and secrets).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// How the live backend reaches chargers.
#[derive(Clone)]
pub struct LiveOptions {
    /// Where emulator state lives (`paths.emulator_state_dir`).
    pub paths: Paths,
    /// Port discovery.
    pub lister: Arc<dyn PortLister>,
    /// Line rate for serial ports.
    pub baud: u32,
    /// Longest wait for one answer from the charger.
    pub timeout: Duration,
    /// How long to look for a charger again after its port went away.
    pub reconnect_timeout: Duration,
    /// Keys firmware images are checked against before flashing, and that an emulator started
    /// here trusts. Empty: the signature is reported as not checked (the charger checks it).
    pub trusted_keys: Vec<VerifyingKey>,
    /// Environment lookup for provisioning profile variables and secrets.
    pub env: EnvLookup,
}

impl LiveOptions {
    /// System ports at 115200 baud, the process environment for secrets, no trusted keys.
    pub fn new(paths: Paths) -> LiveOptions {
        LiveOptions {
            paths,
            lister: Arc::new(crate::link::SystemPorts),
            baud: 115_200,
            timeout: Duration::from_secs(5),
            reconnect_timeout: Duration::from_secs(15),
            trusted_keys: Vec::new(),
            env: Arc::new(|name| std::env::var(name).ok()),
        }
    }
}

impl std::fmt::Debug for LiveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveOptions")
            .field("paths", &self.paths)
            .field("baud", &self.baud)
            .field("timeout", &self.timeout)
            .field("trusted_keys", &self.trusted_keys.len())
            .finish()
    }
}

/// Reads every `*.pub` key in `dir` (a missing directory means none): the keys the TUI checks
/// images against.
pub fn read_trusted_keys(dir: &Path) -> anyhow::Result<Vec<VerifyingKey>> {
    Ok(crate::firmware::preflight::read_trusted_keys(dir)?)
}

/// Stops the dry run of this number.
type DryRunStop = (u64, oneshot::Sender<()>);

/// The live backend. Cheap to clone; clones talk to the same session manager.
#[derive(Clone)]
pub struct LiveBackend {
    opts: Arc<LiveOptions>,
    commands: mpsc::Sender<Command>,
    /// The generation the TUI wants now; bumped here, read by every session's gate.
    generation: Arc<watch::Sender<u64>>,
    health: watch::Receiver<Health>,
    dry_run_stop: Arc<std::sync::Mutex<Option<DryRunStop>>>,
    /// Stops the fleet of this number.
    fleet_stop: Arc<std::sync::Mutex<Option<DryRunStop>>>,
    /// The fleet's task, awaited by [`LiveBackend::shutdown`].
    fleet_task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl LiveBackend {
    /// Starts the session manager; call inside a Tokio runtime.
    pub fn new(opts: LiveOptions) -> LiveBackend {
        let opts = Arc::new(opts);
        let (commands, rx) = mpsc::channel(COMMANDS_QUEUED);
        let (generation, current) = watch::channel(0);
        let (health_tx, health) = watch::channel(Health::Running);
        // The manager outlives the runtime's task set on purpose: after the TUI ends (even on a
        // signal), `shutdown` still closes the session and saves the emulator's state. The
        // runtime watches its health through `Backend::start`.
        tokio::spawn(session::run_manager(opts.clone(), current, rx, health_tx));
        LiveBackend {
            opts,
            commands,
            generation: Arc::new(generation),
            health,
            dry_run_stop: Arc::default(),
            fleet_stop: Arc::default(),
            fleet_task: Arc::default(),
        }
    }

    /// Closes the current session (an emulator saves its state and removes its service port)
    /// and waits for that.
    pub async fn shutdown(&self) {
        // A fleet started here stops too, every charge point saving its state.
        if let Some((_, stop)) = crate::sync::lock(&self.fleet_stop).take() {
            let _ = stop.send(());
        }
        let fleet = crate::sync::lock(&self.fleet_task).take();
        if let Some(task) = fleet
            && let Err(e) = task.await
        {
            tracing::warn!("the fleet's task ended badly: {e}");
        }
        self.advance();
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// A new generation: everything of the current session is stale from now on.
    fn advance(&self) -> u64 {
        let mut next = 0;
        self.generation.send_modify(|g| {
            *g += 1;
            next = *g;
        });
        next
    }

    fn current(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Switches to a new charger: a new generation, then the manager closes the old session and
    /// opens this one.
    fn open(&self, target: Target, events: &Events) -> Option<Task> {
        let generation = self.advance();
        self.queue(
            Command::Open {
                generation,
                target,
                events: events.clone(),
            },
            events,
        )
    }

    /// Queues `op` for the session of the current generation.
    fn request(&self, op: Op, events: &Events) -> Option<Task> {
        let generation = self.current();
        self.queue(
            Command::Request {
                generation,
                op,
                events: events.clone(),
            },
            events,
        )
    }

    /// Queues a command in order; when the queue is full, a task waits for room (the generation
    /// the command carries keeps a late one from touching a newer session).
    fn queue(&self, cmd: Command, events: &Events) -> Option<Task> {
        match self.commands.try_send(cmd) {
            Ok(()) => None,
            Err(TrySendError::Full(cmd)) => {
                let commands = self.commands.clone();
                Some(Box::pin(async move {
                    let _ = commands.send(cmd).await;
                }))
            }
            Err(TrySendError::Closed(_)) => {
                let events = events.clone();
                Some(Box::pin(async move {
                    events
                        .send(Msg::Error {
                            context: "the charger session".into(),
                            message: "the session manager has stopped".into(),
                        })
                        .await;
                }))
            }
        }
    }

    /// Runs `f` on the manager with the current session, if any (tests reach into the emulator
    /// this way); `None` when the manager has ended.
    #[cfg(test)]
    async fn visit<R: Send + 'static>(
        &self,
        f: impl FnOnce(Option<&mut session::Session>) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let visit = Command::Visit(Box::new(move |s| {
            let _ = tx.send(f(s));
        }));
        self.commands.send(visit).await.ok()?;
        rx.await.ok()
    }
}

impl Backend for LiveBackend {
    /// Ends with a panic when the session manager reports a panicked task, so the runtime
    /// stops the TUI through its normal error path.
    fn start(&mut self) -> Option<Task> {
        let mut health = self.health.clone();
        Some(Box::pin(async move {
            let Ok(state) = health.wait_for(|h| *h != Health::Running).await else {
                return;
            };
            if let Health::Panicked(what) = &*state {
                let what = what.clone();
                drop(state);
                std::panic::resume_unwind(Box::new(what));
            }
        }))
    }

    fn perform(&mut self, effect: Effect, events: &Events) -> Option<Task> {
        match effect {
            Effect::ListPorts => Some(Box::pin(link::list_ports(
                self.opts.lister.clone(),
                events.clone(),
            ))),
            Effect::Connect { port } => self.open(Target::Port(port), events),
            Effect::StartEmulator { csms } => self.open(Target::Emulator(csms), events),
            Effect::Disconnect => {
                let generation = self.advance();
                self.queue(Command::Close { generation }, events)
            }
            Effect::ReadConfig { request } => self.request(Op::ReadConfig { request }, events),
            Effect::ApplyConfig { changes } => self.request(Op::ApplyConfig(changes), events),
            Effect::LoadProfile { path } => self.request(Op::LoadProvisioningProfile(path), events),
            Effect::InspectImage { request, path } => {
                self.request(Op::InspectImage { request, path }, events)
            }
            Effect::StartFlash { path } => self.request(Op::Flash(path), events),
            Effect::Reboot => self.request(Op::Reboot, events),
            Effect::Hardware(action) => self.request(Op::Hardware(action), events),
            Effect::StartDryRun {
                run,
                profile,
                csms_url,
            } => {
                let (stop, stopped) = oneshot::channel();
                *crate::sync::lock(&self.dry_run_stop) = Some((run, stop));
                Some(Box::pin(dryrun::run(
                    self.opts.clone(),
                    events.clone(),
                    run,
                    profile,
                    csms_url,
                    stopped,
                )))
            }
            Effect::StopDryRun { run } => {
                let mut slot = crate::sync::lock(&self.dry_run_stop);
                if let Some((_, stop)) = slot.take_if(|(r, _)| *r == run) {
                    let _ = stop.send(());
                }
                None
            }
            Effect::StartFleet { run, spec } => {
                let (stop, stopped) = oneshot::channel();
                *crate::sync::lock(&self.fleet_stop) = Some((run, stop));
                // Like the session manager, the fleet outlives the runtime's task set, so that
                // `shutdown` can stop it with every charge point's state saved. The TUI starts
                // a fleet only once the previous one has ended.
                let task = tokio::spawn(fleet::run(
                    self.opts.clone(),
                    events.clone(),
                    run,
                    spec,
                    stopped,
                ));
                *crate::sync::lock(&self.fleet_task) = Some(task);
                None
            }
            Effect::StopFleet { run } => {
                let mut slot = crate::sync::lock(&self.fleet_stop);
                if let Some((_, stop)) = slot.take_if(|(r, _)| *r == run) {
                    let _ = stop.send(());
                }
                None
            }
            Effect::ExportLogs { .. } | Effect::SaveReport { .. } | Effect::Quit => None,
        }
    }
}
