//! Prometheus metrics (`GET /metrics`): requests by route and status, authentication outcomes by
//! reason, rate-limit refusals, revocations. Labels are route names and reason codes, never
//! identities or tokens.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// Histogram-shaped series (`le` buckets, cumulative) mirrored from the broker's own buckets.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BucketLabels {
    pub hook: &'static str,
    pub le: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    pub hook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub action: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyChangeLabels {
    pub source: &'static str,
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// The live policy version.
    pub policy_version: Gauge,
    /// Policy changes by source (dir, api, rollback) and result (deployed, refused, conflict).
    pub policy_changes: Family<PolicyChangeLabels, Counter>,
    pub requests: Family<RouteLabels, Counter>,
    pub outcomes: Family<OutcomeLabels, Counter>,
    pub rate_limited: Counter,
    pub revocations: Counter,
    pub identities: Gauge,
    /// The in-process NATS callout's counters, mirrored at render time.
    pub callout: std::sync::Arc<callout::service::Stats>,
    callout_answered: Gauge,
    callout_accepted: Gauge,
    callout_kicked: Gauge,
    callout_unanswerable: Gauge,
    callout_denied: Family<ReasonLabels, Gauge>,
    /// The embedded MQTT broker's counters, mirrored at render time.
    pub mqtt_stats: std::sync::Arc<broker_auth_mqtt::MqttStats>,
    mqtt: MqttGauges,
}

#[derive(Default)]
struct MqttGauges {
    accepted: Gauge,
    refused: Family<ReasonLabels, Gauge>,
    denied: Family<ActionLabels, Gauge>,
    closed: Family<ReasonLabels, Gauge>,
    inherited_dropped: Family<KindLabels, Gauge>,
    shut: Family<ReasonLabels, Gauge>,
    held: Gauge,
    latency_bucket: Family<BucketLabels, Gauge>,
    latency_count: Family<HookLabels, Gauge>,
    latency_sum: Family<HookLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl MqttGauges {
    fn register(&self, r: &mut Registry) {
        r.register(
            "mqtt_connects_accepted",
            "MQTT CONNECTs accepted",
            self.accepted.clone(),
        );
        r.register(
            "mqtt_connects_refused",
            "MQTT CONNECTs refused, by reason",
            self.refused.clone(),
        );
        r.register(
            "mqtt_acl_denied",
            "MQTT ACL denials, by action",
            self.denied.clone(),
        );
        r.register(
            "mqtt_sessions_closed",
            "MQTT sessions closed by us, by reason (token expired, revoked, policy changed)",
            self.closed.clone(),
        );
        r.register(
            "mqtt_inherited_dropped",
            "What resumed MQTT sessions inherited outside their current grants and lost, by kind",
            self.inherited_dropped.clone(),
        );
        r.register(
            "mqtt_connections_shut",
            "MQTT connections closed at the socket before CONNECT was decided, by reason",
            self.shut.clone(),
        );
        r.register(
            "mqtt_connects_held",
            "Failed MQTT CONNECTs held back because their address was over its allowance",
            self.held.clone(),
        );
        r.register(
            "mqtt_hook_latency_seconds_bucket",
            "Time in the MQTT hooks: cumulative counts by upper bound",
            self.latency_bucket.clone(),
        );
        r.register(
            "mqtt_hook_latency_seconds_count",
            "MQTT hook invocations",
            self.latency_count.clone(),
        );
        r.register(
            "mqtt_hook_latency_seconds_sum",
            "Total time in the MQTT hooks",
            self.latency_sum.clone(),
        );
    }

    fn mirror(&self, s: &broker_auth_mqtt::MqttStats) {
        use broker_auth_mqtt::MqttStats as S;
        use broker_auth_mqtt::stats::LATENCY_BUCKETS_US;
        self.accepted.set(S::get(&s.connects_accepted) as i64);
        for (reason, n) in s.refusals() {
            self.refused
                .get_or_create(&ReasonLabels { reason })
                .set(n as i64);
        }
        for (action, c) in [
            ("publish", &s.publish_denied),
            ("subscribe", &s.subscribe_denied),
        ] {
            self.denied
                .get_or_create(&ActionLabels { action })
                .set(S::get(c) as i64);
        }
        for (reason, c) in [
            ("token_expired", &s.closed_expired),
            ("revoked", &s.closed_revoked),
            ("policy_changed", &s.closed_policy),
        ] {
            self.closed
                .get_or_create(&ReasonLabels { reason })
                .set(S::get(c) as i64);
        }
        for (kind, c) in [
            ("subscription", &s.inherited_subscriptions_dropped),
            ("message", &s.inherited_messages_dropped),
        ] {
            self.inherited_dropped
                .get_or_create(&KindLabels { kind })
                .set(S::get(c) as i64);
        }
        for (reason, n) in s.shut_at_socket() {
            self.shut
                .get_or_create(&ReasonLabels { reason })
                .set(n as i64);
        }
        self.held.set(S::get(&s.connects_held) as i64);
        for (hook, l) in [("connect", &s.connect_latency), ("acl", &s.acl_latency)] {
            let mut total = 0u64;
            let counts = l.counts();
            for (i, n) in counts.iter().enumerate() {
                total += n;
                let le = LATENCY_BUCKETS_US
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |us| format!("{}", *us as f64 / 1e6));
                self.latency_bucket
                    .get_or_create(&BucketLabels { hook, le })
                    .set(total as i64);
            }
            self.latency_count
                .get_or_create(&HookLabels { hook })
                .set(total as i64);
            self.latency_sum
                .get_or_create(&HookLabels { hook })
                .set(l.sum_seconds());
        }
    }
}

