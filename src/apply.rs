//! Replicas: a folder built from an origin's export stream, one stream at a time. An event is
//! accepted only if it continues its stream's chain exactly; events already held are skipped
//! (re-sending is harmless); a fork or a gap refuses the stream's events of that batch.

use std::collections::HashMap;
use std::path::Path;

use rayon::prelude::*;
use serde::Deserialize;

use crate::append::{Durability, Position, commit};
use crate::event::{Hash, ZERO_HASH, parse_line};
use crate::export::split_export_line;
use crate::folder::{DEFAULT_MAX_EVENT_BYTES, FORMAT_VERSION, Manifest};
use crate::stream::{StreamReader, read_tail};
use crate::{DocId, Error, Folder, Result, io as fsio, time};

/// A stream the replica refused, and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Refusal {
    pub doc: String,
    pub reason: String,
}

/// What applying did so far.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    /// Events written.
    pub applied: u64,
    /// Events the replica already held.
    pub skipped: u64,
    /// Streams refused (a fork or a gap), with why.
    pub refused: Vec<Refusal>,
}

#[derive(Deserialize)]
struct Key<'a> {
    seq: u64,
    #[serde(borrow)]
    doc: std::borrow::Cow<'a, str>,
}

/// One stream's state in the replica.
struct StreamState {
    /// The next seq the replica needs.
    next_seq: u64,
    prev_hash: Hash,
    /// Hashes of the events the replica holds, loaded only to check a re-sent event.
    held: Option<Vec<Hash>>,
    refused: bool,
}

/// Builds a replica in a directory from export lines.
pub struct Applier {
    dir: std::path::PathBuf,
    folder: Option<Folder>,
    /// The origin named by the first line, until the replica exists.
    origin: Option<String>,
    streams: HashMap<DocId, StreamState>,
    pub summary: Summary,
}

impl Applier {
    /// Prepares to apply into `dir`: an existing replica, or a new or empty directory that
    /// becomes one when the first line names its origin.
    pub fn new(dir: &Path) -> Result<Applier> {
        let folder = if dir.join(crate::folder::MANIFEST).exists() {
            let folder = Folder::open(dir)?;
            if folder.manifest().replica_of.is_none() {
                return Err(Error::input(
                    "apply",
                    format!(
                        "{} is a folder, not a replica: apply builds replicas only",
                        dir.display()
                    ),
                ));
            }
            Some(folder)
        } else {
            None
        };
        Ok(Applier {
            dir: dir.to_path_buf(),
            folder,
            origin: None,
            streams: HashMap::new(),
            summary: Summary::default(),
        })
    }

    /// Applies a batch of export lines (`line_no` numbers the first for messages). Within the
    /// batch, a stream with a fork or a gap writes nothing; the other streams are written, each
    /// in one write and one fsync.
    pub fn apply_batch(&mut self, lines: &[String], line_no: u64) -> Result<()> {
        let mut pending: Vec<(DocId, String)> = Vec::new();
        let mut index: HashMap<DocId, usize> = HashMap::new();
        for (i, line) in lines.iter().enumerate() {
            let bad =
                |reason: &str| Error::input(format!("stdin line {}", line_no + i as u64), reason);
            let (origin, stored) = split_export_line(line).ok_or_else(|| {
                bad("not an export line (it must start with {\"origin\":\"<folder id>\",")
            })?;
            let folder = self.replica(origin)?;
            let folder = folder.as_ref();
            let (seq, doc) = {
                let key: Key = serde_json::from_str(&stored)
                    .map_err(|e| bad(&format!("not an event: {e}")))?;
                (key.seq, DocId::parse(&key.doc)?)
            };

            if !self.streams.contains_key(&doc) {
                let state = load_state(folder, &doc)?;
                self.streams.insert(doc.clone(), state);
            }
            let state = self.streams.get_mut(&doc).expect("inserted above");
            if state.refused {
                continue;
            }
            let refuse = |state: &mut StreamState, reason: String, summary: &mut Summary| {
                state.refused = true;
                summary.refused.push(Refusal {
                    doc: doc.to_string(),
                    reason,
                });
            };
            if seq < state.next_seq {
                let hash = stored_hash(&stored);
                let held = held_hashes(folder, &doc, state)?;
                if held.get(seq as usize).copied() != hash {
                    refuse(
                        state,
                        format!("a fork at seq {}: the replica holds a different event", seq),
                        &mut self.summary,
                    );
                    if let Some(&at) = index.get(&doc) {
                        pending[at].1.clear();
                    }
                } else {
                    self.summary.skipped += 1;
                }
                continue;
            }
            if seq > state.next_seq {
                refuse(
                    state,
                    format!(
                        "a gap: seq {} arrived where seq {} was expected",
                        seq, state.next_seq
                    ),
                    &mut self.summary,
                );
                if let Some(&at) = index.get(&doc) {
                    pending[at].1.clear();
                }
                continue;
            }
            match parse_line(stored, &doc, &state.prev_hash) {
                Ok(event) => {
                    state.next_seq += 1;
                    state.prev_hash = event.hash;
                    if let Some(held) = &mut state.held {
                        held.push(event.hash);
                    }
                    let at = *index.entry(doc.clone()).or_insert_with(|| {
                        pending.push((doc.clone(), String::new()));
                        pending.len() - 1
                    });
                    pending[at].1.push_str(&event.line);
                    pending[at].1.push('\n');
                }
                Err(reason) => {
                    refuse(
                        state,
                        format!(
                            "seq {} does not continue the replica's chain (a fork): {reason}",
                            seq
                        ),
                        &mut self.summary,
                    );
                    if let Some(&at) = index.get(&doc) {
                        pending[at].1.clear();
                    }
                }
            }
        }
        pending.retain(|(doc, bytes)| {
            !bytes.is_empty() && !self.streams.get(doc).is_some_and(|s| s.refused)
        });
        if pending.is_empty() {
            return Ok(());
        }
        // The replica is created only once it has an event to hold.
        let folder = self.create_replica()?;
        write_streams(&folder, &pending)?;
        self.summary.applied += pending
            .iter()
            .map(|(_, bytes)| bytes.matches('\n').count() as u64)
            .sum::<u64>();
        Ok(())
    }

