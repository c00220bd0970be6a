//! eventdir keeps documents as hash-chained streams of immutable JSON events in a plain folder.
//!
//! The engine lives in this library; `src/cli` is a thin shell that turns command-line arguments
//! into calls on it. The on-disk format is specified byte-exactly in FORMAT.md.

pub mod append;
pub mod apply;
pub mod batch;
pub mod block_lines;
pub mod canonical;
pub mod cli;
pub mod clone;
pub mod doc_id;
pub mod error;
pub mod event;
pub mod exit_code;
pub mod export;
pub mod folder;
pub mod index;
pub mod io;
pub mod json;
pub mod line;
pub mod migrate;
pub mod no_symlinks;
pub mod patch;
pub mod plain_json;
pub mod plain_request;
pub mod read_ahead;
pub mod request_line;
pub mod schema;
pub mod snapshot;
pub mod state;
pub mod stored_patch;
pub mod stream;
pub mod time;
pub mod verify;

pub use doc_id::DocId;
pub use error::{Error, Result};
pub use folder::Folder;
