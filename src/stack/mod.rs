//! The charger stack: everything the charger's firmware does, with no terminal code and no
//! knowledge of the emulator. Hardware, clock, storage and transport are traits or plain values
//! handed in, so the same stack could run on a charger.

pub mod auth;
pub mod chargepoint;
pub mod clock;
pub mod config;
pub mod connection;
pub mod hardware;
pub mod identity;
pub mod journal;
pub mod local_list;
pub mod logbook;
pub mod messages;
pub mod rpc;
pub mod secret;
pub mod smart_charging;
pub mod transfer;
pub mod transport;
