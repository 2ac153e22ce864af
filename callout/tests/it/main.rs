//! callout integration tests: the responder against a real nats-server 2.15.
// Test helpers outside #[test] fns fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod config_mode;
mod mqtt_listener;
mod operator_mode;
