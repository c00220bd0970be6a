//! `eventdir init`, and how every command finds (or refuses) its folder: -C, EVENTDIR_FOLDER,
//! the current directory, a missing manifest and a newer format.

use serde_json::Value;

use crate::append::{assert_folder_unchanged, assert_one_line_error};
use crate::common::*;

/// Every command other than init, with arguments that would work in a folder.
const COMMANDS: [&[&str]; 9] = [
    &["append", "order:1", "--data", "{}"],
    &["append", "order:1", "--set", "a=1"],
    &["get", "order:1"],
    &["log", "order:1"],
    &["replay"],
    &["at", "order:1", "--seq", "0"],
    &["at", "--time", "2030-01-01T00:00:00Z"],
    &["ls"],
    &["verify"],
];

fn is_lower_uuid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

#[test]
fn init_creates_eventdir_json_and_streams_and_prints_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shop");
    let out = eventdir().arg("init").arg(&dir).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.ends_with('\n') && stdout.lines().count() == 1,
        "{stdout:?}"
    );
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    let stored: Value =
        serde_json::from_slice(&std::fs::read(dir.join("eventdir.json")).unwrap()).unwrap();
    assert_eq!(printed, stored);
    assert_eq!(printed["format"], "eventdir");
    assert_eq!(printed["version"], 1);
    assert_eq!(printed["max_event_bytes"], 16_777_216);
    assert!(
        is_lower_uuid(printed["folder_id"].as_str().unwrap()),
        "{printed}"
    );
    let created = printed["created"].as_str().unwrap();
    assert!(created.len() == 27 && created.ends_with('Z'), "{created}");
    assert!(dir.join("streams").is_dir());
    assert_eq!(std::fs::read_dir(dir.join("streams")).unwrap().count(), 0);
    // Nothing else but the manifest and streams/.
    let tree = snapshot_tree(&dir);
    let names: Vec<_> = tree
        .keys()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["eventdir.json", "streams"]);
    // The new folder works.
    eventdir()
        .arg("-C")
        .arg(&dir)
        .args(["append", "a:1", "--data", "{}"])
        .assert()
        .success();
}

#[test]
fn init_gives_each_folder_its_own_id() {
    let a = TestFolder::new();
    let b = TestFolder::new();
    let id = |f: &TestFolder| {
        let v: Value =
            serde_json::from_slice(&std::fs::read(f.path().join("eventdir.json")).unwrap())
                .unwrap();
        v["folder_id"].clone()
    };
    assert_ne!(id(&a), id(&b));
}

#[test]
fn init_in_an_existing_empty_directory_and_with_max_event_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = eventdir()
        .arg("init")
        .arg(tmp.path())
        .args(["--max-event-bytes", "2000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["max_event_bytes"], 2000);
    let stored: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("eventdir.json")).unwrap()).unwrap();
    assert_eq!(stored["max_event_bytes"], 2000);
}

