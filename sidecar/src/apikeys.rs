//! API keys: `ak_<id>_<secret><check>`.
//!
//! - `id`: 16 base32 characters (80 random bits), the store key.
//! - `secret`: 43 base64url characters (256 random bits); only its SHA-256 is stored. A fast
//!   hash is right here: with 256 bits of entropy there is nothing to brute-force, so a slow
//!   password hash would only cost latency on every request.
//! - `check`: 7 base32 characters of SHA-256 over the rest, so a mistyped key is refused without
//!   a store lookup.
//!
//! Comparison of the stored hash is constant-time.

use broker_auth::b64;
use broker_auth::identity::IdentityType;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{ApiKeyRecord, ApiKeyStore};

const PREFIX: &str = "ak_";
const ID_LEN: usize = 16;
const SECRET_LEN: usize = 43;
const CHECK_LEN: usize = 7;

/// Why a key was refused. Callers answer 401 for all of them; the variant goes to logs/metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyError {
    Malformed,
    BadChecksum,
    Unknown,
    Revoked,
    Expired,
    /// The store could not say (a shared store unreachable): the caller answers 503, not 401.
    StoreUnavailable,
}

impl ApiKeyError {
    /// Stable reason code for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyError::Malformed => "malformed",
            ApiKeyError::BadChecksum => "bad_checksum",
            ApiKeyError::Unknown => "unknown",
            ApiKeyError::Revoked => "revoked",
            ApiKeyError::Expired => "expired",
            ApiKeyError::StoreUnavailable => "store_unavailable",
        }
    }
}

/// A new key: the string shown once, and the record that is stored.
pub struct NewApiKey {
    pub key: String,
    pub record: ApiKeyRecord,
}

fn check_of(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    data_encoding::BASE32_NOPAD.encode(&digest[..4])
}

use crate::state::sha256_hex as hash_secret;

/// Make a key. `expires_in_days` must already be validated by the caller (1–365).
pub fn generate(
    name: &str,
    scopes: Vec<String>,
    identity_types: Vec<IdentityType>,
    app_id: Option<String>,
    expires_in_days: i64,
    now: i64,
) -> NewApiKey {
    let mut id = [0u8; 10];
    OsRng.fill_bytes(&mut id);
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let id = data_encoding::BASE32_NOPAD.encode(&id);
    let secret = b64::url_encode(&secret);
    let body = format!("{PREFIX}{id}_{secret}");
    let key = format!("{body}{}", check_of(&body));
    NewApiKey {
        record: ApiKeyRecord {
            id,
            name: name.to_owned(),
            app_id,
            scopes,
            identity_types,
            secret_hash: hash_secret(&secret),
            created_at: now,
            expires_at: now + expires_in_days * 86_400,
            revoked_at: None,
        },
        key,
    }
}

/// Split a key into (id, secret), checking shape and checksum only.
pub fn parse(key: &str) -> Result<(&str, &str), ApiKeyError> {
    let rest = key.strip_prefix(PREFIX).ok_or(ApiKeyError::Malformed)?;
    if rest.len() != ID_LEN + 1 + SECRET_LEN + CHECK_LEN || !rest.is_ascii() {
        return Err(ApiKeyError::Malformed);
    }
    let (id, tail) = rest.split_at(ID_LEN);
    let tail = tail.strip_prefix('_').ok_or(ApiKeyError::Malformed)?;
    let (secret, check) = tail.split_at(SECRET_LEN);
    let body = &key[..key.len() - CHECK_LEN];
    if check_of(body)
        .as_bytes()
        .ct_eq(check.as_bytes())
        .unwrap_u8()
        != 1
    {
        return Err(ApiKeyError::BadChecksum);
    }
    Ok((id, secret))
}

/// Verify a presented key against the store at time `now`.
pub fn verify(store: &dyn ApiKeyStore, key: &str, now: i64) -> Result<ApiKeyRecord, ApiKeyError> {
    let (id, secret) = parse(key)?;
    let rec = store
        .api_key(id)
        .map_err(|e| {
            tracing::warn!(error = %e, "API key lookup failed");
            match e {
                crate::store::StoreError::Unavailable(_) => ApiKeyError::StoreUnavailable,
                // Refused like an unknown key (401), but the store's failure is not lost.
                _ => ApiKeyError::Unknown,
            }
        })?
        .ok_or(ApiKeyError::Unknown)?;
    let presented = hash_secret(secret);
    if presented
        .as_bytes()
        .ct_eq(rec.secret_hash.as_bytes())
        .unwrap_u8()
        != 1
    {
        return Err(ApiKeyError::Unknown);
    }
    if rec.revoked_at.is_some() {
        return Err(ApiKeyError::Revoked);
    }
    if now >= rec.expires_at {
        return Err(ApiKeyError::Expired);
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    #[test]
    fn keys_verify_and_typos_are_caught_by_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let k = generate("ops", vec!["admin".into()], vec![], None, 30, 1000);
        store.put_api_key(&k.record).unwrap();
        assert!(k.key.starts_with("ak_"));
        assert_eq!(verify(&store, &k.key, 1001).unwrap().id, k.record.id);
        assert!(!format!("{:?}", k.record).contains(&k.record.secret_hash));

        // One character changed in the secret: the checksum refuses it without a lookup.
        let mut typo: Vec<char> = k.key.chars().collect();
        let i = 3 + ID_LEN + 5;
        typo[i] = if typo[i] == 'A' { 'B' } else { 'A' };
        let typo: String = typo.into_iter().collect();
        assert_eq!(parse(&typo), Err(ApiKeyError::BadChecksum));

        assert_eq!(
            verify(&store, &k.key, 1000 + 30 * 86_400),
            Err(ApiKeyError::Expired)
        );
        let mut revoked = k.record.clone();
        revoked.revoked_at = Some(1002);
        store.put_api_key(&revoked).unwrap();
        assert_eq!(verify(&store, &k.key, 1003), Err(ApiKeyError::Revoked));
        for bad in [
            "",
            "ak_",
            "ak_short",
            "xx_",
            &k.key[..k.key.len() - 1],
            &format!("{}é", &k.key[..k.key.len() - 2]),
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // A well-formed key for an id that does not exist.
        let other = generate("x", vec![], vec![], None, 1, 0);
        assert_eq!(verify(&store, &other.key, 1), Err(ApiKeyError::Unknown));
    }
}
