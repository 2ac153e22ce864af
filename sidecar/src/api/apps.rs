//! Apps (the product's tenants), their roles, role assignment, and API keys (Tronexus).
//!
//! A user's roles in an app flow into the tokens the sidecar issues for that user when the app is
//! the identity's tenant (`roles` claim), so the policy — and with it MQTT topics and NATS
//! subjects — sees them: assigning `writer` in app `t1` lets the user publish to `tenants/t1/#`.
//!
//! API keys: `expires_in_days` is mandatory and 1–365 at creation; expiry and revocation are
//! checked at every use (`apikeys::verify`). The key is shown once; only a hash is stored.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::extract::{bearer, json_body, limited, with_state};
use super::reject;
use crate::clock::rfc3339;
use crate::error::SidecarError;
use crate::state::{Caller, State};
use crate::store::{AppRecord, RoleRecord, UserRolesRecord};

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

/// Names (app, role, key names): 1–128 printable characters.
fn check_text(what: &str, s: &str, max: usize) -> Result<(), SidecarError> {
    if s.trim().is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(SidecarError::Validation(format!(
            "{what} must be 1-{max} printable characters"
        )));
    }
    Ok(())
}

/// Role names are what the policy matches on and what tokens carry: `[A-Za-z0-9_.:-]`, 1–64.
fn check_role_name(s: &str) -> Result<(), SidecarError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SidecarError::Validation(
            "role name must be 1-64 characters of A-Z a-z 0-9 _ . : -".into(),
        ))
    }
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn create_app(
    state: State,
    bearer: Option<String>,
    req: NewApp,
) -> Result<warp::reply::Response, SidecarError> {
    state.require_admin(bearer.as_deref())?;
    check_text("name", &req.name, 128)?;
    if let Some(d) = &req.description {
        check_text("description", d, 1024)?;
    }
    let rec = AppRecord {
        id: new_uuid(),
        name: req.name,
        description: req.description,
        created_at: state.now(),
    };
    state.store.put_app(&rec)?;
    state.store.flush().await?;
    Ok(
        warp::reply::with_status(warp::reply::json(&app_view(rec)), StatusCode::CREATED)
            .into_response(),
    )
}

fn list_apps(state: &State, bearer: Option<String>) -> Result<warp::reply::Response, SidecarError> {
    state.require_admin(bearer.as_deref())?;
    let apps: Vec<AppView> = state.store.apps()?.into_iter().map(app_view).collect();
    Ok(warp::reply::json(&json!({ "apps": apps })).into_response())
}

fn existing_app(state: &State, id: &str) -> Result<AppRecord, SidecarError> {
    state.store.app(id)?.ok_or(SidecarError::NotFound("app"))
}

fn list_roles(
    state: &State,
    app_id: &str,
    bearer: Option<String>,
) -> Result<warp::reply::Response, SidecarError> {
    // Admins, or members of that app (their token's tenant is the app).
    let caller = state.authenticate(bearer.as_deref())?;
    let member = matches!(&caller, Caller::Identity { identity, .. }
        if identity.tenant.as_deref() == Some(app_id));
    let key_of_app = matches!(&caller, Caller::ApiKey(k) if k.app_id.as_deref() == Some(app_id));
    if !(caller.is_admin() || member || key_of_app) {
        return Err(SidecarError::Forbidden("not a member of this app"));
    }
    existing_app(state, app_id)?;
    let roles: Vec<RoleView> = state
        .store
        .roles(app_id)?
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
    state.require_admin(bearer.as_deref())?;
    existing_app(&state, &app_id)?;
    check_role_name(&req.name)?;
    if let Some(d) = &req.description {
        check_text("description", d, 1024)?;
    }
    let rec = RoleRecord {
        id: new_uuid(),
        app_id,
        name: req.name,
        description: req.description,
        created_at: state.now(),
    };
    state.store.create_role(&rec)?;
    state.store.flush().await?;
    Ok(
        warp::reply::with_status(warp::reply::json(&role_view(rec)), StatusCode::CREATED)
            .into_response(),
    )
}

