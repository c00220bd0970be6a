//! `eventdir log`: the stored lines of a document, filtered by seq and time.

use serde_json::Value;

use crate::append::{append, file_lines, refused};
use crate::common::*;

/// A document with `n` events, a few milliseconds apart; returns the stream file's lines.
fn document(f: &TestFolder, doc: &str, n: usize) -> Vec<String> {
    append(f, &[doc, "--data", r#"{"n":0}"#]);
    for i in 1..n {
        std::thread::sleep(std::time::Duration::from_millis(3));
        append(f, &[doc, "--set", &format!("n={i}")]);
    }
    file_lines(&f.stream_file(doc))
}

fn timestamp(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap();
    v["timestamp"].as_str().unwrap().to_string()
}

fn seqs(out: &str) -> Vec<u64> {
    out.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn log_lines_are_byte_identical_to_the_stream_file_lines() {
    let f = TestFolder::new();
    append(
        &f,
        &[
            "order:1",
            "--data",
            r#"{"text":"caf\u00e9 \"q\" \\ \n\t","n":1.5e300,"big":18446744073709551615}"#,
        ],
    );
    append(
        &f,
        &[
            "order:1",
            "--set",
            "emoji=\u{1F600}",
            "--meta",
            r#"{"who":"Zo\u00eb"}"#,
        ],
    );
    append(&f, &["order:1", "--type", "delete"]);
    let out = f.ok(&["log", "order:1"]);
    let file = std::fs::read(f.stream_file("order:1")).unwrap();
    assert_eq!(out.as_bytes(), &file[..]);
    assert_eq!(out.lines().count(), 3);
    assert_eq!(seqs(&out), [0, 1, 2]);
}

#[test]
fn log_from_and_to_are_inclusive() {
    let f = TestFolder::new();
    let lines = document(&f, "c:1", 8);
    let joined = |range: std::ops::RangeInclusive<usize>| {
        lines[range]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    assert_eq!(
        f.ok(&["log", "c:1", "--from", "3", "--to", "5"]),
        joined(3..=5)
    );
    assert_eq!(f.ok(&["log", "c:1", "--from", "3"]), joined(3..=7));
    assert_eq!(f.ok(&["log", "c:1", "--to", "2"]), joined(0..=2));
    assert_eq!(
        f.ok(&["log", "c:1", "--from", "4", "--to", "4"]),
        joined(4..=4)
    );
    assert_eq!(
        f.ok(&["log", "c:1", "--from", "0", "--to", "7"]),
        joined(0..=7)
    );
    assert_eq!(
        f.ok(&["log", "c:1", "--from", "7", "--to", "100"]),
        joined(7..=7)
    );
}

#[test]
fn log_since_and_until_are_inclusive() {
    let f = TestFolder::new();
    let lines = document(&f, "c:1", 8);
    let stamps: Vec<String> = lines.iter().map(|l| timestamp(l)).collect();
    let expect = |since: Option<&str>, until: Option<&str>| -> String {
        lines
            .iter()
            .zip(&stamps)
            .filter(|(_, t)| {
                since.is_none_or(|s| t.as_str() >= s) && until.is_none_or(|u| t.as_str() <= u)
            })
            .map(|(l, _)| format!("{l}\n"))
            .collect()
    };
    let (s, u) = (stamps[2].as_str(), stamps[5].as_str());
    let both = f.ok(&["log", "c:1", "--since", s, "--until", u]);
    assert_eq!(both, expect(Some(s), Some(u)));
    assert!(
        seqs(&both).contains(&2) && seqs(&both).contains(&5),
        "inclusive at both ends"
    );
    assert_eq!(f.ok(&["log", "c:1", "--since", s]), expect(Some(s), None));
    assert_eq!(f.ok(&["log", "c:1", "--until", u]), expect(None, Some(u)));
    // The same instant written with an offset and fewer digits.
    let first = &stamps[0];
    assert_eq!(
        f.ok(&["log", "c:1", "--until", first]),
        expect(None, Some(first))
    );
    assert_eq!(f.ok(&["log", "c:1", "--until", "2000-01-01T00:00:00Z"]), "");
    assert_eq!(
        f.ok(&["log", "c:1", "--since", "2999-01-01T00:00:00+02:00"]),
        ""
    );
    assert_eq!(
        f.ok(&["log", "c:1", "--since", "2000-01-01T01:00:00+01:00"]),
        expect(None, None)
    );
}

#[test]
fn log_filters_combine() {
    let f = TestFolder::new();
    let lines = document(&f, "c:1", 8);
    let stamps: Vec<String> = lines.iter().map(|l| timestamp(l)).collect();
    let out = f.ok(&[
        "log", "c:1", "--from", "2", "--to", "6", "--since", &stamps[4], "--until", &stamps[7],
    ]);
    let expected: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| (2..=6).contains(i) && stamps[*i] >= stamps[4])
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    assert_eq!(out, expected);
    assert_eq!(seqs(&out).first(), Some(&4));
    assert_eq!(seqs(&out).last(), Some(&6));
}

#[test]
fn log_of_a_missing_document_exits_5() {
    let f = TestFolder::new();
    refused(&f, &["log", "order:1"], 5);
    append(&f, &["order:2", "--data", "{}"]);
    refused(&f, &["log", "order:1", "--from", "0"], 5);
}

#[test]
fn log_with_bad_arguments_exits_2() {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", "{}"]);
    refused(&f, &["log", "order:1", "--since", "yesterday"], 2);
    refused(
        &f,
        &["log", "order:1", "--until", "2026-13-01T00:00:00Z"],
        2,
    );
    refused(&f, &["log", "order:1", "--from", "-1"], 2);
    refused(&f, &["log", "order:1", "--to", "x"], 2);
    refused(&f, &["log", "order"], 2);
    refused(&f, &["log"], 2);
}

/// `long:1` with 3 000 events, and index checkpoints after seqs 1023 and 2047 (left by a
/// point-in-time read that folds past them); returns its full log.
fn long_document_with_checkpoints(f: &TestFolder) -> String {
    let mut input = format!(
        "{}\n",
        serde_json::json!({"doc": "long:1", "data": {"n": 0}})
    );
    for n in 1..3000 {
        input.push_str(&format!(
            "{}\n",
            serde_json::json!({"doc": "long:1", "set": {"n": n}})
        ));
    }
    f.batch_ok(&input);
    f.ok(&["at", "long:1", "--seq", "2999"]);
    f.ok(&["log", "long:1"])
}

/// Changes the value stored in `long:1`'s seq 5, so that reading that line fails its hash.
fn damage_seq_5(f: &TestFolder) {
    let path = f.stream_file("long:1");
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text.match_indices('\n').nth(4).unwrap().0 + 1;
    let at = at + text[at..].find("\"value\":5").unwrap() + 8;
    let mut damaged = text.into_bytes();
    damaged[at] = b'6';
    std::fs::write(&path, damaged).unwrap();
}

#[test]
fn log_from_a_late_seq_starts_at_a_checkpoint_and_reads_nothing_before_it() {
    let f = TestFolder::new();
    let all = long_document_with_checkpoints(&f);
    let tail: String = all.lines().skip(2990).map(|l| format!("{l}\n")).collect();
    assert_eq!(f.ok(&["log", "long:1", "--from", "2990"]), tail);
    // Damage seq 5: a full log refuses it, a log from seq 2990 never reads it.
    damage_seq_5(&f);
    let (code, _, stderr) = f.run(&["log", "long:1"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("seq 5"), "{stderr}");
    assert_eq!(f.ok(&["log", "long:1", "--from", "2990"]), tail);
    // Past the last event: nothing, and no error.
    assert_eq!(f.ok(&["log", "long:1", "--from", "5000"]), "");
    // Without cache/, the log reads from the start again and finds the damage.
    std::fs::remove_dir_all(f.path().join("cache")).unwrap();
    let (code, _, _) = f.run(&["log", "long:1", "--from", "2990"]);
    assert_eq!(code, 4);
}

#[test]
fn log_since_a_late_time_starts_at_a_checkpoint_and_reads_nothing_before_it() {
    let f = TestFolder::new();
    let all = long_document_with_checkpoints(&f);
    let since = timestamp(all.lines().nth(2990).unwrap());
    let expected: String = all
        .lines()
        .filter(|l| timestamp(l) >= since)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(f.ok(&["log", "long:1", "--since", &since]), expected);
    // Damage seq 5: a full log refuses it, a log since the time of seq 2990 never reads it.
    damage_seq_5(&f);
    let (code, _, stderr) = f.run(&["log", "long:1", "--since", "2000-01-01T00:00:00Z"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("seq 5"), "{stderr}");
    assert_eq!(f.ok(&["log", "long:1", "--since", &since]), expected);
    // Combined with --from, the later start wins and the filters still both apply.
    assert_eq!(
        f.ok(&["log", "long:1", "--since", &since, "--from", "2995"]),
        expected
            .lines()
            .filter(|l| seqs(l)[0] >= 2995)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    // Without cache/, the log reads from the start again and finds the damage.
    std::fs::remove_dir_all(f.path().join("cache")).unwrap();
    let (code, _, _) = f.run(&["log", "long:1", "--since", &since]);
    assert_eq!(code, 4);
}
