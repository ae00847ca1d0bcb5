use super::*;

const KEY32: &str = "00112233445566778899aabbccddeeff";
const KEY40: &str = "00112233445566778899AABBCCDDEEFF01234567";

fn cfg() -> Configuration {
    Configuration::in_memory()
}

fn rejected(outcome: &ChangeOutcome) -> bool {
    matches!(outcome, ChangeOutcome::Rejected(_))
}

fn value(c: &Configuration, key: &str, channel: Channel) -> Option<String> {
    let (known, _) = c.get(&[key.to_string()], channel);
    known.into_iter().next().and_then(|e| e.value)
}

fn with_key() -> Configuration {
    let mut c = cfg();
    assert_eq!(
        c.change(AUTHORIZATION_KEY, KEY32, Channel::Ocpp),
        ChangeOutcome::Accepted
    );
    c
}

#[test]
fn registry_names_are_unique_and_defaults_are_valid() {
    let c = cfg();
    for (i, s) in registry().iter().enumerate() {
        assert!(
            registry()[..i].iter().all(|o| o.name != s.name),
            "{} twice",
            s.name
        );
        assert!(!s.description.is_empty(), "{} has no description", s.name);
        if !s.is_secret() {
            assert_eq!(
                c.validate(s, s.default).as_deref(),
                Ok(s.default),
                "default of {}",
                s.name
            );
        }
        assert!(std::ptr::eq(spec(s.name).unwrap(), s));
    }
    assert!(
        spec("heartbeatinterval").is_none(),
        "lookup is case-sensitive"
    );
}

