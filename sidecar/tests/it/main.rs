//! sidecar integration tests (one binary): in-process route tests over the real state and store,
//! and end-to-end tests against the real `sidecar` executable.
// Test helpers outside #[test] fns fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app_routes;
mod broker_routes;
mod cluster;
mod concurrent_writes;
mod conventions;
mod crash_loop;
mod device_routes;
mod e2e;
mod enforcement;
mod first_start;
mod harness;
mod identity_changes;
mod identity_routes;
mod interop;
mod mqtt_e2e;
mod mqtt_sessions;
mod mqtt_state;
mod nats_callout;
mod oauth_authlib;
mod oauth_browser;
mod oauth_hardening;
mod oauth_server;
mod policy_cli;
mod policy_deploys;
mod policy_editor;
mod policy_routes;
mod provisioner;
mod schemathesis;
mod server;
mod sessions;
mod shared_store;
mod slow_clients;
mod standalone_callout;
mod store_conformance;
mod upstream_oidc;
