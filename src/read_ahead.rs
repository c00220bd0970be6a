//! Folding a long stream on two cores: a second thread reads the lines, parses their envelopes
//! and checks the hash chain while the caller's thread applies the events, so that SHA-256 and
//! the fold no longer take turns on one core.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::event::StoredEvent;
use crate::stream::{Position, StreamReader};
use crate::{DocId, Error, Result};

/// From this many bytes left to read on, a fold reads ahead on a second thread; below it, the
/// thread costs more than it saves.
pub const READ_AHEAD_FROM: u64 = 1 << 20;

/// Events handed over at a time: enough to make each hand-over cheap, few enough that the
/// memory held stays small and flat however long the stream.
const BATCH: usize = 256;
/// Batches read ahead of the fold at most.
const BATCHES_AHEAD: usize = 4;

/// What the reading thread hands over.
enum Message {
    Events(Vec<StoredEvent>),
    /// The reader after its last complete line, for the position it ended at.
    End(Box<StreamReader>),
    Failed(Error),
}

/// The events of a stream in order, each checked as [`StreamReader::next_event`] checks it:
/// read on this thread, or, for a long stream, ahead on a second one.
pub struct FoldReader {
    doc: DocId,
    path: PathBuf,
    source: Source,
}

enum Source {
    Here(Box<StreamReader>),
    Ahead {
        receiver: Receiver<Message>,
        /// Batches done with, sent back so that the reading thread frees what it allocated
        /// (freeing on the other thread costs more than the rest of a fold step), and its
        /// blocks of lines become free for it to reuse.
        spent: SyncSender<Vec<StoredEvent>>,
        ended: Option<Box<StreamReader>>,
    },
}

impl FoldReader {
    /// Reads `reader`'s events, ahead on a second thread when `remaining` (the bytes from its
    /// position to the end of the file) is at least [`READ_AHEAD_FROM`].
    pub fn new(reader: StreamReader, remaining: u64) -> FoldReader {
        let path = reader.path().to_path_buf();
        let doc = reader.doc().clone();
        if remaining < READ_AHEAD_FROM {
            return FoldReader {
                doc,
                path,
                source: Source::Here(Box::new(reader)),
            };
        }
        // This thread checks the payload digests, which halves what the other one hashes.
        let reader = reader
            .checking_payloads_elsewhere()
            .searching_with_vectors()
            .reading_in_blocks();
        let (sender, receiver) = sync_channel(BATCHES_AHEAD);
        let (spent, returned) = sync_channel(BATCHES_AHEAD + 1);
        std::thread::spawn(move || read(reader, &sender, &returned));
        FoldReader {
            doc,
            path,
            source: Source::Ahead {
                receiver,
                spent,
                ended: None,
            },
        }
    }

    /// Calls `f` with each event in order (and the stream file's path, for its errors), until
    /// the last complete line or the first error, the reader's or `f`'s.
    pub fn for_each(&mut self, mut f: impl FnMut(&StoredEvent, &Path) -> Result<()>) -> Result<()> {
        self.for_each_while(|event, path| f(event, path).map(|()| true))
    }

    /// [`for_each`](Self::for_each), until `f` returns false.
    pub fn for_each_while(
        &mut self,
        mut f: impl FnMut(&StoredEvent, &Path) -> Result<bool>,
    ) -> Result<()> {
        match &mut self.source {
            Source::Here(reader) => {
                while let Some(event) = reader.next_event()? {
                    if !f(&event, &self.path)? {
                        break;
                    }
                }
                Ok(())
            }
            Source::Ahead {
                receiver,
                spent,
                ended,
            } => loop {
                match receiver.recv() {
                    Ok(Message::Events(events)) => {
                        for event in &events {
                            event.check_payload().map_err(|reason| {
                                Error::corrupt_event(&self.doc, &self.path, event.seq, reason)
                            })?;
                            if !f(event, &self.path)? {
                                return Ok(());
                            }
                        }
                        // The reading thread may have stopped already; then it is dropped here.
                        let _ = spent.try_send(events);
                    }
                    Ok(Message::End(reader)) => {
                        *ended = Some(reader);
                        return Ok(());
                    }
                    Ok(Message::Failed(e)) => return Err(e),
                    Err(_) => panic!("the read-ahead thread ended without a word"),
                }
            },
        }
    }

    /// Where the events ended, once [`for_each`](Self::for_each) has gone through them all.
    pub fn end(&self) -> Position {
        match &self.source {
            Source::Here(reader) => StreamReader::position(reader),
            Source::Ahead { ended, .. } => StreamReader::position(
                ended
                    .as_ref()
                    .expect("the end is known once the events ran out"),
            ),
        }
    }
}

/// The reading thread: batches of events until the end, an error, or a reader that stopped
/// listening. Spent batches are dropped here, which frees their lines' blocks for reuse.
fn read(
    mut reader: StreamReader,
    sender: &SyncSender<Message>,
    returned: &Receiver<Vec<StoredEvent>>,
) {
    loop {
        while let Ok(spent) = returned.try_recv() {
            drop(spent);
        }
        let mut events = Vec::with_capacity(BATCH);
        // Whether the reader reached the end, once the batch is full or it stops.
        let ended = loop {
            match reader.next_event() {
                Ok(Some(event)) => {
                    events.push(event);
                    if events.len() == BATCH {
                        break Ok(false);
                    }
                }
                Ok(None) => break Ok(true),
                Err(e) => break Err(e),
            }
        };
        if !events.is_empty() && sender.send(Message::Events(events)).is_err() {
            return;
        }
        let last = match ended {
            Ok(false) => continue,
            Ok(true) => Message::End(Box::new(reader)),
            Err(e) => Message::Failed(e),
        };
        let _ = sender.send(last);
        return;
    }
}
