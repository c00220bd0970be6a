use std::path::PathBuf;

use super::{Context, exit_codes, parse_docs};
use crate::exit_code::ExitCode;
use crate::export::{Cursor, Selection, complete_len, export_line, read_new};
use crate::{Result, state, time};

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
        for doc in &docs {
            if let Some(state) = state::current(&folder, doc)? {
                out.json(&state.view(doc))?;
            }
        }
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
        .iter()
        .map(|d| {
            if d.schema_of().is_some() {
                Ok(None)
            } else {
                complete_len(&folder, d).map(Some)
            }
        })
        .collect::<Result<_>>()?;
    let origin = folder.manifest().folder_id.clone();
    for (doc, end) in docs.iter().zip(ends) {
        let from = cursor.next.get(doc.as_str()).cloned();
        let next = read_new(&folder, doc, from.as_ref(), end, &mut |event| {
            if selection.includes_event(event) {
                out.line(&export_line(&origin, &event.line))?;
            }
            Ok(())
        })?;
        if let Some(next) = next {
            cursor.next.insert(doc.to_string(), next);
        }
    }
    out.flush()?;
    if let Some(path) = &args.cursor {
        cursor.save(path)?;
    }
    Ok(ExitCode::Success)
}
