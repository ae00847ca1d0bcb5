//! The sandbox CSMS: a small embedded OCPP 1.6J central system. `chargectl emulate` uses it when
//! no CSMS is chosen, `chargectl csms` runs it on its own, and tests script, stop and restart it.
//!
//! - accepts any charge point id on any path (the id is the last path segment), negotiates the
//!   `ocpp1.6` subprotocol, records HTTP Basic credentials (never the password) and can require
//!   them; plain `ws://` or `wss://` with a given rustls configuration;
//! - answers every charge point message schema-valid, as scripted by a shared [`Policy`];
//! - calls charge points ([`SandboxHandle::call`]);
//! - reports [`CsmsEvent`]s on a broadcast channel and keeps them in an in-memory log that
//!   [`SandboxHandle::wait_for`] searches;
//! - counts what it does ([`SandboxHandle::stats`]); for load tests
//!   ([`SandboxOptions::record_frames`] off) frames are only counted, not recorded.
//!
//! It is built for a boot storm of thousands of charge points on one runtime: one task per
//! connection and nothing else per connection until it is needed, 4 KiB WebSocket read buffers,
//! no shared lock taken per frame (the policy is read through a versioned snapshot), a large
//! listen backlog, and the open-file limit raised by [`raise_open_file_limit`].

mod events;
mod policy;
mod server;

pub use crate::rlimit::{OpenFileLimit, RESERVED_DESCRIPTORS, raise_open_file_limit};
pub use events::{BasicAuthSeen, CsmsEvent, Direction, EventKind, WaitTimeout};
pub use policy::{
    AuthorizationStatus, IdTagInfo, Policy, RegistrationStatus, Reply, TransactionIds, answer,
    reply,
};
pub use server::{
    CallError, SUBPROTOCOL, Sandbox, SandboxError, SandboxHandle, SandboxOptions, SandboxStats,
};
