//! The whole replication story at once: writers appending, `tail --follow` streaming into a
//! file, and `export --cursor | apply` run in a loop, ending with a replica equal to the origin
//! and every event shipped exactly once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::append::append;
use crate::clone::*;
use crate::tail::signal_and_wait;

/// How long the writers write.
const WRITING: Duration = Duration::from_secs(6);

/// The (doc, seq) of every complete line of the file at `path` so far.
fn keys_in_file(path: &Path) -> Vec<(String, u64)> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(at) => &bytes[..=at],
        None => &bytes[..0],
    };
    parse_lines(complete).iter().map(key).collect()
}

/// One writer: appends to documents of its own (creating a new one every 8 events) and to a
/// shared document, until `stop`; returns the (doc, seq) of every event it appended.
fn writer(root: PathBuf, w: usize, stop: Arc<AtomicBool>) -> Vec<(String, u64)> {
    let mut keys = Vec::new();
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let own = format!("writer{w}:{}", k / 8);
        let event = if k.is_multiple_of(8) {
            append_in(&root, &[own.as_str(), "--data", r#"{"n":0}"#])
        } else {
            append_in(&root, &[own.as_str(), "--set", &format!("n={k}")])
        };
        keys.push(key(&event));
        if k.is_multiple_of(3) {
            let event = append_in(&root, &["shared:1", "--set", &format!("last=w{w}k{k}")]);
            keys.push(key(&event));
        }
        k += 1;
    }
    keys
}

#[test]
fn writers_tail_and_an_export_apply_loop_converge_to_an_equal_replica_shipping_each_event_once() {
    let origin = populated();
    append(&origin, &["shared:1", "--data", r#"{"last":null}"#]);
    let root = origin.path().to_path_buf();
    let tmp = tempfile::tempdir().unwrap();
    let replica = tmp.path().join("replica");
    let cursor = tmp.path().join("ship.cursor");
    let tail_file = tmp.path().join("tail.ndjson");

    // tail --follow > tail.ndjson, known to be watching once a probe event shows up in it.
    let mut tail = command_in(&root, &["tail", "--follow"])
        .stdout(std::fs::File::create(&tail_file).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready_by = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        if n == 0 {
            append(&origin, &["probe:tail", "--data", r#"{"n":0}"#]);
        } else {
            append(&origin, &["probe:tail", "--set", &format!("n={n}")]);
        }
        n += 1;
        thread::sleep(Duration::from_millis(200));
        if keys_in_file(&tail_file)
            .iter()
            .any(|(doc, _)| doc == "probe:tail")
        {
            break;
        }
        assert!(Instant::now() < ready_by, "tail never started printing");
    }

    // Three writers, and export --cursor | apply in a loop while they write.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let root = root.clone();
            let stop = Arc::clone(&stop);
            thread::spawn(move || writer(root, w, stop))
        })
        .collect();
    let shipped: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let shipper = {
        let (root, replica, cursor) = (root.clone(), replica.clone(), cursor.clone());
        let stop = Arc::clone(&stop);
        let shipped = Arc::clone(&shipped);
        thread::spawn(move || {
            let cursor_arg = cursor.to_str().unwrap().to_string();
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                let pipeline = export_into_apply(&root, &["--cursor", &cursor_arg], &replica);
                let summary = pipeline.ok();
                assert_eq!(summary["refused"], serde_json::json!([]));
                assert_eq!(summary["skipped"], 0, "an event was shipped twice");
                shipped.lock().unwrap().push(pipeline.exported);
                runs += 1;
                thread::sleep(Duration::from_millis(100));
            }
            runs
        })
    };
    thread::sleep(WRITING);
    stop.store(true, Ordering::Relaxed);
    let mut written: Vec<(String, u64)> = Vec::new();
    for handle in writers {
        written.extend(handle.join().expect("writer"));
    }
    let runs = shipper.join().expect("shipper");
    assert!(runs >= 2, "the export loop ran only {runs} times");
    assert!(written.len() >= 30, "only {} events written", written.len());

    // A last export --cursor | apply ships the rest.
    let last = export_into_apply(&root, &["--cursor", cursor.to_str().unwrap()], &replica);
    last.ok();
    shipped.lock().unwrap().push(last.exported);
    assert_eq!(digest(&replica), digest(&root));
    assert_eq!(stream_files(&replica), stream_files(&root));

    // Every event went through the export loop exactly once.
    let all: Vec<u8> = shipped.lock().unwrap().concat();
    let mut exported: Vec<(String, u64)> = parse_lines(&all).iter().map(key).collect();
    let count = exported.len();
    exported.sort();
    exported.dedup();
    assert_eq!(exported.len(), count, "an event was exported twice");
    assert_eq!(exported, stored_keys(&root));

    // tail printed every event appended after it started, exactly once.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let printed: BTreeSet<(String, u64)> = keys_in_file(&tail_file).into_iter().collect();
        let missing = written.iter().filter(|k| !printed.contains(*k)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tail is missing {missing} of {} events",
            written.len()
        );
        thread::sleep(Duration::from_millis(200));
    }
    let status = signal_and_wait(&mut tail, "TERM");
    assert_eq!(status.code(), Some(0), "tail did not exit 0 on SIGTERM");
    let bytes = std::fs::read(&tail_file).unwrap();
    assert!(bytes.ends_with(b"\n"), "tail ended inside a line");
    let printed: Vec<(String, u64)> = parse_lines(&bytes).iter().map(key).collect();
    let mut unique = printed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), printed.len(), "tail printed an event twice");
    let printed: BTreeSet<(String, u64)> = printed.into_iter().collect();
    for k in &written {
        assert!(printed.contains(k), "tail missed {k:?}");
    }
    // And nothing from before it started.
    let written: BTreeSet<(String, u64)> = written.into_iter().collect();
    let before: BTreeSet<(String, u64)> = stored_keys(origin.path())
        .into_iter()
        .filter(|(doc, _)| doc != "probe:tail")
        .filter(|k| !written.contains(k))
        .collect();
    assert!(printed.is_disjoint(&before), "tail printed old events");
}
