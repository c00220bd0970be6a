//! Batch appends: many requests, each stream written with one write per group and the group
//! made durable with one sync.
//!
//! A group's streams are locked in id order (so that two batches never wait on each other in a
//! cycle), every request is planned in input order against the state the earlier requests of
//! the batch leave, then each stream's lines are written and the group synced. A refused
//! request writes nothing and does not stop the others; a stream whose write fails fails all of
//! its requests in the group, which were never acknowledged.
//!
//! Groups overlap: while one syncs, the next is planned. The next takes over the streams both
//! write, still locked, and only tries the locks of its others (waiting for one while holding
//! the group before's would break the lock order); it writes once the group before is durable.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::append::{
    Durability, Head, Position, Request, commit, plan, refuse_replica, schema_context,
};
use crate::exit_code::ExitCode;
use crate::io::{FilesystemSync, LockedStream, Relocked, Wait};
use crate::line::Line;
use crate::schema::History;
use crate::stream::read_tail;
use crate::{DocId, Error, Folder, Result, io as fsio};

/// A request's outcome: the stored line of the requested event (without its newline; empty
/// when a migration found its document current), or the exit code and message of its
/// refusal. The lines of one stream's requests in a group share one buffer, in order, so that
/// they can be printed together.
pub type Outcome = Result<Line, (ExitCode, String)>;

struct OpenStream {
    path: PathBuf,
    stream: LockedStream,
    tail: Position,
    head: Head,
    pending: String,
    requests: Vec<usize>,
    /// Whether `pending` was written, or handed to the sync thread to write (durable once the
    /// group's sync succeeds).
    written: bool,
    /// How many bytes of `pending` were written: the buffer itself may be on the sync thread.
    written_len: u64,
    /// Whether the stream must not be used again by this batch: its write failed, or a new
    /// stream's file was removed, or the lines it was planned after were lost.
    lost: bool,
}

/// A stream of a group: open and locked, or why not.
type Slot = Result<OpenStream, (ExitCode, String)>;

/// How many stream files a batch may hold open in all, and how many streams a group may have
/// when requests are split: half of that, so that a group can be planned while the one before
/// syncs. The open-file limit is raised to its hard limit first, as a process that needs many
/// files may; some are left for everything else.
pub fn open_file_budget() -> (usize, usize) {
    let Some(limit) = fsio::raise_open_file_limit() else {
        return (32, 16);
    };
    let available = limit.saturating_sub(64).max(2);
    (available, available / 2)
}

/// From this many streams in one group on, one `syncfs` replaces the per-file fsyncs.
const SYNCFS_FROM: usize = 8;
/// From this many bytes written in one group on, its writes and fsyncs run on a thread of
/// their own (overlapping the next group's planning, as a `syncfs` does), even for a single
/// stream. Below it, a trickle of small groups writes and fsyncs in line, sparing a thread
/// start per request.
const DEFERRED_FSYNC_FROM: usize = 1 << 20;
/// From this many streams in one group on, they are planned and written in parallel.
const PARALLEL_FROM: usize = 16;

/// Numbers the distinct streams of a round's requests in the order they first appear. A
/// stream's id is hashed once for each run of requests to it, so a round to one document
/// hashes once.
#[derive(Default)]
pub struct StreamNumbers<'a> {
    index: HashMap<&'a DocId, usize>,
    last: Option<(&'a DocId, usize)>,
}

impl<'a> StreamNumbers<'a> {
    /// `doc`'s number, and whether this is its first request.
    pub fn of(&mut self, doc: &'a DocId) -> (usize, bool) {
        if let Some((last, number)) = self.last
            && last == doc
        {
            return (number, false);
        }
        let next = self.index.len();
        let number = *self.index.entry(doc).or_insert(next);
        self.last = Some((doc, number));
        (number, number == next)
    }

    /// How many distinct streams were numbered.
    pub fn count(&self) -> usize {
        self.index.len()
    }
}

fn refusal(error: &Error) -> (ExitCode, String) {
    (ExitCode::of(error), error.to_string())
}

