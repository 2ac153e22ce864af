//! One enforcement runtime ends MQTT sessions and NATS connections alike, with real peers: a real
//! nats-server 2.15 with the callout in process, real MQTT clients (rumqttc) on the embedded
//! broker. The injected clock ends both at `exp`; a policy change that takes a device's publish
//! grant away cuts its two connections within a second and leaves another device's alone; taking
//! a role from a user cuts its MQTT and NATS connections within a second.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_auth_mqtt::{EmbeddedBroker, MqttConfig};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAckReason};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use serde_json::{Value, json};
use test_support::NatsServer;
use test_support::nats_client::{Events, expect_event, token_client};

use super::broker_routes::{DEV, mint};
use super::harness::{TestKey, harness_now};
use super::nats_callout::{CURVE_SEED, ISSUER_SEED, announce, callout_flags, nats_config};
use super::server::{Server, bootstrap};

const CUT: Duration = Duration::from_secs(1);

/// An MQTT v5 client connected with `token`, or the CONNACK code that refused it.
pub(crate) async fn mqtt(
    port: u16,
    id: &str,
    token: &str,
) -> Result<(AsyncClient, EventLoop), ConnectReturnCode> {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials("x", token);
    o.set_keep_alive(Duration::from_secs(30));
    let (c, mut el) = AsyncClient::new(o, 100);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), el.poll())
            .await
            .expect("CONNACK in time")
        {
            Ok(Event::Incoming(Packet::ConnAck(a))) if a.code == ConnectReturnCode::Success => {
                return Ok((c, el));
            }
            Ok(Event::Incoming(Packet::ConnAck(a))) => return Err(a.code),
            Ok(_) => {}
            Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => return Err(code),
            Err(e) => panic!("no CONNACK: {e:?}"),
        }
    }
}

