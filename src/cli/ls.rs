use serde::Serialize;

use super::{Context, exit_codes};
use crate::event::EventType;
use crate::exit_code::ExitCode;
use crate::stream::read_tail;
use crate::{Result, io as fsio};

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

pub fn run(args: Args, context: &Context) -> Result<ExitCode> {
    let folder = context.open()?;
    let docs = super::replay::select(&folder, Vec::new(), args.kind.as_deref())?;
    let mut out = super::output::Output::new();
    for doc in &docs {
        let path = folder.stream_path(doc);
        let Some(file) = fsio::open_read(&path)? else {
            continue;
        };
        let tail = read_tail(&file, &path, doc, folder.max_event_bytes())?;
        let Some(last) = tail.last else { continue };
        out.json(&Entry {
            doc: doc.as_str(),
            seq: last.seq,
            timestamp: &last.timestamp,
            hash: last.hash_hex(),
            deleted: last.kind == EventType::Delete,
        })?;
    }
    out.flush()?;
    Ok(ExitCode::Success)
}
