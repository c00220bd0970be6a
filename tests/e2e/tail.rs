//! `eventdir tail`: events appended after it starts (or after a cursor), as export lines;
//! with --follow it keeps waiting until a signal or a closed pipe, and ends on a line boundary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::append::{append, assert_one_line_error};
use crate::clone::*;
use crate::common::*;

/// A running `tail --follow` and the chunks it writes, each a line (with its newline) except
/// possibly the last one before end of file.
pub struct Follower {
    pub child: Child,
    chunks: Receiver<Vec<u8>>,
    /// Every chunk received so far.
    pub received: Vec<Vec<u8>>,
}

impl Follower {
    /// Spawns `eventdir -C DIR tail ARGS...` with stdout piped.
    pub fn spawn(dir: &Path, args: &[&str]) -> Follower {
        let mut all = vec!["tail"];
        all.extend_from_slice(args);
        let mut child = command_in(dir, &all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tail");
        let stdout = child.stdout.take().unwrap();
        let (sender, chunks) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if sender.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Follower {
            child,
            chunks,
            received: Vec::new(),
        }
    }

    /// Takes what arrives within `timeout`; `false` once the output ended.
    fn receive(&mut self, timeout: Duration) -> bool {
        match self.chunks.recv_timeout(timeout) {
            Ok(chunk) => {
                self.received.push(chunk);
                while let Ok(chunk) = self.chunks.try_recv() {
                    self.received.push(chunk);
                }
                true
            }
            Err(mpsc::RecvTimeoutError::Timeout) => true,
            Err(mpsc::RecvTimeoutError::Disconnected) => false,
        }
    }

    /// The (doc, seq) of every complete line received so far.
    pub fn keys(&self) -> Vec<(String, u64)> {
        self.received
            .iter()
            .filter(|c| c.ends_with(b"\n"))
            .map(|c| key(&serde_json::from_slice(c).expect("a JSON line")))
            .collect()
    }

    /// Waits until tail is known to watch: appends to `probe:DOC` until one of its events
    /// comes out. Every event appended after this returns is printed.
    pub fn wait_until_ready(&mut self, dir: &Path, probe: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut n = 0;
        loop {
            if n == 0 {
                append_in(dir, &[probe, "--data", r#"{"n":0}"#]);
            } else {
                append_in(dir, &[probe, "--set", &format!("n={n}")]);
            }
            n += 1;
            self.receive(Duration::from_millis(300));
            if self.keys().iter().any(|(doc, _)| doc == probe) {
                return;
            }
            assert!(Instant::now() < deadline, "tail never printed {probe}");
        }
    }

    /// Waits until every key in `expected` was printed.
    pub fn wait_for(&mut self, expected: &[(String, u64)], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let keys = self.keys();
            let missing: Vec<_> = expected.iter().filter(|k| !keys.contains(k)).collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tail did not print {missing:?}; printed {keys:?}"
            );
            if !self.receive(Duration::from_millis(200)) {
                panic!("tail ended before printing {missing:?}");
            }
        }
    }

    /// Sends `signal` with `kill`, waits (bounded) for the process to end, drains its output,
    /// and returns its exit code and stderr.
    pub fn stop(&mut self, signal: &str) -> (Option<i32>, String) {
        let status = signal_and_wait(&mut self.child, signal);
        let drained = Instant::now() + Duration::from_secs(15);
        while self.receive(Duration::from_millis(500)) {
            assert!(Instant::now() < drained, "tail's stdout never closed");
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stderr).unwrap();
        }
        (status.code(), stderr)
    }
}

