//! Access and refresh tokens: issue and verify JWTs, the signing key set, JWKS export and import.
//!
//! jsonwebtoken computes and checks HS256 MACs. EdDSA and ES256 are signed and verified here with
//! keys parsed once per key set: jsonwebtoken re-parses the key on every call (a PKCS#8 parse and
//! public-key derivation per signature, a point decompression per verification, which alone costs
//! a tenth of an Ed25519 verify on the hot path), and its validation defaults are too
//! loose for an auth service anyway (it ignores `crit`, has a 60 s leeway, skips `nbf`, and reads
//! the wall clock). Here the header is parsed first with an allow-list of fields (`alg`, `kid`, `typ`), so
//! `crit`, `jku`, `x5u`, `jwk` and friends are refused rather than followed; the key is chosen by
//! `kid` and the token's `alg` must be that key's algorithm (no `none`, no HS/asymmetric confusion);
//! `iss`, `aud`, `sub`, `exp` and `nbf` are required; and `exp`/`nbf` are checked against the `now`
//! the caller passes in, with at most 30 s leeway, so expiry is testable without sleeping.

use std::sync::Arc;

use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::DecodePrivateKey as _;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::UnixTime;
use crate::b64;
use crate::decision::DenyCode;
use crate::error::{Error, Result};
use crate::identity::IdentityType;
use crate::revocation::Revocations;
use crate::secret::SecretBytes;

/// Largest token we parse at all.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Upper bound on clock-skew leeway.
pub const MAX_LEEWAY_SECS: u64 = 30;

/// Token signature algorithms we issue and accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenAlg {
    /// Ed25519 (default).
    EdDSA,
    /// ECDSA P-256 SHA-256.
    ES256,
    /// HMAC-SHA256; only for apps whose operator configured a shared secret.
    HS256,
}

impl TokenAlg {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAlg::EdDSA => "EdDSA",
            TokenAlg::ES256 => "ES256",
            TokenAlg::HS256 => "HS256",
        }
    }
    fn from_jose(s: &str) -> Option<TokenAlg> {
        match s {
            "EdDSA" => Some(TokenAlg::EdDSA),
            "ES256" => Some(TokenAlg::ES256),
            "HS256" => Some(TokenAlg::HS256),
            _ => None,
        }
    }
}

/// What a token is for. Refresh tokens are JWTs too and must never pass as access tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    /// Presented to brokers and APIs.
    Access,
    /// Exchanged for a new access token.
    Refresh,
}

/// `aud` may be a string or an array on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

/// The claims of every token the product issues (tokens-and-policy.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: identity id, user id or device address.
    pub sub: String,
    /// Audience.
    pub aud: Audience,
    /// Issued at.
    pub iat: UnixTime,
    /// Not before.
    pub nbf: UnixTime,
    /// Expires.
    pub exp: UnixTime,
    /// Token id.
    pub jti: String,
    /// Session / announcement id; revoking it kills the token everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Identity type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idt: Option<IdentityType>,
    /// Tenant (app id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Same as `tenant`, for Tronexus clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// For gateways: devices it acts for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Access or refresh.
    pub token_use: TokenUse,
}

impl Claims {
    /// Fresh claims valid from `now` for `ttl_secs`, with a `jti` drawn from `rng` (the
    /// caller's: the core draws no randomness of its own).
    pub fn new(
        cfg: &TokenConfig,
        sub: &str,
        now: UnixTime,
        ttl_secs: i64,
        token_use: TokenUse,
        rng: &mut impl CryptoRngCore,
    ) -> Claims {
        let mut jti = [0u8; 16];
        rng.fill_bytes(&mut jti);
        Claims {
            iss: cfg.issuer.clone(),
            sub: sub.to_owned(),
            aud: Audience::One(cfg.audience.clone()),
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl_secs),
            jti: b64::url_encode(&jti),
            sid: None,
            idt: IdentityType::of_id(sub),
            tenant: None,
            app_id: None,
            roles: vec![],
            scopes: vec![],
            groups: vec![],
            devices: vec![],
            token_use,
        }
    }
}

/// Issuer-side and verifier-side token settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenConfig {
    /// `iss` we issue and require.
    pub issuer: String,
    /// `aud` we issue and require.
    pub audience: String,
    /// Clock-skew leeway, capped at [`MAX_LEEWAY_SECS`].
    pub leeway_secs: u64,
}

impl TokenConfig {
    /// A config with the default leeway (30 s).
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        TokenConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_secs: MAX_LEEWAY_SECS,
        }
    }
}

/// A public key parsed once, so verification does no key decoding.
enum VerifyingKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
    Hmac(DecodingKey),
}

/// A private key parsed once, so signing does no key decoding either (jsonwebtoken parses the
/// PKCS#8 document and re-derives the public key on every `encode`).
enum SigningKind {
    Ed25519(Box<ed25519_dalek::SigningKey>),
    P256(Box<p256::ecdsa::SigningKey>),
    Hmac(EncodingKey),
}

