use super::{Context, exit_codes};
use crate::exit_code::ExitCode;
use crate::state::{self, Point};
use crate::{DocId, Error, Result, time};

/// Print a document's state as of a seq or an instant, with the seq and schema stamp in effect.
///
/// --time T gives the state after the last event at or before T. Without DOC, --time prints
/// every document that existed at T, one JSON line each (documents created later are left out).
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir at order:42 --seq 3
  eventdir at order:42 --time 2026-11-23T12:00:00Z
  eventdir at --time 2026-11-01T00:00:00Z > november-1st.ndjson

", exit_codes!()))]
pub struct Args {
    /// The document, TYPE:ID [default with --time: every document]
    doc: Option<String>,
    /// The state after the event with this seq
    #[arg(
        long,
        value_name = "SEQ",
        conflicts_with = "time",
        required_unless_present = "time"
    )]
    seq: Option<u64>,
    /// The state after the last event at or before this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
}

pub fn run(args: Args, context: &Context) -> Result<ExitCode> {
    let point = match (&args.seq, &args.time) {
        (Some(seq), _) => Point::Seq(*seq),
        (None, Some(t)) => Point::Time(time::parse(t, "--time")?),
        (None, None) => unreachable!("clap requires --seq or --time"),
    };
    let doc = args.doc.as_deref().map(DocId::parse).transpose()?;
    let folder = context.open()?;
    let mut out = super::output::Output::new();
    match doc {
        Some(doc) => {
            let state = state::at(&folder, &doc, &point)?.ok_or_else(|| Error::NotFound {
                doc: doc.to_string(),
            })?;
            out.json(&state.view(&doc))?;
        }
        None => {
            if matches!(point, Point::Seq(_)) {
                return Err(Error::input(
                    "at --seq",
                    "needs a DOC (only --time applies to the whole folder)",
                ));
            }
            for doc in folder.documents()? {
                match state::at(&folder, &doc, &point) {
                    Ok(Some(state)) => out.json(&state.view(&doc))?,
                    Ok(None) | Err(Error::NoSuchPoint { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::Success)
}
