//! Replicas: a folder built from an origin's export stream, one stream at a time. An event is
//! accepted only if it continues its stream's chain exactly; events already held are skipped
//! (re-sending is harmless); a fork or a gap refuses the stream's events of that batch.

use std::collections::HashMap;
use std::path::Path;

use rayon::prelude::*;
use serde::Deserialize;

use crate::append::{Durability, Position, commit};
use crate::event::{Hash, ZERO_HASH, parse_line};
use crate::export::split_export_line;
use crate::folder::{DEFAULT_MAX_EVENT_BYTES, FORMAT_VERSION, Manifest};
use crate::stream::{StreamReader, read_tail};
use crate::{DocId, Error, Folder, Result, io as fsio, time};

/// A stream the replica refused, and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Refusal {
    pub doc: String,
    pub reason: String,
}

/// What applying did so far.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    /// Events written.
    pub applied: u64,
    /// Events the replica already held.
    pub skipped: u64,
    /// Streams refused (a fork or a gap), with why.
    pub refused: Vec<Refusal>,
}

#[derive(Deserialize)]
struct Key<'a> {
    seq: u64,
    #[serde(borrow)]
    doc: std::borrow::Cow<'a, str>,
}

/// One stream's state in the replica.
struct StreamState {
    /// The next seq the replica needs.
    next_seq: u64,
    prev_hash: Hash,
    /// Hashes of the events the replica holds, loaded only to check a re-sent event.
    held: Option<Vec<Hash>>,
    refused: bool,
}

/// Builds a replica in a directory from export lines.
pub struct Applier {
    dir: std::path::PathBuf,
    folder: Option<Folder>,
    /// The origin named by the first line, until the replica exists.
    origin: Option<String>,
    streams: HashMap<DocId, StreamState>,
    /// The `syncfs` of the last batch written, running while the next batch is checked.
    syncing: Option<std::thread::JoinHandle<Result<()>>>,
    pub summary: Summary,
}

impl Applier {
    /// Prepares to apply into `dir`: an existing replica, or a new or empty directory that
    /// becomes one when the first line names its origin.
    pub fn new(dir: &Path) -> Result<Applier> {
        let folder = if dir.join(crate::folder::MANIFEST).exists() {
            let folder = Folder::open(dir)?;
            if folder.manifest().replica_of.is_none() {
                return Err(Error::input(
                    "apply",
                    format!(
                        "{} is a folder, not a replica: apply builds replicas only",
                        dir.display()
                    ),
                ));
            }
            Some(folder)
        } else {
            None
        };
        Ok(Applier {
            dir: dir.to_path_buf(),
            folder,
            origin: None,
            streams: HashMap::new(),
            syncing: None,
            summary: Summary::default(),
        })
    }

