use serde::Serialize;

use super::{Context, exit_codes};
use crate::append::{Action, Expect, Request, append};
use crate::exit_code::ExitCode;
use crate::{DocId, Error, Result, state};

/// Bring documents up to their type's current schema, one `migrate` event each.
///
/// Each TYPE stands for every document of that type; without arguments, every document of
/// every type that has a schema. Prints one JSON line per document: result is "migrated"
/// (with seq, the migrate event's), "current" (nothing to do), "deleted" (left alone) or
/// "failed" (with reason; nothing was written for that document, and the others go on).
/// Exits 2 when any document failed.
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

#[derive(Serialize)]
struct Outcome {
    doc: String,
    result: &'static str,
    from: Option<u64>,
    to: Option<u64>,
    seq: Option<u64>,
    reason: Option<String>,
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
    let mut docs = named;
    if all || !kinds.is_empty() {
        for doc in folder.documents()? {
            let wanted = if all {
                doc.kind() != crate::doc_id::SYS_TYPE
            } else {
                kinds.iter().any(|k| k == doc.kind())
            };
            if wanted && !docs.contains(&doc) {
                docs.push(doc);
            }
        }
    }
    let mut out = super::output::Output::new();
    let mut failed = 0;
    for doc in docs {
        let before = state::current(&folder, &doc)?.ok_or_else(|| Error::NotFound {
            doc: doc.to_string(),
        })?;
        let mut outcome = Outcome {
            doc: doc.to_string(),
            result: "current",
            from: before.schema,
            to: before.schema,
            seq: None,
            reason: None,
        };
        if before.deleted {
            outcome.result = "deleted";
        } else {
            let request = Request {
                doc: doc.clone(),
                action: Action::Migrate,
                expect: Expect::Any,
                meta: None,
                payload: None,
            };
            match append(&folder, &request) {
                Ok(appended) => {
                    if let Some(event) = appended.events.last() {
                        outcome.result = "migrated";
                        outcome.to = event.schema;
                        outcome.seq = Some(event.seq);
                    }
                }
                Err(e) if crate::exit_code::ExitCode::of(&e) == ExitCode::BadInput => {
                    failed += 1;
                    outcome.result = "failed";
                    outcome.reason = Some(e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        if all && outcome.from.is_none() && outcome.result == "current" {
            continue; // a type without a schema: nothing to report
        }
        out.json(&outcome)?;
    }
    out.flush()?;
    if failed > 0 {
        return Err(Error::input(
            "migrate",
            format!("{failed} document(s) could not be migrated; see their lines on stdout"),
        ));
    }
    Ok(ExitCode::Success)
}
