//! # sidecar: the broker-auth REST service and command line
//!
//! Thin adapters around `broker-auth`: warp routes (`api`), the sled store (`store`, the only
//! module that touches sled), encrypted signing keys (`keystore`), API keys, rate limits and bans,
//! and the CLI. Decisions come from `broker-auth`; nothing here decides on its own.

pub mod admin_cmd;
pub mod api;
pub mod apikeys;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod keystore;
pub mod metrics;
pub mod oauth;
pub mod openapi;
pub mod policy_cmd;
pub mod provision;
pub mod ratelimit;
pub mod serve;
pub mod sessions;
pub mod state;
pub mod store;
