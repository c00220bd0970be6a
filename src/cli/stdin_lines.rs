//! Lines from stdin, handed over in groups of what is already available: a firehose comes in
//! large groups, a trickle line by line, and nothing waits for more input.
//!
//! A trickle is read and prepared on the caller's thread: a request that arrives alone is
//! answered without a hand-over between threads, whose wake-up costs about as much as the rest
//! of its round trip besides the fsync. When one group brings half a buffer or more, the
//! producer is ahead: reading and preparing move to a thread, overlapping with the caller's
//! work (its fsyncs above all), until stdin has been silent for a moment; then the caller reads
//! again itself.

use std::io::{BufRead, BufReader, Read, Stdin};
use std::sync::{Arc, mpsc};

/// One line of stdin, without its newline, or why it cannot be used.
pub type Line = Result<Vec<u8>, String>;

/// Bytes asked of stdin in one read.
const BUFFER: usize = 1 << 16;
/// A group of at least this many bytes means that input is waiting: read ahead on a thread.
const FIREHOSE: u64 = BUFFER as u64 / 2;
/// How long stdin stays silent before the reading thread hands reading back to the caller: far
/// longer than a producer that is ahead takes to be scheduled again.
const SILENCE_MS: i32 = 2;

/// Lines of stdin, each at most `limit` bytes, each turned into a `T` by `prepare`.
pub struct StdinLines<T> {
    mode: Mode<T>,
    queue: usize,
    prepare: Arc<dyn Fn(Line) -> T + Send + Sync>,
    /// While a thread reads: where spent groups go to be dropped there, and where they come
    /// back empty (see [`recycle`](Self::recycle)).
    spent: Option<Recycling<T>>,
}

struct Recycling<T> {
    to_reader: mpsc::Sender<Vec<T>>,
    emptied: mpsc::Receiver<Vec<T>>,
}

enum Mode<T> {
    /// The caller reads.
    Inline(Reader),
    /// A thread reads; it hands the reader back after a silence of [`SILENCE_MS`].
    Ahead(mpsc::Receiver<Message<T>>),
    /// Stdin has ended (or cannot be read any more).
    Ended,
}

enum Message<T> {
    Line(T),
    HandBack(Reader),
}

/// Stdin with its own buffer, so that what is buffered can be seen (and moved between threads).
struct Reader {
    input: BufReader<Stdin>,
    limit: usize,
    /// The last line was refused: read on only if more input follows (not after a read error
    /// that would repeat forever).
    after_refusal: bool,
    /// Bytes of the lines read so far.
    taken: u64,
}

impl Reader {
    /// Whether a whole line is buffered: taking it needs no system call.
    fn has_line(&self) -> bool {
        memchr::memchr(b'\n', self.input.buffer()).is_some()
    }

    /// The next line, reading as needed; `None` at the end of stdin. After a refused line the
    /// input ends there unless more follows.
    fn next_line(&mut self) -> Option<Line> {
        if std::mem::take(&mut self.after_refusal)
            && self.input.fill_buf().map_or(true, |b| b.is_empty())
        {
            return None;
        }
        let limit = self.limit;
        let mut line = Vec::new();
        let result = match (&mut self.input)
            .take(limit as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => return None,
            Ok(n) if line.last() == Some(&b'\n') => {
                self.taken += n as u64;
                line.pop();
                Ok(line)
            }
            Ok(n) if n > limit => {
                // Skip the rest of the overlong line, so that the next one starts right.
                let mut rest = Vec::new();
                let _ = self.input.read_until(b'\n', &mut rest);
                Err(format!(
                    "the line is longer than the folder's limit of {limit} bytes"
                ))
            }
            Ok(_) => Err("the input ends inside a line".to_string()),
            Err(e) => Err(format!("cannot read stdin: {e}")),
        };
        self.after_refusal = result.is_err();
        Some(result)
    }

    /// Whether a line is buffered, or stdin has bytes (or its end) within [`SILENCE_MS`].
    fn ready_soon(&self) -> bool {
        if self.has_line() {
            return true;
        }
        let mut poll = libc::pollfd {
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut poll, 1, SILENCE_MS) == 1 }
    }
}

