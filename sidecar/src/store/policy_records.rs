//! Policy versions as stored: every accepted bundle, numbered 1, 2, 3 … (never reused), one live.
//! The record is in the shared layout (`broker_auth::shared_store`): a standalone callout
//! following the store reads the live one.

pub use broker_auth::shared_store::{PolicyOrigin, PolicyVersionRecord};
