//! broker-auth integration tests: one binary (link time matters on two cores).
// Test helpers outside #[test] fns fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bundle;
mod connect;
mod nats_server;
mod policy;
mod purity;
mod wycheproof_vectors;
