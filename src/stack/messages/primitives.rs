//! The OCPP 1.6 primitive types: bounded case-insensitive strings, timestamps and one-decimal
//! numbers, each rejecting what the JSON schemas reject with an error the CALLERROR classifier in
//! [`crate::stack::rpc::decode_payload`] maps to the right OCPP-J code.

use chrono::{DateTime, FixedOffset, NaiveDateTime, SubsecRound, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::str::FromStr;

/// Start of the error message for a string longer than its type allows
/// (PropertyConstraintViolation).
pub(crate) const TOO_LONG: &str = "string too long";
/// Start of the error message for a timestamp that is not RFC 3339 (PropertyConstraintViolation).
pub(crate) const BAD_TIMESTAMP: &str = "invalid timestamp";
/// Start of the error message for a number outside the representable range
/// (PropertyConstraintViolation).
pub(crate) const OUT_OF_RANGE: &str = "number out of range";
/// Start of the error message for a `location` that is not an absolute URI
/// (PropertyConstraintViolation).
pub(crate) const BAD_URI: &str = "invalid URI";
/// Start of the error message for a list that must hold at least one element
/// (OccurenceConstraintViolation).
pub(crate) const EMPTY_LIST: &str = "at least one element is required";

/// A string longer than its OCPP type allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{TOO_LONG}: {len} characters, at most {max} allowed")]
pub struct CiStringError {
    /// Length of the rejected value in characters.
    pub len: usize,
    /// The type's maximum length in characters.
    pub max: usize,
}

macro_rules! ci_string {
    ($(#[$meta:meta])* $name:ident, $max:literal) => {
        $(#[$meta])*
        ///
        /// Comparison, ordering and hashing ignore ASCII case, as OCPP 1.6 defines CiString
        /// types as case insensitive; the original spelling is kept and sent back unchanged.
        #[derive(Clone)]
        pub struct $name(String);

        impl $name {
            /// Maximum length in characters.
            pub const MAX_LEN: usize = $max;

            /// Accepts `value` if it has at most [`Self::MAX_LEN`] characters.
            pub fn new(value: impl Into<String>) -> Result<Self, CiStringError> {
                let value = value.into();
                let len = value.chars().count();
                if len > $max {
                    return Err(CiStringError { len, max: $max });
                }
                Ok(Self(value))
            }

            /// `value` cut to [`Self::MAX_LEN`] characters, for text the charger itself holds
            /// (its identity, a fault's info) that must fit the field.
            pub fn truncated(value: &str) -> Self {
                Self(value.chars().take($max).collect())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.eq_ignore_ascii_case(&other.0)
            }
        }

        impl Eq for $name {}

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0.eq_ignore_ascii_case(other)
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0.eq_ignore_ascii_case(other)
            }
        }

        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                for b in self.0.bytes() {
                    state.write_u8(b.to_ascii_lowercase());
                }
                state.write_u8(0xff);
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> Ordering {
                self.0
                    .bytes()
                    .map(|b| b.to_ascii_lowercase())
                    .cmp(other.0.bytes().map(|b| b.to_ascii_lowercase()))
            }
        }

        impl FromStr for $name {
            type Err = CiStringError;
            fn from_str(s: &str) -> Result<Self, CiStringError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = CiStringError;
            fn try_from(s: String) -> Result<Self, CiStringError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = CiStringError;
            fn try_from(s: &str) -> Result<Self, CiStringError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(s: $name) -> String {
                s.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                Self::new(s).map_err(de::Error::custom)
            }
        }
    };
}

ci_string!(
    /// OCPP `CiString20Type`: a case-insensitive string of at most 20 characters.
    CiString20,
    20
);
ci_string!(
    /// OCPP `CiString25Type`: a case-insensitive string of at most 25 characters.
    CiString25,
    25
);
ci_string!(
    /// OCPP `CiString50Type`: a case-insensitive string of at most 50 characters.
    CiString50,
    50
);
ci_string!(
    /// OCPP `CiString255Type`: a case-insensitive string of at most 255 characters.
    CiString255,
    255
);
ci_string!(
    /// OCPP `CiString500Type`: a case-insensitive string of at most 500 characters.
    CiString500,
    500
);

/// OCPP `IdToken`: the identifier of an RFID card or other token, a `CiString20Type`.
pub type IdToken = CiString20;

/// A text that is not an accepted timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{BAD_TIMESTAMP}: {text:?} is not an RFC 3339 date-time (expected e.g. 2026-11-26T08:00:00.000Z)"
)]
pub struct TimestampError {
    /// The rejected text, shortened to 64 characters.
    pub text: String,
}

/// An OCPP `dateTime`, in UTC with millisecond precision.
///
/// Serialises as RFC 3339 UTC with exactly three fraction digits and a `Z` suffix
/// (`2026-11-26T08:00:00.000Z`). Parses RFC 3339 with any offset (converted to UTC) and also a
/// date-time without an offset, which is taken as UTC (some central systems send that). Any
/// finer fraction is truncated to milliseconds, so a value survives a round trip unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// Wraps `at`, truncated to milliseconds.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(at.trunc_subsecs(3))
    }

    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// Parses the accepted wire forms (see the type's documentation).
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        Self::parse_with_zone(text).map(|(t, _)| t)
    }

    /// Parses like [`Timestamp::parse`] and also says which time zone the text gave, so a
    /// caller can warn about a CSMS that does not send UTC (the charger expects UTC).
    pub fn parse_with_zone(text: &str) -> Result<(Self, TimestampZone), TimestampError> {
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            let offset = *at.offset();
            let zone = if offset.local_minus_utc() == 0 {
                TimestampZone::Utc
            } else {
                TimestampZone::Offset(offset)
            };
            return Ok((Self::new(at.with_timezone(&Utc)), zone));
        }
        for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
            if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
                return Ok((Self::new(naive.and_utc()), TimestampZone::Unspecified));
            }
        }
        Err(TimestampError {
            text: text.chars().take(64).collect(),
        })
    }
}

