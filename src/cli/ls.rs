use serde::Serialize;

use super::{Context, exit_codes};
use crate::event::EventType;
use crate::exit_code::ExitCode;
use crate::stream::read_tail;
use crate::{DocId, Folder, Result, io as fsio};

/// List the documents of the folder, one JSON line each, in id order.
///
/// Each line has doc, seq (of the last event), timestamp (of the last event), hash (the head
/// of the chain) and deleted. Only the end of each stream is read; `eventdir verify` checks
/// the rest. Files under streams/ that eventdir did not write are left out.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir ls
  eventdir ls --type order | jq -r 'select(.deleted | not) | .doc'

", exit_codes!()))]
pub struct Args {
    /// Only documents of this TYPE
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
}

#[derive(Serialize)]
struct Entry<'a> {
    doc: &'a str,
    seq: u64,
    timestamp: &'a str,
    hash: String,
    deleted: bool,
}

/// Documents whose ends are read at a time, in parallel (their lines printed in id order).
const READ_TOGETHER: usize = 1024;

pub fn run(args: Args, context: &Context) -> Result<ExitCode> {
    let folder = context.open()?;
    let docs = super::replay::select(&folder, Vec::new(), args.kind.as_deref())?;
    let mut out = super::output::Output::new();
    out.lines_in_order(&docs, READ_TOGETHER, |doc| entry(&folder, doc))?;
    out.flush()?;
    Ok(ExitCode::Success)
}

/// The line of `doc`, from the end of its stream; none for a stream without events.
fn entry(folder: &Folder, doc: &DocId) -> Result<Option<String>> {
    let path = folder.stream_path(doc);
    let Some(file) = fsio::open_read(&path)? else {
        return Ok(None);
    };
    let tail = read_tail(&file, &path, doc, folder.max_event_bytes())?;
    let Some(last) = tail.last else {
        return Ok(None);
    };
    let entry = Entry {
        doc: doc.as_str(),
        seq: last.seq,
        timestamp: last.timestamp(),
        hash: last.hash_hex(),
        deleted: last.kind == EventType::Delete,
    };
    Ok(Some(
        serde_json::to_string(&entry).expect("an entry serializes"),
    ))
}
