//! Batch appends: many requests, each stream written with one write and one fsync per commit.
//!
//! The streams a batch touches are locked in id order (so that two batches never wait on each
//! other in a cycle), every request is planned in input order against the state the earlier
//! requests of the batch leave, then each stream's lines are written and fsynced. A refused
//! request writes nothing and does not stop the others; a stream whose write fails fails all of
//! its requests in the batch, which were never acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::append::{
    Durability, Head, Position, Request, commit, plan, refuse_replica, schema_context,
};
use crate::exit_code::ExitCode;
use crate::io::{FilesystemSync, LockedStream};
use crate::schema::History;
use crate::stream::read_tail;
use crate::{DocId, Error, Folder, Result, io as fsio};

/// A request's outcome: the stored line of the requested event (without its newline), or the
/// exit code and message of its refusal.
pub type Outcome = Result<String, (ExitCode, String)>;

struct OpenStream {
    path: PathBuf,
    stream: LockedStream,
    tail: Position,
    head: Head,
    pending: String,
    requests: Vec<usize>,
    /// Whether `pending` was written (durable once the group's sync succeeds).
    written: bool,
}

/// A stream of a group: open and locked, or why not.
type Slot = Result<OpenStream, (ExitCode, String)>;

/// From this many streams in one group on, one `syncfs` replaces the per-file fsyncs.
const SYNCFS_FROM: usize = 8;
/// From this many streams in one group on, they are planned and written in parallel.
const PARALLEL_FROM: usize = 16;

fn refusal(error: &Error) -> (ExitCode, String) {
    (ExitCode::of(error), error.to_string())
}

/// The ends of the streams a long-running batch wrote last, with their states, so that the
/// next group need not fold them again, and (up to a budget of open files) their files, kept
/// open but unlocked, so that the next group need not open them and read their tails either.
/// An entry is used only while the stream is still as this batch left it.
pub struct HeadCache {
    heads: HashMap<DocId, Remembered>,
    /// How many remembered streams have their file open, and how many may.
    open_files: usize,
    max_open_files: usize,
    /// Emptied write buffers of earlier groups, kept so that a long batch does not grow (and
    /// the kernel zero) fresh ones for every group, and their total capacity.
    buffers: Vec<String>,
    buffer_bytes: usize,
}

struct Remembered {
    head: Head,
    /// The stream's file, unlocked, and its length when this batch last wrote it.
    file: Option<File>,
    len: u64,
}

/// The most streams a [`HeadCache`] remembers.
const CACHED_HEADS: usize = 100_000;
/// The most bytes of write buffers a [`HeadCache`] keeps.
const CACHED_BUFFER_BYTES: usize = 64 << 20;

impl HeadCache {
    /// A cache that keeps at most `max_open_files` stream files open between groups.
    pub fn new(max_open_files: usize) -> HeadCache {
        HeadCache {
            heads: HashMap::new(),
            open_files: 0,
            max_open_files,
            buffers: Vec::new(),
            buffer_bytes: 0,
        }
    }

    /// Remembers a stream this batch has just made durable, `len` bytes long, and releases
    /// its lock.
    fn remember(&mut self, doc: DocId, head: Head, stream: LockedStream, path: &Path, len: u64) {
        if self.heads.len() >= CACHED_HEADS {
            self.heads.clear();
            self.open_files = 0;
        }
        // A file not kept is closed, which releases its lock.
        let file = (self.open_files < self.max_open_files)
            .then(|| fsio::unlock(stream, path).ok())
            .flatten();
        self.open_files += usize::from(file.is_some());
        self.heads.insert(doc, Remembered { head, file, len });
    }

    fn recycle(&mut self, mut buffer: String) {
        if self.buffer_bytes + buffer.capacity() <= CACHED_BUFFER_BYTES {
            self.buffer_bytes += buffer.capacity();
            buffer.clear();
            self.buffers.push(buffer);
        }
    }

