//! A hostile CSMS against the real charge point stack over a real loopback WebSocket: frames
//! that are not JSON, binary frames, wrong arity and types, unknown message types, bad unique
//! ids, every CSMS-initiated action with missing, extra, wrongly typed and out-of-range fields,
//! numbers beyond 64 bits, strings over their CiString limit, deep nesting, messages of
//! megabytes, answers nobody asked for, duplicate ids, a flood of calls and a Reset in the middle
//! of one. Each case gets the CALLERROR OCPP-J 1.6 section 4.2.3 names, is ignored where OCPP-J
//! says so, or (what cannot be answered) ends in a clean close with the right code; afterwards
//! the charger still answers a plain GetConfiguration. The cases are generated from tables and
//! counted.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod common;
#[path = "common/hostile.rs"]
mod hostile;

use hostile::{
    Back, FrameData, FrameOpCode, HostileCsms, Peer, WsMessage, closed_with, fragments, raw_frame,
};
use serde_json::{Value, json};

// ----- what the cases expect --------------------------------------------------------------

#[derive(Debug, Clone)]
enum Expect {
    /// A CALLERROR with this code, echoing `id`, naming `field` in its details when set.
    Error {
        code: &'static str,
        id: String,
        field: Option<String>,
    },
    /// A CALLRESULT for `id`.
    Result { id: String },
    /// Nothing: the next frame is the answer to the following valid CALL.
    Ignored,
}

#[derive(Debug, Clone)]
enum Input {
    Text(String),
    Binary(Vec<u8>),
    /// Two identical CALLs with the same unique id.
    Duplicate(String),
}

struct Case {
    name: String,
    input: Input,
    expect: Expect,
}

fn error(code: &'static str, id: &str) -> Expect {
    Expect::Error {
        code,
        id: id.to_string(),
        field: None,
    }
}

fn case(name: impl Into<String>, text: impl Into<String>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        input: Input::Text(text.into()),
        expect,
    }
}

// ----- the schema of every CSMS-initiated action (the parts the cases need) -----------------

