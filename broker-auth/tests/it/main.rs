//! broker-auth integration tests: one binary (link time matters on two cores).

mod connect;
mod nats_server;
mod policy;
mod wycheproof_vectors;
