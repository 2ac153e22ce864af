//! Identities (Novacore): register, read, list, disable; and `/auth/me`.

use broker_auth::identity::{IdentityType, PublicKey};
use broker_auth::principal::{is_safe_label, is_safe_name};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::extract::{bearer, json_body, limited, with_state};
use super::reject;
use crate::clock::rfc3339;
use crate::error::SidecarError;
use crate::state::{Caller, State};
use crate::store::IdentityRecord;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Base64 (standard or URL-safe, padded or not) of an Ed25519 key (32 bytes) or a P-256 key
    /// (SEC1 33/65 bytes or SPKI DER).
    pub public_key: String,
    /// Identity type; fixes the key algorithm.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "device")]
    pub kind: IdentityType,
    pub name: Option<String>,
    pub tenant: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Free-form; a gateway's `devices` lists the device ids it acts for.
    #[schema(value_type = Object)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityView {
    pub identity_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub key_algorithm: Option<String>,
    pub public_key: Option<String>,
    pub tenant: Option<String>,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_at: String,
    pub disabled: bool,
    /// The upstream OpenID account of a person who signs in through a provider.
    #[schema(value_type = Option<Object>)]
    pub upstream: Option<crate::store::UpstreamAccount>,
}

impl From<&IdentityRecord> for IdentityView {
    fn from(r: &IdentityRecord) -> Self {
        IdentityView {
            identity_id: r.id.clone(),
            kind: r.kind.as_str().to_owned(),
            key_algorithm: r.key_algorithm.map(|a| a.as_str().to_owned()),
            upstream: r.upstream.clone(),
            public_key: r.public_key.clone(),
            tenant: r.tenant.clone(),
            name: r.name.clone(),
            scopes: r.scopes.clone(),
            groups: r.groups.clone(),
            metadata: r.metadata.clone(),
            created_at: rfc3339(r.created_at),
            disabled: r.disabled_at.is_some(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub limit: Option<usize>,
    pub after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityPage {
    pub identities: Vec<IdentityView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// A change to an identity (`PATCH /identity/{id}`): absent fields stay as they are; type and
/// key never change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIdentity {
    pub name: Option<String>,
    pub tenant: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    /// Replaces the metadata whole; a gateway's `devices` lists the device ids it acts for.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

fn validate(req: &RegisterRequest) -> Result<(), SidecarError> {
    validate_fields(
        req.name.as_deref(),
        req.tenant.as_deref(),
        &req.scopes,
        &req.groups,
        req.metadata.as_ref(),
    )
}

/// The rules an identity's descriptive fields follow, at registration and on every change.
fn validate_fields(
    name: Option<&str>,
    tenant: Option<&str>,
    scopes: &[String],
    groups: &[String],
    metadata: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<(), SidecarError> {
    let bad = |m: &str| Err(SidecarError::Validation(m.to_owned()));
    if name.is_some_and(|n| n.chars().count() > 128 || n.chars().any(char::is_control)) {
        return bad("name: at most 128 printable characters");
    }
    if tenant.is_some_and(|t| !is_safe_name(t)) {
        return bad("tenant: 1-128 of [A-Za-z0-9_-]");
    }
    if scopes.len() > 64
        || groups.len() > 64
        || !scopes.iter().chain(groups).all(|s| is_safe_label(s))
    {
        return bad("scopes/groups: at most 64 each, 1-128 of [A-Za-z0-9_.:-]");
    }
    if let Some(devices) = metadata.and_then(|m| m.get("devices")) {
        let ok = devices.as_array().is_some_and(|a| {
            a.len() <= 1024 && a.iter().all(|d| d.as_str().is_some_and(is_safe_name))
        });
        if !ok {
            return bad("metadata.devices: an array of identity ids");
        }
    }
    Ok(())
}

async fn register(
    state: State,
    bearer: Option<String>,
    req: RegisterRequest,
) -> Result<warp::reply::Response, Rejection> {
    let self_service = state.config.open_registration
        && matches!(req.kind, IdentityType::Device | IdentityType::Gateway);
    if !self_service {
        let caller = state.authenticate(bearer.as_deref()).map_err(reject)?;
        if !caller.may_register(req.kind) {
            return Err(reject(SidecarError::Forbidden(
                "this credential may not register this identity type",
            )));
        }
    }
    validate(&req).map_err(reject)?;
    let key = PublicKey::decode_for(req.kind, &req.public_key).map_err(|e| reject(e.into()))?;
    let rec = IdentityRecord {
        id: req.kind.new_id(&mut OsRng),
        kind: req.kind,
        key_algorithm: Some(key.algorithm()),
        public_key: Some(key.canonical()),
        upstream: None,
        name: req.name,
        tenant: req.tenant,
        scopes: req.scopes,
        groups: req.groups,
        metadata: req.metadata.unwrap_or_default(),
        created_at: state.now(),
        disabled_at: None,
    };
    state.store.insert_identity(&rec).map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => reject(SidecarError::Conflict(
            "public key already registered".into(),
        )),
        other => reject(other.into()),
    })?;
    state.store.flush().await.map_err(|e| reject(e.into()))?;
    state.metrics.identities.inc();
    Ok(warp::reply::with_status(
        warp::reply::json(&IdentityView::from(&rec)),
        StatusCode::CREATED,
    )
    .into_response())
}

async fn get_one(
    state: State,
    id: String,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    let caller = state.authenticate(bearer.as_deref()).map_err(reject)?;
    let own = matches!(&caller, Caller::Identity { identity, .. } if identity.id == id);
    if !own && !caller.is_admin() {
        return Err(reject(SidecarError::Forbidden("admin authority required")));
    }
    let rec = state
        .store
        .identity(&id)
        .map_err(|e| reject(e.into()))?
        .ok_or_else(|| reject(SidecarError::NotFound("identity")))?;
    Ok(warp::reply::json(&IdentityView::from(&rec)).into_response())
}

async fn list(
    state: State,
    q: ListQuery,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    state.require_admin(bearer.as_deref()).map_err(reject)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let recs = state
        .store
        .list_identities(q.after.as_deref(), limit + 1)
        .map_err(|e| reject(e.into()))?;
    let more = recs.len() > limit;
    let page: Vec<IdentityView> = recs.iter().take(limit).map(IdentityView::from).collect();
    let next = more
        .then(|| page.last().map(|v| v.identity_id.clone()))
        .flatten();
    Ok(warp::reply::json(&IdentityPage {
        identities: page,
        next,
    })
    .into_response())
}

async fn disable(
    state: State,
    id: String,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    state.require_admin(bearer.as_deref()).map_err(reject)?;
    let mut rec = state
        .store
        .identity(&id)
        .map_err(|e| reject(e.into()))?
        .ok_or_else(|| reject(SidecarError::NotFound("identity")))?;
    if rec.disabled_at.is_none() {
        rec.disabled_at = Some(state.now());
        state
            .store
            .update_identity(&rec)
            .map_err(|e| reject(e.into()))?;
        // Every token of the identity stops working everywhere (revocation feed).
        state.revoke_subject(&rec.id).await.map_err(reject)?;
    }
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// Change an identity; a change that narrows its grants cuts its live MQTT and NATS connections
/// (the identity change goes out on the revocation feed).
async fn update(
    state: State,
    id: String,
    bearer: Option<String>,
    req: UpdateIdentity,
) -> Result<warp::reply::Response, Rejection> {
    state.require_admin(bearer.as_deref()).map_err(reject)?;
    let mut rec = state
        .store
        .identity(&id)
        .map_err(|e| reject(e.into()))?
        .filter(|r| r.disabled_at.is_none())
        .ok_or_else(|| reject(SidecarError::NotFound("identity")))?;
    let UpdateIdentity {
        name,
        tenant,
        scopes,
        groups,
        metadata,
    } = req;
    rec.name = name.or(rec.name);
    rec.tenant = tenant.or(rec.tenant);
    rec.scopes = scopes.unwrap_or(rec.scopes);
    rec.groups = groups.unwrap_or(rec.groups);
    rec.metadata = metadata.unwrap_or(rec.metadata);
    validate_fields(
        rec.name.as_deref(),
        rec.tenant.as_deref(),
        &rec.scopes,
        &rec.groups,
        Some(&rec.metadata),
    )
    .map_err(reject)?;
    state
        .store
        .update_identity(&rec)
        .map_err(|e| reject(e.into()))?;
    state.identity_changed(&rec).await.map_err(reject)?;
    Ok(warp::reply::json(&IdentityView::from(&rec)).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub identity: IdentityView,
    pub token_expires_at: String,
    pub session: Option<String>,
    /// The app (the identity's tenant), if any.
    pub app_id: Option<String>,
    /// Roles in that app, as of now (the token carries them as of its issue).
    pub roles: Vec<String>,
}

async fn me(state: State, bearer: Option<String>) -> Result<warp::reply::Response, Rejection> {
    match state.authenticate(bearer.as_deref()).map_err(reject)? {
        Caller::Identity { claims, identity } => {
            let roles = state.roles_of(&identity).map_err(reject)?;
            Ok(warp::reply::json(&Me {
                identity: IdentityView::from(identity.as_ref()),
                token_expires_at: rfc3339(claims.exp),
                session: claims.sid.clone(),
                app_id: identity.tenant.clone(),
                roles,
            })
            .into_response())
        }
        Caller::ApiKey(_) => Err(reject(SidecarError::Forbidden(
            "an API key has no identity; use an access token",
        ))),
    }
}

pub fn routes(state: State) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let register = warp::path!("identity" / "register")
        .and(warp::post())
        .and(limited(state.clone(), "POST /identity/register"))
        .and(with_state(state.clone()))
        .and(bearer())
        .and(json_body::<RegisterRequest>())
        .and_then(register);
    let get_one = warp::path!("identity" / String)
        .and(warp::get())
        .and(limited(state.clone(), "GET /identity/{id}"))
        .and(with_state(state.clone()))
        .and(bearer())
        .and_then(|id, s, b| get_one(s, id, b));
    let list = warp::path!("identity")
        .and(warp::get())
        .and(limited(state.clone(), "GET /identity"))
        .and(with_state(state.clone()))
        .and(warp::query::<ListQuery>())
        .and(bearer())
        .and_then(list);
    let update = warp::path!("identity" / String)
        .and(warp::patch())
        .and(limited(state.clone(), "PATCH /identity/{id}"))
        .and(with_state(state.clone()))
        .and(bearer())
        .and(json_body::<UpdateIdentity>())
        .and_then(|id, s, b, r| update(s, id, b, r));
    let disable = warp::path!("identity" / String)
        .and(warp::delete())
        .and(limited(state.clone(), "DELETE /identity/{id}"))
        .and(with_state(state.clone()))
        .and(bearer())
        .and_then(|id, s, b| disable(s, id, b));
    let me = warp::path!("auth" / "me")
        .and(warp::get())
        .and(limited(state.clone(), "GET /auth/me"))
        .and(with_state(state))
        .and(bearer())
        .and_then(me);
    register
        .or(get_one)
        .unify()
        .or(list)
        .unify()
        .or(disable)
        .unify()
        .or(update)
        .unify()
        .or(me)
        .unify()
        .boxed()
}
