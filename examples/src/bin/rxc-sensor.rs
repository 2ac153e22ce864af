//! A RavenXcope sensor: connect to nats-server with the `.creds` the provisioner issued, publish
//! its status, pull its commands from its own durable consumer of `RXC_CMD` (through its tenant
//! account's import, under the `JS.CONTROL.API` prefix), and acknowledge each one.
//!
//! ```sh
//! ./examples/provision.sh t1 s1
//! cargo run -p broker-auth-examples --bin rxc-sensor -- --creds t1-s1.creds --tenant t1 --sensor s1
//! ```

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use broker_auth_examples::Error;
use clap::Parser;
use futures_util::StreamExt;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[arg(long)]
    creds: PathBuf,
    #[arg(long)]
    tenant: String,
    #[arg(long)]
    sensor: String,
    /// Commands to wait for before exiting (0 = run until interrupted).
    #[arg(long, default_value_t = 0)]
    commands: usize,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let creds = std::fs::read_to_string(&args.creds)?;
    tokio::runtime::Runtime::new()?.block_on(async move {
        let client = async_nats::ConnectOptions::with_credentials(&creds)?
            .connect(args.nats_url.as_str())
            .await?;
        let (t, s) = (&args.tenant, &args.sensor);
        client
            .publish(format!("rxc.{t}.{s}.status"), "{\"state\": \"up\"}".into())
            .await?;
        println!("status published on rxc.{t}.{s}.status");
        let js = async_nats::jetstream::with_prefix(client.clone(), "JS.CONTROL.API");
        let consumer: PullConsumer = js
            .get_consumer_from_stream(format!("cmd-{t}-{s}"), "RXC_CMD")
            .await?;
        let mut seen = 0;
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(10)
                .expires(Duration::from_secs(5))
                .messages()
                .await?;
            while let Some(msg) = batch.next().await {
                let msg = msg?;
                println!(
                    "command on {}: {}",
                    msg.subject,
                    String::from_utf8_lossy(&msg.payload)
                );
                msg.ack().await?;
                seen += 1;
            }
            if args.commands > 0 && seen >= args.commands {
                return Ok::<(), Error>(());
            }
        }
    })
}
