//! Devices: announce, refresh, deregister, in process with a manual clock.

use serde_json::json;

use super::harness::{TestKey, harness};

#[tokio::test]
async fn announce_registers_once_and_maps_the_same_key_to_the_same_address() {
    let h = harness(&[]);
    let key = TestKey::ed();
    let a1 = h.announce(&key).await;
    assert_eq!(a1.status, 200, "{:?}", a1.body);
    let addr = a1.body["device_address"].as_str().unwrap().to_owned();
    assert!(addr.starts_with("dev-"));
    assert_eq!(
        a1.body["expires_at"].as_i64().unwrap(),
        super::harness::T0 + 86_400
    );
    assert_eq!(
        a1.body["announcement_expires_at"].as_i64().unwrap(),
        super::harness::T0 + 30 * 86_400
    );
    h.clock.advance(1);
    let a2 = h.announce(&key).await;
    assert_eq!(a2.body["device_address"], addr.as_str());
    // A registered Novacore device announces with its P-256 key.
    let p = TestKey::p256();
    h.register("device", &p.public(), json!({})).await;
    assert_eq!(h.announce(&p).await.status, 200);
    // A key of a non-device identity cannot announce.
    let u = TestKey::ed();
    h.register("user", &u.public(), json!({})).await;
    assert_eq!(h.announce(&u).await.status, 400);
}

#[tokio::test]
async fn announce_is_refused_outside_the_window_on_replay_and_with_a_bad_signature() {
    let h = harness(&[]);
    let key = TestKey::ed();
    let send = |ts: i64, sig: String| {
        let body = json!({"public_key": key.public(), "timestamp": ts, "signature": sig});
        let h = &h;
        async move { h.call("POST", "/v1/announce", Some(body), None).await }
    };
    let now = h.clock_now();
    for skew in [-61, 61, -3600] {
        let ts = now + skew;
        let r = send(
            ts,
            key.sign(format!("announce:{}:{ts}", key.public()).as_bytes()),
        )
        .await;
        assert_eq!(r.status, 400, "skew {skew}");
    }
    // Extreme timestamps (a wrap-around would make them "recent"), properly signed.
    for ts in [i64::MIN, i64::MIN + now, i64::MAX] {
        let r = send(
            ts,
            key.sign(format!("announce:{}:{ts}", key.public()).as_bytes()),
        )
        .await;
        assert_eq!(r.status, 400, "timestamp {ts}");
    }
    let ts = now - 59;
    let sig = key.sign(format!("announce:{}:{ts}", key.public()).as_bytes());
    assert_eq!(send(ts, sig.clone()).await.status, 200);
    let replay = send(ts, sig).await;
    assert_eq!((replay.status.as_u16(), replay.error()), (401, "REPLAYED"));
    let r = send(now, key.sign(b"announce:someone-else:1")).await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_i64()),
        (401, Some(4001))
    );
    // An ES256 proof re-sent in its other encoding (DER instead of r||s) is the same proof.
    let p = TestKey::p256();
    h.register("device", &p.public(), json!({})).await;
    let ts = now + 2;
    let msg = format!("announce:{}:{ts}", p.public());
    let TestKey::P(sk) = &p else { unreachable!() };
    let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(sk, msg.as_bytes());
    let sig = sig.normalize_s().unwrap_or(sig);
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let raw =
        json!({"public_key": p.public(), "timestamp": ts, "signature": b64.encode(sig.to_bytes())});
    let der = json!({"public_key": p.public(), "timestamp": ts, "signature": b64.encode(sig.to_der().as_bytes())});
    assert_eq!(
        h.call("POST", "/v1/announce", Some(raw), None).await.status,
        200
    );
    assert_eq!(
        h.call("POST", "/v1/announce", Some(der), None)
            .await
            .error(),
        "REPLAYED"
    );
    // Timestamp as a numeric string, as some Cryptid clients send it.
    let ts = now + 1;
    let body = json!({"public_key": key.public(), "timestamp": ts.to_string(),
        "signature": key.sign(format!("announce:{}:{ts}", key.public()).as_bytes())});
    assert_eq!(
        h.call("POST", "/v1/announce", Some(body), None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn closed_announce_needs_a_registered_key() {
    let h = harness(&["--open-announce", "false"]);
    let key = TestKey::ed();
    assert_eq!(h.announce(&key).await.error(), "UNKNOWN_IDENTITY");
    h.register("device", &key.public(), json!({})).await;
    assert_eq!(h.announce(&key).await.status, 200);
}

#[tokio::test]
async fn re_announce_ends_the_previous_announcements_tokens() {
    let h = harness(&[]);
    let key = TestKey::ed();
    let first = h.announce(&key).await.body;
    let access1 = first["access_token"].as_str().unwrap().to_owned();
    let refresh1 = first["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        h.call("GET", "/auth/me", None, Some(&access1)).await.status,
        200
    );
    h.clock.advance(1);
    let second = h.announce(&key).await.body;
    let access2 = second["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        h.call("GET", "/auth/me", None, Some(&access1)).await.status,
        401
    );
    assert_eq!(
        h.call("GET", "/auth/me", None, Some(&access2)).await.status,
        200
    );
    let r = h
        .call("POST", "/v1/auth/refresh", Some(json!({"refresh_token": refresh1, "device_signature": key.sign(refresh1.as_bytes())})), None)
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_i64()),
        (401, Some(4008))
    );
}

