//! Disk errors: commands run under a file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored, as
//! `trap "" XFSZ; ulimit -f N` does in a shell), so that `write` fails with EFBIG part-way
//! through. A failed write must be rolled back: the stream is byte-for-byte as before, the error
//! is one clear line, and a run without the limit completes.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::append::{assert_folder_unchanged, assert_one_line_error};
use crate::common::*;
use crate::crash::{binary, run_plain};

/// `eventdir ARGS...` where no file can grow beyond `limit` bytes and a write that would fails
/// with EFBIG (instead of the process being killed by SIGXFSZ).
fn limited(limit: u64) -> Command {
    let mut cmd = Command::new(binary());
    cmd.env_remove("EVENTDIR_FOLDER");
    // SAFETY: between fork and exec only async-signal-safe calls are made (signal, setrlimit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            let rlimit = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Runs `eventdir -C FOLDER ARGS...` under the limit, with `stdin`.
fn run_limited(limit: u64, folder: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = limited(limit);
    cmd.arg("-C").arg(folder).args(args);
    run_with_stdin(cmd, stdin)
}

fn run_with_stdin(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn eventdir");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        return out;
    }
    child.wait_with_output().unwrap()
}

/// Asserts a failure of the environment: exit 1, nothing on stdout, one clear line saying the
/// file is too large.
fn assert_write_failed(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: expected exit 1\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_one_line_error(&stderr);
    assert!(
        stderr.contains("File too large"),
        "{what}: the message does not say why: {stderr:?}"
    );
}

