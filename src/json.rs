//! Strict JSON input (I-JSON-like: no duplicate keys, finite numbers, bounded nesting) and the
//! canonical form eventdir writes.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::{Error, Result};

/// The deepest nesting of arrays and objects that eventdir stores in a document, a patch or a
/// meta object. `{}` has depth 1, `{"a":[]}` depth 2.
pub const MAX_DEPTH: usize = 100;

/// Parses `text` strictly. `what` names the input in error messages (e.g. `--data`).
pub fn parse_strict(text: &[u8], what: &str) -> Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let parsed = StrictValue::deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(StrictValue(value)) => {
            check_depth(&value, what)?;
            Ok(value)
        }
        Err(e) => Err(invalid(&e, what)),
    }
}

/// The error for input `what` that serde_json refused.
pub(crate) fn invalid(e: &serde_json::Error, what: &str) -> Error {
    let reason = if e.to_string().starts_with("recursion limit exceeded") {
        format!("nested more than 128 levels deep; at most {MAX_DEPTH} are allowed")
    } else {
        e.to_string()
    };
    Error::InvalidJson {
        what: what.to_string(),
        reason,
    }
}

/// Refuses values nested deeper than [`MAX_DEPTH`].
pub fn check_depth(value: &Value, what: &str) -> Result<()> {
    let depth = depth(value);
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep {
            what: what.to_string(),
            depth,
            limit: MAX_DEPTH,
        });
    }
    Ok(())
}

/// The nesting depth of `value`, computed without recursion so that no input can exhaust the
/// stack.
pub fn depth(value: &Value) -> usize {
    if !matches!(value, Value::Array(_) | Value::Object(_)) {
        return 0;
    }
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, level)) = stack.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(level + 1);
                stack.extend(items.iter().map(|v| (v, level + 1)));
            }
            Value::Object(members) => {
                deepest = deepest.max(level + 1);
                stack.extend(members.values().map(|v| (v, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// The canonical text of a value: compact, object members sorted by the bytes of their names,
/// numbers as serde_json writes them (integers exactly, other numbers in the shortest form that
/// reads back as the same double).
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    crate::canonical::push_value(&mut out, value);
    out
}

/// JSON equality as RFC 6902 defines it for `test`: numbers are equal when numerically equal
/// (`1` equals `1.0`), objects regardless of member order.
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn numbers_equal(x: &Number, y: &Number) -> bool {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return a == b;
    }
    if (x.is_f64() || y.is_f64())
        && let (Some(a), Some(b)) = (x.as_f64(), y.as_f64())
    {
        return a == b;
    }
    false
}

/// Checks that `text` parses into a `serde_json::Value` (numbers in range, nesting within
/// serde_json's limit) without building it: what every reader of a stored line relies on.
pub fn check_readable(text: &str) -> Result<(), String> {
    if crate::plain_json::is_plain(text) {
        return Ok(());
    }
    check_readable_by_serde(text)
}

/// [`check_readable`] without the quick yes for plain text.
pub(crate) fn check_readable_by_serde(text: &str) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_str(text);
    Readable::deserialize(&mut de)
        .and_then(|_| de.end())
        .map_err(|e| e.to_string())
}

/// Visits every value through `deserialize_any`, which (unlike `IgnoredAny`) converts numbers
/// and so refuses one out of range.
struct Readable;

impl<'de> Deserialize<'de> for Readable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ReadableVisitor)
            .map(|()| Readable)
    }
}

struct ReadableVisitor;

impl<'de> Visitor<'de> for ReadableVisitor {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<Readable>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<de::IgnoredAny>()?.is_some() {
            map.next_value::<Readable>()?;
        }
        Ok(())
    }
}

/// A `serde_json::Value` that refuses duplicate object keys while it is parsed.
pub(crate) struct StrictValue(pub(crate) Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

pub(crate) struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let StrictValue(value) = map.next_value()?;
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse_strict(br#"{"a":1,"a":2}"#, "--data").unwrap_err();
        assert!(err.to_string().contains("duplicate key"), "{err}");
        assert!(parse_strict(br#"{"a":{"b":1},"c":{"b":2}}"#, "x").is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(parse_strict(deep.as_bytes(), "x").is_err());
        let just_too_deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(matches!(
            parse_strict(just_too_deep.as_bytes(), "x"),
            Err(Error::TooDeep { .. })
        ));
        let deepest = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse_strict(deepest.as_bytes(), "x").is_ok());
    }

    #[test]
    fn trailing_garbage_and_bad_numbers_are_refused() {
        assert!(parse_strict(b"{} x", "x").is_err());
        assert!(parse_strict(b"1e400", "x").is_err());
        assert!(parse_strict(b"\"\xff\"", "x").is_err());
    }

    #[test]
    fn canonical_form_sorts_members_and_is_compact() {
        let value = parse_strict(br#"{ "b": 1, "a": [1.0, 2, "x"] }"#, "x").unwrap();
        assert_eq!(canonical(&value), r#"{"a":[1.0,2,"x"],"b":1}"#);
    }

    #[test]
    fn readable_refuses_what_value_cannot_hold() {
        assert!(check_readable(r#"{"a":[1,2.5,"x",null,true,{"b":-3}]}"#).is_ok());
        assert!(check_readable("[1e400]").is_err());
        assert!(check_readable(r#"{"a":-1e999}"#).is_err());
        assert!(check_readable(&("[".repeat(200) + &"]".repeat(200))).is_err());
    }

    #[test]
    fn equality_is_numeric() {
        assert!(json_equal(&json!(1), &json!(1.0)));
        assert!(json_equal(
            &json!({"a": [1, 2.5]}),
            &json!({"a": [1.0, 2.5]})
        ));
        assert!(!json_equal(&json!(1), &json!("1")));
        assert!(!json_equal(&json!(u64::MAX), &json!(-1)));
    }
}
