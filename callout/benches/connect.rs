//! Callout benchmark: `cargo bench -p callout --bench connect`.
//!
//! 1. Service time per request, in process, broken into its stages (xkey open, request JWT
//!    verify, token verify, grants, user + response JWT signing, seal).
//! 2. Connects through a real nats-server 2.15: connects/s and p50/p99 connect latency with 1 and
//!    32 concurrent clients, without and with xkey, with 1 and 2 responders, against the same
//!    nats-server binary with a static token user, all in one run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot run should stop loudly

use rand_core::OsRng;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_auth::nats_jwt::claims::{ClientInfo, ConnectOpts, ServerId};
use broker_auth::nats_jwt::{self, AuthorizationRequest, NatsClaims, User};
use broker_auth::revocation::{NoRevocations, RevocationSet};
use broker_auth::token::{Claims, KeySet, TokenAlg, TokenConfig, TokenKey, TokenUse, Verifier};
use broker_auth::{Principal, Protocol};
use callout::service::{ServiceOptions, Stats, subscribe};
use callout::{AccountMap, Responder, Shared};
use test_support::NatsServer;
use tokio::sync::oneshot;

const ISSUER_SEED: &str = "SAANDLKMXL6CUS3CP52WIXBEDN6YJ545GDKC65U5JZPPV6WH6ESWUA6YAI";
const CURVE_SEED: &str = "SXAAXMRAEP6JWWHNB6IKFL554IE6LZVT6EY5MBRICPILTLOPHAG73I3YX4";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn shared() -> (Shared, TokenConfig) {
    let cfg = TokenConfig::new("https://auth.bench", "broker-auth");
    let policy = broker_auth_runtime::policy_dir::load_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
    )
    .unwrap();
    (
        Shared::new(
            KeySet::new(vec![Arc::new(
                TokenKey::generate(TokenAlg::EdDSA, &mut OsRng).unwrap(),
            )]),
            Verifier::new(cfg.clone()),
            RevocationSet::new(),
            policy,
            100_000,
        ),
        cfg,
    )
}

fn median_us(mut f: impl FnMut(), n: usize) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[n / 2]
}

