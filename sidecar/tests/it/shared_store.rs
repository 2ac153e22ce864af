//! Two real sidecars on one store (`--store nats`, a real nats-server with JetStream): what one
//! writes the other serves, single-use proofs stay single-use across both, and a revocation,
//! a key rotation, a policy deploy or a ban made at A is in force at B within a second (B cuts its own
//! MQTT session). Then the faults: JetStream gone makes writes 503 (never a false
//! acknowledgement) while B keeps deciding from memory, and both recover by themselves when it
//! returns; a store unreachable at start-up stops the process with a clear error.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};
use test_support::{NatsServer, wait_until};

use super::harness::TestKey;
use super::mqtt_e2e::login;
use super::server::{Server, bin};
use super::store_conformance::jetstream_conf;

/// Base64 of 32 bytes: the master key every sidecar of the fleet shares.
pub(super) const KEK: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const WITHIN: Duration = Duration::from_secs(1);

fn store_flags(url: &str) -> Vec<String> {
    [
        "--store",
        "nats",
        "--store-nats-url",
        url,
        "--key-encryption-key",
        KEK,
        "--store-timeout-ms",
        "1500",
    ]
    .map(str::to_owned)
    .to_vec()
}

pub(super) fn start(data: &Path, url: &str) -> Server {
    let flags = store_flags(url);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(data, &flags)
}

/// `sidecar bootstrap` against the shared store; the admin key.
pub(super) fn bootstrap(data: &Path, url: &str) -> String {
    super::server::bootstrap_with(data, &store_flags(url))
}