#[derive(Clone, Copy)]
enum Ty {
    /// OCPP integer that must not be negative.
    UInt,
    /// OCPP integer (32 bits, signed).
    Int,
    /// CiString of at most this many characters.
    Str(usize),
    /// A string without a length limit.
    Text,
    Enum(&'static [&'static str]),
    Time,
    Uri,
    /// A number with one decimal.
    Dec,
    Obj(&'static [F]),
    /// A list of objects; `true` when it must not be empty.
    ListObj(&'static [F], bool),
    /// A list of CiStrings of this length.
    ListStr(usize),
}

#[derive(Clone, Copy)]
struct F {
    name: &'static str,
    ty: Ty,
    required: bool,
}

const fn req(name: &'static str, ty: Ty) -> F {
    F {
        name,
        ty,
        required: true,
    }
}

const fn opt(name: &'static str, ty: Ty) -> F {
    F {
        name,
        ty,
        required: false,
    }
}

const PURPOSE: Ty = Ty::Enum(&["ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"]);
const AUTH_STATUS: Ty = Ty::Enum(&["Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"]);

const PERIOD: &[F] = &[
    req("startPeriod", Ty::UInt),
    req("limit", Ty::Dec),
    opt("numberPhases", Ty::UInt),
];

const SCHEDULE: &[F] = &[
    opt("duration", Ty::UInt),
    opt("startSchedule", Ty::Time),
    req("chargingRateUnit", Ty::Enum(&["A", "W"])),
    req("chargingSchedulePeriod", Ty::ListObj(PERIOD, true)),
    opt("minChargingRate", Ty::Dec),
];

const PROFILE: &[F] = &[
    req("chargingProfileId", Ty::Int),
    opt("transactionId", Ty::Int),
    req("stackLevel", Ty::UInt),
    req("chargingProfilePurpose", PURPOSE),
    req(
        "chargingProfileKind",
        Ty::Enum(&["Absolute", "Recurring", "Relative"]),
    ),
    opt("recurrencyKind", Ty::Enum(&["Daily", "Weekly"])),
    opt("validFrom", Ty::Time),
    opt("validTo", Ty::Time),
    req("chargingSchedule", Ty::Obj(SCHEDULE)),
];

const ID_TAG_INFO: &[F] = &[
    opt("expiryDate", Ty::Time),
    opt("parentIdTag", Ty::Str(20)),
    req("status", AUTH_STATUS),
];

const AUTH_DATA: &[F] = &[
    req("idTag", Ty::Str(20)),
    opt("idTagInfo", Ty::Obj(ID_TAG_INFO)),
];

const T: &str = "2030-01-01T00:00:00.000Z";

fn charging_profile() -> Value {
    json!({
        "chargingProfileId": 1, "transactionId": 1, "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Recurring",
        "recurrencyKind": "Daily", "validFrom": T, "validTo": T,
        "chargingSchedule": {
            "duration": 3600, "startSchedule": T, "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0, "numberPhases": 3}],
            "minChargingRate": 6.0
        }
    })
}

/// Every CSMS-initiated action: a valid payload with every field present, and its schema.
fn actions() -> Vec<(&'static str, Value, Vec<F>)> {
    vec![
        (
            "CancelReservation",
            json!({"reservationId": 1}),
            vec![req("reservationId", Ty::Int)],
        ),
        (
            "ChangeAvailability",
            json!({"connectorId": 0, "type": "Operative"}),
            vec![
                req("connectorId", Ty::UInt),
                req("type", Ty::Enum(&["Inoperative", "Operative"])),
            ],
        ),
        (
            "ChangeConfiguration",
            json!({"key": "HeartbeatInterval", "value": "60"}),
            vec![req("key", Ty::Str(50)), req("value", Ty::Str(500))],
        ),
        ("ClearCache", json!({}), vec![]),
        (
            "ClearChargingProfile",
            json!({"id": 1, "connectorId": 1, "chargingProfilePurpose": "TxDefaultProfile",
                   "stackLevel": 0}),
            vec![
                opt("id", Ty::Int),
                opt("connectorId", Ty::UInt),
                opt("chargingProfilePurpose", PURPOSE),
                opt("stackLevel", Ty::UInt),
            ],
        ),
        (
            "DataTransfer",
            json!({"vendorId": "Zaptec", "messageId": "m", "data": "d"}),
            vec![
                req("vendorId", Ty::Str(255)),
                opt("messageId", Ty::Str(50)),
                opt("data", Ty::Text),
            ],
        ),
        (
            "GetCompositeSchedule",
            json!({"connectorId": 1, "duration": 60, "chargingRateUnit": "A"}),
            vec![
                req("connectorId", Ty::UInt),
                req("duration", Ty::UInt),
                opt("chargingRateUnit", Ty::Enum(&["A", "W"])),
            ],
        ),
        (
            "GetConfiguration",
            json!({"key": ["HeartbeatInterval"]}),
            vec![opt("key", Ty::ListStr(50))],
        ),
        (
            "GetDiagnostics",
            json!({"location": "http://127.0.0.1:9/upload", "retries": 1, "retryInterval": 1,
                   "startTime": T, "stopTime": T}),
            vec![
                req("location", Ty::Uri),
                opt("retries", Ty::UInt),
                opt("retryInterval", Ty::UInt),
                opt("startTime", Ty::Time),
                opt("stopTime", Ty::Time),
            ],
        ),
        ("GetLocalListVersion", json!({}), vec![]),
        (
            "RemoteStartTransaction",
            json!({"connectorId": 1, "idTag": "TAG", "chargingProfile": charging_profile()}),
            vec![
                opt("connectorId", Ty::UInt),
                req("idTag", Ty::Str(20)),
                opt("chargingProfile", Ty::Obj(PROFILE)),
            ],
        ),
        (
            "RemoteStopTransaction",
            json!({"transactionId": 1}),
            vec![req("transactionId", Ty::Int)],
        ),
        (
            "ReserveNow",
            json!({"connectorId": 1, "expiryDate": T, "idTag": "TAG", "parentIdTag": "P",
                   "reservationId": 1}),
            vec![
                req("connectorId", Ty::UInt),
                req("expiryDate", Ty::Time),
                req("idTag", Ty::Str(20)),
                opt("parentIdTag", Ty::Str(20)),
                req("reservationId", Ty::Int),
            ],
        ),
        (
            "Reset",
            json!({"type": "Hard"}),
            vec![req("type", Ty::Enum(&["Hard", "Soft"]))],
        ),
        (
            "SendLocalList",
            json!({"listVersion": 1, "updateType": "Full", "localAuthorizationList": [
                {"idTag": "TAG", "idTagInfo": {"expiryDate": T, "parentIdTag": "P",
                                               "status": "Accepted"}}]}),
            vec![
                req("listVersion", Ty::Int),
                opt("localAuthorizationList", Ty::ListObj(AUTH_DATA, false)),
                req("updateType", Ty::Enum(&["Differential", "Full"])),
            ],
        ),
        (
            "SetChargingProfile",
            json!({"connectorId": 1, "csChargingProfiles": charging_profile()}),
            vec![
                req("connectorId", Ty::UInt),
                req("csChargingProfiles", Ty::Obj(PROFILE)),
            ],
        ),
        (
            "TriggerMessage",
            json!({"requestedMessage": "Heartbeat", "connectorId": 1}),
            vec![
                req(
                    "requestedMessage",
                    Ty::Enum(&[
                        "BootNotification",
                        "DiagnosticsStatusNotification",
                        "FirmwareStatusNotification",
                        "Heartbeat",
                        "MeterValues",
                        "StatusNotification",
                    ]),
                ),
                opt("connectorId", Ty::UInt),
            ],
        ),
        (
            "UnlockConnector",
            json!({"connectorId": 1}),
            vec![req("connectorId", Ty::UInt)],
        ),
        (
            "UpdateFirmware",
            json!({"location": "http://127.0.0.1:9/fw.bin", "retries": 1, "retrieveDate": T,
                   "retryInterval": 1}),
            vec![
                req("location", Ty::Uri),
                opt("retries", Ty::UInt),
                req("retrieveDate", Ty::Time),
                opt("retryInterval", Ty::UInt),
            ],
        ),
    ]
}

/// Values of the wrong JSON type for a field of type `ty` (TypeConstraintViolation).
fn wrong_types(ty: Ty) -> Vec<Value> {
    match ty {
        Ty::UInt | Ty::Int => vec![
            json!("1"),
            json!(1.5),
            json!(true),
            json!([1]),
            json!({"v": 1}),
        ],
        Ty::Str(_) | Ty::Text => vec![json!(12), json!(true), json!(["x"]), json!({"x": 1})],
        Ty::Enum(_) => vec![json!(1), json!(false), json!(["A"])],
        Ty::Time => vec![json!(1_700_000_000), json!(true)],
        Ty::Uri => vec![json!(42), json!({})],
        Ty::Dec => vec![json!("16"), json!(true), json!([16])],
        Ty::Obj(_) => vec![json!("x"), json!([]), json!(1), json!([1, 2])],
        Ty::ListObj(..) | Ty::ListStr(_) => vec![json!("x"), json!({}), json!(1)],
    }
}

/// Placeholders replaced by number literals that `serde_json::Value` cannot hold as written.
const BEYOND_U64: &str = "@@18446744073709551616@@";
const BELOW_I64: &str = "@@-9223372036854775809@@";
const BIG_EXPONENT: &str = "@@1e20@@";

/// Values of the right JSON type outside the allowed set (PropertyConstraintViolation).
fn out_of_range(ty: Ty) -> Vec<Value> {
    match ty {
        Ty::UInt => vec![
            json!(-1),
            json!(2_147_483_648u64),
            json!(4_294_967_296u64),
            json!(BEYOND_U64),
            json!(BIG_EXPONENT),
        ],
        Ty::Int => vec![
            json!(2_147_483_648u64),
            json!(-2_147_483_649i64),
            json!(BEYOND_U64),
            json!(BELOW_I64),
        ],
        Ty::Str(n) => vec![json!("X".repeat(n + 1)), json!("é".repeat(n + 1))],
        Ty::Text => vec![],
        Ty::Enum(values) => vec![
            json!("Bogus"),
            json!(""),
            json!(values[0].to_ascii_lowercase()),
        ],
        Ty::Time => vec![
            json!("not a time"),
            json!("2026-13-40T25:61:00Z"),
            json!(""),
        ],
        Ty::Uri => vec![
            json!("no scheme here"),
            json!(""),
            json!("http://has space"),
        ],
        Ty::Dec => vec![json!(1e300)],
        Ty::Obj(_) | Ty::ListObj(..) | Ty::ListStr(_) => vec![],
    }
}

/// One mutated payload and the CALLERROR it must get.
struct Mutation {
    what: String,
    payload: Value,
    code: &'static str,
    field: String,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Every mutation of the object at `pointer` in `base`, whose schema is `fields` and whose
/// path in error messages starts with `prefix`.
fn mutations(base: &Value, pointer: &str, prefix: &str, fields: &[F], out: &mut Vec<Mutation>) {
    let with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut payload = base.clone();
        let obj = payload
            .pointer_mut(pointer)
            .and_then(Value::as_object_mut)
            .expect("the pointer names an object");
        f(obj);
        payload
    };
    out.push(Mutation {
        what: format!(
            "{} with an extra field",
            if prefix.is_empty() { "payload" } else { prefix }
        ),
        payload: with(&|o| {
            o.insert("bogus".into(), json!(1));
        }),
        code: "FormationViolation",
        field: join(prefix, "bogus"),
    });
    for f in fields {
        let path = join(prefix, f.name);
        if f.required {
            out.push(Mutation {
                what: format!("{path} missing"),
                payload: with(&|o| {
                    o.remove(f.name);
                }),
                code: "OccurenceConstraintViolation",
                field: path.clone(),
            });
            out.push(Mutation {
                what: format!("{path} null"),
                payload: with(&|o| {
                    o.insert(f.name.into(), Value::Null);
                }),
                code: "TypeConstraintViolation",
                field: path.clone(),
            });
        }
        for v in wrong_types(f.ty) {
            out.push(Mutation {
                what: format!("{path} = {v} (wrong type)"),
                payload: with(&|o| {
                    o.insert(f.name.into(), v.clone());
                }),
                code: "TypeConstraintViolation",
                field: path.clone(),
            });
        }
        for v in out_of_range(f.ty) {
            let shown: String = v.to_string().chars().take(40).collect();
            out.push(Mutation {
                what: format!("{path} = {shown} (out of range)"),
                payload: with(&|o| {
                    o.insert(f.name.into(), v.clone());
                }),
                code: "PropertyConstraintViolation",
                field: path.clone(),
            });
        }
        let child = format!("{pointer}/{}", f.name);
        match f.ty {
            Ty::Obj(sub) => mutations(base, &child, &path, sub, out),
            Ty::ListObj(sub, non_empty) => {
                if non_empty {
                    out.push(Mutation {
                        what: format!("{path} empty"),
                        payload: with(&|o| {
                            o.insert(f.name.into(), json!([]));
                        }),
                        code: "OccurenceConstraintViolation",
                        field: path.clone(),
                    });
                }
                mutations(base, &format!("{child}/0"), &format!("{path}[0]"), sub, out);
            }
            Ty::ListStr(n) => {
                for (v, code) in [
                    (json!([1]), "TypeConstraintViolation"),
                    (json!([null]), "TypeConstraintViolation"),
                    (json!(["X".repeat(n + 1)]), "PropertyConstraintViolation"),
                ] {
                    out.push(Mutation {
                        what: format!("{path} = {v:.40}"),
                        payload: with(&|o| {
                            o.insert(f.name.into(), v.clone());
                        }),
                        code,
                        field: format!("{path}[0]"),
                    });
                }
            }
            _ => {}
        }
    }
}

/// The text of a CALL, with the number placeholders written as literals.
fn call_text(id: &str, action: &str, payload: &Value) -> String {
    json!([2, id, action, payload])
        .to_string()
        .replace(&format!("\"{BEYOND_U64}\""), "18446744073709551616")
        .replace(&format!("\"{BELOW_I64}\""), "-9223372036854775809")
        .replace(&format!("\"{BIG_EXPONENT}\""), "1e20")
}

// ----- the cases ----------------------------------------------------------------------------

fn envelope_cases() -> Vec<Case> {
    let gc = |id: &str| json!([2, id, "GetConfiguration", {}]).to_string();
    let mut cases = vec![
        // Not JSON, or not an OCPP-J array: answered with unique id "-1".
        case(
            "not JSON",
            "this is not JSON",
            error("FormationViolation", "-1"),
        ),
        case("empty text", "", error("FormationViolation", "-1")),
        case("only spaces", "   ", error("FormationViolation", "-1")),
        case("an open bracket", "[", error("FormationViolation", "-1")),
        case(
            "a JSON object",
            r#"{"messageTypeId":2}"#,
            error("FormationViolation", "-1"),
        ),
        case(
            "a JSON string",
            r#""[2,\"x\",\"Heartbeat\",{}]""#,
            error("FormationViolation", "-1"),
        ),
        case("a JSON number", "42", error("FormationViolation", "-1")),
        case("JSON null", "null", error("FormationViolation", "-1")),
        case("JSON true", "true", error("FormationViolation", "-1")),
        case("an empty array", "[]", error("FormationViolation", "-1")),
        case("only a type", "[2]", error("FormationViolation", "-1")),
        case(
            "a number id",
            r#"[2,1,"GetConfiguration",{}]"#,
            error("FormationViolation", "-1"),
        ),
        case(
            "a null id",
            r#"[2,null,"GetConfiguration",{}]"#,
            error("FormationViolation", "-1"),
        ),
        case(
            "an object id",
            r#"[2,{},"GetConfiguration",{}]"#,
            error("FormationViolation", "-1"),
        ),
        // Broken JSON after a readable header: answered with its own id.
        case(
            "cut short",
            r#"[2,"cut-1","GetConfiguration",{"key":["#,
            error("FormationViolation", "cut-1"),
        ),
        case(
            "trailing garbage",
            r#"[2,"tg-1","GetConfiguration",{}] x"#,
            error("FormationViolation", "tg-1"),
        ),
        case(
            "number beyond f64",
            r#"[2,"big-1","ChangeAvailability",{"connectorId":1e400,"type":"Operative"}]"#,
            error("FormationViolation", "big-1"),
        ),
        // Wrong arity.
        case(
            "a CALL of 2 elements",
            r#"[2,"ar-1"]"#,
            error("ProtocolError", "ar-1"),
        ),
        case(
            "a CALL of 3 elements",
            r#"[2,"ar-2","GetConfiguration"]"#,
            error("ProtocolError", "ar-2"),
        ),
        case(
            "a CALL of 5 elements",
            r#"[2,"ar-3","GetConfiguration",{},{}]"#,
            error("ProtocolError", "ar-3"),
        ),
        case(
            "a CALL of 6 elements",
            r#"[2,"ar-4","GetConfiguration",{},1,2]"#,
            error("ProtocolError", "ar-4"),
        ),
        // Wrong types in the envelope.
        case(
            "a number action",
            r#"[2,"ty-1",5,{}]"#,
            error("FormationViolation", "ty-1"),
        ),
        case(
            "a null action",
            r#"[2,"ty-2",null,{}]"#,
            error("FormationViolation", "ty-2"),
        ),
        case(
            "an array payload",
            r#"[2,"ty-3","GetConfiguration",[]]"#,
            error("FormationViolation", "ty-3"),
        ),
        case(
            "a string payload",
            r#"[2,"ty-4","GetConfiguration","x"]"#,
            error("FormationViolation", "ty-4"),
        ),
        case(
            "a null payload",
            r#"[2,"ty-5","GetConfiguration",null]"#,
            error("FormationViolation", "ty-5"),
        ),
        case(
            "a string type",
            r#"["2","ty-6","GetConfiguration",{}]"#,
            error("FormationViolation", "ty-6"),
        ),
        case(
            "a fractional type",
            r#"[2.5,"ty-7","GetConfiguration",{}]"#,
            error("FormationViolation", "ty-7"),
        ),
        case(
            "a negative type",
            r#"[-2,"ty-8","GetConfiguration",{}]"#,
            error("FormationViolation", "ty-8"),
        ),
        case(
            "a type beyond 64 bits",
            r#"[18446744073709551616,"ty-9","GetConfiguration",{}]"#,
            error("FormationViolation", "ty-9"),
        ),
        // Unique ids: empty, or over 36 characters (echoed, bounded).
        case(
            "an empty id",
            r#"[2,"","GetConfiguration",{}]"#,
            error("FormationViolation", ""),
        ),
    ];
    for (n, len) in [37usize, 64, 65, 1000, 100_000, 900_000]
        .into_iter()
        .enumerate()
    {
        let id = format!("{n}{}", "i".repeat(len - 1));
        let echoed: String = id.chars().take(64).collect();
        cases.push(case(
            format!("an id of {len} characters"),
            json!([2, id, "GetConfiguration", {}]).to_string(),
            error("FormationViolation", &echoed),
        ));
    }
    // Unknown message types are answered (with the id they carry).
    for t in ["0", "1", "5", "6", "99", "18446744073709551615"] {
        cases.push(case(
            format!("message type {t}"),
            format!(r#"[{t},"mt-{t}","GetConfiguration",{{}}]"#),
            error("ProtocolError", &format!("mt-{t}")),
        ));
    }
    // Actions: unknown (even of megabyte size, never echoed in full), in the wrong case, and
    // the security whitepaper's, which the charger recognises and does not support.
    cases.push(case(
        "an unknown action",
        json!([2, "ac-1", "OpenThePodBayDoors", {}]).to_string(),
        error("NotImplemented", "ac-1"),
    ));
    cases.push(case(
        "an action in the wrong case",
        json!([2, "ac-2", "getconfiguration", {}]).to_string(),
        error("NotImplemented", "ac-2"),
    ));
    cases.push(case(
        "an empty action",
        json!([2, "ac-3", "", {}]).to_string(),
        error("NotImplemented", "ac-3"),
    ));
    cases.push(case(
        "an action of 900 kB",
        json!([2, "ac-4", "A".repeat(900_000), {}]).to_string(),
        error("NotImplemented", "ac-4"),
    ));
    for (i, action) in chargectl::stack::messages::SECURITY_WHITEPAPER_ACTIONS
        .iter()
        .enumerate()
    {
        let id = format!("sec-{i}");
        cases.push(case(
            action.to_string(),
            json!([2, id, action, {}]).to_string(),
            error("NotSupported", &id),
        ));
    }
    // Deep nesting: past the parser's depth limit a FormationViolation with the id, below it a
    // TypeConstraintViolation for the field.
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    cases.push(case(
        "arrays nested 200 deep",
        format!(
            r#"[2,"deep-1","GetConfiguration",{{"key":{}}}]"#,
            nested(200)
        ),
        error("FormationViolation", "deep-1"),
    ));
    cases.push(case(
        "arrays nested 450000 deep",
        format!(
            r#"[2,"deep-2","GetConfiguration",{{"key":{}}}]"#,
            nested(450_000)
        ),
        error("FormationViolation", "deep-2"),
    ));
    cases.push(case(
        "objects nested 1000 deep",
        format!(
            r#"[2,"deep-3","DataTransfer",{{"vendorId":"V","data":{}1{}}}]"#,
            r#"{"a":"#.repeat(1000),
            "}".repeat(1000)
        ),
        error("FormationViolation", "deep-3"),
    ));
    cases.push(case(
        "arrays nested 100 deep in a field",
        format!(
            r#"[2,"deep-4","GetConfiguration",{{"key":{}}}]"#,
            nested(100)
        ),
        Expect::Error {
            code: "TypeConstraintViolation",
            id: "deep-4".into(),
            field: Some("key[0]".into()),
        },
    ));
    // Large but legal: a message just under the 1 MiB limit is read and answered.
    cases.push(case(
        "DataTransfer of 1000 kB",
        json!([2, "large-1", "DataTransfer", {"vendorId": "Other", "data": "d".repeat(1_000_000)}])
            .to_string(),
        Expect::Result {
            id: "large-1".into(),
        },
    ));
    cases.push(case(
        "GetConfiguration key of 900 kB",
        json!([2, "large-2", "GetConfiguration", {"key": ["K".repeat(900_000)]}]).to_string(),
        Expect::Error {
            code: "PropertyConstraintViolation",
            id: "large-2".into(),
            field: Some("key[0]".into()),
        },
    ));
    // -0 is an integer.
    for (i, text) in [
        r#"[2,"zero-1","GetCompositeSchedule",{"connectorId":-0,"duration":60}]"#,
        r#"[2,"zero-2","GetCompositeSchedule",{"connectorId":1,"duration":-0}]"#,
        r#"[2,"zero-3","RemoteStopTransaction",{"transactionId":-0}]"#,
        r#"[2,"zero-4","CancelReservation",{"reservationId":-0}]"#,
    ]
    .iter()
    .enumerate()
    {
        cases.push(case(
            format!("-0 as an integer ({i})"),
            *text,
            Expect::Result {
                id: format!("zero-{}", i + 1),
            },
        ));
    }
    // Answers nobody asked for, and broken answers: never answered.
    for (name, text) in [
        (
            "CALLRESULT for an id never sent",
            r#"[3,"never-sent",{}]"#.to_string(),
        ),
        (
            "CALLERROR for an id never sent",
            r#"[4,"never-sent","GenericError","",{}]"#.to_string(),
        ),
        ("CALLRESULT with a null id", r#"[3,null,{}]"#.to_string()),
        ("CALLRESULT with a number id", r#"[3,123,{}]"#.to_string()),
        (
            "CALLERROR with a number id",
            r#"[4,123,"GenericError","",{}]"#.to_string(),
        ),
        ("a bare CALLRESULT", "[3]".to_string()),
        ("a bare CALLERROR", "[4]".to_string()),
        ("CALLRESULT without payload", r#"[3,"short"]"#.to_string()),
        (
            "CALLERROR without details",
            r#"[4,"short","GenericError",""]"#.to_string(),
        ),
        ("CALLRESULT of 4 elements", r#"[3,"long",{},1]"#.to_string()),
        (
            "CALLRESULT with an array payload",
            r#"[3,"arr",[]]"#.to_string(),
        ),
        ("CALLRESULT cut short", r#"[3,"cut",{"#.to_string()),
        ("CALLRESULT with an empty id", r#"[3,"",{}]"#.to_string()),
        (
            "CALLRESULT with an id of 100 characters",
            format!(r#"[3,"{}",{{}}]"#, "r".repeat(100)),
        ),
        (
            "CALLERROR with an unknown code",
            r#"[4,"never-sent","NoSuchCode","",{}]"#.to_string(),
        ),
        (
            "CALLERROR with a number code",
            r#"[4,"never-sent",7,8,9]"#.to_string(),
        ),
    ] {
        cases.push(case(name, text, Expect::Ignored));
    }
    // Binary frames: OCPP-J uses text frames only; a binary frame is ignored.
    cases.push(Case {
        name: "a binary frame holding a CALL".into(),
        input: Input::Binary(gc("bin-1").into_bytes()),
        expect: Expect::Ignored,
    });
    cases.push(Case {
        name: "a binary frame of noise".into(),
        input: Input::Binary(vec![0, 159, 146, 150, 255]),
        expect: Expect::Ignored,
    });
    cases.push(Case {
        name: "an empty binary frame".into(),
        input: Input::Binary(Vec::new()),
        expect: Expect::Ignored,
    });
    // Duplicate ids: each CALL is answered.
    cases.push(Case {
        name: "two CALLs with one id".into(),
        input: Input::Duplicate(gc("dup-1")),
        expect: Expect::Result { id: "dup-1".into() },
    });
    cases
}

fn action_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut n = 0;
    for (action, base, fields) in actions() {
        let mut out = Vec::new();
        mutations(&base, "", "", &fields, &mut out);
        for m in out {
            n += 1;
            let id = format!("m-{n}");
            cases.push(Case {
                name: format!("{action}: {}", m.what),
                input: Input::Text(call_text(&id, action, &m.payload)),
                expect: Expect::Error {
                    code: m.code,
                    field: Some(m.field),
                    id,
                },
            });
        }
    }
    cases
}

/// Runs one case; returns a description of what went wrong.
async fn run_case(peer: &mut Peer, case: &Case, n: usize) -> Result<(), String> {
    match &case.input {
        Input::Text(t) => {
            if !peer.text(t.clone()).await {
                return Err("the connection closed".into());
            }
        }
        Input::Binary(b) => {
            if !peer.binary(b.clone()).await {
                return Err("the connection closed".into());
            }
        }
        Input::Duplicate(t) => {
            if !(peer.text(t.clone()).await && peer.text(t.clone()).await) {
                return Err("the connection closed".into());
            }
        }
    }
    let times = if matches!(case.input, Input::Duplicate(_)) {
        2
    } else {
        1
    };
    for _ in 0..times {
        match &case.expect {
            Expect::Ignored => {}
            Expect::Result { id } => match peer.next_back().await {
                Back::Json(v) if v[0] == 3 && v[1] == json!(id) => {}
                other => return Err(format!("expected a CALLRESULT for {id}, got {other:.300?}")),
            },
            Expect::Error { code, id, field } => {
                let back = peer.next_back().await;
                let Back::Json(v) = &back else {
                    return Err(format!("expected a CALLERROR, got {back:.300?}"));
                };
                let text = v.to_string();
                if v[0] != 4 || v[1] != json!(id) || v[2] != json!(code) {
                    return Err(format!(
                        "expected CALLERROR {code} for id {id:.70}, got {text:.400}"
                    ));
                }
                if !v[3].is_string() || !v[4].is_object() {
                    return Err(format!(
                        "a CALLERROR has a string description and an object: {text:.400}"
                    ));
                }
                if text.len() > 1024 {
                    return Err(format!(
                        "a CALLERROR of {} bytes echoes too much: {text:.400}",
                        text.len()
                    ));
                }
                if let Some(field) = field
                    && v[4]["field"] != json!(field)
                {
                    return Err(format!("expected the details to name {field}: {text:.400}"));
                }
            }
        }
    }
    peer.still_answers(&format!("after-{n}")).await
}

async fn start(
    dir: &std::path::Path,
    csms: &HostileCsms,
    id: &str,
) -> chargectl::emulator::Emulator {
    common::emulator(dir, &csms.url(), id).await
}

#[tokio::test]
async fn every_hostile_frame_gets_the_answer_ocpp_j_names_and_the_charger_keeps_answering() {
    let csms = HostileCsms::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), &csms, "CPHOSTILE").await;
    let mut peer = csms.accept().await;
    peer.booted().await;
    let envelope = envelope_cases();
    let per_action = action_cases();
    let mut failures = Vec::new();
    let total = envelope.len() + per_action.len();
    for (n, case) in envelope.iter().chain(&per_action).enumerate() {
        if let Err(why) = run_case(&mut peer, case, n).await {
            failures.push(format!("{}: {why}", case.name));
            if peer.still_answers(&format!("recover-{n}")).await.is_err() {
                failures.push("the charger stopped answering; stopping".into());
                break;
            }
        }
    }
    println!(
        "hostile CSMS cases on one connection: {total} ({} envelope, {} per action), {} failed",
        envelope.len(),
        per_action.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total >= 500, "only {total} cases");
    emu.shutdown().await.unwrap();
}

// ----- what cannot be answered: a clean close with the right code -------------------------

/// A violation of the WebSocket rules or limits.
struct Violation {
    name: &'static str,
    code: u16,
}

/// Sends the violation `name` and returns how the charger ended the connection.
async fn send_violation(peer: &mut Peer, name: &str) -> Back {
    let big = |n: usize| {
        format!(
            r#"[2,"big","DataTransfer",{{"vendorId":"V","data":"{}"}}]"#,
            "d".repeat(n)
        )
    };
    let text = FrameOpCode::Data(FrameData::Text);
    let more = FrameOpCode::Data(FrameData::Continue);
    let messages = match name {
        "a 2 MB message" => vec![WsMessage::text(big(2_000_000))],
        "a 15 MB message" => vec![WsMessage::text(big(15_000_000))],
        "60 MB in four fragments" => fragments(big(60_000_000).as_bytes(), 4),
        "2 MB in 64 kB fragments" => fragments(big(2_000_000).as_bytes(), 32),
        "a 2 MB binary frame" => vec![WsMessage::binary(vec![0u8; 2_000_000])],
        "invalid UTF-8" => vec![raw_frame(text, b"[2,\"u\",\"\xff\xfe\",{}]", true)],
        "invalid UTF-8 in a fragment" => vec![
            raw_frame(text, b"[2,\"u\",", false),
            raw_frame(more, b"\"\xc3\x28\",{}]", true),
        ],
        _ => Vec::new(),
    };
    if !messages.is_empty() {
        return peer.send_and_watch(messages).await;
    }
    // Bytes under the WebSocket framing.
    let bytes: Vec<u8> = match name {
        "a masked frame from the server" => vec![0x81, 0x82, 1, 2, 3, 4, b'[' ^ 1, b']' ^ 2],
        "a reserved opcode" => vec![0x83, 0x00],
        "reserved bits set" => vec![0xc1, 0x02, b'[', b']'],
        "a fragmented ping" => vec![0x09, 0x00],
        "a continuation without a start" => vec![0x80, 0x02, b'[', b']'],
        "a ping of 126 bytes" => {
            let mut bytes = vec![0x89, 126, 0, 126];
            bytes.extend(std::iter::repeat_n(0u8, 126));
            bytes
        }
        other => panic!("unknown violation {other}"),
    };
    assert!(peer.raw(&bytes).await, "{name}: the connection is open");
    peer.until_closed().await
}

const VIOLATIONS: &[Violation] = &[
    Violation {
        name: "a 2 MB message",
        code: 1009,
    },
    Violation {
        name: "a 15 MB message",
        code: 1009,
    },
    Violation {
        name: "60 MB in four fragments",
        code: 1009,
    },
    Violation {
        name: "2 MB in 64 kB fragments",
        code: 1009,
    },
    Violation {
        name: "a 2 MB binary frame",
        code: 1009,
    },
    Violation {
        name: "invalid UTF-8",
        code: 1007,
    },
    Violation {
        name: "invalid UTF-8 in a fragment",
        code: 1007,
    },
    Violation {
        name: "a masked frame from the server",
        code: 1002,
    },
    Violation {
        name: "a reserved opcode",
        code: 1002,
    },
    Violation {
        name: "reserved bits set",
        code: 1002,
    },
    Violation {
        name: "a fragmented ping",
        code: 1002,
    },
    Violation {
        name: "a continuation without a start",
        code: 1002,
    },
    Violation {
        name: "a ping of 126 bytes",
        code: 1002,
    },
];

#[tokio::test]
async fn frames_that_break_the_limits_or_the_protocol_end_in_a_clean_close_with_its_code() {
    let csms = HostileCsms::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), &csms, "CPCLOSE").await;
    let mut peer = csms.accept().await;
    peer.booted().await;
    // A text split inside a multi-byte character is valid once joined.
    let whole = "[2,\"utf\",\"DataTransfer\",{\"vendorId\":\"\u{e9}\"}]".as_bytes();
    let cut = whole.iter().position(|&b| b == 0xc3).unwrap() + 1;
    peer.frame(
        FrameOpCode::Data(FrameData::Text),
        whole[..cut].to_vec(),
        false,
    )
    .await;
    peer.frame(
        FrameOpCode::Data(FrameData::Continue),
        whole[cut..].to_vec(),
        true,
    )
    .await;
    match peer.next_back().await {
        Back::Json(v) => assert_eq!((&v[0], &v[1]), (&json!(3), &json!("utf")), "{v}"),
        other => panic!("a text split inside a character was refused: {other:?}"),
    }
    let mut count = 1;
    for v in VIOLATIONS {
        let back = send_violation(&mut peer, v.name).await;
        assert!(
            closed_with(&back, v.code),
            "{}: expected a close with {}, got {back:?}",
            v.name,
            v.code
        );
        drop(peer);
        // The charger reconnects and answers again.
        peer = csms.accept().await;
        peer.still_answers(&format!(
            "after-{}",
            v.name
                .replace(' ', "-")
                .chars()
                .take(20)
                .collect::<String>()
        ))
        .await
        .unwrap_or_else(|e| panic!("after {}: {e}", v.name));
        count += 1;
    }
    println!("hostile CSMS cases ending in a close: {count}");
    emu.shutdown().await.unwrap();
}

// ----- floods and Reset ---------------------------------------------------------------------

/// Sends `calls` from a writer task while reading everything back until the connection closes
/// or `stop_after` answers arrived; returns what was read.
async fn flood(
    mut peer: Peer,
    calls: Vec<String>,
    stop_after: Option<usize>,
) -> (Vec<Value>, Back, Peer) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut sink, mut stream) = peer.ws.split();
    let writer = tokio::spawn(async move {
        for c in calls {
            if sink.feed(Message::text(c)).await.is_err() {
                break;
            }
        }
        let _ = sink.flush().await;
        sink
    });
    let mut answers = Vec::new();
    let end = loop {
        let msg = tokio::time::timeout(hostile::WAIT, stream.next())
            .await
            .expect("the charger keeps talking");
        match msg {
            None => break Back::Ended("end of stream".into()),
            Some(Err(e)) => break Back::Ended(e.to_string()),
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                if v[0] == 2 {
                    continue; // the charger's own CALLs are left unanswered here
                }
                answers.push(v);
                if stop_after.is_some_and(|n| answers.len() >= n) {
                    break Back::Json(Value::Null);
                }
            }
            Some(Ok(Message::Close(f))) => break Back::Close(f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
        }
    };
    let sink = writer.await.unwrap();
    peer.ws = sink.reunite(stream).unwrap();
    (answers, end, peer)
}

fn get_configuration(id: &str) -> String {
    json!([2, id, "GetConfiguration", {"key": ["HeartbeatInterval"]}]).to_string()
}

#[tokio::test]
async fn a_flood_of_calls_is_answered_in_order_and_a_reset_in_the_middle_of_one_loses_no_answer() {
    let csms = HostileCsms::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), &csms, "CPFLOOD").await;
    let mut peer = csms.accept().await;
    peer.booted().await;

    // 3000 calls at once: every one answered, once, in order.
    let calls: Vec<String> = (0..3000)
        .map(|i| get_configuration(&format!("f-{i}")))
        .collect();
    let (answers, _, p) = flood(peer, calls, Some(3000)).await;
    peer = p;
    let ids: Vec<&str> = answers.iter().map(|a| a[1].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..3000).map(|i| format!("f-{i}")).collect();
    assert_eq!(ids, expected, "answers out of order, missing or repeated");
    assert!(
        answers.iter().all(|a| a[0] == 3),
        "every call is answered with a CALLRESULT"
    );
    peer.still_answers("after-flood").await.unwrap();

    // A Reset after 1000 calls, 2000 more behind it: the 1000 answers and the Reset's arrive,
    // then a close with 1012 (service restart), never an abnormal end.
    let mut calls: Vec<String> = (0..1000)
        .map(|i| get_configuration(&format!("r-{i}")))
        .collect();
    calls.push(json!([2, "reset", "Reset", {"type": "Hard"}]).to_string());
    calls.extend((1000..3000).map(|i| get_configuration(&format!("r-{i}"))));
    let (answers, end, p) = flood(peer, calls, None).await;
    drop(p);
    let ids: Vec<&str> = answers.iter().map(|a| a[1].as_str().unwrap()).collect();
    let mut expected: Vec<String> = (0..1000).map(|i| format!("r-{i}")).collect();
    expected.push("reset".into());
    assert_eq!(
        ids.len(),
        expected.len(),
        "answers before the close: {:?}",
        &ids[ids.len().saturating_sub(3)..]
    );
    assert_eq!(ids, expected);
    assert_eq!(answers[1000][2], json!({"status": "Accepted"}));
    assert!(
        closed_with(&end, 1012),
        "expected a close with 1012, got {end:?}"
    );

    // The charger restarts, boots again and answers.
    let mut peer = csms.accept().await;
    peer.booted().await;
    peer.still_answers("after-reset").await.unwrap();
    println!("hostile CSMS cases with floods: 2 (6000 calls and a Reset)");
    emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn reset_and_shutdown_close_with_a_status_code_after_the_answer() {
    let csms = HostileCsms::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), &csms, "CPRESET").await;
    for (n, kind) in ["Hard", "Soft"].iter().enumerate() {
        let mut peer = csms.accept().await;
        peer.booted().await;
        let back = peer
            .exchange(json!([2, format!("reset-{n}"), "Reset", {"type": kind}]).to_string())
            .await;
        assert_eq!(
            back,
            Back::Json(json!([3, format!("reset-{n}"), {"status": "Accepted"}]))
        );
        let end = peer.until_closed().await;
        assert!(
            closed_with(&end, 1012),
            "{kind} reset: expected a close with 1012, got {end:?}"
        );
    }
    let mut peer = csms.accept().await;
    peer.booted().await;
    let shutdown = tokio::spawn(async move { emu.shutdown().await });
    let end = peer.until_closed().await;
    assert!(
        closed_with(&end, 1001),
        "shutdown: expected a close with 1001, got {end:?}"
    );
    drop(peer);
    shutdown.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_csms_that_never_answers_the_close_does_not_hold_up_the_reboot() {
    let csms = HostileCsms::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), &csms, "CPDEAF").await;
    let mut peer = csms.accept().await;
    peer.booted().await;
    assert!(
        peer.text(json!([2, "deaf", "Reset", {"type": "Hard"}]).to_string())
            .await
    );
    // This CSMS reads nothing more: the charger waits a bounded time for its close, then
    // restarts and connects again.
    let mut again = csms.accept().await;
    again.booted().await;
    again.still_answers("after-deaf").await.unwrap();
    // The old connection still delivers the Reset answer, then the close with 1012.
    assert_eq!(
        peer.next_back().await,
        Back::Json(json!([3, "deaf", {"status": "Accepted"}]))
    );
    let end = peer.until_closed().await;
    assert!(closed_with(&end, 1012), "{end:?}");
    emu.shutdown().await.unwrap();
}

