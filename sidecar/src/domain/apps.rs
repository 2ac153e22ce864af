//! Apps (the product's tenants), their roles, role assignment, and API keys (Tronexus).
//!
//! A user's roles in an app flow into the tokens the sidecar issues for that user when the app is
//! the identity's tenant (`roles` claim), so the policy — and with it MQTT topics and NATS
//! subjects — sees them. Assigning or taking a role is an identity change: tokens issued before
//! are read with the new roles, and live connections whose grants shrink are cut.
//!
//! API keys: `expires_in_days` is mandatory and 1–365 at creation; expiry and revocation are
//! checked at every use. The key is shown once; only a hash is stored.

use broker_auth::principal::is_safe_label;

use super::{callers, revocations};
use crate::apikeys::{self, ApiKeyError, NewApiKey};
use crate::error::SidecarError;
use crate::state::AppState;
use crate::store::{
    ApiKeyRecord, ApiKeyStore, AppRecord, IdentityRecord, IdentityStore, RoleRecord, TenancyStore,
    UserRolesRecord,
};

/// Names of the roles `identity` holds in its app (its tenant), sorted.
pub fn roles_of(
    store: &dyn TenancyStore,
    identity: &IdentityRecord,
) -> Result<Vec<String>, SidecarError> {
    let Some(app) = identity.tenant.as_deref() else {
        return Ok(vec![]);
    };
    let Some(assigned) = store.user_roles(app, &identity.id)? else {
        return Ok(vec![]);
    };
    let mut names: Vec<String> = store
        .roles(app)?
        .into_iter()
        .filter(|r| assigned.role_ids.contains(&r.id))
        .map(|r| r.name)
        .collect();
    names.sort();
    Ok(names)
}

/// Names (app, role, key names) and descriptions: 1–`max` printable characters.
fn check_text(what: &str, s: &str, max: usize) -> Result<(), SidecarError> {
    if s.trim().is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(SidecarError::Validation(format!(
            "{what} must be 1-{max} printable characters"
        )));
    }
    Ok(())
}

