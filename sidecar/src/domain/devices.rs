//! Devices (Cryptid): announce, signed refresh, deregister.
//!
//! Announce proves key possession with `sign(sk, "announce:" + public_key + ":" + timestamp)`,
//! the timestamp within ±60 s, each signature usable once. Every announcement is a session: its
//! id is the `sid` of the tokens issued under it, so ending it (re-announce, deregister) stops
//! them everywhere.

use broker_auth::identity::{IdentityType, PublicKey};
use broker_auth::token::TokenUse;
use sha2::{Digest, Sha256};

use super::tokens::{claims_for, sign};
use super::{identities, revocations, tokens};
use crate::error::SidecarError;
use crate::state::{AppState, random_id};
use crate::store::{AnnouncementRecord, DeviceStore, IdentityRecord};

/// Accepted clock skew of an announce timestamp.
pub const ANNOUNCE_WINDOW: i64 = 60;

/// An announce as the device sent it.
pub struct Announce<'a> {
    pub public_key: &'a str,
    /// The timestamp, and its text exactly as sent (the signed message uses the text).
    pub timestamp: (i64, &'a str),
    pub signature: &'a str,
    pub ttl_seconds: Option<i64>,
}

/// What an announce issued.
pub struct Announced {
    pub device_id: String,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: i64,
    pub announcement_expires_at: i64,
}

/// The active device of `key`, registering it first if it is unknown and `OPEN_ANNOUNCE` is on.
fn device_for_key(state: &AppState, key: &PublicKey) -> Result<IdentityRecord, SidecarError> {
    let store = state.store.as_ref();
    match identities::by_key(store, &key.canonical())? {
        identities::Standing::Active(rec) | identities::Standing::Disabled(rec)
            if rec.kind != IdentityType::Device =>
        {
            Err(SidecarError::Validation(
                "this key belongs to an identity that is not a device".into(),
            ))
        }
        standing => match standing.unless_disabled()? {
            Some(rec) => Ok(rec),
            None if !state.config.open_announce => Err(SidecarError::UnknownIdentity),
            None => {
                let rec = IdentityRecord::announced(key, state.now());
                identities::insert_or_winner(store, &state.metrics, rec)
            }
        },
    }
}

/// The checks of an announce before its signature: the timestamp's window and the lifetime
/// asked for; returns the lifetime.
fn check_announce(state: &AppState, req: &Announce<'_>) -> Result<i64, SidecarError> {
    // abs_diff: a timestamp near i64::MIN must not overflow into "recent".
    if req.timestamp.0.abs_diff(state.now()) > ANNOUNCE_WINDOW.unsigned_abs() {
        return Err(SidecarError::Validation(format!(
            "timestamp must be within {ANNOUNCE_WINDOW} s of the server clock"
        )));
    }
    let max_ttl = state.config.announcement_ttl;
    let ttl = req.ttl_seconds.unwrap_or(max_ttl);
    if !(60..=max_ttl).contains(&ttl) {
        return Err(SidecarError::Validation(format!(
            "ttl_seconds must be between 60 and {max_ttl}"
        )));
    }
    Ok(ttl)
}