#[test]
fn required_and_supported_keys_exist_with_documented_access() {
    let expect: &[(&str, Access)] = &[
        ("AllowOfflineTxForUnknownId", Access::ReadWrite),
        ("AuthorizationCacheEnabled", Access::ReadWrite),
        ("AuthorizeRemoteTxRequests", Access::ReadWrite),
        ("ClockAlignedDataInterval", Access::ReadWrite),
        ("ConnectionTimeOut", Access::ReadWrite),
        ("ConnectorPhaseRotation", Access::ReadWrite),
        ("ConnectorPhaseRotationMaxLength", Access::ReadOnly),
        ("GetConfigurationMaxKeys", Access::ReadOnly),
        ("HeartbeatInterval", Access::ReadWrite),
        ("LightIntensity", Access::ReadWrite),
        ("LocalAuthorizeOffline", Access::ReadWrite),
        ("LocalPreAuthorize", Access::ReadWrite),
        ("MessageTimeout", Access::ReadWrite),
        ("MeterValuesAlignedData", Access::ReadWrite),
        ("MeterValuesAlignedDataMaxLength", Access::ReadOnly),
        ("MeterValuesSampledData", Access::ReadWrite),
        ("MeterValuesSampledDataMaxLength", Access::ReadOnly),
        ("MeterValueSampleInterval", Access::ReadWrite),
        ("MinimumStatusDuration", Access::ReadWrite),
        ("NumberOfConnectors", Access::ReadOnly),
        ("ResetRetries", Access::ReadWrite),
        ("StopTransactionMaxMeterValues", Access::ReadOnly),
        ("StopTransactionOnEVSideDisconnect", Access::ReadWrite),
        ("StopTransactionOnInvalidId", Access::ReadWrite),
        ("StopTxnAlignedData", Access::ReadWrite),
        ("StopTxnAlignedDataMaxLength", Access::ReadOnly),
        ("StopTxnSampledData", Access::ReadWrite),
        ("StopTxnSampledDataMaxLength", Access::ReadOnly),
        ("SupportedFeatureProfiles", Access::ReadOnly),
        ("SupportedFeatureProfilesMaxLength", Access::ReadOnly),
        ("TransactionMessageAttempts", Access::ReadWrite),
        ("TransactionMessageRetryInterval", Access::ReadWrite),
        ("UnlockConnectorOnEVSideDisconnect", Access::ReadWrite),
        ("WebSocketPingInterval", Access::ReadWrite),
        ("LocalAuthListEnabled", Access::ReadWrite),
        ("LocalAuthListMaxLength", Access::ReadOnly),
        ("SendLocalListMaxLength", Access::ReadOnly),
        ("ReserveConnectorZeroSupported", Access::ReadOnly),
        ("ChargeProfileMaxStackLevel", Access::ReadOnly),
        ("ChargingScheduleAllowedChargingRateUnit", Access::ReadOnly),
        ("ChargingScheduleMaxPeriods", Access::ReadOnly),
        ("MaxChargingProfilesInstalled", Access::ReadOnly),
        ("SupportedFileTransferProtocols", Access::ReadOnly),
        ("SecurityProfile", Access::ReadWrite),
        ("AuthorizationKey", Access::WriteOnly),
        ("FreeCharging", Access::ReadWrite),
        ("FreeChargingIdTag", Access::ReadWrite),
        ("LockCablePermanently", Access::ReadWrite),
        ("CsmsUrl", Access::ReadWrite),
        ("ChargePointId", Access::ReadWrite),
        ("BasicAuthPassword", Access::ReadWrite),
    ];
    for (name, access) in expect {
        let s = spec(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(s.access, *access, "{name}");
    }
    assert_eq!(
        registry().len(),
        expect.len(),
        "registry has unexpected keys"
    );
}

#[test]
fn fixed_values_match_the_release_notes() {
    let c = cfg();
    assert_eq!(c.int(IntKey::LOCAL_AUTH_LIST_MAX_LENGTH), 1024);
    assert_eq!(c.int(IntKey::SEND_LOCAL_LIST_MAX_LENGTH), 255);
    assert_eq!(c.int(IntKey::NUMBER_OF_CONNECTORS), 1);
    assert_eq!(
        c.text(ListKey::SUPPORTED_FEATURE_PROFILES),
        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"
    );
    assert_eq!(
        c.list(ListKey::CHARGING_SCHEDULE_ALLOWED_CHARGING_RATE_UNIT),
        ["Current"]
    );
    assert_eq!(
        c.list(ListKey::SUPPORTED_FILE_TRANSFER_PROTOCOLS),
        ["HTTP", "HTTPS"]
    );
    assert_eq!(c.text(ListKey::CONNECTOR_PHASE_ROTATION), "0.RST,1.RST");
    assert_eq!(c.int(IntKey::HEARTBEAT_INTERVAL), 86400);
    assert_eq!(c.int(IntKey::METER_VALUE_SAMPLE_INTERVAL), 60);
    assert_eq!(c.int(IntKey::MESSAGE_TIMEOUT), 30);
    assert_eq!(c.int(IntKey::SECURITY_PROFILE), 0);
    assert!(c.bool(BoolKey::STOP_TRANSACTION_ON_EV_SIDE_DISCONNECT));
    assert!(c.list(ListKey::STOP_TXN_SAMPLED_DATA).is_empty());
}

#[test]
fn unsupported_keys_are_not_supported_and_unknown() {
    let absent = [
        "BlinkRepeat",
        "MaxEnergyOnInvalidId",
        "ConnectorSwitch3to1PhaseSupported",
        "MeterValuesSignatureContexts",
        "StopTransactionSignatureContexts",
        "StopTransactionSignatureFormat",
        "AdditionalRootCertificateCheck",
        "CertificateSignedMaxChainSize",
        "CertificateStoreMaxLength",
        "CpoName",
    ];
    let mut c = cfg();
    for name in absent {
        for ch in [Channel::Ocpp, Channel::Service] {
            assert_eq!(
                c.change(name, "1", ch),
                ChangeOutcome::NotSupported,
                "{name}"
            );
        }
        assert!(spec(name).is_none());
    }
    let names: Vec<String> = absent.iter().map(|s| s.to_string()).collect();
    let (known, unknown) = c.get(&names, Channel::Ocpp);
    assert!(known.is_empty());
    assert_eq!(unknown, names);
}

/// (key, accepted values with their stored form, rejected values)
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

#[test]
fn every_writable_key_accepts_and_rejects_per_its_rules() {
    let bools: &[(&str, &str)] = &[("true", "true"), ("FALSE", "false"), ("True", "true")];
    let bad_bools: &[&str] = &["yes", "1", "", " true"];
    let cases: &[Case] = &[
        (ALLOW_OFFLINE_TX_FOR_UNKNOWN_ID, bools, bad_bools),
        (AUTHORIZATION_CACHE_ENABLED, bools, bad_bools),
        (AUTHORIZE_REMOTE_TX_REQUESTS, bools, bad_bools),
        (LOCAL_AUTHORIZE_OFFLINE, bools, bad_bools),
        (LOCAL_PRE_AUTHORIZE, bools, bad_bools),
        (STOP_TRANSACTION_ON_INVALID_ID, bools, bad_bools),
        (UNLOCK_CONNECTOR_ON_EV_SIDE_DISCONNECT, bools, bad_bools),
        (LOCAL_AUTH_LIST_ENABLED, bools, bad_bools),
        (FREE_CHARGING, bools, bad_bools),
        (
            LOCK_CABLE_PERMANENTLY,
            &[("TRUE", "true"), ("false", "false")],
            bad_bools,
        ),
        (
            STOP_TRANSACTION_ON_EV_SIDE_DISCONNECT,
            &[("true", "true"), ("TRUE", "true")],
            &["false", "False", "no"],
        ),
        (
            HEARTBEAT_INTERVAL,
            &[
                ("0", "0"),
                ("1", "1"),
                ("4294967", "4294967"),
                ("+300", "300"),
            ],
            &["-1", "4294968", "abc", "", "1.5", "99999999999999999999999"],
        ),
        (
            METER_VALUE_SAMPLE_INTERVAL,
            &[("0", "0"), ("4294967", "4294967"), ("010", "10")],
            &["-5", "4294968", "ten", " 10"],
        ),
        (
            CLOCK_ALIGNED_DATA_INTERVAL,
            &[
                ("0", "0"),
                ("900", "900"),
                ("86400", "86400"),
                ("86401", "86401"),
                ("4294967", "4294967"),
            ],
            &["-1", "4294968", "x"],
        ),
        (
            CONNECTION_TIME_OUT,
            &[("1", "1"), ("120", "120"), ("3600", "3600")],
            &["0", "-1", "3601", "x"],
        ),
        (
            LIGHT_INTENSITY,
            &[("0", "0"), ("55", "55"), ("100", "100")],
            &["-1", "101", "full"],
        ),
        (
            MESSAGE_TIMEOUT,
            &[("1", "1"), ("3600", "3600")],
            &["0", "-1", "3601"],
        ),
        (
            MINIMUM_STATUS_DURATION,
            &[("0", "0"), ("86400", "86400")],
            &["-1", "86401", "x"],
        ),
        (RESET_RETRIES, &[("0", "0"), ("100", "100")], &["-1", "101"]),
        (
            TRANSACTION_MESSAGE_ATTEMPTS,
            &[("0", "0"), ("5", "5"), ("100", "100")],
            &["-1", "101", "x"],
        ),
        (
            TRANSACTION_MESSAGE_RETRY_INTERVAL,
            &[("1", "1"), ("86400", "86400")],
            &["0", "-1", "86401"],
        ),
        (
            WEB_SOCKET_PING_INTERVAL,
            &[("0", "0"), ("10", "10"), ("86400", "86400")],
            &["-1", "86401", "x"],
        ),
        (
            CONNECTOR_PHASE_ROTATION,
            &[
                ("0.RST,1.RST", "0.RST,1.RST"),
                ("1.TSR", "1.TSR"),
                ("0.NotApplicable, 1.Unknown", "0.NotApplicable,1.Unknown"),
            ],
            &[
                "",
                "2.RST",
                "1.ABC",
                "1.rst",
                "RST",
                "x.RST",
                "-1.RST",
                "1.RST,1.STR",
                "0.RST,1.RST,0.STR",
                "0.RST,,1.RST",
            ],
        ),
        (
            FREE_CHARGING_ID_TAG,
            &[("A", "A"), ("12345678901234567890", "12345678901234567890")],
            &["", "123456789012345678901"],
        ),
    ];
    for (key, accepted, bad) in cases {
        for (input, stored) in *accepted {
            let mut c = cfg();
            let out = c.change(key, input, Channel::Ocpp);
            assert_eq!(out, ChangeOutcome::Accepted, "{key}={input:?}");
            assert_eq!(
                value(&c, key, Channel::Ocpp).as_deref(),
                Some(*stored),
                "{key}"
            );
        }
        for input in *bad {
            let mut c = cfg();
            let before = value(&c, key, Channel::Ocpp);
            let out = c.change(key, input, Channel::Ocpp);
            assert!(rejected(&out), "{key}={input:?} gave {out:?}");
            assert_eq!(value(&c, key, Channel::Ocpp), before, "{key} changed");
        }
    }
}

#[test]
fn rejection_reason_names_the_key_and_range() {
    let mut c = cfg();
    let ChangeOutcome::Rejected(why) = c.change(HEARTBEAT_INTERVAL, "4294968", Channel::Ocpp)
    else {
        panic!("not rejected")
    };
    assert!(why.contains("HeartbeatInterval"), "{why}");
    assert!(why.contains("0..=4294967"), "{why}");
}

#[test]
fn read_only_keys_are_rejected_on_every_channel() {
    let mut c = cfg();
    for s in registry().iter().filter(|s| s.access == Access::ReadOnly) {
        for ch in [Channel::Ocpp, Channel::Service] {
            let out = c.change(s.name, s.default, ch);
            assert!(rejected(&out), "{} over {ch:?}: {out:?}", s.name);
        }
        let (known, _) = c.get(&[s.name.to_string()], Channel::Ocpp);
        assert!(known[0].readonly, "{}", s.name);
    }
}

#[test]
fn measurand_lists_accept_supported_measurands_only() {
    for typed in [
        ListKey::METER_VALUES_SAMPLED_DATA,
        ListKey::METER_VALUES_ALIGNED_DATA,
        ListKey::STOP_TXN_SAMPLED_DATA,
        ListKey::STOP_TXN_ALIGNED_DATA,
    ] {
        let key = typed.name();
        let mut c = cfg();
        let all = SUPPORTED_MEASURANDS.join(",");
        assert_eq!(c.change(key, &all, Channel::Ocpp), ChangeOutcome::Accepted);
        assert_eq!(c.list(typed), SUPPORTED_MEASURANDS);
        assert_eq!(c.change(key, "", Channel::Ocpp), ChangeOutcome::Accepted);
        assert!(c.list(typed).is_empty(), "{key}: empty list allowed");
        assert_eq!(
            c.change(key, "Voltage, Current.Import", Channel::Ocpp),
            ChangeOutcome::Accepted
        );
        assert_eq!(c.text(typed), "Voltage,Current.Import");
        for bad in [
            "Power.Active.Import",
            "Voltage,Power.Active.Import",
            "Voltage,Voltage",
            "voltage",
            "Voltage,",
            "Current.Import.L1",
        ] {
            let out = c.change(key, bad, Channel::Ocpp);
            assert!(rejected(&out), "{key}={bad}: {out:?}");
            assert_eq!(
                c.text(typed),
                "Voltage,Current.Import",
                "{key} changed by {bad}"
            );
        }
    }
}

#[test]
fn measurand_lists_respect_their_max_length() {
    let mut c = cfg();
    c.set_internal(METER_VALUES_SAMPLED_DATA_MAX_LENGTH, "2")
        .unwrap();
    assert_eq!(
        c.change(
            METER_VALUES_SAMPLED_DATA,
            "Voltage,Temperature",
            Channel::Ocpp
        ),
        ChangeOutcome::Accepted
    );
    let out = c.change(
        METER_VALUES_SAMPLED_DATA,
        "Voltage,Temperature,Current.Import",
        Channel::Ocpp,
    );
    let ChangeOutcome::Rejected(why) = out else {
        panic!("{out:?}")
    };
    assert!(why.contains("MeterValuesSampledDataMaxLength"), "{why}");
    // The other lists have their own limit.
    assert_eq!(
        c.change(
            STOP_TXN_SAMPLED_DATA,
            "Voltage,Temperature,Current.Import",
            Channel::Ocpp
        ),
        ChangeOutcome::Accepted
    );
}

#[test]
fn phase_rotation_follows_number_of_connectors_and_max_length() {
    let mut c = cfg();
    c.set_internal(NUMBER_OF_CONNECTORS, "2").unwrap();
    assert!(rejected(&c.change(
        CONNECTOR_PHASE_ROTATION,
        "0.RST,1.RST,2.STR",
        Channel::Ocpp
    )));
    c.set_internal(CONNECTOR_PHASE_ROTATION_MAX_LENGTH, "3")
        .unwrap();
    assert_eq!(
        c.change(CONNECTOR_PHASE_ROTATION, "0.RST,1.RST,2.STR", Channel::Ocpp),
        ChangeOutcome::Accepted
    );
    assert!(rejected(&c.change(
        CONNECTOR_PHASE_ROTATION,
        "3.RST",
        Channel::Ocpp
    )));
}

#[test]
fn lock_cable_permanently_hides_and_restores_unlock_on_disconnect() {
    let mut c = cfg();
    let key = UNLOCK_CONNECTOR_ON_EV_SIDE_DISCONNECT;
    let typed = BoolKey::UNLOCK_CONNECTOR_ON_EV_SIDE_DISCONNECT;
    assert_eq!(
        c.change(key, "true", Channel::Ocpp),
        ChangeOutcome::Accepted
    );
    assert_eq!(
        c.change(LOCK_CABLE_PERMANENTLY, "true", Channel::Ocpp),
        ChangeOutcome::Accepted
    );
    let (known, _) = c.get(&[key.to_string()], Channel::Ocpp);
    assert_eq!(known[0].value.as_deref(), Some("false"));
    assert!(known[0].readonly);
    assert!(!c.bool(typed));
    for v in ["false", "true"] {
        for ch in [Channel::Ocpp, Channel::Service] {
            assert!(rejected(&c.change(key, v, ch)), "{v} over {ch:?}");
        }
    }
    // Also in the full listing.
    let (all, _) = c.get(&[], Channel::Ocpp);
    let e = all.iter().find(|e| e.key == key).unwrap();
    assert_eq!((e.value.as_deref(), e.readonly), (Some("false"), true));

    assert_eq!(
        c.change(LOCK_CABLE_PERMANENTLY, "false", Channel::Ocpp),
        ChangeOutcome::Accepted
    );
    let (known, _) = c.get(&[key.to_string()], Channel::Ocpp);
    assert_eq!(
        known[0].value.as_deref(),
        Some("true"),
        "original value back"
    );
    assert!(!known[0].readonly);
    assert!(c.bool(typed));
    assert_eq!(
        c.change(key, "false", Channel::Ocpp),
        ChangeOutcome::Accepted
    );
    assert!(!c.bool(typed));
}

#[test]
fn security_profile_needs_a_key() {
    let mut c = cfg();
    let out = c.change(SECURITY_PROFILE, "1", Channel::Ocpp);
    let ChangeOutcome::Rejected(why) = out else {
        panic!("{out:?}")
    };
    assert!(why.contains("AuthorizationKey"), "{why}");
    assert!(rejected(&c.change(SECURITY_PROFILE, "1", Channel::Service)));
    assert_eq!(c.security_profile(), 0);
}

#[test]
fn security_profile_accepts_only_0_and_1_upward() {
    let mut c = with_key();
    for bad in ["2", "3", "-1", "one", "0"] {
        assert!(
            rejected(&c.change(SECURITY_PROFILE, bad, Channel::Ocpp)),
            "{bad}"
        );
    }
    assert_eq!(
        c.change(SECURITY_PROFILE, "1", Channel::Ocpp),
        ChangeOutcome::Accepted
    );
    assert_eq!(c.security_profile(), 1);
    assert!(
        rejected(&c.change(SECURITY_PROFILE, "1", Channel::Ocpp)),
        "equal"
    );
    assert!(
        rejected(&c.change(SECURITY_PROFILE, "0", Channel::Ocpp)),
        "downward"
    );
    assert_eq!(c.security_profile(), 1);
    // The stack falls back after a failed reconnect.
    c.revert_security_profile(0).unwrap();
    assert_eq!(c.security_profile(), 0);
    assert!(c.revert_security_profile(2).is_err());
    assert_eq!(c.security_profile(), 0);
}

#[test]
fn service_port_may_lower_the_security_profile() {
    let mut c = with_key();
    assert_eq!(
        c.change(SECURITY_PROFILE, "1", Channel::Service),
        ChangeOutcome::Accepted
    );
    assert_eq!(
        c.change(SECURITY_PROFILE, "0", Channel::Service),
        ChangeOutcome::Accepted
    );
    assert!(rejected(&c.change(SECURITY_PROFILE, "2", Channel::Service)));
}

#[test]
fn authorization_key_length_and_hex_rules() {
    let ok = [KEY32, KEY40, "0123456789abcdefABCDEF0123456789abcd"];
    for k in ok {
        let mut c = cfg();
        assert_eq!(
            c.change(AUTHORIZATION_KEY, k, Channel::Ocpp),
            ChangeOutcome::Accepted,
            "{} digits",
            k.len()
        );
        assert_eq!(c.authorization_key().unwrap().expose(), k);
    }
    let bad = [
        "".to_string(),
        "00112233445566778899aabbccddee".to_string(), // 15 bytes
        format!("{KEY40}00"),                         // 21 bytes
        "00112233445566778899aabbccddeeff0".to_string(), // odd
        "00112233445566778899aabbccddeefg".to_string(), // non-hex
        "0011223344556677 899aabbccddeeff00".to_string(), // blank
        "SECRETSECRETSECRETSECRETSECRETSE".to_string(), // non-hex, 32 chars
    ];
    for k in &bad {
        let mut c = cfg();
        let out = c.change(AUTHORIZATION_KEY, k, Channel::Ocpp);
        let ChangeOutcome::Rejected(why) = &out else {
            panic!("{out:?}")
        };
        assert!(c.authorization_key().is_none());
        if !k.is_empty() {
            assert!(!why.contains(k.as_str()), "reason echoes the key: {why}");
        }
        assert!(!why.contains("SECRET"), "{why}");
    }
}

#[test]
fn authorization_key_is_never_returned() {
    let mut c = with_key();
    assert_eq!(
        c.change(SECURITY_PROFILE, "1", Channel::Ocpp),
        ChangeOutcome::Accepted
    );
    for ch in [Channel::Ocpp, Channel::Service] {
        let (all, _) = c.get(&[], ch);
        let e = all.iter().find(|e| e.key == AUTHORIZATION_KEY).unwrap();
        assert_eq!(e.value, None);
        assert!(!e.readonly);
        assert!(e.write_only);
        let (named, unknown) = c.get(&[AUTHORIZATION_KEY.to_string()], ch);
        assert!(unknown.is_empty());
        assert_eq!(named[0].value, None);
        let shown = format!("{all:?}{}", serde_json::to_string(&all).unwrap());
        assert!(!shown.to_lowercase().contains(KEY32), "{shown}");
    }
    assert_eq!(c.text(SecretKey::AUTHORIZATION_KEY), "");
    let debug = format!("{c:?}");
    assert!(!debug.contains(KEY32), "{debug}");
    assert!(debug.contains(REDACTED));
    let outcome = c.change(AUTHORIZATION_KEY, KEY40, Channel::Ocpp);
    assert!(!format!("{outcome:?}").contains(KEY40));
    assert!(!format!("{:?}", c.basic_auth_password()).contains("0011"));
}

#[test]
fn basic_auth_password_follows_basic_auth_password_key() {
    let mut c = cfg();
    assert!(c.basic_auth_password().is_none());
    c.change(AUTHORIZATION_KEY, KEY32, Channel::Ocpp);
    assert_eq!(
        c.basic_auth_password().unwrap().expose(),
        hex::decode(KEY32).unwrap().as_slice()
    );
    assert_eq!(
        c.change(BASIC_AUTH_PASSWORD, "hex", Channel::Service),
        ChangeOutcome::RebootRequired
    );
    assert_eq!(c.basic_auth_password().unwrap().expose(), KEY32.as_bytes());
    assert!(rejected(&c.change(
        BASIC_AUTH_PASSWORD,
        "base64",
        Channel::Service
    )));
}

#[test]
fn service_port_can_remove_the_key_only_at_profile_0() {
    let mut c = with_key();
    assert!(rejected(&c.change(AUTHORIZATION_KEY, "", Channel::Ocpp)));
    c.change(SECURITY_PROFILE, "1", Channel::Ocpp);
    assert!(rejected(&c.change(AUTHORIZATION_KEY, "", Channel::Service)));
    c.revert_security_profile(0).unwrap();
    assert_eq!(
        c.change(AUTHORIZATION_KEY, "", Channel::Service),
        ChangeOutcome::Accepted
    );
    assert!(c.authorization_key().is_none());
}

#[test]
fn service_only_keys_are_invisible_over_ocpp() {
    let mut c = cfg();
    for key in [CSMS_URL, CHARGE_POINT_ID, BASIC_AUTH_PASSWORD] {
        let (known, unknown) = c.get(&[key.to_string()], Channel::Ocpp);
        assert!(known.is_empty());
        assert_eq!(unknown, [key]);
        let (all, _) = c.get(&[], Channel::Ocpp);
        assert!(all.iter().all(|e| e.key != key));
        assert_eq!(
            c.change(key, "x", Channel::Ocpp),
            ChangeOutcome::NotSupported
        );
        let (known, _) = c.get(&[key.to_string()], Channel::Service);
        assert_eq!(known.len(), 1);
        assert!(known[0].reboot_required);
    }
}

#[test]
fn service_only_keys_validate_their_values() {
    let mut c = cfg();
    for url in [
        "ws://127.0.0.1:9000/ocpp",
        "wss://csms.example.com/ocpp/v16",
        "ws://[::1]:8180",
        "",
    ] {
        assert_eq!(
            c.change(CSMS_URL, url, Channel::Service),
            ChangeOutcome::RebootRequired,
            "{url}"
        );
        assert_eq!(c.text(TextKey::CSMS_URL), url);
    }
    for url in [
        "http://example.com",
        "ws://",
        "ws://host:0/x",
        "ws://host:99999",
        "ws://host:abc",
        "ws://user:pw@host/x",
        "ws://host/x?y=1",
        "ws://ho st/",
        "wss//host",
    ] {
        assert!(
            rejected(&c.change(CSMS_URL, url, Channel::Service)),
            "{url}"
        );
    }
    for id in ["CP1", "ZAP000123", &"x".repeat(48)] {
        assert_eq!(
            c.change(CHARGE_POINT_ID, id, Channel::Service),
            ChangeOutcome::RebootRequired
        );
    }
    for id in ["", "a/b", "a b", "tab\t", &"x".repeat(49)] {
        assert!(
            rejected(&c.change(CHARGE_POINT_ID, id, Channel::Service)),
            "{id:?}"
        );
    }
}

#[test]
fn get_named_keys_splits_known_and_unknown_in_request_order() {
    let c = cfg();
    let ask: Vec<String> = [
        "MeterValueSampleInterval",
        "Nope",
        "HeartbeatInterval",
        "Nope",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (known, unknown) = c.get(&ask, Channel::Ocpp);
    let names: Vec<&str> = known.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(names, ["MeterValueSampleInterval", "HeartbeatInterval"]);
    assert_eq!(unknown, ["Nope"]);
    assert_eq!(known[1].value.as_deref(), Some("86400"));
    assert_eq!(known[1].value_type, "integer");
    let (all, unknown) = c.get(&[], Channel::Ocpp);
    assert!(unknown.is_empty());
    let ocpp_keys: Vec<&str> = registry()
        .iter()
        .filter(|s| s.visibility == Visibility::Ocpp)
        .map(|s| s.name)
        .collect();
    let listed: Vec<&str> = all.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(listed, ocpp_keys, "registry order");
    assert!(
        all.iter()
            .any(|e| e.key == GET_CONFIGURATION_MAX_KEYS && e.readonly)
    );
}

#[test]
fn no_reboot_for_ocpp_keys() {
    let mut c = cfg();
    for s in registry()
        .iter()
        .filter(|s| s.visibility == Visibility::Ocpp)
    {
        assert!(!s.reboot_required, "{}", s.name);
    }
    assert_eq!(
        c.change(LOCAL_AUTH_LIST_ENABLED, "false", Channel::Ocpp),
        ChangeOutcome::Accepted
    );
}

#[test]
fn set_internal_validates_but_bypasses_access() {
    let mut c = cfg();
    c.set_internal(HEARTBEAT_INTERVAL, "300").unwrap();
    assert_eq!(c.int(IntKey::HEARTBEAT_INTERVAL), 300);
    c.set_internal(NUMBER_OF_CONNECTORS, "2").unwrap();
    assert_eq!(c.int(IntKey::NUMBER_OF_CONNECTORS), 2);
    let err = c.set_internal(HEARTBEAT_INTERVAL, "-3").unwrap_err();
    assert!(err.to_string().contains("HeartbeatInterval"), "{err}");
    assert!(matches!(
        c.set_internal("Nope", "1"),
        Err(Error::UnknownKey(_))
    ));
    let err = c.set_internal(AUTHORIZATION_KEY, "abc").unwrap_err();
    assert!(!err.to_string().contains("abc"), "{err}");
}

#[test]
fn persistence_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Configuration::open(dir.path()).unwrap();
    assert_eq!(
        c.change(HEARTBEAT_INTERVAL, "120", Channel::Ocpp),
        ChangeOutcome::Accepted
    );
    c.change(
        METER_VALUES_SAMPLED_DATA,
        "Voltage,Temperature",
        Channel::Ocpp,
    );
    c.change(LOCK_CABLE_PERMANENTLY, "true", Channel::Ocpp);
    c.change(CSMS_URL, "wss://csms.example.com/ocpp", Channel::Service);
    c.change(AUTHORIZATION_KEY, KEY40, Channel::Ocpp);
    c.change(SECURITY_PROFILE, "1", Channel::Ocpp);
    assert_eq!(c.security_profile(), 1);

    let r = Configuration::open(dir.path()).unwrap();
    assert_eq!(r.int(IntKey::HEARTBEAT_INTERVAL), 120);
    assert_eq!(
        r.list(ListKey::METER_VALUES_SAMPLED_DATA),
        ["Voltage", "Temperature"]
    );
    assert!(r.bool(BoolKey::LOCK_CABLE_PERMANENTLY));
    assert_eq!(r.text(TextKey::CSMS_URL), "wss://csms.example.com/ocpp");
    assert_eq!(r.security_profile(), 1);
    assert_eq!(r.authorization_key().unwrap().expose(), KEY40);

    let config = std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap();
    assert!(!config.contains(KEY40), "key leaked into config.json");
    assert!(!config.contains("AuthorizationKey"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SECRETS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn open_ignores_unknown_keys_defaults_missing_ones_and_keeps_firmware_constants() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(CONFIG_FILE),
        r#"{"version":1,"values":{"HeartbeatInterval":"42","RetiredKey":"x","LocalAuthListMaxLength":"5"}}"#,
    )
    .unwrap();
    let c = Configuration::open(dir.path()).unwrap();
    assert_eq!(c.int(IntKey::HEARTBEAT_INTERVAL), 42);
    assert_eq!(c.int(IntKey::METER_VALUE_SAMPLE_INTERVAL), 60);
    assert_eq!(c.int(IntKey::LOCAL_AUTH_LIST_MAX_LENGTH), 1024);
}

#[test]
fn corrupt_files_name_the_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_FILE);
    std::fs::write(&path, b"{\"version\":1,\"values\":{").unwrap();
    let err = Configuration::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("line 1"), "{err}");

    std::fs::write(&path, br#"{"version":9,"values":{}}"#).unwrap();
    let err = Configuration::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("config.json") && err.contains('9'), "{err}");

    std::fs::write(&path, br#"{"version":1,"values":{"LightIntensity":"150"}}"#).unwrap();
    let err = Configuration::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("LightIntensity"),
        "{err}"
    );

    std::fs::remove_file(&path).unwrap();
    let secrets = dir.path().join(SECRETS_FILE);
    std::fs::write(
        &secrets,
        br#"{"version":1,"AuthorizationKey":"SECRETSECRET"}"#,
    )
    .unwrap();
    let err = Configuration::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("secrets.json"), "{err}");
    assert!(!err.contains("SECRET"), "{err}");
    std::fs::write(&secrets, br#"{"version":"SECRETSECRET"}"#).unwrap();
    let err = Configuration::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("secrets.json") && !err.contains("SECRET"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn failed_write_rejects_and_leaves_memory_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where config.json should be makes the rename fail.
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join(CONFIG_FILE)).unwrap();
    std::fs::create_dir_all(state.join(SECRETS_FILE)).unwrap();
    std::fs::write(state.join(CONFIG_FILE).join("x"), b"x").unwrap();
    std::fs::write(state.join(SECRETS_FILE).join("x"), b"x").unwrap();
    let mut c = Configuration::in_memory();
    c.state_dir = Some(state);
    let out = c.change(HEARTBEAT_INTERVAL, "99", Channel::Ocpp);
    let ChangeOutcome::Rejected(why) = out else {
        panic!("{out:?}")
    };
    assert!(why.contains("config.json"), "{why}");
    assert_eq!(c.int(IntKey::HEARTBEAT_INTERVAL), 86400);
    let out = c.change(AUTHORIZATION_KEY, KEY32, Channel::Ocpp);
    let ChangeOutcome::Rejected(why) = out else {
        panic!("{out:?}")
    };
    assert!(!why.contains(KEY32), "{why}");
    assert!(c.authorization_key().is_none());
}

