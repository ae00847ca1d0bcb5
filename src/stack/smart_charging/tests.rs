use super::*;
use crate::stack::auth::parse_time;
use crate::stack::messages::{GetCompositeScheduleRequest, GetCompositeScheduleStatus};
use serde_json::{Value, json};

fn t(s: &str) -> DateTime<Utc> {
    parse_time(s).unwrap()
}

const T0: &str = "2026-03-02T10:00:00Z";

/// A profile from its wire form; `schedule` fields override an A schedule with the periods.
fn profile(
    id: i32,
    purpose: &str,
    stack: u32,
    kind: &str,
    extra: Value,
    periods: Value,
) -> ChargingProfile {
    let mut p = json!({
        "chargingProfileId": id,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": periods,
        }
    });
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            if k == "schedule" {
                if let Value::Object(s) = v {
                    for (sk, sv) in s {
                        p["chargingSchedule"][sk] = sv;
                    }
                }
            } else {
                p[k] = v;
            }
        }
    }
    serde_json::from_value(p).unwrap()
}

fn periods(list: &[(u32, f64)]) -> Value {
    Value::Array(
        list.iter()
            .map(|(s, l)| json!({"startPeriod": s, "limit": l}))
            .collect(),
    )
}

fn ctx(tx: Option<ActiveTransaction>) -> SetContext {
    SetContext {
        limits: Limits::default(),
        transaction: tx,
        now: t(T0),
    }
}

fn running(id: Option<i64>) -> Option<ActiveTransaction> {
    Some(ActiveTransaction {
        connector_id: 1,
        transaction_id: id,
        started: t("2026-03-02T09:50:00Z"),
    })
}

fn store() -> (tempfile::TempDir, ChargingProfileStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = ChargingProfileStore::open(dir.path()).unwrap();
    (dir, s)
}

/// (startPeriod, limit) pairs of a composite; None limit as -1.
fn shape(c: &CompositeSchedule) -> Vec<(u32, f64)> {
    c.periods
        .iter()
        .map(|p| (p.start_period, p.limit.map_or(-1.0, Decimal1::value)))
        .collect()
}

fn absolute_at(start: &str) -> Value {
    json!({"schedule": {"startSchedule": start}})
}

#[test]
fn higher_stack_level_wins_while_it_runs() {
    let (_d, mut s) = store();
    let c = ctx(None);
    s.set(
        1,
        profile(
            1,
            "TxDefaultProfile",
            0,
            "Absolute",
            absolute_at(T0),
            periods(&[(0, 16.0)]),
        ),
        &c,
    )
    .unwrap();
    s.set(
        1,
        profile(
            2,
            "TxDefaultProfile",
            1,
            "Absolute",
            json!({"schedule": {"startSchedule": "2026-03-02T10:10:00Z", "duration": 1200}}),
            periods(&[(0, 10.0), (600, 12.0)]),
        ),
        &c,
    )
    .unwrap();
    // A lower level on connector 0 never shows through the higher one on the connector.
    s.set(
        0,
        profile(
            3,
            "TxDefaultProfile",
            0,
            "Absolute",
            absolute_at(T0),
            periods(&[(0, 6.0)]),
        ),
        &c,
    )
    .unwrap();
    let comp = s.composite(1, t(T0), 3600, None, t(T0)).unwrap();
    assert_eq!(
        shape(&comp),
        vec![(0, 16.0), (600, 10.0), (1200, 12.0), (1800, 16.0)]
    );
    assert_eq!(
        s.limit_at(1, t("2026-03-02T10:15:00Z"), None),
        Some((10.0, 3))
    );
}

#[test]
fn tx_default_on_connector_zero_applies_to_the_connector() {
    let (_d, mut s) = store();
    s.set(
        0,
        profile(
            1,
            "TxDefaultProfile",
            0,
            "Absolute",
            absolute_at(T0),
            periods(&[(0, 13.0)]),
        ),
        &ctx(None),
    )
    .unwrap();
    assert_eq!(s.limit_at(1, t(T0), None), Some((13.0, 3)));
    assert_eq!(
        shape(&s.composite(0, t(T0), 60, None, t(T0)).unwrap()),
        vec![(0, 13.0)]
    );
}

