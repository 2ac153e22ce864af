//! Deploys reach live connections, atomically: under a steady MQTT publish load, 20 deploys that
//! alternate two bundles never produce a decision neither bundle would give; a deploy that takes
//! a device's grant away cuts its NATS connection and MQTT session within a second, and a
//! rollback gives it back at its next connect. Real MQTT clients (rumqttc v5), a real
//! nats-server 2.15 with the callout in process.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::PubAckReason;
use serde_json::{Value, json};
use test_support::nats_client::expect_event;

use super::broker_routes::mint;
use super::enforcement::{
    WithNats, embedded_broker, mqtt, mqtt_closed, mqtt_publish, nats_connect, with_nats,
};
use super::harness::{TestKey, harness_now};
use super::nats_callout::announce;
use super::policy_routes::{edit, shipped_files};

/// Devices without a tenant (announced or minted ones) may also publish `fleet/<id>/<leaf>`; the
/// shipped tests' device has a tenant, so they keep passing.
fn with_fleet(files: &BTreeMap<String, String>, leaf: &str) -> BTreeMap<String, String> {
    const DEVICE_PUBLISH: &str =
        r#"device_publish(p) := {sprintf("devices/%s/#", [d]) | some d in acts_for(p)}"#;
    edit(
        files,
        "broker.rego",
        DEVICE_PUBLISH,
        &format!(
            r#"{DEVICE_PUBLISH} | {{sprintf("fleet/%s/{leaf}", [p.id]) | p.type == "device"; not p.tenant}}"#
        ),
    )
}

/// What one connection of a publisher saw: (topic, granted) in order.
type Connection = Vec<(String, bool)>;

/// One publisher: publish, wait for its PUBACK, record (topic, granted) per connection;
/// reconnect when a narrowing deploy cuts the session.
async fn publisher(port: u16, id: String, token: String, stop: Arc<AtomicBool>) -> Vec<Connection> {
    let topics = [
        format!("devices/{id}/telemetry"),
        format!("fleet/{id}/a"),
        format!("fleet/{id}/b"),
        "elsewhere/x".to_owned(),
    ];
    let mut connections = Vec::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let Ok((c, mut el)) = mqtt(port, &format!("pub-{id}"), &token).await else {
            panic!("{id} refused at connect");
        };
        let mut seen = Connection::new();
        while !stop.load(Ordering::Relaxed) {
            let topic = &topics[n % topics.len()];
            match mqtt_publish(&c, &mut el, topic).await {
                Some(reason) => {
                    seen.push((topic.clone(), reason == PubAckReason::Success));
                    n += 1;
                }
                None => break, // cut: reconnect and go on
            }
        }
        connections.push(seen);
    }
    connections
}

