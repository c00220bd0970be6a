use super::{Context, exit_codes, parse_docs};
use crate::exit_code::ExitCode;
use crate::read_ahead::FoldReader;
use crate::state::DocState;
use crate::stream::StreamReader;
use crate::{DocId, Error, Folder, Result};

/// Fold documents from seq 0 and print their states, one JSON line per document.
///
/// Without DOC, every document of the folder (or of --type) in id order. With --each, one line
/// per event: the state after it. Each line has the shape `eventdir get` prints.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir replay order:42
  eventdir replay order:42 --each | jq -c '[.seq, .state.status]'
  eventdir replay --type order

", exit_codes!()))]
pub struct Args {
    /// Documents to replay [default: all]
    docs: Vec<String>,
    /// Only documents of this TYPE
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// Print the state after every event, not only the last
    #[arg(long)]
    each: bool,
}

pub fn run(args: Args, context: &Context) -> Result<ExitCode> {
    let named = parse_docs(&args.docs)?;
    let folder = context.open()?;
    let docs = select(&folder, named, args.kind.as_deref())?;
    let mut out = super::output::Output::new();
    for doc in &docs {
        let Some(reader) = StreamReader::open(&folder, doc)?.map(StreamReader::folding) else {
            return Err(Error::NotFound {
                doc: doc.to_string(),
            });
        };
        // Only a guess at how much there is to read, to decide whether to read ahead.
        let len = std::fs::metadata(reader.path()).map_or(0, |m| m.len());
        let mut reader = FoldReader::new(reader, len);
        let mut state: Option<DocState> = None;
        reader.for_each(|event, path| {
            let current = state.get_or_insert_with(DocState::empty);
            current.apply_from(event, path, doc)?;
            if args.each {
                out.json(&current.view(doc))?;
            }
            Ok(())
        })?;
        match state {
            Some(state) if !args.each => out.json(&state.view(doc))?,
            Some(_) => {}
            None => {
                return Err(Error::NotFound {
                    doc: doc.to_string(),
                });
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::Success)
}

/// The named documents, or every document (of `kind`, when given).
pub fn select(folder: &Folder, named: Vec<DocId>, kind: Option<&str>) -> Result<Vec<DocId>> {
    let docs = if named.is_empty() {
        folder.documents()?
    } else {
        named
    };
    Ok(docs
        .into_iter()
        .filter(|d| kind.is_none_or(|k| d.kind() == k))
        .collect())
}
