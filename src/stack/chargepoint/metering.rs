//! Metering: meter values sampled during a transaction (MeterValueSampleInterval), clock-aligned
//! ones (ClockAlignedDataInterval, aligned to midnight UTC), and the readings kept for
//! StopTransaction's transactionData (capped by StopTransactionMaxMeterValues). Meter values are
//! built as JSON, the form in which the transaction journal stores them.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

use super::actor::{ChargePoint, secs};
use super::fmt_time;
use super::outbox::Purpose;
use crate::stack::config::{IntKey, ListKey};
use crate::stack::hardware::MeterReading;

/// Timers and the energy register at the previous clock-aligned reading.
#[derive(Debug, Default)]
pub(super) struct Metering {
    pub sample_at: Option<Instant>,
    pub aligned_at: Option<Instant>,
    last_aligned_wh: Option<f64>,
}

/// Builds an OCPP MeterValue with the given measurands (None when none applies).
pub(super) fn meter_value(
    measurands: &[String],
    context: &str,
    reading: &MeterReading,
    at: DateTime<Utc>,
    interval_base_wh: f64,
) -> Option<Value> {
    let mut values = Vec::new();
    let sv = |value: String, measurand: &str, unit: &str, phase: Option<&str>, location: &str| {
        let mut v = json!({
            "value": value,
            "context": context,
            "format": "Raw",
            "measurand": measurand,
            "location": location,
            "unit": unit,
        });
        if let Some(p) = phase {
            v["phase"] = json!(p);
        }
        v
    };
    for m in measurands {
        match m.as_str() {
            "Energy.Active.Import.Register" => values.push(sv(
                format!("{:.0}", reading.energy_wh.floor()),
                m,
                "Wh",
                None,
                "Outlet",
            )),
            "Energy.Active.Import.Interval" => values.push(sv(
                format!(
                    "{:.0}",
                    (reading.energy_wh - interval_base_wh).max(0.0).floor()
                ),
                m,
                "Wh",
                None,
                "Outlet",
            )),
            "Current.Import" => {
                for (i, p) in ["L1", "L2", "L3"].iter().enumerate() {
                    values.push(sv(
                        format!("{:.1}", reading.current_a[i]),
                        m,
                        "A",
                        Some(p),
                        "Outlet",
                    ));
                }
            }
            "Current.Offered" => values.push(sv(
                format!("{:.1}", reading.offered_a),
                m,
                "A",
                None,
                "Outlet",
            )),
            "Voltage" => {
                for (i, p) in ["L1-N", "L2-N", "L3-N"].iter().enumerate() {
                    values.push(sv(
                        format!("{:.1}", reading.voltage_v[i]),
                        m,
                        "V",
                        Some(p),
                        "Outlet",
                    ));
                }
            }
            "Temperature" => values.push(sv(
                format!("{:.1}", reading.temperature_c),
                m,
                "Celsius",
                None,
                "Body",
            )),
            _ => {}
        }
    }
    (!values.is_empty()).then(|| json!({ "timestamp": fmt_time(at), "sampledValue": values }))
}

/// StopTransactionMaxMeterValues (errata v4.0): keep the first and the last readings and drop
/// intermediate ones evenly when there are more than `max`. 0 or less means no limit.
pub(super) fn cap_meter_values(values: Vec<Value>, max: i64) -> Vec<Value> {
    if max <= 0 || values.len() as i64 <= max {
        return values;
    }
    let max = max as usize;
    if max == 1 {
        return values.into_iter().last().into_iter().collect();
    }
    let n = values.len();
    let mut out = Vec::with_capacity(max);
    for i in 0..max {
        let idx = i * (n - 1) / (max - 1);
        out.push(values[idx].clone());
    }
    out
}

impl ChargePoint {
    pub fn schedule_sampling(&mut self) {
        let interval = self.config.int(IntKey::METER_VALUE_SAMPLE_INTERVAL);
        self.metering.sample_at = (interval > 0 && self.transactions.active.is_some())
            .then(|| Instant::now() + secs(interval));
    }

    pub fn schedule_aligned(&mut self) {
        let interval = self.config.int(IntKey::CLOCK_ALIGNED_DATA_INTERVAL);
        if interval <= 0 {
            self.metering.aligned_at = None;
            return;
        }
        let wait = aligned_wait(self.now(), interval as u64);
        self.metering.aligned_at = Some(Instant::now() + wait);
    }

    /// A MeterValue of the StopTxnSampledData measurands, for transactionData.
    pub fn sample_stop_measurands(
        &self,
        context: &str,
        reading: &MeterReading,
        at: DateTime<Utc>,
        base: f64,
    ) -> Option<Value> {
        let m = self.config.list(ListKey::STOP_TXN_SAMPLED_DATA);
        meter_value(&m, context, reading, at, base)
    }

