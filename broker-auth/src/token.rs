//! Access and refresh tokens: issue and verify JWTs, the signing key set, JWKS export and import.
//!
//! jsonwebtoken computes and checks HS256 MACs. EdDSA and ES256 are signed and verified here with
//! keys parsed once per key set: jsonwebtoken re-parses the key on every call (a PKCS#8 parse and
//! public-key derivation per signature, a point decompression per verification, which alone costs
//! a tenth of an Ed25519 verify on the hot path), and its validation defaults are too
//! loose for an auth service anyway (it ignores `crit`, has a 60 s leeway, skips `nbf`, and reads
//! the wall clock). Here the header is parsed first with an allow-list of fields (`alg`, `kid`, `typ`), so
//! `crit`, `jku`, `x5u`, `jwk` and friends are refused rather than followed; the key is chosen by
//! `kid` and the token's `alg` must be that key's algorithm (no `none`, no HS/asymmetric confusion);
//! `iss`, `aud`, `sub`, `exp` and `nbf` are required; and `exp`/`nbf` are checked against the `now`
//! the caller passes in, with at most 30 s leeway, so expiry is testable without sleeping.

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use crate::UnixTime;
use crate::b64;
use crate::decision::DenyCode;
use crate::identity::IdentityType;
use crate::revocation::Revocations;

mod keys;
mod verify;

pub use keys::{KeySet, TokenKey, app_key_id};
pub use verify::{Verifier, VerifyCache};

/// Largest token we parse at all.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Upper bound on clock-skew leeway.
pub const MAX_LEEWAY_SECS: u64 = 30;

/// Token signature algorithms we issue and accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenAlg {
    /// Ed25519 (default).
    EdDSA,
    /// ECDSA P-256 SHA-256.
    ES256,
    /// HMAC-SHA256; only for apps whose operator configured a shared secret.
    HS256,
}

impl TokenAlg {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAlg::EdDSA => "EdDSA",
            TokenAlg::ES256 => "ES256",
            TokenAlg::HS256 => "HS256",
        }
    }
    /// The algorithm of a JOSE name (`EdDSA`, `ES256`, `HS256`), exactly as spelled.
    pub fn from_jose(s: &str) -> Option<TokenAlg> {
        match s {
            "EdDSA" => Some(TokenAlg::EdDSA),
            "ES256" => Some(TokenAlg::ES256),
            "HS256" => Some(TokenAlg::HS256),
            _ => None,
        }
    }
}

/// What a token is for. Refresh tokens are JWTs too and must never pass as access tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    /// Presented to brokers and APIs.
    Access,
    /// Exchanged for a new access token.
    Refresh,
}

/// `aud` may be a string or an array on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

/// The claims of every token the product issues (tokens-and-policy.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: identity id, user id or device address.
    pub sub: String,
    /// Audience.
    pub aud: Audience,
    /// Issued at.
    pub iat: UnixTime,
    /// Not before.
    pub nbf: UnixTime,
    /// Expires.
    pub exp: UnixTime,
    /// Token id.
    pub jti: String,
    /// Session / announcement id; revoking it kills the token everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Identity type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idt: Option<IdentityType>,
    /// Tenant (app id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Same as `tenant`, for Tronexus clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// For gateways: devices it acts for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Access or refresh.
    pub token_use: TokenUse,
}

impl Claims {
    /// Fresh claims valid from `now` for `ttl_secs`, with a `jti` drawn from `rng` (the
    /// caller's: the core draws no randomness of its own).
    pub fn new(
        cfg: &TokenConfig,
        sub: &str,
        now: UnixTime,
        ttl_secs: i64,
        token_use: TokenUse,
        rng: &mut impl CryptoRngCore,
    ) -> Claims {
        let mut jti = [0u8; 16];
        rng.fill_bytes(&mut jti);
        Claims {
            iss: cfg.issuer.clone(),
            sub: sub.to_owned(),
            aud: Audience::One(cfg.audience.clone()),
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl_secs),
            jti: b64::url_encode(&jti),
            sid: None,
            idt: IdentityType::of_id(sub),
            tenant: None,
            app_id: None,
            roles: vec![],
            scopes: vec![],
            groups: vec![],
            devices: vec![],
            token_use,
        }
    }
}

/// Issuer-side and verifier-side token settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenConfig {
    /// `iss` we issue and require.
    pub issuer: String,
    /// `aud` we issue and require.
    pub audience: String,
    /// Clock-skew leeway, capped at [`MAX_LEEWAY_SECS`].
    pub leeway_secs: u64,
}

impl TokenConfig {
    /// A config with the default leeway (30 s).
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        TokenConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_secs: MAX_LEEWAY_SECS,
        }
    }
}

#[cfg(test)]
mod tests;
