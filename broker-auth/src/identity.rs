//! Identity types, their fixed key algorithms, identity ids, and public-key / signature decoding.
//!
//! The key algorithm of an identity is fixed by its type (http-api.md): `root`, `admin`, `user` and
//! `developer` hold Ed25519 keys; `gateway`, `integration` and `internal` hold P-256 (ES256) keys; a
//! `device` may hold either (Novacore devices use P-256, Cryptid devices announce with Ed25519).
//!
//! Verification is strict on purpose: Ed25519 uses `verify_strict` and refuses small-order keys, so
//! neither keys nor signatures are malleable; ES256 refuses high-S signatures for the same reason
//! (a second valid spelling of a signature would defeat replay detection keyed on signatures).

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::pkcs8::DecodePublicKey as _;
use p256::ecdsa::signature::Verifier as _;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use crate::b64;
use crate::error::{Error, Result};

/// The eight identity types of the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityType {
    /// Operator of the whole installation.
    Root,
    /// Administrator.
    Admin,
    /// A person.
    User,
    /// A developer (a person with developer tooling access).
    Developer,
    /// A gateway acting for the devices its metadata lists.
    Gateway,
    /// A device.
    Device,
    /// An external integration (e.g. Grafana).
    Integration,
    /// An internal service.
    Internal,
}

/// Every identity type, in a fixed order (useful for tests and docs).
pub const ALL_TYPES: [IdentityType; 8] = [
    IdentityType::Root,
    IdentityType::Admin,
    IdentityType::User,
    IdentityType::Developer,
    IdentityType::Gateway,
    IdentityType::Device,
    IdentityType::Integration,
    IdentityType::Internal,
];

impl IdentityType {
    /// The type's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityType::Root => "root",
            IdentityType::Admin => "admin",
            IdentityType::User => "user",
            IdentityType::Developer => "developer",
            IdentityType::Gateway => "gateway",
            IdentityType::Device => "device",
            IdentityType::Integration => "integration",
            IdentityType::Internal => "internal",
        }
    }

    /// The prefix of identity ids of this type.
    pub fn id_prefix(self) -> &'static str {
        match self {
            IdentityType::Root => "root-",
            IdentityType::Admin => "adm-",
            IdentityType::User => "usr-",
            IdentityType::Developer => "dvl-",
            IdentityType::Gateway => "gw-",
            IdentityType::Device => "dev-",
            IdentityType::Integration => "int-",
            IdentityType::Internal => "svc-",
        }
    }

    /// Whether an identity of this type may hold a key of `alg`.
    pub fn accepts(self, alg: KeyAlgorithm) -> bool {
        match self {
            IdentityType::Root
            | IdentityType::Admin
            | IdentityType::User
            | IdentityType::Developer => alg == KeyAlgorithm::Ed25519,
            IdentityType::Gateway | IdentityType::Integration | IdentityType::Internal => {
                alg == KeyAlgorithm::Es256
            }
            IdentityType::Device => true,
        }
    }

    /// A new random identity id: the type prefix plus 16 base32 characters (80 random bits
    /// from the caller's `rng`).
    pub fn new_id(self, rng: &mut impl CryptoRngCore) -> String {
        let mut bytes = [0u8; 10];
        rng.fill_bytes(&mut bytes);
        format!(
            "{}{}",
            self.id_prefix(),
            data_encoding::BASE32_NOPAD.encode(&bytes)
        )
    }

    /// The type an identity id belongs to, judged by its prefix.
    pub fn of_id(id: &str) -> Option<IdentityType> {
        ALL_TYPES
            .into_iter()
            .find(|t| id.starts_with(t.id_prefix()))
    }
}

impl fmt::Display for IdentityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IdentityType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ALL_TYPES
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| Error::malformed("identity type", format!("unknown type {s:?}")))
    }
}

/// Signature algorithms of identity keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    /// Ed25519 (EdDSA).
    Ed25519,
    /// ECDSA on P-256 with SHA-256.
    #[serde(rename = "ES256")]
    Es256,
}

impl KeyAlgorithm {
    /// Wire name (`Ed25519` or `ES256`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Ed25519 => "Ed25519",
            KeyAlgorithm::Es256 => "ES256",
        }
    }
}

/// A decoded, validated public key.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Ed25519 key (never small-order).
    Ed25519(ed25519_dalek::VerifyingKey),
    /// P-256 key (a valid curve point).
    P256(p256::ecdsa::VerifyingKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({}, {})",
            self.algorithm().as_str(),
            self.canonical()
        )
    }
}

