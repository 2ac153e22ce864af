//! The standalone `callout` binary against a real `sidecar serve` and a real nats-server 2.15:
//! it refuses to start without the credential its revocation feed needs, it follows the feed
//! (a revoked session's live connection is cut, the device's other session stays), and when the
//! sidecar is gone it refuses connects once the staleness window has passed, then admits again
//! when the sidecar is back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use test_support::NatsServer;
use test_support::nats_client::{expect_event, token_client};

use super::harness::TestKey;
use super::nats_callout::{CURVE_SEED, ISSUER_SEED, announce, nats_config, seed_file};
use super::server::{Server, bootstrap};

/// The `callout` binary of this workspace, built if this test run has not built it yet (a
/// no-op when it is fresh), in the same profile and target directory as the sidecar.
pub(super) fn callout_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let sidecar = PathBuf::from(env!("CARGO_BIN_EXE_sidecar"));
        let profile_dir = sidecar.parent().unwrap();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "-p", "callout", "--bin", "callout"])
            .arg("--target-dir")
            .arg(profile_dir.parent().unwrap())
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().unwrap().success(),
            "cargo build -p callout failed"
        );
        profile_dir.join("callout")
    })
}

/// A running standalone callout; its stderr goes to a file the test can read.
pub(super) struct Callout {
    child: Child,
    log: PathBuf,
}

impl Callout {
    /// A callout fed by the sidecar at `sidecar` over HTTP, with `token` for its feed.
    fn start(dir: &Path, nats: &NatsServer, sidecar: &str, token: &str) -> Callout {
        let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let source = ["--sidecar-url", sidecar, "--sidecar-token", token];
        let policies = ["--policies", policies.to_str().unwrap()];
        let window = ["--revocations-stale-after", "2"];
        Callout::spawn(
            dir,
            "callout",
            &nats.url(),
            &[&source[..], &policies, &window].concat(),
        )
    }

    /// A callout following the shared store (`--store nats`) as the store's `store` user of
    /// `docker/nats-callout.conf`, answering on `nats` (comma-separated seeds); its log is
    /// `dir/<name>.log`.
    pub(super) fn on_store(dir: &Path, name: &str, nats: &str, store: &str) -> Callout {
        let source = ["--store", "nats", "--store-nats-url", store];
        let user = [
            "--store-nats-user",
            "store",
            "--store-nats-password",
            "store-pw",
        ];
        let window = ["--revocations-stale-after", "5"];
        Callout::spawn(dir, name, nats, &[&source[..], &user, &window].concat())
    }

