//! The crash loop: 50 times, the sidecar is killed with SIGKILL while three clients write
//! (registrations, device announcements, refresh-token rotations), at a moment set by how many
//! writes were acknowledged, not by a timer. After every kill the store must open and pass
//! `SledStore::check` (every record decodes, every index entry has its record); at the end every
//! acknowledged write must be there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};

use super::harness::TestKey;
use super::server::{Server, bootstrap};

const ITERATIONS: usize = 50;
const LIMITS: [&str; 2] = ["--rate-limit", "10000000/60"];

/// What the writers were told had been stored.
#[derive(Default)]
struct Acked {
    /// Registered identity ids.
    identities: Vec<String>,
    /// Announced devices: (device refresh token, its signature by the device key).
    devices: Vec<(String, String)>,
    /// Rotations: the refresh token each acknowledged rotation retired.
    retired: Vec<String>,
}

struct Load {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
    writers: Vec<JoinHandle<Acked>>,
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// POST `body`; the JSON answer when the status is `want`, None when there was no answer (the
/// kill landed mid-request) or another status.
fn post(c: &Client, url: &str, bearer: Option<&str>, body: &Value, want: u16) -> Option<Value> {
    let mut req = c.post(url).json(body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let res = req.send().ok()?;
    (res.status().as_u16() == want).then(|| res.json().ok())?
}

fn registrations(base: String, admin: String, stop: Arc<AtomicBool>, n: Arc<AtomicUsize>) -> Acked {
    let c = client();
    let mut acked = Acked::default();
    while !stop.load(Ordering::Relaxed) {
        let body = json!({"public_key": TestKey::ed().public(), "type": "user"});
        if let Some(v) = post(
            &c,
            &format!("{base}/identity/register"),
            Some(&admin),
            &body,
            201,
        ) {
            acked
                .identities
                .push(v["identity_id"].as_str().unwrap().to_owned());
            n.fetch_add(1, Ordering::Relaxed);
        }
    }
    acked
}

fn announces(base: String, stop: Arc<AtomicBool>, n: Arc<AtomicUsize>) -> Acked {
    let c = client();
    let mut acked = Acked::default();
    while !stop.load(Ordering::Relaxed) {
        let key = TestKey::ed();
        let ts = test_support::unix_now();
        let sig = key.sign(format!("announce:{}:{ts}", key.public()).as_bytes());
        let body = json!({"public_key": key.public(), "timestamp": ts, "signature": sig});
        if let Some(v) = post(&c, &format!("{base}/v1/announce"), None, &body, 200) {
            let refresh = v["refresh_token"].as_str().unwrap().to_owned();
            let sig = key.sign(refresh.as_bytes());
            acked.devices.push((refresh, sig));
            n.fetch_add(1, Ordering::Relaxed);
        }
    }
    acked
}

/// Register and log in one identity, then rotate its refresh token until stopped.
fn rotations(base: String, admin: String, stop: Arc<AtomicBool>, n: Arc<AtomicUsize>) -> Acked {
    let c = client();
    let mut acked = Acked::default();
    let key = TestKey::ed();
    let body = json!({"public_key": key.public(), "type": "user"});
    let login = post(
        &c,
        &format!("{base}/identity/register"),
        Some(&admin),
        &body,
        201,
    )
    .and_then(|_| {
        post(
            &c,
            &format!("{base}/auth/challenge"),
            None,
            &json!({"public_key": key.public()}),
            200,
        )
    })
    .and_then(|ch| {
        let challenge = ch["challenge"].as_str().unwrap().to_owned();
        let body = json!({"public_key": key.public(), "challenge": challenge,
                "signature": key.sign(challenge.as_bytes())});
        post(&c, &format!("{base}/auth/verify"), None, &body, 200)
    });
    let Some(login) = login else { return acked };
    let mut current = login["refresh_token"].as_str().unwrap().to_owned();
    while !stop.load(Ordering::Relaxed) {
        let body = json!({"refresh_token": current});
        let Some(v) = post(&c, &format!("{base}/auth/refresh"), None, &body, 200) else {
            break; // unanswered: the chain's state is unknown from here on
        };
        acked.retired.push(std::mem::replace(
            &mut current,
            v["refresh_token"].as_str().unwrap().to_owned(),
        ));
        n.fetch_add(1, Ordering::Relaxed);
    }
    acked
}

fn start_load(server: &Server, admin: &str) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let base = server.url("");
    let base = base.trim_end_matches('/').to_owned();
    let (s, n) = (stop.clone(), count.clone());
    let (b, a) = (base.clone(), admin.to_owned());
    let mut writers = vec![std::thread::spawn(move || registrations(b, a, s, n))];
    let (s, n, b) = (stop.clone(), count.clone(), base.clone());
    writers.push(std::thread::spawn(move || announces(b, s, n)));
    let (s, n, a) = (stop.clone(), count.clone(), admin.to_owned());
    writers.push(std::thread::spawn(move || rotations(base, a, s, n)));
    Load {
        stop,
        count,
        writers,
    }
}

#[test]
fn fifty_kill_9s_under_mixed_writes_lose_no_acknowledged_write_and_leave_no_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let mut all = Acked::default();
    let started = Instant::now();
    for i in 0..ITERATIONS {
        let mut server = Server::start(&data, &LIMITS);
        let load = start_load(&server, &admin);
        // Kill after a varying number of acknowledged writes: early, mid-burst, later.
        let target = 5 + (i * 7) % 30;
        assert!(
            test_support::wait_until(Duration::from_secs(30), || {
                load.count.load(Ordering::Relaxed) >= target
            }),
            "iteration {i}: fewer than {target} writes acknowledged in 30 s"
        );
        server.kill9();
        load.stop.store(true, Ordering::Relaxed);
        for w in load.writers {
            let a = w.join().unwrap();
            all.identities.extend(a.identities);
            all.devices.extend(a.devices);
            all.retired.extend(a.retired);
        }
        let store = sidecar::store::SledStore::open(&data)
            .unwrap_or_else(|e| panic!("iteration {i}: the store does not open: {e}"));
        store
            .check()
            .unwrap_or_else(|e| panic!("iteration {i}: {e}"));
    }
    let looped = started.elapsed();