#[test]
fn daily_recurrence_crosses_midnight() {
    let (_d, mut s) = store();
    // 6 A from 22:00 for 8 hours, 16 A for the rest of the day.
    let p = profile(
        1,
        "TxDefaultProfile",
        0,
        "Recurring",
        json!({"recurrencyKind": "Daily", "schedule": {"startSchedule": "2026-01-01T22:00:00Z", "duration": 86400}}),
        periods(&[(0, 6.0), (8 * 3600, 16.0)]),
    );
    s.set(1, p, &ctx(None)).unwrap();
    let start = t("2026-01-10T20:00:00Z");
    let comp = s.composite(1, start, 12 * 3600, None, start).unwrap();
    assert_eq!(shape(&comp), vec![(0, 16.0), (7200, 6.0), (36000, 16.0)]);
    assert_eq!(
        s.limit_at(1, t("2026-01-11T00:30:00Z"), None),
        Some((6.0, 3))
    );
    assert_eq!(
        s.limit_at(1, t("2026-01-11T06:00:00Z"), None),
        Some((16.0, 3))
    );
    // Not before startSchedule.
    assert_eq!(s.limit_at(1, t("2026-01-01T21:59:59Z"), None), None);
}

#[test]
fn weekly_recurrence_counts_from_start_schedule() {
    let (_d, mut s) = store();
    // Mondays 8 A, the other days 16 A (2026-01-05 is a Monday).
    let p = profile(
        1,
        "TxDefaultProfile",
        0,
        "Recurring",
        json!({"recurrencyKind": "Weekly", "schedule": {"startSchedule": "2026-01-05T00:00:00Z"}}),
        periods(&[(0, 8.0), (86400, 16.0)]),
    );
    s.set(1, p, &ctx(None)).unwrap();
    let start = t("2026-01-18T12:00:00Z"); // a Sunday
    let comp = s.composite(1, start, 2 * 86400, None, start).unwrap();
    assert_eq!(shape(&comp), vec![(0, 16.0), (43200, 8.0), (129600, 16.0)]);
}

#[test]
fn max_profile_caps_the_tx_profile() {
    let (_d, mut s) = store();
    let c = ctx(running(Some(42)));
    s.set(
        0,
        profile(
            1,
            "ChargePointMaxProfile",
            0,
            "Absolute",
            absolute_at(T0),
            periods(&[(0, 10.0)]),
        ),
        &c,
    )
    .unwrap();
    s.set(
        1,
        profile(
            2,
            "TxProfile",
            0,
            "Absolute",
            json!({"transactionId": 42, "schedule": {"startSchedule": T0}}),
            json!([{"startPeriod": 0, "limit": 16.0, "numberPhases": 1}, {"startPeriod": 600, "limit": 8.0}]),
        ),
        &c,
    )
    .unwrap();
    let tx = running(Some(42)).map(TxContext::from);
    let comp = s.composite(1, t(T0), 1200, tx, t(T0)).unwrap();
    assert_eq!(shape(&comp), vec![(0, 10.0), (600, 8.0)]);
    assert_eq!(comp.periods[0].number_phases, Some(1));
    assert_eq!(s.limit_at(1, t(T0), tx), Some((10.0, 1)));
    // Without the transaction the TxProfile does not apply: only the maximum remains.
    assert_eq!(
        shape(&s.composite(1, t(T0), 1200, None, t(T0)).unwrap()),
        vec![(0, 10.0)]
    );
    // At the end of the transaction its profiles go.
    assert!(s.clear_tx_profiles(1).unwrap());
    assert!(!s.clear_tx_profiles(1).unwrap());
    assert_eq!(s.len(), 1);
}

#[test]
fn relative_profile_starts_with_the_transaction() {
    let (_d, mut s) = store();
    s.set(
        1,
        profile(
            1,
            "TxDefaultProfile",
            0,
            "Relative",
            json!({}),
            periods(&[(0, 6.0), (1800, 16.0)]),
        ),
        &ctx(None),
    )
    .unwrap();
    let tx = Some(TxContext {
        started: t("2026-03-02T09:50:00Z"),
    });
    assert_eq!(
        shape(&s.composite(1, t(T0), 3600, tx, t(T0)).unwrap()),
        vec![(0, 6.0), (1200, 16.0)]
    );
    // With no transaction: as if one started now.
    assert_eq!(
        shape(&s.composite(1, t(T0), 3600, None, t(T0)).unwrap()),
        vec![(0, 6.0), (1800, 16.0)]
    );
}

