//! The fleet's live counters: gauges (connected, booted, charging), message and error counts,
//! and latency histograms (boot, CALL round trip), fed by each charge point's [`CpProbe`] as
//! things happen. [`FleetStats::summary`] takes a [`Summary`], the document behind the terminal
//! view, the TUI panel and the `{"type":"fleet"}` JSON lines.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::time::Instant;

use crate::stack::chargepoint::{
    CallOutcome, ConnectionState, Direction, Event, Probe, Registration,
};
use crate::stack::messages::ChargePointStatus;

/// Latencies are recorded in microseconds, up to an hour, to three significant digits.
fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 3_600_000_000, 3) {
        Ok(h) => h,
        // The bounds and the precision are constants hdrhistogram accepts.
        Err(e) => unreachable!("histogram bounds: {e}"),
    }
}

/// A histogram's lock; a panicked holder leaves counts that are still usable.
fn lock(m: &Mutex<Histogram<u64>>) -> std::sync::MutexGuard<'_, Histogram<u64>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counters shared by every charge point of a fleet.
pub struct FleetStats {
    started_at: Instant,
    count: u64,
    started: AtomicU64,
    connected: AtomicI64,
    booted: AtomicI64,
    charging: AtomicI64,
    sent: AtomicU64,
    received: AtomicU64,
    connect_failures: AtomicU64,
    disconnects: AtomicU64,
    call_errors: AtomicU64,
    timeouts: AtomicU64,
    rejected: AtomicU64,
    sessions_started: AtomicU64,
    sessions_done: AtomicU64,
    /// Microseconds from the start until every charge point was booted at once.
    all_booted_us: AtomicU64,
    /// While the fleet stops, closed connections are not errors.
    stopping: AtomicBool,
    boot: Mutex<Histogram<u64>>,
    call: Mutex<Histogram<u64>>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// How many latencies were recorded.
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// OCPP messages (frames) of the whole fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Messages {
    pub sent: u64,
    pub received: u64,
}

/// What went wrong, by kind; `errors` in [`Summary`] is their sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorKinds {
    /// Connection attempts that failed (refused, timed out, handshake refused).
    pub connect: u64,
    /// Connections lost while the fleet ran.
    pub disconnect: u64,
    /// CALLs of a charge point answered with a CALLERROR.
    pub call_error: u64,
    /// CALLs of a charge point not answered within MessageTimeout.
    pub timeout: u64,
    /// BootNotifications answered Rejected.
    pub rejected: u64,
}

impl ErrorKinds {
    pub fn total(&self) -> u64 {
        self.connect + self.disconnect + self.call_error + self.timeout + self.rejected
    }
}

/// Sessions the driver started and saw finish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sessions {
    pub started: u64,
    pub completed: u64,
}

/// One look at the fleet (`{"type":"fleet","data":<this>}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Charge points this process runs (its shard of the fleet).
    pub count: u64,
    /// Charge points started so far (below `count` while a ramp runs).
    pub started: u64,
    pub connected: u64,
    /// Charge points whose BootNotification was accepted.
    pub booted: u64,
    /// Charge points whose connector is Charging.
    pub charging: u64,
    pub messages: Messages,
    pub errors: u64,
    pub error_kinds: ErrorKinds,
    pub sessions: Sessions,
    /// From a charge point's start (its slot in the ramp) until its BootNotification was
    /// accepted.
    pub boot_ms: Percentiles,
    /// From sending a CALL until its answer, for every CALL of every charge point.
    pub call_ms: Percentiles,
    /// Seconds since the fleet started.
    pub elapsed_s: f64,
    /// Seconds from the start until all `count` were booted at once, once they were.
    pub all_booted_s: Option<f64>,
}

impl FleetStats {
    pub fn new(count: u64) -> FleetStats {
        FleetStats {
            started_at: Instant::now(),
            count,
            started: AtomicU64::new(0),
            connected: AtomicI64::new(0),
            booted: AtomicI64::new(0),
            charging: AtomicI64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            call_errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            sessions_started: AtomicU64::new(0),
            sessions_done: AtomicU64::new(0),
            all_booted_us: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            boot: Mutex::new(histogram()),
            call: Mutex::new(histogram()),
        }
    }