    /// Applies a batch of export lines (`line_no` numbers the first for messages). Within the
    /// batch, a stream with a fork or a gap writes nothing; the other streams are written, each
    /// in one write. The lines are taken apart in order, then each stream's are checked
    /// against its chain on all cores, a stream's own in order. A batch of many streams is
    /// made durable by a `syncfs` that runs while the next batch is checked; [`finish`] waits
    /// for it.
    ///
    /// [`finish`]: Applier::finish
    pub fn apply_batch(&mut self, lines: &[String], line_no: u64) -> Result<()> {
        let mut streams: Vec<(DocId, Vec<Incoming>)> = Vec::new();
        let mut index: HashMap<DocId, usize> = HashMap::new();
        for (i, line) in lines.iter().enumerate() {
            let at = line_no + i as u64;
            let taken_apart = split_export_line(line)
                .ok_or_else(|| {
                    not_an_event(
                        at,
                        "not an export line (it must start with {\"origin\":\"<folder id>\",",
                    )
                })
                .and_then(|(origin, stored)| {
                    self.check_origin(origin)?;
                    Ok((key_of(&stored, at)?, stored))
                });
            let ((seq, doc, checked), stored) = match taken_apart {
                Ok(taken_apart) => taken_apart,
                // An earlier line that serde_json cannot read is the first error.
                Err(e) => return Err(first_unreadable(&streams).unwrap_or(e)),
            };
            let slot = *index.entry(doc.clone()).or_insert_with(|| {
                streams.push((doc, Vec::new()));
                streams.len() - 1
            });
            streams[slot].1.push(Incoming {
                at,
                seq,
                stored,
                checked,
            });
        }
        let folder = self.folder.clone();
        let mut work: Vec<(DocId, Option<StreamState>, Vec<Incoming>)> = streams
            .into_iter()
            .map(|(doc, incoming)| {
                let state = self.streams.remove(&doc);
                (doc, state, incoming)
            })
            .collect();
        let outcomes: Vec<Outcome> = work
            .par_iter_mut()
            .map(|(doc, state, incoming)| {
                check_incoming(folder.as_ref(), doc, state, std::mem::take(incoming))
            })
            .collect();
        let mut first_error: Option<(u64, Error)> = None;
        let mut refusals: Vec<(u64, Refusal)> = Vec::new();
        let mut pending: Vec<(DocId, String)> = Vec::new();
        let mut events = 0;
        for ((doc, state, _), outcome) in work.into_iter().zip(outcomes) {
            if let Some(state) = state {
                self.streams.insert(doc.clone(), state);
            }
            self.summary.skipped += outcome.skipped;
            if let Some((at, error)) = outcome.error
                && first_error.as_ref().is_none_or(|(first, _)| at < *first)
            {
                first_error = Some((at, error));
            }
            if let Some((at, reason)) = outcome.refusal {
                refusals.push((
                    at,
                    Refusal {
                        doc: doc.to_string(),
                        reason,
                    },
                ));
            } else if outcome.events > 0 {
                events += outcome.events;
                pending.push((doc, outcome.bytes));
            }
        }
        refusals.sort_by_key(|(at, _)| *at);
        self.summary
            .refused
            .extend(refusals.into_iter().map(|(_, refusal)| refusal));
        if let Some((_, error)) = first_error {
            return Err(error);
        }
        if pending.is_empty() {
            return Ok(());
        }
        // The replica is created only once it has an event to hold.
        let folder = self.create_replica()?;
        // A stream's lines become durable in the order they were written.
        self.finish()?;
        if let Some(sync) = write_streams(&folder, &pending)? {
            self.syncing = Some(std::thread::spawn(move || sync.finish()));
        }
        self.summary.applied += events;
        Ok(())
    }

    /// Waits until everything applied so far is durable: the summary counts it only then.
    pub fn finish(&mut self) -> Result<()> {
        match self.syncing.take() {
            Some(sync) => sync.join().expect("the sync thread does not panic"),
            None => Ok(()),
        }
    }

    /// Checks that `origin` is this replica's origin (the first line names it for a replica
    /// not yet created).
    fn check_origin(&mut self, origin: &str) -> Result<()> {
        let expected = match &self.folder {
            Some(folder) => folder.manifest().replica_of.as_deref().unwrap_or_default(),
            None => self.origin.get_or_insert_with(|| origin.to_string()),
        };
        if expected != origin {
            return Err(Error::input(
                "apply",
                format!(
                    "the stream comes from folder {origin}, but this replica's origin is {expected}"
                ),
            ));
        }
        Ok(())
    }

    /// The replica folder, created (marked with its origin) if it does not exist yet.
    fn create_replica(&mut self) -> Result<Folder> {
        if let Some(folder) = &self.folder {
            return Ok(folder.clone());
        }
        let origin = self
            .origin
            .clone()
            .expect("a line named the origin before anything is written");
        let manifest = Manifest {
            format: "eventdir".to_string(),
            version: FORMAT_VERSION,
            folder_id: uuid::Uuid::new_v4().to_string(),
            created: time::now(),
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            replica_of: Some(origin),
        };
        let mut text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        text.push('\n');
        let folder = Folder::create(&self.dir, text.as_bytes())?;
        self.folder = Some(folder.clone());
        Ok(folder)
    }
}

/// One export line of a batch, its origin taken off.
struct Incoming {
    /// Its line number, for messages.
    at: u64,
    seq: u64,
    stored: String,
    /// Whether serde_json has read it (as every line is, before it is used).
    checked: bool,
}

/// What checking one stream's lines of a batch found.
#[derive(Default)]
struct Outcome {
    /// The lines to append.
    bytes: String,
    events: u64,
    skipped: u64,
    /// The line that refused the stream (nothing of it is written), and why.
    refusal: Option<(u64, String)>,
    /// The first line that could not be read, and why: the batch fails.
    error: Option<(u64, Error)>,
}

