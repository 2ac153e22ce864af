//! `docker/compose.yaml` run without an engine (see `broker_auth_journeys::compose`): its
//! services come up in order with their own keys, and a device goes through it — announced over
//! REST, admitted over NATS by the callout, over the embedded MQTT broker and over nats-server's
//! MQTT listener, refused outside its grants, cut on both brokers by one deregistration — and the
//! standalone callout keeps admitting when the sidecar is killed.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use broker_auth_examples::{DeviceKey, announce};
use broker_auth_journeys::compose::Deployment;
use broker_auth_journeys::repo;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAckReason};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use test_support::nats_client::{expect_event, token_client};

/// Connections subscribed to the auth-callout subject, from nats-server's monitoring.
fn responders(d: &Deployment) -> usize {
    test_support::http_get(d.port("nats", 8222), "/connz?subs=1&limit=1000")
        .map(|(_, body)| body.matches("\"$SYS.REQ.USER.AUTH\"").count())
        .unwrap_or(0)
}

/// A v5 client on `port` with the token as password, after its CONNACK.
async fn mqtt(
    port: u16,
    client_id: &str,
    token: &str,
) -> (AsyncClient, EventLoop, ConnectReturnCode) {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_credentials(client_id, token);
    let (client, mut el) = AsyncClient::new(o, 10);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), el.poll()).await;
        match ev.expect("no CONNACK within 10 s") {
            Ok(Event::Incoming(Packet::ConnAck(a))) => return (client, el, a.code),
            Ok(_) => {}
            Err(e) => panic!("MQTT connect on {port}: {e}"),
        }
    }
}

/// A v3.1.1 client (nats-server's MQTT listener speaks 3.1.1) on `port`, after its CONNACK.
async fn mqtt311(
    port: u16,
    client_id: &str,
    token: &str,
) -> (
    rumqttc::AsyncClient,
    rumqttc::EventLoop,
    rumqttc::ConnectReturnCode,
) {
    let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_credentials(client_id, token);
    let (client, mut el) = rumqttc::AsyncClient::new(o, 10);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), el.poll()).await;
        match ev.expect("no CONNACK within 10 s") {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => {
                return (client, el, a.code);
            }
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return (client, el, code),
            Err(e) => panic!("MQTT connect on {port}: {e}"),
        }
    }
}

/// The reason of the PUBACK that answers the next publish.
async fn puback(el: &mut EventLoop) -> PubAckReason {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(a)))) => return a.reason,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("MQTT connection lost before the PUBACK: {e}"),
            Err(_) => panic!("no PUBACK within 5 s"),
        }
    }
}

