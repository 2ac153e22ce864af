//! The policy routes against the real routes and store (in process): the gate's 200 and 422,
//! deploy and its compare-and-swap, rollback, history, eval on a candidate, admin authority on
//! every route, hostile bodies, and the access diff over the store's identities and a live MQTT
//! session's principal.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::broker_routes::mint;
use super::enforcement::embedded_broker;
use super::harness::{Harness, TestKey, harness, harness_now, policies};

const FAST: &[&str] = &["--rate-limit", "100000/60"];

pub fn shipped_files() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(policies()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rego") {
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            out.insert(name, std::fs::read_to_string(&p).unwrap());
        }
    }
    out
}

/// The shipped files with one replacement in `file` (which must apply).
pub fn edit(
    files: &BTreeMap<String, String>,
    file: &str,
    from: &str,
    to: &str,
) -> BTreeMap<String, String> {
    let mut out = files.clone();
    let text = out.get_mut(file).unwrap();
    assert!(text.contains(from), "{file} no longer contains {from:?}");
    *text = text.replacen(from, to, 1);
    out
}

pub const DEVICE_SUBSCRIBE: &str =
    r#"device_subscribe(p) := {sprintf("devices/%s/cmd/#", [d]) | some d in acts_for(p)}"#;

/// Devices also subscribe `fleet/#` (and the test that pins a device's grants says so).
pub fn with_fleet(files: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let files = edit(
        files,
        "broker.rego",
        DEVICE_SUBSCRIBE,
        &format!(r#"{DEVICE_SUBSCRIBE} | {{"fleet/#" | p.type == "device"}}"#),
    );
    edit(
        &files,
        "broker_test.rego",
        r#"g.subscribe == ["devices/dev-D1/cmd/#"]"#,
        r#"g.subscribe == ["devices/dev-D1/cmd/#", "fleet/#"]"#,
    )
}

/// The `writer` role no longer publishes (its test updated to match).
pub fn writer_read_only(files: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let files = edit(
        files,
        "broker.rego",
        r#"has_role(p, "writer"); t := tenant_of(p)"#,
        "false; t := tenant_of(p)",
    );
    edit(
        &files,
        "broker_test.rego",
        r#"w.publish == ["tenants/t1/#"]"#,
        "w.publish == []",
    )
}

async fn post(h: &Harness, path: &str, body: Value) -> super::harness::Reply {
    h.call("POST", path, Some(body), Some(&h.admin)).await
}

async fn get(h: &Harness, path: &str) -> super::harness::Reply {
    h.call("GET", path, None, Some(&h.admin)).await
}

#[tokio::test]
async fn validate_answers_200_with_the_tests_or_422_at_file_line_col_and_by_test_name() {
    let h = harness(FAST);
    let ok = post(&h, "/policies/validate", json!({"files": shipped_files()})).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["valid"], true);
    assert_eq!(ok.body["evaluator"], "rvm");
    let tests = ok.body["tests"].as_array().unwrap();
    assert!(tests.len() >= 15 && tests.iter().all(|t| t["passed"] == true));

    let broken = edit(
        &shipped_files(),
        "broker.rego",
        "grants := grants_for(input.principal)",
        "grants := grants_for(input.principal",
    );
    let r = post(&h, "/policies/validate", json!({"files": broken})).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.error(), "POLICY_INVALID");
    assert_eq!(r.body["code"], 4220);
    let p = &r.body["problems"][0];
    assert_eq!(p["file"], "broker.rego", "{:?}", r.body);
    assert!(p["line"].as_u64().unwrap() >= 15 && p["col"].as_u64().unwrap() >= 1);

    let failing = edit(
        &shipped_files(),
        "broker.rego",
        DEVICE_SUBSCRIBE,
        &DEVICE_SUBSCRIBE.replace("acts_for(p)}", "acts_for(p); false}"),
    );
    let r = post(&h, "/policies/validate", json!({"files": failing})).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let failed: Vec<&str> = r.body["tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["passed"] == false)
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(!failed.is_empty(), "{:?}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains(failed[0]));
    assert!(
        r.body["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["file"] == "broker_test.rego"
                && p["message"].as_str().unwrap().contains(failed[0])),
        "the failed test is a problem at its line: {:?}",
        r.body
    );
    // Validation changed nothing.
    assert_eq!(get(&h, "/policies").await.body["version"], 1);
}

#[tokio::test]
async fn deploy_goes_live_a_stale_base_is_409_and_a_rollback_brings_the_old_files_back() {
    let h = harness(FAST);
    let live = get(&h, "/policies").await;
    assert_eq!(live.status, 200, "{:?}", live.body);
    assert_eq!(live.body["version"], 1);
    assert_eq!(live.body["source"], "dir");
    assert_eq!(live.body["evaluator"], "rvm");
    assert_eq!(
        live.body["files"].as_array().unwrap().len(),
        shipped_files().len()
    );
    let v1_hash = live.body["hash"].as_str().unwrap().to_owned();

    let device = mint(&h, "dev-FLEET1", |_| {});
    let may_subscribe = |topic: &'static str| {
        let (h, device) = (&h, device.clone());
        async move {
            let r = h
                .call(
                    "POST",
                    "/acl",
                    Some(json!({"topic": topic, "acc": 4, "clientid": "c"})),
                    Some(&device),
                )
                .await;
            r.status == 200
        }
    };
    assert!(
        !may_subscribe("fleet/news").await,
        "not granted before the deploy"
    );

    let d = post(
        &h,
        "/policies",
        json!({"files": with_fleet(&shipped_files()), "message": "fleet news", "base_version": 1}),
    )
    .await;
    assert_eq!(d.status, 201, "{:?}", d.body);
    assert_eq!(d.body["version"], 2);
    assert_eq!(d.body["source"], "api");
    assert_eq!(d.body["message"], "fleet news");
    let author = d.body["author"].as_str().unwrap();
    assert!(
        !author.is_empty() && h.admin.contains(author),
        "the deploying API key's id: {author}"
    );
    let live = get(&h, "/policies").await;
    assert_eq!(live.body["version"], 2);
    assert_eq!(live.body["hash"], d.body["hash"]);
    assert_ne!(live.body["hash"], v1_hash.as_str());
    assert!(may_subscribe("fleet/news").await, "granted once deployed");

    // A second editor still on version 1: refused, nothing changes.
    let stale = post(
        &h,
        "/policies",
        json!({"files": shipped_files(), "message": "mine", "base_version": 1}),
    )
    .await;
    assert_eq!(stale.status, 409, "{:?}", stale.body);
    assert_eq!(stale.error(), "CONFLICT");
    assert_eq!(get(&h, "/policies").await.body["version"], 2);
    assert!(may_subscribe("fleet/news").await);

    let rb = post(&h, "/policies/rollback", json!({"version": 1})).await;
    assert_eq!(rb.status, 201, "{:?}", rb.body);
    assert_eq!(rb.body["version"], 3);
    assert_eq!(rb.body["source"], "rollback");
    assert_eq!(rb.body["hash"], v1_hash.as_str(), "version 1's files again");
    let v3 = get(&h, "/policies/versions/3").await;
    assert_eq!(v3.body["files"], json!(shipped_files()));
    assert!(
        !may_subscribe("fleet/news").await,
        "refused again after the rollback"
    );

    let all = get(&h, "/policies/versions").await;
    let numbers: Vec<u64> = all.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2, 1]);
    assert!(
        all.body["versions"][0].get("files").is_none(),
        "lists carry no files"
    );
    let page = get(&h, "/policies/versions?limit=1&before=3").await;
    assert_eq!(page.body["versions"][0]["version"], 2);
    assert_eq!(page.body["versions"].as_array().unwrap().len(), 1);
    assert_eq!(get(&h, "/policies/versions/9").await.status, 404);

    let metrics = String::from_utf8(h.call("GET", "/metrics", None, None).await.raw).unwrap();
    assert!(
        metrics.contains("broker_auth_policy_version 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"broker_auth_policy_changes_total{source="api",result="deployed"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"broker_auth_policy_changes_total{source="api",result="conflict"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"broker_auth_policy_changes_total{source="rollback",result="deployed"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn eval_runs_on_the_live_bundle_or_on_a_candidate_with_explain() {
    let h = harness(FAST);
    let input = json!({"principal": {"id": "dev-E1", "type": "device", "protocol": "mqtt"}});
    let live = post(&h, "/policies/eval", json!({"input": input})).await;
    assert_eq!(live.status, 200, "{:?}", live.body);
    assert_eq!(live.body["entrypoint"], "data.broker.grants");
    assert_eq!(
        live.body["result"]["subscribe"],
        json!(["devices/dev-E1/cmd/#"])
    );
    let cand = post(
        &h,
        "/policies/eval",
        json!({"input": input, "files": with_fleet(&shipped_files()), "explain": true}),
    )
    .await;
    assert_eq!(cand.status, 200, "{:?}", cand.body);
    assert_eq!(
        cand.body["result"]["subscribe"],
        json!(["devices/dev-E1/cmd/#", "fleet/#"])
    );
    assert!(
        cand.body["fired"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "data.broker.grants")
    );
    assert!(!cand.body["lines"].as_array().unwrap().is_empty());
    let acl = json!({"principal": {"id": "dev-E1", "type": "device", "protocol": "mqtt"}, "topic": "devices/dev-E1/x", "action": "publish", "acc": 2, "clientid": "c"});
    let allow = post(&h, "/policies/eval", json!({"input": acl})).await;
    assert_eq!(allow.body["entrypoint"], "data.broker.mqtt.acl.allow");
    assert_eq!(allow.body["result"], true);
    // The live version did not change.
    assert_eq!(get(&h, "/policies").await.body["version"], 1);
}

#[tokio::test]
async fn every_policy_route_refuses_without_admin_authority() {
    let h = harness(FAST);
    let device = h.announce(&TestKey::ed()).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let body =
        json!({"files": shipped_files(), "base_version": 1, "version": 1, "input": {}, "to": 1});
    let routes: [(&str, &str); 8] = [
        ("GET", "/policies"),
        ("GET", "/policies/versions"),
        ("GET", "/policies/versions/1"),
        ("POST", "/policies/validate"),
        ("POST", "/policies"),
        ("POST", "/policies/rollback"),
        ("POST", "/policies/eval"),
        ("POST", "/policies/diff"),
    ];
    for (method, path) in routes {
        let b = (method == "POST").then(|| body.clone());
        // Bodies are checked after authority only where they parse: send the route's own shape.
        let b = b.map(|mut b| {
            let o = b.as_object_mut().unwrap();
            match path {
                "/policies/validate" => o.retain(|k, _| k == "files"),
                "/policies" => o.retain(|k, _| k == "files" || k == "base_version"),
                "/policies/rollback" => o.retain(|k, _| k == "version"),
                "/policies/eval" => o.retain(|k, _| k == "input"),
                _ => o.retain(|k, _| k == "to"),
            }
            b
        });
        let anon = h.call(method, path, b.clone(), None).await;
        assert_eq!(
            anon.status, 401,
            "{method} {path} without a token: {:?}",
            anon.body
        );
        assert_eq!(anon.body["code"], 4003);
        let dev = h.call(method, path, b, Some(&device)).await;
        assert_eq!(
            dev.status, 403,
            "{method} {path} as a device: {:?}",
            dev.body
        );
        assert_eq!(dev.error(), "FORBIDDEN");
    }
    assert_eq!(
        get(&h, "/policies").await.body["version"],
        1,
        "nothing was deployed"
    );
}

#[tokio::test]
async fn oversized_and_malformed_bundles_are_refused_with_the_envelope() {
    let h = harness(FAST);
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{".to_vec(), 400, "VALIDATION_ERROR"),
        (b"[]".to_vec(), 400, "VALIDATION_ERROR"),
        (br#"{"files": []}"#.to_vec(), 400, "VALIDATION_ERROR"),
        (br#"{"files": {}}"#.to_vec(), 400, "VALIDATION_ERROR"),
        (
            br#"{"files": {"../etc.rego": "package x"}}"#.to_vec(),
            400,
            "VALIDATION_ERROR",
        ),
        (
            br#"{"files": {"a.rego": 7}}"#.to_vec(),
            400,
            "VALIDATION_ERROR",
        ),
        (
            br#"{"files": {"data.json": "[1]", "a.rego": "package a"}}"#.to_vec(),
            400,
            "VALIDATION_ERROR",
        ),
        (
            br#"{"files": {"a.rego": "package a"}, "extra": 1}"#.to_vec(),
            400,
            "VALIDATION_ERROR",
        ),
        (
            br#"{"files": {"a.rego": "package a\nx := 1"}}"#.to_vec(),
            422,
            "POLICY_INVALID",
        ),
        (
            serde_json::to_vec(&json!({"files": {"big.rego": "#".repeat(300 * 1024)}})).unwrap(),
            400,
            "VALIDATION_ERROR",
        ),
        (
            serde_json::to_vec(&json!({"files": {"big.rego": "#".repeat(3 * 1024 * 1024)}}))
                .unwrap(),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            br#"{"files": {"a.rego": "\u0000\u0001"}}"#.to_vec(),
            422,
            "POLICY_INVALID",
        ),
    ];
    for (body, status, error) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let r = h
            .call_from(
                "198.51.100.1:5000",
                "POST",
                "/policies/validate",
                Some(body),
                Some(&h.admin),
                &[],
            )
            .await;
        assert_eq!(r.status.as_u16(), status, "{shown}: {:?}", r.body);
        assert_eq!(r.error(), error, "{shown}");
        assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let bad_base = post(
        &h,
        "/policies",
        json!({"files": shipped_files(), "base_version": "one"}),
    )
    .await;
    assert_eq!(bad_base.status, 400, "{:?}", bad_base.body);
    let no_base = post(&h, "/policies", json!({"files": shipped_files()})).await;
    assert_eq!(
        no_base.status, 400,
        "base_version is required: {:?}",
        no_base.body
    );
    assert_eq!(
        get(&h, "/policies").await.body["version"],
        1,
        "nothing was deployed"
    );
}

/// (publish added, publish removed, subscribe added, subscribe removed).
type Row = (Vec<String>, Vec<String>, Vec<String>, Vec<String>);

/// The diff entry of `id`.
fn entry(diff: &Value, id: &str) -> Option<Row> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    diff["changed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["principal"]["id"] == id)
        .map(|c| {
            (
                strings(&c["publish"]["added"]),
                strings(&c["publish"]["removed"]),
                strings(&c["subscribe"]["added"]),
                strings(&c["subscribe"]["removed"]),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_diff_lists_stored_identities_and_a_live_mqtt_principal_exactly() {
    let h = harness_now(FAST);
    // In the store: an announced device, a writer and a reader of one app.
    let dev = h.announce(&TestKey::ed()).await;
    assert_eq!(dev.status, 200, "{:?}", dev.body);
    let dev_id = dev.body["device_address"].as_str().unwrap().to_owned();
    let app = post(&h, "/apps", json!({"name": "plant"})).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let writer_role = post(&h, &format!("/apps/{app}/roles"), json!({"name": "writer"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reader_role = post(&h, &format!("/apps/{app}/roles"), json!({"name": "reader"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut people = Vec::new();
    for role in [&writer_role, &reader_role] {
        let r = h
            .register("user", &TestKey::ed().public(), json!({"tenant": app}))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let id = r.body["identity_id"].as_str().unwrap().to_owned();
        let a = post(
            &h,
            &format!("/apps/{app}/users/{id}/roles"),
            json!({"role_id": role}),
        )
        .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        people.push(id);
    }
    // Live, not in the store: a device whose token was minted for it, connected to the broker.
    let runtime = h.state.runtime();
    let (_broker, port) = embedded_broker(&runtime).await;
    let live_dev = "dev-LIVEONLY";
    let token = mint(&h, live_dev, |_| {});
    let _live = super::enforcement::mqtt(port, "live-1", &token)
        .await
        .unwrap();
    assert_eq!(runtime.enforcer.len(), 1);

    let changed = writer_read_only(&with_fleet(&shipped_files()));
    let r = post(&h, "/policies/diff", json!({"to": {"files": changed}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["from"], 1);
    assert_eq!(r.body["to"], Value::Null);
    assert_eq!(r.body["truncated"], false);
    assert_eq!(
        r.body["principals_examined"], 4,
        "3 stored + 1 live: {:?}",
        r.body
    );
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let tenant_all = format!("tenants/{app}/#");
    // The table, stated by hand: who gains, who loses, and everyone else is left out.
    let want = [
        (
            dev_id.as_str(),
            Some((s(&[]), s(&[]), s(&["fleet/#"]), s(&[]))),
        ),
        (live_dev, Some((s(&[]), s(&[]), s(&["fleet/#"]), s(&[])))),
        (
            people[0].as_str(),
            Some((s(&[]), s(&[&tenant_all]), s(&[]), s(&[]))),
        ),
        (people[1].as_str(), None),
    ];
    for (id, expected) in want {
        assert_eq!(entry(&r.body, id), expected, "{id}: {:?}", r.body);
    }
    assert_eq!(r.body["changed"].as_array().unwrap().len(), 3);
    let writer = r.body["changed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["principal"]["id"] == people[0].as_str())
        .unwrap();
    assert_eq!(writer["principal"]["roles"], json!(["writer"]));
    assert_eq!(writer["principal"]["tenant"], app.as_str());
    assert_eq!(writer["superuser"], json!({"from": false, "to": false}));

    // Against a stored version, and a bundle that fails the gate.
    let v2 = post(
        &h,
        "/policies",
        json!({"files": changed, "base_version": 1}),
    )
    .await;
    assert_eq!(v2.status, 201, "{:?}", v2.body);
    let back = post(&h, "/policies/diff", json!({"from": 2, "to": 1})).await;
    assert_eq!(back.status, 200, "{:?}", back.body);
    assert_eq!(
        entry(&back.body, live_dev),
        Some((s(&[]), s(&[]), s(&[]), s(&["fleet/#"])))
    );
    let limited = post(
        &h,
        "/policies/diff",
        json!({"from": 2, "to": 1, "limit": 2}),
    )
    .await;
    assert_eq!(limited.body["truncated"], true);
    assert_eq!(limited.body["principals_examined"], 2);
    let broken = edit(
        &shipped_files(),
        "broker.rego",
        "grants := grants_for(input.principal)",
        "grants := (",
    );
    let bad = post(&h, "/policies/diff", json!({"to": {"files": broken}})).await;
    assert_eq!(bad.status, 422, "{:?}", bad.body);
    assert_eq!(
        post(&h, "/policies/diff", json!({"to": 99})).await.status,
        404
    );
}
