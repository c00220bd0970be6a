//! `eventdir verify`: the hash chain, seq continuity, torn tails, foreign files, the folder
//! digest, --expect-digest and checkpoints, driven on folders written by the real binary and
//! then damaged byte by byte.

use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::*;

/// The members `verify --json` prints (at least).
const REPORT_MEMBERS: [&str; 9] = [
    "ok",
    "digest",
    "streams",
    "events",
    "failed",
    "torn_tails",
    "foreign",
    "checkpoint_mismatches",
    "digest_mismatch",
];

const EMPTY_DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Runs `verify ARGS... --json` and returns (exit code, the report).
pub(crate) fn verify_json(folder: &TestFolder, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["verify", "--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = folder.run(&all);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("verify --json printed no JSON ({e}): {stdout:?} {stderr:?}"));
    (code, report)
}

/// The digest `verify --json` reports for a folder that passes.
pub(crate) fn digest_of(folder: &TestFolder) -> String {
    let (code, report) = verify_json(folder, &[]);
    assert_eq!(code, 0, "verify failed: {report}");
    report["digest"].as_str().unwrap().to_string()
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The folder digest by FORMAT.md, from (doc, seq, hash hex) heads.
fn digest_from_heads(heads: &[(String, u64, String)]) -> String {
    let mut sorted: Vec<_> = heads.to_vec();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = Sha256::new();
    for (doc, seq, hash) in &sorted {
        h.update(format!("{doc}\t{seq}\t{hash}\n").as_bytes());
    }
    eventdir::event::encode_hex(h.finalize())
}

/// Re-seals one line by FORMAT.md: recomputes its data_hash from its salt and data bytes and its
/// hash from `prev`. D starts right after the fixed-length `data_hash` member and ends 75 bytes
/// before the end of the line (the lines edited here keep both in place).
fn reseal(line: &str, prev: &[u8; 32]) -> (String, [u8; 32]) {
    let salt_at = line.find(r#""salt":""#).expect("salt member") + 8;
    let salt: [u8; 16] =
        eventdir::event::decode_hex(&line[salt_at..salt_at + 32]).expect("hex salt");
    let dh_at = line.find(r#""data_hash":""#).expect("data_hash member") + 13;
    let d_start = dh_at + 64 + r#"","data":"#.len();
    assert_eq!(
        &line[dh_at + 64..d_start],
        r#"","data":"#,
        "data follows data_hash: {line}"
    );
    let d_end = line.len() - 75;
    assert!(
        line[d_end..].starts_with(r#","hash":""#),
        "line ends with the hash: {line}"
    );
    let data_hash = sha256(&[&salt, &line.as_bytes()[d_start..d_end]]);
    let mut e = line[..d_start].to_string();
    e.replace_range(dh_at..dh_at + 64, &eventdir::event::encode_hex(data_hash));
    let hash = sha256(&[prev, &sha256(&[e.as_bytes()]), &data_hash]);
    let sealed = format!(
        r#"{e}{},"hash":"{}"}}"#,
        &line[d_start..d_end],
        eventdir::event::encode_hex(hash)
    );
    (sealed, hash)
}

/// Replaces line `index` (0-based) of the stream file at `path` by `edit(line)`, re-sealed so
/// that its data_hash and the whole chain from it on are consistent again: what a forger who
/// knows the format (but cannot touch a digest kept elsewhere) can do.
pub(crate) fn rewrite_and_rechain(path: &Path, index: usize, edit: impl Fn(&str) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'));
    let mut prev = [0u8; 32];
    let mut out = String::new();
    for (n, line) in text.split_terminator('\n').enumerate() {
        let line = if n == index {
            edit(line)
        } else {
            line.to_string()
        };
        let line = if n >= index {
            let (sealed, hash) = reseal(&line, &prev);
            prev = hash;
            sealed
        } else {
            let v: Value = serde_json::from_str(&line).unwrap();
            prev = eventdir::event::decode_hex(v["hash"].as_str().unwrap()).unwrap();
            line
        };
        out.push_str(&line);
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

/// The stream file's path relative to the folder, with `/`, as verify reports it.
fn rel_file(folder: &TestFolder, doc: &str) -> String {
    let path = folder.stream_file(doc);
    let rel = path.strip_prefix(folder.path()).unwrap();
    rel.components()
        .map(|c| c.as_os_str().to_str().unwrap())
        .collect::<Vec<_>>()
        .join("/")
}

/// A folder with a three-event stream `note:1` (create, update, delete) and a one-event `note:2`.
fn three_event_folder() -> TestFolder {
    let f = TestFolder::new();
    f.ok(&["append", "note:1", "--data", r#"{"text":"hi","n":1}"#]);
    f.ok(&[
        "append",
        "note:1",
        "--set",
        "text=ho",
        "--meta",
        r#"{"actor":"ann"}"#,
    ]);
    f.ok(&["append", "note:1", "--type", "delete"]);
    f.ok(&["append", "note:2", "--data", r#"{"text":"other"}"#]);
    f
}

/// Byte offsets at which each line of `bytes` starts.
fn line_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' && i + 1 < bytes.len() {
            starts.push(i + 1);
        }
    }
    starts
}

#[test]
fn verify_passes_on_a_good_folder_and_prints_the_digest_last() {
    let f = three_event_folder();
    f.ok(&[
        "append",
        "Üser:Ann Lee",
        "--data",
        r#"{"name":"Ann","città":"Zürich"}"#,
    ]);

    let text = f.ok(&["verify"]);
    let last = text.lines().last().expect("verify prints something");
    let hex = last
        .strip_prefix("digest ")
        .expect("the last line is `digest HEX`");
    assert_eq!(hex.len(), 64);
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );

    let (code, report) = verify_json(&f, &[]);
    assert_eq!(code, 0);
    for member in REPORT_MEMBERS {
        assert!(
            report.get(member).is_some(),
            "verify --json has no {member}: {report}"
        );
    }
    assert_eq!(report["ok"], true);
    assert_eq!(report["digest"], hex);
    assert_eq!(report["streams"], 3);
    assert_eq!(report["events"], 5);
    assert_eq!(report["failed"], json!([]));
    assert_eq!(report["torn_tails"], json!([]));
    assert_eq!(report["foreign"], json!([]));
    assert_eq!(report["checkpoint_mismatches"], json!([]));
    assert_eq!(report["digest_mismatch"], Value::Null);
}

#[test]
fn verify_json_prints_exactly_one_object() {
    let f = three_event_folder();
    let (_, stdout, _) = f.run(&["verify", "--json"]);
    assert_eq!(stdout.trim_end().lines().count(), 1, "{stdout}");
    let mut stream = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
    assert!(stream.next().unwrap().unwrap().is_object());
    assert!(stream.next().is_none());
}

#[test]
fn an_empty_folder_has_the_digest_of_nothing() {
    let f = TestFolder::new();
    let (code, report) = verify_json(&f, &[]);
    assert_eq!(code, 0);
    assert_eq!(report["digest"], EMPTY_DIGEST);
    assert_eq!(report["streams"], 0);
    assert_eq!(report["events"], 0);
    assert!(
        f.ok(&["verify"])
            .ends_with(&format!("digest {EMPTY_DIGEST}\n"))
    );
}

#[test]
fn the_digest_is_the_format_md_hash_over_the_heads() {
    let f = three_event_folder();
    f.ok(&["append", "Üser:Ann Lee", "--data", "{}"]);
    f.ok(&["append", "order:a:b", "--data", "{}"]);
    f.ok(&["append", "order:a:b", "--set", "x=1"]);
    f.ok(&["append", "order:B", "--data", "{}"]);
    let heads: Vec<(String, u64, String)> = f
        .ndjson(&["ls"])
        .iter()
        .map(|l| {
            (
                l["doc"].as_str().unwrap().to_string(),
                l["seq"].as_u64().unwrap(),
                l["hash"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(heads.len(), 5);
    assert_eq!(digest_of(&f), digest_from_heads(&heads));
    // DOC arguments: only those streams are digested (in id order, whatever the argument order).
    let (code, report) = verify_json(&f, &["order:B", "note:2"]);
    assert_eq!(code, 0);
    let chosen: Vec<_> = heads
        .iter()
        .filter(|h| h.0 == "order:B" || h.0 == "note:2")
        .cloned()
        .collect();
    assert_eq!(report["digest"], digest_from_heads(&chosen));
    assert_eq!(report["streams"], 2);
}

#[test]
fn the_same_document_named_twice_is_verified_and_digested_once() {
    let f = three_event_folder();
    let (code, once) = verify_json(&f, &["note:1"]);
    assert_eq!(code, 0);
    let (code, twice) = verify_json(&f, &["note:1", "note:1"]);
    assert_eq!(code, 0);
    assert_eq!(twice["streams"], 1, "{twice}");
    assert_eq!(twice["events"], 3, "{twice}");
    assert_eq!(twice["digest"], once["digest"]);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_digest_depends_only_on_the_folder_state() {
    let f = three_event_folder();
    let digest = digest_of(&f);
    // Reading, replaying and verifying again change nothing.
    f.ok(&["get", "note:1"]);
    f.ok(&["replay"]);
    assert_eq!(digest_of(&f), digest);
    // A copy of the folder, with or without its cache, is a folder in the same state.
    let copy = tempfile::tempdir().unwrap();
    copy_tree(f.path(), copy.path());
    let _ = std::fs::remove_dir_all(copy.path().join("cache"));
    let out = eventdir()
        .arg("-C")
        .arg(copy.path())
        .args(["verify", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["digest"], digest);
    // The digest recorded in a checkpoint is the same value.
    let cp = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    f.ok(&["verify", "--save-checkpoint", cp.to_str().unwrap()]);
    let saved: Value = serde_json::from_slice(&std::fs::read(&cp).unwrap()).unwrap();
    assert_eq!(saved["digest"], digest);
    // A new event changes it; a torn tail does not.
    f.ok(&["append", "note:2", "--set", "text=x"]);
    let grown = digest_of(&f);
    assert_ne!(grown, digest);
    append_bytes(&f.stream_file("note:2"), br#"{"seq":1,"doc":"no"#);
    assert_eq!(digest_of(&f), grown);
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn flipping_any_bit_of_a_stream_is_detected_at_the_line_that_holds_it() {
    let f = three_event_folder();
    let doc = "note:1";
    let path = f.stream_file(doc);
    let file = rel_file(&f, doc);
    let original = std::fs::read(&path).unwrap();
    let starts = line_starts(&original);
    assert_eq!(starts.len(), 3);
    let (_, clean) = verify_json(&f, &[]);
    let digest = clean["digest"].as_str().unwrap().to_string();

    for offset in 0..original.len() {
        let mut damaged = original.clone();
        damaged[offset] ^= 1 << (offset % 8);
        std::fs::write(&path, &damaged).unwrap();
        let (code, report) = verify_json(&f, &[]);
        let line = starts.iter().rposition(|&s| s <= offset).unwrap();
        if offset == original.len() - 1 {
            // The final newline is gone: by FORMAT.md the last line is now bytes after the last
            // newline, a torn tail (an append that never finished), not corruption. The chain
            // cannot tell; the digest (or a checkpoint) can.
            assert_eq!(code, 0, "offset {offset}: {report}");
            assert_eq!(report["failed"], json!([]));
            assert_eq!(
                report["torn_tails"],
                json!([{"doc": doc, "after_seq": 1, "bytes": original.len() - starts[2]}]),
                "offset {offset}"
            );
            assert_ne!(report["digest"], digest.as_str());
            let (code, report) = verify_json(&f, &["--expect-digest", &digest]);
            assert_eq!(code, 4, "{report}");
        } else {
            assert_eq!(
                code,
                4,
                "offset {offset} (line {}) passed: {report}",
                line + 1
            );
            assert_eq!(report["ok"], false);
            let failed = report["failed"].as_array().unwrap();
            assert_eq!(failed.len(), 1, "offset {offset}: {report}");
            assert_eq!(failed[0]["doc"], doc, "offset {offset}: {report}");
            assert_eq!(failed[0]["seq"], line, "offset {offset}: {report}");
            assert_eq!(failed[0]["line"], line + 1, "offset {offset}: {report}");
            assert_eq!(
                failed[0]["file"],
                file.as_str(),
                "offset {offset}: {report}"
            );
            assert!(failed[0]["reason"].as_str().is_some_and(|r| !r.is_empty()));
            assert_eq!(report["torn_tails"], json!([]), "offset {offset}: {report}");
        }
    }
    std::fs::write(&path, &original).unwrap();
    assert_eq!(digest_of(&f), digest);
}

#[test]
fn the_human_report_names_the_document_seq_and_line_of_a_failure() {
    let f = three_event_folder();
    let path = f.stream_file("note:1");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen(r#""value":"ho""#, r#""value":"HO""#, 1);
    assert_ne!(edited, text);
    std::fs::write(&path, edited).unwrap();
    let (code, stdout, stderr) = f.run(&["verify"]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("note:1"), "{all}");
    assert!(all.contains("seq 1"), "{all}");
    assert!(all.contains(&rel_file(&f, "note:1")), "{all}");
    assert!(all.contains("line 2"), "{all}");
    assert!(
        stdout.lines().last().unwrap().starts_with("digest "),
        "{stdout}"
    );
}

#[test]
fn a_torn_tail_is_reported_and_passes() {
    let f = three_event_folder();
    let digest = digest_of(&f);
    let torn = br#"{"seq":3,"doc":"note:1","ty"#;
    append_bytes(&f.stream_file("note:1"), torn);
    let (code, report) = verify_json(&f, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(
        report["torn_tails"],
        json!([{"doc": "note:1", "after_seq": 2, "bytes": torn.len()}])
    );
    assert_eq!(report["failed"], json!([]));
    assert_eq!(report["events"], 4);
    assert_eq!(report["digest"], digest);
    let (code, stdout, stderr) = f.run(&["verify"]);
    assert_eq!(code, 0);
    assert!(format!("{stdout}{stderr}").contains("note:1"));
    assert!(stdout.ends_with(&format!("digest {digest}\n")));

    // A stream that is only a torn tail is a document without events: not in the digest.
    let g = TestFolder::new();
    g.ok(&["append", "a:1", "--data", "{}"]);
    let only_a = digest_of(&g);
    let lone = g.stream_file("b:1");
    std::fs::create_dir_all(lone.parent().unwrap()).unwrap();
    std::fs::write(&lone, br#"{"seq":0,"doc":"b:1""#).unwrap();
    let (code, report) = verify_json(&g, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["digest"], only_a);
    assert_eq!(
        report["torn_tails"],
        json!([{"doc": "b:1", "after_seq": null, "bytes": 20}])
    );
}

#[test]
fn a_cut_off_last_line_passes_the_chain_but_not_the_digest_or_a_checkpoint() {
    let f = three_event_folder();
    let cp = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let cp = cp.to_str().unwrap().to_string();
    f.ok(&["verify", "--save-checkpoint", &cp]);
    let digest = digest_of(&f);

    let path = f.stream_file("note:1");
    let bytes = std::fs::read(&path).unwrap();
    let starts = line_starts(&bytes);
    std::fs::write(&path, &bytes[..starts[2]]).unwrap();

    let (code, report) = verify_json(&f, &[]);
    assert_eq!(code, 0, "the chain alone cannot see a cut: {report}");
    assert_eq!(report["events"], 3);
    assert_ne!(report["digest"], digest.as_str());

    let (code, report) = verify_json(&f, &["--expect-digest", &digest]);
    assert_eq!(code, 4, "{report}");
    assert_eq!(report["ok"], false);
    assert!(report["digest_mismatch"].is_string(), "{report}");
    assert_eq!(report["failed"], json!([]));

    let (code, report) = verify_json(&f, &["--checkpoint", &cp]);
    assert_eq!(code, 4, "{report}");
    assert_eq!(report["ok"], false);
    let mismatches = report["checkpoint_mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 1, "{report}");
    assert_eq!(mismatches[0]["doc"], "note:1");

    // Without --checkpoint or --expect-digest the human report still passes.
    let (code, _, _) = f.run(&["verify"]);
    assert_eq!(code, 0);
    let (code, _, _) = f.run(&["verify", "--checkpoint", &cp]);
    assert_eq!(code, 4);
}

#[test]
fn a_grown_folder_still_passes_its_checkpoint() {
    let f = three_event_folder();
    let cp = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let cp = cp.to_str().unwrap().to_string();
    f.ok(&["verify", "--save-checkpoint", &cp]);
    let saved: Value = serde_json::from_slice(&std::fs::read(&cp).unwrap()).unwrap();
    assert_eq!(saved["format"], "eventdir-checkpoint");
    assert_eq!(saved["version"], 1);
    assert_eq!(saved["heads"]["note:1"]["seq"], 2);
    assert_eq!(saved["heads"].as_object().unwrap().len(), 2);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(f.path().join("eventdir.json")).unwrap()).unwrap();
    assert_eq!(saved["folder_id"], manifest["folder_id"]);

    f.ok(&["append", "note:1", "--data", r#"{"text":"again"}"#]);
    f.ok(&["append", "note:2", "--set", "text=more"]);
    f.ok(&["append", "note:3", "--data", "{}"]);
    let (code, report) = verify_json(&f, &["--checkpoint", &cp]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["checkpoint_mismatches"], json!([]));
    assert_eq!(report["ok"], true);
}

#[test]
fn a_removed_stream_fails_the_checkpoint() {
    let f = three_event_folder();
    let cp = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let cp = cp.to_str().unwrap().to_string();
    f.ok(&["verify", "--save-checkpoint", &cp]);
    std::fs::remove_file(f.stream_file("note:2")).unwrap();

    let (code, report) = verify_json(&f, &[]);
    assert_eq!(
        code, 0,
        "without a checkpoint nothing shows the loss: {report}"
    );
    let (code, report) = verify_json(&f, &["--checkpoint", &cp]);
    assert_eq!(code, 4, "{report}");
    let mismatches = report["checkpoint_mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 1, "{report}");
    assert_eq!(mismatches[0]["doc"], "note:2");

    // Emptied instead of removed: a stream without complete lines is a document without events.
    std::fs::write(f.stream_file("note:2"), b"").unwrap();
    let (code, report) = verify_json(&f, &["--checkpoint", &cp]);
    assert_eq!(code, 4, "{report}");
    assert_eq!(report["checkpoint_mismatches"][0]["doc"], "note:2");
}

#[test]
fn a_rewritten_event_fails() {
    // Edited in place: the data no longer matches data_hash.
    let f = three_event_folder();
    let path = f.stream_file("note:1");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen(r#""n":1"#, r#""n":2"#, 1)).unwrap();
    let (code, report) = verify_json(&f, &[]);
    assert_eq!(code, 4, "{report}");
    assert_eq!(report["failed"][0]["doc"], "note:1");
    assert_eq!(report["failed"][0]["seq"], 0);

    // Re-sealed (data_hash and hash recomputed) but not the events after it: the chain breaks at
    // the next event.
    let f = three_event_folder();
    let path = f.stream_file("note:1");
    let original = std::fs::read_to_string(&path).unwrap();
    rewrite_and_rechain(&path, 1, |l| {
        l.replace(r#""value":"ho""#, r#""value":"HA""#)
    });
    let resealed: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .take(2)
        .map(String::from)
        .chain(original.lines().skip(2).map(String::from))
        .collect();
    std::fs::write(&path, resealed.join("\n") + "\n").unwrap();
    let (code, report) = verify_json(&f, &[]);
    assert_eq!(code, 4, "{report}");
    assert_eq!(report["failed"][0]["seq"], 2, "{report}");

    // The stored hash changed but the data kept: the line does not end with its own hash.
    let f = three_event_folder();
    let path = f.stream_file("note:1");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let other = TestFolder::new();
    other.ok(&["append", "note:1", "--data", "{}"]);
    let foreign_hash = other.json(&["get", "note:1"])["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let keep = lines[0].len() - 66;
    lines[0] = format!("{}{foreign_hash}\"}}", &lines[0][..keep]);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let (code, report) = verify_json(&f, &[]);
    assert_eq!(code, 4, "{report}");
    assert_eq!(report["failed"][0]["seq"], 0);
}

#[test]
fn a_fully_rechained_rewrite_passes_the_chain_but_not_a_checkpoint() {
    let f = three_event_folder();
    let cp = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let cp = cp.to_str().unwrap().to_string();
    f.ok(&["verify", "--save-checkpoint", &cp]);
    let digest = digest_of(&f);
    rewrite_and_rechain(&f.stream_file("note:1"), 1, |l| {
        l.replace(r#""value":"ho""#, r#""value":"HA""#)
    });
    // Our re-sealing follows FORMAT.md: eventdir accepts the forged chain ...
    let (code, report) = verify_json(&f, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        f.json(&["at", "note:1", "--seq", "1"])["state"]["text"],
        "HA"
    );
    // ... and only what was kept outside the folder shows it.
    let (code, report) = verify_json(&f, &["--checkpoint", &cp]);
    assert_eq!(code, 4, "{report}");
    assert_eq!(report["checkpoint_mismatches"][0]["doc"], "note:1");
    let (code, report) = verify_json(&f, &["--expect-digest", &digest]);
    assert_eq!(code, 4, "{report}");
}

#[test]
fn a_stream_under_another_documents_name_fails() {
    let f = three_event_folder();
    std::fs::copy(f.stream_file("note:2"), f.stream_file("note:1")).unwrap();
    let (code, report) = verify_json(&f, &[]);
    assert_eq!(code, 4, "{report}");
    assert_eq!(report["failed"][0]["doc"], "note:1");
    assert_eq!(report["failed"][0]["seq"], 0);
}

#[test]
fn members_out_of_order_fail_even_when_the_hashes_match() {
    // FORMAT.md: "exactly these members in exactly this order"; "Checking a line": "JSON with
    // exactly the members above".
    let f = three_event_folder();
    rewrite_and_rechain(&f.stream_file("note:1"), 1, |l| {
        let swapped = l.replacen(
            r#""schema":null,"meta":{"actor":"ann"}"#,
            r#""meta":{"actor":"ann"},"schema":null"#,
            1,
        );
        assert_ne!(swapped, l);
        swapped
    });
    let (code, report) = verify_json(&f, &[]);
    assert_eq!(code, 4, "a line with meta before schema passed: {report}");
    assert_eq!(report["failed"][0]["seq"], 1);
}

#[test]
fn duplicate_and_unknown_members_fail_even_when_the_hashes_match() {
    let edits: [fn(&str) -> String; 2] = [
        |l| l.replacen(r#""meta":null,"#, r#""meta":null,"meta":null,"#, 1),
        |l| l.replacen(r#""meta":null,"#, r#""meta":null,"extra":1,"#, 1),
    ];
    for edit in edits {
        let f = three_event_folder();
        rewrite_and_rechain(&f.stream_file("note:1"), 2, edit);
        let (code, report) = verify_json(&f, &[]);
        assert_eq!(code, 4, "{report}");
        assert_eq!(report["failed"][0]["seq"], 2);
    }
}

#[test]
fn data_that_readers_cannot_parse_fails_verify() {
    // A lone surrogate escape and a number beyond the double range are valid JSON grammar, but
    // eventdir's own reader refuses them: verify must not pass a line that `get` cannot read.
    for bad in [r#""\ud800""#, "1e400"] {
        let f = three_event_folder();
        rewrite_and_rechain(&f.stream_file("note:1"), 0, |l| {
            let edited = l.replacen(r#""text":"hi""#, &format!(r#""text":{bad}"#), 1);
            assert_ne!(edited, l);
            edited
        });
        let (code, report) = verify_json(&f, &[]);
        let (get_code, _, get_err) = f.run(&["get", "note:1"]);
        assert_ne!(get_code, 101, "`get` panicked on data {bad}: {get_err}");
        assert_eq!(code, 4, "verify passed data {bad}: {report}");
        assert_eq!(report["failed"][0]["seq"], 0);
        assert_eq!(get_code, 4, "{get_err}");
        let (log_code, log_out, log_err) = f.run(&["log", "note:1"]);
        assert_eq!(log_code, 4, "log printed data {bad}: {log_out}");
        assert!(log_err.contains("data cannot be read"), "{log_err}");
        assert_eq!(
            log_out, "",
            "nothing is printed before the unreadable event"
        );
    }
}

#[test]
fn foreign_files_under_streams_are_listed_and_do_not_fail() {
    let f = three_event_folder();
    let digest = digest_of(&f);
    let real = f.stream_file("note:1");
    let shard_dir = real.parent().unwrap();
    let streams = f.path().join("streams");
    std::fs::write(streams.join("README.txt"), "notes\n").unwrap();
    std::fs::write(
        shard_dir.join("1.ndjson.bak"),
        std::fs::read(&real).unwrap(),
    )
    .unwrap();
    // The right name under the wrong shard, and a non-canonical encoding of `note:1`.
    std::fs::create_dir_all(streams.join("note/zz")).unwrap();
    std::fs::write(
        streams.join("note/zz/1.ndjson"),
        std::fs::read(&real).unwrap(),
    )
    .unwrap();
    std::fs::create_dir_all(streams.join("%6Eote").join(shard_dir.file_name().unwrap())).unwrap();
    std::fs::write(
        streams
            .join("%6Eote")
            .join(shard_dir.file_name().unwrap())
            .join("1.ndjson"),
        std::fs::read(&real).unwrap(),
    )
    .unwrap();

    let (code, report) = verify_json(&f, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["digest"], digest);
    assert_eq!(report["streams"], 2);
    let mut foreign: Vec<String> = report["foreign"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    foreign.sort();
    let shard = shard_dir.file_name().unwrap().to_str().unwrap();
    let mut expected = vec![
        "streams/README.txt".to_string(),
        format!("streams/note/{shard}/1.ndjson.bak"),
        "streams/note/zz/1.ndjson".to_string(),
        format!("streams/%6Eote/{shard}/1.ndjson"),
    ];
    expected.sort();
    assert_eq!(foreign, expected);
    // `ls` leaves them out.
    let docs: Vec<Value> = f.ndjson(&["ls"]).iter().map(|l| l["doc"].clone()).collect();
    assert_eq!(docs, vec![json!("note:1"), json!("note:2")]);
}

#[test]
fn verify_of_a_missing_document_fails() {
    let f = three_event_folder();
    let (code, report) = verify_json(&f, &["note:9"]);
    assert_eq!(code, 4, "{report}");
    assert_eq!(report["ok"], false);
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["doc"], "note:9");
    // Next to a present one, only the missing one is named.
    let (code, report) = verify_json(&f, &["note:1", "note:9"]);
    assert_eq!(code, 4);
    assert_eq!(report["failed"].as_array().unwrap().len(), 1);
    assert_eq!(report["failed"][0]["doc"], "note:9");
    // An invalid id is bad input.
    let (code, _, _) = f.run(&["verify", "nocolon"]);
    assert_eq!(code, 2);
}

#[test]
fn a_bad_expect_digest_value_is_a_usage_error() {
    let f = three_event_folder();
    let digest = digest_of(&f);
    for bad in [
        "",
        "xyz",
        &digest[..63],
        &format!("{digest}0"),
        &format!("{}g", &digest[..63]),
        &format!(" {}", &digest[1..]),
    ] {
        let (code, stdout, stderr) = f.run(&["verify", "--expect-digest", bad]);
        assert_eq!(code, 2, "--expect-digest {bad:?}: {stdout}{stderr}");
        assert!(!stderr.is_empty());
    }
    // A well-formed but different digest is an integrity failure.
    let other = format!(
        "{}{}",
        &digest[..63],
        if digest.ends_with('0') { "1" } else { "0" }
    );
    let (code, report) = verify_json(&f, &["--expect-digest", &other]);
    assert_eq!(code, 4, "{report}");
    assert!(report["digest_mismatch"].is_string());
    assert_eq!(report["digest"], digest);
    let (code, report) = verify_json(&f, &["--expect-digest", &digest]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["digest_mismatch"], Value::Null);
}

#[test]
fn a_stream_for_a_reserved_sys_id_is_foreign() {
    // FORMAT.md: "`sys:schema:TYPE` is the schema document of TYPE; no other `sys:` document
    // exists", and "Nothing else under streams/ is eventdir's". A well-formed, well-chained
    // stream at the place `sys:foo` would have is therefore foreign, not a document.
    let f = three_event_folder();
    let digest = digest_of(&f);
    let shard = eventdir::event::encode_hex(&sha256(&[b"sys:foo"])[..1]);
    let rel = format!("streams/sys/{shard}/foo.ndjson");
    let path = f.path().join(&rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::copy(f.stream_file("note:2"), &path).unwrap();
    rewrite_and_rechain(&path, 0, |l| {
        l.replacen(r#""doc":"note:2""#, r#""doc":"sys:foo""#, 1)
    });
    let (code, report) = verify_json(&f, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["foreign"], json!([rel]), "{report}");
    assert_eq!(report["streams"], 2, "{report}");
    assert_eq!(report["digest"], digest, "{report}");
}

#[test]
fn meta_that_is_neither_an_object_nor_null_fails() {
    // FORMAT.md: `meta` is "a JSON object given by the client ..., or null".
    for meta in [r#""actor""#, "[]", "1"] {
        let f = three_event_folder();
        rewrite_and_rechain(&f.stream_file("note:1"), 2, |l| {
            l.replacen(r#""meta":null"#, &format!(r#""meta":{meta}"#), 1)
        });
        let (code, report) = verify_json(&f, &[]);
        assert_eq!(code, 4, "meta {meta} passed: {report}");
        assert_eq!(report["failed"][0]["seq"], 2);
    }
}

#[test]
fn reading_streams_leaves_their_access_time_alone() {
    let folder = TestFolder::new();
    folder.ok(&["append", "order:1", "--data", r#"{"n":1}"#]);
    folder.ok(&["append", "order:1", "--set", "m=2"]);
    let file = folder.stream_file("order:1");
    // Older than the last write, so that a read would update it under `relatime` too.
    let long_ago = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::open(&file)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_accessed(long_ago))
        .unwrap();
    let dst = tempfile::tempdir().unwrap();
    let dst = dst.path().join("copy");
    folder.ok(&["verify"]);
    folder.ok(&["replay", "order:1"]);
    folder.ok(&["log", "order:1"]);
    folder.ok(&[
        "clone",
        folder.path().to_str().unwrap(),
        dst.to_str().unwrap(),
    ]);
    let accessed = std::fs::metadata(&file).unwrap().accessed().unwrap();
    assert_eq!(accessed, long_ago);
}

#[test]
fn naming_documents_holds_only_those_to_the_checkpoint() {
    let f = three_event_folder();
    let cp = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let cp = cp.to_str().unwrap().to_string();
    f.ok(&["verify", "--save-checkpoint", &cp]);
    std::fs::remove_file(f.stream_file("note:2")).unwrap();

    let (code, report) = verify_json(&f, &["note:1", "--checkpoint", &cp]);
    assert_eq!(code, 0, "note:2 was not asked about: {report}");
    assert_eq!(report["checkpoint_mismatches"], json!([]));

    let (code, report) = verify_json(&f, &["note:2", "note:1", "--checkpoint", &cp]);
    assert_eq!(code, 4, "{report}");
    assert_eq!(report["checkpoint_mismatches"].as_array().unwrap().len(), 1);
    assert_eq!(report["checkpoint_mismatches"][0]["doc"], "note:2");
    assert_eq!(report["failed"][0]["doc"], "note:2");
}
