//! Register a device (or any identity type) with an admin API key, then log in by challenge.
//!
//! ```sh
//! cargo run -p broker-auth-examples --bin device-login -- --admin-key "$ADMIN_KEY" --alg p256
//! ```

use std::path::PathBuf;

use broker_auth_examples::{DeviceKey, Error, get, post};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Sidecar base URL.
    #[arg(long, env = "SIDECAR_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Admin API key (from `sidecar bootstrap`); omit to skip registration.
    #[arg(long, env = "ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Key algorithm of a new key: ed25519 or p256.
    #[arg(long, default_value = "p256")]
    alg: String,
    /// Identity type to register.
    #[arg(long = "type", default_value = "device")]
    kind: String,
    /// Where the private key lives (created 0600 on first run).
    #[arg(long, default_value = "device.key")]
    key_file: PathBuf,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let key = DeviceKey::load_or_create(&args.key_file, &args.alg)?;
    let public_key = key.public_b64();
    if let Some(admin) = &args.admin_key {
        let reg = post(
            &format!("{}/identity/register", args.url),
            Some(admin),
            &json!({"public_key": public_key, "type": args.kind}),
        )?;
        println!("registered {}", reg["identity_id"]);
    }
    let ch = post(
        &format!("{}/auth/challenge", args.url),
        None,
        &json!({"public_key": public_key}),
    )?;
    let challenge = ch["challenge"].as_str().ok_or("no challenge in response")?;
    let signature = key.sign_b64(challenge.as_bytes());
    let login = post(
        &format!("{}/auth/verify", args.url),
        None,
        &json!({"public_key": public_key, "signature": signature, "challenge": challenge}),
    )?;
    let token = login["token"].as_str().ok_or("no token in response")?;
    println!(
        "logged in as {} until {}",
        login["identity_id"], login["expires_at"]
    );
    let me = get(&format!("{}/auth/me", args.url), token)?;
    println!("/auth/me: {me}");
    println!("{token}");
    Ok(())
}
