//! What the sidecar lets in at the socket, before any protocol: the REST listener's read
//! deadlines and per-address cap ([`ConnectionArgs`] → [`crate::http_server::HttpLimits`]), and
//! the embedded MQTT broker's [`Doorman`]: the HTTP rate limiter with its persisted ban list, so
//! a lockout or ban earned on one side closes the other too.
//!
//! MQTT failed CONNECTs (a bad or expired token, a wrong key) count in the limiter as the route
//! `mqtt_connect`, under the same limits as an HTTP route: within the allowance a refusal is
//! answered at once; over it each refusal is held for `--mqtt-failed-connect-delay` before
//! CONNACK (one violation each); enough violations lock the address out, and it is closed at
//! accept until the lockout ends; repeated lockouts ban it (persisted, listed and lifted with
//! the admin ban routes). A successful CONNECT counts nothing.

use std::net::IpAddr;
use std::time::Duration;

use broker_auth_runtime::door::{Doorman, PerAddress, Shut};
use clap::Args;

use crate::http_server::{Door, HttpLimits};
use crate::ratelimit::Refusal;
use crate::state::State;

/// Limits at the socket: the REST listener's, and the failed-CONNECT delay of the MQTT ones
/// (their caps and handshake deadline are with the other MQTT flags).
#[derive(Args, Clone, Debug)]
pub struct ConnectionArgs {
    /// Seconds a client has to send a request's head (also: an idle keep-alive connection's
    /// life, and how long a connection that sends nothing stays open).
    #[arg(long, env = "HTTP_HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_header_timeout: u64,
    /// Seconds a client has to send a request's body once its head is in.
    #[arg(long, env = "HTTP_BODY_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_body_timeout: u64,
    /// Open REST connections per client address (0 = no cap); TRUSTED_PROXIES are exempt.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: u32,
    /// Milliseconds a failed MQTT CONNECT over the address's allowance (RATE_LIMIT) is held
    /// before it is refused.
    #[arg(long, env = "MQTT_FAILED_CONNECT_DELAY_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub mqtt_failed_connect_delay_ms: u64,
}

impl ConnectionArgs {
    /// The REST listener's limits.
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(self.http_header_timeout),
            body_timeout: Duration::from_secs(self.http_body_timeout),
            per_address: self.max_connections_per_ip,
            drain: Duration::from_secs(10),
        }
    }

    /// Who the REST listener admits at accept.
    pub fn http_door(&self, trusted: &[ipnet::IpNet]) -> Door {
        Door {
            per_address: PerAddress::new(self.max_connections_per_ip),
            trusted: trusted.to_vec(),
        }
    }
}

/// The embedded broker's doorman: the process's rate limiter and ban list.
pub struct SidecarDoor {
    state: State,
    delay: Duration,
}

impl SidecarDoor {
    pub fn new(state: State) -> Self {
        let delay = Duration::from_millis(state.config.connections.mqtt_failed_connect_delay_ms);
        SidecarDoor { state, delay }
    }
}

/// The route failed MQTT CONNECTs are counted under.
const MQTT_CONNECT: &str = "mqtt_connect";

impl Doorman for SidecarDoor {
    fn standing(&self, ip: IpAddr) -> Option<Shut> {
        match self
            .state
            .limiter
            .standing(ip, self.state.clock.now_millis())?
        {
            Refusal::Banned { .. } => Some(Shut::Banned),
            Refusal::LockedOut { .. } | Refusal::RateLimited { .. } => Some(Shut::LockedOut),
        }
    }

    fn failed(&self, ip: IpAddr) -> Duration {
        let now = self.state.clock.now_millis();
        match self.state.limiter.check(ip, MQTT_CONNECT, now) {
            Ok(()) => Duration::ZERO,
            Err(refusal) => {
                self.state.metrics.rate_limited.inc();
                if let Refusal::Banned { new: true } = refusal {
                    // Persisted off the hook's path; the limiter already refuses the address,
                    // so the ban holds in this process even before the write lands.
                    let state = self.state.clone();
                    tokio::spawn(async move {
                        if let Err(e) = crate::domain::ops::record_ban(&state, ip).await {
                            tracing::error!(%ip, error = %e, "cannot persist a ban (it holds until restart)");
                        }
                    });
                }
                self.delay
            }
        }
    }
}
