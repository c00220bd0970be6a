use super::{Context, exit_codes};
use crate::exit_code::ExitCode;
use crate::schema::History;
use crate::stream::read_tail;
use crate::{DocId, Error, Folder, Result, io as fsio, state};

/// Print a document's current state as one JSON line.
///
/// The line holds doc, seq (of the last event), timestamp, schema (stamp), deleted, hash (of
/// the last event) and state (always an object; a deleted document keeps its last state).
/// Reading never writes: when the document was written under an older version of its type's
/// schema, get says so on stderr and prints the stored state; --migrated prints the state the
/// migrations would produce (with "migrated_from", the old stamp) without writing it.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir get order:42
  eventdir get order:42 | jq .state.status
  eventdir get order:42 --migrated

", exit_codes!()))]
pub struct Args {
    /// The document, TYPE:ID
    doc: String,
    /// Show the state migrated to the current schema (nothing is written)
    #[arg(long)]
    migrated: bool,
}

pub fn run(args: Args, context: &Context) -> Result<ExitCode> {
    let doc = DocId::parse(&args.doc)?;
    let folder = context.open()?;
    let mut state = state::current(&folder, &doc)?.ok_or_else(|| Error::NotFound {
        doc: doc.to_string(),
    })?;
    let mut out = super::output::Output::new();
    let current = current_schema(&folder, &doc)?;
    let lags = current.is_some() && current != state.schema && !state.deleted;
    if lags && args.migrated {
        let history = History::load(&folder, doc.kind())?.expect("the schema stream has events");
        let to = history.current().seq;
        let migrated = history
            .migrate(&state.state, state.schema, to)
            .map_err(|reason| Error::MigrationFailed {
                doc: doc.to_string(),
                reason,
            })?;
        let from = state.schema;
        state.state = migrated;
        state.schema = Some(to);
        let mut value = serde_json::to_value(state.view(&doc)).expect("a view serialises");
        value["migrated_from"] = serde_json::json!(from);
        out.json(&value)?;
    } else {
        if lags {
            let stamp = state
                .schema
                .map_or("no schema".to_string(), |s| format!("schema seq {s}"));
            eprintln!(
                "eventdir: {doc} was written under {stamp}; the current schema of {} is seq {} (`eventdir get --migrated` shows it migrated, `eventdir migrate {doc}` stores that)",
                doc.kind(),
                current.expect("lagging implies a schema")
            );
        }
        out.json(&state.view(&doc))?;
    }
    out.flush()?;
    Ok(ExitCode::Success)
}

/// The seq of the current schema version of `doc`'s type, if it has a schema.
pub fn current_schema(folder: &Folder, doc: &DocId) -> Result<Option<u64>> {
    let Some(schema_doc) = doc.schema_doc() else {
        return Ok(None);
    };
    let path = folder.stream_path(&schema_doc);
    let Some(file) = fsio::open_read(&path)? else {
        return Ok(None);
    };
    Ok(
        read_tail(&file, &path, &schema_doc, folder.max_event_bytes())?
            .last
            .map(|e| e.seq),
    )
}
