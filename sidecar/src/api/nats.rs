//! The NATS provisioner's HTTP surface (seed 004): the account resolver nats-server calls, and
//! the shared-secret write routes the backend calls.
//!
//! Resolver routes carry no auth (nats-server fetches account JWTs anonymously; a JWT is public
//! and signed) and no per-IP rate limit (one server asks for every account it meets). Write routes
//! need `BACKEND_SHARED_SECRET` in `X-Backend-Shared-Secret` or `X-Ravenxcope-Provisioner-Secret`
//! (checked in that order, compared in constant time); anything else is 401.

use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::extract::{json_body, shared_secret, with_state};
use super::reject;
use crate::domain::provisioning;
use crate::error::SidecarError;
use crate::state::State;

/// `POST /accounts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccountRequest {
    pub tenant_id: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserRequest {
    pub tenant_id: String,
    pub sensor_id: String,
}

/// `POST /revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RevokeRequest {
    /// Tenant id (or `CONTROL`) of the user's account.
    pub account_id: String,
    pub user_pub_key: String,
}

fn jwt_reply(jwt: &str) -> warp::reply::Response {
    warp::reply::with_header(jwt.to_owned(), "content-type", "application/jwt").into_response()
}

fn resolve(state: &State, key: Option<&str>) -> Result<warp::reply::Response, SidecarError> {
    provisioning::resolve(state, key).map(|jwt| jwt_reply(&jwt))
}

fn secret_gate(state: State) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    // The seed's two header names, checked in this order.
    shared_secret(
        state,
        &["x-backend-shared-secret", "x-ravenxcope-provisioner-secret"],
        |s| s.config.provision.backend_shared_secret.as_ref(),
    )
}

async fn create_account(
    state: State,
    req: AccountRequest,
) -> Result<warp::reply::Response, SidecarError> {
    let t = provisioning::create_account(&state, &req.tenant_id, req.name).await?;
    let status = if t.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({
        "accountId": t.account.id,
        "name": t.account.name,
        "accountPubKey": t.account.public_key,
        "accountJWT": t.account.jwt,
        "created": t.created,
        "propagated": t.propagated,
    });
    Ok(warp::reply::with_status(warp::reply::json(&body), status).into_response())
}

async fn create_user(
    state: State,
    req: UserRequest,
) -> Result<warp::reply::Response, SidecarError> {
    let u = provisioning::create_user(&state, &req.tenant_id, &req.sensor_id).await?;
    let body = json!({
        "userPubKey": u.user.record.public_key,
        "accountPubKey": u.account.public_key,
        "creds": u.user.creds,
        "consumer": u.consumer,
        "consumerReady": u.consumer_ready,
        "propagated": u.propagated,
    });
    Ok(warp::reply::json(&body).into_response())
}

async fn backend_user(state: State) -> Result<warp::reply::Response, SidecarError> {
    let user = provisioning::backend_user(&state).await?;
    let body = json!({"userPubKey": user.record.public_key, "creds": user.creds});
    Ok(warp::reply::json(&body).into_response())
}

async fn revoke(state: State, req: RevokeRequest) -> Result<warp::reply::Response, SidecarError> {
    let (account, propagated) =
        provisioning::revoke(&state, &req.account_id, &req.user_pub_key).await?;
    let body = json!({"revoked": req.user_pub_key, "accountPubKey": account.public_key, "propagated": propagated});
    Ok(warp::reply::json(&body).into_response())
}

pub fn routes(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let index = warp::path!("jwt" / "v1" / "accounts")
        .and(warp::path::end())
        .and(crate::api::extract::get())
        .and(with_state(state.clone()))
        .and_then(|s: State| async move { resolve(&s, None).map_err(reject) });
    let one = warp::path!("jwt" / "v1" / "accounts" / String)
        .and(crate::api::extract::get())
        .and(with_state(state.clone()))
        .and_then(|k: String, s: State| async move { resolve(&s, Some(&k)).map_err(reject) });
    let write = |st: State| secret_gate(st.clone()).and(with_state(st));
    let accounts = warp::path!("accounts")
        .and(warp::post())
        .and(write(state.clone()))
        .and(json_body::<AccountRequest>())
        .and_then(|s, r| async move { create_account(s, r).await.map_err(reject) });
    let users = warp::path!("users")
        .and(warp::post())
        .and(write(state.clone()))
        .and(json_body::<UserRequest>())
        .and_then(|s, r| async move { create_user(s, r).await.map_err(reject) });
    let backend = warp::path!("backend-user")
        .and(warp::post())
        .and(write(state.clone()))
        .and_then(|s| async move { backend_user(s).await.map_err(reject) });
    let revoke = warp::path!("revoke")
        .and(warp::post())
        .and(write(state))
        .and(json_body::<RevokeRequest>())
        .and_then(|s, r| async move { revoke(s, r).await.map_err(reject) });
    index
        .or(one)
        .unify()
        .or(accounts)
        .unify()
        .or(users)
        .unify()
        .or(backend)
        .unify()
        .or(revoke)
        .unify()
}