#[test]
fn init_refuses_an_already_initialised_dir_with_exit_2() {
    let f = TestFolder::new();
    f.ok(&["append", "order:1", "--data", "{}"]);
    let before = f.snapshot();
    for args in [
        vec!["init".to_string()],
        vec!["init".to_string(), f.path().display().to_string()],
    ] {
        let out = f.cmd().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_one_line_error(&stderr);
        assert!(stderr.contains("already"), "{stderr}");
    }
    let out = eventdir()
        .arg("init")
        .arg(f.path())
        .args(["--max-event-bytes", "5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_folder_unchanged(&before, &f.snapshot(), &"init");
}

#[test]
fn init_with_bad_max_event_bytes_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["-1", "abc", ""] {
        let out = eventdir()
            .arg("init")
            .arg(tmp.path().join("x"))
            .args(["--max-event-bytes", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert_one_line_error(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(!tmp.path().join("x").exists());
}

#[test]
fn every_other_command_in_a_non_folder_dir_exits_1_mentioning_eventdir_init() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("unrelated.txt"), "keep me").unwrap();
    let before = snapshot_tree(tmp.path());
    for args in COMMANDS {
        // With -C, and as the current directory.
        let by_option = eventdir()
            .arg("-C")
            .arg(tmp.path())
            .args(args)
            .output()
            .unwrap();
        let by_cwd = eventdir()
            .current_dir(tmp.path())
            .args(args)
            .output()
            .unwrap();
        for out in [by_option, by_cwd] {
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            assert!(out.stdout.is_empty(), "{args:?}");
            let stderr = String::from_utf8(out.stderr).unwrap();
            assert_one_line_error(&stderr);
            assert!(stderr.contains("eventdir init"), "{args:?}: {stderr}");
        }
    }
    assert_folder_unchanged(
        &before,
        &snapshot_tree(tmp.path()),
        &"commands in a non-folder",
    );
    // A directory that does not exist at all fails the same way and is not created.
    let missing = tmp.path().join("missing");
    for args in COMMANDS {
        let out = eventdir()
            .arg("-C")
            .arg(&missing)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_one_line_error(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(!missing.exists());
}

#[test]
fn dash_c_and_folder_select_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("f");
    // init without DIR uses -C.
    eventdir()
        .arg("-C")
        .arg(&dir)
        .arg("init")
        .assert()
        .success();
    assert!(dir.join("eventdir.json").is_file());
    eventdir()
        .arg("-C")
        .arg(&dir)
        .args(["append", "a:1", "--data", "{}"])
        .assert()
        .success();
    // -C after the subcommand, and --folder, work too.
    let out = eventdir()
        .args(["get", "a:1", "-C"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = eventdir()
        .arg("--folder")
        .arg(&dir)
        .args(["ls"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    // The current directory is the default.
    let out = eventdir()
        .current_dir(&dir)
        .args(["get", "a:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let cwd = tmp.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    eventdir().current_dir(&cwd).arg("init").assert().success();
    assert!(cwd.join("eventdir.json").is_file());
}

#[test]
fn eventdir_folder_env_selects_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("f");
    eventdir()
        .env("EVENTDIR_FOLDER", &dir)
        .arg("init")
        .assert()
        .success();
    assert!(dir.join("eventdir.json").is_file());
    eventdir()
        .env("EVENTDIR_FOLDER", &dir)
        .args(["append", "a:1", "--data", r#"{"x":1}"#])
        .assert()
        .success();
    let out = eventdir()
        .env("EVENTDIR_FOLDER", &dir)
        .args(["get", "a:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["state"]["x"], 1);
    // -C wins over the environment.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let out = eventdir()
        .env("EVENTDIR_FOLDER", &other)
        .arg("-C")
        .arg(&dir)
        .args(["get", "a:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = eventdir()
        .env("EVENTDIR_FOLDER", &other)
        .args(["get", "a:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_manifest_with_version_99_is_refused_with_exit_1_naming_the_version() {
    let f = TestFolder::new();
    f.ok(&["append", "order:1", "--data", "{}"]);
    let path = f.path().join("eventdir.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["version"] = Value::from(99);
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    let before = f.snapshot();
    for args in COMMANDS {
        let (code, stdout, stderr) = f.run(args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        assert_one_line_error(&stderr);
        assert!(stderr.contains("99"), "{args:?}: {stderr}");
        assert!(stderr.contains("version"), "{args:?}: {stderr}");
    }
    assert_folder_unchanged(&before, &f.snapshot(), &"commands on a newer folder");
}

#[test]
fn an_unreadable_manifest_is_refused_with_exit_1() {
    let f = TestFolder::new();
    let path = f.path().join("eventdir.json");
    for bad in ["", "{", "[]", r#"{"format":"other","version":1}"#] {
        std::fs::write(&path, bad).unwrap();
        let (code, stdout, stderr) = f.run(&["ls"]);
        assert_eq!(code, 1, "{bad:?}: {stderr}");
        assert_eq!(stdout, "");
        assert_one_line_error(&stderr);
    }
}

#[test]
fn a_manifest_with_unknown_members_is_accepted() {
    let f = TestFolder::new();
    let path = f.path().join("eventdir.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["future_member"] = Value::from("whatever");
    std::fs::write(&path, serde_json::to_string(&manifest).unwrap()).unwrap();
    f.ok(&["append", "order:1", "--data", "{}"]);
    f.ok(&["verify"]);
}
