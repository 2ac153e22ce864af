//! The enforcement task: one registry of live connections for every adapter of a process, and
//! one task that ends them by the core's rule ([`broker_auth::enforce`]).
//!
//! Adapters admit a connection with an [`Ender`] (how to close it: an MQTT session's channel, a
//! NATS kick) and forget it when it goes away by itself. The task wakes when it is told —
//! a revocation or identity change, a new policy, an earlier expiry, the injected clock moving —
//! or when the next token reaches `exp`; it never polls for change. Grants are recomputed off the
//! async threads (a policy change may mean one Rego evaluation per distinct principal).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use broker_auth::enforce::{ConnId, EndReason, Ended, LiveConn, Registry};
use broker_auth::grants::CompiledGrants;
use broker_auth::revocation::Revoked;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::live::{Generation, LiveAuth};

/// How an adapter closes one of its connections. Called from the enforcement task: it must not
/// block (queue the work, as a NATS kick does).
pub trait Ender: Send + Sync {
    /// Close the connection admitted as `conn`, for `reason`.
    fn end(&self, conn: &LiveConn, reason: EndReason);

    /// A policy or identity change widened the connection's grants. An adapter that checks every
    /// message (MQTT) applies them now; one whose permissions were handed to the broker at
    /// connect (NATS: they are in the user JWT) keeps its old ones until it reconnects.
    fn widen(&self, _grants: &Arc<CompiledGrants>) {}
}

type Handle = Arc<dyn Ender>;

/// The registry every adapter of the process admits its connections to.
#[derive(Default)]
pub struct Enforcer {
    registry: Mutex<Registry<Handle>>,
    wake: Notify,
}

impl std::fmt::Debug for Enforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enforcer")
            .field("live", &self.len())
            .finish()
    }
}

/// The longest the task sleeps without being told anything (a wall-clock jump is noticed then).
const MAX_SLEEP: Duration = Duration::from_secs(60);

impl Enforcer {
    fn lock(&self) -> MutexGuard<'_, Registry<Handle>> {
        // A panic while holding the lock leaves plain maps behind; keep enforcing with them.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Track a connection until it ends or is forgotten.
    pub fn admit(&self, conn: Arc<LiveConn>, ender: Arc<dyn Ender>) -> ConnId {
        let id = self.lock().admit(conn, ender);
        // Its expiry may come before the one the task sleeps towards.
        self.wake.notify_one();
        id
    }

    /// The connection went away by itself.
    pub fn forget(&self, id: ConnId) {
        self.lock().forget(id);
    }

    /// The principal of every tracked connection (what an access diff examines).
    pub fn principals(&self) -> Vec<broker_auth::Principal> {
        let conns = self.lock().connections();
        conns
            .into_iter()
            .map(|(_, c)| c.principal.clone())
            .collect()
    }

    /// Connections tracked.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn close(&self, ended: Vec<Ended<Handle>>) {
        for e in ended {
            tracing::info!(
                subject = %e.conn.subject,
                protocol = ?e.conn.principal.protocol,
                reason = e.reason.as_str(),
                "live connection ended"
            );
            e.handle.end(&e.conn, e.reason);
        }
    }

    /// End what has expired at `now`; the instant (ms) to look again. A token is accepted at
    /// connect until `exp` plus the verifier's clock-skew leeway, so that is when its connection
    /// ends too — ending it at `exp` would only make the client reconnect, be admitted again
    /// and be cut again until the leeway ran out.
    fn expire(&self, now_ms: i64, leeway: i64) -> Option<i64> {
        let ended = self
            .lock()
            .expire(now_ms.div_euclid(1000).saturating_sub(leeway));
        self.close(ended);
        self.lock()
            .next_expiry()
            .map(|exp| exp.saturating_add(leeway).saturating_mul(1000))
    }

    /// Recompute the grants of `conns` under the inputs as they are now: end those narrowed,
    /// hand the grown grants to the others' adapters.
    fn regrant(&self, live: &LiveAuth, conns: Vec<(ConnId, Arc<LiveConn>)>, reason: EndReason) {
        let policy = live.policy();
        let mut narrowed = Vec::new();
        let mut widened = Vec::new();
        for (id, c) in conns {
            let now = current_principal(live, &c);
            // A principal that no longer validates, or a policy that fails on it, cannot be
            // shown to still deserve its grants: end it (it reconnects and is decided anew).
            match now.map(|p| policy.grants_cached(&p)) {
                Ok(Ok(g)) if !c.narrowed_by(&g) => {
                    if *g != *c.grants {
                        widened.push((id, g));
                    }
                }
                _ => narrowed.push(id),
            }
        }
        let (ended, grown) = {
            let mut reg = self.lock();
            let ended = reg.end_all(narrowed, reason);
            let grown: Vec<(Handle, Arc<CompiledGrants>)> = widened
                .into_iter()
                .filter_map(|(id, g)| reg.regrant(id, g.clone()).map(|h| (h.clone(), g)))
                .collect();
            (ended, grown)
        };
        self.close(ended);
        for (handle, grants) in grown {
            handle.widen(&grants);
        }
    }
}

