//! Apps, roles, role assignment and API keys (Tronexus): admin-only writes, bad input refused,
//! roles flowing into tokens (and so into MQTT/NATS grants), and API keys whose expiry is bounded
//! at creation and enforced at every use.

use serde_json::{Value, json};

use super::harness::{Harness, TestKey, harness};

async fn app(h: &Harness, name: &str) -> String {
    let r = h
        .call("POST", "/apps", Some(json!({"name": name})), Some(&h.admin))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn role(h: &Harness, app: &str, name: &str) -> String {
    let r = h
        .call(
            "POST",
            &format!("/apps/{app}/roles"),
            Some(json!({"name": name})),
            Some(&h.admin),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn apps_and_roles_are_admin_writes_with_checked_input() {
    let h = harness(&["--rate-limit", "1000/60"]);
    let a = app(&h, "Plant A").await;
    assert_eq!(a.len(), 36, "a UUID: {a}");
    // Not without admin authority.
    let user = TestKey::ed();
    h.register("user", &user.public(), json!({})).await;
    let token = h.login(&user).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for (m, p) in [
        ("POST", "/apps"),
        ("POST", &format!("/apps/{a}/roles") as &str),
    ] {
        let r = h.call(m, p, Some(json!({"name": "x"})), Some(&token)).await;
        assert_eq!(r.status, 403, "{p}: {:?}", r.body);
        let r = h.call(m, p, Some(json!({"name": "x"})), None).await;
        assert_eq!(r.status, 401, "{p}");
    }
    for bad in [
        json!({"name": ""}),
        json!({"name": "a\u{7}b"}),
        json!({"name": 5}),
        json!({"name": "x", "extra": 1}),
    ] {
        let r = h
            .call("POST", "/apps", Some(bad.clone()), Some(&h.admin))
            .await;
        assert_eq!(r.status, 400, "{bad}");
    }
    role(&h, &a, "writer").await;
    let dup = h
        .call(
            "POST",
            &format!("/apps/{a}/roles"),
            Some(json!({"name": "writer"})),
            Some(&h.admin),
        )
        .await;
    assert_eq!(dup.status, 409);
    let bad = h
        .call(
            "POST",
            &format!("/apps/{a}/roles"),
            Some(json!({"name": "has space"})),
            Some(&h.admin),
        )
        .await;
    assert_eq!(bad.status, 400);
    let missing = h
        .call(
            "POST",
            "/apps/no-such-app/roles",
            Some(json!({"name": "r"})),
            Some(&h.admin),
        )
        .await;
    assert_eq!(missing.status, 404);
    let list = h.call("GET", "/apps", None, Some(&h.admin)).await;
    assert_eq!(list.body["apps"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn assigned_roles_reach_tokens_me_and_the_broker_decision() {
    let h = harness(&["--rate-limit", "1000/60"]);
    let a = app(&h, "Plant A").await;
    let writer = role(&h, &a, "writer").await;
    let key = TestKey::ed();
    let reg = h
        .register("user", &key.public(), json!({"tenant": a}))
        .await;
    let id = reg.body["identity_id"].as_str().unwrap().to_owned();
    let before = h.login(&key).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let topic = format!("tenants/{a}/line1");
    let publish = |token: String| {
        let h = &h;
        let topic = topic.clone();
        async move {
            h.call(
                "POST",
                "/acl",
                Some(json!({"topic": topic, "acc": 2, "clientid": "c"})),
                Some(&token),
            )
            .await
            .status
        }
    };
    assert_eq!(publish(before.clone()).await, 403, "no role yet");
    // Members may read their app's roles; others may not.
    let r = h
        .call("GET", &format!("/apps/{a}/roles"), None, Some(&before))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Assignment: the role must belong to the app, the user must exist.
    let other_app = app(&h, "Plant B").await;
    let foreign_role = role(&h, &other_app, "writer").await;
    let path = format!("/apps/{a}/users/{id}/roles");
    let r = h
        .call(
            "POST",
            &path,
            Some(json!({"role_id": foreign_role})),
            Some(&h.admin),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = h
        .call(
            "POST",
            &format!("/apps/{a}/users/usr-NOBODY/roles"),
            Some(json!({"role_id": writer})),
            Some(&h.admin),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = h
        .call(
            "POST",
            &path,
            Some(json!({"role_id": writer})),
            Some(&h.admin),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["roles"].clone()),
        (200, json!(["writer"]))
    );
    let me = h.call("GET", "/auth/me", None, Some(&before)).await;
    assert_eq!(
        (me.body["app_id"].as_str(), me.body["roles"].clone()),
        (Some(a.as_str()), json!(["writer"]))
    );
    // A new token carries the role, and the policy turns it into tenant topics.
    let after = h.login(&key).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(publish(after).await, 200);
    let r = h
        .call(
            "GET",
            &format!("/apps/{other_app}/roles"),
            None,
            Some(&before),
        )
        .await;
    assert_eq!(r.status, 403);
}

async fn new_key(h: &Harness, app: &str, scopes: Value, days: Value) -> (u16, Value) {
    let r = h
        .call(
            "POST",
            "/apikeys",
            Some(json!({"app_id": app, "name": "ci", "scopes": scopes, "expires_in_days": days})),
            Some(&h.admin),
        )
        .await;
    (r.status.as_u16(), r.body)
}

#[tokio::test]
async fn api_keys_expire_in_1_to_365_days_and_are_checked_at_every_use() {
    let h = harness(&["--rate-limit", "1000/60"]);
    let a = app(&h, "Plant A").await;
    for days in [json!(0), json!(366), json!(-1), json!("30"), json!(null)] {
        assert_eq!(
            new_key(&h, &a, json!([]), days.clone()).await.0,
            400,
            "{days}"
        );
    }
    assert_eq!(
        new_key(&h, "no-such-app", json!([]), json!(30)).await.0,
        404
    );
    let (s, k) = new_key(&h, &a, json!(["admin"]), json!(30)).await;
    assert_eq!(s, 201, "{k}");
    let key = k["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ak_"));
    let verify = |key: String| {
        let h = &h;
        async move {
            h.call("POST", "/apikeys/verify", Some(json!({"key": key})), None)
                .await
        }
    };
    let v = verify(key.clone()).await;
    assert_eq!(
        (
            v.status.as_u16(),
            v.body["valid"].clone(),
            v.body["app_id"].as_str()
        ),
        (200, json!(true), Some(a.as_str()))
    );
    assert_eq!(v.body["scopes"], json!(["admin"]));
    // A typo fails the checksum; the key's own scope (admin) is honoured as authority.
    let mut typo = key.clone().into_bytes();
    let i = typo.len() - 12;
    typo[i] = if typo[i] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    assert_eq!(verify(typo.clone()).await.status, 401);
    assert_eq!(h.call("GET", "/apps", None, Some(&key)).await.status, 200);
    let (_, limited) = new_key(&h, &a, json!(["identity:register"]), json!(30)).await;
    let limited = limited["key"].as_str().unwrap().to_owned();
    assert_eq!(
        h.call("GET", "/apps", None, Some(&limited)).await.status,
        403
    );
    // Revoked: refused at once, as verification and as authority.
    let id = k["id"].as_str().unwrap();
    let del = h
        .call("DELETE", &format!("/apikeys/{id}"), None, Some(&h.admin))
        .await;
    assert_eq!(del.status, 204);
    assert_eq!(verify(key.clone()).await.status, 401);
    assert_eq!(h.call("GET", "/apps", None, Some(&key)).await.status, 401);
    // Expired: a 1-day key stops working after a day.
    let (_, short) = new_key(&h, &a, json!([]), json!(1)).await;
    let short = short["key"].as_str().unwrap().to_owned();
    assert_eq!(verify(short.clone()).await.status, 200);
    h.clock.advance(86_400);
    assert_eq!(verify(short).await.status, 401);
}
