//! Identities: how each kind of origin builds its record (registration, a device's first
//! announce, a person's first upstream login), the one place `disabled_at` is read
//! ([`Standing`]), the rules of an identity's descriptive fields, and registration, reading,
//! listing, changing and disabling.

use broker_auth::identity::{IdentityType, PublicKey};
use broker_auth::principal::{is_safe_label, is_safe_name};
use broker_auth::token::Claims;
use rand_core::OsRng;
use serde_json::{Map, Value};

use super::{apps, callers, revocations};
use crate::error::SidecarError;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::{IdentityRecord, IdentityStore, StoreError, StoreResult, UpstreamAccount};

/// What a registration says about an identity besides its type and key.
#[derive(Debug, Default)]
pub struct Fields {
    pub name: Option<String>,
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
    pub metadata: Option<Map<String, Value>>,
}

/// A change to an identity: absent fields stay as they are; type and key never change.
#[derive(Debug, Default)]
pub struct Change {
    pub name: Option<String>,
    pub tenant: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub metadata: Option<Map<String, Value>>,
}

impl IdentityRecord {
    fn new(kind: IdentityType, key: Option<&PublicKey>, now: i64) -> IdentityRecord {
        IdentityRecord {
            id: kind.new_id(&mut OsRng),
            kind,
            key_algorithm: key.map(PublicKey::algorithm),
            public_key: key.map(PublicKey::canonical),
            upstream: None,
            name: None,
            tenant: None,
            scopes: vec![],
            groups: vec![],
            metadata: Map::new(),
            created_at: now,
            disabled_at: None,
        }
    }

    /// An identity registered by an admin, an API key or open registration.
    pub fn registered(kind: IdentityType, key: &PublicKey, f: Fields, now: i64) -> IdentityRecord {
        IdentityRecord {
            name: f.name,
            tenant: f.tenant,
            scopes: f.scopes,
            groups: f.groups,
            metadata: f.metadata.unwrap_or_default(),
            ..IdentityRecord::new(kind, Some(key), now)
        }
    }

    /// A device that registered itself by announcing an unknown key (`OPEN_ANNOUNCE`).
    pub fn announced(key: &PublicKey, now: i64) -> IdentityRecord {
        IdentityRecord::new(IdentityType::Device, Some(key), now)
    }

    /// A person's first sign-in through an upstream provider, into `app`.
    pub fn upstream_user(
        app: Option<&str>,
        account: UpstreamAccount,
        name: Option<String>,
        now: i64,
    ) -> IdentityRecord {
        IdentityRecord {
            upstream: Some(account),
            name,
            tenant: app.map(str::to_owned),
            ..IdentityRecord::new(IdentityType::User, None, now)
        }
    }
}

/// An identity as a lookup found it.
pub enum Standing {
    Active(IdentityRecord),
    Disabled(IdentityRecord),
    Unknown,
}

impl Standing {
    fn of(rec: Option<IdentityRecord>) -> Standing {
        match rec {
            None => Standing::Unknown,
            Some(r) if r.is_disabled() => Standing::Disabled(r),
            Some(r) => Standing::Active(r),
        }
    }

    /// The identity if it may act; a disabled one is as good as unknown.
    pub fn active(self) -> Option<IdentityRecord> {
        match self {
            Standing::Active(r) => Some(r),
            Standing::Disabled(_) | Standing::Unknown => None,
        }
    }

    /// The identity if it may act, none if it is unknown; a disabled one is told so.
    pub fn unless_disabled(self) -> Result<Option<IdentityRecord>, SidecarError> {
        match self {
            Standing::Active(r) => Ok(Some(r)),
            Standing::Disabled(_) => Err(SidecarError::Forbidden("identity is disabled")),
            Standing::Unknown => Ok(None),
        }
    }
}

/// The identity `id` and whether it may act.
pub fn by_id(store: &dyn IdentityStore, id: &str) -> StoreResult<Standing> {
    store.identity(id).map(Standing::of)
}

/// The identity that signs in with `sign_in_key` (a canonical key, an upstream index entry).
pub fn by_key(store: &dyn IdentityStore, sign_in_key: &str) -> StoreResult<Standing> {
    store.identity_by_key(sign_in_key).map(Standing::of)
}

/// The identity `id` if it exists and is not disabled.
pub fn active(store: &dyn IdentityStore, id: &str) -> StoreResult<Option<IdentityRecord>> {
    by_id(store, id).map(Standing::active)
}

/// The identity a verified access token speaks for: it must still exist and be active.
pub fn of_token(
    store: &dyn IdentityStore,
    claims: &Claims,
) -> Result<IdentityRecord, SidecarError> {
    active(store, &claims.sub)?.ok_or(SidecarError::InvalidToken(broker_auth::DenyCode::Revoked))
}

