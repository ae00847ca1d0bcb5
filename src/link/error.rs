//! Errors of the serial service link. Each variant names the port, key, offset or byte at
//! fault, so the message alone tells an installer what to do.

use std::io;

/// Result alias used throughout `link`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such port {port}")]
    NoSuchPort { port: String },
    #[error("{port} is in use by another program (close it, or check `fuser {port}`)")]
    Busy { port: String },
    #[error(
        "permission denied opening {port}: add yourself to the `{group}` group (`sudo usermod -aG {group} $USER`, then log in again)"
    )]
    PermissionDenied { port: String, group: String },
    #[error("cannot open {port}: {message}")]
    Open { port: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "the charger on {port} does not answer (no HELLO after {attempts} tries): check the cable and that the charger is powered"
    )]
    NoAnswer { port: String, attempts: u32 },
    #[error(
        "the charger on {port} speaks service protocol {device} but this tool speaks {min}..={max}"
    )]
    Incompatible {
        port: String,
        device: u8,
        min: u8,
        max: u8,
    },
    #[error("the charger refused: {reason}")]
    Refused { reason: String },
    #[error("the charger rejected the firmware image: {reason}")]
    FlashRejected { reason: String },
    #[error("no answer to {what} within {secs:.1} s")]
    Timeout { what: String, secs: f64 },
    #[error("lost the connection to {port} and could not reconnect: {reason}")]
    Disconnected { port: String, reason: String },
    #[error(
        "the link to {port} is reconnecting and already holds as many requests as it queues; try again when it is back"
    )]
    Reconnecting { port: String },
    #[error("reconnected on {port} but found charger {found} instead of {expected}")]
    WrongCharger {
        port: String,
        expected: String,
        found: String,
    },
    #[error("malformed {what} at byte {offset}")]
    Malformed { what: &'static str, offset: usize },
    #[error("unexpected answer to {what}: {detail}")]
    Protocol { what: &'static str, detail: String },
    #[error("firmware transfer stalled at byte {offset} of {total}: no progress for {secs:.0} s")]
    Stalled { offset: u64, total: u64, secs: f64 },
    #[error("{0}")]
    InvalidInput(String),
    #[error("the link to the charger is closed")]
    Closed,
    #[error("pseudo-terminal: {what}: {message}")]
    Pty { what: String, message: String },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// True for errors that mean the charger could not be reached at all (as opposed to a
    /// charger that answered and refused).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Error::NoSuchPort { .. }
                | Error::Busy { .. }
                | Error::PermissionDenied { .. }
                | Error::Open { .. }
                | Error::Io { .. }
                | Error::NoAnswer { .. }
                | Error::Incompatible { .. }
                | Error::Timeout { .. }
                | Error::Disconnected { .. }
                | Error::Reconnecting { .. }
                | Error::WrongCharger { .. }
                | Error::Stalled { .. }
                | Error::Closed
        )
    }
}
