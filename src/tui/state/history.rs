//! The dashboard's charging chart: offered and drawn current and energy over a session.

use std::time::{Duration, Instant};

use crate::tui::msg::ChargerStatus;

/// Most samples the charging chart keeps; when full, every other one goes and the spacing
/// doubles, so a whole session fits whatever its length.
pub const CHART_SAMPLES: usize = 600;

/// One point of the charging chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChargeSample {
    /// Seconds since the session started.
    pub at_s: f64,
    pub offered_a: f64,
    pub drawn_a: f64,
    /// Energy delivered in this session, Wh.
    pub energy_wh: f64,
}

/// Offered and drawn current and energy over the charging session, sampled on ticks from the
/// latest status. A session runs while the connector charges, is suspended, or has a
/// transaction; the samples of the last one stay until the next begins.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeHistory {
    pub samples: Vec<ChargeSample>,
    /// A session is running.
    pub active: bool,
    started: Option<Instant>,
    start_energy_wh: f64,
    last_sample: Option<Instant>,
    spacing: Duration,
}

impl Default for ChargeHistory {
    fn default() -> Self {
        ChargeHistory {
            samples: Vec::new(),
            active: false,
            started: None,
            start_energy_wh: 0.0,
            last_sample: None,
            spacing: Duration::from_secs(1),
        }
    }
}

impl ChargeHistory {
    /// Whether this status is a charging session.
    pub fn in_session(status: &ChargerStatus) -> bool {
        status.transaction_id.is_some()
            || matches!(
                status.connector.as_str(),
                "Charging" | "SuspendedEV" | "SuspendedEVSE"
            )
    }

    /// Takes a sample of `status` at `now` when one is due.
    pub fn observe(&mut self, status: &ChargerStatus, now: Instant) {
        let session = ChargeHistory::in_session(status);
        if session && !self.active {
            *self = ChargeHistory {
                active: true,
                started: Some(now),
                start_energy_wh: status.energy_wh,
                ..ChargeHistory::default()
            };
        }
        if !session {
            if self.active {
                // The last point shows where the session ended.
                self.push(status, now);
            }
            self.active = false;
            return;
        }
        if self
            .last_sample
            .is_none_or(|t| now.saturating_duration_since(t) >= self.spacing)
        {
            self.push(status, now);
        }
    }

    fn push(&mut self, status: &ChargerStatus, now: Instant) {
        let Some(started) = self.started else {
            return;
        };
        self.samples.push(ChargeSample {
            at_s: now.saturating_duration_since(started).as_secs_f64(),
            offered_a: status.offered_amps,
            drawn_a: status.drawn_amps,
            energy_wh: (status.energy_wh - self.start_energy_wh).max(0.0),
        });
        self.last_sample = Some(now);
        if self.samples.len() > CHART_SAMPLES {
            let kept: Vec<ChargeSample> = self.samples.iter().step_by(2).copied().collect();
            self.samples = kept;
            self.spacing *= 2;
        }
    }

    /// Length of the session so far (or of the last one).
    pub fn span_s(&self) -> f64 {
        self.samples.last().map_or(0.0, |s| s.at_s)
    }
}