impl PublicKey {
    /// Decode a key in any accepted encoding: Ed25519 as 32 raw bytes (or its SPKI DER); P-256 as SEC1
    /// compressed (33) or uncompressed (65) bytes, or SPKI DER; each as base64 in any spelling.
    pub fn decode(input: &str) -> Result<PublicKey> {
        let bytes = b64::decode_any("public key", input)?;
        Self::from_bytes(&bytes)
    }

    /// Decode raw key bytes (see [`PublicKey::decode`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey> {
        match bytes.len() {
            32 => Self::ed25519(bytes),
            33 | 65 => p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                .map(PublicKey::P256)
                .map_err(|_| Error::BadKey("not a valid P-256 point".into())),
            _ => {
                if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(bytes) {
                    return Ok(PublicKey::P256(k));
                }
                if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_der(bytes) {
                    return Self::ed25519(k.as_bytes());
                }
                Err(Error::BadKey(format!(
                    "unrecognised key encoding ({} bytes): expected Ed25519 (32), SEC1 P-256 (33/65) or SPKI DER",
                    bytes.len()
                )))
            }
        }
    }

    fn ed25519(bytes: &[u8]) -> Result<PublicKey> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::BadKey("Ed25519 keys are 32 bytes".into()))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map_err(|_| Error::BadKey("not a valid Ed25519 point".into()))?;
        if key.is_weak() {
            return Err(Error::BadKey("small-order Ed25519 key".into()));
        }
        Ok(PublicKey::Ed25519(key))
    }

    /// Decode and check the key is allowed for `ty`.
    pub fn decode_for(ty: IdentityType, input: &str) -> Result<PublicKey> {
        let key = Self::decode(input)?;
        if !ty.accepts(key.algorithm()) {
            return Err(Error::BadKey(format!(
                "identity type {ty} does not accept {} keys",
                key.algorithm().as_str()
            )));
        }
        Ok(key)
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            PublicKey::Ed25519(_) => KeyAlgorithm::Ed25519,
            PublicKey::P256(_) => KeyAlgorithm::Es256,
        }
    }

    /// One spelling per key, used for lookups: unpadded base64url of the raw Ed25519 bytes or of the
    /// compressed SEC1 point. The same key in any input encoding yields the same string.
    pub fn canonical(&self) -> String {
        match self {
            PublicKey::Ed25519(k) => b64::url_encode(k.as_bytes()),
            PublicKey::P256(k) => b64::url_encode(k.to_encoded_point(true).as_bytes()),
        }
    }

    /// Verify `signature` (any base64 spelling) over `message`.
    pub fn verify_b64(&self, message: &[u8], signature: &str) -> Result<()> {
        let sig = b64::decode_any("signature", signature)?;
        self.verify(message, &sig)
    }

    /// Verify raw signature bytes over `message`. Ed25519: 64 bytes, strict. ES256: 64-byte `r||s`
    /// or DER, low-S only.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<()> {
        match self {
            PublicKey::Ed25519(key) => {
                let sig = ed25519_dalek::Signature::from_slice(signature).map_err(|_| {
                    Error::malformed("signature", "Ed25519 signatures are 64 bytes")
                })?;
                key.verify_strict(message, &sig)
                    .map_err(|_| Error::BadSignature)
            }
            PublicKey::P256(key) => {
                let sig = decode_es256_signature(signature)?;
                if sig.normalize_s().is_some() {
                    // High-S: a malleated twin of a valid signature.
                    return Err(Error::BadSignature);
                }
                key.verify(message, &sig).map_err(|_| Error::BadSignature)
            }
        }
    }
}

impl PublicKey {
    /// The one spelling of a signature (Ed25519 bytes; ES256 as `r||s`), for replay detection:
    /// the same proof sent as DER and as `r||s` must be recognised as the same proof.
    pub fn canonical_signature(&self, signature: &[u8]) -> Result<Vec<u8>> {
        match self {
            PublicKey::Ed25519(_) => Ok(signature.to_vec()),
            PublicKey::P256(_) => Ok(decode_es256_signature(signature)?.to_bytes().to_vec()),
        }
    }
}

