//! Config mode (accounts in the server config, `auth_callout` with an issuer account key), with
//! and without xkey: what clients can do, which tokens are refused, expiry, revocation kicks,
//! queue groups, and restarts of either side.

use rand_core::OsRng;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::ConnectOptions;
use broker_auth::revocation::RevocationSet;
use broker_auth::token::{Claims, KeySet, TokenAlg, TokenConfig, TokenKey, TokenUse, Verifier};
use broker_auth_runtime::{Runtime, SystemClock};
use callout::service::{ServiceOptions, Stats, subscribe};
use callout::{AccountMap, Responder, Shared};
use futures_util::StreamExt;
use test_support::nats_client::{eventually, expect_event, token_client as client};
use test_support::{NatsServer, free_port};
use tokio::sync::oneshot;

const ISSUER_SEED: &str = "SAANDLKMXL6CUS3CP52WIXBEDN6YJ545GDKC65U5JZPPV6WH6ESWUA6YAI";
const CURVE_SEED: &str = "SXAAXMRAEP6JWWHNB6IKFL554IE6LZVT6EY5MBRICPILTLOPHAG73I3YX4";

use test_support::unix_now as now;

/// docker/nats-callout.conf as shipped, on the example keys above; without xkey there is no
/// `xkey` line.
pub fn config(xkey: bool) -> String {
    let debug = if std::env::var_os("NATS_DEBUG").is_some() {
        "debug: true\ntrace: true\n"
    } else {
        ""
    };
    let issuer = nkeys::KeyPair::from_seed(ISSUER_SEED).unwrap().public_key();
    let curve = nkeys::XKey::from_seed(CURVE_SEED).unwrap().public_key();
    let conf = test_support::nats_callout_conf(&issuer, xkey.then_some(curve.as_str()));
    format!("{debug}{conf}")
}

pub struct World {
    pub shared: Shared,
    pub runtime: Runtime,
    cfg: TokenConfig,
    _enforcement: tokio::task::JoinHandle<()>,
}

impl World {
    pub fn new() -> World {
        let cfg = TokenConfig::new("https://auth.test", "broker-auth");
        let policy = broker_auth_runtime::policy_dir::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
        )
        .unwrap();
        let shared = Shared::new(
            KeySet::new(vec![Arc::new(
                TokenKey::generate(TokenAlg::EdDSA, &mut OsRng).unwrap(),
            )]),
            Verifier::new(cfg.clone()),
            RevocationSet::new(),
            policy,
            100_000,
        );
        // One runtime for every responder a test starts (restarts included), as in a process.
        let runtime = Runtime::new(shared.clone(), Arc::new(SystemClock));
        let enforcement = runtime.spawn_enforcement();
        World {
            shared,
            runtime,
            cfg,
            _enforcement: enforcement,
        }
    }

    pub fn token(&self, sub: &str, ttl: i64, f: impl FnOnce(&mut Claims)) -> String {
        let mut c = Claims::new(&self.cfg, sub, now(), ttl, TokenUse::Access, &mut OsRng);
        f(&mut c);
        self.shared.keys().sign(&c).unwrap()
    }
}

pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
    stats: Arc<Stats>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

pub async fn start_responder(url: &str, world: &World, xkey: bool, kick: bool) -> Running {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("callout=debug")
        .try_init();
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
    let client = ConnectOptions::with_user_and_password("auth".into(), "auth-pw".into())
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(url)
        .await
        .unwrap();
    let kicker = if kick {
        Some(
            ConnectOptions::with_user_and_password("sys".into(), "sys-pw".into())
                .max_reconnects(None)
                .connect(url)
                .await
                .unwrap(),
        )
    } else {
        None
    };
    let (tx, rx) = oneshot::channel::<()>();
    let stats = Arc::new(Stats::default());
    let (runtime, st) = (world.runtime.clone(), stats.clone());
    let service = subscribe(
        client,
        kicker,
        responder,
        runtime,
        ServiceOptions::default(),
        st,
    )
    .await
    .unwrap();
    let task = tokio::spawn(async move {
        service
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running {
        stop: Some(tx),
        task,
        stats,
    }
}

async fn grants_are_enforced(xkey: bool) {
    let server = NatsServer::start(&config(xkey));
    let world = World::new();
    let responder = start_responder(&server.url(), &world, xkey, false).await;
    let device = "dev-AAAAAAAAAAAAAAAA";
    let (c, mut events) = client(&server.url(), &world.token(device, 600, |_| {}))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    // A watcher with full rights sees what is delivered.
    let (admin, _) = client(
        &server.url(),
        &world.token("usr-ADMINADMINADMIN", 600, |c| {
            c.groups = vec!["admin".into()]
        }),
    )
    .await
    .unwrap();
    let mut all = admin.subscribe("devices.>").await.unwrap();
    callout::service::round_trip(&admin).await.unwrap();
    c.publish(format!("devices.{device}.telemetry"), "ok".into())
        .await
        .unwrap();
    c.publish("devices.dev-BBBBBBBBBBBBBBBB.telemetry", "forged".into())
        .await
        .unwrap();
    c.flush().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), all.next())
        .await
        .unwrap_or_else(|_| panic!("nothing delivered:\n{}", server.log()))
        .unwrap();
    assert_eq!(got.subject.as_str(), format!("devices.{device}.telemetry"));
    expect_event(&mut events, "permissions violation", Duration::from_secs(5)).await;
    // The forged message never arrived.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), all.next())
            .await
            .is_err()
    );
    assert!(responder.stats.accepted.load(Ordering::Relaxed) >= 2);
    responder.stop().await;
}

#[tokio::test]
async fn grants_are_enforced_without_xkey() {
    grants_are_enforced(false).await;
}

