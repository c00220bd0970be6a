//! A quick read of the request line producers commonly write: an update as
//! `{"doc":"order:1","type":"update","expect":7,"data":[{"op":"replace","path":"/n","value":1}]}`,
//! without whitespace, strings without escapes, members in any order, `type` and `expect`
//! optional, and a patch in the canonical member order (see `stored_patch`). A batch reads one
//! such line per event, and serde's visitors cost several times what this scanner does. When
//! the line holds the patch's canonical text as it stands, the request comes with its payload
//! encoded from that text, without writing it again.
//!
//! Anything else (other members, whitespace, escapes, a create, a delete, an error of any
//! kind) is left to the general parser of `request_line`, so the two agree on every line and
//! every refusal is the general parser's.

use crate::DocId;
use crate::append::{Action, Expect, Request};
use crate::event::Payload;
use crate::plain_json::take_string;
use crate::stored_patch;

/// The request the line `text` holds, when it is in the plain form of an update; `None` sends
/// the line to the general parser.
pub fn parse(text: &str) -> Option<Request> {
    let b = text.as_bytes();
    if b.first() != Some(&b'{') {
        return None;
    }
    let (mut doc, mut kind, mut expect, mut data) = (None, None, None, None);
    let mut at = 1;
    loop {
        let key = take_string(text, &mut at)?;
        if b.get(at) != Some(&b':') {
            return None;
        }
        at += 1;
        match key {
            "doc" if doc.is_none() => doc = Some(take_string(text, &mut at)?),
            "type" if kind.is_none() => kind = Some(take_string(text, &mut at)?),
            "expect" if expect.is_none() => {
                expect = Some(if b.get(at) == Some(&b'"') {
                    Expect::parse(take_string(text, &mut at)?).ok()?
                } else {
                    Expect::Seq(seq(text, &mut at)?)
                });
            }
            "data" if data.is_none() => {
                let leading = stored_patch::parse_leading(&text[at..])?;
                let raw = &text[at..at + leading.len];
                at += leading.len;
                data = Some((leading, raw));
            }
            // Another member, or one given twice.
            _ => return None,
        }
        match b.get(at) {
            Some(b',') => at += 1,
            Some(b'}') if at + 1 == b.len() => break,
            _ => return None,
        }
    }
    if !matches!(kind, None | Some("update")) {
        return None;
    }
    let (leading, raw) = data?;
    let doc = DocId::parse_writable(doc?).ok()?;
    let payload = leading.verbatim.then(|| {
        debug_assert_eq!(crate::patch::canonical_text(&leading.patch), raw);
        Payload::encoded(raw.to_string(), None)
    });
    Some(Request {
        doc,
        action: Action::Update(leading.patch),
        expect: expect.unwrap_or(Expect::Any),
        meta: None,
        payload,
    })
}

