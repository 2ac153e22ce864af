//! The shared store as more than one process reads it: the names of its buckets and keys, and
//! the records that cross a process boundary (the sidecar writes them; a standalone callout
//! following the store reads them). Types, names and the record encoding only: opening the
//! store, and every record no other process reads, belong to the sidecar.
//!
//! Layout, with `P` the store prefix (`--store-prefix`): bucket `P_state` (long-lived records,
//! keyed `<kind>.<id>`), bucket `P_ephemeral`, bucket `P_codes`, and the stream `P_revocations`
//! on subject `P.revocations`, whose sequence numbers are the revocation feed's.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::revocation::IdentityAttrs;
use crate::token::TokenAlg;

/// The bucket of long-lived records.
pub fn state_bucket(prefix: &str) -> String {
    format!("{prefix}_state")
}

/// The stream of the revocation feed.
pub fn revocation_stream(prefix: &str) -> String {
    format!("{prefix}_revocations")
}

/// The subject revocations are published on.
pub fn revocation_subject(prefix: &str) -> String {
    format!("{prefix}.revocations")
}

/// The key (in the state bucket) holding the whole live policy version.
pub const POLICY_LIVE: &str = "policy.live";
/// The key filter of the signing keys (`sigkey.<kid>`) in the state bucket.
pub const SIGNING_KEYS: &str = "sigkey.>";

/// The record format version: the first byte of every record, JSON after it. A record written
/// by a newer format is an error here, never a guess.
const VERSION: u8 = 1;

/// Why a record's bytes could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Not the JSON of the expected record.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Written by another format version.
    #[error("unsupported record version {0}")]
    Version(u8),
    /// No bytes at all.
    #[error("empty record")]
    Empty,
}

/// A record as stored: the version byte, then JSON.
pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, RecordError> {
    let mut out = vec![VERSION];
    serde_json::to_writer(&mut out, v)?;
    Ok(out)
}

/// A record from its stored bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecordError> {
    match bytes.split_first() {
        Some((&VERSION, body)) => Ok(serde_json::from_slice(body)?),
        Some((v, _)) => Err(RecordError::Version(*v)),
        None => Err(RecordError::Empty),
    }
}

/// What a revocation-feed entry revokes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationKind {
    /// A session (`sid`): announcement, login session.
    Session,
    /// Every token of an identity issued up to `at`.
    Subject,
    /// The identity's attributes changed at `at`; `attrs` are what they are since. Tokens issued
    /// before are read with them (not revoked).
    Identity,
}

/// One entry of the revocation feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecord {
    /// What is revoked.
    pub kind: RevocationKind,
    /// The session or identity id.
    pub id: String,
    /// Unix seconds of the revocation.
    pub at: i64,
    /// After this instant no token it could match is alive.
    pub until: i64,
    /// `Identity` entries: the identity's attributes from `at` on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<IdentityAttrs>,
}

/// A token signing key; the private half is AES-256-GCM encrypted under the master key, the
/// public half is in the clear so a process without the master key can verify.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    /// The key id (`kid`).
    pub kid: String,
    /// Its algorithm.
    pub alg: TokenAlg,
    /// Unix seconds.
    pub created_at: i64,
    /// When a rotation retired it (it verifies, no longer signs).
    #[serde(default)]
    pub retired_at: Option<i64>,
    /// base64url nonce (96 bits).
    pub nonce: String,
    /// base64url ciphertext of the PKCS#8 DER private key (with the GCM tag).
    pub ciphertext: String,
    /// The public JWK, as the JWKS serves it. Absent in records written before it was kept;
    /// such a key cannot be followed without the sidecar's JWKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_jwk: Option<serde_json::Value>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Where a policy version came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyOrigin {
    /// The `--policies` directory (its seed, or an edit there).
    Dir,
    /// `POST /policies`.
    Api,
    /// `POST /policies/rollback`.
    Rollback,
}

impl PolicyOrigin {
    /// The name used in metrics and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyOrigin::Dir => "dir",
            PolicyOrigin::Api => "api",
            PolicyOrigin::Rollback => "rollback",
        }
    }
}

/// One version of the policy: its metadata and its whole bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersionRecord {
    /// 1, 2, 3 …, assigned by the store.
    pub version: u64,
    /// The bundle's hash (`Bundle::hash`).
    pub hash: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Identity id, API key id, `dir` or `cli`.
    pub author: String,
    /// Where it came from.
    pub source: PolicyOrigin,
    /// The deploy message.
    pub message: String,
    /// File name → text (`*.rego`, `data.json`).
    pub files: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_byte_guards_the_format() {
        let b = encode(&vec![1, 2, 3]).unwrap();
        assert_eq!(b[0], 1);
        assert_eq!(decode::<Vec<i32>>(&b).unwrap(), vec![1, 2, 3]);
        let mut newer = b.clone();
        newer[0] = 2;
        assert!(matches!(
            decode::<Vec<i32>>(&newer),
            Err(RecordError::Version(2))
        ));
        assert!(matches!(decode::<Vec<i32>>(&[]), Err(RecordError::Empty)));
        assert!(matches!(
            decode::<Vec<i32>>(&[1, b'{']),
            Err(RecordError::Json(_))
        ));
    }

    #[test]
    fn a_signing_key_record_never_prints_its_ciphertext() {
        let r = SigningKeyRecord {
            kid: "k1".into(),
            alg: TokenAlg::EdDSA,
            created_at: 1,
            retired_at: None,
            nonce: "NONCE".into(),
            ciphertext: "SECRETCIPHERTEXT".into(),
            public_jwk: None,
        };
        let d = format!("{r:?}");
        assert!(
            d.contains("k1") && !d.contains("SECRET") && !d.contains("NONCE"),
            "{d}"
        );
    }
}
