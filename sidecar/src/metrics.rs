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
pub struct OutcomeLabels {
    pub action: &'static str,
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
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
        Metrics {
            registry,
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
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