    fn buffer(&mut self) -> String {
        let buffer = self.buffers.pop().unwrap_or_default();
        self.buffer_bytes -= buffer.capacity();
        buffer
    }
}

/// Appends every valid request, in order, and returns one outcome per request.
pub fn append_batch(
    folder: &Folder,
    requests: &[&Result<Request>],
    cache: &mut HeadCache,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = requests
        .iter()
        .map(|r| match r {
            Ok(_) => Ok(String::new()),
            Err(e) => Err(refusal(e)),
        })
        .collect();
    let requests: Vec<(usize, &Request)> = requests
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().ok().map(|r| (i, r)))
        .collect();
    if let Some((_, first)) = requests.first()
        && let Err(e) = refuse_replica(folder, &first.doc)
    {
        for (i, _) in &requests {
            outcomes[*i] = Err(refusal(&e));
        }
        return outcomes;
    }
    // Lock every stream first, in id order, then the schema streams of their types.
    let mut streams: BTreeMap<DocId, Slot> = BTreeMap::new();
    for (_, request) in &requests {
        streams
            .entry(request.doc.clone())
            .or_insert_with(|| Err((ExitCode::Failure, String::new())));
    }
    for (doc, slot) in streams.iter_mut() {
        *slot = open_stream(folder, doc, cache).map_err(|e| refusal(&e));
    }
    let mut histories: BTreeMap<String, Result<Option<History>, (ExitCode, String)>> =
        BTreeMap::new();
    let mut schema_locks: Vec<File> = Vec::new();
    for doc in streams.keys() {
        if histories.contains_key(doc.kind()) {
            continue;
        }
        let context = schema_context(folder, doc).map(|(history, lock)| {
            schema_locks.extend(lock);
            history
        });
        histories.insert(doc.kind().to_string(), context.map_err(|e| refusal(&e)));
    }
    // Each stream's requests, in input order; the streams are independent of one another, so
    // many of them are planned (and written) on all cores.
    let mut queued: BTreeMap<&DocId, Vec<(usize, &Request)>> = BTreeMap::new();
    for &(i, request) in &requests {
        queued.entry(&request.doc).or_default().push((i, request));
    }
    let parallel = streams.len() >= PARALLEL_FROM;
    let work: Vec<_> = streams.values_mut().zip(queued.into_values()).collect();
    let plan_stream = |(slot, queued): (&mut Slot, Vec<(usize, &Request)>)| {
        let mut planned = Vec::with_capacity(queued.len());
        for (i, request) in queued {
            let outcome = match (&mut *slot, histories.get(request.doc.kind())) {
                (Err(e), _) => Err(e.clone()),
                (Ok(_), Some(Err(e))) => Err(e.clone()),
                (Ok(stream), Some(Ok(history))) => match plan(
                    folder,
                    request,
                    &mut stream.head,
                    Some((&stream.stream.file, &stream.path)),
                    history.as_ref(),
                    &mut stream.pending,
                ) {
                    Ok(last_line) => {
                        stream.requests.push(i);
                        Ok(stream.pending[last_line..]
                            .trim_end_matches('\n')
                            .to_string())
                    }
                    Err(e) => Err(refusal(&e)),
                },
                (Ok(_), None) => unreachable!("every type's history is loaded above"),
            };
            planned.push((i, outcome));
        }
        planned
    };
    let planned: Vec<Vec<(usize, Outcome)>> = if parallel {
        work.into_par_iter().map(plan_stream).collect()
    } else {
        work.into_iter().map(plan_stream).collect()
    };
    for (i, outcome) in planned.into_iter().flatten() {
        outcomes[i] = outcome;
    }
    let mut failed: HashMap<usize, (ExitCode, String)> = HashMap::new();
    // Many streams are made durable by one syncfs rather than an fsync each (and three for each
    // new stream's directories); the sync is opened before the writes it must cover.
    let touched = streams
        .values()
        .filter(|s| s.as_ref().is_ok_and(|s| !s.pending.is_empty()))
        .count();
    let sync = if touched >= SYNCFS_FROM {
        FilesystemSync::begin(folder.root()).ok()
    } else {
        None
    };
    let durability = if sync.is_some() {
        Durability::Deferred
    } else {
        Durability::Fsync
    };
    let write_stream = |slot: &mut Slot| -> Vec<(usize, (ExitCode, String))> {
        let Ok(stream) = slot else { return Vec::new() };
        if stream.pending.is_empty() {
            if stream.stream.created_file {
                fsio::remove_new_stream(&stream.stream, &stream.path);
            }
            return Vec::new();
        }
        match commit(
            folder,
            &mut stream.stream.file,
            &stream.path,
            stream.tail,
            &stream.pending,
            durability,
        ) {
            Ok(_) => {
                stream.written = true;
                Vec::new()
            }
            Err(e) => {
                if stream.stream.created_file {
                    fsio::remove_new_stream(&stream.stream, &stream.path);
                }
                stream.requests.iter().map(|&i| (i, refusal(&e))).collect()
            }
        }
    };
    let failures: Vec<Vec<(usize, (ExitCode, String))>> = if parallel {
        streams
            .par_iter_mut()
            .map(|(_, slot)| write_stream(slot))
            .collect()
    } else {
        streams.values_mut().map(write_stream).collect()
    };
    failed.extend(failures.into_iter().flatten());
    let synced = sync.map_or(Ok(()), FilesystemSync::finish);
    for (doc, stream) in streams {
        let Ok(mut stream) = stream else { continue };
        if stream.pending.is_empty() && !stream.stream.created_file {
            // Every request refused: the stream is as it was, and still worth remembering.
            let len = stream.tail.complete_len + stream.tail.partial_len;
            cache.remember(doc, stream.head, stream.stream, &stream.path, len);
        } else if stream.written {
            match &synced {
                Ok(()) => {
                    let end = stream.tail.complete_len + stream.pending.len() as u64;
                    stream.head.store_snapshot(folder, &doc, end);
                    cache.remember(doc, stream.head, stream.stream, &stream.path, end);
                }
                Err(e) => {
                    // Not acknowledged: take the lines back; the error stands either way.
                    let _ = stream.stream.file.set_len(stream.tail.complete_len);
                    for i in &stream.requests {
                        failed.insert(*i, refusal(e));
                    }
                }
            }
        }
        cache.recycle(stream.pending);
    }
    drop(schema_locks);
    for (i, e) in failed {
        outcomes[i] = Err(e);
    }
    outcomes
}

