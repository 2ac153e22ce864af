//! # sidecar: the broker-auth REST service and command line
//!
//! Thin adapters around `broker-auth`: warp routes (`api`, `oauth`) that only translate HTTP,
//! the service layer under them (`domain`: the product's rules, one module per domain), the
//! store grouped by domain (`store`, with sled as the only backend that touches sled), encrypted
//! signing keys (`keystore`), API keys, rate limits and bans, and the CLI. Policy decisions come
//! from `broker-auth`.

pub mod admin_cmd;
pub mod api;
pub mod apikeys;
pub mod callout_keys;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod door;
pub mod error;
pub mod http_server;
pub mod keystore;
pub mod metrics;
pub mod oauth;
pub mod openapi;
pub mod policy_cmd;
pub mod provision;
pub mod ratelimit;
pub mod serve;
pub mod state;
pub mod store;
