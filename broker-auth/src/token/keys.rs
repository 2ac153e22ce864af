//! The signing key set: keys parsed once, rotation, JWKS export and import.

use std::sync::Arc;

use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::pkcs8::DecodePrivateKey as _;
use rand_core::CryptoRngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;
use crate::b64;
use crate::error::{Error, Result};
use crate::secret::SecretBytes;

/// A public key parsed once, so verification does no key decoding.
pub(super) enum VerifyingKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
    Hmac(DecodingKey),
}

/// A private key parsed once, so signing does no key decoding either (jsonwebtoken parses the
/// PKCS#8 document and re-derives the public key on every `encode`).
pub(super) enum SigningKind {
    Ed25519(Box<ed25519_dalek::SigningKey>),
    P256(Box<p256::ecdsa::SigningKey>),
    Hmac(EncodingKey),
}

/// One key of the key set.
pub struct TokenKey {
    kid: String,
    alg: TokenAlg,
    pub(super) verifying: VerifyingKey,
    signing: Option<SigningKind>,
    private: Option<SecretBytes>,
    jwk: Option<Value>,
    /// An app's HS256 key speaks only for that app: whoever holds the shared secret can mint
    /// tokens, so a token it signed must name this tenant or it is refused.
    pub(super) tenant: Option<String>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("can_sign", &self.signing.is_some())
            .finish_non_exhaustive()
    }
}

fn thumbprint(canonical_json: &str) -> String {
    b64::url_encode(&Sha256::digest(canonical_json.as_bytes()))
}

impl TokenKey {
    /// Generate a new asymmetric key from the caller's `rng`.
    pub fn generate(alg: TokenAlg, rng: &mut impl CryptoRngCore) -> Result<TokenKey> {
        let pkcs8 = match alg {
            TokenAlg::EdDSA => ed25519_dalek::SigningKey::generate(rng)
                .to_pkcs8_der()
                .map_err(|e| Error::crypto_from("", e))?
                .as_bytes()
                .to_vec(),
            TokenAlg::ES256 => p256::ecdsa::SigningKey::random(rng)
                .to_pkcs8_der()
                .map_err(|e| Error::crypto_from("", e))?
                .as_bytes()
                .to_vec(),
            TokenAlg::HS256 => {
                return Err(Error::crypto("HS256 keys come from configuration"));
            }
        };
        Self::from_pkcs8(alg, SecretBytes::new(pkcs8))
    }

    /// Rebuild a signing key from its PKCS#8 DER private key (as stored, after decryption).
    pub fn from_pkcs8(alg: TokenAlg, pkcs8: SecretBytes) -> Result<TokenKey> {
        let bad = |e: &dyn std::fmt::Display| Error::BadKey(format!("private key: {e}"));
        let (verifying, jwk, kid) = match alg {
            TokenAlg::EdDSA => {
                let sk = ed25519_dalek::SigningKey::from_pkcs8_der(pkcs8.expose())
                    .map_err(|e| bad(&e))?;
                let x = b64::url_encode(sk.verifying_key().as_bytes());
                let kid = thumbprint(&format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#));
                let jwk =
                    json!({"kty":"OKP","crv":"Ed25519","x":x,"kid":kid,"alg":"EdDSA","use":"sig"});
                (VerifyingKey::Ed25519(sk.verifying_key()), jwk, kid)
            }
            TokenAlg::ES256 => {
                let sk =
                    p256::ecdsa::SigningKey::from_pkcs8_der(pkcs8.expose()).map_err(|e| bad(&e))?;
                let point = sk.verifying_key().to_encoded_point(false);
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    return Err(Error::BadKey("P-256 point has no coordinates".into()));
                };
                let (x, y) = (b64::url_encode(x), b64::url_encode(y));
                let kid = thumbprint(&format!(
                    r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#
                ));
                let jwk = json!({"kty":"EC","crv":"P-256","x":x,"y":y,"kid":kid,"alg":"ES256","use":"sig"});
                (VerifyingKey::P256(*sk.verifying_key()), jwk, kid)
            }
            TokenAlg::HS256 => return Err(Error::crypto("use TokenKey::hs256")),
        };
        let signing = match alg {
            TokenAlg::EdDSA => SigningKind::Ed25519(Box::new(
                ed25519_dalek::SigningKey::from_pkcs8_der(pkcs8.expose()).map_err(|e| bad(&e))?,
            )),
            _ => SigningKind::P256(Box::new(
                p256::ecdsa::SigningKey::from_pkcs8_der(pkcs8.expose()).map_err(|e| bad(&e))?,
            )),
        };
        Ok(TokenKey {
            kid,
            alg,
            verifying,
            signing: Some(signing),
            private: Some(pkcs8),
            jwk: Some(jwk),
            tenant: None,
        })
    }

