//! A deserializer over a JSON value that, unlike `&serde_json::Value`, refuses to build a struct
//! from a JSON array (serde accepts a struct's field values as a sequence; the OCPP schemas allow
//! only objects). Everything else is delegated to `&Value`.

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use serde_json::{Error, Map, Value};

use crate::stack::messages::OUT_OF_RANGE;

pub(super) struct Strict<'a>(pub(super) &'a Value);

macro_rules! integers {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
                match ocpp_integer(self.0, false)? {
                    Some(n) => n.$method(visitor),
                    None => self.0.$method(visitor),
                }
            }
        )*
    };
}

/// OCPP 1.6 integers are 32-bit. For an integer field: `-0` (which JSON parsers read as a
/// floating point zero) is the integer 0; an integral number too large for 64 bits, and with
/// `bits32` one outside the 32-bit range, is out of range (a PropertyConstraintViolation),
/// never clamped. `None`: read `value` as it is.
fn ocpp_integer(value: &Value, bits32: bool) -> Result<Option<Value>, Error> {
    let Value::Number(n) = value else {
        return Ok(None);
    };
    if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
        if f == 0.0 && f.is_sign_negative() {
            return Ok(Some(Value::from(0u64)));
        }
        // serde_json reads every integer literal from -2^63 to 2^64 - 1 as an integer; an
        // integral float outside is a number beyond 64 bits.
        let beyond_64_bits = !(f > -9.223_372_036_854_776e18 && f < 1.844_674_407_370_955_2e19);
        if f.is_finite() && f.fract() == 0.0 && beyond_64_bits {
            return Err(de::Error::custom(format!(
                "{OUT_OF_RANGE}: an integer beyond 64 bits{}",
                if bits32 { RANGE_32 } else { "" }
            )));
        }
        return Ok(None);
    }
    let fits = match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => !bits32 || i32::try_from(i).is_ok(),
        (None, Some(u)) => !bits32 || i32::try_from(u).is_ok(),
        (None, None) => true,
    };
    if !fits {
        return Err(de::Error::custom(format!(
            "{OUT_OF_RANGE}: beyond the 32-bit integer range{RANGE_32}"
        )));
    }
    Ok(None)
}

/// What an OCPP integer may hold.
const RANGE_32: &str = " (OCPP integers are -2147483648 to 2147483647)";

macro_rules! delegate {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
                self.0.$method(visitor)
            }
        )*
    };
}

impl<'a> Deserializer<'a> for Strict<'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Seq(items.iter())),
            Value::Object(map) => visitor.visit_map(Entries::new(map)),
            other => other.deserialize_any(visitor),
        }
    }

    delegate!(
        deserialize_bool deserialize_i128 deserialize_u128 deserialize_f32 deserialize_f64
        deserialize_char deserialize_str deserialize_string deserialize_bytes
        deserialize_byte_buf deserialize_unit deserialize_identifier
    );

    integers!(
        deserialize_i8 deserialize_i16 deserialize_i64 deserialize_u8 deserialize_u16
        deserialize_u64
    );

    fn deserialize_i32<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match ocpp_integer(self.0, true)? {
            Some(n) => n.deserialize_i32(visitor),
            None => self.0.deserialize_i32(visitor),
        }
    }

    fn deserialize_u32<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match ocpp_integer(self.0, true)? {
            Some(n) => n.deserialize_u32(visitor),
            None => self.0.deserialize_u32(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Seq(items.iter())),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Entries::new(map)),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Entries::new(map)),
            Value::Array(_) => Err(de::Error::invalid_type(Unexpected::Seq, &visitor)),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

struct Seq<'a>(std::slice::Iter<'a, Value>);

impl<'a> SeqAccess<'a> for Seq<'a> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.0.next() {
            Some(value) => seed.deserialize(Strict(value)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'a> {
    entries: serde_json::map::Iter<'a>,
    value: Option<&'a Value>,
}

impl<'a> Entries<'a> {
    fn new(map: &'a Map<String, Value>) -> Self {
        Self {
            entries: map.iter(),
            value: None,
        }
    }
}

impl<'a> MapAccess<'a> for Entries<'a> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(BorrowedStrDeserializer::<Error>::new(key))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(Strict(value)),
            None => Err(de::Error::custom("value is missing")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
