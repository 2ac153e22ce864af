//! NATS provisioner benchmark against the real `sidecar` binary:
//! `cargo bench -p sidecar --bench provision`.
//!
//! The server (pinned to CPU 0) runs with an operator from `init-operator` and no nats-server, so
//! what is measured is the provisioner itself: key generation, JWT signing, seed encryption, the
//! re-signing of CONTROL / the tenant account, and the store flush before each answer. The client
//! runs on CPU 1. Then resolver lookups (`GET /jwt/v1/accounts/<key>`) from 4 client threads.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot run should stop loudly

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};

const SEED_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const SECRET: &str = "bench-secret";
const TENANTS: usize = 200;
const SENSORS: usize = 500;

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data: &Path) -> Server {
    let port = test_support::free_port();
    let bin = env!("CARGO_BIN_EXE_sidecar");
    let ok = Command::new(bin)
        .args(["init-operator", "--data-dir", data.to_str().unwrap()])
        .env("ACCOUNT_SEED_ENCRYPTION_KEY", SEED_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "init-operator failed");
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let child = Command::new("taskset")
        .args(["-c", "0", bin, "serve"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--data-dir", data.to_str().unwrap()])
        .args(["--policies", policies.to_str().unwrap()])
        .args(["--mqtt-listen", "off"])
        .args([
            "--operator-seed-path",
            data.join("operator.seed").to_str().unwrap(),
        ])
        .args(["--account-seed-encryption-key", SEED_KEY])
        .args(["--backend-shared-secret", SECRET])
        // Nothing listens here: pushes fail fast and are reported, not waited for.
        .args([
            "--nats-url",
            &format!("nats://127.0.0.1:{}", test_support::free_port()),
        ])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("taskset (util-linux) and the sidecar binary");
    assert!(test_support::wait_until(
        Duration::from_secs(30),
        || matches!(test_support::http_get(port, "/health"), Some((200, _)))
    ));
    Server(child, port)
}

fn post(c: &Client, port: u16, path: &str, body: Value) -> Value {
    let res = c
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("x-backend-shared-secret", SECRET)
        .json(&body)
        .send()
        .unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().unwrap()
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // Load generator on CPU 1.
    let _ = Command::new("taskset")
        .args(["-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"));
    let port = server.1;
    let c = Client::new();

    let t0 = Instant::now();
    let mut keys = Vec::new();
    for t in 0..TENANTS {
        let a = post(&c, port, "/accounts", json!({"tenantId": format!("t{t}")}));
        keys.push(a["accountPubKey"].as_str().unwrap().to_owned());
    }
    let accounts = TENANTS as f64 / t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    for s in 0..SENSORS {
        let body = json!({"tenantId": format!("t{}", s % 5), "sensorId": format!("s{s}")});
        post(&c, port, "/users", body);
    }
    let users = SENSORS as f64 / t0.elapsed().as_secs_f64();
    // Create-or-return of an existing sensor: no key generation, no re-signing.
    let t0 = Instant::now();
    for s in 0..SENSORS {
        let body = json!({"tenantId": format!("t{}", s % 5), "sensorId": format!("s{s}")});
        post(&c, port, "/users", body);
    }
    let users_again = SENSORS as f64 / t0.elapsed().as_secs_f64();

    let keys = Arc::new(keys);
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (keys, stop) = (keys.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = Client::new();
                let mut lat = Vec::new();
                let mut k = i;
                while !stop.load(Ordering::Relaxed) {
                    let url = format!(
                        "http://127.0.0.1:{port}/jwt/v1/accounts/{}",
                        keys[k % keys.len()]
                    );
                    let t = Instant::now();
                    let res = c.get(url).send().unwrap();
                    assert_eq!(res.status(), 200);
                    let _ = res.bytes().unwrap();
                    lat.push(t.elapsed());
                    k += 7;
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let lookups = lat.len() as f64 / 5.0;
    let (p50, p99) = (percentile(&mut lat, 0.5), percentile(&mut lat, 0.99));

    println!("| operation | rate | note |");
    println!("|---|---|---|");
    println!(
        "| POST /accounts (new tenant) | {accounts:.0} /s | {TENANTS} tenants, sequential; CONTROL re-signed with one import per tenant each time |"
    );
    println!(
        "| POST /users (new sensor) | {users:.0} /s | {SENSORS} sensors over 5 tenants, sequential; the tenant re-signed with 3 imports per sensor each time |"
    );
    println!(
        "| POST /users (existing sensor, create-or-return) | {users_again:.0} /s | decrypt the stored seed, rebuild the .creds |"
    );
    println!(
        "| GET /jwt/v1/accounts/<key> | {lookups:.0} /s | 4 client threads; p50 {:.2} ms, p99 {:.2} ms |",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}
