//! `POST /oauth/token`, `GET|POST /oauth/userinfo` and `GET /.well-known/openid-configuration`.

use broker_auth::token::{Audience, TokenConfig, TokenUse, Verifier};
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use warp::{Filter, Reply};

use super::clients::{KNOWN_SCOPES, authenticate};
use super::{ct_eq, form_pairs, oauth_audience, param, s256, verifier_ok};
use crate::api::extract::{bearer, with_state};
use crate::api::reject;
use crate::error::SidecarError;
use crate::sessions::{self, ClientGrant, Exchanged};
use crate::state::{State, sha256_hex};
use crate::store::{IdentityRecord, OAuthClientRecord};

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

/// An OpenID ID token: addressed to the client, so no broker or API accepts it as access.
#[derive(Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(flatten)]
    profile: serde_json::Value,
}

fn grant_error(description: &str) -> SidecarError {
    SidecarError::oauth("invalid_grant", description)
}

/// What userinfo and ID tokens say about a person. `login` is the identity id, because it is
/// unique: Grafana links accounts by login and e-mail, and a display name is neither unique
/// nor owned. An e-mail is given only when someone vouched for it: the upstream provider
/// (`email_verified`) or an admin (`metadata.email` at registration).
pub fn profile(state: &State, identity: &IdentityRecord) -> serde_json::Value {
    let email = match &identity.upstream {
        Some(u) if u.email_verified => u.email.clone(),
        Some(_) => None,
        None => identity
            .metadata
            .get("email")
            .and_then(|e| e.as_str())
            .map(str::to_owned),
    };
    let roles = state.roles_of(identity).unwrap_or_default();
    let mut v = json!({
        "name": identity.name.clone().unwrap_or_else(|| identity.id.clone()),
        "login": identity.id,
        "preferred_username": identity.id,
        "groups": identity.groups,
        "roles": roles,
        "app_id": identity.tenant,
    });
    if let Some(e) = email {
        v["email"] = json!(e);
        v["email_verified"] = json!(true);
    }
    v
}

fn issue(
    state: &State,
    client: &OAuthClientRecord,
    identity: &IdentityRecord,
    family: &crate::store::FamilyRecord,
    refresh_token: String,
    nonce: Option<&str>,
) -> Result<warp::reply::Response, SidecarError> {
    let ttl = state.config.app_token_ttl;
    let mut claims = state.claims_for(identity, ttl, TokenUse::Access, &family.id);
    claims.aud = Audience::One(oauth_audience(state));
    claims.scopes = family.scopes.clone();
    let access_token = state.sign(&claims)?;
    let id_token = if family.scopes.iter().any(|s| s == "openid") {
        let c = IdTokenClaims {
            iss: &state.token_config.issuer,
            sub: &identity.id,
            aud: &client.id,
            iat: claims.iat,
            exp: claims.exp,
            nonce,
            profile: profile(state, identity),
        };
        Some(
            state
                .auth
                .keys()
                .sign_payload(&c)
                .map_err(|e| SidecarError::Internal(e.to_string()))?,
        )
    } else {
        None
    };
    Ok(warp::reply::json(&TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        refresh_token,
        scope: family.scopes.join(" "),
        id_token,
    })
    .into_response())
}

/// A session ended because its code or refresh token was replayed: its refresh tokens and its
/// access tokens (by `sid`) stop at once.
async fn revoke(state: &State, user_id: &str, family_id: &str) -> Result<(), SidecarError> {
    let until = match sessions::end(state.store.as_ref(), user_id, family_id, state.now())? {
        Some(f) => f.expires_at,
        None => state.now() + state.config.session_lifetime,
    };
    state.revoke_session(family_id, until).await
}

