//! Identities (Novacore): register, read, list, disable; and `/auth/me`. The rules are in
//! [`crate::domain::identities`].

use broker_auth::identity::IdentityType;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::extract::{bearer, json_body, limited, with_state};
use super::reject;
use crate::clock::rfc3339;
use crate::domain::identities::{self, Change, Fields};
use crate::state::State;
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
            disabled: r.is_disabled(),
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

impl RegisterRequest {
    fn into_parts(self) -> (IdentityType, String, Fields) {
        let fields = Fields {
            name: self.name,
            tenant: self.tenant,
            scopes: self.scopes,
            groups: self.groups,
            metadata: self.metadata,
        };
        (self.kind, self.public_key, fields)
    }
}

impl From<UpdateIdentity> for Change {
    fn from(r: UpdateIdentity) -> Self {
        Change {
            name: r.name,
            tenant: r.tenant,
            scopes: r.scopes,
            groups: r.groups,
            metadata: r.metadata,
        }
    }
}

fn view(rec: &IdentityRecord) -> warp::reply::Response {
    warp::reply::json(&IdentityView::from(rec)).into_response()
}

async fn register(
    state: State,
    bearer: Option<String>,
    req: RegisterRequest,
) -> Result<warp::reply::Response, Rejection> {
    let (kind, key, fields) = req.into_parts();
    let rec = identities::register(&state, bearer.as_deref(), kind, &key, fields)
        .await
        .map_err(reject)?;
    Ok(warp::reply::with_status(view(&rec), StatusCode::CREATED).into_response())
}

async fn get_one(
    state: State,
    id: String,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    let rec = identities::get(&state, bearer.as_deref(), &id).map_err(reject)?;
    Ok(view(&rec))
}

async fn list(
    state: State,
    q: ListQuery,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    let (recs, next) =
        identities::list(&state, bearer.as_deref(), q.after.as_deref(), q.limit).map_err(reject)?;
    Ok(warp::reply::json(&IdentityPage {
        identities: recs.iter().map(IdentityView::from).collect(),
        next,
    })
    .into_response())
}

async fn disable(
    state: State,
    id: String,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    identities::disable(&state, bearer.as_deref(), &id)
        .await
        .map_err(reject)?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

async fn update(
    state: State,
    id: String,
    bearer: Option<String>,
    req: UpdateIdentity,
) -> Result<warp::reply::Response, Rejection> {
    let rec = identities::update(&state, bearer.as_deref(), &id, req.into())
        .await
        .map_err(reject)?;
    Ok(view(&rec))
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
    let me = identities::me(&state, bearer.as_deref()).map_err(reject)?;
    Ok(warp::reply::json(&Me {
        identity: IdentityView::from(me.identity.as_ref()),
        token_expires_at: rfc3339(me.claims.exp),
        session: me.claims.sid.clone(),
        app_id: me.identity.tenant.clone(),
        roles: me.roles,
    })
    .into_response())
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
        .and(crate::api::extract::get())
        .and(limited(state.clone(), "GET /identity/{id}"))
        .and(with_state(state.clone()))
        .and(bearer())
        .and_then(|id, s, b| get_one(s, id, b));
    let list = warp::path!("identity")
        .and(crate::api::extract::get())
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
        .and(crate::api::extract::get())
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
