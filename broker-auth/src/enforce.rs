//! Live connections and the one rule that ends them.
//!
//! A connection admitted by a connect decision stays authorized only while nothing it was
//! admitted on has changed against it. The rule, the same for the embedded MQTT broker and the
//! NATS callout:
//!
//! - its token reached `exp` ([`EndReason::Expired`]);
//! - its session (`sid`), or its identity for tokens issued up to an instant, was revoked
//!   ([`EndReason::Revoked`]);
//! - its grants, recomputed under a new policy, no longer cover what it was granted
//!   ([`EndReason::PolicyChanged`]);
//! - its identity changed (roles, scopes, tenant, devices) so that its grants no longer cover
//!   what it was granted ([`EndReason::IdentityChanged`]).
//!
//! Grants that only grew leave the connection alone: the addition applies at its next connect.
//! [`Registry`] indexes live connections by id, expiry, session and subject so each kind of
//! change finds its connections without a scan; it holds an adapter's handle per connection
//! (how to close it) and does no I/O: adapters close what it returns.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::UnixTime;
use crate::decision::Authorized;
use crate::grants::CompiledGrants;
use crate::principal::{Principal, Protocol};
use crate::revocation::Revoked;

/// What a live connection was admitted on.
#[derive(Debug, Clone)]
pub struct LiveConn {
    /// The principal the grants were computed for.
    pub principal: Principal,
    /// Token `sub` (what subject revocation and identity changes name).
    pub subject: String,
    /// Token `sid`, if any.
    pub sid: Option<String>,
    /// Token `iat`.
    pub issued_at: UnixTime,
    /// Token `exp`.
    pub exp: UnixTime,
    /// The grants it was admitted with.
    pub grants: Arc<CompiledGrants>,
}

impl From<&Authorized> for LiveConn {
    fn from(a: &Authorized) -> Self {
        LiveConn {
            principal: a.principal.clone(),
            subject: a.claims.sub.clone(),
            sid: a.claims.sid.clone(),
            issued_at: a.claims.iat,
            exp: a.claims.exp,
            grants: a.grants.clone(),
        }
    }
}

impl LiveConn {
    fn revoked_by(&self, r: &Revoked) -> bool {
        match r {
            Revoked::Session(sid) => self.sid.as_deref() == Some(sid.as_str()),
            Revoked::Subject(sub, before) => self.subject == *sub && self.issued_at <= *before,
            Revoked::Identity(..) => false,
        }
    }

    /// Would `new` grants take anything away from this connection? Then it must end.
    pub fn narrowed_by(&self, new: &CompiledGrants) -> bool {
        let client_id_lost = self.principal.protocol == Protocol::Mqtt
            && !new.allows_client_id(self.principal.client_id.as_deref());
        client_id_lost || !new.covers(&self.grants)
    }
}

/// Why a live connection was ended. The string forms are metric labels and log fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The token reached `exp`.
    Expired,
    /// The session or the identity was revoked.
    Revoked,
    /// A new policy narrowed the connection's grants.
    PolicyChanged,
    /// A change to the identity narrowed the connection's grants.
    IdentityChanged,
}

impl EndReason {
    /// Stable snake_case form.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Expired => "token_expired",
            EndReason::Revoked => "revoked",
            EndReason::PolicyChanged => "policy_changed",
            EndReason::IdentityChanged => "identity_changed",
        }
    }

    /// Every reason, for exporters that list them all.
    pub const ALL: [EndReason; 4] = [
        EndReason::Expired,
        EndReason::Revoked,
        EndReason::PolicyChanged,
        EndReason::IdentityChanged,
    ];
}

/// A connection's key in a [`Registry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

/// A connection the registry let go of, with why and how to close it.
#[derive(Debug)]
pub struct Ended<H> {
    /// The adapter's handle.
    pub handle: H,
    /// What it was admitted on.
    pub conn: Arc<LiveConn>,
    /// Why it ends.
    pub reason: EndReason,
}

#[derive(Debug)]
struct Entry<H> {
    conn: Arc<LiveConn>,
    handle: H,
}

/// Live connections by id, expiry, session and subject.
#[derive(Debug)]
pub struct Registry<H> {
    next: u64,
    live: HashMap<ConnId, Entry<H>>,
    by_exp: BTreeSet<(UnixTime, ConnId)>,
    by_sid: HashMap<String, Vec<ConnId>>,
    by_subject: HashMap<String, Vec<ConnId>>,
}

