//! OAuth2 and OpenID Connect: the authorization server integrations such as Grafana sign users in
//! with (`/oauth/authorize`, `/oauth/token`, `/oauth/userinfo`, discovery, client registry), and
//! the upstream login that lets people sign in with an OpenID provider (`/oauth/{provider}`).
//!
//! Choices a reader should know:
//! - Only the authorization-code grant, only with PKCE S256 (`plain` is refused), only confidential
//!   clients (`client_secret_basic` or `client_secret_post`). Redirect URIs match byte for byte.
//! - Codes live 60 s and are kept as SHA-256 digests. The first exchange wins a compare-and-swap;
//!   any later presentation revokes the session the first one opened (RFC 6749 §4.1.2).
//! - Access tokens for integrations are addressed to `<aud>:oauth`, not to the brokers' audience:
//!   Grafana holding a user's token must not be able to connect to MQTT or NATS as that user, nor
//!   call the admin API. `/oauth/userinfo` is the one place that accepts them.
//! - Refresh tokens are the same rotating families as key login, bound to the client they were
//!   granted to; reuse revokes the family.
//! - Browser-flow state (a pending authorize request, an upstream login in flight) is a store
//!   record taken exactly once, so a `state` or a request id cannot be replayed.

pub mod authorize;
pub mod clients;
pub mod page;
pub mod token;
pub mod upstream;

use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;
use warp::Filter;
use warp::http::{HeaderValue, StatusCode};

use crate::error::SidecarError;
use crate::state::State;
use crate::store::AuthorizeRequest;
use broker_auth::b64;

/// Lifetime of an authorization code (quality.md: ≤ 60 s).
pub const CODE_TTL: i64 = 60;
/// Lifetime of a pending browser step (authorize page, upstream login).
pub const PENDING_TTL: i64 = 600;

/// 32 random bytes, base64url: codes, client secrets, browser bindings, request ids.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    b64::url_encode(&b)
}

/// RFC 7636 S256: base64url(SHA-256(verifier)).
pub fn s256(verifier: &str) -> String {
    use sha2::{Digest, Sha256};
    b64::url_encode(&Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 §4.1: 43–128 characters of `[A-Z a-z 0-9 - . _ ~]` (Grafana sends 128).
pub fn verifier_ok(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A S256 challenge is the base64url of 32 bytes: exactly 43 characters.
pub fn challenge_ok(c: &str) -> bool {
    c.len() == 43 && b64::url_decode_strict("code_challenge", c).is_ok_and(|b| b.len() == 32)
}

/// Constant-time equality of two strings of public length.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Parse `application/x-www-form-urlencoded` (a body or a query string) into pairs, refusing a
/// parameter given twice (RFC 6749 §3.1) and oversized input.
pub fn form_pairs(raw: &[u8]) -> Result<Vec<(String, String)>, SidecarError> {
    if raw.len() > 16 * 1024 {
        return Err(SidecarError::oauth("invalid_request", "request too large"));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(raw)
        .map_err(|_| SidecarError::oauth("invalid_request", "malformed form or query"))?;
    for (i, (k, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(k2, _)| k2 == k) {
            return Err(SidecarError::oauth(
                "invalid_request",
                format!("parameter {k} given more than once"),
            ));
        }
    }
    Ok(pairs)
}

/// The value of `name` in parsed pairs.
pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `uri` with `params` appended to its query (RFC 6749 §4.1.2: keep the URI's own query).
pub fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    let encoded = serde_urlencoded::to_string(params).unwrap_or_default();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{encoded}")
}

/// A 302 to `location`.
pub fn redirect(location: &str) -> Result<warp::reply::Response, SidecarError> {
    let mut res = warp::reply::with_status(warp::reply(), StatusCode::FOUND).into_response();
    let v = HeaderValue::from_str(location)
        .map_err(|_| SidecarError::internal("redirect location is not a header value"))?;
    res.headers_mut().insert("location", v);
    Ok(res)
}

use warp::Reply;

/// End a pending authorize request with a code for `identity_id` and send the browser back to
/// the client with `code` and `state`.
pub async fn send_code(
    state: &State,
    req: &AuthorizeRequest,
    identity_id: &str,
) -> Result<warp::reply::Response, SidecarError> {
    let code = crate::domain::oauth::grant_code(state, req, identity_id).await?;
    redirect(&with_query(
        &req.redirect_uri,
        &[("code", &code), ("state", &req.state)],
    ))
}

/// Every OAuth2/OIDC route.
pub fn routes(state: State) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    // The fixed routes come first: `/oauth/{provider}` must never shadow them.
    clients::routes(state.clone())
        .or(authorize::routes(state.clone()))
        .unify()
        .or(token::routes(state.clone()))
        .unify()
        .or(upstream::routes(state))
        .unify()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_rules() {
        // RFC 7636 appendix B.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(verifier_ok(&"a".repeat(43)) && verifier_ok(&"a".repeat(128)));
        assert!(!verifier_ok(&"a".repeat(42)) && !verifier_ok(&"a".repeat(129)));
        assert!(!verifier_ok(&format!("{}+", "a".repeat(42))));
        assert!(challenge_ok("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!challenge_ok("plain-verifier-is-not-a-challenge"));
    }

    #[test]
    fn forms_refuse_repeated_parameters() {
        assert!(form_pairs(b"a=1&b=2").is_ok());
        assert!(form_pairs(b"a=1&a=2").is_err());
        assert!(form_pairs(&vec![b'a'; 20_000]).is_err());
        assert_eq!(
            with_query("https://g/cb?x=1", &[("code", "c d")]),
            "https://g/cb?x=1&code=c+d"
        );
    }
}
