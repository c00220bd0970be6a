//! Hostile input and hostile folders: deep nesting, huge numbers, invalid UTF-8 and NUL bytes,
//! oversized payloads, document ids built to escape the folder or to collide, and a folder as
//! an attacker may leave it (symlinks, directories where files belong, a newer manifest,
//! foreign files). Nothing crashes, nothing is written outside the folder, and every refusal is
//! one clear line that changes nothing.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

use crate::append::{
    assert_folder_unchanged, assert_one_line_error, folder_with_limit, refused, refused_with_stdin,
};
use crate::common::*;

/// `[` nested `depth` levels and closed again.
fn deep_array(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

/// Runs a command with stdin and checks that it did not crash (no signal, not exit 101).
fn run_stdin(folder: &TestFolder, args: &[&OsStr], stdin: &[u8]) -> Output {
    let out = folder
        .cmd()
        .args(args)
        .write_stdin(stdin.to_vec())
        .output()
        .expect("run eventdir");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0..=5)),
        "{args:?}: crashed with {:?}: {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    out
}

/// Asserts exit 2, one line on stderr, and the folder unchanged, for arguments that may not be
/// UTF-8.
fn refused_os(folder: &TestFolder, args: &[&OsStr], stdin: &[u8]) -> String {
    let before = folder.snapshot();
    let out = run_stdin(folder, args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    assert!(out.stdout.is_empty(), "{args:?}");
    assert_one_line_error(&stderr);
    assert_folder_unchanged(&before, &folder.snapshot(), &args);
    stderr
}

/// Runs `append --batch` with `lines` and asserts every request is refused with exit 2 and the
/// folder is unchanged.
fn batch_refused(folder: &TestFolder, lines: &[String]) {
    let before = folder.snapshot();
    let stdin: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let out = run_stdin(
        folder,
        &[OsStr::new("append"), OsStr::new("--batch")],
        stdin.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), lines.len(), "{stdout}");
    for line in stdout.lines() {
        let result: Value = serde_json::from_str(line).expect("one JSON result a request");
        assert_eq!(result["error"]["code"], 2, "{result}");
    }
    assert_folder_unchanged(&before, &folder.snapshot(), &"append --batch");
}