#[test]
fn compose_up_natively_and_a_device_through_every_broker() {
    let mut d = Deployment::up(
        &repo().join("docker/compose.yaml"),
        None,
        &Default::default(),
    );

    // The keys service made this deployment's own seeds, private, and nats-server uses them.
    let keys = d.volume("callout-keys");
    for seed in ["issuer.seed", "xkey.seed"] {
        let mode = std::fs::metadata(keys.join(seed))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{seed} is readable by others");
    }
    // The first start wrote the admin key the standalone callout reads.
    let admin = std::fs::read_to_string(d.volume("sidecar-data").join("admin.key")).unwrap();
    assert!(admin.trim().starts_with("ak_"), "admin.key holds {admin:?}");

    // Both responders (in the sidecar and standalone) are subscribed before any client connects.
    let both = test_support::wait_until(Duration::from_secs(20), || responders(&d) == 2);
    assert!(both, "responders: {}\n{}", responders(&d), d.logs());

    let url = format!("http://127.0.0.1:{}", d.port("sidecar", 8080));
    let dir = tempfile::tempdir().unwrap();
    let key = DeviceKey::load_or_create(&dir.path().join("device.key"), "ed25519").unwrap();
    let (device, token) = announce(&url, &key).unwrap();
    let other = DeviceKey::load_or_create(&dir.path().join("other.key"), "ed25519").unwrap();
    let (other_device, other_token) = announce(&url, &other).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let nats_url = format!("nats://127.0.0.1:{}", d.port("nats", 4222));
    rt.block_on(async {
        // NATS: admitted with its token; its own subjects work, another device's are refused.
        let (nc, mut events) = token_client(&nats_url, &token)
            .await
            .unwrap_or_else(|e| panic!("NATS connect: {e}\n{}", d.logs()));
        let mut own = nc
            .subscribe(format!("devices.{device}.cmd.>"))
            .await
            .unwrap();
        nc.flush().await.unwrap();
        nc.publish(format!("devices.{device}.cmd.ping"), "x".into())
            .await
            .unwrap();
        let got = tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::StreamExt::next(&mut own),
        )
        .await
        .expect("its own message within 5 s");
        assert!(got.is_some());
        nc.publish(format!("devices.{other_device}.telemetry"), "x".into())
            .await
            .unwrap();
        expect_event(&mut events, "permissions violation", Duration::from_secs(5)).await;

        // The embedded MQTT broker: admitted; a publish outside its grants is refused.
        let (mc, mut mel, code) = mqtt(d.port("sidecar", 1883), &device, &token).await;
        assert_eq!(code, ConnectReturnCode::Success);
        mc.publish(
            format!("devices/{device}/telemetry"),
            QoS::AtLeastOnce,
            false,
            "21.5",
        )
        .await
        .unwrap();
        assert_eq!(puback(&mut mel).await, PubAckReason::Success);
        mc.publish(
            format!("devices/{other_device}/telemetry"),
            QoS::AtLeastOnce,
            false,
            "x",
        )
        .await
        .unwrap();
        assert_eq!(puback(&mut mel).await, PubAckReason::NotAuthorized);

        // nats-server's MQTT listener (JetStream on): the same callout admits the token, and the
        // device's QoS 1 publish reaches its NATS subscriber; a made-up token is refused.
        let (_bad, _bel, code) = mqtt311(d.port("nats", 1883), "intruder", "not-a-token").await;
        assert_ne!(
            code,
            rumqttc::ConnectReturnCode::Success,
            "a bad token admitted"
        );
        let (nm, mut nmel, code) =
            mqtt311(d.port("nats", 1883), &format!("{device}-n"), &token).await;
        assert_eq!(
            code,
            rumqttc::ConnectReturnCode::Success,
            "{}",
            d.log("nats")
        );
        nm.publish(
            format!("devices/{device}/cmd/state"),
            rumqttc::QoS::AtLeastOnce,
            false,
            "on",
        )
        .await
        .unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), nmel.poll()).await {
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) => break,
                Ok(Ok(_)) => {}
                other => panic!("no PUBACK from nats' MQTT listener: {other:?}"),
            }
        }
        let got = tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::StreamExt::next(&mut own),
        )
        .await
        .expect("the MQTT publish on NATS within 5 s")
        .unwrap();
        assert_eq!(got.subject.as_str(), format!("devices.{device}.cmd.state"));

        // One deregistration cuts the NATS connection and the embedded MQTT session.
        let res = reqwest::Client::new()
            .delete(format!("{url}/v1/announce"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 204);
        let t = Instant::now();
        expect_event(&mut events, "disconnected", Duration::from_secs(3)).await;
        loop {
            match tokio::time::timeout(Duration::from_secs(3), mel.poll()).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => break,
                Err(_) => panic!("the MQTT session outlived the deregistration by 3 s"),
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "cut after {:?}",
            t.elapsed()
        );
    });

    // With the sidecar killed, the standalone callout alone admits the other device.
    d.kill("sidecar");
    let admitted = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match token_client(&nats_url, &other_token).await {
                Ok(_) => return true,
                Err(_) if Instant::now() < deadline => {
                    // The dead responder's subscription goes when nats-server notices the socket.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) => return false,
            }
        }
    });
    assert!(admitted, "no connect without the sidecar:\n{}", d.logs());
    assert!(
        d.exited("callout").is_none(),
        "the callout exited:\n{}",
        d.log("callout")
    );
}
