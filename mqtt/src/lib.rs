//! # broker-auth-mqtt: the embedded MQTT broker (rmqtt as a library) with our decisions in its hooks
//!
//! A thin adapter: the decisions are the pure core's (`broker-auth`), the live inputs the
//! runtime's (`broker-auth-runtime`); this crate wires them into rmqtt's hooks and registry.
//! rmqtt runs on the caller's tokio runtime (one task per connection, no threads of its own).
//!
//! rmqtt's defaults are unsafe for an auth product and each is overridden here:
//! anonymous clients are refused (`allow_anonymous(false)`: otherwise a CONNECT without a username
//! skips the authentication hook); both ACL hooks answer explicitly (rmqtt allows when no hook
//! answers); the Last Will topic is checked at CONNECT (rmqtt never checks wills); the busy check
//! is off (it refuses connects based on the machine's CPU load); the per-session queue is deep
//! enough that a burst of acknowledged QoS1 messages is delivered rather than dropped. rmqtt
//! reads a new socket's first bytes with no deadline, so each listener has a front of ours that
//! enforces the handshake deadline, the per-address cap and the shared ban list ([`front`]).
//! Shared subscriptions and retained messages are rmqtt's own plugins ([`state`]): without the
//! first, rmqtt accepts a `$share/…` subscription and delivers nothing to it.
//! rmqtt lets any CONNECT take over the session of its client id; here a session belongs to the
//! identity that made it, and a resumed one keeps only what its current grants cover
//! ([`sessions`]).

mod front;
mod hooks;
mod parked;
mod sessions;
mod state;
pub mod stats;

pub use state::RetainedStore;

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::hook::Type;
use rmqtt::net::{Builder, Listener};
use rmqtt::server::MqttServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use broker_auth_runtime::door::{Doorman, OpenDoor};

use broker_auth::enforce::{ConnId, EndReason, LiveConn};
use broker_auth_runtime::{Ender, Runtime};
use rmqtt::types::{Message, Reason, Tx};
pub use stats::MqttStats;

/// The embedded broker could not start (bind, TLS material, limits).
#[derive(Debug, thiserror::Error)]
#[error("mqtt broker: {what}: {source}")]
pub struct MqttError {
    what: String,
    /// rmqtt's (or the OS's) own error.
    #[source]
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

type Result<T> = std::result::Result<T, MqttError>;

/// A TLS listener: address plus PEM certificate chain and private key paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsListener {
    /// Address to bind.
    pub addr: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Listeners and limits of the embedded broker.
#[derive(Clone, Debug)]
pub struct MqttConfig {
    /// Plain MQTT over TCP.
    pub tcp: Option<SocketAddr>,
    /// MQTT over WebSocket (subprotocol `mqtt`).
    pub ws: Option<SocketAddr>,
    /// MQTT over TLS.
    pub tls: Option<TlsListener>,
    /// Unacknowledged QoS1/2 messages in flight to one client.
    pub max_inflight: u16,
    /// Messages queued for one client before new ones are dropped.
    pub max_queue: usize,
    /// Largest MQTT packet accepted, in bytes.
    pub max_packet_size: u32,
    /// Concurrent connections per listener.
    pub max_connections: usize,
    /// Time a client has from accept to a CONNECT packet our hook has seen, enforced by the
    /// front of each listener ([`front`]); rmqtt's own applies after its version probe only.
    pub handshake_timeout: Duration,
    /// Open connections per client address, over all listeners (0 = no cap).
    pub per_address: u32,
    /// How long a persisted session outlives its connection (v3.1.1 clean-session false), and
    /// the most a v5 client may ask for. Until it expires its client id stays bound to the
    /// identity that made it.
    pub session_expiry: Duration,
    /// Where retained messages are kept.
    pub retained: RetainedStore,
    /// Retained messages kept at most (a store a client could otherwise grow without bound);
    /// past it a new retained topic is not stored (its PUBLISH is still delivered).
    pub max_retained: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            tcp: Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
            ws: None,
            tls: None,
            max_inflight: 256,
            // rmqtt's default (1,000) dropped 42 % of a 100k QoS1 burst that had been
            // acknowledged to the publisher. The queue is allocated as it fills.
            max_queue: 200_000,
            max_packet_size: 1024 * 1024,
            max_connections: 100_000,
            handshake_timeout: Duration::from_secs(10),
            // Generous: gateways behind one NAT share an address; a flood from one is still
            // bounded well below the process's descriptor limit.
            per_address: 1000,
            // rmqtt's v3.1.1 default; rmqtt leaves v5 requests uncapped (up to 136 years).
            session_expiry: Duration::from_secs(2 * 3600),
            retained: RetainedStore::Memory,
            max_retained: 100_000,
        }
    }
}