/// The identity that signs in with `key`: unknown is [`SidecarError::UnknownIdentity`],
/// disabled is forbidden.
pub fn signing_in(store: &dyn IdentityStore, key: &str) -> Result<IdentityRecord, SidecarError> {
    by_key(store, key)?
        .unless_disabled()?
        .ok_or(SidecarError::UnknownIdentity)
}

/// Register an identity that signs in by `rec.sign_in_key()` (an announcing device, a first
/// upstream login). Two first sign-ins of the same key can race; the loser gets the
/// winner's record instead of an error.
pub fn insert_or_winner(
    store: &dyn IdentityStore,
    metrics: &Metrics,
    rec: IdentityRecord,
) -> Result<IdentityRecord, SidecarError> {
    match store.insert_identity(&rec) {
        Ok(()) => {
            metrics.identities.inc();
            Ok(rec)
        }
        Err(StoreError::Conflict(_)) => rec
            .sign_in_key()
            .and_then(|k| store.identity_by_key(&k).transpose())
            .transpose()?
            .ok_or_else(|| SidecarError::internal("sign-in index without identity")),
        Err(e) => Err(e.into()),
    }
}

/// The rules an identity's descriptive fields follow, at registration and on every change.
fn check_fields(
    name: Option<&str>,
    tenant: Option<&str>,
    scopes: &[String],
    groups: &[String],
    metadata: Option<&Map<String, Value>>,
) -> Result<(), SidecarError> {
    let bad = |m: &str| Err(SidecarError::Validation(m.to_owned()));
    if name.is_some_and(|n| n.chars().count() > 128 || n.chars().any(char::is_control)) {
        return bad("name: at most 128 printable characters");
    }
    if tenant.is_some_and(|t| !is_safe_name(t)) {
        return bad("tenant: 1-128 of [A-Za-z0-9_-]");
    }
    if scopes.len() > 64
        || groups.len() > 64
        || !scopes.iter().chain(groups).all(|s| is_safe_label(s))
    {
        return bad("scopes/groups: at most 64 each, 1-128 of [A-Za-z0-9_.:-]");
    }
    if let Some(devices) = metadata.and_then(|m| m.get("devices")) {
        let ok = devices.as_array().is_some_and(|a| {
            a.len() <= 1024 && a.iter().all(|d| d.as_str().is_some_and(is_safe_name))
        });
        if !ok {
            return bad("metadata.devices: an array of identity ids");
        }
    }
    Ok(())
}

/// Register an identity. Admins and API keys allowed the type may; with `OPEN_REGISTRATION`
/// devices and gateways register themselves.
pub async fn register(
    state: &AppState,
    bearer: Option<&str>,
    kind: IdentityType,
    public_key: &str,
    fields: Fields,
) -> Result<IdentityRecord, SidecarError> {
    let self_service = state.config.open_registration
        && matches!(kind, IdentityType::Device | IdentityType::Gateway);
    if !self_service && !callers::authenticate(state, bearer)?.may_register(kind) {
        return Err(SidecarError::Forbidden(
            "this credential may not register this identity type",
        ));
    }
    let Fields {
        name,
        tenant,
        scopes,
        groups,
        metadata,
    } = &fields;
    check_fields(
        name.as_deref(),
        tenant.as_deref(),
        scopes,
        groups,
        metadata.as_ref(),
    )?;
    let key = PublicKey::decode_for(kind, public_key)?;
    let rec = IdentityRecord::registered(kind, &key, fields, state.now());
    let store: &dyn IdentityStore = state.store.as_ref();
    store.insert_identity(&rec).map_err(|e| match e {
        StoreError::Conflict(_) => SidecarError::Conflict("public key already registered".into()),
        other => other.into(),
    })?;
    store.flush().await?;
    state.metrics.identities.inc();
    Ok(rec)
}

/// One identity, for an admin or the identity itself.
pub fn get(
    state: &AppState,
    bearer: Option<&str>,
    id: &str,
) -> Result<IdentityRecord, SidecarError> {
    if !callers::authenticate(state, bearer)?.may_read_identity(id) {
        return Err(SidecarError::Forbidden("admin authority required"));
    }
    state
        .store
        .identity(id)?
        .ok_or(SidecarError::NotFound("identity"))
}

/// A page of identities (admins): up to `limit` (1–1000, default 100) after `after`, and the
/// `after` of the next page unless this is the last.
pub fn list(
    state: &AppState,
    bearer: Option<&str>,
    after: Option<&str>,
    limit: Option<usize>,
) -> Result<(Vec<IdentityRecord>, Option<String>), SidecarError> {
    callers::require_admin(state, bearer)?;
    let limit = limit.unwrap_or(100).clamp(1, 1000);
    let mut recs = state.store.list_identities(after, limit + 1)?;
    let more = recs.len() > limit;
    recs.truncate(limit);
    let next = more.then(|| recs.last().map(|r| r.id.clone())).flatten();
    Ok((recs, next))
}