/// Announce a device: a new announcement (its session) replaces the device's previous one.
pub async fn announce(state: &AppState, req: Announce<'_>) -> Result<Announced, SidecarError> {
    let now = state.now();
    let ttl = check_announce(state, &req)?;
    let (ts, ts_text) = req.timestamp;
    let key = PublicKey::decode_for(IdentityType::Device, req.public_key)?;
    let message = format!("announce:{}:{ts_text}", req.public_key);
    let sig = broker_auth::b64::decode_any("signature", req.signature)?;
    if key.verify(message.as_bytes(), &sig).is_err() {
        state.metrics.outcome("announce", "bad_signature");
        return Err(SidecarError::InvalidSignature);
    }
    let device = device_for_key(state, &key)?;
    // Checked after the identity, so an announce refused for another reason does not burn the
    // proof. Replay: the same proof inside the window is refused. Verification is strict (no
    // malleable twins) and DER and r||s spellings of an ES256 signature are one canonical form.
    let digest = Sha256::digest(key.canonical_signature(&sig)?);
    let store: &dyn DeviceStore = state.store.as_ref();
    if !store.remember_signature(&digest, ts + 2 * ANNOUNCE_WINDOW)? {
        state.metrics.outcome("announce", "replay");
        return Err(SidecarError::Replayed);
    }
    let ann = AnnouncementRecord {
        id: random_id("ann-"),
        device: device.id.clone(),
        created_at: now,
        expires_at: now + ttl,
        ended_at: None,
    };
    if let Some(prev) = store
        .open_announcement(&ann)?
        .filter(|p| p.ended_at.is_none())
    {
        revocations::revoke_session(state, &prev.id, prev.expires_at).await?;
    }
    let access = claims_for(
        state,
        &device,
        state.config.device_access_ttl.min(ttl),
        TokenUse::Access,
        &ann.id,
    );
    let refresh = claims_for(state, &device, ttl, TokenUse::Refresh, &ann.id);
    let body = Announced {
        device_id: device.id,
        access_token: sign(state, &access)?,
        refresh_token: sign(state, &refresh)?,
        expires_at: access.exp,
        announcement_expires_at: ann.expires_at,
    };
    store.flush().await?;
    state.metrics.outcome("announce", "ok");
    Ok(body)
}

/// A new access token for a device's live announcement, against its refresh token signed with
/// the device's key. Returns the token and its expiry.
pub fn refresh(
    state: &AppState,
    refresh_token: &str,
    device_signature: &str,
) -> Result<(String, i64), SidecarError> {
    let invalid = |why: &'static str| {
        state.metrics.outcome("refresh", why);
        SidecarError::InvalidRefreshToken
    };
    let claims = tokens::verify(state, refresh_token, TokenUse::Refresh)
        .map_err(|_| invalid("invalid_token"))?;
    let sid = claims.sid.clone().ok_or_else(|| invalid("no_session"))?;
    let ann = state
        .store
        .announcement(&sid)?
        .filter(|a| a.ended_at.is_none() && a.expires_at > state.now() && a.device == claims.sub)
        .ok_or_else(|| invalid("announcement_ended"))?;
    let device = identities::active(state.store.as_ref(), &claims.sub)?
        .ok_or_else(|| invalid("unknown_device"))?;
    let key = PublicKey::from_bytes(&broker_auth::b64::url_decode_strict(
        "key",
        device.public_key.as_deref().unwrap_or_default(),
    )?)?;
    if key
        .verify_b64(refresh_token.as_bytes(), device_signature)
        .is_err()
    {
        state.metrics.outcome("refresh", "bad_signature");
        return Err(SidecarError::InvalidSignature);
    }
    let ttl = state
        .config
        .device_access_ttl
        .min(ann.expires_at - state.now());
    let access = claims_for(state, &device, ttl, TokenUse::Access, &ann.id);
    state.metrics.outcome("refresh", "ok");
    Ok((sign(state, &access)?, access.exp))
}

/// End the announcement the access token `bearer` was issued under; its tokens stop at once.
pub async fn deregister(state: &AppState, bearer: Option<&str>) -> Result<(), SidecarError> {
    let token = bearer.ok_or(SidecarError::Unauthorized)?;
    let claims =
        tokens::verify(state, token, TokenUse::Access).map_err(SidecarError::InvalidToken)?;
    let not_device = SidecarError::Forbidden("not a device announcement token");
    let sid = claims.sid.ok_or(not_device)?;
    match state
        .store
        .end_announcement(&claims.sub, &sid, state.now())?
    {
        Some(ann) => revocations::revoke_session(state, &ann.id, ann.expires_at).await,
        None => Err(SidecarError::Forbidden("not a device announcement token")),
    }
}
