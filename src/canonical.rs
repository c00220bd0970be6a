//! The canonical text of JSON values, written straight into a `String`: the bytes
//! `serde_json::to_string` writes for a `Value` (FORMAT.md's canonical form), at a fraction of
//! the cost. serde_json escapes strings byte by byte; writing an event spends more time there
//! than anywhere but SHA-256, so strings are scanned eight bytes at a time here.

use std::fmt::Write;

use serde_json::{Number, Value};

/// Appends the canonical text of `value` to `out`: compact, object members in the map's order
/// (sorted by the bytes of their names), strings escaped as serde_json escapes them.
pub fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => push_number(out, n),
        Value::String(s) => push_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_value(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (name, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, name);
                out.push(':');
                push_value(out, item);
            }
            out.push('}');
        }
    }
}

/// Integers exactly, other numbers in the shortest form that reads back as the same double:
/// what serde_json's serializer writes (stored numbers are always finite).
fn push_number(out: &mut String, n: &Number) {
    if let Some(u) = n.as_u64() {
        out.push_str(itoa::Buffer::new().format(u));
    } else if let Some(i) = n.as_i64() {
        out.push_str(itoa::Buffer::new().format(i));
    } else {
        // serde_json's own float formatting, whichever algorithm it uses.
        write!(out, "{n}").expect("writing to a String cannot fail");
    }
}

/// Appends `s` as a JSON string: `"` and `\` escaped with a backslash, the control characters
/// U+0000..U+001F as `\b \t \n \f \r` or `\u00XX`, everything else as it is.
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    let mut rest = s;
    while let Some(i) = first_escape(rest.as_bytes()) {
        let b = rest.as_bytes()[i];
        out.push_str(&rest[..i]);
        push_escape(out, b, escape(b).expect("found as needing an escape"));
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

/// The index of the first byte of `bytes` that a JSON string must escape (`"`, `\`, or below
/// 0x20), looked for eight bytes at a time.
pub fn first_escape(bytes: &[u8]) -> Option<usize> {
    let mut words = bytes.chunks_exact(8);
    for (n, word) in words.by_ref().enumerate() {
        let hits = escape_hits(u64::from_le_bytes(word.try_into().expect("eight bytes")));
        if hits != 0 {
            return Some(8 * n + hits.trailing_zeros() as usize / 8);
        }
    }
    let tail = words.remainder();
    let at = bytes.len() - tail.len();
    tail.iter()
        .position(|&b| escape(b).is_some())
        .map(|i| at + i)
}

/// The high bit of each byte of `word` (read little-endian) that is below 0x20, `"` or `\`,
/// exact up to its lowest set bit: the classic "has zero byte" test `(x - 0x01..) & !x &
/// 0x80..` only errs in bytes above a true hit (through the borrow), so the lowest set bit
/// marks the first byte to escape.
fn escape_hits(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20);
    let quote = word ^ (ONES * b'"' as u64);
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = word ^ (ONES * b'\\' as u64);
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    ((below_space & !word) | quote | backslash) & HIGHS
}

/// How serde_json escapes byte `b`: `None` when it stands as it is, `Some(c)` for `\c`, and
/// `Some('u')` for `\u00XX`.
fn escape(b: u8) -> Option<u8> {
    match b {
        b'"' => Some(b'"'),
        b'\\' => Some(b'\\'),
        0x08 => Some(b'b'),
        0x09 => Some(b't'),
        0x0a => Some(b'n'),
        0x0c => Some(b'f'),
        0x0d => Some(b'r'),
        0x00..=0x1f => Some(b'u'),
        _ => None,
    }
}

fn push_escape(out: &mut String, b: u8, escape: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push('\\');
    out.push(char::from(escape));
    if escape == b'u' {
        out.push_str("00");
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn written(value: &Value) -> String {
        let mut out = String::new();
        push_value(&mut out, value);
        out
    }

    #[test]
    fn every_byte_that_needs_an_escape_is_escaped_as_serde_json_escapes_it() {
        for c in (0u8..0x80)
            .map(char::from)
            .chain(['é', '\u{2028}', '\u{7f}', '😀'])
        {
            for at in 0..17 {
                let s: String = "a".repeat(at) + &c.to_string() + &"b".repeat(16 - at);
                let value = Value::String(s);
                assert_eq!(written(&value), serde_json::to_string(&value).unwrap());
            }
        }
    }

    #[test]
    fn numbers_are_written_as_serde_json_writes_them() {
        let text =
            r#"[0,-0,1,-1,18446744073709551615,-9223372036854775808,0.1,1e300,-2.5e-8,1.0,5e-324]"#;
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(written(&value), serde_json::to_string(&value).unwrap());
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[\u{0}-\u{7f}]{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map("[\u{0}-\u{7f}]{0,12}|\\PC{0,6}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Bytes drawn mostly from those to escape and their neighbours, which the word test
        /// could mistake for them.
        #[test]
        fn the_first_byte_to_escape_is_found_exactly(
            bytes in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(0x1f), Just(0x20), Just(b'!'), Just(b'"'), Just(b'#'),
                    Just(b'\\'), Just(b']'), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()],
                0..40,
            )
        ) {
            let naive = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            prop_assert_eq!(first_escape(&bytes), naive);
        }

        #[test]
        fn any_value_is_written_byte_for_byte_as_serde_json_writes_it(value in any_value()) {
            prop_assert_eq!(written(&value), serde_json::to_string(&value).unwrap());
        }
    }
}
