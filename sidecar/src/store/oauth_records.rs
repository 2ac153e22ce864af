//! Records of the OAuth2 server and of upstream OpenID logins: registered clients, the
//! short-lived steps of a browser flow, and authorization codes. Client secrets and codes are
//! kept only as SHA-256 digests.

use serde::{Deserialize, Serialize};

/// A registered integration (Grafana, ...).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthClientRecord {
    /// `cli-…`; the `client_id`.
    pub id: String,
    pub name: String,
    /// Compared exactly, byte for byte, with the request's `redirect_uri`.
    pub redirect_uris: Vec<String>,
    /// The scopes it may ask for.
    pub scopes: Vec<String>,
    /// The app whose users it signs in through an upstream provider (optional).
    #[serde(default)]
    pub app_id: Option<String>,
    /// Hex SHA-256 of the client secret.
    pub secret_hash: String,
    pub created_at: i64,
}

impl std::fmt::Debug for OAuthClientRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClientRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("redirect_uris", &self.redirect_uris)
            .field("secret_hash", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// An `/oauth/authorize` request waiting for the user's proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: String,
    /// PKCE S256 challenge (base64url of SHA-256 of the verifier).
    pub code_challenge: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub nonce: Option<String>,
    /// The text the user signs with their key.
    pub challenge: String,
}

/// An upstream login in flight: what its callback needs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamPending {
    pub provider: String,
    /// The app the user signs in to.
    #[serde(default)]
    pub app_id: Option<String>,
    /// Set when the login answers an `/oauth/authorize` request (taken from the store when the
    /// login started, so it is used once either way).
    #[serde(default)]
    pub authorize: Option<AuthorizeRequest>,
    /// PKCE verifier for the provider's token endpoint; it lives as long as the record (10 min).
    pub pkce_verifier: String,
    pub nonce: String,
    /// Hex SHA-256 of the browser-binding cookie's value.
    pub browser_hash: String,
}

impl std::fmt::Debug for UpstreamPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPending")
            .field("provider", &self.provider)
            .field("app_id", &self.app_id)
            .field("pkce_verifier", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// One step of a browser flow, found by a random id and taken exactly once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum PendingStep {
    Authorize(AuthorizeRequest),
    Upstream(UpstreamPending),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecord {
    pub expires_at: i64,
    pub step: PendingStep,
}

/// An authorization code (stored under the SHA-256 of the code).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthCodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub identity_id: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub nonce: Option<String>,
    pub expires_at: i64,
    /// Set by the one exchange that won; a second presentation revokes `family`.
    #[serde(default)]
    pub used_at: Option<i64>,
    /// The session the code was exchanged for.
    #[serde(default)]
    pub family: Option<String>,
}