/// The error of the first line of `streams` that serde_json has yet to read and cannot.
fn first_unreadable(streams: &[(DocId, Vec<Incoming>)]) -> Option<Error> {
    streams
        .iter()
        .flat_map(|(_, incoming)| incoming)
        .filter(|line| !line.checked)
        .filter_map(|line| read_key(&line.stored, line.at).err().map(|e| (line.at, e)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, e)| e)
}

fn not_an_event(at: u64, reason: &str) -> Error {
    Error::input(format!("stdin line {at}"), reason)
}

/// The seq and document of a stored line, and whether serde_json read the whole line to find
/// them. The two members come first in the lines eventdir writes (`{"seq":N,"doc":"ID",`,
/// FORMAT.md), so that prefix is read directly; anything else is left to serde_json.
fn key_of(stored: &str, at: u64) -> Result<(u64, DocId, bool)> {
    if let Some((seq, doc)) = leading_key(stored)
        && let Ok(doc) = DocId::parse(doc)
    {
        return Ok((seq, doc, false));
    }
    let key = read_key(stored, at)?;
    Ok((key.seq, DocId::parse(&key.doc)?, true))
}

fn read_key(stored: &str, at: u64) -> Result<Key<'_>> {
    serde_json::from_str(stored).map_err(|e| not_an_event(at, &format!("not an event: {e}")))
}

/// `{"seq":N,"doc":"ID",` at the start of a line: N without leading zeros, ID without escapes.
fn leading_key(stored: &str) -> Option<(u64, &str)> {
    let rest = stored.strip_prefix("{\"seq\":")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || (digits > 1 && rest.starts_with('0')) {
        return None;
    }
    let seq = rest[..digits].parse().ok()?;
    let rest = rest[digits..].strip_prefix(",\"doc\":\"")?;
    let end = rest.find(['"', '\\'])?;
    rest[end..]
        .starts_with("\",")
        .then_some((seq, &rest[..end]))
}

/// Checks one stream's lines of a batch, in order, against the replica's chain: a line the
/// replica holds is skipped if it is the same event, the next one must continue the chain,
/// and a fork or a gap refuses the stream.
fn check_incoming(
    folder: Option<&Folder>,
    doc: &DocId,
    state: &mut Option<StreamState>,
    incoming: Vec<Incoming>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let Some(first) = incoming.first() else {
        return outcome;
    };
    if state.is_none() {
        match load_state(folder, doc) {
            Ok(loaded) => *state = Some(loaded),
            Err(e) => {
                outcome.error = Some((first.at, e));
                return outcome;
            }
        }
    }
    let state = state.as_mut().expect("loaded above");
    let refuse = |state: &mut StreamState, outcome: &mut Outcome, at: u64, reason: String| {
        state.refused = true;
        outcome.bytes.clear();
        outcome.events = 0;
        outcome.refusal = Some((at, reason));
    };
    for Incoming {
        at,
        seq,
        stored,
        checked,
    } in incoming
    {
        if !checked && let Err(e) = read_key(&stored, at) {
            outcome.error = Some((at, e));
            return outcome;
        }
        if state.refused {
            continue;
        }
        if seq < state.next_seq {
            let hash = stored_hash(&stored);
            let held = match held_hashes(folder, doc, state) {
                Ok(held) => held,
                Err(e) => {
                    outcome.error = Some((at, e));
                    return outcome;
                }
            };
            if held.get(seq as usize).copied() != hash {
                let reason = format!("a fork at seq {seq}: the replica holds a different event");
                refuse(state, &mut outcome, at, reason);
            } else {
                outcome.skipped += 1;
            }
            continue;
        }
        if seq > state.next_seq {
            let reason = format!(
                "a gap: seq {seq} arrived where seq {} was expected",
                state.next_seq
            );
            refuse(state, &mut outcome, at, reason);
            continue;
        }
        match parse_line(stored, doc, &state.prev_hash) {
            Ok(event) => {
                state.next_seq += 1;
                state.prev_hash = event.hash;
                if let Some(held) = &mut state.held {
                    held.push(event.hash);
                }
                outcome.bytes.push_str(&event.line);
                outcome.bytes.push('\n');
                outcome.events += 1;
            }
            Err(reason) => {
                let reason =
                    format!("seq {seq} does not continue the replica's chain (a fork): {reason}");
                refuse(state, &mut outcome, at, reason);
            }
        }
    }
    outcome
}

