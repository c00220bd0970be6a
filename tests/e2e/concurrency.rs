//! Many processes appending at once: the exclusive lock keeps every stream gap-free, and
//! `--expect` lets exactly one writer win each seq.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Barrier};
use std::thread;

use serde_json::Value;

use crate::append::append;
use crate::common::*;

/// The binary, for plain `std::process::Command` (cheap to spawn from many threads).
fn binary() -> PathBuf {
    assert_cmd::cargo::cargo_bin("eventdir")
}

fn run(folder: &Path, args: &[String]) -> Output {
    Command::new(binary())
        .env_remove("EVENTDIR_FOLDER")
        .arg("-C")
        .arg(folder)
        .args(args)
        .output()
        .expect("spawn eventdir")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn eight_processes_appending_200_events_each_to_one_document_leave_no_gap() {
    const WRITERS: usize = 8;
    const EACH: usize = 200;
    let f = TestFolder::new();
    append(&f, &["counter:1", "--data", r#"{"n":-1}"#]);
    let root = f.path().to_path_buf();
    let barrier = Arc::new(Barrier::new(WRITERS));
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let root = root.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let mut seqs = Vec::with_capacity(EACH);
                for i in 0..EACH {
                    let n = w * 1000 + i;
                    let out = run(
                        &root,
                        &args(&["append", "counter:1", "--set", &format!("n={n}")]),
                    );
                    assert!(
                        out.status.success(),
                        "writer {w} append {i}: {:?} {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    );
                    assert!(
                        out.stderr.is_empty(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let event: Value = serde_json::from_slice(&out.stdout).unwrap();
                    seqs.push(event["seq"].as_u64().unwrap());
                }
                seqs
            })
        })
        .collect();
    let mut printed: Vec<u64> = Vec::new();
    for handle in handles {
        let seqs = handle.join().expect("writer thread");
        // One process's appends land in the order it made them.
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        printed.extend(seqs);
    }
    printed.sort_unstable();
    let expected: Vec<u64> = (1..=(WRITERS * EACH) as u64).collect();
    assert_eq!(printed, expected, "every acknowledged seq is distinct");

    let log = f.ndjson(&["log", "counter:1"]);
    let seqs: Vec<u64> = log.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let all: Vec<u64> = (0..=(WRITERS * EACH) as u64).collect();
    assert_eq!(seqs, all, "seqs 0..=1600 without gap or duplicate");
    // Every writer's values are all there, in its order.
    for w in 0..WRITERS {
        let values: Vec<u64> = log[1..]
            .iter()
            .map(|e| e["data"][0]["value"].as_u64().unwrap())
            .filter(|n| (*n as usize) / 1000 == w)
            .collect();
        let mine: Vec<u64> = (0..EACH).map(|i| (w * 1000 + i) as u64).collect();
        assert_eq!(values, mine, "writer {w}");
    }
    let stamps: Vec<&str> = log
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "timestamps never decrease"
    );
    let last = log.last().unwrap()["data"][0]["value"].clone();
    let got = f.json(&["get", "counter:1"]);
    assert_eq!(got["seq"], (WRITERS * EACH) as u64);
    assert_eq!(got["state"]["n"], last);
    assert_eq!(got, f.json(&["replay", "counter:1"]));
    f.ok(&["verify"]);
}

#[test]
fn processes_racing_with_expect_on_the_same_seq_exactly_one_wins_and_the_losers_exit_3() {
    const RACERS: usize = 6;
    const ROUNDS: u64 = 15;
    let f = TestFolder::new();
    append(&f, &["race:1", "--data", r#"{"winner":null}"#]);
    let root = f.path().to_path_buf();
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(RACERS));
        let handles: Vec<_> = (0..RACERS)
            .map(|r| {
                let root = root.clone();
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    let out = run(
                        &root,
                        &args(&[
                            "append",
                            "race:1",
                            "--set",
                            &format!("winner={r}"),
                            "--expect",
                            &round.to_string(),
                        ]),
                    );
                    (r, out)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for handle in handles {
            let (r, out) = handle.join().unwrap();
            match out.status.code() {
                Some(0) => {
                    let event: Value = serde_json::from_slice(&out.stdout).unwrap();
                    assert_eq!(event["seq"], round + 1);
                    winners.push(r);
                }
                Some(3) => {
                    assert!(out.stdout.is_empty());
                    let stderr = String::from_utf8(out.stderr).unwrap();
                    assert!(
                        stderr.starts_with("eventdir: ") && stderr.trim_end().lines().count() == 1,
                        "{stderr}"
                    );
                }
                other => panic!(
                    "racer {r} in round {round} exited {other:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let got = f.json(&["get", "race:1"]);
        assert_eq!(got["seq"], round + 1);
        assert_eq!(got["state"]["winner"], winners[0] as u64);
    }
    let seqs: Vec<u64> = f
        .ndjson(&["log", "race:1"])
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..=ROUNDS).collect::<Vec<_>>());
    f.ok(&["verify"]);
}

#[test]
fn processes_racing_to_create_a_new_document_one_wins_and_refused_ones_lose_nothing() {
    const RACERS: usize = 8;
    const DOCS: usize = 8;
    let f = TestFolder::new();
    let root = f.path().to_path_buf();
    for d in 0..DOCS {
        let doc = format!("fresh{d}:x");
        let barrier = Arc::new(Barrier::new(RACERS));
        let handles: Vec<_> = (0..RACERS)
            .map(|r| {
                let (root, doc, barrier) = (root.clone(), doc.clone(), Arc::clone(&barrier));
                thread::spawn(move || {
                    // Half create (no precondition, or --expect none); half make requests that
                    // are refused on a new stream and so try to remove what they created.
                    let list: Vec<String> = match r % 4 {
                        0 => args(&["append", &doc, "--data", &format!(r#"{{"by":{r}}}"#)]),
                        1 => args(&[
                            "append",
                            &doc,
                            "--data",
                            &format!(r#"{{"by":{r}}}"#),
                            "--expect",
                            "none",
                        ]),
                        2 => args(&["append", &doc, "--data", "{}", "--expect", "5"]),
                        _ => args(&["append", &doc, "--set", "a=1", "--expect", "0"]),
                    };
                    barrier.wait();
                    (r, run(&root, &list))
                })
            })
            .collect();
        let mut created = 0;
        for handle in handles {
            let (r, out) = handle.join().unwrap();
            let code = out.status.code();
            match (r % 4, code) {
                (0 | 1, Some(0)) => created += 1,
                (0, Some(2)) | (1, Some(3)) => {}
                // --expect 0 on a live stream of seq 0 passes --expect and then updates it.
                (3, Some(0)) => {}
                (2 | 3, Some(3)) => {}
                _ => panic!(
                    "{doc}: racer {r} exited {code:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
        assert_eq!(created, 1, "{doc}: exactly one create wins");
        let log = f.ndjson(&["log", &doc]);
        assert_eq!(log[0]["type"], "create");
        assert!(log.len() <= 3, "{doc}: {log:?}");
    }
    let ls = f.ndjson(&["ls"]);
    assert_eq!(ls.len(), DOCS);
    f.ok(&["verify"]);
}

#[test]
fn processes_creating_different_documents_of_a_new_type_all_succeed() {
    const WRITERS: usize = 12;
    let f = TestFolder::new();
    let root = f.path().to_path_buf();
    let barrier = Arc::new(Barrier::new(WRITERS));
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (root, barrier) = (root.clone(), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let doc = format!("item:{w}");
                (
                    w,
                    run(
                        &root,
                        &args(&["append", &doc, "--data", &format!(r#"{{"w":{w}}}"#)]),
                    ),
                )
            })
        })
        .collect();
    for handle in handles {
        let (w, out) = handle.join().unwrap();
        assert!(
            out.status.success(),
            "writer {w}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ls = f.ndjson(&["ls", "--type", "item"]);
    assert_eq!(ls.len(), WRITERS);
    for w in 0..WRITERS {
        assert_eq!(
            f.json(&["get", &format!("item:{w}")])["state"]["w"],
            w as u64
        );
    }
    f.ok(&["verify"]);
}

#[test]
fn single_appends_racing_a_long_batch_over_the_same_documents_all_land_in_one_chain() {
    let f = TestFolder::new();
    // 40 documents, so that groups are written in parallel and synced with one syncfs, and
    // enough requests for many groups, each taking over the streams of the one still syncing.
    let docs = 40;
    let mut input = String::new();
    for d in 0..docs {
        input.push_str(&format!("{{\"doc\":\"race:{d}\",\"data\":{{\"n\":0}}}}\n"));
    }
    for n in 1..=500 {
        for d in 0..docs {
            input.push_str(&format!("{{\"doc\":\"race:{d}\",\"set\":{{\"n\":{n}}}}}\n"));
        }
    }
    let folder = f.path().to_path_buf();
    let batch = thread::spawn(move || {
        let out = eventdir()
            .arg("-C")
            .arg(&folder)
            .args(["append", "--batch"])
            .write_stdin(input)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    });
    // Meanwhile, single appends to the same documents (once each has been created).
    let mut appended = 0;
    while appended < 60 {
        let doc = format!("race:{}", appended % docs);
        let out = run(f.path(), &args(&["append", &doc, "--set", "other=1"]));
        match out.status.code() {
            Some(0) => appended += 1,
            // Not created by the batch yet.
            Some(5) => thread::sleep(std::time::Duration::from_millis(5)),
            other => panic!("append exited {other:?}: {out:?}"),
        }
    }
    let results = batch.join().unwrap();
    let results: Vec<Value> = results
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), docs * 501);
    assert!(results.iter().all(|r| r.get("error").is_none()));
    let mut events = 0;
    for d in 0..docs {
        let state = f.json(&["get", &format!("race:{d}")]);
        assert_eq!(
            state["state"]["n"], 500,
            "the batch's last set wins: {state}"
        );
        events += state["seq"].as_u64().unwrap() + 1;
    }
    assert_eq!(events, (docs * 501 + 60) as u64, "no event lost");
    assert_eq!(f.json(&["verify", "--json"])["ok"], true);
}

#[test]
fn two_batches_writing_the_same_documents_in_opposite_orders_both_finish() {
    use std::io::Write;
    let f = TestFolder::new();
    let docs = 120;
    for d in 0..docs {
        append(&f, &[&format!("cross:{d}"), "--data", r#"{"n":0}"#]);
    }
    // Two writers, each cycling over every document (one in id order, one in reverse) in
    // small groups: few open files allowed, so a round is split into many groups of streams,
    // each group started while the one before still holds its locks.
    let spawn = |reverse: bool| {
        let mut cmd = Command::new(binary());
        cmd.env_remove("EVENTDIR_FOLDER")
            .arg("-C")
            .arg(f.path())
            .args(["append", "--batch"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null());
        limit_open_files(&mut cmd, 160);
        let mut child = cmd.spawn().unwrap();
        let mut input = String::new();
        for n in 1..=60 {
            for d in 0..docs {
                let d = if reverse { docs - 1 - d } else { d };
                input.push_str(&format!(
                    "{{\"doc\":\"cross:{d}\",\"set\":{{\"n\":{n}}}}}\n"
                ));
            }
        }
        let mut stdin = child.stdin.take().unwrap();
        thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
        child
    };
    let mut children = [spawn(false), spawn(true)];
    let started = std::time::Instant::now();
    for child in &mut children {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "{status:?}");
                break;
            }
            if started.elapsed() > std::time::Duration::from_secs(120) {
                for child in &mut children {
                    let _ = child.kill();
                }
                panic!("the two batches are waiting for each other");
            }
            thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    for d in 0..docs {
        let state = f.json(&["get", &format!("cross:{d}")]);
        assert_eq!(state["seq"], 120, "{state}");
    }
    assert_eq!(f.json(&["verify", "--json"])["ok"], true);
}
