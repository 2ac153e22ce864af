//! NATS authorization requests as the callout receives them: `nats_jwt::decode`/`decode_at` of
//! arbitrary text as an authorization-request JWT (and as the other claim types), requests this
//! target signs itself with a fixed server key, and the xkey-sealed envelope opened by the
//! callout's `XBox` (its `xbox.rs`, compiled in; see the crate docs).
//!
//! Input: the first byte picks the mode.
//! - `r` + text: the text is the JWT.
//! - `s` + options + `header\npayload`: signed by the fixed server key (an empty header line is
//!   the header Go writes; option bit 0 sets the payload's `iss` to the server key, so the
//!   signature can verify; bits 1–2 pick the clock).
//! - `x` + 24-byte nonce + plaintext: sealed by the server's curve key to ours, opened by
//!   `XBox::open`, then decoded as in `r`.
//! - `o` + sender choice + bytes: the bytes handed to `XBox::open` as they are.
//!
//! Properties: nothing panics; an accepted request is issued by a server key and live at `now`;
//! `decode(now)` accepting implies `decode_at(None)` accepting the same claims; an accepted
//! request re-encoded and decoded again is the same request; `open(seal(m)) == m`, and a sealed
//! message with any byte changed does not open.
#![no_main]
// A broken invariant must abort the run: a panic is how a fuzz target reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use broker_auth::nats_jwt::{
    self, Account, AuthorizationRequest, AuthorizationResponse, ClaimKind, NatsClaims, Operator,
    User,
};
use broker_auth_fuzz::{NOW, Nats, nats};
use libfuzzer_sys::fuzz_target;

const CLOCKS: [i64; 4] = [NOW, 0, i64::MIN, i64::MAX];

fn decode_all(text: &str, now: i64) {
    // The callout's path: an authorization request.
    let at_now = nats_jwt::decode::<AuthorizationRequest>(text, now);
    let any_time = nats_jwt::decode_at::<AuthorizationRequest>(text, None);
    if let Ok(c) = &at_now {
        assert_eq!(any_time.as_ref().ok(), Some(c), "time checks only remove");
        assert!(c.iss.starts_with('N'), "issued by a server key: {}", c.iss);
        assert!(c.exp == 0 || now <= c.exp);
        assert!(c.nbf == 0 || now >= c.nbf);
    }
    if let Ok(c) = any_time {
        round_trip(c);
    }
    // The same codec reads the other claim types (stored credentials, resolver pushes).
    other::<User>(text);
    other::<Account>(text);
    other::<Operator>(text);
    other::<AuthorizationResponse>(text);
}

fn other<T: ClaimKind + std::fmt::Debug>(text: &str) {
    if let Ok(c) = nats_jwt::decode_at::<T>(text, None) {
        assert!(
            c.iss
                .chars()
                .next()
                .is_some_and(|k| T::ISSUERS.contains(&k))
        );
    }
}

/// Re-encode an accepted request with the server key and decode it: nothing is lost or changed
/// but what `encode` sets (`iss`, `iat`, `jti`).
fn round_trip(c: NatsClaims<AuthorizationRequest>) {
    let server = &nats().server;
    if c.iss != server.public_key() || c.sub.is_empty() {
        return;
    }
    let mut again = c.clone();
    let jwt = nats_jwt::encode(&mut again, server, c.iat).expect("re-encode");
    let back = nats_jwt::decode_at::<AuthorizationRequest>(&jwt, None).expect("decode again");
    assert_eq!(back, again, "encode/decode round trip");
    let mut expected = c;
    expected.jti = again.jti.clone();
    assert_eq!(back, expected, "only jti may change");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let n = nats();
    match mode {
        b's' if !rest.is_empty() => {
            let opts = rest[0];
            let body = &rest[1..];
            let (header, payload) = match body.iter().position(|&b| b == b'\n') {
                Some(i) => (&body[..i], &body[i + 1..]),
                None => (&b""[..], body),
            };
            let header = if header.is_empty() {
                nats_jwt::HEADER.as_bytes()
            } else {
                header
            };
            let mut payload = payload.to_vec();
            if opts & 1 == 1
                && let Ok(serde_json::Value::Object(mut m)) =
                    serde_json::from_slice::<serde_json::Value>(&payload)
            {
                m.insert("iss".into(), n.server.public_key().into());
                payload = serde_json::to_vec(&m).unwrap();
            }
            let jwt = Nats::sign_raw(header, &payload, &n.server);
            decode_all(&jwt, CLOCKS[usize::from(opts >> 1) % CLOCKS.len()]);
        }
        b'x' if rest.len() >= 24 => {
            let (nonce, plain) = rest.split_at(24);
            let sealed = n.seal_to_us(plain, nonce.try_into().unwrap());
            let sender = n.server_xkey.public_key();
            let opened = n.ours.open(&sealed, &sender).expect("open(seal(m))");
            assert_eq!(opened, plain);
            // Any changed byte (version, nonce, ciphertext, tag) must refuse to open.
            let pos = usize::from(*plain.first().unwrap_or(&0)) % sealed.len();
            let mut bad = sealed.clone();
            bad[pos] ^= 0x80;
            assert!(n.ours.open(&bad, &sender).is_err(), "tampered at {pos}");
            assert!(n.ours.open(&sealed[..sealed.len() - 1], &sender).is_err());
            if let Ok(text) = std::str::from_utf8(&opened) {
                decode_all(text, NOW);
            }
        }
        b'o' if !rest.is_empty() => {
            let (choice, bytes) = (rest[0], &rest[1..]);
            let text_sender = std::str::from_utf8(bytes.get(..56).unwrap_or(bytes)).unwrap_or("");
            let sender = match choice % 5 {
                0 => n.server_xkey.public_key(),
                1 => n.ours.public_key().to_owned(),
                2 => n.server.public_key(),
                3 => text_sender.to_owned(),
                _ => "XBADKEY".to_owned(),
            };
            if let Ok(plain) = n.ours.open(bytes, &sender) {
                // Only a real seal by that sender opens; fuzzing cannot forge one.
                if let Ok(text) = std::str::from_utf8(&plain) {
                    decode_all(text, NOW);
                }
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                decode_all(text, NOW);
            }
        }
    }
});
