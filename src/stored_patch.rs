//! Reading a stored patch in the canonical form eventdir writes, the commonest text a fold
//! parses: `[{"op":"replace","path":"/n","value":1},…]`, members in sorted order, strings
//! without escapes. Recognised by a scanner a few times faster than serde's visitors; any other
//! text (escapes, other members, whitespace, an error of any kind) is left to the general
//! parser, so the two agree on every text. The same scanner reads the `data` of a request line
//! written in that form (see `plain_request`), checking its values as all input is checked.
//! A fold applies such a patch straight from its text ([`apply`]), without building its
//! operations first.

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

/// Folds the stored patch `text` into `doc` as [`crate::patch::apply_owned`] folds what
/// [`crate::patch::parse_stored`] makes of it, with the same result and the same error, but
/// straight from the text: no pointer is parsed into tokens, and a string that replaces a
/// string is copied into the old one's allocation. `None`, with `doc` untouched, when the
/// text is not in the form this scanner knows or a pointer has an escape (`~`): the caller
/// then parses it in full.
pub fn apply(doc: &mut Value, text: &str) -> Option<Result<(), String>> {
    let mut scan = Scan::new(text, false);
    let operations = scan.sequence(Some)?;
    if scan.at != text.len() || !operations.iter().all(Scanned::is_plain) {
        return None;
    }
    Some(
        operations
            .into_iter()
            .enumerate()
            .try_for_each(|(index, op)| op.fold_into(doc, index)),
    )
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
        self.sequence(Scanned::into_operation).map(Patch)
    }

    /// `[OPERATION,…]`, each operation as `each` makes it.
    fn sequence<T>(&mut self, mut each: impl FnMut(Scanned<'a>) -> Option<T>) -> Option<Vec<T>> {
        self.literal("[")?;
        let mut operations = Vec::with_capacity(4);
        loop {
            operations.push(each(self.operation()?)?);
            if self.literal("]").is_some() {
                return Some(operations);
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
    fn operation(&mut self) -> Option<Scanned<'a>> {
        self.literal("{")?;
        let from = match self.literal(r#""from":"#) {
            Some(()) => {
                let from = self.string()?;
                self.literal(",")?;
                Some(from)
            }
            None => None,
        };
        self.literal(r#""op":"#)?;
        let op = self.string()?;
        self.literal(r#","path":"#)?;
        let path = self.string()?;
        let value = match self.literal(r#","value":"#) {
            Some(()) => Some(self.value()?),
            None => None,
        };
        self.literal("}")?;
        // The canonical text gives `value` and `from` only to the operations that take them.
        let (takes_value, takes_from) = members_taken(op).unwrap_or((false, false));
        self.verbatim &= value.is_some() == takes_value && from.is_some() == takes_from;
        Some(Scanned {
            op,
            path,
            from,
            value,
        })
    }

    /// A string without escapes or control characters: its contents as they stand.
    fn string(&mut self) -> Option<&'a str> {
        crate::plain_json::take_string(self.text, &mut self.at)
    }

    /// Any JSON value: the short ones by hand, numbers and containers by serde_json (the
    /// parser the general path uses, so numbers come out the same).
    fn value(&mut self) -> Option<ScannedValue<'a>> {
        let rest = self.rest();
        let value = match rest.as_bytes().first()? {
            b'"' => return self.string().map(ScannedValue::Plain),
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
        };
        value.map(ScannedValue::Parsed)
    }
}

/// Whether the operation named `op` takes a `value` and a `from`; `None` for a name RFC 6902
/// does not have.
fn members_taken(op: &str) -> Option<(bool, bool)> {
    match op {
        "add" | "replace" | "test" => Some((true, false)),
        "move" | "copy" => Some((false, true)),
        "remove" => Some((false, false)),
        _ => None,
    }
}

/// An operation as the scanner read it, its strings still in the text.
struct Scanned<'a> {
    op: &'a str,
    path: &'a str,
    from: Option<&'a str>,
    value: Option<ScannedValue<'a>>,
}

/// A value as the scanner read it: a string without escapes, still in the text, or any other
/// value.
enum ScannedValue<'a> {
    Plain(&'a str),
    Parsed(Value),
}

impl ScannedValue<'_> {
    fn into_value(self) -> Value {
        match self {
            ScannedValue::Plain(text) => Value::String(text.to_string()),
            ScannedValue::Parsed(value) => value,
        }
    }

    /// Puts this value where `target` is; a string over a string reuses its allocation.
    fn place(self, target: &mut Value) {
        match (self, target) {
            (ScannedValue::Plain(text), Value::String(old)) => {
                old.clear();
                old.push_str(text);
            }
            (value, target) => *target = value.into_value(),
        }
    }
}

impl<'a> Scanned<'a> {
    fn into_operation(self) -> Option<PatchOperation> {
        crate::patch::operation(
            Some(self.op),
            Some(self.path.to_string()),
            self.from.map(str::to_string),
            self.value.map(ScannedValue::into_value),
        )
        .ok()
    }

    /// Whether this is a valid operation whose pointers have no escape: a known `op` with
    /// the members it takes, and pointers that are empty or start with `/`, without `~`. Only
    /// those conditions make [`crate::patch::operation`] refuse one.
    fn is_plain(&self) -> bool {
        let plain_pointer = |p: &str| (p.is_empty() || p.starts_with('/')) && !p.contains('~');
        let Some((takes_value, takes_from)) = members_taken(self.op) else {
            return false;
        };
        plain_pointer(self.path)
            && (!takes_value || self.value.is_some())
            && (!takes_from || self.from.is_some_and(plain_pointer))
    }

