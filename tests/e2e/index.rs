//! Derived snapshots and point-in-time checkpoints: results never depend on them, and damaged
//! or stale ones are ignored.

use std::io::Write;

use serde_json::Value;

use crate::common::*;

/// A folder with one document of `events` events (`n` counts up), written by `append --batch`.
fn long_document(events: u64) -> TestFolder {
    let folder = TestFolder::new();
    let mut input = String::from("{\"doc\":\"log:1\",\"data\":{\"n\":0}}\n");
    for n in 1..events {
        input.push_str(&format!("{{\"doc\":\"log:1\",\"set\":{{\"n\":{n}}}}}\n"));
    }
    folder.batch_ok(&input);
    folder
}

fn at(folder: &TestFolder, args: &[&str]) -> Value {
    let mut all = vec!["at", "log:1"];
    all.extend_from_slice(args);
    folder.json(&all)
}

fn remove_cache(folder: &TestFolder) {
    let _ = std::fs::remove_dir_all(folder.path().join("cache"));
}

#[test]
fn at_gives_the_same_state_with_and_without_checkpoints() {
    let folder = long_document(3000);
    let seqs = ["0", "1", "1022", "1023", "1024", "2047", "2500", "2999"];
    remove_cache(&folder);
    let cold: Vec<Value> = seqs.iter().map(|s| at(&folder, &["--seq", s])).collect();
    assert!(
        folder.path().join("cache/index").exists(),
        "folding past checkpoints records them"
    );
    let warm: Vec<Value> = seqs.iter().map(|s| at(&folder, &["--seq", s])).collect();
    assert_eq!(cold, warm);
    for (seq, state) in seqs.iter().zip(&warm) {
        assert_eq!(state["state"]["n"].to_string(), *seq);
        assert_eq!(state["seq"].to_string(), *seq);
    }
    let middle = warm[6]["timestamp"].as_str().unwrap().to_string();
    let by_time = at(&folder, &["--time", &middle]);
    assert_eq!(by_time["timestamp"], middle);
    remove_cache(&folder);
    assert_eq!(at(&folder, &["--time", &middle]), by_time);
}

#[test]
fn damaged_or_stale_checkpoints_and_snapshots_are_ignored() {
    let folder = long_document(2100);
    let expected: Vec<Value> = ["1500", "2099"]
        .iter()
        .map(|s| at(&folder, &["--seq", s]))
        .collect();
    let get = folder.json(&["get", "log:1"]);
    // Damage every derived file: flip bytes in the middle, append garbage.
    let mut stack = vec![folder.path().join("cache")];
    let mut damaged = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x20;
            bytes.extend_from_slice(b"{garbage\n");
            std::fs::write(&path, bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged >= 2, "expected an index and a snapshot to damage");
    // A change that still parses: the states say N where they said n.
    let mut stack = vec![folder.path().join("cache")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                std::fs::write(&path, text.replace("{\"n\":", "{\"N\":")).unwrap();
            }
        }
    }
    let after: Vec<Value> = ["1500", "2099"]
        .iter()
        .map(|s| at(&folder, &["--seq", s]))
        .collect();
    assert_eq!(after, expected);
    assert_eq!(folder.json(&["get", "log:1"]), get);
}

#[test]
fn checkpoints_of_a_replaced_stream_are_not_trusted() {
    let folder = long_document(1500);
    at(&folder, &["--seq", "1400"]);
    let other = long_document(1500);
    // Same document id, same length, different events: every checkpoint's hash is wrong.
    std::fs::copy(other.stream_file("log:1"), folder.stream_file("log:1")).unwrap();
    let mut changed = std::fs::OpenOptions::new()
        .append(true)
        .open(folder.stream_file("log:1"))
        .unwrap();
    changed.flush().unwrap();
    let expected_hash = other.json(&["at", "log:1", "--seq", "1400"])["hash"].clone();
    assert_eq!(at(&folder, &["--seq", "1400"])["hash"], expected_hash);
    assert_eq!(
        folder.json(&["get", "log:1"])["hash"],
        other.json(&["get", "log:1"])["hash"]
    );
}
