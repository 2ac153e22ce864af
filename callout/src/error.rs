//! The callout's one error type. Denials are not errors (they are answers); these are the
//! failures to run at all, each keeping its cause.

type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CalloutError {
    /// Bad configuration (wrong key type, a missing flag, a malformed account map, ...).
    #[error("configuration: {0}")]
    Config(String),
    /// A seed file could not be used.
    #[error("configuration: {0}")]
    SecretFile(#[from] broker_auth_runtime::secret_file::SecretFileError),
    /// A NATS connection, subscription or request failed.
    #[error("nats: {what}: {source}")]
    Nats {
        what: &'static str,
        #[source]
        source: Cause,
    },
    /// nats-server did not answer in time.
    #[error("nats: no answer from the server")]
    NoAnswer,
    /// The policy directory could not be loaded.
    #[error("policy: {0}")]
    Policy(#[from] broker_auth_runtime::policy_dir::PolicyDirError),
    /// The sidecar (JWKS, revocation feed) could not be reached or answered wrongly.
    #[error("sidecar {what}: {source}")]
    Sidecar {
        what: &'static str,
        #[source]
        source: Cause,
    },
    /// The shared store (`--store nats`) could not be reached, or does not hold what a
    /// sidecar writes there.
    #[error("store at {url}: {what}")]
    Store { url: String, what: String },
}

impl CalloutError {
    /// `map_err` adapter for a NATS failure while doing `what`.
    pub fn nats<E: std::error::Error + Send + Sync + 'static>(
        what: &'static str,
    ) -> impl FnOnce(E) -> CalloutError {
        move |e| CalloutError::Nats {
            what,
            source: Box::new(e),
        }
    }

    /// `map_err` adapter for a sidecar failure while doing `what`.
    pub fn sidecar<E: std::error::Error + Send + Sync + 'static>(
        what: &'static str,
    ) -> impl FnOnce(E) -> CalloutError {
        move |e| CalloutError::Sidecar {
            what,
            source: Box::new(e),
        }
    }
}
