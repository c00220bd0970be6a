use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::Watcher;

use super::output::Output;
use super::{Context, exit_codes, parse_docs};
use crate::exit_code::ExitCode;
use crate::export::{Cursor, CursorEntry, Selection, export_line, read_new};
use crate::stream::read_tail;
use crate::{DocId, Folder, Result, io as fsio};

/// Print events as they are appended, across all streams, as export lines (NDJSON).
///
/// Without --from-cursor, tail starts at the current end of every stream (streams created
/// later are printed from their first event); with it, right after the events the cursor
/// file records (as written by `export --cursor`; the file is only read). Without --follow,
/// tail prints what is there and exits; with it, it waits for new events — woken by file-system
/// notifications, and checking every second in case one was missed — until SIGINT, SIGTERM or
/// a closed pipe, and always ends on a line boundary. Within one document events come in seq
/// order; across documents no order is promised, except that a schema event always comes
/// before the events stamped with it (so that `apply` builds a replica that verifies).
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir tail --follow
  eventdir tail --follow --type order | jq -c '[.doc, .seq, .type]'
  eventdir tail --from-cursor ship.cursor
  eventdir tail --follow | eventdir apply /srv/replica

", exit_codes!()))]
pub struct Args {
    #[command(flatten)]
    streams: super::export::StreamsArgs,
    /// Start after the events recorded in this cursor file
    #[arg(long, value_name = "FILE")]
    from_cursor: Option<PathBuf>,
    /// Keep waiting for new events
    #[arg(short = 'f', long)]
    follow: bool,
}

/// How often every stream is checked even without a notification.
const RESCAN: Duration = Duration::from_secs(1);

pub fn run(args: Args, context: &Context) -> Result<ExitCode> {
    let selection = Selection {
        kind: args.streams.kind.clone(),
        docs: parse_docs(&args.streams.docs)?,
        since: None,
        until: None,
    };
    let folder = context.open()?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| crate::Error::io("handle signals of", "eventdir")(e))?;
    }
    let mut positions: BTreeMap<DocId, CursorEntry> = match &args.from_cursor {
        Some(path) => Cursor::load(path, &folder)?
            .next
            .into_iter()
            .filter_map(|(doc, entry)| DocId::parse(&doc).ok().map(|d| (d, entry)))
            .collect(),
        None => current_ends(&folder, &selection)?,
    };
    // Notifications only say where to look sooner; the periodic rescan is what is relied on.
    let (sender, receiver) = mpsc::channel();
    let watcher = args
        .follow
        .then(|| notify::recommended_watcher(sender))
        .and_then(|w| w.ok());
    let _watcher = watcher.and_then(|mut w| {
        w.watch(&folder.streams_dir(), notify::RecursiveMode::Recursive)
            .ok()
            .map(|()| w)
    });
    let mut out = Output::new();
    let origin = folder.manifest().folder_id.clone();
    loop {
        let mut pass = Pass {
            folder: &folder,
            selection: &selection,
            origin: &origin,
            positions: &mut positions,
            out: &mut out,
        };
        for doc in selection.documents(&folder)? {
            pass.ship_new(&doc)?;
        }
        out.flush()?;
        if !args.follow || !wait(&receiver, &stop) {
            return Ok(ExitCode::Success);
        }
    }
}

/// One look at every selected stream.
struct Pass<'a> {
    folder: &'a Folder,
    selection: &'a Selection,
    origin: &'a str,
    positions: &'a mut BTreeMap<DocId, CursorEntry>,
    out: &'a mut Output,
}

impl Pass<'_> {
    /// Prints `doc`'s events after its position and moves the position on. A pass lists and
    /// reads the schema streams first, but a schema set and an append it stamps can both land
    /// after that and before the document is read: an event stamped with a schema event not
    /// printed yet has that schema stream's new events printed first, so that a consumer (an
    /// `apply`) meets every schema version before the events stamped with it.
    fn ship_new(&mut self, doc: &DocId) -> Result<()> {
        let from = self.positions.get(doc).cloned();
        let schema_doc = doc.schema_doc().filter(|s| self.selection.includes(s));
        let next = read_new(self.folder, doc, from.as_ref(), None, &mut |event| {
            if let (Some(stamp), Some(schema_doc)) = (event.schema, &schema_doc)
                && self
                    .positions
                    .get(schema_doc)
                    .is_none_or(|p| p.seq <= stamp)
            {
                self.ship_new(schema_doc)?;
            }
            self.out.line(&export_line(self.origin, &event.line))
        })?;
        if let Some(next) = next {
            self.positions.insert(doc.clone(), next);
        }
        Ok(())
    }
}

/// Waits for a notification or the rescan interval; `false` once a signal asks to stop.
fn wait(receiver: &mpsc::Receiver<notify::Result<notify::Event>>, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + RESCAN;
    while Instant::now() < deadline {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        match receiver.recv_timeout(Duration::from_millis(100)) {
            Ok(_) => {
                // Let a burst of appends settle into one pass.
                std::thread::sleep(Duration::from_millis(5));
                while receiver.try_recv().is_ok() {}
                return !stop.load(Ordering::Relaxed);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(100))
            }
        }
    }
    !stop.load(Ordering::Relaxed)
}

/// Where every selected stream ends now: tail starts there.
fn current_ends(folder: &Folder, selection: &Selection) -> Result<BTreeMap<DocId, CursorEntry>> {
    let mut ends = BTreeMap::new();
    for doc in selection.documents(folder)? {
        let path = folder.stream_path(&doc);
        let Some(file) = fsio::open_read(&path)? else {
            continue;
        };
        let tail = read_tail(&file, &path, &doc, folder.max_event_bytes())?;
        if let Some(last) = tail.last {
            ends.insert(
                doc,
                CursorEntry {
                    seq: last.seq + 1,
                    offset: tail.complete_len,
                    hash: last.hash_hex(),
                },
            );
        }
    }
    Ok(ends)
}
