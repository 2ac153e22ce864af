//! The NATS provisioner and resolver against a real nats-server 2.15 in operator mode that uses
//! the sidecar as its account resolver: `init-operator`, the seed's routes, `.creds` that connect,
//! the cross-account command scenario (RXC_CMD in CONTROL, sensors in their tenant's account),
//! revocation reaching live connections, and seeds encrypted at rest.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use test_support::NatsServer;
use test_support::nats_client::{creds_client, expect_event};

use super::server::{Server, bin};

const SEED_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const SECRET: &str = "the-backend-shared-secret";
const WAIT: Duration = Duration::from_secs(10);

fn init_operator(data: &Path, resolver: &str) -> String {
    let out = Command::new(bin())
        .args(["init-operator", "--data-dir", data.to_str().unwrap()])
        .args(["--resolver-url", resolver])
        .env("ACCOUNT_SEED_ENCRYPTION_KEY", SEED_KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn post(c: &Client, url: &str, secret: Option<(&str, &str)>, body: Value) -> (u16, Value) {
    let mut req = c.post(url).json(&body);
    if let Some((h, v)) = secret {
        req = req.header(h, v);
    }
    let res = req.send().unwrap();
    (res.status().as_u16(), res.json().unwrap_or(Value::Null))
}

struct World {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    sidecar: Server,
    nats: NatsServer,
    c: Client,
}

impl World {
    fn url(&self, p: &str) -> String {
        self.sidecar.url(p)
    }
    fn write(&self, path: &str, body: Value) -> (u16, Value) {
        post(
            &self.c,
            &self.url(path),
            Some(("x-backend-shared-secret", SECRET)),
            body,
        )
    }
}

fn start() -> World {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = test_support::free_port();
    let nats_port = test_support::free_port();
    let block = init_operator(&data, &format!("http://127.0.0.1:{port}/jwt/v1/accounts/"));
    assert!(
        block.contains("resolver: URL(") && block.contains("system_account: A"),
        "{block}"
    );
    let seed = data.join("operator.seed");
    // A second run (a compose one-shot at every start) keeps the operator and its accounts and
    // writes the same block's keys to --config-out; the operator JWT is inlined, not a path.
    let seed_before = std::fs::read(&seed).unwrap();
    let out = data.join("conf/operator.conf");
    let again = Command::new(bin())
        .args(["init-operator", "--data-dir", data.to_str().unwrap()])
        .args([
            "--resolver-url",
            &format!("http://127.0.0.1:{port}/jwt/v1/accounts/"),
        ])
        .args(["--config-out", out.to_str().unwrap()])
        .env("ACCOUNT_SEED_ENCRYPTION_KEY", SEED_KEY)
        .output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
    assert!(again.stdout.is_empty(), "the block went to the file");
    assert_eq!(std::fs::read(&seed).unwrap(), seed_before, "seed kept");
    let written = std::fs::read_to_string(&out).unwrap();
    let sys = |b: &str| {
        b.lines()
            .find(|l| l.starts_with("system_account:"))
            .map(str::to_owned)
    };
    assert_eq!(sys(&written), sys(&block), "same SYS account");
    assert_eq!(
        written.lines().next(),
        block.lines().next(),
        "same operator"
    );
    assert!(
        block.contains("operator: \"eyJ"),
        "inline operator JWT: {block}"
    );
    let sidecar = Server::start_on(
        &data,
        port,
        &[
            "--operator-seed-path",
            seed.to_str().unwrap(),
            "--account-seed-encryption-key",
            SEED_KEY,
            "--backend-shared-secret",
            SECRET,
            "--nats-url",
            &format!("nats://127.0.0.1:{nats_port}"),
            "--startup-ensure-command-stream",
            "true",
        ],
    );
    // docker/nats-operator.conf, with the printed block in place of its include and a temporary
    // JetStream directory (listen is set by the test harness).
    let template = std::fs::read_to_string(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docker/nats-operator.conf"),
    )
    .unwrap();
    let js = dir.path().join("js");
    let config = template
        .replace("listen: 0.0.0.0:4222\n", "")
        .replace("include ./operator/operator.conf", &block)
        .replace("/data/jetstream", &js.display().to_string());
    // nats-server fetches the SYS account from us before it starts: this proves the resolver.
    let nats = NatsServer::start_with_ports(&config, nats_port, test_support::free_port());
    World {
        _dir: dir,
        data,
        sidecar,
        nats,
        c: Client::new(),
    }
}

#[test]
fn the_ravenxcope_scenario_end_to_end() {
    let w = start();
    // Shared secret: missing or wrong → 401; both header names work.
    let body = json!({"tenantId": "t1", "name": "Tenant One"});
    assert_eq!(post(&w.c, &w.url("/accounts"), None, body.clone()).0, 401);
    assert_eq!(
        post(
            &w.c,
            &w.url("/accounts"),
            Some(("x-backend-shared-secret", "nope")),
            body.clone()
        )
        .0,
        401
    );
    let (s, a1) = w.write("/accounts", body.clone());
    assert_eq!(s, 201, "{a1}");
    let (s, again) = post(
        &w.c,
        &w.url("/accounts"),
        Some(("x-ravenxcope-provisioner-secret", SECRET)),
        body,
    );
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["accountPubKey"], a1["accountPubKey"]);
    // The resolver serves it.
    let key = a1["accountPubKey"].as_str().unwrap();
    let res =
        w.c.get(w.url(&format!("/jwt/v1/accounts/{key}")))
            .send()
            .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/jwt");
    assert_eq!(res.text().unwrap(), a1["accountJWT"].as_str().unwrap());
    let missing = w.c.get(w.url("/jwt/v1/accounts/ABCDEF")).send().unwrap();
    assert_eq!(missing.status(), 404);

    let (s, s1) = w.write("/users", json!({"tenantId": "t1", "sensorId": "s1"}));
    assert_eq!(s, 200, "{s1}");
    let (_, s1_again) = w.write("/users", json!({"tenantId": "t1", "sensorId": "s1"}));
    assert_eq!(s1_again["creds"], s1["creds"], "create-or-return");
    let (_, s2) = w.write("/users", json!({"tenantId": "t1", "sensorId": "s2"}));
    // The provisioner reaches nats-server in the background; create-or-return reports whether the
    // command stream and the sensor's consumer exist yet. Wait on that, not on a clock.
    for sensor in ["s1", "s2"] {
        let ready = test_support::wait_until(WAIT, || {
            let (_, r) = w.write("/users", json!({"tenantId": "t1", "sensorId": sensor}));
            r["consumerReady"] == true
        });
        assert!(
            ready,
            "consumer of {sensor} never ready:\n{}",
            w.sidecar.log()
        );
    }
    let (s, backend) = w.write("/backend-user", json!({}));
    assert_eq!(s, 200, "{backend}");
    assert_eq!(
        w.write("/users", json!({"tenantId": "t1", "sensorId": "a.b"}))
            .0,
        400
    );
    assert_eq!(
        w.write("/users", json!({"tenantId": "nope", "sensorId": "s9"}))
            .0,
        404
    );

    // The minted permissions are the seed's table, generated from the policy's grants.
    let perms = |creds: &Value| {
        let (jwt, _) = broker_auth::nats_jwt::creds::parse_creds(creds.as_str().unwrap()).unwrap();
        let u =
            broker_auth::nats_jwt::decode_at::<broker_auth::nats_jwt::User>(&jwt, None).unwrap();
        (
            u.nats.permissions.publish.allow,
            u.nats.permissions.subscribe.allow,
        )
    };
    let (p, s) = perms(&backend["creds"]);
    assert_eq!(
        (p, s),
        (
            vec!["rxc.*.*.cmd".to_owned()],
            vec!["_INBOX.>".to_owned(), "rxc.*.*.status".to_owned()]
        )
    );
    let (p, s) = perms(&s1["creds"]);
    assert!(p.contains(&"rxc.t1.s1.status".to_owned()), "{p:?}");
    assert!(
        p.iter()
            .all(|x| !x.contains("s2") && !x.starts_with("rxc.t1.s1.cmd")),
        "{p:?}"
    );
    assert_eq!(s, vec!["_INBOX.>".to_owned()]);

    let url = w.nats.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (backend_nc, _) = creds_client(&url, backend["creds"].as_str().unwrap())
            .await
            .expect("backend connects with its creds");
        let mut statuses = backend_nc.subscribe("rxc.*.*.status").await.unwrap();
        backend_nc.flush().await.unwrap();
        let (sensor, mut sensor_events) = creds_client(&url, s1["creds"].as_str().unwrap())
            .await
            .expect("sensor connects with its creds");
        // Its own status reaches the backend (across accounts)...
        sensor
            .publish("rxc.t1.s1.status", "up".into())
            .await
            .unwrap();
        let m = tokio::time::timeout(WAIT, statuses.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (m.subject.as_str(), &m.payload[..]),
            ("rxc.t1.s1.status", &b"up"[..])
        );
        // ...another sensor's subject is refused.
        sensor
            .publish("rxc.t1.s2.status", "spoof".into())
            .await
            .unwrap();
        expect_event(&mut sensor_events, "permissions violation", WAIT).await;

        // The backend sends a command into RXC_CMD; only s1 can pull it.
        let js = async_nats::jetstream::new(backend_nc.clone());
        js.publish("rxc.t1.s1.cmd", "reboot".into())
            .await
            .unwrap()
            .await
            .expect("RXC_CMD stored the command");
        let (other, mut other_events) = creds_client(&url, s2["creds"].as_str().unwrap())
            .await
            .unwrap();
        other
            .publish("$JS.API.CONSUMER.MSG.NEXT.RXC_CMD.cmd-t1-s1", "1".into())
            .await
            .unwrap();
        expect_event(&mut other_events, "permissions violation", WAIT).await;
        // The addressed sensor pulls it through its account's import, and acks it.
        let sensor_js = async_nats::jetstream::with_prefix(sensor.clone(), "JS.CONTROL.API");
        let consumer: async_nats::jetstream::consumer::PullConsumer = sensor_js
            .get_consumer_from_stream("cmd-t1-s1", "RXC_CMD")
            .await
            .expect("the sensor sees its own consumer");
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(WAIT)
            .messages()
            .await
            .unwrap();
        let cmd = tokio::time::timeout(WAIT, batch.next())
            .await
            .expect("the command in time")
            .expect("one command")
            .expect("a message");
        assert_eq!(
            (cmd.subject.as_str(), &cmd.payload[..]),
            ("rxc.t1.s1.cmd", &b"reboot"[..])
        );
        cmd.ack().await.expect("ack through the import");
        // Another sensor of the same tenant cannot even look at it.
        let other_js = async_nats::jetstream::with_prefix(other.clone(), "JS.CONTROL.API");
        let peek = tokio::time::timeout(
            Duration::from_secs(2),
            other_js
                .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                    "cmd-t1-s1",
                    "RXC_CMD",
                ),
        )
        .await;
        assert!(!matches!(peek, Ok(Ok(_))), "s2 reached s1's consumer");

        // Revocation: the live connection is dropped and the next connect fails.
        let (s, r) = tokio::task::block_in_place(|| {
            w.write(
                "/revoke",
                json!({"accountId": "t1", "userPubKey": s1["userPubKey"]}),
            )
        });
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["propagated"], true, "{r}");
        expect_event(&mut sensor_events, "disconnected", WAIT).await;
        assert!(
            creds_client(&url, s1["creds"].as_str().unwrap())
                .await
                .is_err(),
            "a revoked user must not connect"
        );
    });
}

