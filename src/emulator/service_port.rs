//! The emulated charger's USB service port: the serial link protocol served on a
//! pseudo-terminal (`emulate --serial-link PATH`), backed by the real charge point's
//! configuration (the same rules as OCPP ChangeConfiguration), its log, and its firmware slots.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::firmware::{Slots, VerifyingKey};
use crate::link::ocpp_state::{
    self, Connection, OcppStatus, Registration as WireRegistration, TraceDirection, TraceEntry,
};
use crate::link::{self, BootState, ConfigEntry, ConfigRead, SetOutcome};
use crate::stack::chargepoint::{
    ConnectionState, Direction, Event, FrameTrace, Handle, RebootKind, Registration,
};
use crate::stack::config::{ChangeOutcome, Channel};
use crate::stack::logbook::{LogBook, LogRecord};

use super::Emulator;

/// The charger side of the service port.
pub struct ChargerBackend {
    handle: Handle,
    logbook: LogBook,
    slots: Arc<Mutex<Slots>>,
    trusted: Arc<Vec<VerifyingKey>>,
    vendor: String,
    model: String,
    serial_number: String,
    booted_at: Arc<Mutex<Instant>>,
    /// The last [`TRACE_FRAMES`] OCPP frames, as the events carry them (secrets redacted).
    trace: FrameTrace,
}

/// OCPP frames the charger keeps for its service port's trace.
pub const TRACE_FRAMES: usize = 256;

impl ChargerBackend {
    pub fn new(emulator: &Emulator) -> Arc<ChargerBackend> {
        let booted_at = Arc::new(Mutex::new(Instant::now()));
        let trace = emulator
            .ocpp_trace
            .clone()
            .unwrap_or_else(|| FrameTrace::new(TRACE_FRAMES));
        // Uptime restarts with every reboot of the stack.
        let mut events = emulator.handle.subscribe();
        let reset = booted_at.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::Rebooting { .. }) => {
                        *reset.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Arc::new(ChargerBackend {
            handle: emulator.handle.clone(),
            logbook: emulator.logbook.clone(),
            slots: emulator.slots.clone(),
            trusted: emulator.trusted_keys.clone(),
            vendor: super::VENDOR.into(),
            model: super::MODEL.into(),
            serial_number: emulator.serial_number.clone(),
            booted_at,
            trace,
        })
    }

    fn with_slots<T>(&self, f: impl FnOnce(&mut Slots) -> T) -> T {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut slots)
    }
}

impl link::Backend for ChargerBackend {
    fn identity(&self) -> link::Identity {
        // A host reached the charger over its service link: an image on trial has proven
        // itself.
        super::confirm_trial(&self.slots, &self.logbook, "its service link is up");
        let (active, inactive, boot) =
            self.with_slots(|s| (s.active(), s.inactive(), s.boot_state()));
        let uptime = self
            .booted_at
            .lock()
            .map(|t| t.elapsed().as_secs())
            .unwrap_or(0);
        link::Identity {
            vendor: self.vendor.clone(),
            model: self.model.clone(),
            serial_number: self.serial_number.clone(),
            firmware_version: active.version.clone().unwrap_or_default(),
            active_slot: active.name.to_string(),
            inactive_slot: inactive.name.to_string(),
            inactive_version: inactive.version.clone(),
            uptime_secs: uptime,
            boot_state: match boot {
                crate::firmware::BootState::Normal => BootState::Normal,
                crate::firmware::BootState::Trial { .. } => BootState::Trial,
                crate::firmware::BootState::RolledBack { .. } => BootState::Reverted,
            },
        }
    }

    async fn ocpp_status(&self) -> Option<OcppStatus> {
        let Some(snap) = self.handle.snapshot().await else {
            // The stack is not running (stopping): nothing is connected.
            return Some(OcppStatus {
                connection: Connection::Idle,
                registration: WireRegistration::Unknown,
                csms_url: None,
                failed_attempts: 0,
                last_error: None,
                online_since_ms: None,
            });
        };
        Some(OcppStatus {
            connection: match snap.connection {
                None => Connection::Idle,
                Some(ConnectionState::Connecting) => Connection::Connecting,
                Some(ConnectionState::Connected) => Connection::Connected,
                Some(ConnectionState::Failed) => Connection::Failed,
                Some(ConnectionState::Disconnected) => Connection::Disconnected,
            },
            registration: match snap.registration {
                Registration::Unknown => WireRegistration::Unknown,
                Registration::Pending => WireRegistration::Pending,
                Registration::Accepted => WireRegistration::Accepted,
                Registration::Rejected => WireRegistration::Rejected,
            },
            csms_url: snap.csms_url,
            failed_attempts: snap.failed_attempts,
            last_error: snap.last_error.map(|e| ocpp_state::ConnectError {
                failure: e.failure.as_str().to_string(),
                http_status: e.http_status,
                detail: e.detail,
                at_ms: e.at.timestamp_millis(),
            }),
            online_since_ms: snap.online_since.map(|t| t.timestamp_millis()),
        })
    }

    async fn ocpp_trace(&self) -> Option<Vec<TraceEntry>> {
        Some(
            self.trace
                .records()
                .into_iter()
                .map(|r| TraceEntry {
                    at_ms: r.at_ms,
                    direction: match r.direction {
                        Direction::Sent => TraceDirection::Sent,
                        Direction::Received => TraceDirection::Received,
                    },
                    frame: r.frame,
                })
                .collect(),
        )
    }

