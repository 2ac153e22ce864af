//! What a token says and how it is signed: an identity's attributes (record and roles), claims
//! with the right lifetime, and the key that signs them. Key login and devices get the active
//! key; an app user (signed in through an upstream provider) gets the app token lifetime and the
//! app's HS256 key when the operator configured one.

use std::sync::Arc;

use broker_auth::revocation::IdentityAttrs;
use broker_auth::token::{Claims, TokenUse, Verifier};
use broker_auth::{CompiledGrants, DenyCode, Principal, Protocol};
use rand_core::OsRng;

use super::{apps, identities};
use crate::error::SidecarError;
use crate::state::AppState;
use crate::store::{IdentityRecord, TenancyStore};

fn attrs_with_roles(identity: &IdentityRecord, roles: Vec<String>) -> IdentityAttrs {
    IdentityAttrs {
        kind: Some(identity.kind),
        tenant: identity.tenant.clone(),
        roles,
        scopes: identity.scopes.clone(),
        groups: identity.groups.clone(),
        devices: identity.devices(),
    }
}

/// What an identity's tokens say about it: its record's type, tenant, scopes, groups and
/// devices, and the roles it holds in its app.
pub fn attrs_of(
    store: &dyn TenancyStore,
    identity: &IdentityRecord,
) -> Result<IdentityAttrs, SidecarError> {
    Ok(attrs_with_roles(identity, apps::roles_of(store, identity)?))
}

/// Claims for an identity, with what its record says about it ([`attrs_of`]).
pub fn claims_for(
    state: &AppState,
    identity: &IdentityRecord,
    ttl: i64,
    token_use: TokenUse,
    sid: &str,
) -> Claims {
    let mut c = Claims::new(
        &state.token_config,
        &identity.id,
        state.now(),
        ttl,
        token_use,
        &mut OsRng,
    );
    c.sid = Some(sid.to_owned());
    // A store failure here must not mint a token without its roles silently; roles only
    // ever add grants, so a token without them is the safe side, and the failure is logged.
    let roles = apps::roles_of(state.store.as_ref(), identity).unwrap_or_else(|e| {
        tracing::warn!(error = %e, identity = %identity.id, "roles unavailable; token issued without roles");
        vec![]
    });
    attrs_with_roles(identity, roles).apply(&mut c);
    c
}

/// Sign with the active key.
pub fn sign(state: &AppState, claims: &Claims) -> Result<String, SidecarError> {
    state
        .auth
        .keys()
        .sign(claims)
        .map_err(|e| SidecarError::internal_from("signing", e))
}

/// Sign an app access token: with the app's HS256 key when the operator configured one
/// (`--app-hs256-secret`), else with the active key.
pub fn sign_app_access(state: &AppState, claims: &Claims) -> Result<String, SidecarError> {
    let keys = state.auth.keys();
    let app_key = claims
        .tenant
        .as_deref()
        .and_then(|t| keys.get(&broker_auth::token::app_key_id(t)))
        .filter(|k| k.tenant().is_some());
    match app_key {
        Some(k) => keys.sign_with(k, claims),
        None => keys.sign(claims),
    }
    .map_err(|e| SidecarError::internal_from("signing", e))
}

/// A session's access token. People and services with keys get the key-login lifetime and
/// the active key; a person who signed in through an upstream provider is an app user: the
/// app token lifetime, and the app's HS256 key when one is configured.
pub fn session_access(
    state: &AppState,
    identity: &IdentityRecord,
    sid: &str,
) -> Result<(Claims, String), SidecarError> {
    let app_user = identity.upstream.is_some();
    let ttl = if app_user {
        state.config.app_token_ttl
    } else {
        state.config.login_token_ttl
    };
    let claims = claims_for(state, identity, ttl, TokenUse::Access, sid);
    let token = if app_user {
        sign_app_access(state, &claims)?
    } else {
        sign(state, &claims)?
    };
    Ok((claims, token))
}

/// Verify a token of the product (any enforcement point's rules) at the state's time.
pub fn verify(state: &AppState, token: &str, token_use: TokenUse) -> Result<Claims, DenyCode> {
    verify_with(state, state.auth.verifier(), token, token_use)
}

/// Verify with `verifier` (another audience's rules) against the live keys and revocations.
pub fn verify_with(
    state: &AppState,
    verifier: &Verifier,
    token: &str,
    token_use: TokenUse,
) -> Result<Claims, DenyCode> {
    verifier.verify(
        &state.auth.keys(),
        token,
        state.now(),
        state.auth.revocations(),
        token_use,
    )
}

/// The principal and grants of the active identity `id`, as a login would give it (the HTTP
/// broker backend's checks that carry only a username).
pub fn grants_of_identity(
    state: &AppState,
    id: &str,
    client_id: Option<&str>,
) -> Result<(String, Arc<CompiledGrants>), DenyCode> {
    let identity = identities::active(state.store.as_ref(), id)
        .ok()
        .flatten()
        .ok_or(DenyCode::UnknownKey)?;
    let claims = claims_for(state, &identity, 60, TokenUse::Access, "go-auth");
    let principal = Principal::from_claims(&claims, Protocol::Mqtt, client_id)?;
    let grants = state
        .auth
        .policy()
        .grants_cached(&principal)
        .map_err(|_| DenyCode::PolicyError)?;
    Ok((principal.id, grants))
}
