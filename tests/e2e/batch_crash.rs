//! The crash loop for `append --batch`: one or two batches at once, over shared documents, fed
//! in bursts and trickles, are killed with SIGKILL at random moments of their lives. Results
//! come in request order, and a result is printed only once its group is written and synced, so
//! every event printed before a kill must be in its stream. After every round the folder
//! verifies (torn tails at most), the next batch repairs a torn tail, and at the end every
//! acknowledged event is in its stream exactly once, as it was printed.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;
use crate::crash::{
    Ledger, Rng, assert_every_acknowledged_event_is_stored_once, plain, verify_passes,
};

/// Documents every batch updates: more than the number of streams from which a group's
/// durability is one `syncfs`, so both ways of syncing are killed.
const SHARED: usize = 24;

/// A batch's requests, as input text, and whether each carries an `expect` (the only requests
/// that may be refused).
struct Input {
    text: String,
    docs: Vec<String>,
    expects: Vec<bool>,
}

fn shared_doc(k: u64) -> String {
    format!("batch:{k}")
}

/// REQUESTS random requests of batch PROCESS in ROUND: mostly small updates of the shared
/// documents, some updates large enough that a kill can land inside their write, creates of
/// new documents, and a few `expect`s that are usually stale.
fn input(rng: &mut Rng, round: usize, process: usize, requests: usize) -> Input {
    let mut input = Input {
        text: String::new(),
        docs: Vec::new(),
        expects: Vec::new(),
    };
    for i in 0..requests {
        let doc = shared_doc(rng.below(SHARED as u64));
        let (doc, request, expect) = match rng.below(40) {
            0..=29 => {
                let request = json!({"doc": doc, "set": {"n": i, "by": process}});
                (doc, request, false)
            }
            30 => {
                let blob = "u".repeat(4_000 + rng.below(20_000) as usize);
                let request = json!({"doc": doc, "set": {"blob": blob}, "meta": {"round": round}});
                (doc, request, false)
            }
            31..=37 => {
                let doc = format!("new:{round}-{process}-{i}");
                let request = json!({"doc": doc, "data": {"round": round, "i": i}});
                (doc, request, false)
            }
            _ => {
                let request = json!({"doc": doc, "set": {"stale": i}, "expect": 0});
                (doc, request, true)
            }
        };
        input.text.push_str(&request.to_string());
        input.text.push('\n');
        input.docs.push(doc);
        input.expects.push(expect);
    }
    input
}

/// Feeds `text` to a child's stdin on a thread: in one go, or in random pieces with pauses, so
/// that groups are committed whole or a few lines at a time. A write fails once the child is
/// killed, which ends the feeding.
fn feed(child: &mut Child, text: String, seed: u64) -> JoinHandle<()> {
    let mut stdin = child.stdin.take().expect("stdin is piped");
    std::thread::spawn(move || {
        let mut rng = Rng::new(seed);
        let bytes = text.as_bytes();
        if rng.below(2) == 0 {
            let _ = stdin.write_all(bytes);
            return;
        }
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + 1 + rng.below(20_000) as usize).min(bytes.len());
            if stdin.write_all(&bytes[at..end]).is_err() {
                return;
            }
            at = end;
            if rng.below(3) == 0 {
                std::thread::sleep(Duration::from_micros(rng.below(2_000)));
            }
        }
    })
}

/// The start of a line that may hold a blob of tens of kilobytes, for a message.
fn short(line: &str) -> String {
    line.chars().take(300).collect()
}

/// A batch running on a folder: its input fed and its output read on threads of their own, so
/// that it neither waits for input nor blocks on a full pipe, whenever it is killed.
struct Running {
    child: Child,
    feeder: JoinHandle<()>,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
}

