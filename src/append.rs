//! Appending one event: the request (validated before any file is opened for writing) and the
//! protocol that writes it durably under the stream's lock.
//!
//! The protocol, and what a crash at each step leaves behind:
//! 1. open (or create) the stream file and take its exclusive lock — a crash leaves at most an
//!    empty file, which is a stream without events;
//! 2. take the schema stream's shared lock and read the schema history for the stamp;
//! 3. read the tail from the end of the file; bytes after the last newline are a torn tail from
//!    an append that never finished;
//! 4. check `--expect`, the document's state and the schema; compute the new state from a
//!    copy (migrated first when the document lags its schema) — a refusal stops here and
//!    changes nothing, not even a torn tail;
//! 5. truncate a torn tail (fsynced, reported), then write the line(s) in one `write` call — a
//!    failure truncates back to the old length, a crash leaves a torn tail that the next
//!    append removes;
//! 6. fsync the file, and for a new stream its directories — only then are the events
//!    acknowledged (printed, exit 0);
//! 7. refresh the snapshot when it lags (derived data: losing it loses nothing).

use std::fs::File;
use std::path::Path;

use json_patch::Patch;
use serde_json::Value;

use crate::event::{EventType, Hash, NewEvent, Payload, StoredEvent};
use crate::schema::{History, Version};
use crate::state::{DocState, check_new_state, check_patched_state};
use crate::stream::{Tail, read_tail};
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
    /// Bring the document to its type's current schema (a `migrate` event), if it lags.
    Migrate,
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
    /// The requested event's data and meta, encoded ahead (see [`Request::encoded_ahead`]);
    /// `None` to encode them when the event is planned.
    pub payload: Option<Payload>,
}

impl Request {
    /// The request with its payload encoded now, on this thread: a batch encodes on the
    /// thread that reads its input, which has time to spare, while the thread that plans and
    /// writes is the one every request waits for. A migration's data depends on the state, so
    /// it is still encoded when planned.
    pub fn encoded_ahead(mut self) -> Request {
        if self.payload.is_none() {
            self.payload = self.encode_payload();
        }
        self
    }

    /// The requested event's data and meta, encoded; `None` for a migration, whose data
    /// depends on the state.
    fn encode_payload(&self) -> Option<Payload> {
        let meta = self.meta.as_ref();
        Some(match &self.action {
            Action::Create(state) => Payload::new(Some(state), meta),
            Action::Update(patch) => Payload::encoded(crate::patch::canonical_text(patch), meta),
            Action::Delete => Payload::new(None, meta),
            Action::Migrate => return None,
        })
    }
}

/// The data of an event being planned: a value still to encode, or one already encoded.
enum Data<'a> {
    Value(Value),
    Prepared(&'a Payload),
}

/// What an append did.
pub struct Appended {
    /// The stored events, in order: a `migrate` event when the document lagged its schema,
    /// then the requested event. Empty when a migration found the document already current.
    pub events: Vec<StoredEvent>,
    /// The size of a torn tail that was removed first, if any.
    pub repaired_tail: Option<u64>,
}

/// Appends to `request.doc`'s stream, durably. On any error nothing is written.
pub fn append(folder: &Folder, request: &Request) -> Result<Appended> {
    let doc = &request.doc;
    refuse_replica(folder, doc)?;
    let path = folder.stream_path(doc);
    let existing = fsio::open_existing_locked(&path)?;
    if existing.is_none() {
        // Judge the request against an empty stream before creating anything, so that a
        // refused request leaves no file or directory behind.
        let history = match doc.schema_doc() {
            Some(schema_doc) => {
                History::load(folder, schema_doc.schema_of().expect("a schema id"))?
            }
            None => None,
        };
        plan(
            folder,
            request,
            &mut Head::empty(),
            None,
            history.as_ref(),
            &mut String::new(),
        )?;
    }
    let mut stream = match existing {
        Some(stream) => stream,
        None => fsio::open_locked(&folder.streams_dir(), &path)?,
    };
    let result = append_locked(folder, request, &mut stream.file, &path);
    if result.is_err() && stream.created_file {
        fsio::remove_new_stream(&stream, &path);
    }
    result
}

pub(crate) fn refuse_replica(folder: &Folder, doc: &DocId) -> Result<()> {
    match &folder.manifest().replica_of {
        Some(origin) => Err(Error::input(
            doc.as_str(),
            format!(
                "{} is a replica of folder {origin}; write to the origin and ship its events with `eventdir export | eventdir apply`",
                folder.root().display()
            ),
        )),
        None => Ok(()),
    }
}

