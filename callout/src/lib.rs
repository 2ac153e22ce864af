//! # callout: the NATS auth-callout responder
//!
//! nats-server asks `$SYS.REQ.USER.AUTH` about every connecting client. The responder verifies the
//! client's token with `broker-auth`, computes its grants once, and answers with a user JWT that
//! carries them as NATS permissions and expires with the token. `responder` is the pure
//! request → response step; `service` is the NATS side (queue group, bounded concurrency,
//! reconnects, draining, and ending live connections through the enforcement runtime);
//! `standalone` runs it as its own process, fed by the sidecar over HTTP (`feed`) or by the
//! sidecars' shared store (`store_feed`).

pub mod config;
pub mod error;
pub mod feed;
pub mod permissions;
pub mod responder;
pub mod service;
pub mod standalone;
pub mod store_feed;
pub mod xbox;

pub use error::CalloutError;
pub use permissions::permissions_for;
pub use responder::{AccountMap, Outcome, Responder, Shared};
