//! The OAuth2 client registry (admin) and client authentication at the token endpoint.
//!
//! A client secret is 256 random bits, shown once at registration and kept as a SHA-256 digest.
//! Redirect URIs are absolute http(s) URLs without a fragment and are later compared exactly.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{ct_eq, param, random_token};
use crate::api::extract::{bearer, json_body, limited, with_state};
use crate::api::reject;
use crate::clock::rfc3339;
use crate::error::SidecarError;
use crate::state::{State, random_id, sha256_hex};
use crate::store::OAuthClientRecord;

/// Scopes a client gets when it names none.
pub const DEFAULT_SCOPES: [&str; 3] = ["openid", "profile", "email"];
/// Scopes the server knows.
pub const KNOWN_SCOPES: [&str; 5] = ["openid", "profile", "email", "groups", "offline_access"];

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    pub name: String,
    /// Exact redirect URIs (1–10).
    pub redirect_uris: Vec<String>,
    /// Scopes it may ask for (default openid, profile, email).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The app its upstream-login users belong to.
    #[serde(default)]
    pub app_id: Option<String>,
}

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

fn redirect_uri_ok(u: &str) -> bool {
    let scheme_ok = u.starts_with("https://") || u.starts_with("http://");
    let host = u.split_once("://").map_or("", |(_, rest)| rest);
    scheme_ok
        && u.len() <= 2048
        && !host.is_empty()
        && !host.starts_with('/')
        && !u.contains('#')
        && !u.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn validate(state: &State, req: &NewClient) -> Result<Vec<String>, SidecarError> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(SidecarError::Validation(
            "name must be 1-128 characters".into(),
        ));
    }
    if req.redirect_uris.is_empty() || req.redirect_uris.len() > 10 {
        return Err(SidecarError::Validation("give 1-10 redirect_uris".into()));
    }
    if let Some(bad) = req.redirect_uris.iter().find(|u| !redirect_uri_ok(u)) {
        return Err(SidecarError::Validation(format!(
            "redirect_uri {bad:?} must be an absolute http(s) URL without a fragment"
        )));
    }
    let scopes = req
        .scopes
        .clone()
        .unwrap_or_else(|| DEFAULT_SCOPES.map(str::to_owned).to_vec());
    if let Some(bad) = scopes.iter().find(|s| !KNOWN_SCOPES.contains(&s.as_str())) {
        return Err(SidecarError::Validation(format!(
            "unknown scope {bad:?} (known: {KNOWN_SCOPES:?})"
        )));
    }
    if let Some(app) = &req.app_id
        && state.store.app(app)?.is_none()
    {
        return Err(SidecarError::NotFound("app"));
    }
    Ok(scopes)
}

async fn create(
    state: State,
    bearer: Option<String>,
    req: NewClient,
) -> Result<warp::reply::Response, Rejection> {
    state.require_admin(bearer.as_deref()).map_err(reject)?;
    let scopes = validate(&state, &req).map_err(reject)?;
    let secret = random_token();
    let rec = OAuthClientRecord {
        id: random_id("cli-"),
        name: req.name.trim().to_owned(),
        redirect_uris: req.redirect_uris,
        scopes,
        app_id: req.app_id,
        secret_hash: sha256_hex(&secret),
        created_at: state.now(),
    };
    state
        .store
        .put_oauth_client(&rec)
        .map_err(|e| reject(e.into()))?;
    state.store.flush().await.map_err(|e| reject(e.into()))?;
    let mut view = ClientView::from(&rec);
    view.client_secret = Some(secret);
    Ok(warp::reply::with_status(warp::reply::json(&view), StatusCode::CREATED).into_response())
}

async fn list(state: State, bearer: Option<String>) -> Result<warp::reply::Response, Rejection> {
    state.require_admin(bearer.as_deref()).map_err(reject)?;
    let clients = state.store.oauth_clients().map_err(|e| reject(e.into()))?;
    let views: Vec<ClientView> = clients.iter().map(ClientView::from).collect();
    Ok(warp::reply::json(&serde_json::json!({ "clients": views })).into_response())
}

async fn delete(
    id: String,
    state: State,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    state.require_admin(bearer.as_deref()).map_err(reject)?;
    if !state
        .store
        .delete_oauth_client(&id)
        .map_err(|e| reject(e.into()))?
    {
        return Err(reject(SidecarError::NotFound("client")));
    }
    state.store.flush().await.map_err(|e| reject(e.into()))?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// Decode one part of HTTP Basic credentials: RFC 6749 §2.3.1 form-encodes id and secret.
fn form_decode(s: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}")).ok()?;
    pairs.into_iter().next().map(|(_, v)| v)
}

/// Authenticate the client at the token endpoint: `client_secret_basic` (the `Authorization`
/// header) or `client_secret_post` (body), never both. Every failure is `invalid_client`.
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
    let client = state.store.oauth_client(&id)?.ok_or_else(invalid)?;
    if !ct_eq(&sha256_hex(&secret), &client.secret_hash) {
        state.metrics.outcome("oauth_token", "invalid_client");
        return Err(invalid());
    }
    Ok(client)
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
        .and(warp::get())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_must_be_absolute_without_fragment() {
        assert!(redirect_uri_ok(
            "https://grafana.example/login/generic_oauth"
        ));
        assert!(redirect_uri_ok("http://127.0.0.1:3000/cb?x=1"));
        for bad in [
            "/relative",
            "javascript:alert(1)",
            "https://g/cb#frag",
            "https:///nohost",
            "https://g/c b",
            "ftp://g/cb",
        ] {
            assert!(!redirect_uri_ok(bad), "{bad}");
        }
    }
}
