//! Journeys across the crates, against the real binaries and real peers.
// Test helpers outside #[test] fns fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod compose;
mod compose_operator;
mod dockerfile;
mod first_session;
mod fuzz;
mod grafana;