#[test]
fn check_change_answers_like_change_without_changing() {
    let mut c = cfg();
    assert_eq!(
        c.check_change(HEARTBEAT_INTERVAL, "300", Channel::Ocpp),
        ChangeOutcome::Accepted
    );
    assert_eq!(c.int(IntKey::HEARTBEAT_INTERVAL), 86400);
    assert!(rejected(&c.check_change(
        HEARTBEAT_INTERVAL,
        "-1",
        Channel::Ocpp
    )));
    assert!(rejected(&c.check_change(
        SECURITY_PROFILE,
        "1",
        Channel::Ocpp
    )));
    assert_eq!(
        c.check_change(CSMS_URL, "ws://h/x", Channel::Service),
        ChangeOutcome::RebootRequired
    );
    assert_eq!(
        c.check_change(CSMS_URL, "ws://h/x", Channel::Ocpp),
        ChangeOutcome::NotSupported
    );
    assert_eq!(
        c.check_change(AUTHORIZATION_KEY, KEY32, Channel::Ocpp),
        ChangeOutcome::Accepted
    );
    assert!(c.authorization_key().is_none());
    for (key, v) in [
        (LIGHT_INTENSITY, "7"),
        (LIGHT_INTENSITY, "700"),
        (NUMBER_OF_CONNECTORS, "2"),
        ("BlinkRepeat", "1"),
    ] {
        let dry = c.check_change(key, v, Channel::Ocpp);
        assert_eq!(dry, c.change(key, v, Channel::Ocpp), "{key}={v}");
    }
}

