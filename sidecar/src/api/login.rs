//! Key login (Novacore): `POST /auth/challenge` then `POST /auth/verify`; session refresh and
//! logout. A challenge is 32 random bytes (base64url), bound to the key that asked, valid for 5
//! minutes; the rules are in [`crate::domain::login`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::{Filter, Rejection, Reply};

use super::extract::{json_body, limited, with_state};
use super::reject;
use crate::clock::rfc3339;
use crate::domain::login;
use crate::state::State;

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
    let (challenge, expires_at) = login::challenge(&state, &req.public_key).map_err(reject)?;
    Ok(warp::reply::json(&ChallengeResponse {
        challenge,
        expires_at: rfc3339(expires_at),
    })
    .into_response())
}

async fn verify(state: State, req: VerifyRequest) -> Result<warp::reply::Response, Rejection> {
    let done = login::verify(&state, &req.public_key, &req.signature, &req.challenge)
        .await
        .map_err(reject)?;
    Ok(warp::reply::json(&VerifyResponse {
        token: done.session.access_token,
        identity_id: done.identity_id,
        expires_at: rfc3339(done.session.claims.exp),
        token_type: "Bearer",
        refresh_token: done.session.refresh_token,
    })
    .into_response())
}

async fn session_refresh(
    state: State,
    req: SessionRefreshRequest,
) -> Result<warp::reply::Response, Rejection> {
    let (claims, access_token, refresh_token) = login::refresh(&state, &req.refresh_token)
        .await
        .map_err(reject)?;
    Ok(warp::reply::json(&SessionRefreshResponse {
        access_token,
        token_type: "bearer",
        expires_in: claims.exp - claims.iat,
        refresh_token,
    })
    .into_response())
}

async fn logout(state: State, bearer: Option<String>) -> Result<warp::reply::Response, Rejection> {
    login::logout(&state, bearer.as_deref())
        .await
        .map_err(reject)?;
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
