//! The OAuth2 / OpenID server's rules: browser-flow steps parked and taken exactly once,
//! authorization codes (kept as digests, 60 s, first exchange wins, a replay revokes what the
//! first issued), token grants for integrations (addressed to `<aud>:oauth`), and what userinfo
//! and ID tokens say about a person.

use broker_auth::identity::{IdentityType, PublicKey};
use broker_auth::token::{Audience, TokenConfig, TokenUse, Verifier};
use serde::Serialize;
use serde_json::json;

use super::sessions::{self, ClientGrant, Exchanged};
use super::{apps, identities, revocations, tokens};
use crate::error::SidecarError;
use crate::oauth::{CODE_TTL, PENDING_TTL, random_token, s256};
use crate::state::{AppState, sha256_hex};
use crate::store::{
    AuthCodeRecord, AuthorizeRequest, FamilyRecord, IdentityRecord, OAuthClientRecord, OAuthStore,
    PendingRecord, PendingStep, UpstreamPending,
};

/// The audience of access tokens issued to integrations.
pub fn oauth_audience(state: &AppState) -> String {
    format!("{}:oauth", state.token_config.audience)
}

/// Identity types that may sign in to an integration with their key: people (`root`, `admin`,
/// `user`, `developer`). Devices, gateways and services have no business at its login page.
pub fn may_sign_in(kind: IdentityType) -> bool {
    matches!(
        kind,
        IdentityType::Root | IdentityType::Admin | IdentityType::User | IdentityType::Developer
    )
}

/// What a person signs on the authorization page: the request's challenge in a domain of its
/// own, `oauth:<client_id>:<challenge>`. A key login (`/auth/challenge`) signs its bare
/// challenge, so neither signature can stand in for the other, nor one client's page for
/// another's.
pub fn signed_message(req: &AuthorizeRequest) -> String {
    format!("oauth:{}:{}", req.client_id, req.challenge)
}

/// A client registered for an app signs in that app's people only; a client without an app,
/// anyone who may sign in.
pub fn may_use_client(identity: &IdentityRecord, client_app: Option<&str>) -> bool {
    client_app.is_none_or(|app| identity.tenant.as_deref() == Some(app))
}

/// The app `id` an upstream login names, or not found.
pub fn check_app(state: &AppState, id: &str) -> Result<(), SidecarError> {
    apps::existing_app(state.store.as_ref(), id).map(drop)
}

/// The client `id`, if registered.
pub fn client(state: &AppState, id: &str) -> Result<Option<OAuthClientRecord>, SidecarError> {
    Ok(state.store.oauth_client(id)?)
}

/// The app a client's upstream-login users belong to.
pub fn app_of_client(state: &AppState, client_id: &str) -> Result<Option<String>, SidecarError> {
    Ok(client(state, client_id)?.and_then(|c| c.app_id))
}

fn park(state: &AppState, id: &str, step: PendingStep) -> Result<(), SidecarError> {
    let rec = PendingRecord {
        expires_at: state.now() + PENDING_TTL,
        step,
    };
    Ok(state.store.put_pending(id, &rec)?)
}

/// Park an authorize request until the person signs in; returns its id.
pub fn park_request(state: &AppState, req: AuthorizeRequest) -> Result<String, SidecarError> {
    let id = random_token();
    park(state, &id, PendingStep::Authorize(req))?;
    Ok(id)
}

/// Take a pending authorize request (exactly once) that has not expired.
pub fn take_request(state: &AppState, id: &str) -> Result<AuthorizeRequest, SidecarError> {
    match state.store.take_pending(id)? {
        Some(PendingRecord {
            expires_at,
            step: PendingStep::Authorize(req),
        }) if expires_at >= state.now() => Ok(req),
        _ => Err(SidecarError::oauth(
            "invalid_request",
            "unknown, used or expired request",
        )),
    }
}

/// Park an upstream login in flight under its `state`.
pub fn park_upstream(state: &AppState, csrf: &str, p: UpstreamPending) -> Result<(), SidecarError> {
    park(state, csrf, PendingStep::Upstream(p))
}

/// Take the upstream login of `csrf` (exactly once) if it is live and for `provider`.
pub fn take_upstream(
    state: &AppState,
    csrf: &str,
    provider: &str,
) -> Result<Option<UpstreamPending>, SidecarError> {
    Ok(match state.store.take_pending(csrf)? {
        Some(PendingRecord {
            expires_at,
            step: PendingStep::Upstream(p),
        }) if expires_at >= state.now() && p.provider == provider => Some(p),
        _ => None,
    })
}

