//! The crash loop: `append` processes (several documents, several at once on the same document,
//! updates with `--set` and creates of new documents) are killed with SIGKILL at random moments.
//! After every round of kills the folder verifies (a torn tail at most, never a failure) and the
//! next append to a torn document removes the tail; at the end every acknowledged event is in
//! its stream exactly once, with the seq and hash it was acknowledged with.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// A small deterministic PRNG (SplitMix64): the same seed gives the same schedule of kills.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The binary, for plain `std::process::Command`.
pub fn binary() -> PathBuf {
    assert_cmd::cargo::cargo_bin("eventdir")
}

/// `eventdir -C FOLDER` as a plain command with a clean environment.
pub fn plain(folder: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.env_remove("EVENTDIR_FOLDER").arg("-C").arg(folder);
    cmd
}

/// Runs `eventdir -C FOLDER ARGS...` to completion.
pub fn run_plain(folder: &Path, args: &[&str]) -> Output {
    plain(folder).args(args).output().expect("spawn eventdir")
}

/// An event some `append` printed: from then on it must be in its stream, unchanged.
#[derive(Clone, Debug)]
pub struct Ack {
    doc: String,
    seq: u64,
    hash: String,
    line: String,
}

impl Ack {
    fn parse(line: &str) -> Option<Ack> {
        let event: Value = serde_json::from_str(line).ok()?;
        Some(Ack {
            doc: event["doc"].as_str()?.to_string(),
            seq: event["seq"].as_u64()?,
            hash: event["hash"].as_str()?.to_string(),
            line: line.to_string(),
        })
    }
}

/// Every acknowledged event, keyed by (doc, seq); two different events at one seq fail.
#[derive(Default)]
pub struct Ledger {
    acks: BTreeMap<(String, u64), Ack>,
}

impl Ledger {
    /// Records every line of `out`, each of which must be an event; returns how many.
    pub fn record(&mut self, out: &[u8], what: &str) -> usize {
        let text = String::from_utf8_lossy(out);
        for line in text.lines() {
            self.record_line(line, what);
        }
        text.lines().count()
    }

    /// Records one printed line, which must be an event.
    pub fn record_line(&mut self, line: &str, what: &str) {
        let ack = Ack::parse(line)
            .unwrap_or_else(|| panic!("{what}: printed a line that is not an event: {line:?}"));
        if let Some(earlier) = self.acks.get(&(ack.doc.clone(), ack.seq)) {
            assert_eq!(
                earlier.line, ack.line,
                "{what}: two different events were acknowledged as {} seq {}",
                ack.doc, ack.seq
            );
        }
        self.acks.insert((ack.doc.clone(), ack.seq), ack);
    }
}

