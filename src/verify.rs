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
    pub path: PathBuf,
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
        path: path.clone(),
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
/// order of document ids: `DOC \t SEQ \t HASH \n` (FORMAT.md).
pub fn digest<'a>(heads: impl IntoIterator<Item = (&'a DocId, Head)>) -> Hash {
    let mut heads: Vec<_> = heads.into_iter().collect();
    heads.sort_by(|a, b| a.0.as_str().as_bytes().cmp(b.0.as_str().as_bytes()));
    let mut h = Sha256::new();
    for (doc, head) in heads {
        h.update(format!(
            "{}\t{}\t{}\n",
            doc,
            head.seq,
            crate::event::encode_hex(head.hash)
        ));
    }
    h.finalize().into()
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
    pub fn new(folder: &Folder, checks: &[StreamCheck], digest: &Hash) -> Checkpoint {
        let heads = checks
            .iter()
            .filter_map(|c| {
                c.head.map(|h| {
                    (
                        c.doc.to_string(),
                        CheckpointHead {
                            seq: h.seq,
                            hash: crate::event::encode_hex(h.hash),
                        },
                    )
                })
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

/// The outcome of verifying a folder (or some of its documents).
pub struct Report {
    pub streams: Vec<StreamCheck>,
    pub foreign: Vec<PathBuf>,
    pub digest: Hash,
    /// Checkpoint heads that are no longer in place: `(doc, why)`.
    pub checkpoint_mismatches: Vec<(String, String)>,
    /// Live documents written under an older schema version than their type's current one.
    pub lagging: Vec<Lagging>,
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
        self.streams.iter().all(|s| s.failure.is_none()) && self.checkpoint_mismatches.is_empty()
    }
}

/// Verifies `docs` (every document when `None`) and, when given, that `checkpoint`'s heads are
/// all still in place.
pub fn verify(
    folder: &Folder,
    docs: Option<Vec<DocId>>,
    checkpoint: Option<&Checkpoint>,
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
    let mut streams: Vec<StreamCheck> = docs
        .par_iter()
        .map(|doc| check_stream(folder, doc, checkpoint.and_then(|c| c.seq_of(doc))))
        .collect();
    let lagging = check_stamps(folder, &mut streams)?;
    let digest = digest(streams.iter().filter_map(|s| s.head.map(|h| (&s.doc, h))));
    let checkpoint_mismatches = checkpoint
        .map(|c| compare(c, &streams, partial))
        .unwrap_or_default();
    Ok(Report {
        streams,
        foreign,
        digest,
        checkpoint_mismatches,
        lagging,
    })
}

/// Fails every stream with a stamp that does not resolve to an event of its type's schema
/// stream, and lists the live documents whose last stamp is older than the current schema.
fn check_stamps(folder: &Folder, streams: &mut [StreamCheck]) -> Result<Vec<Lagging>> {
    let mut heads: BTreeMap<String, Option<u64>> = streams
        .iter()
        .filter_map(|s| {
            s.doc
                .schema_of()
                .map(|kind| (kind.to_string(), s.head.map(|h| h.seq)))
        })
        .collect();
    let mut lagging = Vec::new();
    for stream in streams.iter_mut() {
        let Some(schema_doc) = stream.doc.schema_doc() else {
            continue;
        };
        let kind = stream.doc.kind().to_string();
        let current = match heads.get(&kind) {
            Some(head) => *head,
            None => {
                let head = schema_head(folder, &schema_doc)?;
                heads.insert(kind, head);
                head
            }
        };
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
        if let Some(current) = current
            && stream.head.is_some()
            && !stream.deleted
            && stream.last_stamp != Some(current)
        {
            lagging.push(Lagging {
                doc: stream.doc.clone(),
                stamp: stream.last_stamp,
                current,
            });
        }
    }
    Ok(lagging)
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

/// The checkpoint's heads that are not in place. With `partial`, only the verified streams'.
fn compare(
    checkpoint: &Checkpoint,
    streams: &[StreamCheck],
    partial: bool,
) -> Vec<(String, String)> {
    let by_doc: BTreeMap<&str, &StreamCheck> =
        streams.iter().map(|s| (s.doc.as_str(), s)).collect();
    let mut out = Vec::new();
    for (doc, head) in &checkpoint.heads {
        let Some(expected) = decode_hex::<32>(&head.hash) else {
            out.push((
                doc.clone(),
                format!("the checkpoint's hash {:?} is malformed", head.hash),
            ));
            continue;
        };
        let why = match by_doc.get(doc.as_str()) {
            None if partial => None,
            None => Some("the stream is gone".to_string()),
            Some(s) => match (s.hash_at_checkpoint, s.head) {
                (Some(found), _) if found == expected => None,
                (Some(_), _) => Some(format!(
                    "the event at seq {} has a different hash (rewritten)",
                    head.seq
                )),
                (None, Some(h)) if h.seq < head.seq => Some(format!(
                    "the stream ends at seq {} but the checkpoint holds seq {} (truncated or rolled back)",
                    h.seq, head.seq
                )),
                (None, _) => Some(format!("seq {} could not be verified", head.seq)),
            },
        };
        if let Some(why) = why {
            out.push((doc.clone(), why));
        }
    }
    out
}
