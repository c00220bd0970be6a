//! `eventdir clone`: a whole-folder copy that verifies with the source's digest, is
//! incremental, refuses a destination that diverged or is something else without touching it,
//! and stays consistent while writers go on. The helpers here are shared with the export,
//! tail, apply and replication modules.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::append::{append, assert_folder_unchanged, assert_one_line_error};
use crate::common::*;

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// The binary, for plain `std::process::Command` (pipes, spawning from threads).
pub fn binary() -> PathBuf {
    assert_cmd::cargo::cargo_bin("eventdir")
}

/// `eventdir` as a plain `std::process::Command`, with a clean environment.
pub fn command() -> Command {
    let mut cmd = Command::new(binary());
    cmd.env_remove("EVENTDIR_FOLDER");
    cmd
}

/// `eventdir -C DIR ARGS...` as a plain `std::process::Command`.
pub fn command_in(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = command();
    cmd.arg("-C").arg(dir).args(args);
    cmd
}

/// Runs `eventdir ARGS...` (no -C) and returns (exit code, stdout, stderr).
pub fn run_plain(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String, String) {
    let mut cmd = command();
    for arg in args {
        cmd.arg(arg);
    }
    let out = cmd.output().expect("run eventdir");
    (
        out.status.code().expect("exited normally"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `verify --json` in DIR, asserted to pass; returns the report.
pub fn verify_report(dir: &Path) -> Value {
    let out = command_in(dir, &["verify", "--json"])
        .output()
        .expect("run verify");
    assert!(
        out.status.success(),
        "verify in {} failed with {:?}\nstdout: {}\nstderr: {}",
        dir.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("verify prints JSON");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["failed"], json!([]), "{report}");
    report
}

/// The folder digest `verify --json` reports for DIR (verification must pass).
pub fn digest(dir: &Path) -> String {
    verify_report(dir)["digest"]
        .as_str()
        .expect("digest is a string")
        .to_string()
}

/// Every file and directory under DIR/streams with its bytes.
pub fn streams_tree(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    snapshot_tree(&dir.join("streams"))
}

/// Only the stream files under DIR/streams (relative paths) with their bytes.
pub fn stream_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    streams_tree(dir)
        .into_iter()
        .filter_map(|(path, bytes)| bytes.map(|b| (path, b)))
        .collect()
}

/// The stream file of `doc` under DIR.
pub fn stream_path(dir: &Path, doc: &str) -> PathBuf {
    dir.join("streams")
        .join(eventdir::DocId::parse(doc).unwrap().relative_path())
}

/// The folder id in DIR's manifest.
pub fn folder_id(dir: &Path) -> String {
    manifest(dir)["folder_id"].as_str().unwrap().to_string()
}

/// DIR's manifest, parsed.
pub fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("eventdir.json")).expect("read manifest"))
        .expect("manifest is JSON")
}

/// Runs `eventdir clone SRC DST` and returns (exit code, stdout, stderr).
pub fn run_clone(src: &Path, dst: &Path) -> (i32, String, String) {
    run_plain(&[&"clone", &src, &dst])
}

/// Runs `eventdir clone SRC DST`, asserts success, and returns the summary.
pub fn clone_ok(src: &Path, dst: &Path) -> Value {
    let (code, stdout, stderr) = run_clone(src, dst);
    assert_eq!(code, 0, "clone failed\nstdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.ends_with('\n') && stdout.lines().count() == 1,
        "{stdout:?}"
    );
    serde_json::from_str(&stdout).expect("the summary is JSON")
}

/// What one `eventdir -C SRC export ARGS | eventdir apply REPLICA` pipeline did.
pub struct Pipeline {
    /// Everything export wrote (it went through the pipe into apply).
    pub exported: Vec<u8>,
    pub export_status: ExitStatus,
    pub export_stderr: String,
    pub apply: Output,
}

impl Pipeline {
    /// Asserts both processes succeeded and returns apply's summary.
    pub fn ok(&self) -> Value {
        assert!(
            self.export_status.success(),
            "export failed with {:?}: {}",
            self.export_status.code(),
            self.export_stderr
        );
        assert!(
            self.apply.status.success(),
            "apply failed with {:?}\nstdout: {}\nstderr: {}",
            self.apply.status.code(),
            String::from_utf8_lossy(&self.apply.stdout),
            String::from_utf8_lossy(&self.apply.stderr)
        );
        self.summary()
    }

