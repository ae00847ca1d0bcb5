//! Simulated charger hardware: one Type 2 socket, an EV that may be plugged in and asks for a
//! current, a cable lock, and an energy meter that integrates the current actually drawn
//! (EV demand limited by the offered current). The energy register is persisted, so it stays
//! monotonic across restarts.

use parking_lot_free::Mutex;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokio::time::Instant;

use crate::stack::hardware::{Hardware, MeterReading};
use crate::storage;

mod parking_lot_free {
    /// A std mutex that shrugs off poisoning: the simulated hardware's state stays usable even if
    /// a panicking thread held the lock.
    pub struct Mutex<T>(std::sync::Mutex<T>);
    impl<T> Mutex<T> {
        pub fn new(v: T) -> Self {
            Self(std::sync::Mutex::new(v))
        }
        pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

const METER_FILE: &str = "meter.json";
/// Nominal phase voltage of the simulated grid.
pub const NOMINAL_VOLTAGE: f64 = 230.0;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct MeterFile {
    energy_wh: f64,
    plugged: bool,
    ev_demand_a: f64,
}

#[derive(Debug)]
struct State {
    plugged: bool,
    ev_demand_a: f64,
    offered_a: f64,
    locked: bool,
    phases: u8,
    energy_wh: f64,
    last_update: Instant,
    last_persist_wh: f64,
}

/// The simulated hardware, shared between the stack (through [`Hardware`]) and the emulator's
/// controls.
pub struct SimHardware {
    state: Mutex<State>,
    file: Option<PathBuf>,
    /// fsync the meter file on every write (one charger); a fleet's chargers only replace it
    /// atomically, which a killed process cannot tear either.
    durable: bool,
}

impl SimHardware {
    /// Loads the persisted meter register and plug state from `state_dir` (or starts at zero).
    pub fn open(state_dir: Option<&Path>) -> SimHardware {
        let file = state_dir.map(|d| d.join(METER_FILE));
        let saved: MeterFile = file
            .as_ref()
            .and_then(|f| storage::read_optional(f).ok().flatten())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        SimHardware {
            state: Mutex::new(State {
                plugged: saved.plugged,
                ev_demand_a: if saved.ev_demand_a > 0.0 {
                    saved.ev_demand_a
                } else {
                    16.0
                },
                offered_a: 0.0,
                locked: false,
                phases: 3,
                energy_wh: saved.energy_wh.max(0.0),
                last_update: Instant::now(),
                last_persist_wh: saved.energy_wh,
            }),
            file,
            durable: true,
        }
    }

    /// Like [`SimHardware::open`] for a charger of a fleet: the meter file is replaced
    /// atomically but without waiting for the disk (a killed process cannot tear it; an
    /// operating system crash may lose the last change of the simulated meter).
    pub fn open_lazy(state_dir: &Path) -> SimHardware {
        SimHardware {
            durable: false,
            ..SimHardware::open(Some(state_dir))
        }
    }

    /// Sets the persisted energy register in `state_dir` to `energy_wh` before the charger
    /// boots (an emulated charger that matches one in service). Plug state and EV demand stay.
    pub fn write_register(state_dir: &Path, energy_wh: f64) -> std::io::Result<()> {
        if !energy_wh.is_finite() || energy_wh < 0.0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("meter register {energy_wh} Wh: must be 0 or more"),
            ));
        }
        let path = state_dir.join(METER_FILE);
        let mut doc: MeterFile = storage::read_optional(&path)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        doc.energy_wh = energy_wh;
        let bytes = serde_json::to_vec(&doc).map_err(std::io::Error::other)?;
        storage::write_doc("meter", &path, &bytes)
    }

    fn integrate(s: &mut State) {
        let now = Instant::now();
        let dt = now.saturating_duration_since(s.last_update).as_secs_f64();
        s.last_update = now;
        let amps = Self::drawn(s);
        s.energy_wh += amps * NOMINAL_VOLTAGE * s.phases as f64 * dt / 3600.0;
    }

    fn drawn(s: &State) -> f64 {
        if s.plugged {
            s.ev_demand_a.min(s.offered_a).max(0.0)
        } else {
            0.0
        }
    }

    fn persist(&self, s: &mut State) {
        if let Some(f) = &self.file {
            let doc = MeterFile {
                energy_wh: s.energy_wh,
                plugged: s.plugged,
                ev_demand_a: s.ev_demand_a,
            };
            if let Ok(bytes) = serde_json::to_vec(&doc) {
                let written = if self.durable {
                    storage::write_doc("meter", f, &bytes)
                } else {
                    replace_quickly(f, &bytes)
                };
                if let Err(e) = written {
                    tracing::warn!("cannot persist the meter register: {e}");
                } else {
                    s.last_persist_wh = s.energy_wh;
                }
            }
        }
    }

    pub fn set_plugged(&self, plugged: bool) {
        let mut s = self.state.lock();
        Self::integrate(&mut s);
        s.plugged = plugged;
        self.persist(&mut s);
    }

    pub fn set_ev_demand(&self, amps: f64) {
        let mut s = self.state.lock();
        Self::integrate(&mut s);
        s.ev_demand_a = amps.clamp(0.0, 80.0);
        self.persist(&mut s);
    }

    /// Current the EV actually draws now (per phase).
    pub fn drawn_current(&self) -> f64 {
        let s = self.state.lock();
        Self::drawn(&s)
    }

    pub fn cable_locked(&self) -> bool {
        self.state.lock().locked
    }

    /// Writes the register to disk now (on shutdown).
    pub fn flush(&self) {
        let mut s = self.state.lock();
        Self::integrate(&mut s);
        self.persist(&mut s);
    }
}

