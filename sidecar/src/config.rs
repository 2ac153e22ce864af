//! The typed configuration of `sidecar serve`: flags and environment variables (clap), validated
//! once at start-up. Secrets in it are redacted from `Debug`.

use std::net::SocketAddr;
use std::path::PathBuf;

use broker_auth::secret::SecretString;
use broker_auth::token::TokenAlg;
use clap::{ArgAction, Args};
use ipnet::IpNet;

use crate::error::SidecarError;
use crate::ratelimit::Limits;

/// `N/SECS`, e.g. `20/60`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitSpec {
    pub requests: u32,
    pub window_secs: u32,
}

fn parse_rate_limit(s: &str) -> Result<RateLimitSpec, String> {
    let (n, secs) = s.split_once('/').ok_or("expected N/SECS, e.g. 20/60")?;
    let requests: u32 = n
        .trim()
        .parse()
        .map_err(|_| "N must be a positive integer")?;
    let window_secs: u32 = secs
        .trim()
        .parse()
        .map_err(|_| "SECS must be a positive integer")?;
    if requests == 0 || window_secs == 0 {
        return Err("both N and SECS must be at least 1".into());
    }
    Ok(RateLimitSpec {
        requests,
        window_secs,
    })
}

/// Which backend keeps the records.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// A sled database in `--data-dir` (one process).
    #[default]
    Sled,
    /// NATS JetStream key-value buckets, shared by every sidecar and callout pointed at them.
    Nats,
}

/// Where the data lives (shared by every subcommand that opens the store).
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// The store backend: `sled` (one process, `--data-dir`) or `nats` (JetStream, shared).
    #[arg(long = "store", env = "STORE", value_enum, default_value = "sled")]
    pub kind: StoreKind,
    /// sled data directory (with `--store nats`: only the embedded broker's retained messages
    /// and the first start's `admin.key`).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Base64 of 32 bytes that encrypts signing keys at rest; default: DATA_DIR/master.key (0600).
    /// Required with `--store nats`: every sidecar sharing the store needs the same one.
    #[arg(long, env = "KEY_ENCRYPTION_KEY", hide_env_values = true)]
    pub key_encryption_key: Option<SecretString>,
    #[command(flatten)]
    pub nats: NatsStoreArgs,
}

/// `--store nats`: how to reach JetStream and what to call the buckets.
#[derive(Args, Clone, Debug)]
pub struct NatsStoreArgs {
    /// Where the store is and who connects (the flags a standalone callout following the
    /// store takes too): `--store-nats-url`, `--store-nats-creds`, `--store-nats-user`,
    /// `--store-nats-password`, `--store-prefix`.
    #[command(flatten)]
    pub conn: callout::config::StoreNatsArgs,
    /// Replicas of each bucket and stream when they are created (1 or 3).
    #[arg(long = "store-replicas", env = "STORE_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// How long one store operation may wait for JetStream before it fails (503), in ms.
    #[arg(
        long = "store-timeout-ms",
        env = "STORE_TIMEOUT_MS",
        default_value_t = 3000
    )]
    pub timeout_ms: u64,
}

