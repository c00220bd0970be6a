use std::path::PathBuf;

use super::{Context, exit_codes};
use crate::Result;
use crate::exit_code::ExitCode;
use crate::folder::{DEFAULT_MAX_EVENT_BYTES, Folder};

/// Create a folder: a directory with a manifest (eventdir.json) and an empty streams/ directory.
///
/// Prints the manifest as one JSON line. DIR is created if missing; a directory that already is
/// a folder is refused.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir init shop
  eventdir -C /srv/records init
  eventdir init big --max-event-bytes 104857600

", exit_codes!()))]
pub struct Args {
    /// The directory to initialise [default: -C DIR, or the current directory]
    dir: Option<PathBuf>,

    /// The longest event line the folder stores, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_EVENT_BYTES)]
    max_event_bytes: u64,
}

pub fn run(args: Args, context: &Context) -> Result<ExitCode> {
    let dir = args
        .dir
        .unwrap_or_else(|| context.folder_dir().to_path_buf());
    let folder = Folder::init(&dir, args.max_event_bytes)?;
    let mut out = super::output::Output::new();
    out.json(folder.manifest())?;
    out.flush()?;
    Ok(ExitCode::Success)
}
