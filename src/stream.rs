//! One stream file: reading its events in order (streaming, checking the chain as it goes) and
//! reading its tail from the end of the file without touching the rest.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::block_lines::{BlockLines, Next};
use crate::event::{
    DataCheck, Hash, StoredEvent, ZERO_HASH, decode_hex, parse_line, parse_line_with,
};
use crate::{DocId, Error, Folder, Result, io as fsio};

/// Reads a stream's complete lines in order, checking each event's hash chain, seq continuity
/// and timestamp order. Bytes after the last newline (a torn tail, or an append in progress)
/// are never returned as an event.
pub struct StreamReader {
    doc: DocId,
    path: PathBuf,
    reader: BufReader<Box<dyn Read + Send>>,
    offset: u64,
    next_seq: u64,
    prev_hash: Hash,
    prev_timestamp: String,
    max_line: usize,
    partial: Option<u64>,
    end: u64,
    data_check: DataCheck,
    /// Whether lines are found with the CPU's vector instructions (see
    /// [`StreamReader::searching_with_vectors`]).
    vector_search: bool,
    /// Lines read a block at a time, when the reader reads them so (see
    /// [`StreamReader::reading_in_blocks`]).
    blocks: Option<Box<BlockLines>>,
    buf: Vec<u8>,
}

/// Where a reader starts: the beginning of the stream, or just after a known event.
#[derive(Clone, Debug)]
pub struct Position {
    pub offset: u64,
    pub next_seq: u64,
    pub prev_hash: Hash,
    pub prev_timestamp: String,
}

impl Position {
    /// The beginning of a stream.
    pub fn start() -> Position {
        Position {
            offset: 0,
            next_seq: 0,
            prev_hash: ZERO_HASH,
            prev_timestamp: String::new(),
        }
    }
}

impl StreamReader {
    /// Opens `doc`'s stream for reading from its start; `None` when the document has no stream.
    pub fn open(folder: &Folder, doc: &DocId) -> Result<Option<StreamReader>> {
        let path = folder.stream_path(doc);
        let Some(file) = fsio::open_read(&path)? else {
            return Ok(None);
        };
        StreamReader::at(
            file,
            path,
            doc.clone(),
            folder.max_event_bytes(),
            Position::start(),
        )
        .map(Some)
    }

    /// A reader over `file` starting at `position`.
    pub fn at(
        mut file: File,
        path: PathBuf,
        doc: DocId,
        max_line: usize,
        position: Position,
    ) -> Result<StreamReader> {
        file.seek(SeekFrom::Start(position.offset))
            .map_err(Error::io("read", &path))?;
        let reader = BufReader::with_capacity(64 * 1024, Box::new(file) as Box<dyn Read + Send>);
        Ok(StreamReader::new(reader, path, doc, max_line, position))
    }

    /// A reader over `bytes`, read earlier from the stream file at `path` starting at
    /// `position`: its lines are checked as the file's would be.
    pub fn over_bytes(
        bytes: Vec<u8>,
        path: PathBuf,
        doc: DocId,
        max_line: usize,
        position: Position,
    ) -> StreamReader {
        let reader = BufReader::new(Box::new(std::io::Cursor::new(bytes)) as Box<dyn Read + Send>);
        StreamReader::new(reader, path, doc, max_line, position)
    }

    fn new(
        reader: BufReader<Box<dyn Read + Send>>,
        path: PathBuf,
        doc: DocId,
        max_line: usize,
        position: Position,
    ) -> StreamReader {
        StreamReader {
            doc,
            path,
            reader,
            offset: position.offset,
            next_seq: position.next_seq,
            prev_hash: position.prev_hash,
            prev_timestamp: position.prev_timestamp,
            max_line,
            partial: None,
            end: u64::MAX,
            data_check: DataCheck::Readable,
            vector_search: false,
            blocks: None,
            buf: Vec::new(),
        }
    }

    /// Stops the reader at byte `end` (a line boundary recorded earlier): lines appended after
    /// it are left for a later reader.
    pub fn stop_at(mut self, end: u64) -> StreamReader {
        self.end = end;
        self
    }

    /// Leaves the check that each event's `data` parses to the caller, which folds every
    /// event it reads and reports a payload that fails to parse as corruption itself.
    pub fn folding(mut self) -> StreamReader {
        self.data_check = DataCheck::ByCaller;
        self
    }

