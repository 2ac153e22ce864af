//! The NATS provisioner's HTTP surface (seed 004): the account resolver nats-server calls, and
//! the shared-secret write routes the backend calls.
//!
//! Resolver routes carry no auth (nats-server fetches account JWTs anonymously; a JWT is public
//! and signed) and no per-IP rate limit (one server asks for every account it meets). Write routes
//! need `BACKEND_SHARED_SECRET` in `X-Backend-Shared-Secret` or `X-Ravenxcope-Provisioner-Secret`
//! (checked in that order, compared in constant time); anything else is 401.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::extract::{json_body, shared_secret, with_state};
use super::reject;
use crate::error::SidecarError;
use crate::provision::{CONTROL, Provisioner, SYS, check_name};
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

fn provisioner(state: &State) -> Result<Arc<Provisioner>, SidecarError> {
    state.provisioner.clone().ok_or(SidecarError::NotFound(
        "the NATS provisioner (set OPERATOR_SEED_PATH)",
    ))
}

fn jwt_reply(jwt: &str) -> warp::reply::Response {
    warp::reply::with_header(jwt.to_owned(), "content-type", "application/jwt").into_response()
}

fn resolve(state: &State, key: Option<&str>) -> Result<warp::reply::Response, SidecarError> {
    provisioner(state)?;
    let rec = match key {
        None | Some("") => state.store.nats_account(SYS)?,
        Some(k) => state.store.nats_account_by_key(k)?,
    };
    rec.map(|a| jwt_reply(&a.jwt))
        .ok_or(SidecarError::NotFound("account"))
}

fn secret_gate(state: State) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    // The seed's two header names, checked in this order.
    shared_secret(
        state,
        &["x-backend-shared-secret", "x-ravenxcope-provisioner-secret"],
        |s| s.config.provision.backend_shared_secret.as_ref(),
    )
}

/// Push an account's new JWT; a failure is reported, not fatal (the store has it, and the
/// resolver serves it to any server that asks).
async fn propagate(state: &State, public_key: &str, jwt: &str) -> bool {
    match state.nats_side.push(public_key, jwt).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, account = public_key, "account update not pushed");
            false
        }
    }
}

async fn create_account(
    state: State,
    req: AccountRequest,
) -> Result<warp::reply::Response, SidecarError> {
    let p = provisioner(&state)?;
    check_name("tenantId", &req.tenant_id)?;
    if req.tenant_id == SYS || req.tenant_id == CONTROL {
        return Err(SidecarError::Validation("tenantId is reserved".into()));
    }
    let name = req.name.unwrap_or_else(|| req.tenant_id.clone());
    if name.len() > 128 {
        return Err(SidecarError::Validation(
            "name is over 128 characters".into(),
        ));
    }
    let (account, created) = p.ensure_account(&req.tenant_id, &name, state.now())?;
    let mut propagated = true;
    if created {
        // CONTROL imports the new tenant's status subjects.
        let control = p.resign_control(state.now())?;
        state.store.flush().await?;
        propagated = propagate(&state, &control.public_key, &control.jwt).await;
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({
        "accountId": account.id,
        "name": account.name,
        "accountPubKey": account.public_key,
        "accountJWT": account.jwt,
        "created": created,
        "propagated": propagated,
    });
    Ok(warp::reply::with_status(warp::reply::json(&body), status).into_response())
}

async fn create_user(
    state: State,
    req: UserRequest,
) -> Result<warp::reply::Response, SidecarError> {
    let p = provisioner(&state)?;
    check_name("tenantId", &req.tenant_id)?;
    check_name("sensorId", &req.sensor_id)?;
    let account = state
        .store
        .nats_account(&req.tenant_id)?
        .ok_or(SidecarError::NotFound(
            "tenant account (POST /accounts first)",
        ))?;
    let principal = Provisioner::principal(&req.sensor_id, Some(&req.tenant_id), "sensor");
    let id = format!("{}/{}", req.tenant_id, req.sensor_id);
    let user = p.ensure_user(&id, &account.id, &principal, state.now())?;
    let mut propagated = true;
    let account = if user.created {
        // The tenant account imports this sensor's consumer from CONTROL.
        let account = p.resign_tenant(&req.tenant_id, state.now())?;
        state.store.flush().await?;
        propagated = propagate(&state, &account.public_key, &account.jwt).await;
        account
    } else {
        account
    };
    let consumer = state
        .nats_side
        .ensure_consumer(&p.names.command_stream, &req.tenant_id, &req.sensor_id)
        .await;
    if let Err(e) = &consumer {
        tracing::warn!(error = %e, user = %id, "command consumer not ensured yet");
    }
    let body = json!({
        "userPubKey": user.record.public_key,
        "accountPubKey": account.public_key,
        "creds": user.creds,
        "consumer": format!("cmd-{}-{}", req.tenant_id, req.sensor_id),
        "consumerReady": consumer.is_ok(),
        "propagated": propagated,
    });
    Ok(warp::reply::json(&body).into_response())
}

async fn backend_user(state: State) -> Result<warp::reply::Response, SidecarError> {
    let p = provisioner(&state)?;
    let principal = Provisioner::principal("backend", None, "backend");
    let user = p.ensure_user("backend", CONTROL, &principal, state.now())?;
    state.store.flush().await?;
    let body = json!({"userPubKey": user.record.public_key, "creds": user.creds});
    Ok(warp::reply::json(&body).into_response())
}

async fn revoke(state: State, req: RevokeRequest) -> Result<warp::reply::Response, SidecarError> {
    let p = provisioner(&state)?;
    let account = p.revoke(&req.account_id, &req.user_pub_key, state.now())?;
    state.store.flush().await?;
    let propagated = propagate(&state, &account.public_key, &account.jwt).await;
    let body = json!({"revoked": req.user_pub_key, "accountPubKey": account.public_key, "propagated": propagated});
    Ok(warp::reply::json(&body).into_response())
}

pub fn routes(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let index = warp::path!("jwt" / "v1" / "accounts")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state(state.clone()))
        .and_then(|s: State| async move { resolve(&s, None).map_err(reject) });
    let one = warp::path!("jwt" / "v1" / "accounts" / String)
        .and(warp::get())
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
