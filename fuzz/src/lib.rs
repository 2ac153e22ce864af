//! Fixtures shared by the fuzz targets and the seed-corpus generator: fixed keys (so seeds written
//! once stay valid), the shipped policies, and reference semantics the targets compare against.
//!
//! Everything is built once per process (`OnceLock`): libFuzzer runs millions of inputs in one
//! process, and a target must spend its time in the code under test, not in key generation.

// Fixtures that fail to build, and broken invariants, must stop the process loudly: a panic is
// how a fuzz target reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};

use broker_auth::policy::{PolicySet, PolicySource};
use broker_auth::revocation::RevocationSet;
use broker_auth::secret::SecretBytes;
use broker_auth::token::{KeySet, TokenAlg, TokenConfig, TokenKey, Verifier};
use ed25519_dalek::pkcs8::EncodePrivateKey as _;

/// The callout's xkey box, compiled from its own source file: the same code as
/// `callout::xbox`, without building async-nats, tokio and reqwest instrumented. With the
/// `callout-crate` feature it is the callout crate's module itself.
#[cfg(not(feature = "callout-crate"))]
#[path = "../../callout/src/xbox.rs"]
pub mod xbox;
#[cfg(feature = "callout-crate")]
pub use callout::xbox;

/// The instant every target decides at.
pub const NOW: i64 = 1_800_000_000;
/// `iss` the verifier requires.
pub const ISSUER: &str = "https://auth.fuzz.test";
/// `aud` the verifier requires.
pub const AUDIENCE: &str = "brokers";
/// The tenant of the app HS256 key.
pub const APP: &str = "app1";
/// A session id that is revoked.
pub const REVOKED_SID: &str = "sid-revoked";
/// A subject whose tokens issued up to [`NOW`] are revoked.
pub const REVOKED_SUB: &str = "usr-REVOKED";
/// Kid of the plain (tenant-less) HS256 key.
pub const HS_KID: &str = "hs-1";

/// Which fixed key signs a token the target builds itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    /// The active Ed25519 key.
    Ed25519,
    /// The ES256 key.
    P256,
    /// The app's HS256 key (tenant [`APP`]).
    AppHs256,
    /// The tenant-less HS256 key [`HS_KID`].
    Hs256,
    /// An Ed25519 key the set knows only by its public JWK.
    VerifyOnly,
    /// A key the set does not know (signs under the Ed25519 key's kid).
    Stranger,
}

impl Signer {
    /// All signers, for choosing one by a byte.
    pub const ALL: [Signer; 6] = [
        Signer::Ed25519,
        Signer::P256,
        Signer::AppHs256,
        Signer::Hs256,
        Signer::VerifyOnly,
        Signer::Stranger,
    ];
}

/// The token fixtures.
pub struct Tokens {
    /// The key set the verifier checks against.
    pub keys: KeySet,
    /// The verifier (issuer [`ISSUER`], audience [`AUDIENCE`], 30 s leeway).
    pub verifier: Verifier,
    /// [`REVOKED_SID`] and [`REVOKED_SUB`].
    pub revocations: RevocationSet,
    ed: ed25519_dalek::SigningKey,
    verify_only: ed25519_dalek::SigningKey,
    stranger: ed25519_dalek::SigningKey,
    p256: p256::ecdsa::SigningKey,
    app_hs: jsonwebtoken::EncodingKey,
    hs: jsonwebtoken::EncodingKey,
    ed_kid: String,
    p256_kid: String,
    verify_only_kid: String,
}

const HS_SECRET: &[u8; 32] = b"fuzz-app-shared-secret-32-bytes!";
const HS_PLAIN_SECRET: &[u8; 32] = b"fuzz-plain-hs256-secret-32bytes!";

fn ed_pkcs8(sk: &ed25519_dalek::SigningKey) -> SecretBytes {
    SecretBytes::new(sk.to_pkcs8_der().expect("pkcs8").as_bytes().to_vec())
}

