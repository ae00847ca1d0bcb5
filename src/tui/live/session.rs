//! The session manager: one task that owns the current [`Session`] by value and serves the
//! commands [`super::LiveBackend`] queues, in order. Opening and closing run on the manager
//! itself (one charger at a time, never two on the same port); everything else a session does
//! runs as a task in the session's own `JoinSet`, so closing the session aborts and awaits it.
//! Work that needs no charger (a provisioning profile or an image check while disconnected) runs in the
//! manager's own set. A panicked task, in either set or in the manager, closes the session and
//! is reported through [`Health`], which the runtime turns into its error exit.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::FutureExt as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinError, JoinSet};

use super::emulator::{self, EmulatedCharger};
use super::{LiveOptions, apply, flash, link};
use crate::link::Client;
use crate::stack::logbook::LogRecord;
use crate::tui::backend::Events;
use crate::tui::msg::{ChargerInfo, ConfigChange, CsmsTarget, HardwareAction, Msg};

/// What a session connects to.
pub(super) enum Target {
    Port(String),
    Emulator(CsmsTarget),
}

/// Work on the current session.
pub(super) enum Op {
    ReadConfig { request: u64 },
    ApplyConfig(Vec<ConfigChange>),
    LoadProvisioningProfile(PathBuf),
    InspectImage { request: u64, path: PathBuf },
    Flash(PathBuf),
    Reboot,
    Hardware(HardwareAction),
}

impl Op {
    /// What the user reads before "no charger connected" (`update` keys on "config").
    fn context(&self) -> &'static str {
        match self {
            Op::ReadConfig { .. } => "reading the configuration",
            Op::ApplyConfig(_) => "applying the configuration",
            Op::LoadProvisioningProfile(_) => "loading a provisioning profile",
            Op::InspectImage { .. } => "inspecting an image",
            Op::Flash(_) => "flashing firmware",
            Op::Reboot => "rebooting",
            Op::Hardware(_) => "hardware action",
        }
    }
}

/// What the manager is asked to do. Each carries the generation it was asked under.
pub(super) enum Command {
    /// Close the current session and open one on `target`, unless the TUI has moved on.
    Open {
        generation: u64,
        target: Target,
        events: Events,
    },
    /// Close a session older than `generation`.
    Close { generation: u64 },
    /// Run `op` on the session of `generation`.
    Request {
        generation: u64,
        op: Op,
        events: Events,
    },
    /// Close the current session and answer.
    Shutdown(oneshot::Sender<()>),
    /// Hand the current session to a test.
    #[cfg(test)]
    Visit(Visitor),
}

/// Test code run on the manager with the current session.
#[cfg(test)]
pub(super) type Visitor = Box<dyn FnOnce(Option<&mut Session>) + Send>;

/// The manager's state as the runtime watches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Health {
    Running,
    /// Every handle is gone; the manager ended.
    Stopped,
    /// A task panicked (its message); the session was closed and the manager ended.
    Panicked(String),
}

/// A task that panicked, with its message.
#[derive(Debug)]
pub(super) struct TaskPanicked(String);

impl TaskPanicked {
    fn from_payload(payload: Box<dyn Any + Send>) -> TaskPanicked {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a task panicked".into());
        TaskPanicked(text)
    }

    fn check(done: Result<(), JoinError>) -> Result<(), TaskPanicked> {
        match done {
            Err(e) if e.is_panic() => Err(TaskPanicked::from_payload(e.into_panic())),
            _ => Ok(()),
        }
    }
}

/// Sends a session's messages only while its generation is the one the TUI wants.
#[derive(Clone)]
pub(super) struct Gate {
    generation: u64,
    current: watch::Receiver<u64>,
    events: Events,
}

impl Gate {
    pub(super) fn is_current(&self) -> bool {
        *self.current.borrow() == self.generation
    }

    /// Sends in order, waiting for room; false when stale or the TUI has gone.
    pub(super) async fn send(&self, msg: Msg) -> bool {
        if !self.is_current() {
            tracing::debug!(generation = self.generation, "stale message dropped");
            return false;
        }
        self.events.send(msg).await
    }

    /// A charger log line, never blocking (see [`Events::log`]).
    pub(super) fn log(&self, record: LogRecord) {
        if self.is_current() {
            self.events.log(record);
        }
    }
}

