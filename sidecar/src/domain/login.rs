//! Key login (Novacore) and its sessions: a challenge bound to the key that asked, the signed
//! answer that opens a session, rotation of the session's refresh token, and logout.
//!
//! A challenge is consumed by the first verify that names it — valid or not — so it can be
//! neither replayed nor brute-forced.

use broker_auth::identity::PublicKey;
use broker_auth::token::Claims;

use super::sessions::{self, Exchanged, Opened};
use super::{callers, identities, revocations, tokens};
use crate::error::SidecarError;
use crate::state::{AppState, random_challenge};
use crate::store::{ChallengeRecord, DeviceStore, Durable};

/// How long a challenge can be answered.
pub const CHALLENGE_TTL: i64 = 300;

/// A challenge for the active identity of `public_key`; returns it and its expiry.
pub fn challenge(state: &AppState, public_key: &str) -> Result<(String, i64), SidecarError> {
    let key = PublicKey::decode(public_key)?;
    identities::signing_in(state.store.as_ref(), &key.canonical())?;
    let challenge = random_challenge();
    let expires_at = state.now() + CHALLENGE_TTL;
    let rec = ChallengeRecord {
        public_key: key.canonical(),
        expires_at,
    };
    state.store.put_challenge(&challenge, &rec)?;
    Ok((challenge, expires_at))
}

/// A key login that checked out: who signed in, and the session it opened.
pub struct LoggedIn {
    pub identity_id: String,
    pub session: Opened,
}

/// Answer a challenge: its signature by the key it was issued to opens a session.
pub async fn verify(
    state: &AppState,
    public_key: &str,
    signature: &str,
    challenge: &str,
) -> Result<LoggedIn, SidecarError> {
    if challenge.len() > 256 {
        return Err(SidecarError::ChallengeInvalid);
    }
    let store: &dyn DeviceStore = state.store.as_ref();
    // Consume first: whatever happens next, this challenge is spent.
    let taken = store.take_challenge(challenge)?;
    let key = PublicKey::decode(public_key)?;
    let ch = taken
        .filter(|ch| ch.expires_at >= state.now() && ch.public_key == key.canonical())
        .ok_or_else(|| {
            state.metrics.outcome("login", "challenge_invalid");
            SidecarError::ChallengeInvalid
        })?;
    if key.verify_b64(challenge.as_bytes(), signature).is_err() {
        state.metrics.outcome("login", "bad_signature");
        return Err(SidecarError::InvalidSignature);
    }
    let identity = identities::signing_in(state.store.as_ref(), &ch.public_key)?;
    let session = sessions::open_durable(state, &identity).await?;
    state.metrics.outcome("login", "ok");
    Ok(LoggedIn {
        identity_id: identity.id,
        session,
    })
}

/// Exchange a session's refresh token for the next one and a new access token. A used token
/// that comes back revokes its whole session.
pub async fn refresh(
    state: &AppState,
    token: &str,
) -> Result<(Claims, String, String), SidecarError> {
    match sessions::exchange(state.store.as_ref(), token, None, state.now()) {
        Ok(Exchanged::Rotated { family, token }) => {
            let identity = identities::active(state.store.as_ref(), &family.user_id)?
                .ok_or(SidecarError::InvalidRefreshToken)?;
            let (claims, access_token) = tokens::session_access(state, &identity, &family.id)?;
            state.store.flush().await?;
            state.metrics.outcome("session_refresh", "ok");
            Ok((claims, access_token, token))
        }
        Ok(Exchanged::Reused { family }) => {
            tracing::warn!(session = %family.id, user = %family.user_id, "refresh token reuse; session revoked");
            state.metrics.outcome("session_refresh", "reused");
            revocations::revoke_session(state, &family.id, family.expires_at).await?;
            Err(SidecarError::RefreshTokenReused)
        }
        Err(e) => {
            state.metrics.outcome("session_refresh", "invalid");
            Err(e)
        }
    }
}

/// End every session of the calling identity; their access tokens stop at once.
pub async fn logout(state: &AppState, bearer: Option<&str>) -> Result<(), SidecarError> {
    let (_, identity) = callers::require_identity(state, bearer, "an API key has no session")?;
    let ended = sessions::end_all(state.store.as_ref(), &identity.id, state.now())?;
    for f in &ended {
        revocations::revoke_session(state, &f.id, f.expires_at).await?;
    }
    let store: &dyn Durable = state.store.as_ref();
    store.flush().await?;
    Ok(())
}
