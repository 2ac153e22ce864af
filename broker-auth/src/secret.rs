//! Secret material as types: zeroized on drop, never printed.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Bytes that must never appear in logs or `Debug` output (private keys, seeds, shared secrets).
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wrap bytes; the caller's copy should be dropped or zeroized.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }

    /// Borrow the secret. Keep the borrow short.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes([REDACTED; {}])", self.0.len())
    }
}

/// A secret string (an nkey seed, for instance).
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wrap a string.
    pub fn new(s: String) -> Self {
        SecretString(s)
    }
    /// Borrow the secret.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Parsing never fails; it lets command-line parsers (clap) take secrets straight into this type.
impl std::str::FromStr for SecretString {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretString(s.to_owned()))
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let s = SecretBytes::new(b"hunter2-hunter2".to_vec());
        let d = format!("{s:?}");
        assert!(!d.contains("hunter2"), "{d}");
        let s = SecretString::new("SUAP277QP7U4".into());
        assert!(!format!("{s:?}").contains("SUAP"));
    }
}