fn append_locked(
    folder: &Folder,
    request: &Request,
    file: &mut File,
    path: &Path,
) -> Result<Appended> {
    let doc = &request.doc;
    let (history, _schema_lock) = schema_context(folder, doc)?;
    let tail = read_tail(file, path, doc, folder.max_event_bytes())?;
    let mut head = Head::from_tail(&tail);
    let mut bytes = String::new();
    plan(
        folder,
        request,
        &mut head,
        Some((file, path)),
        history.as_ref(),
        &mut bytes,
    )?;
    if bytes.is_empty() {
        return Ok(Appended {
            events: Vec::new(),
            repaired_tail: None,
        });
    }
    let repaired_tail = commit(
        folder,
        file,
        path,
        Position::of(&tail),
        &bytes,
        Durability::Fsync,
    )?;
    let mut prev = tail
        .last
        .as_ref()
        .map_or(crate::event::ZERO_HASH, |e| e.hash);
    let mut events = Vec::new();
    for line in bytes.lines() {
        let event = crate::event::parse_line(line.to_string(), doc, &prev)
            .expect("a freshly encoded line parses");
        prev = event.hash;
        events.push(event);
    }
    head.store_snapshot(
        folder,
        doc,
        tail.complete_len + bytes.len() as u64,
        snapshot::SNAPSHOT_EVERY_SINGLE,
    );
    Ok(Appended {
        events,
        repaired_tail,
    })
}

/// Where a commit writes: after a stream's complete lines, over its torn tail if any.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Position {
    /// The length of the complete lines.
    pub complete_len: u64,
    /// Bytes after them, a torn tail to remove first.
    pub partial_len: u64,
    /// Whether the stream has no events yet (so that its file's name must be made durable).
    pub empty: bool,
}

impl Position {
    pub(crate) fn of(tail: &Tail) -> Position {
        Position {
            complete_len: tail.complete_len,
            partial_len: tail.partial_len,
            empty: tail.last.is_none(),
        }
    }
}

/// Writes planned lines durably at `tail`: a torn tail is removed first (only a request that
/// will be written removes it: a refusal changes nothing), the lines go in one write, then the
/// file (and for a new stream its directories) is fsynced. Returns the size of the torn tail
/// removed.
pub(crate) fn commit(
    folder: &Folder,
    file: &mut File,
    path: &Path,
    tail: Position,
    bytes: &str,
    durability: Durability,
) -> Result<Option<u64>> {
    let repaired_tail = (tail.partial_len > 0).then_some(tail.partial_len);
    if repaired_tail.is_some() {
        fsio::truncate(file, path, tail.complete_len)?;
    }
    fsio::append_or_roll_back(file, path, tail.complete_len, bytes.as_bytes())?;
    if durability == Durability::Deferred {
        return Ok(repaired_tail);
    }
    if let Err(e) = fsio::sync_file(file, path) {
        // Not acknowledged: try to take the lines back; the error stands either way.
        let _ = file.set_len(tail.complete_len);
        return Err(e);
    }
    if tail.empty {
        // The file's name must be as durable as its first event, even if the process that
        // created the file died before it could fsync the directories.
        fsio::sync_parents(path, &folder.streams_dir())?;
    }
    Ok(repaired_tail)
}

/// Who makes a commit durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// [`commit`] fsyncs the file (and a new file's directories) itself.
    Fsync,
    /// The caller syncs the whole file system afterwards (`syncfs`), once for many streams.
    Deferred,
}

/// The last event of a stream as a planner sees it: on disk, or planned earlier in the same
/// batch.
#[derive(Clone, Debug)]
struct Last {
    seq: u64,
    hash: Hash,
    timestamp: String,
    deleted: bool,
    stamp: Option<u64>,
}

/// The end of a stream as a planner sees it.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    last: Option<Last>,
    /// The state after `last`, once known.
    state: Option<Value>,
    /// Events since the last snapshot that the state was computed from.
    since_snapshot: u64,
}

impl Head {
    fn empty() -> Head {
        Head {
            last: None,
            state: None,
            since_snapshot: 0,
        }
    }

    /// Whether this head, remembered from an earlier commit, is still the end of the stream
    /// whose tail was just read (nobody else appended since), with its state known.
    pub(crate) fn continues(&self, tail: &Tail) -> bool {
        let same = match (&self.last, &tail.last) {
            (Some(mine), Some(theirs)) => mine.seq == theirs.seq && mine.hash == theirs.hash,
            _ => false,
        };
        same && self.state.is_some()
    }

