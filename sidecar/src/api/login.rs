//! Key login (Novacore): `POST /auth/challenge` then `POST /auth/verify`.
//!
//! A challenge is 32 random bytes (base64url), bound to the key that asked, valid for 5 minutes,
//! and consumed by the first verify that names it — valid or not — so it can be neither replayed
//! nor brute-forced.

use broker_auth::identity::PublicKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::{Filter, Rejection, Reply};

use super::extract::{json_body, limited, with_state};
use super::reject;
use crate::clock::rfc3339;
use crate::error::SidecarError;
use crate::state::{State, random_challenge};
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
    /// Rotating refresh token of the new session (`POST /auth/refresh`).
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRefreshRequest {
    /// `<uuid>.<secret>`.
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionRefreshResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
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
    let (claims, token, refresh_token) = state.open_session(&identity).map_err(reject)?;
    state.store.flush().await.map_err(|e| reject(e.into()))?;
    state.metrics.outcome("login", "ok");
    Ok(warp::reply::json(&VerifyResponse {
        token,
        identity_id: identity.id,
        expires_at: rfc3339(claims.exp),
        token_type: "Bearer",
        refresh_token,
    })
    .into_response())
}

async fn session_refresh(
    state: State,
    req: SessionRefreshRequest,
) -> Result<warp::reply::Response, Rejection> {
    let now = state.now();
    match crate::sessions::exchange(state.store.as_ref(), &req.refresh_token, None, now) {
        Ok(crate::sessions::Exchanged::Rotated { family, token }) => {
            let identity = state
                .store
                .identity(&family.user_id)
                .map_err(|e| reject(e.into()))?
                .filter(|i| i.disabled_at.is_none())
                .ok_or_else(|| reject(SidecarError::InvalidRefreshToken))?;
            let (claims, access_token) = state
                .session_access(&identity, &family.id)
                .map_err(reject)?;
            state.store.flush().await.map_err(|e| reject(e.into()))?;
            state.metrics.outcome("session_refresh", "ok");
            Ok(warp::reply::json(&SessionRefreshResponse {
                access_token,
                token_type: "bearer",
                expires_in: claims.exp - claims.iat,
                refresh_token: token,
            })
            .into_response())
        }
        Ok(crate::sessions::Exchanged::Reused { family }) => {
            tracing::warn!(session = %family.id, user = %family.user_id, "refresh token reuse; session revoked");
            state.metrics.outcome("session_refresh", "reused");
            state
                .revoke_session(&family.id, family.expires_at)
                .await
                .map_err(reject)?;
            Err(reject(SidecarError::RefreshTokenReused))
        }
        Err(e) => {
            state.metrics.outcome("session_refresh", "invalid");
            Err(reject(e))
        }
    }
}

async fn logout(state: State, bearer: Option<String>) -> Result<warp::reply::Response, Rejection> {
    let caller = state.authenticate(bearer.as_deref()).map_err(reject)?;
    let crate::state::Caller::Identity { identity, .. } = caller else {
        return Err(reject(SidecarError::Forbidden("an API key has no session")));
    };
    let ended = crate::sessions::end_all(state.store.as_ref(), &identity.id, state.now())
        .map_err(reject)?;
    for f in &ended {
        state
            .revoke_session(&f.id, f.expires_at)
            .await
            .map_err(reject)?;
    }
    state.store.flush().await.map_err(|e| reject(e.into()))?;
    Ok(warp::reply::with_status(warp::reply(), warp::http::StatusCode::NO_CONTENT).into_response())
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
        .and(with_state(state.clone()))
        .and(json_body::<VerifyRequest>())
        .and_then(verify);
    let refresh = warp::path!("auth" / "refresh")
        .and(warp::post())
        .and(limited(state.clone(), "POST /auth/refresh"))
        .and(with_state(state.clone()))
        .and(json_body::<SessionRefreshRequest>())
        .and_then(session_refresh);
    let logout = warp::path!("auth" / "logout")
        .and(warp::post())
        .and(limited(state.clone(), "POST /auth/logout"))
        .and(with_state(state))
        .and(super::extract::bearer())
        .and_then(logout);
    challenge
        .or(verify)
        .unify()
        .or(refresh)
        .unify()
        .or(logout)
        .unify()
        .boxed()
}