impl<T: Send + 'static> StdinLines<T> {
    /// Lines of stdin, each turned into `prepare(line)` as it is read: on a reading thread
    /// while a firehose lasts (at most `queue` lines ahead), so that work that depends on no
    /// other line (parsing a request) overlaps with the caller's.
    pub fn spawn(
        limit: usize,
        queue: usize,
        prepare: impl Fn(Line) -> T + Send + Sync + 'static,
    ) -> StdinLines<T> {
        let reader = Reader {
            input: BufReader::with_capacity(BUFFER, std::io::stdin()),
            limit,
            after_refusal: false,
            taken: 0,
        };
        StdinLines {
            mode: Mode::Inline(reader),
            queue,
            prepare: Arc::new(prepare),
            spent: None,
        }
    }

    /// Empties `group`, a group the caller is done with. While a thread reads, its items are
    /// dropped there: they were allocated there, and an allocator frees memory of another
    /// thread at a cost (mimalloc defers it through a shared list). The caller's thread is
    /// the busier one in a firehose, so it keeps only the handing over.
    pub fn recycle(&mut self, group: &mut Vec<T>) {
        let Some(recycling) = &self.spent else {
            group.clear();
            return;
        };
        let empty = recycling.emptied.try_recv().unwrap_or_default();
        let full = std::mem::replace(group, empty);
        if let Err(mpsc::SendError(mut unsent)) = recycling.to_reader.send(full) {
            // The thread has ended: drop here, and keep the larger buffer.
            unsent.clear();
            if unsent.capacity() > group.capacity() {
                *group = unsent;
            }
        }
    }

    /// [`next_group`](Self::next_group) without the wait: appends what is already there, up to
    /// `most` lines; false when no line is there yet (or stdin has ended).
    pub fn try_next_group(&mut self, most: usize, group: &mut Vec<T>) -> bool {
        let start = group.len();
        while group.len() - start < most {
            match &mut self.mode {
                Mode::Inline(reader) => {
                    if !reader.has_line() {
                        break;
                    }
                    if !self.take_inline(group) {
                        break;
                    }
                }
                Mode::Ahead(receiver) => match receiver.try_recv() {
                    Ok(message) => self.receive(message, group),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => self.mode = Mode::Ended,
                },
                Mode::Ended => break,
            }
        }
        group.len() > start
    }

    /// Appends the next group to `group`: waits for one line, then takes what is already
    /// there, up to `most` lines in all. False at the end of stdin.
    pub fn next_group(&mut self, most: usize, group: &mut Vec<T>) -> bool {
        let start = group.len();
        let inline_from = match &self.mode {
            Mode::Inline(reader) => Some(reader.taken),
            _ => None,
        };
        while group.len() == start {
            match &mut self.mode {
                Mode::Inline(_) => {
                    if !self.take_inline(group) {
                        return false;
                    }
                }
                Mode::Ahead(receiver) => match receiver.recv() {
                    Ok(message) => self.receive(message, group),
                    Err(_) => self.mode = Mode::Ended,
                },
                Mode::Ended => return false,
            }
        }
        self.try_next_group(most.saturating_sub(1), group);
        if let (Some(from), Mode::Inline(reader)) = (inline_from, &self.mode)
            && reader.taken - from >= FIREHOSE
        {
            self.read_ahead();
        }
        true
    }

    /// Reads one line on this thread and prepares it; false (and ended) at the end of stdin.
    fn take_inline(&mut self, group: &mut Vec<T>) -> bool {
        let Mode::Inline(reader) = &mut self.mode else {
            return false;
        };
        let Some(line) = reader.next_line() else {
            self.mode = Mode::Ended;
            return false;
        };
        group.push((self.prepare)(line));
        true
    }

    fn receive(&mut self, message: Message<T>, group: &mut Vec<T>) {
        match message {
            Message::Line(item) => group.push(item),
            Message::HandBack(reader) => {
                self.mode = Mode::Inline(reader);
                self.spent = None;
            }
        }
    }

    /// Moves reading and preparing to a thread, which hands the reader back when stdin has
    /// been silent for [`SILENCE_MS`] (or ends the channel at the end of stdin).
    fn read_ahead(&mut self) {
        let Mode::Inline(mut reader) = std::mem::replace(&mut self.mode, Mode::Ended) else {
            return;
        };
        let (sender, receiver) = mpsc::sync_channel::<Message<T>>(self.queue);
        let (to_reader, spent) = mpsc::channel::<Vec<T>>();
        let (emptied_sender, emptied) = mpsc::channel::<Vec<T>>();
        self.spent = Some(Recycling { to_reader, emptied });
        let prepare = Arc::clone(&self.prepare);
        std::thread::spawn(move || {
            loop {
                while let Ok(mut group) = spent.try_recv() {
                    group.clear();
                    let _ = emptied_sender.send(group);
                }
                if !reader.ready_soon() {
                    let _ = sender.send(Message::HandBack(reader));
                    return;
                }
                let Some(line) = reader.next_line() else {
                    return;
                };
                if sender.send(Message::Line(prepare(line))).is_err() {
                    return;
                }
            }
        });
        self.mode = Mode::Ahead(receiver);
    }
}
