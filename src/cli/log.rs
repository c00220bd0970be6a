use super::{Context, exit_codes};
use crate::exit_code::ExitCode;
use crate::read_ahead::FoldReader;
use crate::stream::{Position, StreamReader};
use crate::{DocId, Error, Result, io as fsio, snapshot, time};

/// Print a document's stored events, one per line, exactly as stored.
///
/// Every event is checked against the hash chain as it is read. The filters are inclusive and
/// can be combined; timestamps never decrease within a stream. With --from or --since, reading
/// starts just after the latest snapshot or index checkpoint before it (both derived data under
/// `cache/`, checked against the stream's bytes where they point), so the events before are
/// not read: `eventdir verify` checks a whole stream.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir log order:42
  eventdir log order:42 --from 3 --to 5
  eventdir log order:42 --since 2026-11-23T00:00:00Z | jq -c .data

", exit_codes!()))]
pub struct Args {
    /// The document, TYPE:ID
    doc: String,
    /// The first seq to print
    #[arg(long, value_name = "SEQ")]
    from: Option<u64>,
    /// The last seq to print
    #[arg(long, value_name = "SEQ")]
    to: Option<u64>,
    /// Only events at or after this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only events at or before this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
}

pub fn run(args: Args, context: &Context) -> Result<ExitCode> {
    let doc = DocId::parse(&args.doc)?;
    let since = args
        .since
        .as_deref()
        .map(|t| time::parse(t, "--since"))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|t| time::parse(t, "--until"))
        .transpose()?;
    let folder = context.open()?;
    let path = folder.stream_path(&doc);
    let file = fsio::open_read(&path)?.ok_or_else(|| Error::NotFound {
        doc: doc.to_string(),
    })?;
    // Both bounds skip what lies before them; the later start wins.
    let from = args
        .from
        .map(|from| snapshot::position_before(&folder, &doc, &file, &path, from));
    let since_start = since
        .as_deref()
        .map(|since| snapshot::position_before_time(&folder, &doc, &file, &path, since));
    let start = from
        .into_iter()
        .chain(since_start)
        .max_by_key(|p| p.next_seq)
        .unwrap_or_else(Position::start);
    // Only a guess at how much there is to read, to decide whether to read ahead.
    let remaining = file
        .metadata()
        .map_or(0, |m| m.len())
        .saturating_sub(start.offset);
    // Each payload's readability is checked here, the rest by the reader (ahead on a second
    // thread for a long stream).
    let reader = StreamReader::at(
        file,
        path,
        doc.clone(),
        folder.max_event_bytes(),
        start.clone(),
    )?
    .folding();
    let mut reader = FoldReader::new(reader, remaining);
    let mut out = super::output::Output::new();
    // Starting after a snapshot or checkpoint, the document has events even if none follow.
    let mut any = start.next_seq > 0;
    reader.for_each_while(|event, path| {
        any = true;
        crate::json::check_readable(event.data_text()).map_err(|e| {
            Error::corrupt_event(&doc, path, event.seq, format!("data cannot be read: {e}"))
        })?;
        if args.to.is_some_and(|to| event.seq > to)
            || until
                .as_ref()
                .is_some_and(|u| event.timestamp() > u.as_str())
        {
            return Ok(false);
        }
        if args.from.is_none_or(|from| event.seq >= from)
            && since
                .as_ref()
                .is_none_or(|s| event.timestamp() >= s.as_str())
        {
            out.line(&event.line)?;
        }
        Ok(true)
    })?;
    out.flush()?;
    if !any {
        return Err(Error::NotFound {
            doc: doc.to_string(),
        });
    }
    Ok(ExitCode::Success)
}
