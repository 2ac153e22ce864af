//! A device on MQTT: announce to the sidecar with its key, connect to the embedded broker with the
//! access token as password, publish telemetry at QoS1, and see a publish outside its grants
//! refused (MQTT v5 PUBACK 0x87); it exits non-zero when the broker accepts that publish.
//!
//! ```sh
//! cargo run -p broker-auth-examples --bin mqtt-device -- --mqtt 127.0.0.1:1883 --count 3
//! ```

use std::path::PathBuf;

use broker_auth_examples::{DeviceKey, Error, announce};
use clap::Parser;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAckReason};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

#[derive(Parser)]
struct Args {
    #[arg(long, env = "SIDECAR_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The embedded broker (or any broker that asks the sidecar).
    #[arg(long, env = "MQTT_ADDR", default_value = "127.0.0.1:1883")]
    mqtt: String,
    #[arg(long, default_value = "device.key")]
    key_file: PathBuf,
    /// Telemetry messages to publish.
    #[arg(long, default_value_t = 3)]
    count: u32,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let key = DeviceKey::load_or_create(&args.key_file, "ed25519")?;
    let (device, token) = announce(&args.url, &key)?;
    println!("announced as {device}");
    let (host, port) = args.mqtt.rsplit_once(':').ok_or("--mqtt is HOST:PORT")?;
    let (host, port): (String, u16) = (host.to_owned(), port.parse()?);

    tokio::runtime::Runtime::new()?.block_on(async move {
        let mut o = MqttOptions::new(device.clone(), host, port);
        o.set_credentials(device.clone(), token);
        let (client, mut events) = AsyncClient::new(o, 16);
        let mut acked = 0;
        let mut sent = 0;
        loop {
            match events.poll().await? {
                Event::Incoming(Packet::ConnAck(a)) => {
                    if a.code != ConnectReturnCode::Success {
                        return Err(format!("broker refused the token: {:?}", a.code).into());
                    }
                    println!("connected to {}", args.mqtt);
                    for i in 0..args.count {
                        let body = format!("{{\"seq\": {i}, \"temp\": 21.5}}");
                        let topic = format!("devices/{device}/telemetry");
                        client.publish(topic, QoS::AtLeastOnce, false, body).await?;
                        sent += 1;
                    }
                    client
                        .publish(
                            "devices/someone-else/telemetry",
                            QoS::AtLeastOnce,
                            false,
                            "{}",
                        )
                        .await?;
                }
                Event::Incoming(Packet::PubAck(a)) if a.reason == PubAckReason::Success => {
                    acked += 1;
                    if acked > sent {
                        return Err("the broker accepted a publish outside my grants".into());
                    }
                    println!("telemetry {acked}/{sent} acknowledged");
                }
                Event::Incoming(Packet::PubAck(a)) => {
                    println!("outside my grants, as expected: {:?}", a.reason);
                    if acked == sent {
                        break;
                    }
                }
                _ => {}
            }
        }
        client.disconnect().await?;
        Ok::<(), Error>(())
    })
}
