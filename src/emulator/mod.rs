//! Emulation mode: the charger's complete stack with simulated hardware, connected to a CSMS
//! (the operator's, or the embedded sandbox) and optionally to a pseudo-terminal service port.

pub mod fleet;
pub mod hardware;
pub mod headless;
pub mod service_port;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::stack::chargepoint::{self, Handle, Identity, RebootKind};
use crate::stack::clock::{SharedClock, TokioClock};
use crate::stack::config::Configuration;
use crate::stack::connection::Backoff;
use crate::stack::hardware::HwEvent;
use crate::stack::journal::Durability;
use crate::stack::logbook::LogBook;
use crate::storage;

pub use hardware::SimHardware;

/// Vendor and model the emulated charger reports.
pub const VENDOR: &str = "Zaptec";
pub const MODEL: &str = "Go";
/// Firmware version of a factory-fresh emulated charger.
pub const FACTORY_FIRMWARE: &str = "2.1.0";

/// Settings applied to the charger's configuration before it boots (from command-line flags).
#[derive(Debug, Clone, Default)]
pub struct BootSettings {
    pub csms_url: Option<String>,
    pub charge_point_id: Option<String>,
    pub security_profile: Option<u8>,
    pub authorization_key: Option<crate::stack::secret::Secret>,
    /// `bytes` or `hex`.
    pub basic_auth_password: Option<String>,
    /// Public keys the charger trusts for firmware images.
    pub trusted_keys: Vec<crate::firmware::VerifyingKey>,
    /// Keys from a provisioning profile, applied in order with the service port's rules
    /// before the charger boots (a dry run of `provision`). Secret values stay `Secret`.
    pub profile: Vec<crate::provision::Assignment>,
    /// Sets the meter's energy register (Wh) before boot, persisted in the state directory, so
    /// the emulated charger matches one that has been in service.
    pub meter_start_wh: Option<f64>,
}

/// How an emulated charger runs: alone and watched event by event, or as one of a fleet that
/// shares what can be shared and keeps per charge point only what must differ.
#[derive(Clone)]
pub struct Scale {
    /// Slots of the charge point's observer event channel.
    pub event_capacity: usize,
    /// Records the charger's own log keeps, and slots of its live channel.
    pub log_capacity: usize,
    pub log_channel: usize,
    /// How the transaction journal's records become durable.
    pub journal: Durability,
    /// Counters fed by the charge point as things happen.
    pub probe: Option<Arc<dyn chargepoint::Probe>>,
    /// Whether the simulated hardware fsyncs its meter file on every change (a fleet writes it
    /// atomically without waiting for the disk; the meter is the simulation's, not the stack's).
    pub durable_hardware: bool,
    /// Trusted firmware keys, shared by every charger of a fleet (None: from the settings).
    pub trusted_keys: Option<Arc<Vec<crate::firmware::VerifyingKey>>>,
    /// Whether the charger keeps the trace of its last OCPP frames from power-on (for its
    /// service port; a charger of a fleet keeps none, so its frames are not turned into text).
    pub ocpp_trace: bool,
}

impl Scale {
    /// One charger, every event and log line kept for a person or a test to see.
    pub fn single() -> Scale {
        Scale {
            event_capacity: chargepoint::EVENTS_SINGLE,
            log_capacity: 10_000,
            log_channel: 4096,
            journal: Durability::PerRecord,
            probe: None,
            durable_hardware: true,
            trusted_keys: None,
            ocpp_trace: true,
        }
    }
}