/// Sends `signal` (e.g. "TERM") to `child` with `kill`, and waits at most 15 s for it to end.
pub fn signal_and_wait(child: &mut Child, signal: &str) -> ExitStatus {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill failed");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not end within 15 s of SIG{signal}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Asserts an export line of DIR is the stored line of its event, with the origin first.
fn assert_is_the_stored_line(dir: &Path, line: &[u8]) {
    let text = std::str::from_utf8(line).unwrap();
    let text = text.strip_suffix('\n').expect("a complete line");
    let prefix = format!("{{\"origin\":\"{}\",", folder_id(dir));
    let stored = format!(
        "{{{}",
        text.strip_prefix(prefix.as_str()).expect("origin first")
    );
    let event: Value = serde_json::from_str(&stored).unwrap();
    let (doc, seq) = key(&event);
    let file = std::fs::read_to_string(stream_path(dir, &doc)).unwrap();
    assert_eq!(
        file.lines().nth(seq as usize),
        Some(stored.as_str()),
        "{doc} seq {seq}"
    );
}

#[test]
fn tail_without_follow_and_without_a_cursor_prints_nothing() {
    let f = populated();
    let (code, stdout, stderr) = f.run(&["tail"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(stderr, "");
    assert_eq!(f.ok(&["tail", "--type", "order"]), "");
}

#[test]
fn tail_from_cursor_prints_the_events_after_the_cursor_and_only_reads_it() {
    let f = populated();
    let tmp = tempfile::tempdir().unwrap();
    let cursor = tmp.path().join("ship.cursor");
    let cursor_arg = cursor.to_str().unwrap();
    f.ok(&["export", "--cursor", cursor_arg]);
    let recorded = std::fs::read(&cursor).unwrap();
    assert_eq!(f.ok(&["tail", "--from-cursor", cursor_arg]), "");

    let new = [
        append(&f, &["order:1", "--set", "status=shipped"]),
        append(&f, &["customer:Ann", "--set", "vip=true"]),
        append(&f, &["order:6", "--data", r#"{"qty":6}"#]),
        append(&f, &["order:1", "--set", "qty=20"]),
    ];
    let out = f.ok(&["tail", "--from-cursor", cursor_arg]);
    let mut keys: Vec<(String, u64)> = parse_lines(out.as_bytes()).iter().map(key).collect();
    keys.sort();
    let mut expected: Vec<(String, u64)> = new.iter().map(key).collect();
    expected.sort();
    assert_eq!(keys, expected);
    for line in out.split_inclusive('\n') {
        assert_is_the_stored_line(f.path(), line.as_bytes());
    }
    // Within a document, seq order.
    let order1: Vec<u64> = parse_lines(out.as_bytes())
        .iter()
        .filter(|e| e["doc"] == "order:1")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(order1, [3, 4]);
    // The cursor file is only read: the same output again.
    assert_eq!(std::fs::read(&cursor).unwrap(), recorded);
    assert_eq!(f.ok(&["tail", "--from-cursor", cursor_arg]), out);
    // And what export --cursor ships next is exactly what tail printed.
    assert_eq!(f.ok(&["export", "--cursor", cursor_arg]), out);
}

#[test]
fn tail_from_a_cursor_of_another_folder_is_refused_with_exit_2() {
    let a = populated();
    let b = populated();
    let tmp = tempfile::tempdir().unwrap();
    let cursor = tmp.path().join("a.cursor");
    a.ok(&["export", "--cursor", cursor.to_str().unwrap()]);
    let (code, stdout, stderr) = b.run(&["tail", "--from-cursor", cursor.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stdout, "");
    assert_one_line_error(&stderr);
}

#[test]
fn tail_follow_prints_new_events_including_a_new_document_and_exits_0_on_sigterm() {
    let f = populated();
    let mut tail = Follower::spawn(f.path(), &["--follow"]);
    tail.wait_until_ready(f.path(), "probe:ready");
    let new = [
        append(&f, &["order:1", "--set", "status=shipped"]),
        append(&f, &["order:7", "--data", r#"{"qty":7}"#]),
        append(&f, &["order:7", "--set", "qty=8"]),
        append(&f, &["customer:Ann", "--set", "vip=true"]),
    ];
    let expected: Vec<(String, u64)> = new.iter().map(key).collect();
    tail.wait_for(&expected, Duration::from_secs(30));
    // A later burst comes out too.
    let later: Vec<(String, u64)> = (0..5)
        .map(|i| key(&append(&f, &["order:7", "--set", &format!("qty={i}")])))
        .collect();
    tail.wait_for(&later, Duration::from_secs(30));

    let (code, stderr) = tail.stop("TERM");
    assert_eq!(code, Some(0), "tail did not exit 0 on SIGTERM: {stderr}");
    assert_eq!(stderr, "");
    for chunk in &tail.received {
        assert!(chunk.ends_with(b"\n"), "an incomplete line: {chunk:?}");
        assert_is_the_stored_line(f.path(), chunk);
    }
    let keys = tail.keys();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "an event was printed twice");
    for k in expected.iter().chain(&later) {
        assert!(keys.contains(k), "{k:?} missing");
    }
    // Nothing from before tail started.
    assert!(
        keys.iter().all(|(doc, seq)| doc == "probe:ready"
            || expected.contains(&(doc.clone(), *seq))
            || later.contains(&(doc.clone(), *seq))),
        "{keys:?}"
    );
    // Within a document, seq order.
    let order7: Vec<u64> = keys
        .iter()
        .filter(|(d, _)| d == "order:7")
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(order7, (0..7).collect::<Vec<u64>>());
}

#[test]
fn tail_follow_with_a_type_prints_only_that_type_and_exits_0_on_sigint() {
    let f = populated();
    let mut tail = Follower::spawn(f.path(), &["--follow", "--type", "order"]);
    // The probe must be of the selected type.
    tail.wait_until_ready(f.path(), "order:probe");
    append(&f, &["customer:Ann", "--set", "vip=true"]);
    append(&f, &["customer:Zed", "--data", "{}"]);
    let order = key(&append(&f, &["order:8", "--data", r#"{"new":true}"#]));
    tail.wait_for(std::slice::from_ref(&order), Duration::from_secs(30));
    let (code, stderr) = tail.stop("INT");
    assert_eq!(code, Some(0), "tail did not exit 0 on SIGINT: {stderr}");
    let keys = tail.keys();
    assert!(
        keys.iter().all(|(doc, _)| doc.starts_with("order:")),
        "{keys:?}"
    );
    assert!(tail.received.iter().all(|c| c.ends_with(b"\n")));
}

#[test]
fn tail_follow_ends_quietly_when_its_stdout_is_closed() {
    let f = populated();
    let tmp = tempfile::tempdir().unwrap();
    let stderr_path = tmp.path().join("stderr");
    let mut child = command_in(f.path(), &["tail", "--follow"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    // It notices when it next writes: keep appending until it ends.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tail --follow went on with its stdout closed");
        }
        append(&f, &["order:1", "--set", &format!("qty={n}")]);
        n += 1;
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0), "a closed pipe is not an error");
    assert_eq!(std::fs::read_to_string(&stderr_path).unwrap(), "");
}

#[test]
fn a_process_started_with_stdout_closed_gets_dev_null_as_its_stdout() {
    // Otherwise the first file it opened would take descriptor 1, and what it prints would
    // land there.
    use std::os::unix::process::CommandExt;
    let f = populated();
    let mut cmd = command_in(f.path(), &["tail", "--follow"]);
    // SAFETY: close is async-signal-safe and touches only the child's descriptor table.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(1);
            Ok(())
        });
    }
    let mut child = cmd.stderr(Stdio::null()).spawn().unwrap();
    let fd = format!("/proc/{}/fd/1", child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let target = loop {
        // Before exec the descriptor is closed; once the process has started, it is set.
        let target = std::fs::read_link(&fd).ok();
        if target.as_deref() == Some(Path::new("/dev/null")) || Instant::now() > deadline {
            break target;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(target.as_deref(), Some(Path::new("/dev/null")));
}

#[test]
fn tail_follow_prints_every_schema_version_before_the_events_stamped_with_it() {
    // Thousands of streams make each pass long, so that schema sets and the appends they
    // stamp land while a pass is between the schema streams and the documents: the schema
    // stream (new, or grown) was listed or read before its event was written.
    let f = TestFolder::new();
    let filler: String = (0..3_000)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({"doc": format!("item:{i}"), "data": {}})
            )
        })
        .collect();
    f.batch_ok(&filler);
    append(&f, &["order:1", "--data", r#"{"n":0}"#]);
    let mut tail = Follower::spawn(f.path(), &["--follow"]);
    tail.wait_until_ready(f.path(), "probe:ready");
    let mut expected = Vec::new();
    for i in 0..30 {
        let definition =
            serde_json::json!({"json_schema": {"type": "object", "title": format!("v{i}")}});
        set_schema(&f, "order", definition);
        let out = f.ok(&["append", "order:1", "--set", &format!("n={i}")]);
        expected.extend(out.lines().map(|l| key(&serde_json::from_str(l).unwrap())));
    }
    tail.wait_for(&expected, Duration::from_secs(60));
    tail.stop("TERM");

    let mut printed_versions = std::collections::BTreeSet::new();
    for chunk in tail.received.iter().filter(|c| c.ends_with(b"\n")) {
        let event: Value = serde_json::from_slice(chunk).unwrap();
        if event["doc"] == "sys:schema:order" {
            printed_versions.insert(event["seq"].as_u64().unwrap());
        } else if let Some(stamp) = event["schema"].as_u64() {
            assert!(
                printed_versions.contains(&stamp),
                "{} seq {} (stamped with schema seq {stamp}) came before that schema event",
                event["doc"],
                event["seq"]
            );
        }
    }
    assert_eq!(printed_versions.len(), 30);
}
