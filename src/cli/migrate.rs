use std::collections::HashSet;

use super::{Context, exit_codes};
use crate::exit_code::ExitCode;
use crate::{DocId, Error, Result};

/// Bring documents up to their type's current schema, one `migrate` event each.
///
/// Each TYPE stands for every document of that type; without arguments, every document of
/// every type that has a schema. Prints one JSON line per document: result is "migrated"
/// (with seq, the migrate event's), "current" (nothing to do), "deleted" (left alone) or
/// "failed" (with reason; nothing was written for that document, and the others go on).
/// Exits 2 when any document failed. Documents are migrated in groups of up to 2 000, locked
/// together and made durable by one sync before their lines are printed: a run cut short
/// leaves the documents it printed migrated, and a re-run does the rest.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir migrate
  eventdir migrate order
  eventdir migrate order:42 order:43
  eventdir migrate order | jq -c 'select(.result == \"failed\")'

", exit_codes!()))]
pub struct Args {
    /// Document types and documents (TYPE or TYPE:ID) [default: every document with a schema]
    #[arg(value_name = "TYPE|DOC")]
    targets: Vec<String>,
}

pub fn run(args: Args, context: &Context) -> Result<ExitCode> {
    let mut kinds = Vec::new();
    let mut named = Vec::new();
    for target in &args.targets {
        if target.contains(':') {
            named.push(DocId::parse_writable(target)?);
        } else {
            super::schema::schema_doc(target)?;
            kinds.push(target.clone());
        }
    }
    let folder = context.open()?;
    let all = args.targets.is_empty();
    // Named documents first, then those of the types, each once: a set, as a type may have a
    // million documents.
    let named_set: HashSet<DocId> = named.iter().cloned().collect();
    let mut docs = named;
    if all || !kinds.is_empty() {
        for doc in folder.documents()? {
            let wanted = if all {
                doc.kind() != crate::doc_id::SYS_TYPE
            } else {
                kinds.iter().any(|k| k == doc.kind())
            };
            if wanted && !named_set.contains(&doc) {
                docs.push(doc);
            }
        }
    }
    let mut out = super::output::Output::new();
    let failed = crate::migrate::migrate(&folder, &docs, &mut |outcome| {
        if all && outcome.from.is_none() && outcome.result == "current" {
            return Ok(()); // a type without a schema: nothing to report
        }
        out.json(&outcome)
    })?;
    out.flush()?;
    if failed > 0 {
        return Err(Error::input(
            "migrate",
            format!("{failed} document(s) could not be migrated; see their lines on stdout"),
        ));
    }
    Ok(ExitCode::Success)
}