/// `sidecar serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address of the REST API.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Rego policy directory.
    #[arg(long, env = "POLICY_DIR", default_value = "./policies")]
    pub policies: PathBuf,
    /// Rate limit per client IP per route.
    #[arg(long, env = "RATE_LIMIT", default_value = "20/60", value_parser = parse_rate_limit)]
    pub rate_limit: RateLimitSpec,
    /// Lockouts before an IP is banned permanently.
    #[arg(long, env = "BAN_AFTER_LOCKOUTS", default_value_t = 3)]
    pub ban_after_lockouts: u32,
    /// Proxies whose X-Forwarded-For is believed (CIDRs, comma-separated).
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpNet>,
    /// Let unknown device keys register themselves by announcing.
    #[arg(long, env = "OPEN_ANNOUNCE", default_value_t = true, action = ArgAction::Set)]
    pub open_announce: bool,
    /// Let anyone register `device` and `gateway` identities without an admin key.
    #[arg(long, env = "OPEN_REGISTRATION", default_value_t = false, action = ArgAction::Set)]
    pub open_registration: bool,
    /// Public base URL (issuer of tokens, base of discovery documents).
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    /// `aud` of issued tokens.
    #[arg(long, env = "TOKEN_AUDIENCE", default_value = "broker-auth")]
    pub audience: String,
    /// Algorithm of newly generated signing keys (EdDSA or ES256).
    #[arg(long, env = "SIGNING_ALG", default_value = "EdDSA", value_parser = ["EdDSA", "ES256"])]
    pub signing_alg: String,
    /// Lifetime of key-login tokens, seconds.
    #[arg(long, env = "LOGIN_TOKEN_TTL", default_value_t = 3600)]
    pub login_token_ttl: i64,
    /// Absolute lifetime of a login session (its rotating refresh tokens), seconds.
    #[arg(long, env = "SESSION_LIFETIME", default_value_t = 30 * 86_400)]
    pub session_lifetime: i64,
    /// Lifetime of device access tokens, seconds.
    #[arg(long, env = "DEVICE_ACCESS_TTL", default_value_t = 86_400)]
    pub device_access_ttl: i64,
    /// Lifetime of an announcement (and its refresh token), seconds.
    #[arg(long, env = "ANNOUNCEMENT_TTL", default_value_t = 30 * 86_400)]
    pub announcement_ttl: i64,
    /// nats-server URL: when set, the NATS auth-callout responder runs in this process and shares
    /// its key set, revocation set and policy set.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    #[command(flatten)]
    pub callout: CalloutServeArgs,
    #[command(flatten)]
    pub mqtt: MqttServeArgs,
    #[command(flatten)]
    pub connections: crate::door::ConnectionArgs,
    #[command(flatten)]
    pub provision: ProvisionArgs,
    /// Shared secret of `/internal/mqtt/*` (header `X-Internal-Secret`); unset = those routes
    /// refuse every caller.
    #[arg(long, env = "INTERNAL_SHARED_SECRET", hide_env_values = true)]
    pub internal_secret: Option<SecretString>,
    /// Upstream OpenID providers for `/oauth/{name}`: `NAME,ISSUER_URL,CLIENT_ID,CLIENT_SECRET`
    /// (`google,,ID,SECRET` uses Google's issuer). Repeatable; in the environment separate
    /// providers with `;`. Plain-http issuers are accepted only on loopback.
    #[arg(long = "upstream-oidc", env = "UPSTREAM_OIDC", value_delimiter = ';',
          value_parser = parse_upstream, hide_env_values = true)]
    pub upstream_oidc: Vec<UpstreamSpec>,
    /// HS256 shared secret of a Tronexus-compatible app: `APP_ID=BASE64URL` (32 bytes or more).
    /// That app's access tokens are then HS256 and the secret verifies only them. Repeatable;
    /// in the environment separate with `;`.
    #[arg(long = "app-hs256-secret", env = "APP_HS256_SECRETS", value_delimiter = ';',
          value_parser = parse_app_secret, hide_env_values = true)]
    pub app_hs256_secrets: Vec<AppSecretSpec>,
    /// Lifetime of app access tokens (upstream login and the OAuth2 server), seconds.
    #[arg(long, env = "APP_TOKEN_TTL", default_value_t = 900)]
    pub app_token_ttl: i64,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Bearer token `/metrics` requires (Prometheus `authorization.credentials`); unset, it is open.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<SecretString>,
    /// Secret `/user`, `/acl` and `/superuser` require in `X-Broker-Secret` (brokers that can
    /// send a header: EMQX, VerneMQ, a proxy in front of go-auth); unset, they answer anyone.
    #[arg(long, env = "BROKER_ROUTES_SECRET", hide_env_values = true)]
    pub broker_routes_secret: Option<SecretString>,
}

