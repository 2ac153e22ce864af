//! `/user`, `/acl`, `/superuser` with mosquitto-go-auth's exact bodies (JSON and form parameter
//! modes; answers valid in its `status` and `json` response modes), and `/internal/mqtt/*`.

use broker_auth::token::{Claims, TokenUse};
use rand_core::OsRng;
use serde_json::{Value, json};

use super::harness::{Harness, Reply, TestKey, harness};

pub const DEV: &str = "dev-AAAAAAAAAAAAAAAA";

pub fn mint(h: &Harness, sub: &str, f: impl FnOnce(&mut Claims)) -> String {
    let mut c = Claims::new(
        &h.state.token_config,
        sub,
        h.clock_now(),
        3600,
        TokenUse::Access,
        &mut OsRng,
    );
    f(&mut c);
    h.state.sign(&c).unwrap()
}

async fn form(h: &Harness, path: &str, body: &str, bearer: Option<&str>) -> Reply {
    h.call_from(
        "198.51.100.1:5000",
        "POST",
        path,
        Some(body.as_bytes().to_vec()),
        bearer,
        &[("content-type", "application/x-www-form-urlencoded")],
    )
    .await
}

async fn json_post(h: &Harness, path: &str, body: Value, bearer: Option<&str>) -> Reply {
    h.call("POST", path, Some(body), bearer).await
}

/// What go-auth concludes in `status` mode (any 2xx) and in `json` mode (2xx and ok == true);
/// the two must agree.
fn allowed(r: &Reply) -> bool {
    let status_mode = r.status.is_success();
    let json_mode = r.status.is_success() && r.body["ok"] == json!(true);
    assert_eq!(
        status_mode, json_mode,
        "modes disagree: {} {:?}",
        r.status, r.body
    );
    if !status_mode {
        assert_eq!(r.status, 403, "{:?}", r.body);
        assert_eq!(r.body["ok"], json!(false));
        assert!(r.body["error"].is_string(), "{:?}", r.body);
    }
    status_mode
}

#[tokio::test]
async fn jwt_backend_remote_mode_bearer_with_empty_credentials() {
    let h = harness(&[]);
    let t = mint(&h, DEV, |_| {});
    // go-auth's JWT backend: the token as Bearer; username/password empty in the body.
    let r = json_post(
        &h,
        "/user",
        json!({"username": "", "password": "", "clientid": "c1"}),
        Some(&t),
    )
    .await;
    assert!(allowed(&r));
    assert_eq!(r.body["reason"], "authenticated");
    let acl = |topic: &str, acc: i64| json!({"topic": topic, "clientid": "c1", "acc": acc});
    for (topic, acc, want) in [
        (format!("devices/{DEV}/t"), 2, true),
        (format!("devices/{DEV}/cmd/x"), 1, true),
        (format!("devices/{DEV}/cmd/#"), 4, true),
        (format!("devices/{DEV}/cmd/x"), 3, true),
        (format!("devices/{DEV}/t"), 3, false),
        ("devices/dev-BBBBBBBBBBBBBBBB/t".to_owned(), 2, false),
        ("#".to_owned(), 4, false),
    ] {
        let r = json_post(&h, "/acl", acl(&topic, acc), Some(&t)).await;
        assert_eq!(allowed(&r), want, "{topic} acc={acc}: {:?}", r.body);
    }
    let r = json_post(&h, "/superuser", json!({"username": ""}), Some(&t)).await;
    assert!(!allowed(&r));
    let admin = mint(&h, "adm-OPS", |c| c.groups = vec!["admin".into()]);
    assert!(allowed(
        &json_post(&h, "/superuser", json!({"username": ""}), Some(&admin)).await
    ));
}

