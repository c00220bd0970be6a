use std::path::PathBuf;

use rayon::prelude::*;

use super::{Context, exit_codes, parse_docs};
use crate::exit_code::ExitCode;
use crate::export::{Cursor, CursorEntry, Selection, complete_len, export_line, read_new};
use crate::{DocId, Result, state, time};

/// A document stream with at most this many bytes to ship is read together with its
/// neighbours, on all cores, its lines held until they are printed in order.
const SHORT_STREAM: u64 = 1 << 20;
/// The most bytes, and the most streams, read together.
const TOGETHER_BYTES: u64 = 16 << 20;
const TOGETHER_STREAMS: usize = 1024;
/// The most documents whose current states `--states` holds at once.
const STATES_TOGETHER: usize = 256;

/// Write the folder's history for other systems: one self-contained event per line (NDJSON).
///
/// Each line is a stored event (doc, seq, type, timestamp, event_id, schema, meta, salt,
/// data_hash, data, hash) with "origin", the folder id, put first: removing it gives the stored
/// bytes back, so a consumer can check every hash (FORMAT.md). Schema documents are exported
/// like any other, before the documents, so every stamp can be read with its schema.
///
/// Within one document, events come in ascending seq; across documents no order is promised.
/// With --cursor FILE, only events after those the previous run shipped are written, and FILE
/// is updated (write, fsync, rename) only after all output was written, so running the same
/// command repeatedly ships each event exactly once to a consumer that acknowledges by exit
/// status. --states prints each document's current state (as `get` does) instead of events.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir export > history.ndjson
  eventdir export --type order --since 2026-11-01T00:00:00Z
  eventdir export --cursor ship.cursor | consumer && echo shipped
  eventdir export --states --doc order:42

", exit_codes!()))]
pub struct Args {
    #[command(flatten)]
    streams: StreamsArgs,
    /// Only events at or after this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only events at or before this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Print current states instead of events
    #[arg(long, conflicts_with_all = ["cursor", "since", "until"])]
    states: bool,
    /// Resume after the previous export recorded in FILE, and record this one
    #[arg(long, value_name = "FILE")]
    cursor: Option<PathBuf>,
}

/// Which streams `export` and `tail` ship.
#[derive(clap::Args, Debug)]
pub struct StreamsArgs {
    /// Only documents of this TYPE (and its schema document)
    #[arg(long = "type", value_name = "TYPE")]
    pub(super) kind: Option<String>,
    /// Only this document; repeatable
    #[arg(long = "doc", value_name = "DOC")]
    pub(super) docs: Vec<String>,
}

pub fn run(args: Args, context: &Context) -> Result<ExitCode> {
    let selection = Selection {
        kind: args.streams.kind.clone(),
        docs: parse_docs(&args.streams.docs)?,
        since: args
            .since
            .as_deref()
            .map(|t| time::parse(t, "--since"))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|t| time::parse(t, "--until"))
            .transpose()?,
    };
    let folder = context.open()?;
    let docs = selection.documents(&folder)?;
    let mut out = super::output::Output::new();
    if args.states {
        out.lines_in_order(&docs, STATES_TOGETHER, |doc| {
            let state = state::current(&folder, doc)?;
            Ok(state.map(|s| serde_json::to_string(&s.view(doc)).expect("a state serializes")))
        })?;
        out.flush()?;
        return Ok(ExitCode::Success);
    }
    let mut cursor = match &args.cursor {
        Some(path) => Cursor::load(path, &folder)?,
        None => Cursor::new(&folder),
    };
    // Record every document stream's length before reading any schema stream, so that every
    // stamp shipped resolves to a schema event shipped in the same run.
    let ends: Vec<Option<u64>> = docs
        .par_iter()
        .map(|d| {
            if d.schema_of().is_some() {
                Ok(None)
            } else {
                complete_len(&folder, d).map(Some)
            }
        })
        .collect::<Result<_>>()?;
    let origin = folder.manifest().folder_id.clone();
    let ship = |doc: &DocId,
                from: Option<&CursorEntry>,
                end: Option<u64>,
                emit: &mut dyn FnMut(String) -> Result<()>| {
        read_new(&folder, doc, from, end, &mut |event| {
            if selection.includes_event(event) {
                emit(export_line(&origin, &event.line))?;
            }
            Ok(())
        })
    };
    // Where each stream ends up is recorded only for a cursor to save: a million documents
    // would otherwise hold a million entries for nothing.
    let recording = args.cursor.is_some();
    let record = |cursor: &mut Cursor, doc: &DocId, next: Option<CursorEntry>| {
        if let Some(next) = next.filter(|_| recording) {
            cursor.next.insert(doc.to_string(), next);
        }
    };
    let mut i = 0;
    while i < docs.len() {
        let run = small_streams(&docs[i..], &ends[i..], &cursor);
        if run == 0 {
            // A schema stream or a long one: its lines go out as they are read.
            let from = cursor.next.get(docs[i].as_str());
            let next = ship(&docs[i], from, ends[i], &mut |line| out.line(&line))?;
            record(&mut cursor, &docs[i], next);
            i += 1;
            continue;
        }
        // Short streams, read together on all cores; their lines are printed in order, each
        // stream's up to its error if it has one, as they would be one stream at a time.
        let read: Vec<(Vec<String>, Result<Option<CursorEntry>>)> = docs[i..i + run]
            .par_iter()
            .zip(&ends[i..i + run])
            .map(|(doc, end)| {
                let mut lines = Vec::new();
                let from = cursor.next.get(doc.as_str());
                let next = ship(doc, from, *end, &mut |line| {
                    lines.push(line);
                    Ok(())
                });
                (lines, next)
            })
            .collect();
        for (doc, (lines, next)) in docs[i..i + run].iter().zip(read) {
            for line in &lines {
                out.line(line)?;
            }
            record(&mut cursor, doc, next?);
        }
        i += run;
    }
    out.flush()?;
    if let Some(path) = &args.cursor {
        cursor.save(path)?;
    }
    Ok(ExitCode::Success)
}

/// How many of the first streams of `docs` (with their recorded `ends`) are short document
/// streams that may be read together: none when the first is a schema stream or a long one.
fn small_streams(docs: &[DocId], ends: &[Option<u64>], cursor: &Cursor) -> usize {
    let mut bytes = 0;
    docs.iter()
        .zip(ends)
        .take(TOGETHER_STREAMS)
        .take_while(|(doc, end)| {
            let Some(end) = end else { return false };
            let from = cursor.next.get(doc.as_str()).map_or(0, |c| c.offset);
            let len = end.saturating_sub(from);
            bytes += len;
            len <= SHORT_STREAM && bytes <= TOGETHER_BYTES
        })
        .count()
}
