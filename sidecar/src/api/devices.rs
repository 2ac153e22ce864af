//! Devices (Cryptid): announce, signed refresh, deregister; and the revocation feed.
//!
//! Announce proves key possession with `sign(sk, "announce:" + public_key + ":" + timestamp)`,
//! the timestamp within ±60 s, each signature usable once. Every announcement is a session: its
//! id is the `sid` of the tokens issued under it, so ending it (re-announce, deregister) stops
//! them everywhere.

use broker_auth::identity::{IdentityType, PublicKey};
use broker_auth::token::TokenUse;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::extract::{bearer, json_body, limited, with_state};
use super::reject;
use crate::error::SidecarError;
use crate::state::{State, random_id};
use crate::store::{AnnouncementRecord, IdentityRecord, RevocationKind};

/// Accepted clock skew of an announce timestamp.
pub const ANNOUNCE_WINDOW: i64 = 60;

/// A Unix timestamp sent as a JSON number or a numeric string.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Timestamp {
    Number(i64),
    Text(String),
}

impl Timestamp {
    fn value(&self) -> Result<(i64, String), SidecarError> {
        match self {
            Timestamp::Number(n) => Ok((*n, n.to_string())),
            Timestamp::Text(s) => s
                .parse::<i64>()
                .map(|n| (n, s.clone()))
                .map_err(|_| SidecarError::Validation("timestamp must be Unix seconds".into())),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnounceRequest {
    pub public_key: String,
    #[schema(value_type = i64)]
    pub timestamp: Timestamp,
    /// Signature over `announce:<public_key>:<timestamp>` (the strings exactly as sent).
    pub signature: String,
    /// Announcement lifetime, 60 s up to the configured maximum (default 30 days).
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnnounceResponse {
    pub device_address: String,
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds.
    pub announcement_expires_at: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
    /// Signature over the refresh token string with the device's key.
    pub device_signature: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefreshResponse {
    pub access_token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

async fn device_for_key(state: &State, key: &PublicKey) -> Result<IdentityRecord, SidecarError> {
    if let Some(rec) = state.store.identity_by_key(&key.canonical())? {
        if rec.kind != IdentityType::Device {
            return Err(SidecarError::Validation(
                "this key belongs to an identity that is not a device".into(),
            ));
        }
        if rec.disabled_at.is_some() {
            return Err(SidecarError::Forbidden("identity is disabled"));
        }
        return Ok(rec);
    }
    if !state.config.open_announce {
        return Err(SidecarError::UnknownIdentity);
    }
    let rec = IdentityRecord {
        id: IdentityType::Device.new_id(&mut OsRng),
        kind: IdentityType::Device,
        key_algorithm: Some(key.algorithm()),
        public_key: Some(key.canonical()),
        upstream: None,
        name: None,
        tenant: None,
        scopes: vec![],
        groups: vec![],
        metadata: Default::default(),
        created_at: state.now(),
        disabled_at: None,
    };
    state.insert_identity_or_winner(rec)
}

async fn announce(state: State, req: AnnounceRequest) -> Result<warp::reply::Response, Rejection> {
    let now = state.now();
    let (ts, ts_text) = req.timestamp.value().map_err(reject)?;
    // abs_diff: a timestamp near i64::MIN must not overflow into "recent".
    if ts.abs_diff(now) > ANNOUNCE_WINDOW.unsigned_abs() {
        return Err(reject(SidecarError::Validation(format!(
            "timestamp must be within {ANNOUNCE_WINDOW} s of the server clock"
        ))));
    }
    let max_ttl = state.config.announcement_ttl;
    let ttl = req.ttl_seconds.unwrap_or(max_ttl);
    if !(60..=max_ttl).contains(&ttl) {
        return Err(reject(SidecarError::Validation(format!(
            "ttl_seconds must be between 60 and {max_ttl}"
        ))));
    }
    let key = PublicKey::decode_for(IdentityType::Device, &req.public_key)
        .map_err(|e| reject(e.into()))?;
    let message = format!("announce:{}:{ts_text}", req.public_key);
    let sig =
        broker_auth::b64::decode_any("signature", &req.signature).map_err(|e| reject(e.into()))?;
    if key.verify(message.as_bytes(), &sig).is_err() {
        state.metrics.outcome("announce", "bad_signature");
        return Err(reject(SidecarError::InvalidSignature));
    }
    let device = device_for_key(&state, &key).await.map_err(reject)?;
    // Checked after the identity, so an announce refused for another reason does not burn the
    // proof.
    // Replay: the same proof inside the window is refused. Verification is strict (no malleable
    // twins) and DER and r||s spellings of an ES256 signature are one canonical form here.
    let canonical = key
        .canonical_signature(&sig)
        .map_err(|e| reject(e.into()))?;
    let digest = Sha256::digest(&canonical);
    if !state
        .store
        .remember_signature(&digest, ts + 2 * ANNOUNCE_WINDOW)
        .map_err(|e| reject(e.into()))?
    {
        state.metrics.outcome("announce", "replay");
        return Err(reject(SidecarError::Replayed));
    }
    let ann = AnnouncementRecord {
        id: random_id("ann-"),
        device: device.id.clone(),
        created_at: now,
        expires_at: now + ttl,
        ended_at: None,
    };
    let previous = state
        .store
        .open_announcement(&ann)
        .map_err(|e| reject(e.into()))?;
    if let Some(prev) = previous.filter(|p| p.ended_at.is_none()) {
        state
            .revoke_session(&prev.id, prev.expires_at)
            .await
            .map_err(reject)?;
    }
    let access_ttl = state.config.device_access_ttl.min(ttl);
    let access = state.claims_for(&device, access_ttl, TokenUse::Access, &ann.id);
    let refresh = state.claims_for(&device, ttl, TokenUse::Refresh, &ann.id);
    let body = AnnounceResponse {
        device_address: device.id.clone(),
        access_token: state.sign(&access).map_err(reject)?,
        refresh_token: state.sign(&refresh).map_err(reject)?,
        expires_at: access.exp,
        announcement_expires_at: ann.expires_at,
    };
    state.store.flush().await.map_err(|e| reject(e.into()))?;
    state.metrics.outcome("announce", "ok");
    Ok(warp::reply::json(&body).into_response())
}

async fn refresh(state: State, req: RefreshRequest) -> Result<warp::reply::Response, Rejection> {
    let invalid = |state: &State, why: &'static str| {
        state.metrics.outcome("refresh", why);
        reject(SidecarError::InvalidRefreshToken)
    };
    let claims = state
        .verify(&req.refresh_token, TokenUse::Refresh)
        .map_err(|_| invalid(&state, "invalid_token"))?;
    let sid = claims
        .sid
        .clone()
        .ok_or_else(|| invalid(&state, "no_session"))?;
    let ann = state
        .store
        .announcement(&sid)
        .map_err(|e| reject(e.into()))?
        .filter(|a| a.ended_at.is_none() && a.expires_at > state.now() && a.device == claims.sub)
        .ok_or_else(|| invalid(&state, "announcement_ended"))?;
    let device = state
        .store
        .identity(&claims.sub)
        .map_err(|e| reject(e.into()))?
        .filter(|d| d.disabled_at.is_none())
        .ok_or_else(|| invalid(&state, "unknown_device"))?;
    let key = PublicKey::from_bytes(
        &broker_auth::b64::url_decode_strict(
            "key",
            device.public_key.as_deref().unwrap_or_default(),
        )
        .map_err(|e| reject(e.into()))?,
    )
    .map_err(|e| reject(e.into()))?;
    if key
        .verify_b64(req.refresh_token.as_bytes(), &req.device_signature)
        .is_err()
    {
        state.metrics.outcome("refresh", "bad_signature");
        return Err(reject(SidecarError::InvalidSignature));
    }
    let ttl = state
        .config
        .device_access_ttl
        .min(ann.expires_at - state.now());
    let access = state.claims_for(&device, ttl, TokenUse::Access, &ann.id);
    state.metrics.outcome("refresh", "ok");
    Ok(warp::reply::json(&RefreshResponse {
        access_token: state.sign(&access).map_err(reject)?,
        expires_at: access.exp,
    })
    .into_response())
}

async fn deregister(
    state: State,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    let token = bearer.ok_or_else(|| reject(SidecarError::Unauthorized))?;
    let claims = state
        .verify(&token, TokenUse::Access)
        .map_err(|c| reject(SidecarError::InvalidToken(c)))?;
    let sid = claims
        .sid
        .ok_or_else(|| reject(SidecarError::Forbidden("not a device announcement token")))?;
    let now = state.now();
    match state
        .store
        .end_announcement(&claims.sub, &sid, now)
        .map_err(|e| reject(e.into()))?
    {
        Some(ann) => state
            .revoke_session(&ann.id, ann.expires_at)
            .await
            .map_err(reject)?,
        None => {
            return Err(reject(SidecarError::Forbidden(
                "not a device announcement token",
            )));
        }
    }
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    pub since: Option<u64>,
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedEntry {
    pub seq: u64,
    /// `session` (a `sid`), `subject` (every token of an identity issued up to `at`) or
    /// `identity` (the identity's attributes since `at`, in `attrs`: tokens issued up to `at`
    /// are read with them).
    pub kind: String,
    pub id: String,
    pub at: i64,
    pub until: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub attrs: Option<broker_auth::revocation::IdentityAttrs>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Feed {
    pub revocations: Vec<FeedEntry>,
    /// Pass as `since` next time.
    pub next: u64,
}

async fn feed(
    state: State,
    q: FeedQuery,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    state.require_admin(bearer.as_deref()).map_err(reject)?;
    let since = q.since.unwrap_or(0);
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let entries = state
        .store
        .revocations_since(since, limit)
        .map_err(|e| reject(e.into()))?;
    let next = entries.last().map(|(s, _)| *s).unwrap_or(since);
    let revocations = entries
        .into_iter()
        .map(|(seq, r)| FeedEntry {
            seq,
            kind: match r.kind {
                RevocationKind::Session => "session".into(),
                RevocationKind::Subject => "subject".into(),
                RevocationKind::Identity => "identity".into(),
            },
            id: r.id,
            at: r.at,
            until: r.until,
            attrs: r.attrs,
        })
        .collect();
    Ok(warp::reply::json(&Feed { revocations, next }).into_response())
}

pub fn routes(state: State) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let announce_r = warp::path!("v1" / "announce")
        .and(warp::post())
        .and(limited(state.clone(), "POST /v1/announce"))
        .and(with_state(state.clone()))
        .and(json_body::<AnnounceRequest>())
        .and_then(announce);
    let deregister_r = warp::path!("v1" / "announce")
        .and(warp::delete())
        .and(limited(state.clone(), "DELETE /v1/announce"))
        .and(with_state(state.clone()))
        .and(bearer())
        .and_then(deregister);
    let refresh_r = warp::path!("v1" / "auth" / "refresh")
        .and(warp::post())
        .and(limited(state.clone(), "POST /v1/auth/refresh"))
        .and(with_state(state.clone()))
        .and(json_body::<RefreshRequest>())
        .and_then(refresh);
    let feed_r = warp::path!("v1" / "revocations")
        .and(warp::get())
        .and(with_state(state))
        .and(warp::query::<FeedQuery>())
        .and(bearer())
        .and_then(feed);
    announce_r
        .or(deregister_r)
        .unify()
        .or(refresh_r)
        .unify()
        .or(feed_r)
        .unify()
        .boxed()
}