#[test]
fn seeds_are_encrypted_at_rest_and_a_readable_operator_seed_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let w = start();
    w.write("/accounts", json!({"tenantId": "t9"}));
    let (_, user) = w.write("/users", json!({"tenantId": "t9", "sensorId": "s1"}));
    let creds = user["creds"].as_str().unwrap();
    let user_seed = creds
        .lines()
        .find(|l| l.starts_with("SU"))
        .expect("a user seed in the creds");
    // Every file of the store: no user seed and no account seed (SA…) in clear.
    let mut stack = vec![w.data.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_some_and(|x| x == "seed") {
                continue; // the operator seed file itself, 0600 by design
            }
            let bytes = std::fs::read(&p).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(user_seed),
                "{} holds a user seed",
                p.display()
            );
            assert!(
                !text.as_bytes().windows(58).any(|w| w.starts_with(b"SA")
                    && w[2..]
                        .iter()
                        .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(b))),
                "{} holds something shaped like an account seed",
                p.display()
            );
        }
    }
    drop(w);

    // A group-readable operator seed: serve refuses, and says why.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    init_operator(&data, "http://127.0.0.1:1/jwt/v1/accounts/");
    let seed = data.join("operator.seed");
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(bin())
        .args(["serve", "--data-dir", data.to_str().unwrap()])
        .args(["--policies", super::harness::policies().to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--mqtt-listen", "off"])
        .args(["--operator-seed-path", seed.to_str().unwrap()])
        .args([
            "--account-seed-encryption-key",
            SEED_KEY,
            "--backend-shared-secret",
            SECRET,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("readable by group or others"), "{err}");

    // With the seed fixed: a missing, malformed or wrong encryption key is refused at start-up.
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o600)).unwrap();
    let other_key = "HxwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgEAAAA=";
    for (key, says) in [
        (None, "ACCOUNT_SEED_ENCRYPTION_KEY"),
        (Some("not base64!"), "base64 of 32 bytes"),
        (Some("c2hvcnQ="), "base64 of 32 bytes"),
        (Some(other_key), "cannot be decrypted"),
    ] {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--data-dir", data.to_str().unwrap()])
            .args(["--policies", super::harness::policies().to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--mqtt-listen", "off"])
            .args(["--operator-seed-path", seed.to_str().unwrap()])
            .args(["--backend-shared-secret", SECRET])
            .env_remove("ACCOUNT_SEED_ENCRYPTION_KEY");
        if let Some(k) = key {
            cmd.args(["--account-seed-encryption-key", k]);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{key:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{key:?}: {err}");
    }
    // An empty backend secret (compose's unset `${BACKEND_SHARED_SECRET}`) or a short one.
    for secret in ["", "short-secret"] {
        let out = Command::new(bin())
            .args(["serve", "--data-dir", data.to_str().unwrap()])
            .args(["--policies", super::harness::policies().to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--mqtt-listen", "off"])
            .args(["--operator-seed-path", seed.to_str().unwrap()])
            .args(["--account-seed-encryption-key", SEED_KEY])
            .env("BACKEND_SHARED_SECRET", secret)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{secret:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("BACKEND_SHARED_SECRET"), "{secret:?}: {err}");
    }
}
