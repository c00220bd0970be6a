//! Appending one event: the request (validated before any file is opened for writing) and the
//! protocol that writes it durably under the stream's lock.
//!
//! The protocol, and what a crash at each step leaves behind:
//! 1. open (or create) the stream file and take its exclusive lock — a crash leaves at most an
//!    empty file, which is a stream without events;
//! 2. take the schema stream's shared lock and read its last seq for the stamp;
//! 3. read the tail from the end of the file; bytes after the last newline are a torn tail from
//!    an append that never finished, so they are truncated (fsynced) and reported;
//! 4. check `--expect` and the document's state, apply the patch to a copy of the state;
//! 5. write the line in one `write` call — a failure truncates back to the old length, a crash
//!    leaves a torn tail that step 3 of the next append removes;
//! 6. fsync the file, and for a new stream its directories — only then is the event
//!    acknowledged (printed, exit 0);
//! 7. refresh the snapshot when it lags (derived data: losing it loses nothing).

use std::fs::File;
use std::path::Path;

use json_patch::Patch;
use serde_json::Value;

use crate::event::{EventType, NewEvent, StoredEvent};
use crate::state::{DocState, check_new_state};
use crate::stream::read_tail;
use crate::{DocId, Error, Folder, Result, io as fsio, snapshot, time};

/// What the event does.
#[derive(Clone, Debug)]
pub enum Action {
    /// Start (or restart, after a delete) the document with this state.
    Create(Value),
    /// Apply this patch to the current state.
    Update(Patch),
    /// Mark the document deleted.
    Delete,
}

/// The `--expect` precondition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No precondition.
    Any,
    /// The stream must have no events.
    NoStream,
    /// The stream's last seq must be this.
    Seq(u64),
}

impl Expect {
    /// Parses `any`, `none` or a seq.
    pub fn parse(text: &str) -> Result<Expect> {
        match text {
            "any" => Ok(Expect::Any),
            "none" => Ok(Expect::NoStream),
            _ => text.parse().map(Expect::Seq).map_err(|_| {
                Error::input(
                    "--expect",
                    format!("{text:?} is not a seq, 'none' or 'any'"),
                )
            }),
        }
    }

    fn check(self, doc: &DocId, last: Option<u64>) -> Result<()> {
        let (holds, expected) = match self {
            Expect::Any => (true, String::new()),
            Expect::NoStream => (last.is_none(), "no events (--expect none)".to_string()),
            Expect::Seq(seq) => (last == Some(seq), format!("last seq {seq}")),
        };
        if holds {
            return Ok(());
        }
        let found = match last {
            Some(seq) => format!("the last seq is {seq}"),
            None => "the document has no events".to_string(),
        };
        Err(Error::ExpectFailed {
            doc: doc.to_string(),
            expected,
            found,
        })
    }
}

/// A validated append request.
#[derive(Clone, Debug)]
pub struct Request {
    pub doc: DocId,
    pub action: Action,
    pub expect: Expect,
    pub meta: Option<Value>,
}

/// What an append did.
pub struct Appended {
    /// The stored event.
    pub event: StoredEvent,
    /// The size of a torn tail that was removed first, if any.
    pub repaired_tail: Option<u64>,
}

/// Appends one event to `request.doc`'s stream, durably. On any error nothing is written.
pub fn append(folder: &Folder, request: &Request) -> Result<Appended> {
    let doc = &request.doc;
    let path = folder.stream_path(doc);
    if fsio::open_read(&path)?.is_none() {
        // Judge the request against an empty stream before creating anything, so that a
        // refused request leaves no file or directory behind.
        plan(folder, request, None, None)?;
    }
    let mut stream = fsio::open_locked(&folder.streams_dir(), &path)?;
    let result = append_locked(folder, request, &mut stream.file, &path);
    if result.is_err() && stream.created_file {
        fsio::remove_new_stream(&stream, &path);
    }
    result
}

fn append_locked(
    folder: &Folder,
    request: &Request,
    file: &mut File,
    path: &Path,
) -> Result<Appended> {
    let doc = &request.doc;
    let (schema, _schema_lock) = schema_stamp(folder, doc)?;
    let tail = read_tail(file, path, doc, folder.max_event_bytes())?;
    let repaired_tail = (tail.partial_len > 0).then_some(tail.partial_len);
    if repaired_tail.is_some() {
        fsio::truncate(file, path, tail.complete_len)?;
    }
    let last = tail.last.as_ref();
    let planned = plan(folder, request, last, Some((file, path, schema)))?;
    fsio::append_or_roll_back(file, path, tail.complete_len, planned.line.as_bytes())?;
    if let Err(e) = fsio::sync_file(file, path) {
        // Not acknowledged: try to take the line back; the error stands either way.
        let _ = file.set_len(tail.complete_len);
        return Err(e);
    }
    if planned.seq == 0 {
        sync_stream_dirs(folder, path)?;
    }
    let line = planned.line.trim_end_matches('\n').to_string();
    let prev = last.map_or(crate::event::ZERO_HASH, |e| e.hash);
    let event = crate::event::parse_line(line, doc, &prev).expect("a freshly encoded line parses");
    if let Some((state, folded)) = planned.new_state
        && folded + 1 >= snapshot::SNAPSHOT_EVERY
    {
        let state = DocState {
            seq: event.seq,
            hash: event.hash,
            timestamp: event.timestamp.clone(),
            schema,
            deleted: false,
            state,
        };
        snapshot::store(
            folder,
            doc,
            &state,
            tail.complete_len + planned.line.len() as u64,
        );
    }
    Ok(Appended {
        event,
        repaired_tail,
    })
}