    /// An HS256 key for a Tronexus-compatible app. At least 32 bytes; never published in the JWKS.
    pub fn hs256(kid: &str, secret: SecretBytes) -> Result<TokenKey> {
        if secret.expose().len() < 32 {
            return Err(Error::BadKey(
                "HS256 secrets must be at least 32 bytes".into(),
            ));
        }
        Ok(TokenKey {
            kid: kid.to_owned(),
            alg: TokenAlg::HS256,
            verifying: VerifyingKey::Hmac(DecodingKey::from_secret(secret.expose())),
            signing: Some(SigningKind::Hmac(EncodingKey::from_secret(secret.expose()))),
            private: Some(secret),
            jwk: None,
            tenant: None,
        })
    }

    /// The HS256 key of app `app_id` (kid [`app_key_id`]): it signs that app's access tokens and
    /// verifies only tokens whose `tenant` is that app.
    pub fn hs256_for_app(app_id: &str, secret: SecretBytes) -> Result<TokenKey> {
        let mut key = TokenKey::hs256(&app_key_id(app_id), secret)?;
        key.tenant = Some(app_id.to_owned());
        Ok(key)
    }

    /// The app an app key is bound to.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// A verify-only key from a JWK (split deployments fetch the sidecar's JWKS).
    pub fn from_jwk(jwk: &Value) -> Result<TokenKey> {
        let s = |k: &str| jwk.get(k).and_then(Value::as_str);
        let kid = s("kid").ok_or_else(|| Error::malformed("jwk", "missing kid"))?;
        let (alg, key) = match (s("kty"), s("crv")) {
            (Some("OKP"), Some("Ed25519")) => {
                let x = b64::url_decode_strict("jwk x", s("x").unwrap_or_default())?;
                (TokenAlg::EdDSA, crate::identity::PublicKey::from_bytes(&x)?)
            }
            (Some("EC"), Some("P-256")) => {
                let x = b64::url_decode_strict("jwk x", s("x").unwrap_or_default())?;
                let y = b64::url_decode_strict("jwk y", s("y").unwrap_or_default())?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(Error::BadKey("P-256 coordinates are 32 bytes".into()));
                }
                let mut sec1 = vec![4u8];
                sec1.extend_from_slice(&x);
                sec1.extend_from_slice(&y);
                (
                    TokenAlg::ES256,
                    crate::identity::PublicKey::from_bytes(&sec1)?,
                )
            }
            _ => {
                return Err(Error::BadKey(
                    "only OKP/Ed25519 and EC/P-256 JWKs are accepted".into(),
                ));
            }
        };
        if s("alg").is_some_and(|declared| declared != alg.as_str()) {
            return Err(Error::BadKey("jwk alg does not match its key type".into()));
        }
        let verifying = match key {
            crate::identity::PublicKey::Ed25519(k) if alg == TokenAlg::EdDSA => {
                VerifyingKey::Ed25519(k)
            }
            crate::identity::PublicKey::P256(k) if alg == TokenAlg::ES256 => VerifyingKey::P256(k),
            _ => return Err(Error::BadKey("jwk key does not match its kty/crv".into())),
        };
        Ok(TokenKey {
            kid: kid.to_owned(),
            alg,
            verifying,
            signing: None,
            private: None,
            jwk: Some(jwk.clone()),
            tenant: None,
        })
    }

    /// Key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
    /// Algorithm.
    pub fn alg(&self) -> TokenAlg {
        self.alg
    }
    /// PKCS#8 DER (asymmetric) or the shared secret (HS256), for encrypted storage.
    pub fn private_material(&self) -> Option<&SecretBytes> {
        self.private.as_ref()
    }
    /// The public JWK (None for HS256).
    pub fn public_jwk(&self) -> Option<&Value> {
        self.jwk.as_ref()
    }
}

/// The keys a process signs with and accepts. Immutable: rotation builds a new set and swaps it.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Arc<TokenKey>>,
}