    /// Leaves the payload digest to the caller as well (see [`DataCheck::DigestByCaller`]).
    pub(crate) fn checking_payloads_elsewhere(mut self) -> StreamReader {
        self.data_check = DataCheck::DigestByCaller;
        self
    }

    /// Finds line ends with the CPU's vector instructions, for a process with many lines to
    /// read (a long fold, a whole folder): the first such search in a process asks the CPU
    /// for its features (about 25 µs in a virtual machine, where each `cpuid` traps), more
    /// than a process reading a few lines spends on them.
    pub(crate) fn searching_with_vectors(mut self) -> StreamReader {
        self.vector_search = true;
        self
    }

    /// Reads lines a block at a time ([`BlockLines`]), for a reader with many lines to read:
    /// the events share the blocks their lines were read into.
    pub(crate) fn reading_in_blocks(mut self) -> StreamReader {
        self.blocks = Some(Box::default());
        self
    }

    /// The stream file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The document whose stream this is.
    pub fn doc(&self) -> &DocId {
        &self.doc
    }

    /// The byte offset just after the last complete line read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The number of bytes after the last complete line, once the reader reached the end and
    /// found some: a torn tail, or an append still being written.
    pub fn partial_tail(&self) -> Option<u64> {
        self.partial
    }

    /// The reader's position, to resume after the last event read.
    pub fn position(&self) -> Position {
        Position {
            offset: self.offset,
            next_seq: self.next_seq,
            prev_hash: self.prev_hash,
            prev_timestamp: self.prev_timestamp.clone(),
        }
    }

    /// The next event, `None` at the end of the complete lines.
    pub fn next_event(&mut self) -> Result<Option<StoredEvent>> {
        if self.partial.is_some() || self.offset >= self.end {
            return Ok(None);
        }
        let next = match &mut self.blocks {
            Some(blocks) => {
                // What may still be read: up to `end`, beyond what was read ahead already.
                let ahead = self.offset + blocks.unreturned();
                let left = self.end.saturating_sub(ahead);
                blocks
                    .next(&mut self.reader, self.max_line, left)
                    .map_err(Error::io("read", &self.path))?
            }
            None => self.next_own_line()?,
        };
        let (text, read) = match next {
            Next::Line(text, read) => (text, read),
            Next::End(0) => return Ok(None),
            Next::End(partial) => {
                self.partial = Some(partial);
                return Ok(None);
            }
            Next::TooLong => return Err(self.too_long()),
            Next::NotUtf8(e) => {
                let reason = format!("the line is not valid UTF-8 ({e})");
                return Err(self.corrupt(None, reason));
            }
        };
        let event = parse_line_with(text, &self.doc, &self.prev_hash, self.data_check)
            .map_err(|reason| self.corrupt(None, reason))?;
        if event.seq != self.next_seq {
            let reason = format!("seq {} where {} was expected", event.seq, self.next_seq);
            return Err(self.corrupt(Some(self.next_seq), reason));
        }
        if event.timestamp() < self.prev_timestamp.as_str() {
            // A timestamp out of form, when its check is the caller's, is reported as that.
            crate::event::check_timestamp(event.timestamp())
                .map_err(|reason| self.corrupt(Some(event.seq), reason))?;
            let reason = format!(
                "timestamp {} is earlier than the previous event's {}",
                event.timestamp(),
                self.prev_timestamp
            );
            return Err(self.corrupt(Some(event.seq), reason));
        }
        self.offset += read as u64;
        self.next_seq += 1;
        self.prev_hash = event.hash;
        self.prev_timestamp.clear();
        self.prev_timestamp.push_str(event.timestamp());
        Ok(Some(event))
    }

    /// The next complete line, read into a buffer of its own, and its length with its newline.
    fn next_own_line(&mut self) -> Result<Next> {
        self.buf.clear();
        let limit = self.max_line + 1;
        let read = self
            .read_line(limit)
            .map_err(Error::io("read", &self.path))?;
        if read == 0 {
            return Ok(Next::End(0));
        }
        if self.buf.last() != Some(&b'\n') {
            return Ok(if read == limit {
                Next::TooLong
            } else {
                Next::End(read as u64)
            });
        }
        self.buf.pop();
        // The event takes the buffer (no copy); the next line gets a new one of the same size.
        let capacity = self.buf.capacity();
        let bytes = std::mem::replace(&mut self.buf, Vec::with_capacity(capacity));
        Ok(match String::from_utf8(bytes) {
            Ok(text) => Next::Line(text.into(), read),
            Err(e) => Next::NotUtf8(e.utf8_error()),
        })
    }