/// The ends of the streams a long-running batch wrote last, with their states, so that the
/// next group need not fold them again, and (up to a budget of open files) their files, kept
/// open but unlocked, so that the next group need not open them and read their tails either.
/// An entry is used only while the stream is still as this batch left it.
struct HeadCache {
    heads: HashMap<DocId, Remembered>,
    /// How many remembered streams have their file open.
    open_files: usize,
    /// How many stream files the batch may hold open in all: its groups' and these.
    budget: usize,
    /// How many streams it remembers at most.
    heads_limit: usize,
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
    /// A cache of at most `heads_limit` streams for a batch that may hold `budget` stream
    /// files open in all.
    fn new(budget: usize, heads_limit: usize) -> HeadCache {
        HeadCache {
            heads: HashMap::new(),
            open_files: 0,
            budget,
            heads_limit,
            buffers: Vec::new(),
            buffer_bytes: 0,
        }
    }

    /// Remembers a stream this batch has just made durable, `len` bytes long, and releases
    /// its lock.
    fn remember(&mut self, doc: DocId, head: Head, stream: LockedStream, path: &Path, len: u64) {
        if self.heads_limit == 0 {
            return; // closing the file releases its lock
        }
        if self.heads.len() >= self.heads_limit {
            self.heads.clear();
            self.open_files = 0;
        }
        // The file is open already, so keeping it costs nothing until a stream not open needs
        // room ([`HeadCache::make_room`]). A file not kept is closed, which releases its lock.
        let file = (self.open_files < self.budget)
            .then(|| fsio::unlock(stream, path).ok())
            .flatten();
        self.open_files += usize::from(file.is_some());
        self.heads.insert(doc, Remembered { head, file, len });
    }

    /// Takes back a stream opened but not used: unchanged, so remembered as it was (or, a file
    /// just created for it, removed again).
    fn give_back(&mut self, doc: DocId, stream: OpenStream) {
        if stream.stream.created_file {
            fsio::remove_new_stream(&stream.stream, &stream.path);
        } else if stream.tail.partial_len == 0 {
            let len = stream.tail.complete_len;
            self.remember(doc, stream.head, stream.stream, &stream.path, len);
        }
        self.recycle(stream.pending);
    }

