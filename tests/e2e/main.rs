//! End-to-end tests: each module drives the real `eventdir` binary on folders in temp dirs.

mod append;
mod apply;
mod at;
mod clone;
mod common;
mod concurrency;
mod export;
mod fixtures;
mod get;
mod independent;
mod init;
mod log;
mod ls;
mod properties;
mod replay;
mod replication;
mod schema;
mod tail;
mod verify;