#[tokio::test]
async fn http_backend_form_mode_with_the_token_as_password() {
    let h = harness(&[]);
    let key = TestKey::ed();
    let reg = h.register("device", &key.public(), json!({})).await;
    let id = reg.body["identity_id"].as_str().unwrap().to_owned();
    let t = mint(&h, &id, |_| {});
    // Form mode: every value a string, acc included.
    let body = format!("username={id}&password={t}&clientid=c1");
    assert!(allowed(&form(&h, "/user", &body, None).await));
    // The ACL check carries only the username: the principal comes from the store.
    let acl = |topic: &str, acc: &str| format!("username={id}&clientid=c1&topic={topic}&acc={acc}");
    assert!(allowed(
        &form(&h, "/acl", &acl(&format!("devices/{id}/t"), "2"), None).await
    ));
    assert!(!allowed(
        &form(&h, "/acl", &acl("devices/dev-OTHER/t", "2"), None).await
    ));
    assert!(!allowed(
        &form(&h, "/superuser", &format!("username={id}"), None).await
    ));
    // JSON mode of the same backend: acc an integer.
    let r = json_post(
        &h,
        "/acl",
        json!({"username": id, "clientid": "c1", "topic": format!("devices/{id}/cmd/a"), "acc": 1}),
        None,
    )
    .await;
    assert!(allowed(&r));
    // Unknown usernames get nothing.
    assert!(!allowed(
        &form(
            &h,
            "/acl",
            "username=dev-NOBODY&clientid=c&topic=a&acc=1",
            None
        )
        .await
    ));
}

#[tokio::test]
async fn a_token_under_someone_elses_username_is_refused() {
    let h = harness(&[]);
    let t = mint(&h, DEV, |_| {});
    let r = json_post(
        &h,
        "/user",
        json!({"username": "dev-BBBBBBBBBBBBBBBB", "password": t, "clientid": "c"}),
        None,
    )
    .await;
    assert!(!allowed(&r));
    assert_eq!(r.body["error"], "username does not match the token");
    // Its own id, or the token itself as username (JWT backend's local mode), are fine.
    for u in [DEV, t.as_str()] {
        let r = json_post(
            &h,
            "/user",
            json!({"username": u, "password": t, "clientid": "c"}),
            None,
        )
        .await;
        assert!(allowed(&r), "{u}");
    }
}

#[tokio::test]
async fn bad_expired_missing_and_hostile_inputs() {
    let h = harness(&[]);
    let expired = mint(&h, DEV, |c| {
        c.iat -= 7200;
        c.nbf -= 7200;
        c.exp = c.iat + 60;
    });
    let r = json_post(&h, "/user", json!({"username": "", "password": ""}), None).await;
    assert!(!allowed(&r));
    assert_eq!(r.body["reason"], "missing token");
    for t in [expired.as_str(), "garbage", "a.b.c"] {
        let r = json_post(&h, "/user", json!({"password": t}), None).await;
        assert!(!allowed(&r));
        assert_eq!(r.body["reason"], "invalid credentials", "{t}");
    }
    let t = mint(&h, DEV, |_| {});
    // Malformed ACL requests are 400 envelopes, never 500 (and never an allow).
    for body in [
        json!({"topic": "a", "acc": 9}),
        json!({"topic": "a", "acc": "read"}),
        json!({"topic": "a"}),
        json!({"acc": 1}),
        json!({"topic": ["a"], "acc": 1}),
    ] {
        let r = json_post(&h, "/acl", body.clone(), Some(&t)).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
    }
    let r = form(&h, "/acl", "topic=a&acc=%ZZ", Some(&t)).await;
    assert!(r.status == 400 || r.status == 403, "{:?}", r.body);
    // Invalid topics are denials, not errors: a broker asks about whatever a client sends.
    for topic in ["a/#/b", "", "a\u{0}b"] {
        let r = json_post(&h, "/acl", json!({"topic": topic, "acc": 2}), Some(&t)).await;
        assert!(
            r.status == 400 || r.status == 403,
            "{topic:?}: {:?}",
            r.body
        );
    }
    let huge = "x".repeat(70 * 1024);
    let r = json_post(&h, "/user", json!({"password": huge}), None).await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn internal_routes_need_the_shared_secret() {
    let h = harness(&["--internal-secret", "s3cret-of-the-internal-callers"]);
    let t = mint(&h, DEV, |_| {});
    let body = json!({"token": t, "client_id": "gw-1"});
    let call = |secret: Option<&'static str>, path: &'static str, body: Value| {
        let h = &h;
        async move {
            let headers: Vec<(&str, &str)> = secret
                .map(|s| ("x-internal-secret", s))
                .into_iter()
                .collect();
            h.call_from(
                "198.51.100.1:5000",
                "POST",
                path,
                Some(body.to_string().into_bytes()),
                None,
                &headers,
            )
            .await
        }
    };
    assert_eq!(
        call(None, "/internal/mqtt/auth", body.clone()).await.status,
        401
    );
    assert_eq!(
        call(Some("wrong"), "/internal/mqtt/auth", body.clone())
            .await
            .status,
        401
    );
    let r = call(
        Some("s3cret-of-the-internal-callers"),
        "/internal/mqtt/auth",
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["allow"], true);
    assert_eq!(r.body["identity"], DEV);
    assert_eq!(r.body["publish"], json!([format!("devices/{DEV}/#")]));
    let acl = |topic: String, action: &str| json!({"token": t, "topic": topic, "action": action});
    let r = call(
        Some("s3cret-of-the-internal-callers"),
        "/internal/mqtt/acl",
        acl(format!("devices/{DEV}/x"), "publish"),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body["allow"].clone()),
        (200, json!(true))
    );
    let r = call(
        Some("s3cret-of-the-internal-callers"),
        "/internal/mqtt/acl",
        acl("devices/x/y".into(), "publish"),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body["reason"].clone()),
        (403, json!("not_granted"))
    );
    let r = call(
        Some("s3cret-of-the-internal-callers"),
        "/internal/mqtt/acl",
        acl("a".into(), "delete"),
    )
    .await;
    assert_eq!(r.status, 400);

    // Without a configured secret the routes refuse everyone.
    let open = harness(&[]);
    let r = open
        .call_from(
            "198.51.100.1:5000",
            "POST",
            "/internal/mqtt/auth",
            Some(json!({"token": "x"}).to_string().into_bytes()),
            None,
            &[("x-internal-secret", "")],
        )
        .await;
    assert_eq!(r.status, 401);
}