/// Runs `append --batch` with `stdin` under the limit, expecting exit 1; its stdout and
/// results.
fn batch_failing(limit: u64, folder: &Path, stdin: &str) -> (String, Vec<Value>) {
    let out = run_limited(
        limit,
        folder,
        &["append", "--batch"],
        Some(stdin.as_bytes()),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let results = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON result per request"))
        .collect();
    (stdout, results)
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// A folder whose `doc` has a few events, plus another document.
fn folder_with_history(doc: &str) -> TestFolder {
    let f = TestFolder::new();
    f.ok(&["append", doc, "--data", r#"{"n":0}"#]);
    for i in 1..20 {
        f.ok(&["append", doc, "--set", &format!("n={i}")]);
    }
    f.ok(&["append", "other:1", "--data", r#"{"small":true}"#]);
    f.ok(&["verify"]);
    f
}

#[test]
fn an_append_that_hits_the_file_size_limit_is_rolled_back() {
    let doc = "full:1";
    let f = folder_with_history(doc);
    let path = f.stream_file(doc);
    let before = f.snapshot();
    // The file is just under the limit; the new event crosses it, so the write is cut short.
    let limit = len(&path) + 1_000;
    let blob = "b".repeat(20_000);
    let out = run_limited(
        limit,
        f.path(),
        &["append", doc, "--set", &format!("blob={blob}")],
        None,
    );
    assert_write_failed(&out, "append");
    assert!(out.stdout.is_empty());
    assert_folder_unchanged(&before, &f.snapshot(), &"the failed append");

    // The same through stdin, and with an event that just fits: the limit really is there.
    let patch = json!([{"op": "add", "path": "/blob", "value": blob}]).to_string();
    let out = run_limited(
        limit,
        f.path(),
        &["append", doc, "--patch", "-"],
        Some(patch.as_bytes()),
    );
    assert_write_failed(&out, "append --patch -");
    assert_folder_unchanged(&before, &f.snapshot(), &"the failed append --patch -");
    let out = run_limited(limit, f.path(), &["append", doc, "--set", "n=ok"], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // Without the limit the big event goes in, and everything verifies.
    f.ok(&["append", doc, "--set", &format!("blob={blob}")]);
    assert_eq!(f.json(&["get", doc])["state"]["blob"], blob);
    assert_eq!(f.json(&["get", doc])["seq"], 21);
    f.ok(&["verify"]);
}

#[test]
fn a_first_event_that_hits_the_limit_leaves_no_stream_behind() {
    let f = TestFolder::new();
    f.ok(&["append", "other:1", "--data", r#"{"small":true}"#]);
    let before = f.snapshot();
    let data = json!({ "blob": "x".repeat(8_000) }).to_string();
    let out = run_limited(
        4_000,
        f.path(),
        &["append", "fresh:1", "--data", &data],
        None,
    );
    assert_write_failed(&out, "append of a first event");
    assert_folder_unchanged(&before, &f.snapshot(), &"the failed first append");
    let out = run_limited(4_000, f.path(), &["get", "fresh:1"], None);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    f.ok(&["verify"]);
}

#[test]
fn a_batch_whose_stream_hits_the_limit_fails_its_requests_and_keeps_the_others() {
    let doc = "full:1";
    let f = folder_with_history(doc);
    let path = f.stream_file(doc);
    let other = f.stream_file("other:1");
    let full_before = std::fs::read(&path).unwrap();
    let other_before = std::fs::read(&other).unwrap();
    let limit = len(&path) + 300;
    assert!(len(&other) + 2_000 < limit);
    let blob = "b".repeat(20_000);
    let stdin = [
        json!({"doc": doc, "set": {"blob": blob}}),
        json!({"doc": "other:1", "set": {"n": 1}}),
        json!({"doc": doc, "set": {"n": 99}}),
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect::<String>();
    let (stdout, results) = batch_failing(limit, f.path(), &stdin);
    assert_eq!(results.len(), 3, "{stdout}");
    for (i, result) in [(0, &results[0]), (2, &results[2])] {
        assert_eq!(result["error"]["code"], 1, "request {i}: {result}");
        assert_eq!(result["line"], i + 1, "{result}");
        let message = result["error"]["message"].as_str().unwrap();
        assert!(message.contains("File too large"), "{message}");
    }
    assert_eq!(results[1]["seq"], 1, "{}", results[1]);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        full_before,
        "the failed stream changed"
    );
    let other_after = std::fs::read(&other).unwrap();
    assert_eq!(&other_after[..other_before.len()], &other_before[..]);
    assert_eq!(
        &other_after[other_before.len()..],
        format!("{}\n", stdout.lines().nth(1).unwrap()).as_bytes()
    );
    f.ok(&["verify"]);
}

/// Asserts every stream file under `dst` is a prefix (at a line boundary) of the same file
/// under `src`, and that `dst` verifies.
fn assert_clone_prefix(src: &Path, dst: &Path) {
    let dst_files = snapshot_tree(&dst.join("streams"));
    for (rel, bytes) in &dst_files {
        let Some(bytes) = bytes else { continue };
        let source = std::fs::read(src.join("streams").join(rel)).unwrap();
        assert!(
            source.starts_with(bytes),
            "{}: not a prefix of the source",
            rel.display()
        );
        assert!(
            bytes.is_empty() || bytes.ends_with(b"\n"),
            "{}: ends inside a line",
            rel.display()
        );
    }
    let out = run_limited(u64::MAX, dst, &["verify", "--json"], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"], json!([]), "{report}");
    assert_eq!(report["torn_tails"], json!([]), "{report}");
}

fn clone_limited(limit: u64, src: &Path, dst: &Path) -> Output {
    let mut cmd = limited(limit);
    cmd.arg("clone").arg(src).arg(dst);
    run_with_stdin(cmd, None)
}

/// A source with small documents and one big one.
fn clone_source() -> TestFolder {
    let f = TestFolder::new();
    for i in 0..6 {
        f.ok(&[
            "append",
            &format!("small:{i}"),
            "--data",
            &format!(r#"{{"i":{i}}}"#),
        ]);
    }
    f.ok(&["append", "big:1", "--data", r#"{"n":0}"#]);
    for i in 0..5 {
        f.ok(&[
            "append",
            "big:1",
            "--set",
            &format!("blob{i}={}", "z".repeat(10_000)),
        ]);
    }
    f
}

#[test]
fn a_clone_that_hits_the_limit_leaves_a_valid_prefix_and_a_rerun_completes() {
    let src = clone_source();
    let work = tempfile::tempdir().unwrap();
    let dst: PathBuf = work.path().join("copy");
    let big = len(&src.stream_file("big:1"));
    let out = clone_limited(big / 2, src.path(), &dst);
    assert_write_failed(&out, "clone");
    assert!(out.stdout.is_empty());
    // Whatever was copied is a valid earlier clone.
    assert!(dst.join("eventdir.json").exists());
    assert_clone_prefix(src.path(), &dst);
    assert!(
        !dst.join("streams")
            .join(eventdir::DocId::parse("big:1").unwrap().relative_path())
            .exists(),
        "the failed stream was left behind"
    );

    // A re-run without the limit completes it.
    let out = clone_limited(u64::MAX, src.path(), &dst);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = src.json(&["verify", "--json"])["digest"].clone();
    assert_eq!(summary["digest"], digest);
    assert_eq!(
        snapshot_tree(&dst.join("streams")),
        snapshot_tree(&src.path().join("streams"))
    );
    assert_clone_prefix(src.path(), &dst);

    // An incremental clone that fails leaves the earlier clone exactly as it was.
    src.ok(&[
        "append",
        "big:1",
        "--set",
        &format!("more={}", "m".repeat(20_000)),
    ]);
    let before = snapshot_tree(&dst);
    let limit = big + 1_000;
    let out = clone_limited(limit, src.path(), &dst);
    assert_write_failed(&out, "incremental clone");
    assert_folder_unchanged(
        &before,
        &snapshot_tree(&dst),
        &"the failed incremental clone",
    );
    let out = clone_limited(u64::MAX, src.path(), &dst);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        snapshot_tree(&dst.join("streams")),
        snapshot_tree(&src.path().join("streams"))
    );
}

fn apply_limited(limit: u64, replica: &Path, stdin: &[u8]) -> Output {
    let mut cmd = limited(limit);
    cmd.arg("apply").arg(replica);
    run_with_stdin(cmd, Some(stdin))
}

#[test]
fn an_apply_that_hits_the_limit_leaves_the_failed_stream_unchanged() {
    let src = clone_source();
    let work = tempfile::tempdir().unwrap();
    let replica = work.path().join("replica");
    let export = src.ok(&["export"]);
    let out = apply_limited(u64::MAX, &replica, export.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // New events: a big one for big:1, small ones elsewhere.
    src.ok(&[
        "append",
        "big:1",
        "--set",
        &format!("more={}", "m".repeat(20_000)),
    ]);
    src.ok(&["append", "small:1", "--set", "n=1"]);
    let rel = eventdir::DocId::parse("big:1").unwrap().relative_path();
    let replica_big = replica.join("streams").join(&rel);
    let big_before = std::fs::read(&replica_big).unwrap();
    let export = src.ok(&["export"]);
    let out = apply_limited(big_before.len() as u64 + 1_000, &replica, export.as_bytes());
    assert_write_failed(&out, "apply");
    assert_eq!(
        std::fs::read(&replica_big).unwrap(),
        big_before,
        "the failed stream changed"
    );
    assert_clone_prefix(src.path(), &replica);

    // Re-sending without the limit completes the replica, byte for byte.
    let out = apply_limited(u64::MAX, &replica, export.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        snapshot_tree(&replica.join("streams")),
        snapshot_tree(&src.path().join("streams"))
    );

    // A new replica whose stream cannot be written keeps no half line of it: what it holds
    // (the events of earlier batches, if any) is a prefix of the origin's stream.
    let fresh = work.path().join("fresh");
    let out = apply_limited(5_000, &fresh, export.as_bytes());
    assert_write_failed(&out, "apply into a new replica");
    assert_clone_prefix(src.path(), &fresh);
    let kept = std::fs::metadata(fresh.join("streams").join(&rel)).map_or(0, |m| m.len());
    assert!(kept <= 5_000, "{kept} bytes kept");
}

#[test]
fn a_large_batch_to_few_streams_fails_only_the_requests_of_the_stream_that_hit_the_limit() {
    // More than a megabyte to two existing streams: the lines are written (and fsynced) on
    // the sync thread, and the write of one of them fails.
    let doc = "full:1";
    let f = TestFolder::new();
    f.ok(&["append", doc, "--data", r#"{"n":0}"#]);
    let big: String = (0..10)
        .map(|i| {
            format!(
                "{}\n",
                json!({"doc": doc, "set": {"blob": format!("{i}{}", "a".repeat(100_000))}})
            )
        })
        .collect();
    f.cmd()
        .args(["append", "--batch"])
        .write_stdin(big)
        .assert()
        .success();
    f.ok(&["append", "other:1", "--data", r#"{"small":true}"#]);
    let path = f.stream_file(doc);
    let other = f.stream_file("other:1");
    let full_before = std::fs::read(&path).unwrap();
    let other_before = std::fs::read(&other).unwrap();
    let limit = len(&path) + 300;
    let stdin: String = (0..60)
        .map(|i| {
            let target = if i % 2 == 0 { doc } else { "other:1" };
            format!(
                "{}\n",
                json!({"doc": target, "set": {"blob": format!("{i}{}", "b".repeat(20_000))}})
            )
        })
        .collect();
    assert!(stdin.len() > 1 << 20);
    let (stdout, results) = batch_failing(limit, f.path(), &stdin);
    assert_eq!(results.len(), 60);
    for (i, result) in results.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(result["error"]["code"], 1, "request {i}: {result}");
            let message = result["error"]["message"].as_str().unwrap();
            assert!(message.contains("File too large"), "{message}");
        } else {
            assert_eq!(result["seq"], i / 2 + 1, "request {i}: {result}");
        }
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        full_before,
        "the failed stream changed"
    );
    // The other stream holds exactly the lines answered for it.
    let other_after = std::fs::read(&other).unwrap();
    let answered: String = stdout
        .lines()
        .skip(1)
        .step_by(2)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(&other_after[..other_before.len()], &other_before[..]);
    assert_eq!(&other_after[other_before.len()..], answered.as_bytes());
    f.ok(&["verify"]);
}

#[test]
fn an_apply_whose_schema_stream_cannot_be_written_writes_no_document_stamped_by_it() {
    // A schema too large to write under the limit, and documents it stamps in the same batch
    // of export lines: enough of them that the batch is written on all cores.
    let src = TestFolder::new();
    let definition = json!({
        "json_schema": {"type": "object", "description": "d".repeat(20_000)},
    });
    set_schema(&src, "order", definition);
    let requests: String = (0..40)
        .map(|i| {
            format!(
                "{}\n",
                json!({"doc": format!("order:{i}"), "data": {"i": i}})
            )
        })
        .collect();
    src.batch_ok(&requests);
    let export = src.ok(&["export"]);
    let work = tempfile::tempdir().unwrap();
    let replica = work.path().join("replica");

    let out = apply_limited(10_000, &replica, export.as_bytes());
    assert_write_failed(&out, "apply");
    // No document names a schema event the replica does not hold: verify checks every stamp.
    if replica.join("eventdir.json").exists() {
        let verify = run_plain(&replica, &["verify", "--json"]);
        assert_eq!(
            verify.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&verify.stdout)
        );
    }
    let out = apply_limited(u64::MAX, &replica, export.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        snapshot_tree(&replica.join("streams")),
        snapshot_tree(&src.path().join("streams"))
    );
}
