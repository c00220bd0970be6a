//! Stress: 16 processes append to 4 documents (half of them with `--expect` read from a
//! preceding `get`), while other processes loop `get`, `log`, `verify --json`, `clone` into
//! fresh directories and `export`. Readers never see a partial line, verify never fails, every
//! seq is won by exactly one writer, and the final streams are gapless and verify.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;
use crate::crash::run_plain;

const DOCS: [&str; 4] = ["stress:1", "stress:2", "Stress:ü", "stress:a:b"];
const WRITERS: usize = 16;
/// How long the writers run.
const DURATION: Duration = Duration::from_secs(12);
/// The most appends one writer attempts, whatever the machine's speed.
const MAX_ATTEMPTS: usize = 400;

/// What one writer saw: the events it appended and the appends it lost to `--expect`.
#[derive(Default)]
struct Written {
    events: Vec<(String, u64, String)>,
    lost: usize,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn writer(root: PathBuf, w: usize, deadline: Instant) -> Written {
    let doc = DOCS[w % DOCS.len()];
    let with_expect = w < WRITERS / 2;
    let mut written = Written::default();
    for i in 0..MAX_ATTEMPTS {
        if Instant::now() >= deadline {
            break;
        }
        let set = format!("w{w}={i}");
        let out = if with_expect {
            let got = run_plain(&root, &["get", doc]);
            assert_eq!(got.status.code(), Some(0), "writer {w}: get: {got:?}");
            let state: Value = serde_json::from_slice(&got.stdout)
                .unwrap_or_else(|e| panic!("writer {w}: get printed {:?}: {e}", text(&got.stdout)));
            let seq = state["seq"].as_u64().expect("seq").to_string();
            let out = run_plain(&root, &["append", doc, "--set", &set, "--expect", &seq]);
            if out.status.code() == Some(3) {
                assert!(out.stdout.is_empty(), "writer {w}: a loser printed {out:?}");
                assert!(
                    text(&out.stderr).contains(&format!("expected last seq {seq}")),
                    "writer {w}: {out:?}"
                );
                written.lost += 1;
                continue;
            }
            let event: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!(
                    "writer {w}: append printed {:?}: {e} {out:?}",
                    text(&out.stdout)
                )
            });
            assert_eq!(
                event["seq"],
                seq.parse::<u64>().unwrap() + 1,
                "writer {w}: --expect {seq} won a different seq"
            );
            out
        } else {
            run_plain(&root, &["append", doc, "--set", &set])
        };
        assert_eq!(out.status.code(), Some(0), "writer {w}: {out:?}");
        let line = text(&out.stdout);
        let line = line.strip_suffix('\n').expect("one line");
        assert!(!line.contains('\n'), "writer {w}: {line}");
        let event: Value = serde_json::from_str(line).expect("append prints JSON");
        assert_eq!(event["doc"], doc);
        written.events.push((
            doc.to_string(),
            event["seq"].as_u64().unwrap(),
            line.to_string(),
        ));
    }
    written
}

/// Every line parses as JSON; within each document, seqs ascend from 0 without a gap.
fn check_lines(what: &str, stdout: &[u8]) {
    let stdout = std::str::from_utf8(stdout).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        stdout.is_empty() || stdout.ends_with('\n'),
        "{what}: output ends inside a line"
    );
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    for line in stdout.lines() {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{what}: a partial or broken line {line:?}: {e}"));
        let doc = event["doc"].as_str().expect("doc").to_string();
        let seq = event["seq"].as_u64().expect("seq");
        let expected = next.entry(doc.clone()).or_insert(0);
        assert_eq!(seq, *expected, "{what}: {doc} skips a seq");
        *expected += 1;
    }
}