/// One key of the key set.
pub struct TokenKey {
    kid: String,
    alg: TokenAlg,
    verifying: VerifyingKey,
    signing: Option<SigningKind>,
    private: Option<SecretBytes>,
    jwk: Option<Value>,
    /// An app's HS256 key speaks only for that app: whoever holds the shared secret can mint
    /// tokens, so a token it signed must name this tenant or it is refused.
    tenant: Option<String>,
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
                .map_err(|e| Error::Crypto(e.to_string()))?
                .as_bytes()
                .to_vec(),
            TokenAlg::ES256 => p256::ecdsa::SigningKey::random(rng)
                .to_pkcs8_der()
                .map_err(|e| Error::Crypto(e.to_string()))?
                .as_bytes()
                .to_vec(),
            TokenAlg::HS256 => {
                return Err(Error::Crypto("HS256 keys come from configuration".into()));
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
            TokenAlg::HS256 => return Err(Error::Crypto("use TokenKey::hs256".into())),
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
            .ok_or_else(|| Error::Crypto("no signing key".into()))?;
        self.sign_with(key, claims)
    }

    /// Sign any claim set with the active key: OpenID ID tokens are addressed to one client and
    /// carry claims (`nonce`, `email`) that access tokens do not.
    pub fn sign_payload<T: Serialize>(&self, payload: &T) -> Result<String> {
        let key = self
            .active()
            .ok_or_else(|| Error::Crypto("no signing key".into()))?;
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
            .ok_or_else(|| Error::Crypto("verify-only key cannot sign".into()))?;
        let crypto = |e: &dyn std::fmt::Display| Error::Crypto(e.to_string());
        let header = json!({"typ": "JWT", "alg": key.alg.as_str(), "kid": key.kid});
        let payload = serde_json::to_vec(claims).map_err(|e| crypto(&e))?;
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
                .map_err(|e| crypto(&e))?,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictHeader {
    alg: String,
    kid: String,
    #[serde(default)]
    typ: Option<String>,
}

/// Verifies tokens against a key set with the product's rules.
#[derive(Clone, Debug)]
pub struct Verifier {
    config: TokenConfig,
}

impl Verifier {
    /// A verifier for `config` (leeway is capped at 30 s).
    pub fn new(mut config: TokenConfig) -> Self {
        config.leeway_secs = config.leeway_secs.min(MAX_LEEWAY_SECS);
        Verifier { config }
    }

    /// The configuration.
    pub fn config(&self) -> &TokenConfig {
        &self.config
    }

    /// Verify a token and return its claims, or the reason it is refused. Tokens signed by an
    /// app's shared HS256 key are refused here (`UnknownKey`): whoever holds that secret can mint
    /// any claims, so no enforcement point that trusts claims (brokers, the callout) takes them.
    pub fn verify(
        &self,
        keys: &KeySet,
        token: &str,
        now: UnixTime,
        revocations: &dyn Revocations,
        expected: TokenUse,
    ) -> Result<Claims, DenyCode> {
        self.verify_with_kid(keys, token, now, revocations, expected, false)
            .map(|(c, _)| c)
    }

    /// [`Verifier::verify`], also accepting an app's HS256 tokens (for the app's own tenant
    /// only); the flag says whether the token was one. A caller that takes them must not trust
    /// their claims beyond `sub` and `tenant`: it re-reads the person from its store.
    pub fn verify_including_app_keys(
        &self,
        keys: &KeySet,
        token: &str,
        now: UnixTime,
        revocations: &dyn Revocations,
        expected: TokenUse,
    ) -> Result<(Claims, bool), DenyCode> {
        let (claims, kid) = self.verify_with_kid(keys, token, now, revocations, expected, true)?;
        let app_key = keys.get(&kid).is_some_and(|k| k.tenant.is_some());
        Ok((claims, app_key))
    }

    /// [`Verifier::verify`], also returning the id of the key that signed the token.
    fn verify_with_kid(
        &self,
        keys: &KeySet,
        token: &str,
        now: UnixTime,
        revocations: &dyn Revocations,
        expected: TokenUse,
        allow_app_keys: bool,
    ) -> Result<(Claims, String), DenyCode> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(DenyCode::TokenTooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(payload_b64), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(DenyCode::MalformedToken);
        };
        if sig.is_empty() {
            return Err(DenyCode::BadSignature);
        }
        let header_bytes =
            b64::url_decode_strict("jwt header", h).map_err(|_| DenyCode::MalformedToken)?;
        let header: StrictHeader =
            serde_json::from_slice(&header_bytes).map_err(|_| DenyCode::BadHeader)?;
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return Err(DenyCode::BadHeader);
        }
        let alg = TokenAlg::from_jose(&header.alg).ok_or(DenyCode::UnsupportedAlgorithm)?;
        let key = keys
            .get(&header.kid)
            .filter(|k| allow_app_keys || k.tenant.is_none())
            .ok_or(DenyCode::UnknownKey)?;
        if key.alg != alg {
            return Err(DenyCode::AlgorithmMismatch);
        }
        let signing_input = &token[..h.len() + 1 + payload_b64.len()];
        let signature =
            b64::url_decode_strict("jwt signature", sig).map_err(|_| DenyCode::MalformedToken)?;
        let signature_ok = match &key.verifying {
            VerifyingKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(&signature)
                .is_ok_and(|s| k.verify_strict(signing_input.as_bytes(), &s).is_ok()),
            // JWS carries ES256 as 64-byte r||s.
            VerifyingKey::P256(k) => p256::ecdsa::Signature::from_slice(&signature)
                .is_ok_and(|s| k.verify(signing_input.as_bytes(), &s).is_ok()),
            VerifyingKey::Hmac(k) => {
                jsonwebtoken::crypto::verify(sig, signing_input.as_bytes(), k, Algorithm::HS256)
                    .unwrap_or(false)
            }
        };
        if !signature_ok {
            return Err(DenyCode::BadSignature);
        }
        let payload = b64::url_decode_strict("jwt payload", payload_b64)
            .map_err(|_| DenyCode::MalformedToken)?;
        // Every registered claim is a required field of `Claims`, so a missing one fails here.
        let claims: Claims =
            serde_json::from_slice(&payload).map_err(|_| DenyCode::MalformedToken)?;
        if claims.iss != self.config.issuer {
            return Err(DenyCode::WrongIssuer);
        }
        let audience_ok = match &claims.aud {
            Audience::One(a) => *a == self.config.audience,
            Audience::Many(v) => v.contains(&self.config.audience),
        };
        if !audience_ok || claims.sub.is_empty() {
            return Err(DenyCode::WrongAudience);
        }
        if key
            .tenant
            .as_deref()
            .is_some_and(|t| claims.tenant.as_deref() != Some(t))
        {
            return Err(DenyCode::InvalidPrincipal);
        }
        self.check_live(&claims, now, revocations, expected)?;
        Ok((claims, header.kid))
    }

