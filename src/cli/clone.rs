use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::exit_codes;
use crate::clone::{Progress, clone};
use crate::exit_code::ExitCode;
use crate::{Folder, Result};

/// Copy a whole folder, consistently and verified, while writers go on.
///
/// Each stream is copied up to the length it had when the clone recorded it (document streams
/// recorded before schema streams, and schema streams copied before document streams, so every
/// stamp in the copy resolves in the copy, even in one cut short), and every copied line is
/// checked against the hash chain. Run again onto an earlier clone, only new events are
/// copied, after checking that the clone's last event of each stream is the source's. A DST
/// that diverged (a different event at a seq both have, or more events than SRC) is refused
/// with exit 4 and nothing in it changes; a DST that is not empty and not an earlier clone of
/// SRC is refused with exit 2. DST is made durable (syncfs) before the summary is printed: one
/// JSON line with the copy's digest, streams, events, bytes, what this run copied, and seconds.
/// An interrupted clone leaves a valid clone of an earlier moment, which a re-run completes.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir clone shop /backup/shop
  eventdir clone shop /backup/shop | jq .digest

", exit_codes!()))]
pub struct Args {
    /// The folder to copy
    src: PathBuf,
    /// The copy: a new or empty directory, or an earlier clone of SRC
    dst: PathBuf,
}

pub fn run(args: Args, _context: &super::Context) -> Result<ExitCode> {
    let src = Folder::open(&args.src)?;
    let mut bar = ProgressBar::new();
    let summary = clone(&src, &args.dst, &mut |p| bar.show(p));
    bar.clear();
    let summary = summary?;
    let mut out = super::output::Output::new();
    out.json(&summary)?;
    out.flush()?;
    Ok(ExitCode::Success)
}

/// A one-line progress display on stderr, only when stderr is a terminal.
struct ProgressBar {
    enabled: bool,
    last: Option<Instant>,
}

impl ProgressBar {
    fn new() -> ProgressBar {
        ProgressBar {
            enabled: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    fn show(&mut self, p: &Progress) {
        if !self.enabled
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
                && p.streams_done < p.streams_total
        {
            return;
        }
        self.last = Some(Instant::now());
        let width: u64 = 30;
        let filled = (p.streams_done * width)
            .checked_div(p.streams_total)
            .unwrap_or(width);

        let bar: String = (0..width)
            .map(|i| if i < filled { '#' } else { '.' })
            .collect();
        let mib = p.bytes_copied as f64 / (1024.0 * 1024.0);
        eprint!(
            "\r[{bar}] {}/{} streams, {mib:.1} MiB copied",
            p.streams_done, p.streams_total
        );
        let _ = std::io::stderr().flush();
    }

    fn clear(&self) {
        if self.enabled && self.last.is_some() {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}
