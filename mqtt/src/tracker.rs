//! Live sessions and the one task that closes them when their token expires or is revoked.
//!
//! rmqtt never enforces a credential's lifetime, so we keep, per connected session, its token's
//! `exp`, `sub`, `iat` and `sid` and its session channel. A single task wakes every
//! [`TICK`]: it closes sessions whose `exp` has passed (an ordered index, so a tick costs nothing
//! when nobody expires) and, when the revocation set has changed since the last tick, the sessions
//! those revocations name. One task for all sessions instead of a timer each keeps the per-session
//! cost at one map entry.
//!
//! A policy reload changes what sessions may do: each live session's grants are recomputed from
//! its principal, and a session whose grants changed is closed (its client reconnects and
//! subscribes under the new grants; closing is the only way to drop subscriptions the new policy
//! no longer allows). Sessions whose grants are unchanged are not touched.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rmqtt::types::{Id, Message, Reason, Tx};

use crate::stats::MqttStats;
use crate::{Clock, SessionAuth};
use broker_auth::UnixTime;
use broker_auth::policy::{PolicySet, SharedPolicy};
use broker_auth::revocation::{RevocationSet, Revoked};

/// How often expiry and revocation are enforced: the "within 1 s" of the contract with margin.
pub(crate) const TICK: Duration = Duration::from_millis(250);

/// How long an authenticated CONNECT may wait for its session before its grants are dropped
/// (rmqtt's handshake can still fail after the authentication hook said yes).
const PENDING_TTL: Duration = Duration::from_secs(60);

struct Tracked {
    tx: Tx,
    auth: Arc<SessionAuth>,
}

#[derive(Default)]
struct Inner {
    live: HashMap<u64, Tracked>,
    by_exp: BTreeSet<(UnixTime, u64)>,
    // Grants decided in the authentication hook, waiting for the session to exist.
    pending: HashMap<Id, (Instant, Arc<SessionAuth>)>,
}

/// The registry of live sessions.
#[derive(Default)]
pub(crate) struct Tracker {
    inner: Mutex<Inner>,
    next: AtomicU64,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind; keep serving with them.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn park(&self, id: Id, auth: Arc<SessionAuth>) {
        self.lock().pending.insert(id, (Instant::now(), auth));
    }

    pub(crate) fn unpark(&self, id: &Id) -> Option<Arc<SessionAuth>> {
        self.lock().pending.remove(id).map(|(_, a)| a)
    }

    /// The authentication parked for connection `id`, left parked.
    pub(crate) fn parked(&self, id: &Id) -> Option<Arc<SessionAuth>> {
        self.lock().pending.get(id).map(|(_, a)| a.clone())
    }

    pub(crate) fn track(&self, tx: Tx, auth: Arc<SessionAuth>) {
        let mut g = self.lock();
        g.by_exp.insert((auth.exp, auth.seq));
        g.live.insert(auth.seq, Tracked { tx, auth });
    }

    pub(crate) fn forget(&self, seq: u64) {
        let mut g = self.lock();
        if let Some(t) = g.live.remove(&seq) {
            g.by_exp.remove(&(t.auth.exp, seq));
        }
    }

    /// Number of tracked live sessions.
    pub(crate) fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// One enforcement pass at `now`; returns the revocation cursor to pass next time.
    pub(crate) fn enforce(
        &self,
        now: UnixTime,
        revocations: &RevocationSet,
        cursor: u64,
        stats: &MqttStats,
    ) -> u64 {
        let (changes, cursor) = revocations.changes_since(cursor);
        let mut to_close = Vec::new();
        {
            let mut g = self.lock();
            while let Some(&(exp, seq)) = g.by_exp.first() {
                if exp > now {
                    break;
                }
                g.by_exp.pop_first();
                if let Some(t) = g.live.remove(&seq) {
                    stats.closed_expired.fetch_add(1, Ordering::Relaxed);
                    to_close.push((t.tx, "token expired"));
                }
            }
            if !changes.is_empty() {
                let hit: Vec<u64> = g
                    .live
                    .iter()
                    .filter(|(_, t)| changes.iter().any(|c| t.auth.revoked_by(c)))
                    .map(|(seq, _)| *seq)
                    .collect();
                for seq in hit {
                    if let Some(t) = g.live.remove(&seq) {
                        g.by_exp.remove(&(t.auth.exp, seq));
                        stats.closed_revoked.fetch_add(1, Ordering::Relaxed);
                        to_close.push((t.tx, "token revoked"));
                    }
                }
            }
            g.pending.retain(|_, (at, _)| at.elapsed() < PENDING_TTL);
        }
        for (tx, why) in to_close {
            // The session may already be gone; then there is nothing left to close.
            let _ = tx.unbounded_send(Message::Closed(Reason::from_static(why)));
        }
        cursor
    }
}

impl Tracker {
    /// Close the sessions whose grants differ under `policy`; returns how many were closed.
    pub(crate) fn recheck(&self, policy: &PolicySet, stats: &MqttStats) -> usize {
        // Evaluate outside the lock: a reload may mean one Rego evaluation per distinct principal.
        let live: Vec<Arc<SessionAuth>> =
            self.lock().live.values().map(|t| t.auth.clone()).collect();
        let changed: Vec<u64> = live
            .iter()
            .filter(|a| {
                policy
                    .grants_cached(&a.principal)
                    .map_or(true, |g| g.source() != a.grants.source())
            })
            .map(|a| a.seq)
            .collect();
        let mut g = self.lock();
        let mut closed = 0;
        for seq in changed {
            if let Some(t) = g.live.remove(&seq) {
                g.by_exp.remove(&(t.auth.exp, seq));
                let _ =
                    t.tx.unbounded_send(Message::Closed(Reason::from_static("policy changed")));
                closed += 1;
            }
        }
        stats
            .closed_policy
            .fetch_add(closed as u64, Ordering::Relaxed);
        closed
    }
}

impl SessionAuth {
    fn revoked_by(&self, r: &Revoked) -> bool {
        match r {
            Revoked::Session(sid) => self.sid.as_deref() == Some(sid.as_str()),
            Revoked::Subject(sub, before) => self.subject == *sub && self.issued_at <= *before,
        }
    }
}

/// Run enforcement passes until the returned future is dropped.
pub(crate) async fn run(
    tracker: Arc<Tracker>,
    revocations: Arc<RevocationSet>,
    policy: Arc<SharedPolicy>,
    clock: Clock,
    stats: Arc<MqttStats>,
) {
    // Revocations recorded before the broker started cannot name any of its sessions.
    let (_, mut cursor) = revocations.changes_since(u64::MAX);
    let mut seen = policy.current();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        cursor = tracker.enforce(clock.now(), &revocations, cursor, &stats);
        let now = policy.current();
        if !Arc::ptr_eq(&now, &seen) {
            seen = now.clone();
            let (t, s) = (tracker.clone(), stats.clone());
            let closed = tokio::task::spawn_blocking(move || t.recheck(&now, &s))
                .await
                .unwrap_or(0);
            tracing::info!(
                closed,
                "policy reloaded; sessions whose grants changed were closed"
            );
        }
    }
}
