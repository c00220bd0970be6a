//! `eventdir export`: every stored event once, as its stored bytes with the origin put first;
//! selections by type, document and time; current states; and cursors that ship each event
//! exactly once and are recorded only after all output was written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};

use crate::append::{append, assert_one_line_error};
use crate::clone::*;
use crate::common::*;

/// The prefix every export line of DIR starts with.
fn origin_prefix(dir: &Path) -> String {
    format!("{{\"origin\":\"{}\",", folder_id(dir))
}

/// The stored line an export line carries: the line without its origin member.
fn stored_line(export_line: &str, prefix: &str) -> String {
    let rest = export_line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{export_line} does not start with {prefix}"));
    format!("{{{rest}")
}

/// The documents named by export lines, in order of first appearance.
fn docs_in_order(lines: &[Value]) -> Vec<String> {
    let mut seen = Vec::new();
    for line in lines {
        let doc = line["doc"].as_str().unwrap().to_string();
        if !seen.contains(&doc) {
            seen.push(doc);
        }
    }
    seen
}

/// The keys of export output.
fn keys_of(out: &str) -> Vec<(String, u64)> {
    parse_lines(out.as_bytes()).iter().map(key).collect()
}

#[test]
fn export_prints_every_event_once_as_the_origin_followed_by_the_stored_line() {
    let f = populated();
    let out = f.ok(&["export"]);
    assert!(out.ends_with('\n'));
    let prefix = origin_prefix(f.path());
    let mut rebuilt: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for line in out.lines() {
        let stored = stored_line(line, &prefix);
        let event: Value = serde_json::from_str(&stored).unwrap();
        let bytes = rebuilt
            .entry(event["doc"].as_str().unwrap().to_string())
            .or_default();
        bytes.extend_from_slice(stored.as_bytes());
        bytes.push(b'\n');
    }
    // Removing the origin gives back every stream file, byte for byte, in seq order.
    let docs = ["customer:Ann", "customer:Bob:Smith", "order:1", "order:2"];
    assert_eq!(rebuilt.keys().collect::<Vec<_>>(), docs);
    for doc in docs {
        assert_eq!(
            rebuilt[doc],
            std::fs::read(f.stream_file(doc)).unwrap(),
            "{doc}"
        );
    }
    let mut keys = keys_of(&out);
    let count = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), count, "an event was exported twice");
    assert_eq!(keys, stored_keys(f.path()));
    // The origin member is the folder id, first.
    for event in parse_lines(out.as_bytes()) {
        assert_eq!(event["origin"], folder_id(f.path()));
    }
}

#[test]
fn export_of_a_folder_without_events_prints_nothing() {
    let f = TestFolder::new();
    assert_eq!(f.ok(&["export"]), "");
}

#[test]
fn export_leaves_out_a_torn_tail() {
    let f = populated();
    let path = f.stream_file("order:1");
    let complete = std::fs::read(&path).unwrap();
    let mut torn = complete.clone();
    torn.extend_from_slice(b"{\"seq\":3,\"doc\":\"order:1\",\"ty");
    std::fs::write(&path, &torn).unwrap();
    let out = f.ok(&["export", "--doc", "order:1"]);
    assert_eq!(out.lines().count(), 3);
    let prefix = origin_prefix(f.path());
    let stored: String = out
        .lines()
        .map(|l| stored_line(l, &prefix) + "\n")
        .collect();
    assert_eq!(stored.as_bytes(), complete.as_slice());
}

