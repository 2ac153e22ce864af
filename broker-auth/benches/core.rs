//! Core benchmarks: `cargo bench -p broker-auth --bench core`.
//!
//! Criterion measures each operation; then a summary pass prints the table recorded in
//! BENCHMARKS.md (median and p99 per operation, and the ratios the targets are stated in), with
//! every baseline measured in the same run. Operations under a microsecond are timed in batches
//! of 1,000 (one `Instant` read costs ~20 ns), so their p99 is of batch means.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a fixture that fails should stop loudly

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_auth::grants::Action;
use broker_auth::identity::IdentityType;
use broker_auth::policy::{AclInput, Evaluator, PolicySet};
use broker_auth::revocation::RevocationSet;
use broker_auth::token::{Claims, KeySet, TokenAlg, TokenConfig, TokenKey, TokenUse, Verifier};
use broker_auth::{Principal, Protocol};
use criterion::{Criterion, criterion_group};
use ed25519_dalek::Signer as _;
use p256::ecdsa::signature::Verifier as _;
use rand_core::OsRng;

const NOW: i64 = 1_800_000_000;

struct Fixture {
    keys: KeySet,
    verifier: Verifier,
    revocations: RevocationSet,
    ed_token: String,
    es_token: String,
    ed_raw: (
        ed25519_dalek::VerifyingKey,
        Vec<u8>,
        ed25519_dalek::Signature,
    ),
    es_raw: (p256::ecdsa::VerifyingKey, Vec<u8>, p256::ecdsa::Signature),
    policy: PolicySet,
    device: Principal,
    gateway: Principal,
    sensor: Principal,
}

fn principal(id: &str, kind: IdentityType, roles: &[&str], devices: &[&str]) -> Principal {
    Principal {
        id: id.into(),
        kind,
        tenant: Some("t1".into()),
        roles: roles.iter().map(|s| s.to_string()).collect(),
        scopes: vec![],
        groups: vec![],
        devices: devices.iter().map(|s| s.to_string()).collect(),
        client_id: Some("c1".into()),
        protocol: Protocol::Mqtt,
    }
}