    pub fn summary(&self) -> Summary {
        let gauge = |a: &AtomicI64| a.load(Relaxed).max(0) as u64;
        let error_kinds = ErrorKinds {
            connect: self.connect_failures.load(Relaxed),
            disconnect: self.disconnects.load(Relaxed),
            call_error: self.call_errors.load(Relaxed),
            timeout: self.timeouts.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
        };
        let all_booted = self.all_booted_us.load(Relaxed);
        Summary {
            count: self.count,
            started: self.started.load(Relaxed),
            connected: gauge(&self.connected),
            booted: gauge(&self.booted),
            charging: gauge(&self.charging),
            messages: Messages {
                sent: self.sent.load(Relaxed),
                received: self.received.load(Relaxed),
            },
            errors: error_kinds.total(),
            error_kinds,
            sessions: Sessions {
                started: self.sessions_started.load(Relaxed),
                completed: self.sessions_done.load(Relaxed),
            },
            boot_ms: Percentiles::of(&lock(&self.boot)),
            call_ms: Percentiles::of(&lock(&self.call)),
            elapsed_s: self.started_at.elapsed().as_secs_f64(),
            all_booted_s: (all_booted > 0).then(|| all_booted as f64 / 1e6),
        }
    }

    /// From now on lost connections are the fleet stopping, not errors.
    pub fn stopping(&self) {
        self.stopping.store(true, Relaxed);
    }

    pub(super) fn session_started(&self) {
        self.sessions_started.fetch_add(1, Relaxed);
    }

    pub(super) fn session_done(&self) {
        self.sessions_done.fetch_add(1, Relaxed);
    }

    pub(super) fn charge_point_started(&self) {
        self.started.fetch_add(1, Relaxed);
    }
}

const CONNECTED: u8 = 1;
const BOOTED: u8 = 2;
const CHARGING: u8 = 4;

/// One charge point's probe: turns its events into changes of the fleet's gauges.
pub struct CpProbe {
    fleet: std::sync::Arc<FleetStats>,
    flags: AtomicU8,
    /// Microseconds since the fleet started when this boot began (0: boot latency recorded).
    boot_from_us: AtomicU64,
}

impl CpProbe {
    pub fn new(fleet: std::sync::Arc<FleetStats>) -> CpProbe {
        let probe = CpProbe {
            fleet,
            flags: AtomicU8::new(0),
            boot_from_us: AtomicU64::new(0),
        };
        probe.restart_boot_clock();
        probe
    }

    fn now_us(&self) -> u64 {
        (self.fleet.started_at.elapsed().as_micros() as u64).max(1)
    }

    fn restart_boot_clock(&self) {
        self.boot_from_us.store(self.now_us(), Relaxed);
    }

    pub fn is_booted(&self) -> bool {
        self.flags.load(Relaxed) & BOOTED != 0
    }

    /// Sets or clears `flag`, moving `gauge` when it changed.
    fn set(&self, flag: u8, on: bool, gauge: &AtomicI64) -> bool {
        let before = if on {
            self.flags.fetch_or(flag, Relaxed)
        } else {
            self.flags.fetch_and(!flag, Relaxed)
        };
        let was = before & flag != 0;
        if was != on {
            gauge.fetch_add(if on { 1 } else { -1 }, Relaxed);
            true
        } else {
            false
        }
    }

    /// The charge point stopped for good: it no longer counts as connected, booted or charging.
    pub fn gone(&self) {
        let f = &self.fleet;
        self.set(CONNECTED, false, &f.connected);
        self.set(BOOTED, false, &f.booted);
        self.set(CHARGING, false, &f.charging);
    }
}