fn open_stream(folder: &Folder, doc: &DocId, cache: &mut HeadCache) -> Result<OpenStream> {
    let path = folder.stream_path(doc);
    let pending = cache.buffer();
    let remembered = cache.heads.remove(doc);
    let known = match remembered {
        Some(Remembered {
            head,
            file: Some(file),
            len,
        }) => {
            cache.open_files -= 1;
            if let Some(stream) = fsio::relock(file, &path, len)? {
                return Ok(OpenStream {
                    path,
                    stream,
                    tail: Position {
                        complete_len: len,
                        partial_len: 0,
                        empty: false,
                    },
                    head,
                    pending,
                    requests: Vec::new(),
                    written: false,
                });
            }
            Some(head)
        }
        Some(remembered) => Some(remembered.head),
        None => None,
    };
    let stream = fsio::open_locked(&folder.streams_dir(), &path)?;
    let tail = match read_tail(&stream.file, &path, doc, folder.max_event_bytes()) {
        Ok(tail) => tail,
        Err(e) => {
            if stream.created_file {
                fsio::remove_new_stream(&stream, &path);
            }
            return Err(e);
        }
    };
    let head = match known {
        Some(head) if head.continues(&tail) => head,
        _ => Head::from_tail(&tail),
    };
    Ok(OpenStream {
        path,
        stream,
        tail: Position::of(&tail),
        head,
        pending,
        requests: Vec::new(),
        written: false,
    })
}
