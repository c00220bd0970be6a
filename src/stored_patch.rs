//! Reading a stored patch in the canonical form eventdir writes, the commonest text a fold
//! parses: `[{"op":"replace","path":"/n","value":1},…]`, members in sorted order, strings
//! without escapes. Recognised by a scanner a few times faster than serde's visitors; any other
//! text (escapes, other members, whitespace, an error of any kind) is left to the general
//! parser, so the two agree on every text. The same scanner reads the `data` of a request line
//! written in that form (see `plain_request`), checking its values as all input is checked.

use json_patch::{Patch, PatchOperation};
use serde_json::Value;

use crate::json::{self, StrictValue};

/// The patch `text` holds, when it is in the canonical form this scanner knows; `None` sends
/// the text to the general parser.
pub fn parse(text: &str) -> Option<Patch> {
    let mut scan = Scan::new(text, false);
    let patch = scan.patch()?;
    (scan.at == text.len()).then_some(patch)
}

/// A patch in the canonical member order at the start of a request line's `data`.
pub struct Leading {
    pub patch: Patch,
    /// How many bytes of the text it spans.
    pub len: usize,
    /// Whether those bytes are the patch's canonical text as they stand: every value a string
    /// without escapes, an integer of at most 18 digits, `true`, `false` or `null`.
    pub verbatim: bool,
}

/// The patch `text` starts with, read as input: a container value with a duplicate member,
/// or nested so deep that the line would be deeper than [`json::MAX_DEPTH`], is left to the
/// general parser, which refuses it. `None` when the text does not start with such a patch.
pub fn parse_leading(text: &str) -> Option<Leading> {
    let mut scan = Scan::new(text, true);
    let patch = scan.patch()?;
    Some(Leading {
        patch,
        len: scan.at,
        verbatim: scan.verbatim,
    })
}

/// The depth of a request line around an operation's value: the line, its `data` array and
/// the operation object.
const LINE_DEPTH_AROUND_VALUE: usize = 3;

struct Scan<'a> {
    text: &'a str,
    at: usize,
    /// Whether values are input, to be read strictly.
    input: bool,
    /// Whether every value so far stands in its canonical text.
    verbatim: bool,
}

