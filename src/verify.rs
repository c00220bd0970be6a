//! Verification: every stream's chain and sequence, torn tails, foreign files, the folder
//! digest, and checkpoints (remembered heads that detect truncation and rollback).

use std::collections::BTreeMap;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::{Hash, decode_hex};
use crate::stream::{Position, StreamReader};
use crate::{DocId, Error, Folder, Result, io as fsio, time};

/// The last event of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: Hash,
}

/// Why a stream failed.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The first bad seq, when known.
    pub seq: Option<u64>,
    /// The 1-based line of the stream file.
    pub line: Option<u64>,
    pub reason: String,
}

/// What verifying one stream found.
#[derive(Clone, Debug)]
pub struct StreamCheck {
    pub doc: DocId,
    /// Complete events that verified.
    pub events: u64,
    /// The last event that verified.
    pub head: Option<Head>,
    /// Bytes after the last complete line that no writer is still writing.
    pub torn_tail: Option<u64>,
    pub failure: Option<Failure>,
    /// The hash of the event at the seq a checkpoint asked about, if the stream reached it.
    pub hash_at_checkpoint: Option<Hash>,
    /// The schema stamp of the last event that verified.
    pub last_stamp: Option<u64>,
    /// The highest schema stamp of the events that verified.
    pub max_stamp: Option<u64>,
    /// Whether the last event that verified is a delete.
    pub deleted: bool,
}

/// Verifies one stream. `checkpoint_seq` asks for the hash of that event along the way.
pub fn check_stream(folder: &Folder, doc: &DocId, checkpoint_seq: Option<u64>) -> StreamCheck {
    let path = folder.stream_path(doc);
    let mut check = StreamCheck {
        doc: doc.clone(),
        events: 0,
        head: None,
        torn_tail: None,
        failure: None,
        hash_at_checkpoint: None,
        last_stamp: None,
        max_stamp: None,
        deleted: false,
    };
    let file = match fsio::open_read(&path) {
        Ok(Some(file)) => file,
        Ok(None) => {
            check.failure = Some(Failure {
                seq: None,
                line: None,
                reason: "no such document".to_string(),
            });
            return check;
        }
        Err(e) => {
            check.failure = Some(Failure {
                seq: None,
                line: None,
                reason: e.to_string(),
            });
            return check;
        }
    };
    let reader = file
        .try_clone()
        .map_err(Error::io("read", &path))
        .and_then(|f| {
            StreamReader::at(
                f,
                path.clone(),
                doc.clone(),
                folder.max_event_bytes(),
                Position::start(),
            )
        });
    let mut reader = match reader {
        Ok(reader) => reader.searching_with_vectors(),
        Err(e) => {
            check.failure = Some(Failure {
                seq: None,
                line: None,
                reason: e.to_string(),
            });
            return check;
        }
    };
    loop {
        match reader.next_event() {
            Ok(Some(event)) => {
                if Some(event.seq) == checkpoint_seq {
                    check.hash_at_checkpoint = Some(event.hash);
                }
                check.events += 1;
                check.head = Some(Head {
                    seq: event.seq,
                    hash: event.hash,
                });
                check.last_stamp = event.schema;
                check.max_stamp = check.max_stamp.max(event.schema);
                check.deleted = event.kind == crate::event::EventType::Delete;
            }

            Ok(None) => break,
            Err(Error::Corrupt {
                seq, line, reason, ..
            }) => {
                check.failure = Some(Failure { seq, line, reason });
                return check;
            }
            Err(e) => {
                check.failure = Some(Failure {
                    seq: None,
                    line: None,
                    reason: e.to_string(),
                });
                return check;
            }
        }
    }
    if reader.partial_tail().is_some() {
        check.torn_tail = torn_tail_under_lock(&file, &path, reader.offset());
    }
    check
}

/// Bytes after `complete_len` count as a torn tail only when no writer holds the stream's lock
/// (a writer may be between its `write` and its newline being visible) and the file still does
/// not end with a newline.
fn torn_tail_under_lock(file: &File, path: &Path, complete_len: u64) -> Option<u64> {
    match file.try_lock_shared() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return None,
        Err(TryLockError::Error(_)) => {}
    }
    let len = file.metadata().ok()?.len();
    let mut last = [0u8; 1];
    let torn = len > complete_len
        && fsio::read_exact_at(file, path, &mut last, len - 1).is_ok()
        && last[0] != b'\n';
    let _ = file.unlock();
    torn.then_some(len - complete_len)
}