/// Disable an identity (admins): every token it holds stops working everywhere.
pub async fn disable(state: &AppState, bearer: Option<&str>, id: &str) -> Result<(), SidecarError> {
    callers::require_admin(state, bearer)?;
    match by_id(state.store.as_ref(), id)? {
        Standing::Unknown => Err(SidecarError::NotFound("identity")),
        Standing::Disabled(_) => Ok(()),
        Standing::Active(mut rec) => {
            rec.disabled_at = Some(state.now());
            state.store.update_identity(&rec)?;
            revocations::revoke_subject(state, &rec.id).await
        }
    }
}

/// Change an active identity (admins); a change that narrows its grants cuts its live MQTT and
/// NATS connections (the identity change goes out on the revocation feed).
pub async fn update(
    state: &AppState,
    bearer: Option<&str>,
    id: &str,
    change: Change,
) -> Result<IdentityRecord, SidecarError> {
    callers::require_admin(state, bearer)?;
    let mut rec = active(state.store.as_ref(), id)?.ok_or(SidecarError::NotFound("identity"))?;
    rec.name = change.name.or(rec.name);
    rec.tenant = change.tenant.or(rec.tenant);
    rec.scopes = change.scopes.unwrap_or(rec.scopes);
    rec.groups = change.groups.unwrap_or(rec.groups);
    rec.metadata = change.metadata.unwrap_or(rec.metadata);
    check_fields(
        rec.name.as_deref(),
        rec.tenant.as_deref(),
        &rec.scopes,
        &rec.groups,
        Some(&rec.metadata),
    )?;
    state.store.update_identity(&rec)?;
    revocations::identity_changed(state, &rec).await?;
    Ok(rec)
}

/// The calling identity, its token's claims and its roles in its app as of now.
pub struct Me {
    pub claims: Box<Claims>,
    pub identity: Box<IdentityRecord>,
    pub roles: Vec<String>,
}

pub fn me(state: &AppState, bearer: Option<&str>) -> Result<Me, SidecarError> {
    let (claims, identity) = callers::require_identity(
        state,
        bearer,
        "an API key has no identity; use an access token",
    )?;
    let roles = apps::roles_of(state.store.as_ref(), &identity)?;
    Ok(Me {
        claims,
        identity,
        roles,
    })
}

/// Find or create the person (app, iss, sub) of an upstream login; refresh what the provider
/// says about them. People are found by that triple, never by e-mail.
pub fn upstream_sign_in(
    state: &AppState,
    app: Option<&str>,
    account: UpstreamAccount,
    name: Option<String>,
) -> Result<IdentityRecord, SidecarError> {
    let index = crate::store::upstream_index(app.unwrap_or(""), &account.iss, &account.sub);
    let store: &dyn IdentityStore = state.store.as_ref();
    if let Some(mut existing) = by_key(store, &index)?.unless_disabled()? {
        if existing.upstream.as_ref() != Some(&account) || (name.is_some() && existing.name != name)
        {
            existing.upstream = Some(account);
            existing.name = name.or(existing.name);
            store.update_identity(&existing)?;
        }
        return Ok(existing);
    }
    let rec = IdentityRecord::upstream_user(app, account, name, state.now());
    insert_or_winner(store, &state.metrics, rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    #[test]
    fn standing_is_read_once_for_every_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let key = PublicKey::decode_for(
            IdentityType::Device,
            &broker_auth::b64::url_encode(&[
                0x3d, 0x40, 0x17, 0xc3, 0xe8, 0x43, 0x89, 0x5a, 0x92, 0xb7, 0x0a, 0xa7, 0x4d, 0x1b,
                0x7e, 0xbc, 0x9c, 0x98, 0x2c, 0xcf, 0x2e, 0xc4, 0x96, 0x8c, 0xc0, 0xcd, 0x55, 0xf1,
                0x2a, 0xf4, 0x66, 0x0c,
            ]),
        )
        .unwrap();
        let mut rec = IdentityRecord::announced(&key, 10);
        assert_eq!(rec.kind, IdentityType::Device);
        assert_eq!(rec.public_key.as_deref(), Some(key.canonical().as_str()));
        store.insert_identity(&rec).unwrap();
        assert!(active(&store, &rec.id).unwrap().is_some());
        assert!(signing_in(&store, &key.canonical()).is_ok());
        rec.disabled_at = Some(11);
        store.update_identity(&rec).unwrap();
        assert!(active(&store, &rec.id).unwrap().is_none());
        assert!(matches!(
            by_id(&store, &rec.id).unwrap(),
            Standing::Disabled(_)
        ));
        assert!(matches!(
            signing_in(&store, &key.canonical()),
            Err(SidecarError::Forbidden("identity is disabled"))
        ));
        assert!(matches!(
            signing_in(&store, "nobody"),
            Err(SidecarError::UnknownIdentity)
        ));
    }
}
