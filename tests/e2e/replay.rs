//! `eventdir replay`: folding documents from seq 0.

use serde_json::{Value, json};

use crate::append::{append, refused};
use crate::common::*;

fn history(f: &TestFolder) {
    append(f, &["order:1", "--data", r#"{"status":"open"}"#]);
    append(f, &["order:1", "--set", "status=paid"]);
    append(f, &["order:1", "--type", "delete"]);
    append(f, &["order:1", "--data", r#"{"status":"reopened"}"#]);
    append(f, &["order:2", "--data", r#"{"qty":2}"#]);
    append(f, &["user:ann", "--data", r#"{"name":"Ann"}"#]);
    append(
        f,
        &[
            "user:ann",
            "--patch",
            r#"[{"op":"add","path":"/tags","value":["a"]}]"#,
        ],
    );
}

#[test]
fn replay_prints_final_states_equal_to_get() {
    let f = TestFolder::new();
    history(&f);
    for doc in ["order:1", "order:2", "user:ann"] {
        let replayed = f.ok(&["replay", doc]);
        assert_eq!(replayed.lines().count(), 1);
        assert_eq!(
            serde_json::from_str::<Value>(&replayed).unwrap(),
            f.json(&["get", doc])
        );
    }
    assert_eq!(
        f.json(&["replay", "order:1"])["state"],
        json!({"status":"reopened"})
    );
    assert_eq!(
        f.json(&["replay", "user:ann"])["state"],
        json!({"name":"Ann","tags":["a"]})
    );
    let two = f.ndjson(&["replay", "user:ann", "order:2"]);
    assert_eq!(two.len(), 2);
    assert_eq!(two[0]["doc"], "user:ann");
    assert_eq!(two[1]["doc"], "order:2");
}

#[test]
fn replay_each_prints_one_line_per_event_with_the_state_after_it() {
    let f = TestFolder::new();
    history(&f);
    let log = f.ndjson(&["log", "order:1"]);
    let each = f.ndjson(&["replay", "order:1", "--each"]);
    assert_eq!(each.len(), log.len());
    let states = [
        (json!({"status":"open"}), false),
        (json!({"status":"paid"}), false),
        (json!({"status":"paid"}), true),
        (json!({"status":"reopened"}), false),
    ];
    for (i, ((line, event), (state, deleted))) in each.iter().zip(&log).zip(states).enumerate() {
        assert_eq!(line["doc"], "order:1");
        assert_eq!(line["seq"], i as u64);
        assert_eq!(line["hash"], event["hash"]);
        assert_eq!(line["timestamp"], event["timestamp"]);
        assert_eq!(line["state"], state, "seq {i}");
        assert_eq!(line["deleted"], deleted, "seq {i}");
    }
    // Each line is what `at --seq` says.
    for (i, line) in each.iter().enumerate() {
        assert_eq!(*line, f.json(&["at", "order:1", "--seq", &i.to_string()]));
    }
    // Without DOC, --each covers every document, in id order.
    let all = f.ndjson(&["replay", "--each"]);
    let docs: Vec<&str> = all.iter().map(|l| l["doc"].as_str().unwrap()).collect();
    assert_eq!(
        docs,
        [
            "order:1", "order:1", "order:1", "order:1", "order:2", "user:ann", "user:ann"
        ]
    );
}

#[test]
fn replay_without_docs_prints_every_document_in_id_order() {
    let f = TestFolder::new();
    history(&f);
    append(&f, &["a:Z", "--data", "{}"]);
    append(&f, &["a:a", "--data", "{}"]);
    append(&f, &["order:10", "--data", "{}"]);
    let all = f.ndjson(&["replay"]);
    let docs: Vec<&str> = all.iter().map(|l| l["doc"].as_str().unwrap()).collect();
    assert_eq!(
        docs,
        ["a:Z", "a:a", "order:1", "order:10", "order:2", "user:ann"]
    );
    for line in &all {
        assert_eq!(*line, f.json(&["get", line["doc"].as_str().unwrap()]));
    }
}

#[test]
fn replay_type_filter_keeps_only_that_type() {
    let f = TestFolder::new();
    history(&f);
    let orders = f.ndjson(&["replay", "--type", "order"]);
    let docs: Vec<&str> = orders.iter().map(|l| l["doc"].as_str().unwrap()).collect();
    assert_eq!(docs, ["order:1", "order:2"]);
    let users = f.ndjson(&["replay", "--type", "user", "--each"]);
    assert_eq!(users.len(), 2);
    assert!(users.iter().all(|l| l["doc"] == "user:ann"));
    assert_eq!(f.ok(&["replay", "--type", "nothing"]), "");
}

#[test]
fn replay_of_an_empty_folder_prints_nothing() {
    let f = TestFolder::new();
    assert_eq!(f.ok(&["replay"]), "");
    assert_eq!(f.ok(&["replay", "--each"]), "");
}

#[test]
fn replay_of_a_missing_document_exits_5() {
    let f = TestFolder::new();
    history(&f);
    refused(&f, &["replay", "order:99"], 5);
    refused(&f, &["replay", "order:99", "--each"], 5);
    refused(&f, &["replay", "order"], 2);
}

/// A stream long enough to be read ahead on a second thread, one event per `set` of `n` and
/// `note`; returns the lines of its file.
fn long_stream(f: &TestFolder, events: usize) -> Vec<String> {
    let mut input = format!("{}\n", json!({"doc": "long:1", "data": {"n": 0}}));
    for n in 1..events {
        let note = format!("{n:0>6}").repeat(60);
        input.push_str(&format!(
            "{}\n",
            json!({"doc": "long:1", "set": {"n": n, "note": note}})
        ));
    }
    f.batch_ok(&input);
    let text = std::fs::read_to_string(f.stream_file("long:1")).unwrap();
    assert!(
        text.len() as u64 > 2 * eventdir::read_ahead::READ_AHEAD_FROM,
        "the stream must be long enough to be read ahead"
    );
    text.lines().map(str::to_string).collect()
}

#[test]
fn a_stream_read_ahead_replays_every_event_in_order() {
    let f = TestFolder::new();
    long_stream(&f, 4000);
    let each = f.ndjson(&["replay", "long:1", "--each"]);
    assert_eq!(each.len(), 4000);
    for (n, state) in each.iter().enumerate() {
        assert_eq!(state["seq"], n);
        assert_eq!(state["state"]["n"], n);
    }
    let replayed: Value = serde_json::from_str(&f.ok(&["replay", "long:1"])).unwrap();
    std::fs::remove_dir_all(f.path().join("cache")).unwrap();
    assert_eq!(replayed, f.json(&["get", "long:1"]));
}

#[test]
fn a_stream_read_ahead_reports_its_first_corruption_by_seq() {
    let f = TestFolder::new();
    let mut lines = long_stream(&f, 4000);
    // Seq 2000's data no longer matches its digest, and seq 3000's stored hash is not the one
    // its bytes chain to (both checked by the folding thread, the second after the reading
    // thread computed the chain): the first is reported.
    let data_at = lines[2000].find("\"value\":\"0").unwrap() + 9;
    lines[2000].replace_range(data_at..data_at + 1, "x");
    let hash_at = lines[3000].len() - 3;
    let original = lines[3000][hash_at..hash_at + 1].to_string();
    let flipped = if &lines[3000][hash_at..hash_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    lines[3000].replace_range(hash_at..hash_at + 1, flipped);
    std::fs::write(f.stream_file("long:1"), lines.join("\n") + "\n").unwrap();
    std::fs::remove_dir_all(f.path().join("cache")).unwrap();
    for args in [&["replay", "long:1"][..], &["get", "long:1"]] {
        let (code, _, stderr) = f.run(args);
        assert_eq!(code, 4, "{args:?}: {stderr}");
        assert!(stderr.contains("seq 2000"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("data does not match data_hash"),
            "{args:?}: {stderr}"
        );
    }
    // With seq 2000 repaired, the broken chain at seq 3000 is what is reported.
    lines[2000].replace_range(data_at..data_at + 1, "0");
    std::fs::write(f.stream_file("long:1"), lines.join("\n") + "\n").unwrap();
    let (code, _, stderr) = f.run(&["replay", "long:1"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("seq 3000"), "{stderr}");
    assert!(stderr.contains("hash does not match"), "{stderr}");
    // With that repaired too: a salt that is not hex at seq 3500, and a seq out of order at
    // 3900 (checked by the reading thread), the first reported.
    lines[3000].replace_range(hash_at..hash_at + 1, &original);
    let salt_at = lines[3500].find("\"salt\":\"").unwrap() + 8;
    let salt_digit = lines[3500][salt_at..salt_at + 1].to_string();
    lines[3500].replace_range(salt_at..salt_at + 1, "g");
    lines[3900] = lines[3900].replacen("{\"seq\":3900,", "{\"seq\":3901,", 1);
    std::fs::write(f.stream_file("long:1"), lines.join("\n") + "\n").unwrap();
    let (code, _, stderr) = f.run(&["replay", "long:1"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("seq 3500"), "{stderr}");
    assert!(
        stderr.contains("salt is not 32 lower-case hex digits"),
        "{stderr}"
    );
    lines[3500].replace_range(salt_at..salt_at + 1, &salt_digit);
    std::fs::write(f.stream_file("long:1"), lines.join("\n") + "\n").unwrap();
    let (code, _, stderr) = f.run(&["replay", "long:1"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("3901 where 3900 was expected"), "{stderr}");
}

#[test]
fn a_stream_read_ahead_reports_a_timestamp_or_event_id_out_of_form_by_seq() {
    let f = TestFolder::new();
    let lines = long_stream(&f, 4000);
    let corrupt = |seq: usize, member: &str, text: &str| {
        let mut lines = lines.clone();
        let at = lines[seq].find(&format!("\"{member}\":\"")).unwrap() + member.len() + 4;
        lines[seq].replace_range(at..at + text.len(), text);
        std::fs::write(f.stream_file("long:1"), lines.join("\n") + "\n").unwrap();
        std::fs::remove_dir_all(f.path().join("cache")).ok();
    };
    // Checked by the folding thread, not by the one that reads ahead and chains: a month 13
    // that sorts after every timestamp before it, one that sorts before them, an id in
    // capitals. Each is reported as what it is, at its seq.
    let cases = [
        (
            1000,
            "timestamp",
            "2999-13-01T00:00:00.000000Z",
            "is not in the stored form",
        ),
        (
            1200,
            "timestamp",
            "0000-00-00T00:00:00.000000Z",
            "is not in the stored form",
        ),
        (1500, "event_id", "ABCDEF01", "is not a lower-case UUID"),
    ];
    for (seq, member, text, reason) in cases {
        corrupt(seq, member, text);
        for args in [&["replay", "long:1"][..], &["get", "long:1"]] {
            let (code, _, stderr) = f.run(args);
            assert_eq!(code, 4, "{args:?}: {stderr}");
            assert!(stderr.contains(&format!("seq {seq}")), "{args:?}: {stderr}");
            assert!(stderr.contains(reason), "{args:?}: {stderr}");
        }
    }
}
