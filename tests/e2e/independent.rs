//! The independent verifier (tests/independent/verify_stream.py, written from FORMAT.md alone
//! in Python) must accept every folder eventdir writes, compute the same folder digest, and
//! refuse the same damage. Two implementations that agree byte for byte are the evidence that
//! FORMAT.md is complete enough to read a folder without eventdir.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;
use crate::verify::{digest_of, rewrite_and_rechain, verify_json};

/// The Python verifier.
pub(crate) fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/independent/verify_stream.py")
}

/// Whether python3 can run. When it cannot, tests skip with a message, except on CI
/// (`CI=true`), where a missing python3 is a failure.
pub(crate) fn have_python() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    let have = *HAVE.get_or_init(|| {
        Command::new("python3")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !have {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("python3 is required on CI (CI=true) for the independent verifier tests");
        }
        eprintln!("skipped: python3 is not installed, so the independent verifier cannot run");
    }
    have
}

/// Runs the Python verifier on a folder: (exit code, stdout, stderr).
pub(crate) fn python_verify(folder: &Path) -> (i32, String, String) {
    let out = Command::new("python3")
        .arg(script())
        .arg(folder)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3");
    (
        out.status.code().expect("exited normally"),
        String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    )
}

/// Asserts that the Python verifier passes and returns the digest it printed last.
pub(crate) fn python_digest(folder: &Path) -> String {
    let (code, stdout, stderr) = python_verify(folder);
    assert_eq!(
        code, 0,
        "the independent verifier failed:\n{stdout}{stderr}"
    );
    let last = stdout.lines().last().expect("a digest line").to_string();
    assert_eq!(last.len(), 64, "{stdout}");
    assert!(
        last.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    last
}

/// Asserts that the Python verifier fails and names `doc` at `seq`.
fn assert_python_fails(folder: &Path, doc: &str, seq: u64) {
    let (code, stdout, stderr) = python_verify(folder);
    assert_eq!(
        code, 1,
        "the independent verifier passed damage:\n{stdout}{stderr}"
    );
    let prefix = format!("FAIL {doc} seq {seq}: ");
    assert!(
        stdout.lines().any(|l| l.starts_with(&prefix)),
        "expected a line starting {prefix:?}:\n{stdout}{stderr}"
    );
    assert!(stdout.lines().all(|l| l.starts_with("FAIL ")), "{stdout}");
}

/// A folder with creates, updates (--set and --patch), deletes and a re-create, meta, unicode
/// ids and values, awkward numbers, and ids at the length limits.
fn varied_folder() -> TestFolder {
    let f = TestFolder::new();
    f.ok(&[
        "append",
        "order:1",
        "--data",
        r#"{"status":"open","qty":1,"items":[{"sku":"A-1","qty":2}],"note":"tab\there \"quoted\" back\\slash \u0001 \u2028 end","zz":{"b":1,"a":[true,false,null]}}"#,
        "--meta",
        r#"{"actor":"ann","correlation":"c-1","event":"OrderPlaced"}"#,
    ]);
    f.ok(&[
        "append",
        "order:1",
        "--set",
        "status=paid",
        "--set",
        "/items/0/qty=3",
    ]);
    f.ok(&[
        "append",
        "order:1",
        "--patch",
        r#"[{"op":"test","path":"/qty","value":1.0},{"op":"remove","path":"/note"},{"op":"add","path":"/items/-","value":{"sku":"B-7"}},{"op":"move","from":"/zz","path":"/moved"},{"op":"copy","from":"/status","path":"/was"}]"#,
    ]);
    f.ok(&[
        "append",
        "order:1",
        "--type",
        "delete",
        "--meta",
        r#"{"actor":"bob","reason":"dup"}"#,
    ]);
    f.ok(&["append", "order:1", "--data", r#"{"status":"reopened"}"#]);
    f.ok(&[
        "append",
        "Üser:Ann Lee",
        "--data",
        r#"{"name":"Ann","city":"Zürich","emoji":"🎉","rtl":"שלום","cjk":"東京","Ä":"upper","a":"lower"}"#,
    ]);
    f.ok(&[
        "append",
        "Üser:Ann Lee",
        "--set",
        "emoji=👩‍💻",
        "--set",
        "новое=значение",
    ]);
    f.ok(&[
        "append",
        "note:école/été",
        "--data",
        r#"{"max":18446744073709551615,"min":-9223372036854775808,"odd":9007199254740993,"tenth":0.1,"exp":1e20,"beyond":123456789012345678901234567890,"neg0":-0.0,"tiny":5e-324}"#,
    ]);
    f.ok(&["append", "order:a:b:c", "--data", "{}"]);
    f.ok(&[
        "append",
        "order:a:b:c",
        "--set",
        "x/y=1",
        "--set",
        "~t=tilde",
    ]);
    f.ok(&["append", "x:.hidden", "--data", r#"{"k":"v"}"#]);
    f.ok(&["append", "τύπος:κλειδί", "--data", r#"{"k":"v"}"#]);
    let long_type = "t".repeat(64);
    let long_id = "é".repeat(40); // 80 bytes, encoded as exactly 240
    f.ok(&["append", &format!("{long_type}:{long_id}"), "--data", "{}"]);
    f.ok(&["append", &format!("t:{}", "a".repeat(200)), "--data", "{}"]);
    f.ok(&["append", "gone:1", "--data", "{}"]);
    f.ok(&["append", "gone:1", "--type", "delete"]);
    f
}

#[test]
fn the_independent_verifier_agrees_on_a_varied_folder() {
    if !have_python() {
        return;
    }
    let f = varied_folder();
    assert_eq!(python_digest(f.path()), digest_of(&f));
    // And again after it grows.
    f.ok(&["append", "order:1", "--set", "status=closed"]);
    f.ok(&["append", "new:1", "--data", "{}"]);
    assert_eq!(python_digest(f.path()), digest_of(&f));
}

#[test]
fn the_independent_verifier_agrees_on_an_empty_folder() {
    if !have_python() {
        return;
    }
    let f = TestFolder::new();
    let digest = python_digest(f.path());
    assert_eq!(
        digest,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(digest, digest_of(&f));
}

#[test]
fn the_independent_verifier_agrees_on_the_checked_in_fixtures() {
    if !have_python() {
        return;
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let recorded = std::fs::read_to_string(fixtures.join("golden-v1.digest")).unwrap();
    assert_eq!(python_digest(&fixtures.join("golden-v1")), recorded.trim());
    let (code, stdout, stderr) = python_verify(&fixtures.join("torn-v1"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("torn"), "{stderr}");
    // The damaged fixture fails where eventdir says it does.
    let out = eventdir()
        .arg("-C")
        .arg(fixtures.join("tampered-v1"))
        .args(["verify", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = &report["failed"][0];
    assert_python_fails(
        &fixtures.join("tampered-v1"),
        failed["doc"].as_str().unwrap(),
        failed["seq"].as_u64().unwrap(),
    );
}

#[test]
fn the_independent_verifier_ignores_a_torn_tail_and_reports_it() {
    if !have_python() {
        return;
    }
    let f = varied_folder();
    let digest = digest_of(&f);
    let path = f.stream_file("Üser:Ann Lee");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(r#"{"seq":2,"doc":"Üser:Ann"#.as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let (code, stdout, stderr) = python_verify(f.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout.lines().last().unwrap(), digest);
    assert!(
        stderr.contains("torn tail") && stderr.contains("Üser:Ann Lee"),
        "{stderr}"
    );
    assert_eq!(digest_of(&f), digest);
}

#[test]
fn the_independent_verifier_agrees_after_a_cut_and_on_a_subset() {
    if !have_python() {
        return;
    }
    let f = varied_folder();
    let before = digest_of(&f);
    let path = f.stream_file("order:1");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text.lines().take(3).collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let after = python_digest(f.path());
    assert_ne!(after, before);
    assert_eq!(after, digest_of(&f));
}

#[test]
fn the_independent_verifier_fails_on_tampered_streams() {
    if !have_python() {
        return;
    }
    let doc = "order:1";

    // A changed byte in the data.
    let f = varied_folder();
    let path = f.stream_file(doc);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen(r#""value":"paid""#, r#""value":"PAID""#, 1),
    )
    .unwrap();
    assert_eq!(verify_json(&f, &[]).0, 4);
    assert_python_fails(f.path(), doc, 1);

    // A line removed from the middle (the seq gap comes first in the checks).
    let f = varied_folder();
    let path = f.stream_file(doc);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let without: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, l)| *l)
        .collect();
    std::fs::write(&path, without.join("\n") + "\n").unwrap();
    assert_eq!(verify_json(&f, &[]).0, 4);
    assert_python_fails(f.path(), doc, 2);

    // One document's stream under another's name.
    let f = varied_folder();
    std::fs::copy(f.stream_file("x:.hidden"), f.stream_file("τύπος:κλειδί")).unwrap();
    assert_eq!(verify_json(&f, &[]).0, 4);
    assert_python_fails(f.path(), "τύπος:κλειδί", 0);

    // A data value re-sealed with a fresh data_hash and hash, but not the events after it.
    let f = varied_folder();
    let path = f.stream_file(doc);
    let original = std::fs::read_to_string(&path).unwrap();
    rewrite_and_rechain(&path, 1, |l| {
        l.replacen(r#""value":"paid""#, r#""value":"free""#, 1)
    });
    let resealed = std::fs::read_to_string(&path).unwrap();
    let mixed: Vec<&str> = resealed
        .lines()
        .take(2)
        .chain(original.lines().skip(2))
        .collect();
    std::fs::write(&path, mixed.join("\n") + "\n").unwrap();
    assert_eq!(verify_json(&f, &[]).0, 4);
    assert_python_fails(f.path(), doc, 2);

    // A lower timestamp, re-sealed (so only the timestamp rule catches it).
    let f = varied_folder();
    let path = f.stream_file(doc);
    rewrite_and_rechain(&path, 3, |l| {
        let at = l.find(r#""timestamp":""#).unwrap() + 13;
        format!("{}2000-01-01T00:00:00.000000Z{}", &l[..at], &l[at + 27..])
    });
    assert_eq!(verify_json(&f, &[]).0, 4);
    assert_python_fails(f.path(), doc, 3);
}

/// An edit of one line of a stream.
type Edit = fn(&str) -> String;

#[test]
fn the_independent_verifier_refuses_malformed_lines_even_when_the_hashes_match() {
    if !have_python() {
        return;
    }
    let doc = "order:1";
    let edits: [(&str, Edit); 6] = [
        ("members out of order", |l| {
            l.replacen(
                r#""schema":null,"meta":null"#,
                r#""meta":null,"schema":null"#,
                1,
            )
        }),
        ("a duplicate member", |l| {
            l.replacen(r#""meta":null,"#, r#""meta":null,"meta":null,"#, 1)
        }),
        ("an unknown member", |l| {
            l.replacen(r#""meta":null,"#, r#""meta":null,"more":1,"#, 1)
        }),
        ("a seq written as a float", |l| {
            l.replacen(r#""seq":2,"#, r#""seq":2.0,"#, 1)
        }),
        ("an upper-case event_id", |l| {
            let at = l.find(r#""event_id":""#).unwrap() + 12;
            format!(
                "{}{}{}",
                &l[..at],
                l[at..at + 36].to_uppercase(),
                &l[at + 36..]
            )
        }),
        ("a February 30th", |l| {
            let at = l.find(r#""timestamp":""#).unwrap() + 13;
            format!("{}2999-02-30T00:00:00.000000Z{}", &l[..at], &l[at + 27..])
        }),
    ];
    for (what, edit) in edits {
        let f = varied_folder();
        let path = f.stream_file(doc);
        let before = std::fs::read_to_string(&path).unwrap();
        rewrite_and_rechain(&path, 2, edit);
        assert_ne!(
            std::fs::read_to_string(&path).unwrap(),
            before,
            "{what}: no edit"
        );
        let (code, stdout, stderr) = python_verify(f.path());
        assert_eq!(code, 1, "{what} passed:\n{stdout}{stderr}");
        assert!(
            stdout.starts_with(&format!("FAIL {doc} seq 2: ")),
            "{what}: {stdout}"
        );
    }
}

#[test]
fn the_independent_verifier_catches_flipped_bits_where_eventdir_does() {
    if !have_python() {
        return;
    }
    let f = TestFolder::new();
    f.ok(&["append", "note:1", "--data", r#"{"text":"hi"}"#]);
    f.ok(&["append", "note:1", "--set", "text=ho"]);
    f.ok(&["append", "note:1", "--type", "delete"]);
    let path = f.stream_file("note:1");
    let original = std::fs::read(&path).unwrap();
    // A sample of offsets over every part of every line (each run starts python3 and eventdir).
    for offset in (0..original.len() - 1).step_by(23) {
        let mut damaged = original.clone();
        damaged[offset] ^= 1 << (offset % 8);
        std::fs::write(&path, &damaged).unwrap();
        let (code, report) = verify_json(&f, &[]);
        assert_eq!(code, 4, "offset {offset}");
        let seq = report["failed"][0]["seq"].as_u64().unwrap();
        assert_python_fails(f.path(), "note:1", seq);
    }
    // The final newline: a torn tail for both.
    let mut damaged = original.clone();
    *damaged.last_mut().unwrap() ^= 1;
    std::fs::write(&path, &damaged).unwrap();
    let (code, stdout, stderr) = python_verify(f.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("torn tail"), "{stderr}");
    assert_eq!(stdout.lines().last().unwrap(), digest_of(&f));
}

#[test]
fn the_independent_verifier_reports_foreign_files_without_failing() {
    if !have_python() {
        return;
    }
    let f = varied_folder();
    let digest = digest_of(&f);
    let streams = f.path().join("streams");
    std::fs::write(streams.join("README"), "not a stream\n").unwrap();
    std::fs::create_dir_all(streams.join("order/zz")).unwrap();
    std::fs::copy(f.stream_file("order:1"), streams.join("order/zz/1.ndjson")).unwrap();
    let (code, stdout, stderr) = python_verify(f.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout.lines().last().unwrap(), digest);
    assert!(stderr.contains("foreign: streams/README"), "{stderr}");
    assert!(
        stderr.contains("foreign: streams/order/zz/1.ndjson"),
        "{stderr}"
    );
    assert_eq!(digest_of(&f), digest);
}