async fn assign_role(
    state: State,
    (app_id, user_id): (String, String),
    bearer: Option<String>,
    req: AssignRole,
) -> Result<warp::reply::Response, SidecarError> {
    state.require_admin(bearer.as_deref())?;
    existing_app(&state, &app_id)?;
    let user = state
        .store
        .identity(&user_id)?
        .ok_or(SidecarError::NotFound("user"))?;
    let roles = state.store.roles(&app_id)?;
    if !roles.iter().any(|r| r.id == req.role_id) {
        return Err(SidecarError::NotFound("role in this app"));
    }
    let mut rec = state
        .store
        .user_roles(&app_id, &user_id)?
        .unwrap_or(UserRolesRecord {
            app_id: app_id.clone(),
            user_id: user_id.clone(),
            role_ids: vec![],
        });
    rec.role_ids.push(req.role_id);
    rec.role_ids.sort();
    rec.role_ids.dedup();
    state.store.put_user_roles(&rec)?;
    // Tokens issued before carry the old roles; from now on they are read with the new ones.
    state.identity_changed(&user).await?;
    let names: Vec<&str> = roles
        .iter()
        .filter(|r| rec.role_ids.contains(&r.id))
        .map(|r| r.name.as_str())
        .collect();
    Ok(
        warp::reply::json(&json!({"app_id": app_id, "user_id": user_id, "roles": names}))
            .into_response(),
    )
}

/// Take a role from a user: its live MQTT and NATS connections whose grants shrink are cut.
async fn remove_role(
    state: State,
    (app_id, user_id, role_id): (String, String, String),
    bearer: Option<String>,
) -> Result<warp::reply::Response, SidecarError> {
    state.require_admin(bearer.as_deref())?;
    existing_app(&state, &app_id)?;
    let user = state
        .store
        .identity(&user_id)?
        .ok_or(SidecarError::NotFound("user"))?;
    let mut rec = state
        .store
        .user_roles(&app_id, &user_id)?
        .filter(|r| r.role_ids.contains(&role_id))
        .ok_or(SidecarError::NotFound("role assignment"))?;
    rec.role_ids.retain(|r| *r != role_id);
    state.store.put_user_roles(&rec)?;
    state.identity_changed(&user).await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

async fn create_api_key(
    state: State,
    bearer: Option<String>,
    req: NewApiKeyRequest,
) -> Result<warp::reply::Response, SidecarError> {
    state.require_admin(bearer.as_deref())?;
    if !(1..=365).contains(&req.expires_in_days) {
        return Err(SidecarError::Validation(
            "expires_in_days must be between 1 and 365".into(),
        ));
    }
    check_text("name", &req.name, 128)?;
    existing_app(&state, &req.app_id)?;
    for s in &req.scopes {
        check_role_name(s).map_err(|_| {
            SidecarError::Validation(format!("scope {s:?} is not 1-64 of A-Z a-z 0-9 _ . : -"))
        })?;
    }
    let new = crate::apikeys::generate(
        &req.name,
        req.scopes,
        vec![],
        Some(req.app_id),
        req.expires_in_days,
        state.now(),
    );
    state.store.put_api_key(&new.record)?;
    state.store.flush().await?;
    let r = &new.record;
    let body = json!({
        "id": r.id, "key": new.key, "name": r.name, "app_id": r.app_id,
        "scopes": r.scopes, "expires_at": rfc3339(r.expires_at),
    });
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::CREATED).into_response())
}

async fn revoke_api_key(
    state: State,
    id: String,
    bearer: Option<String>,
) -> Result<warp::reply::Response, SidecarError> {
    state.require_admin(bearer.as_deref())?;
    let mut rec = state
        .store
        .api_key(&id)?
        .ok_or(SidecarError::NotFound("API key"))?;
    if rec.revoked_at.is_none() {
        rec.revoked_at = Some(state.now());
        state.store.put_api_key(&rec)?;
        state.store.flush().await?;
    }
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

fn verify_api_key(
    state: &State,
    req: &VerifyApiKey,
) -> Result<warp::reply::Response, SidecarError> {
    match crate::apikeys::verify(state.store.as_ref(), &req.key, state.now()) {
        Ok(r) => {
            state.metrics.outcome("apikey_verify", "valid");
            Ok(warp::reply::json(&json!({
                "valid": true, "id": r.id, "app_id": r.app_id, "name": r.name,
                "scopes": r.scopes, "expires_at": rfc3339(r.expires_at),
            }))
            .into_response())
        }
        Err(e) => {
            state.metrics.outcome("apikey_verify", e.as_str());
            Err(SidecarError::InvalidToken(
                broker_auth::DenyCode::BadSignature,
            ))
        }
    }
}

pub fn routes(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let st = state.clone();
    let s = move || with_state(st.clone());
    let apps_get = warp::path!("apps")
        .and(warp::get())
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
        .and(warp::get())
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
        .or(keys_verify)
        .unify()
        .or(keys_post)
        .unify()
        .or(keys_delete)
        .unify()
}
