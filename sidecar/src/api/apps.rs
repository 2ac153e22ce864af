//! Apps (the product's tenants), their roles, role assignment, and API keys (Tronexus): the
//! routes. The rules are in [`crate::domain::apps`]; assigning `writer` in app `t1` lets the user
//! publish to `tenants/t1/#` because roles flow into the user's tokens.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::extract::{bearer, json_body, limited, with_state};
use super::reject;
use crate::clock::rfc3339;
use crate::domain::apps;
use crate::error::SidecarError;
use crate::state::State;
use crate::store::{AppRecord, RoleRecord};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppView {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleView {
    pub id: String,
    pub app_id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRole {
    pub role_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKeyRequest {
    pub app_id: String,
    pub name: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Mandatory, 1–365.
    pub expires_in_days: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyApiKey {
    pub key: String,
}

fn app_view(a: AppRecord) -> AppView {
    AppView {
        id: a.id,
        name: a.name,
        description: a.description,
        created_at: rfc3339(a.created_at),
    }
}

fn role_view(r: RoleRecord) -> RoleView {
    RoleView {
        id: r.id,
        app_id: r.app_id,
        name: r.name,
        description: r.description,
        created_at: rfc3339(r.created_at),
    }
}

fn created(body: &impl Serialize) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(body), StatusCode::CREATED).into_response()
}

fn no_content() -> warp::reply::Response {
    warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response()
}

async fn create_app(
    state: State,
    bearer: Option<String>,
    req: NewApp,
) -> Result<warp::reply::Response, SidecarError> {
    let rec = apps::create_app(&state, bearer.as_deref(), req.name, req.description).await?;
    Ok(created(&app_view(rec)))
}

fn list_apps(state: &State, bearer: Option<String>) -> Result<warp::reply::Response, SidecarError> {
    let apps: Vec<AppView> = apps::list_apps(state, bearer.as_deref())?
        .into_iter()
        .map(app_view)
        .collect();
    Ok(warp::reply::json(&json!({ "apps": apps })).into_response())
}

fn list_roles(
    state: &State,
    app_id: &str,
    bearer: Option<String>,
) -> Result<warp::reply::Response, SidecarError> {
    let roles: Vec<RoleView> = apps::list_roles(state, bearer.as_deref(), app_id)?
        .into_iter()
        .map(role_view)
        .collect();
    Ok(warp::reply::json(&json!({ "roles": roles })).into_response())
}

async fn create_role(
    state: State,
    app_id: String,
    bearer: Option<String>,
    req: NewRole,
) -> Result<warp::reply::Response, SidecarError> {
    let rec =
        apps::create_role(&state, bearer.as_deref(), app_id, req.name, req.description).await?;
    Ok(created(&role_view(rec)))
}

async fn assign_role(
    state: State,
    (app_id, user_id): (String, String),
    bearer: Option<String>,
    req: AssignRole,
) -> Result<warp::reply::Response, SidecarError> {
    let names =
        apps::assign_role(&state, bearer.as_deref(), (&app_id, &user_id), req.role_id).await?;
    Ok(
        warp::reply::json(&json!({"app_id": app_id, "user_id": user_id, "roles": names}))
            .into_response(),
    )
}

async fn remove_role(
    state: State,
    (app_id, user_id, role_id): (String, String, String),
    bearer: Option<String>,
) -> Result<warp::reply::Response, SidecarError> {
    apps::remove_role(&state, bearer.as_deref(), (&app_id, &user_id, &role_id)).await?;
    Ok(no_content())
}

async fn create_api_key(
    state: State,
    bearer: Option<String>,
    req: NewApiKeyRequest,
) -> Result<warp::reply::Response, SidecarError> {
    let new = apps::create_api_key(
        &state,
        bearer.as_deref(),
        (req.app_id, req.name),
        req.scopes,
        req.expires_in_days,
    )
    .await?;
    let r = &new.record;
    Ok(created(&json!({
        "id": r.id, "key": new.key, "name": r.name, "app_id": r.app_id,
        "scopes": r.scopes, "expires_at": rfc3339(r.expires_at),
    })))
}

async fn revoke_api_key(
    state: State,
    id: String,
    bearer: Option<String>,
) -> Result<warp::reply::Response, SidecarError> {
    apps::revoke_api_key(&state, bearer.as_deref(), &id).await?;
    Ok(no_content())
}

fn verify_api_key(
    state: &State,
    req: &VerifyApiKey,
) -> Result<warp::reply::Response, SidecarError> {
    let r = apps::verify_api_key(state, &req.key)?;
    Ok(warp::reply::json(&json!({
        "valid": true, "id": r.id, "app_id": r.app_id, "name": r.name,
        "scopes": r.scopes, "expires_at": rfc3339(r.expires_at),
    }))
    .into_response())
}

pub fn routes(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    app_routes(state.clone()).or(key_routes(state)).unify()
}

fn app_routes(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let s = move || with_state(state.clone());
    let apps_get = warp::path!("apps")
        .and(crate::api::extract::get())
        .and(s())
        .and(bearer())
        .and_then(|st: State, b| async move { list_apps(&st, b).map_err(reject) });
    let apps_post = warp::path!("apps")
        .and(warp::post())
        .and(s())
        .and(bearer())
        .and(json_body::<NewApp>())
        .and_then(|st, b, r| async move { create_app(st, b, r).await.map_err(reject) });
    let roles_get = warp::path!("apps" / String / "roles")
        .and(crate::api::extract::get())
        .and(s())
        .and(bearer())
        .and_then(
            |id: String, st: State, b| async move { list_roles(&st, &id, b).map_err(reject) },
        );
    let roles_post = warp::path!("apps" / String / "roles")
        .and(warp::post())
        .and(s())
        .and(bearer())
        .and(json_body::<NewRole>())
        .and_then(|id, st, b, r| async move { create_role(st, id, b, r).await.map_err(reject) });
    let assign = warp::path!("apps" / String / "users" / String / "roles")
        .and(warp::post())
        .and(s())
        .and(bearer())
        .and(json_body::<AssignRole>())
        .and_then(|app, user, st, b, r| async move {
            assign_role(st, (app, user), b, r).await.map_err(reject)
        });
    let unassign = warp::path!("apps" / String / "users" / String / "roles" / String)
        .and(warp::delete())
        .and(s())
        .and(bearer())
        .and_then(|app, user, role, st, b| async move {
            remove_role(st, (app, user, role), b).await.map_err(reject)
        });
    apps_get
        .or(apps_post)
        .unify()
        .or(roles_get)
        .unify()
        .or(roles_post)
        .unify()
        .or(assign)
        .unify()
        .or(unassign)
        .unify()
}

fn key_routes(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let st = state.clone();
    let s = move || with_state(st.clone());
    let keys_post = warp::path!("apikeys")
        .and(warp::post())
        .and(s())
        .and(bearer())
        .and(json_body::<NewApiKeyRequest>())
        .and_then(|st, b, r| async move { create_api_key(st, b, r).await.map_err(reject) });
    let keys_delete = warp::path!("apikeys" / String)
        .and(warp::delete())
        .and(s())
        .and(bearer())
        .and_then(|id, st, b| async move { revoke_api_key(st, id, b).await.map_err(reject) });
    let keys_verify = warp::path!("apikeys" / "verify")
        .and(warp::post())
        .and(limited(state.clone(), "POST /apikeys/verify"))
        .and(s())
        .and(json_body::<VerifyApiKey>())
        .and_then(
            |st: State, r: VerifyApiKey| async move { verify_api_key(&st, &r).map_err(reject) },
        );
    keys_verify.or(keys_post).unify().or(keys_delete).unify()
}