#[tokio::test]
async fn grants_are_enforced_with_xkey() {
    grants_are_enforced(true).await;
}

#[tokio::test]
async fn bad_expired_revoked_and_foreign_tokens_are_refused() {
    let server = NatsServer::start(&config(true));
    let world = World::new();
    let responder = start_responder(&server.url(), &world, true, false).await;
    let dev = "dev-AAAAAAAAAAAAAAAA";
    let revoked = world.token(dev, 600, |c| c.sid = Some("ann-revoked".into()));
    world.shared.revoke_session("ann-revoked", now() + 600);
    let other_keys = TokenKey::generate(TokenAlg::EdDSA, &mut OsRng).unwrap();
    let mut c = Claims::new(&world.cfg, dev, now(), 600, TokenUse::Access, &mut OsRng);
    let forged = KeySet::new(vec![Arc::new(other_keys)]).sign(&c).unwrap();
    c.aud = broker_auth::token::Audience::One("someone-else".into());
    let foreign = world.shared.keys().sign(&c).unwrap();
    for (what, token) in [
        ("garbage", "not-a-token".to_owned()),
        ("expired", world.token(dev, -120, |_| {})),
        ("revoked", revoked),
        ("wrong audience", foreign),
        ("unknown signing key", forged),
        ("no grants", world.token("usr-NOBODYNOBODYNOB", 600, |_| {})),
    ] {
        let r = client(&server.url(), &token).await;
        assert!(r.is_err(), "{what} was let in");
    }
    assert_eq!(responder.stats.denied.load(Ordering::Relaxed), 6);
    // The reason codes reach the server log (clients only see "Authorization Violation").
    for code in [
        "token_expired",
        "revoked",
        "wrong_audience",
        "unknown_key",
        "no_grants",
    ] {
        let logged = eventually(Duration::from_secs(5), || server.log().contains(code)).await;
        assert!(logged, "{code} not in the server log:\n{}", server.log());
    }
    responder.stop().await;
}

#[tokio::test]
async fn clients_are_disconnected_at_token_expiry_and_on_revocation() {
    let server = NatsServer::start(&config(false));
    let world = World::new();
    let responder = start_responder(&server.url(), &world, false, true).await;
    let dev = "dev-AAAAAAAAAAAAAAAA";
    // Expiry: the user JWT expires with the token, and the server cuts the connection.
    let (_c, mut events) = client(&server.url(), &world.token(dev, 3, |_| {}))
        .await
        .unwrap();
    expect_event(&mut events, "disconnected", Duration::from_secs(8)).await;
    // (The runtime would end it at `exp` plus the 30 s leeway; the server was first.)
    let kicked_before = responder.stats.kicked.load(Ordering::Relaxed);
    // Revocation: the responder kicks the live connection of the revoked session within a second.
    let (_c2, mut events2) = client(
        &server.url(),
        &world.token(dev, 600, |c| c.sid = Some("ann-live".into())),
    )
    .await
    .unwrap();
    let t = std::time::Instant::now();
    world.shared.revoke_session("ann-live", now() + 600);
    expect_event(&mut events2, "disconnected", Duration::from_secs(3)).await;
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "kicked after {:?}",
        t.elapsed()
    );
    let kicked = eventually(Duration::from_secs(3), || {
        responder.stats.kicked.load(Ordering::Relaxed) == kicked_before + 1
    })
    .await;
    let s = &responder.stats;
    assert!(
        kicked,
        "the disconnect must come from our kick: kicked {} (before {kicked_before}), failed {}, ended {:?}",
        s.kicked.load(Ordering::Relaxed),
        s.kick_failed.load(Ordering::Relaxed),
        s.ended_by_reason.sorted()
    );
    responder.stop().await;
}

#[tokio::test]
async fn two_responders_answer_each_request_once_and_survive_each_other() {
    let server = NatsServer::start(&config(true));
    let world = World::new();
    let a = start_responder(&server.url(), &world, true, false).await;
    let b = start_responder(&server.url(), &world, true, false).await;
    let token = world.token("dev-AAAAAAAAAAAAAAAA", 600, |_| {});
    let n = 20;
    for _ in 0..n {
        let (c, _) = client(&server.url(), &token).await.unwrap();
        drop(c);
    }
    let answered =
        a.stats.answered.load(Ordering::Relaxed) + b.stats.answered.load(Ordering::Relaxed);
    assert_eq!(
        answered, n,
        "a queue group answers each request exactly once"
    );
    // One responder dies (its task and NATS connection dropped, no drain): connects keep working.
    a.task.abort();
    let _ = a.task.await;
    for _ in 0..5 {
        client(&server.url(), &token).await.unwrap();
    }
    assert!(b.stats.answered.load(Ordering::Relaxed) >= 5);
    b.stop().await;
}

#[tokio::test]
async fn a_nats_server_restart_and_a_responder_restart_are_survived() {
    let (port, mport) = (free_port(), free_port());
    let mut server = NatsServer::start_with_ports(&config(true), port, mport);
    let url = server.url();
    let world = World::new();
    let responder = start_responder(&url, &world, true, false).await;
    let token = world.token("dev-AAAAAAAAAAAAAAAA", 600, |_| {});
    client(&url, &token).await.unwrap();
    // nats-server restarts on the same port; the responder reconnects and resubscribes by itself.
    server.stop();
    let server = NatsServer::start_with_ports(&config(true), port, mport);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while client(&url, &token).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "no successful connect after the server restart:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // poll for readiness of the reconnected responder
    }
    // The responder restarts: while it is down connects fail closed, afterwards they work again.
    responder.stop().await;
    assert!(
        client(&url, &token).await.is_err(),
        "no responder must mean no entry"
    );
    let responder = start_responder(&url, &world, true, false).await;
    client(&url, &token).await.unwrap();
    responder.stop().await;
}
