//! Identities and key login, in process.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use p256::pkcs8::EncodePublicKey as _;
use serde_json::json;

use super::harness::{Harness, TestKey, harness};

const TYPES: [&str; 8] = [
    "root",
    "admin",
    "user",
    "developer",
    "gateway",
    "device",
    "integration",
    "internal",
];

fn accepts(kind: &str, ed: bool) -> bool {
    match kind {
        "root" | "admin" | "user" | "developer" => ed,
        "gateway" | "integration" | "internal" => !ed,
        _ => true,
    }
}

#[tokio::test]
async fn every_identity_type_with_the_right_and_the_wrong_key_algorithm() {
    let h = harness(&[]);
    for kind in TYPES {
        for ed in [true, false] {
            let key = if ed { TestKey::ed() } else { TestKey::p256() };
            let r = h.register(kind, &key.public(), json!({})).await;
            if accepts(kind, ed) {
                assert_eq!(r.status, 201, "{kind} ed={ed}: {:?}", r.body);
                let id = r.body["identity_id"].as_str().unwrap();
                let prefix = match kind {
                    "root" => "root-",
                    "admin" => "adm-",
                    "user" => "usr-",
                    "developer" => "dvl-",
                    "gateway" => "gw-",
                    "device" => "dev-",
                    "integration" => "int-",
                    _ => "svc-",
                };
                assert!(id.starts_with(prefix), "{id}");
                assert_eq!(
                    r.body["key_algorithm"],
                    if ed { "Ed25519" } else { "ES256" }
                );
                // The identity can log in with its key.
                let login = h.login(&key).await;
                assert_eq!(login.status, 200, "{kind}: {:?}", login.body);
                assert_eq!(login.body["identity_id"], id);
                assert_eq!(login.body["token_type"], "Bearer");
            } else {
                assert_eq!(r.status, 400, "{kind} ed={ed}: {:?}", r.body);
                assert_eq!(r.error(), "VALIDATION_ERROR");
            }
        }
    }
    let r = h
        .register("superhero", &TestKey::ed().public(), json!({}))
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn every_key_and_signature_encoding_is_accepted() {
    let h = harness(&[]);
    // Ed25519 keys in four base64 spellings, each a separate identity; signatures likewise.
    type Spelling = fn(&[u8]) -> String;
    let spellings: [Spelling; 4] = [
        |b| STANDARD.encode(b),
        |b| STANDARD_NO_PAD.encode(b),
        |b| URL_SAFE.encode(b),
        |b| URL_SAFE_NO_PAD.encode(b),
    ];
    for enc in spellings {
        let key = TestKey::ed();
        let pk = enc(&key.public_raw());
        assert_eq!(h.register("user", &pk, json!({})).await.status, 201);
        let ch = h
            .call(
                "POST",
                "/auth/challenge",
                Some(json!({"public_key": pk})),
                None,
            )
            .await;
        let c = ch.body["challenge"].as_str().unwrap().to_owned();
        let sig = enc(&key.sign_raw(c.as_bytes()));
        let v = h
            .call(
                "POST",
                "/auth/verify",
                Some(json!({"public_key": pk, "signature": sig, "challenge": c})),
                None,
            )
            .await;
        assert_eq!(v.status, 200, "{:?}", v.body);
    }
    // P-256: SEC1 compressed, uncompressed and SPKI DER; signatures raw r||s and DER.
    let TestKey::P(sk) = TestKey::p256() else {
        unreachable!()
    };
    let vk = sk.verifying_key();
    let forms = [
        vk.to_encoded_point(true).as_bytes().to_vec(),
        vk.to_encoded_point(false).as_bytes().to_vec(),
        vk.to_public_key_der().unwrap().as_bytes().to_vec(),
    ];
    assert_eq!(
        h.register("gateway", &STANDARD.encode(&forms[1]), json!({}))
            .await
            .status,
        201
    );
    for (i, form) in forms.iter().enumerate() {
        // The same key in another encoding is the same identity (409 on re-registration).
        if i != 1 {
            assert_eq!(
                h.register("gateway", &URL_SAFE_NO_PAD.encode(form), json!({}))
                    .await
                    .status,
                409
            );
        }
        for der in [false, true] {
            let pk = STANDARD.encode(form);
            let ch = h
                .call(
                    "POST",
                    "/auth/challenge",
                    Some(json!({"public_key": pk})),
                    None,
                )
                .await;
            assert_eq!(ch.status, 200);
            let c = ch.body["challenge"].as_str().unwrap().to_owned();
            let sig: p256::ecdsa::Signature =
                p256::ecdsa::signature::Signer::sign(&sk, c.as_bytes());
            let sig = sig.normalize_s().unwrap_or(sig);
            let sig = if der {
                sig.to_der().as_bytes().to_vec()
            } else {
                sig.to_bytes().to_vec()
            };
            let v = h
                .call("POST", "/auth/verify", Some(json!({"public_key": pk, "signature": STANDARD.encode(sig), "challenge": c})), None)
                .await;
            assert_eq!(v.status, 200, "form {i} der={der}: {:?}", v.body);
        }
    }
}

#[tokio::test]
async fn challenges_are_single_use_expire_and_are_bound_to_their_key() {
    let h = harness(&[]);
    let a = TestKey::ed();
    let b = TestKey::ed();
    h.register("user", &a.public(), json!({})).await;
    h.register("user", &b.public(), json!({})).await;
    async fn ch(h: &Harness, k: &TestKey) -> String {
        let r = h
            .call(
                "POST",
                "/auth/challenge",
                Some(json!({"public_key": k.public()})),
                None,
            )
            .await;
        r.body["challenge"].as_str().unwrap().to_owned()
    }
    async fn verify(h: &Harness, k: &TestKey, c: &str, sig: String) -> super::harness::Reply {
        let body = json!({"public_key": k.public(), "signature": sig, "challenge": c});
        h.call("POST", "/auth/verify", Some(body), None).await
    }
    // Single use, even after a failed attempt.
    let c = ch(&h, &a).await;
    let bad = verify(&h, &a, &c, a.sign(b"something else")).await;
    assert_eq!(
        (bad.status.as_u16(), bad.error()),
        (401, "INVALID_SIGNATURE")
    );
    assert_eq!(bad.body["code"], 4001);
    let again = verify(&h, &a, &c, a.sign(c.as_bytes())).await;
    assert_eq!(
        again.error(),
        "CHALLENGE_INVALID",
        "consumed by the failed attempt"
    );
    let c = ch(&h, &a).await;
    assert_eq!(verify(&h, &a, &c, a.sign(c.as_bytes())).await.status, 200);
    assert_eq!(
        verify(&h, &a, &c, a.sign(c.as_bytes())).await.error(),
        "CHALLENGE_INVALID"
    );
    // Expiry: 5 minutes.
    let c = ch(&h, &a).await;
    h.clock.advance(301);
    assert_eq!(
        verify(&h, &a, &c, a.sign(c.as_bytes())).await.error(),
        "CHALLENGE_INVALID"
    );
    // Bound to the key that asked: b cannot use a's challenge, even signing it correctly.
    let c = ch(&h, &a).await;
    assert_eq!(
        verify(&h, &b, &c, b.sign(c.as_bytes())).await.error(),
        "CHALLENGE_INVALID"
    );
    // Unknown key.
    let r = h
        .call(
            "POST",
            "/auth/challenge",
            Some(json!({"public_key": TestKey::ed().public()})),
            None,
        )
        .await;
    assert_eq!((r.status.as_u16(), r.error()), (404, "UNKNOWN_IDENTITY"));
    let r = h
        .call(
            "POST",
            "/auth/verify",
            Some(json!({"public_key": a.public(), "signature": "AA", "challenge": "nope"})),
            None,
        )
        .await;
    assert_eq!(r.error(), "CHALLENGE_INVALID");
}

#[tokio::test]
async fn admin_authority_and_self_read() {
    let h = harness(&[]);
    let user = TestKey::ed();
    let r = h
        .register(
            "user",
            &user.public(),
            json!({"tenant": "acme", "scopes": ["read"], "name": "Ada"}),
        )
        .await;
    let id = r.body["identity_id"].as_str().unwrap().to_owned();
    let token = h.login(&user).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Without credentials, with a user token, with garbage: refused.
    assert_eq!(
        h.call(
            "POST",
            "/identity/register",
            Some(json!({"public_key": TestKey::ed().public(), "type": "user"})),
            None
        )
        .await
        .status,
        401
    );
    assert_eq!(
        h.call(
            "POST",
            "/identity/register",
            Some(json!({"public_key": TestKey::ed().public(), "type": "user"})),
            Some(&token)
        )
        .await
        .status,
        403
    );
    assert_eq!(
        h.call("GET", "/identity", None, Some("ak_garbage"))
            .await
            .status,
        401
    );
    // The identity reads itself, not others; /auth/me works.
    let me = h
        .call("GET", &format!("/identity/{id}"), None, Some(&token))
        .await;
    assert_eq!(
        (me.status.as_u16(), me.body["tenant"].as_str()),
        (200, Some("acme"))
    );
    let other = h
        .register("user", &TestKey::ed().public(), json!({}))
        .await
        .body["identity_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        h.call("GET", &format!("/identity/{other}"), None, Some(&token))
            .await
            .status,
        403
    );
    assert_eq!(
        h.call("GET", "/auth/me", None, Some(&token)).await.body["identity"]["identity_id"],
        id
    );
    // An admin identity (type admin) has admin authority with its access token.
    let adm = TestKey::ed();
    h.register("admin", &adm.public(), json!({})).await;
    let adm_token = h.login(&adm).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = h
        .call("GET", "/identity?limit=2", None, Some(&adm_token))
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["identities"].as_array().unwrap().len(), 2);
    let next = list.body["next"].as_str().unwrap();
    let page2 = h
        .call(
            "GET",
            &format!("/identity?limit=2&after={next}"),
            None,
            Some(&h.admin),
        )
        .await;
    assert_eq!(page2.body["identities"].as_array().unwrap().len(), 1);
    assert_eq!(
        h.call("GET", "/identity/usr-NOPE", None, Some(&h.admin))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn a_disabled_identitys_tokens_are_refused() {
    let h = harness(&[]);
    let user = TestKey::ed();
    let id = h.register("user", &user.public(), json!({})).await.body["identity_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = h.login(&user).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        h.call("GET", "/auth/me", None, Some(&token)).await.status,
        200
    );
    assert_eq!(
        h.call("DELETE", &format!("/identity/{id}"), None, Some(&h.admin))
            .await
            .status,
        204
    );
    let r = h.call("GET", "/auth/me", None, Some(&token)).await;
    assert_eq!((r.status.as_u16(), r.error()), (401, "INVALID_TOKEN"));
    // It can neither log in again.
    let r = h
        .call(
            "POST",
            "/auth/challenge",
            Some(json!({"public_key": user.public()})),
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    // The revocation reaches the feed that other processes poll.
    let feed = h
        .call("GET", "/v1/revocations?since=0", None, Some(&h.admin))
        .await;
    let entries = feed.body["revocations"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "subject" && e["id"] == id),
        "{entries:?}"
    );
    // And the in-memory set the brokers use already refuses it.
    assert!(
        h.state
            .auth
            .revocations()
            .is_subject_revoked(&id, h.clock_now())
    );
}

#[tokio::test]
async fn scoped_api_keys_register_only_their_types_and_open_registration_is_off_by_default() {
    let h = harness(&[]);
    let key = sidecar::apikeys::generate(
        "provisioner",
        vec!["identity:register".into()],
        vec![broker_auth::identity::IdentityType::Device],
        None,
        30,
        super::harness::T0,
    );
    h.state.store.put_api_key(&key.record).unwrap();
    let dev = json!({"public_key": TestKey::p256().public(), "type": "device"});
    assert_eq!(
        h.call("POST", "/identity/register", Some(dev), Some(&key.key))
            .await
            .status,
        201
    );
    let adm = json!({"public_key": TestKey::ed().public(), "type": "admin"});
    assert_eq!(
        h.call("POST", "/identity/register", Some(adm), Some(&key.key))
            .await
            .status,
        403
    );
    assert_eq!(
        h.call("GET", "/identity", None, Some(&key.key))
            .await
            .status,
        403,
        "not admin"
    );
    let anon = json!({"public_key": TestKey::p256().public(), "type": "device"});
    assert_eq!(
        h.call("POST", "/identity/register", Some(anon.clone()), None)
            .await
            .status,
        401
    );
    let open = super::harness::harness(&["--open-registration", "true"]);
    assert_eq!(
        open.call("POST", "/identity/register", Some(anon), None)
            .await
            .status,
        201
    );
    let anon_user = json!({"public_key": TestKey::ed().public(), "type": "user"});
    assert_eq!(
        open.call("POST", "/identity/register", Some(anon_user), None)
            .await
            .status,
        401,
        "only devices and gateways"
    );
}

#[tokio::test]
async fn registration_validates_its_fields() {
    let h = harness(&[]);
    for extra in [
        json!({"tenant": "a/b"}),
        json!({"scopes": ["has space"]}),
        json!({"metadata": {"devices": ["dev-1/#"]}}),
        json!({"metadata": {"devices": "dev-1"}}),
        json!({"name": "x".repeat(129)}),
        json!({"unexpected": true}),
    ] {
        let r = h
            .register("gateway", &TestKey::p256().public(), extra.clone())
            .await;
        assert_eq!(
            (r.status.as_u16(), r.error()),
            (400, "VALIDATION_ERROR"),
            "{extra}"
        );
    }
    let gw = h
        .register(
            "gateway",
            &TestKey::p256().public(),
            json!({"metadata": {"devices": ["dev-A", "dev-B"]}}),
        )
        .await;
    assert_eq!(gw.status, 201);
}
