//! The live inputs of every connect decision of one process — keys, verifier, revocations,
//! policy — and the channel that tells watchers when any of them changed.
//!
//! The sidecar rotates keys, records revocations and identity changes and reloads policy; the
//! NATS callout and the embedded MQTT broker decide from the same values. Every change goes
//! through a method here, which bumps a [`Generation`] on a `watch` channel: the enforcement task
//! is told instead of polling. Readers take a consistent view per decision
//! ([`LiveAuth::authorize`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwap;
use broker_auth::decision::{Authorized, ConnectContext, authorize_connect};
use broker_auth::policy::{PolicySet, PolicySource, SharedPolicy};
use broker_auth::revocation::{IdentityAttrs, RevocationSet, Revocations, Revoked};
use broker_auth::shared_store::{RevocationKind, RevocationRecord};
use broker_auth::token::{KeySet, Verifier, VerifyCache};
use broker_auth::{Decision, DenyCode, Protocol, UnixTime};
use tokio::sync::watch;

/// A revocation-feed record that cannot be put in force: an identity change without the
/// identity's attributes.
#[derive(Debug, thiserror::Error)]
#[error("an identity change must carry the identity's attributes")]
pub struct IncompleteRecord;

/// Which inputs changed how often: watchers compare two generations to see what moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Generation {
    /// Key set replacements.
    pub keys: u64,
    /// Policy set replacements.
    pub policy: u64,
    /// Revocations and identity updates recorded.
    pub revocations: u64,
}

/// Where revocations come from when they are not this process's own: a feed that can fail.
/// After `stale_after` seconds without a successful poll the process is blind to revocations
/// and refuses connects (`revocations_stale`) until the feed recovers.
#[derive(Debug)]
struct Feed {
    last_ok: AtomicI64,
    stale_after: i64,
}

struct Inner {
    keys: ArcSwap<KeySet>,
    token_cache: VerifyCache,
    verifier: Verifier,
    revocations: RevocationSet,
    policy: SharedPolicy,
    feed: Option<Feed>,
    changes: watch::Sender<Generation>,
}

/// Keys, verifier, revocations and policy as they are right now (cheap to clone).
#[derive(Clone)]
pub struct LiveAuth {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LiveAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveAuth")
            .field("generation", &*self.inner.changes.borrow())
            .finish_non_exhaustive()
    }
}

impl LiveAuth {
    /// Live inputs over these keys, verifier, revocations and policy, with a verification cache
    /// of `capacity` tokens (a reconnecting client skips the signature check; expiry and
    /// revocation are still checked on every connect).
    pub fn new(
        keys: KeySet,
        verifier: Verifier,
        revocations: RevocationSet,
        policy: PolicySet,
        capacity: usize,
    ) -> Self {
        let (changes, _) = watch::channel(Generation::default());
        LiveAuth {
            inner: Arc::new(Inner {
                keys: ArcSwap::from_pointee(keys),
                token_cache: VerifyCache::new(capacity),
                verifier,
                revocations,
                policy: SharedPolicy::new(policy),
                feed: None,
                changes,
            }),
        }
    }

    /// The same, for a process whose revocations come from a feed: it refuses connects once
    /// `stale_after` seconds pass without [`LiveAuth::feed_ok`] (the first call starts the clock).
    pub fn with_feed(
        keys: KeySet,
        verifier: Verifier,
        policy: PolicySet,
        capacity: usize,
        stale_after: i64,
    ) -> Self {
        let mut live = Self::new(keys, verifier, RevocationSet::new(), policy, capacity);
        if let Some(inner) = Arc::get_mut(&mut live.inner) {
            inner.feed = Some(Feed {
                last_ok: AtomicI64::new(i64::MIN),
                stale_after,
            });
        }
        live
    }

    /// Told about every change from now on.
    pub fn subscribe(&self) -> watch::Receiver<Generation> {
        self.inner.changes.subscribe()
    }

    fn bump(&self, f: impl FnOnce(&mut Generation)) {
        self.inner.changes.send_modify(f);
    }

    /// The key set in force.
    pub fn keys(&self) -> Arc<KeySet> {
        self.inner.keys.load_full()
    }

    /// Replace the key set (rotation, a JWKS refresh).
    pub fn set_keys(&self, keys: KeySet) {
        self.inner.keys.store(Arc::new(keys));
        self.bump(|g| g.keys += 1);
    }

