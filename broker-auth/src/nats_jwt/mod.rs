//! NATS JWTs (operator, account, user, authorization request/response) and `.creds` files.
//!
//! No maintained crate encodes *and* decodes these, so this is a small typed codec that writes
//! what Go's nats-io/jwt v2 writes: header exactly `{"typ":"JWT","alg":"ed25519-nkey"}`, unpadded
//! base64url segments, an nkeys Ed25519 signature over `header.payload`, `type` and `version: 2`
//! inside the `nats` object, and `jti` = unpadded BASE32 of SHA-512/256 over the standard claims
//! (with `jti` empty), which is how Go tooling derives it. Decoding verifies the signature with the
//! `iss` key and checks that the issuer's key type fits the claim type.

pub mod claims;
pub mod creds;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512_256};

use crate::UnixTime;
use crate::b64;
use crate::error::{Error, Result};

pub use claims::{
    Account, AccountLimits, AuthorizationRequest, AuthorizationResponse, ExternalAuthorization,
    Operator, Permission, Permissions, ResponsePermission, User,
};

/// The exact header Go writes.
pub const HEADER: &str = r#"{"typ":"JWT","alg":"ed25519-nkey"}"#;
/// Largest NATS JWT we decode (account JWTs with many exports can be large).
pub const MAX_NATS_JWT_LEN: usize = 1024 * 1024;

/// A claim type: its `nats.type` string and the key types allowed to issue it.
pub trait ClaimKind: Serialize + DeserializeOwned {
    /// `nats.type`.
    const TYPE: &'static str;
    /// Allowed issuer key prefixes (`O` operator, `A` account, `N` server).
    const ISSUERS: &'static [char];
}

impl ClaimKind for Operator {
    const TYPE: &'static str = "operator";
    const ISSUERS: &'static [char] = &['O'];
}
impl ClaimKind for Account {
    const TYPE: &'static str = "account";
    const ISSUERS: &'static [char] = &['O'];
}
impl ClaimKind for User {
    const TYPE: &'static str = "user";
    const ISSUERS: &'static [char] = &['A'];
}
impl ClaimKind for AuthorizationRequest {
    const TYPE: &'static str = "authorization_request";
    const ISSUERS: &'static [char] = &['N'];
}
impl ClaimKind for AuthorizationResponse {
    const TYPE: &'static str = "authorization_response";
    const ISSUERS: &'static [char] = &['A'];
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A NATS JWT's claims: the standard fields plus the typed `nats` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsClaims<T> {
    /// Audience (config mode: the target account name; responses: the server id).
    pub aud: String,
    /// Expiry, 0 = none.
    pub exp: i64,
    /// Token id (set by [`encode`]).
    pub jti: String,
    /// Issued at (set by [`encode`]).
    pub iat: i64,
    /// Issuer public key (set by [`encode`]).
    pub iss: String,
    /// Name.
    pub name: String,
    /// Not before, 0 = none.
    pub nbf: i64,
    /// Subject public key.
    pub sub: String,
    /// Typed body.
    pub nats: T,
}

impl<T: Default> NatsClaims<T> {
    /// Claims about `sub` with a default body.
    pub fn new(sub: impl Into<String>) -> Self {
        NatsClaims {
            aud: String::new(),
            exp: 0,
            jti: String::new(),
            iat: 0,
            iss: String::new(),
            name: String::new(),
            nbf: 0,
            sub: sub.into(),
            nats: T::default(),
        }
    }
}

// The standard claims in Go's field order; used for the payload and for the jti hash.
#[derive(Serialize, Deserialize)]
struct Wire<N> {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    aud: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    exp: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    jti: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    iat: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    iss: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    nbf: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    nats: Option<N>,
}

#[derive(Serialize, Deserialize)]
struct Body<T> {
    #[serde(flatten)]
    inner: T,
    #[serde(rename = "type")]
    kind: String,
    version: u8,
}

fn key_type(public: &str) -> Option<char> {
    public.chars().next()
}

