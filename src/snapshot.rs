//! Snapshots: derived copies of a document's state after some event, kept under `cache/` so
//! that reading the current state costs the events since the snapshot, not the whole stream.
//! A snapshot is trusted only after checking it against the stream (the hash stored at its
//! offset, and the chain of every later event); anything stale or damaged is ignored.

use std::fs::File;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::{Hash, decode_hex};
use crate::index::{Index, Target};
use crate::read_ahead::FoldReader;
use crate::state::DocState;
use crate::stream::{Position, StreamReader, stored_hash_before};
use crate::{DocId, Error, Folder, Result, io as fsio};

/// Write a new snapshot once this many events have been folded past the last one.
pub const SNAPSHOT_EVERY: u64 = 64;

/// A single append, run as one process per event, folds the events since the snapshot every
/// time, so it writes one sooner: storing a snapshot costs about what folding a few events does.
pub const SNAPSHOT_EVERY_SINGLE: u64 = 8;

#[derive(Serialize, Deserialize)]
struct Header {
    version: u64,
    doc: String,
    seq: u64,
    hash: String,
    offset: u64,
    timestamp: String,
    schema: Option<u64>,
    deleted: bool,
    state_sha256: String,
}

/// The result of folding a stream to its end.
pub struct Folded {
    /// The state after the last complete event.
    pub state: DocState,
    /// How many events were folded (those after the snapshot, or all).
    pub events_folded: u64,
    /// Where the complete lines end.
    pub end: Position,
}

/// Folds `doc`'s stream to its end. `None` when the document has no stream or no events.
pub fn fold_to_end(folder: &Folder, doc: &DocId) -> Result<Option<Folded>> {
    let path = folder.stream_path(doc);
    let Some(file) = fsio::open_read(&path)? else {
        return Ok(None);
    };
    fold_file(folder, doc, &file, path)
}

/// Folds the open stream `file` to its end, from a valid snapshot when there is one.
pub fn fold_file(
    folder: &Folder,
    doc: &DocId,
    file: &File,
    path: PathBuf,
) -> Result<Option<Folded>> {
    if let Some((state, position)) = load(folder, doc, file, &path) {
        // A snapshot that passed its checks but leads into a broken chain is not trusted: fold
        // from the start, which names the real problem if there is one.
        if let Ok(folded) = fold_from(folder, doc, file, path.clone(), Some(state), position) {
            return Ok(folded);
        }
    }
    fold_from(folder, doc, file, path, None, Position::start())
}

/// Where to start reading `doc`'s stream `file` so that the event `seq` is still ahead: just
/// after the latest snapshot or index checkpoint before it, each checked against the stream's
/// bytes as when folding from it, or the start of the stream.
pub fn position_before(
    folder: &Folder,
    doc: &DocId,
    file: &File,
    path: &std::path::Path,
    seq: u64,
) -> Position {
    let Some(last_before) = seq.checked_sub(1) else {
        return Position::start();
    };
    latest_start(folder, doc, file, path, Target::Seq(last_before), |p| {
        p.next_seq <= seq
    })
}

/// Where to start reading `doc`'s stream to see every event at or after `since` (stored
/// form): just after the latest snapshot or index checkpoint strictly earlier than it, or at
/// the start. Timestamps never decrease within a stream, so nothing before that is needed.
pub fn position_before_time(
    folder: &Folder,
    doc: &DocId,
    file: &File,
    path: &std::path::Path,
    since: &str,
) -> Position {
    latest_start(folder, doc, file, path, Target::Before(since), |p| {
        p.prev_timestamp.as_str() < since
    })
}

