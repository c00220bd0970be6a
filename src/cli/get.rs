use super::{Context, exit_codes};
use crate::exit_code::ExitCode;
use crate::{DocId, Error, Result, state};

/// Print a document's current state as one JSON line.
///
/// The line holds doc, seq (of the last event), timestamp, schema (stamp), deleted, hash (of
/// the last event) and state (always an object; a deleted document keeps its last state).
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir get order:42
  eventdir get order:42 | jq .state.status

", exit_codes!()))]
pub struct Args {
    /// The document, TYPE:ID
    doc: String,
}

pub fn run(args: Args, context: &Context) -> Result<ExitCode> {
    let doc = DocId::parse(&args.doc)?;
    let folder = context.open()?;
    let state = state::current(&folder, &doc)?.ok_or_else(|| Error::NotFound {
        doc: doc.to_string(),
    })?;
    let mut out = super::output::Output::new();
    out.json(&state.view(&doc))?;
    out.flush()?;
    Ok(ExitCode::Success)
}