// ----- memory ---------------------------------------------------------------------------------

/// Peak resident memory of a process in kB (VmHWM).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status")
}

#[tokio::test]
async fn frames_of_megabytes_leave_the_emulator_process_small() {
    let csms = HostileCsms::bind().await;
    let home = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chargectl"))
        .args([
            "emulate",
            "--headless",
            "--csms",
            &csms.url(),
            "--id",
            "CPMEM",
        ])
        .arg("--state-dir")
        .arg(home.path().join("state"))
        .env("CHARGECTL_DATA_DIR", home.path().join("data"))
        .env("CHARGECTL_CONFIG_DIR", home.path().join("config"))
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chargectl starts");
    let pid = child.id().expect("pid");
    let mut peer = csms.accept().await;
    peer.booted().await;
    let before = peak_rss_kb(pid);
    for name in ["a 15 MB message", "60 MB in four fragments"] {
        let back = send_violation(&mut peer, name).await;
        assert!(closed_with(&back, 1009), "{name}: {back:?}");
        drop(peer);
        peer = csms.accept().await;
        peer.still_answers("after-big").await.unwrap();
    }
    // A legal message near the limit, answered.
    let big =
        json!([2, "near", "DataTransfer", {"vendorId": "Other", "data": "d".repeat(1_000_000)}]);
    match peer.exchange(big.to_string()).await {
        Back::Json(v) => assert_eq!(v[1], "near"),
        other => panic!("{other:?}"),
    }
    let peak = peak_rss_kb(pid);
    println!(
        "emulator peak resident memory: {before} kB after boot, {peak} kB after 75 MB of frames"
    );
    // 15 MB and 60 MB frames once took 0.9 GB and 3.3 GB; with the 1 MiB cap the peak stays
    // within a few megabytes of what booting took.
    assert!(
        peak < before + 64 * 1024,
        "peak {peak} kB, {before} kB after boot"
    );
    child.kill().await.unwrap();
}