impl Running {
    fn start(root: &Path, text: String, seed: u64) -> Running {
        let mut child = plain(root)
            .args(["append", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn eventdir append --batch");
        let feeder = feed(&mut child, text, seed);
        let stdout = drain(child.stdout.take().expect("stdout is piped"));
        let stderr = drain(child.stderr.take().expect("stderr is piped"));
        Running {
            child,
            feeder,
            stdout,
            stderr,
        }
    }

    /// Kills the batch (which may have ended already) and returns what it printed.
    fn kill(mut self) -> Output {
        // An error only means the process is gone already.
        let _ = self.child.kill();
        self.wait()
    }

    fn wait(mut self) -> Output {
        let status = self.child.wait().expect("wait for eventdir");
        self.feeder.join().expect("feeding thread");
        Output {
            status,
            stdout: self.stdout.join().expect("stdout thread"),
            stderr: self.stderr.join().expect("stderr thread"),
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Checks what a batch printed against its input and records its events; returns how many
/// results it printed. Results are complete lines, one per request in order: the event of
/// that request's document, or the refusal of a stale `expect`.
fn check_results(ledger: &mut Ledger, out: &Output, input: &Input, what: &str) -> usize {
    let text = String::from_utf8_lossy(&out.stdout);
    // A kill during a write to the pipe can cut the last line short: a reader takes only
    // complete lines as results.
    let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    let mut printed = 0;
    for (i, line) in complete.lines().enumerate() {
        assert!(i < input.docs.len(), "{what}: more results than requests");
        let result: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{what}: result {i} is not JSON ({e}): {}", short(line)));
        if result.get("error").is_some() {
            assert!(
                input.expects[i],
                "{what}: request {i} ({}) was refused: {line}",
                input.docs[i]
            );
            assert_eq!(result["error"]["code"], 3, "{what}: {line}");
            assert_eq!(result["line"], i as u64 + 1, "{what}: {line}");
        } else {
            assert_eq!(
                result["doc"], input.docs[i],
                "{what}: result {i} is not its request's event"
            );
            ledger.record_line(line, what);
        }
        printed += 1;
    }
    printed
}

/// One batch of create or update requests, one per torn document, which must all succeed and
/// leave no torn tail.
fn repair_torn_tails(root: &Path, ledger: &mut Ledger, torn: &[Value], round: usize) {
    let mut text = String::new();
    for tail in torn {
        let doc = tail["doc"].as_str().expect("doc");
        let request = if tail["after_seq"].is_null() {
            json!({"doc": doc, "data": {"repaired": round}})
        } else {
            json!({"doc": doc, "set": {"repaired": round}})
        };
        text.push_str(&format!("{request}\n"));
    }
    let out = Running::start(root, text, 0).wait();
    let what = format!("round {round}: the repair of {torn:?}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ledger.record(&out.stdout, &what), torn.len(), "{what}");
    let after = verify_passes(root, &format!("round {round}, after the repairs"));
    assert_eq!(after["torn_tails"], json!([]), "round {round}: {after}");
}

#[test]
fn batches_killed_at_random_moments_never_lose_or_corrupt_an_acknowledged_event() {
    // Rounds go on until this many kills, unless time runs out first on a slow machine; fewer
    // than a quarter of them would mean the kills no longer land.
    const KILLS: usize = 80;
    const MAX_ROUNDS: usize = 1_500;
    const TIME_LIMIT: Duration = Duration::from_secs(150);
    const REQUESTS: usize = 300;

    let f = TestFolder::new();
    let root = f.path().to_path_buf();
    let mut ledger = Ledger::default();
    let setup: String = (0..SHARED as u64)
        .map(|k| format!("{}\n", json!({"doc": shared_doc(k), "data": {"n": 0}})))
        .collect();
    ledger.record(f.batch_ok(&setup).as_bytes(), "setup");

    // Kills land anywhere in a batch's life, from before it reads its first line to after its
    // last result: the window is half again the longest of three whole batches here (a debug
    // build, a loaded machine).
    let mut rng = Rng::new(0x00BA_7C4E_D15C_0002);
    let mut durations = Vec::new();
    for p in 0..3 {
        let input = input(&mut rng, 0, p, REQUESTS);
        let begun = Instant::now();
        let out = Running::start(&root, input.text.clone(), p as u64).wait();
        durations.push(begun.elapsed());
        let what = format!("calibration {p}");
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "{what}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(check_results(&mut ledger, &out, &input, &what), REQUESTS);
    }
    durations.sort();
    let window_micros = durations[2].mul_f64(1.5).as_micros() as u64;

    let started = Instant::now();
    let (mut kills, mut completed, mut acknowledged_then_killed) = (0usize, 0usize, 0usize);
    let (mut torn_repaired, mut rounds) = (0usize, 0usize);
    while kills < KILLS && rounds < MAX_ROUNDS && started.elapsed() < TIME_LIMIT {
        rounds += 1;
        let processes = 1 + rng.below(2) as usize;
        let mut running = Vec::with_capacity(processes);
        for p in 0..processes {
            let input = input(&mut rng, rounds, p, REQUESTS);
            let batch = Running::start(&root, input.text.clone(), rng.next_u64());
            let deadline = Instant::now() + Duration::from_micros(rng.below(window_micros + 1));
            running.push((batch, deadline, input));
        }
        running.sort_by_key(|r| r.1);
        let mut finished = Vec::with_capacity(processes);
        for (batch, deadline, input) in running {
            let now = Instant::now();
            if deadline > now {
                std::thread::sleep(deadline - now);
            }
            finished.push((batch.kill(), input));
        }
        for (p, (out, input)) in finished.iter().enumerate() {
            let what = format!("round {rounds}, batch {p}");
            let printed = check_results(&mut ledger, out, input, &what);
            match (out.status.code(), out.status.signal()) {
                (Some(0 | 3), _) => {
                    completed += 1;
                    assert_eq!(
                        printed, REQUESTS,
                        "{what}: a finished batch left results out"
                    );
                }
                (None, Some(libc::SIGKILL)) => {
                    kills += 1;
                    acknowledged_then_killed += usize::from(printed > 0);
                }
                _ => panic!(
                    "{what}: ended with {:?}\nstderr: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }

        let report = verify_passes(&root, &format!("round {rounds}"));
        let torn = report["torn_tails"].as_array().expect("torn_tails").clone();
        if !torn.is_empty() {
            torn_repaired += torn.len();
            repair_torn_tails(&root, &mut ledger, &torn, rounds);
        }
    }
    eprintln!(
        "batch crash loop: kills 0-{window_micros} us after spawn, {rounds} rounds, {kills} kills \
         ({acknowledged_then_killed} after printing results), {completed} completed, \
         {torn_repaired} torn tails repaired, {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        kills >= KILLS / 4,
        "only {kills} kills in {rounds} rounds and {:?}",
        started.elapsed()
    );
    assert!(
        acknowledged_then_killed > 0,
        "no batch was killed after printing results: the kills missed the part of a batch's \
         life this test is about"
    );
    assert_every_acknowledged_event_is_stored_once(&f, &ledger);
}