#[test]
fn valid_to_stops_a_profile_mid_schedule() {
    let (_d, mut s) = store();
    let c = ctx(None);
    s.set(
        1,
        profile(
            1,
            "TxDefaultProfile",
            0,
            "Absolute",
            absolute_at(T0),
            periods(&[(0, 16.0)]),
        ),
        &c,
    )
    .unwrap();
    s.set(
        1,
        profile(
            2,
            "TxDefaultProfile",
            1,
            "Absolute",
            json!({"validFrom": "2026-03-02T10:05:00Z", "validTo": "2026-03-02T10:15:00Z", "schedule": {"startSchedule": T0}}),
            periods(&[(0, 10.0)]),
        ),
        &c,
    )
    .unwrap();
    let comp = s.composite(1, t(T0), 3600, None, t(T0)).unwrap();
    assert_eq!(shape(&comp), vec![(0, 16.0), (300, 10.0), (900, 16.0)]);
    assert_eq!(
        s.limit_at(1, t("2026-03-02T10:14:59Z"), None),
        Some((10.0, 3))
    );
    assert_eq!(
        s.limit_at(1, t("2026-03-02T10:15:00Z"), None),
        Some((16.0, 3))
    );
}

#[test]
fn no_profile_gives_one_unlimited_period() {
    let (_d, s) = store();
    let comp = s.composite(1, t(T0), 600, None, t(T0)).unwrap();
    assert!(!comp.is_limited());
    assert_eq!(shape(&comp), vec![(0, -1.0)]);
    assert_eq!(s.limit_at(1, t(T0), None), None);
    let sched = comp.to_charging_schedule(Decimal1::from(32u32));
    assert_eq!(sched.charging_schedule_period.len(), 1);
    assert_eq!(sched.charging_schedule_period[0].limit.value(), 32.0);
}

#[test]
fn equal_adjacent_periods_are_merged() {
    let (_d, mut s) = store();
    let c = ctx(None);
    s.set(
        1,
        profile(
            1,
            "TxDefaultProfile",
            0,
            "Absolute",
            absolute_at(T0),
            periods(&[(0, 16.0)]),
        ),
        &c,
    )
    .unwrap();
    s.set(
        1,
        profile(
            2,
            "TxDefaultProfile",
            1,
            "Absolute",
            json!({"schedule": {"startSchedule": T0, "duration": 900}}),
            periods(&[(0, 16.0), (300, 16.0), (600, 12.0)]),
        ),
        &c,
    )
    .unwrap();
    // The maximum above every limit adds cuts but no periods.
    s.set(
        0,
        profile(
            3,
            "ChargePointMaxProfile",
            0,
            "Absolute",
            absolute_at(T0),
            periods(&[(0, 32.0), (100, 30.0)]),
        ),
        &c,
    )
    .unwrap();
    let comp = s.composite(1, t(T0), 3600, None, t(T0)).unwrap();
    assert_eq!(shape(&comp), vec![(0, 16.0), (600, 12.0), (900, 16.0)]);
}

