//! Codec tests, with the keys of nats-server's `auth_callout_test.go` as golden values.

use super::creds::{format_user_creds, parse_creds};
use super::*;
use crate::secret::SecretString;

// From nats-server server/auth_callout_test.go.
const CALLOUT_USER_SEED: &str = "SUAP277QP7U4JMFFPVZHLJYEQJ2UHOTYVEIZJYAWRJXQLP4FRSEHYZJJOU";
const CALLOUT_USER_PUB: &str = "UBO2MQV67TQTVIRV3XFTEZOACM4WLOCMCDMAWN5QVN5PI2N6JHTVDRON";
const CALLOUT_ISSUER_SEED: &str = "SAANDLKMXL6CUS3CP52WIXBEDN6YJ545GDKC65U5JZPPV6WH6ESWUA6YAI";
const CALLOUT_ISSUER_PUB: &str = "ABJHLOVMPA4CI6R5KLNGOB4GSLNIY7IOUPAJC4YFNDLQVIOBYQGUWVLA";
const CURVE_SEED: &str = "SXAAXMRAEP6JWWHNB6IKFL554IE6LZVT6EY5MBRICPILTLOPHAG73I3YX4";
const CURVE_PUB: &str = "XAB3NANV3M6N7AHSQP2U5FRWKKUT7EG2ZXXABV4XVXYQRJGM4S2CZGHT";

const NOW: i64 = 1_700_000_000;

#[test]
fn golden_keys_of_the_upstream_callout_tests() {
    assert_eq!(
        nkeys::KeyPair::from_seed(CALLOUT_USER_SEED)
            .unwrap()
            .public_key(),
        CALLOUT_USER_PUB
    );
    assert_eq!(
        nkeys::KeyPair::from_seed(CALLOUT_ISSUER_SEED)
            .unwrap()
            .public_key(),
        CALLOUT_ISSUER_PUB
    );
    assert_eq!(
        nkeys::XKey::from_seed(CURVE_SEED).unwrap().public_key(),
        CURVE_PUB
    );
}

fn user_claims() -> NatsClaims<User> {
    let mut c = NatsClaims::<User>::new(CALLOUT_USER_PUB);
    c.name = "dev-1".into();
    c.aud = "APP".into();
    c.exp = NOW + 60;
    c.nats.permissions.publish.allow = vec!["devices.d1.>".into()];
    c.nats.permissions.subscribe.allow = vec!["_INBOX.>".into()];
    c
}