pub(super) fn post(c: &Client, url: String, bearer: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = c.post(url).json(&body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let res = req.send().unwrap();
    (res.status().as_u16(), res.json().unwrap_or(Value::Null))
}

pub(super) fn register(
    c: &Client,
    at: &Server,
    admin: &str,
    key: &TestKey,
    kind: &str,
) -> (u16, Value) {
    let body = json!({"public_key": key.public(), "type": kind});
    post(c, at.url("/identity/register"), Some(admin), body)
}

pub(super) fn metric(c: &Client, at: &Server, name: &str) -> Option<f64> {
    let text = c.get(at.url("/metrics")).send().ok()?.text().ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn jwks(c: &Client, at: &Server) -> Value {
    c.get(at.url("/.well-known/jwks.json"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// Register at A, ask the challenge at A, answer it at B; replaying it anywhere fails.
pub(super) fn login_across(c: &Client, a: &Server, b: &Server, admin: &str) {
    let key = TestKey::ed();
    assert_eq!(register(c, a, admin, &key, "user").0, 201);
    let (s, dup) = register(c, b, admin, &key, "user");
    assert_eq!(
        s, 409,
        "a public key names one identity across sidecars: {dup}"
    );
    let (_, ch) = post(
        c,
        a.url("/auth/challenge"),
        None,
        json!({"public_key": key.public()}),
    );
    let challenge = ch["challenge"].as_str().unwrap();
    let answer = json!({"public_key": key.public(), "signature": key.sign(challenge.as_bytes()),
        "challenge": challenge});
    let (s, body) = post(c, b.url("/auth/verify"), None, answer.clone());
    assert_eq!(s, 200, "challenge of A answered at B: {body}");
    let (s, _) = post(c, a.url("/auth/verify"), None, answer);
    assert_eq!(s, 401, "a challenge is spent for the whole fleet");
}

/// One refresh token presented at A and at B at once: one rotation, and the family ends.
pub(super) fn refresh_race(c: &Client, a: &Server, b: &Server, admin: &str) {
    let key = TestKey::ed();
    assert_eq!(register(c, a, admin, &key, "user").0, 201);
    let (_, ch) = post(
        c,
        a.url("/auth/challenge"),
        None,
        json!({"public_key": key.public()}),
    );
    let challenge = ch["challenge"].as_str().unwrap();
    let (_, login) = post(
        c,
        a.url("/auth/verify"),
        None,
        json!({"public_key": key.public(),
        "signature": key.sign(challenge.as_bytes()), "challenge": challenge}),
    );
    let rt = login["refresh_token"].as_str().unwrap().to_owned();
    let results: Vec<(u16, Value)> = std::thread::scope(|s| {
        let hs: Vec<_> = [a, b]
            .map(|at| {
                let (c, rt) = (c.clone(), rt.clone());
                s.spawn(move || {
                    post(
                        &c,
                        at.url("/auth/refresh"),
                        None,
                        json!({"refresh_token": rt}),
                    )
                })
            })
            .into_iter()
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<&(u16, Value)> = results.iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(won.len(), 1, "exactly one rotation wins: {results:?}");
    // Whichever order they arrived in, the loser's use of a spent token ends the family, or the
    // loser was refused before the winner's new token existed; either way the winner's next
    // token must not outlive a detected reuse.
    let next = won[0].1["refresh_token"].as_str().unwrap();
    let loser = results.iter().find(|(s, _)| *s != 200).unwrap();
    if loser.1["error"] == "REFRESH_TOKEN_REUSED" {
        let (s, _) = post(
            c,
            b.url("/auth/refresh"),
            None,
            json!({"refresh_token": next}),
        );
        assert_eq!(s, 401, "the family is revoked everywhere");
    }
}

/// A device connected to B's embedded broker, disabled at A: B cuts it within a second.
fn revocation_at_a_cuts_mqtt_at_b(c: &Client, a: &Server, b: &Server, admin: &str) {
    let key = TestKey::ed();
    let (s, reg) = register(c, a, admin, &key, "device");
    assert_eq!(s, 201, "{reg}");
    let id = reg["identity_id"].as_str().unwrap().to_owned();
    let token = login(c, a, &key);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (client, mut el) = rt
        .block_on(super::enforcement::mqtt(
            b.mqtt_port.unwrap(),
            "shared-dev",
            &token,
        ))
        .unwrap_or_else(|code| panic!("B refused a token A issued: {code:?}"));
    let res = c
        .delete(a.url(&format!("/identity/{id}")))
        .bearer_auth(admin)
        .send()
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let took = rt.block_on(super::enforcement::mqtt_closed(&mut el));
    assert!(
        took < WITHIN,
        "B cut the session {took:?} after A's revocation"
    );
    drop(client);
}

/// A key rotation and a policy deploy at A: B serves both within a second.
fn rotation_and_deploy_reach_b(c: &Client, a: &Server, b: &Server, admin: &str) {
    let res = c
        .post(a.url("/admin/keys/rotate"))
        .bearer_auth(admin)
        .send()
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let at_a = jwks(c, a);
    assert!(
        wait_until(WITHIN, || jwks(c, b) == at_a),
        "JWKS at B: {} vs {at_a}",
        jwks(c, b)
    );
    let live = metric(c, a, "broker_auth_policy_version").unwrap();
    let files = super::policy_routes::shipped_files();
    let files =
        super::policy_routes::edit(&files, "broker.rego", "package", "# edited at A\npackage");
    let body = json!({"files": files, "message": "from A", "base_version": live as u64});
    let (s, dep) = post(c, a.url("/policies"), Some(admin), body);
    assert_eq!(s, 201, "{dep}");
    let version = dep["version"].as_f64().unwrap();
    assert!(
        wait_until(WITHIN, || metric(c, b, "broker_auth_policy_version")
            == Some(version)),
        "B serves {:?}, A deployed {version}",
        metric(c, b, "broker_auth_policy_version")
    );
}

/// The answer to a challenge request from 127.0.0.2 (its own loopback address, so banning it
/// leaves the admin's 127.0.0.1 alone).
fn challenge_from_other_ip(at: &Server) -> Option<String> {
    let c = Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let res = c
        .post(at.url("/auth/challenge"))
        .json(&json!({"public_key": TestKey::ed().public()}))
        .send()
        .ok()?;
    let body: Value = res.json().ok()?;
    Some(body["error"].as_str().unwrap_or("").to_owned())
}

/// A ban written to the store (as a lockout at another sidecar writes it) holds at B within a
/// second; lifted at A, B serves the address again within a second.
fn bans_reach_b(c: &Client, a: &Server, b: &Server, admin: &str, url: &str) {
    let args = sidecar::config::StoreArgs {
        kind: sidecar::config::StoreKind::Nats,
        data_dir: std::path::PathBuf::from("/nonexistent"),
        key_encryption_key: None,
        nats: sidecar::config::NatsStoreArgs {
            conn: callout::config::StoreNatsArgs {
                url: Some(url.to_owned()),
                creds: None,
                user: None,
                password: None,
                prefix: "broker_auth".into(),
            },
            replicas: 1,
            timeout_ms: 3000,
        },
    };
    let store = sidecar::store::open(&args).unwrap();
    // Served (an unknown key's answer), not refused.
    let served = challenge_from_other_ip(b);
    assert_eq!(served.as_deref(), Some("UNKNOWN_IDENTITY"));
    let ban = sidecar::store::BanRecord {
        ip: "127.0.0.2".into(),
        since: test_support::unix_now(),
        reason: "lockouts at another sidecar".into(),
    };
    store.put_ban(&ban).unwrap();
    assert!(
        wait_until(WITHIN, || challenge_from_other_ip(b).as_deref()
            == Some("BANNED")),
        "B ignores a ban in the store: {:?}",
        challenge_from_other_ip(b)
    );
    let res = c
        .delete(a.url("/admin/bans/127.0.0.2"))
        .bearer_auth(admin)
        .send()
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert!(
        // Not refused as banned (the polling above may have used up its rate-limit window).
        wait_until(WITHIN, || challenge_from_other_ip(b)
            .is_some_and(|e| e != "BANNED")),
        "B keeps a ban lifted at A: {:?}",
        challenge_from_other_ip(b)
    );
}

#[test]
fn two_sidecars_on_one_jetstream_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start(&jetstream_conf(dir.path()));
    let url = nats.url();
    let admin = bootstrap(&dir.path().join("a"), &url);
    let a = start(&dir.path().join("a"), &url);
    let b = start(&dir.path().join("b"), &url);
    let c = Client::new();
    login_across(&c, &a, &b, &admin);
    refresh_race(&c, &a, &b, &admin);
    revocation_at_a_cuts_mqtt_at_b(&c, &a, &b, &admin);
    rotation_and_deploy_reach_b(&c, &a, &b, &admin);
    bans_reach_b(&c, &a, &b, &admin, &url);

    // A device that logged in before JetStream goes away.
    let key = TestKey::ed();
    assert_eq!(register(&c, &a, &admin, &key, "device").0, 201);
    let token = login(&c, &a, &key);

    // JetStream gone: a write is refused with the envelope, never acknowledged.
    let (port, monitor) = (nats.port, nats.monitor_port);
    nats.stop();
    let t0 = Instant::now();
    let (s, body) = register(&c, &a, &admin, &TestKey::ed(), "user");
    assert_eq!(
        (s, body["error"].as_str()),
        (503, Some("STORE_UNAVAILABLE")),
        "{body}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // Connects are still decided from memory: B's embedded broker admits the device.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admitted = rt.block_on(super::enforcement::mqtt(
        b.mqtt_port.unwrap(),
        "offline-dev",
        &token,
    ));
    assert!(
        admitted.is_ok(),
        "B refused a valid device while JetStream was down: {:?}\n{}",
        admitted.err(),
        b.log()
    );
    drop(admitted);
    // Back on the same ports and files: both sidecars write again without a restart.
    let _nats = NatsServer::start_with_ports(&jetstream_conf(dir.path()), port, monitor);
    for at in [&a, &b] {
        let key = TestKey::ed();
        assert!(
            wait_until(Duration::from_secs(15), || register(
                &c, at, &admin, &key, "user"
            )
            .0 == 201),
            "no recovery:\n{}",
            at.log()
        );
    }
}

#[test]
fn a_store_unreachable_at_start_up_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{}", test_support::free_port());
    let out = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(store_flags(&url))
        .env_remove("KEY_ENCRYPTION_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without its store:\n{err}");
    assert!(err.contains("nats store at"), "{err}");
    assert!(
        !dir.path().join("store").exists(),
        "no silent fallback to sled"
    );
    let out = Command::new(bin())
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--store", "nats", "--store-nats-url", &url])
        .env_remove("KEY_ENCRYPTION_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("KEY_ENCRYPTION_KEY"), "{err}");
}
