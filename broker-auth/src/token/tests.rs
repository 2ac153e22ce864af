//! The JWT items of quality.md's security list, each one a test.

use super::*;
use crate::revocation::{NoRevocations, RevocationSet};
use crate::secret::SecretBytes;
use jsonwebtoken::Header;
use jsonwebtoken::{Algorithm, EncodingKey};
use rand_core::OsRng;
use serde_json::json;
use std::sync::Arc;

const NOW: UnixTime = 1_700_000_000;

fn cfg() -> TokenConfig {
    TokenConfig::new("https://auth.test", "broker-auth")
}

fn setup(alg: TokenAlg) -> (KeySet, Verifier, Claims) {
    let key = Arc::new(TokenKey::generate(alg, &mut OsRng).unwrap());
    let keys = KeySet::new(vec![key]);
    let claims = Claims::new(
        &cfg(),
        "dev-AAAAAAAAAAAAAAAA",
        NOW,
        3600,
        TokenUse::Access,
        &mut OsRng,
    );
    (keys, Verifier::new(cfg()), claims)
}

fn verify(keys: &KeySet, v: &Verifier, t: &str) -> Result<Claims, DenyCode> {
    v.verify(keys, t, NOW, &NoRevocations, TokenUse::Access)
}

fn forge(header: &str, payload: &str, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64::url_encode(header.as_bytes()),
        b64::url_encode(payload.as_bytes()),
        b64::url_encode(sig)
    )
}

#[test]
fn round_trip_eddsa_and_es256() {
    for alg in [TokenAlg::EdDSA, TokenAlg::ES256] {
        let (keys, v, claims) = setup(alg);
        let t = keys.sign(&claims).unwrap();
        assert_eq!(verify(&keys, &v, &t).unwrap(), claims);
    }
}

#[test]
fn alg_none_is_rejected() {
    let (keys, v, claims) = setup(TokenAlg::EdDSA);
    let kid = keys.active().unwrap().kid().to_owned();
    let payload = serde_json::to_string(&claims).unwrap();
    let t = forge(&format!(r#"{{"alg":"none","kid":"{kid}"}}"#), &payload, b"");
    assert_eq!(verify(&keys, &v, &t), Err(DenyCode::BadSignature));
    let t = forge(
        &format!(r#"{{"alg":"none","kid":"{kid}"}}"#),
        &payload,
        b"x",
    );
    assert_eq!(verify(&keys, &v, &t), Err(DenyCode::UnsupportedAlgorithm));
}

#[test]
fn hs256_signed_with_the_public_key_is_rejected() {
    let (keys, v, claims) = setup(TokenAlg::EdDSA);
    let key = keys.active().unwrap();
    let jwk = key.public_jwk().unwrap();
    let x = jwk["x"].as_str().unwrap();
    for secret in [
        x.as_bytes().to_vec(),
        b64::url_decode_strict("x", x).unwrap(),
    ] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(key.kid().to_owned());
        let t = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&secret)).unwrap();
        assert_eq!(verify(&keys, &v, &t), Err(DenyCode::AlgorithmMismatch));
    }
}

