//! The live inputs of a connect decision, shared by every enforcement point of one process.
//!
//! The sidecar rotates keys, records revocations and hot-reloads policy; the NATS callout and the
//! embedded MQTT broker read the same values. Each field is an `Arc` so one process holds one
//! copy, and [`LiveAuth::authorize`] takes a consistent snapshot of them per decision.

use std::sync::Arc;

use arc_swap::ArcSwap;

use broker_auth::decision::{Authorized, ConnectContext, authorize_connect};
use broker_auth::policy::SharedPolicy;
use broker_auth::revocation::RevocationSet;
use broker_auth::token::{KeySet, Verifier, VerifyCache};
use broker_auth::{Decision, Protocol, UnixTime};

/// Keys, verifier, revocations and policy as they are right now.
#[derive(Clone)]
pub struct LiveAuth {
    /// Current signing/verification keys (swapped on rotation).
    pub keys: Arc<ArcSwap<KeySet>>,
    /// Verified tokens by hash: a reconnecting client skips the signature check (expiry and
    /// revocation are still checked on every connect).
    pub token_cache: Arc<VerifyCache>,
    /// Issuer, audience and leeway.
    pub verifier: Arc<Verifier>,
    /// Revoked sessions and subjects.
    pub revocations: Arc<RevocationSet>,
    /// The policy set (swapped on reload).
    pub policy: Arc<SharedPolicy>,
}

impl LiveAuth {
    /// A fresh verification cache of `capacity` entries over shared keys, revocations and policy.
    pub fn new(
        keys: Arc<ArcSwap<KeySet>>,
        verifier: Arc<Verifier>,
        revocations: Arc<RevocationSet>,
        policy: Arc<SharedPolicy>,
        capacity: usize,
    ) -> Self {
        Self {
            keys,
            token_cache: Arc::new(VerifyCache::new(capacity)),
            verifier,
            revocations,
            policy,
        }
    }

    /// The connect decision ([`authorize_connect`]) against the current snapshot.
    pub fn authorize(
        &self,
        now: UnixTime,
        token: Option<&str>,
        protocol: Protocol,
        client_id: Option<&str>,
    ) -> Decision<Authorized> {
        let keys = self.keys.load();
        let policy = self.policy.current();
        let ctx = ConnectContext {
            verifier: &self.verifier,
            keys: &keys,
            revocations: self.revocations.as_ref(),
            policy: &policy,
            cache: Some(&self.token_cache),
            now,
        };
        authorize_connect(ctx, token, protocol, client_id)
    }
}
