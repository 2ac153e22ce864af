//! sidecar integration tests (one binary): the real `sidecar` executable.
// Test helpers outside #[test] fns fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod policy_cli;
