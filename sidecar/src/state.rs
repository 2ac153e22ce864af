//! The service's shared state: the handles every domain function reads (configuration, store,
//! live auth, clock, metrics, limiter, ...), cheap to clone (one `Arc`), immutable parts swapped
//! whole (key set, policy set). Deciding is the domain's (`crate::domain`); the few methods here
//! only hand the handles on.

use std::sync::Arc;

use broker_auth::token::{Claims, TokenConfig, TokenUse};
use broker_auth::{DenyCode, b64};
use rand_core::{OsRng, RngCore};

use crate::clock::Clock;
use crate::config::ServeArgs;
use crate::domain::tokens;
use crate::error::SidecarError;
use crate::keystore::MasterKey;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::store::{IdentityRecord, Store};

pub type State = Arc<AppState>;

pub struct AppState {
    pub config: ServeArgs,
    pub store: Arc<dyn Store>,
    pub token_config: TokenConfig,
    /// Keys, verifier, revocations and policy (with a verification cache): what every decision
    /// reads, shared with the HTTP broker routes, the MQTT broker and the callout.
    pub auth: broker_auth_runtime::LiveAuth,
    /// The live connections of this process's MQTT broker and callout (one registry).
    pub enforcer: Arc<broker_auth_runtime::Enforcer>,
    /// The NATS provisioner and resolver, when an operator seed is configured.
    pub provisioner: Option<Arc<crate::provision::Provisioner>>,
    /// Its connections to nats-server (claims pushes, command stream).
    pub nats_side: Arc<crate::provision::nats::NatsSide>,
    pub limiter: RateLimiter,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub master: MasterKey,
    /// Upstream OpenID providers (`/oauth/{provider}`).
    pub upstream: crate::oauth::upstream::Upstreams,
    /// Held by a policy deploy from its gate to its swap: this process serves versions in the
    /// order the store numbered them.
    pub policy_lock: tokio::sync::Mutex<()>,
    /// Where the in-process NATS callout responder is, for `/health`.
    pub callout_status: CalloutStatus,
    /// The revocation feed's last sequence read at start-up; a shared store is followed from it.
    pub revocations_loaded: u64,
}

/// The in-process NATS callout responder's state as `/health` reports it: `off` (no
/// `--nats-url`), `connecting` (retrying until nats-server answers), `subscribed` (answering
/// authorization requests; async-nats resubscribes by itself after a reconnect), `stopped`.
#[derive(Debug, Default)]
pub struct CalloutStatus(std::sync::atomic::AtomicU8);

impl CalloutStatus {
    const NAMES: [&'static str; 4] = ["off", "connecting", "subscribed", "stopped"];
    pub const CONNECTING: u8 = 1;
    pub const SUBSCRIBED: u8 = 2;
    pub const STOPPED: u8 = 3;

    pub fn set(&self, status: u8) {
        self.0.store(status, std::sync::atomic::Ordering::Release);
    }

    pub fn name(&self) -> &'static str {
        let i = usize::from(self.0.load(std::sync::atomic::Ordering::Acquire));
        Self::NAMES.get(i).copied().unwrap_or("off")
    }
}

/// Who is calling; its authority rules live with authentication in the domain.
pub use crate::domain::callers::Caller;

/// A random id with a prefix (`ann-`, `lgn-`, ...): 128 bits, base32.
pub fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    format!("{prefix}{}", data_encoding::BASE32_NOPAD.encode(&b))
}

/// Hex SHA-256: how every high-entropy secret (API keys, refresh tokens, client secrets,
/// authorization codes) is kept at rest. A fast hash is right at 256 bits of entropy: there is
/// no dictionary to try, and a slow hash would only slow down every legitimate use.
pub fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A random challenge: 32 bytes, base64url.
pub fn random_challenge() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    b64::url_encode(&b)
}

impl AppState {
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The process's enforcement runtime: these inputs, this registry, this clock.
    pub fn runtime(&self) -> broker_auth_runtime::Runtime {
        broker_auth_runtime::Runtime {
            live: self.auth.clone(),
            enforcer: self.enforcer.clone(),
            clock: self.clock.clone(),
        }
    }

    /// Sign with the active key ([`crate::domain::tokens::sign`]).
    pub fn sign(&self, claims: &Claims) -> Result<String, SidecarError> {
        tokens::sign(self, claims)
    }

    /// Sign an app access token ([`crate::domain::tokens::sign_app_access`]).
    pub fn sign_app_access(&self, claims: &Claims) -> Result<String, SidecarError> {
        tokens::sign_app_access(self, claims)
    }

    /// A session's access token ([`crate::domain::tokens::session_access`]).
    pub fn session_access(
        &self,
        identity: &IdentityRecord,
        sid: &str,
    ) -> Result<(Claims, String), SidecarError> {
        tokens::session_access(self, identity, sid)
    }

    /// Verify a token of the product ([`crate::domain::tokens::verify`]).
    pub fn verify(&self, token: &str, token_use: TokenUse) -> Result<Claims, DenyCode> {
        tokens::verify(self, token, token_use)
    }
}
