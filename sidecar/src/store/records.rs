//! The records the store keeps. Secrets never appear in clear: API keys as hashes, signing keys
//! encrypted.

use broker_auth::identity::{IdentityType, KeyAlgorithm};
use serde::{Deserialize, Serialize};

/// Records other processes of a fleet read too (their home is the shared layout).
pub use broker_auth::shared_store::{RevocationKind, RevocationRecord, SigningKeyRecord};

/// A registered identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdentityRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: IdentityType,
    /// None for a person who signs in only through an upstream OpenID provider.
    #[serde(default)]
    pub key_algorithm: Option<KeyAlgorithm>,
    /// Canonical public key (see `PublicKey::canonical`); None as above.
    #[serde(default)]
    pub public_key: Option<String>,
    /// The upstream account (issuer, subject) this identity signs in with, if any.
    #[serde(default)]
    pub upstream: Option<UpstreamAccount>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_at: i64,
    #[serde(default)]
    pub disabled_at: Option<i64>,
}

impl IdentityRecord {
    /// The identity's entry in the unique sign-in index: its public key, or its upstream account
    /// within its app. The NUL separators cannot occur in a canonical key, so the two never meet.
    pub fn sign_in_key(&self) -> Option<String> {
        match (&self.public_key, &self.upstream) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(u)) => Some(upstream_index(
                self.tenant.as_deref().unwrap_or(""),
                &u.iss,
                &u.sub,
            )),
            (None, None) => None,
        }
    }

    /// Whether an admin disabled it (see `domain::identities::Standing` for what that means).
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }

    /// Devices a gateway acts for (`metadata.devices`).
    pub fn devices(&self) -> Vec<String> {
        self.metadata
            .get("devices")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A person's account at an upstream OpenID provider. The pair (iss, sub) names it; the e-mail
/// is kept for display and for userinfo, never used to find the identity (addresses move).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamAccount {
    pub iss: String,
    pub sub: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
}

/// The sign-in index entry of an upstream account in an app (see [`IdentityRecord::sign_in_key`]).
pub fn upstream_index(app: &str, iss: &str, sub: &str) -> String {
    format!("oidc\0{app}\0{iss}\0{sub}")
}

/// A login challenge, bound to the key that asked for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRecord {
    pub public_key: String,
    pub expires_at: i64,
}

/// A device announcement: its id is the `sid` of every token issued under it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncementRecord {
    pub id: String,
    pub device: String,
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(default)]
    pub ended_at: Option<i64>,
}

/// A permanent ban of a client IP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanRecord {
    pub ip: String,
    pub since: i64,
    pub reason: String,
}

/// An API key: only the SHA-256 of its secret is kept.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub app_id: Option<String>,
    pub scopes: Vec<String>,
    /// For `identity:register`: the identity types this key may register.
    #[serde(default)]
    pub identity_types: Vec<IdentityType>,
    /// Hex SHA-256 of the secret part.
    pub secret_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

impl std::fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("secret_hash", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// An account seed or user seed, AES-256-GCM encrypted (random 96-bit nonce per record; the
/// record id is the associated data, so a ciphertext moved to another record does not open).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSeed {
    /// base64url nonce.
    pub nonce: String,
    /// base64url ciphertext with the GCM tag.
    pub ciphertext: String,
}

impl std::fmt::Debug for SealedSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedSeed([REDACTED])")
    }
}

/// A NATS account: one per tenant, plus `SYS` and `CONTROL`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatsAccountRecord {
    /// Tenant id, or `SYS` / `CONTROL`.
    pub id: String,
    pub name: String,
    /// Account public key (A…).
    pub public_key: String,
    /// The current account JWT, signed by the operator.
    pub jwt: String,
    pub seed: SealedSeed,
    pub created_at: i64,
}

/// A NATS user minted by the provisioner (a sensor, the backend, the control admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatsUserRecord {
    /// `<tenant>/<sensor>`, `backend` or `control-admin`.
    pub id: String,
    /// The account id it belongs to.
    pub account_id: String,
    /// User public key (U…).
    pub public_key: String,
    pub jwt: String,
    pub seed: SealedSeed,
    pub created_at: i64,
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

/// An app: a tenant of the whole product (identities' `tenant`, NATS `tenantId` and app ids are
/// one namespace).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// UUID.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub created_at: i64,
}

/// A role of an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRecord {
    /// UUID.
    pub id: String,
    pub app_id: String,
    /// Unique within the app; what tokens and the policy see in `roles`.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub created_at: i64,
}

/// The roles one user holds in one app.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRolesRecord {
    pub app_id: String,
    pub user_id: String,
    /// Role ids, sorted, no duplicates.
    pub role_ids: Vec<String>,
}

/// One rotating refresh token `<id>.<secret>`: only the SHA-256 of the secret is kept.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// UUID, the part before the dot.
    pub id: String,
    /// The session family it belongs to (also the `sid` of the access tokens it yields).
    pub family: String,
    pub user_id: String,
    /// Hex SHA-256 of the secret part.
    pub secret_hash: String,
    pub created_at: i64,
    /// Set when it was exchanged; a second exchange is theft and ends the family.
    #[serde(default)]
    pub used_at: Option<i64>,
}

impl std::fmt::Debug for RefreshRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshRecord")
            .field("id", &self.id)
            .field("family", &self.family)
            .field("user_id", &self.user_id)
            .field("secret_hash", &"[REDACTED]")
            .field("used_at", &self.used_at)
            .finish_non_exhaustive()
    }
}

/// A login session: the family of refresh tokens that rotate from one login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyRecord {
    /// `ses-…`; the `sid` of every access token of the session.
    pub id: String,
    pub user_id: String,
    pub created_at: i64,
    /// Absolute end: no rotation extends it.
    pub expires_at: i64,
    #[serde(default)]
    pub revoked_at: Option<i64>,
    /// The OAuth2 scopes granted with it (refreshes keep them).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The OAuth2 client the session was granted to; only that client may refresh it, and key
    /// login's `/auth/refresh` refuses it.
    #[serde(default)]
    pub client_id: Option<String>,
}
