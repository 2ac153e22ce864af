//! # broker-auth-runtime: what both brokers' adapters share at run time
//!
//! The decision core (`broker-auth`) is pure: it is handed time, keys, revocations and policy.
//! This crate holds those live inputs for a process and the I/O around them: the injected
//! [`clock::Clock`], the shared decision inputs ([`live::LiveAuth`]), and policies read from and
//! followed on disk ([`policy_dir`]). The embedded MQTT broker (`broker-auth-mqtt`), the NATS
//! callout and the sidecar all build on it.
#![warn(missing_docs)]

pub mod clock;
pub mod live;
pub mod policy_dir;

pub use clock::{Clock, ManualClock, SystemClock};
pub use live::LiveAuth;