fn fixture() -> Fixture {
    let cfg = TokenConfig::new("https://auth.example", "broker-auth");
    let ed = Arc::new(TokenKey::generate(TokenAlg::EdDSA, &mut OsRng).unwrap());
    let es = Arc::new(TokenKey::generate(TokenAlg::ES256, &mut OsRng).unwrap());
    let keys = KeySet::new(vec![es.clone(), ed.clone()]);
    let mut claims = Claims::new(
        &cfg,
        "dev-AAAAAAAAAAAAAAAA",
        NOW,
        86_400,
        TokenUse::Access,
        &mut OsRng,
    );
    claims.sid = Some("ann-0123456789".into());
    claims.tenant = Some("t1".into());
    let ed_token = keys.sign_with(&ed, &claims).unwrap();
    let es_token = keys.sign_with(&es, &claims).unwrap();
    let revocations = RevocationSet::new();
    for i in 0..10_000 {
        revocations.revoke_session(&format!("ann-{i}"), NOW + 86_400);
    }

    // Raw verification of a message of the same length as the token's signing input.
    let msg = ed_token.rsplit_once('.').unwrap().0.as_bytes().to_vec();
    let edk = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let ed_sig = edk.sign(&msg);
    let esk = p256::ecdsa::SigningKey::random(&mut OsRng);
    let es_sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&esk, &msg);

    let policy = broker_auth_runtime::policy_dir::load_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
    )
    .unwrap();
    Fixture {
        keys,
        verifier: Verifier::new(cfg),
        revocations,
        ed_token,
        es_token,
        ed_raw: (edk.verifying_key(), msg.clone(), ed_sig),
        es_raw: (*esk.verifying_key(), msg, es_sig),
        policy,
        device: principal("dev-AAAAAAAAAAAAAAAA", IdentityType::Device, &[], &[]),
        gateway: principal(
            "gw-AAAAAAAAAAAAAAAA",
            IdentityType::Gateway,
            &[],
            &["dev-B1", "dev-B2", "dev-B3", "dev-B4"],
        ),
        sensor: principal("s-17", IdentityType::Device, &["sensor"], &[]),
    }
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let grants = f.policy.grants(&f.gateway).unwrap();

    let mut g = c.benchmark_group("token_verify");
    g.bench_function("eddsa_token", |b| {
        b.iter(|| {
            f.verifier.verify(
                &f.keys,
                black_box(&f.ed_token),
                NOW,
                &f.revocations,
                TokenUse::Access,
            )
        })
    });
    g.bench_function("ed25519_raw", |b| {
        b.iter(|| {
            f.ed_raw
                .0
                .verify_strict(black_box(&f.ed_raw.1), &f.ed_raw.2)
        })
    });
    g.bench_function("es256_token", |b| {
        b.iter(|| {
            f.verifier.verify(
                &f.keys,
                black_box(&f.es_token),
                NOW,
                &f.revocations,
                TokenUse::Access,
            )
        })
    });
    g.bench_function("p256_raw", |b| {
        b.iter(|| f.es_raw.0.verify(black_box(&f.es_raw.1), &f.es_raw.2))
    });
    g.finish();

    let mut g = c.benchmark_group("grants_match");
    g.bench_function("publish_hit", |b| {
        b.iter(|| grants.check(Action::Publish, black_box("devices/dev-B3/telemetry/temp")))
    });
    g.bench_function("publish_miss", |b| {
        b.iter(|| grants.check(Action::Publish, black_box("devices/dev-C9/telemetry/temp")))
    });
    g.bench_function("subscribe_hit", |b| {
        b.iter(|| grants.check(Action::Subscribe, black_box("devices/dev-B4/cmd/+")))
    });
    g.finish();

    let input = AclInput::new(
        &f.device,
        "c1",
        Action::Publish,
        "devices/dev-AAAAAAAAAAAAAAAA/telemetry",
    );
    let mut g = c.benchmark_group("rego_allow");
    g.bench_function("rvm", |b| {
        b.iter(|| f.policy.eval_allow(black_box(&input), Evaluator::Rvm))
    });
    g.bench_function("interpreter", |b| {
        b.iter(|| {
            f.policy
                .eval_allow(black_box(&input), Evaluator::Interpreter)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("grants_per_principal");
    for (name, p) in [
        ("device", &f.device),
        ("gateway", &f.gateway),
        ("sensor", &f.sensor),
    ] {
        g.bench_function(format!("{name}_rvm"), |b| {
            b.iter(|| f.policy.grants_with(black_box(p), Evaluator::Rvm))
        });
        g.bench_function(format!("{name}_interpreter"), |b| {
            b.iter(|| f.policy.grants_with(black_box(p), Evaluator::Interpreter))
        });
    }
    g.finish();
}

criterion_group! {
    name = core;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = benches
}

/// Per-operation times in ns: `samples` samples, each the mean of `batch` calls.
fn measure(samples: usize, batch: usize, mut op: impl FnMut()) -> (f64, f64) {
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        op();
    }
    let mut v: Vec<f64> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                op();
            }
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[(v.len() * 99) / 100])
}

/// Two operations measured in alternation, so machine drift hits both alike: the ratio is fair.
fn measure_pair(
    samples: usize,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> ((f64, f64), (f64, f64)) {
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        a();
        b();
    }
    let (mut va, mut vb) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for _ in 0..samples {
        let t = Instant::now();
        a();
        va.push(t.elapsed().as_nanos() as f64);
        let t = Instant::now();
        b();
        vb.push(t.elapsed().as_nanos() as f64);
    }
    let pct = |mut v: Vec<f64>| {
        v.sort_by(|x, y| x.total_cmp(y));
        (v[v.len() / 2], v[(v.len() * 99) / 100])
    };
    (pct(va), pct(vb))
}

