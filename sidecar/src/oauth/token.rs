//! `POST /oauth/token`, `GET|POST /oauth/userinfo` and `GET /.well-known/openid-configuration`.

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use warp::{Filter, Reply};

use super::clients::authenticate;
use super::{form_pairs, param};
use crate::api::extract::{bearer, with_state};
use crate::api::reject;
use crate::domain::oauth::{self, CodeExchange, Issued};
use crate::domain::oauth_clients::KNOWN_SCOPES;
use crate::error::SidecarError;
use crate::state::State;

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: String,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

fn token_reply(issued: Issued) -> warp::reply::Response {
    warp::reply::json(&TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        refresh_token: issued.refresh_token,
        scope: issued.scope,
        id_token: issued.id_token,
    })
    .into_response()
}

fn grant_error(description: &str) -> SidecarError {
    SidecarError::oauth("invalid_grant", description)
}

async fn token(
    state: &State,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<warp::reply::Response, SidecarError> {
    let f = form_pairs(body)?;
    let client = authenticate(state, authorization, &f)?;
    match param(&f, "grant_type") {
        Some("authorization_code") => {
            let code = param(&f, "code").ok_or_else(|| grant_error("code is required"))?;
            let exchange = CodeExchange {
                code,
                redirect_uri: param(&f, "redirect_uri"),
                code_verifier: param(&f, "code_verifier"),
            };
            oauth::exchange_code(state, &client, exchange)
                .await
                .map(token_reply)
        }
        Some("refresh_token") => {
            let token = param(&f, "refresh_token")
                .ok_or_else(|| grant_error("refresh_token is required"))?;
            oauth::refresh(state, &client, token).await.map(token_reply)
        }
        Some(_) => Err(SidecarError::oauth(
            "unsupported_grant_type",
            "grant_type must be authorization_code or refresh_token",
        )),
        None => Err(SidecarError::oauth(
            "invalid_request",
            "grant_type is required",
        )),
    }
}

fn userinfo(state: &State, bearer: Option<&str>) -> Result<warp::reply::Response, SidecarError> {
    Ok(warp::reply::json(&oauth::userinfo(state, bearer)?).into_response())
}

fn discovery(state: &State) -> warp::reply::Response {
    let base = state.config.base_url();
    let algs: Vec<&str> = state
        .auth
        .keys()
        .active()
        .map(|k| vec![k.alg().as_str()])
        .unwrap_or_default();
    warp::reply::json(&json!({
        "issuer": state.token_config.issuer,
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "userinfo_endpoint": format!("{base}/oauth/userinfo"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": KNOWN_SCOPES,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "claims_supported": ["sub", "name", "email", "email_verified", "login",
            "preferred_username", "groups", "roles", "app_id"],
    }))
    .into_response()
}

pub fn routes(state: State) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    // Not rate-limited per IP: an integration's server calls these for every one of its users
    // from one address, and client authentication (256-bit secrets) is the gate.
    let token = warp::path!("oauth" / "token")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(warp::header::optional::<String>("authorization"))
        .and(crate::api::extract::raw_body(
            crate::api::extract::BODY_LIMIT,
        ))
        .and_then(
            |state: State, auth: Option<String>, body: Bytes| async move {
                token(&state, auth.as_deref(), &body).await.map_err(reject)
            },
        );
    let userinfo = warp::path!("oauth" / "userinfo")
        .and(crate::api::extract::get().or(warp::post()).unify())
        .and(with_state(state.clone()))
        .and(bearer())
        .and_then(|state: State, b: Option<String>| async move {
            userinfo(&state, b.as_deref()).map_err(reject)
        });
    let discovery = warp::path!(".well-known" / "openid-configuration")
        .and(crate::api::extract::get())
        .and(with_state(state))
        .map(|state: State| discovery(&state));
    token.or(userinfo).unify().or(discovery).unify().boxed()
}