#[tokio::test]
async fn refresh_needs_the_device_signature_and_a_live_announcement() {
    let h = harness(&[]);
    let key = TestKey::ed();
    let ann = h.announce(&key).await.body;
    let refresh = ann["refresh_token"].as_str().unwrap().to_owned();
    let access = ann["access_token"].as_str().unwrap().to_owned();
    let call = |token: &str, sig: String| {
        let body = json!({"refresh_token": token, "device_signature": sig});
        let h = &h;
        async move { h.call("POST", "/v1/auth/refresh", Some(body), None).await }
    };
    h.clock.advance(3600);
    let ok = call(&refresh, key.sign(refresh.as_bytes())).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(
        ok.body["expires_at"].as_i64().unwrap(),
        h.clock_now() + 86_400
    );
    let new_access = ok.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        h.call("GET", "/auth/me", None, Some(&new_access))
            .await
            .status,
        200
    );
    // 4001: a signature by another key, or over something else.
    let r = call(&refresh, TestKey::ed().sign(refresh.as_bytes())).await;
    assert_eq!(r.body["code"], 4001);
    let r = call(&refresh, key.sign(b"not the token")).await;
    assert_eq!(r.body["code"], 4001);
    // 4008: garbage, an access token in place of the refresh token, a tampered token.
    for bad in ["garbage", access.as_str(), &format!("{refresh}x")] {
        let r = call(bad, key.sign(bad.as_bytes())).await;
        assert_eq!(
            (r.status.as_u16(), r.body["code"].as_i64(), r.error()),
            (401, Some(4008), "INVALID_REFRESH_TOKEN"),
            "{bad:.20}"
        );
    }
    // 4008 once the announcement has expired.
    h.clock.advance(30 * 86_400);
    let r = call(&refresh, key.sign(refresh.as_bytes())).await;
    assert_eq!(r.body["code"], 4008);
}

#[tokio::test]
async fn deregister_stops_every_token_of_the_announcement() {
    let h = harness(&[]);
    let key = TestKey::ed();
    let ann = h.announce(&key).await.body;
    let access = ann["access_token"].as_str().unwrap().to_owned();
    let refresh = ann["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        h.call("DELETE", "/v1/announce", None, None).await.status,
        401
    );
    assert_eq!(
        h.call("DELETE", "/v1/announce", None, Some(&access))
            .await
            .status,
        204
    );
    assert_eq!(
        h.call("GET", "/auth/me", None, Some(&access)).await.status,
        401
    );
    let r = h
        .call(
            "POST",
            "/v1/auth/refresh",
            Some(
                json!({"refresh_token": refresh, "device_signature": key.sign(refresh.as_bytes())}),
            ),
            None,
        )
        .await;
    assert_eq!(r.body["code"], 4008);
    assert_eq!(
        h.call("DELETE", "/v1/announce", None, Some(&access))
            .await
            .status,
        401,
        "already ended"
    );
    // A key-login token has no announcement to end.
    let u = TestKey::ed();
    h.register("user", &u.public(), json!({})).await;
    let t = h.login(&u).await.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        h.call("DELETE", "/v1/announce", None, Some(&t))
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn hammering_refresh_gets_4004_with_retry_after() {
    let h = harness(&["--rate-limit", "3/60"]);
    let key = TestKey::ed();
    let ann = h.announce(&key).await.body;
    let refresh = ann["refresh_token"].as_str().unwrap().to_owned();
    let body = json!({"refresh_token": refresh, "device_signature": key.sign(refresh.as_bytes())});
    for _ in 0..3 {
        assert_eq!(
            h.call("POST", "/v1/auth/refresh", Some(body.clone()), None)
                .await
                .status,
            200
        );
    }
    let r = h.call("POST", "/v1/auth/refresh", Some(body), None).await;
    assert_eq!(
        (r.status.as_u16(), r.error(), r.body["code"].as_i64()),
        (429, "RATE_LIMIT_EXCEEDED", Some(4004))
    );
    let retry = r.body["retry_after"].as_u64().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(
        r.headers["retry-after"].to_str().unwrap(),
        retry.to_string()
    );
}
