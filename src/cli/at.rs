use super::output::Output;
use super::{Context, exit_codes};
use crate::exit_code::ExitCode;
use crate::state::{self, DocState, Point};
use crate::{DocId, Error, Folder, Result, time};

/// Print a document's state as of a seq or an instant, with the seq and schema stamp in effect.
///
/// --time T gives the state after the last event at or before T. Without DOC, --time prints
/// every document that existed at T, one JSON line each (documents created later are left out).
/// With --with-schema, each line also holds "schema_document": the state of the type's schema
/// document at the event's stamp (the JSON Schema and migration it conformed to), or null.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir at order:42 --seq 3
  eventdir at order:42 --time 2026-11-23T12:00:00Z
  eventdir at order:42 --seq 0 --with-schema | jq .schema_document.state.json_schema
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
    /// Add the schema document's state at the event's stamp
    #[arg(long)]
    with_schema: bool,
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
            print(&mut out, &folder, &doc, &state, args.with_schema)?;
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
                    Ok(Some(state)) => print(&mut out, &folder, &doc, &state, args.with_schema)?,
                    Ok(None) | Err(Error::NoSuchPoint { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::Success)
}

/// Prints a state, with the schema document's state at its stamp when asked.
fn print(
    out: &mut Output,
    folder: &Folder,
    doc: &DocId,
    state: &DocState,
    with_schema: bool,
) -> Result<()> {
    if !with_schema {
        return out.json(&state.view(doc));
    }
    let schema_document = match (doc.schema_doc(), state.schema) {
        (Some(schema_doc), Some(stamp)) => {
            let schema = state::at(folder, &schema_doc, &Point::Seq(stamp))?.ok_or_else(|| {
                Error::NoSuchPoint {
                    doc: doc.to_string(),
                    reason: format!(
                        "its stamp {stamp} does not resolve: {schema_doc} does not exist"
                    ),
                }
            })?;
            serde_json::json!({"doc": schema_doc.as_str(), "seq": schema.seq, "state": schema.state})
        }
        _ => serde_json::Value::Null,
    };
    let mut value = serde_json::to_value(state.view(doc)).expect("a view serialises");
    value["schema_document"] = schema_document;
    out.json(&value)
}
