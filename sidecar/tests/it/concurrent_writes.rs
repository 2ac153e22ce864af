//! Concurrent writers on the default sled store: sixteen clients registering at once, every
//! request answered in time. sled 0.34 deadlocks when its `flush_async` runs concurrently
//! with itself under writes; before flushes were serialized (group commit) the sidecar stopped
//! answering within a second of such a load, with `/health` still green.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::json;

use super::harness::TestKey;
use super::server::{Server, bootstrap};

#[test]
fn sixteen_concurrent_writers_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let server = Server::start(
        &data,
        &["--rate-limit", "100000000/60", "--mqtt-listen", "off"],
    );
    let (ok, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(3);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                let c = Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                while Instant::now() < until {
                    let key = TestKey::ed();
                    let res = c
                        .post(server.url("/identity/register"))
                        .bearer_auth(&admin)
                        .json(&json!({"public_key": key.public(), "type": "user"}))
                        .send();
                    match res {
                        Ok(r) if r.status().as_u16() == 201 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
    });
    let (ok, failed) = (ok.into_inner(), failed.into_inner());
    eprintln!("concurrent writes: {ok} registrations in 3 s, {failed} failed");
    assert_eq!(failed, 0, "{ok} answered, {failed} not:\n{}", server.log());
    assert!(ok > 100, "only {ok} registrations in 3 s");
}