/// The embedded MQTT broker on `runtime`, on a free loopback port.
pub(crate) async fn embedded_broker(
    runtime: &broker_auth_runtime::Runtime,
) -> (EmbeddedBroker, u16) {
    let config = MqttConfig {
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let broker = EmbeddedBroker::start(&config, runtime.clone(), Default::default())
        .await
        .unwrap();
    let port = broker.addrs().tcp.unwrap().port();
    (broker, port)
}

/// Poll until the broker closes the session; how long that took (panics after 5 s).
pub(crate) async fn mqtt_closed(el: &mut EventLoop) -> Duration {
    let t0 = Instant::now();
    while tokio::time::timeout(Duration::from_secs(5), el.poll())
        .await
        .expect("closed in time")
        .is_ok()
    {}
    t0.elapsed()
}

/// Publish QoS1 and return the PUBACK reason, or None when the session ends first.
pub(crate) async fn mqtt_publish(
    c: &AsyncClient,
    el: &mut EventLoop,
    topic: &str,
) -> Option<PubAckReason> {
    c.publish(topic, QoS::AtLeastOnce, false, "x").await.ok()?;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), el.poll())
            .await
            .expect("PUBACK in time")
        {
            Ok(Event::Incoming(Packet::PubAck(a))) => return Some(a.reason),
            Ok(Event::Incoming(Packet::Disconnect(_))) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// A NATS round trip on `c` (the connection is alive and served).
async fn nats_alive(c: &async_nats::Client) -> bool {
    tokio::time::timeout(Duration::from_secs(3), c.flush())
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Connect over NATS, retrying while the in-process responder is still subscribing.
pub(crate) async fn nats_connect(url: &str, token: &str) -> (async_nats::Client, Events) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match token_client(url, token).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "no NATS connect: {e}");
                // The responder subscribes in the background: poll for its readiness.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_injected_clock_reaching_exp_ends_the_mqtt_session_and_the_nats_connection() {
    let nats = NatsServer::start(&nats_config());
    let h = harness_now(&[]);
    let runtime = h.state.runtime();
    let _enforcement = runtime.spawn_enforcement();
    let (_broker, port) = embedded_broker(&runtime).await;
    // The callout of `sidecar serve`, on this harness's runtime (and so its manual clock).
    let responder = Arc::new(
        callout::Responder::new(
            ISSUER_SEED,
            Some(CURVE_SEED),
            callout::AccountMap {
                default: "APP".into(),
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let connect = |u: &str, p: &str| {
        async_nats::ConnectOptions::with_user_and_password(u.into(), p.into()).connect(nats.url())
    };
    let service = callout::service::subscribe(
        connect("auth", "auth-pw").await.unwrap(),
        Some(connect("sys", "sys-pw").await.unwrap()),
        responder,
        runtime.clone(),
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    tokio::spawn(service.run(std::future::pending()));

    let token = mint(&h, DEV, |c| c.exp = c.iat + 60);
    let (nc, mut events) = nats_connect(&nats.url(), &token).await;
    let (_mc, mut mel) = mqtt(port, "exp-dev", &token).await.unwrap();
    assert!(nats_alive(&nc).await);
    assert_eq!(
        runtime.enforcer.len(),
        2,
        "both admitted to the one registry"
    );

    // Past `exp` and the 30 s leeway by the harness's clock; the wall clock has barely moved.
    h.clock.advance(91);
    expect_event(&mut events, "disconnected", Duration::from_secs(3)).await;
    let took = mqtt_closed(&mut mel).await;
    assert!(took < CUT * 3, "MQTT closed after {took:?}");
    assert!(runtime.enforcer.is_empty());
    assert!(
        token_client(&nats.url(), &token).await.is_err(),
        "expired for NATS"
    );
    assert_eq!(
        mqtt(port, "exp-dev", &token).await.err(),
        Some(ConnectReturnCode::BadUserNamePassword),
        "expired for MQTT"
    );
}

/// `sidecar serve` with the callout in process (kicks through the system account) and its own
/// policy directory.
fn serve_with_nats(dir: &Path, nats: &NatsServer, policies: &Path) -> (Server, String) {
    let data = dir.join("data");
    let admin = bootstrap(&data);
    let mut flags = callout_flags(dir, nats);
    flags.extend([
        "--policies".to_owned(),
        policies.to_str().unwrap().to_owned(),
    ]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    (Server::start(&data, &flags), admin)
}

fn own_policies(dir: &Path) -> PathBuf {
    let to = dir.join("policies");
    std::fs::create_dir_all(&to).unwrap();
    let from = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    for f in ["broker.rego", "mqtt_acl.rego"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    to
}

/// A nats-server, and `sidecar serve` with the callout in process on a copy of the policies.
/// (Fields drop in order: the sidecar stops before nats-server and its directory go.)
pub(crate) struct WithNats {
    pub server: Server,
    pub admin: String,
    pub policies: PathBuf,
    pub nats: NatsServer,
    pub dir: tempfile::TempDir,
}

pub(crate) fn with_nats() -> WithNats {
    let nats = NatsServer::start(&nats_config());
    let dir = tempfile::tempdir().unwrap();
    let policies = own_policies(dir.path());
    let (server, admin) =
        tokio::task::block_in_place(|| serve_with_nats(dir.path(), &nats, &policies));
    WithNats {
        server,
        admin,
        policies,
        nats,
        dir,
    }
}

/// Ask `/acl` whether `token` may publish `topic` (the policy as the server serves it now).
async fn may_publish(http: &reqwest::Client, server: &Server, token: &str, topic: &str) -> bool {
    http.post(server.url("/acl"))
        .bearer_auth(token)
        .json(&json!({"topic": topic, "acc": 2, "clientid": "probe"}))
        .send()
        .await
        .unwrap()
        .status()
        .is_success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_cuts_the_devices_it_narrows_and_leaves_the_others_connected() {
    let WithNats {
        server,
        admin: _admin,
        policies,
        nats,
        dir: _dir,
    } = with_nats();
    let http = reqwest::Client::new();
    let port = server.mqtt_port.unwrap();
    let (cut, cut_token) = announce(&http, &server, &TestKey::ed(), 0).await;
    let (kept, kept_token) = announce(&http, &server, &TestKey::ed(), 0).await;
    let (cut_nats, mut cut_events) = nats_connect(&nats.url(), &cut_token).await;
    let (kept_nats, mut kept_events) = nats_connect(&nats.url(), &kept_token).await;
    let (_c, mut cut_mqtt) = mqtt(port, "cut", &cut_token).await.unwrap();
    let (kc, mut kept_mqtt) = mqtt(port, "kept", &kept_token).await.unwrap();

    // One device no longer publishes anything.
    let broker = policies.join("broker.rego");
    let text = std::fs::read_to_string(&broker).unwrap();
    let edited = text.replace(
        r#"device_publish(p) := {sprintf("devices/%s/#", [d]) | some d in acts_for(p)}"#,
        &format!(r#"device_publish(p) := {{sprintf("devices/%s/#", [d]) | some d in acts_for(p); d != "{cut}"}}"#),
    );
    assert_ne!(text, edited, "the shipped policy changed shape");
    let written = Instant::now();
    std::fs::write(&broker, edited).unwrap();
    let topic = format!("devices/{cut}/telemetry");
    // Ready when the server answers by the edited policy (it follows its directory).
    let deadline = Instant::now() + Duration::from_secs(10);
    while may_publish(&http, &server, &cut_token, &topic).await {
        assert!(
            Instant::now() < deadline,
            "the edited policy never went live"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let in_force = Instant::now();
    expect_event(&mut cut_events, "disconnected", CUT * 2).await;
    let nats_cut = in_force.elapsed();
    let mqtt_cut = in_force.elapsed() + mqtt_closed(&mut cut_mqtt).await;
    for (what, took) in [("NATS", nats_cut), ("MQTT", mqtt_cut)] {
        assert!(
            took < CUT,
            "{what} cut {took:?} after the policy went live ({:?} after the edit)",
            written.elapsed()
        );
    }
    // The other device keeps both connections and its grants.
    assert!(nats_alive(&kept_nats).await);
    while let Ok(ev) = kept_events.try_recv() {
        assert!(!ev.contains("disconnected"), "the kept NATS client: {ev}");
    }
    let own = format!("devices/{kept}/telemetry");
    assert_eq!(
        mqtt_publish(&kc, &mut kept_mqtt, &own).await,
        Some(PubAckReason::Success)
    );
    drop(cut_nats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_a_role_from_a_user_cuts_its_mqtt_and_nats_connections() {
    let WithNats {
        server,
        admin,
        policies: _,
        nats,
        dir: _dir,
    } = with_nats();
    let http = reqwest::Client::new();
    let call = |m: reqwest::Method, path: String, body: Option<Value>| {
        let mut r = http.request(m, server.url(&path)).bearer_auth(&admin);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };
    let app: Value = call(
        reqwest::Method::POST,
        "/apps".into(),
        Some(json!({"name": "plant"})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let app = app["id"].as_str().unwrap().to_owned();
    let role: Value = call(
        reqwest::Method::POST,
        format!("/apps/{app}/roles"),
        Some(json!({"name": "writer"})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let role = role["id"].as_str().unwrap().to_owned();
    let (user, token) = {
        let (s, a) = (&server, admin.clone());
        let body = json!({"type": "user", "tenant": app});
        tokio::task::block_in_place(|| {
            let c = reqwest::blocking::Client::new();
            let key = TestKey::ed();
            let (id, _) = super::mqtt_e2e::register_and_login(&c, s, &a, &key, body);
            let r = c
                .post(s.url(&format!("/apps/{app}/users/{id}/roles")))
                .bearer_auth(&a)
                .json(&json!({"role_id": role}))
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            // A token issued with the role.
            (id, super::mqtt_e2e::login(&c, s, &key))
        })
    };
    let topic = format!("tenants/{app}/line-1");
    let (nc, mut events) = nats_connect(&nats.url(), &token).await;
    let (mc, mut mel) = mqtt(server.mqtt_port.unwrap(), "writer", &token)
        .await
        .unwrap();
    assert_eq!(
        mqtt_publish(&mc, &mut mel, &topic).await,
        Some(PubAckReason::Success)
    );
    assert!(nats_alive(&nc).await);

    let t0 = Instant::now();
    let r = call(
        reqwest::Method::DELETE,
        format!("/apps/{app}/users/{user}/roles/{role}"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    expect_event(&mut events, "disconnected", CUT * 2).await;
    let nats_cut = t0.elapsed();
    let mqtt_cut = t0.elapsed() + mqtt_closed(&mut mel).await;
    assert!(
        nats_cut < CUT && mqtt_cut < CUT,
        "NATS {nats_cut:?}, MQTT {mqtt_cut:?}"
    );
    // The same token comes back without the role: its publish is refused now.
    let (mc, mut mel) = mqtt(server.mqtt_port.unwrap(), "writer", &token)
        .await
        .unwrap();
    assert_eq!(
        mqtt_publish(&mc, &mut mel, &topic).await,
        Some(PubAckReason::NotAuthorized)
    );
}