#[test]
fn export_puts_schema_documents_before_the_documents() {
    let f = TestFolder::new();
    append(&f, &["alpha:1", "--data", r#"{"n":1}"#]);
    set_schema(&f, "alpha", json!({"json_schema": {"type": "object"}}));
    append(&f, &["alpha:2", "--data", r#"{"n":2}"#]);
    append(&f, &["zulu:1", "--data", r#"{"n":3}"#]);
    set_schema(&f, "zulu", json!({"json_schema": {"type": "object"}}));
    set_schema(
        &f,
        "zulu",
        json!({"json_schema": {"type": "object", "required": ["n"]}}),
    );
    f.ok(&["append", "zulu:1", "--set", "n=4"]);
    let lines = f.ndjson(&["export"]);
    assert_eq!(lines.len(), 8);
    let docs = docs_in_order(&lines);
    let first_document = docs.iter().position(|d| !d.starts_with("sys:")).unwrap();
    assert_eq!(first_document, 2, "{docs:?}");
    let schemas: BTreeSet<&str> = docs[..2].iter().map(String::as_str).collect();
    assert_eq!(
        schemas,
        BTreeSet::from(["sys:schema:alpha", "sys:schema:zulu"])
    );
    let positions: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l["doc"].as_str().unwrap().starts_with("sys:"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(positions, [0, 1, 2], "schema events come first");
}

#[test]
fn export_type_selects_the_documents_of_the_type_and_its_schema_document() {
    let f = populated();
    set_schema(&f, "order", json!({"json_schema": {"type": "object"}}));
    f.ok(&["append", "order:1", "--set", "qty=4"]);
    let lines = f.ndjson(&["export", "--type", "order"]);
    let docs: BTreeSet<String> = docs_in_order(&lines).into_iter().collect();
    assert_eq!(
        docs,
        BTreeSet::from([
            "sys:schema:order".to_string(),
            "order:1".to_string(),
            "order:2".to_string()
        ])
    );
    // order:1 holds a migrate event as well as the update.
    assert_eq!(lines.len(), 1 + 5 + 2);
    let lines = f.ndjson(&["export", "--type", "customer"]);
    let docs = docs_in_order(&lines);
    assert_eq!(docs, ["customer:Ann", "customer:Bob:Smith"]);
    assert_eq!(lines.len(), 3);
    assert_eq!(f.ok(&["export", "--type", "invoice"]), "");
}

#[test]
fn export_doc_is_repeatable_and_selects_only_those_documents() {
    let f = populated();
    let lines = f.ndjson(&["export", "--doc", "order:2", "--doc", "customer:Ann"]);
    let mut docs = docs_in_order(&lines);
    docs.sort();
    assert_eq!(docs, ["customer:Ann", "order:2"]);
    let keys: Vec<(String, u64)> = lines.iter().map(key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("customer:Ann".to_string(), 0),
            ("customer:Ann".to_string(), 1),
            ("order:2".to_string(), 0),
            ("order:2".to_string(), 1)
        ]
    );
    let one = f.ndjson(&["export", "--doc", "order:1"]);
    let seqs: Vec<u64> = one.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [0, 1, 2], "ascending seq within a document");
    let (code, stdout, stderr) = f.run(&["export", "--doc", "no-colon"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stdout, "");
}

#[test]
fn export_since_and_until_select_events_by_timestamp_inclusively() {
    let f = populated();
    let all = f.ndjson(&["export"]);
    let mut stamps: Vec<String> = all
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap().to_string())
        .collect();
    stamps.sort();
    let middle = stamps[stamps.len() / 2].clone();
    let expect = |keep: &dyn Fn(&str) -> bool| -> Vec<(String, u64)> {
        let mut keys: Vec<(String, u64)> = all
            .iter()
            .filter(|e| keep(e["timestamp"].as_str().unwrap()))
            .map(key)
            .collect();
        keys.sort();
        keys
    };
    let sorted_keys = |args: &[&str]| {
        let mut keys = keys_of(&f.ok(args));
        keys.sort();
        keys
    };
    let since = sorted_keys(&["export", "--since", &middle]);
    assert_eq!(since, expect(&|t| t >= middle.as_str()));
    assert!(!since.is_empty() && since.len() < all.len());
    let until = sorted_keys(&["export", "--until", &middle]);
    assert_eq!(until, expect(&|t| t <= middle.as_str()));
    let both = sorted_keys(&["export", "--since", &middle, "--until", &middle]);
    assert_eq!(both, expect(&|t| t == middle.as_str()));
    assert_eq!(both.len(), 1);
    assert_eq!(
        f.ok(&["export", "--since", "2999-01-01T00:00:00Z"]),
        "",
        "nothing after the future"
    );
    assert_eq!(
        sorted_keys(&["export", "--since", "2000-01-01T00:00:00+02:00"]).len(),
        all.len()
    );
    let (code, stdout, stderr) = f.run(&["export", "--since", "yesterday"]);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert_one_line_error(&stderr);
}

#[test]
fn export_states_prints_the_current_state_of_every_document() {
    let f = populated();
    let states = f.ndjson(&["export", "--states"]);
    let docs: Vec<&str> = states.iter().map(|s| s["doc"].as_str().unwrap()).collect();
    assert_eq!(
        docs,
        ["customer:Ann", "customer:Bob:Smith", "order:1", "order:2"]
    );
    for state in &states {
        let doc = state["doc"].as_str().unwrap();
        assert_eq!(state, &f.json(&["get", doc]), "{doc}");
    }
    assert_eq!(states[3]["deleted"], true);
    assert_eq!(states[2]["state"], json!({"status": "paid", "qty": 3}));
    let one = f.ndjson(&["export", "--states", "--doc", "order:1"]);
    assert_eq!(one, vec![f.json(&["get", "order:1"])]);
    let (code, _, _) = f.run(&["export", "--states", "--since", "2000-01-01T00:00:00Z"]);
    assert_eq!(code, 2, "--states takes no time range");
}

// ---------------------------------------------------------------------------------------------
// Cursors
// ---------------------------------------------------------------------------------------------

#[test]
fn export_cursor_ships_everything_then_nothing_then_exactly_the_new_events() {
    let f = populated();
    let tmp = tempfile::tempdir().unwrap();
    let cursor = tmp.path().join("ship.cursor");
    let cursor_arg = cursor.to_str().unwrap();

    let first = f.ok(&["export", "--cursor", cursor_arg]);
    assert_eq!(first, f.ok(&["export"]), "the first run ships everything");
    let recorded: Value = serde_json::from_slice(&std::fs::read(&cursor).unwrap()).unwrap();
    assert_eq!(recorded["format"], "eventdir-cursor");
    assert_eq!(recorded["version"], 1);
    assert_eq!(recorded["folder_id"], folder_id(f.path()));

    assert_eq!(f.ok(&["export", "--cursor", cursor_arg]), "");

    let new = [
        append(&f, &["order:1", "--set", "status=shipped"]),
        append(&f, &["customer:Ann", "--set", "vip=true"]),
        append(&f, &["order:5", "--data", r#"{"qty":1}"#]),
        append(&f, &["order:5", "--set", "qty=2"]),
    ];
    let third = f.ok(&["export", "--cursor", cursor_arg]);
    let mut keys = keys_of(&third);
    keys.sort();
    let mut expected: Vec<(String, u64)> = new.iter().map(key).collect();
    expected.sort();
    assert_eq!(keys, expected);
    // They are the stored lines.
    let prefix = origin_prefix(f.path());
    for line in third.lines() {
        let stored = stored_line(line, &prefix);
        let event: Value = serde_json::from_str(&stored).unwrap();
        assert!(new.contains(&event), "{stored}");
    }
    assert_eq!(f.ok(&["export", "--cursor", cursor_arg]), "");
    // A cursor with a selection ships only that selection, independently.
    let typed = tmp.path().join("typed.cursor");
    let typed_arg = typed.to_str().unwrap();
    let orders = f.ok(&["export", "--type", "order", "--cursor", typed_arg]);
    assert_eq!(orders, f.ok(&["export", "--type", "order"]));
    append(&f, &["order:1", "--set", "qty=11"]);
    append(&f, &["customer:Ann", "--set", "vip=false"]);
    let next = keys_of(&f.ok(&["export", "--type", "order", "--cursor", typed_arg]));
    assert_eq!(next, [("order:1".to_string(), 4)]);
}

#[test]
fn export_cursor_named_in_the_current_directory_is_recorded_and_the_export_exits_0() {
    let f = populated();
    let tmp = tempfile::tempdir().unwrap();
    let run = || {
        command_in(f.path(), &["export", "--cursor", "ship.cursor"])
            .current_dir(tmp.path())
            .output()
            .unwrap()
    };
    let first = run();
    assert_eq!(
        first.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(first.stdout.as_slice(), f.ok(&["export"]).as_bytes());
    assert!(tmp.path().join("ship.cursor").exists());
    let second = run();
    assert_eq!(
        second.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(second.stdout.is_empty());
}

#[test]
fn export_cursor_is_not_recorded_when_stdout_is_a_closed_pipe() {
    let f = populated();
    let tmp = tempfile::tempdir().unwrap();
    let cursor = tmp.path().join("ship.cursor");
    let cursor_arg = cursor.to_str().unwrap();
    let closed_pipe_run = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        command_in(f.path(), &["export", "--cursor", cursor_arg])
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };
    // No cursor yet: none is created.
    let out = closed_pipe_run();
    assert_eq!(
        out.status.code(),
        Some(0),
        "a closed pipe ends export quietly: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(
        !cursor.exists(),
        "a cursor was recorded for unshipped events"
    );

    // An existing cursor is left as it was.
    f.ok(&["export", "--cursor", cursor_arg]);
    let recorded = std::fs::read(&cursor).unwrap();
    append(&f, &["order:1", "--set", "qty=12"]);
    let out = closed_pipe_run();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read(&cursor).unwrap(), recorded);

    // The same through a shell pipeline: `export --cursor F | head -c 0`.
    let script = "sleep 1; exec \"$0\" -C \"$1\" export --cursor \"$2\"";
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("sh -c '{script}' \"$0\" \"$1\" \"$2\" | head -c 0"))
        .arg(binary())
        .arg(f.path())
        .arg(&cursor)
        .env_remove("EVENTDIR_FOLDER")
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read(&cursor).unwrap(), recorded);

    // The unshipped event is shipped by the next run that can write.
    let out = f.ok(&["export", "--cursor", cursor_arg]);
    assert_eq!(keys_of(&out), [("order:1".to_string(), 3)]);
    assert_ne!(std::fs::read(&cursor).unwrap(), recorded);
}

#[test]
fn export_cursor_is_not_recorded_when_the_export_fails() {
    let f = populated();
    let tmp = tempfile::tempdir().unwrap();
    let cursor = tmp.path().join("ship.cursor");
    let cursor_arg = cursor.to_str().unwrap();
    f.ok(&["export", "--cursor", cursor_arg]);
    let recorded = std::fs::read(&cursor).unwrap();
    append(&f, &["customer:Ann", "--set", "vip=true"]);
    append(&f, &["order:3", "--data", r#"{"status":"new"}"#]);
    append(&f, &["order:1", "--set", "qty=13"]);
    // Corrupt order:1's new line: its data no longer matches data_hash.
    let path = f.stream_file("order:1");
    let text = std::fs::read_to_string(&path).unwrap();
    let broken = text.replacen("\"value\":13", "\"value\":14", 1);
    assert_ne!(broken, text);
    std::fs::write(&path, broken).unwrap();

    let out = f
        .cmd()
        .args(["export", "--cursor", cursor_arg])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_one_line_error(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        std::fs::read(&cursor).unwrap(),
        recorded,
        "a failed export recorded its cursor"
    );
}

#[test]
fn export_refuses_a_cursor_of_another_folder_with_exit_2() {
    let a = populated();
    let b = populated();
    let tmp = tempfile::tempdir().unwrap();
    let cursor = tmp.path().join("a.cursor");
    let cursor_arg = cursor.to_str().unwrap();
    a.ok(&["export", "--cursor", cursor_arg]);
    let recorded = std::fs::read(&cursor).unwrap();
    let (code, stdout, stderr) = b.run(&["export", "--cursor", cursor_arg]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stdout, "");
    assert_one_line_error(&stderr);
    assert_eq!(std::fs::read(&cursor).unwrap(), recorded);
    // Nor is a file that is not a cursor accepted.
    let junk = tmp.path().join("junk.cursor");
    std::fs::write(&junk, b"{\"format\":\"something-else\"}\n").unwrap();
    let (code, stdout, _) = b.run(&["export", "--cursor", junk.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert_eq!(
        std::fs::read(&junk).unwrap(),
        b"{\"format\":\"something-else\"}\n"
    );
}

#[test]
fn export_cursor_over_a_stream_that_was_cut_short_exits_4_and_is_not_recorded() {
    let f = populated();
    let tmp = tempfile::tempdir().unwrap();
    let cursor = tmp.path().join("ship.cursor");
    let cursor_arg = cursor.to_str().unwrap();
    f.ok(&["export", "--cursor", cursor_arg]);
    let recorded = std::fs::read(&cursor).unwrap();
    // Roll order:1 back by one event, then let it grow again with a different event.
    let path = f.stream_file("order:1");
    let text = std::fs::read_to_string(&path).unwrap();
    let cut: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, cut).unwrap();
    append(&f, &["order:1", "--set", "qty=99"]);
    let (code, _, stderr) = f.run(&["export", "--cursor", cursor_arg]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("order:1"), "{stderr}");
    assert_eq!(std::fs::read(&cursor).unwrap(), recorded);
}

/// Short streams are read many at a time, in parallel: still every event once, each document's
/// in seq order, the documents in id order, a cursor that resumes exactly, and a damaged
/// stream among them stops the export after the lines before it, as one stream at a time.
#[test]
fn export_of_thousands_of_documents_ships_each_event_once_and_stops_at_a_damaged_one() {
    let f = TestFolder::new();
    let requests = |from: usize, to: usize| -> String {
        (from..to)
            .map(|i| format!(r#"{{"doc":"item:{}","set":{{"n":{i}}}}}"#, i % 2500) + "\n")
            .collect()
    };
    let create: String = (0..2500)
        .map(|i| format!(r#"{{"doc":"item:{i}","data":{{"n":{i}}}}}"#) + "\n")
        .collect();
    f.batch_ok(&create);
    f.batch_ok(&requests(0, 3000));
    let tmp = tempfile::tempdir().unwrap();
    let cursor = tmp.path().join("ship.cursor");
    let cursor_arg = cursor.to_str().unwrap();
    let keys = keys_of(&f.ok(&["export", "--cursor", cursor_arg]));
    let mut expected: Vec<(String, u64)> = (0..2500)
        .flat_map(|i| (0..1 + u64::from(i < 500) + 1).map(move |seq| (format!("item:{i}"), seq)))
        .collect();
    expected.sort();
    assert_eq!(keys, expected, "id order, then seq order, each once");

    f.batch_ok(&requests(3000, 3100));
    let mut next = keys_of(&f.ok(&["export", "--cursor", cursor_arg]));
    next.sort();
    let mut new: Vec<(String, u64)> = (500..600).map(|i| (format!("item:{i}"), 2)).collect();
    new.sort();
    assert_eq!(next, new);

    // Current states, also read many at a time: one per document, in id order.
    let states: Vec<Value> = parse_lines(f.ok(&["export", "--states"]).as_bytes());
    let docs: Vec<&str> = states.iter().map(|s| s["doc"].as_str().unwrap()).collect();
    let mut ids: Vec<String> = (0..2500).map(|i| format!("item:{i}")).collect();
    ids.sort();
    assert_eq!(docs, ids);
    assert!(states.iter().all(|s| s["state"]["n"].is_u64()));

    // item:1500 sorts in the middle of a chunk; its first event is damaged.
    let path = f.stream_file("item:1500");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"n\":1500", "\"n\":1501", 1)).unwrap();
    let out = f.cmd().arg("export").output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    let printed = keys_of(&String::from_utf8_lossy(&out.stdout));
    let before: Vec<(String, u64)> = expected
        .iter()
        .cloned()
        .chain(new.iter().cloned())
        .filter(|(doc, _)| doc.as_str() < "item:1500")
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        printed, before,
        "the lines before the damaged stream, and none after"
    );
}
