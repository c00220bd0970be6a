//! `eventdir ls`: one line per document, from the end of each stream.

use serde_json::Value;

use crate::append::{append, refused};
use crate::common::*;

#[test]
fn ls_prints_one_line_per_document_with_its_head_in_id_order() {
    let f = TestFolder::new();
    append(&f, &["order:2", "--data", "{}"]);
    append(&f, &["order:10", "--data", "{}"]);
    let last10 = append(&f, &["order:10", "--set", "a=1"]);
    append(&f, &["user:Ann", "--data", "{}"]);
    let deleted = append(&f, &["user:Ann", "--type", "delete"]);
    append(&f, &["User:Bob", "--data", "{}"]);
    let out = f.ok(&["ls"]);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let docs: Vec<&str> = lines.iter().map(|l| l["doc"].as_str().unwrap()).collect();
    assert_eq!(docs, ["User:Bob", "order:10", "order:2", "user:Ann"]);
    for line in &lines {
        let mut keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(keys, ["deleted", "doc", "hash", "seq", "timestamp"]);
        let got = f.json(&["get", line["doc"].as_str().unwrap()]);
        for key in ["seq", "timestamp", "hash", "deleted"] {
            assert_eq!(line[key], got[key], "{key} of {}", line["doc"]);
        }
    }
    assert_eq!(lines[1]["seq"], 1);
    assert_eq!(lines[1]["hash"], last10["hash"]);
    assert_eq!(lines[1]["timestamp"], last10["timestamp"]);
    assert_eq!(lines[1]["deleted"], false);
    assert_eq!(lines[3]["deleted"], true);
    assert_eq!(lines[3]["hash"], deleted["hash"]);
}

#[test]
fn ls_of_an_empty_folder_prints_nothing() {
    let f = TestFolder::new();
    assert_eq!(f.ok(&["ls"]), "");
}

#[test]
fn ls_type_filter_keeps_only_that_type() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", "{}"]);
    append(&f, &["order:2", "--data", "{}"]);
    append(&f, &["user:1", "--data", "{}"]);
    append(&f, &["orders:1", "--data", "{}"]);
    let docs: Vec<String> = f
        .ndjson(&["ls", "--type", "order"])
        .iter()
        .map(|l| l["doc"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(docs, ["order:1", "order:2"]);
    assert_eq!(f.ndjson(&["ls", "--type", "user"]).len(), 1);
    assert_eq!(f.ok(&["ls", "--type", "nothing"]), "");
    assert_eq!(f.ok(&["ls", "--type", "Order"]), "");
}

#[test]
fn ls_ignores_foreign_files_under_streams() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", "{}"]);
    let before = f.ok(&["ls"]);
    let streams = f.path().join("streams");
    let shard_dir = f.stream_file("order:1").parent().unwrap().to_path_buf();
    std::fs::write(streams.join("README.txt"), "notes\n").unwrap();
    std::fs::write(streams.join(".DS_Store"), "x").unwrap();
    std::fs::write(shard_dir.join("1.ndjson.bak"), "x\n").unwrap();
    std::fs::write(shard_dir.join("notes.txt"), "x\n").unwrap();
    std::fs::create_dir_all(streams.join("order/zz")).unwrap();
    // A well-formed name in the wrong shard, and an upper-case name, are not eventdir's.
    std::fs::copy(f.stream_file("order:1"), streams.join("order/zz/1.ndjson")).unwrap();
    std::fs::write(shard_dir.join("Upper.ndjson"), "x\n").unwrap();
    std::fs::create_dir_all(streams.join("empty-type")).unwrap();
    std::fs::create_dir_all(streams.join("order/not-a-shard")).unwrap();
    std::fs::write(streams.join("order/not-a-shard/2.ndjson"), "x\n").unwrap();
    assert_eq!(f.ok(&["ls"]), before);
    assert_eq!(f.ok(&["replay"]).lines().count(), 1);
}

#[test]
fn ls_shows_the_new_head_after_every_append() {
    let f = TestFolder::new();
    for n in 0..5 {
        let e = if n == 0 {
            append(&f, &["c:1", "--data", "{}"])
        } else {
            append(&f, &["c:1", "--set", &format!("n={n}")])
        };
        let ls = f.ndjson(&["ls"]);
        assert_eq!(ls.len(), 1);
        assert_eq!(ls[0]["seq"], e["seq"]);
        assert_eq!(ls[0]["hash"], e["hash"]);
    }
}

#[test]
fn ls_with_bad_arguments_exits_2() {
    let f = TestFolder::new();
    refused(&f, &["ls", "order:1"], 2);
    refused(&f, &["ls", "--bogus"], 2);
}

/// Stream ends are read many at a time, in parallel: the lines still come in id order, one
/// per document, each with its own head.
#[test]
fn ls_of_thousands_of_documents_prints_each_once_in_id_order() {
    let f = TestFolder::new();
    let requests: String = (0..2500u64)
        .flat_map(|i| {
            let create = format!(r#"{{"doc":"item:{i}","data":{{"n":{i}}}}}"#);
            let update = format!(r#"{{"doc":"item:{i}","set":{{"m":1}}}}"#);
            // Every third document gets a second event, so seqs differ between neighbours.
            std::iter::once(create).chain(i.is_multiple_of(3).then_some(update))
        })
        .map(|line| line + "\n")
        .collect();
    f.batch_ok(&requests);
    let lines: Vec<Value> = f
        .ok(&["ls"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut expected: Vec<String> = (0..2500).map(|i| format!("item:{i}")).collect();
    expected.sort();
    let docs: Vec<&str> = lines.iter().map(|l| l["doc"].as_str().unwrap()).collect();
    assert_eq!(docs, expected);
    for line in &lines {
        let n: u64 = line["doc"].as_str().unwrap()[5..].parse().unwrap();
        assert_eq!(line["seq"], u64::from(n.is_multiple_of(3)), "{line}");
    }
}