/// A seq written as a plain JSON integer at `at`; a number in any other form (a fraction, an
/// exponent, a leading zero, out of range) is left to the general parser.
fn seq(text: &str, at: &mut usize) -> Option<u64> {
    let digits = text.as_bytes()[*at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let number = &text[*at..*at + digits];
    if digits == 0 || (digits > 1 && number.starts_with('0')) {
        return None;
    }
    if matches!(text.as_bytes().get(*at + digits), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    *at += digits;
    number.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_line::parse_general;
    use proptest::prelude::*;

    /// What a request reads as, its payload aside (its salt is fresh each time).
    fn reading(request: &Request) -> String {
        format!(
            "{:?}",
            (&request.doc, &request.action, request.expect, &request.meta)
        )
    }

    /// Checks that the scanner reads `line` as the general parser does, and that a payload it
    /// encoded holds the canonical text of the patch.
    fn agrees(line: &str) -> std::result::Result<(), String> {
        let Some(ours) = parse(line) else {
            return Ok(());
        };
        let general =
            parse_general(line.as_bytes(), Some(line)).map_err(|e| format!("{line}: {e}"))?;
        if reading(&ours) != reading(&general) {
            return Err(format!(
                "{line}: {} != {}",
                reading(&ours),
                reading(&general)
            ));
        }
        if let (Some(payload), Action::Update(patch)) = (&ours.payload, &ours.action) {
            let canonical = crate::patch::canonical_text(patch);
            if payload.data() != canonical {
                return Err(format!("{line}: payload {} != {canonical}", payload.data()));
            }
        }
        Ok(())
    }

    #[test]
    fn plain_updates_are_read_as_the_general_parser_reads_them() {
        let lines = [
            r#"{"doc":"order:1","type":"update","data":[{"op":"replace","path":"/n","value":1}]}"#,
            r#"{"data":[{"op":"remove","path":"/a"}],"doc":"order:1"}"#,
            r#"{"doc":"order:1","expect":7,"data":[{"op":"add","path":"/a","value":"x"}]}"#,
            r#"{"doc":"order:1","expect":"none","data":[{"op":"add","path":"/a","value":null}]}"#,
            r#"{"doc":"order:1","expect":"any","data":[{"op":"add","path":"/a","value":-12}]}"#,
            r#"{"doc":"order:1","expect":0,"data":[{"op":"add","path":"/a","value":{"b":[1,2]}}]}"#,
            r#"{"doc":"o:a","data":[{"op":"add","path":"/f","value":1.50},{"op":"test","path":"/f","value":1.5}]}"#,
            r#"{"doc":"o:a","data":[{"from":"/a","op":"move","path":"/b"},{"from":"/b","op":"copy","path":"/c"}]}"#,
            r#"{"doc":"o:a","data":[{"op":"add","path":"/big","value":123456789012345678901234567890}]}"#,
        ];
        for line in lines {
            assert!(parse(line).is_some(), "{line} is plain");
            agrees(line).unwrap();
        }
    }

    #[test]
    fn a_verbatim_patch_comes_encoded_and_another_does_not() {
        let verbatim = r#"{"doc":"o:a","data":[{"op":"replace","path":"/n","value":-3},{"op":"add","path":"/s","value":"é"}]}"#;
        let payload = parse(verbatim).unwrap().payload.unwrap();
        assert_eq!(
            payload.data(),
            r#"[{"op":"replace","path":"/n","value":-3},{"op":"add","path":"/s","value":"é"}]"#
        );
        for other in [
            r#"{"doc":"o:a","data":[{"op":"add","path":"/f","value":1.50}]}"#,
            r#"{"doc":"o:a","data":[{"op":"add","path":"/o","value":{"b":1,"a":2}}]}"#,
            r#"{"doc":"o:a","data":[{"op":"add","path":"/z","value":-0}]}"#,
            // RFC 6902 ignores a remove's value; the canonical text leaves it out.
            r#"{"doc":"o:a","data":[{"op":"remove","path":"/a","value":1}]}"#,
        ] {
            let request = parse(other).unwrap();
            assert!(request.payload.is_none(), "{other}");
        }
    }

    #[test]
    fn other_lines_are_left_to_the_general_parser() {
        let lines = [
            "",
            "[]",
            r#"{"doc":"o:a","data":[]}"#,
            r#"{ "doc":"o:a","data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"o:a","data":[{"op":"remove","path":"/a"}]} "#,
            r#"{"doc":"o:a","data":[{"op":"remove","path":"/a"}]}x"#,
            r#"{"doc":"o:a","data":[{"op":"remove","path":"/a"}],}"#,
            r#"{"doc":"o:a\u0062","data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"d\u006fc":"a","data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"o:a","doc":"b","data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"o:a","data":[{"op":"remove","path":"/a"}],"data":[{"op":"remove","path":"/b"}]}"#,
            r#"{"doc":"o:a","data":[{"op":"remove","path":"/a"}],"meta":{"by":"x"}}"#,
            r#"{"doc":"o:a","data":[{"op":"remove","path":"/a"}],"extra":1}"#,
            r#"{"doc":"o:a","type":"create","data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"o:a","type":"delete","data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"o:a","type":"upsert","data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"o:a","type":7,"data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"o:a","data":{"n":1}}"#,
            r#"{"doc":"o:a","set":{"n":1}}"#,
            r#"{"doc":"o:a","type":"delete"}"#,
            r#"{"doc":"o:a"}"#,
            r#"{"data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"sys:schema:x","data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"no spaces","data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":7,"data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"o:a","expect":7.0,"data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"o:a","expect":7e0,"data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"o:a","expect":-1,"data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"o:a","expect":07,"data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"o:a","expect":18446744073709551616,"data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"o:a","expect":"seven","data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"o:a","expect":null,"data":[{"op":"remove","path":"/a"}]}"#,
            r#"{"doc":"o:a","data":[{"op":"add","path":"/a","value":{"x":1,"x":2}}]}"#,
            r#"{"doc":"o:a","data":[{"op":"add","path":"/a","value":1e400}]}"#,
            r#"{"doc":"o:a","data":[{"op":"frobnicate","path":"/a"}]}"#,
            r#"{"doc":"o:a","data":[{"op":"add","path":"a","value":1}]}"#,
            r#"{"doc":"o:a","data":[{"path":"/a","op":"remove"}]}"#,
            r#"{"doc":"o:a","data":[{"op":"copy","from":"/b","path":"/c"}]}"#,
            "{\"doc\":\"o:a\",\"data\":[{\"op\":\"add\",\"path\":\"/a\",\"value\":\"\u{1}\"}]}",
            "{\"doc\":\"o:a\",\"data\":[{\"op\":\"remove\",\"path\":\"/a\"}]}\r",
        ];
        for line in lines {
            assert!(parse(line).is_none(), "{line}");
        }
        // A line that is not UTF-8 never reaches the scanner, and the general parser refuses it.
        assert!(
            crate::request_line::parse(
                b"{\"doc\":\"o:a\xff\",\"data\":[{\"op\":\"remove\",\"path\":\"/a\"}]}"
            )
            .is_err()
        );
        // The line, its data and the operation are three levels around the value.
        let nested = |levels: usize| {
            format!(
                r#"{{"doc":"o:a","data":[{{"op":"add","path":"/a","value":{}{}}}]}}"#,
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        let too_deep = nested(crate::json::MAX_DEPTH - 2);
        assert!(parse(too_deep.as_str()).is_none());
        assert!(parse_general(too_deep.as_bytes(), Some(&too_deep)).is_err());
        let deepest = nested(crate::json::MAX_DEPTH - 3);
        assert!(parse(&deepest).is_some());
        agrees(&deepest).unwrap();
    }

    proptest! {
        /// Whatever the scanner accepts, the general parser reads the same way, and a payload
        /// the scanner encoded is the patch's canonical text.
        #[test]
        fn the_scanner_never_disagrees_with_the_general_parser(
            members in prop::collection::vec(
                prop_oneof![
                    prop::sample::select(vec![
                        r#""doc":"order:1""#, r#""doc":"a b""#, r#""doc":"x""#,
                        r#""type":"update""#, r#""type":"create""#,
                        r#""expect":3"#, r#""expect":"none""#, r#""expect":03"#,
                        r#""expect":99999999999999999999"#, r#""expect":1.0"#,
                        r#""meta":{}"#,
                    ]).prop_map(str::to_string),
                    (
                        prop::sample::select(vec!["add", "remove", "replace", "test", "x"]),
                        "(/[a-c~01]{0,2}){0,2}",
                        prop_oneof![
                            Just(String::new()),
                            "-?[0-9]{1,3}(\\.[0-9]{1,2})?([eE][-+]?[0-9])?",
                            "[-+.eE0-9]{1,4}",
                            "\"[a-z\\\\é]{0,3}\"",
                            Just("{\"k\":[1,{}]}".to_string()),
                            Just("{\"k\":1,\"k\":2}".to_string()),
                            Just("true".to_string()),
                        ],
                    )
                        .prop_map(|(op, path, value)| {
                            let value = if value.is_empty() {
                                String::new()
                            } else {
                                format!(r#","value":{value}"#)
                            };
                            format!(r#""data":[{{"op":"{op}","path":"{path}"{value}}}]"#)
                        }),
                ],
                0..5,
            )
        ) {
            let line = format!("{{{}}}", members.join(","));
            prop_assert_eq!(agrees(&line), Ok(()));
        }
    }
}