/// What a connected session may do, kept in the session for its lifetime.
#[derive(Debug)]
pub struct SessionAuth {
    /// What the session was admitted on: principal, token, grants.
    pub conn: Arc<LiveConn>,
    /// The grants every SUBSCRIBE and PUBLISH is checked against: the admitted ones, or what a
    /// later change widened them to (a narrowing change closes the session instead).
    grants: arc_swap::ArcSwap<broker_auth::grants::CompiledGrants>,
    /// Its key in the runtime's registry, once admitted.
    id: std::sync::OnceLock<ConnId>,
    /// Set when the session went away (rmqtt reports it more than once).
    gone: std::sync::atomic::AtomicBool,
}

impl SessionAuth {
    fn new(conn: LiveConn) -> Self {
        SessionAuth {
            grants: arc_swap::ArcSwap::new(conn.grants.clone()),
            conn: Arc::new(conn),
            id: Default::default(),
            gone: Default::default(),
        }
    }
}

/// How the runtime closes an MQTT session: its channel, with the reason, counted.
struct SessionEnder {
    tx: Tx,
    stats: Arc<MqttStats>,
    auth: Arc<SessionAuth>,
}

impl Ender for SessionEnder {
    fn end(&self, _conn: &LiveConn, reason: EndReason) {
        self.stats.closed(reason);
        // The session may already be gone; then there is nothing left to close.
        let _ = self
            .tx
            .unbounded_send(Message::Closed(Reason::from_static(reason.as_str())));
    }

    fn widen(&self, grants: &Arc<broker_auth::grants::CompiledGrants>) {
        self.auth.grants.store(grants.clone());
    }
}

/// A running embedded broker.
pub struct EmbeddedBroker {
    addrs: BoundAddrs,
    stats: Arc<MqttStats>,
    tasks: Vec<JoinHandle<()>>,
}

/// The addresses actually bound (port 0 resolved).
#[derive(Clone, Copy, Debug, Default)]
pub struct BoundAddrs {
    /// TCP listener.
    pub tcp: Option<SocketAddr>,
    /// WebSocket listener.
    pub ws: Option<SocketAddr>,
    /// TLS listener.
    pub tls: Option<SocketAddr>,
}