/// Sign `claims` with `signer` at time `now`, setting `iss`, `iat` and `jti`.
pub fn encode<T: ClaimKind + Clone>(
    claims: &mut NatsClaims<T>,
    signer: &nkeys::KeyPair,
    now: UnixTime,
) -> Result<String> {
    let issuer = signer.public_key();
    if !key_type(&issuer).is_some_and(|c| T::ISSUERS.contains(&c)) {
        return Err(Error::nats_jwt(format!(
            "a {} JWT cannot be issued by key type {:?}",
            T::TYPE,
            key_type(&issuer)
        )));
    }
    if claims.sub.is_empty() {
        return Err(Error::nats_jwt("subject is not set"));
    }
    claims.iss = issuer;
    claims.iat = now;
    claims.jti = String::new();
    claims.jti = jti_of(claims)?;
    let wire = Wire {
        aud: claims.aud.clone(),
        exp: claims.exp,
        jti: claims.jti.clone(),
        iat: claims.iat,
        iss: claims.iss.clone(),
        name: claims.name.clone(),
        nbf: claims.nbf,
        sub: claims.sub.clone(),
        nats: Some(Body {
            inner: claims.nats.clone(),
            kind: T::TYPE.to_owned(),
            version: 2,
        }),
    };
    let payload = serde_json::to_vec(&wire).map_err(|e| Error::nats_jwt_from("", e))?;
    let signing_input = format!(
        "{}.{}",
        b64::url_encode(HEADER.as_bytes()),
        b64::url_encode(&payload)
    );
    let sig = signer
        .sign(signing_input.as_bytes())
        .map_err(|e| Error::nats_jwt_from("signing failed", e))?;
    Ok(format!("{signing_input}.{}", b64::url_encode(&sig)))
}

/// The `jti` Go tooling would compute for these claims.
pub fn jti_of<T>(c: &NatsClaims<T>) -> Result<String> {
    let std_claims: Wire<()> = Wire {
        aud: c.aud.clone(),
        exp: c.exp,
        jti: String::new(),
        iat: c.iat,
        iss: c.iss.clone(),
        name: c.name.clone(),
        nbf: c.nbf,
        sub: c.sub.clone(),
        nats: None,
    };
    let json = serde_json::to_vec(&std_claims).map_err(|e| Error::nats_jwt_from("", e))?;
    Ok(data_encoding::BASE32_NOPAD.encode(&Sha512_256::digest(&json)))
}

#[derive(Deserialize)]
struct JwtHeader {
    typ: String,
    alg: String,
}

/// Decode and verify a NATS JWT of claim type `T` at time `now`: header, signature by `iss`,
/// issuer key type, `nats.type`, `version` 2, and `exp`/`nbf` when set.
pub fn decode<T: ClaimKind>(token: &str, now: UnixTime) -> Result<NatsClaims<T>> {
    decode_at(token, Some(now))
}

/// [`decode`], with the time checks skipped when `now` is `None` (reading stored credentials).
pub fn decode_at<T: ClaimKind>(token: &str, now: Option<UnixTime>) -> Result<NatsClaims<T>> {
    let err = |m: &str| Error::nats_jwt(m);
    if token.len() > MAX_NATS_JWT_LEN {
        return Err(err("token too large"));
    }
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(err("not a JWT (expected three segments)"));
    };
    let header: JwtHeader = serde_json::from_slice(&b64::url_decode_strict("header", h)?)
        .map_err(|e| Error::nats_jwt_from("bad header", e))?;
    if !header.typ.eq_ignore_ascii_case("JWT") || header.alg != "ed25519-nkey" {
        return Err(err("unsupported header (need typ JWT, alg ed25519-nkey)"));
    }
    let payload = b64::url_decode_strict("payload", p)?;
    let sig = b64::url_decode_strict("signature", s)?;
    let wire: Wire<Body<T>> =
        serde_json::from_slice(&payload).map_err(|e| Error::nats_jwt_from("bad claims", e))?;
    let Some(body) = wire.nats else {
        return Err(err("missing nats claims"));
    };
    if body.kind != T::TYPE || body.version != 2 {
        return Err(Error::nats_jwt(format!(
            "expected a v2 {} JWT, got {:?} v{}",
            T::TYPE,
            body.kind,
            body.version
        )));
    }
    if !key_type(&wire.iss).is_some_and(|c| T::ISSUERS.contains(&c)) {
        return Err(Error::nats_jwt(format!(
            "issuer key type not allowed for {}",
            T::TYPE
        )));
    }
    let issuer = nkeys::KeyPair::from_public_key(&wire.iss)
        .map_err(|_| err("issuer is not a valid public nkey"))?;
    let signed = &token[..h.len() + 1 + p.len()];
    issuer
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| Error::BadSignature)?;
    if let Some(now) = now {
        if wire.exp != 0 && now > wire.exp {
            return Err(Error::Token(crate::decision::DenyCode::Expired));
        }
        if wire.nbf != 0 && now < wire.nbf {
            return Err(Error::Token(crate::decision::DenyCode::NotYetValid));
        }
    }
    Ok(NatsClaims {
        aud: wire.aud,
        exp: wire.exp,
        jti: wire.jti,
        iat: wire.iat,
        iss: wire.iss,
        name: wire.name,
        nbf: wire.nbf,
        sub: wire.sub,
        nats: body.inner,
    })
}

#[cfg(test)]
mod tests;
