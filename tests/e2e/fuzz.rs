//! Property tests of the library's parsers, with a bounded number of cases each: the stored
//! line parser never panics and accepts no mutation of a valid line, the patch applier never
//! panics and is all-or-nothing, and strict JSON parsing never panics and round-trips what it
//! accepts.

use crate::common::TestFolder;
use eventdir::DocId;
use eventdir::event::{EventType, Hash, NewEvent, ZERO_HASH, parse_line};
use eventdir::json::{MAX_DEPTH, canonical, depth, parse_strict};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Map, Value, json};

const IDS: [&str; 4] = ["order:42", "fuzz:ü/€", "Fuzz:a:b", "x:😀"];

/// Small JSON values: scalars (integers, doubles, odd strings) and shallow arrays and objects.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1e300f64..1e300).prop_map(|f| json!(f)),
        "[a-z]{0,6}".prop_map(Value::String),
        "\\PC{0,8}".prop_map(Value::String),
        Just(json!("\u{0}\n\"\\\u{7f}\u{2028}")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-c~/]{0,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z/~é]{0,4}", json_value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// A valid stored line (without its newline), its document and the hash it chains to.
fn valid_line() -> impl Strategy<Value = (String, DocId, Hash)> {
    (
        0..IDS.len(),
        0u64..1_000_000,
        0..4usize,
        prop::option::of(0u64..50),
        prop::option::of(object()),
        object(),
        any::<[u8; 32]>(),
        0u32..1_000_000,
    )
        .prop_map(|(id, seq, kind, schema, meta, data, prev, micros)| {
            let doc = DocId::parse(IDS[id]).unwrap();
            let (kind, data) = match kind {
                0 => (EventType::Create, Some(data)),
                1 => (
                    EventType::Update,
                    Some(json!([{"op": "add", "path": "/a", "value": data}])),
                ),
                2 => (EventType::Migrate, Some(json!([]))),
                _ => (EventType::Delete, None),
            };
            let timestamp = format!("2026-11-23T12:00:00.{micros:06}Z");
            let prev = if seq == 0 { ZERO_HASH } else { prev };
            let encoded = NewEvent {
                seq,
                doc: &doc,
                kind,
                timestamp: &timestamp,
                schema,
                meta: meta.as_ref(),
                data: data.as_ref(),
            }
            .encode(&prev);
            let line = encoded
                .line
                .strip_suffix('\n')
                .expect("a line ends with a newline")
                .to_string();
            (line, doc, prev)
        })
}

/// A change to a line's bytes.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Delete(usize),
    Splice(usize, usize, String),
    Swap(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, m)| Mutation::Flip(i, m)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), 0usize..8, "[ \\\\\"{}\\[\\],:0-9a-f]{0,4}")
            .prop_map(|(i, n, s)| Mutation::Splice(i, n, s)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Mutation::Swap(i, j)),
    ]
}

fn mutate(line: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = line.to_vec();
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(i, mask) => {
                if !bytes.is_empty() {
                    bytes[i % len] ^= mask;
                }
            }
            Mutation::Truncate(i) => bytes.truncate(i % len),
            Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), *b),
            Mutation::Delete(i) => {
                if !bytes.is_empty() {
                    bytes.remove(i % len);
                }
            }
            Mutation::Splice(i, n, s) => {
                let at = i % (bytes.len() + 1);
                let end = (at + n).min(bytes.len());
                bytes.splice(at..end, s.bytes());
            }
            Mutation::Swap(i, j) => {
                if !bytes.is_empty() {
                    bytes.swap(i % len, j % len);
                }
            }
        }
    }
    bytes
}

/// JSON-like text: tokens (some invalid, some extreme) in random order, to reach deeper into
/// the parsers than random bytes do.
fn json_soup() -> impl Strategy<Value = Vec<u8>> {
    const TOKENS: [&str; 24] = [
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"a\"",
        "\"a\"",
        "1",
        "-0",
        "1e400",
        "-1e400",
        "1.5e-7",
        "123456789012345678901234567890",
        "\"\\ud800\"",
        "\"\\u0000\"",
        "true",
        "null",
        " ",
        "\"é\"",
        "\"\\\"\"",
        "\u{feff}",
        "\"\\uDFFF\\uD800\"",
        "0.0",
    ];
    prop::collection::vec(prop::sample::select(&TOKENS[..]), 0..40)
        .prop_map(|tokens| tokens.concat().into_bytes())
}

/// An RFC 6902 operation, valid or not, over a few paths of a small document.
fn patch_op() -> impl Strategy<Value = Value> {
    const PATHS: [&str; 14] = [
        "", "/a", "/a/0", "/a/1", "/a/-", "/a/01", "/b", "/b/c", "/b/c/d", "/x~1y", "/~0", "/0",
        "/a/b", "/é",
    ];
    const OPS: [&str; 7] = [
        "add",
        "remove",
        "replace",
        "move",
        "copy",
        "test",
        "frobnicate",
    ];
    (
        prop::sample::select(&OPS[..]),
        prop::sample::select(&PATHS[..]),
        prop::sample::select(&PATHS[..]),
        json_value(),
        any::<bool>(),
    )
        .prop_map(|(op, path, from, value, with_value)| {
            let mut op = json!({"op": op, "path": path});
            if matches!(op["op"].as_str(), Some("move" | "copy")) {
                op["from"] = json!(from);
            }
            if with_value {
                op["value"] = value;
            }
            op
        })
}

