//! The composite schedule: which installed profile applies at each moment of a window, the
//! ChargePointMaxProfile cap over it, GetCompositeSchedule.conf built from it, and the limit the
//! charger offers now. The rules are in the documentation of [`super`].

use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeSet;

use super::{
    CONNECTORS, ChargingProfileStore, CompositeError, DAY_S, DEFAULT_PHASES, InstalledProfile,
    MAX_COMPOSITE_S, TxContext, WEEK_S,
};
use crate::stack::messages::{
    ChargingProfileKindType, ChargingProfilePurposeType, ChargingRateUnitType, ChargingSchedule,
    ChargingSchedulePeriod, Decimal1, GetCompositeScheduleRequest, GetCompositeScheduleResponse,
    GetCompositeScheduleStatus, RecurrencyKindType, Timestamp,
};

impl InstalledProfile {
    fn valid_at(&self, t: DateTime<Utc>) -> bool {
        self.profile.valid_from.is_none_or(|f| f.as_datetime() <= t)
            && self.profile.valid_to.is_none_or(|v| t < v.as_datetime())
    }

    fn cycle(&self) -> Option<Duration> {
        match self.profile.recurrency_kind? {
            RecurrencyKindType::Daily => Some(Duration::seconds(DAY_S)),
            RecurrencyKindType::Weekly => Some(Duration::seconds(WEEK_S)),
        }
    }

    /// Where the schedule's periods count from for moment `t`.
    fn base_at(
        &self,
        t: DateTime<Utc>,
        tx: Option<TxContext>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let s = &self.profile.charging_schedule;
        match self.profile.charging_profile_kind {
            ChargingProfileKindType::Absolute => Some(
                s.start_schedule
                    .or(self.profile.valid_from)
                    .map(|t| t.as_datetime())
                    .unwrap_or(self.installed_at),
            ),
            ChargingProfileKindType::Relative => Some(tx.map(|x| x.started).unwrap_or(now)),
            ChargingProfileKindType::Recurring => {
                let start = s.start_schedule?.as_datetime();
                let cycle = self.cycle()?;
                if t < start {
                    return None;
                }
                let n = (t - start).num_milliseconds() / cycle.num_milliseconds();
                Some(start + cycle * i32::try_from(n).ok()?)
            }
        }
    }

    /// Every schedule anchor that matters for the window `[from, to)`.
    fn bases_in(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        tx: Option<TxContext>,
        now: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        if self.profile.charging_profile_kind != ChargingProfileKindType::Recurring {
            return self.base_at(from, tx, now).into_iter().collect();
        }
        let (Some(start), Some(cycle)) =
            (self.profile.charging_schedule.start_schedule, self.cycle())
        else {
            return Vec::new();
        };
        let start = start.as_datetime();
        let mut base = self.base_at(from, tx, now).unwrap_or(start);
        let mut out = Vec::new();
        while base < to {
            out.push(base);
            base += cycle;
        }
        out
    }

    /// The limit this profile sets at `t`, if it applies then.
    fn slot_at(&self, t: DateTime<Utc>, tx: Option<TxContext>, now: DateTime<Utc>) -> Option<Slot> {
        if !self.valid_at(t) {
            return None;
        }
        let base = self.base_at(t, tx, now)?;
        if t < base {
            return None;
        }
        let offset = t - base;
        let s = &self.profile.charging_schedule;
        if let Some(d) = s.duration
            && offset >= Duration::seconds(i64::from(d))
        {
            return None;
        }
        let period = s
            .charging_schedule_period
            .iter()
            .take_while(|p| Duration::seconds(i64::from(p.start_period)) <= offset)
            .last()?;
        Some(Slot {
            limit: period.limit,
            phases: period.number_phases,
            min_rate: s.min_charging_rate,
        })
    }
}

/// What applies at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    limit: Decimal1,
    phases: Option<u32>,
    min_rate: Option<Decimal1>,
}

/// One period of a composite schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompositePeriod {
    /// Seconds from the schedule start.
    pub start_period: u32,
    /// The limit in A; None where no profile applies (the charger's own maximum then holds).
    pub limit: Option<Decimal1>,
    /// As the applying periods say (the smaller of the two when capped); None = not stated (3).
    pub number_phases: Option<u32>,
    /// minChargingRate of the TxProfile or TxDefaultProfile that applies.
    pub min_charging_rate: Option<Decimal1>,
}