/// The later of the snapshot (if `snapshot_fits`) and the index checkpoint for `target`, both
/// checked against the stream; the start of the stream without either.
fn latest_start(
    folder: &Folder,
    doc: &DocId,
    file: &File,
    path: &std::path::Path,
    target: Target,
    snapshot_fits: impl Fn(&Position) -> bool,
) -> Position {
    let snapshot = load(folder, doc, file, path)
        .map(|(_, position)| position)
        .filter(snapshot_fits);
    let checkpoint = Index::load(folder, doc)
        .resume(&target, file, path)
        .map(|(_, position)| position);
    snapshot
        .into_iter()
        .chain(checkpoint)
        .max_by_key(|p| p.next_seq)
        .unwrap_or_else(Position::start)
}

fn fold_from(
    folder: &Folder,
    doc: &DocId,
    file: &File,
    path: PathBuf,
    mut state: Option<DocState>,
    position: Position,
) -> Result<Option<Folded>> {
    let handle = file.try_clone().map_err(Error::io("read", &path))?;
    let remaining = file
        .metadata()
        .map_err(Error::io("inspect", &path))?
        .len()
        .saturating_sub(position.offset);
    let reader = StreamReader::at(
        handle,
        path,
        doc.clone(),
        folder.max_event_bytes(),
        position,
    )?
    .folding();
    let mut reader = FoldReader::new(reader, remaining);
    let mut events_folded = 0;
    reader.for_each(|event, path| {
        events_folded += 1;
        state
            .get_or_insert_with(DocState::empty)
            .apply_from(event, path, doc)
    })?;
    Ok(state.map(|state| Folded {
        state,
        events_folded,
        end: reader.end(),
    }))
}

fn snapshot_path(folder: &Folder, doc: &DocId) -> PathBuf {
    let mut path = folder
        .cache_dir()
        .join("snapshots")
        .join(doc.relative_path());
    path.set_extension("snapshot");
    path
}

/// Reads and checks the snapshot of `doc`; `None` when there is none or it does not fit.
fn load(
    folder: &Folder,
    doc: &DocId,
    file: &File,
    path: &std::path::Path,
) -> Option<(DocState, Position)> {
    let bytes = std::fs::read(snapshot_path(folder, doc)).ok()?;
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let header: Header = serde_json::from_slice(&bytes[..newline]).ok()?;
    let body = bytes[newline + 1..].strip_suffix(b"\n")?;
    let hash: Hash = decode_hex(&header.hash)?;
    let body_digest: Hash = Sha256::digest(body).into();
    if header.version != 1
        || header.doc != doc.as_str()
        || decode_hex::<32>(&header.state_sha256)? != body_digest
    {
        return None;
    }
    let len = file.metadata().ok()?.len();
    if header.offset > len || stored_hash_before(file, path, header.offset).ok()? != hash {
        return None;
    }
    let state: Value = serde_json::from_slice(body).ok()?;
    let position = Position {
        offset: header.offset,
        next_seq: header.seq + 1,
        prev_hash: hash,
        prev_timestamp: header.timestamp.clone(),
    };
    let state = DocState {
        seq: header.seq,
        hash,
        timestamp: header.timestamp,
        schema: header.schema,
        deleted: header.deleted,
        state,
    };
    Some((state, position))
}

/// Writes a snapshot of `state`, whose event ends at byte `offset` of the stream. Best effort:
/// a snapshot is derived data, so failing to write one loses nothing.
pub fn store(folder: &Folder, doc: &DocId, state: &DocState, offset: u64) {
    let body = crate::json::canonical(&state.state);
    let header = Header {
        version: 1,
        doc: doc.to_string(),
        seq: state.seq,
        hash: crate::event::encode_hex(state.hash),
        offset,
        timestamp: state.timestamp.clone(),
        schema: state.schema,
        deleted: state.deleted,
        state_sha256: crate::event::encode_hex(Sha256::digest(body.as_bytes())),
    };
    let mut text = serde_json::to_string(&header).expect("header serialises");
    text.push('\n');
    text.push_str(&body);
    text.push('\n');
    let path = snapshot_path(folder, doc);
    let dir = path.parent().expect("snapshot has a directory");
    let _ = fsio::create_dirs(folder.root(), dir)
        .and_then(|_| fsio::write_atomic(&path, text.as_bytes(), false));
}