    /// The checks that depend on *when* and *what for* a token is used, not on its bytes:
    /// expiry and not-before (with leeway), token use, revocation.
    pub fn check_live(
        &self,
        claims: &Claims,
        now: UnixTime,
        revocations: &dyn Revocations,
        expected: TokenUse,
    ) -> Result<(), DenyCode> {
        let leeway = self.config.leeway_secs as i64;
        if now > claims.exp.saturating_add(leeway) {
            return Err(DenyCode::Expired);
        }
        if now.saturating_add(leeway) < claims.nbf {
            return Err(DenyCode::NotYetValid);
        }
        if claims.token_use != expected {
            return Err(DenyCode::WrongTokenUse);
        }
        if claims
            .sid
            .as_deref()
            .is_some_and(|sid| revocations.is_session_revoked(sid))
            || revocations.is_subject_revoked(&claims.sub, claims.iat)
        {
            return Err(DenyCode::Revoked);
        }
        Ok(())
    }
}

/// Verified tokens remembered by their SHA-256, for connect paths where the same token comes back
/// (reconnects). A hit skips only what cannot change for the same bytes — signature, header,
/// issuer and audience — and only while the signing key is still in the key set; expiry, token use
/// and revocation are checked on every use. Only successful verifications are remembered.
pub struct VerifyCache {
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], (Claims, String)>>,
    capacity: usize,
}

impl std::fmt::Debug for VerifyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl VerifyCache {
    /// A cache that starts over once it holds `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        VerifyCache {
            entries: Default::default(),
            capacity: capacity.max(1),
        }
    }

    /// [`Verifier::verify`] through the cache.
    pub fn verify(
        &self,
        verifier: &Verifier,
        keys: &KeySet,
        token: &str,
        now: UnixTime,
        revocations: &dyn Revocations,
        expected: TokenUse,
    ) -> Result<Claims, DenyCode> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(DenyCode::TokenTooLarge);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let hit = self
            .entries
            .lock()
            .ok()
            .and_then(|m| m.get(&digest).cloned());
        if let Some((claims, _)) = hit.filter(|(_, kid)| keys.get(kid).is_some()) {
            verifier.check_live(&claims, now, revocations, expected)?;
            return Ok(claims);
        }
        let (claims, kid) =
            verifier.verify_with_kid(keys, token, now, revocations, expected, false)?;
        if let Ok(mut m) = self.entries.lock() {
            if m.len() >= self.capacity {
                m.clear();
            }
            m.insert(digest, (claims.clone(), kid));
        }
        Ok(claims)
    }
}

/// The key id of app `app_id`'s HS256 key.
pub fn app_key_id(app_id: &str) -> String {
    format!("app-{app_id}")
}

#[cfg(test)]
mod tests;
