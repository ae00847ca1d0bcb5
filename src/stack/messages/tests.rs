use super::*;
use chrono::{TimeZone, Utc};
use serde_json::json;
use std::collections::HashSet;

#[test]
fn timestamp_serialises_utc_with_milliseconds_and_z() {
    let at = Utc
        .with_ymd_and_hms(2026, 11, 26, 8, 0, 0)
        .single()
        .unwrap();
    let t = Timestamp::new(at);
    assert_eq!(
        serde_json::to_value(t).unwrap(),
        json!("2026-11-26T08:00:00.000Z")
    );
    let t = Timestamp::new(at + chrono::Duration::microseconds(123_987));
    assert_eq!(t.to_string(), "2026-11-26T08:00:00.123Z");
}

#[test]
fn timestamp_parses_offsets_and_offsetless_text_as_utc() {
    let want = Utc
        .with_ymd_and_hms(2026, 11, 26, 8, 0, 0)
        .single()
        .unwrap();
    for text in [
        "2026-11-26T08:00:00Z",
        "2026-11-26T08:00:00.000Z",
        "2026-11-26T09:00:00+01:00",
        "2026-11-26T03:30:00-04:30",
        "2026-11-26T08:00:00",
        "2026-11-26T08:00:00.000",
        "2026-11-26 08:00:00",
    ] {
        let t: Timestamp = serde_json::from_value(json!(text)).unwrap();
        assert_eq!(t.as_datetime(), want, "{text}");
    }
    let t = Timestamp::parse("2026-11-26T08:00:00.123456+00:00").unwrap();
    assert_eq!(t.to_string(), "2026-11-26T08:00:00.123Z");
}

#[test]
fn timestamp_says_which_zone_its_text_gave() {
    let zone = |text: &str| Timestamp::parse_with_zone(text).unwrap().1;
    for utc in [
        "2026-11-26T08:00:00Z",
        "2026-11-26T08:00:00.000z",
        "2026-11-26T08:00:00+00:00",
        "2026-11-26T08:00:00-00:00",
    ] {
        assert_eq!(zone(utc), TimestampZone::Utc, "{utc}");
    }
    let (t, z) = Timestamp::parse_with_zone("2026-11-26T10:00:00+02:00").unwrap();
    assert_eq!(t.to_string(), "2026-11-26T08:00:00.000Z");
    let TimestampZone::Offset(offset) = z else {
        panic!("{z:?}")
    };
    assert_eq!(offset.local_minus_utc(), 7200);
    assert!(matches!(
        zone("2026-11-26T03:30:00-04:30"),
        TimestampZone::Offset(o) if o.local_minus_utc() == -16_200
    ));
    assert_eq!(zone("2026-11-26T08:00:00"), TimestampZone::Unspecified);
    assert!(Timestamp::parse_with_zone("tomorrow").is_err());
}

#[test]
fn timestamp_rejects_other_text_and_types() {
    for text in [
        "",
        "yesterday",
        "2026-11-26",
        "26/11/2026 08:00",
        "2026-13-01T00:00:00Z",
    ] {
        let e = Timestamp::parse(text).unwrap_err();
        assert!(e.to_string().starts_with(BAD_TIMESTAMP), "{e}");
    }
    let e = serde_json::from_value::<Timestamp>(json!(1764144000)).unwrap_err();
    assert!(e.to_string().starts_with("invalid type"), "{e}");
}

#[test]
fn timestamp_round_trips() {
    let t = Timestamp::parse("2026-02-28T23:59:59.999Z").unwrap();
    let back: Timestamp = serde_json::from_value(serde_json::to_value(t).unwrap()).unwrap();
    assert_eq!(back, t);
}

#[test]
fn decimal1_rounds_to_one_decimal_and_prints_it() {
    let cases = [
        (16.0, 160, "16.0"),
        (4.1, 41, "4.1"),
        (4.14, 41, "4.1"),
        (4.15, 42, "4.2"),
        (6.05, 61, "6.1"),
        (0.04, 0, "0.0"),
        (-2.26, -23, "-2.3"),
        (32.0000001, 320, "32.0"),
    ];
    for (input, tenths, text) in cases {
        let d = Decimal1::new(input).unwrap();
        assert_eq!(d.tenths(), tenths, "{input}");
        assert_eq!(serde_json::to_string(&d).unwrap(), text, "{input}");
        assert_eq!(d.to_string(), text, "{input}");
    }
    assert_eq!(
        serde_json::to_string(&Decimal1::from(16u32)).unwrap(),
        "16.0"
    );
}

