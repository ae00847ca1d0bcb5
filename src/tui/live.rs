//! The live [`Backend`]: real serial ports through the link client, and the embedded emulator
//! with its service port on a pseudo-terminal, driven exactly like hardware.
//!
//! A session is one connected charger (a port, or an emulator with its CSMS). Sessions start
//! and stop one at a time on a manager task, in the order the TUI asked; every message a
//! session sends carries its generation and is dropped once a newer session (or a disconnect)
//! was asked for, so results of an old charger never reach the screen.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use super::backend::{Backend, Events, Task};
use super::msg::{
    ApplyOutcome, ChangeValue, ChargerInfo, ChargerStatus, ConfigChange, ConfigEntry, CsmsTarget,
    Direction, Effect, FlashProgress, HardwareAction, ImageInfo, Msg, OcppConnection, OcppFrame,
    PortInfo, ProfileChange, SignatureStatus, Slot, UsbIds, ValueType,
};
use crate::emulator::service_port::{ChargerBackend, ServicePort};
use crate::emulator::{BootSettings, Emulator};
use crate::firmware::VerifyingKey;
use crate::link::ports::{FixedPorts, PortLister};
use crate::link::{self, Client, ClientOptions, LinkEvent, LogEvent};
use crate::paths::Paths;
use crate::provision::{AssignedValue, Profile};
use crate::stack::chargepoint::{self, ConnectionState, Event, Registration};
use crate::stack::hardware::{Hardware, HwEvent};
use crate::stack::logbook::Level;
use crate::stack::messages::ChargePointErrorCode;

/// Charge point id of the emulator the TUI starts.
pub const EMULATOR_ID: &str = "CHARGECTL-EMU-1";
/// File name of the emulator's public service port link in its state directory.
pub const SERVICE_PORT_NAME: &str = "service-port";
/// File name of the pseudo-terminal the TUI itself talks to (the public one stays free for
/// other tools: a terminal delivers each byte to one reader only).
pub const TUI_PORT_NAME: &str = "tui-link";
/// Errors kept in the dashboard status, newest last.
const ERRORS_KEPT: usize = 5;
/// How often the emulator's meter is sampled for the dashboard.
const METER_PERIOD: Duration = Duration::from_secs(1);

/// Looks up an environment variable (profile secrets).
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
    /// Environment lookup for profile secrets.
    pub env: EnvLookup,
}

impl LiveOptions {
    /// System ports at 115200 baud, the process environment for secrets, no trusted keys.
    pub fn new(paths: Paths) -> LiveOptions {
        LiveOptions {
            paths,
            lister: Arc::new(link::SystemPorts),
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

/// Reads every `*.pub` key in `dir` (a missing directory means none).
pub fn read_trusted_keys(dir: &Path) -> anyhow::Result<Vec<VerifyingKey>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            crate::firmware::keys::read_verifying_key(p)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        })
        .collect()
}

/// The live backend. Cheap to clone; clones share the session.
#[derive(Clone)]
pub struct LiveBackend {
    inner: Arc<Inner>,
}

struct Inner {
    opts: LiveOptions,
    generation: AtomicU64,
    current: Mutex<Option<Arc<Session>>>,
    manager: mpsc::UnboundedSender<Lifecycle>,
}

enum Lifecycle {
    Start {
        generation: u64,
        target: StartTarget,
        events: Events,
    },
    Stop,
    Shutdown(oneshot::Sender<()>),
}

enum StartTarget {
    Port(String),
    Emulator(CsmsTarget),
}

/// One connected charger.
struct Session {
    generation: u64,
    client: Client,
    emulator: Option<EmulatorSession>,
    pumps: Mutex<Vec<AbortHandle>>,
}

struct EmulatorSession {
    emulator: Mutex<Option<Arc<Emulator>>>,
    tui_port: Mutex<Option<ServicePort>>,
    sandbox: Option<crate::csms::SandboxHandle>,
    service_port: PathBuf,
    tracker: Arc<Mutex<Tracker>>,
    /// The stack's events since boot, until the pump takes them.
    events: Mutex<Option<broadcast::Receiver<Event>>>,
}

impl EmulatorSession {
    fn emulator(&self) -> Option<Arc<Emulator>> {
        self.emulator
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Session {
    fn add_pump(&self, handle: AbortHandle) {
        self.pumps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// Stops the pumps, closes the link, and shuts an emulator down with its state saved.
    async fn close(&self) {
        for p in self
            .pumps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            p.abort();
        }
        if let Some(emu) = &self.emulator {
            emu.tui_port
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let emulator = emu
                .emulator
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(emulator) = emulator {
                shutdown_emulator(emulator).await;
            }
            if let Some(s) = &emu.sandbox {
                s.shutdown().await;
            }
        }
        tracing::info!(generation = self.generation, "session closed");
    }
}

async fn shutdown_emulator(emulator: Arc<Emulator>) {
    match Arc::try_unwrap(emulator) {
        Ok(e) => {
            if let Err(err) = e.shutdown().await {
                tracing::warn!("emulator shutdown: {err:#}");
            }
        }
        Err(shared) => {
            // A hardware action still holds it: stop the stack and save the meter anyway.
            shared.handle.shutdown().await;
            shared.hardware.flush();
        }
    }
}

/// Sends a session's messages only while that session is the current one.
#[derive(Clone)]
struct Gate {
    inner: Arc<Inner>,
    generation: u64,
    events: Events,
}

impl Gate {
    fn current(&self) -> bool {
        self.inner.generation.load(Ordering::Acquire) == self.generation
    }

    async fn send(&self, msg: Msg) -> bool {
        if !self.current() {
            tracing::debug!(generation = self.generation, "stale message dropped");
            return false;
        }
        self.events.send(msg).await
    }

    fn log(&self, record: crate::stack::logbook::LogRecord) {
        if self.current() {
            self.events.log(record);
        }
    }
}

impl LiveBackend {
    /// Starts the session manager; call inside a Tokio runtime.
    pub fn new(opts: LiveOptions) -> LiveBackend {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            opts,
            generation: AtomicU64::new(0),
            current: Mutex::new(None),
            manager: tx,
        });
        tokio::spawn(manage(Arc::downgrade(&inner), rx));
        LiveBackend { inner }
    }

    /// Closes the current session (an emulator saves its state and removes its service port)
    /// and waits for that.
    pub async fn shutdown(&self) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        let (tx, rx) = oneshot::channel();
        if self.inner.manager.send(Lifecycle::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The session of the current generation, if connected.
    fn session(&self) -> Option<Arc<Session>> {
        let generation = self.inner.generation.load(Ordering::Acquire);
        self.inner
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|s| s.generation == generation)
    }

    fn gate(&self, generation: u64, events: &Events) -> Gate {
        Gate {
            inner: self.inner.clone(),
            generation,
            events: events.clone(),
        }
    }

    fn start(&self, target: StartTarget, events: &Events) {
        let generation = self.inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let _ = self.inner.manager.send(Lifecycle::Start {
            generation,
            target,
            events: events.clone(),
        });
    }