    /// Closes kept files until one more can be opened beside them and the `held` files of
    /// the groups. Many at a time (an eighth of the budget), so that a batch going through
    /// more streams than it may keep open does not scan the cache for every open.
    fn make_room(&mut self, held: usize) {
        if self.open_files + held < self.budget {
            return;
        }
        let mut closing = (self.open_files + held + 1 - self.budget)
            .max(self.budget / 8)
            .min(self.open_files);
        for remembered in self.heads.values_mut() {
            if closing == 0 {
                break;
            }
            if remembered.file.take().is_some() {
                self.open_files -= 1;
                closing -= 1;
            }
        }
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

/// Appends batches of requests, one group of streams at a time, each group made durable while
/// the next is planned: its streams stay locked, and its outcomes unannounced, until its sync
/// (a `syncfs` on a thread of its own) is done. A group takes over the streams it shares with
/// the one still syncing; it writes only once that one is durable, and if that sync fails, the
/// requests it planned on the lost lines fail with it.
pub struct Batcher<T> {
    cache: HeadCache,
    in_flight: Option<Unsynced<T>>,
}

/// A written group waiting for its sync.
struct Unsynced<T> {
    tag: T,
    outcomes: Vec<Outcome>,
    failed: HashMap<usize, (ExitCode, String)>,
    streams: BTreeMap<DocId, OpenStream>,
    schema_locks: Vec<File>,
    sync: Option<SyncThread>,
    /// Streams a later group took over before this one was durable: the length each had
    /// before this group wrote to it, and this group's requests on it.
    handed_over: Vec<(DocId, u64, Vec<usize>)>,
    /// When the first of the groups that took over one another's streams, up to this one,
    /// locked them.
    chain_start: Instant,
}

/// How long groups may go on taking over one another's streams, locked all along: then a group
/// waits for the one before it to be durable and released, so that other writers get their
/// turn at streams a long batch keeps writing to. Each break costs a sync not overlapped.
const CHAIN_FOR: Duration = Duration::from_secs(1);

/// The streams whose latest lines a failed sync lost, each with the length to cut it back to.
type Lost = Vec<(DocId, u64, (ExitCode, String))>;

impl<T> Batcher<T> {
    /// A batcher that holds at most `open_files` stream files open: those of the group being
    /// planned and the one in flight and, in what they leave, those kept open between groups.
    pub fn new(open_files: usize) -> Batcher<T> {
        Batcher {
            cache: HeadCache::new(open_files, CACHED_HEADS),
            in_flight: None,
        }
    }

    /// A batcher for requests that name each stream once (a migration of many documents):
    /// it remembers no stream between groups, so its memory does not grow with the streams
    /// it went through.
    pub fn visiting_each_once(open_files: usize) -> Batcher<T> {
        Batcher {
            cache: HeadCache::new(open_files, 0),
            in_flight: None,
        }
    }

    /// How many streams a group of `docs` (a round's, repeats and all) may have: all of them,
    /// when their files fit in the budget beside those of the group in flight (a stream both
    /// hold is handed over, not opened again), so that the round is one group and one sync;
    /// otherwise `split`, which leaves room for two groups.
    pub fn streams_per_group<'a>(
        &self,
        docs: impl Iterator<Item = &'a DocId>,
        split: usize,
    ) -> usize {
        let mut distinct = StreamNumbers::default();
        // The distinct streams the group in flight does not hold.
        let mut fresh = 0;
        for doc in docs {
            if distinct.of(doc).1 && !self.in_flight.as_ref().is_some_and(|prev| prev.holds(doc)) {
                fresh += 1;
            }
        }
        let in_flight = self.in_flight.as_ref().map_or(0, |prev| prev.streams.len());
        if in_flight + fresh <= self.cache.budget {
            distinct.count().max(split)
        } else {
            split
        }
    }

    /// Whether a group is written but not yet finished.
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Plans every valid request of `requests` in order and writes them, leaving them to be
    /// made durable; returns the group submitted before this one, finished: its tag and one
    /// outcome per request.
    pub fn submit(
        &mut self,
        folder: &Folder,
        requests: &[&Result<Request>],
        tag: T,
    ) -> Option<(T, Vec<Outcome>)> {
        let mut outcomes: Vec<Outcome> = requests
            .iter()
            .map(|r| match r {
                Ok(_) => Ok(Line::from(String::new())),
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
            let done = self.finish(folder);
            self.in_flight = Some(Unsynced::done(tag, outcomes));
            return done;
        }
        let mut done = None;
        if self
            .in_flight
            .as_ref()
            .is_some_and(|prev| prev.chain_start.elapsed() >= CHAIN_FOR)
        {
            done = self.finish(folder);
        }
        // Lock every stream first, in id order, then the schema streams of their types.
        // While the group before holds its locks, this one must not wait for another writer's:
        // that writer could be waiting for one of ours. So the streams it does not take over
        // are only tried; if one is held, what was tried goes back, the group before is
        // finished (its locks released), and this group opens its streams waiting, in order.
        // Distinct streams first: a group to one stream holds one id, not one per request.
        // Grouped by hashing: sorting every request by its id cost more than the rest of
        // opening the streams.
        let mut queued: Vec<(&DocId, Vec<(usize, &Request)>)> = Vec::new();
        let mut numbers = StreamNumbers::default();
        for &(i, request) in &requests {
            let (at, first) = numbers.of(&request.doc);
            if first {
                queued.push((&request.doc, Vec::new()));
            }
            queued[at].1.push((i, request));
        }
        queued.sort_unstable_by_key(|(doc, _)| *doc);
        let mut slots: BTreeMap<DocId, Option<Slot>> = queued
            .iter()
            .map(|(doc, _)| ((*doc).clone(), None))
            .collect();
        // How many stream files the groups hold: the one in flight, and this one so far.
        let mut held = self.in_flight.as_ref().map_or(0, |prev| prev.streams.len());
        if let Some(prev) = &self.in_flight {
            let mut busy = false;
            for (doc, slot) in slots.iter_mut() {
                if prev.holds(doc) {
                    continue;
                }
                if held >= self.cache.budget {
                    // No room beside the group before: it goes first, as for a busy lock.
                    busy = true;
                    break;
                }
                match open_stream(folder, doc, &mut self.cache, Wait::No, held) {
                    Ok(Some(stream)) => {
                        held += 1;
                        *slot = Some(Ok(stream));
                    }
                    Ok(None) => {
                        busy = true;
                        break;
                    }
                    Err(e) => *slot = Some(Err(refusal(&e))),
                }
            }
            if busy {
                for (doc, slot) in slots.iter_mut() {
                    if let Some(Ok(stream)) = slot.take() {
                        self.cache.give_back(doc.clone(), stream);
                    }
                }
                done = self.finish(folder);
                held = 0;
            }
        }
        let mut took_over = false;
        for (doc, slot) in slots.iter_mut() {
            if slot.is_some() {
                continue;
            }
            let cache = &mut self.cache;
            let taken = self
                .in_flight
                .as_mut()
                .and_then(|prev| prev.hand_over(doc, cache));
            took_over |= taken.is_some();
            *slot = Some(match taken {
                // Counted with the group before.
                Some(stream) => Ok(stream),
                None => match open_stream(folder, doc, &mut self.cache, Wait::Yes, held) {
                    Ok(stream) => {
                        held += 1;
                        Ok(stream.expect("a lock waited for is taken"))
                    }
                    Err(e) => Err(refusal(&e)),
                },
            });
        }
        // Only streams taken over stay locked from group to group: a group that takes over
        // none starts a chain of its own.
        let chain_start = match &self.in_flight {
            Some(prev) if took_over => prev.chain_start,
            _ => Instant::now(),
        };
        let mut streams: BTreeMap<DocId, Slot> = slots
            .into_iter()
            .map(|(doc, slot)| (doc, slot.expect("every stream opened or refused")))
            .collect();
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
        plan_streams(folder, &mut streams, queued, &histories, &mut outcomes);
        // The group before must be durable before this one writes after its lines.
        let finished = self.in_flight.take().map(|prev| {
            let (tag, outcomes_before, lost) = prev.finish(folder, &mut self.cache);
            for (doc, len, error) in lost {
                let Some(Ok(stream)) = streams.get_mut(&doc) else {
                    continue;
                };
                let _ = stream.stream.file.set_len(len);
                for i in stream.requests.drain(..) {
                    outcomes[i] = Err(error.clone());
                }
                stream.pending.clear();
                stream.lost = true;
            }
            (tag, outcomes_before)
        });
        let done = done.or(finished);
        let (failed, sync) = write_streams(folder, &mut streams);
        self.in_flight = Some(Unsynced {
            tag,
            outcomes,
            failed,
            streams: streams
                .into_iter()
                .filter_map(|(doc, slot)| Some((doc, slot.ok()?)))
                .collect(),
            schema_locks,
            sync,
            handed_over: Vec::new(),
            chain_start,
        });
        done
    }

    /// Waits for the group in flight to be durable; its tag and outcomes.
    pub fn finish(&mut self, folder: &Folder) -> Option<(T, Vec<Outcome>)> {
        let prev = self.in_flight.take()?;
        let (tag, outcomes, _) = prev.finish(folder, &mut self.cache);
        Some((tag, outcomes))
    }
}

/// Plans each stream's `queued` requests (in input order, the streams in id order as in
/// `streams`), many streams on all cores (they are independent of one another), and fills in
/// the outcome of every request planned or refused.
fn plan_streams(
    folder: &Folder,
    streams: &mut BTreeMap<DocId, Slot>,
    queued: Vec<(&DocId, Vec<(usize, &Request)>)>,
    histories: &BTreeMap<String, Result<Option<History>, (ExitCode, String)>>,
    outcomes: &mut [Outcome],
) {
    let parallel = streams.len() >= PARALLEL_FROM;
    let work: Vec<_> = streams
        .values_mut()
        .zip(queued.into_iter().map(|(_, requests)| requests))
        .collect();
    let plan_stream = |(slot, queued): (&mut Slot, Vec<(usize, &Request)>)| {
        let mut planned = Vec::with_capacity(queued.len());
        // The requested events' lines, one after another; room for as many as the first and
        // an eighth more (seqs grow longer), so that the buffer is not copied as it grows.
        let mut lines = String::new();
        let requests = queued.len();
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
                    // A migration that finds its document current writes nothing.
                    Ok(last_line) if last_line == stream.pending.len() => Ok(None),
                    Ok(last_line) => {
                        stream.requests.push(i);
                        let line = &stream.pending[last_line..];
                        if lines.is_empty() {
                            lines.reserve(line.len() * 9 / 8 * (requests - planned.len()));
                        }
                        let start = lines.len();
                        lines.push_str(line);
                        Ok(Some(start..lines.len() - 1))
                    }
                    Err(e) => Err(refusal(&e)),
                },
                (Ok(_), None) => unreachable!("every type's history is loaded above"),
            };
            planned.push((i, outcome));
        }
        let lines = Arc::new(lines);
        let line = |at: Option<_>| match at {
            Some(at) => Line::in_block(Arc::clone(&lines), at),
            None => Line::from(String::new()),
        };
        planned
            .into_iter()
            .map(|(i, outcome)| (i, outcome.map(line)))
            .collect::<Vec<(usize, Outcome)>>()
    };
    let planned: Vec<Vec<(usize, Outcome)>> = if parallel {
        work.into_par_iter().map(plan_stream).collect()
    } else {
        work.into_iter().map(plan_stream).collect()
    };
    for (i, outcome) in planned.into_iter().flatten() {
        outcomes[i] = outcome;
    }
}

