//! The service's shared state: cheap to clone (one `Arc`), immutable parts swapped whole
//! (key set, policy set), and the few operations every route group needs (issue a token, record a
//! revocation, authenticate a bearer credential).

use std::sync::Arc;

use broker_auth::identity::IdentityType;
use broker_auth::revocation::IdentityAttrs;
use broker_auth::token::{Claims, TokenConfig, TokenUse};
use broker_auth::{DenyCode, b64};
use rand_core::{OsRng, RngCore};

use crate::apikeys;
use crate::clock::Clock;
use crate::config::ServeArgs;
use crate::error::SidecarError;
use crate::keystore::MasterKey;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::store::{ApiKeyRecord, IdentityRecord, RevocationKind, RevocationRecord, Store};

pub type State = Arc<AppState>;

pub struct AppState {
    pub config: ServeArgs,
    pub store: Arc<dyn Store>,
    pub token_config: TokenConfig,
    /// Keys, verifier, revocations and policy (with a verification cache): what every decision
    /// reads, shared with the HTTP broker routes, the MQTT broker and the callout.
    pub auth: broker_auth_runtime::LiveAuth,
    /// The live connections of this process's MQTT broker and callout (one registry).
    pub enforcer: Arc<broker_auth_runtime::Enforcer>,
    /// The NATS provisioner and resolver, when an operator seed is configured.
    pub provisioner: Option<Arc<crate::provision::Provisioner>>,
    /// Its connections to nats-server (claims pushes, command stream).
    pub nats_side: Arc<crate::provision::nats::NatsSide>,
    pub limiter: RateLimiter,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub master: MasterKey,
    /// Upstream OpenID providers (`/oauth/{provider}`).
    pub upstream: crate::oauth::upstream::Upstreams,
}

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
}

/// A random id with a prefix (`ann-`, `lgn-`, ...): 128 bits, base32.
pub fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    format!("{prefix}{}", data_encoding::BASE32_NOPAD.encode(&b))
}

/// Hex SHA-256: how every high-entropy secret (API keys, refresh tokens, client secrets,
/// authorization codes) is kept at rest. A fast hash is right at 256 bits of entropy: there is
/// no dictionary to try, and a slow hash would only slow down every legitimate use.
pub fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

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

/// A random challenge: 32 bytes, base64url.
pub fn random_challenge() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    b64::url_encode(&b)
}

impl AppState {
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The process's enforcement runtime: these inputs, this registry, this clock.
    pub fn runtime(&self) -> broker_auth_runtime::Runtime {
        broker_auth_runtime::Runtime {
            live: self.auth.clone(),
            enforcer: self.enforcer.clone(),
            clock: self.clock.clone(),
        }
    }

    /// What an identity's tokens say about it: its record's type, tenant, scopes, groups and
    /// devices, and the roles it holds in its app.
    pub fn attrs_of(&self, identity: &IdentityRecord) -> Result<IdentityAttrs, SidecarError> {
        Ok(attrs_with_roles(identity, self.roles_of(identity)?))
    }

    /// Claims for an identity, with what its record says about it ([`AppState::attrs_of`]).
    pub fn claims_for(
        &self,
        identity: &IdentityRecord,
        ttl: i64,
        token_use: TokenUse,
        sid: &str,
    ) -> Claims {
        let mut c = Claims::new(
            &self.token_config,
            &identity.id,
            self.now(),
            ttl,
            token_use,
            &mut OsRng,
        );
        c.sid = Some(sid.to_owned());
        // A store failure here must not mint a token without its roles silently; roles only
        // ever add grants, so a token without them is the safe side, and the failure is logged.
        let roles = self.roles_of(identity).unwrap_or_else(|e| {
            tracing::warn!(error = %e, identity = %identity.id, "roles unavailable; token issued without roles");
            vec![]
        });
        attrs_with_roles(identity, roles).apply(&mut c);
        c
    }