fn decode_es256_signature(bytes: &[u8]) -> Result<p256::ecdsa::Signature> {
    if bytes.len() == 64
        && let Ok(sig) = p256::ecdsa::Signature::from_slice(bytes)
    {
        return Ok(sig);
    }
    p256::ecdsa::Signature::from_der(bytes)
        .map_err(|_| Error::malformed("signature", "ES256 signatures are 64-byte r||s or DER"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer as _;
    use rand_core::OsRng;

    fn ed_key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::generate(&mut OsRng)
    }
    fn p256_key() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::random(&mut OsRng)
    }

    #[test]
    fn types_round_trip_and_fix_their_algorithms() {
        for t in ALL_TYPES {
            assert_eq!(t.as_str().parse::<IdentityType>().unwrap(), t);
            let id = t.new_id(&mut OsRng);
            assert_eq!(IdentityType::of_id(&id), Some(t), "{id}");
            assert_eq!(id.len(), t.id_prefix().len() + 16);
        }
        assert!("superuser".parse::<IdentityType>().is_err());
        assert!(IdentityType::User.accepts(KeyAlgorithm::Ed25519));
        assert!(!IdentityType::User.accepts(KeyAlgorithm::Es256));
        assert!(IdentityType::Gateway.accepts(KeyAlgorithm::Es256));
        assert!(!IdentityType::Gateway.accepts(KeyAlgorithm::Ed25519));
        assert!(IdentityType::Device.accepts(KeyAlgorithm::Ed25519));
        assert!(IdentityType::Device.accepts(KeyAlgorithm::Es256));
    }

    #[test]
    fn every_key_encoding_decodes_to_one_canonical_key() {
        use p256::pkcs8::EncodePublicKey as _;
        let ed = ed_key();
        let raw = ed.verifying_key().to_bytes();
        let spki = ed.verifying_key().to_public_key_der().unwrap();
        let a = PublicKey::decode(&b64::std_encode(&raw)).unwrap();
        let b = PublicKey::decode(&b64::url_encode(spki.as_bytes())).unwrap();
        assert_eq!(a.canonical(), b.canonical());

        let p = p256_key();
        let vk = p.verifying_key();
        let forms = [
            vk.to_encoded_point(true).as_bytes().to_vec(),
            vk.to_encoded_point(false).as_bytes().to_vec(),
            vk.to_public_key_der().unwrap().as_bytes().to_vec(),
        ];
        let canon: Vec<String> = forms
            .iter()
            .map(|f| PublicKey::decode(&b64::std_encode(f)).unwrap().canonical())
            .collect();
        assert!(canon.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn wrong_algorithm_for_type_is_refused() {
        let ed = b64::std_encode(&ed_key().verifying_key().to_bytes());
        let p = b64::std_encode(p256_key().verifying_key().to_encoded_point(true).as_bytes());
        assert!(PublicKey::decode_for(IdentityType::Gateway, &ed).is_err());
        assert!(PublicKey::decode_for(IdentityType::Admin, &p).is_err());
        assert!(PublicKey::decode_for(IdentityType::Device, &ed).is_ok());
        assert!(PublicKey::decode_for(IdentityType::Device, &p).is_ok());
    }

    #[test]
    fn bad_keys_are_refused() {
        // Identity point (small order) and an invalid encoding.
        let mut ident = [0u8; 32];
        ident[0] = 1;
        assert!(matches!(
            PublicKey::from_bytes(&ident),
            Err(Error::BadKey(_))
        ));
        assert!(PublicKey::from_bytes(&[0u8; 33]).is_err(), "not on curve");
        assert!(PublicKey::from_bytes(&[7u8; 17]).is_err());
        // A point of P-384 size is not P-256.
        assert!(PublicKey::from_bytes(&[4u8; 97]).is_err());
    }

    #[test]
    fn ed25519_signatures_verify_strictly() {
        let sk = ed_key();
        let key = PublicKey::Ed25519(sk.verifying_key());
        let sig = sk.sign(b"hello").to_bytes();
        key.verify(b"hello", &sig).unwrap();
        key.verify_b64(b"hello", &b64::url_encode(&sig)).unwrap();
        assert!(key.verify(b"hellO", &sig).is_err());
        assert!(key.verify(b"hello", &sig[..63]).is_err());
        // Non-canonical s (s + L) is refused.
        let mut bad = sig;
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = bad[32 + i] as u16 + l[i] as u16 + carry;
            bad[32 + i] = v as u8;
            carry = v >> 8;
        }
        assert!(key.verify(b"hello", &bad).is_err());
    }

    #[test]
    fn es256_accepts_raw_and_der_and_refuses_high_s() {
        let sk = p256_key();
        let key = PublicKey::P256(*sk.verifying_key());
        let sig: p256::ecdsa::Signature = sk.sign(b"msg");
        let sig = sig.normalize_s().unwrap_or(sig);
        key.verify(b"msg", &sig.to_bytes()).unwrap();
        key.verify(b"msg", sig.to_der().as_bytes()).unwrap();
        assert_eq!(
            key.canonical_signature(sig.to_der().as_bytes()).unwrap(),
            key.canonical_signature(&sig.to_bytes()).unwrap()
        );
        // Flip s to n - s: mathematically valid, but high-S.
        let (r, s) = sig.split_scalars();
        let high = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        assert!(key.verify(b"msg", &high.to_bytes()).is_err());
        assert!(key.verify(b"other", &sig.to_bytes()).is_err());
        assert!(key.verify(b"msg", &[0u8; 10]).is_err());
    }
}
