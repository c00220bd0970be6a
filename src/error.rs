//! The engine's error type: every variant carries the facts a user needs (document, seq, file,
//! line) and its message says what to do, so the CLI can print it as one line.

use std::path::PathBuf;

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in eventdir. [`crate::exit_code::ExitCode::of`] maps each
/// variant to its exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A document id that is malformed or reserved.
    #[error("invalid document id {id:?}: {reason}")]
    InvalidDocId { id: String, reason: String },

    /// Input that is not acceptable JSON (syntax, duplicate keys, numbers out of range).
    #[error("{what} is not valid JSON: {reason}")]
    InvalidJson { what: String, reason: String },

    /// Any other malformed argument or input value.
    #[error("{what}: {reason}")]
    InvalidInput { what: String, reason: String },

    /// A value that is not an RFC 6902 JSON Patch.
    #[error("{what} is not a JSON Patch (RFC 6902): {reason}")]
    InvalidPatch { what: String, reason: String },

    /// A patch that does not apply to the document's current state.
    #[error("{doc}: patch does not apply at seq {seq}: {reason} (nothing written)")]
    PatchFailed {
        doc: String,
        seq: u64,
        reason: String,
    },

    /// A request that does not fit the document's state (create of a live document, update of a
    /// missing or deleted one).
    #[error("{doc}: {reason} (nothing written)")]
    StateConflict { doc: String, reason: String },

    /// A state that does not conform to the schema in effect.
    #[error("{doc}: does not conform to {schema}: {reason} (nothing written)")]
    SchemaViolation {
        doc: String,
        schema: String,
        reason: String,
    },

    /// A migration that cannot be applied to a document.
    #[error(
        "{doc}: cannot be migrated: {reason} (nothing written; fix the schema's migration, or update the document so that it applies)"
    )]
    MigrationFailed { doc: String, reason: String },

    /// An event whose stored line would exceed the size limit.
    #[error(
        "{doc}: event of {size} bytes exceeds the limit of {limit} bytes (the folder's max_event_bytes in eventdir.json; nothing written)"
    )]
    EventTooLarge {
        doc: String,
        size: usize,
        limit: usize,
    },

    /// A JSON value nested deeper than eventdir stores.
    #[error("{what} is nested {depth} levels deep; at most {limit} are allowed")]
    TooDeep {
        what: String,
        depth: usize,
        limit: usize,
    },

    /// An `--expect` precondition that did not hold.
    #[error(
        "{doc}: expected {expected}, but {found} (nothing written; read the document again and retry)"
    )]
    ExpectFailed {
        doc: String,
        expected: String,
        found: String,
    },

    /// A complete stored line that fails to parse, to chain or to continue the sequence.
    #[error(
        "{doc}: corrupt stream at {location}: {reason} ({path}{line}; run `eventdir verify` and restore the stream from a copy)",
        path = path.display(),
        line = line.map(|l| format!(", line {l}")).unwrap_or_default(),
        location = match seq { Some(s) => format!("seq {s}"), None => "an unreadable event".to_string() }
    )]
    Corrupt {
        doc: String,
        path: PathBuf,
        line: Option<u64>,
        seq: Option<u64>,
        reason: String,
    },

    /// A copy (clone target or replica) whose stream is not a prefix of its source's.
    #[error(
        "{doc}: {reason} (the copy diverged from its source; nothing of this stream was written)"
    )]
    Diverged { doc: String, reason: String },

    /// `verify` found problems; they were reported one by one before this summary.

    #[error("verify failed: {summary}")]
    VerifyFailed { summary: String },

    /// A document that has no events.
    #[error("{doc}: no such document (`eventdir ls` lists the documents)")]
    NotFound { doc: String },

    /// A seq or instant that the document does not have.
    #[error("{doc}: {reason}")]
    NoSuchPoint { doc: String, reason: String },

    /// A directory without a manifest.
    #[error(
        "{path} is not an eventdir folder (no eventdir.json; create one with `eventdir init`, or choose another with -C DIR)",
        path = path.display()
    )]
    NotAFolder { path: PathBuf },

    /// A folder written by a newer eventdir.
    #[error(
        "{path} has format version {found}, newer than this eventdir supports ({supported}); upgrade eventdir",
        path = path.display()
    )]
    NewerFormat {
        path: PathBuf,
        found: u64,
        supported: u64,
    },

    /// A manifest that cannot be read.
    #[error("{path}: unreadable manifest: {reason}", path = path.display())]
    BadManifest { path: PathBuf, reason: String },

    /// A refusal that reached the caller as its exit code and message only (one request's
    /// outcome in a batch), passed on as it was.
    #[error("{message}")]
    Refused {
        code: crate::exit_code::ExitCode,
        message: String,
    },

    /// An operating-system error, with what was being done and to which file.
    #[error("cannot {action} {path}: {source}", path = path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with the action and the file it concerns.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    /// A stored event of `doc`'s stream file `path`, with seq `seq`, found corrupt.
    pub fn corrupt_event(
        doc: &crate::DocId,
        path: &std::path::Path,
        seq: u64,
        reason: String,
    ) -> Error {
        Error::Corrupt {
            doc: doc.to_string(),
            path: path.to_path_buf(),
            line: Some(seq + 1),
            seq: Some(seq),
            reason,
        }
    }

    /// A bad-input error about one argument or input value.
    pub fn input(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
