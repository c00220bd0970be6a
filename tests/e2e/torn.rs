//! Torn writes at every byte offset: a stream whose last line was cut anywhere (inside a
//! multi-byte UTF-8 character, just before its newline) is read as the events before it,
//! reported by `verify` as a torn tail (not a failure), and repaired by the next append, which
//! says so and leaves every earlier byte as it was.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::*;
use crate::crash::run_plain;

/// Text whose bytes include 2-, 3- and 4-byte UTF-8 sequences.
const WIDE: &str = "ünï€😀";

/// The length of the first `n` lines of `bytes`.
fn lines_len(bytes: &[u8], n: usize) -> usize {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(n - 1)
        .map(|(i, _)| i + 1)
        .expect("enough lines")
}

fn verify_report(root: &Path, when: &str) -> Value {
    let out = run_plain(root, &["verify", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{when}: verify did not pass: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("verify --json prints JSON");
    assert_eq!(report["ok"], true, "{when}: {report}");
    assert_eq!(report["failed"], json!([]), "{when}: {report}");
    report
}

/// Offsets worth cutting at: every byte in `wide` (the region holding multi-byte characters)
/// and near both ends, every `step`th byte elsewhere.
fn cuts(from: usize, to: usize, wide: std::ops::Range<usize>, step: usize) -> Vec<usize> {
    (from..to)
        .filter(|&c| {
            wide.contains(&c) || c < from + 8 || c + 8 >= to || (c - from).is_multiple_of(step)
        })
        .collect()
}

#[test]
fn a_last_event_cut_at_every_byte_is_ignored_reported_and_repaired() {
    let f = TestFolder::new();
    let root = f.path();
    let doc = "torn:ü1";
    f.ok(&["append", doc, "--data", r#"{"name":"start","n":0}"#]);
    f.ok(&["append", doc, "--set", "n=1"]);
    let before = f.json(&["get", doc]);
    f.ok(&[
        "append",
        doc,
        "--set",
        &format!("text={WIDE}"),
        "--meta",
        &json!({ "note": WIDE }).to_string(),
    ]);
    let path = f.stream_file(doc);
    let full = std::fs::read(&path).unwrap();
    let start = lines_len(&full, 2);
    assert!(
        String::from_utf8_lossy(&full[start..]).contains(WIDE),
        "the last event holds the multi-byte text"
    );

    let mut checked = 0;
    for cut in start..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let torn = (cut - start) as u64;
        let when = format!("cut at {cut} ({torn} bytes of the last line)");

        // verify: a torn tail after seq 1 (nothing at all when the cut is at a line boundary).
        let report = verify_report(root, &when);
        let expected_torn = if torn == 0 {
            json!([])
        } else {
            json!([{"doc": doc, "after_seq": 1, "bytes": torn}])
        };
        assert_eq!(report["torn_tails"], expected_torn, "{when}: {report}");
        assert_eq!(report["events"], 2, "{when}: {report}");

        // Readers see the state before the last event.
        let out = run_plain(root, &["get", doc]);
        assert_eq!(out.status.code(), Some(0), "{when}: get: {out:?}");
        let got: Value = serde_json::from_slice(&out.stdout).expect("get prints JSON");
        assert_eq!(got, before, "{when}");
        let out = run_plain(root, &["log", doc]);
        assert_eq!(out.status.code(), Some(0), "{when}: log: {out:?}");
        assert_eq!(
            out.stdout,
            &full[..start],
            "{when}: log prints the complete lines"
        );
        let out = run_plain(root, &["ls"]);
        let listed: Value = serde_json::from_slice(&out.stdout).expect("ls prints JSON");
        assert_eq!(listed["seq"], 1, "{when}: {listed}");

        // The next append removes the tail, says so, and leaves the earlier lines alone.
        let out = run_plain(root, &["append", doc, "--set", &format!("after={cut}")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{when}: append: {stderr}");
        if torn == 0 {
            assert_eq!(stderr, "", "{when}");
        } else {
            assert_eq!(
                stderr,
                format!(
                    "eventdir: {doc}: removed a torn tail of {torn} bytes left by an append that never finished\n"
                ),
                "{when}"
            );
        }
        let event: Value = serde_json::from_slice(&out.stdout).expect("append prints JSON");
        assert_eq!(event["seq"], 2, "{when}");
        let after = std::fs::read(&path).unwrap();
        assert_eq!(
            &after[..start],
            &full[..start],
            "{when}: an earlier byte changed"
        );
        assert_eq!(&after[start..], &out.stdout[..], "{when}: the new line");
        if cut.is_multiple_of(8) || cut + 1 == full.len() {
            let report = verify_report(root, &format!("{when}, repaired"));
            assert_eq!(report["torn_tails"], json!([]), "{when}: {report}");
            assert_eq!(report["events"], 3, "{when}: {report}");
        }
        checked += 1;
    }
    assert_eq!(checked, full.len() - start);
    eprintln!("torn: {checked} cuts of the last line checked");
}

#[test]
fn a_first_event_cut_anywhere_leaves_no_document_until_the_next_create() {
    let f = TestFolder::new();
    let root = f.path();
    let doc = "torn:first";
    f.ok(&[
        "append",
        doc,
        "--data",
        &json!({ "text": WIDE, "pad": "p".repeat(200) }).to_string(),
    ]);
    let path = f.stream_file(doc);
    let full = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&full);
    let wide_at = text.find(WIDE).unwrap();
    let wide = wide_at - 2..wide_at + WIDE.len() + 2;

    let all = cuts(1, full.len(), wide, 7);
    for &cut in &all {
        std::fs::write(&path, &full[..cut]).unwrap();
        let when = format!("first line cut at {cut}");
        let report = verify_report(root, &when);
        assert_eq!(
            report["torn_tails"],
            json!([{"doc": doc, "after_seq": null, "bytes": cut}]),
            "{when}: {report}"
        );
        assert_eq!(report["events"], 0, "{when}: {report}");
        let out = run_plain(root, &["get", doc]);
        assert_eq!(out.status.code(), Some(5), "{when}: get: {out:?}");
        assert!(out.stdout.is_empty(), "{when}");
        let out = run_plain(root, &["ls"]);
        assert!(
            out.stdout.is_empty(),
            "{when}: ls lists a document without events"
        );
        // An update finds no document and changes nothing, not even the torn tail.
        let out = run_plain(root, &["append", doc, "--set", "a=1"]);
        assert_eq!(out.status.code(), Some(5), "{when}: update: {out:?}");
        assert_eq!(std::fs::read(&path).unwrap(), &full[..cut], "{when}");
        // A create removes the tail and starts the document.
        let out = run_plain(root, &["append", doc, "--data", r#"{"again":true}"#]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{when}: create: {stderr}");
        assert!(
            stderr.contains(&format!("removed a torn tail of {cut} bytes")),
            "{when}: {stderr:?}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), out.stdout, "{when}");
    }
    eprintln!("torn: {} cuts of a first line checked", all.len());
}

/// The tail is read from one window at the end of the file, with block scans for what does not
/// fit: last lines, lines before them and torn tails on either side of the window's edge must
/// all read alike.
#[test]
fn lines_and_torn_tails_around_the_tail_window_read_alike() {
    const WINDOW: usize = 8 * 1024;
    let f = TestFolder::new();
    let root = f.path();
    for (i, size) in [
        10,
        WINDOW - 300,
        WINDOW - 100,
        WINDOW,
        WINDOW + 50,
        3 * WINDOW,
    ]
    .into_iter()
    .enumerate()
    {
        let doc = format!("edge:{i}");
        f.ok(&[
            "append",
            &doc,
            "--data",
            &format!(r#"{{"blob":"{}"}}"#, "a".repeat(size)),
        ]);
        f.ok(&[
            "append",
            &doc,
            "--set",
            &format!("blob={}", "b".repeat(size)),
        ]);
        let path = f.stream_file(&doc);
        let full = std::fs::read(&path).unwrap();
        for torn in [0, 1, WINDOW - 200, WINDOW + 10] {
            let when = format!("events of {size} bytes, torn tail of {torn}");
            let mut bytes = full.clone();
            bytes.extend(std::iter::repeat_n(b'x', torn));
            std::fs::write(&path, &bytes).unwrap();
            let state = f.json(&["get", &doc]);
            assert_eq!(state["seq"], 1, "{when}: {state}");
            assert_eq!(state["state"]["blob"], "b".repeat(size), "{when}");
            verify_report(root, &when);
            let listed = f.ndjson(&["ls"]);
            let entry = listed
                .iter()
                .find(|d| d["doc"] == doc.as_str())
                .expect("listed");
            assert_eq!(entry["seq"], 1, "{when}: {entry}");
        }
        // The next append repairs the last torn tail and chains onto the long line.
        let out = run_plain(root, &["append", &doc, "--set", "n=2"]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            [&full[..], &out.stdout].concat()
        );
        verify_report(root, &format!("events of {size} bytes, after the repair"));
    }
}