    /// apply's summary line.
    pub fn summary(&self) -> Value {
        serde_json::from_slice(&self.apply.stdout).expect("apply prints one JSON summary")
    }

    /// The exported lines, parsed.
    pub fn exported_events(&self) -> Vec<Value> {
        parse_lines(&self.exported)
    }
}

/// Runs `eventdir -C SRC export EXPORT_ARGS | eventdir apply REPLICA` through a real pipe,
/// keeping a copy of what went through it.
pub fn export_into_apply(src: &Path, export_args: &[&str], replica: &Path) -> Pipeline {
    let mut all = vec!["export"];
    all.extend_from_slice(export_args);
    let mut export = command_in(src, &all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn export");
    let mut apply = command()
        .arg("apply")
        .arg(replica)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn apply");
    let mut from = export.stdout.take().unwrap();
    let mut to = apply.stdin.take();
    let tee = thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buffer).expect("read export's stdout");
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buffer[..n]);
            if let Some(pipe) = &mut to
                && pipe.write_all(&buffer[..n]).is_err()
            {
                to = None;
            }
        }
        drop(to);
        seen
    });
    let export_out = export.wait_with_output().expect("wait for export");
    let exported = tee.join().expect("tee thread");
    let apply = apply.wait_with_output().expect("wait for apply");
    Pipeline {
        exported,
        export_status: export_out.status,
        export_stderr: String::from_utf8_lossy(&export_out.stderr).into_owned(),
        apply,
    }
}

