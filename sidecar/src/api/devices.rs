//! Devices (Cryptid): announce, signed refresh, deregister; and the revocation feed. The rules
//! (the announce proof, replays, announcements as sessions) are in [`crate::domain::devices`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::extract::{bearer, json_body, limited, with_state};
use super::reject;
use crate::domain::{devices, revocations};
use crate::error::SidecarError;
use crate::state::State;
use crate::store::RevocationKind;

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

async fn announce(state: State, req: AnnounceRequest) -> Result<warp::reply::Response, Rejection> {
    let (ts, ts_text) = req.timestamp.value().map_err(reject)?;
    let announced = devices::announce(
        &state,
        devices::Announce {
            public_key: &req.public_key,
            timestamp: (ts, &ts_text),
            signature: &req.signature,
            ttl_seconds: req.ttl_seconds,
        },
    )
    .await
    .map_err(reject)?;
    Ok(warp::reply::json(&AnnounceResponse {
        device_address: announced.device_id,
        access_token: announced.access_token,
        refresh_token: announced.refresh_token,
        expires_at: announced.expires_at,
        announcement_expires_at: announced.announcement_expires_at,
    })
    .into_response())
}

async fn refresh(state: State, req: RefreshRequest) -> Result<warp::reply::Response, Rejection> {
    let (access_token, expires_at) =
        devices::refresh(&state, &req.refresh_token, &req.device_signature).map_err(reject)?;
    Ok(warp::reply::json(&RefreshResponse {
        access_token,
        expires_at,
    })
    .into_response())
}

async fn deregister(
    state: State,
    bearer: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    devices::deregister(&state, bearer.as_deref())
        .await
        .map_err(reject)?;
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
    let (entries, next) =
        revocations::feed(&state, bearer.as_deref(), q.since, q.limit).map_err(reject)?;
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
        .and(crate::api::extract::get())
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
