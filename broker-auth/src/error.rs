//! The crate's one error type. Every variant has a stable machine code (see [`Error::code`]) so
//! adapters can map it to HTTP statuses, NATS callout error strings or log fields in one place.

use thiserror::Error as ThisError;

/// Everything that can go wrong in the decision core.
#[derive(Debug, ThisError)]
#[non_exhaustive]
pub enum Error {
    /// Input could not be decoded (base64, JSON, key bytes, ...).
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed (never contains secret material).
        detail: String,
    },
    /// A public key is not acceptable for the identity type or is cryptographically weak.
    #[error("unacceptable key: {0}")]
    BadKey(String),
    /// A signature did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// A token was rejected; the code says why.
    #[error("token rejected: {0}")]
    Token(crate::decision::DenyCode),
    /// A policy could not be loaded, compiled or evaluated.
    #[error("policy error: {0}")]
    Policy(String),
    /// A topic, filter or subject is not well-formed.
    #[error("invalid topic: {0}")]
    Topic(String),
    /// A NATS JWT could not be encoded, decoded or verified.
    #[error("nats jwt: {0}")]
    NatsJwt(String),
    /// Key generation or signing failed.
    #[error("crypto failure: {0}")]
    Crypto(String),
}

impl Error {
    /// A short, stable code for logs, metrics and error envelopes.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Malformed { .. } => "malformed",
            Error::BadKey(_) => "bad_key",
            Error::BadSignature => "bad_signature",
            Error::Token(c) => c.as_str(),
            Error::Policy(_) => "policy_error",
            Error::Topic(_) => "invalid_topic",
            Error::NatsJwt(_) => "nats_jwt",
            Error::Crypto(_) => "crypto",
        }
    }

    pub(crate) fn malformed(what: &'static str, detail: impl ToString) -> Self {
        Error::Malformed {
            what,
            detail: detail.to_string(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
