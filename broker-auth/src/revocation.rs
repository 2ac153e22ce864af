//! The revocation set: session ids (`sid`) and identity ids whose tokens must stop working, and
//! identities whose attributes changed after tokens were issued to them.
//!
//! Adapters fill it from the store and the revocation feed; lookups are in-memory reads on the
//! hot path. Entries carry the time after which every token they could match has expired anyway,
//! so the set can be pruned without forgetting a live revocation.
//!
//! An identity update is not a revocation: a token issued before it still proves who the client
//! is, but what the token says about the identity (roles, scopes, tenant, devices) is stale, so
//! the connect decision reads those from the update instead ([`IdentityAttrs::apply`]). A removed
//! role therefore stops granting at once (live connections are re-checked, the next connect with
//! the old token does not get it back), and an added one applies at the next connect.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::UnixTime;
use crate::identity::IdentityType;
use crate::token::Claims;

/// Anything that can say whether a session or identity is revoked.
pub trait Revocations: Send + Sync {
    /// True when tokens with this session id must be refused.
    fn is_session_revoked(&self, sid: &str) -> bool;
    /// True when every token of this identity issued at or before `issued_at` must be refused.
    fn is_subject_revoked(&self, sub: &str, issued_at: UnixTime) -> bool;
    /// The identity's current attributes, when they changed after a token issued at `issued_at`.
    fn identity_update(&self, _sub: &str, _issued_at: UnixTime) -> Option<Arc<IdentityAttrs>> {
        None
    }
}

/// What a token says about its identity, as the identity says it now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityAttrs {
    /// Identity type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<IdentityType>,
    /// Tenant (app id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Roles in the tenant.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// A gateway's devices.
    #[serde(default)]
    pub devices: Vec<String>,
}

impl IdentityAttrs {
    /// Replace what `claims` say about the identity by these attributes.
    pub fn apply(&self, claims: &mut Claims) {
        if self.kind.is_some() {
            claims.idt = self.kind;
        }
        claims.tenant = self.tenant.clone();
        claims.app_id = self.tenant.clone();
        claims.roles = self.roles.clone();
        claims.scopes = self.scopes.clone();
        claims.groups = self.groups.clone();
        claims.devices = self.devices.clone();
    }
}

/// No revocations (tests, and tokens without sessions).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRevocations;

impl Revocations for NoRevocations {
    fn is_session_revoked(&self, _sid: &str) -> bool {
        false
    }
    fn is_subject_revoked(&self, _sub: &str, _issued_at: UnixTime) -> bool {
        false
    }
}

/// One recorded revocation, as the change log reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// A session id.
    Session(String),
    /// Every token of a subject issued up to the instant.
    Subject(String, UnixTime),
    /// A subject's attributes changed at the instant (tokens issued up to it are stale).
    Identity(String, UnixTime),
}

/// An identity's latest update: changed at, attributes now, forget after.
type IdentityUpdate = (UnixTime, Arc<IdentityAttrs>, UnixTime);

/// How many recent revocations the change log keeps for watchers (connection cutters).
const CHANGE_LOG: usize = 65_536;

/// In-memory revocation set shared by every enforcement point of a process.
#[derive(Debug, Default)]
pub struct RevocationSet {
    // sid -> time after which it can be forgotten
    sessions: RwLock<HashMap<String, UnixTime>>,
    // subject -> (revoked-before instant, forget-after)
    subjects: RwLock<HashMap<String, (UnixTime, UnixTime)>>,
    // subject -> its latest update
    identities: RwLock<HashMap<String, IdentityUpdate>>,
    // (sequence, what) of recent revocations, for whoever must cut live connections
    changes: RwLock<(u64, VecDeque<(u64, Revoked)>)>,
}