#[test]
fn decimal1_deserialises_any_number_and_rejects_strings() {
    let d: Decimal1 = serde_json::from_value(json!(16)).unwrap();
    assert_eq!(d.tenths(), 160);
    let d: Decimal1 = serde_json::from_value(json!(7.46)).unwrap();
    assert_eq!(d.tenths(), 75);
    let d: Decimal1 = serde_json::from_value(json!(-1)).unwrap();
    assert_eq!(d.tenths(), -10);
    let e = serde_json::from_value::<Decimal1>(json!("16.0")).unwrap_err();
    assert!(e.to_string().starts_with("invalid type"), "{e}");
    let e = serde_json::from_value::<Decimal1>(json!(1e300)).unwrap_err();
    assert!(e.to_string().starts_with(OUT_OF_RANGE), "{e}");
    assert!(Decimal1::new(f64::NAN).is_err());
    assert!(Decimal1::new(f64::INFINITY).is_err());
}

#[test]
fn ci_strings_enforce_their_length_in_characters() {
    assert!(CiString20::new("a".repeat(20)).is_ok());
    let e = CiString20::new("a".repeat(21)).unwrap_err();
    assert_eq!(e, CiStringError { len: 21, max: 20 });
    assert!(e.to_string().starts_with(TOO_LONG));
    // Characters, not bytes: 20 two-byte characters fit.
    assert!(CiString20::new("é".repeat(20)).is_ok());
    assert!(CiString25::new("x".repeat(25)).is_ok());
    assert!(CiString25::new("x".repeat(26)).is_err());
    assert!(CiString50::new("x".repeat(50)).is_ok());
    assert!(CiString50::new("x".repeat(51)).is_err());
    assert!(CiString255::new("x".repeat(255)).is_ok());
    assert!(CiString255::new("x".repeat(256)).is_err());
    assert!(CiString500::new("x".repeat(500)).is_ok());
    assert!(CiString500::new("x".repeat(501)).is_err());

    let e = serde_json::from_value::<IdToken>(json!("B".repeat(21))).unwrap_err();
    assert!(e.to_string().starts_with(TOO_LONG), "{e}");
    assert!(
        !e.to_string().contains("BBB"),
        "the value is not echoed: {e}"
    );
    let e = serde_json::from_value::<IdToken>(json!(1234)).unwrap_err();
    assert!(e.to_string().starts_with("invalid type"), "{e}");
}

#[test]
fn ci_strings_compare_case_insensitively_and_keep_spelling() {
    let a = IdToken::new("AbCd1234").unwrap();
    let b = IdToken::new("abcd1234").unwrap();
    assert_eq!(a, b);
    assert_eq!(a, "ABCD1234");
    let set: HashSet<IdToken> = [a.clone(), b].into_iter().collect();
    assert_eq!(set.len(), 1);
    assert_eq!(a.as_str(), "AbCd1234");
    assert_eq!(&*a, "AbCd1234");
    assert_eq!(serde_json::to_value(&a).unwrap(), json!("AbCd1234"));
    assert_ne!(a, IdToken::new("abcd1235").unwrap());
}

#[test]
fn enums_use_the_spec_spellings() {
    let cases = [
        (
            serde_json::to_value(ChargePointStatus::SuspendedEvse).unwrap(),
            "SuspendedEVSE",
        ),
        (
            serde_json::to_value(ChargePointStatus::SuspendedEv).unwrap(),
            "SuspendedEV",
        ),
        (
            serde_json::to_value(UnitOfMeasure::Celcius).unwrap(),
            "Celcius",
        ),
        (
            serde_json::to_value(UnitOfMeasure::Celsius).unwrap(),
            "Celsius",
        ),
        (serde_json::to_value(UnitOfMeasure::KWh).unwrap(), "kWh"),
        (
            serde_json::to_value(Measurand::EnergyActiveImportRegister).unwrap(),
            "Energy.Active.Import.Register",
        ),
        (serde_json::to_value(Measurand::Rpm).unwrap(), "RPM"),
        (serde_json::to_value(Location::Ev).unwrap(), "EV"),
        (serde_json::to_value(Phase::L1N).unwrap(), "L1-N"),
        (
            serde_json::to_value(Reason::DeAuthorized).unwrap(),
            "DeAuthorized",
        ),
        (
            serde_json::to_value(Reason::EvDisconnected).unwrap(),
            "EVDisconnected",
        ),
        (
            serde_json::to_value(ChargePointErrorCode::EvCommunicationError).unwrap(),
            "EVCommunicationError",
        ),
        (
            serde_json::to_value(ReadingContext::SamplePeriodic).unwrap(),
            "Sample.Periodic",
        ),
    ];
    for (value, want) in cases {
        assert_eq!(value, json!(want));
    }
    for name in Measurand::WIRE_NAMES {
        let m: Measurand = serde_json::from_value(json!(name)).unwrap();
        assert_eq!(m.as_str(), *name);
    }
    assert_eq!(
        "Trigger".parse::<ReadingContext>(),
        Ok(ReadingContext::Trigger)
    );
}