impl KeySet {
    /// A set from keys, oldest first; the newest key that can sign is the active one.
    pub fn new(keys: Vec<Arc<TokenKey>>) -> Self {
        KeySet { keys }
    }
    /// A copy with `key` added as the newest.
    pub fn with_key(&self, key: Arc<TokenKey>) -> Self {
        let mut keys = self.keys.clone();
        keys.retain(|k| k.kid != key.kid);
        keys.push(key);
        KeySet { keys }
    }
    /// A copy without `kid` (retirement).
    pub fn without(&self, kid: &str) -> Self {
        KeySet {
            keys: self.keys.iter().filter(|k| k.kid != kid).cloned().collect(),
        }
    }
    /// Key by id.
    pub fn get(&self, kid: &str) -> Option<&TokenKey> {
        self.keys.iter().find(|k| k.kid == kid).map(|k| &**k)
    }
    /// The newest asymmetric signing key.
    pub fn active(&self) -> Option<&TokenKey> {
        self.keys
            .iter()
            .rev()
            .find(|k| k.signing.is_some() && k.alg != TokenAlg::HS256)
            .map(|k| &**k)
    }
    /// All keys, oldest first.
    pub fn keys(&self) -> impl Iterator<Item = &TokenKey> {
        self.keys.iter().map(|k| &**k)
    }

    /// Sign with the active key.
    pub fn sign(&self, claims: &Claims) -> Result<String> {
        let key = self
            .active()
            .ok_or_else(|| Error::crypto("no signing key"))?;
        self.sign_with(key, claims)
    }

    /// Sign any claim set with the active key: OpenID ID tokens are addressed to one client and
    /// carry claims (`nonce`, `email`) that access tokens do not.
    pub fn sign_payload<T: Serialize>(&self, payload: &T) -> Result<String> {
        let key = self
            .active()
            .ok_or_else(|| Error::crypto("no signing key"))?;
        self.sign_raw(key, payload)
    }

    /// Sign with a specific key (HS256 apps choose their key explicitly).
    pub fn sign_with(&self, key: &TokenKey, claims: &Claims) -> Result<String> {
        self.sign_raw(key, claims)
    }

    fn sign_raw<T: Serialize>(&self, key: &TokenKey, claims: &T) -> Result<String> {
        let signing = key
            .signing
            .as_ref()
            .ok_or_else(|| Error::crypto("verify-only key cannot sign"))?;
        let header = json!({"typ": "JWT", "alg": key.alg.as_str(), "kid": key.kid});
        let payload = serde_json::to_vec(claims).map_err(|e| Error::crypto_from("", e))?;
        let signing_input = format!(
            "{}.{}",
            b64::url_encode(header.to_string().as_bytes()),
            b64::url_encode(&payload)
        );
        let message = signing_input.as_bytes();
        let signature = match signing {
            SigningKind::Ed25519(k) => {
                b64::url_encode(&ed25519_dalek::Signer::sign(k.as_ref(), message).to_bytes())
            }
            SigningKind::P256(k) => {
                let sig: p256::ecdsa::Signature =
                    p256::ecdsa::signature::Signer::sign(k.as_ref(), message);
                b64::url_encode(&sig.normalize_s().unwrap_or(sig).to_bytes())
            }
            SigningKind::Hmac(enc) => jsonwebtoken::crypto::sign(message, enc, Algorithm::HS256)
                .map_err(|e| Error::crypto_from("", e))?,
        };
        Ok(format!("{signing_input}.{signature}"))
    }

    /// The public JWKS document (`/.well-known/jwks.json`). HS256 secrets never appear.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.keys.iter().filter_map(|k| k.jwk.clone()).collect();
        json!({ "keys": keys })
    }

    /// A verify-only key set from a JWKS document. Unusable keys are skipped; none usable is an error.
    pub fn from_jwks(doc: &Value) -> Result<KeySet> {
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::malformed("jwks", "missing keys array"))?;
        let keys: Vec<Arc<TokenKey>> = list
            .iter()
            .filter_map(|j| TokenKey::from_jwk(j).ok())
            .map(Arc::new)
            .collect();
        if keys.is_empty() {
            return Err(Error::malformed("jwks", "no usable keys"));
        }
        Ok(KeySet { keys })
    }
}

/// The key id of app `app_id`'s HS256 key.
pub fn app_key_id(app_id: &str) -> String {
    format!("app-{app_id}")
}
