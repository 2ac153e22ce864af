//! Shared pieces of the example programs: a device key (Ed25519 or P-256) kept in a 0600 file,
//! and the small HTTP helpers the programs use against the sidecar.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use rand_core::OsRng;
use serde_json::Value;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A device's private key.
pub enum DeviceKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

impl DeviceKey {
    pub fn generate(alg: &str) -> Result<DeviceKey, Error> {
        match alg {
            "ed25519" => Ok(DeviceKey::Ed25519(ed25519_dalek::SigningKey::generate(
                &mut OsRng,
            ))),
            "p256" => Ok(DeviceKey::P256(p256::ecdsa::SigningKey::random(&mut OsRng))),
            other => Err(format!("unknown algorithm {other}: use ed25519 or p256").into()),
        }
    }

    /// Load `alg:base64(secret)` from a file, or create one (mode 0600).
    pub fn load_or_create(path: &Path, alg: &str) -> Result<DeviceKey, Error> {
        if let Ok(text) = std::fs::read_to_string(path) {
            let (alg, b64) = text.trim().split_once(':').ok_or("bad key file")?;
            let bytes = STANDARD.decode(b64)?;
            return match alg {
                "ed25519" => Ok(DeviceKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                    bytes.as_slice().try_into().map_err(|_| "bad Ed25519 key")?,
                ))),
                "p256" => Ok(DeviceKey::P256(p256::ecdsa::SigningKey::from_slice(
                    &bytes,
                )?)),
                _ => Err("bad key file".into()),
            };
        }
        let key = DeviceKey::generate(alg)?;
        let (name, secret) = match &key {
            DeviceKey::Ed25519(k) => ("ed25519", k.to_bytes().to_vec()),
            DeviceKey::P256(k) => ("p256", k.to_bytes().to_vec()),
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        writeln!(f, "{name}:{}", STANDARD.encode(secret))?;
        Ok(key)
    }

    /// The public key as the sidecar expects it (base64 of raw Ed25519 or compressed SEC1).
    pub fn public_b64(&self) -> String {
        match self {
            DeviceKey::Ed25519(k) => STANDARD.encode(k.verifying_key().as_bytes()),
            DeviceKey::P256(k) => {
                STANDARD.encode(k.verifying_key().to_encoded_point(true).as_bytes())
            }
        }
    }

    /// Sign `msg`; base64 of the 64-byte signature (Ed25519, or ES256 r||s, low-S).
    pub fn sign_b64(&self, msg: &[u8]) -> String {
        match self {
            DeviceKey::Ed25519(k) => STANDARD.encode(k.sign(msg).to_bytes()),
            DeviceKey::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(msg);
                let sig = sig.normalize_s().unwrap_or(sig);
                STANDARD.encode(sig.to_bytes())
            }
        }
    }
}

/// POST JSON; returns the JSON body or an error carrying the server's envelope.
pub fn post(url: &str, bearer: Option<&str>, body: &Value) -> Result<Value, Error> {
    let client = reqwest::blocking::Client::new();
    let mut req = client.post(url).json(body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let res = req.send()?;
    let status = res.status();
    let text = res.text()?;
    if !status.is_success() {
        return Err(format!("{url}: {status}: {text}").into());
    }
    Ok(serde_json::from_str(&text)?)
}

/// GET JSON with a bearer token.
pub fn get(url: &str, bearer: &str) -> Result<Value, Error> {
    let res = reqwest::blocking::Client::new()
        .get(url)
        .bearer_auth(bearer)
        .send()?;
    let status = res.status();
    let text = res.text()?;
    if !status.is_success() {
        return Err(format!("{url}: {status}: {text}").into());
    }
    Ok(serde_json::from_str(&text)?)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Announce a device key (`announce:<public_key>:<timestamp>` signed with it) to the sidecar at
/// `url`; returns (device address, access token).
pub fn announce(url: &str, key: &DeviceKey) -> Result<(String, String), Error> {
    let public_key = key.public_b64();
    let attempt = |ts: i64| {
        let signature = key.sign_b64(format!("announce:{public_key}:{ts}").as_bytes());
        post(
            &format!("{url}/v1/announce"),
            None,
            &serde_json::json!({"public_key": public_key, "timestamp": ts, "signature": signature}),
        )
    };
    let ts = now();
    // The signed message has a whole-second timestamp and Ed25519 signatures are deterministic,
    // so a second announce with the same key within one second repeats a used signature, which
    // the sidecar refuses as a replay: sign again for the next second.
    let ann = match attempt(ts) {
        Err(e) if e.to_string().contains("REPLAYED") => {
            std::thread::sleep(std::time::Duration::from_millis(1100));
            attempt(now())?
        }
        other => other?,
    };
    let token = ann["access_token"].as_str().ok_or("no access token")?;
    let device = ann["device_address"].as_str().ok_or("no device address")?;
    Ok((device.to_owned(), token.to_owned()))
}
