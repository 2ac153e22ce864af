//! The embedded broker against real MQTT clients (rumqttc v3.1.1 and v5 here; paho-mqtt in the
//! sidecar's tests). Each test starts its own broker on a port the OS picks. One test binary
//! (link time matters on two cores).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod acl;
mod connect;
mod lifetime;
mod mqtt5;
mod sessions;
mod state;

use rand_core::OsRng;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use broker_auth::revocation::RevocationSet;
use broker_auth::token::{Claims, KeySet, TokenAlg, TokenConfig, TokenKey, TokenUse, Verifier};
use broker_auth_mqtt::{EmbeddedBroker, MqttConfig};
use broker_auth_runtime::{Clock, LiveAuth, ManualClock, Runtime};

pub const DEV: &str = "dev-AAAAAAAAAAAAAAAA";
pub const OTHER: &str = "dev-BBBBBBBBBBBBBBBB";

/// A broker with its own keys, revocations and a clock the test can move.
pub struct World {
    pub broker: EmbeddedBroker,
    pub auth: LiveAuth,
    pub cfg: TokenConfig,
    pub clock: Arc<ManualClock>,
    pub port: u16,
    _enforcement: tokio::task::AbortHandle,
}

/// The shipped policies.
pub fn shipped_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

impl World {
    pub async fn start() -> World {
        Self::start_with(MqttConfig::default()).await
    }

    pub async fn start_with(mut config: MqttConfig) -> World {
        let cfg = TokenConfig::new("https://auth.test", "broker-auth");
        let keys = KeySet::new(vec![Arc::new(
            TokenKey::generate(TokenAlg::EdDSA, &mut OsRng).unwrap(),
        )]);
        let auth = LiveAuth::new(
            keys,
            Verifier::new(cfg.clone()),
            RevocationSet::new(),
            broker_auth_runtime::policy_dir::load_dir(&shipped_dir()).unwrap(),
            1000,
        );
        let clock = Arc::new(ManualClock::at(test_support::unix_now()));
        let runtime = Runtime::new(auth.clone(), clock.clone());
        let enforcement = runtime.spawn_enforcement();
        config.tcp = Some("127.0.0.1:0".parse().unwrap());
        let broker = EmbeddedBroker::start(&config, runtime, Default::default())
            .await
            .unwrap();
        let port = broker.addrs().tcp.unwrap().port();
        World {
            broker,
            auth,
            cfg,
            clock,
            port,
            _enforcement: enforcement.abort_handle(),
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn token(&self, sub: &str, f: impl FnOnce(&mut Claims)) -> String {
        let mut c = Claims::new(
            &self.cfg,
            sub,
            self.now(),
            3600,
            TokenUse::Access,
            &mut OsRng,
        );
        f(&mut c);
        self.auth.keys().sign(&c).unwrap()
    }

    pub fn device_token(&self) -> String {
        self.token(DEV, |_| {})
    }

    pub fn admin_token(&self) -> String {
        self.token("adm-WATCHER", |c| c.scopes = vec!["mqtt.admin".into()])
    }
}

/// Long enough for anything a healthy broker does; failures show up as this timeout.
pub const WAIT: Duration = Duration::from_secs(10);

/// rumqttc v3.1.1 client helpers.
pub mod v3 {
    use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet};

    use super::WAIT;

    pub fn options(id: &str, port: u16, password: Option<&str>) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(std::time::Duration::from_secs(30));
        o.set_max_packet_size(1 << 20, 1 << 20);
        if let Some(p) = password {
            o.set_credentials("device", p);
        }
        o
    }

    /// Connect and return the CONNACK code (Ok(client, loop) on success).
    pub async fn connect(o: MqttOptions) -> Result<(AsyncClient, EventLoop), ConnectReturnCode> {
        let (c, mut el) = AsyncClient::new(o, 1000);
        loop {
            match tokio::time::timeout(WAIT, el.poll())
                .await
                .expect("CONNACK in time")
            {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
                    return if a.code == ConnectReturnCode::Success {
                        Ok((c, el))
                    } else {
                        Err(a.code)
                    };
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Err(code),
                Err(e) => panic!("connect failed without a CONNACK: {e:?}"),
            }
        }
    }
}

/// rumqttc v5 client helpers.
pub mod v5 {
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
    use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};

    use super::WAIT;

    pub fn options(id: &str, port: u16, password: Option<&str>) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(std::time::Duration::from_secs(30));
        if let Some(p) = password {
            o.set_credentials("device", p);
        }
        o
    }

    pub async fn connect(o: MqttOptions) -> Result<(AsyncClient, EventLoop), ConnectReturnCode> {
        let (c, mut el) = AsyncClient::new(o, 1000);
        loop {
            match tokio::time::timeout(WAIT, el.poll())
                .await
                .expect("CONNACK in time")
            {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
                    return if a.code == ConnectReturnCode::Success {
                        Ok((c, el))
                    } else {
                        Err(a.code)
                    };
                }
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => return Err(code),
                Err(e) => panic!("connect failed without a CONNACK: {e:?}"),
            }
        }
    }
}

/// Poll a v3 client until `f` picks an event (panics on error or after [`WAIT`]).
pub async fn v3_until<T>(
    el: &mut rumqttc::EventLoop,
    mut f: impl FnMut(rumqttc::Event) -> Option<T>,
) -> T {
    loop {
        let ev = tokio::time::timeout(WAIT, el.poll()).await;
        if let Some(t) = f(ev.expect("event in time").expect("connection alive")) {
            return t;
        }
    }
}

/// Poll a v5 client until `f` picks an event (panics on error or after [`WAIT`]).
pub async fn v5_until<T>(
    el: &mut rumqttc::v5::EventLoop,
    mut f: impl FnMut(rumqttc::v5::Event) -> Option<T>,
) -> T {
    loop {
        let ev = tokio::time::timeout(WAIT, el.poll()).await;
        if let Some(t) = f(ev.expect("event in time").expect("connection alive")) {
            return t;
        }
    }
}

/// Poll until the connection drops; returns how long that took.
pub async fn v3_until_closed(el: &mut rumqttc::EventLoop) -> Duration {
    let t0 = std::time::Instant::now();
    while tokio::time::timeout(WAIT, el.poll())
        .await
        .expect("closed in time")
        .is_ok()
    {}
    t0.elapsed()
}

/// Poll until the connection drops; returns how long that took.
pub async fn v5_until_closed(el: &mut rumqttc::v5::EventLoop) -> Duration {
    let t0 = std::time::Instant::now();
    while tokio::time::timeout(WAIT, el.poll())
        .await
        .expect("closed in time")
        .is_ok()
    {}
    t0.elapsed()
}