/// The principal a connection has now: its own, or rebuilt from its identity's update.
fn current_principal(
    live: &LiveAuth,
    c: &LiveConn,
) -> Result<broker_auth::Principal, broker_auth::DenyCode> {
    match live.revocations().identity_update(&c.subject, c.issued_at) {
        Some(attrs) => c.principal.with_attrs(&attrs),
        None => Ok(c.principal.clone()),
    }
}

/// Start the enforcement task on the current tokio runtime; it runs until aborted.
pub fn spawn(
    enforcer: Arc<Enforcer>,
    live: LiveAuth,
    clock: Arc<dyn Clock>,
) -> tokio::task::JoinHandle<()> {
    // Subscribe before the task first runs: a change made right after `spawn` returns must not
    // fall between the two.
    let mut changes = live.subscribe();
    let seen = *changes.borrow_and_update();
    let cursor = live.revocation_cursor();
    let ticks = clock.ticks();
    let watch = Watch {
        changes,
        seen,
        cursor,
        ticks,
    };
    tokio::spawn(run(enforcer, live, clock, watch))
}

/// What the task has been told so far.
struct Watch {
    changes: tokio::sync::watch::Receiver<Generation>,
    seen: Generation,
    cursor: u64,
    ticks: Option<tokio::sync::watch::Receiver<i64>>,
}

async fn run(e: Arc<Enforcer>, live: LiveAuth, clock: Arc<dyn Clock>, w: Watch) {
    let Watch {
        mut changes,
        mut seen,
        mut cursor,
        mut ticks,
    } = w;
    let leeway = i64::try_from(live.verifier().config().leeway_secs).unwrap_or(0);
    loop {
        let now = clock.now_millis();
        let wait = e
            .expire(now, leeway)
            .map_or(MAX_SLEEP, |at| {
                Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
            })
            .min(MAX_SLEEP);
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return; // every LiveAuth is gone
                }
                let g = *changes.borrow_and_update();
                cursor = on_change(&e, &live, seen, g, cursor).await;
                seen = g;
            }
            _ = e.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = clock_moved(&mut ticks) => {}
        }
    }
}

async fn clock_moved(ticks: &mut Option<tokio::sync::watch::Receiver<i64>>) {
    match ticks {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Act on what moved between `seen` and `now`; the new revocation cursor.
async fn on_change(
    e: &Arc<Enforcer>,
    live: &LiveAuth,
    seen: Generation,
    now: Generation,
    cursor: u64,
) -> u64 {
    let mut next = cursor;
    if now.revocations != seen.revocations {
        let (changes, c) = live.revocation_changes(cursor);
        next = c;
        let ended = e.lock().revoke(&changes);
        e.close(ended);
        let mut changed: Vec<String> = changes
            .into_iter()
            .filter_map(|r| match r {
                Revoked::Identity(sub, _) => Some(sub),
                _ => None,
            })
            .collect();
        changed.dedup();
        if !changed.is_empty() {
            let conns = {
                let g = e.lock();
                changed.iter().flat_map(|s| g.connections_of(s)).collect()
            };
            off_thread(e, live, conns, EndReason::IdentityChanged).await;
        }
    }
    if now.policy != seen.policy {
        let conns = e.lock().connections();
        off_thread(e, live, conns, EndReason::PolicyChanged).await;
    }
    next
}

async fn off_thread(
    e: &Arc<Enforcer>,
    live: &LiveAuth,
    conns: Vec<(ConnId, Arc<LiveConn>)>,
    reason: EndReason,
) {
    if conns.is_empty() {
        return;
    }
    let (e, live) = (e.clone(), live.clone());
    if let Err(err) = tokio::task::spawn_blocking(move || e.regrant(&live, conns, reason)).await {
        tracing::error!(error = %err, "re-checking live connections failed");
    }
}

#[cfg(test)]
mod tests;
