//! The seam to the data sources: the runtime hands each [`Effect`] to a [`Backend`], which
//! answers with [`Msg`]s through [`Events`]. [`super::live::LiveBackend`] plugs in the serial
//! link client and the emulator; the tests script one of their own.
//!
//! What the TUI expects back for each effect:
//!
//! | effect | messages |
//! | --- | --- |
//! | `ListPorts` | `PortsListed` (or `Error`) |
//! | `Connect` / `StartEmulator` | `Connected`, then a stream of `Log`, `LinesDropped`, `Status`, `Trace` (emulator); `LinkLost` when the session ends by itself |
//! | `Disconnect` | nothing; no message of the old session may follow |
//! | `ReadConfig { request }` | `ConfigRead { request, .. }` with the same `request` |
//! | `ApplyConfig` | one `ConfigApplied` with an outcome per key, in one go |
//! | `LoadProfile` | `ProfileLoaded` (keys, current and new values) or `Error` naming the line |
//! | `InspectImage { request }` | `ImageInspected { request, .. }` or `Error` (context mentions "image") |
//! | `StartFlash` | `FlashProgress`…, then `FlashFinished` or `FlashFailed` |
//! | `Reboot` | `LinkLost`, then `Connected` with the running version |
//! | `Hardware` | `Status` (and the resulting `Trace` frames) |
//! | `StartDryRun { run }` | `DryRun { run, .. }` updates in order, then `DryRunFinished { run, .. }`, or `DryRunFailed { run, .. }` |
//! | `StopDryRun { run }` | nothing itself; the run's `DryRunFinished` follows |
//!
//! `ExportLogs`, `SaveReport` and `Quit` are handled by the runtime itself. Charger log lines go through
//! [`Events::log`], which never blocks and turns lines it cannot queue into a dropped marker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

use super::msg::{Effect, Msg};
use crate::stack::logbook::LogRecord;

/// Work the runtime spawns and supervises (a panic in it ends the TUI cleanly).
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where a backend sends what happened. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl Events {
    /// A bounded channel of `capacity` messages.
    pub fn channel(capacity: usize) -> (Events, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Events {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            rx,
        )
    }

    /// Sends a message in order, waiting for room. Returns false once the TUI has gone.
    pub async fn send(&self, msg: Msg) -> bool {
        self.tx.send(msg).await.is_ok()
    }

    /// Sends without waiting; false if the queue is full or the TUI has gone.
    pub fn try_send(&self, msg: Msg) -> bool {
        self.tx.try_send(msg).is_ok()
    }

    /// Queues a charger log line without ever blocking the producer. Lines that do not fit are
    /// counted and reported as one [`Msg::LinesDropped`] ahead of the next line that fits.
    pub fn log(&self, record: LogRecord) {
        let lost = self.dropped.swap(0, Ordering::AcqRel);
        if lost > 0 && !self.try_send(Msg::LinesDropped(lost)) {
            self.dropped.fetch_add(lost + 1, Ordering::AcqRel);
            return;
        }
        if !self.try_send(Msg::Log(record)) {
            self.dropped.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Log lines lost and not yet reported.
    pub fn pending_drops(&self) -> u64 {
        self.dropped.load(Ordering::Acquire)
    }
}

/// Carries out effects for the runtime.
pub trait Backend: Send + 'static {
    /// Long-lived work of the backend, started once before the first effect and supervised
    /// like any task: when it ends with a panic, the TUI ends with an error. The live backend
    /// returns a watch on its session manager here.
    fn start(&mut self) -> Option<Task> {
        None
    }

    /// Starts one effect. Quick work may send its messages right away; long work is returned as
    /// a [`Task`] for the runtime to spawn. Failures are reported as [`Msg::Error`] or
    /// [`Msg::LinkLost`], never by panicking.
    fn perform(&mut self, effect: Effect, events: &Events) -> Option<Task>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> LogRecord {
        LogRecord {
            seq,
            time: chrono::DateTime::UNIX_EPOCH,
            level: crate::stack::logbook::Level::Info,
            target: "t".into(),
            message: "m".into(),
        }
    }

    #[tokio::test]
    async fn full_queue_turns_log_lines_into_a_dropped_count() {
        let (events, mut rx) = Events::channel(2);
        for seq in 1..=5 {
            events.log(record(seq));
        }
        assert_eq!(events.pending_drops(), 3);
        assert!(matches!(rx.recv().await, Some(Msg::Log(r)) if r.seq == 1));
        assert!(matches!(rx.recv().await, Some(Msg::Log(r)) if r.seq == 2));
        events.log(record(6));
        assert_eq!(rx.recv().await, Some(Msg::LinesDropped(3)));
        assert!(matches!(rx.recv().await, Some(Msg::Log(r)) if r.seq == 6));
        assert_eq!(events.pending_drops(), 0);
    }
}
