use super::*;
use rand_core::OsRng;
use std::sync::Arc;

use broker_auth::nats_jwt::claims::{ClientInfo, ConnectOpts, ServerId};
use broker_auth::revocation::RevocationSet;
use broker_auth::token::{Claims, TokenAlg, TokenConfig, TokenKey, TokenUse};
use broker_auth::token::{KeySet, Verifier};

const NOW: i64 = 1_800_000_000;
const ISSUER_SEED: &str = "SAANDLKMXL6CUS3CP52WIXBEDN6YJ545GDKC65U5JZPPV6WH6ESWUA6YAI";
const CURVE_SEED: &str = "SXAAXMRAEP6JWWHNB6IKFL554IE6LZVT6EY5MBRICPILTLOPHAG73I3YX4";

fn shared() -> (Shared, TokenConfig) {
    let cfg = TokenConfig::new("https://auth.test", "broker-auth");
    let keys = KeySet::new(vec![Arc::new(
        TokenKey::generate(TokenAlg::EdDSA, &mut OsRng).unwrap(),
    )]);
    let policy = broker_auth_runtime::policy_dir::load_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
    )
    .unwrap();
    (
        Shared::new(
            keys,
            Verifier::new(cfg.clone()),
            RevocationSet::new(),
            policy,
            100_000,
        ),
        cfg,
    )
}

fn token(s: &Shared, cfg: &TokenConfig, sub: &str, f: impl FnOnce(&mut Claims)) -> String {
    let mut c = Claims::new(cfg, sub, NOW, 600, TokenUse::Access, &mut OsRng);
    f(&mut c);
    s.keys().sign(&c).unwrap()
}

/// A request as nats-server builds it, signed by a server key.
fn request(server: &nkeys::KeyPair, opts: ConnectOpts, xkey: Option<&str>) -> String {
    let user = nkeys::KeyPair::new_user();
    let mut r = NatsClaims::<AuthorizationRequest>::new(user.public_key());
    r.aud = "nats-authorization-request".into();
    r.nats.server_id = ServerId {
        name: "n1".into(),
        id: server.public_key(),
        xkey: xkey.map(str::to_owned),
        ..Default::default()
    };
    r.nats.user_nkey = user.public_key();
    r.nats.client_info = ClientInfo {
        id: Some(7),
        ..Default::default()
    };
    r.nats.connect_opts = opts;
    nats_jwt::encode(&mut r, server, NOW).unwrap()
}

fn responder(xkey: bool) -> Responder {
    let accounts = AccountMap {
        default: "APP".into(),
        tenants: [("acme".to_owned(), "ACME".to_owned())].into(),
    };
    Responder::new(ISSUER_SEED, xkey.then_some(CURVE_SEED), accounts).unwrap()
}

fn decode_response(bytes: &[u8]) -> NatsClaims<AuthorizationResponse> {
    nats_jwt::decode(std::str::from_utf8(bytes).unwrap(), NOW).unwrap()
}

#[test]
fn a_valid_token_gets_a_user_jwt_with_its_grants() {
    let (s, cfg) = shared();
    let server = nkeys::KeyPair::new_server();
    let t = token(&s, &cfg, "dev-AAAAAAAAAAAAAAAA", |c| {
        c.sid = Some("ann-1".into());
        c.tenant = Some("acme".into());
    });
    let req = request(
        &server,
        ConnectOpts {
            auth_token: Some(t),
            ..Default::default()
        },
        None,
    );
    let (bytes, outcome) = responder(false)
        .respond(&s, req.as_bytes(), None, NOW)
        .unwrap();
    assert_eq!(outcome.result, Ok("authenticated"));
    assert_eq!(outcome.session.as_deref(), Some("ann-1"));
    assert_eq!(outcome.client_cid, Some(7));
    let resp = decode_response(&bytes);
    assert_eq!(resp.aud, server.public_key());
    assert_eq!(resp.sub, outcome.user_nkey);
    assert!(resp.nats.error.is_none());
    let user: NatsClaims<User> = nats_jwt::decode(resp.nats.jwt.as_deref().unwrap(), NOW).unwrap();
    assert_eq!(
        user.sub, outcome.user_nkey,
        "sub is the server's per-connection key"
    );
    assert_eq!(user.aud, "ACME", "tenant mapped to its account");
    assert_eq!(user.exp, NOW + 600, "expires with the token");
    assert_eq!(user.name, "dev-AAAAAAAAAAAAAAAA");
    assert_eq!(
        user.nats.permissions.publish.allow,
        vec![
            "devices.dev-AAAAAAAAAAAAAAAA",
            "devices.dev-AAAAAAAAAAAAAAAA.>"
        ]
    );
    assert!(user.nats.permissions.resp.is_some());
}