#[test]
fn limits_are_rounded_to_one_decimal_on_the_wire() {
    let (_d, mut s) = store();
    s.set(
        1,
        profile(
            1,
            "TxDefaultProfile",
            0,
            "Absolute",
            absolute_at(T0),
            periods(&[(0, 10.04), (60, 10.05), (120, 16.0)]),
        ),
        &ctx(None),
    )
    .unwrap();
    let req = GetCompositeScheduleRequest {
        connector_id: 1,
        duration: 300,
        charging_rate_unit: Some(ChargingRateUnitType::A),
    };
    let resp = s.handle_composite(&req, None, t(T0), Decimal1::from(32u32));
    assert_eq!(resp.status, GetCompositeScheduleStatus::Accepted);
    let text = serde_json::to_string(&resp).unwrap();
    assert!(text.contains(r#""limit":10.0"#), "{text}");
    assert!(text.contains(r#""limit":10.1"#), "{text}");
    assert!(text.contains(r#""limit":16.0"#), "{text}");
    assert!(
        text.contains(r#""scheduleStart":"2026-03-02T10:00:00.000Z""#),
        "{text}"
    );
    assert!(text.contains(r#""chargingRateUnit":"A""#), "{text}");
}

#[test]
fn composite_in_watts_or_for_an_unknown_connector_is_rejected() {
    let (_d, s) = store();
    let w = GetCompositeScheduleRequest {
        connector_id: 1,
        duration: 300,
        charging_rate_unit: Some(ChargingRateUnitType::W),
    };
    let r = s.handle_composite(&w, None, t(T0), Decimal1::from(32u32));
    assert_eq!(r.status, GetCompositeScheduleStatus::Rejected);
    assert!(r.charging_schedule.is_none());
    let two = GetCompositeScheduleRequest {
        connector_id: 2,
        duration: 300,
        charging_rate_unit: None,
    };
    assert_eq!(
        s.handle_composite(&two, None, t(T0), Decimal1::from(32u32))
            .status,
        GetCompositeScheduleStatus::Rejected
    );
}

#[test]
fn min_charging_rate_is_carried() {
    let (_d, mut s) = store();
    s.set(
        1,
        profile(
            1,
            "TxDefaultProfile",
            0,
            "Absolute",
            json!({"schedule": {"startSchedule": T0, "minChargingRate": 6.0}}),
            periods(&[(0, 16.0)]),
        ),
        &ctx(None),
    )
    .unwrap();
    let comp = s.composite(1, t(T0), 60, None, t(T0)).unwrap();
    assert_eq!(
        comp.periods[0].min_charging_rate,
        Some(Decimal1::from(6u32))
    );
    let sched = comp.to_charging_schedule(Decimal1::from(32u32));
    assert_eq!(sched.min_charging_rate, Some(Decimal1::from(6u32)));
}

#[test]
fn huge_window_is_bounded() {
    let (_d, mut s) = store();
    s.set(
        1,
        profile(
            1,
            "TxDefaultProfile",
            0,
            "Recurring",
            json!({"recurrencyKind": "Daily", "schedule": {"startSchedule": "2026-01-01T00:00:00Z"}}),
            periods(&[(0, 6.0), (43200, 16.0)]),
        ),
        &ctx(None),
    )
    .unwrap();
    let comp = s.composite(1, t(T0), u32::MAX, None, t(T0)).unwrap();
    assert_eq!(comp.duration_s, MAX_COMPOSITE_S);
    assert_eq!(comp.periods.len(), 2 * 366 + 1);
}

fn rejected(
    s: &mut ChargingProfileStore,
    connector: u32,
    p: ChargingProfile,
    c: &SetContext,
) -> Rejection {
    let before = s.profiles().to_vec();
    let e = s.set(connector, p, c).unwrap_err();
    assert_eq!(e.status(), ChargingProfileStatus::Rejected);
    assert_eq!(s.profiles(), &before[..], "a rejection changes nothing");
    e
}

#[test]
fn each_set_charging_profile_rule_rejects() {
    let (_d, mut s) = store();
    let c = ctx(None);
    let ok = |id| {
        profile(
            id,
            "TxDefaultProfile",
            0,
            "Absolute",
            absolute_at(T0),
            periods(&[(0, 16.0)]),
        )
    };

    let w = profile(
        1,
        "TxDefaultProfile",
        0,
        "Absolute",
        json!({"schedule": {"chargingRateUnit": "W"}}),
        periods(&[(0, 11000.0)]),
    );
    assert!(matches!(
        rejected(&mut s, 1, w, &c),
        Rejection::UnitNotSupported { .. }
    ));

    let rec = profile(
        1,
        "TxDefaultProfile",
        0,
        "Recurring",
        json!({"recurrencyKind": "Daily"}),
        periods(&[(0, 6.0)]),
    );
    assert!(matches!(
        rejected(&mut s, 1, rec, &c),
        Rejection::RecurringWithoutStartSchedule { .. }
    ));
    let rec = profile(
        1,
        "TxDefaultProfile",
        0,
        "Recurring",
        absolute_at(T0),
        periods(&[(0, 6.0)]),
    );
    assert!(matches!(
        rejected(&mut s, 1, rec, &c),
        Rejection::RecurringWithoutKind { .. }
    ));

    let bad_phase = profile(
        1,
        "TxDefaultProfile",
        0,
        "Absolute",
        json!({}),
        json!([{"startPeriod": 0, "limit": 6.0, "numberPhases": 4}]),
    );
    assert!(matches!(
        rejected(&mut s, 1, bad_phase, &c),
        Rejection::BadNumberPhases { phases: 4, .. }
    ));

    assert!(matches!(
        rejected(&mut s, 2, ok(1), &c),
        Rejection::UnknownConnector { connector_id: 2 }
    ));

    let max = profile(
        1,
        "ChargePointMaxProfile",
        0,
        "Absolute",
        json!({}),
        periods(&[(0, 16.0)]),
    );
    assert!(matches!(
        rejected(&mut s, 1, max, &c),
        Rejection::MaxProfileNotOnConnectorZero { .. }
    ));

    let txp = profile(
        1,
        "TxProfile",
        0,
        "Absolute",
        json!({}),
        periods(&[(0, 16.0)]),
    );
    assert!(matches!(
        rejected(&mut s, 0, txp.clone(), &ctx(running(Some(1)))),
        Rejection::TxProfileOnConnectorZero { .. }
    ));
    assert!(matches!(
        rejected(&mut s, 1, txp.clone(), &c),
        Rejection::NoTransaction { .. }
    ));
    let txp7 = profile(
        1,
        "TxProfile",
        0,
        "Absolute",
        json!({"transactionId": 7}),
        periods(&[(0, 16.0)]),
    );
    let e = rejected(&mut s, 1, txp7.clone(), &ctx(running(Some(8))));
    assert!(
        matches!(e, Rejection::TransactionMismatch { requested: 7, .. }),
        "{e}"
    );
    assert!(matches!(
        rejected(&mut s, 1, txp7.clone(), &ctx(running(None))),
        Rejection::TransactionMismatch { .. }
    ));
    s.set(1, txp7, &ctx(running(Some(7)))).unwrap();
    s.set(1, txp, &ctx(running(None))).unwrap(); // no transactionId: any running transaction
    assert!(s.clear(None, None, None, None).unwrap());

    let high = profile(
        1,
        "TxDefaultProfile",
        9,
        "Absolute",
        json!({}),
        periods(&[(0, 16.0)]),
    );
    let e = rejected(&mut s, 1, high, &c);
    assert!(
        matches!(
            e,
            Rejection::StackLevelTooHigh {
                stack_level: 9,
                max: 8,
                ..
            }
        ),
        "{e}"
    );
    s.set(
        1,
        profile(
            1,
            "TxDefaultProfile",
            8,
            "Absolute",
            json!({}),
            periods(&[(0, 16.0)]),
        ),
        &c,
    )
    .unwrap();

    let list: Vec<(u32, f64)> = (0..25).map(|i| (i * 60, 10.0)).collect();
    let many = profile(
        2,
        "TxDefaultProfile",
        0,
        "Absolute",
        json!({}),
        periods(&list),
    );
    assert!(matches!(
        rejected(&mut s, 1, many, &c),
        Rejection::TooManyPeriods {
            count: 25,
            max: 24,
            ..
        }
    ));
    let list: Vec<(u32, f64)> = (0..24).map(|i| (i * 60, 10.0)).collect();
    s.set(
        1,
        profile(
            2,
            "TxDefaultProfile",
            0,
            "Absolute",
            json!({}),
            periods(&list),
        ),
        &c,
    )
    .unwrap();

    let late = profile(
        3,
        "TxDefaultProfile",
        1,
        "Absolute",
        json!({}),
        periods(&[(60, 16.0)]),
    );
    assert!(matches!(
        rejected(&mut s, 1, late, &c),
        Rejection::FirstPeriodNotZero {
            start_period: 60,
            ..
        }
    ));
    let back = profile(
        3,
        "TxDefaultProfile",
        1,
        "Absolute",
        json!({}),
        periods(&[(0, 16.0), (600, 10.0), (600, 8.0)]),
    );
    assert!(matches!(
        rejected(&mut s, 1, back, &c),
        Rejection::PeriodsNotIncreasing { index: 2, .. }
    ));

    let neg = profile(
        3,
        "TxDefaultProfile",
        1,
        "Absolute",
        json!({}),
        periods(&[(0, 16.0), (60, -1.0)]),
    );
    assert!(matches!(
        rejected(&mut s, 1, neg, &c),
        Rejection::NegativeLimit { index: 1, .. }
    ));
    let neg_min = profile(
        3,
        "TxDefaultProfile",
        1,
        "Absolute",
        json!({"schedule": {"minChargingRate": -0.5}}),
        periods(&[(0, 16.0)]),
    );
    assert!(matches!(
        rejected(&mut s, 1, neg_min, &c),
        Rejection::NegativeMinChargingRate { .. }
    ));

    let empty = profile(
        3,
        "TxDefaultProfile",
        1,
        "Absolute",
        json!({"validFrom": "2026-03-02T11:00:00Z", "validTo": "2026-03-02T11:00:00Z"}),
        periods(&[(0, 16.0)]),
    );
    assert!(matches!(
        rejected(&mut s, 1, empty, &c),
        Rejection::EmptyValidity { .. }
    ));
}

#[test]
fn max_profiles_counts_only_new_ones() {
    let (_d, mut s) = store();
    let c = SetContext {
        limits: Limits {
            max_profiles: 3,
            ..Limits::default()
        },
        ..ctx(None)
    };
    for (id, level) in [(1, 0), (2, 1), (3, 2)] {
        s.set(
            1,
            profile(
                id,
                "TxDefaultProfile",
                level,
                "Absolute",
                json!({}),
                periods(&[(0, 16.0)]),
            ),
            &c,
        )
        .unwrap();
    }
    let e = rejected(
        &mut s,
        1,
        profile(
            4,
            "TxDefaultProfile",
            3,
            "Absolute",
            json!({}),
            periods(&[(0, 16.0)]),
        ),
        &c,
    );
    assert!(
        matches!(
            e,
            Rejection::TooManyProfiles {
                count: 4,
                max: 3,
                ..
            }
        ),
        "{e}"
    );
    // Same id: replaces.
    s.set(
        1,
        profile(
            2,
            "TxDefaultProfile",
            5,
            "Absolute",
            json!({}),
            periods(&[(0, 7.0)]),
        ),
        &c,
    )
    .unwrap();
    // Same purpose, stack level and connector with a new id: replaces id 3.
    s.set(
        1,
        profile(
            9,
            "TxDefaultProfile",
            2,
            "Absolute",
            json!({}),
            periods(&[(0, 8.0)]),
        ),
        &c,
    )
    .unwrap();
    let ids: Vec<i32> = s
        .profiles()
        .iter()
        .map(|p| p.profile.charging_profile_id)
        .collect();
    assert_eq!(ids, vec![1, 2, 9]);
    assert_eq!(s.profiles()[1].profile.stack_level, 5);
}

#[test]
fn clear_by_id_or_by_criteria() {
    let (_d, mut s) = store();
    let c = ctx(None);
    s.set(
        0,
        profile(
            1,
            "ChargePointMaxProfile",
            0,
            "Absolute",
            json!({}),
            periods(&[(0, 20.0)]),
        ),
        &c,
    )
    .unwrap();
    s.set(
        0,
        profile(
            2,
            "TxDefaultProfile",
            0,
            "Absolute",
            json!({}),
            periods(&[(0, 16.0)]),
        ),
        &c,
    )
    .unwrap();
    s.set(
        1,
        profile(
            3,
            "TxDefaultProfile",
            1,
            "Absolute",
            json!({}),
            periods(&[(0, 10.0)]),
        ),
        &c,
    )
    .unwrap();
    s.set(
        1,
        profile(
            4,
            "TxDefaultProfile",
            2,
            "Absolute",
            json!({}),
            periods(&[(0, 10.0)]),
        ),
        &c,
    )
    .unwrap();
    // An id wins over the other criteria.
    let by_id = ClearChargingProfileRequest {
        id: Some(1),
        connector_id: Some(1),
        ..Default::default()
    };
    assert_eq!(
        s.handle_clear(&by_id).status,
        ClearChargingProfileStatus::Accepted
    );
    assert_eq!(
        s.handle_clear(&by_id).status,
        ClearChargingProfileStatus::Unknown
    );
    assert!(
        !s.clear(
            None,
            Some(1),
            Some(ChargingProfilePurposeType::ChargePointMaxProfile),
            None
        )
        .unwrap()
    );
    assert!(
        s.clear(
            None,
            Some(1),
            Some(ChargingProfilePurposeType::TxDefaultProfile),
            Some(2)
        )
        .unwrap()
    );
    let ids: Vec<i32> = s
        .profiles()
        .iter()
        .map(|p| p.profile.charging_profile_id)
        .collect();
    assert_eq!(ids, vec![2, 3]);
    // Connector 0 means the profiles installed on 0.
    assert!(s.clear(None, Some(0), None, None).unwrap());
    assert_eq!(s.len(), 1);
    let reopened = ChargingProfileStore::open(_d.path()).unwrap();
    assert_eq!(reopened.len(), 1);
}

#[test]
fn profiles_survive_a_restart() {
    let (dir, mut s) = store();
    let c = ctx(None);
    let p = profile(
        5,
        "TxDefaultProfile",
        3,
        "Recurring",
        json!({
            "recurrencyKind": "Daily",
            "validFrom": "2026-01-01T00:00:00Z",
            "schedule": {"startSchedule": "2026-01-01T22:00:00Z", "duration": 28800, "minChargingRate": 6.0}
        }),
        json!([{"startPeriod": 0, "limit": 6.5, "numberPhases": 1}]),
    );
    s.set(0, p.clone(), &c).unwrap();
    let back = ChargingProfileStore::open(dir.path()).unwrap();
    assert_eq!(back.profiles(), s.profiles());
    assert_eq!(back.profiles()[0].profile, p);
    assert_eq!(
        back.limit_at(1, t("2026-02-01T23:00:00Z"), None),
        Some((6.5, 1))
    );
}

#[test]
fn failed_write_changes_nothing_and_corrupt_file_names_the_line() {
    let (dir, mut s) = store();
    std::fs::write(dir.path().join("blocker"), b"x").unwrap();
    s.path = dir.path().join("blocker").join(FILE_NAME);
    let e = s
        .set(
            1,
            profile(
                1,
                "TxDefaultProfile",
                0,
                "Absolute",
                json!({}),
                periods(&[(0, 16.0)]),
            ),
            &ctx(None),
        )
        .unwrap_err();
    assert!(matches!(e, Rejection::Storage(_)), "{e}");
    assert!(s.is_empty());

    std::fs::write(dir.path().join(FILE_NAME), b"[\n{\"connectorId\": 1,\n  }]").unwrap();
    let err = ChargingProfileStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { line: 3, .. }), "{err}");
    assert!(ChargingProfileStore::open_or_empty(dir.path()).is_empty());
}

#[test]
fn set_request_handler_answers_per_rule() {
    let (_d, mut s) = store();
    let ok = SetChargingProfileRequest {
        connector_id: 1,
        cs_charging_profiles: profile(
            1,
            "TxDefaultProfile",
            0,
            "Absolute",
            json!({}),
            periods(&[(0, 16.0)]),
        ),
    };
    assert_eq!(
        s.handle_set(&ok, &ctx(None)).status,
        ChargingProfileStatus::Accepted
    );
    let bad = SetChargingProfileRequest {
        connector_id: 3,
        ..ok
    };
    assert_eq!(
        s.handle_set(&bad, &ctx(None)).status,
        ChargingProfileStatus::Rejected
    );
}

#[test]
fn expired_profiles_do_not_count_against_the_maximum() {
    let (_d, mut s) = store();
    let c = SetContext {
        limits: Limits {
            max_profiles: 2,
            ..Limits::default()
        },
        ..ctx(None)
    };
    let expired = profile(
        1,
        "TxDefaultProfile",
        0,
        "Absolute",
        json!({"validTo": "2026-03-02T09:00:00Z"}),
        periods(&[(0, 16.0)]),
    );
    s.set(1, expired, &c).unwrap();
    s.set(
        1,
        profile(
            2,
            "TxDefaultProfile",
            1,
            "Absolute",
            json!({}),
            periods(&[(0, 16.0)]),
        ),
        &c,
    )
    .unwrap();
    s.set(
        1,
        profile(
            3,
            "TxDefaultProfile",
            2,
            "Absolute",
            json!({}),
            periods(&[(0, 10.0)]),
        ),
        &c,
    )
    .unwrap();
    let ids: Vec<i32> = s
        .profiles()
        .iter()
        .map(|p| p.profile.charging_profile_id)
        .collect();
    assert_eq!(ids, vec![2, 3]);
}

#[test]
fn zero_length_window_reports_what_applies_at_its_start() {
    let (_d, mut s) = store();
    s.set(
        1,
        profile(
            1,
            "TxDefaultProfile",
            0,
            "Absolute",
            absolute_at(T0),
            periods(&[(0, 11.0)]),
        ),
        &ctx(None),
    )
    .unwrap();
    let comp = s.composite(1, t(T0), 0, None, t(T0)).unwrap();
    assert_eq!(shape(&comp), vec![(0, 11.0)]);
}