/// Runs `eventdir apply REPLICA` with `input` on stdin; returns (exit code, stdout, stderr).
pub fn apply_input(replica: &Path, input: &[u8]) -> (i32, String, String) {
    let out = eventdir()
        .arg("apply")
        .arg(replica)
        .write_stdin(input.to_vec())
        .output()
        .expect("run apply");
    (
        out.status.code().expect("exited normally"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// NDJSON bytes, parsed line by line (every line must be complete).
pub fn parse_lines(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "output ends inside a line"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// (doc, seq) of an event or export line.
pub fn key(event: &Value) -> (String, u64) {
    (
        event["doc"].as_str().expect("doc").to_string(),
        event["seq"].as_u64().expect("seq"),
    )
}

/// Every (doc, seq) stored in DIR, read from the stream files.
pub fn stored_keys(dir: &Path) -> Vec<(String, u64)> {
    let mut keys = Vec::new();
    for bytes in stream_files(dir).values() {
        keys.extend(parse_lines(bytes).iter().map(key));
    }
    keys.sort();
    keys
}

/// Appends an event to DIR with a plain process, asserting success; returns the event.
pub fn append_in(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["append"];
    all.extend_from_slice(args);
    let out = command_in(dir, &all).output().expect("run append");
    assert!(
        out.status.success(),
        "append {args:?} failed with {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("append prints the event")
}

/// A folder with a few documents of two types, a deleted one and a non-ASCII id.
pub fn populated() -> TestFolder {
    let f = TestFolder::new();
    append(&f, &["order:1", "--data", r#"{"status":"open","qty":1}"#]);
    append(&f, &["order:1", "--set", "status=paid"]);
    append(&f, &["order:1", "--set", "qty=3"]);
    append(&f, &["order:2", "--data", r#"{"status":"open","qty":5}"#]);
    append(&f, &["order:2", "--type", "delete"]);
    append(
        &f,
        &["customer:Ann", "--data", r#"{"name":"Ann Ö","vip":true}"#],
    );
    append(&f, &["customer:Ann", "--set", "vip=false"]);
    append(
        &f,
        &[
            "customer:Bob:Smith",
            "--data",
            r#"{"name":"Bob","note":"a \"quoted\" line\n"}"#,
        ],
    );
    f
}

/// A folder of 600 documents of five events each, in two types with schemas, so that every
/// document event is stamped with a schema version: enough streams for a kill to land while a
/// copy of it is being made.
pub fn schema_stamped_origin() -> TestFolder {
    let src = TestFolder::new();
    for kind in ["order", "customer"] {
        set_schema(&src, kind, json!({"json_schema": {"type": "object"}}));
    }
    let mut requests = String::new();
    for i in 0..300 {
        for kind in ["order", "customer"] {
            requests.push_str(&format!(
                "{}\n",
                json!({"doc": format!("{kind}:{i}"), "data": {"i": i, "note": "n".repeat(200)}})
            ));
            for n in 0..4 {
                requests.push_str(&format!(
                    "{}\n",
                    json!({"doc": format!("{kind}:{i}"), "type": "update",
                        "data": [{"op": "replace", "path": "/i", "value": n}]})
                ));
            }
        }
    }
    src.batch_ok(&requests);
    src
}

/// Asserts that two folders hold byte-identical streams/ trees and manifests.
pub fn assert_same_streams_and_manifest(a: &Path, b: &Path) {
    assert_eq!(
        stream_files(a),
        stream_files(b),
        "stream files differ between {} and {}",
        a.display(),
        b.display()
    );
    assert_eq!(
        std::fs::read(a.join("eventdir.json")).unwrap(),
        std::fs::read(b.join("eventdir.json")).unwrap(),
        "manifests differ"
    );
}

/// Asserts a refused command left a one-line error and DST byte-for-byte unchanged.
fn assert_refused_unchanged(
    dst: &Path,
    before: &BTreeMap<PathBuf, Option<Vec<u8>>>,
    result: (i32, String, String),
    code: i32,
) -> String {
    let (got, stdout, stderr) = result;
    assert_eq!(
        got, code,
        "expected exit {code}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(stdout, "", "a refused clone printed a summary");
    assert_one_line_error(&stderr);
    assert_folder_unchanged(before, &snapshot_tree(dst), &"clone");
    stderr
}

// ---------------------------------------------------------------------------------------------
// Full and incremental clones
// ---------------------------------------------------------------------------------------------

#[test]
fn full_clone_verifies_with_the_source_digest_and_identical_stream_files_and_manifest() {
    let src = populated();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("copy");
    let summary = clone_ok(src.path(), &dst);
    let source_digest = digest(src.path());
    assert_eq!(digest(&dst), source_digest);
    assert_eq!(summary["digest"], source_digest);
    assert_same_streams_and_manifest(src.path(), &dst);
    // The clone is a folder of its own: the same documents, the same states.
    assert_eq!(
        command_in(&dst, &["ls"]).output().unwrap().stdout,
        src.cmd().arg("ls").output().unwrap().stdout
    );
    for doc in ["order:1", "order:2", "customer:Ann", "customer:Bob:Smith"] {
        let out = command_in(&dst, &["get", doc]).output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            serde_json::from_slice::<Value>(&out.stdout).unwrap(),
            src.json(&["get", doc])
        );
    }
}

#[test]
fn full_clone_into_an_existing_empty_directory_succeeds() {
    let src = populated();
    let dst = tempfile::tempdir().unwrap();
    clone_ok(src.path(), dst.path());
    assert_same_streams_and_manifest(src.path(), dst.path());
    assert_eq!(digest(dst.path()), digest(src.path()));
}

#[test]
fn clone_summary_reports_digest_streams_events_bytes_copied_and_seconds() {
    let src = populated();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("copy");
    let summary = clone_ok(src.path(), &dst);
    let mut names: Vec<&str> = summary
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bytes",
            "copied_bytes",
            "copied_events",
            "copied_streams",
            "digest",
            "events",
            "seconds",
            "streams"
        ]
    );
    let files = stream_files(src.path());
    let bytes: u64 = files.values().map(|b| b.len() as u64).sum();
    let events = stored_keys(src.path()).len() as u64;
    assert_eq!(summary["streams"], files.len() as u64);
    assert_eq!(summary["streams"], 4);
    assert_eq!(summary["events"], events);
    assert_eq!(summary["events"], 8);
    assert_eq!(summary["bytes"], bytes);
    assert_eq!(summary["copied_streams"], summary["streams"]);
    assert_eq!(summary["copied_events"], summary["events"]);
    assert_eq!(summary["copied_bytes"], summary["bytes"]);
    let seconds = summary["seconds"].as_f64().expect("seconds is a number");
    assert!((0.0..60.0).contains(&seconds), "{seconds}");
    let digest = summary["digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64);
    assert!(
        digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    let report = verify_report(&dst);
    assert_eq!(report["digest"], summary["digest"]);
    assert_eq!(report["streams"], summary["streams"]);
    assert_eq!(report["events"], summary["events"]);
}

#[test]
fn clone_of_a_folder_without_events_is_an_empty_folder_with_the_empty_digest() {
    let src = TestFolder::new();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("copy");
    let summary = clone_ok(src.path(), &dst);
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_eq!(summary["digest"], empty);
    assert_eq!(summary["streams"], 0);
    assert_eq!(summary["events"], 0);
    assert_eq!(digest(&dst), empty);
    assert_eq!(folder_id(&dst), folder_id(src.path()));
}

#[test]
fn incremental_reclone_after_new_appends_copies_only_the_new_events_and_matches_again() {
    let src = populated();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("copy");
    let first = clone_ok(src.path(), &dst);
    let sizes_before: BTreeMap<PathBuf, u64> = stream_files(src.path())
        .into_iter()
        .map(|(p, b)| (p, b.len() as u64))
        .collect();
    // Two new events in one stream, one in another, and a new stream with two.
    append(&src, &["order:1", "--set", "status=shipped"]);
    append(&src, &["order:1", "--set", "qty=4"]);
    append(&src, &["customer:Ann", "--set", "vip=true"]);
    append(&src, &["order:3", "--data", r#"{"status":"open","qty":9}"#]);
    append(&src, &["order:3", "--set", "qty=10"]);
    let files_after = stream_files(src.path());
    let grown: u64 = files_after
        .iter()
        .map(|(p, b)| b.len() as u64 - sizes_before.get(p).copied().unwrap_or(0))
        .sum();

    let second = clone_ok(src.path(), &dst);
    assert_eq!(second["copied_events"], 5);
    assert_eq!(second["copied_streams"], 3);
    assert_eq!(second["copied_bytes"], grown);
    assert_eq!(second["streams"], 5);
    assert_eq!(second["events"], first["events"].as_u64().unwrap() + 5);
    let source_digest = digest(src.path());
    assert_ne!(second["digest"], first["digest"]);
    assert_eq!(second["digest"], source_digest);
    assert_eq!(digest(&dst), source_digest);
    assert_same_streams_and_manifest(src.path(), &dst);
}

/// Planning reads a few KiB of each stream's end: events longer than that, and a stream
/// grown by more than planning keeps for copying, take the longer ways, with the same result.
#[test]
fn incremental_reclone_copies_events_longer_than_the_end_read_and_growth_beyond_it() {
    let src = populated();
    let long = "x".repeat(5000);
    append(&src, &["order:1", "--set", &format!("note={long}")]);
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("copy");
    clone_ok(src.path(), &dst);
    // order:1 ends with a long event on both sides and gains another; customer:Ann gains
    // about 150 KiB of short events.
    append(&src, &["order:1", "--set", &format!("note={long}y")]);
    let pad = "p".repeat(100);
    let requests: String = (0..500)
        .map(|i| format!(r#"{{"doc":"customer:Ann","set":{{"n":{i},"pad":"{pad}"}}}}"#) + "\n")
        .collect();
    src.batch_ok(&requests);
    let second = clone_ok(src.path(), &dst);
    assert_eq!(second["copied_events"], 501);
    assert_eq!(second["copied_streams"], 2);
    assert_eq!(digest(&dst), digest(src.path()));
    assert_same_streams_and_manifest(src.path(), &dst);
}

/// The new bytes of a grown stream are read once, when the clone plans: still every copied
/// line is checked against the chain, and a damaged one leaves the earlier clone as it was.
#[test]
fn incremental_reclone_of_a_damaged_new_event_exits_4_and_leaves_the_clone_unchanged() {
    let src = populated();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("copy");
    clone_ok(src.path(), &dst);
    // Two new events; the first is damaged, the last (which planning reads) is intact.
    append(&src, &["order:1", "--set", "status=shipped"]);
    append(&src, &["order:1", "--set", "qty=4"]);
    let path = src.stream_file("order:1");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("shipped", "shippeX")).unwrap();
    let before = snapshot_tree(&dst);
    let stderr = assert_refused_unchanged(&dst, &before, run_clone(src.path(), &dst), 4);
    assert!(stderr.contains("order:1"), "{stderr}");
}

#[test]
fn reclone_with_nothing_new_copies_nothing_and_changes_nothing() {
    let src = populated();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("copy");
    let first = clone_ok(src.path(), &dst);
    let before = snapshot_tree(&dst);
    let again = clone_ok(src.path(), &dst);
    assert_eq!(again["copied_streams"], 0);
    assert_eq!(again["copied_events"], 0);
    assert_eq!(again["copied_bytes"], 0);
    assert_eq!(again["digest"], first["digest"]);
    assert_eq!(again["streams"], first["streams"]);
    assert_eq!(again["events"], first["events"]);
    assert_eq!(again["bytes"], first["bytes"]);
    assert_folder_unchanged(&before, &snapshot_tree(&dst), &"clone with nothing new");
}

// ---------------------------------------------------------------------------------------------
// Refused destinations
// ---------------------------------------------------------------------------------------------

#[test]
fn clone_onto_a_destination_with_an_event_appended_directly_exits_4_and_leaves_it_unchanged() {
    let src = populated();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("copy");
    clone_ok(src.path(), &dst);
    // The clone gets its own seq 3 of order:1, the source a different seq 3 and seq 4.
    append_in(&dst, &["order:1", "--set", "status=from-the-clone"]);
    append(&src, &["order:1", "--set", "status=from-the-source"]);
    append(&src, &["order:1", "--set", "qty=7"]);
    append(&src, &["order:9", "--data", "{}"]);
    let before = snapshot_tree(&dst);
    let stderr = assert_refused_unchanged(&dst, &before, run_clone(src.path(), &dst), 4);
    assert!(stderr.contains("order:1"), "{stderr}");
}

#[test]
fn clone_onto_a_destination_with_an_equally_long_different_event_exits_4() {
    let src = populated();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("copy");
    clone_ok(src.path(), &dst);
    // Same length, same seq, different bytes: only the hash tells them apart.
    append_in(&dst, &["order:1", "--set", "status=aaaa"]);
    append(&src, &["order:1", "--set", "status=bbbb"]);
    let before = snapshot_tree(&dst);
    let stderr = assert_refused_unchanged(&dst, &before, run_clone(src.path(), &dst), 4);
    assert!(stderr.contains("order:1"), "{stderr}");
}

#[test]
fn clone_onto_a_destination_with_more_events_than_the_source_exits_4_and_leaves_it_unchanged() {
    let src = populated();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("copy");
    clone_ok(src.path(), &dst);
    append_in(&dst, &["customer:Ann", "--set", "vip=true"]);
    append(&src, &["order:1", "--set", "qty=8"]);
    let before = snapshot_tree(&dst);
    let stderr = assert_refused_unchanged(&dst, &before, run_clone(src.path(), &dst), 4);
    assert!(stderr.contains("customer:Ann"), "{stderr}");
}

#[test]
fn clone_onto_a_destination_with_a_stream_only_in_the_destination_exits_4_and_leaves_it_unchanged()
{
    let src = populated();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("copy");
    clone_ok(src.path(), &dst);
    append_in(&dst, &["invoice:1", "--data", r#"{"total":1}"#]);
    append(&src, &["order:1", "--set", "qty=8"]);
    let before = snapshot_tree(&dst);
    let stderr = assert_refused_unchanged(&dst, &before, run_clone(src.path(), &dst), 4);
    assert!(stderr.contains("invoice:1"), "{stderr}");
}

#[test]
fn clone_onto_another_folder_exits_2_and_leaves_it_unchanged() {
    let src = populated();
    let other = TestFolder::new();
    append(&other, &["order:1", "--data", "{}"]);
    let before = other.snapshot();
    assert_refused_unchanged(
        other.path(),
        &before,
        run_clone(src.path(), other.path()),
        2,
    );
    // Even an empty folder of its own is not a clone.
    let empty = TestFolder::new();
    let before = empty.snapshot();
    assert_refused_unchanged(
        empty.path(),
        &before,
        run_clone(src.path(), empty.path()),
        2,
    );
}

#[test]
fn clone_onto_a_replica_of_the_source_exits_2_and_leaves_it_unchanged() {
    let src = populated();
    let tmp = tempfile::tempdir().unwrap();
    let replica = tmp.path().join("replica");
    export_into_apply(src.path(), &[], &replica).ok();
    let before = snapshot_tree(&replica);
    assert_refused_unchanged(&replica, &before, run_clone(src.path(), &replica), 2);
}

#[test]
fn clone_onto_a_non_empty_directory_that_is_not_a_folder_exits_2_and_leaves_it_unchanged() {
    let src = populated();
    let dst = tempfile::tempdir().unwrap();
    std::fs::write(dst.path().join("notes.txt"), b"mine\n").unwrap();
    std::fs::create_dir(dst.path().join("streams")).unwrap();
    let before = snapshot_tree(dst.path());
    assert_refused_unchanged(dst.path(), &before, run_clone(src.path(), dst.path()), 2);
}

// ---------------------------------------------------------------------------------------------
// Interrupted runs, schemas, concurrent writers
// ---------------------------------------------------------------------------------------------

#[test]
fn a_torn_tail_left_in_the_destination_by_an_interrupted_run_is_dropped_by_the_next_clone() {
    let src = populated();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("copy");
    clone_ok(src.path(), &dst);
    append(&src, &["order:1", "--set", "status=shipped"]);
    append(&src, &["order:4", "--data", r#"{"status":"open"}"#]);
    // An interrupted run: half of order:1's new line, and a new stream with half its first.
    let src_order1 = std::fs::read(stream_path(src.path(), "order:1")).unwrap();
    let dst_order1 = stream_path(&dst, "order:1");
    let copied = std::fs::read(&dst_order1).unwrap();
    let new_line = &src_order1[copied.len()..];
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&dst_order1)
        .unwrap();
    file.write_all(&new_line[..new_line.len() / 2]).unwrap();
    drop(file);
    let src_order4 = std::fs::read(stream_path(src.path(), "order:4")).unwrap();
    let dst_order4 = stream_path(&dst, "order:4");
    std::fs::create_dir_all(dst_order4.parent().unwrap()).unwrap();
    std::fs::write(&dst_order4, &src_order4[..src_order4.len() / 3]).unwrap();
    let torn = verify_report(&dst);
    assert_eq!(torn["torn_tails"].as_array().unwrap().len(), 2, "{torn}");

    let summary = clone_ok(src.path(), &dst);
    assert_eq!(summary["copied_events"], 2);
    assert_same_streams_and_manifest(src.path(), &dst);
    let report = verify_report(&dst);
    assert_eq!(report["torn_tails"], json!([]));
    assert_eq!(report["digest"], digest(src.path()));
}

#[test]
fn a_clone_killed_at_any_moment_leaves_a_folder_that_verifies_and_a_rerun_completes() {
    let src = schema_stamped_origin();
    let source_digest = digest(src.path());
    let tmp = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    clone_ok(src.path(), &tmp.path().join("timed"));
    let whole = started.elapsed();

    // Kills spread over a whole clone's time: some before anything is copied, some halfway.
    let (mut halfway, rounds) = (0, 16);
    let source_streams = stream_files(src.path()).len();
    for k in 1..=rounds {
        let dst = tmp.path().join(format!("killed-{k}"));
        let mut child = command()
            .arg("clone")
            .arg(src.path())
            .arg(&dst)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn clone");
        thread::sleep(whole.mul_f64(k as f64 / rounds as f64));
        let _ = child.kill();
        child.wait().expect("wait for clone");
        if dst.join("eventdir.json").exists() {
            let copied = stream_files(&dst).len();
            halfway += usize::from(copied > 0 && copied < source_streams);
            // Every stamp of a copied document resolves: verify checks each one.
            verify_report(&dst);
            let summary = clone_ok(src.path(), &dst);
            assert_eq!(summary["digest"], source_digest.as_str(), "{summary}");
            assert_same_streams_and_manifest(src.path(), &dst);
        }
    }
    assert!(
        halfway > 0,
        "no kill landed while streams were being copied"
    );
}

#[test]
fn clone_brings_schema_streams_along_and_every_stamp_resolves_in_the_clone() {
    let src = TestFolder::new();
    append(&src, &["order:1", "--data", r#"{"qty":1}"#]);
    let set = |definition: Value| set_schema(&src, "order", definition);
    set(json!({"json_schema": {"type": "object", "required": ["qty"]}}));
    append(&src, &["order:2", "--data", r#"{"qty":2}"#]);
    set(json!({
        "json_schema": {"type": "object", "required": ["qty", "currency"]},
        "migration": [{"op": "default", "path": "/currency", "value": "EUR"}]
    }));
    // order:1 was written under no schema: this update migrates it first.
    src.ok(&["append", "order:1", "--set", "qty=3"]);
    let log = src.ndjson(&["log", "order:1"]);
    let types: Vec<&str> = log.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["create", "migrate", "update"]);
    assert_eq!(log[2]["schema"], 1);

    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("copy");
    let summary = clone_ok(src.path(), &dst);
    assert_eq!(summary["streams"], 3);
    assert_same_streams_and_manifest(src.path(), &dst);
    let report = verify_report(&dst);
    assert_eq!(report["digest"], digest(src.path()));
    assert_eq!(report["failed"], json!([]));
    // Every stamp in the clone names a schema version the clone holds.
    for doc in ["order:1", "order:2"] {
        let out = command_in(&dst, &["log", doc]).output().unwrap();
        for event in parse_lines(&out.stdout) {
            if let Some(stamp) = event["schema"].as_u64() {
                let out = command_in(&dst, &["schema", "show", "order", "--seq"])
                    .arg(stamp.to_string())
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{doc} stamp {stamp} does not resolve");
            }
        }
    }
    let got: Value = serde_json::from_slice(
        &command_in(&dst, &["get", "order:1"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(got["state"], json!({"qty": 3, "currency": "EUR"}));
}

#[test]
fn clone_while_three_processes_append_verifies_and_each_stream_is_a_prefix_of_the_source() {
    let src = populated();
    let root = src.path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let root = root.clone();
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut count = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let own = format!("writer{w}:{}", count / 4);
                    if count.is_multiple_of(4) {
                        append_in(&root, &[own.as_str(), "--data", r#"{"n":0}"#]);
                    } else {
                        append_in(&root, &[own.as_str(), "--set", &format!("n={count}")]);
                    }
                    append_in(&root, &["order:1", "--set", &format!("qty={count}")]);
                    count += 1;
                }
                count
            })
        })
        .collect();
    // Let the writers get going, then clone twice while they run.
    thread::sleep(Duration::from_millis(300));
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("copy");
    let first = clone_ok(&root, &dst);
    let second = clone_ok(&root, &dst);
    stop.store(true, Ordering::Relaxed);
    let total: u64 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 0, "the writers appended nothing");

    for summary in [&first, &second] {
        assert!(summary["events"].as_u64().unwrap() >= 8);
    }
    let report = verify_report(&dst);
    assert_eq!(report["digest"], second["digest"]);
    assert_eq!(report["torn_tails"], json!([]));
    let source = stream_files(&root);
    for (path, bytes) in stream_files(&dst) {
        let original = source
            .get(&path)
            .unwrap_or_else(|| panic!("{} is not in the source", path.display()));
        assert!(
            original.starts_with(&bytes),
            "{} is not a prefix of the source's stream",
            path.display()
        );
        assert!(bytes.ends_with(b"\n"));
    }
    // With the writers stopped, a re-run completes the clone.
    clone_ok(&root, &dst);
    assert_same_streams_and_manifest(&root, &dst);
    assert_eq!(digest(&dst), digest(&root));
}

#[test]
fn clone_leaves_out_a_torn_tail_of_the_source() {
    let src = populated();
    let path = src.stream_file("order:1");
    let complete = std::fs::read(&path).unwrap();
    let mut torn = complete.clone();
    torn.extend_from_slice(b"{\"seq\":3,\"doc\":\"ord");
    std::fs::write(&path, &torn).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("copy");
    let summary = clone_ok(src.path(), &dst);
    assert_eq!(
        std::fs::read(stream_path(&dst, "order:1")).unwrap(),
        complete
    );
    let report = verify_report(&dst);
    assert_eq!(report["torn_tails"], json!([]));
    assert_eq!(report["digest"], summary["digest"]);
    assert_eq!(summary["digest"], digest(src.path()));
}

#[test]
fn clone_and_batch_work_with_more_streams_than_open_files_allowed() {
    let folder = TestFolder::new();
    let input: String = (0..300)
        .map(|i| format!("{{\"doc\":\"many:{i}\",\"data\":{{\"n\":{i}}}}}\n"))
        .collect();
    let mut batch = std::process::Command::new(assert_cmd::cargo::cargo_bin("eventdir"));
    batch
        .arg("-C")
        .arg(folder.path())
        .args(["append", "--batch"]);
    limit_open_files(&mut batch, 64);
    batch
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let mut child = batch.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let dst = tempfile::tempdir().unwrap();
    let target = dst.path().join("copy");
    let mut clone = std::process::Command::new(assert_cmd::cargo::cargo_bin("eventdir"));
    clone.arg("clone").arg(folder.path()).arg(&target);
    limit_open_files(&mut clone, 64);
    let out = clone.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["streams"], 300);
    assert_eq!(
        summary["digest"],
        folder.json(&["verify", "--json"])["digest"]
    );
}
