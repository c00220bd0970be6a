//! Reading a stream's lines a block at a time, for a reader with many lines to read: one read
//! and one UTF-8 check per block, and lines that stay where they were read, shared by the
//! events made of them, instead of each copied into a buffer of its own.

use std::io::{self, Read};
use std::str::Utf8Error;
use std::sync::Arc;

use crate::line::Line;

/// Bytes asked for at a time (and the size of a block, unless a line is longer).
const BLOCK: usize = 256 * 1024;
/// Blocks kept to be reused once no event holds them: more than a fold has in flight.
const KEPT: usize = 16;

/// What comes next in the file.
pub enum Next {
    /// A complete line, and its length with its newline.
    Line(Line, usize),
    /// No more complete lines: the bytes after the last one (a torn tail, or an append in
    /// progress), 0 when there are none.
    End(u64),
    /// A line (or the bytes after the last newline) longer than the limit.
    TooLong,
    /// A complete line that is not UTF-8, and why.
    NotUtf8(Utf8Error),
}

#[derive(Default)]
pub struct BlockLines {
    /// Complete lines, checked as UTF-8.
    block: Arc<String>,
    /// Where the next line starts in `block`.
    at: usize,
    /// Bytes read after the block's last complete line, the start of the lines that follow.
    carry: Vec<u8>,
    /// Blocks of earlier lines, reused once no event holds them any more.
    kept: Vec<Arc<String>>,
}

impl BlockLines {
    /// The next line of `input`, each line at most `max_line` bytes without its newline,
    /// reading at most `left` more bytes from it.
    pub fn next(&mut self, input: &mut impl Read, max_line: usize, left: u64) -> io::Result<Next> {
        loop {
            let rest = &self.block.as_bytes()[self.at..];
            if let Some(len) = memchr::memchr(b'\n', rest) {
                if len > max_line {
                    return Ok(Next::TooLong);
                }
                let start = self.at;
                self.at += len + 1;
                let line = Line::in_block(Arc::clone(&self.block), start..start + len);
                return Ok(Next::Line(line, len + 1));
            }
            if let Some(end) = self.refill(input, max_line, left)? {
                return Ok(end);
            }
        }
    }