fn check_description(d: Option<&str>) -> Result<(), SidecarError> {
    d.map_or(Ok(()), |d| check_text("description", d, 1024))
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The app `id`, or not found.
pub fn existing_app(store: &dyn TenancyStore, id: &str) -> Result<AppRecord, SidecarError> {
    store.app(id)?.ok_or(SidecarError::NotFound("app"))
}

pub async fn create_app(
    state: &AppState,
    bearer: Option<&str>,
    name: String,
    description: Option<String>,
) -> Result<AppRecord, SidecarError> {
    callers::require_admin(state, bearer)?;
    check_text("name", &name, 128)?;
    check_description(description.as_deref())?;
    let rec = AppRecord {
        id: new_uuid(),
        name,
        description,
        created_at: state.now(),
    };
    let store: &dyn TenancyStore = state.store.as_ref();
    store.put_app(&rec)?;
    store.flush().await?;
    Ok(rec)
}

pub fn list_apps(state: &AppState, bearer: Option<&str>) -> Result<Vec<AppRecord>, SidecarError> {
    callers::require_admin(state, bearer)?;
    Ok(state.store.apps()?)
}

/// The roles of an app, for admins, its members and its API keys.
pub fn list_roles(
    state: &AppState,
    bearer: Option<&str>,
    app_id: &str,
) -> Result<Vec<RoleRecord>, SidecarError> {
    if !callers::authenticate(state, bearer)?.may_read_app(app_id) {
        return Err(SidecarError::Forbidden("not a member of this app"));
    }
    existing_app(state.store.as_ref(), app_id)?;
    Ok(state.store.roles(app_id)?)
}

/// Role names are what the policy matches on and what tokens carry (the core's label rule).
fn check_role_name(s: &str) -> Result<(), SidecarError> {
    if is_safe_label(s) {
        Ok(())
    } else {
        Err(SidecarError::Validation(
            "role name must be 1-128 characters of A-Z a-z 0-9 _ . : -".into(),
        ))
    }
}

pub async fn create_role(
    state: &AppState,
    bearer: Option<&str>,
    app_id: String,
    name: String,
    description: Option<String>,
) -> Result<RoleRecord, SidecarError> {
    callers::require_admin(state, bearer)?;
    let store: &dyn TenancyStore = state.store.as_ref();
    existing_app(store, &app_id)?;
    check_role_name(&name)?;
    check_description(description.as_deref())?;
    let rec = RoleRecord {
        id: new_uuid(),
        app_id,
        name,
        description,
        created_at: state.now(),
    };
    store.create_role(&rec)?;
    store.flush().await?;
    Ok(rec)
}

/// The app and user of an assignment change (admins only); both must exist.
fn assignment_parties(
    state: &AppState,
    bearer: Option<&str>,
    app_id: &str,
    user_id: &str,
) -> Result<IdentityRecord, SidecarError> {
    callers::require_admin(state, bearer)?;
    existing_app(state.store.as_ref(), app_id)?;
    let store: &dyn IdentityStore = state.store.as_ref();
    store
        .identity(user_id)?
        .ok_or(SidecarError::NotFound("user"))
}

/// Give `user_id` the role `role_id` of `app_id`; returns the names of the roles it now holds.
pub async fn assign_role(
    state: &AppState,
    bearer: Option<&str>,
    (app_id, user_id): (&str, &str),
    role_id: String,
) -> Result<Vec<String>, SidecarError> {
    let user = assignment_parties(state, bearer, app_id, user_id)?;
    let store: &dyn TenancyStore = state.store.as_ref();
    let roles = store.roles(app_id)?;
    if !roles.iter().any(|r| r.id == role_id) {
        return Err(SidecarError::NotFound("role in this app"));
    }
    let mut rec = store
        .user_roles(app_id, user_id)?
        .unwrap_or(UserRolesRecord {
            app_id: app_id.to_owned(),
            user_id: user_id.to_owned(),
            role_ids: vec![],
        });
    rec.role_ids.push(role_id);
    rec.role_ids.sort();
    rec.role_ids.dedup();
    store.put_user_roles(&rec)?;
    revocations::identity_changed(state, &user).await?;
    Ok(roles
        .into_iter()
        .filter(|r| rec.role_ids.contains(&r.id))
        .map(|r| r.name)
        .collect())
}

/// Take a role from a user: its live MQTT and NATS connections whose grants shrink are cut.
pub async fn remove_role(
    state: &AppState,
    bearer: Option<&str>,
    (app_id, user_id, role_id): (&str, &str, &str),
) -> Result<(), SidecarError> {
    let user = assignment_parties(state, bearer, app_id, user_id)?;
    let store: &dyn TenancyStore = state.store.as_ref();
    let mut rec = store
        .user_roles(app_id, user_id)?
        .filter(|r| r.role_ids.iter().any(|r| r == role_id))
        .ok_or(SidecarError::NotFound("role assignment"))?;
    rec.role_ids.retain(|r| r != role_id);
    store.put_user_roles(&rec)?;
    revocations::identity_changed(state, &user).await
}

/// A new API key of an app (admins); the key is in the answer only.
pub async fn create_api_key(
    state: &AppState,
    bearer: Option<&str>,
    (app_id, name): (String, String),
    scopes: Vec<String>,
    expires_in_days: i64,
) -> Result<NewApiKey, SidecarError> {
    callers::require_admin(state, bearer)?;
    if !(1..=365).contains(&expires_in_days) {
        return Err(SidecarError::Validation(
            "expires_in_days must be between 1 and 365".into(),
        ));
    }
    check_text("name", &name, 128)?;
    existing_app(state.store.as_ref(), &app_id)?;
    if let Some(s) = scopes.iter().find(|s| !is_safe_label(s)) {
        return Err(SidecarError::Validation(format!(
            "scope {s:?} is not 1-128 of A-Z a-z 0-9 _ . : -"
        )));
    }
    let new = apikeys::generate(
        &name,
        scopes,
        vec![],
        Some(app_id),
        expires_in_days,
        state.now(),
    );
    let store: &dyn ApiKeyStore = state.store.as_ref();
    store.put_api_key(&new.record)?;
    store.flush().await?;
    Ok(new)
}

/// Revoke an API key (admins); revoking a revoked key is a no-op.
pub async fn revoke_api_key(
    state: &AppState,
    bearer: Option<&str>,
    id: &str,
) -> Result<(), SidecarError> {
    callers::require_admin(state, bearer)?;
    let store: &dyn ApiKeyStore = state.store.as_ref();
    let mut rec = store
        .api_key(id)?
        .ok_or(SidecarError::NotFound("API key"))?;
    if rec.revoked_at.is_none() {
        rec.revoked_at = Some(state.now());
        store.put_api_key(&rec)?;
        store.flush().await?;
    }
    Ok(())
}

/// Check a presented API key now: shape, checksum, hash, revocation and expiry.
pub fn check_api_key(state: &AppState, key: &str) -> Result<ApiKeyRecord, ApiKeyError> {
    apikeys::verify(state.store.as_ref(), key, state.now())
}

/// `POST /apikeys/verify`: the key's record if it is valid now; every refusal is one answer.
pub fn verify_api_key(state: &AppState, key: &str) -> Result<ApiKeyRecord, SidecarError> {
    let checked = check_api_key(state, key);
    state.metrics.outcome(
        "apikey_verify",
        checked.as_ref().map_or_else(|e| e.as_str(), |_| "valid"),
    );
    checked.map_err(refusal)
}

/// How an API key's refusal is answered: 401 whatever the reason, unless the store could not
/// say (503: the key may well be valid).
pub fn refusal(e: ApiKeyError) -> SidecarError {
    match e {
        ApiKeyError::StoreUnavailable => {
            SidecarError::Store(crate::store::StoreError::Unavailable(
                "API key lookup: the store did not answer".into(),
            ))
        }
        _ => SidecarError::InvalidToken(broker_auth::DenyCode::BadSignature),
    }
}