/// The NATS provisioner and account resolver (the RavenXcope seed's environment variables).
#[derive(Args, Clone, Debug)]
pub struct ProvisionArgs {
    /// Operator seed (0600) from `sidecar init-operator`; enables the provisioner and resolver.
    #[arg(long, env = "OPERATOR_SEED_PATH")]
    pub operator_seed_path: Option<PathBuf>,
    /// Base64 of 32 bytes: AES-256-GCM key of the stored account and user seeds.
    #[arg(long, env = "ACCOUNT_SEED_ENCRYPTION_KEY", hide_env_values = true)]
    pub account_seed_encryption_key: Option<SecretString>,
    /// Secret of the write routes (`X-Backend-Shared-Secret` or `X-Ravenxcope-Provisioner-Secret`).
    #[arg(long, env = "BACKEND_SHARED_SECRET", hide_env_values = true)]
    pub backend_shared_secret: Option<SecretString>,
    /// Existing control-admin `.creds`; by default the provisioner mints its own.
    #[arg(long, env = "CONTROL_CREDS_PATH")]
    pub control_creds_path: Option<PathBuf>,
    /// JetStream command stream.
    #[arg(long, env = "COMMAND_STREAM_NAME", default_value = "RXC_CMD")]
    pub command_stream_name: String,
    /// Name of the control account (JetStream, backend).
    #[arg(long, env = "CONTROL_ACCOUNT_NAME", default_value = "CONTROL")]
    pub control_account_name: String,
    /// Ensure the command stream and every sensor's consumer when NATS comes up.
    #[arg(long, env = "STARTUP_ENSURE_COMMAND_STREAM", default_value_t = false, action = ArgAction::Set)]
    pub startup_ensure_command_stream: bool,
}

impl ProvisionArgs {
    /// The seed encryption key, required and checked whenever the provisioner runs.
    pub fn seed_key(&self) -> Result<crate::keystore::MasterKey, SidecarError> {
        let k = self.account_seed_encryption_key.as_ref().ok_or_else(|| {
            SidecarError::config(
                "ACCOUNT_SEED_ENCRYPTION_KEY (base64 of 32 bytes) is required with the provisioner",
            )
        })?;
        crate::keystore::MasterKey::from_base64(k.expose()).map_err(|_| {
            SidecarError::config("ACCOUNT_SEED_ENCRYPTION_KEY must be base64 of 32 bytes")
        })
    }

    pub fn names(&self) -> crate::provision::Names {
        crate::provision::Names {
            command_stream: self.command_stream_name.clone(),
            control_account: self.control_account_name.clone(),
        }
    }
}

/// The algorithm of newly generated signing keys, by its JOSE name as the core spells it (its
/// own deserializer). HS256 is refused: it exists only for operator-configured app secrets.
pub fn signing_alg_named(name: &str) -> Result<TokenAlg, SidecarError> {
    match TokenAlg::from_jose(name) {
        Some(TokenAlg::HS256) | None => Err(SidecarError::config(format!(
            "signing algorithm {name:?}: use EdDSA or ES256"
        ))),
        Some(alg) => Ok(alg),
    }
}

/// `ADDR` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenSpec {
    Off,
    On(SocketAddr),
}

impl ListenSpec {
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            ListenSpec::Off => None,
            ListenSpec::On(a) => Some(a),
        }
    }
}

fn parse_listen(s: &str) -> Result<ListenSpec, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(ListenSpec::Off);
    }
    s.parse()
        .map(ListenSpec::On)
        .map_err(|_| format!("expected HOST:PORT or off, got {s:?}"))
}

/// The embedded MQTT broker's listeners and limits.
#[derive(Args, Clone, Debug)]
pub struct MqttServeArgs {
    /// MQTT over TCP (`off` disables the embedded broker's TCP listener).
    #[arg(long, env = "MQTT_LISTEN", default_value = "127.0.0.1:1883", value_parser = parse_listen)]
    pub mqtt_listen: ListenSpec,
    /// MQTT over WebSocket.
    #[arg(long, env = "MQTT_WS_LISTEN", default_value = "off", value_parser = parse_listen)]
    pub mqtt_ws_listen: ListenSpec,
    /// MQTT over TLS (needs --mqtt-tls-cert and --mqtt-tls-key).
    #[arg(long, env = "MQTT_TLS_LISTEN", default_value = "off", value_parser = parse_listen)]
    pub mqtt_tls_listen: ListenSpec,
    /// PEM certificate chain of the TLS listener.
    #[arg(long, env = "MQTT_TLS_CERT")]
    pub mqtt_tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS listener.
    #[arg(long, env = "MQTT_TLS_KEY")]
    pub mqtt_tls_key: Option<PathBuf>,
    /// Messages queued per client before new ones are dropped.
    #[arg(long, env = "MQTT_MAX_QUEUE", default_value_t = 200_000)]
    pub mqtt_max_queue: usize,
    /// Unacknowledged QoS1/2 messages in flight to one client.
    #[arg(long, env = "MQTT_MAX_INFLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    pub mqtt_max_inflight: u16,
    /// Seconds a persisted session (clean-session false) outlives its connection; v5 clients
    /// may ask for less, never more. Until then its client id stays bound to its identity.
    #[arg(long, env = "MQTT_SESSION_EXPIRY", default_value_t = 7200, value_parser = clap::value_parser!(u64).range(1..=30 * 86_400))]
    pub mqtt_session_expiry: u64,
    /// Open MQTT connections per client address over all listeners (0 = no cap).
    #[arg(long, env = "MQTT_MAX_CONNECTIONS_PER_IP", default_value_t = 1000)]
    pub mqtt_max_connections_per_ip: u32,
    /// Seconds from accept to a complete CONNECT; a slower client is closed.
    #[arg(long, env = "MQTT_HANDSHAKE_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub mqtt_handshake_timeout: u64,
    /// Retained messages kept at most (in `<data-dir>/mqtt-retained`); past it a new retained
    /// topic is delivered but not stored.
    #[arg(long, env = "MQTT_MAX_RETAINED", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub mqtt_max_retained: u64,
}

