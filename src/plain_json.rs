//! A quick yes for the plain JSON eventdir writes: one value, no whitespace, strings without
//! escapes, integers of at most 18 digits and decimals without an exponent, shallow nesting.
//! Every text it accepts serde_json reads too (numbers in range, nesting within its limit),
//! so a reader that must know a stored payload is readable asks this first and serde_json
//! only when it says no: most of what a verify or a clone reads never goes through serde.

use crate::canonical::first_escape;

/// The deepest nesting taken here; deeper texts go to serde_json (whose limit is 128).
const MAX_DEPTH: u32 = 64;
/// The most digits taken in the integer part of a number, and in its fraction: an integer of
/// 18 digits fits in an `i64`, and a decimal without exponent under 10^18 is a finite double.
const MAX_DIGITS: usize = 18;

/// Whether `text` is one JSON value in the plain subset. `false` says nothing about `text`
/// beyond that: ask serde_json.
pub fn is_plain(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    // One bit per open container, the innermost lowest: 1 for an object, 0 for an array.
    let mut objects: u64 = 0;
    let mut depth = 0;
    'value: loop {
        // A value starts at `i`.
        match b.get(i) {
            Some(b'"') => match string_end(b, i) {
                Some(end) => i = end,
                None => return false,
            },
            Some(b'-' | b'0'..=b'9') => match number_end(b, i) {
                Some(end) => i = end,
                None => return false,
            },
            Some(b't') if b[i..].starts_with(b"true") => i += 4,
            Some(b'f') if b[i..].starts_with(b"false") => i += 5,
            Some(b'n') if b[i..].starts_with(b"null") => i += 4,
            Some(&open @ (b'{' | b'[')) => {
                if depth == MAX_DEPTH {
                    return false;
                }
                depth += 1;
                objects = (objects << 1) | u64::from(open == b'{');
                i += 1;
                let close = if open == b'{' { b'}' } else { b']' };
                if b.get(i) == Some(&close) {
                    depth -= 1;
                    objects >>= 1;
                    i += 1;
                } else if open == b'{' {
                    match key_end(b, i) {
                        Some(end) => i = end,
                        None => return false,
                    }
                    continue 'value;
                } else {
                    continue 'value;
                }
            }
            _ => return false,
        }
        // After a value: close what ends here, then the next member or element, or the end.
        loop {
            if depth == 0 {
                return i == b.len();
            }
            let in_object = objects & 1 == 1;
            match (b.get(i), in_object) {
                (Some(b','), false) => {
                    i += 1;
                    continue 'value;
                }
                (Some(b','), true) => {
                    match key_end(b, i + 1) {
                        Some(end) => i = end,
                        None => return false,
                    }
                    continue 'value;
                }
                (Some(b'}'), true) | (Some(b']'), false) => {
                    depth -= 1;
                    objects >>= 1;
                    i += 1;
                }
                _ => return false,
            }
        }
    }
}

/// The end of a member name and its colon starting at `at`.
fn key_end(b: &[u8], at: usize) -> Option<usize> {
    let end = string_end(b, at)?;
    (b.get(end) == Some(&b':')).then_some(end + 1)
}

/// The end of a string without escapes or control characters starting at `at` (just after
/// its closing quote).
pub(crate) fn string_end(b: &[u8], at: usize) -> Option<usize> {
    if b.get(at) != Some(&b'"') {
        return None;
    }
    let len = first_escape(&b[at + 1..])?;
    (b[at + 1 + len] == b'"').then_some(at + len + 2)
}

/// The contents of a string without escapes or control characters starting at `*at`, which
/// moves just after its closing quote.
pub(crate) fn take_string<'a>(text: &'a str, at: &mut usize) -> Option<&'a str> {
    let end = string_end(text.as_bytes(), *at)?;
    let contents = &text[*at + 1..end - 1];
    *at = end;
    Some(contents)
}

/// The end of `-?(0|[1-9][0-9]*)(\.[0-9]+)?` starting at `at`, with at most [`MAX_DIGITS`]
/// digits on each side of the point.
fn number_end(b: &[u8], at: usize) -> Option<usize> {
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = at + usize::from(b[at] == b'-');
    let whole = digits(i);
    if whole == 0 || whole > MAX_DIGITS || (whole > 1 && b[i] == b'0') {
        return None;
    }
    i += whole;
    if b.get(i) == Some(&b'.') {
        let fraction = digits(i + 1);
        if fraction == 0 || fraction > MAX_DIGITS {
            return None;
        }
        i += 1 + fraction;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde_reads(text: &str) -> bool {
        crate::json::check_readable_by_serde(text).is_ok()
    }

    #[test]
    fn what_eventdir_writes_is_plain() {
        for text in [
            r#"{"customer":"c-0000001","items":[{"qty":2,"sku":"A-1"}],"n":1,"note":"abc","status":"open"}"#,
            r#"[{"op":"replace","path":"/n","value":7},{"op":"replace","path":"/status","value":"paid"}]"#,
            r#"[{"op":"add","path":"/a","value":{"x":[1,-2.5,"s",null,true,false,{}]}},{"op":"remove","path":"/b"}]"#,
            "null",
            "{}",
            "[]",
            "-0",
            "0.5",
            "\"é😀\"",
        ] {
            assert!(is_plain(text), "{text}");
            assert!(serde_reads(text), "{text}");
        }
    }

    #[test]
    fn anything_outside_the_subset_is_left_to_serde() {
        for text in [
            "",
            " null",
            "null ",
            "[1, 2]",
            r#"{"a" :1}"#,
            r#""a\"b""#,
            r#""a\nb""#,
            "\"a\u{1}b\"",
            "1e5",
            "1E5",
            "01",
            "-",
            "1.",
            ".5",
            "1234567890123456789",
            "0.1234567890123456789",
            "[1,]",
            "{\"a\":1,}",
            "[1}",
            "{\"a\":1]",
            "{\"a\"}",
            "{1:2}",
            "[[]",
            "[]]",
            "nul",
            "truee",
            "\"open",
            "1 2",
            "[1][2]",
        ] {
            assert!(!is_plain(text), "{text:?}");
        }
        let deep = "[".repeat(65) + &"]".repeat(65);
        assert!(!is_plain(&deep));
        let shallow = "[".repeat(64) + &"]".repeat(64);
        assert!(is_plain(&shallow));
    }

    /// Texts built from the pieces of JSON, most of them not JSON at all.
    fn pieces() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("{"),
            Just("}"),
            Just("["),
            Just("]"),
            Just(","),
            Just(":"),
            Just("\"k\""),
            Just("\"\\n\""),
            Just("\""),
            Just("0"),
            Just("-1"),
            Just("12.5"),
            Just("1e400"),
            Just("99999999999999999999"),
            Just("true"),
            Just("null"),
            Just(" "),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn a_plain_text_is_one_serde_json_reads(text in pieces()) {
            if is_plain(&text) {
                prop_assert!(serde_reads(&text), "{}", text);
            }
        }

    }
}