#[test]
fn tokens_in_pass_and_jwt_fields_work_and_bad_ones_get_error_codes() {
    let (s, cfg) = shared();
    let server = nkeys::KeyPair::new_server();
    let good = token(&s, &cfg, "dev-AAAAAAAAAAAAAAAA", |_| {});
    for opts in [
        ConnectOpts {
            user: Some("anything".into()),
            pass: Some(good.clone()),
            ..Default::default()
        },
        ConnectOpts {
            jwt: Some(good.clone()),
            ..Default::default()
        },
    ] {
        let (b, o) = responder(false)
            .respond(&s, request(&server, opts, None).as_bytes(), None, NOW)
            .unwrap();
        assert!(o.result.is_ok(), "{o:?}");
        assert!(decode_response(&b).nats.jwt.is_some());
    }
    let expired = token(&s, &cfg, "dev-AAAAAAAAAAAAAAAA", |c| c.exp = NOW - 100);
    let foreign = token(&s, &cfg, "dev-AAAAAAAAAAAAAAAA", |c| {
        c.aud = broker_auth::token::Audience::One("other".into())
    });
    let revoked = token(&s, &cfg, "dev-AAAAAAAAAAAAAAAA", |c| {
        c.sid = Some("ann-x".into())
    });
    s.revoke_session("ann-x", NOW + 600);
    let nobody = token(&s, &cfg, "usr-AAAAAAAAAAAAAAAA", |_| {});
    for (t, code) in [
        (None, DenyCode::MissingToken),
        (Some("garbage".to_owned()), DenyCode::MalformedToken),
        (Some(expired), DenyCode::Expired),
        (Some(foreign), DenyCode::WrongAudience),
        (Some(revoked), DenyCode::Revoked),
        (Some(nobody), DenyCode::NoGrants),
    ] {
        let req = request(
            &server,
            ConnectOpts {
                auth_token: t,
                ..Default::default()
            },
            None,
        );
        let (b, o) = responder(false)
            .respond(&s, req.as_bytes(), None, NOW)
            .unwrap();
        assert_eq!(o.result, Err(code));
        let resp = decode_response(&b);
        assert_eq!(resp.nats.error.as_deref(), Some(code.as_str()));
        assert!(resp.nats.jwt.is_none(), "exactly one of jwt / error");
    }
}

#[test]
fn sealed_requests_get_sealed_responses() {
    let (s, cfg) = shared();
    let server = nkeys::KeyPair::new_server();
    let server_x = nkeys::XKey::new();
    let ours = nkeys::XKey::from_seed(CURVE_SEED).unwrap();
    let t = token(&s, &cfg, "dev-AAAAAAAAAAAAAAAA", |_| {});
    let req = request(
        &server,
        ConnectOpts {
            auth_token: Some(t),
            ..Default::default()
        },
        Some(&server_x.public_key()),
    );
    let sealed = server_x.seal(req.as_bytes(), &ours).unwrap();
    let (bytes, o) = responder(true)
        .respond(&s, &sealed, Some(&server_x.public_key()), NOW)
        .unwrap();
    assert!(o.result.is_ok());
    assert!(!bytes.starts_with(b"eyJ"), "response must be sealed");
    let opened = server_x.open(&bytes, &ours).unwrap();
    assert!(decode_response(&opened).nats.jwt.is_some());
    // A sealed request without our xkey configured cannot be answered (the server then refuses).
    assert_eq!(
        responder(false)
            .respond(&s, &sealed, Some(&server_x.public_key()), NOW)
            .unwrap_err(),
        Unanswerable::NoXkey
    );
    // Tampered ciphertext.
    let mut bad = sealed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        responder(true)
            .respond(&s, &bad, Some(&server_x.public_key()), NOW)
            .unwrap_err(),
        Unanswerable::Unseal
    );
}

#[test]
fn forged_and_garbage_requests_are_refused() {
    let (s, cfg) = shared();
    let t = token(&s, &cfg, "dev-AAAAAAAAAAAAAAAA", |_| {});
    assert!(matches!(
        responder(false).respond(&s, b"not a jwt", None, NOW),
        Err(Unanswerable::BadRequest(_))
    ));
    assert!(matches!(
        responder(false).respond(&s, &[0xff, 0xfe], None, NOW),
        Err(Unanswerable::BadRequest(_))
    ));
    // A request signed by one server but naming another: answered with an error, never a user.
    let server = nkeys::KeyPair::new_server();
    let other = nkeys::KeyPair::new_server();
    let user = nkeys::KeyPair::new_user();
    let mut r = NatsClaims::<AuthorizationRequest>::new(user.public_key());
    r.nats.server_id = ServerId {
        id: other.public_key(),
        ..Default::default()
    };
    r.nats.user_nkey = user.public_key();
    r.nats.connect_opts = ConnectOpts {
        auth_token: Some(t),
        ..Default::default()
    };
    let req = nats_jwt::encode(&mut r, &server, NOW).unwrap();
    let (b, o) = responder(false)
        .respond(&s, req.as_bytes(), None, NOW)
        .unwrap();
    assert!(o.result.is_err());
    assert!(decode_response(&b).nats.jwt.is_none());
    assert!(
        Responder::new(
            "SUAP277QP7U4JMFFPVZHLJYEQJ2UHOTYVEIZJYAWRJXQLP4FRSEHYZJJOU",
            None,
            AccountMap::default()
        )
        .is_err()
    );
    assert!(!format!("{:?}", responder(true)).contains("SX"));
}