impl MqttServeArgs {
    /// The broker configuration, or `None` when every listener is off. Retained messages are
    /// kept under `data_dir` (a sled database of rmqtt's retainer beside ours).
    pub fn to_config(
        &self,
        data_dir: &std::path::Path,
    ) -> Result<Option<broker_auth_mqtt::MqttConfig>, SidecarError> {
        let tls = match self.mqtt_tls_listen.addr() {
            None => None,
            Some(addr) => match (&self.mqtt_tls_cert, &self.mqtt_tls_key) {
                (Some(cert), Some(key)) => Some(broker_auth_mqtt::TlsListener {
                    addr,
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => {
                    return Err(SidecarError::config(
                        "--mqtt-tls-listen needs --mqtt-tls-cert and --mqtt-tls-key",
                    ));
                }
            },
        };
        let config = broker_auth_mqtt::MqttConfig {
            tcp: self.mqtt_listen.addr(),
            ws: self.mqtt_ws_listen.addr(),
            tls,
            max_queue: self.mqtt_max_queue,
            max_inflight: self.mqtt_max_inflight,
            session_expiry: std::time::Duration::from_secs(self.mqtt_session_expiry),
            per_address: self.mqtt_max_connections_per_ip,
            handshake_timeout: std::time::Duration::from_secs(self.mqtt_handshake_timeout),
            retained: broker_auth_mqtt::RetainedStore::Sled(data_dir.join("mqtt-retained")),
            max_retained: usize::try_from(self.mqtt_max_retained).unwrap_or(usize::MAX),
            ..Default::default()
        };
        let any = config.tcp.is_some() || config.ws.is_some() || config.tls.is_some();
        Ok(any.then_some(config))
    }
}

/// The in-process responder's settings (the `callout` binary's flags, prefixed `--callout-`).
#[derive(Args, Clone, Debug, Default)]
pub struct CalloutServeArgs {
    /// `auth_users` user the responder connects as.
    #[arg(long, env = "CALLOUT_NATS_USER")]
    pub callout_nats_user: Option<String>,
    #[arg(long, env = "CALLOUT_NATS_PASSWORD", hide_env_values = true)]
    pub callout_nats_password: Option<SecretString>,
    /// `.creds` file instead of user/password.
    #[arg(long, env = "CALLOUT_NATS_CREDS")]
    pub callout_nats_creds: Option<PathBuf>,
    /// Account seed (SA…, mode 0600) that signs responses and user JWTs.
    #[arg(long, env = "CALLOUT_ISSUER_SEED_FILE")]
    pub callout_issuer_seed_file: Option<PathBuf>,
    /// Curve seed (SX…, mode 0600) when the server config sets `xkey`.
    #[arg(long, env = "CALLOUT_XKEY_SEED_FILE")]
    pub callout_xkey_seed_file: Option<PathBuf>,
    /// Operator mode: the target account's seed (0600) that issues user JWTs.
    #[arg(long, env = "CALLOUT_TARGET_ACCOUNT_SEED_FILE")]
    pub callout_target_account_seed_file: Option<PathBuf>,
    /// Account for principals without a tenant mapping.
    #[arg(long, env = "CALLOUT_ACCOUNT", default_value = "APP")]
    pub callout_account: String,
    /// `tenant=ACCOUNT` pairs, comma-separated.
    #[arg(long, env = "CALLOUT_ACCOUNT_MAP", value_delimiter = ',')]
    pub callout_account_map: Vec<String>,
    #[arg(
        long,
        env = "CALLOUT_QUEUE_GROUP",
        default_value = "broker-auth-callout"
    )]
    pub callout_queue_group: String,
    /// System-account user for kicking revoked connections.
    #[arg(long, env = "CALLOUT_KICK_USER")]
    pub callout_kick_user: Option<String>,
    #[arg(long, env = "CALLOUT_KICK_PASSWORD", hide_env_values = true)]
    pub callout_kick_password: Option<SecretString>,
}