async fn authorization_code(
    state: &State,
    client: &OAuthClientRecord,
    f: &[(String, String)],
) -> Result<warp::reply::Response, SidecarError> {
    let code = param(f, "code").ok_or_else(|| grant_error("code is required"))?;
    let digest = sha256_hex(code);
    let rec = state
        .store
        .code(&digest)?
        .filter(|r| r.client_id == client.id)
        .ok_or_else(|| grant_error("unknown authorization code"))?;
    let now = state.now();
    if rec.used_at.is_some() {
        tracing::warn!(client = %client.id, "authorization code replayed; its session is revoked");
        state.metrics.outcome("oauth_token", "code_replayed");
        if let Some(fam) = &rec.family {
            revoke(state, &rec.identity_id, fam).await?;
        }
        return Err(grant_error(
            "authorization code already used; what it issued is revoked",
        ));
    }
    if rec.expires_at < now {
        return Err(grant_error("authorization code expired"));
    }
    if param(f, "redirect_uri") != Some(rec.redirect_uri.as_str()) {
        return Err(grant_error(
            "redirect_uri does not match the authorization request",
        ));
    }
    let verifier = param(f, "code_verifier")
        .filter(|v| verifier_ok(v))
        .ok_or_else(|| {
            SidecarError::oauth(
                "invalid_request",
                "code_verifier of 43-128 characters is required",
            )
        })?;
    if !ct_eq(&s256(verifier), &rec.code_challenge) {
        return Err(grant_error(
            "code_verifier does not match the code_challenge",
        ));
    }
    let identity = state
        .store
        .identity(&rec.identity_id)?
        .filter(|i| i.disabled_at.is_none())
        .ok_or_else(|| grant_error("the user is disabled"))?;
    // The session exists before the code is marked used, so whoever loses a race for the code
    // always finds the winner's session to revoke.
    let (family, refresh) = sessions::open_family(
        state.store.as_ref(),
        sessions::new_family_id(),
        &identity.id,
        Some(ClientGrant {
            client_id: &client.id,
            scopes: &rec.scopes,
        }),
        now,
        state.config.session_lifetime,
    )?;
    let mut used = rec.clone();
    used.used_at = Some(now);
    used.family = Some(family.id.clone());
    if !state.store.use_code(&digest, &rec, &used)? {
        // Another exchange of the same code won the race: this is a replay too. Our own
        // session never issued anything; the winner's is revoked.
        sessions::end(state.store.as_ref(), &identity.id, &family.id, now)?;
        if let Some(fam) = state.store.code(&digest)?.and_then(|r| r.family) {
            revoke(state, &rec.identity_id, &fam).await?;
        }
        return Err(grant_error(
            "authorization code already used; what it issued is revoked",
        ));
    }
    let res = issue(
        state,
        client,
        &identity,
        &family,
        refresh,
        rec.nonce.as_deref(),
    )?;
    state.store.flush().await?;
    state.metrics.outcome("oauth_token", "code_exchanged");
    Ok(res)
}

async fn refresh(
    state: &State,
    client: &OAuthClientRecord,
    f: &[(String, String)],
) -> Result<warp::reply::Response, SidecarError> {
    let token =
        param(f, "refresh_token").ok_or_else(|| grant_error("refresh_token is required"))?;
    let now = state.now();
    match sessions::exchange(state.store.as_ref(), token, Some(&client.id), now) {
        Ok(Exchanged::Rotated { family, token }) => {
            let identity = state
                .store
                .identity(&family.user_id)?
                .filter(|i| i.disabled_at.is_none())
                .ok_or_else(|| grant_error("the user is disabled"))?;
            let res = issue(state, client, &identity, &family, token, None)?;
            state.store.flush().await?;
            state.metrics.outcome("oauth_token", "refreshed");
            Ok(res)
        }
        Ok(Exchanged::Reused { family }) => {
            tracing::warn!(session = %family.id, client = %client.id, "refresh token reuse; session revoked");
            state.metrics.outcome("oauth_token", "refresh_reused");
            state.revoke_session(&family.id, family.expires_at).await?;
            Err(grant_error(
                "refresh token already used; the session is revoked",
            ))
        }
        Err(_) => Err(grant_error(
            "refresh token is invalid, expired or not this client's",
        )),
    }
}

async fn token(
    state: &State,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<warp::reply::Response, SidecarError> {
    let f = form_pairs(body)?;
    let client = authenticate(state, authorization, &f)?;
    match param(&f, "grant_type") {
        Some("authorization_code") => authorization_code(state, &client, &f).await,
        Some("refresh_token") => refresh(state, &client, &f).await,
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
    let token = bearer.ok_or(SidecarError::Unauthorized)?;
    let verifier = Verifier::new(TokenConfig {
        audience: oauth_audience(state),
        ..state.token_config.clone()
    });
    let claims = verifier
        .verify(
            &state.auth.keys(),
            token,
            state.now(),
            state.auth.revocations(),
            TokenUse::Access,
        )
        .map_err(SidecarError::InvalidToken)?;
    let identity = state
        .store
        .identity(&claims.sub)?
        .filter(|i| i.disabled_at.is_none())
        .ok_or(SidecarError::InvalidToken(broker_auth::DenyCode::Revoked))?;
    let mut v = profile(state, &identity);
    v["sub"] = json!(identity.id);
    Ok(warp::reply::json(&v).into_response())
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
        .and(warp::body::content_length_limit(
            crate::api::extract::BODY_LIMIT,
        ))
        .and(warp::body::bytes())
        .and_then(
            |state: State, auth: Option<String>, body: Bytes| async move {
                token(&state, auth.as_deref(), &body).await.map_err(reject)
            },
        );
    let userinfo = warp::path!("oauth" / "userinfo")
        .and(warp::get().or(warp::post()).unify())
        .and(with_state(state.clone()))
        .and(bearer())
        .and_then(|state: State, b: Option<String>| async move {
            userinfo(&state, b.as_deref()).map_err(reject)
        });
    let discovery = warp::path!(".well-known" / "openid-configuration")
        .and(warp::get())
        .and(with_state(state))
        .map(|state: State| discovery(&state));
    token.or(userinfo).unify().or(discovery).unify().boxed()
}