/// The composite schedule of a connector over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompositeSchedule {
    pub connector_id: u32,
    pub start: DateTime<Utc>,
    /// Seconds covered (the request's, at most [`MAX_COMPOSITE_S`]).
    pub duration_s: u32,
    /// Ordered by start, the first at 0, adjacent periods always different.
    pub periods: Vec<CompositePeriod>,
}

impl CompositeSchedule {
    /// Whether any profile limits the connector within the window.
    pub fn is_limited(&self) -> bool {
        self.periods.iter().any(|p| p.limit.is_some())
    }

    /// The schedule as GetCompositeSchedule.conf carries it, in A. Where no profile applies the
    /// period carries `unlimited` (the charger's maximum current), since the message cannot say
    /// "no limit"; adjacent equal periods are merged again after that substitution. The
    /// schedule-level minChargingRate is that of the first period stating one.
    pub fn to_charging_schedule(&self, unlimited: Decimal1) -> ChargingSchedule {
        let mut periods: Vec<ChargingSchedulePeriod> = Vec::new();
        for p in &self.periods {
            let limit = p.limit.unwrap_or(unlimited);
            if let Some(last) = periods.last()
                && last.limit == limit
                && last.number_phases == p.number_phases
            {
                continue;
            }
            periods.push(ChargingSchedulePeriod {
                start_period: p.start_period,
                limit,
                number_phases: p.number_phases,
            });
        }
        if periods.is_empty() {
            periods.push(ChargingSchedulePeriod {
                start_period: 0,
                limit: unlimited,
                number_phases: None,
            });
        }
        ChargingSchedule {
            duration: Some(self.duration_s),
            start_schedule: Some(Timestamp::new(self.start)),
            charging_rate_unit: ChargingRateUnitType::A,
            charging_schedule_period: periods,
            min_charging_rate: self.periods.iter().find_map(|p| p.min_charging_rate),
        }
    }
}

impl ChargingProfileStore {
    /// The composite schedule of `connector_id` over `[start, start + duration_s)` (see the
    /// module documentation). `tx` is the transaction on the connector, if any; `now` anchors
    /// Relative profiles when there is none.
    pub fn composite(
        &self,
        connector_id: u32,
        start: DateTime<Utc>,
        duration_s: u32,
        tx: Option<TxContext>,
        now: DateTime<Utc>,
    ) -> Result<CompositeSchedule, CompositeError> {
        if connector_id > CONNECTORS {
            return Err(CompositeError::UnknownConnector { connector_id });
        }
        let duration_s = duration_s.min(MAX_COMPOSITE_S);
        let end = start + Duration::seconds(i64::from(duration_s));
        let relevant = self.relevant(connector_id, tx);

        let mut cuts = BTreeSet::new();
        cuts.insert(start);
        for p in &relevant {
            let pr = &p.profile;
            for t in [pr.valid_from, pr.valid_to].into_iter().flatten() {
                cuts.insert(t.as_datetime());
            }
            for base in p.bases_in(start, end, tx, now) {
                let s = &pr.charging_schedule;
                for period in &s.charging_schedule_period {
                    cuts.insert(base + Duration::seconds(i64::from(period.start_period)));
                }
                if let Some(d) = s.duration {
                    cuts.insert(base + Duration::seconds(i64::from(d)));
                }
            }
        }

        let mut periods: Vec<CompositePeriod> = Vec::new();
        for t in cuts.range(start..end) {
            let slot = self.slot_for(connector_id, *t, tx, now);
            let start_period = u32::try_from((*t - start).num_seconds()).unwrap_or(u32::MAX);
            let period = CompositePeriod {
                start_period,
                limit: slot.map(|s| s.limit),
                number_phases: slot.and_then(|s| s.phases),
                min_charging_rate: slot.and_then(|s| s.min_rate),
            };
            // A cut inside the same whole second replaces the previous one.
            if periods
                .last()
                .is_some_and(|l| l.start_period == start_period)
            {
                periods.pop();
            }
            if let Some(last) = periods.last()
                && (last.limit, last.number_phases, last.min_charging_rate)
                    == (period.limit, period.number_phases, period.min_charging_rate)
            {
                continue;
            }
            periods.push(period);
        }
        if periods.is_empty() {
            // A zero-length window: what applies at its start.
            let slot = self.slot_for(connector_id, start, tx, now);
            periods.push(CompositePeriod {
                start_period: 0,
                limit: slot.map(|s| s.limit),
                number_phases: slot.and_then(|s| s.phases),
                min_charging_rate: slot.and_then(|s| s.min_rate),
            });
        }
        Ok(CompositeSchedule {
            connector_id,
            start,
            duration_s,
            periods,
        })
    }

