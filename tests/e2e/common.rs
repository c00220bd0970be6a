//! Shared helpers: a temp folder, the binary with a clean environment, and snapshots of a
//! folder's bytes to prove that refused requests change nothing.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// Sets TYPE's schema in FOLDER from a JSON value, asserting success; returns what
/// `schema set` printed.
pub fn set_schema(folder: &TestFolder, kind: &str, definition: Value) -> Value {
    let out = folder
        .cmd()
        .args(["schema", "set", kind, "-"])
        .write_stdin(definition.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "schema set failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A temporary, initialised folder.
pub struct TestFolder {
    pub dir: tempfile::TempDir,
}

impl TestFolder {
    /// A new folder, initialised with `eventdir init`.
    pub fn new() -> TestFolder {
        let dir = tempfile::tempdir().expect("temp dir");
        let folder = TestFolder { dir };
        folder.cmd().arg("init").assert().success();
        folder
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `eventdir -C FOLDER` with a clean environment.
    pub fn cmd(&self) -> Command {
        let mut cmd = eventdir();
        cmd.arg("-C").arg(self.path());
        cmd
    }

    /// Runs `eventdir -C FOLDER append --batch` with `input` on stdin, asserts success, and
    /// returns stdout.
    pub fn batch_ok(&self, input: &str) -> String {
        let out = self
            .cmd()
            .args(["append", "--batch"])
            .write_stdin(input)
            .output()
            .expect("run eventdir");
        assert!(
            out.status.success(),
            "append --batch failed with {:?}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// Runs `eventdir -C FOLDER ARGS...`, asserts success, and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("run eventdir");
        assert!(
            out.status.success(),
            "eventdir {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// Runs `eventdir -C FOLDER ARGS...` and returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd().args(args).output().expect("run eventdir");
        (
            out.status.code().expect("exited normally"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs a command and parses its stdout as one JSON value.
    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).expect("stdout is one JSON value")
    }

    /// Runs a command and parses its stdout as NDJSON.
    pub fn ndjson(&self, args: &[&str]) -> Vec<Value> {
        self.ok(args)
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }

    /// Every file and directory under the folder with its bytes (directories map to None).
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
        snapshot_tree(self.path())
    }

    /// The stream file of `doc`.
    pub fn stream_file(&self, doc: &str) -> PathBuf {
        let rel = eventdir::DocId::parse(doc).unwrap().relative_path();
        self.path().join("streams").join(rel)
    }
}

/// The binary with an environment that holds nothing of the caller's eventdir settings.
pub fn eventdir() -> Command {
    let mut cmd = Command::cargo_bin("eventdir").expect("binary built");
    cmd.env_remove("EVENTDIR_FOLDER");
    cmd
}

/// Every path under `root` with its bytes (None for directories).
pub fn snapshot_tree(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if entry.file_type().unwrap().is_dir() {
                out.insert(rel, None);
                stack.push(path);
            } else {
                out.insert(rel, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// Lets the process `cmd` starts open at most `files` files.
pub fn limit_open_files(cmd: &mut std::process::Command, files: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: files,
                rlim_max: files,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