fn patch_doc() -> impl Strategy<Value = Value> {
    (json_value(), json_value(), json_value()).prop_map(
        |(a, c, e)| json!({"a": [a, 1, 2.0], "b": {"c": c}, "x/y": e, "~": [], "é": null}),
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        max_shrink_iters: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_line_parser_never_panics_on_any_text(text in "\\PC{0,200}", id in 0..IDS.len()) {
        let doc = DocId::parse(IDS[id]).unwrap();
        let _ = parse_line(text, &doc, &ZERO_HASH);
    }

    #[test]
    fn the_line_parser_never_panics_on_json_like_text(bytes in json_soup()) {
        let doc = DocId::parse(IDS[0]).unwrap();
        let _ = parse_line(String::from_utf8_lossy(&bytes).into_owned(), &doc, &ZERO_HASH);
    }

    #[test]
    fn a_valid_line_parses_and_only_against_its_own_doc_and_chain(
        (line, doc, prev) in valid_line(),
        other in any::<[u8; 32]>(),
    ) {
        let event = parse_line(line.clone(), &doc, &prev);
        prop_assert!(event.is_ok(), "{:?}: {line}", event.err());
        prop_assert_eq!(&*event.unwrap().line, line.as_str());
        if other != prev {
            prop_assert!(parse_line(line.clone(), &doc, &other).is_err());
        }
        for id in IDS.iter().filter(|id| **id != doc.as_str()) {
            let elsewhere = DocId::parse(id).unwrap();
            prop_assert!(parse_line(line.clone(), &elsewhere, &prev).is_err());
        }
    }

    #[test]
    fn every_mutation_of_a_valid_line_is_rejected(
        (line, doc, prev) in valid_line(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mutated = mutate(line.as_bytes(), &mutations);
        // A reader checks UTF-8 first; text that is not UTF-8 is also tried as a lossy copy.
        let text = match String::from_utf8(mutated) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        let result = parse_line(text.clone(), &doc, &prev);
        if text == line {
            prop_assert!(result.is_ok());
        } else {
            prop_assert!(
                result.is_err(),
                "a mutated line was accepted:\n  original {line}\n  mutated  {text}"
            );
        }
    }

    #[test]
    fn the_patch_applier_never_panics_and_agrees_with_json_patch(
        doc in patch_doc(),
        ops in prop::collection::vec(patch_op(), 0..6),
    ) {
        let Ok(patch) = eventdir::patch::parse(Value::Array(ops), "fuzz") else {
            return Ok(());
        };
        let before = doc.clone();
        let ours = eventdir::patch::apply(&doc, &patch);
        prop_assert_eq!(&doc, &before);
        // `test` compares numbers numerically here, by representation in json-patch.
        if patch.0.iter().any(|op| matches!(op, json_patch::PatchOperation::Test(_))) {
            return Ok(());
        }
        let mut theirs = doc.clone();
        let theirs = json_patch::patch_unsafe(&mut theirs, &patch.0).map(|()| theirs);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "eventdir and json-patch disagree: {:?} vs {:?}", ours, theirs),
        }
    }

    #[test]
    fn strict_json_parsing_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(value) = parse_strict(&bytes, "fuzz") {
            prop_assert!(depth(&value) <= MAX_DEPTH);
        }
    }

    #[test]
    fn strict_json_round_trips_what_it_accepts(bytes in json_soup()) {
        if let Ok(value) = parse_strict(&bytes, "fuzz") {
            prop_assert!(depth(&value) <= MAX_DEPTH);
            let text = canonical(&value);
            let again = parse_strict(text.as_bytes(), "fuzz");
            prop_assert!(again.is_ok(), "{text}");
            prop_assert_eq!(again.unwrap(), value);
        }
    }

    #[test]
    fn strict_json_depth_limit_is_exact(depth_wanted in 1usize..400, object in any::<bool>()) {
        let (open, close) = if object { (r#"{"a":"#, "}") } else { ("[", "]") };
        let inner = if object { "1" } else { "" };
        let text = format!("{}{inner}{}", open.repeat(depth_wanted), close.repeat(depth_wanted));
        let parsed = parse_strict(text.as_bytes(), "fuzz");
        prop_assert_eq!(parsed.is_ok(), depth_wanted <= MAX_DEPTH, "depth {}", depth_wanted);
        let unclosed = parse_strict(open.repeat(depth_wanted).as_bytes(), "fuzz");
        prop_assert!(unclosed.is_err());
    }
}

/// The smallest case the applier property once found: a `move` whose source exists but whose
/// target cannot be added (an array index that is not a number). All or nothing means the
/// source is still there afterwards, in the library and in the folder.
#[test]
fn a_failed_move_leaves_the_document_untouched() {
    let doc = json!({"a": [1, 2], "~": []});
    let patch = json!([{"op": "move", "from": "/~0", "path": "/a/b"}]);
    let parsed = eventdir::patch::parse(patch.clone(), "t").unwrap();
    assert!(eventdir::patch::apply(&doc, &parsed).is_err());
    let f = TestFolder::new();
    f.ok(&["append", "t:1", "--data", &doc.to_string()]);
    let out = f
        .cmd()
        .args(["append", "t:1", "--patch", &patch.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(f.json(&["get", "t:1"])["state"], doc);
}