/// The active person who signed `challenge` with `public_key`, if one may sign in here.
pub fn person_by_key(
    state: &AppState,
    key: &PublicKey,
) -> Result<Option<IdentityRecord>, SidecarError> {
    Ok(identities::by_key(state.store.as_ref(), &key.canonical())?
        .active()
        .filter(|i| may_sign_in(i.kind)))
}

/// End a pending authorize request with a code for `identity_id`: store the code's digest;
/// returns the code.
pub async fn grant_code(
    state: &AppState,
    req: &AuthorizeRequest,
    identity_id: &str,
) -> Result<String, SidecarError> {
    let code = random_token();
    let rec = AuthCodeRecord {
        client_id: req.client_id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        code_challenge: req.code_challenge.clone(),
        identity_id: identity_id.to_owned(),
        scopes: req.scopes.clone(),
        nonce: req.nonce.clone(),
        expires_at: state.now() + CODE_TTL,
        used_at: None,
        family: None,
    };
    let store: &dyn OAuthStore = state.store.as_ref();
    store.put_code(&sha256_hex(&code), &rec)?;
    store.flush().await?;
    state.metrics.outcome("oauth_authorize", "code_issued");
    Ok(code)
}

/// What userinfo and ID tokens say about a person. `login` is the identity id, because it is
/// unique: Grafana links accounts by login and e-mail, and a display name is neither unique
/// nor owned. An e-mail is given only when someone vouched for it: the upstream provider
/// (`email_verified`) or an admin (`metadata.email` at registration).
pub fn profile(state: &AppState, identity: &IdentityRecord) -> serde_json::Value {
    let email = match &identity.upstream {
        Some(u) if u.email_verified => u.email.clone(),
        Some(_) => None,
        None => identity
            .metadata
            .get("email")
            .and_then(|e| e.as_str())
            .map(str::to_owned),
    };
    let roles = apps::roles_of(state.store.as_ref(), identity).unwrap_or_else(|e| {
        tracing::warn!(error = %e, identity = %identity.id, "roles unavailable; profile without roles");
        vec![]
    });
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

/// What a token grant issued.
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub scope: String,
    pub id_token: Option<String>,
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

fn issue(
    state: &AppState,
    client: &OAuthClientRecord,
    identity: &IdentityRecord,
    (family, refresh_token): (&FamilyRecord, String),
    nonce: Option<&str>,
) -> Result<Issued, SidecarError> {
    let ttl = state.config.app_token_ttl;
    let mut claims = tokens::claims_for(state, identity, ttl, TokenUse::Access, &family.id);
    claims.aud = Audience::One(oauth_audience(state));
    claims.scopes = family.scopes.clone();
    let access_token = tokens::sign(state, &claims)?;
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
        let signed = state.auth.keys().sign_payload(&c);
        Some(signed.map_err(|e| SidecarError::internal_from("signing an ID token", e))?)
    } else {
        None
    };
    Ok(Issued {
        access_token,
        expires_in: ttl,
        refresh_token,
        scope: family.scopes.join(" "),
        id_token,
    })
}

fn grant_error(description: &str) -> SidecarError {
    SidecarError::oauth("invalid_grant", description)
}

/// A session ended because its code or refresh token was replayed: its refresh tokens and its
/// access tokens (by `sid`) stop at once.
async fn revoke(state: &AppState, user_id: &str, family_id: &str) -> Result<(), SidecarError> {
    let until = match sessions::end(state.store.as_ref(), user_id, family_id, state.now())? {
        Some(f) => f.expires_at,
        None => state.now() + state.config.session_lifetime,
    };
    revocations::revoke_session(state, family_id, until).await
}

/// The `authorization_code` grant's parameters.
pub struct CodeExchange<'a> {
    pub code: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
}