/// The time zone a timestamp's text gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampZone {
    /// `Z`, or an offset of zero (`+00:00`).
    Utc,
    /// Another offset (`+02:00`); the time is converted to UTC when read.
    Offset(FixedOffset),
    /// No offset at all; the time is taken as UTC.
    Unspecified,
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Self::new(at)
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(t: Timestamp) -> Self {
        t.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, TimestampError> {
        Self::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;
        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 date-time string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(TimestampVisitor)
    }
}

/// A number outside what [`Decimal1`] can hold, or not a number at all.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("{OUT_OF_RANGE}: {value} cannot be held as a number with one decimal")]
pub struct Decimal1Error {
    pub value: f64,
}

/// A decimal number with at most one fraction digit, as OCPP 1.6 requires for charging limits
/// and `minChargingRate` (schema `multipleOf 0.1`).
///
/// Held exactly as a count of tenths; constructing from an `f64` rounds to the nearest tenth
/// (halves away from zero). Serialises as a JSON number with one decimal (`16.0`, `4.1`);
/// deserialises any JSON number (rounded) and rejects strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Decimal1 {
    tenths: i64,
}

/// Largest magnitude accepted, in tenths: beyond 2^53 an `f64` no longer holds every tenth.
const MAX_TENTHS: i64 = 1 << 53;

impl Decimal1 {
    pub const ZERO: Decimal1 = Decimal1 { tenths: 0 };

    /// Rounds `value` to one decimal. Fails on NaN, infinity and magnitudes beyond 2^53 tenths.
    pub fn new(value: f64) -> Result<Self, Decimal1Error> {
        let tenths = (value * 10.0).round();
        if !tenths.is_finite() || tenths.abs() > MAX_TENTHS as f64 {
            return Err(Decimal1Error { value });
        }
        Ok(Self {
            tenths: tenths as i64,
        })
    }

    /// The number `tenths / 10`, clamped to the supported range.
    pub fn from_tenths(tenths: i64) -> Self {
        Self {
            tenths: tenths.clamp(-MAX_TENTHS, MAX_TENTHS),
        }
    }

    /// The value in tenths (`16.0` → 160).
    pub fn tenths(self) -> i64 {
        self.tenths
    }

    /// The value as the `f64` nearest to it.
    pub fn value(self) -> f64 {
        self.tenths as f64 / 10.0
    }
}

impl From<u32> for Decimal1 {
    fn from(v: u32) -> Self {
        Self::from_tenths(i64::from(v) * 10)
    }
}

impl From<i32> for Decimal1 {
    fn from(v: i32) -> Self {
        Self::from_tenths(i64::from(v) * 10)
    }
}

impl From<Decimal1> for f64 {
    fn from(d: Decimal1) -> f64 {
        d.value()
    }
}

impl TryFrom<f64> for Decimal1 {
    type Error = Decimal1Error;
    fn try_from(v: f64) -> Result<Self, Decimal1Error> {
        Self::new(v)
    }
}

impl fmt::Display for Decimal1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.tenths < 0 { "-" } else { "" };
        let abs = self.tenths.unsigned_abs();
        write!(f, "{sign}{}.{}", abs / 10, abs % 10)
    }
}

impl Serialize for Decimal1 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.value())
    }
}

impl<'de> Deserialize<'de> for Decimal1 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Decimal1Visitor;
        impl Visitor<'_> for Decimal1Visitor {
            type Value = Decimal1;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal1, E> {
                Decimal1::new(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal1, E> {
                match v.checked_mul(10) {
                    Some(t) if t.abs() <= MAX_TENTHS => Ok(Decimal1::from_tenths(t)),
                    _ => Err(E::custom(Decimal1Error { value: v as f64 })),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal1, E> {
                match i64::try_from(v) {
                    Ok(v) => self.visit_i64(v),
                    Err(_) => Err(E::custom(Decimal1Error { value: v as f64 })),
                }
            }
        }
        deserializer.deserialize_f64(Decimal1Visitor)
    }
}

/// `deserialize_with` for lists the specification requires to hold at least one element.
pub(crate) fn non_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items = Vec::<T>::deserialize(deserializer)?;
    if items.is_empty() {
        return Err(de::Error::custom(EMPTY_LIST));
    }
    Ok(items)
}

/// Whether `text` is an absolute URI (RFC 3986: a scheme, a colon, then no whitespace or
/// control characters), what the schemas' `format: uri` asks of a `location`.
pub fn is_absolute_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    scheme_ok
        && !rest.is_empty()
        && !rest
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
}

/// `deserialize_with` for `location` fields: a string holding an absolute URI.
pub(crate) fn absolute_uri<'de, D>(deserializer: D) -> Result<String, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    if !is_absolute_uri(&text) {
        return Err(de::Error::custom(format!(
            "{BAD_URI}: expected an absolute URI such as ftp://host/path ({} characters given)",
            text.chars().count()
        )));
    }
    Ok(text)
}