    pub(crate) fn from_tail(tail: &Tail) -> Head {
        let last = tail.last.as_ref().map(|e| Last {
            seq: e.seq,
            hash: e.hash,
            timestamp: e.timestamp().to_string(),
            deleted: e.kind == EventType::Delete,
            stamp: e.schema,
        });
        Head {
            last,
            state: None,
            since_snapshot: 0,
        }
    }

    /// Writes a snapshot when the state is known and the last one lags `every` events or more.
    pub(crate) fn store_snapshot(&mut self, folder: &Folder, doc: &DocId, offset: u64, every: u64) {
        let (Some(last), Some(state)) = (&self.last, &self.state) else {
            return;
        };
        if self.since_snapshot < every {
            return;
        }
        let snapshot = DocState {
            seq: last.seq,
            hash: last.hash,
            timestamp: last.timestamp.clone(),
            schema: last.stamp,
            deleted: last.deleted,
            state: state.clone(),
        };
        snapshot::store(folder, doc, &snapshot, offset);
        self.since_snapshot = 0;
    }
}

/// Checks `request` against `head` and the schema, appends its events' lines (each with its
/// newline; none when there is nothing to write) to `out`, and moves `head` past them. On a
/// refusal neither `out` nor `head` changes. `stream` gives the locked file to fold when the
/// state is not known yet; without it, this is a dry run against a stream that does not
/// exist. Returns where in `out` the last line appended starts.
pub(crate) fn plan(
    folder: &Folder,
    request: &Request,
    head: &mut Head,
    stream: Option<(&File, &Path)>,
    history: Option<&History>,
    out: &mut String,
) -> Result<usize> {
    let doc = &request.doc;
    let last = head.last.as_ref();
    request.expect.check(doc, last.map(|e| e.seq))?;
    let live = last.is_some_and(|e| !e.deleted);
    let current = history.map(History::current);
    let stamp = current.map(|v| v.seq);
    // The state the request starts from: known or folded, and migrated when it lags.
    let mut start = None;
    let mut since_snapshot = head.since_snapshot;
    let needs_migration = match (history, stamp) {
        (Some(_), Some(to)) => last.is_some_and(|e| e.stamp != Some(to)),
        _ => false,
    };
    // The common update, to a current document whose state is known, patches that state where
    // it is, undoably; every other start is a copy.
    let in_place =
        matches!(request.action, Action::Update(_)) && !needs_migration && head.state.is_some();
    if in_place {
        require_live(doc, last, live)?;
    } else if matches!(request.action, Action::Update(_) | Action::Migrate) {
        require_live(doc, last, live)?;
        let last = last.expect("a live document has a last event");
        let state = match &head.state {
            Some(state) => state.clone(),
            None => {
                let (file, path) = stream.expect("a live document has a stream");
                let folded = snapshot::fold_file(folder, doc, file, path.to_path_buf())?
                    .expect("a live document has events");
                since_snapshot = folded.events_folded;
                folded.state.state
            }
        };
        let migrated = match (history, stamp) {
            (Some(history), Some(to)) if last.stamp != Some(to) => {
                Some(history.migrate(&state, last.stamp, to).map_err(|reason| {
                    Error::MigrationFailed {
                        doc: doc.to_string(),
                        reason,
                    }
                })?)
            }
            _ => None,
        };
        start = Some((state, migrated));
    }
    let mut events: Vec<(EventType, Data)> = Vec::new();
    // Undone if anything below refuses the request.
    let mut patched_in_place = None;
    let encoded_here;
    let payload = match &request.payload {
        Some(payload) => Some(payload),
        None => {
            encoded_here = request.encode_payload();
            encoded_here.as_ref()
        }
    };
    let requested = || Data::Prepared(payload.expect("only a migration has no payload"));
    let new_state = match &request.action {
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
            conform(doc, current, state)?;
            events.push((EventType::Create, requested()));
            Some(state.clone())
        }
        Action::Delete => {
            require_live(doc, last, live)?;
            events.push((EventType::Delete, requested()));
            head.state.clone()
        }
        Action::Update(patch) if in_place => {
            let state = head.state.as_mut().expect("known, or not in place");
            let applied = crate::patch::apply_undoable(state, patch).map_err(|reason| {
                Error::PatchFailed {
                    doc: doc.to_string(),
                    seq: last.map_or(0, |e| e.seq),
                    reason,
                }
            })?;
            check_patched_state(applied.state(), patch, "the patched document")?;
            conform(doc, current, applied.state())?;
            events.push((EventType::Update, requested()));
            patched_in_place = Some(applied);
            None
        }
        Action::Update(patch) => {
            let (state, migrated) = start.expect("an update starts from a state");
            let mut next = match migrated {
                Some(migrated) => {
                    events.push((EventType::Migrate, Data::Value(diff(&state, &migrated))));
                    migrated
                }
                None => state,
            };
            // `next` is a copy: a failure leaves the head's state as it was.
            crate::patch::apply_unguarded(&mut next, patch).map_err(|reason| {
                Error::PatchFailed {
                    doc: doc.to_string(),
                    seq: last.map_or(0, |e| e.seq),
                    reason,
                }
            })?;

            check_new_state(&next, "the patched document")?;
            conform(doc, current, &next)?;
            events.push((EventType::Update, requested()));
            Some(next)
        }
        Action::Migrate => {
            let (state, migrated) = start.expect("a migration starts from a state");
            match migrated {
                Some(migrated) => {
                    conform(doc, current, &migrated)?;
                    events.push((EventType::Migrate, Data::Value(diff(&state, &migrated))));
                    Some(migrated)
                }
                None => Some(state),
            }
        }
    };
    let now = time::now();
    let timestamp = match last {
        Some(e) if e.timestamp > now => e.timestamp.clone(),
        _ => now,
    };
    let mut prev = last.map_or(crate::event::ZERO_HASH, |e| e.hash);
    let first_seq = last.map_or(0, |e| e.seq + 1);
    let written = out.len();
    let mut last_line = written;
    let limit = folder.max_event_bytes();
    // The last event written (none when a migration finds the document current): its seq,
    // hash and type.
    let mut written_last = None;
    for (seq, (kind, data)) in (first_seq..).zip(&events) {
        // The client's meta describes its own event, not the migration eventdir adds.
        let meta = if *kind == EventType::Migrate {
            None
        } else {
            request.meta.as_ref()
        };
        let new = NewEvent {
            seq,
            doc,
            kind: *kind,
            timestamp: &timestamp,
            schema: stamp,
            meta,
            data: match data {
                Data::Value(value) if *kind != EventType::Delete => Some(value),
                _ => None,
            },
        };
        let start = out.len();
        let encoded_here;
        let payload = match data {
            Data::Prepared(payload) => *payload,
            Data::Value(_) => {
                encoded_here = Payload::new(new.data, new.meta);
                &encoded_here
            }
        };
        let hash = new.encode_into(&prev, uuid::Uuid::new_v4(), payload, out);
        let size = out.len() - start;
        if size > limit {
            out.truncate(written);
            return Err(Error::EventTooLarge {
                doc: doc.to_string(),
                size,
                limit,
            });
        }
        last_line = start;
        prev = hash;
        written_last = Some((seq, hash, *kind));
    }
    if let Some((seq, hash, kind)) = written_last {
        head.last = Some(Last {
            seq,
            hash,
            timestamp,
            deleted: kind == EventType::Delete,
            stamp,
        });
    }
    if patched_in_place.map(crate::patch::Applied::keep).is_none() {
        head.state = new_state;
    }
    head.since_snapshot = since_snapshot + events.len() as u64;
    Ok(last_line)
}

