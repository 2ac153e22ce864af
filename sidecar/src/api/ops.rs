//! Operations: health, readiness, metrics, JWKS, and the admin routes for bans and key rotation.

use serde::Serialize;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::extract::{bearer, limited, with_state};
use super::reject;
use crate::domain::ops;
use crate::state::State;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub policies_loaded: bool,
    pub policy_count: usize,
    pub packages: Vec<String>,
    /// The in-process NATS callout: `off`, `connecting`, `subscribed` or `stopped`.
    pub nats_callout: &'static str,
}

async fn health(state: State) -> Result<warp::reply::Response, Rejection> {
    let policy = state.auth.policy();
    Ok(warp::reply::json(&Health {
        status: "healthy",
        policies_loaded: true,
        policy_count: policy.policy_count(),
        packages: policy.packages().to_vec(),
        nats_callout: state.callout_status.name(),
    })
    .into_response())
}

async fn healthz(state: State) -> Result<warp::reply::Response, Rejection> {
    let status = if ops::ready(&state) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(warp::reply::with_status(warp::reply(), status).into_response())
}

async fn metrics(state: State) -> Result<warp::reply::Response, Rejection> {
    Ok(warp::reply::with_header(
        state.metrics.render(),
        "content-type",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
    .into_response())
}

async fn jwks(state: State) -> Result<warp::reply::Response, Rejection> {
    Ok(warp::reply::json(&state.auth.keys().jwks()).into_response())
}

async fn list_bans(
    state: State,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    let bans = ops::bans(&state, bearer.as_deref()).map_err(reject)?;
    Ok(warp::reply::json(&serde_json::json!({ "bans": bans })).into_response())
}

async fn lift_ban(
    ip: String,
    state: State,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    ops::lift_ban(&state, bearer.as_deref(), &ip)
        .await
        .map_err(reject)?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

async fn rotate(state: State, bearer: Option<String>) -> Result<warp::reply::Response, Rejection> {
    let kid = ops::rotate_keys(&state, bearer.as_deref())
        .await
        .map_err(reject)?;
    Ok(warp::reply::json(&serde_json::json!({ "kid": kid })).into_response())
}

pub fn routes(state: State) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    // Exempt from rate limits (http-api.md): health probes and key discovery are called by
    // infrastructure on every start.
    let health_r = warp::path!("health")
        .and(crate::api::extract::get())
        .and(with_state(state.clone()))
        .and_then(health);
    let healthz_r = warp::path!("healthz")
        .and(crate::api::extract::get())
        .and(with_state(state.clone()))
        .and_then(healthz);
    let metrics_r = warp::path!("metrics")
        .and(crate::api::extract::get())
        .and(crate::api::extract::optional_secret(
            state.clone(),
            &["authorization"],
            |s| s.config.metrics_token.as_ref(),
        ))
        .and(with_state(state.clone()))
        .and_then(metrics);
    let jwks_r = warp::path!(".well-known" / "jwks.json")
        .and(crate::api::extract::get())
        .and(with_state(state.clone()))
        .and_then(jwks);
    let bans_r = warp::path!("admin" / "bans")
        .and(crate::api::extract::get())
        .and(limited(state.clone(), "GET /admin/bans"))
        .and(with_state(state.clone()))
        .and(bearer())
        .and_then(list_bans);
    let lift_r = warp::path!("admin" / "bans" / String)
        .and(warp::delete())
        .and(limited(state.clone(), "DELETE /admin/bans/{ip}"))
        .and(with_state(state.clone()))
        .and(bearer())
        .and_then(lift_ban);
    let rotate_r = warp::path!("admin" / "keys" / "rotate")
        .and(warp::post())
        .and(limited(state.clone(), "POST /admin/keys/rotate"))
        .and(with_state(state))
        .and(bearer())
        .and_then(rotate);
    health_r
        .or(healthz_r)
        .unify()
        .or(metrics_r)
        .unify()
        .or(jwks_r)
        .unify()
        .or(bans_r)
        .unify()
        .or(lift_r)
        .unify()
        .or(rotate_r)
        .unify()
        .boxed()
}
