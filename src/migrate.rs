//! Migrations of many documents: one `migrate` event for each document that lags its type's
//! schema, written by the batch machinery. A group of documents is locked, planned on all
//! cores and made durable by one sync, instead of an fsync (and a second fold) per document.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::append::{Action, Expect, Request};
use crate::batch::{Batcher, open_file_budget};
use crate::event::EventType;
use crate::exit_code::ExitCode;
use crate::stream::read_tail;
use crate::{DocId, Error, Folder, Result, io as fsio};

/// The most documents migrated in one group (fewer where the open-file limit is lower): a
/// group holds its documents' states, and larger groups were no faster (10 000 one-event
/// documents in 0.77-0.97 s either way, 20 MB peak against 56 MB with groups of 10 000).
const GROUP_DOCS: usize = 2_000;

/// What migrating one document did.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub doc: String,
    /// "migrated", "current" (nothing to do), "deleted" (left alone) or "failed".
    pub result: &'static str,
    /// The schema version the document was written under before; `null` for none.
    pub from: Option<u64>,
    /// The version it is under now.
    pub to: Option<u64>,
    /// The migrate event's seq, when one was written.
    pub seq: Option<u64>,
    /// Why it failed (nothing was written for it).
    pub reason: Option<String>,
}

/// A document as read before its group: its last event's schema stamp, and whether that
/// event deleted it.
struct Before {
    stamp: Option<u64>,
    deleted: bool,
}

/// The two members of a migrate event's stored line that a report names.
#[derive(Deserialize)]
struct Written {
    seq: u64,
    schema: Option<u64>,
}

/// Migrates `docs` in order, passing each one's outcome to `report` as its group becomes
/// durable; returns how many failed (refused as bad input: exit 2, nothing written for them).
/// A document that does not exist ends the run with [`Error::NotFound`] after the outcomes of
/// the documents before it, and so does any other error (an I/O error, a corrupt stream).
pub fn migrate(
    folder: &Folder,
    docs: &[DocId],
    report: &mut dyn FnMut(Outcome) -> Result<()>,
) -> Result<usize> {
    let (open_files, per_group) = open_file_budget();
    let mut batcher: Batcher<()> = Batcher::visiting_each_once(open_files);
    let mut failed = 0;
    for group in docs.chunks(per_group.clamp(1, GROUP_DOCS)) {
        let befores: Vec<Result<Before>> = group
            .par_iter()
            .map(|doc| read_before(folder, doc))
            .collect();
        // Up to the first document that cannot be read: the rest waits for its error.
        let readable = befores
            .iter()
            .position(Result::is_err)
            .unwrap_or(group.len());
        let requests: Vec<Result<Request>> = group[..readable]
            .iter()
            .map(|doc| {
                Ok(Request {
                    doc: doc.clone(),
                    action: Action::Migrate,
                    expect: Expect::Any,
                    meta: None,
                    payload: None,
                })
            })
            .collect();
        // Deleted documents are left alone: their requests are not submitted.
        let live: Vec<&Result<Request>> = requests
            .iter()
            .zip(&befores)
            .filter(|(_, before)| before.as_ref().is_ok_and(|b| !b.deleted))
            .map(|(request, _)| request)
            .collect();
        let mut outcomes = if live.is_empty() {
            Vec::new()
        } else {
            // Each group is finished before the next: none is in flight to hand back here.
            let _ = batcher.submit(folder, &live, ());
            batcher
                .finish(folder)
                .expect("the group just submitted is in flight")
                .1
        }
        .into_iter();
        for (doc, before) in group.iter().zip(befores) {
            let before = before?;
            let mut outcome = Outcome {
                doc: doc.to_string(),
                result: "current",
                from: before.stamp,
                to: before.stamp,
                seq: None,
                reason: None,
            };
            if before.deleted {
                outcome.result = "deleted";
            } else {
                match outcomes.next().expect("one outcome per live document") {
                    Ok(line) if line.is_empty() => {}
                    Ok(line) => {
                        let written: Written = serde_json::from_str(&line)
                            .expect("a stored line names its seq and schema");
                        outcome.result = "migrated";
                        outcome.to = written.schema;
                        outcome.seq = Some(written.seq);
                    }
                    Err((ExitCode::BadInput, reason)) => {
                        failed += 1;
                        outcome.result = "failed";
                        outcome.reason = Some(reason);
                    }
                    Err((code, message)) => return Err(Error::Refused { code, message }),
                }
            }
            report(outcome)?;
        }
    }
    Ok(failed)
}

/// Reads the last event of `doc`'s stream: what a report says it was under before.
fn read_before(folder: &Folder, doc: &DocId) -> Result<Before> {
    let path = folder.stream_path(doc);
    let not_found = || Error::NotFound {
        doc: doc.to_string(),
    };
    let file = fsio::open_read(&path)?.ok_or_else(not_found)?;
    let last = read_tail(&file, &path, doc, folder.max_event_bytes())?
        .last
        .ok_or_else(not_found)?;
    Ok(Before {
        stamp: last.schema,
        deleted: last.kind == EventType::Delete,
    })
}
