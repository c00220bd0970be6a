//! stdout for data: buffered, one JSON value a line, and a closed pipe (`| head`) ends the
//! command quietly instead of as an error.

use std::io::{self, BufWriter, Stdout, Write};

use rayon::prelude::*;
use serde::Serialize;

use crate::{Error, Result};

/// Buffered stdout.
pub struct Output {
    out: BufWriter<Stdout>,
}

impl Output {
    pub fn new() -> Output {
        Output {
            out: BufWriter::with_capacity(64 * 1024, io::stdout()),
        }
    }

    /// Writes `text` and a newline.
    pub fn line(&mut self, text: &str) -> Result<()> {
        self.out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(stdout_error)
    }

    /// Writes `value` as one line of compact JSON.
    pub fn json(&mut self, value: &impl Serialize) -> Result<()> {
        serde_json::to_writer(&mut self.out, value).map_err(|e| stdout_error(e.into()))?;
        self.out.write_all(b"\n").map_err(stdout_error)
    }

    /// Prints the line `line` makes of each of `items`, in order, skipping `None`s. The lines
    /// are made on all cores, `together` items at a time, each batch printed before the next
    /// is made, so memory stays flat however many items there are. An error stops the output
    /// after the lines of the items before it, as one item at a time would.
    pub fn lines_in_order<T: Sync>(
        &mut self,
        items: &[T],
        together: usize,
        line: impl Fn(&T) -> Result<Option<String>> + Sync,
    ) -> Result<()> {
        for chunk in items.chunks(together) {
            let lines: Vec<Result<Option<String>>> = chunk.par_iter().map(&line).collect();
            for made in lines {
                if let Some(made) = made? {
                    self.line(&made)?;
                }
            }
        }
        Ok(())
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(stdout_error)
    }
}

fn stdout_error(e: io::Error) -> Error {
    Error::io("write to", "stdout")(e)
}

/// Whether `error` is a write to a closed pipe.
pub fn is_broken_pipe(error: &Error) -> bool {
    matches!(error, Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
}
