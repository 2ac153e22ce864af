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
    pub route: String,
    pub status: u16,
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
        Metrics {
            registry,
            requests,
            outcomes,
            rate_limited,
            revocations,
            identities,
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
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
