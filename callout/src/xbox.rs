//! xkey sealing with the shared secret computed once per server.
//!
//! A nats-server seals every authorization request with the same curve key pair (its own), so the
//! X25519 agreement between its key and ours never changes. nkeys' `XKey::open`/`seal` redo it on
//! every call (~40 µs each); here the `SalsaBox` is kept per server key. The wire format is the
//! same (`xkv1` + 24-byte nonce + ciphertext), which the tests check against nkeys itself.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crypto_box::aead::{Aead, AeadCore, OsRng};
use crypto_box::{PublicKey, SalsaBox, SecretKey};

const VERSION: &[u8] = b"xkv1";
const NONCE: usize = 24;

/// Our curve key and the boxes shared with each server key seen so far.
pub struct XBox {
    secret: SecretKey,
    public: String,
    boxes: RwLock<HashMap<String, Arc<SalsaBox>>>,
}

impl std::fmt::Debug for XBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XBox")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// Why sealing or opening failed (never says more: no oracle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XBoxError;

impl XBox {
    /// From an `SX…` seed.
    pub fn from_seed(seed: &str) -> Option<XBox> {
        let (prefix, raw) = nkeys::decode_seed(seed.trim()).ok()?;
        // 23 << 3: the curve-key prefix byte.
        if prefix != 184 {
            return None;
        }
        let public = nkeys::XKey::from_seed(seed.trim()).ok()?.public_key();
        Some(XBox {
            secret: SecretKey::from_bytes(raw),
            public,
            boxes: RwLock::new(HashMap::new()),
        })
    }

    pub fn public_key(&self) -> &str {
        &self.public
    }

    fn salsa(&self, peer: &str) -> Result<Arc<SalsaBox>, XBoxError> {
        if let Some(b) = self.boxes.read().ok().and_then(|m| m.get(peer).cloned()) {
            return Ok(b);
        }
        // nkeys validates the key (prefix and CRC); the raw 32 bytes sit between the prefix byte
        // and the CRC of its base32 form.
        nkeys::XKey::from_public_key(peer).map_err(|_| XBoxError)?;
        let decoded = data_encoding::BASE32_NOPAD
            .decode(peer.as_bytes())
            .map_err(|_| XBoxError)?;
        let raw: [u8; 32] = decoded
            .get(1..33)
            .and_then(|b| b.try_into().ok())
            .ok_or(XBoxError)?;
        let b = Arc::new(SalsaBox::new(&PublicKey::from(raw), &self.secret));
        if let Ok(mut m) = self.boxes.write() {
            // A handful of servers in a cluster; a bound keeps a hostile peer list small.
            if m.len() >= 1024 {
                m.clear();
            }
            m.insert(peer.to_owned(), b.clone());
        }
        Ok(b)
    }

    pub fn open(&self, input: &[u8], sender: &str) -> Result<Vec<u8>, XBoxError> {
        let rest = input.strip_prefix(VERSION).ok_or(XBoxError)?;
        if rest.len() <= NONCE {
            return Err(XBoxError);
        }
        let (nonce, ct) = rest.split_at(NONCE);
        self.salsa(sender)?
            .decrypt(nonce.into(), ct)
            .map_err(|_| XBoxError)
    }

    pub fn seal(&self, input: &[u8], recipient: &str) -> Result<Vec<u8>, XBoxError> {
        let nonce = SalsaBox::generate_nonce(&mut OsRng);
        let ct = self
            .salsa(recipient)?
            .encrypt(&nonce, input)
            .map_err(|_| XBoxError)?;
        let mut out = Vec::with_capacity(VERSION.len() + NONCE + ct.len());
        out.extend_from_slice(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURVE_SEED: &str = "SXAAXMRAEP6JWWHNB6IKFL554IE6LZVT6EY5MBRICPILTLOPHAG73I3YX4";

    #[test]
    fn interoperates_with_nkeys_both_ways() {
        let ours = XBox::from_seed(CURVE_SEED).unwrap();
        assert_eq!(
            ours.public_key(),
            "XAB3NANV3M6N7AHSQP2U5FRWKKUT7EG2ZXXABV4XVXYQRJGM4S2CZGHT"
        );
        let nk_ours = nkeys::XKey::from_seed(CURVE_SEED).unwrap();
        let server = nkeys::XKey::new();
        let sealed = server.seal(b"request", &nk_ours).unwrap();
        assert_eq!(
            ours.open(&sealed, &server.public_key()).unwrap(),
            b"request"
        );
        let reply = ours.seal(b"response", &server.public_key()).unwrap();
        assert_eq!(server.open(&reply, &nk_ours).unwrap(), b"response");
        // Cached box, second message.
        let sealed2 = server.seal(b"again", &nk_ours).unwrap();
        assert_eq!(ours.open(&sealed2, &server.public_key()).unwrap(), b"again");
        // Tampering, truncation, wrong sender, wrong version: refused.
        let mut bad = sealed2.clone();
        let n = bad.len() - 1;
        bad[n] ^= 1;
        assert!(ours.open(&bad, &server.public_key()).is_err());
        assert!(ours.open(&sealed2[..20], &server.public_key()).is_err());
        assert!(
            ours.open(&sealed2, &nkeys::XKey::new().public_key())
                .is_err()
        );
        assert!(
            ours.open(
                b"xkv2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                &server.public_key()
            )
            .is_err()
        );
        assert!(
            XBox::from_seed("SAANDLKMXL6CUS3CP52WIXBEDN6YJ545GDKC65U5JZPPV6WH6ESWUA6YAI").is_none()
        );
    }
}
