//! Typed bodies of the NATS JWT claim types (the `nats` object), field names as nats-io/jwt v2.
//!
//! Each body keeps fields it does not know in `extra`, so decoding and re-encoding a JWT written
//! by other tooling loses nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

fn is_zero(v: &i64) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}
fn no_limit() -> i64 {
    -1
}
fn yes() -> bool {
    true
}

/// `allow`/`deny` subject lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// Allowed subjects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Denied subjects (deny wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl Permission {
    fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// Permission to publish replies to received requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponsePermission {
    /// Replies per request.
    pub max: i64,
    /// Time window in nanoseconds (Go `time.Duration`).
    pub ttl: i64,
}

/// Publish/subscribe/response permissions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    /// Publish.
    #[serde(rename = "pub", default, skip_serializing_if = "Permission::is_empty")]
    pub publish: Permission,
    /// Subscribe.
    #[serde(rename = "sub", default, skip_serializing_if = "Permission::is_empty")]
    pub subscribe: Permission,
    /// Responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp: Option<ResponsePermission>,
}

/// Body of an operator JWT.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// Operator signing keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<String>,
    /// Account server URL (the resolver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_server_url: Option<String>,
    /// Server URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operator_service_urls: Vec<String>,
    /// The system account's public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_account: Option<String>,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Account limits (Go defaults: unlimited NATS limits, JetStream disabled).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLimits {
    /// Max subscriptions.
    #[serde(default = "no_limit", skip_serializing_if = "is_zero")]
    pub subs: i64,
    /// Max bytes.
    #[serde(default = "no_limit", skip_serializing_if = "is_zero")]
    pub data: i64,
    /// Max payload.
    #[serde(default = "no_limit", skip_serializing_if = "is_zero")]
    pub payload: i64,
    /// Max imports.
    #[serde(default = "no_limit", skip_serializing_if = "is_zero")]
    pub imports: i64,
    /// Max exports.
    #[serde(default = "no_limit", skip_serializing_if = "is_zero")]
    pub exports: i64,
    /// Wildcard exports allowed.
    #[serde(default = "yes", skip_serializing_if = "is_false")]
    pub wildcards: bool,
    /// Max connections.
    #[serde(default = "no_limit", skip_serializing_if = "is_zero")]
    pub conn: i64,
    /// Max leaf node connections.
    #[serde(default = "no_limit", skip_serializing_if = "is_zero")]
    pub leaf: i64,
    /// JetStream memory storage (0 = JetStream disabled).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mem_storage: i64,
    /// JetStream disk storage (0 = JetStream disabled).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub disk_storage: i64,
    /// Max streams.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub streams: i64,
    /// Max consumers.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consumer: i64,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for AccountLimits {
    fn default() -> Self {
        AccountLimits {
            subs: -1,
            data: -1,
            payload: -1,
            imports: -1,
            exports: -1,
            wildcards: true,
            conn: -1,
            leaf: -1,
            mem_storage: 0,
            disk_storage: 0,
            streams: 0,
            consumer: 0,
            extra: Map::new(),
        }
    }
}

impl AccountLimits {
    /// Unlimited JetStream (what an account that owns streams needs).
    pub fn with_jetstream(mut self) -> Self {
        self.mem_storage = -1;
        self.disk_storage = -1;
        self.streams = -1;
        self.consumer = -1;
        self
    }
}

/// External authorization (auth callout) settings of an account.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalAuthorization {
    /// Users that bypass the callout (the responder itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_users: Vec<String>,
    /// Accounts the callout may place users into.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_accounts: Vec<String>,
    /// Curve key requests are sealed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xkey: Option<String>,
}

impl ExternalAuthorization {
    fn is_empty(&self) -> bool {
        self.auth_users.is_empty() && self.allowed_accounts.is_empty() && self.xkey.is_none()
    }
}

/// Body of an account JWT.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Imports (kept as JSON: their shape is rich and we only pass them through).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<Value>,
    /// Exports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<Value>,
    /// Limits.
    #[serde(default)]
    pub limits: AccountLimits,
    /// Signing keys (strings or scoped-key objects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<Value>,
    /// Revoked user keys → revoked-at (Unix seconds); `*` revokes everyone issued before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revocations: BTreeMap<String, i64>,
    /// Default permissions of users.
    #[serde(default)]
    pub default_permissions: Permissions,
    /// Auth callout settings.
    #[serde(default, skip_serializing_if = "ExternalAuthorization::is_empty")]
    pub authorization: ExternalAuthorization,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of a user JWT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Permissions.
    #[serde(flatten)]
    pub permissions: Permissions,
    /// Max subscriptions (-1 unlimited).
    #[serde(default = "no_limit", skip_serializing_if = "is_zero")]
    pub subs: i64,
    /// Max bytes (-1 unlimited).
    #[serde(default = "no_limit", skip_serializing_if = "is_zero")]
    pub data: i64,
    /// Max payload (-1 unlimited).
    #[serde(default = "no_limit", skip_serializing_if = "is_zero")]
    pub payload: i64,
    /// The user JWT is a bearer token (no nonce signature).
    #[serde(default, skip_serializing_if = "is_false")]
    pub bearer_token: bool,
    /// Allowed connection types (`STANDARD`, `WEBSOCKET`, `MQTT`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_connection_types: Vec<String>,
    /// Account the signing key belongs to, when signed by a signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_account: Option<String>,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for User {
    fn default() -> Self {
        User {
            permissions: Permissions::default(),
            subs: -1,
            data: -1,
            payload: -1,
            bearer_token: false,
            allowed_connection_types: vec![],
            issuer_account: None,
            extra: Map::new(),
        }
    }
}

/// The server that asks (`server_id` of an authorization request).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerId {
    /// Server name.
    #[serde(default)]
    pub name: String,
    /// Host.
    #[serde(default)]
    pub host: String,
    /// Server public key (`N…`); the response's `aud`.
    #[serde(default)]
    pub id: String,
    /// Version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The server's curve key, when the request is sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xkey: Option<String>,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The connecting client (`client_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// Remote host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Connection id (cid) on that server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// User.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Client name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Kind (`Client`, `Leafnode`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Type (`nats`, `mqtt`, `websocket`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub client_type: Option<String>,
    /// MQTT client id, for clients of the MQTT listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_id: Option<String>,
    /// Nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What the client sent in CONNECT (`connect_opts`). Holds credentials: never log it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectOpts {
    /// User JWT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
    /// Nkey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nkey: Option<String>,
    /// Token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// Username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    /// Client name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Client language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// Client version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Protocol.
    #[serde(default)]
    pub protocol: i64,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl std::fmt::Debug for ConnectOpts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "[REDACTED]" } else { "-" };
        f.debug_struct("ConnectOpts")
            .field("jwt", &set(&self.jwt))
            .field("auth_token", &set(&self.auth_token))
            .field("user", &self.user)
            .field("pass", &set(&self.pass))
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Body of an authorization request (server → callout).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    /// The asking server.
    pub server_id: ServerId,
    /// The per-connection user key the response's user JWT must have as `sub`.
    pub user_nkey: String,
    /// Client information.
    #[serde(default)]
    pub client_info: ClientInfo,
    /// Client CONNECT options.
    #[serde(default)]
    pub connect_opts: ConnectOpts,
    /// TLS details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_tls: Option<Value>,
    /// Nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_nonce: Option<String>,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of an authorization response (callout → server): exactly one of `jwt` / `error`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationResponse {
    /// The user JWT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
    /// The refusal reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Issuer account, when signed by a signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_account: Option<String>,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
