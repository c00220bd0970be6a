//! `eventdir get`: the current state of one document.

use serde_json::{Value, json};

use crate::append::{append, refused};
use crate::common::*;

#[test]
fn get_prints_doc_seq_timestamp_schema_deleted_hash_and_state() {
    let f = TestFolder::new();
    append(&f, &["order:42", "--data", r#"{"status":"open","qty":1}"#]);
    let last = append(&f, &["order:42", "--set", "status=paid"]);
    let out = f.ok(&["get", "order:42"]);
    assert!(out.ends_with('\n') && out.lines().count() == 1, "{out:?}");
    let got: Value = serde_json::from_str(&out).unwrap();
    let mut keys: Vec<&str> = got
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "deleted",
            "doc",
            "hash",
            "schema",
            "seq",
            "state",
            "timestamp"
        ]
    );
    assert_eq!(got["doc"], "order:42");
    assert_eq!(got["seq"], 1);
    assert_eq!(got["deleted"], false);
    assert_eq!(got["schema"], Value::Null);
    assert_eq!(got["hash"], last["hash"]);
    assert_eq!(got["timestamp"], last["timestamp"]);
    assert_eq!(got["state"], json!({"status":"paid","qty":1}));
    let hash = got["hash"].as_str().unwrap();
    assert!(
        hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
}

#[test]
fn get_of_a_deleted_document_keeps_its_last_state() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"a":1}"#]);
    append(&f, &["order:1", "--set", "a=2"]);
    let deleted = append(&f, &["order:1", "--type", "delete"]);
    let got = f.json(&["get", "order:1"]);
    assert_eq!(got["deleted"], true);
    assert_eq!(got["seq"], 2);
    assert_eq!(got["hash"], deleted["hash"]);
    assert_eq!(got["state"], json!({"a":2}));
}

#[test]
fn get_of_a_missing_document_exits_5() {
    let f = TestFolder::new();
    let err = refused(&f, &["get", "order:1"], 5);
    assert!(err.contains("order:1"), "{err}");
    append(&f, &["order:2", "--data", "{}"]);
    refused(&f, &["get", "order:1"], 5);
    refused(&f, &["get", "other:2"], 5);
}

#[test]
fn get_with_a_bad_id_exits_2() {
    let f = TestFolder::new();
    for id in ["order", ":1", "a:", "a:b\u{1}"] {
        refused(&f, &["get", id], 2);
    }
    refused(&f, &["get"], 2);
    refused(&f, &["get", "a:1", "b:2"], 2);
}

#[test]
fn get_after_many_events_equals_replay_with_and_without_cache() {
    let f = TestFolder::new();
    append(&f, &["c:1", "--data", r#"{"n":0,"list":[]}"#]);
    for n in 1..=140 {
        append(
            &f,
            &[
                "c:1",
                "--patch",
                &format!(
                    r#"[{{"op":"replace","path":"/n","value":{n}}},{{"op":"add","path":"/list/-","value":{n}}}]"#
                ),
            ],
        );
    }
    let got = f.json(&["get", "c:1"]);
    assert_eq!(got["seq"], 140);
    assert_eq!(got["state"]["n"], 140);
    assert_eq!(got["state"]["list"].as_array().unwrap().len(), 140);
    assert_eq!(got, f.json(&["replay", "c:1"]));
    // The cache is derived data: deleting it changes nothing.
    let _ = std::fs::remove_dir_all(f.path().join("cache"));
    assert_eq!(got, f.json(&["get", "c:1"]));
    // Appends after that still fold correctly.
    append(&f, &["c:1", "--set", "n=-1"]);
    assert_eq!(f.json(&["get", "c:1"])["state"]["n"], -1);
    assert_eq!(f.json(&["get", "c:1"]), f.json(&["replay", "c:1"]));
}

#[test]
fn get_ignores_a_stale_or_damaged_snapshot() {
    let f = TestFolder::new();
    append(&f, &["c:1", "--data", r#"{"n":0}"#]);
    for n in 1..=70 {
        append(&f, &["c:1", "--set", &format!("n={n}")]);
    }
    let expected = f.json(&["replay", "c:1"]);
    // Damage every cached file: the state must still come from the stream.
    let cache = f.path().join("cache");
    if cache.exists() {
        for (rel, bytes) in snapshot_tree(&cache) {
            if let Some(mut bytes) = bytes {
                let text = String::from_utf8_lossy(&bytes).replace("70", "69");
                bytes = text.into_bytes();
                std::fs::write(cache.join(rel), bytes).unwrap();
            }
        }
    }
    assert_eq!(f.json(&["get", "c:1"]), expected);
    append(&f, &["c:1", "--set", "m=1"]);
    assert_eq!(f.json(&["get", "c:1"])["state"], json!({"n":70,"m":1}));
}

#[test]
fn a_get_that_folds_a_long_stream_leaves_a_snapshot_for_the_next_reader() {
    let f = TestFolder::new();
    let requests: String = (0..100)
        .map(|n| match n {
            0 => "{\"doc\":\"c:1\",\"data\":{\"n\":0}}\n".to_string(),
            n => format!("{{\"doc\":\"c:1\",\"set\":{{\"n\":{n}}}}}\n"),
        })
        .collect();
    f.cmd()
        .args(["append", "--batch"])
        .write_stdin(requests)
        .assert()
        .success();
    let cache = f.path().join("cache");
    std::fs::remove_dir_all(&cache).unwrap();
    let first = f.json(&["get", "c:1"]);
    assert_eq!(first["seq"], 99);
    let snapshots: Vec<_> = snapshot_tree(&cache)
        .into_iter()
        .filter(|(path, bytes)| {
            path.extension().is_some_and(|e| e == "snapshot") && bytes.is_some()
        })
        .collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let text = String::from_utf8(snapshots[0].1.clone().unwrap()).unwrap();
    assert!(text.contains("\"seq\":99"), "{text}");
    assert_eq!(f.json(&["get", "c:1"]), first);
    f.ok(&["verify"]);
}
