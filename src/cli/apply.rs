use std::path::PathBuf;

use super::exit_codes;
use super::stdin_lines::StdinLines;
use crate::apply::Applier;
use crate::exit_code::ExitCode;
use crate::{Error, Result};

/// Build or update a one-way replica from an export stream on stdin.
///
/// Reads `eventdir export` (or `eventdir tail`) lines. Each event is accepted only if it
/// continues its stream's chain exactly (next seq, previous hash); events the replica already
/// holds are skipped, so re-sending is harmless. Lines are applied in batches of what is
/// available on stdin (each stream in one write; an fsync each, or one syncfs for a batch of
/// many streams), so a pipe from `tail --follow` is applied as it arrives. A batch's schema
/// streams are made durable before its documents are written, so a stamp always resolves,
/// even in a replica that a failure or a crash cut short. A fork or a gap refuses that
/// stream's events of the batch and the rest of the input for that stream, nothing of it is
/// written, and the command exits 4; other streams still apply. DIR is created as a replica
/// of the stream's origin (marked in its manifest with "replica_of"); `append` to a replica
/// is refused. Prints one JSON summary: applied, skipped, refused.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir -C shop export | eventdir apply /srv/replica
  eventdir -C shop export --cursor ship.cursor | ssh backup eventdir apply /srv/replica
  eventdir -C shop tail --follow | eventdir apply /srv/replica

", exit_codes!()))]
pub struct Args {
    /// The replica folder (created when missing or empty)
    dir: PathBuf,
}

/// The most lines applied in one batch.
const BATCH_LINES: usize = 10_000;
/// The longest export line accepted: an event line of the largest size a folder may allow.
const MAX_LINE: usize = 1 << 30;

pub fn run(args: Args, _context: &super::Context) -> Result<ExitCode> {
    let mut applier = Applier::new(&args.dir)?;
    let mut input = StdinLines::spawn(MAX_LINE, BATCH_LINES, |line| line);
    let mut line_no = 1;
    let mut group = Vec::new();
    while input.next_group(BATCH_LINES, &mut group) {
        let mut lines = Vec::with_capacity(group.len());
        for (i, line) in group.drain(..).enumerate() {
            let what = format!("stdin line {}", line_no + i as u64);
            let line = line.map_err(|reason| Error::input(&what, reason))?;
            lines
                .push(String::from_utf8(line).map_err(|_| Error::input(&what, "not valid UTF-8"))?);
        }
        applier.apply_batch(&lines, line_no)?;
        line_no += lines.len() as u64;
    }
    applier.finish()?;
    let mut out = super::output::Output::new();
    out.json(&applier.summary)?;
    out.flush()?;
    if !applier.summary.refused.is_empty() {
        for refusal in &applier.summary.refused {
            eprintln!("eventdir: {}: refused: {}", refusal.doc, refusal.reason);
        }
        return Ok(ExitCode::Integrity);
    }
    Ok(ExitCode::Success)
}