impl CalloutServeArgs {
    /// The same settings in the `callout` binary's terms.
    pub fn to_callout(
        &self,
        nats_url: &str,
        policies: &std::path::Path,
        issuer: &str,
        audience: &str,
    ) -> Result<callout::config::CalloutArgs, SidecarError> {
        let seed = self.callout_issuer_seed_file.clone().ok_or_else(|| {
            SidecarError::config("NATS_URL is set: give --callout-issuer-seed-file too")
        })?;
        Ok(callout::config::CalloutArgs {
            nats_url: nats_url.to_owned(),
            nats_user: self.callout_nats_user.clone(),
            nats_password: self.callout_nats_password.clone(),
            nats_creds: self.callout_nats_creds.clone(),
            issuer_seed_file: seed,
            xkey_seed_file: self.callout_xkey_seed_file.clone(),
            target_account_seed_file: self.callout_target_account_seed_file.clone(),
            account: self.callout_account.clone(),
            account_map: self.callout_account_map.clone(),
            queue_group: self.callout_queue_group.clone(),
            max_in_flight: 256,
            kick_user: self.callout_kick_user.clone(),
            kick_password: self.callout_kick_password.clone(),
            sidecar_url: None,
            sidecar_token: None,
            sidecar_token_file: None,
            // In process the revocations are this process's own: never stale.
            revocations_stale_after: 30,
            policies: policies.to_owned(),
            token_issuer: issuer.to_owned(),
            token_audience: audience.to_owned(),
            // In process it reads this process's memory, neither a feed nor the store.
            store: callout::config::Source::Sidecar,
            store_nats: callout::config::StoreNatsArgs {
                url: None,
                creds: None,
                user: None,
                password: None,
                prefix: String::new(),
            },
        })
    }
}

/// One upstream OpenID provider.
#[derive(Clone)]
pub struct UpstreamSpec {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

impl std::fmt::Debug for UpstreamSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSpec")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .finish()
    }
}

/// Names `/oauth/{name}` cannot take: the OAuth2 server's own routes.
pub const RESERVED_PROVIDER_NAMES: [&str; 4] = ["authorize", "token", "userinfo", "clients"];

const GOOGLE_ISSUER: &str = "https://accounts.google.com";

fn parse_upstream(s: &str) -> Result<UpstreamSpec, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [name, issuer, client_id, client_secret] = parts[..] else {
        return Err("expected NAME,ISSUER_URL,CLIENT_ID,CLIENT_SECRET".into());
    };
    let name_ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !name_ok || RESERVED_PROVIDER_NAMES.contains(&name) {
        return Err(format!(
            "provider name {name:?}: use 1-32 of a-z 0-9 - _, and none of {RESERVED_PROVIDER_NAMES:?}"
        ));
    }
    let issuer = match (name, issuer) {
        ("google", "") => GOOGLE_ISSUER.to_owned(),
        (_, "") => return Err(format!("provider {name}: ISSUER_URL is required")),
        (_, i) => i.trim_end_matches('/').to_owned(),
    };
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| issuer.starts_with(p));
    if !(issuer.starts_with("https://") || loopback) {
        return Err(format!(
            "provider {name}: the issuer must be https (plain http only on loopback)"
        ));
    }
    if client_id.is_empty() || client_secret.is_empty() {
        return Err(format!(
            "provider {name}: CLIENT_ID and CLIENT_SECRET are required"
        ));
    }
    Ok(UpstreamSpec {
        name: name.to_owned(),
        issuer,
        client_id: client_id.to_owned(),
        client_secret: SecretString::new(client_secret.to_owned()),
    })
}

