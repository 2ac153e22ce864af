//! The revocation set: session ids (`sid`) and identity ids whose tokens must stop working.
//!
//! Adapters fill it from the store and the revocation feed; lookups are in-memory reads on the
//! hot path. Entries carry the time after which every token they could match has expired anyway,
//! so the set can be pruned without forgetting a live revocation.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::UnixTime;

/// Anything that can say whether a session or identity is revoked.
pub trait Revocations: Send + Sync {
    /// True when tokens with this session id must be refused.
    fn is_session_revoked(&self, sid: &str) -> bool;
    /// True when every token of this identity issued at or before `issued_at` must be refused.
    fn is_subject_revoked(&self, sub: &str, issued_at: UnixTime) -> bool;
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

/// In-memory revocation set shared by every enforcement point of a process.
#[derive(Debug, Default)]
pub struct RevocationSet {
    // sid -> time after which it can be forgotten
    sessions: RwLock<HashMap<String, UnixTime>>,
    // subject -> (revoked-before instant, forget-after)
    subjects: RwLock<HashMap<String, (UnixTime, UnixTime)>>,
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
    }

    /// Revoke every token of `sub` issued at or before `before`.
    pub fn revoke_subject(&self, sub: &str, before: UnixTime, forget_after: UnixTime) {
        if let Ok(mut m) = self.subjects.write() {
            let e = m.entry(sub.to_owned()).or_insert((before, forget_after));
            e.0 = e.0.max(before);
            e.1 = e.1.max(forget_after);
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
    }
}