/// The hash at the end of a stored line.
fn stored_hash(line: &str) -> Option<Hash> {
    let hex = line
        .strip_suffix("\"}")?
        .get(line.len().checked_sub(66)?..)?;
    crate::event::decode_hex(hex)
}

fn load_state(folder: Option<&Folder>, doc: &DocId) -> Result<StreamState> {
    let Some(folder) = folder else {
        return Ok(StreamState {
            next_seq: 0,
            prev_hash: ZERO_HASH,
            held: None,
            refused: false,
        });
    };
    let path = folder.stream_path(doc);
    let (next_seq, prev_hash) = match fsio::open_read(&path)? {
        None => (0, ZERO_HASH),
        Some(file) => match read_tail(&file, &path, doc, folder.max_event_bytes())?.last {
            None => (0, ZERO_HASH),
            Some(last) => (last.seq + 1, last.hash),
        },
    };
    Ok(StreamState {
        next_seq,
        prev_hash,
        held: None,
        refused: false,
    })
}

fn held_hashes<'a>(
    folder: Option<&Folder>,
    doc: &DocId,
    state: &'a mut StreamState,
) -> Result<&'a Vec<Hash>> {
    if state.held.is_none() {
        let mut hashes = Vec::new();
        if let Some(mut reader) = folder
            .map(|f| StreamReader::open(f, doc))
            .transpose()?
            .flatten()
        {
            while let Some(event) = reader.next_event()? {
                hashes.push(event.hash);
            }
        }
        state.held = Some(hashes);
    }
    Ok(state.held.as_ref().expect("loaded above"))
}

/// From this many streams in one batch on, they are written in parallel and made durable by
/// one `syncfs` instead of an fsync each (and three more for each new stream's directories):
/// an export lists a folder stream by stream, so a batch of a folder of small documents
/// brings hundreds of them, most of them new.
const SYNCFS_FROM: usize = 8;

/// Appends each stream's checked lines, by the same commit as `append`: durably, or, for many
/// streams, returning the `syncfs` that makes them durable. A stream whose write fails is left
/// as it was, and the batch fails: nothing of it is reported as applied.
fn write_streams(
    folder: &Folder,
    pending: &[(DocId, String)],
) -> Result<Option<fsio::FilesystemSync>> {
    // Documents of the batch may be stamped with schema events of the batch: those are made
    // durable first, so that no failure or crash leaves a stamp that does not resolve.
    let (schemas, documents): (Vec<_>, Vec<_>) = pending
        .iter()
        .partition(|(doc, _)| doc.schema_of().is_some());
    for (doc, bytes) in schemas {
        write_stream(folder, doc, bytes, Durability::Fsync)?;
    }
    if documents.len() < SYNCFS_FROM {
        documents
            .iter()
            .try_for_each(|(doc, bytes)| write_stream(folder, doc, bytes, Durability::Fsync))?;
        return Ok(None);
    }
    // Opened before the writes it must cover.
    let sync = fsio::FilesystemSync::begin(folder.root())?;
    documents
        .par_iter()
        .try_for_each(|(doc, bytes)| write_stream(folder, doc, bytes, Durability::Deferred))?;
    Ok(Some(sync))
}

/// Appends checked lines to a replica stream under its lock; a failure leaves the stream as
/// it was.
fn write_stream(folder: &Folder, doc: &DocId, bytes: &str, durability: Durability) -> Result<()> {
    let path = folder.stream_path(doc);
    let mut stream = fsio::open_locked(&folder.streams_dir(), &path)?;
    let result = read_tail(&stream.file, &path, doc, folder.max_event_bytes()).and_then(|tail| {
        commit(
            folder,
            &mut stream.file,
            &path,
            Position::of(&tail),
            bytes,
            durability,
        )
    });
    if result.is_err() && stream.created_file {
        fsio::remove_new_stream(&stream, &path);
    }
    result.map(|_| ())
}