#[test]
fn unknown_kid_and_missing_kid_are_rejected() {
    let (keys, v, claims) = setup(TokenAlg::EdDSA);
    let (other, _, _) = setup(TokenAlg::EdDSA);
    let t = other.sign(&claims).unwrap();
    assert_eq!(verify(&keys, &v, &t), Err(DenyCode::UnknownKey));
    let payload = serde_json::to_string(&claims).unwrap();
    let t = forge(r#"{"alg":"EdDSA"}"#, &payload, &[0u8; 64]);
    assert_eq!(verify(&keys, &v, &t), Err(DenyCode::BadHeader));
}

#[test]
fn expiry_and_not_before_use_the_given_clock_with_30s_leeway() {
    let (keys, v, mut claims) = setup(TokenAlg::EdDSA);
    let t = keys.sign(&claims).unwrap();
    let at = |now| v.verify(&keys, &t, now, &NoRevocations, TokenUse::Access);
    assert!(at(claims.exp + 30).is_ok());
    assert_eq!(at(claims.exp + 31), Err(DenyCode::Expired));
    assert!(at(NOW - 30).is_ok());
    assert_eq!(at(NOW - 31), Err(DenyCode::NotYetValid));
    claims.nbf = NOW + 3600;
    let t = keys.sign(&claims).unwrap();
    assert_eq!(verify(&keys, &v, &t), Err(DenyCode::NotYetValid));
    // Leeway above 30 s in the config is capped.
    let mut c = cfg();
    c.leeway_secs = 600;
    assert_eq!(Verifier::new(c).config().leeway_secs, 30);
}

#[test]
fn wrong_issuer_and_audience_are_rejected() {
    let (keys, v, claims) = setup(TokenAlg::EdDSA);
    let mut c = claims.clone();
    c.iss = "https://evil.test".into();
    assert_eq!(
        verify(&keys, &v, &keys.sign(&c).unwrap()),
        Err(DenyCode::WrongIssuer)
    );
    let mut c = claims.clone();
    c.aud = Audience::One("grafana".into());
    assert_eq!(
        verify(&keys, &v, &keys.sign(&c).unwrap()),
        Err(DenyCode::WrongAudience)
    );
    let mut c = claims;
    c.aud = Audience::Many(vec!["x".into(), "broker-auth".into()]);
    assert!(verify(&keys, &v, &keys.sign(&c).unwrap()).is_ok());
}

#[test]
fn tampered_stripped_oversized_and_noncanonical_tokens_are_rejected() {
    let (keys, v, claims) = setup(TokenAlg::EdDSA);
    let t = keys.sign(&claims).unwrap();
    let parts: Vec<&str> = t.split('.').collect();

    let mut evil = claims.clone();
    evil.sub = "adm-AAAAAAAAAAAAAAAA".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64::url_encode(serde_json::to_string(&evil).unwrap().as_bytes()),
        parts[2]
    );
    assert_eq!(verify(&keys, &v, &tampered), Err(DenyCode::BadSignature));

    assert_eq!(
        verify(&keys, &v, &format!("{}.{}.", parts[0], parts[1])),
        Err(DenyCode::BadSignature)
    );
    assert_eq!(
        verify(&keys, &v, &format!("{}.{}", parts[0], parts[1])),
        Err(DenyCode::MalformedToken)
    );
    assert_eq!(
        verify(&keys, &v, &format!("{t}.x")),
        Err(DenyCode::MalformedToken)
    );
    assert_eq!(verify(&keys, &v, ""), Err(DenyCode::MalformedToken));

    let big = format!("{}.{}.{}", parts[0], "A".repeat(MAX_TOKEN_LEN), parts[2]);
    assert_eq!(verify(&keys, &v, &big), Err(DenyCode::TokenTooLarge));

    // 64-byte signature = 86 base64url chars; the last char carries 2 unused bits. Setting them
    // gives another spelling of the same bytes, which must be refused.
    let sig = parts[2];
    let last = sig.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    let twin = alphabet.chars().nth(idx ^ 1).unwrap();
    let noncanon = format!(
        "{}.{}.{}{}",
        parts[0],
        parts[1],
        &sig[..sig.len() - 1],
        twin
    );
    assert!(verify(&keys, &v, &noncanon).is_err());
    let padded = format!("{t}==");
    assert!(verify(&keys, &v, &padded).is_err());
}

#[test]
fn dangerous_header_fields_are_refused_not_followed() {
    let (keys, v, claims) = setup(TokenAlg::EdDSA);
    let kid = keys.active().unwrap().kid().to_owned();
    let payload = serde_json::to_string(&claims).unwrap();
    for extra in [
        r#""crit":["exp"]"#,
        r#""jku":"https://evil.test/jwks""#,
        r#""x5u":"https://evil.test/cert""#,
        r#""jwk":{"kty":"OKP","crv":"Ed25519","x":"AAAA"}"#,
        r#""x5c":["MIIB"]"#,
    ] {
        let t = forge(
            &format!(r#"{{"alg":"EdDSA","kid":"{kid}",{extra}}}"#),
            &payload,
            &[1u8; 64],
        );
        assert_eq!(verify(&keys, &v, &t), Err(DenyCode::BadHeader), "{extra}");
    }
    let t = forge(
        &format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"at+jwt+evil"}}"#),
        &payload,
        &[1u8; 64],
    );
    assert_eq!(verify(&keys, &v, &t), Err(DenyCode::BadHeader));
}

