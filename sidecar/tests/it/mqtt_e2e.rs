//! The embedded MQTT broker inside `sidecar serve`: real clients (paho-mqtt over TCP and
//! WebSocket, rumqttc), tokens from the REST API, revocation over REST cutting MQTT sessions, and
//! the same answers from `/acl` as from the broker for a table of principals × topics × actions.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};

use super::broker_routes::mint;
use super::harness::{TestKey, harness};
use super::server::{Server, bootstrap};

pub fn python_with_paho() -> PathBuf {
    let py = test_support::require_tool("python3", "apt-get install python3 python3-pip");
    let ok = Command::new(&py)
        .args(["-c", "import paho.mqtt.client"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "paho-mqtt is missing: pip install paho-mqtt");
    py
}

/// Register a device with `admin` and log it in; returns (identity id, access token).
fn device_login(c: &Client, server: &Server, admin: &str) -> (String, String) {
    register_and_login(c, server, admin, &TestKey::ed(), json!({"type": "device"}))
}

/// Register `key` with `admin` (`body` gives the type and anything else) and log it in by
/// challenge; returns (identity id, access token).
pub fn register_and_login(
    c: &Client,
    server: &Server,
    admin: &str,
    key: &TestKey,
    mut body: Value,
) -> (String, String) {
    body["public_key"] = json!(key.public());
    let reg: Value = c
        .post(server.url("/identity/register"))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = reg["identity_id"].as_str().expect("registered").to_owned();
    (id, login(c, server, key))
}

/// Log `key` in by challenge; its access token.
pub fn login(c: &Client, server: &Server, key: &TestKey) -> String {
    let ch: Value = c
        .post(server.url("/auth/challenge"))
        .json(&json!({"public_key": key.public()}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let challenge = ch["challenge"].as_str().unwrap();
    let login: Value = c
        .post(server.url("/auth/verify"))
        .json(&json!({"public_key": key.public(), "signature": key.sign(challenge.as_bytes()), "challenge": challenge}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    login["token"].as_str().unwrap().to_owned()
}

/// A self-signed P-256 certificate for 127.0.0.1: (cert, key) paths.
fn self_signed(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let openssl = test_support::require_tool("openssl", "apt-get install openssl");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl could not make a test certificate");
    (cert, key)
}

#[test]
fn paho_over_tcp_websocket_and_tls_against_the_sidecars_broker() {
    let py = python_with_paho();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let (cert, key) = self_signed(dir.path());
    let (ws_port, tls_port) = (test_support::free_port(), test_support::free_port());
    let ws = format!("127.0.0.1:{ws_port}");
    let tls = format!("127.0.0.1:{tls_port}");
    let server = Server::start(
        &data,
        &[
            "--mqtt-ws-listen",
            &ws,
            "--mqtt-tls-listen",
            &tls,
            "--mqtt-tls-cert",
            cert.to_str().unwrap(),
            "--mqtt-tls-key",
            key.to_str().unwrap(),
        ],
    );
    let c = Client::new();
    let (id, token) = device_login(&c, &server, &admin);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/mqtt_paho.py");
    let out = Command::new(&py)
        .arg(&script)
        .args([
            "127.0.0.1",
            &server.mqtt_port.unwrap().to_string(),
            &ws_port.to_string(),
            &tls_port.to_string(),
            cert.to_str().unwrap(),
            &id,
            &token,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["v311_tcp_good"][0], 0, "{r}");
    // paho 2 reports v3.1.1 return code 4 as "Bad user name or password".
    for case in ["v311_tcp_bad", "v311_tcp_anonymous"] {
        assert_eq!(r[case][1], "Bad user name or password", "{case}: {r}");
    }
    assert_eq!(r["v5_ws_bad"][0], 0x86, "{r}");
    assert_eq!(r["v5_tls_good"][0], 0, "{r}");
    assert_eq!(r["v5_tls_bad"][0], 0x86, "{r}");
    let s = &r["v5_ws_session"];
    assert_eq!(s["connect"], "Success", "{r}");
    assert_eq!(s["suback"], json!([1, 0x87]), "{r}");
    assert_eq!(s["pub_denied"], 0x87, "{r}");
    assert_eq!(s["pub_ok"], 0, "{r}");
    assert_eq!(
        s["messages"],
        json!([[format!("devices/{id}/cmd/echo"), "hello"]]),
        "{r}"
    );
    // The refusals are in /metrics by reason.
    let metrics = c
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("broker_auth_mqtt_connects_refused{reason=\"missing_token\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("broker_auth_mqtt_acl_denied{action=\"publish\"} 1"));
}

#[test]
fn disabling_an_identity_over_rest_cuts_its_mqtt_session() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let server = Server::start(&data, &[]);
    let c = Client::new();
    let (id, token) = device_login(&c, &server, &admin);
    let port = server.mqtt_port.unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut el = rt.block_on(async {
        let mut o = rumqttc::MqttOptions::new("dev-session", "127.0.0.1", port);
        o.set_credentials(id.clone(), token.clone());
        let (_c, mut el) = rumqttc::AsyncClient::new(o, 10);
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)) = el.poll().await.unwrap()
            {
                assert_eq!(a.code, rumqttc::ConnectReturnCode::Success);
                break;
            }
        }
        // Keep the client handle alive with the loop.
        std::mem::forget(_c);
        el
    });
    let res = c
        .delete(server.url(&format!("/identity/{id}")))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let t0 = Instant::now();
    rt.block_on(async {
        while tokio::time::timeout(Duration::from_secs(5), el.poll())
            .await
            .expect("closed in time")
            .is_ok()
        {}
    });
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

/// The table: each principal × topic × action, asked through `/acl` and tried on the broker.
#[tokio::test]
async fn acl_route_and_embedded_broker_agree_on_a_table_of_principals_topics_and_actions() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Filter, Packet, PubAckReason, SubscribeReasonCode};
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    let h = harness(&[]);
    let broker = broker_auth_mqtt::EmbeddedBroker::start(
        &broker_auth_mqtt::MqttConfig {
            tcp: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        h.state.runtime(),
        Default::default(),
    )
    .await
    .unwrap();
    let port = broker.addrs().tcp.unwrap().port();
    let dev = "dev-AAAAAAAAAAAAAAAA";
    let principals: Vec<(&str, String)> = vec![
        ("device", mint(&h, dev, |_| {})),
        (
            "gateway",
            mint(&h, "gw-GGGGGGGGGGGGGGGG", |c| c.devices = vec![dev.into()]),
        ),
        (
            "tenant writer",
            mint(&h, "usr-WRITER", |c| {
                c.tenant = Some("t1".into());
                c.roles = vec!["writer".into()];
            }),
        ),
        (
            "tenant reader",
            mint(&h, "usr-READER", |c| {
                c.tenant = Some("t1".into());
                c.roles = vec!["reader".into()];
            }),
        ),
        (
            "sensor",
            mint(&h, "svc-s1", |c| {
                c.tenant = Some("t1".into());
                c.roles = vec!["sensor".into()];
            }),
        ),
        (
            "backend",
            mint(&h, "svc-BACKEND", |c| c.roles = vec!["backend".into()]),
        ),
        (
            "superuser",
            mint(&h, "adm-ROOT", |c| c.scopes = vec!["mqtt.admin".into()]),
        ),
    ];
    let topics = [
        format!("devices/{dev}/telemetry"),
        format!("devices/{dev}/cmd/reboot"),
        "devices/dev-BBBBBBBBBBBBBBBB/telemetry".to_owned(),
        "devices/gw-GGGGGGGGGGGGGGGG/status".to_owned(),
        "tenants/t1/data".to_owned(),
        "tenants/t2/data".to_owned(),
        "rxc/t1/svc-s1/status".to_owned(),
        "rxc/t1/svc-s1/cmd".to_owned(),
        "rxc/t2/other/status".to_owned(),
        "$SYS/broker/uptime".to_owned(),
    ];
    let filters = [
        format!("devices/{dev}/cmd/#"),
        "devices/+/cmd/#".to_owned(),
        "tenants/t1/#".to_owned(),
        "rxc/+/+/status".to_owned(),
        "rxc/t1/svc-s1/cmd".to_owned(),
        "#".to_owned(),
        "$SYS/#".to_owned(),
    ];
    let mut allowed_somewhere = 0;
    let mut denied_somewhere = 0;
    for (who, token) in &principals {
        let mut o = MqttOptions::new(
            format!("table-{}", who.replace(' ', "-")),
            "127.0.0.1",
            port,
        );
        o.set_credentials("x", token.clone());
        let (c, mut el) = AsyncClient::new(o, 100);
        loop {
            if let Event::Incoming(Packet::ConnAck(a)) = el.poll().await.unwrap() {
                assert_eq!(
                    a.code,
                    rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success,
                    "{who}"
                );
                break;
            }
        }
        for topic in &topics {
            c.publish(topic.clone(), QoS::AtLeastOnce, false, "x")
                .await
                .unwrap();
            let broker_says = loop {
                if let Event::Incoming(Packet::PubAck(a)) = el.poll().await.unwrap() {
                    break a.reason == PubAckReason::Success;
                }
            };
            let r = h
                .call(
                    "POST",
                    "/acl",
                    Some(json!({"topic": topic, "acc": 2, "clientid": "c"})),
                    Some(token),
                )
                .await;
            let http_says = r.status == 200;
            assert_eq!(
                broker_says, http_says,
                "{who} publish {topic}: broker {broker_says}, /acl {:?}",
                r.body
            );
            if broker_says {
                allowed_somewhere += 1
            } else {
                denied_somewhere += 1
            }
        }
        for filter in &filters {
            c.subscribe_many([Filter::new(filter.clone(), QoS::AtLeastOnce)])
                .await
                .unwrap();
            let broker_says = loop {
                if let Event::Incoming(Packet::SubAck(a)) = el.poll().await.unwrap() {
                    break a.return_codes[0] == SubscribeReasonCode::Success(QoS::AtLeastOnce);
                }
            };
            let r = h
                .call(
                    "POST",
                    "/acl",
                    Some(json!({"topic": filter, "acc": 4, "clientid": "c"})),
                    Some(token),
                )
                .await;
            let http_says = r.status == 200;
            assert_eq!(
                broker_says, http_says,
                "{who} subscribe {filter}: broker {broker_says}, /acl {:?}",
                r.body
            );
            if broker_says {
                allowed_somewhere += 1
            } else {
                denied_somewhere += 1
            }
        }
        c.disconnect().await.unwrap();
    }
    // A table where everything is allowed or everything denied would prove nothing.
    assert!(
        allowed_somewhere > 20 && denied_somewhere > 20,
        "{allowed_somewhere} / {denied_somewhere}"
    );
    broker.shutdown();
}

/// A security-pass finding: a client that puts its access token in the MQTT username (and a
/// wrong password) had the whole token logged at INFO by rmqtt's connection-id line.
#[test]
fn a_token_given_as_the_mqtt_username_is_in_no_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let server = Server::start(&data, &[]);
    let (id, token) = device_login(&Client::new(), &server, &admin);
    let port = server.mqtt_port.unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for (client_id, password) in [("c-wrong", "wrong"), ("c-right", token.as_str())] {
            let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
            o.set_credentials(token.clone(), password);
            let (_c, mut el) = rumqttc::AsyncClient::new(o, 4);
            let _ = tokio::time::timeout(Duration::from_secs(5), el.poll()).await;
        }
    });
    let refused = || server.log().contains("mqtt connect refused");
    assert!(
        test_support::wait_until(Duration::from_secs(5), refused),
        "the refusal is logged (the log is being read):\n{}",
        server.log()
    );
    let log = server.log();
    assert!(!log.contains(&token), "the token is in the log:\n{log}");
    // Its signature alone is enough to replay nothing, but it is still the secret part.
    let signature = token.rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "{log}");
    assert!(!id.is_empty());
}
