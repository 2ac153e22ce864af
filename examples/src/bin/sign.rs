//! Sign a message (a login challenge, a refresh token) with a key file; prints base64.
//!
//! ```sh
//! cargo run -q -p broker-auth-examples --bin sign -- --key-file device.key --public   # the public key
//! cargo run -q -p broker-auth-examples --bin sign -- --key-file device.key -- "$CHALLENGE"   # `--`: base64url may start with -
//! ```

use std::path::PathBuf;

use broker_auth_examples::{DeviceKey, Error};
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "device.key")]
    key_file: PathBuf,
    /// Algorithm when the key file does not exist yet: ed25519 or p256.
    #[arg(long, default_value = "ed25519")]
    alg: String,
    /// Print the public key instead of signing.
    #[arg(long)]
    public: bool,
    /// The message to sign (its UTF-8 bytes).
    message: Option<String>,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let key = DeviceKey::load_or_create(&args.key_file, &args.alg)?;
    if args.public {
        println!("{}", key.public_b64());
    } else {
        let msg = args.message.ok_or("give the message to sign")?;
        println!("{}", key.sign_b64(msg.as_bytes()));
    }
    Ok(())
}