/// The token fixtures, built once.
pub fn tokens() -> &'static Tokens {
    static T: OnceLock<Tokens> = OnceLock::new();
    T.get_or_init(|| {
        let ed = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let verify_only = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
        let stranger = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let p256 = p256::ecdsa::SigningKey::from_bytes(&[0x11u8; 32].into()).expect("p256");
        let p256_der = p256.to_pkcs8_der().expect("pkcs8").as_bytes().to_vec();

        let ed_key = TokenKey::from_pkcs8(TokenAlg::EdDSA, ed_pkcs8(&ed)).expect("ed key");
        let p256_key =
            TokenKey::from_pkcs8(TokenAlg::ES256, SecretBytes::new(p256_der)).expect("p256 key");
        let vo_full = TokenKey::from_pkcs8(TokenAlg::EdDSA, ed_pkcs8(&verify_only)).expect("vo");
        let vo_jwk = vo_full.public_jwk().expect("jwk").clone();
        let vo_key = TokenKey::from_jwk(&vo_jwk).expect("jwk import");
        let app_key =
            TokenKey::hs256_for_app(APP, SecretBytes::new(HS_SECRET.to_vec())).expect("app key");
        let hs_key =
            TokenKey::hs256(HS_KID, SecretBytes::new(HS_PLAIN_SECRET.to_vec())).expect("hs key");
        let (ed_kid, p256_kid, verify_only_kid) = (
            ed_key.kid().to_owned(),
            p256_key.kid().to_owned(),
            vo_key.kid().to_owned(),
        );
        // Oldest first; the Ed25519 key is the active one.
        let keys = KeySet::new(
            [vo_key, app_key, hs_key, p256_key, ed_key]
                .into_iter()
                .map(Arc::new)
                .collect(),
        );
        let revocations = RevocationSet::new();
        revocations.revoke_session(REVOKED_SID, i64::MAX);
        revocations.revoke_subject(REVOKED_SUB, NOW, i64::MAX);
        Tokens {
            keys,
            verifier: Verifier::new(TokenConfig::new(ISSUER, AUDIENCE)),
            revocations,
            ed,
            verify_only,
            stranger,
            p256,
            app_hs: jsonwebtoken::EncodingKey::from_secret(HS_SECRET),
            hs: jsonwebtoken::EncodingKey::from_secret(HS_PLAIN_SECRET),
            ed_kid,
            p256_kid,
            verify_only_kid,
        }
    })
}

impl Tokens {
    /// The kid a signer's tokens carry.
    pub fn kid(&self, s: Signer) -> String {
        match s {
            Signer::Ed25519 | Signer::Stranger => self.ed_kid.clone(),
            Signer::P256 => self.p256_kid.clone(),
            Signer::AppHs256 => broker_auth::token::app_key_id(APP),
            Signer::Hs256 => HS_KID.to_owned(),
            Signer::VerifyOnly => self.verify_only_kid.clone(),
        }
    }

    /// The JOSE `alg` of a signer.
    pub fn alg(s: Signer) -> &'static str {
        match s {
            Signer::Ed25519 | Signer::VerifyOnly | Signer::Stranger => "EdDSA",
            Signer::P256 => "ES256",
            Signer::AppHs256 | Signer::Hs256 => "HS256",
        }
    }

    /// `b64(header).b64(payload).b64(signature)` with any header and payload bytes.
    pub fn sign_raw(&self, header: &[u8], payload: &[u8], s: Signer) -> String {
        use broker_auth::b64::url_encode;
        let input = format!("{}.{}", url_encode(header), url_encode(payload));
        let msg = input.as_bytes();
        let sig = match s {
            Signer::Ed25519 => url_encode(&ed25519_dalek::Signer::sign(&self.ed, msg).to_bytes()),
            Signer::VerifyOnly => {
                url_encode(&ed25519_dalek::Signer::sign(&self.verify_only, msg).to_bytes())
            }
            Signer::Stranger => {
                url_encode(&ed25519_dalek::Signer::sign(&self.stranger, msg).to_bytes())
            }
            Signer::P256 => {
                let sig: p256::ecdsa::Signature =
                    p256::ecdsa::signature::Signer::sign(&self.p256, msg);
                url_encode(&sig.to_bytes())
            }
            Signer::AppHs256 | Signer::Hs256 => {
                let key = if s == Signer::AppHs256 {
                    &self.app_hs
                } else {
                    &self.hs
                };
                jsonwebtoken::crypto::sign(msg, key, jsonwebtoken::Algorithm::HS256).expect("hmac")
            }
        };
        format!("{input}.{sig}")
    }

    /// The header the product writes for a signer.
    pub fn header(&self, s: Signer) -> Vec<u8> {
        serde_json::json!({"typ": "JWT", "alg": Self::alg(s), "kid": self.kid(s)})
            .to_string()
            .into_bytes()
    }
}

/// NATS fixtures: the asking server's signing key and curve key, our curve key.
pub struct Nats {
    /// The server's nkey (`N…`): signs authorization requests.
    pub server: nkeys::KeyPair,
    /// The server's curve key (`X…`): seals requests to us.
    pub server_xkey: nkeys::XKey,
    /// Our curve key as the callout holds it.
    pub ours: xbox::XBox,
    /// Our curve key as nkeys holds it (to seal to).
    pub ours_nk: nkeys::XKey,
    /// An account key (`A…`): signs responses and user JWTs.
    pub account: nkeys::KeyPair,
    /// An operator key (`O…`).
    pub operator: nkeys::KeyPair,
}