#[test]
fn user_jwt_round_trip_with_exact_header_and_go_style_jti() {
    let issuer = nkeys::KeyPair::from_seed(CALLOUT_ISSUER_SEED).unwrap();
    let mut c = user_claims();
    let jwt = encode(&mut c, &issuer, NOW).unwrap();
    let header = jwt.split('.').next().unwrap();
    assert_eq!(
        b64::url_decode_strict("h", header).unwrap(),
        HEADER.as_bytes()
    );
    assert_eq!(c.iss, CALLOUT_ISSUER_PUB);
    assert_eq!(
        c.jti,
        jti_of(&NatsClaims {
            jti: String::new(),
            ..c.clone()
        })
        .unwrap()
    );
    assert_eq!(c.jti.len(), 52, "base32 of 32 bytes, unpadded");
    let back: NatsClaims<User> = decode(&jwt, NOW).unwrap();
    assert_eq!(back, c);
    // The payload carries type and version inside `nats`, and Go's default limits.
    let payload: serde_json::Value = serde_json::from_slice(
        &b64::url_decode_strict("p", jwt.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(payload["nats"]["type"], "user");
    assert_eq!(payload["nats"]["version"], 2);
    assert_eq!(payload["nats"]["subs"], -1);
    assert_eq!(payload["nats"]["pub"]["allow"][0], "devices.d1.>");
}

#[test]
fn issuer_key_type_is_enforced_both_ways() {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let mut c = user_claims();
    assert!(
        encode(&mut c, &operator, NOW).is_err(),
        "users are issued by accounts"
    );
    let mut a = NatsClaims::<Account>::new(account.public_key());
    assert!(
        encode(&mut a, &account, NOW).is_err(),
        "accounts are issued by operators"
    );
    let jwt = encode(&mut a, &operator, NOW).unwrap();
    let back: NatsClaims<Account> = decode(&jwt, NOW).unwrap();
    assert_eq!(back.nats.limits, AccountLimits::default());
    // Decoding as the wrong type fails.
    assert!(decode::<User>(&jwt, NOW).is_err());
    assert!(decode::<Operator>(&jwt, NOW).is_err());
}

#[test]
fn tampering_expiry_and_garbage_are_rejected() {
    let issuer = nkeys::KeyPair::from_seed(CALLOUT_ISSUER_SEED).unwrap();
    let mut c = user_claims();
    let jwt = encode(&mut c, &issuer, NOW).unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut evil = c.clone();
    evil.nats.permissions.publish.allow = vec![">".into()];
    let other = encode(&mut evil, &nkeys::KeyPair::new_account(), NOW).unwrap();
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        other.split('.').nth(1).unwrap(),
        parts[2]
    );
    assert!(decode::<User>(&swapped, NOW).is_err());
    assert!(matches!(
        decode::<User>(&jwt, NOW + 61),
        Err(Error::Token(_))
    ));
    for bad in [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.!!!.!!!",
        &"A".repeat(MAX_NATS_JWT_LEN + 1),
    ] {
        assert!(decode::<User>(bad, NOW).is_err(), "{bad:.20}");
    }
    // v1 algorithm name is refused.
    let v1 = format!(
        "{}.{}.{}",
        b64::url_encode(br#"{"typ":"JWT","alg":"ed25519"}"#),
        parts[1],
        parts[2]
    );
    assert!(decode::<User>(&v1, NOW).is_err());
}

#[test]
fn authorization_response_round_trip() {
    let issuer = nkeys::KeyPair::from_seed(CALLOUT_ISSUER_SEED).unwrap();
    let mut r = NatsClaims::<AuthorizationResponse>::new(CALLOUT_USER_PUB);
    r.aud = "NSERVERID".into();
    r.nats.error = Some("token_expired".into());
    let jwt = encode(&mut r, &issuer, NOW).unwrap();
    let back: NatsClaims<AuthorizationResponse> = decode(&jwt, NOW).unwrap();
    assert_eq!(back.nats.error.as_deref(), Some("token_expired"));
    assert!(back.nats.jwt.is_none());
}

#[test]
fn unknown_fields_survive_a_round_trip() {
    let json = r#"{"pub":{"allow":["a"]},"subs":-1,"data":-1,"payload":-1,"src":["10.0.0.0/8"],"tags":["x"]}"#;
    let u: User = serde_json::from_str(json).unwrap();
    assert_eq!(u.extra["src"][0], "10.0.0.0/8");
    let again = serde_json::to_value(&u).unwrap();
    assert_eq!(again["tags"][0], "x");
}

#[test]
fn creds_are_byte_exact_and_parse_back() {
    let issuer = nkeys::KeyPair::from_seed(CALLOUT_ISSUER_SEED).unwrap();
    let mut c = user_claims();
    c.exp = 0;
    let jwt = encode(&mut c, &issuer, NOW).unwrap();
    let seed = SecretString::new(CALLOUT_USER_SEED.into());
    let text = format_user_creds(&jwt, &seed).unwrap();
    let expected = format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n************************* IMPORTANT *************************\nNKEY Seed printed below can be used to sign and prove identity.\nNKEYs are sensitive and should be treated as secrets.\n\n-----BEGIN USER NKEY SEED-----\n{CALLOUT_USER_SEED}\n------END USER NKEY SEED------\n\n*************************************************************\n"
    );
    assert_eq!(text, expected);
    let (j, s) = parse_creds(&text).unwrap();
    assert_eq!(j, jwt);
    assert_eq!(s.expose(), CALLOUT_USER_SEED);
    let (j2, _) = parse_creds(&text.replace('\n', "\r\n")).unwrap();
    assert_eq!(j2, jwt);
    // Seed for another key, or not a user seed, is refused.
    let other = SecretString::new(nkeys::KeyPair::new_user().seed().unwrap());
    assert!(format_user_creds(&jwt, &other).is_err());
    assert!(format_user_creds(&jwt, &SecretString::new(CALLOUT_ISSUER_SEED.into())).is_err());
    assert!(parse_creds("no blocks here").is_err());
    assert!(parse_creds("-----BEGIN NATS USER JWT-----\nabc\n").is_err());
}
