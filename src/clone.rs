//! Whole-folder clones: consistent while writers go on, verified as written, incremental, and
//! refusing a destination that diverged.
//!
//! Streams only grow, so a consistent copy records each stream's length at a line boundary and
//! copies up to it. Document streams are recorded before schema streams, so every stamp in the
//! copy resolves in the copy; schema streams are copied before document streams, so that every
//! stamp also resolves in a copy cut short at any moment. Before anything is written, every
//! stream the destination holds is checked to be a prefix of the source's (its last event is
//! the source's event at the same offset, same hash); then only the bytes after it are copied,
//! each line checked against the chain as it goes. The manifest is written first, so an
//! interrupted clone is a valid clone of an earlier moment, which a re-run completes.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::event::Hash;
use crate::stream::{
    EndWindow, HASH_TAIL, Position, StreamReader, hash_from_line_end, tail_from_end,
};
use crate::verify::{FolderDigest, Head};
use crate::{DocId, Error, Folder, Result, io as fsio};

/// What a clone did.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    /// The destination's folder digest.
    pub digest: String,
    pub streams: u64,
    pub events: u64,
    pub bytes: u64,
    /// Of those, what this run copied.
    pub copied_streams: u64,
    pub copied_events: u64,
    pub copied_bytes: u64,
    pub seconds: f64,
}

/// Progress reported while copying.
pub struct Progress {
    pub streams_done: u64,
    pub streams_total: u64,
    pub bytes_copied: u64,
}

/// From this many bytes copied into one stream on, its write-back starts as soon as it is
/// copied, so that the disk writes while the other streams are checked instead of all at the
/// final `syncfs` (a full clone of 10 000 streams of 60 KB: median 2.91 s -> 2.38 s in 13
/// interleaved runs). Not for the few hundred bytes a re-clone brings to each stream: started
/// one by one, such small writes cost more than the one `syncfs` that writes them together.
const EARLY_WRITEBACK_FROM: u64 = 16 << 10;

/// Streams copied at a time (in parallel), between two progress reports.
const COPIED_TOGETHER: usize = 64;

/// One stream's plan: copy the source's bytes `[from, to)`.
struct Plan {
    doc: DocId,
    to: u64,
    head: Head,
    start: Position,
    /// Bytes after the destination's complete lines, left by an interrupted run.
    dst_torn: bool,
    /// Kept from planning, within [`Keep`]'s limits, so that copying opens nothing again;
    /// boxed, so that the plans of streams that keep nothing (most, in a large folder) stay
    /// small.
    kept: Option<Box<Kept>>,
}

/// What planning keeps for the copy of a stream that grew: the destination file, open for
/// appending (unlocked) with the length it had, and the source's new bytes when the end
/// read for planning held them all.
#[derive(Default)]
struct Kept {
    dst: Option<(File, u64)>,
    src_bytes: Option<Vec<u8>>,
}

/// How many files and bytes planning may keep for copying, over all streams: a folder may hold
/// more streams than a process may open files, and millions of them.
struct Keep {
    files: AtomicUsize,
    bytes: AtomicUsize,
}

impl Keep {
    /// Bytes of the source kept over all plans: enough for an incremental clone of 10 000
    /// streams that grew by a few events each.
    const BYTES: usize = 16 << 20;

    /// Limits for planning `src`'s streams, `reopened` of them with a destination file.
    fn new(src: &Folder, reopened: usize) -> Keep {
        // Half the files a process may open, less what copying opens at a time besides.
        let files = fsio::raise_open_file_limit().map_or(0, |limit| {
            limit.saturating_sub(4 * COPIED_TOGETHER + 256) / 2
        });
        if reopened > 0 {
            fsio::reserve_open_files(src.root(), files.min(reopened));
        }
        Keep {
            files: AtomicUsize::new(files),
            bytes: AtomicUsize::new(Keep::BYTES),
        }
    }

