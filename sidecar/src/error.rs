//! The sidecar's one error type. HTTP mapping joins it with the REST service; for now it maps
//! to process exit codes.

use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SidecarError {
    /// A policy failed to load, compile, evaluate or pass its tests.
    #[error("{0}")]
    Policy(String),
    /// Bad command-line input (unreadable or malformed files).
    #[error("{0}")]
    Input(String),
}

impl SidecarError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SidecarError::Policy(_) => 1,
            SidecarError::Input(_) => 2,
        }
    }
}

impl From<broker_auth::Error> for SidecarError {
    fn from(e: broker_auth::Error) -> Self {
        SidecarError::Policy(e.to_string())
    }
}