    /// Runs `f` on the current session, or reports that there is none.
    fn with_session<F, Fut>(&self, events: &Events, context: &str, f: F) -> Option<Task>
    where
        F: FnOnce(Arc<Session>, Gate) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        match self.session() {
            Some(session) => {
                let gate = self.gate(session.generation, events);
                Some(Box::pin(f(session, gate)))
            }
            None => {
                let events = events.clone();
                let context = context.to_string();
                Some(Box::pin(async move {
                    events
                        .send(Msg::Error {
                            context,
                            message: "no charger connected".into(),
                        })
                        .await;
                }))
            }
        }
    }
}

impl Backend for LiveBackend {
    fn perform(&mut self, effect: Effect, events: &Events) -> Option<Task> {
        match effect {
            Effect::ListPorts => {
                let lister = self.inner.opts.lister.clone();
                let events = events.clone();
                Some(Box::pin(async move {
                    let listed = tokio::task::spawn_blocking(move || lister.list()).await;
                    let msg = match listed {
                        Ok(Ok(ports)) => Msg::PortsListed(tui_ports(&ports)),
                        Ok(Err(e)) => Msg::Error {
                            context: "listing serial ports".into(),
                            message: e.to_string(),
                        },
                        Err(e) => Msg::Error {
                            context: "listing serial ports".into(),
                            message: e.to_string(),
                        },
                    };
                    events.send(msg).await;
                }))
            }
            Effect::Connect { port } => {
                self.start(StartTarget::Port(port), events);
                None
            }
            Effect::StartEmulator { csms } => {
                self.start(StartTarget::Emulator(csms), events);
                None
            }
            Effect::Disconnect => {
                self.inner.generation.fetch_add(1, Ordering::AcqRel);
                let _ = self.inner.manager.send(Lifecycle::Stop);
                None
            }
            Effect::ReadConfig { request } => self.with_session(
                events,
                "reading the configuration",
                move |s, gate| async move {
                    let msg = match s.client.config_get(Vec::new()).await {
                        Ok(read) => Msg::ConfigRead {
                            request,
                            entries: read.entries.into_iter().map(tui_entry).collect(),
                        },
                        Err(e) => Msg::Error {
                            context: "reading the configuration".into(),
                            message: e.to_string(),
                        },
                    };
                    gate.send(msg).await;
                },
            ),
            Effect::ApplyConfig { changes } => {
                self.with_session(events, "applying the configuration", move |s, gate| {
                    apply(s, gate, changes)
                })
            }
            Effect::LoadProfile { path } => {
                let session = self.session();
                let env = self.inner.opts.env.clone();
                let gate = self.gate(self.inner.generation.load(Ordering::Acquire), events);
                Some(Box::pin(load_profile(session, gate, env, path)))
            }
            Effect::InspectImage { request, path } => {
                let mut trusted = self.inner.opts.trusted_keys.clone();
                if let Some(emu) = self
                    .session()
                    .as_ref()
                    .and_then(|s| s.emulator.as_ref())
                    .and_then(|e| e.emulator())
                {
                    for k in emu.trusted_keys.iter() {
                        if !trusted.contains(k) {
                            trusted.push(*k);
                        }
                    }
                }
                let events = events.clone();
                Some(Box::pin(async move {
                    let context = format!("inspecting image {}", path.display());
                    let p = path.clone();
                    let result =
                        tokio::task::spawn_blocking(move || inspect_image(&p, &trusted)).await;
                    let msg = match result {
                        Ok(Ok(info)) => Msg::ImageInspected { request, info },
                        Ok(Err(message)) => Msg::Error { context, message },
                        Err(e) => Msg::Error {
                            context,
                            message: e.to_string(),
                        },
                    };
                    events.send(msg).await;
                }))
            }
            Effect::StartFlash { path } => {
                self.with_session(events, "flashing firmware", move |s, gate| {
                    flash(s, gate, path)
                })
            }
            Effect::Reboot => self.with_session(events, "rebooting", move |s, gate| async move {
                gate.send(Msg::LinkLost {
                    reason: "charger rebooting".into(),
                })
                .await;
                if let Err(e) = s.client.reboot().await {
                    gate.send(Msg::Error {
                        context: "rebooting".into(),
                        message: e.to_string(),
                    })
                    .await;
                }
                // The link event pump announces the charger again once it answers.
                if let Err(e) = s.client.reconnect().await {
                    gate.send(Msg::LinkLost {
                        reason: format!("the charger did not come back after the reboot: {e}"),
                    })
                    .await;
                }
            }),
            Effect::Hardware(action) => {
                self.with_session(events, "hardware action", move |s, gate| {
                    hardware(s, gate, action)
                })
            }
            Effect::ExportLogs { .. } | Effect::Quit => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Session lifecycle.

async fn manage(inner: std::sync::Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Lifecycle>) {
    while let Some(cmd) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        let old = inner
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(old) = old {
            old.close().await;
        }
        match cmd {
            Lifecycle::Stop => {}
            Lifecycle::Shutdown(reply) => {
                let _ = reply.send(());
            }
            Lifecycle::Start {
                generation,
                target,
                events,
            } => {
                let gate = Gate {
                    inner: inner.clone(),
                    generation,
                    events,
                };
                if !gate.current() {
                    continue;
                }
                let started = match target {
                    StartTarget::Port(port) => open_port(&inner, &port).await,
                    StartTarget::Emulator(csms) => open_emulator(&inner, &csms).await,
                };
                match started {
                    Ok((session, identity)) => {
                        let session = Arc::new(Session {
                            generation,
                            ..session
                        });
                        if !gate.current() {
                            session.close().await;
                            continue;
                        }
                        *inner.current.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(session.clone());
                        start_pumps(&session, &gate);
                        gate.send(Msg::Connected(identity)).await;
                    }
                    Err(reason) => {
                        tracing::warn!(%reason, "cannot connect");
                        gate.send(Msg::LinkLost { reason }).await;
                    }
                }
            }
        }
    }
}

fn client_options(opts: &LiveOptions, lister: Arc<dyn PortLister>) -> ClientOptions {
    ClientOptions {
        timeout: opts.timeout,
        reconnect_timeout: opts.reconnect_timeout,
        lister,
        ..ClientOptions::default()
    }
}

async fn greet(client: &Client, emulated: bool) -> Result<ChargerInfo, String> {
    client
        .identify()
        .await
        .map(|id| tui_identity(id, emulated))
        .map_err(|e| e.to_string())
}

async fn open_port(inner: &Inner, port: &str) -> Result<(Session, ChargerInfo), String> {
    let opts = client_options(&inner.opts, inner.opts.lister.clone());
    let client = Client::connect(port, inner.opts.baud, opts)
        .await
        .map_err(|e| e.to_string())?;
    let identity = greet(&client, false).await?;
    Ok((
        Session {
            generation: 0,
            client,
            emulator: None,
            pumps: Mutex::new(Vec::new()),
        },
        identity,
    ))
}

async fn open_emulator(inner: &Inner, csms: &CsmsTarget) -> Result<(Session, ChargerInfo), String> {
    let state_dir = inner.opts.paths.emulator_state_dir(EMULATOR_ID);
    let (url, sandbox) = match csms {
        CsmsTarget::Url(url) => (url.clone(), None),
        CsmsTarget::Sandbox => {
            let sandbox = crate::csms::Sandbox::start(crate::csms::SandboxOptions::default())
                .await
                .map_err(|e| format!("starting the sandbox CSMS: {e}"))?;
            (sandbox.url(), Some(sandbox))
        }
    };
    let settings = BootSettings {
        csms_url: Some(url.clone()),
        trusted_keys: inner.opts.trusted_keys.clone(),
        ..BootSettings::default()
    };
    let emulator = match Emulator::start(&state_dir, &settings).await {
        Ok(e) => Arc::new(e),
        Err(e) => {
            if let Some(s) = &sandbox {
                s.shutdown().await;
            }
            return Err(format!("starting the emulator: {e:#}"));
        }
    };
    let undo = |emulator: Arc<Emulator>, sandbox: Option<crate::csms::SandboxHandle>| async move {
        shutdown_emulator(emulator).await;
        if let Some(s) = &sandbox {
            s.shutdown().await;
        }
    };
    // Subscribed before anything else so the trace starts with the BootNotification.
    let events = emulator.handle.subscribe();
    let service_port = state_dir.join(SERVICE_PORT_NAME);
    if let Err(e) =
        emulator.attach_service_port(&service_port, crate::link::pty::LineShaper::default())
    {
        undo(emulator, sandbox).await;
        return Err(format!("{e:#}"));
    }
    let tui_link = state_dir.join(TUI_PORT_NAME);
    let tui_port = match ServicePort::open(
        &tui_link,
        ChargerBackend::new(&emulator),
        crate::link::pty::LineShaper::default(),
    ) {
        Ok(p) => p,
        Err(e) => {
            undo(emulator, sandbox).await;
            return Err(format!("opening {}: {e}", tui_link.display()));
        }
    };
    let link_path = tui_link.display().to_string();
    let opts = client_options(&inner.opts, Arc::new(FixedPorts::default()));
    let client = match Client::connect(&link_path, inner.opts.baud, opts).await {
        Ok(c) => c,
        Err(e) => {
            drop(tui_port);
            undo(emulator, sandbox).await;
            return Err(e.to_string());
        }
    };
    let identity = match greet(&client, true).await {
        Ok(i) => i,
        Err(e) => {
            drop(client);
            drop(tui_port);
            undo(emulator, sandbox).await;
            return Err(e);
        }
    };
    let tracker = Tracker {
        csms_url: Some(url),
        service_port: Some(service_port.display().to_string()),
        ..Tracker::default()
    };
    Ok((
        Session {
            generation: 0,
            client,
            emulator: Some(EmulatorSession {
                emulator: Mutex::new(Some(emulator)),
                tui_port: Mutex::new(Some(tui_port)),
                sandbox,
                service_port,
                tracker: Arc::new(Mutex::new(tracker)),
                events: Mutex::new(Some(events)),
            }),
            pumps: Mutex::new(Vec::new()),
        },
        identity,
    ))
}

fn start_pumps(session: &Arc<Session>, gate: &Gate) {
    let client = session.client.clone();
    let link_events = client.events();
    let g = gate.clone();
    let emulated = session.emulator.is_some();
    let h = tokio::spawn(link_pump(client.clone(), link_events, g, emulated));
    session.add_pump(h.abort_handle());
    let h = tokio::spawn(log_pump(client, gate.clone()));
    session.add_pump(h.abort_handle());
    if let Some(emu) = &session.emulator
        && let Some(emulator) = emu.emulator()
    {
        tracing::info!(port = %emu.service_port.display(), "emulator service port");
        let events = emu
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| emulator.handle.subscribe());
        let h = tokio::spawn(emulator_pump(
            Arc::downgrade(&emulator),
            events,
            emu.tracker.clone(),
            gate.clone(),
        ));
        session.add_pump(h.abort_handle());
    }
}

/// Link loss and recovery: the client looks for the charger again by itself.
async fn link_pump(
    client: Client,
    mut events: broadcast::Receiver<LinkEvent>,
    gate: Gate,
    emulated: bool,
) {
    loop {
        match events.recv().await {
            Ok(LinkEvent::Disconnected { reason }) => {
                gate.send(Msg::LinkLost {
                    reason: format!("{reason}; looking for the charger again"),
                })
                .await;
            }
            Ok(LinkEvent::Reconnected { port }) => {
                tracing::info!(%port, "link back");
                match greet(&client, emulated).await {
                    Ok(identity) => {
                        gate.send(Msg::Connected(identity)).await;
                    }
                    Err(reason) => {
                        gate.send(Msg::LinkLost { reason }).await;
                    }
                }
            }
            Ok(LinkEvent::Console(text)) => tracing::debug!(%text, "console"),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(n, "link events lagged");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The charger's log, history first, then as it happens (resubscribed after a reconnect).
async fn log_pump(client: Client, gate: Gate) {
    let mut stream = match client.logs(Level::Trace, true).await {
        Ok(s) => s,
        Err(e) => {
            gate.send(Msg::Error {
                context: "subscribing to the charger log".into(),
                message: e.to_string(),
            })
            .await;
            return;
        }
    };
    while let Some(item) = stream.next().await {
        match item {
            LogEvent::Record(r) => gate.log(r),
            LogEvent::Dropped(n) => {
                gate.send(Msg::LinesDropped(n)).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Emulator status and trace.

/// What the dashboard shows of an emulated charger, kept from its events.
#[derive(Debug, Clone, Default)]
struct Tracker {
    connector: Option<String>,
    ocpp: Option<OcppConnection>,
    registration: Option<Registration>,
    csms_url: Option<String>,
    transaction: Option<i32>,
    /// Message id of a StartTransaction awaiting its answer.
    start_call: Option<String>,
    errors: Vec<String>,
    service_port: Option<String>,
}

impl Tracker {
    fn error(&mut self, text: String) {
        if self.errors.len() == ERRORS_KEPT {
            self.errors.remove(0);
        }
        self.errors.push(text);
    }

    fn accepted(&self) -> bool {
        self.registration == Some(Registration::Accepted)
    }

    fn on_event(&mut self, event: &Event) -> Option<Msg> {
        match event {
            Event::Connection {
                state, url, detail, ..
            } => {
                if let Some(u) = url {
                    self.csms_url = Some(u.clone());
                }
                self.ocpp = Some(match state {
                    ConnectionState::Connecting => OcppConnection::Connecting,
                    ConnectionState::Connected => OcppConnection::Connected {
                        boot_accepted: self.accepted(),
                    },
                    other => OcppConnection::Disconnected {
                        reason: detail.clone().unwrap_or_else(|| other.as_str().to_string()),
                    },
                });
                None
            }
            Event::Registration { status } => {
                self.registration = Some(*status);
                if let Some(OcppConnection::Connected { .. }) = self.ocpp {
                    self.ocpp = Some(OcppConnection::Connected {
                        boot_accepted: self.accepted(),
                    });
                }
                None
            }
            Event::Status {
                connector_id,
                status,
                error_code,
            } => {
                if *connector_id == 1 || self.connector.is_none() {
                    self.connector = Some(status.to_string());
                }
                if *error_code != ChargePointErrorCode::NoError {
                    self.error(format!("connector {connector_id}: {error_code}"));
                }
                None
            }
            Event::Rebooting { kind } => {
                self.registration = None;
                self.ocpp = Some(OcppConnection::Disconnected {
                    reason: format!("rebooting ({kind:?})"),
                });
                None
            }
            Event::Message { direction, frame } => {
                let direction = match direction {
                    chargepoint::Direction::Sent => Direction::Sent,
                    chargepoint::Direction::Received => Direction::Received,
                };
                let frame = OcppFrame::from_wire(frame)?;
                self.on_frame(direction, &frame);
                Some(Msg::Trace {
                    direction,
                    time: chrono::Utc::now(),
                    frame,
                })
            }
        }
    }

    fn on_frame(&mut self, direction: Direction, frame: &OcppFrame) {
        match (direction, frame) {
            (Direction::Sent, OcppFrame::Call { id, action, .. })
                if action == "StartTransaction" =>
            {
                self.start_call = Some(id.clone());
            }
            (Direction::Sent, OcppFrame::Call { action, .. }) if action == "StopTransaction" => {
                self.transaction = None;
            }
            (Direction::Received, OcppFrame::CallResult { id, payload })
                if self.start_call.as_deref() == Some(id) =>
            {
                self.start_call = None;
                self.transaction = payload
                    .get("transactionId")
                    .and_then(|v| v.as_i64())
                    .and_then(|v| i32::try_from(v).ok());
            }
            (
                _,
                OcppFrame::CallError {
                    code, description, ..
                },
            ) => self.error(format!("CALLERROR {code}: {description}")),
            _ => {}
        }
    }

    fn status(&self, hw: &dyn Hardware) -> ChargerStatus {
        let meter = hw.meter();
        ChargerStatus {
            connector: self.connector.clone().unwrap_or_else(|| "Unknown".into()),
            ocpp: self.ocpp.clone().unwrap_or(OcppConnection::Connecting),
            csms_url: self.csms_url.clone(),
            transaction_id: self.transaction,
            offered_amps: meter.offered_a,
            drawn_amps: meter.current_a[0],
            energy_wh: meter.energy_wh,
            last_errors: self.errors.clone(),
            service_port: self.service_port.clone(),
        }
    }
}

fn tracked_status(tracker: &Mutex<Tracker>, emulator: &Emulator) -> ChargerStatus {
    tracker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .status(emulator.hardware.as_ref())
}

async fn emulator_pump(
    emulator: std::sync::Weak<Emulator>,
    mut events: broadcast::Receiver<Event>,
    tracker: Arc<Mutex<Tracker>>,
    gate: Gate,
) {
    // Events before the subscription are summed up by a snapshot.
    if let Some(e) = emulator.upgrade()
        && let Some(snap) = e.handle.snapshot().await
    {
        let mut t = tracker.lock().unwrap_or_else(|e| e.into_inner());
        t.registration = Some(snap.registration);
        t.ocpp = Some(if snap.online {
            OcppConnection::Connected {
                boot_accepted: snap.registration == Registration::Accepted,
            }
        } else {
            OcppConnection::Connecting
        });
        for (id, status, _) in &snap.connector_status {
            if *id == 1 || t.connector.is_none() {
                t.connector = Some(status.to_string());
            }
        }
    }
    let mut meter = tokio::time::interval(METER_PERIOD);
    meter.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last: Option<ChargerStatus> = None;
    loop {
        let mut trace = None;
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => {
                    trace = tracker.lock().unwrap_or_else(|e| e.into_inner()).on_event(&ev);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(n, "emulator events lagged");
                }
                Err(broadcast::error::RecvError::Closed) => {
                    gate.send(Msg::LinkLost {
                        reason: "the emulated charger stopped".into(),
                    })
                    .await;
                    return;
                }
            },
            _ = meter.tick() => {}
        }
        if let Some(t) = trace
            && !gate.send(t).await
            && !gate.current()
        {
            return;
        }
        let Some(e) = emulator.upgrade() else { return };
        let status = tracked_status(&tracker, &e);
        drop(e);
        if last.as_ref() != Some(&status) {
            last = Some(status.clone());
            gate.send(Msg::Status(status)).await;
        }
    }
}

async fn hardware(session: Arc<Session>, gate: Gate, action: HardwareAction) {
    let Some(emu) = &session.emulator else {
        gate.send(Msg::Error {
            context: "hardware action".into(),
            message: "hardware controls need an emulated charger".into(),
        })
        .await;
        return;
    };
    let event = match hw_event(action) {
        Ok(e) => e,
        Err(message) => {
            gate.send(Msg::Error {
                context: "hardware action".into(),
                message,
            })
            .await;
            return;
        }
    };
    let Some(emulator) = emu.emulator() else {
        return;
    };
    emulator.act(event).await;
    let status = tracked_status(&emu.tracker, &emulator);
    gate.send(Msg::Status(status)).await;
}

/// The emulator's hardware event for a TUI action, checked like the headless input.
fn hw_event(action: HardwareAction) -> Result<HwEvent, String> {
    match action {
        HardwareAction::Plug => Ok(HwEvent::Plug),
        HardwareAction::Unplug => Ok(HwEvent::Unplug),
        HardwareAction::PresentCard { id_tag } => {
            if id_tag.is_empty() || id_tag.len() > 20 {
                Err("a card id must be 1 to 20 characters".into())
            } else {
                Ok(HwEvent::Card { id_tag })
            }
        }
        HardwareAction::EvDemand { amps } => {
            if amps.is_finite() && amps >= 0.0 {
                Ok(HwEvent::EvDemand { amps })
            } else {
                Err(format!("EV demand must be 0 A or more, got {amps}"))
            }
        }
        HardwareAction::Fault { code } => {
            if crate::emulator::headless::is_fault_code(&code) {
                Ok(HwEvent::Fault {
                    error_code: code,
                    info: None,
                })
            } else {
                Err(format!(
                    "unknown fault code '{code}' (one of: {})",
                    crate::emulator::headless::fault_codes()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
        HardwareAction::ClearFault => Ok(HwEvent::ClearFault),
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration, profiles, firmware.

/// Keys written only after all others have been answered: raising the security profile before
/// the AuthorizationKey (or the CSMS URL) is in place would cut the charger off its CSMS.
const WRITTEN_LAST: &[&str] = &["SecurityProfile"];

async fn apply(session: Arc<Session>, gate: Gate, changes: Vec<ConfigChange>) {
    let (last, first): (Vec<ConfigChange>, Vec<ConfigChange>) = changes
        .into_iter()
        .partition(|c| WRITTEN_LAST.contains(&c.key.as_str()));
    let mut results = set_keys(&session.client, first).await;
    results.extend(set_keys(&session.client, last).await);
    gate.send(Msg::ConfigApplied(results)).await;
}

/// Writes keys in one pipelined batch; a failed batch rejects each of its keys with the reason.
async fn set_keys(client: &Client, changes: Vec<ConfigChange>) -> Vec<(String, ApplyOutcome)> {
    if changes.is_empty() {
        return Vec::new();
    }
    let keys: Vec<String> = changes.iter().map(|c| c.key.clone()).collect();
    let pairs = changes
        .into_iter()
        .map(|c| (c.key, c.value.expose().to_string()))
        .collect();
    match client.config_set(pairs).await {
        Ok(r) => r.into_iter().map(|(k, o)| (k, tui_outcome(o))).collect(),
        Err(e) => {
            let reason = e.to_string();
            keys.into_iter()
                .map(|k| (k, ApplyOutcome::Rejected(reason.clone())))
                .collect()
        }
    }
}

async fn load_profile(session: Option<Arc<Session>>, gate: Gate, env: EnvLookup, path: PathBuf) {
    let context = format!("loading profile {}", path.display());
    let p = path.clone();
    let resolved = tokio::task::spawn_blocking(move || {
        let profile = Profile::load(&p)?;
        // The TUI has no --set: variables come from the environment, then their defaults.
        let set: BTreeMap<String, String> = profile
            .variables
            .iter()
            .filter_map(|v| env(&v.name).map(|value| (v.name.clone(), value)))
            .collect();
        profile.resolve(&set, &|name| env(name), None)
    })
    .await;
    let assignments = match resolved {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            gate.send(Msg::Error {
                context,
                message: e.to_string(),
            })
            .await;
            return;
        }
        Err(e) => {
            gate.send(Msg::Error {
                context,
                message: e.to_string(),
            })
            .await;
            return;
        }
    };
    let current: Vec<link::ConfigEntry> = match &session {
        Some(s) => match s.client.config_get(Vec::new()).await {
            Ok(read) => read.entries,
            Err(e) => {
                gate.send(Msg::Error {
                    context,
                    message: format!("reading the charger's configuration: {e}"),
                })
                .await;
                return;
            }
        },
        None => Vec::new(),
    };
    let changes = profile_changes(&assignments, &current);
    gate.send(Msg::ProfileLoaded { path, changes }).await;
}

/// The keys a profile changes, with the charger's current values. Secrets are always listed
/// (their current value cannot be read back); plain keys already at their value are left out.
fn profile_changes(
    assignments: &[crate::provision::Assignment],
    current: &[link::ConfigEntry],
) -> Vec<ProfileChange> {
    assignments
        .iter()
        .filter_map(|a| {
            let entry = current.iter().find(|e| e.key == a.key);
            let old = entry
                .filter(|e| !e.write_only)
                .and_then(|e| e.value.clone());
            let new = match &a.value {
                AssignedValue::Plain(v) => {
                    if old.as_deref() == Some(v.as_str()) {
                        return None;
                    }
                    ChangeValue::Plain(v.clone())
                }
                AssignedValue::Secret(s) => ChangeValue::Secret(s.clone()),
            };
            Some(ProfileChange {
                key: a.key.clone(),
                old,
                new,
            })
        })
        .collect()
}

fn inspect_image(path: &Path, trusted: &[VerifyingKey]) -> Result<ImageInfo, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let inspection = crate::firmware::inspect(&bytes, trusted).map_err(|e| e.to_string())?;
    let header = &inspection.header;
    let signature = if !inspection.size_ok {
        SignatureStatus::Invalid(format!(
            "the payload has {} bytes, the header says {}",
            inspection.payload_len, header.payload_size
        ))
    } else if !inspection.sha_ok {
        SignatureStatus::Invalid("the payload does not match the header's SHA-256".into())
    } else {
        match &inspection.signature {
            crate::firmware::SignatureStatus::Trusted { fingerprint } => SignatureStatus::Valid {
                key_id: fingerprint.clone(),
            },
            crate::firmware::SignatureStatus::Untrusted => SignatureStatus::UnknownKey {
                key_id: header.key_id_hex(),
            },
            crate::firmware::SignatureStatus::NoKeysGiven => SignatureStatus::Unchecked {
                key_id: header.key_id_hex(),
            },
            crate::firmware::SignatureStatus::Invalid => SignatureStatus::Invalid(format!(
                "the signature does not verify with trusted key {}",
                header.key_id_hex()
            )),
        }
    };
    Ok(ImageInfo {
        path: path.to_path_buf(),
        version: header.firmware_version.clone(),
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
        built: chrono::DateTime::from_timestamp(header.build_time, 0),
        signature,
    })
}

async fn flash(session: Arc<Session>, gate: Gate, path: PathBuf) {
    let p = path.clone();
    let image = match tokio::task::spawn_blocking(move || read_image(&p)).await {
        Ok(Ok(image)) => image,
        Ok(Err(reason)) => {
            gate.send(Msg::FlashFailed { reason }).await;
            return;
        }
        Err(e) => {
            gate.send(Msg::FlashFailed {
                reason: e.to_string(),
            })
            .await;
            return;
        }
    };
    let header = image[..image.len().min(crate::firmware::HEADER_LEN)].to_vec();
    let (tx, mut rx) = watch::channel(link::FlashProgress::default());
    let g = gate.clone();
    let forward = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let p = rx.borrow_and_update().clone();
            g.send(Msg::FlashProgress(FlashProgress {
                done: p.done,
                total: p.total,
                rate: p.rate,
                eta: p
                    .eta_secs
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64),
            }))
            .await;
        }
    });
    let result = session
        .client
        .flash(&image, &header, &link::FlashOptions::default(), &tx)
        .await;
    drop(tx);
    let _ = forward.await;
    let msg = match result {
        Ok(report) => {
            tracing::info!(version = %report.version, bytes = report.total, "flashed");
            Msg::FlashFinished
        }
        Err(e) => Msg::FlashFailed {
            reason: e.to_string(),
        },
    };
    gate.send(msg).await;
}

/// Reads an image and checks what can be checked here (header, size, hash) before the charger
/// is touched; the signature is the charger's to check.
fn read_image(path: &Path) -> Result<Vec<u8>, String> {
    let image =
        std::fs::read(path).map_err(|e| format!("cannot read image {}: {e}", path.display()))?;
    let inspection = crate::firmware::inspect(&image, &[])
        .map_err(|e| format!("image {}: {e}", path.display()))?;
    if !inspection.intact() {
        return Err(format!(
            "image {} is damaged: its payload does not match its header",
            path.display()
        ));
    }
    Ok(image)
}

// ---------------------------------------------------------------------------------------------
// Conversions from the link's types.

fn tui_ports(ports: &[link::PortInfo]) -> Vec<PortInfo> {
    let mut sorted: Vec<&link::PortInfo> = ports.iter().collect();
    sorted.sort_by_key(|p| {
        (
            !p.likely_charger,
            p.bridge.is_none(),
            p.kind != link::PortKind::Usb,
            p.name.clone(),
        )
    });
    sorted
        .into_iter()
        .map(|p| PortInfo {
            path: p.name.clone(),
            usb: match (p.vid, p.pid) {
                (Some(vid), Some(pid)) => Some(UsbIds { vid, pid }),
                _ => None,
            },
            manufacturer: p.manufacturer.clone(),
            product: p.product.clone().or_else(|| p.bridge.map(str::to_string)),
            likely_charger: p.likely_charger,
        })
        .collect()
}

fn tui_identity(id: link::Identity, emulated: bool) -> ChargerInfo {
    ChargerInfo {
        identity: (&id).into(),
        active_slot: if id.active_slot.eq_ignore_ascii_case("B") {
            Slot::B
        } else {
            Slot::A
        },
        inactive_version: id.inactive_version,
        uptime: Duration::from_secs(id.uptime_secs),
        emulated,
    }
}

fn tui_entry(e: link::ConfigEntry) -> ConfigEntry {
    let value_type = match e.value_type.as_str() {
        "integer" => ValueType::Integer,
        "boolean" => ValueType::Boolean,
        "list" | "csl" => ValueType::List,
        _ => ValueType::String,
    };
    ConfigEntry {
        key: e.key,
        value: if e.write_only { None } else { e.value },
        readonly: e.readonly,
        write_only: e.write_only,
        value_type,
        reboot_required: e.reboot_required,
    }
}

fn tui_outcome(o: link::SetOutcome) -> ApplyOutcome {
    match o {
        link::SetOutcome::Accepted => ApplyOutcome::Accepted,
        link::SetOutcome::RebootRequired => ApplyOutcome::RebootRequired,
        link::SetOutcome::Rejected(r) => ApplyOutcome::Rejected(r),
        link::SetOutcome::NotSupported => ApplyOutcome::NotSupported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::Assignment;
    use crate::stack::secret::Secret;
    use serde_json::json;

    use crate::stack::messages::ChargePointStatus;

    fn message(direction: &'static str, frame: serde_json::Value) -> Event {
        let direction = if direction == "sent" {
            chargepoint::Direction::Sent
        } else {
            chargepoint::Direction::Received
        };
        Event::Message { direction, frame }
    }

    #[test]
    fn tracker_follows_registration_transactions_and_errors() {
        let mut t = Tracker::default();
        t.on_event(&Event::Connection {
            state: ConnectionState::Connecting,
            url: Some("ws://127.0.0.1:9/CP1".into()),
            detail: None,
            failure: None,
            http_status: None,
        });
        assert_eq!(t.ocpp, Some(OcppConnection::Connecting));
        t.on_event(&Event::Connection {
            state: ConnectionState::Connected,
            url: None,
            detail: None,
            failure: None,
            http_status: None,
        });
        assert_eq!(
            t.ocpp,
            Some(OcppConnection::Connected {
                boot_accepted: false
            })
        );
        t.on_event(&Event::Registration {
            status: Registration::Accepted,
        });
        assert_eq!(
            t.ocpp,
            Some(OcppConnection::Connected {
                boot_accepted: true
            })
        );
        assert_eq!(t.csms_url.as_deref(), Some("ws://127.0.0.1:9/CP1"));

        let trace = t.on_event(&message(
            "sent",
            json!([2, "7", "StartTransaction", {"connectorId": 1}]),
        ));
        assert!(matches!(
            trace,
            Some(Msg::Trace {
                direction: Direction::Sent,
                ..
            })
        ));
        // An unrelated answer does not set the transaction.
        t.on_event(&message("received", json!([3, "6", {"transactionId": 1}])));
        assert_eq!(t.transaction, None);
        let trace = t.on_event(&message("received", json!([3, "7", {"transactionId": 42}])));
        assert!(matches!(
            trace,
            Some(Msg::Trace {
                direction: Direction::Received,
                ..
            })
        ));
        assert_eq!(t.transaction, Some(42));

        t.on_event(&Event::Status {
            connector_id: 1,
            status: ChargePointStatus::Faulted,
            error_code: ChargePointErrorCode::GroundFailure,
        });
        assert_eq!(t.connector.as_deref(), Some("Faulted"));
        t.on_event(&message(
            "received",
            json!([4, "8", "NotImplemented", "no such action", {}]),
        ));
        assert_eq!(
            t.errors,
            vec![
                "connector 1: GroundFailure".to_string(),
                "CALLERROR NotImplemented: no such action".to_string()
            ]
        );
        t.on_event(&message(
            "sent",
            json!([2, "9", "StopTransaction", {"transactionId": 42}]),
        ));
        assert_eq!(t.transaction, None);
        // Not an OCPP frame: no trace message.
        assert_eq!(t.on_event(&message("sent", json!({"x": 1}))), None);
        for i in 0..10 {
            t.error(format!("e{i}"));
        }
        assert_eq!(t.errors.len(), ERRORS_KEPT);
        assert_eq!(t.errors.last().map(String::as_str), Some("e9"));
    }

    fn entry(key: &str, value: Option<&str>, write_only: bool) -> link::ConfigEntry {
        link::ConfigEntry {
            key: key.into(),
            value: value.map(str::to_string),
            readonly: false,
            write_only,
            value_type: "integer".into(),
            reboot_required: false,
        }
    }

    #[test]
    fn profile_changes_leave_out_unchanged_keys_and_keep_secrets_secret() {
        let assignments = vec![
            Assignment {
                key: "HeartbeatInterval".into(),
                value: AssignedValue::Plain("300".into()),
            },
            Assignment {
                key: "MeterValueSampleInterval".into(),
                value: AssignedValue::Plain("60".into()),
            },
            Assignment {
                key: "AuthorizationKey".into(),
                value: AssignedValue::Secret(Secret::new("00112233445566778899aabbccddeeff")),
            },
            Assignment {
                key: "NewKey".into(),
                value: AssignedValue::Plain("x".into()),
            },
        ];
        let current = vec![
            entry("HeartbeatInterval", Some("300"), false),
            entry("MeterValueSampleInterval", Some("0"), false),
            entry("AuthorizationKey", Some("leaked?"), true),
        ];
        let changes = profile_changes(&assignments, &current);
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["MeterValueSampleInterval", "AuthorizationKey", "NewKey"]
        );
        assert_eq!(changes[0].old.as_deref(), Some("0"));
        assert_eq!(changes[0].new, ChangeValue::Plain("60".into()));
        assert_eq!(changes[1].old, None, "write-only values are never shown");
        assert!(matches!(changes[1].new, ChangeValue::Secret(_)));
        assert_eq!(changes[2].old, None);
        let shown = format!("{changes:?}");
        assert!(
            !shown.contains("00112233445566778899aabbccddeeff"),
            "{shown}"
        );
    }

    #[test]
    fn ports_list_likely_chargers_then_bridges_then_usb() {
        let usb = |name: &str, vid: u16, pid: u16, product: Option<&str>| {
            link::PortInfo {
                kind: link::PortKind::Usb,
                vid: Some(vid),
                pid: Some(pid),
                product: product.map(str::to_string),
                ..link::PortInfo::plain(name)
            }
            .classify()
        };
        let ports = vec![
            link::PortInfo::plain("/dev/ttyS0").classify(),
            usb("/dev/ttyACM1", 0x1234, 0x0001, None),
            usb("/dev/ttyUSB0", 0x1a86, 0x7523, None),
            usb(
                "/dev/ttyACM0",
                0x0403,
                0x6015,
                Some("Zaptec Go service port"),
            ),
        ];
        let listed = tui_ports(&ports);
        let names: Vec<&str> = listed.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            names,
            vec!["/dev/ttyACM0", "/dev/ttyUSB0", "/dev/ttyACM1", "/dev/ttyS0"]
        );
        assert!(listed[0].likely_charger);
        assert_eq!(
            listed[1].usb,
            Some(UsbIds {
                vid: 0x1a86,
                pid: 0x7523
            })
        );
        assert_eq!(listed[1].product.as_deref(), Some("WCH CH340"));
        assert_eq!(listed[3].usb, None);
    }

    #[test]
    fn hardware_actions_are_checked_before_the_emulator_sees_them() {
        assert_eq!(hw_event(HardwareAction::Plug), Ok(HwEvent::Plug));
        assert!(
            hw_event(HardwareAction::Fault {
                code: "GroundFailure".into()
            })
            .is_ok()
        );
        let err = hw_event(HardwareAction::Fault {
            code: "Melted".into(),
        })
        .unwrap_err();
        assert!(
            err.contains("Melted") && err.contains("GroundFailure"),
            "{err}"
        );
        assert!(
            hw_event(HardwareAction::Fault {
                code: "NoError".into()
            })
            .is_err()
        );
        assert!(hw_event(HardwareAction::EvDemand { amps: f64::NAN }).is_err());
        assert!(hw_event(HardwareAction::EvDemand { amps: -1.0 }).is_err());
        assert!(
            hw_event(HardwareAction::PresentCard {
                id_tag: "X".repeat(21)
            })
            .is_err()
        );
        assert_eq!(
            hw_event(HardwareAction::EvDemand { amps: 6.0 }),
            Ok(HwEvent::EvDemand { amps: 6.0 })
        );
    }

    #[test]
    fn images_are_marked_unchecked_without_trusted_keys() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::firmware::keys::generate();
        let other = crate::firmware::keys::generate();
        let image = crate::firmware::pack(b"payload bytes", "2.2.0", &key).unwrap();
        let path = dir.path().join("fw.bin");
        std::fs::write(&path, &image).unwrap();

        let info = inspect_image(&path, &[]).unwrap();
        assert_eq!(info.version, "2.2.0");
        assert_eq!(info.size, image.len() as u64);
        assert_eq!(info.sha256, hex::encode(Sha256::digest(&image)));
        assert!(
            matches!(info.signature, SignatureStatus::Unchecked { .. }),
            "{info:?}"
        );
        let info = inspect_image(&path, &[key.verifying_key()]).unwrap();
        assert!(
            matches!(info.signature, SignatureStatus::Valid { .. }),
            "{info:?}"
        );
        let info = inspect_image(&path, &[other.verifying_key()]).unwrap();
        assert!(
            matches!(info.signature, SignatureStatus::UnknownKey { .. }),
            "{info:?}"
        );

        let mut damaged = image.clone();
        if let Some(last) = damaged.last_mut() {
            *last ^= 0xFF;
        }
        std::fs::write(&path, &damaged).unwrap();
        let info = inspect_image(&path, &[]).unwrap();
        assert!(
            matches!(info.signature, SignatureStatus::Invalid(_)),
            "{info:?}"
        );
        assert!(read_image(&path).unwrap_err().contains("damaged"));
        std::fs::write(&path, b"not an image").unwrap();
        assert!(inspect_image(&path, &[]).is_err());
        assert!(read_image(&path).is_err());
    }

    #[test]
    fn trusted_keys_are_read_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            read_trusted_keys(&dir.path().join("missing"))
                .unwrap()
                .is_empty()
        );
        let key = crate::firmware::keys::generate();
        crate::firmware::keys::write_keypair_from(&dir.path().join("release"), &key, false)
            .unwrap();
        let keys = read_trusted_keys(dir.path()).unwrap();
        assert_eq!(keys, vec![key.verifying_key()]);
        std::fs::write(dir.path().join("broken.pub"), "garbage").unwrap();
        let err = read_trusted_keys(dir.path()).unwrap_err().to_string();
        assert!(err.contains("broken.pub"), "{err}");
    }

    const STEP: Duration = Duration::from_secs(20);

    /// The next message that `pick` accepts; others are skipped. Bounded.
    async fn next_where<T>(
        rx: &mut mpsc::Receiver<Msg>,
        what: &str,
        mut pick: impl FnMut(Msg) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => {
                    if let Some(t) = pick(m) {
                        return t;
                    }
                }
                Ok(None) => panic!("channel closed waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    fn run(backend: &mut LiveBackend, effect: Effect, events: &Events) {
        if let Some(task) = backend.perform(effect, events) {
            tokio::spawn(task);
        }
    }

    fn test_paths(root: &Path) -> Paths {
        Paths {
            config_dir: root.join("config"),
            data_dir: root.join("data"),
            log_dir: root.join("log"),
            cache_dir: root.join("cache"),
        }
    }

    #[tokio::test]
    async fn emulator_session_configures_and_goes_quiet_after_disconnect() {
        let root = tempfile::tempdir().unwrap();
        let paths = test_paths(root.path());
        let state_dir = paths.emulator_state_dir(EMULATOR_ID);
        let vars: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let lookup = vars.clone();
        let mut backend = LiveBackend::new(LiveOptions {
            lister: Arc::new(FixedPorts::default()),
            env: Arc::new(move |name| lookup.lock().unwrap().get(name).cloned()),
            ..LiveOptions::new(paths)
        });
        let (events, mut rx) = Events::channel(4096);

        run(
            &mut backend,
            Effect::StartEmulator {
                csms: CsmsTarget::Sandbox,
            },
            &events,
        );
        let identity = next_where(&mut rx, "Connected", |m| match m {
            Msg::Connected(i) => Some(i),
            _ => None,
        })
        .await;
        assert!(identity.emulated);
        assert_eq!(identity.identity.vendor, "Zaptec");
        assert!(state_dir.join(SERVICE_PORT_NAME).exists());

        run(&mut backend, Effect::ReadConfig { request: 7 }, &events);
        let entries = next_where(&mut rx, "ConfigRead", |m| match m {
            Msg::ConfigRead { request, entries } => Some((request, entries)),
            _ => None,
        })
        .await;
        assert_eq!(entries.0, 7);
        let auth = entries.1.iter().find(|e| e.key == "AuthorizationKey");
        assert!(auth.is_some_and(|e| e.write_only && e.value.is_none()));
        assert!(
            entries
                .1
                .iter()
                .any(|e| e.key == "HeartbeatInterval" && e.value_type == ValueType::Integer)
        );

        run(
            &mut backend,
            Effect::ApplyConfig {
                changes: vec![
                    ConfigChange {
                        key: "SecurityProfile".into(),
                        value: ChangeValue::Plain("0".into()),
                    },
                    ConfigChange {
                        key: "MeterValueSampleInterval".into(),
                        value: ChangeValue::Plain("77".into()),
                    },
                    ConfigChange {
                        key: "NoSuchKey".into(),
                        value: ChangeValue::Plain("1".into()),
                    },
                    ConfigChange {
                        key: "HeartbeatInterval2".into(),
                        value: ChangeValue::Plain("x".into()),
                    },
                ],
            },
            &events,
        );
        let applied = next_where(&mut rx, "ConfigApplied", |m| match m {
            Msg::ConfigApplied(r) => Some(r),
            _ => None,
        })
        .await;
        assert_eq!(applied.len(), 4);
        assert_eq!(
            applied.last().map(|(k, _)| k.as_str()),
            Some("SecurityProfile"),
            "{applied:?}"
        );
        assert_eq!(
            applied[0],
            (
                "MeterValueSampleInterval".to_string(),
                ApplyOutcome::Accepted
            )
        );
        assert_eq!(
            applied[1],
            ("NoSuchKey".to_string(), ApplyOutcome::NotSupported)
        );

        run(
            &mut backend,
            Effect::Hardware(HardwareAction::Plug),
            &events,
        );
        next_where(&mut rx, "Preparing status", |m| match m {
            Msg::Status(s) if s.connector == "Preparing" => {
                assert_eq!(
                    s.service_port.as_deref(),
                    Some(state_dir.join(SERVICE_PORT_NAME).to_str().unwrap())
                );
                Some(())
            }
            _ => None,
        })
        .await;
        next_where(&mut rx, "a StatusNotification in the trace", |m| match m {
            Msg::Trace {
                frame: OcppFrame::Call { action, .. },
                ..
            } if action == "StatusNotification" => Some(()),
            _ => None,
        })
        .await;

        // A profile: variables from the environment, then defaults; unchanged keys left out.
        let profile = root.path().join("site.toml");
        std::fs::write(
            &profile,
            "name = \"site\"\n[variables]\nSAMPLE = { default = \"45\" }\n\
             HB = { description = \"heartbeat\" }\n[config]\n\
             MeterValueSampleInterval = \"${SAMPLE}\"\nHeartbeatInterval = \"${HB}\"\n\
             ConnectionTimeOut = \"${HB}\"\n",
        )
        .unwrap();
        let current = entries
            .1
            .iter()
            .find(|e| e.key == "ConnectionTimeOut")
            .and_then(|e| e.value.clone())
            .unwrap();
        vars.lock().unwrap().insert("HB".into(), current);
        run(
            &mut backend,
            Effect::LoadProfile {
                path: profile.clone(),
            },
            &events,
        );
        let changes = next_where(&mut rx, "ProfileLoaded", |m| match m {
            Msg::ProfileLoaded { changes, .. } => Some(changes),
            Msg::Error { context, message } => panic!("{context}: {message}"),
            _ => None,
        })
        .await;
        let summary: Vec<(&str, Option<&str>, String)> = changes
            .iter()
            .map(|c| (c.key.as_str(), c.old.as_deref(), c.new.display()))
            .collect();
        assert!(
            summary.contains(&("MeterValueSampleInterval", Some("77"), "45".to_string())),
            "{summary:?}"
        );
        assert!(
            summary.iter().all(|(k, _, _)| *k != "ConnectionTimeOut"),
            "unchanged key listed: {summary:?}"
        );
        std::fs::write(
            &profile,
            "name = \"site\"\n[config]\nHeartbeatInterval = [\n",
        )
        .unwrap();
        run(&mut backend, Effect::LoadProfile { path: profile }, &events);
        let (context, message) = next_where(&mut rx, "a profile error", |m| match m {
            Msg::Error { context, message } => Some((context, message)),
            _ => None,
        })
        .await;
        assert!(context.contains("site.toml"), "{context}");
        assert!(message.contains("site.toml:"), "{message}");

        // Nothing of this session reaches the TUI once it is disconnected.
        while rx.try_recv().is_ok() {}
        run(&mut backend, Effect::Disconnect, &events);
        backend.shutdown().await;
        let late: Vec<Msg> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(late.is_empty(), "messages after disconnect: {late:?}");
        assert!(!state_dir.join(SERVICE_PORT_NAME).exists());
        assert!(!state_dir.join(TUI_PORT_NAME).exists());

        run(&mut backend, Effect::ReadConfig { request: 8 }, &events);
        let err = next_where(&mut rx, "an error", |m| match m {
            Msg::Error { message, .. } => Some(message),
            _ => None,
        })
        .await;
        assert!(err.contains("no charger"), "{err}");

        // The same emulator starts again from its saved state.
        run(
            &mut backend,
            Effect::StartEmulator {
                csms: CsmsTarget::Sandbox,
            },
            &events,
        );
        let again = next_where(&mut rx, "Connected again", |m| match m {
            Msg::Connected(i) => Some(i),
            _ => None,
        })
        .await;
        assert_eq!(
            again.identity.serial_number,
            identity.identity.serial_number
        );
        run(&mut backend, Effect::ReadConfig { request: 9 }, &events);
        let entries = next_where(&mut rx, "ConfigRead", |m| match m {
            Msg::ConfigRead {
                request: 9,
                entries,
            } => Some(entries),
            _ => None,
        })
        .await;
        let mv = entries.iter().find(|e| e.key == "MeterValueSampleInterval");
        assert_eq!(mv.and_then(|e| e.value.as_deref()), Some("77"));
        backend.shutdown().await;
    }

    #[tokio::test]
    async fn a_lost_link_is_reported_and_the_charger_found_again() {
        let root = tempfile::tempdir().unwrap();
        let mut backend = LiveBackend::new(LiveOptions {
            lister: Arc::new(FixedPorts::default()),
            ..LiveOptions::new(test_paths(root.path()))
        });
        let (events, mut rx) = Events::channel(4096);
        run(
            &mut backend,
            Effect::StartEmulator {
                csms: CsmsTarget::Sandbox,
            },
            &events,
        );
        let first = next_where(&mut rx, "Connected", |m| match m {
            Msg::Connected(i) => Some(i),
            _ => None,
        })
        .await;
        // Pull the cable: a new pseudo-terminal behind the same path.
        let session = backend.session().expect("a session");
        let emu = session.emulator.as_ref().expect("emulated");
        emu.tui_port
            .lock()
            .unwrap()
            .as_mut()
            .expect("the TUI's port")
            .replug()
            .expect("replug");
        let reason = next_where(&mut rx, "LinkLost", |m| match m {
            Msg::LinkLost { reason } => Some(reason),
            _ => None,
        })
        .await;
        assert!(reason.contains("looking for the charger"), "{reason}");
        let again = next_where(&mut rx, "Connected again", |m| match m {
            Msg::Connected(i) => Some(i),
            _ => None,
        })
        .await;
        assert_eq!(again.identity.serial_number, first.identity.serial_number);
        // The log subscription survives the reconnect.
        if let Some(e) = emu.emulator() {
            e.logbook.info("test", "after the replug");
        }
        next_where(&mut rx, "the log line", |m| match m {
            Msg::Log(r) if r.message == "after the replug" => Some(()),
            _ => None,
        })
        .await;
        drop(session);
        backend.shutdown().await;
    }

    #[tokio::test]
    async fn a_port_that_does_not_exist_is_reported_as_link_lost() {
        let root = tempfile::tempdir().unwrap();
        let mut backend = LiveBackend::new(LiveOptions {
            lister: Arc::new(FixedPorts::default()),
            ..LiveOptions::new(test_paths(root.path()))
        });
        let (events, mut rx) = Events::channel(64);
        let missing = root.path().join("ttyUSB-missing").display().to_string();
        run(
            &mut backend,
            Effect::Connect {
                port: missing.clone(),
            },
            &events,
        );
        let reason = next_where(&mut rx, "LinkLost", |m| match m {
            Msg::LinkLost { reason } => Some(reason),
            _ => None,
        })
        .await;
        assert!(reason.contains(&missing), "{reason}");
        run(&mut backend, Effect::ListPorts, &events);
        let ports = next_where(&mut rx, "PortsListed", |m| match m {
            Msg::PortsListed(p) => Some(p),
            _ => None,
        })
        .await;
        assert!(ports.is_empty());
        backend.shutdown().await;
    }
}
