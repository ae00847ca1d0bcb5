//! The charger's hardware as the stack sees it: inputs arrive as [`HwEvent`]s, outputs and
//! readings go through the [`Hardware`] trait. The emulator simulates it; a real charger would
//! implement it over its drivers.

use serde::{Deserialize, Serialize};

/// Something the hardware reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum HwEvent {
    /// An EV cable was plugged into the socket.
    Plug,
    /// The EV cable was unplugged.
    Unplug,
    /// An RFID card was presented to the reader.
    Card { id_tag: String },
    /// The EV changes how much current it asks for (amperes per phase; 0 = EV suspends).
    EvDemand { amps: f64 },
    /// The charger detects a fault (an OCPP ChargePointErrorCode such as GroundFailure).
    Fault {
        error_code: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        info: Option<String>,
    },
    /// The fault is gone.
    ClearFault,
    /// The charger's network (LTE or Wi-Fi) is lost: the connection drops without a WebSocket
    /// close frame and nothing is attempted until the network comes back.
    NetworkLost,
    /// The network is back: the charger reconnects at once.
    NetworkRestored,
}

/// A meter reading: the built-in energy meter and sensors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct MeterReading {
    /// Energy.Active.Import.Register in Wh, monotonic over the charger's life.
    pub energy_wh: f64,
    /// Current.Import per phase L1..L3 in A.
    pub current_a: [f64; 3],
    /// Voltage per phase L1-N..L3-N in V.
    pub voltage_v: [f64; 3],
    /// Current.Offered to the EV in A (the pilot signal).
    pub offered_a: f64,
    /// Temperature inside the charger in degrees Celsius.
    pub temperature_c: f64,
}

/// What the stack drives and reads.
pub trait Hardware: Send + Sync + 'static {
    /// Current meter and sensor values.
    fn meter(&self) -> MeterReading;
    /// Sets the current the EV may draw (0 suspends charging).
    fn set_offered_current(&self, amps: f64);
    /// Locks or unlocks the cable in the socket.
    fn set_cable_lock(&self, locked: bool);
    /// Whether an EV cable is plugged in now (read at boot).
    fn plugged(&self) -> bool;
}