    fn too_long(&self) -> Error {
        self.corrupt(
            None,
            format!(
                "a line longer than the folder's limit of {} bytes",
                self.max_line
            ),
        )
    }

    /// Appends the next line to `buf`, with its newline if it has one, reading at most
    /// `limit` bytes; the number read (0 at the end of the file).
    fn read_line(&mut self, limit: usize) -> std::io::Result<usize> {
        let mut read = 0;
        while read < limit {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                break;
            }
            let room = &available[..available.len().min(limit - read)];
            let newline = if self.vector_search {
                memchr::memchr(b'\n', room)
            } else {
                memchr::arch::all::memchr::One::new(b'\n').find(room)
            };
            let taken = newline.map_or(room.len(), |i| i + 1);
            self.buf.extend_from_slice(&room[..taken]);
            self.reader.consume(taken);
            read += taken;
            if newline.is_some() {
                break;
            }
        }
        Ok(read)
    }

    fn corrupt(&self, seq: Option<u64>, reason: String) -> Error {
        Error::Corrupt {
            doc: self.doc.to_string(),
            path: self.path.clone(),
            line: Some(self.next_seq + 1),
            seq: seq.or(Some(self.next_seq)),
            reason,
        }
    }
}

impl Iterator for StreamReader {
    type Item = Result<StoredEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

/// The end of a stream as seen from the end of its file.
#[derive(Debug)]
pub struct Tail {
    /// The length of the complete lines: where the next event goes.
    pub complete_len: u64,
    /// Bytes after the last newline (a torn tail, or an append in progress).
    pub partial_len: u64,
    /// The last complete event, checked against the hash stored in the line before it.
    pub last: Option<StoredEvent>,
}

/// The end of a stream file as one read finds it: the file's length and its last
/// [`TAIL_WINDOW`] bytes (or all of them, in a shorter file).
pub struct EndWindow {
    pub file_len: u64,
    /// Where `bytes` start in the file.
    pub start: u64,
    pub bytes: Vec<u8>,
}

impl EndWindow {
    /// Reads the last [`TAIL_WINDOW`] bytes of `file`.
    pub fn read(file: &File, path: &Path) -> Result<EndWindow> {
        EndWindow::read_from(file, path, |len| len.saturating_sub(TAIL_WINDOW))
    }

    /// Reads `file` from the offset `start` picks, given the file's length, to its end.
    pub fn read_from(
        file: &File,
        path: &Path,
        start: impl FnOnce(u64) -> u64,
    ) -> Result<EndWindow> {
        let file_len = file.metadata().map_err(Error::io("inspect", path))?.len();
        let start = start(file_len).min(file_len);
        let mut bytes = vec![0u8; (file_len - start) as usize];
        fsio::read_exact_at(file, path, &mut bytes, start)?;
        Ok(EndWindow {
            file_len,
            start,
            bytes,
        })
    }

