//! The sidecar's one error type, mapped to HTTP in one place (`api::error::reply_for`) and to
//! process exit codes here. 5xx bodies are generic; the cause goes to the log.

use broker_auth::DenyCode;
use thiserror::Error;

use crate::store::StoreError;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SidecarError {
    // --- request errors (4xx) ---
    /// Malformed, wrong-type, non-UTF-8 or otherwise invalid input.
    #[error("{0}")]
    Validation(String),
    /// Body over the limit.
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(u64),
    /// A signature did not verify (Cryptid 4001).
    #[error("signature verification failed")]
    InvalidSignature,
    /// A one-time proof (announce signature) was presented again.
    #[error("this signature was already used (replay)")]
    Replayed,
    /// Too many requests (Cryptid 4004).
    #[error("too many requests")]
    RateLimited { retry_after: u64 },
    /// Locked out after repeated violations.
    #[error("too many rate-limit violations; locked out")]
    LockedOut { retry_after: u64 },
    /// Permanently banned IP.
    #[error("this client is banned")]
    Banned,
    /// Refresh token unknown, expired, malformed or ended (Cryptid 4008).
    #[error("refresh token is invalid or expired")]
    InvalidRefreshToken,
    /// A used refresh token came back: its session was revoked.
    #[error("refresh token was already used; the session has been revoked")]
    RefreshTokenReused,
    /// A bearer token was refused.
    #[error("invalid token: {0}")]
    InvalidToken(DenyCode),
    /// No credentials where some are needed.
    #[error("authentication required")]
    Unauthorized,
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The challenge is unknown, used, expired or bound to another key.
    #[error("challenge is invalid, used or expired")]
    ChallengeInvalid,
    /// No identity has this key.
    #[error("no identity is registered with this public key")]
    UnknownIdentity,
    /// Not found.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Unique constraint.
    #[error("{0}")]
    Conflict(String),
    /// HTTP method not allowed on the path.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// An OAuth2 token or authorize error (RFC 6749 §5.2 codes: `invalid_request`,
    /// `invalid_client`, `invalid_grant`, ...), answered in RFC 6749's own format.
    #[error("{error}: {description}")]
    OAuth {
        error: &'static str,
        description: String,
    },
    /// An upstream OpenID login failed (state, provider answer, ID token).
    #[error("upstream login failed: {0}")]
    UpstreamLogin(String),
    /// Wrong content type.
    #[error("unsupported media type: send application/json")]
    UnsupportedMediaType,

    // --- server-side errors (5xx or start-up) ---
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A policy failed to load, compile, evaluate or pass its tests.
    #[error("{0}")]
    Policy(String),
    /// Bad command-line or configuration input.
    #[error("{0}")]
    Config(String),
    /// A dependency (nats-server) is not reachable right now.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else that is our fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SidecarError {
    /// An RFC 6749 error.
    pub fn oauth(error: &'static str, description: impl Into<String>) -> SidecarError {
        SidecarError::OAuth {
            error,
            description: description.into(),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            SidecarError::Policy(_) => 1,
            _ => 2,
        }
    }
}

impl From<broker_auth::Error> for SidecarError {
    fn from(e: broker_auth::Error) -> Self {
        match e {
            broker_auth::Error::Policy(m) => SidecarError::Policy(m),
            broker_auth::Error::Malformed { .. }
            | broker_auth::Error::BadKey(_)
            | broker_auth::Error::Topic(_) => SidecarError::Validation(e.to_string()),
            broker_auth::Error::BadSignature => SidecarError::InvalidSignature,
            other => SidecarError::Internal(other.to_string()),
        }
    }
}

impl warp::reject::Reject for SidecarError {}
