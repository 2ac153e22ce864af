//! Token signing keys at rest: generated on first start, private halves AES-256-GCM encrypted
//! under a master key (from configuration, or a 0600 `master.key` file in the data directory),
//! with a random 96-bit nonce per record and the key id as associated data (a ciphertext cannot be
//! moved to another record). Rotation adds a key; old keys keep verifying until every token they
//! signed has expired.

use std::path::Path;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use broker_auth::b64;
use broker_auth::secret::SecretBytes;
use broker_auth::token::{KeySet, TokenAlg, TokenKey};
use broker_auth_runtime::secret_file::{read_private, write_private};
use rand_core::{OsRng, RngCore};

use crate::error::SidecarError;
use crate::store::{SigningKeyRecord, SigningKeyStore};

/// The key that encrypts signing keys. Never logged.
#[derive(Clone)]
pub struct MasterKey(SecretBytes);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

const MASTER_FILE: &str = "master.key";

impl MasterKey {
    /// From base64 of exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<MasterKey, SidecarError> {
        let bytes = b64::decode_any("master key", s)
            .map_err(|_| SidecarError::config("KEY_ENCRYPTION_KEY must be base64 of 32 bytes"))?;
        if bytes.len() != 32 {
            return Err(SidecarError::config(
                "KEY_ENCRYPTION_KEY must be base64 of 32 bytes",
            ));
        }
        Ok(MasterKey(SecretBytes::new(bytes)))
    }

    /// Read `DIR/master.key`, creating it (mode 0600) on first start. A file that group or others
    /// can read is refused: it protects every signing key.
    pub fn load_or_create(data_dir: &Path) -> Result<MasterKey, SidecarError> {
        let path = data_dir.join(MASTER_FILE);
        let file_error = |e| SidecarError::config_from("", e);
        match read_private(&path) {
            Ok(text) => Self::from_base64(&text).map_err(|_| {
                SidecarError::config(format!("{}: is not base64 of 32 bytes", path.display()))
            }),
            Err(e) if e.is_missing() => {
                let mut bytes = vec![0u8; 32];
                OsRng.fill_bytes(&mut bytes);
                write_private(&path, b64::std_encode(&bytes).as_bytes()).map_err(file_error)?;
                Ok(MasterKey(SecretBytes::new(bytes)))
            }
            Err(e) => Err(file_error(e)),
        }
    }

    fn cipher(&self) -> Result<Aes256Gcm, SidecarError> {
        Aes256Gcm::new_from_slice(self.0.expose())
            .map_err(|_| SidecarError::internal("master key length"))
    }

    /// Encrypt `plaintext` bound to `aad`; returns (nonce, ciphertext) as base64url.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<(String, String), SidecarError> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher()?
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SidecarError::internal("encryption failed"))?;
        Ok((b64::url_encode(&nonce), b64::url_encode(&ct)))
    }

    /// Decrypt what [`MasterKey::seal`] produced. A wrong key or tampered record is an error.
    pub fn open(
        &self,
        aad: &[u8],
        nonce: &str,
        ciphertext: &str,
    ) -> Result<SecretBytes, SidecarError> {
        let bad = || {
            SidecarError::config(
                "a signing key cannot be decrypted: wrong master key or tampered store",
            )
        };
        let nonce = b64::url_decode_strict("nonce", nonce).map_err(|_| bad())?;
        let ct = b64::url_decode_strict("ciphertext", ciphertext).map_err(|_| bad())?;
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| bad())?;
        self.cipher()?
            .decrypt(&Nonce::from(nonce), Payload { msg: &ct, aad })
            .map(SecretBytes::new)
            .map_err(|_| bad())
    }
}

fn record_for(
    master: &MasterKey,
    key: &TokenKey,
    now: i64,
) -> Result<SigningKeyRecord, SidecarError> {
    let private = key
        .private_material()
        .ok_or_else(|| SidecarError::internal("generated key has no private half"))?;
    let (nonce, ciphertext) = master.seal(key.kid().as_bytes(), private.expose())?;
    Ok(SigningKeyRecord {
        kid: key.kid().to_owned(),
        alg: key.alg(),
        created_at: now,
        retired_at: None,
        nonce,
        ciphertext,
        public_jwk: key.public_jwk().cloned(),
    })
}

/// Load every signing key, generating the first one if there is none, and dropping keys retired
/// longer ago than `max_token_lifetime` (no token they signed can still be valid).
pub fn load_key_set(
    store: &dyn SigningKeyStore,
    master: &MasterKey,
    alg: TokenAlg,
    now: i64,
    max_token_lifetime: i64,
) -> Result<KeySet, SidecarError> {
    let mut records = store.signing_keys()?;
    records.retain(|r| {
        let expired = r.retired_at.is_some_and(|t| t + max_token_lifetime < now);
        if expired && let Err(e) = store.remove_signing_key(&r.kid) {
            // Left in the store, it is dropped again at the next load; never used to sign.
            tracing::warn!(error = %e, kid = %r.kid, "expired signing key not removed");
        }
        !expired
    });
    if records.is_empty() {
        let key = TokenKey::generate(alg, &mut OsRng)?;
        let rec = record_for(master, &key, now)?;
        store.put_signing_key(&rec)?;
        records.push(rec);
    }
    records.sort_by_key(|r| r.created_at);
    let keys = records
        .iter()
        .map(|r| {
            let secret = master.open(r.kid.as_bytes(), &r.nonce, &r.ciphertext)?;
            let key = TokenKey::from_pkcs8(r.alg, secret)?;
            if key.kid() != r.kid {
                return Err(SidecarError::config(format!(
                    "signing key {} does not match its id",
                    r.kid
                )));
            }
            backfill_public(store, r, &key);
            Ok(Arc::new(key))
        })
        .collect::<Result<Vec<_>, SidecarError>>()?;
    Ok(KeySet::new(keys))
}