    /// GetCompositeSchedule.conf: Rejected for an unknown connector or a request in W (see the
    /// module documentation); otherwise Accepted with the composite from `now`, where
    /// `unlimited` (the charger's maximum current) fills the periods no profile limits.
    pub fn handle_composite(
        &self,
        req: &GetCompositeScheduleRequest,
        tx: Option<TxContext>,
        now: DateTime<Utc>,
        unlimited: Decimal1,
    ) -> GetCompositeScheduleResponse {
        let result = match req.charging_rate_unit {
            Some(ChargingRateUnitType::W) => Err(CompositeError::UnitNotSupported {
                unit: ChargingRateUnitType::W,
            }),
            _ => self.composite(req.connector_id, now, req.duration, tx, now),
        };
        match result {
            Ok(c) => GetCompositeScheduleResponse {
                status: GetCompositeScheduleStatus::Accepted,
                connector_id: Some(req.connector_id),
                schedule_start: Some(Timestamp::new(now)),
                charging_schedule: Some(c.to_charging_schedule(unlimited)),
            },
            Err(e) => {
                tracing::warn!(reason = %e, "GetCompositeSchedule rejected");
                GetCompositeScheduleResponse {
                    status: GetCompositeScheduleStatus::Rejected,
                    connector_id: None,
                    schedule_start: None,
                    charging_schedule: None,
                }
            }
        }
    }

    /// The limit on `connector_id` at `now` in A, with the number of phases (3 when the profile
    /// does not say); None when no profile applies.
    pub fn limit_at(
        &self,
        connector_id: u32,
        now: DateTime<Utc>,
        tx: Option<TxContext>,
    ) -> Option<(f64, u32)> {
        self.slot_for(connector_id, now, tx, now)
            .map(|s| (s.limit.value(), s.phases.unwrap_or(DEFAULT_PHASES)))
    }

    /// The profiles that can apply to `connector_id` (the charger's only connector when asked
    /// for 0), highest stackLevel first.
    fn relevant(&self, connector_id: u32, tx: Option<TxContext>) -> Vec<&InstalledProfile> {
        let connector = connector_id.max(1);
        let mut out: Vec<&InstalledProfile> = self
            .profiles
            .iter()
            .filter(|p| match p.purpose() {
                ChargingProfilePurposeType::ChargePointMaxProfile => p.connector_id == 0,
                ChargingProfilePurposeType::TxDefaultProfile => {
                    p.connector_id == 0 || p.connector_id == connector
                }
                ChargingProfilePurposeType::TxProfile => {
                    tx.is_some() && p.connector_id == connector
                }
            })
            .collect();
        // Highest stackLevel first; at equal level a profile on the connector before one on 0.
        out.sort_by_key(|p| {
            (
                std::cmp::Reverse(p.profile.stack_level),
                std::cmp::Reverse(p.connector_id),
            )
        });
        out
    }

    fn slot_for(
        &self,
        connector_id: u32,
        t: DateTime<Utc>,
        tx: Option<TxContext>,
        now: DateTime<Utc>,
    ) -> Option<Slot> {
        let relevant = self.relevant(connector_id, tx);
        let first = |purpose| {
            relevant
                .iter()
                .filter(|p| p.purpose() == purpose)
                .find_map(|p| p.slot_at(t, tx, now))
        };
        let tx_slot = first(ChargingProfilePurposeType::TxProfile)
            .or_else(|| first(ChargingProfilePurposeType::TxDefaultProfile));
        let max_slot = first(ChargingProfilePurposeType::ChargePointMaxProfile);
        match (tx_slot, max_slot) {
            (Some(a), Some(m)) => Some(Slot {
                limit: a.limit.min(m.limit),
                phases: match (a.phases, m.phases) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                },
                min_rate: a.min_rate,
            }),
            (Some(a), None) => Some(a),
            (None, Some(m)) => Some(Slot {
                min_rate: None,
                ..m
            }),
            (None, None) => None,
        }
    }
}