    async fn config_get(&self, keys: Vec<String>) -> ConfigRead {
        let (entries, unknown) = self.handle.config_get(keys, Channel::Service).await;
        ConfigRead {
            entries: entries
                .into_iter()
                .map(|e| ConfigEntry {
                    key: e.key,
                    value: if e.write_only { None } else { e.value },
                    readonly: e.readonly,
                    write_only: e.write_only,
                    value_type: e.value_type,
                    reboot_required: e.reboot_required,
                })
                .collect(),
            unknown,
        }
    }

    async fn config_set(&self, key: String, value: String) -> SetOutcome {
        match self.handle.config_set(key, value, Channel::Service).await {
            ChangeOutcome::Accepted => SetOutcome::Accepted,
            ChangeOutcome::RebootRequired => SetOutcome::RebootRequired,
            ChangeOutcome::Rejected(why) => SetOutcome::Rejected(why),
            ChangeOutcome::NotSupported => SetOutcome::NotSupported,
        }
    }

    fn log_subscribe(&self) -> (Vec<LogRecord>, broadcast::Receiver<LogRecord>) {
        self.logbook.subscribe()
    }

    async fn reboot(&self) {
        self.handle.reboot(RebootKind::Service).await;
    }

    async fn flash_begin(
        &self,
        sha256: [u8; 32],
        size: u64,
        header: Vec<u8>,
    ) -> Result<u64, String> {
        // Fail fast on an image this charger would refuse anyway.
        let parsed = crate::firmware::parse_header(&header).map_err(|e| e.to_string())?;
        if parsed.image_len() != size {
            return Err(format!(
                "the image header announces {} bytes but the transfer has {size}",
                parsed.image_len()
            ));
        }
        let slots = self.slots.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut s = slots.lock().unwrap_or_else(|e| e.into_inner());
            s.begin(sha256, size)
        })
        .await
        .map_err(|e| e.to_string())?;
        match &result {
            Ok(offset) if *offset > 0 => self.logbook.info(
                "flash",
                format!("resuming a firmware transfer at byte {offset} of {size}"),
            ),
            Ok(_) => self.logbook.info(
                "flash",
                format!(
                    "receiving firmware {} ({size} bytes)",
                    parsed.firmware_version
                ),
            ),
            Err(e) => self
                .logbook
                .warn("flash", format!("firmware transfer refused: {e}")),
        }
        result.map_err(|e| e.to_string())
    }

    async fn flash_write(&self, offset: u64, data: Vec<u8>) -> Result<u64, String> {
        let slots = self.slots.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = slots.lock().unwrap_or_else(|e| e.into_inner());
            s.write(offset, &data)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }

    async fn flash_finish(&self) -> Result<String, String> {
        let slots = self.slots.clone();
        let trusted = self.trusted.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut s = slots.lock().unwrap_or_else(|e| e.into_inner());
            s.finish(&trusted)
        })
        .await
        .map_err(|e| e.to_string())?;
        match result {
            Ok(header) => {
                self.logbook.info(
                    "flash",
                    format!(
                        "firmware {} verified; it boots at the next reboot",
                        header.firmware_version
                    ),
                );
                Ok(header.firmware_version)
            }
            Err(e) => {
                let message = match e {
                    crate::firmware::Error::UntrustedKey { .. }
                    | crate::firmware::Error::NoTrustedKeys => {
                        format!(
                            "image refused: {e} (start the charger with --trust-key for the signing key)"
                        )
                    }
                    other => format!("image refused: {other}"),
                };
                self.logbook.error("flash", message.clone());
                Err(message)
            }
        }
    }
}

/// A running service port on a pseudo-terminal. Dropping it stops serving and removes the link.
pub struct ServicePort {
    port: link::pty::PtyPort,
    task: tokio::task::JoinHandle<()>,
    backend: Arc<ChargerBackend>,
    shaper: link::pty::LineShaper,
}

impl ServicePort {
    /// Opens a pseudo-terminal, makes `link_path` a symlink to it, and serves the protocol.
    pub fn open(
        link_path: &Path,
        backend: Arc<ChargerBackend>,
        shaper: link::pty::LineShaper,
    ) -> link::Result<ServicePort> {
        let (port, stream) = link::pty::open(link_path)?;
        let task = spawn_service(stream, backend.clone(), shaper);
        Ok(ServicePort {
            port,
            task,
            backend,
            shaper,
        })
    }

    /// The device the link points at now.
    pub fn device(&self) -> PathBuf {
        self.port.slave_path().to_path_buf()
    }

    /// Simulates a USB unplug and replug: a new pseudo-terminal, the link re-pointed at it.
    pub fn replug(&mut self) -> link::Result<PathBuf> {
        self.task.abort();
        let stream = self.port.replug()?;
        self.task = spawn_service(stream, self.backend.clone(), self.shaper);
        Ok(self.device())
    }
}

impl Drop for ServicePort {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn spawn_service(
    stream: tokio_serial::SerialStream,
    backend: Arc<ChargerBackend>,
    shaper: link::pty::LineShaper,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let opts = link::ServiceOptions::default();
        let result = if shaper.is_transparent() {
            link::serve(stream, backend, opts).await
        } else {
            let (shaped, pump) = shaper.wrap(stream);
            let r = link::serve(shaped, backend, opts).await;
            pump.abort();
            r
        };
        if let Err(e) = result {
            tracing::warn!("service port stopped: {e}");
        }
    })
}