/// Which bundle a connection's decisions are the answers of: `Some('a')`, `Some('b')`, or None
/// when they match neither (a mix of two versions, or a half-loaded one).
fn bundle_of(id: &str, seen: &Connection) -> Option<Option<char>> {
    let answer = |bundle: char, topic: &str| {
        topic.starts_with("devices/") || topic == format!("fleet/{id}/{bundle}")
    };
    let fits = |bundle: char| {
        seen.iter()
            .all(|(t, granted)| answer(bundle, t) == *granted)
    };
    let saw_fleet = seen.iter().any(|(t, _)| t.starts_with("fleet/"));
    match (fits('a'), fits('b')) {
        (true, true) => Some(None), // too short to tell (no fleet publish on it)
        (true, false) if saw_fleet => Some(Some('a')),
        (false, true) if saw_fleet => Some(Some('b')),
        (true, false) | (false, true) => Some(None),
        (false, false) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_alternating_deploys_under_publish_load_never_mix_two_versions() {
    let h = harness_now(&["--rate-limit", "100000/60"]);
    let runtime = h.state.runtime();
    let _enforcement = runtime.spawn_enforcement();
    let (_broker, port) = embedded_broker(&runtime).await;
    // Each flip narrows (a device loses the other leaf), so every deploy cuts the sessions and
    // they reconnect under the version that is live then.
    let (a, b) = (
        with_fleet(&shipped_files(), "a"),
        with_fleet(&shipped_files(), "b"),
    );
    let first = h
        .call(
            "POST",
            "/policies",
            Some(json!({"files": a, "message": "a", "base_version": 1})),
            Some(&h.admin),
        )
        .await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let stop = Arc::new(AtomicBool::new(false));
    let devices: Vec<String> = (1..=4).map(|i| format!("dev-LOAD{i}")).collect();
    let load: Vec<_> = devices
        .iter()
        .map(|id| {
            let token = mint(&h, id, |_| {});
            tokio::spawn(publisher(port, id.clone(), token, stop.clone()))
        })
        .collect();
    // Load first, then 20 deploys: B, A, B, … A.
    tokio::time::sleep(Duration::from_millis(300)).await; // let every publisher get going
    for i in 1..=20u64 {
        let files = if i % 2 == 1 { &b } else { &a };
        let r = h
            .call(
                "POST",
                "/policies",
                Some(
                    json!({"files": files, "message": format!("flip {i}"), "base_version": i + 1}),
                ),
                Some(&h.admin),
            )
            .await;
        assert_eq!(r.status, 201, "deploy {i}: {:?}", r.body);
        assert_eq!(r.body["version"], i + 2);
        // A steady load sees each version for a moment.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut decisions = 0;
    let mut seen_bundles = std::collections::BTreeSet::new();
    for (id, task) in devices.iter().zip(load) {
        for seen in task.await.unwrap() {
            decisions += seen.len();
            match bundle_of(id, &seen) {
                Some(b) => seen_bundles.extend(b),
                None => panic!("{id}: decisions of neither bundle on one connection: {seen:?}"),
            }
        }
    }
    assert!(
        decisions >= 100,
        "only {decisions} publish decisions under load"
    );
    assert_eq!(
        seen_bundles.len(),
        2,
        "both bundles decided some connection under load: {seen_bundles:?}"
    );
    // The last version is bundle a's: live, and deciding.
    let live = h.call("GET", "/policies", None, Some(&h.admin)).await;
    assert_eq!(live.body["version"], 22);
    let v2 = h
        .call("GET", "/policies/versions/2", None, Some(&h.admin))
        .await;
    assert_eq!(
        live.body["hash"], v2.body["hash"],
        "the last deploy was bundle a"
    );
    let token = mint(&h, "dev-LOAD1", |_| {});
    let (c, mut el) = mqtt(port, "final", &token).await.unwrap();
    assert_eq!(
        mqtt_publish(&c, &mut el, "fleet/dev-LOAD1/b").await,
        Some(PubAckReason::NotAuthorized)
    );
    assert_eq!(
        mqtt_publish(&c, &mut el, "fleet/dev-LOAD1/a").await,
        Some(PubAckReason::Success)
    );
    assert_eq!(
        mqtt_publish(&c, &mut el, "devices/dev-LOAD1/telemetry").await,
        Some(PubAckReason::Success)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_that_removes_a_grant_cuts_nats_and_mqtt_and_a_rollback_restores_it() {
    let WithNats {
        server,
        admin,
        policies: _,
        nats,
        dir: _dir,
    } = with_nats();
    let http = reqwest::Client::new();
    let port = server.mqtt_port.unwrap();
    let (dev, token) = announce(&http, &server, &TestKey::ed(), 0).await;
    let (_nc, mut events) = nats_connect(&nats.url(), &token).await;
    let (mc, mut mel) = mqtt(port, "victim", &token).await.unwrap();
    let own = format!("devices/{dev}/telemetry");
    assert_eq!(
        mqtt_publish(&mc, &mut mel, &own).await,
        Some(PubAckReason::Success)
    );

    let admin_call = |path: &str, body: Value| {
        http.post(server.url(path))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    let get = |path: String| {
        let r = http.get(server.url(&path)).bearer_auth(&admin).send();
        async move { r.await.unwrap().json::<Value>().await.unwrap() }
    };
    let base = get("/policies".into()).await["version"].as_u64().unwrap();
    let files: BTreeMap<String, String> =
        serde_json::from_value(get(format!("/policies/versions/{base}")).await["files"].clone())
            .unwrap();
    let narrowed = edit(
        &files,
        "broker.rego",
        r#"device_publish(p) := {sprintf("devices/%s/#", [d]) | some d in acts_for(p)}"#,
        &format!(
            r#"device_publish(p) := {{sprintf("devices/%s/#", [d]) | some d in acts_for(p); d != "{dev}"}}"#
        ),
    );
    let r = admin_call(
        "/policies",
        json!({"files": narrowed, "message": "no more telemetry", "base_version": base}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let deployed = Instant::now();
    expect_event(&mut events, "disconnected", Duration::from_secs(2)).await;
    let nats_cut = deployed.elapsed();
    let mqtt_cut = deployed.elapsed() + mqtt_closed(&mut mel).await;
    assert!(
        nats_cut < Duration::from_secs(1),
        "NATS cut after {nats_cut:?}"
    );
    assert!(
        mqtt_cut < Duration::from_secs(1),
        "MQTT cut after {mqtt_cut:?}"
    );
    // Its next connect has no publish grant any more.
    let (mc, mut mel) = mqtt(port, "victim", &token).await.unwrap();
    assert_eq!(
        mqtt_publish(&mc, &mut mel, &own).await,
        Some(PubAckReason::NotAuthorized)
    );
    drop((mc, mel));

    let rb = admin_call("/policies/rollback", json!({"version": base}))
        .await
        .unwrap();
    assert_eq!(rb.status(), 201);
    let (mc, mut mel) = mqtt(port, "victim", &token).await.unwrap();
    assert_eq!(
        mqtt_publish(&mc, &mut mel, &own).await,
        Some(PubAckReason::Success),
        "the rollback restored the grant for the next connect"
    );
    let (nc, _) = nats_connect(&nats.url(), &token).await;
    assert!(nc.flush().await.is_ok());
}