    /// Applies this operation, number `index` of its patch, to `doc` as
    /// [`crate::patch::apply_owned`] would: here for a member or item that is there (and an
    /// `add` of a new member), by the general code for the rest, errors included.
    fn fold_into(mut self, doc: &mut Value, index: usize) -> Result<(), String> {
        match self.op {
            "replace" => {
                if let Some(target) = crate::patch::resolve_mut(doc, self.path) {
                    self.take_value().place(target);
                    return Ok(());
                }
            }
            "add" => {
                if let Some((members, name)) = crate::patch::parent_members(doc, self.path) {
                    match members.get_mut(name) {
                        Some(member) => self.take_value().place(member),
                        None => {
                            members.insert(name.to_string(), self.take_value().into_value());
                        }
                    }
                    return Ok(());
                }
            }
            "remove" => {
                if let Some((members, name)) = crate::patch::parent_members(doc, self.path)
                    && members.remove(name).is_some()
                {
                    return Ok(());
                }
            }
            _ => {}
        }
        let op = self
            .into_operation()
            .expect("a plain operation is a valid one");
        crate::patch::apply_owned_operation(doc, index, op)
    }

    fn take_value(&mut self) -> ScannedValue<'a> {
        self.value.take().expect("add and replace have a value")
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

        /// Folding a patch straight from its text ends where parsing it and applying the
        /// operations ends: the same state, or the same error.
        #[test]
        fn a_patch_folded_from_its_text_folds_as_the_parsed_patch_does(
            ops in prop::collection::vec(
                (
                    prop_oneof![
                        12 => prop::sample::select(vec!["add", "remove", "replace", "move", "copy", "test"]),
                        1 => Just("x"),
                    ],
                    path(),
                    path(),
                    prop::sample::select(vec![
                        "1", "\"s\"", "\"\"", "\"x\"", "null", "{}", "[1]", "{\"q\":2}", "2.5",
                    ]),
                    // now and then a member the operation does not take, or lacks one it does
                    prop::bool::weighted(0.1),
                ),
                1..5,
            )
        ) {
            let body: Vec<String> = ops
                .iter()
                .map(|&(op, path, from, value, odd)| {
                    let takes_from = matches!(op, "move" | "copy");
                    let takes_value = matches!(op, "add" | "replace" | "test");
                    let from = if takes_from != odd { format!(r#""from":"{from}","#) } else { String::new() };
                    let value = if takes_value != odd { format!(r#","value":{value}"#) } else { String::new() };
                    format!(r#"{{{from}"op":"{op}","path":"{path}"{value}}}"#)
                })
                .collect();
            let text = format!("[{}]", body.join(","));
            let original = serde_json::json!(
                {"a": {"b": [1, "s"]}, "c": "x", "d~/e": 1, "items": [{"q": 1}], "n": 0}
            );
            let mut ours = original.clone();
            let Some(folded) = apply(&mut ours, &text) else {
                prop_assert_eq!(&ours, &original, "{} was left alone", text);
                return Ok(());
            };
            let mut theirs = original.clone();
            let parsed = crate::patch::parse_stored(&text);
            prop_assert!(parsed.is_ok(), "{} folded, but does not parse", text);
            let applied = crate::patch::apply_owned(&mut theirs, parsed.unwrap());
            prop_assert_eq!(&folded, &applied, "{}", text);
            if applied.is_ok() {
                prop_assert_eq!(&ours, &theirs, "{}", text);
            }
        }
    }

    /// Pointers that name members and items that are there or not, nested, now and then
    /// escaped or invalid.
    fn path() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            12 => prop::sample::select(vec![
                "", "/a", "/a/b", "/a/b/0", "/a/b/1", "/a/b/2", "/a/b/-", "/a/x", "/c", "/n",
                "/items/0/q", "/items/0", "/zz/y", "/c/x",
            ]),
            1 => prop::sample::select(vec!["/d~0~1e", "a"]),
        ]
    }

    #[test]
    fn a_patch_with_an_escape_or_an_error_of_form_is_left_to_the_general_parser() {
        let mut state = serde_json::json!({"a~b": 1, "c": 2});
        for text in [
            r#"[{"op":"remove","path":"/c"},{"op":"remove","path":"/a~0b"}]"#,
            r#"[{"op":"remove","path":"/c"},{"op":"add","path":"c","value":1}]"#,
            r#"[{"op":"remove","path":"/c"},{"op":"move","path":"/x"}]"#,
            r#"[{"op":"remove","path":"/c"},{"op":"x","path":"/x"}]"#,
            r#"[{"op":"remove","path":"/c"}] "#,
        ] {
            assert_eq!(apply(&mut state, text), None, "{text}");
        }
        assert_eq!(state, serde_json::json!({"a~b": 1, "c": 2}));
    }

    #[test]
    fn a_string_replacing_a_string_is_written_into_its_allocation() {
        let mut state = serde_json::json!({"s": "a longer string than the next"});
        let before = state["s"].as_str().unwrap().as_ptr();
        let text = r#"[{"op":"replace","path":"/s","value":"shorter"}]"#;
        assert_eq!(apply(&mut state, text), Some(Ok(())));
        assert_eq!(state, serde_json::json!({"s": "shorter"}));
        assert_eq!(state["s"].as_str().unwrap().as_ptr(), before);
    }
}