    /// Names of the roles `identity` holds in its app (its tenant).
    pub fn roles_of(&self, identity: &IdentityRecord) -> Result<Vec<String>, SidecarError> {
        let Some(app) = identity.tenant.as_deref() else {
            return Ok(vec![]);
        };
        let Some(assigned) = self.store.user_roles(app, &identity.id)? else {
            return Ok(vec![]);
        };
        let mut names: Vec<String> = self
            .store
            .roles(app)?
            .into_iter()
            .filter(|r| assigned.role_ids.contains(&r.id))
            .map(|r| r.name)
            .collect();
        names.sort();
        Ok(names)
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, SidecarError> {
        self.auth
            .keys()
            .sign(claims)
            .map_err(|e| SidecarError::Internal(e.to_string()))
    }

    /// Register an identity that signs in by `rec.sign_in_key()` (an announcing device, a first
    /// upstream login). Two first sign-ins of the same key can race; the loser gets the
    /// winner's record instead of an error.
    pub fn insert_identity_or_winner(
        &self,
        rec: IdentityRecord,
    ) -> Result<IdentityRecord, SidecarError> {
        match self.store.insert_identity(&rec) {
            Ok(()) => {
                self.metrics.identities.inc();
                Ok(rec)
            }
            Err(crate::store::StoreError::Conflict(_)) => rec
                .sign_in_key()
                .and_then(|k| self.store.identity_by_key(&k).transpose())
                .transpose()?
                .ok_or_else(|| SidecarError::Internal("sign-in index without identity".into())),
            Err(e) => Err(e.into()),
        }
    }

    /// A session's access token. People and services with keys get the key-login lifetime and
    /// the active key; a person who signed in through an upstream provider is an app user: the
    /// app token lifetime, and the app's HS256 key when one is configured.
    pub fn session_access(
        &self,
        identity: &IdentityRecord,
        sid: &str,
    ) -> Result<(Claims, String), SidecarError> {
        let app_user = identity.upstream.is_some();
        let ttl = if app_user {
            self.config.app_token_ttl
        } else {
            self.config.login_token_ttl
        };
        let claims = self.claims_for(identity, ttl, TokenUse::Access, sid);
        let token = if app_user {
            self.sign_app_access(&claims)?
        } else {
            self.sign(&claims)?
        };
        Ok((claims, token))
    }

    /// Open a login session for `identity`: its claims, access token and first refresh token.
    /// The caller flushes the store before answering.
    pub fn open_session(
        &self,
        identity: &IdentityRecord,
    ) -> Result<(Claims, String, String), SidecarError> {
        let (family, refresh) = crate::sessions::open(
            self.store.as_ref(),
            &identity.id,
            self.now(),
            self.config.session_lifetime,
        )?;
        let (claims, access) = self.session_access(identity, &family.id)?;
        Ok((claims, access, refresh))
    }

    /// Sign an app access token: with the app's HS256 key when the operator configured one
    /// (`--app-hs256-secret`), else with the active key.
    pub fn sign_app_access(&self, claims: &Claims) -> Result<String, SidecarError> {
        let keys = self.auth.keys();
        let app_key = claims
            .tenant
            .as_deref()
            .and_then(|t| keys.get(&broker_auth::token::app_key_id(t)))
            .filter(|k| k.tenant().is_some());
        match app_key {
            Some(k) => keys.sign_with(k, claims),
            None => keys.sign(claims),
        }
        .map_err(|e| SidecarError::Internal(e.to_string()))
    }

    /// Verify a token of the product (any enforcement point's rules) at the state's time.
    pub fn verify(&self, token: &str, token_use: TokenUse) -> Result<Claims, DenyCode> {
        self.auth.verifier().verify(
            &self.auth.keys(),
            token,
            self.now(),
            self.auth.revocations(),
            token_use,
        )
    }

    async fn record_revocation(&self, rec: RevocationRecord) -> Result<(), SidecarError> {
        match (rec.kind, &rec.attrs) {
            (RevocationKind::Session, _) => self.auth.revoke_session(&rec.id, rec.until),
            (RevocationKind::Subject, _) => self.auth.revoke_subject(&rec.id, rec.at, rec.until),
            (RevocationKind::Identity, Some(a)) => {
                self.auth
                    .update_identity(&rec.id, rec.at, a.clone(), rec.until)
            }
            (RevocationKind::Identity, None) => {
                return Err(SidecarError::Internal(
                    "an identity change must carry the identity's attributes".into(),
                ));
            }
        }
        self.store.append_revocation(&rec)?;
        self.store.flush().await?;
        self.metrics.revocations.inc();
        Ok(())
    }

    /// Revoke a session: every token with this `sid` stops working, here at once.
    pub async fn revoke_session(&self, sid: &str, until: i64) -> Result<(), SidecarError> {
        self.record_revocation(RevocationRecord {
            kind: RevocationKind::Session,
            id: sid.to_owned(),
            at: self.now(),
            until,
            attrs: None,
        })
        .await
    }

    /// `identity` changed (its record or its roles): tokens issued before now are read with its
    /// current attributes from now on, here and on every follower of the revocation feed, and
    /// live connections whose grants that narrows are cut.
    pub async fn identity_changed(&self, identity: &IdentityRecord) -> Result<(), SidecarError> {
        let now = self.now();
        self.record_revocation(RevocationRecord {
            kind: RevocationKind::Identity,
            id: identity.id.clone(),
            at: now,
            until: now + self.config.max_token_lifetime(),
            attrs: Some(self.attrs_of(identity)?),
        })
        .await
    }

    /// Revoke every token of an identity issued up to now.
    pub async fn revoke_subject(&self, sub: &str) -> Result<(), SidecarError> {
        let now = self.now();
        self.record_revocation(RevocationRecord {
            kind: RevocationKind::Subject,
            id: sub.to_owned(),
            at: now,
            until: now + self.config.max_token_lifetime(),
            attrs: None,
        })
        .await
    }

    /// Authenticate `Authorization: Bearer …`: an `ak_` API key or an access token of an identity
    /// that still exists and is not disabled.
    pub fn authenticate(&self, bearer: Option<&str>) -> Result<Caller, SidecarError> {
        let token = bearer.ok_or(SidecarError::Unauthorized)?;
        if token.starts_with("ak_") {
            return apikeys::verify(self.store.as_ref(), token, self.now())
                .map(Caller::ApiKey)
                .map_err(|_| SidecarError::InvalidToken(DenyCode::BadSignature));
        }
        let (claims, app_key) = self
            .auth
            .verifier()
            .verify_including_app_keys(
                &self.auth.keys(),
                token,
                self.now(),
                self.auth.revocations(),
                TokenUse::Access,
            )
            .map_err(SidecarError::InvalidToken)?;
        let identity = self
            .store
            .identity(&claims.sub)?
            .ok_or(SidecarError::InvalidToken(DenyCode::Revoked))?;
        if identity.disabled_at.is_some() {
            return Err(SidecarError::InvalidToken(DenyCode::Revoked));
        }
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

    pub fn require_admin(&self, bearer: Option<&str>) -> Result<Caller, SidecarError> {
        let caller = self.authenticate(bearer)?;
        if caller.is_admin() {
            Ok(caller)
        } else {
            Err(SidecarError::Forbidden("admin authority required"))
        }
    }
}