fn service_time() {
    let (s, cfg) = shared();
    let mut c = Claims::new(
        &cfg,
        "dev-AAAAAAAAAAAAAAAA",
        now(),
        3600,
        TokenUse::Access,
        &mut OsRng,
    );
    c.sid = Some("ann-1".into());
    let token = s.keys().sign(&c).unwrap();
    let server = nkeys::KeyPair::new_server();
    let server_x = nkeys::XKey::new();
    let ours = nkeys::XKey::from_seed(CURVE_SEED).unwrap();
    let user = nkeys::KeyPair::new_user();
    let mut r = NatsClaims::<AuthorizationRequest>::new(user.public_key());
    r.nats.server_id = ServerId {
        id: server.public_key(),
        ..Default::default()
    };
    r.nats.user_nkey = user.public_key();
    r.nats.client_info = ClientInfo {
        id: Some(1),
        ..Default::default()
    };
    r.nats.connect_opts = ConnectOpts {
        auth_token: Some(token.clone()),
        ..Default::default()
    };
    let req = nats_jwt::encode(&mut r, &server, now()).unwrap();
    let sealed = server_x.seal(req.as_bytes(), &ours).unwrap();
    let issuer = nkeys::KeyPair::from_seed(ISSUER_SEED).unwrap();
    let plain = Responder::new(
        ISSUER_SEED,
        None,
        AccountMap {
            default: "APP".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let with_x = Responder::new(
        ISSUER_SEED,
        Some(CURVE_SEED),
        AccountMap {
            default: "APP".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let t = now();
    let keys = s.keys();
    let policy = s.policy();
    let claims = s
        .verifier()
        .verify(&keys, &token, t, &NoRevocations, TokenUse::Access)
        .unwrap();
    let principal = Principal::from_claims(&claims, Protocol::Nats, None).unwrap();
    let grants = policy.grants(&principal).unwrap();
    let n = 3000;
    // The production path: the shared key with this server is computed once and cached.
    let xbox = callout::xbox::XBox::from_seed(CURVE_SEED).unwrap();
    let server_pub = server_x.public_key();
    let decrypt = median_us(
        || {
            black_box(xbox.open(&sealed, &server_pub).unwrap());
        },
        n,
    );
    let req_verify = median_us(
        || {
            black_box(nats_jwt::decode::<AuthorizationRequest>(&req, t).unwrap());
        },
        n,
    );
    let tok_verify = median_us(
        || {
            black_box(
                s.verifier()
                    .verify(&keys, &token, t, s.revocations(), TokenUse::Access)
                    .unwrap(),
            );
        },
        n,
    );
    let pol = median_us(
        || {
            black_box(policy.grants(&principal).unwrap());
        },
        n,
    );
    let sign = median_us(
        || {
            let mut u = NatsClaims::<User>::new(user.public_key());
            u.nats.permissions = callout::permissions_for(&grants);
            let j = nats_jwt::encode(&mut u, &issuer, t).unwrap();
            let mut resp = NatsClaims::<nats_jwt::AuthorizationResponse>::new(user.public_key());
            resp.nats.jwt = Some(j);
            black_box(nats_jwt::encode(&mut resp, &issuer, t).unwrap());
        },
        n,
    );
    let resp_plain = nats_jwt::encode(
        &mut NatsClaims::<nats_jwt::AuthorizationResponse>::new(user.public_key()),
        &issuer,
        t,
    )
    .unwrap();
    let seal = median_us(
        || {
            black_box(xbox.seal(resp_plain.as_bytes(), &server_pub).unwrap());
        },
        n,
    );
    // Cold: every request a new device (new token, new principal), so neither the verified-token
    // cache nor the grants cache helps.
    let cold: Vec<String> = (0..n + n / 10)
        .map(|i| {
            let mut c = Claims::new(
                &cfg,
                &format!("dev-COLD{i:012}"),
                now(),
                3600,
                TokenUse::Access,
                &mut OsRng,
            );
            c.sid = Some(format!("ann-{i}"));
            let token = s.keys().sign(&c).unwrap();
            let u = nkeys::KeyPair::new_user();
            let mut r = NatsClaims::<AuthorizationRequest>::new(u.public_key());
            r.nats.server_id = ServerId {
                id: server.public_key(),
                ..Default::default()
            };
            r.nats.user_nkey = u.public_key();
            r.nats.client_info = ClientInfo {
                id: Some(1),
                ..Default::default()
            };
            r.nats.connect_opts = ConnectOpts {
                auth_token: Some(token),
                ..Default::default()
            };
            nats_jwt::encode(&mut r, &server, now()).unwrap()
        })
        .collect();
    let mut next = cold.iter();
    let total_cold = median_us(
        || {
            black_box(
                plain
                    .respond(&s, next.next().unwrap().as_bytes(), None, t)
                    .unwrap(),
            );
        },
        n,
    );
    let total_plain = median_us(
        || {
            black_box(plain.respond(&s, req.as_bytes(), None, t).unwrap());
        },
        n,
    );
    let total_x = median_us(
        || {
            black_box(
                with_x
                    .respond(&s, &sealed, Some(&server_x.public_key()), t)
                    .unwrap(),
            );
        },
        n,
    );
    println!("\n| stage (median, one core) | µs |\n|---|---|");
    println!("| xkey open (decrypt, shared key cached per server) | {decrypt:.1} |");
    println!("| request JWT decode + verify | {req_verify:.1} |");
    println!("| client token verify | {tok_verify:.1} |");
    println!(
        "| policy: grants() (first connect of a principal; later ones hit the cache) | {pol:.1} |"
    );
    println!("| sign user JWT + response JWT | {sign:.1} |");
    println!("| xkey seal | {seal:.1} |");
    println!("| whole request, first connect of a device (cold caches), plain | {total_cold:.1} |");
    println!(
        "| whole request, reconnect (token and grants cached), plain (target ≤ 100) | {total_plain:.1} |"
    );
    println!("| whole request, reconnect, xkey (target ≤ 150) | {total_x:.1} |");
}

fn callout_config(xkey: bool) -> String {
    let issuer = nkeys::KeyPair::from_seed(ISSUER_SEED).unwrap().public_key();
    let curve = nkeys::XKey::from_seed(CURVE_SEED).unwrap().public_key();
    let x = if xkey {
        format!("xkey: {curve}")
    } else {
        String::new()
    };
    format!(
        "accounts {{\n  AUTH {{ users: [ {{ user: auth, password: auth-pw }} ] }}\n  APP {{}}\n}}\n\
         authorization {{\n  auth_callout {{\n    issuer: {issuer}\n    auth_users: [ auth ]\n    account: AUTH\n    {x}\n  }}\n}}\n"
    )
}

async fn start_responders(url: &str, s: &Shared, xkey: bool, n: usize) -> Vec<oneshot::Sender<()>> {
    let mut stops = Vec::new();
    for _ in 0..n {
        let responder = Arc::new(
            Responder::new(
                ISSUER_SEED,
                xkey.then_some(CURVE_SEED),
                AccountMap {
                    default: "APP".into(),
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let client =
            async_nats::ConnectOptions::with_user_and_password("auth".into(), "auth-pw".into())
                .connect(url)
                .await
                .unwrap();
        let svc = subscribe(
            client,
            None,
            responder,
            broker_auth_runtime::Runtime::new(
                s.clone(),
                Arc::new(broker_auth_runtime::SystemClock),
            ),
            ServiceOptions::default(),
            Arc::new(Stats::default()),
        )
        .await
        .unwrap();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(svc.run(async {
            let _ = rx.await;
        }));
        stops.push(tx);
    }
    stops
}

/// One measured run.
#[derive(Clone, Copy, Default)]
struct Run {
    rate: f64,
    p50: f64,
    p99: f64,
    /// nats-server CPU per connect, µs.
    server_us: f64,
    /// This process's CPU per connect (the clients, and the responders when there are), µs.
    bench_us: f64,
}

/// `total` connects by `concurrency` tasks against the server with process id `server_pid`.
async fn connects(
    url: &str,
    server_pid: u32,
    opts: impl Fn() -> async_nats::ConnectOptions + Send + Sync + 'static,
    total: usize,
    concurrency: usize,
) -> Run {
    let opts = Arc::new(opts);
    let cpu = || {
        (
            test_support::cpu_seconds(Some(server_pid)).unwrap_or(0.0),
            test_support::cpu_seconds(None).unwrap_or(0.0),
        )
    };
    let (server0, bench0) = cpu();
    let t = Instant::now();
    let per = total / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (opts, url) = (opts.clone(), url.to_owned());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per);
                for _ in 0..per {
                    let t = Instant::now();
                    let c = opts().connect(url.as_str()).await.expect("connect");
                    lat.push(t.elapsed());
                    drop(c);
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let rate = lat.len() as f64 / t.elapsed().as_secs_f64();
    let (server1, bench1) = cpu();
    let n = lat.len() as f64;
    lat.sort();
    let ms = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
    Run {
        rate,
        p50: ms(0.5),
        p99: ms(0.99),
        server_us: (server1 - server0) * 1e6 / n,
        bench_us: (bench1 - bench0) * 1e6 / n,
    }
}

async fn end_to_end() {
    let (s, cfg) = shared();
    let token = {
        let c = Claims::new(
            &cfg,
            "dev-AAAAAAAAAAAAAAAA",
            now(),
            3600,
            TokenUse::Access,
            &mut OsRng,
        );
        s.keys().sign(&c).unwrap()
    };
    println!(
        "\n| setup | clients | connects/s | p50 ms | p99 ms | vs static token | nats-server CPU µs/connect | bench process CPU µs/connect |\n|---|---|---|---|---|---|---|---|"
    );
    let baseline = NatsServer::start("authorization { token: \"static-token\" }");
    let mut base = [Run::default(); 2];
    for (i, conc) in [1usize, 32].into_iter().enumerate() {
        let total = if conc == 1 { 300 } else { 1600 };
        base[i] = connects(
            &baseline.url(),
            baseline.pid(),
            || async_nats::ConnectOptions::with_token("static-token".into()),
            total,
            conc,
        )
        .await;
        let b = base[i];
        println!(
            "| static token user (baseline) | {conc} | {:.0} | {:.2} | {:.2} | 1.00 | {:.0} | {:.0} |",
            b.rate, b.p50, b.p99, b.server_us, b.bench_us
        );
    }
    drop(baseline);
    for xkey in [false, true] {
        for responders in [1usize, 2] {
            let server = NatsServer::start(&callout_config(xkey));
            let stops = start_responders(&server.url(), &s, xkey, responders).await;
            for (i, conc) in [1usize, 32].into_iter().enumerate() {
                let total = if conc == 1 { 300 } else { 1600 };
                let tok = token.clone();
                let r = connects(
                    &server.url(),
                    server.pid(),
                    move || async_nats::ConnectOptions::with_token(tok.clone()),
                    total,
                    conc,
                )
                .await;
                println!(
                    "| callout, {} xkey, {responders} responder(s) | {conc} | {:.0} | {:.2} | {:.2} | {:.2} (p99 +{:.2} ms) | {:.0} | {:.0} |",
                    if xkey { "with" } else { "no" },
                    r.rate,
                    r.p50,
                    r.p99,
                    r.rate / base[i].rate,
                    r.p99 - base[i].p99,
                    r.server_us,
                    r.bench_us
                );
            }
            for s in stops {
                let _ = s.send(());
            }
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    service_time();
    if std::env::args().any(|a| a == "--service-time-only") {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(end_to_end());
}