    /// Takes `n` from `budget` if that much is left.
    fn take(budget: &AtomicUsize, n: usize) -> bool {
        budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }
}

/// Clones `src` into `dst_dir` (a new or empty directory, or an earlier clone of `src`).
pub fn clone(src: &Folder, dst_dir: &Path, progress: &mut dyn FnMut(&Progress)) -> Result<Summary> {
    let started = Instant::now();
    let (dst, earlier_clone) = open_destination(src, dst_dir)?;
    let durable = fsio::FilesystemSync::begin(dst.root())?;
    let (docs, _) = src.scan()?;
    // Only an earlier clone has destination files to keep open.
    let keep = Keep::new(src, if earlier_clone { docs.len() } else { 0 });
    // Document streams first, schema streams after: a stamp then always resolves in the copy.
    let (schemas, documents): (Vec<DocId>, Vec<DocId>) =
        docs.into_iter().partition(|d| d.schema_of().is_some());
    // Planned on all cores, but every document before any schema.
    let plan_all = |group: Vec<DocId>| -> Result<Vec<Plan>> {
        group
            .into_par_iter()
            .filter_map(|doc| plan_stream(src, &dst, doc, &keep).transpose())
            .collect()
    };
    let mut plans = plan_all(documents)?;
    plans.extend(plan_all(schemas)?);
    // Copied many streams at a time on all cores (checking the chain is most of a copy's
    // work): all the schemas, then the documents, so that a clone killed halfway holds every
    // schema event its documents' stamps name.
    let first_schema = plans
        .iter()
        .position(|p| p.doc.schema_of().is_some())
        .unwrap_or(plans.len());
    let (dst_docs, _) = dst.scan()?;
    // Both runs of plans are sorted by document.
    let planned = |doc: &DocId| {
        let (documents, schemas) = plans.split_at(first_schema);
        [documents, schemas]
            .iter()
            .any(|run| run.binary_search_by(|p| p.doc.cmp(doc)).is_ok())
    };
    if let Some(extra) = dst_docs.iter().find(|d| {
        !planned(d)
            && fsio::open_read(&src.stream_path(d))
                .ok()
                .flatten()
                .is_none()
    }) {
        return Err(Error::Diverged {
            doc: extra.to_string(),
            reason: "the destination has a stream the source does not".to_string(),
        });
    }
    let mut summary = Summary {
        digest: String::new(),
        streams: plans.len() as u64,
        events: 0,
        bytes: 0,
        copied_streams: 0,
        copied_events: 0,
        copied_bytes: 0,
        seconds: 0.0,
    };
    let streams_total = plans.len() as u64;
    let mut done = 0;
    let (documents, schemas) = plans.split_at_mut(first_schema);
    for chunk in schemas
        .chunks_mut(COPIED_TOGETHER)
        .chain(documents.chunks_mut(COPIED_TOGETHER))
    {
        let copied: Vec<Result<Option<u64>>> = chunk
            .par_iter_mut()
            .map(|plan| {
                (plan.start.offset < plan.to || plan.dst_torn)
                    .then(|| copy_stream(src, &dst, plan))
                    .transpose()
            })
            .collect();
        for (plan, copied) in chunk.iter().zip(copied) {
            summary.events += plan.head.seq + 1;
            summary.bytes += plan.to;
            if let Some(copied) = copied? {
                summary.copied_streams += u64::from(copied > 0);
                summary.copied_events += copied;
                summary.copied_bytes += plan.to - plan.start.offset;
            }
            done += 1;
            progress(&Progress {
                streams_done: done,
                streams_total,
                bytes_copied: summary.copied_bytes,
            });
        }
    }
    // One syncfs makes every copied byte and every new name durable, far cheaper than an
    // fsync per file and per directory.
    durable.finish()?;
    summary.digest = crate::event::encode_hex(merged_digest(&plans, first_schema));
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The folder digest of the plans, whose two runs (documents, then schemas from
/// `first_schema` on) are each sorted by document: merged as they are, nothing is collected.
fn merged_digest(plans: &[Plan], first_schema: usize) -> Hash {
    let (documents, schemas) = plans.split_at(first_schema);
    let (mut documents, mut schemas) = (documents.iter().peekable(), schemas.iter().peekable());
    let mut digest = FolderDigest::default();
    while let Some(plan) = match (documents.peek(), schemas.peek()) {
        (Some(d), Some(s)) if s.doc < d.doc => schemas.next(),
        (Some(_), _) => documents.next(),
        (None, _) => schemas.next(),
    } {
        digest.add(&plan.doc, plan.head);
    }
    digest.finish()
}

/// Opens an earlier clone of `src`, or creates a new one with `src`'s manifest; whether it
/// is an earlier clone.
fn open_destination(src: &Folder, dir: &Path) -> Result<(Folder, bool)> {
    if dir.join(crate::folder::MANIFEST).exists() {
        let dst = Folder::open(dir)?;
        if dst.manifest().folder_id != src.manifest().folder_id
            || dst.manifest().replica_of.is_some()
        {
            return Err(Error::input(
                "clone",
                format!(
                    "{} is an eventdir folder but not a clone of {} (folder ids differ)",
                    dir.display(),
                    src.root().display()
                ),
            ));
        }
        return Ok((dst, true));
    }
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(Error::io("list", dir)(e)),
    };
    if !empty {
        return Err(Error::input(
            "clone",
            format!("{} is neither empty nor an earlier clone", dir.display()),
        ));
    }
    let manifest =
        std::fs::read(src.manifest_path()).map_err(Error::io("read", src.manifest_path()))?;
    Ok((Folder::create(dir, &manifest)?, false))
}

/// How much of a stream's end planning reads to find its last line: events are seldom longer
/// (longer ones take more reads). Every byte read is a copy from the page cache, and a
/// re-clone reads the end of every stream on both sides.
const LAST_LINE_WINDOW: u64 = 2 * 1024;
/// The most new bytes of a grown stream planning reads with its end (and keeps for copying,
/// within [`Keep`]'s budget); a stream grown by more is read again when copied.
const NEW_BYTES_WINDOW: u64 = 64 * 1024;

/// Records the source stream's length and checks the destination's copy is a prefix of it.
fn plan_stream(src: &Folder, dst: &Folder, doc: DocId, keep: &Keep) -> Result<Option<Plan>> {
    let src_path = src.stream_path(&doc);
    let Some(src_file) = fsio::open_read(&src_path)? else {
        return Ok(None);
    };
    // The common case of an incremental clone: the stream did not change since the last run.
    // Same length, same last seq and hash on both sides mean the same bytes (the hash covers
    // every earlier byte), so nothing is read or parsed beyond the two last lines' ends.
    // Each side's end is read once, for this check and for the full one below.
    let dst_path = dst.stream_path(&doc);
    let (dst_file, dst_writable) = match fsio::open_append_or_read(&dst_path)? {
        Some((file, writable)) => (Some(file), writable),
        None => (None, false),
    };
    let dst_end = match &dst_file {
        Some(file) => Some(EndWindow::read_from(file, &dst_path, |len| {
            len.saturating_sub(LAST_LINE_WINDOW)
        })?),
        None => None,
    };
    // The source's last line and, when there are not too many, its new bytes from the
    // destination's end on (with the hash before them), kept for copying.
    let src_end = EndWindow::read_from(&src_file, &src_path, |len| {
        let last_line = len.saturating_sub(LAST_LINE_WINDOW);
        match &dst_end {
            Some(dst) if dst.file_len <= len && len - dst.file_len <= NEW_BYTES_WINDOW => {
                last_line.min(dst.file_len.saturating_sub(HASH_TAIL as u64))
            }
            _ => last_line,
        }
    })?;
    if let Some(dst_end) = &dst_end
        && let Some(src_head) = quick_head(&src_end)
        && quick_head(dst_end) == Some(src_head)
    {
        let (seq, hash, to) = src_head;
        return Ok(Some(Plan {
            doc,
            to,
            head: Head { seq, hash },
            start: Position {
                offset: to,
                next_seq: seq + 1,
                prev_hash: hash,
                prev_timestamp: String::new(),
            },
            dst_torn: false,
            kept: None,
        }));
    }
    let tail = tail_from_end(&src_file, &src_path, &doc, src.max_event_bytes(), &src_end)?;
    let Some(last) = tail.last else {
        return Ok(None);
    };
    let to = tail.complete_len;
    let head = Head {
        seq: last.seq,
        hash: last.hash,
    };
    let mut dst_torn = false;
    let start = match dst_file.as_ref().zip(dst_end.as_ref()) {
        None => Position::start(),
        Some((dst_file, dst_end)) => {
            let dst_tail =
                tail_from_end(dst_file, &dst_path, &doc, dst.max_event_bytes(), dst_end)?;
            dst_torn = dst_tail.partial_len > 0;
            match dst_tail.last {
                None => Position::start(),
                Some(dst_last) => {
                    let at = dst_tail.complete_len;
                    let diverged = |reason: String| Error::Diverged {
                        doc: doc.to_string(),
                        reason,
                    };
                    if at > to {
                        return Err(diverged(format!(
                            "the destination holds seq {} but the source ends at seq {}",
                            dst_last.seq, last.seq
                        )));
                    }
                    let same =
                        src_end.hash_before(&src_file, &src_path, at).ok() == Some(dst_last.hash);
                    if !same {
                        return Err(diverged(format!(
                            "the destination's seq {} differs from the source's",
                            dst_last.seq
                        )));
                    }
                    Position {
                        offset: at,
                        next_seq: dst_last.seq + 1,
                        prev_hash: dst_last.hash,
                        prev_timestamp: dst_last.timestamp().to_string(),
                    }
                }
            }
        }
    };
    let mut kept = Kept::default();
    if start.offset < to || dst_torn {
        if let Some((file, end)) = dst_file.zip(dst_end)
            && dst_writable
            && Keep::take(&keep.files, 1)
        {
            kept.dst = Some((file, end.file_len));
        }
        // The new bytes, when the end read above holds them all.
        let wanted = (to - start.offset) as usize;
        if start.offset >= src_end.start && Keep::take(&keep.bytes, wanted) {
            let from = (start.offset - src_end.start) as usize;
            kept.src_bytes = Some(src_end.bytes[from..from + wanted].to_vec());
        }
    }
    Ok(Some(Plan {
        doc,
        to,
        head,
        start,
        dst_torn,
        kept: (kept.dst.is_some() || kept.src_bytes.is_some()).then(|| Box::new(kept)),
    }))
}

/// The last seq and hash of a stream whose file ends with a complete line, and its length,
/// read from the last line's two ends without parsing it.
fn quick_head(end: &EndWindow) -> Option<(u64, crate::event::Hash, u64)> {
    // The line starts after the previous newline; its first bytes are `{"seq":N,`. A last
    // line longer than the window takes the full path.
    let back = &end.bytes;
    let hash = hash_from_line_end(&back[back.len().checked_sub(HASH_TAIL)?..]).ok()?;
    let body = &back[..back.len() - 1];
    let start = memchr::memrchr(b'\n', body).map_or(0, |i| i + 1);
    if start == 0 && end.start > 0 {
        return None; // a line longer than what was read: let the full path handle it
    }
    let rest = std::str::from_utf8(&body[start..])
        .ok()?
        .strip_prefix("{\"seq\":")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    Some((rest[..digits].parse().ok()?, hash, end.file_len))
}

/// Copies the planned bytes, checking every line against the chain, and fsyncs. A failure
/// truncates the destination back to where this run started.
fn copy_stream(src: &Folder, dst: &Folder, plan: &mut Plan) -> Result<u64> {
    let dst_path = dst.stream_path(&plan.doc);
    // The file kept since planning, if it is still the one planned for (linked, same length).
    let Kept {
        dst: kept_dst,
        src_bytes,
    } = plan.kept.take().map_or_else(Kept::default, |k| *k);
    let relocked = match kept_dst {
        Some((file, len)) => match fsio::relock(file, &dst_path, len, fsio::Wait::Yes)? {
            fsio::Relocked::Locked(stream) => Some((stream, len)),
            _ => None,
        },
        None => None,
    };
    let (mut stream, len) = match relocked {
        Some(kept) => kept,
        None => {
            let stream = fsio::open_locked(&dst.streams_dir(), &dst_path)?;
            let len = stream
                .file
                .metadata()
                .map_err(Error::io("inspect", &dst_path))?
                .len();
            (stream, len)
        }
    };
    if len != plan.start.offset {
        // A torn tail from an interrupted run: never acknowledged, so it goes.
        fsio::truncate(&stream.file, &dst_path, plan.start.offset)?;
    }
    // The source's new bytes as planning read them, or the file reopened here (not kept open
    // since planning beyond [`Keep`]'s limits). The chain check from the recorded position,
    // and the recorded head at the end, make sure it is still the same stream. (The path is
    // derived again rather than kept in every plan: a folder may hold millions.)
    let src_path = src.stream_path(&plan.doc);
    let reader = match src_bytes {
        Some(bytes) => StreamReader::over_bytes(
            bytes,
            src_path.clone(),
            plan.doc.clone(),
            src.max_event_bytes(),
            plan.start.clone(),
        ),
        None => {
            let handle = fsio::open_read(&src_path)?.ok_or_else(|| Error::Corrupt {
                doc: plan.doc.to_string(),
                path: src_path.clone(),
                line: None,
                seq: Some(plan.head.seq),
                reason: "the source stream disappeared during the clone".to_string(),
            })?;
            StreamReader::at(
                handle,
                src_path.clone(),
                plan.doc.clone(),
                src.max_event_bytes(),
                plan.start.clone(),
            )?
        }
    };
    let mut reader = reader.stop_at(plan.to).searching_with_vectors();
    // Lines are written a megabyte at a time; most re-cloned streams bring far less.
    let mut buffer =
        Vec::with_capacity((plan.to.saturating_sub(plan.start.offset) as usize).min(1 << 20));
    let mut written = plan.start.offset;
    let mut events = 0;
    let mut last: Option<Hash> = None;
    let result = (|| {
        while let Some(event) = reader.next_event()? {
            buffer.extend_from_slice(event.line.as_bytes());
            buffer.push(b'\n');
            events += 1;
            last = Some(event.hash);
            if buffer.len() >= 1 << 20 {
                flush(&mut stream.file, &dst_path, written, &mut buffer)?;
                written = reader.offset();
            }
        }
        flush(&mut stream.file, &dst_path, written, &mut buffer)?;
        if plan.to - plan.start.offset >= EARLY_WRITEBACK_FROM {
            fsio::start_writeback(&stream.file);
        }
        if last != Some(plan.head.hash) {
            return Err(Error::Corrupt {
                doc: plan.doc.to_string(),
                path: src_path.clone(),
                line: None,
                seq: Some(plan.head.seq),
                reason: "the source stream changed under the clone".to_string(),
            });
        }
        Ok(events)
    })();
    if result.is_err() {
        let _ = fsio::truncate(&stream.file, &dst_path, plan.start.offset);
        if stream.created_file {
            fsio::remove_new_stream(&stream, &dst_path);
        }
    }
    result
}

fn flush(file: &mut File, path: &Path, len: u64, buffer: &mut Vec<u8>) -> Result<()> {
    if buffer.is_empty() {
        return Ok(());
    }
    fsio::append_or_roll_back(file, path, len, buffer)?;
    buffer.clear();
    let _ = file.flush();
    Ok(())
}
