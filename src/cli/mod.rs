//! The command line: clap definitions and one small file per subcommand. Each subcommand turns
//! its arguments into engine calls and prints JSON or NDJSON on stdout; messages go to stderr.

mod append;
mod apply;
mod at;
mod batch;
mod clone;
mod export;
mod get;
mod init;
mod log;
mod ls;
mod migrate;
mod output;
mod parse;
mod replay;
mod schema;
mod stdin_lines;
mod tail;
mod verify;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::exit_code::ExitCode;
use crate::{DocId, Error, Folder, Result};

/// The exit-code table shown at the end of every command's help and man page.
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0  success
  1  failure of the environment (I/O error, not a folder, newer format)
  2  bad input or usage; nothing was written
  3  an --expect precondition did not hold; nothing was written
  4  integrity failure (hash chain, sequence, digest or checkpoint)
  5  no such document, seq or instant"
    };
}
pub(crate) use exit_codes;

/// Keep data as hash-chained streams of immutable JSON events in a plain folder.
///
/// Every document (TYPE:ID, e.g. order:42) is one append-only NDJSON file of events. Each event
/// carries a SHA-256 hash over the previous one, so `eventdir verify` finds any change, and the
/// state at any seq or instant can be rebuilt by folding the events in order.
#[derive(Parser, Debug)]
#[command(name = "eventdir", version, max_term_width = 100)]
#[command(after_help = concat!("Examples:
  eventdir init shop && cd shop
  eventdir append order:42 --data '{\"status\":\"open\",\"qty\":1}'
  eventdir append order:42 --set status=paid --expect 0
  eventdir get order:42
  eventdir at order:42 --seq 0
  eventdir verify

", exit_codes!()))]
pub struct Cli {
    #[command(flatten)]
    globals: Globals,

    #[command(subcommand)]
    command: Command,
}

/// The options of every subcommand.
#[derive(clap::Args, Debug)]
struct Globals {
    /// The folder to work in [default: the current directory]
    #[arg(
        short = 'C',
        long = "folder",
        global = true,
        env = "EVENTDIR_FOLDER",
        value_name = "DIR"
    )]
    folder: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    Init(init::Args),
    Append(append::Args),
    Get(get::Args),
    Log(log::Args),
    Replay(replay::Args),
    At(at::Args),
    Ls(ls::Args),
    Verify(verify::Args),
    Schema(schema::Args),
    Migrate(migrate::Args),
    Clone(clone::Args),
    Export(export::Args),
    Apply(apply::Args),
    Tail(tail::Args),
}

/// What every subcommand gets: the folder option.
pub struct Context {
    folder: Option<PathBuf>,
}

impl Context {
    /// The directory chosen with -C / EVENTDIR_FOLDER, or the current directory.
    pub fn folder_dir(&self) -> &Path {
        self.folder.as_deref().unwrap_or(Path::new("."))
    }

    /// Opens the chosen folder.
    pub fn open(&self) -> Result<Folder> {
        Folder::open(self.folder_dir())
    }
}

/// The clap definition of the whole command line (also used to generate the man pages).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match parse::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let context = Context {
        folder: cli.globals.folder,
    };
    let result = match cli.command {
        Command::Init(args) => init::run(args, &context),
        Command::Append(args) => append::run(args, &context),
        Command::Get(args) => get::run(args, &context),
        Command::Log(args) => log::run(args, &context),
        Command::Replay(args) => replay::run(args, &context),
        Command::At(args) => at::run(args, &context),
        Command::Ls(args) => ls::run(args, &context),
        Command::Verify(args) => verify::run(args, &context),
        Command::Schema(args) => schema::run(args, &context),
        Command::Migrate(args) => migrate::run(args, &context),
        Command::Clone(args) => clone::run(args, &context),
        Command::Export(args) => export::run(args, &context),
        Command::Apply(args) => apply::run(args, &context),
        Command::Tail(args) => tail::run(args, &context),
    };
    match result {
        Ok(code) => code,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::Success,
        Err(e) => {
            eprintln!("eventdir: {e}");
            ExitCode::of(&e)
        }
    }
}

/// Prints a clap error as one line (help and version print as usual).
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::BadInput
        } else {
            ExitCode::Success
        };
    }
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid usage");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("eventdir: {first} (see `eventdir --help`)");
    ExitCode::BadInput
}

/// Parses each document argument.
pub fn parse_docs(texts: &[String]) -> Result<Vec<DocId>> {
    texts.iter().map(|t| DocId::parse(t)).collect()
}

/// Reads an option's value, or stdin when it is `-`, refusing more than `limit` bytes.
pub fn read_value(value: &str, what: &str, limit: usize) -> Result<Vec<u8>> {
    if value != "-" {
        return Ok(value.as_bytes().to_vec());
    }
    use std::io::Read;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::input(what, format!("cannot read stdin: {e}")))?;
    if bytes.len() > limit {
        return Err(Error::input(
            what,
            format!("stdin holds more than the folder's limit of {limit} bytes"),
        ));
    }
    Ok(bytes)
}
