use serde_json::Value;

use super::{Context, exit_codes, read_value};
use crate::append::{Action, Expect, Request, append};
use crate::exit_code::ExitCode;
use crate::{DocId, Error, Result, json, patch, state};

/// Append one event to a document and print the stored event as one JSON line.
///
/// The event is durable (fsynced) before it is printed. --type can be left out: --data means
/// create, --patch or --set mean update. A refused request writes nothing.
///
/// When the document's type has a schema (`eventdir schema set`), the new state must conform
/// to it. An update to a document written under an older schema version first appends a
/// `migrate` event (the effect of the migrations in between, as a JSON Patch), so two lines
/// are printed: the migrate event, then the update.
///
/// With --batch, stdin holds one request per line: {"doc": "order:1", "type": "update",
/// "data": [...], "expect": 7, "meta": {...}} — "data" is the state for create and the patch
/// for update, "set" (an object of FIELD: VALUE) may replace the patch, "type" may be left out
/// as with the options, "expect" is a seq, "none" or "any". Requests are committed in groups
/// of whatever input is available: each stream touched gets one write and one fsync per group,
/// so a firehose is committed in large groups and a line-at-a-time pipe line by line, without
/// waiting for more input. One result line per request, in order, printed once its event is
/// durable: the stored event (for a request that also migrated the document, the requested
/// event), or {"error": {"code": N, "message": "..."}, "line": N} for a refused request, which
/// writes nothing while the other requests still apply. Exits with the code of the first
/// refused request, or 0.
///
/// The documents a group writes stay locked until it is durable; a long batch releases them
/// about once a second, so another writer waits about that long at most. Should making a group
/// durable fail (an I/O error), its requests fail with that error and their lines are cut
/// back off, as are those of the requests after them on the same documents.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir append order:42 --data '{\"status\":\"open\",\"qty\":1}'
  eventdir append order:42 --set status=paid --set /items/0/qty=2 --expect 0
  eventdir append order:42 --patch '[{\"op\":\"remove\",\"path\":\"/qty\"}]'
  eventdir append order:42 --type delete --meta '{\"actor\":\"alice\"}'
  echo '{\"text\":\"hello\"}' | eventdir append note:1 --data -
  printf '%s\\n' '{\"doc\":\"order:1\",\"data\":{\"qty\":1}}' '{\"doc\":\"order:1\",\"set\":{\"qty\":2}}' | eventdir append --batch

", exit_codes!()))]
pub struct Args {
    /// The document, TYPE:ID (e.g. order:42)
    #[arg(required_unless_present = "batch")]
    doc: Option<String>,

    /// Read many requests from stdin, one JSON object a line, and print one result line each
    /// (see DESCRIPTION)
    #[arg(long, conflicts_with_all = ["doc", "kind", "data", "patch", "set", "expect", "meta"])]
    batch: bool,

    /// What the event does
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    kind: Option<Kind>,

    /// The whole state of a new (or deleted) document, a JSON object; '-' reads stdin
    #[arg(long, value_name = "JSON", conflicts_with_all = ["patch", "set"])]
    data: Option<String>,

    /// An RFC 6902 JSON Patch to apply to the current state; '-' reads stdin
    #[arg(long, value_name = "JSON", conflicts_with = "set")]
    patch: Option<String>,

    /// Set FIELD (a member name, or a JSON Pointer such as /a/b) to VALUE (JSON, or else taken
    /// as a string); repeatable
    #[arg(long, value_name = "FIELD=VALUE")]
    set: Vec<String>,

    /// Append only if the document's last seq is N; 'none': only if it has no events
    #[arg(long, value_name = "N|none|any")]
    expect: Option<String>,

    /// A JSON object stored with the event: actor, correlation id, domain event name...
    #[arg(long, value_name = "JSON")]
    meta: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Start the document (or restart a deleted one) with --data
    Create,
    /// Change the document with --patch or --set
    Update,
    /// Mark the document deleted; its history stays
    Delete,
}

pub fn run(args: Args, context: &Context) -> Result<ExitCode> {
    let folder = context.open()?;
    if args.batch {
        return super::batch::run(&folder);
    }
    let request = resolve(&args, folder.max_event_bytes())?;
    let appended = append(&folder, &request)?;
    if let Some(bytes) = appended.repaired_tail {
        eprintln!(
            "eventdir: {}: removed a torn tail of {bytes} bytes left by an append that never finished",
            request.doc
        );
    }
    let mut out = super::output::Output::new();
    for event in &appended.events {
        out.line(&event.line)?;
    }
    out.flush()?;
    Ok(ExitCode::Success)
}

