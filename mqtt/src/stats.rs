//! Counters the embedded broker keeps for whoever exports metrics (the sidecar mirrors them into
//! Prometheus at scrape time). Plain atomics: the hot path pays one relaxed add per event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (µs) of the hook latency buckets; the last bucket is open-ended.
pub const LATENCY_BUCKETS_US: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 1000, 10_000];

/// A fixed-bucket latency histogram (cumulative counts are computed when read).
#[derive(Debug, Default)]
pub struct Latency {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_ns: AtomicU64,
}

impl Latency {
    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Per-bucket counts (not cumulative), the last one for everything above the top bound.
    pub fn counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// Sum of all observations in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
    }
}

/// What the broker's hooks decided, by outcome.
#[derive(Debug, Default)]
pub struct MqttStats {
    /// CONNECTs accepted.
    pub connects_accepted: AtomicU64,
    /// CONNECTs refused, by reason code.
    refused: broker_auth::decision::ReasonCounts,
    /// PUBLISHes refused by the ACL.
    pub publish_denied: AtomicU64,
    /// SUBSCRIBE filters refused by the ACL.
    pub subscribe_denied: AtomicU64,
    /// ACL refusals by reason code.
    denied_by_reason: broker_auth::decision::ReasonCounts,
    /// Sessions closed because their token expired.
    pub closed_expired: AtomicU64,
    /// Sessions closed because their session or identity was revoked.
    pub closed_revoked: AtomicU64,
    /// Sessions closed because a policy change narrowed their grants.
    pub closed_policy: AtomicU64,
    /// Sessions closed because a change to their identity narrowed their grants.
    pub closed_identity: AtomicU64,
    /// Sessions connected now (admitted, not yet gone).
    pub live_sessions: std::sync::atomic::AtomicI64,
    /// Subscriptions a resumed session inherited but its current grants no longer cover.
    pub inherited_subscriptions_dropped: AtomicU64,
    /// Queued or in-flight messages a resumed session inherited outside its current grants.
    pub inherited_messages_dropped: AtomicU64,
    /// Connections closed at the socket by a listener's front, by reason.
    shut: broker_auth::decision::ReasonCounts,
    /// Failed CONNECTs whose refusal was held back (the address was over its allowance).
    pub connects_held: AtomicU64,
    /// Time spent in the CONNECT hook (token verification and grants).
    pub connect_latency: Latency,
    /// Time spent in the per-message ACL hooks (one call in 32 is timed).
    pub acl_latency: Latency,
}

impl MqttStats {
    pub(crate) fn refuse(&self, reason: &'static str) {
        self.refused.add(reason);
    }

    pub(crate) fn shut(&self, reason: &'static str) {
        self.shut.add(reason);
    }

    /// Connections closed at the socket (`too_many_connections`, `locked_out`, `banned`,
    /// `handshake_timeout`), sorted.
    pub fn shut_at_socket(&self) -> Vec<(&'static str, u64)> {
        self.shut.sorted()
    }

    /// Count a session the runtime ended.
    pub(crate) fn closed(&self, reason: broker_auth::enforce::EndReason) {
        use broker_auth::enforce::EndReason as R;
        let c = match reason {
            R::Expired => &self.closed_expired,
            R::Revoked => &self.closed_revoked,
            R::PolicyChanged => &self.closed_policy,
            R::IdentityChanged => &self.closed_identity,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a refused SUBSCRIBE filter or PUBLISH, by action and reason code.
    pub(crate) fn deny(&self, action: broker_auth::Action, code: broker_auth::DenyCode) {
        let c = match action {
            broker_auth::Action::Publish => &self.publish_denied,
            _ => &self.subscribe_denied,
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.denied_by_reason.add(code.as_str());
    }

    /// Refused SUBSCRIBE filters and PUBLISHes by reason code, sorted.
    pub fn denials(&self) -> Vec<(&'static str, u64)> {
        self.denied_by_reason.sorted()
    }

    /// Refused CONNECTs by reason code, sorted.
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        self.refused.sorted()
    }

    /// Convenience read of a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