/// An app's HS256 shared secret.
#[derive(Clone)]
pub struct AppSecretSpec {
    pub app_id: String,
    pub secret: broker_auth::secret::SecretBytes,
}

impl std::fmt::Debug for AppSecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppSecretSpec({}, [REDACTED])", self.app_id)
    }
}

fn parse_app_secret(s: &str) -> Result<AppSecretSpec, String> {
    let (app_id, secret) = s
        .split_once('=')
        .ok_or("expected APP_ID=BASE64URL_SECRET")?;
    let bytes = broker_auth::b64::url_decode_strict("secret", secret.trim())
        .map_err(|_| "the secret must be unpadded base64url".to_owned())?;
    if bytes.len() < 32 {
        return Err("an HS256 secret must be at least 32 bytes".into());
    }
    if app_id.trim().is_empty() {
        return Err("APP_ID is required".into());
    }
    Ok(AppSecretSpec {
        app_id: app_id.trim().to_owned(),
        secret: broker_auth::secret::SecretBytes::new(bytes),
    })
}

impl ServeArgs {
    /// Where browsers and clients reach this service (OAuth redirect URIs, discovery).
    pub fn base_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    pub fn issuer(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| "broker-auth".to_owned())
    }

    pub fn limits(&self) -> Limits {
        Limits {
            requests: self.rate_limit.requests,
            window_secs: self.rate_limit.window_secs,
            lockouts_before_ban: self.ban_after_lockouts.max(1),
            ..Limits::default()
        }
    }

    pub fn signing_alg(&self) -> Result<TokenAlg, SidecarError> {
        signing_alg_named(&self.signing_alg)
    }

    /// The longest any token can live: how long a retired signing key must keep verifying.
    pub fn max_token_lifetime(&self) -> i64 {
        self.login_token_ttl
            .max(self.app_token_ttl)
            .max(self.device_access_ttl)
            .max(self.announcement_ttl)
    }

    pub fn validate(&self) -> Result<(), SidecarError> {
        for (name, v) in [
            ("LOGIN_TOKEN_TTL", self.login_token_ttl),
            ("DEVICE_ACCESS_TTL", self.device_access_ttl),
            ("ANNOUNCEMENT_TTL", self.announcement_ttl),
            ("APP_TOKEN_TTL", self.app_token_ttl),
        ] {
            if !(60..=366 * 86_400).contains(&v) {
                return Err(SidecarError::config(format!(
                    "{name} must be between 60 s and 366 days"
                )));
            }
        }
        if self
            .public_url
            .as_ref()
            .is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(SidecarError::config("PUBLIC_URL must be an http(s) URL"));
        }
        let mut names: Vec<&str> = self.upstream_oidc.iter().map(|u| u.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(SidecarError::config("UPSTREAM_OIDC names a provider twice"));
        }
        if self.audience.trim().is_empty() {
            return Err(SidecarError::config("TOKEN_AUDIENCE must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_providers_parse_strictly() {
        let g = parse_upstream("google,,id,secret").unwrap();
        assert_eq!(g.issuer, "https://accounts.google.com");
        assert!(!format!("{g:?}").contains("secret\""), "{g:?}");
        assert!(parse_upstream("corp,https://id.example/,id,s").is_ok());
        assert!(parse_upstream("dev,http://127.0.0.1:9000,id,s").is_ok());
        for bad in [
            "token,https://id.example,id,s",
            "authorize,https://id.example,id,s",
            "Corp,https://id.example,id,s",
            "corp,http://id.example,id,s",
            "corp,,id,s",
            "corp,https://id.example,,s",
            "corp,https://id.example,id",
        ] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signing_algorithms_are_the_cores_names_without_hs256() {
        assert_eq!(signing_alg_named("ES256").unwrap(), TokenAlg::ES256);
        assert_eq!(signing_alg_named("EdDSA").unwrap(), TokenAlg::EdDSA);
        for bad in ["HS256", "es256", ""] {
            assert!(signing_alg_named(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_limit_spec_parses() {
        assert_eq!(
            parse_rate_limit("20/60").unwrap(),
            RateLimitSpec {
                requests: 20,
                window_secs: 60
            }
        );
        for bad in ["", "20", "0/60", "20/0", "a/b", "-1/5"] {
            assert!(parse_rate_limit(bad).is_err(), "{bad}");
        }
    }
}