    pub fn on_sample_timer(&mut self) {
        self.metering.sample_at = None;
        let Some(tx) = self.transactions.active.clone() else {
            return;
        };
        let now = self.now();
        let reading = self.hw.meter();
        let measurands = self.config.list(ListKey::METER_VALUES_SAMPLED_DATA);
        if let Some(mv) = meter_value(
            &measurands,
            "Sample.Periodic",
            &reading,
            now,
            tx.last_sample_wh,
        ) {
            let payload = json!({
                "connectorId": 1,
                "transactionId": tx.transaction_id.unwrap_or(-1),
                "meterValue": [mv],
            });
            self.journal_push("MeterValues", payload, tx.local_tx);
        }
        let stop_sample =
            self.sample_stop_measurands("Sample.Periodic", &reading, now, tx.last_sample_wh);
        if let Some(t) = self.transactions.active.as_mut() {
            t.last_meter_wh = reading.energy_wh;
            t.last_meter_at = now;
            t.last_sample_wh = reading.energy_wh;
            if let Some(s) = stop_sample {
                t.stop_data.push(s);
            }
        }
        self.save_tx();
        self.schedule_sampling();
    }

    pub fn on_aligned_timer(&mut self) {
        self.metering.aligned_at = None;
        let now = self.now();
        let reading = self.hw.meter();
        let base = self.metering.last_aligned_wh.unwrap_or(reading.energy_wh);
        self.metering.last_aligned_wh = Some(reading.energy_wh);
        let measurands = self.config.list(ListKey::METER_VALUES_ALIGNED_DATA);
        if let Some(mv) = meter_value(&measurands, "Sample.Clock", &reading, now, base) {
            match self.transactions.active.clone() {
                Some(tx) => {
                    let payload = json!({
                        "connectorId": 1,
                        "transactionId": tx.transaction_id.unwrap_or(-1),
                        "meterValue": [mv],
                    });
                    self.journal_push("MeterValues", payload, tx.local_tx);
                }
                None => {
                    if self.link.accepted() {
                        self.outbox.push_json(
                            "MeterValues",
                            json!({ "connectorId": 1, "meterValue": [mv] }),
                            Purpose::Other,
                        );
                    }
                }
            }
        }
        let stop_aligned = self.config.list(ListKey::STOP_TXN_ALIGNED_DATA);
        let stop = meter_value(&stop_aligned, "Sample.Clock", &reading, now, base);
        if let (Some(t), Some(s)) = (self.transactions.active.as_mut(), stop) {
            t.stop_data.push(s);
            t.last_meter_wh = reading.energy_wh;
            t.last_meter_at = now;
        }
        if self.transactions.active.is_some() {
            self.save_tx();
        }
        self.schedule_aligned();
    }
}

const DAY_MS: u64 = 86_400_000;

/// Time from `now` to the next clock-aligned reading for an interval of `interval_s` seconds
/// (above 0). Up to a day, the intervals start again at every midnight UTC (OCPP 1.6: evenly
/// spaced intervals per day, starting at 00:00:00), so an interval that does not divide the day
/// ends early at midnight. Above a day (the range goes to 4294967 s), they are counted from the
/// midnight of 1970-01-01 UTC, so whole days always fall on midnight and the spacing stays even.
pub(super) fn aligned_wait(now: DateTime<Utc>, interval_s: u64) -> Duration {
    let period = interval_s.max(1) * 1000;
    let since_epoch = now.timestamp_millis().max(0) as u64;
    let wait = if period <= DAY_MS {
        let since_midnight = since_epoch % DAY_MS;
        (period - since_midnight % period).min(DAY_MS - since_midnight)
    } else {
        period - since_epoch % period
    };
    Duration::from_millis(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn aligned_readings_fall_on_the_interval_from_midnight() {
        let s = |t: &str, i: u64| aligned_wait(at(t), i).as_secs_f64();
        assert_eq!(s("2026-03-01T10:07:00Z", 900), 480.0);
        assert_eq!(s("2026-03-01T10:15:00Z", 900), 900.0);
        assert_eq!(s("2026-03-01T10:14:59.500Z", 900), 0.5);
        assert_eq!(s("2026-03-01T10:00:00Z", 86_400), 14.0 * 3600.0);
        // 7 s does not divide the day: the last interval ends at midnight.
        assert_eq!(s("2026-03-01T23:59:57Z", 7), 3.0);
    }

    #[test]
    fn aligned_intervals_above_a_day_keep_whole_days_on_midnight() {
        let s = |t: &str, i: u64| aligned_wait(at(t), i).as_secs();
        // 2 days from the epoch: 2026-03-01 is day 20513, odd, so the next is 03-02 00:00.
        assert_eq!(s("2026-03-01T10:00:00Z", 172_800), 14 * 3600);
        assert_eq!(s("2026-03-02T00:00:00Z", 172_800), 172_800);
        // The top of the range still gives a finite wait within one interval.
        let w = s("2026-03-01T10:00:00Z", 4_294_967);
        assert!((1..=4_294_967).contains(&w), "{w}");
    }

    #[test]
    fn meter_value_cap_keeps_first_and_last() {
        let v: Vec<Value> = (0..10).map(|i| json!(i)).collect();
        let c = cap_meter_values(v.clone(), 4);
        assert_eq!(c, vec![json!(0), json!(3), json!(6), json!(9)]);
        assert_eq!(cap_meter_values(v.clone(), 0).len(), 10);
        assert_eq!(cap_meter_values(v.clone(), 20).len(), 10);
        assert_eq!(cap_meter_values(v, 1), vec![json!(9)]);
    }
}
