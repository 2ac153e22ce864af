//! Who is calling, and what they may do: a bearer credential is an `ak_` API key or the access
//! token of an identity that is still active; the authority rules every route group asks live
//! on [`Caller`].

use broker_auth::DenyCode;
use broker_auth::identity::IdentityType;
use broker_auth::token::{Claims, TokenUse};

use super::identities;
use crate::error::SidecarError;
use crate::state::AppState;
use crate::store::{ApiKeyRecord, IdentityRecord};

/// Who is calling, once a bearer credential checked out.
#[derive(Debug)]
pub enum Caller {
    ApiKey(ApiKeyRecord),
    Identity {
        claims: Box<Claims>,
        identity: Box<IdentityRecord>,
    },
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        match self {
            Caller::ApiKey(k) => k.scopes.iter().any(|s| s == "admin"),
            Caller::Identity { identity, .. } => {
                matches!(identity.kind, IdentityType::Root | IdentityType::Admin)
            }
        }
    }

    /// Admins register anything; an API key with `identity:register` registers the types it lists.
    pub fn may_register(&self, kind: IdentityType) -> bool {
        self.is_admin()
            || matches!(self, Caller::ApiKey(k)
                if k.scopes.iter().any(|s| s == "identity:register") && k.identity_types.contains(&kind))
    }

    /// Admins read every identity; an identity reads itself.
    pub fn may_read_identity(&self, id: &str) -> bool {
        self.is_admin() || matches!(self, Caller::Identity { identity, .. } if identity.id == id)
    }

    /// Admins, members of the app (their tenant is the app) and the app's own API keys.
    pub fn may_read_app(&self, app_id: &str) -> bool {
        let member = matches!(self, Caller::Identity { identity, .. }
            if identity.tenant.as_deref() == Some(app_id));
        let key_of_app = matches!(self, Caller::ApiKey(k) if k.app_id.as_deref() == Some(app_id));
        self.is_admin() || member || key_of_app
    }
}

/// Authenticate `Authorization: Bearer …`: an `ak_` API key or an access token of an identity
/// that still exists and is not disabled.
pub fn authenticate(state: &AppState, bearer: Option<&str>) -> Result<Caller, SidecarError> {
    let token = bearer.ok_or(SidecarError::Unauthorized)?;
    if token.starts_with("ak_") {
        return super::apps::check_api_key(state, token)
            .map(Caller::ApiKey)
            .map_err(super::apps::refusal);
    }
    let (claims, app_key) = state
        .auth
        .verifier()
        .verify_including_app_keys(
            &state.auth.keys(),
            token,
            state.now(),
            state.auth.revocations(),
            TokenUse::Access,
        )
        .map_err(SidecarError::InvalidToken)?;
    let identity = identities::of_token(state.store.as_ref(), &claims)?;
    // An app's shared secret speaks only for the people who signed in to that app through
    // an upstream provider — never for an admin, a device or another app's user.
    if app_key && (identity.upstream.is_none() || identity.tenant != claims.tenant) {
        return Err(SidecarError::InvalidToken(DenyCode::InvalidPrincipal));
    }
    Ok(Caller::Identity {
        claims: Box::new(claims),
        identity: Box::new(identity),
    })
}

/// Authenticate, and refuse anyone without admin authority.
pub fn require_admin(state: &AppState, bearer: Option<&str>) -> Result<Caller, SidecarError> {
    let caller = authenticate(state, bearer)?;
    if caller.is_admin() {
        Ok(caller)
    } else {
        Err(SidecarError::Forbidden("admin authority required"))
    }
}

/// Authenticate an identity (not an API key); `refusal` is what an API key is told.
pub fn require_identity(
    state: &AppState,
    bearer: Option<&str>,
    refusal: &'static str,
) -> Result<(Box<Claims>, Box<IdentityRecord>), SidecarError> {
    match authenticate(state, bearer)? {
        Caller::Identity { claims, identity } => Ok((claims, identity)),
        Caller::ApiKey(_) => Err(SidecarError::Forbidden(refusal)),
    }
}