/// The folder digest: SHA-256 over one line per stream with at least one event, in the byte
/// order of document ids: `DOC \t SEQ \t HASH \n` (FORMAT.md). Heads are added in that order
/// (as [`Folder::scan`] lists documents), so that nothing needs to be kept per stream.
#[derive(Default)]
pub struct FolderDigest {
    hasher: Sha256,
}

impl FolderDigest {
    /// Adds one stream's head; `doc` must come after every document added before.
    pub fn add(&mut self, doc: &DocId, head: Head) {
        let mut seq = itoa::Buffer::new();
        for part in [
            doc.as_str().as_bytes(),
            b"\t",
            seq.format(head.seq).as_bytes(),
            b"\t",
            crate::event::encode_hex(head.hash).as_bytes(),
            b"\n",
        ] {
            self.hasher.update(part);
        }
    }

    pub fn finish(self) -> Hash {
        self.hasher.finalize().into()
    }
}

/// A checkpoint file: every stream's head at one moment, to compare a folder against later.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: String,
    pub version: u64,
    pub folder_id: String,
    pub created: String,
    pub digest: String,
    pub heads: BTreeMap<String, CheckpointHead>,
}

/// One stream's head in a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointHead {
    pub seq: u64,
    pub hash: String,
}

impl Checkpoint {
    /// A checkpoint of the given heads.
    pub fn new(folder: &Folder, heads: &[(DocId, Head)], digest: &Hash) -> Checkpoint {
        let heads = heads
            .iter()
            .map(|(doc, head)| {
                (
                    doc.to_string(),
                    CheckpointHead {
                        seq: head.seq,
                        hash: crate::event::encode_hex(head.hash),
                    },
                )
            })
            .collect();
        Checkpoint {
            format: "eventdir-checkpoint".to_string(),
            version: 1,
            folder_id: folder.manifest().folder_id.clone(),
            created: time::now(),
            digest: crate::event::encode_hex(digest),
            heads,
        }
    }

    /// Reads a checkpoint file.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).map_err(Error::io("read checkpoint", path))?;
        let checkpoint: Checkpoint = serde_json::from_slice(&bytes)
            .map_err(|e| Error::input(format!("checkpoint {}", path.display()), e.to_string()))?;
        if checkpoint.format != "eventdir-checkpoint" || checkpoint.version != 1 {
            return Err(Error::input(
                format!("checkpoint {}", path.display()),
                "not an eventdir checkpoint of version 1",
            ));
        }
        Ok(checkpoint)
    }

    /// Writes the checkpoint durably (write, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).expect("checkpoint serialises");
        text.push('\n');
        fsio::write_atomic(path, text.as_bytes(), true)
    }

    /// The seq recorded for `doc`.
    pub fn seq_of(&self, doc: &DocId) -> Option<u64> {
        self.heads.get(doc.as_str()).map(|h| h.seq)
    }
}

/// The outcome of verifying a folder (or some of its documents). It holds what the report
/// names (failures, torn tails, lagging documents, mismatches) and totals, not a record per
/// stream: a folder may hold millions of streams.
pub struct Report {
    /// Streams with at least one event or a failure.
    pub streams: u64,
    /// Complete events that verified, over all streams.
    pub events: u64,
    /// The streams that failed, in document order.
    pub failed: Vec<Failed>,
    /// The streams with a torn tail, in document order.
    pub torn_tails: Vec<TornTail>,
    pub foreign: Vec<PathBuf>,
    pub digest: Hash,
    /// Checkpoint heads that are no longer in place: `(doc, why)`, in document order.
    pub checkpoint_mismatches: Vec<(String, String)>,
    /// Live documents written under an older schema version than their type's current one.
    pub lagging: Vec<Lagging>,
    /// Every stream's head, in document order, when asked for (to save a checkpoint).
    pub heads: Option<Vec<(DocId, Head)>>,
}

/// A stream that failed.
#[derive(Clone, Debug)]
pub struct Failed {
    pub doc: DocId,
    pub path: PathBuf,
    pub failure: Failure,
}

/// A stream with bytes after its last complete line.
#[derive(Clone, Debug)]
pub struct TornTail {
    pub doc: DocId,
    /// The last event that verified before them.
    pub after_seq: Option<u64>,
    pub bytes: u64,
}

/// A document that lags its type's current schema (a warning, not a failure).
#[derive(Clone, Debug)]
pub struct Lagging {
    pub doc: DocId,
    /// Its last event's stamp.
    pub stamp: Option<u64>,
    /// The current schema version.
    pub current: u64,
}

impl Report {
    /// Whether every stream verified and every checkpoint head is in place.
    pub fn passed(&self) -> bool {
        self.failed.is_empty() && self.checkpoint_mismatches.is_empty()
    }
}