/// The NATS fixtures, built once.
pub fn nats() -> &'static Nats {
    static N: OnceLock<Nats> = OnceLock::new();
    N.get_or_init(|| {
        let ours_nk = nkeys::XKey::new_from_raw([0x21; 32]);
        let seed = ours_nk.seed().expect("xkey seed");
        Nats {
            server: nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::Server, [0x31; 32])
                .expect("server key"),
            server_xkey: nkeys::XKey::new_from_raw([0x41; 32]),
            ours: xbox::XBox::from_seed(&seed).expect("xbox"),
            ours_nk,
            account: nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::Account, [0x51; 32])
                .expect("account key"),
            operator: nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::Operator, [0x61; 32])
                .expect("operator key"),
        }
    })
}

impl Nats {
    /// `b64(header).b64(payload).b64(sig)` signed by `key`.
    pub fn sign_raw(header: &[u8], payload: &[u8], key: &nkeys::KeyPair) -> String {
        use broker_auth::b64::url_encode;
        let input = format!("{}.{}", url_encode(header), url_encode(payload));
        let sig = key.sign(input.as_bytes()).expect("nkey sign");
        format!("{input}.{}", url_encode(&sig))
    }

    /// Seal `plain` from the server to us with a chosen nonce (deterministic, unlike `seal`).
    pub fn seal_to_us(&self, plain: &[u8], nonce: [u8; 24]) -> Vec<u8> {
        self.server_xkey
            .seal_with_nonce(plain, &self.ours_nk, nonce.into())
            .expect("seal")
    }
}

/// The shipped policies (`policies/*.rego`, tests left out), compiled once.
pub fn policy() -> &'static PolicySet {
    static P: OnceLock<PolicySet> = OnceLock::new();
    P.get_or_init(|| {
        PolicySet::from_sources(vec![
            PolicySource {
                path: "policies/broker.rego".into(),
                text: include_str!("../../policies/broker.rego").into(),
            },
            PolicySource {
                path: "policies/mqtt_acl.rego".into(),
                text: include_str!("../../policies/mqtt_acl.rego").into(),
            },
        ])
        .expect("the shipped policies compile")
    })
}

/// Reference MQTT semantics, written from the spec rather than for speed: does filter `f` (valid)
/// match topic `t` (valid)? `+` one level, `#` the rest including the parent, and no wildcard in
/// the first level matches a `$` topic.
pub fn mqtt_matches_ref(filter: &str, topic: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    if topic.starts_with('$') && (f[0] == "+" || f[0] == "#") {
        return false;
    }
    for (i, fl) in f.iter().enumerate() {
        if *fl == "#" {
            return t.len() >= i;
        }
        match t.get(i) {
            Some(tl) if *fl == "+" || fl == tl => {}
            _ => return false,
        }
    }
    t.len() == f.len()
}

/// Reference NATS semantics: does pattern `p` match concrete subject `s`? `*` one token, `>` one
/// or more trailing tokens.
pub fn nats_matches_ref(p: &str, s: &str) -> bool {
    fn go(p: &[&str], s: &[&str]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(&">"), Some(_)) => p.len() == 1,
            (Some(&"*"), Some(_)) => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = p.split('.').collect();
    let s: Vec<&str> = s.split('.').collect();
    go(&p, &s)
}

/// Splits fuzz input into `n` text fields at newlines (the rest goes in the last field), so
/// seeds stay readable files. Non-UTF-8 input is refused.
pub fn fields(data: &[u8], n: usize) -> Option<Vec<&str>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut out: Vec<&str> = text.splitn(n, '\n').collect();
    out.resize(n, "");
    Some(out)
}

/// A policy set that hands back its input as Rego saw it (`data.fuzz.echo.seen`), next to
/// stub grants and allow rules (a set must have both entry points). `PolicySet::eval_json`
/// takes the input through the same JSON → Rego conversion as the grants and allow decisions.
pub fn echo_policy() -> &'static PolicySet {
    static P: OnceLock<PolicySet> = OnceLock::new();
    P.get_or_init(|| {
        let src = |path: &str, text: &str| PolicySource {
            path: path.into(),
            text: text.into(),
        };
        PolicySet::from_sources(vec![
            src(
                "fuzz/broker.rego",
                "package broker\n\ngrants := {\"superuser\": false}\n",
            ),
            src(
                "fuzz/acl.rego",
                "package broker.mqtt.acl\n\ndefault allow := false\n",
            ),
            src("fuzz/echo.rego", "package fuzz.echo\n\nseen := input\n"),
        ])
        .expect("the echo policy compiles")
    })
}

/// The echo policy's rule.
pub const ECHO_RULE: &str = "data.fuzz.echo.seen";

/// `%XX` escapes decoded (anything else kept as it is), then read as UTF-8 with invalid
/// sequences replaced: how a seed line spells a newline, a comma, a NUL or a stray byte.
pub fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
