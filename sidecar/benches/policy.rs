//! Policy authoring benchmark, in process on the real domain functions and a sled store:
//! `cargo bench -p sidecar --bench policy`.
//!
//! Validate (the whole gate: compile, cross-check, every test) and deploy (gate + store + swap)
//! of the shipped bundle, against compiling it alone as the same run's baseline; then the access
//! diff of the shipped bundle against an edited copy over 10,000 stored identities, against the
//! same run's cost of the grants evaluations it needs (two per distinct principal) as baseline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot run should stop loudly

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_auth::identity::{IdentityType, KeyAlgorithm};
use broker_auth::policy::PolicySet;
use broker_auth::policy::bundle::{Bundle, gate};
use rand_core::{OsRng, RngCore};
use sidecar::clock::SystemClock;
use sidecar::domain::policies::{self, Change, DiffTarget};
use sidecar::store::{IdentityRecord, PolicyOrigin, SledStore, Store};

fn shipped() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    broker_auth_runtime::policy_dir::read_bundle(&dir)
        .unwrap()
        .files()
        .clone()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

fn identity(i: usize) -> IdentityRecord {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    // A realistic fleet: mostly devices, some gateways, people in ten tenants.
    let (kind, tenant) = match i % 10 {
        0 => (IdentityType::User, Some(format!("tenant-{}", i % 7))),
        1 => (IdentityType::Gateway, None),
        _ => (IdentityType::Device, None),
    };
    IdentityRecord {
        id: kind.new_id(&mut OsRng),
        kind,
        key_algorithm: Some(KeyAlgorithm::Ed25519),
        public_key: Some(broker_auth::b64::url_encode(&key)),
        upstream: None,
        name: None,
        tenant,
        scopes: vec![],
        groups: vec![],
        metadata: Default::default(),
        created_at: 0,
        disabled_at: None,
    }
}

fn main() {
    let files = shipped();
    let bundle = Bundle::new(files.clone()).unwrap();
    println!(
        "shipped bundle: {} files, {} bytes",
        files.len(),
        files.values().map(String::len).sum::<usize>()
    );
    let compile = time(20, || PolicySet::from_bundle(&bundle).unwrap());
    let validate = time(20, || gate(&bundle).unwrap());
    println!(
        "compile only (baseline): {:.1} ms",
        compile.as_secs_f64() * 1e3
    );
    println!(
        "validate (the gate: compile, cross-check, every test): {:.1} ms",
        validate.as_secs_f64() * 1e3
    );

    let dir = tempfile::tempdir().unwrap();
    let policies_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let args = sidecar::cli::serve_args_from([
        "serve",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--policies",
        policies_dir.to_str().unwrap(),
    ])
    .unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    let n = 10_000;
    let t = Instant::now();
    for i in 0..n {
        store.insert_identity(&identity(i)).unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(store.flush()).unwrap();
    println!(
        "{n} identities stored in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let state = sidecar::serve::build_state(args, store.clone(), Arc::new(SystemClock)).unwrap();
    let now = sidecar::clock::Clock::now(&SystemClock);
    let key = sidecar::apikeys::generate("bench", vec!["admin".into()], vec![], None, 30, now);
    store.put_api_key(&key.record).unwrap();

    let deploys: Vec<Duration> = (0..10)
        .map(|i| {
            let change = Change {
                author: "bench".into(),
                origin: PolicyOrigin::Api,
                message: format!("bench {i}"),
                base: None,
            };
            let b = Bundle::new(files.clone()).unwrap();
            let t = Instant::now();
            rt.block_on(policies::commit(&state, b, change)).unwrap();
            t.elapsed()
        })
        .collect();
    println!(
        "deploy (gate + store + flush + swap): {:.1} ms",
        median(deploys).as_secs_f64() * 1e3
    );

    let edited: BTreeMap<String, String> = files
        .iter()
        .map(|(k, v)| {
            let v = v.replacen(
                r#"device_subscribe(p) := {sprintf("devices/%s/cmd/#", [d]) | some d in acts_for(p)}"#,
                r#"device_subscribe(p) := {sprintf("devices/%s/cmd/#", [d]) | some d in acts_for(p)} | {"fleet/#" | p.type == "device"; not p.tenant}"#,
                1,
            );
            (k.clone(), v)
        })
        .collect();
    let to = PolicySet::from_bundle(&Bundle::new(edited.clone()).unwrap()).unwrap();
    let from = PolicySet::from_bundle(&bundle).unwrap();
    // Baseline: the grants evaluations a diff cannot avoid (each distinct principal, both sets).
    let sample: Vec<broker_auth::Principal> = (0..1000)
        .map(|i| {
            let rec = identity(i);
            broker_auth::Principal {
                id: rec.id,
                kind: rec.kind,
                tenant: rec.tenant,
                roles: vec![],
                scopes: vec![],
                groups: vec![],
                devices: vec![],
                client_id: None,
                protocol: broker_auth::Protocol::Mqtt,
            }
        })
        .collect();
    let t = Instant::now();
    for p in &sample {
        std::hint::black_box((from.grants(p).unwrap(), to.grants(p).unwrap()));
    }
    let per = t.elapsed() / sample.len() as u32;
    println!(
        "baseline: two grants evaluations per principal {:.1} µs → {:.2} s for {n}",
        per.as_secs_f64() * 1e6,
        per.as_secs_f64() * n as f64
    );
    let runs: Vec<(Duration, usize, usize)> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let r = rt
                .block_on(policies::diff(
                    &state,
                    Some(&key.key),
                    None,
                    DiffTarget::Files(edited.clone()),
                    None,
                ))
                .unwrap();
            (t.elapsed(), r.principals_examined, r.changed.len())
        })
        .collect();
    let (took, examined, changed) = runs.iter().min_by_key(|r| r.0).copied().unwrap();
    println!(
        "access diff over {examined} stored identities (candidate bundle, gate included): {:.2} s, {changed} changed (best of 3; all: {:?})",
        took.as_secs_f64(),
        runs.iter()
            .map(|r| format!("{:.2}", r.0.as_secs_f64()))
            .collect::<Vec<_>>()
    );
}
