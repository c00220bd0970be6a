//! Conformance corpora (third-party, read where they are): JSONTestSuite's parsing cases through
//! every JSON input of eventdir, and the json-patch-tests cases through `append --patch`.
//!
//! The corpora are looked up in `EVENTDIR_CORPORA`, else in `../shared/corpora` beside the
//! repository. When they are missing the tests say they were skipped, except under `CI=true`,
//! where that is a failure.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::process::Output;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::append::{assert_folder_unchanged, assert_one_line_error};
use crate::common::*;

/// The corpora folder, or `None` (after saying so) when it is missing outside CI.
fn corpora(what: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("EVENTDIR_CORPORA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora"),
    };
    let present = dir.join("JSONTestSuite/test_parsing").is_dir()
        && dir.join("json-patch-tests/tests.json").is_file();
    if present {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "the conformance corpora are missing at {} (set EVENTDIR_CORPORA)",
            dir.display()
        );
    }
    eprintln!(
        "{what}: skipped: no conformance corpora at {} (set EVENTDIR_CORPORA)",
        dir.display()
    );
    None
}

/// Every JSONTestSuite parsing case: (file name, bytes), in name order.
fn suite(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> =
        std::fs::read_dir(dir.join("JSONTestSuite/test_parsing"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .filter(|(name, _)| name.ends_with(".json"))
            .collect();
    files.sort();
    assert!(files.len() > 300, "only {} cases", files.len());
    files
}

/// The `i_` cases eventdir reads as JSON (as a value inside an object): numbers beyond what a
/// double or a 64-bit integer holds exactly, read as the nearest double (underflow gives 0).
/// Every other `i_` case (lone or broken surrogates, invalid UTF-8, UTF-16, a byte-order mark,
/// 500 nested arrays, numbers that overflow a double) is refused as invalid JSON. SECURITY.md
/// documents this list; keep the two in step.
const I_READ_AS_JSON: [(&str, &str); 5] = [
    ("i_number_double_huge_neg_exp.json", "[0.0]"),
    ("i_number_real_underflow.json", "[0.0]"),
    ("i_number_too_big_neg_int.json", "[-1.2312312312312312e+29]"),
    ("i_number_too_big_pos_int.json", "[1e+20]"),
    (
        "i_number_very_big_negative_int.json",
        "[-2.374623746732769e+47]",
    ),
];

/// Runs `eventdir -C FOLDER ARGS...` with stdin and checks it did not crash: it exited (no
/// signal) with a documented code, not Rust's panic code 101, and did not print a panic.
fn run_input(folder: &TestFolder, args: &[&str], stdin: &[u8], what: &str) -> Output {
    let out = folder
        .cmd()
        .args(args)
        .write_stdin(stdin.to_vec())
        .output()
        .expect("run eventdir");
    assert_no_crash(&out, what);
    out
}

fn assert_no_crash(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(code) if (0..=5).contains(&code) => {}
        _ => panic!("{what}: crashed with {:?}: {stderr}", out.status),
    }
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
}

/// Asserts a refusal with exit 2: nothing on stdout, one line on stderr.
fn assert_refused(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{what}: expected exit 2\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "{what}: printed on stdout");
    assert_one_line_error(&stderr);
}

/// What eventdir documents for a new state: a JSON object (after optional whitespace) with no
/// duplicate member names, nested at most 100 levels, every number a finite double or an
/// integer. Checked here independently of eventdir's parser.
fn storable_object(bytes: &[u8]) -> bool {
    // serde_json's own limit (128 levels) is above eventdir's 100, so it refuses nothing
    // storable.
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let checked = Checked::deserialize(&mut de).and_then(|c| de.end().map(|()| c));
    matches!(checked, Ok(Checked { object: true, depth, duplicate: false }) if depth <= 100)
}

/// Depth, duplicate names and top-level kind of a JSON text.
struct Checked {
    object: bool,
    depth: usize,
    duplicate: bool,
}

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked::scalar())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked::scalar())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked::scalar())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Checked, E> {
        if v.is_finite() {
            Ok(Checked::scalar())
        } else {
            Err(E::custom("not finite"))
        }
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked::scalar())
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked::scalar())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        let mut out = Checked {
            object: false,
            depth: 1,
            duplicate: false,
        };
        while let Some(item) = seq.next_element::<Checked>()? {
            out.depth = out.depth.max(item.depth + 1);
            out.duplicate |= item.duplicate;
        }
        Ok(out)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut out = Checked {
            object: true,
            depth: 1,
            duplicate: false,
        };
        let mut names = std::collections::BTreeSet::new();
        while let Some(name) = map.next_key::<String>()? {
            out.duplicate |= !names.insert(name);
            let value = map.next_value::<Checked>()?;
            out.depth = out.depth.max(value.depth + 1);
            out.duplicate |= value.duplicate;
        }
        Ok(out)
    }
}

