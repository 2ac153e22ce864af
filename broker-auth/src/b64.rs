//! Base64 in the forms clients actually send.
//!
//! Keys and signatures arrive as standard or URL-safe base64, padded or not (http-api.md). JWT
//! segments, by contrast, must be canonical unpadded base64url: accepting a second spelling of the
//! same bytes would make tokens malleable.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::error::{Error, Result};

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(false);
const STD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Largest encoded input we decode at all; protects against oversized bodies reaching the decoder.
pub const MAX_ENCODED_LEN: usize = 16 * 1024;

/// Decode standard or URL-safe base64, padded or not. Mixed alphabets are refused.
pub fn decode_any(what: &'static str, input: &str) -> Result<Vec<u8>> {
    let input = input.trim();
    if input.is_empty() {
        return Err(Error::malformed(what, "empty"));
    }
    if input.len() > MAX_ENCODED_LEN {
        return Err(Error::malformed(what, "too long"));
    }
    let urlsafe = input.contains(['-', '_']);
    let standard = input.contains(['+', '/']);
    let engine = match (urlsafe, standard) {
        (true, true) => return Err(Error::malformed(what, "mixed base64 alphabets")),
        (true, false) => &URL_ANY_PAD,
        _ => &STD_ANY_PAD,
    };
    engine
        .decode(input)
        .map_err(|e| Error::malformed_from(what, "bad base64", e))
}

/// Canonical unpadded base64url encoding (JWT segments, challenges, key ids).
pub fn url_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict decoding of canonical unpadded base64url: padding and non-zero trailing bits are errors.
pub fn url_decode_strict(what: &'static str, input: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(input)
        .map_err(|e| Error::malformed_from(what, "bad base64url", e))
}

/// Standard padded base64 (for places where a peer expects it, e.g. Wycheproof-style fixtures).
pub fn std_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_decodes_to_the_same_bytes() {
        let bytes: Vec<u8> = (0u8..=40).collect();
        let std_pad = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let std_nopad = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes);
        let url_pad = base64::engine::general_purpose::URL_SAFE.encode(&bytes);
        let url_nopad = url_encode(&bytes);
        for s in [std_pad, std_nopad, url_pad, url_nopad] {
            assert_eq!(decode_any("x", &s).unwrap(), bytes, "{s}");
        }
    }

    #[test]
    fn garbage_and_oversize_are_errors() {
        assert!(decode_any("x", "").is_err());
        assert!(decode_any("x", "!!!!").is_err());
        assert!(decode_any("x", "ab-+").is_err(), "mixed alphabets");
        assert!(decode_any("x", &"A".repeat(MAX_ENCODED_LEN + 4)).is_err());
    }

    #[test]
    fn strict_decoder_refuses_padding_and_trailing_bits() {
        assert_eq!(url_decode_strict("x", "QQ").unwrap(), b"A");
        assert!(url_decode_strict("x", "QQ==").is_err());
        // "QR" decodes to 'A' too if trailing bits were ignored.
        assert!(url_decode_strict("x", "QR").is_err());
    }
}
