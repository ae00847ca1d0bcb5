//! Time for the charger. Timers use `tokio::time` (so tests run on tokio's paused clock); wall
//! clock timestamps come from a [`Clock`], which by default advances with tokio's clock from the
//! system time read at start, so a paused-clock test sees timestamps that move with its timers.

use chrono::{DateTime, Duration as ChronoDuration, SubsecRound, Utc};
use std::sync::Arc;
use tokio::time::Instant;

/// Source of UTC wall-clock time (the real charger synchronises it with NTP, not the CSMS).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// Wall clock that follows `tokio::time::Instant` from a base taken at construction.
#[derive(Debug, Clone)]
pub struct TokioClock {
    base_utc: DateTime<Utc>,
    base_instant: Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        Self::starting_at(Utc::now())
    }

    /// A clock that reads `start` now (tests use a fixed start for reproducible timestamps).
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self {
            base_utc: start,
            base_instant: Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now().saturating_duration_since(self.base_instant);
        let d = ChronoDuration::from_std(elapsed).unwrap_or(ChronoDuration::zero());
        (self.base_utc + d).trunc_subsecs(3)
    }
}

pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time() {
        let start = "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let c = TokioClock::starting_at(start);
        tokio::time::sleep(std::time::Duration::from_secs(90)).await;
        assert_eq!(c.now().to_rfc3339(), "2026-01-01T00:01:30+00:00");
    }
}
