//! # broker-auth-runtime: what both brokers' adapters share at run time
//!
//! The decision core (`broker-auth`) is pure: it is handed time, keys, revocations and policy.
//! This crate holds those live inputs for a process and the I/O around them: the one injected
//! [`Clock`], the shared decision inputs and their change channel ([`LiveAuth`]), the one
//! registry of live connections with the task that ends them ([`enforcer`]), policies read
//! from and followed on disk ([`policy_dir`]), secret files kept private ([`secret_file`]), and what every listener checks at the socket
//! ([`door`]: per-address caps, the shared lockout and ban list). The embedded MQTT broker (`broker-auth-mqtt`),
//! the NATS callout and the sidecar all build on one [`Runtime`] per process.
#![warn(missing_docs)]

pub mod clock;
pub mod door;
pub mod enforcer;
pub mod live;
pub mod policy_dir;
pub mod secret_file;

use std::sync::Arc;

pub use clock::{Clock, ManualClock, SystemClock};
pub use enforcer::{Ender, Enforcer};
pub use live::{Generation, LiveAuth};

/// One process's enforcement runtime: its live inputs, its registry of live connections and
/// its clock. Cheap to clone; every adapter of the process gets the same one.
#[derive(Clone)]
pub struct Runtime {
    /// Keys, verifier, revocations, policy.
    pub live: LiveAuth,
    /// Live connections of every adapter.
    pub enforcer: Arc<Enforcer>,
    /// The one clock.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("live", &self.live)
            .field("enforcer", &self.enforcer)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime over `live` and `clock`; nothing runs until [`Runtime::spawn_enforcement`].
    pub fn new(live: LiveAuth, clock: Arc<dyn Clock>) -> Self {
        Runtime {
            live,
            enforcer: Arc::new(Enforcer::default()),
            clock,
        }
    }

    /// Start ending connections by the rule (on the current tokio runtime); abort the handle to
    /// stop.
    pub fn spawn_enforcement(&self) -> tokio::task::JoinHandle<()> {
        enforcer::spawn(self.enforcer.clone(), self.live.clone(), self.clock.clone())
    }

    /// Now, by the one clock.
    pub fn now(&self) -> broker_auth::UnixTime {
        self.clock.now()
    }
}
