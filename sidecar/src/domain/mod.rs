//! The service layer: the product's rules, one module per domain, under the HTTP routes.
//!
//! A handler in `api` or `oauth` extracts what the request says, calls one function here and
//! turns its result into a reply; it never reaches the store. The functions here own the checks
//! (who may do what, which identity is still active, which lifetime and key a token gets) and
//! build the records. They take [`crate::state::AppState`] when they need its handles (clock,
//! keys, metrics, configuration) and the narrowest store trait when the store is all they need.

pub mod apps;
pub mod callers;
pub mod devices;
pub mod follow;
pub mod identities;
pub mod login;
pub mod oauth;
pub mod oauth_clients;
pub mod ops;
pub mod policies;
pub mod provisioning;
pub mod revocations;
pub mod sessions;
pub mod tokens;