#[test]
fn nesting_100000_levels_deep_is_refused_everywhere_without_a_crash() {
    let f = TestFolder::new();
    f.ok(&["append", "deep:1", "--data", r#"{"a":1}"#]);
    // On the command line (an argument is at most 128 KiB): unclosed 100 000 levels, and
    // closed 60 000 levels.
    let unclosed = "[".repeat(100_000);
    let closed = deep_array(60_000);
    let object = format!("{}1{}", r#"{"a":"#.repeat(20_000), "}".repeat(20_000));
    for deep in [&unclosed, &closed, &object] {
        refused(&f, &["append", "deep:2", "--data", deep], 2);
        refused(&f, &["append", "deep:1", "--patch", deep], 2);
        refused(&f, &["append", "deep:1", "--set", "a=1", "--meta", deep], 2);
    }
    // A --set VALUE that is JSON by syntax but too deep is refused (not taken as a string).
    for deep in [&closed, &object] {
        refused(&f, &["append", "deep:1", "--set", &format!("a={deep}")], 2);
    }
    // One that is not JSON at all (never closed) is a string, as documented.
    f.ok(&["append", "deep:1", "--set", &format!("s={unclosed}")]);
    assert_eq!(f.json(&["get", "deep:1"])["state"]["s"], unclosed.as_str());
    // Through stdin: 100 000 levels, closed.
    let deep = deep_array(100_000);
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
    for stdin in [&deep, &deep_object] {
        refused_with_stdin(
            &f,
            &["append", "deep:2", "--data", "-"],
            Some(stdin.as_bytes()),
            2,
        );
        refused_with_stdin(
            &f,
            &["append", "deep:1", "--patch", "-"],
            Some(stdin.as_bytes()),
            2,
        );
        refused_with_stdin(
            &f,
            &["append", "deep:1", "--set", "a=1", "--meta", "-"],
            Some(stdin.as_bytes()),
            2,
        );
        // In batch lines: the whole line, the data, a set value, the meta.
        batch_refused(
            &f,
            &[
                stdin.to_string(),
                format!(r#"{{"doc":"deep:2","data":{{"a":{stdin}}}}}"#),
                format!(r#"{{"doc":"deep:1","data":{stdin}}}"#),
                format!(r#"{{"doc":"deep:1","set":{{"a":{stdin}}}}}"#),
                format!(r#"{{"doc":"deep:1","set":{{"a":1}},"meta":{stdin}}}"#),
            ],
        );
    }
    // The documented limit, exactly: 100 levels are stored, 101 are not.
    let at_limit = format!("{{\"a\":{}}}", deep_array(99));
    f.ok(&["append", "deep:3", "--data", &at_limit]);
    let over = format!("{{\"a\":{}}}", deep_array(100));
    let stderr = refused(&f, &["append", "deep:4", "--data", &over], 2);
    assert!(stderr.contains("at most 100"), "{stderr}");
    f.ok(&["verify"]);
}

#[test]
fn huge_numbers_are_refused_or_stored_as_doubles() {
    let f = TestFolder::new();
    for number in ["1e400", "-1e400", "1E+999"] {
        let stderr = refused(
            &f,
            &["append", "n:1", "--data", &format!(r#"{{"n":{number}}}"#)],
            2,
        );
        assert!(stderr.contains("number out of range"), "{stderr}");
        refused(&f, &["append", "n:1", "--set", &format!("n={number}")], 2);
    }
    // Beyond 64 bits: the nearest double.
    let out = f.ok(&[
        "append",
        "n:1",
        "--data",
        r#"{"n":123456789012345678901234567890}"#,
    ]);
    assert!(
        out.contains(r#""data":{"n":1.2345678901234568e+29}"#),
        "{out}"
    );
    let state = &f.json(&["get", "n:1"])["state"];
    assert_eq!(state["n"].as_f64(), Some(1.2345678901234568e29));
    // Within 64 bits: exact. Underflow: zero.
    f.ok(&[
        "append",
        "n:1",
        "--set",
        "max=18446744073709551615",
        "--set",
        "min=-9223372036854775808",
    ]);
    f.ok(&["append", "n:1", "--set", "tiny=1e-400"]);
    let state = &f.json(&["get", "n:1"])["state"];
    assert_eq!(state["max"].as_u64(), Some(u64::MAX));
    assert_eq!(state["min"].as_i64(), Some(i64::MIN));
    assert_eq!(state["tiny"].as_f64(), Some(0.0));
    f.ok(&["verify"]);
}

#[test]
fn invalid_utf8_and_nul_bytes_are_refused_in_data_and_ids() {
    let f = TestFolder::new();
    let os = |s: &'static str| OsStr::new(s);
    let data_stdin = [os("append"), os("u:1"), os("--data"), os("-")];
    for bytes in [
        &b"{\"a\":\"\xff\"}"[..],
        b"{\"a\":\"\xc3\"}",
        b"{\"a\":\"x\x00y\"}",
        b"{\"a\":1}\x00",
        b"\x00{\"a\":1}",
        b"{\"\xed\xa0\x80\":1}",
    ] {
        refused_os(&f, &data_stdin, bytes);
    }
    // Invalid UTF-8 in arguments: the id, --data, --set.
    refused_os(
        &f,
        &[
            os("append"),
            OsStr::from_bytes(b"u:\xff"),
            os("--data"),
            os("{}"),
        ],
        b"",
    );
    refused_os(
        &f,
        &[
            os("append"),
            os("u:1"),
            os("--data"),
            OsStr::from_bytes(b"{\"a\":\"\xff\"}"),
        ],
        b"",
    );
    refused_os(&f, &[os("get"), OsStr::from_bytes(b"u:\xc0\x80")], b"");
    // NUL and other control characters in ids, through batch lines (an argument cannot hold
    // NUL) and arguments.
    batch_refused(
        &f,
        &[
            r#"{"doc":"u:a\u0000b","data":{}}"#.to_string(),
            r#"{"doc":"u\u0000:1","data":{}}"#.to_string(),
            r#"{"doc":"u:\u001b[31m","data":{}}"#.to_string(),
            "{\"doc\":\"u:\u{202E}gpj.exe\",\"data\":{}}".to_string(),
        ],
    );
    refused(&f, &["append", "u:a\tb", "--data", "{}"], 2);
    refused(&f, &["append", "u:a\u{7f}", "--data", "{}"], 2);
    // A batch line that is not UTF-8 is refused on its own; the next line still applies.
    let out = run_stdin(
        &f,
        &[os("append"), os("--batch")],
        b"{\"doc\":\"u:\xff\",\"data\":{}}\n{\"doc\":\"u:2\",\"data\":{}}\n",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results[0]["error"]["code"], 2, "{stdout}");
    assert_eq!(results[1]["seq"], 0, "{stdout}");
    // An escaped NUL is valid JSON text and is stored as such.
    f.ok(&["append", "u:3", "--data", r#"{"a":"x\u0000y"}"#]);
    assert_eq!(f.json(&["get", "u:3"])["state"]["a"], "x\u{0}y");
    f.ok(&["verify"]);
}

#[test]
fn a_100_mb_payload_is_refused_by_the_default_limit() {
    let f = TestFolder::new();
    let mut payload = Vec::with_capacity(100_000_020);
    payload.extend_from_slice(b"{\"blob\":\"");
    payload.resize(100_000_009, b'x');
    payload.extend_from_slice(b"\"}");
    let stderr = refused_with_stdin(&f, &["append", "big:1", "--data", "-"], Some(&payload), 2);
    assert!(
        stderr.contains("stdin holds more than the folder's limit of 16777216 bytes"),
        "{stderr}"
    );
    // Just over the limit once encoded: refused by the event-size check.
    let blob = "x".repeat(16 * 1024 * 1024 - 300);
    let data = format!("{{\"blob\":\"{blob}\"}}");
    let stderr = refused_with_stdin(
        &f,
        &["append", "big:1", "--data", "-"],
        Some(data.as_bytes()),
        2,
    );
    assert!(
        stderr.contains("exceeds the limit of 16777216 bytes"),
        "{stderr}"
    );
}

#[test]
fn a_multi_megabyte_event_is_stored_and_read_back_in_a_folder_with_a_larger_limit() {
    let f = folder_with_limit(200_000_000);
    let blob = "y".repeat(20_000_000);
    let data = format!("{{\"blob\":\"{blob}\",\"n\":1}}");
    let out = f
        .cmd()
        .args(["append", "big:1", "--data", "-"])
        .write_stdin(data)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.ok(&["append", "big:1", "--set", "n=2"]);
    let state = f.json(&["get", "big:1"]);
    assert_eq!(
        state["state"]["blob"].as_str().map(str::len),
        Some(20_000_000)
    );
    assert_eq!(state["state"]["n"], 2);
    let log = f.ndjson(&["log", "big:1"]);
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[0]["data"]["blob"].as_str().map(str::len),
        Some(20_000_000)
    );
    let report = f.json(&["verify", "--json"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events"], 2, "{report}");

    // A reader with a smaller limit refuses the line instead of reading it into memory.
    let manifest_path = f.path().join("eventdir.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["max_event_bytes"] = json!(1_000_000);
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    let out = f.cmd().args(["get", "big:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_one_line_error(&String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("limit"),
        "{out:?}"
    );
}

/// Ids meant to escape the folder, to look like paths, or to collide with one another.
fn hostile_ids() -> Vec<(String, bool)> {
    let accepted = |s: &str| (s.to_string(), true);
    let refused = |s: &str| (s.to_string(), false);
    vec![
        refused("../x"),
        refused("a/../../b"),
        refused(".."),
        refused("/etc/passwd"),
        refused(":x"),
        refused("x:"),
        refused("x:\u{7}"),
        refused("x:a\nb"),
        refused("x:\u{200B}"),
        refused("sys:x"),
        refused("sys:schema:order"),
        accepted("x:../../etc/passwd"),
        accepted("x:/etc/passwd"),
        accepted("/etc:passwd"),
        accepted("..:.."),
        accepted(".:."),
        accepted("x:."),
        accepted("x:.."),
        accepted("x:%2e%2e"),
        accepted("x:%2E%2E"),
        accepted("x:%2e%2e%2fetc"),
        accepted("%2e%2e:x"),
        accepted("x:a/../../../b"),
        accepted("x:\\..\\..\\b"),
        accepted("x:C:\\Windows"),
        accepted("x:~"),
        accepted("x:.hidden"),
        accepted("x:a.ndjson"),
        accepted("x:a.ndjson/b"),
        accepted("x:*"),
        accepted("x:$HOME"),
        // NFC and NFD of the same text, and case variants: all different documents.
        accepted("t:\u{e9}"),
        accepted("t:e\u{301}"),
        accepted("t:ab"),
        accepted("t:Ab"),
        accepted("t:AB"),
        accepted("T:ab"),
        accepted(&format!("t:{}", "a".repeat(200))),
        refused(&format!("t:{}", "a".repeat(201))),
        accepted(&format!("t:{}", "A".repeat(80))),
        refused(&format!("t:{}", "A".repeat(81))),
        accepted(&format!("{}:x", "t".repeat(64))),
        refused(&format!("{}:x", "t".repeat(65))),
    ]
}

#[test]
fn hostile_document_ids_stay_inside_the_folder_and_never_share_a_file() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("f");
    eventdir().arg("init").arg(&root).assert().success();
    let run = |args: &[&str]| run_in(&root, args);
    let mut accepted = Vec::new();
    for (id, ok) in hostile_ids() {
        let before = snapshot_tree(&root);
        let data = json!({ "id": id }).to_string();
        let out = run(&["append", &id, "--data", &data]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if ok {
            assert_eq!(out.status.code(), Some(0), "{id:?}: {stderr}");
            accepted.push(id);
        } else {
            assert_eq!(
                out.status.code(),
                Some(2),
                "{id:?} was not refused: {out:?}"
            );
            assert_one_line_error(&stderr);
            assert_folder_unchanged(&before, &snapshot_tree(&root), &id);
        }
    }
    // Nothing was created beside the folder.
    let beside: Vec<PathBuf> = std::fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        beside,
        std::slice::from_ref(&root),
        "files appeared beside the folder"
    );
    // One stream file per accepted id, at TYPE/SHARD/NAME.ndjson under streams/, distinct even
    // ignoring case, and each holding its own document.
    let files: Vec<PathBuf> = snapshot_tree(&root.join("streams"))
        .into_iter()
        .filter(|(_, bytes)| bytes.is_some())
        .map(|(path, _)| path)
        .collect();
    assert_eq!(files.len(), accepted.len(), "{files:?}");
    let mut lowered: Vec<String> = files
        .iter()
        .map(|p| p.to_string_lossy().to_lowercase())
        .collect();
    lowered.sort();
    lowered.dedup();
    assert_eq!(
        lowered.len(),
        files.len(),
        "two stream files differ only by case"
    );
    for file in &files {
        assert_eq!(file.components().count(), 3, "{}", file.display());
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(!name.starts_with('.'), "{name}");
        assert!(name.ends_with(".ndjson"), "{name}");
    }
    for id in &accepted {
        let out = run(&["get", id]);
        assert_eq!(out.status.code(), Some(0), "{id:?}: {out:?}");
        let state: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            state["state"]["id"],
            id.as_str(),
            "{id:?} reads another document"
        );
        let path = root
            .join("streams")
            .join(eventdir::DocId::parse(id).unwrap().relative_path());
        assert!(
            files.contains(
                &path
                    .strip_prefix(root.join("streams"))
                    .unwrap()
                    .to_path_buf()
            )
        );
    }
    let listed: Vec<String> = String::from_utf8(run(&["ls"]).stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["doc"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut expected = accepted.clone();
    expected.sort();
    assert_eq!(listed, expected);
    let report: Value = serde_json::from_slice(&run(&["verify", "--json"]).stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["foreign"], json!([]), "{report}");
    assert_eq!(report["streams"], accepted.len(), "{report}");
}

/// A folder with `order:42` (two events) and a file outside it.
fn folder_and_outside() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("f");
    eventdir().arg("init").arg(&root).assert().success();
    let run = |args: &[&str]| {
        eventdir()
            .arg("-C")
            .arg(&root)
            .args(args)
            .assert()
            .success();
    };
    run(&["append", "order:42", "--data", r#"{"a":1}"#]);
    run(&["append", "order:42", "--set", "b=2"]);
    let outside = outer.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    (outer, root, outside)
}

/// Every path under `root`: a directory, a file's bytes, or a symlink's target (never followed).
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link to {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path);
                "dir".to_string()
            } else {
                format!("file {:?}", std::fs::read(&path).unwrap())
            };
            out.insert(rel, what);
        }
    }
    out
}

fn run_in(root: &Path, args: &[&str]) -> Output {
    eventdir().arg("-C").arg(root).args(args).output().unwrap()
}

/// Asserts `args` fails with a one-line error (any code but 0) and changes nothing.
fn fails_cleanly(root: &Path, outside: &Path, args: &[&str]) -> String {
    let before = (tree(root), tree(outside));
    let out = run_in(root, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        matches!(out.status.code(), Some(1..=5)),
        "{args:?} did not fail: {out:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_one_line_error(&stderr);
    assert_eq!(before.0, tree(root), "{args:?} changed the folder");
    assert_eq!(before.1, tree(outside), "{args:?} changed the outside");
    stderr
}

fn verify_lists_foreign(root: &Path, foreign: &[&str]) -> Value {
    let out = run_in(root, &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"], json!([]), "{report}");
    let mut listed: Vec<&str> = report["foreign"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    listed.sort();
    let mut foreign = foreign.to_vec();
    foreign.sort();
    assert_eq!(listed, foreign, "{report}");
    report
}

#[test]
fn a_stream_file_replaced_by_a_symlink_is_never_followed() {
    let (_outer, root, outside) = folder_and_outside();
    let rel = eventdir::DocId::parse("order:42").unwrap().relative_path();
    let stream = root.join("streams").join(&rel);
    // The symlink points at a copy of the real stream, so following it would "work".
    let target = outside.join("42.ndjson");
    std::fs::rename(&stream, &target).unwrap();
    std::os::unix::fs::symlink(&target, &stream).unwrap();
    for args in [
        &["get", "order:42"][..],
        &["log", "order:42"],
        &["at", "order:42", "--seq", "0"],
        &["append", "order:42", "--set", "c=3"],
        &["append", "order:42", "--data", "{}"],
    ] {
        let stderr = fails_cleanly(&root, &outside, args);
        assert!(stderr.contains("symlink"), "{args:?}: {stderr}");
    }
    // Asked for by name, verify names it as a failure.
    let before = tree(&outside);
    let out = run_in(&root, &["verify", "--json", "order:42"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"][0]["doc"], "order:42", "{report}");
    let reason = report["failed"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("symlink"), "{reason}");
    assert_eq!(before, tree(&outside));
    let out = run_in(&root, &["ls"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "ls lists a symlink: {out:?}");
    let report = verify_lists_foreign(&root, &[&format!("streams/{}", rel.display())]);
    assert_eq!(report["events"], 0, "{report}");
    assert_eq!(before, tree(&outside));
}

#[test]
fn a_type_directory_replaced_by_a_symlink_is_never_followed() {
    let (_outer, root, outside) = folder_and_outside();
    let types = root.join("streams").join("order");
    let target = outside.join("order");
    std::fs::rename(&types, &target).unwrap();
    std::os::unix::fs::symlink(&target, &types).unwrap();
    let report = verify_lists_foreign(&root, &["streams/order"]);
    assert_eq!(report["events"], 0, "{report}");
    assert!(run_in(&root, &["ls"]).stdout.is_empty());
    // What verify and ls call foreign, no other command may read or write through.
    // Writing through it would put events outside the folder; reading through it would serve
    // a stream verify never checks.
    for args in [
        &["append", "order:42", "--set", "c=3"][..],
        &["append", "order:43", "--data", "{}"],
        &["get", "order:42"],
        &["log", "order:42"],
    ] {
        fails_cleanly(&root, &outside, args);
    }
}

#[test]
fn a_directory_where_a_stream_file_belongs_is_refused_and_left_alone() {
    let (_outer, root, outside) = folder_and_outside();
    let rel = eventdir::DocId::parse("order:7").unwrap().relative_path();
    let stream = root.join("streams").join(&rel);
    std::fs::create_dir_all(&stream).unwrap();
    std::fs::write(stream.join("inside"), b"not a stream").unwrap();
    for args in [
        &["get", "order:7"][..],
        &["log", "order:7"],
        &["append", "order:7", "--data", "{}"],
        &["append", "order:7", "--set", "a=1"],
    ] {
        let stderr = fails_cleanly(&root, &outside, args);
        assert!(stderr.contains("directory"), "{args:?}: {stderr}");
    }
    let listed: Vec<Value> = String::from_utf8(run_in(&root, &["ls"]).stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["doc"], "order:42");
    verify_lists_foreign(&root, &[&format!("streams/{}", rel.display())]);
}

#[test]
fn a_manifest_of_a_newer_format_is_refused_with_a_clear_error() {
    let (_outer, root, outside) = folder_and_outside();
    let manifest_path = root.join("eventdir.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["version"] = json!(2);
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    for args in [
        &["get", "order:42"][..],
        &["log", "order:42"],
        &["ls"],
        &["verify"],
        &["export"],
        &["append", "order:42", "--set", "c=3"],
    ] {
        let stderr = fails_cleanly(&root, &outside, args);
        assert!(
            stderr.contains("format version 2, newer than this eventdir supports"),
            "{args:?}: {stderr}"
        );
        assert_eq!(run_in(&root, args).status.code(), Some(1));
    }
    let dst = outside.join("copy");
    let out = eventdir()
        .arg("clone")
        .arg(&root)
        .arg(&dst)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        !dst.exists(),
        "clone of a newer folder created {}",
        dst.display()
    );
}

#[test]
fn foreign_files_are_ignored_by_ls_and_listed_by_verify() {
    let (_outer, root, _outside) = folder_and_outside();
    let doc = eventdir::DocId::parse("order:42").unwrap();
    let rel = doc.relative_path();
    let real = std::fs::read(root.join("streams").join(&rel)).unwrap();
    let shard = doc.shard();
    let wrong_shard = if shard == "00" { "01" } else { "00" };
    let foreign = [
        "streams/README.txt".to_string(),
        "streams/order/notes.txt".to_string(),
        format!("streams/order/{shard}/42.ndjson.bak"),
        format!("streams/order/{shard}/%34%32.ndjson"),
        format!("streams/order/{shard}/.hidden.ndjson"),
        format!("streams/order/{wrong_shard}/42.ndjson"),
        "streams/%4Frder/00/42.ndjson".to_string(),
        "streams/sys/00/x.ndjson".to_string(),
    ];
    for path in &foreign {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Copies of a real stream: valid content, under names eventdir would not write.
        std::fs::write(&path, &real).unwrap();
    }
    let listed: Vec<Value> = String::from_utf8(run_in(&root, &["ls"]).stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["doc"], "order:42");
    let expected: Vec<&str> = foreign.iter().map(String::as_str).collect();
    let report = verify_lists_foreign(&root, &expected);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events"], 2, "{report}");
    // Foreign files stay out of exports and clones.
    let export = run_in(&root, &["export"]);
    assert_eq!(String::from_utf8_lossy(&export.stdout).lines().count(), 2);
}

#[test]
fn a_refused_apply_into_a_new_directory_creates_nothing() {
    let work = tempfile::tempdir().unwrap();
    let id = "0757a7fb-d9a9-45f4-81ff-e7a6363ebae8";
    for (n, line) in [
        format!("{{\"origin\":\"{id}\",[1,2]\n"),
        format!("{{\"origin\":\"{id}\",\"seq\":0}}\n"),
        format!("{{\"origin\":\"{id}\",\"seq\":0,\"doc\":\"../x\"}}\n"),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = work.path().join(format!("replica{n}"));
        let out = eventdir()
            .arg("apply")
            .arg(&dir)
            .write_stdin(line.clone())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{line}: {out:?}");
        assert_one_line_error(&String::from_utf8_lossy(&out.stderr));
        assert!(
            !dir.exists(),
            "{line}: the refused input created {}: {:?}",
            dir.display(),
            snapshot_tree(&dir).keys().collect::<Vec<_>>()
        );
    }
}

/// A patch whose later `move` fails after earlier operations succeeded: the `move` removes its
/// source before its target turns out to be invalid.
const FAILING_MOVE: &str =
    r#"[{"op":"add","path":"/a/c","value":1},{"op":"move","from":"/a","path":"/x/y"}]"#;

#[test]
fn a_patch_whose_move_fails_after_other_operations_is_refused_without_a_crash() {
    let f = TestFolder::new();
    f.ok(&["append", "m:1", "--data", r#"{"a":{"b":1}}"#]);
    let stderr = refused(&f, &["append", "m:1", "--patch", FAILING_MOVE], 2);
    assert!(stderr.contains("patch does not apply"), "{stderr}");
    refused_with_stdin(
        &f,
        &["append", "m:1", "--patch", "-"],
        Some(FAILING_MOVE.as_bytes()),
        2,
    );
    // In a batch, the request is refused and the others still apply.
    batch_refused(&f, &[format!(r#"{{"doc":"m:1","data":{FAILING_MOVE}}}"#)]);
    let stdin = format!(
        "{{\"doc\":\"m:1\",\"data\":{FAILING_MOVE}}}\n{{\"doc\":\"m:1\",\"set\":{{\"n\":1}}}}\n"
    );
    let out = run_stdin(
        &f,
        &[OsStr::new("append"), OsStr::new("--batch")],
        stdin.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 2, "{stdout}");
    assert_eq!(results[0]["error"]["code"], 2, "{stdout}");
    assert_eq!(results[1]["seq"], 1, "{stdout}");
    assert_eq!(
        f.json(&["get", "m:1"])["state"],
        json!({"a": {"b": 1}, "n": 1})
    );
}

#[test]
fn a_forged_event_whose_patch_cannot_apply_is_reported_as_corruption() {
    use eventdir::event::{EventType, NewEvent, parse_line};
    let f = TestFolder::new();
    let doc = "m:1";
    f.ok(&["append", doc, "--data", r#"{"a":{"b":1}}"#]);
    // A forger who recomputes hashes appends an update whose patch does not apply.
    let path = f.stream_file(doc);
    let text = std::fs::read_to_string(&path).unwrap();
    let id = eventdir::DocId::parse(doc).unwrap();
    let first = parse_line(
        text.trim_end().to_string(),
        &id,
        &eventdir::event::ZERO_HASH,
    )
    .unwrap();
    let patch: Value = serde_json::from_str(FAILING_MOVE).unwrap();
    let forged = NewEvent {
        seq: 1,
        doc: &id,
        kind: EventType::Update,
        timestamp: first.timestamp(),
        schema: None,
        meta: None,
        data: Some(&patch),
    }
    .encode(&first.hash);
    std::fs::write(&path, format!("{text}{}", forged.line)).unwrap();
    // The chain checks out, so verify passes; the readers that fold name the seq.
    let report = f.json(&["verify", "--json"]);
    assert_eq!(report["ok"], true, "{report}");
    let mut wrong = Vec::new();
    for args in [
        &["get", doc][..],
        &["replay", doc],
        &["at", doc, "--seq", "1"],
        &["append", doc, "--set", "n=1"],
    ] {
        let out = f.cmd().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or_default().to_string();
        if out.status.code() != Some(4) || stderr.lines().count() != 1 || !first.contains("seq 1") {
            wrong.push(format!("{args:?}: exit {:?}: {first}", out.status.code()));
        }
    }
    assert!(
        wrong.is_empty(),
        "expected exit 4 naming seq 1:\n{}",
        wrong.join("\n")
    );
}