/// One connected charger and the tasks that serve it.
pub(super) struct Session {
    pub(super) generation: u64,
    pub(super) client: Client,
    pub(super) emulated: Option<EmulatedCharger>,
    tasks: JoinSet<()>,
}

/// A session just opened, before its pumps run.
pub(super) struct Opened {
    pub(super) session: Session,
    pub(super) identity: ChargerInfo,
    /// The emulator's status and trace pump, for an emulated charger.
    pub(super) pump: Option<emulator::Pump>,
}

impl Session {
    pub(super) fn new(client: Client, emulated: Option<EmulatedCharger>) -> Session {
        Session {
            generation: 0,
            client,
            emulated,
            tasks: JoinSet::new(),
        }
    }

    /// Runs `task` as part of the session: aborted and awaited when it closes.
    pub(super) fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Starts the tasks that follow the charger: link state, its log, its OCPP state, and
    /// (emulated) its status and OCPP trace.
    fn start(&mut self, gate: &Gate, pump: Option<emulator::Pump>) {
        let emulated = self.emulated.is_some();
        // Subscribed here, not in the task, so no link event falls between open and the pump.
        let link_events = self.client.events();
        self.spawn(link::link_pump(
            self.client.clone(),
            link_events,
            gate.clone(),
            emulated,
        ));
        self.spawn(link::log_pump(self.client.clone(), gate.clone()));
        // An emulated charger's OCPP state comes with its events; a charger on a port is asked.
        match pump {
            Some(pump) => self.spawn(pump.run(gate.clone())),
            None => self.spawn(link::ocpp_poll(self.client.clone(), gate.clone())),
        }
    }

    /// Aborts and awaits the session's tasks, closes the link, and shuts an emulator down with
    /// its state saved. A task that had panicked before it was aborted is reported.
    pub(super) async fn close(mut self) -> Result<(), TaskPanicked> {
        self.tasks.abort_all();
        let mut panicked = Ok(());
        while let Some(done) = self.tasks.join_next().await {
            if let Err(p) = TaskPanicked::check(done) {
                panicked = Err(p);
            }
        }
        drop(self.client);
        if let Some(emulated) = self.emulated {
            emulated.close().await;
        }
        tracing::info!(generation = self.generation, "session closed");
        panicked
    }
}

/// Runs the manager until every [`super::LiveBackend`] is gone or a task panics.
pub(super) async fn run_manager(
    opts: Arc<LiveOptions>,
    current: watch::Receiver<u64>,
    mut commands: mpsc::Receiver<Command>,
    health: watch::Sender<Health>,
) {
    let mut manager = Manager {
        opts,
        current,
        session: None,
        work: JoinSet::new(),
    };
    let served = AssertUnwindSafe(manager.serve(&mut commands))
        .catch_unwind()
        .await
        .unwrap_or_else(|payload| Err(TaskPanicked::from_payload(payload)));
    match served {
        Ok(()) => {
            if let Err(TaskPanicked(what)) = manager.close_session().await {
                tracing::error!(%what, "a session task panicked");
            }
            health.send_replace(Health::Stopped);
        }
        Err(TaskPanicked(what)) => {
            tracing::error!(%what, "a session task panicked; closing the session");
            manager.work.abort_all();
            let _ = manager.close_session().await;
            health.send_replace(Health::Panicked(what));
        }
    }
}

struct Manager {
    opts: Arc<LiveOptions>,
    current: watch::Receiver<u64>,
    session: Option<Session>,
    work: JoinSet<()>,
}