impl Checked {
    fn scalar() -> Checked {
        Checked {
            object: false,
            depth: 0,
            duplicate: false,
        }
    }
}

#[test]
fn json_test_suite_through_append_data_stdin() {
    let Some(dir) = corpora("json_test_suite_through_append_data_stdin") else {
        return;
    };
    let f = TestFolder::new();
    let (mut accepted, mut refused) = (Vec::new(), 0);
    let (mut i_parsed, mut y_objects_refused) = (Vec::new(), Vec::new());
    for (n, (name, bytes)) in suite(&dir).into_iter().enumerate() {
        let doc = format!("suite:{n}");
        let what = format!("append --data - < {name}");
        let before = f.snapshot();
        let out = run_input(&f, &["append", &doc, "--data", "-"], &bytes, &what);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let expect_accepted = name.starts_with("y_") && storable_object(&bytes);
        if out.status.code() == Some(0) {
            assert!(
                expect_accepted,
                "{what}: accepted, but eventdir documents it as refused"
            );
            // The stored state is the input's value.
            let value: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(f.json(&["get", &doc])["state"], value, "{what}");
            accepted.push(name);
            continue;
        }
        assert_refused(&out, &what);
        assert_folder_unchanged(&before, &f.snapshot(), &what);
        assert!(
            !expect_accepted,
            "{what}: a storable y_ object was refused: {stderr}"
        );
        refused += 1;
        if name.starts_with("y_") && bytes.trim_ascii_start().starts_with(b"{") {
            y_objects_refused.push((name.clone(), stderr.clone()));
        }
        if name.starts_with("i_") {
            // Refused either as JSON or only because it is not an object.
            let read = stderr.contains("a document's state must be a JSON object");
            assert!(
                read || stderr.contains("--data is not valid JSON"),
                "{what}: {stderr}"
            );
            if read {
                i_parsed.push(name);
            }
        }
    }
    let documented: Vec<&str> = I_READ_AS_JSON.iter().map(|(n, _)| *n).collect();
    assert_eq!(i_parsed, documented, "the i_ cases read as JSON");
    // The only valid objects refused are those with a duplicate member name.
    let names: Vec<&str> = y_objects_refused.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "y_object_duplicated_key.json",
            "y_object_duplicated_key_and_value.json"
        ]
    );
    for (name, stderr) in &y_objects_refused {
        assert!(stderr.contains("duplicate key"), "{name}: {stderr}");
    }
    eprintln!(
        "JSONTestSuite via --data: {} accepted ({}), {refused} refused",
        accepted.len(),
        accepted.join(", ")
    );
}