impl<'a> Scan<'a> {
    fn new(text: &'a str, input: bool) -> Scan<'a> {
        Scan {
            text,
            at: 0,
            input,
            verbatim: true,
        }
    }

    /// `[OPERATION,…]`, one operation at least.
    fn patch(&mut self) -> Option<Patch> {
        self.literal("[")?;
        let mut operations = Vec::with_capacity(4);
        loop {
            operations.push(self.operation()?);
            if self.literal("]").is_some() {
                return Some(Patch(operations));
            }
            self.literal(",")?;
        }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    /// Steps over `expected` when the text continues with it.
    fn literal(&mut self, expected: &str) -> Option<()> {
        self.rest().starts_with(expected).then(|| {
            self.at += expected.len();
        })
    }

    /// `{"from":S,"op":"NAME","path":S,"value":V}`, `from` and `value` optional.
    fn operation(&mut self) -> Option<PatchOperation> {
        self.literal("{")?;
        let from = match self.literal(r#""from":"#) {
            Some(()) => {
                let from = self.string()?;
                self.literal(",")?;
                Some(from.to_string())
            }
            None => None,
        };
        self.literal(r#""op":"#)?;
        let op = self.string()?;
        self.literal(r#","path":"#)?;
        let path = self.string()?.to_string();
        let value = match self.literal(r#","value":"#) {
            Some(()) => Some(self.value()?),
            None => None,
        };
        self.literal("}")?;
        // The canonical text gives `value` and `from` only to the operations that take them.
        let (takes_value, takes_from) = match op {
            "add" | "replace" | "test" => (true, false),
            "move" | "copy" => (false, true),
            _ => (false, false),
        };
        self.verbatim &= value.is_some() == takes_value && from.is_some() == takes_from;
        crate::patch::operation(Some(op), Some(path), from, value).ok()
    }

    /// A string without escapes or control characters: its contents as they stand.
    fn string(&mut self) -> Option<&'a str> {
        crate::plain_json::take_string(self.text, &mut self.at)
    }

    /// Any JSON value: the short ones by hand, numbers and containers by serde_json (the
    /// parser the general path uses, so numbers come out the same).
    fn value(&mut self) -> Option<Value> {
        let rest = self.rest();
        match rest.as_bytes().first()? {
            b'"' => self.string().map(|s| Value::String(s.to_string())),
            b't' => self.literal("true").map(|()| Value::Bool(true)),
            b'f' => self.literal("false").map(|()| Value::Bool(false)),
            b'n' => self.literal("null").map(|()| Value::Null),
            b'-' | b'0'..=b'9' => {
                let len = rest
                    .bytes()
                    .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .unwrap_or(rest.len());
                let text = &rest[..len];
                let number = if is_canonical_integer(text) {
                    // As serde_json reads it: a u64, or an i64 when negative.
                    match text.starts_with('-') {
                        false => Value::from(text.parse::<u64>().ok()?),
                        true => Value::from(text.parse::<i64>().ok()?),
                    }
                } else {
                    self.verbatim = false;
                    serde_json::from_str::<Value>(text).ok()?
                };
                self.at += len;
                Some(number)
            }
            _ if self.input => {
                let mut values =
                    serde_json::Deserializer::from_str(rest).into_iter::<StrictValue>();
                let StrictValue(value) = values.next()?.ok()?;
                if LINE_DEPTH_AROUND_VALUE + json::depth(&value) > json::MAX_DEPTH {
                    return None;
                }
                self.verbatim = false;
                self.at += values.byte_offset();
                Some(value)
            }
            _ => {
                let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
                let value = values.next()?.ok()?;
                self.verbatim = false;
                self.at += values.byte_offset();
                Some(value)
            }
        }
    }
}

/// Whether `number` is an integer as the canonical writer prints it: no leading zero, no
/// `-0`, and few enough digits to be read as an integer.
fn is_canonical_integer(number: &str) -> bool {
    let digits = number.strip_prefix('-').unwrap_or(number);
    !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" && digits.len() == number.len() || !digits.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the general parser makes of `text`.
    fn general(text: &str) -> Option<Patch> {
        serde_json::from_str::<Patch>(text).ok()
    }

    #[test]
    fn canonical_patches_are_read_as_the_general_parser_reads_them() {
        let texts = [
            r#"[{"op":"replace","path":"/n","value":1}]"#,
            r#"[{"op":"add","path":"/a","value":{"x":[1,2.5,"s",null]}},{"op":"remove","path":"/b"}]"#,
            r#"[{"from":"/b","op":"move","path":"/c"},{"from":"/c","op":"copy","path":"/d"}]"#,
            r#"[{"op":"test","path":"","value":-0.0}]"#,
            r#"[{"op":"add","path":"/a~1b/0","value":[]}]"#,
            r#"[{"op":"replace","path":"/t","value":true},{"op":"add","path":"/f","value":false}]"#,
            r#"[{"op":"add","path":"/big","value":123456789012345678901234567890}]"#,
            r#"[{"op":"add","path":"/e","value":1.5e-7}]"#,
            r#"[{"op":"add","path":"/u","value":"é ☃ 𝄞"}]"#,
        ];
        for text in texts {
            let ours = parse(text);
            assert!(ours.is_some(), "{text} is canonical");
            assert_eq!(ours, general(text), "{text}");
        }
    }

    #[test]
    fn other_texts_are_left_to_the_general_parser() {
        let texts = [
            "[]",
            r#"[{"op":"add","path":"/a\"b","value":1}]"#,
            r#"[{"op":"add","path":"/a","value":"x\ny"}]"#,
            r#"[{"path":"/a","op":"remove"}]"#,
            r#"[{"op":"add","path":"/a","value":1,"x":2}]"#,
            r#"[ {"op":"remove","path":"/a"}]"#,
            r#"[{"op":"remove","path":"/a"}] "#,
            r#"[{"op":"remove","path":"/a"}],[]"#,
            r#"[{"op":"add","path":"/a","value":1e400}]"#,
            r#"[{"op":"add","path":"/a","value":01}]"#,
            r#"[{"op":"add","path":"/a","value":1-2}]"#,
            r#"[{"op":"add","path":"/a","value":tru}]"#,
            r#"[{"op":"add","path":"/a","value":{"x":1]}]"#,
            r#"[{"op":"frobnicate","path":"/a"}]"#,
            r#"[{"op":"add","path":"a","value":1}]"#,
            r#"[{"op":"add","path":"/a"}]"#,
            r#"[{"op":"move","path":"/a"}]"#,
            "[{\"op\":\"add\",\"path\":\"/a\u{1}\",\"value\":1}]",
        ];
        for text in texts {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    proptest! {
        /// Whatever the scanner accepts, the general parser reads the same way.
        #[test]
        fn the_scanner_never_disagrees_with_the_general_parser(
            ops in prop::collection::vec(
                (
                    prop::sample::select(vec!["add", "remove", "replace", "move", "copy", "test", "x"]),
                    prop_oneof![4 => "(/[a-c~01]{0,2}){0,3}", 1 => "[/a-c~01\"\\\\ ]{0,6}"],
                    prop::option::of("(/[a-c~01]{0,2}){0,2}"),
                    prop::option::of(prop_oneof![
                        Just("1".to_string()),
                        Just("-2.5e3".to_string()),
                        Just("\"s\"".to_string()),
                        Just("null".to_string()),
                        Just("{\"k\":[1,{}]}".to_string()),
                        "-?[0-9]{1,3}(\\.[0-9]{1,2})?([eE][-+]?[0-9])?",
                        "[-+.eE0-9]{1,5}",
                        "[a-z{}\\[\\],:\"0-9]{1,6}",
                    ]),
                ),
                1..3,
            )
        ) {
            let body: Vec<String> = ops
                .iter()
                .map(|(op, path, from, value)| {
                    let from = from.as_ref().map(|f| format!(r#""from":"{f}","#)).unwrap_or_default();
                    let value = value.as_ref().map(|v| format!(r#","value":{v}"#)).unwrap_or_default();
                    format!(r#"{{{from}"op":"{op}","path":"{path}"{value}}}"#)
                })
                .collect();
            let text = format!("[{}]", body.join(","));
            if let Some(ours) = parse(&text) {
                prop_assert_eq!(Some(ours), general(&text), "{}", text);
            }
        }
    }
}
