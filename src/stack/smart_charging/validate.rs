//! The rules of SetChargingProfile that look at one profile alone (connector, stack level,
//! periods, the charger's limitations on units and recurrence), before it meets the installed
//! ones.

use super::*;

/// The SetChargingProfile rules that do not depend on the other installed profiles.
pub(super) fn validate(
    connector_id: u32,
    p: &ChargingProfile,
    ctx: &SetContext,
) -> Result<(), Rejection> {
    let profile_id = p.charging_profile_id;
    if connector_id > CONNECTORS {
        return Err(Rejection::UnknownConnector { connector_id });
    }
    let s = &p.charging_schedule;
    if s.charging_rate_unit != ChargingRateUnitType::A {
        return Err(Rejection::UnitNotSupported {
            profile_id,
            unit: s.charging_rate_unit,
        });
    }
    if p.charging_profile_kind == ChargingProfileKindType::Recurring {
        if s.start_schedule.is_none() {
            return Err(Rejection::RecurringWithoutStartSchedule { profile_id });
        }
        if p.recurrency_kind.is_none() {
            return Err(Rejection::RecurringWithoutKind { profile_id });
        }
    }
    if p.stack_level > ctx.limits.max_stack_level {
        return Err(Rejection::StackLevelTooHigh {
            profile_id,
            stack_level: p.stack_level,
            max: ctx.limits.max_stack_level,
        });
    }
    let periods = &s.charging_schedule_period;
    if periods.len() > ctx.limits.max_periods {
        return Err(Rejection::TooManyPeriods {
            profile_id,
            count: periods.len(),
            max: ctx.limits.max_periods,
        });
    }
    let mut previous: Option<u32> = None;
    for (index, period) in periods.iter().enumerate() {
        match previous {
            None if period.start_period != 0 => {
                return Err(Rejection::FirstPeriodNotZero {
                    profile_id,
                    start_period: period.start_period,
                });
            }
            Some(prev) if period.start_period <= prev => {
                return Err(Rejection::PeriodsNotIncreasing {
                    profile_id,
                    index,
                    start_period: period.start_period,
                    previous: prev,
                });
            }
            _ => {}
        }
        previous = Some(period.start_period);
        if period.limit < Decimal1::ZERO {
            return Err(Rejection::NegativeLimit {
                profile_id,
                index,
                limit: period.limit,
            });
        }
        if let Some(phases) = period.number_phases
            && !(1..=3).contains(&phases)
        {
            return Err(Rejection::BadNumberPhases {
                profile_id,
                index,
                phases,
            });
        }
    }
    if let Some(rate) = s.min_charging_rate
        && rate < Decimal1::ZERO
    {
        return Err(Rejection::NegativeMinChargingRate { profile_id, rate });
    }
    if let (Some(valid_from), Some(valid_to)) = (p.valid_from, p.valid_to)
        && valid_from >= valid_to
    {
        return Err(Rejection::EmptyValidity {
            profile_id,
            valid_from,
            valid_to,
        });
    }
    match p.charging_profile_purpose {
        ChargingProfilePurposeType::ChargePointMaxProfile if connector_id != 0 => {
            Err(Rejection::MaxProfileNotOnConnectorZero {
                profile_id,
                connector_id,
            })
        }
        ChargingProfilePurposeType::TxProfile if connector_id == 0 => {
            Err(Rejection::TxProfileOnConnectorZero { profile_id })
        }
        ChargingProfilePurposeType::TxProfile => {
            let Some(tx) = ctx.transaction.filter(|t| t.connector_id == connector_id) else {
                return Err(Rejection::NoTransaction {
                    profile_id,
                    connector_id,
                });
            };
            match (p.transaction_id, tx.transaction_id) {
                (Some(requested), running) if running != Some(i64::from(requested)) => {
                    Err(Rejection::TransactionMismatch {
                        profile_id,
                        requested,
                        running: running
                            .map(|r| r.to_string())
                            .unwrap_or_else(|| "id not yet known".into()),
                    })
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}