fn broker_err(what: &str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> MqttError {
    MqttError {
        what: what.to_owned(),
        source: e.into(),
    }
}

impl EmbeddedBroker {
    /// [`EmbeddedBroker::start_with`] with a doorman that refuses nobody (tests, benchmarks).
    pub async fn start(
        config: &MqttConfig,
        runtime: Runtime,
        stats: Arc<MqttStats>,
    ) -> Result<Self> {
        Self::start_with(config, runtime, stats, Arc::new(OpenDoor)).await
    }

    /// Bind every configured listener, install the hooks and start serving on the current
    /// tokio runtime. Binding errors (port in use, unreadable TLS files) are returned here.
    /// Decisions come from `runtime`, whose enforcement task (started by the caller, shared
    /// with the process's other adapters) ends sessions; `stats` is where the hooks count;
    /// `doorman` says which addresses are closed at the socket and counts failed CONNECTs.
    pub async fn start_with(
        config: &MqttConfig,
        runtime: Runtime,
        stats: Arc<MqttStats>,
        doorman: Arc<dyn Doorman>,
    ) -> Result<Self> {
        let scx = state::configs(config)
            .into_iter()
            .fold(ServerContext::new(), |b, (name, toml)| {
                b.plugins_config_map_add(name, toml)
            })
            .busy_check_enable(false)
            .mqtt_max_sessions(0)
            .build()
            .await;
        state::start(&scx)
            .await
            .map_err(|e| broker_err("plugins", e))?;
        let door = front::Door::new(
            doorman,
            config.per_address,
            config.handshake_timeout,
            stats.clone(),
        );
        install_hooks(&scx, runtime, stats.clone(), door.clone()).await;

        let mut addrs = BoundAddrs::default();
        let mut tasks = Vec::new();
        let mut server = MqttServer::new(scx.clone());
        if let Some(a) = config.tcp {
            let (l, public) = inner(listener(config, "tcp")?, a).await?;
            addrs.tcp = Some(local_of(&public)?);
            let at = local(&l)?;
            tasks.push(tokio::spawn(door.clone().run(public, at)));
            server = server.listener_by_id(l.tcp().map_err(|e| broker_err("tcp", e))?, at.port());
        }
        if let Some(a) = config.ws {
            let (l, public) = inner(listener(config, "ws")?, a).await?;
            addrs.ws = Some(local_of(&public)?);
            let at = local(&l)?;
            tasks.push(tokio::spawn(door.clone().run(public, at)));
            server = server.listener_by_id(l.ws().map_err(|e| broker_err("ws", e))?, at.port());
        }
        if let Some(t) = &config.tls {
            for p in [&t.cert, &t.key] {
                std::fs::metadata(p).map_err(|e| broker_err(&p.display().to_string(), e))?;
            }
            let b = listener(config, "tls")?
                .tls_cert(Some(t.cert.display().to_string()))
                .tls_key(Some(t.key.display().to_string()));
            let (l, public) = inner(b, t.addr).await?;
            addrs.tls = Some(local_of(&public)?);
            let at = local(&l)?;
            tasks.push(tokio::spawn(door.clone().run(public, at)));
            server = server.listener_by_id(l.tls().map_err(|e| broker_err("tls", e))?, at.port());
        }
        let server = server.build();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        }));
        Ok(Self {
            addrs,
            stats,
            tasks,
        })
    }

    /// The bound addresses.
    pub fn addrs(&self) -> BoundAddrs {
        self.addrs
    }

    /// Hook counters.
    pub fn stats(&self) -> Arc<MqttStats> {
        self.stats.clone()
    }

    /// Connected sessions we hold grants for.
    pub fn sessions(&self) -> usize {
        usize::try_from(
            self.stats
                .live_sessions
                .load(std::sync::atomic::Ordering::Relaxed),
        )
        .unwrap_or(0)
    }

    /// Stop accepting connections (connections already open are dropped with
    /// the runtime).
    pub fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn install_hooks(
    scx: &ServerContext,
    runtime: Runtime,
    stats: Arc<MqttStats>,
    door: Arc<front::Door>,
) {
    let parked = Arc::new(parked::Parked::default());
    let hooks = Arc::new(hooks::Hooks {
        runtime,
        parked: parked.clone(),
        stats: stats.clone(),
        scx: scx.clone(),
        door,
    });
    sessions::install(Arc::new(sessions::Guard {
        parked,
        stats,
        scx: scx.clone(),
    }))
    .await;
    let register = scx.extends.hook_mgr().register();
    for t in [
        Type::ClientAuthenticate,
        Type::ClientConnected,
        Type::ClientSubscribeCheckAcl,
        Type::MessagePublishCheckAcl,
        Type::ClientDisconnected,
        Type::SessionTerminated,
    ] {
        register
            .add(t, Box::new(hooks::Handle(hooks.clone())))
            .await;
    }
    register.start().await;
}

/// rmqtt's listener on a loopback port of its own, behind the public one we bind at `public`.
async fn inner(b: Builder, public: SocketAddr) -> Result<(Listener, TcpListener)> {
    let l = b
        .laddr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .proxy_protocol(true)
        .bind()
        .map_err(|e| broker_err("bind inner listener", e))?;
    let p = TcpListener::bind(public)
        .await
        .map_err(|e| broker_err(&format!("bind {public}"), e))?;
    Ok((l, p))
}

fn local_of(l: &TcpListener) -> Result<SocketAddr> {
    l.local_addr().map_err(|e| broker_err("local address", e))
}

/// Topic aliases a v5 client may set, and the most we use towards one.
const TOPIC_ALIAS_MAX: u16 = 10;

fn listener(config: &MqttConfig, name: &str) -> Result<Builder> {
    let inflight = NonZeroU16::new(config.max_inflight)
        .ok_or_else(|| broker_err("max_inflight", "must be at least 1"))?;
    Ok(Builder::new()
        .name(name)
        .allow_anonymous(false)
        .max_inflight(inflight)
        .max_mqueue_len(config.max_queue)
        .max_packet_size(config.max_packet_size)
        .max_connections(config.max_connections)
        // rmqtt advertises 0 (a v5 client may not use aliases at all). An alias holds a topic
        // of up to 64 KiB for the connection's life, so the count stays small: mosquitto's 10.
        .max_topic_aliases(TOPIC_ALIAS_MAX)
        // The front's deadline is the one that holds (from accept, counted as
        // `handshake_timeout`); rmqtt's, later, only backs it up.
        .handshake_timeout(config.handshake_timeout + Duration::from_secs(5))
        .session_expiry_interval(config.session_expiry)
        .max_session_expiry_interval(config.session_expiry)
        .nodelay(true)
        .reuseaddr(Some(true)))
}

fn local(l: &Listener) -> Result<SocketAddr> {
    l.local_addr().map_err(|e| broker_err("local address", e))
}