    /// Checks that `origin` is this replica's origin (the first line names it for a replica
    /// not yet created); returns the replica folder once it exists.
    fn replica(&mut self, origin: &str) -> Result<Option<Folder>> {
        let expected = match &self.folder {
            Some(folder) => folder.manifest().replica_of.clone().unwrap_or_default(),
            None => self
                .origin
                .get_or_insert_with(|| origin.to_string())
                .clone(),
        };
        if expected != origin {
            return Err(Error::input(
                "apply",
                format!(
                    "the stream comes from folder {origin}, but this replica's origin is {expected}"
                ),
            ));
        }
        Ok(self.folder.clone())
    }

    /// The replica folder, created (marked with its origin) if it does not exist yet.
    fn create_replica(&mut self) -> Result<Folder> {
        if let Some(folder) = &self.folder {
            return Ok(folder.clone());
        }
        let origin = self
            .origin
            .clone()
            .expect("a line named the origin before anything is written");
        let manifest = Manifest {
            format: "eventdir".to_string(),
            version: FORMAT_VERSION,
            folder_id: uuid::Uuid::new_v4().to_string(),
            created: time::now(),
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            replica_of: Some(origin),
        };
        let mut text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        text.push('\n');
        let folder = Folder::create(&self.dir, text.as_bytes())?;
        self.folder = Some(folder.clone());
        Ok(folder)
    }
}

/// The hash at the end of a stored line.
fn stored_hash(line: &str) -> Option<Hash> {
    let hex = line
        .strip_suffix("\"}")?
        .get(line.len().checked_sub(66)?..)?;
    crate::event::decode_hex(hex)
}

fn load_state(folder: Option<&Folder>, doc: &DocId) -> Result<StreamState> {
    let Some(folder) = folder else {
        return Ok(StreamState {
            next_seq: 0,
            prev_hash: ZERO_HASH,
            held: None,
            refused: false,
        });
    };
    let path = folder.stream_path(doc);
    let (next_seq, prev_hash) = match fsio::open_read(&path)? {
        None => (0, ZERO_HASH),
        Some(file) => match read_tail(&file, &path, doc, folder.max_event_bytes())?.last {
            None => (0, ZERO_HASH),
            Some(last) => (last.seq + 1, last.hash),
        },
    };
    Ok(StreamState {
        next_seq,
        prev_hash,
        held: None,
        refused: false,
    })
}

fn held_hashes<'a>(
    folder: Option<&Folder>,
    doc: &DocId,
    state: &'a mut StreamState,
) -> Result<&'a Vec<Hash>> {
    if state.held.is_none() {
        let mut hashes = Vec::new();
        if let Some(mut reader) = folder
            .map(|f| StreamReader::open(f, doc))
            .transpose()?
            .flatten()
        {
            while let Some(event) = reader.next_event()? {
                hashes.push(event.hash);
            }
        }
        state.held = Some(hashes);
    }
    Ok(state.held.as_ref().expect("loaded above"))
}

/// From this many streams in one batch on, they are written in parallel and made durable by
/// one `syncfs` instead of an fsync each (and three more for each new stream's directories):
/// an export lists a folder stream by stream, so a batch of a folder of small documents
/// brings hundreds of them, most of them new.
const SYNCFS_FROM: usize = 8;

/// Appends each stream's checked lines durably, by the same commit as `append`. A stream
/// whose write fails is left as it was, and the batch fails: nothing of it is reported as
/// applied.
fn write_streams(folder: &Folder, pending: &[(DocId, String)]) -> Result<()> {
    if pending.len() < SYNCFS_FROM {
        return pending
            .iter()
            .try_for_each(|(doc, bytes)| write_stream(folder, doc, bytes, Durability::Fsync));
    }
    // Opened before the writes it must cover.
    let sync = fsio::FilesystemSync::begin(folder.root())?;
    pending
        .par_iter()
        .try_for_each(|(doc, bytes)| write_stream(folder, doc, bytes, Durability::Deferred))?;
    sync.finish()
}

/// Appends checked lines to a replica stream under its lock; a failure leaves the stream as
/// it was.
fn write_stream(folder: &Folder, doc: &DocId, bytes: &str, durability: Durability) -> Result<()> {
    let path = folder.stream_path(doc);
    let mut stream = fsio::open_locked(&folder.streams_dir(), &path)?;
    let result = read_tail(&stream.file, &path, doc, folder.max_event_bytes()).and_then(|tail| {
        commit(
            folder,
            &mut stream.file,
            &path,
            Position::of(&tail),
            bytes,
            durability,
        )
    });
    if result.is_err() && stream.created_file {
        fsio::remove_new_stream(&stream, &path);
    }
    result.map(|_| ())
}