    /// Issuer, audience and leeway of accepted tokens.
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    /// The policy set in force (hold it for one decision).
    pub fn policy(&self) -> Arc<PolicySet> {
        self.inner.policy.current()
    }

    /// Serve `set` from now on.
    pub fn set_policy(&self, set: PolicySet) {
        self.inner.policy.replace(set);
        self.bump(|g| g.policy += 1);
    }

    /// Build a set from `sources` and serve it, or keep the current one and say why not.
    pub fn reload_policy(&self, sources: Vec<PolicySource>) -> broker_auth::error::Result<()> {
        self.set_policy(PolicySet::from_sources(sources)?);
        Ok(())
    }

    /// What is revoked, for decisions made outside [`LiveAuth::authorize`].
    pub fn revocations(&self) -> &dyn Revocations {
        &self.inner.revocations
    }

    /// Revoke a session until `forget_after`.
    pub fn revoke_session(&self, sid: &str, forget_after: UnixTime) {
        self.inner.revocations.revoke_session(sid, forget_after);
        self.bump(|g| g.revocations += 1);
    }

    /// Revoke every token of `sub` issued up to `before`.
    pub fn revoke_subject(&self, sub: &str, before: UnixTime, forget_after: UnixTime) {
        self.inner
            .revocations
            .revoke_subject(sub, before, forget_after);
        self.bump(|g| g.revocations += 1);
    }

    /// `sub`'s attributes are `attrs` since `at` (see [`RevocationSet::update_identity`]).
    pub fn update_identity(
        &self,
        sub: &str,
        at: UnixTime,
        attrs: IdentityAttrs,
        forget_after: UnixTime,
    ) {
        self.inner
            .revocations
            .update_identity(sub, at, attrs, forget_after);
        self.bump(|g| g.revocations += 1);
    }

    /// Put one revocation-feed record in force, as the shared store holds it (a sidecar's
    /// own revocations, what it follows from others, a callout following the store).
    pub fn apply_revocation(&self, rec: &RevocationRecord) -> Result<(), IncompleteRecord> {
        match (rec.kind, &rec.attrs) {
            (RevocationKind::Session, _) => self.revoke_session(&rec.id, rec.until),
            (RevocationKind::Subject, _) => self.revoke_subject(&rec.id, rec.at, rec.until),
            (RevocationKind::Identity, Some(a)) => {
                self.update_identity(&rec.id, rec.at, a.clone(), rec.until)
            }
            (RevocationKind::Identity, None) => return Err(IncompleteRecord),
        }
        Ok(())
    }

    /// Drop revocations no live token can match any more.
    pub fn prune_revocations(&self, now: UnixTime) {
        self.inner.revocations.prune(now);
    }

    /// Revocations recorded after `cursor`, and the cursor to ask from next time.
    pub fn revocation_changes(&self, cursor: u64) -> (Vec<Revoked>, u64) {
        self.inner.revocations.changes_since(cursor)
    }

    /// The cursor of a watcher that has seen everything so far.
    pub fn revocation_cursor(&self) -> u64 {
        self.inner.revocations.cursor()
    }

    /// A successful poll of the revocation feed at `now`.
    pub fn feed_ok(&self, now: UnixTime) {
        if let Some(f) = &self.inner.feed {
            f.last_ok.store(now, Ordering::Relaxed);
        }
    }

    /// True when revocations come from a feed that has not answered for too long (or ever).
    pub fn is_blind(&self, now: UnixTime) -> bool {
        self.inner.feed.as_ref().is_some_and(|f| {
            let last = f.last_ok.load(Ordering::Relaxed);
            last == i64::MIN || now.saturating_sub(last) > f.stale_after
        })
    }

    /// The connect decision ([`authorize_connect`]) against the current inputs. A process blind
    /// to revocations refuses (`revocations_stale`): it cannot know the token is still good.
    pub fn authorize(
        &self,
        now: UnixTime,
        token: Option<&str>,
        protocol: Protocol,
        client_id: Option<&str>,
    ) -> Decision<Authorized> {
        if self.is_blind(now) {
            return Decision::deny(
                DenyCode::RevocationsStale,
                "the revocation feed has not answered recently",
            );
        }
        let keys = self.inner.keys.load();
        let policy = self.policy();
        let ctx = ConnectContext {
            verifier: &self.inner.verifier,
            keys: &keys,
            revocations: &self.inner.revocations,
            policy: &policy,
            cache: Some(&self.inner.token_cache),
            now,
        };
        authorize_connect(ctx, token, protocol, client_id)
    }
}

#[cfg(test)]
mod tests;
