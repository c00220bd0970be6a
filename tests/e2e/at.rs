//! `eventdir at`: the state as of a seq or an instant.

use std::time::Duration;

use serde_json::{Value, json};

use crate::append::{append, refused};
use crate::common::*;

fn pause() {
    std::thread::sleep(Duration::from_millis(5));
}

/// A document with five events a few milliseconds apart; returns the printed events.
fn history(f: &TestFolder, doc: &str) -> Vec<Value> {
    let mut events = vec![append(f, &[doc, "--data", r#"{"n":0}"#])];
    for step in [
        &["--set", "n=1"][..],
        &["--set", "n=2"],
        &["--type", "delete"],
        &["--data", r#"{"m":1}"#],
    ] {
        pause();
        let mut args = vec![doc];
        args.extend_from_slice(step);
        events.push(append(f, &args));
    }
    events
}

#[test]
fn at_seq_equals_the_fold_of_the_prefix() {
    let f = TestFolder::new();
    let events = history(&f, "c:1");
    let expected = [
        (json!({"n":0}), false),
        (json!({"n":1}), false),
        (json!({"n":2}), false),
        (json!({"n":2}), true),
        (json!({"m":1}), false),
    ];
    for (seq, (state, deleted)) in expected.into_iter().enumerate() {
        let at = f.json(&["at", "c:1", "--seq", &seq.to_string()]);
        assert_eq!(at["doc"], "c:1");
        assert_eq!(at["seq"], seq as u64);
        assert_eq!(at["state"], state, "seq {seq}");
        assert_eq!(at["deleted"], deleted, "seq {seq}");
        assert_eq!(at["hash"], events[seq]["hash"]);
        assert_eq!(at["timestamp"], events[seq]["timestamp"]);
    }
    assert_eq!(
        f.json(&["at", "c:1", "--seq", "4"]),
        f.json(&["get", "c:1"])
    );
}

#[test]
fn at_seq_beyond_the_last_exits_5() {
    let f = TestFolder::new();
    history(&f, "c:1");
    let err = refused(&f, &["at", "c:1", "--seq", "5"], 5);
    assert!(err.contains("c:1"), "{err}");
    refused(&f, &["at", "c:1", "--seq", "18446744073709551615"], 5);
    refused(&f, &["at", "c:2", "--seq", "0"], 5);
}

#[test]
fn at_time_before_the_first_event_exits_5() {
    let f = TestFolder::new();
    history(&f, "c:1");
    refused(&f, &["at", "c:1", "--time", "2000-01-01T00:00:00Z"], 5);
    refused(&f, &["at", "c:2", "--time", "2999-01-01T00:00:00Z"], 5);
}

#[test]
fn at_time_after_an_event_returns_the_state_after_it() {
    let f = TestFolder::new();
    let events = history(&f, "c:1");
    for (i, event) in events.iter().enumerate() {
        let t = event["timestamp"].as_str().unwrap();
        // The last event at or before T (events with equal timestamps all count).
        let last = events
            .iter()
            .rposition(|e| e["timestamp"].as_str().unwrap() <= t)
            .unwrap();
        assert!(last >= i);
        let at = f.json(&["at", "c:1", "--time", t]);
        assert_eq!(at["seq"], last as u64, "at {t}");
        assert_eq!(at, f.json(&["at", "c:1", "--seq", &last.to_string()]));
    }
    // Far in the future: the current state.
    assert_eq!(
        f.json(&["at", "c:1", "--time", "2999-01-01T00:00:00Z"]),
        f.json(&["get", "c:1"])
    );
    // An RFC 3339 time with an offset means the same instant in UTC.
    assert_eq!(
        f.json(&["at", "c:1", "--time", "2999-01-01T02:00:00+02:00"]),
        f.json(&["get", "c:1"])
    );
}

#[test]
fn at_time_without_doc_lists_only_the_documents_existing_at_that_time() {
    let f = TestFolder::new();
    append(&f, &["a:1", "--data", r#"{"v":1}"#]);
    pause();
    let b = append(&f, &["b:1", "--data", r#"{"v":1}"#]);
    pause();
    append(&f, &["a:1", "--set", "v=2"]);
    append(&f, &["b:1", "--type", "delete"]);
    pause();
    append(&f, &["c:1", "--data", r#"{"v":1}"#]);
    let t = b["timestamp"].as_str().unwrap();

    let out = f.ndjson(&["at", "--time", t]);
    let docs: Vec<&str> = out.iter().map(|l| l["doc"].as_str().unwrap()).collect();
    assert_eq!(docs, ["a:1", "b:1"]);
    assert_eq!(out[0]["state"], json!({"v":1}));
    assert_eq!(out[1]["state"], json!({"v":1}));
    assert_eq!(out[1]["deleted"], false);
    for line in &out {
        assert_eq!(
            *line,
            f.json(&["at", line["doc"].as_str().unwrap(), "--time", t])
        );
    }
    // Now: every document, deleted ones included (as deleted).
    let now = f.ndjson(&["at", "--time", "2999-01-01T00:00:00Z"]);
    let docs: Vec<&str> = now.iter().map(|l| l["doc"].as_str().unwrap()).collect();
    assert_eq!(docs, ["a:1", "b:1", "c:1"]);
    assert_eq!(now[1]["deleted"], true);
    // Before everything: nothing, successfully.
    assert_eq!(f.ok(&["at", "--time", "2000-01-01T00:00:00Z"]), "");
}

#[test]
fn at_seq_without_doc_exits_2() {
    let f = TestFolder::new();
    history(&f, "c:1");
    refused(&f, &["at", "--seq", "0"], 2);
}

#[test]
fn at_with_bad_arguments_exits_2() {
    let f = TestFolder::new();
    history(&f, "c:1");
    refused(&f, &["at", "c:1"], 2);
    refused(&f, &["at"], 2);
    refused(
        &f,
        &["at", "c:1", "--seq", "0", "--time", "2999-01-01T00:00:00Z"],
        2,
    );
    refused(&f, &["at", "c:1", "--seq", "-1"], 2);
    refused(&f, &["at", "c:1", "--time", "tomorrow"], 2);
    refused(&f, &["at", "c:1", "--time", "2026-11-23"], 2);
    refused(&f, &["at", "--time", "tomorrow"], 2);
    refused(&f, &["at", "bad", "--seq", "0"], 2);
}
