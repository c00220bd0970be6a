use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use super::{Context, exit_codes, read_value};
use crate::append::{Action, Expect, Request, append};
use crate::doc_id::SCHEMA_PREFIX;
use crate::exit_code::ExitCode;
use crate::state::{self, DocState, Point};
use crate::stream::StreamReader;
use crate::{DocId, Error, Folder, Result, json, patch, schema};

/// Manage the schema of a document type: a document `sys:schema:TYPE` whose versions are its
/// events.
///
/// Every event appended to a document of TYPE is stamped with the seq of the schema version in
/// effect, validated against it (JSON Schema, draft 2020-12), and migrated first when the
/// document was written under an older version.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir schema set order order-schema.json
  eventdir schema show order
  eventdir schema show order --seq 0
  eventdir schema log order

", exit_codes!()))]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    Set(SetArgs),
    Show(ShowArgs),
    Log(LogArgs),
}

/// Append a new version of TYPE's schema and print it as one JSON line.
///
/// FILE holds {"json_schema": {...}, "migration": [...]}: a JSON Schema (draft 2020-12) for
/// documents of TYPE, and the steps that bring a document written under the previous version
/// to this one. Each step is a no-op where it does not apply:
/// {"op":"rename","from":"/qty","to":"/quantity"} (fails if the target exists),
/// {"op":"remove","path":"/legacy"}, {"op":"default","path":"/currency","value":"EUR"} (only
/// where absent), {"op":"remap","path":"/status","values":{"open":"active"}} (strings listed
/// in values are replaced). An invalid schema or step is refused and nothing is written; a
/// definition identical to the current version writes nothing either.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir schema set order order-v2.json
  echo '{\"json_schema\":{\"type\":\"object\",\"required\":[\"status\"]}}' | eventdir schema set order -

", exit_codes!()))]
struct SetArgs {
    /// The document type the schema governs
    #[arg(value_name = "TYPE")]
    kind: String,
    /// The file holding the definition; '-' reads stdin
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Print one version of TYPE's schema as one JSON line (the current one by default).
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir schema show order
  eventdir schema show order --seq 0 | jq .json_schema

", exit_codes!()))]
struct ShowArgs {
    /// The document type
    #[arg(value_name = "TYPE")]
    kind: String,
    /// The version: the seq of the schema document's event
    #[arg(long, value_name = "SEQ")]
    seq: Option<u64>,
}

/// Print every version of TYPE's schema, one JSON line each, oldest first.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir schema log order
  eventdir schema log order | jq -c '[.seq, .migration]'

", exit_codes!()))]
struct LogArgs {
    /// The document type
    #[arg(value_name = "TYPE")]
    kind: String,
}

/// One schema version as printed.
#[derive(Serialize)]
struct View<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    seq: u64,
    timestamp: &'a str,
    hash: String,
    json_schema: &'a Value,
    migration: &'a Value,
}

fn view<'a>(kind: &'a str, state: &'a DocState) -> View<'a> {
    static EMPTY: Value = Value::Null;
    View {
        kind,
        seq: state.seq,
        timestamp: &state.timestamp,
        hash: crate::event::encode_hex(state.hash),
        json_schema: state.state.get("json_schema").unwrap_or(&EMPTY),
        migration: state.state.get("migration").unwrap_or(&EMPTY),
    }
}

/// The schema document of `kind`, after checking that `kind` is a type documents can have.
pub fn schema_doc(kind: &str) -> Result<DocId> {
    let probe = DocId::parse(&format!("{kind}:x"))
        .map_err(|_| Error::input("TYPE", format!("{kind:?} is not a document type")))?;
    if probe.kind() != kind || kind == crate::doc_id::SYS_TYPE {
        return Err(Error::input(
            "TYPE",
            format!("{kind:?} is not a document type"),
        ));
    }
    DocId::parse(&format!("{SCHEMA_PREFIX}{kind}"))
}

pub fn run(args: Args, context: &Context) -> Result<ExitCode> {
    match args.command {
        Command::Set(args) => set(args, context),
        Command::Show(args) => show(args, context),
        Command::Log(args) => log(args, context),
    }
}

fn set(args: SetArgs, context: &Context) -> Result<ExitCode> {
    let doc = schema_doc(&args.kind)?;
    let folder = context.open()?;
    let limit = folder.max_event_bytes();
    let bytes = if args.file.as_os_str() == "-" {
        read_value("-", "schema", limit)?
    } else {
        std::fs::read(&args.file).map_err(Error::io("read", &args.file))?
    };
    let definition =
        schema::check_definition(json::parse_strict(&bytes, "the schema definition")?)?;
    // The new version is a patch against the current one; --expect makes a concurrent
    // `schema set` lose cleanly, and then this one starts over from the version that won.
    let appended = loop {
        let request = match state::current(&folder, &doc)? {
            Some(current) if !current.deleted => {
                if current.state == definition {
                    eprintln!(
                        "eventdir: {doc}: unchanged; the current version is seq {}",
                        current.seq
                    );
                    print_version(&folder, &doc, &args.kind, Some(current.seq))?;
                    return Ok(ExitCode::Success);
                }
                let diff = serde_json::to_value(json_patch::diff(&current.state, &definition))
                    .expect("a patch serialises");
                let action = Action::Update(patch::parse(diff, "schema")?);
                Request {
                    doc: doc.clone(),
                    action,
                    expect: Expect::Seq(current.seq),
                    meta: None,
                    payload: None,
                }
            }
            Some(current) => Request {
                doc: doc.clone(),
                action: Action::Create(definition.clone()),
                expect: Expect::Seq(current.seq),
                meta: None,
                payload: None,
            },
            None => Request {
                doc: doc.clone(),
                action: Action::Create(definition.clone()),
                expect: Expect::NoStream,
                meta: None,
                payload: None,
            },
        };
        match append(&folder, &request) {
            Err(Error::ExpectFailed { .. }) => continue,
            other => break other?,
        }
    };
    let seq = appended.events.last().map(|e| e.seq);
    print_version(&folder, &doc, &args.kind, seq)
}

fn print_version(folder: &Folder, doc: &DocId, kind: &str, seq: Option<u64>) -> Result<ExitCode> {
    let state = match seq {
        Some(seq) => state::at(folder, doc, &Point::Seq(seq))?,
        None => state::current(folder, doc)?,
    };
    let state = state.ok_or_else(|| no_schema(kind))?;
    let mut out = super::output::Output::new();
    out.json(&view(kind, &state))?;
    out.flush()?;
    Ok(ExitCode::Success)
}

fn no_schema(kind: &str) -> Error {
    Error::NoSuchPoint {
        doc: format!("{SCHEMA_PREFIX}{kind}"),
        reason: format!(
            "the type {kind:?} has no schema (set one with `eventdir schema set {kind} FILE`)"
        ),
    }
}

fn show(args: ShowArgs, context: &Context) -> Result<ExitCode> {
    let doc = schema_doc(&args.kind)?;
    let folder = context.open()?;
    print_version(&folder, &doc, &args.kind, args.seq)
}

fn log(args: LogArgs, context: &Context) -> Result<ExitCode> {
    let doc = schema_doc(&args.kind)?;
    let folder = context.open()?;
    let mut reader = StreamReader::open(&folder, &doc)?
        .ok_or_else(|| no_schema(&args.kind))?
        .folding();
    let mut state = DocState::empty();
    let mut out = super::output::Output::new();
    while let Some(event) = reader.next_event()? {
        state.apply_from(&event, reader.path(), &doc)?;
        out.json(&view(&args.kind, &state))?;
    }
    out.flush()?;
    Ok(ExitCode::Success)
}