#[test]
fn json_test_suite_i_cases_inside_an_object_behave_as_documented() {
    let Some(dir) = corpora("json_test_suite_i_cases_inside_an_object_behave_as_documented") else {
        return;
    };
    let f = TestFolder::new();
    for (n, (name, bytes)) in suite(&dir).into_iter().enumerate() {
        if !name.starts_with("i_") {
            continue;
        }
        // The case as the value of a member of a batch request's data.
        let mut line = format!(r#"{{"doc":"i:{n}","data":{{"v":"#).into_bytes();
        line.extend(bytes.iter().copied().filter(|&b| b != b'\n'));
        line.extend_from_slice(b"}}\n");
        let before = f.snapshot();
        let what = format!("append --batch with {name} inside");
        // Twice: the behaviour is stable.
        let runs: Vec<Output> = (0..2)
            .map(|_| run_input(&f, &["append", "--batch"], &line, &what))
            .collect();
        let documented = I_READ_AS_JSON.iter().find(|(d, _)| *d == name);
        match documented {
            Some((_, stored)) => {
                assert_eq!(runs[0].status.code(), Some(0), "{what}: {:?}", runs[0]);
                // The stored bytes hold the nearest double, as eventdir writes numbers.
                let line = String::from_utf8_lossy(&runs[0].stdout);
                assert!(
                    line.contains(&format!(r#","data":{{"v":{stored}}},"hash":"#)),
                    "{what}: {line}"
                );
                // The second run creates again: refused, the document is live.
                assert_eq!(runs[1].status.code(), Some(2), "{what}: {:?}", runs[1]);
            }
            None => {
                for out in &runs {
                    assert_eq!(out.status.code(), Some(2), "{what}: {out:?}");
                    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
                    assert_eq!(result["error"]["code"], 2, "{what}: {result}");
                }
                assert_folder_unchanged(&before, &f.snapshot(), &what);
            }
        }
    }
}

#[test]
fn json_test_suite_through_append_patch_stdin() {
    let Some(dir) = corpora("json_test_suite_through_append_patch_stdin") else {
        return;
    };
    let f = TestFolder::new();
    f.ok(&["append", "base:1", "--data", r#"{"a":1}"#]);
    let mut accepted = Vec::new();
    for (name, bytes) in suite(&dir) {
        let what = format!("append --patch - < {name}");
        let before = f.snapshot();
        let out = run_input(&f, &["append", "base:1", "--patch", "-"], &bytes, &what);
        if out.status.code() == Some(0) {
            assert!(name.starts_with("y_"), "{what}: accepted");
            let event: Value = serde_json::from_slice(&out.stdout).unwrap();
            let value: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(event["data"], value, "{what}: the stored patch");
            accepted.push(name);
            continue;
        }
        assert_refused(&out, &what);
        assert_folder_unchanged(&before, &f.snapshot(), &what);
    }
    // Of all the cases, only the empty array (with or without whitespace around it) is a JSON
    // Patch: an empty one.
    assert_eq!(
        accepted,
        ["y_array_empty.json", "y_structure_whitespace_array.json"]
    );
    assert_eq!(f.json(&["get", "base:1"])["state"], json!({"a": 1}));
    f.ok(&["verify"]);
}

#[test]
fn json_test_suite_through_apply() {
    let Some(dir) = corpora("json_test_suite_through_apply") else {
        return;
    };
    let origin = TestFolder::new();
    origin.ok(&["append", "order:1", "--data", r#"{"a":1}"#]);
    let export = origin.ok(&["export"]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(origin.path().join("eventdir.json")).unwrap())
            .unwrap();
    let id = manifest["folder_id"].as_str().unwrap().to_string();
    let work = tempfile::tempdir().unwrap();
    let replica = work.path().join("replica");
    eventdir()
        .arg("apply")
        .arg(&replica)
        .write_stdin(export)
        .assert()
        .success();
    let prefix = format!(r#"{{"origin":"{id}","#);
    for (name, bytes) in suite(&dir) {
        // The case as the whole input, and as an export line: the origin prefix, then the case
        // (an object's members follow the prefix as an export line's do).
        let mut line = prefix.clone().into_bytes();
        line.extend_from_slice(if bytes.first() == Some(&b'{') {
            &bytes[1..]
        } else {
            &bytes[..]
        });
        line.push(b'\n');
        for (variant, stdin) in [("whole input", &bytes), ("export line", &line)] {
            let what = format!("apply < {name} ({variant})");
            let before = snapshot_tree(&replica);
            let out = eventdir()
                .arg("apply")
                .arg(&replica)
                .write_stdin(stdin.clone())
                .output()
                .unwrap();
            assert_no_crash(&out, &what);
            if stdin.is_empty() {
                // No line at all: nothing to apply.
                assert_eq!(out.status.code(), Some(0), "{what}: {out:?}");
            } else {
                // No case is an event.
                assert_refused(&out, &what);
            }
            assert_folder_unchanged(&before, &snapshot_tree(&replica), &what);
        }
    }
}

/// One json-patch-tests case, with `patch` kept as written (duplicate members included).
struct PatchCase {
    comment: String,
    doc: Value,
    doc_text: String,
    patch_text: String,
    expected: Option<Value>,
    error: bool,
}

fn patch_cases(path: &std::path::Path) -> (Vec<PatchCase>, usize) {
    let raw: Vec<BTreeMap<String, Box<RawValue>>> =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut disabled = 0;
    let mut cases = Vec::new();
    for case in raw {
        if case
            .get("disabled")
            .is_some_and(|d| serde_json::from_str(d.get()).unwrap_or(false))
        {
            disabled += 1;
            continue;
        }
        let (Some(doc), Some(patch)) = (case.get("doc"), case.get("patch")) else {
            continue;
        };
        cases.push(PatchCase {
            comment: case
                .get("comment")
                .and_then(|c| serde_json::from_str(c.get()).ok())
                .unwrap_or_default(),
            doc: serde_json::from_str(doc.get()).unwrap(),
            doc_text: doc.get().to_string(),
            patch_text: patch.get().to_string(),
            expected: case
                .get("expected")
                .map(|e| serde_json::from_str(e.get()).unwrap()),
            error: case.contains_key("error"),
        });
    }
    (cases, disabled)
}

/// Prefixes every path (and `from`) of a patch with `/w`, for a document wrapped as `{"w": …}`.
fn wrap_patch(patch: &Value) -> Value {
    let mut patch = patch.clone();
    for op in patch.as_array_mut().into_iter().flatten() {
        for key in ["path", "from"] {
            if let Some(Value::String(p)) = op.get_mut(key) {
                *p = format!("/w{p}");
            }
        }
    }
    patch
}

#[test]
fn json_patch_tests_through_append_patch() {
    let Some(dir) = corpora("json_patch_tests_through_append_patch") else {
        return;
    };
    let f = TestFolder::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut n = 0;
    for file in ["tests.json", "spec_tests.json"] {
        let (cases, disabled) = patch_cases(&dir.join("json-patch-tests").join(file));
        *counts.entry("disabled (skipped)").or_default() += disabled;
        for case in cases {
            n += 1;
            let doc = format!("case:{n}");
            let what = format!("{file}: {:?}", case.comment);
            let before = f.snapshot();
            if !case.doc.is_object() {
                // Not a document state: refused; the case runs wrapped in an object instead.
                let out = f
                    .cmd()
                    .args(["append", &doc, "--data", &case.doc_text])
                    .output()
                    .unwrap();
                assert_refused(&out, &what);
                assert_folder_unchanged(&before, &f.snapshot(), &what);
                match &case.expected {
                    Some(expected) => {
                        let patch: Value = serde_json::from_str(&case.patch_text).unwrap();
                        f.ok(&[
                            "append",
                            &doc,
                            "--data",
                            &json!({"w": case.doc}).to_string(),
                        ]);
                        let wrapped = wrap_patch(&patch).to_string();
                        let out = f
                            .cmd()
                            .args(["append", &doc, "--patch", &wrapped])
                            .output()
                            .unwrap();
                        assert_no_crash(&out, &what);
                        assert_eq!(out.status.code(), Some(0), "{what} (wrapped): {out:?}");
                        let state = f.json(&["get", &doc])["state"].clone();
                        assert!(
                            eventdir::json::json_equal(&state, &json!({"w": expected})),
                            "{what} (wrapped): got {state}, expected {expected}"
                        );
                        *counts.entry("not an object: passed wrapped").or_default() += 1;
                    }
                    None => {
                        *counts
                            .entry("not an object, error case (skipped)")
                            .or_default() += 1
                    }
                }
                continue;
            }
            let out = f
                .cmd()
                .args(["append", &doc, "--data", &case.doc_text])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0), "{what}: create: {out:?}");
            let before = f.snapshot();
            let out = f
                .cmd()
                .args(["append", &doc, "--patch", &case.patch_text])
                .output()
                .unwrap();
            assert_no_crash(&out, &what);
            match (&case.expected, case.error) {
                (Some(expected), _) if expected.is_object() => {
                    assert_eq!(out.status.code(), Some(0), "{what}: {out:?}");
                    let state = f.json(&["get", &doc])["state"].clone();
                    assert!(
                        eventdir::json::json_equal(&state, expected),
                        "{what}: got {state}, expected {expected}"
                    );
                    *counts.entry("expected result: passed").or_default() += 1;
                }
                (Some(_), _) => {
                    // The patch would turn the state into something other than an object.
                    assert_refused(&out, &what);
                    assert_folder_unchanged(&before, &f.snapshot(), &what);
                    *counts.entry("expected a non-object: refused").or_default() += 1;
                }
                (None, true) => {
                    assert_refused(&out, &what);
                    assert_folder_unchanged(&before, &f.snapshot(), &what);
                    *counts.entry("error case: refused").or_default() += 1;
                }
                (None, false) => {
                    if out.status.code() != Some(0) {
                        assert_refused(&out, &what);
                        assert_folder_unchanged(&before, &f.snapshot(), &what);
                    }
                    *counts.entry("no expectation: no crash").or_default() += 1;
                }
            }
        }
    }
    f.ok(&["verify"]);
    eprintln!("json-patch-tests: {counts:?}");
}