impl RevocationSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Revoke a session until `forget_after` (the latest expiry of any token bound to it).
    pub fn revoke_session(&self, sid: &str, forget_after: UnixTime) {
        if let Ok(mut m) = self.sessions.write() {
            let e = m.entry(sid.to_owned()).or_insert(forget_after);
            *e = (*e).max(forget_after);
        }
        self.log(Revoked::Session(sid.to_owned()));
    }

    /// Revoke every token of `sub` issued at or before `before`.
    pub fn revoke_subject(&self, sub: &str, before: UnixTime, forget_after: UnixTime) {
        if let Ok(mut m) = self.subjects.write() {
            let e = m.entry(sub.to_owned()).or_insert((before, forget_after));
            e.0 = e.0.max(before);
            e.1 = e.1.max(forget_after);
        }
        self.log(Revoked::Subject(sub.to_owned(), before));
    }

    /// Record that `sub`'s attributes are `attrs` since `at`; tokens issued up to `at` are read
    /// with them until `forget_after` (when every such token has expired).
    pub fn update_identity(
        &self,
        sub: &str,
        at: UnixTime,
        attrs: IdentityAttrs,
        forget_after: UnixTime,
    ) {
        if let Ok(mut m) = self.identities.write() {
            let keep = m.get(sub).is_some_and(|(prev, _, _)| *prev > at);
            if !keep {
                m.insert(sub.to_owned(), (at, Arc::new(attrs), forget_after));
            }
        }
        self.log(Revoked::Identity(sub.to_owned(), at));
    }

    /// The newest recorded sequence number (what a watcher starting now has seen).
    pub fn cursor(&self) -> u64 {
        self.changes.read().map(|c| c.0).unwrap_or(0)
    }

    fn log(&self, what: Revoked) {
        if let Ok(mut c) = self.changes.write() {
            c.0 += 1;
            let seq = c.0;
            c.1.push_back((seq, what));
            while c.1.len() > CHANGE_LOG {
                c.1.pop_front();
            }
        }
    }

    /// Revocations recorded after sequence `since`, and the sequence to ask from next time. A
    /// watcher that fell more than the log's length behind gets what is left (the set itself is
    /// always complete; only the cutting of already-open connections relies on the log).
    pub fn changes_since(&self, since: u64) -> (Vec<Revoked>, u64) {
        match self.changes.read() {
            Ok(c) => (
                c.1.iter()
                    .filter(|(s, _)| *s > since)
                    .map(|(_, r)| r.clone())
                    .collect(),
                c.0,
            ),
            Err(_) => (vec![], since),
        }
    }

    /// Drop entries no live token can match any more.
    pub fn prune(&self, now: UnixTime) {
        if let Ok(mut m) = self.sessions.write() {
            m.retain(|_, until| *until > now);
        }
        if let Ok(mut m) = self.subjects.write() {
            m.retain(|_, (_, until)| *until > now);
        }
        if let Ok(mut m) = self.identities.write() {
            m.retain(|_, (_, _, until)| *until > now);
        }
    }

    /// Number of entries (sessions + subjects).
    pub fn len(&self) -> usize {
        self.sessions.read().map(|m| m.len()).unwrap_or(0)
            + self.subjects.read().map(|m| m.len()).unwrap_or(0)
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Revocations for RevocationSet {
    fn is_session_revoked(&self, sid: &str) -> bool {
        // A poisoned lock means a writer panicked: fail closed.
        self.sessions
            .read()
            .map(|m| m.contains_key(sid))
            .unwrap_or(true)
    }
    fn is_subject_revoked(&self, sub: &str, issued_at: UnixTime) -> bool {
        self.subjects
            .read()
            .map(|m| m.get(sub).is_some_and(|(before, _)| issued_at <= *before))
            .unwrap_or(true)
    }
    fn identity_update(&self, sub: &str, issued_at: UnixTime) -> Option<Arc<IdentityAttrs>> {
        // A poisoned lock cannot say what changed; the token's own claims are then all we have,
        // and subject revocation (checked first) still stops a disabled identity.
        let m = self.identities.read().ok()?;
        m.get(sub)
            .filter(|(at, _, _)| issued_at <= *at)
            .map(|(_, attrs, _)| attrs.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_and_prune() {
        let r = RevocationSet::new();
        assert!(!r.is_session_revoked("s1"));
        r.revoke_session("s1", 100);
        assert!(r.is_session_revoked("s1"));
        r.revoke_subject("dev-1", 50, 200);
        assert!(r.is_subject_revoked("dev-1", 50));
        assert!(
            !r.is_subject_revoked("dev-1", 51),
            "tokens issued after the revocation live"
        );
        r.prune(150);
        assert!(!r.is_session_revoked("s1"));
        assert!(r.is_subject_revoked("dev-1", 10));
        r.prune(300);
        assert!(r.is_empty());
        let (changes, next) = r.changes_since(0);
        assert_eq!(
            changes,
            vec![
                Revoked::Session("s1".into()),
                Revoked::Subject("dev-1".into(), 50)
            ]
        );
        assert_eq!(r.changes_since(next).0, vec![]);
        r.revoke_session("s2", 400);
        assert_eq!(r.changes_since(next).0, vec![Revoked::Session("s2".into())]);
    }

    #[test]
    fn identity_updates_apply_to_tokens_issued_up_to_them() {
        let r = RevocationSet::new();
        let attrs = IdentityAttrs {
            roles: vec!["reader".into()],
            ..Default::default()
        };
        r.update_identity("usr-1", 100, attrs.clone(), 500);
        assert_eq!(r.identity_update("usr-1", 100).as_deref(), Some(&attrs));
        assert_eq!(
            r.identity_update("usr-1", 101),
            None,
            "a newer token is current"
        );
        assert_eq!(r.identity_update("usr-2", 50), None);
        // An older update arriving late does not replace a newer one.
        r.update_identity("usr-1", 90, IdentityAttrs::default(), 500);
        assert_eq!(r.identity_update("usr-1", 80).as_deref(), Some(&attrs));
        assert_eq!(
            r.changes_since(0).0.last(),
            Some(&Revoked::Identity("usr-1".into(), 90))
        );
        r.prune(600);
        assert_eq!(r.identity_update("usr-1", 80), None);
    }
}