impl<H> Default for Registry<H> {
    fn default() -> Self {
        Registry {
            next: 0,
            live: HashMap::new(),
            by_exp: BTreeSet::new(),
            by_sid: HashMap::new(),
            by_subject: HashMap::new(),
        }
    }
}

fn unindex(m: &mut HashMap<String, Vec<ConnId>>, key: &str, id: ConnId) {
    if let Some(v) = m.get_mut(key) {
        v.retain(|x| *x != id);
        if v.is_empty() {
            m.remove(key);
        }
    }
}

impl<H> Registry<H> {
    /// Track a connection; `handle` is what the adapter needs to close it.
    pub fn admit(&mut self, conn: Arc<LiveConn>, handle: H) -> ConnId {
        self.next += 1;
        let id = ConnId(self.next);
        self.by_exp.insert((conn.exp, id));
        if let Some(sid) = &conn.sid {
            self.by_sid.entry(sid.clone()).or_default().push(id);
        }
        self.by_subject
            .entry(conn.subject.clone())
            .or_default()
            .push(id);
        self.live.insert(id, Entry { conn, handle });
        id
    }

    /// Stop tracking (the connection went away by itself); its handle, if it was tracked.
    pub fn forget(&mut self, id: ConnId) -> Option<H> {
        let e = self.live.remove(&id)?;
        self.by_exp.remove(&(e.conn.exp, id));
        if let Some(sid) = &e.conn.sid {
            unindex(&mut self.by_sid, sid, id);
        }
        unindex(&mut self.by_subject, &e.conn.subject, id);
        Some(e.handle)
    }

    /// `id` holds `grants` from now on (a change widened them): later changes are judged
    /// against these. Its handle, to hand them to the adapter; None if it is not tracked.
    pub fn regrant(&mut self, id: ConnId, grants: Arc<CompiledGrants>) -> Option<&H> {
        let e = self.live.get_mut(&id)?;
        let mut conn = (*e.conn).clone();
        conn.grants = grants;
        e.conn = Arc::new(conn);
        Some(&e.handle)
    }

    fn end(&mut self, id: ConnId, reason: EndReason) -> Option<Ended<H>> {
        let conn = self.live.get(&id)?.conn.clone();
        self.forget(id).map(|handle| Ended {
            handle,
            conn,
            reason,
        })
    }

    /// Connections tracked.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The earliest `exp` of any tracked connection.
    pub fn next_expiry(&self) -> Option<UnixTime> {
        self.by_exp.first().map(|(exp, _)| *exp)
    }

    /// End every connection whose token has reached `exp` at `now`.
    pub fn expire(&mut self, now: UnixTime) -> Vec<Ended<H>> {
        let due: Vec<ConnId> = self
            .by_exp
            .iter()
            .take_while(|(exp, _)| *exp <= now)
            .map(|(_, id)| *id)
            .collect();
        due.into_iter()
            .filter_map(|id| self.end(id, EndReason::Expired))
            .collect()
    }

    /// End every connection these revocations name (a subject revocation only reaches tokens
    /// issued up to its instant).
    pub fn revoke(&mut self, changes: &[Revoked]) -> Vec<Ended<H>> {
        let mut hit = Vec::new();
        for r in changes {
            let candidates = match r {
                Revoked::Session(sid) => self.by_sid.get(sid),
                Revoked::Subject(sub, _) => self.by_subject.get(sub),
                Revoked::Identity(..) => None,
            };
            for id in candidates.into_iter().flatten() {
                if self.live.get(id).is_some_and(|e| e.conn.revoked_by(r)) {
                    hit.push(*id);
                }
            }
        }
        hit.into_iter()
            .filter_map(|id| self.end(id, EndReason::Revoked))
            .collect()
    }

    /// Every tracked connection (to recompute grants outside any lock).
    pub fn connections(&self) -> Vec<(ConnId, Arc<LiveConn>)> {
        self.live
            .iter()
            .map(|(id, e)| (*id, e.conn.clone()))
            .collect()
    }

    /// The tracked connections of one subject.
    pub fn connections_of(&self, subject: &str) -> Vec<(ConnId, Arc<LiveConn>)> {
        self.by_subject
            .get(subject)
            .into_iter()
            .flatten()
            .filter_map(|id| self.live.get(id).map(|e| (*id, e.conn.clone())))
            .collect()
    }

    /// End these connections for `reason` (those still tracked).
    pub fn end_all(
        &mut self,
        ids: impl IntoIterator<Item = ConnId>,
        reason: EndReason,
    ) -> Vec<Ended<H>> {
        ids.into_iter()
            .filter_map(|id| self.end(id, reason))
            .collect()
    }
}

#[cfg(test)]
mod tests;
