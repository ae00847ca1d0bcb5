//! The charger's own log: what the serial link streams, what `GetDiagnostics` uploads.
//!
//! A bounded ring of [`LogRecord`]s with a sequence number per record (so a reader can tell it
//! missed some), a level and the charger's timestamp. Subscribers get new records through a
//! broadcast channel; a slow subscriber loses records and sees the gap in the sequence numbers,
//! the producer is never blocked.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

use super::clock::SharedClock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    pub fn from_u8(v: u8) -> Option<Level> {
        Some(match v {
            0 => Level::Trace,
            1 => Level::Debug,
            2 => Level::Info,
            3 => Level::Warn,
            4 => Level::Error,
            _ => return None,
        })
    }

    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "trace" => Ok(Level::Trace),
            "debug" => Ok(Level::Debug),
            "info" => Ok(Level::Info),
            "warn" | "warning" => Ok(Level::Warn),
            "error" => Ok(Level::Error),
            other => Err(format!(
                "unknown log level '{other}' (expected trace, debug, info, warn or error)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Sequence number since boot, starting at 1, without gaps at the source.
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub level: Level,
    /// Subsystem, such as `ocpp`, `meter`, `link`.
    pub target: String,
    pub message: String,
}

/// Shared handle to the charger's log.
#[derive(Clone)]
pub struct LogBook {
    inner: Arc<Mutex<Inner>>,
    tx: broadcast::Sender<LogRecord>,
    clock: SharedClock,
}

struct Inner {
    next_seq: u64,
    capacity: usize,
    ring: VecDeque<LogRecord>,
    storage: Option<StorageProblem>,
}

/// Writes to the charger's storage are failing (a full, read-only or broken disk): since when,
/// the latest error, and how many writes failed. The charger keeps running from memory; what
/// it could not write is lost only if the power goes before the disk recovers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageProblem {
    pub since: DateTime<Utc>,
    /// The latest failure: what was being written and the error.
    pub error: String,
    pub failures: u64,
}

impl LogBook {
    /// A log keeping the last `capacity` records, with a live channel of 4096 slots (one
    /// charger whose log is followed line by line).
    pub fn new(capacity: usize, clock: SharedClock) -> Self {
        Self::with_channel(capacity, 4096, clock)
    }

    /// A log whose live channel holds `channel` records: a charge point among thousands in one
    /// process takes a small one, since the channel's slots are allocated up front.
    pub fn with_channel(capacity: usize, channel: usize, clock: SharedClock) -> Self {
        let (tx, _) = broadcast::channel(channel.max(1));
        Self {
            inner: Arc::new(Mutex::new(Inner {
                next_seq: 1,
                capacity: capacity.max(1),
                ring: VecDeque::new(),
                storage: None,
            })),
            tx,
            clock,
        }
    }

    pub fn log(&self, level: Level, target: &str, message: impl Into<String>) {
        let message = message.into();
        let record = {
            let mut inner = crate::sync::lock(&self.inner);
            let record = LogRecord {
                seq: inner.next_seq,
                time: self.clock.now(),
                level,
                target: target.to_string(),
                message,
            };
            inner.next_seq += 1;
            if inner.ring.len() == inner.capacity {
                inner.ring.pop_front();
            }
            inner.ring.push_back(record.clone());
            record
        };
        tracing::debug!(target: "charger", seq = record.seq, level = record.level.as_str(), "{}", record.message);
        let _ = self.tx.send(record);
    }

    pub fn info(&self, target: &str, message: impl Into<String>) {
        self.log(Level::Info, target, message)
    }

    pub fn warn(&self, target: &str, message: impl Into<String>) {
        self.log(Level::Warn, target, message)
    }

    pub fn error(&self, target: &str, message: impl Into<String>) {
        self.log(Level::Error, target, message)
    }

    pub fn debug(&self, target: &str, message: impl Into<String>) {
        self.log(Level::Debug, target, message)
    }

    /// A write of `what` to storage failed: logged as an error (target `storage`) and kept as
    /// the charger's storage problem until a write succeeds again.
    pub fn storage_failed(&self, what: &str, error: &dyn std::fmt::Display) {
        let message = format!("cannot write {what}: {error}");
        {
            let now = self.clock.now();
            let mut inner = crate::sync::lock(&self.inner);
            let p = inner.storage.get_or_insert_with(|| StorageProblem {
                since: now,
                error: String::new(),
                failures: 0,
            });
            p.error = message.clone();
            p.failures += 1;
        }
        self.error("storage", message);
    }

    /// A write to storage succeeded: a storage problem, if any, is over.
    pub fn storage_ok(&self) {
        let was = crate::sync::lock(&self.inner).storage.take();
        if let Some(p) = was {
            self.info(
                "storage",
                format!(
                    "storage writes succeed again ({} failed since {})",
                    p.failures,
                    p.since.format("%Y-%m-%dT%H:%M:%SZ")
                ),
            );
        }
    }

    /// The storage problem in force, if any.
    pub fn storage_problem(&self) -> Option<StorageProblem> {
        crate::sync::lock(&self.inner).storage.clone()
    }

    /// Records still held, oldest first.
    pub fn history(&self) -> Vec<LogRecord> {
        let inner = crate::sync::lock(&self.inner);
        inner.ring.iter().cloned().collect()
    }

    /// History plus a receiver for what comes after it, with no gap and no duplicate between them.
    pub fn subscribe(&self) -> (Vec<LogRecord>, broadcast::Receiver<LogRecord>) {
        let inner = crate::sync::lock(&self.inner);
        let rx = self.tx.subscribe();
        (inner.ring.iter().cloned().collect(), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::clock::TokioClock;

    #[tokio::test]
    async fn ring_is_bounded_and_sequence_continues() {
        let book = LogBook::new(3, Arc::new(TokioClock::new()));
        for i in 0..5 {
            book.info("test", format!("line {i}"));
        }
        let h = book.history();
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].seq, 3);
        assert_eq!(h[2].message, "line 4");
        let (hist, mut rx) = book.subscribe();
        assert_eq!(hist.len(), 3);
        book.warn("test", "after");
        let r = rx.recv().await.unwrap();
        assert_eq!((r.seq, r.level), (6, Level::Warn));
    }

    #[tokio::test]
    async fn storage_problem_is_kept_until_a_write_succeeds() {
        let book = LogBook::new(10, Arc::new(TokioClock::new()));
        assert_eq!(book.storage_problem(), None);
        book.storage_ok();
        assert!(
            book.history().is_empty(),
            "nothing to say while storage is fine"
        );
        let e = std::io::Error::from_raw_os_error(28);
        book.storage_failed("the transaction journal", &e);
        book.storage_failed("reservation.json", &e);
        let p = book.storage_problem().unwrap();
        assert_eq!(p.failures, 2);
        assert!(
            p.error.starts_with("cannot write reservation.json: "),
            "{p:?}"
        );
        let h = book.history();
        assert_eq!(h.len(), 2);
        assert_eq!(
            (h[0].level, h[0].target.as_str()),
            (Level::Error, "storage")
        );
        book.storage_ok();
        assert_eq!(book.storage_problem(), None);
        assert!(
            book.history()[2]
                .message
                .contains("succeed again (2 failed")
        );
    }
}
