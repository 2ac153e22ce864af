//! Refresh-token rotations and API-key verifications per second, in process on the sled store:
//! `cargo bench -p sidecar --bench sessions`.
//!
//! A rotation is what `POST /auth/refresh` does before signing the access token: parse, look up,
//! constant-time hash check, family check, compare-and-swap "used", mint the next token. Run once
//! without and once with the store flush the route does before answering (one fsync per rotation
//! when sequential; concurrent requests share flushes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use sidecar::domain::sessions::{Exchanged, exchange, open};
use sidecar::store::{ApiKeyStore, Durable, SledStore};

fn rotations(store: &SledStore, n: usize, flush: bool) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (_, mut token) = open(store, "usr-BENCH", 1_000, 10_000_000).unwrap();
    let t0 = Instant::now();
    for i in 0..n {
        match exchange(store, &token, None, 1_001 + i as i64).unwrap() {
            Exchanged::Rotated { token: next, .. } => token = next,
            Exchanged::Reused { .. } => panic!("fresh token seen as reused"),
        }
        if flush {
            rt.block_on(store.flush()).unwrap();
        }
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let r = rotations(&store, 20_000, false);
    let rf = rotations(&store, 2_000, true);

    let key = sidecar::apikeys::generate("bench", vec!["admin".into()], vec![], None, 30, 1_000);
    store.put_api_key(&key.record).unwrap();
    let n = 200_000;
    let t0 = Instant::now();
    for _ in 0..n {
        sidecar::apikeys::verify(&store, &key.key, 2_000).unwrap();
    }
    let v = n as f64 / t0.elapsed().as_secs_f64();
    let mut typo = key.key.clone().into_bytes();
    let i = typo.len() - 12;
    typo[i] = if typo[i] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    let t0 = Instant::now();
    for _ in 0..n {
        assert!(sidecar::apikeys::verify(&store, &typo, 2_000).is_err());
    }
    let t = n as f64 / t0.elapsed().as_secs_f64();

    println!("| operation | per second (one core) |");
    println!("|---|---|");
    println!("| refresh rotation, in memory (no flush) | {r:.0} |");
    println!("| refresh rotation + store flush (fsync), sequential | {rf:.0} |");
    println!("| API key verification (valid key: checksum, lookup, hash, expiry) | {v:.0} |");
    println!("| API key with a typo (refused by the checksum, no lookup) | {t:.0} |");
}