/// A group's sync, running on a thread of its own.
type SyncThread = std::thread::JoinHandle<Synced>;

/// What a sync thread hands back: whether the group is durable, and the lines it wrote itself,
/// each stream's buffer with the result of its write.
struct Synced {
    result: Result<()>,
    wrote: Vec<(DocId, String, Result<()>)>,
}

/// Writes each stream's planned lines (in parallel for many streams) and returns the requests
/// whose write failed, and the sync that will make the rest durable: none when each stream
/// was fsynced as it was written, a `syncfs` on a thread of its own for many streams (one
/// sync rather than an fsync each, and three more for each new stream's directories), or, for
/// a large group to few streams, a thread that writes the lines too and fsyncs each file.
fn write_streams(
    folder: &Folder,
    streams: &mut BTreeMap<DocId, Slot>,
) -> (HashMap<usize, (ExitCode, String)>, Option<SyncThread>) {
    let pending = || {
        streams
            .values()
            .filter_map(|s| s.as_ref().ok())
            .filter(|s| !s.pending.is_empty())
    };
    let touched = pending().count();
    let bytes: usize = pending().map(|s| s.pending.len()).sum();
    // The sync is opened before the writes it must cover.
    let sync = if touched >= SYNCFS_FROM {
        FilesystemSync::begin(folder.root()).ok()
    } else {
        None
    };
    let fsync_later = sync.is_none() && bytes >= DEFERRED_FSYNC_FROM;
    let durability = if sync.is_some() || fsync_later {
        Durability::Deferred
    } else {
        Durability::Fsync
    };
    // Copying a large group's lines into the page cache takes the writing thread as long as
    // planning them; the sync thread does it instead, for every stream it can (one that
    // exists and ends in a complete line, through a duplicated descriptor).
    let mut handed: Vec<Job> = Vec::new();
    if fsync_later {
        for (doc, slot) in streams.iter_mut() {
            let Ok(stream) = slot else { continue };
            if stream.pending.is_empty() || stream.tail.empty || stream.tail.partial_len > 0 {
                continue;
            }
            let Ok(file) = stream.stream.file.try_clone() else {
                continue;
            };
            stream.written = true;
            stream.written_len = stream.pending.len() as u64;
            handed.push(Job {
                doc: doc.clone(),
                file,
                path: stream.path.clone(),
                tail: stream.tail,
                lines: std::mem::take(&mut stream.pending),
            });
        }
    }
    let write_stream = |slot: &mut Slot| -> Vec<(usize, (ExitCode, String))> {
        let Ok(stream) = slot else { return Vec::new() };
        if stream.written {
            return Vec::new();
        }
        if stream.pending.is_empty() {
            if stream.stream.created_file {
                fsio::remove_new_stream(&stream.stream, &stream.path);
                // Unlinked: nothing to remember or hand over.
                stream.lost = true;
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
                stream.written_len = stream.pending.len() as u64;
                Vec::new()
            }
            Err(e) => {
                if stream.stream.created_file {
                    fsio::remove_new_stream(&stream.stream, &stream.path);
                }
                stream.lost = true;
                stream.requests.iter().map(|&i| (i, refusal(&e))).collect()
            }
        }
    };
    let failures: Vec<Vec<(usize, (ExitCode, String))>> = if streams.len() >= PARALLEL_FROM {
        streams
            .par_iter_mut()
            .map(|(_, slot)| write_stream(slot))
            .collect()
    } else {
        streams.values_mut().map(write_stream).collect()
    };
    let mut failures: HashMap<usize, (ExitCode, String)> = failures.into_iter().flatten().collect();
    let sync = match sync {
        Some(sync) => Some(std::thread::spawn(move || Synced {
            result: sync.finish(),
            wrote: Vec::new(),
        })),
        None if fsync_later => Some(fsync_on_a_thread(folder, streams, handed, &mut failures)),
        None => None,
    };
    (failures, sync)
}