impl Probe for CpProbe {
    fn event(&self, event: &Event) {
        let f = &self.fleet;
        match event {
            Event::Connection { state, .. } => match state {
                ConnectionState::Connected => {
                    self.set(CONNECTED, true, &f.connected);
                }
                ConnectionState::Failed => {
                    if !f.stopping.load(Relaxed) {
                        f.connect_failures.fetch_add(1, Relaxed);
                    }
                }
                ConnectionState::Disconnected => {
                    if self.set(CONNECTED, false, &f.connected) && !f.stopping.load(Relaxed) {
                        f.disconnects.fetch_add(1, Relaxed);
                    }
                }
                ConnectionState::Connecting => {}
            },
            Event::Registration { status } => match status {
                Registration::Accepted => {
                    if self.set(BOOTED, true, &f.booted) {
                        let from = self.boot_from_us.swap(0, Relaxed);
                        if from > 0 {
                            let us = self.now_us().saturating_sub(from).max(1);
                            lock(&f.boot).saturating_record(us);
                        }
                        let booted = f.booted.load(Relaxed);
                        if booted >= 0 && booted as u64 == f.count {
                            let _ = f.all_booted_us.compare_exchange(
                                0,
                                self.now_us(),
                                Relaxed,
                                Relaxed,
                            );
                        }
                    }
                }
                Registration::Rejected => {
                    f.rejected.fetch_add(1, Relaxed);
                }
                Registration::Pending | Registration::Unknown => {}
            },
            Event::Status {
                connector_id,
                status,
                ..
            } => {
                if *connector_id == 1 {
                    self.set(
                        CHARGING,
                        *status == ChargePointStatus::Charging,
                        &f.charging,
                    );
                }
            }
            Event::Rebooting { .. } => {
                self.set(BOOTED, false, &f.booted);
                self.set(CHARGING, false, &f.charging);
                self.restart_boot_clock();
            }
            Event::Message { .. } => {}
        }
    }

    fn frame(&self, direction: Direction) {
        match direction {
            Direction::Sent => self.fleet.sent.fetch_add(1, Relaxed),
            Direction::Received => self.fleet.received.fetch_add(1, Relaxed),
        };
    }

    fn call(&self, _action: &str, elapsed: Duration, outcome: CallOutcome) {
        let f = &self.fleet;
        match outcome {
            CallOutcome::Result => {
                let us = (elapsed.as_micros() as u64).max(1);
                lock(&f.call).saturating_record(us);
            }
            CallOutcome::Error => {
                f.call_errors.fetch_add(1, Relaxed);
            }
            CallOutcome::Timeout => {
                if !f.stopping.load(Relaxed) {
                    f.timeouts.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn connection(state: ConnectionState) -> Event {
        Event::Connection {
            state,
            url: None,
            detail: None,
            failure: None,
            http_status: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn gauges_follow_each_charge_point_and_latencies_are_kept() {
        let fleet = Arc::new(FleetStats::new(2));
        let a = CpProbe::new(fleet.clone());
        let b = CpProbe::new(fleet.clone());
        tokio::time::advance(Duration::from_millis(40)).await;
        for p in [&a, &b] {
            p.event(&connection(ConnectionState::Connected));
            p.event(&connection(ConnectionState::Connected));
        }
        a.event(&Event::Registration {
            status: Registration::Accepted,
        });
        assert_eq!(fleet.summary().all_booted_s, None);
        tokio::time::advance(Duration::from_millis(60)).await;
        b.event(&Event::Registration {
            status: Registration::Accepted,
        });
        a.frame(Direction::Sent);
        a.frame(Direction::Received);
        a.call("Heartbeat", Duration::from_millis(3), CallOutcome::Result);
        b.call("Heartbeat", Duration::from_secs(30), CallOutcome::Timeout);
        b.event(&Event::Status {
            connector_id: 1,
            status: ChargePointStatus::Charging,
            error_code: crate::stack::messages::ChargePointErrorCode::NoError,
        });
        let s = fleet.summary();
        assert_eq!((s.count, s.connected, s.booted, s.charging), (2, 2, 2, 1));
        assert_eq!(
            s.messages,
            Messages {
                sent: 1,
                received: 1
            }
        );
        assert_eq!((s.errors, s.error_kinds.timeout), (1, 1));
        assert_eq!(s.boot_ms.count, 2);
        assert!((s.boot_ms.p50 - 40.0).abs() < 0.1, "{:?}", s.boot_ms);
        assert!((s.boot_ms.max - 100.0).abs() < 0.1, "{:?}", s.boot_ms);
        assert!((s.call_ms.p99 - 3.0).abs() < 0.01);
        assert!((s.all_booted_s.unwrap() - 0.1).abs() < 0.001);
        // A lost connection is an error while running, not while stopping.
        a.event(&connection(ConnectionState::Disconnected));
        assert_eq!(fleet.summary().error_kinds.disconnect, 1);
        fleet.stopping();
        b.event(&connection(ConnectionState::Disconnected));
        b.gone();
        let s = fleet.summary();
        assert_eq!((s.connected, s.booted, s.charging, s.errors), (0, 1, 0, 2));
        let json = serde_json::to_value(&s).unwrap();
        for key in [
            "count",
            "connected",
            "booted",
            "charging",
            "messages",
            "errors",
            "boot_ms",
            "call_ms",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
    }
}