#[test]
fn refresh_tokens_are_not_access_tokens() {
    let (keys, v, mut claims) = setup(TokenAlg::EdDSA);
    claims.token_use = TokenUse::Refresh;
    let t = keys.sign(&claims).unwrap();
    assert_eq!(verify(&keys, &v, &t), Err(DenyCode::WrongTokenUse));
    assert!(
        v.verify(&keys, &t, NOW, &NoRevocations, TokenUse::Refresh)
            .is_ok()
    );
}

#[test]
fn revoked_sessions_and_subjects_are_rejected() {
    let (keys, v, mut claims) = setup(TokenAlg::EdDSA);
    claims.sid = Some("ann-1".into());
    let t = keys.sign(&claims).unwrap();
    let r = RevocationSet::new();
    assert!(v.verify(&keys, &t, NOW, &r, TokenUse::Access).is_ok());
    r.revoke_session("ann-1", claims.exp);
    assert_eq!(
        v.verify(&keys, &t, NOW, &r, TokenUse::Access),
        Err(DenyCode::Revoked)
    );
    let r = RevocationSet::new();
    r.revoke_subject(&claims.sub, NOW, claims.exp);
    assert_eq!(
        v.verify(&keys, &t, NOW, &r, TokenUse::Access),
        Err(DenyCode::Revoked)
    );
}

#[test]
fn rotation_keeps_old_tokens_valid_until_the_old_key_is_retired() {
    let (keys, v, claims) = setup(TokenAlg::EdDSA);
    let old_token = keys.sign(&claims).unwrap();
    let old_kid = keys.active().unwrap().kid().to_owned();
    let rotated = keys.with_key(Arc::new(
        TokenKey::generate(TokenAlg::ES256, &mut OsRng).unwrap(),
    ));
    let new_token = rotated.sign(&claims).unwrap();
    assert_ne!(rotated.active().unwrap().kid(), old_kid);
    assert!(verify(&rotated, &v, &old_token).is_ok());
    assert!(verify(&rotated, &v, &new_token).is_ok());
    let retired = rotated.without(&old_kid);
    assert_eq!(verify(&retired, &v, &old_token), Err(DenyCode::UnknownKey));
    assert!(verify(&retired, &v, &new_token).is_ok());
}

#[test]
fn jwks_round_trip_verifies_and_never_exports_secrets() {
    let (keys, v, claims) = setup(TokenAlg::EdDSA);
    let keys = keys
        .with_key(Arc::new(
            TokenKey::generate(TokenAlg::ES256, &mut OsRng).unwrap(),
        ))
        .with_key(Arc::new(
            TokenKey::hs256("app-1", SecretBytes::new(vec![7u8; 32])).unwrap(),
        ));
    let doc = keys.jwks();
    assert_eq!(
        doc["keys"].as_array().unwrap().len(),
        2,
        "HS256 is not published"
    );
    let text = doc.to_string();
    assert!(!text.contains("\"d\""), "no private parts: {text}");
    let remote = KeySet::from_jwks(&doc).unwrap();
    let t = keys.sign(&claims).unwrap();
    assert!(verify(&remote, &v, &t).is_ok());
    assert!(remote.sign(&claims).is_err(), "verify-only");
    assert!(KeySet::from_jwks(&json!({"keys": [{"kty":"RSA","kid":"r"}]})).is_err());
    assert!(KeySet::from_jwks(&json!({})).is_err());
}

#[test]
fn hs256_only_with_an_explicit_key_of_at_least_32_bytes() {
    assert!(TokenKey::hs256("k", SecretBytes::new(vec![1u8; 31])).is_err());
    let key = Arc::new(TokenKey::hs256("app-1", SecretBytes::new(vec![9u8; 32])).unwrap());
    let keys = KeySet::new(vec![key.clone()]);
    assert!(keys.active().is_none(), "HS256 is never the default signer");
    let claims = Claims::new(
        &cfg(),
        "usr-AAAAAAAAAAAAAAAA",
        NOW,
        900,
        TokenUse::Access,
        &mut OsRng,
    );
    let t = keys.sign_with(&key, &claims).unwrap();
    assert!(verify(&keys, &Verifier::new(cfg()), &t).is_ok());
    assert!(format!("{key:?}").find("9, 9").is_none());
}

