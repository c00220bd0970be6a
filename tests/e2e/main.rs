//! End-to-end tests: each module drives the real `eventdir` binary on folders in temp dirs.

mod append;
mod at;
mod common;
mod concurrency;
mod fixtures;
mod get;
mod independent;
mod init;
mod log;
mod ls;
mod properties;
mod replay;
mod schema;
mod verify;
