//! Login sessions with rotating refresh tokens (Tronexus).
//!
//! A login opens a *family*; its id is the `sid` of every access token of the session. A refresh
//! token is `<uuid>.<secret>` (secret: 256 random bits, base64url; only its SHA-256 is stored, and
//! compared in constant time — a fast hash is right at this entropy). Each exchange marks the
//! token used and issues the next one of the family. Presenting a used token again means it was
//! copied: the whole family is revoked (the caller also revokes its `sid`, so the session's live
//! access tokens stop too). Two concurrent exchanges of one token are the same case: the store's
//! compare-and-swap lets exactly one mark it used, and the other is treated as a reuse. A family
//! ends at an absolute lifetime that rotation never extends.

use broker_auth::b64;
use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;

use crate::error::SidecarError;
use crate::state::{AppState, random_id};
use crate::store::{FamilyRecord, IdentityRecord, RefreshRecord, SessionStore};

const SECRET_LEN: usize = 43;

use crate::state::sha256_hex as hash;

/// Mint the next token of `family`.
fn mint(store: &dyn SessionStore, family: &FamilyRecord, now: i64) -> Result<String, SidecarError> {
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let secret = b64::url_encode(&secret);
    let rec = RefreshRecord {
        id: uuid::Uuid::new_v4().to_string(),
        family: family.id.clone(),
        user_id: family.user_id.clone(),
        secret_hash: hash(&secret),
        created_at: now,
        used_at: None,
    };
    store.put_refresh(&rec)?;
    Ok(format!("{}.{secret}", rec.id))
}

/// Open a session for `user_id`; returns the family and its first refresh token.
pub fn open(
    store: &dyn SessionStore,
    user_id: &str,
    now: i64,
    lifetime: i64,
) -> Result<(FamilyRecord, String), SidecarError> {
    open_family(store, new_family_id(), user_id, None, now, lifetime)
}

/// A fresh session id (`ses-…`).
pub fn new_family_id() -> String {
    random_id("ses-")
}

/// An OAuth2 grant a session belongs to: the client and the scopes it was given.
pub struct ClientGrant<'a> {
    pub client_id: &'a str,
    pub scopes: &'a [String],
}

/// Open a session with a chosen id, optionally bound to the OAuth2 client it was granted to.
pub fn open_family(
    store: &dyn SessionStore,
    id: String,
    user_id: &str,
    grant: Option<ClientGrant<'_>>,
    now: i64,
    lifetime: i64,
) -> Result<(FamilyRecord, String), SidecarError> {
    let family = FamilyRecord {
        id,
        user_id: user_id.to_owned(),
        created_at: now,
        expires_at: now + lifetime,
        revoked_at: None,
        scopes: grant
            .as_ref()
            .map(|g| g.scopes.to_vec())
            .unwrap_or_default(),
        client_id: grant.map(|g| g.client_id.to_owned()),
    };
    store.put_family(&family)?;
    let token = mint(store, &family, now)?;
    Ok((family, token))
}

/// A session just opened: its claims and access token, and its first refresh token.
pub struct Opened {
    pub claims: broker_auth::token::Claims,
    pub access_token: String,
    pub refresh_token: String,
}

/// Open a login session for `identity`: its claims, access token and first refresh token
/// ([`super::tokens::session_access`] picks lifetime and key). The caller flushes the store
/// before answering.
pub fn open_session(state: &AppState, identity: &IdentityRecord) -> Result<Opened, SidecarError> {
    let (family, refresh_token) = open(
        state.store.as_ref(),
        &identity.id,
        state.now(),
        state.config.session_lifetime,
    )?;
    let (claims, access_token) = super::tokens::session_access(state, identity, &family.id)?;
    Ok(Opened {
        claims,
        access_token,
        refresh_token,
    })
}

