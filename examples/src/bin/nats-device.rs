//! A device on NATS: announce to the sidecar with its key, connect to nats-server with the access
//! token (the broker-auth callout admits it), publish its telemetry, and watch the server refuse a
//! publish outside its grants (it exits non-zero when no refusal comes).
//!
//! ```sh
//! cargo run -p broker-auth-examples --bin nats-device -- --nats-url nats://127.0.0.1:4222
//! ```

use std::path::PathBuf;
use std::time::Duration;

use broker_auth_examples::{DeviceKey, Error, announce};
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "SIDECAR_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[arg(long, default_value = "device.key")]
    key_file: PathBuf,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let key = DeviceKey::load_or_create(&args.key_file, "ed25519")?;
    let (device, token) = announce(&args.url, &key)?;
    println!("announced as {device}");

    tokio::runtime::Runtime::new()?.block_on(async move {
        let (tx, mut errors) = tokio::sync::mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::with_token(token)
            .event_callback(move |ev| {
                let tx = tx.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = ev {
                        let _ = tx.send(e.to_string());
                    }
                }
            })
            .connect(args.nats_url.as_str())
            .await?;
        println!("connected to NATS");
        client
            .publish(
                format!("devices.{device}.telemetry"),
                "{\"temp\": 21.5}".into(),
            )
            .await?;
        println!("published devices.{device}.telemetry");
        client
            .publish("devices.someone-else.telemetry", "{}".into())
            .await?;
        client.flush().await?;
        // nats-server answers a publish it does not permit with -ERR; the device program
        // fails without one, so a broker that lets it through does not pass for working.
        match tokio::time::timeout(Duration::from_secs(2), errors.recv()).await {
            Ok(Some(e)) => println!("outside my grants, as expected: {e}"),
            _ => return Err("no refusal within 2 s: are grants enforced?".into()),
        }
        Ok::<(), Error>(())
    })
}