/// What verifying one stream leaves until the report is assembled in document order: its
/// head, for the digest, and what the report has to say about it, boxed because most streams
/// have nothing to say.
struct Verified {
    events: u64,
    head: Option<Head>,
    notes: Option<Box<Notes>>,
}

#[derive(Default)]
struct Notes {
    failure: Option<Failure>,
    torn_tail: Option<u64>,
    lagging: Option<Lagging>,
    mismatch: Option<String>,
}

/// Verifies `docs` (every document when `None`) and, when given, that `checkpoint`'s heads are
/// all still in place. With `keep_heads`, the report lists every stream's head.
pub fn verify(
    folder: &Folder,
    docs: Option<Vec<DocId>>,
    checkpoint: Option<&Checkpoint>,
    keep_heads: bool,
) -> Result<Report> {
    let partial = docs.is_some();
    let (docs, foreign) = match docs {
        Some(mut docs) => {
            docs.sort();
            docs.dedup();
            (docs, Vec::new())
        }

        None => {
            let (docs, foreign) = folder.scan()?;
            (docs, foreign.into_iter().map(|f| f.path).collect())
        }
    };
    let checkpoint = checkpoint.map(|c| Expected::new(c, &docs, partial));
    // Every stamp is checked against its type's schema head, so those come first.
    let schemas = SchemaHeads::new(folder, &docs, checkpoint.as_ref())?;
    let verified: Vec<Verified> = docs
        .par_iter()
        .map(|doc| verify_one(folder, doc, &schemas, checkpoint.as_ref()))
        .collect();
    let mut report = Report {
        streams: 0,
        events: 0,
        failed: Vec::new(),
        torn_tails: Vec::new(),
        foreign,
        digest: [0; 32],
        checkpoint_mismatches: checkpoint.map(|c| c.mismatches).unwrap_or_default(),
        lagging: Vec::new(),
        heads: keep_heads.then(Vec::new),
    };
    let mut digest = FolderDigest::default();
    for (doc, verified) in docs.into_iter().zip(verified) {
        report.events += verified.events;
        if let Some(head) = verified.head {
            digest.add(&doc, head);
        }
        let notes = verified.notes.map(|n| *n).unwrap_or_default();
        if verified.head.is_some() || notes.failure.is_some() {
            report.streams += 1;
        }
        if let Some(bytes) = notes.torn_tail {
            report.torn_tails.push(TornTail {
                doc: doc.clone(),
                after_seq: verified.head.map(|h| h.seq),
                bytes,
            });
        }
        if let Some(lagging) = notes.lagging {
            report.lagging.push(lagging);
        }
        if let Some(why) = notes.mismatch {
            report.checkpoint_mismatches.push((doc.to_string(), why));
        }
        if let (Some(heads), Some(head)) = (&mut report.heads, verified.head) {
            heads.push((doc.clone(), head));
        }
        if let Some(failure) = notes.failure {
            report.failed.push(Failed {
                path: folder.stream_path(&doc),
                doc,
                failure,
            });
        }
    }
    report.checkpoint_mismatches.sort();
    report.digest = digest.finish();
    Ok(report)
}

/// Verifies one stream and checks its stamps and its checkpoint head.
fn verify_one(
    folder: &Folder,
    doc: &DocId,
    schemas: &SchemaHeads,
    checkpoint: Option<&Expected>,
) -> Verified {
    let expected = checkpoint.and_then(|c| c.heads.get(doc.as_str()));
    let mut check = match schemas.verified.get(doc) {
        Some(check) => check.clone(),
        None => check_stream(folder, doc, expected.map(|e| e.0)),
    };
    let lagging = check_stamp(&mut check, schemas);
    let mismatch = expected.and_then(|&(seq, hash)| compare(&check, seq, hash));
    let notes = (check.failure.is_some()
        || check.torn_tail.is_some()
        || lagging.is_some()
        || mismatch.is_some())
    .then(|| {
        Box::new(Notes {
            failure: check.failure,
            torn_tail: check.torn_tail,
            lagging,
            mismatch,
        })
    });
    Verified {
        events: check.events,
        head: check.head,
        notes,
    }
}

/// The head of every type's schema stream, for the documents of that type being verified:
/// verified here when the schema stream is among them (and kept, so it is not verified
/// twice), else read from its end.
struct SchemaHeads {
    /// By type.
    heads: BTreeMap<String, Option<u64>>,
    /// The schema streams among the documents, verified.
    verified: BTreeMap<DocId, StreamCheck>,
}