/// Exchange an authorization code (PKCE S256) for a session of `client`.
pub async fn exchange_code(
    state: &AppState,
    client: &OAuthClientRecord,
    x: CodeExchange<'_>,
) -> Result<Issued, SidecarError> {
    let digest = sha256_hex(x.code);
    let store: &dyn OAuthStore = state.store.as_ref();
    let rec = store
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
    check_code(&rec, now, &x)?;
    let identity = identities::active(state.store.as_ref(), &rec.identity_id)?
        .ok_or_else(|| grant_error("the user is disabled"))?;
    // The session exists before the code is marked used, so whoever loses a race for the code
    // always finds the winner's session to revoke.
    let grant = ClientGrant {
        client_id: &client.id,
        scopes: &rec.scopes,
    };
    let (family, refresh) = sessions::open_family(
        state.store.as_ref(),
        sessions::new_family_id(),
        &identity.id,
        Some(grant),
        now,
        state.config.session_lifetime,
    )?;
    let mut used = rec.clone();
    used.used_at = Some(now);
    used.family = Some(family.id.clone());
    if !store.use_code(&digest, &rec, &used)? {
        // Another exchange of the same code won the race: this is a replay too. Our own
        // session never issued anything; the winner's is revoked.
        sessions::end(state.store.as_ref(), &identity.id, &family.id, now)?;
        if let Some(fam) = store.code(&digest)?.and_then(|r| r.family) {
            revoke(state, &rec.identity_id, &fam).await?;
        }
        return Err(grant_error(
            "authorization code already used; what it issued is revoked",
        ));
    }
    let issued = issue(
        state,
        client,
        &identity,
        (&family, refresh),
        rec.nonce.as_deref(),
    )?;
    store.flush().await?;
    state.metrics.outcome("oauth_token", "code_exchanged");
    Ok(issued)
}

/// A live, unused code's own checks: expiry, the redirect URI, the PKCE verifier.
fn check_code(rec: &AuthCodeRecord, now: i64, x: &CodeExchange<'_>) -> Result<(), SidecarError> {
    if rec.expires_at < now {
        return Err(grant_error("authorization code expired"));
    }
    if x.redirect_uri != Some(rec.redirect_uri.as_str()) {
        return Err(grant_error(
            "redirect_uri does not match the authorization request",
        ));
    }
    let verifier = x
        .code_verifier
        .filter(|v| crate::oauth::verifier_ok(v))
        .ok_or_else(|| {
            SidecarError::oauth(
                "invalid_request",
                "code_verifier of 43-128 characters is required",
            )
        })?;
    if !crate::oauth::ct_eq(&s256(verifier), &rec.code_challenge) {
        return Err(grant_error(
            "code_verifier does not match the code_challenge",
        ));
    }
    Ok(())
}

/// The `refresh_token` grant: rotate a session of `client`; reuse revokes it.
pub async fn refresh(
    state: &AppState,
    client: &OAuthClientRecord,
    token: &str,
) -> Result<Issued, SidecarError> {
    match sessions::exchange(state.store.as_ref(), token, Some(&client.id), state.now()) {
        Ok(Exchanged::Rotated { family, token }) => {
            let identity = identities::active(state.store.as_ref(), &family.user_id)?
                .ok_or_else(|| grant_error("the user is disabled"))?;
            let issued = issue(state, client, &identity, (&family, token), None)?;
            let store: &dyn OAuthStore = state.store.as_ref();
            store.flush().await?;
            state.metrics.outcome("oauth_token", "refreshed");
            Ok(issued)
        }
        Ok(Exchanged::Reused { family }) => {
            tracing::warn!(session = %family.id, client = %client.id, "refresh token reuse; session revoked");
            state.metrics.outcome("oauth_token", "refresh_reused");
            revocations::revoke_session(state, &family.id, family.expires_at).await?;
            Err(grant_error(
                "refresh token already used; the session is revoked",
            ))
        }
        Err(_) => Err(grant_error(
            "refresh token is invalid, expired or not this client's",
        )),
    }
}

/// `/oauth/userinfo`: the profile of the active person an integration's token speaks for.
pub fn userinfo(state: &AppState, bearer: Option<&str>) -> Result<serde_json::Value, SidecarError> {
    let token = bearer.ok_or(SidecarError::Unauthorized)?;
    let verifier = Verifier::new(TokenConfig {
        audience: oauth_audience(state),
        ..state.token_config.clone()
    });
    let claims = tokens::verify_with(state, &verifier, token, TokenUse::Access)
        .map_err(SidecarError::InvalidToken)?;
    let identity = identities::of_token(state.store.as_ref(), &claims)?;
    let mut v = profile(state, &identity);
    v["sub"] = json!(identity.id);
    Ok(v)
}
