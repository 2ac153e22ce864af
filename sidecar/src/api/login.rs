//! Key login (Novacore): `POST /auth/challenge` then `POST /auth/verify`.
//!
//! A challenge is 32 random bytes (base64url), bound to the key that asked, valid for 5 minutes,
//! and consumed by the first verify that names it — valid or not — so it can be neither replayed
//! nor brute-forced.

use broker_auth::identity::PublicKey;
use broker_auth::token::TokenUse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::{Filter, Rejection, Reply};

use super::extract::{json_body, limited, with_state};
use super::reject;
use crate::clock::rfc3339;
use crate::error::SidecarError;
use crate::state::{State, random_challenge, random_id};
use crate::store::ChallengeRecord;

pub const CHALLENGE_TTL: i64 = 300;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    pub public_key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeResponse {
    pub challenge: String,
    pub expires_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub public_key: String,
    /// Signature over the UTF-8 bytes of the challenge string (Ed25519 64 bytes; ES256 r||s or DER).
    pub signature: String,
    pub challenge: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    pub token: String,
    pub identity_id: String,
    pub expires_at: String,
    pub token_type: &'static str,
}

async fn challenge(
    state: State,
    req: ChallengeRequest,
) -> Result<warp::reply::Response, Rejection> {
    let key = PublicKey::decode(&req.public_key).map_err(|e| reject(e.into()))?;
    let identity = state
        .store
        .identity_by_key(&key.canonical())
        .map_err(|e| reject(e.into()))?
        .ok_or_else(|| reject(SidecarError::UnknownIdentity))?;
    if identity.disabled_at.is_some() {
        return Err(reject(SidecarError::Forbidden("identity is disabled")));
    }
    let challenge = random_challenge();
    let expires_at = state.now() + CHALLENGE_TTL;
    state
        .store
        .put_challenge(
            &challenge,
            &ChallengeRecord {
                public_key: key.canonical(),
                expires_at,
            },
        )
        .map_err(|e| reject(e.into()))?;
    Ok(warp::reply::json(&ChallengeResponse {
        challenge,
        expires_at: rfc3339(expires_at),
    })
    .into_response())
}

async fn verify(state: State, req: VerifyRequest) -> Result<warp::reply::Response, Rejection> {
    if req.challenge.len() > 256 {
        return Err(reject(SidecarError::ChallengeInvalid));
    }
    // Consume first: whatever happens next, this challenge is spent.
    let taken = state
        .store
        .take_challenge(&req.challenge)
        .map_err(|e| reject(e.into()))?;
    let key = PublicKey::decode(&req.public_key).map_err(|e| reject(e.into()))?;
    let Some(ch) = taken else {
        state.metrics.outcome("login", "challenge_invalid");
        return Err(reject(SidecarError::ChallengeInvalid));
    };
    if ch.expires_at < state.now() || ch.public_key != key.canonical() {
        state.metrics.outcome("login", "challenge_invalid");
        return Err(reject(SidecarError::ChallengeInvalid));
    }
    if key
        .verify_b64(req.challenge.as_bytes(), &req.signature)
        .is_err()
    {
        state.metrics.outcome("login", "bad_signature");
        return Err(reject(SidecarError::InvalidSignature));
    }
    let identity = state
        .store
        .identity_by_key(&ch.public_key)
        .map_err(|e| reject(e.into()))?
        .ok_or_else(|| reject(SidecarError::UnknownIdentity))?;
    if identity.disabled_at.is_some() {
        return Err(reject(SidecarError::Forbidden("identity is disabled")));
    }
    let claims = state.claims_for(
        &identity,
        state.config.login_token_ttl,
        TokenUse::Access,
        &random_id("lgn-"),
    );
    let token = state.sign(&claims).map_err(reject)?;
    state.metrics.outcome("login", "ok");
    Ok(warp::reply::json(&VerifyResponse {
        token,
        identity_id: identity.id,
        expires_at: rfc3339(claims.exp),
        token_type: "Bearer",
    })
    .into_response())
}

pub fn routes(state: State) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let challenge = warp::path!("auth" / "challenge")
        .and(warp::post())
        .and(limited(state.clone(), "POST /auth/challenge"))
        .and(with_state(state.clone()))
        .and(json_body::<ChallengeRequest>())
        .and_then(challenge);
    let verify = warp::path!("auth" / "verify")
        .and(warp::post())
        .and(limited(state.clone(), "POST /auth/verify"))
        .and(with_state(state))
        .and(json_body::<VerifyRequest>())
        .and_then(verify);
    challenge.or(verify).unify().boxed()
}