    /// The callout with the test seeds and the shipped config's users, on `nats`, learning
    /// from what `source` says; its stderr in `dir/<name>.log`.
    fn spawn(dir: &Path, name: &str, nats: &str, source: &[&str]) -> Callout {
        let log = dir.join(format!("{name}.log"));
        let issuer = seed_file(dir, "issuer.seed", ISSUER_SEED);
        let curve = seed_file(dir, "xkey.seed", CURVE_SEED);
        let child = Command::new(callout_bin())
            .args(["--nats-url", nats, "--nats-user", "auth"])
            .args(["--nats-password", "auth-pw", "--issuer-seed-file", &issuer])
            .args(["--xkey-seed-file", &curve, "--kick-user", "sys"])
            .args(["--kick-password", "sys-pw"])
            .args(source)
            .env_remove("SIDECAR_TOKEN")
            .env_remove("SIDECAR_URL")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Callout { child, log }
    }

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Callout {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Try connecting until `admitted` says whether one attempt got in, as wanted; panics after
/// `within` with the callout's log.
pub(super) async fn until_connects(
    url: &str,
    token: &str,
    wanted: bool,
    within: Duration,
    c: &Callout,
) {
    let deadline = Instant::now() + within;
    loop {
        let got = token_client(url, token).await.is_ok();
        if got == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "connects {} after {within:?}:\n{}",
            if wanted {
                "still refused"
            } else {
                "still admitted"
            },
            c.log()
        );
        // Each attempt is a full connect; pace them so the server log stays readable.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_standalone_callout_without_its_feed_credential_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = seed_file(dir.path(), "issuer.seed", ISSUER_SEED);
    for args in [vec!["--sidecar-url", "http://127.0.0.1:9"], vec![]] {
        let out = Command::new(callout_bin())
            .args(["--nats-url", "nats://127.0.0.1:9", "--nats-user", "auth"])
            .args(["--nats-password", "x", "--issuer-seed-file", &issuer])
            .args(&args)
            .env_remove("SIDECAR_TOKEN")
            .env_remove("SIDECAR_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started: {stderr}");
        let needle = if args.is_empty() {
            "--sidecar-url"
        } else {
            "--sidecar-token"
        };
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_callout_follows_the_feed_goes_blind_without_it_and_recovers() {
    let nats = NatsServer::start(&nats_config());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, admin) = tokio::task::block_in_place(|| {
        let admin = bootstrap(&data);
        (Server::start(&data, &["--mqtt-listen", "off"]), admin)
    });
    let callout = Callout::start(dir.path(), &nats, &server.url(""), &admin);
    let http = reqwest::Client::new();
    let key = TestKey::ed();
    let (_device, first) = announce(&http, &server, &key, 0).await;
    until_connects(&nats.url(), &first, true, Duration::from_secs(20), &callout).await;
    let (_c1, mut first_events) = token_client(&nats.url(), &first).await.unwrap();

    // A second announcement ends the first session: its live connection is cut, the new one
    // connects and stays.
    let (_, second) = announce(&http, &server, &key, 1).await;
    expect_event(&mut first_events, "disconnected", Duration::from_secs(4)).await;
    let (c2, mut second_events) = token_client(&nats.url(), &second).await.unwrap();
    assert!(
        token_client(&nats.url(), &first).await.is_err(),
        "the ended session stays out"
    );

    // The sidecar goes away: after the staleness window nothing is admitted, and says why.
    let port = server.port;
    tokio::task::block_in_place(|| server.kill9());
    until_connects(
        &nats.url(),
        &second,
        false,
        Duration::from_secs(10),
        &callout,
    )
    .await;
    assert!(
        callout.log().contains("revocations_stale"),
        "{}",
        callout.log()
    );
    assert!(
        c2.flush().await.is_ok(),
        "a connection admitted before stays (it was decided)"
    );
    while let Ok(ev) = second_events.try_recv() {
        assert!(!ev.contains("disconnected"), "{ev}");
    }

    // Back: admitted again, without restarting the callout.
    let _server =
        tokio::task::block_in_place(|| Server::start_on(&data, port, &["--mqtt-listen", "off"]));
    until_connects(
        &nats.url(),
        &second,
        true,
        Duration::from_secs(10),
        &callout,
    )
    .await;
}

#[test]
fn a_callout_on_a_store_it_cannot_reach_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = seed_file(dir.path(), "issuer.seed", ISSUER_SEED);
    let nowhere = format!("nats://127.0.0.1:{}", test_support::free_port());
    for (store, needle) in [
        (vec![], "--store-nats-url"),
        (vec!["--store-nats-url", nowhere.as_str()], "store at"),
    ] {
        let out = Command::new(callout_bin())
            .args(["--nats-url", "nats://127.0.0.1:9", "--nats-user", "auth"])
            .args(["--nats-password", "x", "--issuer-seed-file", &issuer])
            .args(["--store", "nats"])
            .args(&store)
            .env_remove("STORE_NATS_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{store:?} started: {stderr}");
        assert!(stderr.contains(needle), "{store:?}: {stderr}");
    }
}

/// A callout following the store (a JetStream of its own beside the clients' nats-server):
/// JetStream gone, it refuses once it has been blind for its window, and says why; back, it
/// admits again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callout_on_the_store_goes_blind_without_jetstream_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store_conf = super::store_conformance::jetstream_conf(dir.path());
    let mut store = NatsServer::start(&store_conf);
    let nats = NatsServer::start(&nats_config());
    let data = dir.path().join("a");
    let server = tokio::task::block_in_place(|| {
        super::shared_store::bootstrap(&data, &store.url());
        super::shared_store::start(&data, &store.url())
    });
    let (_device, token) = announce(&reqwest::Client::new(), &server, &TestKey::ed(), 0).await;
    let callout = Callout::on_store(dir.path(), "callout", &nats.url(), &store.url());
    until_connects(&nats.url(), &token, true, Duration::from_secs(20), &callout).await;

    let (port, monitor) = (store.port, store.monitor_port);
    tokio::task::block_in_place(|| store.stop());
    until_connects(
        &nats.url(),
        &token,
        false,
        Duration::from_secs(15),
        &callout,
    )
    .await;
    assert!(
        callout.log().contains("revocations_stale"),
        "{}",
        callout.log()
    );
    let _store =
        tokio::task::block_in_place(|| NatsServer::start_with_ports(&store_conf, port, monitor));
    until_connects(&nats.url(), &token, true, Duration::from_secs(20), &callout).await;
}
