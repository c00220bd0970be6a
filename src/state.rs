//! Folding events into a document's state, and reading the state at a point in its history.

use std::path::Path;

use json_patch::Patch;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::{EventType, Hash, StoredEvent};
use crate::index::{Index, Target};
use crate::stream::{Position, StreamReader};
use crate::{DocId, Error, Folder, Result, json, patch, snapshot, stored_patch};

/// A document's state after some event.
#[derive(Clone, Debug, PartialEq)]
pub struct DocState {
    /// The seq of the last event folded.
    pub seq: u64,
    /// Its hash.
    pub hash: Hash,
    /// Its timestamp.
    pub timestamp: String,
    /// Its schema stamp.
    pub schema: Option<u64>,
    /// Whether the document is deleted. A deleted document keeps its last state.
    pub deleted: bool,
    /// The state: always a JSON object.
    pub state: Value,
}

/// The JSON shape printed by `get`, `at` and `replay`.
#[derive(Serialize)]
pub struct StateView<'a> {
    pub doc: &'a str,
    pub seq: u64,
    pub timestamp: &'a str,
    pub schema: Option<u64>,
    pub deleted: bool,
    pub hash: String,
    pub state: &'a Value,
}

impl DocState {
    /// The state before any event.
    pub fn empty() -> DocState {
        DocState {
            seq: 0,
            hash: [0; 32],
            timestamp: String::new(),
            schema: None,
            deleted: true,
            state: Value::Object(Map::new()),
        }
    }

    /// The printable view of this state.
    pub fn view<'a>(&'a self, doc: &'a DocId) -> StateView<'a> {
        StateView {
            doc: doc.as_str(),
            seq: self.seq,
            timestamp: &self.timestamp,
            schema: self.schema,
            deleted: self.deleted,
            hash: crate::event::encode_hex(self.hash),
            state: &self.state,
        }
    }

    /// Applies one stored event. A stored event that cannot apply (a patch that fails on replay)
    /// means the stream is corrupt; the error names why.
    pub fn apply(&mut self, event: &StoredEvent) -> Result<(), String> {
        match event.kind {
            EventType::Create => {
                self.state = event.data()?;

                self.deleted = false;
            }
            EventType::Update | EventType::Migrate => {
                let text = event.data_text();
                match stored_patch::apply(&mut self.state, text) {
                    Some(folded) => folded?,
                    None => {
                        let patch = patch::parse_stored(text)
                            .map_err(|e| format!("the stored patch is not a JSON Patch: {e}"))?;
                        patch::apply_owned(&mut self.state, patch)?;
                    }
                }
                if !self.state.is_object() {
                    return Err(
                        "the patch turns the state into something other than an object".to_string(),
                    );
                }
            }
            EventType::Delete => self.deleted = true,
        }
        self.seq = event.seq;
        self.hash = event.hash;
        self.timestamp.clear();
        self.timestamp.push_str(event.timestamp());
        self.schema = event.schema;
        Ok(())
    }

    /// Applies a stored event read from the stream file at `path`, turning a failure into a
    /// corruption error.
    pub fn apply_from(&mut self, event: &StoredEvent, path: &Path, doc: &DocId) -> Result<()> {
        self.apply(event)
            .map_err(|reason| Error::corrupt_event(doc, path, event.seq, reason))
    }
}

/// Validates a state that an append would produce: an object within the depth limit.
pub fn check_new_state(state: &Value, what: &str) -> Result<()> {
    if !state.is_object() {
        return Err(Error::input(
            what,
            "a document's state must be a JSON object",
        ));
    }
    json::check_depth(state, what)
}

/// [`check_new_state`] for `state` patched by `patch` from a state that passed it: the walk
/// over the whole state is skipped when the patch cannot have reached the depth limit.
pub fn check_patched_state(state: &Value, patch: &Patch, what: &str) -> Result<()> {
    match crate::patch::depth_reached(patch) {
        Some(depth) if depth <= json::MAX_DEPTH && state.is_object() => Ok(()),
        _ => check_new_state(state, what),
    }
}

/// The current state of `doc`, starting from its snapshot when one is valid. `None` when the
/// document has no events. A long fold leaves a snapshot behind (as appends do), so that only
/// the first reader of a folder without `cache/` (a fresh clone, say) pays for it.
pub fn current(folder: &Folder, doc: &DocId) -> Result<Option<DocState>> {
    let Some(folded) = snapshot::fold_to_end(folder, doc)? else {
        return Ok(None);
    };
    if folded.events_folded >= snapshot::SNAPSHOT_EVERY {
        snapshot::store(folder, doc, &folded.state, folded.end.offset);
    }
    Ok(Some(folded.state))
}

/// Where [`at`] stops.
#[derive(Clone, Debug)]
pub enum Point {
    /// After the event with this seq.
    Seq(u64),
    /// After the last event at or before this instant (stored form).
    Time(String),
}

/// The state of `doc` at `point`. `Ok(None)` when the document has no stream; an error names
/// a seq that does not exist or an instant before the first event.
pub fn at(folder: &Folder, doc: &DocId, point: &Point) -> Result<Option<DocState>> {
    let path = folder.stream_path(doc);
    let Some(file) = crate::io::open_read(&path)? else {
        return Ok(None);
    };
    // Start from the nearest checkpoint before the point, when the index has a valid one.
    let mut index = Index::load(folder, doc);
    let target = match point {
        Point::Seq(seq) => Target::Seq(*seq),
        Point::Time(t) => Target::Time(t),
    };
    let (mut current, position) = match index.resume(&target, &file, &path) {
        Some((state, position)) => (Some(state), position),
        None => (None, Position::start()),
    };
    let mut reader =
        StreamReader::at(file, path, doc.clone(), folder.max_event_bytes(), position)?.folding();
    while let Some(event) = reader.next_event()? {
        let past = match point {
            Point::Seq(seq) => event.seq > *seq,
            Point::Time(t) => event.timestamp() > t.as_str(),
        };
        if past {
            break;
        }
        let state = current.get_or_insert_with(DocState::empty);
        state.apply_from(&event, reader.path(), doc)?;
        if index.wants(event.seq) {
            index.add(folder, state, reader.offset());
        }
    }
    match (point, current) {
        (Point::Seq(seq), Some(state)) if state.seq == *seq => Ok(Some(state)),
        (Point::Seq(seq), Some(state)) => Err(Error::NoSuchPoint {
            doc: doc.to_string(),
            reason: format!("there is no seq {seq}; the last is {}", state.seq),
        }),
        (Point::Time(_), Some(state)) => Ok(Some(state)),
        (Point::Time(t), None) => Err(Error::NoSuchPoint {
            doc: doc.to_string(),
            reason: format!("the document did not exist yet at {t}"),
        }),
        (Point::Seq(_), None) => Ok(None),
    }
}
