//! `GET /oauth/authorize` and `POST /oauth/authorize/complete`.
//!
//! Errors follow RFC 6749 §4.1.2.1: an unknown client or a redirect URI that is not registered
//! exactly is answered here (never redirected: that would make us an open redirector); every
//! other error goes back to the client's redirect URI with `error` and `state`.
//!
//! Who may sign in with a key: people (see [`crate::domain::oauth::may_sign_in`]), and for a
//! client registered with an app only that app's people ([`crate::domain::oauth::may_use_client`]).
//! What they sign is [`crate::domain::oauth::signed_message`]: the challenge in a domain of its own.

use broker_auth::identity::PublicKey;
use bytes::Bytes;
use warp::Filter;

use super::page::AuthorizePage;
use super::{challenge_ok, ct_eq, form_pairs, param, redirect, send_code, with_query};
use crate::api::extract::{limited, with_state};
use crate::api::reject;
use crate::domain::oauth;
use crate::error::SidecarError;
use crate::state::{State, random_challenge};
use crate::store::AuthorizeRequest;

/// Send an error back to the client (RFC 6749 §4.1.2.1).
fn back_to_client(
    redirect_uri: &str,
    client_state: Option<&str>,
    error: &str,
    description: &str,
) -> Result<warp::reply::Response, SidecarError> {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(s) = client_state {
        params.push(("state", s));
    }
    redirect(&with_query(redirect_uri, &params))
}

fn begin(state: &State, raw_query: &str) -> Result<warp::reply::Response, SidecarError> {
    let q = form_pairs(raw_query.as_bytes())?;
    let client_id = param(&q, "client_id")
        .ok_or_else(|| SidecarError::oauth("invalid_request", "client_id is required"))?;
    let client = oauth::client(state, client_id)?
        .ok_or_else(|| SidecarError::oauth("invalid_request", "unknown client_id"))?;
    let redirect_uri = param(&q, "redirect_uri")
        .ok_or_else(|| SidecarError::oauth("invalid_request", "redirect_uri is required"))?;
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(SidecarError::oauth(
            "invalid_request",
            "redirect_uri is not registered for this client (exact match required)",
        ));
    }
    // From here on the client is known and the URI is its own: errors go back to it.
    let client_state = param(&q, "state");
    let back = |e: &str, d: &str| back_to_client(redirect_uri, client_state, e, d);
    if param(&q, "response_type") != Some("code") {
        return back("unsupported_response_type", "only response_type=code");
    }
    let Some(client_state) = client_state.filter(|s| s.len() <= 1024) else {
        return back(
            "invalid_request",
            "state is required (at most 1024 characters)",
        );
    };
    if param(&q, "code_challenge_method") != Some("S256") {
        return back(
            "invalid_request",
            "PKCE is required with code_challenge_method=S256",
        );
    }
    let Some(code_challenge) = param(&q, "code_challenge").filter(|c| challenge_ok(c)) else {
        return back("invalid_request", "code_challenge must be a S256 challenge");
    };
    let scopes: Vec<String> = match param(&q, "scope") {
        None => client.scopes.clone(),
        Some(s) => s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    if scopes.iter().any(|s| !client.scopes.contains(s)) {
        return back(
            "invalid_scope",
            "a requested scope is not allowed for this client",
        );
    }
    let nonce = param(&q, "nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > 512) {
        return back("invalid_request", "nonce is too long");
    }
    let request = AuthorizeRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        state: client_state.to_owned(),
        code_challenge: code_challenge.to_owned(),
        scopes,
        nonce,
        challenge: random_challenge(),
    };
    let request_id = oauth::park_request(state, request.clone())?;
    state.metrics.outcome("oauth_authorize", "page");
    Ok(sign_in_page(state, &client.name, &request, &request_id))
}

/// The page of a parked request: sign its challenge with a key, or follow an upstream login.
fn sign_in_page(
    state: &State,
    client_name: &str,
    request: &AuthorizeRequest,
    request_id: &str,
) -> warp::reply::Response {
    let upstream = state
        .upstream
        .names()
        .map(|name| {
            let link = format!(
                "{name}?{}",
                serde_urlencoded::to_string([("authorize", request_id)]).unwrap_or_default()
            );
            (name.to_owned(), link)
        })
        .collect();
    AuthorizePage {
        client_name,
        scopes: &request.scopes,
        request_id,
        challenge: &oauth::signed_message(request),
        upstream,
    }
    .render()
}

async fn complete(state: &State, body: &[u8]) -> Result<warp::reply::Response, SidecarError> {
    let f = form_pairs(body)?;
    let request_id = param(&f, "request_id")
        .ok_or_else(|| SidecarError::oauth("invalid_request", "request_id is required"))?;
    let req = oauth::take_request(state, request_id)?;
    let denied = |why: &str| {
        state.metrics.outcome("oauth_authorize", "denied");
        back_to_client(&req.redirect_uri, Some(&req.state), "access_denied", why)
    };
    let message = oauth::signed_message(&req);
    if !param(&f, "challenge").is_some_and(|c| ct_eq(c, &message)) {
        return denied("the signed challenge is not this request's");
    }
    let (Some(public_key), Some(signature)) = (param(&f, "public_key"), param(&f, "signature"))
    else {
        return denied("public_key and signature are required");
    };
    let Ok(key) = PublicKey::decode(public_key.trim()) else {
        return denied("public_key is not a valid key");
    };
    if key
        .verify_b64(message.as_bytes(), signature.trim())
        .is_err()
    {
        return denied("signature verification failed");
    }
    let Some(identity) = oauth::person_by_key(state, &key)? else {
        return denied("no person is registered with this key");
    };
    let client_app = oauth::app_of_client(state, &req.client_id)?;
    if !oauth::may_use_client(&identity, client_app.as_deref()) {
        return denied("this integration signs in the people of its own app only");
    }
    send_code(state, &req, &identity.id).await
}

pub fn routes(state: State) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let start = warp::path!("oauth" / "authorize")
        .and(crate::api::extract::get())
        .and(limited(state.clone(), "GET /oauth/authorize"))
        .and(with_state(state.clone()))
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and_then(|state: State, raw: String| async move { begin(&state, &raw).map_err(reject) });
    let complete = warp::path!("oauth" / "authorize" / "complete")
        .and(warp::post())
        .and(limited(state.clone(), "POST /oauth/authorize/complete"))
        .and(with_state(state))
        .and(crate::api::extract::raw_body(
            crate::api::extract::BODY_LIMIT,
        ))
        .and_then(|state: State, body: Bytes| async move {
            complete(&state, &body).await.map_err(reject)
        });
    start.or(complete).unify().boxed()
}