impl Manager {
    async fn serve(&mut self, commands: &mut mpsc::Receiver<Command>) -> Result<(), TaskPanicked> {
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await?,
                    None => return Ok(()),
                },
                Some(done) = next_done(&mut self.session) => TaskPanicked::check(done)?,
                Some(done) = self.work.join_next(), if !self.work.is_empty() => {
                    TaskPanicked::check(done)?;
                }
            }
        }
    }

    fn gate(&self, generation: u64, events: Events) -> Gate {
        Gate {
            generation,
            current: self.current.clone(),
            events,
        }
    }

    async fn handle(&mut self, cmd: Command) -> Result<(), TaskPanicked> {
        match cmd {
            Command::Open {
                generation,
                target,
                events,
            } => {
                let gate = self.gate(generation, events);
                self.open(target, gate).await
            }
            Command::Close { generation } => {
                if self
                    .session
                    .as_ref()
                    .is_some_and(|s| s.generation < generation)
                {
                    self.close_session().await?;
                }
                Ok(())
            }
            Command::Request {
                generation,
                op,
                events,
            } => {
                let gate = self.gate(generation, events);
                self.dispatch(op, gate);
                Ok(())
            }
            Command::Shutdown(reply) => {
                let closed = self.close_session().await;
                let _ = reply.send(());
                closed
            }
            #[cfg(test)]
            Command::Visit(f) => {
                f(self.session.as_mut());
                Ok(())
            }
        }
    }

    async fn close_session(&mut self) -> Result<(), TaskPanicked> {
        match self.session.take() {
            Some(s) => s.close().await,
            None => Ok(()),
        }
    }

    async fn open(&mut self, target: Target, gate: Gate) -> Result<(), TaskPanicked> {
        if !gate.is_current() {
            tracing::debug!(generation = gate.generation, "stale connect skipped");
            return Ok(());
        }
        self.close_session().await?;
        let opened = match target {
            Target::Port(port) => link::open_port(&self.opts, &port).await,
            Target::Emulator(csms) => emulator::open_emulator(&self.opts, &csms).await,
        };
        match opened {
            Ok(Opened {
                mut session,
                identity,
                pump,
            }) => {
                session.generation = gate.generation;
                if !gate.is_current() {
                    return session.close().await;
                }
                gate.send(Msg::Connected(identity)).await;
                session.start(&gate, pump);
                self.session = Some(session);
            }
            Err(reason) => {
                tracing::warn!(%reason, "cannot connect");
                gate.send(Msg::LinkLost { reason }).await;
            }
        }
        Ok(())
    }

    /// Starts `op` on the session it was asked for; provisioning profiles and image checks also run without
    /// a charger, everything else answers that none is connected.
    fn dispatch(&mut self, op: Op, gate: Gate) {
        let generation = gate.generation;
        let session = self.session.as_mut().filter(|s| s.generation == generation);
        match (op, session) {
            (Op::LoadProvisioningProfile(path), session) => {
                let client = session.as_ref().map(|s| s.client.clone());
                let task =
                    apply::load_provisioning_profile(client, gate, self.opts.env.clone(), path);
                match session {
                    Some(s) => s.spawn(task),
                    None => drop(self.work.spawn(task)),
                }
            }
            (Op::InspectImage { request, path }, session) => {
                let mut trusted = self.opts.trusted_keys.clone();
                if let Some(emulated) = session.as_ref().and_then(|s| s.emulated.as_ref()) {
                    for k in emulated.emulator.trusted_keys.iter() {
                        if !trusted.contains(k) {
                            trusted.push(*k);
                        }
                    }
                }
                let task = flash::inspect(gate, request, path, trusted);
                match session {
                    Some(s) => s.spawn(task),
                    None => drop(self.work.spawn(task)),
                }
            }
            (Op::ReadConfig { request }, Some(s)) => {
                s.spawn(apply::read_config(s.client.clone(), gate, request));
            }
            (Op::ApplyConfig(changes), Some(s)) => {
                s.spawn(apply::apply(s.client.clone(), gate, changes));
            }
            (Op::Flash(path), Some(s)) => s.spawn(flash::flash(s.client.clone(), gate, path)),
            (Op::Reboot, Some(s)) => s.spawn(link::reboot(s.client.clone(), gate)),
            (Op::Hardware(action), Some(s)) => {
                let actions = s.emulated.as_ref().map(|e| e.actions.clone());
                s.spawn(emulator::hardware(actions, gate, action));
            }
            (op, None) => {
                let context = op.context();
                self.work.spawn(async move {
                    gate.send(Msg::Error {
                        context: context.into(),
                        message: "no charger connected".into(),
                    })
                    .await;
                });
            }
        }
    }
}

/// The next finished task of the session, or never while it has none.
async fn next_done(session: &mut Option<Session>) -> Option<Result<(), JoinError>> {
    match session {
        Some(s) if !s.tasks.is_empty() => s.tasks.join_next().await,
        _ => std::future::pending().await,
    }
}