/// Turns the arguments into a validated request, before any file is touched.
fn resolve(args: &Args, limit: usize) -> Result<Request> {
    let doc = DocId::parse_writable(
        args.doc
            .as_deref()
            .expect("clap requires DOC without --batch"),
    )?;
    let expect = Expect::parse(args.expect.as_deref().unwrap_or("any"))?;
    let meta = args
        .meta
        .as_deref()
        .map(|text| {
            let meta = json::parse_strict(&read_value(text, "--meta", limit)?, "--meta")?;
            if !meta.is_object() {
                return Err(Error::input("--meta", "must be a JSON object"));
            }
            Ok(meta)
        })
        .transpose()?;
    let kind = match (args.kind, &args.data, &args.patch, args.set.is_empty()) {
        (Some(kind), ..) => kind,
        (None, Some(_), _, _) => Kind::Create,
        (None, None, Some(_), _) | (None, None, None, false) => Kind::Update,
        (None, None, None, true) => {
            return Err(Error::input(
                "append",
                "nothing to append: give --data, --patch, --set or --type delete",
            ));
        }
    };
    let action = match kind {
        Kind::Create => {
            let text = args
                .data
                .as_deref()
                .ok_or_else(|| Error::input("--type create", "needs --data"))?;
            let data = json::parse_strict(&read_value(text, "--data", limit)?, "--data")?;
            state::check_new_state(&data, "--data")?;
            Action::Create(data)
        }
        Kind::Update => {
            let patch = match &args.patch {
                Some(text) => {
                    let value =
                        json::parse_strict(&read_value(text, "--patch", limit)?, "--patch")?;
                    patch::parse(value, "--patch")?
                }
                None if !args.set.is_empty() => patch::from_sets(&parse_sets(&args.set)?)?,
                None => return Err(Error::input("--type update", "needs --patch or --set")),
            };
            Action::Update(patch)
        }
        Kind::Delete => {
            if args.data.is_some() || args.patch.is_some() || !args.set.is_empty() {
                return Err(Error::input(
                    "--type delete",
                    "takes no --data, --patch or --set",
                ));
            }
            Action::Delete
        }
    };
    if kind != Kind::Create && args.data.is_some() {
        return Err(Error::input(
            "--data",
            "only goes with --type create (use --patch or --set to update)",
        ));
    }
    Ok(Request {
        doc,
        action,
        expect,
        meta,
        payload: None,
    })
}

/// Parses `FIELD=VALUE` pairs; VALUE is JSON when it parses as JSON, else a string.
fn parse_sets(sets: &[String]) -> Result<Vec<(String, Value)>> {
    sets.iter()
        .map(|set| {
            let (field, value) = set
                .split_once('=')
                .ok_or_else(|| Error::input("--set", format!("{set:?} is not FIELD=VALUE")))?;
            if field.is_empty() {
                return Err(Error::input("--set", format!("{set:?} has an empty FIELD")));
            }
            if !may_start_json(value) {
                return Ok((field.to_string(), Value::String(value.to_string())));
            }
            let value = match json::parse_strict(value.as_bytes(), "--set VALUE") {
                Ok(value) => value,
                // JSON that breaks eventdir's rules (duplicate keys, too deep) is refused
                // rather than quietly stored as a string.
                Err(e) if is_json_syntax(value) => return Err(e),
                Err(_) => Value::String(value.to_string()),
            };
            Ok((field.to_string(), value))
        })
        .collect()
}

/// Whether `text` can begin a JSON text: after JSON's whitespace, a byte that starts a value.
/// One that cannot (`paid`, ``) is a string without a try of the parser, whose error costs a
/// one-off CPU feature probe (`cpuid`, which traps in a virtual machine) to place its column.
fn may_start_json(text: &str) -> bool {
    text.bytes()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|b| {
            matches!(
                b,
                b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
            )
        })
}

/// Whether `text` is JSON by syntax alone (nesting too deep to parse counts as JSON).
fn is_json_syntax(text: &str) -> bool {
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => true,
        Err(e) => e.to_string().starts_with("recursion limit exceeded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_kind_of_json_value_may_start_json() {
        for text in [
            "1", "-1", "\"a\"", "true", "false", "null", "[]", "{}", " 1", "\n{}",
        ] {
            assert!(may_start_json(text), "{text:?}");
        }
        for text in ["", "  ", "paid", "x=1", "+1", ".5", "'a'", "N"] {
            assert!(!may_start_json(text), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn a_text_that_cannot_start_json_never_parses(text in "[ \t\r\n]{0,2}.{0,12}") {
            if !may_start_json(&text) {
                prop_assert!(serde_json::from_str::<serde::de::IgnoredAny>(&text).is_err());
            }
        }
    }
}
