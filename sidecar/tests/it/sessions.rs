//! Rotating refresh tokens: rotation, reuse detection (sequential and concurrent) revoking the
//! whole session, logout, the absolute lifetime, and malformed tokens.

use serde_json::json;

use super::harness::{Harness, Reply, TestKey, harness};

async fn login(h: &Harness) -> (String, String) {
    let key = TestKey::ed();
    h.register("user", &key.public(), json!({})).await;
    let r = h.login(&key).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    (
        r.body["token"].as_str().unwrap().to_owned(),
        r.body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(h: &Harness, token: &str) -> Reply {
    h.call(
        "POST",
        "/auth/refresh",
        Some(json!({"refresh_token": token})),
        None,
    )
    .await
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_whole_session() {
    let h = harness(&["--rate-limit", "1000/60"]);
    let (access, r1) = login(&h).await;
    let a = refresh(&h, &r1).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(
        (a.body["token_type"].as_str(), a.body["expires_in"].as_i64()),
        (Some("bearer"), Some(3600))
    );
    let r2 = a.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    let access2 = a.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        h.call("GET", "/auth/me", None, Some(&access2)).await.status,
        200
    );
    // r1 again: theft. The family dies: r2, and the session's access tokens, stop working.
    let reuse = refresh(&h, &r1).await;
    assert_eq!(
        (reuse.status.as_u16(), reuse.error()),
        (401, "REFRESH_TOKEN_REUSED")
    );
    assert_eq!(reuse.body["code"], 4009);
    assert_eq!(refresh(&h, &r2).await.error(), "INVALID_REFRESH_TOKEN");
    for t in [&access, &access2] {
        assert_eq!(h.call("GET", "/auth/me", None, Some(t)).await.status, 401);
    }
    // Another session of the same user is untouched.
    let key2 = TestKey::ed();
    h.register("user", &key2.public(), json!({})).await;
    let other = h.login(&key2).await.body["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(refresh(&h, &other).await.status, 200);
}

#[tokio::test]
async fn a_concurrent_double_refresh_lets_at_most_one_win_and_revokes_the_session() {
    let h = harness(&["--rate-limit", "1000/60"]);
    for _ in 0..5 {
        let (_, r1) = login(&h).await;
        let (x, y) = tokio::join!(refresh(&h, &r1), refresh(&h, &r1));
        let ok: Vec<&Reply> = [&x, &y].into_iter().filter(|r| r.status == 200).collect();
        assert!(ok.len() <= 1, "both won: {:?} {:?}", x.body, y.body);
        let loser = [&x, &y].into_iter().find(|r| r.status != 200).unwrap();
        assert_eq!(loser.error(), "REFRESH_TOKEN_REUSED");
        // Whatever the winner got belongs to a revoked session.
        if let Some(w) = ok.first() {
            let next = w.body["refresh_token"].as_str().unwrap();
            assert_eq!(refresh(&h, next).await.status, 401);
        }
    }
}

#[tokio::test]
async fn logout_ends_every_session_and_sessions_have_an_absolute_lifetime() {
    let h = harness(&["--rate-limit", "1000/60", "--session-lifetime", "7200"]);
    let (access, r1) = login(&h).await;
    let out = h.call("POST", "/auth/logout", None, Some(&access)).await;
    assert_eq!(out.status, 204);
    assert_eq!(refresh(&h, &r1).await.error(), "INVALID_REFRESH_TOKEN");
    assert_eq!(
        h.call("GET", "/auth/me", None, Some(&access)).await.status,
        401
    );
    assert_eq!(h.call("POST", "/auth/logout", None, None).await.status, 401);

    // Rotation never extends the session: after 2 h every token of it is refused.
    let (_, mut r) = login(&h).await;
    for _ in 0..3 {
        h.clock.advance(1800);
        let next = refresh(&h, &r).await;
        assert_eq!(next.status, 200, "{:?}", next.body);
        r = next.body["refresh_token"].as_str().unwrap().to_owned();
    }
    h.clock.advance(1801);
    assert_eq!(refresh(&h, &r).await.error(), "INVALID_REFRESH_TOKEN");
}

#[tokio::test]
async fn malformed_unknown_and_tampered_refresh_tokens_are_4008() {
    let h = harness(&["--rate-limit", "1000/60"]);
    let (_, r1) = login(&h).await;
    let (id, secret) = r1.split_once('.').unwrap();
    let mut flipped = secret.to_owned().into_bytes();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{id}.{}", String::from_utf8(flipped).unwrap());
    for t in [
        "".to_owned(),
        "no-dot".to_owned(),
        format!("{id}."),
        format!("not-a-uuid.{secret}"),
        format!("00000000-0000-4000-8000-000000000000.{secret}"),
        tampered,
        "x".repeat(4000),
    ] {
        let r = refresh(&h, &t).await;
        assert_eq!(
            (r.status.as_u16(), r.error()),
            (401, "INVALID_REFRESH_TOKEN"),
            "{t:.40}"
        );
    }
    // The genuine token still works (failed guesses do not burn it).
    assert_eq!(refresh(&h, &r1).await.status, 200);
    let r = h
        .call(
            "POST",
            "/auth/refresh",
            Some(json!({"refresh_token": 5})),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
}
