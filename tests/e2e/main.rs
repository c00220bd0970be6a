//! End-to-end tests: each module drives the real `eventdir` binary on folders in temp dirs.

mod common;