#[test]
fn overlong_values_are_rejected() {
    let mut c = cfg();
    let long = "1".repeat(MAX_VALUE_CHARS + 1);
    let out = c.change(FREE_CHARGING_ID_TAG, &long, Channel::Ocpp);
    let ChangeOutcome::Rejected(why) = out else {
        panic!("{out:?}")
    };
    assert!(why.contains("at most 500"), "{why}");
    assert!(!why.contains(&long));
}

#[test]
fn allowed_values_describe_fixed_sets() {
    let values = |k| spec(k).unwrap().allowed_values();
    assert_eq!(values(FREE_CHARGING), Some(&["true", "false"][..]));
    assert_eq!(
        values(STOP_TRANSACTION_ON_EV_SIDE_DISCONNECT),
        Some(&["true"][..])
    );
    assert_eq!(
        values(STOP_TXN_SAMPLED_DATA),
        Some(&SUPPORTED_MEASURANDS[..])
    );
    assert_eq!(values(BASIC_AUTH_PASSWORD), Some(&["bytes", "hex"][..]));
    assert_eq!(values(HEARTBEAT_INTERVAL), None);
}

#[test]
fn read_only_overrides_survive_restart_and_validate_dependent_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Configuration::open(dir.path()).unwrap();
    c.set_internal(NUMBER_OF_CONNECTORS, "2").unwrap();
    c.set_internal(CONNECTOR_PHASE_ROTATION_MAX_LENGTH, "3")
        .unwrap();
    assert_eq!(
        c.change(CONNECTOR_PHASE_ROTATION, "0.RST,1.RST,2.TSR", Channel::Ocpp),
        ChangeOutcome::Accepted
    );
    let r = Configuration::open(dir.path()).unwrap();
    assert_eq!(r.int(IntKey::NUMBER_OF_CONNECTORS), 2);
    assert_eq!(
        r.text(ListKey::CONNECTOR_PHASE_ROTATION),
        "0.RST,1.RST,2.TSR"
    );
    // Unchanged read-only keys are not stored at all.
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(CONFIG_FILE)).unwrap()).unwrap();
    assert!(doc["values"].get(LOCAL_AUTH_LIST_MAX_LENGTH).is_none());
    assert!(doc["overrides"].get(LOCAL_AUTH_LIST_MAX_LENGTH).is_none());
    assert_eq!(doc["overrides"][NUMBER_OF_CONNECTORS], "2");
    assert_eq!(
        doc["values"][HEARTBEAT_INTERVAL], "86400",
        "all writable keys stored"
    );
}

