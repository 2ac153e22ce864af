//! # broker-auth: the pure decision core
//!
//! Turns a token and a request into a [`decision::Decision`]. Nothing in this crate opens a
//! socket, touches a store, reads the environment or looks at the wall clock: callers hand in the
//! current time, the key set, the revocation set and the compiled policy set, so every decision is
//! reproducible in a unit test.
//!
//! The flow every enforcement point follows:
//! `token::Verifier::verify` → [`principal::Principal`] → [`policy::PolicySet::grants`] once per
//! connection → [`grants::CompiledGrants`] pattern matches per message.
#![warn(missing_docs)]

pub mod b64;
pub mod decision;
pub mod enforce;
pub mod error;
pub mod grants;
pub mod identity;
pub mod nats_jwt;
pub mod policy;
pub mod principal;
pub mod revocation;
pub mod secret;
pub mod shared_store;
pub mod token;
pub mod topic;

pub use decision::{Decision, Denial, DenyCode, Permit};
pub use error::Error;
pub use grants::{Action, CompiledGrants, Grants};
pub use principal::{Principal, Protocol};

/// Seconds since the Unix epoch. Time is always passed in, never read here.
pub type UnixTime = i64;
