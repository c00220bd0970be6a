//! Lines from stdin, read (and prepared) on a thread and handed over in groups of what is
//! already available: a firehose comes in large groups, a trickle line by line, and nothing
//! waits for more input.

use std::io::{BufRead, Read};
use std::sync::mpsc;

/// One line of stdin, without its newline, or why it cannot be used.
pub type Line = Result<Vec<u8>, String>;

/// Lines of stdin, each at most `limit` bytes, each turned into a `T` on the reading thread.
pub struct StdinLines<T> {
    receiver: mpsc::Receiver<T>,
}

impl<T: Send + 'static> StdinLines<T> {
    /// Starts reading stdin on a thread, which hands on `prepare(line)` for each line: work
    /// that depends on no other line (parsing a request) overlaps with the caller's.
    pub fn spawn(
        limit: usize,
        queue: usize,
        prepare: impl Fn(Line) -> T + Send + 'static,
    ) -> StdinLines<T> {
        let (sender, receiver) = mpsc::sync_channel::<T>(queue);
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let mut line = Vec::new();
                let line = match (&mut stdin)
                    .take(limit as u64 + 1)
                    .read_until(b'\n', &mut line)
                {
                    Ok(0) => return,
                    Ok(_) if line.last() == Some(&b'\n') => {
                        line.pop();
                        Ok(line)
                    }
                    Ok(n) if n > limit => {
                        // Skip the rest of the overlong line, so that the next one starts right.
                        let mut rest = Vec::new();
                        let _ = stdin.read_until(b'\n', &mut rest);
                        Err(format!(
                            "the line is longer than the folder's limit of {limit} bytes"
                        ))
                    }
                    Ok(_) => Err("the input ends inside a line".to_string()),
                    Err(e) => Err(format!("cannot read stdin: {e}")),
                };
                let last = line.is_err();
                if sender.send(prepare(line)).is_err()
                    || last && stdin.fill_buf().map_or(true, |b| b.is_empty())
                {
                    return;
                }
            }
        });
        StdinLines { receiver }
    }

    /// [`next_group`](Self::next_group) without the wait: appends what is already there, up to
    /// `most` lines; false when no line is there yet (or stdin has ended).
    pub fn try_next_group(&self, most: usize, group: &mut Vec<T>) -> bool {
        let start = group.len();
        while group.len() - start < most {
            match self.receiver.try_recv() {
                Ok(line) => group.push(line),
                Err(_) => break,
            }
        }
        group.len() > start
    }

    /// Appends the next group to `group`: waits for one line, then takes what is already
    /// there, up to `most` lines in all. False at the end of stdin.
    pub fn next_group(&self, most: usize, group: &mut Vec<T>) -> bool {
        let Ok(first) = self.receiver.recv() else {
            return false;
        };
        group.push(first);
        self.try_next_group(most.saturating_sub(1), group);
        true
    }
}