/// `verify --json`, which must pass; returns the report.
pub fn verify_passes(folder: &Path, when: &str) -> Value {
    let out = run_plain(folder, &["verify", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{when}: verify failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).expect("verify --json prints JSON");
    assert_eq!(report["ok"], true, "{when}: {report}");
    assert_eq!(report["failed"], json!([]), "{when}: {report}");
    assert_eq!(report["foreign"], json!([]), "{when}: {report}");
    report
}

/// One append the driver may start.
fn request(rng: &mut Rng, docs: &[&str], round: usize, i: usize) -> Vec<String> {
    let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let doc = docs[rng.below(docs.len() as u64) as usize];
    match rng.below(20) {
        // Small updates: most of the traffic.
        0..=10 => owned(&["append", doc, "--set", &format!("n={round}{i:02}")]),
        // Updates spanning many pages, so that a kill can land inside the write itself.
        11..=13 => {
            let blob = "u".repeat(16_000 + rng.below(16_000) as usize);
            owned(&[
                "append",
                doc,
                "--set",
                &format!("blob={blob}"),
                "--meta",
                r#"{"actor":"crash"}"#,
            ])
        }
        // Creates of new documents, small or large.
        14..=16 => owned(&[
            "append",
            &format!("new:{round}-{i}"),
            "--data",
            &format!(r#"{{"round":{round},"i":{i}}}"#),
        ]),
        _ => {
            let blob = "c".repeat(20_000 + rng.below(20_000) as usize);
            owned(&[
                "append",
                &format!("new:{round}-{i}"),
                "--data",
                &json!({"round": round, "blob": blob}).to_string(),
            ])
        }
    }
}

#[test]
fn appends_killed_at_random_moments_never_lose_or_corrupt_an_acknowledged_event() {
    const MIN_KILLS: usize = 500;
    const MAX_ROUNDS: usize = 6_000;
    const TIME_LIMIT: Duration = Duration::from_secs(150);
    let docs = ["crash:1", "crash:2", "Crash:ü"];

    let f = TestFolder::new();
    let root = f.path().to_path_buf();
    let mut ledger = Ledger::default();
    for doc in docs {
        let out = run_plain(&root, &["append", doc, "--data", r#"{"n":0}"#]);
        assert!(out.status.success(), "{out:?}");
        ledger.record(&out.stdout, "setup");
    }

    let mut rng = Rng::new(0x00C0_FFEE_D15C_0001);
    // Kills land 0-3 ms after the spawn, or anywhere in an append's life when appends take
    // longer here (a debug build, a loaded machine): the window is measured first.
    let mut durations = Vec::new();
    for i in 0..9 {
        let args = request(&mut rng, &docs, 0, i);
        let begun = Instant::now();
        let out = plain(&root).args(&args).output().expect("spawn eventdir");
        durations.push(begun.elapsed());
        assert!(out.status.success(), "{out:?}");
        ledger.record(&out.stdout, "calibration");
    }
    durations.sort();
    let window = durations[durations.len() / 2]
        .mul_f64(1.5)
        .max(Duration::from_millis(3));
    let window_micros = window.as_micros() as u64;
    let started = Instant::now();
    let (mut kills, mut completed, mut printed_then_killed) = (0usize, 0usize, 0usize);
    let (mut torn_repaired, mut torn_first_lines, mut rounds) = (0usize, 0usize, 0usize);
    while kills < MIN_KILLS && rounds < MAX_ROUNDS && started.elapsed() < TIME_LIMIT {
        rounds += 1;
        // One to three appends at once, often on the same document.
        let n = 1 + rng.below(3) as usize;
        let mut children = Vec::with_capacity(n);
        for i in 0..n {
            let args = request(&mut rng, &docs, rounds, i);
            let child = plain(&root)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn eventdir");
            let deadline = Instant::now() + Duration::from_micros(rng.below(window_micros + 1));
            children.push((child, deadline, args));
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| children[i].1);
        for i in order {
            let now = Instant::now();
            if children[i].1 > now {
                std::thread::sleep(children[i].1 - now);
            }
            // An error only means the process is gone already.
            let _ = children[i].0.kill();
        }
        for (child, _, args) in children {
            let out = child.wait_with_output().expect("wait for eventdir");
            let what = format!("round {rounds}: {:?}", &args[..2]);
            match (out.status.code(), out.status.signal()) {
                (Some(0), _) => {
                    completed += 1;
                    assert_eq!(ledger.record(&out.stdout, &what), 1, "{what}: {out:?}");
                }
                (None, Some(libc::SIGKILL)) => {
                    kills += 1;
                    // A line printed before the kill was printed after its fsync: durable too.
                    if !out.stdout.is_empty() && out.stdout.ends_with(b"\n") {
                        printed_then_killed += ledger.record(&out.stdout, &what);
                    }
                }
                _ => panic!(
                    "{what}: ended with {:?}\nstdout: {}\nstderr: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }

        // After the kills: the folder verifies, with at most torn tails.
        let report = verify_passes(&root, &format!("round {rounds}"));
        for torn in report["torn_tails"].as_array().expect("torn_tails") {
            let doc = torn["doc"].as_str().expect("doc").to_string();
            let args: Vec<String> = if torn["after_seq"].is_null() {
                torn_first_lines += 1;
                vec![
                    "append".into(),
                    doc.clone(),
                    "--data".into(),
                    r#"{"repaired":true}"#.into(),
                ]
            } else {
                vec![
                    "append".into(),
                    doc.clone(),
                    "--set".into(),
                    format!("repaired={rounds}"),
                ]
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run_plain(&root, &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(0),
                "round {rounds}: the append after a torn tail of {doc} failed: {stderr}"
            );
            assert!(
                stderr.contains("removed a torn tail of"),
                "round {rounds}: the repair of {doc} was not reported: {stderr:?}"
            );
            ledger.record(&out.stdout, "repair");
            torn_repaired += 1;
        }
        if torn_repaired > 0 && !report["torn_tails"].as_array().unwrap().is_empty() {
            let after = verify_passes(&root, &format!("round {rounds}, after the repairs"));
            assert_eq!(after["torn_tails"], json!([]), "round {rounds}: {after}");
        }
    }
    eprintln!(
        "crash loop: kills 0-{window_micros} us after spawn, {rounds} rounds, {kills} kills, {completed} completed, {printed_then_killed} printed then killed, \
         {torn_repaired} torn tails repaired ({torn_first_lines} of a first event), {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        kills >= MIN_KILLS,
        "only {kills} kills in {rounds} rounds and {:?}",
        started.elapsed()
    );

    assert_every_acknowledged_event_is_stored_once(&f, &ledger);
}

/// The folder verifies without torn tails, its seqs have no gaps, no hash appears twice, and
/// every event of the ledger is in its stream, byte for byte as it was acknowledged.
pub fn assert_every_acknowledged_event_is_stored_once(f: &TestFolder, ledger: &Ledger) {
    let report = verify_passes(f.path(), "at the end");
    assert_eq!(report["torn_tails"], json!([]), "{report}");
    let listed: Vec<String> = f
        .ndjson(&["ls"])
        .iter()
        .map(|d| d["doc"].as_str().unwrap().to_string())
        .collect();
    let mut stored: BTreeMap<(String, u64), String> = BTreeMap::new();
    let mut hashes = BTreeSet::new();
    for doc in &listed {
        let log = f.ok(&["log", doc]);
        for (i, line) in log.lines().enumerate() {
            let event: Value = serde_json::from_str(line).expect("log prints JSON");
            assert_eq!(event["seq"], i as u64, "{doc}: seqs have a gap");
            assert!(
                hashes.insert(event["hash"].as_str().unwrap().to_string()),
                "{doc}: a hash appears twice"
            );
            stored.insert((doc.clone(), i as u64), line.to_string());
        }
    }
    let events: usize = stored.len();
    assert_eq!(report["events"], events as u64, "{report}");
    for ((doc, seq), ack) in &ledger.acks {
        let line = stored.get(&(doc.clone(), *seq)).unwrap_or_else(|| {
            panic!(
                "the acknowledged event {doc} seq {seq} ({}) is gone",
                ack.hash
            )
        });
        assert_eq!(
            line, &ack.line,
            "{doc} seq {seq} is not the acknowledged event (hash {})",
            ack.hash
        );
    }
    eprintln!(
        "crash loop: {} acknowledged events all present among {events} stored",
        ledger.acks.len()
    );
}