    /// [`stored_hash_before`], from the window when it holds that hash.
    pub fn hash_before(&self, file: &File, path: &Path, line_start: u64) -> Result<Hash, String> {
        if line_start >= self.start + HASH_TAIL as u64 && line_start <= self.file_len {
            let at = (line_start - self.start) as usize;
            return hash_from_line_end(&self.bytes[at - HASH_TAIL..at]);
        }
        stored_hash_before(file, path, line_start)
    }
}

/// Reads the last event of a stream from the end of its file, without reading the rest.
pub fn read_tail(file: &File, path: &Path, doc: &DocId, max_line: usize) -> Result<Tail> {
    tail_from_end(file, path, doc, max_line, &EndWindow::read(file, path)?)
}

/// [`read_tail`] from the end of the file already read.
pub fn tail_from_end(
    file: &File,
    path: &Path,
    doc: &DocId,
    max_line: usize,
    end: &EndWindow,
) -> Result<Tail> {
    // One read from the end usually holds the partial tail, the last line and the hash that
    // ends the line before it; the block scans below are for lines longer than that.
    let (file_len, window_start, window) = (end.file_len, end.start, &end.bytes);
    // The last newline before `end`: from the window when it can tell, else by block scans.
    // The window is scanned a word at a time: `memchr::memrchr` would first ask the CPU for
    // its features, and in a virtual machine each `cpuid` instruction traps (about 25 µs a
    // process here, for the scan of a line or two).
    let newline = memchr::arch::all::memchr::One::new(b'\n');
    let last_newline = |end: u64| -> Result<Option<u64>> {
        if end >= window_start {
            match newline.rfind(&window[..(end - window_start) as usize]) {
                Some(i) => return Ok(Some(window_start + i as u64)),
                None if window_start == 0 => return Ok(None),
                None => {}
            }
        }
        rfind_newline(file, path, end)
    };
    let complete_len = match last_newline(file_len)? {
        Some(pos) => pos + 1,
        None => 0,
    };
    let partial_len = file_len - complete_len;
    if complete_len == 0 {
        return Ok(Tail {
            complete_len,
            partial_len,
            last: None,
        });
    }
    let start = match last_newline(complete_len - 1)? {
        Some(pos) => pos + 1,
        None => 0,
    };
    let corrupt = |seq: Option<u64>, reason: String| Error::Corrupt {
        doc: doc.to_string(),
        path: path.to_path_buf(),
        line: None,
        seq,
        reason,
    };
    let line_len = (complete_len - 1 - start) as usize;
    if line_len + 1 > max_line {
        return Err(corrupt(
            None,
            format!("the last line is longer than the folder's limit of {max_line} bytes"),
        ));
    }
    let prev_hash = if start == 0 {
        Ok(ZERO_HASH)
    } else {
        end.hash_before(file, path, start)
    }
    .map_err(|r| corrupt(None, r))?;
    let line = if start >= window_start {
        let at = (start - window_start) as usize;
        window[at..at + line_len].to_vec()
    } else {
        let mut line = vec![0u8; line_len];
        fsio::read_exact_at(file, path, &mut line, start)?;
        line
    };
    let text = String::from_utf8(line)
        .map_err(|e| corrupt(None, format!("the last line is not valid UTF-8 ({e})")))?;
    let event = parse_line(text, doc, &prev_hash)
        .map_err(|reason| corrupt(None, format!("the last event: {reason}")))?;
    if start == 0 && event.seq != 0 {
        return Err(corrupt(
            Some(0),
            format!("the first event has seq {}", event.seq),
        ));
    }
    Ok(Tail {
        complete_len,
        partial_len,
        last: Some(event),
    })
}

/// How much of a stream's end is read at once to find its last line: events are seldom
/// longer than a few KiB.
pub(crate) const TAIL_WINDOW: u64 = 8 * 1024;

/// How a stored line ends: `,"hash":"` + 64 hex digits + `"}` + newline.
pub(crate) const HASH_TAIL: usize = 76;

/// The hash stored in the line that ends just before `line_start` (its `,"hash":"…"}` tail).
pub fn stored_hash_before(file: &File, path: &Path, line_start: u64) -> Result<Hash, String> {
    if line_start < HASH_TAIL as u64 {
        return Err("the previous line is too short to end with a hash".to_string());
    }
    let mut buf = [0u8; HASH_TAIL];
    fsio::read_exact_at(file, path, &mut buf, line_start - HASH_TAIL as u64)
        .map_err(|e| e.to_string())?;
    hash_from_line_end(&buf)
}

/// The hash in the last `HASH_TAIL` bytes of a stored line.
pub(crate) fn hash_from_line_end(bytes: &[u8]) -> Result<Hash, String> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.strip_prefix(",\"hash\":\""))
        .and_then(|rest| rest.strip_suffix("\"}\n"))
        .and_then(decode_hex::<32>)
        .ok_or_else(|| "the previous line does not end with a hash".to_string())
}

/// The position of the last `\n` before `end`, scanning backwards in blocks.
fn rfind_newline(file: &File, path: &Path, end: u64) -> Result<Option<u64>> {
    const BLOCK: u64 = 64 * 1024;
    let mut buf = vec![0u8; BLOCK as usize];
    let mut hi = end;
    while hi > 0 {
        let lo = hi.saturating_sub(BLOCK);
        let chunk = &mut buf[..(hi - lo) as usize];
        fsio::read_exact_at(file, path, chunk, lo)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            return Ok(Some(lo + i as u64));
        }
        hi = lo;
    }
    Ok(None)
}