impl Default for Scale {
    fn default() -> Self {
        Scale::single()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdentityFile {
    serial_number: String,
}

/// A running emulated charger.
pub struct Emulator {
    pub handle: Handle,
    /// The charger's A/B firmware slots (the serial flash and OCPP UpdateFirmware write here).
    pub slots: Arc<std::sync::Mutex<crate::firmware::Slots>>,
    pub trusted_keys: Arc<Vec<crate::firmware::VerifyingKey>>,
    pub hardware: Arc<SimHardware>,
    pub logbook: LogBook,
    pub state_dir: PathBuf,
    pub serial_number: String,
    /// The pseudo-terminal service port, when one is attached.
    service_port: std::sync::Mutex<Option<service_port::ServicePort>>,
    /// The last OCPP frames, kept from power-on when [`Scale::ocpp_trace`] asks for it.
    ocpp_trace: Option<chargepoint::FrameTrace>,
    /// Boots of an image on trial still to fail, as a crashing image's would
    /// (`{"action":"fail_boots","count":N}`).
    fail_boots: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Emulator {
    /// Prepares the state directory, applies `settings`, and boots the charger.
    pub async fn start(state_dir: &Path, settings: &BootSettings) -> anyhow::Result<Emulator> {
        Self::start_scaled(state_dir, settings, &Scale::single()).await
    }

    /// Prepares the state directory with `settings` (configuration, identity, meter register,
    /// firmware slots): what [`Emulator::start`] does before it boots, done ahead for a fleet
    /// (whose writes a [`storage::Batch`] may take, to make them durable together).
    pub fn prepare(state_dir: &Path, settings: &BootSettings) -> anyhow::Result<String> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating state directory {}", state_dir.display()))?;
        apply_settings(state_dir, settings)?;
        if let Some(wh) = settings.meter_start_wh {
            SimHardware::write_register(state_dir, wh)
                .with_context(|| format!("setting the meter register to {wh} Wh"))?;
        }
        crate::firmware::Slots::open(&state_dir.join("slots"), FACTORY_FIRMWARE)
            .with_context(|| format!("opening firmware slots in {}", state_dir.display()))?;
        load_or_make_serial(state_dir)
    }

    /// [`Emulator::start`] at a given [`Scale`].
    pub async fn start_scaled(
        state_dir: &Path,
        settings: &BootSettings,
        scale: &Scale,
    ) -> anyhow::Result<Emulator> {
        let serial_number = Self::prepare(state_dir, settings)?;
        let mut scale = scale.clone();
        if scale.trusted_keys.is_none() {
            scale.trusted_keys = Some(Arc::new(settings.trusted_keys.clone()));
        }
        Self::boot_prepared(state_dir, serial_number, &scale)
    }

    /// Boots a charger whose state directory [`Emulator::prepare`] made ready.
    pub fn boot_prepared(
        state_dir: &Path,
        serial_number: String,
        scale: &Scale,
    ) -> anyhow::Result<Emulator> {
        let clock: SharedClock = Arc::new(TokioClock::new());
        let logbook = LogBook::with_channel(scale.log_capacity, scale.log_channel, clock.clone());
        let hardware = Arc::new(if scale.durable_hardware {
            SimHardware::open(Some(state_dir))
        } else {
            SimHardware::open_lazy(state_dir)
        });
        let mut slots = crate::firmware::Slots::open(&state_dir.join("slots"), FACTORY_FIRMWARE)
            .with_context(|| format!("opening firmware slots in {}", state_dir.display()))?;
        let fail_boots = Arc::new(AtomicU32::new(0));
        let outcome =
            power_on(&mut slots, &fail_boots, &logbook).context("booting the firmware slots")?;
        logbook.info("boot", format!("firmware slots: {outcome:?}"));
        let identity = Identity {
            vendor: VENDOR.into(),
            model: MODEL.into(),
            serial_number: serial_number.clone(),
            firmware_version: slots.active_version(),
        };
        let slots = Arc::new(std::sync::Mutex::new(slots));
        let trusted_keys = scale.trusted_keys.clone().unwrap_or_default();
        // The trial image is confirmed from the charge point's own probe call, so no task and
        // no event subscription per charger are needed for it (and a charger of a fleet, with
        // nobody subscribed, never turns its frames into events).
        let probe: Arc<dyn chargepoint::Probe> = Arc::new(Confirming {
            slots: slots.clone(),
            log: logbook.clone(),
            inner: scale.probe.clone(),
        });
        let ocpp_trace = scale
            .ocpp_trace
            .then(|| chargepoint::FrameTrace::new(service_port::TRACE_FRAMES));
        let opts = chargepoint::Options {
            identity: identity.clone(),
            state_dir: state_dir.to_path_buf(),
            clock,
            logbook: logbook.clone(),
            connect_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            firmware: Some(chargepoint::FirmwareTarget {
                slots: slots.clone(),
                trusted_keys: trusted_keys.clone(),
            }),
            event_capacity: scale.event_capacity,
            journal: scale.journal.clone(),
            probe: Some(probe),
            trace: ocpp_trace.clone(),
        };
        let mut reboot_identity = identity.clone();
        let reboot_slots = slots.clone();
        let reboot_log = logbook.clone();
        let reboot_failing = fail_boots.clone();
        let (handle, task) = chargepoint::spawn(opts, hardware.clone(), move |kind: RebootKind| {
            // Power-on: a verified image in the inactive slot becomes active.
            let mut slots = reboot_slots.lock().unwrap_or_else(|e| e.into_inner());
            match power_on(&mut slots, &reboot_failing, &reboot_log) {
                Ok(outcome) => reboot_log.info(
                    "boot",
                    format!("{kind:?} reboot, firmware slots: {outcome:?}"),
                ),
                Err(e) => reboot_log.error("boot", format!("firmware slots: {e}")),
            }
            reboot_identity.firmware_version = slots.active_version();
            reboot_identity.clone()
        });
        Ok(Emulator {
            handle,
            ocpp_trace,
            slots,
            trusted_keys,
            hardware,
            logbook,
            state_dir: state_dir.to_path_buf(),
            serial_number,
            service_port: std::sync::Mutex::new(None),
            fail_boots,
            task,
        })
    }

    /// The next `count` boots of an image on trial fail as a crashing image's would: the
    /// watchdog powers the charger on again at once, until the image is confirmed or rolled
    /// back.
    pub fn fail_boots(&self, count: u32) {
        self.fail_boots.store(count, Ordering::SeqCst);
        self.logbook.warn(
            "hw",
            format!("the next {count} boots of an image on trial fail (simulated)"),
        );
    }

    /// Applies a simulated hardware action: the physical part first, then the stack is told.
    pub async fn act(&self, event: HwEvent) {
        match &event {
            HwEvent::Plug => self.hardware.set_plugged(true),
            HwEvent::Unplug => self.hardware.set_plugged(false),
            HwEvent::EvDemand { amps } => self.hardware.set_ev_demand(*amps),
            _ => {}
        }
        self.handle.hardware(event).await;
    }

    /// Simulates the charger's storage failing: from now on every write in the state
    /// directory gets `fault`'s error (`None`: the storage works again). Process-wide, as the
    /// emulator process models one charger.
    pub fn set_storage_fault(&self, fault: Option<crate::storage::failpoint::DiskFault>) {
        crate::storage::failpoint::set_disk_fault(fault);
        match fault {
            Some(f) => self
                .logbook
                .warn("hw", format!("storage fault: {} (simulated)", f.as_str())),
            None => self.logbook.info("hw", "storage fault cleared (simulated)"),
        }
    }

    /// Exposes the service port on a pseudo-terminal and makes `link_path` a symlink to it.
    /// Returns the device path.
    pub fn attach_service_port(
        &self,
        link_path: &Path,
        shaper: crate::link::pty::LineShaper,
    ) -> anyhow::Result<PathBuf> {
        let backend = service_port::ChargerBackend::new(self);
        let port = service_port::ServicePort::open(link_path, backend, shaper)
            .with_context(|| format!("opening the service port at {}", link_path.display()))?;
        let device = port.device();
        *self.service_port.lock().unwrap_or_else(|e| e.into_inner()) = Some(port);
        self.logbook.info(
            "link",
            format!(
                "service port on {} (linked from {})",
                device.display(),
                link_path.display()
            ),
        );
        Ok(device)
    }

    /// Simulates pulling and replugging the USB cable of the service port.
    pub fn replug_service_port(&self) -> anyhow::Result<PathBuf> {
        let mut guard = self.service_port.lock().unwrap_or_else(|e| e.into_inner());
        let port = guard
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("no service port (start with --serial-link PATH)"))?;
        let device = port.replug()?;
        self.logbook.info(
            "link",
            format!("service port re-enumerated as {}", device.display()),
        );
        Ok(device)
    }

    /// Cuts the power: the network goes first (the CSMS gets no close frame), then the stack
    /// stops where it is, saving nothing more (as after `kill -9`). Boot it again with
    /// [`Emulator::start`] on the same state directory.
    pub async fn power_cut(self) {
        let mut events = self.handle.subscribe();
        let online = self.handle.snapshot().await.is_some_and(|s| s.online);
        self.handle.hardware(HwEvent::NetworkLost).await;
        if online {
            // Wait until the connection is gone, so that stopping the stack cannot close it
            // cleanly.
            let gone = async {
                loop {
                    match events.recv().await {
                        Ok(ev) => {
                            let v = serde_json::to_value(&ev).unwrap_or_default();
                            if v["type"] == "connection" && v["data"]["state"] == "disconnected" {
                                break;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(2), gone)
                .await
                .is_err()
            {
                self.logbook
                    .warn("hw", "power cut: the connection did not drop within 2 s");
            }
        }
        self.service_port
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.task.abort();
        let _ = self.task.await;
        self.logbook.warn("hw", "power cut");
    }

    /// Stops the charger cleanly: state persisted, connection closed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.service_port
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.handle.shutdown().await;
        self.hardware.flush();
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(anyhow::anyhow!("charge point task failed: {join}")),
            Err(_) => Err(anyhow::anyhow!("charge point did not stop within 5 s")),
        }
    }
}

/// One power-on of the slots; a boot of an image on trial that is set to fail crashes and the
/// charger powers on again (each such boot counts against the trial).
fn power_on(
    slots: &mut crate::firmware::Slots,
    fail_boots: &AtomicU32,
    log: &LogBook,
) -> crate::firmware::Result<crate::firmware::BootOutcome> {
    loop {
        let outcome = slots.boot()?;
        if let crate::firmware::BootOutcome::RolledBack {
            failed_version,
            version,
            ..
        } = &outcome
        {
            log.error(
                "boot",
                format!(
                    "firmware {failed_version} was not confirmed in {} trial boots; back to {version}",
                    crate::firmware::slots::MAX_TRIAL_BOOTS
                ),
            );
        }
        let on_trial = matches!(slots.boot_state(), crate::firmware::BootState::Trial { .. });
        let crash = on_trial
            && fail_boots
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if !crash {
            return Ok(outcome);
        }
        log.error(
            "boot",
            format!(
                "firmware {} crashed during its trial boot (simulated)",
                slots.active_version()
            ),
        );
    }
}

/// The probe of an emulated charger: confirms an image on trial once the charger has
/// registered with its CSMS (the service port confirms it when a host connects, see
/// [`service_port`]), and passes everything on to the fleet's probe, if any. Confirming writes
/// the slot metadata only while an image is on trial; otherwise it is a lock and a comparison.
struct Confirming {
    slots: Arc<std::sync::Mutex<crate::firmware::Slots>>,
    log: LogBook,
    inner: Option<Arc<dyn chargepoint::Probe>>,
}

impl chargepoint::Probe for Confirming {
    fn event(&self, event: &chargepoint::Event) {
        if let chargepoint::Event::Registration {
            status: chargepoint::Registration::Accepted,
        } = event
        {
            const WHY: &str = "its OCPP connection is up";
            if self.slots.try_lock().is_ok() {
                confirm_trial(&self.slots, &self.log, WHY);
            } else {
                // Held by a firmware write: confirm off the charge point's task.
                let (slots, log) = (self.slots.clone(), self.log.clone());
                tokio::task::spawn_blocking(move || confirm_trial(&slots, &log, WHY));
            }
        }
        if let Some(inner) = &self.inner {
            inner.event(event);
        }
    }

    fn frame(&self, direction: chargepoint::Direction) {
        if let Some(inner) = &self.inner {
            inner.frame(direction);
        }
    }

    fn call(&self, action: &str, elapsed: Duration, outcome: chargepoint::CallOutcome) {
        if let Some(inner) = &self.inner {
            inner.call(action, elapsed, outcome);
        }
    }
}

/// Confirms the image on trial, if any: the charger booted it and `why`.
pub(crate) fn confirm_trial(
    slots: &std::sync::Mutex<crate::firmware::Slots>,
    log: &LogBook,
    why: &str,
) {
    let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
    match slots.confirm() {
        Ok(Some(version)) => log.info("boot", format!("firmware {version} confirmed: {why}")),
        Ok(None) => {}
        Err(e) => log.storage_failed("the firmware confirmation", &e),
    }
}

fn apply_settings(state_dir: &Path, s: &BootSettings) -> anyhow::Result<()> {
    let mut config = Configuration::open(state_dir)
        .with_context(|| format!("opening configuration in {}", state_dir.display()))?;
    for a in &s.profile {
        let (current, _) = config.get(
            std::slice::from_ref(&a.key),
            crate::stack::config::Channel::Service,
        );
        if current
            .first()
            .is_some_and(|e| e.value.as_deref() == Some(a.value.expose()))
        {
            continue;
        }
        match config.change(
            &a.key,
            a.value.expose(),
            crate::stack::config::Channel::Service,
        ) {
            crate::stack::config::ChangeOutcome::Accepted
            | crate::stack::config::ChangeOutcome::RebootRequired => {}
            crate::stack::config::ChangeOutcome::Rejected(why) => {
                anyhow::bail!(
                    "profile key {} = {}: rejected by the charger: {why}",
                    a.key,
                    a.value.shown()
                )
            }
            crate::stack::config::ChangeOutcome::NotSupported => {
                anyhow::bail!("profile key {}: not supported by this charger", a.key)
            }
        }
    }
    if let Some(url) = &s.csms_url {
        config
            .set_internal("CsmsUrl", url)
            .with_context(|| format!("CSMS URL '{url}'"))?;
    }
    if let Some(id) = &s.charge_point_id {
        config
            .set_internal("ChargePointId", id)
            .with_context(|| format!("charge point id '{id}'"))?;
    } else if config
        .text(crate::stack::config::TextKey::CHARGE_POINT_ID)
        .is_empty()
    {
        config.set_internal("ChargePointId", "CHARGECTL-EMU-1")?;
    }
    if let Some(key) = &s.authorization_key {
        config
            .set_internal("AuthorizationKey", key.expose())
            .context("AuthorizationKey (must be 32 to 40 hex digits)")?;
    }
    if let Some(p) = &s.basic_auth_password {
        config.set_internal("BasicAuthPassword", p)?;
    }
    if let Some(profile) = s.security_profile {
        if profile >= 1 && config.authorization_key().is_none() {
            anyhow::bail!(
                "security profile {profile} needs an AuthorizationKey (--authorization-key HEX)"
            );
        }
        config
            .set_internal("SecurityProfile", &profile.to_string())
            .with_context(|| format!("security profile {profile} (only 0 or 1)"))?;
    }
    Ok(())
}

fn load_or_make_serial(state_dir: &Path) -> anyhow::Result<String> {
    let path = state_dir.join("identity.json");
    if let Some(bytes) = storage::read_optional(&path)?
        && let Ok(id) = serde_json::from_slice::<IdentityFile>(&bytes)
    {
        return Ok(id.serial_number);
    }
    let serial = format!("ZAP{:06}", rand::random_range(0..1_000_000u32));
    let doc = IdentityFile {
        serial_number: serial.clone(),
    };
    storage::write_atomic(&path, &serde_json::to_vec_pretty(&doc)?)?;
    Ok(serial)
}
