//! Announce a device (Cryptid), then refresh its access token with the device signature.
//!
//! ```sh
//! cargo run -p broker-auth-examples --bin device-announce -- --key-file sensor.key
//! ```

use std::path::PathBuf;

use broker_auth_examples::{DeviceKey, Error, now, post};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "SIDECAR_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Device private key (Ed25519 by default; created 0600 on first run).
    #[arg(long, default_value = "device.key")]
    key_file: PathBuf,
    #[arg(long, default_value = "ed25519")]
    alg: String,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let key = DeviceKey::load_or_create(&args.key_file, &args.alg)?;
    let public_key = key.public_b64();
    let timestamp = now().to_string();
    let signature = key.sign_b64(format!("announce:{public_key}:{timestamp}").as_bytes());
    let ann = post(
        &format!("{}/v1/announce", args.url),
        None,
        &json!({"public_key": public_key, "timestamp": timestamp.parse::<i64>()?, "signature": signature}),
    )?;
    println!("device address {}", ann["device_address"]);
    println!("announcement expires at {}", ann["announcement_expires_at"]);
    let refresh_token = ann["refresh_token"].as_str().ok_or("no refresh token")?;
    let refreshed = post(
        &format!("{}/v1/auth/refresh", args.url),
        None,
        &json!({"refresh_token": refresh_token, "device_signature": key.sign_b64(refresh_token.as_bytes())}),
    )?;
    println!(
        "refreshed; access token expires at {}",
        refreshed["expires_at"]
    );
    println!("{}", refreshed["access_token"].as_str().unwrap_or_default());
    Ok(())
}
