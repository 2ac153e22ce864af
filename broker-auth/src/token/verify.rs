//! Strict verification: the header allow-list, the key by `kid`, the claims against the caller's
//! `now`, and a cache of tokens already verified.

use jsonwebtoken::Algorithm;
use p256::ecdsa::signature::Verifier as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::keys::VerifyingKey;
use super::*;
use crate::b64;
use crate::error::Result;

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
        if key.alg() != alg {
            return Err(DenyCode::AlgorithmMismatch);
        }
        let signing_input = &token[..h.len() + 1 + payload_b64.len()];
        let signature =
            b64::url_decode_strict("jwt signature", sig).map_err(|_| DenyCode::MalformedToken)?;
        let signature_ok = signature_valid(&key.verifying, signing_input, sig, &signature);
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

/// Whether `signature` (the decoded JWS signature; `sig_b64` its encoded form, which HMAC wants)
/// signs `signing_input` under `key`. Ed25519 is verified strictly (no malleable signatures).
fn signature_valid(
    key: &VerifyingKey,
    signing_input: &str,
    sig_b64: &str,
    signature: &[u8],
) -> bool {
    match key {
        VerifyingKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
            .is_ok_and(|s| k.verify_strict(signing_input.as_bytes(), &s).is_ok()),
        // JWS carries ES256 as 64-byte r||s.
        VerifyingKey::P256(k) => p256::ecdsa::Signature::from_slice(signature)
            .is_ok_and(|s| k.verify(signing_input.as_bytes(), &s).is_ok()),
        VerifyingKey::Hmac(k) => {
            jsonwebtoken::crypto::verify(sig_b64, signing_input.as_bytes(), k, Algorithm::HS256)
                .unwrap_or(false)
        }
    }
}
