//! Export: a folder's confirmed history as self-contained NDJSON lines for other systems, and
//! cursors that make repeated exports ship each event exactly once.
//!
//! An export line is the stored event line with one member put first: `"origin"`, the folder
//! id of the folder it was exported from. Removing `"origin":"<id>",` after the `{` gives the
//! stored bytes back, which is how `apply` rebuilds streams byte for byte (FORMAT.md).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::event::{Hash, StoredEvent, decode_hex};
use crate::stream::{Position, StreamReader, stored_hash_before};
use crate::{DocId, Error, Folder, Result, io as fsio};

/// The length of `{"origin":"` + a 36-character UUID + `",`.
const ORIGIN_PREFIX_LEN: usize = 49;

/// The export line of a stored line.
pub fn export_line(origin: &str, stored_line: &str) -> String {
    let mut line = String::with_capacity(stored_line.len() + ORIGIN_PREFIX_LEN);
    line.push_str("{\"origin\":\"");
    line.push_str(origin);
    line.push_str("\",");
    line.push_str(&stored_line[1..]);
    line
}

/// Splits an export line into its origin and the stored line, or `None` when the line does
/// not start with an origin member.
pub fn split_export_line(line: &str) -> Option<(&str, String)> {
    let origin = line.strip_prefix("{\"origin\":\"")?.get(..36)?;
    uuid::Uuid::parse_str(origin).ok()?;
    let rest = line.get(ORIGIN_PREFIX_LEN..)?;
    if !line[ORIGIN_PREFIX_LEN - 2..].starts_with("\",") {
        return None;
    }
    Some((origin, format!("{{{rest}")))
}

/// Where an export or a tail stopped in one stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CursorEntry {
    /// The next seq to ship.
    pub seq: u64,
    /// The byte offset of that event's line.
    pub offset: u64,
    /// The hash of the event before it, to check that the stream is still the one shipped.
    pub hash: String,
}

/// A cursor file: per stream, where the next export starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cursor {
    pub format: String,
    pub version: u64,
    pub folder_id: String,
    pub next: BTreeMap<String, CursorEntry>,
}

impl Cursor {
    /// An empty cursor for `folder`: everything is still to ship.
    pub fn new(folder: &Folder) -> Cursor {
        Cursor {
            format: "eventdir-cursor".to_string(),
            version: 1,
            folder_id: folder.manifest().folder_id.clone(),
            next: BTreeMap::new(),
        }
    }

    /// Reads a cursor file; a missing file is an empty cursor.
    pub fn load(path: &Path, folder: &Folder) -> Result<Cursor> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Cursor::new(folder)),
            Err(e) => return Err(Error::io("read cursor", path)(e)),
        };
        let what = format!("cursor {}", path.display());
        let cursor: Cursor =
            serde_json::from_slice(&bytes).map_err(|e| Error::input(&what, e.to_string()))?;
        if cursor.format != "eventdir-cursor" || cursor.version != 1 {
            return Err(Error::input(&what, "not an eventdir cursor of version 1"));
        }
        if cursor.folder_id != folder.manifest().folder_id {
            return Err(Error::input(
                &what,
                format!(
                    "it belongs to folder {}, not to {}",
                    cursor.folder_id,
                    folder.manifest().folder_id
                ),
            ));
        }
        Ok(cursor)
    }

    /// Writes the cursor durably (write, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).expect("cursor serialises");
        text.push('\n');
        fsio::write_atomic(path, text.as_bytes(), true)
    }
}

/// Which documents and events to ship.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only documents of this type (and the type's schema document).
    pub kind: Option<String>,
    /// Only these documents.
    pub docs: Vec<DocId>,
    /// Only events at or after this instant (stored form).
    pub since: Option<String>,
    /// Only events at or before this instant (stored form).
    pub until: Option<String>,
}

impl Selection {
    /// Whether `doc`'s stream is shipped.
    pub fn includes(&self, doc: &DocId) -> bool {
        if !self.docs.is_empty() && !self.docs.contains(doc) {
            return false;
        }
        match &self.kind {
            Some(kind) => doc.kind() == kind || doc.schema_of() == Some(kind),
            None => true,
        }
    }