#[test]
fn enums_reject_other_spellings_and_shapes() {
    let e = serde_json::from_value::<ChargePointStatus>(json!("SuspendedEvse")).unwrap_err();
    assert!(e.to_string().starts_with("unknown variant"), "{e}");
    let e = serde_json::from_value::<ChargePointStatus>(json!("available")).unwrap_err();
    assert!(e.to_string().starts_with("unknown variant"), "{e}");
    let e = serde_json::from_value::<ChargePointStatus>(json!({"Available": null})).unwrap_err();
    assert!(e.to_string().starts_with("invalid type"), "{e}");
    let e = serde_json::from_value::<ChargePointStatus>(json!(3)).unwrap_err();
    assert!(e.to_string().starts_with("invalid type"), "{e}");
    assert!("Foo".parse::<Reason>().is_err());
}

#[test]
fn action_lists_are_consistent() {
    let all: HashSet<&str> = ALL_ACTIONS.iter().copied().collect();
    assert_eq!(all.len(), 28);
    let cp: HashSet<&str> = CP_INITIATED.iter().copied().collect();
    let cs: HashSet<&str> = CSMS_INITIATED.iter().copied().collect();
    assert_eq!(cp.union(&cs).copied().collect::<HashSet<_>>(), all);
    assert_eq!(
        cp.intersection(&cs).copied().collect::<Vec<_>>(),
        vec!["DataTransfer"]
    );
    assert_eq!(SECURITY_WHITEPAPER_ACTIONS.len(), 11);
    assert!(SECURITY_WHITEPAPER_ACTIONS.iter().all(|a| !all.contains(a)));
    assert_eq!(BootNotificationRequest::ACTION, "BootNotification");
    assert_eq!(SetChargingProfileRequest::ACTION, "SetChargingProfile");
    assert!(is_csms_initiated("Reset") && !is_cp_initiated("Reset"));
    assert!(is_security_whitepaper_action("GetLog"));
}

#[test]
fn change_configuration_debug_hides_the_authorization_key() {
    let req = ChangeConfigurationRequest {
        key: CiString50::new("authorizationkey").unwrap(),
        value: CiString500::new("0123456789abcdef").unwrap(),
    };
    let shown = format!("{req:?}");
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
    assert!(shown.contains(crate::stack::secret::REDACTED), "{shown}");
    let req = ChangeConfigurationRequest {
        key: CiString50::new("HeartbeatInterval").unwrap(),
        value: CiString500::new("300").unwrap(),
    };
    assert!(format!("{req:?}").contains("300"));
}

#[test]
fn empty_payloads_are_empty_objects() {
    assert_eq!(
        serde_json::to_value(HeartbeatRequest {}).unwrap(),
        json!({})
    );
    assert!(serde_json::from_value::<HeartbeatRequest>(json!({"x": 1})).is_err());
}

#[test]
fn lists_that_need_an_element_reject_empty_ones() {
    let e = serde_json::from_value::<MeterValuesRequest>(json!({
        "connectorId": 1, "meterValue": []
    }))
    .unwrap_err();
    assert!(e.to_string().starts_with(EMPTY_LIST), "{e}");
    let e = serde_json::from_value::<MeterValue>(json!({
        "timestamp": "2026-11-26T08:00:00Z", "sampledValue": []
    }))
    .unwrap_err();
    assert!(e.to_string().starts_with(EMPTY_LIST), "{e}");
}

#[test]
fn absolute_uris_are_recognised() {
    for ok in [
        "ftp://user:pw@example.com/diag/",
        "https://example.com/fw/go.bin?x=1",
        "http://[::1]:8080/upload",
        "urn:example:file",
    ] {
        assert!(is_absolute_uri(ok), "{ok}");
    }
    for bad in [
        "",
        "firmware.bin",
        "/tmp/x",
        "1http://x",
        "http://a b",
        "ftp:",
        "://x",
    ] {
        assert!(!is_absolute_uri(bad), "{bad}");
    }
}