impl SchemaHeads {
    fn new(folder: &Folder, docs: &[DocId], checkpoint: Option<&Expected>) -> Result<SchemaHeads> {
        // One document of each type: sorted ids keep a type's documents together.
        let mut firsts: Vec<&DocId> = Vec::new();
        for doc in docs {
            if firsts.last().is_none_or(|first| first.kind() != doc.kind()) {
                firsts.push(doc);
            }
        }
        let mut schemas = SchemaHeads {
            heads: BTreeMap::new(),
            verified: BTreeMap::new(),
        };
        let verified: Vec<StreamCheck> = docs
            .par_iter()
            .filter(|d| d.schema_of().is_some())
            .map(|doc| {
                let seq = checkpoint.and_then(|c| c.heads.get(doc.as_str()).map(|e| e.0));
                check_stream(folder, doc, seq)
            })
            .collect();
        for check in verified {
            let kind = check.doc.schema_of().expect("a schema document");
            schemas
                .heads
                .insert(kind.to_string(), check.head.map(|h| h.seq));
            schemas.verified.insert(check.doc.clone(), check);
        }
        for first in firsts {
            let Some(schema_doc) = first.schema_doc() else {
                continue;
            };
            if !schemas.heads.contains_key(first.kind()) {
                let head = schema_head(folder, &schema_doc)?;
                schemas.heads.insert(first.kind().to_string(), head);
            }
        }
        Ok(schemas)
    }
}

/// Fails a stream with a stamp that does not resolve to an event of its type's schema stream;
/// whether a live document's last stamp is older than the current schema.
fn check_stamp(stream: &mut StreamCheck, schemas: &SchemaHeads) -> Option<Lagging> {
    let schema_doc = stream.doc.schema_doc()?;
    let current = *schemas.heads.get(stream.doc.kind())?;
    if let Some(stamp) = stream.max_stamp
        && stream.failure.is_none()
        && current.is_none_or(|c| stamp > c)
    {
        let reason = match current {
            Some(c) => {
                format!("schema stamp {stamp} does not resolve: {schema_doc} ends at seq {c}")
            }
            None => {
                format!("schema stamp {stamp} does not resolve: {schema_doc} has no events")
            }
        };
        stream.failure = Some(Failure {
            seq: None,
            line: None,
            reason,
        });
    }
    let current = current?;
    (stream.head.is_some() && !stream.deleted && stream.last_stamp != Some(current)).then(|| {
        Lagging {
            doc: stream.doc.clone(),
            stamp: stream.last_stamp,
            current,
        }
    })
}

/// The last seq of a schema stream, read from its end.
fn schema_head(folder: &Folder, schema_doc: &DocId) -> Result<Option<u64>> {
    let path = folder.stream_path(schema_doc);
    let Some(file) = fsio::open_read(&path)? else {
        return Ok(None);
    };
    let tail = crate::stream::read_tail(&file, &path, schema_doc, folder.max_event_bytes())?;
    Ok(tail.last.map(|e| e.seq))
}

/// A checkpoint's heads, decoded, and the mismatches found before any stream is read: a
/// malformed hash, and (unless only some documents are verified) a stream that is gone.
struct Expected {
    heads: BTreeMap<String, (u64, Hash)>,
    mismatches: Vec<(String, String)>,
}

impl Expected {
    fn new(checkpoint: &Checkpoint, docs: &[DocId], partial: bool) -> Expected {
        let mut expected = Expected {
            heads: BTreeMap::new(),
            mismatches: Vec::new(),
        };
        for (doc, head) in &checkpoint.heads {
            let present = docs
                .binary_search_by(|d| d.as_str().cmp(doc.as_str()))
                .is_ok();
            match decode_hex::<32>(&head.hash) {
                None => expected.mismatches.push((
                    doc.clone(),
                    format!("the checkpoint's hash {:?} is malformed", head.hash),
                )),
                Some(_) if !present && !partial => expected
                    .mismatches
                    .push((doc.clone(), "the stream is gone".to_string())),
                Some(_) if !present => {}
                Some(hash) => {
                    expected.heads.insert(doc.clone(), (head.seq, hash));
                }
            }
        }
        expected
    }
}

/// Why the checkpoint's head at `seq`, `hash` is not in place in `stream`, if it is not.
fn compare(stream: &StreamCheck, seq: u64, hash: Hash) -> Option<String> {
    match (stream.hash_at_checkpoint, stream.head) {
        (Some(found), _) if found == hash => None,
        (Some(_), _) => Some(format!(
            "the event at seq {seq} has a different hash (rewritten)"
        )),
        (None, Some(h)) if h.seq < seq => Some(format!(
            "the stream ends at seq {} but the checkpoint holds seq {seq} (truncated or rolled back)",
            h.seq
        )),
        (None, _) => Some(format!("seq {seq} could not be verified")),
    }
}
