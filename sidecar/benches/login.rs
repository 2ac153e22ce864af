//! Key-login benchmark against the real `sidecar` binary: `cargo bench -p sidecar --bench login`.
//!
//! The server is pinned to CPU 0 (taskset), the load generator runs on CPU 1, and in the same run
//! the raw Ed25519 `verify_strict` rate of the same crate is measured on one core, so the ratio
//! the target is stated in (≥ 0.3 of the raw rate) is fair. Then: latency percentiles at a fixed
//! 500 requests/s, login latency with 1,000 vs 100,000 registered identities, resident memory
//! and store size at 100,000 identities.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot run should stop loudly

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use broker_auth::identity::{IdentityType, KeyAlgorithm};
use ed25519_dalek::Signer as _;
use rand_core::OsRng;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use sidecar::store::{Durable, IdentityRecord, IdentityStore, SledStore};

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data: &Path) -> Server {
    let port = test_support::free_port();
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let child = Command::new("taskset")
        .args(["-c", "0", env!("CARGO_BIN_EXE_sidecar"), "serve"])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .args([
            "--policies",
            policies.to_str().unwrap(),
            "--rate-limit",
            "100000000/60",
            "--mqtt-listen",
            "off",
        ])
        .env("RUST_LOG", "warn")
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

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (field(11) + field(12)) / 100.0
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        dir_size(&path)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Fill a store with `n` Ed25519 users directly (not timed), returning a few of their keys.
fn populate(data: &Path, n: usize) -> Vec<ed25519_dalek::SigningKey> {
    let store = SledStore::open(data).unwrap();
    let mut keep = Vec::new();
    for i in 0..n {
        let sk = ed25519_dalek::SigningKey::from_bytes(&{
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            b
        });
        let rec = IdentityRecord {
            id: IdentityType::User.new_id(&mut OsRng),
            kind: IdentityType::User,
            key_algorithm: Some(KeyAlgorithm::Ed25519),
            public_key: Some(broker_auth::b64::url_encode(sk.verifying_key().as_bytes())),
            upstream: None,
            name: None,
            tenant: Some("bench".into()),
            scopes: vec![],
            groups: vec![],
            metadata: Default::default(),
            created_at: 0,
            disabled_at: None,
        };
        store.insert_identity(&rec).unwrap();
        if i % (n / 64).max(1) == 0 {
            keep.push(sk);
        }
    }
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(store.flush())
        .unwrap();
    keep
}

/// One login: challenge + verify. Returns the two request latencies.
fn login(c: &Client, base: &str, sk: &ed25519_dalek::SigningKey) -> (Duration, Duration) {
    let pk = STANDARD.encode(sk.verifying_key().as_bytes());
    let t = Instant::now();
    let ch: Value = c
        .post(format!("{base}/auth/challenge"))
        .json(&json!({"public_key": pk}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let d1 = t.elapsed();
    let challenge = ch["challenge"].as_str().unwrap();
    let sig = STANDARD.encode(sk.sign(challenge.as_bytes()).to_bytes());
    let t = Instant::now();
    let res = c
        .post(format!("{base}/auth/verify"))
        .json(&json!({"public_key": pk, "signature": sig, "challenge": challenge}))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    (d1, t.elapsed())
}

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1000.0
}

fn raw_verify_rate() -> f64 {
    let sk = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let msg = [7u8; 43];
    let sig = sk.sign(&msg);
    let vk = sk.verifying_key();
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_secs(3) {
        for _ in 0..100 {
            vk.verify_strict(&msg, &sig).unwrap();
        }
        n += 100;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn throughput(base: &str, keys: &[ed25519_dalek::SigningKey], secs: u64, threads: usize) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let keys = Arc::new(keys.to_vec());
    let t = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (done, keys, base) = (done.clone(), keys.clone(), base.to_owned());
            std::thread::spawn(move || {
                let c = Client::new();
                let mut k = i;
                while t.elapsed() < Duration::from_secs(secs) {
                    login(&c, &base, &keys[k % keys.len()]);
                    done.fetch_add(1, Ordering::Relaxed);
                    k += threads;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` (and `cargo test --benches`) only probe
    }
    // The load generator lives on CPU 1; the server on CPU 0.
    let _ = Command::new("taskset")
        .args(["-p", "-c", "1", &std::process::id().to_string()])
        .output();
    let tmp = tempfile::tempdir().unwrap();

    println!("raw Ed25519 verify_strict, one core ...");
    let raw = raw_verify_rate();

    let small = tmp.path().join("1k");
    let small_keys = populate(&small, 1_000);
    let big = tmp.path().join("100k");
    let t = Instant::now();
    let big_keys = populate(&big, 100_000);
    let populate_secs = t.elapsed().as_secs_f64();

    // Throughput and fixed-rate latency on the 1k store.
    let server = start(&small);
    let base = format!("http://127.0.0.1:{}", server.1);
    let cpu0 = cpu_secs(server.0.id());
    let t = Instant::now();
    let rate = throughput(&base, &small_keys, 5, 4);
    let server_busy = (cpu_secs(server.0.id()) - cpu0) / t.elapsed().as_secs_f64();
    // What one fully used core would sustain: logins per server CPU-second.
    let capacity = rate / server_busy.max(0.01);
    let c = Client::new();
    let mut lat = Vec::new();
    let period = Duration::from_micros(4000); // 250 logins/s = 500 requests/s
    let t = Instant::now();
    let mut next = Instant::now();
    let mut i = 0;
    while t.elapsed() < Duration::from_secs(10) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now); // open-loop pacing, not synchronization
        }
        let (a, b) = login(&c, &base, &small_keys[i % small_keys.len()]);
        lat.push(a);
        lat.push(b);
        next += period;
        i += 1;
    }
    let achieved = lat.len() as f64 / t.elapsed().as_secs_f64();
    let seq_small: Vec<Duration> = (0..1000)
        .map(|i| {
            let (a, b) = login(&c, &base, &small_keys[i % small_keys.len()]);
            a + b
        })
        .collect();
    drop(server);

    // The 100k store: latency, memory, size, start-up.
    let t = Instant::now();
    let server = start(&big);
    let startup = t.elapsed();
    let base = format!("http://127.0.0.1:{}", server.1);
    let seq_big: Vec<Duration> = (0..1000)
        .map(|i| {
            let (a, b) = login(&c, &base, &big_keys[i % big_keys.len()]);
            a + b
        })
        .collect();
    let rss = rss_kib(server.0.id());
    drop(server);
    let size = dir_size(&big);

    println!("\n| measure | value |\n|---|---|");
    println!("| raw Ed25519 verify_strict, one core | {raw:.0} /s |");
    println!(
        "| challenge + verify round trips achieved, server pinned to one core (4 client threads on the other) | {rate:.0} /s |"
    );
    println!(
        "| server CPU use during that run | {:.0} % of its core |",
        server_busy * 100.0
    );
    println!("| round trips per server CPU-second (one core's capacity) | {capacity:.0} /s |");
    println!(
        "| ratio of that capacity to the raw verify rate (target ≥ 0.3) | {:.2} |",
        capacity / raw
    );
    println!("| fixed rate: requests/s offered 500, achieved | {achieved:.0} |");
    println!(
        "| fixed rate: request latency p50 / p99 (target p99 ≤ 10 ms) | {:.2} ms / {:.2} ms |",
        pct(lat.clone(), 0.5),
        pct(lat, 0.99)
    );
    println!(
        "| login (challenge + verify) p50 / p99, 1,000 identities | {:.2} ms / {:.2} ms |",
        pct(seq_small.clone(), 0.5),
        pct(seq_small.clone(), 0.99)
    );
    println!(
        "| login (challenge + verify) p50 / p99, 100,000 identities | {:.2} ms / {:.2} ms |",
        pct(seq_big.clone(), 0.5),
        pct(seq_big.clone(), 0.99)
    );
    println!(
        "| login p50 ratio 100k / 1k (target ≤ 1.5) | {:.2} |",
        pct(seq_big, 0.5) / pct(seq_small, 0.5)
    );
    println!(
        "| server resident memory after 1,000 logins, 100,000 identities | {:.1} MiB |",
        rss as f64 / 1024.0
    );
    println!(
        "| store size on disk, 100,000 identities | {:.1} MiB |",
        size as f64 / (1024.0 * 1024.0)
    );
    println!(
        "| server start-up to /health 200, 100,000 identities | {:.2} s |",
        startup.as_secs_f64()
    );
    println!("| populating 100,000 identities through the store API | {populate_secs:.1} s |");
}