/// A stream's lines for the sync thread to write at `tail`, the end of `file`.
struct Job {
    doc: DocId,
    file: File,
    path: PathBuf,
    tail: Position,
    lines: String,
}

/// Starts a thread that writes the `handed` lines and fsyncs them, and the streams this group
/// wrote itself (and a new stream's directories), through duplicated descriptors. A stream
/// whose descriptor cannot be duplicated is fsynced here instead; if that fails, its lines are
/// taken back and its requests fail.
fn fsync_on_a_thread(
    folder: &Folder,
    streams: &mut BTreeMap<DocId, Slot>,
    handed: Vec<Job>,
    failures: &mut HashMap<usize, (ExitCode, String)>,
) -> SyncThread {
    let streams_dir = folder.streams_dir();
    let mut files = Vec::new();
    for stream in streams.values_mut().filter_map(|s| s.as_mut().ok()) {
        // The streams whose lines the thread writes (their buffer gone with them) it fsyncs
        // after writing them.
        if !stream.written || stream.pending.is_empty() {
            continue;
        }
        let new_file = stream.tail.empty;
        match stream.stream.file.try_clone() {
            Ok(file) => files.push((file, stream.path.clone(), new_file)),
            Err(_) => {
                if let Err(e) =
                    sync_stream(&stream.stream.file, &stream.path, new_file, &streams_dir)
                {
                    let _ = stream.stream.file.set_len(stream.tail.complete_len);
                    stream.written = false;
                    stream.lost = true;
                    failures.extend(stream.requests.iter().map(|&i| (i, refusal(&e))));
                }
            }
        }
    }
    let folder = folder.clone();
    std::thread::spawn(move || {
        let mut wrote = Vec::with_capacity(handed.len());
        for mut job in handed {
            // The commit of a single append: written, fsynced, taken back if either fails.
            let written = commit(
                &folder,
                &mut job.file,
                &job.path,
                job.tail,
                &job.lines,
                Durability::Fsync,
            )
            .map(|_| ());
            wrote.push((job.doc, job.lines, written));
        }
        let result = files.iter().try_for_each(|(file, path, new_file)| {
            sync_stream(file, path, *new_file, &streams_dir)
        });
        Synced { result, wrote }
    })
}