/// [`open_session`], durable before it returns: what a sign-in answers with.
pub async fn open_durable(
    state: &AppState,
    identity: &IdentityRecord,
) -> Result<Opened, SidecarError> {
    let opened = open_session(state, identity)?;
    let store: &dyn SessionStore = state.store.as_ref();
    store.flush().await?;
    Ok(opened)
}

/// What an exchange came to.
pub enum Exchanged {
    /// The next token of a live family.
    Rotated { family: FamilyRecord, token: String },
    /// A used token came back: the family is now revoked (the caller revokes its `sid`).
    Reused { family: FamilyRecord },
}

fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.trim().split_once('.')?;
    let ok = uuid::Uuid::parse_str(id).is_ok() && secret.len() == SECRET_LEN;
    ok.then_some((id, secret))
}

/// Exchange a refresh token. Unknown, malformed, wrong-secret, expired and ended tokens are all
/// `InvalidRefreshToken` (4008), so nothing tells a guesser which part was wrong. `client` is the
/// OAuth2 client presenting it (None on `/auth/refresh`): a token of another client's session is
/// refused before it is marked used, so a client cannot burn another's session.
pub fn exchange(
    store: &dyn SessionStore,
    token: &str,
    client: Option<&str>,
    now: i64,
) -> Result<Exchanged, SidecarError> {
    let invalid = || SidecarError::InvalidRefreshToken;
    let (id, secret) = parse(token).ok_or_else(invalid)?;
    let rec = store.refresh_token(id)?.ok_or_else(invalid)?;
    if !bool::from(hash(secret).as_bytes().ct_eq(rec.secret_hash.as_bytes())) {
        return Err(invalid());
    }
    let mut family = store
        .family(&rec.user_id, &rec.family)?
        .ok_or_else(invalid)?;
    if family.revoked_at.is_some()
        || now >= family.expires_at
        || family.client_id.as_deref() != client
    {
        return Err(invalid());
    }
    if rec.used_at.is_some() || !store.use_refresh(&rec, now)? {
        family.revoked_at = Some(now);
        store.put_family(&family)?;
        return Ok(Exchanged::Reused { family });
    }
    let token = mint(store, &family, now)?;
    Ok(Exchanged::Rotated { family, token })
}

/// End one session (a replayed authorization code): its refresh tokens stop rotating. The caller
/// also revokes its `sid`. None if there is no such live session.
pub fn end(
    store: &dyn SessionStore,
    user_id: &str,
    id: &str,
    now: i64,
) -> Result<Option<FamilyRecord>, SidecarError> {
    let Some(mut f) = store.family(user_id, id)? else {
        return Ok(None);
    };
    if f.revoked_at.is_none() {
        f.revoked_at = Some(now);
        store.put_family(&f)?;
    }
    Ok(Some(f))
}

/// End every live session of `user_id`; returns the families ended.
pub fn end_all(
    store: &dyn SessionStore,
    user_id: &str,
    now: i64,
) -> Result<Vec<FamilyRecord>, SidecarError> {
    let mut ended = Vec::new();
    for mut f in store.families_of(user_id)? {
        if f.revoked_at.is_none() && f.expires_at > now {
            f.revoked_at = Some(now);
            store.put_family(&f)?;
            ended.push(f);
        }
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    #[test]
    fn a_stale_read_cannot_mark_a_token_used_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let (_, token) = open(&store, "usr-A", 100, 3600).unwrap();
        let id = token.split_once('.').unwrap().0;
        // Two exchanges read the same record; only the first compare-and-swap succeeds.
        let seen_by_a = store.refresh_token(id).unwrap().unwrap();
        let seen_by_b = seen_by_a.clone();
        assert!(store.use_refresh(&seen_by_a, 101).unwrap());
        assert!(!store.use_refresh(&seen_by_b, 101).unwrap());
        // And the exchange path turns the loser into a reuse that ends the family.
        match exchange(&store, &token, None, 102).unwrap() {
            Exchanged::Reused { family } => assert_eq!(family.revoked_at, Some(102)),
            Exchanged::Rotated { .. } => panic!("a used token rotated"),
        }
    }
}
