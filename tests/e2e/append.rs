//! `eventdir append`: creating, updating and deleting documents, and every way a request is
//! refused without writing a byte. The refusal helpers here are shared with the other modules.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::*;

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Asserts that `stderr` is exactly one line that starts with `eventdir: `.
pub fn assert_one_line_error(stderr: &str) {
    assert!(
        stderr.starts_with("eventdir: "),
        "stderr does not start with `eventdir: `: {stderr:?}"
    );
    let body = stderr.strip_suffix('\n').unwrap_or(stderr);
    assert!(!body.is_empty(), "empty stderr");
    assert!(
        !body.contains('\n'),
        "stderr is more than one line: {stderr:?}"
    );
}

/// Runs `eventdir -C FOLDER ARGS...` (with `stdin` when given) and asserts that it is refused
/// with `code`: nothing on stdout, a one-line `eventdir: ` message on stderr, and the folder
/// byte-for-byte unchanged (no file or directory created, changed or removed). Returns stderr.
pub fn refused_with_stdin(
    folder: &TestFolder,
    args: &[&str],
    stdin: Option<&[u8]>,
    code: i32,
) -> String {
    let before = folder.snapshot();
    let mut cmd = folder.cmd();
    cmd.args(args);
    if let Some(bytes) = stdin {
        cmd.write_stdin(bytes.to_vec());
    }
    let out = cmd.output().expect("run eventdir");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let what = shown(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "eventdir {what:?}: expected exit {code}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(stdout, "", "eventdir {what:?} printed on stdout");
    assert_one_line_error(&stderr);
    assert!(
        stderr.len() < 2_000,
        "eventdir {what:?}: a message of {} bytes",
        stderr.len()
    );
    let after = folder.snapshot();
    assert_folder_unchanged(&before, &after, &what);
    stderr
}

/// `args` for messages: long arguments shortened.
fn shown(args: &[&str]) -> Vec<String> {
    args.iter()
        .map(|a| match a.char_indices().nth(60) {
            Some((i, _)) => format!("{}... ({} bytes)", &a[..i], a.len()),
            None => a.to_string(),
        })
        .collect()
}

/// [`refused_with_stdin`] without stdin.
pub fn refused(folder: &TestFolder, args: &[&str], code: i32) -> String {
    refused_with_stdin(folder, args, None, code)
}

/// Asserts two snapshots are equal, naming the first path that differs.
pub fn assert_folder_unchanged(
    before: &std::collections::BTreeMap<std::path::PathBuf, Option<Vec<u8>>>,
    after: &std::collections::BTreeMap<std::path::PathBuf, Option<Vec<u8>>>,
    what: &dyn std::fmt::Debug,
) {
    if before == after {
        return;
    }
    let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let removed: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let changed: Vec<_> = before
        .iter()
        .filter(|(k, v)| after.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k)
        .collect();
    panic!(
        "{what:?} changed the folder: added {added:?}, removed {removed:?}, changed {changed:?}"
    );
}

/// A folder initialised with `--max-event-bytes LIMIT`.
pub fn folder_with_limit(limit: u64) -> TestFolder {
    let dir = tempfile::tempdir().expect("temp dir");
    eventdir()
        .arg("init")
        .arg(dir.path())
        .args(["--max-event-bytes", &limit.to_string()])
        .assert()
        .success();
    TestFolder { dir }
}

/// The complete lines of a stream file, without their newlines.
pub fn file_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read stream file");
    assert!(text.ends_with('\n'), "stream file ends without a newline");
    text.lines().map(str::to_string).collect()
}

/// Appends and returns the printed event, parsed.
pub fn append(folder: &TestFolder, args: &[&str]) -> Value {
    let mut all = vec!["append"];
    all.extend_from_slice(args);
    folder.json(&all)
}

/// An object nested `depth` levels deep (`{}` has depth 1).
pub fn nested_object(depth: usize) -> String {
    assert!(depth >= 1);
    format!(
        "{}{{}}{}",
        "{\"a\":".repeat(depth - 1),
        "}".repeat(depth - 1)
    )
}

/// The state `get` reports.
fn state(folder: &TestFolder, doc: &str) -> Value {
    folder.json(&["get", doc])["state"].clone()
}

// ---------------------------------------------------------------------------------------------
// Accepted requests
// ---------------------------------------------------------------------------------------------

#[test]
fn append_data_infers_create_and_prints_the_stored_line() {
    let f = TestFolder::new();
    let out = f.ok(&[
        "append",
        "order:42",
        "--data",
        r#"{"status":"open","qty":1}"#,
    ]);
    assert!(out.ends_with('\n') && out.lines().count() == 1, "{out:?}");
    let event: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(event["seq"], 0);
    assert_eq!(event["doc"], "order:42");
    assert_eq!(event["type"], "create");
    assert_eq!(event["schema"], Value::Null);
    assert_eq!(event["meta"], Value::Null);
    assert_eq!(event["data"], json!({"status":"open","qty":1}));
    let keys: Vec<&str> = event
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "seq",
        "doc",
        "type",
        "timestamp",
        "event_id",
        "schema",
        "meta",
        "salt",
        "data_hash",
        "data",
        "hash",
    ];
    expected.sort();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    let mut at = 0;
    for name in [
        "{\"seq\":",
        ",\"doc\":",
        ",\"type\":",
        ",\"timestamp\":",
        ",\"event_id\":",
        ",\"schema\":",
        ",\"meta\":",
        ",\"salt\":",
        ",\"data_hash\":",
        ",\"data\":",
        ",\"hash\":",
    ] {
        let found = out[at..]
            .find(name)
            .unwrap_or_else(|| panic!("{name} out of order in {out}"));
        at += found + name.len();
    }
    // The printed line is the stored line, and the stream file holds exactly it.
    let path = f.stream_file("order:42");
    assert!(path.ends_with("streams/order/da/42.ndjson"), "{path:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), out);
    assert_eq!(f.ok(&["log", "order:42"]), out);
    assert_eq!(state(&f, "order:42"), json!({"status":"open","qty":1}));
}