/// fsyncs a stream file, and for a new one the directories that name it.
fn sync_stream(file: &File, path: &Path, new_file: bool, streams_dir: &Path) -> Result<()> {
    fsio::sync_file(file, path)?;
    if new_file {
        fsio::sync_parents(path, streams_dir)?;
    }
    Ok(())
}

impl<T> Unsynced<T> {
    /// A group with nothing to make durable.
    fn done(tag: T, outcomes: Vec<Outcome>) -> Unsynced<T> {
        Unsynced {
            tag,
            outcomes,
            failed: HashMap::new(),
            streams: BTreeMap::new(),
            schema_locks: Vec::new(),
            sync: None,
            handed_over: Vec::new(),
            chain_start: Instant::now(),
        }
    }

    /// Whether this group holds `doc`'s stream, to hand over.
    fn holds(&self, doc: &DocId) -> bool {
        self.streams.get(doc).is_some_and(|s| !s.lost)
    }

    /// Hands `doc`'s stream, still locked, to the next group, which appends after this
    /// group's lines. `None` when this group does not hold it (or lost it), and the next group
    /// opens it itself.
    fn hand_over(&mut self, doc: &DocId, cache: &mut HeadCache) -> Option<OpenStream> {
        let stream = self.streams.remove(doc)?;
        if stream.lost {
            return None;
        }
        let mut next = OpenStream {
            path: stream.path,
            stream: LockedStream {
                file: stream.stream.file,
                created_file: false,
                created_dirs: Vec::new(),
            },
            tail: stream.tail,
            head: stream.head,
            pending: stream.pending,
            requests: Vec::new(),
            written: false,
            written_len: 0,
            lost: false,
        };
        if stream.written {
            self.handed_over
                .push((doc.clone(), stream.tail.complete_len, stream.requests));
            next.tail = Position {
                complete_len: stream.tail.complete_len + stream.written_len,
                partial_len: 0,
                empty: false,
            };
        }
        if next.pending.capacity() == 0 {
            // The lines went to the sync thread with their buffer: a recycled one saves
            // growing a new buffer to the group's size, page by fresh page.
            next.pending = cache.buffer();
        }
        next.pending.clear();
        Some(next)
    }

