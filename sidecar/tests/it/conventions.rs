//! The conventions every route follows: bad input gets a clear 4xx envelope (never a 500),
//! security headers everywhere, rate limits, lockouts, bans that survive restarts, and
//! X-Forwarded-For honoured only from trusted proxies.

use serde_json::json;

use super::harness::{Harness, Reply, TestKey, harness, harness_in};

const POST_ROUTES: &[&str] = &[
    "/identity/register",
    "/auth/challenge",
    "/auth/verify",
    "/v1/announce",
    "/v1/auth/refresh",
];

fn assert_envelope(r: &Reply, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {:?}", r.body);
    assert!(
        r.body["error"].is_string() && r.body["message"].is_string() && r.body["code"].is_number(),
        "{what}: {:?}",
        r.body
    );
}

#[tokio::test]
async fn malformed_oversized_wrong_type_and_non_utf8_bodies_get_4xx_envelopes() {
    let h = harness(&["--rate-limit", "1000/60"]);
    let admin = h.admin.clone();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("malformed", b"{\"public_key\": ".to_vec(), 400),
        ("not an object", b"[1,2,3]".to_vec(), 400),
        ("wrong types", br#"{"public_key": 5, "type": [], "timestamp": {}, "signature": true, "challenge": 1, "refresh_token": 2, "device_signature": 3}"#.to_vec(), 400),
        ("empty", Vec::new(), 400),
        ("non-UTF-8", vec![b'{', b'"', 0xff, 0xfe, b'"', b'}'], 400),
        ("oversized", format!("{{\"public_key\": \"{}\"}}", "A".repeat(70 * 1024)).into_bytes(), 413),
        ("bad base64", br#"{"public_key": "!!!not base64!!!", "type": "device", "signature": "***", "challenge": "x", "timestamp": 1, "refresh_token": "x", "device_signature": "***"}"#.to_vec(), 400),
        ("deeply nested", format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(), 400),
    ];
    for route in POST_ROUTES {
        for (what, body, status) in &cases {
            let r = h
                .call_from(
                    "198.51.100.1:5000",
                    "POST",
                    route,
                    Some(body.clone()),
                    Some(&admin),
                    &[],
                )
                .await;
            // A bad-base64 verify/refresh may fail on the challenge/token first: still a 4xx envelope.
            let expected = if *what == "bad base64" && r.status == 401 {
                401
            } else {
                *status
            };
            assert_envelope(&r, expected, &format!("{route} {what}"));
        }
        let r = h
            .call_from(
                "198.51.100.1:5000",
                "POST",
                route,
                Some(b"{}".to_vec()),
                Some(&admin),
                &[("content-type", "text/plain")],
            )
            .await;
        assert_envelope(&r, 415, &format!("{route} text/plain"));
    }
    // Unknown routes and methods are envelopes too.
    assert_envelope(
        &h.call("GET", "/nope", None, None).await,
        404,
        "unknown path",
    );
    assert_envelope(
        &h.call("PUT", "/auth/challenge", None, None).await,
        405,
        "wrong method",
    );
}

#[tokio::test]
async fn security_headers_on_every_route_and_error() {
    let h = harness(&[]);
    let key = TestKey::ed();
    let reg = h.register("user", &key.public(), json!({})).await;
    let id = reg.body["identity_id"].as_str().unwrap().to_owned();
    let paths = [
        ("GET", "/health".to_owned()),
        ("GET", "/healthz".to_owned()),
        ("GET", "/metrics".to_owned()),
        ("GET", "/.well-known/jwks.json".to_owned()),
        ("GET", "/openapi.json".to_owned()),
        ("GET", "/redoc".to_owned()),
        ("GET", "/docs/".to_owned()),
        ("GET", "/identity".to_owned()),
        ("GET", format!("/identity/{id}")),
        ("GET", "/auth/me".to_owned()),
        ("POST", "/auth/challenge".to_owned()),
        ("POST", "/v1/announce".to_owned()),
        ("DELETE", "/v1/announce".to_owned()),
        ("GET", "/v1/revocations".to_owned()),
        ("GET", "/does-not-exist".to_owned()),
    ];
    for (m, p) in &paths {
        let body = (*m == "POST").then(|| json!({}));
        let r = h.call(m, p, body, None).await;
        for header in [
            "strict-transport-security",
            "content-security-policy",
            "x-frame-options",
            "x-content-type-options",
            "referrer-policy",
            "cache-control",
        ] {
            assert!(
                r.headers.contains_key(header),
                "{m} {p} ({}) lacks {header}",
                r.status
            );
        }
        assert_eq!(r.headers["x-frame-options"], "DENY");
        assert_eq!(r.headers["cache-control"], "no-store");
        assert!(r.status.as_u16() < 500, "{m} {p}: {}", r.status);
    }
}

#[tokio::test]
async fn rate_limit_lockout_and_a_ban_that_survives_restart() {
    let h = harness(&["--rate-limit", "2/60", "--ban-after-lockouts", "2"]);
    let peer = "203.0.113.50:4444";
    async fn call(h: &Harness, path: &'static str) -> Reply {
        let b = Some(
            json!({"public_key": TestKey::ed().public()})
                .to_string()
                .into_bytes(),
        );
        h.call_from("203.0.113.50:4444", "POST", path, b, None, &[])
            .await
    }
    assert_eq!(call(&h, "/auth/challenge").await.status, 404);
    assert_eq!(call(&h, "/auth/challenge").await.status, 404);
    let r = call(&h, "/auth/challenge").await;
    assert_eq!((r.status.as_u16(), r.error()), (429, "RATE_LIMIT_EXCEEDED"));
    // Another route has its own window.
    assert_eq!(call(&h, "/auth/verify").await.status, 400);
    // Health is exempt.
    for _ in 0..5 {
        assert_eq!(
            h.call_from(peer, "GET", "/health", None, None, &[])
                .await
                .status,
            200
        );
    }
    // Ten violations: a 15-minute lockout on every route.
    let mut last = r;
    for _ in 0..9 {
        last = call(&h, "/auth/challenge").await;
    }
    assert_eq!((last.status.as_u16(), last.error()), (429, "LOCKED_OUT"));
    assert_eq!(last.body["retry_after"], 900);
    assert_eq!(call(&h, "/auth/verify").await.error(), "LOCKED_OUT");
    // After the lockout, ten more violations: the second lockout bans (configured: 2).
    h.clock.advance(901);
    for _ in 0..2 {
        call(&h, "/auth/challenge").await;
    }
    for _ in 0..10 {
        last = call(&h, "/auth/challenge").await;
    }
    assert_eq!((last.status.as_u16(), last.error()), (403, "BANNED"));
    assert_eq!(call(&h, "/auth/verify").await.error(), "BANNED");
    let bans = h.call("GET", "/admin/bans", None, Some(&h.admin)).await;
    assert_eq!(bans.body["bans"][0]["ip"], "203.0.113.50");

    // Restart on the same store: the ban is still there.
    let Harness { state, dir, .. } = h;
    drop(state);
    let h = harness_in(dir, &["--rate-limit", "2/60"]);
    assert_eq!(call(&h, "/auth/challenge").await.error(), "BANNED");
    // An admin lifts it.
    let lift = h
        .call("DELETE", "/admin/bans/203.0.113.50", None, Some(&h.admin))
        .await;
    assert_eq!(lift.status, 204);
    assert_eq!(call(&h, "/auth/challenge").await.status, 404);
    assert_eq!(
        h.call("DELETE", "/admin/bans/not-an-ip", None, Some(&h.admin))
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let h = harness(&["--rate-limit", "2/60"]);
    let spoof = |n: u8| format!("192.0.2.{n}");
    let body = || {
        Some(
            json!({"public_key": TestKey::ed().public()})
                .to_string()
                .into_bytes(),
        )
    };
    for n in 0..2 {
        let xff = spoof(n);
        let r = h
            .call_from(
                "198.51.100.9:1",
                "POST",
                "/auth/challenge",
                body(),
                None,
                &[("x-forwarded-for", &xff)],
            )
            .await;
        assert_eq!(r.status, 404);
    }
    let xff = spoof(9);
    let r = h
        .call_from(
            "198.51.100.9:1",
            "POST",
            "/auth/challenge",
            body(),
            None,
            &[("x-forwarded-for", &xff)],
        )
        .await;
    assert_eq!(
        r.status, 429,
        "a new X-Forwarded-For from an untrusted peer must not reset the limit"
    );

    // Behind a trusted proxy, each forwarded client has its own window.
    let h = harness(&["--rate-limit", "2/60", "--trusted-proxies", "10.0.0.0/8"]);
    for n in 0..6 {
        let xff = spoof(n);
        let r = h
            .call_from(
                "10.1.2.3:1",
                "POST",
                "/auth/challenge",
                body(),
                None,
                &[("x-forwarded-for", &xff)],
            )
            .await;
        assert_eq!(r.status, 404, "client {n}");
    }
}

#[tokio::test]
async fn jwks_rotation_and_docs() {
    let h = harness(&[]);
    let key = TestKey::ed();
    h.register("user", &key.public(), json!({})).await;
    let before = h.login(&key).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwks = h.call("GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(jwks.body["keys"].as_array().unwrap().len(), 1);
    let rot = h
        .call("POST", "/admin/keys/rotate", None, Some(&h.admin))
        .await;
    assert_eq!(rot.status, 200);
    let jwks = h.call("GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(jwks.body["keys"].as_array().unwrap().len(), 2);
    assert_eq!(
        h.call("GET", "/auth/me", None, Some(&before)).await.status,
        200,
        "old key still verifies"
    );
    let after = h.login(&key).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let kid = |t: &str| {
        use base64::Engine as _;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(kid(&after), rot.body["kid"].as_str().unwrap());
    assert_ne!(kid(&after), kid(&before));
    // The OpenAPI document lists the routes and the error-code table.
    let doc = h.call("GET", "/openapi.json", None, None).await.body;
    for p in [
        "/identity/register",
        "/auth/verify",
        "/v1/announce",
        "/v1/auth/refresh",
        "/v1/revocations",
        "/policies",
        "/policies/versions/{n}",
        "/policies/validate",
        "/policies/rollback",
        "/policies/eval",
        "/policies/diff",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing from OpenAPI");
    }
    let about = doc["info"]["description"].as_str().unwrap();
    for part in ["MQTT and NATS", "OAuth2", "provisioner", "Rego policies"] {
        assert!(
            about.contains(part),
            "the description says what the service is: {about}"
        );
    }
    let codes = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap();
    for c in [4001, 4004, 4008] {
        assert!(codes.contains(&json!(c)));
    }
    // Health says what the policies are.
    let health = h.call("GET", "/health", None, None).await.body;
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["policy_count"], 2);
}