    /// Reads the next block: the bytes carried over and more, up to the last newline read.
    /// What is next instead when no complete line follows, or the first one is not UTF-8.
    fn refill(
        &mut self,
        input: &mut impl Read,
        max_line: usize,
        mut left: u64,
    ) -> io::Result<Option<Next>> {
        let mut bytes = self.reusable();
        bytes.append(&mut self.carry);
        // Read until a newline is in (one carried over, after a line that is not UTF-8, needs
        // no read), the end, or more than a line may hold.
        let mut scanned = 0;
        while memchr::memchr(b'\n', &bytes[scanned..]).is_none() && bytes.len() <= max_line {
            scanned = bytes.len();
            let want = BLOCK.saturating_sub(scanned).max(BLOCK / 4) as u64;
            let read = input.take(want.min(left)).read_to_end(&mut bytes)?;
            left -= read as u64;
            if read == 0 {
                break;
            }
        }
        let complete = memchr::memrchr(b'\n', &bytes).map_or(0, |i| i + 1);
        self.carry.extend_from_slice(&bytes[complete..]);
        bytes.truncate(complete);
        if complete == 0 {
            // Kept for the next block: an empty buffer is a string.
            self.keep(Arc::new(String::from_utf8(bytes).unwrap_or_default()));
            let after = self.carry.len();
            return Ok(Some(if after > max_line {
                Next::TooLong
            } else {
                Next::End(after as u64)
            }));
        }
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                // The lines before the first that is not UTF-8 come first; that one is
                // reported when it is reached, as a line read on its own would be.
                let valid = e.utf8_error().valid_up_to();
                let mut bytes = e.into_bytes();
                let bad = memchr::memrchr(b'\n', &bytes[..valid]).map_or(0, |i| i + 1);
                if bad == 0 {
                    let end = memchr::memchr(b'\n', &bytes).expect("a complete line");
                    let next = match std::str::from_utf8(&bytes[..end]) {
                        _ if end > max_line => Next::TooLong,
                        Err(reason) => Next::NotUtf8(reason),
                        Ok(_) => unreachable!("the line holds the first byte that is not UTF-8"),
                    };
                    bytes.append(&mut self.carry);
                    self.carry = bytes;
                    return Ok(Some(next));
                }
                let mut rest = bytes.split_off(bad);
                rest.append(&mut self.carry);
                self.carry = rest;
                String::from_utf8(bytes).expect("UTF-8 up to the line that is not")
            }
        };
        let old = std::mem::replace(&mut self.block, Arc::new(text));
        self.keep(old);
        self.at = 0;
        Ok(None)
    }

    /// How many bytes were read ahead of the lines returned.
    pub fn unreturned(&self) -> u64 {
        (self.block.len() - self.at + self.carry.len()) as u64
    }

    /// An empty buffer for the next block: a kept block no event holds any more, or a new one.
    fn reusable(&mut self) -> Vec<u8> {
        let free = self.kept.iter().position(|b| Arc::strong_count(b) == 1);
        let mut bytes = match free.map(|i| Arc::try_unwrap(self.kept.swap_remove(i))) {
            Some(Ok(text)) => text.into_bytes(),
            _ => Vec::with_capacity(BLOCK),
        };
        bytes.clear();
        bytes
    }

    fn keep(&mut self, block: Arc<String>) {
        if self.kept.len() < KEPT && block.capacity() >= BLOCK {
            self.kept.push(block);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a reader taking one line at a time finds in `input`, up to `end`: each complete
    /// line, then how the lines end.
    fn line_by_line(input: &[u8], max_line: usize, end: usize) -> (Vec<String>, String) {
        let mut lines = Vec::new();
        let mut rest = &input[..end];
        while let Some(len) = rest.iter().position(|&b| b == b'\n') {
            if len > max_line {
                return (lines, "too long".into());
            }
            match std::str::from_utf8(&rest[..len]) {
                Ok(line) => lines.push(line.to_string()),
                Err(e) => return (lines, format!("not UTF-8: {e}")),
            }
            rest = &rest[len + 1..];
        }
        let how = match rest.len() {
            n if n > max_line => "too long".to_string(),
            n => format!("end after {n}"),
        };
        (lines, how)
    }

    fn in_blocks(input: &[u8], max_line: usize, end: usize) -> (Vec<String>, String) {
        let mut blocks = BlockLines::default();
        let mut reader = std::io::Cursor::new(input);
        let (mut lines, mut offset) = (Vec::new(), 0);
        let kept = loop {
            let left = (end - offset) as u64 - blocks.unreturned();
            match blocks.next(&mut reader, max_line, left).unwrap() {
                Next::Line(line, read) => {
                    assert_eq!(read, line.len() + 1);
                    offset += read;
                    lines.push(line);
                }
                Next::End(n) => break format!("end after {n}"),
                Next::TooLong => break "too long".to_string(),
                Next::NotUtf8(e) => break format!("not UTF-8: {e}"),
            }
        };
        (lines.iter().map(|l| l.to_string()).collect(), kept)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Lines short and long (beyond a block), a line that is not UTF-8 now and then, a
        /// torn tail, a limit on the line length and an end before the file's: read in
        /// blocks, the lines and their end are what reading one line at a time finds.
        #[test]
        fn lines_read_in_blocks_are_the_lines_read_one_at_a_time(
            lines in prop::collection::vec(
                prop_oneof![
                    20 => (0..2000usize, Just(false)),
                    1 => (BLOCK / 2..BLOCK * 2, Just(false)),
                    1 => (1..50usize, Just(true)),
                ],
                0..400,
            ),
            tail in 0..3000usize,
            max_line in prop_oneof![Just(usize::MAX - 1), 100..BLOCK * 3],
            cut in 0..=100usize,
        ) {
            let mut input = Vec::new();
            let mut ends = vec![0];
            for (i, &(len, broken)) in lines.iter().enumerate() {
                let start = input.len();
                input.extend((0..len).map(|j| b"abcdefgh\xc3\xa9"[(i + j) % 10]));
                // Whole characters, unless the line is to be broken.
                if std::str::from_utf8(&input[start..]).is_err() {
                    input.pop();
                }
                if broken {
                    input.insert(start + len / 2, 0xff);
                }
                input.push(b'\n');
                ends.push(input.len());
            }
            input.extend(std::iter::repeat_n(b'x', tail));
            let end = match cut {
                100 => input.len(),
                _ => ends[ends.len() * cut / 100],
            };
            prop_assert_eq!(in_blocks(&input, max_line, end), line_by_line(&input, max_line, end));
        }
    }

    #[test]
    fn a_line_or_tail_of_the_limit_is_read_and_one_byte_more_is_too_long() {
        let max_line = BLOCK + 10;
        let at_limit = "z".repeat(max_line);
        for (input, found) in [
            (
                format!("a\n{at_limit}\n"),
                (vec!["a", &*at_limit], "end after 0"),
            ),
            (format!("a\n{at_limit}z\nb\n"), (vec!["a"], "too long")),
            (
                format!("a\n{at_limit}"),
                (vec!["a"], &*format!("end after {max_line}")),
            ),
            (format!("a\n{at_limit}z"), (vec!["a"], "too long")),
        ] {
            let found = (
                found.0.iter().map(|l| l.to_string()).collect(),
                found.1.to_string(),
            );
            assert_eq!(in_blocks(input.as_bytes(), max_line, input.len()), found);
            assert_eq!(line_by_line(input.as_bytes(), max_line, input.len()), found);
        }
    }

    #[test]
    fn a_block_no_event_holds_is_reused() {
        let line = [[b'y'; 99].as_slice(), b"\n"].concat();
        let input = line.repeat(3 * BLOCK / 100);
        let mut blocks = BlockLines::default();
        let mut reader = std::io::Cursor::new(&input[..]);
        // Where each block's first line starts: not 100 bytes after the line before.
        let mut starts = Vec::new();
        let mut before = std::ptr::null::<u8>();
        while let Next::Line(line, _) = blocks.next(&mut reader, 1000, u64::MAX).unwrap() {
            if line.as_ptr() != before.wrapping_add(100) {
                starts.push(line.as_ptr());
            }
            before = line.as_ptr();
        }
        // Every line was dropped when the next was read: the third block is the first's.
        assert!(starts.len() >= 3, "{starts:?}");
        assert_eq!(starts[2], starts[0]);
    }
}
