//! The crate's one error type. Every variant has a stable machine code (see [`Error::code`]) so
//! adapters can map it to HTTP statuses, NATS callout error strings or log fields in one place.
//!
//! Where an error comes from another (regorus, serde, a crypto or base64 library), that error
//! is kept as the typed [`std::error::Error::source`]. The message stays what people read —
//! for a policy, `file:line:col: what` first — so the cause's text is part of it too.

use thiserror::Error as ThisError;

/// What a variant keeps of the error it came from.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

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
        /// The decoder's own error, if any.
        #[source]
        source: Option<Cause>,
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
    #[error("policy error: {message}")]
    Policy {
        /// What failed, where (`file:line:col` first for Rego errors).
        message: String,
        /// regorus's (or serde's) own error, if any.
        #[source]
        source: Option<Cause>,
    },
    /// A topic, filter or subject is not well-formed.
    #[error("invalid topic: {0}")]
    Topic(String),
    /// A NATS JWT could not be encoded, decoded or verified.
    #[error("nats jwt: {message}")]
    NatsJwt {
        /// What failed.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Cause>,
    },
    /// Key generation or signing failed.
    #[error("crypto failure: {message}")]
    Crypto {
        /// What failed.
        message: String,
        /// The crypto library's error, if any.
        #[source]
        source: Option<Cause>,
    },
}

impl Error {
    /// A short, stable code for logs, metrics and error envelopes.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Malformed { .. } => "malformed",
            Error::BadKey(_) => "bad_key",
            Error::BadSignature => "bad_signature",
            Error::Token(c) => c.as_str(),
            Error::Policy { .. } => "policy_error",
            Error::Topic(_) => "invalid_topic",
            Error::NatsJwt { .. } => "nats_jwt",
            Error::Crypto { .. } => "crypto",
        }
    }

    /// Undecodable input, in our words.
    pub(crate) fn malformed(what: &'static str, detail: impl ToString) -> Self {
        Error::Malformed {
            what,
            detail: detail.to_string(),
            source: None,
        }
    }

    /// Undecodable input: `context: cause`, keeping the decoder's error.
    pub(crate) fn malformed_from<E>(what: &'static str, context: &str, e: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Error::Malformed {
            what,
            detail: format!("{context}: {e}"),
            source: Some(Box::new(e)),
        }
    }

    /// A policy failure in our words.
    pub fn policy(message: impl Into<String>) -> Self {
        Error::Policy {
            message: message.into(),
            source: None,
        }
    }

    /// A policy failure described by `message`, keeping the error it came from.
    pub fn policy_from(message: impl Into<String>, source: impl Into<Cause>) -> Self {
        Error::Policy {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A NATS JWT failure in our words.
    pub(crate) fn nats_jwt(message: impl Into<String>) -> Self {
        Error::NatsJwt {
            message: message.into(),
            source: None,
        }
    }

    /// A NATS JWT failure: `context: cause` (the cause alone without context), keeping it.
    pub(crate) fn nats_jwt_from<E>(context: &str, e: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Error::NatsJwt {
            message: with_context(context, &e),
            source: Some(Box::new(e)),
        }
    }

    /// A key or signing failure in our words.
    pub(crate) fn crypto(message: impl Into<String>) -> Self {
        Error::Crypto {
            message: message.into(),
            source: None,
        }
    }

    /// A key or signing failure: `context: cause`, keeping the library's error.
    pub(crate) fn crypto_from<E>(context: &str, e: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Error::Crypto {
            message: with_context(context, &e),
            source: Some(Box::new(e)),
        }
    }
}

fn with_context(context: &str, e: &dyn std::fmt::Display) -> String {
    if context.is_empty() {
        e.to_string()
    } else {
        format!("{context}: {e}")
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn wrapped_errors_keep_their_cause_and_their_message() {
        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let text = json.to_string();
        let e = Error::nats_jwt_from("bad claims", json);
        assert_eq!(e.to_string(), format!("nats jwt: bad claims: {text}"));
        assert!(e.source().is_some_and(|s| s.is::<serde_json::Error>()));
        assert!(Error::policy("no files").source().is_none());
        assert_eq!(Error::policy("x").code(), "policy_error");
    }
}
