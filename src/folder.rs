//! A folder: its manifest, where each document's stream lives, and the list of streams.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{DocId, Error, Result, io as fsio, time};

/// The manifest's file name.
pub const MANIFEST: &str = "eventdir.json";
/// The directory of stream files.
pub const STREAMS: &str = "streams";
/// The directory of derived data (snapshots); deleting it loses nothing.
pub const CACHE: &str = "cache";
/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u64 = 1;

/// The manifest, `eventdir.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `"eventdir"`.
    pub format: String,
    /// The format version (FORMAT.md).
    pub version: u64,
    /// A UUID that names this folder.
    pub folder_id: String,
    /// When the folder was created.
    pub created: String,
    /// The longest stored event line, in bytes with its newline. Writers refuse longer events;
    /// readers refuse longer lines, so no line can exhaust memory.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: u64,
    /// For a replica (built by `eventdir apply`): the folder id of its origin. A replica takes
    /// events only from its origin's export stream; `append` refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_of: Option<String>,
}

/// The default limit of an event line: 16 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: u64 = 16 * 1024 * 1024;

fn default_max_event_bytes() -> u64 {
    DEFAULT_MAX_EVENT_BYTES
}

/// An open, initialised folder.
#[derive(Clone, Debug)]
pub struct Folder {
    root: PathBuf,
    manifest: Manifest,
}

/// A file or directory under `streams/` that eventdir did not write.
#[derive(Clone, Debug)]
pub struct Foreign {
    pub path: PathBuf,
}

impl Folder {
    /// Creates a folder in `dir` (created if missing). Refuses a directory that already is one.
    pub fn init(dir: &Path, max_event_bytes: u64) -> Result<Folder> {
        let manifest = Manifest {
            format: "eventdir".to_string(),
            version: FORMAT_VERSION,
            folder_id: uuid::Uuid::new_v4().to_string(),
            created: time::now(),
            max_event_bytes,
            replica_of: None,
        };
        let mut text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        text.push('\n');
        Folder::create(dir, text.as_bytes())
    }

    /// Creates a folder in `dir` with exactly these manifest bytes (a clone keeps its origin's
    /// manifest byte for byte). Refuses a directory that already is a folder.
    pub fn create(dir: &Path, manifest_text: &[u8]) -> Result<Folder> {
        let manifest_path = dir.join(MANIFEST);
        if fs::symlink_metadata(&manifest_path).is_ok() {
            return Err(Error::input(
                "init",
                format!(
                    "{} is already an eventdir folder (it has {MANIFEST})",
                    dir.display()
                ),
            ));
        }
        let created_dir = !dir.exists();
        fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
        if created_dir && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsio::sync_dir(parent)?;
        }
        fsio::create_dirs(dir, &dir.join(STREAMS))?;
        fsio::write_atomic(&manifest_path, manifest_text, true)?;
        Folder::open(dir)
    }

    /// Opens the folder in `dir`, refusing a directory without a manifest or with a newer format.
    pub fn open(dir: &Path) -> Result<Folder> {
        let manifest_path = dir.join(MANIFEST);
        let text = match fs::read(&manifest_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotAFolder {
                    path: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(Error::io("read", &manifest_path)(e)),
        };
        let bad = |reason: String| Error::BadManifest {
            path: manifest_path.clone(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        if value.get("format").and_then(|f| f.as_str()) != Some("eventdir") {
            return Err(bad("it does not say \"format\": \"eventdir\"".to_string()));
        }
        if let Some(found) = value.get("version").and_then(|v| v.as_u64())
            && found > FORMAT_VERSION
        {
            return Err(Error::NewerFormat {
                path: dir.to_path_buf(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        Ok(Folder {
            root: dir.to_path_buf(),
            manifest,
        })
    }

    /// The folder's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest file's path.
    pub fn manifest_path(&self) -> PathBuf {
        self.root.join(MANIFEST)
    }

    /// The longest event line this folder stores.
    pub fn max_event_bytes(&self) -> usize {
        usize::try_from(self.manifest.max_event_bytes).unwrap_or(usize::MAX)
    }

    /// The `streams/` directory.
    pub fn streams_dir(&self) -> PathBuf {
        self.root.join(STREAMS)
    }

    /// The stream file of `doc`.
    pub fn stream_path(&self, doc: &DocId) -> PathBuf {
        self.streams_dir().join(doc.relative_path())
    }

    /// The derived-data directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join(CACHE)
    }

    /// Every document that has a stream file, sorted by id, and every entry under `streams/`
    /// that is not a stream file eventdir would write.
    pub fn scan(&self) -> Result<(Vec<DocId>, Vec<Foreign>)> {
        let streams = self.streams_dir();
        let mut docs = Vec::new();
        let mut foreign = Vec::new();
        for kind in read_dir(&streams)? {
            if !kind.is_dir {
                foreign.push(Foreign { path: kind.path });
                continue;
            }
            for shard in read_dir(&kind.path)? {
                if !shard.is_dir {
                    foreign.push(Foreign { path: shard.path });
                    continue;
                }
                for file in read_dir(&shard.path)? {
                    let relative = file.path.strip_prefix(&streams).expect("inside streams/");
                    match DocId::from_relative_path(relative) {
                        Some(doc) if file.is_file => docs.push(doc),
                        _ => foreign.push(Foreign { path: file.path }),
                    }
                }
            }
        }
        docs.sort();
        Ok((docs, foreign))
    }

    /// Every document with a stream file, sorted by id.
    pub fn documents(&self) -> Result<Vec<DocId>> {
        Ok(self.scan()?.0)
    }
}

struct Entry {
    path: PathBuf,
    is_dir: bool,
    is_file: bool,
}

/// Lists a directory without following symlinks; a missing directory is empty.
fn read_dir(dir: &Path) -> Result<Vec<Entry>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io("list", dir))?;
        let kind = entry
            .file_type()
            .map_err(Error::io("inspect", entry.path()))?;
        out.push(Entry {
            path: entry.path(),
            is_dir: kind.is_dir(),
            is_file: kind.is_file(),
        });
    }
    Ok(out)
}
