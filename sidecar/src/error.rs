//! The sidecar's one error type, mapped to HTTP in one place (`api::error::reply_for`) and to
//! process exit codes here. 5xx bodies are generic; the cause goes to the log.
//!
//! Where an error wraps another (store, policy, crypto, I/O, NATS, HTTP), the other is kept as
//! the typed [`std::error::Error::source`], never flattened into a string. The messages stay what
//! clients and operators have always read: `context: cause` (or the cause alone, where there
//! is no context), so the cause's text is part of the message and its value is the source.

use std::fmt;

use broker_auth::DenyCode;
use thiserror::Error;

use crate::store::StoreError;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SidecarError {
    // --- request errors (4xx) ---
    /// Malformed, wrong-type, non-UTF-8 or otherwise invalid input, in our own words.
    #[error("{0}")]
    Validation(String),
    /// Input the core refused to decode or accept (a key, a base64 field, a topic), in its words.
    #[error(transparent)]
    Malformed(broker_auth::Error),
    /// Body over the limit.
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(u64),
    /// The body did not arrive within HTTP_BODY_TIMEOUT of the request's head.
    #[error("request body not received in time")]
    RequestTimeout,
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
    #[error("upstream login failed: {}", Because(.context, .source))]
    UpstreamLogin {
        context: String,
        #[source]
        source: Option<Cause>,
    },
    /// Wrong content type.
    #[error("unsupported media type: send application/json")]
    UnsupportedMediaType,
    /// The deploy gate refused a policy bundle: where, and which tests failed (422).
    #[error("{}", .0.message)]
    PolicyInvalid(Box<broker_auth::policy::bundle::Refusal>),

    // --- server-side errors (5xx or start-up) ---
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A policy failed to load, compile, evaluate or pass its tests.
    #[error("{}", Because(.context, .source))]
    Policy {
        context: String,
        #[source]
        source: Option<Cause>,
    },
    /// Bad command-line or configuration input (or a file it names that cannot be used).
    #[error("{}", Because(.context, .source))]
    Config {
        context: String,
        #[source]
        source: Option<Cause>,
    },
    /// A dependency (nats-server, an OpenID provider) is not reachable right now.
    #[error("{}", Because(.context, .source))]
    Unavailable {
        context: String,
        #[source]
        source: Option<Cause>,
    },
    /// Anything else that is our fault.
    #[error("internal error: {}", Because(.context, .source))]
    Internal {
        context: String,
        #[source]
        source: Option<Cause>,
    },
}

/// The typed cause an error carries.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `context: cause`, `context` or `cause`: how a wrapping error reads.
struct Because<'a>(&'a String, &'a Option<Cause>);

impl fmt::Display for Because<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.is_empty(), self.1) {
            (_, None) => f.write_str(self.0),
            (true, Some(c)) => write!(f, "{c}"),
            (false, Some(c)) => write!(f, "{}: {c}", self.0),
        }
    }
}

/// Constructors of the wrapping variants: `x(context)` for our own words, `x_from(context, e)`
/// to keep `e` as the source (an empty context reads as the cause alone).
macro_rules! wrapping {
    ($($plain:ident, $from:ident => $variant:ident;)*) => {
        impl SidecarError {
            $(
                pub fn $plain(context: impl Into<String>) -> SidecarError {
                    SidecarError::$variant { context: context.into(), source: None }
                }

                pub fn $from(context: impl Into<String>, source: impl Into<Cause>) -> SidecarError {
                    SidecarError::$variant { context: context.into(), source: Some(source.into()) }
                }
            )*
        }
    };
}

wrapping! {
    upstream_login, upstream_login_from => UpstreamLogin;
    policy, policy_from => Policy;
    config, config_from => Config;
    unavailable, unavailable_from => Unavailable;
    internal, internal_from => Internal;
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
            SidecarError::Policy { .. } => 1,
            _ => 2,
        }
    }
}

impl From<broker_auth::Error> for SidecarError {
    fn from(e: broker_auth::Error) -> Self {
        match e {
            // The core's error is the whole message (`policy error: file:line:col: ...`) and the
            // source, regorus's own error below it.
            broker_auth::Error::Policy { .. } => SidecarError::policy_from("", e),
            broker_auth::Error::Malformed { .. }
            | broker_auth::Error::BadKey(_)
            | broker_auth::Error::Topic(_) => SidecarError::Malformed(e),
            broker_auth::Error::BadSignature => SidecarError::InvalidSignature,
            other => SidecarError::internal_from("", other),
        }
    }
}

impl warp::reject::Reject for SidecarError {}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn wrapping_errors_read_as_before_and_keep_their_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = SidecarError::config_from("/etc/x", io);
        assert_eq!(e.to_string(), "/etc/x: no such file");
        let cause = e
            .source()
            .unwrap()
            .downcast_ref::<std::io::Error>()
            .unwrap();
        assert_eq!(cause.kind(), std::io::ErrorKind::NotFound);
        let bare = SidecarError::internal_from("", std::fmt::Error);
        assert_eq!(
            bare.to_string(),
            "internal error: an error occurred when formatting an argument"
        );
        assert!(SidecarError::config("plain").source().is_none());
        let core = broker_auth::Error::BadKey("weak".into());
        let e = SidecarError::from(core);
        assert!(matches!(e, SidecarError::Malformed(_)));
        assert_eq!(e.to_string(), "unacceptable key: weak");
    }
}