/// The RFC 6902 patch from `old` to `new`, as stored in a `migrate` event.
fn diff(old: &Value, new: &Value) -> Value {
    serde_json::to_value(json_patch::diff(old, new)).expect("a patch serialises")
}

/// Refuses a state that does not conform to the schema version in effect.
fn conform(doc: &DocId, version: Option<&Version>, state: &Value) -> Result<()> {
    let Some(version) = version else {
        return Ok(());
    };
    version
        .validate(state)
        .map_err(|reason| Error::SchemaViolation {
            doc: doc.to_string(),
            schema: format!(
                "{}{} seq {}",
                crate::doc_id::SCHEMA_PREFIX,
                doc.kind(),
                version.seq
            ),
            reason,
        })
}

fn require_live(doc: &DocId, last: Option<&Last>, live: bool) -> Result<()> {
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

/// The schema history of `doc`'s type, read under the schema stream's shared lock, which the
/// caller holds (the returned file) until its events are durable: no schema change can slip in
/// between the stamp and the write.
pub(crate) fn schema_context(
    folder: &Folder,
    doc: &DocId,
) -> Result<(Option<History>, Option<File>)> {
    let Some(schema_doc) = doc.schema_doc() else {
        return Ok((None, None));
    };
    let path = folder.stream_path(&schema_doc);
    let Some(file) = fsio::open_read(&path)? else {
        return Ok((None, None));
    };
    fsio::lock_shared(&file, &path)?;
    let history = History::load(folder, schema_doc.schema_of().expect("a schema id"))?;
    Ok((history, Some(file)))
}
