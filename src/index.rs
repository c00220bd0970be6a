//! Point-in-time index: derived checkpoints of a document's state every [`INDEX_EVERY`]
//! events, kept under `cache/`, so that `at --seq N` and `at --time T` fold at most that many
//! events whatever N or T. An entry is used only after checking that the stream still carries
//! its hash at its offset; anything stale or damaged is ignored, and deleting the file loses
//! nothing. Entries are added by the readers that fold past them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::event::decode_hex;
use crate::state::DocState;
use crate::stream::{Position, stored_hash_before};
use crate::{DocId, Folder, io as fsio};

/// A checkpoint is kept after every this many events.
pub const INDEX_EVERY: u64 = 1024;

#[derive(Serialize, Deserialize)]
struct Entry<'a> {
    seq: u64,
    offset: u64,
    hash: &'a str,
    timestamp: &'a str,
    schema: Option<u64>,
    deleted: bool,
    /// SHA-256 of the bytes of `state`, so that a damaged checkpoint is never used.
    state_sha256: &'a str,
    #[serde(borrow)]
    state: &'a RawValue,
}

/// Where a point lies: after a seq, at an instant, or just before an instant (stored form).
pub enum Target<'a> {
    Seq(u64),
    Time(&'a str),
    /// The last checkpoint strictly earlier than the instant: every event at or after the
    /// instant comes after it.
    Before(&'a str),
}

/// The checkpoints of one stream.
pub struct Index {
    path: PathBuf,
    text: String,
    /// Per usable line: its seq, its timestamp and its byte range in `text`.
    lines: Vec<(u64, String, std::ops::Range<usize>)>,
}

impl Index {
    /// Reads the checkpoints of `doc`; a missing or damaged file gives what can be used.
    pub fn load(folder: &Folder, doc: &DocId) -> Index {
        let mut path = folder.cache_dir().join("index").join(doc.relative_path());
        path.set_extension("index");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut lines = Vec::new();
        let mut start = 0;
        for line in text.split_inclusive('\n') {
            let range = start..start + line.len() - 1;
            start += line.len();
            let Some(entry) = line
                .strip_suffix('\n')
                .and_then(|l| serde_json::from_str::<Entry>(l).ok())
            else {
                break;
            };
            // Entries only move forward; a duplicate written by a concurrent reader is skipped.
            if lines.last().is_none_or(|(seq, _, _)| entry.seq > *seq) {
                lines.push((entry.seq, entry.timestamp.to_string(), range));
            }
        }
        Index { path, text, lines }
    }

    /// The seq of the last checkpoint.
    pub fn last_seq(&self) -> Option<u64> {
        self.lines.last().map(|(seq, _, _)| *seq)
    }

    /// The state and reader position of the last checkpoint at or before `target`, checked
    /// against the stream `file`.
    pub fn resume(
        &self,
        target: &Target,
        file: &File,
        path: &Path,
    ) -> Option<(DocState, Position)> {
        let count = self
            .lines
            .partition_point(|(seq, timestamp, _)| match target {
                Target::Seq(n) => seq <= n,
                Target::Time(t) => timestamp.as_str() <= *t,
                Target::Before(t) => timestamp.as_str() < *t,
            });
        let (_, _, range) = self.lines.get(count.checked_sub(1)?)?;
        let entry: Entry = serde_json::from_str(&self.text[range.clone()]).ok()?;
        let hash = decode_hex::<32>(entry.hash)?;
        let state_digest: [u8; 32] = Sha256::digest(entry.state.get().as_bytes()).into();
        if decode_hex::<32>(entry.state_sha256)? != state_digest {
            return None;
        }
        if file.metadata().ok()?.len() < entry.offset
            || stored_hash_before(file, path, entry.offset).ok()? != hash
        {
            return None;
        }
        let state = DocState {
            seq: entry.seq,
            hash,
            timestamp: entry.timestamp.to_string(),
            schema: entry.schema,
            deleted: entry.deleted,
            state: serde_json::from_str(entry.state.get()).ok()?,
        };
        let position = Position {
            offset: entry.offset,
            next_seq: entry.seq + 1,
            prev_hash: hash,
            prev_timestamp: entry.timestamp.to_string(),
        };
        Some((state, position))
    }

    /// Whether a checkpoint belongs after the event with this seq.
    pub fn wants(&self, seq: u64) -> bool {
        (seq + 1).is_multiple_of(INDEX_EVERY) && self.last_seq().is_none_or(|last| seq > last)
    }

    /// Appends a checkpoint of `state`, whose event ends at byte `offset`. Best effort: the
    /// index is derived data.
    pub fn add(&mut self, folder: &Folder, state: &DocState, offset: u64) {
        let state_text = crate::json::canonical(&state.state);
        let Ok(raw) = RawValue::from_string(state_text) else {
            return;
        };
        let hash = crate::event::encode_hex(state.hash);
        let state_sha256 = crate::event::encode_hex(Sha256::digest(raw.get().as_bytes()));
        let entry = Entry {
            seq: state.seq,
            offset,
            hash: &hash,
            timestamp: &state.timestamp,
            schema: state.schema,
            deleted: state.deleted,
            state_sha256: &state_sha256,
            state: &raw,
        };
        let Ok(mut line) = serde_json::to_string(&entry) else {
            return;
        };
        line.push('\n');
        let Some(dir) = self.path.parent() else {
            return;
        };
        if fsio::create_dirs(folder.root(), dir).is_err() {
            return;
        }
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        if written.is_ok() {
            let start = self.text.len();
            self.text.push_str(&line);
            self.lines.push((
                state.seq,
                state.timestamp.clone(),
                start..start + line.len() - 1,
            ));
        }
    }
}
