//! stdout for data: buffered, one JSON value a line, and a closed pipe (`| head`) ends the
//! command quietly instead of as an error.

use std::io::{self, BufWriter, Stdout, Write};

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