/// The security pass found `/user`, `/acl`, `/superuser` and `/metrics` answering anyone. With a
/// secret configured each refuses a caller without it (401, the envelope) and answers as before
/// with it; a wrong secret is as good as none.
#[tokio::test]
async fn broker_routes_and_metrics_behind_their_secrets_when_configured() {
    let h = harness(&[
        "--broker-routes-secret",
        "a-broker-routes-secret",
        "--metrics-token",
        "a-metrics-token-0123",
    ]);
    let token = mint(&h, DEV, |_| {});
    let body =
        json!({"username": DEV, "topic": format!("devices/{DEV}/x"), "clientid": "c1", "acc": 2});
    let post = |path: &'static str, secret: Option<&'static str>| {
        let (h, body, token) = (&h, body.to_string().into_bytes(), token.clone());
        async move {
            let mut hs = vec![("content-type", "application/json")];
            hs.extend(secret.map(|s| ("x-broker-secret", s)));
            h.call_from(
                "198.51.100.1:5000",
                "POST",
                path,
                Some(body),
                Some(&token),
                &hs,
            )
            .await
        }
    };
    for path in ["/user", "/acl", "/superuser"] {
        for secret in [None, Some("wrong-secret")] {
            let r = post(path, secret).await;
            assert_eq!(r.status, 401, "{path} {secret:?}: {:?}", r.body);
            assert_eq!(r.body["error"], "UNAUTHORIZED", "{:?}", r.body);
        }
        let r = post(path, Some("a-broker-routes-secret")).await;
        assert_ne!(r.status, 401, "{path} with the secret: {:?}", r.body);
    }
    // The device may publish under its own prefix: the gate did not change the answer.
    let ok = post("/acl", Some("a-broker-routes-secret")).await;
    assert!(allowed(&ok), "{:?}", ok.body);

    let anon = h.call("GET", "/metrics", None, None).await;
    assert_eq!(anon.status, 401);
    let wrong = h.call("GET", "/metrics", None, Some("not-the-token")).await;
    assert_eq!(wrong.status, 401);
    let right = h
        .call("GET", "/metrics", None, Some("a-metrics-token-0123"))
        .await;
    assert_eq!(right.status, 200);
    // Unconfigured, both stay open (the default, logged at start-up).
    let open = harness(&[]);
    assert_eq!(open.call("GET", "/metrics", None, None).await.status, 200);
}
