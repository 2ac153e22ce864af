//! Revocation: what stops a token before it expires. Each revocation takes effect here at once
//! (the live revocation set, which cuts live MQTT and NATS connections), is appended to the
//! store's feed for every follower, and is durable before the caller answers.

use super::{callers, tokens};
use crate::error::SidecarError;
use crate::state::AppState;
use crate::store::{IdentityRecord, RevocationKind, RevocationRecord, RevocationStore};

/// Put `rec` into force in this process (cutting the live connections it ends).
pub fn apply(
    auth: &broker_auth_runtime::LiveAuth,
    rec: &RevocationRecord,
) -> Result<(), SidecarError> {
    auth.apply_revocation(rec).map_err(|_| {
        SidecarError::internal("an identity change must carry the identity's attributes")
    })
}

async fn record(state: &AppState, rec: RevocationRecord) -> Result<(), SidecarError> {
    apply(&state.auth, &rec)?;
    let store: &dyn RevocationStore = state.store.as_ref();
    store.append_revocation(&rec)?;
    store.flush().await?;
    state.metrics.revocations.inc();
    Ok(())
}

/// Revoke a session: every token with this `sid` stops working, here at once.
pub async fn revoke_session(state: &AppState, sid: &str, until: i64) -> Result<(), SidecarError> {
    record(
        state,
        RevocationRecord {
            kind: RevocationKind::Session,
            id: sid.to_owned(),
            at: state.now(),
            until,
            attrs: None,
        },
    )
    .await
}

/// `identity` changed (its record or its roles): tokens issued before now are read with its
/// current attributes from now on, here and on every follower of the revocation feed, and
/// live connections whose grants that narrows are cut.
pub async fn identity_changed(
    state: &AppState,
    identity: &IdentityRecord,
) -> Result<(), SidecarError> {
    let now = state.now();
    let attrs = tokens::attrs_of(state.store.as_ref(), identity)?;
    record(
        state,
        RevocationRecord {
            kind: RevocationKind::Identity,
            id: identity.id.clone(),
            at: now,
            until: now + state.config.max_token_lifetime(),
            attrs: Some(attrs),
        },
    )
    .await
}

/// Revoke every token of an identity issued up to now.
pub async fn revoke_subject(state: &AppState, sub: &str) -> Result<(), SidecarError> {
    let now = state.now();
    record(
        state,
        RevocationRecord {
            kind: RevocationKind::Subject,
            id: sub.to_owned(),
            at: now,
            until: now + state.config.max_token_lifetime(),
            attrs: None,
        },
    )
    .await
}

/// A page of the feed (admins only): entries after `since`, and the `since` of the next page.
pub fn feed(
    state: &AppState,
    bearer: Option<&str>,
    since: Option<u64>,
    limit: Option<usize>,
) -> Result<(Vec<(u64, RevocationRecord)>, u64), SidecarError> {
    callers::require_admin(state, bearer)?;
    let since = since.unwrap_or(0);
    let limit = limit.unwrap_or(1000).clamp(1, 10_000);
    let entries = state.store.revocations_since(since, limit)?;
    let next = entries.last().map(|(s, _)| *s).unwrap_or(since);
    Ok((entries, next))
}