/// Writes `bytes` beside `path` and renames it over `path`, without fsync.
fn replace_quickly(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    // Trading places keeps the previous version's file for the next write, instead of
    // creating (and deleting) a file each time.
    storage::swap_into_place(&tmp, path)
}

impl Hardware for SimHardware {
    fn meter(&self) -> MeterReading {
        let mut s = self.state.lock();
        Self::integrate(&mut s);
        // Persist at least every 10 Wh so a power loss loses little of the register.
        if s.energy_wh - s.last_persist_wh >= 10.0 {
            self.persist(&mut s);
        }
        let amps = Self::drawn(&s);
        let per_phase = |i: u8| if i < s.phases { amps } else { 0.0 };
        MeterReading {
            energy_wh: s.energy_wh,
            current_a: [per_phase(0), per_phase(1), per_phase(2)],
            voltage_v: [NOMINAL_VOLTAGE; 3],
            offered_a: s.offered_a,
            temperature_c: 24.0 + amps * 0.25,
        }
    }

    fn set_offered_current(&self, amps: f64) {
        let mut s = self.state.lock();
        Self::integrate(&mut s);
        s.offered_a = amps.max(0.0);
    }

    fn set_cable_lock(&self, locked: bool) {
        self.state.lock().locked = locked;
    }

    fn plugged(&self) -> bool {
        self.state.lock().plugged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn energy_integrates_drawn_current_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let hw = SimHardware::open(Some(dir.path()));
        hw.set_plugged(true);
        hw.set_ev_demand(10.0);
        hw.set_offered_current(16.0);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let m = hw.meter();
        // 10 A x 230 V x 3 phases x 1 h = 6900 Wh
        assert!((m.energy_wh - 6900.0).abs() < 0.01, "{}", m.energy_wh);
        // Offered below demand limits the draw.
        hw.set_offered_current(6.0);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!((hw.meter().energy_wh - (6900.0 + 4140.0)).abs() < 0.01);
        hw.flush();
        let again = SimHardware::open(Some(dir.path()));
        assert!((again.meter().energy_wh - 11040.0).abs() < 0.01);
        assert!(again.plugged());
    }

    #[tokio::test(start_paused = true)]
    async fn the_register_can_start_at_a_given_value_and_keeps_the_plug_state() {
        let dir = tempfile::tempdir().unwrap();
        SimHardware::write_register(dir.path(), 1_234_567.0).unwrap();
        let hw = SimHardware::open(Some(dir.path()));
        assert_eq!(hw.meter().energy_wh, 1_234_567.0);
        hw.set_plugged(true);
        hw.set_ev_demand(10.0);
        hw.set_offered_current(16.0);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        hw.flush();
        SimHardware::write_register(dir.path(), 2_000_000.0).unwrap();
        let again = SimHardware::open(Some(dir.path()));
        assert_eq!(again.meter().energy_wh, 2_000_000.0);
        assert!(again.plugged());
        assert!(SimHardware::write_register(dir.path(), -1.0).is_err());
        assert!(SimHardware::write_register(dir.path(), f64::NAN).is_err());
    }
}