    /// Waits for the sync, then releases (and remembers) every stream this group still holds,
    /// or, if the sync failed, cuts its lines back off. Returns the tag, one outcome per
    /// request, and what a failed sync lost of the streams handed over.
    fn finish(mut self, folder: &Folder, cache: &mut HeadCache) -> (T, Vec<Outcome>, Lost) {
        let Synced {
            result: synced,
            wrote,
        } = match self.sync.take() {
            Some(sync) => sync.join().expect("the sync thread does not panic"),
            None => Synced {
                result: Ok(()),
                wrote: Vec::new(),
            },
        };
        // The lines the sync thread wrote: their buffers come back, and a write that failed
        // (rolled back already) fails its stream's requests, and those a later group planned
        // after them.
        let mut failed_writes: HashMap<DocId, (ExitCode, String)> = HashMap::new();
        for (doc, lines, written) in wrote {
            let error = written.err().map(|e| refusal(&e));
            match self.streams.get_mut(&doc) {
                Some(stream) => {
                    stream.pending = lines;
                    if let Some(error) = error {
                        for i in &stream.requests {
                            self.failed.insert(*i, error.clone());
                        }
                        stream.written = false;
                        stream.lost = true;
                    }
                }
                None => {
                    cache.recycle(lines);
                    failed_writes.extend(error.map(|e| (doc, e)));
                }
            }
        }
        if synced.is_ok() {
            // Snapshots of many streams are written on all cores: each is a file of its own.
            let store = |(doc, stream): (&DocId, &mut OpenStream)| {
                if !stream.lost && stream.written && !stream.pending.is_empty() {
                    let end = stream.tail.complete_len + stream.pending.len() as u64;
                    let every = crate::snapshot::SNAPSHOT_EVERY;
                    stream.head.store_snapshot(folder, doc, end, every);
                }
            };
            if self.streams.len() >= PARALLEL_FROM {
                self.streams.par_iter_mut().for_each(store);
            } else {
                self.streams.iter_mut().for_each(store);
            }
        }
        for (doc, stream) in std::mem::take(&mut self.streams) {
            if stream.lost {
                cache.recycle(stream.pending);
                continue;
            }
            if stream.pending.is_empty() {
                // Every request refused: the stream is as it was, and still worth remembering
                // (unless it ends in a torn tail, which only a stream read afresh shows).
                if stream.tail.partial_len == 0 {
                    let len = stream.tail.complete_len;
                    cache.remember(doc, stream.head, stream.stream, &stream.path, len);
                }
            } else if stream.written {
                match &synced {
                    Ok(()) => {
                        let end = stream.tail.complete_len + stream.pending.len() as u64;
                        cache.remember(doc, stream.head, stream.stream, &stream.path, end);
                    }
                    Err(e) => {
                        // Not acknowledged: take the lines back; the error stands either way.
                        let _ = stream.stream.file.set_len(stream.tail.complete_len);
                        for i in &stream.requests {
                            self.failed.insert(*i, refusal(e));
                        }
                    }
                }
            }
            cache.recycle(stream.pending);
        }
        let mut lost = Vec::new();
        for (doc, len, requests) in std::mem::take(&mut self.handed_over) {
            let error = match (failed_writes.remove(&doc), &synced) {
                (Some(error), _) => error,
                (None, Err(e)) => refusal(e),
                (None, Ok(())) => continue,
            };
            for i in requests {
                self.failed.insert(i, error.clone());
            }
            lost.push((doc, len, error));
        }
        drop(std::mem::take(&mut self.schema_locks));
        for (i, e) in self.failed.drain() {
            self.outcomes[i] = Err(e);
        }
        (self.tag, self.outcomes, lost)
    }
}