#[test]
fn typed_handles_match_the_registry_types() {
    fn kind(t: ValueType) -> &'static str {
        t.as_str()
    }
    let typed: &[(Key, &str)] = &[
        (BoolKey::FREE_CHARGING.into(), "boolean"),
        (IntKey::MESSAGE_TIMEOUT.into(), "integer"),
        (ListKey::METER_VALUES_SAMPLED_DATA.into(), "list"),
        (TextKey::CSMS_URL.into(), "string"),
        (SecretKey::AUTHORIZATION_KEY.into(), "string"),
    ];
    for (key, expect) in typed {
        assert_eq!(kind(key.spec().value_type), *expect, "{}", key.name());
    }
    // Each key is its own registry index, and names round-trip.
    for (i, spec) in registry().iter().enumerate() {
        let key = Key::find(spec.name).unwrap();
        assert_eq!(key as usize, i);
        assert_eq!(key.name(), spec.name);
    }
    assert_eq!(IntKey::HEARTBEAT_INTERVAL.name(), HEARTBEAT_INTERVAL);
}

#[test]
fn every_typed_accessor_reads_its_own_key_type() {
    // The registry macro declares each handle with the type of its entry; a key declared as
    // BoolKey must be a boolean in the registry, and so on.
    let c = cfg();
    for spec in registry() {
        let key = Key::find(spec.name).unwrap();
        let text = c.text(key);
        match spec.value_type {
            ValueType::Boolean => assert!(text == "true" || text == "false", "{}", spec.name),
            ValueType::Integer { .. } => assert!(text.parse::<i64>().is_ok(), "{}", spec.name),
            ValueType::List | ValueType::Text => {}
        }
    }
}