#[test]
fn append_printed_line_equals_the_last_line_of_log() {
    let f = TestFolder::new();
    let steps: [&[&str]; 5] = [
        &["--data", r#"{"a":1}"#],
        &["--set", "a=2"],
        &["--patch", r#"[{"op":"add","path":"/b","value":[1,2]}]"#],
        &["--type", "delete"],
        &["--data", r#"{"c":true}"#],
    ];
    for step in steps {
        let mut args = vec!["append", "note:1"];
        args.extend_from_slice(step);
        let printed = f.ok(&args);
        let log = f.ok(&["log", "note:1"]);
        assert_eq!(log.lines().last().unwrap(), printed.trim_end_matches('\n'));
        assert_eq!(
            std::fs::read_to_string(f.stream_file("note:1")).unwrap(),
            log
        );
    }
}

#[test]
fn append_patch_infers_update_and_applies_it() {
    let f = TestFolder::new();
    append(
        &f,
        &["order:1", "--data", r#"{"qty":1,"items":[{"sku":"a"}]}"#],
    );
    let patch = r#"[{"op":"replace","path":"/qty","value":3},{"op":"add","path":"/items/-","value":{"sku":"b"}},{"op":"remove","path":"/items/0"}]"#;
    let event = append(&f, &["order:1", "--patch", patch]);
    assert_eq!(event["type"], "update");
    assert_eq!(event["seq"], 1);
    assert_eq!(event["data"], serde_json::from_str::<Value>(patch).unwrap());
    assert_eq!(state(&f, "order:1"), json!({"qty":3,"items":[{"sku":"b"}]}));
    // Explicit --type update works the same.
    let event = append(
        &f,
        &[
            "order:1",
            "--type",
            "update",
            "--patch",
            r#"[{"op":"remove","path":"/items"}]"#,
        ],
    );
    assert_eq!(event["type"], "update");
    assert_eq!(state(&f, "order:1"), json!({"qty":3}));
}

#[test]
fn append_set_handles_names_pointers_json_values_and_string_fallback() {
    let f = TestFolder::new();
    append(
        &f,
        &[
            "order:1",
            "--data",
            r#"{"a":1,"b":{"c":2},"items":[{"qty":1}]}"#,
        ],
    );
    let event = append(
        &f,
        &[
            "order:1",
            "--set",
            "a=5",
            "--set",
            "/b/c=x",
            "--set",
            "status=paid",
            "--set",
            "flag=true",
            "--set",
            "nothing=null",
            "--set",
            r#"obj={"k":[1,2]}"#,
            "--set",
            r#"quoted="5""#,
            "--set",
            "/items/0/qty=2",
            "--set",
            "x/y=slash",
            "--set",
            "t~n=tilde",
            "--set",
            "eq=a=b",
            "--set",
            "empty=",
        ],
    );
    assert_eq!(event["type"], "update");
    assert_eq!(
        state(&f, "order:1"),
        json!({
            "a": 5,
            "b": {"c": "x"},
            "items": [{"qty": 2}],
            "status": "paid",
            "flag": true,
            "nothing": null,
            "obj": {"k": [1, 2]},
            "quoted": "5",
            "x/y": "slash",
            "t~n": "tilde",
            "eq": "a=b",
            "empty": "",
        })
    );
}

#[test]
fn append_set_without_equals_or_with_empty_field_is_refused() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", "{}"]);
    refused(&f, &["append", "order:1", "--set", "a"], 2);
    refused(&f, &["append", "order:1", "--set", "=1"], 2);
    refused(&f, &["append", "order:1", "--set", "a=1", "--set", "b"], 2);
}

#[test]
fn append_delete_keeps_the_last_state_and_create_again_restarts_the_document() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"a":1}"#]);
    let deleted = append(&f, &["order:1", "--type", "delete"]);
    assert_eq!(deleted["type"], "delete");
    assert_eq!(deleted["seq"], 1);
    assert_eq!(deleted["data"], Value::Null);
    let got = f.json(&["get", "order:1"]);
    assert_eq!(got["deleted"], true);
    assert_eq!(got["seq"], 1);
    assert_eq!(got["state"], json!({"a":1}));

    let created = append(&f, &["order:1", "--data", r#"{"b":2}"#]);
    assert_eq!(created["type"], "create");
    assert_eq!(created["seq"], 2);
    let got = f.json(&["get", "order:1"]);
    assert_eq!(got["deleted"], false);
    assert_eq!(got["state"], json!({"b":2}));
    // And it can be updated and deleted again.
    append(&f, &["order:1", "--set", "c=3"]);
    append(&f, &["order:1", "--type", "delete", "--expect", "3"]);
    assert_eq!(f.json(&["get", "order:1"])["state"], json!({"b":2,"c":3}));
    f.ok(&["verify"]);
}

#[test]
fn append_data_and_patch_read_stdin_with_dash() {
    let f = TestFolder::new();
    let out = f
        .cmd()
        .args(["append", "note:1", "--data", "-"])
        .write_stdin("{\"text\":\"hello\"}\n")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(state(&f, "note:1"), json!({"text":"hello"}));

    let out = f
        .cmd()
        .args(["append", "note:1", "--patch", "-"])
        .write_stdin(r#"  [ {"op":"replace","path":"/text","value":"bye"} ]  "#)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(state(&f, "note:1"), json!({"text":"bye"}));

    // Invalid stdin is refused like an invalid argument.
    refused_with_stdin(&f, &["append", "note:1", "--patch", "-"], Some(b"[{"), 2);
    refused_with_stdin(&f, &["append", "note:2", "--data", "-"], Some(b""), 2);
}

#[test]
fn append_meta_is_stored_in_the_event_line_with_sorted_members() {
    let f = TestFolder::new();
    let out = f.ok(&[
        "append",
        "order:1",
        "--data",
        r#"{"z":1,"a":{"y":2,"b":3}}"#,
        "--meta",
        r#"{"actor":"alice","correlation":{"z":1,"a":2}}"#,
    ]);
    let line = out.trim_end();
    assert!(
        line.contains(r#","meta":{"actor":"alice","correlation":{"a":2,"z":1}},"#),
        "{line}"
    );
    assert!(
        line.contains(r#","data":{"a":{"b":3,"y":2},"z":1},"hash":""#),
        "{line}"
    );
    let logged: Value = serde_json::from_str(f.ok(&["log", "order:1"]).trim_end()).unwrap();
    assert_eq!(
        logged["meta"],
        json!({"actor":"alice","correlation":{"a":2,"z":1}})
    );
    // meta goes with updates and deletes too.
    let e = append(&f, &["order:1", "--set", "z=2", "--meta", r#"{"n":1}"#]);
    assert_eq!(e["meta"], json!({"n":1}));
    let e = append(&f, &["order:1", "--type", "delete", "--meta", r#"{"n":2}"#]);
    assert_eq!(e["meta"], json!({"n":2}));
}

#[test]
fn append_meta_that_is_not_a_json_object_is_refused() {
    let f = TestFolder::new();
    for meta in ["[1]", "1", "\"s\"", "null", "{", r#"{"a":1,"a":2}"#] {
        refused(
            &f,
            &["append", "order:1", "--data", "{}", "--meta", meta],
            2,
        );
    }
}

#[test]
fn append_seq_increments_and_timestamps_never_decrease() {
    let f = TestFolder::new();
    let mut events = vec![append(&f, &["c:1", "--data", r#"{"n":0}"#])];
    for n in 1..15 {
        events.push(append(&f, &["c:1", "--set", &format!("n={n}")]));
    }
    let mut last_ts = String::new();
    let mut ids = std::collections::BTreeSet::new();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64);
        let ts = e["timestamp"].as_str().unwrap().to_string();
        assert_eq!(ts.len(), 27, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.');
        assert!(ts >= last_ts, "{ts} < {last_ts}");
        last_ts = ts;
        assert!(ids.insert(e["event_id"].as_str().unwrap().to_string()));
    }
    assert_eq!(state(&f, "c:1"), json!({"n":14}));
    let logged = f.ndjson(&["log", "c:1"]);
    assert_eq!(logged, events);
}

#[test]
fn append_expect_n_none_and_any() {
    let f = TestFolder::new();
    let e = append(&f, &["order:1", "--data", "{}", "--expect", "none"]);
    assert_eq!(e["seq"], 0);
    let e = append(&f, &["order:1", "--set", "a=1", "--expect", "0"]);
    assert_eq!(e["seq"], 1);
    let e = append(&f, &["order:1", "--set", "a=2", "--expect", "any"]);
    assert_eq!(e["seq"], 2);
    let e = append(&f, &["order:1", "--set", "a=3"]);
    assert_eq!(e["seq"], 3);
    assert_eq!(state(&f, "order:1"), json!({"a":3}));
}

#[test]
fn append_with_stale_expect_exits_3_and_writes_nothing() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", "{}"]);
    append(&f, &["order:1", "--set", "a=1"]);
    let err = refused(
        &f,
        &["append", "order:1", "--set", "a=2", "--expect", "0"],
        3,
    );
    assert!(err.contains("order:1"), "{err}");
    refused(
        &f,
        &["append", "order:1", "--set", "a=2", "--expect", "2"],
        3,
    );
    refused(
        &f,
        &["append", "order:1", "--set", "a=2", "--expect", "none"],
        3,
    );
    refused(
        &f,
        &["append", "order:1", "--type", "delete", "--expect", "7"],
        3,
    );
    // A deleted document has events: --expect none still fails.
    append(&f, &["order:1", "--type", "delete"]);
    refused(
        &f,
        &["append", "order:1", "--data", "{}", "--expect", "none"],
        3,
    );
    refused(
        &f,
        &["append", "order:1", "--data", "{}", "--expect", "1"],
        3,
    );
    append(&f, &["order:1", "--data", "{}", "--expect", "2"]);
}

#[test]
fn append_with_expect_on_a_new_document_exits_3_and_leaves_nothing_behind() {
    let f = TestFolder::new();
    refused(
        &f,
        &["append", "order:1", "--data", "{}", "--expect", "0"],
        3,
    );
    assert!(!f.path().join("streams/order").exists());
    append(&f, &["other:1", "--data", "{}"]);
    refused(
        &f,
        &["append", "other:2", "--data", "{}", "--expect", "0"],
        3,
    );
}

#[test]
fn append_expect_garbage_exits_2() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", "{}"]);
    for bad in [
        "",
        "abc",
        "-1",
        "1.5",
        "0x1",
        " 1",
        "NONE",
        "18446744073709551616",
    ] {
        refused(
            &f,
            &["append", "order:1", "--set", "a=1", "--expect", bad],
            2,
        );
        refused(
            &f,
            &["append", "order:2", "--data", "{}", "--expect", bad],
            2,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Refusals: bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn append_invalid_json_exits_2_and_writes_nothing() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"a":1}"#]);
    for bad in [
        "",
        "{",
        "{'a':1}",
        "{\"a\":}",
        "{\"a\":1} x",
        "{\"a\":NaN}",
        "{\"a\":1e999}",
    ] {
        refused(&f, &["append", "order:2", "--data", bad], 2);
        refused(&f, &["append", "order:1", "--patch", bad], 2);
    }
    refused(
        &f,
        &["append", "order:1", "--data", "{,}", "--type", "create"],
        2,
    );
}

#[test]
fn append_duplicate_keys_exit_2_and_write_nothing() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"a":1}"#]);
    let err = refused(&f, &["append", "order:2", "--data", r#"{"a":1,"a":2}"#], 2);
    assert!(err.contains("duplicate"), "{err}");
    refused(
        &f,
        &[
            "append",
            "order:2",
            "--data",
            r#"{"x":{"a":1,"b":2,"a":1}}"#,
        ],
        2,
    );
    refused(
        &f,
        &["append", "order:2", "--data", r#"{"x":[{"k":1,"k":1}]}"#],
        2,
    );
    refused(
        &f,
        &[
            "append",
            "order:1",
            "--patch",
            r#"[{"op":"add","path":"/b","value":{"k":1,"k":2}}]"#,
        ],
        2,
    );
    refused(
        &f,
        &[
            "append",
            "order:1",
            "--patch",
            r#"[{"op":"add","op":"remove","path":"/a"}]"#,
        ],
        2,
    );
    refused(
        &f,
        &[
            "append",
            "order:1",
            "--set",
            "b=1",
            "--meta",
            r#"{"m":1,"m":1}"#,
        ],
        2,
    );
}

#[test]
fn append_non_object_data_exits_2_and_writes_nothing() {
    let f = TestFolder::new();
    for bad in ["[]", "[1]", "1", "\"s\"", "null", "true"] {
        refused(&f, &["append", "order:1", "--data", bad], 2);
    }
    append(&f, &["order:2", "--data", "{}"]);
    append(&f, &["order:2", "--type", "delete"]);
    refused(&f, &["append", "order:2", "--data", "[]"], 2);
}

#[test]
fn append_invalid_patch_exits_2_and_writes_nothing() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"a":1}"#]);
    for bad in [
        r#"{}"#,
        r#"{"op":"remove","path":"/a"}"#,
        r#"[1]"#,
        r#"[{"op":"frobnicate","path":"/a"}]"#,
        r#"[{"op":"remove"}]"#,
        r#"[{"op":"add","path":"/b"}]"#,
        r#"[{"op":"add","path":"b","value":1}]"#,
        r#"[{"op":"move","path":"/b"}]"#,
    ] {
        refused(&f, &["append", "order:1", "--patch", bad], 2);
    }
    // Refused before the document is looked at: a new document gets no file either.
    refused(&f, &["append", "order:9", "--patch", "{}"], 2);
}

#[test]
fn append_patch_that_fails_to_apply_exits_2_and_writes_nothing() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"a":1,"list":[1]}"#]);
    for bad in [
        r#"[{"op":"remove","path":"/nope"}]"#,
        r#"[{"op":"replace","path":"/nope","value":1}]"#,
        r#"[{"op":"add","path":"/x/y/z","value":1}]"#,
        r#"[{"op":"add","path":"/list/5","value":1}]"#,
        r#"[{"op":"move","from":"/nope","path":"/b"}]"#,
        r#"[{"op":"copy","from":"/nope","path":"/b"}]"#,
        // The first operation would apply; the second fails, so none is stored.
        r#"[{"op":"add","path":"/b","value":1},{"op":"remove","path":"/nope"}]"#,
    ] {
        let err = refused(&f, &["append", "order:1", "--patch", bad], 2);
        assert!(err.contains("order:1"), "{err}");
    }
    // A patch that turns the state into something other than an object.
    for bad in [
        r#"[{"op":"replace","path":"","value":1}]"#,
        r#"[{"op":"replace","path":"","value":[1]}]"#,
        r#"[{"op":"add","path":"","value":null}]"#,
    ] {
        refused(&f, &["append", "order:1", "--patch", bad], 2);
    }
    refused(&f, &["append", "order:1", "--set", "/x/y=1"], 2);
    refused(&f, &["append", "order:1", "--set", "/list/7=1"], 2);
    assert_eq!(state(&f, "order:1"), json!({"a":1,"list":[1]}));
}

#[test]
fn append_failing_test_op_exits_2_and_writes_nothing() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"status":"open","n":1}"#]);
    let err = refused(
        &f,
        &[
            "append",
            "order:1",
            "--patch",
            r#"[{"op":"test","path":"/status","value":"paid"},{"op":"replace","path":"/status","value":"shipped"}]"#,
        ],
        2,
    );
    assert!(err.contains("test"), "{err}");
    refused(
        &f,
        &[
            "append",
            "order:1",
            "--patch",
            r#"[{"op":"test","path":"/nope","value":1}]"#,
        ],
        2,
    );
    refused(
        &f,
        &[
            "append",
            "order:1",
            "--patch",
            r#"[{"op":"test","path":"/n","value":"1"}]"#,
        ],
        2,
    );
    refused(
        &f,
        &[
            "append",
            "order:1",
            "--patch",
            r#"[{"op":"test","path":"/n","value":1.5}]"#,
        ],
        2,
    );
    // The matching test passes.
    append(
        &f,
        &[
            "order:1",
            "--patch",
            r#"[{"op":"test","path":"/status","value":"open"},{"op":"replace","path":"/status","value":"paid"}]"#,
        ],
    );
    assert_eq!(state(&f, "order:1")["status"], "paid");
}

#[test]
fn append_test_op_compares_numbers_by_value() {
    let f = TestFolder::new();
    append(
        &f,
        &[
            "order:1",
            "--data",
            r#"{"n":1,"x":2.0,"deep":{"list":[1,2.5]}}"#,
        ],
    );
    append(
        &f,
        &[
            "order:1",
            "--patch",
            r#"[{"op":"test","path":"/n","value":1.0}]"#,
        ],
    );
    append(
        &f,
        &[
            "order:1",
            "--patch",
            r#"[{"op":"test","path":"/x","value":2}]"#,
        ],
    );
    append(
        &f,
        &[
            "order:1",
            "--patch",
            r#"[{"op":"test","path":"/deep","value":{"list":[1.0,2.5]}}]"#,
        ],
    );
    append(
        &f,
        &[
            "order:1",
            "--patch",
            r#"[{"op":"test","path":"/n","value":10e-1}]"#,
        ],
    );
    f.ok(&["verify"]);
    // Replay reaches the same state (the stored test passes on replay too).
    let replayed = f.json(&["replay", "order:1"]);
    assert_eq!(replayed["seq"], 4);
    assert_eq!(replayed, f.json(&["get", "order:1"]));
}

#[test]
fn append_update_or_delete_of_a_missing_document_exits_5_and_leaves_nothing() {
    let f = TestFolder::new();
    let err = refused(&f, &["append", "order:1", "--set", "a=1"], 5);
    assert!(err.contains("order:1"), "{err}");
    refused(
        &f,
        &[
            "append",
            "order:1",
            "--patch",
            r#"[{"op":"add","path":"/a","value":1}]"#,
        ],
        5,
    );
    refused(&f, &["append", "order:1", "--type", "delete"], 5);
    refused(
        &f,
        &["append", "order:1", "--type", "update", "--set", "a=1"],
        5,
    );
    assert!(!f.path().join("streams/order").exists());
    // Same when the type directory already exists.
    append(&f, &["order:2", "--data", "{}"]);
    refused(&f, &["append", "order:1", "--set", "a=1"], 5);
    refused(&f, &["append", "order:1", "--type", "delete"], 5);
}

#[test]
fn append_update_or_delete_of_a_deleted_document_exits_2() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"a":1}"#]);
    append(&f, &["order:1", "--type", "delete"]);
    let err = refused(&f, &["append", "order:1", "--set", "a=2"], 2);
    assert!(err.contains("deleted"), "{err}");
    refused(
        &f,
        &[
            "append",
            "order:1",
            "--patch",
            r#"[{"op":"remove","path":"/a"}]"#,
        ],
        2,
    );
    refused(&f, &["append", "order:1", "--type", "delete"], 2);
}

#[test]
fn append_create_of_a_live_document_exits_2() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"a":1}"#]);
    let err = refused(&f, &["append", "order:1", "--data", r#"{"a":2}"#], 2);
    assert!(err.contains("already exists"), "{err}");
    refused(
        &f,
        &["append", "order:1", "--type", "create", "--data", "{}"],
        2,
    );
    append(&f, &["order:1", "--set", "a=2"]);
    refused(&f, &["append", "order:1", "--data", "{}"], 2);
}

#[test]
fn append_bad_ids_exit_2_and_leave_nothing() {
    let f = TestFolder::new();
    let long_type = format!("{}:1", "t".repeat(65));
    let long_id = format!("t:{}", "i".repeat(201));
    let long_encoded = format!("t:{}", "A".repeat(81));
    let bad = [
        "order",
        ":1",
        "a:",
        ":",
        "",
        "sys:schema:x",
        "sys:schema:order",
        "sys:foo",
        "sys:x:y",
        "a:b\u{1}",
        "a\tb:c",
        "a:b\nc",
        "a:b\u{7f}",
        "a:\u{85}b",
        "a:\u{200B}b",
        "a:b\u{202E}",
        "a:\u{2066}b",
        "a:\u{FEFF}b",
        &long_type,
        &long_id,
        &long_encoded,
    ];
    for id in bad {
        let err = refused(&f, &["append", id, "--data", "{}"], 2);
        assert!(err.contains("invalid document id"), "{id:?}: {err}");
    }
    // Limits are inclusive.
    append(&f, &[&format!("{}:1", "t".repeat(64)), "--data", "{}"]);
    append(&f, &[&format!("t:{}", "i".repeat(200)), "--data", "{}"]);
    append(&f, &[&format!("t:{}", "A".repeat(80)), "--data", "{}"]);
}

#[test]
fn append_non_utf8_id_exits_2() {
    use std::os::unix::ffi::OsStrExt;
    let f = TestFolder::new();
    let before = f.snapshot();
    let out = f
        .cmd()
        .arg("append")
        .arg(std::ffi::OsStr::from_bytes(b"order:\xff"))
        .args(["--data", "{}"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_one_line_error(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(before, f.snapshot());
}

#[test]
fn append_ids_keep_case_and_unicode_apart() {
    let f = TestFolder::new();
    append(&f, &["User:Ann", "--data", r#"{"n":1}"#]);
    append(&f, &["user:ann", "--data", r#"{"n":2}"#]);
    append(&f, &["user:caf\u{e9}", "--data", r#"{"n":3}"#]);
    append(&f, &["user:cafe\u{301}", "--data", r#"{"n":4}"#]);
    append(&f, &["order:a:b:c", "--data", r#"{"n":5}"#]);
    let rel = f.stream_file("User:Ann");
    let rel = rel.strip_prefix(f.path().join("streams")).unwrap();
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert_eq!(parts[0], "%55ser");
    assert!(
        parts[1].len() == 2
            && parts[1]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(parts[2], "%41nn.ndjson");
    assert!(f.stream_file("User:Ann").is_file());
    assert_eq!(state(&f, "User:Ann"), json!({"n":1}));
    assert_eq!(state(&f, "user:ann"), json!({"n":2}));
    assert_eq!(state(&f, "user:caf\u{e9}"), json!({"n":3}));
    assert_eq!(state(&f, "user:cafe\u{301}"), json!({"n":4}));
    assert_eq!(state(&f, "order:a:b:c"), json!({"n":5}));
    let docs: Vec<Value> = f
        .ndjson(&["ls"])
        .into_iter()
        .map(|l| l["doc"].clone())
        .collect();
    assert_eq!(docs.len(), 5);
}

#[test]
fn append_unknown_options_and_bad_usage_exit_2() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", "{}"]);
    for args in [
        &["append", "order:1", "--bogus"][..],
        &["append", "order:1", "--set", "a=1", "--bogus", "x"],
        &["append", "order:1", "--type", "frobnicate"],
        &["append", "order:1", "--type", "migrate", "--set", "a=1"],
        &["append", "order:1", "--data", "{}", "--patch", "[]"],
        &["append", "order:1", "--data", "{}", "--set", "a=1"],
        &["append", "order:1", "--patch", "[]", "--set", "a=1"],
        &["append", "order:1"],
        &["append"],
        &["append", "order:1", "order:2", "--set", "a=1"],
        &["append", "order:1", "--type", "delete", "--set", "a=1"],
        &["append", "order:1", "--type", "update", "--data", "{}"],
        &["append", "order:1", "--type", "create", "--set", "a=1"],
        &["append", "order:1", "--type", "create"],
        &["append", "order:1", "--type", "update"],
        &["append", "order:1", "--set"],
        &["frobnicate"],
    ] {
        refused(&f, args, 2);
    }
}

#[test]
fn a_refused_first_append_to_a_new_document_leaves_no_file_or_directory() {
    let f = TestFolder::new();
    let new_type: [&[&str]; 8] = [
        &["append", "fresh:1", "--data", "[]"],
        &["append", "fresh:1", "--data", "{"],
        &["append", "fresh:1", "--set", "a=1"],
        &["append", "fresh:1", "--type", "delete"],
        &["append", "fresh:1", "--data", "{}", "--expect", "0"],
        &["append", "fresh:1", "--data", "{}", "--expect", "x"],
        &["append", "fresh:1", "--data", "{}", "--meta", "[]"],
        &[
            "append",
            "fresh:1",
            "--patch",
            r#"[{"op":"test","path":"/a","value":1}]"#,
        ],
    ];
    let codes = [2, 2, 5, 5, 3, 2, 2, 5];
    for (args, code) in new_type.iter().zip(codes) {
        refused(&f, args, code);
    }
    assert_eq!(
        std::fs::read_dir(f.path().join("streams")).unwrap().count(),
        0,
        "streams/ is not empty"
    );
}

#[test]
fn append_event_larger_than_max_event_bytes_exits_2_and_writes_nothing() {
    let f = folder_with_limit(2000);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(f.path().join("eventdir.json")).unwrap()).unwrap();
    assert_eq!(manifest["max_event_bytes"], 2000);
    // Measure a line, then find the data that makes a line of exactly 2000 bytes.
    let small = f.ok(&["append", "a:1", "--data", r#"{"s":"x"}"#]);
    let base = small.len(); // includes the newline
    let fits = "x".repeat(2000 - base + 1);
    let line = f.ok(&["append", "a:2", "--data", &format!(r#"{{"s":"{fits}"}}"#)]);
    assert_eq!(
        line.len(),
        2000,
        "the limit counts the newline and is inclusive"
    );
    let too_big = "x".repeat(2000 - base + 2);
    let err = refused(
        &f,
        &[
            "append",
            "a:3",
            "--data",
            &format!(r#"{{"s":"{too_big}"}}"#),
        ],
        2,
    );
    assert!(err.contains("2000"), "{err}");
    assert!(!f.stream_file("a:3").exists());
    // An update that would be too big, with --set and with --patch.
    let big = "y".repeat(1900);
    refused(&f, &["append", "a:1", "--set", &format!("s={big}")], 2);
    refused(
        &f,
        &[
            "append",
            "a:1",
            "--patch",
            &format!(r#"[{{"op":"add","path":"/s","value":"{big}"}}]"#),
        ],
        2,
    );
    // Big meta too.
    refused(
        &f,
        &[
            "append",
            "a:1",
            "--set",
            "s=1",
            "--meta",
            &format!(r#"{{"m":"{big}"}}"#),
        ],
        2,
    );
    // stdin larger than the limit is refused before it is parsed.
    let huge = format!(r#"{{"s":"{}"}}"#, "z".repeat(5000));
    refused_with_stdin(
        &f,
        &["append", "a:4", "--data", "-"],
        Some(huge.as_bytes()),
        2,
    );
    // The documents are intact.
    f.ok(&["verify"]);
    assert_eq!(f.json(&["get", "a:1"])["seq"], 0);
}

#[test]
fn append_nesting_100_levels_is_accepted_and_101_refused() {
    let f = TestFolder::new();
    append(&f, &["deep:ok", "--data", &nested_object(100)]);
    assert_eq!(
        state(&f, "deep:ok"),
        serde_json::from_str::<Value>(&nested_object(100)).unwrap()
    );
    let err = refused(&f, &["append", "deep:no", "--data", &nested_object(101)], 2);
    assert!(err.contains("100"), "{err}");
    refused(&f, &["append", "deep:no", "--data", &nested_object(129)], 2);
    // A patch whose result would be 101 levels deep is refused.
    let pointer = format!("{}/x", "/a".repeat(99));
    refused(
        &f,
        &[
            "append",
            "deep:ok",
            "--patch",
            &format!(r#"[{{"op":"add","path":"{pointer}","value":{{}}}}]"#),
        ],
        2,
    );
    refused(
        &f,
        &["append", "deep:ok", "--set", &format!("{pointer}={{}}")],
        2,
    );
    // A patch that is itself 100 levels deep is fine when the result is at most 100.
    append(&f, &["shallow:1", "--data", "{}"]);
    let value = nested_object(98); // patch: array > op object > value
    append(
        &f,
        &[
            "shallow:1",
            "--patch",
            &format!(r#"[{{"op":"add","path":"/v","value":{value}}}]"#),
        ],
    );
    let value = nested_object(99);
    refused(
        &f,
        &[
            "append",
            "shallow:1",
            "--patch",
            &format!(r#"[{{"op":"add","path":"/w","value":{value}}}]"#),
        ],
        2,
    );
    // meta has the same limit.
    append(
        &f,
        &["shallow:1", "--set", "m=1", "--meta", &nested_object(100)],
    );
    refused(
        &f,
        &[
            "append",
            "shallow:1",
            "--set",
            "m=2",
            "--meta",
            &nested_object(101),
        ],
        2,
    );
    f.ok(&["verify"]);
}

#[test]
fn append_set_value_too_deep_is_refused_not_stored_as_a_string() {
    let f = TestFolder::new();
    append(&f, &["deep:1", "--data", "{}"]);
    // 99 levels under a top-level member: the state is 100 deep, accepted.
    append(
        &f,
        &["deep:1", "--set", &format!("ok={}", nested_object(99))],
    );
    // 100 levels: the state would be 101 deep, refused.
    refused(
        &f,
        &[
            "append",
            "deep:1",
            "--set",
            &format!("a={}", nested_object(100)),
        ],
        2,
    );
    // 101 levels is valid JSON nested too deep: it must be refused as well, not stored as the
    // string of its text.
    refused(
        &f,
        &[
            "append",
            "deep:1",
            "--set",
            &format!("b={}", nested_object(101)),
        ],
        2,
    );
}

#[test]
fn append_nesting_100000_levels_is_refused_without_crashing() {
    let f = TestFolder::new();
    append(&f, &["deep:1", "--data", "{}"]);
    let arrays = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let objects = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    refused_with_stdin(
        &f,
        &["append", "deep:2", "--data", "-"],
        Some(objects.as_bytes()),
        2,
    );
    refused_with_stdin(
        &f,
        &["append", "deep:2", "--data", "-"],
        Some(format!("{{\"a\":{arrays}}}").as_bytes()),
        2,
    );
    refused_with_stdin(
        &f,
        &["append", "deep:1", "--patch", "-"],
        Some(arrays.as_bytes()),
        2,
    );
    refused_with_stdin(
        &f,
        &["append", "deep:1", "--patch", "-"],
        Some(format!(r#"[{{"op":"add","path":"/x","value":{objects}}}]"#).as_bytes()),
        2,
    );
    // Unbalanced, as an argument.
    refused(&f, &["append", "deep:2", "--data", &"[".repeat(100_000)], 2);
    refused(
        &f,
        &[
            "append",
            "deep:1",
            "--meta",
            &"{\"a\":".repeat(20_000),
            "--set",
            "x=1",
        ],
        2,
    );
    assert_eq!(state(&f, "deep:1"), json!({}));
}

// ---------------------------------------------------------------------------------------------
// Torn tails and corruption
// ---------------------------------------------------------------------------------------------

fn append_raw(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn torn_tail_is_ignored_by_readers_and_removed_by_the_next_append() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"n":0}"#]);
    append(&f, &["order:1", "--set", "n=1"]);
    append(&f, &["order:1", "--set", "n=2"]);
    let path = f.stream_file("order:1");
    let complete = std::fs::read(&path).unwrap();
    let get_before = f.ok(&["get", "order:1"]);
    let ls_before = f.ok(&["ls"]);
    let replay_before = f.ok(&["replay", "order:1", "--each"]);
    append_raw(&path, br#"{"seq":3,"doc":"order:1","type":"upd"#);

    assert_eq!(f.ok(&["get", "order:1"]), get_before);
    assert_eq!(f.ok(&["log", "order:1"]).as_bytes(), &complete[..]);
    assert_eq!(f.ok(&["ls"]), ls_before);
    assert_eq!(f.ok(&["replay", "order:1", "--each"]), replay_before);
    assert_eq!(
        f.json(&["at", "order:1", "--seq", "2"])["state"],
        json!({"n":2})
    );
    f.ok(&["verify"]);

    let out = f
        .cmd()
        .args(["append", "order:1", "--set", "n=3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_one_line_error(&stderr);
    assert!(stderr.contains("torn tail"), "{stderr}");
    let line = String::from_utf8(out.stdout).unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["seq"], 3);

    let mut expected = complete.clone();
    expected.extend_from_slice(line.as_bytes());
    let now = std::fs::read(&path).unwrap();
    assert_eq!(now, expected, "the file holds exactly the complete lines");
    assert!(now.ends_with(b"\n"));
    assert_eq!(file_lines(&path).len(), 4);
    assert_eq!(state(&f, "order:1"), json!({"n":3}));
    f.ok(&["verify"]);

    // The next append says nothing about a tail.
    let out = f
        .cmd()
        .args(["append", "order:1", "--set", "n=4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn torn_tail_that_looks_like_a_whole_event_is_still_ignored() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"n":0}"#]);
    let path = f.stream_file("order:1");
    let complete = std::fs::read(&path).unwrap();
    // A full, valid event line written by another folder's append, without its newline.
    let other = TestFolder::new();
    append(&other, &["order:1", "--data", r#"{"n":0}"#]);
    let second = other.ok(&["append", "order:1", "--set", "n=1"]);
    append_raw(&path, second.trim_end().as_bytes());
    assert_eq!(f.json(&["get", "order:1"])["seq"], 0);
    assert_eq!(f.ok(&["log", "order:1"]).as_bytes(), &complete[..]);
    let e = append(&f, &["order:1", "--set", "n=5"]);
    assert_eq!(e["seq"], 1);
    assert_eq!(file_lines(&path).len(), 2);
    f.ok(&["verify"]);
}

#[test]
fn torn_tail_alone_is_a_document_without_events() {
    let f = TestFolder::new();
    append(&f, &["order:2", "--data", "{}"]);
    let path = f.stream_file("order:1");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, br#"{"seq":0,"doc":"order:1""#).unwrap();
    refused(&f, &["get", "order:1"], 5);
    refused(&f, &["log", "order:1"], 5);
    let docs: Vec<Value> = f
        .ndjson(&["ls"])
        .into_iter()
        .map(|l| l["doc"].clone())
        .collect();
    assert_eq!(docs, vec![json!("order:2")]);
    // A create starts it, removing the tail.
    let out = f
        .cmd()
        .args(["append", "order:1", "--data", r#"{"a":1}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("torn tail"));
    assert_eq!(file_lines(&path).len(), 1);
    assert_eq!(state(&f, "order:1"), json!({"a":1}));
    f.ok(&["verify"]);
}

#[test]
fn a_refused_append_leaves_a_torn_tail_in_place() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"n":0}"#]);
    append_raw(&f.stream_file("order:1"), br#"{"seq":1,"doc":"#);
    refused(
        &f,
        &["append", "order:1", "--set", "n=1", "--expect", "5"],
        3,
    );
    refused(
        &f,
        &[
            "append",
            "order:1",
            "--patch",
            r#"[{"op":"remove","path":"/x"}]"#,
        ],
        2,
    );
    refused(&f, &["append", "order:1", "--data", "{}"], 2);
    // A stream with nothing but a torn tail: the document does not exist.
    let path = f.stream_file("order:2");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, br#"{"seq":0,"doc":"order:2""#).unwrap();
    refused(&f, &["append", "order:2", "--set", "a=1"], 5);
    refused(&f, &["append", "order:2", "--type", "delete"], 5);
    refused(
        &f,
        &["append", "order:2", "--data", "{}", "--expect", "0"],
        3,
    );
}

/// Changes the first ASCII letter or digit at or after the middle of the last line to another
/// character of the same kind, keeping the line valid JSON.
fn corrupt_middle_of_last_line(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let end = bytes.len() - 1;
    let start = bytes[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let mut i = start + (end - start) / 2;
    while !bytes[i].is_ascii_alphanumeric() {
        i += 1;
    }
    bytes[i] = match bytes[i] {
        b'9' => b'0',
        b'f' => b'a',
        b'z' => b'a',
        b'Z' => b'A',
        b => b + 1,
    };
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_corrupted_complete_last_line_makes_append_exit_4_and_write_nothing() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"n":0}"#]);
    append(&f, &["order:1", "--set", "n=1"]);
    append(&f, &["order:1", "--set", "n=2"]);
    corrupt_middle_of_last_line(&f.stream_file("order:1"));
    let err = refused(&f, &["append", "order:1", "--set", "n=3"], 4);
    assert!(err.contains("order:1") && err.contains("corrupt"), "{err}");
    refused(&f, &["append", "order:1", "--type", "delete"], 4);
    refused(&f, &["append", "order:1", "--data", "{}"], 4);
    refused(&f, &["get", "order:1"], 4);
    let (code, _, _) = f.run(&["log", "order:1"]);
    assert_eq!(code, 4);
    let (code, _, _) = f.run(&["verify"]);
    assert_eq!(code, 4);
}

#[test]
fn a_corrupted_event_id_in_the_last_line_makes_append_exit_4() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"n":0}"#]);
    append(&f, &["order:1", "--type", "delete"]);
    let path = f.stream_file("order:1");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text[..text.len() - 1].rfind('\n').unwrap() + 1;
    let at = start + text[start..].find("\"event_id\":\"").unwrap() + "\"event_id\":\"".len();
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&path, bytes).unwrap();
    refused(&f, &["append", "order:1", "--data", "{}"], 4);
}

#[test]
fn a_corrupted_first_line_makes_append_exit_4() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"n":0}"#]);
    corrupt_middle_of_last_line(&f.stream_file("order:1"));
    refused(&f, &["append", "order:1", "--set", "n=1"], 4);
    refused(&f, &["append", "order:1", "--data", "{}"], 4);
}