    let server = Server::start(&data, &LIMITS);
    let c = client();
    let lost_identities = all
        .identities
        .iter()
        .filter(|id| {
            let res = c
                .get(server.url(&format!("/identity/{id}")))
                .bearer_auth(&admin)
                .send()
                .unwrap();
            res.status().as_u16() != 200
        })
        .count();
    // A device's refresh works only while its announcement is stored and live.
    let lost_devices = all
        .devices
        .iter()
        .filter(|(refresh, sig)| {
            let body = json!({"refresh_token": refresh, "device_signature": sig});
            post(&c, &server.url("/v1/auth/refresh"), None, &body, 200).is_none()
        })
        .count();
    // A retired token is refused only if the rotation that retired it was stored.
    let lost_rotations = all
        .retired
        .iter()
        .filter(|t| {
            post(
                &c,
                &server.url("/auth/refresh"),
                None,
                &json!({"refresh_token": t}),
                200,
            )
            .is_some()
        })
        .count();
    let summary = format!(
        "{ITERATIONS} kills in {looped:?}: {} registrations, {} announcements, {} rotations acknowledged",
        all.identities.len(),
        all.devices.len(),
        all.retired.len()
    );
    eprintln!("{summary}");
    assert!(
        all.identities.len() >= ITERATIONS && !all.devices.is_empty() && !all.retired.is_empty(),
        "too little load to mean anything: {summary}"
    );
    assert_eq!(
        (lost_identities, lost_devices, lost_rotations),
        (0, 0, 0),
        "acknowledged writes lost after the crash loop: {summary}"
    );
}