/// Opens and locks `doc`'s stream, from the cache when it holds the file unchanged. `None`
/// when `wait` is [`Wait::No`] and another writer holds the lock (the cache keeps what it had).
fn open_stream(
    folder: &Folder,
    doc: &DocId,
    cache: &mut HeadCache,
    wait: Wait,
    held: usize,
) -> Result<Option<OpenStream>> {
    let path = folder.stream_path(doc);
    let remembered = cache.heads.remove(doc);
    let known = match remembered {
        Some(Remembered {
            head,
            file: Some(file),
            len,
        }) => {
            cache.open_files -= 1;
            match fsio::relock(file, &path, len, wait)? {
                Relocked::Locked(stream) => {
                    return Ok(Some(OpenStream {
                        path,
                        stream,
                        tail: Position {
                            complete_len: len,
                            partial_len: 0,
                            empty: false,
                        },
                        head,
                        pending: cache.buffer(),
                        requests: Vec::new(),
                        written: false,
                        written_len: 0,
                        lost: false,
                    }));
                }
                Relocked::Busy(file) => {
                    cache.open_files += 1;
                    let file = Some(file);
                    cache
                        .heads
                        .insert(doc.clone(), Remembered { head, file, len });
                    return Ok(None);
                }
                Relocked::Changed => Some(head),
            }
        }
        Some(remembered) => Some(remembered.head),
        None => None,
    };
    cache.make_room(held);
    let Some(stream) = fsio::try_open_locked(&folder.streams_dir(), &path, wait)? else {
        if let Some(head) = known {
            cache.heads.insert(
                doc.clone(),
                Remembered {
                    head,
                    file: None,
                    len: 0,
                },
            );
        }
        return Ok(None);
    };
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
    Ok(Some(OpenStream {
        path,
        stream,
        tail: Position::of(&tail),
        head,
        pending: cache.buffer(),
        requests: Vec::new(),
        written: false,
        written_len: 0,
        lost: false,
    }))
}
