//! `eventdir apply`: one-way replicas built from export lines, byte-identical to the origin,
//! idempotent, incremental, read-only, and refusing forks, gaps, foreign origins and lines that
//! are not export lines.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};

use crate::append::{append, assert_folder_unchanged, assert_one_line_error, refused};
use crate::clone::*;
use crate::common::*;

/// A replica of `origin` in a fresh temp dir, built by `export | apply`.
fn replica_of(origin: &Path) -> TestFolder {
    let replica = TestFolder {
        dir: tempfile::tempdir().unwrap(),
    };
    export_into_apply(origin, &[], replica.path()).ok();
    replica
}

/// A folder with schema documents as well as documents.
fn origin_with_schema() -> TestFolder {
    let f = populated();
    set_schema(
        &f,
        "order",
        json!({"json_schema": {"type": "object"}, "migration": []}),
    );
    // order:1 was written under no schema: migrated first, so two lines.
    assert_eq!(
        f.ok(&["append", "order:1", "--set", "qty=5"])
            .lines()
            .count(),
        2
    );
    f
}

/// The export lines of DIR whose (doc, seq) pass `keep`, as bytes.
fn export_lines_where(dir: &Path, keep: &dyn Fn(&str, u64) -> bool) -> Vec<u8> {
    let out = command_in(dir, &["export"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut kept = Vec::new();
    for line in text.split_inclusive('\n') {
        let event: Value = serde_json::from_str(line).unwrap();
        let (doc, seq) = key(&event);
        if keep(&doc, seq) {
            kept.extend_from_slice(line.as_bytes());
        }
    }
    kept
}

/// Asserts apply was refused with `code` and left DIR unchanged.
fn assert_apply_refused(dir: &Path, input: &[u8], code: i32) -> String {
    let before = snapshot_tree(dir);
    let (got, stdout, stderr) = apply_input(dir, input);
    assert_eq!(
        got, code,
        "expected exit {code}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(stdout, "");
    assert_one_line_error(&stderr);
    assert_folder_unchanged(&before, &snapshot_tree(dir), &"apply");
    stderr
}

#[test]
fn export_into_apply_builds_a_replica_with_identical_stream_files_and_the_digest_of_a_clone() {
    let origin = origin_with_schema();
    let tmp = tempfile::tempdir().unwrap();
    let replica = tmp.path().join("replica");
    let pipeline = export_into_apply(origin.path(), &[], &replica);
    let summary = pipeline.ok();
    let events = stored_keys(origin.path()).len() as u64;
    assert_eq!(
        summary,
        json!({"applied": events, "skipped": 0, "refused": []})
    );
    assert_eq!(pipeline.exported_events().len() as u64, events);
    assert_eq!(stream_files(&replica), stream_files(origin.path()));
    let origin_digest = digest(origin.path());
    assert_eq!(digest(&replica), origin_digest);
    let copy = tmp.path().join("clone");
    let cloned = clone_ok(origin.path(), &copy);
    assert_eq!(cloned["digest"], origin_digest);
    assert_eq!(digest(&copy), origin_digest);
    // The replica reads like the origin.
    for doc in ["order:1", "order:2", "customer:Ann", "sys:schema:order"] {
        let got: Value =
            serde_json::from_slice(&command_in(&replica, &["get", doc]).output().unwrap().stdout)
                .unwrap();
        assert_eq!(got, origin.json(&["get", doc]), "{doc}");
    }
}

#[test]
fn the_replica_manifest_names_the_origin_folder_in_replica_of() {
    let origin = populated();
    let replica = replica_of(origin.path());
    let manifest = manifest(replica.path());
    assert_eq!(manifest["replica_of"], folder_id(origin.path()));
    assert_eq!(manifest["format"], "eventdir");
    assert_eq!(manifest["version"], 1);
    let id = manifest["folder_id"].as_str().unwrap();
    assert_ne!(id, folder_id(origin.path()), "a replica has its own id");
    assert_eq!(id.len(), 36);
    assert!(manifest["created"].is_string());
    assert!(manifest["max_event_bytes"].is_u64());
}

#[test]
fn reapplying_the_same_export_skips_everything_and_changes_nothing() {
    let origin = populated();
    let tmp = tempfile::tempdir().unwrap();
    let replica = tmp.path().join("replica");
    let exported = export_into_apply(origin.path(), &[], &replica);
    exported.ok();
    let events = stored_keys(origin.path()).len() as u64;
    let before = snapshot_tree(&replica);
    let (code, stdout, stderr) = apply_input(&replica, &exported.exported);
    assert_eq!(code, 0, "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        summary,
        json!({"applied": 0, "skipped": events, "refused": []})
    );
    assert_folder_unchanged(&before, &snapshot_tree(&replica), &"re-apply");
    // Through a pipe again, too.
    let again = export_into_apply(origin.path(), &[], &replica).ok();
    assert_eq!(again["applied"], 0);
    assert_eq!(again["skipped"], events);
    assert_folder_unchanged(&before, &snapshot_tree(&replica), &"re-apply");
}

#[test]
fn an_empty_input_creates_no_replica_and_reports_nothing_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let replica = tmp.path().join("replica");
    let (code, stdout, stderr) = apply_input(&replica, b"");
    assert_eq!(code, 0, "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary, json!({"applied": 0, "skipped": 0, "refused": []}));
}

#[test]
fn an_incremental_export_applies_only_the_new_events() {
    let origin = populated();
    let tmp = tempfile::tempdir().unwrap();
    let replica = tmp.path().join("replica");
    let cursor = tmp.path().join("ship.cursor");
    let cursor_arg = cursor.to_str().unwrap();
    let first = export_into_apply(origin.path(), &["--cursor", cursor_arg], &replica).ok();
    assert_eq!(first["applied"], stored_keys(origin.path()).len() as u64);
    append(&origin, &["order:1", "--set", "status=shipped"]);
    append(&origin, &["order:10", "--data", r#"{"qty":10}"#]);
    append(&origin, &["order:10", "--set", "qty=11"]);
    let second = export_into_apply(origin.path(), &["--cursor", cursor_arg], &replica);
    let summary = second.ok();
    assert_eq!(summary, json!({"applied": 3, "skipped": 0, "refused": []}));
    assert_eq!(second.exported_events().len(), 3);
    assert_eq!(stream_files(&replica), stream_files(origin.path()));
    assert_eq!(digest(&replica), digest(origin.path()));
    let third = export_into_apply(origin.path(), &["--cursor", cursor_arg], &replica);
    assert_eq!(
        third.ok(),
        json!({"applied": 0, "skipped": 0, "refused": []})
    );
    assert!(third.exported.is_empty());
}

#[test]
fn append_to_a_replica_is_refused_with_exit_2_and_writes_nothing() {
    let origin = populated();
    let replica = replica_of(origin.path());
    let stderr = refused(&replica, &["append", "order:1", "--set", "qty=99"], 2);
    assert!(stderr.contains("replica"), "{stderr}");
    refused(&replica, &["append", "order:77", "--data", "{}"], 2);
    refused(&replica, &["append", "order:2", "--type", "delete"], 2);
}

#[test]
fn apply_into_a_folder_that_is_not_a_replica_is_refused_with_exit_2() {
    let origin = populated();
    let input = command_in(origin.path(), &["export"])
        .output()
        .unwrap()
        .stdout;
    let other = TestFolder::new();
    assert_apply_refused(other.path(), &input, 2);
    // Not even into a clone of the origin.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("clone");
    clone_ok(origin.path(), &copy);
    assert_apply_refused(&copy, &input, 2);
}

// ---------------------------------------------------------------------------------------------
// Forks, gaps and bad input
// ---------------------------------------------------------------------------------------------

/// An origin A, a replica R of A, and B: a clone of A (same folder id, so its exports carry
/// A's origin) whose `a:fork` stream holds different events than A's from seq 1 on.
struct Forked {
    a: TestFolder,
    _tmp: tempfile::TempDir,
    b: std::path::PathBuf,
    replica: TestFolder,
}

fn forked() -> Forked {
    let a = TestFolder::new();
    append(&a, &["a:fork", "--data", r#"{"v":"common"}"#]);
    append(&a, &["b:ok", "--data", r#"{"n":0}"#]);
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("b");
    clone_ok(a.path(), &b);
    append(&a, &["a:fork", "--set", "v=from-a"]);
    let replica = replica_of(a.path());
    append_in(&b, &["a:fork", "--set", "v=from-b"]);
    append_in(&b, &["a:fork", "--set", "w=also-from-b"]);
    append_in(&b, &["b:ok", "--set", "n=1"]);
    append_in(&b, &["c:new", "--data", r#"{"n":2}"#]);
    assert_eq!(folder_id(&b), folder_id(a.path()));
    Forked {
        a,
        _tmp: tmp,
        b,
        replica,
    }
}

#[test]
fn a_forked_stream_is_refused_with_exit_4_and_nothing_of_it_is_written_while_other_streams_apply() {
    let Forked {
        a,
        b,
        replica,
        _tmp,
    } = forked();
    let fork_file = stream_path(replica.path(), "a:fork");
    let fork_before = std::fs::read(&fork_file).unwrap();
    assert_eq!(
        fork_before,
        std::fs::read(stream_path(a.path(), "a:fork")).unwrap()
    );

    let pipeline = export_into_apply(&b, &[], replica.path());
    assert!(pipeline.export_status.success());
    assert_eq!(
        pipeline.apply.status.code(),
        Some(4),
        "stderr: {}",
        String::from_utf8_lossy(&pipeline.apply.stderr)
    );
    let summary = pipeline.summary();
    assert_eq!(summary["applied"], 2, "{summary}");
    assert_eq!(summary["skipped"], 2, "{summary}");
    let refused = summary["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{summary}");
    assert_eq!(refused[0]["doc"], "a:fork");
    assert!(
        refused[0]["reason"].as_str().unwrap().contains("fork"),
        "{summary}"
    );
    let stderr = String::from_utf8_lossy(&pipeline.apply.stderr);
    assert!(stderr.contains("a:fork"), "{stderr}");
    // The forked stream is as it was; the others took B's events.
    assert_eq!(std::fs::read(&fork_file).unwrap(), fork_before);
    for doc in ["b:ok", "c:new"] {
        assert_eq!(
            std::fs::read(stream_path(replica.path(), doc)).unwrap(),
            std::fs::read(stream_path(&b, doc)).unwrap(),
            "{doc}"
        );
    }
    verify_report(replica.path());
}

#[test]
fn a_next_event_that_does_not_continue_the_replicas_chain_is_refused_as_a_fork_with_exit_4() {
    let Forked {
        b, replica, _tmp, ..
    } = forked();
    // B's seq 2 of a:fork is the replica's next seq, but it chains from B's seq 1, not A's.
    let input = export_lines_where(&b, &|doc, seq| doc == "a:fork" && seq == 2);
    assert_eq!(input.iter().filter(|&&c| c == b'\n').count(), 1);
    let before = snapshot_tree(replica.path());
    let (code, stdout, stderr) = apply_input(replica.path(), &input);
    assert_eq!(code, 4, "stdout: {stdout}\nstderr: {stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["applied"], 0);
    assert_eq!(summary["refused"][0]["doc"], "a:fork");
    assert!(
        summary["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("fork"),
        "{summary}"
    );
    assert_folder_unchanged(&before, &snapshot_tree(replica.path()), &"fork");
}

#[test]
fn a_gap_in_the_input_is_refused_with_exit_4_and_the_stream_gets_nothing_past_it() {
    let origin = TestFolder::new();
    for doc in ["w:1", "x:1", "y:1"] {
        append(&origin, &[doc, "--data", r#"{"n":0}"#]);
        append(&origin, &[doc, "--set", "n=1"]);
        append(&origin, &[doc, "--set", "n=2"]);
    }
    // Leave out x:1 seq 1 and w:1 seq 0.
    let input = export_lines_where(origin.path(), &|doc, seq| {
        !(doc == "x:1" && seq == 1 || doc == "w:1" && seq == 0)
    });
    let tmp = tempfile::tempdir().unwrap();
    let replica = tmp.path().join("replica");
    let (code, stdout, stderr) = apply_input(&replica, &input);
    assert_eq!(code, 4, "stdout: {stdout}\nstderr: {stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    let mut refused: Vec<&str> = summary["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["doc"].as_str().unwrap())
        .collect();
    refused.sort();
    assert_eq!(refused, ["w:1", "x:1"], "{summary}");
    for r in summary["refused"].as_array().unwrap() {
        assert!(r["reason"].as_str().unwrap().contains("gap"), "{summary}");
    }
    // y:1 applied in full; w:1 got nothing; x:1 nothing past the gap.
    assert_eq!(
        std::fs::read(stream_path(&replica, "y:1")).unwrap(),
        std::fs::read(stream_path(origin.path(), "y:1")).unwrap()
    );
    let w = std::fs::read(stream_path(&replica, "w:1")).unwrap_or_default();
    assert!(w.is_empty(), "w:1 got {}", String::from_utf8_lossy(&w));
    let x = std::fs::read(stream_path(&replica, "x:1")).unwrap_or_default();
    let x_origin = std::fs::read(stream_path(origin.path(), "x:1")).unwrap();
    let first_line = x_origin.iter().position(|&c| c == b'\n').unwrap() + 1;
    assert!(
        x.is_empty() || x == x_origin[..first_line],
        "x:1 got {}",
        String::from_utf8_lossy(&x)
    );
    verify_report(&replica);
    // Sending the whole export again repairs the replica.
    let full = command_in(origin.path(), &["export"])
        .output()
        .unwrap()
        .stdout;
    let (code, _, stderr) = apply_input(&replica, &full);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stream_files(&replica), stream_files(origin.path()));
    assert_eq!(digest(&replica), digest(origin.path()));
}

#[test]
fn a_line_that_is_not_an_export_line_is_refused_with_exit_2() {
    let origin = populated();
    let replica = replica_of(origin.path());
    let id = folder_id(origin.path());
    append(&origin, &["order:1", "--set", "qty=30"]);
    let stored = std::fs::read_to_string(origin.stream_file("order:1")).unwrap();
    let stored_last = stored.lines().last().unwrap().to_string();
    let bad_inputs: Vec<String> = vec![
        // A stored line: no origin.
        format!("{stored_last}\n"),
        "not json at all\n".to_string(),
        "\n".to_string(),
        format!("{{\"origin\":\"{id}\"}}\n"),
        format!("{{\"origin\":\"{id}\",\"seq\":\"three\",\"doc\":\"order:1\"}}\n"),
        format!("{{\"origin\":\"not-a-uuid\",{}\n", &stored_last[1..]),
        format!("{{\"origin\":\"{id}\",\"seq\":3,\"doc\":\"no-colon\"}}\n"),
    ];
    for input in &bad_inputs {
        assert_apply_refused(replica.path(), input.as_bytes(), 2);
    }
    // Nothing is created for a missing replica either.
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("replica");
    let (code, stdout, _) = apply_input(&missing, bad_inputs[0].as_bytes());
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert!(
        !missing.exists(),
        "a replica was created for a refused input"
    );
}

#[test]
fn input_that_ends_inside_a_line_is_refused_with_exit_2_and_not_applied() {
    let origin = populated();
    let replica = replica_of(origin.path());
    append(&origin, &["order:1", "--set", "qty=31"]);
    let input = export_lines_where(origin.path(), &|doc, seq| doc == "order:1" && seq == 3);
    let torn = &input[..input.len() - 1];
    assert_apply_refused(replica.path(), torn, 2);
}

#[test]
fn a_stream_from_a_different_origin_is_refused_with_exit_2() {
    let origin = populated();
    let replica = replica_of(origin.path());
    let other = TestFolder::new();
    append(&other, &["order:50", "--data", "{}"]);
    append(&other, &["order:1", "--data", "{}"]);
    let input = command_in(other.path(), &["export"])
        .output()
        .unwrap()
        .stdout;
    let stderr = assert_apply_refused(replica.path(), &input, 2);
    assert!(stderr.contains(&folder_id(other.path())), "{stderr}");
}

#[test]
fn apply_fed_by_tail_follow_applies_events_as_they_arrive() {
    let origin = populated();
    let tmp = tempfile::tempdir().unwrap();
    let replica = tmp.path().join("replica");
    let cursor = tmp.path().join("ship.cursor");
    let cursor_arg = cursor.to_str().unwrap();
    export_into_apply(origin.path(), &["--cursor", cursor_arg], &replica).ok();
    // tail --follow --from-cursor CURSOR | apply REPLICA
    let mut tail = command_in(
        origin.path(),
        &["tail", "--follow", "--from-cursor", cursor_arg],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let apply = command()
        .arg("apply")
        .arg(&replica)
        .stdin(std::process::Stdio::from(tail.stdout.take().unwrap()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    append(&origin, &["order:1", "--set", "status=shipped"]);
    append(&origin, &["order:11", "--data", r#"{"qty":11}"#]);
    // The replica catches up while tail and apply keep running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while stream_files(&replica) != stream_files(origin.path()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica did not catch up while tail ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    append(&origin, &["order:11", "--set", "qty=12"]);
    while stream_files(&replica) != stream_files(origin.path()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica fell behind"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = crate::tail::signal_and_wait(&mut tail, "TERM");
    assert_eq!(status.code(), Some(0));
    let out = apply.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary, json!({"applied": 3, "skipped": 0, "refused": []}));
    assert_eq!(digest(&replica), digest(origin.path()));
}

#[test]
fn a_replica_of_many_documents_is_byte_identical_and_takes_their_growth() {
    let origin = TestFolder::new();
    let batch = |lines: String| {
        origin
            .cmd()
            .args(["append", "--batch"])
            .write_stdin(lines)
            .assert()
            .success();
    };
    // More streams in one batch than apply fsyncs one by one.
    batch(
        (0..40)
            .map(|i| format!("{{\"doc\":\"item:{i}\",\"data\":{{\"n\":{i}}}}}\n"))
            .collect(),
    );
    let replica = replica_of(origin.path());
    assert_eq!(stream_files(replica.path()), stream_files(origin.path()));

    batch(
        (0..40)
            .map(|i| format!("{{\"doc\":\"item:{i}\",\"data\":[{{\"op\":\"replace\",\"path\":\"/n\",\"value\":{}}}]}}\n", i + 100))
            .collect(),
    );
    let summary = export_into_apply(origin.path(), &[], replica.path()).ok();
    assert_eq!(
        summary,
        json!({"applied": 40, "skipped": 40, "refused": []})
    );
    assert_eq!(stream_files(replica.path()), stream_files(origin.path()));
    assert_eq!(digest(replica.path()), digest(origin.path()));
}

#[test]
fn a_line_that_starts_like_an_event_but_is_not_one_is_refused_with_exit_2_naming_it() {
    let origin = populated();
    let replica = replica_of(origin.path());
    let id = folder_id(origin.path());
    let prefix = format!("{{\"origin\":\"{id}\",\"seq\":3,\"doc\":\"order:1\"");
    for input in [
        format!("{prefix},\"type\":\n"),
        format!("{prefix},\"seq\":4}}\n"),
        format!("{prefix},\"type\":\"update\"}}}}\n"),
    ] {
        let stderr = assert_apply_refused(replica.path(), input.as_bytes(), 2);
        assert!(stderr.contains("stdin line 1"), "{stderr}");
    }
    // The first bad line is named, though a later one is bad in another way.
    let input = format!("{prefix},\"type\":\nnot json at all\n");
    let stderr = assert_apply_refused(replica.path(), input.as_bytes(), 2);
    assert!(stderr.contains("stdin line 1"), "{stderr}");
}

#[test]
fn an_export_longer_than_a_batch_builds_a_byte_identical_replica() {
    let origin = TestFolder::new();
    // 12 000 lines over 12 streams: more than one batch of 10 000 lines, each of them
    // synced while the next is checked.
    let requests: String = (0..12_000)
        .map(|i| {
            let doc = i % 12;
            if i < 12 {
                format!("{{\"doc\":\"item:{doc}\",\"data\":{{\"n\":{i}}}}}\n")
            } else {
                format!("{{\"doc\":\"item:{doc}\",\"set\":{{\"n\":{i}}}}}\n")
            }
        })
        .collect();
    origin
        .cmd()
        .args(["append", "--batch"])
        .write_stdin(requests)
        .assert()
        .success();
    let tmp = tempfile::tempdir().unwrap();
    let replica = tmp.path().join("replica");
    let summary = export_into_apply(origin.path(), &[], &replica).ok();
    assert_eq!(
        summary,
        json!({"applied": 12_000, "skipped": 0, "refused": []})
    );
    assert_eq!(stream_files(&replica), stream_files(origin.path()));
    assert_eq!(digest(&replica), digest(origin.path()));
}

#[test]
fn an_apply_killed_at_any_moment_leaves_a_replica_that_verifies_and_a_rerun_completes() {
    let origin = schema_stamped_origin();
    let origin_digest = digest(origin.path());
    let out = command_in(origin.path(), &["export"]).output().unwrap();
    assert!(out.status.success());
    let export = std::sync::Arc::new(out.stdout);
    let tmp = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (code, _, stderr) = apply_input(&tmp.path().join("timed"), &export);
    assert_eq!(code, 0, "{stderr}");
    let whole = started.elapsed();

    // Kills spread over a whole apply's time: some before the replica exists, some halfway.
    let (mut halfway, rounds) = (0, 16);
    let origin_streams = stream_files(origin.path()).len();
    for k in 1..=rounds {
        let replica = tmp.path().join(format!("killed-{k}"));
        let mut child = command()
            .arg("apply")
            .arg(&replica)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn apply");
        let mut stdin = child.stdin.take().unwrap();
        let input = std::sync::Arc::clone(&export);
        // A write fails once apply is killed, which ends the feeding.
        let feeder = std::thread::spawn(move || stdin.write_all(&input).is_ok());
        std::thread::sleep(whole.mul_f64(k as f64 / rounds as f64));
        let _ = child.kill();
        child.wait().expect("wait for apply");
        feeder.join().expect("feeding thread");
        if replica.join("eventdir.json").exists() {
            let copied = stream_files(&replica).len();
            halfway += usize::from(copied > 0 && copied < origin_streams);
            // Every stamp of an applied document resolves and every chain holds, torn tails
            // at most.
            verify_report(&replica);
        }
        // Sending everything again completes the replica, whatever the kill left.
        let (code, stdout, stderr) = apply_input(&replica, &export);
        assert_eq!(code, 0, "kill {k}: the re-run failed\n{stdout}\n{stderr}");
        let report = verify_report(&replica);
        assert_eq!(
            report["digest"],
            origin_digest.as_str(),
            "kill {k}: {report}"
        );
        assert_eq!(report["torn_tails"], json!([]), "kill {k}: {report}");
        assert_eq!(
            stream_files(&replica),
            stream_files(origin.path()),
            "kill {k}"
        );
    }
    assert!(
        halfway > 0,
        "no kill landed while streams were being applied"
    );
}
