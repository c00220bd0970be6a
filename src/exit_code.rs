//! The process exit codes: a small, stable contract that scripts rely on.

use crate::Error;

/// Why the process ended. The numbers are documented in README.md and every man page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// The command did what was asked.
    Success = 0,
    /// The environment failed: an I/O error, a directory that is not a folder, a newer format.
    Failure = 1,
    /// The request was refused as bad input: usage, JSON, patch, document id, or a request that
    /// does not fit the document's state. Nothing was written.
    BadInput = 2,
    /// An `--expect` precondition did not hold. Nothing was written.
    ExpectFailed = 3,
    /// Stored data failed an integrity check (hash chain, sequence, digest, checkpoint).
    Integrity = 4,
    /// The named document (or the asked-for point in it) does not exist.
    NotFound = 5,
}

impl ExitCode {
    /// The exit code that reports `error`.
    pub fn of(error: &Error) -> ExitCode {
        use Error::*;
        match error {
            InvalidDocId { .. }
            | InvalidJson { .. }
            | InvalidInput { .. }
            | InvalidPatch { .. }
            | PatchFailed { .. }
            | StateConflict { .. }
            | EventTooLarge { .. }
            | TooDeep { .. }
            | SchemaViolation { .. }
            | MigrationFailed { .. } => ExitCode::BadInput,
            ExpectFailed { .. } => ExitCode::ExpectFailed,
            Corrupt { .. } | VerifyFailed { .. } | Diverged { .. } => ExitCode::Integrity,
            NotFound { .. } | NoSuchPoint { .. } => ExitCode::NotFound,
            NotAFolder { .. } | NewerFormat { .. } | BadManifest { .. } | Io { .. } => {
                ExitCode::Failure
            }
            Refused { code, .. } => *code,
        }
    }

    /// The numeric code passed to the operating system.
    pub fn code(self) -> u8 {
        self as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(ExitCode::Success.code(), 0);
        assert_eq!(ExitCode::Failure.code(), 1);
        assert_eq!(ExitCode::BadInput.code(), 2);
        assert_eq!(ExitCode::ExpectFailed.code(), 3);
        assert_eq!(ExitCode::Integrity.code(), 4);
        assert_eq!(ExitCode::NotFound.code(), 5);
    }
}
