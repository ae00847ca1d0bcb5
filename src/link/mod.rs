//! The serial service link between chargectl and a charger's service port.
//!
//! - [`frame`]: COBS frames with a CRC-32C, `0x00` delimited, a capped decoder that skips
//!   garbage and surfaces console text.
//! - [`codec`]: message bodies and the plain types both sides share.
//! - [`service`]: the charger side, serving a [`service::Backend`].
//! - [`client`]: the tool side, an actor behind a cloneable [`Client`].
//! - [`ports`]: port discovery; [`transport`]: opening a device or `tcp://HOST:PORT`.
//! - [`pty`]: the emulated charger's pseudo-terminal and a line shaper for fault injection.
//! - [`fuzz`]: every decoder of untrusted bytes, callable on a byte slice.
//!
//! The wire protocol is documented in chargectl-serial(7).

pub mod client;
pub mod codec;
pub mod error;
pub mod frame;
pub mod fuzz;
pub mod ports;
pub mod pty;
pub mod service;
pub mod transport;

pub use client::{
    Client, ClientOptions, FlashOptions, FlashPhase, FlashProgress, FlashReport, LinkEvent,
    LogEvent, LogStream,
};
pub use codec::{BootState, ConfigEntry, ConfigRead, DeviceHello, Identity, SetOutcome};
pub use error::{Error, Result};
pub use ports::{PortInfo, PortKind, PortLister, SystemPorts};
pub use service::{Backend, ServiceOptions, serve};
