//! Identity changes over REST (`PATCH /identity/{id}`, taking a role away, giving one): admin
//! only, input checked like registration, and each change goes out as an `identity` entry of the
//! revocation feed that tokens issued before are read with (the broker-side cuts are in
//! `enforcement.rs`).

use broker_auth::Protocol;
use serde_json::{Value, json};

use super::harness::{Harness, TestKey, harness};

async fn user_with_role(h: &Harness, role: &str) -> (String, String, String, TestKey) {
    let app = h
        .call(
            "POST",
            "/apps",
            Some(json!({"name": "plant"})),
            Some(&h.admin),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let role_id = h
        .call(
            "POST",
            &format!("/apps/{app}/roles"),
            Some(json!({"name": role})),
            Some(&h.admin),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = TestKey::ed();
    let reg = h
        .register("user", &key.public(), json!({"tenant": app}))
        .await;
    let user = reg.body["identity_id"].as_str().unwrap().to_owned();
    let r = h
        .call(
            "POST",
            &format!("/apps/{app}/users/{user}/roles"),
            Some(json!({"role_id": role_id})),
            Some(&h.admin),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    (app, role_id, user, key)
}

fn feed_identity_entries(feed: &Value, id: &str) -> Vec<Value> {
    feed["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "identity" && e["id"] == id)
        .cloned()
        .collect()
}

/// What a connect with `token` would be granted now (the decision every broker makes).
fn grants_now(h: &Harness, token: &str) -> Option<Value> {
    let d = h
        .state
        .auth
        .authorize(h.clock_now(), Some(token), Protocol::Mqtt, Some("c"));
    d.is_permit().then(|| match d {
        broker_auth::Decision::Permit(p) => serde_json::to_value(p.value.grants.source()).unwrap(),
        broker_auth::Decision::Deny(_) => Value::Null,
    })
}

#[tokio::test]
async fn taking_a_role_away_reaches_tokens_issued_before_and_the_feed() {
    let h = harness(&[]);
    let (app, role_id, user, key) = user_with_role(&h, "writer").await;
    let token = h.login(&key).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = grants_now(&h, &token).expect("a writer is granted");
    assert_eq!(before["publish"], json!([format!("tenants/{app}/#")]));

    let path = format!("/apps/{app}/users/{user}/roles/{role_id}");
    assert_eq!(
        h.call("DELETE", &path, None, Some(&token)).await.status,
        403
    );
    assert_eq!(h.call("DELETE", &path, None, None).await.status, 401);
    assert_eq!(
        h.call("DELETE", &path, None, Some(&h.admin)).await.status,
        204
    );
    let again = h.call("DELETE", &path, None, Some(&h.admin)).await;
    assert_eq!(again.status, 404, "no such assignment any more");
    assert_eq!(again.body["error"], "NOT_FOUND", "{:?}", again.body);

    // The same token, issued while the user was a writer, is read with the roles it has now.
    let now = grants_now(&h, &token).expect("its tenant still grants it an inbox");
    assert_eq!(
        (&now["publish"], &now["subscribe"]),
        (&json!([]), &json!([])),
        "{now}"
    );
    let feed = h
        .call("GET", "/v1/revocations?since=0", None, Some(&h.admin))
        .await;
    let entries = feed_identity_entries(&feed.body, &user);
    let last = entries.last().expect("the change is on the feed");
    assert_eq!(last["attrs"]["roles"], json!([]), "{last}");
    assert_eq!(last["attrs"]["tenant"], json!(app));

    // Giving the role back applies to the old token at once as well.
    let give = h
        .call(
            "POST",
            &format!("/apps/{app}/users/{user}/roles"),
            Some(json!({"role_id": role_id})),
            Some(&h.admin),
        )
        .await;
    assert_eq!(give.status, 200);
    assert_eq!(grants_now(&h, &token), Some(before));
}

#[tokio::test]
async fn patching_an_identity_checks_input_and_changes_what_its_tokens_say() {
    let h = harness(&[]);
    let key = TestKey::p256();
    let reg = h
        .register(
            "gateway",
            &key.public(),
            json!({"metadata": {"devices": ["dev-A"]}}),
        )
        .await;
    let gw = reg.body["identity_id"].as_str().unwrap().to_owned();
    let token = h.login(&key).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/identity/{gw}");
    let before = grants_now(&h, &token).unwrap();
    assert!(
        before["publish"].to_string().contains("devices/dev-A/#"),
        "{before}"
    );

    for bad in [
        json!({"tenant": "a/b"}),
        json!({"scopes": ["has space"]}),
        json!({"metadata": {"devices": ["dev-A/#"]}}),
        json!({"type": "admin"}),
        json!({"public_key": key.public()}),
        json!({"name": "x\u{7}"}),
        json!([]),
    ] {
        let r = h
            .call("PATCH", &path, Some(bad.clone()), Some(&h.admin))
            .await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
    }
    let r = h
        .call("PATCH", &path, Some(json!({"name": "x"})), Some(&token))
        .await;
    assert_eq!(r.status, 403, "not even the identity itself");
    let r = h
        .call(
            "PATCH",
            "/identity/gw-NOSUCHGATEWAY00",
            Some(json!({})),
            Some(&h.admin),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        grants_now(&h, &token),
        Some(before.clone()),
        "refused edits change nothing"
    );

    let r = h
        .call(
            "PATCH",
            &path,
            Some(json!({"name": "line 2", "metadata": {"devices": ["dev-B"]}})),
            Some(&h.admin),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["name"], "line 2");
    assert_eq!(r.body["type"], "gateway", "type and key never change");
    assert_eq!(r.body["public_key"], reg.body["public_key"]);
    let after = grants_now(&h, &token).unwrap().to_string();
    assert!(
        after.contains("devices/dev-B/#") && !after.contains("devices/dev-A/#"),
        "{after}"
    );

    // A disabled identity is gone for changes too.
    assert_eq!(
        h.call("DELETE", &path, None, Some(&h.admin)).await.status,
        204
    );
    let r = h
        .call("PATCH", &path, Some(json!({"name": "y"})), Some(&h.admin))
        .await;
    assert_eq!(r.status, 404);
}