    /// Whether `event` is shipped.
    pub fn includes_event(&self, event: &StoredEvent) -> bool {
        self.since
            .as_ref()
            .is_none_or(|s| event.timestamp() >= s.as_str())
            && self
                .until
                .as_ref()
                .is_none_or(|u| event.timestamp() <= u.as_str())
    }

    /// The selected documents of `folder`, schema documents first (so that a consumer meets a
    /// schema version before the events stamped with it).
    pub fn documents(&self, folder: &Folder) -> Result<Vec<DocId>> {
        let docs: Vec<DocId> = folder
            .documents()?
            .into_iter()
            .filter(|d| self.includes(d))
            .collect();
        let (mut schemas, documents): (Vec<DocId>, Vec<DocId>) =
            docs.into_iter().partition(|d| d.schema_of().is_some());
        schemas.extend(documents);
        Ok(schemas)
    }
}

/// Reads the events of `doc` after `from` (the whole stream when `None`), up to byte `end`
/// when given, calling `emit` for each; returns where the next read starts (unchanged when
/// nothing new was complete).
pub fn read_new(
    folder: &Folder,
    doc: &DocId,
    from: Option<&CursorEntry>,
    end: Option<u64>,
    emit: &mut dyn FnMut(&StoredEvent) -> Result<()>,
) -> Result<Option<CursorEntry>> {
    let path = folder.stream_path(doc);
    let Some(file) = fsio::open_read(&path)? else {
        return Ok(from.cloned());
    };
    let position = match from {
        None => Position::start(),
        Some(entry) => {
            let hash: Hash = decode_hex(&entry.hash).ok_or_else(|| {
                Error::input("cursor", format!("{doc}: malformed hash {:?}", entry.hash))
            })?;
            let matches = entry.offset == 0 && entry.seq == 0
                || stored_hash_before(&file, &path, entry.offset).ok() == Some(hash);
            if !matches {
                return Err(Error::Diverged {
                    doc: doc.to_string(),
                    reason: format!(
                        "the stream no longer has the event before seq {} where the cursor left it",
                        entry.seq
                    ),
                });
            }
            Position {
                offset: entry.offset,
                next_seq: entry.seq,
                prev_hash: hash,
                prev_timestamp: String::new(),
            }
        }
    };
    let mut reader = StreamReader::at(file, path, doc.clone(), folder.max_event_bytes(), position)?;
    if let Some(end) = end {
        reader = reader.stop_at(end);
    }
    let mut next = from.cloned();
    while let Some(event) = reader.next_event()? {
        emit(&event)?;
        next = Some(CursorEntry {
            seq: event.seq + 1,
            offset: reader.offset(),
            hash: event.hash_hex(),
        });
    }
    Ok(next)
}

/// The length of a stream's complete lines now (0 when it has no stream).
pub fn complete_len(folder: &Folder, doc: &DocId) -> Result<u64> {
    let path = folder.stream_path(doc);
    let Some(file) = fsio::open_read(&path)? else {
        return Ok(0);
    };
    Ok(crate::stream::read_tail(&file, &path, doc, folder.max_event_bytes())?.complete_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_lines_round_trip_to_the_stored_bytes() {
        let origin = "0757a7fb-d9a9-45f4-81ff-e7a6363ebae8";
        let stored = r#"{"seq":0,"doc":"a:b","hash":"00"}"#;
        let line = export_line(origin, stored);
        assert_eq!(
            line,
            r#"{"origin":"0757a7fb-d9a9-45f4-81ff-e7a6363ebae8","seq":0,"doc":"a:b","hash":"00"}"#
        );
        assert_eq!(split_export_line(&line), Some((origin, stored.to_string())));
        assert_eq!(split_export_line(stored), None);
        assert_eq!(split_export_line(r#"{"origin":"x","seq":0}"#), None);
    }
}
