//! MQTT clients of nats-server's own MQTT listener (JetStream on) go through the same callout:
//! the token is the MQTT password, the request says `client_info.type = "mqtt"`, and the grants
//! arrive as the same subjects (`devices/<id>/#` ↔ `devices.<id>.>`).

use std::time::Duration;

use async_nats::ConnectOptions;
use futures_util::StreamExt;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use test_support::{NatsServer, free_port};

use super::config_mode::{World, config, start_responder};

fn mqtt_config(xkey: bool, mqtt_port: u16, store: &std::path::Path) -> String {
    format!(
        "server_name: n1\njetstream {{ store_dir: \"{}\" }}\nmqtt {{ listen: 127.0.0.1:{mqtt_port} }}\n{}",
        store.display(),
        // MQTT sessions live in JetStream, in the account the client lands in (the shipped
        // config enables it for APP).
        config(xkey)
    )
}

/// Connect an MQTT 3.1.1 client; returns the CONNACK code and the client + event loop.
async fn mqtt(
    port: u16,
    id: &str,
    password: &str,
) -> Result<(ConnectReturnCode, AsyncClient, rumqttc::EventLoop), String> {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials("device", password);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut ev) = AsyncClient::new(o, 16);
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack.code),
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Ok(code),
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| "no CONNACK".to_owned())??;
    Ok((code, client, ev))
}

#[tokio::test]
async fn mqtt_clients_of_nats_server_are_authorized_by_the_callout() {
    let store = tempfile::tempdir().unwrap();
    let mqtt_port = free_port();
    let server = NatsServer::start(&mqtt_config(true, mqtt_port, store.path()));
    let world = World::new();
    let responder = start_responder(&server.url(), &world, true, false).await;
    let device = "dev-AAAAAAAAAAAAAAAA";

    // A NATS superuser watches what is delivered.
    let admin_token = world.token("usr-ADMINADMINADMIN", 600, |c| {
        c.groups = vec!["admin".into()]
    });
    let watcher = ConnectOptions::with_token(admin_token)
        .connect(server.url())
        .await
        .unwrap();
    let mut seen = watcher.subscribe("devices.>").await.unwrap();
    callout::service::round_trip(&watcher).await.unwrap();

    // Bad token: refused at CONNECT.
    let (code, _, _) = mqtt(mqtt_port, "bad", "not-a-token").await.unwrap();
    assert_ne!(code, ConnectReturnCode::Success);

    let (code, client, mut ev) = mqtt(mqtt_port, "sensor-1", &world.token(device, 600, |_| {}))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(code, ConnectReturnCode::Success, "{}", server.log());
    let pump = tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    client
        .publish(
            "devices/dev-BBBBBBBBBBBBBBBB/telemetry",
            QoS::AtMostOnce,
            false,
            "forged",
        )
        .await
        .unwrap();
    client
        .publish(
            format!("devices/{device}/telemetry"),
            QoS::AtMostOnce,
            false,
            "ok",
        )
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(10), seen.next())
        .await
        .unwrap_or_else(|_| panic!("nothing delivered:\n{}", server.log()))
        .unwrap();
    assert_eq!(msg.subject.as_str(), format!("devices.{device}.telemetry"));
    assert_eq!(&msg.payload[..], b"ok");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), seen.next())
            .await
            .is_err(),
        "the forged publish must not be delivered"
    );
    // The responder saw an MQTT client.
    assert!(
        server.log().contains("Publish Violation") || server.log().contains("ermissions"),
        "{}",
        server.log()
    );
    pump.abort();
    responder.stop().await;
}