fn fmt(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.1} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn summary() {
    let f = fixture();
    let grants = f.policy.grants(&f.gateway).unwrap();
    let input = AclInput::new(
        &f.device,
        "c1",
        Action::Publish,
        "devices/dev-AAAAAAAAAAAAAAAA/telemetry",
    );
    let row = |name: &str, (p50, p99): (f64, f64)| {
        println!("| {name} | {} | {} |", fmt(p50), fmt(p99));
        p50
    };
    println!("\n| operation | median | p99 |\n|---|---|---|");
    let (ed_t, ed_r) = measure_pair(
        3000,
        || {
            black_box(f.verifier.verify(
                &f.keys,
                &f.ed_token,
                NOW,
                &f.revocations,
                TokenUse::Access,
            ))
            .ok();
        },
        || {
            black_box(f.ed_raw.0.verify_strict(&f.ed_raw.1, &f.ed_raw.2)).ok();
        },
    );
    let ed_tok = row("token verify, EdDSA (JWKS cached, 10k revocations)", ed_t);
    let ed_raw = row(
        "raw Ed25519 verify_strict (ed25519-dalek), same message length",
        ed_r,
    );
    let (es_t, es_r) = measure_pair(
        1000,
        || {
            black_box(f.verifier.verify(
                &f.keys,
                &f.es_token,
                NOW,
                &f.revocations,
                TokenUse::Access,
            ))
            .ok();
        },
        || {
            black_box(f.es_raw.0.verify(&f.es_raw.1, &f.es_raw.2)).ok();
        },
    );
    let es_tok = row("token verify, ES256", es_t);
    let es_raw = row("raw P-256 verify (p256), same message length", es_r);
    let m1 = row(
        "grants match, publish hit (gateway, 10 patterns) ¹",
        measure(300, 1000, || {
            let _ = black_box(
                grants.check(Action::Publish, black_box("devices/dev-B3/telemetry/temp")),
            );
        }),
    );
    let m2 = row(
        "grants match, publish miss ¹",
        measure(300, 1000, || {
            let _ = black_box(
                grants.check(Action::Publish, black_box("devices/dev-C9/telemetry/temp")),
            );
        }),
    );
    let m3 = row(
        "grants match, subscribe filter hit ¹",
        measure(300, 1000, || {
            let _ = black_box(grants.check(Action::Subscribe, black_box("devices/dev-B4/cmd/+")));
        }),
    );
    let rvm = row(
        "Rego allow, compiled RVM (shipped policy)",
        measure(2000, 1, || {
            black_box(f.policy.eval_allow(&input, Evaluator::Rvm)).ok();
        }),
    );
    let interp = row(
        "Rego allow, interpreter (shipped policy)",
        measure(1000, 1, || {
            black_box(f.policy.eval_allow(&input, Evaluator::Interpreter)).ok();
        }),
    );
    for (name, p) in [
        ("device", &f.device),
        ("gateway", &f.gateway),
        ("sensor", &f.sensor),
    ] {
        row(
            &format!("grants() per principal, {name}, RVM"),
            measure(1000, 1, || {
                black_box(f.policy.grants_with(p, Evaluator::Rvm)).ok();
            }),
        );
        row(
            &format!("grants() per principal, {name}, interpreter"),
            measure(500, 1, || {
                black_box(f.policy.grants_with(p, Evaluator::Interpreter)).ok();
            }),
        );
    }
    println!("\n¹ batches of 1,000 calls; p99 is of batch means.\n");
    println!("| ratio | value | target |\n|---|---|---|");
    println!(
        "| token verify EdDSA / raw Ed25519 | {:.2}× | ≤ 1.3× |",
        ed_tok / ed_raw
    );
    println!(
        "| token verify ES256 / raw P-256 | {:.2}× | ≤ 1.3× |",
        es_tok / es_raw
    );
    println!(
        "| grants match, worst median | {} | ≤ 100 ns |",
        fmt(m1.max(m2).max(m3))
    );
    println!(
        "| Rego allow interpreter / RVM | {:.1}× | — |",
        interp / rvm
    );
}

fn main() {
    // `cargo bench -- --summary-only` skips criterion and prints only the table.
    let summary_only = std::env::args().any(|a| a == "--summary-only");
    if !summary_only {
        core();
        Criterion::default().configure_from_args().final_summary();
    }
    summary();
}