#[test]
fn key_names_are_found_without_regard_to_case() {
    let mut c = cfg();
    assert_eq!(Key::find("heartbeatinterval"), Some(Key::HeartbeatInterval));
    assert_eq!(Key::find("HEARTBEATINTERVAL"), Some(Key::HeartbeatInterval));
    assert_eq!(Key::find("heartbeat"), None);

    // GetConfiguration answers with the canonical name, once per key however it is spelt.
    let (known, unknown) = c.get(
        &[
            "heartbeatinterval".to_string(),
            "HeartbeatInterval".to_string(),
            "METERVALUESAMPLEINTERVAL".to_string(),
            "NoSuchKey".to_string(),
        ],
        Channel::Ocpp,
    );
    let names: Vec<&str> = known.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(names, ["HeartbeatInterval", "MeterValueSampleInterval"]);
    assert_eq!(unknown, ["NoSuchKey"]);

    // ChangeConfiguration likewise changes the canonical key.
    assert_eq!(
        c.change("heartbeatINTERVAL", "120", Channel::Ocpp),
        ChangeOutcome::Accepted
    );
    assert_eq!(c.int(IntKey::HEARTBEAT_INTERVAL), 120);
    assert_eq!(
        c.check_change("localauthlistenabled", "false", Channel::Ocpp),
        ChangeOutcome::Accepted
    );
    // Rules still apply under any spelling: read-only stays read-only, service keys stay hidden
    // from OCPP, and a rejection names the key as the registry spells it.
    let ChangeOutcome::Rejected(why) = c.change("numberofconnectors", "2", Channel::Ocpp) else {
        panic!("read-only key changed");
    };
    assert!(why.starts_with("NumberOfConnectors:"), "{why}");
    assert_eq!(
        c.change("csmsurl", "ws://127.0.0.1:9/", Channel::Ocpp),
        ChangeOutcome::NotSupported
    );
    let (known, unknown) = c.get(&["csmsurl".to_string()], Channel::Ocpp);
    assert!(known.is_empty());
    assert_eq!(unknown, ["csmsurl"]);
}