/// One reader loop; returns how many times it ran.
fn reader(kind: &'static str, root: PathBuf, scratch: PathBuf, stop: Arc<AtomicBool>) -> usize {
    let mut runs = 0;
    let mut last_seq: BTreeMap<&str, u64> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) && runs < 5_000 {
        let doc = DOCS[runs % DOCS.len()];
        match kind {
            "get" => {
                let out = run_plain(&root, &["get", doc]);
                assert_eq!(out.status.code(), Some(0), "get: {out:?}");
                let state: Value = serde_json::from_slice(&out.stdout)
                    .unwrap_or_else(|e| panic!("get printed {:?}: {e}", text(&out.stdout)));
                let seq = state["seq"].as_u64().unwrap();
                let previous = last_seq.insert(doc, seq).unwrap_or(0);
                assert!(
                    seq >= previous,
                    "get: {doc} went back from {previous} to {seq}"
                );
            }
            "log" => {
                let out = run_plain(&root, &["log", doc]);
                assert_eq!(out.status.code(), Some(0), "log: {out:?}");
                check_lines("log", &out.stdout);
            }
            "verify" => {
                let out = run_plain(&root, &["verify", "--json"]);
                assert_eq!(out.status.code(), Some(0), "verify: {out:?}");
                let report: Value = serde_json::from_slice(&out.stdout).expect("verify JSON");
                assert_eq!(report["ok"], true, "{report}");
                assert_eq!(report["failed"], json!([]), "{report}");
                // An append in progress may show as a torn tail, never as anything else.
                for torn in report["torn_tails"].as_array().unwrap() {
                    assert!(DOCS.contains(&torn["doc"].as_str().unwrap()), "{report}");
                }
            }
            "clone" => {
                let dst = scratch.join(format!("clone{runs}"));
                let out = crate::crash::plain(&root)
                    .arg("clone")
                    .arg(&root)
                    .arg(&dst)
                    .output()
                    .unwrap();
                assert_eq!(out.status.code(), Some(0), "clone: {out:?}");
                let summary: Value = serde_json::from_slice(&out.stdout).expect("clone JSON");
                let verified = run_plain(&dst, &["verify", "--json"]);
                assert_eq!(verified.status.code(), Some(0), "{verified:?}");
                let report: Value = serde_json::from_slice(&verified.stdout).unwrap();
                assert_eq!(report["torn_tails"], json!([]), "{report}");
                assert_eq!(report["digest"], summary["digest"], "{report} {summary}");
                std::fs::remove_dir_all(&dst).unwrap();
            }
            "export" => {
                let out = run_plain(&root, &["export"]);
                assert_eq!(out.status.code(), Some(0), "export: {out:?}");
                check_lines("export", &out.stdout);
            }
            _ => unreachable!(),
        }
        runs += 1;
    }
    runs
}

fn log_lines(root: &Path, doc: &str) -> Vec<String> {
    let out = run_plain(root, &["log", doc]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    text(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn sixteen_writers_and_busy_readers_leave_gapless_verified_streams() {
    let f = TestFolder::new();
    let root = f.path().to_path_buf();
    let scratch = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<(String, u64), String> = BTreeMap::new();
    for doc in DOCS {
        let line = f.ok(&["append", doc, "--data", r#"{"start":true}"#]);
        acked.insert((doc.to_string(), 0), line.trim_end().to_string());
    }

    let started = Instant::now();
    let deadline = started + DURATION;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = ["get", "log", "verify", "clone", "export"]
        .into_iter()
        .map(|kind| {
            let (root, scratch, stop) = (root.clone(), scratch.path().to_path_buf(), stop.clone());
            (
                kind,
                thread::spawn(move || reader(kind, root, scratch, stop)),
            )
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let root = root.clone();
            thread::spawn(move || writer(root, w, deadline))
        })
        .collect();

    let lost = AtomicUsize::new(0);
    let mut writer_panic = None;
    let mut written = Vec::new();
    for handle in writers {
        match handle.join() {
            Ok(w) => {
                lost.fetch_add(w.lost, Ordering::Relaxed);
                written.push(w);
            }
            Err(e) => writer_panic = Some(e),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut reader_runs = Vec::new();
    for (kind, handle) in readers {
        match handle.join() {
            Ok(runs) => reader_runs.push(format!("{kind} {runs}")),
            Err(e) => std::panic::resume_unwind(e),
        }
    }
    if let Some(e) = writer_panic {
        std::panic::resume_unwind(e);
    }

    // Exactly one writer won each seq: no two acknowledgements of one seq.
    for w in &written {
        for (doc, seq, line) in &w.events {
            let earlier = acked.insert((doc.clone(), *seq), line.clone());
            assert!(earlier.is_none(), "{doc} seq {seq} was acknowledged twice");
        }
    }
    // Every stored event was acknowledged to exactly one writer, and the streams have no gap.
    for doc in DOCS {
        let lines = log_lines(&root, doc);
        for (seq, line) in lines.iter().enumerate() {
            let ack = acked
                .get(&(doc.to_string(), seq as u64))
                .unwrap_or_else(|| panic!("{doc} seq {seq} was stored but never acknowledged"));
            assert_eq!(ack, line, "{doc} seq {seq}");
        }
        let count = acked.keys().filter(|(d, _)| d == doc).count();
        assert_eq!(
            count,
            lines.len(),
            "{doc}: an acknowledged event is missing"
        );
    }
    let report = f.json(&["verify", "--json"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["torn_tails"], json!([]), "{report}");
    assert_eq!(report["events"], acked.len() as u64, "{report}");
    let lost = lost.into_inner();
    eprintln!(
        "stress: {} events in {:.1}s, {lost} appends lost to --expect; readers: {}",
        acked.len(),
        started.elapsed().as_secs_f64(),
        reader_runs.join(", ")
    );
    assert!(lost > 0, "the --expect writers never raced");
}
