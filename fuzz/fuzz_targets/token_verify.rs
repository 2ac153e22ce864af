//! Strict JWT verification (`broker_auth::token`): arbitrary bytes as a token, and tokens this
//! target signs itself with the fixed keys around an arbitrary header and payload (so the
//! header allow-list, the claims parsing and the time checks are reached past the signature).
//!
//! Input: the first byte picks the mode.
//! - `r` + text: the text is the token.
//! - `s` + signer (`0`–`5`) + clock (`0`–`7`) + `header\npayload`: signed here; an empty header
//!   line means the header the product writes for that signer. Then byte flips of the token.
//! - `j` + JSON: a JWKS document imported as a verify-only key set.
//!
//! Properties: nothing panics; the cache answers as the verifier; an accepted token has an
//! allow-listed header, the configured issuer and audience, is live at `now` and not revoked;
//! changing any one character of an accepted token makes it refused (no malleability).
#![no_main]
// A broken invariant must abort the run: a panic is how a fuzz target reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use broker_auth::b64;
use broker_auth::principal::{Principal, Protocol};
use broker_auth::token::{Audience, Claims, KeySet, TokenUse, VerifyCache};
use broker_auth_fuzz::{AUDIENCE, ISSUER, NOW, REVOKED_SID, Signer, tokens};
use libfuzzer_sys::fuzz_target;

const CLOCKS: [i64; 8] = [NOW, NOW + 29, NOW + 31, NOW - 31, 0, -1, i64::MIN, i64::MAX];
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn cache() -> &'static VerifyCache {
    static C: OnceLock<VerifyCache> = OnceLock::new();
    C.get_or_init(|| VerifyCache::new(64))
}

fn check(token: &str, now: i64, flips: &[u8]) {
    let t = tokens();
    let (keys, v, revs) = (&t.keys, &t.verifier, &t.revocations);
    let access = v.verify(keys, token, now, revs, TokenUse::Access);
    let refresh = v.verify(keys, token, now, revs, TokenUse::Refresh);
    let with_app = v.verify_including_app_keys(keys, token, now, revs, TokenUse::Access);
    let cached = cache().verify(v, keys, token, now, revs, TokenUse::Access);
    assert_eq!(cached, access, "the cache must answer as the verifier");

    if let Ok((c, app_key)) = &with_app {
        if *app_key {
            assert_eq!(c.tenant.as_deref(), Some(broker_auth_fuzz::APP));
        } else {
            assert_eq!(access.as_ref(), Ok(c), "app-key flag off: same as verify");
        }
        accepted(token, c, now, TokenUse::Access);
    }
    if let Ok(c) = &access {
        assert!(matches!(with_app, Ok((_, false))));
        accepted(token, c, now, TokenUse::Access);
        // Changing any one character of an accepted token must get it refused.
        for (i, f) in flips.chunks(2).take(4).enumerate() {
            let pos = (usize::from(f[0]) << 8 | usize::from(*f.get(1).unwrap_or(&0))) % token.len();
            let mut bytes = token.as_bytes().to_vec();
            if bytes[pos] == b'.' {
                continue;
            }
            let mut repl = B64URL[(i * 7 + usize::from(f[0])) % B64URL.len()];
            if repl == bytes[pos] {
                repl = if repl == b'A' { b'B' } else { b'A' };
            }
            bytes[pos] = repl;
            let changed = String::from_utf8(bytes).unwrap();
            let r = v.verify(keys, &changed, now, revs, TokenUse::Access);
            assert!(
                r.is_err(),
                "a token changed at byte {pos} still verifies: {changed}"
            );
        }
    }
    if let Ok(c) = &refresh {
        accepted(token, c, now, TokenUse::Refresh);
    }
}

fn accepted(token: &str, c: &Claims, now: i64, want: TokenUse) {
    assert!(token.len() <= broker_auth::token::MAX_TOKEN_LEN);
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&b64::url_decode_strict("h", header).unwrap()).unwrap();
    let fields = header.as_object().expect("header is an object");
    assert!(
        fields
            .keys()
            .all(|k| ["alg", "kid", "typ"].contains(&k.as_str())),
        "header outside the allow-list was accepted: {header}"
    );
    assert_eq!(c.iss, ISSUER);
    match &c.aud {
        Audience::One(a) => assert_eq!(a, AUDIENCE),
        Audience::Many(v) => assert!(v.iter().any(|a| a == AUDIENCE)),
    }
    assert!(!c.sub.is_empty());
    assert_eq!(c.token_use, want);
    assert!(now <= c.exp.saturating_add(30) && now.saturating_add(30) >= c.nbf);
    assert_ne!(c.sid.as_deref(), Some(REVOKED_SID));
    // What every enforcement point does next; must not panic either.
    let _ = Principal::from_claims(c, Protocol::Mqtt, Some("client-1"));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        b's' if rest.len() >= 2 => {
            let signer = Signer::ALL[usize::from(rest[0]) % Signer::ALL.len()];
            let now = CLOCKS[usize::from(rest[1]) % CLOCKS.len()];
            let body = &rest[2..];
            let (header, payload) = match body.iter().position(|&b| b == b'\n') {
                Some(i) => (&body[..i], &body[i + 1..]),
                None => (&b""[..], body),
            };
            let header = if header.is_empty() {
                tokens().header(signer)
            } else {
                header.to_vec()
            };
            let token = tokens().sign_raw(&header, payload, signer);
            // Flip positions come from the payload bytes (varied, and stable for a seed).
            check(&token, now, payload);
        }
        b'j' => {
            if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(rest)
                && let Ok(set) = KeySet::from_jwks(&doc)
            {
                // Imported keys verify only: none of them can sign.
                assert!(set.active().is_none());
                let _ = set.jwks();
            }
        }
        _ => {
            if let Ok(token) = std::str::from_utf8(rest) {
                check(token, NOW, rest);
            }
        }
    }
});