#[test]
fn an_apps_key_is_refused_by_plain_verification_and_bound_to_its_tenant() {
    let key = Arc::new(TokenKey::hs256_for_app("t1", SecretBytes::new(vec![9u8; 32])).unwrap());
    assert_eq!(key.kid(), "app-t1");
    let keys = KeySet::new(vec![key.clone()]);
    let v = Verifier::new(cfg());
    let mut claims = Claims::new(
        &cfg(),
        "usr-AAAAAAAAAAAAAAAA",
        NOW,
        900,
        TokenUse::Access,
        &mut OsRng,
    );
    claims.tenant = Some("t1".into());
    let t = keys.sign_with(&key, &claims).unwrap();
    // Enforcement points (plain verify, the verification cache) never take it.
    assert_eq!(verify(&keys, &v, &t).unwrap_err(), DenyCode::UnknownKey);
    let cache = VerifyCache::new(4);
    assert_eq!(
        cache
            .verify(&v, &keys, &t, NOW, &NoRevocations, TokenUse::Access)
            .unwrap_err(),
        DenyCode::UnknownKey
    );
    // A caller that opts in learns it was an app token, and only for that tenant.
    let (c, app) = v
        .verify_including_app_keys(&keys, &t, NOW, &NoRevocations, TokenUse::Access)
        .unwrap();
    assert!(app && c.tenant.as_deref() == Some("t1"));
    claims.tenant = Some("t2".into());
    let other = keys.sign_with(&key, &claims).unwrap();
    assert_eq!(
        v.verify_including_app_keys(&keys, &other, NOW, &NoRevocations, TokenUse::Access)
            .unwrap_err(),
        DenyCode::InvalidPrincipal
    );
}

#[test]
fn private_keys_survive_a_pkcs8_round_trip() {
    for alg in [TokenAlg::EdDSA, TokenAlg::ES256] {
        let key = TokenKey::generate(alg, &mut OsRng).unwrap();
        let again = TokenKey::from_pkcs8(alg, key.private_material().unwrap().clone()).unwrap();
        assert_eq!(key.kid(), again.kid());
    }
    assert!(TokenKey::from_pkcs8(TokenAlg::EdDSA, SecretBytes::new(vec![1, 2, 3])).is_err());
}

#[test]
fn the_verify_cache_rechecks_everything_that_can_change() {
    let (keys, v, mut claims) = setup(TokenAlg::EdDSA);
    claims.sid = Some("ann-c".into());
    let t = keys.sign(&claims).unwrap();
    let cache = VerifyCache::new(10);
    let r = RevocationSet::new();
    assert_eq!(
        cache
            .verify(&v, &keys, &t, NOW, &r, TokenUse::Access)
            .unwrap(),
        claims
    );
    // Served from the cache, still checked for expiry, use and revocation.
    assert!(
        cache
            .verify(&v, &keys, &t, NOW + 10, &r, TokenUse::Access)
            .is_ok()
    );
    assert_eq!(
        cache.verify(&v, &keys, &t, claims.exp + 31, &r, TokenUse::Access),
        Err(DenyCode::Expired)
    );
    assert_eq!(
        cache.verify(&v, &keys, &t, NOW, &r, TokenUse::Refresh),
        Err(DenyCode::WrongTokenUse)
    );
    r.revoke_session("ann-c", claims.exp);
    assert_eq!(
        cache.verify(&v, &keys, &t, NOW, &r, TokenUse::Access),
        Err(DenyCode::Revoked)
    );
    // Once its key leaves the set, a cached token is verified afresh (and refused).
    let r = RevocationSet::new();
    let kid = keys.active().unwrap().kid().to_owned();
    let rotated = keys
        .with_key(Arc::new(
            TokenKey::generate(TokenAlg::EdDSA, &mut OsRng).unwrap(),
        ))
        .without(&kid);
    assert_eq!(
        cache.verify(&v, &rotated, &t, NOW, &r, TokenUse::Access),
        Err(DenyCode::UnknownKey)
    );
    // Other bytes are another token: a tampered one is verified, not looked up.
    let tampered = format!("{t}x");
    assert!(
        cache
            .verify(&v, &keys, &tampered, NOW, &r, TokenUse::Access)
            .is_err()
    );
    // Failures are not remembered.
    let bad = "a.b.c";
    assert!(
        cache
            .verify(&v, &keys, bad, NOW, &r, TokenUse::Access)
            .is_err()
    );
    assert!(
        cache
            .verify(
                &v,
                &keys,
                &"a".repeat(MAX_TOKEN_LEN + 1),
                NOW,
                &r,
                TokenUse::Access
            )
            .is_err()
    );
}