/// The live policy version and the changes by source and result, registered.
fn policy_metrics(registry: &mut Registry) -> (Gauge, Family<PolicyChangeLabels, Counter>) {
    let version = Gauge::default();
    let changes = Family::<PolicyChangeLabels, Counter>::default();
    registry.register("policy_version", "The live policy version", version.clone());
    registry.register(
        "policy_changes",
        "Policy changes by source and result",
        changes.clone(),
    );
    (version, changes)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("broker_auth");
        let requests = Family::<RouteLabels, Counter>::default();
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        let rate_limited = Counter::default();
        let revocations = Counter::default();
        let identities = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "auth_outcomes",
            "Authentication outcomes by action and result",
            outcomes.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by the rate limiter",
            rate_limited.clone(),
        );
        registry.register("revocations", "Revocations recorded", revocations.clone());
        registry.register("identities", "Registered identities", identities.clone());
        let (callout_answered, callout_accepted, callout_kicked, callout_unanswerable) = (
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
        );
        let callout_denied = Family::<ReasonLabels, Gauge>::default();
        registry.register(
            "callout_answered",
            "NATS authorization requests answered",
            callout_answered.clone(),
        );
        registry.register(
            "callout_accepted",
            "NATS connects allowed",
            callout_accepted.clone(),
        );
        registry.register(
            "callout_denied",
            "NATS connects denied, by reason",
            callout_denied.clone(),
        );
        registry.register(
            "callout_kicked",
            "Live NATS connections cut after a revocation",
            callout_kicked.clone(),
        );
        registry.register(
            "callout_unanswerable",
            "NATS requests that could not be answered (fail closed)",
            callout_unanswerable.clone(),
        );
        let mqtt = MqttGauges::default();
        mqtt.register(&mut registry);
        let (policy_version, policy_changes) = policy_metrics(&mut registry);
        Metrics {
            registry,
            policy_version,
            policy_changes,
            requests,
            outcomes,
            rate_limited,
            revocations,
            identities,
            callout: Default::default(),
            callout_answered,
            callout_accepted,
            callout_kicked,
            callout_unanswerable,
            callout_denied,
            mqtt_stats: Default::default(),
            mqtt,
        }
    }
}

impl Metrics {
    pub fn outcome(&self, action: &'static str, result: &'static str) {
        self.outcomes
            .get_or_create(&OutcomeLabels { action, result })
            .inc();
    }

    pub fn render(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.callout;
        self.callout_answered.set(c.answered.load(Relaxed) as i64);
        self.callout_accepted.set(c.accepted.load(Relaxed) as i64);
        self.callout_kicked.set(c.kicked.load(Relaxed) as i64);
        self.callout_unanswerable
            .set(c.unanswerable.load(Relaxed) as i64);
        for (reason, n) in c.denials() {
            self.callout_denied
                .get_or_create(&ReasonLabels { reason })
                .set(n as i64);
        }
        self.mqtt.mirror(&self.mqtt_stats);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