/// A record written before records kept their public half gets it now, so processes without
/// the master key (a callout following the store) can verify with it. A failure is only logged:
/// this process signs and verifies either way, and the next load tries again.
fn backfill_public(store: &dyn SigningKeyStore, r: &SigningKeyRecord, key: &TokenKey) {
    if r.public_jwk.is_some() {
        return;
    }
    let rec = SigningKeyRecord {
        public_jwk: key.public_jwk().cloned(),
        ..r.clone()
    };
    if let Err(e) = store.put_signing_key(&rec) {
        tracing::warn!(error = %e, kid = %r.kid, "signing key's public half not recorded");
    }
}

/// Add the operator-configured HS256 keys of apps (`--app-hs256-secret`). They never sign
/// anything but their app's access tokens and never verify another app's (see
/// `TokenKey::hs256_for_app`); they are not stored, the configuration is their home.
pub fn with_app_keys(
    keys: KeySet,
    apps: &[crate::config::AppSecretSpec],
) -> Result<KeySet, SidecarError> {
    apps.iter().try_fold(keys, |ks, a| {
        let key = TokenKey::hs256_for_app(&a.app_id, a.secret.clone())?;
        Ok(ks.with_key(Arc::new(key)))
    })
}

/// Add a new signing key (it becomes the active one) and mark the others retired as of `now`.
pub fn rotate(
    store: &dyn SigningKeyStore,
    master: &MasterKey,
    alg: TokenAlg,
    now: i64,
) -> Result<String, SidecarError> {
    for mut r in store.signing_keys()? {
        if r.retired_at.is_none() {
            r.retired_at = Some(now);
            store.put_signing_key(&r)?;
        }
    }
    let key = TokenKey::generate(alg, &mut OsRng)?;
    // Strictly newer than every existing key, so ordering by creation picks it as active.
    let newest = store
        .signing_keys()?
        .iter()
        .map(|r| r.created_at)
        .max()
        .unwrap_or(now);
    let rec = record_for(master, &key, now.max(newest + 1))?;
    store.put_signing_key(&rec)?;
    Ok(rec.kid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    #[test]
    fn keys_round_trip_encrypted_and_refuse_a_wrong_master() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let master = MasterKey::load_or_create(dir.path()).unwrap();
        let ks = load_key_set(&store, &master, TokenAlg::EdDSA, 100, 1000).unwrap();
        let kid = ks.active().unwrap().kid().to_owned();
        // Same master: same key back.
        let again = load_key_set(&store, &master, TokenAlg::EdDSA, 100, 1000).unwrap();
        assert_eq!(again.active().unwrap().kid(), kid);
        // The stored record holds no PKCS#8 in clear.
        let rec = &store.signing_keys().unwrap()[0];
        let pkcs8 = ks
            .active()
            .unwrap()
            .private_material()
            .unwrap()
            .expose()
            .to_vec();
        assert!(!rec.ciphertext.contains(&b64::url_encode(&pkcs8)));
        // Another master cannot open it.
        let other = MasterKey::from_base64(&b64::std_encode(&[7u8; 32])).unwrap();
        assert!(load_key_set(&store, &other, TokenAlg::EdDSA, 100, 1000).is_err());
    }

    #[test]
    fn rotation_keeps_old_keys_until_their_tokens_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let master = MasterKey::load_or_create(dir.path()).unwrap();
        let first = load_key_set(&store, &master, TokenAlg::EdDSA, 100, 1000).unwrap();
        let old = first.active().unwrap().kid().to_owned();
        let new = rotate(&store, &master, TokenAlg::ES256, 200).unwrap();
        let ks = load_key_set(&store, &master, TokenAlg::EdDSA, 300, 1000).unwrap();
        assert_eq!(ks.active().unwrap().kid(), new);
        assert!(ks.get(&old).is_some());
        let later = load_key_set(&store, &master, TokenAlg::EdDSA, 1201, 1000).unwrap();
        assert!(
            later.get(&old).is_none(),
            "retired key dropped after the longest lifetime"
        );
    }

    #[test]
    fn master_key_file_is_0600_and_a_readable_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        MasterKey::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(MASTER_FILE);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(
            !format!(
                "{:?}",
                MasterKey::from_base64(&b64::std_encode(&[1u8; 32])).unwrap()
            )
            .contains("AQEB")
        );
    }
}
