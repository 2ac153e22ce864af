//! The callout's one error type. Denials are not errors (they are answers); these are the
//! failures to run at all.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CalloutError {
    /// Bad configuration (unreadable seed file, wrong key type, ...).
    #[error("configuration: {0}")]
    Config(String),
    /// NATS connection or subscription failed.
    #[error("nats: {0}")]
    Nats(String),
    /// A policy could not be loaded.
    #[error("policy: {0}")]
    Policy(String),
}
