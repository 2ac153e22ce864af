//! The OAuth2 client registry's routes (admin) and reading client credentials at the token
//! endpoint. The registry's rules are in [`crate::domain::oauth_clients`].

use serde::Serialize;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::param;
use crate::api::extract::{bearer, json_body, limited, with_state};
use crate::api::reject;
use crate::clock::rfc3339;
use crate::domain::oauth_clients;
use crate::error::SidecarError;
use crate::state::State;
use crate::store::OAuthClientRecord;

/// The registration body is the domain's own input.
pub use crate::domain::oauth_clients::NewClient;

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub app_id: Option<String>,
    pub created_at: String,
    /// Only in the registration answer: shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl From<&OAuthClientRecord> for ClientView {
    fn from(r: &OAuthClientRecord) -> Self {
        ClientView {
            client_id: r.id.clone(),
            name: r.name.clone(),
            redirect_uris: r.redirect_uris.clone(),
            scopes: r.scopes.clone(),
            app_id: r.app_id.clone(),
            created_at: rfc3339(r.created_at),
            client_secret: None,
        }
    }
}

async fn create(
    state: State,
    bearer: Option<String>,
    req: NewClient,
) -> Result<warp::reply::Response, Rejection> {
    let (rec, secret) = oauth_clients::create(&state, bearer.as_deref(), req)
        .await
        .map_err(reject)?;
    let mut view = ClientView::from(&rec);
    view.client_secret = Some(secret);
    Ok(warp::reply::with_status(warp::reply::json(&view), StatusCode::CREATED).into_response())
}

async fn list(state: State, bearer: Option<String>) -> Result<warp::reply::Response, Rejection> {
    let clients = oauth_clients::list(&state, bearer.as_deref()).map_err(reject)?;
    let views: Vec<ClientView> = clients.iter().map(ClientView::from).collect();
    Ok(warp::reply::json(&serde_json::json!({ "clients": views })).into_response())
}

async fn delete(
    id: String,
    state: State,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    oauth_clients::delete(&state, bearer.as_deref(), &id)
        .await
        .map_err(reject)?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// Decode one part of HTTP Basic credentials: RFC 6749 §2.3.1 form-encodes id and secret.
fn form_decode(s: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}")).ok()?;
    pairs.into_iter().next().map(|(_, v)| v)
}

/// Read the client's credentials at the token endpoint — `client_secret_basic` (the
/// `Authorization` header) or `client_secret_post` (body), never both — and check them. Every
/// failure is `invalid_client`.
pub fn authenticate(
    state: &State,
    authorization: Option<&str>,
    form: &[(String, String)],
) -> Result<OAuthClientRecord, SidecarError> {
    let invalid = || SidecarError::oauth("invalid_client", "client authentication failed");
    let basic = authorization.and_then(|h| {
        let (scheme, rest) = h.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
    });
    let (id, secret) = match (basic, param(form, "client_secret")) {
        (Some(_), Some(_)) => {
            return Err(SidecarError::oauth(
                "invalid_request",
                "use one client authentication method, not two",
            ));
        }
        (Some(b), None) => {
            let raw = data_encoding::BASE64
                .decode(b.as_bytes())
                .map_err(|_| invalid())?;
            let raw = String::from_utf8(raw).map_err(|_| invalid())?;
            let (id, secret) = raw.split_once(':').ok_or_else(invalid)?;
            (
                form_decode(id).ok_or_else(invalid)?,
                form_decode(secret).ok_or_else(invalid)?,
            )
        }
        (None, Some(secret)) => (
            param(form, "client_id").ok_or_else(invalid)?.to_owned(),
            secret.to_owned(),
        ),
        (None, None) => return Err(invalid()),
    };
    if let Some(body_id) = param(form, "client_id")
        && body_id != id
    {
        return Err(invalid());
    }
    oauth_clients::authenticate(state, &id, &secret)
}

pub fn routes(state: State) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let create = warp::path!("oauth" / "clients")
        .and(warp::post())
        .and(limited(state.clone(), "POST /oauth/clients"))
        .and(with_state(state.clone()))
        .and(bearer())
        .and(json_body::<NewClient>())
        .and_then(create);
    let list = warp::path!("oauth" / "clients")
        .and(crate::api::extract::get())
        .and(limited(state.clone(), "GET /oauth/clients"))
        .and(with_state(state.clone()))
        .and(bearer())
        .and_then(list);
    let delete = warp::path!("oauth" / "clients" / String)
        .and(warp::delete())
        .and(limited(state.clone(), "DELETE /oauth/clients/{id}"))
        .and(with_state(state))
        .and(bearer())
        .and_then(delete);
    create.or(list).unify().or(delete).unify().boxed()
}