/// An encoded event, ready to write.
struct Planned {
    seq: u64,
    line: String,
    /// For an update: the new state and how many events were folded to compute it.
    new_state: Option<(Value, u64)>,
}

/// Checks `request` against the stream's last event and encodes the event. `stream` gives the
/// locked file to fold for an update (and the schema stamp); without it, this is a dry run
/// against a stream that does not exist.
fn plan(
    folder: &Folder,
    request: &Request,
    last: Option<&StoredEvent>,
    stream: Option<(&File, &Path, Option<u64>)>,
) -> Result<Planned> {
    let doc = &request.doc;
    request.expect.check(doc, last.map(|e| e.seq))?;
    let live = last.is_some_and(|e| e.kind != EventType::Delete);
    let patch_value;
    let (kind, data, new_state) = match &request.action {
        Action::Create(state) => {
            if let Some(last) = last.filter(|_| live) {
                return Err(Error::StateConflict {
                    doc: doc.to_string(),
                    reason: format!(
                        "already exists (last seq {}); update it, or delete it first",
                        last.seq
                    ),
                });
            }
            (EventType::Create, Some(state), None)
        }
        Action::Delete => {
            require_live(doc, last, live)?;
            (EventType::Delete, None, None)
        }
        Action::Update(patch) => {
            require_live(doc, last, live)?;
            let (file, path, _) = stream.expect("a live document has a stream");
            let folded = snapshot::fold_file(folder, doc, file, path.to_path_buf())?
                .expect("a live document has events");
            let next = crate::patch::apply(&folded.state.state, patch).map_err(|reason| {
                Error::PatchFailed {
                    doc: doc.to_string(),
                    seq: folded.state.seq,
                    reason,
                }
            })?;
            check_new_state(&next, "the patched document")?;
            patch_value = serde_json::to_value(patch).expect("a patch serialises");
            (
                EventType::Update,
                Some(&patch_value),
                Some((next, folded.events_folded)),
            )
        }
    };
    let seq = last.map_or(0, |e| e.seq + 1);
    let now = time::now();
    let timestamp = match last {
        Some(e) if e.timestamp > now => e.timestamp.clone(),
        _ => now,
    };
    let schema = stream.and_then(|(_, _, schema)| schema);
    let new = NewEvent {
        seq,
        doc,
        kind,
        timestamp: &timestamp,
        schema,
        meta: request.meta.as_ref(),
        data,
    };
    let prev = last.map_or(crate::event::ZERO_HASH, |e| e.hash);
    let line = new.encode(&prev).line;
    let limit = folder.max_event_bytes();
    if line.len() > limit {
        return Err(Error::EventTooLarge {
            doc: doc.to_string(),
            size: line.len(),
            limit,
        });
    }
    Ok(Planned {
        seq,
        line,
        new_state,
    })
}

fn require_live(doc: &DocId, last: Option<&StoredEvent>, live: bool) -> Result<()> {
    match last {
        None => Err(Error::NotFound {
            doc: doc.to_string(),
        }),
        Some(last) if !live => Err(Error::StateConflict {
            doc: doc.to_string(),
            reason: format!(
                "was deleted at seq {}; create it again with --data",
                last.seq
            ),
        }),
        Some(_) => Ok(()),
    }
}

/// The stamp for an event of `doc`: the last seq of its type's schema stream, read under that
/// stream's shared lock, which the caller holds until its event is durable so that no schema
/// change can slip in between.
fn schema_stamp(folder: &Folder, doc: &DocId) -> Result<(Option<u64>, Option<File>)> {
    let Some(schema_doc) = doc.schema_doc() else {
        return Ok((None, None));
    };
    let path = folder.stream_path(&schema_doc);
    let Some(file) = fsio::open_read(&path)? else {
        return Ok((None, None));
    };
    fsio::lock_shared(&file, &path)?;
    let tail = read_tail(&file, &path, &schema_doc, folder.max_event_bytes())?;
    Ok((tail.last.map(|e| e.seq), Some(file)))
}

/// fsyncs the directories that hold a new stream file, up to `streams/`, so that the file's
/// name is as durable as its first event even if the process that created it died before.
fn sync_stream_dirs(folder: &Folder, path: &Path) -> Result<()> {
    let streams = folder.streams_dir();
    let mut dir = path.parent();
    while let Some(d) = dir {
        fsio::sync_dir(d)?;
        if d == streams {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}
